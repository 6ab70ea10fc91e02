//! `dlqd check` on broken and lint fixtures: the exact rendered diagnostics (insta
//! snapshots of the real binary's output and exit status), and the library renderer
//! producing the same text.

use std::path::{Path, PathBuf};
use std::process::Command;

use dlqd::rules::{check_source, diagnostic::render_all};

fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// Runs `dlqd check ARGS` from the crate root; returns (exit code, stdout).
fn dlqd_check(args: &[&str]) -> (i32, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_dlqd"))
        .arg("check")
        .args(args)
        .current_dir(root())
        .output()
        .expect("run the dlqd binary");
    let code = out.status.code().expect("dlqd exited normally");
    (
        code,
        String::from_utf8(out.stdout).expect("stdout is UTF-8"),
    )
}

fn fixtures(dir: &str) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(root().join("fixtures/rules").join(dir))
        .expect("fixtures directory")
        .map(|e| e.expect("directory entry").path())
        .filter(|p| p.extension().is_some_and(|e| e == "rules"))
        .collect();
    files.sort();
    assert!(!files.is_empty(), "no fixtures in {dir}");
    files
}

/// Snapshot every fixture in `dir`; check the exit status and the library renderer.
fn snapshot_dir(dir: &str, expected_code: i32) {
    for file in fixtures(dir) {
        let rel = format!(
            "fixtures/rules/{dir}/{}",
            file.file_name().unwrap().to_string_lossy()
        );
        let (code, stdout) = dlqd_check(&[&rel]);
        assert_eq!(
            code, expected_code,
            "exit status of dlqd check {rel}:\n{stdout}"
        );

        // The library renders the same diagnostics as the binary prints (minus the summary).
        let source = std::fs::read_to_string(&file).unwrap();
        let checked = check_source(&rel, &source);
        let rendered = render_all(&checked.diagnostics, &source);
        let (body, summary) = stdout
            .trim_end_matches('\n')
            .rsplit_once('\n')
            .unwrap_or(("", stdout.trim_end()));
        assert_eq!(rendered.trim_end(), body.trim_end(), "{rel}");
        assert!(
            summary.starts_with(&format!("{rel}: ")),
            "summary: {summary}"
        );
        if expected_code == 1 {
            assert!(checked.table.is_none(), "{rel} should be invalid");
            assert!(checked.errors() >= 1);
        } else {
            assert!(checked.table.is_some(), "{rel} should be valid");
            assert!(checked.warnings() >= 1, "{rel} should warn");
        }

        let name = format!("{dir}__{}", file.file_stem().unwrap().to_string_lossy());
        insta::assert_snapshot!(name, format!("exit: {code}\n{stdout}"));
    }
}

#[test]
fn broken_files_report_every_error() {
    snapshot_dir("broken", 1);
}

#[test]
fn lint_files_are_valid_with_warnings() {
    snapshot_dir("lint", 0);
}

#[test]
fn deny_warnings_makes_warnings_fail() {
    let f = "fixtures/rules/lint/unlimited-retry.rules";
    assert_eq!(dlqd_check(&[f]).0, 0);
    let (code, out) = dlqd_check(&["--deny-warnings", f]);
    assert_eq!(code, 1, "{out}");
    assert!(out.contains("warning: RETRY(*)"), "{out}");
    // A file without warnings still passes.
    assert_eq!(dlqd_check(&["--deny-warnings", "rules/purge.rules"]).0, 0);
}

#[test]
fn several_files_each_get_a_summary() {
    let (code, out) = dlqd_check(&[
        "rules/purge.rules",
        "fixtures/rules/broken/missing-action.rules",
        "no/such/file.rules",
    ]);
    assert_eq!(code, 1);
    insta::assert_snapshot!(out, @r"
    rules/purge.rules: valid: 4 rules, 0 warnings
    fixtures/rules/broken/missing-action.rules:2:1: error: this rule has no ACTION
      2 | DESTQ(orders.*) REASON(expired)
        | ^^^^^
        = help: add ACTION(RETRY), ACTION(FWD), ACTION(DISCARD) or ACTION(IGNORE)
    fixtures/rules/broken/missing-action.rules: invalid: 1 error, 0 warnings
    no/such/file.rules: error: cannot read: No such file or directory (os error 2)
    ");
}
