//! `dlqd check`: every diagnostic of every rules file on stdout, a summary line per
//! file, and an exit status (1 when any file is invalid, or has warnings under
//! `--deny-warnings`). A directory stands for its `*.rules` files, sorted, and is also
//! checked as `run --rules DIR` would serve it: every file names its DLQ (INPUTQ), no
//! DLQ twice. With `--broker URL`, each valid table is also checked against the live
//! broker (read once, through the management API, and one AMQP connection opened with
//! the URL): its findings as diagnostics at the rules positions, and a second summary
//! line; with several files, one `set_permissions` covering what all of them need.

use std::io::Write;
use std::process::ExitCode;

use anyhow::Context as _;

use crate::broker::management;
use crate::broker::redact;
use crate::cli::CheckArgs;
use crate::rules::{self, diagnostic};
use crate::topology_check::{
    self,
    snapshot::{AmqpFailure, Snapshot},
};

pub fn run(args: CheckArgs) -> anyhow::Result<ExitCode> {
    let stdout = std::io::stdout();
    let mut out = stdout.lock();
    let mut failed = false;
    let mut broker: Option<Snapshot> = None;
    let mut paths = Vec::new();
    let mut needs = topology_check::permissions::Needs::default();
    let (mut checked_files, mut short_of_permissions) = (0, 0);
    for arg in &args.rules {
        paths.extend(crate::fleet::rules_files(std::slice::from_ref(arg))?);
    }
    for path in &paths {
        let shown = path.display().to_string();
        let source = match rules::read_source(path) {
            Ok(s) => s,
            Err(rules::LoadError::Io { error, .. }) => {
                writeln!(out, "{shown}: error: cannot read: {error}")?;
                failed = true;
                continue;
            }
            // Not UTF-8: the error at its first bad byte.
            Err(rules::LoadError::Invalid {
                rendered, errors, ..
            }) => {
                out.write_all(rendered.as_bytes())?;
                writeln!(
                    out,
                    "{shown}: invalid: {}, {}",
                    count(errors, "error"),
                    count(0, "warning")
                )?;
                failed = true;
                continue;
            }
        };
        let checked = rules::check_source(&shown, &source);
        out.write_all(diagnostic::render_all(&checked.diagnostics, &source).as_bytes())?;
        let (errors, warnings) = (checked.errors(), checked.warnings());
        let summary = match &checked.table {
            Some(t) if args.deny_warnings && warnings > 0 => format!(
                "{shown}: failed: {} with --deny-warnings ({} rule{}, valid otherwise)",
                count(warnings, "warning"),
                t.rules.len(),
                plural(t.rules.len()),
            ),
            Some(t) => format!(
                "{shown}: valid: {} rule{}, {}",
                t.rules.len(),
                plural(t.rules.len()),
                count(warnings, "warning")
            ),
            None => format!(
                "{shown}: invalid: {}, {}",
                count(errors, "error"),
                count(warnings, "warning")
            ),
        };
        writeln!(out, "{summary}")?;
        if errors > 0 || (args.deny_warnings && warnings > 0) {
            failed = true;
        }
        let Some(url) = &args.broker else { continue };
        let Some(table) = &checked.table else {
            writeln!(
                out,
                "{shown}: broker {}: not checked (the table is invalid)",
                redact(url)
            )?;
            continue;
        };
        if broker.is_none() {
            out.flush()?;
            let ep = management::Endpoint::new(url, args.management.as_deref())?;
            let mut snapshot = management::snapshot(&ep)
                .with_context(|| format!("cannot check the broker {}", redact(url)))?;
            snapshot.amqp_failure = try_amqp(url)?;
            broker = Some(snapshot);
        }
        let Some(snapshot) = &broker else { continue };
        checked_files += 1;
        let mut report =
            topology_check::check(table, &checked.positions, args.queue.as_deref(), snapshot);
        for d in &mut report.diagnostics {
            d.path = shown.clone();
        }
        out.write_all(diagnostic::render_all(&report.diagnostics, &source).as_bytes())?;
        writeln!(out, "{}", broker_summary(&shown, url, snapshot, &report))?;
        if report.errors() > 0 || (args.deny_warnings && report.warnings() > 0) {
            failed = true;
        }
        if let Some(n) = &report.needs {
            if report.short_of_permissions {
                short_of_permissions += 1;
            }
            needs.merge(n);
        }
    }
    // One grant for all files: each file's own suggestion keeps only today's permissions.
    if let (Some(url), Some(snapshot)) = (&args.broker, &broker)
        && checked_files > 1
        && short_of_permissions > 0
    {
        writeln!(
            out,
            "broker {}: to grant what all {checked_files} files need at once (each file's own suggestion covers that file alone): {}",
            redact(url),
            topology_check::permissions::grant(
                &snapshot.vhost,
                &snapshot.user,
                &snapshot.permissions,
                &needs
            )
        )?;
    }
    for dir in args.rules.iter().filter(|a| a.is_dir()) {
        let files = crate::fleet::rules_files(std::slice::from_ref(dir))?;
        // The invalid files were reported above; here, what the valid ones say together.
        let valid: Vec<_> = crate::fleet::read_all(&files)
            .into_iter()
            .filter(|r| r.outcome.is_ok())
            .collect();
        let plan = crate::fleet::plan(&crate::fleet::Members::new(), valid);
        for problem in &plan.problems {
            writeln!(out, "{problem}")?;
        }
        if plan.problems.is_empty() {
            writeln!(
                out,
                "{}: serves {} DLQ{}",
                dir.display(),
                plan.members.len(),
                plural(plan.members.len())
            )?;
        } else {
            writeln!(
                out,
                "{}: cannot be served as one rules directory: {}",
                dir.display(),
                count(plan.problems.len(), "error")
            )?;
            failed = true;
        }
    }
    out.flush()?;
    Ok(if failed {
        ExitCode::from(1)
    } else {
        ExitCode::SUCCESS
    })
}

