//! `airlock completions SHELL`: a completion script for the shell, generated from the clap
//! definitions (so it always knows the current commands and flags), printed to stdout.

use std::process::ExitCode;

use clap::CommandFactory as _;

/// Arguments of `airlock completions`.
#[derive(Debug, clap::Args)]
#[command(
    after_help = "Examples:\n  airlock completions bash > ~/.local/share/bash-completion/completions/airlock\n  airlock completions zsh > ~/.zfunc/_airlock    (with fpath+=(~/.zfunc) before compinit)\n  airlock completions fish > ~/.config/fish/completions/airlock.fish"
)]
pub struct Args {
    /// The shell to complete for.
    #[arg(value_enum)]
    shell: clap_complete::Shell,
}

/// Print the script.
pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    let mut command = crate::cli::Cli::command();
    // Into memory first: clap_complete panics when its writer fails.
    let mut script = Vec::new();
    clap_complete::generate(args.shell, &mut command, "airlock", &mut script);
    super::write_stdout(&script)?;
    Ok(ExitCode::SUCCESS)
}
