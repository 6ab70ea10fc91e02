//! `dlqd run`: load the rules (file or --rule), work out the DLQ and the stop condition,
//! and run the handler (src/daemon/) on a tokio runtime. Signals are the command's:
//! SIGTERM/SIGINT become a stop, SIGHUP a reload (the file read and checked here; an
//! invalid file keeps the old table), handed to the daemon on its control channel.
//! Several rules files (or a rules directory) serve several DLQs: [`fleet`].

mod fleet;

use std::process::ExitCode;

use std::path::PathBuf;

use anyhow::Context;
use tokio::sync::mpsc;
use tracing::{error, info, warn};

use crate::audit::Audit;
use crate::cli::RunArgs;
use crate::daemon::{self, Config, Control};
use crate::depth_watch;
use crate::metrics::Metrics;
use crate::metrics_server::MetricsServer;
use crate::observer::Observer;
use crate::progress::Progress;
use crate::rules::{self, Diagnostic, Table};
use crate::shutdown::{Signal, Signals};

/// How often the DLQ's depth is read for the gauge and the progress bar.
const DEPTH_EVERY: std::time::Duration = std::time::Duration::from_secs(2);
/// The stop promise: dlqd exits this long after the first SIGTERM/SIGINT at the latest,
/// even when the broker blocks it (a memory or disk alarm stops every publish and
/// close). What is unacknowledged then goes back to the DLQ: duplicates, not losses.
const STOP_PROMISE: std::time::Duration = std::time::Duration::from_secs(9);
/// `--connect-deadline` under `--once` when none is given: a one-shot run (a Job) ends.
const ONCE_CONNECT_DEADLINE: std::time::Duration = std::time::Duration::from_secs(60);
/// `run --once` exit status when actions failed (the messages stayed on the DLQ).
pub const EXIT_ACTIONS_FAILED: u8 = 3;

pub fn run(args: RunArgs) -> anyhow::Result<ExitCode> {
    if crate::fleet::is_fleet(&args.rules) {
        return fleet::run(args);
    }
    let (table, rules_path) = match args.rules.first() {
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
    let observer = Observer::new(metrics.for_queue(&queue), audit, progress);
    let config = Config {
        urls: args.broker.urls.clone(),
        queue,
        prefetch: args.prefetch,
        stage_kind: args.stage_queues,
        once: args.once,
        give_up_after: args
            .connect_deadline
            .or(args.once.then_some(ONCE_CONNECT_DEADLINE)),
        observer: observer.clone(),
        limits: limits(&args),
        wait_for_dlq: false,
    };
    let once = args.once;
    let runtime = runtime().context("cannot start the async runtime")?;
    let (urls, metrics_addr) = (args.broker.urls.clone(), args.metrics_addr);
    let summary = runtime.block_on(async move {
        let server = serve_metrics(metrics_addr, metrics).await?;
        // The gauge and the progress bar want the depth while messages flow.
        let watch = (metrics_addr.is_some() || observer.progress().is_visible())
            .then(|| depth_watch::spawn(urls, config.queue.clone(), DEPTH_EVERY, observer.clone()));
        let signals = Signals::install().context("cannot install signal handlers")?;
        let (control, control_rx) = mpsc::unbounded_channel();
        let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
        let forward = tokio::spawn(forward_signals(signals, rules_path, control, stop_tx));
        let result = tokio::select! {
            r = daemon::run(config, table, control_rx) => Some(r),
            () = overdue(stop_rx) => None,
        };
        observer.finish();
        for task in [server, watch, Some(forward)].into_iter().flatten() {
            task.abort();
        }
        let Some(result) = result else {
            warn!(after = ?STOP_PROMISE,
                "stop: dlqd could not finish in time (is the broker blocking publishers?); \
                 exiting now: the broker redelivers what is unacknowledged");
            return anyhow::Ok(None);
        };
        let summary = result.map_err(anyhow::Error::from)?;
        info!(done = summary.done.values().sum::<u64>(), failed = summary.failures(),
            held = summary.held, summary = %summary, "run summary");
        anyhow::Ok(Some(summary))
    })?;
    // The runtime is not waited for: a connection the broker blocks would hold it.
    runtime.shutdown_background();
    match summary {
        Some(s) if once && (s.failures() > 0 || s.held > 0) => {
            warn!(
                failed = s.failures(),
                held = s.held,
                "actions failed: the messages stay on the DLQ (exit status {EXIT_ACTIONS_FAILED})"
            );
            Ok(ExitCode::from(EXIT_ACTIONS_FAILED))
        }
        _ => Ok(ExitCode::SUCCESS),
    }
}

/// The run's limits from the flags: `--rate` and `--max` (the daemon puts a rules
/// file's `RATE()` under them, with [`daemon::Limits::over`]).
fn limits(args: &RunArgs) -> daemon::Limits {
    let flags = daemon::Limits {
        rate: args.limits.rate,
        max: args.limits.max,
    };
    if let Some(rate) = flags.rate {
        info!(rate = %rate, "paced: at most {rate} taken from the DLQ");
    }
    flags
}

/// The runtime `dlqd run` works on. lapin does its socket I/O on a thread of its own;
/// DLQD_RUNTIME=current (an experiment knob, measured by scripts/bench-drain.sh) puts
/// the handler on one thread, anything else on two workers.
fn runtime() -> std::io::Result<tokio::runtime::Runtime> {
    match std::env::var("DLQD_RUNTIME").as_deref() {
        Ok("current") => tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build(),
        _ => tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build(),
    }
}

/// `--metrics-addr`: the metrics server, bound and serving until the runtime ends.
async fn serve_metrics(
    addr: Option<std::net::SocketAddr>,
    metrics: Metrics,
) -> anyhow::Result<Option<tokio::task::JoinHandle<()>>> {
    Ok(match addr {
        Some(addr) => Some(
            MetricsServer::bind(addr)
                .await?
                .spawn(metrics, std::future::pending()),
        ),
        None => None,
    })
}

/// Resolves [`STOP_PROMISE`] after the first stop signal (never without one).
async fn overdue(mut stop: tokio::sync::watch::Receiver<bool>) {
    if stop.wait_for(|s| *s).await.is_err() {
        return std::future::pending().await;
    }
    tokio::time::sleep(STOP_PROMISE).await;
}

/// Turn signals into the daemon's controls until the daemon is gone.
async fn forward_signals(
    mut signals: Signals,
    rules_path: Option<PathBuf>,
    control: mpsc::UnboundedSender<Control>,
    stop_seen: tokio::sync::watch::Sender<bool>,
) {
    loop {
        let c = match signals.recv().await {
            Signal::Stop => {
                stop_seen.send_replace(true);
                Control::Stop
            }
            Signal::Reload => match reload(rules_path.as_deref()) {
                Some(table) => Control::Reload(Box::new(table)),
                None => continue,
            },
        };
        if control.send(c).is_err() {
            return;
        }
    }
}

/// SIGHUP: the rules file again, or `None` (logged) when it is invalid or there is none.
fn reload(path: Option<&std::path::Path>) -> Option<Table> {
    let Some(path) = path else {
        info!("SIGHUP: inline --rule table, nothing to reload");
        return None;
    };
    match rules::load(path) {
        Ok((table, warnings)) => {
            log_warnings(&warnings);
            info!(rules = %path.display(), "rules reloaded");
            Some(table)
        }
        Err(e) => {
            error!(error = %e, "reload failed; keeping the old rules");
            None
        }
    }
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
