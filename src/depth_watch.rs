//! Watch the DLQs' depths from the side: every few seconds, on a connection of its own,
//! read how many messages are ready on each DLQ served and tell its [`Observer`] (the
//! `dlqd_dlq_depth{queue}` gauge and the progress bar's "left on the DLQ").
//!
//! Kept apart from the consume loops so that a slow or failed depth query never holds
//! up a message; when the broker is unreachable it simply tries again later. A DLQ the
//! broker says is missing (or refused) has no depth series, not its last value. One watch
//! (one connection) serves every DLQ of a run; the set it reads follows the DLQs started
//! and retired ([`Watched`]).

use std::time::Duration;

use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::broker::Session;
use crate::observer::Observer;

/// The DLQs to watch now, each with the observer its depth goes to.
pub type Watched = Vec<(String, Observer)>;

/// Start watching `queue` every `every`; abort the handle to stop.
pub fn spawn(
    urls: Vec<String>,
    queue: String,
    every: Duration,
    observer: Observer,
) -> JoinHandle<()> {
    let (_set, rx) = watch::channel(vec![(queue, observer)]);
    spawn_many(urls, rx, every)
}

/// Start watching the DLQs `set` holds (read afresh each round) every `every`; abort
/// the handle to stop.
pub fn spawn_many(
    urls: Vec<String>,
    set: watch::Receiver<Watched>,
    every: Duration,
) -> JoinHandle<()> {
    tokio::spawn(async move {
        let mut session: Option<Session> = None;
        loop {
            if session.is_none() {
                match Session::open(&urls, 0).await {
                    Ok(s) => session = Some(s),
                    Err(e) => tracing::debug!(error = %e, "depth watch: cannot connect yet"),
                }
            }
            let queues: Watched = set.borrow().clone();
            for (queue, observer) in &queues {
                let Some(s) = &session else { break };
                match s.queue_depth(queue).await {
                    Ok(n) => observer.depth(u64::from(n)),
                    Err(e) => {
                        tracing::debug!(queue = %queue, error = %e, "depth watch: cannot read the DLQ depth");
                        if s.is_connected() {
                            // The broker answers: the DLQ is missing or refused.
                            observer.depth_unknown();
                        } else if let Some(s) = session.take() {
                            s.close().await;
                        }
                    }
                }
            }
            tokio::time::sleep(every).await;
        }
    })
}
