//! The agent's request handling: one function per message, following OpenSSH's `ssh-agent.c`
//! where it is the reference and stricter where the README says so.

use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use subtle::ConstantTimeEq;
use zeroize::Zeroizing;

use airlock_protocol::{AddIdentity, Extension, Identity, Request, Response, SignRequest};

use crate::destination::{SessionState, identity_permitted};
use crate::gate::{Gate, SignKind, session_matches};
use crate::store::{KeyStore, StoredKey, prepare};

/// The extensions `query` reports.
pub const EXTENSIONS: &[&str] = &["session-bind@openssh.com", "query"];

/// Who is on the other end of a connection (from `SO_PEERCRED`).
#[derive(Debug, Clone, Default)]
pub struct Peer {
    /// The peer's user id.
    pub uid: Option<u32>,
    /// The peer's process id.
    pub pid: Option<i32>,
    /// The peer's executable, where the platform tells.
    pub exe: Option<String>,
}

/// Settings fixed at start.
#[derive(Clone, Default)]
pub struct AgentOptions {
    /// Lifetime given to keys added without one (`-t`).
    pub default_lifetime: Option<Duration>,
    /// Policy, confirmation and audit.
    pub gate: Gate,
    /// Whether a "remove every key" signal (SIGUSR1) has arrived since the last call; the
    /// call consumes it. Checked before every request, so keys are gone before the next
    /// answer, however soon after the signal it comes.
    pub wipe_signal: Option<Arc<dyn Fn() -> bool + Send + Sync>>,
}

impl std::fmt::Debug for AgentOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AgentOptions")
            .field("default_lifetime", &self.default_lifetime)
            .field("gate", &self.gate)
            .field("wipe_signal", &self.wipe_signal.is_some())
            .finish()
    }
}

/// The state of one client connection.
#[derive(Debug, Default)]
pub struct Connection {
    /// A number for logs and the audit trail, unique while the agent runs.
    pub id: u64,
    /// Its session binds.
    pub session: SessionState,
    /// Its peer.
    pub peer: Peer,
    /// Denials recorded for it so far.
    pub denials: AtomicU32,
    /// Denials beyond [`crate::gate::DENIALS_RECORDED_PER_CONNECTION`], summarised at close.
    pub denials_suppressed: AtomicU64,
}

struct LockState {
    salt: [u8; 16],
    hash: Zeroizing<[u8; 32]>,
}

/// The agent: keys, lock state and options, shared by every connection.
pub struct Agent {
    store: Mutex<KeyStore>,
    lock: Mutex<Option<LockState>>,
    /// Serialises unlock attempts so the growing delay cannot be sidestepped with parallel
    /// connections; the count of consecutive failures lives inside.
    unlock_gate: tokio::sync::Mutex<u32>,
    /// Counts removals and locks, so a request can tell cheaply that nothing was revoked
    /// while it waited.
    revocations: AtomicU64,
    /// Woken whenever keys are removed or the agent is locked.
    revoked: tokio::sync::Notify,
    /// Held while a wipe signal is consumed and acted on.
    wipe: Mutex<()>,
    options: AgentOptions,
}

impl std::fmt::Debug for Agent {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Agent").finish_non_exhaustive()
    }
}

fn lock_hash(passphrase: &[u8], salt: &[u8; 16]) -> Zeroizing<[u8; 32]> {
    let mut out = Zeroizing::new([0u8; 32]);
    // bcrypt_pbkdf with one round, as OpenSSH's agent (LOCK_ROUNDS 1); cannot fail for a
    // non-empty passphrase and salt.
    let _ = bcrypt_pbkdf::bcrypt_pbkdf(passphrase, salt, 1, out.as_mut_slice());
    out
}

impl Agent {
    /// The gate every key use passes (policy, confirmation, audit).
    pub fn gate(&self) -> &Gate {
        &self.options.gate
    }

    /// A new, empty, unlocked agent.
    pub fn new(options: AgentOptions) -> Arc<Self> {
        Arc::new(Self {
            store: Mutex::new(KeyStore::default()),
            lock: Mutex::new(None),
            unlock_gate: tokio::sync::Mutex::new(0),
            revocations: AtomicU64::new(0),
            revoked: tokio::sync::Notify::new(),
            wipe: Mutex::new(()),
            options,
        })
    }

