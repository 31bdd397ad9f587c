//! Private key material as carried by `SSH_AGENTC_ADD_IDENTITY`: OpenSSH's private key
//! serialisation (`sshkey_private_serialize`), for plain keys and for certificates.

use ssh_encoding::{Decode, Encode};
use ssh_key::private::{Ed25519Keypair, KeypairData, RsaPrivateKey};
use ssh_key::public::KeyData;
use ssh_key::{Algorithm, Mpint};

use crate::{Cursor, Error, Writer};

/// A private key as sent to the agent.
#[derive(Clone, PartialEq, Eq)]
pub enum PrivateKeyMaterial {
    /// A plain Ed25519 or RSA key: algorithm name and private fields, as ssh-key's
    /// [`KeypairData`] encodes them.
    Plain(KeypairData),
    /// A plain ECDSA key, kept as sent. (ssh-key 0.6 refuses a private scalar whose `mpint` is
    /// shorter than the curve size, which OpenSSH sends for one P-521 key in two.)
    Ecdsa {
        /// `ecdsa-sha2-nistp256`, `-nistp384` or `-nistp521`.
        algorithm: String,
        /// The curve identifier (`nistp256`, ...).
        curve: String,
        /// The public point (SEC1 uncompressed).
        public: Vec<u8>,
        /// The private scalar as the body of an `mpint` (big endian, minimal).
        private: zeroize::Zeroizing<Vec<u8>>,
    },
    /// An OpenSSH certificate with the private fields of its key.
    Certificate {
        /// The certificate algorithm, e.g. `ssh-ed25519-cert-v01@openssh.com`.
        algorithm: String,
        /// The certificate blob as sent (kept verbatim so it re-encodes byte for byte).
        cert_blob: Vec<u8>,
        /// The certificate's subject key (what it certifies).
        public: Box<KeyData>,
        /// The private fields that follow it.
        private: CertificatePrivate,
    },
}

/// The private fields that follow a certificate blob (OpenSSH omits the public part, except for
/// Ed25519 which repeats it).
#[derive(Clone, PartialEq, Eq)]
pub enum CertificatePrivate {
    /// `string pk, string sk`.
    Ed25519(Ed25519Keypair),
    /// `mpint d`.
    Ecdsa(Mpint),
    /// `mpint d, mpint iqmp, mpint p, mpint q`.
    Rsa(RsaPrivateKey),
}

impl std::fmt::Debug for PrivateKeyMaterial {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never print private material.
        match self {
            Self::Plain(k) => f
                .debug_struct("Plain")
                .field("algorithm", &k.algorithm().map(|a| a.to_string()).ok())
                .finish_non_exhaustive(),
            Self::Ecdsa { algorithm, .. } => f
                .debug_struct("Ecdsa")
                .field("algorithm", algorithm)
                .finish_non_exhaustive(),
            Self::Certificate { algorithm, .. } => f
                .debug_struct("Certificate")
                .field("algorithm", algorithm)
                .finish_non_exhaustive(),
        }
    }
}

/// ssh-key reads a fixed-size field through a length prefix it treats as an upper bound, and
/// accepts integers with superfluous leading zeros; OpenSSH refuses both. Key material is
/// accepted only if it re-encodes to exactly the bytes it was read from (found by fuzzing).
fn ensure_canonical(consumed: &[u8], reencoded: &[u8]) -> Result<(), Error> {
    if consumed == reencoded {
        Ok(())
    } else {
        Err(Error::Invalid("non-canonical key encoding"))
    }
}

fn key_err(e: impl std::fmt::Display) -> Error {
    Error::Key(e.to_string())
}

