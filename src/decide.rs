//! The decision: a pure function of (message facts, rule table) → what to do. No I/O, no clock.
//!
//! SPEC §4: walk the rules in order; skip rules whose patterns do not match; skip a
//! matching RETRY rule whose limit is used up; the first rule left applies; with none,
//! the message is left on the DLQ. [`Decider::decide`] finds that rule through an
//! index (see `index.rs`); [`Decider::decide_linear`] is the plain walk it must equal.

mod index;
pub mod matching;

use std::fmt::Write as _;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use crate::backoff;
use crate::dead_letter::DeadLetter;
use crate::escape::Escaped;
use crate::rules::{Action, ForwardTarget, Rule, Table, Template, TemplatePart, Var};

use index::Index;

/// What to do with one message, and which rule said so.
#[derive(Debug, Clone, PartialEq)]
pub struct Decision {
    /// Index into `Table::rules` of the rule that applies; `None` when no rule applies.
    pub rule: Option<usize>,
    /// That rule's 1-based line.
    pub line: Option<u32>,
    pub outcome: Outcome,
}

/// A concrete action, with substitutions resolved.
#[derive(Debug, Clone, PartialEq)]
pub enum Outcome {
    /// Put it back on `queue` after `delay`; this is attempt number `attempt` (1-based).
    /// `queue` is empty when the message does not say where it died: see
    /// [`Outcome::unroutable`].
    Retry {
        queue: String,
        delay: Duration,
        attempt: u32,
        /// `PUTAUT(CTX)`: the copy keeps the message's `user_id`; `false` (`PUTAUT(DEF)`,
        /// the default): a `user_id` naming another user than dlqd's is removed.
        keep_user_id: bool,
    },
    /// Publish to `exchange` with `routing_key` ("" exchange = straight to a queue).
    Forward {
        exchange: String,
        routing_key: String,
        keep_headers: bool,
        /// As for a retry: `PUTAUT(CTX)` keeps the original `user_id`.
        keep_user_id: bool,
    },
    Discard {
        archive: Option<PathBuf>,
    },
    Leave,
}

impl Outcome {
    /// `retry|forward|discard|leave`, as reports print it.
    pub fn name(&self) -> &'static str {
        match self {
            Outcome::Retry { .. } => "retry",
            Outcome::Forward { .. } => "forward",
            Outcome::Discard { .. } => "discard",
            Outcome::Leave => "leave",
        }
    }

    /// Why this retry or forward cannot be carried out, when it has no target: a retry
    /// goes back to the queue the message died in, and a message without a death
    /// history (no `x-death`, no `x-first-death-queue`) names none; a queue forward
    /// whose name came out empty (`FWDQ(&REPLYTO)` without a reply-to) names none
    /// either. The handler fails such an action and leaves the message on the DLQ;
    /// dry-run says so. `None` for everything that can be attempted.
    pub fn unroutable(&self) -> Option<&'static str> {
        match self {
            Outcome::Retry { queue, .. } if queue.is_empty() => Some("no original queue"),
            Outcome::Forward {
                exchange,
                routing_key,
                ..
            } if exchange.is_empty() && routing_key.is_empty() => Some("empty target"),
            _ => None,
        }
    }

    /// Where a retry or forward goes: the queue, or `exchange/routing-key` for an
    /// exchange forward; `None` for discard and leave.
    pub fn target(&self) -> Option<String> {
        match self {
            Outcome::Retry { queue, .. } => Some(queue.clone()),
            Outcome::Forward {
                exchange,
                routing_key,
                ..
            } if exchange.is_empty() => Some(routing_key.clone()),
            Outcome::Forward {
                exchange,
                routing_key,
                ..
            } => Some(format!("{exchange}/{routing_key}")),
            Outcome::Discard { .. } | Outcome::Leave => None,
        }
    }
}

