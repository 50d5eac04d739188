//! "Miners on your network": the status service scans its own subnet for AxeOS miners and,
//! on the admin's click, points one at the box. Bitaxes cannot run here, so the miners are
//! a test double: `AxeosStandIn`, an HTTP server written from ESP-Miner's published API
//! description (docs/openapi.yaml in ESP-Miner: GET /api/system/info, PATCH /api/system,
//! POST /api/system/restart), which records every request it gets.
//!
//! The network is real and private to the test: two network namespaces joined by a veth
//! pair on a /23 of 10.231.x.0. The box (the status service and its scan) runs in one, the
//! stand-ins listen on several addresses in the other; one of them, outside the /24 the
//! scan covers, announces itself over mDNS as ESP-Miner does (with mdns-sd). The box's namespace has no other
//! interface, so nothing the scan sends can leave the test's own hosts.
//!
//! Needs root and iproute2 (`ip netns`); outside CI the test says SKIPPED without them.

use axum::extract::State;
use axum::http::{Method, StatusCode};
use axum::routing::{get, patch, post};
use axum::{Json, Router};
use minebox_status::app::{App, Options};
use serde_json::{json, Value};
use std::collections::HashMap;
use std::net::{Ipv4Addr, SocketAddr};
use std::process::Command;
use std::sync::{Arc, Mutex};
use std::time::Duration;

const ADDR: &str = "bcrt1qw508d6qejxtdg4y5r3zarvary0c5xw7kygt080";
const STRATUM_PORT: u16 = 3999;
/// A second coin the box mines (Bitcoin Cash regtest takes legacy base58 addresses too).
const BCH_ADDR: &str = "mipcBbFg9gMiCh81Kj8tqqdgoZub1ZJRfn";
const BCH_PORT: u16 = 3998;

/// Runs `ip` with `args`; a failure stops the test with what `ip` said.
fn ip(args: &[&str]) {
    let out = Command::new("ip").args(args).output().expect("ip (iproute2)");
    assert!(out.status.success(), "ip {}: {}", args.join(" "), String::from_utf8_lossy(&out.stderr));
}

/// The test's two hosts: "box" and "lan", joined by a veth pair on 10.231.`net`.0/24.
struct Hosts {
    box_ns: String,
    lan_ns: String,
    net: u8,
}

impl Hosts {
    fn new(miners: &[u8]) -> Option<Hosts> {
        let root = Command::new("id").arg("-u").output().is_ok_and(|o| o.stdout.starts_with(b"0\n"));
        let have_ip = Command::new("ip").arg("-V").output().is_ok_and(|o| o.status.success());
        if !root || !have_ip {
            let msg = "the LAN miner test needs root and iproute2 (ip netns)";
            if std::env::var("CI").is_ok_and(|v| v == "true") {
                panic!("{msg}");
            }
            eprintln!("SKIPPED: {msg}");
            return None;
        }
        let id = std::process::id();
        // An even third octet: the box's subnet is the /23 10.231.net.0 - 10.231.(net+1).255.
        let net = ((id % 120) * 2 + 2) as u8;
        let hosts = Hosts { box_ns: format!("mbx-box-{id}"), lan_ns: format!("mbx-lan-{id}"), net };
        ip(&["netns", "add", &hosts.box_ns]);
        ip(&["netns", "add", &hosts.lan_ns]);
        let (vb, vl) = (format!("mbb{id}"), format!("mbl{id}"));
        ip(&["link", "add", &vb, "netns", &hosts.box_ns, "type", "veth", "peer", "name", &vl, "netns", &hosts.lan_ns]);
        for (ns, dev) in [(&hosts.box_ns, &vb), (&hosts.lan_ns, &vl)] {
            ip(&["-n", ns, "link", "set", "lo", "up"]);
            ip(&["-n", ns, "link", "set", dev, "up"]);
        }
        ip(&["-n", &hosts.box_ns, "addr", "add", &format!("10.231.{net}.1/23"), "dev", &vb]);
        for m in miners.iter().map(|m| hosts.addr(*m)).chain([hosts.far()]) {
            ip(&["-n", &hosts.lan_ns, "addr", "add", &format!("{m}/23"), "dev", &vl]);
        }
        Some(hosts)
    }

