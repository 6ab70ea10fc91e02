//! `dlqd check --broker` against the real broker: a deliberately broken topology (a
//! missing DLQ, a work queue without a dead-letter exchange, one whose dead-letter
//! exchange routes elsewhere, one whose dead-letter exchange is gone, a missing work
//! queue, at-least-once with drop-head, a quorum DLQ with a delivery limit and no
//! dead-letter exchange, missing forward targets, a user with too few permissions)
//! gives each finding at its rules position; a good one gives none (exit 0), and its
//! dead letters really arrive on the DLQ. An unreachable management API is an error
//! that says how to enable it; an AMQP URL dlqd cannot connect with is an error too. A
//! DLQ with a length limit, TTL or expiry is warned of (and really drops); a work
//! queue fed through a topic pattern is "cannot tell", not an error (and its dead
//! letters really arrive); a rules directory gets one grant that keeps the user's
//! permissions and, pasted, suffices. Run on 3.10, 4.0 and 4.x (DLQD_TEST_URL; the management
//! API is the AMQP port + 10000, or DLQD_TEST_MANAGEMENT_URL).

mod support;

use std::path::{Path, PathBuf};
use std::process::Output;
use std::time::Duration;

use lapin::BasicProperties;
use lapin::options::{BasicGetOptions, BasicNackOptions, BasicPublishOptions};
use serde_json::json;
use support::broker::{self, Way, unique};
use support::dlqd::{dlqd_env, stderr_of};
use support::fixture::Broker;
use support::management::{self, Mgmt};

const T: Duration = Duration::from_secs(60);

fn write(dir: &Path, name: &str, text: &str) -> PathBuf {
    let p = dir.join(name);
    std::fs::write(&p, text).expect("write rules");
    p
}

/// `amqp://USER:PASSWORD@` + the host, port and vhost of the broker under test.
fn url_as(user: &str, password: &str) -> String {
    let u = broker::url();
    let (scheme, rest) = u.split_once("://").expect("scheme");
    let host = rest.rsplit_once('@').map_or(rest, |(_, h)| h);
    format!("{scheme}://{user}:{password}@{host}")
}

/// The management URL with guest's credentials, and without any.
fn admin() -> String {
    management::url()
}

fn bare_management() -> String {
    let u = management::url();
    let (scheme, rest) = u.split_once("://").expect("scheme");
    format!(
        "{scheme}://{}",
        rest.rsplit_once('@').map_or(rest, |(_, h)| h)
    )
}

