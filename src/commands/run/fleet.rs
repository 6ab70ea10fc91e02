//! `dlqd run` serving several DLQs: several `--rules` files or a rules directory, one
//! handler ([`daemon::run`]) per DLQ, each with its own control channel, all on the one
//! runtime, one metrics endpoint (every series labelled `queue`) and one depth watch.
//!
//! This supervisor turns signals into each handler's controls: SIGTERM/SIGINT stop every
//! one; SIGHUP reads the files (the directory) again and carries out
//! [`crate::fleet::plan`]: a changed table is reloaded, a new file starts its DLQ, a DLQ
//! no file names any more is retired (stopped as a stop does: what is in flight is
//! confirmed and acknowledged, the rest handed back), an invalid file keeps its DLQ on
//! the old table. One DLQ's trouble stays its own: a missing or refused DLQ is waited
//! for ([`Config::wait_for_dlq`]); a handler that ends with an error ends alone (a later
//! SIGHUP starts it again). The run's exit status is the worst of the DLQs': 1 when one
//! ended with an error, else 3 when under `--once` actions failed, else 0.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context as _;
use tokio::sync::{mpsc, watch};
use tokio::task::JoinSet;
use tracing::{error, info, warn};

use super::{
    DEPTH_EVERY, EXIT_ACTIONS_FAILED, ONCE_CONNECT_DEADLINE, STOP_PROMISE, limits, log_warnings,
    overdue, runtime, serve_metrics,
};
use crate::audit::Audit;
use crate::cli::RunArgs;
use crate::daemon::{self, Config, Control, DaemonError, Summary};
use crate::depth_watch::{self, Watched};
use crate::fleet::{self, FleetError, Members, Read};
use crate::metrics::Metrics;
use crate::observer::Observer;
use crate::progress::Progress;
use crate::rules::Table;
use crate::shutdown::{Signal, Signals};

/// What every DLQ's handler is started with (the flags apply to each DLQ alike).
struct Settings {
    urls: Vec<String>,
    prefetch: u16,
    stage_kind: crate::stage::StageKind,
    once: bool,
    give_up_after: Option<std::time::Duration>,
    limits: daemon::Limits,
    audit: Option<Audit>,
    metrics: Metrics,
}

/// A DLQ's running handler.
struct Handle {
    control: mpsc::UnboundedSender<Control>,
    /// Tells this handler from an earlier one of the same DLQ (retired, then named again).
    generation: u64,
    observer: Observer,
}

/// How one handler ended.
type Ended = (String, u64, Result<Summary, DaemonError>);

struct Supervisor {
    settings: Settings,
    /// The `--rules` arguments, read again on SIGHUP.
    rules_args: Vec<PathBuf>,
    /// The DLQs served and the file each one's table came from.
    members: Members,
    running: BTreeMap<String, Handle>,
    tasks: JoinSet<Ended>,
    /// Which DLQ each task serves (to know whose handler a panic ended).
    task_queues: std::collections::HashMap<tokio::task::Id, String>,
    generation: u64,
    /// What the depth watch reads.
    watched: watch::Sender<Watched>,
    stopping: bool,
    /// Every handler's end, retired ones included: the exit status.
    ends: Vec<(String, Result<Summary, DaemonError>)>,
}

pub(super) fn run(args: RunArgs) -> anyhow::Result<ExitCode> {
    if args.queue.is_some() {
        anyhow::bail!(
            "--queue names one DLQ: with several rules files (or a rules directory) each \
             file's INPUTQ names its DLQ"
        );
    }
    let paths = fleet::rules_files(&args.rules)?;
    let plan = fleet::plan(&Members::new(), read_logged(&paths));
    if !plan.problems.is_empty() {
        return Err(FleetError::Problems(plan.problems).into());
    }
    let names: Vec<&str> = plan.start.iter().map(|(q, _)| q.as_str()).collect();
    info!(dlqs = names.len(), queues = %names.join(", "), "serving {} DLQs", names.len());
    let metrics = Metrics::new();
    let settings = Settings {
        urls: args.broker.urls.clone(),
        prefetch: args.prefetch,
        stage_kind: args.stage_queues,
        once: args.once,
        give_up_after: args
            .connect_deadline
            .or(args.once.then_some(ONCE_CONNECT_DEADLINE)),
        limits: limits(&args),
        audit: args.audit.as_deref().map(Audit::open).transpose()?,
        metrics: metrics.clone(),
    };
    let runtime = runtime().context("cannot start the async runtime")?;
    let (urls, metrics_addr, once) = (args.broker.urls.clone(), args.metrics_addr, args.once);
    let ends = runtime.block_on(async move {
        let server = serve_metrics(metrics_addr, metrics).await?;
        let (watched, watched_rx) = watch::channel(Watched::new());
        let depth = metrics_addr
            .is_some()
            .then(|| depth_watch::spawn_many(urls, watched_rx, DEPTH_EVERY));
        let signals = Signals::install().context("cannot install signal handlers")?;
        let (stop_tx, stop_rx) = watch::channel(false);
        let mut sup = Supervisor {
            settings,
            rules_args: args.rules.clone(),
            members: plan.members,
            running: BTreeMap::new(),
            tasks: JoinSet::new(),
            task_queues: std::collections::HashMap::new(),
            generation: 0,
            watched,
            stopping: false,
            ends: Vec::new(),
        };
        for (queue, table) in plan.start {
            sup.start(queue, table);
        }
        let finished = tokio::select! {
            () = sup.supervise(signals, stop_tx) => true,
            () = overdue(stop_rx) => false,
        };
        for task in [server, depth].into_iter().flatten() {
            task.abort();
        }
        if !finished {
            warn!(after = ?STOP_PROMISE,
                "stop: dlqd could not finish in time (is the broker blocking publishers?); \
                 exiting now: the broker redelivers what is unacknowledged");
            return anyhow::Ok(None);
        }
        anyhow::Ok(Some(std::mem::take(&mut sup.ends)))
    })?;
    runtime.shutdown_background();
    let Some(ends) = ends else {
        return Ok(ExitCode::SUCCESS);
    };
    exit_status(&ends, once)
}

