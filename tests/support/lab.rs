//! A broker-side workbench for fault tests: a connection that comes back after a broker
//! crash, durable queues under unique names (deleted afterwards), persistent messages
//! carrying unique ids, dead letters made the real ways in bulk (reject, TTL expiry,
//! max-length overflow), and counting/draining queues by message id.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use futures_lite::StreamExt;
use lapin::options::*;
use lapin::types::{AMQPValue, FieldTable};
use lapin::{BasicProperties, Channel, Confirmation, Connection, ConnectionProperties};

/// The shared broker of the other integration tests.
#[allow(unused_imports)] // not every test file uses every re-export
pub use super::broker::url as shared_url;
#[allow(unused_imports)] // not every test file uses every re-export
pub use super::broker::{table, text};

/// A name no other test (or test run) uses.
pub fn unique(prefix: &str) -> String {
    super::broker::unique(&format!("dlqd-faults.{prefix}"))
}

#[allow(unused_imports)] // not every test file uses every re-export
pub use super::broker::Way;

/// The ways the fault tests mix: what dlqd must survive in bulk.
pub const WAYS: [Way; 3] = [Way::Reject, Way::QueueTtl, Way::Overflow];

/// Persistent properties with a message id and an `act` header (what the rules match).
pub fn props(id: &str, act: &str) -> BasicProperties {
    BasicProperties::default()
        .with_message_id(id.into())
        .with_delivery_mode(2)
        .with_headers(table(&[("act", text(act))]))
}

/// One message read back.
#[derive(Debug, Clone)]
pub struct Got {
    pub id: String,
    pub properties: BasicProperties,
}

impl Got {
    pub fn header_i64(&self, name: &str) -> Option<i64> {
        match self.properties.headers().as_ref()?.inner().get(name)? {
            AMQPValue::LongLongInt(v) => Some(*v),
            AMQPValue::LongInt(v) => Some(i64::from(*v)),
            AMQPValue::ShortInt(v) => Some(i64::from(*v)),
            AMQPValue::ShortShortInt(v) => Some(i64::from(*v)),
            AMQPValue::ShortShortUInt(v) => Some(i64::from(*v)),
            AMQPValue::ShortUInt(v) => Some(i64::from(*v)),
            AMQPValue::LongUInt(v) => Some(i64::from(*v)),
            _ => None,
        }
    }
}

/// A connection to one broker and the queues and exchanges made through it.
pub struct Lab {
    url: String,
    conn: Option<Connection>,
    ch: Option<Channel>,
    queues: Vec<String>,
    exchanges: Vec<String>,
}

impl Lab {
    /// Connect (waiting up to two minutes, e.g. for a restarting node), or fail saying
    /// how to start a broker.
    pub async fn connect(url: &str) -> Lab {
        let mut lab = Lab {
            url: url.to_string(),
            conn: None,
            ch: None,
            queues: Vec::new(),
            exchanges: Vec::new(),
        };
        lab.channel().await;
        lab
    }

