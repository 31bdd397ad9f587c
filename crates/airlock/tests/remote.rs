//! The remote workflow on loopback with real sshd: `airlock remote install|status`,
//! `airlock connect` (forwarding only where the policy allows) and `airlock jupyter` with the
//! real JupyterLab from PyPI (installed by `.ci/run` into `target/ci-venv`).
//!
//! The "server" is this machine as the same user. Its sessions get a temp directory as `HOME`
//! and `XDG_RUNTIME_DIR` (sshd's `SetEnv`), so that airlock's defaults there (`~/.local/bin`,
//! `~/.ssh/airlock-agent.sock`, `~/.conda/environments.txt`, the runtime directory) never touch
//! the real home; some tests also name places explicitly with `--remote-dir`, `--agent-link`
//! and `--runtime-dir`.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use airlock_test_support::{AirlockAgent, Chain, Home, KeyPair, KeyType, Sshd, generate_key};

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
    /// A per-test directory standing for the server's files: `HOME` of its sessions.
    remote: tempfile::TempDir,
}

/// A chain with `gpu-node` and `other-host`, a key in an airlock agent started with `policy`
/// (a function of the chain's known_hosts and the key), or without any policy file.
/// Writes a policy for a chain and key.
type PolicyText<'a> = &'a dyn Fn(&Chain, &KeyPair) -> String;

fn setup(policy: Option<PolicyText<'_>>) -> Setup {
    setup_on(policy, None)
}

