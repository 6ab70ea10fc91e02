//! Poison and malformed dead letters through the real handler (`dlqd run --once`) on the
//! shared broker: wrongly typed `x-death`, missing or empty headers, non-UTF-8 bodies and
//! header values, a 16 MiB body, a thousand headers, large header values, and headers so
//! close to the connection's frame_max that no copy of the message can be published.
//! Each message is decided on what can be read, the handler keeps going and exits 0, and
//! every message is counted in and out: it ends either forwarded or still on the DLQ.

mod hardening_common;
mod support;

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use hardening_common::*;
use lapin::BasicProperties;
use lapin::types::{AMQPValue, FieldArray, FieldTable};
use support::broker::{Way, work_queue_args};

const SIXTEEN_MIB: usize = 16 * 1024 * 1024;

/// A body whose bytes are not UTF-8 and not all alike, to catch truncation or reordering.
fn patterned_body(len: usize) -> Vec<u8> {
    (0..len)
        .map(|i| (i.wrapping_mul(131) % 251) as u8)
        .collect()
}

fn arr(v: Vec<AMQPValue>) -> AMQPValue {
    AMQPValue::FieldArray(FieldArray::from(v))
}

struct Case {
    id: &'static str,
    headers: Option<FieldTable>,
    body: Vec<u8>,
    /// Where it must end: true = forwarded (REASON(rejected) matched), false = left on the DLQ.
    forwarded: bool,
}

fn rejected() -> (&'static str, AMQPValue) {
    ("x-first-death-reason", text("rejected"))
}

fn cases() -> Vec<Case> {
    let mut thousand = vec![rejected()];
    let names: Vec<String> = (0..1000).map(|i| format!("h{i:04}")).collect();
    for (i, n) in names.iter().enumerate() {
        thousand.push((n.as_str(), text(&format!("value {i}"))));
    }
    let thousand = table(thousand);
    let c = |id, headers: Option<FieldTable>, forwarded| Case {
        id,
        headers,
        body: format!("body of {id}").into_bytes(),
        forwarded,
    };
    vec![
        // x-death of the wrong type: ignored; the top-level x-first-death-reason still counts.
        c(
            "xdeath-string",
            Some(table(vec![("x-death", text("garbage")), rejected()])),
            true,
        ),
        c(
            "xdeath-string-only",
            Some(table(vec![("x-death", text("rejected"))])),
            false,
        ),
        c(
            "xdeath-not-tables",
            Some(table(vec![(
                "x-death",
                arr(vec![
                    AMQPValue::LongInt(1),
                    text("rejected"),
                    AMQPValue::Boolean(true),
                    arr(vec![]),
                ]),
            )])),
            false,
        ),
        c(
            "xdeath-table-not-array",
            Some(table(vec![(
                "x-death",
                AMQPValue::FieldTable(table(vec![("reason", text("rejected"))])),
            )])),
            false,
        ),
        c(
            "xdeath-wrong-field-types",
            Some(table(vec![(
                "x-death",
                arr(vec![AMQPValue::FieldTable(table(vec![
                    ("queue", AMQPValue::LongInt(5)),
                    ("reason", AMQPValue::LongLongInt(1)),
                    ("count", text("many")),
                    ("time", text("yesterday")),
                    ("exchange", arr(vec![])),
                    ("routing-keys", AMQPValue::LongInt(7)),
                ]))]),
            )])),
            false,
        ),
        c(
            "xdeath-wrong-types-but-reason",
            Some(table(vec![(
                "x-death",
                arr(vec![AMQPValue::FieldTable(table(vec![
                    ("queue", AMQPValue::LongInt(5)),
                    ("reason", text("rejected")),
                    ("count", text("x")),
                    ("time", AMQPValue::Boolean(false)),
                    ("routing-keys", text("single")),
                ]))]),
            )])),
            true,
        ),
        c("no-headers", None, false),
        c("empty-headers", Some(FieldTable::default()), false),
        Case {
            id: "non-utf8-body",
            headers: Some(table(vec![rejected()])),
            body: vec![0xff, 0xfe, 0x00, 0x80, 0xc3, 0x28],
            forwarded: true,
        },
        c(
            "non-utf8-reason",
            Some(table(vec![(
                "x-first-death-reason",
                bytes(b"rej\xffected"),
            )])),
            false,
        ),
        c(
            "non-utf8-header",
            Some(table(vec![
                rejected(),
                ("blob", bytes(&[0xc3, 0x28, 0xff, 0x00])),
            ])),
            true,
        ),
        c(
            "dlqd-headers-garbage",
            Some(table(vec![
                rejected(),
                ("x-dlqd-retries", text("lots")),
                ("x-dlqd-examined", text("yesterday")),
                ("x-dlqd-pass", arr(vec![AMQPValue::Void])),
            ])),
            true,
        ),
        Case {
            id: "body-16MiB",
            headers: Some(table(vec![rejected()])),
            body: patterned_body(SIXTEEN_MIB),
            forwarded: true,
        },
        c("thousand-headers", Some(thousand), true),
        c(
            "header-100KiB",
            Some(table(vec![
                rejected(),
                ("big", text(&"v".repeat(100 * 1024))),
            ])),
            true,
        ),
    ]
}

