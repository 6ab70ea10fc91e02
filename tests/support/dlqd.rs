//! Running the dlqd binary in tests, the one way: [`start`] a `dlqd run` in the
//! background (stderr in a file; signals, `kill -9`, wait with a deadline), or run any
//! command to its end with a deadline ([`dlqd`], [`dlqd_env`]) or for a fixed time
//! ([`dlqd_for`]).

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Output, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// A running (or finished) `dlqd run`.
pub struct Dlqd {
    pub child: Child,
    pub stderr: PathBuf,
}

/// Start `dlqd run ARGS...` against `url`; logs at `info`, and the handler's line per
/// action (DEBUG), to a file in `dir`.
pub fn start(dir: &Path, url: &str, args: &[&str]) -> Dlqd {
    static N: AtomicU64 = AtomicU64::new(0);
    let stderr = dir.join(format!("dlqd-{}.stderr", N.fetch_add(1, Ordering::Relaxed)));
    let file = std::fs::File::create(&stderr).expect("stderr file");
    let child = Command::new(env!("CARGO_BIN_EXE_dlqd"))
        .arg("run")
        .args(args)
        .env("DLQD_URL", url)
        .env("DLQD_LOG", "info,dlqd::daemon=debug")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::from(file))
        .spawn()
        .expect("start dlqd");
    Dlqd { child, stderr }
}

impl Dlqd {
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Send a signal by name (`TERM`, `HUP`, ...).
    pub fn signal(&self, sig: &str) {
        let ok = Command::new("kill")
            .arg(format!("-{sig}"))
            .arg(self.child.id().to_string())
            .status()
            .is_ok_and(|s| s.success());
        assert!(ok, "kill -{sig} {}", self.child.id());
    }

    /// `kill -9`, and reap it.
    pub fn kill9(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// Still running?
    pub fn running(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }

    /// Wait for it to exit (at most `timeout`, else fail with its stderr).
    pub async fn wait(&mut self, timeout: Duration) -> ExitStatus {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(s) = self.child.try_wait().expect("wait") {
                return s;
            }
            if Instant::now() > deadline {
                self.kill9();
                panic!(
                    "dlqd did not exit within {timeout:?}; its stderr ends:\n{}",
                    self.stderr_tail(40)
                );
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    pub fn stderr(&self) -> String {
        std::fs::read_to_string(&self.stderr).unwrap_or_default()
    }

    pub fn stderr_tail(&self, n: usize) -> String {
        let s = self.stderr();
        let lines: Vec<&str> = s.lines().collect();
        lines[lines.len().saturating_sub(n)..].join("\n")
    }
}

impl Drop for Dlqd {
    fn drop(&mut self) {
        if self.running() {
            self.kill9();
        }
    }
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
