//! Test helpers for capture/inspect: a real dead-lettering setup through a dead-letter
//! *exchange* (a fanout DLX bound to a DLQ, work queues that dead-letter into it by
//! reject, TTL expiry and max-length), on the broker fixture
//! ([`crate::support::fixture::Broker`]: the connection, confirmed publishing, counting,
//! cleanup), under unique names, deleted afterwards.

#![allow(dead_code)]

use std::time::Duration;

use futures_lite::StreamExt;
use lapin::options::{
    BasicConsumeOptions, BasicQosOptions, BasicRejectOptions, ExchangeDeclareOptions,
    QueueBindOptions, QueueDeclareOptions,
};
use lapin::types::{AMQPValue, FieldTable, LongString};
use lapin::{BasicProperties, ExchangeKind};

use crate::support::broker::table;
#[allow(unused_imports)] // not every test file uses every re-export
pub use crate::support::broker::{unique, url};
use crate::support::fixture::Broker;

/// Queues delete themselves after this long unused, should a test die before its cleanup.
const EXPIRES_MS: i64 = 10 * 60 * 1000;

/// A dead-letter setup: a fanout DLX bound to a DLQ, and work queues dead-lettering into it.
pub struct Lab {
    /// The fixture: connection, channel, the queues to delete.
    pub b: Broker,
    pub dlx: String,
    pub dlq: String,
}

/// One message as the tests compare it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Seen {
    pub message_id: Option<String>,
    pub body: Vec<u8>,
}

impl Lab {
    /// A DLX and a DLQ (a classic queue, or a quorum queue when `quorum`).
    pub async fn new(prefix: &str, quorum: bool) -> Lab {
        Lab::with_dlq_args(prefix, quorum, &[]).await
    }

    /// A DLX and a quorum DLQ with this `x-delivery-limit` (the broker's default when
    /// `None`: 20 on 4.x, none on 3.x) and no dead-letter exchange of its own: a message
    /// returned past the limit is dropped.
    pub async fn quorum_with_limit(prefix: &str, limit: Option<i64>) -> Lab {
        let extra: Vec<(&str, AMQPValue)> = limit
            .map(|l| ("x-delivery-limit", AMQPValue::LongLongInt(l)))
            .into_iter()
            .collect();
        Lab::with_dlq_args(prefix, true, &extra).await
    }

    async fn with_dlq_args(prefix: &str, quorum: bool, extra: &[(&str, AMQPValue)]) -> Lab {
        let mut b = Broker::connect().await;
        let ch = b.ch.clone();
        let dlx = unique(&format!("{prefix}.dlx"));
        let dlq = unique(&format!("{prefix}.dlq"));
        ch.exchange_declare(
            dlx.as_str().into(),
            ExchangeKind::Fanout,
            // Auto-delete: it goes away with its last binding, i.e. with the DLQ.
            ExchangeDeclareOptions {
                auto_delete: true,
                ..Default::default()
            },
            FieldTable::default(),
        )
        .await
        .expect("declare DLX");
        let mut args = vec![("x-expires", AMQPValue::LongLongInt(EXPIRES_MS))];
        if quorum {
            args.push(("x-queue-type", AMQPValue::LongString("quorum".into())));
        }
        args.extend(extra.iter().cloned());
        ch.queue_declare(
            dlq.as_str().into(),
            QueueDeclareOptions {
                durable: quorum,
                ..Default::default()
            },
            table(&args),
        )
        .await
        .expect("declare DLQ");
        ch.queue_bind(
            dlq.as_str().into(),
            dlx.as_str().into(),
            "".into(),
            QueueBindOptions::default(),
            FieldTable::default(),
        )
        .await
        .expect("bind DLQ");
        b.adopt(&dlq);
        Lab { b, dlx, dlq }
    }

    /// A work queue that dead-letters into the DLX, with extra arguments.
    pub async fn work_queue(&mut self, prefix: &str, extra: &[(&str, AMQPValue)]) -> String {
        let name = unique(prefix);
        let mut args = vec![
            ("x-expires", AMQPValue::LongLongInt(EXPIRES_MS)),
            (
                "x-dead-letter-exchange",
                AMQPValue::LongString(self.dlx.as_str().into()),
            ),
        ];
        args.extend(extra.iter().cloned());
        self.b
            .ch
            .queue_declare(
                name.as_str().into(),
                QueueDeclareOptions::default(),
                table(&args),
            )
            .await
            .expect("declare work queue");
        self.b.adopt(&name);
        name
    }

    /// A plain queue (no dead-lettering), deleted at cleanup.
    pub async fn plain_queue(&mut self, prefix: &str) -> String {
        let name = unique(prefix);
        self.b
            .ch
            .queue_declare(
                name.as_str().into(),
                QueueDeclareOptions::default(),
                table(&[("x-expires", AMQPValue::LongLongInt(EXPIRES_MS))]),
            )
            .await
            .expect("declare queue");
        self.b.adopt(&name);
        name
    }

