//! Per-worker statistics: shares by outcome, best shares, and hashrate estimates.
//!
//! Hashrate is estimated from accepted share difficulty with exponentially decaying
//! averages over 1 minute, 1 hour and 24 hours (three floats per worker, updated in O(1)
//! per share, no per-share history kept): the cheapest estimate that still reacts in a
//! minute and stays steady over a day. A young average is scaled up by how much of its
//! window it has seen, so a miner's first hour does not read as a fraction of its speed.

use crate::protocol::ErrorCode;
use serde::Serialize;
use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::{Arc, Mutex};

/// Averaging windows, seconds.
pub const WINDOWS: [f64; 3] = [60.0, 3600.0, 86_400.0];

/// The wall clock in unix seconds, the time base of every rate and timestamp here.
pub use minebox_platform::clock::unix_secs_f64 as unix_now;

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
    /// Unix time the worker last authorized or sent a share: the registry forgets the
    /// least recently seen first.
    pub last_seen: i64,
    pub rates: Rates,
    pub user_agent: String,
    pub difficulty: f64,
    pub connections: u32,
    pub blocks: u64,
    /// The address this worker's blocks pay, and whose it is: set when it authorizes (not
    /// stored: a worker restored from the database shows none until it reconnects).
    pub payout_address: String,
    pub paid_to: Option<crate::payout::PaidTo>,
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
        self.last_seen = self.last_seen.max(now as i64);
        if share_difficulty > self.best_share {
            self.best_share = share_difficulty;
            self.best_share_at = now as i64;
        }
        self.dirty = true;
    }

    pub fn record_rejected(&mut self, code: ErrorCode, now: f64) {
        *self.rejected.entry(code.as_str()).or_insert(0) += 1;
        self.last_share_at = now as i64;
        self.last_seen = self.last_seen.max(now as i64);
        self.dirty = true;
    }
}

pub type SharedWorker = Arc<Mutex<WorkerStats>>;

/// Bounds of the worker registry (see [`crate::connection::Limits`] for the meaning).
#[derive(Debug, Clone)]
pub struct WorkerLimits {
    pub max_workers: usize,
    pub per_address: usize,
    pub new_per_min: f64,
    pub new_burst: f64,
}

impl Default for WorkerLimits {
    fn default() -> Self {
        WorkerLimits::from(&crate::connection::Limits::default())
    }
}

impl From<&crate::connection::Limits> for WorkerLimits {
    fn from(l: &crate::connection::Limits) -> Self {
        WorkerLimits {
            max_workers: l.max_workers.max(1),
            per_address: l.workers_per_address.max(1),
            new_per_min: l.new_workers_per_min,
            new_burst: l.new_worker_burst,
        }
    }
}

/// Why a new worker name was not taken.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum WorkerRefusal {
    #[error("too many new worker names from your address; reuse an existing name or try again in a minute")]
    TooManyNew,
}

/// Worker (coin, name) pairs as the registry keys them.
type Key = (String, String);
/// Least-recently-seen order: last seen (unix seconds), then a sequence number.
type Seen = (i64, u64);

/// Candidates looked at per eviction: connected workers met on the way are moved to the
/// back (they are being seen now), so a pass is short even when many are connected.
const EVICTION_SCAN: usize = 64;
/// Addresses whose new-worker rate is tracked at most.
const MAX_TRACKED_ADDRESSES: usize = 4096;
/// Forgotten workers waiting to be deleted from the database at most (more are deleted at
/// the next start, when the caps are applied to what is loaded).
const MAX_PENDING_FORGET: usize = 100_000;
/// Workers forgotten at most by one call that brings the table back within its caps.
const TRIM_PER_CALL: usize = 4096;

struct Entry {
    handle: SharedWorker,
    seen: Seen,
}

#[derive(Default)]
struct Inner {
    workers: HashMap<Key, Entry>,
    /// Every worker by last seen, oldest first.
    order: BTreeMap<Seen, Key>,
    /// Each payout address's workers by last seen.
    by_address: HashMap<(String, String), BTreeMap<Seen, String>>,
    seq: u64,
    /// Forgotten since the last flush: their rows are deleted from the database.
    forgotten: HashSet<Key>,
    new_worker_rates: HashMap<std::net::IpAddr, crate::connection::TokenBucket>,
}

/// The payout address part of a worker name (`address.rig`).
fn address_of(worker: &str) -> &str {
    worker.split_once('.').map_or(worker, |(a, _)| a)
}

impl Inner {
    fn next_seen(&mut self, at: i64) -> Seen {
        self.seq += 1;
        (at, self.seq)
    }

