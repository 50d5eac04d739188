//! The upstream proxy's overhead (issue 18, point 1): share round-trip latency from a
//! simulated miner straight to a MineBox stratum server (the "upstream" pool) against the
//! same miner through a box proxying to it (its node down, so it mines through the pool),
//! and shares per second per core through the proxy.
//!
//! Both servers are the real service on a real Bitcoin Core regtest node; the box runs on
//! its own single-threaded runtime on one thread, so that thread's CPU time is the proxy's
//! cost (the pool and the miner run on other threads). Share difficulty is fixed below the
//! regtest network's, so every hash that is not a block is a share, for the miner, the box
//! and the pool alike: every share the miner sends is judged by the box and forwarded.
//!
//! `cargo bench -p minebox-stratum --bench upstream_proxy` (about 30 s; `-- --secs N` per phase)

#[allow(unused_imports)]
#[path = "../tests/common/mod.rs"]
mod common;

use minebox_regtest::CORE_RPC_USER;
use minebox_simminer::work::{hash_header, meets, Job};
use minebox_stratum::connection::Limits;
use minebox_stratum::payout::{Policy, WithOwner};
use minebox_stratum::service::{self, CoinConfig, ServiceConfig};
use minebox_stratum::vardiff::VardiffConfig;
use serde_json::{json, Value};
use std::collections::HashMap;
use std::net::SocketAddr;
use std::time::{Duration, Instant};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader, Lines};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::TcpStream;

/// Below regtest's network difficulty (4.66e-10): every non-block hash is a share.
const SHARE_DIFFICULTY: f64 = 1e-10;

fn limits() -> Limits {
    // The miner sends thousands of shares a second; the box's pool connection as many.
    Limits { messages_per_sec: 1e7, message_burst: 1e7, ..Limits::default() }
}

fn coin(core: &minebox_regtest::Core, dir: &std::path::Path) -> (CoinConfig, ServiceConfig) {
    let mut c = common::coin_config(core);
    c.vardiff = VardiffConfig { start: SHARE_DIFFICULTY, min: SHARE_DIFFICULTY, max: SHARE_DIFFICULTY, ..c.vardiff };
    let s = ServiceConfig {
        coins: Vec::new(),
        database: dir.join("state.db"),
        api_listen: "127.0.0.1:0".parse().unwrap(),
        stats_flush: Duration::from_secs(5),
        limits: limits(),
        supervisor_events: None,
    };
    (c, s)
}

/// A miner that sends shares and times each reply.
struct Miner {
    wr: OwnedWriteHalf,
    lines: Lines<BufReader<OwnedReadHalf>>,
    extranonce1: Vec<u8>,
    extranonce2_len: usize,
    job: Option<Job>,
    counter: u32,
    next_id: u64,
    user: String,
}

impl Miner {
    async fn connect(addr: SocketAddr, user: &str) -> Miner {
        let s = TcpStream::connect(addr).await.unwrap();
        s.set_nodelay(true).unwrap();
        let (rd, mut wr) = s.into_split();
        let hello = format!(
            "{}\n{}\n",
            json!({"id": 2, "method": "mining.subscribe", "params": ["bitaxe/BM1370"]}),
            json!({"id": 3, "method": "mining.authorize", "params": [user, "x"]}),
        );
        wr.write_all(hello.as_bytes()).await.unwrap();
        let mut m = Miner {
            wr,
            lines: BufReader::new(rd).lines(),
            extranonce1: Vec::new(),
            extranonce2_len: 0,
            job: None,
            counter: 0,
            next_id: 10,
            user: user.to_string(),
        };
        while m.job.is_none() {
            let v = m.read().await;
            if v["id"] == 2 {
                m.extranonce1 = hex::decode(v["result"][1].as_str().unwrap()).unwrap();
                m.extranonce2_len = v["result"][2].as_u64().unwrap() as usize;
            }
            if v["id"] == 3 {
                assert_eq!(v["result"], true, "authorized: {v}");
            }
        }
        m
    }

