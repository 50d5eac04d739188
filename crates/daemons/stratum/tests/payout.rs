//! Who a found block pays, end to end: the stratum binary in settings mode (as on the box)
//! against a real Bitcoin Core regtest node, a simulated Bitaxe mining until Core accepts
//! its block, and the coinbase read back from Core (`getblock` verbosity 2).
//!
//! - `payout_policy = "miner"` (the default): a miner set up with a bare worker name mines
//!   to the owner's `payout_address`; a miner that sends its own valid address is paid to it.
//! - `payout_policy = "owner"`: a miner that sends its own valid address still pays the owner.

mod common;

use minebox_regtest::Core;
use minebox_stratum::store::{BlockStatus, Store};
use minebox_test_support::free_port;
use serde_json::Value;
use std::net::SocketAddr;
use std::path::Path;
use std::process::Stdio;
use std::time::{Duration, Instant};

/// The owner's address (coins.btc.payout_address) and a miner's own, with their scripts.
fn owner() -> (String, String) {
    let a = bitcoin::Address::p2wpkh(
        &bitcoin::CompressedPublicKey::from_slice(&hex_pubkey()).unwrap(),
        bitcoin::Network::Regtest,
    );
    (a.to_string(), a.script_pubkey().to_hex_string())
}

fn hex_pubkey() -> Vec<u8> {
    // The secp256k1 generator point, compressed: a valid key nobody's wallet uses by accident.
    hex::decode("0279be667ef9dcbbac55a06295ce870b07029bfcdb2dce28d959f2815b16f81798").unwrap()
}

fn miner() -> (String, String) {
    let (a, s) = common::regtest_addresses().remove(0);
    (a, s.to_hex_string())
}

struct Server {
    // Killed when the test ends (kill_on_drop).
    _child: tokio::process::Child,
    stratum: SocketAddr,
    api: SocketAddr,
}

