//! The share history the page draws (issue 17, retention): accepted and refused shares (by
//! reason) of one coin, per hour for the last [`HOURS`] hours and per UTC day for the last
//! [`DAYS`] days, every worker and port together.
//!
//! The stratum server answers per worker, port and hour (or day, for totals older than a
//! year); the page would read thousands of those for a month of a busy pool, so the sums are
//! made here and the page gets 78 small rows. Hours and days with no share are listed with
//! zeros: the page draws a fixed timeline, and "nothing came" is worth seeing.

use crate::upstream::{Service, UpstreamError, Upstreams};
use minebox_api::stratum::{ShareBucket, SHARES};
use serde::Serialize;
use std::collections::{BTreeMap, HashSet};

/// Hours the hourly view covers, the current one last.
pub const HOURS: i64 = 48;
/// UTC days the daily view covers, today last.
pub const DAYS: i64 = 30;
const HOUR: i64 = 3600;
const DAY: i64 = 86_400;
/// Buckets asked for per request: well inside the stratum server's answer limit and the
/// page's own body limit for upstream answers.
pub const PAGE: usize = 5000;
/// Requests one answer makes at most (200,000 worker-hours: a month of ~270 workers);
/// beyond it the answer says it is incomplete rather than read on.
pub const PAGES: usize = 40;

/// The shares of one hour or day.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct ShareTotals {
    /// Unix time the hour or UTC day starts.
    pub start: i64,
    pub accepted: u64,
    /// Refused shares by the stratum server's reason (`stale`, `duplicate`, `low_difficulty`, ...).
    pub rejected: BTreeMap<String, u64>,
}

/// `GET /api/v1/shares?coin=`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ShareHistory {
    pub coin: String,
    /// The last [`HOURS`] hours, oldest first.
    pub hours: Vec<ShareTotals>,
    /// The last [`DAYS`] UTC days, oldest first.
    pub days: Vec<ShareTotals>,
    /// False when the server had more buckets than the page reads ([`PAGES`] × [`PAGE`]):
    /// the most recent hours are then missing from the sums.
    pub complete: bool,
}

/// Sums `buckets` (any workers, ports and spans, each at most once) into the hours and days
/// that end with the ones holding `now`.
pub fn summarize(coin: &str, buckets: &[ShareBucket], now: i64, complete: bool) -> ShareHistory {
    let this_hour = now - now.rem_euclid(HOUR);
    let today = now - now.rem_euclid(DAY);
    let first_hour = this_hour - (HOURS - 1) * HOUR;
    let first_day = today - (DAYS - 1) * DAY;
    let mut hours: Vec<ShareTotals> =
        (0..HOURS).map(|i| ShareTotals { start: first_hour + i * HOUR, ..ShareTotals::default() }).collect();
    let mut days: Vec<ShareTotals> =
        (0..DAYS).map(|i| ShareTotals { start: first_day + i * DAY, ..ShareTotals::default() }).collect();
    let add = |into: &mut ShareTotals, b: &ShareBucket| {
        into.accepted += b.accepted;
        for (reason, n) in &b.rejected {
            *into.rejected.entry(reason.clone()).or_insert(0) += n;
        }
    };
    for b in buckets {
        // Hour totals (span 3600) count in their hour and their day; day totals only in their day.
        if b.span_secs == HOUR && (first_hour..=this_hour).contains(&b.start) {
            add(&mut hours[((b.start - first_hour) / HOUR) as usize], b);
        }
        let day = b.start - b.start.rem_euclid(DAY);
        if (first_day..=today).contains(&day) {
            add(&mut days[((day - first_day) / DAY) as usize], b);
        }
    }
    ShareHistory { coin: coin.to_string(), hours, days, complete }
}

