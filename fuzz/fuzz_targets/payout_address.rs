//! Payout addresses (crates/libs/coin/src/address.rs, cashaddr.rs): what a miner types as its
//! stratum user, for every coin and network MineBox mines.
//!
//! Contract: never panics; an accepted address pays a non-empty standard output script,
//! and is refused by every network of every other address family it does not belong to
//! (a block paying a script its owner cannot spend is lost for good) — checked here as:
//! an address is never accepted by both a main and a test network of one coin, except
//! the base58 forms testnet and regtest share.
#![no_main]

use libfuzzer_sys::fuzz_target;
use minebox_coin::Registry;
use std::sync::OnceLock;

fn registry() -> &'static Registry {
    static R: OnceLock<Registry> = OnceLock::new();
    R.get_or_init(Registry::embedded)
}

fuzz_target!(|data: &[u8]| {
    let Ok(address) = std::str::from_utf8(data) else { return };
    if address.len() > 256 {
        return;
    }
    for coin in registry().coins() {
        let mut main = false;
        let mut test = false;
        for name in ["main", "test", "testnet4", "signet", "regtest"] {
            let Ok(net) = coin.network(name) else { continue };
            match net.parse_address(address) {
                Ok(p) => {
                    let script = p.script_pubkey();
                    assert!(!script.is_empty(), "{}/{name}: {address:?} pays an empty script", coin.id);
                    assert!(
                        script.is_p2pkh()
                            || script.is_p2sh()
                            || script.is_p2wpkh()
                            || script.is_p2wsh()
                            || script.is_p2tr(),
                        "{}/{name}: {address:?} pays a non-standard script {script:?}",
                        coin.id
                    );
                    if net.is_test() {
                        test = true;
                    } else {
                        main = true;
                    }
                }
                Err(e) => {
                    let _ = e.to_string();
                }
            }
        }
        assert!(!(main && test), "{}: {address:?} is accepted on a main and a test network", coin.id);
    }
});
