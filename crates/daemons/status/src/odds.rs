//! The odds of a solo miner: how long a block takes on average at this hashrate, and the
//! chance of one within a day. A block needs on average difficulty × 2³² hashes.

use serde::Serialize;

#[derive(Debug, Clone, Copy, Serialize, PartialEq)]
pub struct Odds {
    pub network_difficulty: f64,
    pub hashrate: f64,
    /// Mean time to a block; null with no hashrate.
    pub expected_secs: Option<f64>,
    /// Probability of at least one block in the next 24 hours (Poisson).
    pub chance_per_day: f64,
}

pub fn odds(network_difficulty: f64, hashrate: f64) -> Odds {
    let expected = if hashrate > 0.0 && network_difficulty > 0.0 {
        Some(network_difficulty * 4_294_967_296.0 / hashrate)
    } else {
        None
    };
    let chance = expected.map_or(0.0, |e| 1.0 - (-86_400.0 / e).exp());
    Odds { network_difficulty, hashrate, expected_secs: expected, chance_per_day: chance }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_bitaxe_on_mainnet_waits_centuries() {
        // 1.2 TH/s against difficulty 1.1e14: about 12,500 years.
        let o = odds(1.1e14, 1.2e12);
        let years = o.expected_secs.unwrap() / (365.25 * 86_400.0);
        assert!((12_000.0..13_000.0).contains(&years), "{years}");
        assert!(o.chance_per_day > 0.0 && o.chance_per_day < 1e-6);
    }

    #[test]
    fn difficulty_one_at_one_hash_per_second() {
        let o = odds(1.0, 1.0);
        assert_eq!(o.expected_secs, Some(4_294_967_296.0));
        assert_eq!(odds(1.0, 0.0).expected_secs, None);
        assert_eq!(odds(1.0, 0.0).chance_per_day, 0.0);
        assert!(odds(1e-9, 1e6).chance_per_day > 0.999);
    }
}
