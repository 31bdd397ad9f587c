//! The audit log: one JSON object per line per decision, appended in whole lines with `write(2)`
//! on an `O_APPEND` descriptor (so lines from several writers never interleave), in batches
//! shortly after the agent has answered; file 0600 and directory 0700 from creation, rotated by size
//! (`audit.jsonl` → `audit.jsonl.1` → ...).
//!
//! What a flood cannot do: rotation drops an old file only once it is more than a day old
//! ([`KEEP_YOUNGER_THAN`]), so records of the last day survive unless they alone fill
//! [`MAX_ROTATED`] files (200 MiB at the default size); and the gate records at most 32 denials
//! per connection one by one, each client-chosen field escaped and capped at 256 characters,
//! then one summary when the connection closes.
//! Fingerprints only: never key material.

use std::fs::{File, OpenOptions};
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::sync::{Mutex, PoisonError};

use airlock_agent::policy::{AuditEvent, AuditSink};
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

use crate::PolicyError;

/// Rotate when the file would grow past this (10 MiB).
pub const DEFAULT_MAX_BYTES: u64 = 10 * 1024 * 1024;
/// Keep this many rotated files (`.1` newest), and more while they are young.
pub const DEFAULT_KEEP: usize = 3;
/// A rotated file younger than this is never dropped (up to [`MAX_ROTATED`] files).
pub const KEEP_YOUNGER_THAN: std::time::Duration = std::time::Duration::from_hours(24);
/// The most rotated files ever kept, young or not.
pub const MAX_ROTATED: usize = 20;

fn is_young(path: &Path) -> bool {
    std::fs::metadata(path)
        .and_then(|m| m.modified())
        .ok()
        .and_then(|t| t.elapsed().ok())
        .is_some_and(|age| age < KEEP_YOUNGER_THAN)
}

/// The peer process of a record.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuditPeer {
    /// User id.
    pub uid: Option<u32>,
    /// Process id.
    pub pid: Option<i32>,
    /// Executable.
    pub exe: Option<String>,
}

/// One hop of a recorded chain.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuditRecordHop {
    /// Names the host key is known by.
    #[serde(default)]
    pub names: Vec<String>,
    /// The host key's SHA256 fingerprint.
    pub fingerprint: String,
    /// A forwarding hop.
    pub forwarded: bool,
}

/// One line of the audit log, as written and read back.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuditRecord {
    /// RFC 3339, UTC.
    pub time: String,
    /// The agent's connection counter.
    pub connection: u64,
    /// The peer process.
    #[serde(default)]
    pub peer: AuditPeer,
    /// `list`, `sign`, `add`, ...
    pub operation: String,
    /// The key's SHA256 fingerprint.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fingerprint: Option<String>,
    /// The key's name (its comment).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key: Option<String>,
    /// The hop chain, first hop first.
    #[serde(default)]
    pub chain: Vec<AuditRecordHop>,
    /// SSHSIG namespace.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub namespace: Option<String>,
    /// Remote user of a userauth signature.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user: Option<String>,
    /// `allow`, `confirm-allow`, `confirm-deny`, `deny`.
    pub decision: String,
    /// Why.
    pub reason: String,
}

impl AuditRecord {
    /// The record of an event at a given time (the event's strings move into it).
    pub fn from_event_at(event: AuditEvent, at: OffsetDateTime) -> Self {
        Self {
            time: at
                .to_offset(time::UtcOffset::UTC)
                .format(&Rfc3339)
                .unwrap_or_default(),
            connection: event.connection,
            peer: AuditPeer {
                uid: event.peer.uid,
                pid: event.peer.pid,
                exe: event.peer.exe,
            },
            operation: event.operation,
            fingerprint: event.fingerprint,
            key: event.comment,
            chain: event
                .chain
                .into_iter()
                .map(|h| AuditRecordHop {
                    names: h.names,
                    fingerprint: h.fingerprint,
                    forwarded: h.forwarded,
                })
                .collect(),
            namespace: event.namespace,
            user: event.user,
            decision: event.decision,
            reason: event.reason,
        }
    }

