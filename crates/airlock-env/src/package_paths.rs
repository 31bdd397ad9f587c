//! Keeping a package's files inside its environment: the one check every link path runs
//! (airlock's own link loop for a new environment, rattler's `Installer` for an update) on
//! every package of a transaction before any of them is linked.
//!
//! rattler extracts archives safely into the cache, but links the paths a package *lists*
//! (`info/paths.json`, or the older `info/files` and `info/has_prefix`) by joining them onto
//! the prefix as they are. A listed `../../.bashrc`, an absolute path, or a path whose parent is
//! a symbolic link (one a package ships, or one already in the environment) would write outside
//! the environment. Two layers refuse them:
//!
//! - a string check on every platform ([`check_relative`]): relative, and every `/`-separated
//!   component non-empty and neither `.` nor `..`; and no listed path may lie below a path some
//!   package of the same transaction lists as a symbolic link;
//! - a structural check against the filesystem: every parent directory of a destination is
//!   resolved below the environment (and every source below its cache entry) without following
//!   any symbolic link. On Linux this is `openat2(RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS)`
//!   relative to a descriptor of the directory, so the kernel does the walk; where `openat2`
//!   is missing (other systems, old kernels, seccomp filters) each component is `lstat`ed.
//!
//! A parent that does not exist yet is fine: rattler creates it as a real directory, and the
//! only way it could become a symbolic link before then is a package of the same transaction
//! listing it as one, which the string check refuses.

use std::collections::{BTreeMap, HashSet};
use std::os::unix::ffi::OsStrExt as _;
use std::path::{Path, PathBuf};

use rattler::install::PythonInfo;
use rattler_conda_types::package::{
    Files, HasPrefix, IndexJson, LinkJson, NoArchLinks, PackageFile as _, PathType, PathsJson,
};

use crate::error::{EnvError, Result};

/// One package about to be linked, with the paths it lists.
#[derive(Debug)]
pub(crate) struct ListedPackage {
    /// `name-version-build`, for messages.
    pub package: String,
    /// The package's cache entry (the sources).
    pub entry: PathBuf,
    /// Per listed path: where it is read from (relative to the entry), where it goes (relative
    /// to the environment; differs for `noarch: python`) and whether it is a symbolic link.
    pub paths: Vec<ListedPath>,
    /// The `paths.json` (or what rattler makes of the older lists) that was checked: the one
    /// handed to the linker, so that what is linked is what was checked.
    pub paths_json: PathsJson,
    /// The package's `index.json`.
    pub index_json: IndexJson,
}

/// One listed path of a package.
#[derive(Debug)]
pub(crate) struct ListedPath {
    pub source: PathBuf,
    pub destination: PathBuf,
    pub symlink: bool,
}

/// Why a listed path is refused.
fn refused(package: &str, path: &Path, reason: &str) -> EnvError {
    EnvError::UnsafePackagePath {
        package: package.to_owned(),
        path: path.to_string_lossy().into_owned(),
        reason: reason.to_owned(),
    }
}

/// The portable string check of one listed path: relative, every component a plain name.
/// `Path::components` is not used on purpose: it silently drops `.` and empty components.
pub fn check_relative(package: &str, path: &Path) -> Result<()> {
    let bytes = path.as_os_str().as_bytes();
    if bytes.is_empty() {
        return Err(refused(package, path, "is empty"));
    }
    if bytes.first() == Some(&b'/') {
        return Err(refused(package, path, "is absolute"));
    }
    if bytes.contains(&0) {
        return Err(refused(package, path, "contains a NUL byte"));
    }
    for component in bytes.split(|&b| b == b'/') {
        let reason = match component {
            b"" => "has an empty component",
            b"." => "has a `.` component",
            b".." => "has a `..` component",
            _ => continue,
        };
        return Err(refused(package, path, reason));
    }
    Ok(())
}

