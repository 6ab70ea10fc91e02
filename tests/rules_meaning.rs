//! Rules files that meant something else than written, or got a poor diagnostic: each
//! test reproduces one (issue 11) through the library or the real binary, no broker.
//! IBM's sample table read as a catch-all, `INPUTQ(' ')`, `PUTAUT`, a rules file that is
//! not UTF-8, `check --deny-warnings` saying "valid", errors that printed their cause
//! twice.

use std::path::Path;
use std::process::{Command, Output};

use dlqd::rules::{LoadError, PutAuthority, check_source};

fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

fn dlqd(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_dlqd"))
        .current_dir(root())
        .args(args)
        .output()
        .expect("run the dlqd binary")
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

const IBM_SAMPLE: &str = "fixtures/rules/lint/ibm-sample.rules";
const CAPTURES: [&str; 4] = [
    "fixtures/captures/maxlen.jsonl",
    "fixtures/captures/rejected.jsonl",
    "fixtures/captures/expired.jsonl",
    "fixtures/captures/delayed.jsonl",
];

/// IBM's sample table (queue names changed) forwarded every dead letter back to where it
/// died, history stripped, through `DESTQM(bbbb.1) ACTION(FWD) FWDQ(&DESTQ) HEADER(NO)`:
/// DESTQM was ignored. Now no message reaches that rule or the other MQ-only ones, and
/// --explain says why.
#[test]
fn ibm_sample_table_is_not_a_catch_all() {
    let mut args = vec![
        "dry-run",
        "--format",
        "json",
        "--explain",
        "--rules",
        IBM_SAMPLE,
    ];
    args.extend(CAPTURES);
    let out = dlqd(&args);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let stdout = text(&out.stdout);
    let lines: Vec<serde_json::Value> = stdout
        .lines()
        .map(|l| serde_json::from_str(l).expect("a JSON line"))
        .collect();
    assert_eq!(lines.len(), 13);
    for l in &lines {
        let rule = l["rule"].as_u64();
        // 12, 16, 20 and 27 start the REPLYQM/DESTQM rules.
        assert!(
            !matches!(rule, Some(12 | 16 | 20 | 27)),
            "a rule with an MQ-only pattern applied: {l}"
        );
        if l["action"] == "forward" {
            assert_eq!(l["target"], "DEADQ.MANUAL.INTERVENTION", "{l}");
        }
    }
    // Messages the RETRY and DISCARD rules leave fall to the last, plain forward.
    assert!(lines.iter().any(|l| l["rule"] == 29), "{stdout}");
    assert!(
        stdout.contains(r#""why":"DESTQM(bbbb.1): AMQP messages carry no queue manager name, so this rule never matches""#),
        "{stdout}"
    );
}

/// `DESTQM(*)` keeps today's reading (ignored, with a warning); any other value makes
/// the rule never match, with a warning that says so and a help line.
#[test]
fn mq_only_pattern_keywords_never_match_unless_star() {
    let c = check_source("t", "DESTQM(QM1) ACTION(DISCARD)\nACTION(IGNORE)\n");
    let table = c.table.as_ref().expect("valid");
    assert!(table.rules[0].patterns.never.is_some());
    let d = &c.diagnostics[0];
    assert_eq!(
        d.message,
        "DESTQM(QM1): AMQP messages carry no queue manager name, so this rule never matches"
    );
    assert!(
        d.help.as_deref().is_some_and(|h| h.contains("DESTQM(*)")),
        "{d:?}"
    );
    let c = check_source("t", "DESTQM(*) ACTION(DISCARD)\n");
    let table = c.table.as_ref().expect("valid");
    assert!(table.rules[0].patterns.never.is_none());
    assert!(
        c.diagnostics[0].message.ends_with("it is ignored"),
        "{:?}",
        c.diagnostics
    );
}

/// `INPUTQ(' ')` (runmqdlq: the queue manager's default DLQ) gave no diagnostic.
#[test]
fn inputq_blank_warns_and_names_no_queue() {
    let c = check_source("t", "INPUTQ(' ') WAIT(NO)\nACTION(IGNORE)\n");
    let table = c.table.as_ref().expect("valid with a warning");
    assert_eq!(table.control.input_queue, None);
    let d = &c.diagnostics[0];
    assert_eq!((d.line, d.column), (1, 8));
    assert_eq!(
        d.message,
        "INPUTQ(' ') means the queue manager's default dead-letter queue in runmqdlq; RabbitMQ has none"
    );
    assert_eq!(
        d.help.as_deref(),
        Some("name the DLQ: INPUTQ(name) or --queue")
    );
}

/// PUTAUT was ignored; now it says whose user_id a retry's or forward's copy carries.
#[test]
fn putaut_is_an_action_keyword_of_retry_and_forward() {
    use dlqd::rules::Action;
    let c = check_source(
        "t",
        "ACTION(FWD) FWDQ(q) PUTAUT(CTX)\nACTION(RETRY) PUTAUT(def)\nACTION(RETRY)\n",
    );
    let t = c.table.expect("valid");
    let auth: Vec<PutAuthority> = t
        .rules
        .iter()
        .map(|r| match &r.action {
            Action::Forward(f) => f.put_authority,
            Action::Retry(r) => r.put_authority,
            _ => unreachable!("only retries and forwards"),
        })
        .collect();
    assert_eq!(
        auth,
        [PutAuthority::Ctx, PutAuthority::Def, PutAuthority::Def]
    );
    let c = check_source("t", "ACTION(FWD) FWDQ(q) PUTAUT(ALL)\n");
    assert!(c.table.is_none());
    let d = &c.diagnostics[0];
    assert_eq!(
        (d.line, d.column, d.message.as_str()),
        (1, 28, "bad value for PUTAUT: `ALL`")
    );
}

/// A rules file with a Latin-1 comment got "stream did not contain valid UTF-8" (twice)
/// with no line or column.
#[test]
fn a_rules_file_that_is_not_utf8_gets_the_line_and_column_of_its_first_bad_byte() {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("latin1.rules");
    std::fs::write(
        &path,
        b"* orders\nDESTQ(a) ACTION(IGNORE) * caf\xe9\nACTION(IGNORE)\n",
    )
    .expect("write");
    let shown = path.display().to_string();
    match dlqd::rules::load(&path) {
        Err(LoadError::Invalid {
            errors, rendered, ..
        }) => {
            assert_eq!(errors, 1);
            assert!(
                rendered.starts_with(&format!(
                    "{shown}:2:30: error: the rules file is not UTF-8: byte 0xE9"
                )),
                "{rendered}"
            );
            assert!(rendered.contains("iconv"), "{rendered}");
        }
        other => panic!("expected Invalid, got {other:?}"),
    }
    let out = dlqd(&["check", &shown]);
    assert_eq!(out.status.code(), Some(1));
    let stdout = text(&out.stdout);
    assert!(
        stdout.contains(&format!("{shown}:2:30: error: ")),
        "{stdout}"
    );
    assert!(
        stdout.contains("\n  2 | DESTQ(a) ACTION(IGNORE) * caf\u{fffd}\n"),
        "{stdout}"
    );
    assert!(
        stdout.ends_with(&format!("{shown}: invalid: 1 error, 0 warnings\n")),
        "{stdout}"
    );
    let out = dlqd(&["dry-run", "--rules", &shown, CAPTURES[0]]);
    assert_eq!(out.status.code(), Some(1));
    assert!(text(&out.stderr).contains(&format!("{shown}:2:30: error: ")));
    assert!(out.stdout.is_empty());
}

/// `check --deny-warnings` printed "valid" and exited 1.
#[test]
fn check_deny_warnings_says_it_failed_because_of_warnings() {
    let f = "fixtures/rules/lint/unlimited-retry.rules";
    let out = dlqd(&["check", "--deny-warnings", f]);
    assert_eq!(out.status.code(), Some(1));
    let stdout = text(&out.stdout);
    let summary = stdout.lines().last().unwrap_or_default();
    assert_eq!(
        summary,
        format!("{f}: failed: 1 warning with --deny-warnings (2 rules, valid otherwise)")
    );
    assert!(!stdout.contains(": valid:"), "{stdout}");
    // Without the flag the same file is valid.
    let out = dlqd(&["check", f]);
    assert_eq!(out.status.code(), Some(0));
    assert!(text(&out.stdout).ends_with(&format!("{f}: valid: 2 rules, 1 warning\n")));
}

/// `No such file or directory (os error 2): No such file or directory (os error 2)`:
/// the cause was in the message and again as its source.
#[test]
fn a_missing_rules_file_names_its_cause_once() {
    for cmd in ["dry-run", "check"] {
        let out = match cmd {
            "dry-run" => dlqd(&["dry-run", "--rules", "no/such.rules", CAPTURES[0]]),
            _ => dlqd(&["check", "no/such.rules"]),
        };
        assert_eq!(out.status.code(), Some(1));
        let said = format!("{}{}", text(&out.stdout), text(&out.stderr));
        assert_eq!(
            said.matches("No such file or directory").count(),
            1,
            "{cmd}: {said}"
        );
    }
    let out = dlqd(&["dry-run", "--rules", IBM_SAMPLE, "no/such.jsonl"]);
    let said = text(&out.stderr);
    assert_eq!(
        said.matches("No such file or directory").count(),
        1,
        "{said}"
    );
}
