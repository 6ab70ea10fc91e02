//! Dry-run: captured messages → decisions → a report, streaming (one message in memory
//! at a time, whatever the capture's size). The same [`Decider`] as the live handler.

pub mod columns;
mod report;

use std::io::{self, BufRead, Write};

use crate::capture::{self, CaptureError};
use crate::dead_letter::DeadLetter;
use crate::decide::{Decider, Outcome};

pub use report::rule_text;

/// How the per-message lines are printed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// One aligned line per message, then a summary table.
    Text,
    /// One JSON object per message (SPEC §2), no summary.
    Json,
}

#[derive(Debug, Clone, Copy)]
pub struct Options {
    pub format: Format,
    /// Say, for each message, why every earlier rule did not apply.
    pub explain: bool,
}

/// Why a dry-run stopped. Each message is complete (the cause's words included) and
/// has no `source()`, so anyhow's `{:#}` shows the cause once.
#[derive(Debug, thiserror::Error)]
pub enum DryRunError {
    /// A capture line could not be read: names the file and the line.
    #[error("{file}:{}: {}", .error.line, .error.message)]
    Capture { file: String, error: CaptureError },
    /// A capture file could not be opened.
    #[error("cannot open capture {file}: {error}")]
    Open { file: String, error: io::Error },
    /// Writing the report failed.
    #[error("cannot write the report: {0}")]
    Output(io::Error),
}

impl From<io::Error> for DryRunError {
    fn from(e: io::Error) -> Self {
        DryRunError::Output(e)
    }
}

/// Messages per rule and per action.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Summary {
    pub messages: u64,
    /// Indexed like `Table::rules`.
    pub per_rule: Vec<u64>,
    /// Messages no rule applied to.
    pub unmatched: u64,
    /// retry, forward, discard, leave.
    pub per_action: [u64; 4],
    /// Retries and forwards the handler cannot carry out: no target
    /// ([`Outcome::unroutable`]). It fails them and leaves the messages on the DLQ.
    pub unroutable: u64,
    pub captures: u64,
}

/// A dry-run in progress: feed it captures, then finish it.
pub struct DryRun<'d, W: Write> {
    decider: &'d Decider,
    out: W,
    opts: Options,
    summary: Summary,
    bufs: report::Bufs,
}

fn action_slot(o: &Outcome) -> usize {
    match o {
        Outcome::Retry { .. } => 0,
        Outcome::Forward { .. } => 1,
        Outcome::Discard { .. } => 2,
        Outcome::Leave => 3,
    }
}

impl<'d, W: Write> DryRun<'d, W> {
    pub fn new(decider: &'d Decider, out: W, opts: Options) -> Self {
        let summary = Summary {
            per_rule: vec![0; decider.table().rules.len()],
            ..Summary::default()
        };
        let mut run = DryRun {
            decider,
            out,
            opts,
            summary,
            bufs: report::Bufs::default(),
        };
        if opts.format == Format::Text {
            // A header line; a write error surfaces on the first message or at finish.
            let _ = report::text_header(&mut run.out);
        }
        run
    }

    /// Decide every message of one capture stream; `file` names it in errors.
    pub fn feed<R: BufRead>(&mut self, file: &str, input: R) -> Result<(), DryRunError> {
        self.summary.captures += 1;
        let mut reader = capture::Reader::new(input);
        while let Some(next) = reader.next_line() {
            let message = next
                .and_then(|(text, line)| capture::from_line(text, line))
                .map_err(|error| DryRunError::Capture {
                    file: file.to_string(),
                    error,
                })?;
            self.one(&message)?;
        }
        Ok(())
    }

    fn one(&mut self, message: &crate::message::Message) -> io::Result<()> {
        let dl = DeadLetter::new(message);
        let decision = self.decider.decide(&dl);
        let index = self.summary.messages;
        self.summary.messages += 1;
        match decision.rule {
            Some(r) => self.summary.per_rule[r] += 1,
            None => self.summary.unmatched += 1,
        }
        self.summary.per_action[action_slot(&decision.outcome)] += 1;
        if decision.outcome.unroutable().is_some() {
            self.summary.unroutable += 1;
        }
        let explain = if self.opts.explain {
            self.decider.explain(&dl)
        } else {
            Vec::new()
        };
        let entry = report::Entry {
            index,
            dl: &dl,
            decision: &decision,
            explain: &explain,
        };
        match self.opts.format {
            Format::Text => report::text_line(
                &mut self.out,
                self.decider,
                &entry,
                self.opts.explain,
                &mut self.bufs,
            ),
            Format::Json => report::json_line(
                &mut self.out,
                self.decider,
                &entry,
                self.opts.explain,
                &mut self.bufs,
            ),
        }
    }

    /// Print the summary (text format) and flush; the counts.
    pub fn finish(mut self) -> Result<Summary, DryRunError> {
        if self.opts.format == Format::Text {
            report::text_summary(&mut self.out, self.decider, &self.summary)?;
        }
        self.out.flush()?;
        Ok(self.summary)
    }
}

#[cfg(test)]
mod tests;
