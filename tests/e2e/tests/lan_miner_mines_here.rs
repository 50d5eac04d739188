//! "Mine on this box", end to end (issue 18): the status page finds a Bitaxe-class miner on
//! the LAN, points it at the box, the miner restarts onto the box's real stratum server, and
//! both the stratum server and the status page then show it mining there.
//!
//! A Bitaxe cannot run here, so the miner is a test double: `AxeosDouble` serves ESP-Miner's
//! published HTTP API (GET /api/system/info, PATCH /api/system, POST /api/system/restart)
//! and, like the firmware, on restart connects to its primary pool with a real Stratum V1
//! client (the simulated Bitaxe, minebox-simminer). Everything else is real: Bitcoin Core
//! regtest, the stratum server and the status service, in-process.
//!
//! The network is the test's own: two network namespaces joined by a veth pair on
//! 10.232.x.0/24, the box (node, stratum server, status service) in one, the miner in the
//! other; nothing is sent to an address outside them. Needs root and iproute2 (`ip netns`);
//! outside CI the test says SKIPPED without them.

use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::{get, patch, post};
use axum::{Json, Router};
use minebox_simminer::miner::{MinerConfig, Report};
use serde_json::{json, Value};
use std::net::{Ipv4Addr, SocketAddr};
use std::process::Command;
use std::sync::atomic::AtomicBool;
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// The box's stratum port for btc (a fresh namespace: nothing else listens there).
const STRATUM_PORT: u16 = 3333;

fn ip(args: &[&str]) {
    let out = Command::new("ip").args(args).output().expect("ip (iproute2)");
    assert!(out.status.success(), "ip {}: {}", args.join(" "), String::from_utf8_lossy(&out.stderr));
}

/// The test's two hosts, "box" (10.232.net.1) and "lan" (the miner, 10.232.net.50).
struct Hosts {
    box_ns: String,
    lan_ns: String,
    net: u8,
}

impl Hosts {
    fn new() -> Option<Hosts> {
        let root = Command::new("id").arg("-u").output().is_ok_and(|o| o.stdout.starts_with(b"0\n"));
        let have_ip = Command::new("ip").arg("-V").output().is_ok_and(|o| o.status.success());
        if !root || !have_ip {
            let msg = "the LAN miner e2e test needs root and iproute2 (ip netns)";
            if std::env::var("CI").is_ok_and(|v| v == "true") {
                panic!("{msg}");
            }
            eprintln!("SKIPPED: {msg}");
            return None;
        }
        let id = std::process::id();
        let hosts =
            Hosts { box_ns: format!("mbe-box-{id}"), lan_ns: format!("mbe-lan-{id}"), net: (id % 250) as u8 + 1 };
        ip(&["netns", "add", &hosts.box_ns]);
        ip(&["netns", "add", &hosts.lan_ns]);
        let (vb, vl) = (format!("mbeb{id}"), format!("mbel{id}"));
        ip(&["link", "add", &vb, "netns", &hosts.box_ns, "type", "veth", "peer", "name", &vl, "netns", &hosts.lan_ns]);
        for (ns, dev, addr) in [(&hosts.box_ns, &vb, hosts.box_ip()), (&hosts.lan_ns, &vl, hosts.miner_ip())] {
            ip(&["-n", ns, "link", "set", "lo", "up"]);
            ip(&["-n", ns, "link", "set", dev, "up"]);
            ip(&["-n", ns, "addr", "add", &format!("{addr}/24"), "dev", dev]);
        }
        Some(hosts)
    }

    fn box_ip(&self) -> Ipv4Addr {
        Ipv4Addr::new(10, 232, self.net, 1)
    }

    fn miner_ip(&self) -> Ipv4Addr {
        Ipv4Addr::new(10, 232, self.net, 50)
    }

