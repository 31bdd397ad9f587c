//! A policy that follows its files: re-read when the policy, a known_hosts file, the ssh
//! config or a rule's public key changes, and never fails open while it does.
//!
//! - A policy file that vanishes, or no longer parses, keeps the last good policy (logged, and
//!   audited through [`Policy::take_notices`]); a text that was still settling keeps its say
//!   too. "No policy file" is decided once, at start.
//! - A new version of the policy file is not trusted alone at once: an editor may be half-way
//!   through writing it (truncate-and-write, vim's rename-and-write). Until the file has stayed
//!   unchanged for [`SETTLE`], a request is allowed only if both the last settled policy and
//!   the new text allow it (the stricter answer wins); then the new one is in force alone. So
//!   no moment of a save allows what both the old and the new policy deny.

use std::path::PathBuf;
use std::sync::{Arc, Mutex, PoisonError, RwLock};
use std::time::{Duration, Instant, SystemTime};

use airlock_agent::destination::{Binding, HostKey};
use airlock_agent::policy::{Decision, Policy, Query};

use crate::PolicyError;
use crate::compiled::{CompiledPolicy, PolicySources};

/// How often, at most, the files are looked at.
pub const RECHECK_INTERVAL: Duration = Duration::from_secs(1);

/// How long a new policy text must stay unchanged before it decides alone.
pub const SETTLE: Duration = Duration::from_secs(2);

/// What identifies one version of a file: `None` if it does not exist.
type Stamp = Vec<Option<(SystemTime, u64, u64)>>;

fn stamp(paths: &[PathBuf]) -> Stamp {
    paths
        .iter()
        .map(|p| {
            let m = std::fs::metadata(p).ok()?;
            Some((
                m.modified().unwrap_or(SystemTime::UNIX_EPOCH),
                m.len(),
                inode(&m),
            ))
        })
        .collect()
}

#[cfg(unix)]
fn inode(m: &std::fs::Metadata) -> u64 {
    std::os::unix::fs::MetadataExt::ino(m)
}

#[cfg(not(unix))]
fn inode(_: &std::fs::Metadata) -> u64 {
    0
}

struct Watch {
    checked: Instant,
    stamp: Stamp,
    /// When the policy file last changed.
    changed: Instant,
    /// The policy file's own stamp.
    policy_stamp: Stamp,
    /// Whether a policy file was ever in force: from then on, a missing file is an accident.
    had_file: bool,
}

/// The policies in force: the settled one, and a newer text still settling.
struct InForce {
    settled: Arc<CompiledPolicy>,
    pending: Option<Arc<CompiledPolicy>>,
    /// Whether the file on disk still holds the pending text. When it vanished or broke
    /// after, the pending policy keeps its say but is never promoted.
    pending_on_disk: bool,
}

/// The policy the agent holds: implements [`Policy`], reloading on change at most once per
/// [`RECHECK_INTERVAL`] (and at once when a request names an unknown host key, since ssh
/// writes a new host to known_hosts just before it authenticates).
pub struct PolicyHandle {
    sources: PolicySources,
    settle: Duration,
    current: RwLock<InForce>,
    watch: Mutex<Watch>,
    notices: Mutex<Vec<String>>,
}

impl std::fmt::Debug for PolicyHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PolicyHandle")
            .field("policy_file", &self.sources.policy_file)
            .finish_non_exhaustive()
    }
}

impl PolicyHandle {
    /// Load the policy. A missing file is "no policy" (see [`Self::unrestricted_notice`]); an
    /// invalid one is an error, so the agent can refuse to start on it.
    pub fn load(sources: PolicySources) -> Result<Self, PolicyError> {
        let policy = CompiledPolicy::load(&sources)?;
        let watch = Watch {
            checked: Instant::now(),
            stamp: stamp(policy.inputs()),
            changed: Instant::now(),
            policy_stamp: stamp(std::slice::from_ref(&sources.policy_file)),
            had_file: !policy.is_unrestricted(),
        };
        Ok(Self {
            sources,
            settle: SETTLE,
            current: RwLock::new(InForce {
                settled: Arc::new(policy),
                pending: None,
                pending_on_disk: false,
            }),
            watch: Mutex::new(watch),
            notices: Mutex::new(Vec::new()),
        })
    }

