//! Host names tied to host keys: `known_hosts` files (hashed entries, `@cert-authority`,
//! `@revoked`, negated patterns, `[host]:port`) and `HostKeyAlias` names from the ssh config.
//!
//! Hashed entries cannot be listed, so names are found the other way round: a set of candidate
//! names (plain names in known_hosts, literal names in the policy, ssh config aliases) is
//! resolved against every entry. A key's names are the candidates some entry ties it to.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use airlock_agent::destination::{HostCertificate, HostKey};
use airlock_ssh_config::pattern::{ListMatch, match_patterns};
use base64::Engine as _;
use hmac::{Hmac, Mac};
use ssh_key::public::KeyData;

/// The known_hosts files OpenSSH reads by default: `~/.ssh/known_hosts{,2}` and
/// `/etc/ssh/ssh_known_hosts{,2}`.
pub fn default_known_hosts(home: &Path) -> Vec<PathBuf> {
    vec![
        home.join(".ssh/known_hosts"),
        home.join(".ssh/known_hosts2"),
        PathBuf::from("/etc/ssh/ssh_known_hosts"),
        PathBuf::from("/etc/ssh/ssh_known_hosts2"),
    ]
}

/// The marker of a known_hosts line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Marker {
    /// A plain host key line.
    HostKey,
    /// `@cert-authority`: the key is a CA whose host certificates are valid for these names.
    CertAuthority,
    /// `@revoked`: the key must never be trusted.
    Revoked,
}

/// The host field of a known_hosts line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HostField {
    /// Comma-separated patterns, `!` negating.
    Patterns(Vec<String>),
    /// `|1|base64(salt)|base64(HMAC-SHA1(salt, name))`.
    Hashed {
        /// The HMAC key.
        salt: Vec<u8>,
        /// The HMAC of the name.
        hash: Vec<u8>,
    },
}

impl HostField {
    /// Whether `name` (lower case; `[host]:port` for non-default ports) is covered.
    pub fn matches(&self, name: &str) -> bool {
        match self {
            HostField::Patterns(p) => {
                match_patterns(name, p.iter().map(String::as_str), true) == ListMatch::Matched
            }
            HostField::Hashed { salt, hash } => {
                let Ok(mut mac) = Hmac::<sha1::Sha1>::new_from_slice(salt) else {
                    return false;
                };
                mac.update(name.to_lowercase().as_bytes());
                mac.verify_slice(hash).is_ok()
            }
        }
    }
}

/// One known_hosts line.
#[derive(Debug, Clone)]
pub struct KnownHostsEntry {
    /// Its marker.
    pub marker: Marker,
    /// Its host field.
    pub hosts: HostField,
    /// Its key.
    pub key: KeyData,
    /// Where it is written.
    pub file: PathBuf,
    /// Its 1-based line.
    pub line: usize,
}

/// The parsed lines of a set of known_hosts files.
#[derive(Debug, Clone, Default)]
pub struct KnownHosts {
    /// Every usable line.
    pub entries: Vec<KnownHostsEntry>,
    /// Lines that could not be parsed (`file:line: why`): skipped, as ssh skips them.
    pub skipped: Vec<String>,
}

impl KnownHosts {
    /// Read the files that exist among `paths` (missing ones are skipped silently, unreadable
    /// ones are listed in `skipped`).
    pub fn load(paths: &[PathBuf]) -> Self {
        let mut out = Self::default();
        for path in paths {
            match fs_err::read_to_string(path) {
                Ok(text) => out.add(&text, path),
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => out.skipped.push(e.to_string()),
            }
        }
        out
    }

    /// Parse the text of one file.
    pub fn add(&mut self, text: &str, file: &Path) {
        for (i, line) in text.lines().enumerate() {
            match parse_line(line) {
                Ok(None) => {}
                Ok(Some((marker, hosts, key))) => {
                    self.entries.push(KnownHostsEntry {
                        marker,
                        hosts,
                        key,
                        file: file.to_owned(),
                        line: i + 1,
                    });
                }
                Err(why) => self
                    .skipped
                    .push(format!("{}:{}: {why}", file.display(), i + 1)),
            }
        }
    }

    /// Plain, non-wildcard, non-negated names written in the files: candidates for resolving.
    pub fn literal_names(&self) -> impl Iterator<Item = &str> {
        self.entries.iter().flat_map(|e| match &e.hosts {
            HostField::Patterns(p) => p
                .iter()
                .map(String::as_str)
                .filter(|n| is_literal(n))
                .collect(),
            HostField::Hashed { .. } => Vec::new(),
        })
    }
}

/// Whether a pattern is one literal host name (no wildcard, no negation).
pub fn is_literal(pattern: &str) -> bool {
    !pattern.is_empty()
        && !pattern.contains(['*', '?', '!', ','])
        && !pattern.contains(char::is_whitespace)
}

