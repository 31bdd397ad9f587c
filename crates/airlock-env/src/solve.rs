//! Channels, repodata, virtual packages and the solve, as in upstream `rattler-bin create`:
//! gateway query (recursive) → virtual packages → resolvo.

use std::path::PathBuf;
use std::sync::Arc;

pub use rattler_conda_types::Subdir;
use rattler_conda_types::{
    Channel, ChannelConfig, GenericVirtualPackage, MatchSpec, ParseStrictness, RepoDataRecord,
};
use rattler_repodata_gateway::{Gateway, GatewayError};
use rattler_solve::{SolveError, SolverImpl as _, SolverTask};
use rattler_virtual_packages::{Override, VirtualPackageOverrides, VirtualPackages};

use crate::config::Settings;
use crate::error::{EnvError, Result};

/// What to solve.
#[derive(Debug, Clone)]
pub struct SolveRequest {
    /// The specs, as written by the user.
    pub specs: Vec<String>,
    /// Channels in priority order, as written (names, URLs or paths).
    pub channels: Vec<String>,
    /// The target platform.
    pub platform: Subdir,
    /// `--cuda VERSION`: overrides detection (like `CONDA_OVERRIDE_CUDA`).
    pub cuda: Option<String>,
    /// Records to prefer (the installed ones, on update).
    pub locked: Vec<RepoDataRecord>,
}

/// The result of a solve.
#[derive(Debug, Clone)]
pub struct Solution {
    /// The records to install, sorted by name.
    pub records: Vec<RepoDataRecord>,
    /// The virtual packages the solve assumed.
    pub virtual_packages: Vec<GenericVirtualPackage>,
    /// The channels, resolved.
    pub channels: Vec<Channel>,
    /// The parsed specs, with their channels resolved against the configured alias.
    pub specs: Vec<MatchSpec>,
}

/// Parses a platform name.
pub fn parse_platform(text: &str) -> Result<Subdir> {
    text.parse::<Subdir>()
        .map_err(|_| EnvError::UnknownPlatform(text.to_owned()))
}

/// The platform of this machine.
pub fn current_platform() -> Subdir {
    Subdir::current().unwrap_or(Subdir::Linux64)
}

/// Resolves a channel name, URL or path against the configured alias.
/// Credentials in a URL are taken out here and kept for the HTTP client only
/// ([`crate::credentials`]): the channel, and every record of it, has the clean URL.
pub fn resolve_channel(text: &str, config: &ChannelConfig) -> Result<Channel> {
    let text = crate::credentials::strip(text);
    Channel::from_str(&text, config).map_err(|e| EnvError::InvalidChannel {
        channel: text.clone(),
        message: crate::credentials::redact(&e.to_string()),
    })
}

/// Parses specs and re-resolves `channel::pkg` channels through our alias: the upstream parser
/// resolves them against anaconda.org.
pub fn parse_specs(specs: &[String], config: &ChannelConfig) -> Result<Vec<MatchSpec>> {
    specs
        .iter()
        .map(|text| {
            let mut spec = MatchSpec::from_str(text, ParseStrictness::Lenient).map_err(|e| {
                EnvError::InvalidSpec {
                    spec: text.clone(),
                    message: e.to_string(),
                }
            })?;
            if let Some(channel) = spec.channel.take() {
                let written = text.split("::").next().unwrap_or_default();
                let resolved = if written.contains("://") || written.starts_with('/') {
                    resolve_channel(written, config)?
                } else {
                    resolve_channel(channel.name(), config)?
                };
                spec.channel = Some(Arc::new(resolved));
            }
            Ok(spec)
        })
        .collect()
}

/// Checks that each channel can exist before asking the gateway, so a typo gets a clear
/// sentence: a local channel must be a directory with `noarch/repodata.json`, and offline mode
/// refuses remote ones.
pub fn check_channels(channels: &[(String, Channel)], settings: &Settings) -> Result<()> {
    for (written, channel) in channels {
        let url = channel.base_url.url();
        if url.scheme() == "file" {
            let Ok(dir) = url.to_file_path() else {
                return Err(EnvError::InvalidChannel {
                    channel: written.clone(),
                    message: format!("{url} is not a local path"),
                });
            };
            if !dir.join("noarch").join("repodata.json").is_file() {
                return Err(EnvError::UnknownChannel {
                    channel: written.clone(),
                    url: url.to_string(),
                });
            }
        } else if settings.offline {
            return Err(EnvError::Offline {
                channel: written.clone(),
            });
        }
    }
    Ok(())
}

