//! The three SSH agent requests `airlock key` needs, spoken over a blocking Unix socket so they
//! work against the airlock agent and OpenSSH's `ssh-agent` alike.
//!
//! Wire format: draft-miller-ssh-agent (OpenSSH `PROTOCOL.agent`). Each frame is a `u32` length
//! and a body whose first byte is the message type.

use std::io::{self, Read, Write};
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::time::Duration;

use ssh_encoding::{Decode, Encode};
use ssh_key::{PrivateKey, PublicKey};
use zeroize::Zeroizing;

/// Largest reply accepted, OpenSSH's `AGENT_MAX_LEN`: checked before allocating.
const MAX_FRAME: usize = 256 * 1024;
/// An agent that has not answered in this long is stuck; a confirm prompt is on `add`'s caller.
const IO_TIMEOUT: Duration = Duration::from_secs(30);

const SSH_AGENT_FAILURE: u8 = 5;
const SSH_AGENT_SUCCESS: u8 = 6;
const SSH_AGENTC_REQUEST_IDENTITIES: u8 = 11;
const SSH_AGENT_IDENTITIES_ANSWER: u8 = 12;
const SSH_AGENTC_ADD_IDENTITY: u8 = 17;
const SSH_AGENTC_REMOVE_IDENTITY: u8 = 18;
const SSH_AGENTC_ADD_ID_CONSTRAINED: u8 = 25;
const SSH_AGENT_CONSTRAIN_LIFETIME: u8 = 1;
const SSH_AGENT_CONSTRAIN_CONFIRM: u8 = 2;

/// Why an agent request failed.
#[derive(Debug, thiserror::Error)]
pub(crate) enum AgentError {
    #[error("{0}")]
    Io(#[from] io::Error),
    #[error("the agent refused the request")]
    Refused,
    #[error("the agent sent a malformed reply: {0}")]
    Protocol(String),
}

impl From<ssh_encoding::Error> for AgentError {
    fn from(e: ssh_encoding::Error) -> Self {
        Self::Protocol(e.to_string())
    }
}

/// A connection to an agent.
pub(crate) struct AgentClient {
    stream: UnixStream,
}

impl AgentClient {
    pub(crate) fn connect(path: &Path) -> Result<Self, AgentError> {
        let stream = UnixStream::connect(path)?;
        stream.set_read_timeout(Some(IO_TIMEOUT))?;
        stream.set_write_timeout(Some(IO_TIMEOUT))?;
        Ok(Self { stream })
    }

    /// The identities the agent holds, with their comments. Entries whose key blob this crate
    /// cannot parse (certificates, unknown algorithms) are skipped, not errors.
    pub(crate) fn list(&mut self) -> Result<Vec<(PublicKey, String)>, AgentError> {
        let reply = self.request(&[SSH_AGENTC_REQUEST_IDENTITIES])?;
        let mut reader = reply.as_slice();
        let kind = u8::decode(&mut reader)?;
        if kind != SSH_AGENT_IDENTITIES_ANSWER {
            return Err(unexpected(kind));
        }
        let count = u32::decode(&mut reader)?;
        let mut keys = Vec::new();
        for _ in 0..count {
            let blob = Vec::<u8>::decode(&mut reader)?;
            let comment = String::decode(&mut reader)?;
            if let Ok(key) = PublicKey::from_bytes(&blob) {
                keys.push((key, comment));
            }
        }
        Ok(keys)
    }

    /// Add a decrypted key, with a lifetime and/or a confirm constraint.
    pub(crate) fn add(
        &mut self,
        key: &PrivateKey,
        comment: &str,
        lifetime_secs: Option<u32>,
        confirm: bool,
    ) -> Result<(), AgentError> {
        let constrained = lifetime_secs.is_some() || confirm;
        let key_data = key.key_data();
        let len = 1 + key_data.encoded_len()? + comment.encoded_len()? + 5 + 1;
        // Sized up front so the secret is never left behind in a reallocated buffer.
        let mut body = Zeroizing::new(Vec::with_capacity(len));
        body.push(if constrained {
            SSH_AGENTC_ADD_ID_CONSTRAINED
        } else {
            SSH_AGENTC_ADD_IDENTITY
        });
        key_data.encode(&mut *body)?;
        comment.encode(&mut *body)?;
        if let Some(secs) = lifetime_secs {
            body.push(SSH_AGENT_CONSTRAIN_LIFETIME);
            secs.encode(&mut *body)?;
        }
        if confirm {
            body.push(SSH_AGENT_CONSTRAIN_CONFIRM);
        }
        self.expect_success(&body)
    }

    /// Remove a key.
    pub(crate) fn remove(&mut self, key: &PublicKey) -> Result<(), AgentError> {
        let blob = key
            .to_bytes()
            .map_err(|e| AgentError::Protocol(e.to_string()))?;
        let mut body = vec![SSH_AGENTC_REMOVE_IDENTITY];
        blob.encode(&mut body)?;
        self.expect_success(&body)
    }

    fn expect_success(&mut self, body: &[u8]) -> Result<(), AgentError> {
        let reply = self.request(body)?;
        match reply.first() {
            Some(&SSH_AGENT_SUCCESS) => Ok(()),
            Some(&SSH_AGENT_FAILURE) => Err(AgentError::Refused),
            Some(&other) => Err(unexpected(other)),
            None => Err(AgentError::Protocol("empty reply".into())),
        }
    }

