//! Installing records into a prefix: the layered package cache, atomic creation through a
//! staging directory, and the `conda-meta` files conda reads (`history`, `state`).

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use rattler::install::{IndicatifReporter, Installer, LinkOptions, Reporter, Transaction};
use rattler_cache::package_cache::{PackageCache, PackageCacheLayer};
use rattler_cache::validation::ValidationMode;
use rattler_conda_types::{MatchSpec, ParseStrictness, PrefixRecord, RepoDataRecord, Subdir};

use crate::config::{Settings, Verify};
use crate::error::{EnvError, Result};

/// The marker in staging directory names: `.NAME.airlock-staging-PID@HOST+RANDOM`.
const STAGING_MARKER: &str = ".airlock-staging-";

/// The package cache of `settings`: the user's writable layer first, then the shared layers.
///
/// The writable layer comes first because rattler writes a missing package to the first
/// writable layer, and a shared admin cache is often writable by mode bits (0775, group
/// `conda`) though not meant to be written by everyone; reads consult every layer anyway.
pub fn package_cache(settings: &Settings) -> PackageCache {
    package_cache_excluding(settings, &[])
}

/// [`package_cache`], with packages left out of given layers (a corrupt package in a
/// read-only shared layer: index into `[pkgs_dir, pkgs_layers...]` and the package's spec).
fn package_cache_excluding(settings: &Settings, excluded: &[(usize, MatchSpec)]) -> PackageCache {
    // `Stamp` does its own checking before rattler looks (see `verify`).
    let mode = match settings.verify {
        Verify::Skip | Verify::Stamp => ValidationMode::Skip,
        Verify::Fast => ValidationMode::Fast,
        Verify::Full => ValidationMode::Full,
    };
    let trusted = trusted_layers(settings);
    let layers = std::iter::once(&settings.pkgs_dir)
        .chain(trusted.iter())
        .enumerate()
        .map(|(index, p)| {
            excluded.iter().filter(|(layer, _)| *layer == index).fold(
                PackageCacheLayer::new(p.clone()).with_validation_mode(mode),
                |layer, (_, spec)| layer.excluding(spec.clone()),
            )
        });
    PackageCache::from_layers(layers, true)
}

/// The shared cache layers (`pkgs_layers`, conda's `pkgs_dirs`) that are trusted: a layer
/// directory that anyone but its owner (and root) can write is left out, with a warning
/// naming it and its mode, as OpenSSH's StrictModes refuses a group-writable `~/.ssh`: a
/// member of that group could replace a file in an entry and rewrite the entry's own
/// `paths.json`, and every later environment would link it (issue 22, item 4). Entries are
/// checked the same way before they are linked from ([`check_cache`]).
fn trusted_layers(settings: &Settings) -> Vec<PathBuf> {
    settings
        .pkgs_layers
        .iter()
        .filter(|layer| match writable_by_others(layer, false) {
            Some((path, mode)) => {
                warn_once(format!(
                    "the shared package cache {} is not used: {} is writable by others than its owner (mode {mode:o}); packages are fetched into your own cache",
                    layer.display(),
                    path.display()
                ));
                false
            }
            None => true,
        })
        .cloned()
        .collect()
}

/// The first of `path` (and, with `walk`, everything below it, symbolic links aside) that
/// group or others can write, with its mode. A directory with the sticky bit (like `/tmp`)
/// still lets others create names in it, so it counts too.
fn writable_by_others(path: &Path, walk: bool) -> Option<(PathBuf, u32)> {
    use std::os::unix::fs::PermissionsExt as _;
    let mut stack = vec![path.to_path_buf()];
    while let Some(current) = stack.pop() {
        let Ok(meta) = fs_err::symlink_metadata(&current) else {
            continue;
        };
        if meta.is_symlink() {
            continue;
        }
        let mode = meta.permissions().mode() & 0o7777;
        if mode & 0o022 != 0 {
            return Some((current, mode));
        }
        if walk
            && meta.is_dir()
            && let Ok(entries) = fs_err::read_dir(&current)
        {
            stack.extend(entries.flatten().map(|e| e.path()));
        }
    }
    None
}

/// A warning said once per process (the cache is set up several times per command).
fn warn_once(message: String) {
    static SAID: std::sync::Mutex<Vec<String>> = std::sync::Mutex::new(Vec::new());
    if let Ok(mut said) = SAID.lock() {
        if said.contains(&message) {
            return;
        }
        said.push(message.clone());
    }
    tracing::warn!("{message}");
}

/// What the cache check before an install found.
#[derive(Debug, Default)]
struct CachePlan {
    /// Records with no cache entry in any layer: rattler extracts them now.
    fresh: Vec<usize>,
    /// Corrupt packages in read-only layers, to be skipped there.
    excluded: Vec<(usize, MatchSpec)>,
    /// The cache directories the packages will be linked from.
    sources: Vec<PathBuf>,
}

