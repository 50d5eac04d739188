//! The share history against a real Bitcoin Core regtest node: every share the server
//! judges reaches the database with its outcome (the reason, when refused) by the flush at
//! shutdown; and a SIGKILL loses only what was not flushed yet, never the database.

mod common;

use common::process::{grind_block, ServerProcess};
use common::Raw;
use minebox_api::stratum::ShareBucket;
use minebox_regtest::core_p2wpkh_address;
use minebox_simminer::work::{hash_header, meets, Job};
use minebox_stratum::connection::Limits;
use minebox_stratum::protocol::ErrorCode;
use minebox_stratum::share_log::{Outcome, Port};
use minebox_stratum::store::Store;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

/// A subscribed and authorized miner with its first job.
async fn miner(addr: SocketAddr, user: &str) -> (Raw, Vec<u8>, Job) {
    let mut c = Raw::connect(addr).await;
    c.send(r#"{"id":1,"method":"mining.subscribe","params":["history-test"]}"#).await;
    let en1 = hex::decode(c.reply(1).await["result"][1].as_str().unwrap()).unwrap();
    c.send(&format!(r#"{{"id":2,"method":"mining.authorize","params":["{user}","x"]}}"#)).await;
    assert_eq!(c.reply(2).await["result"], true);
    let job = Job::from_notify(&c.notify().await["params"]).unwrap();
    (c, en1, job)
}

/// A nonce whose hash misses the network target: on regtest that is also below any share
/// difficulty the server gives, so the share is refused as low difficulty.
fn weak_nonce(job: &Job, en1: &[u8], en2: &[u8]) -> u32 {
    let root = job.merkle_root(en1, en2);
    let target = bitcoin::Target::from_compact(bitcoin::CompactTarget::from_consensus(job.bits)).to_le_bytes();
    (0u32..).find(|n| !meets(&hash_header(&job.header(&root, job.version, job.ntime, *n)), &target)).unwrap()
}

async fn submit(
    c: &mut Raw,
    id: u64,
    user: &str,
    job_id: &str,
    en2: &[u8],
    ntime: u32,
    nonce: u32,
) -> serde_json::Value {
    c.send(&format!(
        r#"{{"id":{id},"method":"mining.submit","params":["{user}","{job_id}","{}","{ntime:08x}","{nonce:08x}"]}}"#,
        hex::encode(en2)
    ))
    .await;
    c.reply(id).await
}

#[tokio::test]
async fn judged_shares_are_recorded_with_their_reason_and_a_sigkill_loses_only_the_unflushed() {
    let stack = common::stack(Limits::default()).await;
    let user = format!("{}.history", core_p2wpkh_address([0x21; 20]));
    let (mut c, en1, job) = miner(stack.server.stratum_addr("btc").unwrap(), &user).await;

    let en2 = [1u8; 8];
    let weak = weak_nonce(&job, &en1, &en2);
    let low = submit(&mut c, 3, &user, &job.id, &en2, job.ntime, weak).await;
    assert_eq!(low["error"][0], ErrorCode::LowDifficulty as u8, "{low}");
    let stale = submit(&mut c, 4, &user, "ffffff", &en2, job.ntime, weak).await;
    assert_eq!(stale["error"][0], ErrorCode::Stale as u8, "{stale}");
    let (nonce, _) = grind_block(&job, &en1, &en2);
    let good = submit(&mut c, 5, &user, &job.id, &en2, job.ntime, nonce).await;
    assert_eq!(good["result"], true, "{good}");

    // The API shows them by the hour: one accepted, two refused with their reasons (once
    // flushed: every second in these tests).
    let url = format!("http://{}/api/v1/stratum/shares?coin=btc&worker={user}", stack.server.api);
    let started = Instant::now();
    let buckets: Vec<ShareBucket> = loop {
        let buckets: Vec<ShareBucket> = reqwest::get(&url).await.unwrap().json().await.unwrap();
        if buckets.iter().map(|b| b.accepted + b.rejected.values().sum::<u64>()).sum::<u64>() == 3 {
            break buckets;
        }
        assert!(started.elapsed() < Duration::from_secs(30), "never flushed: {buckets:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert!(buckets.iter().all(|b| b.span_secs == 3600 && b.port == "solo" && b.worker == user), "{buckets:?}");
    assert_eq!(buckets.iter().map(|b| b.accepted).sum::<u64>(), 1);
    let mut reasons = std::collections::BTreeMap::new();
    for (reason, n) in buckets.iter().flat_map(|b| &b.rejected) {
        *reasons.entry(reason.as_str()).or_insert(0) += n;
    }
    assert_eq!(reasons.into_iter().collect::<Vec<_>>(), [("low_difficulty", 1), ("stale", 1)]);

    // The flush at shutdown (SIGTERM) writes what the buffer holds.
    let db = stack.dir.path().join("state.db");
    stack.server.stop().await;
    let shares = Store::open(&db).unwrap().shares("btc", Some(&user), 0, 100).unwrap();
    let outcomes: Vec<Outcome> = shares.iter().map(|s| s.outcome).collect();
    assert_eq!(
        outcomes,
        [Outcome::Rejected(ErrorCode::LowDifficulty), Outcome::Rejected(ErrorCode::Stale), Outcome::Accepted]
    );
    let accepted = &shares[2];
    assert_eq!((accepted.port, accepted.difficulty), (Port::Solo, 0.0001), "judged by the test's start difficulty");
    assert!(accepted.share_difficulty > 0.0, "what the accepted share's hash reached is kept");
    assert_eq!(shares[0].share_difficulty, 0.0, "a refused share's is not");

    // The binary, flushing every second, killed with SIGKILL right after more shares: what
    // was flushed is there, the rest is lost, and the database is sound.
    let log = stack.dir.path().join("stratum.log");
    let mut server = ServerProcess::start(&stack.node, &db, &log, &["--stats-flush-secs=1"]).await;
    let (mut c, en1, job) = miner(server.stratum, &user).await;
    let weak = weak_nonce(&job, &en1, &en2);
    assert_eq!(submit(&mut c, 3, &user, &job.id, &en2, job.ntime, weak).await["error"][0], 23);
    let started = Instant::now();
    while Store::open(&db).unwrap().share_count().unwrap() < 4 {
        assert!(started.elapsed() < Duration::from_secs(30), "the share was never flushed");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    for id in 4..54 {
        assert_eq!(submit(&mut c, id, &user, "ffffff", &en2, job.ntime, weak).await["error"][0], 21);
    }
    server.kill9().await;
    let store = Store::open(&db).unwrap();
    let kept = store.share_count().unwrap();
    assert!((4..=54).contains(&kept), "{kept} shares kept of 54 judged");
    let check: String =
        rusqlite::Connection::open(&db).unwrap().query_row("PRAGMA integrity_check", [], |r| r.get(0)).unwrap();
    assert_eq!(check, "ok");
}
