//! Writing one `Host` block into a config in place: comments and order kept, a trailing
//! `Host *` / `ForwardAgent no` guard kept last, the write atomic (temporary file in the same
//! directory, fsync, rename) with a backup, and the result idempotent.

use std::io::Write as _;
use std::path::{Path, PathBuf};

use crate::Error;
use crate::lexer::{Line, argv_split, split_line};
use crate::pattern::match_pattern;
use crate::resolve::{ConfigSource, ForwardAgent, LocalContext, ResolveOptions, resolve};

/// The block `add-host` writes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostBlock {
    /// The `Host` alias (one concrete name).
    pub alias: String,
    /// `HostName`.
    pub hostname: String,
    /// `User`.
    pub user: Option<String>,
    /// `Port`.
    pub port: Option<u16>,
    /// `IdentityFile` (with `IdentitiesOnly yes`).
    pub identity_file: Option<String>,
    /// `ProxyJump`.
    pub proxy_jump: Option<String>,
    /// `ForwardAgent` socket path; `None` leaves forwarding to the guard (`no`).
    pub forward_agent: Option<String>,
}

/// Keywords `add-host` owns inside its block; other lines there are kept.
const MANAGED: &[&str] = &[
    "hostname",
    "user",
    "port",
    "identityfile",
    "identitiesonly",
    "proxyjump",
    "forwardagent",
];

const INDENT: &str = "    ";

fn quote(value: &str) -> Result<String, Error> {
    if value.is_empty() || value.contains(['"', '\n', '\r']) {
        return Err(Error::Edit(format!(
            "value {value:?} cannot be written to an ssh config (empty, or contains a quote or newline)"
        )));
    }
    if value.contains([' ', '\t', '#']) || value.contains('\'') {
        Ok(format!("\"{value}\""))
    } else {
        Ok(value.to_owned())
    }
}

impl HostBlock {
    fn managed_lines(&self, indent: &str) -> Result<Vec<String>, Error> {
        let mut out = vec![format!("{indent}HostName {}", quote(&self.hostname)?)];
        if let Some(u) = &self.user {
            out.push(format!("{indent}User {}", quote(u)?));
        }
        if let Some(p) = self.port {
            out.push(format!("{indent}Port {p}"));
        }
        if let Some(k) = &self.identity_file {
            out.push(format!("{indent}IdentityFile {}", quote(k)?));
        }
        out.push(format!("{indent}IdentitiesOnly yes"));
        if let Some(j) = &self.proxy_jump {
            out.push(format!("{indent}ProxyJump {}", quote(j)?));
        }
        if let Some(s) = &self.forward_agent {
            out.push(format!("{indent}ForwardAgent {}", quote(s)?));
        }
        Ok(out)
    }
}

/// One physical line and what it is.
#[derive(Debug)]
struct Physical {
    text: String,
    keyword: Option<String>,
    args: Vec<String>,
}

fn physical_lines(text: &str) -> Vec<Physical> {
    text.lines()
        .map(|l| {
            let (keyword, args) = match split_line(l) {
                Line::Directive(d) => (
                    Some(d.keyword.to_ascii_lowercase()),
                    argv_split(&d.rest).unwrap_or_default(),
                ),
                _ => (None, Vec::new()),
            };
            Physical {
                text: l.to_owned(),
                keyword,
                args,
            }
        })
        .collect()
}

fn is_header(p: &Physical) -> bool {
    matches!(p.keyword.as_deref(), Some("host" | "match"))
}

fn is_guard(lines: &[Physical], start: usize, end: usize) -> bool {
    let Some(h) = lines.get(start) else {
        return false;
    };
    h.keyword.as_deref() == Some("host")
        && h.args == ["*"]
        && lines.get(start + 1..end).is_some_and(|body| {
            body.iter().any(|p| {
                p.keyword.as_deref() == Some("forwardagent")
                    && p.args.first().is_some_and(|a| {
                        a.eq_ignore_ascii_case("no") || a.eq_ignore_ascii_case("false")
                    })
            })
        })
}

