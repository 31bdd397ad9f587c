//! `airlock agent`: run the SSH agent, with the same command line and output as `ssh-agent`.

use std::io::{BufRead, BufReader, Write};
use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
use std::os::unix::net::UnixListener as StdListener;
use std::path::{Path, PathBuf};
use std::process::{ExitCode, Stdio};
use std::sync::Arc;
use std::time::Duration;

use airlock_agent::{Agent, AgentOptions};
use anyhow::{Context, bail};

use crate::paths;

/// Set in the re-executed daemon so it reports readiness on stdout.
const ENV_DAEMON_CHILD: &str = "AIRLOCK_AGENT_DAEMON_CHILD";

/// Run the SSH agent. Without options it daemonises and prints shell commands to set
/// `SSH_AUTH_SOCK` and `SSH_AGENT_PID`: use `eval "$(airlock agent)"`.
#[derive(Debug, clap::Args)]
#[command(
    after_help = "Without -a, each agent gets a socket of its own: $AIRLOCK_AGENT_SOCK when set, else \
$XDG_RUNTIME_DIR/airlock/agent.sock when no agent listens there, else a new name beside it \
(agent.XXXXXXXX.sock); with no runtime directory, a fresh private directory in $TMPDIR or \
/tmp, as ssh-agent does. With --reuse, every terminal shares one agent.\n\nExamples:\n  eval \"$(airlock agent)\"\n  eval \"$(airlock agent --reuse)\"        in ~/.bashrc: one agent per login\n  airlock agent -D -a /tmp/agent.sock\n  airlock agent ssh-add -l"
)]
pub struct Args {
    /// Bind the agent to this socket path (default: see below).
    #[arg(short = 'a', value_name = "SOCKET")]
    pub socket: Option<PathBuf>,
    /// Accepted for ssh-agent compatibility (the PKCS#11/FIDO provider allowlist): airlock
    /// never loads provider code, so there is nothing to allow.
    #[arg(short = 'P', value_name = "ALLOWLIST")]
    pub provider_allowlist: Option<String>,
    /// Accepted for ssh-agent compatibility (-O option); ignored.
    #[arg(short = 'O', value_name = "OPTION")]
    pub ssh_agent_option: Vec<String>,
    /// Answer confirmations with `airlock approve` from a terminal, for machines without an
    /// askpass program or display. Any process of yours can then answer: see SECURITY.md.
    /// When askpass is usable it alone decides all the same.
    #[arg(long)]
    pub approve_in_terminal: bool,
    /// The socket's directory was made for this agent alone: remove it at exit (set by the
    /// detaching parent).
    #[arg(long, hide = true)]
    pub owned_dir: bool,
    /// One agent per login, shared by every terminal (as `keychain`): if an agent of yours
    /// already listens on the shared socket ($AIRLOCK_AGENT_SOCK, else
    /// $XDG_RUNTIME_DIR/airlock/agent.sock), print its variables and exit; else start one there.
    #[arg(long, conflicts_with_all = ["socket", "command", "kill"])]
    pub reuse: bool,
    /// Stay in the foreground.
    #[arg(short = 'D')]
    pub foreground: bool,
    /// Stay in the foreground and log debug output to stderr.
    #[arg(short = 'd', conflicts_with = "foreground")]
    pub debug: bool,
    /// Print Bourne shell commands (the default unless $SHELL looks like csh).
    #[arg(short = 's', conflicts_with = "csh")]
    pub sh: bool,
    /// Print C shell commands.
    #[arg(short = 'c')]
    pub csh: bool,
    /// Default lifetime for added keys, e.g. 3600, 90m, 8h, 1d.
    #[arg(short = 't', value_name = "LIFE", value_parser = parse_lifetime)]
    pub lifetime: Option<Duration>,
    /// Kill the agent named by $SSH_AGENT_PID.
    #[arg(short = 'k')]
    pub kill: bool,
    /// Policy and audit log.
    #[command(flatten)]
    pub policy: super::policy_setup::PolicyArgs,
    /// Run this command with the agent and exit when it exits (as `ssh-agent COMMAND`; `--`
    /// before it is optional).
    #[arg(trailing_var_arg = true, value_name = "COMMAND")]
    pub command: Vec<String>,
}

