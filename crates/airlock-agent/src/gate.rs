//! The gate every key use passes, in the agent and in the guard alike: the policy's decision,
//! confirmation, and one audit record per decision.

use std::fmt::Write as _;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use subtle::ConstantTimeEq;

use airlock_protocol::text::{MAX_FIELD_CHARS, printable};
use airlock_protocol::{SignedData, UserAuthRequest};

use crate::agent::Connection;
use crate::approval::Approvals;
use crate::confirm::Askpass;
use crate::destination::HostKey;
use crate::policy::{AuditEvent, AuditHop, AuditSink, Decision, Operation, Policy, Query};

/// Policy, confirmation and audit, shared by every connection.
#[derive(Clone, Default)]
pub struct Gate {
    /// The forwarding policy; `None` is OpenSSH behaviour.
    pub policy: Option<Arc<dyn Policy>>,
    /// Where decisions are recorded; `None` records nothing.
    pub audit: Option<Arc<dyn AuditSink>>,
    /// How confirmations are asked.
    pub askpass: Askpass,
    /// Confirmations waiting for `airlock approve`: used only when the user chose to answer
    /// from a terminal ([`Gate::approve_in_terminal`]) and no askpass is usable.
    pub approvals: Approvals,
    /// Whether confirmations may be answered with `airlock approve` (chosen at start, for
    /// machines without askpass). When askpass is usable it alone decides either way.
    pub approve_in_terminal: bool,
    /// Whether a write of the queued audit records is on its way.
    pub audit_write_scheduled: Arc<AtomicBool>,
}

/// Denials from one connection recorded one by one; further ones are counted and summarised
/// in one record when the connection closes.
pub const DENIALS_RECORDED_PER_CONNECTION: u32 = 32;

/// The longest reason kept in a record, in characters.
const MAX_REASON_CHARS: usize = 1024;

/// Audit records are written together, at most this long after the first of them was queued
/// (and at once when the agent stops).
pub const AUDIT_DELAY: Duration = Duration::from_millis(20);

impl std::fmt::Debug for Gate {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Gate")
            .field("policy", &self.policy.is_some())
            .field("audit", &self.audit.is_some())
            .finish_non_exhaustive()
    }
}

/// A key as the gate sees it.
#[derive(Debug, Clone, Copy)]
pub struct KeyRef<'a> {
    /// The key's SHA256 fingerprint.
    pub fingerprint: &'a str,
    /// Its comment.
    pub comment: &'a str,
    /// Whether it was added with the confirm constraint.
    pub confirm: bool,
}

/// The kind of signature a sign request asks for, with what the policy needs.
#[derive(Debug, Clone)]
pub enum SignKind {
    /// A userauth request for the key being used.
    UserAuth(UserAuthRequest),
    /// An SSHSIG signature.
    SshSig(String),
    /// Anything else.
    Other,
}

impl SignKind {
    /// Classify sign data for the key whose blob is `key_blob`.
    pub fn classify(data: &[u8], key_blob: &[u8]) -> Self {
        match SignedData::parse(data) {
            SignedData::UserAuth(u) if userauth_matches(&u, key_blob) => SignKind::UserAuth(u),
            SignedData::SshSig(s) => SignKind::SshSig(s.namespace),
            _ => SignKind::Other,
        }
    }

    fn operation(&self) -> Operation<'_> {
        match self {
            SignKind::UserAuth(u) => Operation::SignUserAuth { user: &u.user },
            SignKind::SshSig(ns) => Operation::SignSshSig { namespace: ns },
            SignKind::Other => Operation::SignOther,
        }
    }
}

/// The key type named by a signature algorithm (`rsa-sha2-256` signs with an `ssh-rsa` key).
fn key_type_of_alg(alg: &str) -> &str {
    match alg {
        "rsa-sha2-256" | "rsa-sha2-512" => "ssh-rsa",
        "rsa-sha2-256-cert-v01@openssh.com" | "rsa-sha2-512-cert-v01@openssh.com" => {
            "ssh-rsa-cert-v01@openssh.com"
        }
        other => other,
    }
}

