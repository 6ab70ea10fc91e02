//! Browsing a queue without consuming it (for `capture` and `inspect`), by one of two
//! methods, chosen by what the broker does with a returned message:
//!
//! - **Return** (classic queues; quorum queues on RabbitMQ 4.3 and later): take messages
//!   without acknowledging them, up to the depth at start, then one nack(multiple,
//!   requeue): the broker puts every message back at the head, in order. Measured on
//!   3.10.8, 4.0.5 and 4.3.6.
//! - **Move** (quorum queues where every return counts toward `x-delivery-limit`:
//!   RabbitMQ 3.x and 4.0-4.2): returning would walk each message toward the limit, past
//!   which the broker drops it (no dead-letter exchange) or dead-letters it (seen on
//!   4.0.5: the 21st capture of a default quorum queue emptied it). Instead each message
//!   is re-published, unchanged but for the broker's own `x-delivery-count` /
//!   `x-acquired-count`, to the queue's tail with a publisher confirm, and only then
//!   acknowledged: the whole queue goes round once, so its order is kept (messages that
//!   arrive meanwhile end up before it), and every delivery count starts again. A crash
//!   mid-way can duplicate a message, never lose one.
//!
//! Which one: the first message is taken by basic.get. A quorum queue marks a
//! redelivery with `x-delivery-count`; 4.3 adds `x-acquired-count` (returns by nack no
//! longer count there). A first message without either is handed back once (a probe)
//! and taken again: if the redelivery carries `x-delivery-count`, returns count here.
//! lapin does not expose the server's version (connection.start's properties), so the
//! choice follows the broker's behaviour, not its version number.
//!
//! Taking: the rest by consumers with a prefetch of one batch. Return: none is
//! acknowledged, so each consumer receives exactly one batch and is cancelled; the next
//! consumer gets the next batch. When a consumer gets nothing for a while (the queue ran
//! dry, or it has a single active consumer that is not ours), the rest is taken by
//! basic.get. Move: each batch is re-published, confirmed and acknowledged (multiple)
//! before the next; a delivery that is one of the copies (another consumer took
//! originals) ends the round.
//!
//! After either, the queue's depth is checked against the depth at the start
//! ([`Browsed::intact`]); the commands report what was checked, not what was hoped.
//!
//! Memory: at most one batch waits in the client's buffer; the broker holds the
//! unacknowledged messages until the nack. Messages stay unacknowledged for the whole
//! browse (Return): a browse longer than the broker's `consumer_timeout` (30 min by
//! default) has its channel closed, and the broker requeues them itself.

use std::time::{Duration, Instant};

use futures_lite::StreamExt;
use lapin::options::{
    BasicAckOptions, BasicCancelOptions, BasicConsumeOptions, BasicGetOptions, BasicNackOptions,
    BasicPublishOptions, BasicQosOptions, ConfirmSelectOptions, QueueDeclareOptions,
};
use lapin::protocol::{AMQPErrorKind, AMQPSoftError};
use lapin::types::{FieldTable, ShortString};
use lapin::{Channel, Confirmation, Connection, ErrorKind};

use super::connect::{ConnectError, connect_any, redact, scrub};
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
    /// A message lapin cannot parse (see [`crate::broker::error::unreadable`]).
    #[error("queue {queue:?}: {}", crate::broker::error::unreadable(reason))]
    Unreadable { queue: String, reason: String },
    /// The visitor (writing the capture, printing) failed; the browse stopped.
    #[error(transparent)]
    Visit(std::io::Error),
}

/// How the browse read the queue (see the module doc).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Method {
    /// Taken unacknowledged and handed back with one nack.
    #[default]
    Return,
    /// Re-published to the tail with a confirm, then acknowledged: a quorum queue whose
    /// returns count toward its delivery limit.
    Move,
}

/// What a browse did.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Browsed {
    /// Messages in the queue when the browse started.
    pub depth_at_start: u64,
    /// Messages handed to the visitor.
    pub visited: u64,
    /// Messages taken (and put back or moved); more than `visited` when moving with a limit.
    pub fetched: u64,
    /// How the messages were read and put back.
    pub method: Method,
    /// Checked after the browse: the queue held at least `depth_at_start` messages again.
    /// False when another consumer took some meanwhile, or the broker dropped some.
    pub intact: bool,
    /// The queue's depth when the check ended.
    pub depth_after: u64,
}

