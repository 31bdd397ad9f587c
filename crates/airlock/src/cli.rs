//! The command line, in one place.

use clap::{Parser, Subcommand};

use crate::commands;

/// Secure, reproducible work on shared GPU servers: an SSH agent with a forwarding policy,
/// per-project keys, OpenSSH config auditing and conda environments.
#[derive(Debug, Parser)]
#[command(
    name = "airlock",
    version,
    propagate_version = true,
    max_term_width = 100
)]
pub struct Cli {
    /// More log output on stderr (repeat for more). `RUST_LOG` overrides.
    #[arg(short, long, global = true, action = clap::ArgAction::Count)]
    pub verbose: u8,
    /// Only errors on stderr.
    #[arg(short, long, global = true)]
    pub quiet: bool,
    #[command(subcommand)]
    pub command: Command,
}

/// The subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the SSH agent (a drop-in for ssh-agent): `eval "$(airlock agent)"`.
    Agent(commands::agent::Args),
    /// Put the forwarding policy and audit in front of another agent.
    Guard(commands::guard::Args),
    /// The forwarding policy: init, check, explain.
    Policy(commands::policy::Args),
    /// Show the audit log of agent decisions.
    Audit(commands::audit::Args),
    /// Answer the agent's confirmation requests from this terminal.
    Approve(commands::approve::Args),
    /// Per-project SSH keys: new, list, show, load, rm, import.
    Key(commands::key::Args),
    /// Read, audit and write OpenSSH client configuration.
    #[command(name = "ssh-config")]
    SshConfig(commands::ssh_config::Args),
    /// Conda environments: create, list, remove, export, lock, install, update, run, shell-hook.
    Env(commands::env::Args),
    /// Run ssh to HOST with the airlock agent, forwarding it only where the policy allows.
    Connect(commands::connect::Args),
    /// Put airlock on a server (`install`) and check what is there (`status`).
    Remote(commands::remote::Args),
    /// Jupyter Lab on a server in one of its environments, through an SSH tunnel.
    Jupyter(commands::jupyter::Args),
    /// Run the whole workflow end to end on loopback, with throwaway sshd servers.
    Demo(commands::demo::Args),
    /// Print a shell completion script: bash, zsh, fish, elvish or powershell.
    Completions(commands::completions::Args),
    /// Print the manual page, or write one page per command with --dir.
    Man(commands::man::Args),
}
