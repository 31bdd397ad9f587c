//! The markdown section: machine, method, figures with ratios, the targets; and the
//! rewrite of only that section of `docs/BENCHMARKS.md`.

use std::io::Write as _;
use std::path::Path;
use std::process::Command;

use anyhow::{Context, bail};

use crate::agents::{AgentKind, Memory};
use crate::load::RunResult;
use crate::{Algorithm, CLIENT_COUNTS, MEMORY_KEYS};

/// The first line of the section this tool owns.
pub const START_MARKER: &str = "<!-- agent-bench:start -->";
/// The last line of the section this tool owns.
pub const END_MARKER: &str = "<!-- agent-bench:end -->";

/// The command that reproduces the section, from the workspace root.
const REPRODUCE: &str = "cargo build --release -p airlock -p airlock-bench && target/release/airlock-bench --write docs/BENCHMARKS.md";

/// Where and with what the benchmark ran.
#[derive(Debug, Clone)]
pub struct Machine {
    /// `nproc`.
    pub nproc: String,
    /// `model name` from `/proc/cpuinfo`.
    pub cpu_model: String,
    /// The 1-minute load average when the run started.
    pub load_start: String,
    /// The 1-minute load average when the run ended.
    pub load_end: String,
    /// UTC date and time of the run.
    pub date: String,
    /// `ssh -V`.
    pub openssh: String,
    /// `airlock --version`.
    pub airlock: String,
    /// `git describe --always --dirty` of the working tree.
    pub git: String,
    /// Size of the airlock executable, KiB.
    pub airlock_binary_kib: u64,
}

fn command_output(program: &str, args: &[&str]) -> Option<String> {
    let out = Command::new(program).args(args).output().ok()?;
    // `ssh -V` prints on stderr.
    let text = if out.stdout.is_empty() {
        out.stderr
    } else {
        out.stdout
    };
    let text = String::from_utf8_lossy(&text).trim().to_owned();
    (out.status.success() && !text.is_empty()).then_some(text)
}

fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .ok()
        .and_then(|s| s.split_whitespace().next().map(str::to_owned))
        .unwrap_or_else(|| "unknown".to_owned())
}

impl Machine {
    /// Describe this machine and the two agents' versions.
    pub fn detect(airlock: &Path) -> Self {
        let unknown = || "unknown".to_owned();
        let nproc = command_output("nproc", &[])
            .or_else(|| {
                std::thread::available_parallelism()
                    .ok()
                    .map(|n| n.to_string())
            })
            .unwrap_or_else(unknown);
        let cpu_model = std::fs::read_to_string("/proc/cpuinfo")
            .ok()
            .and_then(|info| {
                info.lines().find_map(|l| {
                    l.strip_prefix("model name")
                        .and_then(|r| r.split_once(':'))
                        .map(|(_, m)| m.trim().to_owned())
                })
            })
            .unwrap_or_else(unknown);
        let date = time::OffsetDateTime::now_utc()
            .format(time::macros::format_description!(
                "[year]-[month]-[day] [hour]:[minute] UTC"
            ))
            .unwrap_or_else(|_| unknown());
        Self {
            nproc,
            cpu_model,
            load_start: load_average(),
            load_end: unknown(),
            date,
            openssh: command_output("ssh", &["-V"]).unwrap_or_else(unknown),
            airlock: command_output(&airlock.display().to_string(), &["--version"])
                .unwrap_or_else(unknown),
            git: command_output("git", &["describe", "--always", "--dirty"])
                .unwrap_or_else(unknown),
            airlock_binary_kib: std::fs::metadata(airlock).map_or(0, |m| m.len() / 1024),
        }
    }

    /// Record the load at the end of the run.
    pub fn finish(mut self) -> Self {
        self.load_end = load_average();
        self
    }
}

/// Everything measured.
#[derive(Debug)]
pub struct Figures {
    runs: Vec<(AgentKind, Algorithm, usize, RunResult)>,
    /// Memory idle and with [`MEMORY_KEYS`] keys: `[OpenSSH, airlock]`.
    pub memory: [(Memory, Memory); 2],
    /// Memory after the throughput runs: `[OpenSSH, airlock]`.
    pub after_load: [Memory; 2],
}

impl Figures {
    /// Start with the memory figures.
    pub fn new(memory: [(Memory, Memory); 2]) -> Self {
        Self {
            runs: Vec::new(),
            memory,
            after_load: [Memory::default(); 2],
        }
    }