/// Parse an OpenSSH time format: a number of seconds, or numbers with s/m/h/d/w suffixes.
pub fn parse_lifetime(s: &str) -> Result<Duration, String> {
    let err = || format!("invalid lifetime {s:?}: use seconds or a time like 90m, 8h, 1d");
    if s.is_empty() {
        return Err(err());
    }
    let mut total: u64 = 0;
    let mut num = String::new();
    for c in s.chars() {
        if c.is_ascii_digit() {
            num.push(c);
            continue;
        }
        let mult = match c.to_ascii_lowercase() {
            's' => 1,
            'm' => 60,
            'h' => 3600,
            'd' => 86400,
            'w' => 604_800,
            _ => return Err(err()),
        };
        let n: u64 = num.parse().map_err(|_| err())?;
        total = total
            .checked_add(n.checked_mul(mult).ok_or_else(err)?)
            .ok_or_else(err)?;
        num.clear();
    }
    if !num.is_empty() {
        total = total
            .checked_add(num.parse::<u64>().map_err(|_| err())?)
            .ok_or_else(err)?;
    }
    if total == 0 || total > u64::from(u32::MAX) {
        return Err(err());
    }
    Ok(Duration::from_secs(total))
}

/// Run the command.
pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    let csh = args.csh || (!args.sh && std::env::var("SHELL").is_ok_and(|s| s.ends_with("csh")));
    if args.kill {
        return kill(csh);
    }
    if args.provider_allowlist.is_some() {
        tracing::info!("-P: accepted; airlock loads no PKCS#11 or FIDO provider code");
    }
    let is_child = is_detached_child();
    let detach = !args.foreground && !args.debug && args.command.is_empty() && !is_child;
    // Check the policy before anything is bound or detached: a named file that is missing
    // is an error, not "no policy".
    args.policy.check_named_file()?;

    if args.reuse
        && !is_child
        && let Some(code) = reuse_shared(csh)?
    {
        return Ok(code);
    }
    harden();
    let shared = args.reuse.then(paths::agent_socket);
    let (listener, socket, created_dir) =
        match (systemd_listener(), shared.as_ref().or(args.socket.as_ref())) {
            (Some(l), _) => {
                let socket = args.socket.clone().unwrap_or_else(paths::agent_socket);
                (l, absolute(&socket)?, None)
            }
            (None, Some(named)) => {
                let socket = absolute(named)?;
                let (l, _) = bind(&socket, false)?;
                let owned = args
                    .owned_dir
                    .then(|| socket.parent().map(Path::to_path_buf))
                    .flatten();
                (l, socket, owned)
            }
            (None, None) => bind_own_socket(!args.command.is_empty())?,
        };

    if detach {
        // What the detached agent would find wrong is said here, before it detaches, as
        // ssh-agent does: a broken policy file (file:line), an audit log that cannot be opened.
        // Building the gate also says, once, when there is no policy (the detached agent logs
        // nowhere a user sees).
        drop(args.policy.gate()?);
        // The child binds again on the same path: hand it over.
        drop(listener);
        let _ = std::fs::remove_file(&socket);
        return daemonise(&args, &socket, created_dir.as_deref(), csh);
    }

    let wipe_signal = wipe_signal();
    let mut gate = args.policy.gate()?;
    gate.approve_in_terminal = args.approve_in_terminal;
    let options = AgentOptions {
        default_lifetime: args.lifetime,
        gate,
        wipe_signal,
    };
    let pid = std::process::id();

    if is_child {
        report_ready();
    } else if args.command.is_empty() {
        print!("{}", env_lines(&socket, pid, csh));
        let _ = std::io::stdout().flush();
    }

    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(std::thread::available_parallelism().map_or(2, |n| n.get().min(4)))
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    let code = runtime.block_on(async {
        let control = if options.gate.approve_in_terminal {
            Some(serve_control(&socket, options.gate.approvals.clone())?)
        } else {
            None
        };
        let code = serve(listener, options, &socket, &args.command).await;
        if let Some(c) = control {
            c.abort();
        }
        code
    });
    cleanup(&socket, created_dir.as_deref());
    code
}

