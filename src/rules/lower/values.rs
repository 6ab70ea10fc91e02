//! Value parsers shared by control data and actions: durations (a bare number is
//! seconds, as in runmqdlq), `DELAY` lists, numbers, `YES`/`NO`, `PUTAUT(DEF|CTX)`,
//! and the errors for bad ones.

use std::time::Duration;

use super::regex::sub_span;
use crate::rules::diagnostic::Diagnostic;
use crate::rules::syntax::{Entry, Value};
use crate::rules::table::PutAuthority;

/// A humantime duration; a bare number is seconds, as in runmqdlq.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let t = text.trim();
    if !t.is_empty() && t.chars().all(|c| c.is_ascii_digit()) {
        return t
            .parse::<u64>()
            .map(Duration::from_secs)
            .map_err(|_| "number too large".to_string());
    }
    if !t.is_empty() && t.chars().all(|c| c.is_ascii_digit() || c == '.') {
        return t
            .parse::<f64>()
            .ok()
            .and_then(|s| Duration::try_from_secs_f64(s).ok())
            .ok_or_else(|| "not a number of seconds".to_string());
    }
    humantime::parse_duration(t).map_err(|e| match e {
        humantime::DurationError::NumberExpected(_) | humantime::DurationError::Empty => {
            "not a duration".to_string()
        }
        other => other.to_string(),
    })
}

/// The error for a bad duration in keyword `kw`.
pub fn bad_duration(kw: &str, value: &Value, why: &str) -> Diagnostic {
    Diagnostic::error(
        value.span,
        format!("bad duration in {kw}: `{}`: {why}", value.text),
    )
    .with_help("durations look like 500ms, 5s, 1m 30s; a bare number is seconds")
}

/// The error for a bad number in keyword `kw`, which takes `expected`.
pub(super) fn bad_number(kw: &str, value: &Value, expected: &str) -> Diagnostic {
    Diagnostic::error(value.span, format!("bad number in {kw}: `{}`", value.text))
        .with_help(format!("{kw} takes {expected}"))
}

/// `YES` or `NO`, any case.
pub(super) fn yes_no(kw: &str, value: &Value, diags: &mut Vec<Diagnostic>) -> Option<bool> {
    if value.text.eq_ignore_ascii_case("YES") {
        Some(true)
    } else if value.text.eq_ignore_ascii_case("NO") {
        Some(false)
    } else {
        diags.push(
            Diagnostic::error(value.span, format!("bad value for {kw}: `{}`", value.text))
                .with_help(format!("{kw} takes YES or NO")),
        );
        None
    }
}

/// `PUTAUT(DEF|CTX)`.
pub(super) fn put_authority(value: &Value, diags: &mut Vec<Diagnostic>) -> Option<PutAuthority> {
    if value.text.eq_ignore_ascii_case("DEF") {
        Some(PutAuthority::Def)
    } else if value.text.eq_ignore_ascii_case("CTX") {
        Some(PutAuthority::Ctx)
    } else {
        diags.push(
            Diagnostic::error(
                value.span,
                format!("bad value for PUTAUT: `{}`", value.text),
            )
            .with_help(
                "PUTAUT takes DEF (publish as dlqd; a user_id naming another user is removed) or CTX (keep the message's user_id; dlqd's RabbitMQ user needs the impersonator tag)",
            ),
        );
        None
    }
}

/// `DELAY(d)` or `DELAY(d1,d2,...)`.
pub(super) fn delay_list(
    entry: &Entry,
    value: &Value,
    diags: &mut Vec<Diagnostic>,
) -> Option<Vec<Duration>> {
    let mut steps = Vec::new();
    let mut ok = true;
    let mut at = 0usize;
    for piece in value.text.split(',') {
        let lead = piece.len() - piece.trim_start().len();
        let p = piece.trim();
        let span = sub_span(entry, value, at + lead, at + lead + p.len().max(1));
        if p.is_empty() {
            diags.push(
                Diagnostic::error(span, "empty entry in the DELAY list")
                    .with_help("write DELAY(1s,2s,5s)"),
            );
            ok = false;
        } else {
            match parse_duration(p) {
                Ok(d) => steps.push(d),
                Err(e) => {
                    diags.push(
                        Diagnostic::error(span, format!("bad duration in DELAY: `{p}`: {e}"))
                            .with_help(
                                "durations look like 500ms, 5s, 1m 30s; a bare number is seconds",
                            ),
                    );
                    ok = false;
                }
            }
        }
        at += piece.len() + 1;
    }
    ok.then_some(steps)
}