/// Finds each record's cache entry in the layers (in rattler's order) and, for `Verify::Stamp`,
/// checks it (see [`crate::verify`]). A corrupt entry is removed from the writable cache, or
/// excluded from a read-only layer, so that rattler fetches the package again.
fn check_cache(settings: &Settings, records: &[&RepoDataRecord]) -> Result<CachePlan> {
    let trusted = trusted_layers(settings);
    let layers: Vec<&PathBuf> = std::iter::once(&settings.pkgs_dir)
        .chain(trusted.iter())
        .collect();
    let stamp = settings.verify == Verify::Stamp;
    let check_one = |record: &RepoDataRecord| -> Result<(Option<PathBuf>, Vec<usize>)> {
        let name = crate::verify::entry_name(record);
        let mut excluded = Vec::new();
        for (index, layer) in layers.iter().enumerate() {
            let entry = layer.join(&name);
            if !entry.is_dir() {
                continue;
            }
            // The paths the entry lists are checked before any check below (ours or
            // rattler's) stats or hashes a file by them.
            if index > 0
                && let Some((path, mode)) = writable_by_others(&entry, true)
            {
                warn_once(format!(
                    "the cached package {} in a shared cache is not used: {} is writable by others than its owner (mode {mode:o}); fetching it into your own cache",
                    entry.display(),
                    path.display()
                ));
                excluded.push(index);
                continue;
            }
            let listed =
                crate::package_paths::read_listed(&record.identifier.to_string(), &entry, None)?;
            crate::package_paths::check_entry(&listed)?;
            if !stamp {
                return Ok((Some(entry), excluded));
            }
            match crate::verify::check_entry(&settings.pkgs_dir, &entry, record) {
                crate::verify::Check::Stamped | crate::verify::Check::Verified => {
                    return Ok((Some(entry), excluded));
                }
                crate::verify::Check::Corrupt(reason) => {
                    tracing::warn!(
                        "the cached package {} is corrupt ({reason}); fetching it again",
                        entry.display()
                    );
                    crate::verify::remove_stamp(&settings.pkgs_dir, &entry);
                    if index == 0 {
                        if let Err(e) = fs_err::remove_dir_all(&entry) {
                            tracing::warn!("could not remove the corrupt cache entry: {e}");
                            excluded.push(index);
                        }
                    } else {
                        excluded.push(index);
                    }
                }
            }
        }
        Ok((None, excluded))
    };
    let threads = std::thread::available_parallelism()
        .map_or(1, std::num::NonZero::get)
        .clamp(1, 8);
    let chunk = records.len().div_ceil(threads).max(1);
    let results: Vec<(Option<PathBuf>, Vec<usize>)> = std::thread::scope(|scope| {
        let handles: Vec<_> = records
            .chunks(chunk)
            .map(|part| {
                scope.spawn(move || {
                    part.iter()
                        .map(|r| check_one(r))
                        .collect::<Result<Vec<_>>>()
                })
            })
            .collect();
        let mut all = Vec::with_capacity(records.len());
        for handle in handles {
            all.extend(handle.join().unwrap_or_else(|_| Ok(Vec::new()))?);
        }
        Ok::<_, EnvError>(all)
    })?;
    let mut plan = CachePlan::default();
    for (i, (record, (entry, excluded))) in records.iter().zip(results).enumerate() {
        match entry {
            Some(entry) => plan.sources.push(entry),
            None => plan.fresh.push(i),
        }
        for layer in excluded {
            let p = &record.package_record;
            let text = format!("{} =={} {}", p.name.as_normalized(), p.version, p.build);
            match MatchSpec::from_str(&text, ParseStrictness::Lenient) {
                Ok(spec) => plan.excluded.push((layer, spec)),
                Err(e) => tracing::warn!("cannot exclude {text} from the cache layer: {e}"),
            }
        }
    }
    Ok(plan)
}

/// rattler hard-links from the cache only when the cache entry and the prefix are on the same
/// device (`st_dev`) and silently copies otherwise; say so, once per install.
fn notice_copies(prefix: &Path, shown_prefix: &Path, caches: &[PathBuf]) {
    use std::os::unix::fs::MetadataExt as _;
    let Ok(target) = fs_err::metadata(prefix).map(|m| m.dev()) else {
        return;
    };
    let other = caches
        .iter()
        .find(|c| fs_err::metadata(c).is_ok_and(|m| m.dev() != target));
    if let Some(cache) = other {
        tracing::warn!(
            "the package cache {} is on another filesystem than {}: files are copied, not hard-linked",
            cache.display(),
            shown_prefix.display()
        );
        return;
    }
    // With `fs.protected_hardlinks` (the default on Linux), only root may hard-link a file it
    // neither owns nor can write: rattler then copies, file by file, without a word.
    let me = nix::unistd::geteuid();
    let protected =
        fs_err::read_to_string("/proc/sys/fs/protected_hardlinks").is_ok_and(|v| v.trim() == "1");
    if protected
        && !me.is_root()
        && let Some(cache) = caches
            .iter()
            .find(|c| fs_err::metadata(c).is_ok_and(|m| m.uid() != me.as_raw()))
    {
        tracing::warn!(
            "the package cache {} belongs to another user: the kernel does not let you hard-link its files (fs.protected_hardlinks), so they are copied into {}",
            cache.display(),
            shown_prefix.display()
        );
    }
}

/// Packages are linked on rayon's global pool, one package per thread (by `link` for a new
/// environment, by rattler's `Installer` for an update). In an update each package ends with
/// a synchronous write of its `conda-meta` record (`fsync`): with one thread per core, linking
/// waits on those flushes; more threads keep linking while others wait, and the filesystem
/// commits their flushes together. Sized once per process, before rattler's
/// first use of the pool; `RAYON_NUM_THREADS` still decides when set.
pub fn size_link_pool() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        if std::env::var_os("RAYON_NUM_THREADS").is_some() {
            return;
        }
        let cores = std::thread::available_parallelism().map_or(1, std::num::NonZero::get);
        let threads = (cores * 4).clamp(8, 32);
        if let Err(e) = rayon::ThreadPoolBuilder::new()
            .num_threads(threads)
            .build_global()
        {
            tracing::debug!("rayon's pool was already set up: {e}");
        }
    });
}

