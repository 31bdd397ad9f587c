//! A load test, not a timing: 1,000 concurrent connections signing while other connections send
//! malformed and oversized frames and disconnect mid-message. No legitimate request may fail,
//! and the agent's memory must return near its baseline afterwards.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use airlock_agent::client::Client;
use airlock_protocol::{Request, Response, SignRequest, frame_length};
use airlock_test_support::{AirlockAgent, Home};
use ssh_encoding::{Decode, Encode};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::UnixStream;

const EXE: &str = env!("CARGO_BIN_EXE_airlock");
const SIGNERS: usize = 1000;
const SIGNS_EACH: usize = 5;
const HOSTILE: usize = 300;

async fn connect(path: &std::path::Path) -> UnixStream {
    // The listen backlog may be momentarily full: retry, bounded.
    for _ in 0..200 {
        if let Ok(s) = UnixStream::connect(path).await {
            return s;
        }
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    panic!("cannot connect to {}", path.display());
}

async fn roundtrip(s: &mut UnixStream, frame: &[u8]) -> Response {
    s.write_all(frame).await.unwrap();
    let mut prefix = [0u8; 4];
    s.read_exact(&mut prefix).await.unwrap();
    let mut body = vec![0u8; frame_length(prefix).unwrap()];
    s.read_exact(&mut body).await.unwrap();
    Response::decode(&body).unwrap()
}

#[test]
fn thousand_signers_among_hostile_clients() {
    let (_, hard) =
        nix::sys::resource::getrlimit(nix::sys::resource::Resource::RLIMIT_NOFILE).unwrap();
    nix::sys::resource::setrlimit(
        nix::sys::resource::Resource::RLIMIT_NOFILE,
        hard.min(65536),
        hard,
    )
    .unwrap();

    let home = Home::new().unwrap();
    let agent = AirlockAgent::start(&home, EXE).unwrap();
    let key =
        ssh_key::PrivateKey::random(&mut rand::rngs::OsRng, ssh_key::Algorithm::Ed25519).unwrap();
    Client::connect(agent.socket())
        .unwrap()
        .add(&key, "load", None, false)
        .unwrap();
    let public = key.public_key().clone();
    let mut blob = Vec::new();
    public.key_data().encode(&mut blob).unwrap();

    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    // Warm up, then take the baseline.
    rt.block_on(async {
        let mut s = connect(agent.socket()).await;
        let frame = Request::Sign(SignRequest {
            key_blob: blob.clone(),
            data: b"warm".to_vec(),
            flags: 0,
        })
        .encode();
        for _ in 0..100 {
            assert!(matches!(
                roundtrip(&mut s, &frame).await,
                Response::Signature(_)
            ));
        }
    });
    let baseline = agent.rss_kib().unwrap();

    let failures = Arc::new(AtomicUsize::new(0));
    let signed = Arc::new(AtomicUsize::new(0));
    rt.block_on(async {
        let mut tasks = Vec::new();
        for i in 0..SIGNERS {
            let (sock, blob, public, failures, signed) = (
                agent.socket().to_path_buf(),
                blob.clone(),
                public.clone(),
                failures.clone(),
                signed.clone(),
            );
            tasks.push(tokio::spawn(async move {
                let mut s = connect(&sock).await;
                for j in 0..SIGNS_EACH {
                    let data = format!("request {i}/{j}").into_bytes();
                    let frame = Request::Sign(SignRequest {
                        key_blob: blob.clone(),
                        data: data.clone(),
                        flags: 0,
                    })
                    .encode();
                    match roundtrip(&mut s, &frame).await {
                        Response::Signature(sig) => {
                            let sig = ssh_key::Signature::decode(&mut &sig[..]).unwrap();
                            if signature::Verifier::verify(public.key_data(), &data, &sig).is_ok() {
                                signed.fetch_add(1, Ordering::Relaxed);
                            } else {
                                failures.fetch_add(1, Ordering::Relaxed);
                            }
                        }
                        _ => {
                            failures.fetch_add(1, Ordering::Relaxed);
                        }
                    }
                }
            }));
        }
        for i in 0..HOSTILE {
            let sock = agent.socket().to_path_buf();
            tasks.push(tokio::spawn(async move {
                let mut s = connect(&sock).await;
                match i % 4 {
                    // garbage bodies: each gets FAILURE and the connection stays usable
                    0 => {
                        for n in 0..5u8 {
                            let body = vec![13, n, 0xff, 0xff];
                            let mut frame =
                                u32::try_from(body.len()).unwrap().to_be_bytes().to_vec();
                            frame.extend_from_slice(&body);
                            assert_eq!(roundtrip(&mut s, &frame).await, Response::Failure);
                        }
                    }
                    // oversized: refused before allocation, connection closed
                    1 => {
                        let _ = s.write_all(&(64 * 1024 * 1024u32).to_be_bytes()).await;
                        let mut buf = [0u8; 64];
                        let _ = s.read(&mut buf).await;
                    }
                    // disconnect mid-message
                    2 => {
                        let _ = s.write_all(&[0, 0, 1, 0, 13, 0, 0]).await;
                        drop(s);
                    }
                    // a truncated header, then gone
                    _ => {
                        let _ = s.write_all(&[0, 0]).await;
                    }
                }
            }));
        }
        for t in tasks {
            t.await.unwrap();
        }
    });
    assert_eq!(
        failures.load(Ordering::Relaxed),
        0,
        "legitimate requests failed"
    );
    assert_eq!(signed.load(Ordering::Relaxed), SIGNERS * SIGNS_EACH);

    // Memory returns near the baseline once the connections are gone (allow the allocator to
    // keep some arenas: within 2x the baseline plus 8 MiB).
    let mut after = agent.rss_kib().unwrap();
    for _ in 0..50 {
        if after <= baseline * 2 + 8 * 1024 {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
        after = agent.rss_kib().unwrap();
    }
    eprintln!("agent RSS: baseline {baseline} KiB, after load {after} KiB");
    assert!(
        after <= baseline * 2 + 8 * 1024,
        "RSS grew from {baseline} KiB to {after} KiB"
    );
    // And it still serves.
    assert_eq!(
        Client::connect(agent.socket())
            .unwrap()
            .list()
            .unwrap()
            .len(),
        1
    );
}
