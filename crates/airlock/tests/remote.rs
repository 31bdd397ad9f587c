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
/// Writes a policy for a chain and key.
type PolicyText<'a> = &'a dyn Fn(&Chain, &KeyPair) -> String;

fn setup(policy: Option<PolicyText<'_>>) -> Setup {
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

/// `GET path` on 127.0.0.1:port: the status code and the response head.
fn http_get(port: u16, path: &str) -> (u16, String) {
    use std::io::{Read as _, Write as _};
    let mut stream = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut bytes = Vec::new();
    stream.read_to_end(&mut bytes).unwrap();
    let response = text(&bytes);
    let head = response
        .split("\r\n\r\n")
        .next()
        .unwrap_or_default()
        .to_owned();
    let code = head
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or_else(|| panic!("not an HTTP response: {head}"));
    (code, head)
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
    use std::io::BufRead as _;
    use std::os::unix::process::CommandExt as _;
    let Some(venv) = ci_venv() else { return };
    let s = setup(Some(&forward_through("[\"gpu-node\"]")));
    assert_ok(&s.install());
    let runtime = s.remote.path().join("run");
    let bin = s.remote_dir_arg();
    let runtime_arg = runtime.to_str().unwrap().to_owned();
    let common = ["--remote-dir", &bin, "--runtime-dir", &runtime_arg];

    let link = s.link();
    let mut cmd = s.airlock(&["jupyter", "gpu-node", "-p", venv.to_str().unwrap()]);
    cmd.args(["--dir", s.remote.path().to_str().unwrap(), "--no-browser"])
        .args(["--agent-link", link.to_str().unwrap()])
        .args(common)
        .stdout(std::process::Stdio::piped())
        // Its own process group, so that the test can "press Ctrl-C" on it and its ssh.
        .process_group(0);
    let mut laptop = cmd.spawn().unwrap();
    let _laptop_group = KillGroupOnDrop(laptop.id());
    let mut line = String::new();
    std::io::BufReader::new(laptop.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let url = line.trim();
    let rest = url
        .strip_prefix("http://127.0.0.1:")
        .unwrap_or_else(|| panic!("no URL printed, got {url:?}"));
    let (port, path) = rest.split_once('/').unwrap();
    let port: u16 = port.parse().unwrap();
    assert!(path.starts_with("lab?token="), "{url}");

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
    let token = path.strip_prefix("lab?token=").unwrap();
    assert!(!text(&cmdline).contains(token));

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

    let mut list = s.airlock(&["jupyter", "gpu-node", "--list"]);
    let stdout = assert_ok(&run(list.args(common)));
    assert!(stdout.contains(&format!("pid {pid} running")), "{stdout}");

    let mut stop = s.airlock(&["jupyter", "gpu-node", "--stop"]);
    let stdout = assert_ok(&run(stop.args(common)));
    assert!(stdout.contains("stopped jupyter"), "{stdout}");
    assert!(!running(pid), "jupyter still runs after --stop");
    assert_eq!(jupyter_files(&runtime), Vec::<String>::new());
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
}
