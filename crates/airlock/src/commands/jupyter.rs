//! `airlock jupyter`: Jupyter Lab on a server through an SSH tunnel (in progress).

use std::process::ExitCode;

/// Flags of `airlock jupyter`.
#[derive(Debug, clap::Args)]
pub struct Args {}

/// Run `airlock jupyter`.
pub fn run(_args: Args) -> anyhow::Result<ExitCode> {
    anyhow::bail!("airlock jupyter is not implemented yet")
}
