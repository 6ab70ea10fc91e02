//! The decision: a pure function of (message facts, rule table) → what to do. No I/O, no clock.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use crate::dead_letter::DeadLetter;
use crate::rules::Table;

/// What to do with one message, and which rule said so.
#[derive(Debug, Clone, PartialEq)]
pub struct Decision {
    /// Index into `Table::rules` of the rule that applies; `None` when no rule applies.
    pub rule: Option<usize>,
    /// That rule's 1-based line.
    pub line: Option<u32>,
    pub outcome: Outcome,
}

/// A concrete action, with substitutions resolved.
#[derive(Debug, Clone, PartialEq)]
pub enum Outcome {
    /// Put it back on `queue` after `delay`; this is attempt number `attempt` (1-based).
    Retry {
        queue: String,
        delay: Duration,
        attempt: u32,
    },
    /// Publish to `exchange` with `routing_key` ("" exchange = straight to a queue).
    Forward {
        exchange: String,
        routing_key: String,
        keep_headers: bool,
    },
    Discard {
        archive: Option<PathBuf>,
    },
    Leave,
}

/// A rule table prepared for fast decisions.
#[derive(Debug, Clone)]
pub struct Decider {
    table: Arc<Table>,
}

impl Decider {
    pub fn new(table: Table) -> Self {
        Decider {
            table: Arc::new(table),
        }
    }

    pub fn table(&self) -> &Table {
        &self.table
    }

    pub fn decide(&self, _dl: &DeadLetter) -> Decision {
        todo!("decision")
    }
}
