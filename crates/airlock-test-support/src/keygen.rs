//! Keys made by the real `ssh-keygen`.

use std::ffi::OsStr;
use std::fmt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use crate::error::{Error, Result, io};
use crate::process;

/// The user key types OpenSSH's agent handles (FIDO and PKCS#11 aside).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum KeyType {
    /// `ssh-ed25519`.
    Ed25519,
    /// `ecdsa-sha2-nistp256`.
    EcdsaP256,
    /// `ecdsa-sha2-nistp384`.
    EcdsaP384,
    /// `ecdsa-sha2-nistp521`.
    EcdsaP521,
    /// `ssh-rsa`, 3072 bits (ssh-keygen's default size). Generating one takes a moment.
    Rsa3072,
}

impl KeyType {
    /// Every variant, for table tests.
    pub const ALL: [KeyType; 5] = [
        KeyType::Ed25519,
        KeyType::EcdsaP256,
        KeyType::EcdsaP384,
        KeyType::EcdsaP521,
        KeyType::Rsa3072,
    ];

    /// The arguments `ssh-keygen` takes to make this type: `-t TYPE [-b BITS]`.
    pub fn ssh_keygen_args(self) -> &'static [&'static str] {
        match self {
            KeyType::Ed25519 => &["-t", "ed25519"],
            KeyType::EcdsaP256 => &["-t", "ecdsa", "-b", "256"],
            KeyType::EcdsaP384 => &["-t", "ecdsa", "-b", "384"],
            KeyType::EcdsaP521 => &["-t", "ecdsa", "-b", "521"],
            KeyType::Rsa3072 => &["-t", "rsa", "-b", "3072"],
        }
    }

    /// The key's algorithm name as it appears in a `.pub` line and on the wire.
    pub fn algorithm(self) -> &'static str {
        match self {
            KeyType::Ed25519 => "ssh-ed25519",
            KeyType::EcdsaP256 => "ecdsa-sha2-nistp256",
            KeyType::EcdsaP384 => "ecdsa-sha2-nistp384",
            KeyType::EcdsaP521 => "ecdsa-sha2-nistp521",
            KeyType::Rsa3072 => "ssh-rsa",
        }
    }

    /// A short name for file names: `ed25519`, `ecdsa-p256`, ..., `rsa-3072`.
    pub fn short_name(self) -> &'static str {
        match self {
            KeyType::Ed25519 => "ed25519",
            KeyType::EcdsaP256 => "ecdsa-p256",
            KeyType::EcdsaP384 => "ecdsa-p384",
            KeyType::EcdsaP521 => "ecdsa-p521",
            KeyType::Rsa3072 => "rsa-3072",
        }
    }
}

impl fmt::Display for KeyType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.short_name())
    }
}

/// The two files of a key made by [`generate_key`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyPair {
    /// The OpenSSH private key file (0600).
    pub private_key: PathBuf,
    /// The `.pub` file next to it.
    pub public_key: PathBuf,
    /// What it is.
    pub key_type: KeyType,
}

impl KeyPair {
    /// The `.pub` line without its trailing newline: `algorithm base64 comment`, ready for
    /// [`crate::Sshd::authorize`].
    pub fn public_key_line(&self) -> Result<String> {
        let text = std::fs::read_to_string(&self.public_key).map_err(io(&self.public_key))?;
        Ok(text.trim_end().to_owned())
    }

    /// The public key, parsed.
    pub fn public_key(&self) -> Result<ssh_key::PublicKey> {
        ssh_key::PublicKey::read_openssh_file(&self.public_key).map_err(|source| Error::Io {
            path: self.public_key.clone(),
            source: std::io::Error::other(source),
        })
    }

    /// The `SHA256:...` fingerprint, as `ssh-add -l` prints it.
    pub fn fingerprint(&self) -> Result<String> {
        Ok(self
            .public_key()?
            .fingerprint(ssh_key::HashAlg::Sha256)
            .to_string())
    }
}

/// Run the real `ssh-keygen` with `args` and an environment of only `PATH` (so no agent or askpass
/// leaks in); a non-zero exit is an [`Error::Failed`] with its stderr.
pub fn ssh_keygen<I, S>(args: I) -> Result<Output>
where
    I: IntoIterator<Item = S>,
    S: AsRef<OsStr>,
{
    let mut command = Command::new("ssh-keygen");
    command.env_clear();
    if let Some(path) = std::env::var_os("PATH") {
        command.env("PATH", path);
    }
    command.args(args);
    process::run(&mut command)
}

/// Make a new key `dir/name` (and `dir/name.pub`) with no passphrase and the comment `name`.
/// An existing key of that name is an error (ssh-keygen would prompt).
pub fn generate_key(dir: &Path, name: &str, key_type: KeyType) -> Result<KeyPair> {
    generate_key_with_passphrase(dir, name, key_type, "")
}

/// [`generate_key`] with a passphrase (empty for none).
pub fn generate_key_with_passphrase(
    dir: &Path,
    name: &str,
    key_type: KeyType,
    passphrase: &str,
) -> Result<KeyPair> {
    let private_key = dir.join(name);
    let mut args: Vec<&OsStr> = vec![OsStr::new("-q")];
    args.extend(key_type.ssh_keygen_args().iter().map(OsStr::new));
    args.extend([
        OsStr::new("-N"),
        OsStr::new(passphrase),
        OsStr::new("-C"),
        OsStr::new(name),
        OsStr::new("-f"),
        private_key.as_os_str(),
    ]);
    ssh_keygen(args)?;
    let mut public_key = private_key.clone().into_os_string();
    public_key.push(".pub");
    Ok(KeyPair {
        private_key,
        public_key: public_key.into(),
        key_type,
    })
}
