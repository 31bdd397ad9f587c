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
            eprintln!("airlock: error: {}", plain(&format!("{err:#}")));
            ExitCode::from(1)
        }
    }
}

/// An error chain in the user's words: the standard library's `(os error N)` suffixes and
/// `entity not found` are Rust's, not the user's.
fn plain(message: &str) -> String {
    let mut out = String::with_capacity(message.len());
    let mut rest = message;
    while let Some(at) = rest.find(" (os error ") {
        let (before, after) = rest.split_at(at);
        out.push_str(before);
        match after.find(')') {
            Some(end) => rest = &after[end + 1..],
            None => {
                rest = "";
            }
        }
    }
    out.push_str(rest);
    out.replace("entity not found", "not found")
}

#[cfg(test)]
mod tests {
    #[test]
    fn errors_without_rust_internals() {
        assert_eq!(
            super::plain("cannot read /x: No such file or directory (os error 2)"),
            "cannot read /x: No such file or directory"
        );
        assert_eq!(super::plain("/y: entity not found"), "/y: not found");
        assert_eq!(super::plain("a (os error 13): b"), "a: b");
    }
}
