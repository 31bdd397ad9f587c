//! Settings: `config.toml`, `~/.condarc` and overrides resolved into one plain struct before
//! any command runs.
//!
//! Precedence, highest first: explicit overrides (flags and `AIRLOCK_*` variables, gathered by
//! the binary), `$XDG_CONFIG_HOME/airlock/config.toml`, `~/.condarc`, built-in defaults.

use std::path::{Path, PathBuf};

use serde::Deserialize;
use url::Url;

use crate::error::{EnvError, Result};

/// The default channel alias: where bare channel names such as `conda-forge` live.
pub const DEFAULT_CHANNEL_ALIAS: &str = "https://conda.anaconda.org/";

/// How thoroughly a cached package is checked before it is linked.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum Verify {
    /// Trust the cache.
    Skip,
    /// Check that every file exists.
    Fast,
    /// Hash every file once (or trust a freshly extracted archive whose hash was checked)
    /// and stamp it; later only compare size, mtime and inode with the stamp, hashing again
    /// when they differ. A corrupt entry is fetched again. See [`crate::verify`].
    #[default]
    Stamp,
    /// Check size and SHA-256 of every file on every install; a corrupt entry is fetched again.
    Full,
}

/// `$XDG_CONFIG_HOME/airlock/config.toml`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConfigFile {
    /// Default channels when none are given.
    pub channels: Option<Vec<String>>,
    /// Prefix for bare channel names.
    pub channel_alias: Option<String>,
    /// Where named environments are created.
    pub envs_dir: Option<PathBuf>,
    /// Refuse remote channels.
    pub offline: Option<bool>,
    /// The writable package cache.
    pub pkgs_dir: Option<PathBuf>,
    /// Read-only shared package cache layers (an admin's cache on a multi-user server).
    pub pkgs_layers: Option<Vec<PathBuf>>,
    /// How cached packages are checked: `skip`, `fast`, `stamp` (default) or `full`.
    pub verify: Option<Verify>,
}

impl ConfigFile {
    /// Reads `path`; a missing file is an empty config.
    pub fn load(path: &Path) -> Result<Self> {
        let text = match fs_err::read_to_string(path) {
            Ok(text) => text,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Self::default()),
            Err(e) => return Err(e.into()),
        };
        toml::from_str(&text).map_err(|e| EnvError::Config {
            path: path.to_path_buf(),
            line: e.span().map_or(0, |span| line_of_offset(&text, span.start)),
            message: e.message().to_owned(),
        })
    }
}

/// The parts of `~/.condarc` airlock honours.
#[derive(Debug, Default, Deserialize)]
pub struct Condarc {
    /// Default channels.
    #[serde(default)]
    pub channels: Vec<String>,
    /// Prefix for bare channel names.
    pub channel_alias: Option<String>,
    /// Directories searched for named environments; the first is where conda creates them.
    #[serde(default)]
    pub envs_dirs: Vec<PathBuf>,
    /// Package caches.
    #[serde(default)]
    pub pkgs_dirs: Vec<PathBuf>,
}

impl Condarc {
    /// Reads `path`; a missing file is an empty condarc.
    pub fn load(path: &Path) -> Result<Self> {
        let text = match fs_err::read_to_string(path) {
            Ok(text) => text,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Self::default()),
            Err(e) => return Err(e.into()),
        };
        if text.trim().is_empty() {
            return Ok(Self::default());
        }
        serde_yaml::from_str(&text).map_err(|e| EnvError::Config {
            path: path.to_path_buf(),
            line: e.location().map_or(0, |l| l.line()),
            message: e.to_string(),
        })
    }
}

/// 1-based line of a byte offset.
pub(crate) fn line_of_offset(text: &str, offset: usize) -> usize {
    text.get(..offset)
        .map_or(0, |before| before.matches('\n').count() + 1)
}

/// Values the binary collects from flags and `AIRLOCK_*` variables; `None` means "not given".
#[derive(Debug, Default, Clone)]
pub struct Overrides {
    /// `AIRLOCK_CHANNEL_ALIAS`.
    pub channel_alias: Option<String>,
    /// `AIRLOCK_ENVS_DIR`.
    pub envs_dir: Option<PathBuf>,
    /// `AIRLOCK_PKGS_DIR`.
    pub pkgs_dir: Option<PathBuf>,
    /// `AIRLOCK_OFFLINE`.
    pub offline: Option<bool>,
    /// `AIRLOCK_VERIFY`.
    pub verify: Option<Verify>,
}

/// Where the binary found things, before any config is read.
#[derive(Debug, Clone)]
pub struct Locations {
    /// `$HOME`.
    pub home: PathBuf,
    /// `$XDG_DATA_HOME/airlock`.
    pub data_dir: PathBuf,
    /// `$XDG_CACHE_HOME/airlock`.
    pub cache_dir: PathBuf,
    /// `$XDG_CONFIG_HOME/airlock/config.toml`.
    pub config_file: PathBuf,
    /// `~/.condarc` (or `$CONDARC`).
    pub condarc: PathBuf,
    /// The working directory, for relative channel paths.
    pub cwd: PathBuf,
}

