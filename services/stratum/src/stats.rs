//! Per-worker statistics: shares by outcome, best shares, and hashrate estimates.
//!
//! Hashrate is estimated from accepted share difficulty with exponentially decaying
//! averages over 1 minute, 1 hour and 24 hours (three floats per worker, updated in O(1)
//! per share, no per-share history kept): the cheapest estimate that still reacts in a
//! minute and stays steady over a day. A young average is scaled up by how much of its
//! window it has seen, so a miner's first hour does not read as a fraction of its speed.

use crate::protocol::ErrorCode;
use serde::Serialize;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};

/// Averaging windows, seconds.
pub const WINDOWS: [f64; 3] = [60.0, 3600.0, 86_400.0];

/// The wall clock in unix seconds, the time base of every rate and timestamp here.
pub fn unix_now() -> f64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs_f64()).unwrap_or(0.0)
}

/// Work behind one share of difficulty 1.
pub const HASHES_PER_DIFF1: f64 = 4_294_967_296.0;

/// Decaying difficulty-per-second averages, one per window.
#[derive(Debug, Clone, Default, PartialEq, Serialize, serde::Deserialize)]
pub struct Rates {
    pub per_window: [f64; 3],
    /// Unix time (fractional seconds) the averages were last brought up to date.
    pub at: f64,
    /// When this worker's first share arrived: the averages' age.
    pub since: f64,
}

impl Rates {
    pub fn add(&mut self, difficulty: f64, now: f64) {
        self.decay_to(now);
        if self.since == 0.0 {
            self.since = now;
        }
        for (rate, window) in self.per_window.iter_mut().zip(WINDOWS) {
            *rate += difficulty / window;
        }
    }

    fn decay_to(&mut self, now: f64) {
        let dt = (now - self.at).max(0.0);
        if self.at > 0.0 {
            for (rate, window) in self.per_window.iter_mut().zip(WINDOWS) {
                *rate *= (-dt / window).exp();
            }
        }
        self.at = now;
    }

    /// Hashes per second over each window, as of `now`.
    pub fn hashrates(&self, now: f64) -> [f64; 3] {
        let mut out = [0.0; 3];
        if self.since == 0.0 {
            return out;
        }
        let dt = (now - self.at).max(0.0);
        let age = (now - self.since).max(1.0);
        for (i, window) in WINDOWS.iter().enumerate() {
            let decayed = self.per_window[i] * (-dt / window).exp();
            let seen = 1.0 - (-age / window).exp();
            out[i] = decayed / seen * HASHES_PER_DIFF1;
        }
        out
    }
}

/// Everything kept about one worker (`address.name`) of one coin.
#[derive(Debug, Clone, Default, Serialize)]
pub struct WorkerStats {
    pub coin: String,
    pub worker: String,
    pub accepted: u64,
    pub accepted_difficulty: f64,
    pub rejected: HashMap<&'static str, u64>,
    pub best_share: f64,
    pub best_share_at: i64,
    pub last_share_at: i64,
    pub rates: Rates,
    pub user_agent: String,
    pub difficulty: f64,
    pub connections: u32,
    pub blocks: u64,
    #[serde(skip)]
    pub dirty: bool,
}

impl WorkerStats {
    pub fn record_accepted(&mut self, share_difficulty: f64, assigned: f64, now: f64) {
        self.accepted += 1;
        self.accepted_difficulty += assigned;
        // Hashrate counts the difficulty the miner was asked for, not what it happened to
        // hit: the lucky share says nothing about speed.
        self.rates.add(assigned, now);
        self.last_share_at = now as i64;
        if share_difficulty > self.best_share {
            self.best_share = share_difficulty;
            self.best_share_at = now as i64;
        }
        self.dirty = true;
    }

    pub fn record_rejected(&mut self, code: ErrorCode, now: f64) {
        *self.rejected.entry(code.as_str()).or_insert(0) += 1;
        self.last_share_at = now as i64;
        self.dirty = true;
    }
}

pub type SharedWorker = Arc<Mutex<WorkerStats>>;

/// All workers of one server (every coin), shared by the connections and the API.
#[derive(Default)]
pub struct Registry {
    workers: Mutex<HashMap<(String, String), SharedWorker>>,
    /// Rejections before a worker is known (not subscribed, unauthorized, garbage).
    anonymous_rejects: Mutex<HashMap<(String, &'static str), u64>>,
}

/// Workers remembered at most; a hostile client inventing names cannot grow memory
/// without bound. Existing workers keep working when the cap is reached.
pub const MAX_WORKERS: usize = 20_000;

impl Registry {
    pub fn new() -> Registry {
        Registry::default()
    }

