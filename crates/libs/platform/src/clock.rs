//! The wall clock as unix time: what the services store, send and compare with timestamps in
//! signed manifests. A clock set before 1970 (a Pi without its RTC battery before NTP) reads
//! as 0 rather than failing: every caller treats 0 as "no trustworthy time".

use std::time::{SystemTime, UNIX_EPOCH};

/// Whole seconds since 1970-01-01 UTC (signed, as `time_t` and the snapshot format's times).
pub fn unix_secs() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs() as i64)
}

/// Seconds since 1970-01-01 UTC with the fraction, for rates and averages.
pub fn unix_secs_f64() -> f64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0.0, |d| d.as_secs_f64())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn both_clocks_read_the_same_time() {
        let (a, f, b) = (unix_secs(), unix_secs_f64(), unix_secs());
        // 2026 or later: the test machine's clock is set.
        assert!(a > 1_767_225_600, "{a}");
        assert!(a as f64 <= f && f < (b + 1) as f64, "{a} {f} {b}");
    }
}
