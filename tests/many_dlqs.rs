//! One `dlqd run` serving several DLQs (a rules directory, or `--rules` repeated), on
//! the real broker: three DLQs with one broken (its DLQ does not exist) — the two others
//! drain fully, the broken one is waited for and drains once it is declared; SIGHUP
//! starts a new file's DLQ, retires a removed file's DLQ and reloads a changed one;
//! `/metrics` labels every series with its queue. Under `--once` the two good DLQs
//! drain and the exit status says one failed. `inspect` of several queues is one table.
//! Every message is counted in and out.

mod common;
mod support;

use std::collections::BTreeSet;
use std::path::Path;
use std::time::{Duration, Instant};

use common::{Broker, Dlqd, Way, props, start_dlqd, unique};
use lapin::BasicProperties;
use support::http::{free_addr, get_until};

const T: Duration = Duration::from_secs(60);

/// The sum of the samples of `family` whose labels contain every one of `labels`.
fn sum(text: &str, family: &str, labels: &[&str]) -> f64 {
    text.lines()
        .filter(|l| l.starts_with(&format!("{family}{{")))
        .filter(|l| labels.iter().all(|want| l.contains(want)))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

fn q(queue: &str) -> String {
    format!("queue=\"{queue}\"")
}

/// `n` messages with ids `PREFIX-i`.
fn batch(prefix: &str, n: usize) -> Vec<(Vec<u8>, BasicProperties)> {
    (0..n)
        .map(|i| {
            let id = format!("{prefix}-{i}");
            (id.clone().into_bytes(), props(&id, "x"))
        })
        .collect()
}

/// Dead-letter `messages` into a DLQ that dlqd consumes meanwhile (so the DLQ's count
/// cannot be waited for): each expires (its own TTL, 1 ms) in `work`.
async fn expire_into_live_dlq(b: &Broker, work: &str, messages: &[(Vec<u8>, BasicProperties)]) {
    let expiring: Vec<_> = messages
        .iter()
        .map(|(body, p)| (body.clone(), p.clone().with_expiration("1".into())))
        .collect();
    b.publish_all(work, &expiring).await;
}

fn ids(got: &[common::Got]) -> BTreeSet<String> {
    got.iter().map(|g| g.id()).collect()
}

fn expected(prefix: &str, n: usize) -> BTreeSet<String> {
    (0..n).map(|i| format!("{prefix}-{i}")).collect()
}

fn forward_rules(dir: &Path, file: &str, dlq: &str, target: &str) {
    std::fs::write(
        dir.join(file),
        format!("INPUTQ({dlq}) RETRYINT(1s)\nACTION(FWD) FWDQ({target})\n"),
    )
    .expect("write rules");
}

async fn wait_log(d: &Dlqd, needle: &str) {
    let deadline = Instant::now() + T;
    while !d.stderr().contains(needle) {
        assert!(
            Instant::now() < deadline,
            "no {needle:?} in stderr:\n{}",
            d.stderr_tail(40)
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// The daemon: three DLQs from a rules directory, one of them missing. The two others
/// drain; the missing one is waited for (an error logged, `dlqd_dlq_up` 0,
/// `dlqd_dlq_unavailable_total` counted, `/health` still 200) and drains once declared.
/// SIGHUP then starts a fourth file's DLQ, retires a removed file's DLQ (what arrives on
/// it afterwards stays there) and reloads a changed file. Every message accounted for.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_dlqs_one_missing_the_others_drain_and_sighup_adds_retires_and_reloads() {
    let mut b = Broker::connect().await;
    let (dlq_a, work_a, to_a) = (
        unique("many-a-dlq"),
        unique("many-a-work"),
        unique("many-a-to"),
    );
    let (dlq_b, work_b, to_b) = (
        unique("many-b-dlq"),
        unique("many-b-work"),
        unique("many-b-to"),
    );
    let (dlq_c, work_c, to_c) = (
        unique("many-c-dlq"),
        unique("many-c-work"),
        unique("many-c-to"),
    );
    let (dlq_d, work_d, to_d) = (
        unique("many-d-dlq"),
        unique("many-d-work"),
        unique("many-d-to"),
    );
    let to_b2 = unique("many-b-to2");
    b.work_queue(&work_a, &dlq_a, Way::Reject).await;
    b.work_queue(&work_b, &dlq_b, Way::Expire).await;
    for t in [&to_a, &to_b, &to_b2, &to_c, &to_d] {
        b.queue(t, &[]).await;
    }
    const N: usize = 40;
    b.dead_letter(&work_a, &dlq_a, Way::Reject, &batch("a", N))
        .await;
    b.dead_letter(&work_b, &dlq_b, Way::Expire, &batch("b", N))
        .await;

    let dir = tempfile::tempdir().expect("tempdir");
    let rules = dir.path().join("rules.d");
    std::fs::create_dir(&rules).expect("mkdir");
    forward_rules(&rules, "a.rules", &dlq_a, &to_a);
    forward_rules(&rules, "b.rules", &dlq_b, &to_b);
    forward_rules(&rules, "c.rules", &dlq_c, &to_c);
    std::fs::write(rules.join("README"), "not a rules file").expect("write");
    let addr = free_addr();
    let audit = dir.path().join("audit.jsonl");
    let mut d = start_dlqd(
        dir.path(),
        &[
            "--rules",
            rules.to_str().expect("utf-8"),
            "--metrics-addr",
            &addr.to_string(),
            "--audit",
            audit.to_str().expect("utf-8"),
        ],
    );

    // The two good DLQs drain while the third does not exist.
    b.wait_count(&to_a, N as u32, T).await;
    b.wait_count(&to_b, N as u32, T).await;
    assert_eq!(b.count(&dlq_a).await, 0);
    assert_eq!(b.count(&dlq_b).await, 0);
    assert!(d.running(), "{}", d.stderr_tail(30));
    wait_log(&d, "does not exist (or may not be read); will retry in").await;
    let (_, text) = get_until(addr, "/metrics", T, |s, t| {
        s == 200
            && sum(
                t,
                "dlqd_dlq_unavailable_total",
                &[&q(&dlq_c), "cause=\"not_found\""],
            ) >= 1.0
            && sum(t, "dlqd_messages_total", &[&q(&dlq_b)]) == N as f64
    })
    .await;
    for dlq in [&dlq_a, &dlq_b] {
        assert_eq!(
            sum(
                &text,
                "dlqd_messages_total",
                &[&q(dlq), "action=\"forward\""]
            ),
            N as f64,
            "{text}"
        );
        assert_eq!(sum(&text, "dlqd_dlq_up", &[&q(dlq)]), 1.0, "{text}");
        assert_eq!(
            sum(&text, "dlqd_processing_seconds_count", &[&q(dlq)]),
            N as f64,
            "{text}"
        );
    }
    assert_eq!(sum(&text, "dlqd_dlq_up", &[&q(&dlq_c)]), 0.0, "{text}");
    assert!(
        text.contains(&format!("dlqd_dlq_up{{{}}} 0", q(&dlq_c))),
        "{text}"
    );
    assert_eq!(
        sum(&text, "dlqd_messages_total", &[&q(&dlq_c)]),
        0.0,
        "{text}"
    );
    // The missing DLQ does not make dlqd unhealthy (it reaches the broker); it is named.
    let (status, health) = get_until(addr, "/health", T, |s, _| s == 200).await;
    assert_eq!(status, 200, "{health}");
    assert!(
        health.contains(&format!("{dlq_c}: connected; the DLQ is unavailable")),
        "{health}"
    );
    assert!(health.contains(&format!("{dlq_a}: consuming")), "{health}");

    // The application declares the missing DLQ and dead-letters into it: it drains.
    b.work_queue(&work_c, &dlq_c, Way::Expire).await;
    expire_into_live_dlq(&b, &work_c, &batch("c", N)).await;
    b.wait_count(&to_c, N as u32, T).await;
    let (_, text) = get_until(addr, "/metrics", T, |s, t| {
        s == 200 && sum(t, "dlqd_dlq_up", &[&q(&dlq_c)]) == 1.0
    })
    .await;
    assert_eq!(
        sum(&text, "dlqd_messages_total", &[&q(&dlq_c)]),
        N as f64,
        "{text}"
    );

    // SIGHUP: a new file (its DLQ already holds dead letters), a removed one, a changed one.
    b.work_queue(&work_d, &dlq_d, Way::QueueTtl).await;
    b.dead_letter(&work_d, &dlq_d, Way::QueueTtl, &batch("d", N))
        .await;
    forward_rules(&rules, "d.rules", &dlq_d, &to_d);
    std::fs::remove_file(rules.join("a.rules")).expect("rm");
    forward_rules(&rules, "b.rules", &dlq_b, &to_b2);
    d.signal("HUP");
    wait_log(&d, "retired").await;
    b.wait_count(&to_d, N as u32, T).await;
    assert_eq!(b.count(&dlq_d).await, 0);
    // The reloaded table takes the new dead letters of B elsewhere.
    const M: usize = 10;
    wait_log(&d, "rules reloaded").await;
    expire_into_live_dlq(&b, &work_b, &batch("b2", M)).await;
    b.wait_count(&to_b2, M as u32, T).await;
    // The retired DLQ is no longer served: its new dead letters stay on it.
    b.dead_letter(&work_a, &dlq_a, Way::Reject, &batch("a2", M))
        .await;
    let (_, text) = get_until(addr, "/metrics", T, |s, t| {
        s == 200 && sum(t, "dlqd_messages_total", &[&q(&dlq_d)]) == N as f64
    })
    .await;
    assert!(
        !text.contains(&format!("dlqd_dlq_up{{{}}}", q(&dlq_a))),
        "retired:\n{text}"
    );
    assert_eq!(sum(&text, "dlqd_dlq_up", &[&q(&dlq_d)]), 1.0, "{text}");
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(
        b.count(&dlq_a).await,
        M as u32,
        "the retired DLQ is left alone"
    );

    d.signal("TERM");
    let status = d.wait(Duration::from_secs(15)).await;
    assert!(status.success(), "exit {status:?}:\n{}", d.stderr_tail(40));

    // Every message counted: where its rule sent it, once; nothing else anywhere.
    assert_eq!(ids(&b.drain(&to_a).await), expected("a", N));
    assert_eq!(ids(&b.drain(&to_b).await), expected("b", N));
    assert_eq!(ids(&b.drain(&to_b2).await), expected("b2", M));
    assert_eq!(ids(&b.drain(&to_c).await), expected("c", N));
    assert_eq!(ids(&b.drain(&to_d).await), expected("d", N));
    assert_eq!(ids(&b.drain(&dlq_a).await), expected("a2", M));
    for queue in [&dlq_b, &dlq_c, &dlq_d, &work_a, &work_b, &work_c, &work_d] {
        assert_eq!(b.count(queue).await, 0, "{queue} is empty");
    }
    let audited = std::fs::read_to_string(&audit).expect("audit");
    assert_eq!(
        audited.lines().count(),
        4 * N + M,
        "one audit line per action"
    );
    for dlq in [&dlq_a, &dlq_b, &dlq_c, &dlq_d] {
        assert!(
            audited.contains(&format!("\"queue\":\"{dlq}\"")),
            "{dlq} audited"
        );
    }
    b.cleanup().await;
}

/// `--once` over three DLQs given as repeated `--rules`, one of them missing: the two
/// others drain fully, the run ends with exit status 1 naming the missing one.
/// `dlqd inspect` of the three first: one table, a row each, the missing one an error.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn once_over_three_dlqs_drains_the_two_good_ones_and_exits_1_for_the_missing_one() {
    let mut b = Broker::connect().await;
    let (dlq_a, work_a, to_a) = (
        unique("once-a-dlq"),
        unique("once-a-work"),
        unique("once-a-to"),
    );
    let (dlq_b, work_b, to_b) = (
        unique("once-b-dlq"),
        unique("once-b-work"),
        unique("once-b-to"),
    );
    let (dlq_c, to_c) = (unique("once-c-dlq"), unique("once-c-to"));
    b.work_queue(&work_a, &dlq_a, Way::Reject).await;
    b.work_queue(&work_b, &dlq_b, Way::Overflow).await;
    for t in [&to_a, &to_b, &to_c] {
        b.queue(t, &[]).await;
    }
    const N: usize = 60;
    b.dead_letter(&work_a, &dlq_a, Way::Reject, &batch("a", N))
        .await;
    b.dead_letter(&work_b, &dlq_b, Way::Overflow, &batch("b", N / 2))
        .await;

    let out = tokio::task::spawn_blocking({
        let (a, bq, c) = (dlq_a.clone(), dlq_b.clone(), dlq_c.clone());
        move || {
            support::dlqd::dlqd(
                &["inspect", "--queue", &a, "--queue", &bq, "--queue", &c],
                common::url(),
                T,
            )
        }
    })
    .await
    .expect("inspect");
    let table = String::from_utf8_lossy(&out.stdout).into_owned();
    eprintln!("{table}");
    assert_eq!(
        out.status.code(),
        Some(1),
        "a queue missing: exit 1\n{table}"
    );
    let lines: Vec<&str> = table.lines().collect();
    assert!(
        lines[0].starts_with("QUEUE") && lines[0].contains("TOP REASON"),
        "{table}"
    );
    let row = |dlq: &str| {
        *lines
            .iter()
            .find(|l| l.starts_with(dlq))
            .unwrap_or_else(|| panic!("no row for {dlq}:\n{table}"))
    };
    assert!(row(&dlq_a).contains(&format!(" {N} ")), "{table}");
    assert!(
        row(&dlq_a).contains(&format!("{work_a} ({N}, 100%)")),
        "{table}"
    );
    assert!(
        row(&dlq_a).contains(&format!("rejected ({N}, 100%)")),
        "{table}"
    );
    assert!(
        row(&dlq_b).contains(&format!("maxlen ({}, 100%)", N / 2)),
        "{table}"
    );
    assert!(row(&dlq_c).contains("not inspected"), "{table}");
    assert!(
        table.contains(&format!("{dlq_c}: queue")),
        "the error, after the table:\n{table}"
    );
    assert!(table.contains("3 queues: 90 messages"), "{table}");
    assert_eq!(b.count(&dlq_a).await, N as u32, "inspect consumes nothing");
    assert_eq!(b.count(&dlq_b).await, (N / 2) as u32);

    let dir = tempfile::tempdir().expect("tempdir");
    forward_rules(dir.path(), "a.rules", &dlq_a, &to_a);
    forward_rules(dir.path(), "b.rules", &dlq_b, &to_b);
    forward_rules(dir.path(), "c.rules", &dlq_c, &to_c);
    let arg = |f: &str| dir.path().join(f).display().to_string();
    let (fa, fb, fc) = (arg("a.rules"), arg("b.rules"), arg("c.rules"));
    let mut d = start_dlqd(
        dir.path(),
        &["--once", "--rules", &fa, "--rules", &fb, "--rules", &fc],
    );
    let status = d.wait(T).await;
    let stderr = d.stderr();
    assert_eq!(status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("1 of 3 DLQ(s) stopped with an error"),
        "{stderr}"
    );
    assert!(stderr.contains(&dlq_c), "{stderr}");
    assert_eq!(ids(&b.drain(&to_a).await), expected("a", N));
    assert_eq!(ids(&b.drain(&to_b).await), expected("b", N / 2));
    for queue in [&dlq_a, &dlq_b, &work_a, &work_b, &to_c] {
        assert_eq!(b.count(queue).await, 0, "{queue} is empty");
    }
    assert!(!b.exists(&dlq_c).await, "dlqd declares no DLQ");
    b.cleanup().await;
}

/// Tables that cannot be served together are refused before anything runs, each
/// error naming its file: no INPUTQ, one DLQ named twice, `--queue` with several.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_set_of_tables_that_cannot_be_served_is_refused_naming_the_files() {
    let _b = Broker::connect().await;
    let dir = tempfile::tempdir().expect("tempdir");
    let p = |f: &str| dir.path().join(f).display().to_string();
    std::fs::write(p("one.rules"), "INPUTQ(x.dlq)\nACTION(IGNORE)\n").expect("write");
    std::fs::write(p("two.rules"), "INPUTQ(x.dlq)\nACTION(DISCARD)\n").expect("write");
    std::fs::write(p("none.rules"), "ACTION(IGNORE)\n").expect("write");
    let run = |args: Vec<String>| {
        let mut all = vec!["run".to_string(), "--once".to_string()];
        all.extend(args);
        let refs: Vec<&str> = all.iter().map(String::as_str).collect();
        support::dlqd::dlqd(&refs, common::url(), T)
    };
    let out = run(vec![
        "--rules".into(),
        p("one.rules"),
        "--rules".into(),
        p("two.rules"),
    ]);
    let err = support::dlqd::stderr_of(&out);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(
        err.contains(&format!(
            "{}: INPUTQ(x.dlq) is already served by {}",
            p("two.rules"),
            p("one.rules")
        )),
        "{err}"
    );
    let out = run(vec![
        "--rules".into(),
        p("one.rules"),
        "--rules".into(),
        p("none.rules"),
    ]);
    let err = support::dlqd::stderr_of(&out);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(
        err.contains(&format!("{}: no INPUTQ", p("none.rules"))),
        "{err}"
    );
    let out = run(vec![
        "--rules".into(),
        dir.path().display().to_string(),
        "--queue".into(),
        "q".into(),
    ]);
    let err = support::dlqd::stderr_of(&out);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(err.contains("--queue names one DLQ"), "{err}");

    // `dlqd check DIR` says the same of the directory, after checking each file.
    let shown = dir.path().display().to_string();
    let out = support::dlqd::dlqd(&["check", &shown], common::url(), T);
    let report = String::from_utf8_lossy(&out.stdout).into_owned();
    assert_eq!(out.status.code(), Some(1), "{report}");
    assert!(
        report.contains(&format!("{}: valid: 1 rule", p("none.rules"))),
        "{report}"
    );
    assert!(
        report.contains(&format!("{}: no INPUTQ", p("none.rules"))),
        "{report}"
    );
    assert!(
        report.contains(&format!(
            "{shown}: cannot be served as one rules directory: 2 errors"
        )),
        "{report}"
    );
    std::fs::remove_file(p("none.rules")).expect("rm");
    std::fs::remove_file(p("two.rules")).expect("rm");
    let out = support::dlqd::dlqd(&["check", &shown], common::url(), T);
    let report = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(out.status.success(), "{report}");
    assert!(
        report.contains(&format!("{shown}: serves 1 DLQ")),
        "{report}"
    );
}

/// SIGHUP with one file made invalid and another changed: the invalid one's DLQ keeps
/// its old table (its diagnostics logged), the changed one's takes the new table, and
/// neither disturbs the other. Every message counted.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sighup_with_one_invalid_file_keeps_that_dlq_on_its_old_table_and_reloads_the_other() {
    let mut b = Broker::connect().await;
    let (dlq_x, work_x, x1, x2) = (
        unique("hup-x-dlq"),
        unique("hup-x-work"),
        unique("hup-x-1"),
        unique("hup-x-2"),
    );
    let (dlq_y, work_y, y1, y2) = (
        unique("hup-y-dlq"),
        unique("hup-y-work"),
        unique("hup-y-1"),
        unique("hup-y-2"),
    );
    b.work_queue(&work_x, &dlq_x, Way::Expire).await;
    b.work_queue(&work_y, &dlq_y, Way::Expire).await;
    for t in [&x1, &x2, &y1, &y2] {
        b.queue(t, &[]).await;
    }
    let dir = tempfile::tempdir().expect("tempdir");
    let rules = dir.path().join("rules.d");
    std::fs::create_dir(&rules).expect("mkdir");
    forward_rules(&rules, "x.rules", &dlq_x, &x1);
    forward_rules(&rules, "y.rules", &dlq_y, &y1);
    let mut d = start_dlqd(dir.path(), &["--rules", rules.to_str().expect("utf-8")]);
    const N: usize = 15;
    expire_into_live_dlq(&b, &work_x, &batch("x1", N)).await;
    expire_into_live_dlq(&b, &work_y, &batch("y1", N)).await;
    b.wait_count(&x1, N as u32, T).await;
    b.wait_count(&y1, N as u32, T).await;

    std::fs::write(
        rules.join("x.rules"),
        format!("INPUTQ({dlq_x})\nACTION(FWD) FWDQ({x2}) BOGUS(1)\n"),
    )
    .expect("write");
    forward_rules(&rules, "y.rules", &dlq_y, &y2);
    d.signal("HUP");
    wait_log(&d, "rules reloaded").await;
    wait_log(&d, "reload failed for a rules file").await;
    let log = d.stderr();
    assert!(
        log.contains("x.rules:2:"),
        "the diagnostics name file and line:\n{log}"
    );
    assert!(log.contains("BOGUS"), "{log}");
    expire_into_live_dlq(&b, &work_x, &batch("x2", N)).await;
    expire_into_live_dlq(&b, &work_y, &batch("y2", N)).await;
    b.wait_count(&x1, 2 * N as u32, T).await;
    b.wait_count(&y2, N as u32, T).await;

    d.signal("TERM");
    let status = d.wait(Duration::from_secs(15)).await;
    assert!(status.success(), "exit {status:?}:\n{}", d.stderr_tail(40));
    let mut want_x1 = expected("x1", N);
    want_x1.extend(expected("x2", N));
    assert_eq!(ids(&b.drain(&x1).await), want_x1, "x keeps its old table");
    assert_eq!(ids(&b.drain(&y1).await), expected("y1", N));
    assert_eq!(ids(&b.drain(&y2).await), expected("y2", N));
    for queue in [&x2, &dlq_x, &dlq_y, &work_x, &work_y] {
        assert_eq!(b.count(queue).await, 0, "{queue} is empty");
    }
    b.cleanup().await;
}

