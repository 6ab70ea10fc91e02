//! A throwaway RabbitMQ node for fault tests: its own ports, epmd, plugins file and
//! mnesia in a fresh temp dir (the recipe of /work/shared/notes/rabbitmq.md), which a
//! test may crash (`kill -9` of its beam.smp) and start again on the same ports and
//! data. Dropping it kills the node, stops its epmd and removes the directory. The
//! shared node at 127.0.0.1:5672 is never touched: every kill checks that the process
//! is this node's beam.smp first.
//!
//! The node is the machine's own RabbitMQ, or, when `DLQD_TEST_RABBITMQ_ROOT` names a
//! chroot made by `scripts/broker-matrix.sh build` (e.g. /var/lib/dlqd-brokers/4.x), that
//! chroot's: the same tests then crash and restart a 4.x node. Its directory is then
//! under the chroot's /tmp; [`node_tempdir`] and [`node_path`] give files the node reads.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

const SERVER: &str = "/usr/lib/rabbitmq/bin/rabbitmq-server";
const CTL: &str = "/usr/lib/rabbitmq/bin/rabbitmqctl";
/// The environment variable naming a chroot whose RabbitMQ the private nodes run.
pub const ROOT_ENV: &str = "DLQD_TEST_RABBITMQ_ROOT";

/// The chroot the private nodes run in, if any (`DLQD_TEST_RABBITMQ_ROOT`).
pub fn root() -> Option<PathBuf> {
    std::env::var_os(ROOT_ENV)
        .filter(|v| !v.is_empty())
        .map(PathBuf::from)
}

/// A temporary directory the private node can read (inside its chroot, if any).
pub fn node_tempdir(prefix: &str) -> tempfile::TempDir {
    let mut b = tempfile::Builder::new();
    b.prefix(prefix);
    match root() {
        Some(r) => {
            let tmp = r.join("tmp");
            std::fs::create_dir_all(&tmp).expect("the chroot's /tmp");
            b.tempdir_in(tmp)
        }
        None => b.tempdir(),
    }
    .expect("temp dir for the private node")
}

/// `host` (a path under [`node_tempdir`]) as the private node sees it.
pub fn node_path(host: &Path) -> String {
    match root() {
        Some(r) => format!(
            "/{}",
            host.strip_prefix(&r)
                .unwrap_or_else(|_| panic!("{} is not inside {}", host.display(), r.display()))
                .display()
        ),
        None => host.display().to_string(),
    }
}

/// A command that runs `program` (a path inside the node's RabbitMQ) in the chroot
/// when there is one, with a clean environment.
fn node_command(program: &str) -> Command {
    match root() {
        Some(r) => {
            let mut c = Command::new("chroot");
            c.arg(r).arg(program).env_clear().envs([
                ("PATH", "/usr/sbin:/usr/bin:/sbin:/bin"),
                ("LANG", "C.UTF-8"),
                ("LC_ALL", "C.UTF-8"),
                ("HOME", "/var/lib/rabbitmq"),
            ]);
            c
        }
        None => Command::new(program),
    }
}

/// How long a boot may take on a busy two-core machine.
const BOOT_TIMEOUT: Duration = Duration::from_secs(120);

/// A running (or crashed) private node.
pub struct PrivateNode {
    dir: tempfile::TempDir,
    pub name: String,
    /// The AMQP port on 127.0.0.1.
    pub port: u16,
    dist_port: u16,
    epmd_port: u16,
    /// The `rabbitmq-server` script (the parent of beam.smp) of the current boot.
    server: Option<Child>,
    /// How long each boot took, until the node answered an AMQP handshake.
    pub boot_times: Vec<Duration>,
}

fn free(port: u16) -> bool {
    TcpListener::bind(("127.0.0.1", port)).is_ok() && TcpListener::bind(("0.0.0.0", port)).is_ok()
}

/// A small pseudo-random number from the clock and pid, for picking ports.
fn jitter() -> u64 {
    static N: AtomicU32 = AtomicU32::new(0);
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(0);
    let mut x = nanos
        ^ (u64::from(std::process::id()) << 32)
        ^ u64::from(N.fetch_add(1, Ordering::Relaxed)) << 48;
    x ^= x >> 33;
    x = x.wrapping_mul(0xff51_afd7_ed55_8ccd);
    x ^= x >> 33;
    x
}

/// An AMQP port P with P + 20000 (its distribution port) also free, and an epmd port.
fn pick_ports() -> (u16, u16, u16) {
    for _ in 0..1000 {
        let port = 30000 + (jitter() % 15000) as u16;
        let epmd = 10000 + (jitter() % 10000) as u16;
        if port != 35672 && free(port) && free(port + 20000) && free(epmd) {
            return (port, port + 20000, epmd);
        }
    }
    panic!("no free ports for a private RabbitMQ node");
}

