//! Linking a new environment (`env create`, `env install --lock`) into its staging directory.
//!
//! rattler's `Installer` ends every package with a synchronous write of its `conda-meta`
//! record (temp file, `fsync`, rename) and then reads all records back to resolve clobbered
//! paths. For a new prefix neither is needed: nothing can see the staging directory until it
//! is renamed into place, so a kill at any point leaves no environment. This links each
//! package with rattler's own per-package linker (`link_package_sync`: hard links, prefix
//! placeholders, `noarch: python`, entry points), writes each record once, and resolves
//! clobbers from the records in memory. The guarantee is the rename's: an interrupted install
//! (error, kill) leaves no environment. Like conda, pip and `cp -al`, nothing is `fsync`ed;
//! rattler's per-record `fsync` never covered the files it writes with the prefix patched in
//! either, and a `syncfs` would wait for every other user's dirty data on a shared server.
//! Changing an existing environment (`env update`) still goes through rattler's `Installer`,
//! which also unlinks.

use std::io::{BufWriter, Write as _};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use futures::StreamExt as _;
use futures::stream::FuturesUnordered;
use rattler::install::{InstallOptions, Reporter, Transaction, link_package_sync};
use rattler_cache::package_cache::{CacheMetadata, CacheReporter, PackageCache};
use rattler_conda_types::prefix::Prefix;
use rattler_conda_types::prefix_record::{Link, LinkType, PathsEntry};
use rattler_conda_types::utils::ensure_safe_path_component;
use rattler_conda_types::{
    MatchSpec, PackageName, PackageRecord, PrefixRecord, RepoDataRecord, Subdir,
};
use rattler_networking::LazyClient;
use rattler_networking::retry_policies::default_retry_policy;

use crate::error::{EnvError, Result};

/// What a new prefix is linked with.
pub(crate) struct NewPrefix<'a> {
    /// The staging directory the files go to.
    pub staging: &'a Path,
    /// The prefix patched into placeholders (the final location).
    pub target: &'a Path,
    /// The package cache, layers included.
    pub cache: PackageCache,
    /// The target platform.
    pub platform: Subdir,
    /// Whether the filesystem takes symbolic links (asked once, not per package).
    pub allow_symbolic_links: bool,
    /// The specs the user asked for, recorded as each record's `requested_spec`.
    pub requested_specs: &'a [MatchSpec],
    /// Progress, when wanted.
    pub reporter: Option<Arc<dyn Reporter>>,
    /// The writable cache, and per record whether its entry was extracted by this install and
    /// gets its cache stamp once linked (`verify::stamp_fresh_entry`).
    pub stamp_into: (&'a Path, &'a [bool]),
}

