//! `environment.yml` as conda reads it: `name`, `prefix`, `channels`, `dependencies` (match
//! specs, `channel::pkg`, a nested `pip:` list) and `variables:`.
//!
//! Parsed by hand on top of `serde_yaml` values so that every mistake names the file, the line
//! and the field (`dependencies[2]`), which the upstream parser cannot do.

use std::path::{Path, PathBuf};

use rattler_conda_types::{MatchSpec, ParseStrictness};
use serde_yaml::Value;

use crate::error::{EnvError, Result};

/// A parsed `environment.yml`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct EnvironmentFile {
    /// The file it came from.
    pub path: PathBuf,
    /// `name:`.
    pub name: Option<String>,
    /// `prefix:`.
    pub prefix: Option<PathBuf>,
    /// `channels:` in order.
    pub channels: Vec<String>,
    /// Conda match specs from `dependencies:`, as written.
    pub specs: Vec<String>,
    /// The `pip:` entries, verbatim.
    pub pip: Vec<String>,
    /// `variables:` in order.
    pub variables: Vec<(String, String)>,
}

impl EnvironmentFile {
    /// Reads and validates `path`.
    pub fn from_path(path: &Path) -> Result<Self> {
        let text = fs_err::read_to_string(path)?;
        Self::parse(path, &text)
    }

    /// Parses `text`, naming `path` in errors.
    pub fn parse(path: &Path, text: &str) -> Result<Self> {
        let err = |line: usize, field: &str, message: String| EnvError::EnvironmentYaml {
            path: path.to_path_buf(),
            line,
            field: field.to_owned(),
            message,
        };
        let root: Value = serde_yaml::from_str(text)
            .map_err(|e| err(e.location().map_or(0, |l| l.line()), "", e.to_string()))?;
        let mut out = Self {
            path: path.to_path_buf(),
            ..Self::default()
        };
        let Value::Mapping(map) = root else {
            if root.is_null() {
                return Ok(out);
            }
            return Err(err(1, "", "expected a mapping with `dependencies:`".into()));
        };
        for (key, value) in &map {
            let Some(key) = key.as_str() else {
                return Err(err(0, "", "keys must be strings".into()));
            };
            let key_line = top_level_line(text, key);
            match key {
                "name" => {
                    out.name = Some(
                        scalar(value)
                            .ok_or_else(|| err(key_line, "name", "expected a string".into()))?,
                    );
                }
                "prefix" => {
                    out.prefix =
                        Some(PathBuf::from(scalar(value).ok_or_else(|| {
                            err(key_line, "prefix", "expected a path".into())
                        })?));
                }
                "channels" => {
                    let lines = item_lines(text, "channels");
                    for (i, item) in sequence(value, key_line, "channels", path)?
                        .iter()
                        .enumerate()
                    {
                        let field = format!("channels[{i}]");
                        let line = lines.get(i).copied().unwrap_or(key_line);
                        let channel = scalar(item).ok_or_else(|| {
                            err(line, &field, "expected a channel name or URL".into())
                        })?;
                        out.channels.push(channel);
                    }
                }
                "dependencies" => {
                    let lines = item_lines(text, "dependencies");
                    for (i, item) in sequence(value, key_line, "dependencies", path)?
                        .iter()
                        .enumerate()
                    {
                        let field = format!("dependencies[{i}]");
                        let line = lines.get(i).copied().unwrap_or(key_line);
                        match item {
                            Value::String(spec) => {
                                MatchSpec::from_str(spec, ParseStrictness::Lenient).map_err(
                                    |e| {
                                        err(
                                            line,
                                            &field,
                                            format!("invalid package spec `{spec}`: {e}"),
                                        )
                                    },
                                )?;
                                out.specs.push(spec.clone());
                            }
                            Value::Mapping(section) => {
                                for (sub_key, sub_value) in section {
                                    match sub_key.as_str() {
                                        Some("pip") => {
                                            let Value::Sequence(lines) = sub_value else {
                                                return Err(err(
                                                    line,
                                                    &format!("{field}.pip"),
                                                    "expected a list of requirements".into(),
                                                ));
                                            };
                                            for (j, entry) in lines.iter().enumerate() {
                                                let entry = scalar(entry).ok_or_else(|| {
                                                    err(
                                                        line,
                                                        &format!("{field}.pip[{j}]"),
                                                        "expected a requirement string".into(),
                                                    )
                                                })?;
                                                out.pip.push(entry);
                                            }
                                        }
                                        Some(other) => {
                                            return Err(err(
                                                line,
                                                &format!("{field}.{other}"),
                                                "only a `pip:` subsection is supported".into(),
                                            ));
                                        }
                                        None => {
                                            return Err(err(
                                                line,
                                                &field,
                                                "subsection keys must be strings".into(),
                                            ));
                                        }
                                    }
                                }
                            }
                            _ => {
                                return Err(err(
                                    line,
                                    &field,
                                    "expected a package spec such as `numpy=1.26` or a `pip:` list"
                                        .into(),
                                ));
                            }
                        }
                    }
                }
                "variables" => {
                    let Value::Mapping(vars) = value else {
                        if value.is_null() {
                            continue;
                        }
                        return Err(err(
                            key_line,
                            "variables",
                            "expected a mapping of NAME: value".into(),
                        ));
                    };
                    for (name, value) in vars {
                        let (Some(name), Some(value)) = (name.as_str(), scalar(value)) else {
                            return Err(err(
                                key_line,
                                "variables",
                                "expected NAME: value pairs of strings".into(),
                            ));
                        };
                        out.variables.push((name.to_owned(), value));
                    }
                }
                other => {
                    tracing::warn!(
                        "{}:{key_line}: ignoring unknown field `{other}`",
                        path.display()
                    );
                }
            }
        }
        Ok(out)
    }

