//! `dlqd dry-run`: load the rules, stream each capture (`-` = stdin) through the decider,
//! print the report to stdout.

use std::fs::File;
use std::io::{self, BufReader, BufWriter};
use std::process::ExitCode;

use crate::cli::{DryRunArgs, ReportFormat};
use crate::decide::Decider;
use crate::dry_run::{DryRun, DryRunError, Format, Options};
use crate::rules;

pub fn run(args: DryRunArgs) -> anyhow::Result<ExitCode> {
    let (table, warnings) = rules::load(&args.rules)?;
    for w in &warnings {
        eprintln!("{}:{}:{}: warning: {}", w.path, w.line, w.column, w.message);
    }
    let decider = Decider::new(table);
    let opts = Options {
        format: match args.format {
            ReportFormat::Text => Format::Text,
            ReportFormat::Json => Format::Json,
        },
        explain: args.explain,
    };
    let stdout = io::stdout();
    let out = BufWriter::with_capacity(64 * 1024, stdout.lock());
    let mut dry = DryRun::new(&decider, out, opts);
    let result = feed_all(&mut dry, &args).and_then(|()| dry.finish().map(|_| ()));
    match result {
        Ok(()) => Ok(ExitCode::SUCCESS),
        // The reader went away (`dlqd dry-run ... | head`): not an error.
        Err(DryRunError::Output(e)) if e.kind() == io::ErrorKind::BrokenPipe => {
            Ok(ExitCode::SUCCESS)
        }
        Err(e) => Err(e.into()),
    }
}

fn feed_all<W: io::Write>(dry: &mut DryRun<'_, W>, args: &DryRunArgs) -> Result<(), DryRunError> {
    for path in &args.captures {
        let name = path.display().to_string();
        if name == "-" {
            dry.feed("<stdin>", io::stdin().lock())?;
        } else {
            let file = File::open(path).map_err(|error| DryRunError::Open {
                file: name.clone(),
                error,
            })?;
            dry.feed(&name, BufReader::with_capacity(256 * 1024, file))?;
        }
    }
    Ok(())
}
