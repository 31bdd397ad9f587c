//! The `pip:` section in `pixi.lock`: resolved at lock time, per platform, against the Python
//! the conda solve picked, and recorded as `pypi:` packages the way pixi records them (location,
//! sha256, `requires_dist`, `requires_python`, and the index options of the environment).
//! Installing from the lock resolves nothing: each locked wheel is installed by URL with its
//! hash, without dependencies and without an index.
//!
//! Resolution runs `uv pip compile --format pylock.toml` when `uv` is on `PATH`, else
//! `python3 -m pip install --dry-run --report`, from the yml's directory like the install.
//! Only wheels are locked (`--only-binary :all:`): an sdist would be built at install time,
//! and a local source tree (`-e .`) can change after locking, so neither can be reproduced
//! from a URL and a hash; a source tree is left out of the lock with a warning. A distribution
//! that a conda package of the solution provides (same name) is not locked again when
//! conda's version satisfies the section.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::io::{Read, Seek};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::str::FromStr as _;

use rattler_conda_types::Subdir;
use rattler_lock::{
    FindLinksUrlOrPath, PackageHashes, PypiDistributionData, PypiIndexes, PypiPackageData,
    UrlOrPath, Verbatim,
};
use serde::Deserialize;
use url::Url;

use crate::error::{EnvError, Result};
use crate::pip;
use crate::solve::Solution;

/// The index pip and uv use when the lines name none.
pub const DEFAULT_INDEX: &str = "https://pypi.org/simple";

/// What a `pip:` section is resolved for on one platform.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PythonTarget {
    /// The conda platform.
    pub subdir: Subdir,
    /// `python`'s major and minor version in the conda solution.
    pub python: (u64, u64),
    /// `__glibc` of the solve (Linux).
    pub glibc: Option<(u64, u64)>,
    /// `__osx` of the solve (macOS).
    pub macos: Option<(u64, u64)>,
    /// The solution's conda packages (pip-normalised name, version): where one provides a
    /// distribution the pip: section needs, the lock does not add the wheel on top of it.
    pub conda: Vec<(String, String)>,
}

fn major_minor(text: &str) -> Option<(u64, u64)> {
    let mut parts = text.split('.');
    let major = parts.next()?.parse().ok()?;
    let minor = parts
        .next()
        .and_then(|m| {
            let digits: String = m.chars().take_while(char::is_ascii_digit).collect();
            digits.parse().ok()
        })
        .unwrap_or(0);
    Some((major, minor))
}

impl PythonTarget {
    /// The target of `solution` for `subdir`; `None` when the solution has no `python`.
    pub fn from_solution(subdir: Subdir, solution: &Solution) -> Option<Self> {
        let python = solution
            .records
            .iter()
            .find(|r| r.package_record.name.as_normalized() == "python")?;
        let virtual_version = |name: &str| {
            solution
                .virtual_packages
                .iter()
                .find(|p| p.name.as_normalized() == name)
                .and_then(|p| major_minor(&p.version.to_string()))
        };
        Some(Self {
            subdir,
            python: major_minor(&python.package_record.version.to_string())?,
            glibc: virtual_version("__glibc"),
            macos: virtual_version("__osx"),
            conda: solution
                .records
                .iter()
                .map(|r| {
                    (
                        pip::normalize(r.package_record.name.as_normalized()),
                        r.package_record.version.to_string(),
                    )
                })
                .collect(),
        })
    }

    fn python_version(&self) -> String {
        format!("{}.{}", self.python.0, self.python.1)
    }

