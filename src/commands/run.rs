//! `dlqd run`: load the rules (file or --rule), work out the DLQ and the stop condition,
//! and run the handler (src/daemon.rs) on a tokio runtime.

use std::process::ExitCode;

use anyhow::Context;
use tracing::warn;

use crate::cli::RunArgs;
use crate::daemon::{self, Config};
use crate::rules::{self, Diagnostic, Table};

pub fn run(args: RunArgs) -> anyhow::Result<ExitCode> {
    let (table, rules_path) = match &args.rules {
        Some(path) => {
            let (table, warnings) = rules::load(path)?;
            log_warnings(&warnings);
            (table, Some(path.clone()))
        }
        None => (inline_table(&args.rule)?, None),
    };
    let queue = args
        .queue
        .clone()
        .or_else(|| table.control.input_queue.clone())
        .context("no DLQ to consume: give --queue or INPUTQ(...) as the rules' first entry")?;
    if args.metrics_addr.is_some() {
        warn!("--metrics-addr is not implemented yet; no metrics are served");
    }
    let config = Config {
        url: args.broker.url.clone(),
        queue,
        prefetch: args.prefetch,
        once: args.once,
        rules_path,
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    runtime.block_on(daemon::run(config, table))?;
    Ok(ExitCode::SUCCESS)
}

fn log_warnings(diagnostics: &[Diagnostic]) {
    for d in diagnostics {
        warn!(file = %d.path, line = d.line, column = d.column, "rules warning: {}", d.message);
    }
}

/// The table from `--rule` strings, one entry each.
fn inline_table(rules: &[String]) -> anyhow::Result<Table> {
    let checked = rules::check_inline(rules);
    match checked.table {
        Some(table) => {
            log_warnings(&checked.diagnostics);
            Ok(table)
        }
        None => {
            let shown: Vec<String> = checked
                .diagnostics
                .iter()
                .map(Diagnostic::headline)
                .collect();
            anyhow::bail!("invalid --rule:\n{}", shown.join("\n"))
        }
    }
}
