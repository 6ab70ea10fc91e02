//! Passwords never appear in logs or errors: every command that talks to a broker, with
//! a distinctive password in `--url` and in `DLQD_URL`, raw and percent-encoded, in text
//! and JSON logs, against a port nothing listens on, a wrong password on the shared node
//! (ACCESS_REFUSED) and a malformed URL. The redacted URL (`user:***@`) is what shows.
//! (Refused access and a refused forward on a private node: tests/permissions.rs.)

mod hardening_common;
mod support;

use std::time::Duration;

use hardening_common::*;

/// A distinctive password; `%40` is `@` percent-encoded, so both forms are checked.
const RAW: &str = "Xk7-s3cr3t%40pw";
const DECODED: &str = "Xk7-s3cr3t@pw";

fn commands(queue: &str) -> Vec<Vec<String>> {
    let v = |a: &[&str]| a.iter().map(|s| s.to_string()).collect::<Vec<_>>();
    vec![
        v(&[
            "run",
            "--once",
            "--queue",
            queue,
            "--rule",
            "ACTION(IGNORE)",
        ]),
        v(&["capture", "--queue", queue, "--limit", "1"]),
        v(&["inspect", "--queue", queue]),
    ]
}

fn assert_clean(what: &str, out: &std::process::Output) {
    let err = stderr_of(out);
    let stdout = String::from_utf8_lossy(&out.stdout);
    for secret in [RAW, DECODED, "s3cr3t"] {
        assert!(
            !err.contains(secret) && !stdout.contains(secret),
            "{what}: the password shows:\nstderr: {err}\nstdout: {stdout}"
        );
    }
    assert_ne!(
        out.status.code(),
        Some(101),
        "{what}: dlqd panicked:\n{}",
        tail(&err, 3000)
    );
    assert!(!err.contains("panicked"), "{what}: {}", tail(&err, 3000));
}

/// Each command, each log format, the URL given by flag and by environment.
fn check_all(url: &str, queue: &str, expect_exit: bool, must_show: &str) {
    for cmd in commands(queue) {
        for format in ["text", "json"] {
            for by_env in [false, true] {
                let mut args: Vec<&str> = vec!["--log-format", format];
                args.extend(cmd.iter().map(String::as_str));
                let env: Vec<(&str, &str)> = if by_env {
                    vec![("DLQD_URL", url)]
                } else {
                    args.extend(["--url", url]);
                    vec![]
                };
                let out = dlqd_for(&args, &env, Duration::from_secs(4));
                let what = format!("{args:?} (DLQD_URL: {by_env})");
                assert_clean(&what, &out);
                let err = stderr_of(&out);
                assert!(
                    err.contains(must_show),
                    "{what}: expected {must_show:?} in:\n{}",
                    tail(&err, 3000)
                );
                if expect_exit {
                    assert_eq!(out.status.code(), Some(1), "{what}: exit 1:\n{err}");
                }
            }
        }
    }
}

#[test]
fn no_password_when_nothing_listens() {
    // Port 1: connection refused. `run` retries (and is stopped); the others give up.
    let url = format!("amqp://guest:{RAW}@127.0.0.1:1/%2f");
    check_all(
        &url,
        "dlqd-hardening.secrets.none",
        false,
        "guest:***@127.0.0.1:1",
    );
}

#[test]
fn no_password_on_a_malformed_url() {
    let url = format!("amqp://guest:{RAW}@127.0.0.1:notaport/%2f");
    check_all(&url, "dlqd-hardening.secrets.none", true, "guest:***@");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_password_when_the_broker_refuses_it() {
    // The shared node, a wrong password for guest: ACCESS_REFUSED at login.
    let mut b = Broker::shared().await;
    let q = unique("secrets");
    b.queue(&q, &[]).await;
    let url = format!("amqp://guest:{RAW}@127.0.0.1:5672/%2f");
    let q2 = q.clone();
    tokio::task::spawn_blocking(move || check_all(&url, &q2, true, "guest:***@127.0.0.1:5672"))
        .await
        .expect("join");
    b.cleanup().await;
}

/// Seen: a generated password with an unencoded `/`, `#` or `?` made the URL unparsable
/// and the error printed the whole URL, password included.
#[test]
fn no_password_when_it_holds_unencoded_url_delimiters() {
    for pass in [
        "Xk7-s3cr3t/pw",
        "Xk7-s3cr3t#pw",
        "Xk7-s3cr3t?pw",
        "Xk7/s3cr3t#p?w",
    ] {
        let url = format!("amqp://guest:{pass}@127.0.0.1:5672/%2f");
        check_all(&url, "dlqd-hardening.secrets.none", true, "percent-encode");
    }
}

/// Seen: `amqp:/guest:PASS@host/%2f` (one slash) was taken for a URL whose vhost held
/// the user information; the broker's "vhost guest:PASS@host// not found" carried the
/// password into the error of every command. Such URLs (one slash, none, or `amqp:///`
/// followed by user information) are refused before anything is sent.
#[test]
fn no_password_when_the_url_has_one_slash() {
    let root = env!("CARGO_MANIFEST_DIR");
    let capture = format!("{root}/fixtures/captures/rejected.jsonl");
    let rules = format!("{root}/fixtures/rules/spec-example.rules");
    for url in [
        format!("amqp:/guest:{RAW}@127.0.0.1/%2f"),
        format!("amqp:guest:{RAW}@127.0.0.1/%2f"),
        format!("amqp:///guest:{RAW}@127.0.0.1/%2f"),
    ] {
        let mut all = commands("dlqd-hardening.secrets.none");
        all.push(
            [
                "publish",
                &capture,
                "--queue",
                "dlqd-hardening.secrets.none",
            ]
            .map(String::from)
            .to_vec(),
        );
        for cmd in all {
            let mut args: Vec<&str> = cmd.iter().map(String::as_str).collect();
            args.extend(["--url", &url]);
            let out = dlqd_for(&args, &[], Duration::from_secs(10));
            assert_clean(&format!("{args:?}"), &out);
            assert_eq!(out.status.code(), Some(1), "{args:?}: {}", stderr_of(&out));
            assert!(
                stderr_of(&out).contains("a broker URL starts with amqp://")
                    || stderr_of(&out).contains("has no host"),
                "{args:?}: {}",
                stderr_of(&out)
            );
        }
        let args = ["check", "--broker", &url, &rules];
        let out = dlqd_for(&args, &[], Duration::from_secs(10));
        assert_clean(&format!("{args:?}"), &out);
        assert_eq!(out.status.code(), Some(1), "{args:?}: {}", stderr_of(&out));
    }
}
