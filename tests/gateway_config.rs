//! The `authgate` binary as a real process: attacks on the edge (config).

#[path = "common/gateway.rs"]
mod fixtures;
