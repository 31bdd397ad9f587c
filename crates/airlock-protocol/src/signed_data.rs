//! What a client asks the agent to sign: an SSH user-authentication request, an SSHSIG
//! message, or something else. The destination checks and the policy decide on this.

use crate::{Cursor, Error};

const SSH2_MSG_USERAUTH_REQUEST: u8 = 50;

/// The data of a sign request, classified.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SignedData {
    /// A `publickey` user-authentication request (RFC 4252 §7, OpenSSH `PROTOCOL` §3).
    UserAuth(UserAuthRequest),
    /// An SSHSIG signature (`ssh-keygen -Y sign`, git commit signing).
    SshSig(SshSig),
    /// Anything else.
    Other,
}

/// A parsed `SSH2_MSG_USERAUTH_REQUEST` for method `publickey` or
/// `publickey-hostbound-v00@openssh.com`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UserAuthRequest {
    /// The session identifier.
    pub session_id: Vec<u8>,
    /// The user name.
    pub user: String,
    /// The service (`ssh-connection`).
    pub service: String,
    /// The method name.
    pub method: String,
    /// The public key algorithm.
    pub algorithm: String,
    /// The public key blob.
    pub key_blob: Vec<u8>,
    /// For the host-bound method, the server's host key blob.
    pub host_key: Option<Vec<u8>>,
}

/// The signed part of an SSHSIG signature (`PROTOCOL.sshsig`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SshSig {
    /// The namespace, e.g. `git` or `file`.
    pub namespace: String,
    /// The hash algorithm of the message (`sha256`, `sha512`).
    pub hash_algorithm: String,
}

impl SignedData {
    /// Classify the data of a sign request.
    pub fn parse(data: &[u8]) -> Self {
        if let Ok(sig) = parse_sshsig(data) {
            return SignedData::SshSig(sig);
        }
        match parse_userauth(data) {
            Ok(u) => SignedData::UserAuth(u),
            Err(_) => SignedData::Other,
        }
    }
}

fn parse_userauth(data: &[u8]) -> Result<UserAuthRequest, Error> {
    let mut c = Cursor::new(data);
    let session_id = c.string()?.to_vec();
    if c.u8()? != SSH2_MSG_USERAUTH_REQUEST {
        return Err(Error::Invalid("not a userauth request"));
    }
    let user = c.utf8("user")?.to_owned();
    let service = c.utf8("service")?.to_owned();
    let method = c.utf8("method")?.to_owned();
    let hostbound = match method.as_str() {
        "publickey" => false,
        "publickey-hostbound-v00@openssh.com" => true,
        _ => return Err(Error::Invalid("userauth method")),
    };
    if !c.bool()? {
        return Err(Error::Invalid("userauth without signature"));
    }
    let algorithm = c.utf8("algorithm")?.to_owned();
    let key_blob = c.string()?.to_vec();
    let host_key = if hostbound {
        Some(c.string()?.to_vec())
    } else {
        None
    };
    c.finish()?;
    Ok(UserAuthRequest {
        session_id,
        user,
        service,
        method,
        algorithm,
        key_blob,
        host_key,
    })
}

fn parse_sshsig(data: &[u8]) -> Result<SshSig, Error> {
    let mut c = Cursor::new(data);
    if c.bytes(6)? != b"SSHSIG" {
        return Err(Error::Invalid("not SSHSIG"));
    }
    let namespace = c.utf8("namespace")?.to_owned();
    let _reserved = c.string()?;
    let hash_algorithm = c.utf8("hash algorithm")?.to_owned();
    let _hash = c.string()?;
    c.finish()?;
    if namespace.is_empty() {
        return Err(Error::Invalid("empty namespace"));
    }
    Ok(SshSig {
        namespace,
        hash_algorithm,
    })
}
