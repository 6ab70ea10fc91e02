//! The shared test broker — `DLQD_TEST_URL` when set (read when the tests run:
//! `DLQD_TEST_URL=amqp://guest:guest@127.0.0.1:5675/%2f cargo test` runs the same build
//! against a RabbitMQ 4.x node started by scripts/broker-matrix.sh), else
//! 127.0.0.1:5672: its URL,
//! connecting to it (or failing with how to start one), unique queue names, the ways of
//! dead-lettering, and small AMQP value/table builders.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

use lapin::options::QueueDeclareOptions;
use lapin::types::{AMQPValue, FieldTable, LongString, ShortString};
use lapin::{Channel, Connection, ConnectionProperties};

/// The environment variable that names the broker every integration test runs against.
pub const URL_ENV: &str = "DLQD_TEST_URL";
/// The broker when `DLQD_TEST_URL` is not set: the machine's own node.
pub const DEFAULT_URL: &str = "amqp://guest:guest@127.0.0.1:5672/%2f";

/// The shared broker every integration test runs against: `DLQD_TEST_URL`, else
/// [`DEFAULT_URL`]. The one place a test learns where the broker is.
pub fn url() -> &'static str {
    static URL: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    URL.get_or_init(|| match std::env::var(URL_ENV) {
        Ok(u) if !u.is_empty() => u,
        _ => DEFAULT_URL.to_string(),
    })
}

/// The port of [`url()`] (for a proxy in front of the shared broker).
pub fn port() -> u16 {
    url()
        .rsplit_once(':')
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
        "no RabbitMQ broker at {} ({e}); start one with `rabbitmq-server -detached` \
         (then `rabbitmqctl await_startup`), or for another version scripts/broker-matrix.sh \
         and {URL_ENV}",
        url()
    )
}

/// Connect to the shared broker, or fail saying how to start one.
pub async fn connect() -> Connection {
    match Connection::connect(url(), ConnectionProperties::default()).await {
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

/// The real ways a work queue dead-letters what is put in it, one meaning each. Every
/// harness builds its work queues with [`work_queue_args`] and dead-letters the way the
/// variant says.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Way {
    /// A consumer rejects it (requeue=false): reason `rejected`.
    Reject,
    /// Its own TTL (the `expiration` property, 1 ms) runs out in the work queue: `expired`.
    Expire,
    /// The work queue's TTL (`x-message-ttl` 0) runs out: `expired`.
    QueueTtl,
    /// The work queue's length limit (`x-max-length` 1) pushes it out: `maxlen`.
    Overflow,
    /// A quorum work queue's delivery limit (`x-delivery-limit` 1) is passed after a
    /// consumer returns it (reject with requeue) twice: `delivery_limit`.
    DeliveryLimit,
}

/// Every way, in one list.
pub const ALL_WAYS: [Way; 5] = [
    Way::Reject,
    Way::Expire,
    Way::QueueTtl,
    Way::Overflow,
    Way::DeliveryLimit,
];

impl Way {
    /// The `x-death` reason the broker records for this way.
    pub fn reason(self) -> &'static str {
        match self {
            Way::Reject => "rejected",
            Way::Expire | Way::QueueTtl => "expired",
            Way::Overflow => "maxlen",
            Way::DeliveryLimit => "delivery_limit",
        }
    }
}

/// The arguments of a durable work queue that dead-letters `way` into `dlq` through the
/// default exchange: the one definition of "a work queue" for every test.
pub fn work_queue_args(way: Way, dlq: &str) -> Vec<(&'static str, AMQPValue)> {
    let mut args = vec![
        ("x-dead-letter-exchange", text("")),
        ("x-dead-letter-routing-key", text(dlq)),
    ];
    match way {
        Way::Reject | Way::Expire => {}
        Way::QueueTtl => args.push(("x-message-ttl", AMQPValue::LongLongInt(0))),
        Way::Overflow => args.push(("x-max-length", AMQPValue::LongLongInt(1))),
        Way::DeliveryLimit => {
            args.push(("x-queue-type", text("quorum")));
            args.push(("x-delivery-limit", AMQPValue::LongLongInt(1)));
        }
    }
    args
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
