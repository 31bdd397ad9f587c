//! The agent against an attacker: a client on the forwarded socket, another process of the same
//! user, a policy file caught mid-save. One test per promise of `SECURITY.md` ("The agent"),
//! each named for the attack it repels.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use std::io::{Read, Write};
use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use airlock_agent::client::Client;
use airlock_protocol::{Request, Response};
use airlock_test_support::{AirlockAgent, Chain, Home, KeyType, generate_key};
use zeroize::Zeroizing;

mod common;

use common::{EXE, bind, blob, eventually, new_key, ok, run, write_script};

fn fingerprint(key: &ssh_key::PrivateKey) -> String {
    key.public_key()
        .fingerprint(ssh_key::HashAlg::Sha256)
        .to_string()
}

/// The data `ssh-keygen -Y sign -n NAMESPACE` asks the agent to sign.
fn sshsig(namespace: &[u8]) -> Vec<u8> {
    let mut w = airlock_protocol::Writer::new();
    w.raw(b"SSHSIG")
        .string(namespace)
        .string(b"")
        .string(b"sha512")
        .string([7u8; 64]);
    w.into_bytes()
}

fn sign_request(key: &[u8], data: Vec<u8>) -> Request {
    Request::Sign(airlock_protocol::SignRequest {
        key_blob: key.to_vec(),
        data,
        flags: 0,
    })
}

fn policy_path(home: &Home) -> PathBuf {
    home.config_dir().join("airlock").join("policy.toml")
}

/// A policy whose every prefix up to the `[[key]]` line allows everything, and whose whole
/// text denies `fp` through any forwarded connection.
fn deny_forwarding_policy(fp: &str, edit: usize) -> (String, String) {
    let head = format!("# edit {edit}\n[defaults]\nforward = \"allow\"\n\n");
    let tail = format!("[[key]]\nfingerprint = \"{fp}\"\nuse-for = [\"*\"]\n");
    (head, tail)
}

fn write_policy(home: &Home, fp: &str) {
    let path = policy_path(home);
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    let (head, tail) = deny_forwarding_policy(fp, 0);
    std::fs::write(&path, format!("{head}{tail}")).unwrap();
}

/// An agent whose confirmations go to the askpass program `askpass` (forced usable).
fn agent_with_askpass(home: &Home, askpass: &Path) -> AirlockAgent {
    AirlockAgent::start_with(
        home,
        EXE,
        &home.runtime_dir().join("airlock-test.sock"),
        &[],
        &[
            ("SSH_ASKPASS", askpass.as_os_str()),
            ("SSH_ASKPASS_REQUIRE", "force".as_ref()),
        ],
    )
    .unwrap()
}