    fn arch(&self) -> Option<&'static str> {
        match self.subdir {
            Subdir::Linux64 | Subdir::Osx64 | Subdir::Win64 => Some("x86_64"),
            Subdir::LinuxAarch64 | Subdir::OsxArm64 | Subdir::WinArm64 => Some("aarch64"),
            _ => None,
        }
    }

    /// uv's `--python-platform`.
    fn uv_platform(&self) -> Option<String> {
        let arch = self.arch()?;
        Some(match self.subdir {
            Subdir::Linux64 | Subdir::LinuxAarch64 => match self.glibc {
                // uv knows manylinux_2_17 to manylinux_2_40.
                Some((2, minor)) if minor >= 17 => format!("{arch}-manylinux_2_{}", minor.min(40)),
                _ => format!("{arch}-manylinux2014"),
            },
            Subdir::Osx64 | Subdir::OsxArm64 => format!("{arch}-apple-darwin"),
            _ => format!("{arch}-pc-windows-msvc"),
        })
    }

    /// pip's `--platform` tags (pip adds `any` and, for macOS, the older versions itself).
    fn pip_platforms(&self) -> Option<Vec<String>> {
        let arch = self.arch()?;
        Some(match self.subdir {
            Subdir::Linux64 | Subdir::LinuxAarch64 => {
                let newest = match self.glibc {
                    Some((2, minor)) if minor >= 17 => minor,
                    _ => 17,
                };
                let mut tags: Vec<String> = (5..=newest)
                    .rev()
                    .map(|minor| format!("manylinux_2_{minor}_{arch}"))
                    .collect();
                tags.push(format!("manylinux2014_{arch}"));
                if arch == "x86_64" {
                    tags.push(format!("manylinux2010_{arch}"));
                    tags.push(format!("manylinux1_{arch}"));
                }
                tags
            }
            Subdir::Osx64 | Subdir::OsxArm64 => {
                let (arch, default) = if arch == "x86_64" {
                    ("x86_64", (10, 13))
                } else {
                    ("arm64", (11, 0))
                };
                let (major, minor) = self.macos.unwrap_or(default);
                vec![format!("macosx_{major}_{minor}_{arch}")]
            }
            Subdir::Win64 => vec!["win_amd64".to_owned()],
            _ => vec!["win_arm64".to_owned()],
        })
    }
}

/// The index options of the pip lines (`--index-url`, `--extra-index-url`, `--find-links`,
/// `--no-index`), as pixi.lock records them: no index at all with `--no-index`.
pub fn indexes(lines: &[String]) -> PypiIndexes {
    let mut index_url: Option<String> = None;
    let mut extra: Vec<String> = Vec::new();
    let mut find_links: Vec<FindLinksUrlOrPath> = Vec::new();
    let mut no_index = false;
    for line in lines {
        let line = line.trim();
        let (option, value) = match line.split_once(['=', ' ', '\t']) {
            Some((o, v)) if o.starts_with('-') => (o, v.trim()),
            _ => (line, ""),
        };
        match option {
            "-i" | "--index-url" => index_url = Some(value.to_owned()),
            "--extra-index-url" => extra.push(value.to_owned()),
            "--no-index" => no_index = true,
            "-f" | "--find-links" => find_links.push(match Url::parse(value) {
                Ok(url) => FindLinksUrlOrPath::Url(url),
                Err(_) => FindLinksUrlOrPath::Path(PathBuf::from(value)),
            }),
            _ => {}
        }
    }
    let indexes = if no_index {
        Vec::new()
    } else {
        std::iter::once(index_url.unwrap_or_else(|| DEFAULT_INDEX.to_owned()))
            .chain(extra)
            .filter_map(|u| Url::parse(&u).ok())
            .collect()
    };
    PypiIndexes {
        indexes,
        find_links,
    }
}

/// The 1-based line of `entry` in the pip section of `yml` (0 when not found).
fn line_of(yml: &Path, entry: &str) -> usize {
    let text = fs_err::read_to_string(yml).unwrap_or_default();
    text.lines()
        .position(|l| {
            let l = l.trim();
            let l = l.strip_prefix('-').map_or(l, str::trim_start);
            l.trim_matches(|c| c == '"' || c == '\'') == entry.trim()
        })
        .map_or(0, |i| i + 1)
}

