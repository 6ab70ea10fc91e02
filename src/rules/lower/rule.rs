//! The rule walk: each item of a rule entry resolved, checked once, and handed to the
//! pattern, action or MQ-compatibility lowering; the rule kept when it has no errors.

use super::action::{ActionParts, assemble, lower_action_item};
use super::patterns::lower_pattern;
use super::{Lowered, RuleSpans, Seen, Sink, check_duplicate, count_errors, mq, resolve};
use crate::rules::diagnostic::Span;
use crate::rules::field::Field;
use crate::rules::keywords::{Class, Kw};
use crate::rules::syntax::Entry;
use crate::rules::table::{Patterns, Rule};

pub(super) fn lower_rule(entry: &Entry, out: &mut Lowered, sink: &mut Sink) {
    let errors_before = count_errors(sink);
    let mut seen = Seen::default();
    let mut patterns = Patterns::default();
    let mut parts = ActionParts::default();
    let mut spans = RuleSpans {
        start: entry
            .items
            .first()
            .map_or(Span::new(entry.line, 1, 1), |i| i.keyword_span),
        ..RuleSpans::default()
    };
    let diags = &mut *sink;
    for item in &entry.items {
        let Some(kw) = resolve(item, diags) else {
            continue;
        };
        if !check_duplicate(kw, item, &mut seen, diags) {
            continue;
        }
        if kw.class() == Class::MqOnly {
            if let Some(never) = mq::mq_only_in_rule(kw, item, diags) {
                patterns.never.get_or_insert(never);
            }
            continue;
        }
        if kw == Kw::Retry {
            spans.retry = Some(item.keyword_span);
        }
        parts.given(kw, item.keyword_span);
        let Some(value) = &item.value else { continue };
        if kw == Kw::Pattern(Field::DestQ) {
            spans.destq = Some(value.span);
        }
        match kw {
            Kw::Pattern(field) => lower_pattern(entry, field, item, value, &mut patterns, diags),
            // Control keywords make the entry control data: they never reach here.
            Kw::Control(_) | Kw::MqOnly(_) => {}
            _ => lower_action_item(entry, kw, item, value, &mut parts, &mut spans, diags),
        }
    }
    let action = assemble(entry, &parts, &seen, &spans, diags);
    // Rules with errors still count for positions, but the table is discarded anyway.
    let ok = count_errors(sink) == errors_before;
    if let (Some(action), true) = (action, ok) {
        out.table.rules.push(Rule {
            line: entry.line,
            patterns,
            action,
        });
        out.spans.push(spans);
    }
}
