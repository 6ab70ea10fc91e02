//! `dlqd dry-run`.

use std::process::ExitCode;

use crate::cli::DryRunArgs;

pub fn run(_args: DryRunArgs) -> anyhow::Result<ExitCode> {
    anyhow::bail!("not implemented yet")
}