    /// Runs `body` on a thread that lives in namespace `ns` (its sockets, threads and child
    /// processes are on that host's network).
    fn run_in<T: Send + 'static>(ns: &str, body: impl FnOnce() -> T + Send + 'static) -> std::thread::JoinHandle<T> {
        let path = format!("/run/netns/{ns}");
        std::thread::spawn(move || {
            let f = std::fs::File::open(&path).expect("the namespace file");
            nix::sched::setns(f, nix::sched::CloneFlags::CLONE_NEWNET).expect("setns");
            body()
        })
    }
}

impl Drop for Hosts {
    fn drop(&mut self) {
        for ns in [&self.box_ns, &self.lan_ns] {
            let _ = Command::new("ip").args(["netns", "del", ns]).status();
        }
    }
}

/// The Stratum client the double's "firmware" runs: what it saw, and its stop switch.
type Mining = (Arc<Mutex<Report>>, Arc<AtomicBool>);

/// AxeOS test double: one miner's settings, and the Stratum client its "firmware" runs.
#[derive(Clone)]
struct AxeosDouble {
    info: Arc<Mutex<Value>>,
    /// The Stratum client started at the last restart: what it saw, and its stop switch.
    mining: Arc<Mutex<Option<Mining>>>,
    restarts: Arc<Mutex<u32>>,
}

async fn info(State(d): State<AxeosDouble>) -> Json<Value> {
    Json(d.info.lock().unwrap().clone())
}

/// PATCH /api/system: the settings are stored (shown at once), used at the next restart.
async fn settings(State(d): State<AxeosDouble>, Json(body): Json<Value>) -> StatusCode {
    let mut info = d.info.lock().unwrap();
    for (k, v) in body.as_object().unwrap() {
        if !k.ends_with("Password") {
            info[k] = v.clone();
        }
    }
    StatusCode::OK
}

/// POST /api/system/restart: as the firmware comes back up, it connects to its primary pool.
async fn restart(State(d): State<AxeosDouble>) -> &'static str {
    *d.restarts.lock().unwrap() += 1;
    let (url, user) = {
        let i = d.info.lock().unwrap();
        (
            format!("{}:{}", i["stratumURL"].as_str().unwrap(), i["stratumPort"]),
            i["stratumUser"].as_str().unwrap().to_string(),
        )
    };
    let report = Arc::new(Mutex::new(Report::default()));
    let stop = Arc::new(AtomicBool::new(false));
    if let Some((_, old)) = d.mining.lock().unwrap().replace((report.clone(), stop.clone())) {
        old.store(true, std::sync::atomic::Ordering::SeqCst);
    }
    let config = MinerConfig { hashrate: Some(2e6), ..MinerConfig::bitaxe(&url, &user) };
    tokio::spawn(async move {
        if let Err(e) = minebox_simminer::miner::run(config, report, stop).await {
            eprintln!("the double's Stratum client stopped: {e}");
        }
    });
    "System will restart shortly."
}

impl AxeosDouble {
    fn new(hostname: &str) -> AxeosDouble {
        // The fields of ESP-Miner's SystemInfo the box reads, and a few it does not.
        let info = json!({
            "hostname": hostname, "hashRate": 1183.6, "temp": 58.25, "ASICModel": "BM1370", "boardVersion": "601",
            "stratumURL": "public-pool.io", "stratumPort": 21496, "stratumUser": "bc1qold.e2e",
            "fallbackStratumURL": "", "fallbackStratumPort": 3333, "fallbackStratumUser": "",
            "isUsingFallbackStratum": 0, "version": "v2.9.0", "frequency": 525, "sharesAccepted": 0
        });
        AxeosDouble { info: Arc::new(Mutex::new(info)), mining: Default::default(), restarts: Default::default() }
    }

    fn accepted(&self) -> u64 {
        self.mining.lock().unwrap().as_ref().map_or(0, |(r, _)| r.lock().unwrap().accepted)
    }