/// `--reuse`: the variables of the agent already listening on the shared socket, if one of
/// ours does (its pid from the socket's peer credentials). `None`: start one there.
fn reuse_shared(csh: bool) -> anyhow::Result<Option<ExitCode>> {
    use nix::sys::socket::{getsockopt, sockopt::PeerCredentials};
    let socket = absolute(&paths::agent_socket())?;
    let Ok(stream) = std::os::unix::net::UnixStream::connect(&socket) else {
        if let Some(dir) = socket.parent() {
            private_dir(dir)?;
        }
        return Ok(None);
    };
    let creds = getsockopt(&stream, PeerCredentials)
        .with_context(|| format!("cannot tell who listens on {}", socket.display()))?;
    if creds.uid() != nix::unistd::getuid().as_raw() {
        bail!(
            "{} is held by uid {}, not by you: refusing to use it",
            socket.display(),
            creds.uid()
        );
    }
    let pid = u32::try_from(creds.pid()).unwrap_or(0);
    print!("{}", env_lines(&socket, pid, csh));
    Ok(Some(ExitCode::SUCCESS))
}

/// Bind the control socket `airlock approve` talks to, beside `socket`, and serve it in the
/// background (call inside the runtime; [`cleanup`] removes it). Only in a directory private to
/// the user (owned by them, 0700), and never over a name someone else holds: an error
/// otherwise, since the user asked for terminal approval.
pub(crate) fn serve_control(
    socket: &Path,
    approvals: airlock_agent::approval::Approvals,
) -> anyhow::Result<tokio::task::JoinHandle<()>> {
    let control = airlock_agent::approval::control_socket(socket);
    check_private_dir(control.parent().context("socket path has no directory")?)
        .context("--approve-in-terminal needs the agent socket in a private directory")?;
    if let Ok(meta) = std::fs::symlink_metadata(&control) {
        use std::os::unix::fs::{FileTypeExt, MetadataExt};
        let ours = meta.uid() == nix::unistd::getuid().as_raw();
        if !meta.file_type().is_socket() || !ours {
            bail!(
                "{} exists and is not a socket of yours: refusing to serve confirmations there",
                control.display()
            );
        }
    }
    let (listener, _) = bind(&control, false)?;
    listener.set_nonblocking(true)?;
    let listener = tokio::net::UnixListener::from_std(listener)?;
    tracing::info!(
        "confirmations without askpass are answered with `airlock approve` ({})",
        control.display()
    );
    Ok(tokio::spawn(airlock_agent::approval::serve_control(
        listener,
        approvals,
        std::future::pending(),
    )))
}

/// `dir` is owned by us and nobody else can enter or write it.
fn check_private_dir(dir: &Path) -> anyhow::Result<()> {
    use std::os::unix::fs::MetadataExt;
    let meta = std::fs::metadata(dir).with_context(|| format!("cannot read {}", dir.display()))?;
    let me = nix::unistd::getuid().as_raw();
    if meta.uid() != me {
        bail!(
            "{} is owned by uid {}, not by you",
            dir.display(),
            meta.uid()
        );
    }
    if meta.mode() & 0o077 != 0 {
        bail!(
            "{} is open to others (mode {:o}); it must be 0700",
            dir.display(),
            meta.mode() & 0o777
        );
    }
    Ok(())
}

