//! The retention policy of the share history (the pool spec's, sized for an SD card):
//! every share in detail for 3 months, then hourly totals up to a year, daily totals up to
//! two years, then nothing.
//!
//! A background task enforces it hourly in small steps: each step is one transaction of at
//! most [`Policy::batch`] rows, with a pause between steps, so the database lock (shared
//! with block records and statistics) is never held long and the card sees a few small
//! writes rather than one large one. The share path itself never waits for it: shares go
//! to a buffer in memory ([`crate::share_log`]).

use crate::share_log::Span;
use crate::store::{Store, StoreError};
use rusqlite::{params, OptionalExtension, Transaction};
use std::time::Duration;
use tokio_util::sync::CancellationToken;

pub const DAY: i64 = 86_400;

/// How often the policy is enforced.
pub const EVERY: Duration = Duration::from_secs(3600);
/// The pause between two steps of one pass.
pub const PAUSE: Duration = Duration::from_millis(500);

/// How long each kind of row is kept, seconds, and how much one step may change.
#[derive(Debug, Clone)]
pub struct Policy {
    /// Share detail older than this is folded into hourly totals.
    pub detail: i64,
    /// Hourly totals whose hour started before this age are folded into daily totals.
    pub hourly: i64,
    /// Daily totals whose day started before this age are deleted.
    pub daily: i64,
    /// Share detail kept at most, whatever its age: beyond it the oldest is folded early,
    /// so a box with many miners cannot fill its card. Counted from the id range (at least
    /// the true count: rows go oldest first), which costs nothing to read.
    pub max_detail_rows: i64,
    /// Rows one step reads and changes at most.
    pub batch: usize,
}

impl Default for Policy {
    fn default() -> Self {
        Policy { detail: 90 * DAY, hourly: 365 * DAY, daily: 730 * DAY, max_detail_rows: 10_000_000, batch: 5000 }
    }
}

/// What one step did (a step does one of these; all zero: nothing left to do).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Step {
    /// Share rows folded into hourly totals.
    pub folded_shares: usize,
    /// Hourly rows folded into daily totals.
    pub folded_hours: usize,
    /// Daily rows deleted.
    pub deleted_days: usize,
}

impl Step {
    pub fn rows(&self) -> usize {
        self.folded_shares + self.folded_hours + self.deleted_days
    }

    fn add(&mut self, other: Step) {
        self.folded_shares += other.folded_shares;
        self.folded_hours += other.folded_hours;
        self.deleted_days += other.deleted_days;
    }
}

/// Rows folded into coarser totals: where they are, what orders them (time, then key),
/// and what one row counts for.
#[derive(Clone, Copy)]
struct Level {
    table: &'static str,
    time: &'static str,
    key: &'static str,
    /// 1 for a share, its `shares` for a total.
    count: &'static str,
    into: Span,
}

const SHARES: Level = Level { table: "stratum_shares", time: "at", key: "id", count: "count(*)", into: Span::Hour };
const HOURS: Level =
    Level { table: Span::Hour.table(), time: "start", key: "rowid", count: "sum(shares)", into: Span::Day };

