//! The demo's throwaway lab: `sshd` processes on 127.0.0.1 with their own host keys, an ssh
//! config and known_hosts naming them, all in one temporary directory removed at the end.
//! (The test suite has a fuller harness in `airlock-test-support`; this is the minimal
//! production copy the demo needs, since that crate is dev-only.)

use std::fmt::Write as _;
use std::os::unix::fs::DirBuilderExt as _;
use std::os::unix::process::CommandExt as _;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};

/// Where OpenSSH's server is on Debian.
pub const SSHD: &str = "/usr/sbin/sshd";

/// One throwaway server.
pub struct Server {
    /// Its alias in the lab's ssh config.
    pub name: String,
    /// Its port on 127.0.0.1.
    pub port: u16,
    /// Its host public key line (`type base64`).
    pub host_key: String,
    /// Its log, for the reason of a failed step.
    pub log: PathBuf,
    child: Child,
}

impl Server {
    /// The last lines of its log.
    pub fn log_tail(&self, lines: usize) -> Vec<String> {
        let text = std::fs::read_to_string(&self.log).unwrap_or_default();
        let all: Vec<&str> = text.lines().collect();
        all.get(all.len().saturating_sub(lines)..)
            .unwrap_or_default()
            .iter()
            .map(|l| (*l).to_owned())
            .collect()
    }

    /// The process id of its listener (for the demo's Ctrl-C cleanup).
    pub fn pid(&self) -> u32 {
        self.child.id()
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        // sshd's per-connection children are in their own sessions; end the listener and
        // whatever is left of its process group.
        super::untrack(self.child.id());
        let pid = nix::unistd::Pid::from_raw(i32::try_from(self.child.id()).unwrap_or(i32::MAX));
        let _ = nix::sys::signal::killpg(pid, nix::sys::signal::Signal::SIGTERM);
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Check that the OpenSSH programs the demo drives are installed.
pub fn check_tools() -> anyhow::Result<()> {
    if !Path::new(SSHD).exists() {
        bail!(
            "the demo starts throwaway OpenSSH servers, but {SSHD} is missing.\n  \
             Install it with: sudo apt-get install -y openssh-server && sudo mkdir -p /run/sshd"
        );
    }
    for tool in ["ssh", "ssh-add", "ssh-keygen", "git"] {
        which(tool).with_context(|| {
            format!("`{tool}` is not on PATH: sudo apt-get install -y openssh-client git")
        })?;
    }
    if !Path::new("/run/sshd").is_dir() {
        bail!("sshd needs its privilege separation directory: sudo mkdir -p /run/sshd");
    }
    Ok(())
}

fn which(tool: &str) -> Option<PathBuf> {
    std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|d| d.join(tool))
            .find(|p| p.is_file())
    })
}

