//! Session binding and destination constraints, as OpenSSH's agent enforces them
//! (`ssh-agent.c`: `process_ext_session_bind`, `identity_permitted`, `match_key_hop`).

use ssh_encoding::Decode;
use ssh_key::Signature;
use ssh_key::public::KeyData;
use subtle::ConstantTimeEq;

use airlock_protocol::{
    CERT_TYPE_HOST, CertificateFields, DestinationConstraint, MAX_SESSION_ID_LEN, SessionBind,
};

use airlock_ssh_config::pattern::match_pattern;

/// At most this many binds per connection (OpenSSH's `AGENT_MAX_SESSION_IDS`).
pub const MAX_BINDS: usize = 16;

/// A host key as bound to a connection or listed in a constraint: a plain key or a certificate.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HostKey {
    /// A plain public key.
    Plain(KeyData),
    /// A host certificate.
    Certificate(Box<HostCertificate>),
}

/// A certificate as a host presents it, its CA signature verified. Parsed by airlock-protocol
/// rather than ssh-key, whose `Certificate` refuses the default "forever" validity.
#[derive(Debug, Clone)]
pub struct HostCertificate {
    fields: CertificateFields,
    blob: Vec<u8>,
}

impl PartialEq for HostCertificate {
    fn eq(&self, other: &Self) -> bool {
        self.blob == other.blob
    }
}

impl Eq for HostCertificate {}

impl HostCertificate {
    /// Parse a certificate blob and verify its CA signature (as `sshkey_froms` does).
    pub fn from_blob(blob: &[u8]) -> Option<Self> {
        let fields = CertificateFields::parse(blob).ok()?;
        let signed = blob.get(..fields.signed_len)?;
        let sig = Signature::decode(&mut &fields.signature[..]).ok()?;
        let ca = ssh_key::PublicKey::from(fields.signature_key.clone());
        signature::Verifier::verify(&ca, signed, &sig).ok()?;
        Some(Self {
            fields,
            blob: blob.to_vec(),
        })
    }

    /// The certified key.
    pub fn public_key(&self) -> &KeyData {
        &self.fields.subject
    }

    /// The CA key that signed it.
    pub fn signature_key(&self) -> &KeyData {
        &self.fields.signature_key
    }

    /// Its principals (host names); empty means any.
    pub fn valid_principals(&self) -> &[String] {
        &self.fields.principals
    }

    /// Whether it is a host certificate valid now.
    pub fn is_valid_host_certificate_now(&self) -> bool {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        self.fields.kind == CERT_TYPE_HOST && self.fields.valid_at(now)
    }
}

impl HostKey {
    /// Parse a key blob; a certificate's CA signature is verified, as `sshkey_froms` does.
    pub fn from_blob(blob: &[u8]) -> Option<Self> {
        let alg = std::str::from_utf8(airlock_protocol::Cursor::new(blob).string().ok()?).ok()?;
        if alg.ends_with("-cert-v01@openssh.com") {
            HostCertificate::from_blob(blob).map(|c| HostKey::Certificate(Box::new(c)))
        } else {
            KeyData::decode(&mut &blob[..]).ok().map(HostKey::Plain)
        }
    }

    /// The public key itself (a certificate's subject key).
    pub fn key_data(&self) -> &KeyData {
        match self {
            HostKey::Plain(k) => k,
            HostKey::Certificate(c) => c.public_key(),
        }
    }

    /// The SHA256 fingerprint of the key, as `ssh-keygen -l` prints it.
    pub fn fingerprint(&self) -> String {
        self.key_data()
            .fingerprint(ssh_key::HashAlg::Sha256)
            .to_string()
    }
}

/// One recorded bind on a connection.
#[derive(Debug, Clone)]
pub struct Binding {
    /// The host key the session was bound to.
    pub host_key: HostKey,
    /// Its SHA256 fingerprint, computed once at bind time.
    pub fingerprint: String,
    /// The session identifier.
    pub session_id: Vec<u8>,
    /// Whether the bind was for a forwarded agent connection.
    pub forwarded: bool,
}

