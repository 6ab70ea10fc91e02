//! A private, throwaway RabbitMQ node for tests that need their own users, permissions,
//! TLS listener or frame size — never the shared node at 127.0.0.1:5672. It follows the
//! recipe in shared/notes/rabbitmq.md: free ports, a fresh temp directory for mnesia,
//! logs, config, plugins (none) and HOME (so its Erlang cookie is its own), started with
//! /usr/lib/rabbitmq/bin/rabbitmq-server and stopped (with its epmd) on drop.
#![allow(dead_code)]

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const SERVER: &str = "/usr/lib/rabbitmq/bin/rabbitmq-server";
const CTL: &str = "/usr/lib/rabbitmq/bin/rabbitmqctl";

/// A port nothing listens on right now.
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

/// A free port `p` with `p + 20000` (the node's distribution port) free too.
fn free_node_port() -> u16 {
    for _ in 0..200 {
        let p = free_port();
        if p < 45000 && TcpListener::bind(("127.0.0.1", p + 20000)).is_ok() {
            return p;
        }
    }
    panic!("no free port pair for a private RabbitMQ node");
}

/// A running private node; stopped when dropped.
pub struct PrivateNode {
    pub port: u16,
    pub epmd_port: u16,
    pub nodename: String,
    pub dir: tempfile::TempDir,
    child: Option<Child>,
}

impl PrivateNode {
    /// Start a node whose rabbitmq.conf gets `extra_conf` appended (e.g. a TLS listener
    /// or `frame_max`); waits until it accepts connections.
    pub fn start(extra_conf: &str) -> PrivateNode {
        assert!(
            Path::new(SERVER).exists(),
            "{SERVER} is missing: install RabbitMQ with `apt-get install -y rabbitmq-server`"
        );
        let dir = tempfile::Builder::new()
            .prefix("dlqd-private-node.")
            .tempdir()
            .expect("temp dir");
        let port = free_node_port();
        let epmd_port = free_port();
        let nodename = format!("dlqd-test-{port}@localhost");
        std::fs::write(dir.path().join("enabled_plugins"), "[].\n").expect("plugins file");
        std::fs::write(dir.path().join("rabbitmq-env.conf"), "").expect("env file");
        std::fs::write(dir.path().join("advanced.config"), "[].\n").expect("advanced.config");
        let conf = format!(
            "loopback_users = none\nlog.console = false\nlog.file.level = info\n{extra_conf}\n"
        );
        std::fs::write(dir.path().join("rabbitmq.conf"), conf).expect("rabbitmq.conf");
        let mut node = PrivateNode {
            port,
            epmd_port,
            nodename,
            dir,
            child: None,
        };
        let mut cmd = Command::new(SERVER);
        node.env(&mut cmd);
        let log = std::fs::File::create(node.dir.path().join("server.out")).expect("log");
        let child = cmd
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("log"))
            .stderr(log)
            .spawn()
            .expect("start rabbitmq-server");
        node.child = Some(child);
        node.await_startup();
        node
    }

    fn env(&self, cmd: &mut Command) {
        let d = self.dir.path();
        let p = |name: &str| d.join(name).display().to_string();
        cmd.env("RABBITMQ_NODENAME", &self.nodename)
            .env("RABBITMQ_NODE_PORT", self.port.to_string())
            .env("RABBITMQ_NODE_IP_ADDRESS", "127.0.0.1")
            .env(
                "RABBITMQ_DIST_PORT",
                (u32::from(self.port) + 20000).to_string(),
            )
            .env("ERL_EPMD_PORT", self.epmd_port.to_string())
            .env("RABBITMQ_MNESIA_BASE", p("mnesia"))
            .env("RABBITMQ_LOG_BASE", p("log"))
            .env("RABBITMQ_ENABLED_PLUGINS_FILE", p("enabled_plugins"))
            .env("RABBITMQ_CONFIG_FILE", p("rabbitmq"))
            .env("RABBITMQ_ADVANCED_CONFIG_FILE", p("advanced.config"))
            .env("RABBITMQ_CONF_ENV_FILE", p("rabbitmq-env.conf"))
            .env("RABBITMQ_PID_FILE", p("pid"))
            .env("HOME", d);
    }

    fn await_startup(&mut self) {
        let start = Instant::now();
        loop {
            if let Some(child) = self.child.as_mut()
                && let Ok(Some(status)) = child.try_wait()
            {
                panic!(
                    "private RabbitMQ node exited at start ({status}):\n{}",
                    self.server_log()
                );
            }
            let ok = std::net::TcpStream::connect(("127.0.0.1", self.port)).is_ok()
                && self.try_ctl(&["await_startup", "--timeout", "5"]).is_ok();
            if ok {
                return;
            }
            if start.elapsed() > Duration::from_secs(90) {
                panic!(
                    "private RabbitMQ node did not start in 90 s:\n{}",
                    self.server_log()
                );
            }
            std::thread::sleep(Duration::from_millis(300));
        }
    }

    /// What the server printed (for failures).
    pub fn server_log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("server.out")).unwrap_or_default()
    }

    /// `rabbitmqctl -n NODE args...`; Err with its output when it fails.
    pub fn try_ctl(&self, args: &[&str]) -> Result<String, String> {
        let mut cmd = Command::new(CTL);
        self.env(&mut cmd);
        let out = cmd
            .arg("-n")
            .arg(&self.nodename)
            .args(args)
            .stdin(Stdio::null())
            .output()
            .map_err(|e| e.to_string())?;
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        if out.status.success() {
            Ok(text)
        } else {
            Err(text)
        }
    }

    /// `rabbitmqctl`, panicking on failure.
    pub fn ctl(&self, args: &[&str]) -> String {
        self.try_ctl(args)
            .unwrap_or_else(|e| panic!("rabbitmqctl {args:?} failed: {e}"))
    }

    /// An amqp:// URL for `user:pass` on this node's plain listener.
    pub fn url(&self, user: &str, pass: &str) -> String {
        format!("amqp://{user}:{pass}@127.0.0.1:{}/%2f", self.port)
    }

    /// A path inside the node's temp directory.
    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }
}

impl Drop for PrivateNode {
    fn drop(&mut self) {
        let _ = self.try_ctl(&["stop"]);
        if let Some(mut child) = self.child.take() {
            let deadline = Instant::now() + Duration::from_secs(15);
            while Instant::now() < deadline {
                if let Ok(Some(_)) = child.try_wait() {
                    break;
                }
                std::thread::sleep(Duration::from_millis(100));
            }
            let _ = child.kill();
            let _ = child.wait();
        }
        let _ = Command::new("epmd")
            .arg("-kill")
            .env("ERL_EPMD_PORT", self.epmd_port.to_string())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
    }
}
