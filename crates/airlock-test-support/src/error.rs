//! The one error type of this crate.

use std::path::PathBuf;
use std::process::ExitStatus;

/// Something in the test harness failed: a file, a program, or a server that would not start.
///
/// Every variant names the path or program involved, and where a package is missing the message
/// says which `apt-get install` fixes it.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Reading, writing or creating a file or directory failed.
    #[error("{}: {source}", path.display())]
    Io {
        /// The file or directory.
        path: PathBuf,
        /// What went wrong.
        source: std::io::Error,
    },
    /// A socket operation (picking a port, probing a listener) failed.
    #[error("{what}: {source}")]
    Socket {
        /// What was being done.
        what: String,
        /// What went wrong.
        source: std::io::Error,
    },
    /// A program is not installed.
    #[error("`{program}` is not installed; run `apt-get install -y {package}`")]
    Missing {
        /// The program that was looked for.
        program: String,
        /// The Debian package that provides it.
        package: &'static str,
    },
    /// A program could not be started.
    #[error("could not run `{program}`: {source}")]
    Spawn {
        /// The program.
        program: String,
        /// What went wrong.
        source: std::io::Error,
    },
    /// A program ran and exited unsuccessfully.
    #[error("`{command}` exited with {status}\n--- stderr ---\n{stderr}")]
    Failed {
        /// The command line, for the reader.
        command: String,
        /// How it exited.
        status: ExitStatus,
        /// What it wrote to stderr.
        stderr: String,
    },
    /// `sshd` did not come up.
    #[error("sshd ({config}) did not start: {reason}\n--- sshd log ---\n{log}", config = config.display())]
    SshdStart {
        /// The sshd_config it was given.
        config: PathBuf,
        /// Why we gave up.
        reason: String,
        /// The log so far.
        log: String,
    },
    /// Waited for something for longer than the harness allows.
    #[error("timed out after {seconds} s waiting for {what}")]
    Timeout {
        /// What was awaited.
        what: String,
        /// The bound.
        seconds: u64,
    },
    /// The caller asked for something the harness does not have (an unknown node name, say).
    #[error("{0}")]
    Usage(String),
}

/// `Result` with this crate's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

pub(crate) fn io(path: impl Into<PathBuf>) -> impl FnOnce(std::io::Error) -> Error {
    let path = path.into();
    move |source| Error::Io { path, source }
}
