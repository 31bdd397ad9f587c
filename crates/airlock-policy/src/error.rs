//! The one error type of this crate.

use std::path::PathBuf;

/// Why a policy could not be loaded, or the audit log written.
#[derive(Debug, thiserror::Error)]
pub enum PolicyError {
    /// A file could not be read (other than "not found" where absence is allowed).
    #[error(transparent)]
    Io(#[from] std::io::Error),
    /// The policy file is not valid: `file:line: field: message`.
    #[error("{}:{line}: {field}: {message}", file.display())]
    Invalid {
        /// The policy file.
        file: PathBuf,
        /// The 1-based line of the offending value (or of the table that lacks it).
        line: usize,
        /// The field, as a path: `key[2].use-for`, `defaults.confirm`.
        field: String,
        /// What is wrong and, where possible, what to write instead.
        message: String,
    },
    /// An audit record could not be encoded.
    #[error("audit record: {0}")]
    Encode(#[from] serde_json::Error),
}
