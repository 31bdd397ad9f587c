//! `env export` in conda's shapes: `environment.yml` (with builds, `--no-builds` or
//! `--from-history`), `@EXPLICIT` URL lists, and a lock file of what is installed.

use std::fmt::Write as _;
use std::path::Path;

use rattler_conda_types::{GenericVirtualPackage, RepoDataRecord};

use crate::error::Result;
use crate::install::{history_specs, installed_records};
use crate::solve::{Solution, current_platform};

/// What goes into the dependency list of an exported `environment.yml`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Detail {
    /// `name=version=build`.
    Builds,
    /// `name=version`.
    NoBuilds,
    /// Only the specs the user asked for, from `conda-meta/history`.
    FromHistory,
}

fn channel_names(records: &[RepoDataRecord], alias: &url::Url) -> Vec<String> {
    let mut channels: Vec<String> = Vec::new();
    for record in records {
        let Some(channel) = record.channel.as_deref() else {
            continue;
        };
        let channel = channel.trim_end_matches('/');
        // Under the alias a channel is known by its name, as conda prints it.
        let shown = channel
            .strip_prefix(alias.as_str())
            .map_or_else(|| channel.to_owned(), str::to_owned);
        if !channels.contains(&shown) {
            channels.push(shown);
        }
    }
    channels
}

fn yaml_quote(s: &str) -> String {
    let plain = !s.is_empty()
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || "._-=<>!*,/+:~@ ".contains(c))
        && !s.starts_with(['-', ':', ' ', '@', '*'])
        && !s.contains(": ")
        && !s.ends_with(':');
    if plain {
        s.to_owned()
    } else {
        format!("'{}'", s.replace('\'', "''"))
    }
}

/// The exported `environment.yml` text.
pub fn yaml(prefix: &Path, name: &str, detail: Detail, alias: &url::Url) -> Result<String> {
    let records: Vec<RepoDataRecord> = installed_records(prefix)?
        .into_iter()
        .map(|r| r.repodata_record)
        .collect();
    let mut out = String::new();
    let _ = writeln!(out, "name: {}", yaml_quote(name));
    let channels = channel_names(&records, alias);
    if !channels.is_empty() {
        out.push_str("channels:\n");
        for c in &channels {
            let _ = writeln!(out, "  - {}", yaml_quote(c));
        }
    }
    out.push_str("dependencies:\n");
    let conda_names: Vec<String> = records
        .iter()
        .map(|r| crate::pip::normalize(r.package_record.name.as_normalized()))
        .collect();
    match detail {
        Detail::FromHistory => {
            for spec in history_specs(prefix)? {
                let _ = writeln!(out, "  - {}", yaml_quote(&spec));
            }
        }
        Detail::Builds | Detail::NoBuilds => {
            for record in &records {
                let p = &record.package_record;
                // Written by hand: `MatchSpec` display turns `name=1.0` into `name 1.0.*`.
                let line = if detail == Detail::Builds {
                    format!("{}={}={}", p.name.as_normalized(), p.version, p.build)
                } else {
                    format!("{}={}", p.name.as_normalized(), p.version)
                };
                let _ = writeln!(out, "  - {}", yaml_quote(&line));
            }
            let pip: Vec<String> = crate::pip::distributions(prefix)
                .into_iter()
                .filter(|(name, (_, installer))| {
                    installer != "conda" && !conda_names.contains(name)
                })
                .map(|(name, (version, _))| format!("{name}=={version}"))
                .collect();
            if !pip.is_empty() {
                out.push_str("  - pip:\n");
                for line in pip {
                    let _ = writeln!(out, "      - {}", yaml_quote(&line));
                }
            }
        }
    }
    let _ = writeln!(out, "prefix: {}", yaml_quote(&prefix.display().to_string()));
    Ok(out)
}

/// `conda list --explicit --md5`-style output: `@EXPLICIT` then one URL per package with its
/// hash.
pub fn explicit(prefix: &Path) -> Result<String> {
    let records = installed_records(prefix)?;
    let mut out = String::new();
    out.push_str("# This file may be used to create an environment using:\n");
    out.push_str("# $ conda create --name <env> --file <this file>\n");
    let _ = writeln!(out, "# platform: {}", current_platform());
    out.push_str("@EXPLICIT\n");
    for record in records {
        let r = &record.repodata_record;
        let hash = r
            .package_record
            .sha256
            .map(|h| format!("#sha256:{}", hex::encode(h)))
            .or_else(|| r.package_record.md5.map(|h| format!("#{}", hex::encode(h))))
            .unwrap_or_default();
        let _ = writeln!(out, "{}{hash}", r.url);
    }
    Ok(out)
}

/// A lock of exactly what is installed (platform of this machine), as pixi.lock v7 text.
pub fn lock(prefix: &Path, virtual_packages: Vec<GenericVirtualPackage>) -> Result<String> {
    let records: Vec<RepoDataRecord> = installed_records(prefix)?
        .into_iter()
        .map(|r| r.repodata_record)
        .collect();
    let mut channels = Vec::new();
    for r in &records {
        if let Some(c) = r.channel.as_deref()
            && let Ok(channel) = crate::solve::resolve_channel(
                c,
                &rattler_conda_types::ChannelConfig::default_with_root_dir(prefix.to_path_buf()),
            )
            && !channels.contains(&channel)
        {
            channels.push(channel);
        }
    }
    let solution = Solution {
        records,
        virtual_packages,
        channels,
        specs: Vec::new(),
    };
    // pip-installed wheels go in as `pypi:` packages when the environment recorded their URL
    // and hash (an install from a lock does); the others cannot be pinned from what is
    // installed, and the user hears which.
    let conda_names: Vec<String> = solution
        .records
        .iter()
        .map(|r| crate::pip::normalize(r.package_record.name.as_normalized()))
        .collect();
    let (wheels, unpinned) = crate::pypi::installed_wheels(prefix, &conda_names);
    if !unpinned.is_empty() {
        tracing::warn!(
            "the exported lock leaves out {} (installed by pip from an index or a source tree: the \
             environment keeps no URL and hash for them); `airlock env lock -f environment.yml` \
             locks its pip: section",
            unpinned.join(", ")
        );
    }
    let platform = current_platform();
    let pypi = crate::lock::PypiSection {
        indexes: rattler_lock::PypiIndexes::default(),
        packages: vec![(platform, wheels)],
    };
    let has_wheels = pypi.packages.iter().any(|(_, p)| !p.is_empty());
    let lock = crate::lock::build_with_pypi(&[(platform, solution)], has_wheels.then_some(&pypi))?;
    lock.render_to_string()
        .map_err(|e| crate::error::EnvError::Lock {
            path: prefix.to_path_buf(),
            message: e.to_string(),
        })
}
