//! Makes fixtures/captures/*.jsonl from REAL dead letters: publishes messages on a live
//! RabbitMQ and dead-letters them the three ways the broker does (consumer reject, TTL
//! expiry, max-length drop), then reads the dead-letter queue with basic.get and writes
//! each message in capture format, x-death exactly as the broker wrote it.
//!
//! Run through scripts/make-capture-fixtures.sh, which gives it a fresh vhost (so the
//! queue names can be the plain ones the SPEC's example rules use) and deletes it after:
//!
//!     cargo run --example make_capture_fixtures -- amqp://guest:guest@127.0.0.1:5672/VHOST fixtures/captures
//!
//! A throwaway program, not part of dlqd: it has its own small lapin → Message conversion.

use std::error::Error;
use std::path::Path;
use std::time::Duration;

use dlqd::broker::convert::properties_from_amqp;
use dlqd::capture;
use dlqd::message::Message;
use lapin::options::{
    BasicGetOptions, BasicPublishOptions, BasicRejectOptions, ConfirmSelectOptions,
    ExchangeDeclareOptions, QueueBindOptions, QueueDeclareOptions,
};
use lapin::types::{AMQPValue, FieldTable};
use lapin::{BasicProperties, Channel, Connection, ConnectionProperties, ExchangeKind};

type Res<T> = Result<T, Box<dyn Error>>;

const DLX: &str = "dlx";
const DLQ: &str = "orders.dlq";
const SHOP: &str = "shop";

#[tokio::main(flavor = "current_thread")]
async fn main() -> Res<()> {
    let args: Vec<String> = std::env::args().collect();
    let (Some(url), Some(out)) = (args.get(1), args.get(2)) else {
        return Err("usage: make_capture_fixtures AMQP_URL OUT_DIR".into());
    };
    let conn = Connection::connect(url, ConnectionProperties::default()).await?;
    let ch = conn.create_channel().await?;
    ch.confirm_select(ConfirmSelectOptions::default()).await?;

    ch.exchange_declare(
        DLX.into(),
        ExchangeKind::Fanout,
        ExchangeDeclareOptions::default(),
        FieldTable::default(),
    )
    .await?;
    ch.exchange_declare(
        SHOP.into(),
        ExchangeKind::Direct,
        ExchangeDeclareOptions::default(),
        FieldTable::default(),
    )
    .await?;
    declare(&ch, DLQ, FieldTable::default()).await?;
    ch.queue_bind(
        DLQ.into(),
        DLX.into(),
        "".into(),
        QueueBindOptions::default(),
        FieldTable::default(),
    )
    .await?;

    // 1. max-length drops: orders.eu holds one message; each new one pushes the oldest out.
    let mut args = dl_args();
    args.insert("x-max-length".into(), AMQPValue::LongInt(1));
    declare(&ch, "orders.eu", args).await?;
    bind(&ch, "orders.eu", "order.created").await?;
    for (i, retries) in [None, Some(1), Some(4), Some(5), None]
        .into_iter()
        .enumerate()
    {
        publish(
            &ch,
            SHOP,
            "order.created",
            &format!("maxlen-{}", i + 1),
            true,
            retries,
            None,
        )
        .await?;
    }
    // The last one stays in orders.eu; the first four were dropped to the DLQ.
    write_capture(&ch, &Path::new(out).join("maxlen.jsonl"), 4).await?;

    // 2. consumer rejects (requeue=false) from several queues.
    for q in ["payments", "billing.eu", "billing.asia"] {
        declare(&ch, q, dl_args()).await?;
        bind(&ch, q, &format!("{q}.key")).await?;
    }
    let rejects = [
        ("payments", "rejected-1", true, None),
        ("payments", "rejected-2", true, Some(3)),
        ("payments", "rejected-3", true, Some(6)),
        ("payments", "rejected-4", false, None),
        ("billing.eu", "rejected-5", true, Some(6)),
        ("billing.asia", "rejected-6", true, Some(6)),
    ];
    for (q, id, persistent, retries) in rejects {
        publish(
            &ch,
            SHOP,
            &format!("{q}.key"),
            id,
            persistent,
            retries,
            None,
        )
        .await?;
        let got = ch
            .basic_get(q.into(), BasicGetOptions::default())
            .await?
            .ok_or("message not delivered")?;
        got.delivery
            .reject(BasicRejectOptions { requeue: false })
            .await?;
    }
    write_capture(&ch, &Path::new(out).join("rejected.jsonl"), rejects.len()).await?;

    // 3. TTL expiry: per-message expiration (x-death gets original-expiration) and a
    //    queue-level TTL.
    declare(&ch, "orders.us", dl_args()).await?;
    bind(&ch, "orders.us", "order.us").await?;
    let mut args = dl_args();
    args.insert("x-message-ttl".into(), AMQPValue::LongInt(10));
    declare(&ch, "quotes", args).await?;
    bind(&ch, "quotes", "quote").await?;
    publish(&ch, SHOP, "order.us", "expired-1", true, None, Some("10")).await?;
    publish(&ch, SHOP, "quote", "expired-2", false, None, None).await?;
    tokio::time::sleep(Duration::from_millis(300)).await;
    // An expired message is dead-lettered when it reaches the head of its queue.
    for q in ["orders.us", "quotes"] {
        let _ = ch.basic_get(q.into(), BasicGetOptions::default()).await?;
    }
    write_capture(&ch, &Path::new(out).join("expired.jsonl"), 2).await?;

    // 4. dlqd's own history: a message rejected from payments, parked in a dlqd delay
    //    queue, that expired there into the DLQ. Its newest x-death entry is the delay
    //    queue's, which the rules must look past.
    let mut args = FieldTable::default();
    args.insert(
        "x-dead-letter-exchange".into(),
        AMQPValue::LongString(DLX.into()),
    );
    args.insert("x-message-ttl".into(), AMQPValue::LongInt(10));
    declare(&ch, "dlqd.delay.payments.1000", args).await?;
    let mut pay = FieldTable::default();
    pay.insert(
        "x-dead-letter-exchange".into(),
        AMQPValue::LongString("".into()),
    );
    pay.insert(
        "x-dead-letter-routing-key".into(),
        AMQPValue::LongString("dlqd.delay.payments.1000".into()),
    );
    declare(&ch, "payments.direct", pay).await?;
    publish(&ch, "", "payments.direct", "delayed-1", true, Some(2), None).await?;
    let got = ch
        .basic_get("payments.direct".into(), BasicGetOptions::default())
        .await?
        .ok_or("message not delivered")?;
    got.delivery
        .reject(BasicRejectOptions { requeue: false })
        .await?;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let _ = ch
        .basic_get(
            "dlqd.delay.payments.1000".into(),
            BasicGetOptions::default(),
        )
        .await?;
    write_capture(&ch, &Path::new(out).join("delayed.jsonl"), 1).await?;

    conn.close(200, "done".into()).await?;
    Ok(())
}

