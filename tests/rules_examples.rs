//! Every example table in rules/ checks with no errors, and has at least one rule.

use std::path::Path;

use dlqd::rules::check_source;

#[test]
fn every_example_in_rules_dir_is_valid() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("rules");
    let mut checked = 0;
    for entry in std::fs::read_dir(&dir).expect("rules/ directory") {
        let path = entry.expect("directory entry").path();
        if path.extension().is_none_or(|e| e != "rules") {
            continue;
        }
        let source = std::fs::read_to_string(&path).expect("readable rules file");
        let shown = path.display().to_string();
        let result = check_source(&shown, &source);
        let errors: Vec<_> = result.diagnostics.iter().filter(|d| d.is_error()).collect();
        assert!(errors.is_empty(), "{shown} has errors: {errors:#?}");
        let table = result.table.expect("a valid table");
        assert!(!table.rules.is_empty(), "{shown} has no rules");
        checked += 1;
    }
    assert!(
        checked >= 5,
        "expected the five example tables, found {checked}"
    );
}

#[test]
fn load_reads_an_example() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("rules/spec-example.rules");
    let (table, _warnings) = dlqd::rules::load(&path).expect("spec example loads");
    assert_eq!(table.control.input_queue.as_deref(), Some("orders.dlq"));
    assert_eq!(table.rules.len(), 7);
}

#[test]
fn load_reports_every_error_rendered() {
    let path =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures/rules/broken/every-error.rules");
    match dlqd::rules::load(&path) {
        Err(dlqd::rules::LoadError::Invalid {
            errors, rendered, ..
        }) => {
            assert_eq!(errors, 11);
            assert_eq!(rendered.matches(": error: ").count(), 11, "{rendered}");
            assert!(rendered.contains("^^^^^^"), "{rendered}");
        }
        other => panic!("expected Invalid, got {other:?}"),
    }
}

#[test]
fn inline_rules_are_numbered() {
    let rules = vec![
        "DESTQ(orders) ACTION(RETRY) RETRY(3)".to_string(),
        "ACTION(FWD) FWDQ(&DESTQ.parked)".to_string(),
    ];
    let c = dlqd::rules::check_inline(&rules);
    let table = c.table.expect("valid inline table");
    assert_eq!(
        table.rules.iter().map(|r| r.line).collect::<Vec<_>>(),
        [1, 2]
    );

    let bad = vec![
        "DESTQ(orders) ACTION(IGNORE)".to_string(),
        "DESTQQ(x) ACTION(IGNORE)".to_string(),
    ];
    let c = dlqd::rules::check_inline(&bad);
    assert!(c.table.is_none());
    let d = &c.diagnostics[0];
    assert_eq!((d.path.as_str(), d.line, d.column), ("--rule #2", 1, 1));
    assert_eq!(
        d.render(&bad[1]),
        "--rule #2:1:1: error: unknown keyword DESTQQ\n  1 | DESTQQ(x) ACTION(IGNORE)\n    | ^^^^^^\n    = help: did you mean DESTQ?\n"
    );
}
