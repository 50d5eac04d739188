//! The supervisor running real regtest nodes under the process backend: Bitcoin Core (what
//! the box runs) with the config file the supervisor writes for it, and bcoin once, for its
//! own launch code (everything on the command line, the API key as the RPC password).

use minebox_coin::Registry;
use minebox_settings::Settings;
use minebox_supervisor::backend::{Backend, ProcessBackend};
use minebox_supervisor::event::Event;
use minebox_supervisor::health::NodeState;
use minebox_supervisor::keeper::Policy;
use minebox_supervisor::launch::{self, Phase};
use minebox_supervisor::Supervisor;
use minebox_test_support::free_port;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::time::{Duration, Instant};

/// The settings every test here starts from: the box's files under `dir`, nodes as processes.
fn box_toml(dir: &Path) -> String {
    format!(
        "[paths]\nnodes = \"{}\"\nsecrets = \"{}\"\nstate = \"{}\"\n[supervisor]\nbackend = \"process\"\n",
        dir.join("nodes").display(),
        dir.join("secrets").display(),
        dir.join("state.db").display()
    )
}

/// Settings for one Bitcoin Core regtest node in `dir`, with extra lines for the coin.
fn settings(dir: &Path, extra: &str) -> Settings {
    let node = format!(
        "node_flavour = \"bitcoin-core\"\nnode_command = [\"{}\"]\nzmq_port = {}\n",
        minebox_regtest::bitcoind_path().display(),
        free_port()
    );
    settings_for(dir, &node, extra)
}

/// Settings for one bcoin regtest node in `dir`.
fn bcoin_settings(dir: &Path) -> Settings {
    let node = format!(
        "node_flavour = \"bcoin\"\nnode_command = [\"node\", \"{}\"]\n",
        minebox_regtest::bcoin_path().display()
    );
    settings_for(dir, &node, "")
}

fn settings_for(dir: &Path, node: &str, extra: &str) -> Settings {
    let user = format!(
        r#"{base}
[coins.btc]
enabled = true
network = "regtest"
payout_address = "bcrt1qw508d6qejxtdg4y5r3zarvary0c5xw7kygt080"
{node}
rpc_port = {rpc}
p2p_port = {p2p}
{extra}
"#,
        base = box_toml(dir),
        rpc = free_port(),
        p2p = free_port(),
    );
    Settings::from_texts(
        "minebox.toml",
        &user,
        "defaults.toml",
        minebox_settings::EMBEDDED_DEFAULTS,
        &Registry::embedded(),
    )
    .unwrap()
}

fn quick_policy() -> Policy {
    Policy {
        health_every: Duration::from_millis(200),
        first_backoff: Duration::from_millis(200),
        max_backoff: Duration::from_secs(2),
        crash_loop_after: 3,
        crash_window: Duration::from_secs(60),
        stall_after: Duration::from_secs(600),
        disk_reserve_mib: 1,
        stop_grace: Duration::from_secs(20),
    }
}

async fn start(s: &Settings, policy: Policy) -> Supervisor {
    minebox_supervisor::start(s, Backend::Process(ProcessBackend), policy, "127.0.0.1:0".parse().unwrap())
        .await
        .unwrap()
}

