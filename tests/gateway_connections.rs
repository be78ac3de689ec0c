//! The `authgate` binary as a real process: attacks on the edge (connections).

#[path = "common/gateway.rs"]
mod fixtures;
