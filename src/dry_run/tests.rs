//! Dry-run reports over the real-dead-letter fixtures in fixtures/captures/, with the
//! SPEC §3 example table built in memory (the same table as fixtures/rules/spec-example.rules).

use super::*;
use crate::decide::tests::spec_table;

const FIXTURES: [&str; 4] = ["maxlen", "rejected", "expired", "delayed"];

fn fixture(name: &str) -> Vec<u8> {
    let path = format!(
        "{}/fixtures/captures/{name}.jsonl",
        env!("CARGO_MANIFEST_DIR")
    );
    std::fs::read(&path).unwrap_or_else(|e| panic!("{path}: {e}"))
}

fn run(format: Format, explain: bool) -> (String, Summary) {
    let decider = Decider::new(spec_table());
    let mut out = Vec::new();
    let mut dr = DryRun::new(&decider, &mut out, Options { format, explain });
    for name in FIXTURES {
        let bytes = fixture(name);
        dr.feed(&format!("{name}.jsonl"), bytes.as_slice())
            .unwrap_or_else(|e| panic!("{e}"));
    }
    let summary = dr.finish().unwrap_or_else(|e| panic!("{e}"));
    (String::from_utf8(out).expect("utf-8 report"), summary)
}

#[test]
fn text_report() {
    let (text, summary) = run(Format::Text, false);
    assert_eq!(summary.messages, 13);
    assert_eq!(summary.per_rule.iter().sum::<u64>() + summary.unmatched, 13);
    insta::assert_snapshot!("text", text);
}

#[test]
fn text_report_explained() {
    insta::assert_snapshot!("text_explain", run(Format::Text, true).0);
}

#[test]
fn json_report() {
    let (json, _) = run(Format::Json, false);
    for line in json.lines() {
        let v: serde_json::Value = serde_json::from_str(line).expect("each line is JSON");
        let keys: Vec<&str> = v
            .as_object()
            .expect("object")
            .keys()
            .map(String::as_str)
            .collect();
        let mut want = vec![
            "action",
            "attempt",
            "delay_ms",
            "index",
            "message_id",
            "rule",
            "target",
            "why",
        ];
        want.sort();
        assert_eq!(keys, want);
    }
    insta::assert_snapshot!("json", json);
}

#[test]
fn json_report_explained() {
    insta::assert_snapshot!("json_explain", run(Format::Json, true).0);
}

#[test]
fn bad_line_names_file_and_line() {
    let decider = Decider::new(spec_table());
    let mut dr = DryRun::new(
        &decider,
        std::io::sink(),
        Options {
            format: Format::Json,
            explain: false,
        },
    );
    let input = "{}\n\n{\"properties\":{\"delivery_mode\":\"two\"}}\n";
    let err = dr
        .feed("dlq.jsonl", input.as_bytes())
        .expect_err("bad line");
    assert_eq!(
        err.to_string(),
        "dlq.jsonl:3: delivery_mode: expected an integer, found a string"
    );
}

/// A dry-run of `captures` (JSON lines) under `rules` (a rules source).
fn run_source(rules: &str, captures: &str, format: Format, explain: bool) -> (String, Summary) {
    let table = crate::rules::check_source("t", rules)
        .table
        .expect("valid rules");
    let decider = Decider::new(table);
    let mut out = Vec::new();
    let mut dr = DryRun::new(&decider, &mut out, Options { format, explain });
    dr.feed("c.jsonl", captures.as_bytes())
        .unwrap_or_else(|e| panic!("{e}"));
    let summary = dr.finish().unwrap_or_else(|e| panic!("{e}"));
    (String::from_utf8(out).expect("utf-8 report"), summary)
}

