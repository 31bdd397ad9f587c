//! `airlock remote install|status HOST`: put this airlock binary on a server, through the
//! system `ssh`, and check what is there.
//!
//! Also the pieces every command that reaches a host shares: the `HOST [--ssh-config FILE]`
//! flags, building an `ssh` command line, and quoting for the remote shell.

use std::ffi::OsString;
use std::io::Write as _;
use std::path::{Path, PathBuf};
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
    /// Copy airlock to HOST and verify its SHA-256: this binary when HOST has the same OS and
    /// architecture, else a build for HOST (--binary FILE, or the builds directory).
    Install(InstallArgs),
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
  local_sha256  of the airlock `remote install` would copy there (this one, or the build for
                HOST's platform), null when there is none
  up_to_date    whether the two are the same
  environments  what `airlock env list --json` prints on HOST, null when it cannot say
  jupyter       what `airlock jupyter HOST --list --json` prints, null when it cannot say";

#[derive(Debug, clap::Args)]
#[command(after_help = INSTALL_HELP)]
struct InstallArgs {
    #[command(flatten)]
    host: HostArgs,
    /// The airlock build to install, for HOST's OS and architecture (e.g. one built with
    /// `cargo build --release --target aarch64-unknown-linux-musl`).
    #[arg(long, value_name = "FILE")]
    binary: Option<PathBuf>,
}

/// How `install` picks the binary, said in its help.
const INSTALL_HELP: &str = "Which binary: --binary FILE when given (it must be a program for \
HOST's OS and architecture, read from its header); else this airlock when HOST has the same OS \
and architecture (from `uname -sm` there); else a build for HOST's target triple in \
$XDG_DATA_HOME/airlock/builds/TRIPLE/airlock, e.g. builds/x86_64-unknown-linux-musl/airlock \
or builds/aarch64-apple-darwin/airlock.

Examples:
  airlock remote install gpu
  airlock remote install gpu --binary target/x86_64-unknown-linux-musl/release/airlock";

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
        RemoteCommand::Install(args) => install(&args.host, args.binary.as_deref()),
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

/// An OS and architecture, as `uname -sm` names them (`Linux x86_64`, `Darwin arm64`), with
/// the architecture's other spellings folded (`amd64`, `arm64`).
#[derive(Debug, Clone, PartialEq, Eq)]
struct Platform {
    os: String,
    arch: String,
}

impl Platform {
    /// The platform this airlock is built for.
    fn local() -> Self {
        let os = match std::env::consts::OS {
            "linux" => "Linux",
            "macos" => "Darwin",
            "freebsd" => "FreeBSD",
            other => other,
        };
        Self::new(os, std::env::consts::ARCH)
    }

    fn new(os: &str, arch: &str) -> Self {
        let arch = match arch {
            "amd64" | "x86-64" => "x86_64",
            "arm64" => "aarch64",
            other => other,
        };
        Self {
            os: os.to_owned(),
            arch: arch.to_owned(),
        }
    }

    /// From `uname -sm` output.
    fn from_uname(uname: &str) -> Self {
        let mut parts = uname.split_whitespace();
        Self::new(parts.next().unwrap_or(""), parts.next().unwrap_or(""))
    }

    /// Rust target triples that run here, the one to prefer first (a static musl build runs
    /// on any Linux, whatever its glibc).
    fn triples(&self) -> Vec<String> {
        let arch = &self.arch;
        match self.os.as_str() {
            "Linux" => vec![
                format!("{arch}-unknown-linux-musl"),
                format!("{arch}-unknown-linux-gnu"),
            ],
            "Darwin" => vec![format!("{arch}-apple-darwin")],
            "FreeBSD" => vec![format!("{arch}-unknown-freebsd")],
            _ => Vec::new(),
        }
    }

    /// The platform a program file is for, from its ELF or Mach-O header; `None` when it is
    /// neither (or an architecture airlock does not name).
    fn of_program(bytes: &[u8]) -> Option<Self> {
        let u16_le = |at: usize| Some(u16::from_le_bytes(bytes.get(at..at + 2)?.try_into().ok()?));
        let u32_le = |at: usize| Some(u32::from_le_bytes(bytes.get(at..at + 4)?.try_into().ok()?));
        let u32_be = |at: usize| Some(u32::from_be_bytes(bytes.get(at..at + 4)?.try_into().ok()?));
        let mach_arch = |cpu: u32| match cpu {
            0x0100_0007 => Some("x86_64"),
            0x0100_000c => Some("aarch64"),
            _ => None,
        };
        if bytes.starts_with(b"\x7fELF") {
            // e_ident[EI_OSABI] 9 is FreeBSD (its binaries are branded); e_machine at 18.
            let os = if bytes.get(7) == Some(&9) {
                "FreeBSD"
            } else {
                "Linux"
            };
            let arch = match u16_le(18)? {
                62 => "x86_64",
                183 => "aarch64",
                _ => return None,
            };
            return Some(Self::new(os, arch));
        }
        match u32_le(0)? {
            // MH_MAGIC_64, little-endian: cputype follows.
            0xfeed_facf => Some(Self::new("Darwin", mach_arch(u32_le(4)?)?)),
            // FAT_MAGIC (big-endian): a universal binary; any of its architectures.
            0xbeba_feca => {
                let count = usize::try_from(u32_be(4)?).ok()?.min(16);
                let local = Self::local();
                let arches: Vec<&str> = (0..count)
                    .filter_map(|i| mach_arch(u32_be(8 + 20 * i)?))
                    .collect();
                let arch = arches
                    .iter()
                    .find(|a| **a == local.arch)
                    .or(arches.first())?;
                Some(Self::new("Darwin", arch))
            }
            _ => None,
        }
    }

    /// Whether a program for `self` runs on `host` (a universal Mach-O runs on both).
    fn runs_on(&self, host: &Self, universal: bool) -> bool {
        self == host || (universal && self.os == "Darwin" && host.os == "Darwin")
    }
}

impl std::fmt::Display for Platform {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} {}", self.os, self.arch)
    }
}

