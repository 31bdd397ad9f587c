//! `Request::decode` on arbitrary frame bodies: it must never panic, and whatever it accepts must
//! encode back to exactly the bytes it came from (the property the capture tests check on real
//! OpenSSH traffic).
//!
//! Add-identity messages are the exception: ssh-key (through ssh-encoding 0.2's
//! `Reader::read_prefixed`) accepts a fixed-size field such as an Ed25519 public key whose
//! `string` length prefix is larger than the field, so a non-canonical key encoding decodes and
//! re-encodes canonically. For those the target checks that the re-encoding decodes to the same
//! message; build with `--features strict-key-roundtrip` to demand byte equality for them too
//! (`fuzz/README.md`).
#![no_main]

use airlock_protocol::Request;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|body: &[u8]| {
    let Ok(request) = Request::decode(body) else {
        return;
    };
    let frame = match request.try_encode() {
        Ok(frame) => frame,
        Err(e) => panic!("decoded {request:?} but cannot encode it: {e}"),
    };
    let (prefix, encoded) = frame.split_at(4);
    assert_eq!(
        u32::from_be_bytes(prefix.try_into().unwrap()) as usize,
        encoded.len()
    );
    match &request {
        // Deliberately not parsed (the smartcard body names a library to load; an unknown type
        // has no known layout), so only the type byte survives.
        Request::Smartcard(_) | Request::Unknown(_) => assert_eq!(encoded, &body[..1]),
        Request::AddIdentity(_) if !cfg!(feature = "strict-key-roundtrip") => {
            let again = Request::decode(encoded).unwrap_or_else(|e| {
                panic!("{request:?} re-encodes to bytes that do not decode: {e}")
            });
            assert_eq!(
                again, request,
                "the re-encoding decodes to a different message"
            );
        }
        _ => assert_eq!(encoded, body, "{request:?} does not re-encode to its input"),
    }
});
