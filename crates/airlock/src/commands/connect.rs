//! `airlock connect HOST [--env NAME | -p PREFIX] [-- COMMAND ARGS]`: the system `ssh` with the
//! airlock agent as its identity agent, forwarding that agent only to a host the policy lets
//! some key be used through.
//!
//! On the server a forwarded agent gets a stable name, `~/.ssh/airlock-agent.sock`, re-pointed
//! at the live socket on every connection, so tmux sessions and Jupyter kernels started in an
//! earlier session reach the agent again after a reconnect.

use std::ffi::OsString;
use std::os::unix::process::CommandExt as _;
use std::path::PathBuf;
use std::process::ExitCode;

use airlock_policy::{CompiledPolicy, PolicySources};
use anyhow::Context as _;

use super::remote::{HostArgs, remote_path_word, shell_quote};
use crate::paths;

/// The stable path of the forwarded agent on a server.
pub const DEFAULT_AGENT_LINK: &str = "~/.ssh/airlock-agent.sock";

/// Flags of `airlock connect`.
#[derive(Debug, clap::Args)]
pub struct Args {
    #[command(flatten)]
    host: HostArgs,
    /// Run in this environment on HOST (an airlock or conda environment name).
    #[arg(
        long = "env",
        short = 'n',
        value_name = "NAME",
        conflicts_with = "prefix"
    )]
    env: Option<String>,
    /// Run in the environment at this directory on HOST (any conda environment or venv).
    #[arg(short = 'p', long = "prefix", value_name = "PREFIX")]
    prefix: Option<String>,
    /// The airlock agent socket (default: $AIRLOCK_AGENT_SOCK, else $SSH_AUTH_SOCK as
    /// `eval "$(airlock agent)"` sets it, else $XDG_RUNTIME_DIR/airlock/agent.sock).
    #[arg(long, value_name = "SOCKET", env = paths::ENV_AGENT_SOCK)]
    agent: Option<PathBuf>,
    /// The forwarding policy (default: $XDG_CONFIG_HOME/airlock/policy.toml).
    #[arg(long, value_name = "FILE", env = paths::ENV_POLICY)]
    policy: Option<PathBuf>,
    /// The stable agent socket path kept on HOST when the agent is forwarded.
    #[arg(long, value_name = "PATH", default_value = DEFAULT_AGENT_LINK)]
    agent_link: String,
    /// Allocate a terminal even for a command (`ssh -t`).
    #[arg(short = 't')]
    tty: bool,
    /// The command to run on HOST (through its shell); none: an interactive login shell.
    #[arg(last = true, value_name = "COMMAND")]
    command: Vec<String>,
}

fn load_policy(file: PathBuf, ssh_config: Option<&PathBuf>) -> anyhow::Result<CompiledPolicy> {
    let mut sources = PolicySources::for_user(&paths::home(), file, paths::keys_dir());
    if let (Some(cfg), Some(options)) = (ssh_config, sources.ssh_config.as_mut()) {
        options.config = airlock_ssh_config::ConfigSource::File(cfg.clone());
    }
    CompiledPolicy::load(&sources).context("cannot load the policy")
}

/// The remote script that re-points the stable agent link at this session's forwarded agent.
pub fn agent_link_script(link: &str) -> String {
    let word = remote_path_word(link);
    let dir = link.rsplit_once('/').map_or("~", |(d, _)| d);
    format!(
        "if [ -n \"$SSH_AUTH_SOCK\" ]; then mkdir -p -m 700 {} && ln -sfn \"$SSH_AUTH_SOCK\" {word}; fi; ",
        remote_path_word(if dir.is_empty() { "/" } else { dir })
    )
}

/// A remote test that stops with a message naming `airlock remote install HOST` when airlock
/// is not on the server (exit 127, as the shell's "command not found").
fn missing_airlock_check(host: &super::remote::HostArgs) -> String {
    let message = format!(
        "airlock: error: airlock is not installed on this server ({}); on your laptop run: airlock remote install {}",
        host.remote_dir,
        shell_quote(&host.host)
    );
    format!(
        "if ! [ -x {} ]; then echo {} >&2; exit 127; fi; ",
        host.remote_airlock(),
        shell_quote(&message)
    )
}

/// `-n NAME` or `-p PREFIX` for a remote airlock, quoted.
pub fn target_words(env: Option<&str>, prefix: Option<&str>) -> Option<String> {
    env.map(|n| format!("-n {}", shell_quote(n)))
        .or_else(|| prefix.map(|p| format!("-p {}", remote_path_word(p))))
}

/// Run `airlock connect`.
#[expect(
    clippy::needless_pass_by_value,
    reason = "every command's run takes its Args by value"
)]
pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    let agent = args.agent.clone().unwrap_or_else(paths::user_agent_socket);
    let policy_file = args.policy.clone().unwrap_or_else(paths::policy_file);
    let policy = load_policy(policy_file.clone(), args.host.ssh_config.as_ref())?;
    let (mut forward, reason) = policy.forwarding_through(&args.host.host);
    if policy.is_unrestricted() {
        eprintln!(
            "airlock: {}",
            airlock_policy::unrestricted_message(&policy_file)
        );
    }
    tracing::info!(host = %args.host.host, forward, %reason, "agent forwarding");
    let host = airlock_protocol::text::printable(&args.host.host, 200);
    if std::os::unix::net::UnixStream::connect(&agent).is_err() {
        eprintln!(
            "airlock: warning: no agent answers at {}: not forwarding it; start one with `eval \"$(airlock agent)\"`",
            agent.display()
        );
        forward = false;
    } else if !forward {
        eprintln!("airlock: not forwarding the agent to {host}: {reason}");
    }

    let mut options: Vec<OsString> = Vec::new();
    let mut identity = OsString::from("IdentityAgent=");
    identity.push(&agent);
    options.extend(["-o".into(), identity]);
    let mut forward_opt = OsString::from("ForwardAgent=");
    if forward {
        forward_opt.push(&agent);
    } else {
        forward_opt.push("no");
    }
    options.extend(["-o".into(), forward_opt]);

    let target = target_words(args.env.as_deref(), args.prefix.as_deref());
    let link = if forward {
        agent_link_script(&args.agent_link)
    } else {
        String::new()
    };
    let interactive = args.command.is_empty();
    let remote_command = match (&target, interactive) {
        (None, true) if link.is_empty() => None,
        (None, true) => Some(format!("{link}exec \"${{SHELL:-/bin/sh}}\" -l")),
        (None, false) => Some(format!("{link}{}", args.command.join(" "))),
        (Some(t), true) => Some(format!(
            "{link}{}exec {} env run {t} -- \"${{SHELL:-/bin/sh}}\" -l",
            missing_airlock_check(&args.host),
            args.host.remote_airlock()
        )),
        (Some(t), false) => Some(format!(
            "{link}{}{} env run {t} -- sh -c {}",
            missing_airlock_check(&args.host),
            args.host.remote_airlock(),
            shell_quote(&args.command.join(" "))
        )),
    };
    if args.tty || (interactive && remote_command.is_some()) {
        options.push("-t".into());
    }
    let mut cmd = args.host.ssh(&options);
    if let Some(rc) = remote_command {
        cmd.arg(rc);
    }
    tracing::debug!(?cmd, "running ssh");
    let err = cmd.exec();
    Err(err).context("cannot run ssh (is OpenSSH installed?)")
}
