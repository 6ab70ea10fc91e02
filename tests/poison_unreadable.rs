//! A dead letter lapin cannot read, on the shared broker: a short-string property
//! (message_id, content_type, ... — AMQP 0-9-1 shortstr) or a header name whose bytes are
//! not UTF-8. The broker takes and delivers such bytes as they are, but lapin's parser
//! (amq-protocol's `parse_short_string`, `String::from_utf8`) fails on the content header
//! with `ParsingError(Error(ParserErrors { error: Nom(MapRes) }))` and drops the whole
//! connection; the broker then puts the message back first, so every later attempt meets
//! it again. Measured with lapin 4.12.3: `basic_get` never resolves (the hang of
//! `capture` and `inspect`), a consumer yields that error and ends (the reconnect loop of
//! `run`). The broker itself refuses non-UTF-8 bytes only in `expiration` (406, not an
//! integer) and `user_id` (406, not the connection's user), so those two are not tried.
//!
//! lapin cannot publish such a message (its `ShortString` is a `String`), so it is sent
//! with the raw-frame client of `support::raw_amqp`, and read back with it too, byte for
//! byte.
//!
//! What dlqd must do, and what these tests hold it to: never hang; end with a non-zero
//! exit and an error that names the queue and says that a message's properties are not
//! valid UTF-8; and lose nothing — the unreadable message stays on the DLQ exactly as it
//! was, and each good message behind it is either still there or forwarded, once.

mod hardening_common;
mod support;

use std::collections::BTreeMap;
use std::process::Output;
use std::time::{Duration, Instant};

use hardening_common::*;
use lapin::types::FieldTable;
use support::raw_amqp::{self, Prop, RawGot, RawMessage};

/// The bytes of the unreadable property: valid ASCII, then two bytes that are never UTF-8.
const BAD: &[u8] = b"unreadable-\xff\xfe";
const BAD_BODY: &[u8] = b"body of the unreadable message";
/// The message ids of the readable messages queued behind it.
const GOOD: [&str; 3] = ["good-1", "good-2", "good-3"];

/// The short-string properties the broker accepts with non-UTF-8 bytes.
const ACCEPTED: [Prop; 8] = [
    Prop::ContentType,
    Prop::ContentEncoding,
    Prop::CorrelationId,
    Prop::ReplyTo,
    Prop::MessageId,
    Prop::Type,
    Prop::AppId,
    Prop::ClusterId,
];

/// What makes the first message unreadable.
#[derive(Debug, Clone, Copy)]
enum Poison {
    /// This short-string property holds [`BAD`].
    Property(Prop),
    /// A header whose name is [`BAD`] (header names are short strings too).
    HeaderName,
}

impl Poison {
    fn name(self) -> &'static str {
        match self {
            Poison::Property(p) => p.name(),
            Poison::HeaderName => "header-name",
        }
    }
}

fn bad_message(queue: &str, poison: Poison) -> RawMessage {
    let m = RawMessage::to_queue(queue, BAD_BODY).with_header(b"x-first-death-reason", b"rejected");
    match poison {
        // The message id is set too, unless it is the poison: how it is found again.
        Poison::Property(Prop::MessageId) => m.with(Prop::MessageId, BAD),
        Poison::Property(p) => m.with(Prop::MessageId, b"unreadable").with(p, BAD),
        Poison::HeaderName => m
            .with(Prop::MessageId, b"unreadable")
            .with_header(BAD, b"v"),
    }
}

fn bad_id(poison: Poison) -> &'static [u8] {
    match poison {
        Poison::Property(Prop::MessageId) => BAD,
        _ => b"unreadable",
    }
}

fn good_message(queue: &str, id: &str) -> RawMessage {
    RawMessage::to_queue(queue, format!("body of {id}").as_bytes())
        .with(Prop::MessageId, id.as_bytes())
        .with(Prop::ContentType, b"text/plain")
        .with_header(b"x-first-death-reason", b"rejected")
}

/// Declare `dlq` and fill it: the unreadable message first, the three good ones behind it,
/// each publish confirmed before the next (so that is their order in the queue).
async fn poisoned_dlq(b: &mut Broker, dlq: &str, poison: Poison) {
    b.queue_with(dlq, FieldTable::default()).await;
    let mut messages = vec![bad_message(dlq, poison)];
    messages.extend(GOOD.iter().map(|id| good_message(dlq, id)));
    let u = url().to_string();
    tokio::task::spawn_blocking(move || raw_amqp::publish(&u, &messages))
        .await
        .expect("join")
        .unwrap_or_else(|e| panic!("raw publish to {dlq}: {e}"));
    assert_eq!(b.count(dlq).await, 4, "{dlq} filled");
}