    /// The lab's confirm-mode channel, reconnecting when the broker went away.
    pub async fn channel(&mut self) -> Channel {
        if let Some(ch) = &self.ch
            && ch.status().connected()
        {
            return ch.clone();
        }
        let deadline = Instant::now() + Duration::from_secs(120);
        loop {
            match Connection::connect(&self.url, ConnectionProperties::default()).await {
                Ok(conn) => {
                    if let Ok(ch) = conn.create_channel().await
                        && ch
                            .confirm_select(ConfirmSelectOptions::default())
                            .await
                            .is_ok()
                    {
                        self.conn = Some(conn);
                        self.ch = Some(ch.clone());
                        return ch;
                    }
                }
                Err(e) => {
                    assert!(
                        Instant::now() < deadline,
                        "no RabbitMQ at {} ({e}); for the shared node start one with \
                         `rabbitmq-server -detached` (then `rabbitmqctl await_startup`)",
                        self.url
                    );
                }
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    /// A fresh channel. lapin may report a channel's earlier failure (a passive declare
    /// of a missing queue) on the next `create_channel`: try again, then reconnect.
    async fn throwaway(&mut self) -> Channel {
        for attempt in 0..5 {
            self.channel().await;
            let conn = self.conn.as_ref().expect("connected");
            match conn.create_channel().await {
                Ok(ch) => return ch,
                Err(_) if attempt < 2 => continue,
                Err(_) => self.ch = None,
            }
        }
        panic!("cannot open a channel to {}", self.url)
    }

    /// A durable queue with these arguments, deleted by [`Lab::cleanup`].
    pub async fn queue(&mut self, name: &str, args: &[(&str, AMQPValue)]) {
        let ch = self.channel().await;
        ch.queue_declare(name.into(), QueueDeclareOptions::durable(), table(args))
            .await
            .unwrap_or_else(|e| panic!("declare {name}: {e}"));
        self.queues.push(name.to_string());
    }

    /// Delete `name` now (a durable step: unlike an acknowledgement, a crash cannot
    /// undo it).
    pub async fn delete(&mut self, name: &str) {
        let ch = self.throwaway().await;
        ch.queue_delete(name.into(), QueueDeleteOptions::default())
            .await
            .unwrap_or_else(|e| panic!("delete {name}: {e}"));
        let _ = ch.close(200, "done".into()).await;
    }

    /// Delete `name` at cleanup too (a queue dlqd declares, such as a delay queue).
    pub fn adopt(&mut self, name: &str) {
        self.queues.push(name.to_string());
    }

    /// A durable topic exchange with `queue` bound to it by `#`.
    pub async fn topic_to(&mut self, exchange: &str, queue: &str) {
        let ch = self.channel().await;
        ch.exchange_declare(
            exchange.into(),
            lapin::ExchangeKind::Topic,
            ExchangeDeclareOptions {
                durable: true,
                ..ExchangeDeclareOptions::default()
            },
            FieldTable::default(),
        )
        .await
        .expect("declare exchange");
        self.exchanges.push(exchange.to_string());
        ch.queue_bind(
            queue.into(),
            exchange.into(),
            "#".into(),
            QueueBindOptions::default(),
            FieldTable::default(),
        )
        .await
        .expect("bind");
    }

    /// A work queue that dead-letters `way` into `dlq` (through the default exchange).
    pub async fn work_queue(&mut self, name: &str, dlq: &str, way: Way) {
        assert!(
            matches!(way, Way::Reject | Way::QueueTtl | Way::Overflow),
            "the lab dead-letters in bulk by reject, queue TTL or overflow, not {way:?}"
        );
        self.queue(name, &super::broker::work_queue_args(way, dlq))
            .await;
    }

    /// Publish persistent messages to queues through the default exchange, pipelined,
    /// every one confirmed (and routed).
    pub async fn publish_all(&mut self, messages: &[(String, BasicProperties)]) {
        let ch = self.channel().await;
        for chunk in messages.chunks(500) {
            let mut confirms = Vec::with_capacity(chunk.len());
            for (queue, p) in chunk {
                let body = p
                    .message_id()
                    .as_ref()
                    .map(|s| s.as_str().as_bytes().to_vec())
                    .unwrap_or_default();
                let c = ch
                    .basic_publish(
                        "".into(),
                        queue.as_str().into(),
                        BasicPublishOptions {
                            mandatory: true,
                            ..BasicPublishOptions::default()
                        },
                        &body,
                        p.clone(),
                    )
                    .await
                    .expect("publish");
                confirms.push((queue, c));
            }
            for (queue, c) in confirms {
                let got = c.await.expect("confirm");
                assert_eq!(got, Confirmation::Ack(None), "publish to {queue}");
            }
        }
    }

    /// Reject (requeue=false) the next `n` messages of `queue`.
    pub async fn reject(&mut self, queue: &str, n: usize) {
        if n == 0 {
            return;
        }
        let ch = self.throwaway().await;
        ch.basic_qos(500, BasicQosOptions::default())
            .await
            .expect("qos");
        let mut consumer = ch
            .basic_consume(
                queue.into(),
                "".into(),
                BasicConsumeOptions::default(),
                FieldTable::default(),
            )
            .await
            .expect("consume");
        for _ in 0..n {
            let d = tokio::time::timeout(Duration::from_secs(30), consumer.next())
                .await
                .unwrap_or_else(|_| panic!("nothing more to reject on {queue}"))
                .expect("consumer ended")
                .expect("delivery");
            d.nack(BasicNackOptions {
                multiple: false,
                requeue: false,
            })
            .await
            .expect("reject");
        }
        let _ = ch.close(200, "done".into()).await;
    }

    /// A consumer that rejects (requeue=false) everything that arrives on `queue`, until
    /// the queue is deleted, calling `seen` with each delivery's message id first.
    async fn reject_all(&mut self, queue: &str, mut seen: impl FnMut(String) + Send + 'static) {
        let ch = self.throwaway().await;
        ch.basic_qos(50, BasicQosOptions::default())
            .await
            .expect("qos");
        let mut consumer = ch
            .basic_consume(
                queue.into(),
                "".into(),
                BasicConsumeOptions::default(),
                FieldTable::default(),
            )
            .await
            .expect("consume");
        tokio::spawn(async move {
            let _keep = ch;
            while let Some(Ok(d)) = consumer.next().await {
                let id = d
                    .properties
                    .message_id()
                    .as_ref()
                    .map(|s| s.as_str().to_string())
                    .unwrap_or_default();
                seen(id);
                let _ = d
                    .nack(BasicNackOptions {
                        multiple: false,
                        requeue: false,
                    })
                    .await;
            }
        });
    }

    /// A consumer that rejects everything that arrives on `queue` (see `reject_all`);
    /// how many it rejected.
    pub async fn rejector(&mut self, queue: &str) -> std::sync::Arc<AtomicU64> {
        let n = std::sync::Arc::new(AtomicU64::new(0));
        let counter = n.clone();
        self.reject_all(queue, move |_| {
            counter.fetch_add(1, Ordering::Relaxed);
        })
        .await;
        n
    }

    /// A consumer that rejects everything that arrives on `queue`; each id with the
    /// moment it arrived.
    pub async fn recording_rejector(
        &mut self,
        queue: &str,
    ) -> std::sync::Arc<std::sync::Mutex<Vec<(String, Instant)>>> {
        let seen: std::sync::Arc<std::sync::Mutex<Vec<(String, Instant)>>> = Default::default();
        let log = seen.clone();
        self.reject_all(queue, move |id| {
            log.lock().expect("arrivals").push((id, Instant::now()));
        })
        .await;
        seen
    }

    /// Ready messages in `queue`; `None` when it does not exist.
    pub async fn count(&mut self, queue: &str) -> Option<u32> {
        let ch = self.throwaway().await;
        super::broker::depth_on(ch, queue).await.ok()
    }

    /// Wait until `queue` holds exactly `n` ready messages.
    pub async fn wait_count(&mut self, queue: &str, n: u32, timeout: Duration) {
        let deadline = Instant::now() + timeout;
        loop {
            let c = self.count(queue).await.unwrap_or(0);
            if c == n {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "{queue} holds {c} messages, expected {n}"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Take every message off `queue` (a missing queue is empty).
    pub async fn drain(&mut self, queue: &str) -> Vec<Got> {
        let mut out = Vec::new();
        if self.count(queue).await.is_none() {
            return out;
        }
        let ch = self.throwaway().await;
        while let Some(m) = ch
            .basic_get(queue.into(), BasicGetOptions { no_ack: true })
            .await
            .expect("basic.get")
        {
            let properties = m.delivery.properties;
            let id = properties
                .message_id()
                .as_ref()
                .map(|s| s.as_str().to_string())
                .unwrap_or_default();
            out.push(Got { id, properties });
        }
        let _ = ch.close(200, "done".into()).await;
        out
    }

    /// Delete every queue and exchange made (or adopted) here.
    pub async fn cleanup(&mut self) {
        let queues = super::broker::with_dlqd_queues(std::mem::take(&mut self.queues));
        let exchanges = std::mem::take(&mut self.exchanges);
        for q in queues {
            let ch = self.throwaway().await;
            let _ = ch
                .queue_delete(q.as_str().into(), QueueDeleteOptions::default())
                .await;
            let _ = ch.close(200, "done".into()).await;
        }
        for e in exchanges {
            let ch = self.throwaway().await;
            let _ = ch
                .exchange_delete(e.as_str().into(), ExchangeDeleteOptions::default())
                .await;
            let _ = ch.close(200, "done".into()).await;
        }
    }
}

impl Drop for Lab {
    /// Delete what is left (a test that failed before its cleanup), on a thread of its own.
    fn drop(&mut self) {
        if self.queues.is_empty() && self.exchanges.is_empty() {
            return;
        }
        let url = self.url.clone();
        let queues = std::mem::take(&mut self.queues);
        let exchanges = std::mem::take(&mut self.exchanges);
        let _ = std::thread::spawn(move || {
            let Ok(rt) = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            else {
                return;
            };
            rt.block_on(async move {
                let Ok(Ok(conn)) = tokio::time::timeout(
                    Duration::from_secs(5),
                    Connection::connect(&url, ConnectionProperties::default()),
                )
                .await
                else {
                    return;
                };
                for q in queues {
                    if let Ok(ch) = conn.create_channel().await {
                        let _ = ch
                            .queue_delete(q.as_str().into(), QueueDeleteOptions::default())
                            .await;
                        let _ = ch.close(200, "done".into()).await;
                    }
                }
                for e in exchanges {
                    if let Ok(ch) = conn.create_channel().await {
                        let _ = ch
                            .exchange_delete(e.as_str().into(), ExchangeDeleteOptions::default())
                            .await;
                        let _ = ch.close(200, "done".into()).await;
                    }
                }
                let _ = conn.close(200, "done".into()).await;
            });
        })
        .join();
    }
}

/// How many copies of each id.
pub fn tally<'a>(ids: impl IntoIterator<Item = &'a str>) -> BTreeMap<String, usize> {
    let mut m = BTreeMap::new();
    for id in ids {
        *m.entry(id.to_string()).or_insert(0) += 1;
    }
    m
}