/// Links `records` into the new prefix `new.staging` and writes their `conda-meta` records.
pub(crate) async fn link_new_prefix(
    new: NewPrefix<'_>,
    records: Vec<RepoDataRecord>,
) -> Result<()> {
    let install_error = |message: String| EnvError::Install {
        prefix: new.target.to_path_buf(),
        message,
    };
    for record in &records {
        let p = &record.package_record;
        ensure_safe_path_component(p.name.as_normalized())
            .and_then(|()| ensure_safe_path_component(p.build.as_str()))
            .map_err(|e| install_error(format!("{}: {e}", record.identifier)))?;
    }
    let transaction: Transaction<PrefixRecord, RepoDataRecord> =
        Transaction::from_current_and_desired(
            std::iter::empty::<&PrefixRecord>(),
            records.iter(),
            None,
            None,
            new.platform,
        )
        .map_err(|e| install_error(crate::install::error_chain(&e)))?
        .to_owned();
    let prefix = Prefix::create(new.staging).map_err(|e| EnvError::io(new.staging, e))?;
    let _cache_lock = new
        .cache
        .acquire_global_lock()
        .await
        .map_err(|e| install_error(crate::install::error_chain(&e)))?;
    let base = InstallOptions {
        target_prefix: Some(new.target.to_path_buf()),
        platform: Some(new.platform),
        python_info: transaction.python_info.clone(),
        allow_symbolic_links: Some(new.allow_symbolic_links),
        ..InstallOptions::default()
    };
    if let Some(reporter) = &new.reporter {
        reporter.on_transaction_start(&transaction);
    }
    // One registry for every package: a path two packages write is renamed aside for one of
    // them and settled by `unclobber` once all are linked (rattler's default, `Rename`).
    #[expect(
        clippy::default_trait_access,
        reason = "rattler does not export ClobberRegistry; its type is inferred from link_package_sync"
    )]
    let registry = Arc::new(Mutex::new(Default::default()));
    let link: Arc<LinkFn> = {
        let registry = Arc::clone(&registry);
        Arc::new(
            move |source: &Path, prefix: &Prefix, options: InstallOptions| {
                link_package_sync(source, prefix, Arc::clone(&registry), options)
            },
        )
    };
    let requested = requested_by_name(new.requested_specs);
    // Built on first use only: making a client reads the system's CA certificates, which a
    // `file://` channel or a warm cache never needs (`LazyClient::default()` builds it now).
    let client = LazyClient::new(crate::credentials::client);
    // Largest first, as rattler does, so the long links start early.
    let mut order: Vec<usize> = (0..records.len()).collect();
    order.sort_by_key(|&i| {
        std::cmp::Reverse(
            records
                .get(i)
                .and_then(|r| r.package_record.size)
                .unwrap_or(0),
        )
    });
    // Every package is fetched, and every path they list checked, before anything is linked
    // (`package_paths`): a package could otherwise reach outside the environment through a
    // symbolic link another package of the same transaction links first.
    let mut fetching = FuturesUnordered::new();
    for &index in &order {
        let Some(record) = records.get(index) else {
            continue;
        };
        let reporter = new.reporter.clone();
        let (cache, client) = (&new.cache, &client);
        fetching.push(async move {
            if let Some(r) = &reporter {
                r.on_transaction_operation_start(index);
            }
            let entry = fetch(cache, client, record, reporter, index).await?;
            Ok::<_, String>((index, entry))
        });
    }
    let mut entries = Vec::with_capacity(records.len());
    while let Some(result) = fetching.next().await {
        entries.push(result.map_err(install_error)?);
    }
    drop(fetching);
    let listed: Vec<(String, PathBuf)> = entries
        .iter()
        .filter_map(|(index, entry)| {
            let record = records.get(*index)?;
            Some((record.identifier.to_string(), entry.path().to_path_buf()))
        })
        .collect();
    restrict_modes(new.stamp_into.0, &listed)?;
    let checked = crate::package_paths::check_entries(
        prefix.path(),
        &listed,
        transaction.python_info.as_ref(),
    )?;
    let mut pending = FuturesUnordered::new();
    for ((index, entry), checked) in entries.into_iter().zip(checked) {
        let Some(record) = records.get(index) else {
            continue;
        };
        let reporter = new.reporter.clone();
        let (prefix, link) = (&prefix, &link);
        let mut options = base.clone();
        let requested_spec = requested
            .iter()
            .filter(|(name, _)| name == &record.package_record.name)
            .map(|(_, spec)| spec.clone())
            .collect();
        pending.push(async move {
            let link_index = reporter.as_ref().map(|r| r.on_link_start(index, record));
            options.index_json = Some(checked.index_json);
            options.paths_json = Some(checked.paths_json);
            let job = LinkJob {
                stamp_into: new
                    .stamp_into
                    .1
                    .get(index)
                    .copied()
                    .unwrap_or(false)
                    .then(|| new.stamp_into.0.to_path_buf()),
                record: record.clone(),
                source: entry.path().to_path_buf(),
                prefix: prefix.clone(),
                link: Arc::clone(link),
                options,
                requested_spec,
            };
            let (tx, rx) = tokio::sync::oneshot::channel();
            rayon::spawn_fifo(move || {
                let _ = tx.send(job.run());
            });
            let linked = rx
                .await
                .unwrap_or_else(|_| Err("the link task stopped".to_owned()))
                .map_err(|e| format!("{}: {e}", record.identifier))?;
            if let (Some(r), Some(i)) = (&reporter, link_index) {
                r.on_link_complete(i);
                r.on_transaction_operation_complete(index);
            }
            Ok::<PrefixRecord, String>(linked)
        });
    }
    let mut linked = Vec::with_capacity(records.len());
    while let Some(result) = pending.next().await {
        linked.push(result.map_err(install_error)?);
    }
    drop(pending);
    let sorted = PackageRecord::sort_topologically(linked.iter().collect::<Vec<_>>());
    let clobbered = registry
        .lock()
        .map_err(|_| install_error("the clobber registry was poisoned".to_owned()))?
        .unclobber(&sorted, prefix.path())
        .map_err(|e| install_error(crate::install::error_chain(&e)))?;
    if !clobbered.is_empty() {
        let names: Vec<PackageName> = clobbered
            .into_values()
            .flat_map(|c| std::iter::once(c.package).chain(c.other_packages))
            .collect();
        // The records `unclobber` may have rewritten: those of the packages involved.
        let involved: Vec<PathBuf> = linked
            .iter()
            .filter(|r| names.contains(&r.repodata_record.package_record.name))
            .map(|r| prefix.path().join("conda-meta").join(r.file_name()))
            .collect();
        settle_clobbers(prefix.path(), &involved).map_err(|e| install_error(e.to_string()))?;
    }
    if let Some(reporter) = &new.reporter {
        reporter.on_transaction_complete();
    }
    Ok(())
}

