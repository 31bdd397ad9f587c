//! Atomic writes with the final mode from the first byte: a temp file in the same directory,
//! created with its mode by `open(2)`, written, fsynced, renamed over the target, and the directory
//! fsynced so the rename survives a crash.

use std::fs::{DirBuilder, File, OpenOptions, Permissions};
use std::io::{self, Write};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use rand::Rng;
use tracing::warn;

use crate::KeyError;

/// Mode of the keys directory.
pub const DIR_MODE: u32 = 0o700;
/// Mode of private key and metadata files.
pub const PRIVATE_MODE: u32 = 0o600;
/// Mode of public key files.
pub const PUBLIC_MODE: u32 = 0o644;

/// Make `dir` (and missing parents) with mode 0700 from creation. An existing directory that
/// others can read is left alone, with a warning: its keys are still 0600.
pub fn ensure_private_dir(dir: &Path) -> Result<(), KeyError> {
    DirBuilder::new()
        .recursive(true)
        .mode(DIR_MODE)
        .create(dir)
        .map_err(|source| KeyError::Write {
            path: dir.to_owned(),
            source,
        })?;
    if let Ok(meta) = std::fs::metadata(dir)
        && meta.permissions().mode() & 0o077 != 0
    {
        warn!(
            "{} is accessible to other users (mode {:o}); `chmod 700` it",
            dir.display(),
            meta.permissions().mode() & 0o777
        );
    }
    Ok(())
}

/// Write `contents` to `path` atomically with `mode`. The temp file is `.NAME.tmp-RANDOM` in the
/// same directory (a leading dot, so it is never taken for a key) and is removed on failure.
pub fn write_atomic(path: &Path, contents: &[u8], mode: u32) -> Result<(), KeyError> {
    let write_err = |source| KeyError::Write {
        path: path.to_owned(),
        source,
    };
    let dir = path
        .parent()
        .ok_or_else(|| write_err(io::Error::other("no parent directory")))?;
    let file_name = path
        .file_name()
        .ok_or_else(|| write_err(io::Error::other("no file name")))?;
    let (temp_path, mut file) =
        create_temp(dir, &file_name.to_string_lossy(), mode).map_err(|source| KeyError::Write {
            path: dir.to_owned(),
            source,
        })?;
    let result = (|| {
        // The umask may have removed bits (0644 under umask 077); set the exact mode on the
        // still-empty file, never widening a secret's mode after it holds data.
        file.set_permissions(Permissions::from_mode(mode))?;
        file.write_all(contents)?;
        file.sync_all()?;
        drop(file);
        std::fs::rename(&temp_path, path)?;
        File::open(dir)?.sync_all()
    })();
    if let Err(source) = result {
        let _ = std::fs::remove_file(&temp_path);
        return Err(write_err(source));
    }
    Ok(())
}

fn create_temp(dir: &Path, base: &str, mode: u32) -> io::Result<(PathBuf, File)> {
    let mut rng = rand::thread_rng();
    for _ in 0..16 {
        let suffix: u64 = rng.r#gen();
        let temp = dir.join(format!(".{base}.tmp-{suffix:016x}"));
        match OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(mode)
            .open(&temp)
        {
            Ok(file) => return Ok((temp, file)),
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {}
            Err(e) => return Err(e),
        }
    }
    Err(io::Error::new(
        io::ErrorKind::AlreadyExists,
        "could not pick an unused temp file name",
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn writes_with_mode_and_replaces() {
        let dir = tempfile::tempdir().unwrap();
        let keys = dir.path().join("a").join("keys");
        ensure_private_dir(&keys).unwrap();
        assert_eq!(
            std::fs::metadata(&keys).unwrap().permissions().mode() & 0o777,
            0o700
        );
        let path = keys.join("k");
        write_atomic(&path, b"one", PRIVATE_MODE).unwrap();
        assert_eq!(std::fs::read(&path).unwrap(), b"one");
        assert_eq!(
            std::fs::metadata(&path).unwrap().permissions().mode() & 0o777,
            0o600
        );
        write_atomic(&path, b"two", PUBLIC_MODE).unwrap();
        assert_eq!(std::fs::read(&path).unwrap(), b"two");
        assert_eq!(
            std::fs::metadata(&path).unwrap().permissions().mode() & 0o777,
            0o644
        );
        let leftovers: Vec<_> = std::fs::read_dir(&keys)
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(leftovers, vec![std::ffi::OsString::from("k")]);
    }

    #[test]
    fn missing_directory_is_a_write_error() {
        let dir = tempfile::tempdir().unwrap();
        let err = write_atomic(&dir.path().join("no/such/k"), b"x", PRIVATE_MODE).unwrap_err();
        assert!(matches!(err, KeyError::Write { .. }), "{err}");
    }
}
