//! What real miners' firmware depends on, each tested the way the firmware behaves, against
//! the server on a real Bitcoin Core regtest node.
//!
//! ESP-Miner (Bitaxe, bitaxeorg/ESP-Miner `components/stratum/stratum_api.c`,
//! `main/tasks/stratum_v1_task.c`) opens with `mining.configure`, `mining.subscribe` and
//! `mining.authorize` written at once; answers `mining.ping` with a `pong` request; closes and
//! connects again on `client.reconnect`; gives a pool up after 180 s without a line (its
//! socket receive timeout); rolls versions by OR-ing bits into the job's version and submits
//! `rolled ^ job_version`. cgminer-based firmware (Antminer bmminer, WhatsMiner) answers
//! `mining.ping` with `{"result":"pong"}` and fails above 8 bytes of extranonce2.

mod common;

use common::process::ServerProcess;
use common::{regtest_addresses, Raw};
use minebox_stratum::connection::Limits;
use minebox_stratum::service::{self, Running, ServiceConfig};
use serde_json::Value;
use std::time::Duration;

/// The three requests ESP-Miner writes as soon as it is connected, before any answer.
const ESP_MINER_OPENING: &str = concat!(
    r#"{"id":1,"method":"mining.configure","params":[["version-rolling"],{"version-rolling.mask":"ffffffff"}]}"#,
    "\n",
    r#"{"id":2,"method":"mining.subscribe","params":["bitaxe/BM1370"]}"#,
    "\n",
);

fn user() -> String {
    format!("{}.bitaxe", regtest_addresses()[2].0)
}