    async fn serve(self, at: Ipv4Addr, ready: std::sync::mpsc::Sender<()>, stop: tokio::sync::oneshot::Receiver<()>) {
        let listener = tokio::net::TcpListener::bind(SocketAddr::from((at, 80))).await.expect("port 80");
        let app = Router::new()
            .route("/api/system/info", get(info))
            .route("/api/system", patch(settings))
            .route("/api/system/restart", post(restart))
            .with_state(self.clone());
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        ready.send(()).unwrap();
        let _ = stop.await;
        if let Some((_, s)) = self.mining.lock().unwrap().take() {
            s.store(true, std::sync::atomic::Ordering::SeqCst);
        }
    }
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap()
}

#[test]
fn a_miner_pointed_here_restarts_onto_the_box_and_shows_up_mining() {
    let Some(hosts) = Hosts::new() else { return };
    let (box_ip, miner_ip) = (hosts.box_ip(), hosts.miner_ip());
    let double = AxeosDouble::new("bitaxe-e2e");
    let (stop, stopped) = tokio::sync::oneshot::channel();
    let (ready_tx, ready) = std::sync::mpsc::channel();
    let lan = {
        let d = double.clone();
        Hosts::run_in(&hosts.lan_ns, move || runtime().block_on(d.serve(miner_ip, ready_tx, stopped)))
    };
    ready.recv().unwrap();
    let d = double.clone();
    let outcome = Hosts::run_in(&hosts.box_ns, move || runtime().block_on(the_box(d, box_ip, miner_ip))).join();
    let _ = stop.send(());
    lan.join().unwrap();
    drop(hosts);
    outcome.unwrap();
}

async fn json_of(r: reqwest::RequestBuilder) -> (u16, Value) {
    let r = r.send().await.unwrap();
    let s = r.status().as_u16();
    (s, r.json().await.unwrap_or(Value::Null))
}

