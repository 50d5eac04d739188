//! Pool mode (PPLNS) end to end against a real Bitcoin Core regtest node: three registered
//! users mine on a coin's pool port, the blocks they find are accepted by Core, and each
//! coinbase's outputs equal a split this test computes by itself (plain integer arithmetic
//! from the shares it had accepted, not the server's engine); the carry of one block reaches
//! the next; payout rows follow the blocks to "confirmed"; the window survives a restart.
//! Every pool-port block (also the first, found while the window was empty and paying its
//! finder alone) records the pool configuration version of its job; a solo-port block none.
//! Logins naming no payable user are refused at authorize with the reason.

mod common;

use bitcoin::hashes::Hash;
use common::{regtest_addresses, Raw};
use minebox_stratum::pplns::desk::PoolModeConfig;
use minebox_stratum::service::{self, Running, ServiceConfig};
use serde_json::Value;
use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Every share on the pool port counts this much: min = max difficulty, so none varies.
const SHARE_DIFFICULTY: f64 = 1e-10;
const MAX_OUTPUTS: u32 = 2;
const CONFIG_VERSION: u64 = 7;
const MAINNET_ADDRESS: &str = "bc1qw508d6qejxtdg4y5r3zarvary0c5xw7kv8f3t4";

/// (payee id, user, address) of the registered users who mine.
fn users() -> Vec<(u32, &'static str, String)> {
    let a = regtest_addresses();
    // P2WPKH, P2TR and P2PKH: three kinds of output in one coinbase.
    vec![(1, "alice", a[2].0.clone()), (2, "bob", a[4].0.clone()), (3, "carol", a[0].0.clone())]
}

fn script_of(address: &str) -> String {
    regtest_addresses().into_iter().find(|(a, _)| a == address).unwrap().1.to_hex_string()
}

fn write_payees(dir: &Path) -> std::path::PathBuf {
    let mut text = String::new();
    for (id, user, address) in users() {
        text += &format!("[[coins.btc]]\nid = {id}\nuser = \"{user}\"\naddress = \"{address}\"\n");
    }
    // dave registered a mainnet address on a regtest box; frank only has a bch address.
    text += &format!("[[coins.btc]]\nid = 4\nuser = \"dave\"\naddress = \"{MAINNET_ADDRESS}\"\n");
    text +=
        "[[coins.bch]]\nid = 5\nuser = \"frank\"\naddress = \"bchreg:qzdc6x4pxnm5qq4m3ygqeh3mxqkd3zxn2gma0zuy7g\"\n";
    let path = dir.join(minebox_settings::payees::FILE_NAME);
    std::fs::write(&path, text).unwrap();
    path
}

async fn start(node: &minebox_regtest::Core, dir: &Path) -> Running {
    let registry = minebox_coin::Registry::embedded();
    let settings = minebox_settings::Settings::from_user_text(
        &format!("[coins.btc]\nenabled = true\nnetwork = \"regtest\"\npayout_address = \"{}\"\n", users()[0].2),
        &registry,
    )
    .unwrap();
    let pool = PoolModeConfig {
        coin: "btc".into(),
        network: "regtest".into(),
        listen: "127.0.0.1:0".parse().unwrap(),
        settings: minebox_settings::PoolSettings {
            port: 0,
            fee: None,
            // Regtest's difficulty is 4.7e-10: a window of ~460 shares, all of this test's.
            window_factor: 100.0,
            max_outputs: MAX_OUTPUTS,
            start_difficulty: SHARE_DIFFICULTY,
            min_difficulty: SHARE_DIFFICULTY,
            max_difficulty: SHARE_DIFFICULTY,
            config_version: CONFIG_VERSION,
        },
        payees_file: dir.join(minebox_settings::payees::FILE_NAME),
        box_settings: Arc::new(settings),
        save_every: service::PPLNS_SNAPSHOT_EVERY,
    };
    service::start_with_pools(
        ServiceConfig {
            coins: vec![common::coin_config(node)],
            database: dir.join("state.db"),
            api_listen: "127.0.0.1:0".parse().unwrap(),
            stats_flush: Duration::from_secs(60),
            limits: Default::default(),
            supervisor_events: None,
        },
        vec![pool],
    )
    .await
    .expect("server starts")
}

