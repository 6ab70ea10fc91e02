//! The facts a rule matches on, read from a [`Message`]'s properties and death history.

use crate::message::Message;

/// A dead letter as the rules see it (§3's table).
#[derive(Debug, Clone)]
pub struct DeadLetter<'m> {
    pub message: &'m Message,
    /// The queue it died in ("" when unknown).
    pub destq: String,
    pub destex: String,
    pub rkeys: Vec<String>,
    /// `rejected`, `expired`, `maxlen`, `delivery_limit`, or an application's code; "" when unknown.
    pub reason: String,
    pub persistent: bool,
    /// dlqd's retry count (`x-dlqd-retries`), 0 when absent or unreadable.
    pub retries: u32,
}

impl<'m> DeadLetter<'m> {
    pub fn new(_message: &'m Message) -> Self {
        todo!("dead letter facts")
    }
}
