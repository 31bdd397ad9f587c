//! The keys directory: `NAME` (OpenSSH private key, 0600), `NAME.pub` (0644) and `NAME.toml`
//! (metadata, 0600) per key, in a 0700 directory.

use std::io;
use std::path::{Path, PathBuf};
use std::time::Duration;

use ssh_key::{HashAlg, LineEnding, PrivateKey, PublicKey};
use time::OffsetDateTime;
use tracing::debug;
use zeroize::Zeroizing;

use crate::atomic::{PRIVATE_MODE, PUBLIC_MODE, ensure_private_dir, write_atomic};
use crate::compat;
use crate::kind::{KeySpec, describe};
use crate::{KeyError, KeyMetadata, KeyName, Passphrase};

/// The three files of one key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyPaths {
    /// The OpenSSH private key, what `ssh -i` takes.
    pub private: PathBuf,
    /// The public key line.
    pub public: PathBuf,
    /// The metadata.
    pub metadata: PathBuf,
}

/// A key in the store, as far as can be known without its passphrase.
#[derive(Debug, Clone)]
pub struct StoredKey {
    /// Its name.
    pub name: KeyName,
    /// Its files.
    pub paths: KeyPaths,
    /// Its metadata.
    pub metadata: KeyMetadata,
    /// Its public key, with comment, from `NAME.pub`.
    pub public_key: PublicKey,
}

impl StoredKey {
    /// The line to paste as a deploy key or into `authorized_keys`.
    pub fn public_line(&self) -> String {
        // Encoding a key that was just parsed cannot fail; an empty line would be caught by
        // any reader, but there is no path to it.
        self.public_key.to_openssh().unwrap_or_default()
    }
}

/// What `key new` asks for.
#[derive(Debug)]
pub struct NewKey<'a> {
    /// The name.
    pub name: &'a KeyName,
    /// Type and size.
    pub spec: KeySpec,
    /// The comment; `NAME@airlock` when not given.
    pub comment: Option<String>,
    /// Time from now until the key expires; `None` for never.
    pub expires_in: Option<Duration>,
    /// The passphrase to encrypt with; `None` for an unencrypted key.
    pub passphrase: Option<&'a Passphrase>,
    /// Replace an existing key of the same name.
    pub force: bool,
}

/// What `key import` asks for.
#[derive(Debug)]
pub struct ImportKey<'a> {
    /// The OpenSSH private key file to copy.
    pub source: &'a Path,
    /// The name to store it under.
    pub name: &'a KeyName,
    /// Time from now until the key expires; `None` for never.
    pub expires_in: Option<Duration>,
    /// Replace an existing key of the same name.
    pub force: bool,
}

/// The keys directory.
#[derive(Debug, Clone)]
pub struct KeyStore {
    dir: PathBuf,
}

impl KeyStore {
    /// The store in `dir` (created on the first write).
    pub fn new(dir: impl Into<PathBuf>) -> Self {
        Self { dir: dir.into() }
    }

    /// The directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The files of key `name`.
    pub fn paths(&self, name: &KeyName) -> KeyPaths {
        KeyPaths {
            private: self.dir.join(name.as_str()),
            public: self.dir.join(format!("{name}.pub")),
            metadata: self.dir.join(format!("{name}.toml")),
        }
    }

    /// Whether any of key `name`'s files exists.
    pub fn exists(&self, name: &KeyName) -> bool {
        let paths = self.paths(name);
        [paths.private, paths.public, paths.metadata]
            .iter()
            .any(|p| p.symlink_metadata().is_ok())
    }

    /// Refuse a keys directory that is not the user's, or that others can write, as ssh refuses
    /// such a `~/.ssh` (StrictModes): someone else could swap a key or its metadata. A missing
    /// directory is fine (it is created 0700 on the first write).
    pub fn check_dir(&self) -> Result<(), KeyError> {
        use std::os::unix::fs::MetadataExt;
        let meta = match std::fs::metadata(&self.dir) {
            Ok(m) => m,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
            Err(source) => {
                return Err(KeyError::Read {
                    path: self.dir.clone(),
                    source,
                });
            }
        };
        let me = nix::unistd::geteuid().as_raw();
        let problem = if meta.uid() != me && meta.uid() != 0 {
            Some(format!(
                "it is owned by uid {}, not by you (uid {me})",
                meta.uid()
            ))
        } else if meta.mode() & 0o022 != 0 {
            Some(format!(
                "others can write it (mode {:o}); fix it with `chmod 700 {}`",
                meta.mode() & 0o777,
                self.dir.display()
            ))
        } else {
            None
        };
        match problem {
            Some(reason) => Err(KeyError::UnsafeDirectory {
                path: self.dir.clone(),
                reason,
            }),
            None => Ok(()),
        }
    }

