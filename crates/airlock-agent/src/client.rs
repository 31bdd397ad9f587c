//! A small blocking agent client, for `airlock key load`, tests and benchmarks. It speaks to any
//! agent (airlock's or OpenSSH's).

use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::path::Path;

use airlock_protocol::{
    AddIdentity, Constraint, PrivateKeyMaterial, Request, Response, SignRequest, frame_length,
};
use ssh_encoding::{Decode, Encode};

/// Why a client call failed.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// The socket could not be reached.
    #[error("cannot connect to the agent at {path}: {source}")]
    Connect {
        /// The socket path.
        path: String,
        /// The error.
        source: std::io::Error,
    },
    /// Reading or writing failed.
    #[error("agent connection failed: {0}")]
    Io(#[from] std::io::Error),
    /// The agent answered something unparseable.
    #[error("bad agent response: {0}")]
    Protocol(#[from] airlock_protocol::Error),
    /// The agent refused the request.
    #[error("agent refused operation")]
    Refused,
    /// The agent sent a response of an unexpected kind.
    #[error("unexpected agent response")]
    Unexpected,
    /// A key could not be encoded or decoded.
    #[error("key error: {0}")]
    Key(String),
}

/// A connection to an agent.
#[derive(Debug)]
pub struct Client {
    stream: UnixStream,
}

impl Client {
    /// Connect to the agent socket at `path`.
    pub fn connect(path: &Path) -> Result<Self, ClientError> {
        let stream = UnixStream::connect(path).map_err(|source| ClientError::Connect {
            path: path.display().to_string(),
            source,
        })?;
        Ok(Self { stream })
    }

    /// Send a request and read the response.
    pub fn request(&mut self, req: &Request) -> Result<Response, ClientError> {
        let bytes = req.try_encode()?;
        self.stream.write_all(&bytes)?;
        self.read_response()
    }

    /// Send raw bytes (for tests of malformed input) and read a response.
    pub fn raw(&mut self, bytes: &[u8]) -> Result<Response, ClientError> {
        self.stream.write_all(bytes)?;
        self.read_response()
    }

    fn read_response(&mut self) -> Result<Response, ClientError> {
        let mut prefix = [0u8; 4];
        self.stream.read_exact(&mut prefix)?;
        let len = frame_length(prefix)?;
        let mut body = vec![0u8; len];
        self.stream.read_exact(&mut body)?;
        Ok(Response::decode(&body)?)
    }

    /// List the keys: public key and comment.
    pub fn list(&mut self) -> Result<Vec<(ssh_key::PublicKey, String)>, ClientError> {
        match self.request(&Request::RequestIdentities)? {
            Response::Identities(ids) => ids
                .into_iter()
                .map(|id| {
                    let key = public_from_blob(&id.key_blob)?;
                    Ok((key, id.comment))
                })
                .collect(),
            Response::Failure => Err(ClientError::Refused),
            _ => Err(ClientError::Unexpected),
        }
    }

    /// Add a private key with an optional lifetime and confirmation.
    pub fn add(
        &mut self,
        key: &ssh_key::PrivateKey,
        comment: &str,
        lifetime_secs: Option<u32>,
        confirm: bool,
    ) -> Result<(), ClientError> {
        let mut constraints = Vec::new();
        if let Some(s) = lifetime_secs {
            constraints.push(Constraint::Lifetime(s));
        }
        if confirm {
            constraints.push(Constraint::Confirm);
        }
        self.add_constrained(key, comment, constraints)
    }

    /// Add a private key with any constraints.
    pub fn add_constrained(
        &mut self,
        key: &ssh_key::PrivateKey,
        comment: &str,
        constraints: Vec<Constraint>,
    ) -> Result<(), ClientError> {
        let constrained = !constraints.is_empty();
        let req = Request::AddIdentity(Box::new(AddIdentity {
            key: Box::new(PrivateKeyMaterial::from_keypair(key.key_data())),
            comment: comment.to_owned(),
            constraints,
            constrained,
        }));
        self.expect_success(&req)
    }

    /// Remove a key.
    pub fn remove(&mut self, key: &ssh_key::PublicKey) -> Result<(), ClientError> {
        let mut blob = Vec::new();
        key.key_data()
            .encode(&mut blob)
            .map_err(|e| ClientError::Key(e.to_string()))?;
        self.expect_success(&Request::RemoveIdentity { key_blob: blob })
    }

    /// Sign `data` with the key whose blob is `key_blob`; returns the signature blob.
    pub fn sign(
        &mut self,
        key_blob: &[u8],
        data: &[u8],
        flags: u32,
    ) -> Result<Vec<u8>, ClientError> {
        let req = Request::Sign(SignRequest {
            key_blob: key_blob.to_vec(),
            data: data.to_vec(),
            flags,
        });
        match self.request(&req)? {
            Response::Signature(sig) => Ok(sig),
            Response::Failure => Err(ClientError::Refused),
            _ => Err(ClientError::Unexpected),
        }
    }

    fn expect_success(&mut self, req: &Request) -> Result<(), ClientError> {
        match self.request(req)? {
            Response::Success => Ok(()),
            Response::Failure | Response::ExtensionFailure => Err(ClientError::Refused),
            _ => Err(ClientError::Unexpected),
        }
    }
}

/// Parse a public key or certificate blob as listed by an agent.
pub fn public_from_blob(blob: &[u8]) -> Result<ssh_key::PublicKey, ClientError> {
    if let Ok((_, public)) = airlock_protocol::certificate_subject(blob) {
        return Ok(ssh_key::PublicKey::from(public));
    }
    let data = ssh_key::public::KeyData::decode(&mut &blob[..])
        .map_err(|e| ClientError::Key(e.to_string()))?;
    Ok(ssh_key::PublicKey::from(data))
}
