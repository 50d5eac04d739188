//! The `utxo` kind on the device: the installed `dumptxoutset` file is handed to Bitcoin
//! Core with `loadtxoutset` over the node's RPC, into the node's own data directory (which
//! stays: its headers, its settings, and any chain it has). The node checks the set against
//! the assumeutxo hash compiled into its own binary, so a publisher cannot feed it a false
//! UTXO set; it then validates the chain up to the snapshot in the background, which this
//! module reports.
//!
//! Before Core sees a file the agent checks what it can from the signed manifest: the chain
//! (the node's `getblockchaininfo`), the height (one Bitcoin Core lists for that chain), the
//! base block (in the node's header chain, at that height), and that the node is not past it.

use crate::install::{self, Options};
use crate::progress::{Phase, SharedProgress};
use crate::AgentError;
use minebox_node_rpc::{NodeClient, RpcError};
use minebox_snapshot::Manifest;
use serde::Deserialize;
use std::path::Path;
use std::time::Duration;

#[derive(Debug, thiserror::Error)]
pub enum UtxoError {
    #[error(
        "the node does not have the header of the snapshot block {block} (height {height}) yet: let it sync headers from its peers (minutes), then install again"
    )]
    HeadersNotSynced { block: String, height: u64 },
    #[error("refused before the node saw it: the snapshot is for the {offered} chain, the node runs {node}")]
    WrongChain { offered: String, node: String },
    #[error(
        "refused before the node saw it: Bitcoin Core accepts {chain} UTXO snapshots only at heights {allowed:?}, this one is at {height}; the publisher must publish one at a listed height"
    )]
    HeightNotListed { chain: String, height: u64, allowed: Vec<u64> },
    #[error(
        "refused before the node saw it: the node's block at height {height} is {node_block}, the snapshot's is {snapshot_block} (another chain)"
    )]
    OtherBlock { height: u64, node_block: String, snapshot_block: String },
    #[error(
        "nothing to gain: the node is already at height {tip}, past the snapshot's {height}; it keeps its own chain"
    )]
    AlreadyPast { tip: u64, height: u64 },
    #[error("Bitcoin Core refused the UTXO set: {0}. The node's running chain is untouched")]
    Refused(String),
    #[error("node RPC: {0}")]
    Rpc(#[from] RpcError),
}

/// The heights at which Bitcoin Core lists assumeutxo snapshots, by the chain name
/// `getblockchaininfo` reports: what the Core in `../shared/peers` (31.99) names when
/// refusing another (a test asks it for every chain, so the table follows that Core). Core
/// refuses any other height; a height listed here that an older node does not know is
/// still refused by the node itself, with its reason.
pub fn allowed_heights(chain: &str) -> &'static [u64] {
    match chain {
        "main" => &[840_000, 880_000, 910_000, 935_000],
        "signet" => &[160_000, 290_000],
        "testnet4" => &[90_000, 120_000],
        "regtest" => &[110, 200, 299],
        _ => &[],
    }
}

/// Core's chain name for a MineBox network name (the settings say `main`, `testnet4`, ...).
fn core_chain(network: &str) -> &str {
    match network {
        "mainnet" | "bitcoin" => "main",
        "testnet" | "testnet3" => "test",
        other => other,
    }
}

/// Checks a verified manifest against the running node before anything is downloaded.
pub async fn precheck(node: &NodeClient, m: &Manifest) -> Result<(), UtxoError> {
    let info: serde_json::Value = node.call("getblockchaininfo", serde_json::json!([])).await?;
    let chain = info["chain"].as_str().unwrap_or_default().to_string();
    if core_chain(m.network()) != chain {
        return Err(UtxoError::WrongChain { offered: m.network().to_string(), node: chain });
    }
    let allowed = allowed_heights(&chain);
    if !allowed.contains(&m.height()) {
        return Err(UtxoError::HeightNotListed { chain, height: m.height(), allowed: allowed.to_vec() });
    }
    let tip = info["blocks"].as_u64().unwrap_or(0);
    if tip >= m.height() {
        return Err(UtxoError::AlreadyPast { tip, height: m.height() });
    }
    match node.call::<serde_json::Value>("getblockheader", serde_json::json!([m.block_hash()])).await {
        Ok(h) if h["height"].as_u64() == Some(m.height()) => Ok(()),
        Ok(h) => Err(UtxoError::OtherBlock {
            height: m.height(),
            node_block: format!("at height {}", h["height"]),
            snapshot_block: m.block_hash().to_string(),
        }),
        // -5: "Block not found": not in the header chain (yet, or another chain's).
        Err(RpcError::Node { code: -5, .. }) => {
            Err(UtxoError::HeadersNotSynced { block: m.block_hash().to_string(), height: m.height() })
        }
        Err(e) => Err(e.into()),
    }
}

pub use minebox_api::snapshot::Validation;

#[derive(Deserialize)]
struct ChainStates {
    headers: u64,
    chainstates: Vec<ChainState>,
}

#[derive(Deserialize)]
struct ChainState {
    blocks: u64,
    #[serde(default)]
    snapshot_blockhash: Option<String>,
    #[serde(default)]
    validated: bool,
}

