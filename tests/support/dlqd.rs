//! Running the dlqd binary in tests: start `dlqd run` against a URL with its stderr in
//! a file, send it signals, `kill -9` it, wait for it with a deadline.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// A running (or finished) `dlqd run`.
pub struct Dlqd {
    pub child: Child,
    pub stderr: PathBuf,
}

/// Start `dlqd run ARGS...` against `url`; logs at `info` to a file in `dir`.
pub fn start(dir: &Path, url: &str, args: &[&str]) -> Dlqd {
    static N: AtomicU64 = AtomicU64::new(0);
    let stderr = dir.join(format!("dlqd-{}.stderr", N.fetch_add(1, Ordering::Relaxed)));
    let file = std::fs::File::create(&stderr).expect("stderr file");
    let child = Command::new(env!("CARGO_BIN_EXE_dlqd"))
        .arg("run")
        .args(args)
        .env("DLQD_URL", url)
        .env("DLQD_LOG", "info")
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
