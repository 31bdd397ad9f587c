//! The policy file (`policy.toml`): parsed strictly, every error naming file, line and field.
//!
//! ```toml
//! [defaults]
//! forward = "deny"        # keys without a rule are never usable through a forwarded connection
//! confirm = "never"       # never | forwarded | always
//! known-hosts = []        # extra known_hosts files
//! rsa-min-bits = 2048     # refuse RSA keys below this (default 1024, as OpenSSH)
//!
//! [[key]]
//! name = "ai-project"                      # or fingerprint = "SHA256:..."
//! forward-through = ["gpu-node-*", "bastion"]
//! use-for = ["github.com", "gpu-node-*"]
//! confirm = "forwarded"
//! lifetime = "8h"
//! sign = ["ssh-auth", "git"]
//! ```

use std::ops::Range;
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::time::Duration;

use serde::Deserialize;
use toml::Spanned;

use crate::PolicyError;

/// The `sign` entry that stands for SSH user authentication (every other entry is an SSHSIG
/// namespace).
pub const SIGN_SSH_AUTH: &str = "ssh-auth";

/// What `[defaults] forward` says about keys without a rule.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ForwardDefault {
    /// Never usable or listed through a forwarded connection (the default when a policy exists).
    #[default]
    Deny,
    /// OpenSSH's behaviour: usable wherever the agent is reachable.
    Allow,
}

/// When to ask the user before a signature.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ConfirmMode {
    /// Never ask.
    #[default]
    Never,
    /// Ask when the request came through a forwarded hop.
    Forwarded,
    /// Always ask.
    Always,
}

impl ConfirmMode {
    /// The word used in the policy file.
    pub fn as_str(self) -> &'static str {
        match self {
            ConfirmMode::Never => "never",
            ConfirmMode::Forwarded => "forwarded",
            ConfirmMode::Always => "always",
        }
    }
}

/// `[defaults]`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Defaults {
    /// Keys without a rule through forwarded connections.
    pub forward: ForwardDefault,
    /// Confirmation for keys whose rule does not say.
    pub confirm: ConfirmMode,
    /// Extra known_hosts files (`~` expanded, relative paths against the policy's directory).
    pub known_hosts: Vec<PathBuf>,
    /// RSA keys below this many bits are refused when added (`None`: OpenSSH's 1024).
    pub rsa_min_bits: Option<u32>,
}

/// How a rule names its key.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub enum KeySelector {
    /// An airlock key name: `<keys dir>/<name>.pub`, or an agent key whose comment is the name.
    Name(String),
    /// A SHA256 fingerprint, `SHA256:...`.
    Fingerprint(String),
}

impl std::fmt::Display for KeySelector {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            KeySelector::Name(n) => f.write_str(n),
            KeySelector::Fingerprint(fp) => f.write_str(fp),
        }
    }
}

/// One `[[key]]` rule as written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyRule {
    /// Which key.
    pub key: KeySelector,
    /// Hosts whose forwarded agent may use the key; `None` (absent): none.
    pub forward_through: Option<Vec<String>>,
    /// Hosts that may receive a user-authentication signature; `None` (absent): any.
    pub use_for: Option<Vec<String>>,
    /// Overrides `[defaults] confirm`.
    pub confirm: Option<ConfirmMode>,
    /// The longest lifetime of the key in the agent.
    pub lifetime: Option<Duration>,
    /// Which signatures: `ssh-auth` and SSHSIG namespaces; `None` (absent): user authentication
    /// and, locally, any namespace.
    pub sign: Option<Vec<String>>,
    /// The line of the `[[key]]` header, for messages.
    pub line: usize,
}

/// A parsed policy file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PolicyFile {
    /// Where it was read from.
    pub path: PathBuf,
    /// `[defaults]`.
    pub defaults: Defaults,
    /// The `[[key]]` rules, in file order (the first rule that names a key wins).
    pub keys: Vec<KeyRule>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
