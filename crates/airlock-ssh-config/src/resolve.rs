//! Reading config files and computing the effective settings for one destination, in the
//! order `ssh.c` does it: first pass, host name substitution and canonicalisation, optional
//! final pass, defaults, then `%`-token expansion; printed in `ssh -G`'s format.

use std::collections::HashMap;
use std::fmt::Write as _;
use std::net::{IpAddr, Ipv4Addr, ToSocketAddrs};
use std::path::{Path, PathBuf};

use crate::algorithms as alg;
use crate::expand::{self, ExpandError};
use crate::lexer::{Line, Tokens, split_line};
use crate::options::{EscapeChar, Kind, Options, ParseEnv, iptos2str, lookup_keyword, vis_char};
use crate::pattern::{ListMatch, match_hostname, match_pattern, match_pattern_list};
use crate::{Error, Location, Trace};

/// Facts about the local user and machine that OpenSSH consults (`getpwuid`, `gethostname`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LocalContext {
    /// Login name (`pw_name`): `%u`, `Match localuser`, the default `User`.
    pub user_name: String,
    /// Numeric uid: `%i`, and the owner check on included files.
    pub uid: u32,
    /// Home directory from the password database (`pw_dir`), which `ssh` uses for `~` and
    /// `%d` rather than `$HOME`.
    pub home: PathBuf,
    /// `gethostname()`: `%l` (and `%L` up to the first dot).
    pub hostname: String,
    /// The system-wide file read after the user's (`/etc/ssh/ssh_config`).
    pub system_config: PathBuf,
    /// Where relative `Include`s of the system file resolve (`/etc/ssh`).
    pub system_dir: PathBuf,
}

impl LocalContext {
    /// The current process's user and host, looked up as `ssh` does.
    pub fn current() -> Result<Self, Error> {
        let uid = nix::unistd::getuid();
        let user = nix::unistd::User::from_uid(uid)
            .ok()
            .flatten()
            .ok_or(Error::NoPasswdEntry { uid: uid.as_raw() })?;
        let hostname = nix::unistd::gethostname()
            .map(|h| h.to_string_lossy().into_owned())
            .unwrap_or_default();
        Ok(Self {
            user_name: user.name,
            uid: uid.as_raw(),
            home: user.dir,
            hostname,
            system_config: PathBuf::from("/etc/ssh/ssh_config"),
            system_dir: PathBuf::from("/etc/ssh"),
        })
    }

    /// [`Self::current`] with `home` for `~` (airlock's home, `$HOME`, in place of the
    /// password database's); without a password entry the uid stands for the user name.
    pub fn with_home(home: &Path) -> Self {
        if let Ok(mut c) = Self::current() {
            home.clone_into(&mut c.home);
            return c;
        }
        let uid = nix::unistd::getuid().as_raw();
        Self {
            user_name: uid.to_string(),
            uid,
            home: home.to_owned(),
            hostname: nix::unistd::gethostname()
                .map(|h| h.to_string_lossy().into_owned())
                .unwrap_or_default(),
            system_config: PathBuf::from("/etc/ssh/ssh_config"),
            system_dir: PathBuf::from("/etc/ssh"),
        }
    }
}

/// Which configuration files to read.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum ConfigSource {
    /// `~/.ssh/config` then the system file (no `-F`).
    #[default]
    Default,
    /// `-F FILE`: only this file (read as a user file).
    File(PathBuf),
    /// `-F none`: no file at all.
    None,
}

/// Everything `resolve` needs besides the host.
#[derive(Debug, Clone)]
pub struct ResolveOptions {
    /// The files to read.
    pub config: ConfigSource,
    /// `-l USER`.
    pub user: Option<String>,
    /// `-p PORT`.
    pub port: Option<u16>,
    /// The local user and machine.
    pub context: LocalContext,
}

impl ResolveOptions {
    /// Options for the current user with default files.
    pub fn for_current_user() -> Result<Self, Error> {
        Ok(Self {
            config: ConfigSource::Default,
            user: None,
            port: None,
            context: LocalContext::current()?,
        })
    }
}

/// The `ForwardAgent` setting.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ForwardAgent {
    /// No forwarding.
    No,
    /// Forward the agent in `SSH_AUTH_SOCK`.
    Yes,
    /// Forward the agent listening on this socket (expanded).
    Socket(String),
}

/// The effective configuration for one destination.
#[derive(Debug, Clone)]
pub struct ResolvedConfig {
    /// The host as given (`%n`).
    pub host: String,
    /// The host name to connect to, after `HostName`, lower-casing and canonicalisation.
    pub hostname: String,
    /// The port.
    pub port: u16,
    /// The remote user.
    pub user: String,
    /// `HostKeyAlias`, lower-cased.
    pub host_key_alias: Option<String>,
    /// `UserKnownHostsFile` entries, expanded (empty for `none`).
    pub user_known_hosts_files: Vec<String>,
    /// `ForwardAgent`.
    pub forward_agent: ForwardAgent,
    /// `ProxyJump` as `ssh -G` prints it.
    pub proxy_jump: Option<String>,
    /// `ProxyCommand`, unexpanded.
    pub proxy_command: Option<String>,
    /// `IdentityFile` entries as written (OpenSSH expands them only when loading keys).
    pub identity_files: Vec<String>,
    /// `IdentitiesOnly`.
    pub identities_only: bool,
    /// `StrictHostKeyChecking` as printed (`true`, `false`, `ask`, `accept-new`).
    pub strict_host_key_checking: String,
    /// Every `ssh -G` line, in order, as (keyword, value).
    pub lines: Vec<(String, String)>,
    /// What each directive did (set, shadowed by an earlier one, or in a non-matching block).
    pub trace: Vec<Trace>,
    /// Where each keyword got its value.
    pub origins: HashMap<String, Location>,
}

impl ResolvedConfig {
    /// The output of `ssh -G`, byte for byte.
    pub fn to_ssh_g(&self) -> String {
        let mut out = String::new();
        for (k, v) in &self.lines {
            let _ = writeln!(out, "{k} {v}");
        }
        out
    }

    /// All values printed for a keyword (lower-case), in order.
    pub fn get(&self, keyword: &str) -> Vec<&str> {
        self.lines
            .iter()
            .filter(|(k, _)| k.eq_ignore_ascii_case(keyword))
            .map(|(_, v)| v.as_str())
            .collect()
    }
}

#[allow(clippy::struct_field_names, reason = "`final_pass` is OpenSSH's name")]
struct Pass<'a> {
    opts: &'a mut Options,
    ctx: &'a LocalContext,
    /// The host `Host` lines match against.
    host: String,
    original_host: String,
    final_pass: bool,
    want_final: bool,
    getenv: &'a dyn Fn(&str) -> Option<String>,
    /// The `-F` path, for messages.
    files_read: Vec<PathBuf>,
    /// When listing (see [`host_blocks`]): every `Host`/`Match` block seen, in order.
    blocks: Option<Vec<HostBlock>>,
}

