//! OpenSSH's wildcard patterns (`match.c`): `*` and `?`, and comma-separated lists where a
//! leading `!` negates.

/// Whether `s` matches the wildcard `pattern` (`*` any run, `?` any one character). Like
/// OpenSSH's `match_pattern`, case-sensitive; iterative, so hostile patterns cannot recurse.
pub fn match_pattern(s: &str, pattern: &str) -> bool {
    let s: Vec<char> = s.chars().collect();
    let p: Vec<char> = pattern.chars().collect();
    let (mut si, mut pi) = (0usize, 0usize);
    let mut star: Option<(usize, usize)> = None;
    while si < s.len() {
        match p.get(pi) {
            Some('*') => {
                star = Some((pi, si));
                pi += 1;
            }
            Some(&c) if c == '?' || Some(&c) == s.get(si) => {
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
    while p.get(pi) == Some(&'*') {
        pi += 1;
    }
    pi == p.len()
}

/// The result of matching against a pattern list.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ListMatch {
    /// A positive pattern matched and no negated one did.
    Match,
    /// A negated pattern matched: this overrides any positive match.
    Negated,
    /// Nothing matched.
    NoMatch,
}

/// Match `s` against patterns as OpenSSH's `match_pattern_list` does: a negated match wins over
/// any positive one. Host names are compared in lower case when `lowercase` is set.
pub fn match_pattern_list<'a>(
    s: &str,
    patterns: impl IntoIterator<Item = &'a str>,
    lowercase: bool,
) -> ListMatch {
    let s = if lowercase {
        s.to_lowercase()
    } else {
        s.to_owned()
    };
    let mut got = ListMatch::NoMatch;
    for pat in patterns {
        let (neg, pat) = match pat.strip_prefix('!') {
            Some(rest) => (true, rest),
            None => (false, pat),
        };
        let pat = if lowercase {
            pat.to_lowercase()
        } else {
            pat.to_owned()
        };
        if match_pattern(&s, &pat) {
            if neg {
                return ListMatch::Negated;
            }
            got = ListMatch::Match;
        }
    }
    got
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wildcards() {
        assert!(match_pattern("gpu-node-01", "gpu-node-*"));
        assert!(match_pattern("gpu-node-01", "gpu-node-0?"));
        assert!(!match_pattern("gpu-node-10x", "gpu-node-1?"));
        assert!(match_pattern("", "*"));
        assert!(!match_pattern("a", ""));
        assert!(match_pattern("abcabc", "*abc"));
        assert!(!match_pattern("github.com", "gitlab.*"));
    }

    #[test]
    fn lists_and_negation() {
        let pats = ["gpu-*", "!gpu-evil"];
        assert_eq!(match_pattern_list("gpu-a", pats, true), ListMatch::Match);
        assert_eq!(
            match_pattern_list("gpu-evil", pats, true),
            ListMatch::Negated
        );
        assert_eq!(match_pattern_list("other", pats, true), ListMatch::NoMatch);
        assert_eq!(match_pattern_list("GPU-A", pats, true), ListMatch::Match);
    }
}
