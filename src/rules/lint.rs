//! Lint: warnings about a valid table — rules that can never apply, no catch-all at the
//! end, forwards back into the input queue, unlimited retries.
//!
//! The "never applies" check is sound and conservative: it warns only when it can
//! prove that every message the later rule matches is matched by the earlier one.

use std::collections::HashMap;

use crate::rules::diagnostic::{Diagnostic, Span};
use crate::rules::field::{Field, Kind};
use crate::rules::lower::RuleSpans;
use crate::rules::pattern::Pattern;
use crate::rules::table::*;

/// Warnings about `table`; `spans` has one entry per rule.
pub fn lint(table: &Table, spans: &[RuleSpans], input_queue: Option<Span>) -> Vec<Diagnostic> {
    let mut out = Vec::new();
    let span_of = |i: usize| spans.get(i).cloned().unwrap_or_default();

    let mut index = ShadowIndex::default();
    for (j, rule) in table.rules.iter().enumerate() {
        let s = span_of(j);
        // A rule that never matches (DESTQM(QM1)) was warned about already, and hides
        // nothing: it is neither checked nor indexed.
        let never = rule.patterns.never.is_some();
        // Shadowed by an earlier rule that never gives up.
        if let Some(earlier) = index
            .first_subsuming(&table.rules, &rule.patterns)
            .filter(|_| !never)
        {
            out.push(
                Diagnostic::warning(
                    s.start,
                    format!(
                        "this rule never applies: the rule on line {} catches every message it would",
                        table.rules[earlier].line
                    ),
                )
                .with_help("move this rule above that one, or remove it"),
            );
        }
        if !gives_up(rule) && !never {
            index.add(j, &rule.patterns);
        }
        match &rule.action {
            Action::Retry(r) if r.limit.is_none() => {
                out.push(
                    Diagnostic::warning(
                        s.retry.unwrap_or(s.start),
                        "RETRY(*) retries without limit: a message that always fails loops forever",
                    )
                    .with_help("give a limit, e.g. RETRY(10), and a later rule for what is left"),
                );
            }
            Action::Forward(f) => {
                if let (ForwardTarget::Queue(q), Some(input)) =
                    (&f.target, &table.control.input_queue)
                    && q.as_literal().as_deref() == Some(input.as_str())
                {
                    let mut d = Diagnostic::warning(
                        s.fwdq.unwrap_or(s.start),
                        format!(
                            "forwarding to the input queue {input}: the message comes straight back to this handler"
                        ),
                    );
                    if let Some(at) = input_queue {
                        d = d.with_help(format!("INPUTQ({input}) is set on line {}", at.line));
                    }
                    out.push(d);
                }
            }
            _ => {}
        }
    }

    let has_catch_all = table
        .rules
        .iter()
        .any(|r| !gives_up(r) && subsumes(&r.patterns, &Patterns::default()));
    if !has_catch_all {
        let (span, what) = match table.rules.len() {
            0 => (Span::new(1, 1, 1), "the table has no rules".to_string()),
            n => (
                span_of(n - 1).start,
                "no catch-all rule at the end".to_string(),
            ),
        };
        out.push(
            Diagnostic::warning(
                span,
                format!("{what}: messages no rule applies to are left on the DLQ and examined again every RETRYINT"),
            )
            .with_help("end the table with ACTION(IGNORE) to say so, or ACTION(FWD) FWDQ(...) to park them"),
        );
    }
    out
}

/// Which fields a rule constrains, bit `i` for `Field::ALL[i]`. An earlier rule can
/// subsume a later one only when it constrains a subset of the later one's fields.
fn mask(p: &Patterns) -> u32 {
    const _: () = assert!(Field::ALL.len() <= 32, "a field mask is a u32");
    Field::ALL
        .iter()
        .enumerate()
        .filter(|&(_, &f)| p.constrains(f))
        .fold(0, |m, (i, _)| m | 1 << i)
}

/// Earlier rules that never give up, grouped by the fields they constrain and keyed
/// by their first constrained text field, so that finding the rules that may subsume
/// a later rule does not compare it with every earlier rule (10,000-rule files).
#[derive(Default)]
struct ShadowIndex {
    groups: Vec<(u32, Group)>,
}

#[derive(Default)]
struct Group {
    /// The first text field in the mask, if any.
    key: Option<Field>,
    /// By literal value of the key field.
    literal: HashMap<String, Vec<usize>>,
    /// By a literal prefix every value the key field's pattern matches must start with.
    prefix: HashMap<String, Vec<usize>>,
    /// The lengths (in bytes) of the keys of `prefix`, sorted, without repeats.
    prefix_lens: Vec<usize>,
    /// By the source of a regex in the key field (a later regex is subsumed only by the
    /// same regex: see `pattern_subsumes`).
    regex: HashMap<String, Vec<usize>>,
    /// Everything else (no key field, or a pattern with no known prefix).
    other: Vec<usize>,
}

