//! The client against a real bcoin regtest node.

use bitcoin::absolute::LockTime;
use bitcoin::block::{Header, Version};
use bitcoin::hashes::Hash;
use bitcoin::script::Builder;
use bitcoin::{Amount, Block, OutPoint, ScriptBuf, Sequence, Transaction, TxIn, TxMerkleNode, TxOut, Witness};
use minebox_node_rpc::{Auth, NodeClient, RpcError, SubmitResult};
use minebox_regtest::Bcoin;

/// The simplest valid block on a template: coinbase only, nonce ground to the regtest target.
fn mine(t: &minebox_node_rpc::BlockTemplate) -> Block {
    let commitment = if t.segwit_active() { t.default_witness_commitment.as_ref() } else { None };
    let mut outputs =
        vec![TxOut { value: Amount::from_sat(t.coinbase_value), script_pubkey: ScriptBuf::new_op_return([0u8; 4]) }];
    if let Some(c) = commitment {
        outputs.push(TxOut { value: Amount::ZERO, script_pubkey: c.clone() });
    }
    let coinbase = Transaction {
        version: bitcoin::transaction::Version::ONE,
        lock_time: LockTime::ZERO,
        input: vec![TxIn {
            previous_output: OutPoint::null(),
            script_sig: Builder::new().push_int(t.height as i64).push_slice([1u8, 2, 3, 4]).into_script(),
            sequence: Sequence::MAX,
            witness: if commitment.is_some() { Witness::from_slice(&[[0u8; 32]]) } else { Witness::new() },
        }],
        output: outputs,
    };
    let mut block = Block {
        header: Header {
            version: Version::from_consensus(t.version),
            prev_blockhash: t.previous_block_hash,
            merkle_root: TxMerkleNode::from_byte_array(coinbase.compute_txid().to_byte_array()),
            time: t.cur_time as u32,
            bits: t.bits,
            nonce: 0,
        },
        txdata: vec![coinbase],
    };
    while !block.header.target().is_met_by(block.header.block_hash()) {
        block.header.nonce += 1;
    }
    block
}

#[tokio::test]
async fn template_submit_and_errors_against_bcoin() {
    let mut node = Bcoin::start().await.expect("bcoin starts (run scripts/setup)");
    let client = node.client();
    let info = client.get_blockchain_info().await.unwrap();
    assert_eq!(info.chain, "regtest");
    assert_eq!(info.blocks, 0);

    let t = client.get_block_template(&["segwit"]).await.unwrap();
    assert_eq!(t.height, 1);
    assert_eq!(t.coinbase_value, 50 * 100_000_000);
    let block = mine(&t);
    let hex = bitcoin::consensus::encode::serialize_hex(&block);
    assert_eq!(client.submit_block(&hex).await.unwrap(), SubmitResult::Accepted);
    assert_eq!(client.get_best_block_hash().await.unwrap(), block.block_hash());
    assert_eq!(client.get_block_confirmations(&block.block_hash()).await.unwrap(), 1);
    // The same block again is a duplicate, and a block on a stale parent is refused.
    assert!(matches!(client.submit_block(&hex).await.unwrap(), SubmitResult::Rejected(_)));
    let mut bad = block.clone();
    bad.header.nonce = bad.header.nonce.wrapping_add(1);
    while bad.header.target().is_met_by(bad.header.block_hash()) {
        bad.header.nonce += 1;
    }
    let r = client.submit_block(&bitcoin::consensus::encode::serialize_hex(&bad)).await;
    assert!(!matches!(r, Ok(SubmitResult::Accepted)), "{r:?}");
    // Garbage is an error, not an acceptance.
    assert!(!matches!(client.submit_block("00ff").await, Ok(SubmitResult::Accepted)));

    // Wrong credentials say so.
    let wrong = NodeClient::new(&node.rpc_url(), Auth::UserPass { user: "x".into(), pass: "wrong".into() }).unwrap();
    let e = wrong.get_best_block_hash().await.unwrap_err();
    assert!(matches!(e, RpcError::Unauthorized { .. }), "{e:?}");
    assert!(!e.is_transient());

    // A stopped node is a transient transport error; back, it answers again.
    node.stop().await;
    let e = client.get_best_block_hash().await.unwrap_err();
    assert!(e.is_transient(), "{e:?}");
    assert!(e.to_string().contains("not reachable"));
    node.restart().await.unwrap();
    assert!(client.get_block_template(&["segwit"]).await.is_ok());
}

#[tokio::test]
async fn cookie_auth_is_reread_when_the_node_changes_it() {
    let node = Bcoin::start().await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let cookie = dir.path().join(".cookie");
    std::fs::write(&cookie, "__cookie__:stale").unwrap();
    let client = NodeClient::new(&node.rpc_url(), Auth::CookieFile(cookie.clone())).unwrap();
    assert!(matches!(client.get_best_block_hash().await, Err(RpcError::Unauthorized { .. })));
    // The node restarts and writes a new cookie: the next call picks it up.
    std::fs::write(&cookie, format!("__cookie__:{}", node.api_key())).unwrap();
    assert!(client.get_best_block_hash().await.is_ok());
}
