//! The `pip:` section of `environment.yml`, installed the way conda does it: the entries are
//! written verbatim to a requirements file next to the yml and installed with the environment's
//! own interpreter, from the yml's directory (so `-e .` and `--index-url` lines work).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;

use crate::error::{EnvError, Result};

/// The requirements file written next to `environment.yml`.
pub fn requirements_path(yml: &Path) -> PathBuf {
    let dir = yml.parent().unwrap_or_else(|| Path::new("."));
    let stem = yml.file_stem().map_or_else(
        || "environment".into(),
        |s| s.to_string_lossy().into_owned(),
    );
    dir.join(format!("{stem}.airlock-pip-requirements.txt"))
}

/// Finds `program` on `PATH`.
pub fn which(program: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|d| d.join(program))
        .find(|p| p.is_file())
}

/// Asks the environment's interpreter, which also sees a venv it delegates to: one JSON line
/// per distribution.
const LIST_SCRIPT: &str = r"import importlib.metadata as m, json
for d in m.distributions():
    print(json.dumps({'name': d.metadata['Name'], 'version': d.version,
        'installer': (d.read_text('INSTALLER') or '').strip(),
        'direct_url': d.read_text('direct_url.json'), 'requires': d.requires or [],
        'requires_python': d.metadata['Requires-Python']}))
";

/// A distribution as the environment's interpreter reports it.
#[derive(Debug, Clone, serde::Deserialize)]
pub struct Installed {
    /// The name as its metadata spells it.
    pub name: String,
    /// Its version.
    pub version: String,
    /// `INSTALLER` (`conda`, `pip`, `uv`, or empty).
    pub installer: String,
    /// PEP 610 `direct_url.json`, for a distribution installed from a URL.
    pub direct_url: Option<String>,
    /// `Requires-Dist`.
    pub requires: Vec<String>,
    /// `Requires-Python`.
    pub requires_python: Option<String>,
}

/// The distributions the environment's own `python` sees (`importlib.metadata`); `None`
/// without a working interpreter.
pub fn installed(prefix: &Path) -> Option<Vec<Installed>> {
    let python = prefix.join("bin").join("python");
    if !python.exists() {
        return None;
    }
    let output = Command::new(&python)
        .args(["-I", "-c", LIST_SCRIPT])
        .stderr(std::process::Stdio::null())
        .output()
        .ok()
        .filter(|o| o.status.success())?;
    Some(
        String::from_utf8_lossy(&output.stdout)
            .lines()
            .filter_map(|line| serde_json::from_str(line).ok())
            .collect(),
    )
}

/// Installed Python distributions in `prefix`: normalised name → (version, installer).
///
/// The environment's own `python` is asked first ([`installed`]); without one, the
/// `site-packages` directories are scanned.
pub fn distributions(prefix: &Path) -> BTreeMap<String, (String, String)> {
    if let Some(found) = installed(prefix) {
        return found
            .into_iter()
            .map(|d| (normalize(&d.name), (d.version, d.installer)))
            .collect();
    }
    let mut out = BTreeMap::new();
    let Ok(libs) = fs_err::read_dir(prefix.join("lib")) else {
        return out;
    };
    for lib in libs.flatten() {
        let site = lib.path().join("site-packages");
        let Ok(entries) = fs_err::read_dir(&site) else {
            continue;
        };
        for entry in entries.flatten() {
            let file = entry.file_name();
            let file = file.to_string_lossy();
            let Some(stem) = file.strip_suffix(".dist-info") else {
                continue;
            };
            let Some((name, version)) = stem.split_once('-') else {
                continue;
            };
            let installer = fs_err::read_to_string(entry.path().join("INSTALLER"))
                .map(|s| s.trim().to_owned())
                .unwrap_or_default();
            out.insert(normalize(name), (version.to_owned(), installer));
        }
    }
    out
}

