//! The stratum server's tables in the box's SQLite state database.
//!
//! Two kinds of write with opposite needs:
//! - a found block is written at once, synchronously, before it is even submitted: a
//!   crash or power cut right after must not lose it (it is resubmitted at start-up);
//! - statistics are batched (one transaction every flush interval, default a minute),
//!   because an SD card or small SSD wears with every write.
//!
//! The database is in WAL mode with `synchronous=FULL`: with writes this rare, the
//! extra fsync costs nothing and a committed block record survives a power cut.

use crate::stats::{Rates, WorkerStats};
use rusqlite::{params, Connection, OptionalExtension};
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("state database {path}: {source} (check that the directory exists, is writable and the disk is not full)")]
    Open { path: PathBuf, source: rusqlite::Error },
    #[error("state database: {0}")]
    Sql(#[from] rusqlite::Error),
}

/// Where a found block stands: the API's type; the table stores it as its name.
pub use minebox_api::stratum::{Block, BlockStatus};

/// How the table stores a block's status.
fn status_name(status: BlockStatus) -> &'static str {
    match status {
        BlockStatus::Submitting => "submitting",
        BlockStatus::Accepted => "accepted",
        BlockStatus::Rejected => "rejected",
        BlockStatus::Orphaned => "orphaned",
    }
}

fn status_from_name(s: &str) -> BlockStatus {
    match s {
        "accepted" => BlockStatus::Accepted,
        "rejected" => BlockStatus::Rejected,
        "orphaned" => BlockStatus::Orphaned,
        _ => BlockStatus::Submitting,
    }
}

/// A found block as the table keeps it: what the API shows, and the block itself for
/// resubmission after a restart.
#[derive(Debug, Clone)]
pub struct BlockRecord {
    pub block: Block,
    pub block_hex: String,
}

#[derive(Clone)]
pub struct Store {
    pub(crate) conn: Arc<Mutex<Connection>>,
}

const SCHEMA: &str = r#"
CREATE TABLE IF NOT EXISTS stratum_workers (
    coin TEXT NOT NULL,
    worker TEXT NOT NULL,
    accepted INTEGER NOT NULL,
    accepted_difficulty REAL NOT NULL,
    rejected TEXT NOT NULL,
    best_share REAL NOT NULL,
    best_share_at INTEGER NOT NULL,
    last_share_at INTEGER NOT NULL,
    rates TEXT NOT NULL,
    user_agent TEXT NOT NULL,
    difficulty REAL NOT NULL,
    blocks INTEGER NOT NULL,
    last_seen INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (coin, worker)
);
CREATE TABLE IF NOT EXISTS stratum_blocks (
    hash TEXT PRIMARY KEY,
    coin TEXT NOT NULL,
    network TEXT NOT NULL,
    height INTEGER NOT NULL,
    worker TEXT NOT NULL,
    reward_sats INTEGER NOT NULL,
    share_difficulty REAL NOT NULL,
    network_difficulty REAL NOT NULL,
    found_at INTEGER NOT NULL,
    status TEXT NOT NULL,
    detail TEXT NOT NULL,
    confirmations INTEGER NOT NULL,
    block_hex TEXT NOT NULL,
    -- The pool configuration version of a pool-port block's job; NULL on the solo port.
    pool_config_version INTEGER
);
CREATE INDEX IF NOT EXISTS stratum_blocks_found ON stratum_blocks (found_at);
-- One hashrate sample per worker per flush, for the status page's charts.
CREATE TABLE IF NOT EXISTS stratum_hashrate (
    coin TEXT NOT NULL,
    worker TEXT NOT NULL,
    at INTEGER NOT NULL,
    hashrate REAL NOT NULL,
    PRIMARY KEY (coin, worker, at)
);
"#;

/// Hashrate samples older than this are deleted at each flush.
const SAMPLE_RETENTION_SECS: i64 = 7 * 86_400;