/// Where `install` looks for builds for other platforms: `$XDG_DATA_HOME/airlock/builds`.
fn builds_dir() -> PathBuf {
    paths::data_dir().join("builds")
}

/// The binary to install on a host of `platform`, and what to call it in messages.
struct Build {
    path: PathBuf,
    bytes: Vec<u8>,
    sum: String,
    /// Said on stderr when it is not this airlock.
    note: Option<String>,
}

fn read_build(path: &Path) -> anyhow::Result<(Vec<u8>, String)> {
    let bytes = std::fs::read(path)
        .map_err(|e| anyhow::anyhow!("cannot read {}: {}", path.display(), super::io_reason(&e)))?;
    let sum = hex(&Sha256::digest(&bytes));
    Ok((bytes, sum))
}

/// Pick the binary for `host` running `platform`: `--binary`, this airlock, or a build in
/// [`builds_dir`]; an error that says what to do when there is none.
fn choose_build(host: &str, platform: &Platform, binary: Option<&Path>) -> anyhow::Result<Build> {
    let triples = platform.triples();
    if let Some(path) = binary {
        let (bytes, sum) = read_build(path)?;
        let universal = bytes.starts_with(&[0xca, 0xfe, 0xba, 0xbe]);
        match Platform::of_program(&bytes) {
            Some(p) if p.runs_on(platform, universal) => {}
            Some(p) => bail!(
                "{} is a program for {p}, but {host} runs {platform}: give a build for {}",
                path.display(),
                triples.first().map_or("that platform", String::as_str)
            ),
            None => bail!(
                "{} is not a program airlock recognises (an ELF or Mach-O executable for \
                 x86_64 or aarch64); give the airlock binary built for {host} ({platform})",
                path.display()
            ),
        }
        return Ok(Build {
            path: path.to_owned(),
            bytes,
            sum,
            note: Some(format!("installing {} ({platform})", path.display())),
        });
    }
    if Platform::local() == *platform {
        let (path, bytes, sum) = local_binary()?;
        return Ok(Build {
            path,
            bytes,
            sum,
            note: None,
        });
    }
    let dir = builds_dir();
    for triple in &triples {
        let path = dir.join(triple).join("airlock");
        if path.is_file() {
            let (bytes, sum) = read_build(&path)?;
            return Ok(Build {
                note: Some(format!(
                    "{host} runs {platform}: installing the build for {triple} from {}",
                    path.display()
                )),
                path,
                bytes,
                sum,
            });
        }
    }
    let Some(first) = triples.first() else {
        bail!(
            "{host} runs {platform}, which airlock has no build for; this airlock is for {}",
            Platform::local()
        );
    };
    let places = triples
        .iter()
        .map(|t| dir.join(t).join("airlock").display().to_string())
        .collect::<Vec<_>>()
        .join(" or ");
    bail!(
        "{host} runs {platform} but this airlock is built for {local}. Build airlock for \
         {host} (`cargo build --release --target {first}` in the airlock source, after \
         `rustup target add {first}`) and run `airlock remote install {host} --binary \
         target/{first}/release/airlock`, or put that file at {places}",
        local = Platform::local()
    )
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

fn install(host: &HostArgs, binary: Option<&Path>) -> anyhow::Result<ExitCode> {
    let remote = probe(host)?;
    let platform = Platform::from_uname(&remote.uname);
    let Build {
        path: exe,
        bytes,
        sum,
        note,
    } = choose_build(&host.host, &platform, binary)?;
    if let Some(note) = note {
        eprintln!("airlock: {note}");
    }
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
    if !after
        .version
        .as_deref()
        .is_some_and(|v| v.starts_with("airlock "))
    {
        eprintln!(
            "airlock: warning: the installed binary does not run on {} (`{shown} --version` \
             said {:?}); install a build for {platform}",
            host.host,
            after.version.as_deref().unwrap_or("")
        );
    }
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
    local_sha256: Option<String>,
    up_to_date: bool,
    environments: Option<serde_json::Value>,
    jupyter: Option<serde_json::Value>,
}

/// Separates the two JSON documents of the status script's output.
const JSON_SEPARATOR: &str = "--- airlock status separator ---";

fn status(host: &HostArgs, json: bool) -> anyhow::Result<ExitCode> {
    let remote = probe(host)?;
    let platform = Platform::from_uname(&remote.uname);
    // What `install` would copy; none when there is no build for the host's platform here.
    let sum = choose_build(&host.host, &platform, None)
        .ok()
        .map(|build| build.sum);
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
            up_to_date: remote.sum.is_some() && remote.sum == sum,
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
    match sum {
        Some(sum) if sum == remote_sum => {
            let what = if platform == Platform::local() {
                "this airlock".to_owned()
            } else {
                format!("the build for {platform} here")
            };
            println!("checksum: matches {what} (sha256 {sum})");
        }
        Some(sum) => println!(
            "checksum: mismatch: {remote_sum} on {h}, {sum} here; run `airlock remote install {h}`",
            h = host.host
        ),
        None => println!(
            "checksum: no build for {platform} here to compare with (see `airlock remote install --help`)"
        ),
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
    fn platforms_from_uname_headers_and_triples() {
        let mac = Platform::from_uname("Darwin arm64");
        assert_eq!(mac, Platform::new("Darwin", "aarch64"));
        assert_eq!(mac.triples(), ["aarch64-apple-darwin"]);
        assert_eq!(
            Platform::from_uname("Linux x86_64\n").triples(),
            ["x86_64-unknown-linux-musl", "x86_64-unknown-linux-gnu"]
        );
        assert_eq!(
            Platform::from_uname("FreeBSD amd64").triples(),
            ["x86_64-unknown-freebsd"]
        );
        assert!(Platform::from_uname("Plan9 mips").triples().is_empty());

        let exe = std::fs::read(std::env::current_exe().unwrap()).unwrap();
        assert_eq!(Platform::of_program(&exe), Some(Platform::local()));
        let thin = [0xcf, 0xfa, 0xed, 0xfe, 0x0c, 0x00, 0x00, 0x01, 0, 0, 0, 0];
        assert_eq!(Platform::of_program(&thin), Some(mac.clone()));
        // A universal binary with x86_64 and arm64 slices runs on either Mac.
        let mut fat = vec![0xca, 0xfe, 0xba, 0xbe, 0, 0, 0, 2];
        for cpu in [[1, 0, 0, 7], [1, 0, 0, 12]] {
            fat.extend(cpu);
            fat.extend([0; 16]);
        }
        let p = Platform::of_program(&fat).unwrap();
        assert!(p.runs_on(&Platform::new("Darwin", "x86_64"), true));
        assert!(p.runs_on(&mac, true));
        assert!(!p.runs_on(&Platform::new("Linux", "aarch64"), true));
        assert_eq!(Platform::of_program(b"#!/bin/sh\necho airlock\n"), None);
        assert_eq!(Platform::of_program(b"\x7fELF"), None);
    }

    #[test]
    fn quoting() {
        assert_eq!(shell_quote("abc/d.e"), "abc/d.e");
        assert_eq!(shell_quote("a b'c"), r"'a b'\''c'");
        assert_eq!(shell_quote(""), "''");
        assert_eq!(remote_path_word("~/.local/bin"), "\"$HOME\"/.local/bin");
        assert_eq!(remote_path_word("/tmp/x y"), "'/tmp/x y'");
    }
}
