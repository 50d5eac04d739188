//! The PPLNS engine against real Bitcoin Core: a block whose coinbase pays a split of the
//! template's reward among 3, then 50 recipients (P2WPKH, P2TR and P2PKH, the second with a
//! pool fee) is accepted by `submitblock`, and its coinbase pays what a split computed here,
//! independently, from the recorded shares says.

#[allow(unused_imports)]
mod common;

use bitcoin::hashes::{sha256d, Hash};
use bitcoin::{Amount, Block, ScriptBuf, Transaction, TxOut, WitnessProgram, WitnessVersion};
use minebox_node_rpc::SubmitResult;
use minebox_stratum::job::{CoinbaseRules, Template};
use minebox_stratum::pplns::{self, window, Carry, CoinbaseBudget, Fee, ShareWindow, SplitRules, UserId};
use minebox_stratum::work::template_parts;
use minebox_stratum::{merkle, share};
use std::collections::BTreeMap;

/// User `i`'s payout script: P2WPKH, P2TR and P2PKH in turn.
fn script(i: u32) -> ScriptBuf {
    let mut h = [0x5au8; 32];
    h[..4].copy_from_slice(&i.to_le_bytes());
    match i % 3 {
        0 => ScriptBuf::new_p2wpkh(&bitcoin::WPubkeyHash::from_byte_array(h[..20].try_into().unwrap())),
        1 => ScriptBuf::new_witness_program(&WitnessProgram::new(WitnessVersion::V1, &h).unwrap()),
        _ => ScriptBuf::new_p2pkh(&bitcoin::PubkeyHash::from_byte_array(h[..20].try_into().unwrap())),
    }
}

/// The shares miners sent, oldest first: (user, difficulty in 1/1024ths, exact in binary).
fn shares(users: u32) -> Vec<(u32, u64)> {
    (0..users * 4).map(|n| (n * 7 % users, 1 + (n as u64 * 13) % 29)).collect()
}

/// The split as PPLNS defines it, computed without the engine: walk back from the newest
/// share until `window` 1024ths are counted (the share at the edge only in part), each user's
/// part of the reward less the fee in proportion, rounded down, the remainder to the user with
/// the most work (lowest id on a tie); outputs largest first (lowest id on a tie), the fee first.
fn expected_outputs(shares: &[(u32, u64)], window: u64, reward: u64, fee: Option<(u64, ScriptBuf)>) -> Vec<TxOut> {
    let mut left = window;
    let mut work: BTreeMap<u32, u64> = BTreeMap::new();
    for (user, d) in shares.iter().rev() {
        let take = (*d).min(left);
        if take > 0 {
            *work.entry(*user).or_insert(0) += take;
        }
        left -= take;
    }
    let mut out = Vec::new();
    let mut rest = reward;
    if let Some((bps, s)) = fee {
        let cut = reward * bps / 10_000;
        out.push(TxOut { value: Amount::from_sat(cut), script_pubkey: s });
        rest -= cut;
    }
    let total: u64 = work.values().sum();
    let mut parts: Vec<(u32, u64, u64)> =
        work.iter().map(|(u, w)| (*u, *w, (rest as u128 * *w as u128 / total as u128) as u64)).collect();
    let remainder = rest - parts.iter().map(|p| p.2).sum::<u64>();
    let largest = parts.iter().enumerate().max_by(|a, b| a.1 .1.cmp(&b.1 .1).then(b.1 .0.cmp(&a.1 .0))).unwrap().0;
    parts[largest].2 += remainder;
    parts.sort_by(|a, b| b.2.cmp(&a.2).then(a.0.cmp(&b.0)));
    out.extend(parts.iter().map(|(u, _, v)| TxOut { value: Amount::from_sat(*v), script_pubkey: script(*u) }));
    out
}

