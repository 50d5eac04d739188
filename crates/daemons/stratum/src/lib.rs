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
//! - [`share_log`]: every judged share (reason included), buffered and written once a flush;
//!   [`retention`]: detail kept three months, then hourly and daily totals, in small batches.
//! - [`payout`]: who a block pays (the miner's address or the owner's), checked by the coin
//!   registry; [`firewall`]: the stratum ports the LAN may reach, from the settings.
//! - [`work`]: block templates from the node (ZMQ or polling) pushed to every miner.
//! - [`connection`], [`server`], [`pool`]: sockets, limits, and who is connected;
//!   [`quiet_log`]: client-caused log lines kept to a trickle.
//! - [`block`]: found blocks recorded, submitted, confirmed; [`event`]: what happened.
//! - [`api`]: the local HTTP API for the status page; [`supervisor`]: following node events;
//!   [`service`]: all of it, running.
//! - [`upstream`]: while the node cannot give work, a solo pool's jobs, one pool connection per payout address.

pub mod api;
pub mod block;
pub mod coinbase;
pub mod connection;
pub mod event;
pub mod firewall;
pub mod job;
pub mod merkle;
pub mod payout;
pub mod pool;
pub mod pplns;
pub mod protocol;
pub mod quiet_log;
pub mod retention;
pub mod server;
pub mod service;
pub mod session;
pub mod share;
pub mod share_log;
pub mod stats;
pub mod store;
pub mod supervisor;
pub mod upstream;
pub mod vardiff;
pub mod work;
