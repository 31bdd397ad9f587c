//! `Response::decode` on arbitrary frame bodies: it must never panic, and whatever it accepts must
//! encode back to its input, except that identity comments are decoded lossily (a non-UTF-8
//! comment from a foreign agent is shown, not refused), so those may differ.
#![no_main]

use airlock_protocol::Response;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|body: &[u8]| {
    let Ok(response) = Response::decode(body) else {
        return;
    };
    let frame = response.encode();
    let (prefix, encoded) = frame.split_at(4);
    assert_eq!(
        u32::from_be_bytes(prefix.try_into().unwrap()) as usize,
        encoded.len()
    );
    if encoded != body {
        let lossy = matches!(&response, Response::Identities(ids)
            if ids.iter().any(|id| id.comment.contains('\u{FFFD}')));
        assert!(lossy, "{response:?} does not re-encode to its input");
    }
});