    /// Finds or creates a worker. `None` when the registry is full.
    pub fn worker(&self, coin: &str, worker: &str) -> Option<SharedWorker> {
        let mut map = self.workers.lock().expect("registry lock");
        if let Some(w) = map.get(&(coin.to_string(), worker.to_string())) {
            return Some(w.clone());
        }
        if map.len() >= MAX_WORKERS {
            return None;
        }
        let w = Arc::new(Mutex::new(WorkerStats {
            coin: coin.to_string(),
            worker: worker.to_string(),
            ..Default::default()
        }));
        map.insert((coin.to_string(), worker.to_string()), w.clone());
        Some(w)
    }

    /// Puts back a worker loaded from the database at start-up.
    pub fn restore(&self, stats: WorkerStats) {
        let key = (stats.coin.clone(), stats.worker.clone());
        self.workers.lock().expect("registry lock").insert(key, Arc::new(Mutex::new(stats)));
    }

    pub fn reject_anonymous(&self, coin: &str, code: ErrorCode) {
        *self.anonymous_rejects.lock().expect("registry lock").entry((coin.to_string(), code.as_str())).or_insert(0) +=
            1;
    }

    pub fn anonymous_rejects(&self, coin: &str) -> HashMap<&'static str, u64> {
        self.anonymous_rejects
            .lock()
            .expect("registry lock")
            .iter()
            .filter(|((c, _), _)| c == coin)
            .map(|((_, code), n)| (*code, *n))
            .collect()
    }

    /// A consistent copy of every worker, for the API and the database.
    pub fn snapshot(&self) -> Vec<WorkerStats> {
        let handles: Vec<SharedWorker> = self.workers.lock().expect("registry lock").values().cloned().collect();
        handles.iter().map(|w| w.lock().expect("worker lock").clone()).collect()
    }

    /// Marks workers changed again, after their write failed, so the next flush retries them.
    pub fn mark_dirty(&self, workers: &[WorkerStats]) {
        let map = self.workers.lock().expect("registry lock");
        for w in workers {
            if let Some(h) = map.get(&(w.coin.clone(), w.worker.clone())) {
                h.lock().expect("worker lock").dirty = true;
            }
        }
    }

    /// Copies of the workers changed since the last call, clearing their dirty flag.
    pub fn take_dirty(&self) -> Vec<WorkerStats> {
        let handles: Vec<SharedWorker> = self.workers.lock().expect("registry lock").values().cloned().collect();
        handles
            .iter()
            .filter_map(|w| {
                let mut w = w.lock().expect("worker lock");
                if w.dirty {
                    w.dirty = false;
                    Some(w.clone())
                } else {
                    None
                }
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn steady_shares_estimate_the_true_hashrate() {
        // A 1 TH/s miner at difficulty 4096 finds a share every 4096*2^32/1e12 = 17.6 s.
        let hashrate = 1e12;
        let diff = 4096.0;
        let interval = diff * HASHES_PER_DIFF1 / hashrate;
        let mut r = Rates::default();
        let mut t = 1_000_000.0;
        for _ in 0..2000 {
            r.add(diff, t);
            t += interval;
        }
        let [m1, h1, d1] = r.hashrates(t);
        for (name, est) in [("1m", m1), ("1h", h1), ("24h", d1)] {
            assert!((est / hashrate - 1.0).abs() < 0.35, "{name}: {est:e}");
        }
        // After an hour of silence the minute average is gone, the day average barely moved.
        let [m1, _, d1] = r.hashrates(t + 3600.0);
        assert!(m1 < hashrate * 1e-6);
        assert!(d1 > hashrate * 0.5);
    }

    #[test]
    fn best_share_and_rejections_are_kept() {
        let mut w = WorkerStats::default();
        w.record_accepted(5000.0, 1000.0, 10.0);
        w.record_accepted(3000.0, 1000.0, 11.0);
        w.record_rejected(ErrorCode::Duplicate, 12.0);
        w.record_rejected(ErrorCode::Duplicate, 13.0);
        assert_eq!(w.best_share, 5000.0);
        assert_eq!(w.best_share_at, 10);
        assert_eq!(w.accepted, 2);
        assert_eq!(w.rejected["duplicate"], 2);
    }

    #[test]
    fn registry_is_bounded_and_tracks_changes() {
        let r = Registry::new();
        let w = r.worker("btc", "a.x").unwrap();
        assert!(Arc::ptr_eq(&w, &r.worker("btc", "a.x").unwrap()));
        w.lock().unwrap().record_accepted(1.0, 1.0, 1.0);
        assert_eq!(r.take_dirty().len(), 1);
        assert_eq!(r.take_dirty().len(), 0);
    }
}