    fn addr(&self, host: u8) -> Ipv4Addr {
        Ipv4Addr::new(10, 231, self.net, host)
    }

    /// A host on the box's /23 but outside the /24 around the box that a scan asks.
    fn far(&self) -> Ipv4Addr {
        Ipv4Addr::new(10, 231, self.net + 1, 20)
    }

    /// Runs `body` on a thread of its own that lives in namespace `ns`: every socket it
    /// (and its runtime's threads) opens is on that host's network.
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
        // Deleting a namespace deletes its end of the veth pair, and with it the other end.
        for ns in [&self.box_ns, &self.lan_ns] {
            let _ = Command::new("ip").args(["netns", "del", ns]).status();
        }
    }
}

/// How one stand-in behaves.
#[derive(Clone)]
enum Kind {
    /// Answers as ESP-Miner does.
    Miner,
    /// Answers /api/system/info with a web page (a router's login, say).
    Garbage,
    /// Accepts the connection and never answers.
    Slow,
    /// Answers with a JSON string of a megabyte (a broken or hostile device).
    Huge,
}

/// One request a stand-in got.
#[derive(Debug, Clone)]
struct Seen {
    to: Ipv4Addr,
    method: Method,
    path: String,
    body: Value,
}

/// AxeOS stand-in (a test double): the settings of each miner by address, and every
/// request any of them got.
#[derive(Clone, Default)]
struct AxeosStandIn {
    miners: Arc<Mutex<HashMap<Ipv4Addr, Value>>>,
    kinds: Arc<Mutex<HashMap<Ipv4Addr, Kind>>>,
    seen: Arc<Mutex<Vec<Seen>>>,
}

impl AxeosStandIn {
    fn seen(&self) -> Vec<Seen> {
        self.seen.lock().unwrap().clone()
    }

    fn info(&self, ip: Ipv4Addr) -> Value {
        self.miners.lock().unwrap()[&ip].clone()
    }

    fn record(&self, to: SocketAddr, method: Method, path: &str, body: Value) -> Ipv4Addr {
        let SocketAddr::V4(to) = to else { panic!("IPv4 only") };
        self.seen.lock().unwrap().push(Seen { to: *to.ip(), method, path: path.into(), body });
        *to.ip()
    }
}

/// The fields of ESP-Miner's SystemInfo schema a Bitaxe Gamma would send (and a few the
/// box does not read, as a real one sends them).
fn bitaxe(hostname: &str, asic: &str, board: &str, url: &str, port: u16, user: &str, fallback: (&str, u16)) -> Value {
    let mut info = json!({
        "power": 17.2, "voltage": 5100, "current": 3300, "temp": 58.25, "vrTemp": 49,
        "maxPower": 25, "nominalVoltage": 5, "hashRate": 1183.6, "bestDiff": "4.29G",
        "bestSessionDiff": "12.1M", "stratumDiff": 1000, "isUsingFallbackStratum": 0,
        "isPSRAMAvailable": 1, "freeHeap": 8_000_000, "coreVoltage": 1150, "coreVoltageActual": 1140,
        "frequency": 525, "ssid": "home", "macAddr": "AA:BB:CC:DD:EE:FF", "hostname": hostname,
        "wifiStatus": "Connected!", "wifiRSSI": -51, "apEnabled": 0, "sharesAccepted": 1234,
        "sharesRejected": 3, "sharesRejectedReasons": [{"message": "Job not found", "count": 3}],
    });
    let more = json!({
        "uptimeSeconds": 86_400, "asicCount": 1, "smallCoreCount": 2040, "ASICModel": asic,
        "boardVersion": board, "stratumURL": url, "stratumPort": port, "stratumUser": user,
        "fallbackStratumURL": fallback.0, "fallbackStratumPort": fallback.1,
        "fallbackStratumUser": user, "version": "v2.9.0", "idfVersion": "v5.4",
        "runningPartition": "factory", "overheat_mode": 0, "overclockEnabled": 0, "flipscreen": 1,
        "invertscreen": 0, "autofanspeed": 1, "fanspeed": 60, "temptarget": 60, "fanrpm": 4100
    });
    info.as_object_mut().unwrap().extend(more.as_object().unwrap().clone());
    info
}

