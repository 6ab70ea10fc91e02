//! `dlqd inspect`.

use std::process::ExitCode;

use crate::cli::InspectArgs;

pub fn run(_args: InspectArgs) -> anyhow::Result<ExitCode> {
    anyhow::bail!("not implemented yet")
}
