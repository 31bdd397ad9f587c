//! `airlock remote install|status HOST`: put this airlock binary on a server, through the
//! system `ssh`, and check what is there.
//!
//! Also the pieces every command that reaches a host shares: the `HOST [--ssh-config FILE]`
//! flags, building an `ssh` command line, and quoting for the remote shell.

use std::ffi::OsString;
use std::io::Write as _;
use std::path::PathBuf;
use std::process::{Command, ExitCode, Stdio};

use anyhow::{Context as _, bail};
use sha2::{Digest as _, Sha256};

use crate::paths;

/// Where `airlock remote install` puts the binary, and where the other commands look for it.
pub const DEFAULT_REMOTE_DIR: &str = "~/.local/bin";

/// A host reached through the system `ssh`, with the user's config and aliases.
#[derive(Debug, Clone, clap::Args)]
pub struct HostArgs {
    /// The host, as `ssh` names it (an alias from the ssh config works).
    #[arg(value_name = "HOST")]
    pub host: String,
    /// OpenSSH client config to use (`ssh -F FILE`).
    #[arg(long, value_name = "FILE", env = paths::ENV_SSH_CONFIG)]
    pub ssh_config: Option<PathBuf>,
    /// The directory on HOST that holds airlock.
    #[arg(long, value_name = "DIR", env = paths::ENV_REMOTE_DIR, default_value = DEFAULT_REMOTE_DIR)]
    pub remote_dir: String,
}

impl HostArgs {
    /// `ssh [-F cfg] OPTIONS -- HOST`; the caller appends the remote command.
    pub fn ssh(&self, options: &[OsString]) -> Command {
        let mut cmd = Command::new("ssh");
        if let Some(cfg) = &self.ssh_config {
            cmd.arg("-F").arg(cfg);
        }
        cmd.args(options).arg("--").arg(&self.host);
        cmd
    }

    /// The remote airlock binary, as a shell word.
    pub fn remote_airlock(&self) -> String {
        remote_path_word(&format!(
            "{}/airlock",
            self.remote_dir.trim_end_matches('/')
        ))
    }

    /// Run a remote shell script with stdin closed and stderr passed through; its output.
    pub fn run_script(&self, script: &str) -> anyhow::Result<std::process::Output> {
        let out = self
            .ssh(&[])
            .arg(script)
            .stdin(Stdio::null())
            .stderr(Stdio::inherit())
            .output()
            .context("cannot run ssh (is OpenSSH installed?)")?;
        Ok(out)
    }
}

/// Quote a word for a POSIX shell.
pub fn shell_quote(word: &str) -> String {
    if !word.is_empty()
        && word
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-_./=:@%+,".contains(&b))
    {
        return word.to_owned();
    }
    format!("'{}'", word.replace('\'', r"'\''"))
}

/// A remote path as a shell word, keeping a leading `~/` meaning the remote home.
pub fn remote_path_word(path: &str) -> String {
    if path == "~" {
        return "\"$HOME\"".to_owned();
    }
    match path.strip_prefix("~/") {
        Some(rest) => format!("\"$HOME\"/{}", shell_quote(rest)),
        None => shell_quote(path),
    }
}

/// Put airlock on a server, or show what is there.
#[derive(Debug, clap::Args)]
pub struct Args {
    #[command(subcommand)]
    command: RemoteCommand,
}

#[derive(Debug, clap::Subcommand)]
enum RemoteCommand {
    /// Copy this airlock binary to HOST (same OS and architecture), verify its SHA-256.
    Install(HostArgs),
    /// Show the airlock version on HOST, whether it matches this one, its environments.
    Status(StatusArgs),
}

/// The fields of `remote status --json`, said in its help.
const STATUS_JSON_HELP: &str = "With --json, one object on stdout (exit status 1 when airlock \
is not installed, as without it):
  host          HOST as given
  path          where airlock is looked for on HOST
  installed     whether it is there
  version       its `--version` line, null when not installed
  platform      HOST's `uname -sm`
  sha256        of the binary on HOST, null when not installed
  local_sha256  of this airlock
  up_to_date    whether the two are the same
  environments  what `airlock env list --json` prints on HOST, null when it cannot say
  jupyter       what `airlock jupyter HOST --list --json` prints, null when it cannot say";

#[derive(Debug, clap::Args)]
#[command(after_help = STATUS_JSON_HELP)]
struct StatusArgs {
    #[command(flatten)]
    host: HostArgs,
    /// Print one JSON object (fields below) instead of the text.
    #[arg(long)]
    json: bool,
}

/// Run `airlock remote`.
pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    match args.command {
        RemoteCommand::Install(host) => install(&host),
        RemoteCommand::Status(args) => status(&args.host, args.json),
    }
}