/// Reads the last [`DAYS`] days of `coin` from the stratum server, page by page, and sums them.
/// `coin` must be checked by the caller (it goes into the query as it is).
pub async fn fetch(up: &Upstreams, coin: &str, now: i64) -> Result<ShareHistory, UpstreamError> {
    let mut since = now - now.rem_euclid(DAY) - (DAYS - 1) * DAY;
    let mut seen = HashSet::new();
    let mut buckets = Vec::new();
    let mut complete = false;
    for _ in 0..PAGES {
        let page: Vec<ShareBucket> =
            up.get_as(Service::Stratum, &format!("{SHARES}?coin={coin}&since={since}&limit={PAGE}")).await?;
        let full = page.len() == PAGE;
        let next = page.last().map_or(since, |b| b.start);
        let before = buckets.len();
        // The server answers whole buckets, oldest first, and cuts a full page between two;
        // the next page starts at the last one's start, so that start's buckets come again
        // (and a day's total, which overlaps `since`, comes on every page): each counts once.
        for b in page {
            if seen.insert((b.start, b.span_secs, b.worker.clone(), b.port.clone())) {
                buckets.push(b);
            }
        }
        if !full {
            complete = true;
            break;
        }
        if next <= since && buckets.len() == before {
            // A full page of one start, all seen: more workers in one hour than a page holds.
            break;
        }
        since = next;
    }
    Ok(summarize(coin, &buckets, now, complete))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bucket(start: i64, span_secs: i64, worker: &str, accepted: u64, rejected: &[(&str, u64)]) -> ShareBucket {
        ShareBucket {
            start,
            span_secs,
            worker: worker.into(),
            port: "solo".into(),
            accepted,
            accepted_difficulty: accepted as f64,
            rejected: rejected.iter().map(|(r, n)| (r.to_string(), *n)).collect(),
        }
    }

    #[test]
    fn workers_sum_per_hour_and_day_and_old_buckets_fall_out() {
        // 2026-12-01 21:17:30 UTC.
        let now = 1_796_159_850;
        let hour = now - now % HOUR;
        let today = now - now % DAY;
        let buckets = [
            bucket(hour, HOUR, "a.rig1", 10, &[("stale", 1)]),
            bucket(hour, HOUR, "b.rig1", 5, &[("stale", 2), ("duplicate", 1)]),
            bucket(hour - 47 * HOUR, HOUR, "a.rig1", 7, &[]),
            // Before the 48 hours: in its day only.
            bucket(hour - 48 * HOUR, HOUR, "a.rig1", 3, &[("low_difficulty", 4)]),
            // A day's total (older hours folded by the server's retention): in its day only.
            bucket(today - 29 * DAY, DAY, "a.rig1", 100, &[("other", 1)]),
            // Before the 30 days: nowhere.
            bucket(today - 30 * DAY, DAY, "a.rig1", 1000, &[]),
        ];
        let h = summarize("btc", &buckets, now, true);
        assert_eq!((h.hours.len(), h.days.len()), (48, 30));
        let last = h.hours.last().unwrap();
        assert_eq!((last.start, last.accepted), (hour, 15));
        assert_eq!(last.rejected, BTreeMap::from([("duplicate".into(), 1), ("stale".into(), 3)]));
        assert_eq!((h.hours[0].start, h.hours[0].accepted), (hour - 47 * HOUR, 7));
        assert_eq!(h.hours.iter().map(|t| t.accepted).sum::<u64>(), 22, "the 49th hour back is not in the hours");
        assert_eq!(h.days.first().unwrap().start, today - 29 * DAY);
        assert_eq!(h.days.first().unwrap().accepted, 100);
        assert_eq!(h.days.iter().map(|t| t.accepted).sum::<u64>(), 125, "every hour in its day, once");
        let reasons: BTreeMap<String, u64> =
            h.days.iter().flat_map(|d| d.rejected.clone()).fold(BTreeMap::new(), |mut m, (r, n)| {
                *m.entry(r).or_insert(0) += n;
                m
            });
        assert_eq!(reasons.get("low_difficulty"), Some(&4));
        assert_eq!(reasons.get("other"), Some(&1));
    }
}
