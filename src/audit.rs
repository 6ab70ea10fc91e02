//! The `--audit FILE` trail: every action `dlqd run` carries out, one JSON line each.
//!
//! A line looks like
//! `{"time":"2026-11-22T03:30:00.123Z","queue":"orders.dlq","message_id":"42","rule":7,
//! "action":"retry","target":"orders","delay_ms":2000,"attempt":3,"outcome":"ok"}`;
//! a failed action has `"outcome":"failed"` plus `cause` (`returned`, `nacked`,
//! `channel_closed`, `refused`, `archive_io`, ...) and `error` (the broker's words).
//! Absent values are `null`. The file is opened for appending (several runs, one trail)
//! and every line is written out as soon as it is recorded.

use std::fs::{File, OpenOptions};
use std::io::{LineWriter, Write};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::SystemTime;

use serde::Serialize;

/// Why the audit trail could not be opened or written.
#[derive(Debug, thiserror::Error)]
pub enum AuditError {
    #[error("cannot open audit file {}: {cause}", path.display())]
    Open {
        path: PathBuf,
        /// Shown in the message, not chained (or `{:#}` would print it twice).
        cause: std::io::Error,
    },
    #[error("cannot write audit file {}: {cause}", path.display())]
    Write {
        path: PathBuf,
        /// Shown in the message, not chained (or `{:#}` would print it twice).
        cause: std::io::Error,
    },
}

/// How an action ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AuditOutcome<'a> {
    /// Done: the message is in its new place (or gone) and the DLQ copy acknowledged.
    Ok,
    /// Not done: the message stays on the DLQ.
    Failed {
        /// A short machine-readable cause: `returned`, `nacked`, `channel_closed`, ...
        cause: &'a str,
        /// The broker's (or the OS's) own words.
        error: &'a str,
    },
}

/// One action, as the daemon describes it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AuditRecord<'a> {
    /// The DLQ the message came from.
    pub queue: &'a str,
    pub message_id: Option<&'a str>,
    /// 1-based line of the rule that applied; None when no rule applied.
    pub rule: Option<u32>,
    /// `retry|forward|discard|leave`.
    pub action: &'a str,
    /// The queue (or `exchange/routing-key`) a retry or forward goes to.
    pub target: Option<&'a str>,
    pub delay_ms: Option<u64>,
    /// The retry attempt (1 = first retry).
    pub attempt: Option<u32>,
    /// `dlqd publish`: the message's index in the captures (as the dry run prints it;
    /// `--skip INDEX` starts there). Not written when None.
    pub index: Option<u64>,
    pub outcome: AuditOutcome<'a>,
}

#[derive(Serialize)]
struct Line<'a> {
    time: String,
    queue: &'a str,
    message_id: Option<&'a str>,
    rule: Option<u32>,
    action: &'a str,
    target: Option<&'a str>,
    delay_ms: Option<u64>,
    attempt: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    index: Option<u64>,
    outcome: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    cause: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    error: Option<&'a str>,
}

/// Render one record as a JSON line (with its trailing newline).
pub fn to_line(time: SystemTime, rec: &AuditRecord<'_>) -> String {
    let (outcome, cause, error) = match rec.outcome {
        AuditOutcome::Ok => ("ok", None, None),
        AuditOutcome::Failed { cause, error } => ("failed", Some(cause), Some(error)),
    };
    let line = Line {
        time: humantime::format_rfc3339_millis(time).to_string(),
        queue: rec.queue,
        message_id: rec.message_id,
        rule: rec.rule,
        action: rec.action,
        target: rec.target,
        delay_ms: rec.delay_ms,
        attempt: rec.attempt,
        index: rec.index,
        outcome,
        cause,
        error,
    };
    // Serialising plain strings and numbers cannot fail.
    let mut text = serde_json::to_string(&line).unwrap_or_default();
    text.push('\n');
    text
}

/// An open audit trail. Clones append to the same file.
#[derive(Debug, Clone)]
pub struct Audit {
    path: Arc<PathBuf>,
    file: Arc<Mutex<LineWriter<File>>>,
}

