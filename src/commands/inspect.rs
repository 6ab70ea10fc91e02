//! `dlqd inspect`: a metadata summary of a queue (and optionally a per-message listing),
//! without consuming it; with several `--queue`s, one table with a row per queue.

use std::io::{BufWriter, Write};
use std::process::ExitCode;
use std::time::SystemTime;

use anyhow::Context as _;

use crate::broker::browse::browse;
use crate::cli::InspectArgs;
use crate::dead_letter::DeadLetter;
use crate::inspect::{MessageMeta, Summary, message_header, message_line, overview};

pub fn run(args: InspectArgs) -> anyhow::Result<ExitCode> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    // `--queue X --queue X` is one queue.
    let mut args = args;
    let mut seen = std::collections::HashSet::new();
    args.queue.retain(|q| seen.insert(q.clone()));
    if let [queue] = args.queue.as_slice() {
        return one(&rt, &args, queue);
    }
    if args.messages || args.show_body {
        anyhow::bail!("--messages and --show-body list one queue's messages: give one --queue");
    }
    many(&rt, &args)
}

/// One queue: its summary (and listing).
fn one(rt: &tokio::runtime::Runtime, args: &InspectArgs, queue: &str) -> anyhow::Result<ExitCode> {
    // --show-body only means something in the listing.
    let list = args.messages || args.show_body;
    let mut out = BufWriter::new(std::io::stdout().lock());
    let mut summary = Summary::new();
    let browsed = rt
        .block_on(browse(&args.broker.urls, queue, None, |m| {
            let meta = MessageMeta::new(summary.total(), &DeadLetter::new(&m));
            if list {
                if meta.index == 0 {
                    writeln!(out, "{}", message_header(args.show_body))?;
                }
                let body = args.show_body.then_some(m.body.as_slice());
                writeln!(out, "{}", message_line(&meta, body))?;
            }
            summary.add(&meta);
            Ok(())
        }))
        .with_context(|| format!("inspect of queue {queue:?} failed"))?;
    if list && browsed.visited > 0 {
        writeln!(out)?;
    }
    write!(out, "{}", summary.render(queue, SystemTime::now()))?;
    if !crate::stage::is_own_queue(queue) {
        let (delayed, left) = rt.block_on(stage_depths(&args.broker.urls, queue));
        if delayed + left > 0 {
            writeln!(
                out,
                "also waiting in dlqd's queues for this DLQ: {delayed} delayed retries, {left} left"
            )?;
        }
    }
    out.flush()?;
    tracing::debug!(queue = %queue, messages = browsed.visited, "inspected");
    crate::commands::report_put_back(queue, &browsed);
    Ok(ExitCode::SUCCESS)
}

/// Several queues, one after the other: a row each. A queue that cannot be read gets a
/// row saying why (and exit status 1); the others are still shown.
fn many(rt: &tokio::runtime::Runtime, args: &InspectArgs) -> anyhow::Result<ExitCode> {
    let mut rows: Vec<overview::Row> = Vec::new();
    for queue in &args.queue {
        let mut summary = Summary::new();
        let browsed = rt.block_on(browse(&args.broker.urls, queue, None, |m| {
            summary.add(&MessageMeta::new(summary.total(), &DeadLetter::new(&m)));
            Ok(())
        }));
        match browsed {
            Ok(b) => {
                crate::commands::report_put_back(queue, &b);
                rows.push((queue.clone(), Ok(summary)));
            }
            Err(e) => {
                tracing::error!(queue = %queue, error = %e, "cannot inspect this queue");
                rows.push((queue.clone(), Err(e.to_string())));
            }
        }
    }
    let mut out = BufWriter::new(std::io::stdout().lock());
    write!(out, "{}", overview::render(&rows, SystemTime::now()))?;
    out.flush()?;
    if rows.iter().any(|(_, r)| r.is_err()) {
        return Ok(ExitCode::from(1));
    }
    Ok(ExitCode::SUCCESS)
}

/// What waits in dlqd's delay and left queues of `dlq` (depths only; nothing when the
/// broker cannot be reached again: the summary above stands on its own).
async fn stage_depths(urls: &[String], dlq: &str) -> (u64, u64) {
    match crate::broker::connect::connect_any(urls, 0).await {
        Ok((conn, _)) => {
            let depths = crate::broker::topology::stage_depths(&conn, dlq).await;
            let _ = conn.close(200, "bye".into()).await;
            depths
        }
        Err(e) => {
            tracing::warn!(error = %e, "cannot read dlqd's queues for this DLQ");
            (0, 0)
        }
    }
}
