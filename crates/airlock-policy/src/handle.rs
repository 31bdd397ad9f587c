//! A policy that follows its files: re-read when the policy, a known_hosts file, the ssh
//! config or a rule's public key changes; a broken edit keeps the last good policy.

use std::path::PathBuf;
use std::sync::{Arc, Mutex, PoisonError, RwLock};
use std::time::{Duration, Instant, SystemTime};

use airlock_agent::destination::{Binding, HostKey};
use airlock_agent::policy::{Decision, Policy, Query};

use crate::PolicyError;
use crate::compiled::{CompiledPolicy, PolicySources};

/// How often, at most, the files are looked at.
pub const RECHECK_INTERVAL: Duration = Duration::from_secs(1);

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
}

/// The policy the agent holds: implements [`Policy`], reloading on change at most once per
/// [`RECHECK_INTERVAL`] (and at once when a request names an unknown host key, since ssh
/// writes a new host to known_hosts just before it authenticates).
pub struct PolicyHandle {
    sources: PolicySources,
    current: RwLock<Arc<CompiledPolicy>>,
    watch: Mutex<Watch>,
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
        };
        Ok(Self {
            sources,
            current: RwLock::new(Arc::new(policy)),
            watch: Mutex::new(watch),
        })
    }

    /// The policy in force now.
    pub fn current(&self) -> Arc<CompiledPolicy> {
        Arc::clone(&self.current.read().unwrap_or_else(PoisonError::into_inner))
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

    /// Re-read the files if they changed (and `force` or the interval has passed). Returns
    /// whether a new policy is in force.
    pub fn reload_if_changed(&self, force: bool) -> bool {
        let mut watch = self.watch.lock().unwrap_or_else(PoisonError::into_inner);
        if !force && watch.checked.elapsed() < RECHECK_INTERVAL {
            return false;
        }
        watch.checked = Instant::now();
        let inputs = self.current().inputs().to_vec();
        let now = stamp(&inputs);
        if now == watch.stamp {
            return false;
        }
        watch.stamp = now;
        match CompiledPolicy::load(&self.sources) {
            Ok(policy) => {
                // The new policy may watch more files (a known_hosts file it lists).
                watch.stamp = stamp(policy.inputs());
                for w in policy.warnings() {
                    tracing::warn!("policy: {w}");
                }
                if policy.is_unrestricted() {
                    tracing::warn!("{}", unrestricted_message(policy.path()));
                } else {
                    tracing::info!("policy: re-read {}", policy.path().display());
                }
                *self.current.write().unwrap_or_else(PoisonError::into_inner) = Arc::new(policy);
                true
            }
            Err(e) => {
                tracing::warn!("policy: keeping the last good policy: {e}");
                false
            }
        }
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

impl Policy for PolicyHandle {
    fn decide(&self, query: &Query<'_>) -> Decision {
        self.reload_if_changed(false);
        let policy = self.current();
        let hops = policy.hops(query.chain);
        let decision = policy.decide_hops(
            query.fingerprint,
            query.comment,
            query.operation,
            &hops,
            query.bind_failed,
        );
        if matches!(decision, Decision::Deny(_))
            && hops.iter().any(|h| h.names.is_empty())
            && self.reload_if_changed(true)
        {
            return self.current().decide(query);
        }
        decision
    }

    fn lifetime(&self, fingerprint: &str, comment: &str) -> Option<Duration> {
        self.current().lifetime(fingerprint, comment)
    }

    fn host_names(&self, key: &HostKey) -> Vec<String> {
        self.current().host_names(key)
    }

    fn binding_names(&self, bind: &Binding) -> Vec<String> {
        self.current().binding_names(bind)
    }
}