    fn insert(&mut self, key: Key, handle: SharedWorker, at: i64) {
        let seen = self.next_seen(at);
        self.order.insert(seen, key.clone());
        self.by_address.entry((key.0.clone(), address_of(&key.1).to_string())).or_default().insert(seen, key.1.clone());
        self.forgotten.remove(&key);
        self.workers.insert(key, Entry { handle, seen });
    }

    /// Moves a worker to the back of the order: seen at `at`.
    fn touch(&mut self, key: &Key, at: i64) {
        let Some(old) = self.workers.get(key).map(|e| e.seen) else { return };
        let seen = self.next_seen(at.max(old.0));
        self.order.remove(&old);
        self.order.insert(seen, key.clone());
        if let Some(set) = self.by_address.get_mut(&(key.0.clone(), address_of(&key.1).to_string())) {
            set.remove(&old);
            set.insert(seen, key.1.clone());
        }
        if let Some(e) = self.workers.get_mut(key) {
            e.seen = seen;
        }
    }

    fn remove(&mut self, key: &Key) {
        let Some(e) = self.workers.remove(key) else { return };
        self.order.remove(&e.seen);
        let akey = (key.0.clone(), address_of(&key.1).to_string());
        if let Some(set) = self.by_address.get_mut(&akey) {
            set.remove(&e.seen);
            if set.is_empty() {
                self.by_address.remove(&akey);
            }
        }
        if self.forgotten.len() < MAX_PENDING_FORGET {
            self.forgotten.insert(key.clone());
        }
    }

    /// Forgets the least recently seen worker that is not connected, among the whole
    /// registry or one address's workers. False when every candidate looked at is connected.
    fn evict_one(&mut self, address: Option<&(String, String)>, at: i64) -> bool {
        for _ in 0..EVICTION_SCAN {
            let candidate = match address {
                Some(a) => self
                    .by_address
                    .get(a)
                    .and_then(|set| set.iter().next())
                    .map(|(seen, name)| (*seen, (a.0.clone(), name.clone()))),
                None => self.order.iter().next().map(|(seen, key)| (*seen, key.clone())),
            };
            let Some((seen, key)) = candidate else { return false };
            let connected =
                self.workers.get(&key).is_some_and(|e| e.handle.lock().expect("worker lock").connections > 0);
            if !connected {
                self.remove(&key);
                return true;
            }
            if seen.0 >= at {
                // The oldest is connected and as recent as now: so are all the others.
                return false;
            }
            self.touch(&key, at);
        }
        false
    }

    /// Makes room for one more worker of `address` within both caps. A table that went
    /// over a cap while its workers were connected shrinks back here, a bounded number of
    /// workers per call.
    fn make_room(&mut self, address: &(String, String), limits: &WorkerLimits, at: i64) {
        for _ in 0..TRIM_PER_CALL {
            if self.by_address.get(address).map_or(0, |s| s.len()) < limits.per_address
                || !self.evict_one(Some(address), at)
            {
                break;
            }
        }
        for _ in 0..TRIM_PER_CALL {
            if self.workers.len() < limits.max_workers || !self.evict_one(None, at) {
                break;
            }
        }
    }

    /// Brings every address and the whole table back within the caps (workers that were
    /// connected when they overflowed them have since left).
    fn trim(&mut self, limits: &WorkerLimits, at: i64) {
        let over: Vec<(String, String)> =
            self.by_address.iter().filter(|(_, s)| s.len() > limits.per_address).map(|(a, _)| a.clone()).collect();
        for a in over {
            for _ in 0..TRIM_PER_CALL {
                if self.by_address.get(&a).map_or(0, |s| s.len()) <= limits.per_address || !self.evict_one(Some(&a), at)
                {
                    break;
                }
            }
        }
        for _ in 0..TRIM_PER_CALL {
            if self.workers.len() <= limits.max_workers || !self.evict_one(None, at) {
                break;
            }
        }
    }
}

/// All workers of one server (every coin), shared by the connections and the API.
///
/// Bounded: at most [`WorkerLimits::max_workers`] names and [`WorkerLimits::per_address`] per
/// payout address; a new name makes room by forgetting the least recently seen worker that
/// is not connected (its row is deleted at the next flush), so a new miner is never refused
/// because the table is full. Connected workers are never forgotten: a table full of them
/// exceeds its cap by at most what the connection limits allow. New names from one IP
/// address are rate limited, so a LAN client cannot churn through everyone's miners quickly.
pub struct Registry {
    inner: Mutex<Inner>,
    limits: WorkerLimits,
    /// Rejections before a worker is known (not subscribed, unauthorized, garbage).
    anonymous_rejects: Mutex<HashMap<(String, &'static str), u64>>,
}

impl Default for Registry {
    fn default() -> Self {
        Registry::with_limits(WorkerLimits::default())
    }
}

impl Registry {
    pub fn new() -> Registry {
        Registry::default()
    }