type Line = (Marker, HostField, KeyData);

fn parse_line(line: &str) -> Result<Option<Line>, &'static str> {
    let line = line.trim();
    if line.is_empty() || line.starts_with('#') {
        return Ok(None);
    }
    let mut fields = line.split_whitespace();
    let mut first = fields.next().ok_or("empty")?;
    let marker = match first {
        "@cert-authority" => Marker::CertAuthority,
        "@revoked" => Marker::Revoked,
        m if m.starts_with('@') => return Err("unknown marker"),
        _ => Marker::HostKey,
    };
    if marker != Marker::HostKey {
        first = fields.next().ok_or("no host names")?;
    }
    let hosts = if let Some(rest) = first.strip_prefix("|1|") {
        let (salt, hash) = rest.split_once('|').ok_or("bad hashed host name")?;
        let b64 = base64::engine::general_purpose::STANDARD;
        let salt = b64.decode(salt).map_err(|_| "bad hashed host name")?;
        let hash = b64.decode(hash).map_err(|_| "bad hashed host name")?;
        HostField::Hashed { salt, hash }
    } else {
        HostField::Patterns(
            first
                .split(',')
                .filter(|p| !p.is_empty())
                .map(str::to_lowercase)
                .collect(),
        )
    };
    let alg = fields.next().ok_or("no key type")?;
    let blob = fields.next().ok_or("no key")?;
    let key = ssh_key::PublicKey::from_openssh(&format!("{alg} {blob}"))
        .map_err(|_| "unparseable key")?;
    Ok(Some((marker, hosts, key.key_data().clone())))
}

/// A `HostKeyAlias` set for hosts matching `host` in the ssh config: ssh looks up those hosts'
/// keys in known_hosts under `alias`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostKeyAlias {
    /// The `Host` pattern (or literal name).
    pub host: String,
    /// The `HostKeyAlias` value.
    pub alias: String,
}

/// What a name resolves to.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct NameKeys {
    /// Host keys tied to the name (SHA256 fingerprints → keys).
    pub keys: BTreeMap<String, KeyData>,
    /// CA keys whose certificates are accepted for the name.
    pub cas: BTreeMap<String, KeyData>,
}

impl NameKeys {
    /// Whether nothing is tied to the name.
    pub fn is_empty(&self) -> bool {
        self.keys.is_empty() && self.cas.is_empty()
    }
}

/// Host keys and their names, resolved from known_hosts, candidate names and aliases.
#[derive(Debug, Clone, Default)]
pub struct HostIndex {
    entries: Vec<KnownHostsEntry>,
    /// Candidate name → what it resolves to (only names that resolve to something).
    by_name: BTreeMap<String, NameKeys>,
    /// Host key fingerprint → names.
    names_by_key: BTreeMap<String, BTreeSet<String>>,
    /// Fingerprints of `@revoked` keys.
    revoked: BTreeSet<String>,
    aliases: Vec<HostKeyAlias>,
}

fn fingerprint(key: &KeyData) -> String {
    key.fingerprint(ssh_key::HashAlg::Sha256).to_string()
}

