//! The dlqd binary: parse arguments, set up logs, run the command, map errors to exit codes.

use std::process::ExitCode;

use clap::Parser;
use dlqd::cli::{Cli, Command, LogFormat};
use dlqd::commands;

fn main() -> ExitCode {
    let cli = Cli::parse();
    init_logs(cli.log_format);
    let result = match cli.command {
        Command::Check(a) => commands::check::run(a),
        Command::DryRun(a) => commands::dry_run::run(a),
        Command::Run(a) => commands::run::run(a),
        Command::Capture(a) => commands::capture::run(a),
        Command::Inspect(a) => commands::inspect::run(a),
    };
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("dlqd: error: {e:#}");
            ExitCode::from(1)
        }
    }
}

/// Logs go to stderr; lapin's returned-message logs (which carry payloads) are filtered out.
fn init_logs(format: LogFormat) {
    use tracing_subscriber::EnvFilter;
    let filter = EnvFilter::try_from_env("DLQD_LOG")
        .unwrap_or_else(|_| EnvFilter::new("info"))
        .add_directive(
            "lapin::returned_messages=off"
                .parse()
                .expect("static directive"),
        );
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()));
    match format {
        LogFormat::Text => builder.init(),
        LogFormat::Json => builder.json().init(),
    }
}