async fn system_info(
    State(s): State<AxeosStandIn>,
    axum::extract::Extension(me): axum::extract::Extension<SocketAddr>,
) -> axum::response::Response {
    use axum::response::IntoResponse;
    let ip = s.record(me, Method::GET, "/api/system/info", Value::Null);
    let kind = s.kinds.lock().unwrap()[&ip].clone();
    match kind {
        Kind::Miner => Json(s.info(ip)).into_response(),
        Kind::Garbage => ([("content-type", "text/html")], "<html><body>Router login</body></html>").into_response(),
        Kind::Slow => std::future::pending().await,
        Kind::Huge => Json(json!({ "hostname": "x".repeat(1 << 20) })).into_response(),
    }
}

/// PATCH /api/system: ESP-Miner stores each given setting and answers 200; the pool
/// settings take effect at the next restart, /api/system/info shows them at once.
async fn system_patch(
    State(s): State<AxeosStandIn>,
    axum::extract::Extension(me): axum::extract::Extension<SocketAddr>,
    Json(body): Json<Value>,
) -> StatusCode {
    let ip = s.record(me, Method::PATCH, "/api/system", body.clone());
    let mut miners = s.miners.lock().unwrap();
    let Some(info) = miners.get_mut(&ip) else { return StatusCode::INTERNAL_SERVER_ERROR };
    for (k, v) in body.as_object().unwrap() {
        if !k.ends_with("Password") {
            info[k] = v.clone();
        }
    }
    StatusCode::OK
}

async fn system_restart(
    State(s): State<AxeosStandIn>,
    axum::extract::Extension(me): axum::extract::Extension<SocketAddr>,
) -> &'static str {
    s.record(me, Method::POST, "/api/system/restart", Value::Null);
    "System will restart shortly."
}

impl AxeosStandIn {
    /// Serves every stand-in on port 80 of its address (says so on `ready`) until `stop`.
    async fn serve(self, ready: std::sync::mpsc::Sender<()>, stop: tokio::sync::oneshot::Receiver<()>) {
        let addrs: Vec<Ipv4Addr> = self.kinds.lock().unwrap().keys().copied().collect();
        for ip in addrs {
            let me = SocketAddr::from((ip, 80));
            let listener = tokio::net::TcpListener::bind(me).await.expect("port 80 in the test's namespace");
            let app = Router::new()
                .route("/api/system/info", get(system_info))
                .route("/api/system", patch(system_patch))
                .route("/api/system/restart", post(system_restart))
                .layer(axum::Extension(me))
                .with_state(self.clone());
            tokio::spawn(async move {
                axum::serve(listener, app).await.unwrap();
            });
        }
        ready.send(()).unwrap();
        let _ = stop.await;
    }
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap()
}

async fn json_of(r: reqwest::RequestBuilder) -> (StatusCode, Value) {
    let r = r.send().await.unwrap();
    let s = StatusCode::from_u16(r.status().as_u16()).unwrap();
    (s, r.json().await.unwrap_or(Value::Null))
}

