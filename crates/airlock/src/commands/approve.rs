//! `airlock approve`: answer the agent's confirmation requests from any local terminal, for
//! machines where no askpass program or display is available.

use std::collections::BTreeSet;
use std::io::{BufRead, BufReader, Write};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use airlock_agent::approval::{ControlRequest, ControlResponse, PendingRequest, control_socket};
use anyhow::{Context, bail};

use crate::paths;

/// List the confirmations the agent is waiting for and answer them. Without options it shows
/// each waiting request and asks "Allow? [y/N]" on this terminal; an unanswered request is
/// denied when its time runs out (AIRLOCK_CONFIRM_TIMEOUT, default 30 s).
#[derive(Debug, clap::Args)]
#[command(
    after_help = "Examples:\n  airlock approve            answer what is waiting now\n  airlock approve --watch    keep answering until Ctrl-C\n  airlock approve --list --json\n  airlock approve --allow 3"
)]
pub struct Args {
    /// The agent's (or guard's) socket (default: $SSH_AUTH_SOCK, then airlock's default sockets).
    #[arg(short = 'a', value_name = "SOCKET")]
    pub socket: Option<PathBuf>,
    /// Only list the waiting requests.
    #[arg(short, long, conflicts_with_all = ["allow", "deny", "watch"])]
    pub list: bool,
    /// With --list: one JSON document.
    #[arg(long, requires = "list")]
    pub json: bool,
    /// Allow request ID.
    #[arg(long, value_name = "ID", conflicts_with_all = ["deny", "watch"])]
    pub allow: Option<u64>,
    /// Deny request ID.
    #[arg(long, value_name = "ID", conflicts_with = "watch")]
    pub deny: Option<u64>,
    /// Keep waiting for new requests and ask about each (until Ctrl-C or end of input).
    #[arg(short, long)]
    pub watch: bool,
}

/// Run the command.
pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    let control = find_control(args.socket.as_deref())?;
    let mut client = ControlClient::connect(&control)?;
    if let Some(id) = args.allow {
        client.answer(id, true)?;
        println!("request {id}: allowed");
        return Ok(ExitCode::SUCCESS);
    }
    if let Some(id) = args.deny {
        client.answer(id, false)?;
        println!("request {id}: denied");
        return Ok(ExitCode::SUCCESS);
    }
    if args.list {
        let pending = client.list()?;
        if args.json {
            println!("{}", serde_json::to_string_pretty(&pending)?);
        } else if pending.is_empty() {
            println!("No confirmation is waiting.");
        } else {
            for p in &pending {
                print!("{}", describe(p));
            }
        }
        return Ok(ExitCode::SUCCESS);
    }
    ask_loop(&mut client, args.watch)
}

/// Show each waiting request once and read the answer from standard input.
fn ask_loop(client: &mut ControlClient, watch: bool) -> anyhow::Result<ExitCode> {
    let stdin = std::io::stdin();
    let mut input = stdin.lock();
    let mut seen = BTreeSet::new();
    if watch {
        eprintln!("Waiting for confirmation requests (Ctrl-C to stop).");
    }
    loop {
        let pending: Vec<PendingRequest> = client
            .list()?
            .into_iter()
            .filter(|p| !seen.contains(&p.id))
            .collect();
        if pending.is_empty() {
            if !watch {
                if seen.is_empty() {
                    println!("No confirmation is waiting.");
                }
                return Ok(ExitCode::SUCCESS);
            }
            std::thread::sleep(Duration::from_millis(250));
            continue;
        }
        for p in pending {
            seen.insert(p.id);
            print!("{}Allow? [y/N] ", describe(&p));
            std::io::stdout().flush()?;
            let mut line = String::new();
            if input.read_line(&mut line)? == 0 {
                // End of input: leave this one to time out.
                println!();
                return Ok(ExitCode::SUCCESS);
            }
            let allow = matches!(line.trim().to_ascii_lowercase().as_str(), "y" | "yes");
            match client.answer(p.id, allow) {
                Ok(()) => println!(
                    "request {}: {}",
                    p.id,
                    if allow { "allowed" } else { "denied" }
                ),
                Err(e) => println!("request {}: {e:#}", p.id),
            }
        }
    }
}

