//! The MineBox Stratum V1 server.
//!
//! Bitaxe-class miners connect to one listener per enabled coin; each gets work built from
//! the box's own node, and a block found pays the miner's own address straight from the
//! coinbase. The crate reads top-down:
//!
//! - [`protocol`]: the SV1 wire format and its error codes.
//! - [`coinbase`], [`merkle`], [`job`]: turning a block template into work for one address.
//! - [`share`]: checking a submission; [`vardiff`]: the difficulty each miner gets.
//! - [`session`]: one miner's protocol state machine (pure, no I/O).
//! - [`stats`], [`store`]: per-worker statistics and their SQLite tables.

pub mod coinbase;
pub mod job;
pub mod merkle;
pub mod protocol;
pub mod session;
pub mod share;
pub mod stats;
pub mod store;
pub mod vardiff;
