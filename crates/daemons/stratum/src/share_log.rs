//! Share history: every share the server judges, accepted or refused with its reason.
//!
//! The share path never touches the disk. A judged share goes into a bounded buffer in
//! memory (when it is full the share is counted as dropped rather than making the miner
//! wait), and the statistics writer stores the buffer in one transaction per flush (a
//! minute by default) and once more at shutdown: one write a minute however many miners,
//! because an SD card wears with every write. A power cut or SIGKILL loses the shares since
//! the last flush and nothing else: the database is in WAL mode with `synchronous=FULL`, so
//! a transaction is either all on disk or not at all.
//!
//! Detail is kept three months, then folded into hourly and daily totals by
//! [`crate::retention`].

use crate::protocol::ErrorCode;
use crate::store::{Store, StoreError};
pub use minebox_api::stratum::ShareBucket;
use rusqlite::{params, OptionalExtension};
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;

/// Shares the buffer holds at most between two flushes: a minute of 800 shares a second,
/// far beyond what a home box's miners send (three Bitaxes send one every two seconds).
/// About 8 MiB when full.
pub const BUFFER_SHARES: usize = 50_000;

/// The tables: worker names once each (a name is ~50 bytes, a share row with its index
/// entry ~47), every share, and the hourly and daily totals. The detail table is in time order by its `at` index,
/// which the retention pass walks oldest first.
pub(crate) const SCHEMA: &str = r#"
CREATE TABLE IF NOT EXISTS stratum_share_workers (
    id INTEGER PRIMARY KEY,
    coin TEXT NOT NULL,
    worker TEXT NOT NULL,
    UNIQUE (coin, worker)
);
-- port: 0 solo, 1 pool (PPLNS). outcome: 0 accepted, else the stratum error code it was
-- refused with (20 other, 21 stale, 22 duplicate, 23 low difficulty, 24 unauthorized,
-- 25 not subscribed). difficulty: the one the share was judged by (its work; for a
-- refused share the miner's difficulty then); share_difficulty: what an accepted share's
-- hash reached (0 for a refused one).
CREATE TABLE IF NOT EXISTS stratum_shares (
    id INTEGER PRIMARY KEY,
    at INTEGER NOT NULL,
    worker_id INTEGER NOT NULL,
    port INTEGER NOT NULL,
    outcome INTEGER NOT NULL,
    difficulty REAL NOT NULL,
    share_difficulty REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS stratum_shares_at ON stratum_shares (at);
-- Totals per UTC hour (start = unix time of the hour) and per UTC day.
CREATE TABLE IF NOT EXISTS stratum_share_hours (
    start INTEGER NOT NULL,
    worker_id INTEGER NOT NULL,
    port INTEGER NOT NULL,
    outcome INTEGER NOT NULL,
    shares INTEGER NOT NULL,
    difficulty REAL NOT NULL,
    UNIQUE (start, worker_id, port, outcome)
);
CREATE TABLE IF NOT EXISTS stratum_share_days (
    start INTEGER NOT NULL,
    worker_id INTEGER NOT NULL,
    port INTEGER NOT NULL,
    outcome INTEGER NOT NULL,
    shares INTEGER NOT NULL,
    difficulty REAL NOT NULL,
    UNIQUE (start, worker_id, port, outcome)
);
"#;

/// Which kind of port a share came in on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Port {
    /// The coin's solo port: a block pays the miner's (or the owner's) address.
    Solo,
    /// The pool (PPLNS) port: a block is split among the box's users.
    Pool,
}

impl Port {
    fn code(self) -> i64 {
        match self {
            Port::Solo => 0,
            Port::Pool => 1,
        }
    }

    /// How the API names it.
    pub fn name(self) -> &'static str {
        match self {
            Port::Solo => "solo",
            Port::Pool => "pool",
        }
    }

    fn from_code(code: i64) -> Port {
        if code == 1 {
            Port::Pool
        } else {
            Port::Solo
        }
    }
}

/// What the server said to a share.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Outcome {
    Accepted,
    Rejected(ErrorCode),
}

impl Outcome {
    fn code(self) -> i64 {
        match self {
            Outcome::Accepted => 0,
            Outcome::Rejected(c) => c as i64,
        }
    }

    fn from_code(code: i64) -> Outcome {
        match ErrorCode::ALL.iter().find(|c| **c as i64 == code) {
            Some(c) => Outcome::Rejected(*c),
            None => Outcome::Accepted,
        }
    }