    /// The time, parsed.
    pub fn parsed_time(&self) -> Option<OffsetDateTime> {
        OffsetDateTime::parse(&self.time, &Rfc3339).ok()
    }

    /// The time as a [`std::time::SystemTime`].
    pub fn system_time(&self) -> Option<std::time::SystemTime> {
        self.parsed_time().map(std::time::SystemTime::from)
    }

    /// The time for a table: `2026-01-02 15:04:05Z` (the log's own text if it is not RFC 3339).
    pub fn short_time(&self) -> String {
        match self.parsed_time() {
            Some(t) => format!(
                "{:04}-{:02}-{:02} {:02}:{:02}:{:02}Z",
                t.year(),
                u8::from(t.month()),
                t.day(),
                t.hour(),
                t.minute(),
                t.second()
            ),
            None => self.time.clone(),
        }
    }

    /// Whether the request was refused (`deny`, `confirm-deny`).
    pub fn is_denied(&self) -> bool {
        self.decision.ends_with("deny")
    }
}

struct Open {
    file: File,
    /// Bytes in the file as far as this writer knows (others may have appended since).
    size: u64,
}

/// The file, its rotation settings and the descriptor.
struct Shared {
    path: PathBuf,
    max_bytes: u64,
    keep: usize,
    open: Mutex<Open>,
}

/// An append-only audit log with size rotation. Implements [`AuditSink`].
///
/// [`AuditSink::record`] is called on the agent's request path, before the answer goes out, so
/// it only stamps the event and queues it; [`AuditLog::flush`] writes the queue (whole lines,
/// in order, in one `write(2)`). The agent's gate calls it on a blocking thread at most 20 ms
/// after an answer, so no client waits for the disk and busy moments cost one write per
/// batch; the agent also flushes when it stops, and dropping the log flushes. A `kill -9`
/// can lose the records of those last milliseconds.
pub struct AuditLog {
    shared: Shared,
    pending: Mutex<Vec<(AuditEvent, OffsetDateTime)>>,
}

impl std::fmt::Debug for AuditLog {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AuditLog")
            .field("path", &self.shared.path)
            .finish_non_exhaustive()
    }
}

fn open_append(path: &Path) -> Result<File, PolicyError> {
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty())
        && !dir.exists()
    {
        let mut b = std::fs::DirBuilder::new();
        b.recursive(true);
        #[cfg(unix)]
        std::os::unix::fs::DirBuilderExt::mode(&mut b, 0o700);
        b.create(dir).map_err(|e| {
            std::io::Error::new(e.kind(), format!("creating {}: {e}", dir.display()))
        })?;
    }
    let mut o = OpenOptions::new();
    o.append(true).create(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut o, 0o600);
    o.open(path).map_err(|e| {
        std::io::Error::new(e.kind(), format!("opening {}: {e}", path.display())).into()
    })
}

/// `audit.jsonl.N`.
pub fn rotated_path(path: &Path, n: usize) -> PathBuf {
    let mut s = path.as_os_str().to_owned();
    s.push(format!(".{n}"));
    PathBuf::from(s)
}

impl AuditLog {
    /// Open (create) the log with the default rotation: 10 MiB, 3 old files.
    pub fn open(path: impl Into<PathBuf>) -> Result<Self, PolicyError> {
        Self::with_rotation(path, DEFAULT_MAX_BYTES, DEFAULT_KEEP)
    }

    /// Open with a rotation size and count (`keep` = 0: the file is truncated by rotation).
    pub fn with_rotation(
        path: impl Into<PathBuf>,
        max_bytes: u64,
        keep: usize,
    ) -> Result<Self, PolicyError> {
        let path = path.into();
        let file = open_append(&path)?;
        let size = file.metadata().map_or(0, |m| m.len());
        Ok(Self {
            shared: Shared {
                path,
                max_bytes,
                keep,
                open: Mutex::new(Open { file, size }),
            },
            pending: Mutex::new(Vec::new()),
        })
    }