    /// Parses the specs into match specs (channel names are resolved later, against the
    /// configured alias).
    pub fn match_specs(&self) -> Result<Vec<MatchSpec>> {
        self.specs
            .iter()
            .map(|s| {
                MatchSpec::from_str(s, ParseStrictness::Lenient).map_err(|e| {
                    EnvError::InvalidSpec {
                        spec: s.clone(),
                        message: e.to_string(),
                    }
                })
            })
            .collect()
    }
}

fn sequence<'a>(value: &'a Value, line: usize, field: &str, path: &Path) -> Result<&'a [Value]> {
    match value {
        Value::Sequence(items) => Ok(items),
        Value::Null => Ok(&[]),
        _ => Err(EnvError::EnvironmentYaml {
            path: path.to_path_buf(),
            line,
            field: field.to_owned(),
            message: "expected a list".to_owned(),
        }),
    }
}

/// Strings, numbers and booleans as text (`python=3.11` may arrive as a string, `3.11` as a
/// number in `variables:`).
fn scalar(value: &Value) -> Option<String> {
    match value {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        Value::Bool(b) => Some(b.to_string()),
        _ => None,
    }
}

/// The 1-based line of a top-level `key:`.
fn top_level_line(text: &str, key: &str) -> usize {
    text.lines()
        .position(|l| {
            l.strip_prefix(key)
                .is_some_and(|rest| rest.trim_start().starts_with(':'))
        })
        .map_or(0, |i| i + 1)
}

/// The 1-based lines of the `- ` items under a top-level `key:` (block style only), in one
/// pass: looking each item up from the top made a long `dependencies:` quadratic (issue 22).
fn item_lines(text: &str, key: &str) -> Vec<usize> {
    let start = top_level_line(text, key);
    let mut lines = Vec::new();
    if start == 0 {
        return lines;
    }
    let mut item_indent = None;
    for (offset, line) in text.lines().enumerate().skip(start) {
        let trimmed = line.trim_start();
        if trimmed.is_empty() || trimmed.starts_with('#') {
            continue;
        }
        let indent = line.len() - trimmed.len();
        if indent == 0 && !trimmed.starts_with('-') {
            break;
        }
        if trimmed.starts_with('-') && indent == *item_indent.get_or_insert(indent) {
            lines.push(offset + 1);
        }
    }
    lines
}

