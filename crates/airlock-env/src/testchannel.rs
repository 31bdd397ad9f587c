//! Build real conda packages and index them into a local `file://` channel.
//!
//! Tests use this to run every command offline against packages with dependencies, `noarch` and
//! `linux-64` builds, prefix placeholders and scripts in `bin/`; `airlock demo` uses
//! [`build_demo_channel`] for its tiny channel.

use std::fmt::Write as _;
use std::io::Write as _;
use std::path::{Path, PathBuf};

use rattler_conda_types::compression_level::CompressionLevel;
use rattler_digest::Sha256;
use serde_json::json;
use url::Url;

use crate::error::{EnvError, Result};

/// The placeholder conda-build writes into text files; the installer replaces it with the prefix.
pub const PREFIX_PLACEHOLDER: &str = "/opt/anaconda1anaconda2anaconda3";

/// The archive format of a built package.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ArchiveFormat {
    /// `.conda` (zip of zstd tarballs).
    #[default]
    Conda,
    /// `.tar.bz2`, the older format.
    TarBz2,
}

/// One file in a package.
#[derive(Debug, Clone)]
pub struct PackageFile {
    /// Path inside the environment, e.g. `bin/hello`.
    pub path: String,
    /// The contents.
    pub contents: Vec<u8>,
    /// Whether the file is executable (0755).
    pub executable: bool,
    /// Whether the file contains [`PREFIX_PLACEHOLDER`] to be replaced at install time.
    pub has_prefix: bool,
    /// A mode other than 0644 / 0755 for the file in the archive.
    pub mode: Option<u32>,
    /// Makes the entry a symbolic link to this target (`path_type: softlink`).
    pub symlink_to: Option<String>,
    /// The path the package's metadata (`paths.json`, `info/files`, `info/has_prefix`) lists
    /// for this file, when it is not `path`: how tests build hostile packages.
    pub listed_as: Option<String>,
    /// The file is in the archive but not in the package's metadata.
    pub unlisted: bool,
}

impl PackageFile {
    /// A plain data file.
    pub fn data(path: &str, contents: impl Into<Vec<u8>>) -> Self {
        Self {
            path: path.to_owned(),
            contents: contents.into(),
            executable: false,
            has_prefix: false,
            mode: None,
            symlink_to: None,
            listed_as: None,
            unlisted: false,
        }
    }

    /// A symbolic link at `path` pointing to `target`.
    pub fn symlink(path: &str, target: &str) -> Self {
        Self {
            symlink_to: Some(target.to_owned()),
            ..Self::data(path, "")
        }
    }

    /// The file is listed in the package's metadata as `listed` instead of its own path.
    #[must_use]
    pub fn listed_as(mut self, listed: &str) -> Self {
        self.listed_as = Some(listed.to_owned());
        self
    }

    /// The file is in the archive but not listed in the package's metadata.
    #[must_use]
    pub fn unlisted(mut self) -> Self {
        self.unlisted = true;
        self
    }

    /// The file carries `mode` in the archive (rattler's archive writer keeps only whether
    /// it is executable: 0644 or 0755; tests that need other modes rewrite the archive).
    #[must_use]
    pub fn mode(mut self, mode: u32) -> Self {
        self.mode = Some(mode);
        self
    }

    /// The file is marked for prefix replacement (its contents should hold
    /// [`PREFIX_PLACEHOLDER`]).
    #[must_use]
    pub fn with_prefix(mut self) -> Self {
        self.has_prefix = true;
        self
    }

    /// An executable shell script in `bin/` that knows its prefix, like a conda entry point.
    pub fn script(name: &str, body: &str) -> Self {
        Self {
            path: format!("bin/{name}"),
            contents: format!("#!/bin/sh\nPREFIX=\"{PREFIX_PLACEHOLDER}\"\n{body}\n").into_bytes(),
            executable: true,
            has_prefix: true,
            mode: None,
            symlink_to: None,
            listed_as: None,
            unlisted: false,
        }
    }
}

