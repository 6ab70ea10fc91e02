//! Publishing with confirms on a channel of its own: `mandatory` set, many publishes in
//! flight, each resolving to success or to the broker's reason for refusing it. A channel
//! the broker closed (e.g. 404 on a missing exchange) is reopened on the next publish.

use std::future::Future;
use std::pin::Pin;

use lapin::options::{BasicPublishOptions, ConfirmSelectOptions};
use lapin::{Channel, Confirmation, Connection};

use crate::broker::convert::properties_to_amqp;
use crate::broker::error::{ActionFailure, BrokerError};
use crate::broker::frame::check_fits;
use crate::message::Message;

/// A publish in flight: resolves when the broker has confirmed it (or refused it).
pub type Confirm = Pin<Box<dyn Future<Output = Result<(), ActionFailure>> + Send>>;

/// A confirm-mode channel for publishing.
pub struct Publisher {
    channel: Channel,
}

async fn open(conn: &Connection) -> Result<Channel, lapin::Error> {
    let channel = conn.create_channel().await?;
    channel
        .confirm_select(ConfirmSelectOptions::default())
        .await?;
    Ok(channel)
}

/// What the broker said about one publish of a message of `size` bytes.
async fn confirmed(confirm: lapin::PublisherConfirm, size: u64) -> Result<(), ActionFailure> {
    match confirm.await {
        Ok(Confirmation::Ack(None)) => Ok(()),
        Ok(Confirmation::Ack(Some(returned))) => Err(ActionFailure::new(format!(
            "returned by the broker: {} {}",
            returned.reply_code, returned.reply_text
        ))),
        Ok(Confirmation::Nack(_)) => Err(ActionFailure::new("nacked by the broker".to_string())),
        Ok(Confirmation::NotRequested) => Err(ActionFailure::new(
            "the broker did not confirm the publish".to_string(),
        )),
        Err(e) => Err(failure("channel closed", &e, size)),
    }
}

/// A publish the broker refused with an error (the channel is closed with it). A message
/// over the broker's `max_message_size` (16 MiB by default since RabbitMQ 4.0, 128 MiB
/// before) can never be published there as it is: it is marked too large, so that the
/// daemon leaves the delivery itself on the DLQ instead of trying to copy it.
/// The broker names the size it refused ("message size N is larger than configured max
/// size M"): a message of another size on the channel was refused with it, not for
/// itself, and is marked to be sent again.
fn failure(context: &str, e: &lapin::Error, size: u64) -> ActionFailure {
    let text = format!("{context}: {e}");
    match refused_size(e) {
        Some(refused) if refused == size => ActionFailure::too_large(text),
        Some(_) => ActionFailure::neighbour(text),
        None => ActionFailure::new(text),
    }
}

/// The size in a 406 "message size N is larger than configured max size M".
fn refused_size(e: &lapin::Error) -> Option<u64> {
    use lapin::protocol::{AMQPErrorKind, AMQPSoftError};
    let lapin::ErrorKind::ProtocolError(p) = e.kind() else {
        return None;
    };
    if !matches!(
        p.kind(),
        AMQPErrorKind::Soft(AMQPSoftError::PRECONDITIONFAILED)
    ) {
        return None;
    }
    let text = p.get_message().as_str();
    let rest = text.split_once("message size ")?.1;
    let (n, tail) = rest.split_once(' ')?;
    tail.starts_with("is larger than configured max size")
        .then(|| n.parse().ok())
        .flatten()
}

fn failed(reason: String) -> Confirm {
    Box::pin(async move { Err(ActionFailure::new(reason)) })
}

impl Publisher {
    pub async fn open(conn: &Connection) -> Result<Self, BrokerError> {
        let channel = open(conn)
            .await
            .map_err(|e| BrokerError::amqp("cannot open the publishing channel", &e))?;
        Ok(Publisher { channel })
    }

    /// Publish `message` (its properties and body) to `exchange` with `routing_key`,
    /// mandatory. The returned future resolves when the broker confirms it.
    pub async fn publish(
        &mut self,
        conn: &Connection,
        exchange: &str,
        routing_key: &str,
        message: &Message,
    ) -> Confirm {
        if !self.channel.status().connected() {
            match open(conn).await {
                Ok(channel) => self.channel = channel,
                Err(e) => return failed(format!("cannot reopen the publishing channel: {e}")),
            }
        }
        // A content header over frame_max would make the broker close the connection.
        if let Err(reason) = check_fits(&message.properties, conn.configuration().frame_max()) {
            return Box::pin(async move { Err(ActionFailure::too_large(reason)) });
        }
        let props = match properties_to_amqp(&message.properties) {
            Ok(p) => p,
            Err(e) => return failed(format!("cannot publish: {e}")),
        };
        let (Ok(ex), Ok(rk)) = (
            lapin::types::ShortString::try_new(exchange),
            lapin::types::ShortString::try_new(routing_key),
        ) else {
            return failed("exchange or routing key longer than 255 bytes".into());
        };
        let options = BasicPublishOptions {
            mandatory: true,
            ..BasicPublishOptions::default()
        };
        // The first poll of basic_publish queues the frames and numbers the confirm, in
        // call order; what is left (the socket write, the confirm) is awaited later, so
        // that many publishes are in flight without a thread round trip each.
        let channel = self.channel.clone();
        let body = message.body.clone();
        let size = body.len() as u64;
        let mut send =
            Box::pin(async move { channel.basic_publish(ex, rk, options, &body, props).await });
        match futures_lite::future::poll_once(&mut send).await {
            Some(Err(e)) => Box::pin(std::future::ready(Err(failure(
                "publish refused",
                &e,
                size,
            )))),
            Some(Ok(confirm)) => Box::pin(confirmed(confirm, size)),
            None => Box::pin(async move {
                match send.await {
                    Ok(confirm) => confirmed(confirm, size).await,
                    Err(e) => Err(failure("publish refused", &e, size)),
                }
            }),
        }
    }

    pub async fn close(&self) {
        if self.channel.status().connected() {
            let _ = self.channel.close(200, "bye".into()).await;
        }
    }
}