/// After rattler's `unclobber`: which package's copy of a shared path sits aside under
/// `__clobbers__/` depends on which package happened to link first, and so does the order of
/// the paths in the records it rewrote. This makes the result the same on every run, as
/// `env install --lock` promises: the involved `records` list their paths sorted again (as
/// `link_package_sync` returns them), and directories left empty under `__clobbers__/` go.
fn settle_clobbers(prefix: &Path, records: &[PathBuf]) -> std::io::Result<()> {
    for path in records {
        let mut record = PrefixRecord::from_path(path)?;
        record.files.sort();
        record
            .paths_data
            .paths
            .sort_by(|a, b| a.relative_path.cmp(&b.relative_path));
        write_record(&record, path)?;
    }
    remove_empty_dirs(&prefix.join("__clobbers__"))?;
    Ok(())
}

/// Removes `dir` and the directories below it that hold no file; whether `dir` went.
fn remove_empty_dirs(dir: &Path) -> std::io::Result<bool> {
    let mut empty = true;
    for entry in fs_err::read_dir(dir)? {
        let entry = entry?;
        if !(entry.file_type()?.is_dir() && remove_empty_dirs(&entry.path())?) {
            empty = false;
        }
    }
    if empty {
        fs_err::remove_dir(dir)?;
    }
    Ok(empty)
}

/// `(name, spec)` for every requested spec that names one package.
fn requested_by_name(specs: &[MatchSpec]) -> Vec<(PackageName, String)> {
    specs
        .iter()
        .filter_map(|spec| {
            let name = spec.name.as_exact()?;
            Some((name.clone(), spec.to_string()))
        })
        .collect()
}

/// Before rattler's `Installer` links `records` into `staging` (an update): brings each into
/// the package cache and checks every path they list (`package_paths`), so that nothing of
/// them is linked when one would leave the environment. The `Installer` then finds them in the
/// cache. `python` is the Python of the environment after the update.
pub(crate) async fn check_before_installer(
    cache: &PackageCache,
    pkgs_dir: &Path,
    staging: &Path,
    records: &[&RepoDataRecord],
    python: Option<&rattler::install::PythonInfo>,
) -> Result<()> {
    let install_error = |message: String| EnvError::Install {
        prefix: staging.to_path_buf(),
        message,
    };
    let client = LazyClient::new(crate::credentials::client);
    let mut fetching: FuturesUnordered<_> = records
        .iter()
        .enumerate()
        .map(|(index, record)| {
            let client = &client;
            async move {
                let entry = fetch(cache, client, record, None, index).await?;
                Ok::<_, String>((record.identifier.to_string(), entry.path().to_path_buf()))
            }
        })
        .collect();
    let mut listed = Vec::with_capacity(records.len());
    while let Some(result) = fetching.next().await {
        listed.push(result.map_err(install_error)?);
    }
    restrict_modes(pkgs_dir, &listed)?;
    crate::package_paths::check_entries(staging, &listed, python)?;
    Ok(())
}

