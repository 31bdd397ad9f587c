//! `airlock env`: conda environments. Glue only: flags and `AIRLOCK_*` variables become
//! [`airlock_env::config::Settings`], and each subcommand calls one `airlock_env` operation.

use std::ffi::OsString;
use std::io::{IsTerminal as _, Write as _};
use std::path::PathBuf;
use std::process::ExitCode;

use airlock_env::config::{Locations, Overrides, Settings, Verify};
use airlock_env::envs::Target;
use airlock_env::export::Detail;
use airlock_env::{activate, credentials, envs, export, ops, solve};
use anyhow::Context as _;

/// `AIRLOCK_CHANNEL_ALIAS`: where bare channel names (`conda-forge`) are looked up.
pub const ENV_CHANNEL_ALIAS: &str = "AIRLOCK_CHANNEL_ALIAS";
/// `AIRLOCK_ENVS_DIR`: where named environments are created.
pub const ENV_ENVS_DIR: &str = "AIRLOCK_ENVS_DIR";
/// `AIRLOCK_PKGS_DIR`: the writable package cache.
pub const ENV_PKGS_DIR: &str = "AIRLOCK_PKGS_DIR";
/// `AIRLOCK_OFFLINE`: `1`/`true` refuses remote channels.
pub const ENV_OFFLINE: &str = "AIRLOCK_OFFLINE";
/// `AIRLOCK_VERIFY`: `skip`, `fast`, `stamp` (default) or `full` checking of cached packages.
pub const ENV_VERIFY: &str = "AIRLOCK_VERIFY";
/// `AIRLOCK_CONFIG`: the config file, default `$XDG_CONFIG_HOME/airlock/config.toml`.
pub const ENV_CONFIG: &str = "AIRLOCK_CONFIG";
/// `CONDARC`: conda's own override for `~/.condarc`.
pub const ENV_CONDARC: &str = "CONDARC";

