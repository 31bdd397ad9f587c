//! `airlock demo`: the workflow end to end on loopback, with throwaway servers.
//!
//! A project key, the airlock agent, a "gpu node", a "git server" and an "other host" as
//! throwaway `sshd`s; the key is forwarded to the gpu node only for the git server; a private
//! repository is cloned and pushed from the node; a hop to the other host and key management
//! through the forwarded socket are refused. Everything it starts is stopped and removed.

mod lab;

use std::os::unix::fs::DirBuilderExt as _;
use std::path::Path;
use std::process::{Child, Command, ExitCode, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};

use lab::{run_quiet, start_server, write_client_config};

/// Run the end-to-end demo on loopback.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Keep the temporary directory (keys, configs, logs) for inspection.
    #[arg(long)]
    pub keep: bool,
}

struct Agent(Child);

impl Drop for Agent {
    fn drop(&mut self) {
        untrack(self.0.id());
        let _ = nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(i32::try_from(self.0.id()).unwrap_or(i32::MAX)),
            nix::sys::signal::Signal::SIGTERM,
        );
        let _ = self.0.wait();
    }
}

/// The long-lived processes the demo started (servers, agent, Jupyter), as (pid, is a process
/// group leader): what Ctrl-C must stop.
static STARTED: std::sync::Mutex<Vec<(u32, bool)>> = std::sync::Mutex::new(Vec::new());

/// Set when Ctrl-C arrived: the story stops talking, the interrupt thread ends the process.
static INTERRUPTED: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

fn interrupted() -> bool {
    INTERRUPTED.load(std::sync::atomic::Ordering::SeqCst)
}

fn track(pid: u32, group: bool) {
    if let Ok(mut v) = STARTED.lock() {
        v.push((pid, group));
    }
}

fn untrack(pid: u32) {
    if let Ok(mut v) = STARTED.lock() {
        v.retain(|(p, _)| *p != pid);
    }
}

/// Ctrl-C (or SIGTERM): stop what the demo started, remove its directory (unless --keep) and
/// exit 130 at once. Handlers, not a blocked mask: the programs the demo runs inherit a signal
/// mask, and must still stop on SIGINT and SIGTERM.
fn on_interrupt(dir: std::path::PathBuf, keep: bool) -> anyhow::Result<()> {
    use nix::sys::signal::{Signal, kill, killpg};
    use tokio::signal::unix::{SignalKind, signal};
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_io()
        .build()
        .context("cannot watch for Ctrl-C")?;
    let (mut int, mut term) = {
        let _entered = runtime.enter();
        (
            signal(SignalKind::interrupt()).context("cannot watch for Ctrl-C")?,
            signal(SignalKind::terminate()).context("cannot watch for SIGTERM")?,
        )
    };
    std::thread::spawn(move || {
        let name = runtime.block_on(async {
            tokio::select! {
                _ = int.recv() => "SIGINT",
                _ = term.recv() => "SIGTERM",
            }
        });
        INTERRUPTED.store(true, std::sync::atomic::Ordering::SeqCst);
        let started = STARTED.lock().map(|v| v.clone()).unwrap_or_default();
        for (pid, group) in started {
            let pid = nix::unistd::Pid::from_raw(i32::try_from(pid).unwrap_or(i32::MAX));
            if group {
                let _ = killpg(pid, Signal::SIGTERM);
            }
            let _ = kill(pid, Signal::SIGTERM);
        }
        std::thread::sleep(Duration::from_millis(200));
        if keep {
            println!(
                "\ninterrupted ({name}): servers and agent stopped; kept {}",
                dir.display()
            );
        } else {
            let _ = std::fs::remove_dir_all(&dir);
            println!(
                "\ninterrupted ({name}): servers and agent stopped; removed {}",
                dir.display()
            );
        }
        std::process::exit(130);
    });
    Ok(())
}