/// Reads what the package in `entry` lists (`paths.json`, `info/files`, `info/has_prefix`,
/// the entry points of `info/link.json`), checking each path with [`check_relative`] before
/// anything touches the filesystem by it. `python` maps `noarch: python` paths to their place
/// in the environment.
pub(crate) fn read_listed(
    package: &str,
    entry: &Path,
    python: Option<&PythonInfo>,
) -> Result<ListedPackage> {
    let unreadable = |what: &str, e: &dyn std::fmt::Display| EnvError::Install {
        prefix: entry.to_path_buf(),
        message: format!("{package}: cannot read its {what}: {e}"),
    };
    // The older lists first: rattler's fallback for a package without `paths.json` stats each
    // path they give, so they are checked before it runs.
    match Files::from_package_directory(entry) {
        Ok(files) => {
            for path in &files.files {
                check_relative(package, path)?;
            }
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(unreadable("info/files", &e)),
    }
    match HasPrefix::from_package_directory(entry) {
        Ok(has_prefix) => {
            for file in &has_prefix.files {
                check_relative(package, &file.relative_path)?;
            }
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(unreadable("info/has_prefix", &e)),
    }
    let paths = PathsJson::from_package_directory_with_deprecated_fallback(entry)
        .map_err(|e| unreadable("info/paths.json", &e))?;
    let index =
        IndexJson::from_package_directory(entry).map_err(|e| unreadable("info/index.json", &e))?;
    let python = python.filter(|_| index.noarch.is_python());
    let mut listed = Vec::with_capacity(paths.paths.len());
    for p in &paths.paths {
        check_relative(package, &p.relative_path)?;
        let destination = match python {
            Some(python) => python
                .get_python_noarch_target_path(&p.relative_path)
                .into_owned(),
            None => p.relative_path.clone(),
        };
        check_relative(package, &destination)?;
        listed.push(ListedPath {
            source: p.relative_path.clone(),
            destination,
            symlink: p.path_type == PathType::SoftLink,
        });
    }
    if index.noarch.is_python() {
        match LinkJson::from_package_directory(entry) {
            Ok(LinkJson {
                noarch: NoArchLinks::Python(links),
                ..
            }) => {
                for point in &links.entry_points {
                    let command = Path::new(&point.command);
                    check_relative(package, command)?;
                    if point.command.contains('/') {
                        return Err(refused(
                            package,
                            command,
                            "is an entry point name with a `/`",
                        ));
                    }
                }
            }
            Ok(_) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(unreadable("info/link.json", &e)),
        }
    }
    Ok(ListedPackage {
        package: package.to_owned(),
        entry: entry.to_path_buf(),
        paths: listed,
        paths_json: paths,
        index_json: index,
    })
}

/// Checks every package of a transaction against the environment `env` (the staging
/// directory, which for an update holds the current environment's files) before any of them
/// is linked: no destination below a path any of them lists as a symbolic link, no parent of a
/// destination that is (or passes through) a symbolic link in `env`, and no source that leaves
/// its cache entry or passes through a symbolic link there.
pub(crate) fn check_transaction(env: &Path, packages: &[ListedPackage]) -> Result<()> {
    check_below_symlinks(packages)?;
    let env_root = Beneath::open(env)?;
    let mut env_parents_seen: HashSet<&Path> = HashSet::new();
    for package in packages {
        for listed in &package.paths {
            if let Some(parent) = non_empty_parent(&listed.destination)
                && env_parents_seen.insert(parent)
                && let Err(reason) = env_root.check(parent)
            {
                return Err(refused(
                    &package.package,
                    &listed.destination,
                    &format!(
                        "would be written through `{}`, which {reason} in the environment",
                        parent.display()
                    ),
                ));
            }
        }
        check_sources(package)?;
    }
    Ok(())
}

/// The checks of one cache entry alone, before anything (the cache check included) reads a
/// file by the paths it lists: below none of its own symbolic links, and each source inside
/// the entry without a symbolic link on the way.
pub(crate) fn check_entry(package: &ListedPackage) -> Result<()> {
    check_below_symlinks(std::slice::from_ref(package))?;
    check_sources(package)
}

/// No listed destination lies below a path some package of `packages` lists as a symbolic
/// link (the string half of the symbolic link rule: such a link may be linked first).
fn check_below_symlinks(packages: &[ListedPackage]) -> Result<()> {
    let symlinks: BTreeMap<&Path, &str> = packages
        .iter()
        .flat_map(|p| {
            p.paths
                .iter()
                .filter(|l| l.symlink)
                .map(|l| (l.destination.as_path(), p.package.as_str()))
        })
        .collect();
    if symlinks.is_empty() {
        return Ok(());
    }
    for package in packages {
        for listed in &package.paths {
            for ancestor in listed.destination.ancestors().skip(1) {
                if let Some(owner) = symlinks.get(ancestor) {
                    let who = if *owner == package.package {
                        "the package itself".to_owned()
                    } else {
                        format!("the package {owner}")
                    };
                    return Err(refused(
                        &package.package,
                        &listed.destination,
                        &format!(
                            "lies below `{}`, which {who} installs as a symbolic link",
                            ancestor.display()
                        ),
                    ));
                }
            }
        }
    }
    Ok(())
}

/// Each source resolves inside the cache entry without a symbolic link: its parents for a
/// listed symbolic link, the file itself otherwise (a symbolic link there would be followed by
/// a copy, a prefix replacement or a hash check, and read a file outside the cache).
fn check_sources(package: &ListedPackage) -> Result<()> {
    let entry_root = Beneath::open(&package.entry)?;
    let mut parents_seen: HashSet<&Path> = HashSet::new();
    for listed in &package.paths {
        let path = if listed.symlink {
            non_empty_parent(&listed.source).filter(|p| parents_seen.insert(p))
        } else {
            Some(listed.source.as_path())
        };
        if let Some(path) = path
            && let Err(reason) = entry_root.check(path)
        {
            return Err(refused(
                &package.package,
                &listed.source,
                &format!(
                    "is read through `{}`, which {reason} in the package",
                    path.display()
                ),
            ));
        }
    }
    Ok(())
}

/// Checks the paths every package of a transaction lists (see [`check_transaction`]),
/// reading them from the cache entries. `packages` pairs each package's name with its entry;
/// the answer is in the same order.
pub(crate) fn check_entries(
    env: &Path,
    packages: &[(String, PathBuf)],
    python: Option<&PythonInfo>,
) -> Result<Vec<ListedPackage>> {
    let listed = packages
        .iter()
        .map(|(package, entry)| read_listed(package, entry, python))
        .collect::<Result<Vec<_>>>()?;
    check_transaction(env, &listed)?;
    Ok(listed)
}

/// Issue 22, item 3: rattler extracts an archive with the modes it carries, and linking
/// shares (hard link) or copies those modes, so a package's 0666 or 0777 file would be
/// writable by every user, in the cache and in each environment. This takes the group and
/// other write bits away (and whatever else the umask masks) from every file and directory of
/// a cache entry in the user's own cache, before it is linked.
pub(crate) fn restrict_modes(entry: &Path) -> std::io::Result<()> {
    use std::os::unix::fs::PermissionsExt as _;
    let mask = umask() | 0o022;
    let mut stack = vec![entry.to_path_buf()];
    while let Some(dir) = stack.pop() {
        for item in std::fs::read_dir(&dir)? {
            let item = item?;
            let kind = item.file_type()?;
            if kind.is_symlink() {
                continue;
            }
            let path = item.path();
            let mode = item.metadata()?.permissions().mode() & 0o7777;
            if mode & mask != 0 {
                std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode & !mask))?;
            }
            if kind.is_dir() {
                stack.push(path);
            }
        }
    }
    Ok(())
}

