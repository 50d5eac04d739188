//! Variable difficulty: each miner gets the difficulty that makes it send shares at the
//! configured rate, whatever its hashrate.
//!
//! Too low and a 1 TH/s miner floods the box with shares; too high and a small miner's
//! hashrate estimate (and its best-share figure) barely moves. Retargets are damped (no
//! change inside a factor of two) so a miner's difficulty does not wobble with luck.

use std::time::{Duration, Instant};

/// The easiest difficulty the server ever assigns. Far below regtest's network difficulty
/// (4.7e-10), so every test and CPU-miner set-up fits; far above the subnormal floats
/// (5e-324) where scaling and rounding turn into 0, infinity and NaN, which a miner would
/// receive as `set_difficulty [null]` and then fail every share against.
pub const MIN_DIFFICULTY: f64 = 1e-12;
/// The hardest difficulty the server ever assigns (well above any network's).
pub const MAX_DIFFICULTY: f64 = 1e30;

/// A difficulty bound that cannot be used, and what to do instead.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum DifficultyError {
    #[error("{name} difficulty {value:e} is not a finite number between {MIN_DIFFICULTY:e} and {MAX_DIFFICULTY:e}; pick one in that range")]
    OutOfRange { name: &'static str, value: f64 },
    #[error("minimum difficulty {min:e} is above the maximum {max:e}; swap them or widen the range")]
    MinAboveMax { min: f64, max: f64 },
    #[error("shares per minute {0} must be a finite number above 0 (10 suits a Bitaxe)")]
    SharesPerMinute(f64),
}

/// `d` made usable: finite and inside [`MIN_DIFFICULTY`, `MAX_DIFFICULTY`]; `fallback`
/// when it is not a number at all.
pub fn sane(d: f64, fallback: f64) -> f64 {
    let d = if d.is_nan() { fallback } else { d };
    d.clamp(MIN_DIFFICULTY, MAX_DIFFICULTY)
}

#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct VardiffConfig {
    /// Shares per minute each miner should send.
    pub shares_per_minute: f64,
    pub min: f64,
    pub max: f64,
    /// Difficulty a new connection starts at (before the miner suggests one).
    pub start: f64,
    /// How long a measurement window lasts before a retarget is considered.
    pub retarget_after: Duration,
}

impl VardiffConfig {
    /// Refuses bounds the server could not honour (for command-line flags and settings).
    pub fn check(&self) -> Result<(), DifficultyError> {
        for (name, value) in [("minimum", self.min), ("maximum", self.max), ("start", self.start)] {
            if !(MIN_DIFFICULTY..=MAX_DIFFICULTY).contains(&value) {
                return Err(DifficultyError::OutOfRange { name, value });
            }
        }
        if self.min > self.max {
            return Err(DifficultyError::MinAboveMax { min: self.min, max: self.max });
        }
        if !(self.shares_per_minute.is_finite() && self.shares_per_minute > 0.0) {
            return Err(DifficultyError::SharesPerMinute(self.shares_per_minute));
        }
        Ok(())
    }

    /// The same bounds forced into the usable range, so a bad settings file degrades to a
    /// working server instead of NaN difficulties.
    pub fn sanitized(&self) -> VardiffConfig {
        let defaults = VardiffConfig::default();
        let min = sane(self.min, defaults.min);
        let max = sane(self.max, defaults.max).max(min);
        let shares_per_minute = if self.shares_per_minute.is_finite() && self.shares_per_minute > 0.0 {
            self.shares_per_minute
        } else {
            defaults.shares_per_minute
        };
        VardiffConfig {
            shares_per_minute,
            min,
            max,
            start: sane(self.start, defaults.start).clamp(min, max),
            retarget_after: self.retarget_after.max(Duration::from_secs(1)),
        }
    }
}