/// Mines one PPLNS block on the node's template, submits it, and checks what Core stored.
async fn mine_pplns_block(node: &minebox_regtest::Core, users: u32, fee: Option<Fee>) {
    let client = node.client();
    let raw = client.get_block_template(&["segwit"]).await.unwrap();
    let template = Template::new(1, template_parts(&raw, true), true);
    let recorded = shares(users);
    let total: u64 = recorded.iter().map(|s| s.1).sum();
    // The window ends inside the oldest counted share: a partial share at the edge.
    let window_1024ths = total - recorded[0].1 - recorded[1].1 - 1;
    let mut w = ShareWindow::new(window_1024ths as u128 * (1 << 54), window::DEFAULT_MAX_ENTRIES);
    for (user, d) in &recorded {
        w.append(UserId(*user), window::work_of(*d as f64 / 1024.0).unwrap());
    }
    let payees: BTreeMap<UserId, ScriptBuf> = (0..users).map(|i| (UserId(i), script(i))).collect();
    let budget = CoinbaseBudget::left_by(&template);
    let rules = SplitRules { fee: fee.clone(), max_outputs: budget.max_outputs() };
    let coinbase_rules =
        CoinbaseRules { tag: b"/MineBox-pplns/".to_vec(), extranonce2_len: 8, min_tx_size: 0, segwit: true };
    let work = pplns::work(&template, &w, &Carry::default(), &payees, &rules, &coinbase_rules, budget).unwrap();
    assert_eq!(work.split.payouts.len(), users as usize);
    assert!(work.split.carry.is_empty(), "every user is above dust here");

    // A miner's find: extranonces, then a nonce that meets regtest's target.
    let (en1, en2) = ([9u8, 8, 7, 6], [1u8; 8]);
    let coinbase = work.coinbase.transaction(&en1, &en2);
    let root = merkle::root(sha256d::Hash::hash(&work.coinbase.assemble(&en1, &en2)).to_byte_array(), &template.branch);
    let mut header = bitcoin::block::Header {
        version: bitcoin::block::Version::from_consensus(template.version as i32),
        prev_blockhash: template.prev_hash,
        merkle_root: bitcoin::TxMerkleNode::from_byte_array(root),
        time: template.cur_time,
        bits: template.bits,
        nonce: 0,
    };
    while !template.target.is_met_by(header.block_hash()) {
        header.nonce += 1;
    }
    assert!(share::hash_difficulty(&header.block_hash()) >= template.network_difficulty());
    let mut txdata = vec![coinbase];
    txdata.extend(template.transactions.iter().map(|t| bitcoin::consensus::deserialize::<Transaction>(t).unwrap()));
    let block = Block { header, txdata };
    let hex = bitcoin::consensus::encode::serialize_hex(&block);
    assert_eq!(client.submit_block(&hex).await.unwrap(), SubmitResult::Accepted, "{users} recipients");
    assert_eq!(client.get_best_block_hash().await.unwrap(), block.block_hash());

    // The coinbase as Core stored it.
    let stored = client.get_block_verbose(&block.block_hash(), 0).await.unwrap();
    let stored: Block = bitcoin::consensus::deserialize(&hex::decode(stored.as_str().unwrap()).unwrap()).unwrap();
    let outputs = &stored.txdata[0].output;
    let expected =
        expected_outputs(&recorded, window_1024ths, raw.coinbase_value, fee.map(|f| (f.bps as u64, f.script)));
    assert_eq!(outputs[..outputs.len() - 1], expected[..], "{users} recipients");
    assert_eq!(outputs.last().unwrap().script_pubkey, *template.witness_commitment.as_ref().unwrap());
    assert_eq!(outputs.iter().map(|o| o.value.to_sat()).sum::<u64>(), raw.coinbase_value);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pplns_blocks_paying_3_and_50_users_are_accepted_by_core_and_pay_the_recorded_shares() {
    let node = common::core().await;
    mine_pplns_block(&node, 3, None).await;
    let fee = Fee { bps: 100, script: ScriptBuf::new_p2wpkh(&bitcoin::WPubkeyHash::from_byte_array([0xfe; 20])) };
    mine_pplns_block(&node, 50, Some(fee)).await;
}
