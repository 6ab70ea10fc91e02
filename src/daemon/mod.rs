//! The handler behind `dlqd run`: one session per connection (reopened with capped
//! backoff after a loss), in which the DLQ loop decides each dead letter (the same
//! [`Decider`] the dry run uses) and carries it out, while one stage mover per dlqd
//! queue moves delayed retries and left messages on when they are due.
//! docs/delivery-path.md describes every hop and who confirms it.
//!
//! # The DLQ loop
//!
//! Many actions are in flight at once (up to `--prefetch` deliveries): each delivery's
//! replacement is published at once (confirm + `mandatory`) and its confirm awaited in a
//! FIFO ([`confirms`]); the [`AckWindow`] says which deliveries may then be acknowledged.
//!
//! A message left (ACTION(IGNORE), no rule, a failed action) goes to the left queue
//! `dlqd.left.<DLQ>` and comes back to the DLQ RETRYINT later: the DLQ loop never stops
//! for it, so new dead letters and delays are never held up by left messages, and
//! several instances can share a DLQ. Under `--once` (WAIT(NO)) the left queue is
//! emptied back onto the DLQ first, left messages go to the DLQ's tail marked with the
//! run's id, and the run ends when it comes round to one of its own marks.
//!
//! # Stop and reload
//!
//! The command hands the daemon a [`Control`] channel: `Stop` finishes what is in flight
//! (at most 8 s) and hands the rest back to the broker; `Reload` swaps the table.
//!
//! # One of several DLQs
//!
//! `dlqd run` may serve several DLQs, one `run` each (src/commands/run/fleet.rs); then
//! [`Config::wait_for_dlq`] makes a DLQ that is missing or refused at the start a thing
//! to wait for (as one deleted later always is), so that only this DLQ's handler waits.
//! Where the handler stands (consuming, DLQ unavailable, disconnected) goes to the
//! observer for `/health` and `dlqd_dlq_up`.
//!
//! # Limits
//!
//! [`Limits`] pace the DLQ loop (`--rate`: a delivery is taken, decided and acted on no
//! faster than the [`Pacer`] allows, the consumer's prefetch cut to a second of the
//! rate so no more than that waits unacknowledged) and bound it (`--max N`: after the
//! N-th delivery taken, the run stops as a stop does: what is in flight is finished,
//! every delivery not acted on goes back to the DLQ).

mod archive;
pub mod confirms;
pub mod mover;
pub mod summary;

use std::collections::HashMap;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use futures_lite::StreamExt;
use tokio::sync::{mpsc, watch};
use tracing::{debug, error, info, warn};

use crate::ack_window::{Ack, AckWindow};
use crate::broker::{ActionFailure, BrokerError, Cause, Delivery, DlqConsumer, Session};
use crate::dead_letter::DeadLetter;
use crate::decide::{Decider, Outcome};
use crate::escape::Escaped;
use crate::message::Message;
use crate::metrics::DlqState;
use crate::observer::{ActionEvent, Observer};
use crate::outgoing::{self, ForwardInfo};
use crate::rate_limit::{Pacer, Rate};
use crate::rules::{Table, Wait};
use crate::stage;

use archive::Archives;
use confirms::{Completion, Confirms, completion, ready};
use mover::Movers;
pub use summary::Summary;

/// How long a stop may spend finishing the actions in flight.
const STOP_GRACE: Duration = Duration::from_secs(8);
/// How often an idle consumer checks whether WAIT(NO)/WAIT(d) should stop it.
const IDLE_TICK: Duration = Duration::from_millis(250);
/// A session's first pass takes the DLQ one message at a time (prefetch 1) while what
/// it gets was delivered before (`redelivered`: returned by a dlqd that crashed or lost
/// its connection), at most this many, then recycles to the configured prefetch. A
/// quorum DLQ counts every return toward its delivery limit (4.0-4.2) and returns them
/// to its head: if the new dlqd died again with a whole window of them unacknowledged,
/// a crash loop would walk the same messages to the limit, where the broker drops them.
/// One at a time, a kill returns at most one. (After a broker restart every recovered
/// message is marked redelivered: the slow start then ends at this bound.)
const SLOW_START_MAX: u64 = 2_000;
/// After a pass that handed deliveries back: how long the next one waits for them
/// before it may call the DLQ idle (a delivery of many MiB takes a while to arrive, and
/// meanwhile the queue counts it as neither ready nor gone).
const RECYCLE_GRACE: Duration = Duration::from_secs(3);
/// How many times a left copy is attempted before the session is given up.
const LEFT_ATTEMPTS: u32 = 3;
/// The longest a session's setup (connect, the DLQ check, dlqd's queues, the consumer)
/// may wait for the broker: a connection cut at the wrong moment can leave a lapin
/// promise that never resolves (seen in the fault suite on 4.3.6: a cut during setup
/// and no consumption for 285 s). Past it the session is given up and opened again.
const SETUP_DEADLINE: Duration = Duration::from_secs(30);
/// The longest a delivery too large to copy is held before the channel is recycled.
const HOLD_TOO_LARGE: Duration = Duration::from_secs(600);
/// How long the end of a run may spend reading what waits in dlqd's queues.
const WAITING_DEADLINE: Duration = Duration::from_secs(1);
/// While messages flow, one INFO line says what was done so far at most this often. An
/// action done is a DEBUG line (`DLQD_LOG=dlqd=debug`), the audit trail (`--audit`)
/// records each one: a drain of a million messages would otherwise write a million INFO
/// lines (journald drops most of them at its default rate limit) and spend a sixth of
/// dlqd's CPU formatting them. A failed action is a WARN line, each one.
const PROGRESS_EVERY: Duration = Duration::from_secs(10);

