//! `dlqd dry-run` end to end: the binary over the real-dead-letter fixtures with the
//! SPEC §3 example rules file, stdin input, and the exit status on bad input.

use std::io::Write;
use std::process::{Command, Output, Stdio};

const RULES: &str = "fixtures/rules/spec-example.rules";
const CAPTURES: [&str; 4] = [
    "fixtures/captures/maxlen.jsonl",
    "fixtures/captures/rejected.jsonl",
    "fixtures/captures/expired.jsonl",
    "fixtures/captures/delayed.jsonl",
];

fn dlqd(args: &[&str], stdin: Option<&[u8]>) -> Output {
    let mut child = Command::new(env!("CARGO_BIN_EXE_dlqd"))
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run dlqd");
    if let Some(input) = stdin {
        child
            .stdin
            .take()
            .expect("stdin")
            .write_all(input)
            .expect("write stdin");
    } else {
        drop(child.stdin.take());
    }
    child.wait_with_output().expect("dlqd output")
}

fn text(b: &[u8]) -> String {
    String::from_utf8(b.to_vec()).expect("utf-8")
}

#[test]
fn text_report_over_real_dead_letters() {
    let mut args = vec!["dry-run", "--rules", RULES];
    args.extend(CAPTURES);
    let out = dlqd(&args, None);
    assert!(out.status.success(), "{}", text(&out.stderr));
    insta::assert_snapshot!("text", text(&out.stdout));
}

#[test]
fn json_report_over_real_dead_letters() {
    let mut args = vec!["dry-run", "--format", "json", "--explain", "--rules", RULES];
    args.extend(CAPTURES);
    let out = dlqd(&args, None);
    assert!(out.status.success(), "{}", text(&out.stderr));
    insta::assert_snapshot!("json_explain", text(&out.stdout));
}

#[test]
fn reads_stdin_for_dash() {
    let input = std::fs::read(CAPTURES[0]).expect("fixture");
    let from_stdin = dlqd(
        &["dry-run", "--format", "json", "--rules", RULES, "-"],
        Some(&input),
    );
    assert!(from_stdin.status.success(), "{}", text(&from_stdin.stderr));
    let from_file = dlqd(
        &["dry-run", "--format", "json", "--rules", RULES, CAPTURES[0]],
        None,
    );
    assert_eq!(text(&from_stdin.stdout), text(&from_file.stdout));
    assert_eq!(text(&from_stdin.stdout).lines().count(), 4);
}

#[test]
fn bad_capture_line_exits_1_naming_file_and_line() {
    let input = b"{}\n{\"properties\":{\"delivery_mode\":2}}\n{not json\n{}\n";
    let out = dlqd(
        &["dry-run", "--format", "json", "--rules", RULES, "-"],
        Some(input),
    );
    assert_eq!(out.status.code(), Some(1));
    let err = text(&out.stderr);
    assert!(err.contains("<stdin>:3: invalid JSON"), "{err}");
    assert_eq!(err.matches("invalid JSON").count(), 1, "said once: {err}");
    // The two good lines before it were reported.
    assert_eq!(text(&out.stdout).lines().count(), 2);
}

#[test]
fn missing_capture_exits_1() {
    let out = dlqd(
        &["dry-run", "--rules", RULES, "fixtures/captures/nope.jsonl"],
        None,
    );
    assert_eq!(out.status.code(), Some(1));
    let err = text(&out.stderr);
    assert!(
        err.contains("cannot open capture fixtures/captures/nope.jsonl"),
        "{err}"
    );
}

#[test]
fn invalid_rules_exit_1_with_diagnostics() {
    let out = dlqd(
        &[
            "dry-run",
            "--rules",
            "fixtures/rules/broken/missing-action.rules",
            CAPTURES[0],
        ],
        None,
    );
    assert_eq!(out.status.code(), Some(1));
    let err = text(&out.stderr);
    assert!(err.contains("missing-action.rules:"), "{err}");
    assert!(err.contains("error"), "{err}");
    assert!(out.stdout.is_empty());
}
