//! dlqd's own waiting rooms, as pure logic: the delay ladder (which queue a delayed
//! retry waits in next, and when it may leave it) and the left queue (where a left
//! message waits until RETRYINT has passed). No I/O; the clock is passed in.
//!
//! Every message in one stage queue waited the same step (or RETRYINT) from the time it
//! was put there, so a stage queue is FIFO by the time its messages are due: its head
//! is always the first one due. dlqd itself moves each message out when it is due
//! (publish with confirm, then acknowledge): no broker dead-lettering, no TTL.

use std::time::Duration;

use crate::message::{FieldTable, Message, Value};

/// The prefix of dlqd's delay queues (also of the old, TTL-based ones).
pub use crate::message::DELAY_QUEUE_PREFIX;
/// The prefix of dlqd's left queues.
/// The type of queue dlqd declares for its stage (delay and left queues).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum StageKind {
    /// Durable classic queues: one node holds them (the default; one broker).
    #[default]
    Classic,
    /// Quorum queues, replicated like a quorum DLQ (a cluster), with a delivery limit
    /// far above what a delay's returns can reach (RabbitMQ 4.x would otherwise drop a
    /// message returned more than 20 times; dlqd never rejects its own).
    Quorum,
}

/// The `x-delivery-limit` of a quorum stage queue: a mover hands held messages back at
/// most once a minute, so a delay of the longest step (≈ 1.8 h) is returned about 110
/// times; 4.x's default limit of 20 would drop it. (`-1`, "unlimited" on 4.x, means
/// "drop at the first return" on 3.x, so a large number it is.)
pub const QUORUM_STAGE_DELIVERY_LIMIT: i64 = 1_000_000;

pub const LEFT_QUEUE_PREFIX: &str = "dlqd.left.";

/// When the message may leave the stage queue it is in (ms since the epoch).
pub const STAGE_UNTIL_HEADER: &str = "x-dlqd-stage-until";
/// When a delayed retry is due at its target (ms since the epoch).
pub const DUE_HEADER: &str = "x-dlqd-due";
/// The queue a delayed retry goes to when it is due (through the default exchange).
pub const TARGET_HEADER: &str = "x-dlqd-target";
/// When the message was left (ms since the epoch).
pub const LEFT_AT_HEADER: &str = "x-dlqd-left-at";

/// The shortest step of the ladder; a remaining delay below it is not waited for.
pub const BASE_STEP_MS: u64 = 100;
/// How many steps: 100 ms × 2^k for k in 0..STEPS (100 ms … 6,553.6 s).
pub const STEPS: u32 = 17;
/// The floor of RETRYINT: a shorter one is raised to it.
pub const RETRY_INTERVAL_FLOOR: Duration = Duration::from_secs(1);

/// The length of ladder step `k` in ms.
pub fn step_ms(k: u32) -> u64 {
    BASE_STEP_MS << k.min(STEPS - 1)
}

/// The delay queue of step `k` for the DLQ `dlq`: `dlqd.delay.<dlq>.<ms>ms`.
pub fn delay_queue(dlq: &str, k: u32) -> String {
    format!("{DELAY_QUEUE_PREFIX}{dlq}.{}ms", step_ms(k))
}

/// Every delay queue of `dlq`, shortest step first.
pub fn delay_queues(dlq: &str) -> Vec<String> {
    (0..STEPS).map(|k| delay_queue(dlq, k)).collect()
}

/// The left queue of `dlq`: `dlqd.left.<dlq>`.
pub fn left_queue(dlq: &str) -> String {
    format!("{LEFT_QUEUE_PREFIX}{dlq}")
}

/// True for a queue dlqd declares for itself (delay or left queue).
pub fn is_own_queue(name: &str) -> bool {
    name.starts_with(DELAY_QUEUE_PREFIX) || name.starts_with(LEFT_QUEUE_PREFIX)
}

/// The step a remaining delay waits in next: the longest step not longer than it.
/// `None` when less than the shortest step remains: the message goes to its target.
pub fn step_for(remaining_ms: u64) -> Option<u32> {
    if remaining_ms < BASE_STEP_MS {
        return None;
    }
    let ratio = remaining_ms / BASE_STEP_MS;
    Some((63 - ratio.leading_zeros()).min(STEPS - 1))
}

/// The effective RETRYINT: never below the floor.
pub fn retry_interval(configured: Duration) -> Duration {
    configured.max(RETRY_INTERVAL_FLOOR)
}

fn headers(m: &mut Message) -> &mut FieldTable {
    m.properties.headers.get_or_insert_with(FieldTable::new)
}

fn ms(message: &Message, header: &str) -> Option<u64> {
    message.header(header)?.as_u64()
}

