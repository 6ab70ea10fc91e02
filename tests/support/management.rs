//! The shared broker's management HTTP API, for tests that build a topology with
//! queue types, arguments, policies, bindings and users (`tests/check_broker.rs`):
//! `DLQD_TEST_MANAGEMENT_URL`, else the AMQP port + 10000 on the same host (5672 →
//! 15672, 5674 → 15674, 5675 → 15675) as guest. Everything made is deleted on drop.
//! An unreachable API fails the test with how to enable it.

use std::time::{Duration, Instant};

use base64::Engine as _;
use serde_json::{Value, json};

use super::broker;

/// Names the management API of the broker under test.
pub const URL_ENV: &str = "DLQD_TEST_MANAGEMENT_URL";

/// `http://guest:guest@HOST:PORT` of the broker under test.
pub fn url() -> String {
    if let Ok(u) = std::env::var(URL_ENV)
        && !u.is_empty()
    {
        return u;
    }
    let amqp = broker::url();
    let host = amqp
        .rsplit_once('@')
        .map_or(amqp, |(_, h)| h)
        .split([':', '/'])
        .next()
        .unwrap_or("127.0.0.1")
        .to_string();
    format!(
        "http://guest:guest@{host}:{}",
        u32::from(broker::port()) + 10000
    )
}

/// The vhost of the broker under test, percent-encoded (`%2f`).
pub fn vhost() -> String {
    broker::url()
        .rsplit_once('/')
        .map(|(_, v)| v.to_string())
        .filter(|v| !v.is_empty() && !v.contains('@'))
        .unwrap_or_else(|| "%2f".into())
}

enum Made {
    Queue(String),
    Exchange(String),
    Policy(String),
    User(String),
}

/// A session with the management API; deletes what it made when dropped.
pub struct Mgmt {
    base: String,
    auth: String,
    agent: ureq::Agent,
    made: Vec<Made>,
}

fn enc(s: &str) -> String {
    s.bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}

impl Mgmt {
    /// Connect, or fail saying how to enable the management plugin.
    pub fn connect() -> Mgmt {
        let url = url();
        let (scheme, rest) = url.split_once("://").expect("management URL with a scheme");
        let (creds, host) = rest.rsplit_once('@').unwrap_or(("guest:guest", rest));
        let agent: ureq::Agent = ureq::Agent::config_builder()
            .timeout_global(Some(Duration::from_secs(30)))
            .http_status_as_error(false)
            .build()
            .into();
        let m = Mgmt {
            base: format!("{scheme}://{}", host.trim_end_matches('/')),
            auth: format!(
                "Basic {}",
                base64::engine::general_purpose::STANDARD.encode(creds)
            ),
            agent,
            made: Vec::new(),
        };
        let ok = m
            .agent
            .get(format!("{}/api/overview", m.base))
            .header("Authorization", &m.auth)
            .call()
            .map(|r| r.status().as_u16());
        match ok {
            Ok(200) => m,
            other => panic!(
                "the management API of the broker under test is not reachable at {} ({other:?}): \
                 enable it with `rabbitmq-plugins enable rabbitmq_management` (scripts/broker-matrix.sh \
                 enables it on the 4.0 and 4.x nodes, ports 15674 and 15675), or name it with {URL_ENV}",
                m.base
            ),
        }
    }

    /// The base URL without credentials.
    pub fn base(&self) -> &str {
        &self.base
    }

    fn call(&self, method: &str, path: &str, body: Option<Value>) -> (u16, String) {
        let url = format!("{}/api/{path}", self.base);
        let result = match (method, body) {
            ("GET", _) => self
                .agent
                .get(&url)
                .header("Authorization", &self.auth)
                .call(),
            ("DELETE", _) => self
                .agent
                .delete(&url)
                .header("Authorization", &self.auth)
                .call(),
            (m, Some(b)) => {
                let req = if m == "PUT" {
                    self.agent.put(&url)
                } else {
                    self.agent.post(&url)
                };
                req.header("Authorization", &self.auth)
                    .header("content-type", "application/json")
                    .send(b.to_string())
            }
            (m, None) => panic!("{m} without a body"),
        };
        let mut resp = result.unwrap_or_else(|e| panic!("{method} {url}: {e}"));
        let status = resp.status().as_u16();
        let text = resp.body_mut().read_to_string().unwrap_or_default();
        (status, text)
    }