#[cfg(test)]
mod tests {
    use super::*;

    const GOOD: &str = "name: nlp\nchannels:\n  - conda-forge\ndependencies:\n  - python=3.11\n  - conda-forge::numpy\n  - pip:\n      - requests==2.0\n      - -e .\nvariables:\n  FOO: bar\n  N: 3\n";

    #[test]
    fn parses_all_fields() {
        let env = EnvironmentFile::parse(Path::new("e.yml"), GOOD).unwrap();
        assert_eq!(env.name.as_deref(), Some("nlp"));
        assert_eq!(env.channels, vec!["conda-forge"]);
        assert_eq!(env.specs, vec!["python=3.11", "conda-forge::numpy"]);
        assert_eq!(env.pip, vec!["requests==2.0", "-e ."]);
        assert_eq!(
            env.variables,
            vec![("FOO".into(), "bar".into()), ("N".into(), "3".into())]
        );
    }

    #[test]
    fn bad_spec_names_line_and_field() {
        let text = "name: x\ndependencies:\n  - hello\n  - 'hello >=>=1'\n";
        let err = EnvironmentFile::parse(Path::new("env.yml"), text)
            .unwrap_err()
            .to_string();
        assert!(
            err.starts_with("env.yml:4: field `dependencies[1]`"),
            "{err}"
        );
    }

    #[test]
    fn syntax_error_names_line() {
        let text = "name: x\ndependencies:\n  - a\n - b: [\n";
        let err = EnvironmentFile::parse(Path::new("env.yml"), text)
            .unwrap_err()
            .to_string();
        assert!(err.starts_with("env.yml:"), "{err}");
        assert!(!err.starts_with("env.yml:0"), "{err}");
    }

    /// Issue 22, item 7: parsing grows linearly with the number of dependencies (it was
    /// quadratic: 20,000 took 7.7 s). Eight times the dependencies may take at most 24 times
    /// as long (linear is 8, quadratic 64); the smaller run is repeated to steady the clock.
    #[test]
    fn issue_22_parsing_is_linear_in_the_number_of_dependencies() {
        use std::fmt::Write as _;
        let document = |n: usize| {
            let mut text = String::from("name: big\ndependencies:\n");
            for i in 0..n {
                let _ = writeln!(text, "  - pkg{i} >=1.{i}");
            }
            text
        };
        let time = |n: usize| {
            let text = document(n);
            let start = std::time::Instant::now();
            let env = EnvironmentFile::parse(Path::new("big.yml"), &text).unwrap();
            assert_eq!(env.specs.len(), n);
            start.elapsed()
        };
        let small = (0..3).map(|_| time(2_500)).min().unwrap();
        let large = time(20_000);
        assert!(
            large < small * 24,
            "2,500 dependencies: {small:?}, 20,000: {large:?}"
        );
        // Errors still name the right line deep in a long list.
        let mut text = document(5_000);
        text.push_str("  - [1, 2]\n");
        let err = EnvironmentFile::parse(Path::new("big.yml"), &text)
            .unwrap_err()
            .to_string();
        assert!(
            err.starts_with("big.yml:5003: field `dependencies[5000]`"),
            "{err}"
        );
    }

    #[test]
    fn wrong_type_names_field() {
        let text = "dependencies:\n  - a\n  - [1, 2]\n";
        let err = EnvironmentFile::parse(Path::new("env.yml"), text)
            .unwrap_err()
            .to_string();
        assert!(
            err.starts_with("env.yml:3: field `dependencies[1]`"),
            "{err}"
        );
    }
}
