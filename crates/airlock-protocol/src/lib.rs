//! airlock-protocol.