/// Item 1: a policy file saved by vim (rename away, write anew), truncated and rewritten, and
/// deleted and restored, while a forwarded client keeps asking: no signature and no key listed
/// at any moment, since the policy before and after each save denies both.
#[test]
fn a_policy_file_mid_save_never_lets_a_forwarded_client_in() {
    let home = Home::new().unwrap();
    let key = new_key();
    let fp = fingerprint(&key);
    write_policy(&home, &fp);
    let agent = AirlockAgent::start(&home, EXE).unwrap();
    Client::connect(agent.socket())
        .unwrap()
        .add(&key, "victim", None, false)
        .unwrap();

    let stop = Arc::new(AtomicBool::new(false));
    let signatures = Arc::new(AtomicUsize::new(0));
    let listed = Arc::new(AtomicUsize::new(0));
    let asked = Arc::new(AtomicUsize::new(0));
    let asker = {
        let (stop, signatures, listed, asked) = (
            Arc::clone(&stop),
            Arc::clone(&signatures),
            Arc::clone(&listed),
            Arc::clone(&asked),
        );
        let socket = agent.socket().to_path_buf();
        let key_blob = blob(&key);
        std::thread::spawn(move || {
            let host = new_key();
            let mut c = Client::connect(&socket).unwrap();
            assert_eq!(
                c.request(&bind(&host, &[1; 32], true)).unwrap(),
                Response::Success
            );
            while !stop.load(Ordering::Relaxed) {
                if let Response::Identities(ids) = c.request(&Request::RequestIdentities).unwrap() {
                    listed.fetch_add(ids.len(), Ordering::Relaxed);
                }
                if let Response::Signature(_) = c
                    .request(&sign_request(&key_blob, b"data".to_vec()))
                    .unwrap()
                {
                    signatures.fetch_add(1, Ordering::Relaxed);
                }
                asked.fetch_add(1, Ordering::Relaxed);
                std::thread::sleep(Duration::from_millis(5));
            }
        })
    };

    let path = policy_path(&home);
    let backup = path.with_extension("toml~");
    for edit in 1..=20 {
        let (head, tail) = deny_forwarding_policy(&fp, edit);
        if edit % 2 == 0 {
            // vim: rename the file away, write a new one, remove the backup.
            std::fs::rename(&path, &backup).unwrap();
            std::thread::sleep(Duration::from_millis(150));
            let mut f = std::fs::File::create(&path).unwrap();
            f.write_all(head.as_bytes()).unwrap();
            std::thread::sleep(Duration::from_millis(150));
            f.write_all(tail.as_bytes()).unwrap();
            drop(f);
            std::fs::remove_file(&backup).unwrap();
        } else {
            // truncate and write in place, in two writes.
            let mut f = std::fs::OpenOptions::new()
                .write(true)
                .truncate(true)
                .open(&path)
                .unwrap();
            std::thread::sleep(Duration::from_millis(150));
            f.write_all(head.as_bytes()).unwrap();
            std::thread::sleep(Duration::from_millis(150));
            f.write_all(tail.as_bytes()).unwrap();
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    // Deleted for a while, then restored.
    let text = std::fs::read_to_string(&path).unwrap();
    std::fs::remove_file(&path).unwrap();
    std::thread::sleep(Duration::from_millis(2500));
    std::fs::write(&path, text).unwrap();
    std::thread::sleep(Duration::from_millis(500));
    stop.store(true, Ordering::Relaxed);
    asker.join().unwrap();

    assert!(
        asked.load(Ordering::Relaxed) > 100,
        "the client barely asked"
    );
    assert_eq!(signatures.load(Ordering::Relaxed), 0, "signatures given");
    assert_eq!(listed.load(Ordering::Relaxed), 0, "keys listed");
    // Locally the key still works: the agent did not lock itself out either.
    let mut local = Client::connect(agent.socket()).unwrap();
    assert!(matches!(
        local
            .request(&sign_request(&blob(&key), b"data".to_vec()))
            .unwrap(),
        Response::Signature(_)
    ));
}

/// Item 1: `--policy FILE` naming a file that does not exist is an error, not "no policy".
#[test]
fn a_policy_flag_naming_a_missing_file_is_refused() {
    let home = Home::new().unwrap();
    let missing = home.path().join("nope").join("policy.toml");
    let mut agent = home
        .command(EXE)
        .args(["agent", "-D", "-a"])
        .arg(home.runtime_dir().join("a.sock"))
        .arg("--policy")
        .arg(&missing)
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    while agent.try_wait().unwrap().is_none() {
        if Instant::now() > deadline {
            let _ = agent.kill();
            panic!("the agent is serving without its policy file");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let out = agent.wait_with_output().unwrap();
    assert!(!out.status.success(), "started without its policy");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains(&missing.display().to_string()), "{err}");
}

/// Item 2, end to end through `ssh -A`: a process on the server appends a session bind it
/// signed itself that says "not forwarding", then tries to remove every key, lock the agent
/// with its own passphrase and add a key. All refused; the laptop's key is still there.
#[test]
fn a_forwarded_client_that_binds_itself_as_local_gets_no_key_management() {
    let chain = Chain::start(&["node-a"]).unwrap();
    let home = chain.home();
    let agent = AirlockAgent::start(home, EXE).unwrap();
    let k = generate_key(&home.ssh_dir(), "id", KeyType::Ed25519).unwrap();
    chain.authorize(&k.public_key_line().unwrap()).unwrap();
    ok(home
        .command_with_agent("ssh-add", agent.socket())
        .arg(&k.private_key));

    let own = new_key();
    let intruder = new_key();
    let frames = [
        bind(&own, &[9; 32], false),
        Request::RemoveAllIdentities,
        Request::Lock(Zeroizing::new(b"mine".to_vec())),
        Request::AddIdentity(Box::new(airlock_protocol::AddIdentity {
            key: Box::new(airlock_protocol::PrivateKeyMaterial::from_keypair(
                intruder.key_data(),
            )),
            comment: "intruder".into(),
            constraints: Vec::new(),
            constrained: false,
        })),
    ];
    let hex: String = frames
        .iter()
        .map(|f| {
            let bytes = f.try_encode().unwrap();
            let mut line: String = bytes.iter().fold(String::new(), |mut s, b| {
                use std::fmt::Write as _;
                let _ = write!(s, "{b:02x}");
                s
            });
            line.push('\n');
            line
        })
        .collect();
    let frames_file = home.write_file("frames.hex", hex).unwrap();
    let client = "import os, socket, sys\n\
        s = socket.socket(socket.AF_UNIX); s.connect(os.environ['SSH_AUTH_SOCK'])\n\
        for line in open(sys.argv[1]):\n\
        \x20   s.sendall(bytes.fromhex(line.strip()))\n\
        \x20   n = int.from_bytes(s.recv(4, socket.MSG_WAITALL), 'big')\n\
        \x20   print(s.recv(n, socket.MSG_WAITALL)[0])\n";
    let script = home.write_file("attack.py", client).unwrap();
    let out = ok(home
        .command_with_agent("ssh", agent.socket())
        .arg("-A")
        .args(chain.ssh_args("node-a"))
        .arg(format!(
            "python3 {} {}",
            script.display(),
            frames_file.display()
        )));
    let answers: Vec<&str> = out.lines().collect();
    // The bind itself is accepted (a further hop may follow a forwarding one); everything
    // after it is refused (5 = SSH_AGENT_FAILURE).
    assert_eq!(answers, ["6", "5", "5", "5"], "{out}");
    let listed = ok(home.command_with_agent("ssh-add", agent.socket()).arg("-l"));
    assert!(listed.contains(&k.fingerprint().unwrap()), "{listed}");
    assert!(!listed.contains("intruder"), "{listed}");

    // A session bind while the agent is locked is refused, as OpenSSH refuses it.
    let mut local = Client::connect(agent.socket()).unwrap();
    assert_eq!(
        local
            .request(&Request::Lock(Zeroizing::new(b"pw".to_vec())))
            .unwrap(),
        Response::Success
    );
    let mut other = Client::connect(agent.socket()).unwrap();
    assert_eq!(
        other.request(&bind(&own, &[3; 32], true)).unwrap(),
        Response::Failure
    );
    assert_eq!(
        local
            .request(&Request::Unlock(Zeroizing::new(b"pw".to_vec())))
            .unwrap(),
        Response::Success
    );
}

/// Item 3: while the askpass dialog is up, another process of the same user finds the pending
/// request on the control socket and allows it. The person's answer (here: no) must decide.
#[test]
fn a_process_of_the_user_cannot_answer_a_confirmation_meant_for_the_person() {
    let home = Home::new().unwrap();
    let askpass = write_script(&home, "askpass.sh", "sleep 3; exit 1");
    let agent = agent_with_askpass(&home, &askpass);
    let key = new_key();
    Client::connect(agent.socket())
        .unwrap()
        .add(&key, "confirmed", None, true)
        .unwrap();
    let control = agent.socket().with_extension("approve.sock");
    let attacker = std::thread::spawn(move || {
        let deadline = Instant::now() + Duration::from_secs(3);
        let mut answered = 0;
        while Instant::now() < deadline {
            if let Ok(mut s) = UnixStream::connect(&control) {
                let _ = s.write_all(b"{\"op\":\"list\"}\n");
                let mut buf = [0u8; 4096];
                let n = s.read(&mut buf).unwrap_or(0);
                let text = String::from_utf8_lossy(&buf[..n]).into_owned();
                if let Some(at) = text.find("\"id\":") {
                    let id: String = text[at + 5..]
                        .chars()
                        .take_while(char::is_ascii_digit)
                        .collect();
                    let _ = s.write_all(
                        format!("{{\"op\":\"answer\",\"id\":{id},\"allow\":true}}\n").as_bytes(),
                    );
                    let _ = s.read(&mut buf);
                    answered += 1;
                }
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        answered
    });
    let mut c = Client::connect(agent.socket()).unwrap();
    let answer = c
        .request(&sign_request(&blob(&key), b"data".to_vec()))
        .unwrap();
    let _ = attacker.join().unwrap();
    assert_eq!(
        answer,
        Response::Failure,
        "a process answered for the person"
    );
}

/// Item 3: `airlock approve` trusts only a control socket served by the user (or root). One
/// planted by another user where the agent's would be is refused before anything is read.
#[test]
fn approve_refuses_a_control_socket_served_by_another_user() {
    if !nix::unistd::geteuid().is_root() {
        eprintln!("skipped: needs root to serve a socket as another user");
        return;
    }
    let shared = tempfile::tempdir().unwrap();
    std::fs::set_permissions(shared.path(), std::fs::Permissions::from_mode(0o777)).unwrap();
    let agent_sock = shared.path().join("agent.sock");
    let control = shared.path().join("agent.approve.sock");
    let server = "import os, socket, sys\n\
        s = socket.socket(socket.AF_UNIX); s.bind(sys.argv[1]); os.chmod(sys.argv[1], 0o777); s.listen(4)\n\
        print('ready', flush=True)\n\
        c, _ = s.accept(); c.recv(100)\n\
        c.sendall(b'{\"pending\":[{\"id\":1,\"prompt\":\"Allow use of key planted?\",\"age_secs\":0,\"expires_in_secs\":9}]}\\n')\n\
        c.recv(100)\n";
    let mut planted = Command::new("runuser")
        .args(["-u", "nobody", "--", "python3", "-c", server])
        .arg(&control)
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut ready = [0u8; 5];
    planted
        .stdout
        .as_mut()
        .unwrap()
        .read_exact(&mut ready)
        .unwrap();
    let home = Home::new().unwrap();
    let out = run(home
        .command(EXE)
        .args(["approve", "--list", "-a"])
        .arg(&agent_sock));
    let _ = planted.kill();
    let _ = planted.wait();
    let said = String::from_utf8_lossy(&out.stdout);
    assert!(!out.status.success(), "approve trusted it: {said}");
    assert!(!said.contains("planted"), "{said}");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("uid"), "{err}");
}

/// Item 4: the user removes the key, or locks the agent, while a confirmation for it is on
/// screen; a "yes" that comes after must not produce a signature.
#[test]
fn a_confirmation_answered_after_the_key_is_removed_or_the_agent_locked_signs_nothing() {
    let home = Home::new().unwrap();
    let started = home.path().join("asked");
    let go = home.path().join("go");
    let askpass = write_script(
        &home,
        "askpass.sh",
        &format!(
            "touch {s}; while [ ! -f {g} ]; do sleep 0.02; done; exit 0",
            s = started.display(),
            g = go.display()
        ),
    );
    let agent = agent_with_askpass(&home, &askpass);
    for user_action in [
        Request::RemoveAllIdentities,
        Request::Lock(Zeroizing::new(b"pw".to_vec())),
    ] {
        let _ = std::fs::remove_file(&started);
        let _ = std::fs::remove_file(&go);
        let key = new_key();
        let mut local = Client::connect(agent.socket()).unwrap();
        local.add(&key, "confirmed", None, true).unwrap();
        let socket = agent.socket().to_path_buf();
        let key_blob = blob(&key);
        let signer = std::thread::spawn(move || {
            Client::connect(&socket)
                .unwrap()
                .request(&sign_request(&key_blob, b"data".to_vec()))
                .unwrap()
        });
        eventually("askpass is asking", || started.exists());
        assert_eq!(local.request(&user_action).unwrap(), Response::Success);
        std::fs::write(&go, "").unwrap();
        assert_eq!(
            signer.join().unwrap(),
            Response::Failure,
            "signed after {user_action:?}"
        );
        let _ = local.request(&Request::Unlock(Zeroizing::new(b"pw".to_vec())));
    }
}

/// Item 5: escape sequences in what a client sends (an SSHSIG namespace, a key comment) are
/// shown, never executed: not in the askpass prompt, not in `airlock audit`.
#[test]
fn escape_sequences_from_a_client_never_reach_a_terminal() {
    let home = Home::new().unwrap();
    let prompt_file = home.path().join("prompt.txt");
    let askpass = write_script(
        &home,
        "askpass.sh",
        &format!("printf '%s' \"$1\" > {}; exit 1", prompt_file.display()),
    );
    let key = new_key();
    write_policy(&home, &fingerprint(&key));
    let agent = agent_with_askpass(&home, &askpass);
    let evil = b"git\x1b[2K\x1b[1A\x1b[8m\x07\rhidden";
    let mut local = Client::connect(agent.socket()).unwrap();
    local
        .add(&key, "comment\x1b]0;pwned\x07\x1b[2K", None, true)
        .unwrap();
    // Local, confirmed: the prompt carries the namespace and the comment.
    assert_eq!(
        local
            .request(&sign_request(&blob(&key), sshsig(evil)))
            .unwrap(),
        Response::Failure
    );
    let prompt = std::fs::read(&prompt_file).unwrap();
    assert!(
        !prompt.contains(&0x1b) && !prompt.contains(&0x07),
        "{prompt:?}"
    );
    assert!(String::from_utf8_lossy(&prompt).contains("hidden"));
    // Forwarded: denied by the policy, and audited.
    let mut fwd = Client::connect(agent.socket()).unwrap();
    assert_eq!(
        fwd.request(&bind(&new_key(), &[2; 32], true)).unwrap(),
        Response::Success
    );
    assert_eq!(
        fwd.request(&sign_request(&blob(&key), sshsig(evil)))
            .unwrap(),
        Response::Failure
    );
    let mut table = String::new();
    eventually("the audit shows the denial", || {
        table = ok(home.command(EXE).args(["audit", "--denied"]));
        table.contains("hidden")
    });
    assert!(
        !table.contains('\x1b') && !table.contains('\x07') && !table.contains('\r'),
        "{table:?}"
    );
}

/// Item 6: one forwarded connection floods the audit log with denied requests carrying huge
/// namespaces. The record of what happened before the flood survives.
#[test]
fn a_flood_of_denials_does_not_push_the_history_out_of_the_audit_log() {
    let home = Home::new().unwrap();
    let key = new_key();
    write_policy(&home, &fingerprint(&key));
    let agent = AirlockAgent::start(&home, EXE).unwrap();
    let mut local = Client::connect(agent.socket()).unwrap();
    local.add(&key, "before-the-flood", None, false).unwrap();
    assert!(matches!(
        local
            .request(&sign_request(&blob(&key), sshsig(b"evidence")))
            .unwrap(),
        Response::Signature(_)
    ));
    let mut fwd = Client::connect(agent.socket()).unwrap();
    assert_eq!(
        fwd.request(&bind(&new_key(), &[2; 32], true)).unwrap(),
        Response::Success
    );
    let huge = vec![b'n'; 250 * 1024];
    for _ in 0..170 {
        assert_eq!(
            fwd.request(&sign_request(&blob(&key), sshsig(&huge)))
                .unwrap(),
            Response::Failure
        );
    }
    drop(fwd);
    drop(local);
    drop(agent); // stops the agent, which writes what is queued
    let audit = home.state_dir().join("airlock").join("audit.jsonl");
    let files = airlock_policy::AuditLog::files(&audit, 3);
    let all: String = files
        .iter()
        .map(|f| std::fs::read_to_string(f).unwrap_or_default())
        .collect();
    assert!(
        all.contains("evidence"),
        "the history before the flood is gone"
    );
    assert!(
        all.len() < 4 * 1024 * 1024,
        "{} bytes of audit for one connection's flood",
        all.len()
    );
}

/// Item 9: a client that starts a frame and never finishes it is disconnected, so slow
/// clients cannot hold the agent's connection slots.
#[test]
fn a_client_that_never_finishes_a_frame_is_disconnected() {
    let home = Home::new().unwrap();
    let agent = AirlockAgent::start(&home, EXE).unwrap();
    let mut s = UnixStream::connect(agent.socket()).unwrap();
    s.write_all(&[0, 0]).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(90))).unwrap();
    let mut buf = [0u8; 16];
    match s.read(&mut buf) {
        Ok(0) => {}
        other => panic!("the half-sent frame kept its connection: {other:?}"),
    }
}

/// Conformance: `kill -USR1` removes every key before the next request is answered (OpenSSH
/// 10), every time.
#[test]
fn sigusr1_removes_every_key_before_the_next_request() {
    let home = Home::new().unwrap();
    let agent = AirlockAgent::start(&home, EXE).unwrap();
    let pid = nix::unistd::Pid::from_raw(i32::try_from(agent.pid()).unwrap());
    let key = new_key();
    for round in 0..100 {
        let mut c = Client::connect(agent.socket()).unwrap();
        c.add(&key, "k", None, false).unwrap();
        nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGUSR1).unwrap();
        let listed = c.list().unwrap();
        assert!(
            listed.is_empty(),
            "round {round}: keys listed after SIGUSR1"
        );
    }
}

/// Conformance: started the way OpenSSH's test harness starts `ssh-agent`: `-P` allowlist
/// (accepted; airlock loads no provider code), a command without `--`, and two agents started
/// without `-a` each on a socket of its own.
#[test]
fn started_as_openssh_test_harness_starts_ssh_agent() {
    let home = Home::new().unwrap();
    let out = ok(home.command(EXE).args([
        "agent",
        "-P/*",
        "-t30",
        "sh",
        "-c",
        "echo sock=$SSH_AUTH_SOCK; ssh-add -l; echo rc=$?",
    ]));
    assert!(out.contains("sock=/"), "{out}");
    assert!(out.contains("rc=1"), "{out}");

    let start = || {
        let out = ok(home.command(EXE).args(["agent", "-s"]));
        let sock = out.split(['=', ';']).nth(1).unwrap_or_default().to_owned();
        let pid: i32 = out
            .split("SSH_AGENT_PID=")
            .nth(1)
            .and_then(|r| r.split(';').next())
            .and_then(|p| p.parse().ok())
            .unwrap();
        (sock, pid)
    };
    let (a, pid_a) = start();
    let (b, pid_b) = start();
    for sock in [&a, &b] {
        let out = run(home
            .command_with_agent("ssh-add", Path::new(sock))
            .arg("-l"));
        assert_eq!(out.status.code(), Some(1), "{sock} does not answer");
    }
    for pid in [pid_a, pid_b] {
        let _ = nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(pid),
            nix::sys::signal::Signal::SIGTERM,
        );
    }
    assert_ne!(a, b, "two agents share one socket");
}