impl Store {
    pub fn open(path: &Path) -> Result<Store, StoreError> {
        let open = |path: &Path| -> rusqlite::Result<Connection> {
            let conn = Connection::open(path)?;
            conn.busy_timeout(std::time::Duration::from_secs(5))?;
            conn.pragma_update(None, "journal_mode", "WAL")?;
            conn.pragma_update(None, "synchronous", "FULL")?;
            conn.execute_batch(SCHEMA)?;
            conn.execute_batch(crate::share_log::SCHEMA)?;
            // Databases from before the worker registry had an eviction order.
            let has_last_seen: bool = conn
                .prepare("SELECT 1 FROM pragma_table_info('stratum_workers') WHERE name = 'last_seen'")?
                .exists([])?;
            if !has_last_seen {
                conn.execute_batch(
                    "ALTER TABLE stratum_workers ADD COLUMN last_seen INTEGER NOT NULL DEFAULT 0;
                     UPDATE stratum_workers SET last_seen = last_share_at;",
                )?;
            }
            // Databases from before a block recorded its pool configuration version: their
            // blocks say none (a pool block's version is still in its payout rows).
            let has_pool_version: bool = conn
                .prepare("SELECT 1 FROM pragma_table_info('stratum_blocks') WHERE name = 'pool_config_version'")?
                .exists([])?;
            if !has_pool_version {
                conn.execute_batch("ALTER TABLE stratum_blocks ADD COLUMN pool_config_version INTEGER;")?;
            }
            Ok(conn)
        };
        let conn = open(path).map_err(|source| StoreError::Open { path: path.to_path_buf(), source })?;
        Ok(Store { conn: Arc::new(Mutex::new(conn)) })
    }

    /// The connection, for the tables kept by other modules ([`crate::share_log`]).
    pub(crate) fn lock(&self) -> std::sync::MutexGuard<'_, Connection> {
        self.conn.lock().expect("store lock")
    }

    /// Records a found block durably; returns once it is on disk.
    pub fn record_block(&self, b: &BlockRecord) -> Result<(), StoreError> {
        let conn = self.conn.lock().expect("store lock");
        insert_block(&conn, b)
    }
}

/// The found block's row; also written with a pool block's payouts, in one transaction.
pub(crate) fn insert_block(conn: &Connection, b: &BlockRecord) -> Result<(), StoreError> {
    conn.execute(
        "INSERT INTO stratum_blocks (hash, coin, network, height, worker, reward_sats, share_difficulty,
                network_difficulty, found_at, status, detail, confirmations, block_hex, pool_config_version)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14)
             ON CONFLICT(hash) DO NOTHING",
        params![
            b.block.hash,
            b.block.coin,
            b.block.network,
            b.block.height as i64,
            b.block.worker,
            b.block.reward_sats as i64,
            b.block.share_difficulty,
            b.block.network_difficulty,
            b.block.found_at,
            status_name(b.block.status),
            b.block.detail,
            b.block.confirmations,
            b.block_hex,
            b.block.pool_config_version.map(|v| v as i64)
        ],
    )?;
    Ok(())
}

impl Store {
    pub fn update_block(
        &self,
        hash: &str,
        status: BlockStatus,
        detail: &str,
        confirmations: i64,
    ) -> Result<(), StoreError> {
        let conn = self.conn.lock().expect("store lock");
        conn.execute(
            "UPDATE stratum_blocks SET status = ?2, detail = ?3, confirmations = ?4 WHERE hash = ?1",
            params![hash, status_name(status), detail, confirmations],
        )?;
        Ok(())
    }

    /// Found blocks (of one coin, or all), newest first, as the API shows them.
    pub fn blocks(&self, coin: Option<&str>, limit: usize) -> Result<Vec<Block>, StoreError> {
        Ok(self.records(coin, limit)?.into_iter().map(|r| r.block).collect())
    }

