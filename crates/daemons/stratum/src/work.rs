//! The work feed: block templates from the coin's node, pushed to every miner.
//!
//! A new block must reach miners at once (every second of delay is stale hashing), so the
//! feed listens to the node's ZMQ `hashblock` publisher where the node has one, and asks
//! `getbestblockhash` on a short interval otherwise (bcoin, or a node without ZMQ). Between
//! blocks the template is refreshed every `refresh` so miners work on the latest fees;
//! those refreshes are sent without clean_jobs, so miners finish what they were hashing.
//!
//! When the node goes away, miners keep their connections and their last job; the feed
//! retries with backoff and publishes fresh work the moment the node answers again.

use crate::job::{Template, TemplateParts};
use crate::stats::unix_now;
use bitcoin::hashes::Hash;
use bitcoin::{Amount, BlockHash};
use minebox_node_rpc::{BlockTemplate, NodeClient, RpcError};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::sync::{broadcast, mpsc, watch};
use tokio_util::sync::CancellationToken;

use crate::event::Event;

#[derive(Debug, Clone)]
pub struct WorkConfig {
    pub coin: String,
    pub segwit: bool,
    /// Fee refresh without a new block.
    pub refresh: Duration,
    /// How often to ask for the best block when no ZMQ notification can arrive.
    pub poll: Duration,
    /// The node's `zmqpubhashblock` endpoint, e.g. tcp://127.0.0.1:28332.
    pub zmq_hashblock: Option<String>,
    /// The version bits miners may roll (BIP320's `0x1fffe000`). The node's version has
    /// them cleared before it goes out in mining.notify; see [`job_version`].
    pub version_mask: u32,
}

/// The block version a job carries: the node's, with the bits miners roll cleared.
///
/// Miners report rolled versions two ways. BIP310 says the server rebuilds the version as
/// `(job & !mask) | version_bits`; ESP-Miner instead ORs its rolled bits into the job's
/// version and submits `rolled ^ job`. The two agree only when the job has no bit set
/// inside the mask. Bitcoin Core sets one there: on regtest, once the `testdummy`
/// deployment has started (block 144), getblocktemplate says `0x30000000` (bit 28, which
/// it signals even to clients that do not know the rule). Sent as it is, every Bitaxe share
/// would hash to a different header on the server. BIP320 gave bits 13-28 to version
/// rolling for this reason; a block then simply does not signal a deployment that sits on
/// them (none on mainnet does).
pub fn job_version(node_version: u32, mask: u32) -> u32 {
    node_version & !mask
}

/// What the status page shows about the node behind this coin's work.
pub use minebox_api::stratum::NodeStatus;

pub type SharedNodeStatus = Arc<Mutex<NodeStatus>>;

pub struct WorkFeed {
    pub config: WorkConfig,
    pub node: NodeClient,
    pub publish: watch::Sender<Option<Arc<Template>>>,
    pub status: SharedNodeStatus,
    pub events: broadcast::Sender<Event>,
    /// Nudges from the supervisor ("node started", "node synced"): fetch work now.
    pub kick: mpsc::Receiver<()>,
    /// Whether the node gives work (its last getblocktemplate answered), for the choice
    /// between the node and an upstream pool ([`crate::upstream::choose_source`]).
    pub ready: Option<watch::Sender<bool>>,
}

/// Converts the node's template into the server's, keeping only what mining needs.
pub fn template_parts(t: &BlockTemplate, segwit: bool) -> TemplateParts {
    TemplateParts {
        height: t.height,
        prev_hash: t.previous_block_hash,
        version: t.version as u32,
        bits: t.bits,
        min_time: t.min_time as u32,
        cur_time: t.cur_time as u32,
        coinbase_value: Amount::from_sat(t.coinbase_value),
        witness_commitment: if segwit && t.segwit_active() { t.default_witness_commitment.clone() } else { None },
        transactions: t.transactions.iter().map(|tx| (tx.txid.to_byte_array(), tx.data.clone())).collect(),
    }
}

/// Longest wait between two getblocktemplate attempts while the node gives no work.
const RETRY_MAX: Duration = Duration::from_secs(5);
/// The same with an upstream pool: miners are on the pool's work meanwhile, and every second
/// spent there after the node is ready is a second not mining for the box's own blocks. A
/// node refusing templates (starting, syncing) answers at once, so one call a second costs
/// nothing worth saving.
const RETRY_MAX_WITH_UPSTREAM: Duration = Duration::from_secs(1);

