//! Capture format tests: typed values, hand-written lines, errors naming the line, and
//! a round-trip property over every `Value` variant.

use proptest::prelude::*;

use super::*;

fn headers(m: &Message) -> &FieldTable {
    m.properties.headers.as_ref().expect("headers")
}

#[test]
fn spec_example_line_reads() {
    let m = from_line(
        r#"{"exchange":"","routing_key":"orders.dlq","properties":{"delivery_mode":2,"message_id":"42","headers":{"x-dlqd-retries":3}},"body":"text"}"#,
        1,
    )
    .expect("valid");
    assert_eq!(m.routing_key, "orders.dlq");
    assert_eq!(m.properties.delivery_mode, Some(2));
    assert_eq!(m.properties.message_id.as_deref(), Some("42"));
    assert_eq!(headers(&m).get("x-dlqd-retries"), Some(&Value::I64(3)));
    assert_eq!(m.body, b"text");
}

#[test]
fn minimal_hand_written_lines() {
    assert_eq!(from_line("{}", 1).expect("empty"), Message::default());
    let m = from_line(
        r#"{"properties":{"headers":{"x-death":[{"queue":"orders","reason":"rejected","count":1,"time":{"$type":"timestamp","value":1700000000}}]}}}"#,
        1,
    )
    .expect("valid");
    let Some(Value::Array(d)) = headers(&m).get("x-death") else {
        panic!("x-death array expected")
    };
    let Value::Table(e) = &d[0] else {
        panic!("table expected")
    };
    assert_eq!(e.get("time"), Some(&Value::Timestamp(1_700_000_000)));
    assert_eq!(e.get("count"), Some(&Value::I64(1)));
    assert_eq!(e.get("queue"), Some(&Value::string("orders")));
}

#[test]
fn written_form_of_each_type() {
    let mut h = FieldTable::new();
    h.insert("s".into(), Value::string("x"));
    h.insert("l".into(), Value::I64(-3));
    h.insert("d".into(), Value::F64(1.0));
    h.insert("nan".into(), Value::F64(f64::NAN));
    h.insert("b".into(), Value::I8(-1));
    h.insert("ts".into(), Value::Timestamp(5));
    h.insert(
        "dec".into(),
        Value::Decimal {
            scale: 2,
            value: 12345,
        },
    );
    h.insert("raw".into(), Value::LongString(vec![0xff, 0]));
    h.insert("x".into(), Value::Bytes(vec![1, 2]));
    h.insert("v".into(), Value::Void);
    let mut tricky = FieldTable::new();
    tricky.insert("$type".into(), Value::string("i8"));
    h.insert("t".into(), Value::Table(tricky));
    let m = Message {
        properties: Properties {
            headers: Some(h),
            ..Properties::default()
        },
        body: vec![0xc3, 0x28],
        ..Message::default()
    };
    let line = to_line(&m);
    assert_eq!(
        line,
        r#"{"exchange":"","routing_key":"","properties":{"headers":{"b":{"$type":"i8","value":-1},"d":1.0,"dec":{"$type":"decimal","scale":2,"value":12345},"l":-3,"nan":{"$type":"f64","value":"NaN"},"raw":{"$type":"longstr","base64":"/wA="},"s":"x","t":{"$type":"table","value":{"$type":"i8"}},"ts":{"$type":"timestamp","value":5},"v":{"$type":"void"},"x":{"$type":"bytes","value":"AQI="}}},"body_base64":"wyg="}"#
    );
    let back = from_line(&line, 1).expect("round trip");
    assert!(same_message(&m, &back));
}

