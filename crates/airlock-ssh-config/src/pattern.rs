//! OpenSSH's wildcard patterns (`match.c`): `*` and `?`, comma lists with `!` negation.

/// `match_pattern`: does `s` match `pattern` (`*`, `?`; case-sensitive)?
pub fn match_pattern(s: &str, pattern: &str) -> bool {
    match_bytes(s.as_bytes(), pattern.as_bytes())
}

fn match_bytes(s: &[u8], p: &[u8]) -> bool {
    // Iterative glob with single-star backtracking: equivalent to OpenSSH's recursion.
    let (mut si, mut pi) = (0usize, 0usize);
    let mut star: Option<(usize, usize)> = None;
    while si < s.len() {
        match p.get(pi) {
            Some(b'*') => {
                star = Some((pi, si));
                pi += 1;
            }
            Some(&c) if c == b'?' || Some(&c) == s.get(si) => {
                si += 1;
                pi += 1;
            }
            _ => match star {
                Some((sp, ss)) => {
                    pi = sp + 1;
                    si = ss + 1;
                    star = Some((sp, ss + 1));
                }
                None => return false,
            },
        }
    }
    p.get(pi..).unwrap_or_default().iter().all(|&c| c == b'*')
}

/// Result of matching against a pattern list.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ListMatch {
    /// A negated pattern matched.
    Negated,
    /// Nothing matched.
    NoMatch,
    /// A positive pattern matched and no negated one did.
    Matched,
}

/// `match_pattern_list`: comma-separated patterns, `!` negates; `lower` lower-cases patterns.
pub fn match_pattern_list(s: &str, list: &str, lower: bool) -> ListMatch {
    match_patterns(s, list.split(','), lower)
}

/// [`match_pattern_list`] over patterns already split.
pub fn match_patterns<'a>(
    s: &str,
    patterns: impl IntoIterator<Item = &'a str>,
    lower: bool,
) -> ListMatch {
    let mut positive = false;
    for sub in patterns {
        let (negated, sub) = match sub.strip_prefix('!') {
            Some(rest) => (true, rest),
            None => (false, sub),
        };
        if sub.len() >= 1023 {
            return ListMatch::NoMatch;
        }
        let sub = if lower && sub.bytes().any(|b| b.is_ascii_uppercase()) {
            std::borrow::Cow::Owned(sub.to_ascii_lowercase())
        } else {
            std::borrow::Cow::Borrowed(sub)
        };
        if match_pattern(s, &sub) {
            if negated {
                return ListMatch::Negated;
            }
            positive = true;
        }
    }
    if positive {
        ListMatch::Matched
    } else {
        ListMatch::NoMatch
    }
}

/// `match_hostname`: a pattern list against a lower-cased host name.
pub fn match_hostname(host: &str, list: &str) -> ListMatch {
    match_pattern_list(&host.to_ascii_lowercase(), list, true)
}

/// Whether a Host pattern contains wildcards.
pub fn has_wildcard(pattern: &str) -> bool {
    pattern.contains(['*', '?'])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn globs() {
        assert!(match_pattern("gpu-node-01", "gpu-node-*"));
        assert!(match_pattern("abc", "a?c"));
        assert!(match_pattern("", "*"));
        assert!(!match_pattern("", "?"));
        assert!(match_pattern("aXbXc", "*b*c"));
        assert!(!match_pattern("Foo", "foo"));
        assert!(match_pattern("a.b.c", "*.c"));
        assert!(!match_pattern("abc", "*d"));
    }

    #[test]
    fn lists() {
        assert_eq!(match_pattern_list("a", "b,a", false), ListMatch::Matched);
        assert_eq!(match_pattern_list("a", "*,!a", false), ListMatch::Negated);
        assert_eq!(match_pattern_list("c", "a,b", false), ListMatch::NoMatch);
        assert_eq!(match_hostname("FOO", "F*"), ListMatch::Matched);
    }
}
