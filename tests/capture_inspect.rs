//! `dlqd capture` and `dlqd inspect` against the real broker: dead letters made the
//! real ways (reject, TTL expiry, max-length), captured and inspected without being
//! consumed: the queue holds the same messages in the same order afterwards.

mod common_inspect;
mod support;

use std::process::Output;
use std::time::{Duration, SystemTime};

use common_inspect::{Lab, Seen, url};
use dlqd::broker::browse::{BrowseError, Method, browse};
use dlqd::dead_letter::DeadLetter;
use dlqd::message::{Message, Value};
use lapin::types::AMQPValue;

/// Run the dlqd binary (off the runtime's thread: the test's own connection must keep
/// up its heartbeats meanwhile), against the test broker, within two minutes.
async fn dlqd(args: &[&str]) -> Output {
    let args: Vec<String> = args.iter().map(|s| s.to_string()).collect();
    tokio::task::spawn_blocking(move || {
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        support::dlqd::dlqd_env(
            &args,
            &[("DLQD_URL", url()), ("DLQD_LOG", "info")],
            Duration::from_secs(120),
        )
    })
    .await
    .expect("dlqd runner")
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

fn now_secs() -> u64 {
    SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .expect("clock after 1970")
        .as_secs()
}

fn seen(m: &Message) -> Seen {
    Seen {
        message_id: m.properties.message_id.clone(),
        body: m.body.clone(),
    }
}

/// Publish `n` messages m0.. straight into a queue.
async fn fill(lab: &Lab, queue: &str, n: usize) -> Vec<Seen> {
    let mut want = Vec::new();
    for i in 0..n {
        let body = format!("body {i}").into_bytes();
        lab.publish(queue, &format!("m{i}"), &body, i % 2 == 0)
            .await;
        want.push(Seen {
            message_id: Some(format!("m{i}")),
            body,
        });
    }
    want
}

async fn browse_ids(queue: &str, limit: Option<u64>) -> (Vec<Seen>, dlqd::broker::browse::Browsed) {
    let mut got = Vec::new();
    let done = browse(&[url().to_string()], queue, limit, |m| {
        got.push(seen(&m));
        Ok(())
    })
    .await
    .expect("browse");
    (got, done)
}

#[tokio::test]
async fn browse_leaves_a_classic_queue_as_it_was() {
    let mut lab = Lab::new("dlqd.test.browse", false).await;
    let q = lab.plain_queue("dlqd.test.browse.classic").await;
    let want = fill(&lab, &q, 20).await;

    let (first, done) = browse_ids(&q, Some(7)).await;
    assert_eq!(first, want[..7]);
    assert_eq!(
        (done.depth_at_start, done.visited, done.method, done.intact),
        (20, 7, Method::Return, true)
    );
    lab.wait_depth(&q, 20).await;

    let (all, done) = browse_ids(&q, None).await;
    assert_eq!(all, want);
    assert_eq!((done.visited, done.fetched), (20, 20));
    lab.wait_depth(&q, 20).await;

    assert_eq!(lab.drain(&q).await, want, "the queue changed");
    lab.cleanup().await;
}

#[tokio::test]
async fn browse_takes_many_batches_and_keeps_the_order() {
    // Many prefetch windows (256 messages each), and a limit that ends inside one.
    let mut lab = Lab::new("dlqd.test.browse.many", false).await;
    let q = lab.plain_queue("dlqd.test.browse.many.q").await;
    let want = lab.publish_many(&q, 2345).await;
    lab.wait_depth(&q, 2345).await;

    let (first, done) = browse_ids(&q, Some(1500)).await;
    assert_eq!(first, want[..1500]);
    assert_eq!((done.visited, done.fetched), (1500, 1500));
    let (all, done) = browse_ids(&q, None).await;
    assert_eq!(all, want);
    assert_eq!((done.visited, done.fetched), (2345, 2345));

    lab.wait_depth(&q, 2345).await;
    assert_eq!(lab.drain(&q).await, want, "the queue changed");
    lab.cleanup().await;
}

#[tokio::test]
async fn browse_works_while_another_consumer_is_the_single_active_one() {
    // A single-active-consumer queue delivers only to its active consumer: the browse
    // cannot use a consumer of its own and must still see every message.
    let mut lab = Lab::new("dlqd.test.browse.sac", false).await;
    let q = lab
        .work_queue(
            "dlqd.test.browse.sac.q",
            &[("x-single-active-consumer", AMQPValue::Boolean(true))],
        )
        .await;
    let want = fill(&lab, &q, 5).await;
    // The active consumer: it takes m0 and, with a prefetch of 1, holds it
    // unacknowledged, so nothing else is delivered to anyone.
    let holder = lab.b.conn.create_channel().await.expect("channel");
    holder
        .basic_qos(1, lapin::options::BasicQosOptions::default())
        .await
        .expect("qos");
    let mut active = holder
        .basic_consume(
            q.as_str().into(),
            "active".into(),
            lapin::options::BasicConsumeOptions::default(),
            lapin::types::FieldTable::default(),
        )
        .await
        .expect("consume");
    let held = futures_lite::StreamExt::next(&mut active)
        .await
        .expect("consumer open")
        .expect("delivery");
    assert_eq!(
        held.properties.message_id().as_ref().map(|s| s.as_str()),
        Some("m0")
    );
    lab.wait_depth(&q, 4).await;

    let (got, done) = browse_ids(&q, None).await;
    assert_eq!(got, want[1..]);
    assert_eq!((done.depth_at_start, done.visited), (4, 4));

    holder.close(200, "done".into()).await.expect("close");
    lab.wait_depth(&q, 5).await;
    assert_eq!(lab.drain(&q).await, want, "the queue changed");
    lab.cleanup().await;
}

#[tokio::test]
async fn browse_keeps_the_order_of_a_quorum_queue_with_a_limit() {
    // Where returns count toward the delivery limit (3.x, 4.0-4.2) the browse moves the
    // whole queue round (all 20 taken, 5 visited); on 4.3+ it hands the 5 back.
    let lab = Lab::new("dlqd.test.browse.quorum", true).await;
    let q = lab.dlq.clone();
    let want = fill(&lab, &q, 20).await;

    let (first, done) = browse_ids(&q, Some(5)).await;
    assert_eq!(first, want[..5]);
    match done.method {
        Method::Move => assert_eq!((done.visited, done.fetched), (5, 20), "{done:?}"),
        Method::Return => assert_eq!((done.visited, done.fetched), (5, 5), "{done:?}"),
    }
    assert!(done.intact, "{done:?}");
    lab.wait_depth(&q, 20).await;

    let after = lab.drain_counted(&q).await;
    let ids: Vec<Seen> = after.iter().map(|(s, _)| s.clone()).collect();
    assert_eq!(ids, want, "the quorum queue changed");
    for (s, count) in &after {
        assert!(
            count.unwrap_or(0) == 0,
            "{s:?} was delivered {count:?} times before: the browse counted toward its limit"
        );
    }
    lab.cleanup().await;
}

#[tokio::test]
async fn browse_of_a_missing_queue_says_so() {
    let name = common_inspect::unique("dlqd.test.missing");
    let err = browse(&[url().to_string()], &name, None, |_| Ok(()))
        .await
        .expect_err("no such queue");
    assert!(matches!(err, BrowseError::NotFound { .. }), "{err:?}");
    assert!(err.to_string().contains(&name), "{err}");
    assert!(!err.to_string().contains("guest:guest"), "{err}");

    let out = dlqd(&["capture", "--queue", &name]).await;
    assert_eq!(out.status.code(), Some(1));
    let stderr = text(&out.stderr);
    assert!(stderr.contains("does not exist"), "{stderr}");
    assert!(out.stdout.is_empty());
}

/// What the test knows about each dead letter it made.
#[derive(Debug, Clone)]
struct Made {
    id: String,
    body: Vec<u8>,
    queue: String,
    reason: &'static str,
    persistent: bool,
}

/// Dead letters made the real ways, in the order they reach the DLQ:
/// two rejected, two expired (queue TTL), two dropped by max-length.
async fn make_dead_letters(lab: &mut Lab) -> Vec<Made> {
    let work = lab.work_queue("dlqd.test.work", &[]).await;
    let ttl = lab
        .work_queue(
            "dlqd.test.ttl",
            &[("x-message-ttl", AMQPValue::LongInt(50))],
        )
        .await;
    let maxlen = lab
        .work_queue(
            "dlqd.test.maxlen",
            &[("x-max-length", AMQPValue::LongInt(1))],
        )
        .await;
    let dlq = lab.dlq.clone();
    let mut made = Vec::new();
    let mut add = |id: &str, body: &[u8], queue: &str, reason, persistent| {
        made.push(Made {
            id: id.to_string(),
            body: body.to_vec(),
            queue: queue.to_string(),
            reason,
            persistent,
        })
    };

    lab.publish(&work, "r1", b"rejected one", true).await;
    lab.publish(&work, "r2", &[0xff, 0x00, 0x01, 0x80], false)
        .await;
    lab.reject(&work, 2).await;
    lab.wait_depth(&dlq, 2).await;
    add("r1", b"rejected one", &work, "rejected", true);
    add("r2", &[0xff, 0x00, 0x01, 0x80], &work, "rejected", false);

    lab.publish(&ttl, "t1", b"expired one", true).await;
    lab.publish(&ttl, "t2", &vec![b'x'; 2000], true).await;
    lab.wait_depth(&dlq, 4).await;
    add("t1", b"expired one", &ttl, "expired", true);
    add("t2", &vec![b'x'; 2000], &ttl, "expired", true);

    for (id, body) in [("m1", "full one"), ("m2", "full two"), ("m3", "kept")] {
        lab.publish(&maxlen, id, body.as_bytes(), false).await;
    }
    lab.wait_depth(&dlq, 6).await;
    add("m1", b"full one", &maxlen, "maxlen", false);
    add("m2", b"full two", &maxlen, "maxlen", false);
    made
}

fn x_death(m: &Message) -> Vec<dlqd::message::FieldTable> {
    match m.header("x-death") {
        Some(Value::Array(v)) => v
            .iter()
            .map(|e| match e {
                Value::Table(t) => t.clone(),
                other => panic!("x-death entry is not a table: {other:?}"),
            })
            .collect(),
        other => panic!("no x-death array: {other:?}"),
    }
}

#[tokio::test]
async fn capture_copies_real_dead_letters_without_consuming_them() {
    let start = now_secs();
    let mut lab = Lab::new("dlqd.test.capture", false).await;
    let made = make_dead_letters(&mut lab).await;
    let dlq = lab.dlq.clone();
    let dir = tempfile::tempdir().expect("tempdir");
    let file = dir.path().join("dlq.jsonl");

    let out = dlqd(&[
        "capture",
        "--queue",
        &dlq,
        "--out",
        file.to_str().expect("utf-8 path"),
    ])
    .await;
    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    assert!(stderr.contains("captured 6 of 6 message(s)"), "{stderr}");
    assert!(out.stdout.is_empty(), "data went to the file, not stdout");

    let capture = std::fs::read_to_string(&file).expect("capture file");
    let messages: Vec<Message> = capture
        .lines()
        .enumerate()
        .map(|(i, l)| dlqd::capture::from_line(l, i as u64 + 1).expect("a valid capture line"))
        .collect();
    assert_eq!(messages.len(), made.len(), "{capture}");
    for (m, want) in messages.iter().zip(&made) {
        assert_eq!(m.properties.message_id.as_deref(), Some(want.id.as_str()));
        assert_eq!(m.body, want.body, "{}", want.id);
        assert_eq!(m.exchange, lab.dlx, "{}", want.id);
        let deaths = x_death(m);
        assert_eq!(deaths.len(), 1, "{}: {deaths:?}", want.id);
        let d = &deaths[0];
        let s = |k: &str| d.get(k).and_then(Value::as_str_lossy);
        assert_eq!(
            s("queue").as_deref(),
            Some(want.queue.as_str()),
            "{}",
            want.id
        );
        assert_eq!(s("reason").as_deref(), Some(want.reason), "{}", want.id);
        assert_eq!(s("exchange").as_deref(), Some(""), "{}", want.id);
        assert_eq!(
            d.get("count").and_then(Value::as_u64),
            Some(1),
            "{}",
            want.id
        );
        assert_eq!(
            d.get("routing-keys"),
            Some(&Value::Array(vec![Value::string(want.queue.clone())])),
            "{}",
            want.id
        );
        match d.get("time") {
            Some(Value::Timestamp(t)) => assert!(
                (start..=now_secs()).contains(t),
                "{}: death time {t} not in [{start}, now]",
                want.id
            ),
            other => panic!("{}: x-death time is {other:?}, not a timestamp", want.id),
        }
        let dead = DeadLetter::new(m);
        assert_eq!(dead.destq, want.queue, "{}", want.id);
        assert_eq!(dead.reason, want.reason, "{}", want.id);
        assert_eq!(dead.persistent, want.persistent, "{}", want.id);
        assert_eq!(
            m.header("test-header").and_then(Value::as_str_lossy),
            Some(format!("h-{}", want.id))
        );
    }

    // The DLQ still holds the same messages, in the same order.
    lab.wait_depth(&dlq, 6).await;
    let after = lab.drain(&dlq).await;
    let want: Vec<Seen> = made
        .iter()
        .map(|m| Seen {
            message_id: Some(m.id.clone()),
            body: m.body.clone(),
        })
        .collect();
    assert_eq!(after, want, "the DLQ changed");
    lab.cleanup().await;
}

#[tokio::test]
async fn capture_with_a_limit_copies_the_first_messages_to_stdout() {
    let mut lab = Lab::new("dlqd.test.capture.limit", false).await;
    let made = make_dead_letters(&mut lab).await;
    let dlq = lab.dlq.clone();

    let out = dlqd(&["capture", "--queue", &dlq, "--limit", "3"]).await;
    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    assert!(stderr.contains("captured 3 of 6 message(s)"), "{stderr}");
    let ids: Vec<Option<String>> = text(&out.stdout)
        .lines()
        .enumerate()
        .map(|(i, l)| {
            dlqd::capture::from_line(l, i as u64 + 1)
                .expect("a valid capture line")
                .properties
                .message_id
        })
        .collect();
    assert_eq!(
        ids,
        [Some("r1".into()), Some("r2".into()), Some("t1".into())]
    );

    lab.wait_depth(&dlq, 6).await;
    let after: Vec<Option<String>> = lab
        .drain(&dlq)
        .await
        .into_iter()
        .map(|s| s.message_id)
        .collect();
    let want: Vec<Option<String>> = made.iter().map(|m| Some(m.id.clone())).collect();
    assert_eq!(after, want, "the DLQ changed");
    lab.cleanup().await;
}

/// The summary rows, as (original queue, reason, persistent, count).
fn summary_rows(stdout: &str) -> Vec<(String, String, String, u64)> {
    stdout
        .lines()
        .filter_map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            match f.as_slice() {
                [q, r, p, n] if *p == "yes" || *p == "no" => {
                    Some((q.to_string(), r.to_string(), p.to_string(), n.parse().ok()?))
                }
                _ => None,
            }
        })
        .collect()
}