/// The lines of the pip section a lock can hold. A local source tree (`-e .`, a directory)
/// cannot be pinned (its files change after locking): it is left out with a warning naming its
/// line, and the user installs it after `env install --lock`, as pip users do with
/// `pip install -e .` after `pip install -r requirements.lock`.
fn lockable_lines(yml: &Path, lines: &[String]) -> Vec<String> {
    let mut kept = Vec::with_capacity(lines.len());
    let dir = pip::yml_dir(yml).unwrap_or_else(|| Path::new("."));
    for (i, line) in lines.iter().enumerate() {
        let entry = line.trim();
        let target = if let Some(rest) = entry
            .strip_prefix("--editable")
            .or_else(|| entry.strip_prefix("-e"))
        {
            Some(rest.trim_start_matches('=').trim())
        } else if entry.starts_with('-') {
            None
        } else if let Some((_, url)) = entry.split_once(" @ ") {
            Url::parse(url.trim())
                .ok()
                .filter(|u| u.scheme() == "file")
                .and_then(|u| u.to_file_path().ok())
                .filter(|p| p.is_dir())
                .map(|_| entry)
        } else if entry.starts_with(['.', '/', '~']) || entry.starts_with("file:") {
            let path = Url::parse(entry)
                .ok()
                .and_then(|u| u.to_file_path().ok())
                .unwrap_or_else(|| dir.join(entry));
            path.is_dir().then_some(entry)
        } else {
            None
        };
        match target {
            Some(tree) => tracing::warn!(
                "{}:{}: field `dependencies.pip[{i}]`: `{entry}` is a local source tree and is left \
                 out of the lock (its files can change after locking); after `airlock env install \
                 --lock`, install it with `airlock env run -n NAME -- python -m pip install -e {tree}`, \
                 or build a wheel (`pip wheel --no-deps {tree} -w wheels`) and list it with \
                 `--find-links` to lock it",
                yml.display(),
                line_of(yml, entry),
            ),
            None => kept.push(line.clone()),
        }
    }
    kept
}

/// One resolved distribution before it becomes a lock entry.
#[derive(Debug, Clone)]
struct Resolved {
    name: String,
    version: String,
    url: Url,
    sha256: String,
    index: Option<Url>,
    /// `None` when the resolver did not report the metadata.
    requires_dist: Option<Vec<String>>,
    requires_python: Option<String>,
}

/// Resolves the pip `lines` of `yml` for `target` and returns the `pypi:` packages to lock;
/// local wheel paths are recorded relative to `lock_dir` when they are inside it.
pub async fn resolve(
    yml: &Path,
    lines: &[String],
    target: &PythonTarget,
    lock_dir: &Path,
) -> Result<Vec<PypiPackageData>> {
    let lines = lockable_lines(yml, lines);
    let requirements = pip::write_requirements(yml, &lines)?;
    let scratch = tempfile::Builder::new()
        .prefix("airlock-pypi-")
        .tempdir()
        .map_err(|e| EnvError::io(std::env::temp_dir(), e))?;
    let failed = |message: String| EnvError::Lock {
        path: yml.to_path_buf(),
        message: format!(
            "resolving the pip: section for {} (Python {}) failed: {message}",
            target.subdir,
            target.python_version()
        ),
    };
    let resolve_once = |constraints: Option<&Path>| -> Result<Vec<Resolved>, String> {
        if let Some(uv) = pip::which("uv") {
            let platform = target
                .uv_platform()
                .ok_or_else(|| "uv has no wheel platform for it".to_owned())?;
            let out = scratch.path().join("pylock.toml");
            let mut command = Command::new(uv);
            command
                .args([
                    "pip",
                    "compile",
                    "--quiet",
                    "--no-header",
                    "--generate-hashes",
                ])
                .args(["--format", "pylock.toml", "--only-binary", ":all:"])
                .args(["--python-version", &target.python_version()])
                .args(["--python-platform", &platform])
                .arg("-o")
                .arg(&out);
            if let Some(file) = constraints {
                command.arg("--constraint").arg(file);
            }
            command.arg(&requirements);
            run(command, yml)?;
            let text = fs_err::read_to_string(&out).map_err(|e| e.to_string())?;
            parse_pylock(&text, scratch.path())
        } else {
            let python = pip::which("python3")
                .or_else(|| pip::which("python"))
                .ok_or_else(|| "neither uv nor python3 is on PATH".to_owned())?;
            let platforms = target
                .pip_platforms()
                .ok_or_else(|| "pip has no wheel platform for it".to_owned())?;
            let report = scratch.path().join("report.json");
            let mut command = Command::new(python);
            command
                .args(["-m", "pip", "install", "--dry-run", "--ignore-installed"])
                .args([
                    "--quiet",
                    "--disable-pip-version-check",
                    "--only-binary=:all:",
                ])
                .args(["--python-version", &target.python_version()])
                .arg("--report")
                .arg(&report)
                .arg("--target")
                .arg(scratch.path().join("target"));
            for platform in &platforms {
                command.args(["--platform", platform]);
            }
            if let Some(file) = constraints {
                command.arg("-c").arg(file);
            }
            command.arg("-r").arg(&requirements);
            run(command, yml)?;
            parse_report(&fs_err::read_to_string(&report).map_err(|e| e.to_string())?)
        }
    };
    let mut resolved = resolve_once(None).map_err(failed)?;
    // Distributions a conda package of the solution provides (same name): resolved again with
    // conda's versions as constraints, they stay out of the lock, as pixi leaves them out.
    let provided: Vec<&(String, String)> = target
        .conda
        .iter()
        .filter(|(name, _)| resolved.iter().any(|r| pip::normalize(&r.name) == *name))
        .collect();
    if !provided.is_empty() {
        let constraints = scratch.path().join("conda-provided.txt");
        let text = provided
            .iter()
            .fold(String::new(), |mut text, (name, version)| {
                let _ = writeln!(text, "{name}=={version}");
                text
            });
        fs_err::write(&constraints, text)?;
        match resolve_once(Some(&constraints)) {
            Ok(again) => {
                resolved = again
                    .into_iter()
                    .filter(|r| !provided.iter().any(|(n, _)| pip::normalize(&r.name) == *n))
                    .collect();
            }
            Err(e) => {
                for (name, version) in &provided {
                    tracing::warn!(
                        "{}: the pip: section cannot use conda's {name} {version} ({}); the lock installs a {name} wheel over it",
                        yml.display(),
                        e.lines().last().unwrap_or_default().trim()
                    );
                }
            }
        }
    }
    for r in &mut resolved {
        if r.requires_dist.is_none() {
            if let Some(text) = wheel_metadata(&r.url).await {
                let (requires_dist, requires_python) = parse_metadata(&text);
                r.requires_dist = Some(requires_dist);
                r.requires_python = requires_python;
            } else {
                tracing::warn!(
                    "could not read the metadata of {}; its requires_dist is not recorded",
                    r.url
                );
            }
        }
    }
    resolved.sort_by_key(|r| pip::normalize(&r.name));
    resolved
        .into_iter()
        .map(|r| to_package(r, lock_dir).map_err(failed))
        .collect()
}

