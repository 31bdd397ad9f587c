//! airlock-ssh-config.
