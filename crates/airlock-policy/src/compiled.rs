//! The compiled policy and its pure decision.
//!
//! A request is decided on the hop chain with each host key replaced by its names
//! ([`Hop`]), so the rules below are plain functions of (key rule, operation, hops), tested
//! without sockets, and `airlock policy explain` can decide on names alone.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::time::Duration;

use airlock_agent::destination::{Binding, HostKey};
use airlock_agent::policy::{Decision, Operation, Policy, Query};
use airlock_ssh_config::pattern::match_pattern;

use crate::PolicyError;
use crate::file::{
    ConfirmMode, Defaults, ForwardDefault, KeyRule, KeySelector, PolicyFile, SIGN_SSH_AUTH,
};
use crate::known_hosts::{
    HostIndex, HostKeyAlias, KnownHosts, NameKeys, default_known_hosts, is_literal,
};
use crate::naming::HostNaming;

/// Where a policy's inputs are read from. Everything is injectable for tests.
#[derive(Debug, Clone)]
pub struct PolicySources {
    /// The policy file (`$XDG_CONFIG_HOME/airlock/policy.toml`). Missing: no policy.
    pub policy_file: PathBuf,
    /// The airlock keys directory (`~/.ssh/airlock`), where `<name>.pub` gives a rule's key.
    pub keys_dir: PathBuf,
    /// known_hosts files read besides those listed in the policy.
    pub known_hosts: Vec<PathBuf>,
    /// The ssh config whose aliases name hosts (see [`crate::naming`]); `None`: names are
    /// known_hosts names only.
    pub ssh_config: Option<airlock_ssh_config::ResolveOptions>,
    /// More `(name, known_hosts name)` pairs, besides those of the ssh config.
    pub host_key_aliases: Vec<HostKeyAlias>,
    /// More candidate host names.
    pub extra_names: Vec<String>,
}

impl PolicySources {
    /// The defaults for a user: `~/.ssh/known_hosts{,2}`, `/etc/ssh/ssh_known_hosts{,2}`,
    /// the ssh config files `ssh` reads (`~/.ssh/config`, then `/etc/ssh/ssh_config`), keys in
    /// `keys_dir`.
    pub fn for_user(home: &Path, policy_file: PathBuf, keys_dir: PathBuf) -> Self {
        Self {
            policy_file,
            keys_dir,
            known_hosts: default_known_hosts(home),
            ssh_config: Some(HostNaming::options_for_home(home)),
            host_key_aliases: Vec::new(),
            extra_names: Vec::new(),
        }
    }
}

/// A `[[key]]` rule with its key resolved.
#[derive(Debug, Clone)]
pub struct CompiledRule {
    /// The rule as written.
    pub rule: KeyRule,
    /// The fingerprint(s) the rule applies to (from `fingerprint =` or `<name>.pub`).
    pub fingerprints: Vec<String>,
}

impl CompiledRule {
    /// The name or fingerprint the rule is written for.
    pub fn label(&self) -> String {
        self.rule.key.to_string()
    }

    fn applies_to(&self, fingerprint: &str, comment: &str) -> bool {
        self.fingerprints.iter().any(|f| f == fingerprint)
            || matches!(&self.rule.key, KeySelector::Name(n) if !comment.is_empty() && n == comment)
    }
}

/// One hop of a chain as the policy sees it: the host key's names, not the key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Hop {
    /// The names the host key is known by (empty: an unknown host key).
    pub names: Vec<String>,
    /// The host key's SHA256 fingerprint.
    pub fingerprint: String,
    /// A forwarding hop (`true`) or the authentication bind of the last hop (`false`).
    pub forwarded: bool,
    /// The host key is `@revoked` in known_hosts.
    pub revoked: bool,
}

impl Hop {
    /// The name to show ([`preferred_name`]), else the fingerprint.
    pub fn label(&self) -> String {
        match preferred_name(&self.names) {
            Some(n) => n.to_owned(),
            None => format!("unknown host key {}", self.fingerprint),
        }
    }
}

/// The one name shown for a host known by `names` (decisions, prompts, the audit table): the
/// longest that is not an address or a `[host]:port` form (usually the alias the user types
/// or the most specific host name), else the first.
pub fn preferred_name(names: &[String]) -> Option<&str> {
    let not_address = |n: &&String| n.parse::<std::net::IpAddr>().is_err() && !n.starts_with('[');
    names
        .iter()
        .filter(not_address)
        .max_by_key(|n| n.len())
        .or_else(|| names.first())
        .map(String::as_str)
}

