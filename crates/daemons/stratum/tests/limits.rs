//! The hardening limits of issue 12 against real peers: a bounded worker registry and
//! worker list (defects 3, 4), usable difficulties only (12), the refusal line for a miner
//! that already subscribed (13), a per-address rate of new connections and quiet logs
//! (14), and the listen backlog.

mod common;

use common::process::ServerProcess;
use common::{regtest_addresses, start_server, Raw};
use minebox_regtest::{core_p2wpkh_address, Core};
use minebox_stratum::connection::Limits;
use minebox_stratum::service::{self, ServiceConfig};
use minebox_stratum::store::Store;
use minebox_stratum::vardiff::VardiffConfig;
use serde_json::Value;
use std::net::SocketAddr;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};

fn addr() -> String {
    regtest_addresses()[2].0.clone()
}

/// A raw HTTP GET: the status line's code, the headers, the body.
async fn http_get(api: SocketAddr, path: &str) -> (String, String) {
    let mut s = TcpStream::connect(api).await.unwrap();
    s.write_all(format!("GET {path} HTTP/1.1\r\nHost: {api}\r\nConnection: close\r\n\r\n").as_bytes()).await.unwrap();
    let mut all = String::new();
    s.read_to_string(&mut all).await.unwrap();
    let (head, body) = all.split_once("\r\n\r\n").unwrap();
    (head.to_ascii_lowercase(), body.to_string())
}