/// Run a command quietly; error with its stderr if it fails.
pub fn run_quiet(cmd: &mut Command) -> anyhow::Result<String> {
    let out = cmd
        .stdin(Stdio::null())
        .output()
        .with_context(|| format!("cannot run {cmd:?}"))?;
    if !out.status.success() {
        bail!(
            "{} failed: {}",
            cmd.get_program().to_string_lossy(),
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

fn free_port() -> anyhow::Result<u16> {
    let l = std::net::TcpListener::bind("127.0.0.1:0").context("cannot find a free port")?;
    Ok(l.local_addr()?.port())
}

/// The current user's name (sshd logs in whoever runs the demo, with keys only).
pub fn user() -> String {
    nix::unistd::User::from_uid(nix::unistd::getuid())
        .ok()
        .flatten()
        .map_or_else(
            || std::env::var("USER").unwrap_or_else(|_| "root".into()),
            |u| u.name,
        )
}

/// Start a server named `name` in `dir`, accepting keys from `authorized_keys`. Its sessions
/// get a home and a runtime directory of their own inside `dir/name` (`SetEnv`), so nothing
/// run "on the server" writes into the user's real home.
pub fn start_server(dir: &Path, name: &str, authorized_keys: &Path) -> anyhow::Result<Server> {
    let sdir = dir.join(name);
    std::fs::create_dir_all(&sdir)?;
    let home = sdir.join("home");
    let runtime = sdir.join("run");
    for d in [&home, &runtime] {
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(d)?;
    }
    let key = sdir.join("host_ed25519");
    run_quiet(
        Command::new("ssh-keygen")
            .args(["-q", "-t", "ed25519", "-N", "", "-C", name, "-f"])
            .arg(&key),
    )?;
    let public = std::fs::read_to_string(key.with_extension("pub"))?;
    let host_key = public
        .split_whitespace()
        .take(2)
        .collect::<Vec<_>>()
        .join(" ");
    let log = sdir.join("sshd.log");
    for _ in 0..5 {
        let port = free_port()?;
        let mut cfg = String::new();
        let _ = writeln!(cfg, "ListenAddress 127.0.0.1:{port}");
        let _ = writeln!(cfg, "HostKey {}", key.display());
        let _ = writeln!(cfg, "AuthorizedKeysFile {}", authorized_keys.display());
        let _ = writeln!(
            cfg,
            "SetEnv HOME={} XDG_RUNTIME_DIR={}",
            home.display(),
            runtime.display()
        );
        cfg.push_str(
            "PidFile none\nUsePAM no\nStrictModes no\nPasswordAuthentication no\nKbdInteractiveAuthentication no\n\
             PubkeyAuthentication yes\nPermitRootLogin prohibit-password\nAllowAgentForwarding yes\n\
             AllowTcpForwarding yes\nAllowStreamLocalForwarding yes\nStreamLocalBindUnlink yes\n\
             PermitUserRC no\nPrintMotd no\nLogLevel VERBOSE\n",
        );
        let cfg_path = sdir.join("sshd_config");
        std::fs::write(&cfg_path, cfg)?;
        let _ = std::fs::remove_file(&log);
        let mut cmd = Command::new(SSHD);
        cmd.args(["-D", "-e", "-f"])
            .arg(&cfg_path)
            .arg("-E")
            .arg(&log)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        cmd.process_group(0);
        let child = cmd.spawn().context("cannot start sshd")?;
        let mut server = Server {
            name: name.to_owned(),
            port,
            host_key: host_key.clone(),
            log: log.clone(),
            child,
        };
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let text = std::fs::read_to_string(&log).unwrap_or_default();
            if text.contains("Server listening") {
                return Ok(server);
            }
            if text.contains("Address already in use") {
                break;
            }
            if let Ok(Some(status)) = server.child.try_wait() {
                bail!("sshd for {name} exited ({status}): {}", text.trim());
            }
            if Instant::now() > deadline {
                bail!("sshd for {name} did not start: {}", text.trim());
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
    bail!("no free port for {name}")
}

/// Write the laptop's `~/.ssh/config` and `~/.ssh/known_hosts` in `home` the way a user and
/// `ssh` write them: an alias per server with `HostName` and `Port`, and known_hosts lines
/// under `[127.0.0.1]:PORT`; returns the config path.
pub fn write_client_config(
    home: &Path,
    servers: &[&Server],
    identity: &Path,
) -> anyhow::Result<PathBuf> {
    let ssh_dir = home.join(".ssh");
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(&ssh_dir)?;
    let known_hosts = ssh_dir.join("known_hosts");
    let mut kh = String::new();
    let mut cfg = String::new();
    for s in servers {
        let _ = writeln!(kh, "[127.0.0.1]:{} {}", s.port, s.host_key);
        let _ = writeln!(
            cfg,
            "Host {}\n  HostName 127.0.0.1\n  Port {}\n",
            s.name, s.port
        );
    }
    let _ = writeln!(
        cfg,
        "Host *\n  User {}\n  IdentityFile {}\n  IdentitiesOnly yes\n  UserKnownHostsFile {}\n  GlobalKnownHostsFile /dev/null\n  \
         StrictHostKeyChecking yes\n  UpdateHostKeys no\n  BatchMode yes\n  ControlMaster no\n  LogLevel ERROR",
        user(),
        identity.display(),
        known_hosts.display()
    );
    std::fs::write(&known_hosts, kh)?;
    let path = ssh_dir.join("config");
    std::fs::write(&path, cfg)?;
    Ok(path)
}