/// Bind the agent's own socket when no `-a` was given: `$AIRLOCK_AGENT_SOCK` (an agent
/// listening there already is an error), else `$XDG_RUNTIME_DIR/airlock/agent.sock` when no
/// agent listens there, else a new name beside it; with no runtime directory, a fresh private
/// directory in $TMPDIR or /tmp, as ssh-agent does. `fresh` (an agent for one command): never
/// the shared names, always a new one. Returns the directory to remove at exit, if any.
fn bind_own_socket(fresh: bool) -> anyhow::Result<(StdListener, PathBuf, Option<PathBuf>)> {
    if let Some(shared) = std::env::var_os(paths::ENV_AGENT_SOCK)
        .filter(|s| !s.is_empty())
        .filter(|_| !fresh)
    {
        let socket = absolute(Path::new(&shared))?;
        let (l, _) = bind(&socket, false)?;
        return Ok((l, socket, None));
    }
    if let Some(runtime) = paths::runtime_dir() {
        let dir = runtime.join("airlock");
        let created = private_dir(&dir)?;
        let usual = dir.join("agent.sock");
        if !fresh && let Ok((l, _)) = bind(&usual, false) {
            return Ok((l, usual, created));
        }
        let socket = dir.join(format!("agent.{}.sock", random_name()));
        let (l, _) = bind(&socket, false)?;
        return Ok((l, socket, created));
    }
    // `$TMPDIR` when it names a directory, else /tmp, as ssh-agent.
    let tmp = std::env::temp_dir();
    let tmp = if tmp.is_absolute() && tmp.is_dir() {
        tmp
    } else {
        PathBuf::from("/tmp")
    };
    let dir = tempfile::Builder::new()
        .prefix("airlock-")
        .tempdir_in(&tmp)
        .with_context(|| format!("cannot create a private directory in {}", tmp.display()))?
        .keep();
    std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o700))?;
    let socket = dir.join(format!("agent.{}", std::process::id()));
    let (l, _) = bind(&socket, false)?;
    Ok((l, socket, Some(dir)))
}

fn random_name() -> String {
    use rand::Rng;
    use rand::distributions::Alphanumeric;
    rand::thread_rng()
        .sample_iter(&Alphanumeric)
        .take(8)
        .map(char::from)
        .collect()
}

/// SIGUSR1 ("remove every key"), read from a signalfd: blocked in every thread (spawned
/// programs get a clean mask from the standard library), so it stays pending until the agent
/// consumes it, which it does before answering each request.
#[cfg(target_os = "linux")]
fn wipe_signal() -> Option<Arc<dyn Fn() -> bool + Send + Sync>> {
    use nix::sys::signal::{SigSet, Signal};
    use nix::sys::signalfd::{SfdFlags, SignalFd};
    let mut mask = SigSet::empty();
    mask.add(Signal::SIGUSR1);
    if let Err(e) = mask.thread_block() {
        tracing::warn!("cannot block SIGUSR1: {e}");
        return None;
    }
    let fd = match SignalFd::with_flags(&mask, SfdFlags::SFD_NONBLOCK | SfdFlags::SFD_CLOEXEC) {
        Ok(fd) => std::sync::Mutex::new(fd),
        Err(e) => {
            tracing::warn!("cannot watch SIGUSR1: {e}");
            let _ = mask.thread_unblock();
            return None;
        }
    };
    Some(Arc::new(move || {
        let fd = fd.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        let mut got = false;
        while let Ok(Some(_)) = fd.read_signal() {
            got = true;
        }
        got
    }))
}

#[cfg(not(target_os = "linux"))]
fn wipe_signal() -> Option<Arc<dyn Fn() -> bool + Send + Sync>> {
    None
}

