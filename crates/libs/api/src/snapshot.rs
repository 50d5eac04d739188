//! The snapshot agent's local API (127.0.0.1 only), read by the status page.

/// `GET`: what is published per coin, how far it is trusted, and how an install is going.
pub const LIST: &str = "/api/v1/snapshots";
/// `POST`: install a coin's published snapshot (the route pattern; [`install`] fills it in).
pub const INSTALL: &str = "/api/v1/snapshots/{coin}/install";
/// `GET`: the one-shot agent's progress (`minebox-snapshot-agent install --api`).
pub const PROGRESS: &str = "/api/v1/snapshot/progress";

/// The path that installs `coin`'s snapshot.
pub fn install(coin: &str) -> String {
    format!("/api/v1/snapshots/{coin}/install")
}

use serde::{Deserialize, Serialize};

/// `GET` [`LIST`]: every coin the box mines, and which one is being installed.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct List {
    pub coins: Vec<CoinSnapshots>,
    /// The coin whose snapshot is being installed (one at a time).
    pub busy: Option<String>,
}

/// One coin: what is published, what is installed, and how an install is going.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct CoinSnapshots {
    pub coin: String,
    pub network: String,
    /// The published snapshot, its signature checked; null when none could be read.
    pub available: Option<Offer>,
    /// Why nothing is available, in words.
    pub error: Option<String>,
    /// False for an external node: listed, never installed by the box.
    pub installable: bool,
    pub installed: Option<Installed>,
    pub progress: Progress,
}

/// What a snapshot contains, and so how far it is trusted (the manifest's `kind`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Kind {
    /// Bitcoin Core's assumeutxo file, checked by the node itself.
    Utxo,
    /// A node's data directory, trusted through the publisher's signature.
    Datadir,
}

/// A published snapshot, as its verified manifest describes it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Offer {
    pub height: u64,
    /// Bytes of all files once installed.
    pub bytes: u64,
    pub kind: Kind,
    /// How far the user trusts this kind of snapshot, in words.
    pub trust: String,
    /// Unix seconds.
    pub created: i64,
    pub version: u64,
}

/// The snapshot installed in the node's data directory.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Installed {
    pub version: u64,
    pub height: u64,
    pub kind: Kind,
    pub trust: String,
}

/// `POST` [`INSTALL`]'s answer (202): the coin whose install started.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Started {
    pub started: String,
}

/// Where an install is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum Phase {
    #[default]
    Idle,
    Verifying,
    Reusing,
    Downloading,
    Syncing,
    Swapping,
    /// A `utxo` snapshot: Bitcoin Core is loading the set (`loadtxoutset`); the node keeps
    /// running on its own chain meanwhile.
    Loading,
    Done,
    Failed,
}

/// An install's progress: phase, bytes, chunks, rate and ETA ([`PROGRESS`] answers one).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct Progress {
    pub phase: Phase,
    pub bytes_total: u64,
    pub bytes_done: u64,
    pub bytes_reused: u64,
    /// Bytes received from the network so far (compressed), counted as they arrive.
    pub bytes_received: u64,
    pub chunks_total: u64,
    pub chunks_downloaded: u64,
    pub rate_bytes_per_sec: f64,
    pub eta_secs: Option<f64>,
    pub error: Option<String>,
    /// A `utxo` snapshot once loaded: the snapshot chainstate's tip and how far the node's
    /// background validation of the chain below it has come.
    pub validation: Option<Validation>,
    /// How long Bitcoin Core took to load the UTXO set (`loadtxoutset`), seconds.
    pub load_secs: Option<f64>,
}

/// What `getchainstates` says about the snapshot chainstate and the background one.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct Validation {
    pub headers: u64,
    /// Height of the snapshot chainstate's tip (mining can start from it).
    pub snapshot_tip: Option<u64>,
    /// Height the background validation has reached (None once it finished).
    pub background_height: Option<u64>,
    /// The snapshot's height: where the background validation ends.
    #[serde(default)]
    pub snapshot_height: Option<u64>,
    /// True once the node validated the snapshot from genesis and dropped the extra chainstate.
    pub fully_validated: bool,
}
