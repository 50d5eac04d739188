//! Fast sync end to end with real Bitcoin Core (../shared/peers/bin/bitcoind), both kinds.
//!
//! `utxo`: Core node A is given Bitcoin Core's deterministic regtest chain (the one whose
//! height-200 UTXO set regtest's chainparams list), `dumptxoutset` writes the set, the
//! publisher signs and chunks it, nginx serves it. Fresh node B gets the 200 headers
//! (`submitheader`, as headers-first sync would) and the agent's service mode (what the
//! status page asks) installs the snapshot: B keeps its data directory and running chain,
//! `loadtxoutset` goes through B's RPC, the stratum server serves work on the snapshot
//! chainstate and a simulated Bitaxe's block is accepted while background validation runs;
//! B then gets the 200 blocks and background validation completes.
//!
//! `datadir`: node A's stopped regtest datadir installed for stopped node B, which starts on
//! it at A's height. Bad input: refused by the agent before Core sees it, or by Core.

mod support;

use minebox_node_rpc::NodeClient;
use minebox_publisher::publish::{publish, Request};
use minebox_regtest::{core_deterministic_chain, core_p2wpkh_address, Core, CORE_ASSUMEUTXO_200};
use minebox_snapshot::manifest::Kind;
use minebox_snapshot::minisign::SecretKey;
use minebox_snapshot_agent::install::{self, Options};
use minebox_snapshot_agent::service::{router, Agent, CoinSource};
use serde_json::Value;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use support::Nginx;

fn publish_kind(source: &Path, tree: &Path, key: &SecretKey, kind: Kind, network: &str, height: u64, hash: &str) {
    let req = Request {
        source: source.to_path_buf(),
        kind,
        coin: "btc".into(),
        network: network.into(),
        height,
        block_hash: hash.into(),
        version: 1,
        expires_in_secs: 86_400,
        out: tree.to_path_buf(),
        level: 3,
    };
    publish(&req, key).unwrap();
}

/// Node A on Core's deterministic chain, its height-200 UTXO set dumped to `dir/utxo.dat`.
async fn dumped_200(dir: &Path) -> Vec<bitcoin::Block> {
    let chain = core_deterministic_chain(200);
    assert_eq!(chain[199].block_hash().to_string(), CORE_ASSUMEUTXO_200);
    let a = Core::start().await.expect("Bitcoin Core starts (scripts/setup installs libzmq5)");
    a.submit_blocks(&chain).await.unwrap();
    assert_eq!(a.client().get_best_block_hash().await.unwrap().to_string(), CORE_ASSUMEUTXO_200);
    let out = a.dump_txoutset(&dir.join("utxo.dat")).await.unwrap();
    assert_eq!(out["base_height"], 200, "{out}");
    chain
}

type Seen = Arc<Mutex<Vec<String>>>;

/// A stand-in supervisor recording stop/start requests: a utxo install must make none.
async fn stand_in_supervisor() -> (String, Seen) {
    use axum::extract::{Path as UrlPath, State};
    async fn act(State(seen): State<Seen>, UrlPath((coin, action)): UrlPath<(String, String)>) -> &'static str {
        seen.lock().unwrap().push(format!("{action} {coin}"));
        "{}"
    }
    let seen: Seen = Arc::default();
    let app =
        axum::Router::new().route("/api/v1/nodes/{coin}/{action}", axum::routing::post(act)).with_state(seen.clone());
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(l, app).await });
    (addr.to_string(), seen)
}

