//! One odd message or one ordinary misconfiguration never wedges the handler (issue 11),
//! on private RabbitMQ nodes where users, vhosts and alarms are needed:
//!
//! - a dead letter whose `user_id` names another user: forwarded as dlqd (PUTAUT(DEF));
//!   under PUTAUT(CTX) without the `impersonator` tag it alone fails and is left, its
//!   neighbours are forwarded once each; with the tag it keeps its `user_id`;
//! - a vhost dlqd may not use, or one that does not exist: `--once` exits 1 at once;
//! - nothing listening: `--once` gives up at `--connect-deadline`;
//! - SIGTERM while the broker blocks publishers (disk alarm): exit within the stop
//!   promise, nothing forwarded after, nothing lost;
//! - `run --once` whose every action failed: exit status 3 and a summary by cause.

mod hardening_common;
mod support;

use std::time::{Duration, Instant};

use hardening_common::*;
use lapin::BasicProperties;
use support::broker::Way;
use support::private_node::PrivateNode;

const PASSWORD: &str = "Zq9-poison-S3CRET";

fn user_url(node: &PrivateNode, user: &str, vhost: &str) -> String {
    format!("amqp://{user}:{PASSWORD}@127.0.0.1:{}/{vhost}", node.port)
}

fn add_user(node: &PrivateNode, user: &str, tags: &[&str]) {
    node.ctl(&["add_user", user, PASSWORD]);
    node.ctl(&["set_permissions", "-p", "/", user, ".*", ".*", ".*"]);
    let mut args = vec!["set_user_tags", user];
    args.extend_from_slice(tags);
    node.ctl(&args);
}

fn ids(got: &[Got]) -> Vec<String> {
    let mut v: Vec<String> = got.iter().map(Got::id).collect();
    v.sort();
    v
}

async fn run(url: &str, args: Vec<String>, limit: Duration) -> std::process::Output {
    let url = url.to_string();
    tokio::task::spawn_blocking(move || {
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        dlqd(&args, &url, limit)
    })
    .await
    .expect("join")
}

/// `dlqd run --once --queue dlq --rule RULE` as the user of `url`, within 60 s.
async fn once_on_dlq(url: &str, rule: &str) -> std::process::Output {
    run(
        url,
        args(&["run", "--once", "--queue", "dlq", "--rule", rule]),
        Duration::from_secs(60),
    )
    .await
}