async fn serve(
    listener: StdListener,
    options: AgentOptions,
    socket: &Path,
    command: &[String],
) -> anyhow::Result<ExitCode> {
    listener.set_nonblocking(true)?;
    let listener = tokio::net::UnixListener::from_std(listener)?;
    let agent = Agent::new(options);
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(airlock_agent::server::serve(
        listener,
        Arc::clone(&agent),
        async {
            let _ = stop_rx.await;
        },
    ));
    #[cfg(not(target_os = "linux"))]
    tokio::spawn(drop_keys_on_usr1(Arc::clone(&agent)));

    let code = if let Some((program, rest)) = command.split_first() {
        let mut child = tokio::process::Command::new(program)
            .args(rest)
            .env("SSH_AUTH_SOCK", socket)
            .env("SSH_AGENT_PID", std::process::id().to_string())
            .spawn()
            .with_context(|| format!("cannot run {program}"))?;
        tokio::select! {
            status = child.wait() => {
                let status = status?;
                ExitCode::from(u8::try_from(status.code().unwrap_or(1)).unwrap_or(1))
            }
            () = terminated() => ExitCode::from(1),
        }
    } else {
        terminated().await;
        ExitCode::SUCCESS
    };
    let _ = stop_tx.send(());
    let _ = server.await;
    agent.gate().flush_audit();
    tracing::info!("agent stopped");
    Ok(code)
}

pub(crate) async fn terminated() {
    use tokio::signal::unix::{SignalKind, signal};
    let (Ok(mut term), Ok(mut int), Ok(mut hup)) = (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
        signal(SignalKind::hangup()),
    ) else {
        std::future::pending::<()>().await;
        return;
    };
    tokio::select! {
        _ = term.recv() => {}
        _ = int.recv() => {}
        _ = hup.recv() => {}
    }
}

#[cfg(not(target_os = "linux"))]
async fn drop_keys_on_usr1(agent: Arc<Agent>) {
    use tokio::signal::unix::{SignalKind, signal};
    let Ok(mut usr1) = signal(SignalKind::user_defined1()) else {
        return;
    };
    while usr1.recv().await.is_some() {
        let n = agent.remove_all();
        tracing::info!(removed = n, "SIGUSR1: removed all keys");
    }
}

/// Whether this process is the detached child of [`start_detached`].
pub(crate) fn is_detached_child() -> bool {
    std::env::var_os(ENV_DAEMON_CHILD).is_some()
}

/// In the detached child: tell the parent we are listening, then let go of its pipe.
pub(crate) fn report_ready() {
    println!("ready {}", std::process::id());
    let _ = std::io::stdout().flush();
    if let Ok(null) = std::fs::OpenOptions::new().write(true).open("/dev/null") {
        use std::os::fd::AsRawFd;
        let _ = nix::unistd::dup2(null.as_raw_fd(), 1);
        let _ = nix::unistd::dup2(null.as_raw_fd(), 2);
    }
}

pub(crate) fn absolute(p: &Path) -> anyhow::Result<PathBuf> {
    if p.is_absolute() {
        Ok(p.to_path_buf())
    } else {
        Ok(std::env::current_dir()
            .context("cannot read the current directory")?
            .join(p))
    }
}

/// Non-dumpable, no core files, and enough descriptors for many clients.
pub(crate) fn harden() {
    use nix::sys::resource::{Resource, getrlimit, setrlimit};
    #[cfg(target_os = "linux")]
    if let Err(e) = nix::sys::prctl::set_dumpable(false) {
        tracing::warn!("cannot make the agent non-dumpable: {e}");
    }
    if let Err(e) = setrlimit(Resource::RLIMIT_CORE, 0, 0) {
        tracing::warn!("cannot disable core dumps: {e}");
    }
    if let Ok((_, hard)) = getrlimit(Resource::RLIMIT_NOFILE) {
        let _ = setrlimit(Resource::RLIMIT_NOFILE, hard.min(65536), hard);
    }
}

/// A listener passed by systemd socket activation (`LISTEN_PID`, `LISTEN_FDS`, fd 3).
fn systemd_listener() -> Option<StdListener> {
    let pid_matches = std::env::var("LISTEN_PID")
        .ok()
        .and_then(|p| p.parse::<u32>().ok())
        == Some(std::process::id());
    let fds = std::env::var("LISTEN_FDS")
        .ok()
        .and_then(|n| n.parse::<u32>().ok())
        .unwrap_or(0);
    if !pid_matches || fds == 0 {
        return None;
    }
    Some(listener_from_fd3())
}

