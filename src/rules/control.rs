//! The control-data keywords (`INPUTQ`, `RETRYINT`, `WAIT`, `RATE`), defined once: each one's
//! name, how its value is read into [`Control`] and how it is written back.
//!
//! Adding a control keyword is a field of [`Control`] (with its default) and one entry
//! in [`ControlKw::ALL`] with its `read` and `write`: the keyword table, the lowering
//! of the control entry, its messages and the rules text all follow.

use crate::rules::diagnostic::Diagnostic;
use crate::rules::display::value as written;
use crate::rules::lower::values::{bad_duration, parse_duration};
use crate::rules::syntax::Value;
use crate::rules::table::{Control, Wait};

/// A control-data keyword.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ControlKw {
    InputQ,
    RetryInt,
    Wait,
    Rate,
}

/// One control keyword's definition.
pub struct Info {
    pub name: &'static str,
    /// Read a value into the control data, reporting what is wrong with it.
    pub read: fn(&Value, &mut Control, &mut Vec<Diagnostic>),
    /// The value as written in a rules file, or `None` when it is the default (left out).
    pub write: fn(&Control) -> Option<String>,
}

impl ControlKw {
    /// Every control keyword, in the order they are written back.
    pub const ALL: [ControlKw; 4] = [
        ControlKw::InputQ,
        ControlKw::RetryInt,
        ControlKw::Wait,
        ControlKw::Rate,
    ];

    pub fn info(self) -> &'static Info {
        match self {
            ControlKw::InputQ => &Info {
                name: "INPUTQ",
                read: read_input_queue,
                write: |c| c.input_queue.as_deref().map(|q| written(q).into_owned()),
            },
            ControlKw::RetryInt => &Info {
                name: "RETRYINT",
                read: read_retry_interval,
                write: |c| {
                    (c.retry_interval != Control::default().retry_interval)
                        .then(|| humantime::format_duration(c.retry_interval).to_string())
                },
            },
            ControlKw::Wait => &Info {
                name: "WAIT",
                read: read_wait,
                write: |c| match c.wait {
                    Wait::Yes => None,
                    Wait::No => Some("NO".into()),
                    Wait::For(d) => Some(humantime::format_duration(d).to_string()),
                },
            },
            ControlKw::Rate => &Info {
                name: "RATE",
                read: read_rate,
                write: |c| c.rate.map(|r| r.to_string()),
            },
        }
    }

    pub fn name(self) -> &'static str {
        self.info().name
    }

    /// `INPUTQ, RETRYINT, WAIT` (with `last` before the last name, when given: `and`).
    pub fn list(last: Option<&str>) -> String {
        let names: Vec<&str> = ControlKw::ALL.iter().map(|k| k.name()).collect();
        match (last, names.split_last()) {
            (Some(word), Some((tail, head))) if !head.is_empty() => {
                format!("{} {word} {tail}", head.join(", "))
            }
            _ => names.join(", "),
        }
    }
}

fn read_input_queue(value: &Value, control: &mut Control, diags: &mut Vec<Diagnostic>) {
    if value.text.trim().is_empty() {
        // runmqdlq: INPUTQ(' ') is the queue manager's default DLQ.
        diags.push(
            Diagnostic::warning(
                value.span,
                "INPUTQ(' ') means the queue manager's default dead-letter queue in runmqdlq; RabbitMQ has none",
            )
            .with_help("name the DLQ: INPUTQ(name) or --queue"),
        );
    } else {
        control.input_queue = Some(value.text.clone());
    }
}

fn read_retry_interval(value: &Value, control: &mut Control, diags: &mut Vec<Diagnostic>) {
    match parse_duration(&value.text) {
        Ok(d) => {
            if d < crate::stage::RETRY_INTERVAL_FLOOR {
                diags.push(
                    Diagnostic::warning(
                        value.span,
                        "RETRYINT below 1s: dlqd raises it to 1s (left messages would otherwise be examined in a busy loop)",
                    )
                    .with_help("give RETRYINT(1s) or more"),
                );
            }
            control.retry_interval = d;
        }
        Err(e) => diags.push(bad_duration("RETRYINT", value, &e)),
    }
}

fn read_wait(value: &Value, control: &mut Control, diags: &mut Vec<Diagnostic>) {
    if value.text.eq_ignore_ascii_case("YES") {
        control.wait = Wait::Yes;
    } else if value.text.eq_ignore_ascii_case("NO") {
        control.wait = Wait::No;
    } else {
        match parse_duration(&value.text) {
            Ok(d) => control.wait = Wait::For(d),
            Err(e) => diags.push(
                Diagnostic::error(
                    value.span,
                    format!("bad value for WAIT: `{}`: {e}", value.text),
                )
                .with_help("WAIT takes YES, NO or a duration such as 30s"),
            ),
        }
    }
}

fn read_rate(value: &Value, control: &mut Control, diags: &mut Vec<Diagnostic>) {
    match value.text.parse::<crate::rate_limit::Rate>() {
        Ok(rate) => control.rate = Some(rate),
        Err(e) => diags.push(
            Diagnostic::error(
                value.span,
                format!("bad value for RATE: `{}`: {e}", value.text),
            )
            .with_help("RATE takes N/s or N/min, such as RATE(200/s); --rate overrides it"),
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lists_name_every_keyword() {
        assert_eq!(ControlKw::list(None), "INPUTQ, RETRYINT, WAIT, RATE");
        assert_eq!(
            ControlKw::list(Some("and")),
            "INPUTQ, RETRYINT, WAIT and RATE"
        );
    }
}
