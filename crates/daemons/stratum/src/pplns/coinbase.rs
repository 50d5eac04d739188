//! A PPLNS coinbase: the split's outputs, within the room a block template leaves.
//!
//! The input (BIP34 height, extranonce, tag) is cut exactly as for a solo job, by
//! [`crate::coinbase::Coinbase::build`]; only the outputs differ: the fee output (if any),
//! one output per paid user, largest first, then the witness commitment as today.
//!
//! How much room there is. Bitcoin Core builds `getblocktemplate`'s transaction list to fill
//! the block up to `-blockmaxweight` (4,000,000 WU) minus `-blockreservedweight`, default
//! 8000 WU since v29 (PR #31384; before it, 4000 WU were reserved inside a 3,996,000
//! default), "for the fixed-size block header plus the largest coinbase transaction the
//! mining software may add" (`bitcoind -help-debug`; `src/node/miner.cpp`,
//! `BlockAssembler::resetBlock`). It also reserves 400 sigop cost for the coinbase
//! (`DEFAULT_COINBASE_OUTPUT_MAX_ADDITIONAL_SIGOPS`, `src/util/mining.h`). A full template
//! therefore leaves a coinbase 8000 WU minus the 80-byte header and the transaction count
//! (at most 5 bytes): 7660 WU, and 400 sigop cost, where a P2PKH output costs 4 (one legacy
//! `OP_CHECKSIG`, scaled by 4). `MAX_STANDARD_TX_WEIGHT` (400,000) is a relay rule for
//! loose transactions and does not apply to a coinbase.

use super::split::Split;
use crate::coinbase::{Coinbase, CoinbaseError, CoinbaseSpec};
use crate::job::{CoinbaseRules, Template};
use bitcoin::consensus::encode::serialize;
use bitcoin::{Amount, ScriptBuf, Transaction, TxOut, Weight};

/// The consensus block weight limit.
pub const MAX_BLOCK_WEIGHT: u64 = 4_000_000;

/// Bitcoin Core's default `-blockreservedweight` (v29 and later).
pub const CORE_RESERVED_WEIGHT: u64 = 8_000;

/// Bitcoin Core's sigop cost reserved for the coinbase.
pub const CORE_COINBASE_SIGOPS_COST: u64 = 400;

/// The header (80 bytes) and the largest transaction-count varint (5 bytes), in WU.
const HEADER_AND_COUNT_WEIGHT: u64 = (80 + 5) * 4;

/// A coinbase with no value output at its largest: version 4, input count 1, outpoint 36,
/// script length 1, script 100 (the consensus maximum), sequence 4, output count 3 (≥ 253
/// outputs), witness commitment output 8 + 1 + 38, lock time 4 = 200 bytes × 4; witness:
/// marker and flag 2, one stack item of 32 bytes with its counts 34.
const EMPTY_COINBASE_MAX_WEIGHT: u64 = 200 * 4 + 2 + 34;

/// The largest standard output the box pays to: P2TR or P2WSH, 8 + 1 + 34 bytes.
const LARGEST_OUTPUT_WEIGHT: u64 = (8 + 1 + 34) * 4;

/// Sigop cost of the costliest output the box pays to (P2PKH: one legacy sigop × 4).
const LARGEST_OUTPUT_SIGOPS_COST: u64 = 4;

/// The room a coinbase has in a block.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CoinbaseBudget {
    pub weight: u64,
    pub sigops_cost: u64,
}

impl CoinbaseBudget {
    /// What a node reserving `reserved_weight` (`-blockreservedweight`) leaves a coinbase in a
    /// full template. The box runs its own node: raising that setting is what makes room for
    /// more outputs.
    pub fn reserved(reserved_weight: u64) -> CoinbaseBudget {
        CoinbaseBudget {
            weight: reserved_weight.saturating_sub(HEADER_AND_COUNT_WEIGHT),
            sigops_cost: CORE_COINBASE_SIGOPS_COST,
        }
    }

    /// Bitcoin Core's defaults: 7660 WU and 400 sigop cost.
    pub fn core_default() -> CoinbaseBudget {
        CoinbaseBudget::reserved(CORE_RESERVED_WEIGHT)
    }

