//! `dlqd check`: every diagnostic of every rules file on stdout, a summary line per
//! file, and an exit status (1 when any file is invalid, or has warnings under
//! `--deny-warnings`).

use std::io::Write;
use std::process::ExitCode;

use crate::cli::CheckArgs;
use crate::rules::{self, diagnostic};

pub fn run(args: CheckArgs) -> anyhow::Result<ExitCode> {
    let stdout = std::io::stdout();
    let mut out = stdout.lock();
    let mut failed = false;
    for path in &args.rules {
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
    }
    out.flush()?;
    Ok(if failed {
        ExitCode::from(1)
    } else {
        ExitCode::SUCCESS
    })
}

fn plural(n: usize) -> &'static str {
    if n == 1 { "" } else { "s" }
}

fn count(n: usize, what: &str) -> String {
    format!("{n} {what}{}", plural(n))
}
