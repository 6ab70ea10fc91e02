//! `dlqd inspect --queue A --queue B ...`: several queues' summaries as one table, a row
//! per queue — messages, bytes of bodies, the oldest death, the commonest original
//! queue and reason — or why a queue could not be read. Pure: the summaries come in.

use std::time::SystemTime;

use super::{Summary, ago, bytes, or_unknown, timestamp};
use crate::escape;

/// One queue's row: its summary, or why it could not be inspected.
pub type Row = (String, Result<Summary, String>);

const HEADER: [&str; 6] = [
    "QUEUE",
    "MESSAGES",
    "BODIES",
    "OLDEST DEATH",
    "TOP ORIGINAL QUEUE",
    "TOP REASON",
];
/// Right-aligned columns (numbers).
const NUMERIC: [bool; 6] = [false, true, true, false, false, false];

/// The most frequent key of `(key, count)` pairs, with its count and share (ties go to
/// the first in order).
fn top<'a>(pairs: impl Iterator<Item = (&'a str, u64)>, total: u64) -> String {
    let mut sums: std::collections::BTreeMap<&str, u64> = std::collections::BTreeMap::new();
    for (k, n) in pairs {
        *sums.entry(k).or_default() += n;
    }
    let mut best: Option<(&str, u64)> = None;
    for (k, n) in sums {
        if best.is_none_or(|(_, b)| n > b) {
            best = Some((k, n));
        }
    }
    match best {
        Some((k, n)) => format!("{} ({n}, {}%)", or_unknown(k), n * 100 / total.max(1)),
        None => "-".to_string(),
    }
}

fn cells(queue: &str, r: &Result<Summary, String>, now: SystemTime) -> [String; 6] {
    let name = escape::text(queue).into_owned();
    match r {
        Err(_) => [
            name,
            "-".into(),
            "-".into(),
            "not inspected (below)".into(),
            String::new(),
            String::new(),
        ],
        Ok(s) => {
            let total = s.total();
            let oldest = match s.death_range() {
                Some((oldest, _)) => format!("{} ({})", timestamp(oldest), ago(oldest, now)),
                None => "-".to_string(),
            };
            [
                name,
                total.to_string(),
                bytes(s.total_bytes()),
                oldest,
                top(s.groups().map(|(q, _, _, n)| (q, n)), total),
                top(s.groups().map(|(_, r, _, n)| (r, n)), total),
            ]
        }
    }
}

/// The table: a header, a row per queue in the order given, and a total line.
pub fn render(rows: &[Row], now: SystemTime) -> String {
    let mut table: Vec<[String; 6]> = vec![HEADER.map(String::from)];
    table.extend(rows.iter().map(|(q, r)| cells(q, r, now)));
    let messages: u64 = rows
        .iter()
        .filter_map(|(_, r)| r.as_ref().ok())
        .map(Summary::total)
        .sum();
    let body: u64 = rows
        .iter()
        .filter_map(|(_, r)| r.as_ref().ok())
        .map(Summary::total_bytes)
        .sum();
    let failed = rows.iter().filter(|(_, r)| r.is_err()).count();
    let mut widths = [0usize; 6];
    for row in &table {
        for (w, c) in widths.iter_mut().zip(row) {
            *w = (*w).max(c.chars().count());
        }
    }
    let mut out = String::new();
    for row in &table {
        let mut line = String::new();
        for (i, c) in row.iter().enumerate() {
            if i > 0 {
                line.push_str("  ");
            }
            let pad = widths[i] - c.chars().count();
            if NUMERIC[i] {
                line.push_str(&" ".repeat(pad));
                line.push_str(c);
            } else {
                line.push_str(c);
                line.push_str(&" ".repeat(pad));
            }
        }
        out.push_str(line.trim_end());
        out.push('\n');
    }
    out.push_str(&format!(
        "\n{} queues: {messages} message{}, {} of bodies",
        rows.len(),
        if messages == 1 { "" } else { "s" },
        bytes(body)
    ));
    if failed > 0 {
        out.push_str(&format!("; {failed} could not be inspected"));
    }
    out.push('\n');
    for (q, r) in rows {
        if let Err(e) = r {
            out.push_str(&format!("{}: {}\n", escape::text(q), escape::text(e)));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::inspect::MessageMeta;

    fn meta(queue: &str, reason: &str, size: u64, time: u64) -> MessageMeta {
        MessageMeta {
            index: 0,
            message_id: None,
            original_queue: queue.into(),
            reason: reason.into(),
            persistent: true,
            retries: 0,
            size,
            death_time: Some(time),
        }
    }

    #[test]
    fn a_row_per_queue_with_its_top_origin_and_reason_and_a_total() {
        let mut a = Summary::new();
        for m in [
            meta("orders", "rejected", 100, 1_700_000_000),
            meta("orders", "expired", 100, 1_700_000_100),
            meta("billing", "rejected", 200, 1_700_000_050),
        ] {
            a.add(&m);
        }
        let rows = vec![
            ("orders.dlq".to_string(), Ok(a)),
            ("empty.dlq".to_string(), Ok(Summary::new())),
            (
                "gone.dlq".to_string(),
                Err("no such queue (404)".to_string()),
            ),
        ];
        let now = SystemTime::UNIX_EPOCH + std::time::Duration::from_secs(1_700_003_600);
        let text = render(&rows, now);
        let lines: Vec<&str> = text.lines().collect();
        assert!(lines[0].starts_with("QUEUE"), "{text}");
        assert!(lines[1].starts_with("orders.dlq"), "{text}");
        assert!(lines[1].contains("2023-11-14T22:13:20Z (1h ago)"), "{text}");
        assert!(lines[1].contains("orders (2, 66%)"), "{text}");
        assert!(lines[1].contains("rejected (2, 66%)"), "{text}");
        assert!(lines[2].starts_with("empty.dlq"), "{text}");
        assert!(lines[3].contains("not inspected (below)"), "{text}");
        assert!(
            text.ends_with(
                "3 queues: 3 messages, 400 B of bodies; 1 could not be inspected\n\
                 gone.dlq: no such queue (404)\n"
            ),
            "{text}"
        );
    }
}
