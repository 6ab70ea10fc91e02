//! A pattern value compiled, with positions: a `/regex/` is checked (its syntax and
//! size; compiled on first use, see [`LazyRegex`]) and its errors placed at the exact
//! character of the source, even inside a `HDR(name=/regex/)`.

use super::Sink;
use crate::rules::diagnostic::{Diagnostic, Span};
use crate::rules::pattern::{LazyRegex, Pattern, RegexError};
use crate::rules::syntax::{Entry, Value, ValueKind};

/// The span of bytes `start..end` of a value's text, when the text maps 1:1 onto the
/// source (unquoted and regex values); the value's span otherwise.
pub(super) fn sub_span(entry: &Entry, value: &Value, start: usize, end: usize) -> Span {
    if value.kind == ValueKind::Quoted {
        value.span
    } else {
        entry.span(value.offset + start, value.offset + end)
    }
}

/// The value of keyword `kw` as a pattern.
pub(super) fn pattern(entry: &Entry, kw: &str, value: &Value, diags: &mut Sink) -> Option<Pattern> {
    pattern_at(entry, kw, value, &value.text, 0, diags)
}

/// Compile `text` (the part of the value from byte `at`) as a pattern of keyword `kw`.
pub(super) fn pattern_at(
    entry: &Entry,
    kw: &str,
    value: &Value,
    text: &str,
    at: usize,
    diags: &mut Sink,
) -> Option<Pattern> {
    let is_regex = value.kind == ValueKind::Regex
        && text.len() >= 2
        && text.starts_with('/')
        && text.ends_with('/');
    if !is_regex {
        return Some(Pattern::generic(text));
    }
    let inner = &text[1..text.len() - 1];
    if inner.is_empty() {
        diags.push(
            Diagnostic::error(
                sub_span(entry, value, at, at + 2),
                format!("empty regular expression in {kw}"),
            )
            .with_help("an absent pattern matches anything; write * for any value"),
        );
        return None;
    }
    let inner_at = at + 1;
    // Checked here, compiled on first use (LazyRegex); the same text is checked once.
    if let Some(r) = diags.regexes.get(inner) {
        return Some(Pattern::Regex(r.clone()));
    }
    let error = match LazyRegex::new(inner) {
        Ok(r) => {
            diags.regexes.insert(inner.to_string(), r.clone());
            return Some(Pattern::Regex(r));
        }
        Err(e) => e,
    };
    let (msg, where_) = match &error {
        RegexError::Syntax(e) => {
            let (msg, span) = match &**e {
                regex_syntax::Error::Parse(p) => (p.kind().to_string(), Some(*p.span())),
                regex_syntax::Error::Translate(t) => (t.kind().to_string(), Some(*t.span())),
                _ => (e.to_string(), None),
            };
            let where_ = match span {
                Some(s) => sub_span(
                    entry,
                    value,
                    inner_at + s.start.offset,
                    inner_at + s.end.offset.max(s.start.offset + 1),
                ),
                None => sub_span(entry, value, at, at + text.len()),
            };
            (msg, where_)
        }
        RegexError::Compile(e) => {
            let msg = match e {
                ::regex::Error::CompiledTooBig(_) => {
                    "it compiles to too large a program".to_string()
                }
                other => other.to_string().lines().last().unwrap_or("").to_string(),
            };
            (msg, sub_span(entry, value, at, at + text.len()))
        }
    };
    diags.push(Diagnostic::error(
        where_,
        format!("bad regular expression in {kw}: {msg}"),
    ));
    None
}
