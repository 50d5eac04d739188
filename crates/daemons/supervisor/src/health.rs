//! A node's health, from the node itself: not "the process exists" but height, headers,
//! verification progress, initial download, peers, mempool and disk use.

use minebox_node_rpc::{NodeClient, RpcError};
use serde::Deserialize;
use std::path::Path;
use std::time::Duration;

/// The node's state and health as the API shows them: one type with its readers.
pub use minebox_api::supervisor::{Health, NodeState};

#[derive(Deserialize)]
struct Mempool {
    #[serde(default)]
    size: u64,
    #[serde(default)]
    bytes: u64,
}

/// Asks the node how it is.
pub async fn probe(node: &NodeClient, data_dir: &Path) -> Result<Health, RpcError> {
    let info = node.get_blockchain_info().await?;
    let peers = node.get_connection_count().await.unwrap_or(0);
    let mempool: Option<Mempool> = node.call("getmempoolinfo", serde_json::json!([])).await.ok();
    let network: Option<serde_json::Value> = node.call("getnetworkinfo", serde_json::json!([])).await.ok();
    let disk_bytes = if info.size_on_disk > 0 { info.size_on_disk } else { dir_size(data_dir) };
    Ok(Health {
        chain: info.chain,
        blocks: info.blocks,
        headers: info.headers,
        verification_progress: info.verification_progress,
        initial_block_download: info.initial_block_download,
        peers,
        mempool_transactions: mempool.as_ref().map(|m| m.size).unwrap_or(0),
        mempool_bytes: mempool.as_ref().map(|m| m.bytes).unwrap_or(0),
        pruned: info.pruned,
        disk_bytes,
        version: network.and_then(|n| n["subversion"].as_str().map(str::to_string)).unwrap_or_default(),
    })
}

fn dir_size(dir: &Path) -> u64 {
    let mut total = 0;
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&d) else { continue };
        for e in entries.flatten() {
            match e.metadata() {
                Ok(m) if m.is_dir() => stack.push(e.path()),
                Ok(m) => total += m.len(),
                Err(_) => {}
            }
        }
    }
    total
}

/// Synced when the node says it is out of initial download and has every block it has a
/// header for; stalled when syncing and the height has not moved for `stall_after`.
pub fn classify(h: &Health, height_unchanged_for: Duration, stall_after: Duration) -> NodeState {
    let caught_up = h.blocks >= h.headers;
    // Bitcoin Core reports initial download until its tip is less than a day old; a regtest
    // chain has no network to sync from and is often older (or at genesis), so there the
    // flag would keep a node that has every block "syncing" for ever, and nothing mines it.
    let downloading = h.initial_block_download && h.chain != "regtest";
    if !downloading && caught_up {
        NodeState::Synced
    } else if height_unchanged_for >= stall_after {
        NodeState::Stalled
    } else {
        NodeState::Syncing
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn h(blocks: u64, headers: u64, ibd: bool) -> Health {
        Health { blocks, headers, initial_block_download: ibd, ..Default::default() }
    }

    #[test]
    fn states_from_what_the_node_reports() {
        let stall = Duration::from_secs(1200);
        assert_eq!(classify(&h(100, 100, false), Duration::ZERO, stall), NodeState::Synced);
        assert_eq!(classify(&h(50, 100, true), Duration::ZERO, stall), NodeState::Syncing);
        assert_eq!(classify(&h(50, 100, true), Duration::from_secs(1300), stall), NodeState::Stalled);
        // Core keeps IBD set until its tip is recent, even with every header's block.
        assert_eq!(classify(&h(100, 100, true), Duration::ZERO, stall), NodeState::Syncing);
        // Regtest at genesis: Core says initial download, but there is nothing to download.
        let genesis = Health { chain: "regtest".into(), initial_block_download: true, ..Default::default() };
        assert_eq!(classify(&genesis, Duration::ZERO, stall), NodeState::Synced);
    }
}