/// A gateway with the repodata cache and package cache of `settings`.
pub fn gateway(settings: &Settings) -> Gateway {
    Gateway::builder()
        .with_client(rattler_networking::LazyClient::new(
            crate::credentials::client,
        ))
        .with_cache_dir(settings.repodata_cache.clone())
        .with_package_cache(crate::install::package_cache(settings))
        .finish()
}

/// Detects the virtual packages for `platform`, honouring `CONDA_OVERRIDE_*` and `cuda`.
pub fn virtual_packages(
    platform: Subdir,
    cuda: Option<&str>,
) -> Result<Vec<GenericVirtualPackage>> {
    let mut overrides = VirtualPackageOverrides::from_env();
    if let Some(cuda) = cuda {
        overrides.cuda = Some(Override::String(cuda.to_owned()));
    }
    let detected = VirtualPackages::detect_for_platform(platform, &overrides, None)
        .map_err(|e| EnvError::VirtualPackages(e.to_string()))?;
    Ok(detected.into_generic_virtual_packages().collect())
}

/// Loads repodata and solves.
pub async fn solve(settings: &Settings, request: &SolveRequest) -> Result<Solution> {
    // Before anything in rattler touches rayon's global pool (see the function).
    crate::install::size_link_pool();
    let config = settings.channel_config();
    let specs = parse_specs(&request.specs, &config)?;
    let mut written: Vec<String> = request.channels.clone();
    if written.is_empty() {
        written.clone_from(&settings.default_channels);
    }
    let mut channels: Vec<(String, Channel)> = Vec::new();
    for text in &written {
        let channel = resolve_channel(text, &config)?;
        if !channels.iter().any(|(_, c)| c.base_url == channel.base_url) {
            channels.push((crate::credentials::strip(text), channel));
        }
    }
    for spec in &specs {
        if let Some(channel) = &spec.channel
            && !channels.iter().any(|(_, c)| c.base_url == channel.base_url)
        {
            channels.push((channel.name().to_owned(), (**channel).clone()));
        }
    }
    check_channels(&channels, settings)?;
    let gateway = gateway(settings);
    let platforms = if request.platform == Subdir::NoArch {
        vec![Subdir::NoArch]
    } else {
        vec![request.platform, Subdir::NoArch]
    };
    tracing::info!(
        "loading repodata from {} channel(s) for {}",
        channels.len(),
        request.platform
    );
    let repodata = gateway
        .query(
            channels.iter().map(|(_, c)| c.clone()),
            platforms.clone(),
            specs.clone(),
        )
        .recursive(true)
        .execute()
        .await
        .map_err(|e| gateway_error(&e, &channels))?
        .repodata;
    let virtual_packages = virtual_packages(request.platform, request.cuda.as_deref())?;
    tracing::info!(
        "solving {} spec(s) against {} records",
        specs.len(),
        repodata
            .iter()
            .map(rattler_repodata_gateway::RepoData::len)
            .sum::<usize>()
    );
    // For a failed solve, in the user's words: which requested names the channels do not have
    // at all, and which have no version the spec accepts.
    let suspects = unmatched_specs(&specs, &repodata);
    let task_specs = specs.clone();
    let task_virtual = virtual_packages.clone();
    let locked = request.locked.clone();
    let records = tokio::task::spawn_blocking(move || {
        let task = SolverTask {
            specs: task_specs,
            virtual_packages: task_virtual,
            locked_packages: locked.iter().collect(),
            ..SolverTask::from_iter(&repodata)
        };
        rattler_solve::resolvo::Solver.solve(task)
    })
    .await
    .map_err(|e| EnvError::Solve(e.to_string()))?;
    let mut records = match records {
        Ok(solved) => solved.records,
        Err(SolveError::Unsolvable(reasons)) => {
            // The gateway returns only the records a spec accepts: ask again by name alone to
            // tell "no such package" from "no such version".
            if !suspects.is_empty() {
                let names: Vec<MatchSpec> = suspects
                    .iter()
                    .filter_map(|s| s.name.as_exact().cloned().map(MatchSpec::from))
                    .collect();
                if let Ok(found) = gateway
                    .query(channels.iter().map(|(_, c)| c.clone()), platforms, names)
                    .recursive(false)
                    .execute()
                    .await
                {
                    let text = unavailable(&suspects, &found.repodata, &channels, request.platform);
                    return Err(EnvError::Unavailable(text.join("\n")));
                }
            }
            return Err(EnvError::Unsatisfiable(reasons.join("\n")));
        }
        Err(other) => return Err(EnvError::Solve(other.to_string())),
    };
    records.sort_by(|a, b| {
        a.package_record
            .name
            .as_normalized()
            .cmp(b.package_record.name.as_normalized())
    });
    Ok(Solution {
        records,
        virtual_packages,
        channels: channels.into_iter().map(|(_, c)| c).collect(),
        specs,
    })
}

