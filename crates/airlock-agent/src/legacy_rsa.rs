//! Legacy `ssh-rsa` (RSA PKCS#1 v1.5 with SHA-1) signatures, which OpenSSH's agent still makes
//! when a client asks with no flags. aws-lc-rs offers SHA-1 only for verification, so this is the
//! one place that calls aws-lc directly; aws-lc's `RSA_sign` blinds the private operation.

use aws_lc_rs::digest;

/// Sign `data` with the PKCS#1 DER private key; `None` if aws-lc refuses.
#[expect(
    unsafe_code,
    reason = "aws-lc-rs has no SHA-1 RSA signing; this calls aws-lc's RSA_sign"
)]
pub fn sign_sha1(pkcs1_der: &[u8], data: &[u8]) -> Option<Vec<u8>> {
    use aws_lc_sys::{NID_sha1, RSA_free, RSA_private_key_from_bytes, RSA_sign, RSA_size};
    let hash = digest::digest(&digest::SHA1_FOR_LEGACY_USE_ONLY, data);
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
            NID_sha1,
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
