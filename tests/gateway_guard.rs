//! The `authgate` binary as a real process: attacks on the edge (guard).

#[path = "common/gateway.rs"]
mod fixtures;
