//! The handler's consume loop: take a dead letter, decide (the same [`Decider`] the
//! dry run uses), carry the decision out, and acknowledge the DLQ copy only once every
//! message that replaces it is confirmed by the broker. Passes, WAIT, reload, reconnect.
//!
//! # Pipelining
//!
//! Many actions are in flight at once (up to `--prefetch` deliveries): each delivery's
//! publish is sent at once and its confirm awaited in a set of futures; a delivery is
//! *done* when its confirm arrives, and the DLQ is acknowledged with `multiple` up to the
//! highest tag below the oldest delivery still in flight.
//!
//! # Leaving messages on the DLQ, and passes
//!
//! A message that must stay on the DLQ (ACTION(IGNORE), no rule, or a failed action) is
//! republished, confirmed, to the DLQ's own tail with `x-dlqd-examined` = now and
//! `x-dlqd-pass` = the id of the current *pass*, and the original is acknowledged. So
//! the DLQ keeps the message (visible to other tools, durable, in order) while the
//! consumer moves on: no message is held unacknowledged and memory stays bounded by the
//! prefetch however deep the DLQ is.
//!
//! When a delivery carries the current pass's id, the handler has come round the whole
//! queue: it cancels the consumer, finishes the actions in flight, and closes the
//! consuming channel, which hands that message and every later unacknowledged one back
//! to the queue in order. Then it waits until the earliest left message is due again
//! (`x-dlqd-examined` + RETRYINT) — or stops, under `WAIT(NO)`/`--once` — and starts a
//! new pass with a new id. A message marked by another pass (an earlier run, another
//! instance) that is not yet due is moved to the tail unexamined, with the current
//! pass's id, so that it is seen at most once per RETRYINT and does not block new work.
//!
//! New dead letters that arrive while the handler waits between passes are handled at
//! the start of the next pass (at most RETRYINT later).
//!
//! # Failures
//!
//! A publish that is returned (NO_ROUTE), nacked or lost with its channel, or a target
//! that does not exist, leaves the message on the DLQ as above, logged with the broker's
//! reason. A failed retry is put back with its retry count raised: it counts toward
//! RETRY(n). There is no fall-through to a later rule. If even the copy to the DLQ
//! cannot be published, the session ends without acknowledging: the broker redelivers.
//!
//! # Connection loss and stop
//!
//! A lost session is reopened with capped exponential backoff, forever; unacknowledged
//! deliveries come back from the broker (so a crash or a loss can duplicate, never lose).
//! SIGTERM/SIGINT cancel the consumer, finish what is in flight (at most 8 s), close the
//! channel (unacknowledged deliveries go back) and return. SIGHUP reloads the rules file;
//! an invalid file keeps the old table and logs the diagnostics.

use std::collections::{BTreeSet, HashMap};
use std::fs::File;
use std::future::Future;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use futures_lite::StreamExt;
use tracing::{debug, error, info, warn};

use crate::broker::{ActionFailure, BrokerError, Confirm, Delivery, DlqConsumer, Session};
use crate::capture;
use crate::dead_letter::DeadLetter;
use crate::decide::{Decider, Outcome};
use crate::message::Message;
use crate::observer::{ActionEvent, Observer};
use crate::outgoing::{self, ForwardInfo};
use crate::rules::{self, Table, Wait};
use crate::shutdown::{Signal, Signals};

/// How long a stop may spend finishing the actions in flight.
const STOP_GRACE: Duration = Duration::from_secs(8);
/// How often an idle consumer checks whether WAIT(NO)/WAIT(d) should stop it.
const IDLE_TICK: Duration = Duration::from_millis(250);
/// How many times a copy for the DLQ is attempted before the session is given up.
const DLQ_ATTEMPTS: u32 = 3;

/// What `dlqd run` was asked to do.
#[derive(Debug, Clone)]
pub struct Config {
    pub url: String,
    /// The DLQ (from --queue or INPUTQ).
    pub queue: String,
    pub prefetch: u16,
    /// `--once`: WAIT(NO) whatever the rules say.
    pub once: bool,
    /// The rules file, re-read on SIGHUP (`None` for --rule tables).
    pub rules_path: Option<PathBuf>,
    /// Where actions, connection state and depth are reported (metrics, audit, progress).
    pub observer: Observer,
}