/// Compute the new config text (pure; no I/O).
pub fn apply_add_host(text: &str, block: &HostBlock) -> Result<String, Error> {
    if block.alias.is_empty()
        || block
            .alias
            .contains([' ', '\t', '*', '?', '!', ',', '"', '\n', '#'])
    {
        return Err(Error::Edit(format!(
            "alias {:?} must be one concrete host name (no spaces, wildcards, `!` or commas)",
            block.alias
        )));
    }
    let lines = physical_lines(text);
    let headers: Vec<usize> = (0..lines.len())
        .filter(|&i| lines.get(i).is_some_and(is_header))
        .collect();
    let block_end = |start: usize| {
        headers
            .iter()
            .copied()
            .find(|&h| h > start)
            .unwrap_or(lines.len())
    };
    let mut out: Vec<String> = Vec::new();
    let existing = headers.iter().copied().find(|&h| {
        lines.get(h).is_some_and(|p| {
            p.keyword.as_deref() == Some("host")
                && p.args.len() == 1
                && p.args.first() == Some(&block.alias)
        })
    });
    // Is there a trailing guard already?
    let last_header = headers.last().copied();
    let guard_last = last_header.is_some_and(|h| is_guard(&lines, h, lines.len()));

    if let Some(start) = existing {
        let end = block_end(start);
        // Body lines of this block, and trailing comments/blank lines that introduce the next
        // block (kept where they are).
        let body = lines.get(start + 1..end).unwrap_or_default();
        let mut tail_from = body.len();
        while tail_from > 0 && body.get(tail_from - 1).is_some_and(|p| p.keyword.is_none()) {
            tail_from -= 1;
        }
        let indent = body
            .iter()
            .find(|p| p.keyword.is_some())
            .map_or(INDENT.to_owned(), |p| {
                p.text
                    .chars()
                    .take_while(|c| *c == ' ' || *c == '\t')
                    .collect()
            });
        let indent = if indent.is_empty() {
            INDENT.to_owned()
        } else {
            indent
        };
        for p in lines.get(..=start).unwrap_or_default() {
            out.push(p.text.clone());
        }
        out.extend(block.managed_lines(&indent)?);
        for p in body.get(..tail_from).unwrap_or_default() {
            if p.keyword.as_deref().is_some_and(|k| MANAGED.contains(&k)) {
                continue;
            }
            out.push(p.text.clone());
        }
        for p in body.get(tail_from..).unwrap_or_default() {
            out.push(p.text.clone());
        }
        for p in lines.get(end..).unwrap_or_default() {
            out.push(p.text.clone());
        }
    } else {
        // New block: before the first block that would apply to the alias first (so its
        // settings win), else before the trailing guard, else at the end.
        let applies = |h: usize| {
            lines.get(h).is_some_and(|p| {
                p.keyword.as_deref() == Some("match")
                    || (p.keyword.as_deref() == Some("host") && {
                        let mut hit = false;
                        for a in &p.args {
                            let (neg, pat) = match a.strip_prefix('!') {
                                Some(x) => (true, x),
                                None => (false, a.as_str()),
                            };
                            if match_pattern(&block.alias, pat) {
                                if neg {
                                    hit = false;
                                    break;
                                }
                                hit = true;
                            }
                        }
                        hit
                    })
            })
        };
        let insert_at = headers.iter().copied().find(|&h| applies(h));
        // Pull the comments and blank lines directly above that header along with it.
        let insert_at = insert_at.map(|h| {
            let mut i = h;
            while i > 0
                && lines
                    .get(i - 1)
                    .is_some_and(|p| p.keyword.is_none() && !p.text.trim().is_empty())
            {
                i -= 1;
            }
            i
        });
        let mut new_block = vec![format!("Host {}", block.alias)];
        new_block.extend(block.managed_lines(INDENT)?);
        if let Some(at) = insert_at {
            for p in lines.get(..at).unwrap_or_default() {
                out.push(p.text.clone());
            }
            if out.last().is_some_and(|l| !l.trim().is_empty()) {
                out.push(String::new());
            }
            out.extend(new_block);
            out.push(String::new());
            for p in lines.get(at..).unwrap_or_default() {
                out.push(p.text.clone());
            }
        } else {
            for p in &lines {
                out.push(p.text.clone());
            }
            if out.last().is_some_and(|l| !l.trim().is_empty()) {
                out.push(String::new());
            }
            out.extend(new_block);
        }
    }
    if !guard_last {
        while out.last().is_some_and(|l| l.trim().is_empty()) {
            out.pop();
        }
        if !out.is_empty() {
            out.push(String::new());
        }
        out.push(
            "# Added by airlock: no agent forwarding unless a Host block above enables it.".into(),
        );
        out.push("Host *".into());
        out.push(format!("{INDENT}ForwardAgent no"));
    }
    let mut text = out.join("\n");
    text.push('\n');
    Ok(text)
}

