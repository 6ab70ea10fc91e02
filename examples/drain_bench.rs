//! Queue helper for scripts/bench-drain.sh (not part of dlqd): fill a queue fast with
//! confirmed persistent messages, wait until a move between two queues is done and time
//! it, delete queues.
//!
//! ```text
//! cargo run --release --example drain_bench -- fill  URL QUEUE COUNT SIZE
//! cargo run --release --example drain_bench -- wait  URL SRC DST COUNT [TIMEOUT_S]
//! cargo run --release --example drain_bench -- delete URL QUEUE...
//! cargo run --release --example drain_bench -- declare URL QUEUE...
//! cargo run --release --example drain_bench -- move  URL SRC DST COUNT PREFETCH
//! ```
//! `move` is the raw-lapin mover: the least a lapin program must do to move messages
//! safely (consume with `basic_qos(PREFETCH)`, publish each to DST with confirms and
//! `mandatory`, ack each delivery once its copy is confirmed, in order, `multiple`),
//! no rules, no logs. Beside dlqd and the shovel in one run it shows what lapin itself
//! costs. `DLQD_BENCH_QUEUE_TYPE=quorum` makes `fill` and `declare` declare quorum queues.
//! `wait` polls both depths every 25 ms; the clock starts when SRC first holds fewer than
//! COUNT messages (the mover has started) and stops when DST holds COUNT and SRC is empty,
//! so the mover's own start-up (CLI, connection) is not counted, for either mover.
//! It prints `moved COUNT in SECONDS s: RATE msg/s`.

use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use futures_lite::StreamExt;
use lapin::options::{BasicAckOptions, BasicConsumeOptions, BasicQosOptions};
use lapin::options::{
    BasicPublishOptions, ConfirmSelectOptions, QueueDeclareOptions, QueueDeleteOptions,
};
use lapin::types::{AMQPValue, FieldTable};
use lapin::{BasicProperties, Channel, Confirmation, Connection, ConnectionProperties};

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let Some((cmd, rest)) = args.split_first() else {
        bail!("usage: drain_bench fill|wait|delete|declare URL ...");
    };
    let Some((url, rest)) = rest.split_first() else {
        bail!("usage: drain_bench {cmd} URL ...");
    };
    let conn = Connection::connect(url, ConnectionProperties::default())
        .await
        .context("connect")?;
    match (cmd.as_str(), rest) {
        ("fill", [queue, count, size]) => {
            fill(&conn, queue, count.parse()?, size.parse()?).await?;
        }
        ("wait", [src, dst, count]) => wait(&conn, src, dst, count.parse()?, 3600).await?,
        ("wait", [src, dst, count, timeout]) => {
            wait(&conn, src, dst, count.parse()?, timeout.parse()?).await?;
        }
        ("delete", queues) => {
            let ch = conn.create_channel().await?;
            for q in queues {
                ch.queue_delete(q.as_str().into(), QueueDeleteOptions::default())
                    .await?;
            }
        }
        ("move", [src, dst, count, prefetch]) => {
            raw_move(&conn, src, dst, count.parse()?, prefetch.parse()?).await?;
        }
        ("declare", queues) => {
            let ch = conn.create_channel().await?;
            for q in queues {
                declare(&ch, q).await?;
            }
        }
        _ => bail!("bad arguments: {args:?}"),
    }
    // A clean close, but never wait long for it: exiting closes the socket anyway.
    let _ = tokio::time::timeout(Duration::from_secs(2), conn.close(200, "done".into())).await;
    Ok(())
}

async fn declare(ch: &Channel, queue: &str) -> anyhow::Result<u32> {
    let mut args = FieldTable::default();
    if let Ok(kind) = std::env::var("DLQD_BENCH_QUEUE_TYPE") {
        args.insert("x-queue-type".into(), AMQPValue::LongString(kind.into()));
    }
    let q = ch
        .queue_declare(queue.into(), QueueDeclareOptions::durable(), args)
        .await
        .with_context(|| format!("declare {queue}"))?;
    Ok(q.message_count())
}

async fn depth(ch: &Channel, queue: &str) -> anyhow::Result<u32> {
    let q = ch
        .queue_declare(
            queue.into(),
            QueueDeclareOptions {
                passive: true,
                ..QueueDeclareOptions::default()
            },
            FieldTable::default(),
        )
        .await
        .with_context(|| format!("depth of {queue}"))?;
    Ok(q.message_count())
}

async fn fill(conn: &Connection, queue: &str, count: u64, size: usize) -> anyhow::Result<()> {
    // A few channels publishing side by side keep the broker busy while each waits for
    // its batch's confirms.
    const CHANNELS: u64 = 4;
    declare(&conn.create_channel().await?, queue).await?;
    let body: Vec<u8> = (0..size).map(|i| b'a' + (i % 26) as u8).collect();
    let started = Instant::now();
    let mut tasks = Vec::new();
    for c in 0..CHANNELS {
        let ch = conn.create_channel().await?;
        ch.confirm_select(ConfirmSelectOptions::default()).await?;
        let (from, to) = (count * c / CHANNELS, count * (c + 1) / CHANNELS);
        let (queue, body) = (queue.to_owned(), body.clone());
        tasks.push(tokio::spawn(async move {
            publish_range(ch, queue, body, from, to).await
        }));
    }
    for t in tasks {
        t.await??;
    }
    let secs = started.elapsed().as_secs_f64();
    eprintln!(
        "filled {queue} with {count} x {size} B in {secs:.2} s ({:.0} msg/s)",
        count as f64 / secs
    );
    Ok(())
}

