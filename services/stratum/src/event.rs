//! Things worth telling the status page (and, through it, the owner) as they happen.

use serde::Serialize;

#[derive(Debug, Clone, Serialize, PartialEq)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Event {
    /// A share met the network target; the block is recorded and being submitted.
    BlockFound {
        coin: String,
        height: u64,
        hash: String,
        worker: String,
        reward_sats: u64,
    },
    /// The node took the block.
    BlockAccepted {
        coin: String,
        height: u64,
        hash: String,
    },
    /// The node refused the block, with its reason.
    BlockRejected {
        coin: String,
        height: u64,
        hash: String,
        reason: String,
    },
    /// The block lost a race: another block is at its height in the best chain.
    BlockOrphaned {
        coin: String,
        height: u64,
        hash: String,
    },
    /// The network moved on; miners were sent clean jobs.
    NewBlock {
        coin: String,
        height: u64,
    },
    NodeDown {
        coin: String,
        error: String,
    },
    NodeUp {
        coin: String,
    },
}
