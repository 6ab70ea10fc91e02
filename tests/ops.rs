//! Operating `dlqd run` against the real broker: /metrics and /health scraped during a
//! run, JSON and text log events per action, the --audit trail (ok and failed actions).
//! Needs RabbitMQ at 127.0.0.1:5672 (`rabbitmq-server -detached`).

mod common;
mod support;

use std::collections::BTreeSet;
use std::time::Duration;

use common::{Broker, Way, props, start_dlqd, unique};
use support::http::{free_addr, get_until};

/// The value of one sample line `name{labels} value` in OpenMetrics text.
fn sample(text: &str, series: &str) -> Option<f64> {
    text.lines()
        .find_map(|l| l.strip_prefix(series)?.strip_prefix(' ')?.parse().ok())
}

/// Messages dead-lettered (really: TTL expiry) onto a fresh DLQ; returns their ids.
async fn dead_letters(b: &mut Broker, dlq: &str, n: usize) -> Vec<String> {
    let work = format!("{dlq}.work");
    b.work_queue(&work, dlq, Way::Expire).await;
    let ids: Vec<String> = (0..n).map(|i| format!("id-{i}")).collect();
    let messages: Vec<_> = ids
        .iter()
        .map(|id| (format!("body {id}").into_bytes(), props(id, "fwd")))
        .collect();
    b.dead_letter(&work, dlq, Way::Expire, &messages).await;
    ids
}

