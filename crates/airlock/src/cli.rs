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

/// `connect`'s examples (here, beside the variant, so that `connect.rs` stays the command).
const CONNECT_EXAMPLES: &str = "Examples:
  airlock connect gpu                              a login shell on gpu
  airlock connect gpu -n torch -- python train.py  run in environment torch on gpu
  airlock connect gpu -t -n torch -- htop          a command that needs a terminal";

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
    /// Per-project SSH keys: new, list, show, load, rm, import, passwd, expire.
    Key(commands::key::Args),
    /// Read, audit and write OpenSSH client configuration.
    #[command(name = "ssh-config")]
    SshConfig(commands::ssh_config::Args),
    /// Conda environments: create, list, remove, export, lock, install, update, run, shell,
    /// shell-hook.
    Env(commands::env::Args),
    /// Run ssh to HOST with the airlock agent, forwarding it only where the policy allows.
    #[command(after_help = CONNECT_EXAMPLES)]
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

#[cfg(test)]
mod tests {
    use clap::{CommandFactory as _, Parser as _};

    use super::Cli;

    /// Split an example into words as a POSIX shell would (quotes, no expansion), up to the
    /// first operator (`&&`, `|`, `>`) or comment of two spaces.
    fn shell_words(line: &str) -> Vec<String> {
        let line = line.split("  ").next().unwrap_or_default();
        let mut words = Vec::new();
        let mut word: Option<String> = None;
        let mut quote = None;
        for c in line.chars() {
            match (quote, c) {
                (Some(q), c) if c == q => quote = None,
                (None, '\'' | '"') => {
                    quote = Some(c);
                    word.get_or_insert_default();
                }
                (None, ' ') => words.extend(word.take()),
                (_, c) => word.get_or_insert_default().push(c),
            }
        }
        words.extend(word);
        let end = words
            .iter()
            .position(|w| ["&&", "|", ">", ";"].contains(&w.as_str()))
            .unwrap_or(words.len());
        words.truncate(end);
        words
    }

    fn examples(command: &clap::Command, out: &mut Vec<(String, String)>) {
        if let Some(help) = command.get_after_help() {
            let help = help.to_string();
            if let Some((_, section)) = help.split_once("Examples:\n") {
                for line in section.lines().map(str::trim_start) {
                    if line.starts_with("airlock ") {
                        out.push((command.get_name().to_owned(), line.to_owned()));
                    }
                }
            }
        }
        for sub in command.get_subcommands() {
            examples(sub, out);
        }
    }

    /// Every `airlock ...` line of an `Examples:` section parses with the real flags.
    #[test]
    fn every_example_parses() {
        let mut found = Vec::new();
        examples(&Cli::command(), &mut found);
        assert!(found.len() >= 20, "{found:?}");
        for (command, line) in found {
            let words = shell_words(&line);
            if let Err(e) = Cli::try_parse_from(&words) {
                panic!("the example {line:?} of `{command}` does not parse ({words:?}): {e}");
            }
        }
    }

    #[test]
    fn example_words_are_split_as_a_shell_would() {
        assert_eq!(
            shell_words("airlock env run -n t -- python -c 'import a; b(\"x y\")'    (note)"),
            [
                "airlock",
                "env",
                "run",
                "-n",
                "t",
                "--",
                "python",
                "-c",
                "import a; b(\"x y\")"
            ]
        );
        assert_eq!(
            shell_words("airlock policy init && airlock policy check"),
            ["airlock", "policy", "init"]
        );
    }
}
