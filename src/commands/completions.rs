//! `dlqd completions SHELL`: a shell completion script generated from the clap
//! definitions (`crate::cli`), to stdout.

use std::process::ExitCode;

use clap::CommandFactory;

use crate::cli::{Cli, CompletionsArgs};

pub fn run(args: CompletionsArgs) -> anyhow::Result<ExitCode> {
    let mut cmd = Cli::command();
    let name = cmd.get_name().to_owned();
    // Generated into memory first: clap_complete panics on a failed write.
    let mut script = Vec::with_capacity(64 * 1024);
    clap_complete::generate(args.shell, &mut cmd, name, &mut script);
    super::write_stdout(&script)?;
    Ok(ExitCode::SUCCESS)
}