/// A rule table prepared for fast decisions.
#[derive(Debug, Clone)]
pub struct Decider {
    table: Arc<Table>,
    index: Arc<Index>,
}

impl Decider {
    pub fn new(table: Table) -> Self {
        let index = Arc::new(Index::build(&table));
        Decider {
            table: Arc::new(table),
            index,
        }
    }

    pub fn table(&self) -> &Table {
        &self.table
    }

    /// The decision for one message, through the rule index.
    pub fn decide(&self, dl: &DeadLetter) -> Decision {
        let rule = self.index.first_applicable(&self.table.rules, dl);
        self.decision_for(rule, dl)
    }

    /// The same decision by walking every rule in order: the reference the index is
    /// tested against.
    pub fn decide_linear(&self, dl: &DeadLetter) -> Decision {
        let rule = self
            .table
            .rules
            .iter()
            .position(|r| matching::applies(r, dl).is_ok());
        self.decision_for(rule, dl)
    }

    /// For every rule before the one that applies (every rule, when none does): its
    /// index and why it did not apply, e.g. `DESTQ 'orders' does not match 'billing.*'`
    /// or `RETRY(5) used up: 5 retries`.
    pub fn explain(&self, dl: &DeadLetter) -> Vec<(usize, String)> {
        let mut out = Vec::new();
        for (i, rule) in self.table.rules.iter().enumerate() {
            match matching::applies(rule, dl) {
                Ok(()) => break,
                Err(why) => out.push((i, why.to_string())),
            }
        }
        out
    }

    /// One line saying why the decision was made: what the applied rule matched on,
    /// and for a retry which attempt of how many.
    pub fn why(&self, dl: &DeadLetter, decision: &Decision) -> String {
        let mut out = String::new();
        self.why_into(dl, decision, &mut out);
        out
    }

    /// [`Decider::why`], appended to `out`.
    pub fn why_into(&self, dl: &DeadLetter, decision: &Decision, out: &mut String) {
        let Some(rule) = decision.rule.and_then(|i| self.table.rules.get(i)) else {
            out.push_str("no rule applies: the message stays on the DLQ");
            return;
        };
        matched_on(rule, dl, out);
        if let (Action::Retry(r), Outcome::Retry { attempt, .. }) =
            (&rule.action, &decision.outcome)
        {
            out.push_str("; attempt ");
            push_decimal(out, u64::from(*attempt));
            match r.limit {
                Some(n) => {
                    out.push_str(" of ");
                    push_decimal(out, u64::from(n));
                }
                None => out.push_str(", no limit"),
            }
        }
    }

    fn decision_for(&self, rule: Option<usize>, dl: &DeadLetter) -> Decision {
        let Some(i) = rule else {
            return Decision {
                rule: None,
                line: None,
                outcome: Outcome::Leave,
            };
        };
        let r = &self.table.rules[i];
        Decision {
            rule: Some(i),
            line: Some(r.line),
            outcome: outcome(&r.action, dl),
        }
    }
}

/// The action with the message's facts filled in.
fn outcome(action: &Action, dl: &DeadLetter) -> Outcome {
    match action {
        Action::Retry(r) => {
            let attempt = dl.retries.saturating_add(1);
            Outcome::Retry {
                queue: dl.destq.to_string(),
                delay: backoff::delay(&r.delay, attempt),
                attempt,
                keep_user_id: r.put_authority.keeps_user_id(),
            }
        }
        Action::Forward(f) => {
            let (exchange, routing_key) = match &f.target {
                ForwardTarget::Queue(q) => (String::new(), resolve(q, dl)),
                ForwardTarget::Exchange {
                    exchange,
                    routing_key,
                } => (
                    resolve(exchange, dl),
                    match routing_key {
                        Some(k) => resolve(k, dl),
                        None => dl.original_routing_key().to_string(),
                    },
                ),
            };
            Outcome::Forward {
                exchange,
                routing_key,
                keep_headers: f.keep_headers,
                keep_user_id: f.put_authority.keeps_user_id(),
            }
        }
        Action::Discard { archive } => Outcome::Discard {
            archive: archive.clone(),
        },
        Action::Leave => Outcome::Leave,
    }
}