impl Audit {
    /// Open (create or append to) `path`.
    pub fn open(path: &Path) -> Result<Self, AuditError> {
        let file = OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
            .map_err(|cause| AuditError::Open {
                path: path.to_owned(),
                cause,
            })?;
        Ok(Audit {
            path: Arc::new(path.to_owned()),
            file: Arc::new(Mutex::new(LineWriter::new(file))),
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Append one record, stamped now.
    pub fn record(&self, rec: &AuditRecord<'_>) -> Result<(), AuditError> {
        self.record_at(SystemTime::now(), rec)
    }

    /// Append one record with the given time.
    pub fn record_at(&self, time: SystemTime, rec: &AuditRecord<'_>) -> Result<(), AuditError> {
        let line = to_line(time, rec);
        // A poisoned lock only means another writer panicked mid-call; the file is fine.
        let mut file = self.file.lock().unwrap_or_else(|p| p.into_inner());
        file.write_all(line.as_bytes())
            .and_then(|()| file.flush())
            .map_err(|cause| AuditError::Write {
                path: self.path.to_path_buf(),
                cause,
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn at(ms: u64) -> SystemTime {
        SystemTime::UNIX_EPOCH + Duration::from_millis(ms)
    }

    const RETRY: AuditRecord<'static> = AuditRecord {
        queue: "orders.dlq",
        message_id: Some("42"),
        rule: Some(7),
        action: "retry",
        target: Some("orders"),
        delay_ms: Some(2000),
        attempt: Some(3),
        index: None,
        outcome: AuditOutcome::Ok,
    };

    #[test]
    fn an_ok_action_is_one_json_line() {
        assert_eq!(
            to_line(at(1_700_000_000_123), &RETRY),
            concat!(
                r#"{"time":"2023-11-14T22:13:20.123Z","queue":"orders.dlq","message_id":"42","#,
                r#""rule":7,"action":"retry","target":"orders","delay_ms":2000,"attempt":3,"#,
                r#""outcome":"ok"}"#,
                "\n"
            )
        );
    }

    #[test]
    fn a_failed_action_carries_cause_and_error_and_nulls() {
        let rec = AuditRecord {
            message_id: None,
            rule: None,
            action: "forward",
            target: Some("billing.errors/eu"),
            delay_ms: None,
            attempt: None,
            index: None,
            outcome: AuditOutcome::Failed {
                cause: "returned",
                error: "312 NO_ROUTE \"quoted\"\nnext",
            },
            ..RETRY
        };
        let line = to_line(at(0), &rec);
        assert_eq!(line.matches('\n').count(), 1, "exactly one line: {line}");
        let v: serde_json::Value = serde_json::from_str(&line).expect("valid JSON");
        assert_eq!(v["time"], "1970-01-01T00:00:00.000Z");
        assert_eq!(v["message_id"], serde_json::Value::Null);
        assert_eq!(v["rule"], serde_json::Value::Null);
        assert_eq!(v["outcome"], "failed");
        assert_eq!(v["cause"], "returned");
        assert_eq!(v["error"], "312 NO_ROUTE \"quoted\"\nnext");
        assert_eq!(v["target"], "billing.errors/eu");
    }

    #[test]
    fn records_append_to_the_file_across_opens_and_clones() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("audit.jsonl");
        let a = Audit::open(&path).expect("open");
        a.record(&RETRY).expect("write");
        a.clone().record(&RETRY).expect("write");
        drop(a);
        Audit::open(&path)
            .expect("reopen")
            .record(&RETRY)
            .expect("write");
        let text = std::fs::read_to_string(&path).expect("read");
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 3, "{text}");
        for l in lines {
            let v: serde_json::Value = serde_json::from_str(l).expect("valid JSON");
            assert_eq!(v["action"], "retry");
        }
    }

    #[test]
    fn opening_an_impossible_path_is_a_clear_error() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("no-such-dir").join("audit.jsonl");
        let err = Audit::open(&path).expect_err("missing directory");
        let msg = err.to_string();
        assert!(msg.contains("cannot open audit file"), "{msg}");
        assert!(msg.contains("no-such-dir"), "{msg}");
    }
}
