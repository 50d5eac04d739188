//! Payout addresses, checked by the coin registry: the address a miner authorizes with
//! must be one this coin and network can pay, in a format its node accepts.

use crate::session::PayoutPolicy;
use bitcoin::ScriptBuf;

/// A coin network's address rules as a [`PayoutPolicy`].
pub struct CoinPayouts(pub minebox_coin::Network);

impl PayoutPolicy for CoinPayouts {
    fn payout_script(&self, address: &str) -> Result<ScriptBuf, String> {
        self.0.parse_address(address).map(|p| p.script_pubkey().clone()).map_err(|e| e.to_string())
    }
}
