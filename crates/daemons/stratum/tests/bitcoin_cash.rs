//! Bitcoin Cash at the coinbase and address level: CashAddr payouts, no segwit parts,
//! and the 100-byte minimum transaction size. (No Bitcoin Cash node runs here; the
//! coinbase is checked byte by byte instead.)

use bitcoin::consensus::deserialize;
use bitcoin::hashes::Hash;
use bitcoin::{Amount, BlockHash, CompactTarget, ScriptBuf, Transaction};
use minebox_stratum::job::{CoinbaseRules, Job, Template, TemplateParts};
use minebox_stratum::payout::CoinPayouts;
use minebox_stratum::session::PayoutPolicy;
use std::sync::Arc;

fn bch(network: &str) -> (minebox_coin::Coin, CoinPayouts) {
    let reg = minebox_coin::Registry::embedded();
    let coin = reg.get("bch").unwrap().clone();
    let net = coin.network(network).unwrap().clone();
    (coin, CoinPayouts(net))
}

#[test]
fn a_cashaddr_payout_gets_a_plain_p2pkh_coinbase_of_at_least_100_bytes() {
    let (coin, payouts) = bch("main");
    let script = payouts.payout_script("bitcoincash:qpm2qsznhks23z7629mms6s4cwef74vcwvy22gdx6a").unwrap();
    assert_eq!(script.to_hex_string(), "76a91476a04053bda0a88bda5177b86a15c3b29f55987388ac");
    let template = Arc::new(Template::new(
        1,
        TemplateParts {
            height: 880_000,
            prev_hash: BlockHash::from_byte_array([5; 32]),
            version: 0x2000_0000,
            bits: CompactTarget::from_consensus(0x1803_4379),
            min_time: 1_700_000_000,
            cur_time: 1_700_000_100,
            coinbase_value: Amount::from_sat(312_512_345),
            // Even if a node offered one, a non-segwit coin must not carry it.
            witness_commitment: Some(
                ScriptBuf::from_hex("6a24aa21a9ede2f61c3f71d1defd3fa999dfa36953755c690689799962b48bebd836974e8cf9")
                    .unwrap(),
            ),
            transactions: vec![],
        },
        true,
    ));
    // No coinbase tag: the smallest possible coinbase must still be padded to 100 bytes.
    let rules = CoinbaseRules { tag: vec![], extranonce2_len: 4, min_tx_size: coin.min_tx_size(), segwit: coin.segwit };
    let job = Job::new(template, script.clone(), &rules).unwrap();
    let raw = job.coinbase.assemble(&[1, 2, 3, 4], &[5, 6, 7, 8]);
    assert!(raw.len() >= 100, "{} bytes", raw.len());
    let tx: Transaction = deserialize(&raw).unwrap();
    assert_eq!(tx.output.len(), 1, "no witness commitment on Bitcoin Cash");
    assert_eq!(tx.output[0].script_pubkey, script);
    assert_eq!(tx.output[0].value, Amount::from_sat(312_512_345));
    assert!(tx.input[0].witness.is_empty());
    let block_tx = job.coinbase.transaction(&[1, 2, 3, 4], &[5, 6, 7, 8]);
    assert!(block_tx.input[0].witness.is_empty(), "no witness reserved value either");
    // BIP34 height is still first in the input script.
    assert_eq!(&tx.input[0].script_sig.as_bytes()[..4], &[0x03, 0x80, 0x6d, 0x0d]);
}

#[test]
fn bitcoin_cash_miners_are_told_when_their_address_is_wrong() {
    let (_, main) = bch("main");
    let e = main.payout_script("bc1qw508d6qejxtdg4y5r3zarvary0c5xw7kv8f3t4").unwrap_err();
    assert!(e.contains("Bitcoin Cash has no segwit"), "{e}");
    let (_, test) = bch("test");
    let e = test.payout_script("bitcoincash:qpm2qsznhks23z7629mms6s4cwef74vcwvy22gdx6a").unwrap_err();
    assert!(e.contains("bchtest"), "{e}");
    // Legacy addresses still pay the same script as their CashAddr form.
    assert_eq!(
        main.payout_script("1BpEi6DfDAUFd7GtittLSdBeYJvcoaVggu").unwrap(),
        main.payout_script("qpm2qsznhks23z7629mms6s4cwef74vcwvy22gdx6a").unwrap()
    );
}
