//! `dlqd publish CAPTURE...`: send captured messages where the options say (the plan is
//! [`crate::replay`]'s), each with publisher confirms and `mandatory`: a returned,
//! nacked or refused publish is a failure, counted by cause, logged with the broker's
//! words and written to the audit trail. `--rate` paces the publishes, `--skip` and
//! `--max` take a window of the captures, `--dry-run` prints the plan and sends nothing.
//! Every capture (stdin too, held in memory) is read whole before the first publish.
//! Exit status 0 when every message was sent, 3 when one failed or had nowhere to go,
//! 1 on an error.

use std::collections::{BTreeMap, VecDeque};
use std::fmt;
use std::fs::File;
use std::io::{BufRead, BufReader, Cursor, Read};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::rc::Rc;
use std::time::Duration;

use anyhow::Context as _;
use tracing::{debug, info, warn};

use crate::audit::{Audit, AuditOutcome, AuditRecord};
use crate::broker::{ActionFailure, Cause, Confirm, Session};
use crate::capture;
use crate::cli::PublishArgs;
use crate::commands::run::EXIT_ACTIONS_FAILED;
use crate::escape::{self, Escaped};
use crate::message::Message;
use crate::rate_limit::Pacer;
use crate::replay::{self, Destination, HeaderEdits, Options, Plan, Send};

/// Publishes awaiting their confirm at most.
const WINDOW: usize = 256;
/// The longest the connection may take to open.
const CONNECT_DEADLINE: Duration = Duration::from_secs(30);
/// The longest one confirm is waited for (a broker blocking publishers never answers).
const CONFIRM_DEADLINE: Duration = Duration::from_secs(30);
/// The audit trail's `action` for a publish.
const ACTION: &str = "publish";

pub fn run(args: PublishArgs) -> anyhow::Result<ExitCode> {
    let options = Options {
        destination: destination(&args),
        edits: HeaderEdits::parse(&args.set_header, &args.unset_header)?,
        keep_marks: args.keep_marks,
    };
    let stdin = read_stdin(&args.captures)?;
    // Every capture is read once before anything is sent, so that a bad line stops the
    // command before the first publish; and the messages are counted.
    let mut total = 0u64;
    let mut check = Captures::new(args.captures.clone(), stdin.clone());
    while let Some(item) = check.next() {
        item?;
        total += 1;
    }
    let window = Window {
        skip: args.skip,
        max: args.max,
        total,
    };
    if total == 0 {
        warn!("the captures hold no messages: nothing to send");
    } else if args.skip >= total {
        warn!(
            "--skip {} skips all {total} message(s) of the captures: nothing to send",
            args.skip
        );
    }
    let captures = Captures::new(args.captures.clone(), stdin);
    if args.dry_run {
        return preview(captures, &options, &window);
    }
    if window.end() <= window.skip {
        // Nothing in the window: no connection is opened.
        println!("{}", Tally::default());
        return Ok(ExitCode::SUCCESS);
    }
    let audit = args.audit.as_deref().map(Audit::open).transpose()?;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    let (tally, error) =
        runtime.block_on(publish_all(&args, captures, &options, &window, audit))?;
    println!("{tally}");
    info!(read = tally.read, sent = tally.sent, failed = tally.failures(),
        no_origin = tally.no_origin, summary = %tally, "publish summary");
    if let Some(e) = error {
        return Err(e);
    }
    if tally.failures() > 0 || tally.no_origin > 0 {
        warn!(
            "not every message was sent (exit status {EXIT_ACTIONS_FAILED}); see the failures above"
        );
        return Ok(ExitCode::from(EXIT_ACTIONS_FAILED));
    }
    Ok(ExitCode::SUCCESS)
}

fn destination(args: &PublishArgs) -> Destination {
    match (&args.queue, &args.exchange) {
        (Some(q), _) => Destination::Queue(q.clone()),
        (None, Some(x)) => Destination::Exchange {
            exchange: x.clone(),
            routing_key: args.routing_key.clone(),
        },
        // clap requires one of the three.
        (None, None) => Destination::Origin,
    }
}

fn is_stdin(p: &Path) -> bool {
    p.as_os_str() == "-"
}