/// One `Host` or `Match` block of a config, as written (see [`host_blocks`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostBlock {
    /// The `Host` patterns (`!` kept); empty for a `Match` block.
    pub patterns: Vec<String>,
    /// A `Match` block (its criteria are not evaluated when listing).
    pub is_match: bool,
    /// Where the block starts.
    pub location: Location,
    /// The value keywords set in the block, first one of each kept: (canonical lower-case
    /// keyword, the value as written).
    pub settings: Vec<(&'static str, String)>,
}

impl HostBlock {
    /// The value of `keyword` (lower case) in this block, as written.
    pub fn get(&self, keyword: &str) -> Option<&str> {
        self.settings
            .iter()
            .find(|(k, _)| *k == keyword)
            .map(|(_, v)| v.as_str())
    }
}

/// Every block of the files `ssh` would read, `Include`s followed (whether or not their
/// block would match), and the files read.
#[derive(Debug, Clone, Default)]
pub struct ConfigBlocks {
    /// The blocks in reading order; settings before the first block belong to a block with
    /// the pattern `*`.
    pub blocks: Vec<HostBlock>,
    /// The files read, in order.
    pub files: Vec<PathBuf>,
}

/// List the `Host` and `Match` blocks of the configuration `options` names, with what each
/// sets, without resolving any host: the names a user types are the literal `Host` patterns.
pub fn host_blocks(options: &ResolveOptions) -> Result<ConfigBlocks, Error> {
    let mut opts = Options::default();
    let getenv = |k: &str| std::env::var(k).ok();
    let mut pass = Pass {
        opts: &mut opts,
        ctx: &options.context,
        host: String::new(),
        original_host: String::new(),
        final_pass: false,
        want_final: false,
        getenv: &getenv,
        files_read: Vec::new(),
        blocks: Some(Vec::new()),
    };
    read_all(&mut pass, &options.config)?;
    Ok(ConfigBlocks {
        blocks: pass.blocks.take().unwrap_or_default(),
        files: std::mem::take(&mut pass.files_read),
    })
}

#[derive(Clone, Copy)]
struct Flags {
    user_config: bool,
    check_perm: bool,
    never_match: bool,
}

const MAX_DEPTH: usize = 16;

