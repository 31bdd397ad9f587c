//! `airlock ssh-config`: resolve a host as `ssh -G` does, audit a config, add a safe `Host`
//! block.

use std::io::Write as _;
use std::path::PathBuf;
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
    /// Append or update one `Host` block, keeping a `Host *` / `ForwardAgent no` guard last.
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
struct AddHostArgs {
    /// The `Host` alias.
    alias: String,
    /// `HostName`.
    #[arg(long, value_name = "H")]
    hostname: String,
    /// `User`.
    #[arg(long, value_name = "U")]
    user: Option<String>,
    /// `Port`.
    #[arg(long, value_name = "P")]
    port: Option<u16>,
    /// An airlock key name: `IdentityFile ~/.ssh/airlock/NAME`.
    #[arg(long, value_name = "NAME")]
    key: Option<String>,
    /// `ProxyJump`.
    #[arg(long, value_name = "J")]
    proxy_jump: Option<String>,
    /// Forward the airlock agent (its socket, not `SSH_AUTH_SOCK`) to this host.
    #[arg(long)]
    forward_agent: bool,
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

fn add_host(a: AddHostArgs) -> anyhow::Result<ExitCode> {
    let context = airlock_ssh_config::LocalContext::current()?;
    let path = match a.file {
        Some(f) => f,
        None => home_ssh_config()?,
    };
    let block = airlock_ssh_config::edit::HostBlock {
        alias: a.alias,
        hostname: a.hostname,
        user: a.user,
        port: a.port,
        identity_file: a.key.map(|k| format!("~/.ssh/airlock/{k}")),
        proxy_jump: a.proxy_jump,
        forward_agent: a
            .forward_agent
            .then(|| crate::paths::agent_socket().to_string_lossy().into_owned()),
    };
    match airlock_ssh_config::edit::add_host(&path, &block, &context)? {
        airlock_ssh_config::edit::EditOutcome::Unchanged => {
            eprintln!("{}: already up to date", path.display());
        }
        airlock_ssh_config::edit::EditOutcome::Written { backup } => match backup {
            Some(b) => eprintln!(
                "{}: updated (previous version in {})",
                path.display(),
                b.display()
            ),
            None => eprintln!("{}: created", path.display()),
        },
    }
    Ok(ExitCode::SUCCESS)
}
