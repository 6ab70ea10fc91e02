//! Browsing a queue without consuming it (for `capture` and `inspect`): take messages
//! without acknowledging them, up to the depth at start, then one nack(multiple,
//! requeue) so the broker puts every message back where it was.
//!
//! Taking: the first message by basic.get, the rest by consumers with a prefetch of
//! one batch: none is acknowledged, so each consumer receives exactly one batch and is
//! cancelled; the next consumer gets the next batch. Three round trips per batch. When
//! a consumer gets nothing for a while (the queue ran dry, or it has a single active
//! consumer that is not ours), the rest is taken by basic.get.
//!
//! Order: on classic queues a requeued message goes back to its original position, so
//! browsing the first N leaves the queue as it was. RabbitMQ 3.10 quorum queues put
//! requeued messages at the back instead (and closing the channel returns them in no
//! particular order): there the browse takes the whole queue and returns it in order
//! with one nack, which restores the order. Quorum queues are recognised by the
//! `x-delivery-count` header they put on every basic.get delivery. On a quorum queue
//! every browse counts as a delivery attempt toward `x-delivery-limit`.
//!
//! Memory: at most one batch waits in the client's buffer; the broker holds the
//! unacknowledged messages until the nack. Messages stay unacknowledged for the whole
//! browse: a browse longer than the broker's `consumer_timeout` (30 min by default)
//! has its channel closed, and the broker requeues them itself.

use std::time::{Duration, Instant};

use futures_lite::StreamExt;
use lapin::options::{
    BasicCancelOptions, BasicConsumeOptions, BasicGetOptions, BasicNackOptions, BasicQosOptions,
    QueueDeclareOptions,
};
use lapin::protocol::{AMQPErrorKind, AMQPSoftError};
use lapin::types::{FieldTable, ShortString};
use lapin::{Channel, Connection, ErrorKind};

use super::connect::{ConnectError, connect, redact, scrub};
use super::convert::message_from_amqp;
use crate::message::Message;

