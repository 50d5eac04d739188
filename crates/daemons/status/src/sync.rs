//! Node sync progress and its ETA, from the supervisor's verification progress sampled
//! over time (the node itself gives no ETA).

use std::collections::{HashMap, VecDeque};
use std::sync::Mutex;

/// The samples kept per coin: enough for a rate over the last ten minutes or so.
const SAMPLES: usize = 64;
const WINDOW_SECS: f64 = 600.0;

#[derive(Default)]
pub struct SyncTracker {
    coins: Mutex<HashMap<String, VecDeque<(f64, f64)>>>,
}

impl SyncTracker {
    /// Records progress (0..=1) at time `t` and returns the ETA in seconds, if the
    /// node is moving.
    pub fn observe(&self, coin: &str, t: f64, progress: f64) -> Option<f64> {
        let mut map = self.coins.lock().expect("sync tracker");
        let q = map.entry(coin.to_string()).or_default();
        if q.back().is_some_and(|&(_, p)| progress < p) {
            q.clear(); // a restart or a reindex: old samples no longer describe the rate
        }
        q.push_back((t, progress));
        while q.len() > SAMPLES || q.front().is_some_and(|&(t0, _)| t - t0 > WINDOW_SECS && q.len() > 2) {
            q.pop_front();
        }
        if progress >= 0.9999 {
            return Some(0.0);
        }
        let &(t0, p0) = q.front()?;
        let rate = (progress - p0) / (t - t0);
        (t > t0 && rate > 0.0).then(|| (1.0 - progress) / rate)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn eta_from_the_rate_of_progress() {
        let s = SyncTracker::default();
        assert_eq!(s.observe("btc", 0.0, 0.10), None, "one sample is no rate");
        let eta = s.observe("btc", 100.0, 0.20).unwrap();
        assert!((eta - 800.0).abs() < 1e-6, "{eta}");
        assert_eq!(s.observe("btc", 150.0, 0.20).map(|e| e.round()), Some(1200.0));
        assert_eq!(s.observe("btc", 200.0, 0.05), None, "went backwards: starts over");
        assert_eq!(s.observe("btc", 300.0, 1.0), Some(0.0));
        assert_eq!(s.observe("bch", 0.0, 0.5), None, "coins are separate");
    }
}
