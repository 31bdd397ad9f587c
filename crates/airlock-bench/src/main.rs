//! `airlock-bench`: airlock's agent against OpenSSH's `ssh-agent`, in the same run, driven by the
//! same client code (airlock-agent's blocking [`Client`](airlock_agent::client::Client)), so the
//! comparison is fair.
//!
//! It starts both agents as child processes on sockets in a temp dir, adds keys made by
//! `ssh-keygen`, and measures sign requests per second over the socket (ed25519, ecdsa-p256,
//! rsa-3072 with `rsa-sha2-256`) with 1, 4 and 64 concurrent clients, single-client p50/p99
//! latency, and resident memory idle and with 200 keys. Every signature an agent returns is
//! checked to be a signature, and the first one of every client in every run is verified, so a
//! broken agent cannot look fast.
//!
//! ```text
//! cargo build --release -p airlock -p airlock-bench && target/release/airlock-bench --write docs/BENCHMARKS.md
//! ```

mod agents;
mod load;
mod overhead;
mod report;

use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode};
use std::time::Duration;

use anyhow::{Context, bail, ensure};
use ssh_encoding::{Decode, Encode};

use crate::agents::{AgentKind, AgentProcess, Memory};
use crate::load::{RunResult, Workload};
use crate::report::{Figures, Machine};

/// Concurrent client counts measured for every algorithm.
const CLIENT_COUNTS: [usize; 3] = [1, 4, 64];
/// ed25519 keys added for the memory measurement.
const MEMORY_KEYS: usize = 200;
/// Sign requests each agent answers, per algorithm, before anything is timed.
const WARMUP_SIGNS: usize = 200;

/// Benchmark airlock's agent against OpenSSH's `ssh-agent` and print a markdown table.
#[derive(Debug, clap::Parser)]
#[command(version)]
struct Args {
    /// The airlock binary whose agent is measured (`airlock agent -D -a SOCKET`).
    #[arg(long, value_name = "PATH", default_value = "target/release/airlock")]
    airlock: PathBuf,
    /// OpenSSH's agent (`ssh-agent -D -a SOCKET`).
    #[arg(long, value_name = "PATH", default_value = "ssh-agent")]
    ssh_agent: PathBuf,
    /// Seconds each throughput run lasts.
    #[arg(long, value_name = "SECONDS", default_value_t = 2.0)]
    seconds: f64,
    /// How many times every (algorithm, client count, agent) run is repeated, interleaving the
    /// two agents; throughput is the median round, latency percentiles pool all rounds.
    #[arg(long, value_name = "N", default_value_t = 3, value_parser = clap::value_parser!(u32).range(1..=20))]
    rounds: u32,
    /// Replace the section between `<!-- agent-bench:start -->` and `<!-- agent-bench:end -->`
    /// of this markdown file (created with a `# Benchmarks` heading if missing).
    #[arg(long, value_name = "FILE")]
    write: Option<PathBuf>,
    /// Measure instead the overhead of a policy and the audit log on sign latency: airlock with
    /// a policy against airlock without one (section `<!-- policy-bench:start -->`).
    #[arg(long)]
    policy_overhead: bool,
}

/// One algorithm under test.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Algorithm {
    /// `ssh-ed25519`.
    Ed25519,
    /// `ecdsa-sha2-nistp256`.
    EcdsaP256,
    /// RSA 3072 signed as `rsa-sha2-256`.
    Rsa3072,
}

impl Algorithm {
    const ALL: [Algorithm; 3] = [Algorithm::Ed25519, Algorithm::EcdsaP256, Algorithm::Rsa3072];

    /// The name used in the table.
    pub fn label(self) -> &'static str {
        match self {
            Algorithm::Ed25519 => "ed25519",
            Algorithm::EcdsaP256 => "ecdsa-p256",
            Algorithm::Rsa3072 => "rsa-3072 (rsa-sha2-256)",
        }
    }

    fn keygen_args(self) -> &'static [&'static str] {
        match self {
            Algorithm::Ed25519 => &["-t", "ed25519"],
            Algorithm::EcdsaP256 => &["-t", "ecdsa", "-b", "256"],
            Algorithm::Rsa3072 => &["-t", "rsa", "-b", "3072"],
        }
    }

    fn flags(self) -> u32 {
        match self {
            Algorithm::Rsa3072 => airlock_protocol::SIGN_RSA_SHA2_256,
            Algorithm::Ed25519 | Algorithm::EcdsaP256 => 0,
        }
    }

    fn signature_algorithm(self) -> &'static str {
        match self {
            Algorithm::Ed25519 => "ssh-ed25519",
            Algorithm::EcdsaP256 => "ecdsa-sha2-nistp256",
            Algorithm::Rsa3072 => "rsa-sha2-256",
        }
    }
}

