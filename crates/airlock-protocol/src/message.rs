//! Agent requests and responses.

use zeroize::Zeroizing;

use crate::{Constraint, Cursor, Error, MAX_FRAME_LEN, PrivateKeyMaterial, Writer};

/// Message type numbers (OpenSSH `authfd.h`).
pub mod message_type {
    /// `SSH_AGENT_FAILURE`
    pub const FAILURE: u8 = 5;
    /// `SSH_AGENT_SUCCESS`
    pub const SUCCESS: u8 = 6;
    /// `SSH_AGENTC_REMOVE_ALL_RSA_IDENTITIES` (SSH-1, still sent by `ssh-add -D`)
    pub const REMOVE_ALL_RSA_IDENTITIES: u8 = 9;
    /// `SSH2_AGENTC_REQUEST_IDENTITIES`
    pub const REQUEST_IDENTITIES: u8 = 11;
    /// `SSH2_AGENT_IDENTITIES_ANSWER`
    pub const IDENTITIES_ANSWER: u8 = 12;
    /// `SSH2_AGENTC_SIGN_REQUEST`
    pub const SIGN_REQUEST: u8 = 13;
    /// `SSH2_AGENT_SIGN_RESPONSE`
    pub const SIGN_RESPONSE: u8 = 14;
    /// `SSH2_AGENTC_ADD_IDENTITY`
    pub const ADD_IDENTITY: u8 = 17;
    /// `SSH2_AGENTC_REMOVE_IDENTITY`
    pub const REMOVE_IDENTITY: u8 = 18;
    /// `SSH2_AGENTC_REMOVE_ALL_IDENTITIES`
    pub const REMOVE_ALL_IDENTITIES: u8 = 19;
    /// `SSH_AGENTC_ADD_SMARTCARD_KEY`
    pub const ADD_SMARTCARD_KEY: u8 = 20;
    /// `SSH_AGENTC_REMOVE_SMARTCARD_KEY`
    pub const REMOVE_SMARTCARD_KEY: u8 = 21;
    /// `SSH_AGENTC_LOCK`
    pub const LOCK: u8 = 22;
    /// `SSH_AGENTC_UNLOCK`
    pub const UNLOCK: u8 = 23;
    /// `SSH2_AGENTC_ADD_ID_CONSTRAINED`
    pub const ADD_ID_CONSTRAINED: u8 = 25;
    /// `SSH_AGENTC_ADD_SMARTCARD_KEY_CONSTRAINED`
    pub const ADD_SMARTCARD_KEY_CONSTRAINED: u8 = 26;
    /// `SSH_AGENTC_EXTENSION`
    pub const EXTENSION: u8 = 27;
    /// `SSH_AGENT_EXTENSION_FAILURE`
    pub const EXTENSION_FAILURE: u8 = 28;
    /// `SSH_AGENT_EXTENSION_RESPONSE`
    pub const EXTENSION_RESPONSE: u8 = 29;
}
use message_type as t;

/// Read the length prefix of a frame and check it against [`MAX_FRAME_LEN`] before anyone
/// allocates for the body.
pub fn frame_length(prefix: [u8; 4]) -> Result<usize, Error> {
    let len = u32::from_be_bytes(prefix) as usize;
    if len > MAX_FRAME_LEN {
        return Err(Error::FrameTooLarge(len));
    }
    if len == 0 {
        return Err(Error::Empty);
    }
    Ok(len)
}

fn frame(body: &[u8]) -> Vec<u8> {
    let mut w = Writer::new();
    w.string(body);
    w.into_bytes()
}

