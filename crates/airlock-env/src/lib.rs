//! airlock-env.