/// What runs when, said in `airlock env --help` (issue 22: a user should know this before
/// installing from a file someone sent).
const WHAT_RUNS: &str = "\
What runs:
  A package's pre-link, post-link and pre-unlink scripts never run.
  Its etc/conda/activate.d/*.sh scripts run on every `env run` and `env shell-hook`
  activation, and its programs run when you run them: install only from channels you would
  run programs from.
  A `pip:` section in an environment.yml can name any package index (--index-url,
  --extra-index-url lines) and install source distributions, whose build scripts run
  when an environment is created or updated from the file; read it before using a file
  someone sent.
  A package cannot write outside its environment: paths leaving it are refused before
  anything is linked (see SECURITY.md).";

/// Conda environments built with the rattler crates.
#[derive(Debug, clap::Args)]
#[command(after_long_help = WHAT_RUNS)]
pub struct Args {
    #[command(subcommand)]
    command: EnvCommand,
}

/// `-n NAME` or `-p PREFIX`.
#[derive(Debug, Clone, clap::Args)]
struct TargetArgs {
    /// Environment name (in the envs directory).
    #[arg(short = 'n', long = "name", conflicts_with = "prefix")]
    name: Option<String>,
    /// Environment directory (any conda environment or venv).
    #[arg(short = 'p', long = "prefix")]
    prefix: Option<PathBuf>,
}

impl TargetArgs {
    fn target(&self) -> Option<Target> {
        self.name
            .clone()
            .map(Target::Name)
            .or_else(|| self.prefix.clone().map(Target::Prefix))
    }

    fn required(&self) -> anyhow::Result<Target> {
        self.target()
            .context("name the environment with -n NAME or -p PREFIX")
    }
}

#[derive(Debug, clap::Subcommand)]
enum EnvCommand {
    /// Create an environment from specs or an environment.yml.
    #[command(
        after_help = "Examples:\n  airlock env create -n torch -c conda-forge python=3.12 pytorch\n  airlock env create -f environment.yml\n  airlock env create -p ./.env -f environment.yml --force"
    )]
    Create {
        #[command(flatten)]
        target: TargetArgs,
        /// Read name, channels, dependencies, pip: and variables: from this environment.yml.
        #[arg(short = 'f', long = "file")]
        file: Option<PathBuf>,
        /// Channel (name, URL or path); repeat for more, highest priority first.
        #[arg(short = 'c', long = "channel")]
        channels: Vec<String>,
        /// Target platform (subdir), e.g. linux-64.
        #[arg(long)]
        platform: Option<String>,
        /// CUDA version to assume (overrides detection and CONDA_OVERRIDE_CUDA).
        #[arg(long)]
        cuda: Option<String>,
        /// Replace an existing environment (only once the new one is complete).
        #[arg(long)]
        force: bool,
        /// Package specs, e.g. `python=3.11` `conda-forge::numpy>=2`.
        specs: Vec<String>,
    },
    /// List environments (airlock's and the ones conda knows).
    List {
        /// JSON output.
        #[arg(long)]
        json: bool,
    },
    /// Remove an environment (asks first on a terminal; without one, only with --yes).
    #[command(alias = "rm")]
    Remove {
        #[command(flatten)]
        target: TargetArgs,
        /// Do not ask. Without a terminal to ask on, nothing is removed unless this is given
        /// (where conda would read a missing answer as yes, airlock refuses).
        #[arg(short = 'y', long)]
        yes: bool,
    },
    /// Print an environment in conda's formats.
    Export {
        #[command(flatten)]
        target: TargetArgs,
        /// `name=version` without build strings.
        #[arg(long, conflicts_with = "from_history")]
        no_builds: bool,
        /// Only the specs that were asked for.
        #[arg(long)]
        from_history: bool,
        /// Output format.
        #[arg(long, value_enum, default_value_t = ExportFormat::Yaml)]
        format: ExportFormat,
        /// Write to this file instead of stdout.
        #[arg(short = 'o', long)]
        output: Option<PathBuf>,
    },
    /// Solve an environment.yml (and resolve its pip: section) for one or more platforms and
    /// write a pixi.lock (v7).
    #[command(
        after_help = "Examples:\n  airlock env lock -f environment.yml    (writes pixi.lock beside it)\n  airlock env lock -f environment.yml --platform linux-64 --platform osx-arm64"
    )]
    Lock {
        /// The environment.yml.
        #[arg(short = 'f', long = "file")]
        file: PathBuf,
        /// Platform to lock for; repeat for several. Default: this machine's.
        #[arg(long = "platform")]
        platforms: Vec<String>,
        /// Extra channel, before the file's.
        #[arg(short = 'c', long = "channel")]
        channels: Vec<String>,
        /// CUDA version to assume (recorded in the lock).
        #[arg(long)]
        cuda: Option<String>,
        /// Output file. Default: pixi.lock next to the yml.
        #[arg(short = 'o', long)]
        output: Option<PathBuf>,
    },
    /// Create an environment exactly from a lock file (conda and pypi packages), without solving.
    #[command(
        after_help = "Examples:\n  airlock env install --lock pixi.lock -n torch\n  airlock env install --lock pixi.lock -p ./.env --platform linux-64 --force"
    )]
    Install {
        /// The lock file (pixi.lock).
        #[arg(long)]
        lock: PathBuf,
        #[command(flatten)]
        target: TargetArgs,
        /// Platform in the lock to install. Default: this machine's.
        #[arg(long)]
        platform: Option<String>,
        /// Replace an existing environment.
        #[arg(long)]
        force: bool,
    },
    /// Add or change packages in an environment, or apply an environment.yml to it.
    Update {
        #[command(flatten)]
        target: TargetArgs,
        /// environment.yml whose dependencies (and pip:) are applied.
        #[arg(short = 'f', long = "file")]
        file: Option<PathBuf>,
        /// Channels.
        #[arg(short = 'c', long = "channel")]
        channels: Vec<String>,
        /// CUDA version to assume.
        #[arg(long)]
        cuda: Option<String>,
        /// Specs to add or change.
        specs: Vec<String>,
    },
    /// Run a command inside an environment; its exit status is passed through.
    #[command(
        after_help = "Examples:\n  airlock env run -n torch python train.py\n  airlock env run -n torch -- python -c 'import torch; print(torch.__version__)'"
    )]
    Run {
        #[command(flatten)]
        target: TargetArgs,
        /// The command and its arguments.
        #[arg(trailing_var_arg = true, allow_hyphen_values = true, required = true)]
        command: Vec<OsString>,
    },
    /// Open a shell in the environment, activated as `env run` does (as `pixi shell`): $SHELL,
    /// else /bin/sh; `exit` leaves it, and its exit status is passed through.
    #[command(
        after_help = "The activation is in the environment the shell starts with; a startup file that sets PATH again (e.g. a `conda init` block in ~/.bashrc activating base) can undo it there.\n\nExamples:\n  airlock env shell -n torch\n  echo 'python train.py' | airlock env shell -n torch"
    )]
    Shell {
        #[command(flatten)]
        target: TargetArgs,
    },
    /// Print a script that activates the environment: `eval "$(airlock env shell-hook -n NAME)"`.
    ShellHook {
        #[command(flatten)]
        target: TargetArgs,
        /// bash, zsh, fish, xonsh, powershell or nushell.
        #[arg(long, default_value = "bash")]
        shell: String,
    },
    /// The package cache.
    Cache {
        #[command(subcommand)]
        command: CacheCommand,
    },
}

#[derive(Debug, clap::Subcommand)]
enum CacheCommand {
    /// Remove cached packages that no environment uses.
    Prune,
}

#[derive(Debug, Clone, Copy, clap::ValueEnum)]
enum ExportFormat {
    /// environment.yml.
    Yaml,
    /// `@EXPLICIT` URL list.
    Explicit,
    /// pixi.lock v7 of what is installed.
    Lock,
}

fn env_path(var: &str) -> Option<PathBuf> {
    std::env::var_os(var)
        .filter(|v| !v.is_empty())
        .map(PathBuf::from)
}

fn settings() -> anyhow::Result<Settings> {
    let home = crate::paths::home();
    let config_file =
        env_path(ENV_CONFIG).unwrap_or_else(|| crate::paths::config_dir().join("config.toml"));
    let condarc = env_path(ENV_CONDARC).unwrap_or_else(|| home.join(".condarc"));
    let locations = Locations {
        home,
        data_dir: crate::paths::data_dir(),
        cache_dir: crate::paths::cache_dir(),
        config_file,
        condarc,
        cwd: std::env::current_dir().context("the current directory is not accessible")?,
    };
    let offline = match std::env::var(ENV_OFFLINE) {
        Ok(v) if v.is_empty() => None,
        Ok(v) => Some(matches!(
            v.to_ascii_lowercase().as_str(),
            "1" | "true" | "yes"
        )),
        Err(_) => None,
    };
    let verify = match std::env::var(ENV_VERIFY).ok().as_deref() {
        None | Some("") => None,
        Some("skip") => Some(Verify::Skip),
        Some("fast") => Some(Verify::Fast),
        Some("stamp") => Some(Verify::Stamp),
        Some("full") => Some(Verify::Full),
        Some(other) => anyhow::bail!("{ENV_VERIFY}={other}: expected skip, fast, stamp or full"),
    };
    let overrides = Overrides {
        channel_alias: std::env::var(ENV_CHANNEL_ALIAS)
            .ok()
            .filter(|s| !s.is_empty()),
        envs_dir: env_path(ENV_ENVS_DIR),
        pkgs_dir: env_path(ENV_PKGS_DIR),
        offline,
        verify,
    };
    Ok(Settings::resolve(&locations, &overrides)?)
}

fn command_line() -> String {
    std::env::args_os()
        .map(|a| a.to_string_lossy().into_owned())
        .collect::<Vec<_>>()
        .join(" ")
}

fn platform(text: Option<&str>) -> anyhow::Result<Option<airlock_env::solve::Subdir>> {
    Ok(text.map(solve::parse_platform).transpose()?)
}

fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("could not start the async runtime")
}

fn display_name(target: &Target) -> String {
    match target {
        Target::Name(n) => n.clone(),
        Target::Prefix(p) => p.display().to_string(),
    }
}

/// A child's exit status as ours (a signal is already `128 + N`).
fn exit_code(code: i32) -> ExitCode {
    ExitCode::from(u8::try_from(code.clamp(0, 255)).unwrap_or(1))
}

/// Run the command.
pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    // A channel token goes into request URLs (`/t/TOKEN/`), and HTTP errors quote them.
    run_command(args).map_err(|e| anyhow::anyhow!(credentials::scrub(&format!("{e:#}"))))
}

fn run_command(args: Args) -> anyhow::Result<ExitCode> {
    let settings = settings()?;
    match args.command {
        EnvCommand::Create {
            target,
            file,
            channels,
            platform: platform_text,
            cuda,
            force,
            specs,
        } => {
            if file.is_none() && specs.is_empty() {
                anyhow::bail!("nothing to install: give package specs or -f environment.yml");
            }
            let request = ops::CreateRequest {
                target: target.target(),
                specs,
                channels,
                file,
                platform: platform(platform_text.as_deref())?,
                cuda,
                force,
                command_line: command_line(),
                progress: !crate::logging::quiet(),
            };
            let prefix = runtime()?.block_on(ops::create(&settings, &request))?;
            crate::logging::say(&format!("created {}", prefix.display()));
            crate::logging::say(&format!(
                "activate with: eval \"$(airlock env shell-hook -p {})\"",
                prefix.display()
            ));
            Ok(ExitCode::SUCCESS)
        }
        EnvCommand::List { json } => {
            let list = envs::list(&settings)?;
            let mut out = std::io::stdout().lock();
            if json {
                serde_json::to_writer_pretty(&mut out, &list)?;
                writeln!(out)?;
            } else {
                writeln!(
                    out,
                    "{:<20} {:<10} {:>8}  PATH",
                    "NAME", "PYTHON", "PACKAGES"
                )?;
                for env in list {
                    writeln!(
                        out,
                        "{:<20} {:<10} {:>8}  {}",
                        env.name,
                        env.python.as_deref().unwrap_or("-"),
                        env.packages,
                        env.path.display()
                    )?;
                }
            }
            Ok(ExitCode::SUCCESS)
        }
        EnvCommand::Remove { target, yes } => {
            let target = target.required()?;
            let prefix = envs::find(&settings, &target)?;
            if !yes {
                let question = format!(
                    "Remove environment {} ({})?",
                    display_name(&target),
                    prefix.display()
                );
                match super::confirm(&question)? {
                    None => anyhow::bail!(
                        "refusing to remove {} without confirmation: there is no terminal to ask on; pass --yes",
                        prefix.display()
                    ),
                    Some(false) => {
                        crate::logging::say("nothing removed");
                        return Ok(ExitCode::from(1));
                    }
                    Some(true) => {}
                }
            }
            envs::remove(&settings, &prefix)?;
            crate::logging::say(&format!("removed {}", prefix.display()));
            Ok(ExitCode::SUCCESS)
        }
        EnvCommand::Export {
            target,
            no_builds,
            from_history,
            format,
            output,
        } => {
            let target = target.required()?;
            let prefix = envs::find(&settings, &target)?;
            let text = match format {
                ExportFormat::Yaml => {
                    let detail = if from_history {
                        Detail::FromHistory
                    } else if no_builds {
                        Detail::NoBuilds
                    } else {
                        Detail::Builds
                    };
                    let name = prefix.file_name().map_or_else(
                        || display_name(&target),
                        |n| n.to_string_lossy().into_owned(),
                    );
                    export::yaml(&prefix, &name, detail, &settings.channel_alias)?
                }
                ExportFormat::Explicit => export::explicit(&prefix)?,
                ExportFormat::Lock => {
                    let virtual_packages =
                        solve::virtual_packages(solve::current_platform(), None)?;
                    export::lock(&prefix, virtual_packages)?
                }
            };
            match output {
                Some(path) => envs::write_atomic(&path, text.as_bytes())?,
                None => std::io::stdout().lock().write_all(text.as_bytes())?,
            }
            Ok(ExitCode::SUCCESS)
        }
        EnvCommand::Lock {
            file,
            platforms,
            channels,
            cuda,
            output,
        } => {
            let platforms = platforms
                .iter()
                .map(|p| solve::parse_platform(p))
                .collect::<Result<Vec<_>, _>>()?;
            let request = ops::LockRequest {
                file,
                channels,
                platforms,
                cuda,
                output,
            };
            let path = runtime()?.block_on(ops::lock(&settings, &request))?;
            crate::logging::say(&format!("wrote {}", path.display()));
            Ok(ExitCode::SUCCESS)
        }
        EnvCommand::Install {
            lock,
            target,
            platform: platform_text,
            force,
        } => {
            let request = ops::InstallLockRequest {
                lock,
                target: target.required()?,
                platform: platform(platform_text.as_deref())?,
                force,
                command_line: command_line(),
                progress: !crate::logging::quiet(),
            };
            let prefix = runtime()?.block_on(ops::install_lock(&settings, &request))?;
            crate::logging::say(&format!("installed {}", prefix.display()));
            Ok(ExitCode::SUCCESS)
        }
        EnvCommand::Update {
            target,
            file,
            channels,
            cuda,
            specs,
        } => {
            if target.target().is_none() && file.is_none() {
                anyhow::bail!("name the environment with -n NAME or -p PREFIX");
            }
            let request = ops::CreateRequest {
                target: target.target(),
                specs,
                channels,
                file,
                platform: None,
                cuda,
                force: false,
                command_line: command_line(),
                progress: !crate::logging::quiet(),
            };
            let prefix = runtime()?.block_on(ops::update(&settings, &request))?;
            crate::logging::say(&format!("updated {}", prefix.display()));
            Ok(ExitCode::SUCCESS)
        }
        EnvCommand::Run { target, command } => {
            let target = target.required()?;
            let prefix = envs::find(&settings, &target)?;
            let Some((program, rest)) = command.split_first() else {
                anyhow::bail!("give the command to run after --");
            };
            let code = activate::run(&prefix, program, rest)?;
            Ok(exit_code(code))
        }
        EnvCommand::Shell { target } => {
            let target = target.required()?;
            let prefix = envs::find(&settings, &target)?;
            let shell = std::env::var_os("SHELL")
                .filter(|s| !s.is_empty())
                .unwrap_or_else(|| "/bin/sh".into());
            if std::io::stdin().is_terminal() {
                crate::logging::say(&format!(
                    "a shell in {} ({}); `exit` leaves it",
                    display_name(&target),
                    prefix.display()
                ));
            }
            let code = activate::run(&prefix, &shell, &[])?;
            Ok(exit_code(code))
        }
        EnvCommand::Cache {
            command: CacheCommand::Prune,
        } => {
            let removed = envs::prune_cache(&settings)?;
            let mut out = std::io::stdout().lock();
            for path in &removed {
                writeln!(out, "{}", path.display())?;
            }
            crate::logging::say(&format!(
                "removed {} unused package(s) from the cache",
                removed.len()
            ));
            Ok(ExitCode::SUCCESS)
        }
        EnvCommand::ShellHook { target, shell } => {
            let target = target.required()?;
            let prefix = envs::find(&settings, &target)?;
            let script = activate::shell_hook(&prefix, &shell)?;
            std::io::stdout().lock().write_all(script.as_bytes())?;
            Ok(ExitCode::SUCCESS)
        }
    }
}