/// The requested specs (by exact name) that no record of `repodata` satisfies.
fn unmatched_specs(
    specs: &[MatchSpec],
    repodata: &[rattler_repodata_gateway::RepoData],
) -> Vec<MatchSpec> {
    use rattler_conda_types::Matches as _;
    specs
        .iter()
        .filter(|spec| {
            spec.name.as_exact().is_some()
                && !repodata
                    .iter()
                    .flat_map(rattler_repodata_gateway::RepoData::iter)
                    .any(|r| spec.matches(&r.package_record))
        })
        .cloned()
        .collect()
}

/// For each spec no record satisfies, in the user's words, given every record of its name
/// (`repodata`): the package does not exist in the channels, or none of its versions fits
/// (with the versions there are).
fn unavailable(
    specs: &[MatchSpec],
    repodata: &[rattler_repodata_gateway::RepoData],
    channels: &[(String, Channel)],
    platform: Subdir,
) -> Vec<String> {
    let names: Vec<String> = channels.iter().map(|(w, _)| w.clone()).collect();
    let mut out = Vec::new();
    for spec in specs {
        let Some(name) = spec.name.as_exact() else {
            continue;
        };
        let mut versions: Vec<&rattler_conda_types::Version> = repodata
            .iter()
            .flat_map(rattler_repodata_gateway::RepoData::iter)
            .filter(|r| &r.package_record.name == name)
            .map(|r| r.package_record.version.version())
            .collect();
        if versions.is_empty() {
            out.push(format!(
                "package {} does not exist in {} for {platform} or noarch (check the name, or add the channel that has it with -c)",
                name.as_source(),
                names.join(", ")
            ));
            continue;
        }
        versions.sort();
        versions.dedup();
        let shown = versions.len().min(10);
        let listed: Vec<String> = versions
            .get(versions.len() - shown..)
            .unwrap_or_default()
            .iter()
            .map(ToString::to_string)
            .collect();
        out.push(format!(
            "no {} package matches `{spec}` in {} (there: {}{})",
            name.as_source(),
            names.join(", "),
            listed.join(", "),
            if versions.len() > shown { ", ..." } else { "" }
        ));
    }
    out
}

fn gateway_error(error: &GatewayError, channels: &[(String, Channel)]) -> EnvError {
    let mut chain = error.to_string();
    let mut source = std::error::Error::source(error);
    while let Some(s) = source {
        chain.push_str(": ");
        chain.push_str(&s.to_string());
        source = s.source();
    }
    let culprit = channels
        .iter()
        .find(|(_, c)| chain.contains(c.base_url.as_str().trim_end_matches('/')))
        .or_else(|| {
            channels
                .iter()
                .find(|(_, c)| c.base_url.url().scheme() != "file")
        })
        .map_or_else(|| "?".to_owned(), |(w, _)| w.clone());
    match error {
        GatewayError::SubdirNotFoundError(_) => EnvError::UnknownChannel {
            channel: culprit,
            url: chain,
        },
        GatewayError::ReqwestError(_) | GatewayError::ReqwestMiddlewareError(_) => {
            EnvError::UnreachableChannel {
                channel: culprit,
                message: chain,
            }
        }
        _ if chain.contains("error sending request")
            || chain.contains("onnect")
            || chain.contains("dns") =>
        {
            EnvError::UnreachableChannel {
                channel: culprit,
                message: chain,
            }
        }
        _ => EnvError::Gateway(chain),
    }
}

/// Where the gateway caches repodata (for `cache prune`).
pub fn repodata_cache(settings: &Settings) -> PathBuf {
    settings.repodata_cache.clone()
}