/// Point a command at the demo's own home: `HOME` inside the demo directory, no `XDG_*`,
/// `CONDARC`, `SSH_AUTH_SOCK` or `AIRLOCK_*` of the user, so nothing it runs reads or writes
/// the user's real files.
fn isolate(cmd: &mut Command, home: &Path) {
    cmd.env("HOME", home)
        .env_remove("SSH_AUTH_SOCK")
        .env_remove("SSH_AGENT_PID");
    for var in [
        "XDG_CONFIG_HOME",
        "XDG_DATA_HOME",
        "XDG_CACHE_HOME",
        "XDG_STATE_HOME",
        "XDG_RUNTIME_DIR",
        "CONDARC",
        "JUPYTER_CONFIG_DIR",
        "JUPYTER_DATA_DIR",
        "JUPYTER_RUNTIME_DIR",
    ] {
        cmd.env_remove(var);
    }
    for (name, _) in std::env::vars_os() {
        if name.to_string_lossy().starts_with("AIRLOCK_") {
            cmd.env_remove(name);
        }
    }
}

/// Wait (a few seconds at most) for a refusal in the audit log after its first `before`
/// lines that `matches`; its reason.
fn refusal(
    audit: &Path,
    before: usize,
    matches: impl Fn(&serde_json::Value) -> bool,
) -> Option<String> {
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let text = std::fs::read_to_string(audit).unwrap_or_default();
        let found = text
            .lines()
            .skip(before)
            .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
            .find(|r| field(r, "decision") == "deny" && matches(r));
        if let Some(r) = found {
            return Some(field(&r, "reason").to_owned());
        }
        if Instant::now() > deadline {
            return None;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// A text field of an audit record ("" when absent).
fn field<'a>(record: &'a serde_json::Value, name: &str) -> &'a str {
    record
        .get(name)
        .and_then(serde_json::Value::as_str)
        .unwrap_or_default()
}

fn audit_lines(audit: &Path) -> usize {
    std::fs::read_to_string(audit).map_or(0, |t| t.lines().count())
}

struct Story {
    step: usize,
    failed: usize,
}

#[allow(
    clippy::unused_self,
    reason = "every line of the story goes through the story"
)]
impl Story {
    fn step(&mut self, what: &str) {
        if interrupted() {
            return;
        }
        self.step += 1;
        println!("\n[{}] {what}", self.step);
    }
    fn ok(&self, what: &str) {
        if interrupted() {
            return;
        }
        println!("    ok    {what}");
    }
    fn expect(&mut self, cond: bool, what: &str) {
        if interrupted() {
            return;
        }
        if cond {
            println!("    ok    {what}");
        } else {
            self.failed += 1;
            println!("    FAIL  {what}");
        }
    }
    fn info(&self, what: &str) {
        if interrupted() {
            return;
        }
        println!("          {what}");
    }
    /// Why a step failed: a command's stderr and the server logs' last lines.
    fn why(&self, stderr: &[u8], servers: &[&lab::Server]) {
        if interrupted() {
            return;
        }
        for line in String::from_utf8_lossy(stderr)
            .lines()
            .filter(|l| !l.trim().is_empty())
        {
            println!("          | {line}");
        }
        for srv in servers {
            for line in srv.log_tail(3) {
                println!("          | {}: {line}", srv.name);
            }
        }
    }
    /// A step that must be refused by the agent: the command failed and the audit log has the
    /// refusal, for the right reason.
    fn refused(&mut self, failed: bool, reason: Option<String>, what: &str) {
        if interrupted() {
            return;
        }
        match reason {
            Some(r) if failed => println!("    ok    {what}\n          audit: {r}"),
            Some(r) => {
                self.failed += 1;
                println!("    FAIL  {what}: the command succeeded although the audit says: {r}");
            }
            None => {
                self.failed += 1;
                println!("    FAIL  {what}: no refusal for this reason in the audit log");
            }
        }
    }
}