    fn ok(&self, method: &str, path: &str, body: Value) {
        let (status, text) = self.call(method, path, Some(body));
        assert!(
            (200..300).contains(&status),
            "{method} /api/{path}: HTTP {status}: {text}"
        );
    }

    /// GET a JSON document.
    pub fn get(&self, path: &str) -> Value {
        let (status, text) = self.call("GET", path, None);
        assert_eq!(status, 200, "GET /api/{path}: {text}");
        serde_json::from_str(&text).expect("JSON")
    }

    /// The broker's version, e.g. `3.10.8`.
    pub fn version(&self) -> String {
        self.get("overview")["rabbitmq_version"]
            .as_str()
            .unwrap_or_default()
            .to_string()
    }

    /// Declare a durable queue with these arguments (`x-queue-type` among them).
    pub fn queue(&mut self, name: &str, arguments: Value) {
        self.ok(
            "PUT",
            &format!("queues/{}/{}", vhost(), enc(name)),
            json!({"durable": true, "arguments": arguments}),
        );
        self.made.push(Made::Queue(name.to_string()));
    }

    /// Declare a durable exchange of `kind`.
    pub fn exchange(&mut self, name: &str, kind: &str) {
        self.ok(
            "PUT",
            &format!("exchanges/{}/{}", vhost(), enc(name)),
            json!({"type": kind, "durable": true}),
        );
        self.made.push(Made::Exchange(name.to_string()));
    }

    /// Bind `queue` to `exchange` with `key`.
    pub fn bind(&self, exchange: &str, queue: &str, key: &str) {
        self.ok(
            "POST",
            &format!("bindings/{}/e/{}/q/{}", vhost(), enc(exchange), enc(queue)),
            json!({"routing_key": key}),
        );
    }

    /// A queue policy; waits until `queue` shows it as its effective policy.
    pub fn policy(&mut self, name: &str, queue: &str, definition: Value) {
        let pattern = format!("^{}$", regex::escape(queue));
        self.ok(
            "PUT",
            &format!("policies/{}/{}", vhost(), enc(name)),
            json!({"pattern": pattern, "definition": definition, "apply-to": "queues", "priority": 100}),
        );
        self.made.push(Made::Policy(name.to_string()));
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let q = self.get(&format!("queues/{}/{}", vhost(), enc(queue)));
            if q["policy"].as_str() == Some(name) {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "policy {name} not applied to {queue}: {q}"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// A user with no tags and these permissions on the vhost under test.
    pub fn user(&mut self, name: &str, password: &str, configure: &str, write: &str, read: &str) {
        self.ok(
            "PUT",
            &format!("users/{}", enc(name)),
            json!({"password": password, "tags": ""}),
        );
        self.made.push(Made::User(name.to_string()));
        self.ok(
            "PUT",
            &format!("permissions/{}/{}", vhost(), enc(name)),
            json!({"configure": configure, "write": write, "read": read}),
        );
    }
}

impl Drop for Mgmt {
    fn drop(&mut self) {
        for m in std::mem::take(&mut self.made).into_iter().rev() {
            let path = match &m {
                Made::Queue(q) => format!("queues/{}/{}", vhost(), enc(q)),
                Made::Exchange(e) => format!("exchanges/{}/{}", vhost(), enc(e)),
                Made::Policy(p) => format!("policies/{}/{}", vhost(), enc(p)),
                Made::User(u) => format!("users/{}", enc(u)),
            };
            let _ = self.call("DELETE", &path, None);
        }
    }
}
