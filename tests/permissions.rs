//! Nobody let in, on a private RabbitMQ node (tests/support/private_node.rs): a dlqd user that may
//! read the DLQ but not write to the forward target's exchange, and a user with no access
//! to the vhost at all. The message stays on the DLQ, the log gives the broker's reason
//! (ACCESS_REFUSED), and the distinctive password appears in no log line or error.

mod hardening_common;
mod support;

use std::time::Duration;

use hardening_common::*;
use lapin::types::FieldTable;
use support::private_node::PrivateNode;

/// A password no log should ever show, with a character that URLs percent-encode.
const PASSWORD: &str = "Zq9-perm-S3CRET";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_forward_stays_on_the_dlq_and_says_access_refused() {
    let node = PrivateNode::start();
    node.ctl(&["add_user", "dlqd", PASSWORD]);
    // What docs/production.md asks for (dlqd's own queues, the default exchange, the
    // DLQ), but not publishing to the "target" exchange.
    node.ctl(&[
        "set_permissions",
        "-p",
        "/",
        "dlqd",
        "^dlqd\\..*$",
        "^(amq\\.default|dlqd\\..*)$",
        "^(dlq|dlqd\\..*)$",
    ]);
    node.ctl(&["add_user", "nobody", PASSWORD]);

    let admin_url = node.url();
    let mut b = Broker::connect_to(&admin_url)
        .await
        .expect("admin connection");
    b.queue_with("dlq", FieldTable::default()).await;
    b.queue_with("parked", FieldTable::default()).await;
    b.ch.exchange_declare(
        "target".into(),
        lapin::ExchangeKind::Fanout,
        lapin::options::ExchangeDeclareOptions {
            durable: true,
            ..Default::default()
        },
        FieldTable::default(),
    )
    .await
    .expect("declare target exchange");
    b.ch.queue_bind(
        "parked".into(),
        "target".into(),
        "".into(),
        Default::default(),
        FieldTable::default(),
    )
    .await
    .expect("bind");
    for format in ["text", "json"] {
        // Fresh messages each time: ones a run has left are not due again for RETRYINT.
        let ids: Vec<String> = (0..3).map(|i| format!("{format}-{i}")).collect();
        for id in &ids {
            b.publish("dlq", id.as_bytes(), props(id)).await;
        }
        let url = user_url(&node, "dlqd");
        let out = tokio::task::spawn_blocking(move || {
            dlqd(
                &[
                    "--log-format",
                    format,
                    "run",
                    "--once",
                    "--queue",
                    "dlq",
                    "--rule",
                    "ACTION(FWD) FWDEX(target)",
                ],
                &url,
                Duration::from_secs(60),
            )
        })
        .await
        .expect("join");
        let log = stderr_of(&out);
        if let Some(line) = log.lines().find(|l| l.contains("ACCESS_REFUSED")) {
            eprintln!("{format}: {line}");
        }
        assert_eq!(
            out.status.code(),
            Some(3),
            "{}: --once with failed actions exits 3\n{}",
            format,
            tail(&log, 4000)
        );
        assert!(
            log.lines()
                .any(|l| l.contains("action failed") && l.contains("ACCESS_REFUSED")),
            "{format}: the log gives the broker's reason: {}",
            tail(&log, 4000)
        );
        assert!(
            !log.contains(PASSWORD),
            "{format}: password in the log: {log}"
        );
        assert!(!String::from_utf8_lossy(&out.stdout).contains(PASSWORD));
        assert_eq!(b.count("parked").await, 0, "{format}: nothing forwarded");
        let left = b.drain("dlq").await;
        assert_eq!(
            left.iter().map(Got::id).collect::<Vec<_>>(),
            ids,
            "{format}: all three still on the DLQ, in order"
        );
    }

    // No access to the vhost at all: the connection is refused; the password stays out.
    let url = user_url(&node, "nobody");
    let out = tokio::task::spawn_blocking(move || {
        dlqd_for(
            &[
                "run",
                "--once",
                "--queue",
                "dlq",
                "--rule",
                "ACTION(IGNORE)",
            ],
            &[("DLQD_URL", &url)],
            Duration::from_secs(5),
        )
    })
    .await
    .expect("join");
    let log = stderr_of(&out);
    assert!(
        log.contains("nobody:***@"),
        "the redacted URL is shown: {log}"
    );
    assert!(!log.contains(PASSWORD), "password in the log: {log}");
    b.cleanup().await;
}

/// `amqp://USER:PASSWORD@127.0.0.1:<port>/%2f` on the private node.
fn user_url(node: &PrivateNode, user: &str) -> String {
    format!("amqp://{user}:{PASSWORD}@127.0.0.1:{}/%2f", node.port)
}
