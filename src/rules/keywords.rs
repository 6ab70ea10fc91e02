//! The vocabulary of the rules language: every keyword, its aliases, and what kind of
//! keyword it is (control data, pattern, action, or an MQ-only keyword with no AMQP meaning).
//! The control keywords are defined in [`crate::rules::control`], the pattern keywords in
//! [`crate::rules::field`]; this table gathers them.

use std::sync::OnceLock;

use crate::rules::control::ControlKw;
use crate::rules::field::Field;

/// A keyword, after aliases are resolved.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Kw {
    /// Control data: [`ControlKw`] defines them.
    Control(ControlKw),
    /// Patterns: [`Field`] defines them.
    Pattern(Field),
    // Actions.
    Action,
    Retry,
    Delay,
    Backoff,
    MaxDelay,
    FwdQ,
    FwdEx,
    FwdRKey,
    Header,
    Archive,
    /// `PUTAUT(DEF|CTX)`: runmqdlq's put authority, for RETRY and FWD.
    PutAut,
    /// A runmqdlq keyword with no AMQP meaning, warned about. Control and action ones
    /// (`INPUTQM`, `FWDQM`) are ignored; a pattern one (`DESTQM`, see
    /// [`mq_pattern_missing`]) makes its rule never match unless its value is `*`.
    MqOnly(&'static str),
}

/// What part of an entry a keyword belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Class {
    Control,
    Pattern,
    Action,
    MqOnly,
}

/// The action keywords.
const ACTION_KEYWORDS: &[(&str, Kw)] = &[
    ("ACTION", Kw::Action),
    ("RETRY", Kw::Retry),
    ("DELAY", Kw::Delay),
    ("BACKOFF", Kw::Backoff),
    ("MAXDELAY", Kw::MaxDelay),
    ("FWDQ", Kw::FwdQ),
    ("FWDEX", Kw::FwdEx),
    ("FWDRKEY", Kw::FwdRKey),
    ("HEADER", Kw::Header),
    ("ARCHIVE", Kw::Archive),
    ("PUTAUT", Kw::PutAut),
];

/// runmqdlq keywords that name MQ concepts AMQP does not have.
const MQ_ONLY: &[&str] = &[
    "INPUTQM", "DESTQM", "REPLYQM", "FWDQM", "APPLTYPE", "APPLIDAT", "FEEDBACK",
];

/// Every spelling the language accepts, upper case, with its meaning: control data,
/// pattern fields (with runmqdlq's aliases: `APPLNAME`, `MSGTYPE`, `REPLYQ`, `FORMAT`),
/// actions, then the MQ-only keywords.
pub fn spellings() -> impl Iterator<Item = (&'static str, Kw)> {
    ControlKw::ALL
        .into_iter()
        .map(|k| (k.name(), Kw::Control(k)))
        .chain(Field::spellings().map(|(s, f)| (s, Kw::Pattern(f))))
        .chain(ACTION_KEYWORDS.iter().copied())
        .chain(MQ_ONLY.iter().map(|&n| (n, Kw::MqOnly(n))))
}

/// Why an MQ-only keyword has no meaning here, for the warning.
pub fn mq_only_reason(name: &str) -> &'static str {
    match name {
        "INPUTQM" => "dlqd connects to one broker given by --url",
        "DESTQM" | "REPLYQM" => "AMQP has no queue managers; messages carry no queue manager name",
        "FWDQM" => "forwards go to the broker dlqd is connected to",
        "APPLTYPE" => "AMQP messages carry no putting-application type",
        "APPLIDAT" => "AMQP messages carry no application identity data",
        "FEEDBACK" => "AMQP messages have no feedback code; use REASON",
        _ => "it is an IBM MQ concept",
    }
}

/// For an MQ-only *pattern* keyword, what AMQP messages lack (the rule can never match
/// a value other than `*`); `None` for the control and action ones (`INPUTQM`, `FWDQM`).
pub fn mq_pattern_missing(name: &str) -> Option<&'static str> {
    Some(match name {
        "DESTQM" => "AMQP messages carry no queue manager name",
        "REPLYQM" => "AMQP messages carry no reply-to queue manager name",
        "APPLTYPE" => "AMQP messages carry no putting-application type",
        "APPLIDAT" => "AMQP messages carry no application identity data",
        "FEEDBACK" => "AMQP messages carry no feedback code",
        _ => return None,
    })
}

/// The meaning of a keyword as written (any case), or `None` when unknown.
pub fn lookup(name: &str) -> Option<Kw> {
    // Upper-case into a small buffer (no keyword is longer than 11 characters) and
    // compare with the names of that length only.
    let mut buf = [0u8; 12];
    let bytes = name.as_bytes();
    if bytes.len() > buf.len() {
        return None;
    }
    for (b, c) in buf.iter_mut().zip(bytes) {
        *b = c.to_ascii_uppercase();
    }
    let upper = &buf[..bytes.len()];
    // `spellings()` gathered once: walking its chained iterators for every keyword of
    // a 10,000-rule file cost more than the comparisons.
    static ALL: OnceLock<Vec<(&'static str, Kw)>> = OnceLock::new();
    ALL.get_or_init(|| spellings().collect())
        .iter()
        .find(|(k, _)| k.len() == upper.len() && k.as_bytes() == upper)
        .map(|&(_, kw)| kw)
}

impl Kw {
    pub fn class(self) -> Class {
        match self {
            Kw::Control(_) => Class::Control,
            Kw::Pattern(_) => Class::Pattern,
            Kw::Action
            | Kw::Retry
            | Kw::Delay
            | Kw::Backoff
            | Kw::MaxDelay
            | Kw::FwdQ
            | Kw::FwdEx
            | Kw::FwdRKey
            | Kw::Header
            | Kw::Archive
            | Kw::PutAut => Class::Action,
            Kw::MqOnly(_) => Class::MqOnly,
        }
    }

    /// The canonical name.
    pub fn name(self) -> &'static str {
        match self {
            Kw::Control(k) => k.name(),
            Kw::Pattern(f) => f.keyword(),
            Kw::MqOnly(n) => n,
            kw => ACTION_KEYWORDS
                .iter()
                .find(|&&(_, k)| k == kw)
                .map(|&(n, _)| n)
                .unwrap_or("?"),
        }
    }

    /// True for the keywords whose value may be a `/regex/` (it may contain parentheses).
    pub fn takes_regex(self) -> bool {
        matches!(self, Kw::Pattern(f) if f.takes_regex())
    }
}

/// The closest known keyword to a misspelt one, if any is close enough.
pub fn suggest(name: &str) -> Option<&'static str> {
    closest(name, spellings().map(|(k, _)| k))
}

/// The closest candidate (compared case-insensitively), when it is close enough to be a typo.
pub fn closest<'a>(word: &str, candidates: impl Iterator<Item = &'a str>) -> Option<&'a str> {
    let w = word.to_ascii_uppercase();
    let mut best: Option<(usize, &str)> = None;
    for c in candidates {
        let d = strsim::damerau_levenshtein(&w, &c.to_ascii_uppercase());
        if best.is_none_or(|(bd, _)| d < bd) {
            best = Some((d, c));
        }
    }
    let limit = match w.chars().count() {
        0..=2 => 0,
        3..=5 => 1,
        _ => 2,
    };
    best.filter(|&(d, _)| d > 0 && d <= limit).map(|(_, c)| c)
}
