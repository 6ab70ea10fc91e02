//! The quick start's demo producer (run by scripts/quickstart.sh): sets up a real
//! dead-lettering topology on the local broker and makes dead letters the real ways.
//!
//! `quickstart setup`   delete and recreate the demo queues, then make dead letters:
//!                      a consumer rejects, messages expire (TTL), a full queue drops
//!                      its oldest (max-length); then the order service catches up.
//! `quickstart status [FILE]`  each demo queue's depth and the message ids it holds
//!                      (browsed without consuming); FILE keeps `id queue` lines.
//! `quickstart moves BEFORE AFTER`  where each message went between two status files.
//! `quickstart clean`   delete the demo queues and exchange.
//!
//! A demo, not the library: it talks to the broker with lapin directly.

use std::time::{Duration, Instant};

use futures_lite::StreamExt;
use lapin::options::{
    BasicAckOptions, BasicConsumeOptions, BasicPublishOptions, BasicQosOptions, BasicRejectOptions,
    ConfirmSelectOptions, ExchangeDeclareOptions, ExchangeDeleteOptions, QueueBindOptions,
    QueueDeclareOptions, QueueDeleteOptions,
};
use lapin::types::{AMQPValue, FieldTable, LongString, ShortString};
use lapin::{BasicProperties, Channel, Connection, ConnectionProperties, ExchangeKind};

const DLX: &str = "dlqd.demo.dlx";
const ORDERS: &str = "dlqd.demo.orders";
const DLQ: &str = "dlqd.demo.dlq";
const PARKED: &str = "dlqd.demo.orders.parked";
/// The demo queues, in the order `status` shows them.
const QUEUES: [&str; 3] = [ORDERS, DLQ, PARKED];
/// dlqd.demo.orders holds at most this many messages; more drop the oldest (maxlen).
const MAX_LENGTH: i64 = 10;

type Result<T> = std::result::Result<T, Box<dyn std::error::Error>>;

fn url() -> String {
    std::env::var("DLQD_URL").unwrap_or_else(|_| dlqd::cli::DEFAULT_URL.to_string())
}

#[tokio::main(flavor = "current_thread")]
async fn main() {
    let command = std::env::args().nth(1).unwrap_or_default();
    let result = match command.as_str() {
        "setup" => setup().await,
        "clean" => clean().await,
        "status" => status(std::env::args().nth(2)).await,
        "moves" => match (std::env::args().nth(2), std::env::args().nth(3)) {
            (Some(before), Some(after)) => moves(&before, &after),
            _ => Err("usage: quickstart moves BEFORE AFTER".into()),
        },
        _ => Err("usage: quickstart setup | status [FILE] | moves BEFORE AFTER | clean".into()),
    };
    if let Err(e) = result {
        eprintln!("quickstart: error: {e}");
        std::process::exit(1);
    }
}

async fn connect() -> Result<Connection> {
    Connection::connect(&url(), ConnectionProperties::default())
        .await
        .map_err(|e| {
            format!(
                "cannot reach RabbitMQ at {} ({e}); start it with `rabbitmq-server -detached`",
                dlqd::broker::redact(&url())
            )
            .into()
        })
}

fn args(entries: &[(&str, AMQPValue)]) -> FieldTable {
    let mut t = FieldTable::default();
    for (k, v) in entries {
        t.insert(ShortString::from(*k), v.clone());
    }
    t
}

/// Delete the demo queues and exchange (deleting what does not exist is fine).
async fn delete_all(ch: &Channel) -> Result<()> {
    for q in QUEUES {
        ch.queue_delete(q.into(), QueueDeleteOptions::default())
            .await?;
    }
    ch.exchange_delete(DLX.into(), ExchangeDeleteOptions::default())
        .await?;
    Ok(())
}

async fn clean() -> Result<()> {
    let conn = connect().await?;
    let ch = conn.create_channel().await?;
    delete_all(&ch).await?;
    println!("deleted {}, and {DLX}", QUEUES.join(", "));
    let _ = conn.close(200, "done".into()).await;
    Ok(())
}

