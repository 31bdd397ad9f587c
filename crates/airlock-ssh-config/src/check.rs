//! Auditing a client config for settings that weaken agent forwarding or host authentication.
//!
//! Each [`Finding`] has a stable id, a severity, the `file:line` it is about, what is wrong and
//! the fix. Some checks read the file's blocks directly; the "shadowed setting" check resolves
//! each concretely named host with [`crate::resolve`] and reports directives that never take
//! effect.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use serde::Serialize;

use crate::lexer::{Line, argv_split, split_line};
use crate::options::{Kind, lookup_keyword};
use crate::pattern::{has_wildcard, match_pattern};
use crate::resolve::{ConfigSource, LocalContext, ResolveOptions, resolve};
use crate::{Error, Location, TraceOutcome};

/// How serious a finding is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    /// Worth knowing.
    Info,
    /// Probably not what was meant.
    Warning,
    /// Exposes keys or disables host authentication.
    Error,
}

impl std::fmt::Display for Severity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::Info => "info",
            Self::Warning => "warning",
            Self::Error => "error",
        })
    }
}

/// One problem found in a config.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Finding {
    /// Stable identifier, e.g. `forward-agent-wildcard`.
    pub id: &'static str,
    /// Severity.
    pub severity: Severity,
    /// The file.
    pub file: PathBuf,
    /// The 1-based line.
    pub line: usize,
    /// What is wrong.
    pub message: String,
    /// How to fix it.
    pub fix: String,
}

/// What to audit.
#[derive(Debug, Clone)]
pub struct CheckOptions {
    /// The config file (usually `~/.ssh/config`).
    pub config: PathBuf,
    /// A forwarding policy file; the "not in the policy" check runs only when it exists.
    pub policy: Option<PathBuf>,
    /// Directories to scan for private keys readable by others (usually `~/.ssh` and
    /// `~/.ssh/airlock`).
    pub key_dirs: Vec<PathBuf>,
    /// The local user and machine.
    pub context: LocalContext,
}

/// A block header.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Header {
    /// Before any `Host`/`Match`: applies to every host.
    Global,
    /// `Host` with its patterns.
    Host(Vec<String>),
    /// `Match` with its criteria text.
    Match(String),
}

#[derive(Debug, Clone)]
struct Directive {
    keyword: &'static str,
    args: Vec<String>,
    rest: String,
    location: Location,
    header: Header,
    header_location: Option<Location>,
}

#[derive(Debug, serde::Deserialize)]
struct PolicyFile {
    #[serde(default)]
    key: Vec<PolicyKey>,
}

#[derive(Debug, serde::Deserialize)]
struct PolicyKey {
    #[serde(default, rename = "forward-through")]
    forward_through: Vec<String>,
}

/// Read the `forward-through` patterns of every key in a policy file.
pub fn policy_forward_patterns(path: &Path) -> Result<Vec<String>, Error> {
    let text = fs_err::read_to_string(path).map_err(|source| Error::Read {
        path: path.to_path_buf(),
        source,
    })?;
    let parsed: PolicyFile = toml::from_str(&text).map_err(|e| Error::Policy {
        path: path.to_path_buf(),
        message: e.to_string(),
    })?;
    Ok(parsed
        .key
        .into_iter()
        .flat_map(|k| k.forward_through)
        .collect())
}

fn collect(
    path: &Path,
    ctx: &LocalContext,
    header: &mut Header,
    header_location: &mut Option<Location>,
    out: &mut Vec<Directive>,
    depth: usize,
) -> Result<(), Error> {
    if depth > 16 {
        return Err(Error::IncludeDepth {
            path: path.to_path_buf(),
        });
    }
    let bytes = std::fs::read(path).map_err(|source| Error::Read {
        path: path.to_path_buf(),
        source,
    })?;
    let text = String::from_utf8_lossy(&bytes);
    for (i, raw) in text.split_inclusive('\n').enumerate() {
        let location = Location {
            file: path.to_path_buf(),
            line: i + 1,
        };
        let Line::Directive(d) = split_line(raw) else {
            continue;
        };
        let keyword = d.keyword.to_ascii_lowercase();
        let args = argv_split(&d.rest).unwrap_or_default();
        match lookup_keyword(&keyword) {
            Some(Kind::Host) => {
                *header = Header::Host(args);
                *header_location = Some(location);
            }
            Some(Kind::Match) => {
                *header = Header::Match(d.rest.clone());
                *header_location = Some(location);
            }
            Some(Kind::Include) => {
                for arg in &args {
                    let pattern = if arg.starts_with('/') || arg.starts_with('~') {
                        arg.clone()
                    } else {
                        format!("~/.ssh/{arg}")
                    };
                    let pattern =
                        crate::expand::tilde(&pattern, &ctx.home, &|_| None).unwrap_or(pattern);
                    let Ok(paths) = glob::glob(&pattern) else {
                        continue;
                    };
                    let mut paths: Vec<PathBuf> = paths.filter_map(Result::ok).collect();
                    paths.sort();
                    for p in paths {
                        if p.is_file() {
                            let (mut h, mut hl) = (header.clone(), header_location.clone());
                            collect(&p, ctx, &mut h, &mut hl, out, depth + 1)?;
                        }
                    }
                }
            }
            Some(Kind::Value(kw)) => out.push(Directive {
                keyword: kw,
                args,
                rest: d.rest.clone(),
                location,
                header: header.clone(),
                header_location: header_location.clone(),
            }),
            _ => {}
        }
    }
    Ok(())
}