/// What `dlqd run` was asked to do.
#[derive(Debug, Clone)]
pub struct Config {
    /// The broker's addresses (the nodes of one cluster; usually one).
    pub urls: Vec<String>,
    /// The DLQ (from --queue or INPUTQ).
    pub queue: String,
    pub prefetch: u16,
    /// The type of dlqd's delay and left queues (`--stage-queues`).
    pub stage_kind: stage::StageKind,
    /// `--once`: WAIT(NO) whatever the rules say.
    pub once: bool,
    /// Give up when no session could be had for this long (`--connect-deadline`).
    pub give_up_after: Option<Duration>,
    /// Where actions, connection state and depth are reported (metrics, audit, progress).
    pub observer: Observer,
    /// How fast and how many (`--rate`, `--max`).
    pub limits: Limits,
    /// Wait for a DLQ that is missing or refused (404, 403) at the start too, trying
    /// again with backoff, an error logged and `dlqd_dlq_unavailable_total` counted,
    /// instead of ending the run: one of several DLQs served by one process, whose
    /// trouble must not stop the others. Not under `--once` (a one-shot run ends).
    pub wait_for_dlq: bool,
}

/// How fast a run takes messages from the DLQ and how many: the settings behind `--rate`
/// and `--max`, kept apart from where they come from so that a value from the rules
/// file can be put under the flags' ([`Limits::over`]).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Limits {
    /// Take a delivery from the DLQ at most this fast.
    pub rate: Option<Rate>,
    /// Take at most this many deliveries from the DLQ, then stop.
    pub max: Option<u64>,
}

impl Limits {
    /// These limits, each one not set here taken from `under` (the flags over the file).
    pub fn over(self, under: Limits) -> Limits {
        Limits {
            rate: self.rate.or(under.rate),
            max: self.max.or(under.max),
        }
    }
}

/// What the command asks of a running daemon.
#[derive(Debug)]
pub enum Control {
    /// Stop taking messages, finish what is in flight, return.
    Stop,
    /// Use this table from now on.
    Reload(Box<Table>),
}

/// Why the handler stopped with an error.
#[derive(Debug, thiserror::Error)]
pub enum DaemonError {
    #[error(transparent)]
    Broker(#[from] BrokerError),
    /// `--connect-deadline` passed without a session.
    #[error(
        "gave up after {waited:?} without a broker session (--connect-deadline); last error: {last}"
    )]
    GaveUp { waited: Duration, last: BrokerError },
}

/// Run the handler until it stops (WAIT, --once, a stop) or hits a fatal error; what it
/// did, counted.
pub async fn run(
    mut config: Config,
    table: Table,
    control: mpsc::UnboundedReceiver<Control>,
) -> Result<Summary, DaemonError> {
    let retry_interval = stage::retry_interval(table.control.retry_interval);
    let (stop_tx, _) = watch::channel(false);
    let (ri_tx, _) = watch::channel(retry_interval);
    let flags = config.limits;
    config.limits = table_limits(flags, &table);
    let pacer = config.limits.rate.map(Pacer::new);
    let mut daemon = Daemon {
        flags,
        retry_interval,
        wait: effective_wait(&config, &table),
        decider: Decider::new(table),
        config,
        control,
        archives: Archives::default(),
        stopping: false,
        last_work: Instant::now(),
        stop_tx,
        ri_tx,
        run_id: new_pass_id(),
        summary: Summary::default(),
        progress_at: Instant::now(),
        pacer,
        origin: tokio::time::Instant::now(),
        taken: 0,
    };
    daemon.run().await?;
    Ok(daemon.summary)
}

/// The limits a table runs under: the flags', and the file's RATE where `--rate` is not
/// given.
fn table_limits(flags: Limits, table: &Table) -> Limits {
    let limits = flags.over(Limits {
        rate: table.control.rate,
        max: None,
    });
    if let (None, Some(rate)) = (flags.rate, limits.rate) {
        info!(rate = %rate, "paced by the rules' RATE: at most {rate} taken from the DLQ");
    }
    limits
}

fn effective_wait(config: &Config, table: &Table) -> Wait {
    if config.once {
        Wait::No
    } else {
        table.control.wait
    }
}

/// The wall clock in ms since the epoch (the marks dlqd puts on messages use it).
pub(crate) fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

/// A run id: unique enough across runs and instances.
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
    /// `config.limits` is what applies now (the flags over the table's RATE); these are
    /// the flags alone, for a reload.
    flags: Limits,
    config: Config,
    decider: Decider,
    retry_interval: Duration,
    wait: Wait,
    control: mpsc::UnboundedReceiver<Control>,
    archives: Archives,
    stopping: bool,
    last_work: Instant,
    stop_tx: watch::Sender<bool>,
    ri_tx: watch::Sender<Duration>,
    /// Marks the DLQ copies a `--once` run leaves, to know when it has come round.
    run_id: u64,
    summary: Summary,
    /// When the last progress line was written (see [`PROGRESS_EVERY`]).
    progress_at: Instant,
    /// `--rate` or RATE: when the next delivery may be taken (times since `origin`).
    pacer: Option<Pacer>,
    origin: tokio::time::Instant,
    /// Deliveries taken from the DLQ in this run (for `--max`).
    taken: u64,
}

/// How one consumption of the DLQ ended.
enum PassEnd {
    /// `--once`: came round to a message this run left.
    CameRound,
    /// WAIT(NO) and the DLQ is empty, or WAIT(d) ran out.
    NothingToDo,
    /// A stop was asked for.
    Stopped,
    /// A delivery too large to copy has been held long enough: close the channel (the
    /// broker takes it back) and consume again.
    Recycle,
}