/// A request from a client to the agent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Request {
    /// List the keys.
    RequestIdentities,
    /// Sign data with a key.
    Sign(SignRequest),
    /// Add a key, with constraints when sent as `ADD_ID_CONSTRAINED`.
    AddIdentity(Box<AddIdentity>),
    /// Remove the key with this public blob.
    RemoveIdentity {
        /// The public key blob.
        key_blob: Vec<u8>,
    },
    /// Remove every key.
    RemoveAllIdentities,
    /// The SSH-1 "remove all RSA identities" message (type 9), which `ssh-add -D` still sends
    /// and OpenSSH's agent treats as remove-all.
    RemoveAllLegacy,
    /// A PKCS#11 request (opcodes 20, 21, 26). Airlock refuses these without reading them.
    Smartcard(u8),
    /// Lock the agent with a passphrase.
    Lock(Zeroizing<Vec<u8>>),
    /// Unlock the agent.
    Unlock(Zeroizing<Vec<u8>>),
    /// An extension request.
    Extension(Extension),
    /// A message type the agent does not know.
    Unknown(u8),
}

/// `SSH2_AGENTC_SIGN_REQUEST`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SignRequest {
    /// The public key blob.
    pub key_blob: Vec<u8>,
    /// The data to sign.
    pub data: Vec<u8>,
    /// Flags (`SIGN_RSA_SHA2_256`, `SIGN_RSA_SHA2_512`).
    pub flags: u32,
}

/// `SSH2_AGENTC_ADD_IDENTITY` and `SSH2_AGENTC_ADD_ID_CONSTRAINED`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AddIdentity {
    /// The private key (boxed, so moving the request never copies key bytes).
    pub key: Box<PrivateKeyMaterial>,
    /// The comment (usually the file name or user@host).
    pub comment: String,
    /// Constraints; non-empty only for `ADD_ID_CONSTRAINED`.
    pub constraints: Vec<Constraint>,
    /// Whether the message was `ADD_ID_CONSTRAINED` (kept so it re-encodes exactly).
    pub constrained: bool,
}

/// An `SSH_AGENTC_EXTENSION` request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Extension {
    /// `session-bind@openssh.com`.
    SessionBind(SessionBind),
    /// `query`: which extensions the agent supports.
    Query,
    /// Any other extension: its name and the rest of the message.
    Other {
        /// The extension name.
        name: String,
        /// The undecoded body.
        body: Vec<u8>,
    },
}

/// `session-bind@openssh.com`: binds the connection to an SSH session with a host.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SessionBind {
    /// The server's host key blob.
    pub host_key: Vec<u8>,
    /// The session identifier (the exchange hash of the first key exchange).
    pub session_id: Vec<u8>,
    /// The host key's signature over the session identifier.
    pub signature: Vec<u8>,
    /// Whether this connection is for agent forwarding (as opposed to user authentication).
    pub is_forwarding: bool,
}

/// One key in an identities answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Identity {
    /// The public key (or certificate) blob.
    pub key_blob: Vec<u8>,
    /// The comment.
    pub comment: String,
}

/// A response from the agent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Response {
    /// `SSH_AGENT_FAILURE`.
    Failure,
    /// `SSH_AGENT_SUCCESS`.
    Success,
    /// `SSH2_AGENT_IDENTITIES_ANSWER`.
    Identities(Vec<Identity>),
    /// `SSH2_AGENT_SIGN_RESPONSE` with the signature blob.
    Signature(Vec<u8>),
    /// `SSH_AGENT_EXTENSION_RESPONSE`: the extension name and the rest of the body.
    ExtensionResponse {
        /// The extension that answers.
        name: String,
        /// The rest of the body.
        body: Vec<u8>,
    },
    /// `SSH_AGENT_EXTENSION_FAILURE`.
    ExtensionFailure,
}