/// Item 9: a keys directory another user can write is refused, as ssh refuses such a `~/.ssh`.
#[test]
fn a_keys_directory_others_can_write_is_refused() {
    let home = Home::new().unwrap();
    ok(home
        .command(EXE)
        .args(["key", "new", "proj", "--no-passphrase"]));
    let dir = home.ssh_dir().join("airlock");
    std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o777)).unwrap();
    let out = run(home.command(EXE).args(["key", "list"]));
    assert!(
        !out.status.success(),
        "a world-writable keys directory was used"
    );
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains(&dir.display().to_string()), "{err}");
}

/// The offsets in the agent's writable memory where any of `secrets` (32 bytes each) occurs.
fn secrets_in_memory(pid: u32, secrets: &[[u8; 32]]) -> usize {
    use std::os::unix::fs::FileExt;
    let maps = std::fs::read_to_string(format!("/proc/{pid}/maps")).unwrap();
    let mem = std::fs::File::open(format!("/proc/{pid}/mem")).unwrap();
    let mut first = [false; 256];
    for s in secrets {
        first[usize::from(s[0])] = true;
    }
    let mut found = 0;
    for line in maps.lines() {
        let mut fields = line.split_whitespace();
        let (Some(range), Some(perms)) = (fields.next(), fields.next()) else {
            continue;
        };
        if !perms.starts_with("rw") {
            continue;
        }
        let (start, end) = range.split_once('-').unwrap();
        let start = u64::from_str_radix(start, 16).unwrap();
        let end = u64::from_str_radix(end, 16).unwrap();
        let mut buf = vec![0u8; usize::try_from(end - start).unwrap()];
        if mem.read_exact_at(&mut buf, start).is_err() {
            continue;
        }
        for i in 0..buf.len().saturating_sub(31) {
            if first[usize::from(buf[i])] {
                let window = &buf[i..i + 32];
                let n = secrets.iter().filter(|s| s[..] == *window).count();
                if n > 0 && std::env::var_os("SCAN_DEBUG").is_some() {
                    eprintln!("found at {:x} in {line}", start + i as u64);
                }
                found += n;
            }
        }
    }
    found
}