    /// The log's path.
    pub fn path(&self) -> &Path {
        &self.shared.path
    }

    /// Write every queued record to the file, on this thread.
    pub fn flush(&self) {
        let queued = {
            let mut pending = self.pending.lock().unwrap_or_else(PoisonError::into_inner);
            if pending.is_empty() {
                return;
            }
            std::mem::take(&mut *pending)
        };
        let mut lines = Vec::with_capacity(queued.len() * 400);
        for (event, at) in queued {
            match serde_json::to_writer(&mut lines, &AuditRecord::from_event_at(event, at)) {
                Ok(()) => lines.push(b'\n'),
                Err(e) => tracing::warn!("audit log {}: {e}", self.path().display()),
            }
        }
        if let Err(e) = self.shared.write_lines(&lines) {
            tracing::warn!("audit log {}: {e}", self.path().display());
        }
    }

    /// The log files, oldest first: `.N` ... `.1`, then the log itself (those that exist;
    /// beyond `.keep` too, where rotation kept young files).
    pub fn files(path: &Path, keep: usize) -> Vec<PathBuf> {
        let mut out: Vec<PathBuf> = (1..=keep.max(MAX_ROTATED))
            .rev()
            .map(|n| rotated_path(path, n))
            .filter(|p| p.exists())
            .collect();
        if path.exists() {
            out.push(path.to_owned());
        }
        out
    }
}

impl Shared {
    /// Append `lines` (whole lines), rotating first whenever the next line would take the file
    /// past its size; each run of lines between rotations goes out in one `write(2)` on the
    /// `O_APPEND` descriptor, so it lands whole at the end whatever other writers do.
    fn write_lines(&self, lines: &[u8]) -> Result<(), PolicyError> {
        let mut open = self.open.lock().unwrap_or_else(PoisonError::into_inner);
        let mut rest = lines;
        while !rest.is_empty() {
            // The longest run of whole lines that fits (at least one line): usually all.
            let mut take = 0;
            if open.size + rest.len() as u64 <= self.max_bytes {
                take = rest.len();
            } else {
                for line in rest.split_inclusive(|&b| b == b'\n') {
                    let next = take + line.len();
                    if take > 0 && open.size + next as u64 > self.max_bytes {
                        break;
                    }
                    take = next;
                }
            }
            let (chunk, after) = rest.split_at(take);
            if open.size + chunk.len() as u64 > self.max_bytes {
                // Others may have written too (or rotated): ask the file before rotating.
                open.size = open.file.metadata().map_or(open.size, |m| m.len());
                if open.size > 0 && open.size + chunk.len() as u64 > self.max_bytes {
                    self.rotate(&mut open)?;
                }
            }
            let n = open.file.write(chunk).map_err(|e| {
                std::io::Error::new(e.kind(), format!("writing {}: {e}", self.path.display()))
            })?;
            // A short write (disk full) leaves the rest for a second write.
            if let Some(left) = chunk.get(n..).filter(|r| !r.is_empty()) {
                open.file.write_all(left)?;
            }
            open.size += chunk.len() as u64;
            rest = after;
        }
        Ok(())
    }

    /// Rename `.N-1` → `.N` ... the log → `.1`, then reopen: done under the mutex, so no line
    /// is written in between and none is lost.
    fn rotate(&self, open: &mut Open) -> Result<(), PolicyError> {
        if self.keep == 0 {
            open.file.set_len(0)?;
            open.size = 0;
            return Ok(());
        }
        // `.last` is the slot the oldest kept file moves into; what was there is dropped. It
        // moves past young files, so a flood cannot rotate away the last day's records.
        let mut last = self.keep;
        while last < MAX_ROTATED && is_young(&rotated_path(&self.path, last)) {
            last += 1;
        }
        for n in (1..last).rev() {
            let from = rotated_path(&self.path, n);
            if from.exists() {
                fs_err::rename(&from, rotated_path(&self.path, n + 1))?;
            }
        }
        fs_err::rename(&self.path, rotated_path(&self.path, 1))?;
        // Older files beyond the kept ones, left by an earlier run of young files.
        for n in last + 1..=MAX_ROTATED {
            let _ = std::fs::remove_file(rotated_path(&self.path, n));
        }
        open.file = open_append(&self.path)?;
        open.size = open.file.metadata().map_or(0, |m| m.len());
        Ok(())
    }
}

