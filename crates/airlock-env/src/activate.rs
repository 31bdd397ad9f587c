//! Activation: `shell-hook` scripts (bash, zsh, fish) and `run`, for conda environments and
//! plain venvs alike. Activation runs the environment's `etc/conda/activate.d` scripts and
//! exports `variables:` from `conda-meta/state`, as `conda activate` does.

use std::collections::HashMap;
use std::ffi::OsString;
use std::path::Path;
use std::str::FromStr as _;

use rattler_shell::activation::{ActivationVariables, Activator, PathModificationBehavior};
use rattler_shell::shell::{Bash, ShellEnum};

use crate::error::{EnvError, Result};

/// The shells `shell-hook` supports.
pub const SHELLS: &[&str] = &["bash", "zsh", "fish", "xonsh", "powershell", "nushell"];

fn activation_error(prefix: &Path, e: impl std::fmt::Display) -> EnvError {
    EnvError::Activation {
        prefix: prefix.to_path_buf(),
        message: e.to_string(),
    }
}

fn variables(prefix: &Path) -> Result<ActivationVariables> {
    let mut vars = ActivationVariables::from_env().map_err(|e| activation_error(prefix, e))?;
    vars.path_modification_behavior = PathModificationBehavior::Prepend;
    Ok(vars)
}

/// The script that activates `prefix` in `shell`, for `eval "$(airlock env shell-hook ...)"`.
pub fn shell_hook(prefix: &Path, shell: &str) -> Result<String> {
    let shell_type = ShellEnum::from_str(shell).map_err(|_| {
        activation_error(
            prefix,
            format!(
                "unsupported shell `{shell}` (supported: {})",
                SHELLS.join(", ")
            ),
        )
    })?;
    let activator = Activator::from_path(prefix, shell_type, crate::solve::current_platform())
        .map_err(|e| activation_error(prefix, e))?;
    let result = activator
        .activation(variables(prefix)?)
        .map_err(|e| activation_error(prefix, e))?;
    result
        .script
        .contents()
        .map_err(|e| activation_error(prefix, e))
}

/// The environment variables of `prefix` activated (the current environment plus activation).
pub fn activated_environment(prefix: &Path) -> Result<HashMap<String, String>> {
    let activator = Activator::from_path(prefix, Bash::default(), crate::solve::current_platform())
        .map_err(|e| activation_error(prefix, e))?;
    activator
        .run_activation(variables(prefix)?, None)
        .map_err(|e| activation_error(prefix, e))
}

/// Runs `program args` inside the activated environment and returns its exit code (128 + the
/// signal number when killed by a signal, as shells report it).
pub fn run(prefix: &Path, program: &OsString, args: &[OsString]) -> Result<i32> {
    let env = activated_environment(prefix)?;
    let status = std::process::Command::new(program)
        .args(args)
        .envs(env)
        .status()
        .map_err(|e| {
            activation_error(
                prefix,
                format!("could not run `{}`: {e}", program.to_string_lossy()),
            )
        })?;
    if let Some(code) = status.code() {
        return Ok(code);
    }
    #[cfg(unix)]
    {
        use std::os::unix::process::ExitStatusExt as _;
        if let Some(signal) = status.signal() {
            return Ok(128 + signal);
        }
    }
    Ok(1)
}
