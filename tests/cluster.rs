//! dlqd on a three-node RabbitMQ 4.x cluster (tests/support/cluster.rs): the DLQ, the
//! forward target and dlqd's stage queues (`--stage-queues quorum`) are quorum queues;
//! dlqd is given every node's address. The node
//! that leads the DLQ is killed (`kill -9`) in the middle of a drain and later brought
//! back. Nothing may be lost, duplicates stay within the in-flight window, and the same
//! dlqd process resumes on another node without a restart.

mod support;

use std::time::{Duration, Instant};

use support::broker::{Way, text, work_queue_args};
use support::cluster::Cluster;
use support::dlqd;
use support::lab::{self, Lab};

const MESSAGES: usize = 10_000;
const PREFETCH: usize = 200;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killing_the_dlq_leader_mid_drain_loses_nothing_and_dlqd_resumes_without_a_restart() {
    let mut cluster = tokio::task::spawn_blocking(Cluster::start)
        .await
        .expect("cluster start");
    let quorum = ("x-queue-type", text("quorum"));
    let dlq = lab::unique("cluster.dlq");
    let target = lab::unique("cluster.target");
    let work = lab::unique("cluster.work");
    let mut setup = Lab::connect(&cluster.url(0)).await;
    setup.queue(&dlq, std::slice::from_ref(&quorum)).await;
    setup.queue(&target, std::slice::from_ref(&quorum)).await;
    let mut work_args = work_queue_args(Way::Reject, &dlq);
    work_args.push(quorum.clone());
    setup.queue(&work, &work_args).await;

    // Real dead letters: published to a quorum work queue, rejected into the DLQ.
    let ids: Vec<String> = (0..MESSAGES).map(|i| format!("c-{i}")).collect();
    let messages: Vec<_> = ids
        .iter()
        .map(|id| (work.clone(), lab::props(id, "fwd")))
        .collect();
    setup.publish_all(&messages).await;
    setup.reject(&work, MESSAGES).await;
    setup
        .wait_count(&dlq, MESSAGES as u32, Duration::from_secs(180))
        .await;

    // dlqd is given every node, the DLQ's leader first: the harshest case, its own
    // connection dies with the node.
    let leader = cluster.leader_of(&dlq);
    let others: Vec<usize> = (0..3).filter(|&k| k != leader).collect();
    let urls = std::iter::once(leader)
        .chain(others.iter().copied())
        .map(|k| cluster.url(k))
        .collect::<Vec<_>>()
        .join(",");
    let dir = tempfile::tempdir().expect("temp dir");
    let rule = format!("ACTION(FWD) FWDQ({target})");
    let prefetch = PREFETCH.to_string();
    let mut d = dlqd::start(
        dir.path(),
        &urls,
        &[
            "--queue",
            &dlq,
            "--rule",
            &rule,
            "--prefetch",
            &prefetch,
            "--stage-queues",
            "quorum",
        ],
    );

    let mut watch = Lab::connect(&cluster.url(others[0])).await;
    let started = Instant::now();
    let at_kill = loop {
        let n = watch.count(&target).await.unwrap_or(0) as usize;
        if n >= MESSAGES / 5 {
            break n;
        }
        assert!(
            d.running(),
            "dlqd exited before the kill:\n{}",
            d.stderr_tail(30)
        );
        assert!(
            started.elapsed() < Duration::from_secs(180),
            "dlqd forwarded only {n} in 180 s:\n{}",
            d.stderr_tail(30)
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    let killed_at = Instant::now();
    cluster = tokio::task::spawn_blocking(move || {
        cluster.crash(leader);
        cluster
    })
    .await
    .expect("crash");
    eprintln!("killed the DLQ leader (node {leader}) with {at_kill} of {MESSAGES} forwarded");

    // Resumed: the target grows again, through another node, from the same process.
    // (more than one in-flight window past the count at the kill: new deliveries.)
    let at_crash = watch.count(&target).await.unwrap_or(0) as usize;
    let resumed_after = loop {
        let n = watch.count(&target).await.unwrap_or(0) as usize;
        if n > at_kill.max(at_crash) + PREFETCH {
            break killed_at.elapsed();
        }
        assert!(
            d.running(),
            "dlqd exited after the kill:\n{}",
            d.stderr_tail(40)
        );
        assert!(
            killed_at.elapsed() < Duration::from_secs(120),
            "dlqd did not resume within 120 s of the kill (target holds {n}):\n{}",
            d.stderr_tail(40)
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    eprintln!(
        "resumed {:.1} s after the kill",
        resumed_after.as_secs_f64()
    );

    // Drained: the DLQ empty on the surviving nodes.
    let deadline = Instant::now() + Duration::from_secs(300);
    loop {
        let left = watch.count(&dlq).await.unwrap_or(u32::MAX);
        if left == 0 {
            break;
        }
        assert!(d.running(), "dlqd exited:\n{}", d.stderr_tail(40));
        assert!(
            Instant::now() < deadline,
            "the DLQ still holds {left}:\n{}",
            d.stderr_tail(40)
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let drained_after = started.elapsed();

    // The killed node comes back and rejoins; dlqd keeps running.
    let back_in = {
        let mut c = cluster;
        let (c, took) = tokio::task::spawn_blocking(move || {
            let took = c.boot(leader);
            (c, took)
        })
        .await
        .expect("restart");
        cluster = c;
        took
    };
    let status = cluster.running_nodes(others[0]);
    assert!(
        status.matches(&cluster.nodes[leader].name).count() >= 2,
        "node {leader} is not running in the cluster again: {status}"
    );
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert!(
        d.running(),
        "dlqd exited when the node came back:\n{}",
        d.stderr_tail(40)
    );

    // Count every message.
    let got = watch.drain(&target).await;
    let tally = lab::tally(got.iter().map(|g| g.id.as_str()));
    let lost: Vec<&String> = ids.iter().filter(|id| !tally.contains_key(*id)).collect();
    let strangers: Vec<&String> = tally.keys().filter(|k| !k.starts_with("c-")).collect();
    let duplicates = got.len() - tally.len();
    eprintln!(
        "cluster failover: {MESSAGES} messages, {} lost, {duplicates} duplicates, resumed {:.1} s \
         after the kill, drained in {:.1} s, node back in {:.1} s",
        lost.len(),
        resumed_after.as_secs_f64(),
        drained_after.as_secs_f64(),
        back_in.as_secs_f64()
    );
    assert!(
        lost.is_empty(),
        "{} lost, e.g. {:?}",
        lost.len(),
        &lost[..lost.len().min(5)]
    );
    assert!(strangers.is_empty(), "{strangers:?}");
    assert!(
        duplicates <= PREFETCH,
        "{duplicates} duplicates, more than the in-flight window of {PREFETCH}"
    );

    d.signal("TERM");
    let status = d.wait(Duration::from_secs(20)).await;
    assert!(
        status.success(),
        "dlqd exited {status}:\n{}",
        d.stderr_tail(30)
    );
    watch.cleanup().await;
    setup.cleanup().await;
    drop((watch, setup));
    drop(cluster);
}
