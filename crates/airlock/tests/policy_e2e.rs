//! The forwarding policy end to end on loopback with real sshd: laptop → gpu-node →
//! {git-server, other-host}, with only a policy file (no `ssh-add -h`), for `airlock agent` and
//! for `airlock guard` in front of OpenSSH's `ssh-agent`.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use std::path::PathBuf;
use std::process::{Command, Output};

use airlock_test_support::{
    AirlockAgent, Chain, Home, KeyPair, KeyType, OpenSshAgent, SshdBuilder, generate_key,
    shell_word,
};

const EXE: &str = env!("CARGO_BIN_EXE_airlock");

fn run(cmd: &mut Command) -> Output {
    cmd.output()
        .unwrap_or_else(|e| panic!("cannot run {cmd:?}: {e}"))
}

fn succeeds(cmd: &mut Command) -> bool {
    let out = run(cmd);
    if !out.status.success() {
        eprintln!("{cmd:?} failed: {}", String::from_utf8_lossy(&out.stderr));
    }
    out.status.success()
}

struct Setup {
    chain: Chain,
    key: KeyPair,
    audit: PathBuf,
    // Whichever agent the clients talk to, and what must live as long as it.
    socket: PathBuf,
    _agents: (Option<AirlockAgent>, Option<OpenSshAgent>),
    // The daemonised guard of this setup, killed on drop.
    guard_pid: Option<i32>,
}

fn policy_text(chain: &Chain, key: &KeyPair, sign: &str) -> String {
    format!(
        "[defaults]\nforward = \"deny\"\nknown-hosts = [{kh:?}]\n\n[[key]]\nfingerprint = {fp:?}\n\
         forward-through = [\"gpu-node\"]\nuse-for = [\"git-server\", \"gpu-node\"]\nsign = {sign}\n",
        kh = chain.known_hosts().display().to_string(),
        fp = key.fingerprint().unwrap(),
    )
}

fn setup(guard: bool, sign: &str) -> Setup {
    let chain = Chain::start(&["gpu-node", "git-server", "other-host"]).unwrap();
    let home = chain.home();
    let key = generate_key(&home.ssh_dir(), "ai-project", KeyType::Ed25519).unwrap();
    chain.authorize(&key.public_key_line().unwrap()).unwrap();
    let policy = home
        .write_file(
            ".config/airlock/policy.toml",
            policy_text(&chain, &key, sign),
        )
        .unwrap();
    let audit = home.state_dir().join("airlock/audit.jsonl");
    let args = [
        "--policy",
        policy.to_str().unwrap(),
        "--audit",
        audit.to_str().unwrap(),
    ];
    let (socket, agents, guard_pid) = if guard {
        let upstream = OpenSshAgent::start(home).unwrap();
        let sock = home.runtime_dir().join("guard.sock");
        let mut cmd = home.command(EXE);
        cmd.args([
            "guard",
            "-a",
            sock.to_str().unwrap(),
            "--upstream",
            upstream.socket().to_str().unwrap(),
        ])
        .args(args);
        // Daemonised: its pid comes back in the output; it is killed with the upstream below.
        let out = run(&mut cmd);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        let pid: i32 = text
            .split("SSH_AGENT_PID=")
            .nth(1)
            .unwrap()
            .split(';')
            .next()
            .unwrap()
            .parse()
            .unwrap();
        (sock, (None, Some(upstream)), Some(pid))
    } else {
        let sock = home.runtime_dir().join("agent.sock");
        let agent = AirlockAgent::start_with(home, EXE, &sock, &args, &[]).unwrap();
        (sock, (Some(agent), None), None)
    };
    assert!(succeeds(
        home.command_with_agent("ssh-add", &socket)
            .arg(&key.private_key)
    ));
    // A personal key with no rule, accepted only by other-host: usable locally, never through
    // a forwarded connection (defaults: forward = "deny").
    let personal = generate_key(&home.ssh_dir(), "personal", KeyType::Ed25519).unwrap();
    chain
        .node("other-host")
        .authorize(&personal.public_key_line().unwrap())
        .unwrap();
    assert!(succeeds(
        home.command_with_agent("ssh-add", &socket)
            .arg(&personal.private_key)
    ));
    Setup {
        chain,
        key,
        audit,
        socket,
        _agents: agents,
        guard_pid,
    }
}

