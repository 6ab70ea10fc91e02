//! Lowering: validate parsed entries and build the typed [`Table`] — keywords resolved
//! (with runmqdlq aliases), values checked and converted, patterns compiled, actions
//! assembled — reporting every error with its position.

use std::collections::HashMap;
use std::path::PathBuf;
use std::time::Duration;

use crate::rules::diagnostic::{Diagnostic, Span};
use crate::rules::keywords::{self, Class, Kw};
use crate::rules::pattern::{LazyRegex, Pattern, RegexError};
use crate::rules::syntax::{Entry, Item, Value, ValueKind};
use crate::rules::table::*;

/// The result of lowering: the table (meaningful only when there are no errors), the
/// diagnostics found, and the positions lint needs.
#[derive(Debug, Default)]
pub struct Lowered {
    pub table: Table,
    pub diagnostics: Vec<Diagnostic>,
    /// One per rule in `table.rules`.
    pub spans: Vec<RuleSpans>,
    /// Where `INPUTQ`'s value is, when given.
    pub input_queue: Option<Span>,
}

/// Where the parts of a rule are written, for warnings about it.
#[derive(Debug, Clone, Default)]
pub struct RuleSpans {
    /// The rule's first keyword.
    pub start: Span,
    /// The `RETRY` keyword.
    pub retry: Option<Span>,
    /// The `FWDQ` value.
    pub fwdq: Option<Span>,
}

/// Where lowering puts its diagnostics, with a cache of checked regexes (the same
/// regex written on many rules is checked once, and its clones share one matcher).
#[derive(Default)]
struct Sink {
    diags: Vec<Diagnostic>,
    regexes: HashMap<String, LazyRegex>,
}

impl std::ops::Deref for Sink {
    type Target = Vec<Diagnostic>;
    fn deref(&self) -> &Vec<Diagnostic> {
        &self.diags
    }
}

impl std::ops::DerefMut for Sink {
    fn deref_mut(&mut self) -> &mut Vec<Diagnostic> {
        &mut self.diags
    }
}

/// Lower every entry. The first entry may be control data.
pub fn lower(entries: &[Entry]) -> Lowered {
    let mut out = Lowered::default();
    let mut sink = Sink::default();
    for (index, entry) in entries.iter().enumerate() {
        // The rest of a first entry cut at a continuation is still the first entry.
        let first = index == 0 || (index == 1 && entry.cut && entries[0].cut);
        // runmqdlq's INPUTQM (MQ-only) is control data too: `INPUTQM(QM1)` alone is
        // a control entry, not a rule without an ACTION.
        let is_control = entry.items.iter().any(|it| {
            keywords::lookup(&it.keyword)
                .is_some_and(|k| k.class() == Class::Control || k == Kw::MqOnly("INPUTQM"))
        });
        if is_control {
            lower_control(entry, first, &mut out, &mut sink);
        } else {
            lower_rule(entry, &mut out, &mut sink);
        }
    }
    out.diagnostics = std::mem::take(&mut sink.diags);
    out
}

fn lower_control(entry: &Entry, first: bool, out: &mut Lowered, sink: &mut Sink) {
    let mut seen: HashMap<Kw, Span> = HashMap::new();
    let mut control = Control::default();
    for item in &entry.items {
        let Some(kw) = resolve(item, sink) else {
            continue;
        };
        if !check_duplicate(kw, item, &mut seen, sink) {
            continue;
        }
        match kw.class() {
            Class::Control if !first => {
                sink.push(
                    Diagnostic::error(
                        item.keyword_span,
                        format!(
                            "control data {} is allowed only in the first entry of the file",
                            kw.name()
                        ),
                    )
                    .with_help(
                        "move INPUTQ, RETRYINT and WAIT to the first line that is not a comment",
                    ),
                );
                continue;
            }
            Class::Control => {}
            Class::MqOnly => {
                sink.push(mq_only(kw, item));
                continue;
            }
            Class::Pattern | Class::Action => {
                sink.push(
                    Diagnostic::error(
                        item.keyword_span,
                        format!(
                            "{} cannot be part of control data (INPUTQ, RETRYINT, WAIT)",
                            kw.name()
                        ),
                    )
                    .with_help(
                        "write control data on a line of its own, and each rule on its own line",
                    ),
                );
                continue;
            }
        }
        let Some(value) = &item.value else { continue };
        match kw {
            Kw::InputQ if value.text.trim().is_empty() => {
                // runmqdlq: INPUTQ(' ') is the queue manager's default DLQ.
                sink.push(
                    Diagnostic::warning(
                        value.span,
                        "INPUTQ(' ') means the queue manager's default dead-letter queue in runmqdlq; RabbitMQ has none",
                    )
                    .with_help("name the DLQ: INPUTQ(name) or --queue"),
                );
            }
            Kw::InputQ => {
                control.input_queue = Some(value.text.clone());
                out.input_queue = Some(value.span);
            }
            Kw::RetryInt => match parse_duration(&value.text) {
                Ok(d) => {
                    if d < crate::stage::RETRY_INTERVAL_FLOOR {
                        sink.push(
                            Diagnostic::warning(
                                value.span,
                                "RETRYINT below 1s: dlqd raises it to 1s (left messages would otherwise be examined in a busy loop)",
                            )
                            .with_help("give RETRYINT(1s) or more"),
                        );
                    }
                    control.retry_interval = d;
                }
                Err(e) => sink.push(bad_duration(kw, value, &e)),
            },
            Kw::Wait => {
                if value.text.eq_ignore_ascii_case("YES") {
                    control.wait = Wait::Yes;
                } else if value.text.eq_ignore_ascii_case("NO") {
                    control.wait = Wait::No;
                } else {
                    match parse_duration(&value.text) {
                        Ok(d) => control.wait = Wait::For(d),
                        Err(e) => sink.push(
                            Diagnostic::error(
                                value.span,
                                format!("bad value for WAIT: `{}`: {e}", value.text),
                            )
                            .with_help("WAIT takes YES, NO or a duration such as 30s"),
                        ),
                    }
                }
            }
            _ => {}
        }
    }
    if first {
        out.table.control = control;
    }
}

