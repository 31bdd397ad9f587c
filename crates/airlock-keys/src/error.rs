//! The one error type of this crate. Every variant names the key, file or socket involved and,
//! where the user can fix it, says how.

use std::io;
use std::path::PathBuf;

use time::OffsetDateTime;

/// What went wrong with a key operation.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum KeyError {
    /// The key name is not usable as a file name in the keys directory.
    #[error(
        "invalid key name {name:?}: {reason} (use letters, digits, '.', '_' and '-', starting with a letter or digit)"
    )]
    InvalidName {
        /// The rejected name.
        name: String,
        /// Why it was rejected.
        reason: &'static str,
    },

    /// The keys directory is not the user's or others can write it.
    #[error("refusing the keys directory {path}: {reason}")]
    UnsafeDirectory {
        /// The directory.
        path: PathBuf,
        /// Why.
        reason: String,
    },

    /// No key of that name in the keys directory.
    #[error("no key named {name:?} in {dir}; `airlock key list` shows the keys there")]
    UnknownKey {
        /// The name asked for.
        name: String,
        /// The keys directory searched.
        dir: PathBuf,
    },

    /// `new` or `import` would overwrite a key.
    #[error("a key named {name:?} already exists in {dir}; pass --force to replace it")]
    AlreadyExists {
        /// The name.
        name: String,
        /// The keys directory.
        dir: PathBuf,
    },

    /// A file could not be read.
    #[error("cannot read {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// The cause.
        source: io::Error,
    },

    /// A file or directory could not be written.
    #[error("cannot write {path}: {source}")]
    Write {
        /// The file or directory.
        path: PathBuf,
        /// The cause.
        source: io::Error,
    },

    /// A file that should hold an OpenSSH private key does not.
    #[error("{path} is not a readable OpenSSH private key: {detail}")]
    MalformedKey {
        /// The file.
        path: PathBuf,
        /// What is wrong, and what to do about it.
        detail: String,
    },

    /// A `.pub` file that does not parse, or does not match its private key.
    #[error("{path} is not a valid public key for this key: {detail}")]
    MalformedPublicKey {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        detail: String,
    },

    /// A metadata (`NAME.toml`) file that does not parse.
    #[error("{path} is not valid key metadata: {detail}")]
    MalformedMetadata {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        detail: String,
    },

    /// The passphrase does not decrypt the key.
    #[error("wrong passphrase for {path}")]
    WrongPassphrase {
        /// The encrypted key file.
        path: PathBuf,
    },

    /// An encrypted key, and no way to ask for its passphrase.
    #[error(
        "{path} is encrypted and there is no terminal to ask for its passphrase: pass --passphrase-file FILE"
    )]
    PassphraseRequired {
        /// The encrypted key file.
        path: PathBuf,
    },

    /// A new key needs a passphrase decision and there is no terminal to ask on.
    #[error(
        "no terminal to ask for a passphrase: pass --passphrase-file FILE, or --no-passphrase for an unencrypted key"
    )]
    NoTerminal,

    /// The two passphrases typed for a new key differ.
    #[error("the passphrases do not match; nothing was written")]
    PassphraseMismatch,

    /// A passphrase shorter than `ssh-keygen` accepts.
    #[error("passphrase too short: {len} characters, need at least {min} (or use --no-passphrase)")]
    PassphraseTooShort {
        /// The length given.
        len: usize,
        /// The minimum.
        min: usize,
    },

    /// A passphrase file that is empty.
    #[error("passphrase file {path} is empty; for an unencrypted key pass --no-passphrase instead")]
    EmptyPassphraseFile {
        /// The file.
        path: PathBuf,
    },

    /// Reading from the terminal failed.
    #[error("cannot read from the terminal: {0}")]
    Terminal(#[source] io::Error),

    /// The key is past its expiry date.
    #[error(
        "key {name:?} expired on {expired}; make a new one with `airlock key new` (and replace its deploy keys)",
        expired = crate::format_time(*.expired)
    )]
    Expired {
        /// The key.
        name: String,
        /// When it expired.
        expired: OffsetDateTime,
    },

    /// A duration such as `90d` or `1h30m` that does not parse.
    #[error("invalid duration {text:?}: {reason} (examples: 90d, 12h, 1h30m, 2w, 3600)")]
    InvalidDuration {
        /// The text given.
        text: String,
        /// Why it was rejected.
        reason: &'static str,
    },

    /// A `--type`/`--bits` combination that cannot be generated.
    #[error("cannot make a {kind} key with {bits} bits: {reason}")]
    InvalidBits {
        /// The key type.
        kind: &'static str,
        /// The bits asked for.
        bits: u32,
        /// What is allowed.
        reason: &'static str,
    },

    /// Key generation or encryption failed inside the crypto library.
    #[error("cannot {action}: {source}")]
    Crypto {
        /// What was being done.
        action: &'static str,
        /// The cause.
        source: ssh_key::Error,
    },

    /// Talking to the agent failed.
    #[error("agent at {socket}: {reason}")]
    Agent {
        /// The agent socket.
        socket: PathBuf,
        /// What went wrong.
        reason: String,
    },
}