    /// Publish to a queue through the default exchange and wait for the confirm.
    pub async fn publish(&self, queue: &str, id: &str, body: &[u8], persistent: bool) {
        self.publish_with(queue, id, body, persistent, None).await
    }

    /// Publish with a per-message TTL (`expiration`, in ms).
    pub async fn publish_with(
        &self,
        queue: &str,
        id: &str,
        body: &[u8],
        persistent: bool,
        expiration_ms: Option<u64>,
    ) {
        let mut props = BasicProperties::default()
            .with_message_id(id.into())
            .with_delivery_mode(if persistent { 2 } else { 1 })
            .with_content_type("text/plain".into())
            .with_headers(table(&[(
                "test-header",
                AMQPValue::LongString(LongString::from(format!("h-{id}"))),
            )]));
        if let Some(ms) = expiration_ms {
            props = props.with_expiration(ms.to_string().into());
        }
        self.b.publish(queue, body, props).await;
    }

    /// Publish `n` persistent messages m0.. (body = id) to a queue, confirms pipelined.
    pub async fn publish_many(&self, queue: &str, n: usize) -> Vec<Seen> {
        let ids: Vec<String> = (0..n).map(|i| format!("m{i}")).collect();
        let messages: Vec<(Vec<u8>, BasicProperties)> = ids
            .iter()
            .map(|id| {
                let props = BasicProperties::default()
                    .with_message_id(id.as_str().into())
                    .with_delivery_mode(2);
                (id.clone().into_bytes(), props)
            })
            .collect();
        self.b.publish_all(queue, &messages).await;
        ids.into_iter()
            .map(|id| Seen {
                message_id: Some(id.clone()),
                body: id.into_bytes(),
            })
            .collect()
    }

    /// Consume `n` messages from `queue` and reject them (requeue=false): dead letters.
    pub async fn reject(&self, queue: &str, n: usize) {
        let ch = self.b.conn.create_channel().await.expect("channel");
        ch.basic_qos(1, BasicQosOptions::default())
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
            let d = tokio::time::timeout(Duration::from_secs(10), consumer.next())
                .await
                .expect("a message to reject within 10s")
                .expect("consumer open")
                .expect("delivery");
            d.reject(BasicRejectOptions { requeue: false })
                .await
                .expect("reject");
        }
        ch.close(200, "done".into()).await.expect("close");
    }

    /// Message count of a queue (a passive declare on a throwaway channel).
    pub async fn depth(&self, queue: &str) -> u32 {
        self.b.count(queue).await
    }

    /// Wait until a queue holds exactly `n` messages (dead-lettering is asynchronous).
    pub async fn wait_depth(&self, queue: &str, n: u32) {
        self.b.wait_count(queue, n, Duration::from_secs(15)).await;
    }

    /// Take every message off a queue, in order (a no-ack consumer; the queue must be
    /// still: its depth is read first).
    pub async fn drain(&self, queue: &str) -> Vec<Seen> {
        self.drain_counted(queue)
            .await
            .into_iter()
            .map(|(s, _)| s)
            .collect()
    }

    /// [`Lab::drain`], with each message's `x-delivery-count` (how often a quorum queue
    /// has handed it out before; absent on a first delivery on 4.x).
    pub async fn drain_counted(&self, queue: &str) -> Vec<(Seen, Option<i64>)> {
        let n = self.depth(queue).await as usize;
        let ch = self.b.conn.create_channel().await.expect("channel");
        let mut consumer = ch
            .basic_consume(
                queue.into(),
                "".into(),
                BasicConsumeOptions {
                    no_ack: true,
                    ..Default::default()
                },
                FieldTable::default(),
            )
            .await
            .expect("consume");
        let mut out = Vec::with_capacity(n);
        while out.len() < n {
            let d = tokio::time::timeout(Duration::from_secs(10), consumer.next())
                .await
                .expect("the next message within 10s")
                .expect("consumer open")
                .expect("delivery");
            let count = d
                .properties
                .headers()
                .as_ref()
                .and_then(|h| h.inner().get("x-delivery-count").cloned())
                .map(|v| match v {
                    AMQPValue::LongLongInt(n) => n,
                    AMQPValue::LongInt(n) => i64::from(n),
                    AMQPValue::LongUInt(n) => i64::from(n),
                    other => panic!("x-delivery-count is {other:?}"),
                });
            out.push((
                Seen {
                    message_id: d.properties.message_id().as_ref().map(|s| s.to_string()),
                    body: d.data,
                },
                count,
            ));
        }
        let _ = ch.close(200, "done".into()).await;
        assert_eq!(
            self.depth(queue).await,
            0,
            "{queue} is not empty after the drain"
        );
        out
    }

    /// Delete every queue this lab made (the DLX goes with the DLQ's binding).
    pub async fn cleanup(mut self) {
        self.b.cleanup().await;
    }
}
