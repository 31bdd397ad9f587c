//! `airlock jupyter HOST --env NAME | -p PREFIX`: Jupyter Lab on a server, reached from the
//! laptop's browser through an SSH tunnel, with nothing listening on the server's network.
//!
//! Two halves. On the server, `airlock jupyter serve` (run through `ssh`) starts `jupyter lab`
//! from the environment, detached so that it outlives the ssh session, listening on a unix
//! socket (mode 0600) in the user's runtime directory, with a fresh token that is passed in the
//! environment (never argv, where `ps` shows it) and kept in a 0600 file. It waits until
//! `/api/status` answers with the token and prints one JSON line. Its kernels talk to it over
//! unix sockets in the same private directory (`--KernelManager.transport=ipc`), not loopback
//! TCP ports; `SSH_AUTH_SOCK` of the server and its kernels is the stable agent link that
//! `airlock connect` re-points, so a kernel reaches the agent again after a reconnect. On the
//! laptop, this command forwards a free local port to that socket (`ssh -N -L
//! 127.0.0.1:PORT:SOCKET`), prints the URL and opens the browser. Ctrl-C closes the tunnel and leaves the server running; `--id ID`
//! opens a tunnel to it again, `--list` and `--stop` manage servers.

use std::ffi::OsString;
use std::io::{BufRead as _, BufReader, Read as _, Write as _};
use std::os::unix::fs::{DirBuilderExt as _, MetadataExt as _, OpenOptionsExt as _};
use std::os::unix::net::UnixStream;
use std::os::unix::process::CommandExt as _;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};
use serde::{Deserialize, Serialize};

use super::connect::{DEFAULT_AGENT_LINK, target_words};
use super::remote::{DEFAULT_REMOTE_DIR, HostArgs, hex, remote_path_word, shell_quote};
use crate::paths;

/// How long `serve` waits for Jupyter to answer `/api/status`.
const READY_TIMEOUT: Duration = Duration::from_mins(3);

/// Flags of `airlock jupyter`.
#[derive(Debug, clap::Args)]
#[command(
    args_conflicts_with_subcommands = true,
    subcommand_negates_reqs = true,
    after_help = "Examples:\n  airlock jupyter gpu -n torch                 start Jupyter Lab in env torch, open the browser\n  airlock jupyter gpu -n torch --dir /data/project --no-browser\n  airlock jupyter gpu --list                   the servers running on gpu, with their ids\n  airlock jupyter gpu --id ID                  open a tunnel to a running server again\n  airlock jupyter gpu --stop"
)]
pub struct Args {
    #[command(subcommand)]
    serve: Option<JupyterCommand>,
    /// The server, as `ssh` names it.
    #[arg(value_name = "HOST", required = true)]
    host: Option<String>,
    /// OpenSSH client config to use (`ssh -F FILE`).
    #[arg(long, value_name = "FILE", env = paths::ENV_SSH_CONFIG)]
    ssh_config: Option<PathBuf>,
    /// The directory on HOST that holds airlock.
    #[arg(long, value_name = "DIR", env = paths::ENV_REMOTE_DIR, default_value = DEFAULT_REMOTE_DIR)]
    remote_dir: String,
    #[command(flatten)]
    server: ServerArgs,
    /// The local port of the tunnel (default: a free one).
    #[arg(long, value_name = "LOCAL_PORT")]
    port: Option<u16>,
    /// Print the URL but do not open a browser.
    #[arg(long)]
    no_browser: bool,
    /// List the Jupyter servers running on HOST.
    #[arg(long, conflicts_with = "stop")]
    list: bool,
    /// With --list: one JSON array, an object per server with the fields id, pid, running
    /// (true while its process runs), prefix (the environment), dir, socket and log (paths on
    /// HOST).
    #[arg(long, requires = "list")]
    json: bool,
    /// Stop the Jupyter servers on HOST (all, or the one given by `--id`) and remove their files.
    #[arg(long)]
    stop: bool,
    /// Open a tunnel to the running server ID again (after Ctrl-C, a lost connection or a
    /// reconnect; `--list` shows the ids), instead of starting one. With `--stop`: stop only it.
    #[arg(long, value_name = "ID", conflicts_with = "list")]
    id: Option<String>,
}

