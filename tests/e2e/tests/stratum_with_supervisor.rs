//! The box's way of running: one settings file; the supervisor runs the node (Bitcoin Core,
//! as on the box, under the process backend here, with the config file the supervisor
//! writes), the stratum binary reads the same file, finds the node, its credentials and its
//! ZMQ endpoint, and follows the supervisor's events.

use minebox_test_support::free_port;
use std::process::Stdio;
use std::time::{Duration, Instant};

#[tokio::test]
async fn one_settings_file_runs_node_and_stratum_and_a_node_restart_brings_fresh_work() {
    let dir = tempfile::tempdir().unwrap();
    let (stratum_port, sup_api, stratum_api) = (free_port(), free_port(), free_port());
    let address = minebox_regtest::regtest_addresses()[2].0.clone();
    let settings_text = format!(
        r#"
[paths]
nodes = "{d}/nodes"
secrets = "{d}/secrets"
state = "{d}/state.db"
[stratum]
api = "127.0.0.1:{stratum_api}"
[supervisor]
backend = "process"
api = "127.0.0.1:{sup_api}"
[coins.btc]
enabled = true
network = "regtest"
payout_address = "{address}"
stratum_port = {stratum_port}
start_difficulty = 0.0001
min_difficulty = 0.00000001
node_flavour = "bitcoin-core"
node_command = ["{bitcoind}"]
rpc_port = {rpc}
p2p_port = {p2p}
zmq_port = {zmq}
"#,
        d = dir.path().display(),
        bitcoind = minebox_regtest::bitcoind_path().display(),
        zmq = free_port(),
        rpc = free_port(),
        p2p = free_port(),
    );
    let path = dir.path().join("minebox.toml");
    std::fs::write(&path, &settings_text).unwrap();
    let registry = minebox_coin::Registry::embedded();
    let settings = minebox_settings::Settings::load(Some(&path), None, &registry).unwrap();
    let policy = minebox_supervisor::keeper::Policy {
        health_every: Duration::from_millis(200),
        ..minebox_supervisor::keeper::Policy::from(&settings.supervisor)
    };
    let sup = minebox_supervisor::start(
        &settings,
        minebox_supervisor::backend::Backend::Process(minebox_supervisor::backend::ProcessBackend),
        policy,
        settings.supervisor.api,
    )
    .await
    .unwrap();
    let started = Instant::now();
    while sup.view("btc").unwrap().state != minebox_supervisor::health::NodeState::Synced {
        assert!(started.elapsed() < Duration::from_secs(60), "node not synced: {:?}", sup.view("btc"));
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    // Polls and refreshes are made very slow: after the node restarts, only the
    // supervisor's event can make the stratum fetch work again.
    let mut stratum = tokio::process::Command::new(minebox_test_support::workspace_bin("minebox-stratum"))
        .arg("--config")
        .arg(&path)
        .args(["--bind", "127.0.0.1", "--block-poll-ms", "3600000", "--template-refresh-secs", "3600"])
        .env("RUST_LOG", "info")
        .stdin(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let addr: std::net::SocketAddr = format!("127.0.0.1:{stratum_port}").parse().unwrap();
    while tokio::net::TcpStream::connect(addr).await.is_err() {
        assert!(started.elapsed() < Duration::from_secs(90), "stratum did not listen");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let report = minebox_simminer::mine_shares(
        &format!("stratum+tcp://{addr}"),
        &format!("{address}.rig"),
        2,
        Duration::from_secs(60),
    )
    .await
    .unwrap();
    assert!(report.accepted >= 2, "{report:?}");
    // Regtest's target is far easier than the share difficulty: every share was a block,
    // and the supervisor's Core took them.
    let client = minebox_node_rpc::NodeClient::new(
        &sup.view("btc").unwrap().rpc_url,
        minebox_node_rpc::Auth::CookieFile(dir.path().join("secrets/btc-rpc.cookie")),
    )
    .unwrap();
    assert!(client.get_blockchain_info().await.unwrap().blocks >= 2);

    let mut c = minebox_simminer::raw::Raw::connect(addr).await;
    c.handshake(&format!("{address}.watch")).await;
    let pid = sup.view("btc").unwrap().pid.unwrap();
    kill9(pid);
    let job =
        tokio::time::timeout(Duration::from_secs(60), c.notify()).await.expect("fresh work after the node came back");
    assert_eq!(job["method"], "mining.notify");
    assert!(sup.view("btc").unwrap().restarts >= 1);
    // Mining resumes: a share after the restart is a block the restarted Core takes.
    let height = client.get_blockchain_info().await.expect("the restarted node answers").blocks;
    let report = minebox_simminer::mine_shares(
        &format!("stratum+tcp://{addr}"),
        &format!("{address}.rig"),
        1,
        Duration::from_secs(60),
    )
    .await
    .unwrap();
    assert!(report.accepted >= 1, "{report:?}");
    let started = Instant::now();
    while client.get_blockchain_info().await.unwrap().blocks <= height {
        assert!(started.elapsed() < Duration::from_secs(30), "no block reached the restarted node");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    let _ = tokio::process::Command::new("kill").arg("-TERM").arg(stratum.id().unwrap().to_string()).status().await;
    let status =
        tokio::time::timeout(Duration::from_secs(20), stratum.wait()).await.expect("stratum stops on SIGTERM").unwrap();
    assert!(status.success(), "clean exit on SIGTERM: {status:?}");
    sup.stop().await;
    // The statistics were written on the way out.
    let store = minebox_stratum::store::Store::open(&dir.path().join("state.db")).unwrap();
    assert!(store.load_workers().unwrap().iter().any(|w| w.worker == format!("{address}.rig") && w.accepted >= 2));
}

fn kill9(pid: u32) {
    let _ = std::process::Command::new("kill").arg("-9").arg(pid.to_string()).status();
}