/// Remove every stage mark (before a message leaves dlqd's own queues).
pub fn strip_marks(message: &mut Message) {
    if let Some(h) = message.properties.headers.as_mut() {
        for k in [
            STAGE_UNTIL_HEADER,
            DUE_HEADER,
            TARGET_HEADER,
            LEFT_AT_HEADER,
        ] {
            h.remove(k);
        }
    }
}

/// A message parked in a stage queue.
#[derive(Debug, Clone, PartialEq)]
pub struct Parked {
    /// The queue to publish it to.
    pub queue: String,
    pub message: Message,
}

/// Park the retry copy `copy` for `delay` in front of `target`: into the first step's
/// queue, or `None` when the delay is shorter than the shortest step (publish directly).
pub fn park_retry(
    dlq: &str,
    copy: &Message,
    target: &str,
    delay: Duration,
    now_ms: u64,
) -> Option<Parked> {
    let delay_ms = u64::try_from(delay.as_millis()).unwrap_or(u64::MAX);
    let k = step_for(delay_ms)?;
    let mut message = copy.clone();
    strip_marks(&mut message);
    let h = headers(&mut message);
    h.insert(
        DUE_HEADER.into(),
        Value::I64(now_ms.saturating_add(delay_ms) as i64),
    );
    h.insert(TARGET_HEADER.into(), Value::string(target));
    h.insert(
        STAGE_UNTIL_HEADER.into(),
        Value::I64(now_ms.saturating_add(step_ms(k)) as i64),
    );
    Some(Parked {
        queue: delay_queue(dlq, k),
        message,
    })
}

/// Park `copy` (a message left, or a failed action) in the left queue of `dlq`.
pub fn park_left(dlq: &str, copy: &Message, now_ms: u64) -> Parked {
    let mut message = copy.clone();
    strip_marks(&mut message);
    headers(&mut message).insert(LEFT_AT_HEADER.into(), Value::I64(now_ms as i64));
    Parked {
        queue: left_queue(dlq),
        message,
    }
}

/// When a message in a stage queue may leave it. A left message is due RETRYINT after
/// it was left (RETRYINT as it is now: a reload applies to the messages waiting); a
/// delayed retry at its `x-dlqd-stage-until`. A message without readable marks is due
/// at once (it is moved on, never stuck).
pub fn ready_at(message: &Message, retry_interval: Duration) -> u64 {
    if let Some(left) = ms(message, LEFT_AT_HEADER) {
        let ri = u64::try_from(retry_interval.as_millis()).unwrap_or(u64::MAX);
        return left.saturating_add(ri);
    }
    ms(message, STAGE_UNTIL_HEADER).unwrap_or(0)
}

/// Where a due message in a stage queue goes next.
#[derive(Debug, Clone, PartialEq)]
pub enum Next {
    /// The next delay step.
    Step(Parked),
    /// The retry's target queue (default exchange), marks removed.
    Target { queue: String, message: Message },
    /// Back to the DLQ's tail to be examined again, marks removed.
    Dlq(Message),
}

/// Where the due message `message` moves at `now_ms`, out of a stage queue of `dlq`.
///
/// The next step follows from the *scheduled* end of this one (`x-dlqd-stage-until`),
/// not from the clock: every retry of one delay takes the same steps whatever a mover's
/// lateness, so retries parked in order arrive in order, and lateness does not add up.
///
/// A message whose next step would already be over at `now_ms` (a mover late by more
/// than that step, e.g. a `--once` run long after the retry was parked) goes on down
/// the ladder at once: it is never parked in a lower step that is already due (under
/// `--once` that step's mover may have finished, and the retry would wait for a later
/// run although it is due now).
pub fn next_hop(dlq: &str, message: &Message, now_ms: u64) -> Next {
    let mut next = one_hop(dlq, message, now_ms);
    while let Next::Step(p) = &next {
        match ms(&p.message, STAGE_UNTIL_HEADER) {
            Some(until) if until <= now_ms => next = one_hop(dlq, &p.message, now_ms),
            _ => break,
        }
    }
    next
}

