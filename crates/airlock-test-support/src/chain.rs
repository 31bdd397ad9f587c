//! [`Chain`]: several sshds and a client config naming them, for multi-hop tests on one machine.

use std::path::{Path, PathBuf};
use std::process::Command;

use crate::error::{Error, Result};
use crate::home::Home;
use crate::sshd::{Sshd, SshdBuilder, client_defaults};

/// N sshds on 127.0.0.1, each with its own host key, plus an ssh config and `known_hosts` in a
/// [`Home`] that name them (`node-a`, `node-b`, ...).
///
/// The config written to [`Chain::ssh_config`] has one block per node (`HostName 127.0.0.1`,
/// its port, `HostKeyAlias <name>`) and then [`client_defaults`]: `UserKnownHostsFile` is
/// [`Chain::known_hosts`], which lists every node under its alias name, and
/// `StrictHostKeyChecking yes`. Neither `IdentitiesOnly` nor `ForwardAgent` is set: pass `-A`
/// (or `-o ForwardAgent=yes`) and `-i` per test.
///
/// **The remote side.** Every node runs here, as the same user, so a command "on node-a" runs
/// with the real home of that user (sshd sets `HOME` from `getpwuid`, and `ssh` ignores `$HOME`
/// anyway). It must therefore be told which config to use: [`Chain::remote_ssh_args`] gives the
/// arguments (`-F <config> <to>`) for an `ssh` run on one node to reach another. The config and
/// `known_hosts` are the laptop's files, which node-a can read because it is the same machine;
/// the agent it uses is whatever sshd forwarded (`SSH_AUTH_SOCK` set by sshd on node-a).
///
/// ```no_run
/// use airlock_test_support::{Chain, KeyType, OpenSshAgent, generate_key};
/// let chain = Chain::start(&["node-a", "node-b"])?;
/// let home = chain.home();
/// let key = generate_key(&home.ssh_dir(), "id", KeyType::Ed25519)?;
/// chain.authorize(&key.public_key_line()?)?;
/// let agent = OpenSshAgent::start(home)?;
/// home.command_with_agent("ssh-add", agent.socket()).arg(&key.private_key).status();
/// // laptop -> node-a (agent forwarded) -> node-b
/// let status = home
///     .command_with_agent("ssh", agent.socket())
///     .arg("-A")
///     .args(chain.ssh_args("node-a"))
///     .arg("ssh")
///     .args(chain.remote_ssh_args("node-a", "node-b"))
///     .arg("true")
///     .status();
/// # Ok::<(), airlock_test_support::Error>(())
/// ```
#[derive(Debug)]
pub struct Chain {
    nodes: Vec<(String, Sshd)>,
    ssh_config: PathBuf,
    known_hosts: PathBuf,
    // Last, so the sshds stop before their config directory goes.
    home: Home,
}

impl Chain {
    /// Start one sshd per name, in a new [`Home`].
    pub fn start(names: &[&str]) -> Result<Chain> {
        Self::start_in(Home::new()?, names)
    }

    /// Start one sshd per name and write `~/.ssh/config` and `~/.ssh/known_hosts` of `home`
    /// (replacing them).
    pub fn start_in(home: Home, names: &[&str]) -> Result<Chain> {
        Self::start_in_with(home, names, &SshdBuilder::default())
    }