/// A password no log may show.
const PASSWORD: &str = "Fl33t-S3CRET";

/// On a private node, a dlqd user that may not read one of three DLQs (403
/// ACCESS_REFUSED on its consume): the two others drain while that one is retried, its
/// `dlqd_dlq_unavailable_total{cause="access_refused"}` counts, and once read access is
/// granted it drains too. Every message counted.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dlq_the_user_may_not_read_waits_while_the_others_drain_and_drains_once_allowed() {
    use support::private_node::PrivateNode;
    let node = PrivateNode::start();
    node.ctl(&["add_user", "dlqd", PASSWORD]);
    let perms = |read: &str| {
        node.ctl(&[
            "set_permissions",
            "-p",
            "/",
            "dlqd",
            "^dlqd\\..*$",
            "^(amq\\.default|dlqd\\..*)$",
            read,
        ]);
    };
    perms("^(ok1\\.dlq|ok2\\.dlq|dlqd\\..*)$");
    let mut b = Broker::connect_to(&node.url())
        .await
        .expect("admin connection");
    let queues = [
        ("ok1", Way::Reject),
        ("ok2", Way::Expire),
        ("no", Way::Reject),
    ];
    const N: usize = 20;
    for (name, way) in queues {
        let (dlq, work) = (format!("{name}.dlq"), format!("{name}.work"));
        b.work_queue(&work, &dlq, way).await;
        b.queue(&format!("{name}.to"), &[]).await;
        b.dead_letter(&work, &dlq, way, &batch(name, N)).await;
    }
    let dir = tempfile::tempdir().expect("tempdir");
    let rules = dir.path().join("rules");
    std::fs::create_dir(&rules).expect("mkdir");
    for (name, _) in queues {
        forward_rules(
            &rules,
            &format!("{name}.rules"),
            &format!("{name}.dlq"),
            &format!("{name}.to"),
        );
    }
    let addr = free_addr();
    let url = format!("amqp://dlqd:{PASSWORD}@127.0.0.1:{}/%2f", node.port);
    let mut d = support::dlqd::start(
        dir.path(),
        &url,
        &[
            "--rules",
            rules.to_str().expect("utf-8"),
            "--metrics-addr",
            &addr.to_string(),
        ],
    );
    b.wait_count("ok1.to", N as u32, T).await;
    b.wait_count("ok2.to", N as u32, T).await;
    let (_, text) = get_until(addr, "/metrics", T, |s, t| {
        s == 200
            && sum(
                t,
                "dlqd_dlq_unavailable_total",
                &[&q("no.dlq"), "cause=\"access_refused\""],
            ) >= 1.0
    })
    .await;
    assert_eq!(sum(&text, "dlqd_dlq_up", &[&q("no.dlq")]), 0.0, "{text}");
    assert_eq!(sum(&text, "dlqd_dlq_up", &[&q("ok1.dlq")]), 1.0, "{text}");
    assert_eq!(
        b.count("no.dlq").await,
        N as u32,
        "the refused DLQ is untouched"
    );
    assert!(
        d.stderr().contains("ACCESS_REFUSED"),
        "{}",
        d.stderr_tail(30)
    );
    assert!(d.running());

    perms("^(ok1\\.dlq|ok2\\.dlq|no\\.dlq|dlqd\\..*)$");
    b.wait_count("no.to", N as u32, T).await;
    d.signal("TERM");
    let status = d.wait(Duration::from_secs(15)).await;
    assert!(status.success(), "exit {status:?}:\n{}", d.stderr_tail(40));
    assert!(!d.stderr().contains(PASSWORD), "no password in the log");
    for (name, _) in queues {
        assert_eq!(
            ids(&b.drain(&format!("{name}.to")).await),
            expected(name, N)
        );
        assert_eq!(b.count(&format!("{name}.dlq")).await, 0);
        assert_eq!(b.count(&format!("{name}.work")).await, 0);
    }
    b.cleanup().await;
}

