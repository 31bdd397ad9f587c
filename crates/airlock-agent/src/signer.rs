//! Signing with the keys the agent holds: aws-lc-rs for every algorithm, so RSA is signed in
//! constant time (the `rsa` crate is used only to derive the CRT parameters OpenSSH's wire
//! format omits, never to sign: RUSTSEC-2023-0071).

use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::signature::{self as lc, KeyPair as _};
use ssh_key::EcdsaCurve;
use ssh_key::private::{KeypairData, RsaKeypair};
use ssh_key::public::{EcdsaPublicKey, KeyData};
use zeroize::Zeroizing;

use airlock_protocol::{
    CertificatePrivate, PrivateKeyMaterial, SIGN_RSA_SHA2_256, SIGN_RSA_SHA2_512, Writer,
};

use crate::legacy_rsa;

/// Why a key could not be loaded or used.
#[derive(Debug, thiserror::Error)]
pub enum SignerError {
    /// The key type is not supported for signing (DSA, FIDO keys, ...).
    #[error("unsupported key type {0}")]
    Unsupported(String),
    /// The private and public parts do not belong together, or the key is malformed.
    #[error("invalid private key: {0}")]
    Invalid(String),
    /// The crypto library refused to sign.
    #[error("signing failed")]
    Sign,
}

enum Inner {
    Ed25519(lc::Ed25519KeyPair),
    Ecdsa {
        pair: lc::EcdsaKeyPair,
        name: &'static str,
    },
    Rsa {
        pair: lc::RsaKeyPair,
        pkcs1_der: Zeroizing<Vec<u8>>,
    },
}

/// A private key ready to sign. Holds no key bytes of its own beyond what aws-lc keeps (which
/// it clears on free) and, for RSA, a zeroizing PKCS#1 copy used for legacy SHA-1 signatures.
pub struct SigningKey {
    inner: Inner,
    rng: SystemRandom,
}

impl std::fmt::Debug for SigningKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let kind = match &self.inner {
            Inner::Ed25519(_) => "ed25519",
            Inner::Ecdsa { name, .. } => name,
            Inner::Rsa { .. } => "rsa",
        };
        f.debug_struct("SigningKey")
            .field("kind", &kind)
            .finish_non_exhaustive()
    }
}

fn invalid(e: impl std::fmt::Display) -> SignerError {
    SignerError::Invalid(e.to_string())
}

/// A big-endian integer padded (or stripped of leading zeros) to exactly `len` bytes.
fn fixed_be(bytes: &[u8], len: usize) -> Result<Zeroizing<Vec<u8>>, SignerError> {
    let start = bytes.iter().position(|b| *b != 0).unwrap_or(bytes.len());
    let significant = bytes.get(start..).unwrap_or_default();
    if significant.len() > len {
        return Err(SignerError::Invalid("integer too large for curve".into()));
    }
    let mut out = Zeroizing::new(vec![0u8; len]);
    let offset = len - significant.len();
    if let Some(dst) = out.get_mut(offset..) {
        dst.copy_from_slice(significant);
    }
    Ok(out)
}

fn ecdsa_alg(curve: EcdsaCurve) -> (&'static lc::EcdsaSigningAlgorithm, &'static str, usize) {
    match curve {
        EcdsaCurve::NistP256 => (
            &lc::ECDSA_P256_SHA256_FIXED_SIGNING,
            "ecdsa-sha2-nistp256",
            32,
        ),
        EcdsaCurve::NistP384 => (
            &lc::ECDSA_P384_SHA384_FIXED_SIGNING,
            "ecdsa-sha2-nistp384",
            48,
        ),
        EcdsaCurve::NistP521 => (
            &lc::ECDSA_P521_SHA512_FIXED_SIGNING,
            "ecdsa-sha2-nistp521",
            66,
        ),
    }
}

impl SigningKey {
    /// Build a signing key from the material of an add request.
    pub fn from_material(material: &PrivateKeyMaterial) -> Result<Self, SignerError> {
        let inner = match material {
            PrivateKeyMaterial::Plain(KeypairData::Ed25519(k)) => {
                ed25519(k.private.as_ref(), k.public.as_ref())?
            }
            PrivateKeyMaterial::Plain(KeypairData::Ecdsa(k)) => {
                let public = EcdsaPublicKey::from(k);
                ecdsa(k.curve(), k.private_key_bytes(), public.as_sec1_bytes())?
            }
            PrivateKeyMaterial::Ecdsa {
                curve,
                public,
                private,
                ..
            } => {
                let curve = match curve.as_str() {
                    "nistp256" => EcdsaCurve::NistP256,
                    "nistp384" => EcdsaCurve::NistP384,
                    "nistp521" => EcdsaCurve::NistP521,
                    other => return Err(SignerError::Unsupported(format!("ecdsa curve {other}"))),
                };
                ecdsa(curve, private, public)?
            }
            PrivateKeyMaterial::Plain(KeypairData::Rsa(k)) => rsa(k)?,
            PrivateKeyMaterial::Plain(other) => {
                let name = other
                    .algorithm()
                    .map_or_else(|_| "unknown".into(), |a| a.to_string());
                return Err(SignerError::Unsupported(name));
            }
            PrivateKeyMaterial::Certificate {
                public, private, ..
            } => match (&**public, private) {
                (KeyData::Ed25519(public), CertificatePrivate::Ed25519(k)) => {
                    if &k.public != public {
                        return Err(invalid("certificate does not match the private key"));
                    }
                    ed25519(k.private.as_ref(), k.public.as_ref())?
                }
                (KeyData::Ecdsa(public), CertificatePrivate::Ecdsa(d)) => ecdsa(
                    public.curve(),
                    d.as_positive_bytes().unwrap_or_default(),
                    public.as_sec1_bytes(),
                )?,
                (KeyData::Rsa(public), CertificatePrivate::Rsa(private)) => rsa(&RsaKeypair {
                    public: public.clone(),
                    private: private.clone(),
                })?,
                (key, _) => return Err(SignerError::Unsupported(key.algorithm().to_string())),
            },
        };
        Ok(Self {
            inner,
            rng: SystemRandom::new(),
        })
    }

