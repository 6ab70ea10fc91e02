//! Signals: SIGTERM and SIGINT ask for a clean stop, SIGHUP for a reload of the rules.

use tokio::signal::unix::{Signal as UnixSignal, SignalKind, signal};

/// What an operator asked for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Signal {
    /// SIGTERM or SIGINT: stop taking messages, finish what is in flight, exit 0.
    Stop,
    /// SIGHUP: re-read the rules file.
    Reload,
}

/// The process's signal handlers; `recv` waits for the next signal.
pub struct Signals {
    term: UnixSignal,
    int: UnixSignal,
    hup: UnixSignal,
}

impl Signals {
    /// Install the handlers (inside a tokio runtime).
    pub fn install() -> std::io::Result<Self> {
        Ok(Signals {
            term: signal(SignalKind::terminate())?,
            int: signal(SignalKind::interrupt())?,
            hup: signal(SignalKind::hangup())?,
        })
    }

    /// The next signal. Cancel-safe.
    pub async fn recv(&mut self) -> Signal {
        tokio::select! {
            _ = self.term.recv() => Signal::Stop,
            _ = self.int.recv() => Signal::Stop,
            _ = self.hup.recv() => Signal::Reload,
        }
    }
}
