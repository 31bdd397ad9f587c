//! Dev-only harness for airlock's integration tests: real OpenSSH, isolated.
//!
//! Tests drive the real `sshd`, `ssh`, `ssh-add`, `ssh-keygen` and `ssh-agent` on 127.0.0.1,
//! and nothing of the developer's machine may leak in or be touched (STYLE.md, rule 9):
//!
//! - [`Home`]: a temp `HOME` with `XDG_*` dirs and `~/.ssh`; [`Home::command`] runs a program
//!   with only `PATH`, `LANG`, `HOME` and `XDG_*` in its environment (never the developer's
//!   `SSH_AUTH_SOCK`).
//! - [`Sshd`]: `sshd -D` on an ephemeral port with temp host keys, a temp `AuthorizedKeysFile`
//!   ([`Sshd::authorize`]) and a `DEBUG3` log ([`Sshd::log`]), killed with its sessions on drop.
//! - [`generate_key`] / [`ssh_keygen`]: user keys made by the real `ssh-keygen`.
//! - [`OpenSshAgent`]: the reference `ssh-agent -D -a SOCKET`.
//! - [`on_terminal`]: a command on a pseudo-terminal, its prompts answered.
//! - [`nss_wrapper_env`]: a passwd entry for this uid with the test's home, for `ssh`'s `~`.
//! - [`Chain`]: several sshds named `node-a`, `node-b`, ... and a client config naming them, for
//!   laptop → node-a → node-b tests with a forwarded agent.
//!
//! ```no_run
//! use airlock_test_support::{Chain, KeyType, OpenSshAgent, generate_key};
//! let chain = Chain::start(&["node-a", "node-b"])?;
//! let key = generate_key(&chain.home().ssh_dir(), "id", KeyType::Ed25519)?;
//! chain.authorize(&key.public_key_line()?)?;
//! let agent = OpenSshAgent::start(chain.home())?;
//! // ssh-add, then: ssh -A -F cfg node-a ssh -F cfg ... node-b true
//! # Ok::<(), airlock_test_support::Error>(())
//! ```
//!
//! # How the servers are set up, and why
//!
//! - Tests run as root, so sshd has `PermitRootLogin prohibit-password` and logs in whoever runs
//!   the tests ([`Sshd::user`]) with keys only. `UsePAM no` keeps the machine's login stack out;
//!   the price is that sshd itself refuses accounts whose password field starts with `!`
//!   (locked); Debian's root has `*`, which is fine.
//! - `StrictModes no`, because the temp files are not under the user's home; `PidFile none`;
//!   `PermitUserEnvironment no`, `PermitUserRC no`, no `AcceptEnv`, no `SetEnv`,
//!   `ChrootDirectory none`; agent, TCP and stream-local forwarding allowed; `internal-sftp`.
//! - sshd needs its privilege separation directory `/run/sshd`; it is created if missing.
//! - The port comes from binding 127.0.0.1:0 and releasing it; if someone takes it before sshd
//!   binds, sshd exits with "Address already in use" and another port is tried. Readiness is the
//!   log line `Server listening on 127.0.0.1 port N.`, awaited with a bound, never timed.
//! - sshd runs in its own process group. Each connection's sshd calls `setsid()`, so on drop
//!   the listener's descendants are found through `/proc` and signalled too (SIGTERM, a bounded
//!   wait, SIGKILL).
//!
//! # The client side
//!
//! `ssh` finds `~` through `getpwuid()`, not `$HOME`, so an isolated [`Home`] does not isolate
//! it: always pass `-F` with a config that ends in [`client_defaults`] (explicit
//! `UserKnownHostsFile`, no global known hosts, strict checking, batch mode, and a stand-in
//! `IdentityFile` so the real `~/.ssh/id_*` are never offered). The same holds on the "remote"
//! side of a [`Chain`]; see [`Chain::remote_ssh_args`].

#![deny(missing_docs)]
#![allow(
    clippy::missing_panics_doc,
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic
)]

mod agent;
mod airlock_agent;
mod chain;
mod error;
mod home;
mod keygen;
mod nss;
mod process;
mod sshd;
mod terminal;

pub use agent::OpenSshAgent;
pub use airlock_agent::AirlockAgent;
pub use chain::{Chain, shell_word};
pub use error::{Error, Result};
pub use home::Home;
pub use keygen::{KeyPair, KeyType, generate_key, generate_key_with_passphrase, ssh_keygen};
pub use nss::{nss_wrapper, nss_wrapper_env};
pub use sshd::{SSHD_PATH, Sshd, SshdBuilder, client_defaults};
pub use terminal::on_terminal;