/// A key made by `ssh-keygen` for the benchmark.
#[derive(Debug, Clone)]
pub struct BenchKey {
    /// Which algorithm.
    pub algorithm: Algorithm,
    /// The private key, to add to the agents.
    pub private: ssh_key::PrivateKey,
    /// The public key, to verify signatures.
    pub public: ssh_key::PublicKey,
    /// The public key blob, as sign requests name the key.
    pub blob: Vec<u8>,
}

/// Check that `blob` is a valid signature by `key` over `data`, of the expected algorithm.
pub fn verify_signature(key: &BenchKey, data: &[u8], blob: &[u8]) -> anyhow::Result<()> {
    let sig = ssh_key::Signature::decode(&mut &blob[..]).with_context(|| {
        format!(
            "{}: the agent returned an unparseable signature",
            key.algorithm.label()
        )
    })?;
    ensure!(
        sig.algorithm().as_str() == key.algorithm.signature_algorithm(),
        "{}: the agent signed with {} instead of {}",
        key.algorithm.label(),
        sig.algorithm(),
        key.algorithm.signature_algorithm()
    );
    // The trait method, not ssh-key's inherent `PublicKey::verify`, which checks SSHSIG blobs.
    signature::Verifier::verify(&key.public, data, &sig).map_err(|e| {
        anyhow::anyhow!(
            "{}: the agent's signature does not verify: {e}",
            key.algorithm.label()
        )
    })
}

fn keygen(path: &Path, args: &[&str], comment: &str) -> anyhow::Result<ssh_key::PrivateKey> {
    let status = Command::new("ssh-keygen")
        .args(args)
        .args(["-q", "-N", "", "-C", comment, "-f"])
        .arg(path)
        .status()
        .context("cannot run ssh-keygen: install openssh-client")?;
    ensure!(status.success(), "ssh-keygen {args:?} failed: {status}");
    ssh_key::PrivateKey::read_openssh_file(path)
        .with_context(|| format!("cannot read {}", path.display()))
}

fn bench_key(dir: &Path, algorithm: Algorithm) -> anyhow::Result<BenchKey> {
    let path = dir.join(format!("bench-{}", algorithm.signature_algorithm()));
    let private = keygen(
        &path,
        algorithm.keygen_args(),
        &format!("airlock-bench {}", algorithm.label()),
    )?;
    let public = private.public_key().clone();
    let mut blob = Vec::new();
    public
        .key_data()
        .encode(&mut blob)
        .context("cannot encode a public key")?;
    Ok(BenchKey {
        algorithm,
        private,
        public,
        blob,
    })
}

/// Start both agents, check they answer, add `keys` to each.
fn start_agents(
    args: &Args,
    dir: &Path,
    tag: &str,
    keys: &[(&ssh_key::PrivateKey, String)],
) -> anyhow::Result<[AgentProcess; 2]> {
    let mut out = Vec::with_capacity(2);
    for kind in [AgentKind::OpenSsh, AgentKind::Airlock] {
        let program = match kind {
            AgentKind::OpenSsh => &args.ssh_agent,
            AgentKind::Airlock => &args.airlock,
        };
        let agent = AgentProcess::start(kind, program, dir, tag)?;
        let mut client = agent.client()?;
        for (key, comment) in keys {
            client
                .add(key, comment, None, false)
                .with_context(|| format!("{kind}: adding {comment}"))?;
        }
        let listed = client
            .list()
            .with_context(|| format!("{kind}: listing keys"))?;
        ensure!(
            listed.len() == keys.len(),
            "{kind} lists {} keys, {} were added",
            listed.len(),
            keys.len()
        );
        out.push(agent);
    }
    match <[AgentProcess; 2]>::try_from(out) {
        Ok(pair) => Ok(pair),
        Err(_) => bail!("two agents expected"),
    }
}

fn measure_memory(
    args: &Args,
    dir: &Path,
    keys: &[ssh_key::PrivateKey],
) -> anyhow::Result<[(Memory, Memory); 2]> {
    let agents = start_agents(args, dir, "memory", &[])?;
    // Let both settle (runtime threads started, first connection served) before reading.
    std::thread::sleep(Duration::from_millis(300));
    let idle = [agents[0].memory()?, agents[1].memory()?];
    for agent in &agents {
        let mut client = agent.client()?;
        for (i, key) in keys.iter().enumerate() {
            client
                .add(key, &format!("memory-{i}"), None, false)
                .with_context(|| format!("{}: adding key {i}", agent.kind))?;
        }
        let listed = client.list()?;
        ensure!(
            listed.len() == keys.len(),
            "{} lists {} of {} keys",
            agent.kind,
            listed.len(),
            keys.len()
        );
    }
    std::thread::sleep(Duration::from_millis(300));
    let loaded = [agents[0].memory()?, agents[1].memory()?];
    Ok([(idle[0], loaded[0]), (idle[1], loaded[1])])
}