async fn publish_range(
    ch: Channel,
    queue: String,
    body: Vec<u8>,
    from: u64,
    to: u64,
) -> anyhow::Result<()> {
    const BATCH: u64 = 1000;
    let mut next = from;
    while next < to {
        let end = (next + BATCH).min(to);
        for i in next..end {
            let props = BasicProperties::default()
                .with_delivery_mode(2)
                .with_message_id(format!("m{i}").into());
            // Drop the confirm future: wait_for_confirms below collects the batch.
            drop(
                ch.basic_publish(
                    "".into(),
                    queue.as_str().into(),
                    BasicPublishOptions {
                        mandatory: true,
                        ..BasicPublishOptions::default()
                    },
                    &body,
                    props,
                )
                .await?,
            );
        }
        let returned = ch.wait_for_confirms().await?;
        if !returned.is_empty() {
            bail!("{} messages returned unroutable", returned.len());
        }
        next = end;
    }
    Ok(())
}

/// The raw-lapin mover (see the module docs): move `count` messages from `src` to `dst`.
async fn raw_move(
    conn: &Connection,
    src: &str,
    dst: &str,
    count: u64,
    prefetch: u16,
) -> anyhow::Result<()> {
    use std::collections::VecDeque;
    let consume = conn.create_channel().await?;
    consume
        .basic_qos(prefetch, BasicQosOptions::default())
        .await?;
    let publish = conn.create_channel().await?;
    publish
        .confirm_select(ConfirmSelectOptions::default())
        .await?;
    let mut consumer = consume
        .basic_consume(
            src.into(),
            "".into(),
            BasicConsumeOptions::default(),
            FieldTable::default(),
        )
        .await?;
    let mut in_flight: VecDeque<(u64, lapin::PublisherConfirm)> = VecDeque::new();
    let mut acked = 0u64;
    while acked < count {
        // Confirms come in publish order: the front one first.
        let front = async {
            match in_flight.front_mut() {
                Some((_, confirm)) => Some(confirm.await),
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            done = front => {
                let (tag, _) = in_flight.pop_front().expect("a front confirm");
                match done {
                    Some(Ok(Confirmation::Ack(None))) => {}
                    other => bail!("publish of delivery {tag} not confirmed: {other:?}"),
                }
                // Every confirm already in: one multiple ack for the lot.
                let mut last = tag;
                acked += 1;
                while let Some((t, c)) = in_flight.front_mut() {
                    match futures_lite::future::poll_once(&mut *c).await {
                        Some(Ok(Confirmation::Ack(None))) => {
                            last = *t;
                            acked += 1;
                            in_flight.pop_front();
                        }
                        Some(other) => bail!("publish of delivery {t} not confirmed: {other:?}"),
                        None => break,
                    }
                }
                consume.basic_ack(last, BasicAckOptions { multiple: true }).await?;
            }
            d = consumer.next() => {
                let Some(d) = d else { bail!("consumer cancelled") };
                let d = d?;
                let confirm = publish
                    .basic_publish(
                        "".into(),
                        dst.into(),
                        BasicPublishOptions { mandatory: true, ..BasicPublishOptions::default() },
                        &d.data,
                        d.properties,
                    )
                    .await?;
                in_flight.push_back((d.delivery_tag, confirm));
            }
        }
    }
    Ok(())
}

async fn wait(
    conn: &Connection,
    src: &str,
    dst: &str,
    count: u32,
    timeout_s: u64,
) -> anyhow::Result<()> {
    let ch = conn.create_channel().await?;
    let deadline = Instant::now() + Duration::from_secs(timeout_s);
    let mut started: Option<Instant> = None;
    loop {
        let now = Instant::now();
        // The source may be deleted by the mover once empty (shovel src-delete-after).
        let s = match depth(&ch, src).await {
            Ok(n) => n,
            Err(_) => {
                // The failed passive declare closed the channel: take a new one.
                let fresh = conn.create_channel().await?;
                let d = depth(&fresh, dst).await?;
                if d >= count {
                    report(count, started.unwrap_or(now));
                    return Ok(());
                }
                bail!("{src} is gone but {dst} holds only {d} of {count}");
            }
        };
        if started.is_none() && s < count {
            started = Some(now);
        }
        let d = depth(&ch, dst).await?;
        if s == 0 && d >= count {
            report(count, started.unwrap_or(now));
            return Ok(());
        }
        if now > deadline {
            bail!("timed out: {src} holds {s}, {dst} holds {d} of {count}");
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

fn report(count: u32, started: Instant) {
    let secs = started.elapsed().as_secs_f64();
    println!(
        "moved {count} in {secs:.3} s: {:.0} msg/s",
        f64::from(count) / secs
    );
}
