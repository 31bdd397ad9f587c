//! Writing one `Host` block into a config in place: comments and order kept, a trailing
//! `Host *` / `ForwardAgent no` guard kept last, the write atomic (temporary file in the same
//! directory, fsync, rename) with a backup, and the result idempotent.

use std::io::Write as _;
use std::path::{Path, PathBuf};

use crate::Error;
use crate::lexer::{Line, argv_split, split_line};
use crate::pattern::match_pattern;
use crate::resolve::{ConfigSource, ForwardAgent, LocalContext, ResolveOptions, resolve};

/// What `add-host` asks of one `Host` block. On a block that exists, only the settings named
/// here change (`None` leaves its lines as they are) and every other line stays byte for byte;
/// `replace` rewrites the block's settings (its comments are kept).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct HostEdit {
    /// The `Host` alias (one concrete name).
    pub alias: String,
    /// `HostName` (needed for a new block or `replace`).
    pub hostname: Option<String>,
    /// `User`.
    pub user: Option<String>,
    /// `Port`.
    pub port: Option<u16>,
    /// `IdentityFile` (with `IdentitiesOnly yes`).
    pub identity_file: Option<String>,
    /// `ProxyJump`.
    pub proxy_jump: Option<String>,
    /// `ForwardAgent`.
    pub forward_agent: Forwarding,
    /// Rewrite the block's settings instead of changing only the ones named.
    pub replace: bool,
}

/// The `ForwardAgent` part of a [`HostEdit`].
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum Forwarding {
    /// Leave the block's line as it is; a new block gets none, so the guard's `no` applies.
    #[default]
    Unchanged,
    /// `ForwardAgent SOCKET`.
    Socket(String),
    /// No forwarding: the block's `ForwardAgent` lines go, so the guard's `no` applies.
    Off,
}

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

