//! A helper for scripts/drain-rate.sh: fill a queue with persistent messages, count a
//! queue, wait for a count, delete queues. Not part of dlqd.
//!
//! bench_queue fill QUEUE N SIZE | count QUEUE | wait QUEUE N | delete QUEUE...

use std::time::{Duration, Instant};

use lapin::options::*;
use lapin::types::FieldTable;
use lapin::{BasicProperties, Connection, ConnectionProperties};

async fn count(ch: &lapin::Channel, q: &str) -> u32 {
    ch.queue_declare(
        q.into(),
        QueueDeclareOptions::durable(),
        FieldTable::default(),
    )
    .await
    .expect("declare")
    .message_count()
}

#[tokio::main]
async fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let url = std::env::var("DLQD_URL")
        .unwrap_or_else(|_| "amqp://guest:guest@127.0.0.1:5672/%2f".into());
    let conn = Connection::connect(&url, ConnectionProperties::default())
        .await
        .expect("connect (is RabbitMQ running? `rabbitmq-server -detached`)");
    let ch = conn.create_channel().await.expect("channel");
    match args.first().map(String::as_str) {
        Some("fill") => {
            let q = &args[1];
            let n: usize = args[2].parse().expect("N");
            let size: usize = args[3].parse().expect("SIZE");
            count(&ch, q).await;
            ch.confirm_select(ConfirmSelectOptions::default())
                .await
                .expect("confirms");
            let body = vec![b'x'; size];
            let mut pending = std::collections::VecDeque::new();
            for i in 0..n {
                let props = BasicProperties::default()
                    .with_delivery_mode(2)
                    .with_message_id(i.to_string().into());
                let c = ch
                    .basic_publish(
                        "".into(),
                        q.as_str().into(),
                        BasicPublishOptions::default(),
                        &body,
                        props,
                    )
                    .await
                    .expect("publish");
                pending.push_back(c);
                if pending.len() >= 2000 {
                    pending
                        .pop_front()
                        .expect("pending")
                        .await
                        .expect("confirm");
                }
            }
            for c in pending {
                c.await.expect("confirm");
            }
        }
        Some("count") => println!("{}", count(&ch, &args[1]).await),
        Some("wait") => {
            let q = &args[1];
            let n: u32 = args[2].parse().expect("N");
            let start = Instant::now();
            while count(&ch, q).await < n {
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            println!("{:.3}", start.elapsed().as_secs_f64());
        }
        Some("delete") => {
            for q in &args[1..] {
                let _ = ch
                    .queue_delete(q.as_str().into(), QueueDeleteOptions::default())
                    .await;
            }
        }
        _ => {
            eprintln!(
                "usage: bench_queue fill QUEUE N SIZE | count QUEUE | wait QUEUE N | delete QUEUE..."
            );
            std::process::exit(2);
        }
    }
    let _ = conn.close(200, "bye".into()).await;
}
