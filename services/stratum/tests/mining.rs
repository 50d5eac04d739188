//! End to end: simulated Bitaxes mine real regtest blocks through the server on a real
//! bcoin node; the node accepts them and their coinbases pay the authorized addresses.

mod common;

use bitcoin::hashes::Hash;
use common::{regtest_addresses, stack, start_server};
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

#[tokio::test]
async fn bitaxes_mine_blocks_that_pay_their_own_addresses() {
    let s = stack(Limits::default()).await;
    let url = format!("stratum+tcp://{}", s.server.stratum_addr("btc").unwrap());
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
    let node = s.node.client();
    let store = s.server.store.clone();
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
        let block: Value = node.get_block_verbose(&hash, 2).await.unwrap();
        let coinbase = &block["tx"][0];
        let paid_script = coinbase["vout"][0]["scriptPubKey"]["hex"].as_str().unwrap().to_string();
        let address = b.worker.split('.').next().unwrap();
        let (_, script) = addresses.iter().find(|(a, _)| a == address).expect("worker's address is one of ours");
        assert_eq!(paid_script, script.to_hex_string(), "block {} must pay {}", b.hash, address);
        paid.insert(address.to_string());
    }
    assert_eq!(paid.len(), addresses.len(), "every address kind (P2PKH, P2SH, P2WPKH, P2WSH, P2TR) was paid: {paid:?}");
    // Blocks found at the same height by two miners race; the best chain holds one of them.
    let height = node.get_blockchain_info().await.unwrap().blocks;
    assert!(height >= 2, "chain height {height}");
    let accepted = settled.iter().filter(|b| b.status == BlockStatus::Accepted).count();
    assert!(accepted >= addresses.len(), "{accepted} accepted blocks");
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
    let first = c.handshake(&format!("{}.steady", regtest_addresses()[2].0)).await;
    s.node.stop().await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    let status: Value = reqwest_get(&format!("http://{}/api/v1/stratum", s.server.api)).await;
    assert_eq!(status[0]["node"]["reachable"], false, "{status}");
    s.node.restart().await.unwrap();
    // The in-memory chain restarted at genesis: a different tip, so a clean job arrives
    // on the same connection.
    s.node.generate_to_address(1, &minebox_regtest::bcoin_p2pkh_address([1; 20])).await.unwrap();
    let job = loop {
        let j = c.notify().await;
        if j["params"][1] != first["params"][1] {
            break j;
        }
    };
    assert_eq!(job["params"][8], true, "clean_jobs on new work after the node returned");
    let status: Value = reqwest_get(&format!("http://{}/api/v1/stratum", s.server.api)).await;
    assert_eq!(status[0]["node"]["reachable"], true);
}

#[tokio::test]
async fn a_zmq_hashblock_notification_brings_fresh_work_without_polling() {
    let node = minebox_regtest::Bcoin::start().await.unwrap();
    let mut zmq = minebox_regtest::ZmqPublisher::start().await;
    let dir = tempfile::tempdir().unwrap();
    let mut coin = common::coin_config(&node);
    coin.zmq_hashblock = Some(zmq.endpoint.clone());
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
    let mined = node.generate_to_address(1, &minebox_regtest::bcoin_p2pkh_address([2; 20])).await.unwrap();
    let status: Value = reqwest_get(&format!("http://{}/api/v1/stratum", server.api)).await;
    assert_eq!(status[0]["node"]["block_notify"], "zmq");
    // Publish until the subscription has reached the publisher (PUB drops earlier ones).
    let mut tries = 0;
    let job = loop {
        tries += 1;
        assert!(tries < 200, "no fresh work after publishing the new block over ZMQ");
        zmq.publish(&mined[0].to_string()).await;
        match tokio::time::timeout(Duration::from_millis(300), c.notify()).await {
            Ok(j) if j["params"][1] != first["params"][1] => break j,
            _ => continue,
        }
    };
    assert_eq!(job["params"][8], true);
}

#[tokio::test]
async fn a_block_found_while_the_node_is_down_is_submitted_when_it_returns() {
    // A node that keeps its chain on disk, so the block's parent is still there after the restart.
    let mut node = minebox_regtest::Bcoin::start_persistent().await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let server = start_server(&node, dir.path(), Limits::default()).await;
    let mut c = common::Raw::connect(server.stratum_addr("btc").unwrap()).await;
    c.send(r#"{"id":1,"method":"mining.subscribe","params":["test"]}"#).await;
    let sub = c.reply(1).await;
    let en1 = hex::decode(sub["result"][1].as_str().unwrap()).unwrap();
    let user = format!("{}.down", regtest_addresses()[2].0);
    c.send(&format!(r#"{{"id":2,"method":"mining.authorize","params":["{user}","x"]}}"#)).await;
    assert_eq!(c.reply(2).await["result"], true);
    let notify = c.notify().await;
    let job = minebox_simminer::work::Job::from_notify(&notify["params"]).unwrap();

    node.stop().await;
    // Grind a nonce that is a block on regtest (about every other one).
    let en2 = [0u8; 8];
    let root = job.merkle_root(&en1, &en2);
    let target = bitcoin::Target::from_compact(bitcoin::CompactTarget::from_consensus(job.bits)).to_le_bytes();
    let (nonce, hash) = (0u32..)
        .map(|n| (n, minebox_simminer::work::hash_header(&job.header(&root, job.version, job.ntime, n))))
        .find(|(_, h)| minebox_simminer::work::meets(h, &target))
        .unwrap();
    c.send(&format!(
        r#"{{"id":3,"method":"mining.submit","params":["{user}","{}","{}","{:08x}","{nonce:08x}"]}}"#,
        job.id,
        hex::encode(en2),
        job.ntime
    ))
    .await;
    assert_eq!(c.reply(3).await["result"], true, "the share is accepted even with the node away");
    let block_hash = bitcoin::BlockHash::from_byte_array(hash);
    let store = server.store.clone();
    wait_for("the block to be recorded", Duration::from_secs(10), || {
        store
            .blocks(Some("btc"), 10)
            .unwrap()
            .iter()
            .any(|b| b.hash == block_hash.to_string() && b.status == BlockStatus::Submitting)
    })
    .await;

    node.restart().await.unwrap();
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
