//! Queues dlqd relies on but does not consume: whether a target queue exists (a passive
//! declare on a throwaway channel, cached), the durable delay queues, queue depths.

use std::collections::{HashMap, HashSet};
use std::time::{Duration, Instant};

use lapin::options::{ExchangeDeclareOptions, QueueDeclareOptions, QueueDeleteOptions};
use lapin::types::{AMQPValue, FieldTable, LongString, ShortString};
use lapin::{Channel, Connection};

use crate::broker::error::{ActionFailure, BrokerError};
use crate::message::DELAY_QUEUE_PREFIX;

/// How long a queue seen to exist is trusted to go on existing.
const EXISTS_TTL: Duration = Duration::from_secs(30);

/// The delay queue for `delay` in front of `queue`: `dlqd.delay.<ms>ms.<queue>`.
pub fn delay_queue_name(delay: Duration, queue: &str) -> String {
    format!("{DELAY_QUEUE_PREFIX}{}ms.{queue}", delay.as_millis())
}

/// Caches of what has been checked or declared on this connection.
#[derive(Default)]
pub struct Topology {
    exists: HashMap<String, Instant>,
    exchanges: HashMap<String, Instant>,
    delay_queues: HashSet<String>,
}

async fn throwaway(conn: &Connection) -> Result<Channel, ActionFailure> {
    conn.create_channel()
        .await
        .map_err(|e| ActionFailure::new(format!("cannot open a channel: {e}")))
}

async fn close(channel: Channel) {
    if channel.status().connected() {
        let _ = channel.close(200, "bye".into()).await;
    }
}

fn short(name: &str) -> Result<ShortString, ActionFailure> {
    ShortString::try_new(name)
        .map_err(|_| ActionFailure::new(format!("queue name longer than 255 bytes: {name}")))
}

impl Topology {
    /// Ok when `queue` exists (checked at most every 30 s per queue).
    pub async fn ensure_exists(
        &mut self,
        conn: &Connection,
        queue: &str,
    ) -> Result<(), ActionFailure> {
        if let Some(seen) = self.exists.get(queue)
            && seen.elapsed() < EXISTS_TTL
        {
            return Ok(());
        }
        queue_depth(conn, queue).await.map_err(|e| {
            ActionFailure::new(format!("target queue '{queue}' is not available: {e}"))
        })?;
        self.exists.insert(queue.to_string(), Instant::now());
        Ok(())
    }

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
        let name = ShortString::try_new(exchange).map_err(|_| {
            ActionFailure::new(format!("exchange name longer than 255 bytes: {exchange}"))
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
        result.map_err(|e| {
            ActionFailure::new(format!(
                "target exchange '{exchange}' is not available: {e}"
            ))
        })?;
        self.exchanges.insert(exchange.to_string(), Instant::now());
        Ok(())
    }

    /// Declare (once per connection) the durable delay queue that holds messages for
    /// `delay` and then dead-letters them into `target`; its name.
    pub async fn delay_queue(
        &mut self,
        conn: &Connection,
        delay: Duration,
        target: &str,
    ) -> Result<String, ActionFailure> {
        let name = delay_queue_name(delay, target);
        if self.delay_queues.contains(&name) {
            return Ok(name);
        }
        let qname = short(&name)?;
        let ttl = i64::try_from(delay.as_millis()).unwrap_or(i64::MAX);
        let mut args = FieldTable::default();
        args.insert("x-message-ttl".into(), AMQPValue::LongLongInt(ttl));
        args.insert(
            "x-dead-letter-exchange".into(),
            AMQPValue::LongString(LongString::from("")),
        );
        args.insert(
            "x-dead-letter-routing-key".into(),
            AMQPValue::LongString(LongString::from(target)),
        );
        let channel = throwaway(conn).await?;
        let result = channel
            .queue_declare(qname, QueueDeclareOptions::durable(), args)
            .await;
        close(channel).await;
        result
            .map_err(|e| ActionFailure::new(format!("cannot declare delay queue {name}: {e}")))?;
        self.delay_queues.insert(name.clone());
        Ok(name)
    }
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
        .map_err(|e| ActionFailure::new(e.to_string()))
}

/// Delete a queue (for tools and tests); its message count.
pub async fn delete_queue(conn: &Connection, queue: &str) -> Result<u32, BrokerError> {
    let channel = conn
        .create_channel()
        .await
        .map_err(|e| BrokerError::amqp("cannot open a channel", &e))?;
    let name = ShortString::try_new(queue).map_err(|_| BrokerError::Amqp {
        context: "delete queue".into(),
        reason: "name longer than 255 bytes".into(),
        fatal: true,
    })?;
    let result = channel
        .queue_delete(name, QueueDeleteOptions::default())
        .await;
    close(channel).await;
    result.map_err(|e| BrokerError::amqp(format!("cannot delete queue {queue}"), &e))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn delay_queue_names_carry_the_delay_and_target() {
        assert_eq!(
            delay_queue_name(Duration::from_millis(1500), "orders"),
            "dlqd.delay.1500ms.orders"
        );
        assert!(delay_queue_name(Duration::from_secs(1), "q").starts_with(DELAY_QUEUE_PREFIX));
    }
}