/// Whether symbolic links can be created in `prefix` (rattler asks this once per package by
/// creating and removing a link; once per install is enough).
fn can_symlink(prefix: &Path) -> bool {
    let probe = prefix.join(format!(".airlock-symlink-probe-{}", std::process::id()));
    let ok = std::os::unix::fs::symlink("./", &probe).is_ok();
    let _ = fs_err::remove_file(&probe);
    ok
}

/// What, besides the records, goes into an install.
#[derive(Debug, Clone, Default)]
pub struct InstallOptions {
    /// The specs the user asked for, recorded in `conda-meta/history` and in each record's
    /// `requested_spec`.
    pub requested_specs: Vec<MatchSpec>,
    /// The spec strings for the `# update specs:` line of `conda-meta/history`.
    pub history_specs: Vec<String>,
    /// The command line, for `# cmd:`.
    pub command_line: String,
    /// `variables:` from `environment.yml`, written to `conda-meta/state`.
    pub variables: Vec<(String, String)>,
    /// The date in the history header; `None` means now. Lock installs pass a date derived
    /// from the lock so that the same lock gives the same bytes.
    pub history_date: Option<String>,
    /// The target platform.
    pub platform: Option<Subdir>,
    /// Report progress on stderr: bars on a terminal, one line per package otherwise.
    pub progress: bool,
    /// A `pip:` step follows the rename (pip and uv write the final path into scripts, so it
    /// cannot run in the staging directory): the new environment carries a mark
    /// ([`PIP_PENDING`]) until [`pip_done`] removes it.
    pub pip_follows: bool,
}

/// The mark in `conda-meta/` of an environment whose `pip:` step has not finished: it holds
/// the installing process's `PID@HOST`. A run that finds the mark of a process that is gone removes
/// the environment (and puts back one it was replacing), as it removes staging leftovers.
pub const PIP_PENDING: &str = "airlock-pip-pending";

/// The `pip:` step of the new environment at `prefix` finished: it is complete.
pub fn pip_done(prefix: &Path) -> Result<()> {
    match fs_err::remove_file(prefix.join("conda-meta").join(PIP_PENDING)) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(e.into()),
        _ => Ok(()),
    }
}

/// Whether `prefix` is a new environment whose `pip:` step has not finished.
pub fn pip_pending(prefix: &Path) -> bool {
    prefix.join("conda-meta").join(PIP_PENDING).exists()
}

/// Where an environment being replaced (`--force`) waits until its successor's `pip:` step
/// has finished.
pub fn backup_dir(target: &Path) -> PathBuf {
    let name = target.file_name().unwrap_or_default().to_string_lossy();
    target.with_file_name(format!(
        ".{name}{BACKUP_MARKER}{}+{}",
        owner_tag(),
        unpredictable()
    ))
}

/// 16 hex digits from the system's random source, for names beside an environment: in a
/// shared sticky directory (`-p /shared/envs/x`) another user could otherwise create the
/// name first and block the install (issue 22, item 7).
fn unpredictable() -> String {
    let mut bytes = [0_u8; 8];
    let read = std::fs::File::open("/dev/urandom")
        .and_then(|mut f| std::io::Read::read_exact(&mut f, &mut bytes));
    if read.is_err() {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos());
        let now = u64::try_from(now & u128::from(u64::MAX)).unwrap_or_default();
        bytes = (now ^ u64::from(std::process::id()).rotate_left(32)).to_le_bytes();
    }
    hex::encode(bytes)
}

const BACKUP_MARKER: &str = ".airlock-backup-";

/// Removes a failed install's staging directory. rattler's installer returns on the first
/// error while tasks it spawned may still be writing into the directory for a moment, so a
/// removal that races with them is retried.
async fn remove_staging(staging: &Path) {
    let pause = || tokio::time::sleep(std::time::Duration::from_millis(50));
    for _ in 0..20 {
        if let Err(e) = fs_err::remove_dir_all(staging)
            && e.kind() != std::io::ErrorKind::NotFound
        {
            tracing::debug!("removing the staging directory: {e}");
        }
        pause().await;
        if !staging.exists() {
            return;
        }
    }
    tracing::warn!(
        "could not remove the staging directory {}; the next run removes it",
        staging.display()
    );
}