fn blob_type(blob: &[u8]) -> Option<&str> {
    std::str::from_utf8(airlock_protocol::Cursor::new(blob).string().ok()?).ok()
}

/// The consistency checks of OpenSSH's `parse_userauth_request`.
pub fn userauth_matches(u: &UserAuthRequest, key_blob: &[u8]) -> bool {
    !u.session_id.is_empty()
        && u.service == "ssh-connection"
        && u.key_blob == key_blob
        && blob_type(key_blob) == Some(key_type_of_alg(&u.algorithm))
}

/// OpenSSH's session checks for a userauth signature on a bound connection: the session ID is
/// the latest bind's, and beyond one hop the request is host-bound to the latest bind's key.
pub fn session_matches(conn: &Connection, auth: &UserAuthRequest) -> Result<(), String> {
    let binds = &conn.session.binds;
    let Some(last) = binds.last() else {
        return Ok(());
    };
    if !bool::from(auth.session_id.ct_eq(&last.session_id)) {
        return Err("unexpected session ID on signature request".into());
    }
    match &auth.host_key {
        None if binds.len() > 1 => {
            Err("no host key recorded in signature for forwarded connection".into())
        }
        Some(hk) if HostKey::from_blob(hk).is_none_or(|k| k != last.host_key) => {
            Err("mismatch between host key in request and most recently bound session".into())
        }
        _ => Ok(()),
    }
}