    fn refuse_existing(&self, name: &KeyName, force: bool) -> Result<(), KeyError> {
        self.check_dir()?;
        if !force && self.exists(name) {
            return Err(KeyError::AlreadyExists {
                name: name.to_string(),
                dir: self.dir.clone(),
            });
        }
        Ok(())
    }

    /// Generate a key and write its three files.
    pub fn create(&self, request: &NewKey<'_>, now: OffsetDateTime) -> Result<StoredKey, KeyError> {
        let name = request.name;
        self.refuse_existing(name, request.force)?;
        if let Some(passphrase) = request.passphrase {
            passphrase.check_strength()?;
        }
        let expires = expires_at(now, request.expires_in)?;
        let comment = request
            .comment
            .clone()
            .unwrap_or_else(|| format!("{name}@airlock"));

        let key = request.spec.generate(&mut rand::rngs::OsRng, &comment)?;
        let private_text = encode_private(&key, request.passphrase)?;
        let public_key = key.public_key().clone();
        let metadata = KeyMetadata {
            key_type: describe(public_key.key_data()),
            fingerprint: public_key.fingerprint(HashAlg::Sha256).to_string(),
            comment,
            created: now,
            expires,
            encrypted: request.passphrase.is_some(),
            imported_from: None,
        };
        self.write_key(name, private_text.as_bytes(), &public_key, &metadata)
    }

    /// Copy an existing OpenSSH private key file into the store, byte for byte. An encrypted key
    /// is decrypted (with the passphrase `passphrase` returns) only to check that it is whole and
    /// to read its comment; the stored file stays encrypted.
    pub fn import(
        &self,
        request: &ImportKey<'_>,
        passphrase: impl FnOnce(&Path) -> Result<Passphrase, KeyError>,
        now: OffsetDateTime,
    ) -> Result<StoredKey, KeyError> {
        let name = request.name;
        self.refuse_existing(name, request.force)?;
        let expires = expires_at(now, request.expires_in)?;
        let (text, key) = read_private_key(request.source)?;
        let encrypted = key.is_encrypted();
        let comment = if encrypted {
            let passphrase = passphrase(request.source)?;
            decrypt(&key, request.source, &passphrase)?
                .comment()
                .to_owned()
        } else {
            key.comment().to_owned()
        };
        let public_key = PublicKey::new(key.public_key().key_data().clone(), comment.clone());
        let source = std::path::absolute(request.source).unwrap_or_else(|_| request.source.into());
        let metadata = KeyMetadata {
            key_type: describe(public_key.key_data()),
            fingerprint: public_key.fingerprint(HashAlg::Sha256).to_string(),
            comment,
            created: now,
            expires,
            encrypted,
            imported_from: Some(source),
        };
        self.write_key(name, text.as_bytes(), &public_key, &metadata)
    }

    fn write_key(
        &self,
        name: &KeyName,
        private_text: &[u8],
        public_key: &PublicKey,
        metadata: &KeyMetadata,
    ) -> Result<StoredKey, KeyError> {
        let paths = self.paths(name);
        let public_line = public_key.to_openssh().map_err(|source| KeyError::Crypto {
            action: "encode the public key",
            source,
        })?;
        ensure_private_dir(&self.dir)?;
        // Metadata last: a key is listed once its metadata exists, so an interrupted write
        // never shows up as a half-made key.
        write_atomic(&paths.private, private_text, PRIVATE_MODE)?;
        write_atomic(
            &paths.public,
            format!("{public_line}\n").as_bytes(),
            PUBLIC_MODE,
        )?;
        write_atomic(&paths.metadata, metadata.to_toml().as_bytes(), PRIVATE_MODE)?;
        debug!(key = %name, fingerprint = %metadata.fingerprint, "wrote key files");
        Ok(StoredKey {
            name: name.clone(),
            paths,
            metadata: metadata.clone(),
            public_key: public_key.clone(),
        })
    }

