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

use std::borrow::Cow;
use std::ops::Bound;

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
    pub destq: Cow<'m, str>,
    pub destex: Cow<'m, str>,
    pub rkeys: Vec<Cow<'m, str>>,
    /// `rejected`, `expired`, `maxlen`, `delivery_limit`, or an application's code; "" when unknown.
    pub reason: Cow<'m, str>,
    pub persistent: bool,
    /// dlqd's retry count (`x-dlqd-retries`), 0 when absent or unreadable.
    pub retries: u32,
    /// Body size in bytes.
    pub size: u64,
    /// The user it was published as: its `user_id`, or the one dlqd kept in
    /// `x-dlqd-user-id` when it published a copy as itself; "" when none.
    pub user_id: &'m str,
}

/// `kept`: the `x-dlqd-user-id` header, when present.
fn original_user_id<'m>(message: &'m Message, kept: Option<&'m Value>) -> &'m str {
    if let Some(u) = message.properties.user_id.as_deref() {
        return u;
    }
    match kept {
        Some(Value::LongString(u)) => std::str::from_utf8(u).unwrap_or(""),
        Some(Value::ShortString(u)) => u,
        _ => "",
    }
}

/// The headers [`DeadLetter::new`] reads, found in one walk over the `x-` headers
/// (a lookup per name cost more than the rest of the decision).
#[derive(Default)]
struct Headers<'m> {
    death: Option<&'m Value>,
    last_queue: Option<&'m Value>,
    last_exchange: Option<&'m Value>,
    last_reason: Option<&'m Value>,
    first_queue: Option<&'m Value>,
    first_exchange: Option<&'m Value>,
    first_reason: Option<&'m Value>,
    original_queue: Option<&'m Value>,
    reason: Option<&'m Value>,
    app_reason: Option<&'m Value>,
    retries: Option<&'m Value>,
    user_id: Option<&'m Value>,
}

impl<'m> Headers<'m> {
    fn of(table: Option<&'m FieldTable>) -> Self {
        let mut h = Headers::default();
        // Every name read here starts with `x-`: sorted keys, so they are one range.
        let x_names = (Bound::Included("x-"), Bound::Excluded("x."));
        for (key, value) in table.into_iter().flat_map(|t| t.range::<str, _>(x_names)) {
            let slot = match key.as_str() {
                "x-death" => &mut h.death,
                "x-last-death-queue" => &mut h.last_queue,
                "x-last-death-exchange" => &mut h.last_exchange,
                "x-last-death-reason" => &mut h.last_reason,
                "x-first-death-queue" => &mut h.first_queue,
                "x-first-death-exchange" => &mut h.first_exchange,
                "x-first-death-reason" => &mut h.first_reason,
                ORIGINAL_QUEUE_HEADER => &mut h.original_queue,
                REASON_HEADER => &mut h.reason,
                APP_REASON_HEADER => &mut h.app_reason,
                RETRIES_HEADER => &mut h.retries,
                USER_ID_HEADER => &mut h.user_id,
                _ => continue,
            };
            *slot = Some(value);
        }
        h
    }
}

/// The fields of an `x-death` entry that [`DeadLetter::new`] reads, in one walk.
#[derive(Default)]
struct Death<'m> {
    queue: Option<&'m Value>,
    exchange: Option<&'m Value>,
    reason: Option<&'m Value>,
    routing_keys: Option<&'m Value>,
}

impl<'m> Death<'m> {
    fn of(entry: Option<&'m FieldTable>) -> Self {
        let mut d = Death::default();
        for (key, value) in entry.into_iter().flatten() {
            let slot = match key.as_str() {
                "queue" => &mut d.queue,
                "exchange" => &mut d.exchange,
                "reason" => &mut d.reason,
                "routing-keys" => &mut d.routing_keys,
                _ => continue,
            };
            *slot = Some(value);
        }
        d
    }
}

impl<'m> DeadLetter<'m> {
    pub fn new(message: &'m Message) -> Self {
        let h = Headers::of(message.properties.headers.as_ref());
        let death = Death::of(h.death.and_then(newest_death));

        // Borrowed from the message: a fact costs no allocation unless its header is
        // not valid UTF-8.
        let text = |v: Option<&'m Value>| -> Option<Cow<'m, str>> { v?.as_str_cow() };
        let not_delay = |q: &Cow<'m, str>| !q.starts_with(DELAY_QUEUE_PREFIX);

        let last_queue = text(h.last_queue);
        let last_is_ours = last_queue.as_ref().is_some_and(|q| !not_delay(q));
        let destq = last_queue
            .filter(not_delay)
            .or_else(|| text(death.queue))
            .or_else(|| text(h.first_queue).filter(not_delay))
            .or_else(|| text(h.original_queue))
            .unwrap_or_default();
        let last = |v: Option<&'m Value>| if last_is_ours { None } else { text(v) };
        let destex = last(h.last_exchange)
            .or_else(|| text(death.exchange))
            .or_else(|| text(h.first_exchange))
            .unwrap_or_default();
        let rkeys = match death.routing_keys {
            Some(Value::Array(keys)) => keys.iter().filter_map(Value::as_str_cow).collect(),
            Some(v) => v.as_str_cow().into_iter().collect(),
            None => Vec::new(),
        };
        let reason = last(h.last_reason)
            .or_else(|| text(death.reason))
            .or_else(|| text(h.first_reason))
            .or_else(|| text(h.reason))
            .or_else(|| text(h.app_reason))
            .unwrap_or_default();
        let retries = h.retries.map_or(0, retry_count);

        DeadLetter {
            message,
            destq,
            destex,
            rkeys,
            reason,
            persistent: message.properties.delivery_mode == Some(2),
            retries,
            size: message.body.len() as u64,
            user_id: original_user_id(message, h.user_id),
        }
    }

    /// The message's original routing key: the first of its dead-letter routing keys, else "".
    pub fn original_routing_key(&self) -> &str {
        self.rkeys.first().map_or("", |k| &**k)
    }
}

/// The newest `x-death` entry (they are newest first) that is not for a dlqd delay queue.
fn newest_death(x_death: &Value) -> Option<&FieldTable> {
    let Value::Array(entries) = x_death else {
        return None;
    };
    entries.iter().find_map(|e| match e {
        Value::Table(t) => {
            let queue = t.get("queue").and_then(Value::as_str_cow);
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
            (&*d.destq, &*d.reason, &*d.destex),
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
            (&*d.destq, &*d.reason, &*d.destex),
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
        assert_eq!((&*d.destq, &*d.destex), ("q1", "ex1"));
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
        assert_eq!((&*d.destq, d.retries, d.persistent), ("", 0, false));
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
