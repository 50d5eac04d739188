//! Found blocks: build, record, submit, confirm.
//!
//! Order matters. The miner's `result: true` for a block-finding share is written only
//! after the block is in SQLite (committed with `synchronous=FULL`, so fsynced): the
//! connection hands the find to the recorder with a one-shot acknowledgement and waits
//! for it ([`FoundShare`]). A crash or power cut at any moment after the miner heard `true`
//! therefore leaves a `submitting` row that the next start resubmits; the cost is one fsync,
//! milliseconds against a 10-minute block race.
//!
//! Recording and submitting are two tasks, so no miner's reply ever waits on `submitblock`:
//! the recorder only writes and acknowledges, the submitter talks to the node. Submission
//! retries transport errors with backoff (the node may be restarting); a refusal from the
//! node is final and kept with its reason. Confirmations are then followed until the
//! block is buried (100 deep, when its coinbase matures) or orphaned.

use crate::event::Event;
use crate::session::FoundBlock;
use crate::stats::unix_now;
use crate::store::{Block, BlockRecord, BlockStatus, Store};
use bitcoin::consensus::encode::{serialize, VarInt};
use minebox_node_rpc::{NodeClient, RpcError, SubmitResult};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{broadcast, mpsc, oneshot, Notify};
use tokio_util::sync::CancellationToken;

/// Depth at which a coinbase matures and the block's fate stops being followed.
pub const MATURITY: i64 = 100;

/// Found blocks waiting for the submitter. Beyond this they wait in the database (as
/// `submitting` rows, already durable) and the submitter picks them up from there.
const SUBMIT_QUEUE: usize = 64;

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

/// A block-finding share on its way to the recorder; `recorded` answers once the block is
/// on disk (or could not be written), and only then may the miner be told `true`.
#[derive(Debug)]
pub struct FoundShare {
    pub block: FoundBlock,
    pub recorded: oneshot::Sender<Recorded>,
}

/// The recorder's answer to a [`FoundShare`].
#[derive(Debug, Clone, PartialEq)]
pub enum Recorded {
    /// In the database, fsynced: resubmitted after any crash from here on.
    Durable,
    /// The database refused the write (full or broken disk); the block is being submitted
    /// anyway, but a crash now would lose it. The text says what failed.
    NotSaved(String),
}

pub struct BlockDesk {
    pub coin: String,
    pub network: String,
    pub node: NodeClient,
    pub store: Store,
    pub events: broadcast::Sender<Event>,
    /// The coin's pool mode, if on: a block of a pool job records its payouts and carry.
    pub pplns: Option<Arc<crate::pplns::desk::PplnsDesk>>,
}

impl BlockDesk {
    /// Records finds as they come and submits them; returns on shutdown once every find
    /// already handed over is recorded.
    pub async fn run(self, mut found: mpsc::Receiver<FoundShare>, shutdown: CancellationToken) {
        let desk = Arc::new(self);
        let (to_submit, submit_rx) = mpsc::channel(SUBMIT_QUEUE);
        let rescan = Arc::new(Notify::new());
        // Anything recorded but never answered (a crash between record and submit).
        rescan.notify_one();
        let submitter = tokio::spawn(desk.clone().submitter(submit_rx, rescan.clone(), shutdown.clone()));
        loop {
            tokio::select! {
                biased;
                f = found.recv() => match f {
                    Some(f) => desk.on_found(f, &to_submit, &rescan).await,
                    None => break,
                },
                _ = shutdown.cancelled() => {
                    // A miner may be waiting for its block's acknowledgement: record what
                    // was handed over, refuse anything later (the connection says so).
                    found.close();
                    while let Some(f) = found.recv().await {
                        desk.on_found(f, &to_submit, &rescan).await;
                    }
                    break;
                }
            }
        }
        drop(to_submit);
        let _ = submitter.await;
    }