/// Which hosts a pattern of a rule covers, for `airlock policy check`.
#[derive(Debug, Clone)]
pub struct PatternReport {
    /// `forward-through` or `use-for`.
    pub field: &'static str,
    /// The pattern as written (`!` included).
    pub pattern: String,
    /// Each known name it covers (for `!pattern`: excludes) with what the name resolves to.
    pub hosts: Vec<(String, NameKeys)>,
}

/// A policy ready to decide: the file, the resolved keys and the host index.
#[derive(Debug, Clone)]
pub struct CompiledPolicy {
    file: Option<PolicyFile>,
    policy_path: PathBuf,
    rules: Vec<CompiledRule>,
    index: HostIndex,
    warnings: Vec<String>,
    inputs: Vec<PathBuf>,
    naming: HostNaming,
}

impl CompiledPolicy {
    /// No policy file: every request is allowed (OpenSSH behaviour).
    pub fn unrestricted(policy_path: &Path) -> Self {
        Self {
            file: None,
            policy_path: policy_path.to_owned(),
            rules: Vec::new(),
            index: HostIndex::default(),
            warnings: Vec::new(),
            inputs: vec![policy_path.to_owned()],
            naming: HostNaming::none(),
        }
    }

    /// Read the policy and everything it refers to. A missing policy file gives
    /// [`Self::unrestricted`]; an invalid one is an error naming file, line and field.
    pub fn load(sources: &PolicySources) -> Result<Self, PolicyError> {
        let Some(file) = PolicyFile::load(&sources.policy_file)? else {
            return Ok(Self::unrestricted(&sources.policy_file));
        };
        let mut known_hosts_files = sources.known_hosts.clone();
        known_hosts_files.extend(file.defaults.known_hosts.iter().cloned());
        let known_hosts = KnownHosts::load(&known_hosts_files);
        let names = sources.extra_names.clone();
        let mut aliases = sources.host_key_aliases.clone();
        let mut inputs = vec![sources.policy_file.clone()];
        inputs.extend(known_hosts_files);
        let naming = sources
            .ssh_config
            .clone()
            .map_or_else(HostNaming::none, HostNaming::load);
        inputs.extend(naming.files().iter().cloned());
        aliases.extend(naming.aliases(known_hosts.literal_names(), &policy_literals(&file)));
        let problem = naming.problem().map(str::to_owned);
        let mut policy = Self::compile(
            file,
            &known_hosts,
            Some(&sources.keys_dir),
            &names,
            &aliases,
        );
        policy.warnings.extend(problem);
        policy.naming = naming;
        policy.inputs.extend(inputs);
        Ok(policy)
    }

    /// Compile a parsed file against known_hosts. `keys_dir` resolves rules by name;
    /// `names` and `aliases` come from the ssh config.
    pub fn compile(
        file: PolicyFile,
        known_hosts: &KnownHosts,
        keys_dir: Option<&Path>,
        names: &[String],
        aliases: &[HostKeyAlias],
    ) -> Self {
        let mut warnings: Vec<String> = known_hosts
            .skipped
            .iter()
            .map(|s| format!("known_hosts line skipped: {s}"))
            .collect();
        let mut inputs = Vec::new();
        let mut rules = Vec::new();
        let mut seen = BTreeSet::new();
        for rule in &file.keys {
            let at = format!("{}:{}", file.path.display(), rule.line);
            if !seen.insert(rule.key.clone()) {
                warnings.push(format!(
                    "{at}: key {} has an earlier rule; this one is never used",
                    rule.key
                ));
            }
            let fingerprints = match &rule.key {
                KeySelector::Fingerprint(fp) => vec![fp.clone()],
                KeySelector::Name(name) => match keys_dir {
                    None => Vec::new(),
                    Some(dir) => {
                        let pub_path = dir.join(format!("{name}.pub"));
                        inputs.push(pub_path.clone());
                        match read_fingerprint(&pub_path) {
                            Ok(fp) => vec![fp],
                            Err(why) => {
                                warnings.push(format!(
                                    "{at}: key {name}: {why}; the rule applies only to agent keys whose comment is {name:?}"
                                ));
                                Vec::new()
                            }
                        }
                    }
                },
            };
            rules.push(CompiledRule {
                rule: rule.clone(),
                fingerprints,
            });
        }
        let literal = policy_literals(&file);
        let index = HostIndex::build(
            known_hosts,
            literal.iter().chain(names).map(String::as_str),
            aliases,
        );
        let mut policy = Self {
            policy_path: file.path.clone(),
            file: Some(file),
            rules,
            index,
            warnings,
            inputs,
            naming: HostNaming::none(),
        };
        policy.warn_unmatched();
        policy
    }

