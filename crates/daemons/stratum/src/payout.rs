//! Payout addresses, checked by the coin registry: the address a miner authorizes with
//! must be one this coin and network can pay, in a format its node accepts.
//!
//! Who a block pays is decided once, at `mining.authorize` ([`resolve`]):
//! - `payout_policy = "owner"`: the owner's address (`coins.<id>.payout_address`), always;
//!   the stratum user is only a worker name.
//! - `payout_policy = "miner"` (the default): a user whose first part (before the first `.`)
//!   is a valid address of the coin pays that address, as before. A user that is plainly a
//!   worker name (`bitaxe1`, `bitaxe1.x`: a Bitaxe set up without an address) mines to the
//!   owner's address. A user that *looks* like an address but is not a valid one for this
//!   coin and network (a typo, a mainnet address on regtest, another coin's address) is
//!   refused with the reason: silently paying the owner instead would hide the typo from a
//!   miner who expects to be paid to its own address.

use crate::session::PayoutPolicy;
use bitcoin::ScriptBuf;
pub use minebox_settings::PayoutPolicy as Policy;

/// A coin network's address rules as a [`PayoutPolicy`].
pub struct CoinPayouts(pub minebox_coin::Network);

impl PayoutPolicy for CoinPayouts {
    fn payout_script(&self, address: &str) -> Result<ScriptBuf, String> {
        self.0.parse_address(address).map(|p| p.script_pubkey().clone()).map_err(|e| e.to_string())
    }
}

/// A coin network's address rules and the box owner's address: what settings mode runs.
pub struct WithOwner {
    pub coin: CoinPayouts,
    pub owner: Owner,
}

impl WithOwner {
    pub fn new(network: minebox_coin::Network, address: &str, policy: Policy) -> Result<WithOwner, String> {
        let coin = CoinPayouts(network);
        let owner = Owner::new(&coin, address, policy)?;
        Ok(WithOwner { coin, owner })
    }

    /// The owner's address as the settings already checked it for `network`.
    pub fn checked(network: minebox_coin::Network, payout: &minebox_coin::Payout, policy: Policy) -> WithOwner {
        let owner = Owner { address: payout.to_string(), script: payout.script_pubkey().clone(), policy };
        WithOwner { coin: CoinPayouts(network), owner }
    }
}

impl PayoutPolicy for WithOwner {
    fn payout_script(&self, address: &str) -> Result<ScriptBuf, String> {
        self.coin.payout_script(address)
    }
    fn owner(&self) -> Option<&Owner> {
        Some(&self.owner)
    }
}

/// The box owner's address for one coin (from the settings), and when it is paid.
#[derive(Debug, Clone)]
pub struct Owner {
    pub address: String,
    pub script: ScriptBuf,
    pub policy: Policy,
}

impl Owner {
    /// Checks `address` against the coin network's rules (the settings did already; a
    /// flags-mode address is checked here).
    pub fn new(payouts: &dyn PayoutPolicy, address: &str, policy: Policy) -> Result<Owner, String> {
        let script = payouts.payout_script(address)?;
        Ok(Owner { address: address.to_string(), script, policy })
    }
}

/// Whose address a worker's blocks pay: the API's type, shared with the page.
pub use minebox_api::stratum::PaidTo;

/// What an authorize resolves to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Resolved {
    /// The worker name statistics are kept under.
    pub worker: String,
    /// The address paid, and its output script.
    pub address: String,
    pub script: ScriptBuf,
    pub paid_to: PaidTo,
}

/// Worker names: what the statistics and the page can show safely.
const WORKER_NAME_MAX: usize = 64;

fn worker_chars_ok(s: &str) -> bool {
    s.chars().all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c))
}

/// True if `s` reads as an attempt at a payout address rather than a worker name: a
/// CashAddr (`prefix:...`), a segwit address of a Bitcoin network (`bc1`, `tb1`, `bcrt1`), or
/// 25 characters or more of letters and digits only (base58 addresses are 26-35, CashAddr
/// without its prefix 42). Worker names are short or have separators (`bitaxe-gamma-2`); a
/// long run of letters and digits that is not an address is refused with the reason rather
/// than guessed at.
pub fn looks_like_address(s: &str) -> bool {
    let lower = s.to_ascii_lowercase();
    s.contains(':')
        || ["bc1", "tb1", "bcrt1"].iter().any(|p| lower.starts_with(p))
        || (s.len() >= 25 && s.chars().all(|c| c.is_ascii_alphanumeric()))
}

