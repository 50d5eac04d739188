//! Stratum load: simulated Bitaxes that mostly idle, each on its own loopback address as on
//! a LAN, submitting a pre-hashed share every few seconds (no CPU spent grinding), a block
//! when the timeline asks for one, dropping and reconnecting all at once on a storm; and a
//! few hostile clients from addresses of their own.

use bitcoin::CompactTarget;
use minebox_simminer::work::{difficulty_target, hash_header, meets, Job};
use rand::Rng;
use serde_json::{json, Value};
use std::collections::{BTreeMap, HashMap};
use std::net::{Ipv4Addr, SocketAddr};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::{TcpSocket, TcpStream};
use tokio::sync::watch;

#[derive(Default)]
pub struct MinerStats {
    /// Miners that have a job now.
    pub working: AtomicU64,
    pub connects: AtomicU64,
    pub connect_failures: AtomicU64,
    /// Connections the server ended (not storms, not the soak's end).
    pub dropped_by_server: AtomicU64,
    pub shares_accepted: AtomicU64,
    pub shares_rejected: AtomicU64,
    pub blocks_submitted: AtomicU64,
    pub blocks_accepted: AtomicU64,
    pub clean_jobs: AtomicU64,
    /// Rejection and refusal messages by text (a handful of kinds; capped).
    pub reasons: Mutex<BTreeMap<String, u64>>,
    pub hostile_connections: AtomicU64,
}

impl MinerStats {
    fn reason(&self, text: String) {
        let mut r = self.reasons.lock().expect("reasons");
        if r.len() < 32 || r.contains_key(&text) {
            *r.entry(text).or_insert(0) += 1;
        }
    }
}

pub struct Load {
    pub stop: AtomicBool,
    /// A storm: every miner drops its connection and reconnects at once.
    pub storm: watch::Sender<u64>,
    /// Set by the timeline; the first miner to submit after that submits a block.
    pub block_wanted: AtomicBool,
    pub stats: MinerStats,
}

impl Load {
    pub fn new() -> Arc<Load> {
        Arc::new(Load {
            stop: AtomicBool::new(false),
            storm: watch::channel(0).0,
            block_wanted: AtomicBool::new(false),
            stats: MinerStats::default(),
        })
    }

    pub fn stopping(&self) -> bool {
        self.stop.load(Relaxed)
    }
}

/// The loopback address of miner `i`: 127.1.x.y, one per miner, as on a LAN of Bitaxes.
pub fn miner_ip(i: usize) -> Ipv4Addr {
    Ipv4Addr::new(127, 1, (i / 250) as u8, (i % 250 + 1) as u8)
}

pub async fn connect_from(src: Ipv4Addr, dst: SocketAddr) -> std::io::Result<TcpStream> {
    let socket = TcpSocket::new_v4()?;
    socket.bind(SocketAddr::from((src, 0)))?;
    match tokio::time::timeout(Duration::from_secs(15), socket.connect(dst)).await {
        Ok(r) => r,
        Err(_) => Err(std::io::Error::new(std::io::ErrorKind::TimedOut, "connect timed out")),
    }
}

async fn sleep_unless_stopped(load: &Load, d: Duration) {
    let end = tokio::time::Instant::now() + d;
    while tokio::time::Instant::now() < end && !load.stopping() {
        tokio::time::sleep((end - tokio::time::Instant::now()).min(Duration::from_millis(500))).await;
    }
}

enum End {
    Storm,
    Stop,
    Closed,
}

/// One miner until the soak ends: connect, work, reconnect.
pub async fn miner(i: usize, server: SocketAddr, share_every: Duration, load: Arc<Load>) {
    let ip = miner_ip(i);
    let user = format!("{}.bitaxe{i:03}", crate::stack::PAYOUT);
    let mut storm = load.storm.subscribe();
    storm.mark_unchanged();
    while !load.stopping() {
        let stream = match connect_from(ip, server).await {
            Ok(s) => s,
            Err(e) => {
                load.stats.connect_failures.fetch_add(1, Relaxed);
                load.stats.reason(format!("connect: {}", e.kind()));
                let backoff = rand::thread_rng().gen_range(1000..4000);
                sleep_unless_stopped(&load, Duration::from_millis(backoff)).await;
                continue;
            }
        };
        load.stats.connects.fetch_add(1, Relaxed);
        match session(stream, &user, share_every, &load, &mut storm).await {
            End::Storm => {}
            End::Stop => break,
            End::Closed => {
                load.stats.dropped_by_server.fetch_add(1, Relaxed);
                // ESP-Miner waits a little before it reconnects.
                let backoff = rand::thread_rng().gen_range(1000..4000);
                sleep_unless_stopped(&load, Duration::from_millis(backoff)).await;
            }
        }
    }
}