/// What an action in flight is, for logging and for what to do if it fails.
#[derive(Debug, Clone)]
enum Kind {
    /// Straight to the target queue.
    Retry {
        attempt: u32,
    },
    /// Into a delay queue (declared again and re-sent once if it is missing).
    Park {
        attempt: u32,
        redeclared: bool,
    },
    Forward,
    Discard,
    /// A left copy: to the left queue (or, under `--once`, the DLQ's tail).
    Left {
        attempts: u32,
        retries: Option<u32>,
        redeclared: bool,
    },
}

/// One delivery whose action is in flight.
struct InFlight {
    /// What was published (for a left copy: the copy, to re-send it).
    message: Message,
    /// The queue or exchange it was published to.
    published_to: (String, String),
    kind: Kind,
    action: &'static str,
    line: Option<u32>,
    target: String,
    /// When the delivery arrived (for the processing-latency metric).
    since: Instant,
    delay_ms: Option<u64>,
    /// The copy a forward or a direct retry published (to send it again when another
    /// publish closed the channel under it); `None` when `message` is what was sent.
    sent_copy: Option<Message>,
    /// Already sent again once.
    resent: bool,
}

fn message_id(m: &Message) -> &str {
    m.properties.message_id.as_deref().unwrap_or("")
}

/// The deliveries of one consumption of the DLQ.
#[derive(Default)]
struct Pass {
    states: HashMap<u64, InFlight>,
    window: AckWindow,
    /// When the oldest held delivery was held.
    held_since: Option<Instant>,
}

/// What [`Daemon::run`]'s tries at a session carry from one to the next.
struct Tries {
    backoff: Backoff,
    /// A DLQ missing at start is a mistake (exit 1); one deleted while dlqd runs is
    /// waited for (an application redeploy declares it again).
    had_dlq: bool,
    /// The address to try first: after a lost session, the next node.
    next_url: usize,
    /// Since when no session has been had (reset by every session that reached the DLQ).
    unavailable: Instant,
    /// A session kept while only the DLQ is missing: the broker answers, so the DLQ is
    /// looked for again on the same connection, not a new one each time.
    kept: Option<Session>,
}

/// dlqd cannot read a queue's arguments over AMQP, so it cannot tell whether a DLQ has
/// a TTL: one INFO line per process says what that means, not a WARN per DLQ at every
/// start and reload whether or not the DLQ has one (that trained operators to ignore
/// dlqd's warnings).
fn say_retention_once() {
    static SAID: std::sync::Once = std::sync::Once::new();
    SAID.call_once(|| {
        info!(
            "dlqd cannot read a queue's arguments over AMQP: if a DLQ has x-message-ttl or x-expires \
             (or a policy setting them), a message dlqd leaves waits RETRYINT in the left queue \
             dlqd.left.<DLQ> and its age on the DLQ starts again each time it comes back; give the \
             left queue the same policy"
        );
    });
}

impl Daemon {
    fn once(&self) -> bool {
        self.wait == Wait::No
    }

    async fn run(&mut self) -> Result<(), DaemonError> {
        let mut t = Tries {
            backoff: Backoff::new(Duration::from_millis(200), Duration::from_secs(30)),
            had_dlq: false,
            next_url: 0,
            unavailable: Instant::now(),
            kept: None,
        };
        loop {
            if self.stopping {
                if let Some(s) = t.kept.take() {
                    s.close().await;
                }
                return Ok(());
            }
            if let Some(session) = t.kept.take() {
                if self.serve(session, &mut t).await? {
                    return Ok(());
                }
                continue;
            }
            let opened = tokio::select! {
                s = tokio::time::timeout(SETUP_DEADLINE, Session::open(&self.config.urls, t.next_url)) => Some(
                    s.unwrap_or_else(|_| Err(setup_timed_out()))
                ),
                c = self.control.recv() => { self.on_control(c); None }
            };
            let Some(opened) = opened else { continue };
            let mut session = match opened {
                Ok(s) => s,
                Err(e) if e.is_fatal() => return Err(e.into()),
                Err(e) => {
                    self.config.observer.state(DlqState::Disconnected);
                    self.give_up_after(t.unavailable, e)?;
                    self.pause(t.backoff.next_delay()).await;
                    continue;
                }
            };
            session.set_stage_kind(self.config.stage_kind);
            let url = &self.config.urls[session.url_index()];
            info!(queue = %self.config.queue, url = %crate::broker::redact(url), "connected");
            if !self.once() {
                say_retention_once();
            }
            if self.serve(session, &mut t).await? {
                return Ok(());
            }
        }
    }