    fn warn_unmatched(&mut self) {
        let mut more = Vec::new();
        for r in &self.rules {
            for p in self.pattern_reports(r) {
                if p.hosts.is_empty() {
                    more.push(format!(
                        "{}:{}: key {}: {} pattern {:?} matches no known host key (add the host to known_hosts, or fix the pattern)",
                        self.policy_path.display(),
                        r.rule.line,
                        r.label(),
                        p.field,
                        p.pattern
                    ));
                }
            }
        }
        self.warnings.extend(more);
    }

    /// Whether there is no policy file (OpenSSH behaviour).
    pub fn is_unrestricted(&self) -> bool {
        self.file.is_none()
    }

    /// The policy file path (whether or not it exists).
    pub fn path(&self) -> &Path {
        &self.policy_path
    }

    /// The parsed file, if there is one.
    pub fn file(&self) -> Option<&PolicyFile> {
        self.file.as_ref()
    }

    /// The rules with their keys resolved.
    pub fn rules(&self) -> &[CompiledRule] {
        &self.rules
    }

    /// Things the user should fix: patterns matching no host key, keys not found, skipped
    /// known_hosts lines, shadowed rules.
    pub fn warnings(&self) -> &[String] {
        &self.warnings
    }

    /// The host index.
    pub fn hosts(&self) -> &HostIndex {
        &self.index
    }

    /// The files whose change means the policy must be read again.
    pub fn inputs(&self) -> &[PathBuf] {
        &self.inputs
    }

    fn defaults(&self) -> Defaults {
        self.file
            .as_ref()
            .map(|f| f.defaults.clone())
            .unwrap_or_default()
    }

    /// The rule that applies to a key: the first naming its fingerprint or, by name, its
    /// comment.
    pub fn rule_for(&self, fingerprint: &str, comment: &str) -> Option<&CompiledRule> {
        self.rules
            .iter()
            .find(|r| r.applies_to(fingerprint, comment))
    }

    /// For each `forward-through` and `use-for` pattern of a rule, the known names it covers.
    pub fn pattern_reports(&self, rule: &CompiledRule) -> Vec<PatternReport> {
        let mut out = Vec::new();
        let fields = [
            ("forward-through", &rule.rule.forward_through),
            ("use-for", &rule.rule.use_for),
        ];
        for (field, patterns) in fields {
            for pattern in patterns.iter().flatten() {
                let body = pattern.strip_prefix('!').unwrap_or(pattern).to_lowercase();
                let mut hosts: Vec<(String, NameKeys)> = self
                    .index
                    .names()
                    .filter(|(n, _)| match_pattern(n, &body))
                    .map(|(n, k)| (n.to_owned(), k.clone()))
                    .collect();
                if hosts.is_empty() && is_literal(&body) {
                    let k = self.index.lookup(&body);
                    if !k.is_empty() {
                        hosts.push((body.clone(), k));
                    }
                }
                // Hosts under a CA: the CA line's own pattern stands for them.
                hosts.extend(
                    self.index
                        .cert_authority_patterns()
                        .into_iter()
                        .filter(|(ca_pattern, _)| match_pattern(ca_pattern, &body)),
                );
                out.push(PatternReport {
                    field,
                    pattern: pattern.clone(),
                    hosts,
                });
            }
        }
        out
    }

    /// The hops of a connection's chain, host keys replaced by their names.
    pub fn hops(&self, chain: &[Binding]) -> Vec<Hop> {
        chain
            .iter()
            .map(|b| Hop {
                names: self.index.host_names_fp(&b.host_key, &b.fingerprint),
                fingerprint: b.fingerprint.clone(),
                forwarded: b.forwarded,
                revoked: self.index.is_revoked_fp(&b.host_key, &b.fingerprint),
            })
            .collect()
    }

    /// The name `ssh` looks `typed`'s host keys up under (see [`crate::naming`]): the
    /// `HostKeyAlias`, or `HostName` with `[...]:port` for a port other than 22; `typed`
    /// itself when the ssh config says nothing.
    pub fn known_hosts_name(&self, typed: &str) -> String {
        self.naming
            .known_hosts_name(typed)
            .unwrap_or_else(|| typed.to_lowercase())
    }

