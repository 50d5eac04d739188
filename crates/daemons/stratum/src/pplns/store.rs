//! Pool mode's tables in the stratum server's SQLite database (`pplns_*`).
//!
//! - `pplns_window`: the window's snapshot per coin, written when it changed at most once a
//!   minute, at shutdown and with every pool block (an SD card wears with every write; a
//!   power cut loses at most the last minute's shares from the window).
//! - `pplns_carry`: the balances carried between blocks, written with each pool block and
//!   each snapshot.
//! - `pplns_payouts`: one row per block and user, written in the same transaction as the
//!   block's own row, so a recorded block always has its payouts. A row's state follows its
//!   block's (`stratum_blocks`): pending until 100 confirmations, then confirmed; orphaned
//!   (or rejected) with its block. The user's name and address are kept in the row, so the
//!   history of a removed user still reads.

use super::desk::{difficulty_of, PplnsJob, Saved};
use super::window::UserId;
use crate::store::{BlockRecord, Store, StoreError};
use rusqlite::{params, OptionalExtension};

const SCHEMA: &str = r#"
CREATE TABLE IF NOT EXISTS pplns_window (
    coin TEXT PRIMARY KEY,
    snapshot BLOB NOT NULL,
    saved_at INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS pplns_carry (
    coin TEXT NOT NULL,
    payee_id INTEGER NOT NULL,
    sats INTEGER NOT NULL,
    PRIMARY KEY (coin, payee_id)
);
CREATE TABLE IF NOT EXISTS pplns_payouts (
    block_hash TEXT NOT NULL,
    coin TEXT NOT NULL,
    height INTEGER NOT NULL,
    found_at INTEGER NOT NULL,
    payee_id INTEGER NOT NULL,
    user TEXT NOT NULL,
    address TEXT NOT NULL,
    amount_sats INTEGER NOT NULL,
    carry_sats INTEGER NOT NULL,
    shares INTEGER NOT NULL,
    work REAL NOT NULL,
    window_work REAL NOT NULL,
    window_shares INTEGER NOT NULL,
    config_version INTEGER NOT NULL,
    PRIMARY KEY (block_hash, payee_id)
);
CREATE INDEX IF NOT EXISTS pplns_payouts_user ON pplns_payouts (coin, user, found_at);
"#;

fn put_carry(tx: &rusqlite::Transaction<'_>, coin: &str, carry: &[(UserId, i64)]) -> rusqlite::Result<()> {
    tx.execute("DELETE FROM pplns_carry WHERE coin = ?1", params![coin])?;
    for (u, sats) in carry {
        tx.execute("INSERT INTO pplns_carry (coin, payee_id, sats) VALUES (?1, ?2, ?3)", params![coin, u.0, sats])?;
    }
    Ok(())
}

fn put_window(tx: &rusqlite::Transaction<'_>, coin: &str, saved: &Saved, now: i64) -> rusqlite::Result<()> {
    tx.execute(
        "INSERT INTO pplns_window (coin, snapshot, saved_at) VALUES (?1, ?2, ?3)
         ON CONFLICT(coin) DO UPDATE SET snapshot = excluded.snapshot, saved_at = excluded.saved_at",
        params![coin, super::desk::codec::encode(&saved.window), now],
    )?;
    Ok(())
}

impl Store {
    /// Creates the pool tables (once per start, when a coin has pool mode on).
    pub fn open_pplns(&self) -> Result<(), StoreError> {
        self.conn.lock().expect("store lock").execute_batch(SCHEMA)?;
        Ok(())
    }

    /// The window and carry saved for `coin`, if any. A snapshot that cannot be read (cut
    /// short, of an unknown version, or not a blob at all: a hand edit) is dropped with a log
    /// line, and the window starts empty: never a reason not to start, nor to pay from it.
    pub fn load_pplns(&self, coin: &str) -> Result<Option<Saved>, StoreError> {
        use rusqlite::types::Value;
        let conn = self.conn.lock().expect("store lock");
        // Read as any value: SQLite does not enforce the column's type, and a row of another
        // type must not stop the server (tests/pool_power_cut.rs).
        let stored: Option<Value> = conn
            .query_row("SELECT snapshot FROM pplns_window WHERE coin = ?1", params![coin], |r| r.get(0))
            .optional()?;
        let mut stmt = conn.prepare("SELECT payee_id, sats FROM pplns_carry WHERE coin = ?1")?;
        let carry: Vec<(UserId, i64)> =
            stmt.query_map(params![coin], |r| Ok((UserId(r.get(0)?), r.get(1)?)))?.collect::<Result<_, _>>()?;
        let decoded = match stored {
            None => return Ok((!carry.is_empty()).then(|| Saved { window: empty_window(), carry })),
            Some(Value::Blob(b)) => {
                super::desk::codec::decode(&b).ok_or_else(|| format!("{} bytes, cut short or damaged", b.len()))
            }
            Some(other) => Err(format!("a {:?} value, not a snapshot", other.data_type())),
        };
        let window = match decoded {
            Ok(w) => w,
            Err(what) => {
                tracing::error!(
                    coin,
                    snapshot = %what,
                    "saved PPLNS window unreadable; the window starts empty (balances kept): shares from now on fill it"
                );
                empty_window()
            }
        };
        Ok(Some(Saved { window, carry }))
    }

    /// Saves a desk's snapshot in one transaction.
    pub fn save_pplns(&self, coin: &str, saved: &Saved, now: i64) -> Result<(), StoreError> {
        let mut conn = self.conn.lock().expect("store lock");
        let tx = conn.transaction()?;
        put_window(&tx, coin, saved, now)?;
        put_carry(&tx, coin, &saved.carry)?;
        tx.commit()?;
        Ok(())
    }

    /// Records a block found on a pool job: the block, one payout row per user of its split,
    /// the carry it leaves and the window as it stands, in one transaction.
    pub fn record_pool_block(&self, b: &BlockRecord, job: &PplnsJob, window: &Saved) -> Result<(), StoreError> {
        let mut conn = self.conn.lock().expect("store lock");
        let tx = conn.transaction()?;
        crate::store::insert_block(&tx, b)?;
        for p in &job.parts {
            tx.execute(
                "INSERT INTO pplns_payouts (block_hash, coin, height, found_at, payee_id, user, address, amount_sats,
                    carry_sats, shares, work, window_work, window_shares, config_version)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14)
                 ON CONFLICT(block_hash, payee_id) DO NOTHING",
                params![
                    b.block.hash,
                    b.block.coin,
                    b.block.height as i64,
                    b.block.found_at,
                    p.user.0,
                    p.name,
                    p.address,
                    p.amount_sats as i64,
                    p.carry_sats,
                    p.shares as i64,
                    difficulty_of(p.work),
                    difficulty_of(job.window_work),
                    job.window_shares as i64,
                    job.config_version as i64,
                ],
            )?;
        }
        let carry: Vec<(UserId, i64)> = job.carry_after.iter().collect();
        put_carry(&tx, &b.block.coin, &carry)?;
        put_window(&tx, &b.block.coin, window, b.block.found_at)?;
        tx.commit()?;
        Ok(())
    }

    /// Payout rows, newest block first, with their block's state.
    pub fn pool_payouts(
        &self,
        coin: Option<&str>,
        user: Option<&str>,
        limit: usize,
    ) -> Result<Vec<minebox_api::stratum::PoolPayout>, StoreError> {
        let conn = self.conn.lock().expect("store lock");
        let mut stmt = conn.prepare(
            "SELECT p.coin, p.block_hash, p.height, p.found_at, p.user, p.address, p.amount_sats, p.carry_sats,
                    p.shares, p.work, p.window_work, p.window_shares, p.config_version,
                    COALESCE(b.status, 'submitting'), COALESCE(b.confirmations, 0)
             FROM pplns_payouts p LEFT JOIN stratum_blocks b ON b.hash = p.block_hash
             WHERE (?1 IS NULL OR p.coin = ?1) AND (?2 IS NULL OR p.user = ?2)
             ORDER BY p.found_at DESC, p.height DESC, p.amount_sats DESC, p.user
             LIMIT ?3",
        )?;
        let rows = stmt.query_map(params![coin, user, limit as i64], |r| {
            let status: String = r.get(13)?;
            let confirmations: i64 = r.get(14)?;
            let state = match status.as_str() {
                "accepted" if confirmations >= crate::block::MATURITY => "confirmed",
                "orphaned" => "orphaned",
                "rejected" => "rejected",
                _ => "pending",
            };
            Ok(minebox_api::stratum::PoolPayout {
                coin: r.get(0)?,
                block_hash: r.get(1)?,
                height: r.get::<_, i64>(2)? as u64,
                found_at: r.get(3)?,
                user: r.get(4)?,
                address: r.get(5)?,
                amount_sats: r.get::<_, i64>(6)? as u64,
                carry_sats: r.get(7)?,
                shares: r.get::<_, i64>(8)? as u64,
                work: r.get(9)?,
                window_work: r.get(10)?,
                window_shares: r.get::<_, i64>(11)? as u64,
                config_version: r.get::<_, i64>(12)? as u64,
                state: state.into(),
                confirmations: confirmations.max(0) as u64,
            })
        })?;
        Ok(rows.collect::<Result<_, _>>()?)
    }
}

fn empty_window() -> super::window::WindowSnapshot {
    super::window::WindowSnapshot { size: 1, summary: vec![], runs: vec![] }
}