fn describe(p: &PendingRequest) -> String {
    let mut out = format!(
        "request {} (waiting {}s, denied in {}s unless answered)\n",
        p.id, p.age_secs, p.expires_in_secs
    );
    for line in p.prompt.lines() {
        out.push_str("  ");
        // The agent escapes what clients send; a control socket may still say anything.
        out.push_str(&airlock_protocol::text::printable(line, 1024));
        out.push('\n');
    }
    out
}

/// The control socket to talk to: beside `-a SOCKET`, else beside `$SSH_AUTH_SOCK`, airlock's
/// default agent socket or its default guard socket, whichever exists first.
fn find_control(socket: Option<&Path>) -> anyhow::Result<PathBuf> {
    if let Some(s) = socket {
        let control = control_socket(s);
        if !control.exists() {
            bail!(
                "no airlock agent or guard serves confirmations for {} (expected {})",
                s.display(),
                control.display()
            );
        }
        return Ok(control);
    }
    let mut candidates: Vec<PathBuf> = Vec::new();
    if let Some(s) = std::env::var_os("SSH_AUTH_SOCK").filter(|s| !s.is_empty()) {
        candidates.push(PathBuf::from(s));
    }
    let agent = paths::agent_socket();
    let guard = agent.with_file_name("guard.sock");
    candidates.push(agent);
    candidates.push(guard);
    let controls: Vec<PathBuf> = candidates.iter().map(|s| control_socket(s)).collect();
    if let Some(found) = controls.iter().find(|c| c.exists()) {
        return Ok(found.clone());
    }
    let looked: Vec<String> = controls.iter().map(|c| c.display().to_string()).collect();
    bail!(
        "no airlock agent or guard is running here (looked for {}); start one with \
         `eval \"$(airlock agent)\"` or pass -a SOCKET",
        looked.join(", ")
    )
}

struct ControlClient {
    path: PathBuf,
    reader: BufReader<UnixStream>,
    writer: UnixStream,
}

impl ControlClient {
    fn connect(path: &Path) -> anyhow::Result<Self> {
        let stream = UnixStream::connect(path).with_context(|| {
            format!(
                "cannot reach the agent's control socket {} (is the agent still running?)",
                path.display()
            )
        })?;
        // Trust what the socket says only if our own user (or root) serves it: anyone who
        // can write the directory could have planted one there.
        let served_by =
            nix::sys::socket::getsockopt(&stream, nix::sys::socket::sockopt::PeerCredentials)
                .map(|c| c.uid())
                .with_context(|| format!("cannot tell who serves {}", path.display()))?;
        let me = nix::unistd::getuid().as_raw();
        if served_by != me && served_by != 0 {
            bail!(
                "refusing {}: it is served by uid {served_by}, not by you (uid {me}) or root",
                path.display()
            );
        }
        stream.set_read_timeout(Some(Duration::from_secs(10)))?;
        Ok(Self {
            path: path.to_path_buf(),
            reader: BufReader::new(stream.try_clone()?),
            writer: stream,
        })
    }

    fn call(&mut self, request: &ControlRequest) -> anyhow::Result<ControlResponse> {
        let mut line = serde_json::to_vec(request)?;
        line.push(b'\n');
        self.writer
            .write_all(&line)
            .with_context(|| format!("the agent at {} went away", self.path.display()))?;
        let mut answer = String::new();
        if self.reader.read_line(&mut answer)? == 0 {
            bail!("the agent at {} went away", self.path.display());
        }
        serde_json::from_str(&answer)
            .with_context(|| format!("unexpected answer from {}", self.path.display()))
    }

    fn list(&mut self) -> anyhow::Result<Vec<PendingRequest>> {
        match self.call(&ControlRequest::List)? {
            ControlResponse::Pending { pending } => Ok(pending),
            ControlResponse::Error { error } => bail!("{error}"),
            ControlResponse::Ok { .. } => bail!("unexpected answer to a list request"),
        }
    }

    fn answer(&mut self, id: u64, allow: bool) -> anyhow::Result<()> {
        match self.call(&ControlRequest::Answer { id, allow })? {
            ControlResponse::Ok { .. } => Ok(()),
            ControlResponse::Error { error } => bail!("{error}"),
            ControlResponse::Pending { .. } => bail!("unexpected answer to an answer request"),
        }
    }
}
