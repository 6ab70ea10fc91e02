//! Helpers for the `dlqd run` tests (tests/run.rs, ops.rs, quorum.rs): the broker
//! fixture ([`crate::support::fixture`]) and the ways of dead-lettering re-exported,
//! unique names, message properties, rules files, running the dlqd binary.
#![allow(dead_code)]

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::ExitStatus;
use std::time::Duration;

use lapin::BasicProperties;

#[allow(unused_imports)] // not every test file uses every re-export
pub use crate::support::broker::{Way, text, url};
pub use crate::support::dlqd::Dlqd;
#[allow(unused_imports)] // not every test file uses every re-export
pub use crate::support::fixture::{Broker, Got};
#[allow(unused_imports)] // not every test file uses every re-export
pub use crate::support::proxy::Proxy;
use crate::support::{broker, dlqd};

/// A name no other test (or test run) uses.
pub fn unique(prefix: &str) -> String {
    broker::unique(&format!("dlqd-test.{prefix}"))
}

/// Properties with a message id and an `act` header (which test rules match on).
pub fn props(id: &str, act: &str) -> BasicProperties {
    BasicProperties::default()
        .with_message_id(id.into())
        .with_delivery_mode(2)
        .with_headers(broker::table(&[("act", text(act))]))
}

/// A temp dir with a rules file in it.
pub fn rules_file(dir: &Path, text: &str) -> PathBuf {
    let path = dir.join("test.rules");
    std::fs::write(&path, text).expect("write rules");
    path
}

/// Start `dlqd run ARGS...` against the test broker.
pub fn start_dlqd(dir: &Path, run_args: &[&str]) -> Dlqd {
    dlqd::start(dir, url(), run_args)
}

/// Run `dlqd run ARGS...` to completion (at most `timeout`); exit status and stderr.
pub async fn run_dlqd(dir: &Path, run_args: &[&str], timeout: Duration) -> (ExitStatus, String) {
    let mut d = start_dlqd(dir, run_args);
    let status = d.wait(timeout).await;
    (status, d.stderr())
}

/// `dlqd run --rules RULES --once` in `dir`: asserts it exits 0, returns its stderr.
pub async fn run_once(dir: &Path, rules: &Path, timeout: Duration) -> String {
    let rules = rules.to_str().expect("rules path is UTF-8");
    let (status, stderr) = run_dlqd(dir, &["--rules", rules, "--once"], timeout).await;
    assert!(status.success(), "dlqd run --once: {status}\n{stderr}");
    stderr
}

/// `dlqd run --rules RULES --once` whose actions fail: asserts it exits 3 (messages left
/// on the DLQ), returns its stderr.
pub async fn run_once_failing(dir: &Path, rules: &Path, timeout: Duration) -> String {
    let rules = rules.to_str().expect("rules path is UTF-8");
    let (status, stderr) = run_dlqd(dir, &["--rules", rules, "--once"], timeout).await;
    assert_eq!(
        status.code(),
        Some(3),
        "dlqd run --once with failed actions exits 3: {status}\n{stderr}"
    );
    stderr
}

/// Bodies as strings, for order and identity checks.
pub fn bodies(got: &[Got]) -> Vec<String> {
    got.iter().map(Got::text).collect()
}

/// How many of each body.
pub fn tally(got: &[Got]) -> BTreeMap<String, usize> {
    let mut m = BTreeMap::new();
    for g in got {
        *m.entry(g.text()).or_insert(0) += 1;
    }
    m
}

/// Start `dlqd run ARGS...` against another broker URL (e.g. a [`Proxy`]).
pub fn start_dlqd_at(dir: &Path, url: &str, run_args: &[&str]) -> Dlqd {
    dlqd::start(dir, url, run_args)
}
