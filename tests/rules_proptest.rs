//! Property tests: whatever the input — random text, random bytes, or valid rules
//! files with characters inserted, deleted or replaced — `check_source` never panics,
//! and yields a table or at least one error, every diagnostic positioned inside the source.

use dlqd::rules::{check_source, diagnostic::render_all};
use proptest::prelude::*;

const EXAMPLES: &[&str] = &[
    include_str!("../rules/spec-example.rules"),
    include_str!("../rules/runmqdlq-style.rules"),
    include_str!("../rules/retry-then-park.rules"),
    include_str!("../rules/purge.rules"),
    include_str!("../rules/redelivery-schedule.rules"),
];

/// Characters that matter to the lexer, to make mutations interesting.
const SPECIAL: &[char] = &[
    '(', ')', '\'', '/', '\\', '+', '-', '*', '#', ',', ' ', '\t', '\n', '\r', '&', '=', '>', '<',
    '?', 'é', '€',
];

fn assert_well_formed(source: &str) {
    let checked = check_source("p.rules", source);
    let errors = checked.diagnostics.iter().filter(|d| d.is_error()).count();
    assert!(
        checked.table.is_some() != (errors > 0),
        "a table exactly when there are no errors: {:?}",
        checked.diagnostics
    );
    let lines: Vec<&str> = source.lines().collect();
    for d in &checked.diagnostics {
        assert!(d.line >= 1 && d.column >= 1 && d.len >= 1, "{d:?}");
        assert!(
            (d.line as usize) <= lines.len().max(1),
            "line {} beyond {} lines: {d:?}",
            d.line,
            lines.len()
        );
        let width = lines
            .get(d.line as usize - 1)
            .map_or(0, |l| l.chars().count());
        assert!(
            d.column as usize <= width + 1,
            "column {} beyond line of {width} chars: {d:?}\n{source:?}",
            d.column
        );
    }
    let _ = render_all(&checked.diagnostics, source);
}

#[derive(Debug, Clone)]
enum Edit {
    Insert(usize, char),
    Delete(usize),
    Replace(usize, char),
}

fn edit() -> impl Strategy<Value = Edit> {
    let ch = prop_oneof![
        3 => proptest::sample::select(SPECIAL),
        1 => any::<char>(),
    ];
    prop_oneof![
        (any::<usize>(), ch.clone()).prop_map(|(i, c)| Edit::Insert(i, c)),
        any::<usize>().prop_map(Edit::Delete),
        (any::<usize>(), ch).prop_map(|(i, c)| Edit::Replace(i, c)),
    ]
}

fn apply(source: &str, edits: &[Edit]) -> String {
    let mut chars: Vec<char> = source.chars().collect();
    for e in edits {
        let n = chars.len();
        match *e {
            Edit::Insert(i, c) => chars.insert(i % (n + 1), c),
            Edit::Delete(i) if n > 0 => {
                chars.remove(i % n);
            }
            Edit::Replace(i, c) if n > 0 => chars[i % n] = c,
            _ => {}
        }
    }
    chars.into_iter().collect()
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn random_text_never_panics(s in ".{0,300}") {
        assert_well_formed(&s);
    }

    #[test]
    fn random_lexer_soup_never_panics(
        s in proptest::collection::vec(
            prop_oneof![
                proptest::sample::select(SPECIAL).prop_map(String::from),
                proptest::sample::select(&[
                    "DESTQ", "HDR", "ACTION", "RETRY", "DELAY", "FWDQ", "INPUTQ", "SIZE",
                    "REASON", "x=", "FWD", "&DESTQ", "1s", "/a(b)/", "''", "MQRC_Q_FULL",
                ][..]).prop_map(String::from),
            ],
            0..60,
        )
    ) {
        assert_well_formed(&s.concat());
    }

    #[test]
    fn random_bytes_never_panic(b in proptest::collection::vec(any::<u8>(), 0..300)) {
        assert_well_formed(&String::from_utf8_lossy(&b));
    }

    #[test]
    fn mutated_examples_never_panic(
        which in 0..EXAMPLES.len(),
        edits in proptest::collection::vec(edit(), 1..8),
    ) {
        assert_well_formed(&apply(EXAMPLES[which], &edits));
    }
}