/// Run the command.
pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    lab::check_tools()?;
    let tmp = tempfile::Builder::new()
        .prefix("airlock-demo-")
        .tempdir()
        .context("cannot create a temporary directory")?;
    let dir = tmp.path().to_path_buf();
    std::fs::set_permissions(&dir, std::os::unix::fs::PermissionsExt::from_mode(0o700))?;
    on_interrupt(dir.clone(), args.keep)?;
    println!("airlock demo: the laptop -> gpu-node -> git-server workflow on 127.0.0.1");
    println!(
        "(throwaway servers, keys and agent in {}; all removed at the end)",
        dir.display()
    );
    let result = story(&dir);
    while interrupted() {
        // The interrupt thread is cleaning up and exits with 130.
        std::thread::sleep(Duration::from_millis(100));
    }
    if args.keep {
        let kept = tmp.keep();
        println!("\nkept {}", kept.display());
    } else {
        let shown = dir.display().to_string();
        drop(tmp);
        println!("\nremoved {shown}");
    }
    match result {
        Ok(0) => {
            println!("\nEvery step behaved as intended.");
            Ok(ExitCode::SUCCESS)
        }
        Ok(n) => {
            println!("\n{n} step(s) did not behave as intended.");
            Ok(ExitCode::from(1))
        }
        Err(e) => Err(e),
    }
}