/// [`crate::package_paths::restrict_modes`] for the entries in the user's own cache
/// (`pkgs_dir`); another user's layer is not ours to change.
fn restrict_modes(pkgs_dir: &Path, entries: &[(String, PathBuf)]) -> Result<()> {
    for (package, entry) in entries {
        if entry.starts_with(pkgs_dir) {
            crate::package_paths::restrict_modes(entry).map_err(|e| EnvError::Install {
                prefix: entry.clone(),
                message: format!("{package}: restricting the modes of its cached files: {e}"),
            })?;
        }
    }
    Ok(())
}

/// Brings `record` into the package cache (or finds it there), as rattler's installer does:
/// a `file://` package from its path, anything else downloaded with retries.
async fn fetch(
    cache: &PackageCache,
    client: &LazyClient,
    record: &RepoDataRecord,
    reporter: Option<Arc<dyn Reporter>>,
    index: usize,
) -> std::result::Result<CacheMetadata, String> {
    let bridge = reporter.as_ref().map(|r| {
        let cache_index = r.on_populate_cache_start(index, record);
        Arc::new(CacheBridge {
            reporter: Arc::clone(r),
            cache_index,
        })
    });
    let cache_reporter = bridge.clone().map(|b| b as Arc<dyn CacheReporter>);
    let entry = if record.url.scheme() == "file" {
        let path = record
            .url
            .to_file_path()
            .map_err(|()| format!("{}: not a file path: {}", record.identifier, record.url))?;
        cache
            .get_or_fetch_from_path(&path, Some(&record.package_record), cache_reporter)
            .await
    } else {
        cache
            .get_or_fetch_from_url_with_retry(
                &record.package_record,
                record.url.clone(),
                client.clone(),
                default_retry_policy(),
                cache_reporter,
                None,
            )
            .await
    }
    .map_err(|e| {
        format!(
            "fetching {}: {}",
            record.identifier,
            crate::install::error_chain(&e)
        )
    })?;
    if let Some(bridge) = bridge {
        bridge
            .reporter
            .on_populate_cache_complete(bridge.cache_index);
    }
    Ok(entry)
}

/// Passes the cache's validate and download events to the install reporter.
struct CacheBridge {
    reporter: Arc<dyn Reporter>,
    cache_index: usize,
}

impl CacheReporter for CacheBridge {
    fn on_validate_start(&self) -> usize {
        self.reporter.on_validate_start(self.cache_index)
    }
    fn on_validate_complete(&self, index: usize) {
        self.reporter.on_validate_complete(index);
    }
    fn on_download_start(&self) -> usize {
        self.reporter.on_download_start(self.cache_index)
    }
    fn on_download_progress(&self, index: usize, progress: u64, total: Option<u64>) {
        self.reporter.on_download_progress(index, progress, total);
    }
    fn on_download_completed(&self, index: usize) {
        self.reporter.on_download_completed(index);
    }
}

/// rattler's per-package linker, bound to the shared clobber registry (whose type rattler
/// does not export, so it is only ever inferred).
type LinkFn = dyn Fn(
        &Path,
        &Prefix,
        InstallOptions,
    ) -> std::result::Result<(Vec<PathsEntry>, LinkType), rattler::install::InstallError>
    + Send
    + Sync;