impl Default for VardiffConfig {
    fn default() -> Self {
        // A Bitaxe (~1 TH/s) at 1024 sends a share every ~4 s; at 10/min vardiff lands it
        // around 6000, so 1024 is a start that converges in one or two windows.
        VardiffConfig {
            shares_per_minute: 10.0,
            min: 1.0,
            max: 1e15,
            start: 1024.0,
            retarget_after: Duration::from_secs(60),
        }
    }
}

#[derive(Debug, Clone)]
pub struct Vardiff {
    config: VardiffConfig,
    current: f64,
    /// The lowest difficulty this miner asked for (suggest_difficulty, minimum-difficulty):
    /// vardiff never goes below it.
    floor: f64,
    window_start: Instant,
    shares: u32,
}

impl Vardiff {
    pub fn new(config: VardiffConfig, now: Instant) -> Vardiff {
        let config = config.sanitized();
        let current = clamp(config.start, config.min, config.max);
        let floor = config.min;
        Vardiff { config, current, floor, window_start: now, shares: 0 }
    }

    pub fn difficulty(&self) -> f64 {
        self.current
    }

    /// The miner's own wish (mining.suggest_difficulty or BIP310 minimum-difficulty):
    /// taken as both the current difficulty and the floor, within the server's bounds.
    pub fn suggest(&mut self, wish: f64, now: Instant) -> f64 {
        let d = clamp(wish, self.config.min, self.config.max);
        self.floor = d;
        self.current = d;
        self.reset(now);
        d
    }

    /// Counts an accepted share; returns a new difficulty when it is time to change.
    pub fn on_share(&mut self, now: Instant) -> Option<f64> {
        self.shares += 1;
        self.retarget(now)
    }

    /// Called periodically (on new jobs): lets a miner that went quiet get an easier target.
    pub fn on_tick(&mut self, now: Instant) -> Option<f64> {
        self.retarget(now)
    }

    fn retarget(&mut self, now: Instant) -> Option<f64> {
        let elapsed = now.saturating_duration_since(self.window_start).as_secs_f64();
        let window = self.config.retarget_after.as_secs_f64();
        let wanted_per_sec = self.config.shares_per_minute / 60.0;
        // A miner far faster than its difficulty is retargeted early rather than flooding
        // the server for a whole window.
        let flooding = self.shares as f64 >= (wanted_per_sec * window * 4.0).max(8.0);
        if elapsed < window && !flooding {
            return None;
        }
        let elapsed = elapsed.max(1.0);
        let rate = if self.shares == 0 { 0.5 / elapsed } else { self.shares as f64 / elapsed };
        let ratio = rate / wanted_per_sec;
        self.reset(now);
        if (0.5..=2.0).contains(&ratio) {
            return None;
        }
        let proposed = self.current * ratio.clamp(0.25, 64.0);
        let next = round(clamp(proposed, self.floor.max(self.config.min), self.config.max));
        if (next - self.current).abs() <= self.current * 1e-9 {
            return None;
        }
        self.current = next;
        Some(next)
    }

    fn reset(&mut self, now: Instant) {
        self.window_start = now;
        self.shares = 0;
    }
}

/// Within `[min, max]`; a NaN (a miner's wish, a ratio gone wrong) becomes `min`. The
/// bounds are sanitized, so the result is always finite and positive.
fn clamp(d: f64, min: f64, max: f64) -> f64 {
    if d.is_nan() {
        return min;
    }
    d.max(min).min(max)
}