    /// `accepted`, or the reason it was refused (`stale`, `duplicate`, `low_difficulty`, ...).
    pub fn name(self) -> &'static str {
        match self {
            Outcome::Accepted => "accepted",
            Outcome::Rejected(c) => c.as_str(),
        }
    }
}

/// One judged share.
#[derive(Debug, Clone, PartialEq)]
pub struct Share {
    /// Unix seconds.
    pub at: i64,
    pub coin: String,
    /// `address.rig` (or `user.rig` on the pool port); empty for a share refused before
    /// any worker was authorized (its name is the sender's, not one the box knows).
    pub worker: String,
    pub port: Port,
    pub outcome: Outcome,
    /// The difficulty the share was judged by: the work it stands for (for a refused share,
    /// the miner's difficulty at the time: its job may be unknown).
    pub difficulty: f64,
    /// What an accepted share's hash reached; 0 for a refused one.
    pub share_difficulty: f64,
}

/// The buffer between the share path and the database.
pub struct ShareLog {
    buffer: Mutex<Vec<Share>>,
    capacity: usize,
    dropped: AtomicU64,
}

impl Default for ShareLog {
    fn default() -> Self {
        ShareLog::new(BUFFER_SHARES)
    }
}

impl ShareLog {
    pub fn new(capacity: usize) -> ShareLog {
        ShareLog { buffer: Mutex::new(Vec::new()), capacity, dropped: AtomicU64::new(0) }
    }

    /// Keeps a judged share for the next flush; never waits for the disk.
    pub fn record(&self, share: Share) {
        let mut buffer = self.buffer.lock().expect("share buffer lock");
        if buffer.len() < self.capacity {
            buffer.push(share);
        } else {
            self.dropped.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// The shares waiting, oldest first, leaving the buffer empty.
    pub fn take(&self) -> Vec<Share> {
        std::mem::take(&mut *self.buffer.lock().expect("share buffer lock"))
    }

    /// Puts back shares whose write failed, ahead of newer ones, to retry at the next flush;
    /// what no longer fits is counted as dropped.
    pub fn put_back(&self, mut shares: Vec<Share>) {
        let mut buffer = self.buffer.lock().expect("share buffer lock");
        shares.append(&mut buffer);
        let over = shares.len().saturating_sub(self.capacity);
        if over > 0 {
            shares.truncate(self.capacity);
            self.dropped.fetch_add(over as u64, Ordering::Relaxed);
        }
        *buffer = shares;
    }

    /// Shares not kept because the buffer was full, since the service started.
    pub fn dropped(&self) -> u64 {
        self.dropped.load(Ordering::Relaxed)
    }
}

/// Totals of one worker, port and outcome over an hour or a day.
#[derive(Debug, Clone, PartialEq)]
pub struct Totals {
    pub start: i64,
    pub coin: String,
    pub worker: String,
    pub port: Port,
    pub outcome: Outcome,
    pub shares: u64,
    pub difficulty: f64,
}

/// The granularity of stored totals.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Span {
    Hour,
    Day,
}

impl Span {
    pub(crate) const fn table(self) -> &'static str {
        match self {
            Span::Hour => "stratum_share_hours",
            Span::Day => "stratum_share_days",
        }
    }

    pub fn secs(self) -> i64 {
        match self {
            Span::Hour => 3600,
            Span::Day => 86_400,
        }
    }
}

impl Store {
    /// Writes a flush's shares in one transaction.
    pub fn save_shares(&self, shares: &[Share]) -> Result<(), StoreError> {
        if shares.is_empty() {
            return Ok(());
        }
        let mut conn = self.lock();
        let tx = conn.transaction()?;
        {
            // Looked up before inserting: an upsert would rewrite the name's page every flush.
            let mut known =
                tx.prepare_cached("SELECT id FROM stratum_share_workers WHERE coin = ?1 AND worker = ?2")?;
            let mut name =
                tx.prepare_cached("INSERT INTO stratum_share_workers (coin, worker) VALUES (?1, ?2) RETURNING id")?;
            let mut insert = tx.prepare_cached(
                "INSERT INTO stratum_shares (at, worker_id, port, outcome, difficulty, share_difficulty)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
            )?;
            let mut ids: HashMap<(&str, &str), i64> = HashMap::new();
            for s in shares {
                let id = match ids.get(&(s.coin.as_str(), s.worker.as_str())) {
                    Some(id) => *id,
                    None => {
                        let id: i64 = match known.query_row(params![s.coin, s.worker], |r| r.get(0)).optional()? {
                            Some(id) => id,
                            None => name.query_row(params![s.coin, s.worker], |r| r.get(0))?,
                        };
                        ids.insert((s.coin.as_str(), s.worker.as_str()), id);
                        id
                    }
                };
                insert.execute(params![s.at, id, s.port.code(), s.outcome.code(), s.difficulty, s.share_difficulty])?;
            }
        }
        tx.commit()?;
        Ok(())
    }

