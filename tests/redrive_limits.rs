//! Redrive limits against the real RabbitMQ: `dlqd run --rate` (or the rules' `RATE()`)
//! drains at the rate asked (measured from the audit trail's times) with no more than a second of the rate held
//! unacknowledged, and `--max N` (daemon and `--once`) handles exactly N and leaves
//! exactly the rest on the DLQ. Every message is counted in and out.

mod common;
mod support;

use std::time::{Duration, Instant, SystemTime};

use common::*;
use lapin::BasicProperties;

const T: Duration = Duration::from_secs(30);

fn numbered(n: usize) -> Vec<(Vec<u8>, BasicProperties)> {
    (0..n)
        .map(|i| {
            (
                format!("m{i:04}").into_bytes(),
                props(&format!("m{i:04}"), "fwd"),
            )
        })
        .collect()
}

/// The times of the audit trail's lines whose outcome is `ok`, in order.
fn audit_times(path: &std::path::Path) -> Vec<SystemTime> {
    let text = std::fs::read_to_string(path).expect("audit trail");
    text.lines()
        .filter(|l| l.contains(r#""outcome":"ok""#))
        .map(|l| {
            let v: serde_json::Value = serde_json::from_str(l).expect("audit line is JSON");
            humantime::parse_rfc3339(v["time"].as_str().expect("time")).expect("RFC 3339 time")
        })
        .collect()
}

/// The rate the audit trail's `n` ok lines were written at is within 10% of `want`/s.
fn assert_rate(audit: &std::path::Path, n: usize, want: f64) {
    let times = audit_times(audit);
    assert_eq!(times.len(), n, "one ok line per message");
    let span = times[n - 1]
        .duration_since(times[0])
        .expect("in order")
        .as_secs_f64();
    let rate = (n - 1) as f64 / span;
    eprintln!("measured {rate:.1}/s over {span:.2}s, asked {want}/s");
    assert!(
        (rate - want).abs() <= want / 10.0,
        "measured {rate:.1}/s over {span:.2}s, asked {want}/s"
    );
}

/// Every one of the `n` numbered messages arrived on `fwd` once, in order; the DLQ is
/// empty.
async fn assert_all_forwarded_in_order(b: &mut Broker, fwd: &str, dlq: &str, n: usize) {
    let got = b.drain(fwd).await;
    let want: Vec<String> = (0..n).map(|i| format!("m{i:04}")).collect();
    assert_eq!(bodies(&got), want);
    assert_eq!(b.count(dlq).await, 0);
}

fn forward_rules(dir: &std::path::Path, dlq: &str, fwd: &str) -> std::path::PathBuf {
    rules_file(
        dir,
        &format!("INPUTQ({dlq}) RETRYINT(60s)\nHDR(act=fwd) ACTION(FWD) FWDQ({fwd})\n"),
    )
}

/// 300 expired dead letters drained at 100/s: the measured rate is within 10% of it,
/// every one arrives once, and while it runs no more than a second of the rate (plus
/// the few in flight) is held unacknowledged by dlqd.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_paced_drain_keeps_to_the_rate_and_holds_little() {
    const N: usize = 300;
    let mut b = Broker::connect().await;
    let (work, dlq, fwd) = (unique("work"), unique("dlq"), unique("fwd"));
    b.work_queue(&work, &dlq, Way::Expire).await;
    b.queue(&fwd, &[]).await;
    b.dead_letter(&work, &dlq, Way::Expire, &numbered(N)).await;

    let dir = tempfile::tempdir().expect("tempdir");
    let rules = forward_rules(dir.path(), &dlq, &fwd);
    let audit = dir.path().join("audit.jsonl");
    let mut d = start_dlqd(
        dir.path(),
        &[
            "--rules",
            rules.to_str().unwrap(),
            "--once",
            "--rate",
            "100/s",
            "--audit",
            audit.to_str().unwrap(),
        ],
    );
    // Held unacknowledged = what is neither ready on the DLQ nor forwarded. The forward
    // queue is read first, so the figure is an upper bound.
    let mut most_held = 0u32;
    let mut samples = 0;
    let deadline = Instant::now() + T;
    while d.running() {
        assert!(Instant::now() < deadline, "{}", d.stderr_tail(30));
        let forwarded = b.count(&fwd).await;
        let ready = b.count(&dlq).await;
        if forwarded > 0 && (forwarded as usize) < N - 20 {
            most_held = most_held.max(N as u32 - ready - forwarded);
            samples += 1;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let status = d.wait(T).await;
    assert!(status.success(), "{status}\n{}", d.stderr_tail(30));
    assert!(samples >= 10, "only {samples} samples while it ran");
    // A second of 100/s is the prefetch; a few more in flight between the two reads.
    assert!(
        most_held <= 100 + 20,
        "{most_held} held unacknowledged at most"
    );

    eprintln!("held at most {most_held} ({samples} samples)");
    assert_rate(&audit, N, 100.0);
    // Every message in came out once, in order; the DLQ is empty.
    assert_all_forwarded_in_order(&mut b, &fwd, &dlq, N).await;
    b.cleanup().await;
}

/// `--once --max 4` (the canary): the first four are handled, the other six stay on the
/// DLQ untouched, the summary says it stopped at --max, exit 0.
#[tokio::test]
async fn once_with_max_handles_n_and_leaves_the_rest() {
    let mut b = Broker::connect().await;
    let (work, dlq, fwd) = (unique("work"), unique("dlq"), unique("fwd"));
    b.work_queue(&work, &dlq, Way::Reject).await;
    b.queue(&fwd, &[]).await;
    b.dead_letter(&work, &dlq, Way::Reject, &numbered(10)).await;

    let dir = tempfile::tempdir().expect("tempdir");
    let rules = forward_rules(dir.path(), &dlq, &fwd);
    let (status, stderr) = run_dlqd(
        dir.path(),
        &["--rules", rules.to_str().unwrap(), "--once", "--max", "4"],
        T,
    )
    .await;
    assert!(status.success(), "{status}\n{stderr}");
    let summary = stderr
        .lines()
        .find(|l| l.contains("run summary"))
        .unwrap_or_else(|| panic!("no summary:\n{stderr}"));
    assert!(
        summary.contains("done: forward 4") && summary.contains("stopped at --max after 4"),
        "{summary}"
    );
    // In: 10. Out: 4 forwarded + 6 on the DLQ, in their order, never touched.
    let forwarded = b.drain(&fwd).await;
    assert_eq!(bodies(&forwarded), vec!["m0000", "m0001", "m0002", "m0003"]);
    let rest = b.drain(&dlq).await;
    assert_eq!(
        bodies(&rest),
        vec!["m0004", "m0005", "m0006", "m0007", "m0008", "m0009"]
    );
    assert!(rest.iter().all(|g| g.header("x-dlqd-examined").is_none()));
    assert_eq!(b.count(&dlq_left(&dlq)).await, 0);
    b.cleanup().await;
}

/// A daemon (no --once) with `--max 3 --rate 20/s` stops by itself after three,
/// leaving exactly the other seven on the DLQ.
#[tokio::test]
async fn a_daemon_with_max_stops_by_itself() {
    let mut b = Broker::connect().await;
    let (work, dlq, fwd) = (unique("work"), unique("dlq"), unique("fwd"));
    b.work_queue(&work, &dlq, Way::Expire).await;
    b.queue(&fwd, &[]).await;
    b.dead_letter(&work, &dlq, Way::Expire, &numbered(10)).await;

    let dir = tempfile::tempdir().expect("tempdir");
    let rules = forward_rules(dir.path(), &dlq, &fwd);
    let (status, stderr) = run_dlqd(
        dir.path(),
        &[
            "--rules",
            rules.to_str().unwrap(),
            "--max",
            "3",
            "--rate",
            "20/s",
        ],
        T,
    )
    .await;
    assert!(status.success(), "{status}\n{stderr}");
    assert!(stderr.contains("--max reached"), "{stderr}");
    b.wait_count(&dlq, 7, Duration::from_secs(5)).await;
    let forwarded = b.drain(&fwd).await;
    assert_eq!(bodies(&forwarded), vec!["m0000", "m0001", "m0002"]);
    let rest = b.drain(&dlq).await;
    assert_eq!(rest.len(), 7);
    assert_eq!(
        bodies(&rest),
        (3..10).map(|i| format!("m{i:04}")).collect::<Vec<_>>()
    );
    assert_eq!(b.count(&dlq_left(&dlq)).await, 0);
    b.cleanup().await;
}

/// `RATE(50/s)` in the rules file paces like `--rate` (no flag given): 100 rejected dead
/// letters, the measured rate within 10% of 50/s, every one forwarded once, in order.
#[tokio::test]
async fn a_rules_rate_paces_the_drain() {
    const N: usize = 100;
    let mut b = Broker::connect().await;
    let (work, dlq, fwd) = (unique("work"), unique("dlq"), unique("fwd"));
    b.work_queue(&work, &dlq, Way::Reject).await;
    b.queue(&fwd, &[]).await;
    b.dead_letter(&work, &dlq, Way::Reject, &numbered(N)).await;

    let dir = tempfile::tempdir().expect("tempdir");
    let rules = rules_file(
        dir.path(),
        &format!("INPUTQ({dlq}) RATE(50/s)\nHDR(act=fwd) ACTION(FWD) FWDQ({fwd})\n"),
    );
    let audit = dir.path().join("audit.jsonl");
    let mut d = start_dlqd(
        dir.path(),
        &[
            "--rules",
            rules.to_str().unwrap(),
            "--once",
            "--audit",
            audit.to_str().unwrap(),
        ],
    );
    let status = d.wait(T).await;
    assert!(status.success(), "{status}\n{}", d.stderr_tail(30));
    assert_rate(&audit, N, 50.0);
    assert_all_forwarded_in_order(&mut b, &fwd, &dlq, N).await;
    b.cleanup().await;
}

/// Bad limits are refused at once with a clear word, exit 2 (clap's usage error).
#[test]
fn bad_limits_are_refused() {
    for args in [
        [
            "run",
            "--rule",
            "ACTION(IGNORE)",
            "--queue",
            "q",
            "--rate",
            "0/s",
        ],
        [
            "run",
            "--rule",
            "ACTION(IGNORE)",
            "--queue",
            "q",
            "--rate",
            "5/h",
        ],
        [
            "run",
            "--rule",
            "ACTION(IGNORE)",
            "--queue",
            "q",
            "--max",
            "0",
        ],
    ] {
        let out = support::dlqd::dlqd(&args, url(), Duration::from_secs(10));
        assert_eq!(out.status.code(), Some(2), "{args:?}");
        let err = support::dlqd::stderr_of(&out);
        assert!(err.contains("--rate") || err.contains("--max"), "{err}");
    }
}

fn dlq_left(dlq: &str) -> String {
    dlqd::stage::left_queue(dlq)
}
