//! A three-node RabbitMQ 4.x cluster on this machine, for failover tests: three nodes
//! of the newest 4.x (the debootstrap chroot that `scripts/broker-matrix.sh build 4.x`
//! makes, `DLQD_TEST_RABBITMQ_4X_ROOT` to use another), each with its own ports, data
//! and log directories inside the chroot, one Erlang cookie and one epmd, joined into one
//! cluster. A node can be crashed (`kill -9` of its beam.smp) and started again on the
//! same data (it rejoins). Dropping the cluster kills every node, stops its epmd and
//! removes the directories. The machine's own node and the matrix nodes are never
//! touched: every kill checks the process's environment names this cluster's node.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use super::private_node::accepts_amqp;

/// The environment variable naming the 4.x chroot.
pub const ROOT_ENV: &str = "DLQD_TEST_RABBITMQ_4X_ROOT";
const DEFAULT_ROOT: &str = "/var/lib/dlqd-brokers/4.x";
const BOOT_TIMEOUT: Duration = Duration::from_secs(180);

/// One node of the cluster.
pub struct Node {
    pub name: String,
    pub port: u16,
    dist_port: u16,
    /// Its directory, as seen inside the chroot.
    dir: String,
    server: Option<Child>,
}

/// Three clustered nodes.
pub struct Cluster {
    root: PathBuf,
    /// The cluster's directory inside the chroot (`/tmp/dlqd-cluster.<pid>.<nanos>`).
    base: String,
    epmd_port: u16,
    pub nodes: Vec<Node>,
}

fn free(port: u16) -> bool {
    std::net::TcpListener::bind(("127.0.0.1", port)).is_ok()
}