#[tokio::test]
async fn inspect_counts_real_dead_letters_without_consuming_them() {
    let mut lab = Lab::new("dlqd.test.inspect", false).await;
    let made = make_dead_letters(&mut lab).await;
    let dlq = lab.dlq.clone();
    let (work, ttl, maxlen) = (&made[0].queue, &made[2].queue, &made[4].queue);

    let out = dlqd(&["inspect", "--queue", &dlq]).await;
    let stdout = text(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert!(
        stdout.starts_with(&format!("queue {dlq}: 6 messages, ")),
        "{stdout}"
    );
    let mut want = vec![
        (work.clone(), "rejected".to_string(), "no".to_string(), 1),
        (work.clone(), "rejected".to_string(), "yes".to_string(), 1),
        (ttl.clone(), "expired".to_string(), "yes".to_string(), 2),
        (maxlen.clone(), "maxlen".to_string(), "no".to_string(), 2),
    ];
    want.sort();
    assert_eq!(summary_rows(&stdout), want, "{stdout}");
    assert!(stdout.contains("died: oldest "), "{stdout}");
    assert!(stdout.contains("size: p50 "), "{stdout}");
    assert!(
        stdout.contains("max 2000 B") || stdout.contains("max 2.0 KiB"),
        "{stdout}"
    );
    assert!(
        !stdout.contains("rejected one"),
        "a body was shown: {stdout}"
    );

    let out = dlqd(&["inspect", "--queue", &dlq, "--messages"]).await;
    let stdout = text(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let listed: Vec<(String, String, String)> = stdout
        .lines()
        .skip(1)
        .take_while(|l| !l.is_empty())
        .map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            (f[1].to_string(), f[2].to_string(), f[3].to_string())
        })
        .collect();
    let want: Vec<(String, String, String)> = made
        .iter()
        .map(|m| (m.id.clone(), m.queue.clone(), m.reason.to_string()))
        .collect();
    assert_eq!(listed, want, "{stdout}");
    assert!(
        !stdout.contains("rejected one"),
        "a body was shown: {stdout}"
    );

    let out = dlqd(&["inspect", "--queue", &dlq, "--messages", "--show-body"]).await;
    let stdout = text(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert!(stdout.contains("rejected one"), "{stdout}");
    assert!(stdout.contains(r"(not UTF-8) \xff\x00\x01\x80"), "{stdout}");

    lab.wait_depth(&dlq, 6).await;
    let after: Vec<Option<String>> = lab
        .drain(&dlq)
        .await
        .into_iter()
        .map(|s| s.message_id)
        .collect();
    let want: Vec<Option<String>> = made.iter().map(|m| Some(m.id.clone())).collect();
    assert_eq!(after, want, "the DLQ changed");
    lab.cleanup().await;
}

#[tokio::test]
async fn a_capture_that_cannot_be_written_leaves_the_queue_as_it_was() {
    // /dev/full fails every write: the capture stops part-way through the queue.
    let mut lab = Lab::new("dlqd.test.capture.full", false).await;
    let q = lab.plain_queue("dlqd.test.capture.full.q").await;
    let mut want = Vec::new();
    for i in 0..50 {
        let body = vec![b'a' + (i % 26) as u8; 1024];
        lab.publish(&q, &format!("m{i}"), &body, true).await;
        want.push(Seen {
            message_id: Some(format!("m{i}")),
            body,
        });
    }

    let out = dlqd(&["capture", "--queue", &q, "--out", "/dev/full"]).await;
    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains(&format!("capture of queue {q:?} failed")),
        "{stderr}"
    );
    assert!(stderr.contains("No space left on device"), "{stderr}");

    let out = dlqd(&[
        "capture",
        "--queue",
        &q,
        "--out",
        "/nonexistent-dir/x.jsonl",
    ])
    .await;
    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("cannot create capture file /nonexistent-dir/x.jsonl"),
        "{stderr}"
    );

    lab.wait_depth(&q, 50).await;
    assert_eq!(lab.drain(&q).await, want, "the queue changed");
    lab.cleanup().await;
}

