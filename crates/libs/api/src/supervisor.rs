//! The node supervisor's local API (127.0.0.1 only): nodes, start/stop, and an event
//! stream the stratum server and the status page follow.

use serde::{Deserialize, Serialize};
use std::path::PathBuf;

/// `GET`: every coin's [`Node`].
pub const NODES: &str = "/api/v1/nodes";
/// `GET`: one coin's [`Node`] (the route pattern; [`node`] fills it in).
pub const NODE: &str = "/api/v1/nodes/{coin}";
/// `POST`: start a coin's node (202, or 409 while it is busy).
pub const NODE_START: &str = "/api/v1/nodes/{coin}/start";
/// `POST`: stop a coin's node.
pub const NODE_STOP: &str = "/api/v1/nodes/{coin}/stop";
/// `GET`: [`Event`]s as server-sent events.
pub const EVENTS: &str = "/api/v1/events";

/// The path of one coin's node.
pub fn node(coin: &str) -> String {
    format!("/api/v1/nodes/{coin}")
}

/// What a user (or the snapshot agent) may ask of a node.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NodeAction {
    Start,
    Stop,
}

impl NodeAction {
    pub fn as_str(self) -> &'static str {
        match self {
            NodeAction::Start => "start",
            NodeAction::Stop => "stop",
        }
    }

    /// `start` or `stop`; anything else is none.
    pub fn parse(s: &str) -> Option<NodeAction> {
        match s {
            "start" => Some(NodeAction::Start),
            "stop" => Some(NodeAction::Stop),
            _ => None,
        }
    }

    /// The path that asks it of `coin`'s node.
    pub fn path(self, coin: &str) -> String {
        format!("/api/v1/nodes/{coin}/{}", self.as_str())
    }
}

/// One coin's node as the supervisor sees it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Node {
    pub coin: String,
    pub network: String,
    pub flavour: String,
    pub state: NodeState,
    /// Why the node is in this state, in words (crash reason, disk, ...).
    pub detail: String,
    pub health: Option<Health>,
    pub pid: Option<u32>,
    pub restarts: u32,
    pub rpc_url: String,
    pub zmq_hashblock: Option<String>,
    /// The file with the RPC credentials (the secret itself never leaves the box's disk).
    pub credentials_file: PathBuf,
    /// How the supervisor runs nodes: "systemd" or "process".
    pub backend: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum NodeState {
    /// Started; its RPC does not answer yet (or it is warming up).
    Starting,
    Syncing,
    Synced,
    /// Syncing, but the height has not moved for a long time.
    Stalled,
    /// Died; a restart is pending.
    Crashed,
    /// Died too often in a short time; not restarted until a user starts it.
    CrashLoop,
    /// Stopped cleanly because the disk was nearly full.
    StoppedForDisk,
    Stopped,
}

impl NodeState {
    /// The name on the wire (`crash_loop`, ...).
    pub fn as_str(self) -> &'static str {
        match self {
            NodeState::Starting => "starting",
            NodeState::Syncing => "syncing",
            NodeState::Synced => "synced",
            NodeState::Stalled => "stalled",
            NodeState::Crashed => "crashed",
            NodeState::CrashLoop => "crash_loop",
            NodeState::StoppedForDisk => "stopped_for_disk",
            NodeState::Stopped => "stopped",
        }
    }
}

/// A node's health, from the node itself: height, headers, verification progress,
/// initial download, peers, mempool and disk use.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct Health {
    pub chain: String,
    pub blocks: u64,
    pub headers: u64,
    pub verification_progress: f64,
    pub initial_block_download: bool,
    pub peers: u64,
    pub mempool_transactions: u64,
    pub mempool_bytes: u64,
    pub pruned: bool,
    /// Bytes the node's data directory uses on disk.
    pub disk_bytes: u64,
    pub version: String,
}

/// What the supervisor tells the stratum and status services as it happens.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Event {
    NodeStarted { coin: String, pid: Option<u32> },
    NodeSynced { coin: String, height: u64 },
    NodeStalled { coin: String, detail: String },
    NodeCrashed { coin: String, detail: String },
    CrashLoop { coin: String, detail: String },
    StoppedForDisk { coin: String, detail: String },
    NodeStopped { coin: String },
}

impl Event {
    /// The coin whose node this is about.
    pub fn coin(&self) -> &str {
        match self {
            Event::NodeStarted { coin, .. }
            | Event::NodeSynced { coin, .. }
            | Event::NodeStalled { coin, .. }
            | Event::NodeCrashed { coin, .. }
            | Event::CrashLoop { coin, .. }
            | Event::StoppedForDisk { coin, .. }
            | Event::NodeStopped { coin } => coin,
        }
    }
}
