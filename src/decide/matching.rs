//! Matching one rule against one dead letter, the simple way: the reference semantics
//! that the index must agree with, and the "why not" text of `--explain`.

use std::borrow::Cow;
use std::fmt;

use crate::dead_letter::DeadLetter;
use crate::escape::Escaped;
use crate::rules::field::{Field, Kind, Values};
use crate::rules::{NeverMatches, Pattern, Rule, SizeBound};

/// Why a rule does not apply to a message. Its `Display` (the `--explain` text) escapes
/// the message's values (`crate::escape`), so it stays one safe line.
#[derive(Debug, Clone, PartialEq)]
pub enum Mismatch<'a> {
    /// An MQ-only pattern keyword (`DESTQM(QM1)`): the rule never matches.
    Never(&'a NeverMatches),
    Field {
        field: Field,
        value: &'a str,
        pattern: &'a Pattern,
    },
    /// A field with several values ([`Kind::AnyText`]: RKEY), none of which matches.
    AnyField {
        field: Field,
        values: &'a [Cow<'a, str>],
        pattern: &'a Pattern,
    },
    Persist {
        wanted: bool,
    },
    HeaderAbsent {
        name: &'a str,
    },
    Header {
        name: &'a str,
        value: Option<String>,
        pattern: &'a Pattern,
    },
    Size {
        bound: SizeBound,
        size: u64,
    },
    RetriesUsedUp {
        limit: u32,
        retries: u32,
    },
}

/// Whether the rule's patterns match (ignoring the retry limit).
pub fn patterns_match<'a>(rule: &'a Rule, dl: &'a DeadLetter) -> Result<(), Mismatch<'a>> {
    let p = &rule.patterns;
    if let Some(never) = &p.never {
        return Err(Mismatch::Never(never));
    }
    for &field in Field::text() {
        let Some(pattern) = p.text(field) else {
            continue;
        };
        match field.values(dl) {
            Values::One(value) => {
                if !pattern.matches(value) {
                    return Err(Mismatch::Field {
                        field,
                        value,
                        pattern,
                    });
                }
            }
            Values::Many(values) => {
                if !values.iter().any(|v| pattern.matches(v)) {
                    return Err(Mismatch::AnyField {
                        field,
                        values,
                        pattern,
                    });
                }
            }
        }
    }
    if let Some(wanted) = p.persist
        && wanted != dl.persistent
    {
        return Err(Mismatch::Persist { wanted });
    }
    residual_match(rule, dl)
}

/// The checks the index leaves to a per-rule test: headers and size.
pub fn residual_match<'a>(rule: &'a Rule, dl: &'a DeadLetter) -> Result<(), Mismatch<'a>> {
    let p = &rule.patterns;
    for (name, pattern) in &p.headers {
        match dl.message.header(name) {
            None => return Err(Mismatch::HeaderAbsent { name }),
            // `HDR(name=*)`: present, whatever its type (an array such as x-death too).
            Some(_) if pattern.matches_everything() => {}
            Some(v) => {
                let text = v.as_text();
                let ok = text.as_deref().is_some_and(|t| pattern.matches(t));
                if !ok {
                    return Err(Mismatch::Header {
                        name,
                        value: text,
                        pattern,
                    });
                }
            }
        }
    }
    if let Some(bound) = p.size
        && !bound.matches(dl.size)
    {
        return Err(Mismatch::Size {
            bound,
            size: dl.size,
        });
    }
    Ok(())
}

/// SPEC §4 step 2: a RETRY rule whose limit is used up gives up on the message.
pub fn retry_used_up(rule: &Rule, retries: u32) -> Option<Mismatch<'static>> {
    match &rule.action {
        crate::rules::Action::Retry(r) => match r.limit {
            Some(limit) if retries >= limit => Some(Mismatch::RetriesUsedUp { limit, retries }),
            _ => None,
        },
        _ => None,
    }
}

/// Whether the rule applies: its patterns match and, for a RETRY, its limit is not used up.
pub fn applies<'a>(rule: &'a Rule, dl: &'a DeadLetter) -> Result<(), Mismatch<'a>> {
    patterns_match(rule, dl)?;
    match retry_used_up(rule, dl.retries) {
        Some(m) => Err(m),
        None => Ok(()),
    }
}

impl fmt::Display for Mismatch<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Mismatch::Never(never) => write!(f, "{never}"),
            Mismatch::Field {
                field,
                value,
                pattern,
            } => write!(
                f,
                "{} '{}' does not match '{}'",
                field.keyword(),
                Escaped(value),
                pattern.source()
            ),
            Mismatch::AnyField {
                field,
                values,
                pattern,
            } => {
                let noun = match field.kind() {
                    Kind::AnyText(_, noun) => noun,
                    _ => "value",
                };
                let values: Vec<String> =
                    values.iter().map(|k| format!("'{}'", Escaped(k))).collect();
                write!(
                    f,
                    "{}: no {noun} of [{}] matches '{}'",
                    field.keyword(),
                    values.join(", "),
                    pattern.source()
                )
            }
            Mismatch::Persist { wanted: true } => {
                write!(f, "PERSIST(YES) but the message is not persistent")
            }
            Mismatch::Persist { wanted: false } => {
                write!(f, "PERSIST(NO) but the message is persistent")
            }
            Mismatch::HeaderAbsent { name } => write!(f, "HDR({name}): no such header"),
            Mismatch::Header {
                name,
                value: Some(v),
                pattern,
            } => write!(
                f,
                "HDR({name}) '{}' does not match '{}'",
                Escaped(v),
                pattern.source()
            ),
            Mismatch::Header {
                name,
                value: None,
                pattern,
            } => write!(
                f,
                "HDR({name}) is an array or table, which has no text to match '{}'",
                pattern.source()
            ),
            Mismatch::Size {
                bound: SizeBound::Greater(n),
                size,
            } => write!(f, "SIZE(>{n}) but the body is {size} bytes"),
            Mismatch::Size {
                bound: SizeBound::Less(n),
                size,
            } => write!(f, "SIZE(<{n}) but the body is {size} bytes"),
            Mismatch::RetriesUsedUp { limit, retries } => {
                write!(f, "RETRY({limit}) used up: {retries} retries")
            }
        }
    }
}