impl Drop for AuditLog {
    fn drop(&mut self) {
        self.flush();
    }
}

impl AuditSink for AuditLog {
    fn record(&self, event: AuditEvent) {
        self.pending
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .push((event, OffsetDateTime::now_utc()));
    }

    fn flush(&self) {
        AuditLog::flush(self);
    }

    fn has_pending(&self) -> bool {
        !self
            .pending
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use airlock_agent::Peer;
    use airlock_agent::policy::AuditHop;
    use std::sync::Arc;

    fn event(i: u64) -> AuditEvent {
        AuditEvent {
            connection: i,
            peer: Peer {
                uid: Some(1000),
                pid: Some(42),
                exe: Some("/usr/bin/ssh".into()),
            },
            operation: "sign".into(),
            fingerprint: Some("SHA256:abc".into()),
            comment: Some("ai-project".into()),
            chain: vec![AuditHop {
                names: vec!["gpu-node".into()],
                fingerprint: "SHA256:host".into(),
                forwarded: true,
            }],
            namespace: None,
            user: Some("git".into()),
            decision: "allow".into(),
            reason: "x".repeat(usize::try_from(i % 50).unwrap()),
        }
    }

    fn lines(paths: &[PathBuf]) -> Vec<AuditRecord> {
        paths
            .iter()
            .flat_map(|p| {
                std::fs::read_to_string(p)
                    .unwrap()
                    .lines()
                    .map(|l| serde_json::from_str(l).unwrap())
                    .collect::<Vec<AuditRecord>>()
            })
            .collect()
    }

    #[test]
    fn record_fields() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("state/airlock/audit.jsonl");
        let log = AuditLog::open(&path).unwrap();
        log.record(event(7));
        log.flush();
        let text = std::fs::read_to_string(&path).unwrap();
        let v: serde_json::Value = serde_json::from_str(text.trim_end()).unwrap();
        assert_eq!(v["connection"], 7);
        assert_eq!(v["peer"]["exe"], "/usr/bin/ssh");
        assert_eq!(v["key"], "ai-project");
        assert_eq!(v["chain"][0]["names"][0], "gpu-node");
        assert_eq!(v["chain"][0]["forwarded"], true);
        assert_eq!(v["user"], "git");
        assert!(v.get("namespace").is_none());
        let rec: AuditRecord = serde_json::from_str(text.trim_end()).unwrap();
        assert!(rec.parsed_time().is_some(), "{}", rec.time);
        assert!(rec.time.ends_with('Z'));
    }

