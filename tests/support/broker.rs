//! The shared test broker — 127.0.0.1:5672 unless `DLQD_TEST_URL` names another when the
//! tests are built (`DLQD_TEST_URL=amqp://guest:guest@127.0.0.1:5675/%2f cargo test` runs
//! them against a RabbitMQ 4.x node started by scripts/broker-matrix.sh): its URL,
//! connecting to it (or failing with how to start one), unique queue names, the ways of
//! dead-lettering, and small AMQP value/table builders.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

use lapin::options::QueueDeclareOptions;
use lapin::types::{AMQPValue, FieldTable, LongString, ShortString};
use lapin::{Channel, Connection, ConnectionProperties};

/// The shared broker every integration test runs against (`DLQD_TEST_URL` at build time).
pub const URL: &str = match option_env!("DLQD_TEST_URL") {
    Some(url) => url,
    None => "amqp://guest:guest@127.0.0.1:5672/%2f",
};

/// The port of [`URL`] (for a proxy in front of the shared broker).
pub fn port() -> u16 {
    URL.rsplit_once(':')
        .and_then(|(_, rest)| rest.split('/').next())
        .and_then(|p| p.parse().ok())
        .unwrap_or(5672)
}

/// A name no other test (or test run) uses: `PREFIX.PID.NANOS.N`.
pub fn unique(prefix: &str) -> String {
    static N: AtomicU64 = AtomicU64::new(0);
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0);
    format!(
        "{prefix}.{}.{nanos:x}.{}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    )
}

/// The panic message when the shared broker cannot be reached.
pub fn no_broker(e: &dyn std::fmt::Display) -> String {
    format!(
        "no RabbitMQ broker at {URL} ({e}); start one with `rabbitmq-server -detached` \
         (then `rabbitmqctl await_startup`), or for another version scripts/broker-matrix.sh"
    )
}

/// Connect to the shared broker, or fail saying how to start one.
pub async fn connect() -> Connection {
    match Connection::connect(URL, ConnectionProperties::default()).await {
        Ok(c) => c,
        Err(e) => panic!("{}", no_broker(&e)),
    }
}

/// An AMQP long string.
pub fn text(s: &str) -> AMQPValue {
    AMQPValue::LongString(LongString::from(s))
}

/// An AMQP field table from `(key, value)` pairs.
pub fn table(pairs: &[(&str, AMQPValue)]) -> FieldTable {
    let mut t = FieldTable::default();
    for (k, v) in pairs {
        t.insert(ShortString::from(*k), v.clone());
    }
    t
}

/// How a work queue dead-letters what is put in it (the helpers make each the real way).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Way {
    /// A consumer rejects it (requeue=false): reason `rejected`.
    Reject,
    /// Its TTL runs out: reason `expired`.
    Expire,
    /// The queue's length limit pushes it out: reason `maxlen`.
    Overflow,
}

impl Way {
    /// The `x-death` reason the broker records for this way.
    pub fn reason(self) -> &'static str {
        match self {
            Way::Reject => "rejected",
            Way::Expire => "expired",
            Way::Overflow => "maxlen",
        }
    }
}

/// Ready messages in `queue`, by a passive declare on `ch` (a throwaway channel: it is
/// closed after a success; a failure, e.g. no such queue, has closed it already).
pub async fn depth_on(ch: Channel, queue: &str) -> Result<u32, lapin::Error> {
    let q = ch
        .queue_declare(
            queue.into(),
            QueueDeclareOptions {
                passive: true,
                ..QueueDeclareOptions::default()
            },
            FieldTable::default(),
        )
        .await?;
    let _ = ch.close(200, "done".into()).await;
    Ok(q.message_count())
}

/// `queues` and, for each, the queues dlqd declares when it runs with it as the DLQ
/// (its delay and left queues): what a test's cleanup deletes.
pub fn with_dlqd_queues(queues: Vec<String>) -> Vec<String> {
    let mut out = Vec::with_capacity(queues.len() * 19);
    for q in queues {
        if !dlqd::stage::is_own_queue(&q) {
            out.extend(dlqd::stage::delay_queues(&q));
            out.push(dlqd::stage::left_queue(&q));
        }
        out.push(q);
    }
    out
}
