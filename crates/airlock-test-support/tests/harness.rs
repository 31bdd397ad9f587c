//! The harness against the real OpenSSH: servers start, accept keys, chain, and go away.

// The helpers outside `#[test]` functions panic with the failing command's output, like the tests.
#![allow(clippy::unwrap_used)]

use std::io::{BufRead as _, BufReader};
use std::net::TcpStream;
use std::path::Path;
use std::process::{Command, Output, Stdio};

use airlock_test_support::{
    Chain, Home, KeyType, OpenSshAgent, Sshd, client_defaults, generate_key, ssh_keygen,
};

fn check(command: &mut Command) -> Output {
    let output = command.stdin(Stdio::null()).output().unwrap();
    assert!(
        output.status.success(),
        "{command:?} exited with {}\nstdout: {}\nstderr: {}",
        output.status,
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    output
}

/// One sshd, a client config naming it `node-a`, and a key it accepts.
fn single(
    key_type: KeyType,
) -> (
    Home,
    Sshd,
    std::path::PathBuf,
    airlock_test_support::KeyPair,
) {
    let home = Home::new().unwrap();
    let sshd = Sshd::start().unwrap();
    let key = generate_key(&home.ssh_dir(), "id", key_type).unwrap();
    sshd.authorize(&key.public_key_line().unwrap()).unwrap();
    let known_hosts = home
        .write_known_hosts(&sshd.known_hosts_line("node-a"))
        .unwrap();
    let mut config = sshd.ssh_config_block("node-a", None);
    config.push_str(&client_defaults(&known_hosts));
    let config = home.write_ssh_config(&config).unwrap();
    (home, sshd, config, key)
}

fn login_with_identity_file(home: &Home, config: &Path, key: &Path) -> Output {
    check(
        home.command("ssh")
            .arg("-F")
            .arg(config)
            .arg("-i")
            .arg(key)
            .args(["-o", "IdentitiesOnly=yes", "node-a", "echo", "logged-in"]),
    )
}

#[test]
fn sshd_accepts_an_authorized_key_without_an_agent() {
    let (home, sshd, config, key) = single(KeyType::Ed25519);
    let output = login_with_identity_file(&home, &config, &key.private_key);
    assert_eq!(String::from_utf8_lossy(&output.stdout).trim(), "logged-in");
    let log = sshd.wait_for_log("Accepted publickey").unwrap();
    assert!(log.contains(&key.fingerprint().unwrap()), "{log}");
}

#[test]
fn sshd_log_shows_the_rsa_signature_algorithm() {
    let (home, sshd, config, key) = single(KeyType::Rsa3072);
    login_with_identity_file(&home, &config, &key.private_key);
    let log = sshd.wait_for_log("Accepted publickey").unwrap();
    assert!(
        log.contains("signature using rsa-sha2-512 verified"),
        "{log}"
    );
}

#[test]
fn ecdsa_keys_log_in() {
    for key_type in [KeyType::EcdsaP256, KeyType::EcdsaP384, KeyType::EcdsaP521] {
        let (home, sshd, config, key) = single(key_type);
        login_with_identity_file(&home, &config, &key.private_key);
        let log = sshd.wait_for_log("Accepted publickey").unwrap();
        assert!(log.contains(key_type.algorithm()), "{key_type}: {log}");
    }
}

#[test]
fn an_unknown_host_key_is_refused() {
    let (home, sshd, config, key) = single(KeyType::Ed25519);
    // Replace the known host with another server's key under the same name.
    let other = Sshd::start().unwrap();
    home.write_known_hosts(&other.known_hosts_line("node-a"))
        .unwrap();
    let output = home
        .command("ssh")
        .arg("-F")
        .arg(&config)
        .arg("-i")
        .arg(&key.private_key)
        .args(["node-a", "true"])
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert!(!output.status.success());
    assert!(
        String::from_utf8_lossy(&output.stderr).contains("HOST IDENTIFICATION HAS CHANGED"),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    drop(sshd);
}

#[test]
fn chain_forwards_the_openssh_agent_from_node_a_to_node_b() {
    let chain = Chain::start(&["node-a", "node-b"]).unwrap();
    let home = chain.home();
    let key = generate_key(&home.ssh_dir(), "id", KeyType::Ed25519).unwrap();
    chain.authorize(&key.public_key_line().unwrap()).unwrap();
    let agent = OpenSshAgent::start(home).unwrap();
    check(
        home.command_with_agent("ssh-add", agent.socket())
            .arg(&key.private_key),
    );

    let output = check(
        home.command_with_agent("ssh", agent.socket())
            .arg("-A")
            .args(chain.ssh_args("node-a"))
            .arg("ssh")
            .args(chain.remote_ssh_args("node-a", "node-b"))
            .args(["echo", "reached-b"]),
    );
    assert_eq!(String::from_utf8_lossy(&output.stdout).trim(), "reached-b");
    let fingerprint = key.fingerprint().unwrap();
    for node in ["node-a", "node-b"] {
        let log = chain.node(node).wait_for_log("Accepted publickey").unwrap();
        assert!(log.contains(&fingerprint), "{node}: {log}");
    }
    // Only node-a was asked to forward the agent.
    assert!(
        chain
            .node("node-a")
            .log()
            .contains("auth-agent-req@openssh.com")
    );
}

#[test]
fn chain_without_forwarding_cannot_hop() {
    let chain = Chain::start(&["node-a", "node-b"]).unwrap();
    let home = chain.home();
    let key = generate_key(&home.ssh_dir(), "id", KeyType::Ed25519).unwrap();
    chain.authorize(&key.public_key_line().unwrap()).unwrap();
    let agent = OpenSshAgent::start(home).unwrap();
    check(
        home.command_with_agent("ssh-add", agent.socket())
            .arg(&key.private_key),
    );
    let status = home
        .command_with_agent("ssh", agent.socket())
        .args(chain.ssh_args("node-a"))
        .arg("ssh")
        .args(chain.remote_ssh_args("node-a", "node-b"))
        .arg("true")
        .stdin(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .unwrap();
    assert!(!status.success(), "node-a reached node-b with no agent");
}

fn gone(pid: i32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Err(_) => true,
        // Killed and reparented, waiting for init to reap it.
        Ok(stat) => stat
            .rsplit_once(')')
            .is_some_and(|(_, rest)| rest.trim_start().starts_with('Z')),
    }
}

#[test]
fn drop_stops_sshd_and_its_sessions() {
    let (home, sshd, config, key) = single(KeyType::Ed25519);
    let port = sshd.port();
    let pid = i32::try_from(sshd.pid()).unwrap();
    let mut session = home
        .command("ssh")
        .arg("-F")
        .arg(&config)
        .arg("-i")
        .arg(&key.private_key)
        .args(["node-a", "echo $$; exec sleep 600"])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut line = String::new();
    BufReader::new(session.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let remote_pid: i32 = line.trim().parse().unwrap();
    assert!(!gone(remote_pid));

    drop(sshd);

    assert!(
        TcpStream::connect(("127.0.0.1", port)).is_err(),
        "port {port} still open"
    );
    assert!(gone(pid), "sshd {pid} still running");
    // The session was killed, not left behind; bounded wait for the signal to land.
    let mut tries = 0;
    while !gone(remote_pid) && tries < 2000 {
        std::thread::sleep(std::time::Duration::from_millis(5));
        tries += 1;
    }
    assert!(gone(remote_pid), "remote command {remote_pid} survived");
    // The client sees its connection close.
    let _ = session.wait().unwrap();
}

#[test]
fn extra_host_keys_are_listed() {
    let sshd = Sshd::builder()
        .host_key(KeyType::EcdsaP256)
        .start()
        .unwrap();
    let lines = sshd.known_hosts_line("node-a");
    assert_eq!(lines.lines().count(), 2, "{lines}");
    assert!(lines.starts_with("node-a ssh-ed25519 "));
    assert!(
        sshd.host_key_of(KeyType::EcdsaP256)
            .unwrap()
            .starts_with("ecdsa-sha2-nistp256 ")
    );
    assert!(
        sshd.known_hosts_line_for_address()
            .starts_with(&format!("[127.0.0.1]:{} ssh-ed25519 ", sshd.port()))
    );
    // The host key on disk is the one that was reported.
    let public = std::fs::read_to_string(sshd.dir().join("host-ed25519.pub")).unwrap();
    assert!(public.starts_with(&sshd.host_key_public()));
}

#[test]
fn home_command_has_only_the_isolated_environment() {
    let home = Home::new().unwrap();
    let output = check(&mut home.command("env"));
    let text = String::from_utf8(output.stdout).unwrap();
    for line in text.lines() {
        let name = line.split('=').next().unwrap();
        assert!(
            ["PATH", "LANG", "HOME"].contains(&name) || name.starts_with("XDG_"),
            "unexpected variable {line}"
        );
    }
    assert!(text.contains(&format!("HOME={}\n", home.path().display())));
    let runtime = std::fs::metadata(home.runtime_dir()).unwrap();
    assert_eq!(
        std::os::unix::fs::PermissionsExt::mode(&runtime.permissions()) & 0o777,
        0o700
    );
}

#[test]
fn ssh_keygen_reports_failures_with_stderr() {
    let error = ssh_keygen(["-l", "-f", "/nonexistent/key"]).unwrap_err();
    assert!(error.to_string().contains("/nonexistent/key"), "{error}");
}
