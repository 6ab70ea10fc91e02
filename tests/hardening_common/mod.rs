//! Helpers for the hardening tests (tests/poison.rs, tests/secrets.rs, ...): the broker
//! fixture ([`crate::support::fixture`]) and the dlqd runners ([`crate::support::dlqd`])
//! re-exported, plus hand-made (poison) values and tables.
#![allow(dead_code)]

use lapin::BasicProperties;
use lapin::types::{AMQPValue, FieldTable, LongString};

#[allow(unused_imports)] // not every test file uses every re-export
pub use crate::support::broker::{text, url};
#[allow(unused_imports)] // not every test file uses every re-export
pub use crate::support::dlqd::{dlqd, dlqd_env, dlqd_for, stderr_of, tail};
#[allow(unused_imports)] // not every test file uses every re-export
pub use crate::support::fixture::{Broker, Got};

/// A queue name no other test (or test run) uses.
pub fn unique(prefix: &str) -> String {
    crate::support::broker::unique(&format!("dlqd-hardening.{prefix}"))
}

pub fn bytes(b: &[u8]) -> AMQPValue {
    AMQPValue::LongString(LongString::from(b.to_vec()))
}

pub fn table(pairs: Vec<(&str, AMQPValue)>) -> FieldTable {
    crate::support::broker::table(&pairs)
}

/// Persistent properties with a message id.
pub fn props(id: &str) -> BasicProperties {
    BasicProperties::default()
        .with_message_id(id.into())
        .with_delivery_mode(2)
}