impl PrivateKeyMaterial {
    /// Decode `string keytype, <private fields>` from the cursor.
    pub fn decode(cur: &mut Cursor<'_>) -> Result<Self, Error> {
        let algorithm = cur.utf8("key type")?.to_owned();
        if algorithm.ends_with("-cert-v01@openssh.com") {
            let cert_blob = cur.string()?.to_vec();
            let (cert_type, public) = certificate_subject(&cert_blob)?;
            if cert_type != algorithm {
                return Err(Error::Invalid("certificate type does not match key type"));
            }
            let mut rest = cur.remaining();
            let private = match public.algorithm() {
                Algorithm::Ed25519 => {
                    CertificatePrivate::Ed25519(Ed25519Keypair::decode(&mut rest).map_err(key_err)?)
                }
                Algorithm::Ecdsa { .. } => {
                    CertificatePrivate::Ecdsa(Mpint::decode(&mut rest).map_err(key_err)?)
                }
                Algorithm::Rsa { .. } => {
                    CertificatePrivate::Rsa(RsaPrivateKey::decode(&mut rest).map_err(key_err)?)
                }
                other => return Err(Error::Key(unsupported_key_reason(other.as_str()))),
            };
            let used = cur.remaining().len() - rest.len();
            let consumed = cur.bytes(used)?;
            // Holds private key bytes: sized once (no reallocation leaves a copy behind) and
            // cleared when dropped.
            let mut encoded = zeroize::Zeroizing::new(Vec::with_capacity(consumed.len()));
            match &private {
                CertificatePrivate::Ed25519(k) => k.encode(&mut *encoded),
                CertificatePrivate::Ecdsa(d) => d.encode(&mut *encoded),
                CertificatePrivate::Rsa(k) => k.encode(&mut *encoded),
            }
            .map_err(key_err)?;
            ensure_canonical(consumed, &encoded)?;
            Ok(Self::Certificate {
                algorithm,
                cert_blob,
                public: Box::new(public),
                private,
            })
        } else if algorithm.starts_with("ecdsa-sha2-") {
            let curve = cur.utf8("ecdsa curve")?.to_owned();
            if algorithm.strip_prefix("ecdsa-sha2-") != Some(curve.as_str()) {
                return Err(Error::Invalid("ecdsa curve does not match key type"));
            }
            let public = cur.string()?.to_vec();
            let d = cur.string()?;
            if d.first().is_some_and(|b| b & 0x80 != 0) {
                return Err(Error::Invalid("negative ecdsa private scalar"));
            }
            Ok(Self::Ecdsa {
                algorithm,
                curve,
                public,
                private: zeroize::Zeroizing::new(d.to_vec()),
            })
        } else {
            let alg = Algorithm::new(&algorithm).map_err(key_err)?;
            let mut rest = cur.remaining();
            let data = KeypairData::decode_as(&mut rest, alg).map_err(key_err)?;
            let used = cur.remaining().len() - rest.len();
            let consumed = cur.bytes(used)?;
            // Holds private key bytes: sized once (no reallocation leaves a copy behind) and
            // cleared when dropped.
            let mut encoded = zeroize::Zeroizing::new(Vec::with_capacity(consumed.len()));
            match &data {
                KeypairData::Ed25519(k) => k.encode(&mut *encoded),
                KeypairData::Rsa(k) => k.encode(&mut *encoded),
                _ => return Err(Error::Key(unsupported_key_reason(&algorithm))),
            }
            .map_err(key_err)?;
            ensure_canonical(consumed, &encoded)?;
            Ok(Self::Plain(data))
        }
    }

    /// Encode `string keytype, <private fields>`.
    pub fn encode(&self, w: &mut Writer) -> Result<(), Error> {
        match self {
            Self::Ecdsa {
                algorithm,
                curve,
                public,
                private,
            } => {
                w.string(algorithm)
                    .string(curve)
                    .string(public)
                    .string(private.as_slice());
            }
            Self::Plain(k) => {
                let mut buf = Vec::new();
                k.encode(&mut buf).map_err(key_err)?;
                w.raw(buf);
            }
            Self::Certificate {
                algorithm,
                cert_blob,
                private,
                ..
            } => {
                w.string(algorithm).string(cert_blob);
                let mut buf = Vec::new();
                match private {
                    CertificatePrivate::Ed25519(k) => k.encode(&mut buf),
                    CertificatePrivate::Ecdsa(d) => d.encode(&mut buf),
                    CertificatePrivate::Rsa(k) => k.encode(&mut buf),
                }
                .map_err(key_err)?;
                w.raw(buf);
            }
        }
        Ok(())
    }

    /// The public key blob the agent will list for this key (the certificate blob for certs).
    pub fn public_blob(&self) -> Result<Vec<u8>, Error> {
        match self {
            Self::Plain(k) => {
                let public = ssh_key::public::KeyData::try_from(k).map_err(key_err)?;
                let mut buf = Vec::new();
                public.encode(&mut buf).map_err(key_err)?;
                Ok(buf)
            }
            Self::Ecdsa {
                algorithm,
                curve,
                public,
                ..
            } => {
                let mut w = Writer::new();
                w.string(algorithm).string(curve).string(public);
                Ok(w.into_bytes())
            }
            Self::Certificate { cert_blob, .. } => Ok(cert_blob.clone()),
        }
    }

    /// The material for an ssh-key private key, as `ssh-add` would send it: ECDSA scalars as
    /// minimal `mpint`s, like OpenSSH.
    pub fn from_keypair(key: &KeypairData) -> Self {
        if let KeypairData::Ecdsa(k) = key {
            let public = ssh_key::public::EcdsaPublicKey::from(k);
            let d = k.private_key_bytes();
            let start = d.iter().position(|b| *b != 0).unwrap_or(d.len());
            let mut private = Vec::with_capacity(d.len() + 1);
            if d.get(start).is_some_and(|b| b & 0x80 != 0) {
                private.push(0);
            }
            private.extend_from_slice(d.get(start..).unwrap_or_default());
            return Self::Ecdsa {
                algorithm: k.algorithm().to_string(),
                curve: k.curve().to_string(),
                public: public.as_sec1_bytes().to_vec(),
                private: zeroize::Zeroizing::new(private),
            };
        }
        Self::Plain(key.clone())
    }
}

