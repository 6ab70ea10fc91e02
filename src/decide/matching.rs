//! Matching one rule against one dead letter, the simple way: the reference semantics
//! that the index must agree with, and the "why not" text of `--explain`.

use std::fmt;

use crate::dead_letter::DeadLetter;
use crate::escape::Escaped;
use crate::rules::{NeverMatches, Pattern, Patterns, Rule, SizeBound};

/// A single-valued text field a pattern keyword matches on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Field {
    DestQ,
    DestEx,
    Reason,
    AppId,
    UserId,
    Type,
    ContentType,
    MsgId,
    ReplyTo,
}

impl Field {
    pub const ALL: [Field; 9] = [
        Field::DestQ,
        Field::DestEx,
        Field::Reason,
        Field::AppId,
        Field::UserId,
        Field::Type,
        Field::ContentType,
        Field::MsgId,
        Field::ReplyTo,
    ];

    pub fn keyword(self) -> &'static str {
        match self {
            Field::DestQ => "DESTQ",
            Field::DestEx => "DESTEX",
            Field::Reason => "REASON",
            Field::AppId => "APPID",
            Field::UserId => "USERID",
            Field::Type => "TYPE",
            Field::ContentType => "CONTENTTYPE",
            Field::MsgId => "MSGID",
            Field::ReplyTo => "REPLYTO",
        }
    }

    /// The rule's pattern for this field, if it has one.
    pub fn pattern(self, p: &Patterns) -> Option<&Pattern> {
        match self {
            Field::DestQ => p.destq.as_ref(),
            Field::DestEx => p.destex.as_ref(),
            Field::Reason => p.reason.as_ref(),
            Field::AppId => p.appid.as_ref(),
            Field::UserId => p.userid.as_ref(),
            Field::Type => p.msg_type.as_ref(),
            Field::ContentType => p.content_type.as_ref(),
            Field::MsgId => p.msgid.as_ref(),
            Field::ReplyTo => p.replyto.as_ref(),
        }
    }

    /// The message's value of this field; "" when it does not have one.
    pub fn value<'a>(self, dl: &'a DeadLetter) -> &'a str {
        let p = &dl.message.properties;
        match self {
            Field::DestQ => &dl.destq,
            Field::DestEx => &dl.destex,
            Field::Reason => &dl.reason,
            Field::AppId => p.app_id.as_deref().unwrap_or(""),
            Field::UserId => dl.user_id,
            Field::Type => p.message_type.as_deref().unwrap_or(""),
            Field::ContentType => p.content_type.as_deref().unwrap_or(""),
            Field::MsgId => p.message_id.as_deref().unwrap_or(""),
            Field::ReplyTo => p.reply_to.as_deref().unwrap_or(""),
        }
    }
}

/// The routing keys RKEY matches on: the message's, or `[""]` when it has none.
pub fn rkeys<'a>(dl: &'a DeadLetter) -> &'a [String] {
    static EMPTY: [String; 1] = [String::new()];
    if dl.rkeys.is_empty() {
        &EMPTY
    } else {
        &dl.rkeys
    }
}

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
    RKey {
        keys: &'a [String],
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
    for field in Field::ALL {
        if let Some(pattern) = field.pattern(p) {
            let value = field.value(dl);
            if !pattern.matches(value) {
                return Err(Mismatch::Field {
                    field,
                    value,
                    pattern,
                });
            }
        }
    }
    if let Some(pattern) = &p.rkey {
        let keys = rkeys(dl);
        if !keys.iter().any(|k| pattern.matches(k)) {
            return Err(Mismatch::RKey { keys, pattern });
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
            Mismatch::RKey { keys, pattern } => {
                let keys: Vec<String> = keys.iter().map(|k| format!("'{}'", Escaped(k))).collect();
                write!(
                    f,
                    "RKEY: no routing key of [{}] matches '{}'",
                    keys.join(", "),
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
