//! airlock-test-support.
