//! `airlock demo`: the workflow end to end on loopback, with throwaway servers.
//!
//! A project key, the airlock agent, a "gpu node", a "git server" and an "other host" as
//! throwaway `sshd`s; the key is forwarded to the gpu node only for the git server; a private
//! repository is cloned and pushed from the node; a hop to the other host and key management
//! through the forwarded socket are refused. Everything it starts is stopped and removed.

mod lab;

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
        let _ = nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(i32::try_from(self.0.id()).unwrap_or(i32::MAX)),
            nix::sys::signal::Signal::SIGTERM,
        );
        let _ = self.0.wait();
    }
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
        self.step += 1;
        println!("\n[{}] {what}", self.step);
    }
    fn ok(&self, what: &str) {
        println!("    ok    {what}");
    }
    fn expect(&mut self, cond: bool, what: &str) {
        if cond {
            println!("    ok    {what}");
        } else {
            self.failed += 1;
            println!("    FAIL  {what}");
        }
    }
    fn info(&self, what: &str) {
        println!("          {what}");
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
    println!("airlock demo: the laptop -> gpu-node -> git-server workflow on 127.0.0.1");
    println!(
        "(throwaway servers, keys and agent in {}; all removed at the end)",
        dir.display()
    );
    let result = story(&dir);
    if args.keep {
        let kept = tmp.keep();
        println!("\nkept {}", kept.display());
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
    let git = start_server(dir, "git-server", &authorized)?;
    let other = start_server(dir, "other-host", &authorized)?;
    for srv in [&gpu, &git, &other] {
        s.ok(&format!("{:<10} sshd on 127.0.0.1:{}", srv.name, srv.port));
    }
    let cfg = write_client_config(dir, &[&gpu, &git, &other], &key.with_extension("pub"))?;

    s.step("A forwarding policy: the key may pass through gpu-node, only to reach git-server");
    let policy = dir.join("policy.toml");
    let fingerprint = fp.split_whitespace().nth(1).unwrap_or_default().to_owned();
    std::fs::write(
        &policy,
        format!(
            "[defaults]\nforward = \"deny\"\nknown-hosts = [{kh:?}]\n\n[[key]]\nfingerprint = {fingerprint:?}  # ai-project\n\
             forward-through = [\"gpu-node\"]\nuse-for = [\"git-server\", \"gpu-node\"]\nsign = [\"ssh-auth\", \"git\"]\n",
            kh = dir.join("known_hosts").display().to_string()
        ),
    )?;
    for line in std::fs::read_to_string(&policy)?
        .lines()
        .filter(|l| !l.starts_with("known-hosts"))
    {
        s.info(line);
    }

    s.step("The airlock agent (drop-in ssh-agent) with that policy and an audit log");
    let sock = dir.join("agent.sock");
    let audit = dir.join("audit.jsonl");
    let agent = Agent(
        Command::new(&exe)
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
    wait_for_socket(&sock)?;
    s.ok(&format!(
        "listening on {} (pid {})",
        sock.display(),
        agent.0.id()
    ));

    s.step("Load the key with plain ssh-add: the policy applies by fingerprint");
    let with_agent = |program: &str| {
        let mut c = Command::new(program);
        c.env("SSH_AUTH_SOCK", &sock)
            .env_remove("SSH_AGENT_PID")
            .stdin(Stdio::null());
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
    s.expect(
        out.status.success() && String::from_utf8_lossy(&out.stdout).contains("on-gpu-node"),
        "logged in to gpu-node with the agent forwarded",
    );

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
        s.info(String::from_utf8_lossy(&out.stderr).trim());
    }
    s.info(&format!("git-server now has: {}", pushed.trim()));

    s.step("On gpu-node: the same key towards other-host (not allowed)");
    let out = ssh(true, "gpu-node", &format!("{remote_ssh} other-host true"))?;
    s.expect(
        !out.status.success(),
        "refused: other-host is not a permitted destination",
    );

    s.step("laptop > other-host directly (not in use-for)");
    let out = ssh(false, "other-host", "true")?;
    s.expect(
        !out.status.success(),
        "refused: other-host is not a permitted destination",
    );

    s.step("On gpu-node: someone uses the forwarded socket to manage keys");
    let out = ssh(true, "gpu-node", "ssh-add -D")?;
    s.expect(
        !out.status.success(),
        "ssh-add -D through the forwarded socket refused",
    );
    let listed = run_quiet(with_agent("ssh-add").arg("-l"))?;
    s.expect(
        listed.contains("ai-project"),
        "the key is still loaded on the laptop",
    );

    s.step("The audit log: every decision, with the hop chain");
    let table = Command::new(&exe)
        .arg("audit")
        .arg("--file")
        .arg(&audit)
        .output()?;
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