/// What [`add_host`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EditOutcome {
    /// The file already had exactly this content.
    Unchanged,
    /// The file was written; the previous version (if any) is in the backup.
    Written {
        /// Where the previous content was saved.
        backup: Option<PathBuf>,
    },
}

/// The backup path for a config: `config.airlock-bak` beside it.
pub fn backup_path(path: &Path) -> PathBuf {
    let mut name = path.file_name().unwrap_or_default().to_os_string();
    name.push(".airlock-bak");
    path.with_file_name(name)
}

/// Add or update the block in `path` (created 0600, in a 0700 directory, if missing), check
/// with the resolver that its settings take effect, then replace the file atomically.
pub fn add_host(
    path: &Path,
    block: &HostBlock,
    context: &LocalContext,
) -> Result<EditOutcome, Error> {
    let old = match std::fs::read(path) {
        Ok(b) => Some(b),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
        Err(source) => {
            return Err(Error::Read {
                path: path.to_path_buf(),
                source,
            });
        }
    };
    let old_text = old
        .as_deref()
        .map(|b| String::from_utf8(b.to_vec()))
        .transpose()
        .map_err(|_| Error::Edit(format!("{} is not UTF-8; not editing it", path.display())))?;
    let new_text = apply_add_host(old_text.as_deref().unwrap_or(""), block)?;
    if old_text.as_deref() == Some(new_text.as_str()) {
        return Ok(EditOutcome::Unchanged);
    }
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
        _ => PathBuf::from("."),
    };
    if !dir.exists() {
        create_private_dir(&dir)?;
    }
    let io = |source: std::io::Error| Error::Read {
        path: path.to_path_buf(),
        source,
    };
    let mut tmp = tempfile::Builder::new()
        .prefix(".config.airlock-")
        .tempfile_in(&dir)
        .map_err(io)?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt as _;
        let mode = std::fs::metadata(path).map_or(0o600, |m| m.permissions().mode() & 0o7777);
        std::fs::set_permissions(tmp.path(), std::fs::Permissions::from_mode(mode)).map_err(io)?;
    }
    tmp.write_all(new_text.as_bytes()).map_err(io)?;
    tmp.as_file().sync_all().map_err(io)?;
    verify(tmp.path(), block, context)?;
    let backup = if let Some(old) = &old {
        let b = backup_path(path);
        let mut bt = tempfile::Builder::new()
            .prefix(".config.airlock-bak-")
            .tempfile_in(&dir)
            .map_err(io)?;
        bt.write_all(old).map_err(io)?;
        bt.as_file().sync_all().map_err(io)?;
        bt.persist(&b).map_err(|e| io(e.error))?;
        Some(b)
    } else {
        None
    };
    tmp.persist(path).map_err(|e| io(e.error))?;
    if let Ok(d) = std::fs::File::open(&dir) {
        let _ = d.sync_all();
    }
    Ok(EditOutcome::Written { backup })
}