impl Drop for Setup {
    fn drop(&mut self) {
        if let Some(pid) = self.guard_pid {
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(pid),
                nix::sys::signal::Signal::SIGTERM,
            );
        }
    }
}

impl Setup {
    fn ssh(&self, forward: bool, host: &str) -> Command {
        let mut c = self.chain.home().command_with_agent("ssh", &self.socket);
        if forward {
            c.arg("-A");
        }
        c.args(self.chain.ssh_args(host));
        c
    }

    fn hop(&self, via: &str, to: &str) -> bool {
        succeeds(
            self.ssh(true, via)
                .arg("ssh")
                .args(self.chain.remote_ssh_args(via, to))
                .arg("true"),
        )
    }

    fn audit_lines(&self) -> Vec<serde_json::Value> {
        settled_audit(&self.audit)
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect()
    }
}

/// The audit log once the agent's writer thread has caught up: it appends a few microseconds
/// after each answer, so read until two reads a moment apart agree.
fn settled_audit(path: &std::path::Path) -> String {
    let mut last = std::fs::read_to_string(path).unwrap_or_default();
    loop {
        std::thread::sleep(std::time::Duration::from_millis(200));
        let now = std::fs::read_to_string(path).unwrap_or_default();
        if now == last {
            return now;
        }
        last = now;
    }
}

