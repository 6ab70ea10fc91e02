//! In memory: the facts (DeadLetter::new), the decision and the outgoing copies of
//! poison messages — wrongly typed death history, non-UTF-8 text, huge bodies, a
//! thousand headers, deep nesting — and a property test over arbitrary header trees:
//! reading never panics, and every rule table gives a decision.

use dlqd::dead_letter::DeadLetter;
use dlqd::decide::{Decider, Outcome};
use dlqd::message::{FieldTable, Message, Properties, Value};
use dlqd::outgoing;
use dlqd::rules;
use proptest::prelude::*;

const RULES: &str = "\
REASON(rejected) DESTQ(orders*) ACTION(RETRY) RETRY(3) DELAY(1s) BACKOFF(2)
HDR(kind=bin*) ACTION(FWD) FWDQ(&DESTQ.parked)
SIZE(>1MiB) ACTION(FWD) FWDEX(big) FWDRKEY(&RKEY)
REASON(/^exp/) ACTION(DISCARD)
ACTION(IGNORE)
";

fn decider() -> Decider {
    let checked = rules::check_source("poison.rules", RULES);
    Decider::new(checked.table.expect("valid rules"))
}

fn with_headers(h: FieldTable) -> Message {
    Message {
        properties: Properties {
            headers: Some(h),
            ..Properties::default()
        },
        ..Message::default()
    }
}

#[test]
fn non_utf8_header_values_match_as_lossy_text() {
    let mut h = FieldTable::new();
    h.insert("kind".into(), Value::LongString(b"bin\xff\xfe".to_vec()));
    h.insert(
        "x-first-death-queue".into(),
        Value::LongString(b"q\xc3\x28".to_vec()),
    );
    let m = with_headers(h);
    let dl = DeadLetter::new(&m);
    assert_eq!(dl.destq, "q\u{fffd}(");
    let d = decider().decide(&dl);
    assert_eq!(d.line, Some(2));
    assert!(
        matches!(&d.outcome, Outcome::Forward { routing_key, .. } if routing_key == "q\u{fffd}(.parked"),
        "{d:?}"
    );
}

#[test]
fn a_16_mib_body_is_sized_not_copied() {
    let m = Message {
        body: vec![0xff; 16 * 1024 * 1024],
        ..Message::default()
    };
    let dl = DeadLetter::new(&m);
    assert_eq!(dl.size, 16 * 1024 * 1024);
    assert_eq!(decider().decide(&dl).line, Some(3));
}

#[test]
fn a_thousand_headers_and_a_1_mib_value() {
    let mut h = FieldTable::new();
    for i in 0..1000 {
        h.insert(format!("h{i}"), Value::I64(i));
    }
    h.insert("big".into(), Value::string("x".repeat(1 << 20)));
    h.insert("x-first-death-reason".into(), Value::string("expired"));
    let m = with_headers(h);
    let dl = DeadLetter::new(&m);
    assert_eq!(dl.reason, "expired");
    assert_eq!(decider().decide(&dl).line, Some(4));
}

#[test]
fn wrongly_typed_death_history_falls_back_to_what_can_be_read() {
    let mut entry = FieldTable::new();
    entry.insert("queue".into(), Value::Array(vec![Value::string("orders")]));
    entry.insert("reason".into(), Value::string("rejected"));
    entry.insert("routing-keys".into(), Value::Table(FieldTable::new()));
    entry.insert("count".into(), Value::string("many"));
    let mut h = FieldTable::new();
    h.insert(
        "x-death".into(),
        Value::Array(vec![Value::Void, Value::Table(entry), Value::I8(1)]),
    );
    h.insert("x-first-death-queue".into(), Value::string("orders.eu"));
    let m = with_headers(h);
    let dl = DeadLetter::new(&m);
    // The entry's queue is unreadable: x-first-death-queue stands in; its reason is read.
    assert_eq!((&*dl.destq, &*dl.reason), ("orders.eu", "rejected"));
    assert!(dl.rkeys.is_empty());
    assert_eq!(decider().decide(&dl).line, Some(1));
}

