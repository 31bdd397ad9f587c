//! Where things live (XDG), and the environment variables that override them: the one module
//! that names `AIRLOCK_*` variables.

use std::path::PathBuf;

/// `AIRLOCK_AGENT_SOCK`: the agent socket, overriding the default under `$XDG_RUNTIME_DIR`.
pub const ENV_AGENT_SOCK: &str = "AIRLOCK_AGENT_SOCK";
/// `AIRLOCK_KEYS_DIR`: the directory of project keys, default `~/.ssh/airlock`.
pub const ENV_KEYS_DIR: &str = "AIRLOCK_KEYS_DIR";
/// `AIRLOCK_POLICY`: the policy file.
pub const ENV_POLICY: &str = "AIRLOCK_POLICY";
/// `AIRLOCK_CONFIRM_TIMEOUT`: seconds before an unanswered confirmation is denied (default 30).
pub const ENV_CONFIRM_TIMEOUT: &str = "AIRLOCK_CONFIRM_TIMEOUT";
/// `AIRLOCK_AUDIT`: the audit log.
pub const ENV_AUDIT: &str = "AIRLOCK_AUDIT";
/// `AIRLOCK_SSH_CONFIG`: the OpenSSH client config for commands that reach a host (`ssh -F`).
pub const ENV_SSH_CONFIG: &str = "AIRLOCK_SSH_CONFIG";
/// `AIRLOCK_REMOTE_DIR`: where airlock lives on servers, default `~/.local/bin`.
pub const ENV_REMOTE_DIR: &str = "AIRLOCK_REMOTE_DIR";

/// An environment variable that names an absolute path; an empty or relative value is never
/// used as a path (it would be read against whatever the current directory is).
fn absolute_var(var: &str) -> Option<PathBuf> {
    std::env::var_os(var)
        .map(PathBuf::from)
        .filter(|p| p.is_absolute())
}

/// The user's home directory, by one rule for every command and the agent (as OpenSSH finds
/// it): `$HOME` when it is set and absolute, else the home in the password database for the
/// real uid. `None` when neither gives an absolute path.
pub fn home_dir() -> Option<PathBuf> {
    absolute_var("HOME").or_else(|| {
        nix::unistd::User::from_uid(nix::unistd::getuid())
            .ok()
            .flatten()
            .map(|u| u.dir)
            .filter(|d| d.is_absolute())
    })
}

/// [`home_dir`], for the paths under it; with no home at all, a directory that cannot exist
/// (`/nonexistent`, as the password database uses), so nothing is ever created at the root.
pub fn home() -> PathBuf {
    home_dir().unwrap_or_else(|| PathBuf::from("/nonexistent"))
}

fn xdg(var: &str, fallback: &str) -> PathBuf {
    absolute_var(var).unwrap_or_else(|| home().join(fallback))
}

/// `$XDG_RUNTIME_DIR`, when it is set and absolute.
pub fn runtime_dir() -> Option<PathBuf> {
    absolute_var("XDG_RUNTIME_DIR")
}

/// `$XDG_CONFIG_HOME/airlock`.
pub fn config_dir() -> PathBuf {
    xdg("XDG_CONFIG_HOME", ".config").join("airlock")
}

/// `$XDG_STATE_HOME/airlock`.
pub fn state_dir() -> PathBuf {
    xdg("XDG_STATE_HOME", ".local/state").join("airlock")
}

/// `$XDG_DATA_HOME/airlock`.
pub fn data_dir() -> PathBuf {
    xdg("XDG_DATA_HOME", ".local/share").join("airlock")
}

/// `$XDG_CACHE_HOME/airlock`.
pub fn cache_dir() -> PathBuf {
    xdg("XDG_CACHE_HOME", ".cache").join("airlock")
}

/// `~/.ssh/airlock`: keys, and the agent socket when there is no runtime directory.
pub fn keys_dir() -> PathBuf {
    absolute_var(ENV_KEYS_DIR).unwrap_or_else(|| home().join(".ssh").join("airlock"))
}

/// The default agent socket: `$AIRLOCK_AGENT_SOCK`, else `$XDG_RUNTIME_DIR/airlock/agent.sock`,
/// else `~/.ssh/airlock/agent.sock`.
pub fn agent_socket() -> PathBuf {
    if let Some(p) = std::env::var_os(ENV_AGENT_SOCK) {
        return PathBuf::from(p);
    }
    match runtime_dir() {
        Some(v) => v.join("airlock").join("agent.sock"),
        None => keys_dir().join("agent.sock"),
    }
}

/// The agent a command talks to: `$SSH_AUTH_SOCK` (what `eval "$(airlock agent)"` set in
/// this shell, as `ssh` and `ssh-add` find it), else [`agent_socket`].
pub fn user_agent_socket() -> PathBuf {
    match std::env::var_os("SSH_AUTH_SOCK").filter(|p| !p.is_empty()) {
        Some(p) => PathBuf::from(p),
        None => agent_socket(),
    }
}

/// The policy file: `$AIRLOCK_POLICY`, else `$XDG_CONFIG_HOME/airlock/policy.toml`.
pub fn policy_file() -> PathBuf {
    match std::env::var_os(ENV_POLICY) {
        Some(p) if !p.is_empty() => PathBuf::from(p),
        _ => config_dir().join("policy.toml"),
    }
}

/// The audit log: `$AIRLOCK_AUDIT`, else `$XDG_STATE_HOME/airlock/audit.jsonl`.
pub fn audit_file() -> PathBuf {
    match std::env::var_os(ENV_AUDIT) {
        Some(p) if !p.is_empty() => PathBuf::from(p),
        _ => state_dir().join("audit.jsonl"),
    }
}