/// Why a browse failed. URLs in it are redacted.
#[derive(Debug, thiserror::Error)]
pub enum BrowseError {
    #[error(transparent)]
    Connect(#[from] ConnectError),
    #[error("queue name is {0} bytes long; AMQP allows at most 255")]
    BadName(usize),
    #[error("queue {queue:?} does not exist on {url}")]
    NotFound { queue: String, url: String },
    #[error("queue {queue:?}: {reason}")]
    Broker { queue: String, reason: String },
    /// The visitor (writing the capture, printing) failed; the browse stopped.
    #[error("{0}")]
    Visit(#[source] std::io::Error),
}

/// What a browse did.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Browsed {
    /// Messages in the queue when the browse started.
    pub depth_at_start: u64,
    /// Messages handed to the visitor.
    pub visited: u64,
    /// Messages taken (and put back); more than `visited` on a quorum queue with a limit.
    pub fetched: u64,
    /// The queue looked like a quorum queue (`x-delivery-count` on its deliveries).
    pub quorum: bool,
}

/// Hand a copy of each of the first `limit` messages of `queue` (all of them when
/// `None`) to `visit`, in queue order, and leave the queue as it was.
///
/// Messages published while the browse runs are not visited. Other consumers of the
/// queue compete for its messages while the browse runs; the browsed ones come back.
pub async fn browse<F>(
    url: &str,
    queue: &str,
    limit: Option<u64>,
    visit: F,
) -> Result<Browsed, BrowseError>
where
    F: FnMut(Message) -> std::io::Result<()>,
{
    let name = ShortString::try_new(queue).map_err(|_| BrowseError::BadName(queue.len()))?;
    let conn = connect(url).await?;
    let result = browse_on(&conn, url, name, limit, visit).await;
    let _ = conn.close(200, "dlqd browse done".into()).await;
    result
}

async fn browse_on<F>(
    conn: &Connection,
    url: &str,
    name: ShortString,
    limit: Option<u64>,
    mut visit: F,
) -> Result<Browsed, BrowseError>
where
    F: FnMut(Message) -> std::io::Result<()>,
{
    let queue = name.as_str().to_string();
    let broker_err = |e: lapin::Error| BrowseError::Broker {
        queue: queue.clone(),
        reason: scrub(url, &e.to_string()),
    };
    let depth = depth(conn, &name).await.map_err(|e| {
        if is_not_found(&e) {
            BrowseError::NotFound {
                queue: queue.clone(),
                url: redact(url),
            }
        } else {
            broker_err(e)
        }
    })?;
    let ch = conn.create_channel().await.map_err(broker_err)?;
    let mut done = Browsed {
        depth_at_start: depth,
        ..Browsed::default()
    };
    let mut consumer_tag = None;
    let fetched = fetch(&ch, &name, limit, &mut done, &mut consumer_tag, &mut visit).await;
    // Put everything back, in order, whatever happened above: stop the consumer (no
    // more deliveries), then nack every delivery of the channel (tag 0 + multiple).
    // A nack that cannot be sent (channel or connection gone) leaves the requeue to
    // the broker.
    let mut put_back = Ok(());
    if let Some(tag) = consumer_tag {
        put_back = ch
            .basic_cancel(tag, BasicCancelOptions::default())
            .await
            .map_err(broker_err);
    }
    if put_back.is_ok() && done.fetched > 0 {
        put_back = ch
            .basic_nack(
                0,
                BasicNackOptions {
                    multiple: true,
                    requeue: true,
                },
            )
            .await
            .map_err(broker_err);
    }
    let _ = ch.close(200, "dlqd browse done".into()).await;
    if put_back.is_ok() && done.fetched > 0 {
        settle(conn, &name, done.depth_at_start, done.fetched).await;
    }
    tracing::debug!(
        queue = %queue,
        depth = done.depth_at_start,
        visited = done.visited,
        fetched = done.fetched,
        quorum = done.quorum,
        "browse finished"
    );
    fetched.map_err(|e| match e {
        FetchError::Broker(e) => broker_err(e),
        FetchError::Visit(e) => BrowseError::Visit(e),
    })?;
    put_back?;
    Ok(done)
}

enum FetchError {
    Broker(lapin::Error),
    Visit(std::io::Error),
}

/// Messages taken per consumer: the prefetch window, so at most this many wait in the
/// client's buffer (256 × the largest message). Three round trips per batch.
const BATCH: u64 = 256;
/// How long to wait for a delivery before deciding the queue ran dry (another
/// consumer took the rest).
const IDLE: Duration = Duration::from_secs(2);

/// Take messages in batches: a consumer with a prefetch of one batch receives exactly
/// that many (none is acknowledged, so no more come), is cancelled, and the next
/// consumer receives the next batch. The deliveries of cancelled consumers stay
/// unacknowledged on the channel. One round trip per batch, not per message.
async fn fetch<F>(
    ch: &Channel,
    name: &ShortString,
    limit: Option<u64>,
    done: &mut Browsed,
    consumer_tag: &mut Option<ShortString>,
    visit: &mut F,
) -> Result<(), FetchError>
where
    F: FnMut(Message) -> std::io::Result<()>,
{
    let wanted = limit.map_or(done.depth_at_start, |l| l.min(done.depth_at_start));
    let mut target = wanted;
    if target == 0 {
        return Ok(());
    }
    // The first message by basic.get: RabbitMQ 3.10 quorum queues mark every basic.get
    // delivery with `x-delivery-count` (consumer deliveries only after a redelivery).
    let Some(first) = ch
        .basic_get(name.clone(), BasicGetOptions { no_ack: false })
        .await
        .map_err(FetchError::Broker)?
    else {
        return Ok(());
    };
    if has_delivery_count(&first.delivery.properties) {
        done.quorum = true;
        target = done.depth_at_start;
        tracing::warn!(
            queue = %name,
            depth = done.depth_at_start,
            "quorum queue: reading all its messages to keep their order; each browse \
             counts as a delivery attempt toward x-delivery-limit"
        );
    }
    take(first.delivery, wanted, done, visit)?;
    while done.fetched < target {
        let batch = (target - done.fetched).min(BATCH);
        ch.basic_qos(
            u16::try_from(batch).unwrap_or(u16::MAX),
            BasicQosOptions { global: false },
        )
        .await
        .map_err(FetchError::Broker)?;
        let mut consumer = ch
            .basic_consume(
                name.clone(),
                "".into(),
                BasicConsumeOptions::default(),
                FieldTable::default(),
            )
            .await
            .map_err(FetchError::Broker)?;
        *consumer_tag = Some(consumer.tag());
        let mut got = 0;
        while got < batch {
            let delivery = match tokio::time::timeout(IDLE, consumer.next()).await {
                Ok(Some(d)) => d.map_err(FetchError::Broker)?,
                // Cancelled by the broker, or nothing more came: someone else took the rest.
                Ok(None) | Err(_) => break,
            };
            got += 1;
            take(delivery, wanted, done, visit)?;
        }
        ch.basic_cancel(consumer.tag(), BasicCancelOptions::default())
            .await
            .map_err(FetchError::Broker)?;
        *consumer_tag = None;
        if got < batch {
            // Nothing more came: the queue ran dry (another consumer took the rest), or
            // it does not deliver to this consumer (x-single-active-consumer held by
            // another). basic.get tells the two apart and works in both cases.
            while done.fetched < target {
                match ch
                    .basic_get(name.clone(), BasicGetOptions { no_ack: false })
                    .await
                    .map_err(FetchError::Broker)?
                {
                    Some(got) => take(got.delivery, wanted, done, visit)?,
                    None => break,
                }
            }
            break;
        }
    }
    Ok(())
}

/// Wait until the broker has put the browsed messages back, i.e. the queue holds at
/// least as many messages as at the start: a requeue is asynchronous, and a browse that
/// returned before it finished would let the next look at the queue see it short.
/// Bounded: competing consumers may keep the queue from ever getting back to its depth;
/// then it logs and returns (the messages are with the broker either way).
async fn settle(conn: &Connection, name: &ShortString, depth_at_start: u64, fetched: u64) {
    let limit = Duration::from_secs(10).max(Duration::from_millis(fetched));
    let started = Instant::now();
    let mut seen = 0;
    while started.elapsed() < limit {
        match depth(conn, name).await {
            Ok(n) if n >= depth_at_start => return,
            Ok(n) => seen = n,
            Err(e) => {
                tracing::warn!(queue = %name, error = %e, "cannot check that the browsed messages are back");
                return;
            }
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    tracing::warn!(
        queue = %name,
        depth = seen,
        depth_at_start,
        "the queue holds fewer messages than when the browse started (another consumer?)"
    );
}

/// Count a delivery, and hand it to the visitor while fewer than `wanted` have been.
fn take<F>(
    delivery: lapin::message::Delivery,
    wanted: u64,
    done: &mut Browsed,
    visit: &mut F,
) -> Result<(), FetchError>
where
    F: FnMut(Message) -> std::io::Result<()>,
{
    done.fetched += 1;
    if done.visited < wanted {
        let message = message_from_amqp(
            delivery.exchange.as_str(),
            delivery.routing_key.as_str(),
            &delivery.properties,
            delivery.data,
        );
        visit(message).map_err(FetchError::Visit)?;
        done.visited += 1;
    }
    Ok(())
}

fn has_delivery_count(p: &lapin::BasicProperties) -> bool {
    p.headers()
        .as_ref()
        .is_some_and(|h| h.contains_key("x-delivery-count"))
}

/// The queue's message count, by a passive declare on a throwaway channel (a missing
/// queue closes the channel it is asked on).
async fn depth(conn: &Connection, name: &ShortString) -> Result<u64, lapin::Error> {
    let ch = conn.create_channel().await?;
    let q = ch
        .queue_declare(
            name.clone(),
            QueueDeclareOptions {
                passive: true,
                ..QueueDeclareOptions::default()
            },
            FieldTable::default(),
        )
        .await?;
    let _ = ch.close(200, "dlqd probe done".into()).await;
    Ok(u64::from(q.message_count()))
}

fn is_not_found(e: &lapin::Error) -> bool {
    matches!(
        e.kind(),
        ErrorKind::ProtocolError(p) if matches!(p.kind(), AMQPErrorKind::Soft(AMQPSoftError::NOTFOUND))
    )
}
