//! [`AirlockAgent`]: the `airlock agent -D` under test, started in a [`Home`], killed on drop.

use std::ffi::OsStr;
use std::os::unix::process::CommandExt as _;
use std::path::{Path, PathBuf};
use std::process::{Child, Stdio};

use crate::error::Result;
use crate::home::Home;
use crate::process::{self, terminate_tree};

/// `airlock agent -D -a SOCKET [args]`, run from the binary under test (pass
/// `env!("CARGO_BIN_EXE_airlock")`), with the home's environment plus `env`.
#[derive(Debug)]
pub struct AirlockAgent {
    child: Child,
    socket: PathBuf,
}

impl AirlockAgent {
    /// Start with the socket at `$XDG_RUNTIME_DIR/airlock-test.sock`.
    pub fn start(home: &Home, exe: impl AsRef<OsStr>) -> Result<AirlockAgent> {
        Self::start_with(
            home,
            exe,
            &home.runtime_dir().join("airlock-test.sock"),
            &[],
            &[],
        )
    }

    /// Start with the socket at `socket`, extra arguments and extra environment variables.
    pub fn start_with(
        home: &Home,
        exe: impl AsRef<OsStr>,
        socket: &Path,
        args: &[&str],
        env: &[(&str, &OsStr)],
    ) -> Result<AirlockAgent> {
        let mut command = home.command(exe);
        command
            .arg("agent")
            .arg("-D")
            .arg("-a")
            .arg(socket)
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .process_group(0);
        for (k, v) in env {
            command.env(k, v);
        }
        let child = process::spawn_listening(&mut command, socket, "airlock agent")?;
        Ok(AirlockAgent {
            child,
            socket: socket.to_path_buf(),
        })
    }

    /// The socket, for `SSH_AUTH_SOCK`.
    pub fn socket(&self) -> &Path {
        &self.socket
    }

    /// The agent's process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Resident memory of the agent in KiB (`VmRSS`), on Linux.
    pub fn rss_kib(&self) -> Option<u64> {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.child.id())).ok()?;
        status
            .lines()
            .find_map(|l| l.strip_prefix("VmRSS:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
    }

    /// Whether the process is still running.
    pub fn is_running(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }
}

impl Drop for AirlockAgent {
    fn drop(&mut self) {
        terminate_tree(&mut self.child);
    }
}
