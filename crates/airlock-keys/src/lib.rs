//! Per-project SSH keys: create, list, show, expire, import, remove, and load into an agent.
//!
//! A dedicated key per project limits what a leaked or forwarded key can reach, and an expiry
//! date makes the key stop being loadable when the project ends. The files are exactly what
//! OpenSSH reads (`ssh -i`, `ssh-keygen -y`), plus a `NAME.toml` for what OpenSSH does not record.
//!
//! ```no_run
//! use airlock_keys::{KeyName, KeySpec, KeyStore, NewKey};
//!
//! let store = KeyStore::new("/home/me/.ssh/airlock");
//! let name = KeyName::new("ai-project")?;
//! let key = store.create(
//!     &NewKey {
//!         name: &name,
//!         spec: KeySpec::Ed25519,
//!         comment: None,
//!         expires_in: Some(std::time::Duration::from_secs(90 * 86_400)),
//!         passphrase: None,
//!         force: false,
//!     },
//!     time::OffsetDateTime::now_utc(),
//! )?;
//! println!("{}", key.public_line());
//! # Ok::<(), airlock_keys::KeyError>(())
//! ```

pub mod agent;
mod agent_client;
pub mod atomic;
mod compat;
pub mod duration;
mod error;
pub mod kind;
pub mod metadata;
mod name;
pub mod passphrase;
pub mod store;

pub use agent::Agent;
pub use duration::{format_duration, parse_duration};
pub use error::KeyError;
pub use kind::{KeyFamily, KeySpec};
pub use metadata::{ExpiryStatus, KeyMetadata};
pub use name::KeyName;
pub use passphrase::Passphrase;
pub use store::{ImportKey, KeyPaths, KeyStore, NewKey, StoredKey};
/// The instant type of the metadata, re-exported so callers need not name the `time` crate.
pub use time::OffsetDateTime;

use time::format_description::well_known::Rfc3339;

/// The current time in UTC, whole seconds (what the metadata stores).
pub fn now() -> OffsetDateTime {
    let now = OffsetDateTime::now_utc();
    now.replace_nanosecond(0).unwrap_or(now)
}

/// An instant as RFC 3339 (`2027-01-30T10:00:00Z`), as stored in the metadata.
pub fn format_time(at: OffsetDateTime) -> String {
    at.format(&Rfc3339).unwrap_or_else(|_| at.to_string())
}

/// Parse an RFC 3339 instant, as [`format_time`] writes it.
pub fn parse_time(text: &str) -> Option<OffsetDateTime> {
    OffsetDateTime::parse(text, &Rfc3339).ok()
}