fn json_lines(text: &str) -> Vec<serde_json::Value> {
    text.lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not a JSON line ({e}): {l}")))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_health_json_logs_and_audit_during_a_real_run() {
    let mut b = Broker::connect().await;
    let dlq = unique("ops-dlq");
    let target = unique("ops-target");
    b.queue(&target, &[]).await;
    const N: usize = 25;
    let ids = dead_letters(&mut b, &dlq, N).await;

    let dir = tempfile::tempdir().expect("tempdir");
    let audit = dir.path().join("audit.jsonl");
    let addr = free_addr();
    let rule = format!("ACTION(FWD) FWDQ({target})");
    let mut d = start_dlqd(
        dir.path(),
        &[
            "--log-format",
            "json",
            "--queue",
            &dlq,
            "--rule",
            &rule,
            "--metrics-addr",
            &addr.to_string(),
            "--audit",
            audit.to_str().expect("utf-8 path"),
        ],
    );

    // Everything moves; while dlqd keeps running, scrape it.
    b.wait_count(&target, N as u32, Duration::from_secs(30))
        .await;
    let (status, body) = get_until(addr, "/health", Duration::from_secs(10), |s, _| s == 200).await;
    assert_eq!((status, body.as_str()), (200, "ok\n"));
    let (_, text) = get_until(addr, "/metrics", Duration::from_secs(10), |s, t| {
        s == 200
            && sample(
                t,
                &format!("dlqd_processing_seconds_count{{queue=\"{dlq}\"}}"),
            ) == Some(N as f64)
    })
    .await;
    let forwarded: f64 = text
        .lines()
        .filter(|l| l.starts_with("dlqd_messages_total{") && l.contains(r#"action="forward""#))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum();
    assert_eq!(forwarded, N as f64, "{text}");
    assert_eq!(
        sample(&text, &format!("dlqd_connected{{queue=\"{dlq}\"}}")),
        Some(1.0),
        "{text}"
    );
    assert!(
        !text.contains("dlqd_action_failures_total{"),
        "no failures expected:\n{text}"
    );
    assert!(text.ends_with("# EOF\n"), "{text}");

    d.signal("TERM");
    let status = d.wait(Duration::from_secs(15)).await;
    assert!(status.success(), "exit {status:?}; stderr:\n{}", d.stderr());
    assert_eq!(b.count(&dlq).await, 0);
    assert_eq!(b.count(&target).await, N as u32);

    // Logs: every stderr line is JSON; one "done" event per message with the fields.
    let events = json_lines(&d.stderr());
    let mut logged = BTreeSet::new();
    for e in &events {
        let f = &e["fields"];
        if f["action"] == "forward" {
            assert_eq!(f["target"], target.as_str(), "{e}");
            assert!(f["rule"].is_u64(), "rule is a line number: {e}");
            let id = f["message_id"].as_str().expect("message_id field");
            assert!(logged.insert(id.to_owned()), "one event per action: {e}");
        }
    }
    let want: BTreeSet<String> = ids.iter().cloned().collect();
    assert_eq!(logged, want);

    // Audit: one line per action, every message, outcome ok.
    let lines = json_lines(&std::fs::read_to_string(&audit).expect("audit file"));
    assert_eq!(lines.len(), N, "{lines:?}");
    let mut audited = BTreeSet::new();
    for l in &lines {
        assert_eq!(l["queue"], dlq.as_str());
        assert_eq!(l["action"], "forward");
        assert_eq!(l["target"], target.as_str());
        assert_eq!(l["outcome"], "ok");
        assert!(l["time"].as_str().is_some_and(|t| t.ends_with('Z')), "{l}");
        audited.insert(l["message_id"].as_str().expect("id").to_owned());
    }
    assert_eq!(audited, want);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failed_forwards_are_audited_counted_and_left_on_the_dlq() {
    let mut b = Broker::connect().await;
    let dlq = unique("ops-fail-dlq");
    const N: usize = 5;
    let ids = dead_letters(&mut b, &dlq, N).await;
    let missing = unique("ops-no-such-exchange");

    let dir = tempfile::tempdir().expect("tempdir");
    let audit = dir.path().join("audit.jsonl");
    let rule = format!("ACTION(FWD) FWDEX({missing}) FWDRKEY(x)");
    let mut d = start_dlqd(
        dir.path(),
        &[
            "--once",
            "--queue",
            &dlq,
            "--rule",
            &rule,
            "--audit",
            audit.to_str().expect("utf-8 path"),
        ],
    );
    let status = d.wait(Duration::from_secs(30)).await;
    assert_eq!(
        status.code(),
        Some(3),
        "--once with failed actions exits 3; stderr:\n{}",
        d.stderr()
    );
    // Nothing lost: all still on the DLQ.
    assert_eq!(b.count(&dlq).await, N as u32);

    let lines = json_lines(&std::fs::read_to_string(&audit).expect("audit file"));
    let failed: Vec<_> = lines.iter().filter(|l| l["outcome"] == "failed").collect();
    let failed_ids: BTreeSet<String> = failed
        .iter()
        .map(|l| l["message_id"].as_str().expect("id").to_owned())
        .collect();
    assert_eq!(failed_ids, ids.iter().cloned().collect::<BTreeSet<_>>());
    for l in &failed {
        assert_eq!(l["action"], "forward");
        assert_eq!(l["cause"], "refused", "{l}");
        assert!(l["error"].as_str().is_some_and(|e| !e.is_empty()), "{l}");
    }
    // Text logs (no colour codes in a file): the failure is a WARN naming the message
    // and the action.
    let stderr = d.stderr();
    assert!(
        !stderr.contains('\u{1b}'),
        "ANSI escapes in a log file:\n{stderr}"
    );
    for id in &ids {
        assert!(
            stderr.lines().any(|l| l.contains(" WARN ")
                && l.contains(&format!("message_id={id} "))
                && l.contains("action=\"forward\"")),
            "no WARN for {id}:\n{stderr}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn health_is_503_while_the_broker_is_unreachable() {
    // Fail, not skip, without the test broker (the other tests need it anyway).
    let _b = Broker::connect().await;
    let dir = tempfile::tempdir().expect("tempdir");
    let addr = free_addr();
    // A port nothing listens on: dlqd keeps reconnecting and must say it is not healthy.
    let dead = free_addr();
    let url = format!("amqp://guest:guest@{dead}/%2f");
    let mut d = start_dlqd(
        dir.path(),
        &[
            "--url",
            &url,
            "--queue",
            "never-reached",
            "--rule",
            "ACTION(IGNORE)",
            "--metrics-addr",
            &addr.to_string(),
        ],
    );
    let (status, _) = get_until(addr, "/health", Duration::from_secs(10), |_, _| true).await;
    assert_eq!(status, 503);
    let (_, text) = get_until(addr, "/metrics", Duration::from_secs(5), |s, _| s == 200).await;
    assert_eq!(
        sample(&text, r#"dlqd_connected{queue="never-reached"}"#),
        Some(0.0),
        "{text}"
    );
    d.signal("TERM");
    let status = d.wait(Duration::from_secs(15)).await;
    assert!(status.success(), "exit {status:?}; stderr:\n{}", d.stderr());
    assert!(!d.stderr().contains("guest:guest"), "no password in logs");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn once_draws_progress_on_a_terminal_and_nothing_into_a_file() {
    let mut b = Broker::connect().await;
    let dlq = unique("ops-progress-dlq");
    let target = unique("ops-progress-target");
    b.queue(&target, &[]).await;
    const N: usize = 30;
    dead_letters(&mut b, &dlq, N).await;
    let dir = tempfile::tempdir().expect("tempdir");
    let rule = format!("ACTION(FWD) FWDQ({target})");

    // stderr to a file: no bar.
    let mut d = start_dlqd(dir.path(), &["--once", "--queue", &dlq, "--rule", &rule]);
    assert!(
        d.wait(Duration::from_secs(30)).await.success(),
        "{}",
        d.stderr()
    );
    assert!(!d.stderr().contains("left on the DLQ"), "{}", d.stderr());
    assert_eq!(b.count(&target).await, N as u32);

    // Back onto the DLQ, then drained again under a pseudo-terminal (util-linux `script`).
    let again = unique("ops-progress-again");
    b.queue(&again, &[]).await;
    let typescript = dir.path().join("typescript");
    let cmd = format!(
        "{} run --once --queue {target} --rule 'ACTION(FWD) FWDQ({again})'",
        env!("CARGO_BIN_EXE_dlqd")
    );
    let out = std::process::Command::new("script")
        .args(["-qec", &cmd])
        .arg(&typescript)
        .env("DLQD_URL", common::url())
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .status()
        .expect("`script` (util-linux) runs");
    assert!(out.success(), "dlqd under script: {out:?}");
    let shown =
        String::from_utf8_lossy(&std::fs::read(&typescript).expect("typescript")).into_owned();
    assert!(
        shown.contains(&format!("{N} done")) && shown.contains("left on the DLQ"),
        "no progress bar on the terminal:\n{shown}"
    );
    assert_eq!(b.count(&again).await, N as u32);
    assert_eq!(b.count(&target).await, 0);
}
