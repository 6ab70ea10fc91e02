//! The messages dlqd publishes when it carries out a decision, built from the dead
//! letter: retry copies, forwarded copies, and copies put back on the DLQ's tail.
//! Pure functions of their inputs (the caller passes the clock), tested in memory.

pub use crate::message::USER_ID_HEADER;
use crate::message::{FieldTable, Message, RETRIES_HEADER, Value};

/// When dlqd last examined a message it left on the DLQ (ms since the epoch).
pub const EXAMINED_HEADER: &str = "x-dlqd-examined";
/// The pass (one trip round the DLQ) that put the message on the DLQ's tail.
pub const PASS_HEADER: &str = "x-dlqd-pass";
/// The death history moved out of `x-death` by dlqd before 0.2 (TTL delay queues).
pub const DEATH_HISTORY_HEADER: &str = "x-dlqd-death";
/// Headers added to a forwarded message.
pub const RULE_HEADER: &str = "x-dlqd-rule";
pub const ACTION_HEADER: &str = "x-dlqd-action";
pub const ORIGINAL_QUEUE_HEADER: &str = "x-dlqd-original-queue";
pub const REASON_HEADER: &str = "x-dlqd-reason";

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

/// Whose name a copy is published in (runmqdlq's PUTAUT). RabbitMQ refuses a publish
/// whose `user_id` is not the publishing user's (406, closing the channel) unless that
/// user has the `impersonator` tag. `keep == false` (PUTAUT(DEF), and every copy dlqd
/// keeps for itself): the copy carries no `user_id`; the original one is kept in
/// [`USER_ID_HEADER`]. `keep == true` (PUTAUT(CTX)): the original `user_id`, restored
/// from that header if an earlier copy moved it there.
fn put_as(out: &mut Message, keep: bool) {
    if keep {
        if out.properties.user_id.is_none()
            && let Some(h) = out.properties.headers.as_mut()
            && let Some(u) = h.get(USER_ID_HEADER).and_then(Value::as_str_lossy)
        {
            h.remove(USER_ID_HEADER);
            out.properties.user_id = Some(u);
        }
    } else if let Some(u) = out.properties.user_id.take() {
        let h = headers(out);
        if !h.contains_key(USER_ID_HEADER) {
            h.insert(USER_ID_HEADER.into(), Value::LongString(u.into_bytes()));
        }
    }
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

/// The copy to publish for retry number `attempt` (directly, or parked in a delay
/// queue first: dlqd moves it out itself, so its death history is kept as it is).
/// `keep_user_id`: PUTAUT(CTX) (see [`put_as`]).
pub fn for_retry(message: &Message, attempt: u32, keep_user_id: bool) -> Message {
    let mut out = without_dlq_marks(message);
    headers(&mut out).insert(RETRIES_HEADER.into(), Value::I64(i64::from(attempt)));
    put_as(&mut out, keep_user_id);
    out
}

/// The copy that waits in the left queue: the DLQ marks removed; `retries` replaces the
/// retry count (a failed retry still counts).
pub fn for_left(message: &Message, retries: Option<u32>) -> Message {
    let mut out = without_dlq_marks(message);
    if let Some(n) = retries {
        headers(&mut out).insert(RETRIES_HEADER.into(), Value::I64(i64::from(n)));
    }
    put_as(&mut out, false);
    out
}

/// A left message back on the DLQ, examined again: marked with when it comes back.
pub fn back_from_left(message: &Message, now_ms: u64) -> Message {
    let mut out = message.clone();
    headers(&mut out).insert(EXAMINED_HEADER.into(), Value::I64(now_ms as i64));
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
    /// `PUTAUT(CTX)`: keep the original `user_id` (see [`put_as`]).
    pub keep_user_id: bool,
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
    put_as(&mut out, info.keep_user_id);
    out
}

/// The copy `dlqd publish` sends of a captured message: dlqd's DLQ and stage marks
/// removed (they describe a place the message is leaving), published as dlqd (see
/// [`put_as`]); the death history, every other header, the properties and the body as
/// captured.
pub fn for_publish(message: &Message) -> Message {
    let mut out = without_dlq_marks(message);
    crate::stage::strip_marks(&mut out);
    put_as(&mut out, false);
    out
}

/// The copy that goes back on the DLQ's tail under `--once`: examined at `now_ms` in
/// pass `pass` (this run);
/// `retries` replaces the retry count (a failed retry still counts).
pub fn for_dlq(message: &Message, now_ms: u64, pass: u64, retries: Option<u32>) -> Message {
    let mut out = message.clone();
    let h = headers(&mut out);
    h.insert(EXAMINED_HEADER.into(), Value::I64(now_ms as i64));
    h.insert(PASS_HEADER.into(), Value::I64(pass as i64));
    if let Some(n) = retries {
        h.insert(RETRIES_HEADER.into(), Value::I64(i64::from(n)));
    }
    put_as(&mut out, false);
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
    fn a_retry_counts_and_keeps_the_death_history() {
        let out = for_retry(&dead_letter(), 3, false);
        assert_eq!(out.header(RETRIES_HEADER), Some(&Value::I64(3)));
        assert!(out.header("x-death").is_some());
        assert_eq!(
            out.header("x-first-death-reason"),
            Some(&Value::string("expired"))
        );
        assert!(out.header(EXAMINED_HEADER).is_none());
        assert!(out.header(PASS_HEADER).is_none());
        assert_eq!(out.body, b"hello");
    }

    #[test]
    fn a_left_copy_drops_the_dlq_marks_and_keeps_a_failed_retry_counted() {
        let out = for_left(&dead_letter(), Some(2));
        assert_eq!(out.header(RETRIES_HEADER), Some(&Value::I64(2)));
        assert!(out.header(EXAMINED_HEADER).is_none());
        let back = back_from_left(&out, 77);
        assert_eq!(examined_at(&back), Some(77));
    }

    #[test]
    fn forward_adds_provenance_and_strips_history_on_request() {
        let info = ForwardInfo {
            rule_line: Some(7),
            original_queue: "orders",
            reason: "expired",
            keep_headers: false,
            keep_user_id: false,
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
                keep_user_id: false,
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
    }

    #[test]
    fn bad_marks_are_ignored() {
        let mut m = dead_letter();
        headers(&mut m).insert(EXAMINED_HEADER.into(), Value::string("yesterday"));
        headers(&mut m).insert(PASS_HEADER.into(), Value::Array(vec![]));
        assert_eq!(examined_at(&m), None);
        assert_eq!(pass_of(&m), None);
    }

    #[test]
    fn a_copy_is_published_as_dlqd_unless_putaut_ctx() {
        let mut m = dead_letter();
        m.properties.user_id = Some("alice".into());
        let def = for_retry(&m, 1, false);
        assert_eq!(def.properties.user_id, None);
        assert_eq!(crate::dead_letter::DeadLetter::new(&def).user_id, "alice");
        // A left copy (always as dlqd), then a CTX retry of it: alice again.
        let left = for_left(&m, None);
        assert_eq!(left.properties.user_id, None);
        let ctx = for_retry(&left, 2, true);
        assert_eq!(ctx.properties.user_id.as_deref(), Some("alice"));
        assert!(ctx.header(USER_ID_HEADER).is_none());
        // No user_id, nothing added.
        let plain = for_retry(&dead_letter(), 1, false);
        assert!(plain.header(USER_ID_HEADER).is_none());
    }
}