impl HostIndex {
    /// Resolve every candidate name against every entry. Candidates are lower-cased; the
    /// literal names in the files and the aliases are added to them.
    pub fn build<'a>(
        known_hosts: &KnownHosts,
        candidates: impl IntoIterator<Item = &'a str>,
        aliases: &[HostKeyAlias],
    ) -> Self {
        let mut names: BTreeSet<String> = candidates.into_iter().map(str::to_lowercase).collect();
        names.extend(known_hosts.literal_names().map(str::to_lowercase));
        for a in aliases {
            names.insert(a.alias.to_lowercase());
            if is_literal(&a.host) {
                names.insert(a.host.to_lowercase());
            }
        }
        let mut index = Self {
            entries: known_hosts.entries.clone(),
            aliases: aliases.to_vec(),
            ..Self::default()
        };
        for e in &known_hosts.entries {
            if e.marker == Marker::Revoked {
                index.revoked.insert(fingerprint(&e.key));
            }
        }
        for name in &names {
            let resolved = index.lookup_direct(name);
            if !resolved.is_empty() {
                for fp in resolved.keys.keys() {
                    index
                        .names_by_key
                        .entry(fp.clone())
                        .or_default()
                        .insert(name.clone());
                }
                index.by_name.insert(name.clone(), resolved);
            }
        }
        // A literal `Host` alias with a HostKeyAlias is known by the alias's keys too.
        for a in aliases {
            let host = a.host.to_lowercase();
            if !is_literal(&host) {
                continue;
            }
            if let Some(resolved) = index.by_name.get(&a.alias.to_lowercase()).cloned() {
                for fp in resolved.keys.keys() {
                    index
                        .names_by_key
                        .entry(fp.clone())
                        .or_default()
                        .insert(host.clone());
                }
                let slot = index.by_name.entry(host).or_default();
                slot.keys.extend(resolved.keys);
                slot.cas.extend(resolved.cas);
            }
        }
        index
    }

    fn lookup_direct(&self, name: &str) -> NameKeys {
        let mut out = NameKeys::default();
        for e in &self.entries {
            if e.marker == Marker::Revoked || !e.hosts.matches(name) {
                continue;
            }
            let fp = fingerprint(&e.key);
            if self.revoked.contains(&fp) {
                continue;
            }
            match e.marker {
                Marker::HostKey => out.keys.insert(fp, e.key.clone()),
                Marker::CertAuthority => out.cas.insert(fp, e.key.clone()),
                Marker::Revoked => None,
            };
        }
        out
    }

    /// What a name resolves to: its host keys and CA keys. The name is resolved afresh (it
    /// need not have been a candidate), with `HostKeyAlias` applied.
    pub fn lookup(&self, name: &str) -> NameKeys {
        let name = name.to_lowercase();
        if let Some(found) = self.by_name.get(&name) {
            return found.clone();
        }
        let mut out = self.lookup_direct(&name);
        for a in &self.aliases {
            if match_patterns(&name, a.host.split(','), true) == ListMatch::Matched {
                let more = self.lookup_direct(&a.alias.to_lowercase());
                out.keys.extend(more.keys);
                out.cas.extend(more.cas);
            }
        }
        out
    }

    /// Every resolved name and what it resolves to.
    pub fn names(&self) -> impl Iterator<Item = (&str, &NameKeys)> {
        self.by_name.iter().map(|(n, k)| (n.as_str(), k))
    }

    /// The host patterns of `@cert-authority` lines (hashed ones cannot be shown), each with
    /// its CA key: for reports, since names under a CA are only known when a host presents a
    /// certificate.
    pub fn cert_authority_patterns(&self) -> Vec<(String, NameKeys)> {
        let mut out: Vec<(String, NameKeys)> = Vec::new();
        for e in &self.entries {
            let (Marker::CertAuthority, HostField::Patterns(patterns)) = (e.marker, &e.hosts)
            else {
                continue;
            };
            let fp = fingerprint(&e.key);
            if self.revoked.contains(&fp) {
                continue;
            }
            for p in patterns.iter().filter(|p| !p.starts_with('!')) {
                let mut keys = NameKeys::default();
                keys.cas.insert(fp.clone(), e.key.clone());
                out.push((p.clone(), keys));
            }
        }
        out
    }

    /// Whether a host key (or a certificate's key or CA) is marked `@revoked`.
    pub fn is_revoked(&self, key: &HostKey) -> bool {
        self.is_revoked_fp(key, &fingerprint(key.key_data()))
    }

    /// [`Self::is_revoked`] for a key whose fingerprint `fp` is known.
    pub fn is_revoked_fp(&self, key: &HostKey, fp: &str) -> bool {
        if self.revoked.is_empty() {
            return false;
        }
        let subject = self.revoked.contains(fp);
        match key {
            HostKey::Plain(_) => subject,
            HostKey::Certificate(c) => {
                subject || self.revoked.contains(&fingerprint(c.signature_key()))
            }
        }
    }

    /// The names a host key is known by, sorted. A certificate is known by each candidate
    /// name (and each of its principals) that a `@cert-authority` line for its CA covers and
    /// the certificate is valid for, and by the names of its plain key (ssh falls back to it).
    pub fn host_names(&self, key: &HostKey) -> Vec<String> {
        self.host_names_fp(key, &fingerprint(key.key_data()))
    }

    /// [`Self::host_names`] for a key whose fingerprint `fp` is known.
    pub fn host_names_fp(&self, key: &HostKey, fp: &str) -> Vec<String> {
        if self.is_revoked_fp(key, fp) {
            return Vec::new();
        }
        let mut out: BTreeSet<String> = self.names_by_key.get(fp).cloned().unwrap_or_default();
        if let HostKey::Certificate(cert) = key {
            let ca = fingerprint(cert.signature_key());
            let principals = cert.valid_principals().iter().map(|p| p.to_lowercase());
            let candidates: BTreeSet<String> =
                self.by_name.keys().cloned().chain(principals).collect();
            for name in candidates {
                if cert_valid_for(cert, &name) && self.lookup(&name).cas.contains_key(&ca) {
                    out.insert(name);
                }
            }
        }
        out.into_iter().collect()
    }
}

/// `sshkey_cert_check_host` with `require_principal`: a host certificate, currently valid,
/// naming `host` among its principals.
/// (The CA signature was verified when the certificate was parsed.)
fn cert_valid_for(cert: &HostCertificate, host: &str) -> bool {
    if !cert.is_valid_host_certificate_now() {
        return false;
    }
    cert.valid_principals()
        .iter()
        .any(|p| p.eq_ignore_ascii_case(host))
}