    fn store(&self) -> MutexGuard<'_, KeyStore> {
        // A panic while holding the lock cannot leave the store inconsistent (every mutation is
        // a single Vec operation), so a poisoned lock is still usable.
        self.store
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn locked(&self) -> bool {
        self.lock
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .is_some()
    }

    /// Drop expired keys now, and shield again the keys that have not signed for a while;
    /// returns when the next one expires.
    pub fn expire(&self) -> Option<tokio::time::Instant> {
        let mut store = self.store();
        let expired = store.expire(tokio::time::Instant::now());
        for fp in &expired {
            tracing::info!(fingerprint = %fp, "key lifetime ended; removed");
        }
        if !expired.is_empty() {
            self.revoke();
        }
        for key in store.keys() {
            key.signer.reshield_if_idle();
        }
        store.next_expiry()
    }

    /// Remove every key (SIGUSR1, as OpenSSH 10).
    pub fn remove_all(&self) -> usize {
        let n = self.store().clear();
        self.revoke();
        n
    }

    /// Keys were removed or the agent locked: wake the requests that wait for an answer.
    fn revoke(&self) {
        self.revocations.fetch_add(1, Ordering::AcqRel);
        self.revoked.notify_waiters();
    }

    /// Act on a pending wipe signal ([`AgentOptions::wipe_signal`]): remove every key. The
    /// signal is consumed and acted on under one lock, so whoever finds nothing pending
    /// afterwards also finds the keys gone.
    pub fn wipe_if_signalled(&self) {
        let Some(signalled) = &self.options.wipe_signal else {
            return;
        };
        let _held = self
            .wipe
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if signalled() {
            let n = self.remove_all();
            tracing::info!(removed = n, "SIGUSR1: removed all keys");
        }
    }

    /// Whether, since the revocation count was `since`, the agent was locked or `key` is no
    /// longer the one held for its blob. Nothing revoked at all (the signing path's usual
    /// case) is told by the count alone, without a lock.
    fn revoked_since(&self, key: &StoredKey, since: u64) -> bool {
        self.revocations.load(Ordering::Acquire) != since
            && (self.locked()
                || self
                    .store()
                    .find(&key.blob)
                    .is_none_or(|held| !Arc::ptr_eq(&held.signer, &key.signer)))
    }

    /// Completes when `key` is removed (or replaced) or the agent is locked after `since`.
    async fn until_revoked(&self, key: &StoredKey, since: u64) {
        loop {
            let woken = self.revoked.notified();
            tokio::pin!(woken);
            woken.as_mut().enable();
            if self.revoked_since(key, since) {
                return;
            }
            woken.await;
        }
    }

    /// The number of keys held.
    pub fn len(&self) -> usize {
        self.store().keys().len()
    }

    /// Whether the agent holds no keys.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Answer one request on a connection.
    pub async fn handle(&self, conn: &mut Connection, request: Request) -> Response {
        self.wipe_if_signalled();
        if self.locked() {
            return match request {
                Request::Unlock(pass) => self.unlock(conn, &pass).await,
                Request::RequestIdentities => Response::Identities(Vec::new()),
                other => {
                    // As OpenSSH: everything else, session binds included, fails while locked.
                    self.options.gate.record_other(
                        conn,
                        other.operation(),
                        None,
                        "deny",
                        "the agent is locked",
                    );
                    Response::Failure
                }
            };
        }
        match request {
            Request::RequestIdentities => self.identities(conn),
            Request::Sign(req) => self.sign(conn, &req).await,
            Request::AddIdentity(add) => self.add(conn, &add),
            Request::RemoveIdentity { key_blob } => {
                self.mutate(conn, "remove", |s| s.remove(&key_blob))
            }
            Request::RemoveAllIdentities | Request::RemoveAllLegacy => {
                self.mutate(conn, "remove-all", |s| {
                    s.clear();
                    true
                })
            }
            Request::Lock(pass) => self.lock(conn, &pass),
            Request::Unlock(_) => Response::Failure,
            Request::Smartcard(kind) => {
                tracing::info!(
                    kind,
                    "refusing PKCS#11 request: airlock never loads provider code"
                );
                Response::Failure
            }
            Request::Extension(Extension::SessionBind(b)) => self.session_bind(conn, &b),
            Request::Extension(Extension::Query) => Response::query_answer(EXTENSIONS),
            Request::Extension(Extension::Other { name, .. }) => {
                tracing::debug!(%name, "unsupported extension");
                Response::Failure
            }
            Request::Unknown(kind) => {
                tracing::debug!(kind, "unknown message type");
                Response::Failure
            }
        }
    }

