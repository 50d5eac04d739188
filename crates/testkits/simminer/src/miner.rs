//! A simulated Bitaxe: the same Stratum V1 conversation as ESP-Miner, with a CPU doing the
//! hashing.
//!
//! ESP-Miner (bitaxeorg/ESP-Miner, `main/tasks/stratum_v1_task.c` as of 2025) opens with
//! three pipelined requests, without waiting for answers:
//!
//! 1. `mining.configure` `[["version-rolling"], {"version-rolling.mask": "ffffffff"}]`
//! 2. `mining.subscribe` `["bitaxe/<ASIC>"]`
//! 3. `mining.authorize` `[user, password]`
//!
//! and once authorize succeeds, `mining.suggest_difficulty [d]` (the configured pool
//! difficulty) and, when enabled, `mining.extranonce.subscribe`. Every `mining.submit`
//! carries the sixth `version_bits` parameter. `set_difficulty` applies to the next job;
//! `clean_jobs` drops queued work; `mining.set_version_mask` and `mining.set_extranonce`
//! apply from the next job.
//!
//! Like ESP-Miner it rolls versions by OR-ing its bits into the job's version and submits
//! `rolled ^ job_version`, answers the server's `mining.ping` with a `pong` *request*
//! (`{"id":n,"method":"pong","params":[]}`), and on `client.reconnect` closes the connection
//! (ESP-Miner then connects again; this one ends, having noted it in its [`Report`]).

use crate::work::{difficulty_target, hash_header, meets, Job};
use serde::Serialize;
use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;
use tokio::sync::mpsc;

#[derive(Debug, Clone)]
pub struct MinerConfig {
    /// `stratum+tcp://host:port` or `host:port`.
    pub url: String,
    /// Payout address, optionally `.worker`.
    pub user: String,
    pub password: String,
    /// What ESP-Miner sends: `bitaxe/<ASIC model>`.
    pub user_agent: String,
    pub suggest_difficulty: Option<f64>,
    pub extranonce_subscribe: bool,
    /// Hashes per second at most (None: as fast as one core goes).
    pub hashrate: Option<f64>,
}

impl MinerConfig {
    pub fn bitaxe(url: &str, user: &str) -> MinerConfig {
        MinerConfig {
            url: url.to_string(),
            user: user.to_string(),
            password: "x".into(),
            user_agent: "bitaxe/BM1370".into(),
            suggest_difficulty: None,
            extranonce_subscribe: false,
            hashrate: None,
        }
    }
}

/// What the miner saw, for tests and the demo.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Report {
    pub accepted: u64,
    /// Rejections by `[code] message`.
    pub rejected: BTreeMap<String, u64>,
    pub jobs: u64,
    pub clean_jobs: u64,
    pub difficulty: f64,
    /// The version mask the server gave last (mining.configure, then mining.set_version_mask).
    pub version_mask: u32,
    /// `mining.set_extranonce` messages taken (sent only with `extranonce_subscribe`).
    pub extranonce_changes: u64,
    pub hashes: u64,
    pub authorized: Option<bool>,
    pub authorize_error: Option<String>,
    /// `mining.ping`s the server sent (each answered with `pong`).
    pub pings: u64,
    /// Whether the server sent `client.reconnect` (the miner then closed the connection).
    pub reconnect_requested: bool,
}

