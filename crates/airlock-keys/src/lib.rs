//! airlock-keys.
