//! Started from a bare environment (`env -i`, as systemd units, cron and other languages' test
//! harnesses start `ssh-agent`), airlock finds the user's home by one rule, serves, and creates
//! nothing outside the home, the runtime directory and a private temp directory of its own.
//! And every refusal says why.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use airlock_test_support::{AirlockAgent, Home};

mod common;

use common::{EXE, run};
const USER: &str = "airlock-bare";

/// The unprivileged user the test runs airlock as, created once, and its home.
fn test_user() -> PathBuf {
    if !run(Command::new("id").arg(USER)).status.success() {
        let made = run(Command::new("useradd").args(["-m", "-s", "/bin/sh", USER]));
        // Another test process may have made it in the meantime.
        assert!(
            made.status.success() || run(Command::new("id").arg(USER)).status.success(),
            "useradd: {}",
            String::from_utf8_lossy(&made.stderr)
        );
    }
    let passwd = run(Command::new("getent").args(["passwd", USER]));
    let line = String::from_utf8_lossy(&passwd.stdout).into_owned();
    PathBuf::from(line.trim().split(':').nth(5).unwrap())
}

/// A copy of the binary the test user can run.
fn exe_for_user() -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    let exe = dir.path().join("airlock");
    std::fs::copy(EXE, &exe).unwrap();
    std::fs::set_permissions(&exe, std::fs::Permissions::from_mode(0o755)).unwrap();
    (dir, exe)
}

/// `runuser -u USER -- env -i VARS... PROGRAM ARGS...` in `/`.
fn as_user(vars: &[(&str, &str)], program: &Path, args: &[&str]) -> Output {
    let mut cmd = Command::new("runuser");
    cmd.args(["-u", USER, "--", "env", "-i"])
        .args(vars.iter().map(|(k, v)| format!("{k}={v}")))
        .arg(program)
        .args(args)
        .current_dir("/")
        .stdin(Stdio::null());
    run(&mut cmd)
}

fn value_of<'a>(out: &'a str, var: &str) -> &'a str {
    out.split(&format!("{var}="))
        .nth(1)
        .and_then(|r| r.split(';').next())
        .unwrap_or_else(|| panic!("no {var} in {out}"))
}

/// The three bare environments: nothing at all, `HOME` empty, `HOME` relative.
const BARE: [&[(&str, &str)]; 3] = [&[], &[("HOME", "")], &[("HOME", "relative/home")]];

#[test]
fn the_agent_serves_from_an_empty_environment_and_creates_nothing_outside_its_places() {
    if !nix::unistd::geteuid().is_root() {
        eprintln!("skipped: needs root to create and become an unprivileged user");
        return;
    }
    let home = test_user();
    let (_dir, exe) = exe_for_user();
    let ssh_add = which("ssh-add");
    for vars in BARE {
        let out = as_user(vars, &exe, &["agent", "-s"]);
        let said = String::from_utf8_lossy(&out.stdout).into_owned();
        assert!(
            out.status.success(),
            "{vars:?}: {said}{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let socket = PathBuf::from(value_of(&said, "SSH_AUTH_SOCK"));
        let pid: i32 = value_of(&said, "SSH_AGENT_PID").parse().unwrap();
        // As ssh-agent: a fresh private directory under /tmp, the user's own.
        let dir = socket.parent().unwrap();
        assert!(dir.starts_with("/tmp"), "{vars:?}: {}", socket.display());
        let meta = std::fs::metadata(dir).unwrap();
        assert_eq!(meta.mode() & 0o777, 0o700, "{}", dir.display());
        let listed = as_user(
            &[("SSH_AUTH_SOCK", socket.to_str().unwrap())],
            &ssh_add,
            &["-l"],
        );
        assert_eq!(
            listed.status.code(),
            Some(1),
            "{vars:?}: ssh-add -l: {}{}",
            String::from_utf8_lossy(&listed.stdout),
            String::from_utf8_lossy(&listed.stderr)
        );
        nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(pid),
            nix::sys::signal::Signal::SIGTERM,
        )
        .unwrap();
        // Nothing at the root of the filesystem or relative to `/`, no keys directory.
        for stray in ["/.ssh", "/.config", "/.local", "/relative"] {
            assert!(!Path::new(stray).exists(), "{vars:?} created {stray}");
        }
        assert!(
            !home.join(".ssh/airlock").exists(),
            "{vars:?}: starting the agent created the keys directory"
        );
    }
}