fn check(url: &str, management: &str, extra: &[&str], rules: &Path) -> Output {
    let mut args = vec!["check", "--broker", url, "--management", management];
    args.extend_from_slice(extra);
    let rules = rules.to_str().expect("path");
    args.push(rules);
    dlqd_env(&args, &[], T)
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

/// The headline `FILE:AT: SEVERITY: ...WORDS...` is in the output.
fn has(out: &str, file: &Path, at: &str, severity: &str, words: &str) {
    let start = format!("{}:{at}: {severity}: ", file.display());
    assert!(
        out.lines()
            .any(|l| l.starts_with(&start) && l.contains(words)),
        "no `{start}…{words}…` in:\n{out}"
    );
}

fn headlines(out: &str, file: &Path) -> usize {
    let start = format!("{}:", file.display());
    out.lines()
        .filter(|l| l.starts_with(&start) && (l.contains(": error: ") || l.contains(": warning: ")))
        .count()
}

fn major(m: &Mgmt) -> u32 {
    m.version()
        .split('.')
        .next()
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

/// Publish one message to `queue` and reject it (requeue=false): a real dead letter.
async fn reject_one(b: &Broker, queue: &str, id: &str) {
    b.publish(
        queue,
        id.as_bytes(),
        BasicProperties::default().with_message_id(id.into()),
    )
    .await;
    reject_next(b, queue).await;
}

/// Publish one message to `exchange` with `key` (confirmed, mandatory).
async fn publish_to(b: &Broker, exchange: &str, key: &str, id: &str) {
    let confirm =
        b.ch.basic_publish(
            exchange.into(),
            key.into(),
            BasicPublishOptions {
                mandatory: true,
                ..BasicPublishOptions::default()
            },
            id.as_bytes(),
            BasicProperties::default().with_message_id(id.into()),
        )
        .await
        .expect("publish")
        .await
        .expect("confirm");
    assert_eq!(
        confirm,
        lapin::Confirmation::Ack(None),
        "publish to {exchange}"
    );
}

/// Get the next message of `queue` and reject it (requeue=false).
async fn reject_next(b: &Broker, queue: &str) {
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        if let Some(m) =
            b.ch.basic_get(queue.into(), BasicGetOptions::default())
                .await
                .expect("basic.get")
        {
            b.ch.basic_nack(
                m.delivery.delivery_tag,
                BasicNackOptions {
                    multiple: false,
                    requeue: false,
                },
            )
            .await
            .expect("nack");
            return;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "nothing to get from {queue}"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

#[tokio::test]
async fn a_broken_topology_shows_each_fault_at_its_rules_position() {
    let mut m = Mgmt::connect();
    let dir = tempfile::tempdir().expect("tempdir");
    let p = unique("topo");
    let q = |s: &str| format!("{p}.{s}");
    m.queue(
        &q("dlq"),
        json!({"x-queue-type": "quorum", "x-delivery-limit": 5}),
    );
    m.exchange(&q("dlx"), "fanout");
    m.bind(&q("dlx"), &q("dlq"), "");
    m.queue(&q("nodlx"), json!({}));
    m.exchange(&q("other"), "direct");
    m.queue(&q("elsewhere"), json!({}));
    m.bind(&q("other"), &q("elsewhere"), "x");
    m.queue(
        &q("wrongdlx"),
        json!({"x-dead-letter-exchange": q("other")}),
    );
    m.queue(
        &q("alo"),
        json!({"x-queue-type": "quorum", "x-dead-letter-exchange": q("dlx"),
               "x-dead-letter-strategy": "at-least-once"}),
    );
    m.queue(&q("gonedlx"), json!({"x-dead-letter-exchange": q("gone")}));
    let rules = write(
        dir.path(),
        "broken.rules",
        &format!(
            "INPUTQ({p}.dlq)\n\
             DESTQ({p}.nodlx) ACTION(RETRY) RETRY(3)\n\
             DESTQ({p}.wrongdlx) ACTION(RETRY)\n\
             DESTQ({p}.alo) ACTION(IGNORE)\n\
             DESTQ({p}.ghost) ACTION(DISCARD)\n\
             DESTQ({p}.gonedlx) ACTION(DISCARD)\n\
             REASON(expired) ACTION(FWD) FWDQ({p}.missing.parked)\n\
             REASON(maxlen) ACTION(FWD) FWDEX({p}.missing.ex)\n\
             ACTION(IGNORE)\n"
        ),
    );
    let o = check(broker::url(), &admin(), &[], &rules);
    let out = stdout(&o);
    assert_eq!(o.status.code(), Some(1), "{out}{}", stderr_of(&o));
    let dlq = q("dlq");
    has(
        &out,
        &rules,
        "1:8",
        "warning",
        &format!(
            "the DLQ {dlq} is a quorum queue with a delivery limit of 5, and it has no dead-letter exchange"
        ),
    );
    has(
        &out,
        &rules,
        "2:7",
        "error",
        &format!("the work queue {p}.nodlx has no dead-letter exchange"),
    );
    has(
        &out,
        &rules,
        "3:7",
        "error",
        &format!(
            "dead letters of {p}.wrongdlx do not reach {dlq}: its dead-letter exchange {p}.other routes the key '{p}.wrongdlx' to no queue"
        ),
    );
    has(
        &out,
        &rules,
        "4:7",
        "warning",
        &format!(
            "the work queue {p}.alo asks for at-least-once dead-lettering (argument x-dead-letter-strategy) but overflows with drop-head"
        ),
    );
    has(
        &out,
        &rules,
        "5:7",
        "error",
        &format!("the work queue {p}.ghost (DESTQ) does not exist"),
    );
    has(
        &out,
        &rules,
        "6:7",
        "error",
        &format!("the dead-letter exchange {p}.gone of the work queue {p}.gonedlx does not exist"),
    );
    has(
        &out,
        &rules,
        "7:34",
        "error",
        &format!("the forward queue {p}.missing.parked does not exist"),
    );
    has(
        &out,
        &rules,
        "8:34",
        "error",
        &format!("the forward exchange {p}.missing.ex does not exist"),
    );
    assert_eq!(headlines(&out, &rules), 8, "{out}");
    assert!(
        out.contains("= help: "),
        "every finding has a help line:\n{out}"
    );
    assert!(
        out.contains(&format!(
            "DLQ {dlq} (quorum), dead letters from 1 queue: {p}.alo; 6 errors, 2 warnings"
        )),
        "{out}"
    );

    // What the check found is what the broker does: dead letters of the queue without
    // a dead-letter exchange and of the one whose exchange routes elsewhere are lost;
    // one through a working route (alo's) arrives after them, alone.
    let b = Broker::connect().await;
    reject_one(&b, &q("nodlx"), "lost-1").await;
    reject_one(&b, &q("wrongdlx"), "lost-2").await;
    reject_one(&b, &q("alo"), "arrives").await;
    b.wait_count(&dlq, 1, T).await;
    let got = b.peek(&dlq).await;
    assert_eq!(got.iter().map(|g| g.id()).collect::<Vec<_>>(), ["arrives"]);
    for gone in ["nodlx", "wrongdlx", "elsewhere", "alo"] {
        assert_eq!(b.count(&q(gone)).await, 0, "{gone}");
    }

    // A DLQ that is not there.
    let missing = write(
        dir.path(),
        "missing.rules",
        &format!("INPUTQ({p}.nodlq)\nACTION(IGNORE)\n"),
    );
    let o = check(broker::url(), &admin(), &[], &missing);
    let out = stdout(&o);
    assert_eq!(o.status.code(), Some(1), "{out}{}", stderr_of(&o));
    has(
        &out,
        &missing,
        "1:8",
        "error",
        &format!("the DLQ {p}.nodlq does not exist on the broker"),
    );
    assert_eq!(headlines(&out, &missing), 1, "{out}");

    // A quorum DLQ with no delivery limit of its own: 20 from 4.0 on, none on 3.x. No
    // queue dead-letters to it: a warning too.
    m.queue(&q("qdlq"), json!({"x-queue-type": "quorum"}));
    let plain = write(dir.path(), "plain.rules", "ACTION(IGNORE)\n");
    let o = check(broker::url(), &admin(), &["--queue", &q("qdlq")], &plain);
    let out = stdout(&o);
    has(
        &out,
        &plain,
        "1:1",
        "warning",
        &format!("no queue dead-letters to {p}.qdlq: dead letters from 0 queues"),
    );
    if major(&m) >= 4 {
        assert_eq!(
            o.status.code(),
            Some(0),
            "a warning only:\n{out}{}",
            stderr_of(&o)
        );
        has(
            &out,
            &plain,
            "1:1",
            "warning",
            &format!(
                "the DLQ {p}.qdlq is a quorum queue with a delivery limit of 20 (the default since RabbitMQ 4.0), and it has no dead-letter exchange"
            ),
        );
        assert_eq!(headlines(&out, &plain), 2, "{out}");
    } else {
        assert_eq!(o.status.code(), Some(0), "{out}{}", stderr_of(&o));
        assert_eq!(
            headlines(&out, &plain),
            1,
            "3.x has no default delivery limit:\n{out}"
        );
    }
}

#[test]
fn a_user_with_too_few_permissions_is_found_and_its_password_never_shows() {
    let mut m = Mgmt::connect();
    let dir = tempfile::tempdir().expect("tempdir");
    let p = unique("topo");
    let dlq = format!("{p}.dlq");
    m.queue(&dlq, json!({}));
    m.exchange(&format!("{p}.fwd"), "direct");
    let user = format!("{p}.user");
    let password = format!("Pw{}Zx", std::process::id());
    m.user(
        &user,
        &password,
        "^$",
        &format!("^{}\\.nothing$", regex::escape(&p)),
        "^$",
    );
    let rules = write(
        dir.path(),
        "narrow.rules",
        &format!(
            "INPUTQ({dlq})\nREASON(maxlen) ACTION(FWD) FWDEX({p}.fwd)\n\
             REASON(expired) ACTION(RETRY) PUTAUT(CTX)\nACTION(IGNORE)\n"
        ),
    );
    let url = url_as(&user, &password);
    let o = check(&url, &admin(), &[], &rules);
    let out = stdout(&o);
    let err = stderr_of(&o);
    assert_eq!(o.status.code(), Some(1), "{out}{err}");
    has(
        &out,
        &rules,
        "1:8",
        "error",
        &format!("the user {user} may not read the DLQ {dlq}"),
    );
    has(
        &out,
        &rules,
        "1:8",
        "error",
        &format!("the user {user} may not publish to the default exchange"),
    );
    has(
        &out,
        &rules,
        "1:8",
        "error",
        &format!(
            "the user {user} may not configure (declare) dlqd's own queues of {dlq} (dlqd.delay.{dlq}.100ms and 17 more"
        ),
    );
    has(
        &out,
        &rules,
        "1:8",
        "error",
        &format!("the user {user} may not read dlqd's own queues of {dlq}"),
    );
    has(
        &out,
        &rules,
        "2:34",
        "error",
        &format!("the user {user} may not publish to the forward exchange {p}.fwd"),
    );
    has(
        &out,
        &rules,
        "3:38",
        "warning",
        &format!("the user {user} has no impersonator tag"),
    );
    has(&out, &rules, "1:8", "warning", "dead letters from 0 queues");
    assert_eq!(headlines(&out, &rules), 7, "{out}");
    assert!(
        out.contains("rabbitmqctl set_permissions -p /"),
        "a grant to copy:\n{out}"
    );
    assert!(out.contains(&format!("broker amqp://{user}:***@")), "{out}");
    assert!(
        !out.contains(&password) && !err.contains(&password),
        "{out}{err}"
    );

    // Without admin credentials the API refuses a user with no tags: an error that says
    // why, without the password.
    let o = check(&url, &bare_management(), &[], &rules);
    let err = stderr_of(&o);
    assert_eq!(o.status.code(), Some(1), "{}{err}", stdout(&o));
    assert!(
        err.contains(&format!("refused the login of {user}")),
        "{err}"
    );
    assert!(
        err.contains(
            "wrong user or password, or the user lacks the management/monitoring/administrator tag"
        ),
        "{err}"
    );
    assert!(
        !err.contains(&password) && !stdout(&o).contains(&password),
        "{err}"
    );
}

#[tokio::test]
async fn a_good_topology_has_no_findings_and_its_dead_letters_really_arrive() {
    let mut m = Mgmt::connect();
    let dir = tempfile::tempdir().expect("tempdir");
    let p = unique("topo");
    let q = |s: &str| format!("{p}.{s}");
    let dlq = q("dlq");
    // A quorum DLQ with a second-level DLQ of its own.
    m.exchange(&q("dlx2"), "fanout");
    m.queue(&q("dlq2nd"), json!({}));
    m.bind(&q("dlx2"), &q("dlq2nd"), "");
    m.queue(
        &dlq,
        json!({"x-queue-type": "quorum", "x-dead-letter-exchange": q("dlx2")}),
    );
    // Work queues: one with a dead-letter routing key through a topic exchange, one
    // (quorum, at-least-once with reject-publish) set by a policy, keeping its own name.
    m.exchange(&q("dlx"), "topic");
    m.bind(&q("dlx"), &dlq, "dead.#");
    m.bind(&q("dlx"), &dlq, &q("pay"));
    m.queue(
        &q("orders"),
        json!({"x-dead-letter-exchange": q("dlx"), "x-dead-letter-routing-key": "dead.orders"}),
    );
    m.queue(&q("pay"), json!({"x-queue-type": "quorum"}));
    m.policy(
        &q("pol"),
        &q("pay"),
        json!({"dead-letter-exchange": q("dlx"), "dead-letter-strategy": "at-least-once", "overflow": "reject-publish"}),
    );
    m.queue(&q("pay.parked"), json!({}));
    m.exchange(&q("fwd"), "direct");
    m.queue(&q("parked"), json!({}));
    m.bind(&q("fwd"), &q("parked"), "parked");
    // dlqd's user with what production.md says it needs, and no more.
    let user = q("good");
    let password = format!("Ok{}Qw", std::process::id());
    m.user(
        &user,
        &password,
        r"^dlqd\..*$",
        &format!(r"^(amq\.default|dlqd\..*|{})$", regex::escape(&q("fwd"))),
        &format!(r"^({}|dlqd\..*)$", regex::escape(&dlq)),
    );
    let rules = write(
        dir.path(),
        "good.rules",
        &format!(
            "INPUTQ({dlq})\n\
             DESTQ({p}.orders) ACTION(RETRY) RETRY(3) DELAY(1s)\n\
             DESTQ({p}.pay) ACTION(FWD) FWDQ(&DESTQ.parked)\n\
             REASON(maxlen) ACTION(FWD) FWDEX({p}.fwd) FWDRKEY(parked)\n\
             ACTION(IGNORE)\n"
        ),
    );
    let o = check(
        &url_as(&user, &password),
        &admin(),
        &["--deny-warnings"],
        &rules,
    );
    let out = stdout(&o);
    assert_eq!(o.status.code(), Some(0), "{out}{}", stderr_of(&o));
    assert_eq!(headlines(&out, &rules), 0, "{out}");
    assert!(
        out.contains(&format!(
            "DLQ {dlq} (quorum), dead letters from 2 queues: {p}.orders, {p}.pay; 0 errors, 0 warnings"
        )),
        "{out}"
    );

    // What the check found is what the broker does: a rejected message of each work
    // queue lands on the DLQ, none elsewhere.
    let b = Broker::connect().await;
    let one = |id: &str| {
        vec![(
            id.as_bytes().to_vec(),
            BasicProperties::default().with_message_id(id.into()),
        )]
    };
    b.dead_letter(&q("orders"), &dlq, Way::Reject, &one("o1"))
        .await;
    b.dead_letter(&q("pay"), &dlq, Way::Reject, &one("p1"))
        .await;
    assert_eq!(b.count(&dlq).await, 2);
    for other in ["orders", "pay", "dlq2nd", "parked", "pay.parked"] {
        assert_eq!(b.count(&q(other)).await, 0, "{other}");
    }
}

#[test]
fn an_unreachable_management_api_is_an_error_that_says_how_to_enable_it() {
    let dir = tempfile::tempdir().expect("tempdir");
    let rules = write(dir.path(), "x.rules", "INPUTQ(x)\nACTION(IGNORE)\n");
    let o = check(
        "amqp://guest:S3cretPw@127.0.0.1:5672/%2f",
        "http://127.0.0.1:1",
        &[],
        &rules,
    );
    let err = stderr_of(&o);
    assert_eq!(o.status.code(), Some(1), "{err}");
    assert!(
        err.contains("cannot reach the management API at http://127.0.0.1:1"),
        "{err}"
    );
    assert!(
        err.contains("rabbitmq-plugins enable rabbitmq_management"),
        "{err}"
    );
    assert!(
        !err.contains("S3cretPw") && !stdout(&o).contains("S3cretPw"),
        "{err}"
    );
}

#[tokio::test]
async fn a_dlq_that_limits_what_it_keeps_is_warned_of_and_really_drops_dead_letters() {
    let mut m = Mgmt::connect();
    let dir = tempfile::tempdir().expect("tempdir");
    let p = unique("topo");
    let q = |s: &str| format!("{p}.{s}");
    let dlq = q("dlq");
    m.queue(&dlq, json!({"x-max-length": 1}));
    m.exchange(&q("dlx"), "fanout");
    m.bind(&q("dlx"), &dlq, "");
    m.queue(&q("work"), json!({"x-dead-letter-exchange": q("dlx")}));
    m.policy(
        &q("keep"),
        &dlq,
        json!({"message-ttl": 3_600_000, "expires": 86_400_000}),
    );
    let rules = write(
        dir.path(),
        "kept.rules",
        &format!("INPUTQ({dlq})\nDESTQ({p}.work) ACTION(IGNORE)\nACTION(IGNORE)\n"),
    );
    let o = check(broker::url(), &admin(), &[], &rules);
    let out = stdout(&o);
    assert_eq!(
        o.status.code(),
        Some(0),
        "warnings only:\n{out}{}",
        stderr_of(&o)
    );
    has(
        &out,
        &rules,
        "1:8",
        "warning",
        &format!(
            "the DLQ {dlq} has a maximum length of 1 message (argument x-max-length): when it is full, the oldest dead letters are dropped silently (overflow drop-head)"
        ),
    );
    has(
        &out,
        &rules,
        "1:8",
        "warning",
        &format!(
            "the DLQ {dlq} has a message TTL of 3600000 ms (policy key message-ttl): dead letters expire before anyone may look at them, and expired ones are dropped"
        ),
    );
    has(
        &out,
        &rules,
        "1:8",
        "warning",
        &format!("the DLQ {dlq} expires after 86400000 ms unused (policy key expires)"),
    );
    assert_eq!(headlines(&out, &rules), 3, "{out}");
    assert!(
        out.contains(&format!(
            "= help: remove the key expires from the policy {p}.keep"
        )),
        "{out}"
    );

    // What the check found is what the broker does: of two dead letters, the DLQ keeps
    // the second; the first is dropped.
    let b = Broker::connect().await;
    reject_one(&b, &q("work"), "first").await;
    reject_one(&b, &q("work"), "second").await;
    let deadline = std::time::Instant::now() + T;
    loop {
        let ids: Vec<String> = b.peek(&dlq).await.iter().map(|g| g.id()).collect();
        if ids == ["second"] {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "{ids:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(b.count(&q("work")).await, 0);
}

#[test]
fn an_amqp_connection_that_fails_is_an_error_without_the_password() {
    let mut m = Mgmt::connect();
    let dir = tempfile::tempdir().expect("tempdir");
    let p = unique("topo");
    let dlq = format!("{p}.dlq");
    m.queue(&dlq, json!({}));
    let rules = write(
        dir.path(),
        "amqp.rules",
        &format!("INPUTQ({dlq})\nACTION(IGNORE)\n"),
    );
    // Nothing listens on the AMQP port; the management API answers.
    let o = check(
        "amqp://guest:guest@127.0.0.1:5999/%2f",
        &admin(),
        &[],
        &rules,
    );
    let out = stdout(&o);
    assert_eq!(o.status.code(), Some(1), "{out}{}", stderr_of(&o));
    has(
        &out,
        &rules,
        "1:1",
        "error",
        "dlqd cannot open an AMQP connection to amqp://guest:***@127.0.0.1:5999/%2f",
    );
    assert!(out.contains("check the URL's host and AMQP port"), "{out}");
    // A wrong password for AMQP, with an administrator for the management API.
    let o = check(&url_as("guest", "WrongPw4711"), &admin(), &[], &rules);
    let out = stdout(&o);
    let err = stderr_of(&o);
    assert_eq!(o.status.code(), Some(1), "{out}{err}");
    has(
        &out,
        &rules,
        "1:1",
        "error",
        "dlqd cannot open an AMQP connection to amqp://guest:***@",
    );
    assert!(out.contains("the broker refused the login"), "{out}");
    assert!(
        !out.contains("WrongPw4711") && !err.contains("WrongPw4711"),
        "{out}{err}"
    );
}

#[tokio::test]
async fn a_work_queue_fed_through_a_topic_pattern_is_cannot_tell_and_really_arrives() {
    let mut m = Mgmt::connect();
    let dir = tempfile::tempdir().expect("tempdir");
    let p = unique("topo");
    let q = |s: &str| format!("{p}.{s}");
    let dlq = q("dlq");
    m.queue(&dlq, json!({}));
    m.exchange(&q("dlx"), "direct");
    m.bind(&q("dlx"), &dlq, "orders.eu.created");
    m.exchange(&q("shop"), "topic");
    m.queue(&q("orders"), json!({"x-dead-letter-exchange": q("dlx")}));
    m.bind(&q("shop"), &q("orders"), "orders.*.created");
    let rules = write(
        dir.path(),
        "topic.rules",
        &format!("INPUTQ({dlq})\nDESTQ({p}.orders) ACTION(IGNORE)\nACTION(IGNORE)\n"),
    );
    let o = check(broker::url(), &admin(), &[], &rules);
    let out = stdout(&o);
    assert_eq!(
        o.status.code(),
        Some(0),
        "not an error:\n{out}{}",
        stderr_of(&o)
    );
    has(
        &out,
        &rules,
        "2:7",
        "warning",
        &format!(
            "cannot tell whether dead letters of {p}.orders reach {dlq}: with no dead-letter-routing-key they keep the key they were published with, which the pattern 'orders.*.created' of {p}.shop leaves open"
        ),
    );
    assert_eq!(headlines(&out, &rules), 1, "{out}");

    // The broker: a message published with a key the pattern matches reaches the DLQ.
    let b = Broker::connect().await;
    publish_to(&b, &q("shop"), "orders.eu.created", "eu").await;
    reject_next(&b, &q("orders")).await;
    b.wait_count(&dlq, 1, T).await;
    let got = b.peek(&dlq).await;
    assert_eq!(got.iter().map(|g| g.id()).collect::<Vec<_>>(), ["eu"]);
    assert_eq!(b.count(&q("orders")).await, 0);
}

/// The three quoted regexes of the `rabbitmqctl set_permissions` in `line`.
fn grant_of(line: &str) -> [String; 3] {
    let at = line.find("rabbitmqctl set_permissions").expect("a grant");
    let parts: Vec<&str> = line[at..].split('\'').collect();
    [parts[1].into(), parts[3].into(), parts[5].into()]
}

#[test]
fn one_grant_for_a_rules_directory_keeps_what_the_user_may_and_works() {
    let mut m = Mgmt::connect();
    let dir = tempfile::tempdir().expect("tempdir");
    let p = unique("topo");
    let (a, b) = (format!("{p}.a.dlq"), format!("{p}.b.dlq"));
    m.queue(&a, json!({}));
    m.queue(&b, json!({}));
    let user = format!("{p}.grant");
    let password = format!("Gr{}Nt", std::process::id());
    let read_now = format!(r"^(dlqd\..*|{})$", regex::escape(&a));
    m.user(
        &user,
        &password,
        r"^dlqd\..*$",
        r"^(amq\.default|dlqd\..*)$",
        &read_now,
    );
    let rules = dir.path().join("rules");
    std::fs::create_dir(&rules).expect("mkdir");
    let fa = write(&rules, "a.rules", &format!("INPUTQ({a})\nACTION(IGNORE)\n"));
    let fb = write(&rules, "b.rules", &format!("INPUTQ({b})\nACTION(IGNORE)\n"));
    let url = url_as(&user, &password);
    let o = check(&url, &admin(), &[], &rules);
    let out = stdout(&o);
    assert_eq!(o.status.code(), Some(1), "{out}{}", stderr_of(&o));
    has(
        &out,
        &fb,
        "1:8",
        "error",
        &format!("the user {user} may not read the DLQ {b}"),
    );
    assert!(!out.contains(&format!("may not read the DLQ {a}")), "{out}");
    assert!(!out.contains(r"\-"), "no needless escapes:\n{out}");
    let line = out
        .lines()
        .find(|l| l.contains("to grant what all 2 files need at once"))
        .unwrap_or_else(|| panic!("one grant for the directory:\n{out}"));
    let [configure, write_re, read] = grant_of(line);
    assert!(read.contains(&read_now), "keeps the current grant: {line}");
    assert!(line.contains("replaces the user's permissions"), "{line}");
    // Pasted, it grants both files what they need.
    m.user(&user, &password, &configure, &write_re, &read);
    let o = check(&url, &admin(), &[], &rules);
    let out = stdout(&o);
    assert_eq!(o.status.code(), Some(0), "{out}{}", stderr_of(&o));
    assert!(!out.contains("may not"), "{out}");
    let _ = fa;
}
