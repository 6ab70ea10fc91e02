//! Prometheus metrics of the handler: a cheap-to-clone `Metrics` handle the daemon updates.
//!
//! Families (all prefixed `dlqd_`):
//! - `dlqd_messages_total{rule,action}`: messages handled, by the rule (1-based line, or
//!   `none` when no rule applied) and the action carried out (`retry|forward|discard|leave`).
//! - `dlqd_action_failures_total{action,cause}`: actions that failed, by cause (`returned`,
//!   `nacked`, `channel_closed`, `refused`, `archive_io`, ...).
//! - `dlqd_dlq_depth`: messages on the DLQ when last seen.
//! - `dlqd_retries_total{attempt}`: retries published, by attempt number (1 = first retry).
//! - `dlqd_processing_seconds`: histogram of the time from delivery to acknowledgement.
//! - `dlqd_connected`: 1 while connected to the broker (also what `/health` reports).
//!
//! The text output is OpenMetrics 1.0 (which Prometheus scrapes natively).

use std::borrow::Cow;
use std::fmt::Write as _;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use prometheus_client::encoding::{EncodeLabelSet, EncodeLabelValue, LabelValueEncoder};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

/// The content type of [`Metrics::render`]'s output.
pub const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// The rule a message matched: its 1-based line, or none.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
struct RuleLabel(Option<u32>);