impl Group {
    fn add_prefix(&mut self, prefix: String, i: usize) {
        if let Err(at) = self.prefix_lens.binary_search(&prefix.len()) {
            self.prefix_lens.insert(at, prefix.len());
        }
        self.prefix.entry(prefix).or_default().push(i);
    }

    /// Calls `f` for every rule filed under a prefix of `text`.
    fn with_prefixes_of(&self, text: &str, f: &mut impl FnMut(usize)) {
        for &len in &self.prefix_lens {
            if len > text.len() {
                break;
            }
            if let Some(v) = text.get(..len).and_then(|p| self.prefix.get(p)) {
                v.iter().copied().for_each(&mut *f);
            }
        }
    }
}

impl ShadowIndex {
    fn add(&mut self, i: usize, p: &Patterns) {
        let m = mask(p);
        let at = match self.groups.iter().position(|(gm, _)| *gm == m) {
            Some(at) => at,
            None => {
                let key = Field::text()
                    .iter()
                    .enumerate()
                    .find(|&(b, _)| m & (1 << b) != 0)
                    .map(|(_, &f)| f);
                self.groups.push((
                    m,
                    Group {
                        key,
                        ..Group::default()
                    },
                ));
                self.groups.len() - 1
            }
        };
        let g = &mut self.groups[at].1;
        let pattern = g.key.and_then(|k| p.text(k));
        match pattern {
            Some(Pattern::Literal(t)) => g.literal.entry(t.clone()).or_default().push(i),
            Some(Pattern::Glob(t)) => {
                let pre = &t[..t.find(['*', '?']).unwrap_or(t.len())];
                g.add_prefix(pre.to_string(), i)
            }
            Some(Pattern::Regex(r)) => {
                g.regex.entry(r.as_str().to_string()).or_default().push(i);
                match regex_literal_prefix(r.as_str()) {
                    Some(pre) => g.add_prefix(pre, i),
                    None => g.other.push(i),
                }
            }
            None => g.other.push(i),
        }
    }

    /// The first indexed rule whose patterns subsume `b`.
    fn first_subsuming(&self, rules: &[Rule], b: &Patterns) -> Option<usize> {
        let bm = mask(b);
        let mut best: Option<usize> = None;
        let mut consider = |i: usize| {
            if best.is_none_or(|x| i < x) && subsumes(&rules[i].patterns, b) {
                best = Some(i);
            }
        };
        for (gm, g) in &self.groups {
            if gm & !bm != 0 {
                continue;
            }
            let key_pattern = g.key.and_then(|k| b.text(k));
            match key_pattern {
                Some(Pattern::Literal(t)) => {
                    // An earlier regex on the key field that cannot match `t` (it lacks
                    // the regex's required text) subsumes nothing here: skipped before
                    // the whole comparison, which would find just that.
                    let mut may = |i: usize| {
                        let key = g.key.and_then(|k| rules[i].patterns.text(k));
                        if !matches!(key, Some(Pattern::Regex(r)) if !r.may_match(t)) {
                            consider(i);
                        }
                    };
                    g.other.iter().copied().for_each(&mut may);
                    if let Some(v) = g.literal.get(t) {
                        v.iter().copied().for_each(&mut may);
                    }
                    g.with_prefixes_of(t, &mut may);
                }
                // Only a glob (a regex never subsumes a glob) filed under a prefix.
                Some(Pattern::Glob(t)) => {
                    let pre = &t[..t.find(['*', '?']).unwrap_or(t.len())];
                    g.with_prefixes_of(pre, &mut consider);
                }
                // Only the same regex subsumes a regex.
                Some(Pattern::Regex(r)) => {
                    if let Some(v) = g.regex.get(r.as_str()) {
                        v.iter().copied().for_each(&mut consider);
                    }
                }
                // No key field: compare with the whole group.
                None => {
                    g.other.iter().copied().for_each(&mut consider);
                    g.literal
                        .values()
                        .flatten()
                        .copied()
                        .for_each(&mut consider);
                    g.prefix.values().flatten().copied().for_each(&mut consider);
                }
            }
        }
        best
    }
}

