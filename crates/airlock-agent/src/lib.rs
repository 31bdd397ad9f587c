//! The airlock SSH agent: a drop-in for OpenSSH's `ssh-agent` whose keys never leave this
//! machine.
//!
//! - [`Agent`] holds the keys ([`store`]), checks session binds and destination constraints
//!   ([`destination`], the rules of OpenSSH's `ssh-agent.c`), asks for confirmation
//!   ([`confirm`]) and signs with aws-lc ([`signer`]).
//! - [`server::serve`] runs it on a Unix socket: peer uid check, 256 KiB frame cap, one task
//!   per connection, so a slow confirmation never blocks other clients.
//! - [`client::Client`] is a small blocking client for the CLI and tests.

#![deny(missing_docs)]

pub mod agent;
pub mod approval;
pub mod client;
pub mod confirm;
pub mod destination;
pub mod gate;
pub mod guard;
mod legacy_rsa;
pub mod policy;
pub mod server;
pub mod signer;
pub mod store;

pub use agent::{Agent, AgentOptions, Connection, Peer};
