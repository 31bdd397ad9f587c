//! Signing with the keys the agent holds: aws-lc-rs for every algorithm, so RSA is signed in
//! constant time (the `rsa` crate is used only to derive the CRT parameters OpenSSH's wire
//! format omits, never to sign: RUSTSEC-2023-0071).
//!
//! Keys at rest are shielded as OpenSSH shields them (`sshkey_shield_private`): the private
//! key is kept encrypted (AES-256-GCM) under a key hashed (SHA-512) from a 16 KiB random
//! pre-key of its own, locked against swap where the limit allows. It is decrypted into an
//! aws-lc key for a signature and stays so while it is in use; [`SigningKey::reshield_if_idle`]
//! drops the plain key again once it has not signed for a second (aws-lc clears what it frees).
//! Every buffer that holds private key bytes on the way is zeroized.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, PoisonError, RwLock};
use std::time::{Duration, Instant};

use aws_lc_rs::aead::{AES_256_GCM, Aad, LessSafeKey, NONCE_LEN, Nonce, UnboundKey};
use aws_lc_rs::rand::{SecureRandom as _, SystemRandom};
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
    /// The key could not be shielded or unshielded.
    #[error("cannot shield the key in memory")]
    Shield,
}

impl Inner {
    fn kind(&self) -> Kind {
        match self {
            Inner::Ed25519(_) => Kind::Ed25519,
            Inner::Ecdsa { .. } => Kind::Ecdsa,
            Inner::Rsa { pair, .. } => Kind::Rsa {
                bits: pair.public_modulus_len() * 8,
            },
            Inner::RsaShort { bits, .. } => Kind::Rsa { bits: *bits },
        }
    }
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
    /// 1024 to 2047 bits: accepted as OpenSSH accepts them, signed through aws-lc's `RSA_sign`.
    RsaShort {
        pkcs1_der: Zeroizing<Vec<u8>>,
        bits: usize,
    },
}

/// The smallest RSA modulus the agent accepts, as OpenSSH (`SSH_RSA_MINIMUM_MODULUS_SIZE`).
pub const RSA_MIN_BITS: usize = 1024;

/// Below this many bits an RSA key is accepted with a warning.
pub const RSA_WARN_BITS: usize = 2048;

/// A private key ready to sign: shielded at rest, a plain aws-lc key while in use.
pub struct SigningKey {
    shielded: Shielded,
    /// The plain key, while it is in use.
    open: RwLock<Option<Arc<Inner>>>,
    /// When it last signed, in milliseconds since `epoch`.
    last_use: AtomicU64,
    epoch: Instant,
    /// What kind of key, for `Debug` and the checks at add time (no secret).
    kind: Kind,
    rng: SystemRandom,
}

/// What is known about a key without unshielding it.
#[derive(Debug, Clone, Copy)]
enum Kind {
    Ed25519,
    Ecdsa,
    Rsa { bits: usize },
}

/// How long a key stays unshielded after its last signature.
pub const UNSHIELDED_FOR: Duration = Duration::from_secs(1);

/// Size of the random pre-key a shielding key is hashed from (OpenSSH's `SSHKEY_SHIELD_PREKEY_LEN`).
const PREKEY_LEN: usize = 16 * 1024;

/// A private key encrypted under a key hashed from its own random pre-key.
struct Shielded {
    prekey: zeroize::Zeroizing<Box<[u8]>>,
    nonce: [u8; NONCE_LEN],
    sealed: Vec<u8>,
}