impl Cluster {
    /// Start three nodes and cluster them; panics saying what to do when the 4.x chroot
    /// is missing or a node does not come up.
    pub fn start() -> Cluster {
        let root = PathBuf::from(std::env::var(ROOT_ENV).unwrap_or_else(|_| DEFAULT_ROOT.into()));
        assert!(
            root.join("usr/lib/rabbitmq/bin/rabbitmq-server").exists(),
            "no RabbitMQ 4.x chroot at {}: build one with `scripts/broker-matrix.sh build 4.x` \
             (or name one with {ROOT_ENV})",
            root.display()
        );
        mount_proc(&root);
        let nanos = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.subsec_nanos())
            .unwrap_or(0);
        let tag = format!("{}-{nanos:x}", std::process::id());
        let base = format!("/tmp/dlqd-cluster.{tag}");
        let host_base = root.join(base.trim_start_matches('/'));
        std::fs::create_dir_all(&host_base).expect("cluster dir");
        let cookie = host_base.join(".erlang.cookie");
        std::fs::write(&cookie, format!("DLQDCLUSTER{nanos:X}")).expect("cookie");
        set_mode(&cookie, 0o400);
        // Ports: three AMQP ports P, P+1, P+2 with distribution ports P+20000.., one epmd.
        let (port, epmd_port) = (0..1000)
            .map(|i| {
                let p = 31000 + ((u64::from(nanos) + i * 7919) % 9000) as u16;
                let e = 14000 + ((u64::from(nanos) / 7 + i * 104_729) % 5000) as u16;
                (p, e)
            })
            .find(|(p, e)| (0..3).all(|k| free(p + k) && free(p + k + 20000)) && free(*e))
            .expect("free ports for a cluster");
        let mut cluster = Cluster {
            root,
            base: base.clone(),
            epmd_port,
            nodes: Vec::new(),
        };
        for k in 0..3u16 {
            let dir = format!("{base}/node{k}");
            let host_dir = cluster.host(&dir);
            std::fs::create_dir_all(&host_dir).expect("node dir");
            std::fs::write(host_dir.join("enabled_plugins"), "[].\n").expect("enabled_plugins");
            cluster.nodes.push(Node {
                name: format!("dlqd-c{k}-{tag}@localhost"),
                port: port + k,
                dist_port: port + k + 20000,
                dir,
                server: None,
            });
        }
        for k in 0..3 {
            cluster.boot(k);
        }
        let first = cluster.nodes[0].name.clone();
        for k in 1..3 {
            cluster.ctl(k, &["stop_app"]);
            cluster.ctl(k, &["join_cluster", &first]);
            cluster.ctl(k, &["start_app"]);
            cluster.wait_amqp(k);
        }
        let status = cluster.ctl(0, &["cluster_status", "--formatter", "json"]);
        for n in &cluster.nodes {
            assert!(
                status.contains(&n.name),
                "{} not in the cluster: {status}",
                n.name
            );
        }
        eprintln!(
            "cluster of {} on ports {}..{} is up",
            cluster.nodes.len(),
            port,
            port + 2
        );
        cluster
    }

    fn host(&self, inside: &str) -> PathBuf {
        self.root.join(inside.trim_start_matches('/'))
    }

    /// `amqp://guest:guest@127.0.0.1:<port>/%2f` of node `k`.
    pub fn url(&self, k: usize) -> String {
        format!("amqp://guest:guest@127.0.0.1:{}/%2f", self.nodes[k].port)
    }

    fn env(&self, k: usize) -> Vec<(&'static str, String)> {
        let n = &self.nodes[k];
        let p = |f: &str| format!("{}/{f}", n.dir);
        vec![
            ("PATH", "/usr/sbin:/usr/bin:/sbin:/bin".into()),
            ("LANG", "C.UTF-8".into()),
            ("LC_ALL", "C.UTF-8".into()),
            ("HOME", self.base.clone()),
            ("RABBITMQ_NODENAME", n.name.clone()),
            ("RABBITMQ_NODE_PORT", n.port.to_string()),
            ("RABBITMQ_NODE_IP_ADDRESS", "127.0.0.1".into()),
            ("RABBITMQ_DIST_PORT", n.dist_port.to_string()),
            ("ERL_EPMD_PORT", self.epmd_port.to_string()),
            ("ERL_EPMD_ADDRESS", "127.0.0.1".into()),
            ("RABBITMQ_MNESIA_BASE", p("mnesia")),
            ("RABBITMQ_LOG_BASE", p("log")),
            ("RABBITMQ_ENABLED_PLUGINS_FILE", p("enabled_plugins")),
            ("RABBITMQ_CONFIG_FILE", p("rabbitmq")),
            ("RABBITMQ_ADVANCED_CONFIG_FILE", p("advanced.config")),
            ("RABBITMQ_CONF_ENV_FILE", p("rabbitmq-env.conf")),
            ("RABBITMQ_PID_FILE", p("pid")),
        ]
    }

    /// Start node `k` (again) and wait until it accepts AMQP; how long that took.
    pub fn boot(&mut self, k: usize) -> Duration {
        let out_path = self.host(&format!("{}/server.out", self.nodes[k].dir));
        let out = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&out_path)
            .expect("server.out");
        let err = out.try_clone().expect("server.out");
        let started = Instant::now();
        let child = Command::new("chroot")
            .arg(&self.root)
            .arg("/usr/lib/rabbitmq/bin/rabbitmq-server")
            .env_clear()
            .envs(self.env(k))
            .stdin(Stdio::null())
            .stdout(Stdio::from(out))
            .stderr(Stdio::from(err))
            .spawn()
            .expect("start a cluster node (chroot)");
        self.nodes[k].server = Some(child);
        self.wait_amqp(k);
        started.elapsed()
    }

    fn wait_amqp(&mut self, k: usize) {
        let started = Instant::now();
        while !accepts_amqp(self.nodes[k].port) {
            if let Some(Ok(Some(status))) = self.nodes[k].server.as_mut().map(Child::try_wait) {
                panic!(
                    "cluster node {} exited during boot ({status}):\n{}",
                    self.nodes[k].name,
                    self.output_tail(k)
                );
            }
            assert!(
                started.elapsed() < BOOT_TIMEOUT,
                "cluster node {} did not accept AMQP within {BOOT_TIMEOUT:?}:\n{}",
                self.nodes[k].name,
                self.output_tail(k)
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    fn output_tail(&self, k: usize) -> String {
        let text = std::fs::read_to_string(self.host(&format!("{}/server.out", self.nodes[k].dir)))
            .unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(30)..].join("\n")
    }

    /// `rabbitmqctl -n <node k> ARGS...`; its stdout (panics when it fails).
    pub fn ctl(&self, k: usize, args: &[&str]) -> String {
        let out = self.tool(k, "rabbitmqctl", args);
        assert!(
            out.status.success(),
            "rabbitmqctl {args:?} on {}: {}{}",
            self.nodes[k].name,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    fn tool(&self, k: usize, tool: &str, args: &[&str]) -> std::process::Output {
        Command::new("chroot")
            .arg(&self.root)
            .arg(format!("/usr/lib/rabbitmq/bin/{tool}"))
            .arg("-n")
            .arg(&self.nodes[k].name)
            .args(args)
            .env_clear()
            .envs(self.env(k))
            .output()
            .unwrap_or_else(|e| panic!("cannot run {tool}: {e}"))
    }

    /// The index of the node that leads quorum queue `queue`, asked of a running node.
    pub fn leader_of(&self, queue: &str) -> usize {
        let asker = (0..self.nodes.len())
            .find(|&k| accepts_amqp(self.nodes[k].port))
            .expect("a running node");
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let out = self.tool(
                asker,
                "rabbitmqctl",
                &[
                    "list_queues",
                    "name",
                    "leader",
                    "--no-table-headers",
                    "--quiet",
                ],
            );
            let text = String::from_utf8_lossy(&out.stdout).into_owned();
            for line in text.lines() {
                let mut cols = line.split_whitespace();
                if cols.next() == Some(queue)
                    && let Some(leader) = cols.next()
                    && let Some(k) = self.nodes.iter().position(|n| n.name == leader)
                {
                    return k;
                }
            }
            assert!(
                Instant::now() < deadline,
                "no leader for {queue} in: {text}{}",
                String::from_utf8_lossy(&out.stderr)
            );
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    /// The node names the cluster reports as running, asked of node `k`.
    pub fn running_nodes(&self, k: usize) -> String {
        self.ctl(k, &["cluster_status", "--formatter", "json"])
    }

    /// The pids of node `k`'s beam.smp (its environment names the node).
    fn beam_pids(&self, k: usize) -> Vec<u32> {
        let mine = format!("RABBITMQ_NODENAME={}", self.nodes[k].name);
        let Ok(entries) = std::fs::read_dir("/proc") else {
            return Vec::new();
        };
        entries
            .filter_map(|e| e.ok()?.file_name().to_str()?.parse::<u32>().ok())
            .filter(|pid| {
                let cmd = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
                let env = std::fs::read(format!("/proc/{pid}/environ")).unwrap_or_default();
                String::from_utf8_lossy(&cmd).contains("beam.smp")
                    && env.split(|b| *b == 0).any(|kv| kv == mine.as_bytes())
            })
            .collect()
    }

    /// Crash node `k`: `kill -9` its beam.smp and wait until its port is closed.
    pub fn crash(&mut self, k: usize) {
        let pids = self.beam_pids(k);
        assert!(
            !pids.is_empty(),
            "node {}: no beam.smp to kill",
            self.nodes[k].name
        );
        for pid in &pids {
            let _ = Command::new("kill").args(["-9", &pid.to_string()]).status();
        }
        if let Some(mut s) = self.nodes[k].server.take() {
            let _ = s.wait();
        }
        let deadline = Instant::now() + Duration::from_secs(10);
        while accepts_amqp(self.nodes[k].port) {
            assert!(
                Instant::now() < deadline,
                "node {k} still answers after kill -9"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        for k in 0..self.nodes.len() {
            if let Some(mut s) = self.nodes[k].server.take() {
                let _ = s.kill();
                let _ = s.wait();
            }
            for pid in self.beam_pids(k) {
                let _ = Command::new("kill").args(["-9", &pid.to_string()]).status();
            }
        }
        std::thread::sleep(Duration::from_millis(300));
        let _ = Command::new("chroot")
            .arg(&self.root)
            .args(["epmd", "-kill"])
            .env_clear()
            .env("PATH", "/usr/sbin:/usr/bin:/sbin:/bin")
            .env("ERL_EPMD_PORT", self.epmd_port.to_string())
            .output();
        let _ = std::fs::remove_dir_all(self.host(&self.base));
        eprintln!("cluster {}: stopped and removed", self.base);
    }
}

fn mount_proc(root: &Path) {
    let proc_dir = root.join("proc");
    let mounted = std::fs::read_to_string("/proc/mounts").is_ok_and(|m| {
        m.lines()
            .any(|l| l.split_whitespace().nth(1) == Some(proc_dir.to_str().unwrap_or("")))
    });
    if !mounted {
        let ok = Command::new("mount")
            .args(["-t", "proc", "proc"])
            .arg(&proc_dir)
            .status()
            .is_ok_and(|s| s.success());
        assert!(
            ok,
            "cannot mount proc on {} (the cluster test needs root)",
            proc_dir.display()
        );
    }
}

fn set_mode(path: &Path, mode: u32) {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).expect("chmod");
}