fn forward_agent_on(d: &Directive) -> bool {
    d.keyword == "forwardagent"
        && d.args
            .first()
            .is_some_and(|a| !matches!(a.to_ascii_lowercase().as_str(), "no" | "false"))
}

/// Whether a `Host` pattern list covers broadly: `*`, or a pattern that starts with a wildcard.
fn breadth(header: &Header) -> Option<(bool, String)> {
    match header {
        Header::Global => Some((true, "every host (no Host line above it)".into())),
        Header::Match(m) => {
            let lower = m.to_ascii_lowercase();
            if lower.split_whitespace().any(|t| t == "all") {
                Some((true, format!("every host (Match {m})")))
            } else if !lower.contains("host") {
                Some((true, format!("every host that satisfies Match {m}")))
            } else {
                None
            }
        }
        Header::Host(pats) => {
            let positive: Vec<&String> = pats.iter().filter(|p| !p.starts_with('!')).collect();
            if positive.iter().any(|p| p.as_str() == "*") {
                return Some((true, "Host *".into()));
            }
            positive
                .iter()
                .find(|p| {
                    p.starts_with('*')
                        || p.starts_with('?')
                        || p.chars().filter(char::is_ascii_alphanumeric).count() < 3
                })
                .map(|p| (false, format!("the broad wildcard Host {p}")))
        }
    }
}

fn expand_home(path: &str, ctx: &LocalContext) -> Option<PathBuf> {
    if path.contains('%') || path.contains("${") {
        return None;
    }
    crate::expand::tilde(path, &ctx.home, &|_| None)
        .ok()
        .map(PathBuf::from)
}

fn is_private_key(path: &Path) -> bool {
    let Ok(mut f) = std::fs::File::open(path) else {
        return false;
    };
    let mut head = [0u8; 64];
    let n = std::io::Read::read(&mut f, &mut head).unwrap_or(0);
    let head = String::from_utf8_lossy(head.get(..n).unwrap_or_default()).into_owned();
    head.starts_with("-----BEGIN") && head.contains("PRIVATE KEY")
}

#[cfg(unix)]
fn mode_of(path: &Path) -> Option<u32> {
    use std::os::unix::fs::PermissionsExt as _;
    std::fs::metadata(path).ok().map(|m| m.permissions().mode())
}

#[cfg(not(unix))]
fn mode_of(_path: &Path) -> Option<u32> {
    None
}

