//! The facts a rule matches on, read from a [`Message`]'s properties and death history.
//!
//! Reading never fails: a missing or wrongly typed header is treated as absent, and a
//! fact that cannot be read is the empty string (or 0, or `false`).
//!
//! Where the broker writes the history: RabbitMQ 3.13 and 4.x set `x-last-death-queue`,
//! `-reason` and `-exchange` at every dead-lettering: they name the latest death, and
//! are read first. 4.x keeps one `x-death` entry per (queue, reason), newest first, but
//! its `exchange`, `routing-keys` and `time` are those of the *first* death of that
//! entry; 3.10 has no `x-last-death-*`. So: queue, reason and exchange from
//! `x-last-death-*`, else the newest `x-death` entry, else `x-first-death-*`; routing
//! keys (the original ones) from the newest `x-death` entry.

use crate::message::{
    DELAY_QUEUE_PREFIX, FieldTable, Message, RETRIES_HEADER, USER_ID_HEADER, Value,
};

/// Header dlqd sets on a message it forwards: the queue the message originally died in.
pub const ORIGINAL_QUEUE_HEADER: &str = "x-dlqd-original-queue";
/// Header dlqd sets on a message it forwards: why it originally died.
pub const REASON_HEADER: &str = "x-dlqd-reason";
/// Header an application sets when it dead-letters a message in its own code.
pub const APP_REASON_HEADER: &str = "x-dlq-reason";

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
    /// Body size in bytes.
    pub size: u64,
    /// The user it was published as: its `user_id`, or the one dlqd kept in
    /// `x-dlqd-user-id` when it published a copy as itself; "" when none.
    pub user_id: &'m str,
}

fn original_user_id(message: &Message) -> &str {
    if let Some(u) = message.properties.user_id.as_deref() {
        return u;
    }
    match message.header(USER_ID_HEADER) {
        Some(Value::LongString(u)) => std::str::from_utf8(u).unwrap_or(""),
        Some(Value::ShortString(u)) => u,
        _ => "",
    }
}

impl<'m> DeadLetter<'m> {
    pub fn new(message: &'m Message) -> Self {
        let headers = message.properties.headers.as_ref();
        let death = headers.and_then(newest_death);

        let text_of = |table: Option<&FieldTable>, key: &str| -> Option<String> {
            table?.get(key)?.as_str_lossy()
        };
        let not_delay = |q: &String| !q.starts_with(DELAY_QUEUE_PREFIX);

        let destq = text_of(headers, "x-last-death-queue")
            .filter(not_delay)
            .or_else(|| text_of(death, "queue"))
            .or_else(|| text_of(headers, "x-first-death-queue").filter(not_delay))
            .or_else(|| text_of(headers, ORIGINAL_QUEUE_HEADER))
            .unwrap_or_default();
        let last_is_ours = text_of(headers, "x-last-death-queue").is_some_and(|q| !not_delay(&q));
        let last = |key: &str| text_of(headers, key).filter(|_| !last_is_ours);
        let destex = last("x-last-death-exchange")
            .or_else(|| text_of(death, "exchange"))
            .or_else(|| text_of(headers, "x-first-death-exchange"))
            .unwrap_or_default();
        let rkeys = match death.and_then(|d| d.get("routing-keys")) {
            Some(Value::Array(keys)) => keys.iter().filter_map(Value::as_str_lossy).collect(),
            Some(v) => v.as_str_lossy().into_iter().collect(),
            None => Vec::new(),
        };
        let reason = last("x-last-death-reason")
            .or_else(|| text_of(death, "reason"))
            .or_else(|| text_of(headers, "x-first-death-reason"))
            .or_else(|| text_of(headers, REASON_HEADER))
            .or_else(|| text_of(headers, APP_REASON_HEADER))
            .unwrap_or_default();
        let retries = message.header(RETRIES_HEADER).map_or(0, retry_count);

        DeadLetter {
            message,
            destq,
            destex,
            rkeys,
            reason,
            persistent: message.properties.delivery_mode == Some(2),
            retries,
            size: message.body.len() as u64,
            user_id: original_user_id(message),
        }
    }