/// A target template with `&DESTQ`, `&DESTEX`, `&RKEY`, `&REASON`, `&REPLYTO` replaced.
pub fn resolve(template: &Template, dl: &DeadLetter) -> String {
    let mut out = String::new();
    for part in &template.parts {
        match part {
            TemplatePart::Literal(s) => out.push_str(s),
            TemplatePart::Var(Var::DestQ) => out.push_str(&dl.destq),
            TemplatePart::Var(Var::DestEx) => out.push_str(&dl.destex),
            TemplatePart::Var(Var::RKey) => out.push_str(dl.original_routing_key()),
            TemplatePart::Var(Var::Reason) => out.push_str(&dl.reason),
            TemplatePart::Var(Var::ReplyTo) => {
                out.push_str(dl.message.properties.reply_to.as_deref().unwrap_or(""))
            }
        }
    }
    out
}

/// `n` in decimal onto `out`, as `Display` writes it, without the formatting machinery.
fn push_decimal(out: &mut String, n: u64) {
    out.push_str(itoa::Buffer::new().format(n));
}

/// "REASON 'maxlen' matches 'maxlen', DESTQ 'orders.eu' matches 'orders.*'", or
/// "catch-all rule", appended to `out`. The message's values are escaped
/// (`crate::escape`): the text goes into report lines.
fn matched_on(rule: &Rule, dl: &DeadLetter, out: &mut String) {
    use crate::rules::field::{Field, Kind, Values};
    let p = &rule.patterns;
    let start = out.len();
    // Before each part but the first; parts are never empty. Writing into a String
    // cannot fail.
    let next = |out: &mut String| {
        if out.len() > start {
            out.push_str(", ");
        }
    };
    for field in Field::ALL {
        let kw = field.keyword();
        match field.kind() {
            Kind::Text(_) | Kind::AnyText(..) => {
                if let Some(pat) = p.text(field) {
                    // The value that matched (of several, the first that does).
                    let value = match field.values(dl) {
                        Values::One(v) => v,
                        many => many.find(|v| pat.matches(v)).unwrap_or(""),
                    };
                    next(out);
                    out.push_str(kw);
                    out.push_str(" '");
                    out.push_str(&crate::escape::text(value));
                    out.push_str("' matches '");
                    pat.shown().push_to(out);
                    out.push('\'');
                }
            }
            Kind::Flag(_) => {
                if let Some(yes) = p.persist {
                    next(out);
                    let _ = write!(out, "{kw}({})", if yes { "YES" } else { "NO" });
                }
            }
            Kind::Header => {
                for (name, pat) in &p.headers {
                    let value = dl.message.header(name);
                    next(out);
                    let _ = match value.and_then(|v| v.as_text()) {
                        Some(v) => write!(
                            out,
                            "{kw}({name}) '{}' matches '{}'",
                            Escaped(&v),
                            pat.shown()
                        ),
                        None => {
                            let kind = match value {
                                Some(crate::message::Value::Table(_)) => "a table",
                                _ => "an array",
                            };
                            write!(
                                out,
                                "{kw}({name}) present ({kind}) matches '{}'",
                                pat.shown()
                            )
                        }
                    };
                }
            }
            Kind::Size => {
                if let Some(b) = p.size {
                    let (op, n) = match b {
                        crate::rules::SizeBound::Greater(n) => ('>', n),
                        crate::rules::SizeBound::Less(n) => ('<', n),
                    };
                    next(out);
                    let _ = write!(out, "{kw}({op}{n}): {} bytes", dl.size);
                }
            }
        }
    }
    if out.len() == start {
        out.push_str("catch-all rule");
    }
}

#[cfg(test)]
pub(crate) mod tests;
