//! What the daemon reports about its work, in one place: it calls an `Observer` once per
//! action (done or failed) and when it connects or sees the DLQ's depth, and the observer
//! feeds the metrics, the `--audit` trail and the `--once` progress bar.
//!
//! The per-action *log* event stays in the daemon (it has the context); the observer
//! logs only its own trouble (an audit file that cannot be written).

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use crate::audit::{Audit, AuditOutcome, AuditRecord};
use crate::failure::ActionFailure;
use crate::metrics::Metrics;
use crate::progress::Progress;

/// One action, as the daemon describes it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ActionEvent<'a> {
    /// The DLQ.
    pub queue: &'a str,
    pub message_id: Option<&'a str>,
    /// 1-based line of the rule that applied (None: no rule applied).
    pub rule: Option<u32>,
    /// `retry|forward|discard|leave`.
    pub action: &'a str,
    /// The queue (or `exchange/routing-key`, or archive file) it went to.
    pub target: Option<&'a str>,
    pub delay_ms: Option<u64>,
    /// For a retry: the attempt number (1 = first retry).
    pub attempt: Option<u32>,
}

/// The sinks of the daemon's reports. Cheap to clone.
#[derive(Debug, Clone)]
pub struct Observer {
    metrics: Metrics,
    audit: Option<Audit>,
    progress: Progress,
    audit_broken: Arc<AtomicBool>,
}

impl Default for Observer {
    fn default() -> Self {
        Observer::new(Metrics::new(), None, Progress::hidden())
    }
}

impl Observer {
    pub fn new(metrics: Metrics, audit: Option<Audit>, progress: Progress) -> Self {
        Observer {
            metrics,
            audit,
            progress,
            audit_broken: Arc::new(AtomicBool::new(false)),
        }
    }

    pub fn metrics(&self) -> &Metrics {
        &self.metrics
    }

    pub fn progress(&self) -> &Progress {
        &self.progress
    }

    /// An action is done (confirmed, the DLQ copy acknowledged or about to be);
    /// `latency` is the time since the delivery arrived.
    pub fn done(&self, ev: &ActionEvent<'_>, latency: Duration) {
        self.metrics.action(ev.rule, ev.action);
        if ev.action == "retry" {
            self.metrics.retry(ev.attempt.unwrap_or(1));
        }
        self.metrics.latency(latency);
        self.progress.done(1);
        self.write_audit(ev, AuditOutcome::Ok);
    }

    /// An action failed (the message stays on the DLQ, or is left).
    pub fn failed(&self, ev: &ActionEvent<'_>, failure: &ActionFailure) {
        let cause = failure.cause.label();
        self.metrics.failure(ev.action, cause);
        self.write_audit(
            ev,
            AuditOutcome::Failed {
                cause,
                error: &failure.reason,
            },
        );
    }

    /// Connected to the broker and consuming (or not): drives `/health`.
    pub fn connected(&self, yes: bool) {
        self.metrics.set_connected(yes);
    }

    /// Where the DLQ's handler stands (consuming, DLQ unavailable, disconnected).
    pub fn state(&self, state: crate::metrics::DlqState) {
        self.metrics.set_state(state);
    }

    /// The DLQ's depth as last seen.
    pub fn depth(&self, n: u64) {
        self.metrics.depth(n);
        self.progress.remaining(n);
    }

    /// The DLQ is missing (or may not be read): its depth is unknown, so
    /// `dlqd_dlq_depth` has no series for it (not the last value seen).
    pub fn depth_unknown(&self) {
        self.metrics.depth_unknown();
    }

    /// The run is over: leave the progress bar's last line.
    pub fn finish(&self) {
        self.progress.finish();
    }

    fn write_audit(&self, ev: &ActionEvent<'_>, outcome: AuditOutcome<'_>) {
        let Some(audit) = &self.audit else { return };
        let rec = AuditRecord {
            queue: ev.queue,
            message_id: ev.message_id,
            rule: ev.rule,
            action: ev.action,
            target: ev.target,
            delay_ms: ev.delay_ms,
            attempt: ev.attempt,
            index: None,
            outcome,
        };
        match audit.record(&rec) {
            Ok(()) => {
                if self.audit_broken.swap(false, Ordering::Relaxed) {
                    tracing::info!(file = %audit.path().display(), "audit file writable again");
                }
            }
            Err(e) => {
                // Say it once per outage, not once per message.
                if !self.audit_broken.swap(true, Ordering::Relaxed) {
                    tracing::error!(error = %e, "audit record lost; dlqd goes on handling messages");
                }
                self.metrics.failure("audit", "archive_io");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::failure::Cause;

    const FWD: ActionEvent<'static> = ActionEvent {
        queue: "orders.dlq",
        message_id: Some("7"),
        rule: Some(4),
        action: "forward",
        target: Some("orders.parked"),
        delay_ms: None,
        attempt: None,
    };

    #[test]
    fn a_message_too_large_for_frame_max_is_counted_as_too_large() {
        // cause_of read "channel" in the text and said channel_closed.
        let obs = Observer::new(
            Metrics::new().for_queue("orders.dlq"),
            None,
            Progress::hidden(),
        );
        let f = ActionFailure::new(
            Cause::TooLarge,
            "headers of 140000 bytes do not fit one frame (channel frame_max 131072)",
        );
        obs.failed(&FWD, &f);
        let text = obs.metrics().render();
        let want = r#"dlqd_action_failures_total{queue="orders.dlq",action="forward",cause="too_large"} 1"#;
        assert!(text.contains(want), "missing {want} in\n{text}");
    }

    #[test]
    fn done_and_failed_feed_metrics_audit_and_progress() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("audit.jsonl");
        let obs = Observer::new(
            Metrics::new().for_queue("orders.dlq"),
            Some(Audit::open(&path).expect("open")),
            Progress::hidden(),
        );
        obs.done(&FWD, Duration::from_millis(2));
        let retry = ActionEvent {
            action: "retry",
            target: Some("orders"),
            delay_ms: Some(1000),
            attempt: Some(2),
            ..FWD
        };
        obs.done(&retry, Duration::from_millis(2));
        obs.failed(
            &FWD,
            &ActionFailure::new(
                Cause::Returned { code: 312 },
                "returned by the broker: 312 NO_ROUTE",
            ),
        );
        obs.connected(true);
        obs.depth(10);

        let text = obs.metrics().render();
        for want in [
            r#"dlqd_messages_total{queue="orders.dlq",rule="4",action="forward"} 1"#,
            r#"dlqd_messages_total{queue="orders.dlq",rule="4",action="retry"} 1"#,
            r#"dlqd_retries_total{queue="orders.dlq",attempt="2"} 1"#,
            r#"dlqd_action_failures_total{queue="orders.dlq",action="forward",cause="returned"} 1"#,
            r#"dlqd_processing_seconds_count{queue="orders.dlq"} 2"#,
            r#"dlqd_dlq_depth{queue="orders.dlq"} 10"#,
            r#"dlqd_connected{queue="orders.dlq"} 1"#,
        ] {
            assert!(text.contains(want), "missing {want} in\n{text}");
        }
        assert_eq!(obs.progress().position(), 2);

        let lines: Vec<serde_json::Value> = std::fs::read_to_string(&path)
            .expect("read")
            .lines()
            .map(|l| serde_json::from_str(l).expect("JSON line"))
            .collect();
        assert_eq!(lines.len(), 3);
        assert_eq!(lines[1]["delay_ms"], 1000);
        assert_eq!(lines[1]["attempt"], 2);
        assert_eq!(lines[2]["outcome"], "failed");
        assert_eq!(lines[2]["cause"], "returned");
    }
}