/// The worst of the DLQs' ends: an error (exit 1, naming them), failed actions under
/// `--once` (3), or a clean end (0).
fn exit_status(
    ends: &[(String, Result<Summary, DaemonError>)],
    once: bool,
) -> anyhow::Result<ExitCode> {
    let failed: Vec<&str> = ends
        .iter()
        .filter(|(_, r)| r.is_err())
        .map(|(q, _)| q.as_str())
        .collect();
    if !failed.is_empty() {
        anyhow::bail!(
            "{} of {} DLQ(s) stopped with an error (the others ran on; see the log): {}",
            failed.len(),
            ends.len(),
            failed.join(", ")
        );
    }
    let troubled: Vec<&str> = ends
        .iter()
        .filter(|(_, r)| r.as_ref().is_ok_and(|s| s.failures() > 0 || s.held > 0))
        .map(|(q, _)| q.as_str())
        .collect();
    if once && !troubled.is_empty() {
        warn!(queues = %troubled.join(", "),
            "actions failed: the messages stay on the DLQ (exit status {EXIT_ACTIONS_FAILED})");
        return Ok(ExitCode::from(EXIT_ACTIONS_FAILED));
    }
    Ok(ExitCode::SUCCESS)
}

/// Read and check the files, their warnings logged.
fn read_logged(paths: &[PathBuf]) -> Vec<Read> {
    let read = fleet::read_all(paths);
    for r in &read {
        if let Ok(t) = &r.outcome {
            log_warnings(&t.warnings);
        }
    }
    read
}

impl Supervisor {
    /// Until every handler has ended: signals become controls, ends are collected.
    async fn supervise(&mut self, mut signals: Signals, stop_seen: watch::Sender<bool>) {
        loop {
            tokio::select! {
                signal = signals.recv() => match signal {
                    Signal::Stop => {
                        stop_seen.send_replace(true);
                        self.stop_all();
                    }
                    Signal::Reload if self.stopping => {}
                    Signal::Reload => self.reload(),
                },
                joined = self.tasks.join_next_with_id() => match joined {
                    None => return,
                    Some(Ok((id, (queue, generation, result)))) => {
                        self.task_queues.remove(&id);
                        self.ended(queue, generation, result);
                    }
                    Some(Err(e)) => {
                        // A handler that panicked: its DLQ is no longer served.
                        let queue = self.task_queues.remove(&e.id()).unwrap_or_default();
                        let generation = self.running.get(&queue).map_or(0, |h| h.generation);
                        let failed = crate::broker::BrokerError::lost("the DLQ's handler", e.to_string());
                        self.ended(queue, generation, Err(DaemonError::Broker(failed)));
                    }
                },
            }
        }
    }

    fn start(&mut self, queue: String, table: Table) {
        let s = &self.settings;
        let observer = Observer::new(
            s.metrics.for_queue(&queue),
            s.audit.clone(),
            Progress::hidden(),
        );
        let config = Config {
            urls: s.urls.clone(),
            queue: queue.clone(),
            prefetch: s.prefetch,
            stage_kind: s.stage_kind,
            once: s.once,
            give_up_after: s.give_up_after,
            observer: observer.clone(),
            limits: s.limits,
            wait_for_dlq: true,
        };
        let (control, control_rx) = mpsc::unbounded_channel();
        self.generation += 1;
        let generation = self.generation;
        let name = queue.clone();
        let task = self.tasks.spawn(async move {
            let result = daemon::run(config, table, control_rx).await;
            (name, generation, result)
        });
        self.task_queues.insert(task.id(), queue.clone());
        self.running.insert(
            queue,
            Handle {
                control,
                generation,
                observer,
            },
        );
        self.publish_watched();
    }

    fn publish_watched(&self) {
        let set: Watched = self
            .running
            .iter()
            .map(|(q, h)| (q.clone(), h.observer.clone()))
            .collect();
        self.watched.send_replace(set);
    }

