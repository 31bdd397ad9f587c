//! One throughput run: N threads, each with its own persistent connection, signing for a fixed
//! duration.

use std::sync::{Arc, Barrier};
use std::thread;
use std::time::{Duration, Instant};

use anyhow::{Context, ensure};

use airlock_protocol::{Request, Response};

use crate::BenchKey;
use crate::agents::AgentProcess;

/// The data every sign request carries: 68 bytes, the size the notes' OpenSSH baseline used
/// (`notes/openssh-agent.md` §6).
pub fn sign_data() -> Vec<u8> {
    const DATA: &[u8; 68] = b"airlock-bench: the same 68 bytes, for every agent and every request.";
    DATA.to_vec()
}

/// What to run.
#[derive(Debug)]
pub struct Workload<'a> {
    /// The key to sign with.
    pub key: &'a BenchKey,
    /// The data to sign.
    pub data: &'a [u8],
    /// Concurrent clients, each a thread with its own connection.
    pub clients: usize,
    /// How long every client keeps signing.
    pub duration: Duration,
    /// Whether to keep every request's round-trip time.
    pub record_latency: bool,
    /// Requests every new connection sends first (session binds), each answered with success.
    pub setup: &'a [Request],
}

/// What a run measured.
#[derive(Debug, Clone, Default)]
pub struct RunResult {
    /// Signatures received, over all clients.
    pub signatures: u64,
    /// From the common start to the last client's last answer.
    pub elapsed: Duration,
    /// Round-trip times, if recorded.
    pub latencies: Vec<Duration>,
}

impl RunResult {
    /// Signatures per second.
    #[expect(clippy::cast_precision_loss, reason = "counts stay far below 2^52")]
    pub fn per_second(&self) -> f64 {
        self.signatures as f64 / self.elapsed.as_secs_f64().max(f64::EPSILON)
    }
}

/// Run `workload` against `agent`. Connections are made and a first signature per connection is
/// verified before the clock starts; every later answer must be a signature or the run fails.
pub fn run(agent: &AgentProcess, workload: &Workload<'_>) -> anyhow::Result<RunResult> {
    let barrier = Arc::new(Barrier::new(workload.clients + 1));
    let mut handles = Vec::with_capacity(workload.clients);
    for _ in 0..workload.clients {
        let mut client = agent.client()?;
        for request in workload.setup {
            let answer = client.request(request)?;
            ensure!(
                answer == Response::Success,
                "{}: setup request refused: {answer:?}",
                agent.kind
            );
        }
        let sig = client.sign(
            &workload.key.blob,
            workload.data,
            workload.key.algorithm.flags(),
        )?;
        crate::verify_signature(workload.key, workload.data, &sig)?;
        let barrier = Arc::clone(&barrier);
        let blob = workload.key.blob.clone();
        let data = workload.data.to_vec();
        let flags = workload.key.algorithm.flags();
        let duration = workload.duration;
        let record = workload.record_latency;
        handles.push(thread::spawn(
            move || -> anyhow::Result<(u64, Instant, Vec<Duration>)> {
                barrier.wait();
                let deadline = Instant::now() + duration;
                let mut count = 0u64;
                let mut latencies = Vec::with_capacity(if record { 32_768 } else { 0 });
                loop {
                    let sent = Instant::now();
                    let sig = client.sign(&blob, &data, flags)?;
                    let answered = Instant::now();
                    ensure!(!sig.is_empty(), "empty signature");
                    count += 1;
                    if record {
                        latencies.push(answered - sent);
                    }
                    if answered >= deadline {
                        return Ok((count, answered, latencies));
                    }
                }
            },
        ));
    }
    barrier.wait();
    let start = Instant::now();
    let mut result = RunResult::default();
    let mut last = start;
    for handle in handles {
        let (count, end, latencies) = handle
            .join()
            .map_err(|_| anyhow::anyhow!("a client thread panicked"))?
            .context("a client failed")?;
        result.signatures += count;
        last = last.max(end);
        result.latencies.extend(latencies);
    }
    result.elapsed = last - start;
    Ok(result)
}