    /// Sign `data` as OpenSSH's `sshkey_sign` does and return the SSH signature blob
    /// (`string algorithm, string signature`). For RSA, `flags` pick SHA-256 or SHA-512; with
    /// neither, legacy `ssh-rsa` (SHA-1) is used, as OpenSSH's agent does.
    pub fn sign(&self, data: &[u8], flags: u32) -> Result<Vec<u8>, SignerError> {
        let mut w = Writer::new();
        match &self.inner {
            Inner::Ed25519(pair) => {
                let sig = pair.sign(data);
                w.string("ssh-ed25519").string(sig.as_ref());
            }
            Inner::Ecdsa { pair, name } => {
                let sig = pair.sign(&self.rng, data).map_err(|_| SignerError::Sign)?;
                let raw = sig.as_ref();
                let (r, s) = raw.split_at(raw.len() / 2);
                let mut inner = Writer::new();
                inner.string(mpint(r)).string(mpint(s));
                w.string(name).string(inner.as_bytes());
            }
            Inner::Rsa { pair, pkcs1_der } => {
                let (enc, name): (&'static lc::RsaSignatureEncoding, &str) =
                    if flags & SIGN_RSA_SHA2_256 != 0 {
                        (&lc::RSA_PKCS1_SHA256, "rsa-sha2-256")
                    } else if flags & SIGN_RSA_SHA2_512 != 0 {
                        (&lc::RSA_PKCS1_SHA512, "rsa-sha2-512")
                    } else {
                        let sig =
                            legacy_rsa::sign_sha1(pkcs1_der, data).ok_or(SignerError::Sign)?;
                        w.string("ssh-rsa").string(sig);
                        return Ok(w.into_bytes());
                    };
                let mut sig = vec![0u8; pair.public_modulus_len()];
                pair.sign(enc, &self.rng, data, &mut sig)
                    .map_err(|_| SignerError::Sign)?;
                w.string(name).string(sig);
            }
        }
        Ok(w.into_bytes())
    }
}

/// An unsigned big-endian integer as the body of an SSH `mpint` (leading zeros stripped, a zero
/// byte prepended when the top bit is set).
fn mpint(bytes: &[u8]) -> Vec<u8> {
    let start = bytes.iter().position(|b| *b != 0).unwrap_or(bytes.len());
    let v = bytes.get(start..).unwrap_or_default();
    let mut out = Vec::with_capacity(v.len() + 1);
    if v.first().is_some_and(|b| b & 0x80 != 0) {
        out.push(0);
    }
    out.extend_from_slice(v);
    out
}

fn ed25519(seed_and_public: &[u8], public: &[u8]) -> Result<Inner, SignerError> {
    let seed = seed_and_public
        .get(..32)
        .ok_or_else(|| invalid("short ed25519 key"))?;
    let pair = lc::Ed25519KeyPair::from_seed_and_public_key(seed, public).map_err(invalid)?;
    Ok(Inner::Ed25519(pair))
}

fn ecdsa(curve: EcdsaCurve, private: &[u8], public_sec1: &[u8]) -> Result<Inner, SignerError> {
    let (alg, name, len) = ecdsa_alg(curve);
    let d = fixed_be(private, len)?;
    let pair =
        lc::EcdsaKeyPair::from_private_key_and_public_key(alg, &d, public_sec1).map_err(invalid)?;
    debug_assert_eq!(pair.public_key().as_ref(), public_sec1);
    Ok(Inner::Ecdsa { pair, name })
}

fn rsa(k: &RsaKeypair) -> Result<Inner, SignerError> {
    use rsa::pkcs1::EncodeRsaPrivateKey as _;
    // Derives dP and dQ (absent from OpenSSH's format) and validates the key; no signing here.
    // (Not ssh-key's `TryFrom`, which in 0.6.7 passes `p` twice as the primes.)
    let big = |m: &ssh_key::Mpint| -> Result<rsa::BigUint, SignerError> {
        Ok(rsa::BigUint::from_bytes_be(
            m.as_positive_bytes()
                .ok_or_else(|| invalid("negative RSA component"))?,
        ))
    };
    let mut key = rsa::RsaPrivateKey::from_components(
        big(&k.public.n)?,
        big(&k.public.e)?,
        big(&k.private.d)?,
        vec![big(&k.private.p)?, big(&k.private.q)?],
    )
    .map_err(invalid)?;
    key.precompute().map_err(invalid)?;
    let der = key.to_pkcs1_der().map_err(invalid)?;
    let pkcs1_der = Zeroizing::new(der.as_bytes().to_vec());
    let pair = lc::RsaKeyPair::from_der(&pkcs1_der).map_err(invalid)?;
    Ok(Inner::Rsa { pair, pkcs1_der })
}