impl Shielded {
    fn shielding_key(prekey: &[u8]) -> Result<LessSafeKey, SignerError> {
        let digest = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA512, prekey);
        let key = UnboundKey::new(&AES_256_GCM, digest.as_ref().get(..32).unwrap_or_default())
            .map_err(|_| SignerError::Shield)?;
        Ok(LessSafeKey::new(key))
    }

    /// Encrypt `plain` (which the caller zeroizes) under a fresh pre-key.
    fn seal(plain: &[u8], rng: &SystemRandom) -> Result<Self, SignerError> {
        let mut prekey = zeroize::Zeroizing::new(vec![0u8; PREKEY_LEN].into_boxed_slice());
        rng.fill(&mut prekey).map_err(|_| SignerError::Shield)?;
        lock_in_memory(&prekey);
        let mut nonce = [0u8; NONCE_LEN];
        rng.fill(&mut nonce).map_err(|_| SignerError::Shield)?;
        let mut sealed = Vec::with_capacity(plain.len() + AES_256_GCM.tag_len());
        sealed.extend_from_slice(plain);
        Self::shielding_key(&prekey)?
            .seal_in_place_append_tag(
                Nonce::assume_unique_for_key(nonce),
                Aad::empty(),
                &mut sealed,
            )
            .map_err(|_| SignerError::Shield)?;
        Ok(Self {
            prekey,
            nonce,
            sealed,
        })
    }

    /// The plain bytes, in a buffer cleared when dropped.
    fn open(&self) -> Result<zeroize::Zeroizing<Vec<u8>>, SignerError> {
        let mut buf = zeroize::Zeroizing::new(self.sealed.clone());
        let len = Self::shielding_key(&self.prekey)?
            .open_in_place(
                Nonce::assume_unique_for_key(self.nonce),
                Aad::empty(),
                &mut buf,
            )
            .map_err(|_| SignerError::Shield)?
            .len();
        buf.truncate(len);
        Ok(buf)
    }
}

/// Overwrite the stack below the caller: the frames of functions that just returned may have
/// held key bytes (a decoded key moved by value, a crypto library's temporaries), and a dead
/// frame is not cleared by anyone. Called after an add request and after unshielding a key,
/// never on the signing path of a key in use.
#[inline(never)]
#[expect(
    clippy::large_stack_arrays,
    reason = "the point is to overwrite that much of the stack"
)]
pub fn scrub_stack() {
    let mut below = [0u8; 64 * 1024];
    zeroize::Zeroize::zeroize(&mut below[..]);
    std::hint::black_box(&below);
}

/// Keep the pre-key out of swap where `RLIMIT_MEMLOCK` allows (it is small); without that it
/// is still only ever in this process's memory.
#[expect(unsafe_code, reason = "mlock(2) on a live buffer of ours")]
fn lock_in_memory(buf: &[u8]) {
    let Some(addr) = std::ptr::NonNull::new(buf.as_ptr().cast_mut().cast::<std::ffi::c_void>())
    else {
        return;
    };
    // SAFETY: the range is one live allocation owned by the caller; mlock only pins its pages
    // (they stay locked until unmapped or the process exits, which is harmless).
    if let Err(e) = unsafe { nix::sys::mman::mlock(addr, buf.len()) } {
        tracing::debug!("cannot lock a key's pre-key in memory: {e}");
    }
}

