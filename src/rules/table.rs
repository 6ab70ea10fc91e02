//! The validated rule table: what the parser's output is lowered into and what the decision engine reads.
//!
//! Everything here is plain data with compiled patterns. No parsing, no I/O.

use std::path::PathBuf;
use std::time::Duration;

use crate::rules::field::{self, Field, Kind};
use crate::rules::pattern::Pattern;

/// A whole rules file, validated: optional control data and the rules in order.
#[derive(Debug, Clone, Default)]
pub struct Table {
    pub control: Control,
    pub rules: Vec<Rule>,
}

/// Control data: the optional first entry of a rules file. Command-line flags override it.
#[derive(Debug, Clone, PartialEq)]
pub struct Control {
    /// `INPUTQ(queue)`: the DLQ to consume.
    pub input_queue: Option<String>,
    /// `RETRYINT(duration)`: how often messages left on the DLQ are examined again.
    pub retry_interval: Duration,
    /// `WAIT(YES|NO|duration)`.
    pub wait: Wait,
    /// `RATE(200/s)`: take messages from the DLQ at most this fast (`--rate` overrides).
    pub rate: Option<crate::rate_limit::Rate>,
}

impl Default for Control {
    fn default() -> Self {
        Control {
            input_queue: None,
            retry_interval: Duration::from_secs(60),
            wait: Wait::Yes,
            rate: None,
        }
    }
}

/// `WAIT(...)`: when the handler stops.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Wait {
    /// Run until stopped.
    Yes,
    /// Stop when the DLQ holds nothing the handler can act on now.
    No,
    /// Stop after this long without new work.
    For(Duration),
}

/// One rule: where it is written, what it matches, what it does.
#[derive(Debug, Clone, PartialEq)]
pub struct Rule {
    /// 1-based line on which the rule starts.
    pub line: u32,
    pub patterns: Patterns,
    pub action: Action,
}

/// The pattern keywords of a rule. `None` (or an empty `headers`) matches anything.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Patterns {
    /// The text patterns, one slot per text field ([`Field::slot`]): `DESTQ`, `RKEY`
    /// (matches when any of the message's routing keys matches), … Read and set them
    /// with [`Patterns::text`] and [`Patterns::set_text`].
    pub text: [Option<Pattern>; field::TEXT],
    pub persist: Option<bool>,
    /// `HDR(name=pattern)`, all must match; an absent header never matches.
    pub headers: Vec<(String, Pattern)>,
    pub size: Option<SizeBound>,
    /// Set when the rule has an MQ-only pattern keyword (`DESTQM(QM1)`) whose value is
    /// not `*`: no AMQP message carries that field, so the rule never matches. (Ignoring
    /// the keyword instead would widen the rule.)
    pub never: Option<NeverMatches>,
}

/// Why a rule can never match: an MQ-only pattern keyword, as written, and what AMQP
/// messages lack.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NeverMatches {
    /// The keyword, upper case: `DESTQM`, `REPLYQM`, `APPLTYPE`, `APPLIDAT`, `FEEDBACK`.
    pub keyword: &'static str,
    /// Its value as written.
    pub value: String,
    /// What AMQP messages do not carry, e.g. `AMQP messages carry no queue manager name`.
    pub missing: &'static str,
}

impl std::fmt::Display for NeverMatches {
    /// `DESTQM(QM1): AMQP messages carry no queue manager name, so this rule never matches`.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{}({}): {}, so this rule never matches",
            self.keyword, self.value, self.missing
        )
    }
}

impl Patterns {
    /// The pattern of a text field, if the rule has one (`None` for other fields).
    pub fn text(&self, field: Field) -> Option<&Pattern> {
        field.slot().and_then(|i| self.text[i].as_ref())
    }

    /// Set (or clear) the pattern of a text field; other fields have no text pattern,
    /// and setting one is a mistake that is ignored.
    pub fn set_text(&mut self, field: Field, pattern: Option<Pattern>) {
        debug_assert!(field.slot().is_some(), "{field:?} takes no text pattern");
        if let Some(i) = field.slot() {
            self.text[i] = pattern;
        }
    }

    /// The same patterns with `field`'s text pattern set (for building tables in code).
    pub fn with(mut self, field: Field, pattern: Pattern) -> Self {
        self.set_text(field, Some(pattern));
        self
    }

    /// Whether the rule constrains `field`: a text pattern other than `*`, a PERSIST, an
    /// HDR or a SIZE.
    pub fn constrains(&self, field: Field) -> bool {
        match field.kind() {
            Kind::Text(_) | Kind::AnyText(..) => {
                self.text(field).is_some_and(|p| !p.matches_everything())
            }
            Kind::Flag(_) => self.persist.is_some(),
            Kind::Header => !self.headers.is_empty(),
            Kind::Size => self.size.is_some(),
        }
    }

    /// True when no pattern is set: the rule matches every message.
    pub fn is_catch_all(&self) -> bool {
        self.never.is_none()
            && self.text.iter().all(Option::is_none)
            && self.persist.is_none()
            && self.headers.is_empty()
            && self.size.is_none()
    }
}

/// `SIZE(>N)` or `SIZE(<N)`, in bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SizeBound {
    Greater(u64),
    Less(u64),
}