/// The agent's service for one `btc` node, asked to install as the status page does; returns
/// the coin's entry once the install is done or failed, and what the supervisor was asked.
async fn install_via_service(url: &str, key: &SecretKey, network: &str, node: &Core) -> (Value, Vec<String>) {
    let (sup, seen) = stand_in_supervisor().await;
    let coins = vec![CoinSource {
        coin: "btc".into(),
        network: network.into(),
        url: url.into(),
        dest: node.datadir().to_path_buf(),
        managed: true,
        node: Some(node.client()),
    }];
    let agent = Arc::new(Agent::new(coins, vec![key.public()], &sup, true));
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let api = format!("http://{}", l.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(l, router(agent)).await });
    let http = reqwest::Client::new();
    let r = http.post(format!("{api}/api/v1/snapshots/btc/install")).send().await.unwrap();
    assert_eq!(r.status(), 202, "{}", r.text().await.unwrap());
    let started = Instant::now();
    loop {
        let v: Value = http.get(format!("{api}/api/v1/snapshots")).send().await.unwrap().json().await.unwrap();
        let coin = v["coins"][0].clone();
        let phase = coin["progress"]["phase"].as_str().unwrap_or_default().to_string();
        if v["busy"].is_null() && (phase == "done" || phase == "failed") {
            return (coin, seen.lock().unwrap().clone());
        }
        assert!(started.elapsed() < Duration::from_secs(300), "install did not finish: {v}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// The stratum server's binary (the one the box runs, built by the workspace build), against
/// `node`; returns it (killed on drop) and its stratum address once it listens.
async fn stratum_server(node: &Core, dir: &Path) -> (tokio::process::Child, std::net::SocketAddr) {
    let free = || std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap();
    let (stratum, api) = (free(), free());
    let log = std::fs::File::create(dir.join("stratum.log")).unwrap();
    let mut child = tokio::process::Command::new(minebox_test_support::workspace_bin("minebox-stratum"))
        .env("MINEBOX_NODE_PASSWORD", node.rpc_password())
        .env_remove("JOURNAL_STREAM")
        .args(["--coin=btc", "--network=regtest"])
        .arg(format!("--listen={stratum}"))
        .arg(format!("--api={api}"))
        .arg(format!("--node-url={}", node.rpc_url()))
        .arg(format!("--node-user={}", node.rpc_user()))
        .arg(format!("--zmq-hashblock={}", node.zmq_endpoint()))
        .arg(format!("--database={}", dir.join("state.db").display()))
        .args(["--block-poll-ms=200", "--start-difficulty=0.0001", "--min-difficulty=0.00001"])
        .stdout(log.try_clone().unwrap())
        .stderr(log)
        .kill_on_drop(true)
        .spawn()
        .expect("the stratum server starts");
    let started = Instant::now();
    while tokio::net::TcpStream::connect(api).await.is_err() {
        if let Ok(Some(s)) = child.try_wait() {
            panic!("stratum server exited with {s}: {}", std::fs::read_to_string(dir.join("stratum.log")).unwrap());
        }
        assert!(started.elapsed() < Duration::from_secs(30), "the stratum server did not start");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    (child, stratum)
}

/// Core's deterministic chain dumped at 200 and published as a signed utxo snapshot under
/// `dir/tree`: the chain and the key that signed it.
async fn published_200(dir: &Path) -> (Vec<bitcoin::Block>, SecretKey) {
    let chain = dumped_200(dir).await;
    let key = SecretKey::generate();
    publish_kind(&dir.join("utxo.dat"), &dir.join("tree"), &key, Kind::Utxo, "regtest", 200, CORE_ASSUMEUTXO_200);
    (chain, key)
}

async fn chainstates(node: &NodeClient) -> Value {
    node.call("getchainstates", serde_json::json!([])).await.unwrap()
}

#[tokio::test]
async fn a_utxo_snapshot_from_core_is_loaded_mined_on_and_validated_in_the_background() {
    let dir = tempfile::tempdir().unwrap();
    let (chain, key) = published_200(dir.path()).await;
    let nginx = Nginx::serve(&dir.path().join("tree"), None);

    // The box's fresh node: headers first, no blocks.
    let b = Core::start().await.unwrap();
    b.submit_headers(&chain).await.unwrap();
    let own_file = b.datadir().join("regtest/settings.json");
    assert!(own_file.exists(), "the node's own files are there before the install");

    let (coin, supervisor) =
        install_via_service(&format!("http://127.0.0.1:{}", nginx.port), &key, "regtest", &b).await;
    assert_eq!(coin["progress"]["phase"], "done", "{coin}");
    assert!(supervisor.is_empty(), "a utxo install must not stop the node: {supervisor:?}");
    assert_eq!(coin["installed"]["height"], 200, "{coin}");
    assert_eq!(coin["installed"]["kind"], "utxo", "{coin}");
    eprintln!("loadtxoutset (regtest, height 200, 200 coins) took {} s", coin["progress"]["load_secs"]);
    assert!(own_file.exists(), "the node kept its data directory");
    assert!(!install::utxo_dir(b.datadir()).exists(), "the loaded file is removed once Core has the coins");

    let client = b.client();
    let states = chainstates(&client).await;
    let list = states["chainstates"].as_array().unwrap();
    assert_eq!(list.len(), 2, "a background and a snapshot chainstate: {states}");
    assert_eq!(list[1]["snapshot_blockhash"], CORE_ASSUMEUTXO_200, "{states}");
    assert_eq!(list[1]["blocks"], 200, "{states}");
    assert_eq!(list[0]["blocks"], 0, "background validation waits for the blocks: {states}");
    assert_eq!(coin["progress"]["validation"]["snapshot_tip"], 200, "{coin}");

    // The stratum server serves work on the snapshot chainstate; a simulated Bitaxe's block
    // is accepted while the background chainstate is still at genesis.
    let db = tempfile::tempdir().unwrap();
    let (_server, stratum) = stratum_server(&b, db.path()).await;
    let url = format!("stratum+tcp://{stratum}");
    let user = format!("{}.bitaxe", core_p2wpkh_address([0x22; 20]));
    let report = minebox_simminer::miner::mine_shares(&url, &user, 1, Duration::from_secs(120)).await.unwrap();
    assert!(report.accepted >= 1, "{report:?}");
    let started = Instant::now();
    while client.get_blockchain_info().await.unwrap().blocks < 201 {
        assert!(started.elapsed() < Duration::from_secs(60), "the found block never reached the node");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let states = chainstates(&client).await;
    assert_eq!(states["chainstates"].as_array().unwrap().len(), 2, "still validating in the background: {states}");

    // The blocks arrive; background validation reaches the snapshot and completes.
    b.submit_blocks(&chain).await.unwrap();
    let started = Instant::now();
    loop {
        let states = chainstates(&client).await;
        let list = states["chainstates"].as_array().unwrap();
        if list.len() == 1 && list[0]["validated"] == true {
            assert!(list[0]["blocks"].as_u64().unwrap() >= 201, "{states}");
            break;
        }
        assert!(started.elapsed() < Duration::from_secs(120), "background validation never completed: {states}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

#[tokio::test]
async fn a_datadir_snapshot_of_core_starts_a_stopped_node_at_its_height() {
    let dir = tempfile::tempdir().unwrap();
    let mut a = Core::start().await.unwrap();
    let mined = a.generate_to_address(30, &core_p2wpkh_address([0x33; 20])).await.unwrap();
    a.stop().await;
    let key = SecretKey::generate();
    let tip = mined.last().unwrap().to_string();
    publish_kind(a.datadir(), &dir.path().join("tree"), &key, Kind::Datadir, "regtest", 30, &tip);
    let nginx = Nginx::serve(&dir.path().join("tree"), None);

    let mut b = Core::unstarted().unwrap();
    let opts = Options::new(&format!("http://127.0.0.1:{}", nginx.port), vec![key.public()], b.datadir());
    install::install(opts, Default::default()).await.unwrap();
    b.start_again().await.expect("Core starts on the installed datadir");
    let info = b.client().get_blockchain_info().await.unwrap();
    assert_eq!(info.blocks, 30, "{info:?}");
    assert_eq!(b.client().get_best_block_hash().await.unwrap().to_string(), tip);
    // And it goes on from there.
    b.generate_to_address(1, &core_p2wpkh_address([0x34; 20])).await.unwrap();
    assert_eq!(b.client().get_blockchain_info().await.unwrap().blocks, 31);
}

/// B's chain as it was: one chainstate, the same tip.
async fn assert_intact(node: &NodeClient, tip: &str) {
    let states = chainstates(node).await;
    assert_eq!(states["chainstates"].as_array().unwrap().len(), 1, "no snapshot chainstate was left: {states}");
    assert_eq!(node.get_best_block_hash().await.unwrap().to_string(), tip);
}

/// What is wrong, the file, the network and height and block the manifest names, and the
/// reason the page must show.
type Case = (&'static str, Vec<u8>, &'static str, u64, String, &'static str);

#[tokio::test]
async fn bad_snapshots_are_refused_with_the_reason_and_the_running_chain_is_kept() {
    let dir = tempfile::tempdir().unwrap();
    let chain = dumped_200(dir.path()).await;
    let good = std::fs::read(dir.path().join("utxo.dat")).unwrap();
    let key = SecretKey::generate();
    let b = Core::start().await.unwrap();
    b.submit_headers(&chain).await.unwrap();
    // B mined 3 blocks of its own (another chain of less work than the snapshot's headers).
    b.generate_to_address(3, &core_p2wpkh_address([0x44; 20])).await.unwrap();
    let tip = b.client().get_best_block_hash().await.unwrap().to_string();
    let client = b.client();

    let cases: Vec<Case> = vec![
        // (what, file, network, height, block, the reason the page must show)
        (
            "a height Core does not list",
            good.clone(),
            "regtest",
            150,
            chain[149].block_hash().to_string(),
            "only at heights [110, 200, 299]",
        ),
        (
            "another chain",
            good.clone(),
            "signet",
            200,
            CORE_ASSUMEUTXO_200.into(),
            "for the signet chain, the node runs regtest",
        ),
        (
            "a block the node does not know",
            good.clone(),
            "regtest",
            200,
            format!("{:064x}", 7),
            "does not have the header",
        ),
        (
            "a tampered set",
            {
                let mut t = good.clone();
                let n = t.len();
                t[n - 3] ^= 0x55;
                t
            },
            "regtest",
            200,
            CORE_ASSUMEUTXO_200.into(),
            "Bitcoin Core refused the UTXO set",
        ),
    ];
    for (i, (what, bytes, network, height, block, reason)) in cases.into_iter().enumerate() {
        let case = dir.path().join(format!("case{i}"));
        std::fs::create_dir_all(&case).unwrap();
        // A publisher that dumped at another block or chain: the file's own metadata says so
        // (the publisher refuses a file whose metadata contradicts the manifest).
        let mut bytes = bytes;
        if network == "signet" {
            bytes[7..11].copy_from_slice(&[0x0a, 0x03, 0xcf, 0x40]);
        }
        let mut base = hex::decode(&block).unwrap();
        base.reverse();
        bytes[11..43].copy_from_slice(&base);
        std::fs::write(case.join("utxo.dat"), &bytes).unwrap();
        publish_kind(&case.join("utxo.dat"), &case.join("tree"), &key, Kind::Utxo, network, height, &block);
        let nginx = Nginx::serve(&case.join("tree"), None);
        let (coin, supervisor) =
            install_via_service(&format!("http://127.0.0.1:{}", nginx.port), &key, network, &b).await;
        assert_eq!(coin["progress"]["phase"], "failed", "{what}: {coin}");
        let error = coin["progress"]["error"].as_str().unwrap();
        assert!(error.contains(reason), "{what}: {error}");
        eprintln!("{what}: {error}");
        assert!(supervisor.is_empty(), "{what}: the node was stopped: {supervisor:?}");
        assert!(coin["installed"].is_null(), "{what}: {coin}");
        assert!(!install::utxo_dir(b.datadir()).exists(), "{what}: the refused file stays on disk");
        assert_intact(&client, &tip).await;
    }

    // Core itself refuses a set for a height its chainparams do not list (the agent's check
    // bypassed): the reason is Core's, and the chain is kept.
    let c = Core::start().await.unwrap();
    c.generate_to_address(120, &core_p2wpkh_address([0x55; 20])).await.unwrap();
    c.dump_txoutset(&dir.path().join("at120.dat")).await.unwrap();
    let e = minebox_snapshot_agent::utxo::load(&client, &dir.path().join("at120.dat")).await.unwrap_err();
    eprintln!("height 120 straight to Core: {e}");
    assert!(matches!(e, minebox_snapshot_agent::utxo::UtxoError::Refused(_)), "{e}");
    assert_intact(&client, &tip).await;
}

/// The CLI's `install --node-url` (a utxo install by hand) does the same as the service:
/// DEST is the running node's data directory, kept; the file goes to the node by RPC.
#[tokio::test]
async fn the_cli_hands_a_utxo_snapshot_to_the_running_node_and_keeps_its_datadir() {
    let dir = tempfile::tempdir().unwrap();
    let (chain, key) = published_200(dir.path()).await;
    std::fs::write(dir.path().join("key.pub"), key.public().to_file()).unwrap();
    let nginx = Nginx::serve(&dir.path().join("tree"), None);
    let b = Core::start().await.unwrap();
    b.submit_headers(&chain).await.unwrap();
    let own_file = b.datadir().join("regtest/settings.json");
    let out = tokio::process::Command::new(minebox_test_support::workspace_bin("minebox-snapshot-agent"))
        .arg("install")
        .arg(format!("--url=http://127.0.0.1:{}", nginx.port))
        .arg(format!("--pubkey={}", dir.path().join("key.pub").display()))
        .arg(format!("--dest={}", b.datadir().display()))
        .arg(format!("--node-url={}", b.rpc_url()))
        .arg(format!("--node-cookie={}", b.cookie_path().display()))
        .output()
        .await
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{stdout}{}", String::from_utf8_lossy(&out.stderr));
    assert!(stdout.contains("\"snapshot_tip\":200"), "{stdout}");
    assert!(own_file.exists(), "the node's data directory was kept");
    let states = chainstates(&b.client()).await;
    assert_eq!(states["chainstates"].as_array().unwrap().len(), 2, "{states}");
    assert_eq!(install::installed(b.datadir()).unwrap().height, 200);
}

/// The agent's table of the heights Core accepts is what Bitcoin Core itself says: each
/// chain's node, offline and empty, is handed a file for an unknown block and its refusal
/// lists the heights it has.
#[tokio::test]
async fn the_agents_allowed_heights_are_the_ones_bitcoin_core_lists() {
    let dir = tempfile::tempdir().unwrap();
    for (chain, magic) in [
        ("main", [0xf9, 0xbe, 0xb4, 0xd9]),
        ("signet", [0x0a, 0x03, 0xcf, 0x40]),
        ("testnet4", [0x1c, 0x16, 0x3f, 0x28]),
        ("regtest", [0xfa, 0xbf, 0xb5, 0xda]),
    ] {
        let mut file = b"utxo\xff\x02\x00".to_vec();
        file.extend(magic);
        file.extend([0x42; 32]);
        file.extend(0u64.to_le_bytes());
        let path = dir.path().join(format!("{chain}.dat"));
        std::fs::write(&path, file).unwrap();
        let data = dir.path().join(chain);
        std::fs::create_dir_all(&data).unwrap();
        let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let mut node = tokio::process::Command::new(minebox_regtest::bitcoind_path())
            .arg(format!("-chain={chain}"))
            .arg(format!("-datadir={}", data.display()))
            .args(["-connect=0", "-listen=0", "-dnsseed=0", "-fixedseeds=0", "-printtoconsole=0"])
            .args(["-rpcbind=127.0.0.1", "-rpcallowip=127.0.0.1", "-rpcuser=u", "-rpcpassword=p"])
            .arg(format!("-rpcport={port}"))
            .kill_on_drop(true)
            .spawn()
            .unwrap();
        let client = NodeClient::new(
            &format!("http://127.0.0.1:{port}/"),
            minebox_node_rpc::Auth::UserPass { user: "u".into(), pass: "p".into() },
        )
        .unwrap();
        let started = Instant::now();
        while client.get_best_block_hash().await.is_err() {
            assert!(started.elapsed() < Duration::from_secs(60), "{chain} node did not start");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let e = minebox_snapshot_agent::utxo::load(&client, &path).await.unwrap_err().to_string();
        let _ = client.stop().await;
        let _ = tokio::time::timeout(Duration::from_secs(30), node.wait()).await;
        let listed = e.split("heights are available: ").nth(1).unwrap_or_else(|| panic!("{chain}: {e}"));
        let listed: Vec<u64> =
            listed.split('.').next().unwrap().split(", ").map(|h| h.trim().parse().unwrap()).collect();
        assert_eq!(minebox_snapshot_agent::utxo::allowed_heights(chain), listed, "{chain}: {e}");
    }
}

/// What the status page shows of a `utxo` install from `loadtxoutset` until background
/// validation completes, and after the agent restarts meanwhile (a reboot during the hours a
/// Pi validates): the snapshot's height, the background chainstate's height below it, and
/// completion, all from the node's `getchainstates`.
#[tokio::test]
async fn the_page_follows_background_validation_to_the_end_even_after_the_agent_restarts() {
    // As the agent's unit runs it (UMask=0077); this test has its own process under nextest.
    minebox_platform::process::set_umask(0o077);
    let dir = tempfile::tempdir().unwrap();
    let (chain, key) = published_200(dir.path()).await;
    let nginx = Nginx::serve(&dir.path().join("tree"), None);
    let b = Core::start().await.unwrap();
    b.submit_headers(&chain).await.unwrap();
    let url = format!("http://127.0.0.1:{}", nginx.port);
    let (coin, _) = install_via_service(&url, &key, "regtest", &b).await;
    assert_eq!(coin["progress"]["phase"], "done", "{coin}");
    // The node runs as another user than the agent and reads the file through the group.
    use std::os::unix::fs::PermissionsExt;
    let state = install::state_dir(b.datadir());
    let mode = std::fs::metadata(&state).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o770, "{}: the node's user must get through it to the utxo file", state.display());
    let v = &coin["progress"]["validation"];
    assert_eq!(
        (&v["snapshot_height"], &v["background_height"], &v["fully_validated"]),
        (&Value::from(200), &Value::from(0), &Value::Bool(false)),
        "where background validation is, and where it ends: {coin}"
    );

    // The agent restarts: a new one, with nothing in memory, lists the coin again.
    let (sup, _) = stand_in_supervisor().await;
    let source = CoinSource {
        coin: "btc".into(),
        network: "regtest".into(),
        url,
        dest: b.datadir().to_path_buf(),
        managed: true,
        node: Some(b.client()),
    };
    let agent = Arc::new(Agent::new(vec![source], vec![key.public()], &sup, true));
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let api = format!("http://{}/api/v1/snapshots", l.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(l, router(agent)).await });
    let listed = || async { reqwest::get(&api).await.unwrap().json::<Value>().await.unwrap()["coins"][0].clone() };
    let coin = listed().await;
    let v = &coin["progress"]["validation"];
    assert_eq!(
        (&v["snapshot_height"], &v["background_height"]),
        (&Value::from(200), &Value::from(0)),
        "after a restart the page still shows background validation: {coin}"
    );

    // The blocks arrive; the page shows validation complete.
    b.submit_blocks(&chain).await.unwrap();
    let started = Instant::now();
    loop {
        let coin = listed().await;
        if coin["progress"]["validation"]["fully_validated"] == true {
            break;
        }
        assert!(started.elapsed() < Duration::from_secs(120), "the page never showed validation complete: {coin}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}