    #[cfg(unix)]
    #[test]
    fn modes() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("new/audit.jsonl");
        let _log = AuditLog::open(&path).unwrap();
        assert_eq!(
            std::fs::metadata(&path).unwrap().permissions().mode() & 0o777,
            0o600
        );
        assert_eq!(
            std::fs::metadata(path.parent().unwrap())
                .unwrap()
                .permissions()
                .mode()
                & 0o777,
            0o700
        );
    }

    #[test]
    fn concurrent_appends_are_whole_lines() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("audit.jsonl");
        let log = Arc::new(AuditLog::open(&path).unwrap());
        // A second writer on its own descriptor, as another process would have.
        let other = Arc::new(AuditLog::open(&path).unwrap());
        let threads: Vec<_> = (0..8)
            .map(|t| {
                let log = if t % 2 == 0 {
                    Arc::clone(&log)
                } else {
                    Arc::clone(&other)
                };
                std::thread::spawn(move || {
                    for i in 0..200 {
                        log.record(event(t * 1000 + i));
                    }
                })
            })
            .collect();
        for t in threads {
            t.join().unwrap();
        }
        log.flush();
        other.flush();
        let records = lines(&[path]);
        assert_eq!(records.len(), 1600);
        let mut ids: Vec<u64> = records.iter().map(|r| r.connection).collect();
        ids.sort_unstable();
        ids.dedup();
        assert_eq!(ids.len(), 1600);
    }

    #[test]
    fn rotation_keeps_every_line() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("audit.jsonl");
        let log = Arc::new(AuditLog::with_rotation(&path, 4096, 100).unwrap());
        let threads: Vec<_> = (0..4)
            .map(|t| {
                let log = Arc::clone(&log);
                std::thread::spawn(move || {
                    for i in 0..100 {
                        log.record(event(t * 1000 + i));
                    }
                })
            })
            .collect();
        for t in threads {
            t.join().unwrap();
        }
        log.flush();
        let files = AuditLog::files(&path, 100);
        assert!(files.len() > 3, "{files:?}");
        for f in &files {
            assert!(std::fs::metadata(f).unwrap().len() <= 4096);
        }
        let records = lines(&files);
        assert_eq!(records.len(), 400);
        // Per writer thread, oldest file first gives the order of writing.
        for t in 0..4 {
            let mine: Vec<u64> = records
                .iter()
                .map(|r| r.connection)
                .filter(|c| c / 1000 == t)
                .collect();
            assert_eq!(mine, (0..100).map(|i| t * 1000 + i).collect::<Vec<_>>());
        }
    }

    #[test]
    fn dropping_the_log_writes_what_was_recorded() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("audit.jsonl");
        let log = AuditLog::open(&path).unwrap();
        for i in 0..500 {
            log.record(event(i));
        }
        drop(log);
        let ids: Vec<u64> = lines(&[path]).iter().map(|r| r.connection).collect();
        assert_eq!(ids, (0..500).collect::<Vec<_>>());
    }

    #[test]
    fn rotation_drops_only_files_older_than_a_day() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("audit.jsonl");
        let log = AuditLog::with_rotation(&path, 1024, 3).unwrap();
        for i in 0..200 {
            log.record(event(i));
        }
        log.flush();
        // Young files are kept beyond `keep`, up to the cap.
        assert!(rotated_path(&path, MAX_ROTATED).exists());
        assert!(!rotated_path(&path, MAX_ROTATED + 1).exists());
        let records = lines(&AuditLog::files(&path, 3));
        // The newest lines are all there, in order, ending with the last.
        let ids: Vec<u64> = records.iter().map(|r| r.connection).collect();
        assert_eq!(ids.last(), Some(&199));
        assert!(ids.windows(2).all(|w| w[1] == w[0] + 1));
        // Once they are old, the next rotation keeps only `keep` of them.
        let two_days_ago = std::time::SystemTime::now() - 2 * KEEP_YOUNGER_THAN;
        for f in AuditLog::files(&path, 3) {
            OpenOptions::new()
                .write(true)
                .open(&f)
                .unwrap()
                .set_modified(two_days_ago)
                .unwrap();
        }
        for i in 200..230 {
            log.record(event(i));
        }
        log.flush();
        // Beyond `keep`, only files written since (young) remain.
        for n in 4..=MAX_ROTATED {
            let f = rotated_path(&path, n);
            assert!(
                !f.exists() || is_young(&f),
                "{} is old and kept",
                f.display()
            );
        }
        assert!(
            AuditLog::files(&path, 3).len() < MAX_ROTATED,
            "the old files were not dropped"
        );
        let ids: Vec<u64> = lines(&AuditLog::files(&path, 3))
            .iter()
            .map(|r| r.connection)
            .collect();
        assert_eq!(ids.last(), Some(&229));
    }
}
