//! `NAME.toml`: what the key files themselves do not record (when it was made, when it expires).

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

use crate::KeyError;

/// How far ahead `key list` starts warning about expiry.
pub const EXPIRY_WARNING: Duration = Duration::from_hours(7 * 24);

/// The metadata stored beside a key.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub struct KeyMetadata {
    /// `ed25519`, `ecdsa-p256`, `rsa-3072`, ... (see [`crate::kind::describe`]).
    #[serde(rename = "type")]
    pub key_type: String,
    /// SHA256 fingerprint as `ssh-keygen -l` prints it: `SHA256:...`.
    pub fingerprint: String,
    /// The key's comment.
    pub comment: String,
    /// When the key was made (or imported).
    #[serde(with = "time::serde::rfc3339")]
    pub created: OffsetDateTime,
    /// When the key stops being loadable; `None` for never.
    #[serde(
        with = "time::serde::rfc3339::option",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub expires: Option<OffsetDateTime>,
    /// Whether the private key file is passphrase-encrypted.
    pub encrypted: bool,
    /// For an imported key, the file it was copied from.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub imported_from: Option<PathBuf>,
}

/// Where a key stands against its expiry date at some instant.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExpiryStatus {
    /// No expiry date.
    Never,
    /// Valid for longer than [`EXPIRY_WARNING`].
    Valid {
        /// Time left.
        remaining: Duration,
    },
    /// Valid, but expires within [`EXPIRY_WARNING`].
    ExpiresSoon {
        /// Time left.
        remaining: Duration,
    },
    /// Past its expiry date.
    Expired {
        /// When it expired.
        at: OffsetDateTime,
    },
}

impl KeyMetadata {
    /// Where this key stands at `now`.
    pub fn expiry_status(&self, now: OffsetDateTime) -> ExpiryStatus {
        let Some(expires) = self.expires else {
            return ExpiryStatus::Never;
        };
        if expires <= now {
            return ExpiryStatus::Expired { at: expires };
        }
        let remaining = Duration::try_from(expires - now).unwrap_or(Duration::MAX);
        if remaining <= EXPIRY_WARNING {
            ExpiryStatus::ExpiresSoon { remaining }
        } else {
            ExpiryStatus::Valid { remaining }
        }
    }

    /// Read `path`.
    pub fn read(path: &Path) -> Result<Self, KeyError> {
        let text = std::fs::read_to_string(path).map_err(|source| KeyError::Read {
            path: path.to_owned(),
            source,
        })?;
        toml::from_str(&text).map_err(|e| KeyError::MalformedMetadata {
            path: path.to_owned(),
            detail: e.message().to_owned(),
        })
    }

    /// The TOML text.
    pub fn to_toml(&self) -> String {
        // Serialising plain strings, bools and dates cannot fail; fall back to an empty
        // document rather than panic if it ever did.
        let body = toml::to_string(self).unwrap_or_default();
        format!(
            "# airlock key metadata; the key is the file of the same name without .toml\n{body}"
        )
    }
}

#[cfg(test)]
mod tests {
    use time::macros::datetime;

    use super::*;

    fn sample() -> KeyMetadata {
        KeyMetadata {
            key_type: "ed25519".into(),
            fingerprint: "SHA256:abc".into(),
            comment: "proj@airlock".into(),
            created: datetime!(2026-11-01 10:00 UTC),
            expires: Some(datetime!(2027-01-30 10:00 UTC)),
            encrypted: true,
            imported_from: None,
        }
    }

    #[test]
    fn round_trips_through_toml() {
        let meta = sample();
        let text = meta.to_toml();
        assert!(text.contains("type = \"ed25519\""), "{text}");
        assert!(
            text.contains("expires = \"2027-01-30T10:00:00Z\""),
            "{text}"
        );
        let back: KeyMetadata = toml::from_str(&text).unwrap();
        assert_eq!(back, meta);
        let never = KeyMetadata {
            expires: None,
            ..meta
        };
        let text = never.to_toml();
        assert!(!text.contains("expires"), "{text}");
        assert_eq!(toml::from_str::<KeyMetadata>(&text).unwrap(), never);
    }

    #[test]
    fn expiry_status_warns_a_week_ahead() {
        let meta = sample();
        assert!(matches!(
            meta.expiry_status(datetime!(2026-12-01 0:00 UTC)),
            ExpiryStatus::Valid { .. }
        ));
        assert!(matches!(
            meta.expiry_status(datetime!(2027-01-25 0:00 UTC)),
            ExpiryStatus::ExpiresSoon { .. }
        ));
        assert_eq!(
            meta.expiry_status(datetime!(2027-01-30 10:00 UTC)),
            ExpiryStatus::Expired {
                at: datetime!(2027-01-30 10:00 UTC)
            }
        );
        let never = KeyMetadata {
            expires: None,
            ..sample()
        };
        assert_eq!(
            never.expiry_status(datetime!(2099-01-01 0:00 UTC)),
            ExpiryStatus::Never
        );
    }
}