    fn records(&self, coin: Option<&str>, limit: usize) -> Result<Vec<BlockRecord>, StoreError> {
        let conn = self.conn.lock().expect("store lock");
        let mut stmt = conn.prepare(
            "SELECT hash, coin, network, height, worker, reward_sats, share_difficulty, network_difficulty,
                    found_at, status, detail, confirmations, block_hex, pool_config_version
             FROM stratum_blocks WHERE (?1 IS NULL OR coin = ?1) ORDER BY found_at DESC, height DESC LIMIT ?2",
        )?;
        let rows = stmt.query_map(params![coin, limit as i64], |r| {
            Ok(BlockRecord {
                block: Block {
                    hash: r.get(0)?,
                    coin: r.get(1)?,
                    network: r.get(2)?,
                    height: r.get::<_, i64>(3)? as u64,
                    worker: r.get(4)?,
                    reward_sats: r.get::<_, i64>(5)? as u64,
                    share_difficulty: r.get(6)?,
                    network_difficulty: r.get(7)?,
                    found_at: r.get(8)?,
                    status: status_from_name(&r.get::<_, String>(9)?),
                    detail: r.get(10)?,
                    confirmations: r.get(11)?,
                    pool_config_version: r.get::<_, Option<i64>>(13)?.map(|v| v as u64),
                },
                block_hex: r.get(12)?,
            })
        })?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// Blocks whose fate is not final: still submitting, or accepted and young enough to
    /// be orphaned.
    pub fn unsettled_blocks(&self, coin: &str) -> Result<Vec<BlockRecord>, StoreError> {
        Ok(self
            .records(Some(coin), 1000)?
            .into_iter()
            .filter(|r| {
                let b = &r.block;
                b.status == BlockStatus::Submitting || (b.status == BlockStatus::Accepted && b.confirmations < 100)
            })
            .collect())
    }

    /// Writes changed workers and one hashrate sample each, in one transaction.
    pub fn save_workers(&self, workers: &[WorkerStats], now: i64) -> Result<(), StoreError> {
        if workers.is_empty() {
            return Ok(());
        }
        let mut conn = self.conn.lock().expect("store lock");
        let tx = conn.transaction()?;
        {
            let mut upsert = tx.prepare_cached(
                "INSERT INTO stratum_workers (coin, worker, accepted, accepted_difficulty, rejected, best_share,
                    best_share_at, last_share_at, rates, user_agent, difficulty, blocks, last_seen)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13)
                 ON CONFLICT(coin, worker) DO UPDATE SET accepted = ?3, accepted_difficulty = ?4, rejected = ?5,
                    best_share = ?6, best_share_at = ?7, last_share_at = ?8, rates = ?9, user_agent = ?10,
                    difficulty = ?11, blocks = ?12, last_seen = ?13",
            )?;
            let mut sample = tx.prepare_cached(
                "INSERT OR REPLACE INTO stratum_hashrate (coin, worker, at, hashrate) VALUES (?1, ?2, ?3, ?4)",
            )?;
            for w in workers {
                upsert.execute(params![
                    w.coin,
                    w.worker,
                    w.accepted as i64,
                    w.accepted_difficulty,
                    serde_json::to_string(&w.rejected).expect("map serializes"),
                    w.best_share,
                    w.best_share_at,
                    w.last_share_at,
                    serde_json::to_string(&w.rates).expect("rates serialize"),
                    w.user_agent,
                    w.difficulty,
                    w.blocks as i64,
                    w.last_seen
                ])?;
                sample.execute(params![w.coin, w.worker, now, w.rates.hashrates(now as f64)[0]])?;
            }
            tx.execute("DELETE FROM stratum_hashrate WHERE at < ?1", params![now - SAMPLE_RETENTION_SECS])?;
        }
        tx.commit()?;
        Ok(())
    }

    /// Deletes forgotten workers (evicted from the registry) and their hashrate samples.
    pub fn forget_workers(&self, keys: &[(String, String)]) -> Result<(), StoreError> {
        if keys.is_empty() {
            return Ok(());
        }
        let mut conn = self.conn.lock().expect("store lock");
        let tx = conn.transaction()?;
        {
            let mut w = tx.prepare_cached("DELETE FROM stratum_workers WHERE coin = ?1 AND worker = ?2")?;
            let mut h = tx.prepare_cached("DELETE FROM stratum_hashrate WHERE coin = ?1 AND worker = ?2")?;
            for (coin, worker) in keys {
                w.execute(params![coin, worker])?;
                h.execute(params![coin, worker])?;
            }
        }
        tx.commit()?;
        Ok(())
    }

    /// Workers saved, per coin and in all (for tests and the status page's figures).
    pub fn worker_count(&self) -> Result<u64, StoreError> {
        let conn = self.conn.lock().expect("store lock");
        Ok(conn.query_row("SELECT COUNT(*) FROM stratum_workers", [], |r| r.get::<_, i64>(0))? as u64)
    }

    /// Every worker saved before, to continue counting after a restart.
    pub fn load_workers(&self) -> Result<Vec<WorkerStats>, StoreError> {
        let conn = self.conn.lock().expect("store lock");
        let mut stmt = conn.prepare(
            "SELECT coin, worker, accepted, accepted_difficulty, rejected, best_share, best_share_at, last_share_at,
                    rates, user_agent, difficulty, blocks, last_seen FROM stratum_workers ORDER BY last_seen",
        )?;
        let rows = stmt.query_map([], |r| {
            let rejected: HashMap<String, u64> = serde_json::from_str(&r.get::<_, String>(4)?).unwrap_or_default();
            let rates: Rates = serde_json::from_str(&r.get::<_, String>(8)?).unwrap_or_default();
            Ok(WorkerStats {
                coin: r.get(0)?,
                worker: r.get(1)?,
                accepted: r.get::<_, i64>(2)? as u64,
                accepted_difficulty: r.get(3)?,
                rejected: rejected
                    .into_iter()
                    .filter_map(|(k, v)| {
                        crate::protocol::ErrorCode::ALL.iter().find(|c| c.as_str() == k).map(|c| (c.as_str(), v))
                    })
                    .collect(),
                best_share: r.get(5)?,
                best_share_at: r.get(6)?,
                last_share_at: r.get(7)?,
                rates,
                user_agent: r.get(9)?,
                difficulty: r.get(10)?,
                blocks: r.get::<_, i64>(11)? as u64,
                last_seen: r.get(12)?,
                connections: 0,
                payout_address: String::new(),
                paid_to: None,
                dirty: false,
            })
        })?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// Hashrate samples of one coin (all workers summed per sample time), oldest first.
    pub fn hashrate_history(
        &self,
        coin: &str,
        worker: Option<&str>,
        since: i64,
    ) -> Result<Vec<(i64, f64)>, StoreError> {
        let conn = self.conn.lock().expect("store lock");
        let mut stmt = conn.prepare(
            "SELECT at, SUM(hashrate) FROM stratum_hashrate WHERE coin = ?1 AND (?2 IS NULL OR worker = ?2) AND at >= ?3
             GROUP BY at ORDER BY at",
        )?;
        let rows = stmt.query_map(params![coin, worker, since], |r| Ok((r.get(0)?, r.get(1)?)))?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// The hash of a block already recorded, if any (to tell a resubmission from a new find).
    pub fn has_block(&self, hash: &str) -> Result<bool, StoreError> {
        let conn = self.conn.lock().expect("store lock");
        Ok(conn
            .query_row("SELECT 1 FROM stratum_blocks WHERE hash = ?1", params![hash], |_| Ok(()))
            .optional()?
            .is_some())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn block(hash: &str) -> BlockRecord {
        BlockRecord {
            block: Block {
                coin: "btc".into(),
                network: "regtest".into(),
                height: 101,
                hash: hash.into(),
                worker: "bcrt1q.w".into(),
                reward_sats: 5_000_000_000,
                share_difficulty: 3.0,
                network_difficulty: 4.6e-10,
                found_at: 1_700_000_000,
                status: BlockStatus::Submitting,
                detail: String::new(),
                confirmations: 0,
                pool_config_version: None,
            },
            block_hex: "00".into(),
        }
    }

    /// A state database made before blocks kept their pool configuration version opens:
    /// its blocks read as having none, new blocks keep theirs.
    #[test]
    fn a_blocks_table_without_the_pool_version_is_migrated_and_its_blocks_have_none() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("state.db");
        {
            // The table as earlier releases created it.
            let conn = Connection::open(&path).unwrap();
            conn.execute_batch(
                "CREATE TABLE stratum_blocks (
                    hash TEXT PRIMARY KEY,
                    coin TEXT NOT NULL,
                    network TEXT NOT NULL,
                    height INTEGER NOT NULL,
                    worker TEXT NOT NULL,
                    reward_sats INTEGER NOT NULL,
                    share_difficulty REAL NOT NULL,
                    network_difficulty REAL NOT NULL,
                    found_at INTEGER NOT NULL,
                    status TEXT NOT NULL,
                    detail TEXT NOT NULL,
                    confirmations INTEGER NOT NULL,
                    block_hex TEXT NOT NULL
                );
                INSERT INTO stratum_blocks VALUES ('old', 'btc', 'regtest', 100, 'bcrt1q.w', 5000000000, 3.0,
                    4.6e-10, 1699999999, 'accepted', '', 5, '00');",
            )
            .unwrap();
        }
        let s = Store::open(&path).unwrap();
        let mut pool = block("new");
        pool.block.pool_config_version = Some(7);
        s.record_block(&pool).unwrap();
        let versions: Vec<(String, Option<u64>)> =
            s.blocks(Some("btc"), 10).unwrap().into_iter().map(|b| (b.hash, b.pool_config_version)).collect();
        assert_eq!(versions, vec![("new".to_string(), Some(7)), ("old".to_string(), None)]);
        // Opening again (the column now there) changes nothing.
        drop(s);
        let s = Store::open(&path).unwrap();
        assert_eq!(s.blocks(Some("btc"), 10).unwrap()[0].pool_config_version, Some(7));
    }

    #[test]
    fn a_recorded_block_survives_reopening_and_is_unsettled_until_answered() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("state.db");
        {
            let s = Store::open(&path).unwrap();
            s.record_block(&block("aa")).unwrap();
            // Recording the same block twice (a resubmission) keeps one row.
            s.record_block(&block("aa")).unwrap();
        }
        let s = Store::open(&path).unwrap();
        let unsettled = s.unsettled_blocks("btc").unwrap();
        assert_eq!(unsettled.len(), 1);
        assert_eq!(unsettled[0].block.status, BlockStatus::Submitting);
        s.update_block("aa", BlockStatus::Accepted, "", 1).unwrap();
        assert_eq!(s.blocks(Some("btc"), 10).unwrap()[0].status, BlockStatus::Accepted);
        s.update_block("aa", BlockStatus::Accepted, "", 100).unwrap();
        assert!(s.unsettled_blocks("btc").unwrap().is_empty());
    }

    #[test]
    fn workers_round_trip_with_their_counters() {
        let dir = tempfile::tempdir().unwrap();
        let s = Store::open(&dir.path().join("state.db")).unwrap();
        let mut w = WorkerStats { coin: "btc".into(), worker: "addr.rig".into(), ..Default::default() };
        w.record_accepted(900.0, 100.0, 1000.0);
        w.record_rejected(crate::protocol::ErrorCode::Stale, 1001.0);
        s.save_workers(&[w.clone()], 1001).unwrap();
        w.record_accepted(50.0, 100.0, 1002.0);
        s.save_workers(&[w], 1002).unwrap();
        let loaded = s.load_workers().unwrap();
        assert_eq!(loaded.len(), 1);
        assert_eq!(loaded[0].accepted, 2);
        assert_eq!(loaded[0].best_share, 900.0);
        assert_eq!(loaded[0].rejected["stale"], 1);
        assert_eq!(s.hashrate_history("btc", None, 0).unwrap().len(), 2);
    }

    #[test]
    fn an_unwritable_path_says_what_to_check() {
        let err = match Store::open(Path::new("/nonexistent-dir/state.db")) {
            Err(e) => e.to_string(),
            Ok(_) => panic!("opened a database in a missing directory"),
        };
        assert!(err.contains("/nonexistent-dir/state.db") && err.contains("writable"), "{err}");
    }
}
