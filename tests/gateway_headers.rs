//! The `authgate` binary as a real process: attacks on the edge (headers).

#[path = "common/gateway.rs"]
mod fixtures;