/// Hand a copy of each of the first `limit` messages of `queue` (all of them when
/// `None`) to `visit`, in queue order, and put them back (see the module doc).
///
/// Messages published while the browse runs are not visited. Other consumers of the
/// queue compete for its messages while the browse runs; the browsed ones come back.
pub async fn browse<F>(
    urls: &[String],
    queue: &str,
    limit: Option<u64>,
    visit: F,
) -> Result<Browsed, BrowseError>
where
    F: FnMut(Message) -> std::io::Result<()>,
{
    let name = ShortString::try_new(queue).map_err(|_| BrowseError::BadName(queue.len()))?;
    let (conn, i) = connect_any(urls, 0).await?;
    let url = urls[i].as_str();
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
    let broker_err = |e: lapin::Error| match e.kind() {
        ErrorKind::ParsingError(_) => BrowseError::Unreadable {
            queue: queue.clone(),
            reason: e.to_string(),
        },
        _ => BrowseError::Broker {
            queue: queue.clone(),
            reason: scrub(url, &e.to_string()),
        },
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
        intact: true,
        depth_after: depth,
        ..Browsed::default()
    };
    let wanted = limit.map_or(depth, |l| l.min(depth));
    let first = if wanted == 0 {
        None
    } else {
        choose(&ch, &name, &mut done).await.map_err(|e| match e {
            FetchError::Broker(e) => broker_err(e),
            FetchError::Visit(e) => BrowseError::Visit(e),
            FetchError::Refused(reason) => BrowseError::Broker {
                queue: queue.clone(),
                reason,
            },
            FetchError::Unreadable => BrowseError::Unreadable {
                queue: queue.clone(),
                reason: "the connection failed while the message was read".into(),
            },
        })?
    };
    let Some(first) = first else {
        let _ = ch.close(200, "dlqd browse done".into()).await;
        return Ok(done);
    };
    let outcome = match done.method {
        Method::Return => return_all(conn, &ch, &name, first, wanted, &mut done, &mut visit).await,
        Method::Move => move_all(conn, &ch, &name, first, wanted, &mut done, &mut visit).await,
    };
    let _ = ch.close(200, "dlqd browse done".into()).await;
    if outcome.is_ok() && done.fetched > 0 {
        (done.intact, done.depth_after) =
            settle(conn, &name, done.depth_at_start, done.fetched).await;
    }
    tracing::debug!(
        queue = %queue,
        depth = done.depth_at_start,
        visited = done.visited,
        fetched = done.fetched,
        method = ?done.method,
        intact = done.intact,
        "browse finished"
    );
    outcome.map_err(|e| match e {
        FetchError::Broker(e) => broker_err(e),
        FetchError::Visit(e) => BrowseError::Visit(e),
        FetchError::Refused(reason) => BrowseError::Broker {
            queue: queue.clone(),
            reason,
        },
        FetchError::Unreadable => BrowseError::Unreadable {
            queue: queue.clone(),
            reason: "the connection failed while the message was read".into(),
        },
    })?;
    Ok(done)
}

enum FetchError {
    Broker(lapin::Error),
    Visit(std::io::Error),
    /// The queue could not be read safely; nothing was lost (the reason says what to do).
    Refused(String),
    /// A `basic.get` whose channel died under it: lapin never resolves one whose
    /// message it could not parse (a short string that is not UTF-8).
    Unreadable,
}

impl From<lapin::Error> for FetchError {
    fn from(e: lapin::Error) -> Self {
        FetchError::Broker(e)
    }
}

/// Messages taken per consumer: the prefetch window, so at most this many wait in the
/// client's buffer (256 × the largest message). Three round trips per batch.
const BATCH: u64 = 256;
/// How long to wait for a delivery before deciding the queue ran dry (another
/// consumer took the rest).
const IDLE: Duration = Duration::from_secs(2);
/// Probes of a first message before giving up (other consumers keep taking it).
const PROBES: usize = 3;