fn run() -> anyhow::Result<()> {
    let args = <Args as clap::Parser>::parse();
    ensure!(
        args.airlock.is_file(),
        "no airlock binary at {}\nhelp: build it with `cargo build --release -p airlock`, or pass --airlock PATH",
        args.airlock.display()
    );
    ensure!(
        args.seconds > 0.0 && args.seconds <= 600.0,
        "--seconds must be between 0 and 600"
    );
    let duration = Duration::from_secs_f64(args.seconds);
    let machine = Machine::detect(&args.airlock);
    eprintln!(
        "airlock-bench: {} CPUs ({}), load {}",
        machine.nproc, machine.cpu_model, machine.load_start
    );

    let dir = tempfile::Builder::new()
        .prefix("airlock-bench-")
        .tempdir()
        .context("cannot create a temp dir")?;
    eprintln!(
        "airlock-bench: generating keys with ssh-keygen in {}",
        dir.path().display()
    );
    if args.policy_overhead {
        let key = bench_key(dir.path(), Algorithm::Ed25519)?;
        return overhead::run(&args, &key, dir.path());
    }
    let keys: Vec<BenchKey> = Algorithm::ALL
        .iter()
        .map(|a| bench_key(dir.path(), *a))
        .collect::<Result<_, _>>()?;
    let memory_dir = dir.path().join("memory-keys");
    fs_err::create_dir(&memory_dir)?;
    let memory_keys: Vec<ssh_key::PrivateKey> = (0..MEMORY_KEYS)
        .map(|i| {
            keygen(
                &memory_dir.join(format!("id_{i}")),
                &["-t", "ed25519"],
                &format!("memory-{i}"),
            )
        })
        .collect::<Result<_, _>>()?;

    eprintln!("airlock-bench: memory, idle and with {MEMORY_KEYS} ed25519 keys");
    let memory = measure_memory(&args, dir.path(), &memory_keys)?;

    let named: Vec<(&ssh_key::PrivateKey, String)> = keys
        .iter()
        .map(|k| (&k.private, format!("airlock-bench {}", k.algorithm.label())))
        .collect();
    let agents = start_agents(&args, dir.path(), "sign", &named)?;
    let data = load::sign_data();
    for agent in &agents {
        let mut client = agent.client()?;
        for key in &keys {
            let sig = client
                .sign(&key.blob, &data, key.algorithm.flags())
                .with_context(|| {
                    format!("{}: signing with {}", agent.kind, key.algorithm.label())
                })?;
            verify_signature(key, &data, &sig).with_context(|| format!("{}", agent.kind))?;
            for _ in 0..WARMUP_SIGNS {
                client.sign(&key.blob, &data, key.algorithm.flags())?;
            }
        }
        eprintln!(
            "airlock-bench: {} signatures verified for every algorithm",
            agent.kind
        );
    }

    let mut figures = Figures::new(memory);
    for round in 0..args.rounds {
        for key in &keys {
            for clients in CLIENT_COUNTS {
                // Alternate which agent goes first, so drift in the machine's load favours neither.
                let order: [usize; 2] = if (round as usize + clients).is_multiple_of(2) {
                    [0, 1]
                } else {
                    [1, 0]
                };
                for i in order {
                    let Some(agent) = agents.get(i) else { continue };
                    let workload = Workload {
                        key,
                        data: &data,
                        clients,
                        duration,
                        record_latency: clients == 1,
                        setup: &[],
                    };
                    let result: RunResult = load::run(agent, &workload).with_context(|| {
                        format!(
                            "{}: {} with {clients} clients",
                            agent.kind,
                            key.algorithm.label()
                        )
                    })?;
                    eprintln!(
                        "airlock-bench: round {}/{} {:<24} {:>2} clients {:<8} {:>9.0} signs/s",
                        round + 1,
                        args.rounds,
                        key.algorithm.label(),
                        clients,
                        agent.kind.short(),
                        result.per_second()
                    );
                    figures.record(agent.kind, key.algorithm, clients, result);
                }
            }
        }
    }
    figures.after_load = [agents[0].memory()?, agents[1].memory()?];
    drop(agents);

    let machine = machine.finish();
    let section = report::section(&machine, &figures, args.seconds, args.rounds);
    println!("{section}");
    if let Some(path) = &args.write {
        report::write_section(path, &section)?;
        eprintln!(
            "airlock-bench: wrote the agent-bench section of {}",
            path.display()
        );
    }
    Ok(())
}

fn main() -> ExitCode {
    match run() {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("airlock-bench: error: {e:#}");
            ExitCode::FAILURE
        }
    }
}