#[tokio::test]
async fn bad_arguments_and_unreachable_brokers_are_clear_errors() {
    let long = "q".repeat(300);
    let out = dlqd(&["inspect", "--queue", &long]).await;
    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("queue name is 300 bytes long; AMQP allows at most 255"),
        "{stderr}"
    );

    let out = dlqd(&[
        "capture",
        "--queue",
        "q",
        "--url",
        "amqp://u:hunter2@127.0.0.1:1/%2f",
    ])
    .await;
    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("cannot connect to amqp://u:***@127.0.0.1:1/%2f"),
        "{stderr}"
    );
    assert!(!stderr.contains("hunter2"), "{stderr}");
    assert!(out.stdout.is_empty());
}

#[tokio::test]
async fn an_empty_queue_and_a_zero_limit() {
    let mut lab = Lab::new("dlqd.test.empty", false).await;
    let q = lab.plain_queue("dlqd.test.empty.q").await;

    let out = dlqd(&["inspect", "--queue", &q, "--messages"]).await;
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert_eq!(
        text(&out.stdout),
        format!("queue {q}: 0 messages, 0 B of bodies\n")
    );

    let want = fill(&lab, &q, 3).await;
    let out = dlqd(&["capture", "--queue", &q, "--limit", "0"]).await;
    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    assert!(out.stdout.is_empty());
    assert!(stderr.contains("captured 0 of 3 message(s)"), "{stderr}");
    assert_eq!(lab.drain(&q).await, want);
    lab.cleanup().await;
}

