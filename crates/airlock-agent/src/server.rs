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

/// A client that has sent the first byte of a frame must finish the whole frame within this
/// time; otherwise the connection is closed, so slow clients cannot hold connection slots.
/// (Between frames a client may stay idle as long as it likes, as ssh does.)
const FRAME_TIMEOUT: Duration = Duration::from_secs(10);

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
        match peer.uid {
            Some(uid) if uid == our_uid || uid == 0 => {}
            Some(uid) => {
                tracing::warn!(uid, "refusing connection from another user");
                continue;
            }
            None => {
                // Fail closed, as OpenSSH does when getpeereid fails.
                tracing::warn!("refusing connection: cannot read the peer's uid");
                continue;
            }
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
        // A wipe signal is also acted on when no request comes.
        agent.wipe_if_signalled();
        let next = agent.expire();
        let cap = tokio::time::Instant::now() + Duration::from_millis(250);
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
    serve_frames(&mut stream, &mut conn, agent).await;
    agent.gate().connection_closed(&conn);
    agent.gate().audit_after_answer();
}

/// Read the 4-byte length of the next frame: no limit on the wait for its first byte, then
/// [`FRAME_TIMEOUT`] for the rest of the frame (see [`read_body`]).
pub async fn read_prefix(stream: &mut UnixStream) -> Option<([u8; 4], tokio::time::Instant)> {
    let mut prefix = [0u8; 4];
    let first = stream.read(&mut prefix[..1]).await.ok()?;
    if first == 0 {
        return None;
    }
    let deadline = tokio::time::Instant::now() + FRAME_TIMEOUT;
    if let Ok(Ok(_)) = tokio::time::timeout_at(deadline, stream.read_exact(&mut prefix[1..])).await
    {
        Some((prefix, deadline))
    } else {
        tracing::debug!("closing connection: frame not completed in time");
        None
    }
}

/// Read a frame body of `len` bytes by `deadline`.
pub async fn read_body(
    stream: &mut UnixStream,
    len: usize,
    deadline: tokio::time::Instant,
) -> Option<Vec<u8>> {
    let mut body = vec![0u8; len];
    if let Ok(Ok(_)) = tokio::time::timeout_at(deadline, stream.read_exact(&mut body)).await {
        Some(body)
    } else {
        tracing::debug!("closing connection: frame not completed in time");
        None
    }
}

async fn serve_frames(stream: &mut UnixStream, conn: &mut Connection, agent: &Agent) {
    loop {
        let Some((prefix, deadline)) = read_prefix(stream).await else {
            return;
        };
        let len = match frame_length(prefix) {
            Ok(len) => len,
            Err(e) => {
                // The framing cannot be trusted any more: close, as OpenSSH does.
                tracing::debug!("closing connection: {e}");
                let _ = stream.write_all(&Response::Failure.encode()).await;
                return;
            }
        };
        let Some(mut body) = read_body(stream, len, deadline).await else {
            return;
        };
        let response = match Request::decode(&body) {
            Ok(request) => {
                tracing::debug!(op = request.operation(), "request");
                let adds_key = matches!(request, Request::AddIdentity(_));
                if adds_key {
                    // The decoder's frames held the key's bytes.
                    crate::signer::scrub_stack();
                }
                let response = agent.handle(conn, request).await;
                if adds_key {
                    // ...and so did preparing it.
                    crate::signer::scrub_stack();
                }
                response
            }
            Err(e) => {
                // Said at the default level: a key type airlock does not take ends here too.
                tracing::warn!(
                    connection = conn.id,
                    "refused a request it cannot read: {}",
                    airlock_protocol::text::printable(&e.to_string(), 1024)
                );
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
