//! Passphrases: from a file or typed on the terminal without echo, held in zeroized memory and
//! never shown by `Debug`.

use std::fmt;
use std::io::IsTerminal;
use std::path::Path;

use zeroize::Zeroizing;

use crate::KeyError;

/// The shortest passphrase accepted for a new key; `ssh-keygen` refuses 4 characters or fewer.
pub const MIN_PASSPHRASE_LEN: usize = 5;

/// A passphrase. Its memory is wiped on drop, and `Debug` prints `Passphrase(..)`.
pub struct Passphrase(Zeroizing<String>);

impl Passphrase {
    /// Wrap a passphrase.
    pub fn new(text: Zeroizing<String>) -> Self {
        Self(text)
    }

    /// The first line of `path`, without its line ending (as `ssh-keygen -N "$(cat F)"`
    /// would see it). An empty passphrase is an error: `--no-passphrase` says that plainly.
    pub fn from_file(path: &Path) -> Result<Self, KeyError> {
        let bytes = Zeroizing::new(std::fs::read(path).map_err(|source| KeyError::Read {
            path: path.to_owned(),
            source,
        })?);
        let text = std::str::from_utf8(&bytes).map_err(|_| KeyError::Read {
            path: path.to_owned(),
            source: std::io::Error::new(
                std::io::ErrorKind::InvalidData,
                "the passphrase file is not UTF-8 text",
            ),
        })?;
        let line = text.split(['\n', '\r']).next().unwrap_or_default();
        if line.is_empty() {
            return Err(KeyError::EmptyPassphraseFile {
                path: path.to_owned(),
            });
        }
        Ok(Self(Zeroizing::new(line.to_owned())))
    }

    /// Ask once on the terminal, without echo. `Ok(None)` when nothing was typed.
    pub fn prompt(prompt: &str) -> Result<Option<Self>, KeyError> {
        let text = Zeroizing::new(rpassword::prompt_password(prompt).map_err(KeyError::Terminal)?);
        if text.is_empty() {
            Ok(None)
        } else {
            Ok(Some(Self(text)))
        }
    }

    /// Ask twice for a new passphrase, as `ssh-keygen` does. `Ok(None)` when both are empty
    /// (an unencrypted key, chosen on purpose).
    pub fn prompt_new(name: &str) -> Result<Option<Self>, KeyError> {
        Self::prompt_twice(&format!(
            "Enter passphrase for new key {name} (empty for no passphrase): "
        ))
    }

    /// Ask for a passphrase with `prompt`, then for the same again; as [`prompt_new`](Self::prompt_new).
    pub fn prompt_twice(prompt: &str) -> Result<Option<Self>, KeyError> {
        let first = Self::prompt(prompt)?;
        let second = Self::prompt("Enter the same passphrase again: ")?;
        match (first, second) {
            (None, None) => Ok(None),
            (Some(a), Some(b)) if a.0.as_bytes() == b.0.as_bytes() => {
                a.check_strength()?;
                Ok(Some(a))
            }
            _ => Err(KeyError::PassphraseMismatch),
        }
    }

    /// Refuse passphrases shorter than `ssh-keygen` accepts.
    pub fn check_strength(&self) -> Result<(), KeyError> {
        let len = self.0.chars().count();
        if len < MIN_PASSPHRASE_LEN {
            return Err(KeyError::PassphraseTooShort {
                len,
                min: MIN_PASSPHRASE_LEN,
            });
        }
        Ok(())
    }

    /// The bytes, for the KDF.
    pub fn as_bytes(&self) -> &[u8] {
        self.0.as_bytes()
    }
}

impl fmt::Debug for Passphrase {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Passphrase(..)")
    }
}

/// Whether we can ask the user something: standard input and standard error are a terminal.
pub fn is_interactive() -> bool {
    std::io::stdin().is_terminal() && std::io::stderr().is_terminal()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn file_gives_first_line_without_line_ending() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("pass");
        std::fs::write(&path, "correct horse\r\nsecond line\n").unwrap();
        let pass = Passphrase::from_file(&path).unwrap();
        assert_eq!(pass.as_bytes(), b"correct horse");
        std::fs::write(&path, "no newline").unwrap();
        assert_eq!(
            Passphrase::from_file(&path).unwrap().as_bytes(),
            b"no newline"
        );
    }

    #[test]
    fn empty_or_missing_file_is_an_error() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("pass");
        std::fs::write(&path, "\n").unwrap();
        assert!(matches!(
            Passphrase::from_file(&path),
            Err(KeyError::EmptyPassphraseFile { .. })
        ));
        assert!(matches!(
            Passphrase::from_file(&dir.path().join("missing")),
            Err(KeyError::Read { .. })
        ));
    }

    #[test]
    fn debug_never_shows_the_secret() {
        let pass = Passphrase::new(Zeroizing::new("hunter22".to_owned()));
        assert_eq!(format!("{pass:?}"), "Passphrase(..)");
        assert!(pass.check_strength().is_ok());
        let short = Passphrase::new(Zeroizing::new("abcd".to_owned()));
        assert!(matches!(
            short.check_strength(),
            Err(KeyError::PassphraseTooShort { len: 4, min: 5 })
        ));
    }
}
