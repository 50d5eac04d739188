//! The audit log: every change made through the page (settings, users, passwords,
//! sessions revoked, nodes started and stopped, snapshots, updates, miners pointed, the
//! MineBox Cloud link), with who and when. Admins read it on the page.
//!
//! Kept under the retention policy: entries older than a year go, and beyond 10,000 the
//! oldest go; both in batches of 500, so pruning never holds the database (and the
//! sign-ins waiting on it) for long, and a year of a busy box is a few MiB at most.

use crate::user_db::{DbError, UserDb};
use std::sync::Arc;

/// Entries older than this are pruned (seconds).
pub const MAX_AGE: i64 = 365 * 24 * 3600;
/// At most this many entries are kept.
pub const MAX_ROWS: i64 = 10_000;
/// Rows deleted per statement while pruning.
const BATCH: i64 = 500;
/// Detail text is cut to this many characters (it is for people, not a data store).
const MAX_DETAIL: usize = 500;

#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Entry {
    pub id: i64,
    /// Unix seconds.
    pub at: i64,
    /// The user, or "recovery console", "migration".
    pub who: String,
    pub action: String,
    pub detail: String,
}

pub struct Audit {
    db: Arc<UserDb>,
}

impl Audit {
    pub fn new(db: Arc<UserDb>) -> Audit {
        Audit { db }
    }

    /// Notes a change. A failure to note it is logged, not returned: the change is made
    /// already, and the journal then has the record instead.
    pub fn record(&self, now: i64, who: &str, action: &str, detail: &str) {
        let detail: String = detail.chars().take(MAX_DETAIL).collect();
        tracing::info!(who, action, detail, "audit");
        let r = self.db.lock().execute(
            "INSERT INTO audit (at, who, action, detail) VALUES (?1, ?2, ?3, ?4)",
            (now, who, action, &detail),
        );
        if let Err(e) = r {
            tracing::warn!(error = %self.db.damaged(e), who, action, "the audit log could not be written");
        }
    }

    /// Newest first: `limit` entries older than entry `before` (from the newest if none).
    pub fn list(&self, limit: i64, before: Option<i64>) -> Result<Vec<Entry>, DbError> {
        let conn = self.db.lock();
        let mut st = conn
            .prepare(
                "SELECT id, at, who, action, detail FROM audit WHERE (?1 IS NULL OR id < ?1) ORDER BY id DESC LIMIT ?2",
            )
            .map_err(|e| self.db.damaged(e))?;
        let rows = st
            .query_map((before, limit), |r| {
                Ok(Entry { id: r.get(0)?, at: r.get(1)?, who: r.get(2)?, action: r.get(3)?, detail: r.get(4)? })
            })
            .map_err(|e| self.db.damaged(e))?;
        rows.collect::<Result<Vec<_>, _>>().map_err(|e| self.db.damaged(e))
    }

    /// Applies the retention policy; how many entries went.
    pub fn prune(&self, now: i64) -> Result<usize, DbError> {
        let mut removed = 0;
        loop {
            // One batch per lock: sign-ins and page requests get the database between them.
            let n = self
                .db
                .lock()
                .execute(
                    "DELETE FROM audit WHERE id IN (SELECT id FROM audit WHERE at < ?1 ORDER BY id LIMIT ?2)",
                    (now - MAX_AGE, BATCH),
                )
                .map_err(|e| self.db.damaged(e))?;
            removed += n;
            if n < BATCH as usize {
                break;
            }
        }
        loop {
            let n = self
                .db
                .lock()
                .execute(
                    "DELETE FROM audit WHERE id IN (SELECT id FROM audit ORDER BY id LIMIT \
                     min(?2, max(0, (SELECT count(*) FROM audit) - ?1)))",
                    (MAX_ROWS, BATCH),
                )
                .map_err(|e| self.db.damaged(e))?;
            removed += n;
            if n == 0 {
                break;
            }
        }
        Ok(removed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn audit(dir: &std::path::Path) -> Audit {
        Audit::new(Arc::new(UserDb::open(&dir.join("users.db"), &dir.join("accounts"), 0).unwrap()))
    }

    #[test]
    fn entries_list_newest_first_and_page() {
        let dir = tempfile::tempdir().unwrap();
        let a = audit(dir.path());
        for i in 0..5 {
            a.record(100 + i, "alice", "node started", &format!("btc {i}"));
        }
        let first = a.list(2, None).unwrap();
        assert_eq!(first.iter().map(|e| e.detail.as_str()).collect::<Vec<_>>(), ["btc 4", "btc 3"]);
        let next = a.list(10, Some(first[1].id)).unwrap();
        assert_eq!(next.iter().map(|e| e.detail.as_str()).collect::<Vec<_>>(), ["btc 2", "btc 1", "btc 0"]);
    }

    #[test]
    fn retention_drops_what_is_older_than_a_year_and_beyond_the_cap() {
        let dir = tempfile::tempdir().unwrap();
        let a = audit(dir.path());
        let year = MAX_AGE;
        for i in 0..1200 {
            a.record(i, "alice", "settings changed", "old");
        }
        a.record(year + 5000, "alice", "settings changed", "recent");
        assert_eq!(a.prune(year + 5000).unwrap(), 1200, "more than two batches of old entries go");
        assert_eq!(a.list(10, None).unwrap().len(), 1);
        for i in 0..MAX_ROWS + 700 {
            a.record(year + 6000 + i, "alice", "node started", "btc");
        }
        a.prune(year + 6000 + MAX_ROWS + 700).unwrap();
        let kept = a.list(MAX_ROWS + 1000, None).unwrap();
        assert_eq!(kept.len() as i64, MAX_ROWS);
        assert_eq!(kept.last().unwrap().at, year + 6000 + 700, "the oldest went first");
    }
}