/// How long the AMQP connection that `check --broker` tries may take.
const AMQP_DEADLINE: std::time::Duration = std::time::Duration::from_secs(10);

/// Open (and close) an AMQP connection with `url`: why it failed, if it did.
fn try_amqp(url: &str) -> anyhow::Result<Option<AmqpFailure>> {
    use crate::broker::ConnectError;
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    Ok(rt.block_on(async {
        match tokio::time::timeout(AMQP_DEADLINE, crate::broker::connect(url)).await {
            Ok(Ok(conn)) => {
                let _ = conn.close(200, "dlqd check done".into()).await;
                None
            }
            Ok(Err(ConnectError::Connect { url, reason, code })) => {
                Some(AmqpFailure { url, reason, code })
            }
            Ok(Err(e)) => Some(AmqpFailure {
                url: redact(url),
                reason: e.to_string(),
                code: None,
            }),
            Err(_) => Some(AmqpFailure {
                url: redact(url),
                reason: format!("no answer within {AMQP_DEADLINE:?}"),
                code: None,
            }),
        }
    }))
}

/// `FILE: broker URL (RabbitMQ V, vhost /): DLQ orders.dlq (quorum), dead letters from
/// 2 queue(s): orders.eu, orders.us; 0 errors, 1 warning`.
fn broker_summary(
    shown: &str,
    url: &str,
    snapshot: &Snapshot,
    report: &topology_check::Report,
) -> String {
    let dlq = match (&report.dlq, &report.dlq_kind) {
        (Some(q), Some(kind)) => format!("DLQ {q} ({kind})"),
        (Some(q), None) => format!("DLQ {q} (missing)"),
        (None, _) => "no DLQ named".to_string(),
    };
    let feeders = if report.dlq_kind.is_none() {
        String::new()
    } else {
        let mut names: Vec<&str> = report.feeders.iter().take(5).map(String::as_str).collect();
        let more = report.feeders.len().saturating_sub(5);
        let more_text = format!("and {more} more");
        if more > 0 {
            names.push(&more_text);
        }
        let list = if names.is_empty() {
            String::new()
        } else {
            format!(": {}", names.join(", "))
        };
        format!(
            ", dead letters from {}{list}",
            count(report.feeders.len(), "queue")
        )
    };
    format!(
        "{shown}: broker {} (RabbitMQ {}, vhost {}): {dlq}{feeders}; {}, {}",
        redact(url),
        snapshot.version,
        snapshot.vhost,
        count(report.errors(), "error"),
        count(report.warnings(), "warning")
    )
}

fn plural(n: usize) -> &'static str {
    if n == 1 { "" } else { "s" }
}

fn count(n: usize, what: &str) -> String {
    format!("{n} {what}{}", plural(n))
}