fn story(dir: &Path) -> anyhow::Result<usize> {
    let mut s = Story { step: 0, failed: 0 };
    let exe = std::env::current_exe().context("cannot find the airlock executable")?;
    // The laptop's home for everything the demo runs: its own ~/.ssh, config, state, caches.
    let home = dir.join("home");
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(&home)?;

    s.step("A dedicated project key");
    let key = dir.join("ai-project");
    run_quiet(
        Command::new("ssh-keygen")
            .args(["-q", "-t", "ed25519", "-N", "", "-C", "ai-project", "-f"])
            .arg(&key),
    )?;
    let fp = run_quiet(
        Command::new("ssh-keygen")
            .arg("-lf")
            .arg(key.with_extension("pub")),
    )?;
    s.ok(&format!(
        "ed25519 key ai-project: {}",
        fp.split_whitespace().nth(1).unwrap_or("?")
    ));

    s.step("Throwaway servers: gpu-node, git-server, other-host");
    let authorized = dir.join("authorized_keys");
    std::fs::copy(key.with_extension("pub"), &authorized)?;
    let gpu = start_server(dir, "gpu-node", &authorized)?;
    track(gpu.pid(), true);
    let git = start_server(dir, "git-server", &authorized)?;
    track(git.pid(), true);
    let other = start_server(dir, "other-host", &authorized)?;
    track(other.pid(), true);
    for srv in [&gpu, &git, &other] {
        s.ok(&format!("{:<10} sshd on 127.0.0.1:{}", srv.name, srv.port));
    }
    let cfg = write_client_config(&home, &[&gpu, &git, &other], &key.with_extension("pub"))?;
    s.info("~/.ssh/config names them as users do (Host gpu-node / HostName 127.0.0.1 / Port ...),");
    s.info("and known_hosts as ssh writes it ([127.0.0.1]:PORT): the policy uses the aliases.");

    s.step("A forwarding policy: the key may pass through gpu-node, only to reach git-server");
    let policy = dir.join("policy.toml");
    let fingerprint = fp.split_whitespace().nth(1).unwrap_or_default().to_owned();
    std::fs::write(
        &policy,
        format!(
            "[defaults]\nforward = \"deny\"\n\n[[key]]\nfingerprint = {fingerprint:?}  # ai-project\n\
             forward-through = [\"gpu-node\"]\nuse-for = [\"git-server\", \"gpu-node\"]\nsign = [\"ssh-auth\", \"git\"]\n",
        ),
    )?;
    for line in std::fs::read_to_string(&policy)?.lines() {
        s.info(line);
    }

    s.step("The airlock agent (drop-in ssh-agent) with that policy and an audit log");
    let sock = dir.join("agent.sock");
    let audit = dir.join("audit.jsonl");
    let mut agent_cmd = Command::new(&exe);
    isolate(&mut agent_cmd, &home);
    let agent = Agent(
        agent_cmd
            .args(["agent", "-D", "-a"])
            .arg(&sock)
            .arg("--policy")
            .arg(&policy)
            .arg("--audit")
            .arg(&audit)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(dir.join("agent.log"))?)
            .env("RUST_LOG", "info")
            .spawn()
            .context("cannot start the agent")?,
    );
    track(agent.0.id(), false);
    wait_for_socket(&sock)?;
    s.ok(&format!(
        "listening on {} (pid {})",
        sock.display(),
        agent.0.id()
    ));

    s.step("Load the key with plain ssh-add: the policy applies by fingerprint");
    let with_agent = |program: &str| {
        let mut c = Command::new(program);
        isolate(&mut c, &home);
        c.env("SSH_AUTH_SOCK", &sock).stdin(Stdio::null());
        c
    };
    run_quiet(with_agent("ssh-add").arg("-q").arg(&key))?;
    s.ok("ssh-add ai-project (no -h flags needed)");
    let listed = run_quiet(with_agent("ssh-add").arg("-l"))?;
    s.info(listed.trim());

    // A private repository on the git server.
    let bare = dir.join("git-server").join("project.git");
    run_quiet(
        Command::new("git")
            .args(["init", "-q", "--bare", "-b", "main"])
            .arg(&bare),
    )?;
    let seed = dir.join("seed");
    run_quiet(
        Command::new("git")
            .args(["init", "-q", "-b", "main"])
            .arg(&seed),
    )?;
    std::fs::write(seed.join("train.py"), "print('training')\n")?;
    run_quiet(Command::new("git").arg("-C").arg(&seed).args(["add", "."]))?;
    run_quiet(Command::new("git").arg("-C").arg(&seed).args([
        "-c",
        "user.name=demo",
        "-c",
        "user.email=demo@example.org",
        "commit",
        "-q",
        "-m",
        "initial",
    ]))?;
    run_quiet(
        Command::new("git")
            .arg("-C")
            .arg(&seed)
            .arg("push")
            .arg("-q")
            .arg(&bare)
            .arg("main"),
    )?;

    let ssh = |fwd: bool, host: &str, remote: &str| {
        let mut c = with_agent("ssh");
        if fwd {
            c.arg("-A");
        }
        c.arg("-F").arg(&cfg).arg(host).arg(remote);
        c.output()
    };
    let remote_ssh = format!("ssh -F {}", cfg.display());

    s.step("laptop > gpu-node (ssh -A)");
    let out = ssh(true, "gpu-node", "hostname >/dev/null && echo on-gpu-node")?;
    let ok = out.status.success() && String::from_utf8_lossy(&out.stdout).contains("on-gpu-node");
    s.expect(ok, "logged in to gpu-node with the agent forwarded");
    if !ok {
        s.why(&out.stderr, &[&gpu]);
    }

    s.step("On gpu-node: git clone and git push of the private repository on git-server");
    let clone = dir.join("gpu-node").join("work");
    let script = format!(
        "set -e; export GIT_SSH_COMMAND='{remote_ssh}'; git clone -q git-server:{bare} {clone}; cd {clone}; \
         echo 'epochs = 3' > config.py; git add config.py; \
         git -c user.name=researcher -c user.email=r@example.org commit -q -m 'tune epochs'; git push -q origin main; \
         git log --oneline | head -1",
        bare = bare.display(),
        clone = clone.display()
    );
    let out = ssh(true, "gpu-node", &script)?;
    let pushed = run_quiet(Command::new("git").arg("-C").arg(&bare).args([
        "log",
        "--oneline",
        "-1",
        "main",
    ]))
    .unwrap_or_default();
    s.expect(
        out.status.success() && pushed.contains("tune epochs"),
        "cloned and pushed through the forwarded agent",
    );
    if !out.status.success() {
        s.why(&out.stderr, &[&gpu, &git]);
    }
    s.info(&format!("git-server now has: {}", pushed.trim()));

    s.step("On gpu-node: the same key towards other-host (not allowed)");
    let before = audit_lines(&audit);
    let out = ssh(true, "gpu-node", &format!("{remote_ssh} other-host true"))?;
    let why = refusal(&audit, before, |r| {
        field(r, "reason").contains("other-host")
    });
    s.refused(
        !out.status.success(),
        why,
        "refused: other-host is not a permitted destination",
    );

    s.step("laptop > other-host directly (not in use-for)");
    let before = audit_lines(&audit);
    let out = ssh(false, "other-host", "true")?;
    let why = refusal(&audit, before, |r| {
        field(r, "reason").contains("other-host")
    });
    s.refused(
        !out.status.success(),
        why,
        "refused: other-host is not a permitted destination",
    );

    s.step("On gpu-node: someone uses the forwarded socket to manage keys");
    let before = audit_lines(&audit);
    let out = ssh(true, "gpu-node", "ssh-add -D")?;
    let why = refusal(&audit, before, |r| field(r, "operation") == "remove-all");
    s.refused(
        !out.status.success(),
        why,
        "ssh-add -D through the forwarded socket refused",
    );
    let listed = run_quiet(with_agent("ssh-add").arg("-l"))?;
    s.expect(
        listed.contains("ai-project"),
        "the key is still loaded on the laptop",
    );

    environment_and_jupyter(&mut s, &exe, dir, &home, &cfg, &with_agent)?;

    s.step("The audit log: every decision, with the hop chain");
    let mut table = Command::new(&exe);
    isolate(&mut table, &home);
    let table = table.arg("audit").arg("--file").arg(&audit).output()?;
    for line in String::from_utf8_lossy(&table.stdout).lines() {
        s.info(line);
    }
    let denied = std::fs::read_to_string(&audit)
        .unwrap_or_default()
        .lines()
        .filter(|l| l.contains("\"deny\""))
        .count();
    s.expect(
        denied > 0,
        &format!("{denied} refusals recorded in {}", audit.display()),
    );

    s.step("Clean up");
    drop((gpu, git, other));
    drop(agent);
    s.ok("servers and agent stopped");
    Ok(s.failed)
}

