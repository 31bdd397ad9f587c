//! `airlock audit`: the agent's decisions, as a table or as the JSON lines themselves.

use std::fs::File;
use std::io::{BufRead, BufReader, Read, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::{Duration, SystemTime};

use airlock_policy::audit::{AuditRecord, rotated_path};
use airlock_policy::file::parse_duration;
use airlock_ssh_config::pattern::match_pattern;
use anyhow::{Context, bail};

use crate::paths;

/// Arguments of `airlock audit`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Keep printing new decisions as they are logged (follows rotation).
    #[arg(long, short = 'f')]
    follow: bool,
    /// Print the JSON lines as logged instead of a table.
    #[arg(long)]
    json: bool,
    /// Only decisions newer than this (e.g. 1h, 30m, 2d).
    #[arg(long, value_name = "DURATION")]
    since: Option<String>,
    /// Only this key: name (comment) or SHA256 fingerprint.
    #[arg(long, value_name = "KEY")]
    key: Option<String>,
    /// Only chains through a host: a name or pattern (gpu-node-*), or a host-key fingerprint.
    #[arg(long, value_name = "HOST")]
    host: Option<String>,
    /// Only refused requests.
    #[arg(long)]
    denied: bool,
    /// The audit log (default: $XDG_STATE_HOME/airlock/audit.jsonl).
    #[arg(long, visible_alias = "audit", value_name = "FILE", env = paths::ENV_AUDIT)]
    file: Option<PathBuf>,
}

/// What to show.
struct Filter {
    since: Option<SystemTime>,
    key: Option<String>,
    host: Option<String>,
    denied: bool,
}

impl Filter {
    fn accepts(&self, r: &AuditRecord) -> bool {
        if self.denied && !r.is_denied() {
            return false;
        }
        if let Some(since) = self.since
            && r.system_time().is_none_or(|t| t < since)
        {
            return false;
        }
        if let Some(k) = &self.key
            && r.key.as_deref() != Some(k.as_str())
            && r.fingerprint.as_deref() != Some(k.as_str())
        {
            return false;
        }
        if let Some(h) = &self.host {
            let h = h.to_lowercase();
            let hit = r.chain.iter().any(|hop| {
                hop.fingerprint == h
                    || hop
                        .names
                        .iter()
                        .any(|n| match_pattern(&n.to_lowercase(), &h))
            });
            if !hit {
                return false;
            }
        }
        true
    }
}

/// Run `airlock audit`.
pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    let Args {
        follow,
        json,
        since,
        key,
        host,
        denied,
        file,
    } = args;
    let path = file.unwrap_or_else(paths::audit_file);
    let since_time = match &since {
        None => None,
        Some(s) => {
            let d = parse_duration(s)
                .with_context(|| format!("--since {s:?}: use e.g. 1h, 30m, 2d"))?;
            Some(
                SystemTime::now()
                    .checked_sub(d)
                    .unwrap_or(SystemTime::UNIX_EPOCH),
            )
        }
    };
    let filter = Filter {
        since: since_time,
        key,
        host,
        denied,
    };
    if !path.exists() && !follow {
        bail!(
            "no audit log at {}: the agent has not logged a decision yet (or use --file)",
            path.display()
        );
    }
    let mut out = std::io::stdout().lock();
    if !json {
        writeln!(
            out,
            "{}",
            row("TIME", "OPERATION", "KEY", "CHAIN", "DECISION", "REASON")
        )?;
    }
    let rotated: Vec<PathBuf> = (1..=99)
        .rev()
        .map(|n| rotated_path(&path, n))
        .filter(|p| p.exists())
        .collect();
    let mut bad = 0usize;
    for f in &rotated {
        let Ok(file) = File::open(f) else { continue };
        for line in BufReader::new(file).lines() {
            let line = line.with_context(|| format!("reading {}", f.display()))?;
            bad += show(&mut out, &line, &filter, json)?;
        }
    }
    // The live file: read to its end, keeping the handle so --follow goes on from there.
    let mut current = open_file(&path);
    let mut pending = String::new();
    if let Some((file, _)) = &mut current {
        bad += drain(file, &mut pending, &mut out, &filter, json)?;
    }
    // A last line without its newline (a file written by hand): show it, unless following,
    // where it may be a line still being written.
    if !follow && !pending.trim().is_empty() {
        bad += show(&mut out, pending.trim_end(), &filter, json)?;
    }
    if bad > 0 {
        eprintln!("airlock: {bad} line(s) of the audit log could not be read and were skipped");
    }
    out.flush()?;
    drop(out);
    if follow {
        follow_log(&path, current, pending, &filter, json)?;
    }
    Ok(ExitCode::SUCCESS)
}

