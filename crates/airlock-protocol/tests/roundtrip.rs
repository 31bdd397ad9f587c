//! Every captured OpenSSH frame decodes and re-encodes byte for byte, and decoding never panics
//! on arbitrary or truncated input.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    clippy::cast_possible_truncation
)]

use std::path::PathBuf;

use airlock_protocol::{
    Constraint, Extension, MAX_FRAME_LEN, PrivateKeyMaterial, Request, Response, SignedData,
    frame_length,
};
use proptest::prelude::*;

fn captures() -> Vec<(String, Vec<u8>)> {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/captures");
    let mut out: Vec<(String, Vec<u8>)> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "bin"))
        .map(|p| {
            (
                p.file_name().unwrap().to_string_lossy().into_owned(),
                std::fs::read(&p).unwrap(),
            )
        })
        .collect();
    out.sort();
    assert!(out.len() >= 50, "captures missing from {}", dir.display());
    out
}

fn body(frame: &[u8]) -> &[u8] {
    let len = frame_length(frame[..4].try_into().unwrap()).unwrap();
    assert_eq!(len, frame.len() - 4, "frame length prefix");
    &frame[4..]
}

#[test]
fn every_capture_round_trips_byte_for_byte() {
    for (name, frame) in captures() {
        if name.contains("-req-") {
            let req = Request::decode(body(&frame)).unwrap_or_else(|e| panic!("{name}: {e}"));
            assert!(
                !matches!(req, Request::Unknown(_)),
                "{name} decoded as unknown"
            );
            assert_eq!(req.try_encode().unwrap(), frame, "{name} re-encodes");
        } else {
            let resp = Response::decode(body(&frame)).unwrap_or_else(|e| panic!("{name}: {e}"));
            assert_eq!(resp.encode(), frame, "{name} re-encodes");
        }
    }
}

#[test]
fn captures_decode_to_the_expected_messages() {
    let caps = captures();
    let get = |prefix: &str| {
        let (_, f) = caps.iter().find(|(n, _)| n.starts_with(prefix)).unwrap();
        Request::decode(body(f)).unwrap()
    };
    match get("019-") {
        Request::AddIdentity(a) => assert_eq!(a.constraints, vec![Constraint::Lifetime(60)]),
        other => panic!("{other:?}"),
    }
    match get("021-") {
        Request::AddIdentity(a) => assert_eq!(a.constraints, vec![Constraint::Confirm]),
        other => panic!("{other:?}"),
    }
    match get("023-") {
        Request::AddIdentity(a) => match &a.constraints[..] {
            [Constraint::RestrictDestination(d)] => {
                assert_eq!(d.len(), 2);
                assert!(d[0].from_origin());
                assert_eq!(d[0].to.hostname, "node-a");
                assert_eq!(d[1].from.hostname, "node-a");
                assert_eq!(d[1].to.user, "root");
                assert_eq!(d[1].to.hostname, "node-b");
            }
            other => panic!("{other:?}"),
        },
        other => panic!("{other:?}"),
    }
    match get("029-") {
        Request::AddIdentity(a) => {
            assert!(matches!(*a.key, PrivateKeyMaterial::Certificate { .. }));
        }
        other => panic!("{other:?}"),
    }
    match get("031-") {
        Request::Extension(Extension::SessionBind(b)) => assert!(!b.is_forwarding),
        other => panic!("{other:?}"),
    }
    match get("037-") {
        Request::Extension(Extension::SessionBind(b)) => assert!(b.is_forwarding),
        other => panic!("{other:?}"),
    }
    match get("035-") {
        Request::Sign(s) => {
            assert_eq!(s.flags, airlock_protocol::SIGN_RSA_SHA2_512);
            assert!(matches!(
                SignedData::parse(&s.data),
                SignedData::UserAuth(_)
            ));
        }
        other => panic!("{other:?}"),
    }
    match get("015-") {
        Request::Sign(s) => match SignedData::parse(&s.data) {
            SignedData::SshSig(sig) => assert_eq!(sig.namespace, "git"),
            other => panic!("{other:?}"),
        },
        other => panic!("{other:?}"),
    }
}

