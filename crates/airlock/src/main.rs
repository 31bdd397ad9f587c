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
            eprintln!("airlock: error: {}", commands::error_text(&err));
            ExitCode::from(1)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::commands::{error_text, plain};

    #[test]
    fn errors_without_rust_internals() {
        assert_eq!(
            plain("cannot read /x: No such file or directory (os error 2)"),
            "cannot read /x: No such file or directory"
        );
        assert_eq!(plain("/y: entity not found"), "/y: not found");
        assert_eq!(plain("a (os error 13): b"), "a: b");
    }

    #[test]
    fn a_cause_already_said_is_not_repeated() {
        let io = std::io::Error::from_raw_os_error(2);
        let err = anyhow::Error::new(io).context(format!(
            "cannot read /missing: {}",
            super::commands::io_reason(&std::io::Error::from_raw_os_error(2))
        ));
        assert_eq!(
            error_text(&err),
            "cannot read /missing: No such file or directory"
        );
    }
}
