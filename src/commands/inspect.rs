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
