//! A workaround for ssh-key 0.6.7 refusing ECDSA private keys written by OpenSSH.
//!
//! OpenSSH stores the ECDSA private scalar as a minimal `mpint`, so a scalar whose top byte is
//! zero is shorter than the curve size: one P-521 key in two (the scalar's top byte is 0 or 1),
//! one P-256/P-384 key in 256. ssh-key reads exactly the curve size (`EcdsaPrivateKey::decode`)
//! and fails with "length invalid" on the others. Here the private section is rewritten with the
//! scalar at full width and handed back to ssh-key. OpenSSH accepts both widths (it trims leading
//! zeros in `sshbuf_get_bignum2_bytes_direct`), and imported files are stored as they were, so
//! nothing anyone reads changes.

use ssh_encoding::base64::{Base64, Encoding};
use ssh_encoding::{Decode, Encode};
use ssh_key::PrivateKey;
use zeroize::Zeroizing;

const MAGIC: &[u8] = b"openssh-key-v1\0";
/// Block size of the `none` cipher in the OpenSSH private key format.
const UNENCRYPTED_BLOCK: usize = 8;

/// Why the workaround did not produce a key.
#[derive(Debug)]
pub(crate) enum CompatError {
    /// The checkints differ after decryption: the passphrase is wrong.
    WrongPassphrase,
    /// The key is not one this workaround applies to, or is damaged.
    NotApplicable,
}

/// Parse an unencrypted OpenSSH private key (PEM text) whose ECDSA scalar ssh-key refuses.
pub(crate) fn parse_unencrypted(text: &str) -> Result<PrivateKey, CompatError> {
    let binary = pem_body(text)?;
    let mut reader = binary.as_slice();
    let magic = reader
        .get(..MAGIC.len())
        .ok_or(CompatError::NotApplicable)?;
    if magic != MAGIC {
        return Err(CompatError::NotApplicable);
    }
    reader = reader
        .get(MAGIC.len()..)
        .ok_or(CompatError::NotApplicable)?;
    let cipher = String::decode(&mut reader).map_err(|_| CompatError::NotApplicable)?;
    let kdf = String::decode(&mut reader).map_err(|_| CompatError::NotApplicable)?;
    let _kdf_options = Vec::<u8>::decode(&mut reader).map_err(|_| CompatError::NotApplicable)?;
    let count = u32::decode(&mut reader).map_err(|_| CompatError::NotApplicable)?;
    if cipher != "none" || kdf != "none" || count != 1 {
        return Err(CompatError::NotApplicable);
    }
    let public = Vec::<u8>::decode(&mut reader).map_err(|_| CompatError::NotApplicable)?;
    let private =
        Zeroizing::new(Vec::<u8>::decode(&mut reader).map_err(|_| CompatError::NotApplicable)?);
    let fixed = widen_private_section(&private)?;
    unencrypted_key(&public, &fixed)
}

/// Decrypt an encrypted key whose ECDSA scalar ssh-key refuses after decryption.
pub(crate) fn decrypt(key: &PrivateKey, passphrase: &[u8]) -> Result<PrivateKey, CompatError> {
    let cipher = key.cipher();
    // The authentication tag of AEAD ciphers is not reachable through ssh-key's API;
    // ssh-keygen writes aes256-ctr, which has none.
    if cipher.has_tag() {
        return Err(CompatError::NotApplicable);
    }
    let ciphertext = key
        .key_data()
        .encrypted()
        .ok_or(CompatError::NotApplicable)?;
    let (secret, iv) = key
        .kdf()
        .derive_key_and_iv(cipher, passphrase)
        .map_err(|_| CompatError::NotApplicable)?;
    let mut plain = Zeroizing::new(ciphertext.to_vec());
    cipher
        .decrypt(&secret, &iv, &mut plain, None)
        .map_err(|_| CompatError::NotApplicable)?;
    let mut reader = plain.as_slice();
    let check1 = u32::decode(&mut reader).map_err(|_| CompatError::NotApplicable)?;
    let check2 = u32::decode(&mut reader).map_err(|_| CompatError::NotApplicable)?;
    if check1 != check2 {
        return Err(CompatError::WrongPassphrase);
    }
    let public = key
        .public_key()
        .to_bytes()
        .map_err(|_| CompatError::NotApplicable)?;
    let fixed = widen_private_section(&plain)?;
    unencrypted_key(&public, &fixed)
}

