//! A rule's action: its keywords' values collected ([`ActionParts`]), then assembled
//! into an [`Action`] — missing and misplaced keywords reported (`HEADER` belongs to
//! `ACTION(FWD)`), defaults filled in (`RETRY(1)`, `MAXDELAY` of 10 × the first delay).

use std::path::PathBuf;
use std::time::Duration;

use super::template::template;
use super::values::{bad_duration, bad_number, delay_list, parse_duration, put_authority, yes_no};
use super::{RuleSpans, Seen, Sink};
use crate::rules::diagnostic::{Diagnostic, Span};
use crate::rules::keywords::{self, Kw};
use crate::rules::syntax::{Entry, Item, Value};
use crate::rules::table::*;

/// The action keywords a rule collected, before they are assembled into an [`Action`].
#[derive(Default)]
pub(super) struct ActionParts {
    action: Option<(ActionName, Span)>,
    retry: Option<Option<u32>>,
    delay: Option<Vec<Duration>>,
    backoff: Option<f64>,
    max_delay: Option<Duration>,
    fwdq: Option<Template>,
    fwdex: Option<Template>,
    fwdrkey: Option<(Template, Span)>,
    header: Option<bool>,
    archive: Option<PathBuf>,
    put_authority: Option<PutAuthority>,
    /// Every action keyword given, with where, to check they belong to the action.
    given: Vec<(Kw, Span)>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ActionName {
    Retry,
    Fwd,
    Discard,
    Ignore,
}

impl ActionName {
    fn name(self) -> &'static str {
        match self {
            ActionName::Retry => "RETRY",
            ActionName::Fwd => "FWD",
            ActionName::Discard => "DISCARD",
            ActionName::Ignore => "IGNORE",
        }
    }
}

const ACTION_NAMES: &[(&str, ActionName)] = &[
    ("RETRY", ActionName::Retry),
    ("FWD", ActionName::Fwd),
    ("DISCARD", ActionName::Discard),
    ("PURGE", ActionName::Discard),
    ("IGNORE", ActionName::Ignore),
    ("LEAVE", ActionName::Ignore),
];

impl ActionParts {
    /// Note that action keyword `kw` is written at `span` (with or without a value), to
    /// check it belongs to the action.
    pub(super) fn given(&mut self, kw: Kw, span: Span) {
        if !owners(kw).is_empty() {
            self.given.push((kw, span));
        }
    }
}

/// Which actions an action keyword belongs to (empty for other keywords).
fn owners(kw: Kw) -> &'static [ActionName] {
    match kw {
        Kw::Retry | Kw::Delay | Kw::Backoff | Kw::MaxDelay => &[ActionName::Retry],
        Kw::FwdQ | Kw::FwdEx | Kw::FwdRKey | Kw::Header => &[ActionName::Fwd],
        Kw::PutAut => &[ActionName::Fwd, ActionName::Retry],
        Kw::Archive => &[ActionName::Discard],
        _ => &[],
    }
}

/// Read one action keyword's value into `parts`.
pub(super) fn lower_action_item(
    entry: &Entry,
    kw: Kw,
    item: &Item,
    value: &Value,
    parts: &mut ActionParts,
    spans: &mut RuleSpans,
    diags: &mut Sink,
) {
    match kw {
        Kw::Action => {
            let found = ACTION_NAMES
                .iter()
                .find(|(n, _)| n.eq_ignore_ascii_case(&value.text));
            match found {
                Some(&(_, a)) => parts.action = Some((a, value.span)),
                None => {
                    let mut d =
                        Diagnostic::error(value.span, format!("unknown action `{}`", value.text));
                    d = match keywords::closest(&value.text, ACTION_NAMES.iter().map(|(n, _)| *n)) {
                        Some(s) => d.with_help(format!("did you mean {s}?")),
                        None => {
                            d.with_help("actions are RETRY, FWD, DISCARD (PURGE), IGNORE (LEAVE)")
                        }
                    };
                    diags.push(d);
                    // `seen` holds ACTION, so "no ACTION" is not reported as well.
                }
            }
        }
        Kw::Retry => {
            if value.text.trim() == "*" {
                parts.retry = Some(None);
            } else {
                match value.text.parse::<u32>() {
                    Ok(n) => {
                        if n == 0 {
                            diags.push(
                                Diagnostic::warning(
                                    value.span,
                                    "RETRY(0) never retries: this rule is always skipped",
                                )
                                .with_help("remove the rule, or give a limit of at least 1"),
                            );
                        }
                        parts.retry = Some(Some(n));
                    }
                    Err(_) => diags.push(bad_number(kw.name(), value, "a whole number or *")),
                }
            }
        }
        Kw::Delay => parts.delay = delay_list(entry, value, diags),
        Kw::Backoff => match value.text.parse::<f64>() {
            Ok(x) if x.is_finite() && x >= 1.0 => parts.backoff = Some(x),
            Ok(_) => diags.push(
                Diagnostic::error(
                    value.span,
                    format!("BACKOFF({}) must be a number of at least 1", value.text),
                )
                .with_help("BACKOFF multiplies the delay after each attempt, e.g. BACKOFF(2)"),
            ),
            Err(_) => diags.push(bad_number(kw.name(), value, "a number such as 2 or 1.5")),
        },
        Kw::MaxDelay => match parse_duration(&value.text) {
            Ok(d) => parts.max_delay = Some(d),
            Err(e) => diags.push(bad_duration(kw.name(), value, &e)),
        },
        Kw::FwdQ => {
            spans.fwdq = Some(value.span);
            parts.fwdq = template(entry, kw.name(), value, diags);
        }
        Kw::FwdEx => {
            spans.fwdex = Some(value.span);
            parts.fwdex = template(entry, kw.name(), value, diags);
        }
        Kw::FwdRKey => {
            spans.fwdrkey = Some(value.span);
            parts.fwdrkey = template(entry, kw.name(), value, diags).map(|t| (t, item.keyword_span))
        }
        Kw::Header => parts.header = yes_no(kw.name(), value, diags),
        Kw::Archive => parts.archive = Some(PathBuf::from(&value.text)),
        Kw::PutAut => {
            spans.putaut = Some(value.span);
            parts.put_authority = put_authority(value, diags);
        }
        Kw::Control(_) | Kw::Pattern(_) | Kw::MqOnly(_) => {}
    }
}