    /// A hop for a host name as the user types it (for `explain` and `connect`): the names of
    /// the first host key it resolves to, directly or through the ssh config, or the name alone
    /// if it is known only through a CA. `None` if nothing ties the name to a key.
    pub fn hop_for_name(&self, name: &str, forwarded: bool) -> Option<Hop> {
        let typed = name.to_lowercase();
        let mut found = self.index.lookup(&typed);
        let known_as = self.known_hosts_name(&typed);
        if known_as != typed {
            let more = self.index.lookup(&known_as);
            found.keys.extend(more.keys);
            found.cas.extend(more.cas);
        }
        if let Some((fp, key)) = found.keys.iter().next() {
            let mut names = self.index.host_names(&HostKey::Plain(key.clone()));
            for n in [&known_as, &typed] {
                if !names.iter().any(|x| x == n) {
                    names.insert(0, n.clone());
                }
            }
            return Some(Hop {
                names,
                fingerprint: fp.clone(),
                forwarded,
                revoked: false,
            });
        }
        let (ca, _) = found.cas.iter().next()?;
        let mut names = vec![typed.clone()];
        if known_as != typed {
            names.push(known_as);
        }
        Some(Hop {
            names,
            fingerprint: format!("a certificate signed by {ca}"),
            forwarded,
            revoked: false,
        })
    }

    /// Whether some key may be used through `host` (typed as for `ssh`), and why: what
    /// `airlock connect` asks before it forwards the agent there.
    pub fn forwarding_through(&self, host: &str) -> (bool, String) {
        if self.is_unrestricted() {
            return (true, "no policy file: OpenSSH behaviour".to_owned());
        }
        if self.defaults().forward == ForwardDefault::Allow {
            return (true, "[defaults] forward = \"allow\"".to_owned());
        }
        let Some(hop) = self.hop_for_name(host, true) else {
            return (
                false,
                format!(
                    "{host} has no host key in known_hosts (looked up as {}); connect once with ssh to record it",
                    self.known_hosts_name(host)
                ),
            );
        };
        for rule in &self.rules {
            let comment = match &rule.rule.key {
                KeySelector::Name(n) => n.clone(),
                KeySelector::Fingerprint(_) => String::new(),
            };
            let fingerprint = rule
                .fingerprints
                .first()
                .cloned()
                .unwrap_or_else(|| rule.rule.key.to_string());
            match self.decide_hops(
                &fingerprint,
                &comment,
                Operation::List,
                std::slice::from_ref(&hop),
                false,
            ) {
                Decision::Allow(reason) | Decision::Confirm(reason) => {
                    return (true, format!("key {}: {reason}", rule.label()));
                }
                Decision::Deny(_) => {}
            }
        }
        (
            false,
            format!(
                "no key's forward-through in {} names {host}",
                self.policy_path.display()
            ),
        )
    }

    /// The decision on names: the pure core of [`Policy::decide`].
    pub fn decide_hops(
        &self,
        fingerprint: &str,
        comment: &str,
        operation: Operation<'_>,
        hops: &[Hop],
        bind_failed: bool,
    ) -> Decision {
        if self.file.is_none() {
            return Decision::Allow("no policy file: OpenSSH behaviour".to_owned());
        }
        if let Some(h) = hops.iter().find(|h| h.revoked) {
            return Decision::Deny(format!(
                "host key {} is marked @revoked in known_hosts",
                h.fingerprint
            ));
        }
        let defaults = self.defaults();
        let rule = self.rule_for(fingerprint, comment);
        let decision = match rule {
            None => decide_unruled(&defaults, hops, bind_failed),
            Some(r) => decide_ruled(r, operation, hops, bind_failed),
        };
        let Decision::Allow(reason) = decision else {
            return decision;
        };
        if operation == Operation::List {
            return Decision::Allow(reason);
        }
        match rule
            .and_then(|r| r.rule.confirm)
            .unwrap_or(defaults.confirm)
        {
            ConfirmMode::Always => Decision::Confirm(format!("{reason}; confirm = \"always\"")),
            ConfirmMode::Forwarded if hops.iter().any(|h| h.forwarded) => {
                Decision::Confirm(format!("{reason}; confirm = \"forwarded\""))
            }
            _ => Decision::Allow(reason),
        }
    }
}

/// The literal host names a policy writes in its patterns (`!` dropped).
fn policy_literals(file: &PolicyFile) -> Vec<String> {
    file.keys
        .iter()
        .flat_map(|r| r.forward_through.iter().chain(r.use_for.iter()).flatten())
        .map(|p| p.strip_prefix('!').unwrap_or(p).to_owned())
        .filter(|p| is_literal(p))
        .collect()
}