    /// The key `name`: metadata and public key, checked against each other.
    pub fn get(&self, name: &KeyName) -> Result<StoredKey, KeyError> {
        self.check_dir()?;
        if !self.exists(name) {
            return Err(KeyError::UnknownKey {
                name: name.to_string(),
                dir: self.dir.clone(),
            });
        }
        let paths = self.paths(name);
        let metadata = KeyMetadata::read(&paths.metadata)?;
        let text = std::fs::read_to_string(&paths.public).map_err(|source| KeyError::Read {
            path: paths.public.clone(),
            source,
        })?;
        let public_key =
            PublicKey::from_openssh(text.trim()).map_err(|e| KeyError::MalformedPublicKey {
                path: paths.public.clone(),
                detail: e.to_string(),
            })?;
        let fingerprint = public_key.fingerprint(HashAlg::Sha256).to_string();
        if fingerprint != metadata.fingerprint {
            return Err(KeyError::MalformedPublicKey {
                path: paths.public.clone(),
                detail: format!(
                    "its fingerprint {fingerprint} is not the {} recorded in {}",
                    metadata.fingerprint,
                    paths.metadata.display()
                ),
            });
        }
        Ok(StoredKey {
            name: name.clone(),
            paths,
            metadata,
            public_key,
        })
    }

    /// Every key in the store, by name. A key whose files are broken is an `Err` entry and does
    /// not hide the others. A missing directory is an empty store.
    pub fn list(&self) -> Result<Vec<Result<StoredKey, KeyError>>, KeyError> {
        self.check_dir()?;
        let entries = match std::fs::read_dir(&self.dir) {
            Ok(entries) => entries,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(source) => {
                return Err(KeyError::Read {
                    path: self.dir.clone(),
                    source,
                });
            }
        };
        let mut names = Vec::new();
        for entry in entries {
            let entry = entry.map_err(|source| KeyError::Read {
                path: self.dir.clone(),
                source,
            })?;
            let file_name = entry.file_name();
            let Some(stem) = file_name.to_str().and_then(|n| n.strip_suffix(".toml")) else {
                continue;
            };
            if let Ok(name) = KeyName::new(stem) {
                names.push(name);
            }
        }
        names.sort();
        Ok(names.iter().map(|name| self.get(name)).collect())
    }

    /// Read key `key`'s private file and decrypt it if needed (asking `passphrase` only then).
    /// The result is checked against the recorded fingerprint.
    pub fn unlock(
        &self,
        key: &StoredKey,
        passphrase: impl FnOnce(&Path) -> Result<Passphrase, KeyError>,
    ) -> Result<PrivateKey, KeyError> {
        let path = &key.paths.private;
        let (_text, private) = read_private_key(path)?;
        let fingerprint = private.fingerprint(HashAlg::Sha256).to_string();
        if fingerprint != key.metadata.fingerprint {
            return Err(KeyError::MalformedKey {
                path: path.clone(),
                detail: format!(
                    "its fingerprint {fingerprint} is not the {} recorded in {}",
                    key.metadata.fingerprint,
                    key.paths.metadata.display()
                ),
            });
        }
        if private.is_encrypted() {
            let passphrase = passphrase(path)?;
            decrypt(&private, path, &passphrase)
        } else {
            Ok(private)
        }
    }

    /// Write key `key`'s private file again from `private` (the key [`unlock`](Self::unlock)
    /// returned), encrypted under `passphrase` or, with `None`, unencrypted; the metadata
    /// records which. The public key and fingerprint do not change.
    pub fn set_passphrase(
        &self,
        key: &StoredKey,
        private: &PrivateKey,
        passphrase: Option<&Passphrase>,
    ) -> Result<StoredKey, KeyError> {
        if private.fingerprint(HashAlg::Sha256).to_string() != key.metadata.fingerprint {
            return Err(KeyError::MalformedKey {
                path: key.paths.private.clone(),
                detail: "the key given is not this key".to_owned(),
            });
        }
        if let Some(passphrase) = passphrase {
            passphrase.check_strength()?;
        }
        let text = encode_private(private, passphrase)?;
        let mut metadata = key.metadata.clone();
        metadata.encrypted = passphrase.is_some();
        write_atomic(&key.paths.private, text.as_bytes(), PRIVATE_MODE)?;
        write_atomic(
            &key.paths.metadata,
            metadata.to_toml().as_bytes(),
            PRIVATE_MODE,
        )?;
        debug!(key = %key.name, encrypted = metadata.encrypted, "rewrote the private key");
        Ok(StoredKey {
            metadata,
            ..key.clone()
        })
    }

