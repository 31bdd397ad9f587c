//! Asking the user to confirm a key use through `SSH_ASKPASS`, as OpenSSH's agent does
//! (`ask_permission` in `ssh-agent.c`, `read_passphrase` in `readpass.c`).

use std::path::PathBuf;
use std::process::Stdio;
use std::time::Duration;

use tokio::io::AsyncReadExt;

/// How confirmation prompts are shown, captured from the environment at start.
#[derive(Debug, Clone, Default)]
pub struct Askpass {
    /// The program (`$SSH_ASKPASS`); `None` means confirmation always fails.
    pub program: Option<PathBuf>,
    /// `$SSH_ASKPASS_REQUIRE`: `never`, `prefer` or `force`.
    pub require: Option<String>,
    /// Whether `$DISPLAY` or `$WAYLAND_DISPLAY` is set.
    pub display: bool,
    /// An unanswered prompt is denied after this long.
    pub timeout: Duration,
}

impl Askpass {
    /// Read `SSH_ASKPASS`, `SSH_ASKPASS_REQUIRE`, `DISPLAY` and `WAYLAND_DISPLAY`.
    pub fn from_env() -> Self {
        let nonempty = |v: &str| std::env::var_os(v).filter(|s| !s.is_empty());
        Self {
            program: nonempty("SSH_ASKPASS").map(PathBuf::from),
            require: std::env::var("SSH_ASKPASS_REQUIRE").ok(),
            display: nonempty("DISPLAY").is_some() || nonempty("WAYLAND_DISPLAY").is_some(),
            timeout: Duration::from_secs(30),
        }
    }

    /// Whether a prompt can be shown at all.
    pub fn usable(&self) -> bool {
        match self.require.as_deref() {
            Some("never") => false,
            Some("force") => self.program.is_some(),
            _ => self.program.is_some() && self.display,
        }
    }

    /// Show `prompt`; allowed when the program exits 0 and answers nothing or "yes". The caller
    /// checks [`Askpass::usable`] and bounds the wait by [`Askpass::timeout`] (the gate races
    /// this against `airlock approve`); dropping the future kills the program.
    pub async fn confirm(&self, prompt: &str) -> bool {
        let Some(program) = &self.program else {
            return false;
        };
        let child = tokio::process::Command::new(program)
            .arg(prompt)
            .env("SSH_ASKPASS_PROMPT", "confirm")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .kill_on_drop(true)
            .spawn();
        let mut child = match child {
            Ok(c) => c,
            Err(e) => {
                tracing::warn!("cannot run askpass {}: {e}", program.display());
                return false;
            }
        };
        let mut out = String::new();
        if let Some(mut stdout) = child.stdout.take() {
            let _ = stdout.read_to_string(&mut out).await;
        }
        match child.wait().await {
            Ok(status) if status.success() => {
                let answer = out.trim_end_matches(['\n', '\r']);
                answer.is_empty() || answer.eq_ignore_ascii_case("yes")
            }
            _ => false,
        }
    }
}
