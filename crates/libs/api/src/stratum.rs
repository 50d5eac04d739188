//! The stratum server's local API (127.0.0.1 only), read by the status page.

use serde::{Deserialize, Serialize};
use std::collections::HashMap;

/// `GET`: one [`CoinStatus`] per coin served.
pub const STATUS: &str = "/api/v1/stratum";
/// `GET ?coin=&limit=&offset=`: workers, most recently seen first; the total in `X-Total-Count`.
pub const WORKERS: &str = "/api/v1/stratum/workers";
/// `GET ?coin=`: the connected miners, as [`Miner`]s.
pub const MINERS: &str = "/api/v1/stratum/miners";
/// `GET ?coin=&limit=`: blocks found, newest first.
pub const BLOCKS: &str = "/api/v1/stratum/blocks";
/// `GET ?coin=&worker=&since=`: hashrate history.
pub const HASHRATE: &str = "/api/v1/stratum/hashrate";
/// `GET ?coin=&worker=&since=&limit=`: the share history as [`ShareBucket`]s, oldest first.
pub const SHARES: &str = "/api/v1/stratum/shares";
/// `GET`: [`Event`]s as server-sent events.
pub const EVENTS: &str = "/api/v1/stratum/events";
/// `GET`: [`Pools`]: per coin with a solo pool set (`coins.<id>.upstream`), where its miners
/// get work now and the state of its connections to that pool.
pub const POOLS: &str = "/api/v1/stratum/upstream";

/// Hashrate in hashes per second, averaged over a minute, an hour and a day.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct Hashrates {
    #[serde(rename = "1m")]
    pub m1: f64,
    #[serde(rename = "1h")]
    pub h1: f64,
    #[serde(rename = "24h")]
    pub d1: f64,
}

impl std::ops::AddAssign for Hashrates {
    fn add_assign(&mut self, o: Hashrates) {
        self.m1 += o.m1;
        self.h1 += o.h1;
        self.d1 += o.d1;
    }
}

/// One coin's server: `GET /api/v1/stratum` answers a list of these.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct CoinStatus {
    pub coin: String,
    pub network: String,
    pub listen: String,
    /// "miner" or "owner" (see the stratum server's `payout` module), and the owner's
    /// address; both null when the server runs without one (flags mode).
    pub payout_policy: Option<String>,
    pub payout_address: Option<String>,
    pub miners: usize,
    pub workers: usize,
    pub hashrate: Hashrates,
    pub best_share: f64,
    /// Blocks found on the node's own work (a block on a solo pool's work is the pool's,
    /// counted in [`PoolLink::blocks`]).
    pub blocks_found: u64,
    /// Shares accepted on the node's own work since the stratum server started (those on
    /// a solo pool's work: [`PoolLink`]).
    pub own_node_shares: u64,
    pub node: NodeStatus,
    pub job: Option<Job>,
    /// Shares refused before the miner authorized, by reason.
    #[serde(deserialize_with = "crate::or_default")]
    pub rejected_before_authorize: HashMap<String, u64>,
}

/// What the status page shows about the node behind this coin's work.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct NodeStatus {
    pub reachable: bool,
    pub last_error: Option<String>,
    pub height: Option<u64>,
    pub best_hash: Option<String>,
    pub template_at: Option<i64>,
    pub template_transactions: usize,
    pub template_fees_sats: u64,
    pub coinbase_value_sats: u64,
    pub network_difficulty: f64,
    /// How new blocks are noticed: "zmq" or "poll".
    pub block_notify: String,
}

/// The job miners are working on.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct Job {
    pub height: u64,
    pub prev_hash: String,
    pub transactions: usize,
    pub coinbase_value_sats: u64,
    pub network_difficulty: f64,
    pub age_secs: f64,
}

/// A connected miner: `GET /api/v1/stratum/miners` answers a list of these.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct Miner {
    pub coin: String,
    #[serde(flatten)]
    pub miner: LiveMiner,
}