/// Stdin, read whole into memory when `-` is one of the captures (it can be read only
/// once, and is checked before the first publish like a file).
fn read_stdin(paths: &[PathBuf]) -> anyhow::Result<Option<Stdin>> {
    match paths.iter().filter(|p| is_stdin(p)).count() {
        0 => Ok(None),
        1 => {
            let mut buf = Vec::new();
            std::io::stdin()
                .lock()
                .read_to_end(&mut buf)
                .context("cannot read the capture on stdin (-)")?;
            Ok(Some(Stdin(Rc::new(buf))))
        }
        _ => anyhow::bail!("stdin (-) is named more than once among the captures"),
    }
}

/// Stdin as read, shared by the checking pass and the sending one (no copy).
#[derive(Clone)]
struct Stdin(Rc<Vec<u8>>);

impl AsRef<[u8]> for Stdin {
    fn as_ref(&self) -> &[u8] {
        &self.0
    }
}

/// Which messages of the captures are taken: from index `skip`, at most `max`.
#[derive(Debug, Clone, Copy)]
struct Window {
    skip: u64,
    max: Option<u64>,
    /// The messages in the captures.
    total: u64,
}

impl Window {
    /// Before the window: skipped.
    fn before(&self, index: u64) -> bool {
        index < self.skip
    }

    /// Past the window's end.
    fn after(&self, index: u64) -> bool {
        self.max
            .is_some_and(|m| index >= self.skip.saturating_add(m))
    }

    /// The end of the window: the index after its last message.
    fn end(&self) -> u64 {
        self.max
            .map_or(self.total, |m| self.skip.saturating_add(m).min(self.total))
    }
}

/// The messages of the capture files, in order, with the file each came from and their
/// index in the captures.
struct Captures {
    paths: VecDeque<PathBuf>,
    stdin: Option<Stdin>,
    current: Option<(String, capture::Reader<Box<dyn BufRead>>)>,
    index: u64,
}

impl Captures {
    fn new(paths: Vec<PathBuf>, stdin: Option<Stdin>) -> Self {
        Captures {
            paths: paths.into(),
            stdin,
            current: None,
            index: 0,
        }
    }

    /// The next message, its index and the name of its capture (`-` for stdin).
    fn next(&mut self) -> Option<anyhow::Result<(u64, String, Message)>> {
        loop {
            if let Some((name, reader)) = self.current.as_mut() {
                match reader.next() {
                    Some(Ok(m)) => {
                        let index = self.index;
                        self.index += 1;
                        return Some(Ok((index, name.clone(), m)));
                    }
                    Some(Err(e)) => {
                        let name = name.clone();
                        self.current = None;
                        self.paths.clear();
                        return Some(Err(anyhow::Error::new(e).context(format!("capture {name}"))));
                    }
                    None => self.current = None,
                }
            }
            let path = self.paths.pop_front()?;
            let input: Box<dyn BufRead> = if is_stdin(&path) {
                Box::new(Cursor::new(
                    self.stdin.clone().unwrap_or_else(|| Stdin(Rc::default())),
                ))
            } else {
                match File::open(&path) {
                    Ok(f) => Box::new(BufReader::new(f)),
                    Err(e) => {
                        self.paths.clear();
                        return Some(Err(anyhow::Error::new(e)
                            .context(format!("cannot open capture {}", path.display()))));
                    }
                }
            };
            self.current = Some((path.display().to_string(), capture::Reader::new(input)));
        }
    }
}

/// What a publish run did (or a dry run would do), counted.
#[derive(Debug, Default)]
struct Tally {
    dry_run: bool,
    /// Messages read from the captures (at most `--max`).
    read: u64,
    sent: u64,
    /// By cause (`Cause::label`).
    failed: BTreeMap<&'static str, u64>,
    /// `--to-origin`, no death history: not sent.
    no_origin: u64,
}

impl Tally {
    fn failures(&self) -> u64 {
        self.failed.values().sum()
    }
}

impl fmt::Display for Tally {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.dry_run {
            return write!(
                f,
                "{} message(s): {} would be sent, {} not (no death history); nothing sent (--dry-run)",
                self.read, self.sent, self.no_origin
            );
        }
        write!(
            f,
            "{} message(s): {} sent, {} failed",
            self.read,
            self.sent,
            self.failures()
        )?;
        if !self.failed.is_empty() {
            let by: Vec<String> = self
                .failed
                .iter()
                .map(|(c, n)| format!("{c} {n}"))
                .collect();
            write!(f, " ({})", by.join(", "))?;
        }
        write!(f, ", {} not sent (no death history)", self.no_origin)
    }
}