/// Why the handler stopped with an error.
#[derive(Debug, thiserror::Error)]
pub enum DaemonError {
    #[error(transparent)]
    Broker(#[from] BrokerError),
    #[error("cannot install signal handlers: {0}")]
    Signals(#[from] std::io::Error),
}

/// Run the handler until it stops (WAIT, --once, a signal) or hits a fatal error.
pub async fn run(config: Config, table: Table) -> Result<(), DaemonError> {
    let signals = Signals::install()?;
    let mut daemon = Daemon {
        retry_interval: table.control.retry_interval,
        wait: effective_wait(&config, &table),
        decider: Decider::new(table),
        config,
        signals,
        archives: HashMap::new(),
        stopping: false,
        last_work: Instant::now(),
    };
    daemon.run().await
}

fn effective_wait(config: &Config, table: &Table) -> Wait {
    if config.once {
        Wait::No
    } else {
        table.control.wait
    }
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

/// A pass id: unique enough across passes, runs and instances.
fn new_pass_id() -> u64 {
    use std::sync::atomic::{AtomicU64, Ordering};
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(0);
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    (nanos ^ (u64::from(std::process::id()) << 40) ^ n.rotate_left(20)) & (i64::MAX as u64)
}

struct Daemon {
    config: Config,
    decider: Decider,
    retry_interval: Duration,
    wait: Wait,
    signals: Signals,
    archives: HashMap<PathBuf, File>,
    stopping: bool,
    last_work: Instant,
}

/// How a pass ended.
enum PassEnd {
    /// Came round to a message this pass left; the earliest left message is due at this time.
    CameRound { next_due_ms: u64 },
    /// WAIT(NO) and the DLQ is empty, or WAIT(d) ran out.
    NothingToDo,
    /// A stop was asked for.
    Stopped,
}

/// What an action in flight is, for logging and for what to do if it fails.
#[derive(Debug, Clone)]
enum Kind {
    Retry {
        attempt: u32,
    },
    Forward,
    /// A copy on the DLQ's tail (leave, skip, or the fallback after a failed action).
    Dlq {
        attempts: u32,
        retries: Option<u32>,
    },
}

/// One delivery whose action is in flight.
struct InFlight {
    message: Message,
    kind: Kind,
    action: &'static str,
    line: Option<u32>,
    target: String,
    /// When the delivery arrived (for the processing-latency metric).
    since: Instant,
    delay_ms: Option<u64>,
}

type Completion = Pin<Box<dyn Future<Output = (u64, Result<(), ActionFailure>)> + Send>>;

fn completion(tag: u64, confirm: Confirm) -> Completion {
    Box::pin(async move { (tag, confirm.await) })
}

fn ready(tag: u64, result: Result<(), ActionFailure>) -> Completion {
    Box::pin(async move { (tag, result) })
}

fn message_id(m: &Message) -> &str {
    m.properties.message_id.as_deref().unwrap_or("")
}

/// The state of one pass's deliveries.
struct Pass {
    id: u64,
    states: HashMap<u64, InFlight>,
    /// Tags taken and not yet done.
    pending: BTreeSet<u64>,
    /// Tags done and not yet acknowledged (above a pending tag).
    done: BTreeSet<u64>,
    /// Tags kept unacknowledged until the pass ends (their channel closes): messages
    /// whose headers are too large for any copy to be published (see `broker::frame`).
    held: BTreeSet<u64>,
    next_due_ms: Option<u64>,
}

impl Daemon {
    async fn run(&mut self) -> Result<(), DaemonError> {
        let mut backoff = Backoff::new(Duration::from_millis(200), Duration::from_secs(30));
        loop {
            if self.stopping {
                return Ok(());
            }
            let opened = tokio::select! {
                s = Session::open(&self.config.url) => Some(s),
                sig = self.signals.recv() => { self.on_signal(sig); None }
            };
            let Some(opened) = opened else { continue };
            let mut session = match opened {
                Ok(s) => s,
                Err(e) if e.is_fatal() => return Err(e.into()),
                Err(e) => {
                    warn!(error = %e, "broker unavailable; will retry");
                    self.pause(backoff.next_delay()).await;
                    continue;
                }
            };
            info!(queue = %self.config.queue, url = %crate::broker::redact(&self.config.url), "connected");
            self.config.observer.connected(true);
            let ended = self.run_session(&mut session, &mut backoff).await;
            self.config.observer.connected(false);
            match ended {
                Ok(()) => {
                    session.close().await;
                    return Ok(());
                }
                Err(e) if e.is_fatal() => {
                    session.close().await;
                    return Err(e.into());
                }
                Err(e) => {
                    warn!(error = %e, "session lost; reconnecting");
                    session.close().await;
                    self.pause(backoff.next_delay()).await;
                }
            }
        }
    }

    /// Sleep, unless a stop comes first.
    async fn pause(&mut self, d: Duration) {
        let until = tokio::time::Instant::now() + d;
        while !self.stopping {
            tokio::select! {
                _ = tokio::time::sleep_until(until) => return,
                sig = self.signals.recv() => self.on_signal(sig),
            }
        }
    }

    fn on_signal(&mut self, sig: Signal) {
        match sig {
            Signal::Stop => {
                if !self.stopping {
                    info!("stop requested; finishing the messages in flight");
                }
                self.stopping = true;
            }
            Signal::Reload => self.reload(),
        }
    }

    fn reload(&mut self) {
        let Some(path) = self.config.rules_path.clone() else {
            info!("SIGHUP: inline --rule table, nothing to reload");
            return;
        };
        match rules::load(&path) {
            Ok((table, warnings)) => {
                for w in &warnings {
                    warn!(file = %w.path, line = w.line, column = w.column, "rules warning: {}", w.message);
                }
                if table
                    .control
                    .input_queue
                    .as_deref()
                    .is_some_and(|q| q != self.config.queue)
                {
                    warn!("INPUTQ changed; the new queue takes effect after a restart");
                }
                self.retry_interval = table.control.retry_interval;
                self.wait = effective_wait(&self.config, &table);
                self.decider = Decider::new(table);
                info!(rules = %path.display(), "rules reloaded");
            }
            Err(e) => error!(error = %e, "reload failed; keeping the old rules"),
        }
    }

    async fn run_session(
        &mut self,
        session: &mut Session,
        backoff: &mut Backoff,
    ) -> Result<(), BrokerError> {
        loop {
            let end = self.run_pass(session).await?;
            backoff.reset();
            match end {
                PassEnd::Stopped | PassEnd::NothingToDo => return Ok(()),
                PassEnd::CameRound { next_due_ms } => {
                    if self.wait == Wait::No {
                        info!("came round the DLQ; nothing more to do now (WAIT(NO))");
                        return Ok(());
                    }
                    let wait_ms = next_due_ms.saturating_sub(now_ms());
                    let mut sleep = Duration::from_millis(wait_ms);
                    if let Wait::For(d) = self.wait {
                        let left = d.saturating_sub(self.last_work.elapsed());
                        if left <= sleep {
                            self.pause(left).await;
                            info!("no new work for the WAIT time; stopping");
                            return Ok(());
                        }
                    }
                    sleep = sleep.max(Duration::from_millis(10));
                    debug!(
                        wait_ms = sleep.as_millis() as u64,
                        "came round the DLQ; waiting for the next pass"
                    );
                    self.pause(sleep).await;
                    if self.stopping {
                        return Ok(());
                    }
                }
            }
        }
    }

    async fn run_pass(&mut self, session: &mut Session) -> Result<PassEnd, BrokerError> {
        let mut consumer = session
            .consume(&self.config.queue, self.config.prefetch)
            .await?;
        let mut pass = Pass {
            id: new_pass_id(),
            states: HashMap::new(),
            pending: BTreeSet::new(),
            done: BTreeSet::new(),
            held: BTreeSet::new(),
            next_due_ms: None,
        };
        let mut futures: futures_util_like::Set = futures_util_like::Set::default();
        let mut end: Option<PassEnd> = None;
        let mut stop_deadline: Option<tokio::time::Instant> = None;
        let mut last_delivery = Instant::now();
        let result = loop {
            if self.stopping && end.is_none() {
                end = Some(PassEnd::Stopped);
                let _ = consumer.cancel().await;
            }
            if self.stopping && stop_deadline.is_none() {
                stop_deadline = Some(tokio::time::Instant::now() + STOP_GRACE);
            }
            if end.is_some() && futures.is_empty() {
                break Ok(());
            }
            let deadline = stop_deadline
                .unwrap_or_else(|| tokio::time::Instant::now() + Duration::from_secs(3600));
            tokio::select! {
                sig = self.signals.recv() => self.on_signal(sig),
                Some((tag, result)) = futures.next(), if !futures.is_empty() => {
                    if let Err(e) = self.completed(session, &mut pass, &mut futures, tag, result).await {
                        break Err(e);
                    }
                }
                d = consumer.next(), if end.is_none() => match d {
                    None => break Err(BrokerError::Amqp {
                        context: format!("consumer of '{}'", self.config.queue),
                        reason: "cancelled by the broker".into(),
                        fatal: false,
                    }),
                    Some(Err(e)) => break Err(e),
                    Some(Ok(d)) => {
                        last_delivery = Instant::now();
                        if let Some(e) = self.take(session, &mut pass, &mut futures, d).await {
                            end = Some(e);
                            let _ = consumer.cancel().await;
                        }
                    }
                },
                _ = tokio::time::sleep(IDLE_TICK), if end.is_none() && futures.is_empty() => {
                    if last_delivery.elapsed() >= IDLE_TICK && self.idle_should_stop(session).await {
                        end = Some(PassEnd::NothingToDo);
                        let _ = consumer.cancel().await;
                    }
                }
                _ = tokio::time::sleep_until(deadline), if stop_deadline.is_some() => {
                    warn!(in_flight = futures.len(), "stop grace period over; the broker will redeliver what is unacknowledged");
                    break Ok(());
                }
            }
            // Whatever else is already confirmed, before one ack for the lot.
            let mut failed = None;
            while let Some(Some((tag, result))) =
                futures_lite::future::poll_once(futures.next()).await
            {
                if let Err(e) = self
                    .completed(session, &mut pass, &mut futures, tag, result)
                    .await
                {
                    failed = Some(e);
                    break;
                }
            }
            if let Some(e) = failed {
                break Err(e);
            }
            if let Err(e) = ack_done(&consumer, &mut pass).await {
                break Err(e);
            }
        };
        consumer.close().await;
        result?;
        Ok(match end {
            Some(PassEnd::CameRound { .. }) | None if !self.stopping => PassEnd::CameRound {
                next_due_ms: pass
                    .next_due_ms
                    .unwrap_or_else(|| now_ms() + self.retry_interval.as_millis() as u64),
            },
            Some(e) if !self.stopping => e,
            _ => PassEnd::Stopped,
        })
    }

    /// Under WAIT(NO): the DLQ is empty. Under WAIT(d): no work for d.
    async fn idle_should_stop(&mut self, session: &Session) -> bool {
        match self.wait {
            Wait::Yes => false,
            Wait::For(d) => {
                if self.last_work.elapsed() >= d {
                    info!("no new work for the WAIT time; stopping");
                    true
                } else {
                    false
                }
            }
            Wait::No => match session.queue_depth(&self.config.queue).await {
                Ok(0) => {
                    self.config.observer.depth(0);
                    info!("the DLQ is empty (WAIT(NO)); stopping");
                    true
                }
                Ok(n) => {
                    self.config.observer.depth(u64::from(n));
                    false
                }
                Err(e) => {
                    warn!(error = %e, "cannot read the DLQ depth");
                    false
                }
            },
        }
    }

    /// Take one delivery: decide and start its action. Returns how the pass ends when
    /// this delivery shows the handler has come round.
    async fn take(
        &mut self,
        session: &mut Session,
        pass: &mut Pass,
        futures: &mut futures_util_like::Set,
        d: Delivery,
    ) -> Option<PassEnd> {
        let Delivery { tag, message, .. } = d;
        let since = Instant::now();
        let now = now_ms();
        let ri = self.retry_interval.as_millis() as u64;
        // A mark more than RETRYINT ahead of this clock is not believed (another host's
        // clock, or garbage): it would otherwise put the next pass off until then.
        let examined = outgoing::examined_at(&message).filter(|&e| e <= now.saturating_add(ri));
        if outgoing::pass_of(&message) == Some(pass.id) {
            // Handed back to the queue when the consumer channel closes.
            let due = examined.map_or(now + ri, |e| e.saturating_add(ri));
            pass.next_due_ms = Some(pass.next_due_ms.map_or(due, |n| n.min(due)));
            return Some(PassEnd::CameRound {
                next_due_ms: pass.next_due_ms.unwrap_or(due),
            });
        }
        pass.pending.insert(tag);
        if let Some(e) = examined
            && now < e.saturating_add(ri)
        {
            let due = e.saturating_add(ri);
            pass.next_due_ms = Some(pass.next_due_ms.map_or(due, |n| n.min(due)));
            let copy = outgoing::skipped(&message, pass.id);
            let confirm = session.publish("", &self.config.queue, &copy).await;
            debug!(
                message_id = message_id(&message),
                due_in_ms = due - now,
                "not due; moved to the DLQ's tail"
            );
            pass.states.insert(
                tag,
                InFlight {
                    message: copy,
                    kind: Kind::Dlq {
                        attempts: 1,
                        retries: None,
                    },
                    action: "skip",
                    line: None,
                    target: self.config.queue.clone(),
                    since,
                    delay_ms: None,
                },
            );
            futures.push(completion(tag, confirm));
            return None;
        }
        self.last_work = Instant::now();
        let decision = {
            let dl = DeadLetter::new(&message);
            let decision = self.decider.decide(&dl);
            (decision, dl.destq.clone(), dl.reason.clone())
        };
        let (decision, destq, reason) = decision;
        let line = decision.line;
        let queue = self.config.queue.clone();
        let mut delay_ms = None;
        let (kind, action, target, fut): (Kind, &'static str, String, Completion) =
            match decision.outcome {
                Outcome::Retry {
                    queue: target,
                    delay,
                    attempt,
                } => {
                    delay_ms = Some(u64::try_from(delay.as_millis()).unwrap_or(u64::MAX));
                    let via_delay = !delay.is_zero();
                    let copy = outgoing::for_retry(&message, attempt, via_delay);
                    let fut = if via_delay {
                        match self.park(session, &target, delay).await {
                            Ok(dq) => completion(tag, session.publish("", &dq, &copy).await),
                            Err(f) => ready(tag, Err(f)),
                        }
                    } else {
                        completion(tag, session.publish("", &target, &copy).await)
                    };
                    (Kind::Retry { attempt }, "retry", target, fut)
                }
                Outcome::Forward {
                    exchange,
                    routing_key,
                    keep_headers,
                } => {
                    let info = ForwardInfo {
                        rule_line: line,
                        original_queue: &destq,
                        reason: &reason,
                        keep_headers,
                    };
                    let copy = outgoing::for_forward(&message, &info);
                    let target = if exchange.is_empty() {
                        routing_key.clone()
                    } else {
                        format!("{exchange}/{routing_key}")
                    };
                    let fut = match session.ensure_exchange(&exchange).await {
                        Ok(()) => {
                            completion(tag, session.publish(&exchange, &routing_key, &copy).await)
                        }
                        Err(f) => ready(tag, Err(f)),
                    };
                    (Kind::Forward, "forward", target, fut)
                }
                Outcome::Discard { archive } => {
                    let result = match &archive {
                        Some(path) => self.archive(path, &message),
                        None => Ok(()),
                    };
                    let target = archive.map(|p| p.display().to_string()).unwrap_or_default();
                    (Kind::Forward, "discard", target, ready(tag, result))
                }
                Outcome::Leave => {
                    let copy = outgoing::for_dlq(&message, now, pass.id, None);
                    let due = now + ri;
                    pass.next_due_ms = Some(pass.next_due_ms.map_or(due, |n| n.min(due)));
                    let fut = completion(tag, session.publish("", &queue, &copy).await);
                    (
                        Kind::Dlq {
                            attempts: 1,
                            retries: None,
                        },
                        "leave",
                        queue,
                        fut,
                    )
                }
            };
        pass.states.insert(
            tag,
            InFlight {
                message,
                kind,
                action,
                line,
                target,
                since,
                delay_ms,
            },
        );
        futures.push(fut);
        None
    }

    /// An in-flight action as the observer (metrics, audit) sees it.
    fn event<'a>(&'a self, state: &'a InFlight, id: &'a str) -> ActionEvent<'a> {
        ActionEvent {
            queue: &self.config.queue,
            message_id: (!id.is_empty()).then_some(id),
            rule: state.line,
            action: state.action,
            target: (!state.target.is_empty()).then_some(state.target.as_str()),
            delay_ms: state.delay_ms,
            attempt: match state.kind {
                Kind::Retry { attempt } => Some(attempt),
                _ => None,
            },
        }
    }

    /// Check the retry target exists, then declare (cached) the delay queue in front of it.
    async fn park(
        &mut self,
        session: &mut Session,
        target: &str,
        delay: Duration,
    ) -> Result<String, ActionFailure> {
        session.ensure_queue(target).await?;
        session.delay_queue(delay, target).await
    }

    fn archive(&mut self, path: &Path, message: &Message) -> Result<(), ActionFailure> {
        let file = match self.archives.get_mut(path) {
            Some(f) => f,
            None => {
                let f = std::fs::OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(path)
                    .map_err(|e| {
                        ActionFailure::new(format!("cannot open archive {}: {e}", path.display()))
                    })?;
                self.archives.entry(path.to_path_buf()).or_insert(f)
            }
        };
        let mut line = capture::to_line(message);
        line.push('\n');
        file.write_all(line.as_bytes())
            .and_then(|()| file.flush())
            .map_err(|e| {
                ActionFailure::new(format!("cannot write archive {}: {e}", path.display()))
            })
    }

    /// An action finished: log it, mark the delivery done, or put it back on the DLQ.
    async fn completed(
        &mut self,
        session: &mut Session,
        pass: &mut Pass,
        futures: &mut futures_util_like::Set,
        tag: u64,
        result: Result<(), ActionFailure>,
    ) -> Result<(), BrokerError> {
        let Some(state) = pass.states.remove(&tag) else {
            return Ok(());
        };
        let id = message_id(&state.message).to_string();
        if result.is_err() && !session.is_connected() {
            // Not this action's fault: the broker will redeliver it to the next session.
            return Err(BrokerError::Amqp {
                context: "connection lost".into(),
                reason: result.err().map(|f| f.reason).unwrap_or_default(),
                fatal: false,
            });
        }
        match (result, &state.kind) {
            (Ok(()), _) => {
                if state.action != "skip" {
                    info!(message_id = %id, rule = state.line, action = state.action, target = %state.target, "done");
                    self.config
                        .observer
                        .done(&self.event(&state, &id), state.since.elapsed());
                }
                pass.pending.remove(&tag);
                pass.done.insert(tag);
            }
            (Err(f), Kind::Dlq { .. }) if f.too_large => {
                // No copy can carry dlqd's marks: leave the delivery itself on the DLQ,
                // unacknowledged; it goes back to the queue when this pass's channel closes.
                warn!(message_id = %id, reason = %f.reason,
                    "message too large to copy back to the DLQ; left unacknowledged on the DLQ until this pass ends");
                pass.pending.remove(&tag);
                pass.held.insert(tag);
            }
            (Err(f), Kind::Dlq { attempts, retries }) => {
                if *attempts >= DLQ_ATTEMPTS {
                    return Err(BrokerError::Amqp {
                        context: format!("cannot put message {id:?} back on the DLQ"),
                        reason: f.reason,
                        fatal: false,
                    });
                }
                warn!(message_id = %id, reason = %f.reason, "copy to the DLQ failed; trying again");
                self.config
                    .observer
                    .metrics()
                    .failure(state.action, crate::observer::cause_of(&f.reason));
                let kind = Kind::Dlq {
                    attempts: attempts + 1,
                    retries: *retries,
                };
                let confirm = session
                    .publish("", &self.config.queue, &state.message)
                    .await;
                pass.states.insert(tag, InFlight { kind, ..state });
                futures.push(completion(tag, confirm));
            }
            (Err(f), kind) => {
                let retries = match kind {
                    Kind::Retry { attempt } => Some(*attempt),
                    _ => None,
                };
                warn!(message_id = %id, rule = state.line, action = state.action, target = %state.target,
                    reason = %f.reason, "action failed; the message stays on the DLQ");
                self.config
                    .observer
                    .failed(&self.event(&state, &id), &f.reason);
                let now = now_ms();
                let due = now + self.retry_interval.as_millis() as u64;
                pass.next_due_ms = Some(pass.next_due_ms.map_or(due, |n| n.min(due)));
                let copy = outgoing::for_dlq(&state.message, now, pass.id, retries);
                let confirm = session.publish("", &self.config.queue, &copy).await;
                pass.states.insert(
                    tag,
                    InFlight {
                        message: copy,
                        kind: Kind::Dlq {
                            attempts: 1,
                            retries,
                        },
                        action: "leave",
                        line: state.line,
                        target: self.config.queue.clone(),
                        since: state.since,
                        delay_ms: None,
                    },
                );
                futures.push(completion(tag, confirm));
            }
        }
        Ok(())
    }
}

/// Acknowledge (with `multiple`) every done delivery below the oldest one in flight or
/// held; done deliveries above a held one are acknowledged one by one, so that the held
/// one stays unacknowledged.
async fn ack_done(consumer: &DlqConsumer, pass: &mut Pass) -> Result<(), BrokerError> {
    let floor = match (pass.pending.first(), pass.held.first()) {
        (Some(&p), Some(&h)) => Some(p.min(h)),
        (p, h) => p.or(h).copied(),
    };
    let upto = match floor {
        Some(floor) => pass.done.range(..floor).next_back().copied(),
        None => pass.done.last().copied(),
    };
    if let Some(tag) = upto {
        pass.done = pass.done.split_off(&(tag + 1));
        consumer.ack_upto(tag).await?;
    }
    if let Some(&held) = pass.held.first() {
        for tag in pass.done.split_off(&held) {
            consumer.ack_one(tag).await?;
        }
    }
    Ok(())
}

/// Capped exponential backoff for reconnecting.
struct Backoff {
    first: Duration,
    cap: Duration,
    next: Duration,
}

impl Backoff {
    fn new(first: Duration, cap: Duration) -> Self {
        Backoff {
            first,
            cap,
            next: first,
        }
    }

    fn next_delay(&mut self) -> Duration {
        let d = self.next;
        self.next = (self.next * 2).min(self.cap);
        d
    }

    fn reset(&mut self) {
        self.next = self.first;
    }
}

/// The completions in flight, in the order their publishes were sent.
mod futures_util_like {
    use super::Completion;
    use std::pin::Pin;
    use std::task::{Context, Poll};

    /// A FIFO of completions: only the oldest is polled. The broker confirms in publish
    /// order and acknowledgements go in tag order anyway, so nothing waits longer than
    /// it would have to, and each wake-up costs O(1) however many are in flight.
    #[derive(Default)]
    pub struct Set {
        items: std::collections::VecDeque<Completion>,
    }

    impl Set {
        pub fn push(&mut self, c: Completion) {
            self.items.push_back(c);
        }
        pub fn is_empty(&self) -> bool {
            self.items.is_empty()
        }
        pub fn len(&self) -> usize {
            self.items.len()
        }
    }

    impl futures_lite::Stream for Set {
        type Item = (u64, Result<(), crate::broker::ActionFailure>);
        fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
            let Some(front) = self.items.front_mut() else {
                return Poll::Ready(None);
            };
            match front.as_mut().poll(cx) {
                Poll::Ready(out) => {
                    self.items.pop_front();
                    Poll::Ready(Some(out))
                }
                Poll::Pending => Poll::Pending,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_up_to_the_cap_and_resets() {
        let mut b = Backoff::new(Duration::from_millis(100), Duration::from_millis(350));
        let got: Vec<_> = (0..4).map(|_| b.next_delay().as_millis()).collect();
        assert_eq!(got, vec![100, 200, 350, 350]);
        b.reset();
        assert_eq!(b.next_delay().as_millis(), 100);
    }

    #[test]
    fn pass_ids_differ_and_fit_an_i64() {
        let a = new_pass_id();
        let b = new_pass_id();
        assert_ne!(a, b);
        assert!(a <= i64::MAX as u64 && b <= i64::MAX as u64);
    }
}
