//! Conda environments on the rattler crates: create by name or from `environment.yml`, lock
//! to `pixi.lock`, install from a lock without solving, export, list, remove, run and activate.
//!
//! The library does the work and reports typed [`EnvError`]s; the `airlock env` command is
//! glue that gathers [`config::Settings`] and calls [`ops`]. Environments are ordinary conda
//! prefixes (registered in `~/.conda/environments.txt`, with `conda-meta/history`), so conda
//! sees them too.
//!
//! ```no_run
//! # async fn demo(settings: airlock_env::config::Settings) -> airlock_env::Result<()> {
//! use airlock_env::{envs::Target, ops};
//! let request = ops::CreateRequest {
//!     target: Some(Target::Name("nlp".into())),
//!     specs: vec!["python=3.11".into()],
//!     ..Default::default()
//! };
//! let prefix = ops::create(&settings, &request).await?;
//! # Ok(()) }
//! ```

pub mod activate;
pub mod config;
pub mod credentials;
pub mod envs;
pub mod error;
pub mod export;
pub mod install;
mod link;
pub mod lock;
pub mod ops;
pub mod package_paths;
pub mod pip;
pub mod pypi;
pub mod solve;
pub mod testchannel;
pub mod verify;
pub mod yaml;

pub use error::{EnvError, Result};