fn network_target(bits: u32) -> [u8; 32] {
    bitcoin::Target::from_compact(CompactTarget::from_consensus(bits)).to_le_bytes()
}

async fn session(
    stream: TcpStream,
    user: &str,
    share_every: Duration,
    load: &Load,
    storm: &mut watch::Receiver<u64>,
) -> End {
    let _ = stream.set_nodelay(true);
    let (rd, mut wr) = stream.into_split();
    let mut lines = BufReader::new(rd).lines();
    let hello = format!(
        "{}\n{}\n{}\n",
        json!({"id": 1, "method": "mining.configure", "params": [["version-rolling"], {"version-rolling.mask": "ffffffff"}]}),
        json!({"id": 2, "method": "mining.subscribe", "params": ["bitaxe/BM1370"]}),
        json!({"id": 3, "method": "mining.authorize", "params": [user, "x"]}),
    );
    if wr.write_all(hello.as_bytes()).await.is_err() {
        return End::Closed;
    }
    let mut extranonce1 = Vec::new();
    let mut en2_len = 8usize;
    let mut job: Option<Job> = None;
    let mut difficulty = 1e-10f64;
    let mut next_id = 10u64;
    let mut counter: u64 = rand::random();
    // Submit ids: whether each was a block. Bounded: answers that never come are forgotten.
    let mut pending: HashMap<u64, bool> = HashMap::new();
    let first = share_every.mul_f64(rand::thread_rng().gen_range(0.1..1.0));
    let mut tick = tokio::time::interval_at(tokio::time::Instant::now() + first, share_every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut check_stop = tokio::time::interval(Duration::from_millis(500));
    let end = loop {
        tokio::select! {
            line = lines.next_line() => {
                let line = match line {
                    Ok(Some(l)) => l,
                    Ok(None) | Err(_) => break End::Closed,
                };
                let Ok(v) = serde_json::from_str::<Value>(&line) else {
                    load.stats.reason(format!("not JSON from the server: {}", line.chars().take(60).collect::<String>()));
                    continue;
                };
                match v["method"].as_str() {
                    Some("mining.notify") => {
                        if let Ok(j) = Job::from_notify(&v["params"]) {
                            if job.is_none() {
                                load.stats.working.fetch_add(1, Relaxed);
                            }
                            if j.clean {
                                load.stats.clean_jobs.fetch_add(1, Relaxed);
                            }
                            job = Some(j);
                        }
                    }
                    Some("mining.set_difficulty") => {
                        if let Some(d) = v["params"][0].as_f64() {
                            difficulty = d;
                        }
                    }
                    Some(_) => {}
                    None => {
                        let id = v["id"].as_u64().unwrap_or(0);
                        if id == 2 {
                            extranonce1 = v["result"][1].as_str().and_then(|s| hex::decode(s).ok()).unwrap_or_default();
                            en2_len = v["result"][2].as_u64().unwrap_or(8) as usize;
                        } else if id == 3 && v["result"] != true {
                            load.stats.reason(format!("authorize: {}", v["error"]));
                        } else if let Some(block) = pending.remove(&id) {
                            let ok = v["result"] == true;
                            match (block, ok) {
                                (true, true) => { load.stats.blocks_accepted.fetch_add(1, Relaxed); }
                                (false, true) => { load.stats.shares_accepted.fetch_add(1, Relaxed); }
                                (_, false) => {
                                    load.stats.shares_rejected.fetch_add(1, Relaxed);
                                    load.stats.reason(format!("{}: {}", if block { "block" } else { "share" }, v["error"]));
                                }
                            }
                        }
                    }
                }
            }
            _ = tick.tick() => {
                let Some(j) = &job else { continue };
                let block = load.block_wanted.swap(false, Relaxed);
                let network = network_target(j.bits);
                let share = difficulty_target(difficulty);
                // About half of regtest hashes are blocks: a few candidates find either kind.
                let mut found = None;
                for _ in 0..256 {
                    counter = counter.wrapping_add(1);
                    let en2 = counter.to_be_bytes()[8 - en2_len.min(8)..].to_vec();
                    let root = j.merkle_root(&extranonce1, &en2);
                    let hash = hash_header(&j.header(&root, j.version, j.ntime, 0));
                    let is_block = meets(&hash, &network);
                    if is_block == block && meets(&hash, &share) {
                        found = Some(en2);
                        break;
                    }
                }
                let Some(en2) = found else {
                    if block { load.block_wanted.store(true, Relaxed); }
                    continue;
                };
                let line = json!({"id": next_id, "method": "mining.submit", "params": [
                    user, j.id, hex::encode(&en2), format!("{:08x}", j.ntime), "00000000", "00000000"
                ]});
                if pending.len() > 64 {
                    pending.clear();
                }
                pending.insert(next_id, block);
                next_id += 1;
                if block {
                    load.stats.blocks_submitted.fetch_add(1, Relaxed);
                }
                if wr.write_all(format!("{line}\n").as_bytes()).await.is_err() {
                    break End::Closed;
                }
            }
            r = storm.changed() => {
                if r.is_err() { break End::Stop; }
                break End::Storm;
            }
            _ = check_stop.tick() => {
                if load.stopping() { break End::Stop; }
            }
        }
    };
    if job.is_some() {
        load.stats.working.fetch_sub(1, Relaxed);
    }
    end
}

/// Hostile stratum clients, one behaviour after another until the soak ends, from 127.66.x.y:
/// garbage lines, a long line with no end, a slow trickle, a connect/garbage/close flood, a
/// subscribe that never authorizes, a silent connection. Each is bounded in time and count.
pub async fn hostile(worker: usize, server: SocketAddr, load: Arc<Load>) {
    let mut round = 0usize;
    while !load.stopping() {
        let ip = Ipv4Addr::new(127, 66, worker as u8, (round % 200 + 1) as u8);
        let kind = (round + worker * 3) % 6;
        let _ = tokio::time::timeout(Duration::from_secs(60), hostile_once(kind, ip, server, &load)).await;
        round += 1;
        sleep_unless_stopped(&load, Duration::from_secs(2)).await;
    }
}

async fn read_until_closed(s: &mut TcpStream, limit: Duration) {
    let mut buf = [0u8; 4096];
    let _ = tokio::time::timeout(limit, async {
        while let Ok(n) = s.read(&mut buf).await {
            if n == 0 {
                break;
            }
        }
    })
    .await;
}

async fn hostile_once(kind: usize, ip: Ipv4Addr, server: SocketAddr, load: &Load) {
    let count = |load: &Load| load.stats.hostile_connections.fetch_add(1, Relaxed);
    match kind {
        0 => {
            // Garbage lines.
            let Ok(mut s) = connect_from(ip, server).await else { return };
            count(load);
            let mut junk = String::new();
            for i in 0..50 {
                junk.push_str(&format!("GET /{i} HTTP/1.1 \u{7f}{{{{[[\"\n"));
            }
            let _ = s.write_all(junk.as_bytes()).await;
            read_until_closed(&mut s, Duration::from_secs(5)).await;
        }
        1 => {
            // 4 MiB without a newline.
            let Ok(mut s) = connect_from(ip, server).await else { return };
            count(load);
            let chunk = vec![b'a'; 64 << 10];
            for _ in 0..64 {
                if tokio::time::timeout(Duration::from_secs(5), s.write_all(&chunk)).await.map_or(true, |r| r.is_err())
                {
                    break;
                }
            }
            read_until_closed(&mut s, Duration::from_secs(5)).await;
        }
        2 => {
            // A trickle: one byte every 2 s for at most 40 s.
            let Ok(mut s) = connect_from(ip, server).await else { return };
            count(load);
            for b in br#"{"id":1,"method":"mining.subscribe","params":[]"#.iter().take(20) {
                if s.write_all(&[*b]).await.is_err() || load.stopping() {
                    break;
                }
                tokio::time::sleep(Duration::from_secs(2)).await;
            }
        }
        3 => {
            // A reconnect flood: 100 connections, each one garbage line.
            for _ in 0..100 {
                if load.stopping() {
                    break;
                }
                let Ok(mut s) = connect_from(ip, server).await else { continue };
                count(load);
                let _ = s.write_all(b"\x16\x03\x01 not stratum\n").await;
                read_until_closed(&mut s, Duration::from_millis(200)).await;
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
        4 => {
            // Subscribes, never authorizes: held until the server's handshake timeout.
            let Ok(mut s) = connect_from(ip, server).await else { return };
            count(load);
            let _ = s.write_all(b"{\"id\":1,\"method\":\"mining.subscribe\",\"params\":[\"x\"]}\n").await;
            read_until_closed(&mut s, Duration::from_secs(45)).await;
        }
        _ => {
            // Says nothing.
            let Ok(mut s) = connect_from(ip, server).await else { return };
            count(load);
            read_until_closed(&mut s, Duration::from_secs(45)).await;
        }
    }
}
