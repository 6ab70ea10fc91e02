//! The pattern fields: every pattern keyword of the rules language, defined once — its
//! keyword, its runmqdlq aliases, what kind of pattern it takes and how the value it
//! matches is read from a [`DeadLetter`]. The keyword table, lowering, lint, the
//! matcher, the decision index, `--explain` and the rule text all iterate [`Field::ALL`].
//!
//! Adding a field that matches a text value of the message is one entry in the
//! `fields!` list below: [`Patterns`](crate::rules::Patterns) gets a slot for it, the
//! keyword is known, lowered, linted, indexed, matched, explained and written back.

use std::borrow::Cow;

use crate::dead_letter::DeadLetter;

/// What kind of pattern a field takes, and how the message's value is read.
#[derive(Clone, Copy)]
pub enum Kind {
    /// A generic pattern or `/regex/` on one text value of the message ("" when it has
    /// none).
    Text(for<'a> fn(&'a DeadLetter<'_>) -> &'a str),
    /// A generic pattern or `/regex/` on several text values: it matches when any of
    /// them matches (none is read as one empty value: see [`Field::values`]). The text
    /// names one value, for `--explain` (`routing key`).
    AnyText(
        for<'a> fn(&'a DeadLetter<'_>) -> &'a [Cow<'a, str>],
        &'static str,
    ),
    /// `YES` or `NO` (and runmqdlq's `MQPER_*` constants).
    Flag(fn(&DeadLetter<'_>) -> bool),
    /// `name=pattern` on a header; the keyword may repeat, and all must match.
    Header,
    /// `>N` or `<N` bytes of body.
    Size,
}

/// What runmqdlq compatibility a field needs when it is lowered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mq {
    None,
    /// A value that looks like an MQ constant (`MQFMT_STRING`) is warned about, with
    /// this hint on what AMQP messages carry instead.
    ConstantHint(&'static str),
    /// runmqdlq's reason constants are translated (`MQRC_Q_FULL` is `maxlen`), others
    /// warned about.
    Reasons,
}

/// One field's definition.
pub struct Info {
    /// The canonical keyword, upper case.
    pub keyword: &'static str,
    /// runmqdlq's spellings of the same keyword, upper case.
    pub aliases: &'static [&'static str],
    pub kind: Kind,
    pub mq: Mq,
}

macro_rules! fields {
    ($(
        $(#[$doc:meta])*
        $name:ident => $keyword:literal, aliases: [$($alias:literal),*], $kind:expr, $mq:expr;
    )*) => {
        /// A pattern keyword, after aliases are resolved.
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub enum Field {
            $($(#[$doc])* $name,)*
        }

        impl Field {
            /// Every pattern field, in the order rules are written back and explained.
            pub const ALL: [Field; [$(Field::$name),*].len()] = [$(Field::$name),*];

            const INFO: [Info; [$(Field::$name),*].len()] = [$(
                Info { keyword: $keyword, aliases: &[$($alias),*], kind: $kind, mq: $mq },
            )*];
        }
    };
}

fields! {
    /// The queue the message died in.
    DestQ => "DESTQ", aliases: [], Kind::Text(|dl| &dl.destq), Mq::None;
    /// The exchange it was published to.
    DestEx => "DESTEX", aliases: [], Kind::Text(|dl| &dl.destex), Mq::None;
    /// Why it died: `rejected`, `expired`, `maxlen`, `delivery_limit`.
    Reason => "REASON", aliases: [], Kind::Text(|dl| &dl.reason), Mq::Reasons;
    AppId => "APPID", aliases: ["APPLNAME"],
        Kind::Text(|dl| dl.message.properties.app_id.as_deref().unwrap_or("")), Mq::None;
    /// The user it was published as.
    UserId => "USERID", aliases: [], Kind::Text(|dl| dl.user_id), Mq::None;
    Type => "TYPE", aliases: ["MSGTYPE"],
        Kind::Text(|dl| dl.message.properties.message_type.as_deref().unwrap_or("")),
        Mq::ConstantHint("AMQP message types are free text");
    ContentType => "CONTENTTYPE", aliases: ["FORMAT"],
        Kind::Text(|dl| dl.message.properties.content_type.as_deref().unwrap_or("")),
        Mq::ConstantHint("AMQP content types look like text/plain or application/json");
    MsgId => "MSGID", aliases: [],
        Kind::Text(|dl| dl.message.properties.message_id.as_deref().unwrap_or("")), Mq::None;
    ReplyTo => "REPLYTO", aliases: ["REPLYQ"],
        Kind::Text(|dl| dl.message.properties.reply_to.as_deref().unwrap_or("")), Mq::None;
    /// Any of the message's routing keys.
    RKey => "RKEY", aliases: [], Kind::AnyText(|dl| &dl.rkeys, "routing key"), Mq::None;
    // The text fields (above) come first: `Patterns` stores them in `TEXT` slots.
    Persist => "PERSIST", aliases: [], Kind::Flag(|dl| dl.persistent), Mq::None;
    Hdr => "HDR", aliases: [], Kind::Header, Mq::None;
    Size => "SIZE", aliases: [], Kind::Size, Mq::None;
}

/// How many fields take a text pattern ([`Kind::Text`] or [`Kind::AnyText`]).
pub const TEXT: usize = count_text();

const fn is_text(kind: &Kind) -> bool {
    matches!(kind, Kind::Text(_) | Kind::AnyText(..))
}

/// The text fields come first in [`Field::ALL`] (checked when compiling).
const fn count_text() -> usize {
    let mut n = 0;
    while n < Field::INFO.len() && is_text(&Field::INFO[n].kind) {
        n += 1;
    }
    let mut i = n;
    while i < Field::INFO.len() {
        assert!(
            !is_text(&Field::INFO[i].kind),
            "text fields must come first in the fields! list"
        );
        i += 1;
    }
    n
}

/// The values an [`Kind::AnyText`] field matches on: the message's, or `[""]` when it
/// has none.
fn non_empty<'a>(keys: &'a [Cow<'a, str>]) -> &'a [Cow<'a, str>] {
    static EMPTY: [Cow<'static, str>; 1] = [Cow::Borrowed("")];
    if keys.is_empty() { &EMPTY } else { keys }
}

impl Field {
    pub fn info(self) -> &'static Info {
        &Field::INFO[self as usize]
    }

    pub fn keyword(self) -> &'static str {
        self.info().keyword
    }

    pub fn kind(self) -> Kind {
        self.info().kind
    }

    /// The fields that take a text pattern, in order: `Field::ALL[..TEXT]`.
    pub fn text() -> &'static [Field] {
        &Field::ALL[..TEXT]
    }

    /// Its slot in [`Patterns`](crate::rules::Patterns)' text patterns, when it takes one.
    pub fn slot(self) -> Option<usize> {
        let i = self as usize;
        (i < TEXT).then_some(i)
    }

    /// True for a field whose value may be a `/regex/`.
    pub fn takes_regex(self) -> bool {
        matches!(
            self.kind(),
            Kind::Text(_) | Kind::AnyText(..) | Kind::Header
        )
    }

    /// The message's values of a text field: one for [`Kind::Text`], at least one for
    /// [`Kind::AnyText`] (`[""]` when the message has none); empty for other kinds.
    pub fn values<'a>(self, dl: &'a DeadLetter<'_>) -> Values<'a> {
        match self.kind() {
            Kind::Text(read) => Values::One(read(dl)),
            Kind::AnyText(read, _) => Values::Many(non_empty(read(dl))),
            Kind::Flag(_) | Kind::Header | Kind::Size => Values::Many(&[]),
        }
    }

    /// Every spelling of every field: keywords and aliases, with their field.
    pub fn spellings() -> impl Iterator<Item = (&'static str, Field)> {
        Field::ALL.into_iter().flat_map(|f| {
            std::iter::once(f.keyword())
                .chain(f.info().aliases.iter().copied())
                .map(move |s| (s, f))
        })
    }
}

/// A text field's values in one message.
#[derive(Debug, Clone, Copy)]
pub enum Values<'a> {
    One(&'a str),
    Many(&'a [Cow<'a, str>]),
}

impl<'a> Values<'a> {
    /// The first value matching `pred`.
    pub fn find(self, mut pred: impl FnMut(&str) -> bool) -> Option<&'a str> {
        match self {
            Values::One(v) => pred(v).then_some(v),
            Values::Many(vs) => vs.iter().map(|v| &**v).find(|v| pred(v)),
        }
    }

    /// Calls `f` with each value.
    pub fn for_each(self, mut f: impl FnMut(&str)) {
        match self {
            Values::One(v) => f(v),
            Values::Many(vs) => vs.iter().for_each(|v| f(v)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_spelling_is_distinct_and_the_text_fields_come_first() {
        let mut seen = std::collections::HashSet::new();
        for (s, _) in Field::spellings() {
            assert!(seen.insert(s), "{s} twice");
            assert_eq!(s, s.to_ascii_uppercase());
        }
        assert_eq!(TEXT, 10);
        for (i, f) in Field::ALL.into_iter().enumerate() {
            assert_eq!(f.slot(), (i < TEXT).then_some(i), "{f:?}");
        }
    }
}
