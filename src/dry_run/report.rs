//! The dry-run report: per-message text or JSON lines, the summary table, and a rule's
//! short text as the summary shows it.
//!
//! Every value that comes from a message (ids, queue names, routing keys, header
//! values) is escaped in the text report (`crate::escape`), so a producer can neither
//! end a line nor forge one; the columns stay aligned (`columns`).

use std::borrow::Cow;
use std::fmt::Write as _;
use std::io::{self, Write};
use std::time::Duration;

use super::Summary;
use super::columns::{self, Column};
use crate::dead_letter::DeadLetter;
use crate::decide::{Decider, Decision, Outcome};
use crate::escape;
use crate::rules::Rule;

/// One message's decision, as the report prints it.
pub struct Entry<'a> {
    pub index: u64,
    pub dl: &'a DeadLetter<'a>,
    pub decision: &'a Decision,
    /// (rule index, why it did not apply) for each earlier rule; empty without --explain.
    pub explain: &'a [(usize, String)],
}

fn delay_of(o: &Outcome) -> Option<Duration> {
    match o {
        Outcome::Retry { delay, .. } => Some(*delay),
        _ => None,
    }
}

fn attempt_of(o: &Outcome) -> Option<u32> {
    match o {
        Outcome::Retry { attempt, .. } => Some(*attempt),
        _ => None,
    }
}

fn line_of(decider: &Decider, i: usize) -> u32 {
    decider.table().rules.get(i).map_or(0, |r| r.line)
}

/// INDEX, MESSAGE-ID, RULE, ACTION, TARGET, DELAY; ATTEMPT follows.
const COLUMNS: [Column; 6] = [
    Column::number(5),
    Column::text(16),
    Column::number(4),
    Column::left(7),
    Column::text(30),
    Column::left(8),
];

pub fn text_header<W: Write>(out: &mut W) -> io::Result<()> {
    let header = [
        "INDEX",
        "MESSAGE-ID",
        "RULE",
        "ACTION",
        "TARGET",
        "DELAY",
        "ATTEMPT",
    ];
    writeln!(out, "{}", columns::row(&COLUMNS, &header))
}

/// The note under a message whose retry or forward cannot be carried out, or `None`.
pub fn unroutable_note(o: &Outcome) -> Option<String> {
    let reason = o.unroutable()?;
    let why = match o {
        Outcome::Retry { .. } => {
            "a retry goes back to the queue the message died in, and it has no death history (x-death, x-first-death-queue) naming one"
        }
        _ => "the forward's target came out empty for this message",
    };
    Some(format!(
        "{reason}: {why}; the handler will fail this {} and leave the message on the DLQ",
        o.name()
    ))
}

/// Buffers the report reuses from one message to the next, so that a line costs no
/// allocation once they have grown to size.
#[derive(Debug, Default)]
pub struct Bufs {
    line: String,
    index: String,
    rule: String,
    target: String,
    delay: String,
    attempt: String,
    /// The delay `delay` holds the text of (delays repeat: formatted once each run).
    delay_of: Option<Duration>,
    why: String,
    json: Vec<u8>,
}

/// The TARGET cell: [`Outcome::target`] escaped, `(none: ...)` or `-`. Escaping works
/// character by character, so the parts of `exchange/routing-key` are escaped apart.
fn target_cell(out: &mut String, o: &Outcome) {
    match (o.unroutable(), o) {
        (Some(reason), _) => {
            out.push_str("(none: ");
            out.push_str(reason);
            out.push(')');
        }
        (None, Outcome::Retry { queue, .. }) => out.push_str(&escape::text(queue)),
        (
            None,
            Outcome::Forward {
                exchange,
                routing_key,
                ..
            },
        ) => {
            if !exchange.is_empty() {
                out.push_str(&escape::text(exchange));
                out.push('/');
            }
            out.push_str(&escape::text(routing_key));
        }
        (None, Outcome::Discard { .. } | Outcome::Leave) => out.push('-'),
    }
}

/// `value` in decimal into `out`, or `-` for `None` (as `Display` writes it, without
/// the formatting machinery: a line has three of them).
fn number_cell(out: &mut String, value: Option<u64>) {
    out.clear();
    match value {
        Some(n) => out.push_str(itoa::Buffer::new().format(n)),
        None => out.push('-'),
    }
}

