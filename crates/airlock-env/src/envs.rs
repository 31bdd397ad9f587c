//! Finding, listing, registering and removing environments.
//!
//! Named environments live in the configured envs directory; every environment airlock creates
//! is also appended to `~/.conda/environments.txt`, so `conda env list` and `conda activate`
//! see it, and environments conda knows are listed here too.

use std::path::{Path, PathBuf};

use serde::Serialize;

use crate::config::Settings;
use crate::error::{EnvError, Result};

/// Which environment a command means: `-n NAME` or `-p PREFIX`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    /// A name, looked up in the envs directories.
    Name(String),
    /// A directory: a conda environment or a venv.
    Prefix(PathBuf),
}

impl std::fmt::Display for Target {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Name(n) => f.write_str(n),
            Self::Prefix(p) => write!(f, "{}", p.display()),
        }
    }
}

/// Checks an environment name: no path separators, no leading dot (staging dirs use one).
pub fn validate_name(name: &str) -> Result<()> {
    let ok = !name.is_empty()
        && !name.starts_with('.')
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'));
    if ok {
        Ok(())
    } else {
        Err(EnvError::InvalidName(name.to_owned()))
    }
}

fn absolute(settings: &Settings, path: &Path) -> PathBuf {
    if path.is_absolute() {
        path.to_path_buf()
    } else {
        settings.cwd.join(path)
    }
}

/// Where a new environment for `target` goes.
pub fn new_prefix(settings: &Settings, target: &Target) -> Result<PathBuf> {
    match target {
        Target::Name(name) => {
            validate_name(name)?;
            Ok(settings.envs_dir.join(name))
        }
        Target::Prefix(path) => Ok(absolute(settings, path)),
    }
}

/// Whether `path` looks like an environment (conda's `conda-meta` or a venv).
pub fn is_environment(path: &Path) -> bool {
    path.join("conda-meta").is_dir() || path.join("pyvenv.cfg").is_file()
}

/// The prefix of an existing environment (not one whose `pip:` step has not finished).
pub fn find(settings: &Settings, target: &Target) -> Result<PathBuf> {
    // A killed run's leftovers in the user's own envs directory go first (an environment
    // whose `pip:` step was interrupted, with the one it replaced put back).
    crate::install::clean_stale_staging(&settings.envs_dir);
    let prefix = find_any(settings, target)?;
    if crate::install::pip_pending(&prefix) {
        return Err(EnvError::Incomplete(prefix));
    }
    Ok(prefix)
}

fn find_any(settings: &Settings, target: &Target) -> Result<PathBuf> {
    match target {
        Target::Prefix(path) => {
            let path = absolute(settings, path);
            if path.is_dir() {
                Ok(path)
            } else {
                Err(EnvError::MissingEnvironment(path.display().to_string()))
            }
        }
        Target::Name(name) => {
            validate_name(name)?;
            let candidates = std::iter::once(&settings.envs_dir)
                .chain(settings.extra_envs_dirs.iter())
                .map(|d| d.join(name));
            for candidate in candidates {
                if is_environment(&candidate) {
                    return Ok(candidate);
                }
            }
            for registered in registered(&settings.environments_txt) {
                if registered.file_name().is_some_and(|n| n == name.as_str())
                    && is_environment(&registered)
                {
                    return Ok(registered);
                }
            }
            Err(EnvError::MissingEnvironment(name.clone()))
        }
    }
}

/// The environments listed in `environments.txt`.
pub fn registered(environments_txt: &Path) -> Vec<PathBuf> {
    fs_err::read_to_string(environments_txt)
        .map(|t| {
            t.lines()
                .map(str::trim)
                .filter(|l| !l.is_empty())
                .map(PathBuf::from)
                .collect()
        })
        .unwrap_or_default()
}

/// Adds `prefix` to `environments.txt` (once), writing atomically.
pub fn register(environments_txt: &Path, prefix: &Path) -> Result<()> {
    let mut entries = registered(environments_txt);
    if entries.iter().any(|e| e == prefix) {
        return Ok(());
    }
    entries.push(prefix.to_path_buf());
    write_registry(environments_txt, &entries)
}

/// Removes `prefix` from `environments.txt`.
pub fn unregister(environments_txt: &Path, prefix: &Path) -> Result<()> {
    let mut entries = registered(environments_txt);
    let before = entries.len();
    entries.retain(|e| e != prefix);
    if entries.len() == before {
        return Ok(());
    }
    write_registry(environments_txt, &entries)
}

fn write_registry(path: &Path, entries: &[PathBuf]) -> Result<()> {
    let dir = path
        .parent()
        .ok_or_else(|| EnvError::io(path, std::io::Error::other("no parent directory")))?;
    fs_err::create_dir_all(dir)?;
    let text: String = entries.iter().fold(String::new(), |mut text, e| {
        text.push_str(&e.to_string_lossy());
        text.push('\n');
        text
    });
    write_atomic(path, text.as_bytes())
}

