//! The metadata summary behind `dlqd inspect`: counts by original queue × reason ×
//! persistence, the range of death times, size percentiles, and per-message lines.
//! Pure: fed messages one at a time, renders text; no I/O, no clock (callers pass `now`).
//! Every value from a message is escaped (`crate::escape`), and the per-message listing
//! keeps its columns aligned however long a value is (`dry_run::columns`).

pub mod overview;

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::time::{Duration, SystemTime};

use crate::dead_letter::DeadLetter;
use crate::dry_run::columns::{self, Column};
use crate::escape;
use crate::message::{DELAY_QUEUE_PREFIX, Message, Value};

/// What inspect shows of one message: metadata only, never the body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MessageMeta {
    /// 0-based position in the queue when it was browsed (the same index `dry-run`
    /// gives the message in a capture of the queue).
    pub index: u64,
    pub message_id: Option<String>,
    /// The queue it died in ("" when unknown).
    pub original_queue: String,
    /// Why it died ("" when unknown).
    pub reason: String,
    pub persistent: bool,
    /// dlqd's retry count.
    pub retries: u32,
    /// Body size in bytes.
    pub size: u64,
    /// When it died (seconds since the epoch), from the matching `x-death` entry's `time`.
    pub death_time: Option<u64>,
}

impl MessageMeta {
    /// The metadata of a message from its dead-letter facts.
    pub fn new(index: u64, dead: &DeadLetter<'_>) -> Self {
        let message = dead.message;
        MessageMeta {
            index,
            message_id: message.properties.message_id.clone(),
            original_queue: dead.destq.to_string(),
            reason: dead.reason.to_string(),
            persistent: dead.persistent,
            retries: dead.retries,
            size: message.body.len() as u64,
            death_time: death_time(message, &dead.destq, &dead.reason),
        }
    }
}

/// When a message died: the `time` of the `x-death` entry for `queue` and `reason`;
/// failing that, of the newest entry that is not one of dlqd's delay queues.
/// `None` when the message has no readable `x-death` time.
pub fn death_time(message: &Message, queue: &str, reason: &str) -> Option<u64> {
    let Some(Value::Array(entries)) = message.header("x-death") else {
        return None;
    };
    let tables = entries.iter().filter_map(|e| match e {
        Value::Table(t) => Some(t),
        _ => None,
    });
    let text = |t: &crate::message::FieldTable, k: &str| t.get(k).and_then(Value::as_str_lossy);
    let time = |t: &crate::message::FieldTable| t.get("time").and_then(Value::as_u64);
    let exact = tables.clone().find(|t| {
        text(t, "queue").as_deref() == Some(queue) && text(t, "reason").as_deref() == Some(reason)
    });
    if let Some(t) = exact.and_then(time) {
        return Some(t);
    }
    tables
        .filter(|t| {
            !text(t, "queue")
                .unwrap_or_default()
                .starts_with(DELAY_QUEUE_PREFIX)
        })
        .find_map(time)
}

/// One group of the summary: original queue, reason, persistence.
type GroupKey = (String, String, bool);

/// The running summary of a queue's messages.
#[derive(Debug, Default, Clone)]
pub struct Summary {
    groups: BTreeMap<GroupKey, u64>,
    oldest: Option<u64>,
    newest: Option<u64>,
    without_time: u64,
    /// Every body size (8 bytes per message), sorted lazily for percentiles.
    sizes: Vec<u64>,
    total_bytes: u64,
}

impl Summary {
    pub fn new() -> Self {
        Self::default()
    }

    /// Count one message.
    pub fn add(&mut self, meta: &MessageMeta) {
        *self
            .groups
            .entry((
                meta.original_queue.clone(),
                meta.reason.clone(),
                meta.persistent,
            ))
            .or_insert(0) += 1;
        match meta.death_time {
            Some(t) => {
                self.oldest = Some(self.oldest.map_or(t, |o| o.min(t)));
                self.newest = Some(self.newest.map_or(t, |n| n.max(t)));
            }
            None => self.without_time += 1,
        }
        self.sizes.push(meta.size);
        self.total_bytes = self.total_bytes.saturating_add(meta.size);
    }

    /// How many messages were counted.
    pub fn total(&self) -> u64 {
        self.sizes.len() as u64
    }

    /// The bytes of all bodies counted.
    pub fn total_bytes(&self) -> u64 {
        self.total_bytes
    }

    /// Messages per (original queue, reason, persistent), sorted.
    pub fn groups(&self) -> impl Iterator<Item = (&str, &str, bool, u64)> {
        self.groups
            .iter()
            .map(|((q, r, p), n)| (q.as_str(), r.as_str(), *p, *n))
    }

    /// The oldest and newest death times (seconds since the epoch).
    pub fn death_range(&self) -> Option<(u64, u64)> {
        Some((self.oldest?, self.newest?))
    }