/// Runs a resolver from the yml's directory; its stderr becomes the message on failure.
fn run(mut command: Command, yml: &Path) -> Result<(), String> {
    if let Some(dir) = pip::yml_dir(yml) {
        command.current_dir(dir);
    }
    tracing::info!("resolving pip requirements: {command:?}");
    let output = command.output().map_err(|e| format!("{command:?}: {e}"))?;
    if output.status.success() {
        return Ok(());
    }
    let stderr = String::from_utf8_lossy(&output.stderr);
    let lines: Vec<&str> = stderr.lines().filter(|l| !l.trim().is_empty()).collect();
    let tail = lines
        .get(lines.len().saturating_sub(12)..)
        .unwrap_or_default();
    Err(format!("{}: {}", output.status, tail.join("\n")))
}

fn to_package(r: Resolved, lock_dir: &Path) -> Result<PypiPackageData, String> {
    let location = r
        .url
        .to_file_path()
        .ok()
        .filter(|_| r.url.scheme() == "file")
        .and_then(|p| p.strip_prefix(lock_dir).ok().map(Path::to_path_buf))
        .and_then(|p| p.to_str().map(|p| format!("./{p}")))
        .and_then(|p| UrlOrPath::from_str(&p).ok())
        .unwrap_or_else(|| UrlOrPath::Url(r.url.clone()));
    let sha256 = rattler_digest::parse_digest_from_hex::<rattler_digest::Sha256>(&r.sha256)
        .ok_or_else(|| format!("{}: invalid sha256 `{}`", r.name, r.sha256))?;
    let requires_dist = r
        .requires_dist
        .unwrap_or_default()
        .iter()
        .map(|d| {
            d.parse()
                .map_err(|e| format!("{} requires `{d}`, which is not valid: {e}", r.name))
        })
        .collect::<Result<Vec<_>, String>>()?;
    let requires_python = r
        .requires_python
        .map(|p| {
            p.parse()
                .map_err(|e| format!("{}: Requires-Python `{p}`: {e}", r.name))
        })
        .transpose()?;
    Ok(PypiDistributionData {
        name: r
            .name
            .parse()
            .map_err(|e| format!("package name `{}`: {e}", r.name))?,
        version: r
            .version
            .parse()
            .map_err(|e| format!("{} version `{}`: {e}", r.name, r.version))?,
        location: Verbatim::new(location),
        index_url: r.index,
        hash: Some(PackageHashes::Sha256(sha256)),
        requires_dist,
        requires_python,
    }
    .into())
}

