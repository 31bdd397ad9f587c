//! RSA signatures aws-lc-rs does not make: legacy `ssh-rsa` (PKCS#1 v1.5 with SHA-1), which
//! OpenSSH's agent still makes when a client asks with no flags, and any signature with a key
//! of 1024 to 2047 bits (aws-lc-rs signs only from 2048; OpenSSH's floor is 1024). This is the
//! one place that calls aws-lc directly; aws-lc's `RSA_sign` blinds the private operation.

use aws_lc_rs::digest;

/// The hash of an RSA PKCS#1 v1.5 signature.
#[derive(Debug, Clone, Copy)]
pub enum Hash {
    /// `ssh-rsa`.
    Sha1,
    /// `rsa-sha2-256`.
    Sha256,
    /// `rsa-sha2-512`.
    Sha512,
}

/// Sign `data` with SHA-1 (`ssh-rsa`) with the PKCS#1 DER private key; `None` if aws-lc refuses.
pub fn sign_sha1(pkcs1_der: &[u8], data: &[u8]) -> Option<Vec<u8>> {
    sign(pkcs1_der, data, Hash::Sha1)
}

/// Sign `data` with the PKCS#1 DER private key and `hash`; `None` if aws-lc refuses.
#[expect(
    unsafe_code,
    reason = "aws-lc-rs has no SHA-1 or sub-2048-bit RSA signing; this calls aws-lc's RSA_sign"
)]
pub fn sign(pkcs1_der: &[u8], data: &[u8], hash: Hash) -> Option<Vec<u8>> {
    use aws_lc_sys::{
        NID_sha1, NID_sha256, NID_sha512, RSA_free, RSA_private_key_from_bytes, RSA_sign, RSA_size,
    };
    let (nid, alg) = match hash {
        Hash::Sha1 => (NID_sha1, &digest::SHA1_FOR_LEGACY_USE_ONLY),
        Hash::Sha256 => (NID_sha256, &digest::SHA256),
        Hash::Sha512 => (NID_sha512, &digest::SHA512),
    };
    let hash = digest::digest(alg, data);
    // SAFETY: the pointer and length describe a live slice; the returned RSA* is checked for
    // null, used only within this function and freed exactly once.
    unsafe {
        let rsa = RSA_private_key_from_bytes(pkcs1_der.as_ptr(), pkcs1_der.len());
        if rsa.is_null() {
            return None;
        }
        let mut sig = vec![0u8; RSA_size(rsa) as usize];
        let mut sig_len: std::os::raw::c_uint = 0;
        let ok = RSA_sign(
            nid,
            hash.as_ref().as_ptr(),
            hash.as_ref().len(),
            sig.as_mut_ptr(),
            &raw mut sig_len,
            rsa,
        );
        RSA_free(rsa);
        if ok != 1 {
            return None;
        }
        sig.truncate(sig_len as usize);
        Some(sig)
    }
}