struct RawFile {
    defaults: Option<RawDefaults>,
    #[serde(default)]
    key: Vec<Spanned<RawKey>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
struct RawDefaults {
    forward: Option<Spanned<String>>,
    confirm: Option<Spanned<toml::Value>>,
    known_hosts: Option<Spanned<Vec<Spanned<String>>>>,
    rsa_min_bits: Option<Spanned<i64>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
struct RawKey {
    name: Option<Spanned<String>>,
    fingerprint: Option<Spanned<String>>,
    forward_through: Option<Vec<Spanned<String>>>,
    use_for: Option<Vec<Spanned<String>>>,
    confirm: Option<Spanned<toml::Value>>,
    lifetime: Option<Spanned<toml::Value>>,
    sign: Option<Vec<Spanned<String>>>,
}

impl PolicyFile {
    /// Read and parse a policy file; `Ok(None)` if it does not exist.
    pub fn load(path: &Path) -> Result<Option<Self>, PolicyError> {
        match fs_err::read_to_string(path) {
            Ok(text) => Self::parse(&text, path).map(Some),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e.into()),
        }
    }

    /// Parse the text of a policy file read from `path` (used in messages and to resolve
    /// relative `known-hosts` paths).
    pub fn parse(text: &str, path: &Path) -> Result<Self, PolicyError> {
        let ctx = Ctx { text, path };
        let raw: RawFile = toml::from_str(text).map_err(|e| {
            let span = e.span().unwrap_or(0..0);
            ctx.error(&span, None, e.message().trim_end().to_owned())
        })?;
        let defaults = match raw.defaults {
            None => Defaults::default(),
            Some(d) => ctx.defaults(d)?,
        };
        let keys = raw
            .key
            .iter()
            .map(|k| ctx.key(k))
            .collect::<Result<_, _>>()?;
        Ok(Self {
            path: path.to_owned(),
            defaults,
            keys,
        })
    }
}

struct Ctx<'a> {
    text: &'a str,
    path: &'a Path,
}