#[derive(Deserialize)]
struct Pylock {
    #[serde(default)]
    packages: Vec<PylockPackage>,
}

#[derive(Deserialize)]
struct PylockPackage {
    name: String,
    version: Option<String>,
    index: Option<String>,
    #[serde(default)]
    wheels: Vec<PylockFile>,
}

#[derive(Deserialize)]
struct PylockFile {
    url: Option<String>,
    path: Option<String>,
    #[serde(default)]
    hashes: BTreeMap<String, String>,
}

impl PylockFile {
    fn url(&self, base: &Path) -> Option<Url> {
        match (&self.url, &self.path) {
            (Some(url), _) => Url::parse(url).ok(),
            (None, Some(path)) => Url::from_file_path(base.join(path)).ok(),
            (None, None) => None,
        }
    }
}

/// How specific a wheel's tags are: a platform wheel before an ABI wheel before a pure one,
/// then the newest platform tag; uv lists every wheel compatible with the target.
fn wheel_rank(url: &Url) -> (u8, String) {
    let file = url.path_segments().and_then(Iterator::last).unwrap_or("");
    let stem = file.strip_suffix(".whl").unwrap_or(file);
    let mut tags = stem.rsplitn(4, '-');
    let platform = tags.next().unwrap_or("any");
    let abi = tags.next().unwrap_or("none");
    (
        u8::from(platform != "any") * 2 + u8::from(abi != "none"),
        platform.to_owned(),
    )
}

/// Reads `uv pip compile --format pylock.toml` output (PEP 751); paths are relative to `base`.
fn parse_pylock(text: &str, base: &Path) -> Result<Vec<Resolved>, String> {
    let lock: Pylock = toml::from_str(text).map_err(|e| format!("uv's pylock.toml: {e}"))?;
    lock.packages
        .into_iter()
        .map(|p| {
            let wheel = p
                .wheels
                .iter()
                .filter_map(|w| Some((w.url(base)?, w)))
                .max_by_key(|(url, _)| wheel_rank(url))
                .ok_or_else(|| {
                    format!(
                        "`{}` resolved to something other than a wheel; only wheels can be locked",
                        p.name
                    )
                })?;
            let (url, file) = wheel;
            let sha256 = file
                .hashes
                .get("sha256")
                .cloned()
                .ok_or_else(|| format!("{url} has no sha256 hash"))?;
            Ok(Resolved {
                version: p
                    .version
                    .ok_or_else(|| format!("`{}` has no version", p.name))?,
                name: p.name,
                url,
                sha256,
                index: p.index.and_then(|i| Url::parse(&i).ok()),
                requires_dist: None,
                requires_python: None,
            })
        })
        .collect()
}

#[derive(Deserialize)]
struct Report {
    #[serde(default)]
    install: Vec<ReportItem>,
}

#[derive(Deserialize)]
struct ReportItem {
    download_info: DownloadInfo,
    metadata: ReportMetadata,
}

#[derive(Deserialize)]
struct DownloadInfo {
    url: String,
    archive_info: Option<ArchiveInfo>,
}

#[derive(Deserialize)]
struct ArchiveInfo {
    #[serde(default)]
    hashes: BTreeMap<String, String>,
    hash: Option<String>,
}

#[derive(Deserialize)]
struct ReportMetadata {
    name: String,
    version: String,
    #[serde(default)]
    requires_dist: Vec<String>,
    requires_python: Option<String>,
}

/// Reads `pip install --dry-run --report` output.
fn parse_report(text: &str) -> Result<Vec<Resolved>, String> {
    let report: Report =
        serde_json::from_str(text).map_err(|e| format!("pip's install report: {e}"))?;
    report
        .install
        .into_iter()
        .map(|item| {
            let name = item.metadata.name;
            let url = Url::parse(&item.download_info.url)
                .map_err(|e| format!("{name}: URL `{}`: {e}", item.download_info.url))?;
            let sha256 = item
                .download_info
                .archive_info
                .and_then(|a| {
                    a.hashes.get("sha256").cloned().or_else(|| {
                        a.hash
                            .and_then(|h| h.strip_prefix("sha256=").map(str::to_owned))
                    })
                })
                .ok_or_else(|| {
                    format!(
                        "`{name}` ({url}) has no sha256: only archives with a hash can be locked"
                    )
                })?;
            Ok(Resolved {
                name,
                version: item.metadata.version,
                url,
                sha256,
                index: None,
                requires_dist: Some(item.metadata.requires_dist),
                requires_python: item.metadata.requires_python,
            })
        })
        .collect()
}

