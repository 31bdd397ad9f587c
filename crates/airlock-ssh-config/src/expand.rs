//! `%`-tokens, `${ENV}` and `~` expansion as in OpenSSH's `misc.c` (`percent_expand`,
//! `dollar_expand`, `tilde_expand`).

use std::path::Path;

/// Why an expansion failed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ExpandError {
    /// `%x` with no such token.
    UnknownToken(char),
    /// A lone `%` at the end.
    TrailingPercent,
    /// `${` without `}` or `${}`.
    BadVariable,
    /// `${NAME}` with `NAME` unset.
    UnsetVariable(String),
    /// `~user` with no such user.
    NoSuchUser(String),
}

impl std::fmt::Display for ExpandError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::UnknownToken(c) => write!(f, "unknown %-token %{c}"),
            Self::TrailingPercent => write!(f, "'%' at end of string"),
            Self::BadVariable => write!(f, "malformed ${{VARIABLE}}"),
            Self::UnsetVariable(v) => write!(f, "environment variable ${{{v}}} is not set"),
            Self::NoSuchUser(u) => write!(f, "no such user {u} for ~ expansion"),
        }
    }
}

/// `vdollar_percent_expand`: `tokens` maps a token letter to its value; `None` disables `%`
/// expansion; `dollar` enables `${VAR}`.
pub fn expand(
    s: &str,
    tokens: Option<&[(char, &str)]>,
    dollar: bool,
    getenv: &dyn Fn(&str) -> Option<String>,
) -> Result<String, ExpandError> {
    let mut out = String::with_capacity(s.len());
    let mut missing = None;
    let mut chars = s.char_indices().peekable();
    while let Some((i, c)) = chars.next() {
        if dollar && c == '$' && s.get(i + 1..).is_some_and(|r| r.starts_with('{')) {
            let body = s.get(i + 2..).unwrap_or_default();
            let end = body.find('}').ok_or(ExpandError::BadVariable)?;
            if end == 0 {
                return Err(ExpandError::BadVariable);
            }
            let name = body.get(..end).unwrap_or_default();
            match getenv(name) {
                Some(v) => out.push_str(&v),
                None => missing = Some(name.to_owned()),
            }
            // Skip "{", the name and "}".
            for _ in 0..end + 2 {
                chars.next();
            }
            continue;
        }
        let Some(tokens) = tokens else {
            out.push(c);
            continue;
        };
        if c != '%' {
            out.push(c);
            continue;
        }
        match chars.next() {
            None => return Err(ExpandError::TrailingPercent),
            Some((_, '%')) => out.push('%'),
            Some((_, t)) => match tokens.iter().find(|(k, _)| *k == t) {
                Some((_, v)) => out.push_str(v),
                None => return Err(ExpandError::UnknownToken(t)),
            },
        }
    }
    match missing {
        Some(v) => Err(ExpandError::UnsetVariable(v)),
        None => Ok(out),
    }
}

/// `tilde_expand`: `~`, `~/path`, `~user/path`; `home` is the current user's `pw_dir`.
pub fn tilde(
    s: &str,
    home: &Path,
    lookup_home: &dyn Fn(&str) -> Option<String>,
) -> Result<String, ExpandError> {
    let Some(rest) = s.strip_prefix('~') else {
        return Ok(s.to_owned());
    };
    let (dir, path) = if rest.is_empty() {
        (home.to_string_lossy().into_owned(), "")
    } else if let Some(p) = rest.strip_prefix('/') {
        (
            home.to_string_lossy().into_owned(),
            p.trim_start_matches('/'),
        )
    } else {
        let (user, path) = match rest.split_once('/') {
            Some((u, p)) => (u, p.trim_start_matches('/')),
            None => (rest, ""),
        };
        let dir = lookup_home(user).ok_or_else(|| ExpandError::NoSuchUser(user.to_owned()))?;
        (dir, path)
    };
    let slash = if dir.ends_with('/') { "" } else { "/" };
    Ok(format!("{dir}{slash}{path}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(name: &str) -> Option<String> {
        (name == "X").then(|| "ex".to_owned())
    }

    #[test]
    fn percent_and_dollar() {
        let t = [('h', "host"), ('p', "22")];
        assert_eq!(
            expand("%h:%p %% ${X}", Some(&t), true, &env).as_deref(),
            Ok("host:22 % ex")
        );
        assert_eq!(
            expand("%z", Some(&t), false, &env),
            Err(ExpandError::UnknownToken('z'))
        );
        assert_eq!(
            expand("%", Some(&t), false, &env),
            Err(ExpandError::TrailingPercent)
        );
        assert_eq!(
            expand("${Y}", None, true, &env),
            Err(ExpandError::UnsetVariable("Y".into()))
        );
        assert_eq!(
            expand("${X", None, true, &env),
            Err(ExpandError::BadVariable)
        );
        assert_eq!(expand("$X %h", None, true, &env).as_deref(), Ok("$X %h"));
    }

    #[test]
    fn tildes() {
        let none = |_: &str| None;
        let home = Path::new("/home/u");
        assert_eq!(
            tilde("~/.ssh/x", home, &none).as_deref(),
            Ok("/home/u/.ssh/x")
        );
        assert_eq!(tilde("~", home, &none).as_deref(), Ok("/home/u/"));
        assert_eq!(tilde("/abs", home, &none).as_deref(), Ok("/abs"));
        assert!(tilde("~nobody-here/x", home, &none).is_err());
    }
}