    /// Set when key `name` expires (`None`: never); only its metadata is rewritten.
    pub fn set_expiry(
        &self,
        name: &KeyName,
        expires: Option<OffsetDateTime>,
    ) -> Result<StoredKey, KeyError> {
        let mut key = self.get(name)?;
        key.metadata.expires = expires;
        write_atomic(
            &key.paths.metadata,
            key.metadata.to_toml().as_bytes(),
            PRIVATE_MODE,
        )?;
        Ok(key)
    }

    /// Delete key `name`'s files: the private key first, the metadata last.
    pub fn remove(&self, name: &KeyName) -> Result<(), KeyError> {
        self.check_dir()?;
        if !self.exists(name) {
            return Err(KeyError::UnknownKey {
                name: name.to_string(),
                dir: self.dir.clone(),
            });
        }
        let paths = self.paths(name);
        for path in [&paths.private, &paths.public, &paths.metadata] {
            match std::fs::remove_file(path) {
                Ok(()) => {}
                Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                Err(source) => {
                    return Err(KeyError::Write {
                        path: path.clone(),
                        source,
                    });
                }
            }
        }
        Ok(())
    }
}

/// The OpenSSH text of a private key, encrypted under `passphrase` (bcrypt-pbkdf and
/// aes256-ctr, as `ssh-keygen`) or, with `None`, unencrypted.
fn encode_private(
    key: &PrivateKey,
    passphrase: Option<&Passphrase>,
) -> Result<Zeroizing<String>, KeyError> {
    match passphrase {
        Some(passphrase) => key
            .encrypt(&mut rand::rngs::OsRng, passphrase.as_bytes())
            .and_then(|encrypted| encrypted.to_openssh(LineEnding::LF)),
        None => key.to_openssh(LineEnding::LF),
    }
    .map_err(|source| KeyError::Crypto {
        action: "encode the private key",
        source,
    })
}

/// The moment `expires_in` after `now` (`None`: never), refusing a duration too large to
/// represent.
pub fn expires_at(
    now: OffsetDateTime,
    expires_in: Option<Duration>,
) -> Result<Option<OffsetDateTime>, KeyError> {
    let Some(duration) = expires_in else {
        return Ok(None);
    };
    let too_large = || KeyError::InvalidDuration {
        text: format!("{}s", duration.as_secs()),
        reason: "it is too large",
    };
    let duration = time::Duration::try_from(duration).map_err(|_| too_large())?;
    now.checked_add(duration).map(Some).ok_or_else(too_large)
}

/// Read and parse an OpenSSH private key file (possibly encrypted), with errors that say what
/// the file is when it is not that.
pub fn read_private_key(path: &Path) -> Result<(Zeroizing<String>, PrivateKey), KeyError> {
    let bytes = Zeroizing::new(std::fs::read(path).map_err(|source| KeyError::Read {
        path: path.to_owned(),
        source,
    })?);
    let malformed = |detail: String| KeyError::MalformedKey {
        path: path.to_owned(),
        detail,
    };
    let text = Zeroizing::new(
        String::from_utf8(bytes.to_vec()).map_err(|_| malformed("it is not text".into()))?,
    );
    let trimmed = text.trim_start();
    if trimmed.starts_with("-----BEGIN RSA PRIVATE KEY-----")
        || trimmed.starts_with("-----BEGIN EC PRIVATE KEY-----")
        || trimmed.starts_with("-----BEGIN PRIVATE KEY-----")
        || trimmed.starts_with("-----BEGIN ENCRYPTED PRIVATE KEY-----")
        || trimmed.starts_with("-----BEGIN DSA PRIVATE KEY-----")
    {
        return Err(malformed(format!(
            "it is in the older PEM format; convert it in place with `ssh-keygen -p -f {}` \
             (it rewrites the key in OpenSSH format) and try again",
            path.display()
        )));
    }
    if PublicKey::from_openssh(trimmed.trim_end()).is_ok() {
        return Err(malformed(
            "it is a public key; give the private key file (without .pub)".into(),
        ));
    }
    let key = match PrivateKey::from_openssh(trimmed) {
        Ok(key) => key,
        Err(e) => compat::parse_unencrypted(trimmed).map_err(|_| malformed(e.to_string()))?,
    };
    Ok((text, key))
}