/// Take the first message and decide the method (module doc): returns it, still
/// unacknowledged, or `None` when the queue turned out empty.
async fn choose(
    ch: &Channel,
    name: &ShortString,
    done: &mut Browsed,
) -> Result<Option<lapin::message::Delivery>, FetchError> {
    for _ in 0..PROBES {
        let Some(first) = get(ch, name).await? else {
            return Ok(None);
        };
        match returns_count(&first.properties) {
            Some(counts) => {
                done.method = if counts { Method::Move } else { Method::Return };
                return Ok(Some(first));
            }
            None => {
                // Fresh: hand it back once and look at the redelivery.
                ch.basic_nack(
                    first.delivery_tag,
                    BasicNackOptions {
                        multiple: false,
                        requeue: true,
                    },
                )
                .await?;
                let Some(again) = get(ch, name).await? else {
                    return Ok(None);
                };
                if !again.redelivered {
                    // Another consumer took the first one; try again with this one.
                    ch.basic_nack(
                        again.delivery_tag,
                        BasicNackOptions {
                            multiple: false,
                            requeue: true,
                        },
                    )
                    .await?;
                    continue;
                }
                done.method = match returns_count(&again.properties) {
                    Some(true) => Method::Move,
                    _ => Method::Return,
                };
                return Ok(Some(again));
            }
        }
    }
    Err(FetchError::Refused(format!(
        "cannot tell whether a return counts toward a delivery limit here: another consumer \
         took the first message {PROBES} times; stop the queue's consumers (e.g. dlqd run) \
         and try again"
    )))
}

/// From a delivery's headers: `Some(true)` when it comes from a quorum queue where a
/// return counts toward the delivery limit, `Some(false)` from one where a nack does
/// not (4.3+: `x-acquired-count`), `None` when the delivery does not say (a first
/// delivery on 4.x, or a classic queue).
fn returns_count(p: &lapin::BasicProperties) -> Option<bool> {
    let h = p.headers().as_ref()?;
    if h.contains_key("x-acquired-count") {
        return Some(false);
    }
    h.contains_key("x-delivery-count").then_some(true)
}

/// One `basic.get`. lapin 4.12 never resolves a get whose message it cannot parse (the
/// connection is dropped, the promise forgotten): the channel's state is watched too, so
/// that the browse ends with [`FetchError::Unreadable`] instead of hanging.
async fn get(
    ch: &Channel,
    name: &ShortString,
) -> Result<Option<lapin::message::Delivery>, FetchError> {
    let get = ch.basic_get(name.clone(), BasicGetOptions { no_ack: false });
    let mut get = std::pin::pin!(get);
    loop {
        tokio::select! {
            r = &mut get => return Ok(r?.map(|m| m.delivery)),
            () = tokio::time::sleep(std::time::Duration::from_millis(200)) => {
                if !ch.status().connected() {
                    return Err(FetchError::Unreadable);
                }
            }
        }
    }
}

/// The Return method: take up to `wanted`, then hand every delivery back with one nack.
async fn return_all<F>(
    _conn: &Connection,
    ch: &Channel,
    name: &ShortString,
    first: lapin::message::Delivery,
    wanted: u64,
    done: &mut Browsed,
    visit: &mut F,
) -> Result<(), FetchError>
where
    F: FnMut(Message) -> std::io::Result<()>,
{
    let mut consumer_tag = None;
    let fetched = fetch(ch, name, first, wanted, done, &mut consumer_tag, visit).await;
    // Put everything back, in order, whatever happened above: stop the consumer (no
    // more deliveries), then nack every delivery of the channel (tag 0 + multiple).
    // A nack that cannot be sent (channel or connection gone) leaves the requeue to
    // the broker.
    let mut put_back = Ok(());
    if let Some(tag) = consumer_tag {
        put_back = ch
            .basic_cancel(tag, BasicCancelOptions::default())
            .await
            .map_err(FetchError::Broker);
    }
    if put_back.is_ok() {
        put_back = ch
            .basic_nack(
                0,
                BasicNackOptions {
                    multiple: true,
                    requeue: true,
                },
            )
            .await
            .map_err(FetchError::Broker);
    }
    fetched?;
    put_back
}