    /// One session's run and what its end means: `true` when the run is over, else
    /// another try (`t.kept` set when the same session is to be used again).
    async fn serve(&mut self, mut session: Session, t: &mut Tries) -> Result<bool, DaemonError> {
        let mut reached_dlq = false;
        let ended = self
            .run_session(&mut session, &mut t.backoff, &mut reached_dlq)
            .await;
        if reached_dlq {
            t.had_dlq = true;
            t.unavailable = Instant::now();
        }
        let ended = match ended {
            // The broker cancelled the consumer: if only the DLQ was deleted, the
            // connection is fine and the DLQ is waited for on it.
            Err(e) if t.had_dlq && !e.is_not_found() && session.is_connected() => {
                match session.queue_depth(&self.config.queue).await {
                    Err(f) if session.is_connected() => {
                        let gone = BrokerError::from_failure(
                            format!("cannot consume queue '{}'", self.config.queue),
                            f,
                        );
                        Err(if gone.is_not_found() { gone } else { e })
                    }
                    _ => Err(e),
                }
            }
            other => other,
        };
        match ended {
            Ok(()) => {
                self.config.observer.state(DlqState::Disconnected);
                session.close().await;
                return Ok(true);
            }
            Err(e) if (t.had_dlq && e.is_not_found()) || self.waits_for_dlq(&e) => {
                // The broker answers; only the DLQ is missing (deleted, or not declared
                // yet) or refused: looked for again on this connection.
                let delay = t.backoff.next_delay();
                error!(queue = %self.config.queue, error = %e, retry_in = ?delay,
                    "the DLQ {} does not exist (or may not be read); will retry in {}s \
                     (dlqd's other DLQs go on)",
                    self.config.queue, delay.as_secs_f64().ceil());
                self.dlq_unavailable(&e);
                if let Err(gave_up) = self.deadline_passed(t.unavailable, e) {
                    session.close().await;
                    return Err(gave_up);
                }
                self.pause(delay).await;
                if session.is_connected() && !self.stopping {
                    t.kept = Some(session);
                } else {
                    session.close().await;
                }
            }
            Err(e) if e.is_fatal() => {
                self.config.observer.state(DlqState::Disconnected);
                session.close().await;
                return Err(e.into());
            }
            Err(e @ BrokerError::Unreadable { .. }) if self.once() => {
                // The same message comes first again on every session: a one-shot
                // run ends, saying what it found.
                self.config.observer.state(DlqState::Disconnected);
                session.close().await;
                return Err(e.into());
            }
            Err(e) => {
                self.config.observer.state(DlqState::Disconnected);
                warn!(error = %e, "session lost; reconnecting");
                // The node may be the trouble: start with the next address.
                t.next_url = (session.url_index() + 1) % self.config.urls.len().max(1);
                session.close().await;
                self.give_up_after(t.unavailable, e)?;
                self.pause(t.backoff.next_delay()).await;
            }
        }
        Ok(false)
    }

    /// Whether a session that ended with `e` waits for the DLQ (see
    /// [`Config::wait_for_dlq`]): the DLQ (or dlqd's queues beside it) missing or
    /// refused on a broker that answers.
    fn waits_for_dlq(&self, e: &BrokerError) -> bool {
        self.config.wait_for_dlq && !self.once() && (e.is_not_found() || e.is_access_refused())
    }

    /// The DLQ could not be consumed: counted, and `/health` told the broker answers.
    fn dlq_unavailable(&self, e: &BrokerError) {
        let cause = if e.is_not_found() {
            "not_found"
        } else if e.is_access_refused() {
            "access_refused"
        } else {
            "other"
        };
        self.config.observer.metrics().dlq_unavailable(cause);
        self.config
            .observer
            .state(DlqState::Unavailable(e.to_string()));
    }

    /// Give up, without a log line of its own, when `--connect-deadline` has passed
    /// since `since` (the caller has logged `e`).
    fn deadline_passed(&self, since: Instant, e: BrokerError) -> Result<(), DaemonError> {
        match self.config.give_up_after {
            Some(limit) if since.elapsed() >= limit => Err(DaemonError::GaveUp {
                waited: since.elapsed(),
                last: e,
            }),
            _ => Ok(()),
        }
    }

    /// Log `e` and go on trying, or give up when `--connect-deadline` has passed since
    /// `since`.
    fn give_up_after(&self, since: Instant, e: BrokerError) -> Result<(), DaemonError> {
        match self.config.give_up_after {
            Some(limit) if since.elapsed() >= limit => Err(DaemonError::GaveUp {
                waited: since.elapsed(),
                last: e,
            }),
            Some(limit) => {
                let left = limit.saturating_sub(since.elapsed());
                warn!(error = %e, gives_up_in = ?Duration::from_secs(left.as_secs()), "broker unavailable; will retry");
                Ok(())
            }
            None => {
                warn!(error = %e, "broker unavailable; will retry");
                Ok(())
            }
        }
    }

    /// Sleep, unless a stop comes first.
    async fn pause(&mut self, d: Duration) {
        let until = tokio::time::Instant::now() + d;
        while !self.stopping {
            tokio::select! {
                _ = tokio::time::sleep_until(until) => return,
                c = self.control.recv() => self.on_control(c),
            }
        }
    }

    fn on_control(&mut self, c: Option<Control>) {
        match c {
            // The command went away: nobody can ask for a stop any more, so stop.
            None | Some(Control::Stop) => {
                if !self.stopping {
                    info!("stop requested; finishing the messages in flight");
                }
                self.stop();
            }
            Some(Control::Reload(table)) => {
                if table
                    .control
                    .input_queue
                    .as_deref()
                    .is_some_and(|q| q != self.config.queue)
                {
                    warn!("INPUTQ changed; the new queue takes effect after a restart");
                }
                self.retry_interval = stage::retry_interval(table.control.retry_interval);
                self.ri_tx.send_replace(self.retry_interval);
                self.wait = effective_wait(&self.config, &table);
                let limits = table_limits(self.flags, &table);
                if limits.rate != self.config.limits.rate {
                    // A new pace from now on (the prefetch follows on the next consumer).
                    self.pacer = limits.rate.map(Pacer::new);
                    if limits.rate.is_none() {
                        info!("RATE removed: no longer paced");
                    }
                }
                self.config.limits = limits;
                self.decider = Decider::new(*table);
            }
        }
    }

    /// Stop taking messages; finish what is in flight (a stop, or `--max` reached).
    fn stop(&mut self) {
        self.stopping = true;
        self.stop_tx.send_replace(true);
    }

    /// `--max` deliveries have been taken.
    fn max_reached(&self) -> bool {
        self.config.limits.max.is_some_and(|m| self.taken >= m)
    }

    /// The pacer's clock: time since the run started.
    fn clock(&self) -> Duration {
        self.origin.elapsed()
    }