async fn wait_state(sup: &Supervisor, want: NodeState, timeout: Duration) -> minebox_supervisor::keeper::NodeView {
    let started = Instant::now();
    loop {
        let v = sup.view("btc").unwrap();
        if v.state == want {
            return v;
        }
        assert!(started.elapsed() < timeout, "node never became {want:?}; it is {:?}: {}", v.state, v.detail);
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

fn alive(pid: u32) -> bool {
    minebox_platform::process::exists(pid)
}

#[tokio::test]
async fn starts_a_node_reaches_synced_and_restarts_it_after_kill_9() {
    let dir = tempfile::tempdir().unwrap();
    let s = settings(dir.path(), "");
    let cache = launch::dbcache_mib(s.coins["btc"].memory_budget_mib, Phase::Synced);
    starts_reaches_synced_and_restarts_after_kill_9(dir.path(), &s, "/Satoshi:", Some(cache)).await;
    // The node read the config file the supervisor wrote: its chain section, its ports.
    let conf = std::fs::read_to_string(dir.path().join("nodes/btc/minebox-node.conf")).unwrap();
    assert!(conf.lines().any(|l| l == "[regtest]"), "{conf}");
}

#[tokio::test]
async fn starts_a_bcoin_node_reaches_synced_and_restarts_it_after_kill_9() {
    let dir = tempfile::tempdir().unwrap();
    let s = bcoin_settings(dir.path());
    starts_reaches_synced_and_restarts_after_kill_9(dir.path(), &s, "bcoin", None).await;
}

/// Starts the node, checks it is healthy and reachable with the supervisor's secret, kills
/// it with SIGKILL, waits for the supervisor to restart it, and stops it cleanly. A node with
/// a cache (Core) is synced only once it runs with `cache_after_sync` MiB of it.
async fn starts_reaches_synced_and_restarts_after_kill_9(
    dir: &Path,
    s: &Settings,
    version: &str,
    cache_after_sync: Option<u64>,
) {
    let sup = start(s, quick_policy()).await;
    let mut events = sup.events.subscribe();
    let v = wait_state(&sup, NodeState::Synced, Duration::from_secs(60)).await;
    let first_pid = v.pid.unwrap();
    let health = v.health.unwrap();
    assert_eq!(health.chain, "regtest");
    assert!(health.version.contains(version), "{}", health.version);
    if let Some(cache) = cache_after_sync {
        // The node shown synced is the one restarted with the smaller cache, not the one
        // that synced with the large one (which the supervisor stops right after).
        let conf = std::fs::read_to_string(dir.join("nodes/btc/minebox-node.conf")).unwrap();
        assert!(conf.lines().any(|l| l == format!("dbcache={cache}")), "{conf}");
    }

    // The secret file is private and is what the node accepts.
    let secret = dir.join("secrets/btc-rpc.cookie");
    // Private to the supervisor's group (the stratum server and status page read it).
    assert_eq!(std::fs::metadata(&secret).unwrap().permissions().mode() & 0o777, 0o640);
    let client = minebox_node_rpc::NodeClient::new(&v.rpc_url, minebox_node_rpc::Auth::CookieFile(secret)).unwrap();
    assert_eq!(client.get_blockchain_info().await.unwrap().chain, "regtest");

    // kill -9: the supervisor notices, says so, and starts it again.
    minebox_platform::process::send(first_pid, minebox_platform::process::Signal::SIGKILL).unwrap();
    let v = wait_state(&sup, NodeState::Crashed, Duration::from_secs(10)).await;
    assert!(v.detail.contains("signal 9"), "{}", v.detail);
    let v = wait_state(&sup, NodeState::Synced, Duration::from_secs(60)).await;
    assert_ne!(v.pid.unwrap(), first_pid);
    assert_eq!(v.restarts, 1);
    let mut seen = Vec::new();
    while let Ok(e) = events.try_recv() {
        seen.push(e);
    }
    assert!(seen.iter().any(|e| matches!(e, Event::NodeCrashed { .. })), "{seen:?}");
    assert!(seen.iter().filter(|e| matches!(e, Event::NodeStarted { .. })).count() >= 1);
    // The restarted node takes the same secret.
    assert_eq!(client.get_blockchain_info().await.unwrap().chain, "regtest");

    // Shutdown stops the node cleanly (its stop RPC).
    let pid = v.pid.unwrap();
    sup.stop().await;
    assert!(!alive(pid), "node still running after the supervisor stopped");
}

#[tokio::test]
async fn a_broken_node_binary_is_surfaced_as_a_crash_loop() {
    let dir = tempfile::tempdir().unwrap();
    let mut s = settings(dir.path(), "");
    s.coins.get_mut("btc").unwrap().node_command =
        vec!["sh".into(), "-c".into(), "echo 'Error: corrupt database' >&2; exit 3".into()];
    let sup = start(&s, quick_policy()).await;
    let v = wait_state(&sup, NodeState::CrashLoop, Duration::from_secs(30)).await;
    assert!(v.detail.contains("crashed 3 times"), "{}", v.detail);
    assert!(v.detail.contains("exit code 3"), "{}", v.detail);
    // It stays down: no restarts behind the user's back.
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_eq!(sup.view("btc").unwrap().state, NodeState::CrashLoop);
    // A missing program is a crash loop too, with the reason.
    sup.stop().await;
    let dir = tempfile::tempdir().unwrap();
    let mut s = settings(dir.path(), "");
    s.coins.get_mut("btc").unwrap().node_command = vec!["/nonexistent/bitcoind".into()];
    let sup = start(&s, quick_policy()).await;
    let v = wait_state(&sup, NodeState::CrashLoop, Duration::from_secs(30)).await;
    assert!(v.detail.contains("cannot start /nonexistent/bitcoind"), "{}", v.detail);
    sup.stop().await;
}

#[tokio::test]
async fn the_api_lists_nodes_and_stops_and_starts_a_coin() {
    let dir = tempfile::tempdir().unwrap();
    let s = settings(dir.path(), "");
    let sup = start(&s, quick_policy()).await;
    wait_state(&sup, NodeState::Synced, Duration::from_secs(60)).await;
    let http = |method: &str, path: &str| {
        let addr = sup.api;
        let req = format!("{method} {path} HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\nConnection: close\r\n\r\n");
        async move {
            use tokio::io::{AsyncReadExt, AsyncWriteExt};
            let mut c = tokio::net::TcpStream::connect(addr).await.unwrap();
            c.write_all(req.as_bytes()).await.unwrap();
            let mut out = String::new();
            c.read_to_string(&mut out).await.unwrap();
            out
        }
    };
    let list = http("GET", "/api/v1/nodes").await;
    assert!(list.starts_with("HTTP/1.1 200"));
    assert!(list.contains("\"state\":\"synced\""), "{list}");
    assert!(
        !list.contains(
            &std::fs::read_to_string(dir.path().join("secrets/btc-rpc.cookie"))
                .unwrap()
                .split(':')
                .nth(1)
                .unwrap()
                .to_string()
        ),
        "secret leaked"
    );
    assert!(http("POST", "/api/v1/nodes/doge/stop").await.starts_with("HTTP/1.1 404"));
    let pid = sup.view("btc").unwrap().pid.unwrap();
    assert!(http("POST", "/api/v1/nodes/btc/stop").await.starts_with("HTTP/1.1 202"));
    wait_state(&sup, NodeState::Stopped, Duration::from_secs(30)).await;
    assert!(!alive(pid));
    assert!(http("POST", "/api/v1/nodes/btc/start").await.starts_with("HTTP/1.1 202"));
    wait_state(&sup, NodeState::Synced, Duration::from_secs(60)).await;
    sup.stop().await;
}

#[tokio::test]
async fn an_external_node_is_watched_but_never_started_or_stopped() {
    let dir = tempfile::tempdir().unwrap();
    // Someone else's node: a real Bitcoin Core this test runs, with a chain of 2 blocks.
    let mut node = minebox_regtest::Core::start().await.unwrap();
    node.generate_to_address(2, &minebox_regtest::core_p2wpkh_address([3; 20])).await.unwrap();
    let port = node.rpc_port();
    let cookie = dir.path().join("their-node.cookie");
    std::fs::write(&cookie, format!("{}:{}", node.rpc_user(), node.rpc_password())).unwrap();
    let user = format!(
        r#"{base}
[coins.btc]
enabled = true
network = "regtest"
payout_address = "bcrt1qw508d6qejxtdg4y5r3zarvary0c5xw7kygt080"
node = "external"
node_flavour = "bitcoin-core"
rpc_host = "127.0.0.1"
rpc_port = {port}
rpc_cookie = "{cookie}"
"#,
        base = box_toml(dir.path()),
        cookie = cookie.display(),
    );
    let s = Settings::from_texts(
        "minebox.toml",
        &user,
        "defaults.toml",
        minebox_settings::EMBEDDED_DEFAULTS,
        &Registry::embedded(),
    )
    .unwrap();
    let sup = start(&s, quick_policy()).await;
    let v = wait_state(&sup, NodeState::Synced, Duration::from_secs(60)).await;
    assert_eq!(v.backend, "external");
    assert_eq!(v.pid, None);
    assert_eq!(v.health.as_ref().unwrap().blocks, 2);
    assert_eq!(v.credentials_file, cookie);
    assert!(!dir.path().join("nodes/btc").exists(), "no data directory for a node MineBox does not run");
    assert!(!dir.path().join("secrets/btc-rpc.cookie").exists(), "no credentials made for someone else's node");

    // Its height is followed; a stop request does not touch it.
    node.generate_to_address(1, &minebox_regtest::core_p2wpkh_address([3; 20])).await.unwrap();
    let started = Instant::now();
    while sup.view("btc").unwrap().health.unwrap().blocks != 3 {
        assert!(started.elapsed() < Duration::from_secs(30), "height not followed");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let node_pid = node.pid().unwrap();
    sup.stop().await;
    assert!(alive(node_pid), "the supervisor stopped a node it does not own");
    assert!(node.client().get_blockchain_info().await.is_ok());

    // The node goes away: reported as waiting for its RPC, never restarted by the supervisor.
    let sup = start(&s, quick_policy()).await;
    wait_state(&sup, NodeState::Synced, Duration::from_secs(60)).await;
    node.stop().await;
    let v = wait_state(&sup, NodeState::Starting, Duration::from_secs(30)).await;
    assert!(v.detail.contains("RPC"), "{}", v.detail);
    assert_eq!(sup.view("btc").unwrap().pid, None);
    sup.stop().await;
}

/// MiB free for unprivileged writers on the filesystem holding `path`.
fn free_mib(path: &Path) -> u64 {
    // The supervisor's own measure (minebox-platform; the crate no longer depends on libc).
    let free = minebox_platform::fs::free_space(path).unwrap_or_else(|e| panic!("statvfs {}: {e}", path.display()));
    free / (1024 * 1024)
}

/// A small real filesystem the test can fill (needs root, as CI has).
struct Tmpfs(std::path::PathBuf);

impl Tmpfs {
    fn mount(path: &Path, mib: u64) -> Tmpfs {
        std::fs::create_dir_all(path).unwrap();
        let ok = std::process::Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={mib}m"), "tmpfs"])
            .arg(path)
            .status()
            .map(|s| s.success())
            .unwrap_or(false);
        assert!(ok, "this test mounts a small tmpfs to fill it; it needs root");
        Tmpfs(path.to_path_buf())
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = std::process::Command::new("umount").arg("-l").arg(&self.0).status();
    }
}

#[tokio::test]
async fn a_filling_disk_stops_the_node_cleanly_and_it_comes_back_with_its_chain() {
    let dir = tempfile::tempdir().unwrap();
    let nodes = dir.path().join("nodes");
    let _fs = Tmpfs::mount(&nodes, 300);
    let s = settings(dir.path(), "");
    let policy = Policy { disk_reserve_mib: 128, ..quick_policy() };
    let sup = start(&s, policy).await;
    let v = wait_state(&sup, NodeState::Synced, Duration::from_secs(60)).await;
    let client = minebox_node_rpc::NodeClient::new(
        &v.rpc_url,
        minebox_node_rpc::Auth::CookieFile(dir.path().join("secrets/btc-rpc.cookie")),
    )
    .unwrap();
    client.generate_to_address(3, &minebox_regtest::core_p2wpkh_address([9; 20])).await.unwrap();
    let pid = v.pid.unwrap();

    // Something else fills the disk until less than the reserve is free, but not past the
    // 50 MiB Bitcoin Core itself needs to write its chain state on the way down: the reserve
    // is there so the node is stopped before that (jumping past it, Core can only give up
    // with "Disk space is too low!" and loses the blocks it had not flushed).
    let filler = nodes.join("filler");
    let leave_free_mib = 96;
    std::fs::write(&filler, vec![0u8; ((free_mib(&nodes) - leave_free_mib) << 20) as usize]).unwrap();
    let v = wait_state(&sup, NodeState::StoppedForDisk, Duration::from_secs(30)).await;
    assert!(v.detail.contains("below the 128 MiB reserve"), "{}", v.detail);
    assert!(!alive(pid), "node must be stopped");

    // Space freed, coin started again: the node comes back with its blocks.
    std::fs::remove_file(&filler).unwrap();
    let http = "POST /api/v1/nodes/btc/start HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\nConnection: close\r\n\r\n";
    {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let mut c = tokio::net::TcpStream::connect(sup.api).await.unwrap();
        c.write_all(http.as_bytes()).await.unwrap();
        let mut out = String::new();
        c.read_to_string(&mut out).await.unwrap();
        assert!(out.starts_with("HTTP/1.1 202"), "{out}");
    }
    let v = wait_state(&sup, NodeState::Synced, Duration::from_secs(60)).await;
    assert_eq!(v.health.unwrap().blocks, 3, "chain kept across the disk stop");
    sup.stop().await;
}

#[test]
fn the_binary_refuses_to_start_on_a_wrong_setting() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("minebox.toml");
    std::fs::write(&cfg, "[coins.btc]\nenabled = true\nnetwork = \"regtest\"\npayout_address = \"bc1qw508d6qejxtdg4y5r3zarvary0c5xw7kv8f3t4\"\n").unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_minebox-supervisor"))
        .arg("--config")
        .arg(&cfg)
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains(&format!("{}: coins.btc.payout_address", cfg.display())), "{err}");
    assert!(err.contains("Bitcoin mainnet address"), "{err}");
}
