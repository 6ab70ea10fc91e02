//! How fast capture/inspect browse a queue: fills a fresh queue with N persistent
//! 1 KiB messages, browses it as `dlqd capture` does (each message encoded as a capture
//! line), checks the queue is unchanged, prints the figures and deletes the queue.
//!
//! `cargo run --release --example browse_speed -- [N]` (default 20000; broker from
//! DLQD_URL or the default URL).

use std::time::Instant;

use futures_lite::StreamExt;
use lapin::options::{
    BasicConsumeOptions, BasicPublishOptions, ConfirmSelectOptions, QueueDeclareOptions,
    QueueDeleteOptions,
};
use lapin::types::FieldTable;
use lapin::{BasicProperties, Connection, ConnectionProperties};

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let n: u32 = match std::env::args().nth(1) {
        Some(a) => a.parse().map_err(|e| format!("N: {e}"))?,
        None => 20_000,
    };
    let url = std::env::var("DLQD_URL").unwrap_or_else(|_| dlqd::cli::DEFAULT_URL.to_string());
    let conn = Connection::connect(&url, ConnectionProperties::default())
        .await
        .map_err(|e| format!("{e}; start a broker with `rabbitmq-server -detached`"))?;
    let ch = conn.create_channel().await?;
    ch.confirm_select(ConfirmSelectOptions::default()).await?;
    let queue = format!("dlqd.bench.browse.{}", std::process::id());
    ch.queue_declare(
        queue.as_str().into(),
        QueueDeclareOptions::default(),
        FieldTable::default(),
    )
    .await?;

    let body = vec![b'x'; 1024];
    let mut confirms = Vec::new();
    for i in 0..n {
        let props = BasicProperties::default()
            .with_message_id(i.to_string().into())
            .with_delivery_mode(2);
        let c = ch
            .basic_publish(
                "".into(),
                queue.as_str().into(),
                BasicPublishOptions::default(),
                &body,
                props,
            )
            .await?;
        confirms.push(c);
    }
    for c in confirms {
        c.await?;
    }

    let started = Instant::now();
    let mut bytes = 0usize;
    let done = dlqd::broker::browse::browse(std::slice::from_ref(&url), &queue, None, |m| {
        bytes += dlqd::capture::to_line(&m).len() + 1;
        Ok(())
    })
    .await?;
    let took = started.elapsed();
    println!(
        "browsed {} of {} messages (1 KiB bodies) in {:.2?}: {:.0} msg/s, {:.1} MiB of capture",
        done.visited,
        done.depth_at_start,
        took,
        done.visited as f64 / took.as_secs_f64(),
        bytes as f64 / (1024.0 * 1024.0)
    );

    // The queue is unchanged: consume it and check the order.
    let mut consumer = ch
        .basic_consume(
            queue.as_str().into(),
            "".into(),
            BasicConsumeOptions {
                no_ack: true,
                ..Default::default()
            },
            FieldTable::default(),
        )
        .await?;
    for i in 0..n {
        let d = consumer.next().await.ok_or("consumer closed")??;
        let id = d.properties.message_id().as_ref().map(|s| s.to_string());
        if id != Some(i.to_string()) {
            return Err(format!("message {i} is {id:?}: the order changed").into());
        }
    }
    println!("queue unchanged: {n} messages in their order");
    ch.queue_delete(queue.as_str().into(), QueueDeleteOptions::default())
        .await?;
    Ok(())
}