fn pem_body(text: &str) -> Result<Zeroizing<Vec<u8>>, CompatError> {
    let mut inside = false;
    let mut body = Zeroizing::new(String::new());
    for line in text.lines().map(str::trim) {
        match line {
            "-----BEGIN OPENSSH PRIVATE KEY-----" => inside = true,
            "-----END OPENSSH PRIVATE KEY-----" => break,
            _ if inside => body.push_str(line),
            _ => {}
        }
    }
    Base64::decode_vec(&body)
        .map(Zeroizing::new)
        .map_err(|_| CompatError::NotApplicable)
}

/// The private section (`checkint checkint keytype fields... comment padding`) with an ECDSA
/// scalar at the full width of its curve, re-padded for the `none` cipher.
fn widen_private_section(section: &[u8]) -> Result<Zeroizing<Vec<u8>>, CompatError> {
    let bad = |_| CompatError::NotApplicable;
    let mut reader = section;
    let check1 = u32::decode(&mut reader).map_err(bad)?;
    let check2 = u32::decode(&mut reader).map_err(bad)?;
    let key_type = String::decode(&mut reader).map_err(bad)?;
    let width = match key_type.as_str() {
        "ecdsa-sha2-nistp256" => 32,
        "ecdsa-sha2-nistp384" => 48,
        "ecdsa-sha2-nistp521" => 66,
        _ => return Err(CompatError::NotApplicable),
    };
    let curve = String::decode(&mut reader).map_err(bad)?;
    let point = Vec::<u8>::decode(&mut reader).map_err(bad)?;
    let scalar = Zeroizing::new(Vec::<u8>::decode(&mut reader).map_err(bad)?);
    let comment = String::decode(&mut reader).map_err(bad)?;

    let significant = scalar
        .iter()
        .position(|b| *b != 0)
        .and_then(|start| scalar.get(start..))
        .unwrap_or_default();
    if significant.len() > width {
        return Err(CompatError::NotApplicable);
    }
    let high_bit = significant.len() == width && significant.first().is_some_and(|b| b & 0x80 != 0);
    let mut widened = Zeroizing::new(vec![0u8; width - significant.len() + usize::from(high_bit)]);
    widened.extend_from_slice(significant);

    let mut out = Zeroizing::new(Vec::with_capacity(
        section.len() + width + UNENCRYPTED_BLOCK,
    ));
    let encode = |out: &mut Vec<u8>| -> Result<(), ssh_encoding::Error> {
        check1.encode(out)?;
        check2.encode(out)?;
        key_type.encode(out)?;
        curve.encode(out)?;
        point.encode(out)?;
        widened.as_slice().encode(out)?;
        comment.encode(out)
    };
    encode(&mut out).map_err(bad)?;
    let mut pad = 1u8;
    while out.len() % UNENCRYPTED_BLOCK != 0 {
        out.push(pad);
        pad = pad.wrapping_add(1);
    }
    Ok(out)
}

/// An unencrypted OpenSSH private key (binary form) from its public blob and private section.
fn unencrypted_key(public: &[u8], private: &[u8]) -> Result<PrivateKey, CompatError> {
    let mut binary = Zeroizing::new(Vec::with_capacity(
        MAGIC.len() + public.len() + private.len() + 64,
    ));
    binary.extend_from_slice(MAGIC);
    let encode = |out: &mut Vec<u8>| -> Result<(), ssh_encoding::Error> {
        "none".encode(out)?;
        "none".encode(out)?;
        b"".as_slice().encode(out)?;
        1u32.encode(out)?;
        public.encode(out)?;
        private.encode(out)
    };
    encode(&mut binary).map_err(|_| CompatError::NotApplicable)?;
    PrivateKey::from_bytes(&binary).map_err(|_| CompatError::NotApplicable)
}

#[cfg(test)]
mod tests {
    use ssh_key::{Algorithm, EcdsaCurve, LineEnding};

    use super::*;