    fn identities(&self, conn: &Connection) -> Response {
        let store = self.store();
        let now = tokio::time::Instant::now();
        let ids = store
            .keys()
            .iter()
            .filter(|k| k.expires.is_none_or(|t| t > now))
            .filter(|k| identity_permitted(&k.destinations, &conn.session, None).is_ok())
            .filter(|k| self.options.gate.may_list(conn, k.key_ref()))
            .map(|k| Identity {
                key_blob: k.blob.clone(),
                comment: k.comment.clone(),
            })
            .collect();
        Response::Identities(ids)
    }

    /// The destination checks of `process_sign_request2` for a key added with `ssh-add -h`.
    fn check_destination(
        key: &StoredKey,
        conn: &Connection,
        kind: &SignKind,
    ) -> Result<(), String> {
        if conn.session.binds.is_empty() {
            return Err(
                "refusing use of destination-constrained key to sign on unbound connection".into(),
            );
        }
        let SignKind::UserAuth(auth) = kind else {
            return Err(
                "refusing use of destination-constrained key to sign an unidentified signature"
                    .into(),
            );
        };
        identity_permitted(&key.destinations, &conn.session, Some(&auth.user))
            .map_err(|e| e.to_string())?;
        session_matches(conn, auth)
    }

    async fn sign(&self, conn: &Connection, req: &SignRequest) -> Response {
        let Some(key) = self.store().find(&req.key_blob).cloned() else {
            tracing::debug!("sign request for a key the agent does not hold");
            return Response::Failure;
        };
        let kind = SignKind::classify(&req.data, &req.key_blob);
        if !key.destinations.is_empty()
            && let Err(reason) = Self::check_destination(&key, conn, &kind)
        {
            self.options
                .gate
                .record_other(conn, "sign", Some(key.key_ref()), "deny", &reason);
            return Response::Failure;
        }
        // A confirmation may take a while: the user can remove the key or lock the agent in
        // the meantime, and then no answer may sign with it.
        let since = self.revocations.load(Ordering::Acquire);
        let authorized = tokio::select! {
            biased;
            r = self.options.gate.authorize_sign(conn, key.key_ref(), &kind) => r.is_ok(),
            () = self.until_revoked(&key, since) => false,
        };
        if self.revoked_since(&key, since) {
            self.options.gate.record_other(
                conn,
                "sign",
                Some(key.key_ref()),
                "deny",
                "the key was removed or the agent locked while the request waited",
            );
            return Response::Failure;
        }
        if !authorized {
            return Response::Failure;
        }
        // The store's lock is not held: `key` is this request's own reference.
        match key.signer.sign(&req.data, req.flags) {
            Ok(sig) => Response::Signature(sig),
            Err(e) => {
                tracing::warn!(fingerprint = %key.fingerprint, "signing failed: {e}");
                Response::Failure
            }
        }
    }