fn matrix(guard: bool) {
    let s = setup(guard, "[\"ssh-auth\", \"git\"]");
    // Direct login to a host in use-for.
    assert!(
        succeeds(s.ssh(false, "gpu-node").arg("true")),
        "laptop > gpu-node"
    );
    // laptop > gpu-node > git-server: permitted.
    assert!(
        s.hop("gpu-node", "git-server"),
        "gpu-node > git-server is in the policy"
    );
    // laptop > gpu-node > other-host: other-host is not in use-for.
    assert!(
        !s.hop("gpu-node", "other-host"),
        "other-host is outside use-for"
    );
    // laptop > other-host (with the personal key) > git-server: other-host is not in
    // forward-through, and the personal key has no rule, so nothing may be used beyond it.
    assert!(
        succeeds(s.ssh(false, "other-host").arg("true")),
        "personal key logs in locally"
    );
    assert!(
        !s.hop("other-host", "git-server"),
        "other-host is not a forward-through host"
    );
    // Direct login with the project key to a host outside use-for.
    let project_pub = format!("{}.pub", s.key.private_key.display());
    assert!(
        !succeeds(
            s.chain
                .home()
                .command_with_agent("ssh", &s.socket)
                .args(["-o", "IdentitiesOnly=yes", "-i", &project_pub])
                .args(s.chain.ssh_args("other-host"))
                .arg("true")
        ),
        "other-host is outside use-for"
    );

    // git clone and push of a private repository on git-server, from gpu-node.
    let work = tempfile::tempdir().unwrap();
    let bare = work.path().join("p.git");
    assert!(succeeds(
        Command::new("git")
            .args(["init", "-q", "--bare", "-b", "main"])
            .arg(&bare)
    ));
    let git_ssh = format!(
        "ssh {}",
        s.chain.remote_ssh_args("gpu-node", "git-server")[..4].join(" ")
    );
    let script = format!(
        "set -e; export GIT_SSH_COMMAND={}; git clone -q git-server:{} {c}; cd {c}; git -c user.email=a@b -c user.name=a commit -q --allow-empty -m one; git push -q origin HEAD:main",
        shell_word(&git_ssh),
        bare.display(),
        c = work.path().join("c").display()
    );
    assert!(
        succeeds(s.ssh(true, "gpu-node").arg(script)),
        "git through the forwarded agent"
    );

    // A second process on gpu-node using the forwarded socket directly cannot sign: a raw SSHSIG
    // in a namespace the policy does not list, and a userauth for other-host.
    let pubkey = format!("{}.pub", s.key.private_key.display());
    let sneaky = format!(
        "echo x > /tmp/airlock-sneaky-$$; ssh-keygen -Y sign -n file -f {pubkey} /tmp/airlock-sneaky-$$"
    );
    assert!(
        !succeeds(s.ssh(true, "gpu-node").arg(sneaky)),
        "SSHSIG 'file' through the forwarded socket"
    );

    // git commit -S: namespace "git" is listed, so signing works locally and through gpu-node.
    let repo = work.path().join("signed");
    assert!(succeeds(
        Command::new("git").args(["init", "-q"]).arg(&repo)
    ));
    let sign_commit = |dir: &std::path::Path| {
        format!(
            "cd {} && git -c gpg.format=ssh -c user.signingkey={pubkey} -c user.email=a@b -c user.name=a commit -q -S --allow-empty -m signed",
            dir.display()
        )
    };
    assert!(
        succeeds(
            s.chain
                .home()
                .command_with_agent("sh", &s.socket)
                .arg("-c")
                .arg(sign_commit(&repo))
        ),
        "git commit -S locally"
    );
    assert!(
        succeeds(s.ssh(true, "gpu-node").arg(sign_commit(&repo))),
        "git commit -S on gpu-node"
    );

    // Each decision is in the audit log, with the chain named.
    let lines = s.audit_lines();
    // Towards other-host the key is not even offered (identities are filtered for the bound
    // destination), so the denial is recorded for the listing.
    let denied_other = lines.iter().any(|l| {
        l["decision"] == "deny"
            && (l["operation"] == "sign" || l["operation"] == "list")
            && l["chain"].as_array().is_some_and(|c| {
                c.iter()
                    .any(|h| h["names"].to_string().contains("other-host"))
            })
    });
    assert!(
        denied_other,
        "a denied sign towards other-host is audited: {lines:#?}"
    );
    let allowed_git = lines.iter().any(|l| {
        l["decision"] == "allow"
            && l["chain"].as_array().is_some_and(|c| {
                c.len() == 2
                    && c[0]["names"].to_string().contains("gpu-node")
                    && c[0]["forwarded"] == true
                    && c[1]["names"].to_string().contains("git-server")
            })
    });
    assert!(
        allowed_git,
        "the permitted chain gpu-node > git-server is audited: {lines:#?}"
    );
    let sshsig = lines
        .iter()
        .any(|l| l["namespace"] == "git" && l["decision"] == "allow");
    assert!(sshsig, "the git signature is audited with its namespace");
    for l in &lines {
        let text = l.to_string();
        assert!(
            !text.contains("PRIVATE"),
            "no key material in the audit log"
        );
    }
}

#[test]
fn policy_matrix_with_the_airlock_agent() {
    matrix(false);
}

#[test]
fn policy_matrix_with_the_guard_in_front_of_openssh_agent() {
    matrix(true);
}

#[test]
fn sign_list_without_git_refuses_commit_signing() {
    let s = setup(false, "[\"ssh-auth\"]");
    let work = tempfile::tempdir().unwrap();
    let repo = work.path().join("r");
    assert!(succeeds(
        Command::new("git").args(["init", "-q"]).arg(&repo)
    ));
    let cmd = format!(
        "cd {} && git -c gpg.format=ssh -c user.signingkey={}.pub -c user.email=a@b -c user.name=a commit -q -S --allow-empty -m x",
        repo.display(),
        s.key.private_key.display()
    );
    assert!(!succeeds(
        s.chain
            .home()
            .command_with_agent("sh", &s.socket)
            .arg("-c")
            .arg(cmd)
    ));
    // ssh still works.
    assert!(succeeds(s.ssh(false, "gpu-node").arg("true")));
}