fn create_private_dir(dir: &Path) -> Result<(), Error> {
    let mut builder = std::fs::DirBuilder::new();
    builder.recursive(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::DirBuilderExt as _;
        builder.mode(0o700);
    }
    builder.create(dir).map_err(|source| Error::Read {
        path: dir.to_path_buf(),
        source,
    })
}

/// Resolve the alias against the new text and refuse the edit if an earlier line would
/// override what the block says.
fn verify(new_file: &Path, block: &HostBlock, context: &LocalContext) -> Result<(), Error> {
    let options = ResolveOptions {
        config: ConfigSource::File(new_file.to_path_buf()),
        user: None,
        port: None,
        context: context.clone(),
    };
    let r = match resolve(&block.alias, &options) {
        Ok(r) => r,
        Err(Error::MatchExecUnsupported { .. }) => return Ok(()),
        Err(e) => {
            return Err(Error::Edit(format!(
                "the edited config would not load: {e}"
            )));
        }
    };
    let shadow = |what: &str, kw: &str| {
        let by = r
            .origins
            .get(kw)
            .map_or_else(String::new, |l| format!(" (set first at line {})", l.line));
        Error::Edit(format!(
            "{what} for `{}` would not take effect: an earlier line sets it{by}; move that line below the `Host {}` block or change it",
            block.alias, block.alias
        ))
    };
    if !r.hostname.eq_ignore_ascii_case(&block.hostname) && !block.hostname.contains('%') {
        return Err(shadow("HostName", "hostname"));
    }
    if block.user.as_ref().is_some_and(|u| *u != r.user) {
        return Err(shadow("User", "user"));
    }
    if block.port.is_some_and(|p| p != r.port) {
        return Err(shadow("Port", "port"));
    }
    if !r.identities_only {
        return Err(shadow("IdentitiesOnly", "identitiesonly"));
    }
    match (&block.forward_agent, &r.forward_agent) {
        (Some(_), ForwardAgent::Socket(_)) | (None, ForwardAgent::No) => {}
        (Some(_) | None, _) => return Err(shadow("ForwardAgent", "forwardagent")),
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn block() -> HostBlock {
        HostBlock {
            alias: "gpu".into(),
            hostname: "gpu.lab".into(),
            user: Some("me".into()),
            port: None,
            identity_file: Some("~/.ssh/airlock/lab".into()),
            proxy_jump: None,
            forward_agent: None,
        }
    }

    #[test]
    fn appends_block_and_guard() {
        let out = apply_add_host("# mine\nHost a\n  User x\n", &block()).unwrap();
        assert_eq!(
            out,
            "# mine\nHost a\n  User x\n\nHost gpu\n    HostName gpu.lab\n    User me\n    IdentityFile ~/.ssh/airlock/lab\n    IdentitiesOnly yes\n\n# Added by airlock: no agent forwarding unless a Host block above enables it.\nHost *\n    ForwardAgent no\n"
        );
        assert_eq!(apply_add_host(&out, &block()).unwrap(), out);
    }

    #[test]
    fn updates_in_place_keeping_other_lines() {
        let text = "Host gpu\n  # note\n  HostName old\n  Compression yes\n\n# next\nHost *\n  ForwardAgent no\n";
        let out = apply_add_host(text, &block()).unwrap();
        assert_eq!(
            out,
            "Host gpu\n  HostName gpu.lab\n  User me\n  IdentityFile ~/.ssh/airlock/lab\n  IdentitiesOnly yes\n  # note\n  Compression yes\n\n# next\nHost *\n  ForwardAgent no\n"
        );
    }

    #[test]
    fn rejects_patterns() {
        let mut b = block();
        b.alias = "gpu-*".into();
        assert!(apply_add_host("", &b).is_err());
    }
}