/// One package's link, run on rayon's pool (the file work is blocking).
struct LinkJob {
    record: RepoDataRecord,
    source: PathBuf,
    prefix: Prefix,
    link: Arc<LinkFn>,
    options: InstallOptions,
    requested_spec: Vec<String>,
    /// The writable cache, when the entry is fresh and gets its stamp.
    stamp_into: Option<PathBuf>,
}

impl LinkJob {
    fn run(self) -> std::result::Result<PrefixRecord, String> {
        let (paths, link_type) = (self.link)(&self.source, &self.prefix, self.options)
            .map_err(|e| crate::install::error_chain(&e))?;
        if let Some(pkgs_dir) = &self.stamp_into {
            let entry = pkgs_dir.join(crate::verify::entry_name(&self.record));
            crate::verify::stamp_fresh_entry(pkgs_dir, &entry, &self.record);
        }
        let record = PrefixRecord {
            extracted_package_dir: Some(self.source.clone()),
            link: Some(Link {
                source: self.source,
                link_type: Some(link_type),
            }),
            requested_specs: self.requested_spec,
            ..PrefixRecord::from_repodata_record(self.record, paths)
        };
        let path = self
            .prefix
            .path()
            .join("conda-meta")
            .join(record.file_name());
        write_record(&record, &path).map_err(|e| format!("writing {}: {e}", path.display()))?;
        Ok(record)
    }
}

/// A record written once into the staging directory: no temp file, no `fsync` (see the
/// module docs).
fn write_record(record: &PrefixRecord, path: &Path) -> std::io::Result<()> {
    let mut writer = BufWriter::with_capacity(16 * 1024, std::fs::File::create(path)?);
    record.write_to(&mut writer, true)?;
    writer.flush()
}