/// One hop of [`next_hop`]: the step (or target) right after this stage.
fn one_hop(dlq: &str, message: &Message, now_ms: u64) -> Next {
    let target = message.header(TARGET_HEADER).and_then(Value::as_text);
    let due = ms(message, DUE_HEADER);
    let scheduled = ms(message, STAGE_UNTIL_HEADER)
        .filter(|&t| t <= now_ms)
        .unwrap_or(now_ms);
    match (target, due) {
        (Some(target), Some(due)) if !target.is_empty() => {
            let remaining = due.saturating_sub(scheduled);
            match step_for(remaining) {
                Some(k) => {
                    let mut m = message.clone();
                    headers(&mut m).insert(
                        STAGE_UNTIL_HEADER.into(),
                        Value::I64(scheduled.saturating_add(step_ms(k)) as i64),
                    );
                    Next::Step(Parked {
                        queue: delay_queue(dlq, k),
                        message: m,
                    })
                }
                None => {
                    let mut m = message.clone();
                    strip_marks(&mut m);
                    Next::Target {
                        queue: target,
                        message: m,
                    }
                }
            }
        }
        // A left message, or one whose marks cannot be read: the DLQ examines it.
        _ => {
            let mut m = message.clone();
            strip_marks(&mut m);
            Next::Dlq(m)
        }
    }
}

/// What a stage mover does with the first delivery it holds, due at `ready` (ms).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HeadPlan {
    /// Due: move it now.
    Move,
    /// Keep it (and what is behind it) until `ready`.
    Hold,
    /// Due too far ahead to hold: hand everything back and consume again at `ready`.
    Release,
    /// `--once`: not due, so this queue is done for this run.
    Done,
}

/// The plan for a head due at `ready` at `now`: held at most `hold_max_ms`; under
/// `--once` nothing is waited for. `idle` says no move is in flight (a release waits
/// for the moves in flight to be confirmed first).
pub fn plan_head(ready: u64, now: u64, hold_max_ms: u64, once: bool, idle: bool) -> HeadPlan {
    if ready <= now {
        HeadPlan::Move
    } else if once {
        if idle { HeadPlan::Done } else { HeadPlan::Hold }
    } else if ready - now > hold_max_ms && idle {
        HeadPlan::Release
    } else {
        HeadPlan::Hold
    }
}