    /// [`Chain::start_in`] with every node's sshd started from `builder` (extra config lines,
    /// such as `SetEnv HOME=...` to give the "server" side its own home).
    pub fn start_in_with(home: Home, names: &[&str], builder: &SshdBuilder) -> Result<Chain> {
        let mut nodes = Vec::with_capacity(names.len());
        for &name in names {
            if name.is_empty()
                || !name
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c))
            {
                return Err(Error::Usage(format!(
                    "node name {name:?}: use letters, digits, '-', '_' and '.' only"
                )));
            }
            if nodes.iter().any(|(existing, _)| existing == name) {
                return Err(Error::Usage(format!("node name {name:?} given twice")));
            }
            nodes.push((name.to_owned(), builder.clone().start()?));
        }
        let known_hosts_text: String = nodes
            .iter()
            .map(|(name, sshd)| sshd.known_hosts_line(name))
            .collect();
        let known_hosts = home.write_known_hosts(&known_hosts_text)?;
        let mut config: String = nodes
            .iter()
            .map(|(name, sshd)| sshd.ssh_config_block(name, None))
            .collect();
        config.push_str(&client_defaults(&known_hosts));
        let ssh_config = home.write_ssh_config(&config)?;
        Ok(Chain {
            nodes,
            ssh_config,
            known_hosts,
            home,
        })
    }

    /// The home the config lives in; use its [`Home::command`] to run clients.
    pub fn home(&self) -> &Home {
        &self.home
    }

    /// The sshd playing `name`, if there is one.
    pub fn get(&self, name: &str) -> Option<&Sshd> {
        self.nodes
            .iter()
            .find(|(node, _)| node == name)
            .map(|(_, sshd)| sshd)
    }

    /// The sshd playing `name`; panics (naming the nodes) if there is none.
    pub fn node(&self, name: &str) -> &Sshd {
        self.get(name)
            .unwrap_or_else(|| panic!("no node {name:?} in this chain; it has {:?}", self.names()))
    }

    /// The node names, in the order given.
    pub fn names(&self) -> Vec<&str> {
        self.nodes.iter().map(|(name, _)| name.as_str()).collect()
    }

    /// The client config (`~/.ssh/config` of the home).
    pub fn ssh_config(&self) -> &Path {
        &self.ssh_config
    }

    /// The `known_hosts` listing every node under its name (`~/.ssh/known_hosts` of the
    /// home). Also the file to give `ssh-add -H`.
    pub fn known_hosts(&self) -> &Path {
        &self.known_hosts
    }

    /// Add a public key line to every node's `authorized_keys`.
    pub fn authorize(&self, public_key_line: &str) -> Result<()> {
        self.nodes
            .iter()
            .try_for_each(|(_, sshd)| sshd.authorize(public_key_line))
    }

    /// Arguments for `ssh` on the laptop to reach `to`: `["-F", <config>, to]`. Options such as
    /// `-A` go before them, the remote command after.
    pub fn ssh_args(&self, to: &str) -> Vec<String> {
        let _ = self.node(to);
        vec![
            "-F".to_owned(),
            self.ssh_config.to_string_lossy().into_owned(),
            to.to_owned(),
        ]
    }

    /// Arguments for an `ssh` running *on* `from` to reach `to`, already quoted for the remote
    /// shell (sshd runs the command through the user's shell), so they can be appended to the
    /// laptop's `ssh` command line after the word `ssh`: `ssh -A node-a ssh <these> true`
    /// (they end with `to`).
    ///
    /// They name the same config and `known_hosts` explicitly because on `from` ssh would
    /// otherwise read the real `~/.ssh` of the user (see the type's docs).
    pub fn remote_ssh_args(&self, from: &str, to: &str) -> Vec<String> {
        let _ = (self.node(from), self.node(to));
        let known_hosts = format!("UserKnownHostsFile={}", self.known_hosts.display());
        vec![
            "-F".to_owned(),
            shell_word(&self.ssh_config.to_string_lossy()),
            "-o".to_owned(),
            shell_word(&known_hosts),
            to.to_owned(),
        ]
    }

    /// `ssh -F <config>` in the home's environment (no agent), to which a test adds options,
    /// the node name and the command.
    pub fn ssh(&self) -> Command {
        let mut command = self.home.command("ssh");
        command.arg("-F").arg(&self.ssh_config);
        command
    }
}

/// `word` as one POSIX shell word: unchanged when it has nothing special, else single-quoted.
pub fn shell_word(word: &str) -> String {
    if !word.is_empty()
        && word
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_./=:@,+%".contains(c))
    {
        word.to_owned()
    } else {
        format!("'{}'", word.replace('\'', r"'\''"))
    }
}
