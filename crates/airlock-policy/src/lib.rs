//! The forwarding policy of the airlock agent: the policy file, host names tied to host keys,
//! the pure allow/confirm/deny decision, and the audit log.
//!
//! Mechanism apart from policy: the agent computes the facts (key, operation, hop chain of
//! session binds) and asks a [`airlock_agent::policy::Policy`]; this crate answers.
//!
//! - [`PolicyFile`] parses `policy.toml`; every error names file, line and field.
//! - [`KnownHosts`] and [`HostIndex`] tie names to host keys (hashed entries,
//!   `@cert-authority`, `@revoked`, `HostKeyAlias`).
//! - [`CompiledPolicy`] decides ([`CompiledPolicy::decide_hops`] is the pure core, on names).
//! - [`PolicyHandle`] is what the agent holds: it re-reads the files when they change.
//! - [`AuditLog`] appends one JSON line per decision.
//!
//! ```no_run
//! use airlock_policy::{AuditLog, PolicyHandle, PolicySources};
//! let home = std::path::Path::new("/home/me");
//! let sources = PolicySources::for_user(home, home.join(".config/airlock/policy.toml"), home.join(".ssh/airlock"));
//! let policy = PolicyHandle::load(sources)?;
//! if let Some(notice) = policy.unrestricted_notice() {
//!     eprintln!("{notice}");
//! }
//! let audit = AuditLog::open(home.join(".local/state/airlock/audit.jsonl"))?;
//! # Ok::<(), airlock_policy::PolicyError>(())
//! ```

#![deny(missing_docs)]

pub mod audit;
pub mod compiled;
mod error;
pub mod file;
pub mod handle;
pub mod known_hosts;
pub mod naming;
pub mod starter;

pub use audit::{AuditLog, AuditRecord};
pub use compiled::{CompiledPolicy, CompiledRule, Hop, PolicySources};
pub use error::PolicyError;
pub use file::{ConfirmMode, ForwardDefault, KeyRule, KeySelector, PolicyFile};
pub use handle::{PolicyHandle, unrestricted_message};
pub use known_hosts::{HostIndex, HostKeyAlias, KnownHosts};
pub use naming::HostNaming;
