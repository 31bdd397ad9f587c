//! `airlock ssh-config`: resolve a host as `ssh -G` does, audit a config, add a safe `Host`
//! block.

use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use airlock_ssh_config::{ConfigSource, ResolveOptions};

/// Arguments.
#[derive(Debug, clap::Args)]
pub struct Args {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, clap::Subcommand)]
enum Command {
    /// Print the effective settings for HOST in exactly `ssh -G`'s format.
    Resolve(ResolveArgs),
    /// Audit a config for risky settings (exit 0 clean, 1 findings, 2 unreadable).
    Check(CheckArgs),
    /// Add a `Host` block, or change the settings named on an existing one (shown as a diff),
    /// keeping a `Host *` / `ForwardAgent no` guard last.
    AddHost(AddHostArgs),
}

#[derive(Debug, clap::Args)]
struct ResolveArgs {
    /// The destination: `host`, `user@host` or `ssh://user@host:port`.
    host: String,
    /// Read only this file (`none` for no file), as `ssh -F`.
    #[arg(short = 'F', value_name = "FILE")]
    file: Option<PathBuf>,
    /// Remote user, as `ssh -l`.
    #[arg(short = 'l', value_name = "USER")]
    user: Option<String>,
    /// Port, as `ssh -p`.
    #[arg(short = 'p', value_name = "PORT")]
    port: Option<u16>,
}

#[derive(Debug, clap::Args)]
struct CheckArgs {
    /// The config to audit (default `~/.ssh/config`).
    #[arg(short = 'F', value_name = "FILE")]
    file: Option<PathBuf>,
    /// Forwarding policy (TOML with `[[key]] forward-through = [...]`); default
    /// `$AIRLOCK_POLICY` or `$XDG_CONFIG_HOME/airlock/policy.toml` when it exists.
    #[arg(long, value_name = "FILE")]
    policy: Option<PathBuf>,
    /// Print findings as JSON.
    #[arg(long)]
    json: bool,
}

#[derive(Debug, clap::Args)]
#[command(
    after_help = "On an existing alias only the settings named by flags change; every \
other line of the file stays as it is, and the change is shown as a diff on stderr (the previous \
file is kept as FILE.airlock-bak); --dry-run only shows it. --replace rewrites the block's \
settings instead.\n\nExamples:\n  airlock ssh-config add-host gpu --hostname gpu01.lab.internal --key ai-project\n  \
airlock ssh-config add-host gpu --port 2222 --dry-run"
)]
struct AddHostArgs {
    /// The `Host` alias.
    alias: String,
    /// `HostName` (required for a new alias).
    #[arg(long, value_name = "H")]
    hostname: Option<String>,
    /// `User`.
    #[arg(long, value_name = "U")]
    user: Option<String>,
    /// `Port`.
    #[arg(long, value_name = "P")]
    port: Option<u16>,
    /// An airlock key name: `IdentityFile` the key `airlock key new NAME` made (written as
    /// `~/...` when ssh's `~`, the home in the password database, reaches it, else absolute),
    /// with `IdentitiesOnly yes`.
    #[arg(long, value_name = "NAME")]
    key: Option<String>,
    /// `ProxyJump`.
    #[arg(long, value_name = "J")]
    proxy_jump: Option<String>,
    /// Forward the airlock agent (its socket, not `SSH_AUTH_SOCK`) to this host.
    #[arg(long, conflicts_with = "no_forward_agent")]
    forward_agent: bool,
    /// Stop forwarding to this host (removes the block's `ForwardAgent` line).
    #[arg(long)]
    no_forward_agent: bool,
    /// Rewrite the block's settings from these flags alone (its comments are kept).
    #[arg(long)]
    replace: bool,
    /// Show the change as a diff and write nothing.
    #[arg(long)]
    dry_run: bool,
    /// The config to edit (default `~/.ssh/config`).
    #[arg(short = 'F', value_name = "FILE")]
    file: Option<PathBuf>,
}

/// Run the command.
pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    match args.command {
        Command::Resolve(a) => resolve(a),
        Command::Check(a) => check(a),
        Command::AddHost(a) => add_host(a),
    }
}

fn resolve(a: ResolveArgs) -> anyhow::Result<ExitCode> {
    let mut options = ResolveOptions::for_current_user()?;
    options.config = match a.file {
        None => ConfigSource::Default,
        Some(f) if f.as_os_str().eq_ignore_ascii_case("none") => ConfigSource::None,
        Some(f) => ConfigSource::File(f),
    };
    options.user = a.user;
    options.port = a.port;
    match airlock_ssh_config::resolve(&a.host, &options) {
        Ok(cfg) => {
            let mut out = std::io::stdout().lock();
            out.write_all(cfg.to_ssh_g().as_bytes())?;
            out.flush()?;
            Ok(ExitCode::SUCCESS)
        }
        Err(e) => {
            eprintln!("airlock: error: {e}");
            Ok(ExitCode::from(255))
        }
    }
}

fn home_ssh_config() -> anyhow::Result<PathBuf> {
    Ok(airlock_ssh_config::LocalContext::current()?
        .home
        .join(".ssh")
        .join("config"))
}

