//! The overview a miner opens the page for: per coin, the node's state and sync, how to
//! point a Bitaxe here, miners, hashrate, best shares, blocks found and the odds; plus
//! the box's own health. Assembled from the services' local APIs on each request (and
//! pushed to open pages every few seconds), never stored.

use crate::odds::{odds, Odds};
use crate::sync::SyncTracker;
use crate::system::System;
use crate::upstream::{Service, Upstreams};
use minebox_settings::Settings;
use serde::Serialize;
use serde_json::Value;

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
}

#[derive(Debug, Clone, Serialize, Default)]
pub struct Hashrates {
    #[serde(rename = "1m")]
    pub m1: f64,
    #[serde(rename = "1h")]
    pub h1: f64,
    #[serde(rename = "24h")]
    pub d1: f64,
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

fn f(v: &Value, path: &[&str]) -> Option<f64> {
    path.iter().try_fold(v, |v, k| v.get(k)).and_then(Value::as_f64)
}

fn u(v: &Value, path: &[&str]) -> Option<u64> {
    path.iter().try_fold(v, |v, k| v.get(k)).and_then(Value::as_u64)
}

pub async fn build(
    up: &Upstreams,
    settings: &Settings,
    registry: &minebox_coin::Registry,
    tracker: &SyncTracker,
    system: System,
) -> Overview {
    let (stratum, nodes, miners) = tokio::join!(
        up.get(Service::Stratum, "/api/v1/stratum"),
        up.get(Service::Supervisor, "/api/v1/nodes"),
        up.get(Service::Stratum, "/api/v1/stratum/miners"),
    );
    let mut problems = Vec::new();
    let stratum = stratum.map_err(|e| problems.push(e.to_string())).unwrap_or(Value::Null);
    let nodes = nodes.map_err(|e| problems.push(e.to_string())).unwrap_or(Value::Null);
    let miners = miners.unwrap_or(Value::Null);
    let at = minebox_time();
    let empty = Vec::new();
    let coins = settings
        .coins
        .values()
        .filter(|c| c.enabled)
        .map(|c| {
            let s = stratum
                .as_array()
                .unwrap_or(&empty)
                .iter()
                .find(|s| s["coin"] == c.id.as_str())
                .cloned()
                .unwrap_or(Value::Null);
            let n = nodes
                .as_array()
                .unwrap_or(&empty)
                .iter()
                .find(|n| n["coin"] == c.id.as_str())
                .cloned()
                .unwrap_or(Value::Null);
            let progress = f(&n, &["health", "verification_progress"]);
            let node = NodeSummary {
                state: n["state"].as_str().unwrap_or("unknown").to_string(),
                detail: n["detail"].as_str().unwrap_or("").to_string(),
                blocks: u(&n, &["health", "blocks"]),
                headers: u(&n, &["health", "headers"]),
                progress,
                eta_secs: progress.and_then(|p| tracker.observe(&c.id, at, p)),
                peers: u(&n, &["health", "peers"]),
                version: n["health"]["version"].as_str().map(str::to_string),
            };
            let hashrate = Hashrates {
                m1: f(&s, &["hashrate", "1m"]).unwrap_or(0.0),
                h1: f(&s, &["hashrate", "1h"]).unwrap_or(0.0),
                d1: f(&s, &["hashrate", "24h"]).unwrap_or(0.0),
            };
            let session_best = miners
                .as_array()
                .unwrap_or(&empty)
                .iter()
                .filter(|m| m["coin"] == c.id.as_str())
                .filter_map(|m| m["best_share"].as_f64())
                .fold(0.0, f64::max);
            let difficulty = f(&s, &["node", "network_difficulty"]).unwrap_or(0.0);
            // The hour's average when there is one: a minute's figure swings too much for odds.
            let rate = if hashrate.h1 > 0.0 { hashrate.h1 } else { hashrate.m1 };
            CoinOverview {
                coin: c.id.clone(),
                name: registry.get(&c.id).map(|x| x.name.clone()).unwrap_or_else(|| c.id.clone()),
                network: c.network.clone(),
                node,
                stratum: StratumSummary {
                    port: c.stratum_port,
                    user: format!("{}.bitaxe1", c.payout_address),
                    listening: !s.is_null(),
                },
                miners: u(&s, &["miners"]).unwrap_or(0),
                workers: u(&s, &["workers"]).unwrap_or(0),
                hashrate,
                best_share_all_time: f(&s, &["best_share"]).unwrap_or(0.0),
                best_share_session: session_best,
                blocks_found: u(&s, &["blocks_found"]).unwrap_or(0),
                odds: odds(difficulty, rate),
            }
        })
        .collect();
    Overview { at, coins, system, problems }
}

pub use minebox_platform::clock::unix_secs_f64 as minebox_time;