    pub fn with_limits(limits: WorkerLimits) -> Registry {
        Registry { inner: Mutex::new(Inner::default()), limits, anonymous_rejects: Mutex::new(HashMap::new()) }
    }

    pub fn limits(&self) -> &WorkerLimits {
        &self.limits
    }

    /// Finds or creates a worker, without a rate limit (tests, tools). Always `Some`: a full
    /// registry forgets its least recently seen idle worker instead of refusing.
    pub fn worker(&self, coin: &str, worker: &str) -> Option<SharedWorker> {
        self.admit(coin, worker, None, unix_now()).ok()
    }

    /// A worker authorizing from `ip` at unix time `now`: found (and marked seen), or created
    /// if `ip` has not introduced too many new names lately.
    pub fn admit(
        &self,
        coin: &str,
        worker: &str,
        ip: Option<std::net::IpAddr>,
        now: f64,
    ) -> Result<SharedWorker, WorkerRefusal> {
        let at = now as i64;
        let key = (coin.to_string(), worker.to_string());
        let mut inner = self.inner.lock().expect("registry lock");
        if let Some(handle) = inner.workers.get(&key).map(|e| e.handle.clone()) {
            inner.touch(&key, at);
            drop(inner);
            let mut w = handle.lock().expect("worker lock");
            w.last_seen = w.last_seen.max(at);
            w.dirty = true;
            drop(w);
            return Ok(handle);
        }
        if let Some(ip) = ip {
            let t = std::time::Instant::now();
            if !inner.new_worker_rates.contains_key(&ip) && inner.new_worker_rates.len() >= MAX_TRACKED_ADDRESSES {
                inner.new_worker_rates.retain(|_, b| !b.is_full(t));
                if inner.new_worker_rates.len() >= MAX_TRACKED_ADDRESSES {
                    if let Some(k) = inner.new_worker_rates.keys().next().copied() {
                        inner.new_worker_rates.remove(&k);
                    }
                }
            }
            let limits = &self.limits;
            let bucket = inner
                .new_worker_rates
                .entry(ip)
                .or_insert_with(|| crate::connection::TokenBucket::new(limits.new_per_min / 60.0, limits.new_burst));
            if !bucket.take(t) {
                return Err(WorkerRefusal::TooManyNew);
            }
        }
        let address = (coin.to_string(), address_of(worker).to_string());
        inner.make_room(&address, &self.limits, at);
        let handle = Arc::new(Mutex::new(WorkerStats {
            coin: coin.to_string(),
            worker: worker.to_string(),
            last_seen: at,
            dirty: true,
            ..Default::default()
        }));
        inner.insert(key, handle.clone(), at);
        Ok(handle)
    }

    /// Puts back a worker loaded from the database at start-up; the caps apply (a table
    /// filled before they existed shrinks to them, least recently seen first).
    pub fn restore(&self, stats: WorkerStats) {
        let key = (stats.coin.clone(), stats.worker.clone());
        let at = stats.last_seen.max(stats.last_share_at);
        let address = (stats.coin.clone(), address_of(&stats.worker).to_string());
        let mut inner = self.inner.lock().expect("registry lock");
        if inner.workers.contains_key(&key) {
            return;
        }
        inner.make_room(&address, &self.limits, at);
        inner.insert(key, Arc::new(Mutex::new(stats)), at);
    }

    /// Forgets idle workers until every cap holds again (called at each statistics flush).
    pub fn trim(&self, now: f64) {
        self.inner.lock().expect("registry lock").trim(&self.limits, now as i64);
    }

    /// Workers forgotten since the last call, whose database rows should go.
    pub fn take_forgotten(&self) -> Vec<(String, String)> {
        self.inner.lock().expect("registry lock").forgotten.drain().collect()
    }

    /// Puts back forgotten workers whose deletion failed, to retry it.
    pub fn mark_forgotten(&self, keys: Vec<(String, String)>) {
        let mut inner = self.inner.lock().expect("registry lock");
        for k in keys {
            if !inner.workers.contains_key(&k) && inner.forgotten.len() < MAX_PENDING_FORGET {
                inner.forgotten.insert(k);
            }
        }
    }

