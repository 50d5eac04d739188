//! Load generation: many connections that each speak the Bitaxe sequence, then submit
//! shares at a steady rate without real mining.
//!
//! A share needs only a hash under the share target, so with the server's difficulty set
//! below the network's, any nonce is a share; the generator hashes each candidate once
//! (to skip the ones that would be real regtest blocks) and submits it. It records when
//! every connection receives each clean job, which is what the new-block latency figure
//! is made of.

use crate::miner::host_port;
use crate::work::{hash_header, meets, Job};
use bitcoin::CompactTarget;
use serde_json::{json, Value};
use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;

/// Counters shared by every load connection.
#[derive(Default)]
pub struct LoadStats {
    pub connected: AtomicU64,
    pub with_job: AtomicU64,
    pub sent: AtomicU64,
    pub accepted: AtomicU64,
    pub rejected: AtomicU64,
    pub disconnected: AtomicU64,
    /// Arrival times of clean jobs, by previous block hash (header order).
    pub clean_arrivals: Mutex<HashMap<[u8; 32], Vec<Instant>>>,
}

pub struct LoadConnection {
    pub url: String,
    pub user: String,
    /// Shares per second this connection submits; 0 = connect and stay idle.
    pub shares_per_sec: Arc<Mutex<f64>>,
    pub stats: Arc<LoadStats>,
    pub stop: Arc<AtomicBool>,
}

fn network_target(bits: u32) -> [u8; 32] {
    bitcoin::Target::from_compact(CompactTarget::from_consensus(bits)).to_le_bytes()
}

impl LoadConnection {
    pub async fn run(self) -> std::io::Result<()> {
        let stream = TcpStream::connect(host_port(&self.url)).await?;
        stream.set_nodelay(true)?;
        self.stats.connected.fetch_add(1, Ordering::Relaxed);
        let (rd, mut wr) = stream.into_split();
        let mut lines = BufReader::new(rd).lines();
        let hello = format!(
            "{}\n{}\n{}\n",
            json!({"id": 1, "method": "mining.configure", "params": [["version-rolling"], {"version-rolling.mask": "ffffffff"}]}),
            json!({"id": 2, "method": "mining.subscribe", "params": ["bitaxe/BM1370"]}),
            json!({"id": 3, "method": "mining.authorize", "params": [self.user, "x"]}),
        );
        wr.write_all(hello.as_bytes()).await?;
        let mut extranonce1 = Vec::new();
        let mut en2_len = 8usize;
        let mut job: Option<Job> = None;
        let mut next_id = 10u64;
        let mut counter: u64 = rand::random();
        let mut tick = tokio::time::interval(Duration::from_millis(100));
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
        let mut owed = 0.0f64;
        let result = loop {
            tokio::select! {
                line = lines.next_line() => {
                    let line = match line {
                        Ok(Some(l)) => l,
                        Ok(None) => break Ok(()),
                        Err(e) => break Err(e),
                    };
                    let Ok(v) = serde_json::from_str::<Value>(&line) else { continue };
                    match v["method"].as_str() {
                        Some("mining.notify") => {
                            if let Ok(j) = Job::from_notify(&v["params"]) {
                                if j.clean {
                                    self.stats.clean_arrivals.lock().expect("arrivals").entry(j.prev_hash).or_default().push(Instant::now());
                                }
                                if job.is_none() {
                                    self.stats.with_job.fetch_add(1, Ordering::Relaxed);
                                }
                                job = Some(j);
                            }
                        }
                        Some(_) => {}
                        None => {
                            let id = v["id"].as_u64().unwrap_or(0);
                            if id == 2 {
                                extranonce1 = v["result"][1].as_str().and_then(|s| hex::decode(s).ok()).unwrap_or_default();
                                en2_len = v["result"][2].as_u64().unwrap_or(8) as usize;
                            } else if id >= 10 {
                                if v["result"] == true {
                                    self.stats.accepted.fetch_add(1, Ordering::Relaxed);
                                } else {
                                    self.stats.rejected.fetch_add(1, Ordering::Relaxed);
                                }
                            }
                        }
                    }
                }
                _ = tick.tick() => {
                    if self.stop.load(Ordering::Relaxed) {
                        break Ok(());
                    }
                    let rate = *self.shares_per_sec.lock().expect("rate");
                    owed += rate / 10.0;
                    let Some(j) = &job else { continue };
                    let target = network_target(j.bits);
                    let mut batch = String::new();
                    while owed >= 1.0 {
                        owed -= 1.0;
                        // Find a candidate that is a share but not a block (about half of
                        // all hashes on regtest are blocks).
                        loop {
                            counter += 1;
                            let en2 = counter.to_be_bytes()[8 - en2_len.min(8)..].to_vec();
                            let root = j.merkle_root(&extranonce1, &en2);
                            let header = j.header(&root, j.version, j.ntime, 0);
                            if meets(&hash_header(&header), &target) {
                                continue;
                            }
                            batch.push_str(&json!({"id": next_id, "method": "mining.submit", "params": [
                                self.user, j.id, hex::encode(&en2), format!("{:08x}", j.ntime), "00000000", "00000000"
                            ]}).to_string());
                            batch.push('\n');
                            next_id += 1;
                            break;
                        }
                    }
                    if !batch.is_empty() {
                        let n = batch.lines().count() as u64;
                        if let Err(e) = wr.write_all(batch.as_bytes()).await {
                            break Err(e);
                        }
                        self.stats.sent.fetch_add(n, Ordering::Relaxed);
                    }
                }
            }
        };
        self.stats.disconnected.fetch_add(1, Ordering::Relaxed);
        result
    }
}