fn local_binary() -> anyhow::Result<(PathBuf, Vec<u8>, String)> {
    let exe = std::env::current_exe().context("cannot find this airlock binary")?;
    let bytes = fs_err::read(&exe).with_context(|| format!("cannot read {}", exe.display()))?;
    let sum = hex(&Sha256::digest(&bytes));
    Ok((exe, bytes, sum))
}

/// Lower-case hex.
pub fn hex(bytes: &[u8]) -> String {
    use std::fmt::Write as _;
    bytes.iter().fold(String::new(), |mut s, b| {
        let _ = write!(s, "{b:02x}");
        s
    })
}

/// `uname -sm` as it would read on a machine of this build's OS and architecture.
fn local_uname() -> (String, Vec<&'static str>) {
    let os = match std::env::consts::OS {
        "linux" => "Linux".to_owned(),
        "macos" => "Darwin".to_owned(),
        "freebsd" => "FreeBSD".to_owned(),
        other => other.to_owned(),
    };
    let arch = match std::env::consts::ARCH {
        "x86_64" => vec!["x86_64", "amd64"],
        "aarch64" => vec!["aarch64", "arm64"],
        other => vec![other],
    };
    (os, arch)
}

const SHA256_CMD: &str = "{ sha256sum 2>/dev/null || shasum -a 256; }";

/// What `remote status` and the start of `remote install` learn in one round trip.
struct Remote {
    uname: String,
    sum: Option<String>,
    version: Option<String>,
}

fn probe(host: &HostArgs) -> anyhow::Result<Remote> {
    let bin = host.remote_airlock();
    let script = format!(
        "echo \"uname=$(uname -sm)\"; if [ -x {bin} ]; then \
         echo \"sum=$({SHA256_CMD} < {bin} | cut -d' ' -f1)\"; \
         echo \"version=$({bin} --version 2>&1 | head -n1)\"; fi"
    );
    let out = host.run_script(&script)?;
    if !out.status.success() {
        bail!(
            "cannot reach {} with ssh (exit status {})",
            host.host,
            out.status.code().unwrap_or(-1)
        );
    }
    let text = String::from_utf8_lossy(&out.stdout);
    let mut remote = Remote {
        uname: String::new(),
        sum: None,
        version: None,
    };
    for line in text.lines() {
        if let Some(v) = line.strip_prefix("uname=") {
            v.trim().clone_into(&mut remote.uname);
        } else if let Some(v) = line.strip_prefix("sum=") {
            remote.sum = Some(v.trim().to_owned()).filter(|s| !s.is_empty());
        } else if let Some(v) = line.strip_prefix("version=") {
            remote.version = Some(v.trim().to_owned());
        }
    }
    Ok(remote)
}

fn check_platform(host: &str, uname: &str) -> anyhow::Result<()> {
    let (os, arches) = local_uname();
    let mut parts = uname.split_whitespace();
    let (r_os, r_arch) = (parts.next().unwrap_or(""), parts.next().unwrap_or(""));
    if r_os != os || !arches.contains(&r_arch) {
        bail!(
            "{host} runs {uname:?} but this airlock is built for {os} {}: install an airlock \
             built for that platform on {host} instead",
            arches.first().copied().unwrap_or("")
        );
    }
    Ok(())
}

fn install(host: &HostArgs) -> anyhow::Result<ExitCode> {
    let (exe, bytes, sum) = local_binary()?;
    let remote = probe(host)?;
    check_platform(&host.host, &remote.uname)?;
    let shown = format!("{}/airlock", host.remote_dir.trim_end_matches('/'));
    if remote.sum.as_deref() == Some(sum.as_str()) {
        println!(
            "airlock on {} is already up to date ({shown}, sha256 {sum})",
            host.host
        );
        return Ok(ExitCode::SUCCESS);
    }
    let dir = remote_path_word(host.remote_dir.trim_end_matches('/'));
    let bin = host.remote_airlock();
    // The copy goes to a temp file next to the target, is checked there and only then renamed,
    // so a broken transfer never replaces a working airlock.
    let script = format!(
        "set -e; umask 022; mkdir -p {dir}; tmp={dir}/.airlock.tmp.$$; \
         trap 'rm -f \"$tmp\"' EXIT; cat > \"$tmp\"; chmod 755 \"$tmp\"; \
         got=$({SHA256_CMD} < \"$tmp\" | cut -d' ' -f1); echo \"sum=$got\"; \
         if [ \"$got\" != {sum} ]; then exit 3; fi; mv -f \"$tmp\" {bin}; trap - EXIT"
    );
    let mut child = host
        .ssh(&[])
        .arg(script)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .context("cannot run ssh (is OpenSSH installed?)")?;
    if let Some(mut stdin) = child.stdin.take() {
        // A write error shows up as a checksum mismatch or an ssh failure below.
        let _ = stdin.write_all(&bytes);
    }
    let out = child.wait_with_output().context("ssh failed")?;
    let text = String::from_utf8_lossy(&out.stdout);
    let got = text
        .lines()
        .find_map(|l| l.strip_prefix("sum="))
        .map_or("", str::trim);
    if got != sum {
        bail!(
            "checksum mismatch after copying {} to {}:{shown}: expected sha256 {sum}, the copy \
             has {}; nothing was installed, run `airlock remote install {}` again",
            exe.display(),
            host.host,
            if got.is_empty() { "none" } else { got },
            host.host
        );
    }
    if !out.status.success() {
        bail!(
            "installing airlock on {} failed (ssh exit status {})",
            host.host,
            out.status.code().unwrap_or(-1)
        );
    }
    // Read it back as it now is on disk.
    let after = probe(host)?;
    if after.sum.as_deref() != Some(sum.as_str()) {
        bail!(
            "checksum mismatch: {}:{shown} has sha256 {} after the copy, expected {sum}",
            host.host,
            after.sum.as_deref().unwrap_or("none")
        );
    }
    println!(
        "installed airlock on {} at {shown} ({}; sha256 {sum})",
        host.host,
        after.version.as_deref().unwrap_or("unknown version")
    );
    Ok(ExitCode::SUCCESS)
}