#[test]
fn errors_name_the_line_and_the_place() {
    let cases = [
        ("not json", "line 7: invalid JSON"),
        ("[1]", "line 7: expected a JSON object, found an array"),
        (
            r#"{"routing-key":"x"}"#,
            "line 7: unknown field \"routing-key\"",
        ),
        (
            r#"{"properties":{"message-id":"x"}}"#,
            "line 7: unknown property \"message-id\"",
        ),
        (
            r#"{"properties":{"delivery_mode":300}}"#,
            "line 7: delivery_mode: 300 is out of range",
        ),
        (
            r#"{"body":"a","body_base64":"YQ=="}"#,
            "line 7: both \"body\" and \"body_base64\"",
        ),
        (
            r#"{"body_base64":"!!"}"#,
            "line 7: body_base64: invalid base64",
        ),
        (
            r#"{"properties":{"headers":{"x-death":[{"count":{"$type":"u8","value":256}}]}}}"#,
            "line 7: headers.x-death[0].count: 256 is not a valid u8",
        ),
        (
            r#"{"properties":{"headers":{"a":{"$type":"quad","value":1}}}}"#,
            "line 7: headers.a: unknown $type \"quad\"",
        ),
        (
            r#"{"properties":{"headers":{"a":18446744073709551615}}}"#,
            "line 7: headers.a: 18446744073709551615 does not fit",
        ),
        (
            r#"{"properties":{"headers":[1]}}"#,
            "line 7: headers: expected an object",
        ),
    ];
    for (text, want) in cases {
        let err = from_line(text, 7).expect_err(text).to_string();
        assert!(err.starts_with(want), "{text}: got {err:?}, want {want:?}");
    }
}

#[test]
fn reader_skips_blank_lines_and_counts_lines() {
    let input = "{}\n\n  \r\n{\"routing_key\":\"a\"}\r\nbroken\n{}";
    let items: Vec<_> = Reader::new(input.as_bytes()).collect();
    assert_eq!(items.len(), 4);
    assert_eq!(
        items[1].as_ref().map(|m| m.routing_key.as_str()).ok(),
        Some("a")
    );
    let err = items[2].as_ref().expect_err("broken line");
    assert_eq!(err.line, 5);
    assert!(items[3].is_ok());
}

#[test]
fn reader_reports_non_utf8_lines() {
    let input: &[u8] = b"{}\n\xff\xfe\n";
    let items: Vec<_> = Reader::new(input).collect();
    assert_eq!(items.len(), 2);
    let err = items[1].as_ref().expect_err("bad bytes");
    assert_eq!(err.to_string(), "line 2: not UTF-8 text");
}

// ---------------------------------------------------------------- round trip

/// Equality where NaN equals NaN (NaN payloads are not kept, see the module doc).
fn same_value(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::F64(x), Value::F64(y)) => (x.is_nan() && y.is_nan()) || x.to_bits() == y.to_bits(),
        (Value::F32(x), Value::F32(y)) => (x.is_nan() && y.is_nan()) || x.to_bits() == y.to_bits(),
        (Value::Array(x), Value::Array(y)) => {
            x.len() == y.len() && x.iter().zip(y).all(|(a, b)| same_value(a, b))
        }
        (Value::Table(x), Value::Table(y)) => same_table(x, y),
        _ => a == b,
    }
}

fn same_table(a: &FieldTable, b: &FieldTable) -> bool {
    a.len() == b.len()
        && a.iter()
            .zip(b)
            .all(|((ka, va), (kb, vb))| ka == kb && same_value(va, vb))
}

fn same_message(a: &Message, b: &Message) -> bool {
    let strip = |m: &Message| {
        let mut m = m.clone();
        m.properties.headers = None;
        m
    };
    strip(a) == strip(b)
        && match (&a.properties.headers, &b.properties.headers) {
            (Some(x), Some(y)) => same_table(x, y),
            (None, None) => true,
            _ => false,
        }
}

fn arb_bytes() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        any::<String>().prop_map(String::into_bytes),
        prop::collection::vec(any::<u8>(), 0..12),
    ]
}

fn arb_key() -> impl Strategy<Value = String> {
    prop_oneof![
        Just("$type".to_string()),
        Just("value".to_string()),
        "[a-z$-]{0,6}",
        any::<String>(),
    ]
}

