//! `SignedData::parse`, the classification of sign-request data that the destination checks and
//! the policy rely on, on arbitrary bytes: it must never panic, and a user-authentication request
//! must account for every byte (re-encoding its fields gives back the input), so nothing can hide
//! behind a parsed prefix.
#![no_main]

use airlock_protocol::{SignedData, Writer};
use libfuzzer_sys::fuzz_target;

/// `SSH2_MSG_USERAUTH_REQUEST` (RFC 4252 §7).
const USERAUTH_REQUEST: u8 = 50;

fuzz_target!(|data: &[u8]| {
    match SignedData::parse(data) {
        SignedData::UserAuth(u) => {
            let mut w = Writer::new();
            w.string(&u.session_id)
                .u8(USERAUTH_REQUEST)
                .string(&u.user)
                .string(&u.service)
                .string(&u.method)
                .bool(true)
                .string(&u.algorithm)
                .string(&u.key_blob);
            if let Some(host_key) = &u.host_key {
                w.string(host_key);
            }
            assert_eq!(w.as_bytes(), data, "{u:?} does not account for its input");
            assert_eq!(
                u.host_key.is_some(),
                u.method == "publickey-hostbound-v00@openssh.com"
            );
        }
        SignedData::SshSig(s) => {
            assert!(data.starts_with(b"SSHSIG"));
            assert!(!s.namespace.is_empty());
        }
        SignedData::Other => {}
    }
});
