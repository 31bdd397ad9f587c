//! The socket server: accept connections, check the peer, read capped frames, answer.
//! Structured like tokio's mini-redis: `serve(listener, agent, shutdown)` with a semaphore
//! capping connections and one task per connection.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{UnixListener, UnixStream};
use tokio::sync::Semaphore;

use airlock_protocol::{Request, Response, frame_length};

use crate::agent::{Agent, Connection, Peer};

/// Connections served at once; more wait in the listen backlog.
pub const MAX_CONNECTIONS: usize = 8192;

/// A client that sent a frame header must finish the body within this time.
const BODY_TIMEOUT: Duration = Duration::from_secs(10);

/// Serve `listener` until `shutdown` completes. Also runs the key-lifetime reaper.
pub async fn serve(listener: UnixListener, agent: Arc<Agent>, shutdown: impl Future<Output = ()>) {
    let reaper = tokio::spawn(reap(Arc::clone(&agent)));
    accept_loop(listener, shutdown, move |stream, conn| {
        let agent = Arc::clone(&agent);
        async move { serve_connection(stream, conn, &agent).await }
    })
    .await;
    reaper.abort();
}

/// Accept connections until `shutdown` completes, at most [`MAX_CONNECTIONS`] at once: refuse
/// peers whose uid is neither ours nor root, number the rest, and run `handle` for each in its
/// own task (so one slow client, or one pending confirmation, never holds up another). Shared by
/// the agent and the guard.
pub async fn accept_loop<F, Fut>(
    listener: UnixListener,
    shutdown: impl Future<Output = ()>,
    handle: F,
) where
    F: Fn(UnixStream, Connection) -> Fut,
    Fut: Future<Output = ()> + Send + 'static,
{
    let limit = Arc::new(Semaphore::new(MAX_CONNECTIONS));
    let our_uid = nix::unistd::geteuid().as_raw();
    let mut next_id: u64 = 0;
    tokio::pin!(shutdown);
    loop {
        let permit = tokio::select! {
            () = &mut shutdown => break,
            p = Arc::clone(&limit).acquire_owned() => match p { Ok(p) => p, Err(_) => break },
        };
        let stream = tokio::select! {
            () = &mut shutdown => break,
            r = listener.accept() => match r {
                Ok((s, _)) => s,
                Err(e) => {
                    // EMFILE and friends: back off briefly instead of spinning.
                    tracing::warn!("accept failed: {e}");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
        };
        let peer = peer_of(&stream);
        if let Some(uid) = peer.uid
            && uid != our_uid
            && uid != 0
        {
            tracing::warn!(uid, "refusing connection from another user");
            continue;
        }
        next_id += 1;
        let conn = Connection {
            id: next_id,
            peer,
            ..Connection::default()
        };
        let task = handle(stream, conn);
        tokio::spawn(async move {
            task.await;
            drop(permit);
        });
    }
}

async fn reap(agent: Arc<Agent>) {
    loop {
        let next = agent.expire();
        let cap = tokio::time::Instant::now() + Duration::from_secs(1);
        tokio::time::sleep_until(next.map_or(cap, |n| n.min(cap))).await;
    }
}

fn peer_of(stream: &UnixStream) -> Peer {
    match stream.peer_cred() {
        Ok(cred) => {
            let pid = cred.pid();
            Peer {
                uid: Some(cred.uid()),
                pid,
                exe: pid.and_then(exe_of),
            }
        }
        Err(_) => Peer::default(),
    }
}

#[cfg(target_os = "linux")]
fn exe_of(pid: i32) -> Option<String> {
    std::fs::read_link(format!("/proc/{pid}/exe"))
        .ok()
        .map(|p| p.display().to_string())
}

#[cfg(not(target_os = "linux"))]
fn exe_of(_pid: i32) -> Option<String> {
    None
}

/// Serve one connection until it closes or breaks the framing.
pub async fn serve_connection(mut stream: UnixStream, mut conn: Connection, agent: &Agent) {
    loop {
        let mut prefix = [0u8; 4];
        if stream.read_exact(&mut prefix).await.is_err() {
            return;
        }
        let len = match frame_length(prefix) {
            Ok(len) => len,
            Err(e) => {
                // The framing cannot be trusted any more: close, as OpenSSH does.
                tracing::debug!("closing connection: {e}");
                let _ = stream.write_all(&Response::Failure.encode()).await;
                return;
            }
        };
        let mut body = vec![0u8; len];
        match tokio::time::timeout(BODY_TIMEOUT, stream.read_exact(&mut body)).await {
            Ok(Ok(_)) => {}
            _ => return,
        }
        let response = match Request::decode(&body) {
            Ok(request) => {
                tracing::debug!(op = request.operation(), "request");
                agent.handle(&mut conn, request).await
            }
            Err(e) => {
                tracing::debug!("malformed request: {e}");
                Response::Failure
            }
        };
        zeroize::Zeroize::zeroize(&mut body);
        let sent = stream.write_all(&response.encode()).await;
        // The audit lines of this request go to disk after the answer, not before it.
        agent.gate().audit_after_answer();
        if sent.is_err() {
            return;
        }
    }
}
