//! Helpers shared by the agent's integration tests (`agent.rs`, `agent_attacks.rs`,
//! `bare_env.rs`): running commands, waiting for a condition, and the agent requests a test
//! crafts by hand.

#![allow(
    dead_code,
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "each test file uses a part of these helpers; a failing helper fails its test"
)]

use std::path::PathBuf;
use std::process::{Command, Output};
use std::time::{Duration, Instant};

use airlock_protocol::{Extension, Request, SessionBind};
use airlock_test_support::Home;

/// The binary under test.
pub const EXE: &str = env!("CARGO_BIN_EXE_airlock");

pub fn run(cmd: &mut Command) -> Output {
    cmd.output()
        .unwrap_or_else(|e| panic!("cannot run {cmd:?}: {e}"))
}

/// Run `cmd`, which must succeed; its stdout.
pub fn ok(cmd: &mut Command) -> String {
    let out = run(cmd);
    assert!(
        out.status.success(),
        "{cmd:?} failed: {}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Run `cmd`, which must fail; its stderr.
pub fn fails(cmd: &mut Command) -> String {
    let out = run(cmd);
    assert!(
        !out.status.success(),
        "{cmd:?} unexpectedly succeeded: {}",
        String::from_utf8_lossy(&out.stdout)
    );
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// Wait (up to a minute, a bound and not a measurement) until `f` holds.
pub fn eventually(what: &str, mut f: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_mins(1);
    while !f() {
        assert!(Instant::now() < deadline, "never happened: {what}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// A shell script in the home, mode 0700.
pub fn write_script(home: &Home, name: &str, body: &str) -> PathBuf {
    use std::os::unix::fs::PermissionsExt;
    let path = home
        .write_file(name, format!("#!/bin/sh\n{body}\n"))
        .unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o700)).unwrap();
    path
}

/// A fresh Ed25519 key (a user key, or a host key for binds).
pub fn new_key() -> ssh_key::PrivateKey {
    ssh_key::PrivateKey::random(&mut rand::rngs::OsRng, ssh_key::Algorithm::Ed25519).unwrap()
}

/// A key's public blob, as the agent lists it.
pub fn blob(key: &ssh_key::PrivateKey) -> Vec<u8> {
    use ssh_encoding::Encode;
    let mut out = Vec::new();
    key.public_key().key_data().encode(&mut out).unwrap();
    out
}

/// A session bind to `host` that the client signs itself, as any process holding a forwarded
/// socket can.
pub fn bind(host: &ssh_key::PrivateKey, sid: &[u8], forwarding: bool) -> Request {
    use signature::Signer;
    use ssh_encoding::Encode;
    let sig: ssh_key::Signature = host.try_sign(sid).unwrap();
    let mut sig_blob = Vec::new();
    sig.encode(&mut sig_blob).unwrap();
    Request::Extension(Extension::SessionBind(SessionBind {
        host_key: blob(host),
        session_id: sid.to_vec(),
        signature: sig_blob,
        is_forwarding: forwarding,
    }))
}
