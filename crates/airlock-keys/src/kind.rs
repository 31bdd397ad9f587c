//! Key types: what `key new --type/--bits` asks for, and how an existing key is described.

use ssh_key::private::{KeypairData, RsaKeypair};
use ssh_key::public::KeyData;
use ssh_key::rand_core::CryptoRngCore;
use ssh_key::{Algorithm, EcdsaCurve, PrivateKey};

use crate::KeyError;

/// The key families `key new` makes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyFamily {
    /// Ed25519, the default: small, fast, no parameters.
    Ed25519,
    /// ECDSA on a NIST curve chosen by `--bits` (256, 384 or 521).
    Ecdsa,
    /// RSA with `--bits` (default 3072, at least 2048), for servers that accept nothing else.
    Rsa,
}

/// A fully specified key to generate.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeySpec {
    /// Ed25519.
    Ed25519,
    /// ECDSA on this curve.
    Ecdsa(EcdsaCurve),
    /// RSA with this modulus size.
    Rsa {
        /// Modulus size in bits.
        bits: u32,
    },
}

/// The RSA modulus size when `--bits` is not given; `ssh-keygen`'s default too.
pub const DEFAULT_RSA_BITS: u32 = 3072;
/// The smallest RSA modulus accepted; OpenSSH refuses smaller keys.
pub const MIN_RSA_BITS: u32 = 2048;
/// The largest RSA modulus accepted, as in `ssh-keygen`.
pub const MAX_RSA_BITS: u32 = 16_384;

impl KeySpec {
    /// Resolve a family and optional `--bits` into a spec, as `ssh-keygen -t -b` does.
    pub fn new(family: KeyFamily, bits: Option<u32>) -> Result<Self, KeyError> {
        match (family, bits) {
            (KeyFamily::Ed25519, None | Some(256)) => Ok(Self::Ed25519),
            (KeyFamily::Ed25519, Some(bits)) => Err(KeyError::InvalidBits {
                kind: "ed25519",
                bits,
                reason: "ed25519 keys have a fixed size; leave out --bits",
            }),
            (KeyFamily::Ecdsa, None | Some(256)) => Ok(Self::Ecdsa(EcdsaCurve::NistP256)),
            (KeyFamily::Ecdsa, Some(384)) => Ok(Self::Ecdsa(EcdsaCurve::NistP384)),
            (KeyFamily::Ecdsa, Some(521)) => Ok(Self::Ecdsa(EcdsaCurve::NistP521)),
            (KeyFamily::Ecdsa, Some(bits)) => Err(KeyError::InvalidBits {
                kind: "ecdsa",
                bits,
                reason: "ecdsa keys are 256, 384 or 521 bits",
            }),
            (KeyFamily::Rsa, None) => Ok(Self::Rsa {
                bits: DEFAULT_RSA_BITS,
            }),
            (KeyFamily::Rsa, Some(bits)) if bits < MIN_RSA_BITS => Err(KeyError::InvalidBits {
                kind: "rsa",
                bits,
                reason: "rsa keys must have at least 2048 bits",
            }),
            (KeyFamily::Rsa, Some(bits)) if bits > MAX_RSA_BITS => Err(KeyError::InvalidBits {
                kind: "rsa",
                bits,
                reason: "rsa keys have at most 16384 bits",
            }),
            (KeyFamily::Rsa, Some(bits)) => Ok(Self::Rsa { bits }),
        }
    }

    /// Generate a fresh, unencrypted key of this spec.
    pub fn generate(
        self,
        rng: &mut impl CryptoRngCore,
        comment: &str,
    ) -> Result<PrivateKey, KeyError> {
        let crypto = |source| KeyError::Crypto {
            action: "generate the key",
            source,
        };
        let mut key = match self {
            Self::Ed25519 => PrivateKey::random(rng, Algorithm::Ed25519).map_err(crypto)?,
            Self::Ecdsa(curve) => {
                PrivateKey::random(rng, Algorithm::Ecdsa { curve }).map_err(crypto)?
            }
            Self::Rsa { bits } => {
                let bits = usize::try_from(bits).map_err(|_| KeyError::InvalidBits {
                    kind: "rsa",
                    bits,
                    reason: "too large for this machine",
                })?;
                let keypair = RsaKeypair::random(rng, bits).map_err(crypto)?;
                PrivateKey::new(KeypairData::from(keypair), comment).map_err(crypto)?
            }
        };
        key.set_comment(comment);
        Ok(key)
    }
}

