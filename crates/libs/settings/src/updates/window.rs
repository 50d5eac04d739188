//! The reboot window: the local time of day in which the box may reboot into a new
//! version on its own (mining stops for a minute or two, so not while the user watches).

use chrono::{NaiveTime, Timelike};
use std::time::Duration;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RebootWindow {
    /// Reboot as soon as the update is installed.
    Any,
    /// From `start` up to (not including) `end`; may wrap past midnight (`23:00-01:00`).
    Between { start: NaiveTime, end: NaiveTime },
}

#[derive(Debug, thiserror::Error)]
#[error("reboot window {0:?}: use \"HH:MM-HH:MM\" (local time, e.g. \"03:00-05:00\") or \"any\"")]
pub struct WindowError(String);

impl std::str::FromStr for RebootWindow {
    type Err = WindowError;
    fn from_str(s: &str) -> Result<Self, WindowError> {
        let s = s.trim();
        if s.eq_ignore_ascii_case("any") {
            return Ok(RebootWindow::Any);
        }
        let err = || WindowError(s.to_string());
        let (a, b) = s.split_once('-').ok_or_else(err)?;
        let parse = |t: &str| NaiveTime::parse_from_str(t.trim(), "%H:%M").map_err(|_| err());
        let (start, end) = (parse(a)?, parse(b)?);
        if start == end {
            return Err(err());
        }
        Ok(RebootWindow::Between { start, end })
    }
}

impl RebootWindow {
    /// How long from `now` until the window opens (zero inside it).
    pub fn wait_from(&self, now: NaiveTime) -> Duration {
        let RebootWindow::Between { start, end } = *self else { return Duration::ZERO };
        let inside = if start < end { now >= start && now < end } else { now >= start || now < end };
        if inside {
            return Duration::ZERO;
        }
        let secs = |t: NaiveTime| i64::from(t.num_seconds_from_midnight());
        let delta = (secs(start) - secs(now)).rem_euclid(86_400);
        Duration::from_secs(delta as u64).saturating_sub(Duration::from_nanos(u64::from(now.nanosecond())))
    }

    /// How long until the window opens, by the box's local clock.
    pub fn wait_now(&self) -> Duration {
        self.wait_from(chrono::Local::now().time())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(h: u32, m: u32) -> NaiveTime {
        NaiveTime::from_hms_opt(h, m, 0).unwrap()
    }

    #[test]
    fn inside_the_window_means_now_and_outside_means_the_next_opening() {
        let w: RebootWindow = "03:00-05:00".parse().unwrap();
        assert_eq!(w.wait_from(t(3, 0)), Duration::ZERO);
        assert_eq!(w.wait_from(t(4, 59)), Duration::ZERO);
        assert_eq!(w.wait_from(t(2, 0)), Duration::from_secs(3600));
        assert_eq!(w.wait_from(t(5, 0)), Duration::from_secs(22 * 3600), "closed at its end: tomorrow");
    }

    #[test]
    fn a_window_across_midnight_and_any() {
        let w: RebootWindow = "23:30-01:00".parse().unwrap();
        assert_eq!(w.wait_from(t(0, 30)), Duration::ZERO);
        assert_eq!(w.wait_from(t(23, 45)), Duration::ZERO);
        assert_eq!(w.wait_from(t(23, 0)), Duration::from_secs(1800));
        assert_eq!("any".parse::<RebootWindow>().unwrap().wait_from(t(12, 0)), Duration::ZERO);
    }

    #[test]
    fn nonsense_is_refused_with_the_expected_form() {
        for bad in ["3-5", "03:00", "25:00-26:00", "03:00-03:00", ""] {
            let e = bad.parse::<RebootWindow>().unwrap_err();
            assert!(e.to_string().contains("HH:MM-HH:MM"), "{bad}: {e}");
        }
    }
}
