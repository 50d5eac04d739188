//! MineBox's own Stratum V1 client, for tests, the local demo and benchmarks.
//!
//! - [`work`]: a mining.notify job as headers to hash; targets and difficulties.
//! - [`miner`]: a simulated Bitaxe (ESP-Miner's exact message sequence) hashing on a CPU.
//! - [`load`]: many light connections submitting pre-hashed shares, for load tests.
//! - [`raw`]: a line client that sends exactly what a test wants, hostile or not.

pub mod load;
pub mod miner;
pub mod raw;
pub mod work;

pub use miner::{mine_shares, run, MinerConfig, MinerError, Report};