#[cfg(test)]
mod tests {
    #![allow(
        clippy::unwrap_used,
        clippy::expect_used,
        clippy::indexing_slicing,
        reason = "tests"
    )]

    use std::collections::BTreeMap;

    use rattler::install::{Installer, LinkOptions};

    use super::*;
    use crate::config::Verify;
    use crate::testchannel::{
        PackageBuild, PackageFile, build_channel, offline_settings, test_packages,
    };

    /// What an environment holds, path by path: kind, mode and contents (records parsed, so
    /// that key order does not count).
    fn snapshot(root: &Path) -> BTreeMap<String, String> {
        use std::os::unix::fs::PermissionsExt as _;
        let mut out = BTreeMap::new();
        let mut stack = vec![root.to_path_buf()];
        while let Some(dir) = stack.pop() {
            for entry in fs_err::read_dir(&dir).unwrap() {
                let path = entry.unwrap().path();
                let rel = path.strip_prefix(root).unwrap().display().to_string();
                let meta = fs_err::symlink_metadata(&path).unwrap();
                let value = if meta.is_symlink() {
                    format!("symlink {}", fs_err::read_link(&path).unwrap().display())
                } else if meta.is_dir() {
                    stack.push(path.clone());
                    if rel.starts_with("__clobbers__") {
                        // rattler may leave empty ones here (see `settle_clobbers`).
                        continue;
                    }
                    "dir".to_owned()
                } else if rel.starts_with("conda-meta/")
                    && path.extension().is_some_and(|e| e == "json")
                {
                    let mut json: serde_json::Value =
                        serde_json::from_slice(&fs_err::read(&path).unwrap()).unwrap();
                    // With clobbers, rattler's order depends on which package linked first;
                    // ours is sorted (asserted below).
                    let files = json["files"].as_array_mut().unwrap();
                    files.sort_by_key(ToString::to_string);
                    let paths = json["paths_data"]["paths"].as_array_mut().unwrap();
                    paths.sort_by_key(|p| p["_path"].to_string());
                    format!("record {json}")
                } else {
                    format!(
                        "file {:o} {}",
                        meta.permissions().mode() & 0o7777,
                        String::from_utf8_lossy(&fs_err::read(&path).unwrap())
                    )
                };
                out.insert(rel, value);
            }
        }
        out
    }

    /// The own link loop leaves exactly what rattler's `Installer` leaves: same files, modes,
    /// contents (prefix placeholders, `noarch: python` files and entry points, a path two
    /// packages write) and the same `conda-meta` records.
    #[test]
    fn links_what_rattlers_installer_links() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        let mut packages = test_packages();
        packages.extend([
            PackageBuild::new("python", "3.11.99")
                .subdir("linux-64")
                .file(PackageFile::script("python3.11", "exec /bin/true \"$@\"")),
            PackageBuild::new("tinypy", "1.0")
                .noarch_python(&["tinypy-hello = tinypy:main"])
                .depends(&["python >=3.11"])
                .file(PackageFile::data(
                    "site-packages/tinypy/__init__.py",
                    "def main():\n    print('hi')\n",
                )),
            PackageBuild::new("clash-a", "1.0")
                .file(PackageFile::data("share/clash.txt", "from a\n")),
            PackageBuild::new("clash-b", "1.0")
                .depends(&["clash-a"])
                .file(PackageFile::data("share/clash.txt", "from b\n")),
        ]);
        build_channel(&root.join("channels/conda-forge"), &packages).unwrap();
        let settings = offline_settings(root, "conda-forge", Verify::Skip).unwrap();
        let specs: Vec<String> = ["foo-tools", "tinypy", "clash-b", "hello"]
            .iter()
            .map(|s| (*s).to_owned())
            .collect();
        let rt = tokio::runtime::Runtime::new().unwrap();
        let records = rt
            .block_on(crate::solve::solve(
                &settings,
                &crate::solve::SolveRequest {
                    specs: specs.clone(),
                    channels: Vec::new(),
                    platform: Subdir::Linux64,
                    cuda: None,
                    locked: Vec::new(),
                },
            ))
            .unwrap()
            .records;
        assert!(records.len() >= 7, "{records:?}");
        let requested: Vec<MatchSpec> = specs
            .iter()
            .map(|s| MatchSpec::from_str(s, rattler_conda_types::ParseStrictness::Strict).unwrap())
            .collect();
        let target = Path::new("/opt/envs/same");

        let ours = root.join("ours");
        rt.block_on(link_new_prefix(
            NewPrefix {
                staging: &ours,
                target,
                cache: crate::install::package_cache(&settings),
                platform: Subdir::Linux64,
                allow_symbolic_links: true,
                requested_specs: &requested,
                reporter: None,
                stamp_into: (&settings.pkgs_dir, &[]),
            },
            records.clone(),
        ))
        .unwrap();

        let theirs = root.join("theirs");
        rt.block_on(
            Installer::new()
                .with_package_cache(crate::install::package_cache(&settings))
                .with_target_platform(Subdir::Linux64)
                .with_requested_specs(requested)
                .with_installed_packages(Vec::new())
                .with_alternative_target_prefix(target)
                .with_link_options(LinkOptions {
                    allow_symbolic_links: Some(true),
                    allow_hard_links: None,
                    allow_ref_links: None,
                })
                .install(&theirs, records),
        )
        .unwrap();

        for entry in fs_err::read_dir(ours.join("conda-meta")).unwrap() {
            let path = entry.unwrap().path();
            if path.extension().is_some_and(|e| e == "json") {
                let record = PrefixRecord::from_path(&path).unwrap();
                assert!(record.files.is_sorted(), "{}", path.display());
            }
        }
        let (ours, theirs) = (snapshot(&ours), snapshot(&theirs));
        assert_eq!(ours, theirs);
        // The cases the comparison is about are really there.
        let entry_point = &ours["bin/tinypy-hello"];
        assert!(
            entry_point.contains("#!/opt/envs/same/bin/python3.11"),
            "{entry_point}"
        );
        assert!(ours.contains_key("lib/python3.11/site-packages/tinypy/__init__.py"));
        assert!(ours["etc/foo-tools/config.txt"].contains("prefix = /opt/envs/same\n"));
        assert!(ours.keys().any(|p| p.contains("__clobber")), "{ours:#?}");
    }
}
