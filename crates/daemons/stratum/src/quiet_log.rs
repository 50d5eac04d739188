//! Log lines that clients can cause, kept to a trickle.
//!
//! A client reconnecting in a loop (or a LAN full of broken ones) must not write a journal
//! line per attempt: on an SD card that is wear, and in the journal it buries everything
//! else. The first few events of each interval are logged as they happen; the rest are
//! counted by kind and written as one summary line when the interval is over.

use std::collections::BTreeMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Interval over which client-caused lines are counted.
pub const INTERVAL: Duration = Duration::from_secs(10);
/// Lines logged individually per interval; the rest go into the summary.
pub const LINES_PER_INTERVAL: u32 = 5;

pub struct QuietLog {
    state: Mutex<State>,
    interval: Duration,
    per_interval: u32,
}

struct State {
    window_start: Instant,
    logged: u32,
    suppressed: BTreeMap<&'static str, u64>,
}

impl Default for QuietLog {
    fn default() -> Self {
        QuietLog::new(INTERVAL, LINES_PER_INTERVAL)
    }
}

impl QuietLog {
    pub fn new(interval: Duration, per_interval: u32) -> QuietLog {
        QuietLog {
            state: Mutex::new(State { window_start: Instant::now(), logged: 0, suppressed: BTreeMap::new() }),
            interval,
            per_interval,
        }
    }

    /// Whether an event of `kind` may be logged now; when not, it is counted for the summary.
    pub fn allow(&self, kind: &'static str) -> bool {
        let mut s = self.state.lock().expect("quiet log lock");
        self.roll(&mut s, Instant::now());
        if s.logged < self.per_interval {
            s.logged += 1;
            true
        } else {
            *s.suppressed.entry(kind).or_insert(0) += 1;
            false
        }
    }

    /// Writes the summary of an interval that is over (called periodically).
    pub fn tick(&self) {
        let mut s = self.state.lock().expect("quiet log lock");
        self.roll(&mut s, Instant::now());
    }

    fn roll(&self, s: &mut State, now: Instant) {
        if now.saturating_duration_since(s.window_start) < self.interval {
            return;
        }
        if !s.suppressed.is_empty() {
            let total: u64 = s.suppressed.values().sum();
            tracing::warn!(
                total,
                by_kind = ?s.suppressed,
                seconds = now.saturating_duration_since(s.window_start).as_secs(),
                "more connections were refused or dropped than are logged one by one"
            );
            s.suppressed.clear();
        }
        s.window_start = now;
        s.logged = 0;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_burst_logs_a_few_lines_and_counts_the_rest() {
        let q = QuietLog::new(Duration::from_secs(3600), 3);
        let allowed = (0..1000).filter(|_| q.allow("garbage")).count();
        assert_eq!(allowed, 3);
        assert_eq!(q.state.lock().unwrap().suppressed["garbage"], 997);
    }
}