    /// Re-encode `key` the way OpenSSH would: the scalar as a minimal mpint.
    fn openssh_style(key: &PrivateKey) -> Zeroizing<String> {
        let bytes = key.to_bytes().unwrap();
        let mut reader = &bytes[MAGIC.len()..];
        let _ = String::decode(&mut reader).unwrap();
        let _ = String::decode(&mut reader).unwrap();
        let _ = Vec::<u8>::decode(&mut reader).unwrap();
        let _ = u32::decode(&mut reader).unwrap();
        let public = Vec::<u8>::decode(&mut reader).unwrap();
        let private = Vec::<u8>::decode(&mut reader).unwrap();
        let mut r = private.as_slice();
        let c1 = u32::decode(&mut r).unwrap();
        let c2 = u32::decode(&mut r).unwrap();
        let kt = String::decode(&mut r).unwrap();
        let curve = String::decode(&mut r).unwrap();
        let point = Vec::<u8>::decode(&mut r).unwrap();
        let scalar = Vec::<u8>::decode(&mut r).unwrap();
        let comment = String::decode(&mut r).unwrap();
        let minimal: Vec<u8> = scalar.iter().copied().skip_while(|b| *b == 0).collect();
        let minimal = if minimal.first().is_some_and(|b| b & 0x80 != 0) {
            [&[0u8][..], &minimal].concat()
        } else {
            minimal
        };
        let mut section = Vec::new();
        for v in [c1, c2] {
            v.encode(&mut section).unwrap();
        }
        kt.encode(&mut section).unwrap();
        curve.encode(&mut section).unwrap();
        point.encode(&mut section).unwrap();
        minimal.encode(&mut section).unwrap();
        comment.encode(&mut section).unwrap();
        let mut pad = 1u8;
        while section.len() % 8 != 0 {
            section.push(pad);
            pad += 1;
        }
        let mut binary = MAGIC.to_vec();
        "none".encode(&mut binary).unwrap();
        "none".encode(&mut binary).unwrap();
        b"".as_slice().encode(&mut binary).unwrap();
        1u32.encode(&mut binary).unwrap();
        public.encode(&mut binary).unwrap();
        section.encode(&mut binary).unwrap();
        let b64 = Base64::encode_string(&binary);
        let mut text = String::from("-----BEGIN OPENSSH PRIVATE KEY-----\n");
        for chunk in b64.as_bytes().chunks(70) {
            text.push_str(std::str::from_utf8(chunk).unwrap());
            text.push('\n');
        }
        text.push_str("-----END OPENSSH PRIVATE KEY-----\n");
        Zeroizing::new(text)
    }

    /// A P-521 key whose scalar's top byte is zero (one in two), as ssh-keygen would write it.
    fn short_p521() -> PrivateKey {
        loop {
            let mut key = PrivateKey::random(
                &mut rand::rngs::OsRng,
                Algorithm::Ecdsa {
                    curve: EcdsaCurve::NistP521,
                },
            )
            .unwrap();
            key.set_comment("short");
            let text = openssh_style(&key);
            if PrivateKey::from_openssh(text.as_bytes()).is_err() {
                return key;
            }
        }
    }

    #[test]
    fn reads_a_short_scalar_that_ssh_key_refuses() {
        let key = short_p521();
        let text = openssh_style(&key);
        let parsed = parse_unencrypted(&text).unwrap();
        assert_eq!(parsed.key_data(), key.key_data());
        assert_eq!(parsed.comment(), "short");
        // And the re-encoded key reads back in ssh-key itself.
        let again = parsed.to_openssh(LineEnding::LF).unwrap();
        assert_eq!(
            PrivateKey::from_openssh(again.as_bytes())
                .unwrap()
                .key_data(),
            key.key_data()
        );
    }

    #[test]
    fn other_keys_are_not_touched() {
        let key = PrivateKey::random(&mut rand::rngs::OsRng, Algorithm::Ed25519).unwrap();
        let text = key.to_openssh(LineEnding::LF).unwrap();
        assert!(matches!(
            parse_unencrypted(&text),
            Err(CompatError::NotApplicable)
        ));
        assert!(matches!(
            parse_unencrypted("garbage"),
            Err(CompatError::NotApplicable)
        ));
    }
}