/// Take messages in batches: a consumer with a prefetch of one batch receives exactly
/// that many (none is acknowledged, so no more come), is cancelled, and the next
/// consumer receives the next batch. The deliveries of cancelled consumers stay
/// unacknowledged on the channel. One round trip per batch, not per message.
async fn fetch<F>(
    ch: &Channel,
    name: &ShortString,
    first: lapin::message::Delivery,
    wanted: u64,
    done: &mut Browsed,
    consumer_tag: &mut Option<ShortString>,
    visit: &mut F,
) -> Result<(), FetchError>
where
    F: FnMut(Message) -> std::io::Result<()>,
{
    let target = wanted;
    take(&first, wanted, done, visit)?;
    while done.fetched < target {
        let batch = (target - done.fetched).min(BATCH);
        ch.basic_qos(
            u16::try_from(batch).unwrap_or(u16::MAX),
            BasicQosOptions { global: false },
        )
        .await?;
        let mut consumer = ch
            .basic_consume(
                name.clone(),
                "".into(),
                BasicConsumeOptions::default(),
                FieldTable::default(),
            )
            .await?;
        *consumer_tag = Some(consumer.tag());
        let mut got = 0;
        while got < batch {
            let delivery = match tokio::time::timeout(IDLE, consumer.next()).await {
                Ok(Some(d)) => d?,
                // Cancelled by the broker, or nothing more came: someone else took the rest.
                Ok(None) | Err(_) => break,
            };
            got += 1;
            take(&delivery, wanted, done, visit)?;
        }
        ch.basic_cancel(consumer.tag(), BasicCancelOptions::default())
            .await?;
        *consumer_tag = None;
        if got < batch {
            // Nothing more came: the queue ran dry (another consumer took the rest), or
            // it does not deliver to this consumer (x-single-active-consumer held by
            // another). basic.get tells the two apart and works in both cases.
            while done.fetched < target {
                match get(ch, name).await? {
                    Some(d) => take(&d, wanted, done, visit)?,
                    None => break,
                }
            }
            break;
        }
    }
    Ok(())
}

/// The Move method: every message of the queue (as deep as at the start) is visited
/// while fewer than `wanted` have been, re-published to the tail with a confirm, and
/// acknowledged once its copy is confirmed. On any failure the deliveries not yet moved
/// are handed back (nack) and the browse fails: nothing is lost.
async fn move_all<F>(
    conn: &Connection,
    ch: &Channel,
    name: &ShortString,
    first: lapin::message::Delivery,
    wanted: u64,
    done: &mut Browsed,
    visit: &mut F,
) -> Result<(), FetchError>
where
    F: FnMut(Message) -> std::io::Result<()>,
{
    tracing::info!(
        queue = %name,
        depth = done.depth_at_start,
        "quorum queue whose returns count toward its delivery limit: reading it by moving \
         each message to its tail (re-published with a confirm, then acknowledged); the \
         order is kept and delivery counts start again"
    );
    let publisher = conn.create_channel().await?;
    publisher
        .confirm_select(ConfirmSelectOptions::default())
        .await?;
    let mut moved = std::collections::HashSet::new();
    let result = move_batches(ch, &publisher, name, first, wanted, done, visit, &mut moved).await;
    if result.is_err() {
        // Hand back whatever is still unacknowledged on the channel.
        let _ = ch
            .basic_nack(
                0,
                BasicNackOptions {
                    multiple: true,
                    requeue: true,
                },
            )
            .await;
    }
    let _ = publisher.close(200, "dlqd browse done".into()).await;
    result
}