impl Request {
    /// Decode a frame body (the type byte and what follows, without the length prefix).
    pub fn decode(body: &[u8]) -> Result<Self, Error> {
        if body.len() > MAX_FRAME_LEN {
            return Err(Error::FrameTooLarge(body.len()));
        }
        let mut cur = Cursor::new(body);
        let kind = cur.u8().map_err(|_| Error::Empty)?;
        let req = match kind {
            t::REQUEST_IDENTITIES => Request::RequestIdentities,
            t::SIGN_REQUEST => Request::Sign(SignRequest {
                key_blob: cur.string()?.to_vec(),
                data: cur.string()?.to_vec(),
                flags: cur.u32()?,
            }),
            t::ADD_IDENTITY | t::ADD_ID_CONSTRAINED => {
                // Boxed at once: later moves of the request move a pointer, not key bytes
                // (a moved-from copy is never cleared).
                let key = Box::new(PrivateKeyMaterial::decode(&mut cur)?);
                let comment = cur.utf8("comment")?.to_owned();
                let constrained = kind == t::ADD_ID_CONSTRAINED;
                let constraints = if constrained {
                    Constraint::decode_all(&mut cur)?
                } else {
                    Vec::new()
                };
                Request::AddIdentity(Box::new(AddIdentity {
                    key,
                    comment,
                    constraints,
                    constrained,
                }))
            }
            t::REMOVE_IDENTITY => Request::RemoveIdentity {
                key_blob: cur.string()?.to_vec(),
            },
            t::REMOVE_ALL_IDENTITIES => Request::RemoveAllIdentities,
            t::REMOVE_ALL_RSA_IDENTITIES => Request::RemoveAllLegacy,
            t::ADD_SMARTCARD_KEY | t::REMOVE_SMARTCARD_KEY | t::ADD_SMARTCARD_KEY_CONSTRAINED => {
                // Never parsed: the body names a library to load, which airlock never does.
                return Ok(Request::Smartcard(kind));
            }
            t::LOCK => Request::Lock(Zeroizing::new(cur.string()?.to_vec())),
            t::UNLOCK => Request::Unlock(Zeroizing::new(cur.string()?.to_vec())),
            t::EXTENSION => {
                let name = cur.utf8("extension name")?;
                match name {
                    "session-bind@openssh.com" => {
                        Request::Extension(Extension::SessionBind(SessionBind {
                            host_key: cur.string()?.to_vec(),
                            session_id: cur.string()?.to_vec(),
                            signature: cur.string()?.to_vec(),
                            is_forwarding: cur.bool()?,
                        }))
                    }
                    "query" => Request::Extension(Extension::Query),
                    other => {
                        let body = cur.remaining().to_vec();
                        cur.bytes(body.len())?;
                        Request::Extension(Extension::Other {
                            name: other.to_owned(),
                            body,
                        })
                    }
                }
            }
            other => return Ok(Request::Unknown(other)),
        };
        cur.finish()?;
        Ok(req)
    }

    /// Encode as a complete frame, length prefix included.
    ///
    /// # Errors
    /// Only if private key material cannot be serialised.
    pub fn try_encode(&self) -> Result<Vec<u8>, Error> {
        let mut w = Writer::new();
        match self {
            Request::RequestIdentities => {
                w.u8(t::REQUEST_IDENTITIES);
            }
            Request::Sign(s) => {
                w.u8(t::SIGN_REQUEST)
                    .string(&s.key_blob)
                    .string(&s.data)
                    .u32(s.flags);
            }
            Request::AddIdentity(a) => {
                w.u8(if a.constrained {
                    t::ADD_ID_CONSTRAINED
                } else {
                    t::ADD_IDENTITY
                });
                a.key.encode(&mut w)?;
                w.string(&a.comment);
                for c in &a.constraints {
                    c.encode(&mut w);
                }
            }
            Request::RemoveIdentity { key_blob } => {
                w.u8(t::REMOVE_IDENTITY).string(key_blob);
            }
            Request::RemoveAllIdentities => {
                w.u8(t::REMOVE_ALL_IDENTITIES);
            }
            Request::RemoveAllLegacy => {
                w.u8(t::REMOVE_ALL_RSA_IDENTITIES);
            }
            Request::Smartcard(kind) | Request::Unknown(kind) => {
                w.u8(*kind);
            }
            Request::Lock(p) => {
                w.u8(t::LOCK).string(p.as_slice());
            }
            Request::Unlock(p) => {
                w.u8(t::UNLOCK).string(p.as_slice());
            }
            Request::Extension(Extension::SessionBind(b)) => {
                w.u8(t::EXTENSION)
                    .string("session-bind@openssh.com")
                    .string(&b.host_key)
                    .string(&b.session_id)
                    .string(&b.signature)
                    .bool(b.is_forwarding);
            }
            Request::Extension(Extension::Query) => {
                w.u8(t::EXTENSION).string("query");
            }
            Request::Extension(Extension::Other { name, body }) => {
                w.u8(t::EXTENSION).string(name).raw(body);
            }
        }
        Ok(frame(w.as_bytes()))
    }

