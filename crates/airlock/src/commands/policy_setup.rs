//! The `--policy` and `--audit` flags shared by `airlock agent` and `airlock guard`, turned into
//! the agent's [`Gate`].

use std::path::PathBuf;
use std::sync::Arc;

use airlock_agent::confirm::Askpass;
use airlock_agent::gate::Gate;
use airlock_policy::{AuditLog, PolicyHandle, PolicySources};
use anyhow::Context;

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
    /// Record no audit log at all.
    #[arg(long)]
    pub no_audit: bool,
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
        if self.no_audit {
            out.push("--no-audit".into());
        }
        out
    }

    /// The policy file in effect.
    pub fn policy_file(&self) -> PathBuf {
        self.policy
            .clone()
            .unwrap_or_else(|| paths::config_dir().join("policy.toml"))
    }

    /// A policy file named with `--policy` (or `AIRLOCK_POLICY`) must exist: a typo must not
    /// silently mean "no policy". Only the default location may be absent.
    pub fn check_named_file(&self) -> anyhow::Result<()> {
        if let Some(named) = &self.policy
            && !named.exists()
        {
            anyhow::bail!(
                "the policy file {} does not exist (named with --policy or AIRLOCK_POLICY); \
                 create it with `airlock policy init`, or leave the flag out to run without a policy",
                named.display()
            );
        }
        Ok(())
    }

    /// The gate: askpass from the environment, the policy (re-read when it changes) and the
    /// audit log.
    pub fn gate(&self) -> anyhow::Result<Gate> {
        let sources =
            PolicySources::for_user(&paths::home(), self.policy_file(), paths::keys_dir());
        let policy = PolicyHandle::load(sources).context("cannot load the policy")?;
        // Judged on what was loaded, not on an earlier look at the disk: a named file that is
        // gone by now must not become "no policy".
        if self.policy.is_some() && policy.current().is_unrestricted() {
            self.check_named_file()?;
            anyhow::bail!(
                "the policy file {} vanished while it was read",
                self.policy_file().display()
            );
        }
        // Logs, once, that forwarding is unrestricted when there is no policy file.
        let _ = policy.unrestricted_notice();
        let audit: Option<Arc<dyn airlock_agent::policy::AuditSink>> = if self.no_audit {
            None
        } else {
            let audit_path = self
                .audit
                .clone()
                .unwrap_or_else(|| paths::state_dir().join("audit.jsonl"));
            let log = AuditLog::open(&audit_path)
                .with_context(|| format!("cannot open the audit log {}", audit_path.display()))?;
            Some(Arc::new(log))
        };
        let mut askpass = Askpass::from_env();
        if let Some(secs) = std::env::var(paths::ENV_CONFIRM_TIMEOUT)
            .ok()
            .and_then(|v| v.parse::<u64>().ok())
            .filter(|s| *s > 0)
        {
            askpass.timeout = std::time::Duration::from_secs(secs);
        }
        Ok(Gate {
            askpass,
            policy: Some(Arc::new(policy)),
            audit,
            ..Gate::default()
        })
    }
}
