//! Property test (log/report injection): whatever a producer puts in a message — any
//! text or bytes in its id, app id, user id, type, content type, reply-to, header names
//! and values, routing keys, queue and exchange names in its death history — no line
//! of the dry-run text report (with --explain) or of inspect's listing and summary
//! holds a raw control or otherwise unsafe character (`dlqd::escape::is_unsafe`), and
//! each report has exactly the lines it should: nothing a producer writes starts one.
//! Messages go through the public API as captures: `capture` → `dry_run` / `inspect`.

use std::time::{Duration, SystemTime};

use dlqd::capture;
use dlqd::dead_letter::DeadLetter;
use dlqd::decide::Decider;
use dlqd::dry_run::{DryRun, Format, Options};
use dlqd::escape::is_unsafe;
use dlqd::inspect::{MessageMeta, Summary, message_header, message_line};
use dlqd::message::{FieldTable, Message, Properties, Value};
use proptest::prelude::*;

/// Rules that put the message's values into the report: every earlier rule fails on a
/// producer-supplied field (so --explain quotes it), targets are built from them, and the
/// catch-all before the last quotes every field it matched.
const RULES: &str = "\
DESTQ(no-such-queue) ACTION(IGNORE)
DESTEX(no-such-exchange) ACTION(IGNORE)
RKEY(no-such-key) ACTION(IGNORE)
REASON(no-such-reason) ACTION(IGNORE)
MSGID(no-such-id) ACTION(IGNORE)
APPID(no-such-app) ACTION(IGNORE)
USERID(no-such-user) ACTION(IGNORE)
TYPE(no-such-type) ACTION(IGNORE)
CONTENTTYPE(no-such-type) ACTION(IGNORE)
REPLYTO(no-such-queue) ACTION(IGNORE)
HDR(h=no-such-value) ACTION(IGNORE)
HDR(x-death=*) SIZE(<3) ACTION(FWD) FWDEX(&DESTEX) FWDRKEY(&RKEY.&REPLYTO.&REASON)
SIZE(<6) ACTION(RETRY) RETRY(5)
SIZE(<9) ACTION(FWD) FWDQ(&REPLYTO)
HDR(h=*) DESTQ(*) DESTEX(*) RKEY(*) REASON(*) MSGID(*) APPID(*) USERID(*) TYPE(*) +
  CONTENTTYPE(*) REPLYTO(*) SIZE(<12) ACTION(IGNORE)
ACTION(DISCARD)
";

/// Characters that break lines, move the cursor, reorder text or hide in plain sight.
const NASTY: &[char] = &[
    '\n', '\r', '\t', '\u{1b}', '\u{0}', '\u{7f}', '\u{85}', '\u{9b}', '\u{2028}', '\u{2029}',
    '\u{200e}', '\u{200f}', '\u{202a}', '\u{202e}', '\u{2066}', '\u{2069}', '\u{feff}', '\\', '\'',
    '"', '…', 'é', ' ',
];

fn text() -> impl Strategy<Value = String> {
    prop::collection::vec(
        prop_oneof![3 => prop::sample::select(NASTY), 1 => any::<char>(), 2 => prop::char::range('a', 'z')],
        0..14,
    )
    .prop_map(String::from_iter)
}

fn bytes() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        text().prop_map(String::into_bytes),
        prop::collection::vec(any::<u8>(), 0..14),
    ]
}

/// A header value: text, bytes (valid UTF-8 or not), or a number.
fn header_value() -> impl Strategy<Value = Value> {
    prop_oneof![
        text().prop_map(Value::string),
        bytes().prop_map(Value::LongString),
        bytes().prop_map(Value::Bytes),
        any::<i32>().prop_map(Value::I32),
    ]
}

/// One x-death entry with producer-chosen names.
fn death() -> impl Strategy<Value = Value> {
    (
        text(),
        text(),
        text(),
        prop::collection::vec(text(), 0..3),
        prop::option::of(0u64..2_000_000_000),
    )
        .prop_map(|(queue, reason, exchange, keys, time)| {
            let mut t = FieldTable::new();
            t.insert("queue".into(), Value::string(queue));
            t.insert("reason".into(), Value::string(reason));
            t.insert("exchange".into(), Value::string(exchange));
            t.insert("count".into(), Value::I64(1));
            t.insert(
                "routing-keys".into(),
                Value::Array(keys.into_iter().map(Value::string).collect()),
            );
            if let Some(time) = time {
                t.insert("time".into(), Value::Timestamp(time));
            }
            Value::Table(t)
        })
}