/// laptop → gpu-node → git-server with a policy that asks before any forwarded use.
struct Confirming {
    chain: Chain,
    key: KeyPair,
    policy: PathBuf,
}

impl Confirming {
    fn start() -> Self {
        let chain = Chain::start(&["gpu-node", "git-server"]).unwrap();
        let home = chain.home();
        let key = generate_key(&home.ssh_dir(), "ai-project", KeyType::Ed25519).unwrap();
        chain.authorize(&key.public_key_line().unwrap()).unwrap();
        let policy = home
            .write_file(
                ".config/airlock/policy.toml",
                format!(
                    "{}confirm = \"forwarded\"\n",
                    policy_text(&chain, &key, "[\"ssh-auth\"]")
                ),
            )
            .unwrap();
        Self { chain, key, policy }
    }
}

/// An airlock agent on `sock` with `policy`, `extra` arguments, `env`, and `key` added.
fn agent_with_key(
    home: &Home,
    policy: &std::path::Path,
    sock: &std::path::Path,
    extra: &[&str],
    env: &[(&str, &std::ffi::OsStr)],
    key: &KeyPair,
) -> AirlockAgent {
    let mut args = vec!["--policy", policy.to_str().unwrap()];
    args.extend(extra);
    let agent = AirlockAgent::start_with(home, EXE, sock, &args, env).unwrap();
    assert!(succeeds(
        home.command_with_agent("ssh-add", sock)
            .arg(&key.private_key)
    ));
    agent
}

/// `confirm = "forwarded"`: a forwarded use asks through SSH_ASKPASS with the hop chain named;
/// a yes lets it through, a no and an unanswered prompt (after the timeout) refuse it, and a
/// direct login is not asked about.
#[test]
fn confirm_forwarded_asks_with_the_chain_and_times_out() {
    let Confirming { chain, key, policy } = Confirming::start();
    let home = chain.home();
    let log = home.path().join("asked.log");
    let script = |name: &str, body: &str| {
        let p = home
            .write_file(
                name,
                format!("#!/bin/sh\necho \"$1\" >> {}\n{body}\n", log.display()),
            )
            .unwrap();
        std::fs::set_permissions(&p, std::os::unix::fs::PermissionsExt::from_mode(0o700)).unwrap();
        p
    };
    let yes = script("yes.sh", "exit 0");
    let no = script("no.sh", "exit 1");
    let slow = script("slow.sh", "sleep 20; exit 0");
    for (askpass, allowed) in [(&yes, true), (&no, false), (&slow, false)] {
        let sock = home.runtime_dir().join(format!(
            "c-{}.sock",
            askpass.file_stem().unwrap().to_string_lossy()
        ));
        let env: [(&str, &std::ffi::OsStr); 3] = [
            ("SSH_ASKPASS", askpass.as_os_str()),
            ("SSH_ASKPASS_REQUIRE", std::ffi::OsStr::new("force")),
            ("AIRLOCK_CONFIRM_TIMEOUT", std::ffi::OsStr::new("2")),
        ];
        let agent = agent_with_key(home, &policy, &sock, &[], &env, &key);
        let ssh = |fwd: bool| {
            let mut c = home.command_with_agent("ssh", agent.socket());
            if fwd {
                c.arg("-A");
            }
            c
        };
        // A direct login is not forwarded: no prompt needed, whatever askpass would say.
        assert!(succeeds(
            ssh(false).args(chain.ssh_args("gpu-node")).arg("true")
        ));
        let hop = succeeds(
            ssh(true)
                .args(chain.ssh_args("gpu-node"))
                .arg("ssh")
                .args(chain.remote_ssh_args("gpu-node", "git-server"))
                .arg("true"),
        );
        assert_eq!(hop, allowed, "askpass {}", askpass.display());
    }
    let asked = std::fs::read_to_string(&log).unwrap();
    assert!(
        asked.contains("gpu-node") && asked.contains("git-server"),
        "the prompt names the chain: {asked}"
    );
    assert!(asked.contains("[forwarded]"), "{asked}");
}