/// Hands the file to the node. This can take a long while (minutes on a Pi), hence the
/// long RPC timeout. The node must be able to read the file (the agent's files are
/// group-readable by the node's group).
pub async fn load(node: &NodeClient, file: &Path) -> Result<serde_json::Value, UtxoError> {
    let slow = node.with_timeout(Duration::from_secs(6 * 3600));
    match slow.call::<serde_json::Value>("loadtxoutset", serde_json::json!([file])).await {
        Ok(v) => Ok(v),
        Err(RpcError::Node { message, .. }) => Err(UtxoError::Refused(message)),
        Err(e) => Err(e.into()),
    }
}

pub async fn validation(node: &NodeClient) -> Result<Validation, UtxoError> {
    let s: ChainStates = node.call("getchainstates", serde_json::json!([])).await?;
    let snapshot = s.chainstates.iter().find(|c| c.snapshot_blockhash.is_some() && !c.validated);
    // The background chainstate is the one not from a snapshot; Core reports it
    // `validated: true` (every block in it was validated), so that flag does not find it.
    let background = s.chainstates.iter().find(|c| c.snapshot_blockhash.is_none());
    let base = s.chainstates.iter().find_map(|c| c.snapshot_blockhash.clone());
    let snapshot_height = match base {
        Some(hash) => node
            .call::<serde_json::Value>("getblockheader", serde_json::json!([hash]))
            .await
            .ok()
            .and_then(|h| h["height"].as_u64()),
        None => None,
    };
    Ok(Validation {
        snapshot_height,
        headers: s.headers,
        snapshot_tip: s.chainstates.iter().find(|c| c.snapshot_blockhash.is_some()).map(|c| c.blocks),
        background_height: if snapshot.is_some() { background.map(|c| c.blocks) } else { None },
        fully_validated: snapshot.is_none(),
    })
}

/// Why a `utxo` install stopped.
#[derive(Debug, thiserror::Error)]
pub enum UtxoInstallError {
    #[error("the node's RPC is not configured (rpc_host, rpc_port, rpc_cookie): a utxo snapshot is loaded through it")]
    NoRpc,
    #[error("the publisher published a different snapshot while this one downloaded; install again")]
    Republished,
    #[error("{0}")]
    Utxo(#[from] UtxoError),
    #[error("{0}")]
    Agent(#[from] AgentError),
}

/// A downloaded utxo file and its staging state, removed.
fn discard(dir: &Path) {
    let _ = std::fs::remove_dir_all(dir);
    let _ = std::fs::remove_dir_all(install::state_dir(dir));
}

/// Installs the verified manifest `m`'s utxo snapshot for the running node whose data
/// directory is `opts.dest`: checks it against the node, downloads the file beside the
/// datadir ([`install::utxo_dir`]), hands it to the node with `loadtxoutset`, records it and
/// removes the file. The node's data directory and running chain are never touched; a file
/// Core refuses is removed. Returns the installed version.
pub async fn install(
    mut opts: Options,
    node: &NodeClient,
    m: &Manifest,
    progress: &SharedProgress,
) -> Result<u64, UtxoInstallError> {
    precheck(node, m).await?;
    let datadir = opts.dest.clone();
    let dir = install::utxo_dir(&datadir);
    // The node's user (another than the agent's) opens the file through the group: every
    // directory on the way must let the group in. The service's UMask=0077 would make the
    // state directory 0700 and Core could not open the file ("Couldn't open file").
    let state = install::state_dir(&datadir);
    std::fs::create_dir_all(&state)
        .and_then(|()| std::fs::set_permissions(&state, std::os::unix::fs::PermissionsExt::from_mode(0o770)))
        .map_err(|e| AgentError::Io { path: state.display().to_string(), message: e.to_string() })?;
    opts.dest = dir.clone();
    // Straight from the swap to `loading`: the page never shows `done` before Core has the set.
    install::install_then(opts, progress.clone(), Phase::Loading).await?;
    let got = install::installed(&dir).ok_or(UtxoInstallError::Republished)?;
    // The publisher may have published again between the check and the download.
    if got.height != m.height() || got.network != m.network() || got.kind != m.kind() || got.coin != m.coin() {
        discard(&dir);
        return Err(UtxoInstallError::Republished);
    }
    progress.set_phase(Phase::Loading);
    let started = std::time::Instant::now();
    match load(node, &dir.join("utxo.dat")).await {
        Ok(loaded) => {
            progress.set_load_secs(started.elapsed().as_secs_f64());
            tracing::info!(%loaded, secs = started.elapsed().as_secs_f64(), "loadtxoutset done");
        }
        Err(e @ UtxoError::Refused(_)) => {
            // Core will refuse these bytes again: free the disk.
            discard(&dir);
            return Err(e.into());
        }
        Err(e) => return Err(e.into()),
    }
    install::record(&datadir, &got)?;
    // Core now has the coins in its own chainstate; the file is no longer needed.
    discard(&dir);
    progress.set_validation(validation(node).await?);
    progress.set_phase(Phase::Done);
    Ok(got.version)
}
