//! Guard mode: the same policy, confirmation and audit in front of another agent (OpenSSH's
//! `ssh-agent`, a hardware-token or password-manager agent). The guard tracks session binds
//! itself (and passes them on), filters identities, decides each sign request before
//! forwarding it, refuses key management from forwarded connections, and audits. It works with
//! an upstream that does not understand `session-bind@openssh.com`.

use std::collections::HashMap;
use std::future::Future;
use std::path::PathBuf;
use std::sync::Arc;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{UnixListener, UnixStream};

use airlock_protocol::{Extension, Request, Response, frame_length};

use crate::agent::{Connection, EXTENSIONS};
use crate::client::public_from_blob;
use crate::gate::{Gate, KeyRef, SignKind};
use crate::server::{accept_loop, read_body, read_prefix};

/// The upstream agent and the gate in front of it.
#[derive(Debug)]
pub struct Guard {
    /// The upstream agent's socket.
    pub upstream: PathBuf,
    /// Policy, confirmation, audit.
    pub gate: Gate,
}

/// Serve the guard on `listener` until `shutdown` completes.
pub async fn serve(listener: UnixListener, guard: Arc<Guard>, shutdown: impl Future<Output = ()>) {
    accept_loop(listener, shutdown, move |stream, conn| {
        let guard = Arc::clone(&guard);
        async move {
            let mut conn = conn;
            if let Err(e) = serve_connection(stream, &mut conn, &guard).await {
                tracing::debug!(connection = conn.id, "connection ended: {e}");
            }
            guard.gate.connection_closed(&conn);
            // Whatever this connection recorded before it broke off.
            guard.gate.audit_after_answer();
        }
    })
    .await;
}

/// A frame from a client, within the agent's frame timeout; `None` when the client is gone.
async fn read_client_frame(stream: &mut UnixStream) -> std::io::Result<Option<Vec<u8>>> {
    let Some((prefix, deadline)) = read_prefix(stream).await else {
        return Ok(None);
    };
    let len = frame_length(prefix)
        .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidData, e))?;
    Ok(read_body(stream, len, deadline).await)
}

/// A frame from the upstream agent, which may take its time (its own confirmations).
async fn read_frame(stream: &mut UnixStream) -> std::io::Result<Option<Vec<u8>>> {
    let mut prefix = [0u8; 4];
    if stream.read_exact(&mut prefix).await.is_err() {
        return Ok(None);
    }
    let len = frame_length(prefix)
        .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidData, e))?;
    let mut body = vec![0u8; len];
    stream.read_exact(&mut body).await?;
    Ok(Some(body))
}

struct Upstream {
    stream: UnixStream,
}

impl Upstream {
    async fn call(&mut self, frame: &[u8]) -> std::io::Result<Response> {
        self.stream.write_all(frame).await?;
        let body = read_frame(&mut self.stream).await?.ok_or_else(|| {
            std::io::Error::new(std::io::ErrorKind::UnexpectedEof, "upstream agent closed")
        })?;
        Response::decode(&body).map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidData, e))
    }
}

async fn serve_connection(
    mut stream: UnixStream,
    conn: &mut Connection,
    guard: &Guard,
) -> std::io::Result<()> {
    let mut upstream = Upstream {
        stream: UnixStream::connect(&guard.upstream).await?,
    };
    // Comments of the keys the upstream listed, by blob, for the policy and the prompt.
    let mut comments: HashMap<Vec<u8>, String> = HashMap::new();
    while let Some(body) = read_client_frame(&mut stream).await? {
        let response = match Request::decode(&body) {
            Ok(request) => {
                handle(guard, conn, &mut upstream, &mut comments, &body, request).await?
            }
            Err(e) => {
                tracing::debug!("malformed request: {e}");
                Response::Failure
            }
        };
        let sent = stream.write_all(&response.encode()).await;
        // The audit lines of this request go to disk after the answer, not before it.
        guard.gate.audit_after_answer();
        sent?;
    }
    Ok(())
}

fn framed(body: &[u8]) -> Vec<u8> {
    let mut w = airlock_protocol::Writer::new();
    w.string(body);
    w.into_bytes()
}

async fn handle(
    guard: &Guard,
    conn: &mut Connection,
    upstream: &mut Upstream,
    comments: &mut HashMap<Vec<u8>, String>,
    body: &[u8],
    request: Request,
) -> std::io::Result<Response> {
    let gate = &guard.gate;
    Ok(match request {
        Request::RequestIdentities => match upstream.call(&framed(body)).await? {
            Response::Identities(ids) => {
                let mut shown = Vec::new();
                for id in ids {
                    comments.insert(id.key_blob.clone(), id.comment.clone());
                    let Ok(key) = public_from_blob(&id.key_blob) else {
                        continue;
                    };
                    let fp = key.fingerprint(ssh_key::HashAlg::Sha256).to_string();
                    if gate.may_list(
                        conn,
                        KeyRef {
                            fingerprint: &fp,
                            comment: &id.comment,
                            confirm: false,
                        },
                    ) {
                        shown.push(id);
                    }
                }
                Response::Identities(shown)
            }
            other => other,
        },
        Request::Sign(req) => {
            let Ok(key) = public_from_blob(&req.key_blob) else {
                return Ok(Response::Failure);
            };
            let fp = key.fingerprint(ssh_key::HashAlg::Sha256).to_string();
            if !comments.contains_key(&req.key_blob)
                && let Response::Identities(ids) =
                    upstream.call(&Request::RequestIdentities.encode()).await?
            {
                for id in ids {
                    comments.insert(id.key_blob, id.comment);
                }
            }
            let comment = comments.get(&req.key_blob).cloned().unwrap_or_default();
            let kind = SignKind::classify(&req.data, &req.key_blob);
            match gate
                .authorize_sign(
                    conn,
                    KeyRef {
                        fingerprint: &fp,
                        comment: &comment,
                        confirm: false,
                    },
                    &kind,
                )
                .await
            {
                Ok(()) => upstream.call(&framed(body)).await?,
                Err(_) => Response::Failure,
            }
        }
        Request::Extension(Extension::SessionBind(b)) => match conn.session.bind(&b) {
            Ok(()) => {
                // Pass it on so an upstream that understands binds enforces its own
                // constraints too; one that does not is fine: the guard tracks them itself.
                let _ = upstream.call(&framed(body)).await?;
                Response::Success
            }
            Err(e) => {
                gate.record_other(conn, "session-bind", None, "deny", &e.to_string());
                Response::Failure
            }
        },
        Request::Extension(Extension::Query) => Response::query_answer(EXTENSIONS),
        Request::Smartcard(_) => {
            gate.record_other(
                conn,
                "smartcard",
                None,
                "deny",
                "PKCS#11 requests are never forwarded",
            );
            Response::Failure
        }
        Request::Unknown(_) => Response::Failure,
        other => {
            let op = other.operation();
            if conn.session.is_remote() {
                gate.record_other(
                    conn,
                    op,
                    None,
                    "deny",
                    "key management from a forwarded connection",
                );
                Response::Failure
            } else {
                let r = upstream.call(&framed(body)).await?;
                let ok = matches!(r, Response::Success);
                gate.record_other(
                    conn,
                    op,
                    None,
                    if ok { "allow" } else { "deny" },
                    if ok {
                        "forwarded to the upstream agent"
                    } else {
                        "the upstream agent refused"
                    },
                );
                r
            }
        }
    })
}
