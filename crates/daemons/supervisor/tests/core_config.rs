//! The config file the supervisor writes for Bitcoin Core, read by a real bitcoind.
//!
//! Bitcoin Core refuses unknown options at start and warns about options that do not apply
//! (a network option outside its section, say); either would leave the box's own node down
//! or not as the supervisor meant it. So every network the descriptor supports is started
//! here with exactly the config and arguments `launch::plan` produces, and the node's
//! console output is read for errors and warnings.
//!
//! Only regtest may talk to anything: for main, testnet4 and signet the test adds
//! `-connect=0 -dnsseed=0 -fixedseeds=0 -listen=0` on the command line (which Core lets
//! override the file), so nothing leaves this machine. Ports are free local ones.

use minebox_coin::Registry;
use minebox_settings::Settings;
use minebox_supervisor::launch::{self, Phase};
use minebox_test_support::free_port;
use std::path::Path;
use std::process::Stdio;
use std::time::{Duration, Instant};
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::Command;

fn coin_settings(dir: &Path, network: &str) -> minebox_settings::CoinSettings {
    let user = format!(
        r#"[paths]
nodes = "{nodes}"
secrets = "{secrets}"
state = "{state}"
[coins.btc]
network = "{network}"
rpc_port = {rpc}
p2p_port = {p2p}
zmq_port = {zmq}
memory_budget_mib = 600
"#,
        nodes = dir.join("nodes").display(),
        secrets = dir.join("secrets").display(),
        state = dir.join("state.db").display(),
        rpc = free_port(),
        p2p = free_port(),
        zmq = free_port(),
    );
    let settings = Settings::from_texts(
        "minebox.toml",
        &user,
        "defaults.toml",
        minebox_settings::EMBEDDED_DEFAULTS,
        &Registry::embedded(),
    )
    .unwrap();
    settings.coins["btc"].clone()
}

/// What bitcoind printed (printtoconsole=1) until its RPC answered, or why it did not start.
async fn start_and_read(network: &str) -> (Vec<String>, bool) {
    let dir = tempfile::tempdir().unwrap();
    let coin = coin_settings(dir.path(), network);
    let l = launch::plan(&coin, &dir.path().join("nodes"), &dir.path().join("secrets"), Phase::InitialSync).unwrap();
    let (conf_path, conf) = l.config.clone().expect("Bitcoin Core gets a config file");
    std::fs::create_dir_all(&l.data_dir).unwrap();
    std::fs::write(&conf_path, &conf).unwrap();

    let mut args = l.args.clone();
    if network != "regtest" {
        args.extend(["-connect=0", "-dnsseed=0", "-fixedseeds=0", "-listen=0"].map(String::from));
    }
    let mut child = Command::new(minebox_regtest::bitcoind_path())
        .args(&args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("bitcoind starts (run scripts/setup: it needs libzmq5)");
    let stdout = child.stdout.take().unwrap();
    let stderr = child.stderr.take().unwrap();
    let lines = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    for stream in [Box::new(stdout) as Box<dyn tokio::io::AsyncRead + Unpin + Send>, Box::new(stderr)] {
        let lines = lines.clone();
        tokio::spawn(async move {
            let mut r = BufReader::new(stream).lines();
            while let Ok(Some(line)) = r.next_line().await {
                lines.lock().unwrap().push(line);
            }
        });
    }

    let client = minebox_node_rpc::NodeClient::new(
        &l.rpc_url,
        minebox_node_rpc::Auth::UserPass { user: l.credentials.user.clone(), pass: l.credentials.password.clone() },
    )
    .unwrap();
    let deadline = Instant::now() + Duration::from_secs(120);
    let mut answered = false;
    while Instant::now() < deadline {
        if let Ok(Some(_)) = child.try_wait() {
            break;
        }
        if client.call::<serde_json::Value>("getblockchaininfo", serde_json::json!([])).await.is_ok() {
            answered = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    if answered {
        let _ = client.call::<serde_json::Value>("stop", serde_json::json!([])).await;
        let _ = tokio::time::timeout(Duration::from_secs(60), child.wait()).await;
    }
    let _ = child.kill().await;
    // Let the readers drain what the node printed last.
    tokio::time::sleep(Duration::from_millis(100)).await;
    let lines = lines.lock().unwrap().clone();
    (lines, answered)
}

async fn assert_core_takes_the_config(network: &str) {
    let (lines, answered) = start_and_read(network).await;
    let complaints: Vec<&String> = lines
        .iter()
        .filter(|l| {
            let l = l.to_ascii_lowercase();
            l.contains("warning") || l.contains("error") || l.contains("ignored") || l.contains("unknown")
        })
        // About the machine running the test, not the config: Core warns on first start when the
        // disk has less free space than the prune target (10 GiB here), and CI's disks may not.
        .filter(|l| !l.contains("may not accommodate the block files"))
        .collect();
    assert!(answered, "bitcoind on {network} did not come up with the supervisor's config:\n{}", lines.join("\n"));
    assert!(complaints.is_empty(), "bitcoind on {network} complained about the supervisor's config:\n{complaints:#?}");
}

#[tokio::test]
async fn core_takes_the_regtest_config() {
    assert_core_takes_the_config("regtest").await;
}

#[tokio::test]
async fn core_takes_the_signet_config() {
    assert_core_takes_the_config("signet").await;
}

#[tokio::test]
async fn core_takes_the_testnet4_config() {
    assert_core_takes_the_config("test").await;
}

#[tokio::test]
async fn core_takes_the_mainnet_config() {
    assert_core_takes_the_config("main").await;
}
