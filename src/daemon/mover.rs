//! A stage mover: moves the messages of one of dlqd's stage queues (a delay step or
//! the left queue) on when they are due — to the next delay step, to the retry's
//! target, or back to the DLQ. Each move is published with confirm + `mandatory` and
//! only then is the stage copy acknowledged (see docs/delivery-path.md).
//!
//! A stage queue is FIFO by due time (`stage::ready_at`), so the mover holds the first
//! few deliveries (prefetch) in order and waits for the head. A head more than
//! [`HOLD_MAX`] away is not held: the channel is closed (the broker takes the deliveries
//! back, in order) and the queue consumed again when the head is due, so no delivery is
//! held anywhere near the broker's consumer timeout.

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;
use std::time::Duration;

use futures_lite::StreamExt;
use lapin::Connection;
use tokio::sync::watch;
use tracing::{debug, warn};

use crate::broker::publisher::Publisher;
use crate::broker::topology::{declare_stage_queue, queue_depth};
use crate::broker::{ActionFailure, Delivery, DlqConsumer};
use crate::daemon::confirms::{Confirms, completion};
use crate::daemon::now_ms;
use crate::message::Message;
use crate::observer::{ActionEvent, Observer};
use crate::stage::{self, HeadPlan, Next, plan_head};

/// Deliveries held per stage queue.
const PREFETCH: u16 = 32;
/// The longest a mover holds a delivery that is not due.
pub const HOLD_MAX: Duration = Duration::from_secs(60);
/// How long a mover waits after a failure before it consumes again.
const AFTER_FAILURE: Duration = Duration::from_secs(5);
/// How long a stop may spend on the moves in flight.
const STOP_GRACE: Duration = Duration::from_secs(5);

/// What every mover of one DLQ shares.
#[derive(Clone)]
pub struct Movers {
    pub conn: Arc<Connection>,
    pub dlq: String,
    /// `--once`/WAIT(NO): move what is due (everything, for the left queue), then end.
    pub once: bool,
    pub stop: watch::Receiver<bool>,
    pub retry_interval: watch::Receiver<Duration>,
    pub observer: Observer,
    /// The type of the stage queues (when one must be declared again).
    pub stage_kind: crate::stage::StageKind,
}

/// What one mover did.
#[derive(Debug, Default, Clone, Copy)]
pub struct Moved {
    /// Delayed retries delivered to their target.
    pub retried: u64,
    /// Delayed retries their target refused (left instead).
    pub refused: u64,
    /// Messages moved back to the DLQ.
    pub to_dlq: u64,
}

/// How one consuming cycle ended.
enum CycleEnd {
    Stopped,
    /// `--once`: nothing more is due.
    Done,
    /// The head is not due before this time (ms since the epoch).
    SleepUntil(u64),
}

/// Where a move in flight goes, and what to do when it fails.
enum Hop {
    /// To the next delay step (declared again and re-sent once if missing).
    Step { queue: String, redeclared: bool },
    /// To the retry's target.
    Target { queue: String },
    /// Back to the DLQ (a left message due, or a refused retry under `--once`).
    Dlq,
    /// A refused retry, to the left queue.
    Left { redeclared: bool },
}

struct InFlight {
    message: Message,
    hop: Hop,
}

impl Movers {
    /// Move the messages of `queue` until a stop (or, under `--once`, until nothing more
    /// is due).
    pub async fn run(mut self, queue: String) -> Moved {
        let mut moved = Moved::default();
        loop {
            if *self.stop.borrow() {
                return moved;
            }
            match self.cycle(&queue, &mut moved).await {
                Ok(CycleEnd::Stopped | CycleEnd::Done) => return moved,
                Ok(CycleEnd::SleepUntil(t)) => {
                    debug!(queue = %queue, due_in_ms = t.saturating_sub(now_ms()), "head not due; consuming again then");
                    self.sleep_until(t).await;
                }
                Err(reason) => {
                    if !self.conn.status().connected() {
                        return moved;
                    }
                    warn!(queue = %queue, reason = %reason, "moving messages out of a dlqd queue failed; trying again in 5 s");
                    if self.once {
                        return moved;
                    }
                    self.sleep_until(now_ms() + AFTER_FAILURE.as_millis() as u64)
                        .await;
                }
            }
        }
    }

    /// Sleep until `t`, a stop, or a change of RETRYINT (which moves due times).
    async fn sleep_until(&mut self, t: u64) {
        let d = Duration::from_millis(t.saturating_sub(now_ms()));
        tokio::select! {
            _ = tokio::time::sleep(d) => {}
            _ = self.stop.changed() => {}
            _ = self.retry_interval.changed() => {}
        }
    }