/// `--dry-run`: one line per message (where it would go, which edits), then the tally.
fn preview(mut captures: Captures, options: &Options, window: &Window) -> anyhow::Result<ExitCode> {
    use std::io::Write;
    let mut out = std::io::BufWriter::new(std::io::stdout().lock());
    let mut tally = Tally {
        dry_run: true,
        ..Tally::default()
    };
    let edits = if options.edits.is_empty() {
        "-".to_string()
    } else {
        escape::text(&options.edits.mark()).into_owned()
    };
    writeln!(
        out,
        "{:>5}  {:<20}  {:<40}  EDITS",
        "INDEX", "MESSAGE-ID", "TO"
    )?;
    while let Some(item) = captures.next() {
        let (index, _, message) = item?;
        if window.before(index) {
            continue;
        }
        if window.after(index) {
            break;
        }
        let id = escape::text(message.properties.message_id.as_deref().unwrap_or("-")).into_owned();
        tally.read += 1;
        match replay::plan(&message, options) {
            Plan::Send(send) => {
                tally.sent += 1;
                let to = describe(&send);
                writeln!(out, "{index:>5}  {id:<20}  {to:<40}  {edits}")?;
            }
            Plan::NoOrigin => {
                tally.no_origin += 1;
                writeln!(
                    out,
                    "{index:>5}  {id:<20}  {:<40}  -",
                    "not sent: no death history"
                )?;
            }
        }
    }
    writeln!(out)?;
    writeln!(out, "{tally}")?;
    out.flush()?;
    Ok(ExitCode::SUCCESS)
}

/// `queue Q` or `exchange X, key K`, escaped for one line; an empty key is `''`.
fn describe(send: &Send) -> String {
    let shown = |s: &str| {
        if s.is_empty() {
            "''".to_string()
        } else {
            escape::text(s).into_owned()
        }
    };
    if send.exchange.is_empty() {
        format!("queue {}", shown(&send.routing_key))
    } else {
        format!(
            "exchange {}, key {}",
            shown(&send.exchange),
            shown(&send.routing_key)
        )
    }
}

/// One publish awaiting its confirm.
struct InFlight {
    index: u64,
    source: String,
    send: Send,
    confirm: Confirm,
    /// Already sent again once (after a neighbour closed the channel under it).
    resent: bool,
}

/// The publishing side: the session, the audit trail, the counts.
struct Publishing {
    session: Session,
    audit: Option<Audit>,
    tally: Tally,
    in_flight: VecDeque<InFlight>,
    /// The connection went away: nothing more is sent.
    lost: bool,
    /// The lowest index whose publish failed with the connection gone.
    lost_from: Option<u64>,
}

async fn publish_all(
    args: &PublishArgs,
    mut captures: Captures,
    options: &Options,
    window: &Window,
    audit: Option<Audit>,
) -> anyhow::Result<(Tally, Option<anyhow::Error>)> {
    let session = tokio::time::timeout(CONNECT_DEADLINE, Session::open(&args.broker.urls, 0))
        .await
        .map_err(|_| anyhow::anyhow!("no answer from the broker within {CONNECT_DEADLINE:?}"))?
        .context("cannot connect to the broker")?;
    info!(url = %crate::broker::redact(&args.broker.urls[session.url_index()]), "connected");
    let mut p = Publishing {
        session,
        audit,
        tally: Tally::default(),
        in_flight: VecDeque::new(),
        lost: false,
        lost_from: None,
    };
    let mut pacer = args.rate.map(Pacer::new);
    let origin = tokio::time::Instant::now();
    let mut error = None;
    // The index after the last message tried.
    let mut next = window.skip;
    while let Some(item) = captures.next() {
        if p.lost {
            break;
        }
        let (index, source, message) = match item {
            Ok(x) => x,
            Err(e) => {
                error = Some(e);
                break;
            }
        };
        if window.before(index) {
            continue;
        }
        if window.after(index) {
            break;
        }
        next = index + 1;
        p.tally.read += 1;
        let send = match replay::plan(&message, options) {
            Plan::Send(send) => *send,
            Plan::NoOrigin => {
                let f = ActionFailure::new(
                    Cause::NoTarget,
                    "no death history (x-death) to say where it died: not sent",
                );
                warn!(source = %Escaped(&source), message_id = %Escaped(message_id(&message)),
                    "not sent: the message has no death history");
                p.tally.no_origin += 1;
                p.record(index, &source, &message, None, Some(&f));
                continue;
            }
        };
        if let Some(pacer) = pacer.as_mut() {
            let at = pacer.take(origin.elapsed());
            p.wait_until(origin + at).await;
        }
        let confirm = p.start(&send).await;
        p.in_flight.push_back(InFlight {
            index,
            source,
            send,
            confirm,
            resent: false,
        });
        p.settle_ready().await;
        while p.in_flight.len() >= WINDOW {
            p.settle_one().await;
        }
    }
    while !p.in_flight.is_empty() {
        p.settle_one().await;
    }
    if p.lost && error.is_none() {
        error = Some(anyhow::anyhow!(lost_connection(
            &p.tally,
            window,
            next,
            p.lost_from
        )));
    }
    p.session.close().await;
    Ok((p.tally, error))
}