/// Print one line if it passes the filter; returns 1 if it is not a record.
fn show(out: &mut impl Write, line: &str, filter: &Filter, json: bool) -> anyhow::Result<usize> {
    if line.trim().is_empty() {
        return Ok(0);
    }
    let Ok(record) = serde_json::from_str::<AuditRecord>(line) else {
        return Ok(1);
    };
    if !filter.accepts(&record) {
        return Ok(0);
    }
    if json {
        writeln!(out, "{line}")?;
    } else {
        writeln!(out, "{}", table_row(&record))?;
    }
    Ok(0)
}

/// One table row. Every field is made printable here too: a log written by an older airlock,
/// or edited by hand, may hold anything.
fn row(time: &str, op: &str, key: &str, chain: &str, decision: &str, reason: &str) -> String {
    use airlock_protocol::text::printable;
    let [time, op, key, chain, decision, reason] =
        [time, op, key, chain, decision, reason].map(|f| printable(f, 1024));
    format!("{time:<21} {op:<18} {key:<20} {chain:<32} {decision:<13} {reason}")
}

fn table_row(r: &AuditRecord) -> String {
    let op = match (&r.namespace, &r.user) {
        (Some(ns), _) => format!("{} sshsig:{ns}", r.operation),
        (None, Some(u)) => format!("{} user:{u}", r.operation),
        (None, None) => r.operation.clone(),
    };
    let key = r
        .key
        .clone()
        .or_else(|| r.fingerprint.clone())
        .unwrap_or_else(|| "-".to_owned());
    let chain = if r.chain.is_empty() {
        "(local)".to_owned()
    } else {
        r.chain
            .iter()
            .map(|h| {
                let name = airlock_policy::compiled::preferred_name(&h.names)
                    .map_or_else(|| h.fingerprint.chars().take(19).collect(), str::to_owned);
                if h.forwarded {
                    format!("{name}>")
                } else {
                    name
                }
            })
            .collect::<Vec<_>>()
            .join(" ")
    };
    row(&r.short_time(), &op, &key, &chain, &r.decision, &r.reason)
}

/// Tail the log: poll for new bytes; when the file is replaced (rotation) finish the old one
/// and start the new one from its beginning.
fn follow_log(
    path: &Path,
    mut current: Option<(File, u64)>,
    mut pending: String,
    filter: &Filter,
    json: bool,
) -> anyhow::Result<()> {
    let mut out = std::io::stdout();
    loop {
        if let Some((file, ino)) = &mut current {
            drain(file, &mut pending, &mut out, filter, json)?;
            let replaced = std::fs::metadata(path).is_ok_and(|m| inode(&m) != *ino);
            if replaced {
                drain(file, &mut pending, &mut out, filter, json)?;
                pending.clear();
                current = open_file(path);
                continue;
            }
        } else {
            current = open_file(path);
            if current.is_some() {
                continue;
            }
        }
        std::thread::sleep(Duration::from_millis(250));
    }
}

fn open_file(path: &Path) -> Option<(File, u64)> {
    let f = File::open(path).ok()?;
    let ino = f.metadata().map_or(0, |m| inode(&m));
    Some((f, ino))
}

fn inode(m: &std::fs::Metadata) -> u64 {
    std::os::unix::fs::MetadataExt::ino(m)
}

/// Show the complete lines read from `file` since the last call; returns the number of
/// lines that were not records.
fn drain(
    file: &mut File,
    pending: &mut String,
    out: &mut impl Write,
    filter: &Filter,
    json: bool,
) -> anyhow::Result<usize> {
    let mut buf = Vec::new();
    file.read_to_end(&mut buf)?;
    if buf.is_empty() {
        return Ok(0);
    }
    pending.push_str(&String::from_utf8_lossy(&buf));
    let mut bad = 0;
    while let Some(i) = pending.find('\n') {
        let line: String = pending.drain(..=i).collect();
        bad += show(out, line.trim_end(), filter, json)?;
    }
    out.flush()?;
    Ok(bad)
}
