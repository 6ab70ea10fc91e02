//! The messages dlqd publishes when it carries out a decision, built from the dead
//! letter: retry copies, forwarded copies, and copies put back on the DLQ's tail.
//! Pure functions of their inputs (the caller passes the clock), tested in memory.

use crate::message::{FieldTable, Message, RETRIES_HEADER, Value};

/// When dlqd last examined a message it left on the DLQ (ms since the epoch).
pub const EXAMINED_HEADER: &str = "x-dlqd-examined";
/// The pass (one trip round the DLQ) that put the message on the DLQ's tail.
pub const PASS_HEADER: &str = "x-dlqd-pass";
/// The death history moved out of `x-death` before a delayed retry (newest first).
pub const DEATH_HISTORY_HEADER: &str = "x-dlqd-death";
/// Headers added to a forwarded message.
pub const RULE_HEADER: &str = "x-dlqd-rule";
pub const ACTION_HEADER: &str = "x-dlqd-action";
pub const ORIGINAL_QUEUE_HEADER: &str = "x-dlqd-original-queue";
pub const REASON_HEADER: &str = "x-dlqd-reason";

/// How many old death entries `x-dlqd-death` keeps.
const DEATH_HISTORY_MAX: usize = 32;

fn headers(m: &mut Message) -> &mut FieldTable {
    m.properties.headers.get_or_insert_with(FieldTable::new)
}

fn without_dlq_marks(message: &Message) -> Message {
    let mut out = message.clone();
    if let Some(h) = out.properties.headers.as_mut() {
        h.remove(EXAMINED_HEADER);
        h.remove(PASS_HEADER);
    }
    out
}

/// When the message was last examined on the DLQ, if it carries the mark.
pub fn examined_at(message: &Message) -> Option<u64> {
    message.header(EXAMINED_HEADER)?.as_u64()
}

/// The pass that last put the message on the DLQ's tail, if any.
pub fn pass_of(message: &Message) -> Option<u64> {
    match message.header(PASS_HEADER)? {
        Value::I64(v) => Some(*v as u64),
        other => other.as_u64(),
    }
}

/// The copy to publish for retry number `attempt`. A copy parked in a delay queue has
/// its `x-death` moved to `x-dlqd-death`: RabbitMQ would otherwise drop it as a
/// dead-letter cycle when it expires back into the queue it died in.
pub fn for_retry(message: &Message, attempt: u32, via_delay_queue: bool) -> Message {
    let mut out = without_dlq_marks(message);
    let h = headers(&mut out);
    h.insert(RETRIES_HEADER.into(), Value::I64(i64::from(attempt)));
    if via_delay_queue && let Some(death) = h.remove("x-death") {
        let mut history = match death {
            Value::Array(a) => a,
            other => vec![other],
        };
        if let Some(Value::Array(old)) = h.remove(DEATH_HISTORY_HEADER) {
            history.extend(old);
        }
        history.truncate(DEATH_HISTORY_MAX);
        h.insert(DEATH_HISTORY_HEADER.into(), Value::Array(history));
    }
    out
}

/// What a forwarded copy says about where it came from.
#[derive(Debug, Clone, PartialEq)]
pub struct ForwardInfo<'a> {
    /// The line of the rule that forwarded it.
    pub rule_line: Option<u32>,
    pub original_queue: &'a str,
    pub reason: &'a str,
    /// `HEADER(YES)`: keep `x-death` and `x-first-death-*`.
    pub keep_headers: bool,
}

/// The copy to publish for a forward.
pub fn for_forward(message: &Message, info: &ForwardInfo<'_>) -> Message {
    let mut out = without_dlq_marks(message);
    let h = headers(&mut out);
    if !info.keep_headers {
        h.remove("x-death");
        h.retain(|k, _| !k.starts_with("x-first-death-") && !k.starts_with("x-last-death-"));
    }
    if let Some(line) = info.rule_line {
        h.insert(RULE_HEADER.into(), Value::I64(i64::from(line)));
    }
    h.insert(ACTION_HEADER.into(), Value::string("forward"));
    h.insert(
        ORIGINAL_QUEUE_HEADER.into(),
        Value::string(info.original_queue),
    );
    h.insert(REASON_HEADER.into(), Value::string(info.reason));
    out
}

/// The copy that goes back on the DLQ's tail: examined at `now_ms` in pass `pass`;
/// `retries` replaces the retry count (a failed retry still counts).
pub fn for_dlq(message: &Message, now_ms: u64, pass: u64, retries: Option<u32>) -> Message {
    let mut out = message.clone();
    let h = headers(&mut out);
    h.insert(EXAMINED_HEADER.into(), Value::I64(now_ms as i64));
    h.insert(PASS_HEADER.into(), Value::I64(pass as i64));
    if let Some(n) = retries {
        h.insert(RETRIES_HEADER.into(), Value::I64(i64::from(n)));
    }
    out
}

