//! Lowering one pattern keyword's value into the rule's [`Patterns`], by the kind of
//! pattern its [`Field`] takes: a text pattern (with its runmqdlq compatibility), a
//! `YES`/`NO` flag, `HDR(name=pattern)`, `SIZE(>N)`.

use super::{Sink, mq, regex};
use crate::rules::diagnostic::Diagnostic;
use crate::rules::field::{Field, Kind, Mq};
use crate::rules::pattern::Pattern;
use crate::rules::syntax::{Entry, Item, Value};
use crate::rules::table::{Patterns, SizeBound};

/// Lower `field`'s value into `patterns`.
pub(super) fn lower_pattern(
    entry: &Entry,
    field: Field,
    item: &Item,
    value: &Value,
    patterns: &mut Patterns,
    diags: &mut Sink,
) {
    match field.kind() {
        Kind::Text(_) | Kind::AnyText(..) => {
            let p = text_pattern(entry, field, item, value, diags);
            patterns.set_text(field, p);
        }
        Kind::Flag(_) => patterns.persist = flag(field, value, diags),
        Kind::Header => {
            if let Some(h) = header_pattern(entry, field, value, diags) {
                patterns.headers.push(h);
            }
        }
        Kind::Size => patterns.size = size(value, diags),
    }
}

/// A text field's pattern, after runmqdlq's translations and warnings.
fn text_pattern(
    entry: &Entry,
    field: Field,
    item: &Item,
    value: &Value,
    diags: &mut Sink,
) -> Option<Pattern> {
    match field.info().mq {
        Mq::None => {}
        Mq::ConstantHint(hint) => mq::mq_constant_hint(item, value, hint, diags),
        Mq::Reasons => {
            if let Some(p) = mq::reason(item, value, diags) {
                return Some(p);
            }
        }
    }
    regex::pattern(entry, field.keyword(), value, diags)
}

/// `YES`/`NO`, or runmqdlq's `MQPER_PERSISTENT`/`MQPER_NOT_PERSISTENT`.
fn flag(field: Field, value: &Value, diags: &mut Vec<Diagnostic>) -> Option<bool> {
    let t = value.text.to_ascii_uppercase();
    match t.as_str() {
        "YES" | "MQPER_PERSISTENT" => Some(true),
        "NO" | "MQPER_NOT_PERSISTENT" => Some(false),
        _ => {
            let kw = field.keyword();
            diags.push(
                Diagnostic::error(value.span, format!("bad value for {kw}: `{}`", value.text))
                    .with_help(format!(
                        "{kw} takes YES or NO (or MQPER_PERSISTENT, MQPER_NOT_PERSISTENT)"
                    )),
            );
            None
        }
    }
}

/// `HDR(name=pattern)`.
fn header_pattern(
    entry: &Entry,
    field: Field,
    value: &Value,
    diags: &mut Sink,
) -> Option<(String, Pattern)> {
    let Some(eq) = value.text.find('=') else {
        diags.push(
            Diagnostic::error(value.span, format!("HDR({}) has no `=`", value.text))
                .with_help("write HDR(name=pattern), e.g. HDR(x-tenant=acme*)"),
        );
        return None;
    };
    let name = value.text[..eq].trim();
    if name.is_empty() {
        diags.push(
            Diagnostic::error(value.span, "HDR has an empty header name")
                .with_help("write HDR(name=pattern)"),
        );
        return None;
    }
    let rest = &value.text[eq + 1..];
    let lead = rest.len() - rest.trim_start().len();
    let pat = rest.trim();
    if pat.is_empty() {
        diags.push(
            Diagnostic::error(value.span, format!("HDR({name}=) has an empty pattern"))
                .with_help("write * to require only that the header is present"),
        );
        return None;
    }
    let p = regex::pattern_at(entry, field.keyword(), value, pat, eq + 1 + lead, diags)?;
    Some((name.to_string(), p))
}

/// `SIZE(>N)` / `SIZE(<N)` with an optional `KiB`/`MiB`/`GiB` unit.
fn size(value: &Value, diags: &mut Vec<Diagnostic>) -> Option<SizeBound> {
    let t = value.text.trim();
    let (greater, rest) = if let Some(r) = t.strip_prefix('>') {
        (true, r.trim())
    } else if let Some(r) = t.strip_prefix('<') {
        (false, r.trim())
    } else {
        diags.push(
            Diagnostic::error(value.span, format!("bad value for SIZE: `{t}`"))
                .with_help("write SIZE(>N) or SIZE(<N); N may end in KiB or MiB, e.g. SIZE(>1MiB)"),
        );
        return None;
    };
    let digits = rest
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(rest.len());
    let (num, unit) = rest.split_at(digits);
    let mult: Option<u64> = match unit.trim().to_ascii_uppercase().as_str() {
        "" | "B" => Some(1),
        "KIB" => Some(1024),
        "MIB" => Some(1024 * 1024),
        "GIB" => Some(1024 * 1024 * 1024),
        _ => None,
    };
    let n = num.parse::<u64>().ok();
    match (n, mult) {
        (Some(n), Some(m)) => match n.checked_mul(m) {
            Some(bytes) => Some(if greater {
                SizeBound::Greater(bytes)
            } else {
                SizeBound::Less(bytes)
            }),
            None => {
                diags.push(Diagnostic::error(
                    value.span,
                    format!("bad number in SIZE: `{rest}` is too large"),
                ));
                None
            }
        },
        _ => {
            diags.push(
                Diagnostic::error(value.span, format!("bad number in SIZE: `{rest}`")).with_help(
                    "N is a whole number of bytes, optionally followed by KiB, MiB or GiB",
                ),
            );
            None
        }
    }
}
