//! One coin's server at run time: its shared context, its work feed, and who is connected.

use crate::block::FoundShare;
use crate::connection::Limits;
use crate::job::Template;
use crate::quiet_log::QuietLog;
use crate::session::{PoolContext, Session};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use tokio::sync::{mpsc, watch};

pub struct Pool {
    pub ctx: PoolContext,
    pub network: String,
    /// The current template; `None` until the node has answered once.
    pub work: watch::Receiver<Option<Arc<Template>>>,
    /// To the block recorder; a connection waits for the recorded acknowledgement before
    /// telling the miner `true` (see [`crate::block`]).
    pub found: mpsc::Sender<FoundShare>,
    pub limits: Limits,
    pub live: LiveMiners,
    /// Client-caused log lines (refusals, hostile disconnects), kept to a trickle.
    pub quiet_log: QuietLog,
    /// The upstream pool's connections, when the settings name one: shares of its work go there.
    pub upstream: Option<Arc<crate::upstream::Upstreams>>,
    /// Shares accepted on the node's own work since the service started (those on the
    /// pool's work are counted by its connections).
    pub own_node_shares: std::sync::atomic::AtomicU64,
}

impl Pool {
    /// How often the refusal summary is written.
    pub fn log_interval(&self) -> std::time::Duration {
        crate::quiet_log::INTERVAL
    }
}

/// A connected miner as the status page shows it (one type with the API's readers).
pub use minebox_api::stratum::LiveMiner;

#[derive(Default)]
pub struct LiveMiners {
    miners: Mutex<HashMap<u32, LiveMiner>>,
}

impl LiveMiners {
    pub fn insert(&self, id: u32, m: LiveMiner) {
        self.miners.lock().expect("live lock").insert(id, m);
    }

    pub fn update(&self, id: u32, s: &Session) {
        if let Some(m) = self.miners.lock().expect("live lock").get_mut(&id) {
            if m.workers.len() != s.worker_names().count() {
                m.workers = s.worker_names().map(str::to_string).collect();
            }
            if m.user_agent.is_empty() && !s.user_agent().is_empty() {
                m.user_agent = s.user_agent().to_string();
            }
            m.difficulty = s.difficulty();
            m.accepted = s.accepted;
            m.rejected = s.rejected;
            m.best_share = s.best_share;
        }
    }

    pub fn remove(&self, id: u32) {
        self.miners.lock().expect("live lock").remove(&id);
    }

    pub fn len(&self) -> usize {
        self.miners.lock().expect("live lock").len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    pub fn list(&self) -> Vec<LiveMiner> {
        self.miners.lock().expect("live lock").values().cloned().collect()
    }
}