/// A real dead letter (rejected by a consumer) mixed in with the poison: `x-death` as the
/// broker writes it.
async fn reject_one_into(b: &mut Broker, dlq: &str, id: &str) -> String {
    let work = unique("poison.work");
    b.queue(&work, &work_queue_args(Way::Reject, dlq)).await;
    b.dead_letter(
        &work,
        dlq,
        Way::Reject,
        &[(b"really rejected".to_vec(), props(id))],
    )
    .await;
    work
}

fn run_once(dlq: &str, fwd: &str, limit: Duration) -> std::process::Output {
    let rule = format!("REASON(rejected) ACTION(FWD) FWDQ({fwd})");
    dlqd(
        &[
            "run",
            "--once",
            "--queue",
            dlq,
            "--rule",
            &rule,
            "--rule",
            "ACTION(IGNORE)",
        ],
        url(),
        limit,
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn poison_messages_are_decided_on_what_can_be_read_and_none_is_lost() {
    let mut b = Broker::shared().await;
    let dlq = unique("poison.dlq");
    let fwd = unique("poison.fwd");
    b.queue_with(&dlq, FieldTable::default()).await;
    b.queue_with(&fwd, FieldTable::default()).await;

    let cases = cases();
    let mut sent: BTreeMap<String, (bool, Vec<u8>)> = BTreeMap::new();
    for (i, case) in cases.iter().enumerate() {
        let mut p = props(case.id);
        if let Some(h) = &case.headers {
            p = p.with_headers(h.clone());
        }
        b.publish(&dlq, &case.body, p).await;
        sent.insert(case.id.to_string(), (case.forwarded, case.body.clone()));
        if i == cases.len() / 2 {
            reject_one_into(&mut b, &dlq, "real-rejected").await;
            sent.insert("real-rejected".into(), (true, b"really rejected".to_vec()));
        }
    }
    assert_eq!(b.count(&dlq).await as usize, sent.len(), "all sent");

    let (d2, f2) = (dlq.clone(), fwd.clone());
    let out = tokio::task::spawn_blocking(move || run_once(&d2, &f2, Duration::from_secs(120)))
        .await
        .expect("join");
    let log = stderr_of(&out);
    assert!(
        out.status.success(),
        "dlqd failed: {}\n{}",
        out.status,
        tail(&log, 4000)
    );
    assert!(!log.contains("panicked"), "{}", tail(&log, 4000));

    let forwarded = b.drain(&fwd).await;
    let left = b.drain(&dlq).await;
    // Counted in and out: every message once, nothing else.
    assert_eq!(
        forwarded.len() + left.len(),
        sent.len(),
        "forwarded {:?} left {:?}",
        forwarded.iter().map(Got::id).collect::<Vec<_>>(),
        left.iter().map(Got::id).collect::<Vec<_>>()
    );
    let fwd_ids: BTreeSet<String> = forwarded.iter().map(Got::id).collect();
    let left_ids: BTreeSet<String> = left.iter().map(Got::id).collect();
    let want_fwd: BTreeSet<String> = sent
        .iter()
        .filter(|(_, (f, _))| *f)
        .map(|(k, _)| k.clone())
        .collect();
    let want_left: BTreeSet<String> = sent
        .iter()
        .filter(|(_, (f, _))| !*f)
        .map(|(k, _)| k.clone())
        .collect();
    assert_eq!(fwd_ids, want_fwd, "forwarded");
    assert_eq!(left_ids, want_left, "left on the DLQ");

    // Bodies and odd headers come through byte for byte.
    for m in forwarded.iter().chain(left.iter()) {
        let (_, body) = &sent[&m.id()];
        assert!(
            m.body == *body,
            "{}: body changed ({} bytes)",
            m.id(),
            m.body.len()
        );
    }
    let by_id = |id: &str| {
        forwarded
            .iter()
            .find(|m| m.id() == id)
            .unwrap_or_else(|| panic!("{id} forwarded"))
    };
    assert_eq!(
        by_id("non-utf8-header").header("blob"),
        Some(&bytes(&[0xc3, 0x28, 0xff, 0x00]))
    );
    let thousand = by_id("thousand-headers");
    let n = thousand.properties.headers().as_ref().map_or(0, |h| {
        h.inner()
            .keys()
            .filter(|k| k.as_str().starts_with('h'))
            .count()
    });
    assert_eq!(n, 1000, "all thousand headers kept");
    assert_eq!(
        by_id("header-100KiB").header("big"),
        Some(&text(&"v".repeat(100 * 1024)))
    );
    assert_eq!(
        by_id("real-rejected").header("x-dlqd-reason"),
        Some(&text("rejected"))
    );
    b.cleanup().await;
}

/// Regression: a dead letter whose headers are just under the connection's frame_max
/// (so the broker delivered it) but whose forwarded copy, with dlqd's added headers, is
/// over it. Publishing that copy made the broker close the whole connection (501
/// FRAME_ERROR); the handler reconnected, got the same message first again, and never
/// got past it — nor past any message behind it. Now the copy is refused before it is
/// sent, the message stays on the DLQ (unacknowledged until the pass ends, as no copy
/// with dlqd's marks fits either), the log says why, and the handler goes on.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn headers_near_frame_max_do_not_wedge_the_handler() {
    let mut b = Broker::shared().await;
    let dlq = unique("poison.edge.dlq");
    let fwd = unique("poison.edge.fwd");
    b.queue_with(&dlq, FieldTable::default()).await;
    b.queue_with(&fwd, FieldTable::default()).await;
    // The shared node's frame_max is 131072: a content header may take 131064 bytes.
    // 12 (class, weight, size) + 2 (flags) + 5 ("edge") + 1 (mode) + table:
    // 4 + (1+3+1+4+n) ["big"] + (1+20+1+4+8) [x-first-death-reason].
    let n = 131_064 - (12 + 2 + 5 + 1 + 4 + 9 + 34) - 8;
    let edge = BasicProperties::default()
        .with_message_id("edge".into())
        .with_delivery_mode(2)
        .with_headers(table(vec![("big", text(&"x".repeat(n))), rejected()]));
    b.publish(&dlq, b"edge body", edge).await;
    b.publish(
        &dlq,
        b"after body",
        props("after").with_headers(table(vec![rejected()])),
    )
    .await;

    let (d2, f2) = (dlq.clone(), fwd.clone());
    let out = tokio::task::spawn_blocking(move || run_once(&d2, &f2, Duration::from_secs(60)))
        .await
        .expect("join");
    let log = stderr_of(&out);
    assert_eq!(
        out.status.code(),
        Some(3),
        "the edge message's forward failed: exit 3\n{}",
        tail(&log, 4000)
    );
    assert!(!log.contains("FRAME_ERROR"), "{}", tail(&log, 4000));
    assert!(
        log.contains("frame_max"),
        "the log says why: {}",
        tail(&log, 4000)
    );
    assert!(log.contains("too large"), "{}", tail(&log, 4000));

    let forwarded = b.drain(&fwd).await;
    let left = b.drain(&dlq).await;
    assert_eq!(
        forwarded.iter().map(Got::id).collect::<Vec<_>>(),
        vec!["after"]
    );
    assert_eq!(left.iter().map(Got::id).collect::<Vec<_>>(), vec!["edge"]);
    assert_eq!(left[0].body, b"edge body");
    assert_eq!(left[0].header("big"), Some(&text(&"x".repeat(n))));
    b.cleanup().await;
}

/// Regression: a dead letter carrying an `x-dlqd-examined` mark far in the future (a
/// clock set wrong on another instance, or garbage written by some tool) made the pass
/// end with its next due time in the far future; under WAIT(YES) the handler then slept
/// until then and never handled new dead letters. A mark more than RETRYINT ahead is now
/// ignored: the message is examined as if never seen, and new work goes on.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_future_examined_mark_does_not_stall_the_handler() {
    let mut b = Broker::shared().await;
    let dlq = unique("poison.future.dlq");
    let fwd = unique("poison.future.fwd");
    b.queue_with(&dlq, FieldTable::default()).await;
    b.queue_with(&fwd, FieldTable::default()).await;
    let far = i64::MAX / 2;
    b.publish(
        &dlq,
        b"from the future",
        props("future").with_headers(table(vec![
            ("x-dlqd-examined", AMQPValue::LongLongInt(far)),
            ("x-first-death-reason", text("expired")),
        ])),
    )
    .await;
    let dir = tempfile::tempdir().expect("temp dir");
    let rules = dir.path().join("future.rules");
    std::fs::write(
        &rules,
        format!(
            "INPUTQ({dlq}) RETRYINT(1s) WAIT(YES)\n\
             REASON(rejected) ACTION(FWD) FWDQ({fwd})\n\
             ACTION(IGNORE)\n"
        ),
    )
    .expect("rules file");
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_dlqd"))
        .args(["run", "--rules"])
        .arg(&rules)
        .env("DLQD_URL", url())
        .env("NO_COLOR", "1")
        .env_remove("DLQD_LOG")
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::fs::File::create(dir.path().join("stderr")).expect("log file"))
        .spawn()
        .expect("spawn dlqd");
    // Let it take the future-marked message and come round, then send new work.
    tokio::time::sleep(Duration::from_secs(3)).await;
    b.publish(
        &dlq,
        b"late",
        props("late").with_headers(table(vec![rejected()])),
    )
    .await;
    let mut forwarded = Vec::new();
    for _ in 0..100 {
        forwarded.extend(b.drain(&fwd).await);
        if !forwarded.is_empty() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let _ = std::process::Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status();
    let status = tokio::task::spawn_blocking(move || child.wait())
        .await
        .expect("join")
        .expect("wait");
    let log = std::fs::read_to_string(dir.path().join("stderr")).unwrap_or_default();
    assert_eq!(
        forwarded.iter().map(Got::id).collect::<Vec<_>>(),
        vec!["late"],
        "new work was handled within 10 s: {}",
        tail(&log, 4000)
    );
    assert!(status.success(), "{status}: {}", tail(&log, 4000));
    // Left: on the DLQ, or waiting RETRYINT in dlqd's left queue.
    let mut left = b.drain(&dlq).await;
    left.extend(b.drain(&dlqd::stage::left_queue(&dlq)).await);
    assert_eq!(left.iter().map(Got::id).collect::<Vec<_>>(), vec!["future"]);
    assert_eq!(left[0].body, b"from the future");
    b.cleanup().await;
}