/// The binary as the box runs it: one settings file naming the node (external: the test's
/// Core) and the owner's payout address and policy.
async fn start(core: &Core, dir: &Path, policy: Option<&str>) -> Server {
    let (stratum_port, api_port) = (free_port(), free_port());
    let cookie = dir.join("btc.cookie");
    std::fs::write(&cookie, format!("{}:{}", core.rpc_user(), core.rpc_password())).unwrap();
    let zmq_port: u16 = core.zmq_endpoint().rsplit(':').next().unwrap().parse().unwrap();
    let policy_line = policy.map(|p| format!("payout_policy = \"{p}\"\n")).unwrap_or_default();
    let settings = format!(
        r#"
[paths]
state = "{d}/state.db"
[stratum]
api = "127.0.0.1:{api_port}"
[supervisor]
api = "127.0.0.1:{sup}"
[coins.btc]
enabled = true
network = "regtest"
payout_address = "{owner}"
{policy_line}stratum_port = {stratum_port}
start_difficulty = 0.0001
min_difficulty = 0.00000001
node = "external"
rpc_host = "127.0.0.1"
rpc_port = {rpc}
rpc_cookie = "{cookie}"
zmq_port = {zmq_port}
"#,
        d = dir.display(),
        sup = free_port(),
        owner = owner().0,
        rpc = core.rpc_port(),
        cookie = cookie.display(),
    );
    let path = dir.join("minebox.toml");
    std::fs::write(&path, settings).unwrap();
    let log = std::fs::File::create(dir.join("stratum.log")).unwrap();
    let mut child = tokio::process::Command::new(env!("CARGO_BIN_EXE_minebox-stratum"))
        .arg("--config")
        .arg(&path)
        .args(["--bind", "127.0.0.1", "--block-poll-ms", "200"])
        .env("RUST_LOG", "info")
        .env_remove("JOURNAL_STREAM")
        .stdin(Stdio::null())
        .stdout(log.try_clone().unwrap())
        .stderr(log)
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let stratum: SocketAddr = format!("127.0.0.1:{stratum_port}").parse().unwrap();
    let started = Instant::now();
    while tokio::net::TcpStream::connect(stratum).await.is_err() {
        if let Ok(Some(status)) = child.try_wait() {
            panic!("stratum exited with {status}: {}", std::fs::read_to_string(dir.join("stratum.log")).unwrap());
        }
        assert!(started.elapsed() < Duration::from_secs(60), "stratum did not listen");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    Server { _child: child, stratum, api: format!("127.0.0.1:{api_port}").parse().unwrap() }
}

/// Mines as `user` until Core accepted a block the server recorded for that worker, and
/// returns the hex script the block's coinbase pays (its first output), read from Core.
async fn block_pays(core: &Core, server: &Server, db: &Path, user: &str) -> String {
    let url = format!("stratum+tcp://{}", server.stratum);
    let started = Instant::now();
    loop {
        assert!(started.elapsed() < Duration::from_secs(120), "no block accepted for {user}");
        let report = minebox_simminer::mine_shares(&url, user, 4, Duration::from_secs(60))
            .await
            .unwrap_or_else(|e| panic!("{user} could not mine: {e}"));
        assert!(report.accepted >= 1, "{user}: {report:?}");
        let settle = Instant::now();
        let accepted = loop {
            let blocks = Store::open(db).unwrap().blocks(Some("btc"), 1000).unwrap();
            let mine: Vec<_> = blocks.into_iter().filter(|b| b.worker == user).collect();
            if mine.iter().all(|b| b.status != BlockStatus::Submitting) || settle.elapsed() > Duration::from_secs(30) {
                break mine.into_iter().find(|b| b.status == BlockStatus::Accepted);
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        };
        if let Some(b) = accepted {
            let hash: bitcoin::BlockHash = b.hash.parse().unwrap();
            let block: Value = core.client().get_block_verbose(&hash, 2).await.unwrap();
            return block["tx"][0]["vout"][0]["scriptPubKey"]["hex"].as_str().unwrap().to_string();
        }
    }
}

async fn api(server: &Server, path: &str) -> Value {
    reqwest::get(format!("http://{}{path}", server.api)).await.unwrap().json().await.unwrap()
}

#[tokio::test]
async fn a_bare_worker_name_mines_to_the_owner_and_a_miners_own_address_to_the_miner() {
    let core = Core::start().await.expect("Bitcoin Core regtest starts");
    let dir = tempfile::tempdir().unwrap();
    let server = start(&core, dir.path(), None).await;
    let db = dir.path().join("state.db");
    let (owner_address, owner_script) = owner();
    let (miner_address, miner_script) = miner();

    assert_eq!(block_pays(&core, &server, &db, "bitaxe1").await, owner_script, "a bare worker name pays the owner");
    let own = format!("{miner_address}.rig");
    assert_eq!(block_pays(&core, &server, &db, &own).await, miner_script, "a miner's valid address is paid");

    // The page's source says which applies, per coin and per worker.
    let status = api(&server, "/api/v1/stratum").await;
    assert_eq!(status[0]["payout_policy"], "miner");
    assert_eq!(status[0]["payout_address"], owner_address);
    let workers = api(&server, "/api/v1/stratum/workers").await;
    let by_name = |n: &str| workers.as_array().unwrap().iter().find(|w| w["worker"] == n).cloned().unwrap();
    assert_eq!(
        (by_name("bitaxe1")["payout_address"].clone(), by_name("bitaxe1")["paid_to"].clone()),
        (owner_address.clone().into(), "owner".into())
    );
    assert_eq!(
        (by_name(&own)["payout_address"].clone(), by_name(&own)["paid_to"].clone()),
        (miner_address.clone().into(), "miner".into())
    );

    // An address with a typo (one character changed: the checksum fails) is refused with
    // the reason, not quietly paid to the owner.
    let last = miner_address.chars().last().unwrap();
    let typo = format!("{}{}", &miner_address[..miner_address.len() - 1], if last == 'z' { 'y' } else { 'z' });
    let mut c = common::Raw::connect(server.stratum).await;
    c.send(r#"{"id":1,"method":"mining.subscribe","params":[]}"#).await;
    c.reply(1).await;
    c.send(&format!(r#"{{"id":2,"method":"mining.authorize","params":["{typo}.rig","x"]}}"#)).await;
    let r = c.reply(2).await;
    assert_eq!(r["result"], false, "{r}");
    assert!(r["error"][1].as_str().unwrap().contains(&format!("{typo} cannot be paid")), "{r}");
}

#[tokio::test]
async fn with_policy_owner_a_miners_own_address_still_pays_the_owner() {
    let core = Core::start().await.expect("Bitcoin Core regtest starts");
    let dir = tempfile::tempdir().unwrap();
    let server = start(&core, dir.path(), Some("owner")).await;
    let db = dir.path().join("state.db");
    let (owner_address, owner_script) = owner();
    let (miner_address, _) = miner();
    let own = format!("{miner_address}.rig");
    assert_eq!(block_pays(&core, &server, &db, &own).await, owner_script, "payout_policy = owner pays the owner");
    let status = api(&server, "/api/v1/stratum").await;
    assert_eq!(status[0]["payout_policy"], "owner");
    let workers = api(&server, "/api/v1/stratum/workers").await;
    let w = workers.as_array().unwrap().iter().find(|w| w["worker"] == own.as_str()).cloned().unwrap();
    assert_eq!((w["payout_address"].clone(), w["paid_to"].clone()), (owner_address.into(), "owner".into()));
}