/// A package to build.
#[derive(Debug, Clone)]
pub struct PackageBuild {
    /// Package name.
    pub name: String,
    /// Version.
    pub version: String,
    /// Build string.
    pub build: String,
    /// Build number.
    pub build_number: u64,
    /// `noarch` or a platform such as `linux-64`.
    pub subdir: String,
    /// Dependencies as match specs.
    pub depends: Vec<String>,
    /// Constraints on other packages (`constrains`).
    pub constrains: Vec<String>,
    /// Files.
    pub files: Vec<PackageFile>,
    /// Archive format.
    pub format: ArchiveFormat,
    /// `Some` for a `noarch: python` package: its entry points (`name = module:function`),
    /// written to `info/link.json`. Its files are given as `site-packages/...`.
    pub python_entry_points: Option<Vec<String>>,
    /// Writes only the older metadata (`info/files`, `info/has_prefix`), no `paths.json`.
    pub legacy_metadata: bool,
}

impl PackageBuild {
    /// A `noarch: generic` package with one data file naming it.
    pub fn new(name: &str, version: &str) -> Self {
        Self {
            name: name.to_owned(),
            version: version.to_owned(),
            build: "0".to_owned(),
            build_number: 0,
            subdir: "noarch".to_owned(),
            depends: Vec::new(),
            constrains: Vec::new(),
            files: vec![PackageFile::data(
                &format!("share/{name}/VERSION"),
                format!("{name} {version}\n"),
            )],
            format: ArchiveFormat::Conda,
            python_entry_points: None,
            legacy_metadata: false,
        }
    }

    /// Makes this a `noarch: python` package with these entry points.
    #[must_use]
    pub fn noarch_python(mut self, entry_points: &[&str]) -> Self {
        self.python_entry_points = Some(entry_points.iter().map(|e| (*e).to_owned()).collect());
        self
    }

    /// Builds for `subdir` instead of `noarch`.
    #[must_use]
    pub fn subdir(mut self, subdir: &str) -> Self {
        subdir.clone_into(&mut self.subdir);
        self
    }

    /// Adds dependencies.
    #[must_use]
    pub fn depends(mut self, specs: &[&str]) -> Self {
        self.depends.extend(specs.iter().map(|s| (*s).to_owned()));
        self
    }

    /// Adds a file.
    #[must_use]
    pub fn file(mut self, file: PackageFile) -> Self {
        self.files.push(file);
        self
    }

    /// Sets the build string and number.
    #[must_use]
    pub fn build(mut self, build: &str, number: u64) -> Self {
        build.clone_into(&mut self.build);
        self.build_number = number;
        self
    }

    /// Writes only `info/files` and `info/has_prefix`, as packages built before `paths.json`.
    #[must_use]
    pub fn legacy_metadata(mut self) -> Self {
        self.legacy_metadata = true;
        self
    }

    /// Sets the archive format.
    #[must_use]
    pub fn format(mut self, format: ArchiveFormat) -> Self {
        self.format = format;
        self
    }

    /// The archive's file name, e.g. `hello-1.0-0.conda`.
    pub fn file_name(&self) -> String {
        let ext = match self.format {
            ArchiveFormat::Conda => "conda",
            ArchiveFormat::TarBz2 => "tar.bz2",
        };
        format!("{}-{}-{}.{ext}", self.name, self.version, self.build)
    }

