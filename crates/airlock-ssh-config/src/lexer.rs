//! Splitting one config line into a keyword and its arguments, byte for byte as OpenSSH's
//! `misc.c` does (`strdelim`, `argv_split`), so quoting and `key=value` behave identically.

/// Characters OpenSSH treats as whitespace in config lines (`WHITESPACE` in `misc.c`).
const WHITESPACE: &[u8] = b" \t\r\n";

/// One line with its keyword separated from the rest.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SplitLine {
    /// The keyword as written (not lower-cased).
    pub keyword: String,
    /// Everything after the keyword and the separator (whitespace or one `=`), untouched.
    pub rest: String,
}

/// Outcome of splitting a line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Line {
    /// Blank, comment, or a keyword OpenSSH silently skips.
    Empty,
    /// A keyword with no argument: an error in OpenSSH.
    MissingArgument(String),
    /// A keyword and its arguments.
    Directive(SplitLine),
}

fn is_ws(b: u8) -> bool {
    WHITESPACE.contains(&b)
}

/// `strdelim` from OpenSSH `misc.c`: returns the next token and advances `s`.
/// `None` in `s` means the input is exhausted; a `None` return means an unmatched quote.
fn strdelim(s: &mut Option<Vec<u8>>, split_equals: bool) -> Option<Vec<u8>> {
    let buf = s.take()?;
    let stop = buf
        .iter()
        .position(|&b| is_ws(b) || b == b'"' || (split_equals && b == b'='));
    let Some(pos) = stop else {
        return Some(buf);
    };
    let token_start: Vec<u8> = buf.get(..pos).unwrap_or_default().to_vec();
    let after = buf.get(pos..).unwrap_or_default();
    if after.first() == Some(&b'"') {
        // The quote is removed, and the token runs to the next quote.
        let inner = after.get(1..).unwrap_or_default();
        let close = inner.iter().position(|&b| b == b'"')?;
        let mut token = token_start;
        token.extend_from_slice(inner.get(..close).unwrap_or_default());
        let remain = inner.get(close + 1..).unwrap_or_default();
        let skip = remain.iter().take_while(|&&b| is_ws(b)).count();
        *s = Some(remain.get(skip..).unwrap_or_default().to_vec());
        return Some(token);
    }
    let wspace = split_equals && after.first() == Some(&b'=');
    let mut remain = after.get(1..).unwrap_or_default();
    let skip = remain.iter().take_while(|&&b| is_ws(b)).count();
    remain = remain.get(skip..).unwrap_or_default();
    if split_equals && !wspace && remain.first() == Some(&b'=') {
        remain = remain.get(1..).unwrap_or_default();
        let skip = remain.iter().take_while(|&&b| is_ws(b)).count();
        remain = remain.get(skip..).unwrap_or_default();
    }
    *s = Some(remain.to_vec());
    Some(token_start)
}

/// A cursor over a line that hands out `strdelim` tokens, as `match_cfg_line` consumes them.
#[derive(Debug, Clone)]
pub struct Tokens {
    rest: Option<Vec<u8>>,
}

impl Tokens {
    /// Start at `s`.
    pub fn new(s: &str) -> Self {
        Self {
            rest: Some(s.as_bytes().to_vec()),
        }
    }

    /// The next token: `None` at the end (or on an unmatched quote).
    pub fn next_token(&mut self) -> Option<String> {
        strdelim(&mut self.rest, true).map(|t| String::from_utf8_lossy(&t).into_owned())
    }
}

