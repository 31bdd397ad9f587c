//! One module per command; each has an `Args` struct and a `run` function.

pub mod agent;
pub mod approve;
pub mod audit;
pub mod connect;
pub mod demo;
pub mod env;
pub mod guard;
pub mod jupyter;
pub mod key;
pub mod policy;
pub mod policy_setup;
pub mod remote;
pub mod ssh_config;

use std::process::ExitCode;

use crate::cli::Command;

/// Dispatch a parsed command.
pub fn run(command: Command) -> anyhow::Result<ExitCode> {
    match command {
        Command::Agent(args) => agent::run(args),
        Command::Guard(args) => guard::run(args),
        Command::Key(args) => key::run(args),
        Command::SshConfig(args) => ssh_config::run(args),
        Command::Env(args) => env::run(args),
        Command::Demo(args) => demo::run(args),
        Command::Policy(args) => policy::run(args),
        Command::Audit(args) => audit::run(args),
        Command::Approve(args) => approve::run(args),
        Command::Connect(args) => connect::run(args),
        Command::Remote(args) => remote::run(args),
        Command::Jupyter(args) => jupyter::run(args),
    }
}