    /// Body-size percentiles p50, p90, p99 and the maximum (nearest rank), or `None`
    /// when there are no messages.
    pub fn size_percentiles(&self) -> Option<SizePercentiles> {
        if self.sizes.is_empty() {
            return None;
        }
        let mut sorted = self.sizes.clone();
        sorted.sort_unstable();
        Some(SizePercentiles {
            p50: nearest_rank(&sorted, 50),
            p90: nearest_rank(&sorted, 90),
            p99: nearest_rank(&sorted, 99),
            max: sorted[sorted.len() - 1],
        })
    }

    /// The summary as text. `now` is used only to say how long ago messages died.
    pub fn render(&self, queue: &str, now: SystemTime) -> String {
        let mut out = String::new();
        let total = self.total();
        let _ = writeln!(
            out,
            "queue {}: {total} message{}, {} of bodies",
            escape::text(queue),
            if total == 1 { "" } else { "s" },
            bytes(self.total_bytes)
        );
        if total == 0 {
            return out;
        }
        let rows: Vec<[String; 4]> = self
            .groups()
            .map(|(q, r, p, n)| {
                [
                    or_unknown(q),
                    or_unknown(r),
                    if p { "yes" } else { "no" }.to_string(),
                    n.to_string(),
                ]
            })
            .collect();
        let header = ["ORIGINAL QUEUE", "REASON", "PERSISTENT", "MESSAGES"].map(String::from);
        out.push('\n');
        out.push_str(&table(&header, &rows));
        out.push('\n');
        match self.death_range() {
            Some((oldest, newest)) => {
                let _ = writeln!(
                    out,
                    "died: oldest {} ({}), newest {} ({})",
                    timestamp(oldest),
                    ago(oldest, now),
                    timestamp(newest),
                    ago(newest, now)
                );
            }
            None => {
                let _ = writeln!(out, "died: no x-death time on any message");
            }
        }
        if self.without_time > 0 && self.death_range().is_some() {
            let _ = writeln!(
                out,
                "      {} message(s) without an x-death time",
                self.without_time
            );
        }
        if let Some(p) = self.size_percentiles() {
            let _ = writeln!(
                out,
                "size: p50 {}, p90 {}, p99 {}, max {}",
                bytes(p.p50),
                bytes(p.p90),
                bytes(p.p99),
                bytes(p.max)
            );
        }
        out
    }
}

/// Body-size percentiles in bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SizePercentiles {
    pub p50: u64,
    pub p90: u64,
    pub p99: u64,
    pub max: u64,
}

/// The nearest-rank percentile of a sorted, non-empty slice.
fn nearest_rank(sorted: &[u64], percent: u64) -> u64 {
    let n = sorted.len() as u64;
    let rank = (percent * n).div_ceil(100).max(1);
    sorted[(rank - 1) as usize]
}

/// INDEX, MESSAGE-ID, ORIGINAL-QUEUE, REASON, RETRIES, SIZE, DIED; BODY follows.
const LISTING: [Column; 7] = [
    Column::number(8),
    Column::left(20),
    Column::left(24),
    Column::left(10),
    Column::number(7),
    Column::number(10),
    Column::left(20),
];

/// The header line of the per-message listing.
pub fn message_header(show_body: bool) -> String {
    let mut cells = vec![
        "INDEX",
        "MESSAGE-ID",
        "ORIGINAL-QUEUE",
        "REASON",
        "RETRIES",
        "SIZE",
        "DIED",
    ];
    if show_body {
        cells.push("BODY");
    }
    columns::row(&LISTING, &cells)
}

/// One message's line in the listing; the body only when `body` is given. Long values
/// are shortened with `…` to keep the columns aligned (the body, last, is whole).
pub fn message_line(meta: &MessageMeta, body: Option<&[u8]>) -> String {
    let index = meta.index.to_string();
    let id = meta
        .message_id
        .as_deref()
        .map_or("-".to_string(), |id| escape::text(id).into_owned());
    let queue = or_unknown(&meta.original_queue);
    let reason = or_unknown(&meta.reason);
    let retries = meta.retries.to_string();
    let size = meta.size.to_string();
    let died = meta.death_time.map_or("-".to_string(), timestamp);
    let body = body.map(body_text);
    let mut cells = vec![index.as_str(), &id, &queue, &reason, &retries, &size, &died];
    if let Some(b) = &body {
        cells.push(b);
    }
    columns::row(&LISTING, &cells)
}

/// A body on one line: UTF-8 text with unsafe characters escaped (`crate::escape`),
/// or escaped bytes.
pub fn body_text(body: &[u8]) -> String {
    match std::str::from_utf8(body) {
        Ok(text) => escape::text(text).into_owned(),
        Err(_) => format!("(not UTF-8) {}", escape::bytes(body)),
    }
}