    /// Stored shares of one coin (and worker) at or after `since`, oldest first, at most `limit`.
    pub fn shares(&self, coin: &str, worker: Option<&str>, since: i64, limit: usize) -> Result<Vec<Share>, StoreError> {
        let conn = self.lock();
        let mut stmt = conn.prepare(
            "SELECT s.at, w.coin, w.worker, s.port, s.outcome, s.difficulty, s.share_difficulty
             FROM stratum_shares s JOIN stratum_share_workers w ON w.id = s.worker_id
             WHERE s.at >= ?3 AND w.coin = ?1 AND (?2 IS NULL OR w.worker = ?2)
             ORDER BY s.at, s.id LIMIT ?4",
        )?;
        let rows = stmt.query_map(params![coin, worker, since, limit as i64], |r| {
            Ok(Share {
                at: r.get(0)?,
                coin: r.get(1)?,
                worker: r.get(2)?,
                port: Port::from_code(r.get(3)?),
                outcome: Outcome::from_code(r.get(4)?),
                difficulty: r.get(5)?,
                share_difficulty: r.get(6)?,
            })
        })?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// Stored hourly or daily totals of every coin and worker, oldest first.
    pub fn share_totals(&self, span: Span) -> Result<Vec<Totals>, StoreError> {
        let conn = self.lock();
        let mut stmt = conn.prepare(&format!(
            "SELECT t.start, w.coin, w.worker, t.port, t.outcome, t.shares, t.difficulty
             FROM {} t JOIN stratum_share_workers w ON w.id = t.worker_id
             ORDER BY t.start, w.coin, w.worker, t.port, t.outcome",
            span.table()
        ))?;
        let rows = stmt.query_map([], |r| {
            Ok(Totals {
                start: r.get(0)?,
                coin: r.get(1)?,
                worker: r.get(2)?,
                port: Port::from_code(r.get(3)?),
                outcome: Outcome::from_code(r.get(4)?),
                shares: r.get::<_, i64>(5)? as u64,
                difficulty: r.get(6)?,
            })
        })?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// The share history of one coin (and worker) from `since` for the API: hours from the
    /// detail and the hourly totals, days from the daily totals; oldest first, at most
    /// `limit` buckets.
    pub fn share_history(
        &self,
        coin: &str,
        worker: Option<&str>,
        since: i64,
        limit: usize,
    ) -> Result<Vec<ShareBucket>, StoreError> {
        let conn = self.lock();
        let mut stmt = conn.prepare_cached(
            "SELECT t.start, t.span, w.worker, t.port, t.outcome, sum(t.shares), sum(t.difficulty) FROM (
                SELECT at - at % 3600 AS start, 3600 AS span, worker_id, port, outcome, 1 AS shares, difficulty
                  FROM stratum_shares WHERE at >= ?3 - ?3 % 3600
                UNION ALL SELECT start, 3600, worker_id, port, outcome, shares, difficulty
                  FROM stratum_share_hours WHERE start + 3600 > ?3
                UNION ALL SELECT start, 86400, worker_id, port, outcome, shares, difficulty
                  FROM stratum_share_days WHERE start + 86400 > ?3
             ) t JOIN stratum_share_workers w ON w.id = t.worker_id
             WHERE w.coin = ?1 AND (?2 IS NULL OR w.worker = ?2)
             GROUP BY t.start, t.span, w.worker, t.port, t.outcome
             ORDER BY t.start, t.span, w.worker, t.port",
        )?;
        let mut rows = stmt.query(params![coin, worker, since])?;
        let mut out: Vec<ShareBucket> = Vec::new();
        while let Some(r) = rows.next()? {
            let (start, span_secs, worker): (i64, i64, String) = (r.get(0)?, r.get(1)?, r.get(2)?);
            let port = Port::from_code(r.get(3)?).name();
            let (shares, difficulty): (i64, f64) = (r.get(5)?, r.get(6)?);
            let same = out.last().is_some_and(|b| {
                (b.start, b.span_secs, b.worker.as_str(), b.port.as_str()) == (start, span_secs, &worker, port)
            });
            if !same {
                if out.len() == limit {
                    break;
                }
                out.push(ShareBucket { start, span_secs, worker, port: port.into(), ..Default::default() });
            }
            let bucket = out.last_mut().expect("pushed above");
            match Outcome::from_code(r.get(4)?) {
                Outcome::Accepted => {
                    bucket.accepted += shares as u64;
                    bucket.accepted_difficulty += difficulty;
                }
                Outcome::Rejected(code) => *bucket.rejected.entry(code.as_str().into()).or_insert(0) += shares as u64,
            }
        }
        Ok(out)
    }

    /// Share rows in detail (for the status figures and tests).
    pub fn share_count(&self) -> Result<u64, StoreError> {
        let conn = self.lock();
        Ok(conn.query_row("SELECT count(*) FROM stratum_shares", [], |r| r.get::<_, i64>(0))? as u64)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn share(at: i64, outcome: Outcome) -> Share {
        Share {
            at,
            coin: "btc".into(),
            worker: "bc1qexample.rig".into(),
            port: Port::Solo,
            outcome,
            difficulty: 1000.0,
            share_difficulty: 2500.0,
        }
    }

    #[test]
    fn a_full_buffer_counts_what_it_drops_and_keeps_the_oldest() {
        let log = ShareLog::new(3);
        for at in 0..5 {
            log.record(share(at, Outcome::Accepted));
        }
        assert_eq!(log.dropped(), 2);
        let taken = log.take();
        assert_eq!(taken.iter().map(|s| s.at).collect::<Vec<_>>(), [0, 1, 2]);
        // A failed write goes back ahead of what came since; beyond the capacity is dropped.
        log.record(share(10, Outcome::Accepted));
        log.record(share(11, Outcome::Accepted));
        log.put_back(taken);
        assert_eq!(log.take().iter().map(|s| s.at).collect::<Vec<_>>(), [0, 1, 2]);
        assert_eq!(log.dropped(), 4);
    }

    #[test]
    fn shares_round_trip_with_their_reason() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("state.db")).unwrap();
        let mut other = share(7, Outcome::Rejected(ErrorCode::Duplicate));
        other.worker = "bc1qother.rig".into();
        other.port = Port::Pool;
        let batch = vec![share(5, Outcome::Accepted), other, share(9, Outcome::Rejected(ErrorCode::Stale))];
        store.save_shares(&batch).unwrap();
        store.save_shares(&[share(11, Outcome::Accepted)]).unwrap();
        let all = store.shares("btc", None, 0, 100).unwrap();
        assert_eq!(all.len(), 4);
        assert_eq!(&all[..3], &batch[..]);
        let rig = store.shares("btc", Some("bc1qexample.rig"), 6, 100).unwrap();
        assert_eq!(rig.iter().map(|s| s.outcome.name()).collect::<Vec<_>>(), ["stale", "accepted"]);
        assert!(store.shares("ltc", None, 0, 100).unwrap().is_empty());
    }

    /// The size docs/stratum.md promises: a share row and its index entry under 56 bytes,
    /// so three months of a typical box's shares fit an SD card.
    #[test]
    fn a_share_row_costs_under_56_bytes_on_disk() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("state.db")).unwrap();
        let size = || {
            let conn = store.lock();
            let pages: i64 = conn.query_row("PRAGMA page_count", [], |r| r.get(0)).unwrap();
            let page: i64 = conn.query_row("PRAGMA page_size", [], |r| r.get(0)).unwrap();
            pages * page
        };
        let before = size();
        let rows = 50_000;
        let shares: Vec<Share> = (0..rows)
            .map(|i| Share {
                worker: format!("bc1qxy2kgdygjrsqtzq2n0yrf2493p83kkfjhx0wlh.bitaxe{}", i % 3),
                share_difficulty: 1000.0 / ((i % 997) as f64 + 0.5),
                ..share(1_750_000_000 + i / 2, Outcome::Accepted)
            })
            .collect();
        store.save_shares(&shares).unwrap();
        let per_row = (size() - before) as f64 / rows as f64;
        assert!(per_row < 56.0, "{per_row:.1} bytes a share");
    }
}
