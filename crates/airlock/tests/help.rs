//! What the command line says about itself: shell completion scripts that the shells accept,
//! manual pages generated from the same definitions, and an `Examples:` section in the help of
//! each command people type daily.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "test code: a failed setup step should fail the test"
)]

use std::path::Path;
use std::process::{Command, Output, Stdio};

const EXE: &str = env!("CARGO_BIN_EXE_airlock");

fn airlock(args: &[&str]) -> Output {
    Command::new(EXE)
        .args(args)
        .stdin(Stdio::null())
        .output()
        .unwrap()
}

fn stdout_of(args: &[&str]) -> String {
    let out = airlock(args);
    assert!(
        out.status.success(),
        "airlock {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

/// `SHELL -n FILE`: the shell parses the script without running it.
fn shell_accepts(shell: &str, script: &Path) {
    let out = Command::new(shell)
        .arg("-n")
        .arg(script)
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("cannot run {shell}: {e}"));
    assert!(
        out.status.success(),
        "{shell} -n rejects the completion script: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

fn completion_script(shell: &str) -> (tempfile::TempDir, std::path::PathBuf, String) {
    let text = stdout_of(&["completions", shell]);
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join(format!("airlock.{shell}"));
    std::fs::write(&path, &text).unwrap();
    (dir, path, text)
}

fn on_path(program: &str) -> bool {
    std::env::var_os("PATH")
        .is_some_and(|p| std::env::split_paths(&p).any(|d| d.join(program).is_file()))
}

#[test]
fn bash_completions_parse_and_know_the_subcommands() {
    let (_dir, path, text) = completion_script("bash");
    shell_accepts("bash", &path);
    assert!(text.contains("complete -F _airlock"), "{text}");
    for word in ["ssh-config", "add-host", "completions", "--replace"] {
        assert!(text.contains(word), "bash completions lack {word}");
    }
    // Sourcing it defines the function that completes `airlock`.
    let out = Command::new("bash")
        .arg("-c")
        .arg(format!("source {} && complete -p airlock", path.display()))
        .output()
        .unwrap();
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("_airlock"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn fish_completions_parse() {
    let (_dir, path, text) = completion_script("fish");
    shell_accepts("fish", &path);
    assert!(text.contains("complete -c airlock"), "{text}");
    assert!(text.contains("add-host"), "{text}");
}

/// `zsh -n` when zsh is installed (CI installs it, see .ci/run, and there its absence is a
/// failure); without it the script is still checked for its `#compdef` header and function.
#[test]
fn zsh_completions_parse_with_zsh_or_have_the_compdef_header() {
    let (_dir, path, text) = completion_script("zsh");
    assert!(text.starts_with("#compdef airlock"), "{text}");
    assert!(text.contains("_airlock()"), "{text}");
    if on_path("zsh") {
        shell_accepts("zsh", &path);
    } else {
        assert!(
            std::env::var("CI").as_deref() != Ok("true"),
            "zsh is not installed: apt-get install zsh"
        );
        eprintln!("zsh not installed: checked only the #compdef header (apt-get install zsh)");
    }
}

/// A reader that has gone (`| head -1`) is no error and no panic.
#[test]
fn a_closed_pipe_is_not_an_error() {
    for args in [&["completions", "bash"][..], &["man"]] {
        let mut child = Command::new(EXE)
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        // The only read end closes before airlock writes: its write fails with EPIPE.
        drop(child.stdout.take());
        let out = child.wait_with_output().unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(
            out.status.success() && err.is_empty(),
            "airlock {args:?}: {err}"
        );
    }
}

#[test]
fn man_dir_that_cannot_be_made_is_a_plain_error() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("file");
    std::fs::write(&file, "").unwrap();
    let out = airlock(&["man", "--dir", file.join("man1").to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.starts_with("airlock: error: cannot write the manual pages into ")
            && err.contains("Not a directory")
            && !err.contains("os error"),
        "{err}"
    );
}

#[test]
fn unknown_shell_is_refused() {
    let out = airlock(&["completions", "tcsh"]);
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("bash") && err.contains("zsh") && err.contains("fish"),
        "{err}"
    );
}

#[test]
fn man_prints_the_main_page() {
    let page = stdout_of(&["man"]);
    assert!(page.contains("\n.TH airlock 1 "), "{page}");
    for sub in ["agent", "ssh\\-config", "completions"] {
        assert!(page.contains(sub), "the page lacks {sub}:\n{page}");
    }
}

#[test]
fn man_dir_writes_one_page_per_command_that_man_can_render() {
    let dir = tempfile::tempdir().unwrap();
    let man_dir = dir.path().join("man1");
    let out = airlock(&["man", "--dir", man_dir.to_str().unwrap()]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    for page in [
        "airlock.1",
        "airlock-agent.1",
        "airlock-key.1",
        "airlock-key-new.1",
        "airlock-ssh-config-add-host.1",
        "airlock-env-create.1",
        "airlock-completions.1",
    ] {
        assert!(man_dir.join(page).is_file(), "no {page}");
    }
    // The hidden server half of jupyter gets no page.
    assert!(!man_dir.join("airlock-jupyter-serve.1").exists());
    let page = std::fs::read_to_string(man_dir.join("airlock-key-new.1")).unwrap();
    assert!(page.contains("\\-\\-no\\-passphrase"), "{page}");
    // groff renders it without complaint (`-ww`: every warning).
    let out = Command::new("groff")
        .args(["-man", "-Tutf8", "-ww", "-z"])
        .arg(man_dir.join("airlock-key-new.1"))
        .output()
        .unwrap();
    assert!(
        out.status.success() && out.stderr.is_empty(),
        "groff: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// The commands people type daily each show examples in `--help`.
#[test]
fn daily_commands_have_examples_in_their_help() {
    for command in [
        &["agent"][..],
        &["key", "new"],
        &["key", "load"],
        &["policy", "init"],
        &["policy", "explain"],
        &["connect"],
        &["jupyter"],
        &["env", "create"],
        &["env", "lock"],
        &["env", "install"],
        &["env", "run"],
    ] {
        let mut args = command.to_vec();
        args.push("--help");
        let help = stdout_of(&args);
        let Some((_, examples)) = help.split_once("Examples:\n") else {
            panic!("airlock {command:?} --help has no Examples:\n{help}");
        };
        let name = command.join(" ");
        assert!(
            examples.contains(&format!("airlock {name}")),
            "the examples of airlock {name} do not show it:\n{examples}"
        );
    }
}