/// A literal text every match of the regex `src` starts with, when that is evident:
/// `^billing\.(eu|us)$` → `billing.`. `None` when the regex is not anchored at the
/// start or has an alternation outside parentheses.
fn regex_literal_prefix(src: &str) -> Option<String> {
    let rest = src.strip_prefix('^')?;
    // Refuse a top-level `|` (it would make the prefix optional) and anything odd.
    let mut depth = 0i32;
    let mut chars = rest.chars();
    while let Some(c) = chars.next() {
        match c {
            '\\' => {
                chars.next();
            }
            '[' => {
                // Skip a character class; `]` first (or after `^`) is literal.
                let mut first = true;
                loop {
                    match chars.next() {
                        None | Some('[') => return None,
                        Some('\\') => {
                            chars.next();
                        }
                        Some('^') if first => continue,
                        Some(']') if !first => break,
                        _ => {}
                    }
                    first = false;
                }
            }
            '(' => depth += 1,
            ')' => depth -= 1,
            '|' if depth == 0 => return None,
            _ => {}
        }
    }
    let mut out = String::new();
    let mut chars = rest.chars().peekable();
    while let Some(c) = chars.next() {
        let lit = match c {
            '\\' => match chars.next() {
                Some(e) if e.is_ascii_punctuation() => e,
                _ => break,
            },
            '.' | '[' | ']' | '(' | ')' | '{' | '}' | '|' | '?' | '*' | '+' | '^' | '$' => break,
            c => c,
        };
        if matches!(chars.peek(), Some('?' | '*' | '{' | '+')) {
            break;
        }
        out.push(lit);
    }
    Some(out)
}

/// A limited RETRY rule gives up (is skipped once its limit is used up), so it does not
/// hide later rules.
fn gives_up(rule: &Rule) -> bool {
    matches!(&rule.action, Action::Retry(r) if r.limit.is_some())
}

/// True when every message matching `b` also matches `a`. A rule that never matches
/// (an MQ-only pattern keyword) subsumes nothing.
pub fn subsumes(a: &Patterns, b: &Patterns) -> bool {
    a.never.is_none()
        && Field::ALL.iter().all(|&f| match f.kind() {
            Kind::Text(_) | Kind::AnyText(..) => field(a.text(f), b.text(f)),
            Kind::Flag(_) => a.persist.is_none() || a.persist == b.persist,
            Kind::Size => size(a.size, b.size),
            Kind::Header => a.headers.iter().all(|(name, pa)| {
                b.headers
                    .iter()
                    .any(|(nb, pb)| nb == name && pattern_subsumes(pa, pb))
            }),
        })
}

fn field(a: Option<&Pattern>, b: Option<&Pattern>) -> bool {
    match (a, b) {
        (None, _) => true,
        (Some(a), _) if a.matches_everything() => true,
        (Some(_), None) => false,
        (Some(a), Some(b)) => pattern_subsumes(a, b),
    }
}

/// True when every text `b` matches is matched by `a` (conservatively).
pub fn pattern_subsumes(a: &Pattern, b: &Pattern) -> bool {
    if a.matches_everything() || a == b {
        return true;
    }
    match b {
        // b matches exactly one text.
        Pattern::Literal(t) => a.matches(t),
        Pattern::Glob(g) => match a {
            // `prefix*` covers every glob whose literal start begins with the prefix.
            Pattern::Glob(ga) => {
                let b_lit_prefix = &g[..g.find(['*', '?']).unwrap_or(g.len())];
                let b_lit_suffix = &g[g.rfind(['*', '?']).map_or(0, |i| i + 1)..];
                if let Some(p) = ga.strip_suffix('*')
                    && !p.contains(['*', '?'])
                {
                    return b_lit_prefix.starts_with(p);
                }
                if let Some(sfx) = ga.strip_prefix('*')
                    && !sfx.contains(['*', '?'])
                {
                    return b_lit_suffix.ends_with(sfx);
                }
                false
            }
            _ => false,
        },
        Pattern::Regex(_) => false,
    }
}

