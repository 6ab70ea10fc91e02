//! Inputs the fuzzers (fuzz/, see docs/hardening.md) found that broke something, kept as
//! regression tests named after what broke.

use dlqd::rules;

/// `check_inline` of an empty list of `--rule` strings indexed an empty vector while
/// placing its diagnostics ("the table has no rules") and panicked.
#[test]
fn check_inline_with_no_rules_does_not_panic() {
    let checked = rules::check_inline(&[]);
    for d in &checked.diagnostics {
        assert!(d.path.starts_with("--rule"), "{d:?}");
    }
    // The same for rules that are only blanks and comments.
    let checked = rules::check_inline(&["".to_string(), "* comment".to_string()]);
    let _ = rules::diagnostic::render_all(&checked.diagnostics, "");
}