impl Binding {
    /// A bind of `session_id` to `host_key`.
    pub fn new(host_key: HostKey, session_id: Vec<u8>, forwarded: bool) -> Self {
        Self {
            fingerprint: host_key.fingerprint(),
            host_key,
            session_id,
            forwarded,
        }
    }
}

/// What the agent knows about one client connection's SSH sessions.
#[derive(Debug, Clone, Default)]
pub struct SessionState {
    /// Successful binds, in order: the hop chain from this machine.
    pub binds: Vec<Binding>,
    /// Whether any bind was attempted (a failed one leaves this set with no binds).
    pub bind_attempted: bool,
}

/// Why a session bind was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BindError {
    /// The host key blob could not be parsed.
    #[error("unparseable host key")]
    HostKey,
    /// The session ID is longer than 128 bytes.
    #[error("session ID too long")]
    SessionIdTooLong,
    /// The host key's signature over the session ID does not verify.
    #[error("bad signature on session ID")]
    BadSignature,
    /// A bind after an authentication bind.
    #[error("bind after a bind for authentication")]
    AfterAuthentication,
    /// The same session ID was bound to another key.
    #[error("session ID already bound to a different key")]
    SessionIdReused,
    /// More than 16 binds.
    #[error("too many session binds")]
    TooMany,
}

impl SessionState {
    /// Process a `session-bind@openssh.com` request.
    pub fn bind(&mut self, req: &SessionBind) -> Result<(), BindError> {
        self.bind_attempted = true;
        let host_key = HostKey::from_blob(&req.host_key).ok_or(BindError::HostKey)?;
        if req.session_id.len() > MAX_SESSION_ID_LEN {
            return Err(BindError::SessionIdTooLong);
        }
        let sig =
            Signature::decode(&mut &req.signature[..]).map_err(|_| BindError::BadSignature)?;
        signature::Verifier::verify(host_key.key_data(), &req.session_id, &sig)
            .map_err(|_| BindError::BadSignature)?;
        for b in &self.binds {
            if !b.forwarded {
                return Err(BindError::AfterAuthentication);
            }
            let sid_match: bool = b.session_id.ct_eq(&req.session_id).into();
            let key_match = b.host_key == host_key;
            if sid_match && key_match {
                return Ok(());
            }
            if sid_match {
                return Err(BindError::SessionIdReused);
            }
        }
        if self.binds.len() >= MAX_BINDS {
            return Err(BindError::TooMany);
        }
        self.binds.push(Binding::new(
            host_key,
            req.session_id.clone(),
            req.is_forwarding,
        ));
        Ok(())
    }

    /// Whether the connection may have come from another host: a session bind was attempted
    /// on it at all, whatever it said and whether or not it verified (OpenSSH 10's
    /// `socket_is_remote`). Local tools (`ssh-add`) never bind, and a client on a forwarded
    /// socket can append a bind it signed itself that says "not forwarding", so neither the
    /// latest bind nor a successful one can clear the mark. Airlock refuses key management on
    /// such connections.
    pub fn is_remote(&self) -> bool {
        self.bind_attempted || !self.binds.is_empty()
    }

    /// The hop chain as host-key fingerprints, for prompts and logs.
    pub fn chain(&self) -> Vec<(String, bool)> {
        self.binds
            .iter()
            .map(|b| (b.fingerprint.clone(), b.forwarded))
            .collect()
    }
}

/// A destination constraint with its keys parsed.
#[derive(Debug, Clone)]
pub struct Destination {
    /// As received, for re-encoding and display.
    pub raw: DestinationConstraint,
    from_keys: Vec<(HostKey, bool)>,
    to_keys: Vec<(HostKey, bool)>,
}

impl Destination {
    /// Parse the keys of a constraint; `None` if any key blob is malformed.
    pub fn parse(raw: &DestinationConstraint) -> Option<Self> {
        let parse = |keys: &[airlock_protocol::HopKey]| -> Option<Vec<(HostKey, bool)>> {
            keys.iter()
                .map(|k| Some((plain_or_cert(&k.key_blob)?, k.is_ca)))
                .collect()
        };
        Some(Self {
            raw: raw.clone(),
            from_keys: parse(&raw.from.keys)?,
            to_keys: parse(&raw.to.keys)?,
        })
    }
}

