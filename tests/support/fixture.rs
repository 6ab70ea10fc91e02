//! The one broker fixture of the integration tests: a [`Broker`] connected to the shared
//! node ([`super::broker::url`], from `DLQD_TEST_URL`) or to a private node, that
//! declares queues (work queues dead-lettering into a DLQ the real ways of
//! [`super::broker::Way`]), publishes with confirms, dead-letters, counts, reads and
//! drains, and deletes what it declared.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use futures_lite::StreamExt;
use lapin::options::*;
use lapin::types::{AMQPValue, FieldTable};
use lapin::{BasicProperties, Channel, Connection, ConnectionProperties};

use super::broker::{self, Way};

/// A message as a test reads it back.
#[derive(Debug, Clone)]
pub struct Got {
    pub body: Vec<u8>,
    pub properties: BasicProperties,
}

impl Got {
    pub fn header(&self, name: &str) -> Option<&AMQPValue> {
        self.properties.headers().as_ref()?.inner().get(name)
    }

    pub fn header_i64(&self, name: &str) -> Option<i64> {
        match self.header(name)? {
            AMQPValue::LongLongInt(v) => Some(*v),
            AMQPValue::LongInt(v) => Some(i64::from(*v)),
            AMQPValue::ShortShortUInt(v) => Some(i64::from(*v)),
            AMQPValue::LongUInt(v) => Some(i64::from(*v)),
            _ => None,
        }
    }

    pub fn header_str(&self, name: &str) -> Option<String> {
        match self.header(name)? {
            AMQPValue::LongString(s) => Some(String::from_utf8_lossy(s.as_bytes()).into_owned()),
            _ => None,
        }
    }

    /// The `queue` of the newest `x-death` entry.
    pub fn death_queue(&self) -> Option<String> {
        match self.header("x-death")? {
            AMQPValue::FieldArray(a) => match a.as_slice().first()? {
                AMQPValue::FieldTable(t) => match t.inner().get("queue")? {
                    AMQPValue::LongString(s) => {
                        Some(String::from_utf8_lossy(s.as_bytes()).into_owned())
                    }
                    _ => None,
                },
                _ => None,
            },
            _ => None,
        }
    }

    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    /// The message id ("" when it has none).
    pub fn id(&self) -> String {
        self.properties
            .message_id()
            .as_ref()
            .map(|s| s.as_str().to_string())
            .unwrap_or_default()
    }
}

/// A connection to a broker (the shared one, or a private node) and the queues this
/// test made: the one broker fixture of the integration tests. Everything it declared
/// is deleted when it is dropped (or by [`Broker::cleanup`]).
pub struct Broker {
    url: String,
    pub conn: Connection,
    pub ch: Channel,
    created: Vec<String>,
}

impl Broker {
    /// Connect to the shared broker ([`broker::url`]), or fail saying how to start one.
    pub async fn connect() -> Broker {
        Broker::connect_to(broker::url())
            .await
            .unwrap_or_else(|e| panic!("{}", broker::no_broker(&e)))
    }

    /// The shared broker (the same as [`Broker::connect`]).
    pub async fn shared() -> Broker {
        Broker::connect().await
    }

    /// Connect to the broker at `url` (a private node, a proxy).
    pub async fn connect_to(url: &str) -> Result<Broker, lapin::Error> {
        let conn = Connection::connect(url, ConnectionProperties::default()).await?;
        let ch = conn.create_channel().await?;
        ch.confirm_select(ConfirmSelectOptions::default()).await?;
        Ok(Broker {
            url: url.to_string(),
            conn,
            ch,
            created: Vec::new(),
        })
    }

    /// Remember a queue dlqd creates (a delay queue) so that it is deleted too.
    pub fn adopt(&mut self, queue: &str) {
        self.created.push(queue.to_string());
    }

    /// Declare a durable queue with these arguments (deleted at the end).
    pub async fn queue(&mut self, name: &str, arguments: &[(&str, AMQPValue)]) {
        self.queue_with(name, broker::table(arguments)).await;
    }

    /// Declare a durable queue with this argument table (deleted at the end).
    pub async fn queue_with(&mut self, name: &str, arguments: FieldTable) {
        self.ch
            .queue_declare(name.into(), QueueDeclareOptions::durable(), arguments)
            .await
            .unwrap_or_else(|e| panic!("declare {name}: {e}"));
        self.created.push(name.to_string());
    }

    /// A work queue whose dead letters go (through the default exchange) to `dlq`, which
    /// is declared too (see [`broker::work_queue_args`]).
    pub async fn work_queue(&mut self, work: &str, dlq: &str, way: Way) {
        self.queue(dlq, &[]).await;
        self.queue(work, &broker::work_queue_args(way, dlq)).await;
    }