#[tokio::test]
async fn capture_of_a_quorum_dlq_with_a_limit_keeps_its_order() {
    let mut lab = Lab::new("dlqd.test.capture.quorum", true).await;
    let made = make_dead_letters(&mut lab).await;
    let dlq = lab.dlq.clone();

    let out = dlqd(&["capture", "--queue", &dlq, "--limit", "2"]).await;
    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    assert!(stderr.contains("captured 2 of 6 message(s)"), "{stderr}");
    assert!(
        stderr.contains("checked: the queue holds 6 message(s) again"),
        "{stderr}"
    );
    let reasons: Vec<String> = text(&out.stdout)
        .lines()
        .enumerate()
        .map(|(i, l)| {
            let m = dlqd::capture::from_line(l, i as u64 + 1).expect("a valid capture line");
            DeadLetter::new(&m).reason.into_owned()
        })
        .collect();
    assert_eq!(reasons, ["rejected", "rejected"]);

    lab.wait_depth(&dlq, 6).await;
    let after: Vec<Option<String>> = lab
        .drain(&dlq)
        .await
        .into_iter()
        .map(|s| s.message_id)
        .collect();
    let want: Vec<Option<String>> = made.iter().map(|m| Some(m.id.clone())).collect();
    assert_eq!(after, want, "the quorum DLQ changed");
    lab.cleanup().await;
}