fn arb_value() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        any::<bool>().prop_map(Value::Bool),
        any::<i8>().prop_map(Value::I8),
        any::<u8>().prop_map(Value::U8),
        any::<i16>().prop_map(Value::I16),
        any::<u16>().prop_map(Value::U16),
        any::<i32>().prop_map(Value::I32),
        any::<u32>().prop_map(Value::U32),
        any::<i64>().prop_map(Value::I64),
        any::<f32>().prop_map(Value::F32),
        any::<f64>().prop_map(Value::F64),
        (any::<u8>(), any::<u32>()).prop_map(|(scale, value)| Value::Decimal { scale, value }),
        any::<String>().prop_map(Value::ShortString),
        arb_bytes().prop_map(Value::LongString),
        any::<u64>().prop_map(Value::Timestamp),
        arb_bytes().prop_map(Value::Bytes),
        Just(Value::Void),
    ];
    leaf.prop_recursive(3, 24, 4, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..4).prop_map(Value::Array),
            prop::collection::btree_map(arb_key(), inner, 0..4).prop_map(Value::Table),
        ]
    })
}

fn arb_message() -> impl Strategy<Value = Message> {
    let s = || prop::option::of(any::<String>());
    (
        (any::<String>(), any::<String>(), arb_bytes()),
        (s(), s(), s(), s(), s(), s(), s(), s(), s(), s()),
        (
            prop::option::of(any::<u8>()),
            prop::option::of(any::<u8>()),
            prop::option::of(any::<u64>()),
        ),
        prop::option::of(prop::collection::btree_map(arb_key(), arb_value(), 0..5)),
    )
        .prop_map(
            |(
                (exchange, routing_key, body),
                (ct, ce, cid, rt, exp, mid, ty, uid, aid, clid),
                (dm, pr, ts),
                headers,
            )| Message {
                exchange,
                routing_key,
                body,
                properties: Properties {
                    content_type: ct,
                    content_encoding: ce,
                    headers,
                    delivery_mode: dm,
                    priority: pr,
                    correlation_id: cid,
                    reply_to: rt,
                    expiration: exp,
                    message_id: mid,
                    timestamp: ts,
                    message_type: ty,
                    user_id: uid,
                    app_id: aid,
                    cluster_id: clid,
                },
            },
        )
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(500))]
    #[test]
    fn every_message_round_trips(m in arb_message()) {
        let line = to_line(&m);
        prop_assert!(!line.contains('\n'), "a line must be one line");
        let back = from_line(&line, 1).map_err(|e| TestCaseError::fail(e.to_string()))?;
        prop_assert!(same_message(&m, &back), "{:?}\n{}\n{:?}", m, line, back);
        let mut buf = Vec::new();
        write_line(&mut buf, &m).map_err(|e| TestCaseError::fail(e.to_string()))?;
        let again: Vec<_> = Reader::new(buf.as_slice()).collect();
        prop_assert_eq!(again.len(), 1);
    }
}

#[test]
fn a_byte_order_mark_at_the_start_is_skipped() {
    let text = "\u{feff}{\"body\":\"a\"}\n{\"body\":\"b\"}\n";
    let got: Vec<Message> = Reader::new(text.as_bytes())
        .collect::<Result<_, _>>()
        .expect("a BOM is not an error");
    assert_eq!(got.len(), 2);
    assert_eq!(got[0].body, b"a");
    // Only at the start: one later is part of the line (and not JSON).
    let later = "{\"body\":\"a\"}\n\u{feff}{\"body\":\"b\"}\n";
    let err = Reader::new(later.as_bytes())
        .collect::<Result<Vec<_>, _>>()
        .unwrap_err();
    assert_eq!(err.line, 2);
    // A BOM alone is an empty capture.
    assert_eq!(Reader::new("\u{feff}\n".as_bytes()).count(), 0);
}
