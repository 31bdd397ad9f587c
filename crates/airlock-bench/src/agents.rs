//! The two agents as child processes: started in the foreground on a socket in the temp dir,
//! with a private `HOME`, stopped (by their pid, through [`std::process::Child`]) when dropped.

use std::fmt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use airlock_agent::client::Client;
use anyhow::{Context, bail};

/// How long an agent may take to start answering.
const START_TIMEOUT: Duration = Duration::from_secs(20);

/// Which agent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AgentKind {
    /// OpenSSH's `ssh-agent`.
    OpenSsh,
    /// `airlock agent`.
    Airlock,
}

impl AgentKind {
    /// A one-word name for progress lines.
    pub fn short(self) -> &'static str {
        match self {
            AgentKind::OpenSsh => "openssh",
            AgentKind::Airlock => "airlock",
        }
    }
}

impl fmt::Display for AgentKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            AgentKind::OpenSsh => "OpenSSH ssh-agent",
            AgentKind::Airlock => "airlock agent",
        })
    }
}

/// A running agent.
#[derive(Debug)]
pub struct AgentProcess {
    /// Which agent.
    pub kind: AgentKind,
    /// Its socket.
    pub socket: PathBuf,
    child: Child,
    stderr_log: PathBuf,
}

impl AgentProcess {
    /// Start `program` in the foreground on `<dir>/<kind>-<tag>.sock` and wait until it answers a
    /// request-identities.
    pub fn start(kind: AgentKind, program: &Path, dir: &Path, tag: &str) -> anyhow::Result<Self> {
        Self::start_with(kind, program, dir, tag, &[])
    }

    /// [`Self::start`] with more arguments after `-D -a SOCKET` (airlock's `--policy` ...).
    pub fn start_with(
        kind: AgentKind,
        program: &Path,
        dir: &Path,
        tag: &str,
        extra: &[&std::ffi::OsStr],
    ) -> anyhow::Result<Self> {
        let socket = dir.join(format!("{}-{tag}.sock", kind.short()));
        let home = dir.join("home");
        fs_err::create_dir_all(&home)?;
        let stderr_log = dir.join(format!("{}-{tag}.stderr", kind.short()));
        let stderr = fs_err::File::create(&stderr_log)?.into_parts().0;
        let mut command = Command::new(program);
        if kind == AgentKind::Airlock {
            command.arg("agent");
        }
        command
            .args(["-D", "-a"])
            .arg(&socket)
            .args(extra)
            // Neither agent may see the developer's agent, config or log filters.
            .env("HOME", &home)
            .env("XDG_RUNTIME_DIR", dir)
            .env("XDG_CONFIG_HOME", home.join(".config"))
            .env("XDG_STATE_HOME", home.join(".local/state"))
            .env("XDG_DATA_HOME", home.join(".local/share"))
            .env_remove("SSH_AUTH_SOCK")
            .env_remove("SSH_AGENT_PID")
            .env_remove("RUST_LOG")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(stderr);
        let child = command
            .spawn()
            .with_context(|| format!("cannot start {kind} ({})", program.display()))?;
        let mut agent = Self {
            kind,
            socket,
            child,
            stderr_log,
        };
        agent.wait_ready()?;
        Ok(agent)
    }

    fn wait_ready(&mut self) -> anyhow::Result<()> {
        let start = Instant::now();
        loop {
            if let Some(status) = self.child.try_wait()? {
                let log = fs_err::read_to_string(&self.stderr_log).unwrap_or_default();
                bail!("{} exited at start ({status}):\n{log}", self.kind);
            }
            if let Ok(mut client) = Client::connect(&self.socket)
                && client.list().is_ok()
            {
                return Ok(());
            }
            if start.elapsed() > START_TIMEOUT {
                bail!(
                    "{} did not answer on {} within {START_TIMEOUT:?}",
                    self.kind,
                    self.socket.display()
                );
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// A new connection to the agent.
    pub fn client(&self) -> anyhow::Result<Client> {
        Client::connect(&self.socket).with_context(|| format!("{}: connecting", self.kind))
    }

    /// Resident memory from `/proc/PID/status`.
    pub fn memory(&self) -> anyhow::Result<Memory> {
        let path = format!("/proc/{}/status", self.child.id());
        let status = fs_err::read_to_string(&path)?;
        let field = |name: &str| {
            status
                .lines()
                .find_map(|line| line.strip_prefix(name))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
                .with_context(|| format!("no {name} in {path}"))
        };
        Ok(Memory {
            rss_kib: field("VmRSS:")?,
            anon_kib: field("RssAnon:")?,
        })
    }
}

/// Resident memory of an agent, in KiB.
#[derive(Debug, Clone, Copy, Default)]
pub struct Memory {
    /// `VmRSS`: every resident page, the binary's and shared libraries' included.
    pub rss_kib: u64,
    /// `RssAnon`: resident anonymous pages (heap, stacks), the agent's own state.
    pub anon_kib: u64,
}

impl Drop for AgentProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
