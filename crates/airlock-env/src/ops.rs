//! The env operations as the command line sees them: each takes plain settings and a request
//! and does the whole job (solve, install, register, pip).

use std::path::{Path, PathBuf};

use rattler_conda_types::{RepoDataRecord, Subdir};

use crate::config::Settings;
use crate::envs::{self, Target};
use crate::error::{EnvError, Result};
use crate::install::{self, InstallOptions};
use crate::lock;
use crate::pypi;
use crate::solve::{self, Solution, SolveRequest};
use crate::yaml::EnvironmentFile;

/// `env create` and `env update`.
#[derive(Debug, Clone, Default)]
pub struct CreateRequest {
    /// `-n`/`-p`; for `-f` it may come from the file's `name:` or `prefix:`.
    pub target: Option<Target>,
    /// Specs from the command line.
    pub specs: Vec<String>,
    /// `-c` channels (before the file's).
    pub channels: Vec<String>,
    /// `-f environment.yml`.
    pub file: Option<PathBuf>,
    /// `--platform`.
    pub platform: Option<Subdir>,
    /// `--cuda`.
    pub cuda: Option<String>,
    /// Replace an existing environment.
    pub force: bool,
    /// For `# cmd:` in the history.
    pub command_line: String,
    /// One line per package on stderr.
    pub progress: bool,
}

struct Resolved {
    target: Target,
    specs: Vec<String>,
    channels: Vec<String>,
    file: Option<EnvironmentFile>,
}

impl Resolved {
    /// How to install `solution` for `request`: what to record in `conda-meta/history`, the
    /// yml's `variables:`, progress.
    fn install_options(
        &self,
        solution: &Solution,
        request: &CreateRequest,
        platform: Subdir,
    ) -> InstallOptions {
        InstallOptions {
            requested_specs: solution.specs.clone(),
            history_specs: self.specs.clone(),
            command_line: request.command_line.clone(),
            variables: self
                .file
                .as_ref()
                .map(|f| f.variables.clone())
                .unwrap_or_default(),
            history_date: None,
            platform: Some(platform),
            progress: request.progress,
            pip_follows: false,
        }
    }
}

fn resolve(request: &CreateRequest) -> Result<Resolved> {
    let file = request
        .file
        .as_deref()
        .map(EnvironmentFile::from_path)
        .transpose()?;
    let target = request
        .target
        .clone()
        .or_else(|| {
            let f = file.as_ref()?;
            f.name
                .clone()
                .map(Target::Name)
                .or_else(|| f.prefix.clone().map(Target::Prefix))
        })
        .ok_or_else(|| EnvError::InvalidName("(none): give -n NAME or -p PREFIX".to_owned()))?;
    let mut specs: Vec<String> = file.as_ref().map(|f| f.specs.clone()).unwrap_or_default();
    specs.extend(request.specs.iter().cloned());
    let mut channels = request.channels.clone();
    if let Some(f) = &file {
        for c in &f.channels {
            if !channels.contains(c) {
                channels.push(c.clone());
            }
        }
    }
    Ok(Resolved {
        target,
        specs,
        channels,
        file,
    })
}

/// Creates an environment; returns its prefix.
pub async fn create(settings: &Settings, request: &CreateRequest) -> Result<PathBuf> {
    let resolved = resolve(request)?;
    let prefix = envs::new_prefix(settings, &resolved.target)?;
    if let Some(parent) = prefix.parent() {
        // A killed run's leftovers go first, an environment left incomplete among them.
        install::clean_stale_staging(parent);
    }
    if prefix.exists() && !request.force {
        return Err(EnvError::EnvironmentExists(prefix));
    }
    let platform = request.platform.unwrap_or_else(solve::current_platform);
    let solution = solve::solve(
        settings,
        &SolveRequest {
            specs: resolved.specs.clone(),
            channels: resolved.channels.clone(),
            platform,
            cuda: request.cuda.clone(),
            locked: Vec::new(),
        },
    )
    .await?;
    let options = resolved.install_options(&solution, request, platform);
    match resolved.file.as_ref().filter(|f| !f.pip.is_empty()) {
        Some(file) => {
            let names = conda_names(&solution.records);
            create_with_pip(settings, &prefix, solution.records, &options, |prefix| {
                crate::pip::install(prefix, &file.path, &file.pip, &names)
            })
            .await?;
        }
        None => {
            install::create(settings, &prefix, solution.records, &options, request.force).await?;
        }
    }
    envs::register(&settings.environments_txt, &prefix)?;
    Ok(prefix)
}

/// The names of the conda packages in `records` (pip warns when it replaces one of them).
fn conda_names(records: &[RepoDataRecord]) -> Vec<String> {
    records
        .iter()
        .map(|r| r.package_record.name.as_normalized().to_owned())
        .collect()
}