fn args(a: &[&str]) -> Vec<String> {
    a.iter().map(|s| s.to_string()).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_user_id_naming_another_user_never_wedges_the_handler() {
    let node = PrivateNode::start();
    add_user(&node, "alice", &[]);
    add_user(&node, "dlqd", &[]);
    let alice = Broker::connect_to(&user_url(&node, "alice", "%2f"))
        .await
        .expect("alice connects");
    let mut admin = Broker::connect_to(&node.url()).await.expect("admin");
    admin.work_queue("work", "dlq", Way::Reject).await;
    admin.queue("fwd", &[]).await;

    // Alice's messages carry her user_id; the others none. Interleaved, dead-lettered by
    // a real reject.
    let batch = |tag: &str| -> Vec<(Vec<u8>, BasicProperties)> {
        (0..8)
            .map(|i| {
                let id = format!("{tag}-{i}");
                let p = props(&id);
                let p = if i % 2 == 0 {
                    p.with_user_id("alice".into())
                } else {
                    p
                };
                (id.into_bytes(), p)
            })
            .collect()
    };
    alice
        .dead_letter("work", "dlq", Way::Reject, &batch("def"))
        .await;
    let dlqd_url = user_url(&node, "dlqd", "%2f");

    // PUTAUT(DEF), the default: every one forwarded once, as dlqd; alice's user_id kept
    // in x-dlqd-user-id.
    let out = once_on_dlq(&dlqd_url, "ACTION(FWD) FWDQ(fwd)").await;
    let log = stderr_of(&out);
    assert!(out.status.success(), "{}\n{}", out.status, tail(&log, 4000));
    let got = admin.drain("fwd").await;
    assert_eq!(
        ids(&got),
        (0..8).map(|i| format!("def-{i}")).collect::<Vec<_>>(),
        "each forwarded exactly once: {}",
        tail(&log, 3000)
    );
    for g in &got {
        assert_eq!(
            g.properties.user_id(),
            &None,
            "{}: published as dlqd",
            g.id()
        );
    }
    let alices: Vec<_> = got
        .iter()
        .filter(|g| g.header_str("x-dlqd-user-id").as_deref() == Some("alice"))
        .collect();
    assert_eq!(alices.len(), 4, "alice's user_id is kept in x-dlqd-user-id");
    assert_eq!(admin.count("dlq").await, 0);

    // PUTAUT(CTX) without the impersonator tag: alice's are refused (406) and left, each
    // alone; the others forwarded exactly once (sent again, uncharged, when an alice
    // publish closed the channel under them). Exit status 3: actions failed.
    alice
        .dead_letter("work", "dlq", Way::Reject, &batch("ctx"))
        .await;
    let out = once_on_dlq(&dlqd_url, "ACTION(FWD) FWDQ(fwd) PUTAUT(CTX)").await;
    let log = stderr_of(&out);
    assert_eq!(out.status.code(), Some(3), "{}", tail(&log, 4000));
    assert!(
        log.contains("user_id") && log.contains("refused"),
        "the broker's reason and the cause are logged: {}",
        tail(&log, 4000)
    );
    // A neighbour published just before a refused one may be enqueued without its
    // confirm (the channel closed first): it is sent again, a duplicate, never a loss.
    let fwd = admin.drain("fwd").await;
    let mut once = ids(&fwd);
    once.dedup();
    assert_eq!(
        once,
        ["ctx-1", "ctx-3", "ctx-5", "ctx-7"],
        "every neighbour forwarded: {}",
        tail(&log, 4000)
    );
    assert!(fwd.len() <= 8, "at most one resend each: {:?}", ids(&fwd));
    eprintln!("PUTAUT(CTX) refused: {} duplicates", fwd.len() - 4);
    let left = admin.peek("dlq").await;
    assert_eq!(
        ids(&left),
        ["ctx-0", "ctx-2", "ctx-4", "ctx-6"],
        "alice's stay on the DLQ"
    );

    // With the impersonator tag, CTX keeps alice's user_id (restored from the left copy).
    node.ctl(&["set_user_tags", "dlqd", "impersonator"]);
    // Under --once the left copies went to the DLQ's tail: a new run takes them now.
    let out = once_on_dlq(&dlqd_url, "ACTION(FWD) FWDQ(fwd) PUTAUT(CTX)").await;
    let log = stderr_of(&out);
    assert!(out.status.success(), "{}\n{}", out.status, tail(&log, 4000));
    let fwd = admin.drain("fwd").await;
    assert_eq!(ids(&fwd), ["ctx-0", "ctx-2", "ctx-4", "ctx-6"]);
    for g in &fwd {
        assert_eq!(
            g.properties.user_id().as_ref().map(|u| u.as_str()),
            Some("alice"),
            "{}: published as alice",
            g.id()
        );
    }
    assert_eq!(admin.count("dlq").await, 0);
    admin.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_vhost_dlqd_may_not_use_ends_a_once_run_at_once() {
    let node = PrivateNode::start();
    node.ctl(&["add_user", "nobody", PASSWORD]);
    for (what, url) in [
        ("no access", user_url(&node, "nobody", "%2f")),
        ("no such vhost", user_url(&node, "nobody", "missing-vhost")),
    ] {
        let started = Instant::now();
        let out = run(
            &url,
            args(&[
                "run",
                "--once",
                "--queue",
                "dlq",
                "--rule",
                "ACTION(IGNORE)",
            ]),
            Duration::from_secs(30),
        )
        .await;
        let log = stderr_of(&out);
        assert_eq!(out.status.code(), Some(1), "{what}: {}", tail(&log, 3000));
        assert!(
            started.elapsed() < Duration::from_secs(15),
            "{what}: took {:?}",
            started.elapsed()
        );
        assert!(
            log.contains("530") || log.contains("NOT_ALLOWED"),
            "{what}: the broker's refusal is shown: {}",
            tail(&log, 3000)
        );
        assert!(!log.contains(PASSWORD), "{what}: password shown: {log}");
    }
}

#[test]
fn a_once_run_with_nothing_listening_gives_up_at_its_deadline() {
    let started = Instant::now();
    let out = dlqd(
        &[
            "run",
            "--once",
            "--connect-deadline",
            "3s",
            "--queue",
            "dlq",
            "--rule",
            "ACTION(IGNORE)",
        ],
        "amqp://guest:guest@127.0.0.1:1/%2f",
        Duration::from_secs(30),
    );
    let log = stderr_of(&out);
    assert_eq!(out.status.code(), Some(1), "{}", tail(&log, 3000));
    assert!(started.elapsed() < Duration::from_secs(20));
    assert!(log.contains("--connect-deadline"), "{}", tail(&log, 3000));

    // Without the flag, --once has a deadline of its own (60 s), and says so.
    let out = dlqd_for(
        &[
            "run",
            "--once",
            "--queue",
            "dlq",
            "--rule",
            "ACTION(IGNORE)",
        ],
        &[("DLQD_URL", "amqp://guest:guest@127.0.0.1:1/%2f")],
        Duration::from_secs(3),
    );
    let log = stderr_of(&out);
    assert!(log.contains("gives_up_in"), "{}", tail(&log, 3000));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_while_the_broker_blocks_publishers_exits_within_the_stop_promise() {
    let node = PrivateNode::start();
    let mut admin = Broker::connect_to(&node.url()).await.expect("admin");
    admin.queue("dlq", &[]).await;
    admin.queue("fwd", &[]).await;
    let msgs: Vec<_> = (0..50)
        .map(|i| {
            let id = format!("m{i}");
            (id.clone().into_bytes(), props(&id))
        })
        .collect();
    admin.publish_all("dlq", &msgs).await;
    // A disk alarm: the broker blocks every connection that publishes.
    node.ctl(&["set_disk_free_limit", "100000GB"]);
    let dir = tempfile::tempdir().expect("tempdir");
    let mut d = support::dlqd::start(
        dir.path(),
        &node.url(),
        &["--queue", "dlq", "--rule", "ACTION(FWD) FWDQ(fwd)"],
    );
    let deadline = Instant::now() + Duration::from_secs(30);
    while !d.stderr().contains("blocks publishing") {
        assert!(
            Instant::now() < deadline,
            "connection.blocked is logged: {}",
            d.stderr_tail(3000)
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let asked = Instant::now();
    d.signal("TERM");
    let status = d.wait(Duration::from_secs(30)).await;
    let took = asked.elapsed();
    assert!(
        took < Duration::from_secs(10),
        "exit within the 10 s stop promise, took {took:?}: {}",
        d.stderr_tail(3000)
    );
    assert!(status.success(), "{status}: {}", d.stderr_tail(3000));
    let log = d.stderr();
    assert!(
        !log.lines().any(|l| l.contains(" done ")),
        "no action done once a stop was asked for: {}",
        tail(&log, 3000)
    );
    node.ctl(&["set_disk_free_limit", "1MB"]);
    tokio::time::sleep(Duration::from_secs(2)).await;
    // Publishes already on the wire when dlqd exited are the broker's to carry out once
    // the alarm clears: duplicates (the DLQ copies were never acknowledged), no loss.
    let fwd = admin.count("fwd").await;
    let dlq = admin.count("dlq").await;
    assert_eq!(dlq, 50, "every message back on the DLQ");
    eprintln!("blocked stop: {fwd} publishes on the wire carried out after the exit");
    admin.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_once_run_whose_actions_all_fail_exits_3_with_a_summary_by_cause() {
    let mut b = Broker::connect().await;
    let dlq = unique("allfail.dlq");
    let missing = unique("allfail.missing");
    b.queue(&dlq, &[]).await;
    let msgs: Vec<_> = (0..5)
        .map(|i| {
            let id = format!("f{i}");
            (id.clone().into_bytes(), props(&id))
        })
        .collect();
    b.publish_all(&dlq, &msgs).await;
    let rule = format!("ACTION(FWD) FWDQ({missing})");
    let out = run(
        url(),
        args(&["run", "--once", "--queue", &dlq, "--rule", &rule]),
        Duration::from_secs(60),
    )
    .await;
    let log = stderr_of(&out);
    assert_eq!(out.status.code(), Some(3), "{}", tail(&log, 3000));
    let summary = log
        .lines()
        .find(|l| l.contains("run summary"))
        .unwrap_or_else(|| panic!("no summary: {}", tail(&log, 3000)));
    assert!(
        summary.contains("failed: forward (returned) 5") && summary.contains("done: leave 5"),
        "{summary}"
    );
    assert_eq!(b.count(&dlq).await, 5, "all still on the DLQ");
    b.cleanup().await;
}
