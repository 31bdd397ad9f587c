//! The remote workflow on loopback with real sshd: `airlock remote install|status`,
//! `airlock connect` (forwarding only where the policy allows) and `airlock jupyter` with the
//! real JupyterLab from PyPI (installed by `.ci/run` into `target/ci-venv`).
//!
//! The "server" is this machine as the same user, so everything placed on it goes to a temp
//! directory named with `--remote-dir`, `--agent-link` and `--runtime-dir`, never to the real
//! home.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use airlock_test_support::{AirlockAgent, Chain, KeyPair, KeyType, generate_key};

const EXE: &str = env!("CARGO_BIN_EXE_airlock");

fn run(cmd: &mut Command) -> Output {
    cmd.output()
        .unwrap_or_else(|e| panic!("cannot run {cmd:?}: {e}"))
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

struct Setup {
    chain: Chain,
    key: KeyPair,
    agent: AirlockAgent,
    /// A per-test directory standing for the server's files.
    remote: tempfile::TempDir,
}

/// A chain with `gpu-node` and `other-host`, a key in an airlock agent started with `policy`
/// (a function of the chain's known_hosts and the key), or without any policy file.
fn setup(policy: Option<&dyn Fn(&Chain, &KeyPair) -> String>) -> Setup {
    let chain = Chain::start(&["gpu-node", "other-host"]).unwrap();
    let home = chain.home();
    let key = generate_key(&home.ssh_dir(), "ai-project", KeyType::Ed25519).unwrap();
    chain.authorize(&key.public_key_line().unwrap()).unwrap();
    let policy_path = home.config_dir().join("airlock/policy.toml");
    if let Some(p) = policy {
        home.write_file(".config/airlock/policy.toml", p(&chain, &key))
            .unwrap();
    }
    let audit = home.state_dir().join("airlock/audit.jsonl");
    let sock = home.runtime_dir().join("agent.sock");
    let args = [
        "--policy",
        policy_path.to_str().unwrap(),
        "--audit",
        audit.to_str().unwrap(),
    ];
    let agent = AirlockAgent::start_with(home, EXE, &sock, &args, &[]).unwrap();
    let out = run(home
        .command_with_agent("ssh-add", agent.socket())
        .arg(&key.private_key));
    assert!(out.status.success(), "{}", text(&out.stderr));
    let remote = tempfile::Builder::new()
        .prefix("airlock-remote-")
        .tempdir()
        .unwrap();
    Setup {
        chain,
        key,
        agent,
        remote,
    }
}

fn forward_through(hosts: &'static str) -> impl Fn(&Chain, &KeyPair) -> String {
    move |chain, key| {
        format!(
            "[defaults]\nforward = \"deny\"\nknown-hosts = [{kh:?}]\n\n[[key]]\nfingerprint = \
             {fp:?}\nforward-through = {hosts}\nuse-for = [\"gpu-node\", \"other-host\"]\n",
            kh = chain.known_hosts().display().to_string(),
            fp = key.fingerprint().unwrap(),
        )
    }
}

impl Setup {
    /// `airlock ARGS` with the agent in `SSH_AUTH_SOCK` (for plain `ssh` runs by airlock) and
    /// the chain's config in `AIRLOCK_SSH_CONFIG`.
    fn airlock(&self, args: &[&str]) -> Command {
        let mut cmd = self
            .chain
            .home()
            .command_with_agent(EXE, self.agent.socket());
        cmd.env("AIRLOCK_SSH_CONFIG", self.chain.ssh_config())
            .env("AIRLOCK_AGENT_SOCK", self.agent.socket())
            .args(args);
        cmd
    }

    fn bin_dir(&self) -> PathBuf {
        self.remote.path().join("bin")
    }

    fn remote_dir_arg(&self) -> String {
        self.bin_dir().to_str().unwrap().to_owned()
    }

    fn install(&self) -> Output {
        run(&mut self.airlock(&[
            "remote",
            "install",
            "gpu-node",
            "--remote-dir",
            &self.remote_dir_arg(),
        ]))
    }

    fn status(&self) -> Output {
        run(&mut self.airlock(&[
            "remote",
            "status",
            "gpu-node",
            "--remote-dir",
            &self.remote_dir_arg(),
        ]))
    }
}

fn assert_ok(out: &Output) -> String {
    assert!(
        out.status.success(),
        "status {:?}\nstdout: {}\nstderr: {}",
        out.status,
        text(&out.stdout),
        text(&out.stderr)
    );
    text(&out.stdout)
}

fn same_file(a: &Path, b: &Path) -> bool {
    std::fs::read(a).unwrap() == std::fs::read(b).unwrap()
}

#[test]
fn remote_install_is_fresh_then_idempotent_and_status_shows_it() {
    let s = setup(None);
    let out = s.status();
    assert_eq!(out.status.code(), Some(1));
    assert!(
        text(&out.stderr).contains("airlock is not installed on gpu-node")
            && text(&out.stderr).contains("run `airlock remote install gpu-node`"),
        "{}",
        text(&out.stderr)
    );

    let stdout = assert_ok(&s.install());
    assert!(stdout.contains("installed airlock on gpu-node"), "{stdout}");
    let installed = s.bin_dir().join("airlock");
    assert!(same_file(&installed, Path::new(EXE)));
    let mode = std::os::unix::fs::PermissionsExt::mode(
        &std::fs::metadata(&installed).unwrap().permissions(),
    );
    assert_eq!(mode & 0o777, 0o755);

    let stdout = assert_ok(&s.install());
    assert!(stdout.contains("already up to date"), "{stdout}");

    let stdout = assert_ok(&s.status());
    assert!(
        stdout.contains(&format!("airlock {}", env!("CARGO_PKG_VERSION"))),
        "{stdout}"
    );
    assert!(stdout.contains("matches this airlock"), "{stdout}");
    // No temp files left behind.
    let names: Vec<_> = std::fs::read_dir(s.bin_dir())
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(names, vec![std::ffi::OsString::from("airlock")]);
}

#[test]
fn remote_status_reports_a_changed_binary_and_install_replaces_it() {
    let s = setup(None);
    std::fs::create_dir_all(s.bin_dir()).unwrap();
    let installed = s.bin_dir().join("airlock");
    std::fs::write(&installed, "#!/bin/sh\necho airlock 0.0.1\n").unwrap();
    std::fs::set_permissions(
        &installed,
        std::os::unix::fs::PermissionsExt::from_mode(0o755),
    )
    .unwrap();
    let stdout = assert_ok(&s.status());
    assert!(stdout.contains("airlock 0.0.1"), "{stdout}");
    assert!(stdout.contains("checksum: mismatch"), "{stdout}");

    let stdout = assert_ok(&s.install());
    assert!(stdout.contains("installed airlock"), "{stdout}");
    assert!(same_file(&installed, Path::new(EXE)));
}

#[test]
fn remote_install_detects_a_truncated_copy_and_keeps_the_old_binary() {
    let s = setup(None);
    // An `ssh` earlier in PATH that passes on only the first 64 KiB of its stdin.
    let wrapper = s.remote.path().join("wrapper");
    std::fs::create_dir_all(&wrapper).unwrap();
    let real_ssh = ["/usr/bin/ssh", "/bin/ssh", "/usr/local/bin/ssh"]
        .into_iter()
        .find(|p| Path::new(p).exists())
        .unwrap();
    std::fs::write(
        wrapper.join("ssh"),
        format!("#!/bin/sh\nhead -c 65536 | {real_ssh} \"$@\"\n"),
    )
    .unwrap();
    std::fs::set_permissions(
        wrapper.join("ssh"),
        std::os::unix::fs::PermissionsExt::from_mode(0o755),
    )
    .unwrap();
    let path = format!(
        "{}:{}",
        wrapper.display(),
        std::env::var("PATH").unwrap_or_default()
    );

    std::fs::create_dir_all(s.bin_dir()).unwrap();
    let installed = s.bin_dir().join("airlock");
    std::fs::write(&installed, "#!/bin/sh\necho airlock 0.0.1\n").unwrap();

    let out = run(s
        .airlock(&[
            "remote",
            "install",
            "gpu-node",
            "--remote-dir",
            &s.remote_dir_arg(),
        ])
        .env("PATH", &path));
    assert!(!out.status.success());
    let stderr = text(&out.stderr);
    assert!(stderr.contains("checksum mismatch"), "{stderr}");
    assert_eq!(
        std::fs::read_to_string(&installed).unwrap(),
        "#!/bin/sh\necho airlock 0.0.1\n",
        "the old binary must be left in place"
    );
    let names: Vec<_> = std::fs::read_dir(s.bin_dir())
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(names.len(), 1, "temp file left behind: {names:?}");
}

// ---------------------------------------------------------------- connect

impl Setup {
    fn link(&self) -> PathBuf {
        self.remote.path().join("ssh/airlock-agent.sock")
    }

    fn connect(&self, extra: &[&str], command: &[&str]) -> Output {
        let link = self.link();
        let mut args = vec![
            "connect",
            "gpu-node",
            "--agent-link",
            link.to_str().unwrap(),
        ];
        args.extend_from_slice(extra);
        args.push("--");
        args.extend_from_slice(command);
        run(&mut self.airlock(&args))
    }
}

#[test]
fn connect_runs_a_command_and_passes_its_exit_status() {
    let s = setup(Some(&forward_through("[\"gpu-node\"]")));
    let out = s.connect(&[], &["echo", "hello", "from", "$((6*7))"]);
    assert_eq!(assert_ok(&out).trim(), "hello from 42");
    let out = s.connect(&[], &["exit", "7"]);
    assert_eq!(out.status.code(), Some(7), "{}", text(&out.stderr));
}

#[test]
fn connect_forwards_the_agent_where_the_policy_allows_and_keeps_a_stable_socket() {
    let s = setup(Some(&forward_through("[\"gpu-node\"]")));
    let out = s.connect(&[], &["echo", "sock=$SSH_AUTH_SOCK", ";", "ssh-add", "-l"]);
    let stdout = assert_ok(&out);
    assert!(!stdout.contains("sock=\n"), "{stdout}");
    assert!(
        stdout.contains(&s.key.fingerprint().unwrap()),
        "forwarded agent should list the key: {stdout}"
    );
    let target = std::fs::read_link(s.link()).expect("stable agent link");
    assert!(
        target.to_string_lossy().starts_with("/tmp/ssh-"),
        "{target:?}"
    );
    // The link reaches the agent while the session lives.
    let link = s.link();
    let out = s.connect(
        &[],
        &[
            &format!("SSH_AUTH_SOCK={}", link.display()),
            "ssh-add",
            "-l",
        ],
    );
    assert!(
        assert_ok(&out).contains(&s.key.fingerprint().unwrap()),
        "the stable link should reach the forwarded agent"
    );
}

#[test]
fn connect_does_not_forward_to_a_host_outside_the_policy() {
    let s = setup(Some(&forward_through("[\"other-host\"]")));
    let out = s.connect(&[], &["echo", "sock=$SSH_AUTH_SOCK"]);
    assert_eq!(assert_ok(&out).trim(), "sock=");
    assert!(!s.link().exists());
    // The same key still authenticates to gpu-node directly (that is how we got here), and
    // other-host gets the forwarded agent.
    let link = s.link();
    let out = run(&mut s.airlock(&[
        "connect",
        "other-host",
        "--agent-link",
        link.to_str().unwrap(),
        "--",
        "echo",
        "sock=$SSH_AUTH_SOCK",
    ]));
    assert_ne!(assert_ok(&out).trim(), "sock=");
}

#[test]
fn connect_without_a_policy_forwards_and_says_so() {
    let s = setup(None);
    let out = s.connect(&[], &["echo", "sock=$SSH_AUTH_SOCK"]);
    assert_ne!(assert_ok(&out).trim(), "sock=");
    let stderr = text(&out.stderr);
    assert!(stderr.contains("policy"), "{stderr}");
}