#[expect(
    unsafe_code,
    reason = "taking ownership of the socket systemd passed as fd 3"
)]
fn listener_from_fd3() -> StdListener {
    use std::os::fd::{FromRawFd, OwnedFd};
    // SAFETY: LISTEN_PID names this process, so by the sd_listen_fds protocol fd 3 is an open
    // listening socket handed to us and owned by nobody else in this process.
    let fd = unsafe { OwnedFd::from_raw_fd(3) };
    StdListener::from(fd)
}

/// Bind the socket: directory 0700 (created if it is the default location), socket 0600 from
/// creation (umask 0177 around bind), a stale socket replaced, a live one refused.
pub(crate) fn bind(
    socket: &Path,
    default_location: bool,
) -> anyhow::Result<(StdListener, Option<PathBuf>)> {
    let dir = socket.parent().context("socket path has no directory")?;
    let created = if default_location {
        private_dir(dir)?
    } else {
        None
    };
    if !dir.exists() {
        bail!("the directory {} does not exist", dir.display());
    }
    if socket.exists() {
        if std::os::unix::net::UnixStream::connect(socket).is_ok() {
            bail!(
                "an agent is already listening on {} (use -k to stop it, or -a for another socket)",
                socket.display()
            );
        }
        std::fs::remove_file(socket)
            .with_context(|| format!("cannot remove stale socket {}", socket.display()))?;
    }
    let old = nix::sys::stat::umask(nix::sys::stat::Mode::from_bits_truncate(0o177));
    let listener = StdListener::bind(socket);
    nix::sys::stat::umask(old);
    let listener = listener.with_context(|| format!("cannot bind {}", socket.display()))?;
    Ok((listener, created))
}

/// Create `dir` 0700 if missing (returning it), or make an existing one private.
pub(crate) fn private_dir(dir: &Path) -> anyhow::Result<Option<PathBuf>> {
    if !dir.exists() {
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(dir)
            .with_context(|| format!("cannot create {}", dir.display()))?;
        return Ok(Some(dir.to_path_buf()));
    }
    let meta = std::fs::metadata(dir).with_context(|| format!("cannot read {}", dir.display()))?;
    if meta.permissions().mode() & 0o077 != 0 {
        std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))
            .with_context(|| format!("cannot make {} private", dir.display()))?;
    }
    Ok(None)
}

/// Remove the socket and the control socket beside it, and the directory if we created it.
pub(crate) fn cleanup(socket: &Path, created_dir: Option<&Path>) {
    let _ = std::fs::remove_file(socket);
    let _ = std::fs::remove_file(airlock_agent::approval::control_socket(socket));
    if let Some(dir) = created_dir {
        let _ = std::fs::remove_dir(dir);
    }
}

pub(crate) fn env_lines(socket: &Path, pid: u32, csh: bool) -> String {
    let sock = socket.display();
    if csh {
        format!(
            "setenv SSH_AUTH_SOCK {sock};\nsetenv SSH_AGENT_PID {pid};\necho Agent pid {pid};\n"
        )
    } else {
        format!(
            "SSH_AUTH_SOCK={sock}; export SSH_AUTH_SOCK;\nSSH_AGENT_PID={pid}; export SSH_AGENT_PID;\necho Agent pid {pid};\n"
        )
    }
}

/// Start a detached copy of ourselves in the foreground mode, wait until it listens, print the
/// shell commands and return.
fn daemonise(
    args: &Args,
    socket: &Path,
    owned_dir: Option<&Path>,
    csh: bool,
) -> anyhow::Result<ExitCode> {
    let mut child_args: Vec<std::ffi::OsString> =
        vec!["agent".into(), "-D".into(), "-a".into(), socket.into()];
    if owned_dir.is_some() {
        child_args.push("--owned-dir".into());
    }
    if args.approve_in_terminal {
        child_args.push("--approve-in-terminal".into());
    }
    if let Some(t) = args.lifetime {
        child_args.push("-t".into());
        child_args.push(t.as_secs().to_string().into());
    }
    child_args.extend(args.policy.to_args());
    start_detached(&child_args, socket, csh)
}