/// Connects the way ESP-Miner does; returns everything the server said up to and including
/// the first job.
async fn esp_miner(addr: std::net::SocketAddr) -> (Raw, Vec<Value>) {
    let mut c = Raw::connect(addr).await;
    let opening = format!(r#"{ESP_MINER_OPENING}{{"id":3,"method":"mining.authorize","params":["{}","x"]}}"#, user());
    c.send(&opening).await;
    let mut said = Vec::new();
    loop {
        let v = c.recv().await.expect("the server closed during the handshake");
        let job = v["method"] == "mining.notify";
        said.push(v);
        if job {
            return (c, said);
        }
    }
}

/// The server with its own limits, and a fee refresh so long that no work comes unless a
/// block does: the silence a node that is down leaves.
async fn quiet_server(node: &minebox_regtest::Core, dir: &std::path::Path, limits: Limits) -> Running {
    let mut coin = common::coin_config(node);
    coin.template_refresh = Duration::from_secs(3600);
    service::start(ServiceConfig {
        coins: vec![coin],
        database: dir.join("state.db"),
        api_listen: "127.0.0.1:0".parse().unwrap(),
        stats_flush: Duration::from_secs(1),
        limits,
        supervisor_events: None,
    })
    .await
    .expect("server starts")
}

/// No block, no fee refresh: the miner still hears `mining.ping` every keepalive interval
/// (60 s by default, under ESP-Miner's 180 s), and neither ESP-Miner's `pong` request nor
/// cgminer's `"result":"pong"` answer is treated as an error.
#[tokio::test]
async fn a_miner_left_without_work_hears_a_ping_and_its_pong_is_no_error() {
    let node = common::core().await;
    let dir = tempfile::tempdir().unwrap();
    let limits = Limits { keepalive: Duration::from_millis(300), ..Limits::default() };
    let server = quiet_server(&node, dir.path(), limits).await;
    let (mut c, _) = esp_miner(server.stratum_addr("btc").unwrap()).await;

    let ping = c.recv().await.expect("connection open");
    assert_eq!(ping["method"], "mining.ping", "a silent server must ping: {ping}");
    assert!(ping["id"].is_u64(), "bmminer echoes the id with %d: {ping}");
    // ESP-Miner's answer, then cgminer's.
    c.send(&format!(r#"{{"id":{},"method":"pong","params":[]}}"#, ping["id"])).await;
    c.send(&format!(r#"{{"id":{},"result":"pong","error":null}}"#, ping["id"])).await;
    // The next thing the server says is the next ping: no error answer to either pong.
    for _ in 0..2 {
        let next = c.recv().await.expect("the pongs must not close the connection");
        assert_eq!(next["method"], "mining.ping", "a pong was answered: {next}");
        c.send(&format!(r#"{{"id":{},"method":"pong","params":[]}}"#, next["id"])).await;
    }
    server.stop().await;
}

/// A miner that pings the pool itself gets `"pong"`, the answer cgminer gives.
#[tokio::test]
async fn a_miners_mining_ping_is_answered_with_pong() {
    let stack = common::stack(Limits::default()).await;
    let (mut c, _) = esp_miner(stack.server.stratum_addr("btc").unwrap()).await;
    c.send(r#"{"id":50,"method":"mining.ping","params":[]}"#).await;
    let answer = c.reply(50).await;
    assert_eq!(answer["result"], "pong", "{answer}");
    assert!(answer["error"].is_null(), "{answer}");
    stack.server.stop().await;
}

/// A planned stop (SIGTERM from systemd: an update, a settings change) sends every miner
/// `client.reconnect` before the connection closes, so each comes back at once. The
/// binary's default extranonce2 size is one every firmware accepts (8 bytes at most).
#[tokio::test]
async fn sigterm_tells_every_miner_to_reconnect_before_closing() {
    let node = common::core().await;
    let dir = tempfile::tempdir().unwrap();
    let mut server = ServerProcess::start(&node, &dir.path().join("state.db"), &dir.path().join("log"), &[]).await;

    let mut miners = Vec::new();
    for _ in 0..3 {
        let (c, said) = esp_miner(server.stratum).await;
        let subscribed = said.iter().find(|v| v["id"] == 2).expect("subscribe answered");
        let en2_size = subscribed["result"][2].as_u64().unwrap();
        assert!((4..=8).contains(&en2_size), "extranonce2 size {en2_size}: WhatsMiner fails above 8");
        miners.push(c);
    }
    // A simulated Bitaxe hashing away, as a real one would be.
    let report = std::sync::Arc::new(std::sync::Mutex::new(minebox_simminer::Report::default()));
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let mut config = minebox_simminer::MinerConfig::bitaxe(&server.stratum.to_string(), &user());
    config.hashrate = Some(50_000.0);
    let bitaxe = tokio::spawn(minebox_simminer::run(config, report.clone(), stop.clone()));
    while report.lock().unwrap().jobs == 0 {
        assert!(!bitaxe.is_finished(), "the simulated Bitaxe ended: {:?}", report.lock().unwrap());
        tokio::time::sleep(Duration::from_millis(20)).await;
    }

    let pid = server.child.id().unwrap().to_string();
    let _ = tokio::process::Command::new("kill").arg("-TERM").arg(&pid).status().await;
    for mut c in miners {
        let said = c.until_closed().await;
        let last = said.last().expect("the server said something before closing");
        assert_eq!(last["method"], "client.reconnect", "the last line before EOF: {said:?}");
        assert_eq!(last["params"], serde_json::json!([]), "no host or port: the same pool");
    }
    let ended = tokio::time::timeout(Duration::from_secs(20), bitaxe).await.expect("the Bitaxe stops").unwrap();
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    assert!(ended.is_ok(), "{ended:?}");
    assert!(report.lock().unwrap().reconnect_requested, "the Bitaxe was told to reconnect: {:?}", report.lock());
    let status = tokio::time::timeout(Duration::from_secs(20), server.child.wait()).await.expect("exits").unwrap();
    assert!(status.success(), "clean exit on SIGTERM: {status:?}");
}

/// BIP310: `mining.set_version_mask` is only for a miner that negotiated version rolling,
/// and never before the `mining.configure` answer (ESP-Miner would take the mask and then
/// overwrite it with the answer's). A miner that never configures never gets one.
#[tokio::test]
async fn no_version_mask_before_the_configure_answer_nor_without_configure() {
    let node = common::core().await;
    let dir = tempfile::tempdir().unwrap();
    let limits = Limits { keepalive: Duration::from_millis(200), ..Limits::default() };
    let server = quiet_server(&node, dir.path(), limits).await;
    let addr = server.stratum_addr("btc").unwrap();

    let (mut c, said) = esp_miner(addr).await;
    let answered = said.iter().position(|v| v["id"] == 1).expect("configure answered");
    assert_eq!(said[answered]["result"]["version-rolling.mask"], "1fffe000", "{:?}", said[answered]);
    let first_mask = said.iter().position(|v| v["method"] == "mining.set_version_mask");
    assert!(first_mask.is_none_or(|i| i > answered), "set_version_mask before the configure answer: {said:?}");
    // And after the job, up to the first keepalive.
    loop {
        let v = c.recv().await.unwrap();
        if v["method"] == "mining.ping" {
            break;
        }
    }

    let mut plain = Raw::connect(addr).await;
    plain.handshake(&user()).await;
    let mut after = Vec::new();
    loop {
        let v = plain.recv().await.unwrap();
        if v["method"] == "mining.ping" {
            break;
        }
        after.push(v);
    }
    assert!(after.iter().all(|v| v["method"] != "mining.set_version_mask"), "{after:?}");
    server.stop().await;
}

/// Bitcoin Core's regtest templates say `0x30000000` from block 144 on (bit 28: the
/// `testdummy` deployment, inside BIP320's rolling mask). The job must go out without bits
/// inside the mask, so that a Bitaxe's `rolled ^ job_version` and BIP310's
/// `(job & !mask) | bits` name the same header: its rolled block is accepted by the node.
/// Bits outside the mask are refused with the reason.
#[tokio::test]
async fn esp_miner_version_rolling_on_a_template_with_bit_28_finds_a_block_core_accepts() {
    let node = common::core().await;
    let (address, _) = &regtest_addresses()[2];
    node.generate_to_address(150, address).await.unwrap();
    let template = node.client().get_block_template(&["segwit"]).await.unwrap();
    assert_eq!(template.version as u32 & 0x1fff_e000, 0x1000_0000, "Core signals testdummy on bit 28");

    let dir = tempfile::tempdir().unwrap();
    let server = common::start_server(&node, dir.path(), Limits::default()).await;
    let (mut c, said) = esp_miner(server.stratum_addr("btc").unwrap()).await;
    let subscribed = said.iter().find(|v| v["id"] == 2).unwrap();
    let en1 = hex::decode(subscribed["result"][1].as_str().unwrap()).unwrap();
    let notify = said.last().unwrap();
    let job = minebox_simminer::work::Job::from_notify(&notify["params"]).unwrap();
    assert_eq!(job.version & 0x1fff_e000, 0, "job version {:08x} has bits inside the rolling mask", job.version);
    assert_eq!(job.version, 0x2000_0000);

    let en2 = [0u8; 8];
    let submit = |id: u64, nonce: u32, version_bits: u32| {
        format!(
            r#"{{"id":{id},"method":"mining.submit","params":["{}","{}","{}","{:08x}","{nonce:08x}","{version_bits:08x}"]}}"#,
            user(),
            job.id,
            hex::encode(en2),
            job.ntime
        )
    };
    // Outside the negotiated mask: refused, saying so.
    c.send(&submit(10, 0, 0x0000_0002)).await;
    let refused = c.reply(10).await;
    assert_eq!(refused["error"][0], 20, "{refused}");
    assert!(refused["error"][1].as_str().unwrap().contains("outside the negotiated mask 1fffe000"), "{refused}");

    // As ESP-Miner rolls: OR the ASIC's bits into the job's version, hash, report the XOR.
    let rolled = job.version | 0x1000_6000;
    let root = job.merkle_root(&en1, &en2);
    let target = bitcoin::Target::from_compact(bitcoin::CompactTarget::from_consensus(job.bits)).to_le_bytes();
    let (nonce, hash) = (0u32..)
        .map(|n| (n, minebox_simminer::work::hash_header(&job.header(&root, rolled, job.ntime, n))))
        .find(|(_, h)| minebox_simminer::work::meets(h, &target))
        .expect("regtest blocks are easy");
    c.send(&submit(11, nonce, rolled ^ job.version)).await;
    let accepted = c.reply(11).await;
    assert_eq!(accepted["result"], true, "{accepted}");

    use bitcoin::hashes::Hash;
    let hash = bitcoin::BlockHash::from_byte_array(hash);
    let client = node.client();
    let started = std::time::Instant::now();
    while client.get_best_block_hash().await.unwrap() != hash {
        assert!(started.elapsed() < Duration::from_secs(30), "the node never took the block the Bitaxe hashed");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let header = client.get_block_verbose(&hash, 1).await.unwrap();
    assert_eq!(header["version"].as_u64().unwrap() as u32, rolled, "{header}");
    server.stop().await;
}

/// WhatsMiner and cgminer-based firmware fail above 8 bytes of extranonce2: a server set
/// to more refuses to start, saying why, instead of starting and never giving out a job.
#[tokio::test]
async fn more_than_8_bytes_of_extranonce2_is_refused_at_start() {
    let node = common::core().await;
    let dir = tempfile::tempdir().unwrap();
    let mut coin = common::coin_config(&node);
    coin.extranonce2_len = 9;
    let started = service::start(ServiceConfig {
        coins: vec![coin],
        database: dir.path().join("state.db"),
        api_listen: "127.0.0.1:0".parse().unwrap(),
        stats_flush: Duration::from_secs(1),
        limits: Limits::default(),
        supervisor_events: None,
    })
    .await;
    let Err(e) = started else { panic!("a server with 9 bytes of extranonce2 started") };
    let message = format!("{e:#}");
    assert!(message.contains("extranonce2 size 9") && message.contains("at most 8"), "{message}");
}