impl Ctx<'_> {
    fn line_of(&self, offset: usize) -> usize {
        let end = offset.min(self.text.len());
        self.text
            .get(..end)
            .map_or(1, |t| t.bytes().filter(|&b| b == b'\n').count() + 1)
    }

    /// An error at `span`; without an explicit field, the field is read from the text: the
    /// table header above the span and the key on the span's line.
    fn error(&self, span: &Range<usize>, field: Option<&str>, message: String) -> PolicyError {
        let line = self.line_of(span.start);
        let field = field.map_or_else(|| self.field_at(line), str::to_owned);
        PolicyError::Invalid {
            file: self.path.to_owned(),
            line,
            field,
            message,
        }
    }

    fn field_at(&self, line: usize) -> String {
        let mut table = String::new();
        let mut key = String::new();
        for (i, l) in self.text.lines().enumerate().take(line) {
            let l = l.trim();
            if let Some(h) = l.strip_prefix('[') {
                h.trim_matches(|c| c == '[' || c == ']' || c == ' ')
                    .clone_into(&mut table);
                key.clear();
            } else if i + 1 == line
                && let Some((k, _)) = l.split_once('=')
            {
                k.trim().trim_matches('"').clone_into(&mut key);
            }
        }
        match (table.is_empty(), key.is_empty()) {
            (true, true) => "(top level)".to_owned(),
            (true, false) => key,
            (false, true) => table,
            (false, false) => format!("{table}.{key}"),
        }
    }

    fn defaults(&self, d: RawDefaults) -> Result<Defaults, PolicyError> {
        let forward = match d.forward {
            None => ForwardDefault::default(),
            Some(f) => match f.get_ref().as_str() {
                "deny" => ForwardDefault::Deny,
                "allow" => ForwardDefault::Allow,
                other => {
                    return Err(self.error(
                        &f.span(),
                        Some("defaults.forward"),
                        format!("unknown value {other:?}: use \"deny\" or \"allow\""),
                    ));
                }
            },
        };
        let confirm = match d.confirm {
            None => ConfirmMode::default(),
            Some(c) => self.confirm(&c, "defaults.confirm")?,
        };
        let mut known_hosts = Vec::new();
        for p in d.known_hosts.iter().flat_map(toml::Spanned::get_ref) {
            if p.get_ref().trim().is_empty() {
                return Err(self.error(
                    &p.span(),
                    Some("defaults.known-hosts"),
                    "empty path".to_owned(),
                ));
            }
            known_hosts.push(self.resolve_path(p.get_ref()));
        }
        let rsa_min_bits = match d.rsa_min_bits {
            None => None,
            Some(b) => match u32::try_from(*b.get_ref()) {
                Ok(bits) if (1024..=16384).contains(&bits) => Some(bits),
                _ => {
                    return Err(self.error(
                        &b.span(),
                        Some("defaults.rsa-min-bits"),
                        format!(
                            "{} is not a key size: use a number of bits from 1024 to 16384",
                            b.get_ref()
                        ),
                    ));
                }
            },
        };
        Ok(Defaults {
            forward,
            confirm,
            known_hosts,
            rsa_min_bits,
        })
    }

    fn resolve_path(&self, p: &str) -> PathBuf {
        if let Some(rest) = p.strip_prefix("~/")
            && let Some(home) = std::env::var_os("HOME")
        {
            return PathBuf::from(home).join(rest);
        }
        let path = PathBuf::from(p);
        if path.is_absolute() {
            path
        } else {
            self.path.parent().unwrap_or(Path::new(".")).join(path)
        }
    }

    fn confirm(
        &self,
        value: &Spanned<toml::Value>,
        field: &str,
    ) -> Result<ConfirmMode, PolicyError> {
        match value.get_ref() {
            toml::Value::Boolean(true) => Ok(ConfirmMode::Always),
            toml::Value::Boolean(false) => Ok(ConfirmMode::Never),
            toml::Value::String(s) if s == "never" => Ok(ConfirmMode::Never),
            toml::Value::String(s) if s == "forwarded" => Ok(ConfirmMode::Forwarded),
            toml::Value::String(s) if s == "always" => Ok(ConfirmMode::Always),
            other => Err(self.error(
                &value.span(),
                Some(field),
                format!("unknown value {other}: use \"never\", \"forwarded\" or \"always\""),
            )),
        }
    }

    fn key(&self, spanned: &Spanned<RawKey>) -> Result<KeyRule, PolicyError> {
        let k = spanned.get_ref();
        let header = spanned.span();
        let key = match (&k.name, &k.fingerprint) {
            (Some(n), None) => {
                let name = n.get_ref();
                if name.is_empty()
                    || name.contains(['/', '\\'])
                    || name.starts_with('.')
                    || name.contains(char::is_whitespace)
                {
                    return Err(self.error(
                        &n.span(),
                        Some("key.name"),
                        format!(
                            "{name:?} is not a key name (letters, digits, '-', '_', '.'; no '/')"
                        ),
                    ));
                }
                KeySelector::Name(name.clone())
            }
            (None, Some(f)) => {
                let fp = ssh_key::Fingerprint::from_str(f.get_ref()).map_err(|_| {
                    self.error(
                        &f.span(),
                        Some("key.fingerprint"),
                        format!("{:?} is not a fingerprint: use the SHA256:... form `ssh-keygen -lf KEY.pub` prints", f.get_ref()),
                    )
                })?;
                if fp.algorithm() != ssh_key::HashAlg::Sha256 {
                    return Err(self.error(
                        &f.span(),
                        Some("key.fingerprint"),
                        "use a SHA256 fingerprint".to_owned(),
                    ));
                }
                KeySelector::Fingerprint(fp.to_string())
            }
            (Some(n), Some(_)) => {
                return Err(self.error(
                    &n.span(),
                    Some("key.name"),
                    "give either name or fingerprint, not both".to_owned(),
                ));
            }
            (None, None) => {
                return Err(self.error(
                    &header,
                    Some("key"),
                    "a [[key]] rule needs name = \"...\" or fingerprint = \"SHA256:...\""
                        .to_owned(),
                ));
            }
        };
        let forward_through = k
            .forward_through
            .as_deref()
            .map(|p| self.patterns(p, "key.forward-through"))
            .transpose()?;
        let use_for = k
            .use_for
            .as_deref()
            .map(|p| self.patterns(p, "key.use-for"))
            .transpose()?;
        let confirm = k
            .confirm
            .as_ref()
            .map(|c| self.confirm(c, "key.confirm"))
            .transpose()?;
        let lifetime = k.lifetime.as_ref().map(|l| self.lifetime(l)).transpose()?;
        let sign = match &k.sign {
            None => None,
            Some(list) => {
                let mut out = Vec::new();
                for s in list {
                    let v = s.get_ref();
                    if v.is_empty() || v.contains(char::is_whitespace) {
                        return Err(self.error(
                            &s.span(),
                            Some("key.sign"),
                            format!("{v:?} is neither \"ssh-auth\" nor an SSHSIG namespace"),
                        ));
                    }
                    out.push(v.clone());
                }
                Some(out)
            }
        };
        Ok(KeyRule {
            key,
            forward_through,
            use_for,
            confirm,
            lifetime,
            sign,
            line: self.line_of(header.start),
        })
    }

    fn patterns(&self, list: &[Spanned<String>], field: &str) -> Result<Vec<String>, PolicyError> {
        let mut out = Vec::new();
        for p in list {
            let v = p.get_ref();
            let body = v.strip_prefix('!').unwrap_or(v);
            if body.is_empty() {
                return Err(self.error(&p.span(), Some(field), "empty host pattern".to_owned()));
            }
            if v.contains(',') {
                return Err(self.error(
                    &p.span(),
                    Some(field),
                    format!("{v:?}: write one pattern per string, e.g. [\"a\", \"b\"]"),
                ));
            }
            if v.contains(char::is_whitespace) {
                return Err(self.error(
                    &p.span(),
                    Some(field),
                    format!("{v:?}: a host pattern has no spaces"),
                ));
            }
            out.push(v.clone());
        }
        Ok(out)
    }

    fn lifetime(&self, value: &Spanned<toml::Value>) -> Result<Duration, PolicyError> {
        let parsed = match value.get_ref() {
            toml::Value::Integer(n) if *n > 0 => u64::try_from(*n).ok().map(Duration::from_secs),
            toml::Value::String(s) => parse_duration(s),
            _ => None,
        };
        parsed.ok_or_else(|| {
            self.error(
                &value.span(),
                Some("key.lifetime"),
                format!(
                    "{} is not a lifetime: use e.g. \"8h\", \"90m\", \"1h30m\" or seconds",
                    value.get_ref()
                ),
            )
        })
    }
}