    fn add(&self, conn: &Connection, add: &AddIdentity) -> Response {
        let gate = &self.options.gate;
        if conn.session.is_remote() {
            gate.record_other(
                conn,
                "add",
                None,
                "deny",
                "key management from a forwarded connection",
            );
            return Response::Failure;
        }
        match prepare(
            &add.key,
            &add.comment,
            &add.constraints,
            self.options.default_lifetime,
        ) {
            Ok(mut key) => {
                // The policy may raise the RSA floor above OpenSSH's.
                if let (Some(floor), Some(bits)) = (
                    gate.policy.as_ref().and_then(|p| p.rsa_min_bits()),
                    key.signer.rsa_bits(),
                ) && bits < floor as usize
                {
                    gate.record_other(
                        conn,
                        "add",
                        Some(key.key_ref()),
                        "deny",
                        &format!(
                            "key refused: an RSA key of {bits} bits is below the policy's \
                             rsa-min-bits = {floor}"
                        ),
                    );
                    return Response::Failure;
                }
                // The policy's lifetime is a cap on whatever the client asked for.
                if let Some(cap) = gate
                    .policy
                    .as_ref()
                    .and_then(|p| p.lifetime(&key.fingerprint(), &key.comment))
                {
                    let cap = tokio::time::Instant::now() + cap;
                    key.expires = Some(key.expires.map_or(cap, |e| e.min(cap)));
                }
                let reason = match key.signer.short_rsa_bits() {
                    Some(bits) => {
                        let r = format!(
                            "added; an RSA key of {bits} bits is weak (below {} bits); \
                             OpenSSH accepts it from {}",
                            crate::signer::RSA_WARN_BITS,
                            crate::signer::RSA_MIN_BITS
                        );
                        tracing::warn!(fingerprint = %key.fingerprint, "{r}");
                        r
                    }
                    None => "added".to_owned(),
                };
                gate.record_other(conn, "add", Some(key.key_ref()), "allow", &reason);
                self.store().insert(key);
                Response::Success
            }
            Err(e) => {
                gate.record_other(conn, "add", None, "deny", &format!("key refused: {e}"));
                Response::Failure
            }
        }
    }

    fn mutate(
        &self,
        conn: &Connection,
        what: &str,
        f: impl FnOnce(&mut KeyStore) -> bool,
    ) -> Response {
        if conn.session.is_remote() {
            self.options.gate.record_other(
                conn,
                what,
                None,
                "deny",
                "key management from a forwarded connection",
            );
            return Response::Failure;
        }
        let done = f(&mut self.store());
        if done {
            self.revoke();
        }
        self.options.gate.record_other(
            conn,
            what,
            None,
            if done { "allow" } else { "deny" },
            if done { "done" } else { "no such key" },
        );
        if done {
            Response::Success
        } else {
            Response::Failure
        }
    }

    fn lock(&self, conn: &Connection, pass: &[u8]) -> Response {
        if conn.session.is_remote() || pass.is_empty() {
            self.options.gate.record_other(
                conn,
                "lock",
                None,
                "deny",
                "from a forwarded connection or with an empty passphrase",
            );
            return Response::Failure;
        }
        let mut lock = self
            .lock
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if lock.is_some() {
            return Response::Failure;
        }
        let salt: [u8; 16] = rand::random();
        *lock = Some(LockState {
            salt,
            hash: lock_hash(pass, &salt),
        });
        drop(lock);
        self.revoke();
        tracing::info!("agent locked");
        Response::Success
    }

    async fn unlock(&self, conn: &Connection, pass: &[u8]) -> Response {
        if conn.session.is_remote() || pass.is_empty() {
            self.options.gate.record_other(
                conn,
                "unlock",
                None,
                "deny",
                "from a forwarded connection or with an empty passphrase",
            );
            return Response::Failure;
        }
        let mut failures = self.unlock_gate.lock().await;
        let ok = {
            let mut lock = self
                .lock
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            let ok = lock
                .as_ref()
                .is_some_and(|l| bool::from(lock_hash(pass, &l.salt).ct_eq(&*l.hash)));
            if ok {
                *lock = None;
            }
            ok
        };
        if ok {
            *failures = 0;
            tracing::info!("agent unlocked");
            Response::Success
        } else {
            // 0.1 s more for each consecutive failure, up to 10 s, as OpenSSH.
            *failures = (*failures + 1).min(100);
            tokio::time::sleep(Duration::from_millis(100 * u64::from(*failures))).await;
            Response::Failure
        }
    }

    fn session_bind(
        &self,
        conn: &mut Connection,
        bind: &airlock_protocol::SessionBind,
    ) -> Response {
        match conn.session.bind(bind) {
            Ok(()) => Response::Success,
            Err(e) => {
                self.options
                    .gate
                    .record_other(conn, "session-bind", None, "deny", &e.to_string());
                Response::Failure
            }
        }
    }
}
