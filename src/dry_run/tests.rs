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
