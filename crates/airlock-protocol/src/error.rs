//! Decoding errors.

/// Why a message could not be decoded. The agent answers any of these with `SSH_AGENT_FAILURE`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Error {
    /// A length field promised more bytes than remain.
    #[error("truncated message: needed {needed} more bytes, {remaining} remain")]
    Truncated {
        /// Bytes the field needed.
        needed: usize,
        /// Bytes that remained.
        remaining: usize,
    },
    /// The frame is larger than [`crate::MAX_FRAME_LEN`].
    #[error("frame of {0} bytes exceeds the 256 KiB limit")]
    FrameTooLarge(usize),
    /// The frame has no type byte.
    #[error("empty frame")]
    Empty,
    /// Bytes were left over after a complete message.
    #[error("{0} trailing bytes after message")]
    TrailingBytes(usize),
    /// A string that must be UTF-8 was not.
    #[error("invalid UTF-8 in {0}")]
    Utf8(&'static str),
    /// A boolean byte other than 0 or 1.
    #[error("invalid boolean")]
    Bool,
    /// A field had a value the protocol does not allow.
    #[error("invalid {0}")]
    Invalid(&'static str),
    /// A key could not be parsed.
    #[error("invalid key: {0}")]
    Key(String),
    /// A constraint is one this implementation does not know.
    #[error("unsupported constraint {0}")]
    UnsupportedConstraint(String),
}