/// Cleans up after killed runs in `parent` (an envs directory): staging directories,
/// environments whose `pip:` step never finished ([`PIP_PENDING`]; an environment they were
/// replacing is put back) and leftover backups.
pub fn clean_stale_staging(parent: &Path) {
    let Ok(entries) = fs_err::read_dir(parent) else {
        return;
    };
    let mut names: Vec<String> = entries
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    for name in &names {
        let path = parent.join(name);
        // Only directories are ours to clean up or put back: a file or a symbolic link under
        // such a name was made by someone else (another user, in a shared directory).
        if !fs_err::symlink_metadata(&path).is_ok_and(|m| m.is_dir()) {
            continue;
        }
        if let Some((env, owner)) = name.rsplit_once(STAGING_MARKER) {
            if !owner_gone(owner) {
                continue;
            }
            // An environment set aside by a swap that was killed before the new one was in
            // place (see `swap_into_place`): put it back.
            let target = env.strip_prefix('.').map(|env| parent.join(env));
            if owner.starts_with("old-")
                && let Some(target) = target.filter(|t| !t.exists())
            {
                tracing::warn!(
                    "{}: an update was interrupted while it swapped the environment; putting the old one back",
                    target.display()
                );
                if let Err(e) = fs_err::rename(&path, &target) {
                    tracing::warn!("could not put back {}: {e}", target.display());
                }
                continue;
            }
            tracing::info!("removing stale staging directory {}", path.display());
            remove_or_warn(&path);
        } else if let Some((env, owner)) = name
            .strip_prefix('.')
            .and_then(|n| n.rsplit_once(BACKUP_MARKER))
        {
            if !owner_gone(owner) {
                continue;
            }
            let target = parent.join(env);
            let unfinished = fs_err::read_to_string(target.join("conda-meta").join(PIP_PENDING))
                .is_ok_and(|mark| mark.trim() == owner_without_suffix(owner));
            if unfinished || !target.exists() {
                tracing::warn!(
                    "{}: its pip: step was interrupted; putting back the environment it replaced",
                    target.display()
                );
                remove_or_warn(&target);
                if let Err(e) = fs_err::rename(&path, &target) {
                    tracing::warn!("could not put back {}: {e}", target.display());
                }
            } else {
                remove_or_warn(&path);
            }
        } else if let Ok(owner) = fs_err::read_to_string(path.join("conda-meta").join(PIP_PENDING))
            && owner_gone(&owner)
        {
            tracing::warn!(
                "removing {}: its pip: step was interrupted, so it is not the environment that was asked for",
                path.display()
            );
            remove_or_warn(&path);
        }
    }
}

fn remove_or_warn(path: &Path) {
    if let Err(e) = fs_err::remove_dir_all(path)
        && e.kind() != std::io::ErrorKind::NotFound
    {
        tracing::warn!("could not remove {}: {e}", path.display());
    }
}

/// `PID@HOST` of a name's owner part, without the unpredictable `+SUFFIX` (names made before
/// it have none).
fn owner_without_suffix(tag: &str) -> &str {
    tag.split_once('+').map_or(tag, |(owner, _)| owner)
}