/// `remote status --json` ([`STATUS_JSON_HELP`] names the fields).
#[derive(Debug, serde::Serialize)]
struct StatusReport {
    host: String,
    path: String,
    installed: bool,
    version: Option<String>,
    platform: String,
    sha256: Option<String>,
    local_sha256: String,
    up_to_date: bool,
    environments: Option<serde_json::Value>,
    jupyter: Option<serde_json::Value>,
}

/// Separates the two JSON documents of the status script's output.
const JSON_SEPARATOR: &str = "--- airlock status separator ---";

fn status(host: &HostArgs, json: bool) -> anyhow::Result<ExitCode> {
    let (_, _, sum) = local_binary()?;
    let remote = probe(host)?;
    let shown = format!("{}/airlock", host.remote_dir.trim_end_matches('/'));
    let bin = host.remote_airlock();
    if json {
        let (environments, jupyter) = if remote.sum.is_some() {
            // As the remote airlock sees them; best effort (null when it cannot say).
            let out = host.run_script(&format!(
                "{bin} env list --json 2>/dev/null; echo; echo '{JSON_SEPARATOR}'; \
                 {bin} jupyter serve --list --json 2>/dev/null; true"
            ))?;
            let text = String::from_utf8_lossy(&out.stdout);
            let (envs, servers) = text.split_once(JSON_SEPARATOR).unwrap_or((&text, ""));
            let parse = |t: &str| serde_json::from_str::<serde_json::Value>(t.trim()).ok();
            (parse(envs), parse(servers))
        } else {
            (None, None)
        };
        let report = StatusReport {
            host: host.host.clone(),
            path: shown,
            installed: remote.sum.is_some(),
            up_to_date: remote.sum.as_deref() == Some(sum.as_str()),
            version: remote.version,
            platform: remote.uname,
            sha256: remote.sum,
            local_sha256: sum,
            environments,
            jupyter,
        };
        println!("{}", serde_json::to_string_pretty(&report)?);
        return Ok(if report.installed {
            ExitCode::SUCCESS
        } else {
            ExitCode::from(1)
        });
    }
    let Some(remote_sum) = remote.sum else {
        eprintln!(
            "airlock is not installed on {h} ({shown}): run `airlock remote install {h}`",
            h = host.host
        );
        return Ok(ExitCode::from(1));
    };
    println!(
        "{}: {} at {shown} ({})",
        host.host,
        remote.version.as_deref().unwrap_or("unknown version"),
        remote.uname
    );
    if remote_sum == sum {
        println!("checksum: matches this airlock (sha256 {sum})");
    } else {
        println!(
            "checksum: mismatch: {remote_sum} on {h}, {sum} here; run `airlock remote install {h}`",
            h = host.host
        );
    }
    // Environments and Jupyter servers, as the remote airlock sees them; best effort.
    let out = host.run_script(&format!(
        "{bin} env list 2>/dev/null; {bin} jupyter serve --list 2>/dev/null; true"
    ))?;
    let extra = String::from_utf8_lossy(&out.stdout);
    if !extra.trim().is_empty() {
        print!("{extra}");
    }
    Ok(ExitCode::SUCCESS)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quoting() {
        assert_eq!(shell_quote("abc/d.e"), "abc/d.e");
        assert_eq!(shell_quote("a b'c"), r"'a b'\''c'");
        assert_eq!(shell_quote(""), "''");
        assert_eq!(remote_path_word("~/.local/bin"), "\"$HOME\"/.local/bin");
        assert_eq!(remote_path_word("/tmp/x y"), "'/tmp/x y'");
    }
}