impl std::fmt::Debug for SigningKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SigningKey")
            .field("kind", &self.kind)
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
    /// The RSA modulus size in bits; `None` for other key types.
    pub fn rsa_bits(&self) -> Option<usize> {
        match self.kind {
            Kind::Rsa { bits } => Some(bits),
            _ => None,
        }
    }

    /// The RSA modulus size in bits, for an RSA key below [`RSA_WARN_BITS`]; `None` otherwise.
    pub fn short_rsa_bits(&self) -> Option<usize> {
        self.rsa_bits().filter(|b| *b < RSA_WARN_BITS)
    }

    /// The plain key, unshielding it if it is shielded now.
    fn unshielded(&self) -> Result<Arc<Inner>, SignerError> {
        if let Some(inner) = &*self.open.read().unwrap_or_else(PoisonError::into_inner) {
            return Ok(Arc::clone(inner));
        }
        let mut open = self.open.write().unwrap_or_else(PoisonError::into_inner);
        if let Some(inner) = &*open {
            return Ok(Arc::clone(inner));
        }
        let inner = Arc::new(self.open_shielded()?);
        scrub_stack();
        *open = Some(Arc::clone(&inner));
        Ok(inner)
    }

    #[inline(never)]
    fn open_shielded(&self) -> Result<Inner, SignerError> {
        let plain = self.shielded.open()?;
        open_plain(&plain)
    }

    /// Drop the plain key if it has not signed for [`UNSHIELDED_FOR`]: only the shielded copy
    /// stays. The agent calls this a few times a second.
    pub fn reshield_if_idle(&self) {
        let now = self.since_epoch();
        let idle = now.saturating_sub(self.last_use.load(Ordering::Relaxed));
        if u128::from(idle) < UNSHIELDED_FOR.as_millis() {
            return;
        }
        let mut open = self.open.write().unwrap_or_else(PoisonError::into_inner);
        // aws-lc clears the key's memory when the last reference is dropped.
        *open = None;
    }

    /// Whether the plain key is in memory now (for tests of the shielding).
    pub fn is_unshielded(&self) -> bool {
        self.open
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .is_some()
    }

    fn since_epoch(&self) -> u64 {
        u64::try_from(self.epoch.elapsed().as_millis()).unwrap_or(u64::MAX)
    }

    /// Build a signing key from the material of an add request.
    pub fn from_material(material: &PrivateKeyMaterial) -> Result<Self, SignerError> {
        let plain = match material {
            PrivateKeyMaterial::Plain(KeypairData::Ed25519(k)) => {
                plain_ed25519(k.private.as_ref(), k.public.as_ref())?
            }
            PrivateKeyMaterial::Plain(KeypairData::Ecdsa(k)) => {
                let public = EcdsaPublicKey::from(k);
                plain_ecdsa(k.curve(), k.private_key_bytes(), public.as_sec1_bytes())?
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
                plain_ecdsa(curve, private, public)?
            }
            PrivateKeyMaterial::Plain(KeypairData::Rsa(k)) => plain_rsa(k)?,
            PrivateKeyMaterial::Plain(other) => {
                let name = other
                    .algorithm()
                    .map_or_else(|_| "unknown".into(), |a| a.to_string());
                return Err(SignerError::Unsupported(
                    airlock_protocol::unsupported_key_reason(&name),
                ));
            }
            PrivateKeyMaterial::Certificate {
                public, private, ..
            } => match (&**public, private) {
                (KeyData::Ed25519(public), CertificatePrivate::Ed25519(k)) => {
                    if &k.public != public {
                        return Err(invalid("certificate does not match the private key"));
                    }
                    plain_ed25519(k.private.as_ref(), k.public.as_ref())?
                }
                (KeyData::Ecdsa(public), CertificatePrivate::Ecdsa(d)) => plain_ecdsa(
                    public.curve(),
                    d.as_positive_bytes().unwrap_or_default(),
                    public.as_sec1_bytes(),
                )?,
                (KeyData::Rsa(public), CertificatePrivate::Rsa(private)) => {
                    plain_rsa(&RsaKeypair {
                        public: public.clone(),
                        private: private.clone(),
                    })?
                }
                (key, _) => {
                    return Err(SignerError::Unsupported(
                        airlock_protocol::unsupported_key_reason(key.algorithm().as_str()),
                    ));
                }
            },
        };
        // Built once now, so a bad key is refused at add time; then only the shielded copy
        // is kept.
        let kind = open_plain(&plain)?.kind();
        let rng = SystemRandom::new();
        let shielded = Shielded::seal(&plain, &rng)?;
        Ok(Self {
            shielded,
            open: RwLock::new(None),
            last_use: AtomicU64::new(0),
            epoch: Instant::now(),
            kind,
            rng,
        })
    }

    /// Sign `data` as OpenSSH's `sshkey_sign` does and return the SSH signature blob
    /// (`string algorithm, string signature`). For RSA, `flags` pick SHA-256 or SHA-512; with
    /// neither, legacy `ssh-rsa` (SHA-1) is used, as OpenSSH's agent does.
    pub fn sign(&self, data: &[u8], flags: u32) -> Result<Vec<u8>, SignerError> {
        let inner = self.unshielded()?;
        self.last_use.store(self.since_epoch(), Ordering::Relaxed);
        let mut w = Writer::new();
        match &*inner {
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
            Inner::RsaShort { pkcs1_der, .. } => {
                let (hash, name) = if flags & SIGN_RSA_SHA2_256 != 0 {
                    (legacy_rsa::Hash::Sha256, "rsa-sha2-256")
                } else if flags & SIGN_RSA_SHA2_512 != 0 {
                    (legacy_rsa::Hash::Sha512, "rsa-sha2-512")
                } else {
                    (legacy_rsa::Hash::Sha1, "ssh-rsa")
                };
                let sig = legacy_rsa::sign(pkcs1_der, data, hash).ok_or(SignerError::Sign)?;
                w.string(name).string(sig);
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

/// The shielded form of an RSA key: `3 || bits (u32) || PKCS#1 DER`.
fn plain_rsa(k: &RsaKeypair) -> Result<Zeroizing<Vec<u8>>, SignerError> {
    use rsa::pkcs1::EncodeRsaPrivateKey as _;
    // Derives dP and dQ (absent from OpenSSH's format) and validates the key; no signing here.
    // (Not ssh-key's `TryFrom`, which in 0.6.7 passes `p` twice as the primes.)
    let big = |m: &ssh_key::Mpint| -> Result<rsa::BigUint, SignerError> {
        Ok(rsa::BigUint::from_bytes_be(
            m.as_positive_bytes()
                .ok_or_else(|| invalid("negative RSA component"))?,
        ))
    };
    let bits = k.public.n.as_positive_bytes().map_or(0, |n| {
        n.len() * 8 - n.first().map_or(8, |b| b.leading_zeros() as usize)
    });
    if bits < RSA_MIN_BITS {
        return Err(SignerError::Unsupported(format!(
            "RSA key of {bits} bits (the least is {RSA_MIN_BITS}, as OpenSSH)"
        )));
    }
    let mut key = rsa::RsaPrivateKey::from_components(
        big(&k.public.n)?,
        big(&k.public.e)?,
        big(&k.private.d)?,
        vec![big(&k.private.p)?, big(&k.private.q)?],
    )
    .map_err(invalid)?;
    key.precompute().map_err(invalid)?;
    let der = key.to_pkcs1_der().map_err(invalid)?;
    let der = der.as_bytes();
    let mut plain = Zeroizing::new(Vec::with_capacity(5 + der.len()));
    plain.push(3);
    plain.extend_from_slice(&u32::try_from(bits).unwrap_or(u32::MAX).to_be_bytes());
    plain.extend_from_slice(der);
    Ok(plain)
}

/// The shielded form of an Ed25519 key: `1 || seed || public`.
fn plain_ed25519(seed_and_public: &[u8], public: &[u8]) -> Result<Zeroizing<Vec<u8>>, SignerError> {
    let seed = seed_and_public
        .get(..32)
        .ok_or_else(|| invalid("short ed25519 key"))?;
    if public.len() != 32 {
        return Err(invalid("ed25519 public key of the wrong length"));
    }
    let mut plain = Zeroizing::new(Vec::with_capacity(65));
    plain.push(1);
    plain.extend_from_slice(seed);
    plain.extend_from_slice(public);
    Ok(plain)
}

/// The shielded form of an ECDSA key: `2 || curve || d (fixed length) || public (SEC1)`.
fn plain_ecdsa(
    curve: EcdsaCurve,
    private: &[u8],
    public_sec1: &[u8],
) -> Result<Zeroizing<Vec<u8>>, SignerError> {
    let (_, _, len) = ecdsa_alg(curve);
    let d = fixed_be(private, len)?;
    let id = match curve {
        EcdsaCurve::NistP256 => 0,
        EcdsaCurve::NistP384 => 1,
        EcdsaCurve::NistP521 => 2,
    };
    let mut plain = Zeroizing::new(Vec::with_capacity(2 + len + public_sec1.len()));
    plain.extend_from_slice(&[2, id]);
    plain.extend_from_slice(&d);
    plain.extend_from_slice(public_sec1);
    Ok(plain)
}

/// An aws-lc key from its shielded form.
fn open_plain(plain: &[u8]) -> Result<Inner, SignerError> {
    let bad = || invalid("corrupt shielded key");
    match plain.split_first() {
        Some((1, rest)) => ed25519(
            rest.get(..32).ok_or_else(bad)?,
            rest.get(32..).ok_or_else(bad)?,
        ),
        Some((2, rest)) => {
            let (id, rest) = rest.split_first().ok_or_else(bad)?;
            let curve = match id {
                0 => EcdsaCurve::NistP256,
                1 => EcdsaCurve::NistP384,
                _ => EcdsaCurve::NistP521,
            };
            let (_, _, len) = ecdsa_alg(curve);
            ecdsa(
                curve,
                rest.get(..len).ok_or_else(bad)?,
                rest.get(len..).ok_or_else(bad)?,
            )
        }
        Some((3, rest)) => {
            let bits = u32::from_be_bytes(
                rest.get(..4)
                    .and_then(|b| b.try_into().ok())
                    .ok_or_else(bad)?,
            ) as usize;
            let pkcs1_der = Zeroizing::new(rest.get(4..).ok_or_else(bad)?.to_vec());
            if bits < RSA_WARN_BITS {
                return Ok(Inner::RsaShort { pkcs1_der, bits });
            }
            let pair = lc::RsaKeyPair::from_der(&pkcs1_der).map_err(invalid)?;
            Ok(Inner::Rsa { pair, pkcs1_der })
        }
        _ => Err(bad()),
    }
}