    fn request(&mut self, body: &[u8]) -> Result<Vec<u8>, AgentError> {
        let len = u32::try_from(body.len())
            .map_err(|_| AgentError::Protocol("request too large".into()))?;
        let mut frame = Zeroizing::new(Vec::with_capacity(body.len() + 4));
        frame.extend_from_slice(&len.to_be_bytes());
        frame.extend_from_slice(body);
        self.stream.write_all(&frame)?;
        self.stream.flush()?;

        let mut len = [0u8; 4];
        self.stream.read_exact(&mut len)?;
        let len = usize::try_from(u32::from_be_bytes(len))
            .map_err(|_| AgentError::Protocol("reply length overflows".into()))?;
        if len == 0 || len > MAX_FRAME {
            return Err(AgentError::Protocol(format!(
                "reply of {len} bytes (allowed 1 to {MAX_FRAME})"
            )));
        }
        let mut reply = vec![0u8; len];
        self.stream.read_exact(&mut reply)?;
        Ok(reply)
    }
}

fn unexpected(kind: u8) -> AgentError {
    AgentError::Protocol(format!("unexpected message type {kind}"))
}

#[cfg(test)]
mod tests {
    use std::os::unix::net::UnixListener;
    use std::thread;

    use super::*;

    /// A one-connection fake agent that records requests and answers from a script.
    fn fake_agent(
        replies: Vec<Vec<u8>>,
    ) -> (
        tempfile::TempDir,
        std::path::PathBuf,
        thread::JoinHandle<Vec<Vec<u8>>>,
    ) {
        let dir = tempfile::tempdir().unwrap();
        let sock = dir.path().join("agent.sock");
        let listener = UnixListener::bind(&sock).unwrap();
        let handle = thread::spawn(move || {
            let (mut conn, _) = listener.accept().unwrap();
            let mut seen = Vec::new();
            for reply in replies {
                let mut len = [0u8; 4];
                conn.read_exact(&mut len).unwrap();
                let mut body = vec![0u8; u32::from_be_bytes(len) as usize];
                conn.read_exact(&mut body).unwrap();
                seen.push(body);
                conn.write_all(&u32::try_from(reply.len()).unwrap().to_be_bytes())
                    .unwrap();
                conn.write_all(&reply).unwrap();
            }
            seen
        });
        (dir, sock, handle)
    }

    #[test]
    fn add_with_constraints_and_remove_encode_as_openssh_expects() {
        let key = PrivateKey::random(&mut rand::rngs::OsRng, ssh_key::Algorithm::Ed25519).unwrap();
        let (_dir, sock, handle) = fake_agent(vec![vec![6], vec![6], vec![5]]);
        let mut client = AgentClient::connect(&sock).unwrap();
        client.add(&key, "c", Some(60), true).unwrap();
        client.add(&key, "c", None, false).unwrap();
        let err = client.remove(key.public_key()).unwrap_err();
        assert!(matches!(err, AgentError::Refused));
        let seen = handle.join().unwrap();

        let constrained = &seen[0];
        assert_eq!(constrained[0], SSH_AGENTC_ADD_ID_CONSTRAINED);
        let mut r = &constrained[1..];
        assert_eq!(String::decode(&mut r).unwrap(), "ssh-ed25519");
        let public = Vec::<u8>::decode(&mut r).unwrap();
        assert_eq!(public.len(), 32);
        let secret = Vec::<u8>::decode(&mut r).unwrap();
        assert_eq!(secret.len(), 64);
        assert_eq!(String::decode(&mut r).unwrap(), "c");
        assert_eq!(r, [1, 0, 0, 0, 60, 2]);

        assert_eq!(seen[1][0], SSH_AGENTC_ADD_IDENTITY);
        assert!(seen[1].ends_with(&[0, 0, 0, 1, b'c']));

        assert_eq!(seen[2][0], SSH_AGENTC_REMOVE_IDENTITY);
        let mut r = &seen[2][1..];
        let blob = Vec::<u8>::decode(&mut r).unwrap();
        assert_eq!(
            PublicKey::from_bytes(&blob).unwrap().key_data(),
            key.public_key().key_data()
        );
    }

    #[test]
    fn list_parses_identities_and_skips_unknown_blobs() {
        let key = PrivateKey::random(&mut rand::rngs::OsRng, ssh_key::Algorithm::Ed25519).unwrap();
        let mut reply = vec![SSH_AGENT_IDENTITIES_ANSWER];
        2u32.encode(&mut reply).unwrap();
        key.public_key()
            .to_bytes()
            .unwrap()
            .encode(&mut reply)
            .unwrap();
        "mine".encode(&mut reply).unwrap();
        b"garbage".as_slice().encode(&mut reply).unwrap();
        "other".encode(&mut reply).unwrap();
        let (_dir, sock, handle) = fake_agent(vec![reply]);
        let mut client = AgentClient::connect(&sock).unwrap();
        let keys = client.list().unwrap();
        assert_eq!(keys.len(), 1);
        assert_eq!(keys[0].0.key_data(), key.public_key().key_data());
        assert_eq!(keys[0].1, "mine");
        assert_eq!(
            handle.join().unwrap(),
            vec![vec![SSH_AGENTC_REQUEST_IDENTITIES]]
        );
    }

    #[test]
    fn oversized_reply_is_rejected_before_allocating() {
        let dir = tempfile::tempdir().unwrap();
        let sock = dir.path().join("agent.sock");
        let listener = UnixListener::bind(&sock).unwrap();
        let handle = thread::spawn(move || {
            let (mut conn, _) = listener.accept().unwrap();
            let mut buf = [0u8; 5];
            conn.read_exact(&mut buf).unwrap();
            conn.write_all(&u32::MAX.to_be_bytes()).unwrap();
        });
        let mut client = AgentClient::connect(&sock).unwrap();
        let err = client.list().unwrap_err();
        assert!(matches!(err, AgentError::Protocol(_)), "{err}");
        handle.join().unwrap();
    }
}