/// [`setup`], with the server's sessions finding an `uname` that answers `uname -sm` with
/// `uname_sm` first on their `PATH`: a server of another OS or architecture, as far as
/// airlock's probe (through the real sshd) can tell.
fn setup_on(policy: Option<PolicyText<'_>>, uname_sm: Option<&str>) -> Setup {
    let remote = tempfile::Builder::new()
        .prefix("airlock-remote-")
        .tempdir()
        .unwrap();
    let mut session_env = String::new();
    if let Some(answer) = uname_sm {
        let fake = remote.path().join("fake-bin");
        std::fs::create_dir_all(&fake).unwrap();
        std::fs::write(
            fake.join("uname"),
            format!(
                "#!/bin/sh\nif [ \"$*\" = -sm ]; then echo '{answer}'; else exec /bin/uname \"$@\"; fi\n"
            ),
        )
        .unwrap();
        std::fs::set_permissions(
            fake.join("uname"),
            std::os::unix::fs::PermissionsExt::from_mode(0o755),
        )
        .unwrap();
        session_env = format!(" PATH={}:/usr/local/bin:/usr/bin:/bin", fake.display());
    }
    // Short: jupyter's kernel sockets under it must fit in a sockaddr_un.
    let runtime = remote.path().join("r");
    std::fs::DirBuilder::new().create(&runtime).unwrap();
    std::fs::set_permissions(
        &runtime,
        std::os::unix::fs::PermissionsExt::from_mode(0o700),
    )
    .unwrap();
    let server = Sshd::builder().config_line(format!(
        "SetEnv HOME={} XDG_RUNTIME_DIR={}{session_env}",
        remote.path().display(),
        runtime.display()
    ));
    let chain =
        Chain::start_in_with(Home::new().unwrap(), &["gpu-node", "other-host"], &server).unwrap();
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
    // `--policy` names the file only when there is one: a named file must exist.
    let mut args = vec!["--audit", audit.to_str().unwrap()];
    if policy.is_some() {
        args.extend(["--policy", policy_path.to_str().unwrap()]);
    }
    let agent = AirlockAgent::start_with(home, EXE, &sock, &args, &[]).unwrap();
    let out = run(home
        .command_with_agent("ssh-add", agent.socket())
        .arg(&key.private_key));
    assert!(out.status.success(), "{}", text(&out.stderr));
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

/// `remote status --json` and `jupyter HOST --list --json` through real sshd, under the field
/// names their help lists. The server's Jupyter state files are written here (one server whose
/// process runs, one whose process has ended), so no JupyterLab is needed.
#[test]
fn remote_status_and_jupyter_list_as_json() {
    let s = setup(None);
    let bin = s.remote_dir_arg();
    let status = || {
        let out = run(s
            .airlock(&["remote", "status", "gpu-node", "--json"])
            .args(["--remote-dir", &bin]));
        let v: serde_json::Value = serde_json::from_slice(&out.stdout)
            .unwrap_or_else(|e| panic!("{e}: {}\n{}", text(&out.stdout), text(&out.stderr)));
        (out.status.code(), v)
    };
    let local = text(&run(Command::new("sha256sum").arg(EXE)).stdout)
        .split_whitespace()
        .next()
        .unwrap()
        .to_owned();
    let (code, v) = status();
    assert_eq!(code, Some(1), "{v}");
    assert_eq!(v["installed"], false);
    assert_eq!(v["sha256"], serde_json::Value::Null);
    assert_eq!(v["version"], serde_json::Value::Null);
    assert_eq!(v["local_sha256"], local.as_str());
    assert_eq!(v["host"], "gpu-node");
    assert!(v["platform"].as_str().unwrap().starts_with("Linux "), "{v}");

    assert_ok(&s.install());
    let runtime = s.remote.path().join("r/airlock");
    std::fs::create_dir_all(&runtime).unwrap();
    std::fs::set_permissions(
        &runtime,
        std::os::unix::fs::PermissionsExt::from_mode(0o700),
    )
    .unwrap();
    let mut sleeper = Command::new("sleep").arg("600").spawn().unwrap();
    let mut ended = Command::new("true").spawn().unwrap();
    ended.wait().unwrap();
    for (id, pid) in [("aaaa", sleeper.id()), ("bbbb", ended.id())] {
        let file = |ext: &str| runtime.join(format!("jupyter-{id}.{ext}"));
        let state = serde_json::json!({
            "id": id, "pid": pid, "socket": file("sock"), "token_file": file("token"),
            "log": file("log"), "prefix": "/envs/torch", "dir": "/data/project",
        });
        std::fs::write(file("json"), state.to_string()).unwrap();
    }
    let (code, v) = status();
    sleeper.kill().unwrap();
    sleeper.wait().unwrap();
    assert_eq!(code, Some(0), "{v}");
    assert_eq!(v["installed"], true);
    assert_eq!(v["up_to_date"], true);
    assert_eq!(v["sha256"], local.as_str());
    assert_eq!(
        v["version"],
        format!("airlock {}", env!("CARGO_PKG_VERSION")).as_str()
    );
    assert!(v["environments"].is_array(), "{v}");
    let servers = v["jupyter"].as_array().unwrap_or_else(|| panic!("{v}"));
    assert_eq!(servers.len(), 2, "{v}");
    assert_eq!(servers[0]["id"], "aaaa");
    assert_eq!(servers[0]["running"], true);
    assert_eq!(servers[1]["running"], false);
    assert_eq!(servers[0]["prefix"], "/envs/torch");
    assert_eq!(servers[0]["dir"], "/data/project");
    let mut fields: Vec<&str> = servers[0]
        .as_object()
        .unwrap()
        .keys()
        .map(String::as_str)
        .collect();
    fields.sort_unstable();
    assert_eq!(
        fields,
        ["dir", "id", "log", "pid", "prefix", "running", "socket"]
    );
    // `jupyter --list --json` prints the same list (the process is gone by now).
    let out = assert_ok(&run(&mut s.airlock(&[
        "jupyter",
        "gpu-node",
        "--list",
        "--json",
        "--remote-dir",
        &bin,
    ])));
    let list: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(list[0]["id"], "aaaa");
    assert_eq!(list[0]["running"], false, "{list}");
    assert_eq!(list[1], servers[1]);
    // The help lists every field.
    let help = assert_ok(&run(&mut s.airlock(&["remote", "status", "--help"])));
    for field in v.as_object().unwrap().keys() {
        assert!(
            help.contains(&format!("  {field} ")),
            "help lacks {field}:\n{help}"
        );
    }
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

/// From a laptop of another architecture: the server (its `uname -sm` says the other of
/// x86_64 and aarch64) gets the build named with `--binary` or found in the builds directory
/// by target triple, never this airlock; without one the error says what to do.
#[test]
fn remote_install_for_another_architecture_takes_a_build_for_it() {
    let (local, other) = if cfg!(target_arch = "aarch64") {
        ("aarch64", "x86_64")
    } else {
        ("x86_64", "aarch64")
    };
    let s = setup_on(None, Some(&format!("Linux {other}")));
    let install = |extra: &[&str]| {
        run(s
            .airlock(&["remote", "install", "gpu-node", "--remote-dir"])
            .arg(s.remote_dir_arg())
            .args(extra))
    };
    let installed = s.bin_dir().join("airlock");
    let builds = s.chain.home().data_dir().join("airlock/builds");

    let status = |extra: &[&str]| {
        run(s
            .airlock(&["remote", "status", "gpu-node", "--remote-dir"])
            .arg(s.remote_dir_arg())
            .args(extra))
    };
    let out = install(&[]);
    assert_eq!(out.status.code(), Some(1));
    let err = text(&out.stderr);
    for needle in [
        format!("gpu-node runs Linux {other} but this airlock is built for Linux {local}"),
        format!("cargo build --release --target {other}-unknown-linux-musl"),
        format!(
            "airlock remote install gpu-node --binary target/{other}-unknown-linux-musl/release/airlock"
        ),
        format!(
            "{}",
            builds
                .join(format!("{other}-unknown-linux-gnu/airlock"))
                .display()
        ),
    ] {
        assert!(err.contains(&needle), "no {needle:?} in: {err}");
    }
    assert!(!installed.exists());

    // This airlock, or a file that is no program, is refused by its header.
    let out = install(&["--binary", EXE]);
    let err = text(&out.stderr);
    assert!(
        err.contains(&format!(
            "is a program for Linux {local}, but gpu-node runs Linux {other}"
        )),
        "{err}"
    );
    let not_a_program = s.remote.path().join("notes.txt");
    std::fs::write(&not_a_program, "hello\n").unwrap();
    let out = install(&["--binary", not_a_program.to_str().unwrap()]);
    assert!(
        text(&out.stderr).contains("is not a program airlock recognises"),
        "{}",
        text(&out.stderr)
    );
    let out = install(&["--binary", "/nonexistent/airlock"]);
    let err = text(&out.stderr);
    assert!(
        err.contains("cannot read /nonexistent/airlock: No such file or directory")
            && !err.contains("os error"),
        "{err}"
    );
    assert!(!installed.exists());

    // A build for the other architecture: this binary's ELF header with e_machine changed.
    let mut build = std::fs::read(EXE).unwrap()[..8192].to_vec();
    build[18..20].copy_from_slice(&(if other == "aarch64" { 183_u16 } else { 62 }).to_le_bytes());
    let given = s.remote.path().join("airlock-cross");
    std::fs::write(&given, &build).unwrap();
    let out = install(&["--binary", given.to_str().unwrap()]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(same_file(&installed, &given));
    let err = text(&out.stderr);
    assert!(
        err.contains(&format!("installing {}", given.display())),
        "{err}"
    );
    // It cannot run on this (really {local}) machine, and install says so.
    assert!(
        err.contains("the installed binary does not run on gpu-node"),
        "{err}"
    );

    // Found by target triple in the builds directory.
    std::fs::remove_file(&installed).unwrap();
    let found = builds.join(format!("{other}-unknown-linux-gnu/airlock"));
    std::fs::create_dir_all(found.parent().unwrap()).unwrap();
    build[100] ^= 1;
    std::fs::write(&found, &build).unwrap();
    let out = install(&[]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(same_file(&installed, &found));
    assert!(
        text(&out.stderr).contains(&format!(
            "installing the build for {other}-unknown-linux-gnu from {}",
            found.display()
        )),
        "{}",
        text(&out.stderr)
    );
    // status compares with that build, not with this airlock.
    let stdout = assert_ok(&status(&[]));
    assert!(
        stdout.contains(&format!(
            "checksum: matches the build for Linux {other} here"
        )),
        "{stdout}"
    );
    let v: serde_json::Value = serde_json::from_slice(&status(&["--json"]).stdout).unwrap();
    assert_eq!(v["up_to_date"], true, "{v}");
    assert_eq!(v["local_sha256"], v["sha256"], "{v}");
    std::fs::remove_file(&found).unwrap();
    let stdout = assert_ok(&status(&[]));
    assert!(
        stdout.contains(&format!("checksum: no build for Linux {other} here")),
        "{stdout}"
    );
    let v: serde_json::Value = serde_json::from_slice(&status(&["--json"]).stdout).unwrap();
    assert_eq!(v["local_sha256"], serde_json::Value::Null, "{v}");
    assert_eq!(v["up_to_date"], false, "{v}");
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
fn connect_with_a_prefix_runs_the_command_activated_in_that_environment() {
    let s = setup(Some(&forward_through("[\"gpu-node\"]")));
    assert_ok(&s.install());
    let prefix = s.remote.path().join("env");
    std::fs::create_dir_all(prefix.join("bin")).unwrap();
    std::fs::create_dir_all(prefix.join("conda-meta")).unwrap();
    std::fs::write(prefix.join("conda-meta/history"), "").unwrap();
    std::fs::write(
        prefix.join("bin/hello-env"),
        "#!/bin/sh\necho hello from the env\n",
    )
    .unwrap();
    std::fs::set_permissions(
        prefix.join("bin/hello-env"),
        std::os::unix::fs::PermissionsExt::from_mode(0o755),
    )
    .unwrap();
    let bin = s.remote_dir_arg();
    let out = s.connect(
        &["--remote-dir", &bin, "-p", prefix.to_str().unwrap()],
        &[
            "echo",
            "prefix=$CONDA_PREFIX",
            ";",
            "hello-env",
            ";",
            "exit",
            "3",
        ],
    );
    assert_eq!(out.status.code(), Some(3), "{}", text(&out.stderr));
    let stdout = text(&out.stdout);
    assert!(
        stdout.contains(&format!("prefix={}", prefix.display())),
        "{stdout}"
    );
    assert!(stdout.contains("hello from the env"), "{stdout}");
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

// ---------------------------------------------------------------- jupyter

/// The venv `.ci/run` fills from `.ci/requirements.txt`, used as the server's environment.
fn ci_venv() -> Option<PathBuf> {
    if std::env::var("AIRLOCK_SKIP_JUPYTER").as_deref() == Ok("1") {
        eprintln!("note: AIRLOCK_SKIP_JUPYTER=1: the Jupyter test is skipped");
        return None;
    }
    let venv = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../target/ci-venv");
    assert!(
        venv.join("bin/jupyter-lab").exists(),
        "no JupyterLab in {}: run .ci/run (it installs .ci/requirements.txt into target/ci-venv), \
         or set AIRLOCK_SKIP_JUPYTER=1 to skip this test",
        venv.display()
    );
    Some(venv.canonicalize().unwrap())
}

/// Sends `request` (a whole HTTP/1.1 request, `Connection: close`) to 127.0.0.1:port and
/// returns the response's head and body.
fn http_exchange(port: u16, request: &str) -> (String, String) {
    use std::io::{Read as _, Write as _};
    let mut stream = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
    stream.write_all(request.as_bytes()).unwrap();
    let mut bytes = Vec::new();
    stream.read_to_end(&mut bytes).unwrap();
    let response = text(&bytes);
    let (head, body) = response.split_once("\r\n\r\n").unwrap_or((&response, ""));
    (head.to_owned(), body.to_owned())
}

/// The status code in a response head.
fn http_status(head: &str) -> u16 {
    head.split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or_else(|| panic!("not an HTTP response: {head}"))
}

/// `GET path` on 127.0.0.1:port: the status code and the response head.
fn http_get(port: u16, path: &str) -> (u16, String) {
    let (head, _) = http_exchange(
        port,
        &format!("GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nConnection: close\r\n\r\n"),
    );
    (http_status(&head), head)
}

/// Inodes of TCP sockets in LISTEN state on this machine.
fn tcp_listeners() -> std::collections::HashSet<String> {
    let mut out = std::collections::HashSet::new();
    for file in ["/proc/net/tcp", "/proc/net/tcp6"] {
        for line in std::fs::read_to_string(file)
            .unwrap_or_default()
            .lines()
            .skip(1)
        {
            let fields: Vec<&str> = line.split_whitespace().collect();
            if fields.len() > 9 && fields[3] == "0A" {
                out.insert(fields[9].to_owned());
            }
        }
    }
    out
}

/// Inodes of TCP sockets in LISTEN state, with their local address as `/proc/net/tcp{,6}`
/// writes it (`0100007F:PORT` is 127.0.0.1).
fn tcp_listener_addresses() -> std::collections::HashMap<String, String> {
    let mut out = std::collections::HashMap::new();
    for file in ["/proc/net/tcp", "/proc/net/tcp6"] {
        for line in std::fs::read_to_string(file)
            .unwrap_or_default()
            .lines()
            .skip(1)
        {
            let fields: Vec<&str> = line.split_whitespace().collect();
            if fields.len() > 9 && fields[3] == "0A" {
                out.insert(fields[9].to_owned(), fields[1].to_owned());
            }
        }
    }
    out
}

/// Socket inodes a process holds open.
fn socket_inodes(pid: u32) -> Vec<String> {
    std::fs::read_dir(format!("/proc/{pid}/fd"))
        .unwrap()
        .flatten()
        .filter_map(|e| std::fs::read_link(e.path()).ok())
        .filter_map(|t| {
            t.to_string_lossy()
                .strip_prefix("socket:[")
                .and_then(|r| r.strip_suffix(']'))
                .map(str::to_owned)
        })
        .collect()
}

fn running(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|s| {
        s.rsplit_once(')')
            .is_some_and(|(_, r)| !r.trim_start().starts_with('Z'))
    })
}

/// Ends a process group when dropped, so a failing test leaves no Jupyter or ssh behind.
struct KillGroupOnDrop(u32);

impl Drop for KillGroupOnDrop {
    fn drop(&mut self) {
        let _ = Command::new("kill")
            .args(["-TERM", "--", &format!("-{}", self.0)])
            .stderr(std::process::Stdio::null())
            .status();
    }
}

fn jupyter_files(runtime: &Path) -> Vec<String> {
    std::fs::read_dir(runtime)
        .map(|d| {
            d.flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .filter(|n| n.starts_with("jupyter-"))
                .collect()
        })
        .unwrap_or_default()
}

#[test]
fn jupyter_runs_on_a_unix_socket_through_a_tunnel_and_outlives_it() {
    let Some(venv) = ci_venv() else { return };
    let s = setup(Some(&forward_through("[\"gpu-node\"]")));
    assert_ok(&s.install());
    let runtime = s.remote.path().join("run");
    let bin = s.remote_dir_arg();
    let runtime_arg = runtime.to_str().unwrap().to_owned();
    let common = ["--remote-dir", &bin, "--runtime-dir", &runtime_arg];

    let link = s.link();
    let mut args = vec!["-p", venv.to_str().unwrap()];
    args.extend(["--dir", s.remote.path().to_str().unwrap()]);
    args.extend(["--agent-link", link.to_str().unwrap()]);
    args.extend(common);
    let (mut laptop, _laptop_group, port, token) = s.start_jupyter(&args);
    let path = format!("lab?token={token}");

    let (code, head) = http_get(port, &format!("/{path}"));
    assert_eq!(code, 200, "{head}");
    let (code, head) = http_get(port, "/api/status");
    assert_eq!(code, 403, "{head}");
    // Jupyter sends a browser without the token to its login page.
    let (code, head) = http_get(port, "/lab");
    assert_eq!(code, 302, "{head}");
    assert!(head.contains("/login"), "{head}");

    // The server: a unix socket, mode 0600, and no TCP listener of its own.
    let state: serde_json::Value = {
        let name = jupyter_files(&runtime)
            .into_iter()
            .find(|n| {
                std::path::Path::new(n)
                    .extension()
                    .is_some_and(|e| e == "json")
            })
            .expect("a state file");
        serde_json::from_slice(&std::fs::read(runtime.join(name)).unwrap()).unwrap()
    };
    let pid = u32::try_from(state["pid"].as_u64().unwrap()).unwrap();
    let _server_group = KillGroupOnDrop(pid);
    let socket = PathBuf::from(state["socket"].as_str().unwrap());
    let mode =
        std::os::unix::fs::PermissionsExt::mode(&std::fs::metadata(&socket).unwrap().permissions());
    assert_eq!(mode & 0o777, 0o600);
    let token_mode = std::os::unix::fs::PermissionsExt::mode(
        &std::fs::metadata(state["token_file"].as_str().unwrap())
            .unwrap()
            .permissions(),
    );
    assert_eq!(token_mode & 0o777, 0o600);
    let listeners = tcp_listeners();
    let held = socket_inodes(pid);
    assert!(!held.is_empty());
    assert!(
        held.iter().all(|i| !listeners.contains(i)),
        "jupyter (pid {pid}) listens on TCP"
    );
    // Jupyter and its kernels use the stable agent link that `connect` re-points.
    let environ = text(&std::fs::read(format!("/proc/{pid}/environ")).unwrap());
    assert!(
        environ
            .split('\0')
            .any(|v| v == format!("SSH_AUTH_SOCK={}", link.display())),
        "SSH_AUTH_SOCK of jupyter is not the stable link"
    );
    let out = s.connect(
        &[],
        &[
            &format!("SSH_AUTH_SOCK={}", link.display()),
            "ssh-add",
            "-l",
        ],
    );
    assert!(assert_ok(&out).contains(&s.key.fingerprint().unwrap()));
    // The token is not on jupyter's command line.
    let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap();
    assert!(!text(&cmdline).contains(token.as_str()));

    // Ctrl-C closes the tunnel; the server keeps running.
    let status = Command::new("kill")
        .args(["-INT", "--", &format!("-{}", laptop.id())])
        .status()
        .unwrap();
    assert!(status.success());
    laptop.wait().unwrap();
    // ssh got the same SIGINT; give it a moment to close the forwarded port.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
        assert!(
            std::time::Instant::now() < deadline,
            "the tunnel is still open"
        );
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    assert!(running(pid), "jupyter did not survive the ssh session");

    // Reopened, then SIGTERM to airlock alone (a supervisor, a closed terminal): it ends its
    // ssh too instead of leaving an `ssh -L` behind holding the port.
    let id = state["id"].as_str().unwrap().to_owned();
    let mut args = vec!["--id", id.as_str()];
    args.extend(common);
    let (mut again, _again_group, again_port, _) = s.start_jupyter(&args);
    assert!(std::net::TcpStream::connect(("127.0.0.1", again_port)).is_ok());
    let airlock_pid = nix::unistd::Pid::from_raw(i32::try_from(again.id()).unwrap());
    nix::sys::signal::kill(airlock_pid, nix::sys::signal::Signal::SIGTERM).unwrap();
    let status = again.wait().unwrap();
    assert_eq!(status.code(), Some(128 + 15), "{status}");
    assert!(
        std::net::TcpStream::connect(("127.0.0.1", again_port)).is_err(),
        "the tunnel outlived airlock"
    );

    let mut list = s.airlock(&["jupyter", "gpu-node", "--list"]);
    let stdout = assert_ok(&run(list.args(common)));
    assert!(stdout.contains(&format!("pid {pid} running")), "{stdout}");

    let mut stop = s.airlock(&["jupyter", "gpu-node", "--stop"]);
    let stdout = assert_ok(&run(stop.args(common)));
    assert!(stdout.contains("stopped jupyter"), "{stdout}");
    assert!(!running(pid), "jupyter still runs after --stop");
    assert_eq!(jupyter_files(&runtime), Vec::<String>::new());
}

/// The browser is opened on a 0600 page that redirects to the URL: the token is never on a
/// command line of this machine (where `ps` shows it to every user), and the page goes away
/// with the tunnel.
#[test]
fn jupyter_opens_the_browser_without_the_token_on_any_command_line() {
    let Some(venv) = ci_venv() else { return };
    let s = setup(Some(&forward_through("[\"gpu-node\"]")));
    assert_ok(&s.install());
    let runtime = s.remote.path().join("run");
    let bin = s.remote_dir_arg();
    let runtime_arg = runtime.to_str().unwrap().to_owned();
    let browser = s.remote.path().join("browser");
    std::fs::create_dir_all(&browser).unwrap();
    let log = browser.join("opened.log");
    let opener = browser.join("xdg-open");
    std::fs::write(
        &opener,
        format!(
            "#!/bin/sh\nf=\"${{1#file://}}\"\n{{ echo \"argv: $*\"; echo \"mode: $(stat -c %a \"$f\")\"; \
             echo \"page: $(cat \"$f\")\"; }} > {log}.tmp; mv {log}.tmp {log}\n",
            log = log.display()
        ),
    )
    .unwrap();
    std::fs::set_permissions(&opener, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    let args = [
        "-p",
        venv.to_str().unwrap(),
        "--remote-dir",
        &bin,
        "--runtime-dir",
        &runtime_arg,
    ];
    let (mut laptop, _group, _port, token) = s.start_jupyter_with(&args, Some(&browser));
    let deadline = std::time::Instant::now() + std::time::Duration::from_mins(1);
    while !log.exists() {
        assert!(
            std::time::Instant::now() < deadline,
            "the browser was never opened"
        );
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    let opened = std::fs::read_to_string(&log).unwrap();
    let argv = opened.lines().find(|l| l.starts_with("argv: ")).unwrap();
    assert!(
        !argv.contains(&token),
        "the token is on the browser's command line: {argv}"
    );
    assert!(opened.contains("mode: 600"), "{opened}");
    assert!(
        opened.contains(&format!("token={token}")),
        "the page does not lead to Jupyter: {opened}"
    );
    let page = argv.trim_start_matches("argv: file://").trim().to_owned();
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(i32::try_from(laptop.id()).unwrap()),
        nix::sys::signal::Signal::SIGINT,
    )
    .unwrap();
    let _ = laptop.wait();
    assert!(!Path::new(&page).exists(), "{page} outlived the tunnel");
    let mut stop = s.airlock(&["jupyter", "gpu-node", "--stop"]);
    assert_ok(&run(stop.args([
        "--remote-dir",
        &bin,
        "--runtime-dir",
        &runtime_arg,
    ])));
}

#[test]
fn jupyter_says_what_to_do_without_jupyter_or_without_airlock_on_the_server() {
    let s = setup(None);
    let empty = s.remote.path().join("empty-env");
    std::fs::create_dir_all(empty.join("bin")).unwrap();
    let runtime = s.remote.path().join("run");
    let out = run(&mut s.airlock(&[
        "jupyter",
        "gpu-node",
        "-p",
        empty.to_str().unwrap(),
        "--no-browser",
        "--remote-dir",
        s.remote.path().join("nothing").to_str().unwrap(),
    ]));
    assert!(!out.status.success());
    let stderr = text(&out.stderr);
    assert!(
        stderr.contains(
            "airlock is not installed on gpu-node: run `airlock remote install gpu-node`"
        ),
        "{stderr}"
    );

    assert_ok(&s.install());
    let out = run(&mut s.airlock(&[
        "jupyter",
        "gpu-node",
        "-p",
        empty.to_str().unwrap(),
        "--no-browser",
        "--remote-dir",
        &s.remote_dir_arg(),
        "--runtime-dir",
        runtime.to_str().unwrap(),
    ]));
    assert!(!out.status.success());
    let stderr = text(&out.stderr);
    assert!(
        stderr.contains("no jupyter in environment") && stderr.contains("pip install jupyterlab"),
        "{stderr}"
    );

    // The same by name, with the airlock command that adds it; and a name that is not there.
    s.register_env(&empty);
    let jupyter_env = |name: &str| {
        run(&mut s.airlock(&[
            "jupyter",
            "gpu-node",
            "--env",
            name,
            "--no-browser",
            "--remote-dir",
            &s.remote_dir_arg(),
        ]))
    };
    let out = jupyter_env("empty-env");
    assert!(!out.status.success());
    let stderr = text(&out.stderr);
    assert!(
        stderr.contains("no jupyter in environment")
            && stderr.contains("`airlock env update -n empty-env jupyterlab`"),
        "{stderr}"
    );
    let out = jupyter_env("no-such-env");
    assert!(!out.status.success());
    let stderr = text(&out.stderr);
    assert!(
        stderr.contains("no environment named no-such-env")
            && stderr.contains("`airlock env create -n no-such-env`"),
        "{stderr}"
    );
    // Reopening a server that is not there.
    let out = run(&mut s.airlock(&[
        "jupyter",
        "gpu-node",
        "--id",
        "0badc0de",
        "--no-browser",
        "--remote-dir",
        &s.remote_dir_arg(),
    ]));
    assert!(!out.status.success());
    let stderr = text(&out.stderr);
    assert!(
        stderr.contains("no Jupyter server 0badc0de here") && stderr.contains("--list"),
        "{stderr}"
    );
    // Nothing was started or left behind.
    assert_eq!(jupyter_files(&s.default_runtime()), Vec::<String>::new());
}

// ------------------------------------------------- the server's defaults: status, reconnect

impl Setup {
    /// The server's `$XDG_RUNTIME_DIR/airlock`, where `airlock jupyter serve` keeps its files
    /// by default.
    fn default_runtime(&self) -> PathBuf {
        self.remote.path().join("r/airlock")
    }

    /// The server's `~/.ssh/airlock-agent.sock`.
    fn default_link(&self) -> PathBuf {
        self.remote.path().join(".ssh/airlock-agent.sock")
    }

    /// Register an environment on the server as conda does, in `~/.conda/environments.txt`.
    fn register_env(&self, prefix: &Path) {
        let dir = self.remote.path().join(".conda");
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(
            dir.join("environments.txt"),
            format!("{}\n", prefix.display()),
        )
        .unwrap();
    }

    /// `airlock jupyter gpu-node ARGS --no-browser` in its own process group, up to the URL it
    /// prints: the process, its group's guard, the local port and the token.
    fn start_jupyter(&self, args: &[&str]) -> (std::process::Child, KillGroupOnDrop, u16, String) {
        self.start_jupyter_with(args, None)
    }

    /// [`Self::start_jupyter`], opening the browser with the programs in `browser_path` first
    /// on `PATH` when it is given.
    fn start_jupyter_with(
        &self,
        args: &[&str],
        browser_path: Option<&Path>,
    ) -> (std::process::Child, KillGroupOnDrop, u16, String) {
        use std::io::BufRead as _;
        use std::os::unix::process::CommandExt as _;
        let mut cmd = self.airlock(&["jupyter", "gpu-node"]);
        match browser_path {
            None => {
                cmd.arg("--no-browser");
            }
            Some(dir) => {
                let mut path = std::ffi::OsString::from(dir);
                path.push(":");
                path.push(std::env::var_os("PATH").unwrap_or_default());
                cmd.env("PATH", path);
            }
        }
        cmd.args(args)
            .stdout(std::process::Stdio::piped())
            .process_group(0);
        let mut laptop = cmd.spawn().unwrap();
        let guard = KillGroupOnDrop(laptop.id());
        let mut line = String::new();
        std::io::BufReader::new(laptop.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        let url = line.trim();
        let rest = url
            .strip_prefix("http://127.0.0.1:")
            .unwrap_or_else(|| panic!("no URL printed, got {url:?}"));
        let (port, path) = rest.split_once('/').unwrap();
        let token = path
            .strip_prefix("lab?token=")
            .unwrap_or_else(|| panic!("no token in {url}"));
        (laptop, guard, port.parse().unwrap(), token.to_owned())
    }

    /// A long-lived `airlock connect gpu-node -- cat` (the session lasts until its stdin is
    /// closed), and the forwarded agent socket the stable link points at once it has been
    /// re-pointed away from `previous`.
    fn open_session(&self, previous: Option<&Path>) -> (std::process::Child, PathBuf) {
        let mut cmd = self.airlock(&["connect", "gpu-node", "--", "cat"]);
        cmd.stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::null());
        let mut session = cmd.spawn().unwrap();
        let link = self.default_link();
        let deadline = std::time::Instant::now() + std::time::Duration::from_mins(1);
        loop {
            if let Ok(target) = std::fs::read_link(&link)
                && Some(target.as_path()) != previous
                && target.exists()
            {
                return (session, target);
            }
            if let Some(status) = session.try_wait().unwrap() {
                panic!("airlock connect exited ({status}) before the link was re-pointed");
            }
            assert!(
                std::time::Instant::now() < deadline,
                "{} was not re-pointed at a live socket",
                link.display()
            );
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
    }
}

/// End a session from [`Setup::open_session`] and wait until sshd has removed its forwarded
/// agent socket.
fn close_session(mut session: std::process::Child, socket: &Path) {
    drop(session.stdin.take());
    let status = session.wait().unwrap();
    assert!(status.success(), "the connect session ended with {status}");
    let deadline = std::time::Instant::now() + std::time::Duration::from_mins(1);
    while socket.exists() {
        assert!(
            std::time::Instant::now() < deadline,
            "{} outlived its session",
            socket.display()
        );
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
}

/// The body of `GET path` on 127.0.0.1:port (not chunked).
fn http_body(port: u16, path: &str) -> String {
    http_exchange(
        port,
        &format!("GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nConnection: close\r\n\r\n"),
    )
    .1
}

/// `POST path` with a JSON body and the token on 127.0.0.1:port: the status code and body.
fn http_post(port: u16, path: &str, token: &str, body: &str) -> (u16, String) {
    let (head, body) = http_exchange(
        port,
        &format!(
            "POST {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nAuthorization: token {token}\r\n\
             Content-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
            body.len()
        ),
    );
    (http_status(&head), body)
}

/// Run `code` in the kernel of `connection_file` with jupyter_client's `BlockingKernelClient`
/// from the venv; what the kernel printed.
fn kernel_run(venv: &Path, connection_file: &Path, code: &str) -> String {
    const CLIENT: &str = "\
import sys
from jupyter_client import BlockingKernelClient
kc = BlockingKernelClient(connection_file=sys.argv[1])
kc.load_connection_file()
kc.start_channels()
kc.wait_for_ready(timeout=120)
reply = kc.execute_interactive(sys.argv[2], timeout=120)
kc.stop_channels()
sys.exit(0 if reply['content']['status'] == 'ok' else 1)
";
    let out = run(Command::new(venv.join("bin/python"))
        .args(["-c", CLIENT])
        .arg(connection_file)
        .arg(code)
        .stdin(std::process::Stdio::null()));
    assert_ok(&out)
}

/// What a kernel learns about its agent: `SSH_AUTH_SOCK`, its pid, and `ssh-add -l`.
const AGENT_PROBE: &str = "\
import os, subprocess
r = subprocess.run(['ssh-add', '-l'], capture_output=True, text=True)
print('sock=' + os.environ.get('SSH_AUTH_SOCK', ''))
print('pid=%d' % os.getpid())
print('ssh-add rc=%d' % r.returncode)
print(r.stdout + r.stderr)
";

fn probe_value<'a>(output: &'a str, key: &str) -> &'a str {
    output
        .lines()
        .find_map(|l| l.strip_prefix(key))
        .unwrap_or_else(|| panic!("no {key} in {output}"))
}

#[test]
fn a_running_kernel_reaches_the_agent_again_after_a_reconnect() {
    let Some(venv) = ci_venv() else { return };
    let s = setup(Some(&forward_through("[\"gpu-node\"]")));
    let fingerprint = s.key.fingerprint().unwrap();
    assert_ok(&run(&mut s.airlock(&["remote", "install", "gpu-node"])));
    s.register_env(&venv);

    // The working day: connect, then start Jupyter in the environment, by name.
    let (first, first_socket) = s.open_session(None);
    let (mut laptop, _laptop_group, port, token) = s.start_jupyter(&["--env", "ci-venv"]);
    let (code, body) = http_post(port, "/api/kernels", &token, "{}");
    assert_eq!(code, 201, "{body}");
    let kernel: serde_json::Value = serde_json::from_str(&body).unwrap();
    let kernel_id = kernel["id"].as_str().unwrap();

    let runtime = s.default_runtime();
    let server_dir = jupyter_files(&runtime)
        .into_iter()
        .find(|n| Path::new(n).extension().is_some_and(|e| e == "d"))
        .expect("the server's runtime directory");
    let server_pid = {
        let state = runtime.join(server_dir.replace(".d", ".json"));
        let state: serde_json::Value =
            serde_json::from_slice(&std::fs::read(state).unwrap()).unwrap();
        u32::try_from(state["pid"].as_u64().unwrap()).unwrap()
    };
    let _server_group = KillGroupOnDrop(server_pid);
    let connection_file = runtime
        .join(&server_dir)
        .join(format!("kernel-{kernel_id}.json"));
    assert!(connection_file.exists(), "{}", connection_file.display());

    let before = kernel_run(&venv, &connection_file, AGENT_PROBE);
    assert_eq!(
        probe_value(&before, "sock="),
        s.default_link().to_str().unwrap()
    );
    assert_eq!(probe_value(&before, "ssh-add rc="), "0", "{before}");
    assert!(before.contains(&fingerprint), "{before}");
    let kernel_pid: u32 = probe_value(&before, "pid=").parse().unwrap();
    let _kernel_group = KillGroupOnDrop(kernel_pid);

    // The kernel's five channels are unix sockets in the private directory, not TCP ports.
    let connection: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&connection_file).unwrap()).unwrap();
    assert_eq!(connection["transport"], "ipc", "{connection}");
    let ipc = connection["ip"].as_str().unwrap();
    assert!(
        Path::new(ipc).starts_with(runtime.join(&server_dir)),
        "{ipc}"
    );
    for channel in ["shell", "iopub", "stdin", "control", "hb"] {
        let port = connection[format!("{channel}_port")].as_u64().unwrap();
        let socket = format!("{ipc}-{port}");
        assert!(
            std::os::unix::fs::FileTypeExt::is_socket(
                &std::fs::metadata(&socket).unwrap().file_type()
            ),
            "{socket}"
        );
    }
    // What TCP the kernel still listens on is ipykernel's own pipe for output of forked
    // subprocesses (hard-wired to a random 127.0.0.1 port, messages checked against a random
    // id): one socket, loopback only.
    let listeners = tcp_listener_addresses();
    let kernel_tcp: Vec<&String> = socket_inodes(kernel_pid)
        .iter()
        .filter_map(|i| listeners.get(i))
        .collect();
    assert!(
        kernel_tcp.len() <= 1 && kernel_tcp.iter().all(|a| a.starts_with("0100007F:")),
        "the kernel (pid {kernel_pid}) listens on TCP beyond ipykernel's loopback pipe: \
         {kernel_tcp:?}"
    );

    // The session that forwarded the agent ends, and so does the tunnel (Ctrl-C): the kernel
    // loses the agent...
    close_session(first, &first_socket);
    let ctrl_c = Command::new("kill")
        .args(["-INT", "--", &format!("-{}", laptop.id())])
        .status()
        .unwrap();
    assert!(ctrl_c.success());
    laptop.wait().unwrap();
    let orphaned = kernel_run(&venv, &connection_file, AGENT_PROBE);
    assert_eq!(probe_value(&orphaned, "ssh-add rc="), "2", "{orphaned}");
    assert!(!orphaned.contains(&fingerprint), "{orphaned}");

    // ...and a reconnect gives the same kernel the agent back through the stable link.
    let (second, second_socket) = s.open_session(Some(&first_socket));
    let after = kernel_run(&venv, &connection_file, AGENT_PROBE);
    assert_eq!(probe_value(&after, "pid="), kernel_pid.to_string());
    assert_eq!(probe_value(&after, "ssh-add rc="), "0", "{after}");
    assert!(after.contains(&fingerprint), "{after}");

    // The browser gets back to the same server and kernel through a new tunnel.
    let server_id = server_dir
        .strip_prefix("jupyter-")
        .and_then(|n| n.strip_suffix(".d"))
        .unwrap();
    let (_again, _again_group, again_port, again_token) = s.start_jupyter(&["--id", server_id]);
    assert_eq!(again_token, token);
    let (code, head) = http_get(again_port, &format!("/lab?token={token}"));
    assert_eq!(code, 200, "{head}");
    let (code, head) = http_get(again_port, &format!("/api/kernels?token={token}"));
    assert_eq!(code, 200, "{head}");
    let kernels = http_body(again_port, &format!("/api/kernels?token={token}"));
    assert!(kernels.contains(kernel_id), "{kernels}");
    close_session(second, &second_socket);

    // --stop ends the server and its kernel.
    let stdout = assert_ok(&run(&mut s.airlock(&["jupyter", "gpu-node", "--stop"])));
    assert!(stdout.contains("stopped jupyter"), "{stdout}");
    let deadline = std::time::Instant::now() + std::time::Duration::from_mins(1);
    while running(kernel_pid) {
        assert!(
            std::time::Instant::now() < deadline,
            "the kernel outlived --stop"
        );
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    assert_eq!(jupyter_files(&runtime), Vec::<String>::new());
}

#[test]
fn remote_status_shows_version_environments_and_jupyter_servers() {
    let Some(venv) = ci_venv() else { return };
    let s = setup(None);
    assert_ok(&run(&mut s.airlock(&["remote", "install", "gpu-node"])));
    let status = || assert_ok(&run(&mut s.airlock(&["remote", "status", "gpu-node"])));
    // The README's way to run the installed airlock there: one quoted word, `~` the server's.
    let out = run(&mut s.airlock(&[
        "connect",
        "gpu-node",
        "--",
        "~/.local/bin/airlock --version",
    ]));
    assert_eq!(
        assert_ok(&out).trim(),
        format!("airlock {}", env!("CARGO_PKG_VERSION"))
    );

    let stdout = status();
    assert!(
        stdout.contains(&format!("airlock {}", env!("CARGO_PKG_VERSION"))),
        "{stdout}"
    );
    assert!(stdout.contains("no Jupyter servers"), "{stdout}");
    assert!(!stdout.contains(venv.to_str().unwrap()), "{stdout}");

    s.register_env(&venv);
    let stdout = status();
    let row = stdout
        .lines()
        .find(|l| l.starts_with("ci-venv "))
        .unwrap_or_else(|| panic!("no ci-venv environment in {stdout}"));
    assert!(row.ends_with(venv.to_str().unwrap()), "{row}");

    let (mut laptop, _laptop_group, _port, _token) = s.start_jupyter(&["--env", "ci-venv"]);
    // Ctrl-C: the tunnel closes, the server stays.
    let ctrl_c = Command::new("kill")
        .args(["-INT", "--", &format!("-{}", laptop.id())])
        .status()
        .unwrap();
    assert!(ctrl_c.success());
    laptop.wait().unwrap();
    let stdout = status();
    let server = stdout
        .lines()
        .find(|l| l.starts_with("jupyter "))
        .unwrap_or_else(|| panic!("no Jupyter server in {stdout}"));
    let pid: u32 = server
        .split_whitespace()
        .skip_while(|w| *w != "pid")
        .nth(1)
        .unwrap()
        .parse()
        .unwrap();
    let _server_group = KillGroupOnDrop(pid);
    assert!(server.contains("running"), "{server}");
    assert!(
        server.contains(&format!("env {}", venv.display())),
        "{server}"
    );

    assert_ok(&run(&mut s.airlock(&["jupyter", "gpu-node", "--stop"])));
    let stdout = status();
    assert!(stdout.contains("no Jupyter servers"), "{stdout}");
    assert!(!running(pid));
}