fn size(a: Option<SizeBound>, b: Option<SizeBound>) -> bool {
    match (a, b) {
        (None, _) => true,
        (Some(SizeBound::Greater(x)), Some(SizeBound::Greater(y))) => x <= y,
        (Some(SizeBound::Less(x)), Some(SizeBound::Less(y))) => x >= y,
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn g(s: &str) -> Pattern {
        Pattern::generic(s)
    }

    #[test]
    fn pattern_subsumption_is_sound() {
        for (a, b, want) in [
            ("*", "x", true),
            ("orders.*", "orders.eu", true),
            ("orders.*", "orders.e*", true),
            ("orders.*", "order*", false),
            ("*.dlq", "a*.dlq", true),
            ("*.dlq", "a*.dl?", false),
            ("a?", "a*", false),
            ("a*", "a?", true),
            ("x", "y", false),
            ("a*b", "a*b", true),
            ("a*b", "ab*b", false),
        ] {
            assert_eq!(pattern_subsumes(&g(a), &g(b)), want, "{a} ⊇ {b}");
        }
        for (src, want) in [
            (r"^billing\.(eu|us)$", Some("billing.")),
            ("^ab?c", Some("a")),
            ("^a|b", None),
            ("^a[b]", Some("a")),
            ("^a[|(]|x", None),
            ("^a[]|]x", Some("a")),
            ("^a[[:alpha:]]", None),
            ("abc", None),
            (r"^a\d", Some("a")),
            ("^(a|b)", Some("")),
        ] {
            assert_eq!(regex_literal_prefix(src).as_deref(), want, "{src}");
        }
        let re = Pattern::Regex(regex::Regex::new("^a").unwrap().into());
        assert!(pattern_subsumes(&re, &g("abc")));
        assert!(!pattern_subsumes(&re, &g("a*")));
        assert!(!pattern_subsumes(&g("a*"), &re));
    }

    /// The warnings of a source, as `line:col message`.
    fn warnings(source: &str) -> Vec<String> {
        let c = crate::rules::check_source("t", source);
        assert!(c.table.is_some(), "{:?}", c.diagnostics);
        c.diagnostics
            .iter()
            .map(|d| format!("{}:{} {}", d.line, d.column, d.message))
            .collect()
    }

    /// Regression: IBM's sample table ignored DESTQM and became a catch-all. A rule
    /// that never matches hides no later rule and is no catch-all.
    #[test]
    fn a_rule_that_never_matches_shadows_nothing() {
        assert_eq!(
            warnings("DESTQM(QM1) ACTION(FWD) FWDQ(&DESTQ) HEADER(NO)\nDESTQ(a) ACTION(IGNORE)"),
            [
                "1:1 DESTQM(QM1): AMQP messages carry no queue manager name, so this rule never matches",
                "2:1 no catch-all rule at the end: messages no rule applies to are left on the DLQ and examined again every RETRYINT",
            ]
        );
        // DESTQM(*) is ignored: the rule is a catch-all and hides the next one.
        let w = warnings("DESTQM(*) ACTION(IGNORE)\nDESTQ(a) ACTION(IGNORE)");
        assert_eq!(w.len(), 2, "{w:?}");
        assert!(w[0].starts_with("1:1 DESTQM is an IBM MQ keyword"), "{w:?}");
        assert!(w[1].starts_with("2:1 this rule never applies"), "{w:?}");
        // A rule that never matches is not reported as shadowed either.
        assert_eq!(
            warnings("ACTION(IGNORE)\nREPLYQM(QM2) ACTION(IGNORE)"),
            [
                "2:1 REPLYQM(QM2): AMQP messages carry no reply-to queue manager name, so this rule never matches"
            ]
        );
    }

    use proptest::prelude::*;

    fn rules_from(specs: &[(u8, u8, u8, bool)]) -> Vec<Rule> {
        const VALUES: &[&str] = &[
            "*", "a", "ab", "a*", "ab*", "*b", "/^a/", "/^ab?c/", "/b/", "b",
        ];
        let pat = |i: u8| -> Option<Pattern> {
            match VALUES.get(i as usize) {
                None => None,
                Some(v) if v.starts_with('/') => Some(Pattern::Regex(
                    crate::rules::pattern::LazyRegex::new(&v[1..v.len() - 1]).unwrap(),
                )),
                Some(v) => Some(Pattern::generic(v)),
            }
        };
        specs
            .iter()
            .enumerate()
            .map(|(n, &(d, r, a, limited))| Rule {
                line: n as u32 + 1,
                patterns: {
                    let mut p = Patterns::default();
                    p.set_text(Field::DestQ, pat(d));
                    p.set_text(Field::Reason, pat(r));
                    p.set_text(Field::AppId, pat(a));
                    p
                },
                action: Action::Retry(Retry {
                    limit: limited.then_some(3),
                    delay: DelaySchedule::default(),
                    put_authority: Default::default(),
                }),
            })
            .collect()
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(64))]

        /// The index finds exactly what comparing with every earlier rule finds.
        #[test]
        fn index_agrees_with_naive(specs in proptest::collection::vec((0u8..14, 0u8..14, 0u8..14, any::<bool>()), 0..40)) {
            let rules = rules_from(&specs);
            let mut index = ShadowIndex::default();
            for (j, r) in rules.iter().enumerate() {
                let naive = rules[..j]
                    .iter()
                    .position(|e| !gives_up(e) && subsumes(&e.patterns, &r.patterns));
                prop_assert_eq!(index.first_subsuming(&rules, &r.patterns), naive);
                if !gives_up(r) {
                    index.add(j, &r.patterns);
                }
            }
        }
    }
}
