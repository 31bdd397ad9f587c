//! One naming rule for hosts: a policy may name a host by the alias the user types (`gpu`),
//! by a `Host`-style pattern (`gpu-node-*`), or by its known_hosts name
//! (`[127.0.0.1]:42222`), and all three mean the same host keys.
//!
//! The bridge is the name `ssh` looks a host's keys up under, computed by the same reader as
//! `airlock ssh-config resolve` (`ssh -G`): `HostKeyAlias` if set, else the `HostName` after
//! `%h`, lower-casing and canonicalisation, written `[name]:port` for a port other than 22
//! (OpenSSH's `get_hostfile_hostname_ipaddr`). `Include`, `Match` and the final pass are
//! honoured because each name is resolved whole.
//!
//! Which aliases exist is read from the config's `Host` lines: every literal pattern, and, for
//! a wildcard block whose `HostName` has `%h` (`Host gpu-node-*` / `HostName %h.lab.internal`),
//! each name in known_hosts that the template can produce (`gpu-node-3.lab.internal` gives
//! `gpu-node-3`), kept only if resolving it gives that name back. A hashed known_hosts line
//! cannot be listed, so a wildcard alias reaches it only through a literal name.

use std::path::{Path, PathBuf};

use airlock_ssh_config::pattern::match_pattern;
use airlock_ssh_config::{ConfigSource, HostBlock, LocalContext, ResolveOptions};

use crate::known_hosts::{HostKeyAlias, is_literal};

/// The user's ssh config, read for host names. Cheap to clone.
#[derive(Debug, Clone, Default)]
pub struct HostNaming {
    options: Option<ResolveOptions>,
    blocks: Vec<HostBlock>,
    files: Vec<PathBuf>,
    problem: Option<String>,
}

impl HostNaming {
    /// No ssh config: every name stands for itself.
    pub fn none() -> Self {
        Self::default()
    }

    /// Read the config `options` names (its `Host` blocks; names are resolved on demand).
    /// A config that cannot be read leaves only the names as written, and says why in
    /// [`Self::problem`].
    pub fn load(options: ResolveOptions) -> Self {
        match airlock_ssh_config::host_blocks(&options) {
            Ok(found) => Self {
                options: Some(options),
                blocks: found.blocks,
                files: found.files,
                problem: None,
            },
            Err(e) => Self {
                files: config_files(&options),
                options: None,
                blocks: Vec::new(),
                problem: Some(format!(
                    "the ssh config cannot be read ({e}); hosts match only by their known_hosts names"
                )),
            },
        }
    }

    /// The options for a user whose home (for `~/.ssh/config`) is `home`: the files `ssh`
    /// reads by default, with `home` standing for the password database's home, as airlock
    /// does everywhere.
    pub fn options_for_home(home: &Path) -> ResolveOptions {
        let context = LocalContext::with_home(home);
        ResolveOptions {
            config: ConfigSource::Default,
            user: None,
            port: None,
            context,
        }
    }

    /// The config files read (a change means the names must be read again).
    pub fn files(&self) -> &[PathBuf] {
        &self.files
    }

    /// Why the config could not be read, if it could not.
    pub fn problem(&self) -> Option<&str> {
        self.problem.as_deref()
    }

    /// The `Host` blocks read.
    pub fn blocks(&self) -> &[HostBlock] {
        &self.blocks
    }

    /// The name `ssh` looks `typed`'s host keys up under in known_hosts, lower case; `None`
    /// when the config cannot resolve it (then the name stands for itself).
    pub fn known_hosts_name(&self, typed: &str) -> Option<String> {
        let options = self.options.as_ref()?;
        let resolved = airlock_ssh_config::resolve(typed, options).ok()?;
        if let Some(alias) = resolved.host_key_alias {
            return Some(alias.to_lowercase());
        }
        let host = resolved.hostname.to_lowercase();
        Some(if resolved.port == 22 || resolved.port == 0 {
            host
        } else {
            format!("[{host}]:{}", resolved.port)
        })
    }

    /// The literal `Host` names of the config, in order, without repeats.
    pub fn literal_hosts(&self) -> Vec<String> {
        let mut out: Vec<String> = Vec::new();
        for b in self.blocks.iter().filter(|b| !b.is_match) {
            for p in &b.patterns {
                let p = p.to_lowercase();
                if is_literal(&p) && !out.contains(&p) {
                    out.push(p);
                }
            }
        }
        out
    }

    /// Names a wildcard block's `HostName %h...` template could have produced `known` from.
    fn inverted(&self, known: &str) -> Vec<String> {
        let host = known
            .strip_prefix('[')
            .and_then(|r| r.rsplit_once("]:"))
            .map_or(known, |(h, _)| h);
        let mut out = Vec::new();
        for b in self.blocks.iter().filter(|b| !b.is_match) {
            let Some(template) = b.get("hostname") else {
                continue;
            };
            let Some((pre, suf)) = template
                .to_lowercase()
                .split_once("%h")
                .map(|(p, s)| (p.to_owned(), s.to_owned()))
            else {
                continue;
            };
            if pre.contains('%') || suf.contains('%') {
                continue;
            }
            let Some(middle) = host
                .strip_prefix(pre.as_str())
                .and_then(|r| r.strip_suffix(suf.as_str()))
            else {
                continue;
            };
            if middle.is_empty() || !is_literal(middle) {
                continue;
            }
            let positive = b
                .patterns
                .iter()
                .any(|p| !p.starts_with('!') && match_pattern(middle, &p.to_lowercase()));
            if positive && !out.iter().any(|o| o == middle) {
                out.push(middle.to_owned());
            }
        }
        out
    }

    /// The aliases of the config as `(alias, known_hosts name)` pairs: each literal `Host`
    /// name, each of `extra` (literal names a policy writes), and each name a wildcard block
    /// produces one of `known` (literal known_hosts names) from, whose known_hosts name
    /// differs from itself.
    pub fn aliases<'a>(
        &self,
        known: impl IntoIterator<Item = &'a str>,
        extra: &[String],
    ) -> Vec<HostKeyAlias> {
        if self.options.is_none() {
            return Vec::new();
        }
        let mut candidates = self.literal_hosts();
        for name in extra {
            let name = name.to_lowercase();
            if !candidates.contains(&name) {
                candidates.push(name);
            }
        }
        let mut inverted: Vec<(String, String)> = Vec::new();
        for k in known {
            let k = k.to_lowercase();
            for c in self.inverted(&k) {
                inverted.push((c, k.clone()));
            }
        }
        let mut out: Vec<HostKeyAlias> = Vec::new();
        let mut push = |host: String, alias: String| {
            if host != alias && !out.iter().any(|a| a.host == host && a.alias == alias) {
                out.push(HostKeyAlias { host, alias });
            }
        };
        for c in candidates {
            if let Some(name) = self.known_hosts_name(&c) {
                push(c, name);
            }
        }
        for (c, k) in inverted {
            // Kept only if the config really gives that name back.
            if self.known_hosts_name(&c).as_deref() == Some(k.as_str()) {
                push(c, k);
            }
        }
        out
    }
}

/// The files a config source would start from, for change detection when it cannot be read.
fn config_files(options: &ResolveOptions) -> Vec<PathBuf> {
    match &options.config {
        ConfigSource::Default => vec![
            options.context.home.join(".ssh/config"),
            options.context.system_config.clone(),
        ],
        ConfigSource::File(f) => vec![f.clone()],
        ConfigSource::None => Vec::new(),
    }
}
