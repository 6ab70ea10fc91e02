//! What one `dlqd run` did, counted for the end-of-run summary: actions done by action,
//! failed by action and cause, deliveries held on the DLQ, delayed retries moved, and
//! what still waits.

use std::collections::BTreeMap;
use std::fmt;

/// Counts by action name.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct Summary {
    pub done: BTreeMap<&'static str, u64>,
    /// By action and cause (`Cause::label`).
    pub failed: BTreeMap<(&'static str, &'static str), u64>,
    /// Deliveries that no copy could be made of (too large, or every left copy refused):
    /// they stay unacknowledged on the DLQ.
    pub held: u64,
    /// Delayed retries delivered to their target by the movers.
    pub delivered: u64,
    /// Delayed retries their target refused at the end of the delay.
    pub refused: u64,
    /// What waits in dlqd's own queues for this DLQ when the run ended (read at the
    /// end; `None` when they could not be read, e.g. the connection was lost).
    pub waiting: Option<Waiting>,
    /// `--max` stopped the run after this many deliveries taken from the DLQ.
    pub stopped_at_max: Option<u64>,
}

/// What waits in dlqd's delay and left queues of one DLQ (depths read at the end).
#[derive(Debug, Default, Clone, PartialEq)]
pub struct Waiting {
    pub dlq: String,
    /// In `dlqd.delay.<DLQ>.*`.
    pub delayed: u64,
    /// In `dlqd.left.<DLQ>`.
    pub left: u64,
}

impl Waiting {
    pub fn total(&self) -> u64 {
        self.delayed + self.left
    }
}

impl fmt::Display for Waiting {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let d = &self.dlq;
        write!(
            f,
            "{} wait in {}{d}.* and {} in {}{d}",
            self.delayed,
            crate::stage::DELAY_QUEUE_PREFIX,
            self.left,
            crate::stage::LEFT_QUEUE_PREFIX
        )?;
        if self.total() > 0 {
            write!(f, "; they move on when dlqd serves {d} again")?;
        }
        Ok(())
    }
}

impl Summary {
    pub fn done(&mut self, action: &'static str) {
        *self.done.entry(action).or_default() += 1;
    }

    pub fn failed(&mut self, action: &'static str, cause: &'static str) {
        *self.failed.entry((action, cause)).or_default() += 1;
    }

    /// Actions that failed (a refused delayed retry included).
    pub fn failures(&self) -> u64 {
        self.failed.values().sum::<u64>() + self.refused
    }
}

fn counts(f: &mut fmt::Formatter<'_>, m: &BTreeMap<&'static str, u64>) -> fmt::Result {
    if m.is_empty() {
        return write!(f, "none");
    }
    for (i, (k, v)) in m.iter().enumerate() {
        if i > 0 {
            write!(f, ", ")?;
        }
        write!(f, "{k} {v}")?;
    }
    Ok(())
}

/// `retry (returned)`.
struct ByCause(&'static str, &'static str);

impl fmt::Display for ByCause {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} ({})", self.0, self.1)
    }
}

impl fmt::Display for Summary {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "done: ")?;
        counts(f, &self.done)?;
        write!(f, "; failed: ")?;
        if self.failed.is_empty() {
            write!(f, "none")?;
        }
        for (i, ((action, cause), n)) in self.failed.iter().enumerate() {
            if i > 0 {
                write!(f, ", ")?;
            }
            write!(f, "{} {n}", ByCause(action, cause))?;
        }
        if self.held > 0 {
            write!(f, "; held on the DLQ {}", self.held)?;
        }
        write!(
            f,
            "; delayed retries delivered {}, refused by their target {}",
            self.delivered, self.refused
        )?;
        if let Some(w) = &self.waiting {
            write!(f, "; {w}")?;
        }
        if let Some(n) = self.stopped_at_max {
            write!(f, "; stopped at --max after {n} taken from the DLQ")?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_summary_reads_as_a_sentence() {
        let mut s = Summary::default();
        s.done("forward");
        s.done("forward");
        s.done("leave");
        s.failed("retry", "returned");
        s.refused = 1;
        s.waiting = Some(Waiting {
            dlq: "d.q".into(),
            delayed: 3,
            left: 2,
        });
        assert_eq!(
            s.to_string(),
            "done: forward 2, leave 1; failed: retry (returned) 1; delayed retries delivered 0, \
             refused by their target 1; 3 wait in dlqd.delay.d.q.* and 2 in dlqd.left.d.q; \
             they move on when dlqd serves d.q again"
        );
        let none = Waiting {
            dlq: "d".into(),
            ..Waiting::default()
        };
        assert_eq!(
            none.to_string(),
            "0 wait in dlqd.delay.d.* and 0 in dlqd.left.d"
        );
        s.stopped_at_max = Some(4);
        assert!(
            s.to_string()
                .ends_with("; stopped at --max after 4 taken from the DLQ"),
            "{s}"
        );
        assert_eq!(s.failures(), 2);
        assert_eq!(
            Summary::default().to_string(),
            "done: none; failed: none; delayed retries delivered 0, refused by their target 0"
        );
    }
}