/// Updates an existing environment: the specs it was created with plus the new ones (a new
/// spec for a package replaces the old one), solved with the installed packages preferred.
pub async fn update(settings: &Settings, request: &CreateRequest) -> Result<PathBuf> {
    let resolved = resolve(request)?;
    let prefix = envs::find(settings, &resolved.target)?;
    let name_of = |s: &str| {
        s.split(|c: char| c.is_whitespace() || "=<>!~[".contains(c))
            .next()
            .unwrap_or_default()
            .rsplit("::")
            .next()
            .unwrap_or_default()
            .to_owned()
    };
    let mut specs = install::history_specs(&prefix)?;
    for new in &resolved.specs {
        specs.retain(|s| name_of(s) != name_of(new));
        specs.push(new.clone());
    }
    let installed = install::installed_records(&prefix)?;
    let mut channels = resolved.channels.clone();
    if channels.is_empty() {
        for r in &installed {
            if let Some(c) = r.repodata_record.channel.as_deref() {
                let c = c.to_owned();
                if !channels.contains(&c) {
                    channels.push(c);
                }
            }
        }
    }
    let platform = request.platform.unwrap_or_else(solve::current_platform);
    let solution = solve::solve(
        settings,
        &SolveRequest {
            specs: specs.clone(),
            channels,
            platform,
            cuda: request.cuda.clone(),
            locked: installed
                .iter()
                .map(|r| r.repodata_record.clone())
                .collect(),
        },
    )
    .await?;
    let options = resolved.install_options(&solution, request, platform);
    install::update(settings, &prefix, solution.records.clone(), &options).await?;
    if let Some(file) = &resolved.file
        && !file.pip.is_empty()
    {
        crate::pip::install(
            &prefix,
            &file.path,
            &file.pip,
            &conda_names(&solution.records),
        )?;
    }
    Ok(prefix)
}

/// `env lock`.
#[derive(Debug, Clone, Default)]
pub struct LockRequest {
    /// `-f environment.yml`.
    pub file: PathBuf,
    /// Extra `-c` channels.
    pub channels: Vec<String>,
    /// `--platform` (repeatable); empty means this machine's.
    pub platforms: Vec<Subdir>,
    /// `--cuda`.
    pub cuda: Option<String>,
    /// `-o FILE`; default `pixi.lock` next to the yml.
    pub output: Option<PathBuf>,
}

/// Solves for every platform and writes the lock; returns its path.
pub async fn lock(settings: &Settings, request: &LockRequest) -> Result<PathBuf> {
    let file = EnvironmentFile::from_path(&request.file)?;
    let mut channels = request.channels.clone();
    for c in &file.channels {
        if !channels.contains(c) {
            channels.push(c.clone());
        }
    }
    let platforms = if request.platforms.is_empty() {
        vec![solve::current_platform()]
    } else {
        request.platforms.clone()
    };
    let mut solutions: Vec<(Subdir, Solution)> = Vec::new();
    for platform in platforms {
        let solution = solve::solve(
            settings,
            &SolveRequest {
                specs: file.specs.clone(),
                channels: channels.clone(),
                platform,
                cuda: request.cuda.clone(),
                locked: Vec::new(),
            },
        )
        .await?;
        solutions.push((platform, solution));
    }
    let output = request.output.clone().unwrap_or_else(|| {
        request
            .file
            .parent()
            .unwrap_or_else(|| Path::new("."))
            .join("pixi.lock")
    });
    let pypi = if file.pip.is_empty() {
        None
    } else {
        Some(lock_pip(&file, &solutions, &output).await?)
    };
    let lock_file = lock::build_with_pypi(&solutions, pypi.as_ref())?;
    lock::write(&lock_file, &output)?;
    Ok(output)
}

/// Resolves the yml's `pip:` section for each solved platform, against that platform's Python.
async fn lock_pip(
    file: &EnvironmentFile,
    solutions: &[(Subdir, Solution)],
    output: &Path,
) -> Result<lock::PypiSection> {
    let output = std::path::absolute(output).map_err(|e| EnvError::io(output, e))?;
    let lock_dir = output.parent().unwrap_or_else(|| Path::new("/"));
    let mut packages = Vec::new();
    for (subdir, solution) in solutions {
        let target = pypi::PythonTarget::from_solution(*subdir, solution).ok_or_else(|| {
            EnvError::EnvironmentYaml {
                path: file.path.clone(),
                line: 0,
                field: "dependencies.pip".to_owned(),
                message: format!(
                    "the pip: section needs `python` in the dependencies (the {subdir} solution has none)"
                ),
            }
        })?;
        let resolved = pypi::resolve(&file.path, &file.pip, &target, lock_dir).await?;
        packages.push((*subdir, resolved));
    }
    Ok(lock::PypiSection {
        indexes: pypi::indexes(&file.pip),
        packages,
    })
}

/// `env install --lock`: recreates an environment exactly from a lock, without solving.
#[derive(Debug, Clone)]
pub struct InstallLockRequest {
    /// The lock file.
    pub lock: PathBuf,
    /// `-n`/`-p`.
    pub target: Target,
    /// `--platform`; default this machine's.
    pub platform: Option<Subdir>,
    /// Replace an existing environment.
    pub force: bool,
    /// For `# cmd:`.
    pub command_line: String,
    /// One line per package on stderr.
    pub progress: bool,
}