#[test]
fn scan_lists_the_miners_and_mine_on_this_box_points_one_here_keeping_its_pool() {
    // .10 and .11: miners; .12 answers garbage, .13 never answers, .15 answers a megabyte;
    // .14 has no web server.
    let Some(hosts) = Hosts::new(&[10, 11, 12, 13, 14, 15]) else { return };
    let box_ip = hosts.addr(1);
    let (gamma, supra, garbage, slow, silent) =
        (hosts.addr(10), hosts.addr(11), hosts.addr(12), hosts.addr(13), hosts.addr(14));
    let huge = hosts.addr(15);
    // Announces itself over mDNS as ESP-Miner does; the subnet scan alone would miss it.
    let far = hosts.far();
    let stand_in = AxeosStandIn::default();
    {
        let mut m = stand_in.miners.lock().unwrap();
        m.insert(
            gamma,
            bitaxe(
                "bitaxe-gamma",
                "BM1370",
                "601",
                "public-pool.io",
                21496,
                "bc1qold.gamma",
                ("solo.ckpool.org", 3333),
            ),
        );
        m.insert(far, bitaxe("bitaxe-far", "BM1370", "601", "public-pool.io", 21496, "bc1qold.far", ("", 0)));
        m.insert(supra, bitaxe("supra.kitchen", "BM1368", "401", "solo.ckpool.org", 3333, "bc1qold.supra", ("", 3333)));
        let mut k = stand_in.kinds.lock().unwrap();
        k.extend([
            (gamma, Kind::Miner),
            (supra, Kind::Miner),
            (garbage, Kind::Garbage),
            (slow, Kind::Slow),
            (huge, Kind::Huge),
            (far, Kind::Miner),
        ]);
    }
    let (stop, stopped) = tokio::sync::oneshot::channel();
    let (ready_tx, ready) = std::sync::mpsc::channel();
    let lan = {
        let s = stand_in.clone();
        Hosts::run_in(&hosts.lan_ns, move || runtime().block_on(s.serve(ready_tx, stopped)))
    };
    ready.recv().unwrap();
    // The far miner's mDNS responder (a test double of ESP-Miner's), on a thread of its own. In
    // this namespace of seven addresses on one interface, mdns-sd's responder now and then never
    // answered the box's queries for a whole run (the box's own browse is the product's code and
    // hears any answer or announcement), so the double also announces itself again every second
    // (mdns-sd sends an announcement at each registration) until the box is done.
    let (reannounce, done) = std::sync::mpsc::channel::<()>();
    let responder = Hosts::run_in(&hosts.lan_ns, move || {
        let mdns = mdns_sd::ServiceDaemon::new().expect("mDNS daemon");
        announce(&mdns, far);
        while let Err(std::sync::mpsc::RecvTimeoutError::Timeout) = done.recv_timeout(Duration::from_secs(1)) {
            announce(&mdns, far);
        }
        let _ = mdns.shutdown();
    });

    let s = stand_in.clone();
    let outcome = Hosts::run_in(&hosts.box_ns, move || {
        runtime().block_on(the_box(s, box_ip, [gamma, supra, garbage, slow, silent, huge, far], reannounce))
    });
    let outcome = outcome.join();
    let _ = stop.send(());
    lan.join().unwrap();
    responder.join().unwrap();
    drop(hosts);
    outcome.unwrap();
}

