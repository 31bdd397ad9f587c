//! Loading keys into, listing and removing keys from a running agent (airlock's or OpenSSH's).

use std::path::{Path, PathBuf};

use ssh_key::{PrivateKey, PublicKey};

use crate::KeyError;
use crate::agent_client::{AgentClient, AgentError};

/// A connection to the agent listening on a socket.
pub struct Agent {
    socket: PathBuf,
    client: AgentClient,
}

impl Agent {
    /// Connect to the agent at `socket`.
    pub fn connect(socket: &Path) -> Result<Self, KeyError> {
        let client = AgentClient::connect(socket).map_err(|e| agent_error(socket, &e))?;
        Ok(Self {
            socket: socket.to_owned(),
            client,
        })
    }

    /// The public keys the agent holds, with their comments.
    pub fn identities(&mut self) -> Result<Vec<(PublicKey, String)>, KeyError> {
        self.client
            .list()
            .map_err(|e| agent_error(&self.socket, &e))
    }

    /// Whether the agent holds `key` (compared by key material, not comment).
    pub fn holds(&mut self, key: &PublicKey) -> Result<bool, KeyError> {
        Ok(self
            .identities()?
            .iter()
            .any(|(held, _)| held.key_data() == key.key_data()))
    }

    /// Add a decrypted key. `lifetime_secs` makes the agent drop it after that many seconds;
    /// `confirm` makes it ask before each use.
    pub fn add(
        &mut self,
        key: &PrivateKey,
        comment: &str,
        lifetime_secs: Option<u32>,
        confirm: bool,
    ) -> Result<(), KeyError> {
        self.client
            .add(key, comment, lifetime_secs, confirm)
            .map_err(|e| match e {
                AgentError::Refused => KeyError::Agent {
                    socket: self.socket.clone(),
                    reason: if confirm {
                        "the agent refused the key (a confirm constraint needs ssh-askpass on the agent's side)".into()
                    } else {
                        "the agent refused the key".into()
                    },
                },
                other => agent_error(&self.socket, &other),
            })
    }

    /// Remove a key.
    pub fn remove(&mut self, key: &PublicKey) -> Result<(), KeyError> {
        self.client
            .remove(key)
            .map_err(|e| agent_error(&self.socket, &e))
    }
}

fn agent_error(socket: &Path, error: &AgentError) -> KeyError {
    let reason = match error {
        AgentError::Io(io)
            if matches!(
                io.kind(),
                std::io::ErrorKind::NotFound | std::io::ErrorKind::ConnectionRefused
            ) =>
        {
            format!(
                "no agent is listening ({io}); start one with `eval \"$(airlock agent)\"` or pass --socket"
            )
        }
        other => other.to_string(),
    };
    KeyError::Agent {
        socket: socket.to_owned(),
        reason,
    }
}
