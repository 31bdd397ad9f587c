//! `airlock`: one binary for secure, reproducible work on shared GPU servers.
//!
//! The binary is glue: it parses the command line, installs logging and dispatches to one module
//! per command. Each command turns its flags and environment into plain settings and calls the
//! library crates.

mod cli;
mod commands;
mod logging;
mod paths;

use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    let cli = cli::Cli::parse();
    // `-d` on the agent or the guard means foreground with debug output, as for ssh-agent.
    let debug = match &cli.command {
        cli::Command::Agent(a) => a.debug,
        cli::Command::Guard(g) => g.debug,
        _ => false,
    };
    logging::init(
        if debug {
            cli.verbose.max(2)
        } else {
            cli.verbose
        },
        cli.quiet,
    );
    match commands::run(cli.command) {
        Ok(code) => code,
        Err(err) => {
            eprintln!("airlock: error: {err:#}");
            ExitCode::from(1)
        }
    }
}