impl Pass<'_> {
    fn read_file(
        &mut self,
        path: &Path,
        flags: Flags,
        active: &mut bool,
        depth: usize,
    ) -> Result<bool, Error> {
        if depth > MAX_DEPTH {
            return Err(Error::IncludeDepth {
                path: path.to_path_buf(),
            });
        }
        let bytes = match std::fs::read(path) {
            Ok(b) => b,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(false),
            // A directory opens but reads as nothing.
            Err(e) if path.is_dir() => {
                let _ = e;
                return Ok(true);
            }
            Err(source) => {
                return Err(Error::Read {
                    path: path.to_path_buf(),
                    source,
                });
            }
        };
        if flags.check_perm {
            check_perm(path, self.ctx.uid)?;
        }
        self.files_read.push(path.to_path_buf());
        let text = String::from_utf8_lossy(&bytes);
        let mut errors = Vec::new();
        for (i, raw) in text.split_inclusive('\n').enumerate() {
            let loc = Location {
                file: path.to_path_buf(),
                line: i + 1,
            };
            if let Err(e) = self.process_line(raw, &loc, flags, active, depth) {
                match e {
                    LineError::Bad(message) => errors.push((loc, message)),
                    LineError::Fatal(err) => return Err(err),
                }
            }
        }
        if let Some((loc, message)) = errors.into_iter().next() {
            return Err(Error::Config {
                file: loc.file,
                line: loc.line,
                message,
            });
        }
        Ok(true)
    }

    fn process_line(
        &mut self,
        raw: &str,
        loc: &Location,
        flags: Flags,
        active: &mut bool,
        depth: usize,
    ) -> Result<(), LineError> {
        let split = match split_line(raw) {
            Line::Empty => return Ok(()),
            Line::MissingArgument(k) => {
                return Err(LineError::Bad(format!(
                    "no argument after keyword \"{}\"",
                    k.to_ascii_lowercase()
                )));
            }
            Line::Directive(d) => d,
        };
        let keyword = split.keyword.to_ascii_lowercase();
        let Some(kind) = lookup_keyword(&keyword) else {
            let ignored = self
                .opts
                .v
                .ignored_unknown
                .as_deref()
                .is_some_and(|p| match_pattern_list(&keyword, p, true) == ListMatch::Matched);
            if ignored {
                return Ok(());
            }
            return Err(LineError::Bad(format!(
                "Bad configuration option: {keyword}"
            )));
        };
        let args = crate::lexer::argv_split(&split.rest)
            .ok_or_else(|| LineError::Bad("invalid quotes".into()))?;
        match kind {
            Kind::Ignore | Kind::Unsupported => Ok(()),
            Kind::IgnoreUnknown => {
                let a = args
                    .first()
                    .filter(|a| !a.is_empty())
                    .ok_or_else(|| LineError::Bad("missing argument".into()))?;
                if args.len() > 1 {
                    return Err(LineError::Bad(format!(
                        "keyword {keyword} extra arguments at end of line"
                    )));
                }
                if *active && self.opts.v.ignored_unknown.is_none() {
                    self.opts.v.ignored_unknown = Some(a.clone());
                }
                Ok(())
            }
            Kind::Host => {
                *active = false;
                if let Some(blocks) = &mut self.blocks {
                    blocks.push(HostBlock {
                        patterns: args.clone(),
                        is_match: false,
                        location: loc.clone(),
                        settings: Vec::new(),
                    });
                    return Ok(());
                }
                for arg in &args {
                    if arg.is_empty() {
                        return Err(LineError::Bad(format!("keyword {keyword} empty argument")));
                    }
                    if flags.never_match {
                        break;
                    }
                    let (negated, pat) = match arg.strip_prefix('!') {
                        Some(p) => (true, p),
                        None => (false, arg.as_str()),
                    };
                    if match_pattern(&self.host, pat) {
                        if negated {
                            *active = false;
                            break;
                        }
                        *active = true;
                    }
                }
                Ok(())
            }
            Kind::Match => {
                if let Some(blocks) = &mut self.blocks {
                    *active = false;
                    blocks.push(HostBlock {
                        patterns: Vec::new(),
                        is_match: true,
                        location: loc.clone(),
                        settings: Vec::new(),
                    });
                    return Ok(());
                }
                let value = self.match_line(&split.rest, loc)?;
                *active = !flags.never_match && value;
                Ok(())
            }
            Kind::Include => self.include(&args, loc, flags, active, depth),
            Kind::Value(kw) => {
                if let Some(blocks) = &mut self.blocks {
                    if blocks.is_empty() {
                        blocks.push(HostBlock {
                            patterns: vec!["*".to_owned()],
                            is_match: false,
                            location: loc.clone(),
                            settings: Vec::new(),
                        });
                    }
                    if let Some(block) = blocks.last_mut()
                        && block.get(kw).is_none()
                    {
                        block.settings.push((kw, unquote(&split.rest)));
                    }
                    return Ok(());
                }
                let env = ParseEnv {
                    getenv: self.getenv,
                    user_config: flags.user_config,
                };
                self.opts
                    .apply(kw, &split.rest, loc, *active, &env)
                    .map_err(LineError::Bad)
            }
        }
    }

    fn include(
        &mut self,
        args: &[String],
        loc: &Location,
        flags: Flags,
        active: &mut bool,
        depth: usize,
    ) -> Result<(), LineError> {
        for arg in args {
            if arg.is_empty() {
                return Err(LineError::Bad("keyword include empty argument".into()));
            }
            if arg.starts_with('~') && !flags.user_config {
                return Err(LineError::Bad(format!("bad include path {arg}.")));
            }
            let pattern = if !arg.starts_with('/') && !arg.starts_with('~') {
                if flags.user_config {
                    format!("~/.ssh/{arg}")
                } else {
                    format!("{}/{arg}", self.ctx.system_dir.display())
                }
            } else {
                arg.clone()
            };
            let pattern = if pattern.starts_with('~') {
                expand::tilde(&pattern, &self.ctx.home, &home_of).unwrap_or(pattern)
            } else {
                pattern
            };
            let paths = glob_paths(&pattern)
                .map_err(|_| LineError::Bad(format!("glob failed for {pattern}.")))?;
            let outer = *active;
            for p in paths {
                let inner = Flags {
                    check_perm: true,
                    never_match: flags.never_match || !outer,
                    ..flags
                };
                let opened = self
                    .read_file(&p, inner, active, depth + 1)
                    .map_err(LineError::Fatal)?;
                *active = outer;
                if !opened {
                    return Err(LineError::Bad(format!(
                        "Can't open user config file {}",
                        p.display()
                    )));
                }
            }
        }
        let _ = loc;
        Ok(())
    }

    /// `match_cfg_line`: `Ok(true/false)`, or an error for a malformed line.
    fn match_line(&mut self, rest: &str, loc: &Location) -> Result<bool, LineError> {
        let v = &self.opts.v;
        let ruser = v
            .strings
            .get("user")
            .cloned()
            .unwrap_or_else(|| self.ctx.user_name.clone());
        let host = if self.final_pass {
            v.strings.get("hostname").cloned().unwrap_or_default()
        } else if let Some(h) = v.strings.get("hostname") {
            expand::expand(h, Some(&[('h', self.host.as_str())]), false, &|_| None)
                .map_err(|e| LineError::Bad(format!("HostName: {e}")))?
        } else {
            self.host.clone()
        };
        let mut tokens = Tokens::new(rest);
        let mut result = true;
        let mut attributes = 0;
        while let Some(attrib_raw) = tokens.next_token() {
            if attrib_raw.is_empty() {
                break;
            }
            if attrib_raw.starts_with('#') {
                break;
            }
            let (negate, attrib) = match attrib_raw.strip_prefix('!') {
                Some(a) => (true, a),
                None => (false, attrib_raw.as_str()),
            };
            let lower = attrib.to_ascii_lowercase();
            if lower == "all" {
                let next = tokens.next_token();
                if attributes > 1
                    || next
                        .as_deref()
                        .is_some_and(|n| !n.is_empty() && !n.starts_with('#'))
                {
                    return Err(LineError::Bad(format!(
                        "'{attrib_raw}' cannot be combined with other Match attributes"
                    )));
                }
                if result {
                    result = !negate;
                }
                return Ok(result);
            }
            attributes += 1;
            if lower == "canonical" || lower == "final" {
                if lower == "final" {
                    self.want_final = true;
                }
                if self.final_pass == negate {
                    result = false;
                }
                continue;
            }
            let arg = match tokens.next_token() {
                Some(a) if !a.is_empty() && !a.starts_with('#') => a,
                _ => {
                    return Err(LineError::Bad(format!(
                        "Missing Match criteria for {attrib}"
                    )));
                }
            };
            let r = match lower.as_str() {
                "host" => match_hostname(&host, &arg) == ListMatch::Matched,
                "originalhost" => match_hostname(&self.original_host, &arg) == ListMatch::Matched,
                "user" => match_pattern_list(&ruser, &arg, false) == ListMatch::Matched,
                "localuser" => {
                    match_pattern_list(&self.ctx.user_name, &arg, false) == ListMatch::Matched
                }
                "exec" => {
                    if !result {
                        continue;
                    }
                    return Err(LineError::Fatal(Error::MatchExecUnsupported {
                        file: loc.file.clone(),
                        line: loc.line,
                    }));
                }
                _ => {
                    return Err(LineError::Bad(format!(
                        "Unsupported Match attribute {attrib}"
                    )));
                }
            };
            if r == negate {
                result = false;
            }
        }
        if attributes == 0 {
            return Err(LineError::Bad(
                "One or more attributes required for Match".into(),
            ));
        }
        Ok(result)
    }
}

enum LineError {
    Bad(String),
    Fatal(Error),
}

fn home_of(user: &str) -> Option<String> {
    nix::unistd::User::from_name(user)
        .ok()
        .flatten()
        .map(|u| u.dir.to_string_lossy().into_owned())
}

#[cfg(unix)]
fn check_perm(path: &Path, uid: u32) -> Result<(), Error> {
    use std::os::unix::fs::MetadataExt as _;
    let meta = std::fs::metadata(path).map_err(|source| Error::Read {
        path: path.to_path_buf(),
        source,
    })?;
    let bad_owner = meta.uid() != 0 && meta.uid() != uid;
    let world_writable = meta.mode() & 0o002 != 0;
    let group_writable = meta.mode() & 0o020 != 0 && !private_group(meta.gid(), uid);
    if bad_owner || world_writable || group_writable {
        return Err(Error::BadPermissions {
            path: path.to_path_buf(),
        });
    }
    Ok(())
}

/// Debian's `user-group-modes` patch lets a file be group-writable when its group is the
/// user's private group. Approximated as: the group is named after the user, is the user's
/// primary group, and lists no other member. Upstream OpenSSH (macOS) never allows it.
#[cfg(unix)]
fn private_group(gid: u32, uid: u32) -> bool {
    if !cfg!(target_os = "linux") {
        return false;
    }
    let Some(user) = nix::unistd::User::from_uid(nix::unistd::Uid::from_raw(uid))
        .ok()
        .flatten()
    else {
        return false;
    };
    let Some(group) = nix::unistd::Group::from_gid(nix::unistd::Gid::from_raw(gid))
        .ok()
        .flatten()
    else {
        return false;
    };
    group.name == user.name && user.gid.as_raw() == gid && group.mem.iter().all(|m| *m == user.name)
}