/// Everything the env commands need, resolved.
#[derive(Debug, Clone)]
pub struct Settings {
    /// Channels used when none are given on the command line or in `environment.yml`.
    pub default_channels: Vec<String>,
    /// Prefix for bare channel names.
    pub channel_alias: Url,
    /// Where `-n NAME` environments are created.
    pub envs_dir: PathBuf,
    /// Further directories where `-n NAME` is looked up (conda's `envs_dirs`).
    pub extra_envs_dirs: Vec<PathBuf>,
    /// The writable package cache.
    pub pkgs_dir: PathBuf,
    /// Read-only shared cache layers.
    pub pkgs_layers: Vec<PathBuf>,
    /// Refuse remote channels.
    pub offline: bool,
    /// How cached packages are checked.
    pub verify: Verify,
    /// `~/.conda/environments.txt`.
    pub environments_txt: PathBuf,
    /// Repodata cache.
    pub repodata_cache: PathBuf,
    /// For relative channel paths.
    pub cwd: PathBuf,
}

impl Settings {
    /// Reads the config files and applies `overrides`.
    pub fn resolve(locations: &Locations, overrides: &Overrides) -> Result<Self> {
        let file = ConfigFile::load(&locations.config_file)?;
        let condarc = Condarc::load(&locations.condarc)?;
        let alias_text = overrides
            .channel_alias
            .clone()
            .or(file.channel_alias)
            .or(condarc.channel_alias)
            .unwrap_or_else(|| DEFAULT_CHANNEL_ALIAS.to_owned());
        let channel_alias = parse_alias(&alias_text)?;
        let default_channels = file
            .channels
            .or_else(|| (!condarc.channels.is_empty()).then(|| condarc.channels.clone()))
            .unwrap_or_else(|| vec!["conda-forge".to_owned()]);
        let envs_dir = overrides
            .envs_dir
            .clone()
            .or(file.envs_dir)
            .unwrap_or_else(|| locations.data_dir.join("envs"));
        let pkgs_dir = overrides
            .pkgs_dir
            .clone()
            .or(file.pkgs_dir)
            .unwrap_or_else(|| locations.cache_dir.join("pkgs"));
        let mut pkgs_layers = file.pkgs_layers.unwrap_or_default();
        pkgs_layers.extend(condarc.pkgs_dirs.iter().cloned());
        pkgs_layers.retain(|p| p != &pkgs_dir);
        Ok(Self {
            default_channels,
            channel_alias,
            envs_dir,
            extra_envs_dirs: condarc.envs_dirs,
            pkgs_dir,
            pkgs_layers,
            offline: overrides.offline.or(file.offline).unwrap_or(false),
            verify: overrides.verify.or(file.verify).unwrap_or_default(),
            environments_txt: locations.home.join(".conda").join("environments.txt"),
            repodata_cache: locations.cache_dir.join("repodata"),
            cwd: locations.cwd.clone(),
        })
    }

    /// The rattler channel configuration for this alias.
    pub fn channel_config(&self) -> rattler_conda_types::ChannelConfig {
        rattler_conda_types::ChannelConfig {
            channel_alias: self.channel_alias.clone(),
            root_dir: self.cwd.clone(),
        }
    }
}

/// Parses a channel alias; a bare path becomes a `file://` URL and a trailing slash is ensured,
/// since `Url::join` would otherwise drop the last segment.
pub fn parse_alias(text: &str) -> Result<Url> {
    let invalid = |message: String| EnvError::InvalidChannel {
        channel: text.to_owned(),
        message,
    };
    let mut url = if text.starts_with('/') {
        Url::from_directory_path(text).map_err(|()| invalid("not an absolute path".to_owned()))?
    } else {
        Url::parse(text).map_err(|e| invalid(e.to_string()))?
    };
    if !url.path().ends_with('/') {
        let path = format!("{}/", url.path());
        url.set_path(&path);
    }
    Ok(url)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn alias_gets_trailing_slash() {
        let url = parse_alias("file:///tmp/chan").unwrap();
        assert_eq!(url.as_str(), "file:///tmp/chan/");
        let url = parse_alias("/tmp/chan").unwrap();
        assert_eq!(url.as_str(), "file:///tmp/chan/");
    }

    #[test]
    fn config_error_names_line() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("config.toml");
        std::fs::write(&path, "channels = [\"a\"]\nbogus = 1\n").unwrap();
        let err = ConfigFile::load(&path).unwrap_err().to_string();
        assert!(err.contains("config.toml:2"), "{err}");
    }
}