/// Seen on RabbitMQ 4.0.5: a quorum DLQ with default settings lost all its messages to
/// the 21st `dlqd capture` (each browse was a return, and 4.0 drops a message returned
/// past its delivery limit of 20), and one with `x-delivery-limit: 3` to two rounds of
/// capture + inspect, while capture printed "the queue was left as it was". Every
/// round here must leave every message, in order, with no delivery counted against it.
#[tokio::test]
async fn repeated_captures_never_walk_a_quorum_dlq_to_its_delivery_limit() {
    let default = Lab::quorum_with_limit("dlqd.test.qlimit.default", None).await;
    let three = Lab::quorum_with_limit("dlqd.test.qlimit.three", Some(3)).await;
    let want_default = fill(&default, &default.dlq, 5).await;
    let want_three = fill(&three, &three.dlq, 5).await;
    for round in 0..25 {
        for (dlq, n) in [(&default.dlq, 5), (&three.dlq, 5)] {
            let capture = dlqd(&["capture", "--queue", dlq]).await;
            let stderr = text(&capture.stderr);
            assert_eq!(capture.status.code(), Some(0), "round {round}: {stderr}");
            assert_eq!(
                text(&capture.stdout).lines().count(),
                n,
                "round {round}: {stderr}"
            );
            assert!(
                stderr.contains(&format!("checked: the queue holds {n} message(s) again")),
                "round {round}: {stderr}"
            );
            let inspect = dlqd(&["inspect", "--queue", dlq]).await;
            let stderr = text(&inspect.stderr);
            assert_eq!(inspect.status.code(), Some(0), "round {round}: {stderr}");
            assert!(
                text(&inspect.stdout).contains(&format!("{n} message")),
                "round {round}: {}",
                text(&inspect.stdout)
            );
        }
    }
    for (lab, want) in [(&default, &want_default), (&three, &want_three)] {
        lab.wait_depth(&lab.dlq, 5).await;
        let after = lab.drain_counted(&lab.dlq).await;
        let ids: Vec<Seen> = after.iter().map(|(s, _)| s.clone()).collect();
        assert_eq!(&ids, want, "{} changed", lab.dlq);
        for (s, count) in &after {
            assert!(
                count.unwrap_or(0) == 0,
                "{s:?} in {} was delivered {count:?} times before",
                lab.dlq
            );
        }
    }
    default.cleanup().await;
    three.cleanup().await;
}
