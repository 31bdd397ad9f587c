//! nss_wrapper (`libnss-wrapper`): `ssh` finds `~` and `~/.ssh/config` through `getpwuid()`,
//! not `$HOME`, so a test that needs ssh to see its own home gives the current uid a passwd
//! entry whose home is that directory.

use std::path::{Path, PathBuf};

use crate::error::{Result, io};

/// The nss_wrapper library, where Debian (and others) install it.
pub fn nss_wrapper() -> Option<PathBuf> {
    [
        "/usr/lib/x86_64-linux-gnu/libnss_wrapper.so",
        "/usr/lib/aarch64-linux-gnu/libnss_wrapper.so",
        "/usr/lib64/libnss_wrapper.so",
        "/usr/lib/libnss_wrapper.so",
    ]
    .iter()
    .map(PathBuf::from)
    .find(|p| p.exists())
}

/// Write `passwd` and `group` files in `dir` naming the current uid `user` with home `home`,
/// and return the variables that make a program see them through the library `lib`
/// (`LD_PRELOAD`, `NSS_WRAPPER_PASSWD`, `NSS_WRAPPER_GROUP`).
pub fn nss_wrapper_env(
    lib: &Path,
    dir: &Path,
    user: &str,
    home: &Path,
) -> Result<Vec<(&'static str, PathBuf)>> {
    let uid = nix::unistd::getuid();
    let gid = nix::unistd::getgid();
    let passwd = dir.join("passwd");
    let group = dir.join("group");
    std::fs::write(
        &passwd,
        format!(
            "{user}:x:{uid}:{gid}:Airlock Test:{}:/bin/sh\n",
            home.display()
        ),
    )
    .map_err(io(&passwd))?;
    std::fs::write(&group, format!("{user}:x:{gid}:\n")).map_err(io(&group))?;
    Ok(vec![
        ("LD_PRELOAD", lib.to_path_buf()),
        ("NSS_WRAPPER_PASSWD", passwd),
        ("NSS_WRAPPER_GROUP", group),
    ])
}