/// A connected miner as the stratum server keeps it.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct LiveMiner {
    pub peer: String,
    pub connected_at: i64,
    pub user_agent: String,
    pub workers: Vec<String>,
    pub difficulty: f64,
    pub accepted: u64,
    pub rejected: u64,
    /// Best share of this connection (the "session best" on the status page).
    pub best_share: f64,
}

/// Things worth telling the status page (and, through it, the owner) as they happen.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
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

/// A worker (`address.name`) of one coin: `GET` [`WORKERS`] answers a list of these.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct Worker {
    pub coin: String,
    pub worker: String,
    pub accepted: u64,
    pub accepted_difficulty: f64,
    /// Shares refused, by reason.
    pub rejected: HashMap<String, u64>,
    pub best_share: f64,
    pub best_share_at: i64,
    pub last_share_at: i64,
    /// Unix time the worker last authorized or sent a share.
    pub last_seen: i64,
    pub user_agent: String,
    pub difficulty: f64,
    pub connections: u32,
    pub blocks: u64,
    /// The address this worker's blocks pay (empty until it authorizes), and whose it is.
    pub payout_address: String,
    pub paid_to: Option<PaidTo>,
    pub hashrate: Hashrates,
}

/// One worker's shares over an hour or a day, on one kind of port: what `GET` [`SHARES`]
/// answers a list of. Hours for the last year, days before (the retention policy: the
/// server keeps each share 90 days, hourly totals a year, daily totals two years).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct ShareBucket {
    /// Unix time the hour or UTC day starts.
    pub start: i64,
    /// 3600 or 86400.
    pub span_secs: i64,
    pub worker: String,
    /// `solo`, or `pool` (the PPLNS port).
    pub port: String,
    pub accepted: u64,
    /// The sum of the accepted shares' difficulty: their work.
    pub accepted_difficulty: f64,
    /// Refused shares by reason (`stale`, `duplicate`, `low_difficulty`, `other`, ...).
    pub rejected: std::collections::BTreeMap<String, u64>,
}

/// Whose address a worker's blocks pay.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum PaidTo {
    /// The address the miner authorized with.
    Miner,
    /// The box's `payout_address`.
    Owner,
}

/// A block found: `GET` [`BLOCKS`] answers a list of these, newest first.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct Block {
    pub coin: String,
    pub network: String,
    pub height: u64,
    pub hash: String,
    pub worker: String,
    pub reward_sats: u64,
    pub share_difficulty: f64,
    pub network_difficulty: f64,
    /// Unix seconds.
    pub found_at: i64,
    pub status: BlockStatus,
    /// The node's reason when it refused the block.
    pub detail: String,
    pub confirmations: i64,
    /// `[coins.<id>.pool] config_version` of the pool-port job the block was found on (a
    /// split job or, while the PPLNS window was empty, one paying the finder's own user);
    /// null for a solo-port block and for blocks recorded before the version was kept (a
    /// reader without the field reads on as before).
    pub pool_config_version: Option<u64>,
}

/// Where a found block stands.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum BlockStatus {
    /// Recorded, not yet answered by the node (resubmitted after a crash).
    #[default]
    Submitting,
    /// The node took it; confirmations are tracked.
    Accepted,
    /// The node refused it (the reason is kept).
    Rejected,
    /// It was accepted but another block won at its height.
    Orphaned,
}

/// `GET` [`HASHRATE`] answers a list of these: unix seconds and hashes per second.
pub type HashratePoint = (i64, f64);

/// Where a coin's miners get work now.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum MiningFrom {
    /// No work: the node has not answered and the pool has sent no job.
    #[default]
    None,
    /// The coin's own node's templates.
    Own,
    /// The solo pool's jobs (the node is not ready).
    Upstream,
}