fn wait_for_socket(sock: &Path) -> anyhow::Result<()> {
    let deadline = Instant::now() + Duration::from_secs(20);
    while std::os::unix::net::UnixStream::connect(sock).is_err() {
        if Instant::now() > deadline {
            bail!("the agent did not start on {}", sock.display());
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    Ok(())
}

/// The isolation half: a project environment from a small local conda channel, and Jupyter
/// Lab on gpu-node reached through an SSH tunnel (when `jupyterlab` is installed).
fn environment_and_jupyter(
    s: &mut Story,
    exe: &Path,
    dir: &Path,
    home: &Path,
    cfg: &Path,
    with_agent: &dyn Fn(&str) -> Command,
) -> anyhow::Result<()> {
    s.step("A project environment from a local conda channel (built and indexed by the demo)");
    let channel = airlock_env::testchannel::build_demo_channel(&dir.join("channel"))
        .context("cannot build the demo channel")?;
    s.ok(&format!(
        "channel {channel} (packages hello, greeting-data)"
    ));
    // The environment commands run in the demo's home, so the demo leaves nothing in the
    // user's package cache or ~/.conda/environments.txt.
    let airlock = |args: &[&str]| {
        let mut c = Command::new(exe);
        isolate(&mut c, home);
        c.args(args).stdin(Stdio::null());
        c
    };
    let prefix = dir.join("gpu-node").join("envs").join("project");
    let prefix_s = prefix.display().to_string();
    let channel_s = channel.to_string();
    let out = airlock(&[
        "env", "create", "-p", &prefix_s, "-c", &channel_s, "hello=1",
    ])
    .output()?;
    s.expect(
        out.status.success(),
        "airlock env create -p .../project -c <channel> hello=1",
    );
    if !out.status.success() {
        s.info(String::from_utf8_lossy(&out.stderr).trim());
        return Ok(());
    }
    let out = airlock(&["env", "run", "-p", &prefix_s, "--", "hello"]).output()?;
    s.expect(
        out.status.success(),
        "airlock env run -p .../project -- hello",
    );
    s.info(String::from_utf8_lossy(&out.stdout).trim());
    let out = airlock(&["env", "export", "-p", &prefix_s, "--no-builds"]).output()?;
    for line in String::from_utf8_lossy(&out.stdout).lines() {
        s.info(line);
    }

    s.step("Jupyter Lab on gpu-node, through an SSH tunnel, with nothing listening on the network");
    let Some(jupyter_prefix) = find_jupyter() else {
        s.info("skipped: no `jupyter` on PATH (install jupyterlab, e.g. `pip install jupyterlab`, to see this step)");
        return Ok(());
    };
    let remote_dir = dir.join("gpu-node").join("bin");
    let remote_dir_s = remote_dir.display().to_string();
    let cfg_s = cfg.display().to_string();
    let out = with_agent(&exe.display().to_string())
        .args([
            "remote",
            "install",
            "gpu-node",
            "--ssh-config",
            &cfg_s,
            "--remote-dir",
            &remote_dir_s,
        ])
        .output()?;
    s.expect(
        out.status.success(),
        "airlock remote install gpu-node (binary copied, checksum verified)",
    );
    if !out.status.success() {
        s.info(String::from_utf8_lossy(&out.stderr).trim());
        return Ok(());
    }
    let runtime = dir.join("gpu-node").join("run");
    let runtime_s = runtime.display().to_string();
    let jp = jupyter_prefix.display().to_string();
    let mut child = with_agent(&exe.display().to_string())
        .args([
            "jupyter",
            "gpu-node",
            "--ssh-config",
            &cfg_s,
            "--remote-dir",
            &remote_dir_s,
        ])
        .args(["--runtime-dir", &runtime_s, "-p", &jp, "--no-browser"])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()?;
    track(child.id(), false);
    let stdout = child
        .stdout
        .take()
        .context("no output from airlock jupyter")?;
    let mut url = String::new();
    let _ = std::io::BufRead::read_line(&mut std::io::BufReader::new(stdout), &mut url);
    let url = url.trim().to_owned();
    let status = http_status(&url);
    s.expect(
        status == Some(200),
        &format!(
            "GET {} through the tunnel: {}",
            redact(&url),
            http_answer(status)
        ),
    );
    let without = url
        .split('?')
        .next()
        .unwrap_or_default()
        .replace("/lab", "/api/status");
    let status = http_status(&without);
    s.expect(
        status == Some(403),
        &format!("without the token: {}", http_answer(status)),
    );
    let _ = nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(i32::try_from(child.id()).unwrap_or(i32::MAX)),
        nix::sys::signal::Signal::SIGINT,
    );
    let _ = child.wait();
    untrack(child.id());
    let out = with_agent(&exe.display().to_string())
        .args([
            "jupyter",
            "gpu-node",
            "--ssh-config",
            &cfg_s,
            "--remote-dir",
            &remote_dir_s,
        ])
        .args(["--runtime-dir", &runtime_s, "--stop"])
        .output()?;
    s.expect(
        out.status.success(),
        "tunnel closed with Ctrl-C; airlock jupyter --stop ended the server",
    );
    Ok(())
}

/// A venv or environment with `jupyter` in it: the one on PATH.
fn find_jupyter() -> Option<std::path::PathBuf> {
    let paths = std::env::var_os("PATH")?;
    std::env::split_paths(&paths)
        .map(|d| d.join("jupyter"))
        .find(|p| p.is_file())
        .and_then(|p| p.parent()?.parent().map(Path::to_path_buf))
}

/// The URL with its token hidden, for printing.
fn redact(url: &str) -> String {
    match url.split_once("token=") {
        Some((head, _)) => format!("{head}token=…"),
        None => url.to_owned(),
    }
}

/// The status code of a plain HTTP GET to a loopback URL.
fn http_status(url: &str) -> Option<u16> {
    use std::io::{Read, Write};
    let rest = url.strip_prefix("http://")?;
    let (host, path) = rest
        .split_once('/')
        .map_or((rest, "/".to_owned()), |(h, p)| (h, format!("/{p}")));
    let mut stream = std::net::TcpStream::connect(host).ok()?;
    stream
        .set_read_timeout(Some(Duration::from_secs(20)))
        .ok()?;
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n"
    )
    .ok()?;
    let mut head = [0u8; 64];
    let n = stream.read(&mut head).ok()?;
    let text = String::from_utf8_lossy(head.get(..n)?).into_owned();
    text.split_whitespace().nth(1)?.parse().ok()
}

/// An HTTP status for the demo's output: `200`, or `no answer`.
fn http_answer(status: Option<u16>) -> String {
    status.map_or_else(|| "no answer".to_owned(), |code| code.to_string())
}