fn decrypt(key: &PrivateKey, path: &Path, passphrase: &Passphrase) -> Result<PrivateKey, KeyError> {
    key.decrypt(passphrase.as_bytes())
        .or_else(|e| {
            debug!(path = %path.display(), error = %e, "decryption failed");
            if matches!(key.algorithm(), ssh_key::Algorithm::Ecdsa { .. }) {
                compat::decrypt(key, passphrase.as_bytes()).map_err(drop)
            } else {
                Err(())
            }
        })
        .map_err(|()| KeyError::WrongPassphrase {
            path: path.to_owned(),
        })
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::PermissionsExt;

    use time::macros::datetime;

    use super::*;

    const NOW: OffsetDateTime = datetime!(2026-11-28 12:00 UTC);

    fn mode(path: &Path) -> u32 {
        std::fs::metadata(path).unwrap().permissions().mode() & 0o777
    }

    fn pass(text: &str) -> Passphrase {
        Passphrase::new(Zeroizing::new(text.to_owned()))
    }

    fn name(text: &str) -> KeyName {
        KeyName::new(text).unwrap()
    }

    #[test]
    fn create_writes_three_files_with_modes_and_reads_back() {
        let home = tempfile::tempdir().unwrap();
        let store = KeyStore::new(home.path().join(".ssh/airlock"));
        let passphrase = pass("correct horse");
        let key = store
            .create(
                &NewKey {
                    name: &name("proj"),
                    spec: KeySpec::Ed25519,
                    comment: None,
                    expires_in: Some(Duration::from_hours(90 * 24)),
                    passphrase: Some(&passphrase),
                    force: false,
                },
                NOW,
            )
            .unwrap();
        assert_eq!(mode(store.dir()), 0o700);
        assert_eq!(mode(&key.paths.private), 0o600);
        assert_eq!(mode(&key.paths.public), 0o644);
        assert_eq!(mode(&key.paths.metadata), 0o600);
        assert_eq!(key.metadata.comment, "proj@airlock");
        assert_eq!(key.metadata.expires, Some(datetime!(2027-02-26 12:00 UTC)));
        assert!(key.metadata.encrypted);
        assert!(key.public_line().starts_with("ssh-ed25519 AAAA"));
        assert!(key.public_line().ends_with(" proj@airlock"));

        let again = store.get(&name("proj")).unwrap();
        assert_eq!(again.metadata, key.metadata);
        let text = std::fs::read_to_string(&key.paths.private).unwrap();
        assert!(text.starts_with("-----BEGIN OPENSSH PRIVATE KEY-----"));
        let raw = PrivateKey::from_openssh(&text).unwrap();
        assert!(raw.is_encrypted());

        let unlocked = store.unlock(&again, |_| Ok(pass("correct horse"))).unwrap();
        assert_eq!(
            unlocked.public_key().key_data(),
            again.public_key.key_data()
        );
        let err = store
            .unlock(&again, |_| Ok(pass("wrong horse")))
            .unwrap_err();
        assert!(matches!(err, KeyError::WrongPassphrase { .. }), "{err}");
    }

    #[test]
    fn existing_name_is_refused_unless_forced() {
        let home = tempfile::tempdir().unwrap();
        let store = KeyStore::new(home.path());
        let mut request = NewKey {
            name: &name("k"),
            spec: KeySpec::Ed25519,
            comment: Some("c".into()),
            expires_in: None,
            passphrase: None,
            force: false,
        };
        let first = store.create(&request, NOW).unwrap();
        let err = store.create(&request, NOW).unwrap_err();
        assert!(matches!(err, KeyError::AlreadyExists { .. }), "{err}");
        assert!(err.to_string().contains("--force"));
        request.force = true;
        let second = store.create(&request, NOW).unwrap();
        assert_ne!(first.metadata.fingerprint, second.metadata.fingerprint);
        assert_eq!(store.get(&name("k")).unwrap().metadata, second.metadata);
    }

    #[test]
    fn unencrypted_key_unlocks_without_asking() {
        let home = tempfile::tempdir().unwrap();
        let store = KeyStore::new(home.path());
        let key = store
            .create(
                &NewKey {
                    name: &name("plain"),
                    spec: KeySpec::Ecdsa(ssh_key::EcdsaCurve::NistP256),
                    comment: None,
                    expires_in: None,
                    passphrase: None,
                    force: false,
                },
                NOW,
            )
            .unwrap();
        assert!(!key.metadata.encrypted);
        let unlocked = store
            .unlock(&key, |_| panic!("must not ask for a passphrase"))
            .unwrap();
        assert!(!unlocked.is_encrypted());
    }

    #[test]
    fn import_keeps_file_bytes_and_reads_comment_of_encrypted_key() {
        let home = tempfile::tempdir().unwrap();
        let store = KeyStore::new(home.path().join("keys"));
        let mut key =
            PrivateKey::random(&mut rand::rngs::OsRng, ssh_key::Algorithm::Ed25519).unwrap();
        key.set_comment("me@laptop");
        let encrypted = key
            .encrypt(&mut rand::rngs::OsRng, "secret pass")
            .unwrap()
            .to_openssh(LineEnding::LF)
            .unwrap();
        let source = home.path().join("id_ed25519");
        std::fs::write(&source, encrypted.as_bytes()).unwrap();

        let request = ImportKey {
            source: &source,
            name: &name("id_ed25519"),
            expires_in: None,
            force: false,
        };
        let err = store
            .import(&request, |_| Ok(pass("not it")), NOW)
            .unwrap_err();
        assert!(matches!(err, KeyError::WrongPassphrase { .. }), "{err}");
        assert!(
            store.list().unwrap().is_empty(),
            "nothing written on failure"
        );

        let stored = store
            .import(&request, |_| Ok(pass("secret pass")), NOW)
            .unwrap();
        assert_eq!(
            std::fs::read(&stored.paths.private).unwrap(),
            encrypted.as_bytes()
        );
        assert_eq!(stored.metadata.comment, "me@laptop");
        assert!(stored.metadata.encrypted);
        assert_eq!(
            stored.metadata.imported_from.as_deref(),
            Some(source.as_path())
        );
        assert!(stored.public_line().ends_with(" me@laptop"));
        assert_eq!(mode(&stored.paths.private), 0o600);
    }

    #[test]
    fn malformed_and_public_and_pem_files_are_explained() {
        let home = tempfile::tempdir().unwrap();
        let garbage = home.path().join("garbage");
        std::fs::write(&garbage, "hello\n").unwrap();
        let err = read_private_key(&garbage).unwrap_err();
        assert!(matches!(err, KeyError::MalformedKey { .. }), "{err}");

        let key = PrivateKey::random(&mut rand::rngs::OsRng, ssh_key::Algorithm::Ed25519).unwrap();
        let public = home.path().join("k.pub");
        std::fs::write(&public, key.public_key().to_openssh().unwrap()).unwrap();
        let err = read_private_key(&public).unwrap_err().to_string();
        assert!(err.contains("public key"), "{err}");

        let pem = home.path().join("pem");
        std::fs::write(&pem, "-----BEGIN RSA PRIVATE KEY-----\nAAAA\n").unwrap();
        let err = read_private_key(&pem).unwrap_err().to_string();
        assert!(err.contains("ssh-keygen -p -f"), "{err}");

        let err = read_private_key(&home.path().join("missing")).unwrap_err();
        assert!(matches!(err, KeyError::Read { .. }), "{err}");
    }

    #[test]
    fn list_sorts_and_reports_broken_entries_without_hiding_others() {
        let home = tempfile::tempdir().unwrap();
        let store = KeyStore::new(home.path());
        assert!(
            KeyStore::new(home.path().join("missing"))
                .list()
                .unwrap()
                .is_empty()
        );
        for n in ["b", "a"] {
            store
                .create(
                    &NewKey {
                        name: &name(n),
                        spec: KeySpec::Ed25519,
                        comment: None,
                        expires_in: None,
                        passphrase: None,
                        force: false,
                    },
                    NOW,
                )
                .unwrap();
        }
        std::fs::write(home.path().join("c.toml"), "not = [valid").unwrap();
        let listed = store.list().unwrap();
        assert_eq!(listed.len(), 3);
        assert_eq!(listed[0].as_ref().unwrap().name.as_str(), "a");
        assert_eq!(listed[1].as_ref().unwrap().name.as_str(), "b");
        assert!(matches!(listed[2], Err(KeyError::MalformedMetadata { .. })));

        store.remove(&name("a")).unwrap();
        assert!(matches!(
            store.get(&name("a")),
            Err(KeyError::UnknownKey { .. })
        ));
        assert!(matches!(
            store.remove(&name("a")),
            Err(KeyError::UnknownKey { .. })
        ));
    }
}