    /// The message's original routing key: the first of its dead-letter routing keys, else "".
    pub fn original_routing_key(&self) -> &str {
        self.rkeys.first().map_or("", String::as_str)
    }
}

/// The newest `x-death` entry (they are newest first) that is not for a dlqd delay queue.
fn newest_death(headers: &FieldTable) -> Option<&FieldTable> {
    let Some(Value::Array(entries)) = headers.get("x-death") else {
        return None;
    };
    entries.iter().find_map(|e| match e {
        Value::Table(t) => {
            let queue = t.get("queue").and_then(Value::as_str_lossy);
            match queue {
                Some(q) if q.starts_with(DELAY_QUEUE_PREFIX) => None,
                _ => Some(t),
            }
        }
        _ => None,
    })
}

/// `x-dlqd-retries` as a count: any integer type, an integral float, or a numeric
/// string; anything else (negative, garbage) is 0. Saturates at `u32::MAX`.
pub fn retry_count(v: &Value) -> u32 {
    let n: Option<u64> = match v {
        Value::F32(f) => float_count(*f as f64),
        Value::F64(f) => float_count(*f),
        Value::LongString(_) | Value::ShortString(_) => {
            v.as_str_lossy().and_then(|s| s.trim().parse::<u64>().ok())
        }
        Value::Timestamp(_) => None,
        other => other.as_u64(),
    };
    n.map_or(0, |n| u32::try_from(n).unwrap_or(u32::MAX))
}