/// `Requires-Dist` and `Requires-Python` of a core metadata file.
fn parse_metadata(text: &str) -> (Vec<String>, Option<String>) {
    let mut requires_dist = Vec::new();
    let mut requires_python = None;
    for line in text.lines().take_while(|l| !l.is_empty()) {
        if let Some((key, value)) = line.split_once(':') {
            match key.trim().to_ascii_lowercase().as_str() {
                "requires-dist" => requires_dist.push(value.trim().to_owned()),
                "requires-python" => requires_python = Some(value.trim().to_owned()),
                _ => {}
            }
        }
    }
    (requires_dist, requires_python)
}

/// The `*.dist-info/METADATA` of a wheel.
fn metadata_in_wheel(reader: impl Read + Seek) -> Option<String> {
    let mut archive = zip::ZipArchive::new(reader).ok()?;
    let name = archive
        .file_names()
        .filter_map(std::result::Result::ok)
        .find(|n| n.ends_with(".dist-info/METADATA") && n.matches('/').count() == 1)?
        .into_owned();
    let mut text = String::new();
    archive
        .by_name(&name)
        .ok()?
        .read_to_string(&mut text)
        .ok()?;
    Some(text)
}

/// A wheel's metadata: from the file itself when local; remotely from the PEP 658 `.metadata`
/// file beside it, else from the downloaded wheel.
async fn wheel_metadata(url: &Url) -> Option<String> {
    if url.scheme() == "file" {
        return metadata_in_wheel(fs_err::File::open(url.to_file_path().ok()?).ok()?);
    }
    let client = reqwest::Client::new();
    let sidecar = format!("{url}.metadata");
    if let Ok(response) = client.get(&sidecar).send().await
        && response.status().is_success()
        && let Ok(text) = response.text().await
    {
        return Some(text);
    }
    let bytes = client
        .get(url.clone())
        .send()
        .await
        .ok()?
        .error_for_status()
        .ok()?
        .bytes()
        .await
        .ok()?;
    metadata_in_wheel(std::io::Cursor::new(bytes))
}

#[derive(Deserialize)]
struct DirectUrl {
    url: Url,
    archive_info: Option<DirectArchive>,
}

#[derive(Deserialize)]
struct DirectArchive {
    #[serde(default)]
    hashes: BTreeMap<String, String>,
    hash: Option<String>,
}

/// The pip-installed distributions of `prefix` that a lock can pin (installed from a wheel URL:
/// the sha256 pip recorded, or for uv, which records none, the hash of the local wheel file at
/// that URL), and the names of those it cannot (installed from an index or a source tree),
/// skipping any that a conda package of `conda_names` provides.
pub fn installed_wheels(
    prefix: &Path,
    conda_names: &[String],
) -> (Vec<PypiPackageData>, Vec<String>) {
    let (mut pinned, mut unpinned) = (Vec::new(), Vec::new());
    let pip_installed = pip::installed(prefix)
        .unwrap_or_default()
        .into_iter()
        .filter(|d| d.installer != "conda");
    for dist in pip_installed {
        if conda_names.contains(&pip::normalize(&dist.name)) {
            continue;
        }
        let wheel = dist
            .direct_url
            .as_deref()
            .and_then(|text| serde_json::from_str::<DirectUrl>(text).ok())
            .filter(|d| {
                Path::new(d.url.path())
                    .extension()
                    .is_some_and(|e| e.eq_ignore_ascii_case("whl"))
            })
            .and_then(|d| {
                let archive = d.archive_info?;
                let recorded = archive.hashes.get("sha256").cloned().or_else(|| {
                    archive
                        .hash
                        .and_then(|h| h.strip_prefix("sha256=").map(str::to_owned))
                });
                // uv records the URL but no hash: a local wheel is hashed where it lies.
                let sha256 = recorded.or_else(|| {
                    let path = d
                        .url
                        .to_file_path()
                        .ok()
                        .filter(|_| d.url.scheme() == "file")?;
                    rattler_digest::compute_file_digest::<rattler_digest::Sha256>(&path)
                        .ok()
                        .map(hex::encode)
                })?;
                Some((d.url, sha256))
            });
        let package = wheel.and_then(|(url, sha256)| {
            to_package(
                Resolved {
                    name: dist.name.clone(),
                    version: dist.version.clone(),
                    url,
                    sha256,
                    index: None,
                    requires_dist: Some(dist.requires.clone()),
                    requires_python: dist.requires_python.clone(),
                },
                prefix,
            )
            .ok()
        });
        match package {
            Some(package) => pinned.push(package),
            None => unpinned.push(dist.name),
        }
    }
    pinned.sort_by_key(|p| pip::normalize(p.name().as_ref()));
    unpinned.sort();
    (pinned, unpinned)
}