/// Constraint keys are plain keys (or CA keys); parse without certificate verification.
fn plain_or_cert(blob: &[u8]) -> Option<HostKey> {
    KeyData::decode(&mut &blob[..]).ok().map(HostKey::Plain)
}

/// `match_key_hop`: does `key` match one of a hop's keys (a plain key equal to a listed non-CA
/// key, or a certificate signed by a listed CA and valid for the hop's hostname)?
fn match_key_hop(key: &HostKey, keys: &[(HostKey, bool)], hostname: &str) -> bool {
    keys.iter().any(|(listed, is_ca)| match key {
        HostKey::Plain(k) => !is_ca && listed.key_data() == k,
        HostKey::Certificate(cert) => {
            *is_ca
                && cert.signature_key() == listed.key_data()
                && cert_valid_for_host(cert, hostname)
        }
    })
}

fn cert_valid_for_host(cert: &HostCertificate, hostname: &str) -> bool {
    if !cert.is_valid_host_certificate_now() {
        return false;
    }
    cert.valid_principals().is_empty() || cert.valid_principals().iter().any(|p| p == hostname)
}

/// `permitted_by_dest_constraints`: some constraint allows the step `from → to` for `user`.
/// `from == None` is the origin; `to == None` asks whether any onward use exists.
fn permitted_step(
    dests: &[Destination],
    from: Option<&HostKey>,
    to: Option<&HostKey>,
    user: Option<&str>,
) -> bool {
    dests.iter().any(|d| {
        let from_ok = match from {
            None => d.raw.from.hostname.is_empty() && d.from_keys.is_empty(),
            Some(k) => match_key_hop(k, &d.from_keys, &d.raw.from.hostname),
        };
        if !from_ok {
            return false;
        }
        if let Some(k) = to
            && !match_key_hop(k, &d.to_keys, &d.raw.to.hostname)
        {
            return false;
        }
        match (d.raw.to.user.as_str(), user) {
            ("", _) | (_, None) => true,
            (pattern, Some(u)) => match_pattern(u, pattern),
        }
    })
}

/// Why a destination-constrained key may not be used on a connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum DestinationDenial {
    /// A session bind on this connection failed.
    #[error("a previous session bind failed on this connection")]
    FailedBind,
    /// A sign request whose last hop is a forwarding hop (someone on that host using the
    /// forwarded socket directly).
    #[error("tried to sign on a forwarding hop")]
    SignOnForwardingHop,
    /// An intermediate bind was for authentication, not forwarding.
    #[error("tried to forward through a signing bind")]
    ForwardThroughSigningBind,
    /// Some hop of the chain is not permitted by any constraint.
    #[error("not permitted for this destination")]
    NotPermitted,
    /// Listing on a forwarded connection: the key may reach this host but not go beyond it.
    #[error("permitted at this host but not beyond it")]
    NotBeyond,
}

/// `identity_permitted`: may a key with these constraints be used on this connection?
/// `user` is set for sign requests (the user of the userauth request), `None` for listing.
pub fn identity_permitted(
    dests: &[Destination],
    session: &SessionState,
    user: Option<&str>,
) -> Result<(), DestinationDenial> {
    if dests.is_empty() {
        return Ok(());
    }
    if session.bind_attempted && session.binds.is_empty() {
        return Err(DestinationDenial::FailedBind);
    }
    let Some(last) = session.binds.last() else {
        return Ok(()); // local use
    };
    let n = session.binds.len();
    let mut from: Option<&HostKey> = None;
    for (i, b) in session.binds.iter().enumerate() {
        let test_user = if i == n - 1 {
            if b.forwarded && user.is_some() {
                return Err(DestinationDenial::SignOnForwardingHop);
            }
            user
        } else {
            if !b.forwarded {
                return Err(DestinationDenial::ForwardThroughSigningBind);
            }
            None
        };
        if !permitted_step(dests, from, Some(&b.host_key), test_user) {
            return Err(DestinationDenial::NotPermitted);
        }
        from = Some(&b.host_key);
    }
    if last.forwarded && user.is_none() && !permitted_step(dests, Some(&last.host_key), None, None)
    {
        return Err(DestinationDenial::NotBeyond);
    }
    Ok(())
}