/// A short description of a key's type, as shown by `key list` and stored in metadata:
/// `ed25519`, `ecdsa-p256`, `rsa-3072`, or the algorithm name for anything else (an imported
/// `sk-ssh-ed25519@openssh.com` key, say).
pub fn describe(key: &KeyData) -> String {
    match key {
        KeyData::Ed25519(_) => "ed25519".to_owned(),
        KeyData::Ecdsa(ecdsa) => match ecdsa.curve() {
            EcdsaCurve::NistP256 => "ecdsa-p256".to_owned(),
            EcdsaCurve::NistP384 => "ecdsa-p384".to_owned(),
            EcdsaCurve::NistP521 => "ecdsa-p521".to_owned(),
        },
        KeyData::Rsa(rsa) => format!("rsa-{}", rsa_bits(rsa.n.as_bytes())),
        other => other.algorithm().as_str().to_owned(),
    }
}

/// The size in bits of a big-endian unsigned integer (an mpint's magnitude).
fn rsa_bits(bytes: &[u8]) -> usize {
    let mut significant = bytes.iter().skip_while(|b| **b == 0);
    match significant.next() {
        None => 0,
        Some(first) => {
            let rest = significant.count();
            rest * 8 + (8 - first.leading_zeros() as usize)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bits_pick_curve_and_size() {
        assert_eq!(
            KeySpec::new(KeyFamily::Ed25519, None).unwrap(),
            KeySpec::Ed25519
        );
        assert!(KeySpec::new(KeyFamily::Ed25519, Some(4096)).is_err());
        assert_eq!(
            KeySpec::new(KeyFamily::Ecdsa, None).unwrap(),
            KeySpec::Ecdsa(EcdsaCurve::NistP256)
        );
        assert_eq!(
            KeySpec::new(KeyFamily::Ecdsa, Some(384)).unwrap(),
            KeySpec::Ecdsa(EcdsaCurve::NistP384)
        );
        assert_eq!(
            KeySpec::new(KeyFamily::Ecdsa, Some(521)).unwrap(),
            KeySpec::Ecdsa(EcdsaCurve::NistP521)
        );
        assert!(KeySpec::new(KeyFamily::Ecdsa, Some(512)).is_err());
        assert_eq!(
            KeySpec::new(KeyFamily::Rsa, None).unwrap(),
            KeySpec::Rsa { bits: 3072 }
        );
        assert!(KeySpec::new(KeyFamily::Rsa, Some(1024)).is_err());
        assert!(KeySpec::new(KeyFamily::Rsa, Some(32_768)).is_err());
        assert_eq!(
            KeySpec::new(KeyFamily::Rsa, Some(4096)).unwrap(),
            KeySpec::Rsa { bits: 4096 }
        );
    }

    #[test]
    fn counts_bits_of_a_big_endian_integer() {
        assert_eq!(rsa_bits(&[]), 0);
        assert_eq!(rsa_bits(&[0, 0x80, 0]), 16);
        assert_eq!(rsa_bits(&[0x01, 0xff]), 9);
    }

    #[test]
    fn generates_each_family_with_comment() {
        let mut rng = rand::rngs::OsRng;
        for (spec, want) in [
            (KeySpec::Ed25519, "ed25519"),
            (KeySpec::Ecdsa(EcdsaCurve::NistP384), "ecdsa-p384"),
            (KeySpec::Rsa { bits: 2048 }, "rsa-2048"),
        ] {
            let key = spec.generate(&mut rng, "c@airlock").unwrap();
            assert_eq!(key.comment(), "c@airlock");
            assert_eq!(describe(key.public_key().key_data()), want);
        }
    }
}