fn message() -> impl Strategy<Value = Message> {
    (
        (
            prop::option::of(text()),
            prop::option::of(text()),
            prop::option::of(text()),
            prop::option::of(text()),
            prop::option::of(text()),
            prop::option::of(text()),
        ),
        prop::collection::vec((text(), header_value()), 0..3),
        prop::option::of(header_value()),
        prop::collection::vec(death(), 0..3),
        prop::option::of(text()),
        (text(), text(), bytes(), any::<bool>()),
    )
        .prop_map(
            |(
                (message_id, app_id, user_id, message_type, content_type, reply_to),
                headers,
                h,
                deaths,
                first_death_queue,
                (exchange, routing_key, body, persistent),
            )| {
                let mut table: FieldTable = headers.into_iter().collect();
                if let Some(h) = h {
                    table.insert("h".into(), h);
                }
                if !deaths.is_empty() {
                    table.insert("x-death".into(), Value::Array(deaths));
                }
                if let Some(q) = first_death_queue {
                    table.insert("x-first-death-queue".into(), Value::string(q));
                }
                Message {
                    exchange,
                    routing_key,
                    properties: Properties {
                        message_id,
                        app_id,
                        user_id,
                        message_type,
                        content_type,
                        reply_to,
                        delivery_mode: Some(if persistent { 2 } else { 1 }),
                        headers: Some(table),
                        ..Properties::default()
                    },
                    body,
                }
            },
        )
}

/// Every line of `report` (which ends with a newline) is free of unsafe characters.
fn assert_safe_lines(what: &str, report: &str) -> Result<usize, TestCaseError> {
    prop_assert!(report.ends_with('\n'), "{what} ends with a newline");
    let lines: Vec<&str> = report[..report.len() - 1].split('\n').collect();
    for line in &lines {
        prop_assert!(
            !line.chars().any(is_unsafe),
            "{what}: unsafe character in {line:?}"
        );
    }
    Ok(lines.len())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(200))]

    #[test]
    fn no_producer_text_reaches_a_report_line_unescaped(
        messages in prop::collection::vec(message(), 1..6),
        queue in text(),
    ) {
        let checked = dlqd::rules::check_source("escaping.rules", RULES);
        let table = checked.table.expect("the test's rules are valid");
        let nrules = table.rules.len();
        let decider = Decider::new(table);

        // The messages as a capture file, read back as dry-run and inspect read them.
        let mut capture_file = Vec::new();
        for m in &messages {
            capture::write_line(&mut capture_file, m).expect("write a capture line");
        }
        let read: Vec<Message> = capture::Reader::new(capture_file.as_slice())
            .collect::<Result<_, _>>()
            .expect("the capture reads back");
        prop_assert_eq!(&read, &messages);

        // Dry-run, text with --explain.
        let mut out = Vec::new();
        let mut dry = DryRun::new(&decider, &mut out, Options { format: Format::Text, explain: true });
        dry.feed("escaping.jsonl", capture_file.as_slice()).expect("dry-run reads the capture");
        let summary = dry.finish().expect("dry-run finishes");
        let report = String::from_utf8(out).expect("the report is UTF-8");
        let mut expected = 1; // the header
        for m in &read {
            let dl = DeadLetter::new(m);
            let decision = decider.decide(&dl);
            expected += 1 + decider.explain(&dl).len() + 1; // the line, skipped rules, why
            if decision.outcome.unroutable().is_some() {
                expected += 1; // the note
            }
        }
        // Blank, count, blank, header, a line per rule and one for "no rule", blank,
        // action header, four actions; a blank and a line about messages without a target.
        expected += 4 + nrules + 1 + 2 + 4;
        if summary.unroutable > 0 {
            expected += 2;
        }
        let lines = assert_safe_lines("dry-run", &report)?;
        prop_assert_eq!(lines, expected, "dry-run report:\n{}", report);

        // Dry-run, JSON: one parseable object per message.
        let mut out = Vec::new();
        let mut dry = DryRun::new(&decider, &mut out, Options { format: Format::Json, explain: true });
        dry.feed("escaping.jsonl", capture_file.as_slice()).expect("dry-run reads the capture");
        dry.finish().expect("dry-run finishes");
        let json = String::from_utf8(out).expect("the report is UTF-8");
        prop_assert_eq!(json.lines().count(), messages.len());
        for line in json.lines() {
            prop_assert!(serde_json::from_str::<serde_json::Value>(line).is_ok(), "{}", line);
        }

        // Inspect: the listing (with bodies) and the summary.
        let mut listing = format!("{}\n", message_header(true));
        let mut inspected = Summary::new();
        let mut without_time = 0;
        for (i, m) in read.iter().enumerate() {
            let meta = MessageMeta::new(i as u64, &DeadLetter::new(m));
            listing.push_str(&message_line(&meta, Some(&m.body)));
            listing.push('\n');
            if meta.death_time.is_none() {
                without_time += 1;
            }
            inspected.add(&meta);
        }
        let lines = assert_safe_lines("inspect listing", &listing)?;
        prop_assert_eq!(lines, 1 + messages.len(), "listing:\n{}", listing);

        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(2_000_000_000);
        let rendered = inspected.render(&queue, now);
        let groups = inspected.groups().count();
        let with_range = inspected.death_range().is_some();
        // Title, blank, header, groups, blank, died, (without a time), size.
        let expected = 1 + 1 + 1 + groups + 1 + 1 + usize::from(with_range && without_time > 0) + 1;
        let lines = assert_safe_lines("inspect summary", &rendered)?;
        prop_assert_eq!(lines, expected, "summary:\n{}", rendered);
    }
}