/// Decides who a miner authorizing as `user` mines for; `Err` is the message the miner
/// (and its log) gets.
pub fn resolve(payouts: &dyn PayoutPolicy, owner: Option<&Owner>, user: &str) -> Result<Resolved, String> {
    let (first, rig) = user.split_once('.').unwrap_or((user, ""));
    if first.is_empty() {
        return Err(match owner {
            Some(_) => "user must be a worker name, or your payout address optionally followed by .workername".into(),
            None => "user must be your payout address, optionally followed by .workername".into(),
        });
    }
    let to_owner = |o: &Owner| {
        // The whole user is the worker name; an address in it is only part of the name.
        // Longer than a bare name may be (an address with a rig name) but still bounded.
        if user.len() > 2 * WORKER_NAME_MAX + 1
            || !user.chars().all(|c| c.is_ascii_alphanumeric() || "-_.:".contains(c))
        {
            return Err(format!("worker name: up to {WORKER_NAME_MAX} letters, digits, '-', '_' or '.'"));
        }
        Ok(Resolved {
            worker: user.to_string(),
            address: o.address.clone(),
            script: o.script.clone(),
            paid_to: PaidTo::Owner,
        })
    };
    if let Some(o) = owner.filter(|o| o.policy == Policy::Owner) {
        return to_owner(o);
    }
    match payouts.payout_script(first) {
        Ok(script) => {
            if rig.len() > WORKER_NAME_MAX || !worker_chars_ok(rig) {
                return Err(format!("worker name: up to {WORKER_NAME_MAX} letters, digits, '-', '_' or '.'"));
            }
            Ok(Resolved { worker: user.to_string(), address: first.to_string(), script, paid_to: PaidTo::Miner })
        }
        Err(why) => match owner {
            Some(o) if !looks_like_address(first) => {
                if user.len() > WORKER_NAME_MAX || !worker_chars_ok(user) {
                    return Err(format!(
                        "{user:?} is neither a payout address nor a worker name (up to {WORKER_NAME_MAX} letters, \
                         digits, '-', '_' or '.')"
                    ));
                }
                to_owner(o)
            }
            Some(_) => Err(format!(
                "{first} cannot be paid by this server: {why} (a worker name without an address mines to the \
                 box's payout address; an address must be valid)"
            )),
            None => Err(format!("{first} cannot be paid by this server: {why}")),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn regtest() -> CoinPayouts {
        CoinPayouts(minebox_coin::Registry::embedded().get("btc").unwrap().network("regtest").unwrap().clone())
    }
    const OWNER: &str = "bcrt1qw508d6qejxtdg4y5r3zarvary0c5xw7kygt080";
    /// A valid regtest P2PKH address that is not the owner's.
    fn miner() -> String {
        use bitcoin::hashes::Hash;
        bitcoin::Address::p2pkh(bitcoin::PubkeyHash::from_byte_array([7; 20]), bitcoin::Network::Regtest).to_string()
    }

    fn owner(policy: Policy) -> Owner {
        Owner::new(&regtest(), OWNER, policy).unwrap()
    }

    #[test]
    fn a_bare_worker_name_mines_to_the_owner() {
        for user in ["bitaxe1", "bitaxe1.x", "garage-gamma_2"] {
            let r = resolve(&regtest(), Some(&owner(Policy::Miner)), user).unwrap();
            assert_eq!((r.address.as_str(), r.paid_to, r.worker.as_str()), (OWNER, PaidTo::Owner, user));
        }
    }

    #[test]
    fn a_valid_address_is_paid_under_the_default_policy_and_not_under_owner() {
        let miner = miner();
        let user = format!("{miner}.rig");
        let r = resolve(&regtest(), Some(&owner(Policy::Miner)), &user).unwrap();
        assert_eq!((r.address.as_str(), r.paid_to), (miner.as_str(), PaidTo::Miner));
        let r = resolve(&regtest(), Some(&owner(Policy::Owner)), &user).unwrap();
        assert_eq!((r.address.as_str(), r.paid_to, r.worker.as_str()), (OWNER, PaidTo::Owner, user.as_str()));
    }

    #[test]
    fn an_address_with_a_typo_or_for_another_network_is_refused_not_paid_to_the_owner() {
        let typo = OWNER.replace("080", "081");
        let miner = miner();
        let base58_typo = format!("{}{}", &miner[..miner.len() - 1], if miner.ends_with('z') { 'y' } else { 'z' });
        for bad in [typo.as_str(), "bc1qw508d6qejxtdg4y5r3zarvary0c5xw7kv8f3t4", base58_typo.as_str()] {
            let e = resolve(&regtest(), Some(&owner(Policy::Miner)), &format!("{bad}.rig")).unwrap_err();
            assert!(e.starts_with(&format!("{bad} cannot be paid")), "{e}");
        }
        // A CashAddr on the Bitcoin port: another coin's address, refused.
        let e =
            resolve(&regtest(), Some(&owner(Policy::Miner)), "bitcoincash:qpm2qsznhks23z7629mms6s4cwef74vcwvy22gdx6a")
                .unwrap_err();
        assert!(e.contains("cannot be paid"), "{e}");
    }

    #[test]
    fn without_an_owner_address_a_worker_name_is_refused_as_before() {
        let e = resolve(&regtest(), None, "bitaxe1").unwrap_err();
        assert!(e.starts_with("bitaxe1 cannot be paid"), "{e}");
    }

    #[test]
    fn worker_names_stay_bounded_and_plain() {
        let o = owner(Policy::Miner);
        assert!(resolve(&regtest(), Some(&o), &"w-".repeat(40)).is_err());
        assert!(resolve(&regtest(), Some(&o), "rig<script>").is_err());
        assert!(resolve(&regtest(), Some(&owner(Policy::Owner)), &"w-".repeat(80)).is_err());
        assert!(resolve(&regtest(), Some(&o), ".rig").is_err());
    }
}
