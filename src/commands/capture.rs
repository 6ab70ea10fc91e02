//! `dlqd capture`: copy a queue's messages into a capture file without consuming them.

use std::fs::File;
use std::io::{BufWriter, Write};
use std::process::ExitCode;

use anyhow::Context as _;

use crate::broker::browse::browse;
use crate::capture;
use crate::cli::CaptureArgs;

pub fn run(args: CaptureArgs) -> anyhow::Result<ExitCode> {
    let (mut out, target): (Box<dyn Write>, String) = match &args.out {
        Some(path) => (
            Box::new(BufWriter::new(File::create(path).with_context(|| {
                format!("cannot create capture file {}", path.display())
            })?)),
            path.display().to_string(),
        ),
        None => (
            Box::new(BufWriter::new(std::io::stdout().lock())),
            "stdout".to_string(),
        ),
    };
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    let browsed = rt
        .block_on(browse(&args.broker.urls, &args.queue, args.limit, |m| {
            out.write_all(capture::to_line(&m).as_bytes())?;
            out.write_all(b"\n")
        }))
        .with_context(|| format!("capture of queue {:?} failed", args.queue))?;
    out.flush()
        .with_context(|| format!("cannot write the capture to {target}"))?;
    tracing::info!(
        queue = %args.queue,
        written = browsed.visited,
        depth = browsed.depth_at_start,
        out = %target,
        "captured {} of {} message(s)",
        browsed.visited,
        browsed.depth_at_start
    );
    crate::commands::report_put_back(&args.queue, &browsed);
    Ok(ExitCode::SUCCESS)
}
