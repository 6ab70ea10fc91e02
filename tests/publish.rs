//! `dlqd publish` against the real RabbitMQ: captures of real dead letters (rejected,
//! expired) sent back where each died with header edits, to a queue, to an exchange
//! with each message's own routing key; a returned publish counted as failed (exit 3);
//! `--dry-run` sends nothing; `--rate` and `--max`. Every message is counted: what was
//! sent arrived, and the DLQ the capture was taken from is untouched.

mod common;
mod support;

use std::path::{Path, PathBuf};
use std::process::Output;
use std::time::{Duration, SystemTime};

use common::*;
use lapin::BasicProperties;
use lapin::options::QueueBindOptions;
use lapin::types::FieldTable;
use support::dlqd::{dlqd, stderr_of};

const T: Duration = Duration::from_secs(30);

fn msgs(prefix: &str, n: usize) -> Vec<(Vec<u8>, BasicProperties)> {
    (0..n)
        .map(|i| {
            let id = format!("{prefix}{i}");
            (format!("body-{id}").into_bytes(), props(&id, "old"))
        })
        .collect()
}

/// `dlqd capture --queue Q --out DIR/NAME`.
fn capture(dir: &Path, queue: &str, name: &str) -> PathBuf {
    let out = dir.join(name);
    let o = dlqd(
        &["capture", "--queue", queue, "--out", out.to_str().unwrap()],
        url(),
        T,
    );
    assert!(o.status.success(), "capture: {}", stderr_of(&o));
    out
}

fn publish(args: &[&str]) -> Output {
    let mut all = vec!["publish"];
    all.extend_from_slice(args);
    dlqd(&all, url(), T)
}