/// Writes `bytes` to a temp file beside `path`, fsyncs and renames.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    use std::io::Write as _;
    let dir = path
        .parent()
        .ok_or_else(|| EnvError::io(path, std::io::Error::other("no parent directory")))?;
    // Created 0666 less the umask, as conda and pixi write these files (history, locks,
    // environments.txt): they are meant for the team, not secrets.
    let mut builder = tempfile::Builder::new();
    #[cfg(unix)]
    builder.permissions(std::os::unix::fs::PermissionsExt::from_mode(0o666));
    let mut tmp = builder.tempfile_in(dir).map_err(|e| EnvError::io(dir, e))?;
    tmp.write_all(bytes).map_err(|e| EnvError::io(path, e))?;
    tmp.as_file()
        .sync_all()
        .map_err(|e| EnvError::io(path, e))?;
    tmp.persist(path).map_err(|e| EnvError::io(path, e.error))?;
    Ok(())
}

/// One row of `airlock env list`.
#[derive(Debug, Clone, Serialize)]
pub struct EnvironmentInfo {
    /// The name (the directory's name for environments outside the envs directory).
    pub name: String,
    /// The prefix.
    pub path: PathBuf,
    /// The `python` package version, if installed.
    pub python: Option<String>,
    /// How many conda packages are installed.
    pub packages: usize,
    /// Whether airlock's envs directory holds it.
    pub managed: bool,
}

/// All environments: airlock's envs directory, conda's `envs_dirs`, then `environments.txt`.
pub fn list(settings: &Settings) -> Result<Vec<EnvironmentInfo>> {
    crate::install::clean_stale_staging(&settings.envs_dir);
    let mut prefixes: Vec<PathBuf> = Vec::new();
    for dir in std::iter::once(&settings.envs_dir).chain(settings.extra_envs_dirs.iter()) {
        let Ok(entries) = fs_err::read_dir(dir) else {
            continue;
        };
        let mut found: Vec<PathBuf> = entries
            .flatten()
            .map(|e| e.path())
            .filter(|p| {
                !p.file_name()
                    .is_some_and(|n| n.to_string_lossy().starts_with('.'))
                    && is_environment(p)
                    && !crate::install::pip_pending(p)
            })
            .collect();
        found.sort();
        prefixes.extend(found);
    }
    for p in registered(&settings.environments_txt) {
        if p.is_dir() && !prefixes.contains(&p) {
            prefixes.push(p);
        }
    }
    Ok(prefixes
        .into_iter()
        .map(|path| describe(settings, path))
        .collect())
}

fn describe(settings: &Settings, path: PathBuf) -> EnvironmentInfo {
    let mut python = None;
    let mut packages = 0;
    if let Ok(entries) = fs_err::read_dir(path.join("conda-meta")) {
        for entry in entries.flatten() {
            let file = entry.file_name();
            let file = file.to_string_lossy();
            let Some(stem) = file.strip_suffix(".json") else {
                continue;
            };
            packages += 1;
            // `name-version-build.json`: the name may contain dashes, version and build don't.
            let mut parts = stem.rsplitn(3, '-');
            let (_build, version, name) = (parts.next(), parts.next(), parts.next());
            if name == Some("python") {
                python = version.map(str::to_owned);
            }
        }
    }
    EnvironmentInfo {
        name: path
            .file_name()
            .map_or_else(String::new, |n| n.to_string_lossy().into_owned()),
        managed: path.parent() == Some(settings.envs_dir.as_path()),
        path,
        python,
        packages,
    }
}

/// Removes an environment: it is first renamed out of the way so no half environment is ever
/// visible under its name, then deleted and unregistered.
pub fn remove(settings: &Settings, prefix: &Path) -> Result<()> {
    if !prefix.join("conda-meta").is_dir() {
        return Err(EnvError::MissingEnvironment(prefix.display().to_string()));
    }
    let trash = crate::install::staging_dir(prefix)?;
    fs_err::rename(prefix, &trash)?;
    fs_err::remove_dir_all(&trash)?;
    unregister(&settings.environments_txt, prefix)?;
    Ok(())
}

/// Removes packages from the writable cache layer that no known environment uses (shared
/// layers are never touched). Returns the removed directories.
pub fn prune_cache(settings: &Settings) -> Result<Vec<PathBuf>> {
    let mut used: Vec<PathBuf> = Vec::new();
    for env in list(settings)? {
        for record in crate::install::installed_records(&env.path).unwrap_or_default() {
            if let Some(dir) = record.extracted_package_dir {
                used.push(dir);
            }
        }
    }
    let mut removed = Vec::new();
    let Ok(entries) = fs_err::read_dir(&settings.pkgs_dir) else {
        return Ok(removed);
    };
    for entry in entries.flatten() {
        let path = entry.path();
        if !path.is_dir() || !path.join("info").join("index.json").is_file() {
            continue;
        }
        if used.iter().any(|u| u == &path) {
            continue;
        }
        fs_err::remove_dir_all(&path)?;
        let lock = path.with_extension(path.extension().map_or_else(
            || "lock".to_owned(),
            |e| format!("{}.lock", e.to_string_lossy()),
        ));
        let _ = fs_err::remove_file(lock);
        crate::verify::remove_stamp(&settings.pkgs_dir, &path);
        removed.push(path);
    }
    Ok(removed)
}