    /// Publish to a queue through the default exchange, confirmed.
    pub async fn publish(&self, queue: &str, body: &[u8], props: BasicProperties) {
        let confirm = self
            .ch
            .basic_publish(
                "".into(),
                queue.into(),
                BasicPublishOptions {
                    mandatory: true,
                    ..BasicPublishOptions::default()
                },
                body,
                props,
            )
            .await
            .expect("publish")
            .await
            .expect("confirm");
        assert_eq!(
            confirm,
            lapin::Confirmation::Ack(None),
            "publish to {queue}"
        );
    }

    /// Publish many messages to a queue, confirms awaited together.
    pub async fn publish_all(&self, queue: &str, messages: &[(Vec<u8>, BasicProperties)]) {
        let mut confirms = Vec::with_capacity(messages.len());
        for (body, props) in messages {
            confirms.push(
                self.ch
                    .basic_publish(
                        "".into(),
                        queue.into(),
                        BasicPublishOptions {
                            mandatory: true,
                            ..BasicPublishOptions::default()
                        },
                        body,
                        props.clone(),
                    )
                    .await
                    .expect("publish"),
            );
        }
        for c in confirms {
            assert_eq!(c.await.expect("confirm"), lapin::Confirmation::Ack(None));
        }
    }

    /// Put these messages through `work` so that they land on `dlq` dead-lettered the
    /// given way, in order; waits until they are all there.
    pub async fn dead_letter(
        &self,
        work: &str,
        dlq: &str,
        way: Way,
        messages: &[(Vec<u8>, BasicProperties)],
    ) {
        let before = self.count(dlq).await;
        match way {
            Way::Reject => {
                self.publish_all(work, messages).await;
                let ch = self.conn.create_channel().await.expect("channel");
                for _ in messages {
                    let got = self.get_on(&ch, work).await;
                    ch.basic_nack(
                        got,
                        BasicNackOptions {
                            multiple: false,
                            requeue: false,
                        },
                    )
                    .await
                    .expect("reject");
                }
                let _ = ch.close(200, "done".into()).await;
            }
            Way::Expire => {
                let expiring: Vec<_> = messages
                    .iter()
                    .map(|(b, p)| (b.clone(), p.clone().with_expiration("1".into())))
                    .collect();
                self.publish_all(work, &expiring).await;
            }
            Way::QueueTtl => self.publish_all(work, messages).await,
            Way::DeliveryLimit => {
                // Returned (reject with requeue: counted on every version) until the
                // broker dead-letters it past x-delivery-limit.
                self.publish_all(work, messages).await;
                let ch = self.conn.create_channel().await.expect("channel");
                let deadline = Instant::now() + Duration::from_secs(60);
                while self.count(dlq).await < before + messages.len() as u32 {
                    assert!(
                        Instant::now() < deadline,
                        "{work} did not dead-letter by delivery limit"
                    );
                    if let Some(m) = ch
                        .basic_get(work.into(), BasicGetOptions::default())
                        .await
                        .expect("basic.get")
                    {
                        ch.basic_reject(
                            m.delivery.delivery_tag,
                            BasicRejectOptions { requeue: true },
                        )
                        .await
                        .expect("reject with requeue");
                    } else {
                        tokio::time::sleep(Duration::from_millis(10)).await;
                    }
                }
                let _ = ch.close(200, "done".into()).await;
            }
            Way::Overflow => {
                // Each publish pushes the one before it out; a last filler is purged.
                self.publish_all(work, messages).await;
                self.publish(work, b"filler", BasicProperties::default())
                    .await;
            }
        }
        self.wait_count(dlq, before + messages.len() as u32, Duration::from_secs(60))
            .await;
        if way == Way::Overflow {
            self.ch
                .queue_purge(work.into(), QueuePurgeOptions::default())
                .await
                .expect("purge filler");
        }
    }

    /// Take the one message waiting in `work` and reject it again, into `dlq`.
    pub async fn dead_letter_again(&self, work: &str, dlq: &str) {
        let before = self.count(dlq).await;
        let ch = self.conn.create_channel().await.expect("channel");
        let tag = self.get_on(&ch, work).await;
        ch.basic_nack(
            tag,
            BasicNackOptions {
                multiple: false,
                requeue: false,
            },
        )
        .await
        .expect("reject");
        let _ = ch.close(200, "done".into()).await;
        self.wait_count(dlq, before + 1, Duration::from_secs(10))
            .await;
    }

