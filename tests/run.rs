//! `dlqd run` against the real RabbitMQ at 127.0.0.1:5672: every action for dead letters
//! made the three real ways, retry limits, delayed retries of expired messages, failed
//! forwards, leave + --once, restarts, SIGTERM mid-drain, and sameness with the dry run.
//! Every test counts every message in and out.

mod common;
mod support;

use std::time::Duration;

use common::*;
use lapin::BasicProperties;

const T: Duration = Duration::from_secs(30);

fn msgs(ids_acts: &[(&str, &str)]) -> Vec<(Vec<u8>, BasicProperties)> {
    ids_acts
        .iter()
        .map(|(id, act)| (format!("body-{id}").into_bytes(), props(id, act)))
        .collect()
}

/// One message per action, dead-lettered `way`; afterwards each is where its rule says.
async fn each_action(way: Way) {
    let mut b = Broker::connect().await;
    let work = unique("work");
    let dlq = unique("dlq");
    let fwd = unique("fwd");
    b.work_queue(&work, &dlq, way).await;
    b.queue(&fwd, &[]).await;
    let input = msgs(&[
        ("r", "retry"),
        ("f", "forward"),
        ("d", "discard"),
        ("l", "leave"),
    ]);
    b.dead_letter(&work, &dlq, way, &input).await;
    assert_eq!(b.count(&dlq).await, 4);

    let dir = tempfile::tempdir().expect("tempdir");
    let archive = dir.path().join("archive.jsonl");
    let rules = rules_file(
        dir.path(),
        &format!(
            "INPUTQ({dlq}) RETRYINT(60s)\n\
             HDR(act=retry) REASON({reason}) ACTION(RETRY) RETRY(1)\n\
             HDR(act=forward) ACTION(FWD) FWDQ({fwd})\n\
             HDR(act=discard) ACTION(DISCARD) ARCHIVE({archive})\n\
             ACTION(IGNORE)\n",
            reason = way.reason(),
            archive = archive.display(),
        ),
    );
    let stderr = run_once(dir.path(), &rules, T).await;

    let retried = b.drain(&work).await;
    let forwarded = b.drain(&fwd).await;
    let left = b.drain(&dlq).await;
    let archived = std::fs::read_to_string(&archive).unwrap_or_default();
    // In: 4. Out: 1 retried + 1 forwarded + 1 left + 1 discarded (archived).
    assert_eq!(bodies(&retried), vec!["body-r"], "{stderr}");
    assert_eq!(retried[0].header_i64("x-dlqd-retries"), Some(1));
    assert_eq!(bodies(&forwarded), vec!["body-f"]);
    assert_eq!(
        forwarded[0].header_str("x-dlqd-action").as_deref(),
        Some("forward")
    );
    assert_eq!(forwarded[0].header_i64("x-dlqd-rule"), Some(3));
    assert_eq!(
        forwarded[0].header_str("x-dlqd-original-queue"),
        Some(work.clone())
    );
    assert_eq!(
        forwarded[0].header_str("x-dlqd-reason").as_deref(),
        Some(way.reason())
    );
    assert!(
        forwarded[0].header("x-death").is_some(),
        "HEADER(YES) keeps the history"
    );
    assert_eq!(bodies(&left), vec!["body-l"]);
    assert!(left[0].header_i64("x-dlqd-examined").is_some());
    let lines: Vec<&str> = archived.lines().collect();
    assert_eq!(lines.len(), 1, "archive: {archived}");
    let m = dlqd::capture::from_line(lines[0], 1).expect("archive line parses");
    assert_eq!(m.body, b"body-d");
    assert_eq!(m.properties.message_id.as_deref(), Some("d"));
}

