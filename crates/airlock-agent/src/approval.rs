//! Confirmations answered from a terminal: `airlock approve`.
//!
//! Every confirmation the gate asks for is also a *pending request* here, until it is answered
//! (by the askpass program, or by `airlock approve` over the control socket) or times out. The
//! control socket sits beside the agent's own socket ([`control_socket`]), is created 0600 and
//! serves only our uid and root, and is never forwarded by ssh, so a process on a server that
//! holds the forwarded agent cannot answer its own request.
//!
//! The control protocol is one JSON object per line in each direction:
//!
//! - `{"op":"list"}` → `{"pending":[{"id":1,"prompt":"...","age_secs":3,...}]}`
//! - `{"op":"answer","id":1,"allow":true}` → `{"ok":true}`, or `{"error":"..."}`

use std::collections::BTreeMap;
use std::future::Future;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, SystemTime};

use serde::{Deserialize, Serialize};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::{UnixListener, UnixStream};
use tokio::sync::oneshot;

use crate::agent::Connection;

/// Requests waiting at once; beyond this a confirmation is refused at once.
const MAX_PENDING: usize = 256;

/// A control request line is at most this long.
const MAX_LINE: usize = 4096;

/// The control socket of the agent (or guard) listening on `agent_socket`:
/// `agent.sock` → `agent.approve.sock`.
pub fn control_socket(agent_socket: &Path) -> PathBuf {
    agent_socket.with_extension("approve.sock")
}

/// A confirmation waiting for an answer, as `airlock approve` sees it.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct PendingRequest {
    /// Number of this request, unique for the agent's lifetime.
    pub id: u64,
    /// The question, as the askpass program is asked it (key, user, hop chain, requester).
    pub prompt: String,
    /// Seconds since the request arrived.
    pub age_secs: u64,
    /// Seconds until it is denied unanswered.
    pub expires_in_secs: u64,
}

struct Entry {
    prompt: String,
    since: SystemTime,
    timeout: Duration,
    answer: oneshot::Sender<bool>,
}

#[derive(Default)]
struct State {
    next_id: u64,
    pending: BTreeMap<u64, Entry>,
}

/// The pending confirmations, shared by the gate (which adds them) and the control socket
/// (which lists and answers them).
#[derive(Clone, Default)]
pub struct Approvals {
    state: Arc<Mutex<State>>,
}

impl std::fmt::Debug for Approvals {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Approvals")
            .field("pending", &self.lock().pending.len())
            .finish()
    }
}

/// A request registered with [`Approvals::register`]; dropping it withdraws the request.
pub struct Ticket {
    id: u64,
    approvals: Approvals,
    answer: Option<oneshot::Receiver<bool>>,
}

impl Ticket {
    /// The request's number.
    pub fn id(&self) -> u64 {
        self.id
    }

    /// Wait for an answer from `airlock approve`; never completes if none comes.
    pub async fn answered(&mut self) -> bool {
        match self.answer.take() {
            Some(rx) => match rx.await {
                Ok(allow) => allow,
                Err(_) => std::future::pending().await,
            },
            None => std::future::pending().await,
        }
    }
}

impl Drop for Ticket {
    fn drop(&mut self) {
        self.approvals.lock().pending.remove(&self.id);
    }
}

impl Approvals {
    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Add a pending request; `None` when too many are pending already.
    pub fn register(&self, prompt: &str, timeout: Duration) -> Option<Ticket> {
        let mut state = self.lock();
        if state.pending.len() >= MAX_PENDING {
            return None;
        }
        state.next_id += 1;
        let id = state.next_id;
        let (tx, rx) = oneshot::channel();
        state.pending.insert(
            id,
            Entry {
                prompt: prompt.to_owned(),
                since: SystemTime::now(),
                timeout,
                answer: tx,
            },
        );
        Some(Ticket {
            id,
            approvals: self.clone(),
            answer: Some(rx),
        })
    }

    /// The requests waiting now, oldest first.
    pub fn list(&self) -> Vec<PendingRequest> {
        let now = SystemTime::now();
        self.lock()
            .pending
            .iter()
            .map(|(id, e)| {
                let age = now.duration_since(e.since).unwrap_or_default();
                PendingRequest {
                    id: *id,
                    prompt: e.prompt.clone(),
                    age_secs: age.as_secs(),
                    expires_in_secs: e.timeout.saturating_sub(age).as_secs(),
                }
            })
            .collect()
    }