    /// The next line; a job is kept as it comes.
    async fn read(&mut self) -> Value {
        let line = tokio::time::timeout(Duration::from_secs(30), self.lines.next_line())
            .await
            .expect("the server answers")
            .unwrap()
            .expect("the server keeps the connection");
        let v: Value = serde_json::from_str(&line).unwrap();
        if v["method"] == "mining.notify" {
            self.job = Some(Job::from_notify(&v["params"]).unwrap());
        }
        v
    }

    /// A share that is not a block, as a mining.submit line, and its id.
    fn share(&mut self) -> (u64, String) {
        let j = self.job.as_ref().unwrap();
        let target = bitcoin::Target::from_compact(bitcoin::CompactTarget::from_consensus(j.bits)).to_le_bytes();
        loop {
            self.counter = self.counter.wrapping_add(1);
            let en2 = &self.counter.to_be_bytes().repeat(2)[8 - self.extranonce2_len.min(8)..];
            let header = j.header(&j.merkle_root(&self.extranonce1, en2), j.version, j.ntime, 0);
            if meets(&hash_header(&header), &target) {
                continue;
            }
            self.next_id += 1;
            let line = json!({"id": self.next_id, "method": "mining.submit",
                "params": [self.user, j.id, hex::encode(en2), format!("{:08x}", j.ntime), "00000000"]});
            return (self.next_id, format!("{line}\n"));
        }
    }

    /// Keeps `window` shares outstanding for `secs`; answers `(accepted, rejected, latencies)`.
    async fn run(&mut self, window: usize, secs: f64) -> (u64, u64, Vec<Duration>) {
        let deadline = Instant::now() + Duration::from_secs_f64(secs);
        let mut out: HashMap<u64, Instant> = HashMap::new();
        let (mut accepted, mut rejected, mut rtts) = (0, 0, Vec::new());
        loop {
            while out.len() < window && Instant::now() < deadline {
                let (id, line) = self.share();
                out.insert(id, Instant::now());
                self.wr.write_all(line.as_bytes()).await.unwrap();
            }
            if out.is_empty() {
                return (accepted, rejected, rtts);
            }
            let v = self.read().await;
            if let Some(sent) = v["id"].as_u64().and_then(|id| out.remove(&id)) {
                rtts.push(sent.elapsed());
                if v["result"] == true {
                    accepted += 1;
                } else {
                    rejected += 1;
                }
            }
        }
    }
}

fn pct(sorted: &[Duration], p: f64) -> f64 {
    sorted[((sorted.len() - 1) as f64 * p).round() as usize].as_secs_f64() * 1e6
}

/// CPU seconds (user + system) of one thread of this process.
fn thread_cpu(tid: &str) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/self/task/{tid}/stat")).unwrap();
    let f: Vec<&str> = stat[stat.rfind(')').unwrap() + 2..].split_whitespace().collect();
    let ticks: f64 = f[11].parse::<f64>().unwrap() + f[12].parse::<f64>().unwrap();
    let hz = std::process::Command::new("getconf").arg("CLK_TCK").output().unwrap();
    ticks / String::from_utf8_lossy(&hz.stdout).trim().parse::<f64>().unwrap()
}

