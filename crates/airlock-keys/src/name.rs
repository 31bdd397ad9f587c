//! Key names: each becomes three file names in the keys directory (`NAME`, `NAME.pub`,
//! `NAME.toml`), so a name must never escape that directory nor collide with another key's files.

use std::fmt;
use std::str::FromStr;

use crate::KeyError;

/// The longest name accepted. Long enough for `project-2026-deploy`, short enough for a table.
pub const MAX_NAME_LEN: usize = 64;

/// Suffixes that belong to other files in the keys directory: a key named `x.pub` would be key
/// `x`'s public half, `agent.sock` may be the agent's socket.
const RESERVED_SUFFIXES: [&str; 4] = [".pub", ".toml", ".sock", ".tmp"];

/// A validated key name: `[A-Za-z0-9][A-Za-z0-9._-]*`, at most [`MAX_NAME_LEN`] bytes, not
/// ending in a suffix used by the keys directory itself.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct KeyName(String);

impl KeyName {
    /// Check `name`.
    pub fn new(name: &str) -> Result<Self, KeyError> {
        let invalid = |reason| {
            Err(KeyError::InvalidName {
                name: name.to_owned(),
                reason,
            })
        };
        let Some(first) = name.chars().next() else {
            return invalid("it is empty");
        };
        if name.len() > MAX_NAME_LEN {
            return invalid("it is longer than 64 characters");
        }
        if name.contains('/') || name.contains('\\') {
            return invalid("it contains a slash");
        }
        if first == '.' {
            return invalid("it starts with a dot");
        }
        if !first.is_ascii_alphanumeric() {
            return invalid("it does not start with a letter or digit");
        }
        if !name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'))
        {
            return invalid("it contains a character other than letters, digits, '.', '_', '-'");
        }
        if RESERVED_SUFFIXES.iter().any(|s| name.ends_with(s)) {
            return invalid("it ends in .pub, .toml, .sock or .tmp, which the keys directory uses");
        }
        Ok(Self(name.to_owned()))
    }

    /// The name as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for KeyName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl FromStr for KeyName {
    type Err = KeyError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::new(s)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_ordinary_names() {
        for name in ["ai-project", "id_ed25519", "proj.v2", "A1", "x"] {
            assert_eq!(KeyName::new(name).unwrap().as_str(), name);
        }
    }

    #[test]
    fn rejects_names_that_escape_or_collide() {
        let long = "a".repeat(65);
        for name in [
            "",
            ".hidden",
            "..",
            "a/b",
            "../x",
            "/abs",
            "a\\b",
            "-flag",
            "_x",
            "x y",
            "x\n",
            "kéy",
            "x.pub",
            "x.toml",
            "agent.sock",
            "x.tmp",
            long.as_str(),
        ] {
            assert!(KeyName::new(name).is_err(), "{name:?} should be rejected");
        }
    }

    #[test]
    fn error_says_why() {
        let err = KeyName::new("a/b").unwrap_err().to_string();
        assert!(err.contains("slash"), "{err}");
        let err = KeyName::new(".x").unwrap_err().to_string();
        assert!(err.contains("dot"), "{err}");
    }
}
