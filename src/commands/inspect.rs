//! `dlqd inspect`: a metadata summary of a queue (and optionally a per-message listing),
//! without consuming it.

use std::io::{BufWriter, Write};
use std::process::ExitCode;
use std::time::SystemTime;

use anyhow::Context as _;

use crate::broker::browse::browse;
use crate::cli::InspectArgs;
use crate::dead_letter::DeadLetter;
use crate::inspect::{MessageMeta, Summary, message_header, message_line};

pub fn run(args: InspectArgs) -> anyhow::Result<ExitCode> {
    // --show-body only means something in the listing.
    let list = args.messages || args.show_body;
    let mut out = BufWriter::new(std::io::stdout().lock());
    let mut summary = Summary::new();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    let browsed = rt
        .block_on(browse(&args.broker.urls, &args.queue, None, |m| {
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
        .with_context(|| format!("inspect of queue {:?} failed", args.queue))?;
    if list && browsed.visited > 0 {
        writeln!(out)?;
    }
    write!(out, "{}", summary.render(&args.queue, SystemTime::now()))?;
    out.flush()?;
    tracing::debug!(queue = %args.queue, messages = browsed.visited, "inspected");
    crate::commands::report_put_back(&args.queue, &browsed);
    Ok(ExitCode::SUCCESS)
}