    /// Add one run.
    pub fn record(
        &mut self,
        agent: AgentKind,
        algorithm: Algorithm,
        clients: usize,
        result: RunResult,
    ) {
        self.runs.push((agent, algorithm, clients, result));
    }

    fn results(
        &self,
        agent: AgentKind,
        algorithm: Algorithm,
        clients: usize,
    ) -> impl Iterator<Item = &RunResult> {
        self.runs
            .iter()
            .filter(move |(a, l, c, _)| *a == agent && *l == algorithm && *c == clients)
            .map(|(.., r)| r)
    }

    /// Throughput over the rounds: (median, min, max) signs/s.
    fn throughput(
        &self,
        agent: AgentKind,
        algorithm: Algorithm,
        clients: usize,
    ) -> Option<(f64, f64, f64)> {
        let mut rates: Vec<f64> = self
            .results(agent, algorithm, clients)
            .map(RunResult::per_second)
            .collect();
        rates.sort_by(f64::total_cmp);
        let median = *rates.get(rates.len() / 2)?;
        Some((median, *rates.first()?, *rates.last()?))
    }

    /// Latency percentile in milliseconds over every single-client request of every round.
    fn latency_ms(&self, agent: AgentKind, algorithm: Algorithm, percentile: f64) -> Option<f64> {
        let mut all: Vec<_> = self
            .results(agent, algorithm, 1)
            .flat_map(|r| r.latencies.iter().copied())
            .collect();
        all.sort_unstable();
        Some(percentile_of(&all, percentile)?.as_secs_f64() * 1000.0)
    }
}

/// Nearest-rank percentile of sorted values.
#[expect(
    clippy::cast_possible_truncation,
    clippy::cast_sign_loss,
    clippy::cast_precision_loss,
    reason = "a rank within a vector's length"
)]
pub(crate) fn percentile_of<T: Copy>(sorted: &[T], percentile: f64) -> Option<T> {
    let rank = (percentile / 100.0 * sorted.len() as f64).ceil() as usize;
    sorted.get(rank.clamp(1, sorted.len().max(1)) - 1).copied()
}

/// `12345.6` as `12,346`.
#[expect(
    clippy::cast_possible_truncation,
    clippy::cast_sign_loss,
    reason = "rounded, non-negative rates"
)]
pub(crate) fn thousands(v: f64) -> String {
    let digits = (v.round().max(0.0) as u64).to_string();
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

#[expect(
    clippy::cast_precision_loss,
    reason = "memory sizes stay far below 2^52 KiB"
)]
fn mib(kib: u64) -> f64 {
    kib as f64 / 1024.0
}

fn ratio(airlock: f64, openssh: f64) -> f64 {
    if openssh > 0.0 {
        airlock / openssh
    } else {
        f64::NAN
    }
}

fn verdict(met: bool) -> &'static str {
    if met { "**met**" } else { "**not met**" }
}

