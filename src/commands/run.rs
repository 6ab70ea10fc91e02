//! `dlqd run`: load the rules (file or --rule), work out the DLQ and the stop condition,
//! and run the handler (src/daemon.rs) on a tokio runtime.

use std::process::ExitCode;

use anyhow::Context;
use tracing::warn;

use crate::audit::Audit;
use crate::cli::RunArgs;
use crate::daemon::{self, Config};
use crate::depth_watch;
use crate::metrics::Metrics;
use crate::metrics_server::MetricsServer;
use crate::observer::Observer;
use crate::progress::Progress;
use crate::rules::{self, Diagnostic, Table};

/// How often the DLQ's depth is read for the gauge and the progress bar.
const DEPTH_EVERY: std::time::Duration = std::time::Duration::from_secs(2);

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
    let metrics = Metrics::new();
    let audit = args.audit.as_deref().map(Audit::open).transpose()?;
    let progress = if args.once {
        Progress::start(None)
    } else {
        Progress::hidden()
    };
    let observer = Observer::new(metrics.clone(), audit, progress);
    let config = Config {
        url: args.broker.url.clone(),
        queue,
        prefetch: args.prefetch,
        once: args.once,
        rules_path,
        observer: observer.clone(),
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    let (url, metrics_addr) = (args.broker.url.clone(), args.metrics_addr);
    runtime.block_on(async move {
        let server = match metrics_addr {
            Some(addr) => Some(
                MetricsServer::bind(addr)
                    .await?
                    .spawn(metrics, std::future::pending()),
            ),
            None => None,
        };
        // The gauge and the progress bar want the depth while messages flow.
        let watch = (metrics_addr.is_some() || observer.progress().is_visible())
            .then(|| depth_watch::spawn(url, config.queue.clone(), DEPTH_EVERY, observer.clone()));
        let result = daemon::run(config, table).await;
        observer.finish();
        for task in [server, watch].into_iter().flatten() {
            task.abort();
        }
        result.map_err(anyhow::Error::from)
    })?;
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