/// Invents `names` worker names for `address`, 16 per connection (the per-connection
/// limit), `parallel` connections at a time. Returns how many were refused.
async fn invent_workers(server: SocketAddr, address: &str, names: usize, parallel: usize) -> usize {
    let per_conn = 16;
    let conns = names.div_ceil(per_conn);
    let next = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..parallel {
        let next = next.clone();
        let address = address.to_string();
        tasks.spawn(async move {
            let mut refused = 0;
            loop {
                let c = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                if c >= conns {
                    return refused;
                }
                let mut raw = Raw::connect(server).await;
                raw.send(r#"{"id":1,"method":"mining.subscribe","params":["inventor"]}"#).await;
                let mut batch = String::new();
                for i in 0..per_conn {
                    batch += &format!(
                        "{{\"id\":{},\"method\":\"mining.authorize\",\"params\":[\"{address}.n{c}x{i}\",\"x\"]}}\n",
                        100 + i
                    );
                }
                raw.writer.write_all(batch.as_bytes()).await.unwrap();
                for i in 0..per_conn {
                    if raw.reply(100 + i as u64).await["result"] != true {
                        refused += 1;
                    }
                }
            }
        });
    }
    let mut refused = 0;
    while let Some(r) = tasks.join_next().await {
        refused += r.unwrap();
    }
    refused
}

async fn wait_until(mut f: impl FnMut() -> bool) {
    let started = std::time::Instant::now();
    while !f() {
        assert!(started.elapsed() < Duration::from_secs(30), "condition not met within 30 s");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn a_flood_of_worker_names_never_locks_out_a_real_miner_and_the_table_stays_capped() {
    // The per-IP rates are lifted so the flood is quick here; the caps are the defaults.
    let limits = Limits {
        new_connections_per_sec: 1e9,
        new_connection_burst: 1e9,
        new_workers_per_min: 1e12,
        new_worker_burst: 1e9,
        ..Limits::default()
    };
    let node = common::core().await;
    let dir = tempfile::tempdir().unwrap();
    let server = start_server(&node, dir.path(), limits.clone()).await;
    let stratum = server.stratum_addr("btc").unwrap();
    let attacker = regtest_addresses()[0].0.clone();
    let refused = invent_workers(stratum, &attacker, 20_500, 32).await;
    eprintln!("flood: 20,500 names from one address, {refused} refused; registry {}", server.stats.len());

    // A real miner's new worker is taken and mines.
    let url = format!("stratum+tcp://{stratum}");
    let real = format!("{}.bitaxe-kitchen", addr());
    let report = minebox_simminer::mine_shares(&url, &real, 1, Duration::from_secs(60)).await.unwrap();
    assert_eq!(report.authorized, Some(true), "the real miner was refused: {:?}", report.authorize_error);
    assert!(report.accepted >= 1);
    let cap = limits.workers_per_address + 1;
    // The flood's last connections may still be closing; their workers go at the next flush.
    wait_until(|| server.stats.len() <= cap).await;

    // The worker list the status page reads is one bounded page, newest first.
    let (head, body) = http_get(server.api, "/api/v1/stratum/workers").await;
    eprintln!("worker list: {} bytes; registry {} workers", body.len(), server.stats.len());
    let page: Vec<Value> = serde_json::from_str(&body).unwrap();
    assert!(page.len() <= minebox_stratum::api::WORKERS_PAGE, "{} workers in one answer", page.len());
    assert!(body.len() < 1_000_000, "worker list is {} bytes", body.len());
    assert_eq!(page[0]["worker"], real.as_str(), "most recently seen first");
    assert!(head.contains("x-total-count:"), "{head}");
    let (_, body) = http_get(server.api, "/api/v1/stratum/workers?limit=100000&offset=1").await;
    let page: Vec<Value> = serde_json::from_str(&body).unwrap();
    assert!(page.len() <= minebox_stratum::api::WORKERS_PAGE_MAX);
    server.stop().await;

    // Across a restart: the database holds the capped table, and new workers still come in.
    let saved = Store::open(&dir.path().join("state.db")).unwrap().worker_count().unwrap();
    eprintln!("saved workers after the flood: {saved}");
    assert!(saved <= cap as u64, "{saved} workers saved");
    let server = start_server(&node, dir.path(), limits.clone()).await;
    assert!(server.stats.len() <= cap);
    assert!(server.stats.snapshot().iter().any(|w| w.worker == real), "the real miner's worker was kept");
    invent_workers(server.stratum_addr("btc").unwrap(), &attacker, 2_000, 16).await;
    let url = format!("stratum+tcp://{}", server.stratum_addr("btc").unwrap());
    let report = minebox_simminer::mine_shares(&url, &format!("{}.bitaxe-garage", addr()), 1, Duration::from_secs(60))
        .await
        .unwrap();
    assert_eq!(report.authorized, Some(true), "{:?}", report.authorize_error);
    wait_until(|| server.stats.len() <= cap + 1).await;
    server.stop().await;
}

#[tokio::test]
async fn a_refused_miner_that_already_subscribed_reads_the_refusal_line() {
    let limits = Limits { max_connections: 1, ..Limits::default() };
    let node = common::core().await;
    let dir = tempfile::tempdir().unwrap();
    let server = start_server(&node, dir.path(), limits).await;
    let stratum = server.stratum_addr("btc").unwrap();
    let mut held = Raw::connect(stratum).await;
    held.handshake(&format!("{}.held", addr())).await;
    for _ in 0..3 {
        // ESP-Miner's opening: configure, subscribe, authorize, each written as it goes,
        // then it reads. A server that closes with unread input answers the later writes
        // with a reset, and the miner logs a connection error instead of the refusal.
        let mut s = TcpStream::connect(stratum).await.unwrap();
        let lines = [
            r#"{"id":1,"method":"mining.configure","params":[["version-rolling"],{"version-rolling.mask":"ffffffff"}]}"#,
            r#"{"id":2,"method":"mining.subscribe","params":["bitaxe/BM1370"]}"#,
            r#"{"id":3,"method":"mining.authorize","params":["x.y","x"]}"#,
        ];
        for (i, line) in lines.iter().enumerate() {
            if i > 0 {
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            let wrote = s.write_all(format!("{line}\n").as_bytes()).await;
            assert!(wrote.is_ok(), "writing message {} failed: {:?}", i + 1, wrote.unwrap_err().kind());
        }
        let mut got = Vec::new();
        let read = tokio::time::timeout(Duration::from_secs(10), s.read_to_end(&mut got)).await.unwrap();
        assert!(read.is_ok(), "the refused miner got {:?} instead of the refusal line", read.unwrap_err().kind());
        let line: Value = serde_json::from_slice(got.split(|b| *b == b'\n').next().unwrap()).unwrap();
        assert_eq!(line["error"][1], "server full", "{line}");
    }
    server.stop().await;
}

#[tokio::test]
async fn a_tiny_minimum_difficulty_is_refused_on_the_command_line() {
    let node = Core::start().await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("stratum.log");
    let mut cmd = common::process::command(
        &node,
        &dir.path().join("state.db"),
        "127.0.0.1:0".parse().unwrap(),
        "127.0.0.1:0".parse().unwrap(),
        &log,
    );
    cmd.args(["--start-difficulty=0.0001", "--min-difficulty=5e-324"]);
    let mut child = cmd.spawn().unwrap();
    let status = tokio::time::timeout(Duration::from_secs(30), child.wait()).await;
    let said = std::fs::read_to_string(&log).unwrap();
    let status = status.unwrap_or_else(|_| panic!("the server started with --min-difficulty=5e-324; its log: {said}"));
    assert!(!status.unwrap().success());
    assert!(said.contains("minimum difficulty 5e-324"), "the error names the bad value: {said}");
}

#[tokio::test]
async fn shares_keep_being_accepted_after_retargets_from_a_subnormal_minimum() {
    // As if a settings file slipped 5e-324 through: the server clamps, never sends null.
    let node = common::core().await;
    let dir = tempfile::tempdir().unwrap();
    let mut coin = common::coin_config(&node);
    coin.vardiff =
        VardiffConfig { min: 5e-324, start: 5e-324, max: 1e12, shares_per_minute: 1.0, ..VardiffConfig::default() };
    let server = service::start(ServiceConfig {
        coins: vec![coin],
        database: dir.path().join("state.db"),
        api_listen: "127.0.0.1:0".parse().unwrap(),
        stats_flush: Duration::from_secs(1),
        // At such difficulties every hash is a share: let the CPU miner submit them all.
        limits: Limits { messages_per_sec: 1e6, message_burst: 1e6, ..Limits::default() },
        supervisor_events: None,
    })
    .await
    .unwrap();
    let stratum = server.stratum_addr("btc").unwrap();
    let url = format!("stratum+tcp://{stratum}");
    // 8 shares inside a window retarget (flooding); 30 go through several.
    let report =
        minebox_simminer::mine_shares(&url, &format!("{}.tiny", addr()), 30, Duration::from_secs(120)).await.unwrap();
    // Stale shares are expected: at such a difficulty about every other share is a block.
    let bad: Vec<_> = report.rejected.iter().filter(|(k, _)| !k.starts_with("[21]")).collect();
    assert!(bad.is_empty(), "shares were rejected after a retarget: {:?}", report.rejected);
    assert!(report.accepted >= 30, "{report:?}");
    assert!(report.difficulty.is_finite() && report.difficulty > 0.0, "{report:?}");
    let w = server.stats.snapshot().into_iter().find(|w| w.worker.ends_with(".tiny")).unwrap();
    assert!(w.difficulty.is_finite() && w.difficulty > 0.0, "the server's difficulty for the miner: {}", w.difficulty);
    server.stop().await;
}

/// Connects from `source` (another loopback address than the honest miner's).
async fn connect_from(source: &str, to: SocketAddr) -> std::io::Result<TcpStream> {
    let s = TcpSocket::new_v4()?;
    s.bind(format!("{source}:0").parse().unwrap())?;
    s.connect(to).await
}

#[tokio::test]
async fn a_client_reconnecting_with_garbage_is_refused_quickly_and_logs_stay_quiet() {
    let node = Core::start().await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("stratum.log");
    let mut server = ServerProcess::start(&node, &dir.path().join("state.db"), &log, &[]).await;
    let stratum = server.stratum;
    // The honest miner mines from 127.0.0.1 through the storm.
    let url = format!("stratum+tcp://{stratum}");
    let honest = tokio::spawn(async move {
        minebox_simminer::mine_shares(
            &url,
            &format!("{}.honest", core_p2wpkh_address([5; 20])),
            20,
            Duration::from_secs(120),
        )
        .await
    });
    tokio::time::sleep(Duration::from_millis(500)).await;
    let lines_before = std::fs::read_to_string(&log).unwrap().lines().count();
    let attempts = 600;
    let (mut accepted, mut refused) = (0, 0);
    for _ in 0..attempts {
        let Ok(mut s) = connect_from("127.0.0.2", stratum).await else { continue };
        let _ = s.write_all(&[0xff, 0xfe, 0x00, b'\n']).await;
        let mut got = Vec::new();
        let _ = tokio::time::timeout(Duration::from_secs(5), s.read_to_end(&mut got)).await;
        let text = String::from_utf8_lossy(&got);
        if text.contains("too many new connections") {
            refused += 1;
        } else {
            accepted += 1;
        }
    }
    let lines = std::fs::read_to_string(&log).unwrap().lines().count() - lines_before;
    let report = honest.await.unwrap().expect("the honest miner keeps its connection");
    server.kill9().await;
    eprintln!("reconnect storm from 127.0.0.2: {attempts} attempts, {accepted} served, {refused} refused, {lines} log lines; honest miner {report:?}");
    assert!(refused > attempts / 2, "a reconnect loop got through {accepted} of {attempts} times");
    assert!(lines < attempts / 10, "{lines} log lines for {attempts} hostile connections");
    // Stale shares are normal (its own shares find regtest blocks); nothing else is refused.
    assert!(report.accepted >= 20, "{report:?}");
    assert!(report.rejected.keys().all(|k| k.starts_with("[21]")), "{report:?}");
}

#[tokio::test]
async fn the_stratum_port_queues_a_whole_lan_reconnecting_at_once() {
    let node = common::core().await;
    let dir = tempfile::tempdir().unwrap();
    let server = start_server(&node, dir.path(), Limits::default()).await;
    let port = server.stratum_addr("btc").unwrap().port();
    // `ss` shows a listener's backlog in its Send-Q column.
    let out = std::process::Command::new("ss").args(["-ltnH", &format!("sport = :{port}")]).output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    let backlog: u32 = text.split_whitespace().nth(2).and_then(|v| v.parse().ok()).unwrap_or_else(|| panic!("{text}"));
    eprintln!("listen backlog {backlog}");
    assert!(backlog >= 1024, "listen backlog {backlog}");
    server.stop().await;
}
