//! The delivery path of docs/delivery-path.md against the shared RabbitMQ: every hop
//! confirmed, delayed retries waiting on dlqd's own ladder (`dlqd.delay.D.<ms>ms`, no
//! TTL, no broker dead-lettering), left messages in `dlqd.left.D` until RETRYINT. Each
//! test is a situation in which the old design lost or wedged messages; each counts
//! every message by id across every place it may be (support::census).

mod support;

use std::time::{Duration, Instant};

use lapin::options::QueueDeleteOptions;
use lapin::types::AMQPValue;

use support::broker::{self, text, url};
use support::census::{self, Census};
use support::dlqd::{self, Dlqd};
use support::lab::{self, Lab};

/// One test's broker side: the DLQ `dlq`, dlqd's queues for it, and a scratch directory.
struct Bench {
    lab: Lab,
    dlq: String,
    left: String,
    dir: tempfile::TempDir,
}

impl Bench {
    /// A plain durable DLQ under a unique name; dlqd's own queues for it (and the old
    /// design's delay queues in front of `old_delays`) are deleted at cleanup.
    async fn new(old_delays: &[(u64, &str)]) -> Bench {
        let mut lab = Lab::connect(url()).await;
        let dlq = broker::unique("dlqd-dp.dlq");
        lab.queue(&dlq, &[]).await;
        census::adopt_own(&mut lab, &dlq, old_delays);
        Bench {
            lab,
            left: census::left_queue(&dlq),
            dlq,
            dir: tempfile::tempdir().expect("tempdir"),
        }
    }

    /// A work queue name (not declared yet).
    fn name(what: &str) -> String {
        broker::unique(&format!("dlqd-dp.{what}"))
    }

    /// A durable work queue dead-lettering into the DLQ, with `extra` arguments.
    async fn work_queue(&mut self, name: &str, extra: &[(&str, AMQPValue)]) {
        let mut args = vec![
            ("x-dead-letter-exchange", text("")),
            ("x-dead-letter-routing-key", text(&self.dlq)),
        ];
        args.extend(extra.iter().cloned());
        self.lab.queue(name, &args).await;
    }

    /// Publish `ids` to `queue` (confirmed).
    async fn publish(&mut self, queue: &str, ids: &[String]) {
        let msgs: Vec<_> = ids
            .iter()
            .map(|id| (queue.to_string(), lab::props(id, "x")))
            .collect();
        self.lab.publish_all(&msgs).await;
    }

    /// Really dead-letter `ids` out of `work`: publish them there and reject them
    /// (requeue=false); then wait until the DLQ holds `expect` messages.
    async fn dead_letter(&mut self, work: &str, ids: &[String], expect: u32) {
        self.publish(work, ids).await;
        self.lab.reject(work, ids.len()).await;
        self.lab
            .wait_count(&self.dlq, expect, Duration::from_secs(30))
            .await;
    }

    /// A rules file: `INPUTQ(D) control` then `rules`, one per line.
    fn rules(&self, control: &str, rules: &[&str]) -> String {
        let path = self
            .dir
            .path()
            .join(format!("{}.rules", broker::unique("r")));
        let text = format!("INPUTQ({}) {control}\n{}\n", self.dlq, rules.join("\n"));
        std::fs::write(&path, text).expect("write rules");
        path.display().to_string()
    }

    /// `dlqd run ARGS...` against the shared broker.
    fn start(&self, args: &[&str]) -> Dlqd {
        dlqd::start(self.dir.path(), url(), args)
    }

    /// A daemon (`dlqd run --rules FILE`, no --once).
    fn daemon(&self, rules: &str) -> Dlqd {
        self.start(&["--rules", rules])
    }

    /// A census of every place a message of this DLQ may be, plus `targets`.
    async fn census(&self, targets: &[&str]) -> Census {
        Census::peek(&census::places(&self.dlq, targets)).await
    }

    /// Delete `queue` now; how many messages it held.
    async fn delete(&mut self, queue: &str) -> u32 {
        let ch = self.lab.channel().await;
        ch.queue_delete(queue.into(), QueueDeleteOptions::default())
            .await
            .unwrap_or_else(|e| panic!("delete {queue}: {e}"))
    }

    async fn cleanup(mut self) {
        self.lab.cleanup().await;
    }
}