/// The whole markdown section, markers included.
#[expect(clippy::cast_precision_loss, reason = "small counts")]
pub fn section(machine: &Machine, figures: &Figures, seconds: f64, rounds: u32) -> String {
    use std::fmt::Write as _;
    let mut s = String::new();
    let o = AgentKind::OpenSsh;
    let a = AgentKind::Airlock;
    let _ = writeln!(s, "{START_MARKER}");
    let _ = writeln!(s, "## SSH agent: airlock against OpenSSH's `ssh-agent`\n");
    let _ = writeln!(
        s,
        "Written by `airlock-bench` (`crates/airlock-bench`); re-run it rather than editing this section.\n"
    );
    let _ = writeln!(
        s,
        "- **Reproduce** (from the workspace root): `{REPRODUCE}`"
    );
    let _ = writeln!(s, "- **Date**: {}", machine.date);
    let _ = writeln!(
        s,
        "- **Machine**: nproc {}, {}; 1-minute load average {} at the start and {} at the end \
         (the machine is shared, so absolute figures are noisy; the two agents run interleaved, so \
         the ratios are fairer than the absolute numbers)",
        machine.nproc, machine.cpu_model, machine.load_start, machine.load_end
    );
    let _ = writeln!(s, "- **OpenSSH**: {} (`ssh -V`)", machine.openssh);
    let _ = writeln!(
        s,
        "- **airlock**: {} (git {})",
        machine.airlock, machine.git
    );
    let _ = writeln!(
        s,
        "- **Method**: both agents run at once as child processes (`ssh-agent -D -a SOCK`, `airlock agent -D -a SOCK`) \
         with keys made by `ssh-keygen`, driven by the same Rust client (`airlock_agent::client::Client`). A run is N \
         threads, each with its own persistent connection, sending sign requests for the same 68 bytes for {seconds} s; \
         RSA asks for `rsa-sha2-256`. Every (algorithm, clients, agent) run is repeated {rounds} times with the agents \
         interleaved; throughput is the median round [min–max], latency percentiles pool every single-client request. \
         The first signature on every connection is verified (ssh-key) and every answer must be a signature, so a \
         broken agent cannot look fast. Clients run on the same machine, so with few CPUs they compete with the agent \
         for CPU. Memory is `VmRSS` and `RssAnon` of `/proc/PID/status`, on fresh agents: idle (after one request), then with {MEMORY_KEYS} \
         ed25519 keys added; and on the throughput agents (3 keys) after all runs.\n"
    );

    let _ = writeln!(
        s,
        "| measurement | OpenSSH `ssh-agent` | `airlock agent` | airlock / OpenSSH |"
    );
    let _ = writeln!(s, "|---|--:|--:|--:|");
    for algorithm in Algorithm::ALL {
        for clients in CLIENT_COUNTS {
            let (Some(ot), Some(at)) = (
                figures.throughput(o, algorithm, clients),
                figures.throughput(a, algorithm, clients),
            ) else {
                continue;
            };
            let plural = if clients == 1 { "" } else { "s" };
            let _ = writeln!(
                s,
                "| {} signs/s, {clients} client{plural} (higher is better) | {} [{}–{}] | {} [{}–{}] | {:.2}x |",
                algorithm.label(),
                thousands(ot.0),
                thousands(ot.1),
                thousands(ot.2),
                thousands(at.0),
                thousands(at.1),
                thousands(at.2),
                ratio(at.0, ot.0)
            );
        }
        for p in [50.0, 99.0] {
            if let (Some(ol), Some(al)) = (
                figures.latency_ms(o, algorithm, p),
                figures.latency_ms(a, algorithm, p),
            ) {
                let _ = writeln!(
                    s,
                    "| {} p{p} latency, 1 client (lower is better) | {ol:.3} ms | {al:.3} ms | {:.2}x |",
                    algorithm.label(),
                    ratio(al, ol)
                );
            }
        }
    }
    let [(o_idle, o_keys), (a_idle, a_keys)] = figures.memory;
    let [o_after, a_after] = figures.after_load;
    let rows = [
        ("idle", o_idle, a_idle),
        (&*format!("with {MEMORY_KEYS} ed25519 keys"), o_keys, a_keys),
        ("after the throughput runs (3 keys)", o_after, a_after),
    ];
    for (field, get) in [
        ("`VmRSS`", (|m: Memory| m.rss_kib) as fn(Memory) -> u64),
        ("`RssAnon`", |m: Memory| m.anon_kib),
    ] {
        for (what, ov, av) in rows {
            let _ = writeln!(
                s,
                "| {field} {what} (lower is better) | {:.1} MiB | {:.1} MiB | {:.2}x |",
                mib(get(ov)),
                mib(get(av)),
                ratio(mib(get(av)), mib(get(ov)))
            );
        }
    }
    let per_key = |idle: u64, keys: u64| (keys.saturating_sub(idle)) as f64 / MEMORY_KEYS as f64;
    let (o_pk, a_pk) = (
        per_key(o_idle.rss_kib, o_keys.rss_kib),
        per_key(a_idle.rss_kib, a_keys.rss_kib),
    );
    let _ = writeln!(
        s,
        "| `VmRSS` per added key (lower is better) | {o_pk:.1} KiB | {a_pk:.1} KiB | {:.2}x |",
        ratio(a_pk, o_pk)
    );
    let file_backed = |m: Memory| mib(m.rss_kib.saturating_sub(m.anon_kib));
    let _ = writeln!(
        s,
        "\n`VmRSS` counts the pages of the executable and shared libraries too; `RssAnon` is the \
         agent's own heap and stacks. Idle, {:.1} MiB of airlock's `VmRSS` is file-backed (its \
         binary is the whole `airlock` CLI, {:.1} MiB on disk) against {:.1} MiB for OpenSSH's.",
        file_backed(a_idle),
        mib(machine.airlock_binary_kib),
        file_backed(o_idle),
    );

    // The targets of issue 2, "What must be shown".
    let ed = Algorithm::Ed25519;
    let ed_ratio = |clients| match (
        figures.throughput(a, ed, clients),
        figures.throughput(o, ed, clients),
    ) {
        (Some(at), Some(ot)) => ratio(at.0, ot.0),
        _ => f64::NAN,
    };
    let single = ed_ratio(1);
    let concurrent: Vec<(usize, f64)> = CLIENT_COUNTS
        .iter()
        .filter(|c| **c > 1)
        .map(|c| (*c, ed_ratio(*c)))
        .collect();
    let concurrent_text = concurrent
        .iter()
        .map(|(c, r)| format!("{r:.2}x with {c} clients"))
        .collect::<Vec<_>>()
        .join(", ");
    let memory_ok = a_idle.rss_kib <= o_idle.rss_kib && a_keys.rss_kib <= o_keys.rss_kib;
    let _ = writeln!(s, "\n### Targets (issue 2)\n");
    let _ = writeln!(s, "| target | measured | result |");
    let _ = writeln!(s, "|---|---|---|");
    let _ = writeln!(
        s,
        "| ed25519 throughput with one client at least 3x OpenSSH's | {single:.2}x | {} |",
        verdict(single >= 3.0)
    );
    let _ = writeln!(
        s,
        "| ed25519 throughput with concurrent clients at least 5x OpenSSH's | {concurrent_text} | {} |",
        verdict(concurrent.iter().all(|(_, r)| *r >= 5.0))
    );
    let _ = writeln!(
        s,
        "| memory (`VmRSS`) no more than OpenSSH's, idle and with {MEMORY_KEYS} keys | airlock {:.1} vs OpenSSH {:.1} MiB idle, {:.1} vs {:.1} MiB with {MEMORY_KEYS} keys | {} |",
        mib(a_idle.rss_kib),
        mib(o_idle.rss_kib),
        mib(a_keys.rss_kib),
        mib(o_keys.rss_kib),
        verdict(memory_ok)
    );
    let _ = writeln!(
        s,
        "\nThe issue's fourth target, RSA signing in constant time, is a property of the code (aws-lc, not the `rsa` \
         crate), not a figure this benchmark can show."
    );
    let _ = write!(s, "{END_MARKER}");
    s
}

