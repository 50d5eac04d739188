//! Found blocks: build, record, submit, confirm.
//!
//! Order matters. The block is written to SQLite (fsynced) before it is submitted, so a
//! crash or power cut at any point after the share arrived leaves a record that the next
//! start resubmits; the cost is one fsync, milliseconds against a 10-minute block race.
//! Submission retries transport errors with backoff (the node may be restarting); a
//! refusal from the node is final and kept with its reason. Confirmations are then
//! followed until the block is buried (100 deep, when its coinbase matures) or orphaned.

use crate::event::Event;
use crate::session::FoundBlock;
use crate::stats::unix_now;
use crate::store::{BlockRecord, BlockStatus, Store};
use bitcoin::consensus::encode::{serialize, VarInt};
use minebox_node_rpc::{NodeClient, RpcError, SubmitResult};
use std::time::Duration;
use tokio::sync::{broadcast, mpsc};
use tokio_util::sync::CancellationToken;

/// Depth at which a coinbase matures and the block's fate stops being followed.
pub const MATURITY: i64 = 100;

/// The full serialized block for a found share.
pub fn assemble(found: &FoundBlock) -> Vec<u8> {
    let template = &found.job.template;
    let coinbase = found.job.coinbase.transaction(&found.extranonce1, &found.extranonce2);
    let mut out = serialize(&found.hashed.header);
    out.extend(serialize(&VarInt(1 + template.transactions.len() as u64)));
    out.extend(serialize(&coinbase));
    for tx in &template.transactions {
        out.extend_from_slice(tx);
    }
    out
}

pub struct BlockDesk {
    pub coin: String,
    pub network: String,
    pub node: NodeClient,
    pub store: Store,
    pub events: broadcast::Sender<Event>,
}