fn float_count(f: f64) -> Option<u64> {
    // `as` saturates and maps NaN to 0; only whole, non-negative numbers count.
    (f.is_finite() && f >= 0.0 && f.fract() == 0.0).then_some(f as u64)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::message::Properties;

    fn msg(headers: FieldTable) -> Message {
        Message {
            properties: Properties {
                headers: Some(headers),
                ..Properties::default()
            },
            ..Message::default()
        }
    }

    fn death(queue: &str, reason: &str, exchange: &str, keys: &[&str]) -> Value {
        let mut t = FieldTable::new();
        t.insert("queue".into(), Value::string(queue));
        t.insert("reason".into(), Value::string(reason));
        t.insert("count".into(), Value::I64(1));
        t.insert("time".into(), Value::Timestamp(1_700_000_000));
        t.insert("exchange".into(), Value::string(exchange));
        t.insert(
            "routing-keys".into(),
            Value::Array(keys.iter().map(|k| Value::string(*k)).collect()),
        );
        Value::Table(t)
    }

    #[test]
    fn newest_non_delay_death_wins() {
        let mut h = FieldTable::new();
        h.insert(
            "x-death".into(),
            Value::Array(vec![
                death("dlqd.delay.orders.1000", "expired", "", &["x"]),
                death("orders", "rejected", "shop", &["order.new", "b"]),
                death("older", "maxlen", "other", &[]),
            ]),
        );
        h.insert("x-first-death-queue".into(), Value::string("older"));
        let m = msg(h);
        let d = DeadLetter::new(&m);
        assert_eq!(d.destq, "orders");
        assert_eq!(d.destex, "shop");
        assert_eq!(d.rkeys, vec!["order.new", "b"]);
        assert_eq!(d.reason, "rejected");
        assert_eq!(d.original_routing_key(), "order.new");
    }

    /// As RabbitMQ 4.x writes it: the entry for `orders` keeps the exchange of its first
    /// death (`shop`); the latest death was through `retry-ex`, which only
    /// `x-last-death-exchange` names.
    #[test]
    fn the_last_death_headers_of_4x_win() {
        let mut h = FieldTable::new();
        h.insert(
            "x-death".into(),
            Value::Array(vec![
                death("orders", "rejected", "shop", &["order.new"]),
                death("older", "expired", "other", &[]),
            ]),
        );
        h.insert("x-first-death-queue".into(), Value::string("older"));
        h.insert("x-last-death-queue".into(), Value::string("orders"));
        h.insert("x-last-death-reason".into(), Value::string("rejected"));
        h.insert("x-last-death-exchange".into(), Value::string("retry-ex"));
        let m = msg(h.clone());
        let d = DeadLetter::new(&m);
        assert_eq!(
            (d.destq.as_str(), d.reason.as_str(), d.destex.as_str()),
            ("orders", "rejected", "retry-ex")
        );
        assert_eq!(d.rkeys, vec!["order.new"]);

        // A last death in one of dlqd's old delay queues is not the application's.
        h.insert(
            "x-last-death-queue".into(),
            Value::string("dlqd.delay.orders.1000"),
        );
        h.insert("x-last-death-reason".into(), Value::string("expired"));
        h.insert("x-last-death-exchange".into(), Value::string(""));
        let m = msg(h);
        let d = DeadLetter::new(&m);
        assert_eq!(
            (d.destq.as_str(), d.reason.as_str(), d.destex.as_str()),
            ("orders", "rejected", "shop")
        );
    }

    #[test]
    fn first_death_then_app_reason_fallbacks() {
        let mut h = FieldTable::new();
        h.insert("x-first-death-queue".into(), Value::string("q1"));
        h.insert("x-first-death-exchange".into(), Value::string("ex1"));
        h.insert(APP_REASON_HEADER.into(), Value::string("E42"));
        let m = msg(h);
        let d = DeadLetter::new(&m);
        assert_eq!((d.destq.as_str(), d.destex.as_str()), ("q1", "ex1"));
        assert_eq!(d.reason, "E42");

        let mut h = FieldTable::new();
        h.insert(ORIGINAL_QUEUE_HEADER.into(), Value::string("orig"));
        let m = msg(h);
        assert_eq!(DeadLetter::new(&m).destq, "orig");
    }

    #[test]
    fn wrongly_typed_headers_are_absent() {
        for xdeath in [
            Value::string("not an array"),
            Value::Array(vec![Value::I32(3), Value::string("x")]),
            Value::Array(vec![]),
            Value::Void,
        ] {
            let mut h = FieldTable::new();
            h.insert("x-death".into(), xdeath);
            h.insert("x-first-death-queue".into(), Value::I64(5));
            h.insert(RETRIES_HEADER.into(), Value::string("lots"));
            let m = msg(h);
            let d = DeadLetter::new(&m);
            assert_eq!(d.destq, "");
            assert_eq!(d.reason, "");
            assert!(d.rkeys.is_empty());
            assert_eq!(d.retries, 0);
        }
        // An entry with wrongly typed fields is still the entry; its bad fields are "".
        let mut t = FieldTable::new();
        t.insert("queue".into(), Value::I32(1));
        t.insert("routing-keys".into(), Value::string("single"));
        let mut h = FieldTable::new();
        h.insert("x-death".into(), Value::Array(vec![Value::Table(t)]));
        let m = msg(h);
        let d = DeadLetter::new(&m);
        assert_eq!(d.destq, "");
        assert_eq!(d.rkeys, vec!["single"]);
        // No headers at all.
        let m = Message::default();
        let d = DeadLetter::new(&m);
        assert_eq!((d.destq.as_str(), d.retries, d.persistent), ("", 0, false));
    }

    #[test]
    fn retry_counts_of_every_type() {
        for (v, want) in [
            (Value::I8(3), 3),
            (Value::U8(3), 3),
            (Value::I16(-3), 0),
            (Value::U16(7), 7),
            (Value::I32(9), 9),
            (Value::U32(9), 9),
            (Value::I64(i64::MAX), u32::MAX),
            (Value::I64(-1), 0),
            (Value::string(" 12 "), 12),
            (Value::ShortString("4".into()), 4),
            (Value::string("-4"), 0),
            (Value::string("x"), 0),
            (Value::F64(2.0), 2),
            (Value::F64(2.5), 0),
            (Value::F64(f64::NAN), 0),
            (Value::F32(f32::INFINITY), 0),
            (Value::F64(1e300), u32::MAX),
            (Value::Bool(true), 0),
            (Value::Array(vec![]), 0),
        ] {
            assert_eq!(retry_count(&v), want, "{v:?}");
        }
    }

    #[test]
    fn persistence_and_size() {
        let m = Message {
            properties: Properties {
                delivery_mode: Some(2),
                ..Properties::default()
            },
            body: b"hello".to_vec(),
            ..Message::default()
        };
        let d = DeadLetter::new(&m);
        assert!(d.persistent);
        assert_eq!(d.size, 5);
    }
}