#[cfg(not(unix))]
fn check_perm(_path: &Path, _uid: u32) -> Result<(), Error> {
    Ok(())
}

/// POSIX `glob` without flags beyond `~`: sorted matches, or nothing.
fn glob_paths(pattern: &str) -> Result<Vec<PathBuf>, glob::PatternError> {
    let opts = glob::MatchOptions {
        case_sensitive: true,
        require_literal_separator: true,
        require_literal_leading_dot: true,
    };
    let mut out: Vec<PathBuf> = glob::glob_with(pattern, opts)?
        .filter_map(Result::ok)
        .collect();
    out.sort_by(|a, b| {
        a.as_os_str()
            .as_encoded_bytes()
            .cmp(b.as_os_str().as_encoded_bytes())
    });
    Ok(out)
}

/// `inet_aton`-style IPv4 (`127.1`, octal and hex parts), as `getaddrinfo(AI_NUMERICHOST)`.
fn parse_inet_aton(s: &str) -> Option<Ipv4Addr> {
    let parts: Vec<&str> = s.split('.').collect();
    if parts.is_empty() || parts.len() > 4 {
        return None;
    }
    let mut nums = Vec::new();
    for p in &parts {
        let v = if let Some(h) = p.strip_prefix("0x").or_else(|| p.strip_prefix("0X")) {
            if h.is_empty() {
                0
            } else {
                u64::from_str_radix(h, 16).ok()?
            }
        } else if p.len() > 1 && p.starts_with('0') {
            u64::from_str_radix(p.get(1..)?, 8).ok()?
        } else {
            if p.is_empty() {
                return None;
            }
            p.parse::<u64>().ok()?
        };
        nums.push(v);
    }
    let (last, head) = nums.split_last()?;
    let mut addr: u64 = 0;
    for (i, n) in head.iter().enumerate() {
        if *n > 255 {
            return None;
        }
        addr |= n << (24 - 8 * i);
    }
    let remaining_bits = 32 - 8 * head.len();
    if *last >= (1u64 << remaining_bits) {
        return None;
    }
    addr |= last;
    Some(Ipv4Addr::from(u32::try_from(addr).ok()?))
}

fn is_addr_fast(name: &str) -> bool {
    name.contains(['%', ':']) || name.bytes().all(|c| c.is_ascii_digit() || c == b'.')
}

/// `resolve_addr`: the canonical text of a numeric address.
fn numeric_addr(name: &str) -> Option<String> {
    if let Ok(ip) = name.parse::<IpAddr>() {
        return Some(ip.to_string());
    }
    parse_inet_aton(name).map(|a| a.to_string())
}

fn is_addr(name: &str) -> bool {
    is_addr_fast(name) || numeric_addr(name).is_some()
}

/// Resolve `host` for `destination` as `ssh -G` would, reading the configured files.
pub fn resolve(destination: &str, options: &ResolveOptions) -> Result<ResolvedConfig, Error> {
    resolve_with_env(destination, options, &|k| std::env::var(k).ok())
}

/// [`resolve`] with an explicit environment lookup for `${VAR}` expansion.
#[allow(clippy::too_many_lines)]
pub fn resolve_with_env(
    destination: &str,
    options: &ResolveOptions,
    getenv: &dyn Fn(&str) -> Option<String>,
) -> Result<ResolvedConfig, Error> {
    let ctx = &options.context;
    let mut opts = Options::default();
    if let Some(u) = &options.user {
        opts.v.strings.insert("user", u.clone());
    }
    if let Some(p) = options.port {
        opts.v.port = Some(i64::from(p));
    }
    // The destination: ssh://user@host:port, or user@host.
    let mut host = match crate::options::parse_ssh_uri(destination) {
        Some(Some((user, h, port))) => {
            if let Some(u) = user {
                opts.v.strings.entry("user").or_insert(u);
            }
            if port > 0 && opts.v.port.is_none() {
                opts.v.port = Some(port);
            }
            h
        }
        Some(None) => match destination.rfind('@') {
            Some(0) => {
                return Err(Error::Destination(destination.to_owned()));
            }
            Some(i) => {
                let user = destination.get(..i).unwrap_or_default().to_owned();
                opts.v.strings.entry("user").or_insert(user);
                destination.get(i + 1..).unwrap_or_default().to_owned()
            }
            None => destination.to_owned(),
        },
        None => return Err(Error::Destination(destination.to_owned())),
    };
    if host.is_empty() {
        return Err(Error::Destination(destination.to_owned()));
    }
    let host_arg = host.clone();

    let mut pass = Pass {
        opts: &mut opts,
        ctx,
        host: host.clone(),
        original_host: host_arg.clone(),
        final_pass: false,
        want_final: false,
        getenv,
        files_read: Vec::new(),
        blocks: None,
    };
    read_all(&mut pass, &options.config)?;
    let mut want_final = pass.want_final;

    let v = &mut opts.v;
    let canonicalize = v
        .multistate
        .get("canonicalizehostname")
        .copied()
        .unwrap_or("false");
    if let Some(h) = v.strings.get("hostname").cloned() {
        host =
            expand::expand(&h, Some(&[('h', host.as_str())]), false, &|_| None).map_err(|e| {
                Error::Expand {
                    what: "HostName".into(),
                    reason: e.to_string(),
                }
            })?;
        v.strings.insert("hostname", host.clone());
    }
    let was_addr = is_addr(&host);
    if !was_addr {
        host = host.to_ascii_lowercase();
    }
    let direct = v
        .proxy_command
        .as_deref()
        .is_none_or(|p| p.eq_ignore_ascii_case("none"))
        && v.jump_host.is_none();
    let mut resolved = false;
    if canonicalize != "false" || was_addr {
        if let Some(canon) = numeric_addr(&host) {
            host = canon;
            resolved = true;
        } else if !is_addr_fast(&host)
            && canonicalize != "false"
            && (direct || canonicalize == "always")
        {
            (host, resolved) = canonicalize_name(&host, v, ctx)?;
        }
    }
    let has_cnames = !(v.permitted_cnames.is_empty()
        || (v.permitted_cnames.len() == 1
            && v.permitted_cnames
                .first()
                .is_some_and(|(s, t)| s.eq_ignore_ascii_case("none") && t.is_empty())));
    if !resolved && has_cnames && (direct || canonicalize == "always") {
        // ssh resolves the name here to follow CNAMEs; an unknown name is fatal for a
        // direct connection. (CNAME rewriting itself is not reproduced.)
        let port = u16::try_from(v.port.unwrap_or(22)).unwrap_or(22);
        let ok = (host.as_str(), port)
            .to_socket_addrs()
            .is_ok_and(|mut a| a.next().is_some());
        if !ok && direct {
            return Err(Error::Canonicalize(host));
        }
    }
    if canonicalize != "false" {
        want_final = true;
    }
    if want_final {
        opts.v.strings.insert("hostname", host.clone());
        let mut pass = Pass {
            opts: &mut opts,
            ctx,
            host: host.clone(),
            original_host: host_arg.clone(),
            final_pass: true,
            want_final: false,
            getenv,
            files_read: Vec::new(),
            blocks: None,
        };
        read_all(&mut pass, &options.config)?;
    }
    finish(opts, host, host_arg, ctx, getenv)
}