async fn upstream_state(api: SocketAddr) -> Value {
    let url = format!("http://{api}{}", minebox_stratum::api::UPSTREAM);
    reqwest::get(url).await.unwrap().json::<Value>().await.unwrap()["btc"].clone()
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let args: Vec<String> = std::env::args().collect();
    let secs: f64 = args
        .iter()
        .position(|a| a == "--secs")
        .and_then(|i| args.get(i + 1))
        .and_then(|s| s.parse().ok())
        .unwrap_or(5.0);
    let core = common::core().await;
    let pool_dir = tempfile::tempdir().unwrap();
    let (c, mut s) = coin(&core, pool_dir.path());
    s.coins.push(c);
    let pool = service::start(s).await.unwrap();
    let pool_addr = pool.stratum_addr("btc").unwrap();

    // The box on its own thread: its node unreachable (nothing listens on port 1), so its
    // miners mine through the pool, for the owner.
    let box_dir = tempfile::tempdir().unwrap();
    let (c, mut s) = coin(&core, box_dir.path());
    let mut c = c;
    c.node = minebox_node_rpc::NodeClient::new(
        "http://127.0.0.1:1/",
        minebox_node_rpc::Auth::UserPass { user: CORE_RPC_USER.into(), pass: core.rpc_password().into() },
    )
    .unwrap();
    let (owner, _) = common::regtest_addresses()[0].clone();
    // The miner mines to the owner's address: the pool needs an address, and through the
    // box that is the owner's pool connection.
    let user = format!("{owner}.bench");
    c.payouts = Box::new(WithOwner::new(common::regtest_network(), &owner, Policy::Miner).unwrap());
    c.extranonce2_len = 4;
    c.upstream = Some(format!("stratum+tcp://{pool_addr}").parse().unwrap());
    s.coins.push(c);
    let (started, box_up) = std::sync::mpsc::channel();
    let (stop_box, box_stop) = tokio::sync::oneshot::channel::<()>();
    let box_thread = std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        rt.block_on(async move {
            let tid = std::fs::read_to_string("/proc/thread-self/stat").unwrap();
            let tid = tid.split_whitespace().next().unwrap().to_string();
            let running = service::start(s).await.unwrap();
            started.send((tid, running.api, running.stratum_addr("btc").unwrap())).unwrap();
            let _ = box_stop.await;
            running.stop().await;
        });
    });
    let (tid, box_api, box_addr) = box_up.recv().unwrap();
    let started = Instant::now();
    while upstream_state(box_api).await["mining_from"] != "upstream" {
        assert!(started.elapsed() < Duration::from_secs(60), "the box never got the pool's work");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    // Round trip, one share at a time.
    println!("share round trip, one share outstanding, {secs} s each:");
    println!("| path | shares | p50 µs | p90 µs | p99 µs | rejected |");
    println!("|---|---|---|---|---|---|");
    for (label, addr) in [("miner -> pool", pool_addr), ("miner -> box (proxy) -> pool", box_addr)] {
        let mut m = Miner::connect(addr, &user).await;
        let (accepted, rejected, mut rtts) = m.run(1, secs).await;
        rtts.sort();
        println!(
            "| {label} | {} | {:.0} | {:.0} | {:.0} | {rejected} |",
            accepted + rejected,
            pct(&rtts, 0.5),
            pct(&rtts, 0.9),
            pct(&rtts, 0.99)
        );
    }

    // Throughput through the proxy: 64 shares outstanding; the box thread's CPU time.
    let before = upstream_state(box_api).await;
    let mut m = Miner::connect(box_addr, &user).await;
    let cpu0 = thread_cpu(&tid);
    let t0 = Instant::now();
    let (accepted, rejected, _) = m.run(64, secs).await;
    let wall = t0.elapsed().as_secs_f64();
    let cpu = thread_cpu(&tid) - cpu0;
    // The pool's answers to the forwarded shares arrive after the miner's.
    let started = Instant::now();
    let mut after = upstream_state(box_api).await;
    while after["accepted"].as_u64().unwrap() + after["rejected"].as_u64().unwrap()
        < after["forwarded"].as_u64().unwrap()
        && started.elapsed() < Duration::from_secs(30)
    {
        tokio::time::sleep(Duration::from_millis(50)).await;
        after = upstream_state(box_api).await;
    }
    let delta = |k: &str| after[k].as_u64().unwrap() - before[k].as_u64().unwrap();
    println!();
    println!("through the proxy, 64 shares outstanding, {secs} s:");
    println!(
        "miner: {accepted} accepted, {rejected} rejected, {:.0} shares/s; box thread CPU {cpu:.2} s -> {:.0} shares per CPU-second",
        accepted as f64 / wall,
        accepted as f64 / cpu.max(0.01)
    );
    println!(
        "pool: {} forwarded, {} accepted, {} rejected, {} dropped by the box (queue full)",
        delta("forwarded"),
        delta("accepted"),
        delta("rejected"),
        delta("dropped")
    );
    drop(m);
    let _ = stop_box.send(());
    box_thread.join().unwrap();
    pool.stop().await;
}