/// Every message of `queue`, read raw (and handed back); empty when it does not exist.
async fn raw_peek(b: &Broker, queue: &str) -> Vec<RawGot> {
    if !b.exists(queue).await {
        return Vec::new();
    }
    let (u, q) = (url().to_string(), queue.to_string());
    tokio::task::spawn_blocking(move || raw_amqp::peek(&u, &q))
        .await
        .expect("join")
        .unwrap_or_else(|e| panic!("raw peek of {queue}: {e}"))
}

/// Run dlqd with `args` for at most `limit` (killed then): its output, and whether it
/// ended by itself.
async fn dlqd_within(args: &[&str], limit: Duration) -> (Output, bool) {
    let args: Vec<String> = args.iter().map(|a| a.to_string()).collect();
    let started = Instant::now();
    let out = tokio::task::spawn_blocking(move || {
        let a: Vec<&str> = args.iter().map(String::as_str).collect();
        dlqd_for(&a, &[("DLQD_URL", url())], limit)
    })
    .await
    .expect("join");
    // Killed by us (SIGKILL at the limit): no exit code.
    let ended = out.status.code().is_some() && started.elapsed() < limit + Duration::from_secs(5);
    (out, ended)
}

/// The command ended by itself within the limit, failed, and said why in the words the
/// operator needs: which queue, and that a message's properties are not valid UTF-8.
fn assert_reported_unreadable(what: &str, queue: &str, limit: Duration, out: &Output, ended: bool) {
    let log = stderr_of(out);
    assert!(
        ended,
        "{what} did not end within {limit:?} (killed); its stderr ends:\n{}",
        tail(&log, 3000)
    );
    assert!(
        !out.status.success(),
        "{what} exited 0 though it could not read a message of {queue}; stderr:\n{}",
        tail(&log, 3000)
    );
    assert!(
        !log.contains("panicked"),
        "{what} panicked:\n{}",
        tail(&log, 3000)
    );
    assert!(
        log.contains("not valid UTF-8"),
        "{what}: the error says that a message's properties are not valid UTF-8; stderr:\n{}",
        tail(&log, 3000)
    );
    assert!(
        log.contains(queue),
        "{what}: the error names the queue {queue}; stderr:\n{}",
        tail(&log, 3000)
    );
}