    fn is_left_queue(&self, queue: &str) -> bool {
        queue.starts_with(stage::LEFT_QUEUE_PREFIX)
    }

    /// When the held delivery `d` is due.
    fn ready_at(&self, queue: &str, d: &Delivery) -> u64 {
        if self.once && self.is_left_queue(queue) {
            // --once applies the table to every message: the left ones come back now.
            return 0;
        }
        stage::ready_at(&d.message, *self.retry_interval.borrow())
    }

    async fn cycle(&mut self, queue: &str, moved: &mut Moved) -> Result<CycleEnd, String> {
        declare_stage_queue(&self.conn, queue, self.stage_kind)
            .await
            .map_err(|f| f.reason)?;
        let depth = if self.once {
            let n = queue_depth(&self.conn, queue).await.map_err(|f| f.reason)?;
            if n == 0 {
                return Ok(CycleEnd::Done);
            }
            Some(u64::from(n))
        } else {
            None
        };
        let mut consumer = DlqConsumer::start(&self.conn, queue, PREFETCH)
            .await
            .map_err(|e| e.to_string())?;
        let mut publisher = Publisher::open(&self.conn)
            .await
            .map_err(|e| e.to_string())?;
        let end = self
            .consume(queue, &mut consumer, &mut publisher, depth, moved)
            .await;
        consumer.close().await;
        publisher.close().await;
        end
    }

    async fn consume(
        &mut self,
        queue: &str,
        consumer: &mut DlqConsumer,
        publisher: &mut Publisher,
        depth: Option<u64>,
        moved: &mut Moved,
    ) -> Result<CycleEnd, String> {
        let mut held: VecDeque<Delivery> = VecDeque::new();
        let mut states: HashMap<u64, InFlight> = HashMap::new();
        let mut confirms = Confirms::default();
        let mut taken = 0u64;
        let mut stop_deadline: Option<tokio::time::Instant> = None;
        loop {
            let now = now_ms();
            let hold_ms = HOLD_MAX.as_millis() as u64;
            if stop_deadline.is_none() {
                while let Some(head) = held.front() {
                    let ready = self.ready_at(queue, head);
                    if plan_head(ready, now, hold_ms, self.once, confirms.is_empty())
                        != HeadPlan::Move
                    {
                        break;
                    }
                    let d = held.pop_front().expect("a head");
                    self.start_move(queue, publisher, &mut states, &mut confirms, d, now)
                        .await;
                }
            }
            let head_ready = held.front().map(|d| self.ready_at(queue, d));
            if confirms.is_empty() {
                if stop_deadline.is_some() {
                    return Ok(CycleEnd::Stopped);
                }
                match head_ready.map(|r| (r, plan_head(r, now, hold_ms, self.once, true))) {
                    Some((_, HeadPlan::Done)) => return Ok(CycleEnd::Done),
                    Some((r, HeadPlan::Release)) => return Ok(CycleEnd::SleepUntil(r)),
                    None if depth.is_some_and(|n| taken >= n) => return Ok(CycleEnd::Done),
                    _ => {}
                }
            }
            let wake = head_ready
                .map(|r| Duration::from_millis(r.saturating_sub(now)))
                .unwrap_or(Duration::from_secs(3600));
            let grace = stop_deadline
                .unwrap_or_else(|| tokio::time::Instant::now() + Duration::from_secs(3600));
            tokio::select! {
                _ = self.stop.changed(), if stop_deadline.is_none() => {
                    stop_deadline = Some(tokio::time::Instant::now() + STOP_GRACE);
                    let _ = consumer.cancel().await;
                }
                _ = self.retry_interval.changed() => {}
                d = consumer.next(), if stop_deadline.is_none() => match d {
                    None => return Err(format!("the broker cancelled the consumer of {queue} (was it deleted?)")),
                    Some(Err(e)) => return Err(e.to_string()),
                    Some(Ok(d)) => {
                        taken += 1;
                        held.push_back(d);
                    }
                },
                Some((tag, result)) = confirms.next(), if !confirms.is_empty() => {
                    self.finished(queue, consumer, publisher, &mut states, &mut confirms, tag, result, moved).await?;
                }
                _ = tokio::time::sleep(wake), if head_ready.is_some() && stop_deadline.is_none() => {}
                _ = tokio::time::sleep(Duration::from_secs(1)), if self.once && held.is_empty() && confirms.is_empty() => {
                    // --once: nothing more came within a second.
                    return Ok(CycleEnd::Done);
                }
                _ = tokio::time::sleep_until(grace), if stop_deadline.is_some() => {
                    warn!(queue = %queue, in_flight = confirms.len(), "stop: moves still unconfirmed; the broker takes them back");
                    return Ok(CycleEnd::Stopped);
                }
            }
        }
    }

