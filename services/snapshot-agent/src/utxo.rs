//! The `utxo` kind on the device: the installed `dumptxoutset` file is handed to Bitcoin
//! Core with `loadtxoutset`. The node checks it against the assumeutxo hash compiled into
//! its own binary, so a publisher cannot feed it a false UTXO set; the node then validates
//! the chain up to the snapshot in the background, which this module reports.

use minebox_node_rpc::{NodeClient, RpcError};
use serde::{Deserialize, Serialize};
use std::path::Path;
use std::time::Duration;

#[derive(Debug, thiserror::Error)]
pub enum UtxoError {
    #[error(
        "the node needs its block headers up to the snapshot block first; wait for header sync and try again ({0})"
    )]
    HeadersNotSynced(String),
    #[error("the node refused the UTXO set: {0} (it checks the set against the hash compiled into Bitcoin Core; this snapshot does not match it)")]
    Refused(String),
    #[error("node RPC: {0}")]
    Rpc(#[from] RpcError),
}

/// What `getchainstates` says about the snapshot chainstate and the background one.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Validation {
    pub headers: u64,
    /// Height of the snapshot chainstate's tip (mining can start from it).
    pub snapshot_tip: Option<u64>,
    /// Height the background validation has reached (None once it finished).
    pub background_height: Option<u64>,
    /// True once the node validated the snapshot from genesis and dropped the extra chainstate.
    pub fully_validated: bool,
}

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
/// long RPC timeout.
pub async fn load(node: &NodeClient, file: &Path) -> Result<serde_json::Value, UtxoError> {
    let slow = node.with_timeout(Duration::from_secs(6 * 3600));
    match slow.call::<serde_json::Value>("loadtxoutset", serde_json::json!([file])).await {
        Ok(v) => Ok(v),
        Err(RpcError::Node { message, .. }) if message.contains("headers") || message.contains("header") => {
            Err(UtxoError::HeadersNotSynced(message))
        }
        Err(RpcError::Node { message, .. }) => Err(UtxoError::Refused(message)),
        Err(e) => Err(e.into()),
    }
}

pub async fn validation(node: &NodeClient) -> Result<Validation, UtxoError> {
    let s: ChainStates = node.call("getchainstates", serde_json::json!([])).await?;
    let snapshot = s.chainstates.iter().find(|c| c.snapshot_blockhash.is_some());
    let background = s.chainstates.iter().find(|c| c.snapshot_blockhash.is_none() && !c.validated);
    Ok(Validation {
        headers: s.headers,
        snapshot_tip: snapshot.map(|c| c.blocks),
        background_height: if snapshot.is_some() { background.map(|c| c.blocks) } else { None },
        fully_validated: snapshot.is_none() || snapshot.map(|c| c.validated).unwrap_or(false),
    })
}