/// Installs from a lock; returns the prefix.
pub async fn install_lock(settings: &Settings, request: &InstallLockRequest) -> Result<PathBuf> {
    let platform = request.platform.unwrap_or_else(solve::current_platform);
    let locked = lock::read(&request.lock, platform)?;
    let prefix = envs::new_prefix(settings, &request.target)?;
    if let Some(parent) = prefix.parent() {
        // A killed run's leftovers go first, an environment left incomplete among them.
        install::clean_stale_staging(parent);
    }
    if prefix.exists() && !request.force {
        return Err(EnvError::EnvironmentExists(prefix));
    }
    check_lock_channels(settings, &locked.records)?;
    // Every locked wheel is checked before anything is built: a changed or missing file stops
    // the install here, with nothing to clean up.
    let artifacts = pypi::check_artifacts(&request.lock, &locked.pypi, settings.offline)?;
    warn_missing_virtual_packages(platform, &locked.virtual_packages);
    // The history date comes from the lock (its newest package), so the same lock gives the
    // same bytes in conda-meta.
    let newest_ms = locked
        .records
        .iter()
        .filter_map(|r| {
            serde_json::to_value(&r.package_record)
                .ok()?
                .get("timestamp")?
                .as_u64()
        })
        .max()
        .unwrap_or(0);
    let options = InstallOptions {
        requested_specs: Vec::new(),
        history_specs: locked
            .records
            .iter()
            .map(|r| r.package_record.name.as_normalized().to_owned())
            .collect(),
        command_line: format!("airlock env install --lock {}", request.lock.display()),
        variables: Vec::new(),
        history_date: Some(install::format_unix_seconds(newest_ms / 1000)),
        platform: Some(platform),
        progress: request.progress,
        pip_follows: false,
    };
    if artifacts.is_empty() {
        install::create(settings, &prefix, locked.records, &options, request.force).await?;
    } else {
        let names = conda_names(&locked.records);
        create_with_pip(settings, &prefix, locked.records, &options, |prefix| {
            pypi::install(prefix, &artifacts, &names)
        })
        .await?;
    }
    envs::register(&settings.environments_txt, &prefix)?;
    Ok(prefix)
}

/// Creates the environment at `prefix` from `records`, then runs its `pip:` step. The conda
/// packages go through the staging directory as usual; the pip step can only run once the
/// environment is at its final path (pip and uv write that path into scripts), so it follows
/// the rename. Until it has finished the environment carries the [`install::PIP_PENDING`]
/// mark and an environment it replaces (`--force`) waits aside: if the step fails the new
/// environment is removed and the old one put back; after a kill, the next run does the same
/// (`install::clean_stale_staging`).
async fn create_with_pip(
    settings: &Settings,
    prefix: &Path,
    records: Vec<RepoDataRecord>,
    options: &InstallOptions,
    pip: impl FnOnce(&Path) -> Result<()>,
) -> Result<()> {
    let backup = if prefix.exists() {
        let backup = install::backup_dir(prefix);
        fs_err::rename(prefix, &backup)?;
        Some(backup)
    } else {
        None
    };
    let options = InstallOptions {
        pip_follows: true,
        ..options.clone()
    };
    let mut result = install::create(settings, prefix, records, &options, false).await;
    if result.is_ok() {
        result = pip(prefix).and_then(|()| install::pip_done(prefix));
        if result.is_err()
            && let Err(e) = envs::remove(settings, prefix)
        {
            tracing::warn!("could not remove the incomplete environment: {e}");
        }
    }
    if let Some(backup) = backup {
        if result.is_ok() {
            fs_err::remove_dir_all(&backup)?;
        } else if !prefix.exists() {
            fs_err::rename(&backup, prefix)?;
        }
    }
    result
}

/// Offline mode and missing local channels give one clear sentence before any download.
fn check_lock_channels(settings: &Settings, records: &[RepoDataRecord]) -> Result<()> {
    for record in records {
        if record.url.scheme() == "file" {
            let exists = record.url.to_file_path().is_ok_and(|p| p.is_file());
            if !exists {
                return Err(EnvError::UnknownChannel {
                    channel: record.channel.clone().unwrap_or_default(),
                    url: record.url.to_string(),
                });
            }
        } else if settings.offline {
            return Err(EnvError::Offline {
                channel: record
                    .channel
                    .clone()
                    .unwrap_or_else(|| record.url.to_string()),
            });
        }
    }
    Ok(())
}

/// A lock made for a GPU node and installed on a CPU-only login node is fine (that is what
/// `--cuda` is for), but say so: the packages may not run here.
fn warn_missing_virtual_packages(platform: Subdir, locked: &[String]) {
    if platform != solve::current_platform() {
        return;
    }
    let Ok(host) = solve::virtual_packages(platform, None) else {
        return;
    };
    for entry in locked {
        let name = entry.split('=').next().unwrap_or_default();
        if !host.iter().any(|p| p.name.as_normalized() == name) {
            tracing::warn!(
                "the lock was made for a machine with `{entry}`, which this machine does not have; \
                 its packages may not run here"
            );
        }
    }
}