#[test]
fn every_command_finds_the_same_home_in_a_bare_environment() {
    if !nix::unistd::geteuid().is_root() {
        eprintln!("skipped: needs root to create and become an unprivileged user");
        return;
    }
    let home = test_user();
    let (_dir, exe) = exe_for_user();
    let home_s = home.display().to_string();
    for vars in BARE {
        for args in [
            &["key", "list"][..],
            &["env", "list"][..],
            &["ssh-config", "check"][..],
        ] {
            let out = as_user(vars, &exe, args);
            let said = format!(
                "{}{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            );
            // Whatever each says, any path it names is under the passwd home, never under
            // `/` or the relative value.
            for word in said.split_whitespace() {
                let word = word.trim_matches(|c: char| "()`'\",:;".contains(c));
                if word.starts_with('/') && (word.contains(".ssh") || word.contains(".conda")) {
                    assert!(
                        word.starts_with(&home_s),
                        "{vars:?} {args:?} names {word} outside {home_s}: {said}"
                    );
                }
            }
            assert!(!said.contains("relative/home"), "{vars:?} {args:?}: {said}");
            assert!(!said.contains("panicked"), "{vars:?} {args:?}: {said}");
        }
    }
}

fn which(program: &str) -> PathBuf {
    let out = run(Command::new("sh").args(["-c", &format!("command -v {program}")]));
    PathBuf::from(String::from_utf8_lossy(&out.stdout).trim())
}

/// An agent whose log (stderr, default level) goes to a file.
fn agent_with_log(home: &Home) -> (AirlockAgent, PathBuf) {
    let log = home.path().join("agent.log");
    let sock = home.runtime_dir().join("logged.sock");
    // AirlockAgent sends stderr where the test's goes; wrap it in sh to keep it in a file.
    let wrapper = home
        .write_file(
            "agent.sh",
            format!("#!/bin/sh\nexec {EXE} \"$@\" 2>>{}\n", log.display()),
        )
        .unwrap();
    std::fs::set_permissions(&wrapper, std::fs::Permissions::from_mode(0o700)).unwrap();
    let agent = AirlockAgent::start_with(home, &wrapper, &sock, &[], &[]).unwrap();
    (agent, log)
}

#[test]
fn a_1024_bit_rsa_key_is_accepted_with_a_warning_and_dsa_is_refused_saying_why() {
    let home = Home::new().unwrap();
    let (agent, log) = agent_with_log(&home);
    let rsa = home.ssh_dir().join("rsa1024");
    let made = run(Command::new("ssh-keygen")
        .args(["-q", "-t", "rsa", "-b", "1024", "-N", "", "-f"])
        .arg(&rsa));
    assert!(
        made.status.success(),
        "{}",
        String::from_utf8_lossy(&made.stderr)
    );
    let add = run(home.command_with_agent("ssh-add", agent.socket()).arg(&rsa));
    assert!(
        add.status.success(),
        "ssh-add of a 1024-bit RSA key: {}",
        String::from_utf8_lossy(&add.stderr)
    );
    // And it signs: ssh-keygen -Y sign through the agent, verified.
    let data = home.write_file("data.txt", "signed").unwrap();
    let signed = run(home
        .command_with_agent("ssh-keygen", agent.socket())
        .args(["-Y", "sign", "-n", "file", "-f"])
        .arg(rsa.with_extension("pub"))
        .arg(&data));
    assert!(
        signed.status.success(),
        "{}",
        String::from_utf8_lossy(&signed.stderr)
    );

    let dsa = home.ssh_dir().join("dsa");
    let made = run(Command::new("ssh-keygen")
        .args(["-q", "-t", "dsa", "-N", "", "-f"])
        .arg(&dsa));
    assert!(
        made.status.success(),
        "{}",
        String::from_utf8_lossy(&made.stderr)
    );
    let add = run(home.command_with_agent("ssh-add", agent.socket()).arg(&dsa));
    assert!(!add.status.success(), "a DSA key was added");

    drop(agent);
    let logged = std::fs::read_to_string(&log).unwrap();
    assert!(
        logged.contains("1024 bits"),
        "no warning for the weak key: {logged}"
    );
    assert!(
        logged.contains("DSA"),
        "the refusal does not name DSA: {logged}"
    );

    // A policy raises the floor.
    let policy = home
        .write_file(
            ".config/airlock/policy.toml",
            "[defaults]\nrsa-min-bits = 2048\n",
        )
        .unwrap();
    let strict = AirlockAgent::start_with(
        &home,
        EXE,
        &home.runtime_dir().join("strict.sock"),
        &["--policy", policy.to_str().unwrap()],
        &[],
    )
    .unwrap();
    let add = run(home
        .command_with_agent("ssh-add", strict.socket())
        .arg(&rsa));
    assert!(
        !add.status.success(),
        "rsa-min-bits = 2048 let a 1024-bit key in"
    );
}
