//! A new user's first hour (issue 12, items 2 and 3), through the binary: the agent starts the
//! ssh-agent way and says why when it cannot, one agent per login is one flag away, and
//! `connect` says what it did not do.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

mod common;

use std::process::Command;

use airlock_test_support::{AirlockAgent, Chain, Home, KeyType, generate_key};
use common::{EXE, fails, ok, run};

/// `SSH_AUTH_SOCK` and `SSH_AGENT_PID` from `airlock agent`'s output.
fn parse_env(out: &str) -> (String, i32) {
    let value = |name: &str| {
        out.split(&format!("{name}="))
            .nth(1)
            .and_then(|r| r.split(';').next())
            .unwrap_or_else(|| panic!("no {name} in {out:?}"))
            .to_owned()
    };
    (
        value("SSH_AUTH_SOCK"),
        value("SSH_AGENT_PID").parse().unwrap(),
    )
}

fn kill(pid: i32) {
    let _ = nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(pid),
        nix::sys::signal::Signal::SIGTERM,
    );
}

#[test]
fn the_daemonising_agent_says_why_it_cannot_start() {
    let home = Home::new().unwrap();
    // A broken policy file: named with file and line, before detaching.
    let policy = home
        .write_file(
            ".config/airlock/policy.toml",
            "[defaults]\nforward = \"sometimes\"\n",
        )
        .unwrap();
    let out = run(home.command(EXE).arg("agent"));
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains(&format!("{}:2", policy.display())) && err.contains("forward"),
        "{err}"
    );
    assert!(out.stdout.is_empty(), "no variables for a failed start");
    assert!(!err.contains("run it with -d"), "{err}");
    std::fs::remove_file(&policy).unwrap();

    // A socket in a directory that does not exist.
    let missing = home.path().join("no/such/dir/agent.sock");
    let err = fails(home.command(EXE).arg("agent").arg("-a").arg(&missing));
    assert!(err.contains("does not exist"), "{err}");
    assert!(!err.contains("os error"), "{err}");

    // A socket another agent holds.
    let sock = home.runtime_dir().join("taken.sock");
    let agent = AirlockAgent::start_with(&home, EXE, &sock, &["--no-audit"], &[]).unwrap();
    let err = fails(home.command(EXE).arg("agent").arg("-a").arg(&sock));
    assert!(err.contains("already listening"), "{err}");
    drop(agent);
}

#[test]
fn every_eval_starts_an_agent_and_reuse_shares_one() {
    let home = Home::new().unwrap();
    let first = ok(home.command(EXE).arg("agent"));
    let second = ok(home.command(EXE).arg("agent"));
    let (sock1, pid1) = parse_env(&first);
    let (sock2, pid2) = parse_env(&second);
    assert_ne!(sock1, sock2, "a second start gets a socket of its own");
    assert_ne!(pid1, pid2);
    for sock in [&sock1, &sock2] {
        // 1: the agent answers and has no keys (2 would be "cannot connect").
        let out = run(home
            .command_with_agent("ssh-add", std::path::Path::new(sock))
            .arg("-l"));
        assert_eq!(out.status.code(), Some(1), "{out:?}");
    }
    kill(pid1);
    kill(pid2);
    common::eventually("both agents to stop", || {
        !std::path::Path::new(&sock1).exists() && !std::path::Path::new(&sock2).exists()
    });

    // --reuse: the first start makes the shared agent, the next ones find it.
    let a = ok(home.command(EXE).args(["agent", "--reuse"]));
    let b = ok(home.command(EXE).args(["agent", "--reuse"]));
    let (sa, pa) = parse_env(&a);
    let (sb, pb) = parse_env(&b);
    assert_eq!((sa.as_str(), pa), (sb.as_str(), pb), "{a}\n{b}");
    assert_eq!(
        std::path::PathBuf::from(&sa),
        home.runtime_dir().join("airlock/agent.sock")
    );
    let out = run(home
        .command_with_agent("ssh-add", std::path::Path::new(&sa))
        .arg("-l"));
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    kill(pa);
    common::eventually("the shared agent to stop", || {
        !std::path::Path::new(&sa).exists()
    });

    // `airlock agent COMMAND`: a socket of its own, even when the shared name is free.
    let out = ok(home.command(EXE).args([
        "agent",
        "sh",
        "-c",
        "echo \"$SSH_AUTH_SOCK\"; ssh-add -l >/dev/null; echo $?",
    ]));
    let mut lines = out.lines();
    let sock = lines.next().unwrap();
    assert!(
        sock.contains("/airlock/agent.") && !sock.ends_with("/airlock/agent.sock"),
        "{out}"
    );
    assert_eq!(
        lines.next(),
        Some("1"),
        "the command reaches its agent: {out}"
    );
}

#[test]
fn connect_says_what_it_does_not_do() {
    let chain = Chain::start(&["gpu-node"]).unwrap();
    let home = chain.home();
    let key = generate_key(&home.ssh_dir(), "k", KeyType::Ed25519).unwrap();
    chain.authorize(&key.public_key_line().unwrap()).unwrap();
    let agent = AirlockAgent::start_with(
        home,
        EXE,
        &home.runtime_dir().join("agent.sock"),
        &["--no-audit"],
        &[],
    )
    .unwrap();
    ok(home
        .command_with_agent("ssh-add", agent.socket())
        .arg(&key.private_key));
    let remote = tempfile::tempdir().unwrap();
    let nobody = home.runtime_dir().join("nobody-here.sock");
    let connect = |socket: &std::path::Path, extra: &[&str]| {
        let mut cmd: Command = home.command(EXE);
        cmd.env("AIRLOCK_SSH_CONFIG", chain.ssh_config())
            .env("SSH_AUTH_SOCK", socket)
            .arg("connect")
            .arg("--remote-dir")
            .arg(remote.path().join("bin"))
            .arg("--agent-link")
            .arg(remote.path().join("agent.sock"))
            .args(extra);
        run(&mut cmd)
    };
    // No agent runs: said, with how to start one, and ssh runs without forwarding.
    let out = connect(&nobody, &["gpu-node", "--", "true"]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("no agent answers at") && err.contains("eval \"$(airlock agent)\""),
        "{err}"
    );
    // --env on a server without airlock: says how to put it there.
    let out = connect(agent.socket(), &["gpu-node", "--env", "x", "--", "true"]);
    assert_eq!(out.status.code(), Some(127), "{out:?}");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("airlock is not installed on this server")
            && err.contains("airlock remote install gpu-node"),
        "{err}"
    );
}