#[derive(Debug, thiserror::Error)]
pub enum MinerError {
    #[error("cannot connect to {url}: {source}")]
    Connect { url: String, source: std::io::Error },
    #[error("connection lost: {0}")]
    Io(#[from] std::io::Error),
    #[error("the server refused authorization: {0}")]
    Unauthorized(String),
    #[error("the server sent something that is not Stratum: {0}")]
    Protocol(String),
}

pub fn host_port(url: &str) -> &str {
    url.trim_start_matches("stratum+tcp://").trim_end_matches('/')
}

/// Work the hashing thread reads.
struct Work {
    job: Job,
    extranonce1: Vec<u8>,
    extranonce2_len: usize,
    target: [u8; 32],
    version_mask: u32,
}

struct Shared {
    work: Mutex<Option<Arc<Work>>>,
    generation: AtomicU64,
    stop: AtomicBool,
    hashes: AtomicU64,
}

struct Found {
    job_id: String,
    extranonce2: Vec<u8>,
    ntime: u32,
    nonce: u32,
    version_bits: u32,
}

/// Tells the hashing thread to stop when dropped: `run` holds one, so the thread also ends
/// when `run`'s task is dropped unfinished (aborted, or its runtime shut down by a test that
/// failed before setting `stop`). A runtime waits for its blocking threads when dropped, so
/// a grinder left hashing turned every failed assertion of a test mining with it into a
/// hang (stratum's upstream test hung 27 minutes so).
struct StopGrinder(Arc<Shared>);

impl Drop for StopGrinder {
    fn drop(&mut self) {
        self.0.stop.store(true, Ordering::Relaxed);
    }
}

/// Hashes on the current work until told to stop; sends shares that meet the target.
fn grind(shared: Arc<Shared>, found: mpsc::Sender<Found>, hashrate: Option<f64>) {
    let started = Instant::now();
    let mut en2_counter: u64 = rand::random::<u32>() as u64;
    while !shared.stop.load(Ordering::Relaxed) {
        let generation = shared.generation.load(Ordering::Acquire);
        let Some(work) = shared.work.lock().expect("work lock").clone() else {
            std::thread::sleep(Duration::from_millis(20));
            continue;
        };
        en2_counter += 1;
        let en2 = en2_counter.to_be_bytes()[8 - work.extranonce2_len.min(8)..].to_vec();
        let root = work.job.merkle_root(&work.extranonce1, &en2);
        // Roll one version bit pattern per extranonce, inside the mask, the way ESP-Miner
        // does: OR-ed into the job's version, reported as the difference from it.
        let rolled =
            if work.version_mask != 0 { (en2_counter as u32).wrapping_mul(0x2000) & work.version_mask } else { 0 };
        let version = work.job.version | rolled;
        let version_bits = version ^ work.job.version;
        let mut header = work.job.header(&root, version, work.job.ntime, 0);
        for nonce in 0..=u32::MAX {
            header[76..80].copy_from_slice(&nonce.to_le_bytes());
            let hash = hash_header(&header);
            if meets(&hash, &work.target) {
                let share = Found {
                    job_id: work.job.id.clone(),
                    extranonce2: en2.clone(),
                    ntime: work.job.ntime,
                    nonce,
                    version_bits,
                };
                if found.blocking_send(share).is_err() {
                    return;
                }
            }
            if nonce % 1024 == 1023 {
                let done = shared.hashes.fetch_add(1024, Ordering::Relaxed) + 1024;
                if shared.stop.load(Ordering::Relaxed) || shared.generation.load(Ordering::Acquire) != generation {
                    break;
                }
                if let Some(rate) = hashrate {
                    let due = Duration::from_secs_f64(done as f64 / rate);
                    if let Some(wait) = due.checked_sub(started.elapsed()) {
                        std::thread::sleep(wait);
                    }
                }
            }
        }
    }
}

/// Runs one simulated Bitaxe until `stop` is set or the connection ends.
pub async fn run(config: MinerConfig, report: Arc<Mutex<Report>>, stop: Arc<AtomicBool>) -> Result<(), MinerError> {
    let addr = host_port(&config.url).to_string();
    let stream =
        TcpStream::connect(&addr).await.map_err(|source| MinerError::Connect { url: config.url.clone(), source })?;
    stream.set_nodelay(true)?;
    let (rd, mut wr) = stream.into_split();
    let mut lines = BufReader::new(rd).lines();

    let mut next_id = 1u64;
    let mut send = |method: &str, params: Value| {
        let id = next_id;
        next_id += 1;
        (id, format!("{}\n", json!({ "id": id, "method": method, "params": params })))
    };
    let (_, configure) = send("mining.configure", json!([["version-rolling"], {"version-rolling.mask": "ffffffff"}]));
    let (_, subscribe) = send("mining.subscribe", json!([config.user_agent]));
    let (authorize_id, authorize) = send("mining.authorize", json!([config.user, config.password]));
    wr.write_all(format!("{configure}{subscribe}{authorize}").as_bytes()).await?;

    let shared = Arc::new(Shared {
        work: Mutex::new(None),
        generation: AtomicU64::new(0),
        stop: AtomicBool::new(false),
        hashes: AtomicU64::new(0),
    });
    let (found_tx, mut found_rx) = mpsc::channel::<Found>(256);
    let grinder = {
        let shared = shared.clone();
        let rate = config.hashrate;
        tokio::task::spawn_blocking(move || grind(shared, found_tx, rate))
    };
    let _stop_grinder = StopGrinder(shared.clone());

    let mut extranonce1 = Vec::new();
    let mut extranonce2_len = 4usize;
    let mut version_mask = 0u32;
    let mut difficulty = 1.0f64;
    let mut pending_difficulty: Option<f64> = None;
    let mut submit_ids = std::collections::HashSet::new();
    let mut tick = tokio::time::interval(Duration::from_millis(100));
    let result = loop {
        tokio::select! {
            line = lines.next_line() => {
                let line = match line {
                    Ok(Some(l)) => l,
                    Ok(None) => break Ok(()),
                    Err(e) => break Err(MinerError::Io(e)),
                };
                let v: Value = match serde_json::from_str(&line) {
                    Ok(v) => v,
                    Err(e) => break Err(MinerError::Protocol(format!("{e}: {line}"))),
                };
                match v["method"].as_str() {
                    Some("mining.notify") => {
                        let job = match Job::from_notify(&v["params"]) {
                            Ok(j) => j,
                            Err(e) => break Err(MinerError::Protocol(e.to_string())),
                        };
                        if let Some(d) = pending_difficulty.take() {
                            difficulty = d;
                        }
                        {
                            let mut r = report.lock().expect("report lock");
                            r.jobs += 1;
                            if job.clean { r.clean_jobs += 1; }
                            r.difficulty = difficulty;
                        }
                        *shared.work.lock().expect("work lock") = Some(Arc::new(Work {
                            job,
                            extranonce1: extranonce1.clone(),
                            extranonce2_len,
                            target: difficulty_target(difficulty),
                            version_mask,
                        }));
                        shared.generation.fetch_add(1, Ordering::Release);
                    }
                    Some("mining.set_difficulty") => {
                        if let Some(d) = v["params"][0].as_f64() { pending_difficulty = Some(d); }
                    }
                    Some("mining.set_version_mask") => {
                        if let Some(m) = v["params"][0].as_str().and_then(|s| u32::from_str_radix(s, 16).ok()) {
                            version_mask = m;
                            report.lock().expect("report lock").version_mask = m;
                        }
                    }
                    // As ESP-Miner: a new extranonce1 and extranonce2 size for the next job.
                    Some("mining.set_extranonce") => {
                        if let (Some(en1), Some(size)) = (v["params"][0].as_str().and_then(|s| hex::decode(s).ok()), v["params"][1].as_u64()) {
                            extranonce1 = en1;
                            extranonce2_len = size as usize;
                            report.lock().expect("report lock").extranonce_changes += 1;
                        }
                    }
                    Some("mining.ping") => {
                        report.lock().expect("report lock").pings += 1;
                        let pong = format!("{}\n", json!({ "id": v["id"], "method": "pong", "params": [] }));
                        if let Err(e) = wr.write_all(pong.as_bytes()).await { break Err(e.into()); }
                    }
                    Some("client.reconnect") => {
                        report.lock().expect("report lock").reconnect_requested = true;
                        break Ok(());
                    }
                    Some(_) => {}
                    None => {
                        let id = v["id"].as_u64().unwrap_or(0);
                        if id == 1 {
                            version_mask = v["result"]["version-rolling.mask"].as_str().and_then(|s| u32::from_str_radix(s, 16).ok()).unwrap_or(0);
                            report.lock().expect("report lock").version_mask = version_mask;
                        } else if id == 2 {
                            extranonce1 = v["result"][1].as_str().and_then(|s| hex::decode(s).ok()).unwrap_or_default();
                            extranonce2_len = v["result"][2].as_u64().unwrap_or(4) as usize;
                        } else if id == authorize_id {
                            let ok = v["result"] == true;
                            {
                                let mut r = report.lock().expect("report lock");
                                r.authorized = Some(ok);
                                if !ok { r.authorize_error = Some(v["error"].to_string()); }
                            }
                            if !ok {
                                break Err(MinerError::Unauthorized(v["error"].to_string()));
                            }
                            let mut after = String::new();
                            if let Some(d) = config.suggest_difficulty {
                                after.push_str(&send("mining.suggest_difficulty", json!([d])).1);
                            }
                            if config.extranonce_subscribe {
                                after.push_str(&send("mining.extranonce.subscribe", json!([])).1);
                            }
                            if !after.is_empty() {
                                if let Err(e) = wr.write_all(after.as_bytes()).await { break Err(e.into()); }
                            }
                        } else if submit_ids.remove(&id) {
                            let mut r = report.lock().expect("report lock");
                            if v["result"] == true {
                                r.accepted += 1;
                            } else {
                                let key = format!("[{}] {}", v["error"][0], v["error"][1].as_str().unwrap_or(""));
                                *r.rejected.entry(key).or_insert(0) += 1;
                            }
                        }
                    }
                }
            }
            Some(share) = found_rx.recv() => {
                let (id, line) = send("mining.submit", json!([
                    config.user,
                    share.job_id,
                    hex::encode(&share.extranonce2),
                    format!("{:08x}", share.ntime),
                    format!("{:08x}", share.nonce),
                    format!("{:08x}", share.version_bits),
                ]));
                submit_ids.insert(id);
                if let Err(e) = wr.write_all(line.as_bytes()).await { break Err(e.into()); }
            }
            _ = tick.tick() => {
                report.lock().expect("report lock").hashes = shared.hashes.load(Ordering::Relaxed);
                if stop.load(Ordering::Relaxed) { break Ok(()); }
            }
        }
    };
    shared.stop.store(true, Ordering::Relaxed);
    drop(found_rx);
    let _ = grinder.await;
    result
}

/// Mines with one simulated Bitaxe until `shares` are accepted or `timeout` passes.
pub async fn mine_shares(url: &str, user: &str, shares: u64, timeout: Duration) -> Result<Report, MinerError> {
    let report = Arc::new(Mutex::new(Report::default()));
    let stop = Arc::new(AtomicBool::new(false));
    let task = tokio::spawn(run(MinerConfig::bitaxe(url, user), report.clone(), stop.clone()));
    let started = Instant::now();
    while started.elapsed() < timeout && !task.is_finished() {
        if report.lock().expect("report lock").accepted >= shares {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    stop.store(true, Ordering::Relaxed);
    match task.await {
        Ok(Err(e)) => Err(e),
        _ => Ok(report.lock().expect("report lock").clone()),
    }
}
