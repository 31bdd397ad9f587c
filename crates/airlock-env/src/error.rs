//! The one error type of this crate. Each variant names the file, line, field, channel or
//! environment involved, so the binary can print it as one sentence.

use std::path::PathBuf;

/// Everything that can go wrong while creating, locking, exporting or running an environment.
#[derive(Debug, thiserror::Error)]
pub enum EnvError {
    /// A file could not be read or written.
    #[error("{path}: {source}")]
    Io {
        /// The file or directory involved.
        path: PathBuf,
        /// The underlying error.
        source: std::io::Error,
    },
    /// An I/O error that already names its path (from `fs-err`).
    #[error(transparent)]
    FsErr(#[from] std::io::Error),
    /// `environment.yml` is not valid.
    #[error("{}: {message}", yaml_place(path, *line, field))]
    EnvironmentYaml {
        /// The file.
        path: PathBuf,
        /// 1-based line number (0 when unknown).
        line: usize,
        /// The field, e.g. `dependencies[2]` (empty: the file as a whole).
        field: String,
        /// What is wrong.
        message: String,
    },
    /// A configuration file (`config.toml`, `.condarc`) is not valid.
    #[error("{path}:{line}: {message}")]
    Config {
        /// The file.
        path: PathBuf,
        /// 1-based line number (0 when unknown).
        line: usize,
        /// What is wrong.
        message: String,
    },
    /// A package spec could not be parsed.
    #[error("invalid package spec `{spec}`: {message}")]
    InvalidSpec {
        /// The spec as written.
        spec: String,
        /// What is wrong.
        message: String,
    },
    /// A channel name or URL could not be parsed.
    #[error("invalid channel `{channel}`: {message}")]
    InvalidChannel {
        /// The channel as written.
        channel: String,
        /// What is wrong.
        message: String,
    },
    /// A channel does not exist.
    #[error(
        "channel `{channel}` does not exist (looked at {url}); check the name or `channel_alias`"
    )]
    UnknownChannel {
        /// The channel as written.
        channel: String,
        /// Where it was looked for.
        url: String,
    },
    /// A channel could not be reached.
    #[error(
        "channel `{channel}` could not be reached ({message}); check the network or use a local mirror"
    )]
    UnreachableChannel {
        /// The channel as written.
        channel: String,
        /// What went wrong.
        message: String,
    },
    /// Offline mode forbids a remote channel.
    #[error(
        "channel `{channel}` is remote and airlock is in offline mode; use a file:// channel or turn `offline` off"
    )]
    Offline {
        /// The channel.
        channel: String,
    },
    /// The repodata could not be loaded.
    #[error("could not load the package index: {0}")]
    Gateway(String),
    /// A requested package is not in the channels, or none of its versions is accepted.
    #[error("{0}")]
    Unavailable(String),
    /// The specs cannot be satisfied together.
    #[error("the requested packages cannot be installed together: {0}")]
    Unsatisfiable(String),
    /// The solver failed for another reason.
    #[error("solving failed: {0}")]
    Solve(String),
    /// Virtual packages (`__glibc`, `__cuda`) could not be detected.
    #[error("could not detect the system's virtual packages: {0}")]
    VirtualPackages(String),
    /// The installer failed.
    #[error("installing into {prefix} failed: {message}")]
    Install {
        /// The environment.
        prefix: PathBuf,
        /// What went wrong.
        message: String,
    },
    /// A package lists a path that would leave the environment.
    #[error(
        "the package {package} lists the path `{path}`, which {reason}; it was refused before anything of it was linked (a broken or malicious package: report it to the channel)"
    )]
    UnsafePackagePath {
        /// `name-version-build`.
        package: String,
        /// The path as listed.
        path: String,
        /// What is wrong with it.
        reason: String,
    },
    /// No environment with this name or path.
    #[error("environment `{0}` does not exist; `airlock env list` shows the known ones")]
    MissingEnvironment(String),
    /// A new environment whose `pip:` step has not finished.
    #[error(
        "environment {0} is not complete: its pip: step is still running or was interrupted (the next `airlock env create` or `env install` of it cleans it up)"
    )]
    Incomplete(PathBuf),
    /// The environment already exists.
    #[error("environment {0} already exists; remove it first or use `airlock env update`")]
    EnvironmentExists(PathBuf),
    /// An environment name is not acceptable.
    #[error("invalid environment name `{0}`: use letters, digits, `-`, `_` and `.` only")]
    InvalidName(String),
    /// A lock file could not be read or written.
    #[error("lock file {path}: {message}")]
    Lock {
        /// The lock file.
        path: PathBuf,
        /// What went wrong.
        message: String,
    },
    /// A platform name is not known.
    #[error("unknown platform `{0}` (expected e.g. linux-64, osx-arm64, noarch)")]
    UnknownPlatform(String),
    /// Activation scripts could not be generated or run.
    #[error("activating {prefix} failed: {message}")]
    Activation {
        /// The environment.
        prefix: PathBuf,
        /// What went wrong.
        message: String,
    },
    /// pip (or uv) failed.
    #[error("installing the pip: section failed ({command}): {message}")]
    Pip {
        /// The command line run.
        command: String,
        /// Exit status or error.
        message: String,
    },
    /// Building or indexing a local test channel failed.
    #[error("building the local channel in {path}: {message}")]
    Channel {
        /// The channel directory.
        path: PathBuf,
        /// What went wrong.
        message: String,
    },
}

impl EnvError {
    /// An [`EnvError::Io`] for `path`.
    pub fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        Self::Io {
            path: path.into(),
            source,
        }
    }
}

/// The result type of this crate.
pub type Result<T, E = EnvError> = std::result::Result<T, E>;

/// `FILE:LINE: field `F``, leaving out what is unknown (line 0, no field).
fn yaml_place(path: &std::path::Path, line: usize, field: &str) -> String {
    use std::fmt::Write as _;
    let mut out = path.display().to_string();
    if line > 0 {
        let _ = write!(out, ":{line}");
    }
    if !field.is_empty() {
        let _ = write!(out, ": field `{field}`");
    }
    out
}
