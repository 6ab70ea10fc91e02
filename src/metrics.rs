//! Prometheus metrics of the handler: a cheap-to-clone `Metrics` handle the daemon updates.
//!
//! Every series carries the DLQ it is about as the `queue` label (one `dlqd run` may
//! serve several DLQs; with one, the label is still there, so dashboards need no second
//! form). A handle is scoped to one DLQ with [`Metrics::for_queue`]; clones share the
//! same registry. Families (all prefixed `dlqd_`):
//! - `dlqd_messages_total{queue,rule,action}`: messages handled, by the rule (1-based
//!   line, or `none` when no rule applied) and the action carried out
//!   (`retry|forward|discard|leave`).
//! - `dlqd_action_failures_total{queue,action,cause}`: actions that failed, by cause
//!   (`returned`, `nacked`, `channel_closed`, `refused`, `archive_io`, ...).
//! - `dlqd_dlq_depth{queue}`: messages on the DLQ when last seen (no series while the
//!   DLQ is missing or may not be read).
//! - `dlqd_retries_total{queue,attempt}`: retries published, by attempt number (1 = first).
//! - `dlqd_processing_seconds{queue}`: histogram of the time from delivery to
//!   acknowledgement.
//! - `dlqd_connected{queue}`: 1 while that DLQ's handler reaches the broker (what
//!   `/health` reports, for every DLQ).
//! - `dlqd_dlq_up{queue}`: 1 while that DLQ is being consumed; 0 while it is missing,
//!   refused or the broker is unreachable.
//! - `dlqd_dlq_unavailable_total{queue,cause}`: attempts to reach the DLQ that failed
//!   (`not_found`, `access_refused`, `other`).
//!
//! The text output is OpenMetrics 1.0 (which Prometheus scrapes natively).

use std::borrow::Cow;
use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::{Arc, Mutex};
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

/// The DLQ a series is about (shared, so counting allocates nothing).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
struct QueueName(Arc<str>);

