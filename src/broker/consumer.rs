//! Consuming the DLQ: a channel of its own with `basic_qos(prefetch)` and manual acks;
//! deliveries come out as [`Delivery`] (a plain [`Message`] and its tag).

use futures_lite::StreamExt;
use lapin::options::{BasicAckOptions, BasicCancelOptions, BasicConsumeOptions, BasicQosOptions};
use lapin::types::{FieldTable, ShortString};
use lapin::{Channel, Connection, Consumer};

use crate::broker::convert::message_from_amqp;
use crate::broker::error::BrokerError;
use crate::message::Message;

/// One message taken from the DLQ, not yet acknowledged.
#[derive(Debug)]
pub struct Delivery {
    /// The delivery tag on the consuming channel.
    pub tag: u64,
    pub redelivered: bool,
    pub message: Message,
}

/// A consumer of one queue on a channel of its own.
pub struct DlqConsumer {
    channel: Channel,
    consumer: Consumer,
    queue: String,
}

impl DlqConsumer {
    /// Start consuming `queue` with at most `prefetch` unacknowledged deliveries.
    pub async fn start(conn: &Connection, queue: &str, prefetch: u16) -> Result<Self, BrokerError> {
        let context = format!("cannot consume queue '{queue}'");
        let name = ShortString::try_new(queue).map_err(|_| BrokerError::Invalid {
            context: context.clone(),
            reason: "queue name longer than 255 bytes".into(),
        })?;
        let channel = conn
            .create_channel()
            .await
            .map_err(|e| BrokerError::amqp(&context, &e))?;
        channel
            .basic_qos(prefetch.max(1), BasicQosOptions::default())
            .await
            .map_err(|e| BrokerError::amqp(&context, &e))?;
        let consumer = channel
            .basic_consume(
                name,
                ShortString::from(""),
                BasicConsumeOptions::default(),
                FieldTable::default(),
            )
            .await
            .map_err(|e| BrokerError::amqp(&context, &e))?;
        Ok(DlqConsumer {
            channel,
            consumer,
            queue: queue.to_string(),
        })
    }

    /// The next delivery; `None` when the consumer was cancelled.
    pub async fn next(&mut self) -> Option<Result<Delivery, BrokerError>> {
        let item = self.consumer.next().await?;
        Some(match item {
            Ok(d) => Ok(Delivery {
                tag: d.delivery_tag,
                redelivered: d.redelivered,
                message: message_from_amqp(
                    d.exchange.as_str(),
                    d.routing_key.as_str(),
                    &d.properties,
                    d.data,
                ),
            }),
            Err(e) => Err(BrokerError::amqp(
                format!("consumer of '{}' failed", self.queue),
                &e,
            )),
        })
    }

    /// Acknowledge every delivery up to and including `tag`.
    /// The ack frame is queued (in order) on the first poll; its write is not awaited,
    /// so a lost connection shows up on the consumer instead.
    pub async fn ack_upto(&self, tag: u64) -> Result<(), BrokerError> {
        let ack = self
            .channel
            .basic_ack(tag, BasicAckOptions { multiple: true });
        match futures_lite::future::poll_once(ack).await {
            Some(Err(e)) => Err(BrokerError::amqp("ack failed", &e)),
            Some(Ok(())) | None => Ok(()),
        }
    }

    /// Acknowledge the one delivery `tag` (used above a delivery held unacknowledged).
    pub async fn ack_one(&self, tag: u64) -> Result<(), BrokerError> {
        self.channel
            .basic_ack(tag, BasicAckOptions { multiple: false })
            .await
            .map_err(|e| BrokerError::amqp("ack failed", &e))
    }

    /// Ask the broker to stop delivering; deliveries already sent stay unacknowledged.
    pub async fn cancel(&self) -> Result<(), BrokerError> {
        self.channel
            .basic_cancel(self.consumer.tag(), BasicCancelOptions::default())
            .await
            .map_err(|e| BrokerError::amqp("cancel failed", &e))
    }

    /// Close the channel: every unacknowledged delivery goes back to the queue, in order.
    pub async fn close(self) {
        if self.channel.status().connected() {
            let _ = self.channel.close(200, "pass done".into()).await;
        }
    }
}
