//! Progress of a one-shot drain (`dlqd run --once`) on a terminal: messages done, rate,
//! what is left on the DLQ. Silent when stderr is not a terminal.
//!
//! Logs share stderr with the bar: [`LogWriter`] (the writer `main` gives tracing) hides
//! the bar while a log line is written, so lines and bar do not garble each other.

use std::io::{IsTerminal, Write};
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

/// The bar currently drawn, if any (with its id), so log lines can suspend it.
static ACTIVE: Mutex<Option<(u64, ProgressBar)>> = Mutex::new(None);
static NEXT_ID: AtomicU64 = AtomicU64::new(1);

fn active() -> std::sync::MutexGuard<'static, Option<(u64, ProgressBar)>> {
    ACTIVE.lock().unwrap_or_else(|p| p.into_inner())
}

/// A drain's progress. Cheap to clone; all clones update the same bar.
#[derive(Debug, Clone)]
pub struct Progress {
    id: u64,
    bar: ProgressBar,
}

const TEMPLATE: &str =
    "{spinner} [{elapsed_precise}] {wide_bar} {human_pos} done, {rate}, {msg} left on the DLQ";

impl Progress {
    /// A bar on stderr when stderr is a terminal, a silent one otherwise.
    /// `depth`: the DLQ's depth at the start, if known.
    pub fn start(depth: Option<u64>) -> Self {
        Self::start_on(std::io::stderr().is_terminal(), depth)
    }

    /// A silent tracker (counts, draws nothing).
    pub fn hidden() -> Self {
        Self::start_on(false, None)
    }

    fn start_on(terminal: bool, depth: Option<u64>) -> Self {
        if !terminal {
            let bar = ProgressBar::hidden();
            bar.set_length(depth.unwrap_or(0));
            return Progress { id: 0, bar };
        }
        let bar = ProgressBar::with_draw_target(depth, ProgressDrawTarget::stderr_with_hz(10));
        let style = ProgressStyle::with_template(TEMPLATE)
            .unwrap_or_else(|_| ProgressStyle::default_bar())
            .with_key(
                "rate",
                |state: &indicatif::ProgressState, w: &mut dyn std::fmt::Write| {
                    let _ = write!(w, "{:.0} msg/s", state.per_sec());
                },
            )
            .progress_chars("=> ");
        bar.set_style(style);
        bar.set_message(depth.map_or_else(|| "?".to_owned(), |d| d.to_string()));
        bar.enable_steady_tick(Duration::from_millis(200));
        let id = NEXT_ID.fetch_add(1, Ordering::Relaxed);
        *active() = Some((id, bar.clone()));
        Progress { id, bar }
    }

    /// Whether anything is drawn.
    pub fn is_visible(&self) -> bool {
        !self.bar.is_hidden()
    }

    /// `n` more messages handled (acted on and acknowledged, or left).
    pub fn done(&self, n: u64) {
        self.bar.inc(n);
    }

    /// Messages handled so far.
    pub fn position(&self) -> u64 {
        self.bar.position()
    }

    /// The DLQ's depth as last seen: sets what is left and so the bar's length.
    pub fn remaining(&self, depth: u64) {
        self.bar
            .set_length(self.bar.position().saturating_add(depth));
        self.bar.set_message(depth.to_string());
    }

    /// The drain is over: leave the final line on the terminal.
    pub fn finish(&self) {
        let mut guard = active();
        if guard.as_ref().is_some_and(|(id, _)| *id == self.id) {
            *guard = None;
        }
        drop(guard);
        self.bar.disable_steady_tick();
        self.bar.abandon();
    }
}

/// stderr for tracing: while a progress bar is drawn, each log line is written with the
/// bar suspended (cleared, then redrawn below the line).
///
/// For text logs it is also the last guard against log injection: tracing writes one
/// event per `write_all`, and every control character, line separator or bidi override
/// in it but the final newline is escaped (see [`crate::escape`]), whichever field or
/// library it came from, so no value can end a line or forge one.
#[derive(Debug, Clone, Copy, Default)]
pub struct LogWriter {
    escape: bool,
}