fn read_fingerprint(path: &Path) -> Result<String, String> {
    let text = fs_err::read_to_string(path).map_err(|e| match e.kind() {
        std::io::ErrorKind::NotFound => format!("no public key {}", path.display()),
        _ => e.to_string(),
    })?;
    let key = ssh_key::PublicKey::from_openssh(text.trim())
        .map_err(|e| format!("{}: {e}", path.display()))?;
    Ok(key.fingerprint(ssh_key::HashAlg::Sha256).to_string())
}

fn decide_unruled(defaults: &Defaults, hops: &[Hop], bind_failed: bool) -> Decision {
    if defaults.forward == ForwardDefault::Allow {
        return Decision::Allow("no rule for this key; [defaults] forward = \"allow\"".to_owned());
    }
    if bind_failed {
        return Decision::Deny(
            "a session bind failed on this connection; keys without a rule are refused".to_owned(),
        );
    }
    if let Some(h) = hops.iter().find(|h| h.forwarded) {
        return Decision::Deny(format!(
            "no rule for this key and [defaults] forward = \"deny\": not usable through {}",
            h.label()
        ));
    }
    Decision::Allow("no rule for this key; not forwarded".to_owned())
}

enum HopMatch<'a> {
    Matched(&'a str, &'a str),
    Excluded(&'a str, &'a str),
    NoMatch,
}

/// `s` in lower case, copied only if it has upper-case letters (names from the index are
/// lower case already).
fn lowercase(s: &str) -> std::borrow::Cow<'_, str> {
    if s.chars().any(char::is_uppercase) {
        std::borrow::Cow::Owned(s.to_lowercase())
    } else {
        std::borrow::Cow::Borrowed(s)
    }
}

/// A host matches a pattern list if one of its names matches a positive pattern and none of
/// its names matches a negated one.
fn match_hop<'a>(hop: &'a Hop, patterns: &'a [String]) -> HopMatch<'a> {
    let mut found = HopMatch::NoMatch;
    for name in &hop.names {
        let lname = lowercase(name);
        for p in patterns {
            let (negated, body) = match p.strip_prefix('!') {
                Some(b) => (true, b),
                None => (false, p.as_str()),
            };
            if match_pattern(&lname, &lowercase(body)) {
                if negated {
                    return HopMatch::Excluded(name, p);
                }
                if matches!(found, HopMatch::NoMatch) {
                    found = HopMatch::Matched(name, p);
                }
            }
        }
    }
    found
}

/// Check that every hop is a forwarding hop permitted by `forward-through`; on success the
/// sentence fragment saying so.
fn check_forwarding(rule: &CompiledRule, hops: &[Hop]) -> Result<String, Decision> {
    let key = rule.label();
    let mut parts = Vec::new();
    for h in hops {
        if !h.forwarded {
            return Err(Decision::Deny(format!(
                "{} is an authentication bind, not a forwarding hop",
                h.label()
            )));
        }
        let Some(patterns) = &rule.rule.forward_through else {
            return Err(Decision::Deny(format!(
                "key {key} has no forward-through: not usable through {}",
                h.label()
            )));
        };
        match match_hop(h, patterns) {
            HopMatch::Matched(name, p) => parts.push(if name == p {
                name.to_owned()
            } else {
                format!("{name} ({p})")
            }),
            HopMatch::Excluded(name, p) => {
                return Err(Decision::Deny(format!(
                    "{name} is excluded by forward-through pattern {p} of key {key}"
                )));
            }
            HopMatch::NoMatch => {
                return Err(Decision::Deny(format!(
                    "{} is not in forward-through of key {key}",
                    h.label()
                )));
            }
        }
    }
    Ok(if parts.is_empty() {
        String::new()
    } else {
        format!("through {}", parts.join(", "))
    })
}

fn check_destination(rule: &CompiledRule, dest: &Hop) -> Result<String, Decision> {
    let key = rule.label();
    let Some(patterns) = &rule.rule.use_for else {
        return Ok(format!("to {} (no use-for limit)", dest.label()));
    };
    match match_hop(dest, patterns) {
        HopMatch::Matched(name, p) => Ok(if name == p {
            format!("to {name}")
        } else {
            format!("to {name} ({p})")
        }),
        HopMatch::Excluded(name, p) => Err(Decision::Deny(format!(
            "{name} is excluded by use-for pattern {p} of key {key}"
        ))),
        HopMatch::NoMatch => Err(Decision::Deny(format!(
            "{} is not in use-for of key {key}",
            dest.label()
        ))),
    }
}

