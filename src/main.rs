//! The dlqd binary: parse arguments, set up logs, run the command, map errors to exit codes.

use std::process::ExitCode;

use clap::Parser;
use dlqd::cli::{Cli, Command, LogFormat};
use dlqd::commands;
use dlqd::progress::LogWriter;

/// mimalloc: measured on a drain, glibc's malloc and free were a quarter of dlqd's CPU
/// (lapin allocates several times per frame); see README "Performance".
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> ExitCode {
    let cli = Cli::parse();
    init_logs(cli.log_format);
    let result = match cli.command {
        Command::Check(a) => commands::check::run(a),
        Command::DryRun(a) => commands::dry_run::run(a),
        Command::Run(a) => commands::run::run(a),
        Command::Capture(a) => commands::capture::run(a),
        Command::Inspect(a) => commands::inspect::run(a),
        Command::Publish(a) => commands::publish::run(a),
        Command::Completions(a) => commands::completions::run(a),
        Command::Man(a) => commands::man::run(a),
    };
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("dlqd: error: {e:#}");
            ExitCode::from(1)
        }
    }
}

/// Logs go to stderr (around the progress bar of a drain, if one is drawn); lapin's own logs are off unless DLQD_LOG names lapin (and then its returned-message logs, which carry payloads, stay off).
fn init_logs(format: LogFormat) {
    use tracing_subscriber::EnvFilter;
    // lapin logs at ERROR what dlqd handles and reports itself (a channel the broker
    // closed, its own reconnect attempts): off unless DLQD_LOG names lapin.
    let asked = std::env::var("DLQD_LOG").unwrap_or_default();
    let mut filter = EnvFilter::try_from_env("DLQD_LOG").unwrap_or_else(|_| EnvFilter::new("info"));
    let quiet = if asked.contains("lapin") {
        &["lapin::returned_messages=off"][..]
    } else {
        &["lapin=off", "amq_protocol=off"][..]
    };
    for d in quiet {
        filter = filter.add_directive(d.parse().expect("static directive"));
    }
    // No ANSI colours: the text writer escapes every control character a log line
    // carries (a producer's message id included), so none can forge a line.
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(false);
    match format {
        LogFormat::Text => builder.with_writer(LogWriter::text()).init(),
        LogFormat::Json => builder.json().with_writer(LogWriter::json()).init(),
    }
}