/// Re-run airlock with `child_args` (which include `-D`) detached in its own process group,
/// wait for its readiness line, and print the shell commands for `eval`.
pub(crate) fn start_detached(
    child_args: &[std::ffi::OsString],
    socket: &Path,
    csh: bool,
) -> anyhow::Result<ExitCode> {
    let exe = std::env::current_exe().context("cannot find the airlock executable")?;
    let mut cmd = std::process::Command::new(exe);
    cmd.args(child_args);
    cmd.env(ENV_DAEMON_CHILD, "1")
        .current_dir("/")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    std::os::unix::process::CommandExt::process_group(&mut cmd, 0);
    let mut child = cmd.spawn().context("cannot start the agent process")?;
    let stdout = child
        .stdout
        .take()
        .context("no pipe from the agent process")?;
    // What the child says before it is ready (it lets go of the pipe then): read aside, so a
    // failure is reported in its own words.
    let stderr = child.stderr.take();
    let said = std::thread::spawn(move || {
        let mut text = String::new();
        if let Some(mut e) = stderr {
            let _ = std::io::Read::read_to_string(&mut e, &mut text);
        }
        text
    });
    let mut line = String::new();
    BufReader::new(stdout)
        .read_line(&mut line)
        .context("the agent process did not start")?;
    let Some(pid) = line.trim().strip_prefix("ready ") else {
        let status = child.wait().ok();
        let said = said.join().unwrap_or_default();
        let why: Vec<&str> = said
            .lines()
            .map(|l| l.strip_prefix("airlock: error: ").unwrap_or(l))
            .filter(|l| !l.trim().is_empty())
            .collect();
        if why.is_empty() {
            bail!(
                "could not start on {} (exit status {}); run it with -d in the foreground to see why",
                socket.display(),
                status.and_then(|s| s.code()).unwrap_or(-1)
            );
        }
        bail!(
            "could not start on {}: {}",
            socket.display(),
            why.join("; ")
        );
    };
    let pid = pid
        .parse::<u32>()
        .context("bad readiness line from the agent process")?;
    print!("{}", env_lines(socket, pid, csh));
    Ok(ExitCode::SUCCESS)
}

fn kill(csh: bool) -> anyhow::Result<ExitCode> {
    let pid = std::env::var("SSH_AGENT_PID")
        .context("SSH_AGENT_PID is not set, cannot kill the agent")?;
    let pid: i32 = pid
        .parse()
        .ok()
        .filter(|p| *p > 0)
        .with_context(|| format!("SSH_AGENT_PID={pid:?} is not a process id"))?;
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(pid),
        nix::sys::signal::Signal::SIGTERM,
    )
    .with_context(|| format!("cannot kill agent pid {pid}"))?;
    if csh {
        print!("unsetenv SSH_AUTH_SOCK;\nunsetenv SSH_AGENT_PID;\necho Agent pid {pid} killed;\n");
    } else {
        print!("unset SSH_AUTH_SOCK;\nunset SSH_AGENT_PID;\necho Agent pid {pid} killed;\n");
    }
    Ok(ExitCode::SUCCESS)
}

#[cfg(test)]
mod tests {
    use super::parse_lifetime;
    use std::time::Duration;

    #[test]
    #[allow(
        clippy::duration_suboptimal_units,
        reason = "seconds, as the flag is written"
    )]
    fn lifetimes_as_openssh_writes_them() {
        assert_eq!(parse_lifetime("3600"), Ok(Duration::from_secs(3600)));
        assert_eq!(parse_lifetime("90m"), Ok(Duration::from_secs(5400)));
        assert_eq!(parse_lifetime("1h30m"), Ok(Duration::from_secs(5400)));
        assert_eq!(parse_lifetime("1d"), Ok(Duration::from_secs(86400)));
        assert!(parse_lifetime("").is_err());
        assert!(parse_lifetime("0").is_err());
        assert!(parse_lifetime("8x").is_err());
        assert!(parse_lifetime("99999999999999999999").is_err());
    }
}
