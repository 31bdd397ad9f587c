//! The keys the agent holds, their constraints, and the lock.

use std::sync::Arc;

use ssh_key::public::KeyData;
use tokio::time::Instant;

use airlock_protocol::{Constraint, PrivateKeyMaterial};

use crate::destination::Destination;
use crate::signer::SigningKey;

/// One key in the agent.
#[derive(Debug, Clone)]
pub struct StoredKey {
    /// The blob listed to clients (the certificate blob for certificates).
    pub blob: Vec<u8>,
    /// The public key (a certificate's subject key).
    pub public: KeyData,
    /// The comment.
    pub comment: String,
    /// The SHA256 fingerprint of the public key, computed once.
    pub fingerprint: String,
    /// The private key, shared so a signature can be made without holding the store lock.
    /// Dropped (and its memory cleared by aws-lc) when the last user lets go.
    pub signer: Arc<SigningKey>,
    /// When the key is removed.
    pub expires: Option<Instant>,
    /// Whether every use must be confirmed.
    pub confirm: bool,
    /// `restrict-destination-v00@openssh.com` constraints.
    pub destinations: Vec<Destination>,
}

impl StoredKey {
    /// The SHA256 fingerprint of the public key.
    pub fn fingerprint(&self) -> String {
        self.fingerprint.clone()
    }

    /// The key as the gate sees it. The fingerprint is computed here: call once per request.
    pub fn key_ref(&self) -> crate::gate::KeyRef<'_> {
        crate::gate::KeyRef {
            fingerprint: &self.fingerprint,
            comment: &self.comment,
            confirm: self.confirm,
        }
    }

    /// The key's algorithm name, e.g. `ssh-ed25519`.
    pub fn algorithm(&self) -> String {
        self.public.algorithm().to_string()
    }
}

/// Why a key could not be added.
#[derive(Debug, thiserror::Error)]
pub enum AddError {
    /// The key cannot sign.
    #[error(transparent)]
    Signer(#[from] crate::signer::SignerError),
    /// The public key could not be derived.
    #[error("invalid key: {0}")]
    Key(String),
    /// A destination constraint names a malformed key.
    #[error("malformed destination constraint key")]
    Destination,
    /// A constraint the agent does not implement.
    #[error("unsupported constraint")]
    Unsupported,
}

/// Build a stored key from an add request. `default_lifetime` applies when the request has none.
pub fn prepare(
    material: &PrivateKeyMaterial,
    comment: &str,
    constraints: &[Constraint],
    default_lifetime: Option<std::time::Duration>,
) -> Result<StoredKey, AddError> {
    let signer = SigningKey::from_material(material)?;
    let blob = material
        .public_blob()
        .map_err(|e| AddError::Key(e.to_string()))?;
    let public = match material {
        PrivateKeyMaterial::Plain(k) => {
            KeyData::try_from(k).map_err(|e| AddError::Key(e.to_string()))?
        }
        PrivateKeyMaterial::Ecdsa { .. } => ssh_encoding::Decode::decode(&mut blob.as_slice())
            .map_err(|e: ssh_key::Error| AddError::Key(e.to_string()))?,
        PrivateKeyMaterial::Certificate { public, .. } => (**public).clone(),
    };
    let mut expires = default_lifetime.map(|d| Instant::now() + d);
    let mut confirm = false;
    let mut destinations = Vec::new();
    for c in constraints {
        match c {
            Constraint::Lifetime(secs) => {
                expires = Some(Instant::now() + std::time::Duration::from_secs(u64::from(*secs)));
            }
            Constraint::Confirm => confirm = true,
            Constraint::MaxSign(_) => return Err(AddError::Unsupported),
            Constraint::RestrictDestination(list) => {
                for d in list {
                    destinations.push(Destination::parse(d).ok_or(AddError::Destination)?);
                }
            }
        }
    }
    let fingerprint = public.fingerprint(ssh_key::HashAlg::Sha256).to_string();
    Ok(StoredKey {
        blob,
        public,
        fingerprint,
        comment: comment.to_owned(),
        signer: Arc::new(signer),
        expires,
        confirm,
        destinations,
    })
}

/// The agent's keys, in the order they were added.
#[derive(Debug, Default)]
pub struct KeyStore {
    /// Shared, so a request can hold its key (signer, constraints) without the store's lock.
    keys: Vec<Arc<StoredKey>>,
}

impl KeyStore {
    /// Drop keys whose lifetime has passed. Returns the fingerprints removed.
    pub fn expire(&mut self, now: Instant) -> Vec<String> {
        let mut gone = Vec::new();
        self.keys.retain(|k| {
            let alive = k.expires.is_none_or(|t| t > now);
            if !alive {
                gone.push(k.fingerprint());
            }
            alive
        });
        gone
    }

    /// The earliest expiry, for the reaper.
    pub fn next_expiry(&self) -> Option<Instant> {
        self.keys.iter().filter_map(|k| k.expires).min()
    }

    /// All live keys.
    pub fn keys(&self) -> &[Arc<StoredKey>] {
        &self.keys
    }

    /// Find a key by its listed blob, or by its plain public key blob.
    pub fn find(&self, blob: &[u8]) -> Option<&Arc<StoredKey>> {
        let now = Instant::now();
        self.keys
            .iter()
            .find(|k| k.blob == blob && k.expires.is_none_or(|t| t > now))
    }

    /// Add a key, or replace the constraints and comment of the same key, as OpenSSH does.
    pub fn insert(&mut self, key: StoredKey) {
        let key = Arc::new(key);
        if let Some(existing) = self.keys.iter_mut().find(|k| k.blob == key.blob) {
            *existing = key;
        } else {
            self.keys.push(key);
        }
    }

    /// Remove a key by blob; whether it was there.
    pub fn remove(&mut self, blob: &[u8]) -> bool {
        let before = self.keys.len();
        self.keys.retain(|k| k.blob != blob);
        self.keys.len() != before
    }

    /// Remove every key; how many there were.
    pub fn clear(&mut self) -> usize {
        let n = self.keys.len();
        self.keys.clear();
        n
    }
}
