//! Durations as users type them: `90d`, `12h`, `1h30m`, `2w`, `1y`, or plain seconds (`3600`),
//! the same units as the TIME FORMATS of `sshd_config(5)` plus days-based `y`.

use std::time::Duration;

use crate::KeyError;

/// Parse a duration: one or more `NUMBER[UNIT]` groups, units `s m h d w y` (`y` = 365 days); a
/// group without a unit is seconds. Zero is rejected: a zero lifetime or expiry is a mistake.
pub fn parse_duration(text: &str) -> Result<Duration, KeyError> {
    let invalid = |reason| KeyError::InvalidDuration {
        text: text.to_owned(),
        reason,
    };
    let trimmed = text.trim();
    if trimmed.is_empty() {
        return Err(invalid("it is empty"));
    }
    let mut total: u64 = 0;
    let mut number: Option<u64> = None;
    for c in trimmed.chars() {
        if c.is_whitespace() {
            continue;
        }
        if let Some(digit) = c.to_digit(10) {
            let n = number
                .unwrap_or(0)
                .checked_mul(10)
                .and_then(|n| n.checked_add(u64::from(digit)))
                .ok_or_else(|| invalid("it is too large"))?;
            number = Some(n);
            continue;
        }
        let unit: u64 = match c.to_ascii_lowercase() {
            's' => 1,
            'm' => 60,
            'h' => 3600,
            'd' => 86_400,
            'w' => 7 * 86_400,
            'y' => 365 * 86_400,
            _ => return Err(invalid("unknown unit (use s, m, h, d, w or y)")),
        };
        let n = number
            .take()
            .ok_or_else(|| invalid("a unit without a number"))?;
        total = n
            .checked_mul(unit)
            .and_then(|v| total.checked_add(v))
            .ok_or_else(|| invalid("it is too large"))?;
    }
    if let Some(n) = number {
        total = total
            .checked_add(n)
            .ok_or_else(|| invalid("it is too large"))?;
    }
    if total == 0 {
        return Err(invalid("it is zero"));
    }
    Ok(Duration::from_secs(total))
}

/// A short human form, largest two units: `89d 23h`, `5h 2m`, `40s`.
pub fn format_duration(duration: Duration) -> String {
    const UNITS: [(u64, &str); 4] = [(86_400, "d"), (3600, "h"), (60, "m"), (1, "s")];
    let mut rest = duration.as_secs();
    let mut parts = Vec::new();
    for (size, name) in UNITS {
        if rest >= size {
            parts.push(format!("{}{name}", rest / size));
            rest %= size;
        }
        if parts.len() == 2 {
            break;
        }
    }
    if parts.is_empty() {
        "0s".to_owned()
    } else {
        parts.join(" ")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_units_and_combinations() {
        let cases = [
            ("90d", 90 * 86_400),
            ("12h", 12 * 3600),
            ("1h30m", 5400),
            ("2w", 14 * 86_400),
            ("1y", 365 * 86_400),
            ("3600", 3600),
            ("45s", 45),
            ("1D", 86_400),
            (" 10m ", 600),
            ("1h 30m", 5400),
        ];
        for (text, secs) in cases {
            let got = parse_duration(text).unwrap();
            assert_eq!(got.as_secs(), secs, "{text}");
        }
    }

    #[test]
    fn rejects_nonsense() {
        for text in [
            "",
            "d",
            "0",
            "0d",
            "5x",
            "1.5h",
            "-1d",
            "99999999999999999999y",
        ] {
            assert!(parse_duration(text).is_err(), "{text:?} should be rejected");
        }
    }

    #[test]
    fn formats_largest_two_units() {
        assert_eq!(
            format_duration(Duration::from_hours(90 * 24 - 1)),
            "89d 23h"
        );
        assert_eq!(
            format_duration(Duration::from_secs(5 * 3600 + 120 + 5)),
            "5h 2m"
        );
        assert_eq!(format_duration(Duration::from_secs(40)), "40s");
        assert_eq!(format_duration(Duration::ZERO), "0s");
    }
}