    /// Workers remembered now.
    pub fn len(&self) -> usize {
        self.inner.lock().expect("registry lock").workers.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
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

    fn handles(&self) -> Vec<SharedWorker> {
        self.inner.lock().expect("registry lock").workers.values().map(|e| e.handle.clone()).collect()
    }

    /// A consistent copy of every worker, for the API and the database.
    pub fn snapshot(&self) -> Vec<WorkerStats> {
        self.handles().iter().map(|w| w.lock().expect("worker lock").clone()).collect()
    }

    /// Marks workers changed again, after their write failed, so the next flush retries them.
    pub fn mark_dirty(&self, workers: &[WorkerStats]) {
        let inner = self.inner.lock().expect("registry lock");
        for w in workers {
            if let Some(e) = inner.workers.get(&(w.coin.clone(), w.worker.clone())) {
                e.handle.lock().expect("worker lock").dirty = true;
            }
        }
    }

    /// Copies of the workers changed since the last call, clearing their dirty flag.
    pub fn take_dirty(&self) -> Vec<WorkerStats> {
        self.handles()
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

    fn limits(max: usize, per_address: usize) -> WorkerLimits {
        WorkerLimits { max_workers: max, per_address, new_per_min: 60.0, new_burst: 5.0 }
    }

    #[test]
    fn a_full_registry_forgets_the_least_recently_seen_idle_worker() {
        let r = Registry::with_limits(limits(3, 10));
        r.admit("btc", "a.old", None, 100.0).unwrap();
        let connected = r.admit("btc", "b.busy", None, 50.0).unwrap();
        connected.lock().unwrap().connections = 1;
        r.admit("btc", "c.x", None, 200.0).unwrap();
        r.admit("btc", "d.new", None, 300.0).unwrap();
        let names: Vec<String> = r.snapshot().into_iter().map(|w| w.worker).collect();
        assert_eq!(r.len(), 3);
        assert!(names.contains(&"b.busy".to_string()), "a connected worker is never forgotten: {names:?}");
        assert!(!names.contains(&"a.old".to_string()), "{names:?}");
        assert_eq!(r.take_forgotten(), vec![("btc".to_string(), "a.old".to_string())]);
    }

    #[test]
    fn one_address_churns_only_its_own_names() {
        let r = Registry::with_limits(limits(1000, 4));
        r.admit("btc", "victim.rig", None, 1.0).unwrap();
        for i in 0..500 {
            r.admit("btc", &format!("attacker.n{i}"), None, 10.0 + i as f64).unwrap();
        }
        assert_eq!(r.len(), 5);
        assert!(r.snapshot().iter().any(|w| w.worker == "victim.rig"));
    }

    #[test]
    fn new_names_from_one_ip_are_rate_limited_known_names_are_not() {
        let r = Registry::with_limits(limits(1000, 1000));
        let ip: std::net::IpAddr = "10.0.0.9".parse().unwrap();
        for i in 0..5 {
            r.admit("btc", &format!("a.n{i}"), Some(ip), 1.0).unwrap();
        }
        assert_eq!(r.admit("btc", "a.n5", Some(ip), 1.0).err(), Some(WorkerRefusal::TooManyNew));
        assert!(r.admit("btc", "a.n0", Some(ip), 1.0).is_ok());
        assert!(r.admit("btc", "a.other", Some("10.0.0.10".parse().unwrap()), 1.0).is_ok());
    }

    #[test]
    fn restoring_more_than_the_cap_keeps_the_most_recent() {
        let r = Registry::with_limits(limits(10, 1000));
        for i in 0..30 {
            r.restore(WorkerStats {
                coin: "btc".into(),
                worker: format!("a.n{i}"),
                last_seen: i,
                ..Default::default()
            });
        }
        assert_eq!(r.len(), 10);
        assert!(r.snapshot().iter().all(|w| w.last_seen >= 20));
        assert_eq!(r.take_forgotten().len(), 20);
    }

    #[test]
    fn registry_is_bounded_and_tracks_changes() {
        let r = Registry::new();
        let w = r.worker("btc", "a.x").unwrap();
        assert!(Arc::ptr_eq(&w, &r.worker("btc", "a.x").unwrap()));
        assert_eq!(r.take_dirty().len(), 1, "a new worker is written once");
        w.lock().unwrap().record_accepted(1.0, 1.0, 1.0);
        assert_eq!(r.take_dirty().len(), 1);
        assert_eq!(r.take_dirty().len(), 0);
    }
}
