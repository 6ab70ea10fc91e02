//! `dlqd run` against the shared RabbitMQ at 127.0.0.1:5672: two instances sharing one
//! DLQ (retry counts live in the messages, so the limit holds across instances), SIGTERM
//! in the middle of a mixed drain (and while reconnecting), SIGHUP with a valid and with
//! an invalid rules file. Every test counts every message in and out.

mod support;

use std::time::{Duration, Instant};

use support::dlqd;
use support::lab::{self, Lab, Way, shared_url};
use support::mix::{Mix, Rng};

/// Two instances on one DLQ; the work queue keeps rejecting: each message is retried
/// three times (by whichever instance takes it) and then forwarded exactly once.
async fn two_instances_share_a_dlq(delay: Option<&str>) {
    let mut lab = Lab::connect(shared_url()).await;
    let dlq = lab::unique("dlq");
    let work = lab::unique("work");
    let parked = lab::unique("parked");
    lab.queue(&dlq, &[]).await;
    lab.work_queue(&work, &dlq, Way::Reject).await;
    lab.queue(&parked, &[]).await;
    let own_queues = ::dlqd::stage::delay_queues(&dlq);
    for q in own_queues.iter().chain([&::dlqd::stage::left_queue(&dlq)]) {
        lab.adopt(q);
    }

    let n = 300;
    let input: Vec<_> = (0..n)
        .map(|i| (work.clone(), lab::props(&format!("two-{i}"), "x")))
        .collect();
    lab.publish_all(&input).await;
    lab.reject(&work, n).await;
    lab.wait_count(&dlq, n as u32, Duration::from_secs(30))
        .await;
    let rejections = lab.rejector(&work).await;

    let dir = tempfile::tempdir().expect("tempdir");
    let rules = dir.path().join("two.rules");
    let delay_kw = match delay {
        Some(d) => format!(" DELAY({d})"),
        None => String::new(),
    };
    std::fs::write(
        &rules,
        format!(
            "INPUTQ({dlq}) RETRYINT(1s)\n\
             REASON(rejected) ACTION(RETRY) RETRY(3){delay_kw}\n\
             ACTION(FWD) FWDQ({parked})\n"
        ),
    )
    .expect("rules");
    let rules = rules.display().to_string();
    let args = ["--rules", rules.as_str(), "--prefetch", "10"];
    let mut a = dlqd::start(dir.path(), shared_url(), &args);
    let mut b = dlqd::start(dir.path(), shared_url(), &args);

    let deadline = Instant::now() + Duration::from_secs(120);
    while lab.count(&parked).await.unwrap_or(0) < n as u32 {
        assert!(
            Instant::now() < deadline,
            "only {:?} of {n} forwarded; a:\n{}\nb:\n{}",
            lab.count(&parked).await,
            a.stderr_tail(20),
            b.stderr_tail(20)
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // Time for a stray duplicate to show up.
    tokio::time::sleep(Duration::from_secs(2)).await;
    for d in [&mut a, &mut b] {
        d.signal("TERM");
        let status = d.wait(Duration::from_secs(10)).await;
        assert!(status.success(), "{}", d.stderr_tail(20));
    }

    let forwarded = lab.drain(&parked).await;
    let copies = lab::tally(forwarded.iter().map(|g| g.id.as_str()));
    assert_eq!(copies.len(), n, "every message forwarded");
    assert!(
        copies.values().all(|c| *c == 1),
        "forwarded exactly once: {:?}",
        copies.iter().filter(|(_, c)| **c > 1).collect::<Vec<_>>()
    );
    for g in &forwarded {
        assert_eq!(g.header_i64("x-dlqd-retries"), Some(3), "{}", g.id);
    }
    assert_eq!(lab.count(&dlq).await, Some(0), "nothing left on the DLQ");
    assert_eq!(
        lab.count(&work).await,
        Some(0),
        "nothing left in the work queue"
    );
    for q in &own_queues {
        assert_eq!(
            lab.count(q).await.unwrap_or(0),
            0,
            "nothing left delayed in {q}"
        );
    }
    assert_eq!(
        rejections.load(std::sync::atomic::Ordering::Relaxed),
        3 * n as u64,
        "each message went back to its queue exactly three times"
    );
    let done = |d: &dlqd::Dlqd| d.stderr().matches("done").count();
    assert!(
        done(&a) > 0 && done(&b) > 0,
        "both instances took part ({} and {} actions)",
        done(&a),
        done(&b)
    );
    lab.cleanup().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn two_instances_on_one_dlq_retry_three_times_then_forward_exactly_once() {
    two_instances_share_a_dlq(None).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn two_instances_on_one_dlq_with_delayed_retries_forward_exactly_once() {
    two_instances_share_a_dlq(Some("200ms")).await;
}

/// SIGTERM while a mixed drain is under way (delayed retries parked, leave copies
/// moving, forwards in flight): exit 0 within 10 s; a second run finishes the drain;
/// then every message is where its rule says, none lost, none duplicated.
#[tokio::test(flavor = "multi_thread")]
async fn sigterm_mid_mixed_drain_exits_zero_and_a_second_run_finishes_it_losing_nothing() {
    let mut lab = Lab::connect(shared_url()).await;
    let dir = tempfile::tempdir().expect("tempdir");
    let n = 3000;
    let mix = Mix::setup(&mut lab, dir.path(), "term", n, &mut Rng(7)).await;
    let rules = mix.rules_arg();
    let args = ["--rules", rules.as_str(), "--prefetch", "100"];

    let mut first = dlqd::start(dir.path(), shared_url(), &args);
    let deadline = Instant::now() + Duration::from_secs(60);
    while lab.count(&mix.dlq).await.unwrap_or(0) > (n as u32) * 3 / 4 {
        assert!(Instant::now() < deadline, "{}", first.stderr_tail(20));
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    first.signal("TERM");
    let asked = Instant::now();
    let status = first.wait(Duration::from_secs(10)).await;
    let took = asked.elapsed();
    assert!(status.success(), "{}", first.stderr_tail(20));
    assert!(took < Duration::from_secs(10), "took {took:?}");
    eprintln!("SIGTERM mid-drain: exit 0 after {} ms", took.as_millis());
    let left = lab.count(&mix.dlq).await.unwrap_or(0);
    assert!(left > 0, "stopped in the middle of the drain");
    assert!(first.stderr().contains("stop requested"));

    let mut second = dlqd::start(dir.path(), shared_url(), &args);
    let settled = mix.settle(&mut lab, Duration::from_secs(120)).await;
    second.signal("TERM");
    let status = second.wait(Duration::from_secs(10)).await;
    assert!(status.success(), "{}", second.stderr_tail(20));

    let c = mix.count(&mut lab, false).await;
    lab.cleanup().await;
    assert!(
        settled,
        "the second run finished the drain: {:?}",
        c.examples
    );
    assert_eq!(c.lost, 0, "lost: {:?}", c.examples);
    assert_eq!(c.misplaced, 0, "misplaced: {:?}", c.examples);
    assert_eq!(c.duplicates, 0, "a clean stop duplicates nothing");
}

/// SIGTERM while the broker cannot be reached (dlqd is backing off between attempts).
#[tokio::test(flavor = "multi_thread")]
async fn sigterm_while_reconnecting_exits_zero_at_once() {
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        l.local_addr().expect("addr").port()
    };
    let dir = tempfile::tempdir().expect("tempdir");
    let url = format!("amqp://guest:guest@127.0.0.1:{port}/%2f");
    let mut d = dlqd::start(
        dir.path(),
        &url,
        &["--queue", "nowhere", "--rule", "ACTION(IGNORE)"],
    );
    let deadline = Instant::now() + Duration::from_secs(20);
    while d.stderr().matches("will retry").count() < 3 {
        assert!(
            d.running() && Instant::now() < deadline,
            "dlqd should keep trying; stderr:\n{}",
            d.stderr()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    d.signal("TERM");
    let asked = Instant::now();
    let status = d.wait(Duration::from_secs(10)).await;
    let took = asked.elapsed();
    assert!(status.success(), "{}", d.stderr());
    assert!(took < Duration::from_secs(10), "took {took:?}");
    eprintln!(
        "SIGTERM while reconnecting: exit 0 after {} ms",
        took.as_millis()
    );
    assert!(!d.stderr().contains("guest:guest"), "no password in logs");
}

/// Wait until `needle` appears in dlqd's stderr.
async fn wait_log(d: &dlqd::Dlqd, needle: &str, occurrences: usize) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while d.stderr().matches(needle).count() < occurrences {
        assert!(
            Instant::now() < deadline,
            "no {needle:?} in stderr:\n{}",
            d.stderr()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// SIGHUP re-reads the rules: a valid file takes over for new messages; an invalid one
/// is refused with its diagnostics on stderr and the table in force stays.
#[tokio::test(flavor = "multi_thread")]
async fn sighup_valid_file_takes_over_and_invalid_file_keeps_the_old_table() {
    let mut lab = Lab::connect(shared_url()).await;
    let dlq = lab::unique("dlq");
    let work = lab::unique("work");
    let qa = lab::unique("a");
    let qb = lab::unique("b");
    lab.queue(&dlq, &[]).await;
    lab.work_queue(&work, &dlq, Way::Reject).await;
    lab.queue(&qa, &[]).await;
    lab.queue(&qb, &[]).await;

    let dir = tempfile::tempdir().expect("tempdir");
    let rules = dir.path().join("hup.rules");
    std::fs::write(&rules, format!("INPUTQ({dlq})\nACTION(FWD) FWDQ({qa})\n")).expect("rules");
    let rules_s = rules.display().to_string();
    let mut d = dlqd::start(dir.path(), shared_url(), &["--rules", rules_s.as_str()]);
    wait_log(&d, "connected", 1).await;

    // One dead letter, made by rejecting it; wait until `queue` holds `count`.
    async fn one(lab: &mut Lab, work: &str, id: &str, queue: &str, count: u32) {
        lab.publish_all(&[(work.to_string(), lab::props(id, "x"))])
            .await;
        lab.reject(work, 1).await;
        lab.wait_count(queue, count, Duration::from_secs(20)).await;
    }

    one(&mut lab, &work, "hup-1", &qa, 1).await;

    std::fs::write(&rules, format!("INPUTQ({dlq})\nACTION(FWD) FWDQ({qb})\n")).expect("rules");
    d.signal("HUP");
    wait_log(&d, "rules reloaded", 1).await;
    one(&mut lab, &work, "hup-2", &qb, 1).await;

    std::fs::write(
        &rules,
        format!("INPUTQ({dlq})\nACTION(FWD) FWDQ({qa}) BOGUS(1)\nACTION(FWD)\n"),
    )
    .expect("rules");
    d.signal("HUP");
    wait_log(&d, "reload failed", 1).await;
    one(&mut lab, &work, "hup-3", &qb, 2).await;

    // The diagnostics name the file, line and column, and what is wrong.
    let log = d.stderr();
    let failed = &log[log.find("reload failed").expect("logged")..];
    assert!(failed.contains(&format!("{rules_s}:2:")), "{log}");
    assert!(failed.contains("BOGUS"), "{log}");
    assert!(failed.contains(&format!("{rules_s}:3:")), "{log}");

    d.signal("TERM");
    let status = d.wait(Duration::from_secs(10)).await;
    assert!(status.success(), "{}", d.stderr());
    let a: Vec<String> = lab.drain(&qa).await.into_iter().map(|g| g.id).collect();
    let b: Vec<String> = lab.drain(&qb).await.into_iter().map(|g| g.id).collect();
    assert_eq!(a, ["hup-1"]);
    assert_eq!(b, ["hup-2", "hup-3"]);
    assert_eq!(lab.count(&dlq).await, Some(0));
    assert_eq!(lab.count(&work).await, Some(0));
    lab.cleanup().await;
}