/// The DELAY cell: the delay as humantime writes it, or `-`; formatted again only when
/// it differs from the last line's (`last`).
fn delay_cell(out: &mut String, last: &mut Option<Duration>, value: Option<Duration>) {
    match value {
        Some(d) if *last == Some(d) => {}
        Some(d) => {
            out.clear();
            // Writing into a String cannot fail.
            let _ = write!(out, "{}", humantime::format_duration(d));
            *last = Some(d);
        }
        None => {
            out.clear();
            out.push('-');
            *last = None;
        }
    }
}

pub fn text_line<W: Write>(
    out: &mut W,
    decider: &Decider,
    e: &Entry,
    explain: bool,
    bufs: &mut Bufs,
) -> io::Result<()> {
    let o = &e.decision.outcome;
    let id =
        e.dl.message
            .properties
            .message_id
            .as_deref()
            .map_or(Cow::Borrowed("-"), escape::text);
    let Bufs {
        line,
        index,
        rule,
        target,
        delay,
        attempt,
        delay_of: last_delay,
        ..
    } = bufs;
    number_cell(index, Some(e.index));
    number_cell(rule, e.decision.line.map(u64::from));
    target.clear();
    target_cell(target, o);
    delay_cell(delay, last_delay, delay_of(o));
    number_cell(attempt, attempt_of(o).map(u64::from));
    let cells = [index.as_str(), &id, rule, o.name(), target, delay, attempt];
    line.clear();
    columns::row_into(line, &COLUMNS, &cells);
    line.push('\n');
    out.write_all(line.as_bytes())?;
    if let Some(note) = unroutable_note(o) {
        writeln!(out, "{:>7}note: {note}", "")?;
    }
    if explain {
        for (i, why) in e.explain {
            writeln!(
                out,
                "{:>7}line {} skipped: {}",
                "",
                line_of(decider, *i),
                why
            )?;
        }
        let why = decider.why(e.dl, e.decision);
        match e.decision.line {
            Some(l) => writeln!(out, "{:>7}line {l} applies: {why}", "")?,
            None => writeln!(out, "{:>7}{why}", "")?,
        }
    }
    Ok(())
}

/// `s` as a JSON string, quoted, into `out`, byte for byte as serde_json writes it:
/// `"` and `\` escaped, the control characters below U+0020 as `\b \t \n \f \r`
/// or `\u00xx` (lower-case hex), everything else (U+007F and non-ASCII too) as is. The
/// runs between escapes are copied whole.
pub(super) fn json_str(out: &mut Vec<u8>, s: &str) {
    out.push(b'"');
    json_escaped(out, s);
    out.push(b'"');
}

/// `s` escaped as inside a JSON string ([`json_str`]), without the quotes.
fn json_escaped(out: &mut Vec<u8>, s: &str) {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let bytes = s.as_bytes();
    let mut start = 0;
    for (i, &b) in bytes.iter().enumerate() {
        if b >= 0x20 && b != b'"' && b != b'\\' {
            continue;
        }
        out.extend_from_slice(&bytes[start..i]);
        start = i + 1;
        match b {
            b'"' => out.extend_from_slice(b"\\\""),
            b'\\' => out.extend_from_slice(b"\\\\"),
            0x08 => out.extend_from_slice(b"\\b"),
            0x09 => out.extend_from_slice(b"\\t"),
            0x0a => out.extend_from_slice(b"\\n"),
            0x0c => out.extend_from_slice(b"\\f"),
            0x0d => out.extend_from_slice(b"\\r"),
            _ => out.extend_from_slice(&[
                b'\\',
                b'u',
                b'0',
                b'0',
                HEX[usize::from(b >> 4)],
                HEX[usize::from(b & 0xf)],
            ]),
        }
    }
    out.extend_from_slice(&bytes[start..]);
}

/// `value` in decimal into `out`, or `null` for `None`.
fn json_number(out: &mut Vec<u8>, value: Option<u64>) {
    match value {
        Some(n) => out.extend_from_slice(itoa::Buffer::new().format(n).as_bytes()),
        None => out.extend_from_slice(b"null"),
    }
}