/// `resolve_canonicalize` for a name: the canonical name and whether it resolved.
fn canonicalize_name(
    host: &str,
    v: &crate::options::Values,
    ctx: &LocalContext,
) -> Result<(String, bool), Error> {
    let port = v.port.unwrap_or(22);
    let port = u16::try_from(port).unwrap_or(22);
    let resolves = |name: &str| {
        (name, port)
            .to_socket_addrs()
            .is_ok_and(|mut a| a.next().is_some())
    };
    if let Some(stripped) = host.strip_suffix('.') {
        if resolves(host) {
            return Ok((stripped.to_owned(), true));
        }
    } else {
        let max_dots = v.ints.get("canonicalizemaxdots").copied().unwrap_or(1);
        let dots = i64::try_from(host.matches('.').count()).unwrap_or(i64::MAX);
        if dots > max_dots {
            return Ok((host.to_owned(), false));
        }
        for domain in &v.canonical_domains {
            if domain.eq_ignore_ascii_case("none") {
                break;
            }
            let full = format!("{host}.{domain}.");
            if resolves(&full) {
                return Ok((format!("{host}.{domain}"), true));
            }
        }
    }
    let fallback = v
        .flags
        .get("canonicalizefallbacklocal")
        .copied()
        .unwrap_or(true);
    if !fallback {
        let _ = ctx;
        return Err(Error::Canonicalize(host.to_owned()));
    }
    Ok((host.to_owned(), false))
}

fn read_all(pass: &mut Pass<'_>, source: &ConfigSource) -> Result<(), Error> {
    match source {
        ConfigSource::None => Ok(()),
        ConfigSource::File(path) => {
            let mut active = true;
            let flags = Flags {
                user_config: true,
                check_perm: false,
                never_match: false,
            };
            if pass.read_file(path, flags, &mut active, 0)? {
                Ok(())
            } else {
                Err(Error::Read {
                    path: path.clone(),
                    source: std::io::Error::from(std::io::ErrorKind::NotFound),
                })
            }
        }
        ConfigSource::Default => {
            let user = pass.ctx.home.join(".ssh").join("config");
            let mut active = true;
            let flags = Flags {
                user_config: true,
                check_perm: true,
                never_match: false,
            };
            pass.read_file(&user, flags, &mut active, 0)?;
            let system = pass.ctx.system_config.clone();
            let mut active = true;
            let flags = Flags {
                user_config: false,
                check_perm: false,
                never_match: false,
            };
            pass.read_file(&system, flags, &mut active, 0)?;
            Ok(())
        }
    }
}

/// A value as written, without one pair of surrounding quotes.
fn unquote(rest: &str) -> String {
    let t = rest.trim();
    t.strip_prefix('"')
        .and_then(|x| x.strip_suffix('"'))
        .unwrap_or(t)
        .to_owned()
}

fn sha1_hex(data: &str) -> String {
    use sha1::Digest as _;
    let digest = sha1::Sha1::digest(data.as_bytes());
    digest.iter().fold(String::new(), |mut s, b| {
        let _ = write!(s, "{b:02x}");
        s
    })
}