impl LogWriter {
    /// For text logs: one event, one line.
    pub fn text() -> Self {
        LogWriter { escape: true }
    }

    /// For JSON logs (the encoder escapes already).
    pub fn json() -> Self {
        LogWriter { escape: false }
    }
}

/// `line` (one formatted event) with every unsafe character but a final newline escaped.
fn one_line(line: &[u8]) -> std::borrow::Cow<'_, [u8]> {
    let (body, end) = match line.strip_suffix(b"\n") {
        Some(body) => (body, &b"\n"[..]),
        None => (line, &b""[..]),
    };
    let text = String::from_utf8_lossy(body);
    match crate::escape::unsafe_chars(&text) {
        std::borrow::Cow::Borrowed(_) if matches!(text, std::borrow::Cow::Borrowed(_)) => {
            std::borrow::Cow::Borrowed(line)
        }
        escaped => {
            let mut out = escaped.into_owned().into_bytes();
            out.extend_from_slice(end);
            std::borrow::Cow::Owned(out)
        }
    }
}

impl Write for LogWriter {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.write_all(buf)?;
        Ok(buf.len())
    }

    fn write_all(&mut self, buf: &[u8]) -> std::io::Result<()> {
        let escaped = if self.escape {
            one_line(buf)
        } else {
            std::borrow::Cow::Borrowed(buf)
        };
        let buf = &escaped[..];
        let bar = active().as_ref().map(|(_, bar)| bar.clone());
        match bar {
            Some(bar) => bar.suspend(|| std::io::stderr().lock().write_all(buf)),
            None => std::io::stderr().lock().write_all(buf),
        }
    }

    fn flush(&mut self) -> std::io::Result<()> {
        std::io::stderr().flush()
    }
}

impl<'a> tracing_subscriber::fmt::MakeWriter<'a> for LogWriter {
    type Writer = LogWriter;

    fn make_writer(&'a self) -> Self::Writer {
        *self
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    proptest::proptest! {
        /// Whatever a field carries, the written line has no unsafe character but its
        /// final newline, and it is one line.
        #[test]
        fn no_byte_sequence_reaches_a_log_line_unescaped(field in proptest::collection::vec(proptest::arbitrary::any::<u8>(), 0..64), text in proptest::arbitrary::any::<String>()) {
            let line = format!(
                "2026-12-02T00:00:00Z  INFO dlqd::daemon: done message_id={} target={}\n",
                String::from_utf8_lossy(&field),
                text
            );
            let out = one_line(line.as_bytes());
            let out = std::str::from_utf8(&out).expect("UTF-8");
            let body = out.strip_suffix('\n').expect("ends with its newline");
            proptest::prop_assert!(!body.chars().any(crate::escape::is_unsafe), "{out:?}");
        }
    }

    #[test]
    fn a_log_line_cannot_forge_another() {
        let line = b"INFO done message_id=x\n2026 INFO forged\x1b[2K\n";
        assert_eq!(
            &one_line(line)[..],
            b"INFO done message_id=x\\n2026 INFO forged\\u{1b}[2K\n"
        );
        let clean = b"INFO done message_id=x\n";
        assert!(matches!(one_line(clean), std::borrow::Cow::Borrowed(_)));
    }

    #[test]
    fn silent_when_not_a_terminal_but_still_counts() {
        let p = Progress::start_on(false, Some(10));
        assert!(!p.is_visible());
        p.done(3);
        p.clone().done(2);
        assert_eq!(p.position(), 5);
        p.remaining(7);
        assert_eq!(p.bar.length(), Some(12));
        p.finish();
    }

    #[test]
    fn log_writer_writes_through_without_a_bar() {
        let mut w = LogWriter::text();
        assert_eq!(w.write(b"").expect("write"), 0);
        w.flush().expect("flush");
    }
}