/// True when something on `port` answers the AMQP 0-9-1 protocol header with a frame
/// (Connection.Start): the node is booted and accepts AMQP clients.
pub fn accepts_amqp(port: u16) -> bool {
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    let Ok(mut s) = TcpStream::connect_timeout(&addr, Duration::from_millis(500)) else {
        return false;
    };
    let _ = s.set_read_timeout(Some(Duration::from_secs(2)));
    if s.write_all(b"AMQP\x00\x00\x09\x01").is_err() {
        return false;
    }
    let mut frame = [0u8; 7];
    // A method frame (type 1) on channel 0.
    s.read_exact(&mut frame).is_ok() && frame[0] == 1 && frame[1] == 0 && frame[2] == 0
}

impl PrivateNode {
    /// Start a fresh node and wait until it accepts AMQP. Panics (saying what to install)
    /// when RabbitMQ is not installed or the node does not come up.
    pub fn start() -> PrivateNode {
        PrivateNode::start_with_conf("")
    }

    /// Like [`PrivateNode::start`], with `conf` as the node's rabbitmq.conf (sysctl
    /// format: a TLS listener, `frame_max`, ...).
    pub fn start_with_conf(conf: &str) -> PrivateNode {
        match root() {
            Some(r) => {
                assert!(
                    r.join(SERVER.trim_start_matches('/')).exists(),
                    "{ROOT_ENV}={}: no {SERVER} there; build it with \
                     `scripts/broker-matrix.sh build 4.x` (or 4.0)",
                    r.display()
                );
                mount_proc(&r);
            }
            None => assert!(
                Path::new(SERVER).exists(),
                "{SERVER} not found: install RabbitMQ (`apt-get install -y rabbitmq-server`)"
            ),
        }
        static N: AtomicU32 = AtomicU32::new(0);
        let dir = node_tempdir("dlqd-private-node.");
        std::fs::write(dir.path().join("enabled_plugins"), "[].\n").expect("enabled_plugins");
        if !conf.is_empty() {
            std::fs::write(dir.path().join("rabbitmq.conf"), conf).expect("rabbitmq.conf");
        }
        let (port, dist_port, epmd_port) = pick_ports();
        let name = format!(
            "dlqd-test-{}-{}-{}@localhost",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed),
            port
        );
        let mut node = PrivateNode {
            dir,
            name,
            port,
            dist_port,
            epmd_port,
            server: None,
            boot_times: Vec::new(),
        };
        node.boot();
        node
    }

    /// `amqp://guest:guest@127.0.0.1:<port>/%2f`.
    pub fn url(&self) -> String {
        format!("amqp://guest:guest@127.0.0.1:{}/%2f", self.port)
    }

    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    fn env(&self) -> Vec<(&'static str, String)> {
        let d = self.dir.path();
        let p = |f: &str| node_path(&d.join(f));
        vec![
            ("RABBITMQ_NODENAME", self.name.clone()),
            ("RABBITMQ_NODE_PORT", self.port.to_string()),
            ("RABBITMQ_NODE_IP_ADDRESS", "127.0.0.1".into()),
            ("RABBITMQ_DIST_PORT", self.dist_port.to_string()),
            ("ERL_EPMD_PORT", self.epmd_port.to_string()),
            ("RABBITMQ_MNESIA_BASE", p("mnesia")),
            ("RABBITMQ_LOG_BASE", p("log")),
            ("RABBITMQ_ENABLED_PLUGINS_FILE", p("enabled_plugins")),
            ("RABBITMQ_CONFIG_FILE", p("rabbitmq")),
            ("RABBITMQ_ADVANCED_CONFIG_FILE", p("advanced.config")),
            ("RABBITMQ_CONF_ENV_FILE", p("rabbitmq-env.conf")),
            ("RABBITMQ_PID_FILE", p("pid")),
        ]
    }

    fn pid_file(&self) -> PathBuf {
        self.dir.path().join("pid")
    }

    /// Start the server script and wait for AMQP; records the boot time.
    fn boot(&mut self) -> Duration {
        let _ = std::fs::remove_file(self.pid_file());
        let out = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.path().join("server.out"))
            .expect("server.out");
        let err = out.try_clone().expect("server.out");
        let started = Instant::now();
        let child = node_command(SERVER)
            .envs(self.env())
            .current_dir(self.dir.path())
            .stdin(Stdio::null())
            .stdout(Stdio::from(out))
            .stderr(Stdio::from(err))
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {SERVER}: {e}"));
        self.server = Some(child);
        loop {
            if accepts_amqp(self.port) {
                break;
            }
            if let Some(Ok(Some(status))) = self.server.as_mut().map(Child::try_wait) {
                panic!(
                    "private RabbitMQ node {} exited during boot ({status}); its output:\n{}",
                    self.name,
                    self.output_tail()
                );
            }
            assert!(
                started.elapsed() < BOOT_TIMEOUT,
                "private RabbitMQ node {} did not accept AMQP within {BOOT_TIMEOUT:?}; output:\n{}",
                self.name,
                self.output_tail()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        let took = started.elapsed();
        self.boot_times.push(took);
        eprintln!(
            "private node {} on port {}: accepted AMQP {:.1} s after start",
            self.name,
            self.port,
            took.as_secs_f64()
        );
        took
    }

    fn output_tail(&self) -> String {
        let text = std::fs::read_to_string(self.dir.path().join("server.out")).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(30)..].join("\n")
    }

    /// The pids of this node's beam.smp: processes whose command is beam.smp and whose
    /// environment names this node (so never the shared node, nor another test's).
    fn beam_pids(&self) -> Vec<u32> {
        let mine = format!("RABBITMQ_NODENAME={}", self.name);
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

    fn kill9_beams(&self) -> Vec<u32> {
        let pids = self.beam_pids();
        for pid in &pids {
            let _ = Command::new("kill").args(["-9", &pid.to_string()]).status();
        }
        let deadline = Instant::now() + Duration::from_secs(10);
        while pids.iter().any(|p| alive(*p)) {
            if Instant::now() > deadline {
                eprintln!("beam.smp {pids:?} outlived kill -9 for 10 s");
                break;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        pids
    }

    /// Crash the node: `kill -9` its beam.smp, and wait until it is gone.
    pub fn crash(&mut self) {
        let killed = self.kill9_beams();
        assert!(
            !killed.is_empty(),
            "private node {}: no beam.smp to kill",
            self.name
        );
        if let Some(mut server) = self.server.take() {
            let _ = server.wait();
        }
        let deadline = Instant::now() + Duration::from_secs(10);
        while accepts_amqp(self.port) {
            assert!(
                Instant::now() < deadline,
                "port {} still answers after kill -9",
                self.port
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Stop the node cleanly (`rabbitmqctl stop`: everything it holds is written out),
    /// and wait until it is gone: a planned restart, e.g. with a new rabbitmq.conf.
    pub fn stop(&mut self) {
        self.ctl(&["stop"]);
        if let Some(mut server) = self.server.take() {
            let deadline = Instant::now() + Duration::from_secs(60);
            while matches!(server.try_wait(), Ok(None)) {
                assert!(
                    Instant::now() < deadline,
                    "private node {} did not stop within 60 s",
                    self.name
                );
                std::thread::sleep(Duration::from_millis(50));
            }
        }
        let deadline = Instant::now() + Duration::from_secs(30);
        while accepts_amqp(self.port) || !self.beam_pids().is_empty() {
            assert!(
                Instant::now() < deadline,
                "private node {} still runs after rabbitmqctl stop",
                self.name
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Start the node again on the same ports and data; how long it took to accept AMQP.
    pub fn restart(&mut self) -> Duration {
        self.boot()
    }

    /// `rabbitmqctl -n <node> ARGS...` under the node's environment; its stdout.
    pub fn ctl(&self, args: &[&str]) -> String {
        let out = node_command(CTL)
            .envs(self.env())
            .arg("-n")
            .arg(&self.name)
            .args(args)
            .output()
            .unwrap_or_else(|e| panic!("cannot run {CTL}: {e}"));
        assert!(
            out.status.success(),
            "rabbitmqctl {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    fn kill_epmd(&self) {
        // epmd refuses while it still lists the node; the node's death reaches it shortly.
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let out = node_command("/usr/bin/epmd")
                .arg("-kill")
                .env("ERL_EPMD_PORT", self.epmd_port.to_string())
                .output();
            let refused = out.as_ref().is_ok_and(|o| {
                String::from_utf8_lossy(&o.stdout).contains("not allowed")
                    || String::from_utf8_lossy(&o.stderr).contains("not allowed")
            });
            if !refused || Instant::now() > deadline {
                return;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

impl Drop for PrivateNode {
    /// Kill the node, stop its epmd; the temp dir goes with `dir`.
    fn drop(&mut self) {
        if let Some(mut server) = self.server.take() {
            let _ = server.kill();
            let _ = server.wait();
        }
        let killed = self.kill9_beams();
        self.kill_epmd();
        eprintln!(
            "private node {}: stopped (beam.smp {killed:?} killed, epmd on {} told to stop)",
            self.name, self.epmd_port
        );
    }
}

/// The process exists and is not a zombie.
fn alive(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|s| {
        !s.rsplit(')')
            .next()
            .unwrap_or("")
            .trim_start()
            .starts_with('Z')
    })
}

fn mount_proc(root: &Path) {
    let proc_dir = root.join("proc");
    let mounted = std::fs::read_to_string("/proc/mounts").is_ok_and(|m| {
        m.lines()
            .any(|l| l.split_whitespace().nth(1) == proc_dir.to_str())
    });
    if !mounted {
        let ok = Command::new("mount")
            .args(["-t", "proc", "proc"])
            .arg(&proc_dir)
            .status()
            .is_ok_and(|s| s.success());
        assert!(
            ok,
            "cannot mount proc on {} (needs root)",
            proc_dir.display()
        );
    }
}