/// Audit a config. An unreadable or invalid file is an error (the CLI's exit status 2).
#[allow(clippy::too_many_lines)]
pub fn check(options: &CheckOptions) -> Result<Vec<Finding>, Error> {
    let ctx = &options.context;
    // The file must be one ssh accepts: resolving any host surfaces its errors.
    let resolve_opts = |host: &str| {
        let ro = ResolveOptions {
            config: ConfigSource::File(options.config.clone()),
            user: None,
            port: None,
            context: ctx.clone(),
        };
        resolve(host, &ro)
    };
    match resolve_opts("airlock-check.invalid") {
        Ok(_) | Err(Error::MatchExecUnsupported { .. }) => {}
        Err(e) => return Err(e),
    }
    let mut directives = Vec::new();
    collect(
        &options.config,
        ctx,
        &mut Header::Global,
        &mut None,
        &mut directives,
        0,
    )?;
    let mut findings = Vec::new();
    let mut push = |id, severity, location: &Location, message: String, fix: String| {
        findings.push(Finding {
            id,
            severity,
            file: location.file.clone(),
            line: location.line,
            message,
            fix,
        });
    };

    // Hosts named concretely in Host lines, and hosts used as jump hosts.
    let mut concrete: BTreeSet<String> = BTreeSet::new();
    for d in &directives {
        if let Header::Host(p) = &d.header {
            concrete.extend(
                p.iter()
                    .filter(|x| !x.starts_with('!') && !has_wildcard(x))
                    .cloned(),
            );
        }
    }
    let mut jump_hosts: BTreeSet<String> = BTreeSet::new();
    for d in &directives {
        match d.keyword {
            "proxyjump" => {
                for hop in d.rest.split(',') {
                    let hop = hop.split_whitespace().next().unwrap_or_default();
                    let hop = hop.strip_prefix("ssh://").unwrap_or(hop);
                    let hop = hop.rsplit('@').next().unwrap_or(hop);
                    let host = hop.split(':').next().unwrap_or(hop);
                    if !host.is_empty() && !host.eq_ignore_ascii_case("none") {
                        jump_hosts.insert(host.to_owned());
                    }
                }
            }
            "proxycommand" => {
                let words: Vec<&str> = d.rest.split_whitespace().collect();
                if words.first().is_some_and(|w| w.ends_with("ssh")) {
                    if words.contains(&"-A") {
                        push(
                            "forward-agent-proxyjump",
                            Severity::Warning,
                            &d.location,
                            "ProxyCommand runs `ssh -A`: the agent is forwarded to the jump host, which only relays the connection".into(),
                            "replace the ProxyCommand with `ProxyJump <jump host>`; the agent then stays on this machine".into(),
                        );
                    }
                    let mut skip = false;
                    for w in words.iter().skip(1) {
                        if skip {
                            skip = false;
                            continue;
                        }
                        if matches!(*w, "-W" | "-l" | "-p" | "-i" | "-F" | "-o" | "-J") {
                            skip = true;
                            continue;
                        }
                        if !w.starts_with('-') && !w.contains('%') {
                            jump_hosts.insert(w.rsplit('@').next().unwrap_or(w).to_owned());
                        }
                    }
                }
            }
            _ => {}
        }
    }

    let policy = match &options.policy {
        Some(p) if p.exists() => Some(policy_forward_patterns(p)?),
        _ => None,
    };

    for d in &directives {
        let at = d.header_location.as_ref().unwrap_or(&d.location);
        if forward_agent_on(d) {
            if let Some((all, what)) = breadth(&d.header) {
                push(
                    "forward-agent-wildcard",
                    if all { Severity::Error } else { Severity::Warning },
                    &d.location,
                    format!(
                        "ForwardAgent {} applies to {what}: every such server's root can use your keys while you are connected",
                        d.args.first().map_or("", String::as_str)
                    ),
                    "enable ForwardAgent only in `Host` blocks naming the servers that need it, and end the file with `Host *` / `ForwardAgent no`".into(),
                );
            }
            if let (Some(patterns), Header::Host(hosts)) = (&policy, &d.header) {
                for h in hosts.iter().filter(|h| !h.starts_with('!')) {
                    if !patterns.iter().any(|p| match_pattern(h, p)) {
                        push(
                            "forward-agent-not-in-policy",
                            Severity::Warning,
                            &d.location,
                            format!(
                                "ForwardAgent is enabled for `{h}`, which no key's forward-through pattern in the policy lists: the agent will refuse every forwarded request from it"
                            ),
                            format!(
                                "add `{h}` to a key's `forward-through` in the policy, or remove ForwardAgent for it"
                            ),
                        );
                    }
                }
            }
            if let Header::Host(hosts) = &d.header
                && let Some(j) = hosts.iter().find(|h| jump_hosts.contains(*h))
            {
                push(
                    "forward-agent-proxyjump",
                    Severity::Warning,
                    &d.location,
                    format!(
                        "ForwardAgent is enabled for `{j}`, which is used as a jump host: it only relays connections and never needs your agent"
                    ),
                    format!(
                        "remove ForwardAgent from `{j}` and reach the inner hosts with `ProxyJump {j}`"
                    ),
                );
            }
        }
        if d.keyword == "stricthostkeychecking"
            && d.args
                .first()
                .is_some_and(|a| matches!(a.to_ascii_lowercase().as_str(), "no" | "off" | "false"))
        {
            push(
                "host-key-checking-disabled",
                Severity::Error,
                &d.location,
                "StrictHostKeyChecking no accepts any host key, even a changed one: a man in the middle gets your session (and any forwarded agent)".into(),
                "use `StrictHostKeyChecking accept-new` (trust on first use, refuse changes) or `yes`".into(),
            );
        }
        if d.keyword == "userknownhostsfile" && d.args.iter().any(|a| a == "/dev/null") {
            push(
                "host-key-checking-disabled",
                Severity::Error,
                &d.location,
                "UserKnownHostsFile /dev/null forgets every host key, so no change is ever detected".into(),
                "remove the line (default ~/.ssh/known_hosts), or point it at a real file".into(),
            );
        }
        if d.keyword == "identityfile"
            && let Some(path) = d.args.first().and_then(|a| expand_home(a, ctx))
        {
            match mode_of(&path) {
                None => push(
                    "identity-file-missing",
                    Severity::Warning,
                    &d.location,
                    format!("IdentityFile {} does not exist", path.display()),
                    "create the key (`airlock key new NAME`) or remove the line".into(),
                ),
                Some(mode) if mode & 0o077 != 0 => push(
                    "identity-file-permissions",
                    Severity::Error,
                    &d.location,
                    format!(
                        "IdentityFile {} has mode {:04o}: others can read or change it, and ssh refuses keys readable by others",
                        path.display(),
                        mode & 0o7777
                    ),
                    format!("chmod 600 {}", path.display()),
                ),
                Some(_) => {}
            }
        }
        let _ = at;
    }

    // Per concrete host: shadowed settings, and identities without IdentitiesOnly.
    for host in &concrete {
        let Ok(resolved) = resolve_opts(host) else {
            continue;
        };
        let block_of = |loc: &Location| {
            directives
                .iter()
                .find(|d| d.location == *loc)
                .and_then(|d| match &d.header {
                    Header::Host(p) => Some(p.contains(host)),
                    _ => None,
                })
        };
        for t in &resolved.trace {
            if let TraceOutcome::Shadowed(by) = &t.outcome
                && block_of(&t.location) == Some(true)
            {
                let by_text = by
                    .as_ref()
                    .map_or_else(|| "an earlier line".to_owned(), ToString::to_string);
                push(
                    "shadowed-setting",
                    Severity::Warning,
                    &t.location,
                    format!(
                        "{} here never takes effect for `{host}`: {by_text} set it first (the first value obtained wins)",
                        t.keyword
                    ),
                    format!(
                        "move the `Host {host}` block above the block at {by_text}, or remove the earlier setting"
                    ),
                );
            }
        }
        if resolved.identity_files.len() >= 2
            && !resolved.identities_only
            && resolved.origins.contains_key("identityfile")
            && let Some(loc) = resolved.origins.get("identityfile")
        {
            push(
                "identities-without-identitiesonly",
                Severity::Warning,
                loc,
                format!(
                    "`{host}` is offered {} identities and every key in the agent, without IdentitiesOnly: servers see all of them and may lock you out after too many attempts",
                    resolved.identity_files.len()
                ),
                format!("add `IdentitiesOnly yes` to the `Host {host}` block"),
            );
        }
    }

    // Private keys readable by others, referenced or not (those reported above excepted).
    let reported: BTreeSet<PathBuf> = directives
        .iter()
        .filter(|d| d.keyword == "identityfile")
        .filter_map(|d| d.args.first().and_then(|a| expand_home(a, ctx)))
        .filter(|p| mode_of(p).is_some_and(|m| m & 0o077 != 0))
        .collect();
    for dir in &options.key_dirs {
        let Ok(entries) = std::fs::read_dir(dir) else {
            continue;
        };
        let mut paths: Vec<PathBuf> = entries.filter_map(|e| e.ok().map(|e| e.path())).collect();
        paths.sort();
        for p in paths {
            if !p.is_file() || reported.contains(&p) || !is_private_key(&p) {
                continue;
            }
            if let Some(mode) = mode_of(&p).filter(|m| m & 0o066 != 0) {
                push(
                    "private-key-readable",
                    Severity::Error,
                    &Location {
                        file: p.clone(),
                        line: 1,
                    },
                    format!(
                        "private key {} has mode {:04o}: other users can copy it",
                        p.display(),
                        mode & 0o7777
                    ),
                    format!("chmod 600 {}", p.display()),
                );
            }
        }
    }
    findings.sort_by(|a, b| (&a.file, a.line, a.id).cmp(&(&b.file, b.line, b.id)));
    findings.dedup();
    Ok(findings)
}