/// One connection to a coin's solo pool: its state, why it last ended, and the shares the
/// box sent through it.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct PoolLink {
    /// The pool as the settings name it (`stratum+tcp://host:port`).
    pub url: String,
    pub mining_from: MiningFrom,
    pub connected: bool,
    pub authorized: bool,
    /// Why the last connection ended or was refused, as the user should read it.
    pub last_error: Option<String>,
    /// The pool's share difficulty.
    pub difficulty: Option<f64>,
    pub extranonce2_size: Option<usize>,
    /// Connections opened since the service started.
    pub connections: u64,
    pub jobs: u64,
    /// Shares that met the pool's difficulty and were sent to it.
    pub forwarded: u64,
    /// The pool's answers to them.
    pub accepted: u64,
    pub rejected: u64,
    /// Shares sent that met the network target: blocks, submitted by the pool.
    pub blocks: u64,
    /// Shares for the pool that were not sent: the queue full, the connection gone, or
    /// version bits outside the pool's mask (the pool would reject them).
    pub dropped: u64,
}

/// A miner address's own connection to the pool (a miner mining to its own address).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct AddressPoolLink {
    pub address: String,
    /// Miner connections using it now (0 during the grace period after the last left).
    pub miners: usize,
    #[serde(flatten)]
    pub link: PoolLink,
}

/// One coin's solo pool: the owner's connection (its fields at the top level), each miner
/// address's own, and the miners kept off the pool by the connection limit.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct CoinPool {
    #[serde(flatten)]
    pub owner: PoolLink,
    pub addresses: Vec<AddressPoolLink>,
    pub max_connections: usize,
    /// Miner connections waiting for the node because every pool connection is taken.
    pub waiting_for_node: usize,
    pub waiting_reason: Option<String>,
}

/// `GET /api/v1/stratum/upstream`: coin id to its pool; coins without one are absent.
pub type Pools = std::collections::BTreeMap<String, CoinPool>;

/// `GET ?coin=`: [`PoolStatus`] per coin with pool mode on (`[coins.<id>.pool]`): the port,
/// the configuration version, the window and what each payee's share of it is now.
pub const POOL: &str = "/api/v1/stratum/pool";
/// `GET ?coin=&user=&limit=`: [`PoolPayout`]s, newest block first; `user` (an account name)
/// narrows to that user's rows, which is what the page asks for a non-admin.
pub const POOL_PAYOUTS: &str = "/api/v1/stratum/pool/payouts";

/// One coin's pool mode as it stands.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct PoolStatus {
    pub coin: String,
    pub network: String,
    /// `host:port` of the PPLNS listener.
    pub listen: String,
    /// `[coins.<id>.pool] config_version` the jobs now are built under.
    pub config_version: u64,
    pub fee_bps: u16,
    pub window_factor: f64,
    pub max_outputs: u32,
    /// Work the window holds at most (difficulty-1 units: window_factor × network difficulty),
    /// and what it holds now.
    pub window_size: f64,
    pub window_work: f64,
    /// Connected miners on the pool port.
    pub miners: u64,
    /// Per payee in the window: work, fraction of the window, and carried balance.
    pub payees: Vec<PoolPayee>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct PoolPayee {
    pub user: String,
    pub address: String,
    /// Work of this user's shares in the window (difficulty-1 units).
    pub work: f64,
    /// `work` / the window's work, 0..=1.
    pub fraction: f64,
    /// Sats owed to (positive) or overpaid to (negative) this user, carried into the next
    /// block's split (outputs under the dust limit, or beyond `max_outputs`).
    pub carry_sats: i64,
}

/// One user's part of one block found on a pool port.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct PoolPayout {
    pub coin: String,
    pub block_hash: String,
    pub height: u64,
    /// Unix seconds the block was found.
    pub found_at: i64,
    pub user: String,
    pub address: String,
    /// Paid in this block's coinbase (0 when carried).
    pub amount_sats: u64,
    /// Carried out of this block for this user (owed if positive).
    pub carry_sats: i64,
    /// Shares of this user counted in the window, and their work.
    pub shares: u64,
    pub work: f64,
    /// The window the split was computed over: its work and its share count.
    pub window_work: f64,
    pub window_shares: u64,
    /// The pool configuration version the block's job was built under.
    pub config_version: u64,
    /// "pending" (fewer than 100 confirmations), "confirmed" or "orphaned".
    pub state: String,
    pub confirmations: u64,
}