    /// The prefetch of a consumption: `wanted`, cut to what `--rate` can use in a second
    /// and to what `--max` leaves to take (deliveries beyond it would only wait
    /// unacknowledged to be handed back).
    fn prefetch(&self, wanted: u16) -> u16 {
        let limits = self.config.limits;
        let mut p = wanted.max(1);
        if let Some(rate) = limits.rate {
            p = p.min(rate.window(self.config.prefetch));
        }
        if let Some(max) = limits.max {
            let left = u16::try_from(max.saturating_sub(self.taken)).unwrap_or(u16::MAX);
            p = p.min(left.max(1));
        }
        p
    }

    fn movers(&self, session: &Session) -> Movers {
        Movers {
            conn: session.connection(),
            dlq: self.config.queue.clone(),
            once: self.once(),
            stop: self.stop_tx.subscribe(),
            retry_interval: self.ri_tx.subscribe(),
            observer: self.config.observer.clone(),
            stage_kind: self.config.stage_kind,
        }
    }

    fn stage_queues(&self) -> Vec<String> {
        let mut queues = stage::delay_queues(&self.config.queue);
        queues.push(stage::left_queue(&self.config.queue));
        queues
    }

    async fn run_session(
        &mut self,
        session: &mut Session,
        backoff: &mut Backoff,
        had_dlq: &mut bool,
    ) -> Result<(), BrokerError> {
        // The DLQ must exist (a consumer of a missing queue is a fatal error); then the
        // stage queues, whatever an operator deleted since.
        let setup = async {
            if let Err(f) = session.queue_depth(&self.config.queue).await {
                return Err(BrokerError::from_failure(
                    format!("cannot consume queue '{}'", self.config.queue),
                    f,
                ));
            }
            *had_dlq = true;
            for q in self.stage_queues() {
                session.declare_stage_queue(&q).await.map_err(|f| {
                    BrokerError::from_failure(format!("cannot declare dlqd's queue {q}"), f)
                })?;
            }
            Ok(())
        };
        tokio::time::timeout(SETUP_DEADLINE, setup)
            .await
            .map_err(|_| setup_timed_out())??;
        self.config.observer.state(DlqState::Consuming);
        let movers = self.movers(session);
        let tasks: Vec<_> = self
            .stage_queues()
            .into_iter()
            .map(|q| tokio::spawn(movers.clone().run(q)))
            .collect();
        let mut tasks = Some(tasks);
        if self.once() {
            // Due retries out, left messages back onto the DLQ, before the pass.
            self.join_movers(tasks.take().unwrap_or_default()).await;
        }
        let mut slow_start = true;
        let mut recycled = false;
        let result = loop {
            if self.stopping {
                break Ok(());
            }
            let pass = self.run_pass(session, slow_start, recycled).await;
            slow_start = false;
            recycled = matches!(pass, Ok(PassEnd::Recycle));
            match pass {
                Err(e) => break Err(e),
                Ok(PassEnd::Recycle) => {
                    backoff.reset();
                    continue;
                }
                Ok(PassEnd::CameRound) => {
                    info!("came round the DLQ; nothing more to do now (WAIT(NO))");
                    break Ok(());
                }
                Ok(PassEnd::Stopped | PassEnd::NothingToDo) => break Ok(()),
            }
        };
        // The movers end with the session (a stop, WAIT, or a lost connection).
        self.stop_tx.send_replace(true);
        if let Some(tasks) = tasks {
            self.join_movers(tasks).await;
        }
        if !self.stopping {
            self.stop_tx.send_replace(false);
        }
        if result.is_ok() && (!self.stopping || self.max_reached()) {
            // WAIT(NO), WAIT(d) or --max ended the run.
            // The progress bar's "left on the DLQ" as it is now, not 2 s ago.
            if let Ok(n) = session.queue_depth(&self.config.queue).await {
                self.config.observer.depth(u64::from(n));
            }
        }
        if result.is_ok() {
            // However the run ended (a stop and a retirement too): say what still waits
            // in dlqd's own queues for this DLQ, which nothing moves until dlqd serves
            // it again.
            self.summary.waiting = tokio::time::timeout(WAITING_DEADLINE, self.waiting(session))
                .await
                .ok()
                .flatten();
        }
        result
    }

    /// The depths of this DLQ's delay and left queues (passive declares; a queue an
    /// operator deleted holds nothing); `None` when the connection is lost meanwhile.
    async fn waiting(&self, session: &Session) -> Option<summary::Waiting> {
        let dlq = &self.config.queue;
        let (delayed, left) =
            crate::broker::topology::stage_depths(&session.connection(), dlq).await;
        if !session.is_connected() {
            return None;
        }
        Some(summary::Waiting {
            dlq: dlq.clone(),
            delayed,
            left,
        })
    }

    async fn join_movers(&mut self, tasks: Vec<tokio::task::JoinHandle<mover::Moved>>) {
        for t in tasks {
            if let Ok(m) = t.await {
                self.summary.delivered += m.retried;
                self.summary.refused += m.refused;
            }
        }
    }

