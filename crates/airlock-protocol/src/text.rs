//! Text that came from the other side (a namespace, a user name, a key comment, a host name),
//! made safe to show: control characters are written as escapes, never passed to a terminal,
//! and the length is capped.

use std::fmt::Write as _;

/// The longest client-sent field kept anywhere (audit records, prompts, logs), in characters.
pub const MAX_FIELD_CHARS: usize = 256;

/// `text` as it may be shown on a terminal: every control character (C0, DEL, C1), and the
/// Unicode characters that reorder or hide text (bidi controls, zero-width), written as `\xNN`
/// or `\u{NNNN}`; cut after `max` characters with a note of how much more there was. Text
/// already made printable stays as it is, so it can be applied again where it is shown.
pub fn printable(text: &str, max: usize) -> String {
    let mut out = String::with_capacity(text.len().min(max * 4));
    let mut chars = text.chars();
    for (shown, c) in chars.by_ref().enumerate() {
        if shown == max {
            let rest = 1 + chars.count();
            let _ = write!(out, "...({rest} more characters)");
            return out;
        }
        match c {
            c if u32::from(c) < 0x80 && c.is_ascii_control() => {
                let _ = write!(out, "\\x{:02x}", u32::from(c));
            }
            c if hides_text(c) => {
                let _ = write!(out, "\\u{{{:04x}}}", u32::from(c));
            }
            c => out.push(c),
        }
    }
    out
}

/// [`printable`] of bytes that should be UTF-8 (invalid sequences become U+FFFD).
pub fn printable_bytes(bytes: &[u8], max: usize) -> String {
    printable(&String::from_utf8_lossy(bytes), max)
}

/// C1 controls, and the characters that reorder or hide what follows them.
fn hides_text(c: char) -> bool {
    matches!(u32::from(c),
        0x80..=0x9f
        | 0x200b..=0x200f
        | 0x202a..=0x202e
        | 0x2060..=0x2064
        | 0x2066..=0x2069
        | 0xfeff)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escapes_are_shown_not_executed() {
        assert_eq!(printable("git\x1b[2K\r\n", 100), "git\\x1b[2K\\x0d\\x0a");
        assert_eq!(printable("a\u{202e}b\u{9b}", 100), "a\\u{202e}b\\u{009b}");
        assert_eq!(
            printable("git\x1b[2K", 100),
            printable(&printable("git\x1b[2K", 100), 100)
        );
        assert_eq!(printable("plain é text", 100), "plain é text");
    }

    #[test]
    fn long_text_is_cut_with_a_note() {
        assert_eq!(printable("abcdef", 3), "abc...(3 more characters)");
        assert_eq!(printable("abc", 3), "abc");
        assert_eq!(printable_bytes(b"a\xffb", 10), "a\u{fffd}b");
    }
}