/// Folds the oldest rows of `level` (at most `limit`, all with their time before `cutoff`)
/// into its coarser totals, adding to totals already there, and deletes them.
fn fold(tx: &Transaction, level: &Level, cutoff: i64, limit: usize) -> rusqlite::Result<usize> {
    let Level { table: from, time, key, count, into: to } = *level;
    if limit == 0 {
        return Ok(0);
    }
    // The last row of the batch, if there are more than `limit` to go.
    let end: Option<(i64, i64)> = tx
        .query_row(
            &format!("SELECT {time}, {key} FROM {from} WHERE {time} < ?1 ORDER BY {time}, {key} LIMIT 1 OFFSET ?2"),
            params![cutoff, limit as i64 - 1],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .optional()?;
    let (end_time, end_key) = end.unwrap_or((i64::MAX, i64::MAX));
    let batch = format!("{time} < ?1 AND ({time}, {key}) <= (?2, ?3)");
    let secs = to.secs();
    tx.execute(
        &format!(
            "INSERT INTO {to} (start, worker_id, port, outcome, shares, difficulty)
             SELECT {time} - ({time} % {secs}), worker_id, port, outcome, {count}, sum(difficulty)
             FROM {from} WHERE {batch} GROUP BY 1, 2, 3, 4
             ON CONFLICT (start, worker_id, port, outcome)
             DO UPDATE SET shares = shares + excluded.shares, difficulty = difficulty + excluded.difficulty",
            to = to.table()
        ),
        params![cutoff, end_time, end_key],
    )?;
    tx.execute(&format!("DELETE FROM {from} WHERE {batch}"), params![cutoff, end_time, end_key])
}

impl Store {
    /// One step of the policy as of `now` (unix seconds), in one transaction: the first of
    /// these with anything to do, at most `policy.batch` rows: fold old share detail into
    /// hours; fold the oldest detail beyond the row cap; fold old hours into days; delete
    /// old days. A pass is steps until one does nothing.
    pub fn retention_step(&self, policy: &Policy, now: i64) -> Result<Step, StoreError> {
        let mut conn = self.lock();
        let tx = conn.transaction()?;
        let mut step = Step::default();
        let limit = policy.batch;
        let detail = |cutoff, limit| fold(&tx, &SHARES, cutoff, limit);
        step.folded_shares = detail(now - policy.detail, limit)?;
        if step.rows() == 0 {
            let (first, last): (Option<i64>, Option<i64>) =
                tx.query_row("SELECT min(id), max(id) FROM stratum_shares", [], |r| Ok((r.get(0)?, r.get(1)?)))?;
            if let (Some(first), Some(last)) = (first, last) {
                let over = (last - first + 1).saturating_sub(policy.max_detail_rows);
                if over > 0 {
                    step.folded_shares = detail(i64::MAX, limit.min(over as usize))?;
                }
            }
        }
        if step.rows() == 0 {
            step.folded_hours = fold(&tx, &HOURS, now - policy.hourly, limit)?;
        }
        if step.rows() == 0 {
            step.deleted_days = tx.execute(
                "DELETE FROM stratum_share_days WHERE rowid IN
                 (SELECT rowid FROM stratum_share_days WHERE start < ?1 ORDER BY start LIMIT ?2)",
                params![now - policy.daily, limit as i64],
            )?;
        }
        tx.commit()?;
        Ok(step)
    }
}

/// Enforces `policy` every `every` (first at start), one step at a time with `pause`
/// between steps, until `shutdown`.
pub async fn run(store: Store, policy: Policy, every: Duration, pause: Duration, shutdown: CancellationToken) {
    let mut tick = tokio::time::interval(every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tick.tick() => {}
        }
        let mut total = Step::default();
        loop {
            let (store, policy) = (store.clone(), policy.clone());
            let now = crate::stats::unix_now() as i64;
            match tokio::task::spawn_blocking(move || store.retention_step(&policy, now)).await {
                Ok(Ok(step)) if step.rows() == 0 => break,
                Ok(Ok(step)) => total.add(step),
                Ok(Err(e)) => {
                    tracing::warn!(error = %e, "share history retention failed; retried within the hour");
                    break;
                }
                Err(e) => {
                    tracing::error!(error = %e, "share history retention panicked");
                    break;
                }
            }
            tokio::select! {
                _ = shutdown.cancelled() => return,
                _ = tokio::time::sleep(pause) => {}
            }
        }
        if total.rows() > 0 {
            tracing::info!(
                folded_shares = total.folded_shares,
                folded_hours = total.folded_hours,
                deleted_days = total.deleted_days,
                "share history retention applied"
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::ErrorCode;
    use crate::share_log::{Outcome, Port, Share, Totals};
    use std::collections::BTreeMap;

    /// A day boundary (2024-10-04 00:00 UTC), so the cutoffs fall on whole hours and days.
    const NOW: i64 = 20_000 * DAY;

    fn share(at: i64, worker: &str, outcome: Outcome, difficulty: f64) -> Share {
        Share {
            at,
            coin: "btc".into(),
            worker: worker.into(),
            port: Port::Solo,
            outcome,
            difficulty,
            share_difficulty: difficulty * 2.0,
        }
    }

    /// Two and a half years of shares, one every 20 minutes, every fifth from a second
    /// worker and refused as a duplicate.
    fn history() -> Vec<Share> {
        let start = NOW - 912 * DAY;
        (0..)
            .map(|i| start + i * 1200)
            .take_while(|at| *at < NOW)
            .enumerate()
            .map(|(i, at)| {
                if i % 5 == 4 {
                    share(at, "b.rig", Outcome::Rejected(ErrorCode::Duplicate), 500.0)
                } else {
                    share(at, "a.rig", Outcome::Accepted, 1000.0 + (i % 3) as f64)
                }
            })
            .collect()
    }

    /// What the totals must be: the shares in `range`, summed per `span`.
    fn expected(shares: &[Share], range: std::ops::Range<i64>, span: Span) -> Vec<Totals> {
        let mut sums: BTreeMap<(i64, String, &'static str), (u64, f64, Outcome)> = BTreeMap::new();
        for s in shares.iter().filter(|s| range.contains(&s.at)) {
            let start = s.at - s.at % span.secs();
            let e = sums.entry((start, s.worker.clone(), s.outcome.name())).or_insert((0, 0.0, s.outcome));
            e.0 += 1;
            e.1 += s.difficulty;
        }
        sums.into_iter()
            .map(|((start, worker, _), (shares, difficulty, outcome))| Totals {
                start,
                coin: "btc".into(),
                worker,
                port: Port::Solo,
                outcome,
                shares,
                difficulty,
            })
            .collect()
    }

    /// Runs steps until one does nothing; every step stays within the batch.
    fn pass(store: &Store, policy: &Policy, now: i64) -> Vec<Step> {
        let mut steps = Vec::new();
        loop {
            let step = store.retention_step(policy, now).unwrap();
            assert!(step.rows() <= policy.batch, "a step changed {} rows, batch {}", step.rows(), policy.batch);
            if step.rows() == 0 {
                return steps;
            }
            steps.push(step);
        }
    }

    #[test]
    fn an_aged_database_keeps_detail_three_months_hours_a_year_days_two_years() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("state.db")).unwrap();
        let shares = history();
        store.save_shares(&shares).unwrap();
        let policy = Policy { batch: 4000, ..Policy::default() };

        let steps = pass(&store, &policy, NOW);
        let folded: usize = steps.iter().map(|s| s.folded_shares).sum();
        let old = shares.iter().filter(|s| s.at < NOW - 90 * DAY).count();
        assert_eq!(folded, old, "every share older than three months was folded");
        assert!(steps.len() > old / policy.batch, "the work was split into batches: {steps:?}");

        let detail = store.shares("btc", None, 0, usize::MAX).unwrap();
        let recent: Vec<Share> = shares.iter().filter(|s| s.at >= NOW - 90 * DAY).cloned().collect();
        assert_eq!(detail, recent, "detail is exactly the last three months");
        assert!(detail.iter().any(|s| s.outcome == Outcome::Rejected(ErrorCode::Duplicate)));

        let hours = store.share_totals(Span::Hour).unwrap();
        assert_eq!(hours, expected(&shares, NOW - 365 * DAY..NOW - 90 * DAY, Span::Hour));
        let days = store.share_totals(Span::Day).unwrap();
        assert_eq!(days, expected(&shares, NOW - 730 * DAY..NOW - 365 * DAY, Span::Day));
        assert!(!days.is_empty() && !hours.is_empty());

        // What the API shows: every share of the last two years counted once, in hours for
        // the last year and in days before.
        let history = store.share_history("btc", None, 0, usize::MAX).unwrap();
        let kept = || shares.iter().filter(|s| s.at >= NOW - 730 * DAY);
        let accepted = kept().filter(|s| s.outcome == Outcome::Accepted).count() as u64;
        assert_eq!(history.iter().map(|b| b.accepted).sum::<u64>(), accepted);
        let duplicates: u64 = history.iter().filter_map(|b| b.rejected.get("duplicate")).sum();
        assert_eq!(duplicates, kept().count() as u64 - accepted);
        assert!(history.iter().all(|b| (b.span_secs == DAY) == (b.start < NOW - 365 * DAY)));

        // Applied again, nothing changes; a day later, one more day of each moves on.
        assert!(pass(&store, &policy, NOW).is_empty());
        pass(&store, &policy, NOW + DAY);
        assert_eq!(
            store.share_totals(Span::Day).unwrap(),
            expected(&shares, NOW + DAY - 730 * DAY..NOW + DAY - 365 * DAY, Span::Day)
        );
        assert_eq!(store.shares("btc", None, 0, usize::MAX).unwrap()[0].at, NOW + DAY - 90 * DAY);
    }

    #[test]
    fn beyond_the_row_cap_the_oldest_detail_is_folded_early() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("state.db")).unwrap();
        let shares: Vec<Share> =
            (0..1000).map(|i| share(NOW - 1000 * 60 + i * 60, "a.rig", Outcome::Accepted, 1.0)).collect();
        store.save_shares(&shares).unwrap();
        let policy = Policy { batch: 300, max_detail_rows: 250, ..Policy::default() };
        let steps = pass(&store, &policy, NOW);
        assert_eq!(steps.len(), 3, "750 rows over the cap, 300 a step: {steps:?}");
        let detail = store.shares("btc", None, 0, usize::MAX).unwrap();
        assert_eq!(detail, shares[750..], "the newest 250 stay in detail");
        let hours = store.share_totals(Span::Hour).unwrap();
        assert_eq!(hours, expected(&shares, 0..shares[750].at, Span::Hour));
    }
}