/// Build the action from its keywords; report missing and misplaced ones.
pub(super) fn assemble(
    entry: &Entry,
    parts: &ActionParts,
    seen: &Seen,
    spans: &RuleSpans,
    diags: &mut Sink,
) -> Option<Action> {
    let Some((action, action_span)) = parts.action else {
        // A cut entry's ACTION may be in its other half: the cut is the error.
        if !seen.contains_key(&Kw::Action) && !entry.cut {
            diags.push(
                Diagnostic::error(spans.start, "this rule has no ACTION")
                    .with_help("add ACTION(RETRY), ACTION(FWD), ACTION(DISCARD) or ACTION(IGNORE)"),
            );
        }
        return None;
    };
    let mut ok = true;
    for &(kw, span) in &parts.given {
        let owners = owners(kw);
        if !owners.is_empty() && !owners.contains(&action) {
            ok = false;
            let belongs: Vec<String> = owners
                .iter()
                .map(|o| format!("ACTION({})", o.name()))
                .collect();
            diags.push(
                Diagnostic::error(
                    span,
                    format!(
                        "{} does not belong to ACTION({}): it is for {}",
                        kw.name(),
                        action.name(),
                        belongs.join(" or ")
                    ),
                )
                .with_help(format!("remove {}", kw.name())),
            );
        }
    }
    let put_authority = parts.put_authority.unwrap_or_default();
    if !ok {
        return None;
    }
    match action {
        ActionName::Retry => {
            let steps = parts.delay.clone().unwrap_or_else(|| vec![Duration::ZERO]);
            let max = parts
                .max_delay
                .unwrap_or_else(|| DelaySchedule::default_max(&steps));
            Some(Action::Retry(Retry {
                limit: parts.retry.unwrap_or(Some(1)),
                delay: DelaySchedule {
                    steps,
                    backoff: parts.backoff.unwrap_or(1.0),
                    max,
                },
                put_authority,
            }))
        }
        ActionName::Fwd => {
            let keep_headers = parts.header.unwrap_or(true);
            let target = match (&parts.fwdq, &parts.fwdex) {
                (Some(q), None) => {
                    if let Some((_, span)) = &parts.fwdrkey {
                        diags.push(
                            Diagnostic::error(*span, "FWDRKEY goes with FWDEX, not FWDQ")
                                .with_help("FWDQ(queue) publishes with the queue name as routing key; use FWDEX(exchange) FWDRKEY(key) to choose one"),
                        );
                        return None;
                    }
                    ForwardTarget::Queue(q.clone())
                }
                (None, Some(ex)) => ForwardTarget::Exchange {
                    exchange: ex.clone(),
                    routing_key: parts.fwdrkey.as_ref().map(|(t, _)| t.clone()),
                },
                (Some(_), Some(_)) => {
                    diags.push(
                        Diagnostic::error(action_span, "ACTION(FWD) has both FWDQ and FWDEX")
                            .with_help("give FWDQ(queue), or FWDEX(exchange) with an optional FWDRKEY(key)"),
                    );
                    return None;
                }
                (None, None) => {
                    // An error was already reported when a target's value was bad.
                    if !seen.contains_key(&Kw::FwdQ) && !seen.contains_key(&Kw::FwdEx) {
                        diags.push(
                            Diagnostic::error(action_span, "ACTION(FWD) without a target")
                                .with_help("add FWDQ(queue), or FWDEX(exchange) with an optional FWDRKEY(key)"),
                        );
                    }
                    return None;
                }
            };
            Some(Action::Forward(Forward {
                target,
                keep_headers,
                put_authority,
            }))
        }
        ActionName::Discard => Some(Action::Discard {
            archive: parts.archive.clone(),
        }),
        ActionName::Ignore => Some(Action::Leave),
    }
}