/// A message that is not due yet, moved to the tail unexamined (its mark kept).
pub fn skipped(message: &Message, pass: u64) -> Message {
    let mut out = message.clone();
    headers(&mut out).insert(PASS_HEADER.into(), Value::I64(pass as i64));
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dead_letter() -> Message {
        let mut death = FieldTable::new();
        death.insert("queue".into(), Value::string("orders"));
        death.insert("reason".into(), Value::string("expired"));
        let mut h = FieldTable::new();
        h.insert("x-death".into(), Value::Array(vec![Value::Table(death)]));
        h.insert("x-first-death-queue".into(), Value::string("orders"));
        h.insert("x-first-death-reason".into(), Value::string("expired"));
        h.insert("app".into(), Value::string("kept"));
        h.insert(EXAMINED_HEADER.into(), Value::I64(5));
        h.insert(PASS_HEADER.into(), Value::I64(9));
        Message {
            properties: crate::message::Properties {
                headers: Some(h),
                message_id: Some("m1".into()),
                ..Default::default()
            },
            body: b"hello".to_vec(),
            ..Default::default()
        }
    }

    #[test]
    fn direct_retry_counts_and_keeps_the_death_history() {
        let out = for_retry(&dead_letter(), 3, false);
        assert_eq!(out.header(RETRIES_HEADER), Some(&Value::I64(3)));
        assert!(out.header("x-death").is_some());
        assert!(out.header(EXAMINED_HEADER).is_none());
        assert!(out.header(PASS_HEADER).is_none());
        assert_eq!(out.body, b"hello");
    }

    #[test]
    fn delayed_retry_moves_x_death_aside() {
        let first = for_retry(&dead_letter(), 1, true);
        assert!(first.header("x-death").is_none());
        let Some(Value::Array(hist)) = first.header(DEATH_HISTORY_HEADER) else {
            panic!("history kept");
        };
        assert_eq!(hist.len(), 1);
        // A second trip appends the new deaths before the old ones.
        let mut again = first.clone();
        let mut death = FieldTable::new();
        death.insert("queue".into(), Value::string("orders"));
        headers(&mut again).insert("x-death".into(), Value::Array(vec![Value::Table(death)]));
        let second = for_retry(&again, 2, true);
        let Some(Value::Array(hist)) = second.header(DEATH_HISTORY_HEADER) else {
            panic!("history kept");
        };
        assert_eq!(hist.len(), 2);
        assert_eq!(
            first.header("x-first-death-queue"),
            Some(&Value::string("orders"))
        );
    }

    #[test]
    fn forward_adds_provenance_and_strips_history_on_request() {
        let info = ForwardInfo {
            rule_line: Some(7),
            original_queue: "orders",
            reason: "expired",
            keep_headers: false,
        };
        let out = for_forward(&dead_letter(), &info);
        assert_eq!(out.header(RULE_HEADER), Some(&Value::I64(7)));
        assert_eq!(out.header(ACTION_HEADER), Some(&Value::string("forward")));
        assert_eq!(
            out.header(ORIGINAL_QUEUE_HEADER),
            Some(&Value::string("orders"))
        );
        assert_eq!(out.header(REASON_HEADER), Some(&Value::string("expired")));
        assert!(out.header("x-death").is_none());
        assert!(out.header("x-first-death-queue").is_none());
        assert_eq!(out.header("app"), Some(&Value::string("kept")));
        assert!(out.header(EXAMINED_HEADER).is_none());
        let kept = for_forward(
            &dead_letter(),
            &ForwardInfo {
                keep_headers: true,
                ..info
            },
        );
        assert!(kept.header("x-death").is_some());
        assert!(kept.header("x-first-death-reason").is_some());
    }

    #[test]
    fn dlq_copies_carry_the_examination_mark() {
        let out = for_dlq(&dead_letter(), 1_000, 42, Some(4));
        assert_eq!(examined_at(&out), Some(1_000));
        assert_eq!(pass_of(&out), Some(42));
        assert_eq!(out.header(RETRIES_HEADER), Some(&Value::I64(4)));
        let s = skipped(&dead_letter(), 43);
        assert_eq!(examined_at(&s), Some(5));
        assert_eq!(pass_of(&s), Some(43));
    }

    #[test]
    fn bad_marks_are_ignored() {
        let mut m = dead_letter();
        headers(&mut m).insert(EXAMINED_HEADER.into(), Value::string("yesterday"));
        headers(&mut m).insert(PASS_HEADER.into(), Value::Array(vec![]));
        assert_eq!(examined_at(&m), None);
        assert_eq!(pass_of(&m), None);
    }
}