    /// What this template leaves: the block's weight limit minus its transactions (their
    /// weight read from the raw transactions). A template that is not full leaves more than
    /// the reservation; sigops stay at Core's reservation (a template's sigops need its
    /// inputs' previous outputs to count).
    pub fn left_by(template: &Template) -> CoinbaseBudget {
        let used: u64 = template
            .transactions
            .iter()
            .map(|raw| {
                bitcoin::consensus::deserialize::<Transaction>(raw)
                    .map(|tx| tx.weight().to_wu())
                    // A transaction the node sent but this library cannot parse: count it as
                    // its raw size × 4, an upper bound on its weight.
                    .unwrap_or(raw.len() as u64 * 4)
            })
            .sum();
        CoinbaseBudget {
            weight: MAX_BLOCK_WEIGHT.saturating_sub(HEADER_AND_COUNT_WEIGHT + used),
            sigops_cost: CORE_COINBASE_SIGOPS_COST,
        }
    }

    /// Value outputs (fee included) that always fit, whatever their standard types: the
    /// default `max_outputs` of a split. 39 with Core's defaults.
    pub fn max_outputs(&self) -> usize {
        let by_weight = self.weight.saturating_sub(EMPTY_COINBASE_MAX_WEIGHT) / LARGEST_OUTPUT_WEIGHT;
        let by_sigops = self.sigops_cost / LARGEST_OUTPUT_SIGOPS_COST;
        by_weight.min(by_sigops) as usize
    }
}

#[derive(Debug, thiserror::Error, PartialEq)]
pub enum PplnsCoinbaseError {
    #[error(transparent)]
    Coinbase(#[from] CoinbaseError),
    #[error(
        "the split pays {outputs} outputs in a coinbase of {weight} WU, over the {budget} WU the block leaves it; \
         lower the PPLNS max outputs (CoinbaseBudget::max_outputs) or raise the node's -blockreservedweight"
    )]
    Weight { outputs: usize, weight: u64, budget: u64 },
    #[error(
        "the split's outputs cost {cost} sigops, over the {budget} Bitcoin Core reserves for a coinbase \
         (each P2PKH output costs 4); lower the PPLNS max outputs"
    )]
    Sigops { cost: u64, budget: u64 },
    #[error(
        "the split pays {split} but the template's coinbase value is {template}: build the split from this template"
    )]
    Value { split: Amount, template: Amount },
}

/// A coinbase's measure, with the witness it carries in a block.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CoinbaseSize {
    /// Serialized with its witness, as in the block.
    pub bytes: usize,
    pub weight: Weight,
    pub sigops_cost: u64,
}

/// Measures the coinbase as it goes into a block (any extranonce: its size is fixed).
pub fn measure(coinbase: &Coinbase) -> CoinbaseSize {
    let tx = coinbase.transaction(&[0; crate::coinbase::EXTRANONCE1_BYTES], &vec![0; coinbase.extranonce2_len]);
    let sigops: usize = tx.output.iter().map(|o| o.script_pubkey.count_sigops_legacy()).sum();
    CoinbaseSize { bytes: serialize(&tx).len(), weight: tx.weight(), sigops_cost: sigops as u64 * 4 }
}

/// The value outputs of a split, in coinbase order.
pub fn outputs(split: &Split) -> Vec<TxOut> {
    let mut out = Vec::with_capacity(split.payouts.len() + 1);
    if let Some((script, value)) = &split.fee {
        out.push(TxOut { value: *value, script_pubkey: script.clone() });
    }
    out.extend(split.payouts.iter().map(|p| TxOut { value: p.amount, script_pubkey: p.script.clone() }));
    out
}

