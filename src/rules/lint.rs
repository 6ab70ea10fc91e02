//! Lint: warnings about a valid table — rules that can never apply, no catch-all at the
//! end, forwards back into the input queue, unlimited retries.
//!
//! The "never applies" check is sound and conservative: it warns only when it can
//! prove that every message the later rule matches is matched by the earlier one.

use crate::rules::diagnostic::{Diagnostic, Span};
use crate::rules::lower::RuleSpans;
use crate::rules::pattern::Pattern;
use crate::rules::table::*;

/// Warnings about `table`; `spans` has one entry per rule.
pub fn lint(table: &Table, spans: &[RuleSpans], input_queue: Option<Span>) -> Vec<Diagnostic> {
    let mut out = Vec::new();
    let span_of = |i: usize| spans.get(i).cloned().unwrap_or_default();

    for (j, rule) in table.rules.iter().enumerate() {
        let s = span_of(j);
        // Shadowed by an earlier rule that never gives up.
        if let Some(earlier) = table.rules[..j]
            .iter()
            .find(|e| !gives_up(e) && subsumes(&e.patterns, &rule.patterns))
        {
            out.push(
                Diagnostic::warning(
                    s.start,
                    format!(
                        "this rule never applies: the rule on line {} catches every message it would",
                        earlier.line
                    ),
                )
                .with_help("move this rule above that one, or remove it"),
            );
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

/// A limited RETRY rule gives up (is skipped once its limit is used up), so it does not
/// hide later rules.
fn gives_up(rule: &Rule) -> bool {
    matches!(&rule.action, Action::Retry(r) if r.limit.is_some())
}

/// True when every message matching `b` also matches `a`.
pub fn subsumes(a: &Patterns, b: &Patterns) -> bool {
    field(&a.destq, &b.destq)
        && field(&a.destex, &b.destex)
        && field(&a.rkey, &b.rkey)
        && field(&a.reason, &b.reason)
        && field(&a.appid, &b.appid)
        && field(&a.userid, &b.userid)
        && field(&a.msg_type, &b.msg_type)
        && field(&a.content_type, &b.content_type)
        && field(&a.msgid, &b.msgid)
        && field(&a.replyto, &b.replyto)
        && (a.persist.is_none() || a.persist == b.persist)
        && size(a.size, b.size)
        && a.headers.iter().all(|(name, pa)| {
            b.headers
                .iter()
                .any(|(nb, pb)| nb == name && pattern_subsumes(pa, pb))
        })
}

fn field(a: &Option<Pattern>, b: &Option<Pattern>) -> bool {
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
        let re = Pattern::Regex(regex::Regex::new("^a").unwrap());
        assert!(pattern_subsumes(&re, &g("abc")));
        assert!(!pattern_subsumes(&re, &g("a*")));
        assert!(!pattern_subsumes(&g("a*"), &re));
    }
}