/// One setting of an edit: its keyword (lower case) and the directive that replaces the
/// block's lines of that keyword (`None`: they are removed).
type Setting = (&'static str, Option<String>);

impl HostEdit {
    /// The settings this edit names, in the order a new block lists them. `full` (a new
    /// block, or `replace`) needs a `HostName` and always sets `IdentitiesOnly yes`.
    fn settings(&self, full: bool) -> Result<Vec<Setting>, Error> {
        let mut out: Vec<Setting> = Vec::new();
        match &self.hostname {
            Some(h) => out.push(("hostname", Some(format!("HostName {}", quote(h)?)))),
            None if full => {
                return Err(Error::Edit(format!(
                    "a new `Host {}` block needs --hostname",
                    self.alias
                )));
            }
            None => {}
        }
        if let Some(u) = &self.user {
            out.push(("user", Some(format!("User {}", quote(u)?))));
        }
        if let Some(p) = self.port {
            out.push(("port", Some(format!("Port {p}"))));
        }
        if let Some(k) = &self.identity_file {
            out.push(("identityfile", Some(format!("IdentityFile {}", quote(k)?))));
        }
        if full || self.identity_file.is_some() {
            out.push(("identitiesonly", Some("IdentitiesOnly yes".to_owned())));
        }
        if let Some(j) = &self.proxy_jump {
            out.push(("proxyjump", Some(format!("ProxyJump {}", quote(j)?))));
        }
        match &self.forward_agent {
            Forwarding::Socket(s) => {
                out.push(("forwardagent", Some(format!("ForwardAgent {}", quote(s)?))));
            }
            Forwarding::Off => out.push(("forwardagent", None)),
            Forwarding::Unchanged => {}
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

fn leading_whitespace(text: &str) -> &str {
    let rest = text.trim_start_matches([' ', '\t']);
    text.get(..text.len() - rest.len()).unwrap_or_default()
}

/// The lines of an existing block's settings after the edit: a named keyword's first line is
/// replaced where it stands (its own indent kept, and its bytes when the value is the same),
/// its later lines dropped, and a keyword the block lacks appended; every other line is kept.
fn merge_block(region: &[Physical], settings: &[Setting], indent: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut placed: Vec<&str> = Vec::new();
    for p in region {
        let named = p
            .keyword
            .as_deref()
            .and_then(|k| settings.iter().find(|(kw, _)| *kw == k));
        let Some((kw, directive)) = named else {
            out.push(p.text.clone());
            continue;
        };
        if placed.contains(kw) {
            continue;
        }
        placed.push(kw);
        if let Some(d) = directive {
            let same = physical_lines(d)
                .first()
                .is_some_and(|new| new.args == p.args);
            if same {
                out.push(p.text.clone());
            } else {
                out.push(format!("{}{d}", leading_whitespace(&p.text)));
            }
        }
    }
    for (kw, directive) in settings {
        if let (false, Some(d)) = (placed.contains(kw), directive) {
            out.push(format!("{indent}{d}"));
        }
    }
    out
}

/// Compute the new config text (pure; no I/O).
pub fn apply_add_host(text: &str, edit: &HostEdit) -> Result<String, Error> {
    plan(text, edit).map(|(text, _)| text)
}

/// The new text, and whether the alias had a block already.
fn plan(text: &str, edit: &HostEdit) -> Result<(String, bool), Error> {
    if edit.alias.is_empty()
        || edit
            .alias
            .contains([' ', '\t', '*', '?', '!', ',', '"', '\n', '#'])
    {
        return Err(Error::Edit(format!(
            "alias {:?} must be one concrete host name (no spaces, wildcards, `!` or commas)",
            edit.alias
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
                && p.args.first() == Some(&edit.alias)
        })
    });
    // Is there a trailing guard already?
    let last_header = headers.last().copied();
    let guard_last = last_header.is_some_and(|h| is_guard(&lines, h, lines.len()));

    if let Some(start) = existing {
        let settings = edit.settings(edit.replace)?;
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
            .map_or("", |p| leading_whitespace(&p.text));
        let indent = if indent.is_empty() { INDENT } else { indent };
        for p in lines.get(..=start).unwrap_or_default() {
            out.push(p.text.clone());
        }
        let region = body.get(..tail_from).unwrap_or_default();
        if edit.replace {
            out.extend(
                settings
                    .iter()
                    .filter_map(|(_, d)| d.as_ref().map(|d| format!("{indent}{d}"))),
            );
            out.extend(
                region
                    .iter()
                    .filter(|p| p.keyword.is_none())
                    .map(|p| p.text.clone()),
            );
        } else {
            out.extend(merge_block(region, &settings, indent));
        }
        for p in body.get(tail_from..).unwrap_or_default() {
            out.push(p.text.clone());
        }
        for p in lines.get(end..).unwrap_or_default() {
            out.push(p.text.clone());
        }
    } else {
        let settings = edit.settings(true)?;
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
                            if match_pattern(&edit.alias, pat) {
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
        let mut new_block = vec![format!("Host {}", edit.alias)];
        new_block.extend(
            settings
                .iter()
                .filter_map(|(_, d)| d.as_ref().map(|d| format!("{INDENT}{d}"))),
        );
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
    Ok((text, existing.is_some()))
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
        /// Whether the alias had a block before (a block airlock may not have written).
        existed: bool,
        /// The change, as a unified diff of the file ([`unified_diff`]).
        diff: String,
    },
    /// [`preview_add_host`]: what would be written; the file is untouched.
    Previewed {
        /// Whether the alias has a block already.
        existed: bool,
        /// The change, as a unified diff of the file.
        diff: String,
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
    edit: &HostEdit,
    context: &LocalContext,
) -> Result<EditOutcome, Error> {
    edit_file(path, edit, context, true)
}

/// What [`add_host`] would write, checked the same way, without touching `path`.
pub fn preview_add_host(
    path: &Path,
    edit: &HostEdit,
    context: &LocalContext,
) -> Result<EditOutcome, Error> {
    edit_file(path, edit, context, false)
}

fn edit_file(
    path: &Path,
    edit: &HostEdit,
    context: &LocalContext,
    write: bool,
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
    let (new_text, existed) = plan(old_text.as_deref().unwrap_or(""), edit)?;
    if old_text.as_deref() == Some(new_text.as_str()) {
        return Ok(EditOutcome::Unchanged);
    }
    let diff = unified_diff(old_text.as_deref().unwrap_or(""), &new_text);
    if !write {
        let io = |source: std::io::Error| Error::Read {
            path: std::env::temp_dir(),
            source,
        };
        let mut tmp = tempfile::NamedTempFile::new().map_err(io)?;
        tmp.write_all(new_text.as_bytes()).map_err(io)?;
        verify(tmp.path(), edit, !existed || edit.replace, context)?;
        return Ok(EditOutcome::Previewed { existed, diff });
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
    verify(tmp.path(), edit, !existed || edit.replace, context)?;
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
    Ok(EditOutcome::Written {
        backup,
        existed,
        diff,
    })
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
/// override what the edit sets. `full`: the block was written whole (new, or `replace`), so
/// `IdentitiesOnly yes` and no forwarding (unless asked) are expected too.
fn verify(
    new_file: &Path,
    edit: &HostEdit,
    full: bool,
    context: &LocalContext,
) -> Result<(), Error> {
    let options = ResolveOptions {
        config: ConfigSource::File(new_file.to_path_buf()),
        user: None,
        port: None,
        context: context.clone(),
    };
    let r = match resolve(&edit.alias, &options) {
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
            edit.alias, edit.alias
        ))
    };
    if edit
        .hostname
        .as_ref()
        .is_some_and(|h| !r.hostname.eq_ignore_ascii_case(h) && !h.contains('%'))
    {
        return Err(shadow("HostName", "hostname"));
    }
    if edit.user.as_ref().is_some_and(|u| *u != r.user) {
        return Err(shadow("User", "user"));
    }
    if edit.port.is_some_and(|p| p != r.port) {
        return Err(shadow("Port", "port"));
    }
    if (full || edit.identity_file.is_some()) && !r.identities_only {
        return Err(shadow("IdentitiesOnly", "identitiesonly"));
    }
    // A new or rewritten block that does not ask for forwarding must not get it.
    let forwarding_as_asked = match (&edit.forward_agent, &r.forward_agent) {
        (Forwarding::Socket(_), ForwardAgent::Socket(_)) | (Forwarding::Off, ForwardAgent::No) => {
            true
        }
        (Forwarding::Unchanged, found) => !full || *found == ForwardAgent::No,
        _ => false,
    };
    if !forwarding_as_asked {
        return Err(shadow("ForwardAgent", "forwardagent"));
    }
    Ok(())
}

/// Lines of context around each change in [`unified_diff`].
const DIFF_CONTEXT: usize = 2;
/// Above this many cells the middle of a diff is shown as one replacement instead of being
/// aligned line by line (a config is rarely near it).
const DIFF_MAX_CELLS: usize = 4_000_000;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum DiffOp {
    Same,
    Removed,
    Added,
}

/// A unified diff of two texts (`-`/`+` lines, two lines of context, `@@ -a,b +c,d @@`
/// headers), without file headers; empty when they are equal.
pub fn unified_diff(old: &str, new: &str) -> String {
    let old_lines: Vec<&str> = old.lines().collect();
    let new_lines: Vec<&str> = new.lines().collect();
    let prefix = old_lines
        .iter()
        .zip(&new_lines)
        .take_while(|(o, n)| o == n)
        .count();
    let suffix = old_lines
        .iter()
        .rev()
        .zip(new_lines.iter().rev())
        .take(old_lines.len().min(new_lines.len()) - prefix)
        .take_while(|(o, n)| o == n)
        .count();
    let old_middle = old_lines
        .get(prefix..old_lines.len() - suffix)
        .unwrap_or_default();
    let new_middle = new_lines
        .get(prefix..new_lines.len() - suffix)
        .unwrap_or_default();
    let mut ops = vec![DiffOp::Same; prefix];
    ops.extend(align(old_middle, new_middle));
    ops.extend(std::iter::repeat_n(DiffOp::Same, suffix));
    render_hunks(&ops, &old_lines, &new_lines)
}

/// The edit script of two line lists by their longest common subsequence.
fn align(old: &[&str], new: &[&str]) -> Vec<DiffOp> {
    let (rows, cols) = (old.len(), new.len());
    if (rows + 1).saturating_mul(cols + 1) > DIFF_MAX_CELLS {
        let mut ops = vec![DiffOp::Removed; rows];
        ops.extend(std::iter::repeat_n(DiffOp::Added, cols));
        return ops;
    }
    let width = cols + 1;
    // common[row * width + col]: the longest common subsequence of old[row..] and new[col..].
    let mut common = vec![0_u32; (rows + 1) * width];
    let at = |t: &[u32], row: usize, col: usize| t.get(row * width + col).copied().unwrap_or(0);
    for row in (0..rows).rev() {
        for col in (0..cols).rev() {
            let value = if old.get(row) == new.get(col) {
                at(&common, row + 1, col + 1) + 1
            } else {
                at(&common, row + 1, col).max(at(&common, row, col + 1))
            };
            if let Some(cell) = common.get_mut(row * width + col) {
                *cell = value;
            }
        }
    }
    let (mut row, mut col) = (0, 0);
    let mut ops = Vec::with_capacity(rows + cols);
    while row < rows || col < cols {
        if row < rows && col < cols && old.get(row) == new.get(col) {
            ops.push(DiffOp::Same);
            row += 1;
            col += 1;
        } else if row < rows
            && (col == cols || at(&common, row + 1, col) >= at(&common, row, col + 1))
        {
            // Removals before additions, as diff(1) shows a changed line.
            ops.push(DiffOp::Removed);
            row += 1;
        } else {
            ops.push(DiffOp::Added);
            col += 1;
        }
    }
    ops
}

fn render_hunks(ops: &[DiffOp], old: &[&str], new: &[&str]) -> String {
    use std::fmt::Write as _;
    // The old and new line index before each op, and after the last.
    let mut positions = Vec::with_capacity(ops.len() + 1);
    let (mut old_line, mut new_line) = (0, 0);
    for op in ops {
        positions.push((old_line, new_line));
        match op {
            DiffOp::Same => {
                old_line += 1;
                new_line += 1;
            }
            DiffOp::Removed => old_line += 1,
            DiffOp::Added => new_line += 1,
        }
    }
    positions.push((old_line, new_line));
    let changed: Vec<usize> = (0..ops.len())
        .filter(|&index| ops.get(index) != Some(&DiffOp::Same))
        .collect();
    let mut out = String::new();
    let mut next_change = 0;
    while let Some(&first) = changed.get(next_change) {
        // Extend the hunk while the next change is within twice the context.
        let mut last = first;
        next_change += 1;
        while let Some(&next) = changed.get(next_change) {
            if next - last > 2 * DIFF_CONTEXT + 1 {
                break;
            }
            last = next;
            next_change += 1;
        }
        let from = first.saturating_sub(DIFF_CONTEXT);
        let to = (last + DIFF_CONTEXT + 1).min(ops.len());
        let (old_from, new_from) = positions.get(from).copied().unwrap_or_default();
        let (old_to, new_to) = positions.get(to).copied().unwrap_or_default();
        // diff(1) numbers an empty side by the line before it.
        let start = |line: usize, len: usize| if len == 0 { line } else { line + 1 };
        let _ = writeln!(
            out,
            "@@ -{},{} +{},{} @@",
            start(old_from, old_to - old_from),
            old_to - old_from,
            start(new_from, new_to - new_from),
            new_to - new_from
        );
        for index in from..to {
            let (old_at, new_at) = positions.get(index).copied().unwrap_or_default();
            let (mark, line) = match ops.get(index) {
                Some(DiffOp::Removed) => ('-', old.get(old_at)),
                Some(DiffOp::Added) => ('+', new.get(new_at)),
                _ => (' ', old.get(old_at)),
            };
            let _ = writeln!(out, "{mark}{}", line.copied().unwrap_or_default());
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn block() -> HostEdit {
        HostEdit {
            alias: "gpu".into(),
            hostname: Some("gpu.lab".into()),
            user: Some("me".into()),
            identity_file: Some("~/.ssh/airlock/lab".into()),
            ..HostEdit::default()
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
    fn updates_only_the_named_settings_in_place() {
        let text = "Host gpu\n  # note\n  HostName old\n  Compression yes\n  user  me\n  ForwardAgent /run/a.sock\n\n# next\nHost *\n  ForwardAgent no\n";
        let edit = HostEdit {
            alias: "gpu".into(),
            hostname: Some("gpu.lab".into()),
            port: Some(2222),
            ..HostEdit::default()
        };
        assert_eq!(
            apply_add_host(text, &edit).unwrap(),
            "Host gpu\n  # note\n  HostName gpu.lab\n  Compression yes\n  user  me\n  ForwardAgent /run/a.sock\n  Port 2222\n\n# next\nHost *\n  ForwardAgent no\n"
        );
        // The same value keeps the line's own spelling; a key brings IdentitiesOnly.
        let edit = HostEdit {
            alias: "gpu".into(),
            user: Some("me".into()),
            identity_file: Some("/k/lab".into()),
            forward_agent: Forwarding::Off,
            ..HostEdit::default()
        };
        assert_eq!(
            apply_add_host(text, &edit).unwrap(),
            "Host gpu\n  # note\n  HostName old\n  Compression yes\n  user  me\n  IdentityFile /k/lab\n  IdentitiesOnly yes\n\n# next\nHost *\n  ForwardAgent no\n"
        );
    }

    #[test]
    fn replace_rewrites_the_settings_and_keeps_comments() {
        let text = "Host gpu\n  # note\n  HostName old\n  Compression yes\n  User me\n\nHost *\n  ForwardAgent no\n";
        let edit = HostEdit {
            replace: true,
            ..block()
        };
        assert_eq!(
            apply_add_host(text, &edit).unwrap(),
            "Host gpu\n  HostName gpu.lab\n  User me\n  IdentityFile ~/.ssh/airlock/lab\n  IdentitiesOnly yes\n  # note\n\nHost *\n  ForwardAgent no\n"
        );
        let no_host = HostEdit {
            hostname: None,
            ..edit
        };
        assert!(apply_add_host(text, &no_host).is_err());
    }

    #[test]
    fn a_new_block_needs_a_hostname() {
        let edit = HostEdit {
            alias: "gpu".into(),
            port: Some(22),
            ..HostEdit::default()
        };
        let err = apply_add_host("Host a\n  User x\n", &edit).unwrap_err();
        assert!(err.to_string().contains("--hostname"), "{err}");
    }

    #[test]
    fn rejects_patterns() {
        let mut b = block();
        b.alias = "gpu-*".into();
        assert!(apply_add_host("", &b).is_err());
    }

    #[test]
    fn unified_diff_shows_changes_with_context() {
        let old = "a\nb\nc\nd\ne\nf\ng\nh\ni\nj\n";
        let new = "a\nB\nc\nd\ne\nf\ng\nh\ni\nj\nk\n";
        assert_eq!(
            unified_diff(old, new),
            "@@ -1,4 +1,4 @@\n a\n-b\n+B\n c\n d\n@@ -9,2 +9,3 @@\n i\n j\n+k\n"
        );
        assert_eq!(unified_diff(old, old), "");
        assert_eq!(unified_diff("", "x\n"), "@@ -0,0 +1,1 @@\n+x\n");
    }
}
