//! The publishes in flight, in the order they were sent: a FIFO of completions where
//! only the oldest is polled. The broker confirms in publish order and deliveries are
//! acknowledged in tag order anyway, so nothing waits longer than it must, and each
//! wake-up costs O(1) however many are in flight.

use std::collections::VecDeque;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

use crate::broker::{ActionFailure, Confirm};

/// One completion: the delivery tag it is for, and how its action ended.
pub type Completion = Pin<Box<dyn Future<Output = (u64, Result<(), ActionFailure>)> + Send>>;

/// The completion of publish `confirm` for delivery `tag`.
pub fn completion(tag: u64, confirm: Confirm) -> Completion {
    Box::pin(async move { (tag, confirm.await) })
}

/// An action that is over already (a discard, a check that failed).
pub fn ready(tag: u64, result: Result<(), ActionFailure>) -> Completion {
    Box::pin(async move { (tag, result) })
}

/// A FIFO of completions.
#[derive(Default)]
pub struct Confirms {
    items: VecDeque<Completion>,
}

impl Confirms {
    pub fn push(&mut self, c: Completion) {
        self.items.push_back(c);
    }
    pub fn is_empty(&self) -> bool {
        self.items.is_empty()
    }
    pub fn len(&self) -> usize {
        self.items.len()
    }
}

impl futures_lite::Stream for Confirms {
    type Item = (u64, Result<(), ActionFailure>);
    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let Some(front) = self.items.front_mut() else {
            return Poll::Ready(None);
        };
        match front.as_mut().poll(cx) {
            Poll::Ready(out) => {
                self.items.pop_front();
                Poll::Ready(Some(out))
            }
            Poll::Pending => Poll::Pending,
        }
    }
}
