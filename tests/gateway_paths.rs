//! The `authgate` binary as a real process: attacks on the edge (paths).

#[path = "common/gateway.rs"]
mod fixtures;