    /// Publish the due delivery `d` to where it goes next.
    async fn start_move(
        &self,
        queue: &str,
        publisher: &mut Publisher,
        states: &mut HashMap<u64, InFlight>,
        confirms: &mut Confirms,
        d: Delivery,
        now: u64,
    ) {
        let (exchange, routing_key, message, hop) =
            match stage::next_hop(&self.dlq, &d.message, now) {
                Next::Step(p) => (
                    "",
                    p.queue.clone(),
                    p.message,
                    Hop::Step {
                        queue: p.queue,
                        redeclared: false,
                    },
                ),
                Next::Target { queue, message } => {
                    ("", queue.clone(), message, Hop::Target { queue })
                }
                Next::Dlq(m) => {
                    let m = if self.is_left_queue(queue) {
                        crate::outgoing::back_from_left(&m, now)
                    } else {
                        m
                    };
                    ("", self.dlq.clone(), m, Hop::Dlq)
                }
            };
        let confirm = publisher
            .publish(&self.conn, exchange, &routing_key, &message)
            .await;
        states.insert(d.tag, InFlight { message, hop });
        confirms.push(completion(d.tag, confirm));
    }

    #[allow(clippy::too_many_arguments)]
    async fn finished(
        &self,
        queue: &str,
        consumer: &DlqConsumer,
        publisher: &mut Publisher,
        states: &mut HashMap<u64, InFlight>,
        confirms: &mut Confirms,
        tag: u64,
        result: Result<(), ActionFailure>,
        moved: &mut Moved,
    ) -> Result<(), String> {
        let Some(state) = states.remove(&tag) else {
            return Ok(());
        };
        let id = state
            .message
            .properties
            .message_id
            .clone()
            .unwrap_or_default();
        let f = match result {
            Ok(()) => {
                match &state.hop {
                    Hop::Target { queue: target } => {
                        moved.retried += 1;
                        debug!(message_id = %id, target = %target, "delayed retry delivered");
                    }
                    Hop::Dlq => moved.to_dlq += 1,
                    Hop::Left { .. } => moved.refused += 1,
                    Hop::Step { .. } => {}
                }
                consumer.ack_one(tag).await.map_err(|e| e.to_string())?;
                return Ok(());
            }
            Err(f) => f,
        };
        if !self.conn.status().connected() {
            return Err(format!("connection lost: {}", f.reason));
        }
        let (routing_key, message, hop) = match state.hop {
            Hop::Step {
                queue: step,
                redeclared: false,
            } if f.is_no_route() => {
                // An operator deleted the step's queue: declare it again and re-send.
                declare_stage_queue(&self.conn, &step, self.stage_kind)
                    .await
                    .map_err(|e| e.reason)?;
                (
                    step.clone(),
                    state.message,
                    Hop::Step {
                        queue: step,
                        redeclared: true,
                    },
                )
            }
            Hop::Left { redeclared: false } if f.is_no_route() => {
                let left = stage::left_queue(&self.dlq);
                declare_stage_queue(&self.conn, &left, self.stage_kind)
                    .await
                    .map_err(|e| e.reason)?;
                (left, state.message, Hop::Left { redeclared: true })
            }
            Hop::Target { queue: target } => {
                warn!(message_id = %id, target = %target, reason = %f.reason,
                    "delayed retry refused by its target; the message is left (its attempt counted)");
                self.observer.failed(
                    &ActionEvent {
                        queue: &self.dlq,
                        message_id: (!id.is_empty()).then_some(id.as_str()),
                        rule: None,
                        action: "retry",
                        target: Some(&target),
                        delay_ms: None,
                        attempt: state
                            .message
                            .header(crate::message::RETRIES_HEADER)
                            .and_then(crate::message::Value::as_u64)
                            .and_then(|n| u32::try_from(n).ok()),
                    },
                    &f,
                );
                if self.once {
                    (self.dlq.clone(), state.message, Hop::Dlq)
                } else {
                    let p = stage::park_left(&self.dlq, &state.message, now_ms());
                    (p.queue, p.message, Hop::Left { redeclared: false })
                }
            }
            _ => {
                return Err(format!(
                    "cannot move message {id:?} out of {queue}: {}",
                    f.reason
                ));
            }
        };
        let confirm = publisher
            .publish(&self.conn, "", &routing_key, &message)
            .await;
        states.insert(tag, InFlight { message, hop });
        confirms.push(completion(tag, confirm));
        Ok(())
    }
}