/// Item 8: a private key leaves no copies. While a client signs, the key is in the agent's
/// memory (which shows the scan finds it); once it has been idle it is shielded (encrypted
/// under a random pre-key) and no seed is in memory; after `ssh-add -D` none either.
#[test]
fn private_keys_are_shielded_at_rest_and_leave_no_copies_when_removed() {
    if !nix::unistd::geteuid().is_root() {
        eprintln!("skipped: needs root to read the (non-dumpable) agent's memory");
        return;
    }
    let home = Home::new().unwrap();
    let agent = AirlockAgent::start(&home, EXE).unwrap();
    let keys: Vec<ssh_key::PrivateKey> = (0..20).map(|_| new_key()).collect();
    let seeds: Vec<[u8; 32]> = keys
        .iter()
        .map(|k| k.key_data().ed25519().unwrap().private.to_bytes())
        .collect();
    let mut c = Client::connect(agent.socket()).unwrap();
    for k in &keys {
        c.add(k, "k", None, false).unwrap();
        assert!(matches!(
            c.request(&sign_request(&blob(k), b"data".to_vec()))
                .unwrap(),
            Response::Signature(_)
        ));
    }
    // In use: a client keeps signing with the first key, so it stays unshielded.
    let stop = Arc::new(AtomicBool::new(false));
    let busy = {
        let stop = Arc::clone(&stop);
        let socket = agent.socket().to_path_buf();
        let key_blob = blob(&keys[0]);
        std::thread::spawn(move || {
            let mut c = Client::connect(&socket).unwrap();
            while !stop.load(Ordering::Relaxed) {
                let _ = c.request(&sign_request(&key_blob, b"busy".to_vec()));
            }
        })
    };
    std::thread::sleep(Duration::from_millis(100));
    assert!(
        secrets_in_memory(agent.pid(), &seeds[..1]) > 0,
        "the scan cannot see a key in use: it would prove nothing"
    );
    stop.store(true, Ordering::Relaxed);
    busy.join().unwrap();
    // Idle: shielded again, no seed left anywhere.
    eventually("every key is shielded", || {
        secrets_in_memory(agent.pid(), &seeds) == 0
    });
    // Removed: still none.
    assert_eq!(
        c.request(&Request::RemoveAllIdentities).unwrap(),
        Response::Success
    );
    assert_eq!(secrets_in_memory(agent.pid(), &seeds), 0);
}