#[tokio::test(flavor = "multi_thread")]
async fn each_action_for_rejected_messages() {
    each_action(Way::Reject).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn each_action_for_expired_messages() {
    each_action(Way::Expire).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn each_action_for_overflowed_messages() {
    each_action(Way::Overflow).await;
}

/// REASON(delivery_limit), with dead letters made the real way: a quorum work queue
/// (`x-delivery-limit: 1`) dead-letters a message returned past its limit.
#[tokio::test(flavor = "multi_thread")]
async fn each_action_for_messages_past_a_quorum_delivery_limit() {
    each_action(Way::DeliveryLimit).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn retry_five_times_to_a_rejecting_queue_then_forward_to_overflow() {
    let mut b = Broker::connect().await;
    let work = unique("work");
    let dlq = unique("dlq");
    let overflow = unique("overflow");
    b.work_queue(&work, &dlq, Way::Reject).await;
    b.queue(&overflow, &[]).await;
    let n = 10;
    let ids: Vec<String> = (0..n).map(|i| i.to_string()).collect();
    let input: Vec<_> = ids
        .iter()
        .map(|id| (format!("body-{id}").into_bytes(), props(id, "x")))
        .collect();
    b.dead_letter(&work, &dlq, Way::Reject, &input).await;
    let rejects = b.rejector(&work).await;

    let dir = tempfile::tempdir().expect("tempdir");
    let rules = rules_file(
        dir.path(),
        &format!(
            "INPUTQ({dlq})\n\
             REASON(rejected) DESTQ({work}) ACTION(RETRY) RETRY(5)\n\
             REASON(rejected) ACTION(FWD) FWDQ({overflow})\n\
             ACTION(IGNORE)\n"
        ),
    );
    let mut d = start_dlqd(dir.path(), &["--rules", rules.to_str().unwrap()]);
    b.wait_count(&overflow, n, T).await;
    d.signal("TERM");
    let status = d.wait(Duration::from_secs(10)).await;
    assert!(status.success(), "{}", d.stderr());

    let forwarded = b.drain(&overflow).await;
    assert_eq!(forwarded.len(), n as usize);
    for f in &forwarded {
        assert_eq!(f.header_i64("x-dlqd-retries"), Some(5), "{f:?}");
    }
    assert_eq!(
        rejects.load(std::sync::atomic::Ordering::Relaxed),
        5 * u64::from(n)
    );
    assert_eq!(b.count(&dlq).await, 0);
    assert_eq!(b.count(&work).await, 0);
    let mut got = bodies(&forwarded);
    got.sort();
    let mut want: Vec<String> = ids.iter().map(|i| format!("body-{i}")).collect();
    want.sort();
    assert_eq!(got, want);
}

#[tokio::test(flavor = "multi_thread")]
async fn delayed_retry_of_an_expired_message_comes_back_to_its_queue() {
    let mut b = Broker::connect().await;
    let work = unique("work");
    let dlq = unique("dlq");
    b.work_queue(&work, &dlq, Way::Expire).await;
    for q in dlqd::stage::delay_queues(&dlq) {
        b.adopt(&q);
    }
    b.adopt(&dlqd::stage::left_queue(&dlq));
    let input = msgs(&[("a", "x"), ("b", "x"), ("c", "x")]);
    b.dead_letter(&work, &dlq, Way::Expire, &input).await;

    let dir = tempfile::tempdir().expect("tempdir");
    let rules = rules_file(
        dir.path(),
        &format!(
            "INPUTQ({dlq})\nREASON(expired) ACTION(RETRY) RETRY(1) DELAY(300ms)\nACTION(IGNORE)\n"
        ),
    );
    let mut d = start_dlqd(dir.path(), &["--rules", rules.to_str().unwrap()]);
    // They wait in a delay queue, then dlqd moves them back into `work` itself: no
    // broker dead-lettering on the way, so no cycle detection and no rewritten facts.
    b.wait_count(&work, 3, T).await;
    d.signal("TERM");
    assert!(
        d.wait(Duration::from_secs(10)).await.success(),
        "{}",
        d.stderr()
    );
    let back = b.drain(&work).await;
    assert_eq!(bodies(&back), vec!["body-a", "body-b", "body-c"]);
    for m in &back {
        assert_eq!(m.header_i64("x-dlqd-retries"), Some(1));
        assert_eq!(
            m.death_queue(),
            Some(work.clone()),
            "the death history is the application's, untouched by the delay"
        );
        assert_eq!(
            m.header_str("x-first-death-reason").as_deref(),
            Some("expired")
        );
        assert!(
            m.header("x-dlqd-due").is_none(),
            "no stage marks reach the target"
        );
    }
    assert_eq!(b.count(&dlq).await, 0);
    for q in dlqd::stage::delay_queues(&dlq) {
        assert_eq!(b.count(&q).await, 0, "{q}");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_forward_to_a_missing_queue_stays_on_the_dlq_and_says_why() {
    let mut b = Broker::connect().await;
    let work = unique("work");
    let dlq = unique("dlq");
    let missing = unique("missing");
    b.work_queue(&work, &dlq, Way::Reject).await;
    let input = msgs(&[("1", "x"), ("2", "x"), ("3", "x")]);
    b.dead_letter(&work, &dlq, Way::Reject, &input).await;

    let dir = tempfile::tempdir().expect("tempdir");
    let rules = rules_file(
        dir.path(),
        &format!("INPUTQ({dlq})\nACTION(FWD) FWDQ({missing})\n"),
    );
    let stderr = run_once_failing(dir.path(), &rules, T).await;
    assert!(stderr.contains("NO_ROUTE"), "stderr says why: {stderr}");
    assert!(!b.exists(&missing).await);
    let left = b.drain(&dlq).await;
    assert_eq!(bodies(&left), vec!["body-1", "body-2", "body-3"]);
    assert_eq!(b.count(&work).await, 0);
}

#[tokio::test(flavor = "multi_thread")]
async fn leave_with_once_exits_and_keeps_the_messages_in_order() {
    let mut b = Broker::connect().await;
    let work = unique("work");
    let dlq = unique("dlq");
    b.work_queue(&work, &dlq, Way::Reject).await;
    let ids: Vec<String> = (0..50).map(|i| format!("{i:02}")).collect();
    let input: Vec<_> = ids
        .iter()
        .map(|id| (format!("body-{id}").into_bytes(), props(id, "x")))
        .collect();
    b.dead_letter(&work, &dlq, Way::Reject, &input).await;

    let dir = tempfile::tempdir().expect("tempdir");
    let rules = rules_file(
        dir.path(),
        &format!("INPUTQ({dlq}) RETRYINT(60s)\nACTION(IGNORE)\n"),
    );
    for run in 0..2 {
        // A second run within RETRYINT examines nothing and still exits.
        run_once(dir.path(), &rules, T).await;
        let left = b.peek(&dlq).await;
        let want: Vec<String> = ids.iter().map(|i| format!("body-{i}")).collect();
        assert_eq!(bodies(&left), want, "run {run}");
    }
    assert_eq!(b.drain(&dlq).await.len(), 50);
}

#[tokio::test(flavor = "multi_thread")]
async fn retry_counts_survive_a_restart() {
    let mut b = Broker::connect().await;
    let work = unique("work");
    let dlq = unique("dlq");
    let parked = unique("parked");
    b.work_queue(&work, &dlq, Way::Reject).await;
    b.queue(&parked, &[]).await;
    b.dead_letter(&work, &dlq, Way::Reject, &msgs(&[("m", "x")]))
        .await;

    let dir = tempfile::tempdir().expect("tempdir");
    let rules = rules_file(
        dir.path(),
        &format!(
            "INPUTQ({dlq})\nREASON(rejected) ACTION(RETRY) RETRY(3)\nACTION(FWD) FWDQ({parked})\n"
        ),
    );
    for attempt in 1..=3 {
        let stderr = run_once(dir.path(), &rules, T).await;
        let back = b.peek(&work).await;
        assert_eq!(back.len(), 1, "attempt {attempt}: {stderr}");
        assert_eq!(back[0].header_i64("x-dlqd-retries"), Some(attempt));
        // The application rejects it again: a new dlqd process sees the count.
        b.dead_letter_again(&work, &dlq).await;
    }
    run_once(dir.path(), &rules, T).await;
    let out = b.drain(&parked).await;
    assert_eq!(out.len(), 1);
    assert_eq!(out[0].header_i64("x-dlqd-retries"), Some(3));
    assert_eq!(b.count(&dlq).await, 0);
    assert_eq!(b.count(&work).await, 0);
}

#[tokio::test(flavor = "multi_thread")]
async fn sigterm_mid_drain_exits_zero_and_loses_nothing() {
    let mut b = Broker::connect().await;
    let work = unique("work");
    let dlq = unique("dlq");
    let target = unique("target");
    b.work_queue(&work, &dlq, Way::Overflow).await;
    b.queue(&target, &[]).await;
    let n = 20_000u32;
    let input: Vec<_> = (0..n)
        .map(|i| (format!("body-{i}").into_bytes(), props(&i.to_string(), "x")))
        .collect();
    b.dead_letter(&work, &dlq, Way::Overflow, &input).await;

    let dir = tempfile::tempdir().expect("tempdir");
    let rules = rules_file(
        dir.path(),
        &format!("INPUTQ({dlq})\nACTION(FWD) FWDQ({target})\n"),
    );
    let mut d = start_dlqd(
        dir.path(),
        &["--rules", rules.to_str().unwrap(), "--prefetch", "50"],
    );
    // Stop it somewhere in the middle.
    let deadline = std::time::Instant::now() + T;
    while b.count(&target).await < 200 {
        assert!(std::time::Instant::now() < deadline, "{}", d.stderr());
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    d.signal("TERM");
    let started = std::time::Instant::now();
    let status = d.wait(Duration::from_secs(10)).await;
    assert!(status.success(), "{}", d.stderr());
    assert!(started.elapsed() < Duration::from_secs(10));

    let moved = b.drain(&target).await;
    let left = b.drain(&dlq).await;
    let mut all = tally(&moved);
    for (k, v) in tally(&left) {
        *all.entry(k).or_insert(0) += v;
    }
    assert_eq!(all.len(), n as usize, "every message is somewhere");
    assert!(
        !left.is_empty(),
        "stopped mid-drain (moved {})",
        moved.len()
    );
    let dupes: usize = all.values().map(|c| c - 1).sum();
    assert_eq!(dupes, 0, "a clean stop duplicates nothing");
}

#[tokio::test(flavor = "multi_thread")]
async fn run_makes_the_same_decisions_as_the_dry_run() {
    use dlqd::dead_letter::DeadLetter;
    use dlqd::decide::{Decider, Outcome};

    let mut b = Broker::connect().await;
    let work = unique("work");
    let dlq = unique("dlq");
    let fwd = unique("fwd");
    b.work_queue(&work, &dlq, Way::Reject).await;
    b.queue(&fwd, &[]).await;
    let input = msgs(&[
        ("1", "retry"),
        ("2", "forward"),
        ("3", "discard"),
        ("4", "other"),
        ("5", "forward"),
        ("6", "retry"),
    ]);
    b.dead_letter(&work, &dlq, Way::Reject, &input).await;
    let dir = tempfile::tempdir().expect("tempdir");
    let text = format!(
        "INPUTQ({dlq})\n\
         HDR(act=retry) ACTION(RETRY) RETRY(2)\n\
         HDR(act=forward) ACTION(FWD) FWDQ({fwd})\n\
         HDR(act=discard) ACTION(DISCARD)\n\
         ACTION(IGNORE)\n"
    );
    let rules = rules_file(dir.path(), &text);

    // What the dry run decides for a capture of the DLQ.
    let capture: Vec<String> = b
        .peek(&dlq)
        .await
        .iter()
        .map(|g| {
            let m =
                dlqd::broker::convert::message_from_amqp("", &dlq, &g.properties, g.body.clone());
            dlqd::capture::to_line(&m)
        })
        .collect();
    let (table, _) = dlqd::rules::load(&rules).expect("rules");
    let decider = Decider::new(table);
    let mut expected = std::collections::BTreeMap::new();
    for (i, line) in capture.iter().enumerate() {
        let m = dlqd::capture::from_line(line, i as u64 + 1).expect("capture line");
        let d = decider.decide(&DeadLetter::new(&m));
        let place = match d.outcome {
            Outcome::Retry { queue, .. } => queue,
            Outcome::Forward { routing_key, .. } => routing_key,
            Outcome::Discard { .. } => "gone".to_string(),
            Outcome::Leave => dlq.clone(),
        };
        expected.insert(String::from_utf8_lossy(&m.body).into_owned(), place);
    }

    run_once(dir.path(), &rules, T).await;
    let mut actual = std::collections::BTreeMap::new();
    for q in [&work, &fwd, &dlq] {
        for g in b.drain(q).await {
            actual.insert(g.text(), q.to_string());
        }
    }
    for body in expected.keys() {
        actual
            .entry(body.clone())
            .or_insert_with(|| "gone".to_string());
    }
    assert_eq!(actual, expected);
    assert_eq!(actual.len(), 6);
}

#[tokio::test(flavor = "multi_thread")]
async fn sighup_reloads_the_rules_and_an_invalid_file_keeps_the_old_ones() {
    let mut b = Broker::connect().await;
    let work = unique("work");
    let dlq = unique("dlq");
    let target = unique("target");
    b.work_queue(&work, &dlq, Way::Reject).await;
    b.queue(&target, &[]).await;
    b.dead_letter(&work, &dlq, Way::Reject, &msgs(&[("1", "x"), ("2", "x")]))
        .await;

    let dir = tempfile::tempdir().expect("tempdir");
    let rules = rules_file(
        dir.path(),
        &format!("INPUTQ({dlq}) RETRYINT(1s)\nACTION(IGNORE)\n"),
    );
    let mut d = start_dlqd(dir.path(), &["--rules", rules.to_str().unwrap()]);
    let deadline = std::time::Instant::now() + T;
    while !d.stderr().contains("action=\"leave\"") && !d.stderr().contains("action=leave") {
        assert!(std::time::Instant::now() < deadline, "{}", d.stderr());
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    std::fs::write(&rules, "INPUTQ(x) ACTION(BOGUS)\n").expect("write");
    d.signal("HUP");
    while !d.stderr().contains("reload failed") {
        assert!(std::time::Instant::now() < deadline, "{}", d.stderr());
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // Still running the old table: the messages stay on the DLQ.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert_eq!(b.count(&target).await, 0);
    std::fs::write(
        &rules,
        format!("INPUTQ({dlq}) RETRYINT(1s)\nACTION(FWD) FWDQ({target})\n"),
    )
    .expect("write");
    d.signal("HUP");
    b.wait_count(&target, 2, T).await;
    d.signal("TERM");
    assert!(
        d.wait(Duration::from_secs(10)).await.success(),
        "{}",
        d.stderr()
    );
    assert_eq!(bodies(&b.drain(&target).await), vec!["body-1", "body-2"]);
    assert_eq!(b.count(&dlq).await, 0);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_cut_connection_is_reopened_and_nothing_is_lost() {
    let mut b = Broker::connect().await;
    let work = unique("work");
    let dlq = unique("dlq");
    let target = unique("target");
    b.work_queue(&work, &dlq, Way::Overflow).await;
    b.queue(&target, &[]).await;
    let n = 5_000u32;
    let input: Vec<_> = (0..n)
        .map(|i| (format!("body-{i}").into_bytes(), props(&i.to_string(), "x")))
        .collect();
    b.dead_letter(&work, &dlq, Way::Overflow, &input).await;

    let proxy = Proxy::start(std::net::SocketAddr::from((
        [127, 0, 0, 1],
        support::broker::port(),
    )))
    .await;
    let dir = tempfile::tempdir().expect("tempdir");
    let rules = rules_file(
        dir.path(),
        &format!("INPUTQ({dlq})\nACTION(FWD) FWDQ({target})\n"),
    );
    let mut d = start_dlqd_at(
        dir.path(),
        &proxy.url(),
        &["--rules", rules.to_str().unwrap(), "--prefetch", "100"],
    );
    let deadline = std::time::Instant::now() + T;
    for cut_at in [500, 2_000] {
        while b.count(&target).await < cut_at {
            assert!(std::time::Instant::now() < deadline, "{}", d.stderr());
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        proxy.cut();
    }
    // It reconnects and finishes the queue.
    while b.count(&dlq).await > 0 || b.count(&target).await < n {
        assert!(std::time::Instant::now() < deadline, "{}", d.stderr());
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    d.signal("TERM");
    assert!(
        d.wait(Duration::from_secs(10)).await.success(),
        "{}",
        d.stderr()
    );
    assert!(d.stderr().contains("reconnecting"), "{}", d.stderr());
    // The wait above sees only ready messages: with duplicates in the target, the stop
    // may come while deliveries are still in flight, and a stop hands those back to the
    // DLQ. A second, one-shot run finishes them; then everything must be in the target.
    if b.count(&dlq).await > 0 {
        run_once(dir.path(), &rules, T).await;
    }
    let moved = tally(&b.drain(&target).await);
    assert_eq!(
        moved.len(),
        n as usize,
        "every message arrived (duplicates allowed)"
    );
    assert_eq!(b.count(&dlq).await, 0);
}

/// Seen by an operator: deleting the DLQ while dlqd ran made it exit 1 (a restart loop
/// under systemd's Restart=on-failure). Now it waits for the queue to be declared again
/// and carries on; a DLQ missing at start is still an error.
#[tokio::test(flavor = "multi_thread")]
async fn a_dlq_deleted_while_running_is_waited_for() {
    let mut b = Broker::connect().await;
    let dlq = unique("dlq");
    let target = unique("target");
    b.queue(&dlq, &[]).await;
    b.queue(&target, &[]).await;
    let dir = tempfile::tempdir().expect("tempdir");
    let rules = rules_file(
        dir.path(),
        &format!("INPUTQ({dlq})\nACTION(FWD) FWDQ({target})\n"),
    );
    let mut d = start_dlqd(dir.path(), &["--rules", rules.to_str().unwrap()]);
    let deadline = std::time::Instant::now() + T;
    while !d.stderr().contains("connected") {
        assert!(std::time::Instant::now() < deadline, "{}", d.stderr());
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    let ch = b.conn.create_channel().await.expect("channel");
    ch.queue_delete(dlq.as_str().into(), Default::default())
        .await
        .expect("delete the DLQ");
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert!(
        d.running(),
        "dlqd gave up on a deleted DLQ:\n{}",
        d.stderr()
    );
    // The broker answers: the log says the DLQ is missing (not "broker unavailable"),
    // and dlqd looks for it again on its connection rather than reconnecting each time.
    let missing = format!("the DLQ {dlq} does not exist (or may not be read); will retry in");
    while d.stderr().matches(&missing).count() < 2 {
        assert!(std::time::Instant::now() < deadline, "{}", d.stderr());
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let err = d.stderr();
    assert!(!err.contains("broker unavailable"), "{err}");
    assert_eq!(err.matches(": connected ").count(), 1, "{err}");

    // The application declares it again and dead-letters into it: dlqd takes over.
    b.queue(&dlq, &[]).await;
    b.publish(&dlq, b"after", props("after", "x")).await;
    b.wait_count(&target, 1, T).await;
    d.signal("TERM");
    assert!(
        d.wait(Duration::from_secs(10)).await.success(),
        "{}",
        d.stderr()
    );
    assert_eq!(
        d.stderr().matches(": connected ").count(),
        1,
        "served again on the same connection:\n{}",
        d.stderr()
    );
    let got = b.drain(&target).await;
    assert_eq!(bodies(&got), vec!["after"]);
    assert_eq!(b.count(&dlq).await, 0);
}
