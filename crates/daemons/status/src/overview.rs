//! The overview a miner opens the page for: per coin, the node's state and sync, how to
//! point a Bitaxe here, miners, hashrate, best shares, blocks found and the odds; plus
//! the box's own health. Assembled from the services' local APIs on each request (and
//! pushed to open pages every few seconds), never stored.

use crate::mining_source::{mining_source, MiningSource};
use crate::odds::{odds, Odds};
use crate::sync::SyncTracker;
use crate::system::System;
use crate::upstream::{Service, Upstreams};
use minebox_api::stratum::{self, Hashrates};
use minebox_api::supervisor;
use minebox_settings::Settings;
use serde::Serialize;

#[derive(Debug, Clone, Serialize)]
pub struct Overview {
    pub at: f64,
    pub coins: Vec<CoinOverview>,
    pub system: System,
    /// Services that did not answer, in words.
    pub problems: Vec<String>,
}

#[derive(Debug, Clone, Serialize)]
pub struct CoinOverview {
    pub coin: String,
    pub name: String,
    pub network: String,
    pub node: NodeSummary,
    pub stratum: StratumSummary,
    pub miners: u64,
    pub workers: u64,
    pub hashrate: Hashrates,
    pub best_share_all_time: f64,
    pub best_share_session: f64,
    pub blocks_found: u64,
    pub odds: Odds,
    /// Where the coin mines now (own node or solo pool) and its shares and blocks by source.
    pub mining: MiningSource,
}

#[derive(Debug, Clone, Serialize, Default)]
pub struct NodeSummary {
    /// The supervisor's state (starting, syncing, synced, stalled, stopped, crashed, ...),
    /// or `unknown` when the supervisor does not answer.
    pub state: String,
    pub detail: String,
    pub blocks: Option<u64>,
    pub headers: Option<u64>,
    /// 0..1
    pub progress: Option<f64>,
    pub eta_secs: Option<f64>,
    pub peers: Option<u64>,
    pub version: Option<String>,
}

#[derive(Debug, Clone, Serialize, Default)]
pub struct StratumSummary {
    /// The port to give the miner; the page adds this box's address.
    pub port: u16,
    /// The Bitaxe "user" field: the payout address, a dot, any worker name.
    pub user: String,
    pub listening: bool,
}

pub async fn build(
    up: &Upstreams,
    settings: &Settings,
    registry: &minebox_coin::Registry,
    tracker: &SyncTracker,
    system: System,
) -> Overview {
    let (stratum, nodes, miners, pools) = tokio::join!(
        up.get_as::<Vec<stratum::CoinStatus>>(Service::Stratum, stratum::STATUS),
        up.get_as::<Vec<supervisor::Node>>(Service::Supervisor, supervisor::NODES),
        up.get_as::<Vec<stratum::Miner>>(Service::Stratum, stratum::MINERS),
        up.get_as::<stratum::Pools>(Service::Stratum, stratum::POOLS),
    );
    let mut problems = Vec::new();
    let stratum = stratum.map_err(|e| problems.push(e.to_string())).unwrap_or_default();
    let nodes = nodes.map_err(|e| problems.push(e.to_string())).unwrap_or_default();
    let miners = miners.unwrap_or_default();
    // A stratum server not answering is already a problem above.
    let pools = pools.unwrap_or_default();
    let at = minebox_time();
    let coins = settings
        .coins
        .values()
        .filter(|c| c.enabled)
        .map(|c| {
            let s = stratum.iter().find(|s| s.coin == c.id);
            let n = nodes.iter().find(|n| n.coin == c.id);
            let health = n.and_then(|n| n.health.as_ref());
            let progress = health.map(|h| h.verification_progress);
            let node = NodeSummary {
                state: n.map_or("unknown", |n| n.state.as_str()).to_string(),
                detail: n.map(|n| n.detail.clone()).unwrap_or_default(),
                blocks: health.map(|h| h.blocks),
                headers: health.map(|h| h.headers),
                progress,
                eta_secs: progress.and_then(|p| tracker.observe(&c.id, at, p)),
                peers: health.map(|h| h.peers),
                version: health.map(|h| h.version.clone()),
            };
            let mining = mining_source(&crate::mining_source::Inputs {
                setting: c.upstream.as_ref(),
                stratum: s,
                pool: pools.get(&c.id),
                sync_eta_secs: node.eta_secs,
            });
            let hashrate = s.map(|s| s.hashrate).unwrap_or_default();
            let session_best = miners.iter().filter(|m| m.coin == c.id).map(|m| m.miner.best_share).fold(0.0, f64::max);
            let difficulty = s.map_or(0.0, |s| s.node.network_difficulty);
            // The hour's average when there is one: a minute's figure swings too much for odds.
            let rate = if hashrate.h1 > 0.0 { hashrate.h1 } else { hashrate.m1 };
            CoinOverview {
                coin: c.id.clone(),
                name: registry.get(&c.id).map(|x| x.name.clone()).unwrap_or_else(|| c.id.clone()),
                network: c.network.name.clone(),
                node,
                stratum: StratumSummary {
                    port: c.stratum_port,
                    user: format!("{}.bitaxe1", c.payout_address),
                    listening: s.is_some(),
                },
                miners: s.map_or(0, |s| s.miners as u64),
                workers: s.map_or(0, |s| s.workers as u64),
                hashrate,
                best_share_all_time: s.map_or(0.0, |s| s.best_share),
                best_share_session: session_best,
                blocks_found: s.map_or(0, |s| s.blocks_found),
                odds: odds(difficulty, rate),
                mining,
            }
        })
        .collect();
    Overview { at, coins, system, problems }
}

pub use minebox_platform::clock::unix_secs_f64 as minebox_time;