/// Defaults, `ProxyJump` bookkeeping, `%`-expansion and the `-G` listing.
#[allow(clippy::too_many_lines)]
fn finish(
    opts: Options,
    host: String,
    host_arg: String,
    ctx: &LocalContext,
    getenv: &dyn Fn(&str) -> Option<String>,
) -> Result<ResolvedConfig, Error> {
    let Options { mut v, rec } = opts;
    let flag = |v: &crate::options::Values, k: &str, d: bool| v.flags.get(k).copied().unwrap_or(d);
    let multi = |v: &crate::options::Values, k: &str, d: &'static str| {
        v.multistate.get(k).copied().unwrap_or(d)
    };
    let int = |v: &crate::options::Values, k: &str, d: i64| v.ints.get(k).copied().unwrap_or(d);

    if flag(&v, "clearallforwardings", false) {
        v.local_forwards.clear();
        v.remote_forwards.clear();
        v.multistate.insert("tunnel", "false");
    }
    let user_hostfiles_default = v.user_hostfiles.is_empty();
    let update_hostkeys = v
        .multistate
        .get("updatehostkeys")
        .copied()
        .unwrap_or_else(|| {
            let vhd = multi(&v, "verifyhostkeydns", "false");
            let only_default = v.user_hostfiles.is_empty()
                || (v.user_hostfiles.len() == 1
                    && v.user_hostfiles
                        .first()
                        .is_some_and(|f| f == "~/.ssh/known_hosts"));
            if vhd == "false" && only_default {
                "true"
            } else {
                "false"
            }
        });
    if user_hostfiles_default {
        v.user_hostfiles = vec!["~/.ssh/known_hosts".into(), "~/.ssh/known_hosts2".into()];
    }
    if v.system_hostfiles.is_empty() {
        v.system_hostfiles = vec![
            "/etc/ssh/ssh_known_hosts".into(),
            "/etc/ssh/ssh_known_hosts2".into(),
        ];
    }
    if v.identity_files.is_empty() {
        for f in [
            "id_rsa",
            "id_ecdsa",
            "id_ecdsa_sk",
            "id_ed25519",
            "id_ed25519_sk",
            "id_xmss",
            "id_dsa",
        ] {
            v.identity_files.push((format!("~/.ssh/{f}"), false));
        }
    }
    let algo = |v: &crate::options::Values, k: &str, def: &str, all: &str| {
        alg::assemble(v.strings.get(k).map(String::as_str), def, all).ok_or_else(|| Error::Expand {
            what: k.to_owned(),
            reason: "empty or invalid algorithm list".into(),
        })
    };
    let ciphers = algo(&v, "ciphers", alg::DEFAULT_CIPHERS, alg::ALL_CIPHERS)?;
    let macs = algo(&v, "macs", alg::DEFAULT_MACS, alg::ALL_MACS)?;
    let kex = algo(&v, "kexalgorithms", alg::DEFAULT_KEX, alg::ALL_KEX)?;
    let hostbased = algo(
        &v,
        "hostbasedacceptedalgorithms",
        alg::DEFAULT_KEY_ALGS,
        alg::ALL_KEYS,
    )?;
    let pubkey = algo(
        &v,
        "pubkeyacceptedalgorithms",
        alg::DEFAULT_KEY_ALGS,
        alg::ALL_KEYS,
    )?;
    let casig = algo(
        &v,
        "casignaturealgorithms",
        alg::DEFAULT_CA_SIGS,
        alg::ALL_SIGS,
    )?;
    let hostkeyalgs = algo(
        &v,
        "hostkeyalgorithms",
        alg::DEFAULT_KEY_ALGS,
        alg::ALL_KEYS,
    )?;
    for k in [
        "localcommand",
        "remotecommand",
        "controlpath",
        "revokedhostkeys",
        "pkcs11provider",
        "knownhostscommand",
    ] {
        if v.strings
            .get(k)
            .is_some_and(|s| s.eq_ignore_ascii_case("none"))
        {
            v.strings.remove(k);
        }
    }
    let sk_provider = match v.strings.get("securitykeyprovider") {
        None => Some("internal".to_owned()),
        Some(s) if s.eq_ignore_ascii_case("none") => None,
        Some(s) => Some(s.clone()),
    };
    if v.proxy_command
        .as_deref()
        .is_some_and(|p| p.eq_ignore_ascii_case("none"))
    {
        v.proxy_command = None;
    }
    if v.jump_host.as_deref() == Some("none") && v.jump_port == 0 && v.jump_user.is_none() {
        v.jump_host = None;
    }
    if v.permitted_cnames.len() == 1
        && v.permitted_cnames
            .first()
            .is_some_and(|(s, t)| s.eq_ignore_ascii_case("none") && t.is_empty())
    {
        v.permitted_cnames.clear();
    }
    let user = v
        .strings
        .get("user")
        .cloned()
        .unwrap_or_else(|| ctx.user_name.clone());
    let mut proxy_use_fdpass = flag(&v, "proxyusefdpass", false);
    if let Some(jh) = &v.jump_host {
        let port = v.port.unwrap_or(22);
        let jport = if v.jump_port <= 0 { 22 } else { v.jump_port };
        let juser = v.jump_user.clone().unwrap_or_else(|| user.clone());
        if *jh == host && port == jport && user == juser {
            return Err(Error::Expand {
                what: "ProxyJump".into(),
                reason: format!("jumphost loop via {jh}"),
            });
        }
        proxy_use_fdpass = false;
    }
    let port = v.port.filter(|p| *p > 0).unwrap_or(22);
    let host_key_alias = v
        .strings
        .get("hostkeyalias")
        .map(|s| s.to_ascii_lowercase());
    if v.proxy_command.as_deref() == Some("-") && proxy_use_fdpass {
        return Err(Error::Expand {
            what: "ProxyCommand".into(),
            reason: "ProxyCommand=- and ProxyUseFDPass are incompatible".into(),
        });
    }
    let control_persist = v.control_persist.unwrap_or((false, 0));
    let mut update_hostkeys = update_hostkeys;
    if update_hostkeys == "ask" {
        let log_level = v.log_level.unwrap_or("INFO");
        if (control_persist.0 && v.strings.contains_key("controlpath"))
            || v.strings.contains_key("remotecommand")
            || multi(&v, "requesttty", "auto") == "false"
            || matches!(log_level, "QUIET" | "FATAL" | "ERROR")
        {
            update_hostkeys = "false";
        }
    }
    if flag(&v, "forkafterauthentication", false)
        && !v.strings.contains_key("remotecommand")
        && multi(&v, "sessiontype", "default") != "none"
    {
        return Err(Error::Expand {
            what: "ForkAfterAuthentication".into(),
            reason: "Cannot fork into background without a command to execute.".into(),
        });
    }

    // %-tokens, as `ssh.c` sets them up before printing.
    let port_s = port.to_string();
    let uid_s = ctx.uid.to_string();
    let short = ctx
        .hostname
        .split('.')
        .next()
        .unwrap_or_default()
        .to_owned();
    let keyalias = host_key_alias.clone().unwrap_or_else(|| host_arg.clone());
    let conn_hash = sha1_hex(&format!("{}{host}{port_s}{user}", ctx.hostname));
    let home = ctx.home.to_string_lossy().into_owned();
    let tokens: Vec<(char, &str)> = vec![
        ('C', conn_hash.as_str()),
        ('L', short.as_str()),
        ('i', uid_s.as_str()),
        ('k', keyalias.as_str()),
        ('l', ctx.hostname.as_str()),
        ('n', host_arg.as_str()),
        ('p', port_s.as_str()),
        ('d', home.as_str()),
        ('h', host.as_str()),
        ('r', user.as_str()),
        ('u', ctx.user_name.as_str()),
    ];
    let expand_err = |what: &str| {
        let what = what.to_owned();
        move |e: ExpandError| Error::Expand {
            what: what.clone(),
            reason: e.to_string(),
        }
    };
    let tilde =
        |s: &str, what: &str| expand::tilde(s, &ctx.home, &home_of).map_err(expand_err(what));
    let full = |s: &str, what: &str| -> Result<String, Error> {
        let t = tilde(s, what)?;
        expand::expand(&t, Some(&tokens), true, getenv).map_err(expand_err(what))
    };
    if let Some(rc) = v.strings.get("remotecommand").cloned() {
        let e = expand::expand(&rc, Some(&tokens), false, getenv)
            .map_err(expand_err("RemoteCommand"))?;
        v.strings.insert("remotecommand", e);
    }
    if let Some(cp) = v.strings.get("controlpath").cloned() {
        v.strings.insert("controlpath", full(&cp, "ControlPath")?);
    }
    if let Some(ia) = v.strings.get("identityagent").cloned() {
        v.strings
            .insert("identityagent", full(&ia, "IdentityAgent")?);
    }
    if let Some(fa) = v.forward_agent_sock_path.clone() {
        let e = full(&fa, "ForwardAgent")?;
        if !Path::new(&e).exists() && flag(&v, "exitonforwardfailure", false) {
            return Err(Error::Expand {
                what: "ForwardAgent".into(),
                reason: format!("Cannot forward agent socket path \"{e}\""),
            });
        }
        v.forward_agent_sock_path = Some(e);
    }
    if v.system_hostfiles
        .first()
        .is_some_and(|f| f.eq_ignore_ascii_case("none"))
    {
        v.system_hostfiles.clear();
    }
    if v.user_hostfiles
        .first()
        .is_some_and(|f| f.eq_ignore_ascii_case("none"))
    {
        v.user_hostfiles.clear();
    }
    let mut ukh = Vec::new();
    for f in &v.user_hostfiles {
        ukh.push(full(f, "UserKnownHostsFile")?);
    }
    v.user_hostfiles = ukh;
    for fwd in v
        .local_forwards
        .iter_mut()
        .chain(v.remote_forwards.iter_mut())
    {
        for p in [&mut fwd.listen_path, &mut fwd.connect_path] {
            if let Some(path) = p.as_ref() {
                let e = expand::expand(path, Some(&tokens), false, getenv)
                    .map_err(expand_err("forwarding path"))?;
                *p = Some(e);
            }
        }
    }

    // The listing, in `dump_client_config` order (Debian's build).
    let mut lines: Vec<(String, String)> = Vec::new();
    let mut put = |k: &str, val: String| lines.push((k.to_owned(), val));
    let yn = |b: bool| if b { "yes" } else { "no" }.to_owned();
    put("host", host_arg.clone());
    put("user", user.clone());
    put("hostname", host.clone());
    put("port", port_s.clone());
    put("addressfamily", multi(&v, "addressfamily", "any").into());
    put("batchmode", yn(flag(&v, "batchmode", false)));
    put(
        "canonicalizefallbacklocal",
        yn(flag(&v, "canonicalizefallbacklocal", true)),
    );
    put(
        "canonicalizehostname",
        multi(&v, "canonicalizehostname", "false").into(),
    );
    put("checkhostip", yn(flag(&v, "checkhostip", false)));
    put("compression", multi(&v, "compression", "no").into());
    put("controlmaster", multi(&v, "controlmaster", "false").into());
    put("enablesshkeysign", yn(flag(&v, "enablesshkeysign", false)));
    put(
        "clearallforwardings",
        yn(flag(&v, "clearallforwardings", false)),
    );
    put(
        "exitonforwardfailure",
        yn(flag(&v, "exitonforwardfailure", false)),
    );
    put(
        "fingerprinthash",
        multi(&v, "fingerprinthash", "SHA256").into(),
    );
    put("forwardx11", yn(flag(&v, "forwardx11", false)));
    put("forwardx11trusted", yn(flag(&v, "forwardx11trusted", true)));
    put("gatewayports", yn(flag(&v, "gatewayports", false)));
    put(
        "gssapiauthentication",
        yn(flag(&v, "gssapiauthentication", false)),
    );
    put(
        "gssapikeyexchange",
        yn(flag(&v, "gssapikeyexchange", false)),
    );
    put(
        "gssapidelegatecredentials",
        yn(flag(&v, "gssapidelegatecredentials", false)),
    );
    put("gssapitrustdns", yn(flag(&v, "gssapitrustdns", false)));
    put(
        "gssapirenewalforcesrekey",
        yn(flag(&v, "gssapirenewalforcesrekey", false)),
    );
    for k in ["gssapiclientidentity", "gssapiserveridentity"] {
        if let Some(s) = v.strings.get(k) {
            put(k, s.clone());
        }
    }
    put(
        "gssapikexalgorithms",
        v.strings
            .get("gssapikexalgorithms")
            .cloned()
            .unwrap_or_else(|| alg::DEFAULT_GSS_KEX.into()),
    );
    put("hashknownhosts", yn(flag(&v, "hashknownhosts", false)));
    put(
        "hostbasedauthentication",
        yn(flag(&v, "hostbasedauthentication", false)),
    );
    put("identitiesonly", yn(flag(&v, "identitiesonly", false)));
    put(
        "kbdinteractiveauthentication",
        yn(flag(&v, "kbdinteractiveauthentication", true)),
    );
    put(
        "nohostauthenticationforlocalhost",
        yn(flag(&v, "nohostauthenticationforlocalhost", false)),
    );
    put(
        "passwordauthentication",
        yn(flag(&v, "passwordauthentication", true)),
    );
    put(
        "permitlocalcommand",
        yn(flag(&v, "permitlocalcommand", false)),
    );
    put("proxyusefdpass", yn(proxy_use_fdpass));
    put(
        "pubkeyauthentication",
        multi(&v, "pubkeyauthentication", "true").into(),
    );
    put("requesttty", multi(&v, "requesttty", "auto").into());
    put("sessiontype", multi(&v, "sessiontype", "default").into());
    put("stdinnull", yn(flag(&v, "stdinnull", false)));
    put(
        "forkafterauthentication",
        yn(flag(&v, "forkafterauthentication", false)),
    );
    put(
        "streamlocalbindunlink",
        yn(flag(&v, "streamlocalbindunlink", false)),
    );
    put(
        "stricthostkeychecking",
        multi(&v, "stricthostkeychecking", "ask").into(),
    );
    put("tcpkeepalive", yn(flag(&v, "tcpkeepalive", true)));
    put("tunnel", multi(&v, "tunnel", "false").into());
    put(
        "verifyhostkeydns",
        multi(&v, "verifyhostkeydns", "false").into(),
    );
    put("visualhostkey", yn(flag(&v, "visualhostkey", false)));
    put("updatehostkeys", update_hostkeys.into());
    put(
        "enableescapecommandline",
        yn(flag(&v, "enableescapecommandline", false)),
    );
    put(
        "canonicalizemaxdots",
        int(&v, "canonicalizemaxdots", 1).to_string(),
    );
    put(
        "connectionattempts",
        int(&v, "connectionattempts", 1).to_string(),
    );
    put(
        "forwardx11timeout",
        int(&v, "forwardx11timeout", 1200).to_string(),
    );
    put(
        "numberofpasswordprompts",
        int(&v, "numberofpasswordprompts", 3).to_string(),
    );
    put(
        "serveralivecountmax",
        int(&v, "serveralivecountmax", 3).to_string(),
    );
    // Debian's keepalive patch: BatchMode implies a 300 s ServerAliveInterval.
    let alive_default = if flag(&v, "batchmode", false) { 300 } else { 0 };
    put(
        "serveraliveinterval",
        int(&v, "serveraliveinterval", alive_default).to_string(),
    );
    put(
        "requiredrsasize",
        int(&v, "requiredrsasize", 1024).to_string(),
    );
    for k in ["bindaddress", "bindinterface"] {
        if let Some(s) = v.strings.get(k) {
            put(k, s.clone());
        }
    }
    put("ciphers", ciphers);
    if let Some(s) = v.strings.get("controlpath") {
        put("controlpath", s.clone());
    }
    put("hostkeyalgorithms", hostkeyalgs);
    if let Some(a) = &host_key_alias {
        put("hostkeyalias", a.clone());
    }
    put("hostbasedacceptedalgorithms", hostbased);
    if let Some(s) = v.strings.get("identityagent") {
        put("identityagent", s.clone());
    }
    if let Some(s) = &v.ignored_unknown {
        put("ignoreunknown", s.clone());
    }
    if let Some(s) = v.strings.get("kbdinteractivedevices") {
        put("kbdinteractivedevices", s.clone());
    }
    put("kexalgorithms", kex);
    put("casignaturealgorithms", casig);
    for k in ["localcommand", "remotecommand"] {
        if let Some(s) = v.strings.get(k) {
            put(k, s.clone());
        }
    }
    put("loglevel", v.log_level.unwrap_or("INFO").into());
    put("macs", macs);
    if let Some(s) = v.strings.get("pkcs11provider") {
        put("pkcs11provider", s.clone());
    }
    if let Some(s) = &sk_provider {
        put("securitykeyprovider", s.clone());
    }
    if let Some(s) = v.strings.get("preferredauthentications") {
        put("preferredauthentications", s.clone());
    }
    put("pubkeyacceptedalgorithms", pubkey);
    if let Some(s) = v.strings.get("revokedhostkeys") {
        put("revokedhostkeys", s.clone());
    }
    put(
        "xauthlocation",
        v.strings
            .get("xauthlocation")
            .cloned()
            .unwrap_or_else(|| "/usr/bin/xauth".into()),
    );
    if let Some(s) = v.strings.get("knownhostscommand") {
        put("knownhostscommand", s.clone());
    }
    for f in &v.local_forwards {
        if f.connect_host.is_none() || f.is_socks() {
            put("dynamicforward", f.fmt_listen());
        }
    }
    for f in &v.local_forwards {
        if !f.is_socks() {
            put(
                "localforward",
                format!("{} {}", f.fmt_listen(), f.fmt_connect()),
            );
        }
    }
    for f in &v.remote_forwards {
        put(
            "remoteforward",
            format!("{} {}", f.fmt_listen(), f.fmt_connect()),
        );
    }
    for (f, _) in &v.identity_files {
        put("identityfile", f.clone());
    }
    put("canonicaldomains", oneline(&v.canonical_domains));
    for (f, _) in &v.certificate_files {
        put("certificatefile", f.clone());
    }
    put("globalknownhostsfile", oneline(&v.system_hostfiles));
    put("userknownhostsfile", oneline(&v.user_hostfiles));
    for s in &v.send_env {
        put("sendenv", s.clone());
    }
    for s in &v.setenv {
        put("setenv", s.clone());
    }
    put("logverbose", oneline(&v.log_verbose));
    put(
        "permitremoteopen",
        if v.permitted_remote_opens.is_empty() {
            "any".into()
        } else {
            v.permitted_remote_opens.join(" ")
        },
    );
    let (ak_state, ak_life) = v.add_keys_to_agent.unwrap_or(("false", 0));
    if ak_life <= 0 {
        put("addkeystoagent", ak_state.into());
    } else if ak_state == "confirm" {
        put("addkeystoagent", format!("confirm {ak_life}"));
    } else {
        put("addkeystoagent", ak_life.to_string());
    }
    let forward_agent = if let Some(p) = &v.forward_agent_sock_path {
        put("forwardagent", p.clone());
        ForwardAgent::Socket(p.clone())
    } else {
        let b = v.forward_agent.unwrap_or(false);
        put("forwardagent", yn(b));
        if b {
            ForwardAgent::Yes
        } else {
            ForwardAgent::No
        }
    };
    put(
        "connecttimeout",
        v.ints
            .get("connecttimeout")
            .map_or_else(|| "none".into(), ToString::to_string),
    );
    let (tl, tr) = v.tun_device.unwrap_or((0x7fff_ffff, 0x7fff_ffff));
    let tun = |x: i64| {
        if x == 0x7fff_ffff {
            "any".to_owned()
        } else {
            x.to_string()
        }
    };
    put("tunneldevice", format!("{}:{}", tun(tl), tun(tr)));
    put(
        "canonicalizePermittedcnames",
        if v.permitted_cnames.is_empty() {
            "none".into()
        } else {
            v.permitted_cnames
                .iter()
                .map(|(s, t)| format!("{s}:{t}"))
                .collect::<Vec<_>>()
                .join(" ")
        },
    );
    if !control_persist.0 || control_persist.1 == 0 {
        put("controlpersist", yn(control_persist.0));
    } else {
        put("controlpersist", control_persist.1.to_string());
    }
    put(
        "escapechar",
        match v.escape_char.unwrap_or(EscapeChar::Char(b'~')) {
            EscapeChar::None => "none".into(),
            EscapeChar::Char(c) => vis_char(c),
        },
    );
    let (qi, qb) = v.ip_qos.unwrap_or((0x10, 0x08));
    put("ipqos", format!("{} {}", iptos2str(qi), iptos2str(qb)));
    put(
        "rekeylimit",
        format!(
            "{} {}",
            v.rekey_limit.unwrap_or(0),
            v.rekey_interval.unwrap_or(0)
        ),
    );
    put(
        "streamlocalbindmask",
        format!("0{:o}", v.streamlocal_bind_mask.unwrap_or(0o177)),
    );
    put("syslogfacility", v.log_facility.unwrap_or("USER").into());
    let mut proxy_jump = None;
    match &v.jump_host {
        None => {
            if let Some(pc) = &v.proxy_command {
                put("proxycommand", pc.clone());
            }
        }
        Some(jh) => {
            let numeric = jh.contains(':') || jh.bytes().all(|c| c.is_ascii_digit() || c == b'.');
            let mut s = String::new();
            if let Some(e) = &v.jump_extra {
                s.push_str(e);
                s.push(',');
            }
            if let Some(u) = &v.jump_user {
                s.push_str(u);
                s.push('@');
            }
            if numeric {
                let _ = write!(s, "[{jh}]");
            } else {
                s.push_str(jh);
            }
            if v.jump_port > 0 {
                let _ = write!(s, ":{}", v.jump_port);
            }
            put("proxyjump", s.clone());
            proxy_jump = Some(s);
        }
    }
    let strict = multi(&v, "stricthostkeychecking", "ask").to_owned();
    Ok(ResolvedConfig {
        host: host_arg,
        hostname: host,
        port: u16::try_from(port).unwrap_or(22),
        user,
        host_key_alias,
        user_known_hosts_files: v.user_hostfiles.clone(),
        forward_agent,
        proxy_jump,
        proxy_command: v.proxy_command.clone(),
        identity_files: v.identity_files.iter().map(|(f, _)| f.clone()).collect(),
        identities_only: flag(&v, "identitiesonly", false),
        strict_host_key_checking: strict,
        lines,
        trace: rec.trace,
        origins: rec
            .origins
            .into_iter()
            .map(|(k, l)| (k.to_owned(), l))
            .collect(),
    })
}

fn oneline(v: &[String]) -> String {
    if v.is_empty() {
        "none".into()
    } else {
        v.join(" ")
    }
}