impl EncodeLabelValue for RuleLabel {
    fn encode(&self, encoder: &mut LabelValueEncoder) -> Result<(), std::fmt::Error> {
        match self.0 {
            Some(line) => encoder.write_fmt(format_args!("{line}")),
            None => encoder.write_str("none"),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
struct ActionLabels {
    rule: RuleLabel,
    action: Cow<'static, str>,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
struct FailureLabels {
    action: Cow<'static, str>,
    cause: Cow<'static, str>,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
struct AttemptLabels {
    attempt: u32,
}

struct Inner {
    registry: Registry,
    messages: Family<ActionLabels, Counter>,
    failures: Family<FailureLabels, Counter>,
    depth: Gauge,
    retries: Family<AttemptLabels, Counter>,
    latency: Histogram,
    connected_gauge: Gauge,
    connected: AtomicBool,
}

/// The handler's metrics. Clones share the same counters.
#[derive(Clone)]
pub struct Metrics {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Metrics")
            .field("connected", &self.is_connected())
            .finish_non_exhaustive()
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

/// Label values the daemon uses all the time, kept static so counting allocates nothing.
fn known(value: &str) -> Cow<'static, str> {
    const KNOWN: &[&str] = &["retry", "forward", "discard", "leave", "audit"];
    match KNOWN
        .iter()
        .chain(crate::failure::Cause::LABELS)
        .find(|k| **k == value)
    {
        Some(k) => Cow::Borrowed(k),
        None => Cow::Owned(value.to_owned()),
    }
}

impl Metrics {
    /// A fresh set of metrics, all at zero, not connected.
    pub fn new() -> Self {
        let mut registry = Registry::with_prefix("dlqd");
        let messages = Family::<ActionLabels, Counter>::default();
        registry.register(
            "messages",
            "Messages handled, by rule (1-based line, or none) and action",
            messages.clone(),
        );
        let failures = Family::<FailureLabels, Counter>::default();
        registry.register(
            "action_failures",
            "Actions that failed (the message stayed on the DLQ), by action and cause",
            failures.clone(),
        );
        let depth = Gauge::default();
        registry.register(
            "dlq_depth",
            "Messages on the dead-letter queue when last seen",
            depth.clone(),
        );
        let retries = Family::<AttemptLabels, Counter>::default();
        registry.register(
            "retries",
            "Retries published, by attempt number (1 = first retry)",
            retries.clone(),
        );
        // 100 µs .. ~6.5 s, doubling.
        let latency = Histogram::new(exponential_buckets(0.0001, 2.0, 17));
        registry.register_with_unit(
            "processing",
            "Time from delivery to acknowledgement",
            prometheus_client::registry::Unit::Seconds,
            latency.clone(),
        );
        let connected_gauge = Gauge::default();
        registry.register(
            "connected",
            "1 while the handler is connected to the broker",
            connected_gauge.clone(),
        );
        Metrics {
            inner: Arc::new(Inner {
                registry,
                messages,
                failures,
                depth,
                retries,
                latency,
                connected_gauge,
                connected: AtomicBool::new(false),
            }),
        }
    }

    /// One message handled by `rule_line` (None: no rule applied) with `action`.
    pub fn action(&self, rule_line: Option<u32>, action: &str) {
        let labels = ActionLabels {
            rule: RuleLabel(rule_line),
            action: known(action),
        };
        self.inner.messages.get_or_create(&labels).inc();
    }

    /// One `action` that failed because of `cause` (`returned`, `nacked`, `channel_closed`,
    /// `refused`, `archive_io`, ...).
    pub fn failure(&self, action: &str, cause: &str) {
        let labels = FailureLabels {
            action: known(action),
            cause: known(cause),
        };
        self.inner.failures.get_or_create(&labels).inc();
    }

    /// The DLQ's depth as last seen.
    pub fn depth(&self, n: u64) {
        self.inner.depth.set(i64::try_from(n).unwrap_or(i64::MAX));
    }

    /// One retry published, the `attempt`-th for that message (1 = first).
    pub fn retry(&self, attempt: u32) {
        self.inner
            .retries
            .get_or_create(&AttemptLabels { attempt })
            .inc();
    }

    /// The time one message took from delivery to acknowledgement.
    pub fn latency(&self, d: Duration) {
        self.inner.latency.observe(d.as_secs_f64());
    }

    /// Whether the handler is connected; `/health` answers 200 only while it is.
    pub fn set_connected(&self, connected: bool) {
        self.inner.connected.store(connected, Ordering::Release);
        self.inner.connected_gauge.set(i64::from(connected));
    }

    /// See [`Metrics::set_connected`].
    pub fn is_connected(&self) -> bool {
        self.inner.connected.load(Ordering::Acquire)
    }

    /// The metrics as OpenMetrics text (see [`CONTENT_TYPE`]).
    pub fn render(&self) -> String {
        let mut out = String::with_capacity(4096);
        if prometheus_client::encoding::text::encode(&mut out, &self.inner.registry).is_err() {
            // Writing to a String cannot fail; keep the output well-formed regardless.
            out.clear();
            let _ = writeln!(out, "# EOF");
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sorted_lines(text: &str) -> String {
        let mut lines: Vec<&str> = text.lines().collect();
        lines.sort_unstable();
        lines.join("\n")
    }

    #[test]
    fn fresh_metrics_render_every_family() {
        insta::assert_snapshot!(Metrics::new().render());
    }

    #[test]
    fn updates_show_in_the_text_output() {
        let m = Metrics::new();
        let clone = m.clone();
        m.action(Some(7), "retry");
        clone.action(Some(7), "retry");
        m.action(Some(9), "forward");
        m.action(None, "leave");
        m.failure("forward", "returned");
        m.failure("retry", "channel_closed");
        m.failure("discard", "archive_io");
        m.depth(1234);
        m.retry(1);
        m.retry(1);
        m.retry(3);
        m.latency(Duration::from_millis(3));
        m.latency(Duration::from_micros(50));
        m.set_connected(true);
        // Series within a family come out in hash order: compare them sorted.
        insta::assert_snapshot!(sorted_lines(&m.render()));
    }

    #[test]
    fn unknown_label_values_are_kept_and_escaped() {
        let m = Metrics::new();
        m.failure("forward", "weird \"cause\"\n");
        let text = m.render();
        assert!(
            text.contains(
                r#"dlqd_action_failures_total{action="forward",cause="weird \"cause\"\n"} 1"#
            ),
            "{text}"
        );
    }

    #[test]
    fn connected_flag_follows_set_connected() {
        let m = Metrics::new();
        assert!(!m.is_connected());
        m.set_connected(true);
        assert!(m.clone().is_connected());
        m.set_connected(false);
        assert!(!m.is_connected());
    }

    #[test]
    fn huge_depth_saturates() {
        let m = Metrics::new();
        m.depth(u64::MAX);
        assert!(m.render().contains(&format!("dlqd_dlq_depth {}", i64::MAX)));
    }
}