/// `--max` (like `--rate`) applies to each DLQ: `--once --max 5` over two DLQs of 12
/// takes 5 from each; the rest stays where it was. Every message counted.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn max_applies_to_each_dlq() {
    let mut b = Broker::connect().await;
    let (dlq_a, work_a, to_a) = (
        unique("max-a-dlq"),
        unique("max-a-work"),
        unique("max-a-to"),
    );
    let (dlq_b, work_b, to_b) = (
        unique("max-b-dlq"),
        unique("max-b-work"),
        unique("max-b-to"),
    );
    b.work_queue(&work_a, &dlq_a, Way::Reject).await;
    b.work_queue(&work_b, &dlq_b, Way::QueueTtl).await;
    b.queue(&to_a, &[]).await;
    b.queue(&to_b, &[]).await;
    const N: usize = 12;
    const MAX: usize = 5;
    b.dead_letter(&work_a, &dlq_a, Way::Reject, &batch("a", N))
        .await;
    b.dead_letter(&work_b, &dlq_b, Way::QueueTtl, &batch("b", N))
        .await;
    let dir = tempfile::tempdir().expect("tempdir");
    forward_rules(dir.path(), "a.rules", &dlq_a, &to_a);
    forward_rules(dir.path(), "b.rules", &dlq_b, &to_b);
    let (fa, fb) = (
        dir.path().join("a.rules").display().to_string(),
        dir.path().join("b.rules").display().to_string(),
    );
    let mut d = start_dlqd(
        dir.path(),
        &[
            "--once",
            "--max",
            "5",
            "--prefetch",
            "1",
            "--rules",
            &fa,
            "--rules",
            &fb,
        ],
    );
    let status = d.wait(T).await;
    assert!(status.success(), "exit {status:?}:\n{}", d.stderr_tail(30));
    assert_eq!(
        d.stderr().matches("stopped at --max after 5 taken").count(),
        2,
        "each DLQ's summary says so:\n{}",
        d.stderr_tail(30)
    );
    let (got_a, got_b) = (b.drain(&to_a).await, b.drain(&to_b).await);
    assert_eq!(got_a.len(), MAX);
    assert_eq!(got_b.len(), MAX);
    let (left_a, left_b) = (b.drain(&dlq_a).await, b.drain(&dlq_b).await);
    let mut all_a = ids(&got_a);
    all_a.extend(ids(&left_a));
    let mut all_b = ids(&got_b);
    all_b.extend(ids(&left_b));
    assert_eq!(
        all_a,
        expected("a", N),
        "every message of A once: forwarded or still there"
    );
    assert_eq!(all_b, expected("b", N));
    assert_eq!(left_a.len() + got_a.len(), N);
    assert_eq!(left_b.len() + got_b.len(), N);
    b.cleanup().await;
}