/// Whole numbers above 1 read better on a dashboard and in miners' logs; below 1 (CPU and
/// regtest miners) three significant digits are kept.
fn round(d: f64) -> f64 {
    let rounded = if d >= 1.0 {
        d.round()
    } else {
        let scale = 10f64.powi(2 - d.log10().floor() as i32);
        (d * scale).round() / scale
    };
    // Rounding must never be what makes a difficulty unusable.
    if rounded.is_finite() && rounded > 0.0 {
        rounded
    } else {
        d
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg() -> VardiffConfig {
        VardiffConfig {
            shares_per_minute: 6.0,
            min: 1.0,
            max: 1_000_000.0,
            start: 100.0,
            retarget_after: Duration::from_secs(60),
        }
    }

    #[test]
    fn a_fast_miner_is_raised_before_the_window_ends() {
        let t0 = Instant::now();
        let mut v = Vardiff::new(cfg(), t0);
        let mut changed = None;
        // 10 shares a second: 100x the wanted rate.
        for i in 1..=40 {
            if let Some(d) = v.on_share(t0 + Duration::from_millis(100 * i)) {
                changed = Some(d);
                break;
            }
        }
        let d = changed.expect("retargets early");
        assert!(d > 100.0 * 16.0, "raised a lot: {d}");
    }

    #[test]
    fn a_miner_at_the_wanted_rate_keeps_its_difficulty() {
        let t0 = Instant::now();
        let mut v = Vardiff::new(cfg(), t0);
        for i in 1..=30 {
            assert_eq!(v.on_share(t0 + Duration::from_secs(10 * i)), None);
        }
        assert_eq!(v.difficulty(), 100.0);
    }

    #[test]
    fn a_quiet_miner_is_lowered_but_not_below_its_floor() {
        let t0 = Instant::now();
        let mut v = Vardiff::new(cfg(), t0);
        v.suggest(50.0, t0);
        let mut t = t0;
        for _ in 0..10 {
            t += Duration::from_secs(61);
            v.on_tick(t);
        }
        assert_eq!(v.difficulty(), 50.0);
        let mut v = Vardiff::new(cfg(), t0);
        let d = v.on_tick(t0 + Duration::from_secs(120)).unwrap();
        assert!((25.0..100.0).contains(&d), "{d}");
    }

    #[test]
    fn suggestions_are_kept_inside_the_server_bounds() {
        let t0 = Instant::now();
        let mut v = Vardiff::new(cfg(), t0);
        assert_eq!(v.suggest(1e12, t0), 1_000_000.0);
        assert_eq!(v.suggest(0.001, t0), 1.0);
    }

    #[test]
    fn a_subnormal_minimum_never_yields_a_non_finite_difficulty() {
        let c = VardiffConfig { min: 5e-324, start: 5e-324, shares_per_minute: 6.0, ..cfg() };
        let t0 = Instant::now();
        let mut v = Vardiff::new(c, t0);
        assert!(v.difficulty() >= MIN_DIFFICULTY);
        let mut t = t0;
        for i in 0..2000u64 {
            t += Duration::from_millis(if i % 200 < 100 { 10 } else { 30_000 });
            let d = if i % 3 == 0 { v.on_tick(t) } else { v.on_share(t) };
            if let Some(d) = d {
                assert!((MIN_DIFFICULTY..=1_000_000.0).contains(&d), "{d}");
            }
            assert!(v.difficulty().is_finite() && v.difficulty() > 0.0);
        }
        assert_eq!(v.suggest(f64::NAN, t), MIN_DIFFICULTY);
        assert_eq!(v.suggest(f64::INFINITY, t), 1_000_000.0);
    }

    #[test]
    fn unusable_bounds_are_refused_by_check() {
        let bad = VardiffConfig { min: 5e-324, ..cfg() };
        assert!(matches!(bad.check(), Err(DifficultyError::OutOfRange { name: "minimum", .. })));
        assert!(VardiffConfig { max: f64::INFINITY, ..cfg() }.check().is_err());
        assert!(VardiffConfig { min: 10.0, max: 1.0, start: 5.0, ..cfg() }.check().is_err());
        assert!(cfg().check().is_ok());
    }

    #[test]
    fn fractional_difficulties_for_cpu_miners() {
        let mut c = cfg();
        c.min = 0.0001;
        c.start = 0.01;
        let t0 = Instant::now();
        let mut v = Vardiff::new(c, t0);
        let d = v.on_tick(t0 + Duration::from_secs(600)).unwrap();
        assert!(d < 0.01 && d > 0.0, "{d}");
        assert_eq!(d, round(d));
    }
}
