//! Helpers for the hardening tests (tests/poison.rs, tests/secrets.rs, ...) against the
//! shared RabbitMQ at 127.0.0.1:5672: unique queue names, publishing hand-made (poison)
//! messages, reading a queue back without losing anything, running the dlqd binary with
//! a time limit. Queues a test declares are deleted by [`Broker::cleanup`].
#![allow(dead_code)]

use std::io::Read;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use lapin::options::*;
use lapin::types::{AMQPValue, FieldTable, LongString};
use lapin::{BasicProperties, Channel, Connection, ConnectionProperties};

#[allow(unused_imports)] // not every test file uses every re-export
pub use crate::support::broker::{text, url};

/// A queue name no other test (or test run) uses.
pub fn unique(prefix: &str) -> String {
    crate::support::broker::unique(&format!("dlqd-hardening.{prefix}"))
}

pub fn bytes(b: &[u8]) -> AMQPValue {
    AMQPValue::LongString(LongString::from(b.to_vec()))
}

pub fn table(pairs: Vec<(&str, AMQPValue)>) -> FieldTable {
    crate::support::broker::table(&pairs)
}

/// A message read back from a queue.
#[derive(Debug, Clone)]
pub struct Got {
    pub body: Vec<u8>,
    pub properties: BasicProperties,
}

impl Got {
    pub fn id(&self) -> String {
        self.properties
            .message_id()
            .as_ref()
            .map(|s| s.as_str().to_string())
            .unwrap_or_default()
    }

    pub fn header(&self, name: &str) -> Option<&AMQPValue> {
        self.properties.headers().as_ref()?.inner().get(name)
    }
}

/// A connection to a broker and the queues this test made.
pub struct Broker {
    pub conn: Connection,
    pub ch: Channel,
    created: Vec<String>,
}

impl Broker {
    /// Connect to the shared node; fail saying how to start it.
    pub async fn shared() -> Broker {
        Broker::connect(url())
            .await
            .unwrap_or_else(|e| panic!("{}", crate::support::broker::no_broker(&e)))
    }

    pub async fn connect(url: &str) -> Result<Broker, lapin::Error> {
        let conn = Connection::connect(url, ConnectionProperties::default()).await?;
        let ch = conn.create_channel().await?;
        ch.confirm_select(ConfirmSelectOptions::default()).await?;
        Ok(Broker {
            conn,
            ch,
            created: Vec::new(),
        })
    }

    /// Declare a durable queue with `args`, remembered for cleanup.
    pub async fn queue(&mut self, name: &str, args: FieldTable) {
        self.ch
            .queue_declare(name.into(), QueueDeclareOptions::durable(), args)
            .await
            .unwrap_or_else(|e| panic!("declare {name}: {e}"));
        self.created.push(name.to_string());
    }

    /// Publish to the default exchange and wait for the broker's confirm.
    pub async fn publish(&self, queue: &str, body: &[u8], props: BasicProperties) {
        let confirm = self
            .ch
            .basic_publish(
                "".into(),
                queue.into(),
                BasicPublishOptions {
                    mandatory: true,
                    ..Default::default()
                },
                body,
                props,
            )
            .await
            .unwrap_or_else(|e| panic!("publish to {queue}: {e}"))
            .await
            .unwrap_or_else(|e| panic!("confirm from {queue}: {e}"));
        assert!(
            matches!(confirm, lapin::Confirmation::Ack(None)),
            "publish to {queue} not confirmed cleanly: {confirm:?}"
        );
    }

    pub async fn depth(&self, queue: &str) -> u32 {
        let ch = self.conn.create_channel().await.expect("channel");
        crate::support::broker::depth_on(ch, queue)
            .await
            .unwrap_or_else(|e| panic!("passive declare {queue}: {e}"))
    }