/// Regression: a retry of a message without a death history was reported as `retry`
/// with an empty target, though the handler can only fail it.
#[test]
fn a_retry_without_an_original_queue_is_shown_as_failing() {
    let rules = "ACTION(RETRY) RETRY(3)\n";
    let captures = concat!(
        r#"{"properties":{"message_id":"no-death"}}"#,
        "\n",
        r#"{"properties":{"message_id":"died","headers":{"x-first-death-queue":"orders"}}}"#,
        "\n",
    );
    let (text, summary) = run_source(rules, captures, Format::Text, false);
    assert_eq!(summary.unroutable, 1);
    insta::assert_snapshot!(text, @r"
    INDEX  MESSAGE-ID        RULE  ACTION   TARGET                          DELAY     ATTEMPT
        0  no-death             1  retry    (none: no original queue)       0s        1
           note: no original queue: a retry goes back to the queue the message died in, and it has no death history (x-death, x-first-death-queue) naming one; the handler will fail this retry and leave the message on the DLQ
        1  died                 1  retry    orders                          0s        1

    2 messages from 1 capture

    RULE  MESSAGES  RULE TEXT
       1         2  ACTION(RETRY) RETRY(3)
       -         0  (no rule applies: left on the DLQ)

    ACTION   MESSAGES
    retry           2
    forward         0
    discard         0
    leave           0

    1 message has no target (a retry without an original queue, or a forward whose target came out empty): the handler will fail its action and leave it on the DLQ
    ");
    let (json, _) = run_source(rules, captures, Format::Json, false);
    let lines: Vec<serde_json::Value> = json
        .lines()
        .map(|l| serde_json::from_str(l).expect("JSON"))
        .collect();
    assert_eq!(lines[0]["target"], serde_json::Value::Null);
    assert!(
        lines[0]["unroutable"]
            .as_str()
            .is_some_and(|n| n.starts_with("no original queue: ")
                && n.ends_with(
                    "the handler will fail this retry and leave the message on the DLQ"
                )),
        "{json}"
    );
    assert_eq!(lines[1]["target"], "orders");
    assert!(lines[1].get("unroutable").is_none(), "{json}");
}

/// Regression: a forward whose target came out empty (FWDQ(&REPLYTO) without a
/// reply-to) is shown failing too.
#[test]
fn a_forward_to_an_empty_target_is_shown_as_failing() {
    let (text, summary) = run_source("ACTION(FWD) FWDQ(&REPLYTO)\n", "{}\n", Format::Text, false);
    assert_eq!(summary.unroutable, 1);
    let second = text.lines().nth(1).unwrap_or_default();
    assert!(second.contains("forward  (none: empty target)"), "{text}");
    assert!(
        text.contains("the handler will fail this forward and leave the message on the DLQ"),
        "{text}"
    );
}

/// Regression: long message ids and targets pushed the later columns out of line.
#[test]
fn long_values_keep_the_columns_aligned() {
    let rules = "ACTION(FWD) FWDEX(&DESTEX) FWDRKEY(&RKEY)\n";
    let captures = concat!(
        r#"{"properties":{"message_id":"123e4567-e89b-12d3-a456-426614174000","headers":{"x-death":[{"queue":"orders","reason":"rejected","exchange":"a-rather-long-exchange-name","routing-keys":["and.an.even.longer.routing.key.than.that"]}]}}}"#,
        "\n",
        r#"{"properties":{"message_id":"short","headers":{"x-death":[{"queue":"o","reason":"rejected","exchange":"ex","routing-keys":["k"]}]}}}"#,
        "\n",
    );
    let (text, _) = run_source(rules, captures, Format::Text, false);
    let lines: Vec<&str> = text.lines().take(3).collect();
    insta::assert_snapshot!(lines.join("\n"), @r"
    INDEX  MESSAGE-ID        RULE  ACTION   TARGET                          DELAY     ATTEMPT
        0  123e4567…4174000     1  forward  a-rather-long-e….key.than.that  -         -
        1  short                1  forward  ex/k                            -         -
    ");
    let col = |l: &str, at: usize| l.chars().nth(at);
    for l in &lines {
        // ACTION starts at character 31 (from 0), DELAY at 72.
        assert_eq!(col(l, 31).map(|c| c != ' '), Some(true), "{l}");
        assert_eq!(col(l, 72).map(|c| c != ' '), Some(true), "{l}");
    }
}

/// Regression (log/report injection): a message id with a newline and ESC forged a
/// line of the text report.
#[test]
fn producer_text_is_escaped_in_the_text_report() {
    let captures = concat!(
        r#"{"properties":{"message_id":"x\n    9  forged  \u001b[2K\u202e","headers":{"x-first-death-queue":"q\r"}}}"#,
        "\n"
    );
    let (text, _) = run_source(
        "DESTQ(a) ACTION(IGNORE)\nACTION(RETRY)\n",
        captures,
        Format::Text,
        true,
    );
    assert!(
        !text
            .chars()
            .any(|c| crate::escape::is_unsafe(c) && c != '\n'),
        "{text}"
    );
    let lines: Vec<&str> = text.lines().collect();
    assert!(lines[1].starts_with("    0  x\\n    9…u{202e}  "), "{text}");
    assert!(lines[1].contains("  q\\r  "), "{text}");
    assert_eq!(
        lines[2],
        "       line 1 skipped: DESTQ 'q\\r' does not match 'a'"
    );
}

/// The report's JSON strings are the bytes serde_json writes: every ASCII character
/// alone and amid text, U+007F, non-ASCII, and runs of escapes.
#[test]
fn json_strings_as_serde_json_writes_them() {
    let mut cases: Vec<String> = (0u8..=0x7f).map(|b| char::from(b).to_string()).collect();
    cases.extend((0u8..=0x7f).map(|b| format!("ab{}cd", char::from(b))));
    cases.extend(
        [
            "",
            "plain",
            "q\"uote\\back",
            "\"\"\\\\",
            "\n\r\t\x08\x0c\x00\x1f",
            "café 😀 \u{202E}",
            "</script>",
        ]
        .map(String::from),
    );
    let mut out = Vec::new();
    for s in &cases {
        out.clear();
        report::json_str(&mut out, s);
        assert_eq!(out, serde_json::to_vec(s).unwrap(), "{s:?}");
    }
}
