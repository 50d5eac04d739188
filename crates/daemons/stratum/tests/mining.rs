//! End to end: simulated Bitaxes mine real regtest blocks through the server on a real
//! Bitcoin Core node (the program the box runs), which accepts them, and their coinbases pay
//! the authorized addresses and commit to the witnesses (segwit is active on Core regtest from
//! genesis). The basic mining test also runs on bcoin, a second implementation of the rules.

mod common;

use bitcoin::hashes::Hash;
use common::{regtest_addresses, stack, start_server, TestNode};
use minebox_stratum::connection::Limits;
use minebox_stratum::store::BlockStatus;
use serde_json::Value;
use std::time::{Duration, Instant};

async fn wait_for<F: FnMut() -> bool>(what: &str, timeout: Duration, mut f: F) {
    let started = Instant::now();
    while !f() {
        assert!(started.elapsed() < timeout, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// The coinbase output that commits to the block's witnesses (BIP 141): OP_RETURN, push 36,
/// aa21a9ed and the commitment hash.
const WITNESS_COMMITMENT_PREFIX: &str = "6a24aa21a9ed";

fn has_witness_commitment(coinbase: &Value) -> bool {
    coinbase["vout"]
        .as_array()
        .unwrap()
        .iter()
        .any(|o| o["scriptPubKey"]["hex"].as_str().unwrap_or("").starts_with(WITNESS_COMMITMENT_PREFIX))
}

/// Five simulated Bitaxes, one per address kind, mine on `node` through the server; every
/// block the server recorded was accepted and pays the miner who found it.
async fn bitaxes_mine_blocks_that_pay_their_own_addresses_on(node: &impl TestNode, core: bool) {
    let dir = tempfile::tempdir().unwrap();
    let server = start_server(node, dir.path(), Limits::default()).await;
    let url = format!("stratum+tcp://{}", server.stratum_addr("btc").unwrap());
    let addresses = regtest_addresses();
    let mut tasks = Vec::new();
    for (i, (address, _)) in addresses.iter().enumerate() {
        let url = url.clone();
        let user = format!("{address}.bitaxe{i}");
        tasks.push(tokio::spawn(async move {
            minebox_simminer::mine_shares(&url, &user, 2, Duration::from_secs(120)).await
        }));
    }
    for t in tasks {
        let report = t.await.unwrap().expect("miner ran");
        assert!(report.accepted >= 2, "{report:?}");
        // Five miners find regtest blocks every few hashes, so a share can race a new block
        // and be stale (21); nothing else may be refused.
        assert!(report.rejected.keys().all(|k| k.starts_with("[21]")), "honest shares refused: {:?}", report.rejected);
        assert_eq!(report.version_mask, 0x1fff_e000, "version rolling negotiated");
    }

    // Every block the server recorded was accepted and pays the miner who found it.
    let client = node.client();
    let store = server.store.clone();
    let mut settled = Vec::new();
    wait_for("blocks to be answered by the node", Duration::from_secs(30), || {
        settled = store.blocks(Some("btc"), 1000).unwrap();
        !settled.is_empty() && settled.iter().all(|b| b.status != BlockStatus::Submitting)
    })
    .await;
    let mut paid = std::collections::HashSet::new();
    for b in &settled {
        // A block can lose a race against another miner's block at the same height.
        if b.status != BlockStatus::Accepted {
            assert!(
                b.detail.contains("prevblk")
                    || b.detail.contains("inconclusive")
                    || b.detail.contains("duplicate")
                    || b.detail.contains("stale"),
                "{} refused: {}",
                b.hash,
                b.detail
            );
            continue;
        }
        let hash = b.hash.parse().unwrap();
        let block: Value = client.get_block_verbose(&hash, 2).await.unwrap();
        let coinbase = &block["tx"][0];
        let paid_script = coinbase["vout"][0]["scriptPubKey"]["hex"].as_str().unwrap().to_string();
        let address = b.worker.split('.').next().unwrap();
        let (_, script) = addresses.iter().find(|(a, _)| a == address).expect("worker's address is one of ours");
        assert_eq!(paid_script, script.to_hex_string(), "block {} must pay {}", b.hash, address);
        if core {
            // Core's templates carry the segwit rule's commitment; the server must keep it.
            assert!(has_witness_commitment(coinbase), "block {} has no witness commitment: {coinbase}", b.hash);
        }
        paid.insert(address.to_string());
    }
    assert_eq!(paid.len(), addresses.len(), "every address kind (P2PKH, P2SH, P2WPKH, P2WSH, P2TR) was paid: {paid:?}");
    // Blocks found at the same height by two miners race; the best chain holds one of them.
    let height = client.get_blockchain_info().await.unwrap().blocks;
    assert!(height >= 2, "chain height {height}");
    let accepted = settled.iter().filter(|b| b.status == BlockStatus::Accepted).count();
    assert!(accepted >= addresses.len(), "{accepted} accepted blocks");
    server.stop().await;
}

#[tokio::test]
async fn bitaxes_mine_blocks_that_pay_their_own_addresses() {
    let node = common::core().await;
    bitaxes_mine_blocks_that_pay_their_own_addresses_on(&node, true).await;
}

/// The same on bcoin: a second implementation of the consensus rules accepts the server's
/// blocks too (the box can mine on an external node that is not Core).
#[tokio::test]
async fn bitaxes_mine_blocks_that_bcoin_accepts_too() {
    let node = minebox_regtest::Bcoin::start().await.expect("bcoin starts (run scripts/setup to install it)");
    bitaxes_mine_blocks_that_pay_their_own_addresses_on(&node, false).await;
}

/// Subscribes and authorizes; returns extranonce1 and the first job.
async fn subscribe(c: &mut common::Raw, user: &str) -> (Vec<u8>, Value) {
    c.send(r#"{"id":1,"method":"mining.subscribe","params":["test"]}"#).await;
    let sub = c.reply(1).await;
    let en1 = hex::decode(sub["result"][1].as_str().unwrap()).unwrap();
    c.send(&format!(r#"{{"id":2,"method":"mining.authorize","params":["{user}","x"]}}"#)).await;
    assert_eq!(c.reply(2).await["result"], true);
    (en1, c.notify().await)
}

/// Finds a block on `notify`'s job and submits it on `c`; returns the block hash once the
/// miner heard `true`.
async fn submit_a_block(c: &mut common::Raw, id: u64, user: &str, en1: &[u8], notify: &Value) -> bitcoin::BlockHash {
    let job = minebox_simminer::work::Job::from_notify(&notify["params"]).unwrap();
    let en2 = [0u8; 8];
    let (nonce, hash) = common::process::grind_block(&job, en1, &en2);
    c.send(&format!(
        r#"{{"id":{id},"method":"mining.submit","params":["{user}","{}","{}","{:08x}","{nonce:08x}"]}}"#,
        job.id,
        hex::encode(en2),
        job.ntime
    ))
    .await;
    let reply = c.reply(id).await;
    assert_eq!(reply["result"], true, "block share refused: {reply}");
    hash
}

/// A regtest transaction with a witness, so a block holding it is valid only with a correct
/// witness commitment: 101 blocks to P2WSH(OP_TRUE) on `node`, then the first coinbase is
/// spent (its witness: the script OP_TRUE). Returns its txid.
async fn send_a_segwit_transaction(node: &minebox_regtest::Core) -> bitcoin::Txid {
    use bitcoin::{
        absolute, transaction, Address, Amount, OutPoint, ScriptBuf, Sequence, Transaction, TxIn, TxOut, Witness,
    };
    let op_true = ScriptBuf::from(vec![0x51]);
    let address = Address::p2wsh(&op_true, bitcoin::Network::Regtest);
    let mined = node.generate_to_address(101, &address.to_string()).await.unwrap();
    let client = node.client();
    let first = client.get_block_verbose(&mined[0], 1).await.unwrap();
    let coinbase: bitcoin::Txid = first["tx"][0].as_str().unwrap().parse().unwrap();
    let mut witness = Witness::new();
    witness.push(op_true.as_bytes());
    let tx = Transaction {
        version: transaction::Version::TWO,
        lock_time: absolute::LockTime::ZERO,
        input: vec![TxIn {
            previous_output: OutPoint { txid: coinbase, vout: 0 },
            script_sig: ScriptBuf::new(),
            sequence: Sequence::MAX,
            witness,
        }],
        output: vec![TxOut { value: Amount::from_sat(4_999_990_000), script_pubkey: address.script_pubkey() }],
    };
    let raw = bitcoin::consensus::encode::serialize_hex(&tx);
    let txid: String = client.call("sendrawtransaction", serde_json::json!([raw])).await.expect("Core takes the spend");
    assert_eq!(txid, tx.compute_txid().to_string());
    tx.compute_txid()
}

#[tokio::test]
async fn a_block_holding_a_segwit_transaction_is_accepted_by_core() {
    let node = common::core().await;
    let txid = send_a_segwit_transaction(&node).await;
    let dir = tempfile::tempdir().unwrap();
    let server = start_server(&node, dir.path(), Limits::default()).await;
    let mut c = common::Raw::connect(server.stratum_addr("btc").unwrap()).await;
    let user = format!("{}.segwit", regtest_addresses()[2].0);
    let (en1, notify) = subscribe(&mut c, &user).await;
    let hash = submit_a_block(&mut c, 3, &user, &en1, &notify).await;
    let client = node.client();
    wait_for_async(|| async { client.get_best_block_hash().await.ok() == Some(hash) }).await;
    let block = client.get_block_verbose(&hash, 2).await.unwrap();
    let txids: Vec<&str> = block["tx"].as_array().unwrap().iter().map(|t| t["txid"].as_str().unwrap()).collect();
    assert!(txids.contains(&txid.to_string().as_str()), "the mempool's segwit spend is in the block: {txids:?}");
    assert!(has_witness_commitment(&block["tx"][0]), "{}", block["tx"][0]);
    server.stop().await;
}

#[tokio::test]
async fn statistics_survive_a_restart() {
    let mut s = stack(Limits::default()).await;
    let url = format!("stratum+tcp://{}", s.server.stratum_addr("btc").unwrap());
    let user = format!("{}.rig", regtest_addresses()[2].0);
    let report = minebox_simminer::mine_shares(&url, &user, 3, Duration::from_secs(60)).await.unwrap();
    assert!(report.accepted >= 3);
    let before = s.server.stats.snapshot().into_iter().find(|w| w.worker == user).unwrap();
    s.server.stop().await;
    // A new server process on the same database continues the counts.
    s.server = start_server(&s.node, s.dir.path(), Limits::default()).await;
    let after = s.server.stats.snapshot().into_iter().find(|w| w.worker == user).expect("worker restored");
    assert_eq!(after.accepted, before.accepted);
    assert_eq!(after.best_share, before.best_share);
    assert!(after.rates.hashrates(after.rates.at)[1] > 0.0, "hourly hashrate kept");
    let api: Value = reqwest_get(&format!("http://{}/api/v1/stratum/workers", s.server.api)).await;
    assert_eq!(api[0]["worker"], user);
    assert_eq!(api[0]["accepted"], before.accepted);
}

async fn reqwest_get(url: &str) -> Value {
    // A plain HTTP/1.1 GET over a TcpStream keeps reqwest out of the test dependencies.
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let u = url.trim_start_matches("http://");
    let (host, path) = u.split_once('/').unwrap();
    let mut s = tokio::net::TcpStream::connect(host).await.unwrap();
    s.write_all(format!("GET /{path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n").as_bytes()).await.unwrap();
    let mut body = String::new();
    s.read_to_string(&mut body).await.unwrap();
    let (head, body) = body.split_once("\r\n\r\n").unwrap();
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    serde_json::from_str(body).unwrap()
}

#[tokio::test]
async fn a_block_recorded_before_a_crash_is_submitted_at_the_next_start() {
    // Mine one block's worth of work by hand, record it as the server does just before
    // submitting, and "crash" (never submit). The next start must submit it.
    let s = stack(Limits::default()).await;
    let node = s.node.client();
    let t = node.get_block_template(&["segwit"]).await.unwrap();
    let parts = minebox_stratum::work::template_parts(&t, true);
    let template = std::sync::Arc::new(minebox_stratum::job::Template::new(1, parts, true));
    let rules = minebox_stratum::job::CoinbaseRules {
        tag: b"/crash/".to_vec(),
        extranonce2_len: 8,
        min_tx_size: 0,
        segwit: true,
    };
    let (_, script) = regtest_addresses()[0].clone();
    let job = std::sync::Arc::new(minebox_stratum::job::Job::new(template.clone(), script.clone(), &rules).unwrap());
    let found = (0u32..)
        .find_map(|nonce| {
            let submit = minebox_stratum::protocol::Submit {
                worker: "w".into(),
                job_id: "1".into(),
                extranonce2: vec![0; 8],
                ntime: template.cur_time,
                nonce,
                version_bits: None,
            };
            let h = minebox_stratum::share::hash_submission(&job, &[0; 4], &submit, 0, template.cur_time).unwrap();
            h.is_block.then_some(minebox_stratum::session::FoundBlock {
                job: job.clone(),
                extranonce1: [0; 4],
                extranonce2: vec![0; 8],
                hashed: h,
                worker: "crash.w".into(),
            })
        })
        .unwrap();
    let hash = found.hashed.hash;
    s.server
        .store
        .record_block(&minebox_stratum::store::BlockRecord {
            block: minebox_stratum::store::Block {
                coin: "btc".into(),
                network: "regtest".into(),
                height: template.height,
                hash: hash.to_string(),
                worker: "crash.w".into(),
                reward_sats: template.coinbase_value.to_sat(),
                share_difficulty: found.hashed.difficulty,
                network_difficulty: template.network_difficulty(),
                found_at: 0,
                status: BlockStatus::Submitting,
                detail: String::new(),
                confirmations: 0,
                pool_config_version: None,
            },
            block_hex: hex::encode(minebox_stratum::block::assemble(&found)),
        })
        .unwrap();
    assert_ne!(node.get_best_block_hash().await.unwrap(), hash);
    s.server.stop().await;
    let server = start_server(&s.node, s.dir.path(), Limits::default()).await;
    wait_for_async(|| async { node.get_best_block_hash().await.ok() == Some(hash) }).await;
    let store = server.store.clone();
    wait_for("the record to say accepted", Duration::from_secs(10), || {
        store
            .blocks(Some("btc"), 10)
            .unwrap()
            .iter()
            .any(|b| b.hash == hash.to_string() && b.status == BlockStatus::Accepted)
    })
    .await;
}

async fn wait_for_async<F, Fut>(mut f: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let started = Instant::now();
    while !f().await {
        assert!(started.elapsed() < Duration::from_secs(20), "timed out");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test]
async fn miners_keep_their_connection_while_the_node_restarts_and_get_fresh_work() {
    let mut s = stack(Limits::default()).await;
    let addr = s.server.stratum_addr("btc").unwrap();
    let mut c = common::Raw::connect(addr).await;
    let user = format!("{}.steady", regtest_addresses()[2].0);
    let (en1, first) = subscribe(&mut c, &user).await;
    s.node.stop().await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    let status: Value = reqwest_get(&format!("http://{}/api/v1/stratum", s.server.api)).await;
    assert_eq!(status[0]["node"]["reachable"], false, "{status}");
    s.node.start_again().await.unwrap();
    // Core kept its chain; a block mined elsewhere moves the tip, so a clean job arrives on
    // the same connection.
    let tip = s.node.generate_to_address(1, &minebox_regtest::core_p2wpkh_address([1; 20])).await.unwrap()[0];
    let job = job_on(&mut c, tip).await;
    assert_ne!(job["params"][1], first["params"][1]);
    assert_eq!(job["params"][8], true, "clean_jobs on new work after the node returned");
    let status: Value = reqwest_get(&format!("http://{}/api/v1/stratum", s.server.api)).await;
    assert_eq!(status[0]["node"]["reachable"], true);
    // Mining resumes on the same connection: a block on the fresh job is Core's new tip.
    let hash = submit_a_block(&mut c, 3, &user, &en1, &job).await;
    let client = s.node.client();
    wait_for_async(|| async { client.get_best_block_hash().await.ok() == Some(hash) }).await;
}

/// Reads jobs until one that builds on `tip`.
async fn job_on(c: &mut common::Raw, tip: bitcoin::BlockHash) -> Value {
    loop {
        let j = c.notify().await;
        let job = minebox_simminer::work::Job::from_notify(&j["params"]).unwrap();
        if job.prev_hash == tip.to_byte_array() {
            return j;
        }
    }
}

#[tokio::test]
async fn miners_keep_their_connection_through_a_node_killed_with_sigkill_and_mining_resumes() {
    let mut s = stack(Limits::default()).await;
    let client = s.node.client();
    let addr = s.server.stratum_addr("btc").unwrap();
    let mut c = common::Raw::connect(addr).await;
    let user = format!("{}.kill9", regtest_addresses()[3].0);
    let (en1, first) = subscribe(&mut c, &user).await;
    // A block before the kill, so Core has a chain of its own to recover.
    let before = submit_a_block(&mut c, 3, &user, &en1, &first).await;
    wait_for_async(|| async { client.get_best_block_hash().await.ok() == Some(before) }).await;
    job_on(&mut c, before).await;
    s.node.kill().await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    let status: Value = reqwest_get(&format!("http://{}/api/v1/stratum", s.server.api)).await;
    assert_eq!(status[0]["node"]["reachable"], false, "{status}");
    s.node.start_again().await.expect("Core starts again after SIGKILL");
    // Whatever Core recovered after the kill, a block mined on it is the tip to mine on.
    let tip = s.node.generate_to_address(1, &minebox_regtest::core_p2wpkh_address([2; 20])).await.unwrap()[0];
    let job = job_on(&mut c, tip).await;
    assert_eq!(job["params"][8], true, "clean_jobs on new work after the node returned");
    let hash = submit_a_block(&mut c, 4, &user, &en1, &job).await;
    wait_for_async(|| async { client.get_best_block_hash().await.ok() == Some(hash) }).await;
    let store = s.server.store.clone();
    wait_for("the record to say accepted", Duration::from_secs(10), || {
        store
            .blocks(Some("btc"), 10)
            .unwrap()
            .iter()
            .any(|b| b.hash == hash.to_string() && b.status == BlockStatus::Accepted)
    })
    .await;
}

#[tokio::test]
async fn a_zmq_hashblock_notification_brings_fresh_work_without_polling() {
    let node = common::core().await;
    let dir = tempfile::tempdir().unwrap();
    let mut coin = common::coin_config(&node);
    // Core's own hashblock publisher.
    coin.zmq_hashblock = Some(node.zmq_endpoint());
    // Neither the poll nor the fee refresh may find the new block: only ZMQ can.
    coin.block_poll = Duration::from_secs(3600);
    coin.template_refresh = Duration::from_secs(3600);
    let server = minebox_stratum::service::start(minebox_stratum::service::ServiceConfig {
        coins: vec![coin],
        database: dir.path().join("state.db"),
        api_listen: "127.0.0.1:0".parse().unwrap(),
        stats_flush: Duration::from_secs(60),
        limits: Limits::default(),
        supervisor_events: None,
    })
    .await
    .unwrap();
    let mut c = common::Raw::connect(server.stratum_addr("btc").unwrap()).await;
    let first = c.handshake(&format!("{}.zmq", regtest_addresses()[2].0)).await;
    let status: Value = reqwest_get(&format!("http://{}/api/v1/stratum", server.api)).await;
    assert_eq!(status[0]["node"]["block_notify"], "zmq");
    // Mine until the subscription has reached Core (a PUB socket drops what it sends before).
    let mut tries = 0;
    let job = loop {
        tries += 1;
        assert!(tries < 100, "no fresh work after Core published new blocks over ZMQ");
        node.generate_to_address(1, &minebox_regtest::core_p2wpkh_address([2; 20])).await.unwrap();
        match tokio::time::timeout(Duration::from_millis(500), c.notify()).await {
            Ok(j) if j["params"][1] != first["params"][1] => break j,
            _ => continue,
        }
    };
    assert_eq!(job["params"][8], true);
}

#[tokio::test]
async fn a_block_found_while_the_node_is_down_is_submitted_when_it_returns() {
    // Core keeps its chain on disk, so the block's parent is still there after the restart.
    let mut node = common::core().await;
    let dir = tempfile::tempdir().unwrap();
    let server = start_server(&node, dir.path(), Limits::default()).await;
    let mut c = common::Raw::connect(server.stratum_addr("btc").unwrap()).await;
    let user = format!("{}.down", regtest_addresses()[2].0);
    let (en1, notify) = subscribe(&mut c, &user).await;

    node.stop().await;
    // The share is accepted even with the node away.
    let block_hash = submit_a_block(&mut c, 3, &user, &en1, &notify).await;
    let store = server.store.clone();
    wait_for("the block to be recorded", Duration::from_secs(10), || {
        store
            .blocks(Some("btc"), 10)
            .unwrap()
            .iter()
            .any(|b| b.hash == block_hash.to_string() && b.status == BlockStatus::Submitting)
    })
    .await;

    node.start_again().await.unwrap();
    let client = node.client();
    wait_for_async(|| async { client.get_best_block_hash().await.ok() == Some(block_hash) }).await;
    wait_for("the record to say accepted", Duration::from_secs(10), || {
        store
            .blocks(Some("btc"), 10)
            .unwrap()
            .iter()
            .any(|b| b.hash == block_hash.to_string() && b.status == BlockStatus::Accepted)
    })
    .await;
}
