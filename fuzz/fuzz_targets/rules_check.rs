//! Fuzz target: the rules parser and checker (`rules::check_source`) on arbitrary text.
//! It must never panic; every input gives a table or diagnostics, and each diagnostic's
//! line and column point inside the source.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(source) = std::str::from_utf8(data) else {
        return;
    };
    let checked = dlqd::rules::check_source("fuzz.rules", source);
    let lines = source.split('\n').count().max(1) as u64;
    for d in &checked.diagnostics {
        assert!(d.line >= 1, "line 0 in {d:?}");
        assert!(
            (d.line as u64) <= lines + 1,
            "line {} past the end ({lines} lines): {d:?}",
            d.line
        );
        assert!(d.column >= 1, "column 0 in {d:?}");
    }
    // Rendering (what `dlqd check` prints: the source line and a caret) must not panic.
    let _ = dlqd::rules::diagnostic::render_all(&checked.diagnostics, source);
    // The same text as inline --rule entries, one per line.
    let entries: Vec<String> = source.lines().map(str::to_string).collect();
    let _ = dlqd::rules::check_inline(&entries);
    if checked.table.is_none() {
        assert!(
            !checked.diagnostics.is_empty(),
            "no table and no diagnostic"
        );
    }
});
