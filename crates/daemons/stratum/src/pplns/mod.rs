//! PPLNS pool mode (issue 17 point 4): the engine, and the [`desk`] that runs it on a pool port.
//!
//! Users of the box register one payout address per coin; their miners' accepted shares go
//! into the [`window`] (the last N units of work, N = window factor × network difficulty);
//! when a job is built, the [`split`] of the template's reward among the window's users is
//! fixed into its [`coinbase`], so a block found on that job pays exactly what the job said.
//! The [`split::Carry`] of that job becomes the carry of the next split once its block is
//! found (and stays as it was if the job never finds one).
//!
//! docs/stratum.md ("PPLNS engine") says what exists and what is missing.

pub mod coinbase;
pub mod desk;
pub mod split;
pub mod store;
pub mod window;

use crate::coinbase::Coinbase;
use crate::job::{CoinbaseRules, Template};
use bitcoin::ScriptBuf;
use std::collections::BTreeMap;

pub use coinbase::{CoinbaseBudget, PplnsCoinbaseError};
pub use split::{Carry, Fee, Payout, Split, SplitError, SplitRules};
pub use window::{ShareWindow, UserId, Work};

/// A PPLNS job's payout: the split fixed into it and the coinbase that pays it.
#[derive(Debug, Clone)]
pub struct PplnsWork {
    pub split: Split,
    pub coinbase: Coinbase,
}

#[derive(Debug, thiserror::Error, PartialEq)]
pub enum PplnsError {
    #[error(transparent)]
    Split(#[from] SplitError),
    #[error(transparent)]
    Coinbase(#[from] PplnsCoinbaseError),
}

/// The split of `template`'s reward over the window as it stands, and its coinbase.
pub fn work(
    template: &Template,
    window: &ShareWindow,
    carry: &Carry,
    payees: &BTreeMap<UserId, ScriptBuf>,
    split_rules: &SplitRules,
    coinbase_rules: &CoinbaseRules,
    budget: CoinbaseBudget,
) -> Result<PplnsWork, PplnsError> {
    let split = split::split(template.coinbase_value, &window.weights(), carry, payees, split_rules)?;
    let coinbase = coinbase::build(template, &split, coinbase_rules, budget)?;
    Ok(PplnsWork { split, coinbase })
}