impl Gate {
    fn query<'a>(key: KeyRef<'a>, conn: &'a Connection, operation: Operation<'a>) -> Query<'a> {
        Query {
            fingerprint: key.fingerprint,
            comment: key.comment,
            operation,
            chain: &conn.session.binds,
            bind_failed: conn.session.bind_attempted && conn.session.binds.is_empty(),
        }
    }

    /// The policy's decision, with what happened to the policy file audited first.
    fn decide(&self, policy: &dyn Policy, query: &Query<'_>, conn: &Connection) -> Decision {
        let decision = policy.decide(query);
        for notice in policy.take_notices() {
            self.write_record(conn, "policy", None, &SignKind::Other, "keep", &notice);
        }
        decision
    }

    /// Whether the key may be listed on this connection. A key hidden from a bound connection
    /// is recorded (it is a decision the user may want to see); keys listed are not.
    pub fn may_list(&self, conn: &Connection, key: KeyRef<'_>) -> bool {
        let Some(p) = &self.policy else { return true };
        match self.decide(p.as_ref(), &Self::query(key, conn, Operation::List), conn) {
            Decision::Deny(reason) => {
                if !conn.session.binds.is_empty() {
                    self.record_other(conn, "list", Some(key), "deny", &reason);
                }
                false
            }
            Decision::Allow(_) | Decision::Confirm(_) => true,
        }
    }

    /// Decide on a signature: the policy, then confirmation (the policy's or the key's own),
    /// with one audit record. `Err` carries the reason for refusing.
    pub async fn authorize_sign(
        &self,
        conn: &Connection,
        key: KeyRef<'_>,
        kind: &SignKind,
    ) -> Result<(), String> {
        let mut decision = match &self.policy {
            None => Decision::Allow("no policy".into()),
            Some(p) => self.decide(p.as_ref(), &Self::query(key, conn, kind.operation()), conn),
        };
        // A policy that allows a userauth signature on a bound connection also requires it to
        // belong to the latest bound session, as OpenSSH does for constrained keys.
        if let (Some(_), Decision::Allow(_) | Decision::Confirm(_), SignKind::UserAuth(auth)) =
            (&self.policy, &decision, kind)
            && let Err(reason) = session_matches(conn, auth)
        {
            decision = Decision::Deny(reason);
        }
        let needs_confirm = key.confirm || matches!(decision, Decision::Confirm(_));
        let (verdict, reason) = match decision {
            Decision::Deny(r) => ("deny", r),
            Decision::Allow(r) | Decision::Confirm(r) if needs_confirm => {
                let prompt = self.prompt(conn, key, kind);
                if self.confirm(&prompt).await {
                    ("confirm-allow", r)
                } else {
                    ("confirm-deny", format!("{r}; the user did not confirm"))
                }
            }
            Decision::Allow(r) | Decision::Confirm(r) => ("allow", r),
        };
        self.record(conn, "sign", Some(key), kind, verdict, &reason);
        if verdict == "allow" || verdict == "confirm-allow" {
            Ok(())
        } else {
            Err(reason)
        }
    }

    /// Ask the user. When an askpass program is usable it alone decides, as with OpenSSH: no
    /// other process can answer for the person. Without one, and only when the user chose
    /// `--approve-in-terminal` at start, the request waits for `airlock approve`. Otherwise the
    /// use is refused. None within the timeout denies; only this connection waits.
    async fn confirm(&self, prompt: &str) -> bool {
        let timeout = self.askpass.timeout;
        if self.askpass.usable() {
            return tokio::time::timeout(timeout, self.askpass.confirm(prompt))
                .await
                .unwrap_or_else(|_| {
                    tracing::info!("confirmation timed out; denying");
                    false
                });
        }
        if !self.approve_in_terminal {
            tracing::warn!(
                "confirmation needed but no askpass program can be shown (SSH_ASKPASS, DISPLAY): \
                 refused; start the agent with --approve-in-terminal to answer with `airlock approve`"
            );
            return false;
        }
        let Some(mut ticket) = self.approvals.register(prompt, timeout) else {
            tracing::warn!("too many confirmations pending; denying");
            return false;
        };
        tracing::info!(
            request = ticket.id(),
            "confirmation pending: answer it with `airlock approve`"
        );
        tokio::select! {
            allow = ticket.answered() => allow,
            () = tokio::time::sleep(timeout) => {
                tracing::info!(request = ticket.id(), "confirmation timed out; denying");
                false
            }
        }
    }

    /// The connection has closed: write the summary of the denials it was not given one
    /// record each for.
    pub fn connection_closed(&self, conn: &Connection) {
        let suppressed = conn.denials_suppressed.load(Ordering::Relaxed);
        if suppressed > 0 {
            self.write_record(
                conn,
                "summary",
                None,
                &SignKind::Other,
                "deny",
                &format!(
                    "{suppressed} more denied requests on this connection were not recorded one by one \
                     (after the first {DENIALS_RECORDED_PER_CONNECTION})"
                ),
            );
        }
    }

    /// Wait until the audit log holds every decision recorded so far.
    pub fn flush_audit(&self) {
        if let Some(audit) = &self.audit {
            audit.flush();
        }
    }

    /// After an answer has been sent: have the queued audit records written within
    /// [`AUDIT_DELAY`], in one batch, on a blocking thread, so no client waits for the disk.
    /// Outside a tokio runtime they are written now.
    pub fn audit_after_answer(&self) {
        let Some(audit) = &self.audit else { return };
        if !audit.has_pending() || self.audit_write_scheduled.swap(true, Ordering::AcqRel) {
            return;
        }
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            self.audit_write_scheduled.store(false, Ordering::Release);
            audit.flush();
            return;
        };
        let audit = Arc::clone(audit);
        let scheduled = Arc::clone(&self.audit_write_scheduled);
        runtime.spawn(async move {
            tokio::time::sleep(AUDIT_DELAY).await;
            // Records queued from here on schedule the next write.
            scheduled.store(false, Ordering::Release);
            let _ = tokio::task::spawn_blocking(move || audit.flush()).await;
        });
    }

    /// Record a decision about something other than a signature (add, remove, lock, ...).
    pub fn record_other(
        &self,
        conn: &Connection,
        operation: &str,
        key: Option<KeyRef<'_>>,
        verdict: &str,
        reason: &str,
    ) {
        self.record(conn, operation, key, &SignKind::Other, verdict, reason);
    }

    fn record(
        &self,
        conn: &Connection,
        operation: &str,
        key: Option<KeyRef<'_>>,
        kind: &SignKind,
        verdict: &str,
        reason: &str,
    ) {
        if verdict.ends_with("deny")
            && conn.denials.fetch_add(1, Ordering::Relaxed) >= DENIALS_RECORDED_PER_CONNECTION
        {
            // A flood from one connection: counted, summarised when it closes.
            conn.denials_suppressed.fetch_add(1, Ordering::Relaxed);
            tracing::debug!(
                connection = conn.id,
                operation,
                "denied (not recorded one by one)"
            );
            return;
        }
        self.write_record(conn, operation, key, kind, verdict, reason);
    }

    /// Log and audit one decision. Every field a client chose (comment, user, namespace,
    /// executable path, reason) is escaped and capped here, once, so no log line, audit
    /// record, prompt or table shows raw control characters or grows without bound.
    fn write_record(
        &self,
        conn: &Connection,
        operation: &str,
        key: Option<KeyRef<'_>>,
        kind: &SignKind,
        verdict: &str,
        reason: &str,
    ) {
        let reason = printable(reason, MAX_REASON_CHARS);
        let reason = reason.as_str();
        if verdict.ends_with("deny") && operation != "list" {
            // Every refused request is said at the default level, with its reason (a key
            // left out of a listing is not a refused request).
            tracing::warn!(
                connection = conn.id,
                operation,
                fingerprint = key.map(|k| k.fingerprint),
                decision = verdict,
                reason,
                "refused"
            );
        } else {
            tracing::info!(
                connection = conn.id,
                operation,
                fingerprint = key.map(|k| k.fingerprint),
                decision = verdict,
                reason,
                "decision"
            );
        }
        let Some(audit) = &self.audit else { return };
        let (namespace, user) = match kind {
            SignKind::SshSig(ns) => (Some(printable(ns, MAX_FIELD_CHARS)), None),
            SignKind::UserAuth(u) => (None, Some(printable(&u.user, MAX_FIELD_CHARS))),
            SignKind::Other => (None, None),
        };
        let mut peer = conn.peer.clone();
        peer.exe = peer.exe.map(|e| printable(&e, MAX_FIELD_CHARS));
        audit.record(AuditEvent {
            connection: conn.id,
            peer,
            operation: operation.to_owned(),
            fingerprint: key.map(|k| k.fingerprint.to_owned()),
            comment: key.map(|k| printable(k.comment, MAX_FIELD_CHARS)),
            chain: self.chain(conn),
            namespace,
            user,
            decision: verdict.to_owned(),
            reason: reason.to_owned(),
        });
    }

    /// The connection's hop chain with names, for the audit log and prompts.
    pub fn chain(&self, conn: &Connection) -> Vec<AuditHop> {
        conn.session
            .binds
            .iter()
            .map(|b| AuditHop {
                names: self
                    .policy
                    .as_ref()
                    .map(|p| p.binding_names(b))
                    .unwrap_or_default(),
                fingerprint: b.fingerprint.clone(),
                forwarded: b.forwarded,
            })
            .collect()
    }

    fn prompt(&self, conn: &Connection, key: KeyRef<'_>, kind: &SignKind) -> String {
        let shown = |t: &str| printable(t, MAX_FIELD_CHARS);
        let mut p = format!(
            "Allow use of key {}?\nKey fingerprint {}.",
            shown(key.comment),
            key.fingerprint
        );
        match kind {
            SignKind::UserAuth(u) => {
                let _ = write!(p, "\nUser authentication as \"{}\"", shown(&u.user));
            }
            SignKind::SshSig(ns) => {
                let _ = write!(p, "\nSignature in namespace \"{}\"", shown(ns));
            }
            SignKind::Other => {}
        }
        let chain = self.chain(conn);
        if !chain.is_empty() {
            p.push_str("\nVia: this machine");
            for hop in chain {
                let name = hop
                    .names
                    .first()
                    .cloned()
                    .unwrap_or_else(|| "unknown host".into());
                let _ = write!(
                    p,
                    " > {} ({}){}",
                    shown(&name),
                    hop.fingerprint,
                    if hop.forwarded { " [forwarded]" } else { "" }
                );
            }
        }
        if let Some(pid) = conn.peer.pid {
            let _ = write!(p, "\nRequested by pid {pid}");
            if let Some(exe) = &conn.peer.exe {
                let _ = write!(p, " ({})", shown(exe));
            }
        }
        p
    }
}