    /// How long a new policy text must stay unchanged before it decides alone (default
    /// [`SETTLE`]; tests shorten it).
    #[must_use]
    pub fn with_settle(mut self, settle: Duration) -> Self {
        self.settle = settle;
        self
    }

    /// The newest policy read (still settling or settled): what `policy check` would show.
    pub fn current(&self) -> Arc<CompiledPolicy> {
        let in_force = self.current.read().unwrap_or_else(PoisonError::into_inner);
        Arc::clone(in_force.pending.as_ref().unwrap_or(&in_force.settled))
    }

    fn in_force(&self) -> (Arc<CompiledPolicy>, Option<Arc<CompiledPolicy>>) {
        let in_force = self.current.read().unwrap_or_else(PoisonError::into_inner);
        (Arc::clone(&in_force.settled), in_force.pending.clone())
    }

    fn notice(&self, message: String) {
        tracing::warn!("{message}");
        self.notices
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .push(message);
    }

    /// When there is no policy file: the sentence to say once at start ("forwarding is
    /// unrestricted ... create one with `airlock policy init`"). Also logged as a warning.
    pub fn unrestricted_notice(&self) -> Option<String> {
        let policy = self.current();
        if !policy.is_unrestricted() {
            return None;
        }
        let msg = unrestricted_message(policy.path());
        tracing::warn!("{msg}");
        Some(msg)
    }

    /// Re-read the files if they changed (and `force` or the interval has passed), and let a
    /// new policy text that has settled decide alone. Returns whether what is in force changed.
    pub fn reload_if_changed(&self, force: bool) -> bool {
        let mut watch = self.watch.lock().unwrap_or_else(PoisonError::into_inner);
        if !force && watch.checked.elapsed() < RECHECK_INTERVAL {
            return false;
        }
        watch.checked = Instant::now();
        let inputs = self.current().inputs().to_vec();
        let now = stamp(&inputs);
        if now == watch.stamp {
            return self.promote_if_settled(&watch);
        }
        // Only the policy file itself is edited by hand; the other inputs (known_hosts, the ssh
        // config, public keys) are written by ssh and airlock, not half-way by an editor.
        let policy_file = stamp(std::slice::from_ref(&self.sources.policy_file));
        let policy_changed = policy_file != watch.policy_stamp;
        watch.policy_stamp = policy_file;
        watch.stamp = now;
        if policy_changed {
            watch.changed = Instant::now();
        }
        let path = self.sources.policy_file.display().to_string();
        let mut in_force = self.current.write().unwrap_or_else(PoisonError::into_inner);
        match CompiledPolicy::load(&self.sources) {
            Ok(policy) if policy.is_unrestricted() && watch.had_file => {
                // Vanished (deleted, or renamed away by an editor mid-save): not "no policy".
                in_force.pending_on_disk = false;
                drop(in_force);
                self.notice(format!(
                    "policy: {path} is gone; keeping the last good policy (no policy file is \
                     decided at start only)"
                ));
                false
            }
            Ok(policy) => {
                // The new policy may watch more files (a known_hosts file it lists).
                watch.stamp = stamp(policy.inputs());
                for w in policy.warnings() {
                    tracing::warn!("policy: {w}");
                }
                let policy = Arc::new(policy);
                if !policy.is_unrestricted() {
                    watch.had_file = true;
                }
                if policy_changed || in_force.pending.is_some() {
                    tracing::info!(
                        "policy: read a new {path}; until it has stayed unchanged for {}s, a \
                         request must be allowed by it and by the last policy",
                        self.settle.as_secs()
                    );
                    in_force.pending = Some(policy);
                    in_force.pending_on_disk = true;
                } else {
                    tracing::info!("policy: re-read {path}");
                    in_force.settled = policy;
                }
                true
            }
            Err(e) => {
                in_force.pending_on_disk = false;
                drop(in_force);
                self.notice(format!("policy: keeping the last good policy: {e}"));
                false
            }
        }
    }

