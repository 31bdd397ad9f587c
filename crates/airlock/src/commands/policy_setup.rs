//! The `--policy` and `--audit` flags shared by `airlock agent` and `airlock guard`, turned into
//! the agent's [`Gate`].

use std::path::PathBuf;

use airlock_agent::confirm::Askpass;
use airlock_agent::gate::Gate;

use crate::paths;

/// Policy and audit log flags.
#[derive(Debug, Clone, clap::Args)]
pub struct PolicyArgs {
    /// The forwarding policy (default: $XDG_CONFIG_HOME/airlock/policy.toml).
    #[arg(long, value_name = "FILE", env = paths::ENV_POLICY)]
    pub policy: Option<PathBuf>,
    /// The audit log (default: $XDG_STATE_HOME/airlock/audit.jsonl).
    #[arg(long, value_name = "FILE", env = paths::ENV_AUDIT)]
    pub audit: Option<PathBuf>,
}

impl PolicyArgs {
    /// The flags again, for a detached child.
    pub fn to_args(&self) -> Vec<std::ffi::OsString> {
        let mut out = Vec::new();
        if let Some(p) = &self.policy {
            out.push("--policy".into());
            out.push(p.clone().into());
        }
        if let Some(a) = &self.audit {
            out.push("--audit".into());
            out.push(a.clone().into());
        }
        out
    }

    /// The gate: askpass from the environment, policy and audit when configured.
    pub fn gate(&self) -> anyhow::Result<Gate> {
        Ok(Gate {
            askpass: Askpass::from_env(),
            ..Gate::default()
        })
    }
}