fn or_unknown(s: &str) -> String {
    if s.is_empty() {
        "(unknown)".to_string()
    } else {
        escape::text(s).into_owned()
    }
}

/// Seconds since the epoch as RFC 3339 UTC.
pub fn timestamp(secs: u64) -> String {
    match SystemTime::UNIX_EPOCH.checked_add(Duration::from_secs(secs)) {
        Some(t) => humantime::format_rfc3339_seconds(t).to_string(),
        None => format!("@{secs}"),
    }
}

/// How long before `now` a death time was, e.g. `3m 2s ago`.
fn ago(secs: u64, now: SystemTime) -> String {
    let now = now
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    if secs > now {
        return "in the future".to_string();
    }
    format!(
        "{} ago",
        humantime::format_duration(Duration::from_secs(now - secs))
    )
}

/// A byte count for people: `512 B`, `1.5 KiB`, `3.0 MiB`.
pub fn bytes(n: u64) -> String {
    const UNITS: [&str; 4] = ["KiB", "MiB", "GiB", "TiB"];
    if n < 1024 {
        return format!("{n} B");
    }
    let mut value = n as f64 / 1024.0;
    let mut unit = 0;
    while value >= 1024.0 && unit < UNITS.len() - 1 {
        value /= 1024.0;
        unit += 1;
    }
    format!("{value:.1} {}", UNITS[unit])
}