    /// Talks to the node: submits recorded blocks, resubmits `submitting` rows, and
    /// follows confirmations. Runs apart from the recorder so a slow or absent node never
    /// delays a miner's reply.
    async fn submitter(
        self: Arc<Self>,
        mut queue: mpsc::Receiver<BlockRecord>,
        rescan: Arc<Notify>,
        shutdown: CancellationToken,
    ) {
        let mut confirm = tokio::time::interval(Duration::from_secs(60));
        confirm.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                biased;
                _ = shutdown.cancelled() => return, // unanswered blocks stay 'submitting'
                r = queue.recv() => match r {
                    Some(r) => self.submit(r, &shutdown).await,
                    None => return,
                },
                _ = rescan.notified() => self.resubmit_recorded(&shutdown).await,
                _ = confirm.tick() => self.confirm().await,
            }
        }
    }

    /// Submits every block the database still has as `submitting`.
    async fn resubmit_recorded(&self, shutdown: &CancellationToken) {
        match self.store_call(|s, coin| s.unsettled_blocks(&coin)).await {
            Ok(blocks) => {
                for b in blocks.into_iter().filter(|b| b.block.status == BlockStatus::Submitting) {
                    if shutdown.is_cancelled() {
                        return;
                    }
                    tracing::warn!(coin = %self.coin, height = b.block.height, hash = %b.block.hash, "submitting a block recorded earlier (before a restart, or while the submit queue was full)");
                    self.submit(b, shutdown).await;
                }
            }
            Err(e) => tracing::error!(error = %e, "cannot read unsettled blocks"),
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

    async fn on_found(&self, found: FoundShare, to_submit: &mpsc::Sender<BlockRecord>, rescan: &Notify) {
        let FoundShare { block: found, recorded } = found;
        let template = &found.job.template;
        let record = BlockRecord {
            block: Block {
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
                // The job's, not the settings': the version its coinbase was built under.
                pool_config_version: found.job.pool_config_version,
            },
            block_hex: hex::encode(assemble(&found)),
        };
        tracing::info!(coin = %self.coin, height = record.block.height, hash = %record.block.hash, worker = %record.block.worker, "BLOCK FOUND");
        let r = record.clone();
        let pool = match (&found.job.pplns, &self.pplns) {
            (Some(job), Some(desk)) => {
                // The job's carry is the pool's from now on (see docs/stratum.md, "Pool mode":
                // also if the block is later orphaned).
                desk.commit(job);
                let saved = desk.take_snapshot();
                saved.map(|w| (job.clone(), w, desk.clone()))
            }
            _ => None,
        };
        let saved = match self
            .store_call(move |s, _| match &pool {
                Some((job, window, desk)) => s.record_pool_block(&r, job, window).inspect_err(|_| desk.mark_dirty()),
                None => s.record_block(&r),
            })
            .await
        {
            Ok(()) => Recorded::Durable,
            Err(e) => {
                // Never let a database problem cost a block: submit anyway, loudly.
                tracing::error!(error = %e, "could not record the found block; submitting it anyway");
                Recorded::NotSaved(e.to_string())
            }
        };
        // The miner's `true` goes out after this; a miner that hung up meanwhile is fine.
        let _ = recorded.send(saved.clone());
        let _ = self.events.send(Event::BlockFound {
            coin: self.coin.clone(),
            height: record.block.height,
            hash: record.block.hash.clone(),
            worker: record.block.worker.clone(),
            reward_sats: record.block.reward_sats,
        });
        match to_submit.try_send(record) {
            Ok(()) => {}
            // Durable: the submitter finds it in the database when it has caught up.
            Err(mpsc::error::TrySendError::Full(_)) if saved == Recorded::Durable => rescan.notify_one(),
            // Only in memory: it must not be dropped, so wait for room.
            Err(mpsc::error::TrySendError::Full(record)) => {
                let _ = to_submit.send(record).await;
            }
            Err(mpsc::error::TrySendError::Closed(_)) => {}
        }
    }

    async fn submit(&self, record: BlockRecord, shutdown: &CancellationToken) {
        let mut delay = Duration::from_millis(200);
        let outcome = loop {
            match self.node.submit_block(&record.block_hex).await {
                Ok(r) => break r,
                Err(e) if is_transient(&e) => {
                    tracing::warn!(hash = %record.block.hash, error = %e, retry_in = ?delay, "node did not take the block submission; retrying");
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
        let hash = record.block.hash.clone();
        let d = detail.clone();
        if let Err(e) = self.store_call(move |s, _| s.update_block(&hash, status, &d, 0)).await {
            tracing::error!(error = %e, "could not record the block's submission result");
        }
        let event = match status {
            BlockStatus::Accepted => {
                tracing::info!(hash = %record.block.hash, height = record.block.height, "block accepted by the node");
                Event::BlockAccepted { coin: self.coin.clone(), height: record.block.height, hash: record.block.hash }
            }
            _ => {
                tracing::error!(hash = %record.block.hash, reason = %detail, "block REJECTED by the node");
                Event::BlockRejected {
                    coin: self.coin.clone(),
                    height: record.block.height,
                    hash: record.block.hash,
                    reason: detail,
                }
            }
        };
        let _ = self.events.send(event);
    }

    /// Follows accepted blocks until they mature or are orphaned.
    pub async fn confirm(&self) {
        let Ok(blocks) = self.store_call(|s, coin| s.unsettled_blocks(&coin)).await else { return };
        for b in blocks.into_iter().filter(|b| b.block.status == BlockStatus::Accepted) {
            let Ok(hash) = b.block.hash.parse() else { continue };
            match self.node.get_block_confirmations(&hash).await {
                Ok(c) if c < 0 => {
                    let h = b.block.hash.clone();
                    let _ = self
                        .store_call(move |s, _| s.update_block(&h, BlockStatus::Orphaned, "not in the best chain", c))
                        .await;
                    tracing::warn!(hash = %b.block.hash, height = b.block.height, "block orphaned");
                    let _ = self.events.send(Event::BlockOrphaned {
                        coin: self.coin.clone(),
                        height: b.block.height,
                        hash: b.block.hash,
                    });
                }
                Ok(c) if c != b.block.confirmations => {
                    let h = b.block.hash.clone();
                    let detail = b.block.detail.clone();
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
