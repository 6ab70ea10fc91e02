//! A 1 MiB header value through the real handler. On a default node (frame_max 128 KiB)
//! such a message cannot even be published — the broker closes the publisher's
//! connection (FRAME_ERROR) — so this runs on a private node configured with a 4 MiB
//! frame_max: dlqd negotiates it, reads the message, decides it on its reason header,
//! and forwards it intact, with the messages around it.

mod hardening_common;
mod support;

use std::time::Duration;

use hardening_common::*;
use lapin::types::FieldTable;
use support::private_node::PrivateNode;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_1_mib_header_value_is_forwarded_intact() {
    let node = PrivateNode::start_with_conf("frame_max = 4194304\n");
    let url = node.url();
    let mut b = Broker::connect(&url)
        .await
        .expect("connect to the private node");
    b.queue("dlq", FieldTable::default()).await;
    b.queue("parked", FieldTable::default()).await;
    let big = "y".repeat(1 << 20);
    let rejected = ("x-first-death-reason", text("rejected"));
    b.publish(
        "dlq",
        b"before",
        props("before").with_headers(table(vec![rejected.clone()])),
    )
    .await;
    b.publish(
        "dlq",
        b"big",
        props("big-header").with_headers(table(vec![rejected.clone(), ("big", text(&big))])),
    )
    .await;
    b.publish(
        "dlq",
        b"after",
        props("after").with_headers(table(vec![rejected])),
    )
    .await;

    let u = url.clone();
    let out = tokio::task::spawn_blocking(move || {
        dlqd(
            &[
                "run",
                "--once",
                "--queue",
                "dlq",
                "--rule",
                "REASON(rejected) ACTION(FWD) FWDQ(parked)",
                "--rule",
                "ACTION(IGNORE)",
            ],
            &u,
            Duration::from_secs(60),
        )
    })
    .await
    .expect("join");
    let log = stderr_of(&out);
    assert!(out.status.success(), "{}\n{}", out.status, tail(&log, 4000));
    let moved = b.drain("parked").await;
    assert_eq!(
        moved.iter().map(Got::id).collect::<Vec<_>>(),
        vec!["before", "big-header", "after"]
    );
    assert_eq!(moved[1].header("big"), Some(&text(&big)));
    assert_eq!(b.depth("dlq").await, 0);
    b.cleanup().await;
}