    fn stop_all(&mut self) {
        if !self.stopping {
            info!(
                dlqs = self.running.len(),
                "stop requested; every DLQ finishes the messages in flight"
            );
        }
        self.stopping = true;
        for h in self.running.values() {
            let _ = h.control.send(Control::Stop);
        }
    }

    /// SIGHUP: the files again, and the plan carried out.
    fn reload(&mut self) {
        let paths = match fleet::rules_files(&self.rules_args) {
            Ok(p) => p,
            Err(e) => {
                error!(error = %e, "reload failed; every DLQ keeps its rules");
                return;
            }
        };
        let plan = fleet::plan(&self.members, read_logged(&paths));
        for p in &plan.problems {
            error!(error = %p, "reload failed for a rules file; its DLQ, if it had one, keeps the old rules");
        }
        for queue in plan.retire {
            if let Some(h) = self.running.remove(&queue) {
                info!(queue = %queue, "no rules file names this DLQ any more: retiring it");
                let _ = h.control.send(Control::Stop);
            }
        }
        for (queue, table) in plan.reload {
            let path = plan
                .members
                .get(&queue)
                .map(|m| m.path.display().to_string());
            match self.running.get(&queue) {
                Some(h) if h.control.send(Control::Reload(Box::new(table))).is_ok() => {
                    info!(queue = %queue, rules = %path.unwrap_or_default(), "rules reloaded");
                }
                _ => warn!(queue = %queue, "rules changed, but this DLQ's handler has ended"),
            }
        }
        self.members = plan.members;
        for (queue, table) in plan.start {
            let path = self
                .members
                .get(&queue)
                .map(|m| m.path.display().to_string());
            info!(queue = %queue, rules = %path.unwrap_or_default(), "new rules file: serving its DLQ");
            self.start(queue, table);
        }
        self.publish_watched();
    }

    /// A handler ended: a retired one, or one that stopped (a stop, WAIT, `--once`, an
    /// error). Only its own DLQ is affected.
    fn ended(&mut self, queue: String, generation: u64, result: Result<Summary, DaemonError>) {
        let current = self
            .running
            .get(&queue)
            .is_some_and(|h| h.generation == generation);
        match &result {
            Ok(s) => {
                info!(queue = %queue, done = s.done.values().sum::<u64>(), failed = s.failures(),
                held = s.held, summary = %s, "run summary")
            }
            Err(e) => error!(queue = %queue, error = %e,
                "this DLQ's handler stopped with an error; the other DLQs go on"),
        }
        if current {
            // Ended cleanly: no longer served. Ended with an error: still reported
            // (not connected), so /health and dlqd_dlq_up say so.
            if let Some(h) = self.running.remove(&queue)
                && result.is_ok()
            {
                h.observer.metrics().retire();
            }
            // Ended with an error: a later SIGHUP that finds its file starts it again
            // (not under --once, which ran its course).
            if result.is_err() && !self.settings.once {
                self.members.remove(&queue);
            }
            self.publish_watched();
        } else if !self.running.contains_key(&queue) {
            // Retired (and not named again since).
            self.settings.metrics.for_queue(&queue).retire();
            match result.as_ref().ok().and_then(|s| s.waiting.as_ref()) {
                Some(w) if w.total() > 0 => warn!(queue = %queue, delayed = w.delayed,
                    left = w.left, "retired; {w}"),
                Some(w) => info!(queue = %queue, "retired; {w}"),
                None => info!(queue = %queue, "retired"),
            }
        }
        self.ends.push((queue, result));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::broker::BrokerError;

    fn ok(failures: u64) -> Result<Summary, DaemonError> {
        let mut s = Summary::default();
        s.done("forward");
        for _ in 0..failures {
            s.failed("forward", "returned");
        }
        Ok(s)
    }

    fn err() -> Result<Summary, DaemonError> {
        Err(DaemonError::Broker(BrokerError::lost("x", "y")))
    }

    #[test]
    fn the_exit_status_is_the_worst_dlqs() {
        let code = |ends: Vec<(&str, Result<Summary, DaemonError>)>, once| {
            let ends: Vec<_> = ends.into_iter().map(|(q, r)| (q.to_string(), r)).collect();
            exit_status(&ends, once).map_err(|e| e.to_string())
        };
        assert_eq!(
            code(vec![("a", ok(0)), ("b", ok(0))], true),
            Ok(ExitCode::SUCCESS)
        );
        assert_eq!(
            code(vec![("a", ok(0)), ("b", ok(2))], true),
            Ok(ExitCode::from(EXIT_ACTIONS_FAILED))
        );
        // Failed actions matter under --once only, as with one DLQ.
        assert_eq!(code(vec![("a", ok(2))], false), Ok(ExitCode::SUCCESS));
        let e = code(vec![("a", ok(2)), ("b", err()), ("c", ok(0))], true).unwrap_err();
        assert_eq!(
            e,
            "1 of 3 DLQ(s) stopped with an error (the others ran on; see the log): b"
        );
    }
}
