//! `airlock guard`: the forwarding policy, confirmation and audit in front of another agent.

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use airlock_agent::guard::Guard;
use anyhow::Context;

use super::agent::{
    absolute, bind, cleanup, env_lines, harden, is_detached_child, report_ready, serve_control,
    start_detached, terminated,
};
use super::policy_setup::PolicyArgs;
use crate::paths;

/// Put airlock's policy, confirmation and audit in front of another agent (OpenSSH's
/// ssh-agent, a hardware-token or password-manager agent). Point SSH_AUTH_SOCK at the guard's
/// socket; it forwards what the policy allows to the upstream agent.
#[derive(Debug, clap::Args)]
#[command(after_help = "Example:\n  eval \"$(airlock guard --upstream \"$SSH_AUTH_SOCK\")\"")]
pub struct Args {
    /// The agent to guard (default: $SSH_AUTH_SOCK).
    #[arg(long, value_name = "SOCKET")]
    pub upstream: Option<PathBuf>,
    /// Bind the guard to this socket (default: $XDG_RUNTIME_DIR/airlock/guard.sock).
    #[arg(short = 'a', value_name = "SOCKET")]
    pub socket: Option<PathBuf>,
    /// Stay in the foreground.
    #[arg(short = 'D')]
    pub foreground: bool,
    /// Stay in the foreground and log debug output to stderr.
    #[arg(short = 'd', conflicts_with = "foreground")]
    pub debug: bool,
    /// Print C shell commands.
    #[arg(short = 'c')]
    pub csh: bool,
    /// Answer confirmations with `airlock approve` from a terminal, for machines without an
    /// askpass program or display (see `airlock agent --help`).
    #[arg(long)]
    pub approve_in_terminal: bool,
    /// Policy and audit log.
    #[command(flatten)]
    pub policy: PolicyArgs,
}

/// Run the command.
pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    let upstream = match &args.upstream {
        Some(p) => p.clone(),
        None => std::env::var_os("SSH_AUTH_SOCK")
            .map(PathBuf::from)
            .context("no upstream agent: pass --upstream SOCKET or set SSH_AUTH_SOCK")?,
    };
    let upstream = absolute(&upstream)?;
    if std::os::unix::net::UnixStream::connect(&upstream).is_err() {
        anyhow::bail!("cannot reach the upstream agent at {}", upstream.display());
    }
    let default_socket = args.socket.is_none();
    let socket = absolute(
        &args
            .socket
            .clone()
            .unwrap_or_else(|| paths::agent_socket().with_file_name("guard.sock")),
    )?;
    if upstream == socket {
        anyhow::bail!(
            "the guard cannot listen on its own upstream socket {}",
            socket.display()
        );
    }
    let csh = args.csh || std::env::var("SHELL").is_ok_and(|s| s.ends_with("csh"));
    if !args.foreground && !args.debug && !is_detached_child() {
        if default_socket && let Some(dir) = socket.parent() {
            super::agent::private_dir(dir)?;
        }
        let mut child: Vec<std::ffi::OsString> = vec![
            "guard".into(),
            "-D".into(),
            "-a".into(),
            socket.clone().into(),
            "--upstream".into(),
            upstream.into(),
        ];
        child.extend(args.policy.to_args());
        if args.approve_in_terminal {
            child.push("--approve-in-terminal".into());
        }
        // What the detached guard would find wrong is said here, before it detaches (and,
        // once, that there is no policy), as for the agent.
        args.policy.check_named_file()?;
        drop(args.policy.gate()?);
        return start_detached(&child, &socket, csh);
    }
    harden();
    let (listener, created) = bind(&socket, default_socket)?;
    let mut gate = args.policy.gate()?;
    gate.approve_in_terminal = args.approve_in_terminal;
    if is_detached_child() {
        report_ready();
    } else {
        print!("{}", env_lines(&socket, std::process::id(), csh));
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    runtime.block_on(async {
        listener.set_nonblocking(true)?;
        let listener = tokio::net::UnixListener::from_std(listener)?;
        let control = if gate.approve_in_terminal {
            Some(serve_control(&socket, gate.approvals.clone())?)
        } else {
            None
        };
        let guard = Arc::new(Guard { upstream, gate });
        airlock_agent::guard::serve(listener, Arc::clone(&guard), terminated()).await;
        guard.gate.flush_audit();
        if let Some(c) = control {
            c.abort();
        }
        anyhow::Ok(())
    })?;
    cleanup(&socket, created.as_deref());
    Ok(ExitCode::SUCCESS)
}