/// What both halves need to know about the server side.
#[derive(Debug, Clone, clap::Args)]
struct ServerArgs {
    /// The environment on the server, by name.
    #[arg(
        long = "env",
        short = 'n',
        value_name = "NAME",
        conflicts_with = "prefix"
    )]
    env: Option<String>,
    /// The environment on the server, by directory (any conda environment or venv).
    #[arg(short = 'p', long = "prefix", value_name = "PREFIX")]
    prefix: Option<String>,
    /// Jupyter's root directory on the server (default: the home directory).
    #[arg(long, value_name = "PATH")]
    dir: Option<String>,
    /// Where sockets, tokens and state live on the server (default:
    /// $XDG_RUNTIME_DIR/airlock, else /tmp/airlock-UID).
    #[arg(long, value_name = "DIR")]
    runtime_dir: Option<String>,
    /// The stable agent socket given to Jupyter and its kernels as `SSH_AUTH_SOCK`.
    #[arg(long, value_name = "PATH", default_value = DEFAULT_AGENT_LINK)]
    agent_link: String,
}

#[derive(Debug, clap::Subcommand)]
enum JupyterCommand {
    /// The server half, run on the server through ssh.
    #[command(hide = true)]
    Serve(ServeArgs),
}

#[derive(Debug, clap::Args)]
struct ServeArgs {
    #[command(flatten)]
    server: ServerArgs,
    /// List the running servers.
    #[arg(long, conflicts_with = "stop")]
    list: bool,
    /// With --list: as JSON.
    #[arg(long, requires = "list")]
    json: bool,
    /// Stop servers (all, or `--id`) and remove their files.
    #[arg(long)]
    stop: bool,
    /// With `--stop`: only this server.
    #[arg(long, value_name = "ID")]
    id: Option<String>,
    /// With `--id`: print the description of that running server, as a start does.
    #[arg(long, requires = "id", conflicts_with_all = ["list", "stop"])]
    info: bool,
}

/// What `serve` records about a running server, in `<runtime dir>/jupyter-<id>.json`.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct ServerState {
    id: String,
    pid: u32,
    socket: PathBuf,
    token_file: PathBuf,
    log: PathBuf,
    prefix: PathBuf,
    dir: PathBuf,
}

/// The line `serve` prints for the laptop side.
#[derive(Debug, Serialize, Deserialize)]
struct Started {
    id: String,
    socket: PathBuf,
    token_file: PathBuf,
    pid: u32,
}

/// Run `airlock jupyter`.
#[expect(
    clippy::needless_pass_by_value,
    reason = "every command's run takes its Args by value"
)]
pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    if let Some(JupyterCommand::Serve(serve)) = &args.serve {
        return serve_command(serve);
    }
    let Some(host_name) = args.host.clone() else {
        bail!("name the server: airlock jupyter HOST --env NAME");
    };
    let host = HostArgs {
        host: host_name,
        ssh_config: args.ssh_config.clone(),
        remote_dir: args.remote_dir.clone(),
    };
    laptop(&args, &host)
}

// ------------------------------------------------------------------------------ laptop side

fn server_words(server: &ServerArgs) -> String {
    let mut words = Vec::new();
    if let Some(t) = target_words(server.env.as_deref(), server.prefix.as_deref()) {
        words.push(t);
    }
    if let Some(d) = &server.dir {
        words.push(format!("--dir {}", remote_path_word(d)));
    }
    if let Some(r) = &server.runtime_dir {
        words.push(format!("--runtime-dir {}", remote_path_word(r)));
    }
    if server.agent_link != DEFAULT_AGENT_LINK {
        words.push(format!("--agent-link {}", shell_quote(&server.agent_link)));
    }
    words.join(" ")
}

const NOT_INSTALLED: &str = "airlock-not-installed";