/// Split a raw config line as `process_config_line_depth` does before dispatching on the
/// keyword.
pub fn split_line(raw: &str) -> Line {
    let mut bytes = raw.as_bytes().to_vec();
    // Strip trailing whitespace (and form feed), but never the first byte.
    while bytes.len() > 1 {
        match bytes.last() {
            Some(&b) if is_ws(b) || b == 0x0c => {
                bytes.pop();
            }
            _ => break,
        }
    }
    if bytes.is_empty() {
        return Line::Empty;
    }
    let mut cursor = Some(bytes);
    let Some(mut keyword) = strdelim(&mut cursor, true) else {
        return Line::Empty;
    };
    if keyword.is_empty() {
        match strdelim(&mut cursor, true) {
            Some(k) => keyword = k,
            None => return Line::Empty,
        }
    }
    if keyword.is_empty() || keyword.first() == Some(&b'\n') || keyword.first() == Some(&b'#') {
        return Line::Empty;
    }
    let keyword = String::from_utf8_lossy(&keyword).into_owned();
    let rest = cursor.unwrap_or_default();
    let skip = rest.iter().take_while(|&&b| is_ws(b)).count();
    let rest = rest.get(skip..).unwrap_or_default();
    if rest.is_empty() {
        return Line::MissingArgument(keyword);
    }
    Line::Directive(SplitLine {
        keyword,
        rest: String::from_utf8_lossy(rest).into_owned(),
    })
}

/// `argv_split` from OpenSSH `misc.c` with `terminate_on_comment`: shell-like words with
/// `"`/`'` quotes and `\\`, `\"`, `\'`, `\ ` escapes. `None` for an unterminated quote.
pub fn argv_split(s: &str) -> Option<Vec<String>> {
    let b = s.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < b.len() {
        let c = b.get(i).copied().unwrap_or(0);
        if c == b' ' || c == b'\t' {
            i += 1;
            continue;
        }
        if c == b'#' {
            break;
        }
        let mut quote = 0u8;
        let mut arg = Vec::new();
        while let Some(&c) = b.get(i) {
            let next = b.get(i + 1).copied();
            if c == b'\\' {
                if matches!(next, Some(b'\'' | b'"' | b'\\')) || (quote == 0 && next == Some(b' '))
                {
                    i += 1;
                    arg.push(next.unwrap_or(b'\\'));
                } else {
                    arg.push(c);
                }
            } else if quote == 0 && (c == b' ' || c == b'\t') {
                break;
            } else if quote == 0 && (c == b'"' || c == b'\'') {
                quote = c;
            } else if quote != 0 && c == quote {
                quote = 0;
            } else {
                arg.push(c);
            }
            i += 1;
        }
        out.push(String::from_utf8_lossy(&arg).into_owned());
        if i >= b.len() {
            if quote != 0 {
                return None;
            }
            break;
        }
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dir(k: &str, r: &str) -> Line {
        Line::Directive(SplitLine {
            keyword: k.into(),
            rest: r.into(),
        })
    }

    #[test]
    fn keyword_separators() {
        assert_eq!(split_line("Host foo"), dir("Host", "foo"));
        assert_eq!(split_line("  User=bob  "), dir("User", "bob"));
        assert_eq!(split_line("User = bob"), dir("User", "bob"));
        assert_eq!(split_line("User==bob"), dir("User", "=bob"));
        assert_eq!(split_line("\tPort\t22\r\n"), dir("Port", "22"));
        assert_eq!(split_line("# comment"), Line::Empty);
        assert_eq!(split_line(""), Line::Empty);
        assert_eq!(split_line("   "), Line::Empty);
        assert_eq!(split_line("User"), Line::MissingArgument("User".into()));
    }

    #[test]
    fn argv_quotes_and_escapes() {
        assert_eq!(
            argv_split(r#""a b" c\ d 'e"f' # x"#),
            Some(vec!["a b".into(), "c d".into(), "e\"f".into()])
        );
        assert_eq!(argv_split("\"open"), None);
        assert_eq!(argv_split(r"a\b"), Some(vec![r"a\b".into()]));
        assert_eq!(argv_split("x#y"), Some(vec!["x#y".into()]));
    }

    #[test]
    fn tokens_split_on_equals() {
        let mut t = Tokens::new("host=a,b user \"x y\"");
        assert_eq!(t.next_token().as_deref(), Some("host"));
        assert_eq!(t.next_token().as_deref(), Some("a,b"));
        assert_eq!(t.next_token().as_deref(), Some("user"));
        assert_eq!(t.next_token().as_deref(), Some("x y"));
    }
}