/// A locked wheel checked before installing: where it is and the hash it must have.
#[derive(Debug, Clone)]
pub struct Artifact {
    /// The distribution name.
    pub name: String,
    /// Its version.
    pub version: String,
    /// The wheel (`file://` for a local one).
    pub url: Url,
    /// Lower-case hex sha256.
    pub sha256: String,
}

/// Checks the `pypi:` packages of the lock at `lock` before anything is installed: a local
/// wheel must exist and have the locked hash; a remote one needs the network (pip or uv checks
/// its hash as it downloads it). Relative paths are relative to the lock's directory.
pub fn check_artifacts(
    lock: &Path,
    packages: &[PypiPackageData],
    offline: bool,
) -> Result<Vec<Artifact>> {
    let err = |message: String| EnvError::Lock {
        path: lock.to_path_buf(),
        message,
    };
    let lock_dir = lock.parent().unwrap_or_else(|| Path::new("."));
    packages
        .iter()
        .map(|package| {
            let name = package.name().to_string();
            let Some(wheel) = package.as_wheel() else {
                return Err(err(format!(
                    "pypi package `{name}` ({}) is a source tree; airlock installs only wheels from a lock",
                    package.location()
                )));
            };
            let version = wheel.version.to_string();
            let url = match wheel.location.inner() {
                UrlOrPath::Url(url) => url.clone(),
                UrlOrPath::Path(path) => {
                    let path = lock_dir.join(path.as_str());
                    Url::from_file_path(std::path::absolute(&path).unwrap_or(path.clone()))
                        .map_err(|()| err(format!("`{name}`: bad path {}", path.display())))?
                }
            };
            let sha256 = match &wheel.hash {
                Some(PackageHashes::Sha256(h) | PackageHashes::Md5Sha256(_, h)) => hex::encode(h),
                _ => {
                    return Err(err(format!(
                        "pypi package `{name}` {version} has no sha256; lock it again"
                    )));
                }
            };
            if url.scheme() == "file" {
                let path = url
                    .to_file_path()
                    .map_err(|()| err(format!("`{name}`: bad URL {url}")))?;
                let actual = rattler_digest::compute_file_digest::<rattler_digest::Sha256>(&path)
                    .map_err(|e| {
                        err(format!(
                            "pypi package `{name}` {version}: {}: {e}",
                            path.display()
                        ))
                    })?;
                let actual = hex::encode(actual);
                if actual != sha256 {
                    return Err(err(format!(
                        "pypi package `{name}` {version}: {} has sha256 {actual}, the lock says \
                         {sha256}; the file changed after locking (restore it or lock again)",
                        path.display()
                    )));
                }
            } else if offline {
                return Err(EnvError::Offline {
                    channel: url.to_string(),
                });
            }
            Ok(Artifact {
                name,
                version,
                url,
                sha256,
            })
        })
        .collect()
}