fn check(a: CheckArgs) -> anyhow::Result<ExitCode> {
    let context = airlock_ssh_config::LocalContext::current()?;
    let named = a.file.is_some();
    let config = match a.file {
        Some(f) => f,
        None => home_ssh_config()?,
    };
    if !named && !config.exists() {
        println!(
            "No ssh config at {}: nothing to check (ssh uses its defaults).",
            config.display()
        );
        return Ok(ExitCode::SUCCESS);
    }
    let policy = a.policy.or_else(|| {
        std::env::var_os(crate::paths::ENV_POLICY)
            .map(PathBuf::from)
            .or_else(|| Some(crate::paths::config_dir().join("policy.toml")))
    });
    let key_dirs = vec![context.home.join(".ssh"), crate::paths::keys_dir()];
    let options = airlock_ssh_config::CheckOptions {
        config,
        policy,
        key_dirs,
        context,
    };
    let findings = match airlock_ssh_config::check(&options) {
        Ok(f) => f,
        Err(e) => {
            eprintln!("airlock: error: {e}");
            return Ok(ExitCode::from(2));
        }
    };
    let mut out = std::io::stdout().lock();
    if a.json {
        serde_json::to_writer_pretty(&mut out, &findings)?;
        writeln!(out)?;
    } else {
        for f in &findings {
            writeln!(
                out,
                "{}:{}: {} [{}] {}\n    fix: {}",
                f.file.display(),
                f.line,
                f.severity,
                f.id,
                f.message,
                f.fix
            )?;
        }
        if findings.is_empty() {
            eprintln!("no findings");
        }
    }
    out.flush()?;
    Ok(if findings.is_empty() {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}

/// The `IdentityFile` value for an airlock key, so that ssh opens the file `airlock key new`
/// made. ssh expands `~` in its config to the home in the password database, while airlock
/// keeps keys under `$HOME` (or `$AIRLOCK_KEYS_DIR`): `~/...` is written only when the two
/// lead to the same file, else the absolute path.
fn identity_file_value(key_file: &Path, ssh_home: &Path) -> String {
    match key_file.strip_prefix(ssh_home) {
        Ok(rest) if ssh_home.is_absolute() && !rest.as_os_str().is_empty() => {
            format!("~/{}", rest.display())
        }
        _ => key_file.display().to_string(),
    }
}

fn add_host(a: AddHostArgs) -> anyhow::Result<ExitCode> {
    use airlock_ssh_config::edit::{EditOutcome, Forwarding, HostEdit};
    let context = airlock_ssh_config::LocalContext::current()?;
    let path = match a.file {
        Some(f) => f,
        None => home_ssh_config()?,
    };
    let identity_file = match &a.key {
        Some(name) => {
            let name = airlock_keys::KeyName::new(name)?;
            let store = airlock_keys::KeyStore::new(crate::paths::keys_dir());
            let key_file = store.paths(&name).private;
            if !key_file.exists() {
                eprintln!(
                    "airlock: warning: no key {} yet (create it with `airlock key new {}`)",
                    key_file.display(),
                    name.as_str()
                );
            }
            Some(identity_file_value(&key_file, &context.home))
        }
        None => None,
    };
    let forward_agent = if a.forward_agent {
        Forwarding::Socket(crate::paths::agent_socket().to_string_lossy().into_owned())
    } else if a.no_forward_agent {
        Forwarding::Off
    } else {
        Forwarding::Unchanged
    };
    let edit = HostEdit {
        alias: a.alias,
        hostname: a.hostname,
        user: a.user,
        port: a.port,
        identity_file,
        proxy_jump: a.proxy_jump,
        forward_agent,
        replace: a.replace,
    };
    let apply = if a.dry_run {
        airlock_ssh_config::edit::preview_add_host
    } else {
        airlock_ssh_config::edit::add_host
    };
    let outcome = apply(&path, &edit, &context).map_err(|e| match e {
        airlock_ssh_config::Error::Read { path, source } => anyhow::anyhow!(
            "cannot update {}: {}",
            path.display(),
            super::io_reason(&source)
        ),
        other => anyhow::anyhow!("{other}"),
    })?;
    match outcome {
        EditOutcome::Unchanged => {
            eprintln!("{}: already up to date", path.display());
        }
        EditOutcome::Written {
            backup,
            existed,
            diff,
        } => {
            let what = if existed {
                format!("changed `Host {}`", edit.alias)
            } else {
                format!("added `Host {}`", edit.alias)
            };
            match backup {
                Some(b) => eprintln!(
                    "{}: {what} (previous version in {}):",
                    path.display(),
                    b.display()
                ),
                None => eprintln!("{}: created, {what}:", path.display()),
            }
            eprint!("{diff}");
        }
        EditOutcome::Previewed { existed, diff } => {
            let verb = if existed { "change" } else { "add" };
            eprintln!(
                "{}: would {verb} `Host {}` (nothing written):",
                path.display(),
                edit.alias
            );
            eprint!("{diff}");
        }
    }
    Ok(ExitCode::SUCCESS)
}

#[cfg(test)]
mod tests {
    use super::identity_file_value;
    use std::path::Path;

    #[test]
    fn identity_file_is_written_with_tilde_only_under_the_ssh_home() {
        let key = Path::new("/home/me/.ssh/airlock/lab");
        assert_eq!(
            identity_file_value(key, Path::new("/home/me")),
            "~/.ssh/airlock/lab"
        );
        assert_eq!(
            identity_file_value(key, Path::new("/home/other")),
            "/home/me/.ssh/airlock/lab"
        );
        assert_eq!(
            identity_file_value(key, Path::new("/home/m")),
            "/home/me/.ssh/airlock/lab"
        );
    }
}