/// `PID@HOST` of this process: the owner written into staging and backup names and into the
/// [`PIP_PENDING`] mark. The host counts because an envs directory in a home directory is
/// often shared by several machines (NFS on a cluster): another machine's process ids mean
/// nothing here, so its leftovers are never taken for this machine's.
fn owner_tag() -> String {
    static TAG: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    TAG.get_or_init(|| {
        let host = nix::unistd::gethostname()
            .map(|h| h.to_string_lossy().into_owned())
            .unwrap_or_default();
        let host: String = host
            .chars()
            .filter(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_'))
            .collect();
        format!("{}@{host}", std::process::id())
    })
    .clone()
}

/// Whether the owner of a leftover (`PID@HOST`, `old-PID@HOST`, or an older bare `PID`) is
/// gone: a process of this machine that no longer runs. Another machine's is never gone.
fn owner_gone(tag: &str) -> bool {
    let tag = owner_without_suffix(tag.trim());
    let tag = tag.strip_prefix("old-").unwrap_or(tag);
    let (pid, host) = tag.split_once('@').unwrap_or((tag, ""));
    if !host.is_empty() && owner_tag().split_once('@').map(|(_, h)| h) != Some(host) {
        return false;
    }
    !pid.parse::<u32>().is_ok_and(process_alive)
}

fn process_alive(pid: u32) -> bool {
    if pid == std::process::id() {
        return true;
    }
    if cfg!(target_os = "linux") {
        Path::new("/proc").join(pid.to_string()).exists()
    } else {
        // Without /proc, `kill -0` answers; a missing `kill` counts as alive (keep the dir).
        std::process::Command::new("kill")
            .args(["-0", &pid.to_string()])
            .stderr(std::process::Stdio::null())
            .status()
            .map_or(true, |s| s.success())
    }
}

/// The staging directory for `target`.
pub fn staging_dir(target: &Path) -> Result<PathBuf> {
    let name = target
        .file_name()
        .ok_or_else(|| EnvError::InvalidName(target.display().to_string()))?;
    let parent = target
        .parent()
        .ok_or_else(|| EnvError::InvalidName(target.display().to_string()))?;
    Ok(parent.join(format!(
        ".{}{STAGING_MARKER}{}+{}",
        name.to_string_lossy(),
        owner_tag(),
        unpredictable()
    )))
}

/// Creates a new environment at `target` atomically: everything is installed into a staging
/// directory beside it (with `target` patched into prefix placeholders) and renamed at the end.
/// With `replace`, an existing environment is swapped out only once the new one is complete.
/// Leftovers of killed runs beside `target` are the caller's to clear first
/// ([`clean_stale_staging`]), as `ops` does before it checks whether `target` exists.
pub async fn create(
    settings: &Settings,
    target: &Path,
    records: Vec<RepoDataRecord>,
    options: &InstallOptions,
    replace: bool,
) -> Result<()> {
    let parent = target
        .parent()
        .ok_or_else(|| EnvError::InvalidName(target.display().to_string()))?;
    fs_err::create_dir_all(parent)?;
    if target.exists() && !replace {
        return Err(EnvError::EnvironmentExists(target.to_path_buf()));
    }
    let staging = staging_dir(target)?;
    // Created here, exclusively (`mkdir` fails on anything already there, a symbolic link
    // included), under a name no one can guess.
    fs_err::create_dir(&staging)?;
    let result = install_into(settings, &staging, Some(target), records, options, &[]).await;
    if let Err(e) = result {
        remove_staging(&staging).await;
        return Err(e);
    }
    if target.exists() {
        swap_into_place(&staging, target)?;
    } else {
        fs_err::rename(&staging, target)?;
    }
    Ok(())
}

/// Puts the complete environment `staging` in the place of the existing `target`, so that
/// at every moment (a kill included) one of the two is there. On Linux the two directories
/// are exchanged in one step (`renameat2(RENAME_EXCHANGE)`) and the old one, now under the
/// staging name, is removed (after a kill, the next run's [`clean_stale_staging`] removes
/// it). Where the filesystem cannot exchange (`EINVAL` on some network filesystems, other
/// systems), `target` is first renamed aside under an `old-` name: a kill between the two
/// renames leaves that, and the next run puts it back.
fn swap_into_place(staging: &Path, target: &Path) -> Result<()> {
    let kill_at = std::env::var(TEST_KILL_AT).unwrap_or_default();
    if kill_at != "rename" && exchange(staging, target).map_err(|e| EnvError::io(target, e))? {
        test_kill_point(&kill_at, "exchange");
        remove_or_warn(staging);
        return Ok(());
    }
    let old = old_dir(target);
    fs_err::rename(target, &old)?;
    test_kill_point(&kill_at, "rename");
    if let Err(e) = fs_err::rename(staging, target) {
        let _ = fs_err::rename(&old, target);
        return Err(e.into());
    }
    remove_or_warn(&old);
    Ok(())
}

/// Where [`swap_into_place`] puts the environment it replaces when it cannot exchange.
fn old_dir(target: &Path) -> PathBuf {
    target.with_file_name(format!(
        ".{}{STAGING_MARKER}old-{}+{}",
        target.file_name().unwrap_or_default().to_string_lossy(),
        owner_tag(),
        unpredictable()
    ))
}

/// Test hook, for the kill test of issue 22 (item 5): `AIRLOCK_TEST_KILL_AT=exchange` kills
/// the process right after the exchange, `rename` takes the two-rename path and kills it
/// between the renames. Unset in normal use.
const TEST_KILL_AT: &str = "AIRLOCK_TEST_KILL_AT";

fn test_kill_point(wanted: &str, here: &str) {
    if wanted == here {
        eprintln!("airlock: {TEST_KILL_AT}={here}: killing this process");
        let _ = nix::sys::signal::kill(nix::unistd::Pid::this(), nix::sys::signal::Signal::SIGKILL);
    }
}

/// Exchanges the directories `a` and `b` in one step; `false` when this system or filesystem
/// cannot.
#[cfg(target_os = "linux")]
fn exchange(a: &Path, b: &Path) -> std::io::Result<bool> {
    use rustix::fs::{CWD, RenameFlags, renameat_with};
    use rustix::io::Errno;
    match renameat_with(CWD, a, CWD, b, RenameFlags::EXCHANGE) {
        Ok(()) => Ok(true),
        Err(Errno::INVAL | Errno::NOSYS | Errno::NOTSUP | Errno::PERM) => Ok(false),
        Err(e) => Err(e.into()),
    }
}

#[cfg(not(target_os = "linux"))]
fn exchange(_a: &Path, _b: &Path) -> std::io::Result<bool> {
    Ok(false)
}

/// Brings an existing environment to exactly `records`, atomically like [`create`]: the
/// environment is cloned beside itself with hard links (files the update replaces are removed
/// or renamed in the clone, never written through), the transaction (only changed packages
/// are unlinked and linked) runs in the clone with `prefix` patched into placeholders, and the
/// clone is renamed into place at the end. A failure leaves the environment as it was.
pub async fn update(
    settings: &Settings,
    prefix: &Path,
    records: Vec<RepoDataRecord>,
    options: &InstallOptions,
) -> Result<()> {
    let installed = installed_records(prefix)?;
    let parent = prefix
        .parent()
        .ok_or_else(|| EnvError::InvalidName(prefix.display().to_string()))?;
    clean_stale_staging(parent);
    // `clone_tree` creates it exclusively.
    let staging = staging_dir(prefix)?;
    let result = async {
        let (from, to) = (prefix.to_path_buf(), staging.clone());
        tokio::task::spawn_blocking(move || clone_tree(&from, &to))
            .await
            .map_err(|e| EnvError::io(prefix, std::io::Error::other(e)))??;
        install_into(
            settings,
            &staging,
            Some(prefix),
            records,
            options,
            &installed,
        )
        .await
    }
    .await;
    if let Err(e) = result {
        remove_staging(&staging).await;
        return Err(e);
    }
    swap_into_place(&staging, prefix)
}

/// Recreates the tree `from` at `to`: directories made, files hard-linked (copied when they
/// cannot be), symbolic links recreated.
fn clone_tree(from: &Path, to: &Path) -> Result<()> {
    fs_err::create_dir(to)?;
    fs_err::set_permissions(to, fs_err::metadata(from)?.permissions())?;
    for entry in fs_err::read_dir(from)? {
        let entry = entry?;
        let (source, target) = (entry.path(), to.join(entry.file_name()));
        let kind = entry.file_type().map_err(|e| EnvError::io(&source, e))?;
        if kind.is_dir() {
            clone_tree(&source, &target)?;
        } else if kind.is_symlink() {
            std::os::unix::fs::symlink(fs_err::read_link(&source)?, &target)
                .map_err(|e| EnvError::io(&target, e))?;
        } else if fs_err::hard_link(&source, &target).is_err() {
            fs_err::copy(&source, &target)?;
        }
    }
    Ok(())
}

/// The records installed in `prefix` (empty when it has no `conda-meta`).
pub fn installed_records(prefix: &Path) -> Result<Vec<PrefixRecord>> {
    if !prefix.join("conda-meta").is_dir() {
        return Ok(Vec::new());
    }
    let mut records: Vec<PrefixRecord> = PrefixRecord::collect_from_prefix(prefix)
        .map_err(|e| EnvError::io(prefix.join("conda-meta"), e))?;
    records.sort_by(|a, b| {
        a.repodata_record
            .package_record
            .name
            .as_normalized()
            .cmp(b.repodata_record.package_record.name.as_normalized())
    });
    Ok(records)
}

async fn install_into(
    settings: &Settings,
    prefix: &Path,
    final_prefix: Option<&Path>,
    records: Vec<RepoDataRecord>,
    options: &InstallOptions,
    installed: &[PrefixRecord],
) -> Result<()> {
    let platform = options
        .platform
        .unwrap_or_else(crate::solve::current_platform);
    let before: Vec<String> = installed
        .iter()
        .map(|r| dist_string(&r.repodata_record))
        .collect();
    let after: Vec<String> = records.iter().map(dist_string).collect();
    let to_link: Vec<&RepoDataRecord> = records
        .iter()
        .zip(&after)
        .filter(|(_, dist)| !before.contains(dist))
        .map(|(r, _)| r)
        .collect();
    fs_err::create_dir_all(prefix)?;
    size_link_pool();
    let plan = {
        let settings = settings.clone();
        let to_link: Vec<RepoDataRecord> = to_link.iter().map(|r| (*r).clone()).collect();
        tokio::task::spawn_blocking(move || {
            let refs: Vec<&RepoDataRecord> = to_link.iter().collect();
            check_cache(&settings, &refs)
        })
        .await
        .map_err(|e| EnvError::io(prefix, std::io::Error::other(e)))??
    };
    let mut caches: Vec<PathBuf> = plan
        .sources
        .iter()
        .filter_map(|entry| entry.parent().map(Path::to_path_buf))
        .collect();
    if !plan.fresh.is_empty() {
        fs_err::create_dir_all(&settings.pkgs_dir)?;
        caches.push(settings.pkgs_dir.clone());
    }
    caches.dedup();
    notice_copies(prefix, final_prefix.unwrap_or(prefix), &caches);
    let cache = package_cache_excluding(settings, &plan.excluded);
    let symlinks = can_symlink(prefix);
    let target = final_prefix.unwrap_or(prefix);
    let install_error = |message: String| EnvError::Install {
        prefix: target.to_path_buf(),
        message,
    };
    // Packages extracted by this install get their cache stamp (see `verify`) once linked.
    let stamp_fresh = settings.verify == Verify::Stamp && !plan.fresh.is_empty();
    if installed.is_empty() {
        // A new prefix: airlock's own link loop (see `link`), which stamps each fresh entry
        // right after linking it, while other packages are still being extracted.
        let mut fresh = vec![false; records.len()];
        if stamp_fresh {
            for &i in &plan.fresh {
                if let Some(f) = fresh.get_mut(i) {
                    *f = true;
                }
            }
        }
        crate::link::link_new_prefix(
            crate::link::NewPrefix {
                staging: prefix,
                target,
                cache,
                platform,
                allow_symbolic_links: symlinks,
                requested_specs: &options.requested_specs,
                reporter: match progress(options) {
                    Progress::None => None,
                    Progress::Bars => Some(Arc::new(
                        IndicatifReporter::builder().clear_when_done(true).finish(),
                    )),
                    Progress::Lines => Some(Arc::new(LineReporter::default())),
                },
                stamp_into: (&settings.pkgs_dir, &fresh),
            },
            records.clone(),
        )
        .await?;
    } else {
        // The packages the `Installer` will link (new, changed, and `noarch: python` ones
        // relinked for a new Python), each checked before any is linked (`package_paths`).
        let transaction = Transaction::from_current_and_desired(
            installed.iter(),
            records.iter(),
            None,
            None,
            platform,
        )
        .map_err(|e| install_error(error_chain(&e)))?;
        let linking: Vec<&RepoDataRecord> = transaction
            .operations
            .iter()
            .filter_map(|op| op.record_to_install().copied())
            .collect();
        crate::link::check_before_installer(
            &cache,
            &settings.pkgs_dir,
            prefix,
            &linking,
            transaction.python_info.as_ref(),
        )
        .await?;
        let mut installer = Installer::new()
            .with_package_cache(cache)
            .with_target_platform(platform)
            .with_requested_specs(options.requested_specs.clone())
            .with_installed_packages(installed.to_vec())
            .with_alternative_target_prefix(target)
            .with_download_client(rattler_networking::LazyClient::new(
                crate::credentials::client,
            ))
            .with_link_options(LinkOptions {
                allow_symbolic_links: Some(symlinks),
                allow_hard_links: None,
                allow_ref_links: None,
            });
        match progress(options) {
            Progress::None => {}
            Progress::Bars => {
                installer = installer
                    .with_reporter(IndicatifReporter::builder().clear_when_done(true).finish());
            }
            Progress::Lines => installer = installer.with_reporter(LineReporter::default()),
        }
        installer
            .install(prefix, records.clone())
            .await
            .map_err(|e| install_error(error_chain(&e)))?;
    }
    if stamp_fresh && !installed.is_empty() {
        let fresh: Vec<RepoDataRecord> = plan
            .fresh
            .iter()
            .filter_map(|&i| to_link.get(i).map(|r| (*r).clone()))
            .collect();
        let pkgs_dir = settings.pkgs_dir.clone();
        let stamped = tokio::task::spawn_blocking(move || {
            use rayon::prelude::*;
            fresh.par_iter().for_each(|record| {
                let entry = pkgs_dir.join(crate::verify::entry_name(record));
                crate::verify::stamp_fresh_entry(&pkgs_dir, &entry, record);
            });
        })
        .await;
        if let Err(e) = stamped {
            tracing::debug!("stamping the new cache entries: {e}");
        }
    }
    write_history(prefix, &before, &after, options)?;
    write_state(prefix, &options.variables)?;
    if options.pip_follows {
        fs_err::write(
            prefix.join("conda-meta").join(PIP_PENDING),
            format!("{}\n", owner_tag()),
        )?;
    }
    Ok(())
}

/// How an install reports progress on stderr.
enum Progress {
    None,
    /// Bars (download, extract, link) on a terminal.
    Bars,
    /// One plain line per package, for logs and pipes.
    Lines,
}

fn progress(options: &InstallOptions) -> Progress {
    if !options.progress {
        Progress::None
    } else if std::io::IsTerminal::is_terminal(&std::io::stderr()) {
        Progress::Bars
    } else {
        Progress::Lines
    }
}

/// `channel/subdir::name-version-build`, as conda writes it in `conda-meta/history`.
pub fn dist_string(record: &RepoDataRecord) -> String {
    let p = &record.package_record;
    let channel = record
        .channel
        .as_deref()
        .map_or_else(String::new, |c| c.trim_end_matches('/').to_owned());
    format!(
        "{channel}/{}::{}-{}-{}",
        p.subdir,
        p.name.as_normalized(),
        p.version,
        p.build
    )
}

/// Appends a revision to `conda-meta/history` in conda's format, so `conda env export
/// --from-history` and `conda list --revisions` work on airlock environments.
fn write_history(
    prefix: &Path,
    before: &[String],
    after: &[String],
    options: &InstallOptions,
) -> Result<()> {
    let path = prefix.join("conda-meta").join("history");
    let mut text = match fs_err::read_to_string(&path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => String::new(),
        Err(e) => return Err(e.into()),
    };
    let date = options.history_date.clone().unwrap_or_else(now_string);
    let _ = writeln!(text, "==> {date} <==");
    let _ = writeln!(
        text,
        "# cmd: {}",
        crate::credentials::redact(&options.command_line)
    );
    let _ = writeln!(text, "# airlock version: {}", env!("CARGO_PKG_VERSION"));
    for removed in before.iter().filter(|d| !after.contains(d)) {
        let _ = writeln!(text, "-{removed}");
    }
    for added in after.iter().filter(|d| !before.contains(d)) {
        let _ = writeln!(text, "+{added}");
    }
    if !options.history_specs.is_empty() {
        let quoted: Vec<String> = options
            .history_specs
            .iter()
            .map(|s| format!("'{}'", s.replace('\'', "")))
            .collect();
        let _ = writeln!(text, "# update specs: [{}]", quoted.join(", "));
    }
    fs_err::create_dir_all(prefix.join("conda-meta"))?;
    // Never written through: in an update the file is a hard link to the live environment's.
    crate::envs::write_atomic(&path, text.as_bytes())
}

/// `conda-meta/state`: conda's place for `variables:`; activation exports them.
fn write_state(prefix: &Path, variables: &[(String, String)]) -> Result<()> {
    if variables.is_empty() {
        return Ok(());
    }
    let vars: serde_json::Map<String, serde_json::Value> = variables
        .iter()
        .map(|(k, v)| (k.clone(), serde_json::Value::String(v.clone())))
        .collect();
    let text = serde_json::to_string_pretty(&serde_json::json!({ "env_vars": vars }))
        .map_err(|e| EnvError::io(prefix.join("conda-meta/state"), std::io::Error::other(e)))?;
    crate::envs::write_atomic(&prefix.join("conda-meta").join("state"), text.as_bytes())
}

/// Reads the specs the user asked for from `conda-meta/history` (`# update specs:` adds,
/// `# remove specs:` removes), as conda's `--from-history` does.
pub fn history_specs(prefix: &Path) -> Result<Vec<String>> {
    let path = prefix.join("conda-meta").join("history");
    let text = match fs_err::read_to_string(&path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(e.into()),
    };
    let mut specs: Vec<String> = Vec::new();
    let name_of = |s: &str| -> String {
        s.split(|c: char| c.is_whitespace() || "=<>!~[".contains(c))
            .next()
            .unwrap_or_default()
            .rsplit("::")
            .next()
            .unwrap_or_default()
            .to_owned()
    };
    for line in text.lines() {
        let (list, adding) = if let Some(rest) = line.strip_prefix("# update specs:") {
            (rest, true)
        } else if let Some(rest) = line.strip_prefix("# remove specs:") {
            (rest, false)
        } else {
            continue;
        };
        let items = list
            .trim()
            .trim_start_matches('[')
            .trim_end_matches(']')
            .split(',')
            .map(|s| s.trim().trim_matches(|c| c == '\'' || c == '"').to_owned())
            .filter(|s| !s.is_empty());
        for item in items {
            let name = name_of(&item);
            specs.retain(|s| name_of(s) != name);
            if adding {
                specs.push(item);
            }
        }
    }
    Ok(specs)
}

fn now_string() -> String {
    let secs = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    format_unix_seconds(secs)
}

/// `YYYY-MM-DD HH:MM:SS` (UTC) for seconds since the epoch (Howard Hinnant's civil_from_days).
pub fn format_unix_seconds(secs: u64) -> String {
    let days = i64::try_from(secs / 86_400).unwrap_or(0);
    let rem = secs % 86_400;
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02} {:02}:{:02}:{:02}",
        rem / 3600,
        (rem % 3600) / 60,
        rem % 60
    )
}

