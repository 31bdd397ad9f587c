//! Checking cached packages before they are linked, without hashing every file on every install.
//!
//! rattler checks a package's archive against its SHA-256 when the package enters the cache
//! (download and extraction). After that its `Full` validation hashes every file of every
//! package on each install, which costs as much as the install itself; `Skip` trusts the cache
//! blindly. airlock's default (`Verify::Stamp`) sits between: the first time airlock links a
//! cached package it hashes every file against `info/paths.json` (unless it has just been
//! extracted from an archive whose hash rattler checked) and writes a stamp with each file's
//! size, modification time and inode. Later installs compare the stamp with `stat` of each
//! file (no reads); any difference (a truncated, rewritten or replaced file) sends the package
//! through the full hash check again, and a package that fails it is removed from the
//! writable cache (or skipped in a read-only layer) so that it is fetched again.
//!
//! What a stamp cannot see: a file rewritten in place with the same size whose modification
//! time was put back. `AIRLOCK_VERIFY=full` (or `verify = "full"`) hashes everything on every
//! install for that case.

use std::fmt::Write as _;
use std::os::unix::fs::MetadataExt as _;
use std::path::{Path, PathBuf};

use nix::fcntl::AtFlags;
use nix::sys::stat::fstatat;
use rattler_cache::validation::{ValidationMode, validate_package_directory};
use rattler_conda_types::RepoDataRecord;
use rattler_conda_types::package::{PackageFile as _, PathType, PathsJson};
use rattler_digest::{Sha256, compute_bytes_digest, compute_url_digest};

/// The first line of a stamp file.
const STAMP_HEADER: &str = "airlock-cache-stamp v1";

/// The directory, inside the writable cache, that holds the stamps.
pub const STAMP_DIR: &str = ".airlock-verified";

/// The directory name rattler gives a record's cache entry (`PackageCache` with
/// `cache_origin`: `name-version-build-<sha256 of the archive's path or URL>`).
pub fn entry_name(record: &RepoDataRecord) -> String {
    let p = &record.package_record;
    let origin = if record.url.scheme() == "file" {
        record.url.to_file_path().ok().map(|path| {
            hex::encode(compute_bytes_digest::<Sha256>(
                path.as_os_str().as_encoded_bytes(),
            ))
        })
    } else {
        Some(hex::encode(compute_url_digest::<Sha256>(
            record.url.clone(),
        )))
    };
    match origin {
        Some(origin) => format!(
            "{}-{}-{}-{origin}",
            p.name.as_normalized(),
            p.version,
            p.build
        ),
        None => format!("{}-{}-{}", p.name.as_normalized(), p.version, p.build),
    }
}

/// Where the stamp of the cache entry `entry` lives (in the writable cache `pkgs_dir`, so
/// entries of read-only shared layers get stamps too).
pub fn stamp_path(pkgs_dir: &Path, entry: &Path) -> PathBuf {
    let layer = entry.parent().unwrap_or(entry);
    let layer_hash = hex::encode(compute_bytes_digest::<Sha256>(
        layer.as_os_str().as_encoded_bytes(),
    ));
    let name = entry
        .file_name()
        .map_or_else(String::new, |n| n.to_string_lossy().into_owned());
    pkgs_dir
        .join(STAMP_DIR)
        .join(format!("{name}.{}", layer_hash.get(..12).unwrap_or("0")))
}

/// The state of one cache entry before linking.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Check {
    /// Its stamp matches what is on disk.
    Stamped,
    /// It had no valid stamp; the full hash check passed and a stamp was written.
    Verified,
    /// The full hash check failed.
    Corrupt(String),
}

/// The stamp file of `entry` and the package's SHA-256 in hex (empty when the record has none).
fn stamp_and_sha(pkgs_dir: &Path, entry: &Path, record: &RepoDataRecord) -> (PathBuf, String) {
    let sha = record
        .package_record
        .sha256
        .map(hex::encode)
        .unwrap_or_default();
    (stamp_path(pkgs_dir, entry), sha)
}

/// Checks the cache entry `entry` of `record`: the stamp when it matches, else the full hash
/// check (and then a new stamp).
pub fn check_entry(pkgs_dir: &Path, entry: &Path, record: &RepoDataRecord) -> Check {
    let (stamp, sha) = stamp_and_sha(pkgs_dir, entry, record);
    if stamp_matches(&stamp, entry, &sha) {
        return Check::Stamped;
    }
    match validate_package_directory(entry, ValidationMode::Full) {
        Ok((_, paths)) => {
            write_stamp(&stamp, entry, &sha, &paths);
            Check::Verified
        }
        Err(e) => Check::Corrupt(crate::install::error_chain(&e)),
    }
}