/// This process's umask (`/proc/self/status` on Linux, so that it is read without being
/// changed; 022 where that cannot be read).
fn umask() -> u32 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|status| {
            status
                .lines()
                .find_map(|l| l.strip_prefix("Umask:"))
                .and_then(|v| u32::from_str_radix(v.trim(), 8).ok())
        })
        .unwrap_or(0o022)
}

fn non_empty_parent(path: &Path) -> Option<&Path> {
    path.parent().filter(|p| !p.as_os_str().is_empty())
}

/// A directory that relative paths are resolved below.
struct Beneath {
    root: PathBuf,
    #[cfg(target_os = "linux")]
    fd: std::fs::File,
}

impl Beneath {
    fn open(root: &Path) -> Result<Self> {
        Ok(Self {
            root: root.to_path_buf(),
            #[cfg(target_os = "linux")]
            fd: std::fs::File::open(root).map_err(|e| EnvError::io(root, e))?,
        })
    }

    /// Whether `rel` resolves below the directory without any symbolic link; a component
    /// that does not exist (or is not a directory) ends the walk, as it would end any
    /// write through it. `Err` says what is wrong.
    fn check(&self, rel: &Path) -> std::result::Result<(), &'static str> {
        #[cfg(target_os = "linux")]
        {
            use rustix::fs::{Mode, OFlags, ResolveFlags, openat2};
            use rustix::io::Errno;
            let flags = OFlags::PATH | OFlags::CLOEXEC;
            let resolve = ResolveFlags::BENEATH | ResolveFlags::NO_SYMLINKS;
            let mut answer = openat2(&self.fd, rel, flags, Mode::empty(), resolve);
            if matches!(answer, Err(Errno::AGAIN)) {
                // A concurrent rename somewhere on the system: the kernel asks to retry.
                answer = openat2(&self.fd, rel, flags, Mode::empty(), resolve);
            }
            match answer {
                Ok(_) | Err(Errno::NOENT | Errno::NOTDIR) => return Ok(()),
                Err(Errno::LOOP) => return Err("is a symbolic link or passes through one"),
                Err(Errno::XDEV) => return Err("leaves the directory"),
                // No openat2 here (old kernel, seccomp): the portable walk below.
                Err(_) => {}
            }
        }
        self.check_portable(rel)
    }

    fn check_portable(&self, rel: &Path) -> std::result::Result<(), &'static str> {
        let mut current = self.root.clone();
        for component in rel.components() {
            let std::path::Component::Normal(name) = component else {
                return Err("leaves the directory");
            };
            current.push(name);
            match std::fs::symlink_metadata(&current) {
                Ok(meta) if meta.is_symlink() => {
                    return Err("is a symbolic link or passes through one");
                }
                Ok(meta) if meta.is_dir() => {}
                _ => return Ok(()),
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, reason = "tests")]

    use super::*;

    #[test]
    fn the_string_check_refuses_every_way_out() {
        for bad in [
            "",
            "/etc/passwd",
            "../x",
            "a/../../x",
            "a/./b",
            "./a",
            "a//b",
            "a/",
            "a/..",
        ] {
            let err = check_relative("evil-1.0-0", Path::new(bad)).unwrap_err();
            let text = err.to_string();
            assert!(text.contains("evil-1.0-0"), "{text}");
            assert!(text.contains(&format!("`{bad}`")), "{text}");
        }
        for good in [
            "a",
            "bin/tool",
            "lib/python3.11/site-packages/x.py",
            "a..b/.c",
        ] {
            check_relative("ok-1.0-0", Path::new(good)).unwrap();
        }
    }

    #[test]
    fn parents_through_symbolic_links_are_refused_structurally() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        std::fs::create_dir_all(root.join("env/real/sub")).unwrap();
        std::fs::create_dir_all(root.join("outside")).unwrap();
        std::os::unix::fs::symlink("../outside", root.join("env/link")).unwrap();
        std::os::unix::fs::symlink("real", root.join("env/inside-link")).unwrap();
        let beneath = Beneath::open(&root.join("env")).unwrap();
        beneath.check(Path::new("real/sub")).unwrap();
        beneath.check(Path::new("missing/deeper")).unwrap();
        assert!(beneath.check(Path::new("link")).is_err());
        assert!(beneath.check(Path::new("link/x")).is_err());
        assert!(beneath.check(Path::new("inside-link/sub")).is_err());
        assert!(beneath.check_portable(Path::new("link/x")).is_err());
        assert!(
            beneath
                .check_portable(Path::new("inside-link/sub"))
                .is_err()
        );
        beneath.check_portable(Path::new("real/sub")).unwrap();
    }
}