/// Seen in an operator's trial: `dlqd_dlq_depth` kept its last value for a DLQ that had
/// been deleted, and the log said "broker unavailable" (with a new connection each
/// time) when only the queue was gone. Now the series goes, the log names the DLQ, and
/// the other DLQ is served on.
#[tokio::test(flavor = "multi_thread")]
async fn a_deleted_dlq_loses_its_depth_series_and_is_named_in_the_log() {
    let mut b = Broker::connect().await;
    let (dlq_a, dlq_b, to_a, to_b) = (
        unique("many-gone-a-dlq"),
        unique("many-gone-b-dlq"),
        unique("many-gone-a-to"),
        unique("many-gone-b-to"),
    );
    for q in [&dlq_a, &dlq_b, &to_a, &to_b] {
        b.queue(q, &[]).await;
    }
    let dir = tempfile::tempdir().expect("tempdir");
    let rules = dir.path().join("rules.d");
    std::fs::create_dir(&rules).expect("mkdir");
    forward_rules(&rules, "a.rules", &dlq_a, &to_a);
    forward_rules(&rules, "b.rules", &dlq_b, &to_b);
    let addr = free_addr();
    let mut d = start_dlqd(
        dir.path(),
        &[
            "--rules",
            rules.to_str().expect("utf-8"),
            "--metrics-addr",
            &addr.to_string(),
        ],
    );
    let series = |queue: &str| format!("dlqd_dlq_depth{{{}}}", q(queue));
    get_until(addr, "/metrics", T, |s, t| {
        s == 200
            && t.contains(&series(&dlq_a))
            && t.contains(&series(&dlq_b))
            && sum(t, "dlqd_dlq_up", &[&q(&dlq_a)]) == 1.0
            && sum(t, "dlqd_dlq_up", &[&q(&dlq_b)]) == 1.0
    })
    .await;

    let ch = b.conn.create_channel().await.expect("channel");
    ch.queue_delete(dlq_a.as_str().into(), Default::default())
        .await
        .expect("delete the DLQ");
    let (_, text) = get_until(addr, "/metrics", T, |s, t| {
        s == 200 && !t.contains(&series(&dlq_a)) && sum(t, "dlqd_dlq_up", &[&q(&dlq_a)]) == 0.0
    })
    .await;
    assert!(text.contains(&series(&dlq_b)), "{text}");
    assert_eq!(sum(&text, "dlqd_dlq_up", &[&q(&dlq_b)]), 1.0, "{text}");
    wait_log(
        &d,
        &format!("the DLQ {dlq_a} does not exist (or may not be read); will retry in"),
    )
    .await;
    // B is still served: what arrives on it is forwarded.
    b.publish_all(&dlq_b, &batch("gone-b", 5)).await;
    b.wait_count(&to_b, 5, T).await;
    let got = ids(&b.drain(&to_b).await);
    assert_eq!(got, expected("gone-b", 5));
    assert!(
        !d.stderr().contains("broker unavailable"),
        "{}",
        d.stderr_tail(30)
    );

    d.signal("TERM");
    let status = d.wait(Duration::from_secs(15)).await;
    assert!(status.success(), "exit {status:?}:\n{}", d.stderr_tail(40));
    b.cleanup().await;
}