pub(crate) fn error_chain(error: &dyn std::error::Error) -> String {
    crate::credentials::scrub(&error_chain_unscrubbed(error))
}

fn error_chain_unscrubbed(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(s) = source {
        let s_text = s.to_string();
        if !text.contains(&s_text) {
            text.push_str(": ");
            text.push_str(&s_text);
        }
        source = s.source();
    }
    text
}

/// One plain line per event on stderr: readable in logs and over ssh without a terminal.
#[derive(Default)]
struct LineReporter {
    names: std::sync::Mutex<Vec<String>>,
}

impl LineReporter {
    fn name(&self, index: usize) -> String {
        self.names
            .lock()
            .ok()
            .and_then(|n| n.get(index).cloned())
            .unwrap_or_default()
    }

    fn remember(&self, name: String) -> usize {
        match self.names.lock() {
            Ok(mut names) => {
                names.push(name);
                names.len() - 1
            }
            Err(_) => 0,
        }
    }
}

impl Reporter for LineReporter {
    fn on_transaction_start(&self, transaction: &Transaction<PrefixRecord, RepoDataRecord>) {
        eprintln!(
            "airlock: {} package operation(s)",
            transaction.operations.len()
        );
    }
    fn on_transaction_operation_start(&self, _operation: usize) {}
    fn on_populate_cache_start(&self, _operation: usize, record: &RepoDataRecord) -> usize {
        self.remember(record.identifier.to_string())
    }
    fn on_validate_start(&self, cache_entry: usize) -> usize {
        cache_entry
    }
    fn on_validate_complete(&self, _validate_idx: usize) {}
    fn on_download_start(&self, cache_entry: usize) -> usize {
        eprintln!("airlock: fetching {}", self.name(cache_entry));
        cache_entry
    }
    fn on_download_progress(&self, _download_idx: usize, _progress: u64, _total: Option<u64>) {}
    fn on_download_completed(&self, _download_idx: usize) {}
    fn on_populate_cache_complete(&self, _cache_entry: usize) {}
    fn on_unlink_start(&self, _operation: usize, record: &PrefixRecord) -> usize {
        eprintln!("airlock: removing {}", record.repodata_record.identifier);
        0
    }
    fn on_unlink_complete(&self, _index: usize) {}
    fn on_link_start(&self, _operation: usize, record: &RepoDataRecord) -> usize {
        eprintln!("airlock: linking {}", record.identifier);
        0
    }
    fn on_link_complete(&self, _index: usize) {}
    fn on_transaction_operation_complete(&self, _operation: usize) {}
    fn on_transaction_complete(&self) {}
    fn on_post_link_start(&self, _package_name: &str, _script_path: &str) -> usize {
        0
    }
    fn on_post_link_complete(&self, _index: usize, _success: bool) {}
    fn on_pre_unlink_start(&self, _package_name: &str, _script_path: &str) -> usize {
        0
    }
    fn on_pre_unlink_complete(&self, _index: usize, _success: bool) {}
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn leftovers_of_another_machine_are_never_taken_for_ours() {
        let me = owner_tag();
        let (pid, host) = me.split_once('@').unwrap();
        assert_eq!(pid, std::process::id().to_string());
        assert!(!owner_gone(&me), "this process runs");
        assert!(!owner_gone(&format!("old-{me}")));
        // A pid no process has, here: gone; the same pid on another machine: not ours to judge.
        assert!(owner_gone(&format!("999999999@{host}")));
        assert!(owner_gone(&format!("old-999999999@{host}")));
        assert!(owner_gone("999999999"), "older names without a host");
        assert!(!owner_gone(&format!("999999999@not-{host}")));
        // Cleaning keeps another machine's staging directory and removes a dead one of ours.
        let dir = tempfile::tempdir().unwrap();
        let theirs = dir
            .path()
            .join(format!(".e{STAGING_MARKER}999999999@not-{host}"));
        let ours = dir
            .path()
            .join(format!(".e{STAGING_MARKER}999999999@{host}"));
        for d in [&theirs, &ours] {
            fs_err::create_dir(d).unwrap();
        }
        clean_stale_staging(dir.path());
        assert!(theirs.exists());
        assert!(!ours.exists());
    }

    #[test]
    fn formats_dates() {
        assert_eq!(format_unix_seconds(0), "1970-01-01 00:00:00");
        assert_eq!(format_unix_seconds(1_700_000_000), "2023-11-14 22:13:20");
    }

    #[test]
    fn reads_history_specs() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("conda-meta")).unwrap();
        std::fs::write(
            dir.path().join("conda-meta/history"),
            "==> 2024 <==\n# update specs: ['python=3.11', 'numpy']\n==> x <==\n# update specs: ['numpy>=2']\n# remove specs: ['python']\n",
        )
        .unwrap();
        assert_eq!(history_specs(dir.path()).unwrap(), vec!["numpy>=2"]);
    }
}