/// What to tell the operator when the connection went away: what was confirmed, what
/// failed, what was never tried and how to resume. `next`: the index after the last
/// message tried; `lost_from`: the lowest index whose publish was lost with the
/// connection.
fn lost_connection(tally: &Tally, window: &Window, next: u64, lost_from: Option<u64>) -> String {
    // `--skip FROM`, with the rest of the window when there is a `--max`.
    let from_here = |from: u64| match window.max {
        Some(_) => format!("--skip {from} --max {}", window.end().saturating_sub(from)),
        None => format!("--skip {from}"),
    };
    let not_tried = window.end().saturating_sub(next);
    let tried = if next > window.skip {
        format!(" (indexes {} to {})", window.skip, next - 1)
    } else {
        String::new()
    };
    let mut text = format!(
        "the connection to the broker was lost: of the {} message(s) tried{tried}, {} were confirmed and {} failed; {not_tried} were not tried",
        tally.read,
        tally.sent,
        tally.failures()
    );
    if not_tried > 0 {
        text.push_str(&format!(" (resume with {})", from_here(next)));
    }
    if let Some(from) = lost_from {
        let how = if not_tried > 0 {
            format!("resume with {} instead", from_here(from))
        } else {
            format!("send them again with {}", from_here(from))
        };
        text.push_str(&format!(
            ". The publishes lost with the connection (from index {from}; each failed one is in \
             the audit trail with its index) were not confirmed: they may or may not have \
             arrived. Check the destination; to be sure none is missing, {how} (those that \
             did arrive will then arrive twice)"
        ));
    }
    text
}

fn message_id(m: &Message) -> &str {
    m.properties.message_id.as_deref().unwrap_or("")
}

impl Publishing {
    /// Publish one (the exchange checked first: a missing one would close the channel).
    async fn start(&mut self, send: &Send) -> Confirm {
        if let Err(f) = self.session.ensure_exchange(&send.exchange).await {
            return Box::pin(std::future::ready(Err(f)));
        }
        self.session
            .publish(&send.exchange, &send.routing_key, &send.message)
            .await
    }

    /// Wait for the oldest publish's confirm and count it.
    async fn settle_one(&mut self) {
        let Some(mut f) = self.in_flight.pop_front() else {
            return;
        };
        let result = match tokio::time::timeout(CONFIRM_DEADLINE, &mut f.confirm).await {
            Ok(r) => r,
            Err(_) => Err(ActionFailure::new(
                Cause::Unconfirmed,
                format!("no confirm from the broker within {CONFIRM_DEADLINE:?}"),
            )),
        };
        self.settled(f, result).await;
    }

    /// Count the confirms already in, oldest first, without waiting (so that the audit
    /// trail's times are when each was confirmed).
    async fn settle_ready(&mut self) {
        while let Some(front) = self.in_flight.front_mut() {
            let Some(result) = futures_lite::future::poll_once(&mut front.confirm).await else {
                return;
            };
            if let Some(f) = self.in_flight.pop_front() {
                self.settled(f, result).await;
            }
        }
    }

    /// Sleep until `at` (the pacer's next turn), counting confirms as they come.
    async fn wait_until(&mut self, at: tokio::time::Instant) {
        loop {
            let Some(front) = self.in_flight.front_mut() else {
                tokio::time::sleep_until(at).await;
                return;
            };
            tokio::select! {
                () = tokio::time::sleep_until(at) => return,
                result = &mut front.confirm => {
                    if let Some(f) = self.in_flight.pop_front() {
                        self.settled(f, result).await;
                    }
                }
            }
        }
    }