impl WorkFeed {
    pub async fn run(mut self, shutdown: CancellationToken) {
        let (notify_tx, mut notify_rx) = mpsc::channel::<BlockHash>(16);
        if let Some(endpoint) = &self.config.zmq_hashblock {
            let endpoint = endpoint.clone();
            let shutdown = shutdown.clone();
            tokio::spawn(async move {
                minebox_node_rpc::hashblock::forward(&endpoint, notify_tx, shutdown).await;
            });
            self.status.lock().expect("status lock").block_notify = "zmq".into();
        } else {
            drop(notify_tx);
            self.status.lock().expect("status lock").block_notify = "poll".into();
        }
        let poll = if self.config.zmq_hashblock.is_some() {
            // ZMQ does the real work; the poll is a safety net for a dropped notification.
            self.config.poll.max(Duration::from_secs(10))
        } else {
            self.config.poll
        };
        let mut next_id = 1u64;
        let mut current_prev: Option<BlockHash> = None;
        let mut backoff = Duration::from_millis(250);
        let mut refresh_at;
        loop {
            // Fetch a template (a new block, a refresh, or a retry after an error).
            match self.fetch().await {
                Ok(t) => {
                    backoff = Duration::from_millis(250);
                    let clean = current_prev != Some(t.previous_block_hash);
                    let mut parts = template_parts(&t, self.config.segwit);
                    parts.version = job_version(parts.version, self.config.version_mask);
                    let template = Arc::new(Template::new(next_id, parts, clean));
                    next_id += 1;
                    self.on_template(&template, &t);
                    if clean {
                        tracing::info!(coin = %self.config.coin, height = template.height, prev = %template.prev_hash, txs = template.transactions.len(), "new block: fresh work for every miner");
                        if current_prev.is_some() {
                            let _ = self
                                .events
                                .send(Event::NewBlock { coin: self.config.coin.clone(), height: template.height });
                        }
                    }
                    current_prev = Some(template.prev_hash);
                    self.publish.send_replace(Some(template));
                    // After the template: the source chooser must not pick up the node's
                    // old work from before it went away.
                    if let Some(r) = &self.ready {
                        r.send_if_modified(|v| !std::mem::replace(v, true));
                    }
                    refresh_at = Instant::now() + self.config.refresh;
                }
                Err(e) => {
                    self.on_error(&e);
                    tokio::select! {
                        _ = shutdown.cancelled() => return,
                        _ = tokio::time::sleep(backoff) => {}
                        Some(_) = notify_rx.recv() => {}
                        Some(_) = self.kick.recv() => {}
                    }
                    backoff = (backoff * 2).min(if self.ready.is_some() { RETRY_MAX_WITH_UPSTREAM } else { RETRY_MAX });
                    continue;
                }
            }
            // Wait for a reason to fetch again.
            loop {
                tokio::select! {
                    _ = shutdown.cancelled() => return,
                    Some(hash) = notify_rx.recv() => {
                        if Some(hash) != current_prev {
                            break;
                        }
                    }
                    _ = tokio::time::sleep_until(refresh_at.into()) => break,
                    Some(_) = self.kick.recv() => break,
                    _ = tokio::time::sleep(poll) => {
                        match self.node.get_best_block_hash().await {
                            Ok(best) if Some(best) != current_prev => break,
                            Ok(_) => {}
                            Err(e) => { self.on_error(&e); break; }
                        }
                    }
                }
            }
        }
    }

    async fn fetch(&self) -> Result<BlockTemplate, RpcError> {
        let rules: &[&str] = if self.config.segwit { &["segwit"] } else { &[] };
        self.node.get_block_template(rules).await
    }

    fn on_template(&self, template: &Template, raw: &BlockTemplate) {
        let mut s = self.status.lock().expect("status lock");
        if !s.reachable && s.last_error.is_some() {
            tracing::info!(coin = %self.config.coin, "node is back; miners get fresh work");
            let _ = self.events.send(Event::NodeUp { coin: self.config.coin.clone() });
        }
        s.reachable = true;
        s.last_error = None;
        s.height = Some(template.height);
        s.best_hash = Some(template.prev_hash.to_string());
        s.template_at = Some(unix_now() as i64);
        s.template_transactions = template.transactions.len();
        s.template_fees_sats = raw.transactions.iter().map(|t| t.fee.unwrap_or(0)).sum();
        s.coinbase_value_sats = template.coinbase_value.to_sat();
        s.network_difficulty = template.network_difficulty();
    }

    fn on_error(&self, e: &RpcError) {
        if let Some(r) = &self.ready {
            r.send_if_modified(|v| std::mem::replace(v, false));
        }
        let mut s = self.status.lock().expect("status lock");
        let message = e.to_string();
        if s.last_error.as_deref() != Some(message.as_str()) {
            tracing::warn!(coin = %self.config.coin, error = %message, "node unavailable; miners keep their last job");
            if s.reachable || s.last_error.is_none() {
                let _ = self.events.send(Event::NodeDown { coin: self.config.coin.clone(), error: message.clone() });
            }
        }
        s.reachable = false;
        s.last_error = Some(message);
    }
}

#[cfg(test)]
mod tests {
    use super::job_version;

    #[test]
    fn jobs_carry_no_bit_inside_the_rolling_mask() {
        // Bitcoin Core regtest from block 144: testdummy signalled on bit 28.
        assert_eq!(job_version(0x3000_0000, 0x1fff_e000), 0x2000_0000);
        // Deployment bits below the mask are kept.
        assert_eq!(job_version(0x2000_0004, 0x1fff_e000), 0x2000_0004);
    }
}