/// The box: Bitcoin Core regtest, the stratum server on the box's address, the status service.
async fn the_box(double: AxeosDouble, box_ip: Ipv4Addr, miner_ip: Ipv4Addr) {
    let node = minebox_regtest::Core::start().await.expect("Bitcoin Core starts (../shared/peers)");
    let dir = tempfile::tempdir().unwrap();
    let address = minebox_regtest::regtest_addresses()[3].0.clone();
    let network = minebox_coin::Registry::embedded().get("btc").unwrap().network("regtest").unwrap().clone();
    let stratum = minebox_stratum::service::start(minebox_stratum::service::ServiceConfig {
        coins: vec![minebox_stratum::service::CoinConfig {
            coin: "btc".into(),
            network: "regtest".into(),
            listen: SocketAddr::from((box_ip, STRATUM_PORT)),
            node: node.client(),
            zmq_hashblock: None,
            segwit: true,
            min_tx_size: 0,
            payouts: Box::new(minebox_stratum::payout::CoinPayouts(network)),
            vardiff: minebox_stratum::vardiff::VardiffConfig {
                start: 0.0001,
                min: 0.00001,
                max: 1e12,
                ..Default::default()
            },
            coinbase_tag: "/MineBox-e2e/".into(),
            extranonce2_len: 8,
            version_mask: 0x1fff_e000,
            template_refresh: Duration::from_secs(30),
            block_poll: Duration::from_millis(500),
            upstream: None,
            upstream_idle: Duration::from_secs(300),
            upstream_max_connections: minebox_stratum::upstream::DEFAULT_MAX_CONNECTIONS,
            upstream_grace: minebox_stratum::upstream::DEFAULT_GRACE,
        }],
        database: dir.path().join("state.db"),
        api_listen: "127.0.0.1:0".parse().unwrap(),
        stats_flush: Duration::from_millis(200),
        limits: Default::default(),
        supervisor_events: None,
    })
    .await
    .expect("the stratum server starts");

    let config = dir.path().join("minebox.toml");
    std::fs::write(
        &config,
        format!(
            "[supervisor]\nbackend = \"process\"\n[status]\napply = []\n[stratum]\napi = \"{}\"\n\
             [coins.btc]\nenabled = true\nnetwork = \"regtest\"\npayout_address = \"{address}\"\nstratum_port = {STRATUM_PORT}\n",
            stratum.api
        ),
    )
    .unwrap();
    let app = minebox_status::app::App::new(minebox_status::app::Options {
        config,
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
    let url = |p: &str| format!("{base}{p}");
    let admin = reqwest::Client::builder().cookie_store(true).no_proxy().build().unwrap();
    let (s, v) = json_of(admin.post(url("/api/v1/auth/setup")).json(&json!({"password": "correct horse"}))).await;
    assert_eq!(s, 201, "{v}");
    let csrf = v["csrf_token"].as_str().unwrap().to_string();

    // The admin scans (only the miner's address: no mDNS listen, nothing else asked) and
    // waits for the background scan to end.
    let scan = |range: String| {
        let (admin, csrf, url) = (admin.clone(), csrf.clone(), url("/api/v1/miners"));
        async move {
            let (s, v) = json_of(
                admin.post(format!("{url}/scan")).header("X-CSRF-Token", &csrf).json(&json!({ "range": range })),
            )
            .await;
            assert_eq!(s, 202, "{v}");
            // Bounded so a scan that never ends fails the test (one address: well under this).
            for _ in 0..600 {
                let (s, v) = json_of(admin.get(format!("{url}/found"))).await;
                assert_eq!(s, 200, "{v}");
                if v["scan"]["state"] == "done" {
                    return v["last_scan"]["found"][0].clone();
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            panic!("the scan of {range} never ended");
        }
    };
    let found = scan(format!("{miner_ip}/32")).await;
    assert_eq!(found["miner"]["pool"]["url"], "public-pool.io", "{found}");

    let (s, p) =
        json_of(admin.post(url(&format!("/api/v1/miners/{miner_ip}/point-here"))).header("X-CSRF-Token", &csrf)).await;
    assert_eq!(s, 200, "{p}");
    assert_eq!(*double.restarts.lock().unwrap(), 1);

    // The miner restarted onto the box: the stratum server (through the status page's API,
    // as the Miners page reads it) lists its worker connected, with accepted shares.
    let mut last = Value::Null;
    let mut worker = None;
    // Bounded so a miner that never connects fails the test (it connects within a second here).
    for _ in 0..600 {
        let (s, v) = json_of(admin.get(url("/api/v1/workers?coin=btc"))).await;
        assert_eq!(s, 200, "{v}");
        let w =
            v.as_array().unwrap().iter().find(|w| w["worker"].as_str().unwrap_or("").contains("bitaxe-e2e")).cloned();
        if let Some(w) = w.filter(|w| w["connections"].as_u64() >= Some(1) && w["accepted"].as_u64() >= Some(1)) {
            worker = Some(w);
            break;
        }
        last = v;
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let worker = worker.unwrap_or_else(|| panic!("the miner never showed up mining on the box; workers: {last}"));
    assert_eq!(worker["payout_address"], address, "{worker}");
    assert_eq!(worker["user_agent"], "bitaxe/BM1370", "{worker}");
    assert!(double.accepted() >= 1, "the miner's own count of accepted shares");
    // The stratum server's own API says the same.
    let direct: Value = reqwest::get(format!("http://{}/api/v1/stratum/workers?coin=btc", stratum.api))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert!(direct.as_array().unwrap().iter().any(|w| w["worker"] == worker["worker"]), "{direct}");

    // A new scan shows the miner's pool as the box (the page marks it "Mine on this box
    // again"), its old pool as its fallback.
    let found = scan(format!("{miner_ip}/32")).await;
    assert_eq!(
        found["miner"]["pool"],
        json!({"url": box_ip.to_string(), "port": STRATUM_PORT, "user": format!("{address}.bitaxe-e2e")})
    );
    assert_eq!(found["via"], box_ip.to_string());
    assert_eq!(found["miner"]["fallback"]["url"], "public-pool.io");
    stratum.stop().await;
}
