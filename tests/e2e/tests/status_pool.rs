//! Pool mode's "each user sees theirs on the page" (issue 17 point 4) against the real
//! stratum server: the status service runs on a settings file with `[coins.btc.pool]` on
//! Bitcoin Core regtest; its first user (the admin, alice) makes a second (bob, a viewer);
//! each registers a btc payout address over the page's HTTP API, and the page writes
//! `pool-payees.toml`. The real stratum server (in-process) is started from that settings
//! file and payees file as its main() reads them; `alice.rig1` and `bob.rig1`, raw Stratum V1
//! clients, mine pool blocks on its pool port. Then `GET /api/v1/pool` shows each user their
//! own payout rows, exactly as the stratum server recorded them (amount, block, shares,
//! configuration version) and as Core's chain pays them; bob sees only his, alice all.
//!
//! The settings' lowest share difficulty (1e-9) is above regtest's network difficulty
//! (4.7e-10): every share on the pool port is a block. The clients submit one share at a
//! time and wait for the job on the new tip, so every block builds on the last and its
//! window is known (a CPU miner hashing freely would send hundreds of blocks at one height).

use bitcoin::hashes::Hash;
use minebox_simminer::raw::Raw;
use minebox_simminer::work::{hash_header, meets, Job};
use minebox_test_support::free_port;
use serde_json::{json, Value};
use std::sync::Arc;
use std::time::Duration;

/// The difficulty every pool share is asked for: the settings' lowest (min = max).
const SHARE_DIFFICULTY: f64 = 1e-9;

async fn json_of(r: reqwest::RequestBuilder) -> (u16, Value) {
    let r = r.send().await.unwrap();
    let s = r.status().as_u16();
    (s, r.json().await.unwrap_or(Value::Null))
}

/// A signed-in browser: cookie jar and CSRF token.
struct Browser {
    c: reqwest::Client,
    csrf: String,
    base: String,
}

impl Browser {
    async fn sign_in(base: &str, path: &str, user: &str) -> Browser {
        let c = reqwest::Client::builder().cookie_store(true).no_proxy().build().unwrap();
        let (s, v) = json_of(
            c.post(format!("{base}/api/v1/auth/{path}")).json(&json!({"user": user, "password": "correct horse"})),
        )
        .await;
        assert!((200..300).contains(&s), "{user}: {s} {v}");
        Browser { c, csrf: v["csrf_token"].as_str().unwrap().into(), base: base.into() }
    }

    async fn send(&self, method: reqwest::Method, path: &str, body: Value) -> (u16, Value) {
        json_of(self.c.request(method, format!("{}{path}", self.base)).header("X-CSRF-Token", &self.csrf).json(&body))
            .await
    }

    /// The Pool page's data, as the page fetches it.
    async fn pool(&self) -> Value {
        let (s, v) = json_of(self.c.get(format!("{}/api/v1/pool", self.base))).await;
        assert_eq!(s, 200, "{v}");
        v
    }
}

/// One miner on the pool port: its connection, extranonce1 and current job.
struct Miner {
    login: String,
    c: Raw,
    en1: Vec<u8>,
    job: Job,
    next_id: u64,
    /// The parameters of the last share sent, to send it again.
    last: String,
}