/// `existing` with the marked section replaced by `section`, or `section` appended if the file has
/// no markers; a new file gets a `# Benchmarks` heading. Text outside the markers is kept as is.
fn splice(
    existing: Option<&str>,
    section: &str,
    (start_marker, end_marker): (&str, &str),
) -> anyhow::Result<String> {
    let Some(text) = existing else {
        return Ok(format!("# Benchmarks\n\n{section}\n"));
    };
    match (text.find(start_marker), text.find(end_marker)) {
        (Some(start), Some(end)) if start < end => {
            let (before, rest) = text.split_at(start);
            let after = rest.split_at(end - start + end_marker.len()).1;
            Ok(format!("{before}{section}{after}"))
        }
        (None, None) => {
            let mut out = text.to_owned();
            if !out.is_empty() {
                while !out.ends_with("\n\n") {
                    out.push('\n');
                }
            }
            out.push_str(section);
            out.push('\n');
            Ok(out)
        }
        _ => {
            bail!("unbalanced {start_marker} / {end_marker} markers: fix them by hand, then re-run")
        }
    }
}

/// Replace (or add) the agent-bench section of the markdown file at `path`, atomically.
pub fn write_section(path: &Path, section: &str) -> anyhow::Result<()> {
    write_marked(path, section, (START_MARKER, END_MARKER))
}

/// Replace (or add) the section between `markers` of the markdown file at `path`, atomically.
pub fn write_marked(path: &Path, section: &str, markers: (&str, &str)) -> anyhow::Result<()> {
    let existing = match fs_err::read_to_string(path) {
        Ok(text) => Some(text),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
        Err(e) => return Err(e.into()),
    };
    let text = splice(existing.as_deref(), section, markers)
        .with_context(|| format!("in {}", path.display()))?;
    let dir = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => std::path::PathBuf::from("."),
    };
    fs_err::create_dir_all(&dir)?;
    let permissions = match fs_err::metadata(path) {
        Ok(m) => m.permissions(),
        Err(_) => std::os::unix::fs::PermissionsExt::from_mode(0o644),
    };
    let mut tmp = tempfile::NamedTempFile::new_in(&dir)
        .with_context(|| format!("cannot write in {}", dir.display()))?;
    tmp.write_all(text.as_bytes())?;
    tmp.as_file().sync_all()?;
    tmp.as_file().set_permissions(permissions)?;
    tmp.persist(path)
        .with_context(|| format!("cannot replace {}", path.display()))?;
    Ok(())
}
