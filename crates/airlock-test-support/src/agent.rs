//! [`OpenSshAgent`]: the reference `ssh-agent`, for tests that compare against it or need an agent.

use std::os::unix::process::CommandExt as _;
use std::path::{Path, PathBuf};
use std::process::{Child, Stdio};

use crate::error::Result;
use crate::home::Home;
use crate::process::{self, terminate_tree};

/// OpenSSH's `ssh-agent -D -a SOCKET`, started in a [`Home`]'s environment, killed on drop.
///
/// ```no_run
/// use airlock_test_support::{Home, OpenSshAgent};
/// let home = Home::new()?;
/// let agent = OpenSshAgent::start(&home)?;
/// let status = home
///     .command_with_agent("ssh-add", agent.socket())
///     .arg("-l")
///     .status();
/// # Ok::<(), airlock_test_support::Error>(())
/// ```
#[derive(Debug)]
pub struct OpenSshAgent {
    child: Child,
    socket: PathBuf,
}

impl OpenSshAgent {
    /// Start it with its socket at `$XDG_RUNTIME_DIR/openssh-agent.sock` of `home`.
    pub fn start(home: &Home) -> Result<OpenSshAgent> {
        Self::start_at(home, &home.runtime_dir().join("openssh-agent.sock"), &[])
    }

    /// Start it with its socket at `socket` and extra arguments (for instance `["-t", "60"]`).
    pub fn start_at(home: &Home, socket: &Path, extra_args: &[&str]) -> Result<OpenSshAgent> {
        let mut command = home.command("ssh-agent");
        command
            .arg("-D")
            .arg("-a")
            .arg(socket)
            .args(extra_args)
            .stdin(Stdio::null())
            // It prints the `SSH_AUTH_SOCK=...` lines even with -D.
            .stdout(Stdio::null())
            .process_group(0);
        let child = process::spawn_listening(&mut command, socket, "ssh-agent")?;
        Ok(OpenSshAgent {
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
}

impl Drop for OpenSshAgent {
    fn drop(&mut self) {
        terminate_tree(&mut self.child);
    }
}