#[test]
fn private_keys_never_reach_debug_output() {
    for (name, frame) in captures() {
        if let Ok(Request::AddIdentity(a)) = Request::decode(body(&frame)) {
            let dbg = format!("{a:?}");
            assert!(!dbg.contains("private"), "{name}: {dbg}");
        }
    }
}

#[test]
fn oversized_frames_are_refused_before_allocation() {
    assert!(frame_length(((MAX_FRAME_LEN + 1) as u32).to_be_bytes()).is_err());
    assert!(frame_length(u32::MAX.to_be_bytes()).is_err());
    assert!(frame_length(0u32.to_be_bytes()).is_err());
    assert_eq!(
        frame_length((MAX_FRAME_LEN as u32).to_be_bytes()).unwrap(),
        MAX_FRAME_LEN
    );
}

#[test]
fn every_truncation_of_every_capture_is_an_error_not_a_panic() {
    for (name, frame) in captures() {
        let b = body(&frame);
        for cut in 0..b.len() {
            if name.contains("-req-") {
                // A prefix is either refused or is itself a complete message (a constrained add
                // cut after its comment is one with fewer constraints): then it must re-encode
                // to exactly that prefix.
                if let Ok(r) = Request::decode(&b[..cut]) {
                    assert_eq!(
                        &r.try_encode().unwrap()[4..],
                        &b[..cut],
                        "{name} cut at {cut}: {r:?}"
                    );
                }
            } else {
                let _ = Response::decode(&b[..cut]);
            }
        }
    }
}

/// Regression (found by fuzzing): ssh-key treats the length prefix of a fixed-size field as an
/// upper bound; an Ed25519 public key claiming 11040 bytes must be refused, as OpenSSH does.
#[test]
fn key_material_with_an_inflated_field_length_is_refused() {
    let caps = captures();
    let (_, frame) = caps.iter().find(|(n, _)| n.starts_with("021-")).unwrap();
    let mut b = body(frame).to_vec();
    // type(1) + string "ssh-ed25519"(4+11) → the public key's length prefix
    assert_eq!(&b[16..20], &[0, 0, 0, 32]);
    b[18] = 0x2b;
    assert!(Request::decode(&b).is_err());
}

#[test]
fn nested_lengths_larger_than_the_frame_are_refused() {
    // sign request whose key blob claims 4 GiB
    let mut b = vec![13u8];
    b.extend_from_slice(&u32::MAX.to_be_bytes());
    b.extend_from_slice(b"abc");
    assert!(Request::decode(&b).is_err());
    // identities answer claiming a billion keys
    let mut b = vec![12u8];
    b.extend_from_slice(&1_000_000_000u32.to_be_bytes());
    assert!(Response::decode(&b).is_err());
}

proptest! {
    #[test]
    fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..2048)) {
        let _ = Request::decode(&bytes);
        let _ = Response::decode(&bytes);
        let _ = SignedData::parse(&bytes);
    }

    #[test]
    fn mutated_captures_never_panic(idx in 0usize..56, pos in any::<usize>(), val in any::<u8>()) {
        let caps = captures();
        let (_, frame) = &caps[idx % caps.len()];
        let mut b = frame[4..].to_vec();
        let p = pos % b.len();
        b[p] = val;
        match Request::decode(&b) {
            // Unknown and PKCS#11 messages are refused unread, so their bodies are not kept.
            Ok(Request::Unknown(_) | Request::Smartcard(_)) | Err(_) => {}
            // Whatever else decodes must encode back to the same bytes.
            Ok(req) => prop_assert_eq!(&req.try_encode().unwrap()[4..], &b[..]),
        }
        let _ = Response::decode(&b);
    }

    #[test]
    fn sign_requests_round_trip(key in proptest::collection::vec(any::<u8>(), 0..300),
                                data in proptest::collection::vec(any::<u8>(), 0..300),
                                flags in any::<u32>()) {
        let req = Request::Sign(airlock_protocol::SignRequest { key_blob: key, data, flags });
        let bytes = req.encode();
        prop_assert_eq!(Request::decode(&bytes[4..]).unwrap(), req);
    }
}