impl SizeBound {
    pub fn matches(self, size: u64) -> bool {
        match self {
            SizeBound::Greater(n) => size > n,
            SizeBound::Less(n) => size < n,
        }
    }
}

/// What a rule does with a message it applies to.
#[derive(Debug, Clone, PartialEq)]
pub enum Action {
    Retry(Retry),
    Forward(Forward),
    Discard { archive: Option<PathBuf> },
    Leave,
}

impl Action {
    /// The action's name as reports print it: `retry|forward|discard|leave`.
    pub fn name(&self) -> &'static str {
        match self {
            Action::Retry(_) => "retry",
            Action::Forward(_) => "forward",
            Action::Discard { .. } => "discard",
            Action::Leave => "leave",
        }
    }
}

/// `ACTION(RETRY) RETRY(n) DELAY(...) BACKOFF(x) MAXDELAY(d)`.
#[derive(Debug, Clone, PartialEq)]
pub struct Retry {
    /// `RETRY(n)`; `None` is `RETRY(*)`, unlimited.
    pub limit: Option<u32>,
    pub delay: DelaySchedule,
    /// `PUTAUT(DEF|CTX)`: whose `user_id` the copy carries.
    pub put_authority: PutAuthority,
}

/// `PUTAUT(DEF|CTX)` (runmqdlq's put authority) on a RETRY or FWD: whose authority the
/// copy dlqd publishes carries. RabbitMQ checks a message's `user_id` property against
/// the publishing connection's user and refuses a mismatch (406 PRECONDITION_FAILED)
/// unless that user has the `impersonator` tag.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum PutAuthority {
    /// `PUTAUT(DEF)`, the default: dlqd publishes as itself; a `user_id` property
    /// naming another user is removed from the copy.
    #[default]
    Def,
    /// `PUTAUT(CTX)`: the copy keeps the message's original `user_id` (dlqd's user
    /// needs the `impersonator` tag for a `user_id` that is not its own).
    Ctx,
}

impl PutAuthority {
    /// True when the copy keeps the original `user_id` (`PUTAUT(CTX)`).
    pub fn keeps_user_id(self) -> bool {
        self == PutAuthority::Ctx
    }

    /// `DEF` or `CTX`, as written in a rules file.
    pub fn name(self) -> &'static str {
        match self {
            PutAuthority::Def => "DEF",
            PutAuthority::Ctx => "CTX",
        }
    }
}

/// The delay before each retry attempt.
///
/// Attempt `k` (1-based) waits `steps[k-1]` while `k <= steps.len()`; after that the
/// last step is multiplied by `backoff` once per further attempt, capped at `max`.
/// `DELAY(d)` is `steps = [d]`; `DELAY(d1,d2,...)` is the list (its last entry
/// repeats unless a BACKOFF is given).
#[derive(Debug, Clone, PartialEq)]
pub struct DelaySchedule {
    pub steps: Vec<Duration>,
    pub backoff: f64,
    pub max: Duration,
}

impl DelaySchedule {
    /// `MAXDELAY` when none is given: 10 × the first delay, or the largest step if that
    /// is longer.
    pub fn default_max(steps: &[Duration]) -> Duration {
        let first = steps.first().copied().unwrap_or(Duration::ZERO);
        let largest = steps.iter().copied().max().unwrap_or(Duration::ZERO);
        first.saturating_mul(10).max(largest)
    }
}

impl Default for DelaySchedule {
    fn default() -> Self {
        DelaySchedule {
            steps: vec![Duration::ZERO],
            backoff: 1.0,
            max: Duration::ZERO,
        }
    }
}

/// `ACTION(FWD)`: where to and whether to keep the death history.
#[derive(Debug, Clone, PartialEq)]
pub struct Forward {
    pub target: ForwardTarget,
    /// `HEADER(YES|NO)`; `false` strips `x-death` and `x-first-death-*`.
    pub keep_headers: bool,
    /// `PUTAUT(DEF|CTX)`: whose `user_id` the copy carries.
    pub put_authority: PutAuthority,
}

#[derive(Debug, Clone, PartialEq)]
pub enum ForwardTarget {
    /// `FWDQ(queue)`: through the default exchange.
    Queue(Template),
    /// `FWDEX(exchange) FWDRKEY(key)`; without FWDRKEY the message's own routing key is used.
    Exchange {
        exchange: Template,
        routing_key: Option<Template>,
    },
}

/// A target name with `&DESTQ`-style substitutions.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Template {
    pub parts: Vec<TemplatePart>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TemplatePart {
    Literal(String),
    Var(Var),
}

/// A substitution variable in a target.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Var {
    DestQ,
    DestEx,
    RKey,
    Reason,
    ReplyTo,
}

impl Template {
    /// A template with no substitutions.
    pub fn literal(s: impl Into<String>) -> Self {
        Template {
            parts: vec![TemplatePart::Literal(s.into())],
        }
    }

    /// The literal text when the template has no substitutions.
    pub fn as_literal(&self) -> Option<String> {
        let mut out = String::new();
        for p in &self.parts {
            match p {
                TemplatePart::Literal(s) => out.push_str(s),
                TemplatePart::Var(_) => return None,
            }
        }
        Some(out)
    }
}