async fn setup() -> Result<()> {
    let conn = connect().await?;
    let ch = conn.create_channel().await?;
    ch.confirm_select(ConfirmSelectOptions::default()).await?;

    // Start from nothing: the demo is re-runnable.
    delete_all(&ch).await?;

    let durable = QueueDeclareOptions::durable();
    ch.exchange_declare(
        DLX.into(),
        ExchangeKind::Fanout,
        ExchangeDeclareOptions {
            durable: true,
            ..Default::default()
        },
        FieldTable::default(),
    )
    .await?;
    ch.queue_declare(DLQ.into(), durable, FieldTable::default())
        .await?;
    ch.queue_bind(
        DLQ.into(),
        DLX.into(),
        "".into(),
        QueueBindOptions::default(),
        FieldTable::default(),
    )
    .await?;
    ch.queue_declare(
        ORDERS.into(),
        durable,
        args(&[
            ("x-dead-letter-exchange", AMQPValue::LongString(DLX.into())),
            ("x-max-length", AMQPValue::LongLongInt(MAX_LENGTH)),
        ]),
    )
    .await?;
    ch.queue_declare(PARKED.into(), durable, FieldTable::default())
        .await?;
    println!(
        "declared {ORDERS} (dead-letter exchange {DLX}, max-length {MAX_LENGTH}) → {DLX} → {DLQ}; and {PARKED}"
    );

    // 1. A consumer rejects four orders it cannot process (requeue=false): `rejected`.
    for i in 1..=4 {
        publish(
            &ch,
            &order(i),
            &format!(r#"{{"order":{i},"sku":"??"}}"#),
            true,
            None,
        )
        .await?;
    }
    reject(&conn, ORDERS, 4).await?;
    wait_depth(&ch, DLQ, 4).await?;
    println!("a consumer rejected order-1..order-4            → 4 dead letters, reason rejected");

    // 2. Messages with a TTL expire before anyone reads them: `expired`.
    //    Two price quotes (not persistent) and one persistent order with a deadline.
    publish(
        &ch,
        "quote-1",
        r#"{"sku":"A-1","price":"9.99"}"#,
        false,
        Some(200),
    )
    .await?;
    publish(
        &ch,
        "quote-2",
        r#"{"sku":"B-2","price":"4.50"}"#,
        false,
        Some(200),
    )
    .await?;
    publish(
        &ch,
        &order(5),
        r#"{"order":5,"sku":"C-3"}"#,
        true,
        Some(200),
    )
    .await?;
    wait_depth(&ch, DLQ, 7).await?;
    println!("quote-1, quote-2 and order-5 expired (TTL 200ms) → 3 dead letters, reason expired");

    // 3. A burst of twelve orders into a queue that holds ten: the two oldest are
    //    dropped from the head: `maxlen`.
    for i in 6..=17 {
        publish(
            &ch,
            &order(i),
            &format!(r#"{{"order":{i},"sku":"D-4"}}"#),
            true,
            None,
        )
        .await?;
    }
    wait_depth(&ch, DLQ, 9).await?;
    println!(
        "12 orders into a queue of max-length 10          → 2 dead letters (order-6, order-7), reason maxlen"
    );

    // 4. The order service catches up: the ten orders still queued are processed.
    let processed = consume_all(&conn, ORDERS).await?;
    println!("the order service processed the {processed} orders left in {ORDERS}");
    let _ = conn.close(200, "done".into()).await;
    Ok(())
}

fn order(i: u32) -> String {
    format!("order-{i}")
}

async fn publish(
    ch: &Channel,
    id: &str,
    body: &str,
    persistent: bool,
    ttl_ms: Option<u64>,
) -> Result<()> {
    let mut props = BasicProperties::default()
        .with_message_id(id.into())
        .with_content_type("application/json".into())
        .with_app_id("dlqd-quickstart".into())
        .with_delivery_mode(if persistent { 2 } else { 1 })
        .with_headers(args(&[(
            "tenant",
            AMQPValue::LongString(LongString::from("acme")),
        )]));
    if let Some(ms) = ttl_ms {
        props = props.with_expiration(ms.to_string().into());
    }
    let confirm = ch
        .basic_publish(
            "".into(),
            ORDERS.into(),
            BasicPublishOptions {
                mandatory: true,
                ..Default::default()
            },
            body.as_bytes(),
            props,
        )
        .await?
        .await?;
    if !confirm.is_ack() || confirm.take_message().is_some() {
        return Err(format!("the broker did not take {id}").into());
    }
    Ok(())
}

/// Consume `n` messages and reject each (requeue=false): the broker dead-letters them.
async fn reject(conn: &Connection, queue: &str, n: usize) -> Result<()> {
    let ch = conn.create_channel().await?;
    ch.basic_qos(1, BasicQosOptions::default()).await?;
    let mut consumer = ch
        .basic_consume(
            queue.into(),
            "quickstart-rejecter".into(),
            BasicConsumeOptions::default(),
            FieldTable::default(),
        )
        .await?;
    for _ in 0..n {
        let delivery = tokio::time::timeout(Duration::from_secs(10), consumer.next())
            .await
            .map_err(|_| "no message to reject within 10s")?
            .ok_or("consumer cancelled")??;
        delivery
            .reject(BasicRejectOptions { requeue: false })
            .await?;
    }
    ch.close(200, "done".into()).await?;
    Ok(())
}

/// Consume and acknowledge everything in a queue; how many there were.
async fn consume_all(conn: &Connection, queue: &str) -> Result<u32> {
    let ch = conn.create_channel().await?;
    let mut n = 0;
    while let Some(got) = ch
        .basic_get(queue.into(), lapin::options::BasicGetOptions::default())
        .await?
    {
        got.delivery.ack(BasicAckOptions::default()).await?;
        n += 1;
    }
    ch.close(200, "done".into()).await?;
    Ok(n)
}

async fn depth(ch: &Channel, queue: &str) -> Result<u32> {
    let q = ch
        .queue_declare(
            queue.into(),
            QueueDeclareOptions {
                passive: true,
                ..Default::default()
            },
            FieldTable::default(),
        )
        .await?;
    Ok(q.message_count())
}

/// Dead-lettering is asynchronous: wait until the queue holds `n` messages.
async fn wait_depth(ch: &Channel, queue: &str, n: u32) -> Result<()> {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let d = depth(ch, queue).await?;
        if d == n {
            return Ok(());
        }
        if Instant::now() > deadline {
            return Err(format!("{queue} holds {d} messages, expected {n}").into());
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Each demo queue: depth and message ids, browsed without consuming.
async fn status(save: Option<String>) -> Result<()> {
    let url = url();
    let mut saved = String::new();
    for queue in QUEUES {
        let mut ids = Vec::new();
        let browsed = dlqd::broker::browse::browse(std::slice::from_ref(&url), queue, None, |m| {
            ids.push(m.properties.message_id.unwrap_or_else(|| "?".into()));
            Ok(())
        })
        .await?;
        let line = format!(
            "  {queue:<25} {:>2} message(s)  {}",
            browsed.depth_at_start,
            ids.join(" ")
        );
        println!("{}", line.trim_end());
        for id in ids {
            saved.push_str(&format!("{id} {queue}\n"));
        }
    }
    if let Some(path) = save {
        std::fs::write(&path, saved).map_err(|e| format!("cannot write {path}: {e}"))?;
    }
    Ok(())
}

/// Where each message was in BEFORE and is in AFTER (status files).
fn moves(before: &str, after: &str) -> Result<()> {
    let read = |path: &str| -> Result<Vec<(String, String)>> {
        let text = std::fs::read_to_string(path).map_err(|e| format!("cannot read {path}: {e}"))?;
        Ok(text
            .lines()
            .filter_map(|l| l.split_once(' '))
            .map(|(id, q)| (id.to_string(), q.to_string()))
            .collect())
    };
    let (before, after) = (read(before)?, read(after)?);
    for (id, from) in &before {
        let to: Vec<&str> = after
            .iter()
            .filter(|(a, _)| a == id)
            .map(|(_, q)| q.as_str())
            .collect();
        let to = match to.as_slice() {
            [] => "(gone: discarded)".to_string(),
            [q] if *q == from => format!("{q} (stayed)"),
            qs => qs.join(", "),
        };
        println!("  {id:<8} {from} → {to}");
    }
    for (id, to) in after
        .iter()
        .filter(|(a, _)| before.iter().all(|(b, _)| b != a))
    {
        println!("  {id:<8} (new) → {to}");
    }
    Ok(())
}
