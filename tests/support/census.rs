//! Where every message is, by message id, across every place a message handled by dlqd
//! may be (docs/delivery-path.md): the DLQ `D`, its left queue `dlqd.left.D`, its delay
//! ladder `dlqd.delay.D.<ms>ms` (100 ms × 2^k, k = 0..=16) and the target/work queues a
//! test names. The census peeks (basic.get without ack, then the channel is closed and
//! the broker puts everything back in order) or drains; take it while dlqd is stopped,
//! since a running dlqd holds what it consumes unacknowledged, where no census sees it.

use std::collections::BTreeMap;
use std::fmt;

use lapin::options::{BasicGetOptions, QueueDeclareOptions};
use lapin::types::{AMQPValue, FieldTable};
use lapin::{Channel, Connection};

use super::broker;
use super::lab::{Got, Lab};

/// Ladder steps: 100 ms × 2^k for k = 0..STEPS.
pub const STEPS: u32 = 17;

/// `dlqd.left.D`.
pub fn left_queue(dlq: &str) -> String {
    format!("dlqd.left.{dlq}")
}

/// `dlqd.delay.D.<ms>ms` for every step, shortest first.
pub fn delay_queues(dlq: &str) -> Vec<String> {
    (0..STEPS)
        .map(|k| format!("dlqd.delay.{dlq}.{}ms", 100u64 << k))
        .collect()
}

/// The queues dlqd declares for itself for `dlq`: its left queue and its delay ladder.
pub fn own_queues(dlq: &str) -> Vec<String> {
    let mut q = vec![left_queue(dlq)];
    q.extend(delay_queues(dlq));
    q
}

/// The old design's TTL delay queue in front of `target` (`dlqd.delay.<ms>ms.<target>`):
/// not a place a message may be in, only something to delete after a run of the old binary.
pub fn old_delay_queue(ms: u64, target: &str) -> String {
    format!("dlqd.delay.{ms}ms.{target}")
}

/// Have `lab` delete, at cleanup, dlqd's own queues for `dlq` and the old design's delay
/// queues for these `(ms, target)` pairs.
pub fn adopt_own(lab: &mut Lab, dlq: &str, old_delays: &[(u64, &str)]) {
    for q in own_queues(dlq) {
        lab.adopt(&q);
    }
    for (ms, target) in old_delays {
        lab.adopt(&old_delay_queue(*ms, target));
    }
}

/// Every place a message of `dlq` may be: D, dlqd.left.D, the delay ladder, and `targets`.
pub fn places(dlq: &str, targets: &[&str]) -> Vec<String> {
    let mut q = vec![dlq.to_string()];
    q.extend(own_queues(dlq));
    q.extend(targets.iter().map(|t| t.to_string()));
    q
}

/// A header as text (long or short string), if present.
pub fn header_str(got: &Got, name: &str) -> Option<String> {
    match got.properties.headers().as_ref()?.inner().get(name)? {
        AMQPValue::LongString(s) => Some(String::from_utf8_lossy(s.as_bytes()).into_owned()),
        AMQPValue::ShortString(s) => Some(s.as_str().to_string()),
        _ => None,
    }
}

/// Every copy found, by id, with the queue it was in.
#[derive(Debug, Default)]
pub struct Census {
    copies: BTreeMap<String, Vec<(String, Got)>>,
}

/// A channel on `conn`, or on a new connection when lapin reports an earlier channel's
/// failure (a passive declare of a missing queue) on this one.
async fn channel(conn: &mut Connection) -> Channel {
    for _ in 0..3 {
        if let Ok(ch) = conn.create_channel().await {
            return ch;
        }
    }
    *conn = broker::connect().await;
    conn.create_channel().await.expect("a channel")
}

async fn exists(conn: &mut Connection, queue: &str) -> bool {
    let ch = channel(conn).await;
    ch.queue_declare(
        queue.into(),
        QueueDeclareOptions {
            passive: true,
            ..QueueDeclareOptions::default()
        },
        FieldTable::default(),
    )
    .await
    .is_ok()
}

fn got(delivery: lapin::message::Delivery) -> Got {
    let properties = delivery.properties;
    let id = properties
        .message_id()
        .as_ref()
        .map(|s| s.as_str().to_string())
        .unwrap_or_default();
    Got { id, properties }
}

impl Census {
    /// Look at every message of `queues` and put them all back (missing queues are empty).
    pub async fn peek(queues: &[String]) -> Census {
        Census::take(queues, false).await
    }

    /// Take every message off `queues` (missing queues are empty).
    pub async fn drain(queues: &[String]) -> Census {
        Census::take(queues, true).await
    }