    /// Count one publish's outcome (sent again once when another publish closed the
    /// channel under it).
    async fn settled(&mut self, mut f: InFlight, result: Result<(), ActionFailure>) {
        match result {
            Ok(()) => {
                debug!(message_id = %Escaped(message_id(&f.send.message)), to = %Escaped(&f.send.target()), "sent");
                self.tally.sent += 1;
                self.record(f.index, &f.source, &f.send.message, Some(&f.send), None);
            }
            Err(e) if e.is_neighbours() && !f.resent && self.session.is_connected() => {
                debug!(reason = %e.reason, "refused with a neighbour's channel; sending again");
                f.confirm = self.start(&f.send).await;
                f.resent = true;
                self.in_flight.push_back(f);
            }
            Err(e) => {
                if !self.session.is_connected() {
                    self.lost = true;
                    self.lost_from = Some(self.lost_from.map_or(f.index, |i| i.min(f.index)));
                }
                warn!(source = %Escaped(&f.source), message_id = %Escaped(message_id(&f.send.message)),
                    to = %Escaped(&f.send.target()), cause = e.cause.label(), reason = %e.reason,
                    "publish failed");
                *self.tally.failed.entry(e.cause.label()).or_default() += 1;
                self.record(f.index, &f.source, &f.send.message, Some(&f.send), Some(&e));
            }
        }
    }

    /// One audit line: the capture as `queue`, `publish` as the action.
    fn record(
        &self,
        index: u64,
        source: &str,
        message: &Message,
        send: Option<&Send>,
        failure: Option<&ActionFailure>,
    ) {
        let Some(audit) = &self.audit else { return };
        let target = send.map(Send::target);
        let id = message_id(message);
        let rec = AuditRecord {
            queue: source,
            message_id: (!id.is_empty()).then_some(id),
            rule: None,
            action: ACTION,
            target: target.as_deref(),
            delay_ms: None,
            attempt: None,
            index: Some(index),
            outcome: match failure {
                None => AuditOutcome::Ok,
                Some(f) => AuditOutcome::Failed {
                    cause: f.cause.label(),
                    error: &f.reason,
                },
            },
        };
        if let Err(e) = audit.record(&rec) {
            tracing::error!(error = %e, "audit record lost");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_tally_reads_as_a_sentence() {
        let mut t = Tally {
            read: 5,
            sent: 2,
            no_origin: 1,
            ..Tally::default()
        };
        t.failed.insert("returned", 2);
        assert_eq!(
            t.to_string(),
            "5 message(s): 2 sent, 2 failed (returned 2), 1 not sent (no death history)"
        );
        t.dry_run = true;
        assert!(t.to_string().ends_with("nothing sent (--dry-run)"));
    }

    #[test]
    fn a_window_is_skip_then_max() {
        let w = Window {
            skip: 10,
            max: Some(5),
            total: 100,
        };
        assert!(w.before(9) && !w.before(10));
        assert!(!w.after(14) && w.after(15));
        assert_eq!(w.end(), 15);
        let short = Window {
            skip: 10,
            max: Some(50),
            total: 20,
        };
        assert_eq!(short.end(), 20);
        let all = Window {
            skip: 0,
            max: None,
            total: 7,
        };
        assert_eq!(all.end(), 7);
    }

    #[test]
    fn a_lost_connection_says_what_was_not_tried_and_how_to_resume() {
        let mut t = Tally {
            read: 150,
            sent: 140,
            ..Tally::default()
        };
        t.failed.insert("connection", 10);
        let w = Window {
            skip: 0,
            max: None,
            total: 200,
        };
        let text = lost_connection(&t, &w, 150, Some(140));
        assert!(
            text.contains(
                "140 were confirmed and 10 failed; 50 were not tried (resume with --skip 150)"
            ),
            "{text}"
        );
        assert!(text.contains("resume with --skip 140 instead"), "{text}");
        // With --max: the rest of the window.
        let w = Window {
            skip: 100,
            max: Some(100),
            total: 1000,
        };
        let t = Tally {
            read: 30,
            sent: 30,
            ..Tally::default()
        };
        let text = lost_connection(&t, &w, 130, None);
        assert!(
            text.contains("70 were not tried (resume with --skip 130 --max 70)"),
            "{text}"
        );
        assert!(!text.contains("instead"), "{text}");
        let text = lost_connection(&t, &w, 130, Some(125));
        assert!(
            text.contains("resume with --skip 125 --max 75 instead"),
            "{text}"
        );
        // Lost at the very end: nothing left untried, the lost ones to check.
        let w = Window {
            skip: 0,
            max: None,
            total: 30,
        };
        let text = lost_connection(&t, &w, 30, Some(28));
        assert!(text.contains("0 were not tried."), "{text}");
        assert!(text.contains("send them again with --skip 28 ("), "{text}");
    }
}