/// Stamps an entry that rattler has just extracted from an archive whose SHA-256 it checked:
/// only sizes are compared with `paths.json` (no reads). A missing file or a wrong size leaves
/// it unstamped, so the next install hashes it.
pub fn stamp_fresh_entry(pkgs_dir: &Path, entry: &Path, record: &RepoDataRecord) {
    let (stamp, sha) = stamp_and_sha(pkgs_dir, entry, record);
    if stamp_matches(&stamp, entry, &sha) {
        return;
    }
    let Ok(paths) = PathsJson::from_package_directory(entry) else {
        return;
    };
    write_stamp(&stamp, entry, &sha, &paths);
}

/// `size mtime_ns inode path` per file, in `paths.json` order, plus the package's own
/// metadata files; `None` when a file is missing or its size is not the one `paths.json`
/// gives.
fn stamp_lines(entry: &Path, paths: &PathsJson) -> Option<String> {
    let mut text = String::new();
    let files = paths
        .paths
        .iter()
        .filter(|p| p.path_type != PathType::Directory)
        .map(|p| {
            let size = (p.path_type == PathType::HardLink)
                .then_some(p.size_in_bytes)
                .flatten();
            (p.relative_path.clone(), size)
        })
        .chain([
            (PathBuf::from("info/index.json"), None),
            (PathBuf::from("info/paths.json"), None),
        ]);
    for (rel, size) in files {
        // Never a stat outside the entry (`package_paths` refuses such packages earlier).
        crate::package_paths::check_relative("", &rel).ok()?;
        let meta = fs_err::symlink_metadata(entry.join(&rel)).ok()?;
        if size.is_some_and(|size| size != meta.len()) {
            return None;
        }
        let rel = rel.to_str()?;
        if rel.contains('\n') {
            return None;
        }
        let _ = writeln!(
            text,
            "{} {}.{:09} {} {rel}",
            meta.len(),
            meta.mtime(),
            meta.mtime_nsec(),
            meta.ino()
        );
    }
    Some(text)
}

fn write_stamp(stamp: &Path, entry: &Path, sha: &str, paths: &PathsJson) {
    let Some(lines) = stamp_lines(entry, paths) else {
        return;
    };
    let text = format!("{STAMP_HEADER} {sha} {}\n{lines}", entry.display());
    let Some(dir) = stamp.parent() else {
        return;
    };
    // A stamp is an optimisation: failing to write one only means hashing next time.
    let written = fs_err::create_dir_all(dir).and_then(|()| {
        let mut tmp = tempfile::NamedTempFile::new_in(dir)?;
        std::io::Write::write_all(&mut tmp, text.as_bytes())?;
        tmp.persist(stamp).map_err(|e| e.error)?;
        Ok(())
    });
    if let Err(e) = written {
        tracing::debug!("could not write cache stamp {}: {e}", stamp.display());
    }
}

fn stamp_matches(stamp: &Path, entry: &Path, sha: &str) -> bool {
    let Ok(text) = fs_err::read_to_string(stamp) else {
        return false;
    };
    let mut lines = text.lines();
    let header = format!("{STAMP_HEADER} {sha} {}", entry.display());
    if lines.next() != Some(header.as_str()) {
        return false;
    }
    // Each file is looked up from the entry's directory (`fstatat`), not by a full path walk.
    let Ok(dir) = std::fs::File::open(entry) else {
        return false;
    };
    let dir = std::os::fd::AsRawFd::as_raw_fd(&dir);
    let mut any = false;
    for line in lines {
        let mut parts = line.splitn(4, ' ');
        let (Some(size), Some(mtime), Some(ino), Some(rel)) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return false;
        };
        let Ok(meta) = fstatat(Some(dir), rel, AtFlags::AT_SYMLINK_NOFOLLOW) else {
            return false;
        };
        let (secs, nanos) = mtime.split_once('.').unwrap_or((mtime, ""));
        let same = u64::try_from(meta.st_size).is_ok_and(|len| size.parse() == Ok(len))
            && secs.parse() == Ok(meta.st_mtime)
            && nanos.parse() == Ok(meta.st_mtime_nsec)
            && ino.parse() == Ok(meta.st_ino);
        if !same {
            tracing::debug!("cache stamp mismatch for {}/{rel}", entry.display());
            return false;
        }
        any = true;
    }
    any
}

/// Removes the stamp of a cache entry (when the entry is removed).
pub fn remove_stamp(pkgs_dir: &Path, entry: &Path) {
    let _ = fs_err::remove_file(stamp_path(pkgs_dir, entry));
}
