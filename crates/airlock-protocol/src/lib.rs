//! The SSH agent protocol as OpenSSH speaks it (RFC 9987, OpenSSH's `PROTOCOL.agent`), with no I/O.
//!
//! A frame is `uint32 length || byte type || body`. [`frame_length`] checks the length prefix
//! against [`MAX_FRAME_LEN`] before anyone allocates for the body; [`Request::decode`] and
//! [`Response::decode`] then parse a body, checking every nested length against the bytes that
//! remain. Everything encodes back byte for byte ([`Request::encode`], [`Response::encode`]), which
//! the tests check against captures of real OpenSSH traffic.
//!
//! ```
//! use airlock_protocol::{Request, Response};
//! let bytes = Request::RequestIdentities.encode();
//! assert_eq!(bytes, [0, 0, 0, 1, 11]);
//! let reply = Response::decode(&[12, 0, 0, 0, 0]).unwrap();
//! assert_eq!(reply, Response::Identities(vec![]));
//! ```

#![deny(missing_docs)]

mod constraint;
mod error;
mod key;
mod message;
mod signed_data;
pub mod text;
mod wire;

pub use constraint::{Constraint, DestinationConstraint, Hop, HopKey};
pub use error::Error;
pub use key::{
    CERT_TYPE_HOST, CertificateFields, CertificatePrivate, PrivateKeyMaterial, certificate_subject,
    unsupported_key_reason,
};
pub use message::{
    AddIdentity, Extension, Identity, Request, Response, SessionBind, SignRequest, frame_length,
    message_type,
};
pub use signed_data::{SignedData, SshSig, UserAuthRequest};
pub use wire::{Cursor, Writer};

/// The largest frame body accepted, as OpenSSH's `AGENT_MAX_LEN`: 256 KiB.
pub const MAX_FRAME_LEN: usize = 256 * 1024;

/// Sign flag: RSA signature with SHA-256 (`rsa-sha2-256`).
pub const SIGN_RSA_SHA2_256: u32 = 0x02;
/// Sign flag: RSA signature with SHA-512 (`rsa-sha2-512`).
pub const SIGN_RSA_SHA2_512: u32 = 0x04;

/// Session IDs longer than this are refused (OpenSSH's `AGENT_MAX_SID_LEN`).
pub const MAX_SESSION_ID_LEN: usize = 128;