/// The action keywords a rule collected, before they are assembled into an [`Action`].
#[derive(Default)]
struct ActionParts {
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

fn lower_rule(entry: &Entry, out: &mut Lowered, sink: &mut Sink) {
    let errors_before = count_errors(sink);
    let mut seen: HashMap<Kw, Span> = HashMap::new();
    let mut patterns = Patterns::default();
    let mut parts = ActionParts::default();
    let mut spans = RuleSpans {
        start: entry
            .items
            .first()
            .map_or(Span::new(entry.line, 1, 1), |i| i.keyword_span),
        ..RuleSpans::default()
    };
    let diags = &mut *sink;
    for item in &entry.items {
        let Some(kw) = resolve(item, diags) else {
            continue;
        };
        if !check_duplicate(kw, item, &mut seen, diags) {
            continue;
        }
        if kw.class() == Class::MqOnly {
            match (keywords::mq_pattern_missing(kw.name()), &item.value) {
                (Some(missing), Some(value))
                    if !Pattern::generic(&value.text).matches_everything() =>
                {
                    let never = NeverMatches {
                        keyword: kw.name(),
                        value: value.text.clone(),
                        missing,
                    };
                    diags.push(
                        Diagnostic::warning(item.keyword_span, never.to_string())
                            .with_help(mq_pattern_help(kw.name(), &value.text)),
                    );
                    patterns.never.get_or_insert(never);
                }
                _ => diags.push(mq_only(kw, item)),
            }
            continue;
        }
        if kw == Kw::Retry {
            spans.retry = Some(item.keyword_span);
        }
        if !owners(kw).is_empty() {
            parts.given.push((kw, item.keyword_span));
        }
        let Some(value) = &item.value else { continue };
        match kw {
            Kw::DestQ => patterns.destq = pattern(entry, kw, value, diags),
            Kw::DestEx => patterns.destex = pattern(entry, kw, value, diags),
            Kw::RKey => patterns.rkey = pattern(entry, kw, value, diags),
            Kw::Reason => patterns.reason = reason(entry, item, value, diags),
            Kw::AppId => patterns.appid = pattern(entry, kw, value, diags),
            Kw::UserId => patterns.userid = pattern(entry, kw, value, diags),
            Kw::Type => {
                mq_constant_hint(item, value, "AMQP message types are free text", diags);
                patterns.msg_type = pattern(entry, kw, value, diags)
            }
            Kw::ContentType => {
                mq_constant_hint(
                    item,
                    value,
                    "AMQP content types look like text/plain or application/json",
                    diags,
                );
                patterns.content_type = pattern(entry, kw, value, diags)
            }
            Kw::MsgId => patterns.msgid = pattern(entry, kw, value, diags),
            Kw::ReplyTo => patterns.replyto = pattern(entry, kw, value, diags),
            Kw::Persist => patterns.persist = persist(value, diags),
            Kw::Hdr => {
                if let Some(h) = header_pattern(entry, value, diags) {
                    patterns.headers.push(h);
                }
            }
            Kw::Size => patterns.size = size(value, diags),
            Kw::Action => {
                let found = ACTION_NAMES
                    .iter()
                    .find(|(n, _)| n.eq_ignore_ascii_case(&value.text));
                match found {
                    Some(&(_, a)) => parts.action = Some((a, value.span)),
                    None => {
                        let mut d = Diagnostic::error(
                            value.span,
                            format!("unknown action `{}`", value.text),
                        );
                        d = match keywords::closest(
                            &value.text,
                            ACTION_NAMES.iter().map(|(n, _)| *n),
                        ) {
                            Some(s) => d.with_help(format!("did you mean {s}?")),
                            None => d.with_help(
                                "actions are RETRY, FWD, DISCARD (PURGE), IGNORE (LEAVE)",
                            ),
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
                        Err(_) => diags.push(bad_number(kw, value, "a whole number or *")),
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
                Err(_) => diags.push(bad_number(kw, value, "a number such as 2 or 1.5")),
            },
            Kw::MaxDelay => match parse_duration(&value.text) {
                Ok(d) => parts.max_delay = Some(d),
                Err(e) => diags.push(bad_duration(kw, value, &e)),
            },
            Kw::FwdQ => {
                spans.fwdq = Some(value.span);
                parts.fwdq = template(entry, kw, value, diags);
            }
            Kw::FwdEx => parts.fwdex = template(entry, kw, value, diags),
            Kw::FwdRKey => {
                parts.fwdrkey = template(entry, kw, value, diags).map(|t| (t, item.keyword_span))
            }
            Kw::Header => parts.header = yes_no(kw, value, diags),
            Kw::Archive => parts.archive = Some(PathBuf::from(&value.text)),
            Kw::PutAut => parts.put_authority = put_authority(value, diags),
            Kw::InputQ | Kw::RetryInt | Kw::Wait | Kw::MqOnly(_) => {}
        }
    }
    let action = assemble(entry, &parts, &seen, &spans, diags);
    // Rules with errors still count for positions, but the table is discarded anyway.
    let ok = count_errors(sink) == errors_before;
    if let (Some(action), true) = (action, ok) {
        out.table.rules.push(Rule {
            line: entry.line,
            patterns,
            action,
        });
        out.spans.push(spans);
    }
}

fn count_errors(d: &[Diagnostic]) -> usize {
    d.iter().filter(|d| d.is_error()).count()
}

/// Build the action from its keywords; report missing and misplaced ones.
fn assemble(
    entry: &Entry,
    parts: &ActionParts,
    seen: &HashMap<Kw, Span>,
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
            let first = steps.first().copied().unwrap_or(Duration::ZERO);
            let largest = steps.iter().copied().max().unwrap_or(Duration::ZERO);
            let max = parts
                .max_delay
                .unwrap_or_else(|| first.saturating_mul(10).max(largest));
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

/// Resolve an item's keyword, reporting an unknown one with a suggestion.
fn resolve(item: &Item, diags: &mut Sink) -> Option<Kw> {
    let kw = keywords::lookup(&item.keyword);
    if kw.is_none() {
        let mut d = Diagnostic::error(
            item.keyword_span,
            format!("unknown keyword {}", item.keyword),
        );
        if let Some(s) = keywords::suggest(&item.keyword) {
            d = d.with_help(format!("did you mean {s}?"));
        }
        diags.push(d);
    }
    kw
}

/// False (and an error) when the keyword was already given in this entry.
fn check_duplicate(kw: Kw, item: &Item, seen: &mut HashMap<Kw, Span>, diags: &mut Sink) -> bool {
    if kw == Kw::Hdr {
        return true;
    }
    if let Some(first) = seen.get(&kw) {
        let written = item.keyword.to_ascii_uppercase();
        let what = if written == kw.name() {
            format!("duplicate keyword {written}")
        } else {
            format!("duplicate keyword {written} (an alias of {})", kw.name())
        };
        diags.push(
            Diagnostic::error(item.keyword_span, what).with_help(format!(
                "{} is already given at column {}; each keyword appears at most once per rule",
                kw.name(),
                first.column
            )),
        );
        return false;
    }
    seen.insert(kw, item.keyword_span);
    true
}

fn mq_only(kw: Kw, item: &Item) -> Diagnostic {
    Diagnostic::warning(
        item.keyword_span,
        format!(
            "{} is an IBM MQ keyword with no AMQP meaning; it is ignored",
            kw.name()
        ),
    )
    .with_help(keywords::mq_only_reason(kw.name()))
}

/// The help of the warning for an MQ-only pattern keyword that makes its rule never match.
fn mq_pattern_help(keyword: &str, value: &str) -> String {
    let mut help = format!(
        "remove {keyword}({value}), or write {keyword}(*), for the rule to match on its other patterns"
    );
    if keyword == "FEEDBACK" {
        help.push_str("; REASON says why a message died");
    }
    help
}

/// `PUTAUT(DEF|CTX)`.
fn put_authority(value: &Value, diags: &mut Sink) -> Option<PutAuthority> {
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

/// A warning when an MQ constant is used where AMQP has free text.
fn mq_constant_hint(item: &Item, value: &Value, hint: &str, diags: &mut Sink) {
    let t = &value.text;
    if value.kind != ValueKind::Regex
        && t.len() > 2
        && t.starts_with("MQ")
        && t.chars()
            .all(|c| c.is_ascii_uppercase() || c.is_ascii_digit() || c == '_')
    {
        diags.push(
            Diagnostic::warning(
                value.span,
                format!(
                    "{}({t}) looks like an IBM MQ constant; AMQP messages do not carry it",
                    item.keyword.to_ascii_uppercase()
                ),
            )
            .with_help(hint.to_string()),
        );
    }
}

/// The span of bytes `start..end` of a value's text, when the text maps 1:1 onto the
/// source (unquoted and regex values); the value's span otherwise.
fn sub_span(entry: &Entry, value: &Value, start: usize, end: usize) -> Span {
    if value.kind == ValueKind::Quoted {
        value.span
    } else {
        entry.span(value.offset + start, value.offset + end)
    }
}

fn pattern(entry: &Entry, kw: Kw, value: &Value, diags: &mut Sink) -> Option<Pattern> {
    pattern_at(entry, kw, value, &value.text, 0, diags)
}

/// Compile `text` (the part of the value from byte `at`) as a pattern.
fn pattern_at(
    entry: &Entry,
    kw: Kw,
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
                format!("empty regular expression in {}", kw.name()),
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
                regex::Error::CompiledTooBig(_) => "it compiles to too large a program".to_string(),
                other => other.to_string().lines().last().unwrap_or("").to_string(),
            };
            (msg, sub_span(entry, value, at, at + text.len()))
        }
    };
    diags.push(Diagnostic::error(
        where_,
        format!("bad regular expression in {}: {msg}", kw.name()),
    ));
    None
}

/// `REASON`, translating runmqdlq's reason constants.
fn reason(entry: &Entry, item: &Item, value: &Value, diags: &mut Sink) -> Option<Pattern> {
    if value.kind != ValueKind::Regex {
        let upper = value.text.to_ascii_uppercase();
        match upper.as_str() {
            "MQRC_Q_FULL" | "MQRC_Q_SPACE_NOT_AVAILABLE" => {
                return Some(Pattern::Literal("maxlen".into()));
            }
            "MQFB_EXPIRATION" => return Some(Pattern::Literal("expired".into())),
            "REJECTED" | "EXPIRED" | "MAXLEN" | "DELIVERY_LIMIT"
                if value.text != value.text.to_ascii_lowercase() =>
            {
                diags.push(
                    Diagnostic::warning(
                        value.span,
                        format!(
                            "REASON({}) never matches the broker's reason `{}`: reasons are case-sensitive",
                            value.text,
                            value.text.to_ascii_lowercase()
                        ),
                    )
                    .with_help(format!("write REASON({})", value.text.to_ascii_lowercase())),
                );
            }
            u if u.starts_with("MQRC_") || u.starts_with("MQFB_") => {
                diags.push(
                    Diagnostic::warning(
                        value.span,
                        format!(
                            "{}({}) is an IBM MQ reason with no AMQP equivalent; it matches only an application's own reason {}",
                            item.keyword.to_ascii_uppercase(),
                            value.text,
                            value.text
                        ),
                    )
                    .with_help("the broker's reasons are rejected, expired, maxlen and delivery_limit; MQRC_Q_FULL and MQFB_EXPIRATION are translated"),
                );
            }
            _ => {}
        }
    }
    pattern(entry, Kw::Reason, value, diags)
}

fn persist(value: &Value, diags: &mut Sink) -> Option<bool> {
    let t = value.text.to_ascii_uppercase();
    match t.as_str() {
        "YES" | "MQPER_PERSISTENT" => Some(true),
        "NO" | "MQPER_NOT_PERSISTENT" => Some(false),
        _ => {
            diags.push(
                Diagnostic::error(
                    value.span,
                    format!("bad value for PERSIST: `{}`", value.text),
                )
                .with_help("PERSIST takes YES or NO (or MQPER_PERSISTENT, MQPER_NOT_PERSISTENT)"),
            );
            None
        }
    }
}

fn yes_no(kw: Kw, value: &Value, diags: &mut Sink) -> Option<bool> {
    if value.text.eq_ignore_ascii_case("YES") {
        Some(true)
    } else if value.text.eq_ignore_ascii_case("NO") {
        Some(false)
    } else {
        diags.push(
            Diagnostic::error(
                value.span,
                format!("bad value for {}: `{}`", kw.name(), value.text),
            )
            .with_help(format!("{} takes YES or NO", kw.name())),
        );
        None
    }
}

/// `HDR(name=pattern)`.
fn header_pattern(entry: &Entry, value: &Value, diags: &mut Sink) -> Option<(String, Pattern)> {
    let Some(eq) = value.text.find('=') else {
        diags.push(
            Diagnostic::error(value.span, format!("HDR({}) has no `=`", value.text))
                .with_help("write HDR(name=pattern), e.g. HDR(x-tenant=acme*)"),
        );
        return None;
    };
    let name = value.text[..eq].trim();
    if name.is_empty() {
        diags.push(
            Diagnostic::error(value.span, "HDR has an empty header name")
                .with_help("write HDR(name=pattern)"),
        );
        return None;
    }
    let rest = &value.text[eq + 1..];
    let lead = rest.len() - rest.trim_start().len();
    let pat = rest.trim();
    if pat.is_empty() {
        diags.push(
            Diagnostic::error(value.span, format!("HDR({name}=) has an empty pattern"))
                .with_help("write * to require only that the header is present"),
        );
        return None;
    }
    let p = pattern_at(entry, Kw::Hdr, value, pat, eq + 1 + lead, diags)?;
    Some((name.to_string(), p))
}

/// `SIZE(>N)` / `SIZE(<N)` with an optional `KiB`/`MiB`/`GiB` unit.
fn size(value: &Value, diags: &mut Sink) -> Option<SizeBound> {
    let t = value.text.trim();
    let (greater, rest) = if let Some(r) = t.strip_prefix('>') {
        (true, r.trim())
    } else if let Some(r) = t.strip_prefix('<') {
        (false, r.trim())
    } else {
        diags.push(
            Diagnostic::error(value.span, format!("bad value for SIZE: `{t}`"))
                .with_help("write SIZE(>N) or SIZE(<N); N may end in KiB or MiB, e.g. SIZE(>1MiB)"),
        );
        return None;
    };
    let digits = rest
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(rest.len());
    let (num, unit) = rest.split_at(digits);
    let mult: Option<u64> = match unit.trim().to_ascii_uppercase().as_str() {
        "" | "B" => Some(1),
        "KIB" => Some(1024),
        "MIB" => Some(1024 * 1024),
        "GIB" => Some(1024 * 1024 * 1024),
        _ => None,
    };
    let n = num.parse::<u64>().ok();
    match (n, mult) {
        (Some(n), Some(m)) => match n.checked_mul(m) {
            Some(bytes) => Some(if greater {
                SizeBound::Greater(bytes)
            } else {
                SizeBound::Less(bytes)
            }),
            None => {
                diags.push(Diagnostic::error(
                    value.span,
                    format!("bad number in SIZE: `{rest}` is too large"),
                ));
                None
            }
        },
        _ => {
            diags.push(
                Diagnostic::error(value.span, format!("bad number in SIZE: `{rest}`")).with_help(
                    "N is a whole number of bytes, optionally followed by KiB, MiB or GiB",
                ),
            );
            None
        }
    }
}

/// `DELAY(d)` or `DELAY(d1,d2,...)`.
fn delay_list(entry: &Entry, value: &Value, diags: &mut Sink) -> Option<Vec<Duration>> {
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

/// A target name with `&DESTQ`-style substitutions.
fn template(entry: &Entry, kw: Kw, value: &Value, diags: &mut Sink) -> Option<Template> {
    const VARS: &[(&str, Var)] = &[
        ("DESTQ", Var::DestQ),
        ("DESTEX", Var::DestEx),
        ("RKEY", Var::RKey),
        ("REASON", Var::Reason),
        ("REPLYTO", Var::ReplyTo),
        ("REPLYQ", Var::ReplyTo),
    ];
    let text = &value.text;
    let mut parts = Vec::new();
    let mut lit = String::new();
    let mut ok = true;
    let mut i = 0;
    while i < text.len() {
        let rest = &text[i..];
        let after_amp = rest.strip_prefix('&').unwrap_or("");
        let letters = after_amp
            .find(|c: char| !c.is_ascii_alphabetic())
            .unwrap_or(after_amp.len());
        if rest.starts_with('&') && letters > 0 {
            let name = &after_amp[..letters];
            match VARS.iter().find(|(n, _)| n.eq_ignore_ascii_case(name)) {
                Some(&(_, var)) => {
                    if !lit.is_empty() {
                        parts.push(TemplatePart::Literal(std::mem::take(&mut lit)));
                    }
                    parts.push(TemplatePart::Var(var));
                }
                None => {
                    let mut d = Diagnostic::error(
                        sub_span(entry, value, i, i + 1 + letters),
                        format!("unknown substitution &{name} in {}", kw.name()),
                    );
                    d = match keywords::closest(name, VARS.iter().map(|(n, _)| *n)) {
                        Some(s) => d.with_help(format!(
                            "did you mean &{s}? a substitution ends at the first character that is not a letter"
                        )),
                        None => d.with_help("substitutions are &DESTQ, &DESTEX, &RKEY, &REASON, &REPLYTO"),
                    };
                    diags.push(d);
                    ok = false;
                }
            }
            i += 1 + letters;
        } else {
            let c = rest.chars().next().unwrap_or('&');
            lit.push(c);
            i += c.len_utf8();
        }
    }
    if !lit.is_empty() {
        parts.push(TemplatePart::Literal(lit));
    }
    ok.then_some(Template { parts })
}

fn bad_number(kw: Kw, value: &Value, expected: &str) -> Diagnostic {
    Diagnostic::error(
        value.span,
        format!("bad number in {}: `{}`", kw.name(), value.text),
    )
    .with_help(format!("{} takes {expected}", kw.name()))
}

fn bad_duration(kw: Kw, value: &Value, why: &str) -> Diagnostic {
    Diagnostic::error(
        value.span,
        format!("bad duration in {}: `{}`: {why}", kw.name(), value.text),
    )
    .with_help("durations look like 500ms, 5s, 1m 30s; a bare number is seconds")
}

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

#[cfg(test)]
mod tests {
    use crate::rules::check_source;
    use crate::rules::diagnostic::Severity;
    use crate::rules::pattern::Pattern;
    use crate::rules::table::*;
    use std::time::Duration;

    fn pat(p: &Pattern) -> String {
        match p {
            Pattern::Literal(s) => format!("'{s}'"),
            Pattern::Glob(s) => format!("g'{s}'"),
            Pattern::Regex(r) => format!("/{}/", r.as_str()),
        }
    }

    fn dur(d: Duration) -> String {
        humantime::format_duration(d).to_string()
    }

    fn tmpl(t: &Template) -> String {
        t.parts
            .iter()
            .map(|p| match p {
                TemplatePart::Literal(s) => s.clone(),
                TemplatePart::Var(v) => format!("&{v:?}"),
            })
            .collect()
    }

    fn putaut(p: PutAuthority) -> String {
        match p {
            PutAuthority::Def => String::new(),
            PutAuthority::Ctx => " putaut=CTX".into(),
        }
    }

    fn describe_rule(r: &Rule) -> String {
        let p = &r.patterns;
        let mut out = vec![format!("L{}", r.line)];
        for (name, f) in [
            ("destq", &p.destq),
            ("destex", &p.destex),
            ("rkey", &p.rkey),
            ("reason", &p.reason),
            ("appid", &p.appid),
            ("userid", &p.userid),
            ("type", &p.msg_type),
            ("ctype", &p.content_type),
            ("msgid", &p.msgid),
            ("replyto", &p.replyto),
        ] {
            if let Some(f) = f {
                out.push(format!("{name}={}", pat(f)));
            }
        }
        if let Some(b) = p.persist {
            out.push(format!("persist={b}"));
        }
        for (n, h) in &p.headers {
            out.push(format!("hdr:{n}={}", pat(h)));
        }
        match p.size {
            Some(SizeBound::Greater(n)) => out.push(format!("size>{n}")),
            Some(SizeBound::Less(n)) => out.push(format!("size<{n}")),
            None => {}
        }
        if let Some(n) = &p.never {
            out.push(format!("never={}({})", n.keyword, n.value));
        }
        out.push("=>".into());
        out.push(match &r.action {
            Action::Retry(rt) => format!(
                "retry({}) delay=[{}] x{} max={}{}",
                rt.limit.map_or("*".to_string(), |n| n.to_string()),
                rt.delay
                    .steps
                    .iter()
                    .map(|d| dur(*d))
                    .collect::<Vec<_>>()
                    .join(","),
                rt.delay.backoff,
                dur(rt.delay.max),
                putaut(rt.put_authority)
            ),
            Action::Forward(f) => {
                let t = match &f.target {
                    ForwardTarget::Queue(q) => format!("fwdq({})", tmpl(q)),
                    ForwardTarget::Exchange {
                        exchange,
                        routing_key,
                    } => format!(
                        "fwdex({}) rkey({})",
                        tmpl(exchange),
                        routing_key.as_ref().map_or("-".into(), tmpl)
                    ),
                };
                format!(
                    "{t}{}{}",
                    if f.keep_headers { "" } else { " noheader" },
                    putaut(f.put_authority)
                )
            }
            Action::Discard { archive } => match archive {
                Some(a) => format!("discard archive={}", a.display()),
                None => "discard".into(),
            },
            Action::Leave => "leave".into(),
        });
        out.join(" ")
    }

    /// The table (control data when not default, then one rule per `; `), or every
    /// error as `E l:c message`; warnings are left to the lint tests.
    fn describe(source: &str) -> String {
        let c = check_source("t", source);
        match &c.table {
            Some(t) => {
                let mut parts = Vec::new();
                if t.control != Control::default() {
                    parts.push(format!(
                        "ctl in={} int={} wait={:?}",
                        t.control.input_queue.as_deref().unwrap_or("-"),
                        dur(t.control.retry_interval),
                        t.control.wait
                    ));
                }
                parts.extend(t.rules.iter().map(describe_rule));
                parts.join("; ")
            }
            None => c
                .diagnostics
                .iter()
                .filter(|d| d.severity == Severity::Error)
                .map(|d| format!("E {}:{} {}", d.line, d.column, d.message))
                .collect::<Vec<_>>()
                .join("; "),
        }
    }

    fn check(input: &str, expected: &str) {
        assert_eq!(describe(input), expected, "input: {input:?}");
    }

    #[test]
    fn lowers() {
        let cases: &[(&str, &str)] = &[
            // Patterns.
            ("DESTQ(orders) ACTION(IGNORE)", "L1 destq='orders' => leave"),
            (
                "DESTQ(orders.*) ACTION(LEAVE)",
                "L1 destq=g'orders.*' => leave",
            ),
            (
                "DESTQ(/^a(b|c)$/) ACTION(IGNORE)",
                "L1 destq=/^a(b|c)$/ => leave",
            ),
            (r"RKEY(/a\/b/) ACTION(IGNORE)", r"L1 rkey=/a\/b/ => leave"),
            (
                "DESTEX(ex) RKEY(k.?) ACTION(IGNORE)",
                "L1 destex='ex' rkey=g'k.?' => leave",
            ),
            (
                "APPID(a) USERID(u) TYPE(t) CONTENTTYPE(c) MSGID(m) REPLYTO(r) ACTION(IGNORE)",
                "L1 appid='a' userid='u' type='t' ctype='c' msgid='m' replyto='r' => leave",
            ),
            (
                "HDR(x-a=1) HDR( x-b = /^2$/ ) ACTION(IGNORE)",
                "L1 hdr:x-a='1' hdr:x-b=/^2$/ => leave",
            ),
            ("HDR('x-a=(1)') ACTION(IGNORE)", "L1 hdr:x-a='(1)' => leave"),
            ("SIZE(>1KiB) ACTION(IGNORE)", "L1 size>1024 => leave"),
            ("SIZE(< 2 mib) ACTION(IGNORE)", "L1 size<2097152 => leave"),
            ("SIZE(>100) ACTION(IGNORE)", "L1 size>100 => leave"),
            ("PERSIST(yes) ACTION(IGNORE)", "L1 persist=true => leave"),
            // runmqdlq aliases.
            (
                "APPLNAME(a) MSGTYPE(t) REPLYQ(r) FORMAT(text/plain) ACTION(IGNORE)",
                "L1 appid='a' type='t' ctype='text/plain' replyto='r' => leave",
            ),
            (
                "PERSIST(MQPER_PERSISTENT) ACTION(IGNORE)",
                "L1 persist=true => leave",
            ),
            (
                "persist(mqper_not_persistent) action(ignore)",
                "L1 persist=false => leave",
            ),
            (
                "REASON(MQRC_Q_FULL) ACTION(IGNORE)",
                "L1 reason='maxlen' => leave",
            ),
            (
                "REASON(MQFB_EXPIRATION) ACTION(IGNORE)",
                "L1 reason='expired' => leave",
            ),
            // An MQ-only pattern keyword: `*` is ignored, anything else never matches.
            (
                "DESTQM(QM1) DESTQ(a) ACTION(IGNORE)",
                "L1 destq='a' never=DESTQM(QM1) => leave",
            ),
            ("DESTQM(*) DESTQ(a) ACTION(IGNORE)", "L1 destq='a' => leave"),
            (
                "REPLYQM('?*') FEEDBACK(MQFB_COA) ACTION(IGNORE)",
                "L1 never=REPLYQM(?*) => leave",
            ),
            ("APPLTYPE(**) APPLIDAT(*) ACTION(IGNORE)", "L1 => leave"),
            // Control data.
            (
                "INPUTQ(o.dlq) RETRYINT(30) WAIT(NO)\nACTION(IGNORE)",
                "ctl in=o.dlq int=30s wait=No; L2 => leave",
            ),
            (
                "* c\nINPUTQ(o.dlq) WAIT(1m 30s)\nACTION(IGNORE)",
                "ctl in=o.dlq int=1m wait=For(90s); L3 => leave",
            ),
            (
                "WAIT(yes) RETRYINT(500ms)\nACTION(IGNORE)",
                "ctl in=- int=500ms wait=Yes; L2 => leave",
            ),
            ("INPUTQM(QM1)\nACTION(IGNORE)", "L2 => leave"),
            // Actions and their keywords.
            ("ACTION(RETRY)", "L1 => retry(1) delay=[0s] x1 max=0s"),
            (
                "ACTION(RETRY) RETRY(5) DELAY(1s) BACKOFF(2)",
                "L1 => retry(5) delay=[1s] x2 max=10s",
            ),
            (
                "ACTION(RETRY) RETRY(*) DELAY(2) MAXDELAY(1m)",
                "L1 => retry(*) delay=[2s] x1 max=1m",
            ),
            (
                "ACTION(RETRY) RETRY(6) DELAY(1s,2s,3s,5s,8s,24s)",
                "L1 => retry(6) delay=[1s,2s,3s,5s,8s,24s] x1 max=24s",
            ),
            (
                "ACTION(RETRY) DELAY( 500ms , 1m 30s ) BACKOFF(1.5)",
                "L1 => retry(1) delay=[500ms,1m 30s] x1.5 max=1m 30s",
            ),
            (
                "ACTION(FWD) FWDQ(&DESTQ.parked)",
                "L1 => fwdq(&DestQ.parked)",
            ),
            (
                "ACTION(FWD) FWDQ(x&destq&REASON) HEADER(no)",
                "L1 => fwdq(x&DestQ&Reason) noheader",
            ),
            (
                "ACTION(FWD) FWDEX(billing.errors) FWDRKEY(&DESTQ)",
                "L1 => fwdex(billing.errors) rkey(&DestQ)",
            ),
            (
                "ACTION(FWD) FWDEX(e) FWDRKEY(&RKEY-&DESTEX-&REPLYQ-&REPLYTO)",
                "L1 => fwdex(e) rkey(&RKey-&DestEx-&ReplyTo-&ReplyTo)",
            ),
            ("ACTION(FWD) FWDEX(e)", "L1 => fwdex(e) rkey(-)"),
            ("ACTION(FWD) FWDQ('a & (c)')", "L1 => fwdq(a & (c))"),
            ("ACTION(FWD) FWDQ(a&1)", "L1 => fwdq(a&1)"),
            ("ACTION(DISCARD)", "L1 => discard"),
            (
                "ACTION(PURGE) ARCHIVE(/var/lib/dlqd/purged.jsonl)",
                "L1 => discard archive=/var/lib/dlqd/purged.jsonl",
            ),
            (
                "ACTION(FWD) FWDQ(q) FWDQM(QM2) PUTAUT(CTX)",
                "L1 => fwdq(q) putaut=CTX",
            ),
            ("ACTION(FWD) FWDQ(q) PUTAUT(def)", "L1 => fwdq(q)"),
            (
                "ACTION(RETRY) PUTAUT(ctx)",
                "L1 => retry(1) delay=[0s] x1 max=0s putaut=CTX",
            ),
            (
                "DESTQ(a) +\n  ACTION(RETRY) -\n RETRY(3)\nACTION(IGNORE)",
                "L1 destq='a' => retry(3) delay=[0s] x1 max=0s; L4 => leave",
            ),
            // Errors, each with its position.
            ("DESTQQ(a) ACTION(IGNORE)", "E 1:1 unknown keyword DESTQQ"),
            (
                "DESTQ(a) DESTQ(b) ACTION(IGNORE)",
                "E 1:10 duplicate keyword DESTQ",
            ),
            (
                "APPID(a) APPLNAME(b) ACTION(IGNORE)",
                "E 1:10 duplicate keyword APPLNAME (an alias of APPID)",
            ),
            ("DESTQ(a)", "E 1:1 this rule has no ACTION"),
            ("ACTION(FWD)", "E 1:8 ACTION(FWD) without a target"),
            (
                "ACTION(FWD) FWDQ(a) FWDEX(b)",
                "E 1:8 ACTION(FWD) has both FWDQ and FWDEX",
            ),
            (
                "ACTION(FWD) FWDQ(a) FWDRKEY(b)",
                "E 1:21 FWDRKEY goes with FWDEX, not FWDQ",
            ),
            (
                "ACTION(DISCARD) RETRY(3)",
                "E 1:17 RETRY does not belong to ACTION(DISCARD): it is for ACTION(RETRY)",
            ),
            (
                "ACTION(RETRY) ARCHIVE(x)",
                "E 1:15 ARCHIVE does not belong to ACTION(RETRY): it is for ACTION(DISCARD)",
            ),
            (
                "ACTION(IGNORE) HEADER(NO)",
                "E 1:16 HEADER does not belong to ACTION(IGNORE): it is for ACTION(FWD)",
            ),
            (
                "ACTION(DISCARD) PUTAUT(CTX)",
                "E 1:17 PUTAUT does not belong to ACTION(DISCARD): it is for ACTION(FWD) or ACTION(RETRY)",
            ),
            (
                "ACTION(FWD) FWDQ(q) PUTAUT(ALT)",
                "E 1:28 bad value for PUTAUT: `ALT`",
            ),
            ("ACTION(BOUNCE)", "E 1:8 unknown action `BOUNCE`"),
            (
                "ACTION(RETRY) DELAY(5x)",
                "E 1:21 bad duration in DELAY: `5x`: unknown time unit \"x\", supported units: ns, us/µs, ms, sec, min, hours, days, weeks, months, years (and few variations)",
            ),
            (
                "ACTION(RETRY) DELAY(1s,,2s)",
                "E 1:24 empty entry in the DELAY list",
            ),
            (
                "ACTION(RETRY) DELAY(1s, 2x)",
                "E 1:25 bad duration in DELAY: `2x`: unknown time unit \"x\", supported units: ns, us/µs, ms, sec, min, hours, days, weeks, months, years (and few variations)",
            ),
            (
                "ACTION(RETRY) RETRY(five)",
                "E 1:21 bad number in RETRY: `five`",
            ),
            (
                "ACTION(RETRY) RETRY(-1)",
                "E 1:21 bad number in RETRY: `-1`",
            ),
            (
                "ACTION(RETRY) BACKOFF(x)",
                "E 1:23 bad number in BACKOFF: `x`",
            ),
            (
                "ACTION(RETRY) BACKOFF(0.5)",
                "E 1:23 BACKOFF(0.5) must be a number of at least 1",
            ),
            (
                "ACTION(RETRY) MAXDELAY(soon)",
                "E 1:24 bad duration in MAXDELAY: `soon`: not a duration",
            ),
            (
                "SIZE(1KiB) ACTION(IGNORE)",
                "E 1:6 bad value for SIZE: `1KiB`",
            ),
            (
                "SIZE(>1KB) ACTION(IGNORE)",
                "E 1:6 bad number in SIZE: `1KB`",
            ),
            (
                "PERSIST(maybe) ACTION(IGNORE)",
                "E 1:9 bad value for PERSIST: `maybe`",
            ),
            (
                "ACTION(FWD) FWDQ(a) HEADER(perhaps)",
                "E 1:28 bad value for HEADER: `perhaps`",
            ),
            (
                "DESTQ(/a(b/) ACTION(IGNORE)",
                "E 1:9 bad regular expression in DESTQ: unclosed group",
            ),
            (
                "DESTQ( /ab[/ ) ACTION(IGNORE)",
                "E 1:11 bad regular expression in DESTQ: unclosed character class",
            ),
            (
                "HDR(x=/a{2,1}/) ACTION(IGNORE)",
                "E 1:9 bad regular expression in HDR: invalid repetition count range, the start must be <= the end",
            ),
            (
                "DESTQ(+\n/a)+/) ACTION(IGNORE)",
                "E 2:3 bad regular expression in DESTQ: unopened group",
            ),
            (
                "DESTQ(//) ACTION(IGNORE)",
                "E 1:7 empty regular expression in DESTQ",
            ),
            ("HDR(x) ACTION(IGNORE)", "E 1:5 HDR(x) has no `=`"),
            (
                "ACTION(FWD) FWDQ(&DESTQparked)",
                "E 1:18 unknown substitution &DESTQparked in FWDQ",
            ),
            (
                "WAIT(sometimes)\nACTION(IGNORE)",
                "E 1:6 bad value for WAIT: `sometimes`: not a duration",
            ),
            (
                "RETRYINT(x)\nACTION(IGNORE)",
                "E 1:10 bad duration in RETRYINT: `x`: not a duration",
            ),
            (
                "ACTION(IGNORE)\nINPUTQ(a)",
                "E 2:1 control data INPUTQ is allowed only in the first entry of the file",
            ),
            (
                "INPUTQ(a) ACTION(IGNORE)",
                "E 1:11 ACTION cannot be part of control data (INPUTQ, RETRYINT, WAIT)",
            ),
            (
                "DESTQ() ACTION(IGNORE)",
                "E 1:6 empty value: DESTQ() needs a value",
            ),
            // Regression: a continuation into a comment or blank line cascaded (no ACTION,
            // unknown keywords from the comment's words). One error, at the `+`.
            (
                "DESTQ(a) +\n* note\n  ACTION(IGNORE)",
                "E 1:10 the `+` at the end of line 1 continues this entry onto a comment, line 2",
            ),
            (
                "INPUTQ(q) +\n\n  RETRYINT(5s)\nDESTQ(a) +\n# x\n\n  PERSIST(NO) +\n  ACTION(IGNORE)",
                "E 1:11 the `+` at the end of line 1 continues this entry onto a blank line, line 2; E 4:10 the `+` at the end of line 4 continues this entry onto a comment, line 5",
            ),
            // Every error is reported, not only the first.
            (
                "DESTQQ(a) ACTION(IGNORE)\nACTION(FWD)\nDESTQ(a) RETRY(x) ACTION(RETRY)",
                "E 1:1 unknown keyword DESTQQ; E 2:8 ACTION(FWD) without a target; E 3:16 bad number in RETRY: `x`",
            ),
        ];
        for (input, expected) in cases {
            check(input, expected);
        }
    }
}