/// Wait (at most 10 s) until `queues` hold `n` ready messages together — a killed
/// dlqd's unacknowledged deliveries are back — and return the counts.
async fn settle(b: &Broker, queues: &[&str], n: u32) -> Vec<(String, u32)> {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let mut counts = Vec::new();
        for q in queues {
            let c = if b.exists(q).await {
                b.count(q).await
            } else {
                0
            };
            counts.push((q.to_string(), c));
        }
        if counts.iter().map(|(_, c)| c).sum::<u32>() == n || Instant::now() > deadline {
            return counts;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// The unreadable message is on `dlq`, first, and exactly as it was sent.
fn assert_intact(dlq: &str, got: &[RawGot], poison: Poison) {
    let bad: Vec<&RawGot> = got
        .iter()
        .filter(|m| m.prop(Prop::MessageId) == Some(bad_id(poison)))
        .collect();
    assert_eq!(bad.len(), 1, "the unreadable message is on {dlq}, once");
    let m = bad[0];
    assert_eq!(m.body, BAD_BODY, "its body unchanged");
    match poison {
        Poison::Property(p) => assert_eq!(m.prop(p), Some(BAD), "its {} unchanged", p.name()),
        Poison::HeaderName => {
            let h = m.headers.as_deref().unwrap_or_default();
            assert!(
                h.windows(BAD.len()).any(|w| w == BAD),
                "its header name unchanged"
            );
        }
    }
}

fn ids(got: &[RawGot]) -> Vec<String> {
    got.iter().map(RawGot::id_lossy).collect()
}

/// `capture` or `inspect` of a DLQ whose first message is unreadable: it must end, fail
/// with the reason, and leave the queue as it was (browsing never consumes or reorders).
async fn browse_case(command: &str, poison: Poison) {
    let mut b = Broker::shared().await;
    let dlq = unique(&format!("unreadable.{command}.{}", poison.name()));
    poisoned_dlq(&mut b, &dlq, poison).await;

    let limit = Duration::from_secs(30);
    let (out, ended) = dlqd_within(&[command, "--queue", &dlq], limit).await;

    let counts = settle(&b, &[&dlq], 4).await;
    let left = raw_peek(&b, &dlq).await;
    let what = format!("dlqd {command} ({} not UTF-8)", poison.name());
    assert_reported_unreadable(&what, &dlq, limit, &out, ended);
    assert_eq!(
        counts,
        vec![(dlq.clone(), 4)],
        "{what}: {dlq} still holds all 4"
    );
    let mut want = vec![String::from_utf8_lossy(bad_id(poison)).into_owned()];
    want.extend(GOOD.iter().map(|s| s.to_string()));
    assert_eq!(ids(&left), want, "{what}: {dlq} in its order");
    assert_intact(&dlq, &left, poison);
    b.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn capture_of_an_unreadable_message_ends_and_says_why() {
    browse_case("capture", Poison::Property(Prop::MessageId)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn inspect_of_an_unreadable_message_ends_and_says_why() {
    browse_case("inspect", Poison::Property(Prop::MessageId)).await;
}

/// Every short-string property the broker lets through, and a header name: the same
/// report from `inspect`, each on its own DLQ, all at once.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn inspect_reports_every_kind_of_unreadable_short_string() {
    let mut cases: Vec<Poison> = ACCEPTED.iter().copied().map(Poison::Property).collect();
    cases.push(Poison::HeaderName);
    let tasks: Vec<_> = cases
        .into_iter()
        .map(|p| tokio::spawn(async move { browse_case("inspect", p).await }))
        .collect();
    let mut failed = Vec::new();
    for t in tasks {
        if let Err(e) = t.await {
            let msg = e
                .try_into_panic()
                .ok()
                .and_then(|p| {
                    p.downcast_ref::<String>()
                        .cloned()
                        .or_else(|| p.downcast_ref::<&str>().map(|s| s.to_string()))
                })
                .unwrap_or_default();
            failed.push(msg);
        }
    }
    assert!(
        failed.is_empty(),
        "{} of 9 cases failed:\n{}",
        failed.len(),
        failed.join("\n----\n")
    );
}

/// `run --once` on a DLQ whose first message is unreadable: it must end (no reconnect
/// loop), fail with the reason, and lose nothing — the unreadable message still on the
/// DLQ exactly as it was, each good one either forwarded or still there, once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn run_once_with_an_unreadable_message_ends_and_loses_nothing() {
    let poison = Poison::Property(Prop::MessageId);
    let mut b = Broker::shared().await;
    let dlq = unique("unreadable.run.dlq");
    let fwd = unique("unreadable.run.fwd");
    poisoned_dlq(&mut b, &dlq, poison).await;
    b.queue_with(&fwd, FieldTable::default()).await;

    let limit = Duration::from_secs(60);
    let rule = format!("ACTION(FWD) FWDQ({fwd})");
    let (out, ended) =
        dlqd_within(&["run", "--once", "--queue", &dlq, "--rule", &rule], limit).await;

    let left_q = dlqd::stage::left_queue(&dlq);
    let counts = settle(&b, &[&dlq, &left_q, &fwd], 4).await;
    let on_dlq = raw_peek(&b, &dlq).await;
    let on_left = raw_peek(&b, &left_q).await;
    let forwarded = raw_peek(&b, &fwd).await;

    let what = "dlqd run --once (message_id not UTF-8)";
    assert_reported_unreadable(what, &dlq, limit, &out, ended);
    // Counted: every message once, somewhere.
    let mut seen: BTreeMap<String, Vec<&str>> = BTreeMap::new();
    for (q, got) in [("dlq", &on_dlq), ("left", &on_left), ("fwd", &forwarded)] {
        for m in got.iter() {
            seen.entry(m.id_lossy()).or_default().push(q);
        }
    }
    let mut want: Vec<String> = GOOD.iter().map(|s| s.to_string()).collect();
    want.push(String::from_utf8_lossy(BAD).into_owned());
    want.sort();
    assert_eq!(
        seen.keys().cloned().collect::<Vec<_>>(),
        want,
        "{what}: every message is still somewhere; counts {counts:?}, where {seen:?}"
    );
    assert!(
        seen.values().all(|w| w.len() == 1),
        "{what}: each message once; where {seen:?}"
    );
    // The unreadable one stays on the DLQ, byte for byte; only good ones were forwarded.
    assert_intact(&dlq, &on_dlq, poison);
    assert!(
        forwarded
            .iter()
            .all(|m| GOOD.contains(&m.id_lossy().as_str())),
        "{what}: only readable messages forwarded: {:?}",
        ids(&forwarded)
    );
    b.cleanup().await;
}