impl Miner {
    async fn connect(addr: std::net::SocketAddr, login: &str) -> Miner {
        let mut c = Raw::connect(addr).await;
        c.send(r#"{"id":1,"method":"mining.subscribe","params":["test/1.0"]}"#).await;
        let sub = c.reply(1).await;
        c.send(&format!(r#"{{"id":2,"method":"mining.authorize","params":["{login}","x"]}}"#)).await;
        let auth = c.reply(2).await;
        assert_eq!(auth["result"], true, "a registered user's login is taken: {auth}");
        let en1 = hex::decode(sub["result"][1].as_str().unwrap()).unwrap();
        let job = Job::from_notify(&c.notify().await["params"]).unwrap();
        Miner { login: login.into(), c, en1, job, next_id: 10, last: String::new() }
    }

    /// The next line; a job replaces the current one (so none is lost while waiting for a reply).
    async fn next(&mut self) -> Value {
        let v = self.c.recv().await.expect("the pool port closed the connection");
        if v["method"] == "mining.notify" {
            self.job = Job::from_notify(&v["params"]).unwrap();
        }
        v
    }

    /// Waits for the job building on `tip` (the server's new template after a block).
    async fn job_on(&mut self, tip: bitcoin::BlockHash) {
        while self.job.prev_hash != tip.to_byte_array() {
            self.next().await;
        }
    }

    /// Submits one share of the current job (a block, see the module's note); returns its hash.
    async fn block(&mut self) -> bitcoin::BlockHash {
        let en2 = self.next_id.to_be_bytes();
        let root = self.job.merkle_root(&self.en1, &en2);
        let target = minebox_simminer::work::difficulty_target(SHARE_DIFFICULTY);
        let (nonce, hash) = (0u32..)
            .map(|n| (n, hash_header(&self.job.header(&root, self.job.version, self.job.ntime, n))))
            .find(|(_, h)| meets(h, &target))
            .unwrap();
        let network =
            bitcoin::Target::from_compact(bitcoin::CompactTarget::from_consensus(self.job.bits)).to_le_bytes();
        assert!(meets(&hash, &network), "a share at {SHARE_DIFFICULTY} is a regtest block");
        self.last = format!(
            r#""{}","{}","{}","{:08x}","{nonce:08x}""#,
            self.login,
            self.job.id,
            hex::encode(en2),
            self.job.ntime
        );
        let reply = self.submit().await;
        assert_eq!(reply["result"], true, "{}'s share refused: {reply}", self.login);
        bitcoin::BlockHash::from_byte_array(hash)
    }

    /// Sends the last share again: its block is the tip's parent now, so the server refuses it.
    async fn again(&mut self) -> Value {
        let reply = self.submit().await;
        assert_ne!(reply["result"], true, "a share sent twice taken: {reply}");
        reply
    }

    async fn submit(&mut self) -> Value {
        let id = self.next_id;
        self.next_id += 1;
        self.c.send(&format!(r#"{{"id":{id},"method":"mining.submit","params":[{}]}}"#, self.last)).await;
        loop {
            let v = self.next().await;
            if v["id"] == id {
                break v;
            }
        }
    }
}

/// A share history's accepted and refused (by reason) over all its rows.
fn sums(rows: &Value) -> (u64, std::collections::BTreeMap<String, u64>) {
    let mut rejected = std::collections::BTreeMap::new();
    let mut accepted = 0;
    for r in rows.as_array().unwrap() {
        accepted += r["accepted"].as_u64().unwrap();
        for (reason, n) in r["rejected"].as_object().unwrap() {
            *rejected.entry(reason.clone()).or_insert(0) += n.as_u64().unwrap();
        }
    }
    (accepted, rejected)
}

type Row = (String, u64, String, String, u64, i64, u64, u64, u64);

/// A payout row as the user reads it: block, height, user, address, amount, carry, shares,
/// window shares, configuration version (not the confirmations, which the server's follower
/// updates on its own time).
fn row(r: &minebox_api::stratum::PoolPayout) -> Row {
    (
        r.block_hash.clone(),
        r.height,
        r.user.clone(),
        r.address.clone(),
        r.amount_sats,
        r.carry_sats,
        r.shares,
        r.window_shares,
        r.config_version,
    )
}

fn rows(list: &[minebox_api::stratum::PoolPayout]) -> Vec<Row> {
    list.iter().map(row).collect()
}

/// The payout rows the Pool page shows.
fn page_rows(v: &Value) -> Vec<Row> {
    rows(&serde_json::from_value::<Vec<minebox_api::stratum::PoolPayout>>(v["coins"][0]["payouts"].clone()).unwrap())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_pool_page_shows_each_user_their_own_payouts_from_the_real_stratum_server() {
    let node = minebox_regtest::Core::start().await.expect("Bitcoin Core starts (../shared/peers)");
    let dir = tempfile::tempdir().unwrap();
    let addresses = minebox_regtest::regtest_addresses();
    // The box's own payout address; alice's (P2WPKH) and bob's (P2TR) pool addresses.
    let (owner, alice_address, bob_address) = (&addresses[3].0, &addresses[2].0, &addresses[4].0);
    let (api_port, pool_port) = (free_port(), free_port());
    let config = dir.path().join("minebox.toml");
    std::fs::write(
        &config,
        format!(
            "[supervisor]\nbackend = \"process\"\n[status]\napply = []\n[stratum]\napi = \"127.0.0.1:{api_port}\"\n\
             [coins.btc]\nenabled = true\nnetwork = \"regtest\"\npayout_address = \"{owner}\"\n\
             [coins.btc.pool]\nport = {pool_port}\nwindow_factor = 100.0\nstart_difficulty = {SHARE_DIFFICULTY:e}\n\
             min_difficulty = {SHARE_DIFFICULTY:e}\nmax_difficulty = {SHARE_DIFFICULTY:e}\n"
        ),
    )
    .unwrap();
    let app = minebox_status::app::App::new(minebox_status::app::Options {
        config: config.clone(),
        defaults: None,
        registry: minebox_coin::Registry::embedded(),
        accounts: Some(dir.path().join("secrets/accounts")),
        data_dir: Some(dir.path().to_path_buf()),
    })
    .unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let (_stop, rx) = tokio::sync::oneshot::channel::<()>();
    tokio::spawn(minebox_status::serve(Arc::new(app), listener, async move {
        let _ = rx.await;
    }));

    // On the page: alice sets the box up (admin), makes bob (a viewer); each registers an address.
    let alice = Browser::sign_in(&base, "setup", "alice").await;
    let (s, v) = alice
        .send(
            reqwest::Method::POST,
            "/api/v1/users",
            json!({"name": "bob", "role": "viewer", "password": "correct horse"}),
        )
        .await;
    assert_eq!(s, 201, "{v}");
    let bob = Browser::sign_in(&base, "login", "bob").await;
    for (b, address) in [(&alice, alice_address), (&bob, bob_address)] {
        let (s, v) = b.send(reqwest::Method::PUT, "/api/v1/pool/addresses/btc", json!({ "address": address })).await;
        assert_eq!(s, 200, "{v}");
    }
    let payees_file = minebox_settings::Payees::path_beside(&config);
    let written = std::fs::read_to_string(&payees_file).expect("the page writes pool-payees.toml");
    assert!(written.contains(alice_address.as_str()) && written.contains(bob_address.as_str()), "{written}");

    // Out of initial block download first (Core gives no template on genesis).
    node.generate_to_address(1, owner).await.unwrap();
    // The real stratum server, on what the page left in the files (as its main() reads them).
    let registry = minebox_coin::Registry::embedded();
    let settings = minebox_settings::Settings::load(Some(&config), None, &registry).unwrap();
    let pool = settings.coins["btc"].pool.clone().expect("pool mode on in the settings file");
    // The page recorded the hand-written table as version 1 and wrote that into the file.
    assert_eq!(pool.config_version, 1, "{pool:?}");
    let network = registry.get("btc").unwrap().network("regtest").unwrap().clone();
    let stratum = minebox_stratum::service::start_with_pools(
        minebox_stratum::service::ServiceConfig {
            coins: vec![minebox_stratum::service::CoinConfig {
                coin: "btc".into(),
                network: "regtest".into(),
                listen: "127.0.0.1:0".parse().unwrap(),
                node: node.client(),
                zmq_hashblock: None,
                segwit: true,
                min_tx_size: 0,
                payouts: Box::new(minebox_stratum::payout::CoinPayouts(network)),
                vardiff: minebox_stratum::vardiff::VardiffConfig {
                    start: pool.start_difficulty,
                    min: pool.min_difficulty,
                    max: pool.max_difficulty,
                    ..Default::default()
                },
                coinbase_tag: "/MineBox-e2e/".into(),
                extranonce2_len: 8,
                version_mask: 0x1fff_e000,
                template_refresh: Duration::from_secs(30),
                block_poll: Duration::from_millis(200),
                upstream: None,
                upstream_idle: Duration::from_secs(300),
                upstream_max_connections: minebox_stratum::upstream::DEFAULT_MAX_CONNECTIONS,
                upstream_grace: minebox_stratum::upstream::DEFAULT_GRACE,
            }],
            database: dir.path().join("state.db"),
            api_listen: format!("127.0.0.1:{api_port}").parse().unwrap(),
            // Often, so that the share history below is on disk without waiting a minute.
            stats_flush: Duration::from_millis(200),
            limits: Default::default(),
            supervisor_events: None,
        },
        vec![minebox_stratum::pplns::desk::PoolModeConfig {
            coin: "btc".into(),
            network: "regtest".into(),
            listen: format!("127.0.0.1:{pool_port}").parse().unwrap(),
            settings: pool,
            payees_file,
            box_settings: Arc::new(settings),
            save_every: minebox_stratum::service::PPLNS_SNAPSHOT_EVERY,
        }],
    )
    .await
    .expect("the stratum server starts");
    let pool_addr = stratum.pool_addr("btc").unwrap();
    assert_eq!(pool_addr.port(), pool_port);

    // alice's first block: an empty window, her own job (no split, no payout rows). bob's
    // block then pays the window of alice's one share; alice's next, alice's two and bob's one.
    let mut miners = [Miner::connect(pool_addr, "alice.rig1").await, Miner::connect(pool_addr, "bob.rig1").await];
    let mut blocks = Vec::new();
    for finder in [0, 1, 0] {
        let hash = miners[finder].block().await;
        for m in &mut miners {
            m.job_on(hash).await;
        }
        blocks.push(hash);
    }
    let client = node.client();
    assert_eq!(client.get_best_block_hash().await.unwrap(), blocks[2], "Core took the three blocks in a row");

    // What the stratum server recorded, all of it and bob's.
    let stratum_rows = |query: &'static str| {
        let url = format!("http://127.0.0.1:{api_port}{}?coin=btc{query}", minebox_api::stratum::POOL_PAYOUTS);
        async move {
            reqwest::Client::builder()
                .no_proxy()
                .build()
                .unwrap()
                .get(url)
                .send()
                .await
                .unwrap()
                .json::<Vec<minebox_api::stratum::PoolPayout>>()
                .await
                .unwrap()
        }
    };
    let all = stratum_rows("").await;
    let mut found: Vec<(String, &str, u64)> =
        all.iter().map(|r| (r.block_hash.clone(), r.user.as_str(), r.shares)).collect();
    found.sort();
    let mut expected = vec![
        (blocks[1].to_string(), "alice", 1),
        (blocks[2].to_string(), "alice", 1),
        (blocks[2].to_string(), "bob", 1),
    ];
    expected.sort();
    assert_eq!(found, expected, "one row per pool block and user in its window: {all:?}");

    // Each row's amount is what Core's chain pays that user's address in that block.
    for r in &all {
        let block = client.get_block_verbose(&r.block_hash.parse().unwrap(), 2).await.unwrap();
        let paid: u64 = block["tx"][0]["vout"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|o| o["scriptPubKey"]["address"] == r.address.as_str())
            .map(|o| (o["value"].as_f64().unwrap() * 1e8).round() as u64)
            .sum();
        assert_eq!((paid, r.config_version), (r.amount_sats, 1), "{r:?} against {block}");
        assert!(r.amount_sats > 0, "{r:?}");
    }

    // On the page: bob sees his own row only, as the stratum server recorded it; his own
    // line of the window and his own address.
    let seen = bob.pool().await;
    assert_eq!(seen["coins"][0]["running"], true, "{seen}");
    assert_eq!(seen["coins"][0]["config_version"], 1, "{seen}");
    let bobs = rows(&stratum_rows("&user=bob").await);
    assert_eq!(page_rows(&seen), bobs, "{seen}");
    assert_eq!(bobs.len(), 1, "{seen}");
    let lines: Vec<&Value> = seen["coins"][0]["window"]["payees"].as_array().unwrap().iter().collect();
    assert_eq!(lines.len(), 1, "{seen}");
    assert_eq!((lines[0]["user"].as_str(), lines[0]["address"].as_str()), (Some("bob"), Some(bob_address.as_str())));
    let own: Vec<&str> = seen["addresses"].as_array().unwrap().iter().filter_map(|a| a["user"].as_str()).collect();
    assert_eq!(own, ["bob"], "{seen}");

    // alice (the admin) sees every row, bob's included, and the whole window.
    let seen = alice.pool().await;
    assert_eq!(page_rows(&seen), rows(&all), "{seen}");
    let mut lines: Vec<&str> =
        seen["coins"][0]["window"]["payees"].as_array().unwrap().iter().filter_map(|p| p["user"].as_str()).collect();
    lines.sort();
    assert_eq!(lines, ["alice", "bob"], "{seen}");

    // The share history on the page (every role's): the three blocks as accepted shares in
    // this hour and today, and alice's block sent again refused with the stratum server's reason,
    // the same sums as the server's own per-worker answer.
    let refusal = miners[0].again().await;
    let url = format!("http://127.0.0.1:{api_port}{}?coin=btc", minebox_api::stratum::SHARES);
    let direct = reqwest::Client::builder().no_proxy().build().unwrap();
    let mut page = Value::Null;
    for _ in 0..600 {
        let (s, v) = json_of(bob.c.get(format!("{base}/api/v1/shares?coin=btc"))).await;
        assert_eq!(s, 200, "{v}");
        page = v;
        if !sums(&page["hours"]).1.is_empty() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let buckets: Vec<minebox_api::stratum::ShareBucket> = direct.get(url).send().await.unwrap().json().await.unwrap();
    let mut server_rejected = std::collections::BTreeMap::<String, u64>::new();
    for b in &buckets {
        for (reason, n) in &b.rejected {
            *server_rejected.entry(reason.clone()).or_insert(0) += n;
        }
    }
    // Its job was for the block before the tip: stale, as the server's reply said.
    assert_eq!(refusal["error"][0], 21, "{refusal}");
    assert_eq!(server_rejected, [("stale".to_string(), 1)].into(), "{buckets:?}");
    let (hours, days) = (page["hours"].as_array().unwrap(), page["days"].as_array().unwrap());
    assert_eq!((hours.len(), days.len(), &page["complete"]), (48, 30, &json!(true)), "{page}");
    // Summed over the hours and over the days: the test may cross an hour (or midnight).
    for sum in [sums(&page["hours"]), sums(&page["days"])] {
        assert_eq!(sum, (3, server_rejected.clone()), "{page}");
    }
    let (s, v) = json_of(bob.c.get(format!("{base}/api/v1/shares?coin=B%20TC"))).await;
    assert_eq!(s, 404, "a bad coin name is refused: {v}");

    drop(miners);
    stratum.stop().await;
}