impl EncodeLabelValue for QueueName {
    fn encode(&self, encoder: &mut LabelValueEncoder) -> Result<(), std::fmt::Error> {
        encoder.write_str(&self.0)
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
struct ActionLabels {
    queue: QueueName,
    rule: RuleLabel,
    action: Cow<'static, str>,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
struct FailureLabels {
    queue: QueueName,
    action: Cow<'static, str>,
    cause: Cow<'static, str>,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
struct CauseLabels {
    queue: QueueName,
    cause: Cow<'static, str>,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
struct AttemptLabels {
    queue: QueueName,
    attempt: u32,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
struct QueueLabels {
    queue: QueueName,
}

/// Where one DLQ's handler stands, for `/health` and the `connected`/`dlq_up` gauges.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DlqState {
    /// No session with the broker (not yet, or lost).
    Disconnected,
    /// The broker answers, but the DLQ cannot be consumed (missing, refused): why.
    Unavailable(String),
    /// Consuming the DLQ.
    Consuming,
}

impl DlqState {
    fn describe(&self) -> String {
        match self {
            DlqState::Disconnected => "not connected to the broker".to_owned(),
            DlqState::Unavailable(why) => format!("connected; the DLQ is unavailable: {why}"),
            DlqState::Consuming => "consuming".to_owned(),
        }
    }
}

type HistogramFamily = Family<QueueLabels, Histogram, fn() -> Histogram>;

fn latency_histogram() -> Histogram {
    // 100 µs .. ~6.5 s, doubling.
    Histogram::new(exponential_buckets(0.0001, 2.0, 17))
}

struct Inner {
    registry: Registry,
    messages: Family<ActionLabels, Counter>,
    failures: Family<FailureLabels, Counter>,
    depth: Family<QueueLabels, Gauge>,
    retries: Family<AttemptLabels, Counter>,
    latency: HistogramFamily,
    connected_gauge: Family<QueueLabels, Gauge>,
    up: Family<QueueLabels, Gauge>,
    unavailable: Family<CauseLabels, Counter>,
    /// Every DLQ served now, and where it stands.
    states: Mutex<BTreeMap<QueueName, DlqState>>,
}

/// The handler's metrics. Clones share the same counters; [`Metrics::for_queue`] gives
/// a handle whose updates are labelled with one DLQ.
#[derive(Clone)]
pub struct Metrics {
    inner: Arc<Inner>,
    queue: QueueLabels,
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Metrics")
            .field("queue", &self.queue.queue.0)
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
    const KNOWN: &[&str] = &[
        "retry",
        "forward",
        "discard",
        "leave",
        "audit",
        "not_found",
        "access_refused",
        "other",
    ];
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
    /// A fresh set of metrics, all at zero, no DLQ registered (so not healthy). This
    /// handle's own updates carry `queue=""`; see [`Metrics::for_queue`].
    pub fn new() -> Self {
        let mut registry = Registry::with_prefix("dlqd");
        let messages = Family::<ActionLabels, Counter>::default();
        registry.register(
            "messages",
            "Messages handled, by DLQ, rule (1-based line, or none) and action",
            messages.clone(),
        );
        let failures = Family::<FailureLabels, Counter>::default();
        registry.register(
            "action_failures",
            "Actions that failed (the message stayed on the DLQ), by DLQ, action and cause",
            failures.clone(),
        );
        let depth = Family::<QueueLabels, Gauge>::default();
        registry.register(
            "dlq_depth",
            "Messages on the dead-letter queue when last seen",
            depth.clone(),
        );
        let retries = Family::<AttemptLabels, Counter>::default();
        registry.register(
            "retries",
            "Retries published, by DLQ and attempt number (1 = first retry)",
            retries.clone(),
        );
        let latency: HistogramFamily = Family::new_with_constructor(latency_histogram);
        registry.register_with_unit(
            "processing",
            "Time from delivery to acknowledgement",
            prometheus_client::registry::Unit::Seconds,
            latency.clone(),
        );
        let connected_gauge = Family::<QueueLabels, Gauge>::default();
        registry.register(
            "connected",
            "1 while the DLQ's handler is connected to the broker",
            connected_gauge.clone(),
        );
        let up = Family::<QueueLabels, Gauge>::default();
        registry.register(
            "dlq_up",
            "1 while the DLQ is being consumed (0: missing, refused or no broker)",
            up.clone(),
        );
        let unavailable = Family::<CauseLabels, Counter>::default();
        registry.register(
            "dlq_unavailable",
            "Attempts to consume the DLQ that failed, by cause (not_found, access_refused, other)",
            unavailable.clone(),
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
                up,
                unavailable,
                states: Mutex::new(BTreeMap::new()),
            }),
            queue: QueueLabels {
                queue: QueueName(Arc::from("")),
            },
        }
    }

    /// A handle on the same metrics whose updates are about DLQ `queue`; registers the
    /// DLQ (disconnected) for `/health` and its gauges.
    pub fn for_queue(&self, queue: &str) -> Metrics {
        let m = Metrics {
            inner: self.inner.clone(),
            queue: QueueLabels {
                queue: QueueName(Arc::from(queue)),
            },
        };
        m.set_state(DlqState::Disconnected);
        m.inner.depth.get_or_create(&m.queue).set(0);
        // Its histogram at zero from the start, so a rate over it exists at once.
        drop(m.inner.latency.get_or_create(&m.queue));
        m
    }

    /// The DLQ this handle is about ("" for the root handle).
    pub fn queue(&self) -> &str {
        &self.queue.queue.0
    }

    /// This DLQ is no longer served: its gauges and its `/health` entry go (its
    /// counters stay, as counters do).
    pub fn retire(&self) {
        self.states().remove(&self.queue.queue);
        self.inner.depth.remove(&self.queue);
        self.inner.connected_gauge.remove(&self.queue);
        self.inner.up.remove(&self.queue);
    }

    fn states(&self) -> std::sync::MutexGuard<'_, BTreeMap<QueueName, DlqState>> {
        // A panic elsewhere while holding it leaves a map that is still valid.
        self.inner
            .states
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// One message handled by `rule_line` (None: no rule applied) with `action`.
    pub fn action(&self, rule_line: Option<u32>, action: &str) {
        let labels = ActionLabels {
            queue: self.queue.queue.clone(),
            rule: RuleLabel(rule_line),
            action: known(action),
        };
        self.inner.messages.get_or_create(&labels).inc();
    }

    /// One `action` that failed because of `cause` (`returned`, `nacked`, `channel_closed`,
    /// `refused`, `archive_io`, ...).
    pub fn failure(&self, action: &str, cause: &str) {
        let labels = FailureLabels {
            queue: self.queue.queue.clone(),
            action: known(action),
            cause: known(cause),
        };
        self.inner.failures.get_or_create(&labels).inc();
    }

    /// One attempt to consume the DLQ failed: `cause` is `not_found`, `access_refused`
    /// or `other`.
    pub fn dlq_unavailable(&self, cause: &str) {
        let labels = CauseLabels {
            queue: self.queue.queue.clone(),
            cause: known(cause),
        };
        self.inner.unavailable.get_or_create(&labels).inc();
    }

    /// The DLQ's depth as last seen.
    pub fn depth(&self, n: u64) {
        self.inner
            .depth
            .get_or_create(&self.queue)
            .set(i64::try_from(n).unwrap_or(i64::MAX));
    }

    /// The DLQ's depth cannot be read (the DLQ is missing or refused): no series,
    /// rather than the last value seen.
    pub fn depth_unknown(&self) {
        self.inner.depth.remove(&self.queue);
    }

    /// One retry published, the `attempt`-th for that message (1 = first).
    pub fn retry(&self, attempt: u32) {
        self.inner
            .retries
            .get_or_create(&AttemptLabels {
                queue: self.queue.queue.clone(),
                attempt,
            })
            .inc();
    }

    /// The time one message took from delivery to acknowledgement.
    pub fn latency(&self, d: Duration) {
        self.inner
            .latency
            .get_or_create(&self.queue)
            .observe(d.as_secs_f64());
    }

    /// Where this DLQ's handler stands (drives `dlqd_connected`, `dlqd_dlq_up`, `/health`).
    pub fn set_state(&self, state: DlqState) {
        let connected = state != DlqState::Disconnected;
        let up = state == DlqState::Consuming;
        self.inner
            .connected_gauge
            .get_or_create(&self.queue)
            .set(i64::from(connected));
        self.inner.up.get_or_create(&self.queue).set(i64::from(up));
        self.states().insert(self.queue.queue.clone(), state);
    }

    /// Connected (consuming) or not: [`Metrics::set_state`] for a handler that does not
    /// tell the DLQ's trouble apart.
    pub fn set_connected(&self, connected: bool) {
        self.set_state(if connected {
            DlqState::Consuming
        } else {
            DlqState::Disconnected
        });
    }

    /// Healthy: at least one DLQ is served and every one is connected to the broker (a
    /// DLQ that is missing or refused is connected: restarting dlqd would not cure it,
    /// and `dlqd_dlq_up` says it). `/health` answers 200 only then.
    pub fn is_connected(&self) -> bool {
        let states = self.states();
        !states.is_empty() && states.values().all(|s| *s != DlqState::Disconnected)
    }

    /// One line per DLQ served: `queue: state`, for the `/health` body.
    pub fn health_report(&self) -> String {
        let mut out = String::new();
        for (q, s) in self.states().iter() {
            let _ = writeln!(out, "{}: {}", q.0, s.describe());
        }
        out
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
        insta::assert_snapshot!(Metrics::new().for_queue("orders.dlq").render());
    }

    #[test]
    fn updates_show_in_the_text_output() {
        let m = Metrics::new().for_queue("orders.dlq");
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
        let m = Metrics::new().for_queue("q\"1");
        m.failure("forward", "weird \"cause\"\n");
        let text = m.render();
        assert!(
            text.contains(
                r#"dlqd_action_failures_total{queue="q\"1",action="forward",cause="weird \"cause\"\n"} 1"#
            ),
            "{text}"
        );
    }

    #[test]
    fn connected_flag_follows_set_connected() {
        let m = Metrics::new().for_queue("a");
        assert!(!m.is_connected());
        m.set_connected(true);
        assert!(m.clone().is_connected());
        m.set_connected(false);
        assert!(!m.is_connected());
    }

    #[test]
    fn huge_depth_saturates() {
        let m = Metrics::new().for_queue("a");
        m.depth(u64::MAX);
        assert!(
            m.render()
                .contains(&format!("dlqd_dlq_depth{{queue=\"a\"}} {}", i64::MAX))
        );
    }

    #[test]
    fn each_queue_has_its_own_series_and_health_wants_every_one_connected() {
        let root = Metrics::new();
        let a = root.for_queue("orders.dlq");
        let b = root.for_queue("billing.dlq");
        a.action(Some(3), "forward");
        a.action(Some(3), "forward");
        b.action(Some(3), "forward");
        b.dlq_unavailable("not_found");
        a.set_state(DlqState::Consuming);
        assert!(!root.is_connected(), "billing.dlq is not connected yet");
        b.set_state(DlqState::Unavailable("404 NOT_FOUND".into()));
        assert!(root.is_connected(), "a missing DLQ is still connected");
        let text = root.render();
        for want in [
            r#"dlqd_messages_total{queue="orders.dlq",rule="3",action="forward"} 2"#,
            r#"dlqd_messages_total{queue="billing.dlq",rule="3",action="forward"} 1"#,
            r#"dlqd_dlq_unavailable_total{queue="billing.dlq",cause="not_found"} 1"#,
            r#"dlqd_dlq_up{queue="orders.dlq"} 1"#,
            r#"dlqd_dlq_up{queue="billing.dlq"} 0"#,
            r#"dlqd_connected{queue="billing.dlq"} 1"#,
        ] {
            assert!(text.contains(want), "missing {want} in\n{text}");
        }
        assert_eq!(
            root.health_report(),
            "billing.dlq: connected; the DLQ is unavailable: 404 NOT_FOUND\norders.dlq: consuming\n"
        );
        // A retired DLQ's gauges and health entry go; its counters stay.
        b.retire();
        let text = root.render();
        assert!(
            !text.contains(r#"dlqd_dlq_up{queue="billing.dlq"}"#),
            "{text}"
        );
        assert!(
            !text.contains(r#"dlqd_dlq_depth{queue="billing.dlq"}"#),
            "{text}"
        );
        assert!(
            text.contains(r#"dlqd_messages_total{queue="billing.dlq""#),
            "{text}"
        );
        assert_eq!(root.health_report(), "orders.dlq: consuming\n");
        a.set_state(DlqState::Disconnected);
        assert!(!root.is_connected());
        a.retire();
        assert!(!root.is_connected(), "no DLQ served: not healthy");
    }
}
