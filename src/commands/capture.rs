//! `dlqd capture`.

use std::process::ExitCode;

use crate::cli::CaptureArgs;

pub fn run(_args: CaptureArgs) -> anyhow::Result<ExitCode> {
    anyhow::bail!("not implemented yet")
}
