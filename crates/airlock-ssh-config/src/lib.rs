//! OpenSSH client configuration, read exactly as `ssh -G` reads it, audited for risky
//! settings, and edited safely.
//!
//! [`resolve`] computes the effective settings for one destination with OpenSSH 9.2's
//! semantics (first obtained value wins; `Host` and `Match`; `Include`; `IgnoreUnknown`;
//! `%`-tokens; the final pass; Debian's defaults) and [`ResolvedConfig::to_ssh_g`] prints them
//! in `ssh -G`'s format. The differential tests in the `airlock` crate hold it to the real
//! `ssh -G`.
//!
//! ```no_run
//! use airlock_ssh_config::{ResolveOptions, resolve};
//! let cfg = resolve("gpu-node-01", &ResolveOptions::for_current_user()?)?;
//! println!("{}:{} as {}", cfg.hostname, cfg.port, cfg.user);
//! # Ok::<(), airlock_ssh_config::Error>(())
//! ```
//!
//! Where it knowingly differs from `ssh -G`:
//!
//! - `Match exec` is reported as [`Error::MatchExecUnsupported`] instead of running a command
//!   (an `exec` after a criterion that already failed is skipped, as ssh skips it).
//! - With `CanonicalizeHostname`, names are looked up with the system resolver; CNAME
//!   rewriting under `CanonicalizePermittedCNAMEs` is not reproduced.
//! - Defaults, keyword table and algorithm lists are those of Debian 12's OpenSSH 9.2
//!   (`ipqos lowdelay throughput`, `forwardx11trusted yes`, the GSSAPI key exchange keywords,
//!   `ServerAliveInterval 300` under `BatchMode`).
//! - `~` and `%d` use the password database's home directory, as `ssh` does, not `$HOME`.
//!
//! [`check()`] audits a config ([`Finding`]s with ids and fixes) and [`edit::add_host`] writes
//! one `Host` block in place, atomically.

#![deny(missing_docs)]

mod algorithms;
pub mod check;
pub mod edit;
mod expand;
mod lexer;
mod options;
pub mod pattern;
mod resolve;

use std::path::PathBuf;

pub use check::{CheckOptions, Finding, Severity, check};
pub use resolve::{
    ConfigBlocks, ConfigSource, ForwardAgent, HostBlock, LocalContext, ResolveOptions,
    ResolvedConfig, host_blocks, resolve, resolve_with_env,
};

/// A place in a config file.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Location {
    /// The file.
    pub file: PathBuf,
    /// The 1-based line.
    pub line: usize,
}

impl std::fmt::Display for Location {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}:{}", self.file.display(), self.line)
    }
}

/// What one directive did while resolving.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Trace {
    /// The keyword (canonical lower-case name).
    pub keyword: &'static str,
    /// Where it is written.
    pub location: Location,
    /// Its effect.
    pub outcome: TraceOutcome,
}

/// The effect of one directive.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TraceOutcome {
    /// It set the value (or added to a list).
    Set,
    /// It was in a matching block, but an earlier directive had set the value already.
    Shadowed(Option<Location>),
    /// It was in a block that does not apply to this host.
    Inactive,
}

/// Errors reading, resolving or editing a configuration.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A file could not be read.
    #[error("{}: {source}", path.display())]
    Read {
        /// The file.
        path: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
    /// A line OpenSSH rejects (and with it the whole file).
    #[error("{}:{line}: {message}", file.display())]
    Config {
        /// The file.
        file: PathBuf,
        /// The 1-based line.
        line: usize,
        /// What is wrong, in OpenSSH's words where possible.
        message: String,
    },
    /// `Match exec` would run a command; airlock does not.
    #[error(
        "{}:{line}: Match exec is not supported (airlock never runs commands from a config); use `ssh -G` for this host",
        file.display()
    )]
    MatchExecUnsupported {
        /// The file.
        file: PathBuf,
        /// The 1-based line.
        line: usize,
    },
    /// An included file is writable by others or owned by someone else.
    #[error("Bad owner or permissions on {}: make it owned by you and not group/world-writable (chmod go-w)", path.display())]
    BadPermissions {
        /// The file.
        path: PathBuf,
    },
    /// Includes nest deeper than OpenSSH allows (16).
    #[error("{}: too many recursive configuration includes", path.display())]
    IncludeDepth {
        /// The file that would exceed the depth.
        path: PathBuf,
    },
    /// A value could not be expanded or is inconsistent.
    #[error("{what}: {reason}")]
    Expand {
        /// Which setting.
        what: String,
        /// Why.
        reason: String,
    },
    /// `CanonicalizeFallbackLocal no` and the name did not resolve.
    #[error("Could not resolve host \"{0}\" (CanonicalizeFallbackLocal no)")]
    Canonicalize(String),
    /// The destination is malformed.
    #[error("invalid destination \"{0}\"")]
    Destination(String),
    /// The current uid has no password database entry.
    #[error("no password database entry for uid {uid}")]
    NoPasswdEntry {
        /// The uid.
        uid: u32,
    },
    /// A policy file could not be parsed.
    #[error("{}: {message}", path.display())]
    Policy {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        message: String,
    },
    /// An edit was refused.
    #[error("{0}")]
    Edit(String),
}