fn sentence(parts: &[String]) -> String {
    parts
        .iter()
        .filter(|p| !p.is_empty())
        .cloned()
        .collect::<Vec<_>>()
        .join(" ")
}

fn decide_ruled(
    rule: &CompiledRule,
    operation: Operation<'_>,
    hops: &[Hop],
    bind_failed: bool,
) -> Decision {
    let key = rule.label();
    if bind_failed {
        return Decision::Deny("a session bind failed on this connection".to_owned());
    }
    let sign = rule.rule.sign.as_deref();
    let ssh_auth_allowed = sign.is_none_or(|s| s.iter().any(|x| x == SIGN_SSH_AUTH));
    let (earlier, last) = match hops.split_last() {
        Some((last, earlier)) => (earlier, Some(last)),
        None => (hops, None),
    };
    let result = match operation {
        Operation::List => match last {
            None => Ok("local connection".to_owned()),
            Some(last) if last.forwarded => check_forwarding(rule, hops)
                .map(|via| format!("may be used beyond {} ({via})", last.label())),
            Some(last) => check_forwarding(rule, earlier)
                .and_then(|via| Ok(sentence(&[check_destination(rule, last)?, via])))
                .map(|s| format!("listed: {s}")),
        },
        Operation::SignUserAuth { user } => {
            if ssh_auth_allowed {
                match last {
                    None if rule.rule.use_for.is_some() => Err(Decision::Deny(format!(
                        "unbound connection: the destination is unknown and key {key} is limited by use-for"
                    ))),
                    None => Ok(format!(
                        "ssh auth as {user} on a local connection (no use-for limit)"
                    )),
                    Some(last) if last.forwarded => Err(Decision::Deny(format!(
                        "sign on forwarding hop {}",
                        last.label()
                    ))),
                    Some(last) => check_forwarding(rule, earlier).and_then(|via| {
                        Ok(sentence(&[
                            format!("ssh auth as {user}"),
                            check_destination(rule, last)?,
                            via,
                        ]))
                    }),
                }
            } else {
                Err(Decision::Deny(format!(
                    "key {key} is not for ssh authentication (sign does not list \"ssh-auth\")"
                )))
            }
        }
        Operation::SignSshSig { namespace } => {
            let listed = sign.is_some_and(|s| s.iter().any(|x| x == namespace));
            if hops.is_empty() {
                if sign.is_none() || listed {
                    Ok(format!(
                        "SSHSIG namespace {namespace:?} on a local connection"
                    ))
                } else {
                    Err(Decision::Deny(format!(
                        "SSHSIG namespace {namespace:?} is not in sign of key {key}"
                    )))
                }
            } else if !listed {
                Err(Decision::Deny(format!(
                    "SSHSIG namespace {namespace:?} through a forwarded connection needs sign = [\"{namespace}\"] for key {key}"
                )))
            } else {
                check_forwarding(rule, hops)
                    .map(|via| sentence(&[format!("SSHSIG namespace {namespace:?}"), via]))
            }
        }
        Operation::SignOther => {
            if hops.is_empty() && sign.is_none() {
                Ok("signature on a local connection".to_owned())
            } else {
                Err(Decision::Deny(format!(
                    "data that is neither ssh authentication nor SSHSIG is refused for key {key}"
                )))
            }
        }
    };
    match result {
        Ok(reason) => Decision::Allow(reason),
        Err(deny) => deny,
    }
}

impl Policy for CompiledPolicy {
    fn decide(&self, query: &Query<'_>) -> Decision {
        let hops = self.hops(query.chain);
        self.decide_hops(
            query.fingerprint,
            query.comment,
            query.operation,
            &hops,
            query.bind_failed,
        )
    }

    fn lifetime(&self, fingerprint: &str, comment: &str) -> Option<Duration> {
        self.rule_for(fingerprint, comment)
            .and_then(|r| r.rule.lifetime)
    }

    fn rsa_min_bits(&self) -> Option<u32> {
        self.defaults().rsa_min_bits
    }

    fn host_names(&self, key: &HostKey) -> Vec<String> {
        self.index.host_names(key)
    }

    fn binding_names(&self, bind: &Binding) -> Vec<String> {
        self.index.host_names_fp(&bind.host_key, &bind.fingerprint)
    }
}
