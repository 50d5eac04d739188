//! `[coins.<id>.pool]`: pool mode (PPLNS), a port beside the coin's solo port whose blocks
//! pay the box's users in proportion to their recent work, in the coinbase itself (issue 17
//! point 4; docs/stratum.md, "Pool mode"). Off unless `port` is set.
//!
//! The table is taken whole from the user's file (else the image defaults' coin table); a key
//! it leaves out has the default written here. Who may pay is not here: users register their
//! payout address on the status page, which writes [`crate::payees`].

use minebox_coin::{Network, Payout};
use serde::{Deserialize, Serialize};

#[derive(Debug, Default, Deserialize, Serialize, Clone, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub(crate) struct File {
    pub port: Option<u16>,
    fee_bps: Option<u16>,
    fee_address: Option<String>,
    window_factor: Option<f64>,
    max_outputs: Option<u32>,
    start_difficulty: Option<f64>,
    min_difficulty: Option<f64>,
    max_difficulty: Option<f64>,
    config_version: Option<u64>,
}

/// The pool's cut: `bps` of each block's reward (100 bps = 1 %) to `payout`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct PoolFee {
    pub bps: u16,
    /// The fee address as written.
    pub address: String,
    #[serde(skip)]
    pub payout: Payout,
}

/// A coin's pool mode, checked.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct PoolSettings {
    /// The PPLNS port (miners authorize as `username.worker`).
    pub port: u16,
    /// None: no fee (the default); every sat goes to the users.
    pub fee: Option<PoolFee>,
    /// The window is the last `window_factor` × network difficulty of share work.
    pub window_factor: f64,
    /// Coinbase outputs at most, the fee's and the witness commitment's not counted.
    pub max_outputs: u32,
    pub start_difficulty: f64,
    pub min_difficulty: f64,
    pub max_difficulty: f64,
    /// The version of this table, counted up by the status page at every change it saves
    /// (its history, with who and when, is the page's); a block records the version it was
    /// mined under. 0: never changed through the page.
    pub config_version: u64,
}

/// The window unless `window_factor` says otherwise: twice the network difficulty of work,
/// the usual PPLNS choice (a block's expected work, twice, so one lucky or unlucky block
/// moves little).
pub const DEFAULT_WINDOW_FACTOR: f64 = 2.0;
/// What `window_factor` may be.
pub const WINDOW_FACTOR_RANGE: std::ops::RangeInclusive<f64> = 0.01..=100.0;
/// Recipients at most unless `max_outputs` says otherwise: docs/benchmarks.md measures the
/// coinbase; 39 P2TR outputs keep it near 2 kB.
pub const DEFAULT_MAX_OUTPUTS: u32 = 39;
/// What `max_outputs` may be: a coinbase of 500 P2TR outputs is about 22 kB, far within the
/// weight Bitcoin Core leaves a coinbase (docs/stratum.md).
pub const MAX_OUTPUTS_RANGE: std::ops::RangeInclusive<u32> = 1..=500;
/// The largest fee (10 %): more is surely a typo for a non-custodial home pool.
pub const MAX_FEE_BPS: u16 = 1_000;

/// The checked pool table of coin `id`, or None when no port is set (pool mode off).
/// `solo` are the coin's solo-port difficulty defaults, used where the table sets none.
pub(crate) fn resolve(
    file: Option<&File>,
    network: &Network,
    solo: (f64, f64, f64),
    err: &dyn Fn(&str, String) -> crate::SettingsError,
) -> Result<Option<PoolSettings>, crate::SettingsError> {
    let Some(f) = file else { return Ok(None) };
    let Some(port) = f.port else {
        if *f != File::default() {
            return Err(err("pool.port", "pool mode needs a port (1024-65535) beside the solo port".into()));
        }
        return Ok(None);
    };
    if port < 1024 {
        return Err(err("pool.port", format!("{port} is a privileged port; use 1024-65535")));
    }
    let fee_bps = f.fee_bps.unwrap_or(0);
    if fee_bps > MAX_FEE_BPS {
        return Err(err(
            "pool.fee_bps",
            format!("{fee_bps} is above {MAX_FEE_BPS} (10 %); the fee is in basis points: 100 is 1 %"),
        ));
    }
    let fee_address = f.fee_address.clone().unwrap_or_default();
    let fee = match (fee_bps, fee_address.is_empty()) {
        (0, true) => None,
        (0, false) => return Err(err("pool.fee_address", "set without a fee; set fee_bps too, or remove it".into())),
        (_, true) => return Err(err("pool.fee_address", format!("a fee of {fee_bps} bps needs the address it pays"))),
        (bps, false) => {
            let payout = network.parse_address(&fee_address).map_err(|e| err("pool.fee_address", e.to_string()))?;
            Some(PoolFee { bps, address: fee_address, payout })
        }
    };
    let window_factor = f.window_factor.unwrap_or(DEFAULT_WINDOW_FACTOR);
    if !WINDOW_FACTOR_RANGE.contains(&window_factor) {
        return Err(err(
            "pool.window_factor",
            format!(
                "{window_factor} is out of range; use {} to {} (default {DEFAULT_WINDOW_FACTOR}: the last two blocks' worth of expected work)",
                WINDOW_FACTOR_RANGE.start(),
                WINDOW_FACTOR_RANGE.end()
            ),
        ));
    }
    let max_outputs = f.max_outputs.unwrap_or(DEFAULT_MAX_OUTPUTS);
    if !MAX_OUTPUTS_RANGE.contains(&max_outputs) {
        return Err(err(
            "pool.max_outputs",
            format!(
                "{max_outputs} is out of range; use {} to {} (default {DEFAULT_MAX_OUTPUTS})",
                MAX_OUTPUTS_RANGE.start(),
                MAX_OUTPUTS_RANGE.end()
            ),
        ));
    }
    let (start_difficulty, min_difficulty, max_difficulty) =
        (f.start_difficulty.unwrap_or(solo.0), f.min_difficulty.unwrap_or(solo.1), f.max_difficulty.unwrap_or(solo.2));
    for (key, value) in [
        ("pool.min_difficulty", min_difficulty),
        ("pool.max_difficulty", max_difficulty),
        ("pool.start_difficulty", start_difficulty),
    ] {
        if !crate::DIFFICULTY_RANGE.contains(&value) {
            return Err(err(
                key,
                format!(
                    "{value:e} is not a share difficulty; use a number from {:e} to {:e}",
                    crate::DIFFICULTY_RANGE.start(),
                    crate::DIFFICULTY_RANGE.end()
                ),
            ));
        }
    }
    if min_difficulty > max_difficulty || !(min_difficulty..=max_difficulty).contains(&start_difficulty) {
        return Err(err(
            "pool.start_difficulty",
            format!(
                "{start_difficulty:e} must lie between min_difficulty ({min_difficulty:e}) and max_difficulty \
                 ({max_difficulty:e}), and the minimum must be at most the maximum"
            ),
        ));
    }
    Ok(Some(PoolSettings {
        port,
        fee,
        window_factor,
        max_outputs,
        start_difficulty,
        min_difficulty,
        max_difficulty,
        config_version: f.config_version.unwrap_or(0),
    }))
}
