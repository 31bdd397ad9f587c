//! The README's shell examples (issue 12, item 6): every ```sh block either runs as written,
//! in order, in a loopback setup (a laptop with `~/.ssh/id_ed25519` and a `gpu-node-01` alias
//! for a throwaway sshd), or is marked with why it does not run here: `setup` (the install and
//! test commands themselves), `interactive` (asks for passphrases or waits for the user),
//! `needs-server` (a real server or the network).
//!
//! `ssh` reads `~` from the password database, so the script runs under nss_wrapper
//! (`libnss-wrapper`, installed by `.ci/run`) with a passwd entry whose home is the test's.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

mod common;

use std::fmt::Write as _;
use std::path::Path;
use std::process::Stdio;

use airlock_test_support::{Home, KeyType, Sshd, generate_key, nss_wrapper, nss_wrapper_env};

const README: &str = include_str!("../../../README.md");

/// Why a block is not run, as the README may say it.
const NOT_RUN: &[&str] = &["setup", "interactive", "needs-server"];

struct Block {
    tag: String,
    line: usize,
    body: String,
}

/// The fenced ```sh blocks: their second word (empty: runnable), first line, text.
fn sh_blocks() -> Vec<Block> {
    let mut out = Vec::new();
    let mut current: Option<Block> = None;
    for (i, line) in README.lines().enumerate() {
        if let Some(b) = current.as_mut() {
            if line.starts_with("```") {
                out.push(current.take().unwrap());
            } else {
                b.body.push_str(line);
                b.body.push('\n');
            }
            continue;
        }
        if let Some(info) = line.strip_prefix("```") {
            let mut words = info.split_whitespace();
            if words.next() == Some("sh") {
                current = Some(Block {
                    tag: words.collect::<Vec<_>>().join(" "),
                    line: i + 1,
                    body: String::new(),
                });
            } else if !info.trim().is_empty() {
                // Another language: not a shell example.
            } else {
                panic!(
                    "README.md:{}: a fenced block without a language; say ```sh (or another language)",
                    i + 1
                );
            }
        }
    }
    assert!(current.is_none(), "README.md: an unclosed fenced block");
    out
}

#[test]
fn every_shell_example_runs_or_says_why_not() {
    let blocks = sh_blocks();
    assert!(blocks.len() >= 5, "{} blocks", blocks.len());
    for b in &blocks {
        assert!(
            b.tag.is_empty() || NOT_RUN.contains(&b.tag.as_str()),
            "README.md:{}: ```sh {}: say ```sh (runs in the loopback setup) or one of {NOT_RUN:?}",
            b.line,
            b.tag
        );
    }
    assert!(
        blocks.iter().filter(|b| b.tag.is_empty()).count() >= 2,
        "the quickstart runs"
    );
}

#[test]
fn the_runnable_examples_run_as_written() {
    let home = Home::new().unwrap();
    let server = Sshd::start().unwrap();
    let key = generate_key(&home.ssh_dir(), "id_ed25519", KeyType::Ed25519).unwrap();
    server.authorize(&key.public_key_line().unwrap()).unwrap();
    home.write_known_hosts(&server.known_hosts_line_for_address())
        .unwrap();
    // A config as a user writes it (ssh finds ~/.ssh/known_hosts and ~/.ssh/id_ed25519 in the
    // test's home through nss_wrapper).
    home.write_ssh_config(&format!(
        "Host gpu-node-01\n    HostName 127.0.0.1\n    Port {}\n    User {}\n    ForwardAgent yes\n\n\
         Host *\n    StrictHostKeyChecking yes\n    BatchMode yes\n",
        server.port(),
        server.user(),
    ))
    .unwrap();
    // A passwd entry for this uid whose home is the test's, for ssh.
    let lib =
        nss_wrapper().expect("the README test needs nss_wrapper: apt-get install libnss-wrapper");
    let nss_dir = home.path().join("nss");
    std::fs::create_dir(&nss_dir).unwrap();
    let nss = nss_wrapper_env(&lib, &nss_dir, server.user(), home.path()).unwrap();

    let mut script = String::from(
        "set -eu\n# Whatever agent the examples leave running is stopped at the end.\n\
         trap 'if [ -n \"${SSH_AGENT_PID:-}\" ]; then kill \"$SSH_AGENT_PID\"; fi' EXIT\n",
    );
    for b in sh_blocks().iter().filter(|b| b.tag.is_empty()) {
        let _ = write!(script, "# README.md:{}\n{}", b.line, b.body);
    }
    let bin = Path::new(common::EXE).parent().unwrap();
    let path = format!(
        "{}:{}",
        bin.display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let out = home
        .command("bash")
        .arg("-c")
        .arg(&script)
        .env("PATH", path)
        .envs(nss)
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "the README's examples failed:\n--- script\n{script}\n--- stdout\n{}\n--- stderr\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    // What they made is there.
    assert!(home.path().join(".ssh/airlock/ci-deploy.pub").exists());
    assert!(home.config_dir().join("airlock/policy.toml").exists());
    assert!(
        std::fs::read_to_string(home.ssh_config())
            .unwrap()
            .contains("Host gpu-node-02")
    );
    assert!(
        home.path()
            .join(".local/share/bash-completion/completions/airlock")
            .exists()
    );
}