    async fn take(queues: &[String], consume: bool) -> Census {
        let mut conn = broker::connect().await;
        let mut census = Census::default();
        for queue in queues {
            if !exists(&mut conn, queue).await {
                continue;
            }
            let ch = channel(&mut conn).await;
            while let Some(m) = ch
                .basic_get(queue.as_str().into(), BasicGetOptions { no_ack: consume })
                .await
                .unwrap_or_else(|e| panic!("basic.get on {queue}: {e}"))
            {
                let g = got(m.delivery);
                census
                    .copies
                    .entry(g.id.clone())
                    .or_default()
                    .push((queue.clone(), g));
            }
            // Unacknowledged gets go back to the queue, in order.
            let _ = ch.close(200, "census".into()).await;
        }
        let _ = conn.close(200, "census".into()).await;
        census
    }

    /// id → (queue → copies).
    pub fn by_id(&self) -> BTreeMap<String, BTreeMap<String, usize>> {
        self.copies
            .iter()
            .map(|(id, copies)| {
                let mut at = BTreeMap::new();
                for (q, _) in copies {
                    *at.entry(q.clone()).or_insert(0) += 1;
                }
                (id.clone(), at)
            })
            .collect()
    }

    /// How many copies of `id`, anywhere.
    pub fn count(&self, id: &str) -> usize {
        self.copies.get(id).map_or(0, Vec::len)
    }

    /// Every copy of `id`, with its queue.
    pub fn copies(&self, id: &str) -> &[(String, Got)] {
        self.copies.get(id).map_or(&[], Vec::as_slice)
    }

    /// The one copy of `id` (fails unless there is exactly one).
    pub fn only(&self, id: &str) -> &(String, Got) {
        match self.copies(id) {
            [one] => one,
            other => panic!(
                "{id}: {} copies, expected one; census:\n{self}",
                other.len()
            ),
        }
    }

    /// The ids in `queue`, one per copy.
    pub fn ids_in(&self, queue: &str) -> Vec<&str> {
        let mut ids: Vec<&str> = self
            .copies
            .values()
            .flatten()
            .filter(|(q, _)| q == queue)
            .map(|(_, g)| g.id.as_str())
            .collect();
        ids.sort_unstable();
        ids
    }

    fn check(&self, ids: &[String], allowed: &[&str], exactly: bool) {
        let mut wrong = Vec::new();
        for id in ids {
            let copies = self.copies(id);
            let misplaced: Vec<&str> = copies
                .iter()
                .map(|(q, _)| q.as_str())
                .filter(|q| !allowed.contains(q))
                .collect();
            let bad_count = if exactly {
                copies.len() != 1
            } else {
                copies.is_empty()
            };
            if bad_count || !misplaced.is_empty() {
                wrong.push(format!(
                    "{id}: {} copies{}",
                    copies.len(),
                    if misplaced.is_empty() {
                        String::new()
                    } else {
                        format!(", misplaced in {misplaced:?}")
                    }
                ));
            }
        }
        assert!(
            wrong.is_empty(),
            "{} of {} ids not {} in {allowed:?}:\n  {}\ncensus:\n{self}",
            wrong.len(),
            ids.len(),
            if exactly {
                "exactly once"
            } else {
                "at least once"
            },
            wrong.join("\n  ")
        );
    }

    /// Every id present exactly once, and only in `allowed` queues.
    pub fn assert_exactly_once(&self, ids: &[String], allowed: &[&str]) {
        self.check(ids, allowed, true);
    }

    /// Every id present at least once (a crash may duplicate), only in `allowed` queues.
    pub fn assert_at_least_once(&self, ids: &[String], allowed: &[&str]) {
        self.check(ids, allowed, false);
    }

    /// None of `ids` anywhere.
    pub fn assert_none(&self, ids: &[String]) {
        let found: Vec<&String> = ids.iter().filter(|id| self.count(id) > 0).collect();
        assert!(
            found.is_empty(),
            "still present: {found:?}; census:\n{self}"
        );
    }
}

impl fmt::Display for Census {
    /// One line per id: where its copies are (with x-dlqd-retries when set).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.copies.is_empty() {
            return writeln!(f, "  (nothing anywhere)");
        }
        for (id, copies) in &self.copies {
            let at: Vec<String> = copies
                .iter()
                .map(|(q, g)| match g.header_i64("x-dlqd-retries") {
                    Some(r) => format!("{q} (retries {r})"),
                    None => q.clone(),
                })
                .collect();
            writeln!(f, "  {id}: {}", at.join(", "))?;
        }
        Ok(())
    }
}