    /// Writes the package archive into `channel/<subdir>/` and returns its path.
    pub fn write_into(&self, channel: &Path) -> Result<PathBuf> {
        let channel_err = |message: String| EnvError::Channel {
            path: channel.to_path_buf(),
            message,
        };
        let staging = tempfile::tempdir().map_err(|e| EnvError::io(std::env::temp_dir(), e))?;
        let root = staging.path();
        let mut paths = Vec::new();
        let mut entries = Vec::new();
        let mut has_prefix = String::new();
        for file in &self.files {
            let target = root.join(&file.path);
            if let Some(parent) = target.parent() {
                fs_err::create_dir_all(parent)?;
            }
            let listed = file.listed_as.as_deref().unwrap_or(&file.path);
            let mut entry = if let Some(link) = &file.symlink_to {
                symlink(link, &target)?;
                json!({ "_path": listed, "path_type": "softlink" })
            } else {
                fs_err::write(&target, &file.contents)?;
                let default = if file.executable { 0o755 } else { 0o644 };
                set_mode(&target, file.mode.unwrap_or(default))?;
                let sha = rattler_digest::compute_bytes_digest::<Sha256>(&file.contents);
                json!({
                    "_path": listed,
                    "path_type": "hardlink",
                    "sha256": hex::encode(sha),
                    "size_in_bytes": file.contents.len(),
                })
            };
            paths.push(target);
            if file.unlisted {
                continue;
            }
            if file.has_prefix {
                if let Some(obj) = entry.as_object_mut() {
                    obj.insert("file_mode".into(), json!("text"));
                    obj.insert("prefix_placeholder".into(), json!(PREFIX_PLACEHOLDER));
                }
                let _ = writeln!(has_prefix, "{PREFIX_PLACEHOLDER} text {listed}");
            }
            entries.push(entry);
        }
        let (platform, arch) = match self.subdir.as_str() {
            "noarch" => (None, None),
            other => {
                let mut parts = other.splitn(2, '-');
                let os = parts.next().map(str::to_owned);
                let arch = match parts.next() {
                    Some("64") => Some("x86_64".to_owned()),
                    Some(a) => Some(a.to_owned()),
                    None => None,
                };
                (os, arch)
            }
        };
        let mut index = json!({
            "name": self.name,
            "version": self.version,
            "build": self.build,
            "build_number": self.build_number,
            "depends": self.depends,
            "constrains": self.constrains,
            "license": "MIT",
            "subdir": self.subdir,
            "timestamp": 1_700_000_000_000_u64,
            "platform": platform,
            "arch": arch,
        });
        if self.subdir == "noarch"
            && let Some(obj) = index.as_object_mut()
        {
            let kind = if self.python_entry_points.is_some() {
                "python"
            } else {
                "generic"
            };
            obj.insert("noarch".into(), json!(kind));
        }
        let info = root.join("info");
        fs_err::create_dir_all(&info)?;
        let write_json = |name: &str, value: &serde_json::Value| -> Result<PathBuf> {
            let path = info.join(name);
            let text = serde_json::to_string_pretty(value)
                .map_err(|e| channel_err(format!("serialising {name}: {e}")))?;
            fs_err::write(&path, text)?;
            Ok(path)
        };
        paths.push(write_json("index.json", &index)?);
        if !self.legacy_metadata {
            paths.push(write_json(
                "paths.json",
                &json!({ "paths": entries, "paths_version": 1 }),
            )?);
        }
        if let Some(entry_points) = &self.python_entry_points {
            paths.push(write_json(
                "link.json",
                &json!({
                    "noarch": { "type": "python", "entry_points": entry_points },
                    "package_metadata_version": 1,
                }),
            )?);
        }
        let files_list =
            self.files
                .iter()
                .filter(|f| !f.unlisted)
                .fold(String::new(), |mut text, f| {
                    text.push_str(f.listed_as.as_deref().unwrap_or(&f.path));
                    text.push('\n');
                    text
                });
        let files_path = info.join("files");
        fs_err::write(&files_path, files_list)?;
        paths.push(files_path);
        if !has_prefix.is_empty() {
            let p = info.join("has_prefix");
            fs_err::write(&p, has_prefix)?;
            paths.push(p);
        }

        let subdir_dir = channel.join(&self.subdir);
        fs_err::create_dir_all(&subdir_dir)?;
        let out = subdir_dir.join(self.file_name());
        let mut file = fs_err::File::create(&out)?;
        let stem = format!("{}-{}-{}", self.name, self.version, self.build);
        match self.format {
            ArchiveFormat::Conda => rattler_package_streaming::write::write_conda_package(
                &mut file,
                root,
                &paths,
                CompressionLevel::Default,
                Some(1),
                &stem,
                None,
                None,
            ),
            ArchiveFormat::TarBz2 => rattler_package_streaming::write::write_tar_bz2_package(
                &mut file,
                root,
                &paths,
                CompressionLevel::Default,
                None,
                None,
            ),
        }
        .map_err(|e| channel_err(format!("writing {}: {e}", out.display())))?;
        file.flush()?;
        Ok(out)
    }
}

