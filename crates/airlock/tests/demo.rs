//! `airlock demo` as a newcomer runs it (issue 12, item 4): it passes end to end in a fresh
//! home and writes nothing there, and Ctrl-C stops it at once, cleans up and exits 130.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

mod common;

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::Stdio;

use airlock_test_support::Home;
use common::EXE;

/// Every file under `dir`, relative, sorted.
fn tree(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap() {
            let e = e.unwrap();
            let p = e.path();
            out.push(p.strip_prefix(dir).unwrap().to_path_buf());
            if e.file_type().unwrap().is_dir() {
                stack.push(p);
            }
        }
    }
    out.sort();
    out
}

/// The demo directory named in the demo's second line.
fn demo_dir(line: &str) -> PathBuf {
    let start = line.find(" in ").unwrap() + 4;
    let end = line.find(';').unwrap();
    PathBuf::from(&line[start..end])
}

#[test]
fn demo_passes_and_leaves_the_home_alone() {
    let home = Home::new().unwrap();
    let before = tree(home.path());
    let out = home.command(EXE).arg("demo").output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{text}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(!text.contains("FAIL"), "{text}");
    // Each refusal is shown with the audit's reason, naming the host.
    assert!(
        text.matches("audit: ").count() >= 3 && text.contains("other-host"),
        "{text}"
    );
    assert!(text.contains("Every step behaved as intended."));
    let dir = demo_dir(text.lines().nth(1).unwrap());
    assert!(
        text.contains(&format!("removed {}", dir.display())),
        "{text}"
    );
    assert!(!dir.exists(), "{} is still there", dir.display());
    assert_eq!(tree(home.path()), before, "the demo wrote into HOME");
}

#[test]
fn ctrl_c_stops_the_demo_and_cleans_up() {
    let home = Home::new().unwrap();
    let mut child = home
        .command(EXE)
        .arg("demo")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let _title = lines.next().unwrap().unwrap();
    let dir = demo_dir(&lines.next().unwrap().unwrap());
    // Wait until the servers and the agent run.
    let mut seen = Vec::new();
    for line in lines.by_ref() {
        let line = line.unwrap();
        seen.push(line.clone());
        if line.contains("listening on") {
            break;
        }
    }
    assert!(seen.iter().any(|l| l.contains("listening on")), "{seen:?}");
    let sshd_pids = |dir: &Path| -> Vec<String> {
        let out = std::process::Command::new("pgrep")
            .args(["-f", &dir.display().to_string()])
            .output()
            .unwrap();
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .map(str::to_owned)
            .collect()
    };
    assert!(!sshd_pids(&dir).is_empty(), "no sshd of the demo runs");
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(i32::try_from(child.id()).unwrap()),
        nix::sys::signal::Signal::SIGINT,
    )
    .unwrap();
    let rest: Vec<String> = lines.map(Result::unwrap).collect();
    let status = child.wait().unwrap();
    assert_eq!(status.code(), Some(130), "{rest:?}");
    assert!(
        rest.iter()
            .any(|l| l.contains("interrupted") && l.contains("removed")),
        "{rest:?}"
    );
    assert!(!dir.exists(), "{} is still there", dir.display());
    common::eventually("the demo's servers and agent to stop", || {
        sshd_pids(&dir).is_empty()
    });
}