/// A plain text table: left-aligned columns, the last one right-aligned.
fn table(header: &[String; 4], rows: &[[String; 4]]) -> String {
    let mut widths = header.clone().map(|h| h.chars().count());
    for row in rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let mut out = String::new();
    for row in std::iter::once(header).chain(rows) {
        let line = format!(
            "{:<w0$}  {:<w1$}  {:<w2$}  {:>w3$}",
            row[0],
            row[1],
            row[2],
            row[3],
            w0 = widths[0],
            w1 = widths[1],
            w2 = widths[2],
            w3 = widths[3]
        );
        out.push_str(line.trim_end());
        out.push('\n');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::message::{FieldTable, Properties};

    fn meta(
        queue: &str,
        reason: &str,
        persistent: bool,
        size: u64,
        time: Option<u64>,
    ) -> MessageMeta {
        MessageMeta {
            index: 0,
            message_id: None,
            original_queue: queue.to_string(),
            reason: reason.to_string(),
            persistent,
            retries: 0,
            size,
            death_time: time,
        }
    }

    fn death(queue: &str, reason: &str, time: u64) -> Value {
        let mut t = FieldTable::new();
        t.insert("queue".into(), Value::string(queue));
        t.insert("reason".into(), Value::string(reason));
        t.insert("count".into(), Value::I64(1));
        t.insert("time".into(), Value::Timestamp(time));
        Value::Table(t)
    }

    fn with_deaths(deaths: Vec<Value>) -> Message {
        let mut headers = FieldTable::new();
        headers.insert("x-death".into(), Value::Array(deaths));
        Message {
            properties: Properties {
                headers: Some(headers),
                ..Properties::default()
            },
            ..Message::default()
        }
    }

    #[test]
    fn counts_by_queue_reason_and_persistence() {
        let mut s = Summary::new();
        s.add(&meta("orders", "rejected", true, 10, Some(100)));
        s.add(&meta("orders", "rejected", true, 20, Some(300)));
        s.add(&meta("orders", "rejected", false, 30, Some(200)));
        s.add(&meta("billing", "expired", true, 40, None));
        let groups: Vec<_> = s.groups().collect();
        assert_eq!(
            groups,
            vec![
                ("billing", "expired", true, 1),
                ("orders", "rejected", false, 1),
                ("orders", "rejected", true, 2),
            ]
        );
        assert_eq!(s.total(), 4);
        assert_eq!(s.death_range(), Some((100, 300)));
    }

    #[test]
    fn percentiles_use_nearest_rank() {
        let mut s = Summary::new();
        for size in 1..=100 {
            s.add(&meta("q", "r", true, size, None));
        }
        assert_eq!(
            s.size_percentiles(),
            Some(SizePercentiles {
                p50: 50,
                p90: 90,
                p99: 99,
                max: 100
            })
        );
        let mut one = Summary::new();
        one.add(&meta("q", "r", true, 7, None));
        let p = one.size_percentiles().expect("one message");
        assert_eq!((p.p50, p.p90, p.p99, p.max), (7, 7, 7, 7));
        assert_eq!(Summary::new().size_percentiles(), None);
    }

    #[test]
    fn renders_a_summary() {
        let mut s = Summary::new();
        s.add(&meta("orders", "rejected", true, 100, Some(1_700_000_000)));
        s.add(&meta("orders", "expired", false, 2048, Some(1_700_000_060)));
        s.add(&meta("", "", false, 5, None));
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_120);
        insta::assert_snapshot!(s.render("orders.dlq", now), @r"
        queue orders.dlq: 3 messages, 2.1 KiB of bodies

        ORIGINAL QUEUE  REASON     PERSISTENT  MESSAGES
        (unknown)       (unknown)  no                 1
        orders          expired    no                 1
        orders          rejected   yes                1

        died: oldest 2023-11-14T22:13:20Z (2m ago), newest 2023-11-14T22:14:20Z (1m ago)
              1 message(s) without an x-death time
        size: p50 100 B, p90 2.0 KiB, p99 2.0 KiB, max 2.0 KiB
        ");
    }

    #[test]
    fn renders_an_empty_queue() {
        assert_eq!(
            Summary::new().render("q", SystemTime::UNIX_EPOCH),
            "queue q: 0 messages, 0 B of bodies\n"
        );
    }

    #[test]
    fn death_time_prefers_the_matching_entry_and_skips_delay_queues() {
        let m = with_deaths(vec![
            death("dlqd.delay.5000", "expired", 300),
            death("orders", "rejected", 200),
            death("orders", "expired", 100),
        ]);
        assert_eq!(death_time(&m, "orders", "expired"), Some(100));
        assert_eq!(death_time(&m, "orders", "rejected"), Some(200));
        assert_eq!(death_time(&m, "", ""), Some(200));
        assert_eq!(death_time(&Message::default(), "orders", "rejected"), None);
        let odd = with_deaths(vec![Value::string("not a table")]);
        assert_eq!(death_time(&odd, "orders", "rejected"), None);
    }

    #[test]
    fn message_lines_escape_and_hide_bodies() {
        let mut m = meta("orders", "rejected", true, 3, Some(1_700_000_000));
        m.index = 12;
        m.message_id = Some("id\n1".to_string());
        insta::assert_snapshot!(message_header(false), @"   INDEX  MESSAGE-ID            ORIGINAL-QUEUE            REASON      RETRIES        SIZE  DIED");
        insta::assert_snapshot!(message_line(&m, None), @r#"      12  id\n1                 orders                    rejected          0           3  2023-11-14T22:13:20Z"#);
        // Every unsafe character, bidi overrides too (the old escaper let them through).
        m.message_id = Some("a\u{202e}b\u{1b}[2K".to_string());
        m.original_queue = "q\u{2028}".to_string();
        let line = message_line(&m, Some("x\u{2066}y".as_bytes()));
        assert!(!line.chars().any(escape::is_unsafe), "{line}");
        assert!(line.contains(r"a\u{202e}b\u{1b}[2K"), "{line}");
        assert!(line.ends_with(r"x\u{2066}y"), "{line}");
        let line = message_line(&m, Some(b"a\tb"));
        assert!(line.ends_with(r"2023-11-14T22:13:20Z  a\tb"), "{line}");
        assert_eq!(body_text(&[0xff, b'a']), r"(not UTF-8) \xffa");
        assert_eq!(body_text(r#"{"a":"é"}"#.as_bytes()), r#"{"a":"é"}"#);
        assert_eq!(body_text("é\r\n".as_bytes()), r"é\r\n");
    }

    /// Regression: long ids, queue names and reasons pushed the later columns out of line.
    #[test]
    fn long_values_keep_the_listing_aligned() {
        let mut long = meta(
            "orders.eu.west.production.primary",
            "an-application-reason",
            true,
            123_456,
            Some(1_700_000_000),
        );
        long.index = 123_456_789;
        long.message_id = Some("123e4567-e89b-12d3-a456-426614174000".to_string());
        long.retries = 3;
        let short = meta("o", "expired", false, 1, None);
        let lines = [
            message_header(true),
            message_line(&long, Some(b"{}")),
            message_line(&short, Some(b"body")),
        ];
        // Names and ids are never shortened (an operator copies them from here): a
        // long one pushes the cells after it; the other rows stay in their columns.
        assert!(
            lines[1].contains(
                "123e4567-e89b-12d3-a456-426614174000  orders.eu.west.production.primary  \
                 an-application-reason"
            ),
            "{}",
            lines[1]
        );
        for (name, cell) in [
            ("ORIGINAL-QUEUE", "o "),
            ("REASON", "expired"),
            ("BODY", "body"),
        ] {
            assert_eq!(
                lines[0].find(name),
                lines[2].find(cell),
                "{name}:\n{}\n{}",
                lines[0],
                lines[2]
            );
        }
    }

    #[test]
    fn byte_counts_for_people() {
        assert_eq!(bytes(0), "0 B");
        assert_eq!(bytes(1023), "1023 B");
        assert_eq!(bytes(1536), "1.5 KiB");
        assert_eq!(bytes(3 * 1024 * 1024), "3.0 MiB");
    }
}