/// `n` ids `PREFIX-0`, `PREFIX-1`, ...
fn ids(prefix: &str, n: usize) -> Vec<String> {
    (0..n).map(|i| format!("{prefix}-{i}")).collect()
}

/// SIGTERM, then a clean exit within 10 s.
async fn stop(d: &mut Dlqd) {
    d.signal("TERM");
    let status = d.wait(Duration::from_secs(10)).await;
    assert!(
        status.success(),
        "dlqd exited {status} after SIGTERM; stderr ends:\n{}",
        d.stderr_tail(30)
    );
}

/// A deadline: `tick` sleeps a little, or fails with `what` once the time is up.
struct Deadline(Instant);

impl Deadline {
    fn after(secs: u64) -> Deadline {
        Deadline(Instant::now() + Duration::from_secs(secs))
    }

    async fn tick(&self, what: impl FnOnce() -> String) {
        assert!(Instant::now() < self.0, "timed out: {}", what());
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    fn passed(&self) -> bool {
        Instant::now() >= self.0
    }
}

/// Wait (at most `secs`) until nothing is ready on `queue`; false if that never came.
async fn settle_empty(lab: &mut Lab, queue: &str, secs: u64) -> bool {
    let deadline = Deadline::after(secs);
    while lab.count(queue).await.unwrap_or(0) > 0 {
        if deadline.passed() {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    true
}

/// Case-insensitive: does `haystack` mention any of `needles`?
fn mentions_any(haystack: &str, needles: &[&str]) -> bool {
    let h = haystack.to_lowercase();
    needles.iter().any(|n| h.contains(&n.to_lowercase()))
}

/// CPU seconds (user + system, every thread) used by process `pid` so far.
fn cpu_seconds(pid: u32) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .unwrap_or_else(|e| panic!("/proc/{pid}/stat: {e}"));
    // After "pid (comm)": field 3 (state) is index 0, utime (14) 11, stime (15) 12.
    let fields: Vec<&str> = stat
        .rsplit_once(')')
        .expect("stat format")
        .1
        .split_whitespace()
        .collect();
    let ticks: u64 =
        fields[11].parse::<u64>().expect("utime") + fields[12].parse::<u64>().expect("stime");
    ticks as f64 / clock_ticks()
}

/// `getconf CLK_TCK`.
fn clock_ticks() -> f64 {
    let out = std::process::Command::new("getconf")
        .arg("CLK_TCK")
        .output()
        .expect("getconf CLK_TCK");
    String::from_utf8_lossy(&out.stdout)
        .trim()
        .parse()
        .expect("CLK_TCK is a number")
}

/// One dead letter of `x` (a queue of its own, so no retry rule for W matches it)
/// that `ACTION(IGNORE)` leaves; its id.
async fn one_left_message(bench: &mut Bench, expect_on_dlq: u32) -> String {
    let x = Bench::name("x");
    bench.work_queue(&x, &[]).await;
    let id = broker::unique("left");
    bench
        .dead_letter(&x, std::slice::from_ref(&id), expect_on_dlq)
        .await;
    id
}

/// Seen in the old design: a delayed retry into a work queue full with
/// `x-overflow: reject-publish` was dead-lettered there by the broker (unconfirmed) and
/// dropped. Now the refusal leaves it, counted as a failed retry, and says why.
#[tokio::test(flavor = "multi_thread")]
async fn retry_refused_by_a_full_target_is_left_not_lost() {
    let w = Bench::name("w");
    let mut bench = Bench::new(&[(1000, &w)]).await;
    bench
        .work_queue(
            &w,
            &[
                ("x-max-length", AMQPValue::LongLongInt(3)),
                ("x-overflow", text("reject-publish")),
            ],
        )
        .await;
    let msg = ids("full", 1);
    bench.dead_letter(&w, &msg, 1).await;
    let fillers = ids("filler", 3);
    bench.publish(&w, &fillers).await;

    let rules = bench.rules(
        "RETRYINT(1s)",
        &[
            &format!("DESTQ({w}) ACTION(RETRY) RETRY(2) DELAY(1s)"),
            "ACTION(IGNORE)",
        ],
    );
    let mut d = bench.daemon(&rules);
    tokio::time::sleep(Duration::from_secs(8)).await;
    stop(&mut d).await;

    let census = bench.census(&[&w]).await;
    census.assert_exactly_once(&msg, &[&bench.dlq, &bench.left]);
    let (_, got) = census.only(&msg[0]);
    assert_eq!(
        got.header_i64("x-dlqd-retries"),
        Some(2),
        "both refused retries counted; census:\n{census}"
    );
    assert_eq!(census.ids_in(&w), fillers, "W holds only its fillers");
    assert!(
        mentions_any(&d.stderr(), &["nack", "refus", "reject-publish"]),
        "stderr names the broker's refusal; it ends:\n{}",
        d.stderr_tail(30)
    );
    bench.cleanup().await;
}

/// `n` dead letters of a work queue W, retried by a daemon with `DELAY(3s)`; once they all
/// wait in the delay queues, W is deleted. The bench, W, the ids and the running daemon.
async fn retries_waiting_for_a_deleted_target(
    prefix: &str,
    n: usize,
) -> (Bench, String, Vec<String>, Dlqd) {
    let w = Bench::name("w");
    let mut bench = Bench::new(&[(3000, &w)]).await;
    bench.work_queue(&w, &[]).await;
    let msgs = ids(prefix, n);
    bench.dead_letter(&w, &msgs, n as u32).await;

    let rules = bench.rules(
        "RETRYINT(1s)",
        &[
            &format!("DESTQ({w}) ACTION(RETRY) RETRY(1) DELAY(3s)"),
            "ACTION(IGNORE)",
        ],
    );
    let d = bench.daemon(&rules);
    assert!(
        settle_empty(&mut bench.lab, &bench.dlq, 10).await,
        "dlqd took nothing off the DLQ; stderr:\n{}",
        d.stderr_tail(20)
    );
    let early = bench.delete(&w).await;
    assert_eq!(
        early, 0,
        "retries reached W before it was deleted (too slow)"
    );
    (bench, w, msgs, d)
}

/// Seen in the old design: retries waiting while their target was deleted and declared
/// again did not all arrive. Every one arrives in the new queue (at least once).
#[tokio::test(flavor = "multi_thread")]
async fn retries_waiting_while_the_target_is_recreated_all_arrive() {
    let (mut bench, w, msgs, mut d) = retries_waiting_for_a_deleted_target("recreated", 20).await;
    bench.work_queue(&w, &[]).await;

    let deadline = Deadline::after(20);
    loop {
        let arrived = bench.lab.count(&w).await.unwrap_or(0);
        if arrived >= 20 {
            break;
        }
        deadline
            .tick(|| format!("W got {arrived} of 20; stderr:\n{}", d.stderr_tail(20)))
            .await;
    }
    stop(&mut d).await;

    let census = bench.census(&[&w]).await;
    census.assert_at_least_once(&msgs, &[&w]);
    bench.cleanup().await;
}

/// Seen in the old design: retries due at a target that was deleted meanwhile went
/// nowhere (the broker drops a dead letter it cannot route). Now each is left.
#[tokio::test(flavor = "multi_thread")]
async fn retries_due_at_a_deleted_target_are_left_not_dropped() {
    let (bench, w, msgs, mut d) = retries_waiting_for_a_deleted_target("gone", 5).await;
    // Past the due time, and past one RETRYINT after it.
    tokio::time::sleep(Duration::from_secs(6)).await;
    stop(&mut d).await;

    let census = bench.census(&[&w]).await;
    census.assert_exactly_once(&msgs, &[&bench.dlq, &bench.left]);
    for id in &msgs {
        let (_, got) = census.only(id);
        assert_eq!(
            got.header_i64("x-dlqd-retries"),
            Some(1),
            "{id}: the failed retry counted"
        );
    }
    assert!(
        mentions_any(
            &d.stderr(),
            &["NO_ROUTE", "not found", "missing", "does not exist"]
        ),
        "stderr names the missing target; it ends:\n{}",
        d.stderr_tail(30)
    );
    bench.cleanup().await;
}

/// An operator deletes dlqd's delay and left queues while it is stopped: the next run
/// declares them again and its delayed retries still arrive.
#[tokio::test(flavor = "multi_thread")]
async fn delay_queues_deleted_between_runs_are_declared_again() {
    let w = Bench::name("w");
    let mut bench = Bench::new(&[(1000, &w)]).await;
    bench.work_queue(&w, &[]).await;
    let rules = bench.rules(
        "RETRYINT(1s)",
        &[
            &format!("DESTQ({w}) ACTION(RETRY) RETRY(1) DELAY(1s)"),
            "ACTION(IGNORE)",
        ],
    );

    let first = ids("run1", 5);
    bench.dead_letter(&w, &first, 5).await;
    let mut d = bench.daemon(&rules);
    bench.lab.wait_count(&w, 5, Duration::from_secs(20)).await;
    stop(&mut d).await;

    for q in census::own_queues(&bench.dlq) {
        bench.delete(&q).await;
    }

    // Take the first batch out of W, so W holds only what the second run retries.
    Census::drain(std::slice::from_ref(&w))
        .await
        .assert_exactly_once(&first, &[&w]);

    let second = ids("run2", 5);
    bench.dead_letter(&w, &second, 5).await;
    let mut d = bench.daemon(&rules);
    let deadline = Deadline::after(20);
    while bench.lab.count(&w).await.unwrap_or(0) < 5 {
        deadline
            .tick(|| {
                format!(
                    "second run's retries not in W; stderr:\n{}",
                    d.stderr_tail(20)
                )
            })
            .await;
    }
    stop(&mut d).await;

    bench
        .census(&[&w])
        .await
        .assert_exactly_once(&second, &[&w]);
    bench.cleanup().await;
}

/// Seen in the old design: a retry through a TTL queue came back with the delay queue's
/// `expired` death on top, so `REASON(expired) ACTION(DISCARD)` threw it away and the
/// first-death facts named dlqd's queue. Now the application's facts stay.
#[tokio::test(flavor = "multi_thread")]
async fn delayed_retry_keeps_the_first_death_facts_and_is_not_discarded() {
    let w = Bench::name("w");
    let mut bench = Bench::new(&[(1000, &w)]).await;
    bench.work_queue(&w, &[]).await;
    let rejected = bench.lab.rejector(&w).await;
    let msg = ids("facts", 1);
    bench.publish(&w, &msg).await;
    bench
        .lab
        .wait_count(&bench.dlq, 1, Duration::from_secs(10))
        .await;

    let rules = bench.rules(
        "RETRYINT(1s)",
        &[
            "REASON(expired) ACTION(DISCARD)",
            &format!("DESTQ({w}) ACTION(RETRY) RETRY(3) DELAY(1s)"),
            "ACTION(IGNORE)",
        ],
    );
    let mut d = bench.daemon(&rules);
    let count = || rejected.load(std::sync::atomic::Ordering::Relaxed);
    let deadline = Deadline::after(30);
    while count() < 4 {
        deadline
            .tick(|| {
                format!(
                    "W saw the message {} times, expected 1 + 3 retries; stderr:\n{}",
                    count(),
                    d.stderr_tail(20)
                )
            })
            .await;
    }
    // Time for the last rejection to reach the DLQ and be left.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    stop(&mut d).await;

    let census = bench.census(&[&w]).await;
    census.assert_exactly_once(&msg, &[&bench.dlq, &bench.left]);
    let (_, got) = census.only(&msg[0]);
    assert_eq!(got.header_i64("x-dlqd-retries"), Some(3), "{census}");
    assert_eq!(
        census::header_str(got, "x-first-death-queue").as_deref(),
        Some(w.as_str())
    );
    assert_eq!(
        census::header_str(got, "x-first-death-reason").as_deref(),
        Some("rejected")
    );
    assert_eq!(count(), 4, "W saw it once, then exactly three retries");
    let stderr = d.stderr();
    assert!(
        !stderr
            .lines()
            .any(|l| l.contains(&msg[0]) && l.to_lowercase().contains("discard")),
        "never discarded; stderr:\n{}",
        d.stderr_tail(30)
    );
    bench.cleanup().await;
}

/// Seen in the old design: while a left message waited out RETRYINT, new dead letters
/// (and retries coming back) waited with it, so DELAY(1s) became up to RETRYINT.
#[tokio::test(flavor = "multi_thread")]
async fn delays_are_exact_while_a_left_message_waits_out_retryint() {
    let w = Bench::name("w");
    let mut bench = Bench::new(&[(1000, &w), (2000, &w), (4000, &w)]).await;
    let left = one_left_message(&mut bench, 1).await;
    bench.work_queue(&w, &[]).await;
    let arrivals = bench.lab.recording_rejector(&w).await;

    let rules = bench.rules(
        "RETRYINT(20s)",
        &[
            &format!("DESTQ({w}) ACTION(RETRY) RETRY(3) DELAY(1s) BACKOFF(2)"),
            "ACTION(IGNORE)",
        ],
    );
    let mut d = bench.daemon(&rules);
    // Let it leave the first message (and, in the old design, start waiting a RETRYINT).
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let msg = ids("exact", 1);
    bench.publish(&w, &msg).await;

    let times = || -> Vec<Instant> {
        arrivals
            .lock()
            .expect("arrivals")
            .iter()
            .filter(|(id, _)| *id == msg[0])
            .map(|(_, t)| *t)
            .collect()
    };
    let gaps = |t: &[Instant]| -> Vec<f64> {
        t.windows(2)
            .map(|p| (p[1] - p[0]).as_secs_f64())
            .collect::<Vec<_>>()
    };
    let deadline = Deadline::after(30);
    while times().len() < 4 {
        deadline
            .tick(|| format!("arrivals in W so far, gaps {:?} s", gaps(&times())))
            .await;
    }
    let got = gaps(&times());
    for (gap, want) in got.iter().zip([1.0, 2.0, 4.0]) {
        assert!(
            (gap - want).abs() <= 0.5,
            "gaps between rejection and next arrival {got:?} s, want [1, 2, 4] ± 0.5"
        );
    }
    tokio::time::sleep(Duration::from_secs(1)).await;
    stop(&mut d).await;

    let census = bench.census(&[&w]).await;
    census.assert_exactly_once(&[left, msg[0].clone()], &[&bench.dlq, &bench.left]);
    assert_eq!(census.only(&msg[0]).1.header_i64("x-dlqd-retries"), Some(3));
    bench.cleanup().await;
}

/// Seen in the old design: two instances sharing a DLQ kept moving one left message to
/// the tail for each other, a busy loop. Together they now stay under 1 % of a CPU.
#[tokio::test(flavor = "multi_thread")]
async fn two_daemons_sharing_a_left_message_stay_idle() {
    let mut bench = Bench::new(&[]).await;
    let left = one_left_message(&mut bench, 1).await;
    let rules = bench.rules("RETRYINT(1s)", &["ACTION(IGNORE)"]);
    let mut a = bench.daemon(&rules);
    let mut b = bench.daemon(&rules);
    tokio::time::sleep(Duration::from_secs(3)).await;

    let before = cpu_seconds(a.pid()) + cpu_seconds(b.pid());
    tokio::time::sleep(Duration::from_secs(60)).await;
    assert!(a.running() && b.running(), "both still running");
    let used = cpu_seconds(a.pid()) + cpu_seconds(b.pid()) - before;
    eprintln!("two daemons used {used:.3} s CPU in 60 s");
    stop(&mut a).await;
    stop(&mut b).await;
    assert!(
        used < 0.6,
        "two daemons used {used:.2} s CPU over 60 s (limit 0.6 s, 1 % of one CPU)"
    );

    let census = bench.census(&[]).await;
    census.assert_exactly_once(&[left], &[&bench.dlq, &bench.left]);
    bench.cleanup().await;
}

/// Seen in the old design: RETRYINT(0) examined a left message again at once, forever.
/// Now `check` warns and the daemon holds to a floor.
#[tokio::test(flavor = "multi_thread")]
async fn retryint_zero_is_warned_about_and_does_not_spin() {
    let mut bench = Bench::new(&[]).await;
    let rules = bench.rules("RETRYINT(0)", &["ACTION(IGNORE)"]);
    let left = one_left_message(&mut bench, 1).await;
    let mut d = bench.daemon(&rules);
    tokio::time::sleep(Duration::from_secs(1)).await;
    let before = cpu_seconds(d.pid());
    tokio::time::sleep(Duration::from_secs(5)).await;
    let used = cpu_seconds(d.pid()) - before;
    eprintln!("RETRYINT(0): the daemon used {used:.3} s CPU in 5 s");
    stop(&mut d).await;
    assert!(
        used < 0.5,
        "RETRYINT(0): {used:.2} s CPU in 5 s (limit 0.5 s)"
    );

    let out = std::process::Command::new(env!("CARGO_BIN_EXE_dlqd"))
        .args(["check", &rules])
        .output()
        .expect("dlqd check");
    let said = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "check exits 0 (a warning):\n{said}");
    assert!(
        said.contains("RETRYINT") && mentions_any(&said, &["warning"]),
        "check warns about RETRYINT:\n{said}"
    );

    let census = bench.census(&[]).await;
    census.assert_exactly_once(&[left], &[&bench.dlq, &bench.left]);
    bench.cleanup().await;
}

/// Seen in the old design: a left message coming back every RETRYINT counted as new
/// work, so WAIT(5s) never ran out.
#[tokio::test(flavor = "multi_thread")]
async fn wait_stops_a_daemon_whose_only_message_is_left() {
    let mut bench = Bench::new(&[]).await;
    let left = one_left_message(&mut bench, 1).await;
    let rules = bench.rules("RETRYINT(2s) WAIT(5s)", &["ACTION(IGNORE)"]);
    let mut d = bench.daemon(&rules);
    let status = d.wait(Duration::from_secs(10)).await;
    assert!(status.success(), "exit {status}:\n{}", d.stderr_tail(30));

    let census = bench.census(&[]).await;
    census.assert_exactly_once(&[left], &[&bench.dlq, &bench.left]);
    bench.cleanup().await;
}

/// `dlqd run --once --queue D --rule RULE`: exits 0 within 30 s.
async fn run_once(bench: &Bench, rule: &str) {
    let mut d = bench.start(&["--once", "--queue", &bench.dlq, "--rule", rule]);
    let status = d.wait(Duration::from_secs(30)).await;
    assert!(
        status.success(),
        "run --once --rule '{rule}' exited {status}:\n{}",
        d.stderr_tail(30)
    );
}

/// Seen in the old design: messages an earlier `--once` left were marked as examined
/// and a second `--once` right after it would not touch them before RETRYINT.
#[tokio::test(flavor = "multi_thread")]
async fn once_discards_what_an_earlier_once_left() {
    let mut bench = Bench::new(&[]).await;
    let w = Bench::name("w");
    bench.work_queue(&w, &[]).await;
    let msgs = ids("once", 10);
    bench.dead_letter(&w, &msgs, 10).await;

    run_once(&bench, "ACTION(IGNORE)").await;
    let census = bench.census(&[&w]).await;
    census.assert_exactly_once(&msgs, &[&bench.dlq, &bench.left]);

    run_once(&bench, "ACTION(DISCARD)").await;
    bench.census(&[&w]).await.assert_none(&msgs);
    bench.cleanup().await;
}

/// Seen in the old design: messages a daemon had left were not due for its RETRYINT,
/// so a `--once` discard right after it stopped did not reach them.
#[tokio::test(flavor = "multi_thread")]
async fn once_discards_what_a_stopped_daemon_left() {
    let mut bench = Bench::new(&[]).await;
    let w = Bench::name("w");
    bench.work_queue(&w, &[]).await;
    let msgs = ids("left", 5);
    bench.dead_letter(&w, &msgs, 5).await;

    let rules = bench.rules("RETRYINT(60s)", &["ACTION(IGNORE)"]);
    let mut d = bench.daemon(&rules);
    // Give it time to take them (the old design puts them back on the DLQ).
    settle_empty(&mut bench.lab, &bench.dlq, 3).await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    stop(&mut d).await;
    let census = bench.census(&[&w]).await;
    census.assert_exactly_once(&msgs, &[&bench.dlq, &bench.left]);

    run_once(&bench, "ACTION(DISCARD)").await;
    bench.census(&[&w]).await.assert_none(&msgs);
    assert_eq!(bench.lab.count(&bench.dlq).await, Some(0), "D is empty");
    assert_eq!(
        bench.lab.count(&bench.left).await.unwrap_or(0),
        0,
        "left is empty"
    );
    bench.cleanup().await;
}

/// dlqd cannot read a DLQ's `x-message-ttl` over AMQP, and a left message's age starts
/// again each time it comes back: it says so, once per process (an INFO line), not a
/// WARN per DLQ at every start whether or not the DLQ has a TTL.
#[tokio::test(flavor = "multi_thread")]
async fn daemon_says_once_that_a_dlq_message_ttl_restarts_for_left_messages() {
    let mut bench = Bench::new(&[]).await;
    let other = broker::unique("dlqd-dp.other");
    bench.lab.queue(&other, &[]).await;
    census::adopt_own(&mut bench.lab, &other, &[]);
    let dir = bench.dir.path().join("rules.d");
    std::fs::create_dir(&dir).expect("mkdir");
    for (file, dlq) in [("a.rules", &bench.dlq), ("b.rules", &other)] {
        let text = format!("INPUTQ({dlq}) RETRYINT(60s)\nACTION(IGNORE)\n");
        std::fs::write(dir.join(file), text).expect("write");
    }
    let mut d = bench.start(&["--rules", &dir.display().to_string()]);
    let deadline = Deadline::after(20);
    while d.stderr().matches(": connected ").count() < 2 {
        deadline.tick(|| d.stderr_tail(20)).await;
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    stop(&mut d).await;
    let err = d.stderr();
    let said: Vec<&str> = err
        .lines()
        .filter(|l| l.contains("x-message-ttl"))
        .collect();
    assert_eq!(said.len(), 1, "once per process:\n{}", d.stderr_tail(30));
    assert!(said[0].contains(" INFO "), "an INFO line: {}", said[0]);
    bench.cleanup().await;
}

/// Seen in an operator's trial: delayed retries due before a `--once` run were moved
/// one ladder step per run (into a step whose mover had already found it empty and
/// finished), so DELAY(10s) took four runs. A `--once` run delivers every retry due.
#[tokio::test(flavor = "multi_thread")]
async fn once_delivers_every_retry_already_due_in_one_run() {
    let mut bench = Bench::new(&[]).await;
    let w = Bench::name("w");
    bench.work_queue(&w, &[]).await;
    let msgs = ids("due", 5);
    bench.dead_letter(&w, &msgs, 5).await;
    let rules = bench.rules(
        "WAIT(NO)",
        &[&format!("DESTQ({w}) ACTION(RETRY) RETRY(3) DELAY(3s)")],
    );

    let mut first = bench.start(&["--rules", &rules, "--once"]);
    let status = first.wait(Duration::from_secs(30)).await;
    assert!(
        status.success(),
        "first run: {status}\n{}",
        first.stderr_tail(30)
    );
    let delays = census::delay_queues(&bench.dlq);
    let delay_refs: Vec<&str> = delays.iter().map(String::as_str).collect();
    bench
        .census(&[&w])
        .await
        .assert_exactly_once(&msgs, &delay_refs);
    assert!(
        first.stderr().contains(&format!(
            "5 wait in dlqd.delay.{}.* and 0 in dlqd.left.{}",
            bench.dlq, bench.dlq
        )),
        "{}",
        first.stderr_tail(20)
    );

    // Every retry is due after 3 s.
    tokio::time::sleep(Duration::from_secs(4)).await;
    let mut second = bench.start(&["--rules", &rules, "--once"]);
    let status = second.wait(Duration::from_secs(30)).await;
    assert!(
        status.success(),
        "second run: {status}\n{}",
        second.stderr_tail(30)
    );
    let census = bench.census(&[&w]).await;
    census.assert_exactly_once(&msgs, &[&w]);
    for q in &delays {
        assert_eq!(bench.lab.count(q).await.unwrap_or(0), 0, "{q} is empty");
    }
    let err = second.stderr();
    assert!(
        err.contains("delayed retries delivered 5")
            && err.contains(&format!("0 wait in dlqd.delay.{}.*", bench.dlq)),
        "{}",
        second.stderr_tail(20)
    );
    bench.cleanup().await;
}

/// Seen in an operator's trial: a stopped daemon's left messages and delayed retries
/// wait in dlqd's queues (rightly), but nothing said so and `dlqd inspect --queue D`
/// printed `0 messages`. The run summary and inspect now say what waits there.
#[tokio::test(flavor = "multi_thread")]
async fn a_stopped_daemon_and_inspect_say_what_waits_in_dlqds_queues() {
    let mut bench = Bench::new(&[]).await;
    let wr = Bench::name("wr");
    let wl = Bench::name("wl");
    bench.work_queue(&wr, &[]).await;
    bench.work_queue(&wl, &[]).await;
    let retried = ids("later", 2);
    let left = ids("left", 3);
    bench.dead_letter(&wr, &retried, 2).await;
    bench.dead_letter(&wl, &left, 5).await;
    let rules = bench.rules(
        "RETRYINT(60s)",
        &[
            &format!("DESTQ({wr}) ACTION(RETRY) RETRY(1) DELAY(60s)"),
            "ACTION(IGNORE)",
        ],
    );
    let mut d = bench.daemon(&rules);
    assert!(
        settle_empty(&mut bench.lab, &bench.dlq, 20).await,
        "D drained"
    );
    // The movers hold what they took (unacknowledged): the log says what was done.
    let deadline = Deadline::after(20);
    while done(&d, "leave") < 3 || done(&d, "retry") < 2 {
        deadline.tick(|| d.stderr_tail(20)).await;
    }
    stop(&mut d).await;
    let all: Vec<String> = retried.iter().chain(&left).cloned().collect();
    let census = bench.census(&[&wr, &wl]).await;
    census.assert_exactly_once(&left, &[&bench.left]);
    let delays = census::delay_queues(&bench.dlq);
    let delay_refs: Vec<&str> = delays.iter().map(String::as_str).collect();
    census.assert_exactly_once(&retried, &delay_refs);
    let expected = format!(
        "2 wait in dlqd.delay.{0}.* and 3 in dlqd.left.{0}; they move on when dlqd serves {0} again",
        bench.dlq
    );
    assert!(d.stderr().contains(&expected), "{}", d.stderr_tail(20));

    // inspect: the DLQ is empty, and says what waits for it; twice the same --queue is one.
    for args in [
        vec!["inspect", "--queue", bench.dlq.as_str()],
        vec![
            "inspect",
            "--queue",
            bench.dlq.as_str(),
            "--queue",
            bench.dlq.as_str(),
        ],
    ] {
        let out = dlqd::dlqd(&args, url(), Duration::from_secs(30));
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(out.status.success(), "{args:?}: {}", dlqd::stderr_of(&out));
        assert!(stdout.contains("0 messages"), "{args:?}: {stdout}");
        assert!(
            stdout
                .contains("also waiting in dlqd's queues for this DLQ: 2 delayed retries, 3 left"),
            "{args:?}: {stdout}"
        );
    }
    // Nothing moved or was lost by looking.
    bench
        .census(&[&wr, &wl])
        .await
        .assert_exactly_once(&all, &[&[bench.left.as_str()][..], &delay_refs].concat());
    bench.cleanup().await;
}

/// Seen in an operator's trial: a DLQ retired by SIGHUP left its delayed retries in
/// dlqd's delay queues with nothing in the log saying so. The retire line says it.
#[tokio::test(flavor = "multi_thread")]
async fn a_dlq_retired_by_sighup_says_what_waits_in_its_delay_queues() {
    let mut bench = Bench::new(&[]).await;
    let other = broker::unique("dlqd-dp.other");
    bench.lab.queue(&other, &[]).await;
    census::adopt_own(&mut bench.lab, &other, &[]);
    let w = Bench::name("w");
    bench.work_queue(&w, &[]).await;
    let msgs = ids("stranded", 4);
    bench.dead_letter(&w, &msgs, 4).await;

    let dir = bench.dir.path().join("rules.d");
    std::fs::create_dir(&dir).expect("mkdir");
    let mine = dir.join("mine.rules");
    std::fs::write(
        &mine,
        format!(
            "INPUTQ({})\nDESTQ({w}) ACTION(RETRY) RETRY(1) DELAY(60s)\n",
            bench.dlq
        ),
    )
    .expect("write");
    std::fs::write(
        dir.join("other.rules"),
        format!("INPUTQ({other})\nACTION(DISCARD)\n"),
    )
    .expect("write");
    let mut d = bench.start(&["--rules", &dir.display().to_string()]);
    assert!(
        settle_empty(&mut bench.lab, &bench.dlq, 20).await,
        "D drained"
    );
    let delays = census::delay_queues(&bench.dlq);
    let delay_refs: Vec<&str> = delays.iter().map(String::as_str).collect();
    let deadline = Deadline::after(20);
    while done(&d, "retry") < msgs.len() {
        deadline.tick(|| d.stderr_tail(20)).await;
    }

    std::fs::remove_file(&mine).expect("rm");
    d.signal("HUP");
    let expected = format!(
        "retired; 4 wait in dlqd.delay.{0}.* and 0 in dlqd.left.{0}; they move on when dlqd serves {0} again",
        bench.dlq
    );
    let deadline = Deadline::after(20);
    while !d.stderr().contains(&expected) {
        deadline.tick(|| d.stderr_tail(20)).await;
    }
    stop(&mut d).await;
    bench
        .census(&[&w])
        .await
        .assert_exactly_once(&msgs, &delay_refs);
    bench.cleanup().await;
}

/// How many `ACTION` actions the daemon's log says it did.
fn done(d: &Dlqd, action: &str) -> usize {
    d.stderr().matches(&format!("action=\"{action}\"")).count()
}