#[test]
fn garbage_dlqd_marks_are_ignored_by_the_copies() {
    let mut h = FieldTable::new();
    h.insert("x-dlqd-retries".into(), Value::Table(FieldTable::new()));
    h.insert("x-dlqd-examined".into(), Value::F64(f64::NAN));
    h.insert("x-dlqd-pass".into(), Value::string("pass"));
    h.insert("x-death".into(), Value::string("not an array"));
    let m = with_headers(h);
    assert_eq!(outgoing::examined_at(&m), None);
    assert_eq!(outgoing::pass_of(&m), None);
    assert_eq!(DeadLetter::new(&m).retries, 0);
    // A retry keeps even a malformed death history as it is.
    let copy = outgoing::for_retry(&m, 1, false);
    assert_eq!(copy.header("x-death"), Some(&Value::string("not an array")));
}

fn leaf() -> impl Strategy<Value = Value> {
    prop_oneof![
        any::<bool>().prop_map(Value::Bool),
        any::<i8>().prop_map(Value::I8),
        any::<u16>().prop_map(Value::U16),
        any::<i32>().prop_map(Value::I32),
        any::<i64>().prop_map(Value::I64),
        any::<f64>().prop_map(Value::F64),
        (any::<u8>(), any::<u32>()).prop_map(|(scale, value)| Value::Decimal { scale, value }),
        ".{0,8}".prop_map(Value::ShortString),
        proptest::collection::vec(any::<u8>(), 0..12).prop_map(Value::LongString),
        proptest::sample::select(vec!["rejected", "expired", "orders", "orders.eu", "bin"])
            .prop_map(Value::string),
        any::<u64>().prop_map(Value::Timestamp),
        proptest::collection::vec(any::<u8>(), 0..6).prop_map(Value::Bytes),
        Just(Value::Void),
    ]
}

fn value() -> impl Strategy<Value = Value> {
    leaf().prop_recursive(4, 48, 6, |inner| {
        prop_oneof![
            proptest::collection::vec(inner.clone(), 0..5).prop_map(Value::Array),
            proptest::collection::btree_map(key(), inner, 0..5).prop_map(Value::Table),
        ]
    })
}

fn key() -> impl Strategy<Value = String> {
    prop_oneof![
        proptest::sample::select(vec![
            "x-death",
            "x-first-death-queue",
            "x-first-death-reason",
            "x-first-death-exchange",
            "x-dlqd-retries",
            "x-dlqd-examined",
            "x-dlqd-pass",
            "x-dlqd-death",
            "x-dlq-reason",
            "queue",
            "reason",
            "exchange",
            "routing-keys",
            "count",
            "kind",
        ])
        .prop_map(String::from),
        "[a-z-]{1,6}",
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    #[test]
    fn any_header_tree_is_read_and_decided_without_panic(
        headers in proptest::collection::btree_map(key(), value(), 0..8),
        mode in proptest::option::of(any::<u8>()),
        body in proptest::collection::vec(any::<u8>(), 0..64),
    ) {
        let m = Message {
            properties: Properties {
                headers: Some(headers),
                delivery_mode: mode,
                ..Properties::default()
            },
            body,
            ..Message::default()
        };
        let dl = DeadLetter::new(&m);
        let decider = decider();
        let d = decider.decide(&dl);
        prop_assert_eq!(&d, &decider.decide_linear(&dl));
        let _ = decider.why(&dl, &d);
        let _ = outgoing::examined_at(&m);
        let _ = outgoing::pass_of(&m);
        let _ = outgoing::for_retry(&m, dl.retries.saturating_add(1), false);
        // The capture format round-trips whatever the headers hold.
        let line = dlqd::capture::to_line(&m);
        let back = dlqd::capture::from_line(&line, 1).expect("to_line output reads back");
        prop_assert_eq!(dlqd::capture::to_line(&back), line);
    }
}