/// Installs exactly `artifacts` into `prefix`: each wheel by URL with its hash, no
/// dependencies, no index (`uv pip install` when `uv` is on `PATH`, else the environment's pip).
pub fn install(prefix: &Path, artifacts: &[Artifact], conda_names: &[String]) -> Result<()> {
    let mut text = String::new();
    for a in artifacts {
        let _ = writeln!(text, "{} @ {} --hash=sha256:{}", a.name, a.url, a.sha256);
    }
    let requirements = tempfile::Builder::new()
        .prefix("airlock-pypi-lock-")
        .suffix(".txt")
        .tempfile()
        .map_err(|e| EnvError::io(std::env::temp_dir(), e))?;
    fs_err::write(requirements.path(), text)?;
    let file = requirements.path().as_os_str();
    let exact = ["--no-deps", "--require-hashes", "--no-index", "-r"].map(std::ffi::OsStr::new);
    let uv_args: Vec<&std::ffi::OsStr> = exact.iter().copied().chain([file]).collect();
    let pip_args: Vec<&std::ffi::OsStr> = [std::ffi::OsStr::new("--disable-pip-version-check")]
        .into_iter()
        .chain(exact.iter().copied())
        .chain([file])
        .collect();
    let command = pip::installer(prefix, &uv_args, &pip_args)?;
    pip::run_install(prefix, command, conda_names)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn index_options_as_pixi_records_them() {
        let lines: Vec<String> = [
            "--index-url https://mirror.example/simple",
            "--extra-index-url=https://extra.example/simple",
            "--find-links ./wheels",
            "-f https://example.org/links/",
            "numpy==2.0",
        ]
        .map(str::to_owned)
        .to_vec();
        let got = indexes(&lines);
        assert_eq!(
            got.indexes,
            vec![
                Url::parse("https://mirror.example/simple").unwrap(),
                Url::parse("https://extra.example/simple").unwrap()
            ]
        );
        assert_eq!(
            got.find_links,
            vec![
                FindLinksUrlOrPath::Path("./wheels".into()),
                FindLinksUrlOrPath::Url(Url::parse("https://example.org/links/").unwrap())
            ]
        );
        let none = indexes(&["--no-index".to_owned(), "x".to_owned()]);
        assert!(none.indexes.is_empty());
        assert_eq!(
            indexes(&["x".to_owned()]).indexes,
            vec![Url::parse(DEFAULT_INDEX).unwrap()]
        );
    }

    #[test]
    fn the_most_specific_wheel_wins() {
        let rank = |f: &str| wheel_rank(&Url::parse(&format!("https://x/{f}")).unwrap());
        assert!(rank("a-1-cp311-cp311-manylinux_2_17_x86_64.whl") > rank("a-1-py3-none-any.whl"));
        assert!(
            rank("a-1-cp311-cp311-manylinux_2_28_x86_64.whl")
                > rank("a-1-cp311-cp311-manylinux_2_17_x86_64.whl")
        );
    }

    #[test]
    fn platforms() {
        let target = PythonTarget {
            subdir: Subdir::Linux64,
            python: (3, 11),
            glibc: Some((2, 28)),
            macos: None,
            conda: Vec::new(),
        };
        assert_eq!(target.uv_platform().unwrap(), "x86_64-manylinux_2_28");
        let tags = target.pip_platforms().unwrap();
        assert_eq!(tags.first().unwrap(), "manylinux_2_28_x86_64");
        assert!(tags.contains(&"manylinux2014_x86_64".to_owned()));
        let mac = PythonTarget {
            subdir: Subdir::OsxArm64,
            macos: None,
            glibc: None,
            ..target
        };
        assert_eq!(mac.uv_platform().unwrap(), "aarch64-apple-darwin");
        assert_eq!(mac.pip_platforms().unwrap(), vec!["macosx_11_0_arm64"]);
    }

    #[test]
    fn metadata_fields() {
        let (dist, python) = parse_metadata(
            "Metadata-Version: 2.1\nName: a\nRequires-Dist: b>=1\nRequires-Dist: c; extra == 'x'\nRequires-Python: >=3.8\n\nRequires-Dist: not-a-header\n",
        );
        assert_eq!(dist, vec!["b>=1", "c; extra == 'x'"]);
        assert_eq!(python.as_deref(), Some(">=3.8"));
    }

    #[test]
    fn local_source_trees_are_left_out_of_the_lock() {
        let dir = tempfile::tempdir().unwrap();
        let yml = dir.path().join("environment.yml");
        fs_err::write(
            &yml,
            "dependencies:\n  - python\n  - pip:\n    - requests\n    - -e .\n",
        )
        .unwrap();
        let lines = |l: &[&str]| l.iter().map(|s| (*s).to_owned()).collect::<Vec<_>>();
        assert_eq!(
            lockable_lines(&yml, &lines(&["requests", "-e .", "--editable=./", "./"])),
            lines(&["requests"])
        );
        assert_eq!(
            lockable_lines(&yml, &lines(&["requests", "--no-index"])),
            lines(&["requests", "--no-index"])
        );
    }
}