fn stdout_of(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

/// The audit trail's lines as JSON.
fn audit_lines(path: &Path) -> Vec<serde_json::Value> {
    std::fs::read_to_string(path)
        .expect("audit trail")
        .lines()
        .map(|l| serde_json::from_str(l).expect("audit line is JSON"))
        .collect()
}

/// Five real dead letters (three rejected from one queue, two expired from another)
/// and a hand-written message with no death history: `--to-origin` with edits sends
/// each of the five back to the queue it died in, edited and marked, body unchanged;
/// the sixth is not sent, counted and reported (exit 3); the DLQ is untouched.
#[tokio::test]
async fn back_to_origin_with_edits_from_real_dead_letters() {
    let mut b = Broker::connect().await;
    let (rejecting, expiring, dlq) = (unique("orders"), unique("payments"), unique("dlq"));
    b.work_queue(&rejecting, &dlq, Way::Reject).await;
    b.queue(&expiring, &broker_args(Way::Expire, &dlq)).await;
    b.dead_letter(&rejecting, &dlq, Way::Reject, &msgs("r", 3))
        .await;
    b.dead_letter(&expiring, &dlq, Way::Expire, &msgs("e", 2))
        .await;
    let dir = tempfile::tempdir().expect("tempdir");
    let cap = capture(dir.path(), &dlq, "dlq.jsonl");
    let mut text = std::fs::read_to_string(&cap).unwrap();
    text.push_str(r#"{"properties":{"message_id":"no-history"},"body":"orphan"}"#);
    text.push('\n');
    std::fs::write(&cap, text).unwrap();
    let before = b.peek(&dlq).await;
    assert_eq!(before.len(), 5);

    let audit = dir.path().join("audit.jsonl");
    let o = publish(&[
        cap.to_str().unwrap(),
        "--to-origin",
        "--set-header",
        "fixed=yes",
        "--set-header",
        "n:int=5",
        "--unset-header",
        "act",
        "--audit",
        audit.to_str().unwrap(),
    ]);
    assert_eq!(o.status.code(), Some(3), "{}", stderr_of(&o));
    assert!(
        stdout_of(&o).contains("6 message(s): 5 sent, 0 failed, 1 not sent (no death history)"),
        "{}",
        stdout_of(&o)
    );
    assert!(
        stderr_of(&o).contains("no death history"),
        "{}",
        stderr_of(&o)
    );

    // Out: 3 in the rejecting queue, 2 in the expiring one (the broker dropped their
    // expiration when it dead-lettered them), in order, edited.
    b.wait_count(&rejecting, 3, Duration::from_secs(5)).await;
    b.wait_count(&expiring, 2, Duration::from_secs(5)).await;
    let back_r = b.drain(&rejecting).await;
    let back_e = b.drain(&expiring).await;
    assert_eq!(bodies(&back_r), vec!["body-r0", "body-r1", "body-r2"]);
    assert_eq!(bodies(&back_e), vec!["body-e0", "body-e1"]);
    for (g, queue) in back_r
        .iter()
        .map(|g| (g, &rejecting))
        .chain(back_e.iter().map(|g| (g, &expiring)))
    {
        assert_eq!(g.header_str("fixed").as_deref(), Some("yes"));
        assert_eq!(g.header_i64("n"), Some(5));
        assert!(g.header("act").is_none(), "act unset");
        assert_eq!(
            g.header_str("x-dlqd-edited").as_deref(),
            Some("set=fixed,n;unset=act")
        );
        assert_eq!(g.death_queue().as_deref(), Some(queue.as_str()));
    }
    // The DLQ is untouched: the same five, in order.
    let after = b.peek(&dlq).await;
    assert_eq!(bodies(&after), bodies(&before));

    let lines = audit_lines(&audit);
    assert_eq!(lines.len(), 6);
    let ok: Vec<_> = lines.iter().filter(|l| l["outcome"] == "ok").collect();
    assert_eq!(ok.len(), 5);
    assert!(ok.iter().all(|l| l["action"] == "publish"));
    assert_eq!(ok[0]["target"], rejecting.as_str());
    assert_eq!(ok[3]["target"], expiring.as_str());
    let failed: Vec<_> = lines.iter().filter(|l| l["outcome"] == "failed").collect();
    assert_eq!(failed.len(), 1);
    assert_eq!(failed[0]["message_id"], "no-history");
    assert_eq!(failed[0]["cause"], "no_target");
    b.cleanup().await;
}

fn broker_args(way: Way, dlq: &str) -> Vec<(&'static str, lapin::types::AMQPValue)> {
    support::broker::work_queue_args(way, dlq)
}

/// A publish to a queue that does not exist, through the default exchange with
/// `mandatory`, comes back: every one counted as failed (returned), exit 3, audited
/// with the broker's words; nothing else changes.
#[tokio::test]
async fn a_returned_publish_is_a_counted_failure() {
    let mut b = Broker::connect().await;
    let (work, dlq) = (unique("work"), unique("dlq"));
    b.work_queue(&work, &dlq, Way::Reject).await;
    b.dead_letter(&work, &dlq, Way::Reject, &msgs("m", 3)).await;
    let dir = tempfile::tempdir().expect("tempdir");
    let cap = capture(dir.path(), &dlq, "dlq.jsonl");
    let audit = dir.path().join("audit.jsonl");
    let missing = unique("missing");
    let o = publish(&[
        cap.to_str().unwrap(),
        "--queue",
        &missing,
        "--audit",
        audit.to_str().unwrap(),
    ]);
    assert_eq!(o.status.code(), Some(3), "{}", stderr_of(&o));
    assert!(
        stdout_of(&o).contains("3 message(s): 0 sent, 3 failed (returned 3)"),
        "{}",
        stdout_of(&o)
    );
    assert!(stderr_of(&o).contains("NO_ROUTE"), "{}", stderr_of(&o));
    let lines = audit_lines(&audit);
    assert_eq!(lines.len(), 3);
    for l in &lines {
        assert_eq!(l["outcome"], "failed");
        assert_eq!(l["cause"], "returned");
        assert!(l["error"].as_str().unwrap().contains("312"), "{l}");
        assert_eq!(l["target"], missing.as_str());
    }
    assert!(!b.exists(&missing).await);
    assert_eq!(b.count(&dlq).await, 3);
    assert_eq!(b.count(&work).await, 0);
    b.cleanup().await;
}

/// `--exchange amq.direct` with each message's own routing key (the one it was first
/// published with: its work queue's name), and with `--routing-key`; `--dry-run` first
/// prints the plan and sends nothing.
#[tokio::test]
async fn to_an_exchange_with_each_messages_own_key_and_a_dry_run_first() {
    let mut b = Broker::connect().await;
    let (work, dlq, sink, other) = (unique("work"), unique("dlq"), unique("sink"), unique("k"));
    b.work_queue(&work, &dlq, Way::Reject).await;
    b.queue(&sink, &[]).await;
    for key in [&work, &other] {
        b.ch.queue_bind(
            sink.as_str().into(),
            "amq.direct".into(),
            key.as_str().into(),
            QueueBindOptions::default(),
            FieldTable::default(),
        )
        .await
        .expect("bind");
    }
    b.dead_letter(&work, &dlq, Way::Reject, &msgs("m", 4)).await;
    let dir = tempfile::tempdir().expect("tempdir");
    let cap = capture(dir.path(), &dlq, "dlq.jsonl");
    let capf = cap.to_str().unwrap();

    let dry = publish(&[
        capf,
        "--exchange",
        "amq.direct",
        "--set-header",
        "x=1",
        "--dry-run",
    ]);
    assert!(dry.status.success(), "{}", stderr_of(&dry));
    let out = stdout_of(&dry);
    assert_eq!(
        out.lines()
            .filter(
                |l| l.contains(&format!("exchange amq.direct, key {work}")) && l.ends_with("set=x")
            )
            .count(),
        4,
        "{out}"
    );
    assert!(out.contains("4 would be sent"), "{out}");
    assert_eq!(b.count(&sink).await, 0, "a dry run sends nothing");

    let own = publish(&[capf, "--exchange", "amq.direct"]);
    assert!(own.status.success(), "{}", stderr_of(&own));
    let keyed = publish(&[capf, "--exchange", "amq.direct", "--routing-key", &other]);
    assert!(keyed.status.success(), "{}", stderr_of(&keyed));
    assert!(stdout_of(&keyed).contains("4 message(s): 4 sent, 0 failed"));
    // In: 4 captured, published twice. Out: 8 in the sink; unedited, so unmarked.
    b.wait_count(&sink, 8, Duration::from_secs(5)).await;
    let got = b.drain(&sink).await;
    assert_eq!(
        tally(&got).values().copied().collect::<Vec<_>>(),
        vec![2, 2, 2, 2]
    );
    assert!(got.iter().all(|g| g.header("x-dlqd-edited").is_none()));
    assert_eq!(b.count(&dlq).await, 4, "the DLQ is untouched");
    assert_eq!(b.count(&work).await, 0);
    b.cleanup().await;
}

/// `--rate 100/s --max 120` over a hand-written capture of 150: exactly the first 120
/// arrive, in order, at a measured rate (from the audit trail) within 10% of 100/s.
#[tokio::test]
async fn rate_and_max_bound_a_publish() {
    let mut b = Broker::connect().await;
    let q = unique("q");
    b.queue(&q, &[]).await;
    let dir = tempfile::tempdir().expect("tempdir");
    let cap = dir.path().join("hand.jsonl");
    let lines: String = (0..150)
        .map(|i| {
            format!("{{\"properties\":{{\"message_id\":\"p{i:03}\"}},\"body\":\"p{i:03}\"}}\n")
        })
        .collect();
    std::fs::write(&cap, lines).unwrap();
    let audit = dir.path().join("audit.jsonl");
    let o = publish(&[
        cap.to_str().unwrap(),
        "--queue",
        &q,
        "--rate",
        "100/s",
        "--max",
        "120",
        "--audit",
        audit.to_str().unwrap(),
    ]);
    assert!(o.status.success(), "{}", stderr_of(&o));
    assert!(stdout_of(&o).contains("120 message(s): 120 sent, 0 failed"));
    b.wait_count(&q, 120, Duration::from_secs(5)).await;
    let got = b.drain(&q).await;
    assert_eq!(
        bodies(&got),
        (0..120).map(|i| format!("p{i:03}")).collect::<Vec<_>>()
    );
    let times: Vec<SystemTime> = audit_lines(&audit)
        .iter()
        .map(|l| humantime::parse_rfc3339(l["time"].as_str().unwrap()).unwrap())
        .collect();
    assert_eq!(times.len(), 120);
    let span = times[119].duration_since(times[0]).unwrap().as_secs_f64();
    let rate = 119.0 / span;
    eprintln!("publish measured {rate:.1}/s over {span:.2}s");
    assert!(
        (rate - 100.0).abs() <= 10.0,
        "measured {rate:.1}/s over {span:.2}s"
    );
    b.cleanup().await;
}

/// A capture with a bad line is refused before anything is sent (exit 1, the line named).
#[tokio::test]
async fn a_bad_capture_sends_nothing() {
    let mut b = Broker::connect().await;
    let q = unique("q");
    b.queue(&q, &[]).await;
    let dir = tempfile::tempdir().expect("tempdir");
    let cap = dir.path().join("bad.jsonl");
    std::fs::write(&cap, "{\"body\":\"ok\"}\n{\"bodee\":1}\n").unwrap();
    let o = publish(&[cap.to_str().unwrap(), "--queue", &q]);
    assert_eq!(o.status.code(), Some(1), "{}", stderr_of(&o));
    assert!(stderr_of(&o).contains("line 2"), "{}", stderr_of(&o));
    assert_eq!(b.count(&q).await, 0);
    b.cleanup().await;
}

/// `n` hand-written messages `p000`, `p001`, ... as capture lines.
fn hand_lines(n: usize) -> String {
    (0..n)
        .map(|i| {
            format!("{{\"properties\":{{\"message_id\":\"p{i:03}\"}},\"body\":\"p{i:03}\"}}\n")
        })
        .collect()
}

/// `dlqd publish - ARGS...` with `input` on stdin (a pipe).
fn publish_stdin(args: &[&str], input: Vec<u8>) -> Output {
    use std::io::Write;
    use std::process::{Command, Stdio};
    let mut child = Command::new(env!("CARGO_BIN_EXE_dlqd"))
        .arg("publish")
        .arg("-")
        .args(args)
        .env_remove("DLQD_LOG")
        .env("DLQD_URL", url())
        .env("NO_COLOR", "1")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn dlqd");
    let mut stdin = child.stdin.take().expect("stdin");
    let writer = std::thread::spawn(move || {
        let _ = stdin.write_all(&input);
    });
    let out = child.wait_with_output().expect("dlqd output");
    writer.join().expect("writer");
    out
}

/// Stdin is read and checked whole before the first publish, like a file: 150 good
/// lines, a broken one, 50 more: nothing sent (exit 1, the line named). A good stream
/// (starting with a UTF-8 byte-order mark) is sent whole.
#[tokio::test]
async fn stdin_with_a_bad_line_sends_nothing() {
    let mut b = Broker::connect().await;
    let q = unique("stdin");
    b.queue(&q, &[]).await;
    let good = hand_lines(200);
    let mut lines: Vec<&str> = good.lines().collect();
    lines.insert(150, "{\"broken");
    let bad = lines.join("\n") + "\n";
    let o = publish_stdin(&["--queue", &q], bad.into_bytes());
    assert_eq!(o.status.code(), Some(1), "{}", stderr_of(&o));
    assert!(stderr_of(&o).contains("line 151"), "{}", stderr_of(&o));
    assert_eq!(b.count(&q).await, 0, "nothing sent");

    let mut bom = "\u{feff}".as_bytes().to_vec();
    bom.extend_from_slice(hand_lines(5).as_bytes());
    let o = publish_stdin(&["--queue", &q], bom);
    assert!(o.status.success(), "{}", stderr_of(&o));
    assert!(stdout_of(&o).contains("5 message(s): 5 sent, 0 failed"));
    b.wait_count(&q, 5, Duration::from_secs(5)).await;
    assert_eq!(
        bodies(&b.drain(&q).await),
        (0..5).map(|i| format!("p{i:03}")).collect::<Vec<_>>()
    );
    b.cleanup().await;
}

/// A captured message dlqd (and a quorum queue) handled before: by default its replay
/// is a fresh attempt (retry count, earlier edit record, rule, action and delivery
/// count gone; the death history and where it came from kept); `--keep-marks` keeps
/// them as captured.
#[tokio::test]
async fn a_replay_is_a_fresh_attempt_unless_marks_are_kept() {
    let mut b = Broker::connect().await;
    let q = unique("fresh");
    b.queue(&q, &[]).await;
    let dir = tempfile::tempdir().expect("tempdir");
    let cap = dir.path().join("handled.jsonl");
    std::fs::write(
        &cap,
        r#"{"properties":{"message_id":"h1","headers":{"x-dlqd-retries":5,"x-dlqd-edited":"set=old","x-delivery-count":7,"x-acquired-count":8,"x-dlqd-rule":3,"x-dlqd-action":"forward","x-dlqd-original-queue":"orders","x-dlqd-reason":"rejected","x-dlqd-user-id":"bob","x-death":[{"queue":"orders","reason":"rejected","count":1,"exchange":"","routing-keys":["orders"]}]}},"body":"h1"}
"#,
    )
    .unwrap();
    let capf = cap.to_str().unwrap();
    let fresh = publish(&[capf, "--queue", &q]);
    assert!(fresh.status.success(), "{}", stderr_of(&fresh));
    let kept = publish(&[capf, "--queue", &q, "--keep-marks", "--set-header", "new=1"]);
    assert!(kept.status.success(), "{}", stderr_of(&kept));
    b.wait_count(&q, 2, Duration::from_secs(5)).await;
    let got = b.drain(&q).await;
    let (fresh, kept) = (&got[0], &got[1]);
    for k in [
        "x-dlqd-retries",
        "x-dlqd-edited",
        "x-delivery-count",
        "x-acquired-count",
        "x-dlqd-rule",
        "x-dlqd-action",
    ] {
        assert!(fresh.header(k).is_none(), "{k} removed");
    }
    for g in [fresh, kept] {
        assert_eq!(g.death_queue().as_deref(), Some("orders"));
        assert_eq!(
            g.header_str("x-dlqd-original-queue").as_deref(),
            Some("orders")
        );
        assert_eq!(g.header_str("x-dlqd-reason").as_deref(), Some("rejected"));
        assert_eq!(g.header_str("x-dlqd-user-id").as_deref(), Some("bob"));
    }
    assert_eq!(kept.header_i64("x-dlqd-retries"), Some(5));
    assert_eq!(kept.header_i64("x-delivery-count"), Some(7));
    assert_eq!(kept.header_i64("x-acquired-count"), Some(8));
    assert_eq!(kept.header_i64("x-dlqd-rule"), Some(3));
    assert_eq!(kept.header_str("x-dlqd-action").as_deref(), Some("forward"));
    // An edit now replaces the old record.
    assert_eq!(kept.header_str("x-dlqd-edited").as_deref(), Some("set=new"));
    b.cleanup().await;
}

/// `--skip 3 --max 4` over 10: the dry run shows indexes 3 to 6, the publish sends
/// exactly those, and each audit line carries its index.
#[tokio::test]
async fn skip_and_max_take_a_window_and_the_audit_names_each_index() {
    let mut b = Broker::connect().await;
    let q = unique("window");
    b.queue(&q, &[]).await;
    let dir = tempfile::tempdir().expect("tempdir");
    let cap = dir.path().join("hand.jsonl");
    std::fs::write(&cap, hand_lines(10)).unwrap();
    let capf = cap.to_str().unwrap();
    let dry = publish(&[
        capf,
        "--queue",
        &q,
        "--skip",
        "3",
        "--max",
        "4",
        "--dry-run",
    ]);
    assert!(dry.status.success(), "{}", stderr_of(&dry));
    let indexes: Vec<String> = stdout_of(&dry)
        .lines()
        .filter(|l| l.contains(&format!("queue {q}")))
        .map(|l| l.split_whitespace().next().unwrap().to_string())
        .collect();
    assert_eq!(indexes, ["3", "4", "5", "6"], "{}", stdout_of(&dry));
    let audit = dir.path().join("audit.jsonl");
    let o = publish(&[
        capf,
        "--queue",
        &q,
        "--skip",
        "3",
        "--max",
        "4",
        "--audit",
        audit.to_str().unwrap(),
    ]);
    assert!(o.status.success(), "{}", stderr_of(&o));
    assert!(stdout_of(&o).contains("4 message(s): 4 sent, 0 failed"));
    b.wait_count(&q, 4, Duration::from_secs(5)).await;
    assert_eq!(bodies(&b.drain(&q).await), ["p003", "p004", "p005", "p006"]);
    let lines = audit_lines(&audit);
    let idx: Vec<u64> = lines.iter().map(|l| l["index"].as_u64().unwrap()).collect();
    assert_eq!(idx, [3, 4, 5, 6]);
    assert_eq!(lines[0]["message_id"], "p003");
    // Skipping everything sends nothing, and says so.
    let o = publish(&[capf, "--queue", &q, "--skip", "10"]);
    assert!(o.status.success(), "{}", stderr_of(&o));
    assert!(stderr_of(&o).contains("skips all 10"), "{}", stderr_of(&o));
    assert_eq!(b.count(&q).await, 0);
    b.cleanup().await;
}

/// The connection cut mid-publish (a proxy between dlqd and the broker): exit 1, and the
/// error says how many were confirmed, how many were never tried, and the `--skip` to
/// resume with; resuming from the first publish lost with the connection, every one of
/// the 300 arrives (some perhaps twice, none missing).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lost_connection_says_how_to_resume() {
    use std::process::{Command, Stdio};
    let mut b = Broker::connect().await;
    let q = unique("resume");
    b.queue(&q, &[]).await;
    let dir = tempfile::tempdir().expect("tempdir");
    let cap = dir.path().join("hand.jsonl");
    std::fs::write(&cap, hand_lines(300)).unwrap();
    let capf = cap.to_str().unwrap();
    let hostport = url()
        .split('@')
        .nth(1)
        .and_then(|r| r.split('/').next())
        .expect("host:port in the test URL");
    let upstream = tokio::net::lookup_host(hostport)
        .await
        .expect("resolve")
        .next()
        .expect("an address");
    let proxy = Proxy::start(upstream).await;
    let child = Command::new(env!("CARGO_BIN_EXE_dlqd"))
        .args(["publish", capf, "--queue", &q, "--rate", "50/s"])
        .env_remove("DLQD_LOG")
        .env("DLQD_URL", proxy.url())
        .env("NO_COLOR", "1")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn dlqd");
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    while b.count(&q).await < 30 {
        assert!(std::time::Instant::now() < deadline, "30 sent within 20s");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(proxy.cut() >= 1, "dlqd's connection cut");
    let o = tokio::task::spawn_blocking(move || child.wait_with_output())
        .await
        .expect("join")
        .expect("dlqd output");
    let err = stderr_of(&o);
    assert_eq!(o.status.code(), Some(1), "{err}");
    let at = err.find("were not tried (resume with --skip ").expect(&err);
    let next: u64 = err[at..]
        .trim_start_matches("were not tried (resume with --skip ")
        .split(|c: char| !c.is_ascii_digit())
        .next()
        .unwrap()
        .parse()
        .expect("a number");
    assert!((30..300).contains(&next), "{err}");
    // The first publish lost with the connection, if any was.
    let from = err
        .split("to be sure none is missing, resume with --skip ")
        .nth(1)
        .map(|r| {
            r.split(|c: char| !c.is_ascii_digit())
                .next()
                .unwrap()
                .parse::<u64>()
                .unwrap()
        })
        .unwrap_or(next);
    assert!(from <= next, "{err}");
    let resume = publish(&[capf, "--queue", &q, "--skip", &from.to_string()]);
    assert!(resume.status.success(), "{}", stderr_of(&resume));
    assert!(
        stdout_of(&resume).contains(&format!("{} message(s): {} sent", 300 - from, 300 - from)),
        "{}",
        stdout_of(&resume)
    );
    b.wait_count(&q, 300, Duration::from_secs(10)).await;
    let got = bodies(&b.drain(&q).await);
    let distinct: std::collections::BTreeSet<&String> = got.iter().collect();
    assert_eq!(distinct.len(), 300, "none missing");
    assert!(
        got.len() as u64 <= 300 + (next - from),
        "duplicates only from the lost ones"
    );
    b.cleanup().await;
}

/// Without a broker: bad --set-header types and the broker's headers are refused; an
/// empty capture says so (exit 0); a dry run shows an empty routing key as `''`.
#[test]
fn edits_empty_captures_and_empty_keys_from_the_command_line() {
    let dir = tempfile::tempdir().expect("tempdir");
    let cap = dir.path().join("one.jsonl");
    std::fs::write(&cap, hand_lines(1)).unwrap();
    let capf = cap.to_str().unwrap();
    let nowhere = "amqp://guest:guest@127.0.0.1:1/%2f";
    let run = |args: &[&str]| {
        let mut all = vec!["publish"];
        all.extend_from_slice(args);
        dlqd(&all, nowhere, T)
    };
    let empty = dir.path().join("empty.jsonl");
    std::fs::write(&empty, "\n").unwrap();
    let empty = empty.to_str().unwrap();
    // (arguments, exit status, where to look, what it must say)
    let cases: [(&[&str], i32, &str, &str); 5] = [
        (
            &[
                capf,
                "--queue",
                "q",
                "--set-header",
                "retries:Int64=5",
                "--dry-run",
            ],
            1,
            "stderr",
            "unknown type `Int64`",
        ),
        (
            &[
                capf,
                "--queue",
                "q",
                "--set-header",
                "x-death=[]",
                "--dry-run",
            ],
            1,
            "stderr",
            "help: --unset-header",
        ),
        (&[empty, "--queue", "q"], 0, "stderr", "no messages"),
        (
            &["-", "-", "--queue", "q", "--dry-run"],
            1,
            "stderr",
            "more than once",
        ),
        (
            &[
                capf,
                "--exchange",
                "amq.direct",
                "--routing-key",
                "",
                "--dry-run",
            ],
            0,
            "stdout",
            "exchange amq.direct, key ''",
        ),
    ];
    for (args, status, stream, needle) in cases {
        let o = run(args);
        let text = if stream == "stdout" {
            stdout_of(&o)
        } else {
            stderr_of(&o)
        };
        assert_eq!(o.status.code(), Some(status), "{args:?}: {}", stderr_of(&o));
        assert!(text.contains(needle), "{args:?}: {text}");
    }
    // Unsetting a broker header is allowed.
    let o = run(&[
        capf,
        "--queue",
        "q",
        "--unset-header",
        "x-death",
        "--dry-run",
    ]);
    assert!(o.status.success(), "{}", stderr_of(&o));
}
