//! runmqdlq compatibility while lowering: MQ-only keywords (ignored, or making a rule
//! never match), MQ constants where AMQP has free text, and runmqdlq's reason codes.

use super::Sink;
use crate::rules::diagnostic::Diagnostic;
use crate::rules::keywords::{self, Kw};
use crate::rules::pattern::Pattern;
use crate::rules::syntax::{Item, Value, ValueKind};
use crate::rules::table::NeverMatches;

/// The warning for an MQ-only keyword that is ignored.
pub(super) fn mq_only(kw: Kw, item: &Item) -> Diagnostic {
    Diagnostic::warning(
        item.keyword_span,
        format!(
            "{} is an IBM MQ keyword with no AMQP meaning; it is ignored",
            kw.name()
        ),
    )
    .with_help(keywords::mq_only_reason(kw.name()))
}

/// An MQ-only keyword in a rule: a pattern one (`DESTQM(QM1)`) whose value is not `*`
/// makes the rule never match (returned, and warned about); any other is ignored.
pub(super) fn mq_only_in_rule(kw: Kw, item: &Item, diags: &mut Sink) -> Option<NeverMatches> {
    match (keywords::mq_pattern_missing(kw.name()), &item.value) {
        (Some(missing), Some(value)) if !Pattern::generic(&value.text).matches_everything() => {
            let never = NeverMatches {
                keyword: kw.name(),
                value: value.text.clone(),
                missing,
            };
            diags.push(
                Diagnostic::warning(item.keyword_span, never.to_string())
                    .with_help(mq_pattern_help(kw.name(), &value.text)),
            );
            Some(never)
        }
        _ => {
            diags.push(mq_only(kw, item));
            None
        }
    }
}

/// The help of the warning for an MQ-only pattern keyword that makes its rule never match.
fn mq_pattern_help(keyword: &str, value: &str) -> String {
    let mut help = format!(
        "remove {keyword}({value}), or write {keyword}(*), for the rule to match on its other patterns"
    );
    if keyword == "FEEDBACK" {
        help.push_str("; REASON says why a message died");
    }
    help
}

/// A warning when an MQ constant is used where AMQP has free text.
pub(super) fn mq_constant_hint(item: &Item, value: &Value, hint: &str, diags: &mut Sink) {
    let t = &value.text;
    if value.kind != ValueKind::Regex
        && t.len() > 2
        && t.starts_with("MQ")
        && t.chars()
            .all(|c| c.is_ascii_uppercase() || c.is_ascii_digit() || c == '_')
    {
        diags.push(
            Diagnostic::warning(
                value.span,
                format!(
                    "{}({t}) looks like an IBM MQ constant; AMQP messages do not carry it",
                    item.keyword.to_ascii_uppercase()
                ),
            )
            .with_help(hint.to_string()),
        );
    }
}

/// `REASON`: runmqdlq's reason constants translated (`MQRC_Q_FULL` is `maxlen`), other
/// MQ reasons and upper-case broker reasons warned about. `None`: not translated, the
/// value is an ordinary pattern.
pub(super) fn reason(item: &Item, value: &Value, diags: &mut Sink) -> Option<Pattern> {
    if value.kind == ValueKind::Regex {
        return None;
    }
    let upper = value.text.to_ascii_uppercase();
    match upper.as_str() {
        "MQRC_Q_FULL" | "MQRC_Q_SPACE_NOT_AVAILABLE" => {
            return Some(Pattern::Literal("maxlen".into()));
        }
        "MQFB_EXPIRATION" => return Some(Pattern::Literal("expired".into())),
        "REJECTED" | "EXPIRED" | "MAXLEN" | "DELIVERY_LIMIT"
            if value.text != value.text.to_ascii_lowercase() =>
        {
            diags.push(
                Diagnostic::warning(
                    value.span,
                    format!(
                        "REASON({}) never matches the broker's reason `{}`: reasons are case-sensitive",
                        value.text,
                        value.text.to_ascii_lowercase()
                    ),
                )
                .with_help(format!("write REASON({})", value.text.to_ascii_lowercase())),
            );
        }
        u if u.starts_with("MQRC_") || u.starts_with("MQFB_") => {
            diags.push(
                Diagnostic::warning(
                    value.span,
                    format!(
                        "{}({}) is an IBM MQ reason with no AMQP equivalent; it matches only an application's own reason {}",
                        item.keyword.to_ascii_uppercase(),
                        value.text,
                        value.text
                    ),
                )
                .with_help("the broker's reasons are rejected, expired, maxlen and delivery_limit; MQRC_Q_FULL and MQFB_EXPIRATION are translated"),
            );
        }
        _ => {}
    }
    None
}
