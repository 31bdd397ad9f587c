//! [`Home`]: an isolated home directory and environment for one test.

use std::ffi::OsStr;
use std::fs;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::Command;

use tempfile::TempDir;

use crate::error::{Result, io};

/// Environment variables a [`Home::command`] keeps from the test process; everything else is
/// dropped.
const KEPT_VARIABLES: &[&str] = &["PATH", "LANG"];

/// A throwaway `HOME` with its own XDG directories and `~/.ssh`, removed on drop.
///
/// Layout (all under one temp dir, created 0700 where it matters):
///
/// | variable | path |
/// |---|---|
/// | `HOME` | `<root>` |
/// | `XDG_CONFIG_HOME` | `<root>/.config` |
/// | `XDG_STATE_HOME` | `<root>/.local/state` |
/// | `XDG_DATA_HOME` | `<root>/.local/share` |
/// | `XDG_CACHE_HOME` | `<root>/.cache` |
/// | `XDG_RUNTIME_DIR` | `<root>/run` (0700) |
/// | | `<root>/.ssh` (0700) |
///
/// OpenSSH's `ssh`, `ssh-add -h` and `sshd` find `~` through `getpwuid()`, **not** `$HOME`, so
/// for them this home is only a place to keep files: pass `-F` [`Home::ssh_config`] (and
/// `-H` for `ssh-add -h`) explicitly. Programs that honour `$HOME`/`XDG_*`, such as airlock
/// itself and git, see only this directory.
///
/// ```no_run
/// let home = airlock_test_support::Home::new()?;
/// let status = home.command("ssh-keygen").arg("-h").status();
/// # Ok::<(), airlock_test_support::Error>(())
/// ```
#[derive(Debug)]
pub struct Home {
    dir: TempDir,
}

impl Home {
    /// Create the directory tree.
    pub fn new() -> Result<Home> {
        let dir = tempfile::Builder::new()
            .prefix("airlock-home-")
            .tempdir()
            .map_err(io(std::env::temp_dir()))?;
        let home = Home { dir };
        let root = home.path();
        fs::set_permissions(root, fs::Permissions::from_mode(0o700)).map_err(io(root))?;
        for sub in [".config", ".local/state", ".local/share", ".cache"] {
            let path = root.join(sub);
            fs::create_dir_all(&path).map_err(io(&path))?;
        }
        for private in [home.runtime_dir(), home.ssh_dir()] {
            fs::DirBuilder::new()
                .mode(0o700)
                .create(&private)
                .map_err(io(&private))?;
        }
        Ok(home)
    }

    /// The home directory itself (`$HOME`).
    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    /// `$XDG_CONFIG_HOME`.
    pub fn config_dir(&self) -> PathBuf {
        self.path().join(".config")
    }

    /// `$XDG_STATE_HOME`.
    pub fn state_dir(&self) -> PathBuf {
        self.path().join(".local/state")
    }

    /// `$XDG_DATA_HOME`.
    pub fn data_dir(&self) -> PathBuf {
        self.path().join(".local/share")
    }

    /// `$XDG_CACHE_HOME`.
    pub fn cache_dir(&self) -> PathBuf {
        self.path().join(".cache")
    }

    /// `$XDG_RUNTIME_DIR` (0700). Short enough for unix socket paths.
    pub fn runtime_dir(&self) -> PathBuf {
        self.path().join("run")
    }

    /// `~/.ssh` (0700).
    pub fn ssh_dir(&self) -> PathBuf {
        self.path().join(".ssh")
    }

    /// `~/.ssh/config`, whether or not it has been written.
    pub fn ssh_config(&self) -> PathBuf {
        self.ssh_dir().join("config")
    }

    /// `~/.ssh/known_hosts`, whether or not it has been written.
    pub fn known_hosts(&self) -> PathBuf {
        self.ssh_dir().join("known_hosts")
    }

    /// The variables [`Home::command`] sets: `HOME` and the five `XDG_*`.
    pub fn env_vars(&self) -> Vec<(&'static str, PathBuf)> {
        vec![
            ("HOME", self.path().to_path_buf()),
            ("XDG_CONFIG_HOME", self.config_dir()),
            ("XDG_STATE_HOME", self.state_dir()),
            ("XDG_DATA_HOME", self.data_dir()),
            ("XDG_CACHE_HOME", self.cache_dir()),
            ("XDG_RUNTIME_DIR", self.runtime_dir()),
        ]
    }

    /// A `Command` for `program` whose environment is only `PATH`, `LANG` (if set), `HOME` and
    /// the `XDG_*` of this home: in particular no `SSH_AUTH_SOCK`, `SSH_AGENT_PID`,
    /// `SSH_ASKPASS`, `DISPLAY` or `AIRLOCK_*` of the developer. Its working directory is the home.
    pub fn command(&self, program: impl AsRef<OsStr>) -> Command {
        let mut command = Command::new(program);
        command.env_clear();
        for name in KEPT_VARIABLES {
            if let Some(value) = std::env::var_os(name) {
                command.env(name, value);
            }
        }
        command.envs(self.env_vars()).current_dir(self.path());
        command
    }

    /// [`Home::command`] with `SSH_AUTH_SOCK` set to `agent_socket`.
    pub fn command_with_agent(&self, program: impl AsRef<OsStr>, agent_socket: &Path) -> Command {
        let mut command = self.command(program);
        command.env("SSH_AUTH_SOCK", agent_socket);
        command
    }

    /// Write `contents` to `~/.ssh/config` (0600), replacing it; returns the path.
    pub fn write_ssh_config(&self, contents: &str) -> Result<PathBuf> {
        let path = self.ssh_config();
        write_private(&path, contents)?;
        Ok(path)
    }

    /// Write `contents` to `~/.ssh/known_hosts` (0600), replacing it; returns the path.
    pub fn write_known_hosts(&self, contents: &str) -> Result<PathBuf> {
        let path = self.known_hosts();
        write_private(&path, contents)?;
        Ok(path)
    }

    /// Write `contents` to `relative` under the home (0600), creating parent directories (0700).
    pub fn write_file(
        &self,
        relative: impl AsRef<Path>,
        contents: impl AsRef<[u8]>,
    ) -> Result<PathBuf> {
        let path = self.path().join(relative);
        if let Some(parent) = path.parent() {
            fs::DirBuilder::new()
                .recursive(true)
                .mode(0o700)
                .create(parent)
                .map_err(io(parent))?;
        }
        write_private(&path, contents)?;
        Ok(path)
    }
}

/// Replace `path` with `contents`, created 0600 from the first byte.
pub(crate) fn write_private(path: &Path, contents: impl AsRef<[u8]>) -> Result<()> {
    use std::io::Write as _;
    let mut file = fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)
        .map_err(io(path))?;
    file.write_all(contents.as_ref()).map_err(io(path))
}