/// One message as one JSON line, written straight into a reused buffer:
/// `{"index":..,"message_id":..,"rule":..,"action":..,"target":..,"delay_ms":..,
/// "attempt":..,"why":..}`, then `"unroutable"` when the retry or forward cannot be
/// carried out (its target is null) and `"explain":[{"rule":..,"why":..},..]` with
/// --explain. Compact, as serde_json wrote it before: the snapshots hold the bytes.
pub fn json_line<W: Write>(
    out: &mut W,
    decider: &Decider,
    e: &Entry,
    with_explain: bool,
    bufs: &mut Bufs,
) -> io::Result<()> {
    let o = &e.decision.outcome;
    let Bufs { why, json, .. } = bufs;
    json.clear();
    json.extend_from_slice(b"{\"index\":");
    json_number(json, Some(e.index));
    json.extend_from_slice(b",\"message_id\":");
    match e.dl.message.properties.message_id.as_deref() {
        Some(id) => json_str(json, id),
        None => json.extend_from_slice(b"null"),
    }
    json.extend_from_slice(b",\"rule\":");
    json_number(json, e.decision.line.map(u64::from));
    json.extend_from_slice(b",\"action\":");
    json_str(json, o.name());
    json.extend_from_slice(b",\"target\":");
    // [`Outcome::target`]: escaping works byte by byte, so the parts of
    // `exchange/routing-key` are escaped apart.
    match o {
        _ if o.unroutable().is_some() => json.extend_from_slice(b"null"),
        Outcome::Retry { queue, .. } => json_str(json, queue),
        Outcome::Forward {
            exchange,
            routing_key,
            ..
        } => {
            json.push(b'"');
            if !exchange.is_empty() {
                json_escaped(json, exchange);
                json.push(b'/');
            }
            json_escaped(json, routing_key);
            json.push(b'"');
        }
        Outcome::Discard { .. } | Outcome::Leave => json.extend_from_slice(b"null"),
    }
    json.extend_from_slice(b",\"delay_ms\":");
    json_number(
        json,
        delay_of(o).map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX)),
    );
    json.extend_from_slice(b",\"attempt\":");
    json_number(json, attempt_of(o).map(u64::from));
    json.extend_from_slice(b",\"why\":");
    why.clear();
    decider.why_into(e.dl, e.decision, why);
    json_str(json, why);
    if let Some(note) = unroutable_note(o) {
        json.extend_from_slice(b",\"unroutable\":");
        json_str(json, &note);
    }
    if with_explain {
        json.extend_from_slice(b",\"explain\":[");
        for (n, (i, why)) in e.explain.iter().enumerate() {
            if n > 0 {
                json.push(b',');
            }
            json.extend_from_slice(b"{\"rule\":");
            json_number(json, Some(u64::from(line_of(decider, *i))));
            json.extend_from_slice(b",\"why\":");
            json_str(json, why);
            json.push(b'}');
        }
        json.push(b']');
    }
    json.extend_from_slice(b"}\n");
    out.write_all(json)
}

pub fn text_summary<W: Write>(out: &mut W, decider: &Decider, s: &Summary) -> io::Result<()> {
    writeln!(out)?;
    writeln!(
        out,
        "{} message{} from {} capture{}",
        s.messages,
        if s.messages == 1 { "" } else { "s" },
        s.captures,
        if s.captures == 1 { "" } else { "s" }
    )?;
    writeln!(out)?;
    writeln!(out, "{:>4}  {:>8}  RULE TEXT", "RULE", "MESSAGES")?;
    for (rule, n) in decider.table().rules.iter().zip(&s.per_rule) {
        writeln!(out, "{:>4}  {:>8}  {}", rule.line, n, rule_text(rule))?;
    }
    writeln!(
        out,
        "{:>4}  {:>8}  (no rule applies: left on the DLQ)",
        "-", s.unmatched
    )?;
    writeln!(out)?;
    writeln!(out, "{:<7}  {:>8}", "ACTION", "MESSAGES")?;
    for (name, n) in ["retry", "forward", "discard", "leave"]
        .iter()
        .zip(s.per_action)
    {
        writeln!(out, "{name:<7}  {n:>8}")?;
    }
    if s.unroutable > 0 {
        writeln!(out)?;
        writeln!(
            out,
            "{} {} no target (a retry without an original queue, or a forward whose target came out empty): the handler will fail {} and leave {} on the DLQ",
            s.unroutable,
            if s.unroutable == 1 {
                "message has"
            } else {
                "messages have"
            },
            if s.unroutable == 1 {
                "its action"
            } else {
                "their actions"
            },
            if s.unroutable == 1 { "it" } else { "them" },
        )?;
    }
    Ok(())
}

/// The longest rule text the summary prints; longer ones end in `...`.
const RULE_TEXT_MAX: usize = 90;

/// A rule written back in rules-file syntax (its `Display`: canonical keyword order,
/// defaults left out), shortened for the summary.
pub fn rule_text(rule: &Rule) -> String {
    let text = rule.to_string();
    if text.chars().count() > RULE_TEXT_MAX {
        let cut: String = text.chars().take(RULE_TEXT_MAX - 3).collect();
        format!("{cut}...")
    } else {
        text
    }
}