async fn authorize(addr: std::net::SocketAddr, login: &str) -> (Raw, Value) {
    let mut c = Raw::connect(addr).await;
    c.send(r#"{"id":1,"method":"mining.subscribe","params":["test/1.0"]}"#).await;
    let sub = c.reply(1).await;
    c.send(&format!(r#"{{"id":2,"method":"mining.authorize","params":["{login}","x"]}}"#)).await;
    let auth = c.reply(2).await;
    (c, serde_json::json!({"sub": sub, "auth": auth}))
}

/// One miner on the pool port: its connection, extranonce1 and current job.
struct Miner {
    login: String,
    c: Raw,
    en1: Vec<u8>,
    job: minebox_simminer::work::Job,
    next_id: u64,
    next_en2: u64,
}

impl Miner {
    async fn connect(addr: std::net::SocketAddr, login: &str) -> Miner {
        let (mut c, said) = authorize(addr, login).await;
        assert_eq!(said["auth"]["result"], true, "{said}");
        let en1 = hex::decode(said["sub"]["result"][1].as_str().unwrap()).unwrap();
        let job = minebox_simminer::work::Job::from_notify(&c.notify().await["params"]).unwrap();
        Miner { login: login.into(), c, en1, job, next_id: 10, next_en2: 0 }
    }

    /// Waits for a job building on `tip`.
    async fn job_on(&mut self, tip: bitcoin::BlockHash) {
        while self.job.prev_hash != tip.to_byte_array() {
            self.job = minebox_simminer::work::Job::from_notify(&self.c.notify().await["params"]).unwrap();
        }
    }

    /// Submits a share that is (`block`) or is not a block; returns the block hash if it is.
    async fn share(&mut self, block: bool) -> bitcoin::BlockHash {
        use minebox_simminer::work::{hash_header, meets};
        self.next_en2 += 1;
        let en2 = self.next_en2.to_be_bytes();
        let root = self.job.merkle_root(&self.en1, &en2);
        let target = bitcoin::Target::from_compact(bitcoin::CompactTarget::from_consensus(self.job.bits)).to_le_bytes();
        let (nonce, hash) = (0u32..)
            .map(|n| (n, hash_header(&self.job.header(&root, self.job.version, self.job.ntime, n))))
            .find(|(_, h)| meets(h, &target) == block)
            .unwrap();
        let id = self.next_id;
        self.next_id += 1;
        self.c
            .send(&format!(
                r#"{{"id":{id},"method":"mining.submit","params":["{}","{}","{}","{:08x}","{nonce:08x}"]}}"#,
                self.login,
                self.job.id,
                hex::encode(en2),
                self.job.ntime
            ))
            .await;
        let reply = self.c.reply(id).await;
        assert_eq!(reply["result"], true, "share refused: {reply}");
        bitcoin::BlockHash::from_byte_array(hash)
    }
}

/// The split, computed here from the definition (docs/stratum.md "Pool mode"): each user's
/// part of the reward in proportion to their shares (rounded down, the remainder to the
/// most shares), plus what they were owed; the `MAX_OUTPUTS` largest paid, the whole reward
/// divided among them in proportion to what they were entitled to (rounded down, the
/// remainder to the largest); what each is owed after is entitled minus paid.
fn expected_split(
    reward: u64,
    shares: &BTreeMap<u32, u64>,
    owed: &BTreeMap<u32, i64>,
) -> (Vec<(u32, u64)>, BTreeMap<u32, i64>) {
    fn proportional(total: u64, weights: &[(u32, u128)]) -> Vec<u64> {
        let sum: u128 = weights.iter().map(|w| w.1).sum();
        let mut parts: Vec<u64> = weights.iter().map(|w| (total as u128 * w.1 / sum) as u64).collect();
        let largest = (0..weights.len()).fold(0, |best, i| if weights[i].1 > weights[best].1 { i } else { best });
        parts[largest] += total - parts.iter().sum::<u64>();
        parts
    }
    let by_user: Vec<(u32, u128)> = shares.iter().map(|(u, n)| (*u, *n as u128)).collect();
    let parts = proportional(reward, &by_user);
    let entitled: Vec<(u32, i64)> =
        by_user.iter().zip(&parts).map(|((u, _), p)| (*u, *p as i64 + owed.get(u).copied().unwrap_or(0))).collect();
    let mut order = entitled.clone();
    order.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(&b.0)));
    order.truncate(MAX_OUTPUTS as usize);
    let basis: Vec<(u32, u128)> = order.iter().map(|(u, e)| (*u, *e as u128)).collect();
    let paid: Vec<(u32, u64)> = order.iter().map(|(u, _)| *u).zip(proportional(reward, &basis)).collect();
    let mut after = BTreeMap::new();
    for (u, e) in entitled {
        let p = paid.iter().find(|(pu, _)| *pu == u).map_or(0, |(_, a)| *a as i64);
        if e - p != 0 {
            after.insert(u, e - p);
        }
    }
    (paid, after)
}

/// The coinbase's value outputs, as (script hex, sats), largest first as the split orders them.
async fn coinbase_outputs(node: &minebox_regtest::Core, hash: &bitcoin::BlockHash) -> Vec<(String, u64)> {
    let block = node.client().get_block_verbose(hash, 2).await.unwrap();
    block["tx"][0]["vout"]
        .as_array()
        .unwrap()
        .iter()
        .map(|o| {
            let sats = (o["value"].as_f64().unwrap() * 1e8).round() as u64;
            (o["scriptPubKey"]["hex"].as_str().unwrap().to_string(), sats)
        })
        .filter(|(_, sats)| *sats > 0)
        .collect()
}

async fn until<F: std::future::Future<Output = bool>>(what: &str, mut f: impl FnMut() -> F) {
    let started = Instant::now();
    while !f().await {
        assert!(started.elapsed() < Duration::from_secs(60), "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

async fn api<T: serde::de::DeserializeOwned>(server: &Running, path: &str) -> T {
    reqwest::get(format!("http://{}{path}", server.api)).await.unwrap().json().await.unwrap()
}

async fn payouts(server: &Running, query: &str) -> Vec<minebox_api::stratum::PoolPayout> {
    api(server, &format!("{}?{query}", minebox_api::stratum::POOL_PAYOUTS)).await
}

#[tokio::test]
async fn pool_port_refuses_logins_that_pay_no_registered_user() {
    let node = common::core().await;
    let dir = tempfile::tempdir().unwrap();
    write_payees(dir.path());
    let server = start(&node, dir.path()).await;
    let pool = server.pool_addr("btc").unwrap();
    for (login, reason) in [
        ("nobody.rig", "names no user of this box with a btc payout address"),
        // frank registered a bch address only.
        ("frank.rig", "names no user of this box with a btc payout address"),
        ("dave.rig", "dave's btc payout address cannot be paid"),
        // An address is not a user: the pool port never pays an address a miner names.
        (&format!("{}.rig", users()[0].2), "names no user of this box"),
    ] {
        let (_, said) = authorize(pool, login).await;
        assert_eq!(said["auth"]["result"], false, "{login}: {said}");
        let message = said["auth"]["error"][1].as_str().unwrap();
        assert!(message.contains(reason), "{login}: {message}");
    }
    // dave's reason names the network mismatch.
    let (_, said) = authorize(pool, "dave.rig").await;
    assert!(said["auth"]["error"][1].as_str().unwrap().contains("regtest"), "{said}");
    // nobody registers an address on the page: their next login mines, without a restart.
    let path = dir.path().join(minebox_settings::payees::FILE_NAME);
    let mut text = std::fs::read_to_string(&path).unwrap();
    text += &format!("[[coins.btc]]\nid = 6\nuser = \"nobody\"\naddress = \"{}\"\n", users()[0].2);
    std::fs::write(&path, text).unwrap();
    let (_, said) = authorize(pool, "nobody.rig").await;
    assert_eq!(said["auth"]["result"], true, "{said}");
    // A damaged file: the last good list stays in force.
    std::fs::write(&path, "[[coins.btc]]\nid = \"not a number\"\n").unwrap();
    let (_, said) = authorize(pool, "nobody.rig").await;
    assert_eq!(said["auth"]["result"], true, "{said}");
    server.stop().await;
}

#[tokio::test]
async fn pool_blocks_pay_the_split_of_the_recorded_shares_and_their_payouts_confirm() {
    let node = common::core().await;
    let dir = tempfile::tempdir().unwrap();
    write_payees(dir.path());
    let server = start(&node, dir.path()).await;
    let pool = server.pool_addr("btc").unwrap();
    let who = users();
    let mut miners = Vec::new();
    for (_, user, _) in &who {
        miners.push(Miner::connect(pool, &format!("{user}.rig")).await);
    }
    // Shares the server accepted, per payee id: the test's own record.
    let mut shares: BTreeMap<u32, u64> = BTreeMap::new();
    // The window is empty: alice's job pays her alone, and her block is still a pool block.
    let bootstrap = miners[0].share(true).await;
    let client = node.client();
    until("Core to take the bootstrap block", || {
        let client = client.clone();
        async move { client.get_best_block_hash().await.ok() == Some(bootstrap) }
    })
    .await;
    let outputs = coinbase_outputs(&node, &bootstrap).await;
    assert_eq!(outputs.iter().map(|o| o.0.as_str()).collect::<Vec<_>>(), vec![script_of(&who[0].2)], "{outputs:?}");
    *shares.entry(who[0].0).or_insert(0) += 1;
    for m in &mut miners {
        m.job_on(bootstrap).await;
    }
    for (i, n) in [(0usize, 3u64), (1, 2), (2, 1)] {
        for _ in 0..n {
            miners[i].share(false).await;
        }
        *shares.entry(who[i].0).or_insert(0) += n;
    }
    // A new block on the node: a new template, and with it the first pool job.
    let tip = node.generate_to_address(1, &regtest_addresses()[1].0).await.unwrap()[0];
    for m in &mut miners {
        m.job_on(tip).await;
    }
    let bob_script = hex::decode(script_of(&who[1].2)).unwrap();
    assert!(
        miners[0].job.coinb2.windows(bob_script.len()).any(|w| w == bob_script),
        "alice's job pays bob too: it is the pool's job"
    );

    let mut owed = BTreeMap::new();
    let mut found = Vec::new();
    for finder in [0usize, 1] {
        let hash = miners[finder].share(true).await;
        let client = node.client();
        until("Core to take the pool block", || {
            let client = client.clone();
            async move { client.get_best_block_hash().await.ok() == Some(hash) }
        })
        .await;
        let outputs = coinbase_outputs(&node, &hash).await;
        let reward: u64 = outputs.iter().map(|o| o.1).sum();
        let (paid, after) = expected_split(reward, &shares, &owed);
        let expected: Vec<(String, u64)> =
            paid.iter().map(|(u, sats)| (script_of(&who.iter().find(|w| w.0 == *u).unwrap().2), *sats)).collect();
        assert_eq!(outputs, expected, "block {} pays the split of the shares {shares:?} (owed before: {owed:?})", hash);
        found.push((hash, paid, after.clone()));
        owed = after;
        // The block-finding share counts for the next block.
        *shares.entry(who[finder].0).or_insert(0) += 1;
        for m in &mut miners {
            m.job_on(hash).await;
        }
    }
    // The first block left carol (fewest shares, beyond MAX_OUTPUTS) owed; the second pays her.
    assert!(found[0].1.iter().all(|(u, _)| *u != 3) && found[0].2[&3] > 0, "{:?}", found[0]);
    assert!(found[1].1.iter().any(|(u, _)| *u == 3), "carol's carry paid in the next block: {:?}", found[1]);

    // The payout record: one row per block and user, as the coinbase paid.
    let rows = payouts(&server, "coin=btc").await;
    assert_eq!(rows.len(), 6, "{rows:?}");
    for (hash, paid, after) in &found {
        for (id, user, address) in &who {
            let row = rows.iter().find(|r| r.block_hash == hash.to_string() && r.user == *user).unwrap();
            let amount = paid.iter().find(|(u, _)| u == id).map_or(0, |p| p.1);
            assert_eq!((row.amount_sats, row.carry_sats), (amount, after.get(id).copied().unwrap_or(0)), "{row:?}");
            assert_eq!(
                (row.address.as_str(), row.config_version, row.state.as_str()),
                (address.as_str(), 7, "pending")
            );
        }
    }
    let carol = payouts(&server, "coin=btc&user=carol").await;
    assert_eq!(carol.iter().map(|r| r.shares).collect::<Vec<_>>(), vec![1, 1], "carol's shares counted, newest first");
    assert_eq!(carol[0].window_shares, 8, "the second block's window: 6 shares and the two blocks' before");

    // A solo-port block beside them: no pool configuration version.
    let mut solo =
        Miner::connect(server.stratum_addr("btc").unwrap(), &format!("{}.solo", regtest_addresses()[3].0)).await;
    solo.job_on(found[1].0).await;
    let solo_hash = solo.share(true).await;
    let blocks: Vec<minebox_api::stratum::Block> = api(&server, minebox_api::stratum::BLOCKS).await;
    let version_of = |hash: &bitcoin::BlockHash| {
        let b = blocks.iter().find(|b| b.hash == hash.to_string()).unwrap_or_else(|| panic!("{hash}: {blocks:?}"));
        b.pool_config_version
    };
    assert_eq!(version_of(&solo_hash), None);
    assert_eq!(version_of(&bootstrap), Some(CONFIG_VERSION), "the bootstrap block has no payout rows but a version");
    assert!(rows.iter().all(|r| r.block_hash != bootstrap.to_string()), "{rows:?}");
    for (hash, _, _) in &found {
        assert_eq!(version_of(hash), Some(CONFIG_VERSION));
        assert!(rows
            .iter()
            .filter(|r| r.block_hash == hash.to_string())
            .all(|r| Some(r.config_version) == version_of(hash)));
    }

    // A hundred blocks later the payouts are confirmed (the confirmation follower as it runs).
    node.generate_to_address(100, &regtest_addresses()[1].0).await.unwrap();
    let desk = minebox_stratum::block::BlockDesk {
        coin: "btc".into(),
        network: "regtest".into(),
        node: node.client(),
        store: server.store.clone(),
        events: server.events.clone(),
        pplns: None,
    };
    desk.confirm().await;
    let rows = payouts(&server, "coin=btc").await;
    assert!(rows.iter().all(|r| r.state == "confirmed"), "{rows:?}");

    // The window survives a restart: the same payees' work before and after.
    let before: Vec<minebox_api::stratum::PoolStatus> = api(&server, minebox_api::stratum::POOL).await;
    assert_eq!(before[0].payees.iter().filter(|p| p.work > 0.0).count(), 3, "{before:?}");
    drop(miners);
    server.stop().await;
    let server = start(&node, dir.path()).await;
    let after: Vec<minebox_api::stratum::PoolStatus> = api(&server, minebox_api::stratum::POOL).await;
    let works = |s: &[minebox_api::stratum::PoolStatus]| -> Vec<(String, f64, i64)> {
        s[0].payees.iter().map(|p| (p.user.clone(), p.work, p.carry_sats)).collect()
    };
    assert_eq!(works(&after), works(&before));
    assert_eq!(after[0].config_version, CONFIG_VERSION);
    server.stop().await;
}