#[cfg(unix)]
fn set_mode(path: &Path, mode: u32) -> Result<()> {
    use std::os::unix::fs::PermissionsExt as _;
    fs_err::set_permissions(path, std::fs::Permissions::from_mode(mode))?;
    Ok(())
}

#[cfg(unix)]
fn symlink(target: &str, path: &Path) -> Result<()> {
    std::os::unix::fs::symlink(target, path).map_err(|e| EnvError::io(path, e))
}

#[cfg(not(unix))]
fn symlink(_target: &str, path: &Path) -> Result<()> {
    Err(EnvError::io(
        path,
        std::io::Error::other("symbolic links in test packages need unix"),
    ))
}

#[cfg(not(unix))]
fn set_mode(_path: &Path, _mode: u32) -> Result<()> {
    Ok(())
}

/// Writes `repodata.json` for every subdir of the channel in `dir` (and an empty `noarch`
/// index when there is none, which conda clients expect), as `conda index` does: each
/// package's `info/index.json` with the archive's size, SHA-256 and MD5, under its file name.
pub fn index_channel(dir: &Path) -> Result<()> {
    use rattler_conda_types::PackageRecord;
    use rattler_conda_types::package::IndexJson;
    let err = |path: &Path, message: String| EnvError::Channel {
        path: path.to_path_buf(),
        message,
    };
    fs_err::create_dir_all(dir.join("noarch"))?;
    for subdir in fs_err::read_dir(dir)? {
        let subdir = subdir?;
        if !subdir.file_type()?.is_dir() {
            continue;
        }
        let mut packages = serde_json::Map::new();
        let mut conda_packages = serde_json::Map::new();
        let mut files: Vec<PathBuf> = fs_err::read_dir(subdir.path())?
            .filter_map(|e| e.ok().map(|e| e.path()))
            .collect();
        files.sort();
        for path in files {
            let name = path
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default();
            let table = match rattler_conda_types::package::CondaArchiveType::try_from(&path) {
                Some(rattler_conda_types::package::CondaArchiveType::Conda) => &mut conda_packages,
                Some(rattler_conda_types::package::CondaArchiveType::TarBz2) => &mut packages,
                None => continue,
            };
            let index: IndexJson = rattler_package_streaming::seek::read_package_file(&path)
                .map_err(|e| err(&path, format!("cannot read info/index.json: {e}")))?;
            let bytes = fs_err::read(&path)?;
            let record = PackageRecord::from_index_json(
                index,
                Some(bytes.len() as u64),
                Some(rattler_digest::compute_bytes_digest::<Sha256>(&bytes)),
                Some(rattler_digest::compute_bytes_digest::<rattler_digest::Md5>(
                    &bytes,
                )),
            )
            .map_err(|e| err(&path, e.to_string()))?;
            let value = serde_json::to_value(&record).map_err(|e| err(&path, e.to_string()))?;
            table.insert(name, value);
        }
        let repodata = json!({
            "info": { "subdir": subdir.file_name().to_string_lossy() },
            "packages": packages,
            "packages.conda": conda_packages,
            "removed": [],
            "repodata_version": 1,
        });
        let text = serde_json::to_string_pretty(&repodata)
            .map_err(|e| err(&subdir.path(), e.to_string()))?;
        fs_err::write(subdir.path().join("repodata.json"), text)?;
    }
    Ok(())
}

/// Builds `packages` into `dir` and indexes it.
pub fn build_channel(dir: &Path, packages: &[PackageBuild]) -> Result<Url> {
    fs_err::create_dir_all(dir)?;
    for package in packages {
        package.write_into(dir)?;
    }
    index_channel(dir)?;
    let canonical = fs_err::canonicalize(dir)?;
    Url::from_directory_path(&canonical).map_err(|()| EnvError::Channel {
        path: canonical.clone(),
        message: "not an absolute path".to_owned(),
    })
}

