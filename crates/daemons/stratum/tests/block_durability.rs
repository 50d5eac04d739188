//! A found block is never lost once its miner heard `true` (issue 12, defect 1): against
//! a real Bitcoin Core regtest node, the stratum binary is killed with SIGKILL the moment
//! a block share's `result: true` line arrives, then started again on the same database.
//! Every block must be in the database and, after the restart's resubmission, at the node.

mod common;

use bitcoin::hashes::Hash;
use common::process::{grind_block, ServerProcess};
use common::Raw;
use minebox_regtest::{core_p2wpkh_address, Core};
use minebox_stratum::store::Store;
use std::time::{Duration, Instant};

const ROUNDS: usize = 15;

#[tokio::test]
async fn a_block_acknowledged_to_the_miner_survives_sigkill_at_that_moment() {
    let node = Core::start().await.expect("Bitcoin Core starts (scripts/setup installs libzmq5)");
    let client = node.client();
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("state.db");
    let log = dir.path().join("stratum.log");
    let user = format!("{}.crash", core_p2wpkh_address([0x11; 20]));
    let mut found: Vec<bitcoin::BlockHash> = Vec::new();
    let mut lost = Vec::new();
    let mut server = ServerProcess::start(&node, &db, &log, &[]).await;
    for round in 0..=ROUNDS {
        // The block of the previous round: on disk, and at the node once resubmitted.
        if let Some(hash) = found.last().copied() {
            let recorded = Store::open(&db).unwrap().has_block(&hash.to_string()).unwrap();
            if !recorded {
                lost.push(hash);
            } else {
                let started = Instant::now();
                while client.get_block_confirmations(&hash).await.unwrap_or(-1) < 1 {
                    assert!(
                        started.elapsed() < Duration::from_secs(30),
                        "block {hash} is recorded but the restarted server never got it to the node"
                    );
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            }
        }
        if round == ROUNDS {
            break;
        }
        // Mine on the node's tip (the resubmitted block included).
        let best = client.get_best_block_hash().await.unwrap();
        let mut c = Raw::connect(server.stratum).await;
        c.send(r#"{"id":1,"method":"mining.subscribe","params":["crash-test"]}"#).await;
        let en1 = hex::decode(c.reply(1).await["result"][1].as_str().unwrap()).unwrap();
        c.send(&format!(r#"{{"id":2,"method":"mining.authorize","params":["{user}","x"]}}"#)).await;
        assert_eq!(c.reply(2).await["result"], true);
        let job = loop {
            let job = minebox_simminer::work::Job::from_notify(&c.notify().await["params"]).unwrap();
            if bitcoin::BlockHash::from_byte_array(job.prev_hash) == best {
                break job;
            }
        };
        let en2 = [round as u8; 8];
        let (nonce, hash) = grind_block(&job, &en1, &en2);
        c.send(&format!(
            r#"{{"id":3,"method":"mining.submit","params":["{user}","{}","{}","{:08x}","{nonce:08x}"]}}"#,
            job.id,
            hex::encode(en2),
            job.ntime
        ))
        .await;
        let reply = c.reply(3).await;
        // The moment the miner hears `true`: a crash.
        server.kill9().await;
        assert_eq!(reply["result"], true, "the block share was accepted: {reply}");
        found.push(hash);
        server = ServerProcess::start(&node, &db, &log, &[]).await;
    }
    server.kill9().await;
    assert!(
        lost.is_empty(),
        "{} of {} blocks acknowledged to the miner were lost by a SIGKILL right after `true`: {lost:?}",
        lost.len(),
        found.len()
    );
    let height = client.get_blockchain_info().await.unwrap().blocks;
    assert_eq!(height, ROUNDS as u64, "every found block is in the node's chain");
}