/// Without any askpass, and with `--approve-in-terminal` chosen at start, a confirmation waits
/// for `airlock approve` in a local terminal: the
/// request is listed with its hop chain, `--allow` lets it through, an interactive "n" refuses
/// it, and a request nobody answers is refused after the timeout and leaves the list. While one
/// request waits, other clients are served.
#[test]
fn approve_answers_confirmations_from_a_terminal() {
    let Confirming { chain, key, policy } = Confirming::start();
    let home = chain.home();
    let start = |name: &str, timeout: &str| {
        let sock = home.runtime_dir().join(format!("{name}.sock"));
        let env: [(&str, &std::ffi::OsStr); 2] = [
            ("SSH_ASKPASS_REQUIRE", std::ffi::OsStr::new("never")),
            ("AIRLOCK_CONFIRM_TIMEOUT", std::ffi::OsStr::new(timeout)),
        ];
        // Terminal approval is chosen explicitly at start.
        agent_with_key(home, &policy, &sock, &["--approve-in-terminal"], &env, &key)
    };
    let hop = |agent: &AirlockAgent| {
        home.command_with_agent("ssh", agent.socket())
            .arg("-A")
            .args(chain.ssh_args("gpu-node"))
            .arg("ssh")
            .args(chain.remote_ssh_args("gpu-node", "git-server"))
            .arg("true")
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap()
    };
    let pending = |agent: &AirlockAgent| -> Vec<serde_json::Value> {
        let out = run(Command::new(EXE)
            .args(["approve", "--list", "--json", "-a"])
            .arg(agent.socket())
            .env("HOME", home.path()));
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        serde_json::from_slice::<Vec<serde_json::Value>>(&out.stdout).unwrap()
    };
    let wait_for_request = |agent: &AirlockAgent| -> (u64, String) {
        let deadline = std::time::Instant::now() + std::time::Duration::from_mins(1);
        loop {
            if let Some(p) = pending(agent).first() {
                return (
                    p["id"].as_u64().unwrap(),
                    p["prompt"].as_str().unwrap().to_owned(),
                );
            }
            assert!(
                std::time::Instant::now() < deadline,
                "no confirmation request appeared"
            );
            std::thread::sleep(std::time::Duration::from_millis(100));
        }
    };

    let agent = start("approve", "120");
    // Allowed with --allow, found through SSH_AUTH_SOCK.
    let mut child = hop(&agent);
    let (id, prompt) = wait_for_request(&agent);
    assert!(
        prompt.contains("gpu-node")
            && prompt.contains("git-server")
            && prompt.contains("[forwarded]"),
        "the request names the chain: {prompt}"
    );
    // Another client is served while the request waits: a direct login needs no confirmation.
    assert!(succeeds(
        home.command_with_agent("ssh", agent.socket())
            .args(chain.ssh_args("gpu-node"))
            .arg("true")
    ));
    let out = run(home.command_with_agent(EXE, agent.socket()).args([
        "approve",
        "--allow",
        &id.to_string(),
    ]));
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(child.wait().unwrap().success(), "allowed hop failed");
    assert!(pending(&agent).is_empty());
    // Answering it again says it is not waiting.
    let again = run(home.command_with_agent(EXE, agent.socket()).args([
        "approve",
        "--deny",
        &id.to_string(),
    ]));
    assert!(!again.status.success());
    assert!(
        String::from_utf8_lossy(&again.stderr).contains("is waiting"),
        "{}",
        String::from_utf8_lossy(&again.stderr)
    );

    // Refused interactively: "n" on standard input.
    let mut child = hop(&agent);
    let (id, _) = wait_for_request(&agent);
    let mut approve = Command::new(EXE)
        .args(["approve", "-a"])
        .arg(agent.socket())
        .env("HOME", home.path())
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    std::io::Write::write_all(approve.stdin.as_mut().unwrap(), b"n\n").unwrap();
    let out = approve.wait_with_output().unwrap();
    let shown = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success());
    assert!(
        shown.contains(&format!("request {id}")) && shown.contains("Allow? [y/N]"),
        "{shown}"
    );
    assert!(shown.contains("denied"), "{shown}");
    assert!(!child.wait().unwrap().success(), "denied hop succeeded");

    // Unanswered: refused after the timeout, and gone from the list.
    drop(agent);
    let agent = start("approve-timeout", "2");
    let mut child = hop(&agent);
    wait_for_request(&agent);
    assert!(!child.wait().unwrap().success(), "unanswered hop succeeded");
    assert!(pending(&agent).is_empty());
    let audit = settled_audit(&home.path().join(".local/state/airlock/audit.jsonl"));
    assert!(
        audit.contains("confirm-allow") && audit.contains("confirm-deny"),
        "{audit}"
    );
}