/// Offline settings with everything under `root`: channels under `root/channels` (so
/// `channel` there is the default channel, by name), envs, package cache and repodata cache.
pub fn offline_settings(
    root: &Path,
    channel: &str,
    verify: crate::config::Verify,
) -> Result<crate::config::Settings> {
    let channels = root.join("channels");
    let channel_alias = Url::from_directory_path(&channels).map_err(|()| EnvError::Channel {
        path: channels.clone(),
        message: "not an absolute path".to_owned(),
    })?;
    Ok(crate::config::Settings {
        default_channels: vec![channel.to_owned()],
        channel_alias,
        envs_dir: root.join("envs"),
        extra_envs_dirs: Vec::new(),
        pkgs_dir: root.join("pkgs"),
        pkgs_layers: Vec::new(),
        offline: true,
        verify,
        environments_txt: root.join("environments.txt"),
        repodata_cache: root.join("repodata"),
        cwd: root.to_path_buf(),
    })
}

/// The packages of the demo channel: `hello` (a script that greets from its prefix) depending
/// on `greeting-data`, with two versions of each.
pub fn demo_packages() -> Vec<PackageBuild> {
    vec![
        PackageBuild::new("greeting-data", "1.0").file(PackageFile::data(
            "share/greeting-data/greeting.txt",
            "Hello\n",
        )),
        PackageBuild::new("greeting-data", "2.0").file(PackageFile::data(
            "share/greeting-data/greeting.txt",
            "Hello again\n",
        )),
        PackageBuild::new("hello", "1.0")
            .depends(&["greeting-data 1.*"])
            .file(PackageFile::script(
                "hello",
                "echo \"$(cat \"$PREFIX/share/greeting-data/greeting.txt\") from $PREFIX\"",
            )),
        PackageBuild::new("hello", "2.0")
            .depends(&["greeting-data >=2"])
            .file(PackageFile::script(
                "hello",
                "echo \"$(cat \"$PREFIX/share/greeting-data/greeting.txt\") from $PREFIX (v2)\"",
            )),
    ]
}

/// Builds the demo channel in `dir` and returns its `file://` URL.
pub fn build_demo_channel(dir: &Path) -> Result<Url> {
    build_channel(dir, &demo_packages())
}

/// The packages the integration tests use: several names and versions, dependencies,
/// `noarch` and `linux-64`, both archive formats, prefix placeholders and scripts.
pub fn test_packages() -> Vec<PackageBuild> {
    let mut packages = demo_packages();
    packages.extend([
        PackageBuild::new("libfoo", "1.0")
            .subdir("linux-64")
            .build("h0", 0)
            .file(PackageFile::data("lib/libfoo.txt", "libfoo 1.0\n")),
        PackageBuild::new("libfoo", "1.2")
            .subdir("linux-64")
            .build("h0", 0)
            .format(ArchiveFormat::TarBz2)
            .file(PackageFile::data("lib/libfoo.txt", "libfoo 1.2\n")),
        PackageBuild::new("foo-tools", "0.3")
            .subdir("linux-64")
            .build("h1", 1)
            .depends(&["libfoo >=1.0", "__glibc >=2.17"])
            .file(PackageFile::script(
                "foo-tool",
                "echo \"foo-tool in $PREFIX\"; exit \"${1:-0}\"",
            ))
            .file(PackageFile {
                path: "etc/foo-tools/config.txt".to_owned(),
                contents: format!("prefix = {PREFIX_PLACEHOLDER}\n").into_bytes(),
                executable: false,
                has_prefix: true,
                mode: None,
                symlink_to: None,
                listed_as: None,
                unlisted: false,
            }),
        PackageBuild::new("needs-old-foo", "1.0").depends(&["libfoo <1.0"]),
        PackageBuild::new("gpu-kernels", "1.0")
            .subdir("linux-64")
            .depends(&["__cuda >=12"]),
    ]);
    packages
}