    /// One consumer's worth of the DLQ. `slow_start`: see [`SLOW_START_MAX`].
    /// `recycled`: an earlier pass handed its held deliveries back, which may be large
    /// and still on their way: the first look at an idle DLQ waits [`RECYCLE_GRACE`].
    async fn run_pass(
        &mut self,
        session: &mut Session,
        mut slow_start: bool,
        recycled: bool,
    ) -> Result<PassEnd, BrokerError> {
        let idle_after = if recycled { RECYCLE_GRACE } else { IDLE_TICK };
        let pass_started = Instant::now();
        let prefetch = self.prefetch(if slow_start { 1 } else { self.config.prefetch });
        let mut consumer = tokio::time::timeout(
            SETUP_DEADLINE,
            session.consume(&self.config.queue, prefetch),
        )
        .await
        .map_err(|_| setup_timed_out())??;
        let mut slow_taken = 0u64;
        let mut pass = Pass::default();
        let mut confirms = Confirms::default();
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
            if slow_start && end.is_none() && pass.held_since.is_some() {
                // A held delivery would stop a prefetch of 1: on to the full window (the
                // held one comes back with the channel and is taken again).
                slow_start = false;
                end = Some(PassEnd::Recycle);
                let _ = consumer.cancel().await;
            }
            if end.is_none()
                && pass
                    .held_since
                    .is_some_and(|t| t.elapsed() >= self.retry_interval.min(HOLD_TOO_LARGE))
            {
                end = Some(PassEnd::Recycle);
                let _ = consumer.cancel().await;
            }
            if end.is_some() && confirms.is_empty() {
                break Ok(());
            }
            let deadline = stop_deadline
                .unwrap_or_else(|| tokio::time::Instant::now() + Duration::from_secs(3600));
            // --rate: no delivery is taken before the pacer's next permit.
            let paced = self.pacer.as_ref().and_then(|p| {
                let now = self.clock();
                let at = p.ready_at(now);
                (at > now).then(|| self.origin + at)
            });
            tokio::select! {
                c = self.control.recv() => self.on_control(c),
                Some((tag, result)) = confirms.next(), if !confirms.is_empty() => {
                    if let Err(e) = self.completed(session, &mut pass, &mut confirms, tag, result).await {
                        break Err(e);
                    }
                }
                _ = tokio::time::sleep_until(paced.unwrap_or(deadline)), if end.is_none() && paced.is_some() => {}
                d = consumer.next(), if end.is_none() && paced.is_none() => match d {
                    None => break Err(BrokerError::lost(
                        format!("consumer of '{}'", self.config.queue),
                        "cancelled by the broker",
                    )),
                    Some(Err(e)) => break Err(e),
                    Some(Ok(d)) => {
                        last_delivery = Instant::now();
                        let redelivered = d.redelivered;
                        if let Some(e) = self.take(session, &mut pass, &mut confirms, d).await {
                            end = Some(e);
                            let _ = consumer.cancel().await;
                        } else if self.max_reached() {
                            info!(max = self.taken, "--max reached: {} message(s) taken from the DLQ; \
                                finishing them, the rest stays on the DLQ", self.taken);
                            self.summary.stopped_at_max = Some(self.taken);
                            self.stop();
                        } else if slow_start {
                            slow_taken += 1;
                            if !redelivered || slow_taken >= SLOW_START_MAX {
                                // Past what an earlier consumer left: the full window.
                                debug!(taken = slow_taken, "slow start over");
                                slow_start = false;
                                end = Some(PassEnd::Recycle);
                                let _ = consumer.cancel().await;
                            }
                        }
                    }
                },
                _ = tokio::time::sleep(IDLE_TICK), if end.is_none() && paced.is_none() && confirms.is_empty() && self.wait != Wait::Yes => {
                    if last_delivery.elapsed() >= IDLE_TICK
                        && pass_started.elapsed() >= idle_after
                        && self.idle_should_stop(session).await
                    {
                        end = Some(PassEnd::NothingToDo);
                        let _ = consumer.cancel().await;
                    }
                }
                _ = tokio::time::sleep_until(deadline), if stop_deadline.is_some() => {
                    warn!(in_flight = confirms.len(), "stop grace period over; the broker will redeliver what is unacknowledged");
                    break Ok(());
                }
            }
            // Whatever else is already confirmed, before one ack for the lot.
            let mut failed = None;
            while let Some(Some((tag, result))) =
                futures_lite::future::poll_once(confirms.next()).await
            {
                if let Err(e) = self
                    .completed(session, &mut pass, &mut confirms, tag, result)
                    .await
                {
                    failed = Some(e);
                    break;
                }
            }
            if let Some(e) = failed {
                break Err(e);
            }
            if let Err(e) = send_acks(&consumer, &mut pass.window).await {
                break Err(e);
            }
        };
        consumer.close().await;
        result?;
        Ok(match end {
            _ if self.stopping => PassEnd::Stopped,
            Some(e) => e,
            None => PassEnd::Stopped,
        })
    }

    /// Under WAIT(NO): the DLQ is empty. Under WAIT(d): no new work for d.
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

    /// Publish a left copy of `message`: to the left queue, or under `--once` to the
    /// DLQ's tail with this run's mark.
    async fn publish_left(
        &mut self,
        session: &mut Session,
        message: &Message,
        retries: Option<u32>,
    ) -> (Message, (String, String), Completion) {
        let now = now_ms();
        let (queue, copy) = if self.once() {
            (
                self.config.queue.clone(),
                outgoing::for_dlq(message, now, self.run_id, retries),
            )
        } else {
            let p = stage::park_left(
                &self.config.queue,
                &outgoing::for_left(message, retries),
                now,
            );
            (p.queue, p.message)
        };
        let confirm = session.publish("", &queue, &copy).await;
        (copy, (String::new(), queue), completion(0, confirm))
    }

    /// Take one delivery: decide and start its action. Returns how the pass ends when
    /// this delivery shows a `--once` run has come round.
    async fn take(
        &mut self,
        session: &mut Session,
        pass: &mut Pass,
        confirms: &mut Confirms,
        d: Delivery,
    ) -> Option<PassEnd> {
        let Delivery { tag, message, .. } = d;
        let since = Instant::now();
        if self.once() && outgoing::pass_of(&message) == Some(self.run_id) {
            // Handed back to the queue when the consumer channel closes.
            return Some(PassEnd::CameRound);
        }
        pass.window.take(tag);
        self.taken += 1;
        if let Some(p) = self.pacer.as_mut() {
            p.take(self.origin.elapsed());
        }
        let back_from_left = outgoing::examined_at(&message).is_some();
        let (decision, destq, reason) = {
            let dl = DeadLetter::new(&message);
            let decision = self.decider.decide(&dl);
            (decision, dl.destq.to_string(), dl.reason.to_string())
        };
        if !(back_from_left && decision.outcome == Outcome::Leave) {
            self.last_work = Instant::now();
        }
        let line = decision.line;
        let mut delay_ms = None;
        let mut published_to = (String::new(), String::new());
        // What was published, when it must be kept to re-send it (parked, left copies).
        let mut sent: Option<Message> = None;
        let mut sent_copy: Option<Message> = None;
        let (kind, action, target, fut): (Kind, &'static str, String, Completion) = match decision
            .outcome
        {
            Outcome::Retry {
                queue: target,
                delay,
                attempt,
                keep_user_id,
            } => {
                delay_ms = Some(u64::try_from(delay.as_millis()).unwrap_or(u64::MAX));
                let copy = outgoing::for_retry(&message, attempt, keep_user_id);
                let no_target = target.is_empty().then(|| {
                    ActionFailure::new(
                        Cause::NoTarget,
                        "the message has no original queue (no x-death history) to retry to",
                    )
                });
                if let Some(f) = no_target {
                    (Kind::Retry { attempt }, "retry", target, ready(tag, Err(f)))
                } else {
                    match stage::park_retry(&self.config.queue, &copy, &target, delay, now_ms()) {
                        Some(p) => {
                            let c = session.publish("", &p.queue, &p.message).await;
                            published_to = (String::new(), p.queue);
                            sent = Some(p.message);
                            (
                                Kind::Park {
                                    attempt,
                                    redeclared: false,
                                },
                                "retry",
                                target,
                                completion(tag, c),
                            )
                        }
                        None => {
                            let c = session.publish("", &target, &copy).await;
                            published_to = (String::new(), target.clone());
                            sent_copy = Some(copy);
                            (Kind::Retry { attempt }, "retry", target, completion(tag, c))
                        }
                    }
                }
            }
            Outcome::Forward {
                exchange,
                routing_key,
                keep_headers,
                keep_user_id,
            } => {
                let info = ForwardInfo {
                    keep_user_id,
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
                published_to = (exchange, routing_key);
                sent_copy = Some(copy);
                (Kind::Forward, "forward", target, fut)
            }
            Outcome::Discard { archive } => {
                let result = match &archive {
                    Some(path) => self.archives.write(path, &message),
                    None => Ok(()),
                };
                let target = archive.map(|p| p.display().to_string()).unwrap_or_default();
                (Kind::Discard, "discard", target, ready(tag, result))
            }
            Outcome::Leave => {
                let (copy, to, fut) = self.publish_left(session, &message, None).await;
                sent = Some(copy);
                let target = to.1.clone();
                published_to = to;
                (
                    Kind::Left {
                        attempts: 1,
                        retries: None,
                        redeclared: false,
                    },
                    "leave",
                    target,
                    retag(tag, fut),
                )
            }
        };
        pass.states.insert(
            tag,
            InFlight {
                message: sent.unwrap_or(message),
                published_to,
                kind,
                action,
                line,
                target,
                since,
                delay_ms,
                sent_copy,
                resent: false,
            },
        );
        confirms.push(fut);
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
                Kind::Retry { attempt } | Kind::Park { attempt, .. } => Some(attempt),
                _ => None,
            },
        }
    }

    /// An action finished: log it, mark the delivery done, or leave the message.
    async fn completed(
        &mut self,
        session: &mut Session,
        pass: &mut Pass,
        confirms: &mut Confirms,
        tag: u64,
        result: Result<(), ActionFailure>,
    ) -> Result<(), BrokerError> {
        let Some(state) = pass.states.remove(&tag) else {
            return Ok(());
        };
        let id = message_id(&state.message).to_string();
        if result.is_err() && !session.is_connected() {
            // Not this action's fault: the broker will redeliver it to the next session.
            return Err(BrokerError::lost(
                "connection lost",
                result.err().map(|f| f.reason).unwrap_or_default(),
            ));
        }
        let f = match result {
            Ok(()) => {
                debug!(message_id = %id, rule = state.line, action = state.action, target = %state.target, "done");
                self.config
                    .observer
                    .done(&self.event(&state, &id), state.since.elapsed());
                self.summary.done(state.action);
                pass.window.finish(tag);
                if self.progress_at.elapsed() >= PROGRESS_EVERY {
                    self.progress_at = Instant::now();
                    info!(done = self.summary.done.values().sum::<u64>(), failed = self.summary.failures(),
                        held = self.summary.held, summary = %self.summary, "progress");
                }
                return Ok(());
            }
            Err(f) => f,
        };
        if f.is_neighbours() && !state.resent && !state.published_to.1.is_empty() {
            // Another publish made the broker close the channel: this one again, once,
            // on the fresh channel, uncharged.
            debug!(message_id = %id, reason = %f.reason, "refused with a neighbour's channel; sending again");
            let (ex, rk) = state.published_to.clone();
            let c = session
                .publish(&ex, &rk, state.sent_copy.as_ref().unwrap_or(&state.message))
                .await;
            pass.states.insert(
                tag,
                InFlight {
                    resent: true,
                    ..state
                },
            );
            confirms.push(completion(tag, c));
            return Ok(());
        }
        match state.kind.clone() {
            // dlqd's own queue was deleted: declare it again and re-send, once.
            Kind::Park {
                attempt,
                redeclared: false,
            } if f.is_no_route() => {
                self.redeclare_and_resend(session, pass, confirms, tag, state, &f, |_| Kind::Park {
                    attempt,
                    redeclared: true,
                })
                .await
            }
            Kind::Left {
                attempts,
                retries,
                redeclared: false,
            } if f.is_no_route() && !self.once() => {
                self.redeclare_and_resend(session, pass, confirms, tag, state, &f, |_| Kind::Left {
                    attempts,
                    retries,
                    redeclared: true,
                })
                .await
            }
            Kind::Left { .. } if f.is_too_large() => {
                // No copy can carry dlqd's marks: leave the delivery itself on the DLQ,
                // unacknowledged; it goes back to the queue when the channel closes.
                warn!(message_id = %Escaped(&id), reason = %f.reason,
                    "message too large to copy; left unacknowledged on the DLQ for now");
                self.hold(pass, tag);
                Ok(())
            }
            Kind::Left {
                attempts,
                retries,
                redeclared,
            } => {
                if attempts >= LEFT_ATTEMPTS {
                    // No copy of it is accepted (a refusal of this message: the session
                    // is fine, its neighbours go on): the delivery itself stays on the
                    // DLQ, unacknowledged, and is taken again when the channel recycles.
                    warn!(message_id = %Escaped(&id), cause = f.cause.label(), reason = %f.reason,
                        "no copy of this message is accepted; it stays unacknowledged on the DLQ for now");
                    self.hold(pass, tag);
                    return Ok(());
                }
                warn!(message_id = %id, reason = %f.reason, "left copy failed; trying again");
                self.config
                    .observer
                    .metrics()
                    .failure(state.action, f.cause.label());
                let (ex, rk) = state.published_to.clone();
                let confirm = session.publish(&ex, &rk, &state.message).await;
                pass.states.insert(
                    tag,
                    InFlight {
                        kind: Kind::Left {
                            attempts: attempts + 1,
                            retries,
                            redeclared,
                        },
                        ..state
                    },
                );
                confirms.push(completion(tag, confirm));
                Ok(())
            }
            kind => {
                let retries = match kind {
                    Kind::Retry { attempt } | Kind::Park { attempt, .. } => Some(attempt),
                    _ => None,
                };
                warn!(message_id = %id, rule = state.line, action = state.action, target = %state.target,
                    reason = %f.reason, "action failed; the message is left");
                self.config.observer.failed(&self.event(&state, &id), &f);
                self.summary.failed(state.action, f.cause.label());
                if f.is_too_large() {
                    // A left copy would be refused the same way (and close the channel
                    // under its neighbours again): the delivery itself stays, held.
                    warn!(message_id = %Escaped(&id), reason = %f.reason,
                        "message too large to copy; left unacknowledged on the DLQ for now");
                    self.hold(pass, tag);
                    return Ok(());
                }
                // The original (a parked copy carries stage marks: they are replaced).
                let mut original = state.message.clone();
                stage::strip_marks(&mut original);
                let (copy, to, fut) = self.publish_left(session, &original, retries).await;
                let target = to.1.clone();
                pass.states.insert(
                    tag,
                    InFlight {
                        message: copy,
                        published_to: to,
                        kind: Kind::Left {
                            attempts: 1,
                            retries,
                            redeclared: false,
                        },
                        action: "leave",
                        line: state.line,
                        target,
                        since: state.since,
                        delay_ms: None,
                        sent_copy: None,
                        resent: false,
                    },
                );
                confirms.push(retag(tag, fut));
                Ok(())
            }
        }
    }

    /// Keep delivery `tag` unacknowledged on the DLQ (no copy of it can be published).
    fn hold(&mut self, pass: &mut Pass, tag: u64) {
        pass.window.hold(tag);
        pass.held_since.get_or_insert_with(Instant::now);
        self.summary.held += 1;
    }

    #[allow(clippy::too_many_arguments)]
    async fn redeclare_and_resend(
        &mut self,
        session: &mut Session,
        pass: &mut Pass,
        confirms: &mut Confirms,
        tag: u64,
        state: InFlight,
        f: &ActionFailure,
        kind: impl FnOnce(&Kind) -> Kind,
    ) -> Result<(), BrokerError> {
        let (ex, rk) = state.published_to.clone();
        debug!(queue = %rk, reason = %f.reason, "dlqd's queue is missing; declaring it again");
        let confirm = match session.declare_stage_queue(&rk).await {
            Ok(()) => completion(tag, session.publish(&ex, &rk, &state.message).await),
            Err(e) => ready(tag, Err(e)),
        };
        let kind = kind(&state.kind);
        pass.states.insert(tag, InFlight { kind, ..state });
        confirms.push(confirm);
        Ok(())
    }
}

/// A session whose setup got no answer within [`SETUP_DEADLINE`]: lost, opened again.
fn setup_timed_out() -> BrokerError {
    BrokerError::lost(
        "session setup",
        format!("no answer from the broker within {SETUP_DEADLINE:?}"),
    )
}

/// The same completion, for delivery `tag`.
fn retag(tag: u64, c: Completion) -> Completion {
    Box::pin(async move { (tag, c.await.1) })
}

/// Send what the window says may be acknowledged.
async fn send_acks(consumer: &DlqConsumer, window: &mut AckWindow) -> Result<(), BrokerError> {
    for ack in window.acks() {
        match ack {
            Ack::UpTo(tag) => consumer.ack_upto(tag).await?,
            Ack::One(tag) => consumer.ack_one(tag).await?,
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
