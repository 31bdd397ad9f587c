//! `pixi.lock` (format v7) writing and reading.
//!
//! A lock has one environment (`default`) with one entry per platform; each platform records
//! the virtual packages the solve assumed (`__glibc`, `__cuda`), so a CPU-only login node can
//! lock for a GPU node and the lock says so. The `pip:` section of the yml is locked as `pypi:`
//! packages per platform, with the index options in the environment's `indexes:`/`find-links:`
//! (see [`crate::pypi`]).

use std::path::Path;

use rattler_conda_types::{GenericVirtualPackage, RepoDataRecord, Subdir};
use rattler_lock::{
    CondaPackageData, LockFile, PlatformData, PlatformName, PypiIndexes, PypiPackageData,
};

use crate::error::{EnvError, Result};
use crate::solve::Solution;

/// The environment name used inside the lock file.
pub const LOCK_ENVIRONMENT: &str = rattler_lock::DEFAULT_ENVIRONMENT_NAME;

/// `name=version=build` for a virtual package.
pub fn virtual_package_string(package: &GenericVirtualPackage) -> String {
    format!(
        "{}={}={}",
        package.name.as_normalized(),
        package.version,
        package.build_string
    )
}

/// The locked `pip:` section: the index options and the packages of each platform.
#[derive(Debug, Clone, Default)]
pub struct PypiSection {
    /// `--index-url`, `--extra-index-url`, `--find-links` (no index with `--no-index`).
    pub indexes: PypiIndexes,
    /// The resolved wheels per platform.
    pub packages: Vec<(Subdir, Vec<PypiPackageData>)>,
}

/// Builds a lock from one solution per platform.
pub fn build(solutions: &[(Subdir, Solution)]) -> Result<LockFile> {
    build_with_pypi(solutions, None)
}

/// Builds a lock from one solution per platform and, when the yml has one, its `pip:` section.
pub fn build_with_pypi(
    solutions: &[(Subdir, Solution)],
    pypi: Option<&PypiSection>,
) -> Result<LockFile> {
    let lock_err = |message: String| EnvError::Lock {
        path: "pixi.lock".into(),
        message,
    };
    let platforms = solutions
        .iter()
        .map(|(subdir, solution)| {
            let mut virtual_packages: Vec<String> = solution
                .virtual_packages
                .iter()
                .map(virtual_package_string)
                .collect();
            virtual_packages.sort();
            PlatformData {
                name: PlatformName::from(subdir),
                subdir: *subdir,
                virtual_packages,
            }
        })
        .collect();
    let mut builder = LockFile::builder()
        .with_platforms(platforms)
        .map_err(|e| lock_err(e.to_string()))?;
    let mut channels: Vec<String> = Vec::new();
    for (_, solution) in solutions {
        for channel in &solution.channels {
            let url = channel.base_url.url().to_string();
            if !channels.contains(&url) {
                channels.push(url);
            }
        }
    }
    builder.set_channels(LOCK_ENVIRONMENT, channels);
    for (subdir, solution) in solutions {
        let name = PlatformName::from(subdir);
        builder
            .add_environment_platform(LOCK_ENVIRONMENT, &name)
            .map_err(|e| lock_err(e.to_string()))?;
        for record in &solution.records {
            builder
                .add_conda_package(
                    LOCK_ENVIRONMENT,
                    &name,
                    CondaPackageData::from(record.clone()),
                )
                .map_err(|e| lock_err(e.to_string()))?;
        }
    }
    if let Some(pypi) = pypi {
        builder.set_pypi_indexes(LOCK_ENVIRONMENT, pypi.indexes.clone());
        for (subdir, packages) in &pypi.packages {
            let name = PlatformName::from(subdir);
            for package in packages {
                builder
                    .add_pypi_package(LOCK_ENVIRONMENT, &name, package.clone())
                    .map_err(|e| lock_err(e.to_string()))?;
            }
        }
    }
    Ok(builder.finish())
}

/// Writes `lock` to `path` atomically.
pub fn write(lock: &LockFile, path: &Path) -> Result<()> {
    let text = lock.render_to_string().map_err(|e| EnvError::Lock {
        path: path.to_path_buf(),
        message: e.to_string(),
    })?;
    crate::envs::write_atomic(path, text.as_bytes())
}

/// What a lock holds for one platform.
#[derive(Debug, Clone)]
pub struct LockedPlatform {
    /// The records, sorted by name.
    pub records: Vec<RepoDataRecord>,
    /// The virtual packages recorded at lock time.
    pub virtual_packages: Vec<String>,
    /// The channels.
    pub channels: Vec<String>,
    /// The `pypi:` packages, sorted by name.
    pub pypi: Vec<PypiPackageData>,
}

/// Reads the records for `platform` from the lock at `path`.
pub fn read(path: &Path, platform: Subdir) -> Result<LockedPlatform> {
    let err = |message: String| EnvError::Lock {
        path: path.to_path_buf(),
        message,
    };
    if !path.is_file() {
        return Err(err("no such file".to_owned()));
    }
    let lock = LockFile::from_path(path).map_err(|e| err(crate::install::error_chain(&e)))?;
    let (_, environment) = lock
        .environments()
        .find(|(name, _)| *name == LOCK_ENVIRONMENT)
        .or_else(|| lock.environments().next())
        .ok_or_else(|| err("the lock has no environment".to_owned()))?;
    let name = platform.to_string();
    let locked_platform = lock.platform(&name).ok_or_else(|| {
        let known: Vec<String> = lock.platforms().map(|p| p.name().to_string()).collect();
        err(format!(
            "no packages for platform {name} (the lock has: {}); lock again with --platform {name}",
            known.join(", ")
        ))
    })?;
    let virtual_packages = locked_platform.virtual_packages().to_vec();
    let mut records = environment
        .conda_repodata_records(locked_platform)
        .map_err(|e| err(e.to_string()))?
        .unwrap_or_default();
    records.sort_by(|a, b| {
        a.package_record
            .name
            .as_normalized()
            .cmp(b.package_record.name.as_normalized())
    });
    // A lock written elsewhere may carry credentials in its URLs: used for the downloads,
    // never copied into the environment's records (`credentials`).
    for record in &mut records {
        if let Ok(url) = url::Url::parse(&crate::credentials::strip(record.url.as_str())) {
            record.url = url;
        }
        if let Some(channel) = &mut record.channel {
            *channel = crate::credentials::strip(channel);
        }
    }
    let mut pypi: Vec<PypiPackageData> = environment
        .pypi_packages(locked_platform)
        .map(|packages| packages.cloned().collect())
        .unwrap_or_default();
    pypi.sort_by(|a, b| a.name().cmp(b.name()));
    let channels = environment
        .channels()
        .iter()
        .map(|c| crate::credentials::strip(&c.url))
        .collect();
    Ok(LockedPlatform {
        records,
        virtual_packages,
        channels,
        pypi,
    })
}
