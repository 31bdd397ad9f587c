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

use airlock_agent::policy::{Decision, Operation};
use airlock_policy::{CompiledPolicy, ForwardDefault, Hop, KeySelector, PolicySources};
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
    /// The airlock agent socket (default: $XDG_RUNTIME_DIR/airlock/agent.sock).
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

/// Whether the policy lets some key be used through `host`, and why (for the log).
pub fn forwarding_allowed(policy: &CompiledPolicy, host: &str) -> (bool, String) {
    if policy.is_unrestricted() {
        return (true, "no policy file: OpenSSH behaviour".to_owned());
    }
    if policy
        .file()
        .is_some_and(|f| f.defaults.forward == ForwardDefault::Allow)
    {
        return (true, "[defaults] forward = \"allow\"".to_owned());
    }
    let hop = policy.hop_for_name(host, true).unwrap_or_else(|| Hop {
        names: vec![host.to_lowercase()],
        fingerprint: String::new(),
        forwarded: true,
        revoked: false,
    });
    for rule in policy.rules() {
        let comment = match &rule.rule.key {
            KeySelector::Name(n) => n.clone(),
            KeySelector::Fingerprint(_) => String::new(),
        };
        let fingerprint = rule
            .fingerprints
            .first()
            .cloned()
            .unwrap_or_else(|| rule.rule.key.to_string());
        match policy.decide_hops(
            &fingerprint,
            &comment,
            Operation::List,
            std::slice::from_ref(&hop),
            false,
        ) {
            Decision::Allow(reason) | Decision::Confirm(reason) => {
                return (true, format!("key {}: {reason}", rule.label()));
            }
            Decision::Deny(_) => {}
        }
    }
    (
        false,
        format!("no key of the policy may be used through {host}"),
    )
}

fn load_policy(file: PathBuf, ssh_config: Option<&PathBuf>) -> anyhow::Result<CompiledPolicy> {
    let mut sources = PolicySources::for_user(&paths::home(), file, paths::keys_dir());
    if let Some(cfg) = ssh_config {
        sources.ssh_config = Some(cfg.clone());
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
    let agent = args.agent.clone().unwrap_or_else(paths::agent_socket);
    let policy_file = args.policy.clone().unwrap_or_else(paths::policy_file);
    let policy = load_policy(policy_file.clone(), args.host.ssh_config.as_ref())?;
    let (forward, reason) = forwarding_allowed(&policy, &args.host.host);
    if policy.is_unrestricted() {
        eprintln!(
            "airlock: {}",
            airlock_policy::unrestricted_message(&policy_file)
        );
    }
    tracing::info!(host = %args.host.host, forward, %reason, "agent forwarding");

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
            "{link}exec {} env run {t} -- \"${{SHELL:-/bin/sh}}\" -l",
            args.host.remote_airlock()
        )),
        (Some(t), false) => Some(format!(
            "{link}{} env run {t} -- sh -c {}",
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