    /// Answer request `id`; false when no such request is waiting.
    pub fn answer(&self, id: u64, allow: bool) -> bool {
        match self.lock().pending.remove(&id) {
            Some(entry) => entry.answer.send(allow).is_ok(),
            None => false,
        }
    }
}

/// A line of the control protocol, client to agent.
#[derive(Debug, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "lowercase")]
pub enum ControlRequest {
    /// List the pending requests.
    List,
    /// Answer one.
    Answer {
        /// The request's number.
        id: u64,
        /// Allow (true) or deny (false).
        allow: bool,
    },
}

/// A line of the control protocol, agent to client.
#[derive(Debug, Serialize, Deserialize)]
#[serde(untagged)]
pub enum ControlResponse {
    /// The answer to `list`.
    Pending {
        /// The requests waiting.
        pending: Vec<PendingRequest>,
    },
    /// The answer to a successful `answer`.
    Ok {
        /// Always true.
        ok: bool,
    },
    /// Something went wrong.
    Error {
        /// What, in one sentence.
        error: String,
    },
}

/// Serve the control socket until `shutdown` completes (same peer checks as the agent socket).
pub async fn serve_control(
    listener: UnixListener,
    approvals: Approvals,
    shutdown: impl Future<Output = ()>,
) {
    crate::server::accept_loop(listener, shutdown, move |stream, conn| {
        let approvals = approvals.clone();
        async move { serve_control_connection(stream, &conn, &approvals).await }
    })
    .await;
}

async fn serve_control_connection(stream: UnixStream, conn: &Connection, approvals: &Approvals) {
    let (read, mut write) = stream.into_split();
    let mut lines = BufReader::new(read.take(1 << 20));
    let mut line = String::new();
    loop {
        line.clear();
        match lines.read_line(&mut line).await {
            Ok(0) | Err(_) => return,
            Ok(_) => {}
        }
        let response = if line.len() > MAX_LINE {
            ControlResponse::Error {
                error: "request too long".into(),
            }
        } else {
            match serde_json::from_str::<ControlRequest>(&line) {
                Ok(ControlRequest::List) => ControlResponse::Pending {
                    pending: approvals.list(),
                },
                Ok(ControlRequest::Answer { id, allow }) => {
                    if approvals.answer(id, allow) {
                        tracing::info!(
                            request = id,
                            allow,
                            by_pid = conn.peer.pid,
                            "confirmation answered by airlock approve"
                        );
                        ControlResponse::Ok { ok: true }
                    } else {
                        ControlResponse::Error {
                            error: format!("no request {id} is waiting (answered or timed out)"),
                        }
                    }
                }
                Err(e) => ControlResponse::Error {
                    error: format!("malformed request: {e}"),
                },
            }
        };
        let mut out = serde_json::to_vec(&response).unwrap_or_default();
        out.push(b'\n');
        if write.write_all(&out).await.is_err() {
            return;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn answered_requests_leave_the_list() {
        let a = Approvals::default();
        let mut t1 = a.register("one", Duration::from_secs(30)).unwrap();
        let t2 = a.register("two", Duration::from_secs(30)).unwrap();
        let ids: Vec<u64> = a.list().iter().map(|p| p.id).collect();
        assert_eq!(ids, vec![t1.id(), t2.id()]);
        assert!(a.answer(t1.id(), true));
        assert!(t1.answered().await);
        assert!(!a.answer(t1.id(), false), "answered twice");
        drop(t2);
        assert!(a.list().is_empty(), "a dropped ticket is withdrawn");
    }

    #[test]
    fn control_socket_sits_beside_the_agent_socket() {
        assert_eq!(
            control_socket(Path::new("/run/user/1/airlock/agent.sock")),
            Path::new("/run/user/1/airlock/agent.approve.sock")
        );
        assert_eq!(
            control_socket(Path::new("/tmp/a")),
            Path::new("/tmp/a.approve.sock")
        );
    }

    #[test]
    fn protocol_lines() {
        let r: ControlRequest =
            serde_json::from_str(r#"{"op":"answer","id":3,"allow":false}"#).unwrap();
        assert!(matches!(
            r,
            ControlRequest::Answer {
                id: 3,
                allow: false
            }
        ));
        assert!(serde_json::from_str::<ControlRequest>(r#"{"op":"nope"}"#).is_err());
    }
}