/// The type and subject key of an OpenSSH certificate blob (`PROTOCOL.certkeys`), read without
/// ssh-key's `Certificate`, which in 0.6.7 refuses the "forever" validity (`valid_before` =
/// 2^64-1) that `ssh-keygen -s` writes by default. The CA signature is not checked here: an
/// agent holds certificates, it does not validate them (neither does OpenSSH's on add).
pub fn certificate_subject(blob: &[u8]) -> Result<(String, KeyData), Error> {
    let cert = CertificateFields::parse(blob)?;
    Ok((cert.cert_type, cert.subject))
}

/// `SSH2_CERT_TYPE_HOST`.
pub const CERT_TYPE_HOST: u32 = 2;

/// Every field of an OpenSSH certificate blob (`PROTOCOL.certkeys`), parsed without ssh-key's
/// `Certificate` (see [`certificate_subject`]). Checking the CA signature over
/// `blob[..signed_len]` is the caller's job.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CertificateFields {
    /// E.g. `ssh-ed25519-cert-v01@openssh.com`.
    pub cert_type: String,
    /// The certified key.
    pub subject: KeyData,
    /// The serial number.
    pub serial: u64,
    /// 1 for a user certificate, 2 ([`CERT_TYPE_HOST`]) for a host certificate.
    pub kind: u32,
    /// The key id.
    pub key_id: String,
    /// The principals (host names for a host certificate); empty means any.
    pub principals: Vec<String>,
    /// Valid from (seconds since the epoch).
    pub valid_after: u64,
    /// Valid until, exclusive (`u64::MAX`: forever).
    pub valid_before: u64,
    /// The CA key.
    pub signature_key: KeyData,
    /// The CA's signature blob.
    pub signature: Vec<u8>,
    /// How many leading bytes of the blob the signature covers.
    pub signed_len: usize,
}

impl CertificateFields {
    /// Parse a certificate blob; trailing bytes are refused.
    pub fn parse(blob: &[u8]) -> Result<Self, Error> {
        let mut c = Cursor::new(blob);
        let cert_type = c.utf8("certificate type")?.to_owned();
        let base = cert_type
            .strip_suffix("-cert-v01@openssh.com")
            .ok_or(Error::Invalid("not a certificate"))?;
        let _nonce = c.string()?;
        let mut plain = Writer::new();
        plain.string(base);
        match base {
            "ssh-ed25519" => {
                plain.string(c.string()?);
            }
            "ssh-rsa" => {
                let e = c.string()?;
                let n = c.string()?;
                plain.string(e).string(n);
            }
            b if b.starts_with("ecdsa-sha2-") => {
                let curve = c.string()?;
                let q = c.string()?;
                plain.string(curve).string(q);
            }
            other => return Err(Error::Key(unsupported_key_reason(other))),
        }
        let subject = KeyData::decode(&mut plain.as_bytes()).map_err(key_err)?;
        let serial = c.u64()?;
        let kind = c.u32()?;
        let key_id = c.utf8("certificate key id")?.to_owned();
        let mut principals = Vec::new();
        let mut packed = Cursor::new(c.string()?);
        while !packed.is_empty() {
            principals.push(packed.utf8("certificate principal")?.to_owned());
        }
        let valid_after = c.u64()?;
        let valid_before = c.u64()?;
        let _critical_options = c.string()?;
        let _extensions = c.string()?;
        let _reserved = c.string()?;
        let signature_key = KeyData::decode(&mut c.string()?).map_err(key_err)?;
        let signed_len = blob.len() - c.remaining().len();
        let signature = c.string()?.to_vec();
        c.finish()?;
        Ok(Self {
            cert_type,
            subject,
            serial,
            kind,
            key_id,
            principals,
            valid_after,
            valid_before,
            signature_key,
            signature,
            signed_len,
        })
    }

    /// Whether it is valid at `now` (seconds since the epoch).
    pub fn valid_at(&self, now: u64) -> bool {
        self.valid_after <= now && now < self.valid_before
    }
}

/// Why the agent refuses a key type, in words a user can act on.
pub fn unsupported_key_reason(algorithm: &str) -> String {
    if algorithm.contains("dss") {
        format!("{algorithm}: DSA keys are refused (OpenSSH 10 removed DSA; make an ed25519 key)")
    } else if algorithm.starts_with("sk-") {
        format!(
            "{algorithm}: FIDO security keys are not supported by airlock yet (use OpenSSH's \
             agent for them, with `airlock guard` in front)"
        )
    } else {
        format!("{algorithm}: this key type is not supported")
    }
}