impl BlockDesk {
    pub async fn run(self, mut found: mpsc::Receiver<FoundBlock>, shutdown: CancellationToken) {
        // Anything recorded but never answered (a crash between record and submit).
        match self.store_call(|s, coin| s.unsettled_blocks(&coin)).await {
            Ok(blocks) => {
                for b in blocks.into_iter().filter(|b| b.status == BlockStatus::Submitting) {
                    tracing::warn!(coin = %self.coin, height = b.height, hash = %b.hash, "resubmitting a block recorded before a restart");
                    self.submit(b, &shutdown).await;
                }
            }
            Err(e) => tracing::error!(error = %e, "cannot read unsettled blocks"),
        }
        let mut confirm = tokio::time::interval(Duration::from_secs(60));
        confirm.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = shutdown.cancelled() => return,
                f = found.recv() => match f {
                    Some(f) => self.on_found(f, &shutdown).await,
                    None => return,
                },
                _ = confirm.tick() => self.confirm().await,
            }
        }
    }

    async fn store_call<T: Send + 'static>(
        &self,
        f: impl FnOnce(Store, String) -> Result<T, crate::store::StoreError> + Send + 'static,
    ) -> Result<T, crate::store::StoreError> {
        let store = self.store.clone();
        let coin = self.coin.clone();
        tokio::task::spawn_blocking(move || f(store, coin)).await.expect("store task panicked")
    }

    async fn on_found(&self, found: FoundBlock, shutdown: &CancellationToken) {
        let template = &found.job.template;
        let record = BlockRecord {
            coin: self.coin.clone(),
            network: self.network.clone(),
            height: template.height,
            hash: found.hashed.hash.to_string(),
            worker: found.worker.clone(),
            reward_sats: template.coinbase_value.to_sat(),
            share_difficulty: found.hashed.difficulty,
            network_difficulty: template.network_difficulty(),
            found_at: unix_now() as i64,
            status: BlockStatus::Submitting,
            detail: String::new(),
            confirmations: 0,
            block_hex: hex::encode(assemble(&found)),
        };
        tracing::info!(coin = %self.coin, height = record.height, hash = %record.hash, worker = %record.worker, "BLOCK FOUND");
        let r = record.clone();
        if let Err(e) = self.store_call(move |s, _| s.record_block(&r)).await {
            // Never let a database problem cost a block: submit anyway, loudly.
            tracing::error!(error = %e, "could not record the found block; submitting it anyway");
        }
        let _ = self.events.send(Event::BlockFound {
            coin: self.coin.clone(),
            height: record.height,
            hash: record.hash.clone(),
            worker: record.worker.clone(),
            reward_sats: record.reward_sats,
        });
        self.submit(record, shutdown).await;
    }

    async fn submit(&self, record: BlockRecord, shutdown: &CancellationToken) {
        let mut delay = Duration::from_millis(200);
        let outcome = loop {
            match self.node.submit_block(&record.block_hex).await {
                Ok(r) => break r,
                Err(e) if is_transient(&e) => {
                    tracing::warn!(hash = %record.hash, error = %e, retry_in = ?delay, "node did not take the block submission; retrying");
                    tokio::select! {
                        _ = shutdown.cancelled() => return, // still 'submitting': resubmitted at next start
                        _ = tokio::time::sleep(delay) => {}
                    }
                    delay = (delay * 2).min(Duration::from_secs(30));
                }
                Err(e) => break SubmitResult::Rejected(e.to_string()),
            }
        };
        let (status, detail) = match outcome {
            SubmitResult::Accepted => (BlockStatus::Accepted, String::new()),
            // Already known to the node (a resubmission after a crash): it was accepted.
            SubmitResult::Rejected(r) if r == "duplicate" || r == "inconclusive" => (BlockStatus::Accepted, r),
            SubmitResult::Rejected(r) => (BlockStatus::Rejected, r),
        };
        let hash = record.hash.clone();
        let d = detail.clone();
        if let Err(e) = self.store_call(move |s, _| s.update_block(&hash, status, &d, 0)).await {
            tracing::error!(error = %e, "could not record the block's submission result");
        }
        let event = match status {
            BlockStatus::Accepted => {
                tracing::info!(hash = %record.hash, height = record.height, "block accepted by the node");
                Event::BlockAccepted { coin: self.coin.clone(), height: record.height, hash: record.hash }
            }
            _ => {
                tracing::error!(hash = %record.hash, reason = %detail, "block REJECTED by the node");
                Event::BlockRejected {
                    coin: self.coin.clone(),
                    height: record.height,
                    hash: record.hash,
                    reason: detail,
                }
            }
        };
        let _ = self.events.send(event);
    }

    /// Follows accepted blocks until they mature or are orphaned.
    pub async fn confirm(&self) {
        let Ok(blocks) = self.store_call(|s, coin| s.unsettled_blocks(&coin)).await else { return };
        for b in blocks.into_iter().filter(|b| b.status == BlockStatus::Accepted) {
            let Ok(hash) = b.hash.parse() else { continue };
            match self.node.get_block_confirmations(&hash).await {
                Ok(c) if c < 0 => {
                    let h = b.hash.clone();
                    let _ = self
                        .store_call(move |s, _| s.update_block(&h, BlockStatus::Orphaned, "not in the best chain", c))
                        .await;
                    tracing::warn!(hash = %b.hash, height = b.height, "block orphaned");
                    let _ = self.events.send(Event::BlockOrphaned {
                        coin: self.coin.clone(),
                        height: b.height,
                        hash: b.hash,
                    });
                }
                Ok(c) if c != b.confirmations => {
                    let h = b.hash.clone();
                    let detail = b.detail.clone();
                    let _ = self.store_call(move |s, _| s.update_block(&h, BlockStatus::Accepted, &detail, c)).await;
                }
                Ok(_) => {}
                Err(e) => tracing::debug!(error = %e, "cannot confirm block now"),
            }
        }
    }
}

fn is_transient(e: &RpcError) -> bool {
    e.is_transient()
}