/// `serve ARGS` on the host through ssh, saying clearly when airlock is not there.
fn remote_serve(host: &HostArgs, words: &str) -> anyhow::Result<std::process::Output> {
    let bin = host.remote_airlock();
    let script = format!(
        "if [ ! -x {bin} ]; then echo {NOT_INSTALLED}; exit 127; fi; exec {bin} jupyter serve {words}"
    );
    let out = host.run_script(&script)?;
    if String::from_utf8_lossy(&out.stdout).contains(NOT_INSTALLED) {
        bail!(
            "airlock is not installed on {h}: run `airlock remote install {h}`",
            h = host.host
        );
    }
    Ok(out)
}

fn laptop(args: &Args, host: &HostArgs) -> anyhow::Result<ExitCode> {
    let mut words = server_words(&args.server);
    if args.list || args.stop {
        words.push_str(if args.list { " --list" } else { " --stop" });
        if args.json {
            words.push_str(" --json");
        }
        if let Some(id) = &args.id {
            words.push_str(" --id ");
            words.push_str(&shell_quote(id));
        }
        let out = remote_serve(host, &words)?;
        std::io::stdout().write_all(&out.stdout)?;
        return Ok(if out.status.success() {
            ExitCode::SUCCESS
        } else {
            ExitCode::from(1)
        });
    }
    let out = if let Some(id) = &args.id {
        if args.server.env.is_some() || args.server.prefix.is_some() {
            bail!("--id reopens a running server: leave out --env and -p");
        }
        let out = remote_serve(host, &format!("{words} --info --id {}", shell_quote(id)))?;
        if !out.status.success() {
            bail!(
                "no running Jupyter server {id} on {} (see the message above)",
                host.host
            );
        }
        out
    } else {
        if args.server.env.is_none() && args.server.prefix.is_none() {
            bail!(
                "name the environment on {}: --env NAME or -p PREFIX",
                host.host
            );
        }
        eprintln!("airlock: starting Jupyter Lab on {}...", host.host);
        let out = remote_serve(host, &words)?;
        if !out.status.success() {
            bail!(
                "could not start Jupyter Lab on {} (see the message above)",
                host.host
            );
        }
        out
    };
    let text = String::from_utf8_lossy(&out.stdout);
    let started: Started = text
        .lines()
        .rev()
        .find(|l| l.trim_start().starts_with('{'))
        .context("airlock jupyter serve printed no server description")
        .and_then(|l| serde_json::from_str(l).context("cannot read the server description"))?;
    let token_out = host.run_script(&format!(
        "cat {}",
        shell_quote(&started.token_file.to_string_lossy())
    ))?;
    let token = String::from_utf8_lossy(&token_out.stdout).trim().to_owned();
    if !token_out.status.success() || token.is_empty() {
        bail!(
            "cannot read the token file {} on {}",
            started.token_file.display(),
            host.host
        );
    }

    let port = match args.port {
        Some(p) => p,
        None => std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .context("cannot find a free local port")?
            .port(),
    };
    let forward = format!("127.0.0.1:{port}:{}", started.socket.display());
    let options: Vec<OsString> = vec![
        "-N".into(),
        "-o".into(),
        "ExitOnForwardFailure=yes".into(),
        "-o".into(),
        "ForwardAgent=no".into(),
        "-L".into(),
        forward.into(),
    ];
    let mut tunnel = host
        .ssh(&options)
        .stdin(Stdio::null())
        .spawn()
        .context("cannot run ssh for the tunnel")?;
    let stop = StopSignals::block()?;
    let deadline = Instant::now() + Duration::from_mins(1);
    loop {
        if let Some(signal) = stop.arrived()? {
            close_tunnel(&mut tunnel);
            return Ok(exit_code(&Closed::Signal(signal)));
        }
        if let Some(status) = tunnel.try_wait()? {
            bail!(
                "the ssh tunnel to {} exited ({status}) before it was ready; is local port {port} free?",
                host.host
            );
        }
        if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
            break;
        }
        if Instant::now() > deadline {
            let _ = tunnel.kill();
            bail!("the ssh tunnel to {} did not open port {port}", host.host);
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    let url = format!("http://127.0.0.1:{port}/lab?token={token}");
    println!("{url}");
    let _ = std::io::stdout().flush();
    eprintln!(
        "airlock: Jupyter Lab {id} on {h} through 127.0.0.1:{port}; Ctrl-C closes the tunnel and \
         leaves the server running (`airlock jupyter {h} --id {id}` reopens it, \
         `airlock jupyter {h} --stop --id {id}` ends it)",
        id = started.id,
        h = host.host
    );
    let _page = if args.no_browser {
        None
    } else {
        open_browser(&url)
    };
    let closed = loop {
        if let Some(status) = tunnel.try_wait()? {
            break Closed::Exited(status);
        }
        if let Some(signal) = stop.arrived()? {
            close_tunnel(&mut tunnel);
            break Closed::Signal(signal);
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    Ok(exit_code(&closed))
}

/// How the tunnel ended.
enum Closed {
    /// ssh exited by itself (or with the Ctrl-C a terminal sends the whole group).
    Exited(std::process::ExitStatus),
    /// airlock alone got this signal and closed the tunnel.
    Signal(nix::sys::signal::Signal),
}

/// Ctrl-C is how the tunnel is meant to close: success. Another signal: 128 + its number.
fn exit_code(closed: &Closed) -> ExitCode {
    match closed {
        Closed::Exited(status) if status.success() => ExitCode::SUCCESS,
        Closed::Exited(_) => ExitCode::from(1),
        Closed::Signal(nix::sys::signal::Signal::SIGINT) => ExitCode::SUCCESS,
        Closed::Signal(signal) => ExitCode::from(128 + u8::try_from(*signal as i32).unwrap_or(0)),
    }
}

/// SIGINT, SIGTERM and SIGHUP, blocked and read from a signalfd while airlock waits on the
/// tunnel's `ssh`. Ctrl-C at a terminal reaches ssh as well; a `kill`, a closed terminal or a
/// supervisor's SIGTERM may reach only airlock, which then ends its ssh rather than leave an
/// orphaned `ssh -L` holding the port. Blocked only once ssh runs (a child inherits the
/// mask); this command runs no other thread that could take the signals instead.
struct StopSignals(nix::sys::signalfd::SignalFd);

impl StopSignals {
    fn block() -> anyhow::Result<Self> {
        use nix::sys::signal::{SigSet, SigmaskHow, Signal, pthread_sigmask};
        use nix::sys::signalfd::{SfdFlags, SignalFd};
        let mut set = SigSet::empty();
        for signal in [Signal::SIGINT, Signal::SIGTERM, Signal::SIGHUP] {
            set.add(signal);
        }
        pthread_sigmask(SigmaskHow::SIG_BLOCK, Some(&set), None)?;
        let fd = SignalFd::with_flags(&set, SfdFlags::SFD_NONBLOCK | SfdFlags::SFD_CLOEXEC)?;
        Ok(Self(fd))
    }

    /// The first stop signal that has arrived, if any.
    fn arrived(&self) -> anyhow::Result<Option<nix::sys::signal::Signal>> {
        Ok(match self.0.read_signal()? {
            Some(info) => Some(nix::sys::signal::Signal::try_from(i32::try_from(
                info.ssi_signo,
            )?)?),
            None => None,
        })
    }
}

/// Ends the tunnel's ssh and reaps it.
fn close_tunnel(tunnel: &mut std::process::Child) {
    let pid = nix::unistd::Pid::from_raw(i32::try_from(tunnel.id()).unwrap_or(i32::MAX));
    let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM);
    let _ = tunnel.wait();
}

/// Open the browser on `url` without putting the token on any command line (where another user
/// of this machine reads it with `ps`): as Jupyter does, write a redirect page, 0600 in a 0700
/// directory of ours, and open that file. The page is removed when the tunnel closes.
fn open_browser(url: &str) -> Option<RedirectPage> {
    let page = match RedirectPage::write(url) {
        Ok(page) => page,
        Err(e) => {
            eprintln!(
                "airlock: cannot write the page that opens the browser ({e:#}): open the URL above"
            );
            return None;
        }
    };
    let file_url = format!("file://{}", page.path.display());
    for opener in ["xdg-open", "open"] {
        let spawned = Command::new(opener)
            .arg(&file_url)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn();
        if spawned.is_ok() {
            return Some(page);
        }
    }
    eprintln!("airlock: no xdg-open or open here: open the URL above in a browser");
    None
}

/// The redirect page [`open_browser`] opens; removed with its directory on drop.
struct RedirectPage {
    _dir: tempfile::TempDir,
    path: PathBuf,
}

impl RedirectPage {
    fn write(url: &str) -> anyhow::Result<Self> {
        let base = paths::runtime_dir().unwrap_or_else(std::env::temp_dir);
        // tempfile makes the directory 0700 and the file 0600, from creation.
        let dir = tempfile::Builder::new()
            .prefix("airlock-jupyter-")
            .tempdir_in(&base)
            .with_context(|| format!("cannot create a private directory in {}", base.display()))?;
        let path = dir.path().join("open.html");
        let mut file = tempfile::NamedTempFile::new_in(dir.path())?;
        write!(
            file,
            "<!DOCTYPE html>\n<html><head><meta charset=\"utf-8\">\n\
             <meta http-equiv=\"refresh\" content=\"0;url={url}\">\n</head>\n\
             <body><p>Opening <a href=\"{url}\">Jupyter Lab</a>...</p>\n\
             <script>window.location.replace(\"{url}\");</script></body></html>\n"
        )?;
        file.persist(&path).map_err(|e| e.error)?;
        Ok(Self { _dir: dir, path })
    }
}

// ------------------------------------------------------------------------------ server side

fn serve_command(args: &ServeArgs) -> anyhow::Result<ExitCode> {
    let runtime = runtime_dir(args.server.runtime_dir.as_deref())?;
    if args.list {
        return list(&runtime, args.json);
    }
    if args.stop {
        return Ok(stop(&runtime, args.id.as_deref()));
    }
    if let Some(id) = args.id.as_deref().filter(|_| args.info) {
        return info(&runtime, id);
    }
    serve(&args.server, &runtime)
}

fn expand_home(path: &str) -> PathBuf {
    match path.strip_prefix("~/") {
        Some(rest) => paths::home().join(rest),
        None if path == "~" => paths::home(),
        None => PathBuf::from(path),
    }
}

/// The private directory for sockets, tokens and state, created 0700 and checked to be ours
/// and private (it may be under a shared /tmp).
fn runtime_dir(given: Option<&str>) -> anyhow::Result<PathBuf> {
    let dir = match given {
        Some(d) => expand_home(d),
        None => match std::env::var_os("XDG_RUNTIME_DIR") {
            Some(v) if !v.is_empty() => PathBuf::from(v).join("airlock"),
            _ => PathBuf::from(format!("/tmp/airlock-{}", nix::unistd::geteuid())),
        },
    };
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(&dir)
        .with_context(|| format!("cannot create {}", dir.display()))?;
    let meta = fs_err::symlink_metadata(&dir)?;
    if !meta.is_dir() || meta.uid() != nix::unistd::geteuid().as_raw() || meta.mode() & 0o077 != 0 {
        bail!(
            "{} must be a directory owned by you with mode 0700",
            dir.display()
        );
    }
    Ok(dir)
}

/// A row of `airlock env list --json`.
#[derive(Deserialize)]
struct EnvRow {
    name: String,
    path: PathBuf,
}

fn environment_prefix(server: &ServerArgs) -> anyhow::Result<(PathBuf, String)> {
    if let Some(p) = &server.prefix {
        let prefix = expand_home(p);
        if !prefix.is_dir() {
            bail!("no environment at {}", prefix.display());
        }
        return Ok((prefix, format!("-p {p}")));
    }
    let Some(name) = &server.env else {
        bail!("name the environment: --env NAME or -p PREFIX");
    };
    let exe = std::env::current_exe().context("cannot find this airlock binary")?;
    let out = Command::new(exe)
        .args(["env", "list", "--json"])
        .stderr(Stdio::inherit())
        .output()
        .context("cannot list environments")?;
    let rows: Vec<EnvRow> =
        serde_json::from_slice(&out.stdout).context("cannot read `airlock env list --json`")?;
    rows.into_iter()
        .find(|r| &r.name == name)
        .map(|r| (r.path, format!("-n {name}")))
        .with_context(|| {
            format!(
                "no environment named {name} here: create it with `airlock env create -n {name}`"
            )
        })
}

fn write_private(path: &Path, bytes: &[u8]) -> anyhow::Result<()> {
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .with_context(|| format!("cannot create {}", path.display()))?;
    f.write_all(bytes)?;
    f.sync_all()?;
    Ok(())
}

fn serve(server: &ServerArgs, runtime: &Path) -> anyhow::Result<ExitCode> {
    let (prefix, target) = environment_prefix(server)?;
    let jupyter = prefix.join("bin/jupyter");
    if !jupyter.exists() || !prefix.join("bin/jupyter-lab").exists() {
        bail!(
            "no jupyter in environment {}: add jupyterlab (`airlock env update {target} \
             jupyterlab`, or `{}/bin/pip install jupyterlab` for a venv)",
            prefix.display(),
            prefix.display()
        );
    }
    let id = hex(&rand::random::<[u8; 4]>());
    let socket = runtime.join(format!("jupyter-{id}.sock"));
    let token_file = runtime.join(format!("jupyter-{id}.token"));
    let log = runtime.join(format!("jupyter-{id}.log"));
    let state_file = runtime.join(format!("jupyter-{id}.json"));
    let token = hex(&rand::random::<[u8; 24]>());
    let mut guard = StartGuard {
        socket: socket.clone(),
        started: false,
    };
    write_private(&token_file, token.as_bytes())?;
    let dir = server.dir.as_deref().map_or_else(paths::home, expand_home);
    // Jupyter's own runtime files (cookie secret, kernel connection files with their keys) in
    // the private directory too, per server, removed by `--stop`.
    let jupyter_runtime = runtime.join(format!("jupyter-{id}.d"));
    std::fs::DirBuilder::new()
        .mode(0o700)
        .create(&jupyter_runtime)
        .with_context(|| format!("cannot create {}", jupyter_runtime.display()))?;

    let log_out = std::fs::OpenOptions::new()
        .append(true)
        .create(true)
        .mode(0o600)
        .open(&log)
        .with_context(|| format!("cannot create {}", log.display()))?;
    let log_err = log_out.try_clone()?;
    let mut cmd = Command::new(&jupyter);
    cmd.arg("lab")
        .arg("--no-browser")
        .arg(format!("--ServerApp.sock={}", socket.display()))
        .arg("--ServerApp.sock_mode=0600")
        .arg(format!("--ServerApp.root_dir={}", dir.display()));
    // Kernels talk to the server over ZMQ, by default on loopback TCP ports that any local user
    // can connect to. Unix sockets in the private directory instead, so that nothing of the
    // server listens on TCP, when their paths fit in a sockaddr_un.
    if kernel_ipc_fits(&jupyter_runtime) {
        cmd.arg("--KernelManager.transport=ipc");
    } else {
        eprintln!(
            "airlock: {} is too long for the kernels' unix sockets: kernels use loopback TCP \
             (give a shorter --runtime-dir to avoid that)",
            jupyter_runtime.display()
        );
    }
    if nix::unistd::geteuid().is_root() {
        eprintln!(
            "airlock: running as root: passing --allow-root to jupyter (better: run it as a user)"
        );
        cmd.arg("--allow-root");
    }
    let mut path_var = OsString::from(prefix.join("bin"));
    if let Some(p) = std::env::var_os("PATH") {
        path_var.push(":");
        path_var.push(p);
    }
    cmd.current_dir(&dir)
        .env("JUPYTER_TOKEN", &token)
        .env("JUPYTER_RUNTIME_DIR", &jupyter_runtime)
        .env("SSH_AUTH_SOCK", expand_home(&server.agent_link))
        .env("PATH", path_var)
        .stdin(Stdio::null())
        .stdout(log_out)
        .stderr(log_err)
        // Its own process group, and no terminal or pipe back to ssh: it outlives the session.
        .process_group(0);
    let mut child = cmd
        .spawn()
        .with_context(|| format!("cannot run {}", jupyter.display()))?;
    let state = ServerState {
        id: id.clone(),
        pid: child.id(),
        socket: socket.clone(),
        token_file: token_file.clone(),
        log: log.clone(),
        prefix: prefix.clone(),
        dir,
    };
    write_private(&state_file, &serde_json::to_vec_pretty(&state)?)?;

    let deadline = Instant::now() + READY_TIMEOUT;
    loop {
        if let Some(status) = child.try_wait()? {
            let tail = log_tail(&log);
            remove_files(&state);
            bail!("jupyter lab exited ({status}) before it was ready; its log:\n{tail}");
        }
        if matches!(api_status(&socket, &token), Ok(200)) {
            break;
        }
        if Instant::now() > deadline {
            let _ = nix::sys::signal::kill(pid_of(state.pid), nix::sys::signal::Signal::SIGTERM);
            let tail = log_tail(&log);
            remove_files(&state);
            bail!("jupyter lab did not answer within {READY_TIMEOUT:?}; its log:\n{tail}");
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    let line = serde_json::to_string(&Started {
        id,
        socket,
        token_file,
        pid: state.pid,
    })?;
    guard.started = true;
    println!("{line}");
    Ok(ExitCode::SUCCESS)
}

/// Whether jupyter_client's ipc socket paths for a kernel, `DIR/kernel-<uuid>-ipc-<1..5>`,
/// fit in `sun_path` (108 bytes with the terminating NUL).
fn kernel_ipc_fits(dir: &Path) -> bool {
    const LONGEST_NAME: usize = "/kernel-".len() + 36 + "-ipc-5".len();
    dir.as_os_str().len().saturating_add(LONGEST_NAME) < 108
}

fn pid_of(pid: u32) -> nix::unistd::Pid {
    nix::unistd::Pid::from_raw(i32::try_from(pid).unwrap_or(i32::MAX))
}

fn log_tail(log: &Path) -> String {
    let text = std::fs::read_to_string(log).unwrap_or_default();
    let mut lines: Vec<&str> = text.lines().rev().take(20).collect();
    lines.reverse();
    lines.join("\n")
}

/// `GET /api/status` over the unix socket with the token: the HTTP status code.
fn api_status(socket: &Path, token: &str) -> anyhow::Result<u16> {
    let mut stream = UnixStream::connect(socket)?;
    stream.set_read_timeout(Some(Duration::from_secs(10)))?;
    write!(
        stream,
        "GET /api/status HTTP/1.1\r\nHost: localhost\r\nAuthorization: token {token}\r\n\
         Connection: close\r\n\r\n"
    )?;
    let mut first = String::new();
    BufReader::new(stream.try_clone()?).read_line(&mut first)?;
    // Drain the rest so the server is not left writing to a closed socket.
    let _ = stream.read_to_end(&mut Vec::new());
    first
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .context("not an HTTP response")
}

fn states(runtime: &Path) -> Vec<(PathBuf, ServerState)> {
    let mut out = Vec::new();
    let Ok(entries) = std::fs::read_dir(runtime) else {
        return out;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        let name = entry.file_name();
        let name = name.to_string_lossy();
        if !(name.starts_with("jupyter-") && name.ends_with(".json")) {
            continue;
        }
        if let Some(state) = std::fs::read(&path)
            .ok()
            .and_then(|b| serde_json::from_slice::<ServerState>(&b).ok())
        {
            out.push((path, state));
        }
    }
    out.sort_by(|a, b| a.1.id.cmp(&b.1.id));
    out
}

/// Whether the process runs (a zombie left for a busy reaper counts as ended).
fn alive(pid: u32) -> bool {
    if nix::sys::signal::kill(pid_of(pid), None).is_err() {
        return false;
    }
    // `/proc/PID/stat`: "pid (comm) S ..."; the state follows the last ')'.
    std::fs::read_to_string(format!("/proc/{pid}/stat")).map_or(true, |stat| {
        stat.rsplit_once(')')
            .is_none_or(|(_, rest)| !rest.trim_start().starts_with('Z'))
    })
}

/// A row of `--list --json`; the field names are in `--json`'s help.
#[derive(Debug, Serialize)]
struct ServerRow {
    id: String,
    pid: u32,
    running: bool,
    prefix: PathBuf,
    dir: PathBuf,
    socket: PathBuf,
    log: PathBuf,
}

fn list(runtime: &Path, json: bool) -> anyhow::Result<ExitCode> {
    let rows: Vec<ServerRow> = states(runtime)
        .into_iter()
        .map(|(_, s)| ServerRow {
            running: alive(s.pid),
            id: s.id,
            pid: s.pid,
            prefix: s.prefix,
            dir: s.dir,
            socket: s.socket,
            log: s.log,
        })
        .collect();
    if json {
        println!("{}", serde_json::to_string_pretty(&rows)?);
        return Ok(ExitCode::SUCCESS);
    }
    if rows.is_empty() {
        println!("no Jupyter servers");
    }
    for s in rows {
        println!(
            "jupyter {} pid {} {} env {} dir {} socket {}",
            s.id,
            s.pid,
            if s.running { "running" } else { "exited" },
            s.prefix.display(),
            s.dir.display(),
            s.socket.display()
        );
    }
    Ok(ExitCode::SUCCESS)
}

/// The [`Started`] line of a running server, for the laptop to open a tunnel to it again.
fn info(runtime: &Path, id: &str) -> anyhow::Result<ExitCode> {
    let Some((_, s)) = states(runtime).into_iter().find(|(_, s)| s.id == id) else {
        bail!("no Jupyter server {id} here (`airlock jupyter HOST --list` shows the ids)");
    };
    if !alive(s.pid) {
        bail!(
            "Jupyter server {id} (pid {}) has exited: `airlock jupyter HOST --stop --id {id}` \
             removes its files",
            s.pid
        );
    }
    let line = serde_json::to_string(&Started {
        id: s.id,
        socket: s.socket,
        token_file: s.token_file,
        pid: s.pid,
    })?;
    println!("{line}");
    Ok(ExitCode::SUCCESS)
}

fn remove_files(state: &ServerState) {
    for f in [&state.token_file, &state.log] {
        let _ = std::fs::remove_file(f);
    }
    remove_files_of(&state.socket);
}

/// The files of the server whose socket is `socket`: the socket, `.token`, `.log`, `.json`
/// and Jupyter's own runtime directory `.d`.
fn remove_files_of(socket: &Path) {
    for ext in ["token", "log", "json"] {
        let _ = std::fs::remove_file(socket.with_extension(ext));
    }
    let _ = std::fs::remove_file(socket);
    let _ = std::fs::remove_dir_all(socket.with_extension("d"));
}

/// Removes the files of a server that is being started, unless it started: whatever step
/// fails, a failed `jupyter serve` leaves no token, log or directory behind.
struct StartGuard {
    socket: PathBuf,
    started: bool,
}

impl Drop for StartGuard {
    fn drop(&mut self) {
        if !self.started {
            remove_files_of(&self.socket);
        }
    }
}

fn stop(runtime: &Path, id: Option<&str>) -> ExitCode {
    let found: Vec<_> = states(runtime)
        .into_iter()
        .filter(|(_, s)| id.is_none_or(|i| s.id == i))
        .collect();
    if found.is_empty() {
        println!("no Jupyter servers to stop");
        return ExitCode::SUCCESS;
    }
    for (state_file, s) in found {
        if alive(s.pid) {
            // The process group: jupyter and anything it started in it.
            let group = pid_of(s.pid);
            let _ = nix::sys::signal::killpg(group, nix::sys::signal::Signal::SIGTERM);
            let deadline = Instant::now() + Duration::from_secs(15);
            while alive(s.pid) && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(100));
            }
            if alive(s.pid) {
                let _ = nix::sys::signal::killpg(group, nix::sys::signal::Signal::SIGKILL);
            }
        }
        remove_files(&s);
        let _ = std::fs::remove_file(state_file);
        println!("stopped jupyter {} (pid {})", s.id, s.pid);
    }
    ExitCode::SUCCESS
}