/// PEP 503 normalisation.
pub fn normalize(name: &str) -> String {
    let mut out = String::with_capacity(name.len());
    let mut dash = false;
    for c in name.chars() {
        if matches!(c, '-' | '_' | '.') {
            dash = true;
        } else {
            if dash && !out.is_empty() {
                out.push('-');
            }
            dash = false;
            out.push(c.to_ascii_lowercase());
        }
    }
    out
}

/// Writes `lines` verbatim to the requirements file next to `yml`; returns its path.
pub fn write_requirements(yml: &Path, lines: &[String]) -> Result<PathBuf> {
    let requirements = requirements_path(yml);
    let text = lines.iter().fold(String::new(), |mut text, l| {
        text.push_str(l);
        text.push('\n');
        text
    });
    crate::envs::write_atomic(&requirements, text.as_bytes())?;
    Ok(requirements)
}

/// The directory the pip lines of `yml` are run from (relative paths in them are relative to it).
pub fn yml_dir(yml: &Path) -> Option<&Path> {
    yml.parent().filter(|d| !d.as_os_str().is_empty())
}

/// Writes `lines` to the requirements file next to `yml` and installs them into `prefix`
/// with `uv` when it is on `PATH`, else with the environment's `python -m pip`.
pub fn install(prefix: &Path, yml: &Path, lines: &[String], conda_names: &[String]) -> Result<()> {
    let requirements = write_requirements(yml, lines)?;
    let requirements = requirements.as_os_str();
    let mut command = installer(
        prefix,
        &["-r".as_ref(), requirements],
        &[
            "-U".as_ref(),
            "-r".as_ref(),
            requirements,
            "--exists-action=b".as_ref(),
        ],
    )?;
    if let Some(dir) = yml_dir(yml) {
        command.current_dir(dir);
    }
    run_install(prefix, command, conda_names)
}

/// `uv pip install --python PREFIX/bin/python UV_ARGS` when `uv` is on `PATH`, else
/// `PREFIX/bin/python -m pip install PIP_ARGS`.
pub(crate) fn installer(
    prefix: &Path,
    uv_args: &[&std::ffi::OsStr],
    pip_args: &[&std::ffi::OsStr],
) -> Result<Command> {
    let python = prefix.join("bin").join("python");
    if !python.exists() {
        return Err(EnvError::Pip {
            command: "pip".to_owned(),
            message: format!(
                "the environment has no interpreter at {}; add `python` to the dependencies",
                python.display()
            ),
        });
    }
    Ok(if let Some(uv) = which("uv") {
        let mut c = Command::new(uv);
        c.args(["pip", "install", "--python"])
            .arg(&python)
            .args(uv_args);
        c
    } else {
        let mut c = Command::new(&python);
        c.args(["-m", "pip", "install"]).args(pip_args);
        c
    })
}

/// Runs `command`, an install into `prefix`, and warns about packages conda installed that it
/// replaced.
pub(crate) fn run_install(
    prefix: &Path,
    mut command: Command,
    conda_names: &[String],
) -> Result<()> {
    let before = distributions(prefix);
    let shown = format!("{command:?}");
    tracing::info!("installing pip requirements: {shown}");
    let status = command.status().map_err(|e| EnvError::Pip {
        command: shown.clone(),
        message: e.to_string(),
    })?;
    if !status.success() {
        return Err(EnvError::Pip {
            command: shown,
            message: format!("exited with {status}"),
        });
    }
    let conda: Vec<String> = conda_names.iter().map(|n| normalize(n)).collect();
    for (name, (version, installer)) in distributions(prefix) {
        let replaced = before
            .get(&name)
            .is_some_and(|(v, i)| v != &version || i != &installer);
        if conda.contains(&name)
            && installer != "conda"
            && (replaced || !before.contains_key(&name))
        {
            tracing::warn!(
                "pip replaced `{name}`, which conda installed, with version {version}; `airlock env update` will not see this change"
            );
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn normalizes() {
        assert_eq!(normalize("Foo_Bar.baz"), "foo-bar-baz");
    }
}
