//! The hooks through which a forwarding policy and an audit log plug into the agent (and the
//! guard). Mechanism apart from policy: the agent computes the facts (key, operation, hop
//! chain), a [`Policy`] returns a [`Decision`], an [`AuditSink`] records it.

use std::time::Duration;

use crate::agent::Peer;
use crate::destination::{Binding, HostKey};

/// What a client is asking to do with a key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Operation<'a> {
    /// The key would be listed to the client.
    List,
    /// An SSH user-authentication signature for `user` on the last bound host.
    SignUserAuth {
        /// The remote user name in the userauth request.
        user: &'a str,
    },
    /// An SSHSIG signature (`ssh-keygen -Y sign`, git commit signing) in a namespace.
    SignSshSig {
        /// The SSHSIG namespace, e.g. `git` or `file`.
        namespace: &'a str,
    },
    /// A signature over data that is neither of the above.
    SignOther,
}

/// The facts a policy decides on. Pure data: no sockets.
#[derive(Debug, Clone, Copy)]
pub struct Query<'a> {
    /// The key's SHA256 fingerprint (`SHA256:...`).
    pub fingerprint: &'a str,
    /// The key's comment as added (airlock keys carry their name).
    pub comment: &'a str,
    /// The operation.
    pub operation: Operation<'a>,
    /// The connection's session binds, first hop first: empty for an unbound (local) connection.
    pub chain: &'a [Binding],
    /// Whether a session bind on this connection failed.
    pub bind_failed: bool,
}

/// A policy's answer, with the reason that goes to the audit log and the prompt.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    /// Go ahead.
    Allow(String),
    /// Ask the user first.
    Confirm(String),
    /// Refuse.
    Deny(String),
}

impl Decision {
    /// `allow`, `confirm` or `deny`.
    pub fn verb(&self) -> &'static str {
        match self {
            Decision::Allow(_) => "allow",
            Decision::Confirm(_) => "confirm",
            Decision::Deny(_) => "deny",
        }
    }

    /// The reason.
    pub fn reason(&self) -> &str {
        match self {
            Decision::Allow(r) | Decision::Confirm(r) | Decision::Deny(r) => r,
        }
    }
}

/// A forwarding policy.
pub trait Policy: Send + Sync {
    /// Decide on one use of one key.
    fn decide(&self, query: &Query<'_>) -> Decision;

    /// The longest lifetime the policy allows for a key being added, if any.
    fn lifetime(&self, _fingerprint: &str, _comment: &str) -> Option<Duration> {
        None
    }

    /// The names a host key is known by (from known_hosts and the ssh config), for prompts and
    /// the audit log.
    fn host_names(&self, _key: &HostKey) -> Vec<String> {
        Vec::new()
    }

    /// The smallest RSA key, in bits, that may be added (`None`: OpenSSH's floor, 1024).
    fn rsa_min_bits(&self) -> Option<u32> {
        None
    }

    /// What happened to the policy itself since the last call (a file that vanished or broke,
    /// and the last good policy kept), for the audit log.
    fn take_notices(&self) -> Vec<String> {
        Vec::new()
    }

    /// The names of a bound host (as [`Policy::host_names`], with the bind's fingerprint).
    fn binding_names(&self, bind: &Binding) -> Vec<String> {
        self.host_names(&bind.host_key)
    }
}

/// One hop of a chain as the audit log records it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuditHop {
    /// Names the host key is known by (may be empty).
    pub names: Vec<String>,
    /// The host key's SHA256 fingerprint.
    pub fingerprint: String,
    /// Whether the bind was a forwarding hop.
    pub forwarded: bool,
}

/// One decision, as recorded. Never key material, never passphrases.
#[derive(Debug, Clone)]
pub struct AuditEvent {
    /// Which client connection (a counter since the agent started).
    pub connection: u64,
    /// The peer process.
    pub peer: Peer,
    /// `list`, `sign`, `add`, `remove`, `remove-all`, `lock`, `unlock`, `session-bind`, ...
    pub operation: String,
    /// The key's fingerprint, when the operation concerns one key.
    pub fingerprint: Option<String>,
    /// The key's comment.
    pub comment: Option<String>,
    /// The hop chain of the connection.
    pub chain: Vec<AuditHop>,
    /// The SSHSIG namespace, for SSHSIG signatures.
    pub namespace: Option<String>,
    /// For userauth signatures, the remote user.
    pub user: Option<String>,
    /// `allow`, `confirm-allow`, `confirm-deny` or `deny`.
    pub decision: String,
    /// Why.
    pub reason: String,
}

/// Where decisions are recorded.
pub trait AuditSink: Send + Sync {
    /// Record one decision. Must not block for long: called on the request path, before the
    /// answer is sent.
    fn record(&self, event: AuditEvent);

    /// Store every decision recorded so far, now (the gate calls it shortly after answers, in
    /// batches, and when the agent stops).
    fn flush(&self) {}

    /// Whether records are waiting for [`AuditSink::flush`].
    fn has_pending(&self) -> bool {
        true
    }
}