/// Servers that present host certificates, signed the way `ssh-keygen -s CA -h` signs by default
/// (valid forever), known only through an `@cert-authority` line: the session binds carry the
/// certificates, the policy names the hops through the CA, and the forwarded hop works.
#[test]
fn host_certificates_valid_forever_are_named_through_the_ca() {
    let home = Home::new().unwrap();
    let ca = generate_key(home.path(), "host-ca", KeyType::Ed25519).unwrap();
    let builder = SshdBuilder::default().host_certificate(&ca.private_key, "gpu-node,git-server");
    let chain = Chain::start_in_with(home, &["gpu-node", "git-server"], &builder).unwrap();
    let home = chain.home();
    // Only the CA: ssh must verify the certificates to get in.
    let ca_line = ca.public_key_line().unwrap();
    home.write_known_hosts(&format!("@cert-authority gpu-node,git-server {ca_line}\n"))
        .unwrap();
    let key = generate_key(&home.ssh_dir(), "ai-project", KeyType::Ed25519).unwrap();
    chain.authorize(&key.public_key_line().unwrap()).unwrap();
    let policy = home
        .write_file(
            ".config/airlock/policy.toml",
            policy_text(&chain, &key, "[\"ssh-auth\"]"),
        )
        .unwrap();
    let audit = home.path().join("audit.jsonl");
    let sock = home.runtime_dir().join("cert.sock");
    let agent = AirlockAgent::start_with(
        home,
        EXE,
        &sock,
        &[
            "--policy",
            policy.to_str().unwrap(),
            "--audit",
            audit.to_str().unwrap(),
        ],
        &[],
    )
    .unwrap();
    assert!(succeeds(
        home.command_with_agent("ssh-add", agent.socket())
            .arg(&key.private_key)
    ));
    let out = run(home
        .command_with_agent("ssh", agent.socket())
        .arg("-A")
        .args(chain.ssh_args("gpu-node"))
        .arg("ssh")
        .args(chain.remote_ssh_args("gpu-node", "git-server"))
        .arg("true"));
    assert!(
        out.status.success(),
        "forwarded hop through certified hosts: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = settled_audit(&audit);
    let hop = text
        .lines()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap())
        .find(|v| v["operation"] == "sign" && v["chain"].as_array().is_some_and(|c| c.len() == 2))
        .unwrap_or_else(|| panic!("no signature through the hop in the audit log:\n{text}"));
    assert_eq!(hop["decision"], "allow", "{hop}");
    // Both certificates name both hosts (one CA signed them for "gpu-node,git-server").
    let names = |i: usize| hop["chain"][i]["names"].to_string();
    assert!(names(0).contains("\"gpu-node\""), "{hop}");
    assert!(names(1).contains("\"git-server\""), "{hop}");
    assert_eq!(hop["chain"][0]["forwarded"], true, "{hop}");
}