/// Parse a duration as `sshd_config(5)` TIME FORMATS: `NUMBER[s|m|h|d|w]` groups (`1h30m`), a
/// bare number is seconds. Zero and overflow are rejected.
pub fn parse_duration(text: &str) -> Option<Duration> {
    let text = text.trim();
    let mut total: u64 = 0;
    let mut number: Option<u64> = None;
    for c in text.chars() {
        if let Some(d) = c.to_digit(10) {
            number = Some(
                number
                    .unwrap_or(0)
                    .checked_mul(10)?
                    .checked_add(u64::from(d))?,
            );
            continue;
        }
        let unit: u64 = match c.to_ascii_lowercase() {
            's' => 1,
            'm' => 60,
            'h' => 3600,
            'd' => 86_400,
            'w' => 604_800,
            _ => return None,
        };
        total = total.checked_add(number.take()?.checked_mul(unit)?)?;
    }
    if let Some(n) = number {
        total = total.checked_add(n)?;
    }
    (total > 0).then(|| Duration::from_secs(total))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<PolicyFile, PolicyError> {
        PolicyFile::parse(text, Path::new("/cfg/policy.toml"))
    }

    fn err(text: &str) -> String {
        parse(text).unwrap_err().to_string()
    }

    #[test]
    fn full_file() {
        let p = parse(
            r#"
[defaults]
forward = "allow"
confirm = "forwarded"
known-hosts = ["extra_hosts", "/abs/hosts"]

[[key]]
name = "ai-project"
forward-through = ["gpu-node-*", "bastion"]
use-for = ["github.com", "!evil.github.com"]
confirm = "always"
lifetime = "8h"
sign = ["ssh-auth", "git"]

[[key]]
fingerprint = "SHA256:uO5mR8hPZ0aI8o8FvBLPHSNq0UeOTj5G2ZEEzZUo7LA"
confirm = false
lifetime = 3600
"#,
        )
        .unwrap();
        assert_eq!(p.defaults.forward, ForwardDefault::Allow);
        assert_eq!(p.defaults.confirm, ConfirmMode::Forwarded);
        assert_eq!(
            p.defaults.known_hosts,
            vec![
                PathBuf::from("/cfg/extra_hosts"),
                PathBuf::from("/abs/hosts")
            ]
        );
        let k = &p.keys[0];
        assert_eq!(k.key, KeySelector::Name("ai-project".into()));
        assert_eq!(k.line, 7);
        assert_eq!(k.lifetime, Some(Duration::from_hours(8)));
        assert_eq!(k.confirm, Some(ConfirmMode::Always));
        assert_eq!(
            k.use_for.as_deref(),
            Some(&["github.com".to_owned(), "!evil.github.com".to_owned()][..])
        );
        assert_eq!(p.keys[1].lifetime, Some(Duration::from_hours(1)));
        assert_eq!(p.keys[1].confirm, Some(ConfirmMode::Never));
        assert!(
            matches!(p.keys[1].key, KeySelector::Fingerprint(ref f) if f.starts_with("SHA256:"))
        );
    }

    #[test]
    fn empty_file_is_deny_by_default() {
        let p = parse("").unwrap();
        assert_eq!(p.defaults.forward, ForwardDefault::Deny);
        assert!(p.keys.is_empty());
    }

    #[test]
    fn errors_name_file_line_and_field() {
        let e = err("[[key]]\nname = \"a\"\nuse_for = [\"x\"]\n");
        assert!(
            e.starts_with("/cfg/policy.toml:3: key.use_for: unknown field `use_for`"),
            "{e}"
        );
        let e = err("[defaults]\nforward = \"maybe\"\n");
        assert!(
            e.starts_with("/cfg/policy.toml:2: defaults.forward: unknown value \"maybe\""),
            "{e}"
        );
        let e = err("[[key]]\nname = \"a\"\n\nlifetime = \"8 parsecs\"\n");
        assert!(e.starts_with("/cfg/policy.toml:4: key.lifetime:"), "{e}");
        let e = err("[[key]]\nname = \"a\"\nconfirm = \"sometimes\"\n");
        assert!(e.starts_with("/cfg/policy.toml:3: key.confirm:"), "{e}");
        let e = err("[[key]]\nfingerprint = \"MD5:00\"\n");
        assert!(e.starts_with("/cfg/policy.toml:2: key.fingerprint:"), "{e}");
        let e = err(
            "[[key]]\nname = \"a\"\nfingerprint = \"SHA256:uO5mR8hPZ0aI8o8FvBLPHSNq0UeOTj5G2ZEEzZUo7LA\"\n",
        );
        assert!(
            e.starts_with("/cfg/policy.toml:2: key.name: give either"),
            "{e}"
        );
        let e = err("\n[[key]]\nuse-for = [\"a\"]\n");
        assert!(e.contains(":2: key: a [[key]] rule needs name"), "{e}");
        let e = err("[[key]]\nname = \"a\"\nuse-for = [\"a,b\"]\n");
        assert!(e.starts_with("/cfg/policy.toml:3: key.use-for:"), "{e}");
        let e = err("[[key]]\nname = \"a\"\nsign = \"git\"\n");
        assert!(e.starts_with("/cfg/policy.toml:3: key.sign:"), "{e}");
        let e = err("[defaults]\nforward = \n");
        assert!(e.starts_with("/cfg/policy.toml:2:"), "{e}");
        let e = err("colour = 1\n");
        assert!(
            e.starts_with("/cfg/policy.toml:1: colour: unknown field"),
            "{e}"
        );
        let e = err("[[key]]\nname = \"../x\"\n");
        assert!(e.starts_with("/cfg/policy.toml:2: key.name:"), "{e}");
    }

    #[test]
    fn durations() {
        assert_eq!(parse_duration("90m"), Some(Duration::from_mins(90)));
        assert_eq!(parse_duration("1h30m"), Some(Duration::from_mins(90)));
        assert_eq!(parse_duration("3600"), Some(Duration::from_hours(1)));
        assert_eq!(parse_duration("2d"), Some(Duration::from_hours(48)));
        assert_eq!(parse_duration("0"), None);
        assert_eq!(parse_duration("h"), None);
        assert_eq!(parse_duration("5x"), None);
        assert_eq!(parse_duration("99999999999999999999999"), None);
    }
}