fn dl_args() -> FieldTable {
    let mut a = FieldTable::default();
    a.insert(
        "x-dead-letter-exchange".into(),
        AMQPValue::LongString(DLX.into()),
    );
    a
}

async fn declare(ch: &Channel, q: &str, args: FieldTable) -> Res<()> {
    ch.queue_declare(q.into(), QueueDeclareOptions::default(), args)
        .await?;
    Ok(())
}

async fn bind(ch: &Channel, q: &str, key: &str) -> Res<()> {
    ch.queue_bind(
        q.into(),
        SHOP.into(),
        key.into(),
        QueueBindOptions::default(),
        FieldTable::default(),
    )
    .await?;
    Ok(())
}

async fn publish(
    ch: &Channel,
    exchange: &str,
    key: &str,
    id: &str,
    persistent: bool,
    retries: Option<i64>,
    expiration: Option<&str>,
) -> Res<()> {
    let mut props = BasicProperties::default()
        .with_delivery_mode(if persistent { 2 } else { 1 })
        .with_message_id(id.into())
        .with_content_type("application/json".into())
        .with_app_id("shop".into())
        .with_timestamp(1_700_000_000);
    if let Some(n) = retries {
        let mut h = FieldTable::default();
        h.insert("x-dlqd-retries".into(), AMQPValue::LongLongInt(n));
        props = props.with_headers(h);
    }
    if let Some(e) = expiration {
        props = props.with_expiration(e.into());
    }
    let body = format!("{{\"order\":\"{id}\"}}");
    ch.basic_publish(
        exchange.into(),
        key.into(),
        BasicPublishOptions::default(),
        body.as_bytes(),
        props,
    )
    .await?
    .await?;
    Ok(())
}

/// Take `n` messages off the DLQ (basic.get, acked) and write them as capture lines.
async fn write_capture(ch: &Channel, path: &Path, n: usize) -> Res<()> {
    let mut out = Vec::new();
    let mut got_all = 0;
    for _ in 0..50 {
        if got_all == n {
            break;
        }
        match ch
            .basic_get(DLQ.into(), BasicGetOptions { no_ack: true })
            .await?
        {
            Some(m) => {
                let d = m.delivery;
                let msg = Message {
                    exchange: d.exchange.as_str().to_string(),
                    routing_key: d.routing_key.as_str().to_string(),
                    properties: properties_from_amqp(&d.properties),
                    body: d.data,
                };
                capture::write_line(&mut out, &msg)?;
                got_all += 1;
            }
            None => tokio::time::sleep(Duration::from_millis(50)).await,
        }
    }
    if got_all != n {
        return Err(format!(
            "{}: expected {n} dead letters, got {got_all}",
            path.display()
        )
        .into());
    }
    std::fs::write(path, out)?;
    println!("{}: {n} messages", path.display());
    Ok(())
}