/// The coinbase paying `split` on `template`, checked against `budget`.
pub fn build(
    template: &Template,
    split: &Split,
    rules: &CoinbaseRules,
    budget: CoinbaseBudget,
) -> Result<Coinbase, PplnsCoinbaseError> {
    if split.total() != template.coinbase_value {
        return Err(PplnsCoinbaseError::Value { split: split.total(), template: template.coinbase_value });
    }
    let commitment = if rules.segwit { template.witness_commitment.as_ref() } else { None };
    // The solo builder cuts the input and the extranonce; its single output is replaced.
    let placeholder = ScriptBuf::new();
    let solo = Coinbase::build(&CoinbaseSpec {
        height: template.height,
        value: template.coinbase_value,
        payout: &placeholder,
        witness_commitment: commitment,
        tag: &rules.tag,
        extranonce2_len: rules.extranonce2_len,
        min_tx_size: rules.min_tx_size,
    })?;
    let extranonce_len = crate::coinbase::EXTRANONCE1_BYTES + solo.extranonce2_len;
    let mut tx = solo.transaction(&[0; crate::coinbase::EXTRANONCE1_BYTES], &vec![0; solo.extranonce2_len]);
    tx.input[0].witness = bitcoin::Witness::new();
    tx.output = outputs(split);
    if let Some(c) = commitment {
        tx.output.push(TxOut { value: Amount::ZERO, script_pubkey: c.clone() });
    }
    let bytes = serialize(&tx);
    // The input is unchanged, so the extranonce sits where the solo builder put it.
    let at = solo.coinb1.len();
    debug_assert_eq!(bytes[..at], solo.coinb1[..]);
    let coinbase = Coinbase {
        coinb1: solo.coinb1,
        coinb2: bytes[at + extranonce_len..].to_vec(),
        extranonce2_len: solo.extranonce2_len,
        segwit: solo.segwit,
    };
    let size = measure(&coinbase);
    if size.weight.to_wu() > budget.weight {
        return Err(PplnsCoinbaseError::Weight {
            outputs: tx.output.len(),
            weight: size.weight.to_wu(),
            budget: budget.weight,
        });
    }
    if size.sigops_cost > budget.sigops_cost {
        return Err(PplnsCoinbaseError::Sigops { cost: size.sigops_cost, budget: budget.sigops_cost });
    }
    Ok(coinbase)
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::job::tests::regtest_parts;
    use crate::pplns::split::{split, Carry, Fee, SplitRules};
    use crate::pplns::window::{UserId, Work};
    use bitcoin::hashes::Hash;
    use bitcoin::{WitnessProgram, WitnessVersion};
    use std::collections::BTreeMap;
    use std::sync::Arc;

    /// User `i`'s script: P2WPKH, P2TR and P2PKH in turn (the mix the figures use).
    pub fn mixed_script(i: u32) -> ScriptBuf {
        let mut h = [0u8; 32];
        h[..4].copy_from_slice(&i.to_le_bytes());
        match i % 3 {
            0 => ScriptBuf::new_p2wpkh(&bitcoin::WPubkeyHash::from_byte_array(h[..20].try_into().unwrap())),
            1 => ScriptBuf::new_witness_program(&WitnessProgram::new(WitnessVersion::V1, &h).unwrap()),
            _ => ScriptBuf::new_p2pkh(&bitcoin::PubkeyHash::from_byte_array(h[..20].try_into().unwrap())),
        }
    }

    pub fn segwit_template() -> Arc<Template> {
        let mut parts = regtest_parts(880_000);
        parts.coinbase_value = Amount::from_sat(312_500_000 + 12_345_678);
        parts.witness_commitment = Some(
            ScriptBuf::from_hex("6a24aa21a9ede2f61c3f71d1defd3fa999dfa36953755c690689799962b48bebd836974e8cf9")
                .unwrap(),
        );
        Arc::new(Template::new(1, parts, true))
    }

    pub fn rules() -> CoinbaseRules {
        CoinbaseRules { tag: b"/MineBox/".to_vec(), extranonce2_len: 8, min_tx_size: 0, segwit: true }
    }

    fn split_among(template: &Template, n: u32, script: impl Fn(u32) -> ScriptBuf, max_outputs: usize) -> Split {
        let weights: Vec<(UserId, Work)> = (0..n).map(|i| (UserId(i), 1000 + i as Work)).collect();
        let payees: BTreeMap<UserId, ScriptBuf> = (0..n).map(|i| (UserId(i), script(i))).collect();
        split(template.coinbase_value, &weights, &Carry::default(), &payees, &SplitRules { fee: None, max_outputs })
            .unwrap()
    }

    #[test]
    fn pplns_coinbase_pays_the_split_and_keeps_the_extranonce_where_miners_put_it() {
        let t = segwit_template();
        let s = split_among(&t, 10, mixed_script, 39);
        let cb = build(&t, &s, &rules(), CoinbaseBudget::core_default()).unwrap();
        let tx = cb.transaction(&[1, 2, 3, 4], &[5, 6, 7, 8, 9, 10, 11, 12]);
        assert!(tx.is_coinbase());
        assert_eq!(&tx.input[0].script_sig.as_bytes()[4..17], &[12, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12]);
        assert_eq!(tx.output[..10], outputs(&s)[..]);
        assert_eq!(tx.output[10].script_pubkey, *t.witness_commitment.as_ref().unwrap());
        assert_eq!(tx.output.iter().map(|o| o.value).sum::<Amount>(), t.coinbase_value);
        assert_eq!(tx.input[0].witness.len(), 1, "the witness reserved value goes with the commitment");
    }

    #[test]
    fn pplns_default_max_outputs_fit_cores_reservation_with_the_largest_outputs() {
        let budget = CoinbaseBudget::core_default();
        assert_eq!(budget, CoinbaseBudget { weight: 7660, sigops_cost: 400 });
        assert_eq!(budget.max_outputs(), 39);
        let t = segwit_template();
        // The worst case: every output the largest (P2TR), and every one P2PKH for sigops.
        let p2tr = |i: u32| mixed_script(i * 3 + 1);
        let p2pkh = |i: u32| mixed_script(i * 3 + 2);
        let mut long_tag = rules();
        long_tag.tag = vec![b'x'; 40];
        for script in [&p2tr as &dyn Fn(u32) -> ScriptBuf, &p2pkh] {
            let s = split_among(&t, 39, script, 39);
            assert_eq!(s.payouts.len(), 39);
            let cb = build(&t, &s, &long_tag, budget).unwrap();
            let size = measure(&cb);
            assert!(size.weight.to_wu() <= budget.weight && size.sigops_cost <= budget.sigops_cost, "{size:?}");
        }
        // One more P2TR output no longer fits a full template.
        let s = split_among(&t, 45, p2tr, 45);
        let e = build(&t, &s, &long_tag, budget).unwrap_err();
        assert!(matches!(e, PplnsCoinbaseError::Weight { outputs: 46, .. }), "{e}");
        assert!(e.to_string().contains("-blockreservedweight"));
    }

    #[test]
    fn pplns_more_room_from_the_node_or_an_empty_template_allows_more_outputs_but_p2pkh_hits_sigops() {
        let t = segwit_template();
        let roomy = CoinbaseBudget::reserved(60_000);
        assert_eq!(roomy.max_outputs(), 100, "capped by 400 sigop cost / 4 per P2PKH");
        assert_eq!(CoinbaseBudget::left_by(&t).weight, MAX_BLOCK_WEIGHT - 340);
        let s = split_among(&t, 250, |i| mixed_script(i * 3), 250);
        let cb = build(&t, &s, &rules(), CoinbaseBudget::left_by(&t)).unwrap();
        assert!(measure(&cb).weight.to_wu() > 7660);
        let s = split_among(&t, 101, |i| mixed_script(i * 3 + 2), 101);
        let e = build(&t, &s, &rules(), CoinbaseBudget::left_by(&t)).unwrap_err();
        assert_eq!(e, PplnsCoinbaseError::Sigops { cost: 404, budget: 400 });
    }

    #[test]
    fn pplns_coinbase_refuses_a_split_of_another_templates_reward() {
        let t = segwit_template();
        let s = split_among(&t, 3, mixed_script, 39);
        let mut other = (*t).clone();
        other.coinbase_value += Amount::from_sat(1);
        let e = build(&other, &s, &rules(), CoinbaseBudget::core_default()).unwrap_err();
        assert!(matches!(e, PplnsCoinbaseError::Value { .. }));
    }

    #[test]
    fn pplns_fee_output_is_first() {
        let t = segwit_template();
        let fee = Fee { bps: 100, script: mixed_script(1000) };
        let payees: BTreeMap<UserId, ScriptBuf> = (0..2).map(|i| (UserId(i), mixed_script(i))).collect();
        let r = SplitRules { fee: Some(fee.clone()), max_outputs: 39 };
        let s = split(t.coinbase_value, &[(UserId(0), 1), (UserId(1), 1)], &Carry::default(), &payees, &r).unwrap();
        let cb = build(&t, &s, &rules(), CoinbaseBudget::core_default()).unwrap();
        let tx = cb.transaction(&[0; 4], &[0; 8]);
        assert_eq!(tx.output[0].script_pubkey, fee.script);
        assert_eq!(tx.output[0].value.to_sat(), t.coinbase_value.to_sat() / 100);
    }
}