    /// Take every message from `queue` (basic.get + ack), in order.
    pub async fn drain(&self, queue: &str) -> Vec<Got> {
        let mut out = Vec::new();
        while let Some(m) = self
            .ch
            .basic_get(queue.into(), BasicGetOptions { no_ack: false })
            .await
            .unwrap_or_else(|e| panic!("get from {queue}: {e}"))
        {
            self.ch
                .basic_ack(m.delivery.delivery_tag, BasicAckOptions::default())
                .await
                .expect("ack");
            out.push(Got {
                body: m.delivery.data,
                properties: m.delivery.properties,
            });
        }
        out
    }

    /// Delete every queue this test declared.
    pub async fn cleanup(&self) {
        for q in crate::support::broker::with_dlqd_queues(self.created.clone()) {
            // A channel each: a delete that fails closes its channel.
            if let Ok(ch) = self.conn.create_channel().await {
                let _ = ch
                    .queue_delete(q.as_str().into(), QueueDeleteOptions::default())
                    .await;
                let _ = ch.close(200, "done".into()).await;
            }
        }
    }
}

/// Persistent properties with a message id.
pub fn props(id: &str) -> BasicProperties {
    BasicProperties::default()
        .with_message_id(id.into())
        .with_delivery_mode(2)
}

/// Run the dlqd binary with `args` and `DLQD_URL=url`; kill it after `limit`.
pub fn dlqd(args: &[&str], url: &str, limit: Duration) -> Output {
    dlqd_env(args, &[("DLQD_URL", url)], limit)
}

/// Run the dlqd binary with `args` and environment `env`; kill it after `limit`.
pub fn dlqd_env(args: &[&str], env: &[(&str, &str)], limit: Duration) -> Output {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_dlqd"));
    cmd.args(args)
        .env_remove("DLQD_URL")
        .env_remove("DLQD_LOG")
        .env("NO_COLOR", "1")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    for (k, v) in env {
        cmd.env(k, v);
    }
    let mut child = cmd.spawn().expect("spawn dlqd");
    let mut stdout = child.stdout.take().expect("stdout");
    let mut stderr = child.stderr.take().expect("stderr");
    let out_reader = std::thread::spawn(move || {
        let mut b = Vec::new();
        let _ = stdout.read_to_end(&mut b);
        b
    });
    let err_reader = std::thread::spawn(move || {
        let mut b = Vec::new();
        let _ = stderr.read_to_end(&mut b);
        b
    });
    let start = Instant::now();
    let status = loop {
        if let Some(s) = child.try_wait().expect("wait") {
            break s;
        }
        if start.elapsed() > limit {
            let _ = child.kill();
            let s = child.wait().expect("wait");
            let err = String::from_utf8_lossy(&err_reader.join().unwrap_or_default()).into_owned();
            panic!(
                "dlqd {args:?} still running after {limit:?}; killed ({s}); stderr (last 4000 bytes):\n{}",
                tail(&err, 4000)
            );
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    Output {
        status,
        stdout: out_reader.join().unwrap_or_default(),
        stderr: err_reader.join().unwrap_or_default(),
    }
}

/// The last `n` bytes of `s` (on a character boundary), for readable failures.
pub fn tail(s: &str, n: usize) -> &str {
    let mut start = s.len().saturating_sub(n);
    while !s.is_char_boundary(start) {
        start += 1;
    }
    &s[start..]
}

/// stderr as text.
pub fn stderr_of(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// Run the dlqd binary for `for_at_most`, then stop it (SIGKILL) if it is still running:
/// for commands that retry forever (an unreachable broker). The output so far.
pub fn dlqd_for(args: &[&str], env: &[(&str, &str)], for_at_most: Duration) -> Output {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_dlqd"));
    cmd.args(args)
        .env_remove("DLQD_URL")
        .env_remove("DLQD_LOG")
        .env("NO_COLOR", "1")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    for (k, v) in env {
        cmd.env(k, v);
    }
    let mut child = cmd.spawn().expect("spawn dlqd");
    let start = Instant::now();
    while start.elapsed() < for_at_most {
        if child.try_wait().expect("wait").is_some() {
            break;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let _ = child.kill();
    child.wait_with_output().expect("output")
}
