//! The Bitcoin Core regtest peer itself: it starts, mines, serves segwit templates and ZMQ,
//! and keeps its chain across a clean stop, a SIGKILL and a restart.

use minebox_regtest::{core_p2pkh_address, core_p2wpkh_address, Core};

#[tokio::test]
async fn core_mines_and_serves_segwit_templates_across_restarts() {
    let mut node = Core::start().await.expect("Bitcoin Core starts (scripts/setup installs libzmq5)");
    let client = node.client();

    let mined = node.generate_to_address(2, &core_p2wpkh_address([7; 20])).await.unwrap();
    assert_eq!(mined.len(), 2);
    assert_eq!(client.get_best_block_hash().await.unwrap(), mined[1]);
    let mined = node.generate_to_address(1, &core_p2pkh_address([8; 20])).await.unwrap();
    assert_eq!(client.get_best_block_hash().await.unwrap(), mined[0]);

    let template = client.get_block_template(&["segwit"]).await.unwrap();
    assert_eq!(template.height, 4, "the template builds on the 3 blocks mined");
    assert_eq!(template.previous_block_hash, mined[0]);
    assert!(template.segwit_active(), "regtest Core has segwit active from genesis");

    // A clean stop and start keeps the chain.
    node.restart().await.unwrap();
    assert_eq!(node.client().get_best_block_hash().await.unwrap(), mined[0]);

    // So does SIGKILL for the blocks Core had flushed; mining goes on after it.
    node.kill().await;
    assert!(node.pid().is_none());
    node.start_again().await.unwrap();
    let again = node.generate_to_address(1, &core_p2wpkh_address([9; 20])).await.unwrap();
    let info = node.client().get_blockchain_info().await.unwrap();
    assert!(info.blocks >= 2, "the chain survived the kill: {info:?}");
    assert_eq!(node.client().get_best_block_hash().await.unwrap(), again[0]);
}

#[tokio::test]
async fn core_listens_for_zmq_subscribers() {
    let node = Core::start().await.unwrap();
    let endpoint = node.zmq_endpoint();
    let addr = endpoint.strip_prefix("tcp://").unwrap();
    tokio::net::TcpStream::connect(addr).await.expect("bitcoind's ZMQ publisher accepts connections");
}

/// The chain Bitcoin Core's regtest assumeutxo snapshots are made from: built here, accepted
/// by Core block by block, and block 200 is the one Core's chainparams name.
#[tokio::test]
async fn the_deterministic_chain_is_bitcoin_cores() {
    let chain = minebox_regtest::core_deterministic_chain(200);
    assert_eq!(chain[199].block_hash().to_string(), minebox_regtest::CORE_ASSUMEUTXO_200);
    let node = Core::start().await.unwrap();
    node.submit_blocks(&chain).await.unwrap();
    let info = node.client().get_blockchain_info().await.unwrap();
    assert_eq!(info.blocks, 200);
    assert_eq!(node.client().get_best_block_hash().await.unwrap().to_string(), minebox_regtest::CORE_ASSUMEUTXO_200);
}
