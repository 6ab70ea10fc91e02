//! Queues dlqd relies on: whether an exchange exists (a passive declare on a throwaway
//! channel, cached), dlqd's own stage queues (delay and left queues: durable classic
//! queues without TTL or dead-lettering, declared whenever needed), queue depths.

use crate::stage::StageKind;
use std::collections::HashMap;
use std::time::{Duration, Instant};

use lapin::options::{ExchangeDeclareOptions, QueueDeclareOptions, QueueDeleteOptions};
use lapin::types::{AMQPValue, FieldTable, LongString, ShortString};
use lapin::{Channel, Connection};

use crate::broker::error::{ActionFailure, BrokerError, Cause, reply_code};

/// How long an exchange seen to exist is trusted to go on existing.
const EXISTS_TTL: Duration = Duration::from_secs(30);
/// How long an exchange found missing is taken to stay missing: the messages for it in
/// that time fail with the same finding, without a probe (and a broker error) each.
const MISSING_TTL: Duration = Duration::from_secs(5);

/// Caches of what has been checked on this connection.
#[derive(Default)]
pub struct Topology {
    exchanges: HashMap<String, Instant>,
    missing: HashMap<String, (Instant, ActionFailure)>,
}

async fn throwaway(conn: &Connection) -> Result<Channel, ActionFailure> {
    conn.create_channel()
        .await
        .map_err(|e| refused("cannot open a channel", &e))
}

async fn close(channel: Channel) {
    if channel.status().connected() {
        let _ = channel.close(200, "bye".into()).await;
    }
}

fn short(name: &str) -> Result<ShortString, ActionFailure> {
    ShortString::try_new(name).map_err(|_| {
        ActionFailure::new(
            Cause::Invalid,
            format!("queue name longer than 255 bytes: {name}"),
        )
    })
}

/// A topology operation the broker refused (with its code) or that the channel's loss
/// ended (no code).
fn refused(context: &str, e: &lapin::Error) -> ActionFailure {
    let cause = match reply_code(e) {
        Some(code) => Cause::Refused { code },
        None => Cause::ChannelClosed,
    };
    ActionFailure::new(cause, format!("{context}: {e}"))
}

impl Topology {
    /// Ok when `exchange` exists (checked at most every 30 s per exchange). A publish to a
    /// missing exchange would close the publishing channel, failing every publish in flight.
    pub async fn ensure_exchange(
        &mut self,
        conn: &Connection,
        exchange: &str,
    ) -> Result<(), ActionFailure> {
        if exchange.is_empty() {
            return Ok(());
        }
        if let Some(seen) = self.exchanges.get(exchange)
            && seen.elapsed() < EXISTS_TTL
        {
            return Ok(());
        }
        if let Some((seen, f)) = self.missing.get(exchange)
            && seen.elapsed() < MISSING_TTL
        {
            return Err(f.clone());
        }
        let name = ShortString::try_new(exchange).map_err(|_| {
            ActionFailure::new(
                Cause::Invalid,
                format!("exchange name longer than 255 bytes: {exchange}"),
            )
        })?;
        let channel = throwaway(conn).await?;
        let result = channel
            .exchange_declare(
                name,
                lapin::ExchangeKind::Direct,
                ExchangeDeclareOptions {
                    passive: true,
                    ..ExchangeDeclareOptions::default()
                },
                FieldTable::default(),
            )
            .await;
        close(channel).await;
        if let Err(e) = result {
            let f = refused(
                &format!("target exchange '{exchange}' is not available"),
                &e,
            );
            if matches!(f.cause, Cause::Refused { .. }) {
                self.missing
                    .insert(exchange.to_string(), (Instant::now(), f.clone()));
            }
            return Err(f);
        }
        self.missing.remove(exchange);
        self.exchanges.insert(exchange.to_string(), Instant::now());
        Ok(())
    }
}

/// Declare one of dlqd's stage queues (idempotent): durable, classic (a quorum queue
/// would count every hand-back toward its delivery limit), no TTL, no dead-lettering.
pub async fn declare_stage_queue(
    conn: &Connection,
    name: &str,
    kind: StageKind,
) -> Result<(), ActionFailure> {
    let qname = short(name)?;
    let mut args = FieldTable::default();
    let type_name = match kind {
        StageKind::Classic => "classic",
        StageKind::Quorum => {
            args.insert(
                "x-delivery-limit".into(),
                AMQPValue::LongLongInt(crate::stage::QUORUM_STAGE_DELIVERY_LIMIT),
            );
            "quorum"
        }
    };
    args.insert(
        "x-queue-type".into(),
        AMQPValue::LongString(LongString::from(type_name)),
    );
    let channel = throwaway(conn).await?;
    let result = channel
        .queue_declare(qname, QueueDeclareOptions::durable(), args)
        .await;
    close(channel).await;
    result.map_err(|e| refused(&format!("cannot declare queue {name}"), &e))?;
    Ok(())
}

/// The number of ready messages in `queue`; an error when it does not exist.
pub async fn queue_depth(conn: &Connection, queue: &str) -> Result<u32, ActionFailure> {
    let channel = throwaway(conn).await?;
    let result = channel
        .queue_declare(
            short(queue)?,
            QueueDeclareOptions {
                passive: true,
                ..QueueDeclareOptions::default()
            },
            FieldTable::default(),
        )
        .await;
    close(channel).await;
    result
        .map(|q| q.message_count())
        .map_err(|e| refused(&format!("queue '{queue}'"), &e))
}

/// How many messages wait in dlqd's own queues for the DLQ `dlq`: (delay queues, left
/// queue). Passive declares; a queue that does not exist (or cannot be read) holds
/// nothing.
pub async fn stage_depths(conn: &Connection, dlq: &str) -> (u64, u64) {
    let mut delayed = 0u64;
    for q in crate::stage::delay_queues(dlq) {
        delayed += u64::from(queue_depth(conn, &q).await.unwrap_or(0));
    }
    let left = u64::from(
        queue_depth(conn, &crate::stage::left_queue(dlq))
            .await
            .unwrap_or(0),
    );
    (delayed, left)
}

/// Delete a queue (for tools and tests); its message count.
pub async fn delete_queue(conn: &Connection, queue: &str) -> Result<u32, BrokerError> {
    let channel = conn
        .create_channel()
        .await
        .map_err(|e| BrokerError::amqp("cannot open a channel", &e))?;
    let name = ShortString::try_new(queue).map_err(|_| BrokerError::Invalid {
        context: "delete queue".into(),
        reason: "name longer than 255 bytes".into(),
    })?;
    let result = channel
        .queue_delete(name, QueueDeleteOptions::default())
        .await;
    close(channel).await;
    result.map_err(|e| BrokerError::amqp(format!("cannot delete queue {queue}"), &e))
}