/// The status service on the box host, and what a user does on its page.
async fn the_box(
    stand_in: AxeosStandIn,
    box_ip: Ipv4Addr,
    [gamma, supra, garbage, slow, silent, huge, far]: [Ipv4Addr; 7],
    // Dropped when the box is done: the far miner's responder stops then.
    _responder: std::sync::mpsc::Sender<()>,
) {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("minebox.toml");
    std::fs::write(
        &config,
        format!(
            "[supervisor]\nbackend = \"process\"\n[status]\napply = []\n\
             [coins.btc]\nenabled = true\nnetwork = \"regtest\"\npayout_address = \"{ADDR}\"\nstratum_port = {STRATUM_PORT}\n\
             [coins.bch]\nenabled = true\nnetwork = \"regtest\"\npayout_address = \"{BCH_ADDR}\"\nstratum_port = {BCH_PORT}\n"
        ),
    )
    .unwrap();
    let options = || Options {
        config: config.clone(),
        defaults: None,
        registry: minebox_coin::Registry::embedded(),
        accounts: Some(dir.path().join("secrets/accounts")),
        data_dir: Some(dir.path().to_path_buf()),
    };
    let report_file = dir.path().join(minebox_status::discovery::REPORT_FILE);
    let mut app = App::new(options()).unwrap();
    // The stand-in that never answers is given up on after this; the rest answer at once, but on
    // a loaded 2-core machine "at once" took over 2 s for the megabyte one (the box's defaults
    // are 1.5 s and 4 s): room enough that only the silent one runs out.
    app.lan.client = minebox_status::axeos::Client::new(Duration::from_secs(2), Duration::from_secs(6));
    // Two or three of the responder's announcements fall into the scan's browse even when the
    // machine is busy (the box's default window is 3 s).
    app.lan.mdns_window = Duration::from_secs(6);
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
    let (s, _) = json_of(
        admin
            .post(url("/api/v1/users"))
            .header("X-CSRF-Token", &csrf)
            .json(&json!({"name": "viewer", "role": "viewer", "password": "just looking"})),
    )
    .await;
    assert_eq!(s, 201);
    let viewer = reqwest::Client::builder().cookie_store(true).no_proxy().build().unwrap();
    let (s, v) =
        json_of(viewer.post(url("/api/v1/auth/login")).json(&json!({"user": "viewer", "password": "just looking"})))
            .await;
    assert_eq!(s, 200);
    let vcsrf = v["csrf_token"].as_str().unwrap().to_string();

    // Before any scan: nothing found, nothing asked; the two coins a miner can be pointed at.
    let (s, v) = json_of(viewer.get(url("/api/v1/miners/found"))).await;
    assert_eq!((s, &v["last_scan"]), (StatusCode::OK, &Value::Null));
    let coins: Vec<(&str, u64, &str)> = v["coins"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| {
            (c["id"].as_str().unwrap(), c["stratum_port"].as_u64().unwrap(), c["payout_address"].as_str().unwrap())
        })
        .collect();
    assert_eq!(coins, [("bch", u64::from(BCH_PORT), BCH_ADDR), ("btc", u64::from(STRATUM_PORT), ADDR)]);

    // The viewer may look but neither scan nor change a miner.
    let (s, v) = json_of(viewer.post(url("/api/v1/miners/scan")).header("X-CSRF-Token", &vcsrf)).await;
    assert_eq!(s, 403, "{v}");
    let (s, _) =
        json_of(viewer.post(url(&format!("/api/v1/miners/{gamma}/point-here"))).header("X-CSRF-Token", &vcsrf)).await;
    assert_eq!(s, 403);

    // A range that is not the box's own network is refused before anything is sent.
    for range in ["8.8.8.0/24", "10.231.0.0/16", "192.168.1.0/24"] {
        let (s, v) = json_of(
            admin.post(url("/api/v1/miners/scan")).header("X-CSRF-Token", &csrf).json(&json!({ "range": range })),
        )
        .await;
        assert_eq!(s, 422, "{range}: {v}");
        let e = v["error"].as_str().unwrap();
        assert!(e.contains("is not on this box's own network") && e.contains(&format!("{}/23", net0(box_ip))), "{e}");
    }
    let (s, v) =
        json_of(admin.post(url("/api/v1/miners/scan")).header("X-CSRF-Token", &csrf).json(&json!({"range": "lan"})))
            .await;
    assert_eq!(s, 422, "{v}");
    assert!(stand_in.seen().is_empty(), "refused scans send nothing: {:?}", stand_in.seen());

    // Wait until the box's namespace hears the far miner's mDNS responder (a readiness wait, not
    // the assertion: that is the scan's report below).
    let mut heard = false;
    for _ in 0..20 {
        let far_heard = tokio::task::spawn_blocking(move || {
            minebox_status::discovery::mdns_browse(Duration::from_secs(2)).contains(&far)
        });
        if far_heard.await.unwrap() {
            heard = true;
            break;
        }
    }
    assert!(heard, "the far miner's mDNS announcement never reached the box's namespace");

    // The scan: the /24 around the box on its /23, and what announces itself over mDNS. mDNS is
    // UDP multicast, best effort: on this loaded machine a scan's browse now and then heard no
    // answer even with the responder up, as a user on a busy LAN may see once and scan again.
    // So: up to five scans for one that heard it; each asks every host once.
    // The scan runs in the background: the request answers at once, the page polls.
    let mut scans = 0;
    let report = loop {
        let (s, started) = json_of(admin.post(url("/api/v1/miners/scan")).header("X-CSRF-Token", &csrf)).await;
        assert_eq!(s, 202, "{started}");
        scans += 1;
        assert_eq!((started["id"].as_u64(), &started["state"]), (Some(scans as u64), &json!("running")), "{started}");
        if scans == 1 {
            // One at a time (the scan listens to mDNS for seconds before it asks anyone), and
            // nothing is written while it runs.
            let (s, v) = json_of(admin.post(url("/api/v1/miners/scan")).header("X-CSRF-Token", &csrf)).await;
            assert_eq!(s, 409, "{v}");
            assert!(v["error"].as_str().unwrap().starts_with("a scan is running already ("), "{v}");
            assert!(!report_file.exists(), "the report is written when the scan ends, not before");
        }
        let mut polls = 0;
        let report = loop {
            polls += 1;
            // Bounded so a scan that never ends fails the test (a scan here takes seconds).
            assert!(polls < 1500, "scan {scans} never ended");
            let (s, v) = json_of(viewer.get(url("/api/v1/miners/found"))).await;
            assert_eq!(s, 200, "{v}");
            assert_eq!(v["scan"]["id"].as_u64(), Some(scans as u64), "{v}");
            if v["scan"]["state"] == "done" {
                assert_eq!(v["scan"]["asked"], v["scan"]["addresses"], "{v}");
                break v["last_scan"].clone();
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        };
        if report["mdns_announced"] != json!([]) || scans == 5 {
            break report;
        }
    };
    assert_eq!(report["addresses_asked"], 255, "a /24 without the box and the /23's network address, and the far one");
    assert_eq!(report["mdns_announced"], json!([far.to_string()]));
    assert_eq!(report["networks"].as_array().unwrap().len(), 1);
    assert!(report["networks"][0].as_str().unwrap().starts_with(&format!("{}/23 on mbb", net0(box_ip))), "{report}");
    let found = report["found"].as_array().unwrap();
    let ips: Vec<&str> = found.iter().map(|f| f["ip"].as_str().unwrap()).collect();
    let expect = [gamma, supra, far, garbage, slow, huge].map(|i| i.to_string());
    assert_eq!(ips, expect, "miners first, then the unreadable; {silent} has no web server and is not listed");
    let g = &found[0]["miner"];
    assert_eq!(g["hostname"], "bitaxe-gamma");
    assert_eq!(g["model"], "601 (BM1370)");
    assert_eq!(g["hashrate_ghs"], 1183.6);
    assert_eq!(g["temperature_c"], 58.25);
    assert_eq!(g["pool"], json!({"url": "public-pool.io", "port": 21496, "user": "bc1qold.gamma"}));
    assert_eq!(found[0]["via"], box_ip.to_string());
    assert_eq!(found[1]["miner"]["hostname"], "supra.kitchen");
    assert_eq!(found[1]["miner"]["fallback"], Value::Null, "its fallback URL is empty");
    assert_eq!(found[2]["miner"]["hostname"], "bitaxe-far");
    let garbage_error = found[3]["error"].as_str().unwrap();
    assert!(garbage_error.contains("answered /api/system/info, but not as AxeOS does"), "{garbage_error}");
    assert!(found[4]["error"].as_str().unwrap().contains("answered too slowly"), "{}", found[4]);
    assert!(found[5]["error"].as_str().unwrap().contains("an answer over 64 KiB"), "{}", found[5]);
    assert!(found[3..].iter().all(|f| f["miner"].is_null()));

    // A scan asks and changes nothing.
    let seen = stand_in.seen();
    assert!(seen.iter().all(|r| r.method == Method::GET && r.path == "/api/system/info"), "{seen:?}");
    assert_eq!(seen.iter().filter(|r| r.to == gamma).count(), scans, "once per scan");

    // The viewer sees the same list, and it is on the data partition, for after a restart.
    let (s, v) = json_of(viewer.get(url("/api/v1/miners/found"))).await;
    assert_eq!((s, &v["last_scan"]), (StatusCode::OK, &report));
    let on_disk: Value = serde_json::from_slice(&std::fs::read(&report_file).unwrap()).unwrap();
    assert_eq!(on_disk, report);
    // A restarted status service shows the last scan, with its time, and no scan running.
    let again = App::new(options()).unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base2 = format!("http://{}", listener.local_addr().unwrap());
    let (_stop2, rx2) = tokio::sync::oneshot::channel::<()>();
    tokio::spawn(minebox_status::serve(Arc::new(again), listener, async move {
        let _ = rx2.await;
    }));
    let viewer2 = reqwest::Client::builder().cookie_store(true).no_proxy().build().unwrap();
    let (s, _) = json_of(
        viewer2.post(format!("{base2}/api/v1/auth/login")).json(&json!({"user": "viewer", "password": "just looking"})),
    )
    .await;
    assert_eq!(s, 200);
    let (s, v) = json_of(viewer2.get(format!("{base2}/api/v1/miners/found"))).await;
    assert_eq!((s, &v["last_scan"], &v["scan"]), (StatusCode::OK, &report, &Value::Null));
    assert!(report["finished_at"].as_i64().unwrap() > 1_700_000_000, "{report}");

    // With two coins the box must be told which one; a coin it does not mine is refused.
    // Neither sends the miner anything.
    let point = |ip: Ipv4Addr, coin: Option<&str>| {
        let r = admin.post(url(&format!("/api/v1/miners/{ip}/point-here"))).header("X-CSRF-Token", &csrf);
        json_of(match coin {
            Some(c) => r.json(&json!({ "coin": c })),
            None => r,
        })
    };
    let before = stand_in.seen().len();
    let (s, v) = point(gamma, None).await;
    assert_eq!(s, 422, "{v}");
    assert_eq!(v["error"], "this box mines bch, btc; say which coin (\"coin\")");
    let (s, v) = point(gamma, Some("ltc")).await;
    assert_eq!(s, 422, "{v}");
    assert!(v["error"].as_str().unwrap().starts_with("the box does not mine \"ltc\""), "{v}");
    assert_eq!(stand_in.seen().len(), before, "nothing sent");

    // The far miner on Bitcoin Cash: that coin's port and payout address.
    let (s, p) = point(far, Some("bch")).await;
    assert_eq!(s, 200, "{p}");
    assert_eq!(
        p["pool"],
        json!({"url": box_ip.to_string(), "port": BCH_PORT, "user": format!("{BCH_ADDR}.bitaxe-far")})
    );
    assert_eq!(stand_in.info(far)["stratumPort"], BCH_PORT);

    // "Mine on this box" on the Gamma, for Bitcoin.
    let writes_before = stand_in.seen().into_iter().filter(|r| r.method != Method::GET).count();
    let (s, p) = point(gamma, Some("btc")).await;
    assert_eq!(s, 200, "{p}");
    let user = format!("{ADDR}.bitaxe-gamma");
    assert_eq!(p["pool"], json!({"url": box_ip.to_string(), "port": STRATUM_PORT, "user": user}));
    assert_eq!(p["fallback"], json!({"url": "public-pool.io", "port": 21496, "user": "bc1qold.gamma"}));
    let writes: Vec<Seen> =
        stand_in.seen().into_iter().filter(|r| r.method != Method::GET).skip(writes_before).collect();
    assert_eq!(writes.len(), 2, "{writes:?}");
    assert_eq!((writes[0].to, writes[0].path.as_str()), (gamma, "/api/system"));
    assert_eq!(
        writes[0].body,
        json!({
            "stratumURL": box_ip.to_string(), "stratumPort": STRATUM_PORT, "stratumUser": user, "stratumPassword": "x",
            "fallbackStratumURL": "public-pool.io", "fallbackStratumPort": 21496, "fallbackStratumUser": "bc1qold.gamma"
        })
    );
    assert_eq!(
        (writes[1].to, writes[1].method.clone(), writes[1].path.as_str()),
        (gamma, Method::POST, "/api/system/restart")
    );
    let now = stand_in.info(gamma);
    assert_eq!(
        (now["stratumURL"].as_str(), now["fallbackStratumURL"].as_str()),
        (Some(&*box_ip.to_string()), Some("public-pool.io"))
    );
    // Nothing else of the miner changed.
    assert_eq!((now["frequency"].clone(), now["hostname"].clone()), (json!(525), json!("bitaxe-gamma")));

    // A second click: the miner is on the box already, so its fallback (the old pool) stays.
    let (s, p) = point(gamma, Some("btc")).await;
    assert_eq!(s, 200, "{p}");
    assert_eq!(p["fallback"]["url"], "public-pool.io");
    let last_patch = stand_in.seen().into_iter().rfind(|r| r.method == Method::PATCH).unwrap();
    assert!(last_patch.body.get("fallbackStratumURL").is_none(), "{:?}", last_patch.body);
    assert_eq!(stand_in.info(gamma)["fallbackStratumURL"], "public-pool.io");

    // A device that is not a readable miner is not written to; an address off the box's
    // network is refused before anything is sent.
    let before = stand_in.seen().len();
    let (s, v) = point(garbage, Some("btc")).await;
    assert_eq!(s, 502, "{v}");
    assert!(v["error"].as_str().unwrap().contains("not as AxeOS does"), "{v}");
    for off in ["8.8.8.8", "10.231.255.7", "127.0.0.1", &box_ip.to_string(), "bitaxe.local"] {
        let (s, v) =
            json_of(admin.post(url(&format!("/api/v1/miners/{off}/point-here"))).header("X-CSRF-Token", &csrf)).await;
        assert_eq!(s, 422, "{off}: {v}");
        assert!(v["error"].as_str().unwrap().contains(off), "the refusal names the address, not the coin: {v}");
    }
    let after: Vec<Seen> = stand_in.seen().into_iter().skip(before).collect();
    assert!(after.iter().all(|r| r.method == Method::GET && r.to == garbage), "{after:?}");
    assert!(stand_in.seen().iter().all(|r| r.to != supra || r.method == Method::GET), "the other miner untouched");
}

/// An AxeOS web server at `ip` announced over mDNS as ESP-Miner announces it (`_http._tcp`
/// with the subtype `_axeos`, TXT board/family/asic), on `daemon` until it is shut down.
fn announce(daemon: &mdns_sd::ServiceDaemon, ip: Ipv4Addr) {
    let txt = [("board", "601"), ("family", "Gamma"), ("asic", "BM1370")];
    let info = mdns_sd::ServiceInfo::new(
        "_axeos._sub._http._tcp.local.",
        "Bitaxe Gamma 601 (FA20)",
        "bitaxe-far.local.",
        ip.to_string().as_str(),
        80,
        &txt[..],
    )
    .expect("service info");
    daemon.register(info).expect("mDNS register");
}

/// The box's network address (its /23).
fn net0(ip: Ipv4Addr) -> Ipv4Addr {
    let [a, b, c, _] = ip.octets();
    Ipv4Addr::new(a, b, c, 0)
}