    /// Encode as a complete frame. Requests without key material cannot fail; for an
    /// `AddIdentity` whose key cannot be serialised this returns an empty vector.
    pub fn encode(&self) -> Vec<u8> {
        self.try_encode().unwrap_or_default()
    }

    /// A short name for logs and the audit trail.
    pub fn operation(&self) -> &'static str {
        match self {
            Request::RequestIdentities => "list",
            Request::Sign(_) => "sign",
            Request::AddIdentity(_) => "add",
            Request::RemoveIdentity { .. } => "remove",
            Request::RemoveAllIdentities | Request::RemoveAllLegacy => "remove-all",
            Request::Smartcard(_) => "smartcard",
            Request::Lock(_) => "lock",
            Request::Unlock(_) => "unlock",
            Request::Extension(Extension::SessionBind(_)) => "session-bind",
            Request::Extension(Extension::Query) => "query",
            Request::Extension(Extension::Other { .. }) => "extension",
            Request::Unknown(_) => "unknown",
        }
    }
}

impl Response {
    /// Decode a frame body (type byte and what follows).
    pub fn decode(body: &[u8]) -> Result<Self, Error> {
        let mut cur = Cursor::new(body);
        let resp = match cur.u8().map_err(|_| Error::Empty)? {
            t::FAILURE => Response::Failure,
            t::SUCCESS => Response::Success,
            t::IDENTITIES_ANSWER => {
                let n = cur.u32()? as usize;
                // Each identity takes at least 8 bytes: refuse counts the body cannot hold.
                if n > cur.remaining().len() / 8 {
                    return Err(Error::Invalid("identity count"));
                }
                let mut ids = Vec::with_capacity(n);
                for _ in 0..n {
                    let key_blob = cur.string()?.to_vec();
                    let comment = String::from_utf8_lossy(cur.string()?).into_owned();
                    ids.push(Identity { key_blob, comment });
                }
                Response::Identities(ids)
            }
            t::SIGN_RESPONSE => Response::Signature(cur.string()?.to_vec()),
            t::EXTENSION_RESPONSE => {
                let name = cur.utf8("extension name")?.to_owned();
                let body = cur.remaining().to_vec();
                cur.bytes(body.len())?;
                Response::ExtensionResponse { name, body }
            }
            t::EXTENSION_FAILURE => Response::ExtensionFailure,
            _ => return Err(Error::Invalid("response type")),
        };
        cur.finish()?;
        Ok(resp)
    }

    /// Encode as a complete frame, length prefix included.
    pub fn encode(&self) -> Vec<u8> {
        let mut w = Writer::new();
        match self {
            Response::Failure => {
                w.u8(t::FAILURE);
            }
            Response::Success => {
                w.u8(t::SUCCESS);
            }
            Response::Identities(ids) => {
                w.u8(t::IDENTITIES_ANSWER)
                    .u32(u32::try_from(ids.len()).unwrap_or(u32::MAX));
                for id in ids {
                    w.string(&id.key_blob).string(&id.comment);
                }
            }
            Response::Signature(sig) => {
                w.u8(t::SIGN_RESPONSE).string(sig);
            }
            Response::ExtensionResponse { name, body } => {
                w.u8(t::EXTENSION_RESPONSE).string(name).raw(body);
            }
            Response::ExtensionFailure => {
                w.u8(t::EXTENSION_FAILURE);
            }
        }
        frame(w.as_bytes())
    }

    /// The answer to `query`: the extensions this agent supports, as OpenSSH encodes it.
    pub fn query_answer(extensions: &[&str]) -> Self {
        let mut w = Writer::new();
        for e in extensions {
            w.string(e);
        }
        Response::ExtensionResponse {
            name: "query".to_owned(),
            body: w.into_bytes(),
        }
    }
}