    /// A pending policy that has not changed for [`SETTLE`] becomes the settled one.
    fn promote_if_settled(&self, watch: &Watch) -> bool {
        if watch.changed.elapsed() < self.settle {
            return false;
        }
        let mut in_force = self.current.write().unwrap_or_else(PoisonError::into_inner);
        if !in_force.pending_on_disk {
            return false;
        }
        let Some(pending) = in_force.pending.take() else {
            return false;
        };
        tracing::info!("policy: now in force: {}", pending.path().display());
        in_force.settled = pending;
        true
    }
}

/// What to say when there is no policy file.
pub fn unrestricted_message(path: &std::path::Path) -> String {
    format!(
        "no policy file at {}: agent forwarding is unrestricted (OpenSSH behaviour); \
         run `airlock policy init` to create one",
        path.display()
    )
}

impl PolicyHandle {
    /// The decision of the settled policy, made stricter by a pending one; and whether some
    /// hop had no name (a host ssh may just have added to known_hosts).
    fn decide_in_force(&self, query: &Query<'_>) -> (Decision, bool) {
        let (settled, pending) = self.in_force();
        let one = |policy: &CompiledPolicy| {
            let hops = policy.hops(query.chain);
            let unknown = hops.iter().any(|h| h.names.is_empty());
            let d = policy.decide_hops(
                query.fingerprint,
                query.comment,
                query.operation,
                &hops,
                query.bind_failed,
            );
            (d, unknown)
        };
        let (old, unknown) = one(&settled);
        let Some(pending) = pending else {
            return (old, unknown);
        };
        let (new, unknown_new) = one(&pending);
        (stricter(old, new), unknown || unknown_new)
    }
}

/// The stricter of two decisions: a denial from either, else a confirmation from either.
fn stricter(old: Decision, new: Decision) -> Decision {
    match (old, new) {
        (Decision::Deny(r), _) => Decision::Deny(r),
        (_, Decision::Deny(r)) => Decision::Deny(format!("{r} (the policy file being edited)")),
        (Decision::Confirm(r), _) | (_, Decision::Confirm(r)) => Decision::Confirm(r),
        (Decision::Allow(r), Decision::Allow(_)) => Decision::Allow(r),
    }
}

impl Policy for PolicyHandle {
    fn decide(&self, query: &Query<'_>) -> Decision {
        self.reload_if_changed(false);
        let (decision, unknown_host) = self.decide_in_force(query);
        if matches!(decision, Decision::Deny(_)) && unknown_host && self.reload_if_changed(true) {
            return self.decide_in_force(query).0;
        }
        decision
    }

    fn take_notices(&self) -> Vec<String> {
        std::mem::take(&mut *self.notices.lock().unwrap_or_else(PoisonError::into_inner))
    }

    fn lifetime(&self, fingerprint: &str, comment: &str) -> Option<Duration> {
        let (settled, pending) = self.in_force();
        let old = settled.lifetime(fingerprint, comment);
        // The shorter cap of the two while a new text settles.
        match pending.and_then(|p| p.lifetime(fingerprint, comment)) {
            Some(new) => Some(old.map_or(new, |o| o.min(new))),
            None => old,
        }
    }

    fn rsa_min_bits(&self) -> Option<u32> {
        let (settled, pending) = self.in_force();
        // The higher floor of the two while a new text settles.
        settled
            .rsa_min_bits()
            .max(pending.and_then(|p| p.rsa_min_bits()))
    }

    fn host_names(&self, key: &HostKey) -> Vec<String> {
        self.current().host_names(key)
    }

    fn binding_names(&self, bind: &Binding) -> Vec<String> {
        self.current().binding_names(bind)
    }
}
