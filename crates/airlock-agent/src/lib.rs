//! airlock-agent.