/// The target a parked retry is waiting for, if it is one.
pub fn retry_target(message: &Message) -> Option<String> {
    message.header(TARGET_HEADER).and_then(Value::as_text)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn msg() -> Message {
        let mut h = FieldTable::new();
        h.insert("x-first-death-queue".into(), Value::string("orders"));
        Message {
            properties: crate::message::Properties {
                headers: Some(h),
                message_id: Some("m".into()),
                ..Default::default()
            },
            body: b"b".to_vec(),
            ..Default::default()
        }
    }

    #[test]
    fn the_ladder_picks_the_longest_step_not_longer_than_the_delay() {
        assert_eq!(step_for(0), None);
        assert_eq!(step_for(99), None);
        assert_eq!(step_for(100), Some(0));
        assert_eq!(step_for(199), Some(0));
        assert_eq!(step_for(200), Some(1));
        assert_eq!(step_for(1_000), Some(3)); // 800 ms
        assert_eq!(step_for(u64::MAX), Some(STEPS - 1));
        assert_eq!(step_ms(STEPS - 1), 6_553_600);
        assert_eq!(delay_queue("d.q", 3), "dlqd.delay.d.q.800ms");
        assert_eq!(delay_queues("d").len(), STEPS as usize);
        assert!(is_own_queue("dlqd.left.d") && is_own_queue(&delay_queue("d", 0)));
    }

    /// Walk a delay through the ladder, each hop exactly at its stage time: it reaches
    /// the target no later than due and less than one base step early.
    #[test]
    fn a_delay_walks_the_ladder_and_arrives_on_time() {
        for delay_ms in [100u64, 150, 1_000, 2_000, 4_000, 86_400_000, 12_345_678] {
            let start = 1_000_000;
            let mut p = park_retry(
                "dlq",
                &msg(),
                "orders",
                Duration::from_millis(delay_ms),
                start,
            )
            .unwrap();
            let mut hops = 0;
            let arrived = loop {
                let now = ready_at(&p.message, Duration::from_secs(60));
                match next_hop("dlq", &p.message, now) {
                    Next::Step(next) => p = next,
                    Next::Target { queue, message } => {
                        assert_eq!(queue, "orders");
                        assert!(message.header(DUE_HEADER).is_none());
                        assert!(message.header(TARGET_HEADER).is_none());
                        assert_eq!(
                            message.header("x-first-death-queue"),
                            Some(&Value::string("orders"))
                        );
                        break now;
                    }
                    Next::Dlq(_) => panic!("a retry goes to its target"),
                }
                hops += 1;
                assert!(hops < 10_000);
            };
            let due = start + delay_ms;
            assert!(
                arrived <= due && due - arrived < BASE_STEP_MS,
                "{delay_ms}: {arrived}"
            );
        }
    }

    /// Seen in CI: three retries of one 300 ms delay, moved a few ms late by different
    /// amounts, took different steps and arrived out of order.
    #[test]
    fn retries_of_one_delay_take_the_same_steps_whatever_the_lateness() {
        let route = |start: u64, late: u64| {
            let mut p = park_retry("d", &msg(), "t", Duration::from_millis(300), start).unwrap();
            let mut queues = vec![p.queue.clone()];
            loop {
                let now = ready_at(&p.message, Duration::from_secs(60)) + late;
                match next_hop("d", &p.message, now) {
                    Next::Step(next) => {
                        queues.push(next.queue.clone());
                        p = next;
                    }
                    Next::Target { .. } => {
                        assert!(
                            now <= 1_000 + 300 + late + 2,
                            "arrives without added lateness"
                        );
                        return queues;
                    }
                    Next::Dlq(_) => panic!("a retry goes to its target"),
                }
            }
        };
        let a = route(1_000, 0);
        assert_eq!(a, vec!["dlqd.delay.d.200ms", "dlqd.delay.d.100ms"]);
        assert_eq!(route(1_001, 7), a);
        assert_eq!(route(1_002, 3), a);
    }

    /// Seen in an operator's trial: a `--once` run 15 s after DELAY(10s) moved the
    /// retries one step down (into a step whose mover had already finished) and each
    /// later run one more. A retry whose wait is over goes to its target in one hop.
    #[test]
    fn an_overdue_retry_goes_straight_to_its_target() {
        let p = park_retry("d", &msg(), "t", Duration::from_secs(10), 1_000).unwrap();
        assert_eq!(p.queue, "dlqd.delay.d.6400ms");
        match next_hop("d", &p.message, 1_000 + 15_000) {
            Next::Target { queue, message } => {
                assert_eq!(queue, "t");
                assert!(message.header(STAGE_UNTIL_HEADER).is_none());
            }
            other => panic!("{other:?}"),
        }
        // Partly overdue: it skips the steps already over and waits in the first one
        // that is not.
        match next_hop("d", &p.message, 1_000 + 9_900) {
            Next::Step(next) => {
                assert_eq!(next.queue, "dlqd.delay.d.400ms");
                assert_eq!(ready_at(&next.message, Duration::from_secs(1)), 11_000);
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn short_delays_are_not_parked() {
        assert!(park_retry("d", &msg(), "t", Duration::from_millis(50), 0).is_none());
    }

    #[test]
    fn a_left_message_is_due_retryint_after_it_was_left_and_goes_back_to_the_dlq() {
        let p = park_left("dlq", &msg(), 5_000);
        assert_eq!(p.queue, "dlqd.left.dlq");
        assert_eq!(ready_at(&p.message, Duration::from_secs(2)), 7_000);
        // A reload to a shorter RETRYINT applies to what waits.
        assert_eq!(ready_at(&p.message, Duration::from_secs(1)), 6_000);
        match next_hop("dlq", &p.message, 7_000) {
            Next::Dlq(m) => assert!(m.header(LEFT_AT_HEADER).is_none()),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn unreadable_marks_are_due_at_once_and_go_to_the_dlq() {
        let mut m = msg();
        headers(&mut m).insert(DUE_HEADER.into(), Value::string("soon"));
        headers(&mut m).insert(STAGE_UNTIL_HEADER.into(), Value::Array(vec![]));
        assert_eq!(ready_at(&m, Duration::from_secs(5)), 0);
        assert!(matches!(next_hop("d", &m, 10), Next::Dlq(_)));
    }

    #[test]
    fn a_head_is_moved_when_due_held_when_near_and_released_when_far() {
        assert_eq!(plan_head(1_000, 1_000, 60_000, false, true), HeadPlan::Move);
        assert_eq!(
            plan_head(30_000, 1_000, 60_000, false, true),
            HeadPlan::Hold
        );
        assert_eq!(
            plan_head(90_000, 1_000, 60_000, false, true),
            HeadPlan::Release
        );
        // Not released while moves are in flight (their acks need the channel).
        assert_eq!(
            plan_head(90_000, 1_000, 60_000, false, false),
            HeadPlan::Hold
        );
        assert_eq!(plan_head(2_000, 1_000, 60_000, true, true), HeadPlan::Done);
        assert_eq!(plan_head(2_000, 1_000, 60_000, true, false), HeadPlan::Hold);
        assert_eq!(plan_head(500, 1_000, 60_000, true, true), HeadPlan::Move);
    }

    #[test]
    fn retryint_has_a_floor() {
        assert_eq!(retry_interval(Duration::ZERO), RETRY_INTERVAL_FLOOR);
        assert_eq!(
            retry_interval(Duration::from_secs(30)),
            Duration::from_secs(30)
        );
    }
}