    async fn get_on(&self, ch: &Channel, queue: &str) -> u64 {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            if let Some(m) = ch
                .basic_get(queue.into(), BasicGetOptions::default())
                .await
                .expect("basic.get")
            {
                return m.delivery.delivery_tag;
            }
            assert!(Instant::now() < deadline, "nothing to get from {queue}");
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    /// Ready messages in a queue.
    pub async fn count(&self, queue: &str) -> u32 {
        let ch = self.conn.create_channel().await.expect("channel");
        broker::depth_on(ch, queue)
            .await
            .unwrap_or_else(|e| panic!("queue {queue}: {e}"))
    }

    /// True when the queue exists.
    pub async fn exists(&self, queue: &str) -> bool {
        let ch = self.conn.create_channel().await.expect("channel");
        broker::depth_on(ch, queue).await.is_ok()
    }

    /// Wait until a queue holds exactly `n` ready messages.
    pub async fn wait_count(&self, queue: &str, n: u32, timeout: Duration) {
        self.wait_total(&[queue], n, timeout).await;
    }

    /// Wait until `queues` together hold `n` ready messages. After a consumer's
    /// connection closes, a quorum queue takes a moment to count what it got back.
    pub async fn wait_total(&self, queues: &[&str], n: u32, timeout: Duration) {
        let deadline = Instant::now() + timeout;
        loop {
            let mut c = 0;
            for q in queues {
                c += self.count(q).await;
            }
            if c == n {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "{queues:?} hold {c} ready messages, expected {n}"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Take every message off a queue (acknowledged), in order.
    pub async fn drain(&self, queue: &str) -> Vec<Got> {
        let n = self.count(queue).await as usize;
        let mut out = Vec::with_capacity(n);
        if n == 0 {
            return out;
        }
        let ch = self.conn.create_channel().await.expect("channel");
        let mut consumer = ch
            .basic_consume(
                queue.into(),
                "".into(),
                BasicConsumeOptions {
                    no_ack: true,
                    ..BasicConsumeOptions::default()
                },
                FieldTable::default(),
            )
            .await
            .expect("consume");
        while out.len() < n {
            let d = tokio::time::timeout(Duration::from_secs(10), consumer.next())
                .await
                .expect("messages counted are delivered")
                .expect("consumer open")
                .expect("delivery");
            out.push(Got {
                body: d.data,
                properties: d.properties,
            });
        }
        let _ = ch.close(200, "done".into()).await;
        out
    }

    /// Read every message of a queue without removing it (got, then handed back in order).
    pub async fn peek(&self, queue: &str) -> Vec<Got> {
        let ch = self.conn.create_channel().await.expect("channel");
        let mut out = Vec::new();
        while let Some(m) = ch
            .basic_get(queue.into(), BasicGetOptions::default())
            .await
            .expect("basic.get")
        {
            out.push(Got {
                body: m.delivery.data,
                properties: m.delivery.properties,
            });
        }
        // Closing the channel hands every unacknowledged message back, in order.
        let _ = ch.close(200, "done".into()).await;
        out
    }

    /// A consumer that rejects (requeue=false) everything arriving on `queue`; counts them.
    pub async fn rejector(&self, queue: &str) -> std::sync::Arc<AtomicU64> {
        let ch = self.conn.create_channel().await.expect("channel");
        let mut consumer = ch
            .basic_consume(
                queue.into(),
                "".into(),
                BasicConsumeOptions::default(),
                FieldTable::default(),
            )
            .await
            .expect("consume");
        let n = std::sync::Arc::new(AtomicU64::new(0));
        let counter = n.clone();
        tokio::spawn(async move {
            let _keep = ch;
            while let Some(Ok(d)) = consumer.next().await {
                let _ = d
                    .nack(BasicNackOptions {
                        multiple: false,
                        requeue: false,
                    })
                    .await;
                counter.fetch_add(1, Ordering::Relaxed);
            }
        });
        n
    }
}

impl Broker {
    /// Delete every queue this test declared, now.
    pub async fn cleanup(&mut self) {
        for q in broker::with_dlqd_queues(std::mem::take(&mut self.created)) {
            // A channel each: a delete that fails closes its channel.
            if let Ok(ch) = self.conn.create_channel().await {
                let _ = ch
                    .queue_delete(q.as_str().into(), QueueDeleteOptions::default())
                    .await;
                let _ = ch.close(200, "done".into()).await;
            }
        }
    }
}

impl Drop for Broker {
    /// Delete every queue the test made, whatever happened to the test.
    fn drop(&mut self) {
        if self.created.is_empty() {
            return;
        }
        let url = self.url.clone();
        let queues = broker::with_dlqd_queues(std::mem::take(&mut self.created));
        let _ = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("runtime");
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
                let _ = conn.close(200, "done".into()).await;
            });
        })
        .join();
    }
}