#[allow(clippy::too_many_arguments)]
async fn move_batches<F>(
    ch: &Channel,
    publisher: &Channel,
    name: &ShortString,
    first: lapin::message::Delivery,
    wanted: u64,
    done: &mut Browsed,
    visit: &mut F,
    moved: &mut std::collections::HashSet<u64>,
) -> Result<(), FetchError>
where
    F: FnMut(Message) -> std::io::Result<()>,
{
    let target = done.depth_at_start;
    let mut batch = vec![first];
    loop {
        // Fill the batch: a consumer with a prefetch of exactly what is wanted receives
        // that many and no more (cancelled before anything is acknowledged).
        let want = BATCH
            .min(target.saturating_sub(done.fetched))
            .saturating_sub(batch.len() as u64);
        let mut ran_dry = false;
        if want > 0 {
            ch.basic_qos(want as u16, BasicQosOptions { global: false })
                .await?;
            let mut consumer = ch
                .basic_consume(
                    name.clone(),
                    "".into(),
                    BasicConsumeOptions::default(),
                    FieldTable::default(),
                )
                .await?;
            let mut got = 0;
            while got < want {
                match tokio::time::timeout(IDLE, consumer.next()).await {
                    Ok(Some(d)) => batch.push(d?),
                    Ok(None) | Err(_) => {
                        ran_dry = true;
                        break;
                    }
                }
                got += 1;
            }
            ch.basic_cancel(consumer.tag(), BasicCancelOptions::default())
                .await?;
        }
        // A copy of ours back at the head: the round is complete (others took originals).
        let mut round_closed = false;
        if let Some(at) = batch.iter().position(|d| moved.contains(&fingerprint(d))) {
            round_closed = true;
            for d in batch.split_off(at) {
                ch.basic_nack(
                    d.delivery_tag,
                    BasicNackOptions {
                        multiple: false,
                        requeue: true,
                    },
                )
                .await?;
            }
        }
        let Some(last) = batch.last().map(|d| d.delivery_tag) else {
            break;
        };
        let mut confirms = Vec::with_capacity(batch.len());
        for d in &batch {
            take(d, wanted, done, visit)?;
            moved.insert(fingerprint(d));
            let confirm = publisher
                .basic_publish(
                    "".into(),
                    name.clone(),
                    BasicPublishOptions {
                        mandatory: true,
                        ..BasicPublishOptions::default()
                    },
                    &d.data,
                    copy_properties(&d.properties),
                )
                .await?;
            confirms.push(confirm);
        }
        for c in confirms {
            match c.await? {
                Confirmation::Ack(None) => {}
                other => {
                    return Err(FetchError::Refused(format!(
                        "the broker did not take a moved message back ({other:?}); the \
                         messages not yet moved were handed back"
                    )));
                }
            }
        }
        ch.basic_ack(last, BasicAckOptions { multiple: true })
            .await?;
        batch.clear();
        if ran_dry || round_closed || done.fetched >= target {
            break;
        }
    }
    Ok(())
}

/// The properties of a moved copy: the delivery's, without the broker's delivery
/// annotations (a copy is a new message; the broker counts its deliveries afresh).
fn copy_properties(p: &lapin::BasicProperties) -> lapin::BasicProperties {
    let mut p = p.clone();
    if let Some(h) = p.headers().as_ref()
        && (h.contains_key("x-delivery-count") || h.contains_key("x-acquired-count"))
    {
        let mut kept = FieldTable::default();
        for (k, v) in h.inner() {
            if k.as_str() != "x-delivery-count" && k.as_str() != "x-acquired-count" {
                kept.insert(k.clone(), v.clone());
            }
        }
        p = p.with_headers(kept);
    }
    p
}

/// A hash of a message's body and properties (without the delivery annotations): how
/// the move recognises its own copies.
fn fingerprint(d: &lapin::message::Delivery) -> u64 {
    use std::hash::{Hash, Hasher};
    let mut h = std::collections::hash_map::DefaultHasher::new();
    d.data.hash(&mut h);
    format!("{:?}", copy_properties(&d.properties)).hash(&mut h);
    h.finish()
}

/// Wait until the broker has put the browsed messages back, i.e. the queue holds at
/// least as many messages as at the start: a requeue is asynchronous, and a browse that
/// returned before it finished would let the next look at the queue see it short.
/// Bounded: competing consumers may keep the queue from ever getting back to its depth;
/// then it logs and returns (the messages are with the broker either way).
async fn settle(
    conn: &Connection,
    name: &ShortString,
    depth_at_start: u64,
    fetched: u64,
) -> (bool, u64) {
    let limit = Duration::from_secs(10).max(Duration::from_millis(fetched));
    let started = Instant::now();
    let mut seen = 0;
    while started.elapsed() < limit {
        match depth(conn, name).await {
            Ok(n) if n >= depth_at_start => return (true, n),
            Ok(n) => seen = n,
            Err(e) => {
                tracing::warn!(queue = %name, error = %e, "cannot check that the browsed messages are back");
                return (false, seen);
            }
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    (false, seen)
}

/// Count a delivery, and hand it to the visitor while fewer than `wanted` have been.
fn take<F>(
    delivery: &lapin::message::Delivery,
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
            delivery.data.clone(),
        );
        visit(message).map_err(FetchError::Visit)?;
        done.visited += 1;
    }
    Ok(())
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
