//! The telemetry the owner opts into (issue 16, point 6, the box's side): while
//! `[cloud] telemetry` is on and the box is linked, a heartbeat about every minute, each coin's
//! totals for the UTC day just ended, and each block found, once.
//!
//! Everything sent is read from what the page collects already (the overview, the stratum
//! server's blocks, workers and hashrate history). What was sent is remembered in a small
//! file beside the device key (`telemetry.json`), written only when a block or a day was sent,
//! so a restart resends nothing. The sender runs on its own task, each round bounded in time,
//! and never holds anything the page waits for. A problem is logged once when it starts and
//! once when it ends, not every minute; the page shows the current one.

use crate::app::App;
use crate::upstream::Service;
use minebox_api::stratum;
use minebox_cloud_link::telemetry::{BlockFound, CoinReport, DailyStats, Heartbeat, SyncState};
use minebox_cloud_link::{CloudLink, LinkError};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

/// About once a minute, as the issue and the cloud's load figures assume.
pub const EVERY: Duration = Duration::from_secs(60);
/// Longest one round may take: a cloud that hangs delays the next round, nothing else.
const ROUND_LIMIT: Duration = Duration::from_secs(50);
/// The file beside the device key that remembers what was sent.
pub const MEMORY_FILE: &str = "telemetry.json";
/// Blocks the sender reads per round (newest first from the stratum server).
const BLOCKS_READ: u32 = 100;

/// What one round sent.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Sent {
    pub heartbeat: bool,
    pub blocks: usize,
    pub daily: usize,
}

/// What the sender remembers across restarts.
#[derive(Debug, Default, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
struct Memory {
    /// Per coin: the newest `found_at` reported and the hashes reported at that second.
    blocks: BTreeMap<String, Reported>,
    /// The UTC day (`YYYY-MM-DD`) the current day's counting began.
    day: Option<String>,
    /// Per coin: the stratum server's share counters when that day began.
    counters: BTreeMap<String, Counters>,
}

/// Hashes kept per coin: twice what one round reads, so a block the stratum server still lists
/// is always among them.
const KEPT: usize = 2 * BLOCKS_READ as usize;

#[derive(Debug, Default, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
struct Reported {
    /// (found_at, hash) of the newest blocks reported, oldest first.
    hashes: Vec<(i64, String)>,
    /// Blocks found before this were reported (their hashes were let go).
    floor: i64,
}

impl Reported {
    fn has(&self, b: &stratum::Block) -> bool {
        b.found_at < self.floor || self.hashes.iter().any(|(_, h)| *h == b.hash)
    }

    fn add(&mut self, b: &stratum::Block) {
        self.hashes.push((b.found_at, b.hash.clone()));
        self.hashes.sort_by_key(|(at, _)| *at);
        while self.hashes.len() > KEPT {
            let (at, _) = self.hashes.remove(0);
            self.floor = self.floor.max(at);
        }
    }
}

#[derive(Debug, Default, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
struct Counters {
    valid: u64,
    invalid: u64,
}

/// The sender: one per status service.
pub struct Sender {
    app: Arc<App>,
    memory: Option<(PathBuf, Memory)>,
    /// Whether the cloud last said the box is linked (asked again while it is not).
    linked: bool,
    /// The problem last logged, so it is logged once.
    problem: Option<String>,
    /// The memory changed and is not written yet.
    dirty: bool,
}

impl Sender {
    pub fn new(app: Arc<App>) -> Sender {
        Sender { app, memory: None, linked: false, problem: None, dirty: false }
    }

    /// Rounds every `every` until `closing`.
    pub async fn run(mut self, every: Duration, closing: tokio_util::sync::CancellationToken) {
        let mut ticks = tokio::time::interval(every);
        ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = closing.cancelled() => return,
                _ = ticks.tick() => {}
            }
            tokio::select! {
                _ = closing.cancelled() => return,
                r = tokio::time::timeout(ROUND_LIMIT, self.round(minebox_platform::clock::unix_secs())) => {
                    if r.is_err() {
                        self.note(Some("a telemetry round took too long (the cloud or a service is slow)".into()));
                    }
                }
            }
        }
    }

    /// One round as of `now` (unix seconds): what it sent. Nothing unless telemetry is on,
    /// a cloud is set, the box has a key and the cloud says it is linked.
    pub async fn round(&mut self, now: i64) -> Sent {
        let settings = self.app.settings().cloud;
        let Some(url) = settings.url.as_ref().filter(|_| settings.telemetry) else {
            self.note(None);
            return Sent::default();
        };
        let url = url.as_str().trim_end_matches('/').to_string();
        let link = match self.app.cloud.link(&url, &settings.key, false).await {
            Ok(Some(l)) => l,
            Ok(None) => {
                self.note(Some("telemetry is on, but the box is not linked to MineBox Cloud: nothing is sent".into()));
                return Sent::default();
            }
            Err(e) => {
                self.note(Some(e.to_string()));
                return Sent::default();
            }
        };
        if !self.linked {
            match link.status().await {
                Ok(s) if s.state == minebox_cloud_link::State::Linked => {
                    crate::cloud::note(&settings.key, true);
                    self.linked = true
                }
                Ok(_) | Err(LinkError::Refused { status: 401, .. }) => {
                    crate::cloud::note(&settings.key, false);
                    self.note(Some(
                        "telemetry is on, but the box is not linked to MineBox Cloud: nothing is sent".into(),
                    ));
                    return Sent::default();
                }
                Err(e) => {
                    self.note(Some(e.to_string()));
                    return Sent::default();
                }
            }
        }
        let mut sent = Sent::default();
        let result = self.send_all(&link, &settings.key, now, &mut sent).await;
        match result {
            Ok(()) => self.note(None),
            Err(LinkError::Refused { status: 403, .. }) => {
                // Unlinked from the account since the last round: ask again next time.
                crate::cloud::note(&settings.key, false);
                self.linked = false;
                self.note(Some("the box was unlinked from MineBox Cloud: telemetry stopped".into()));
            }
            Err(e) => self.note(Some(e.to_string())),
        }
        sent
    }

    async fn send_all(&mut self, link: &CloudLink, key: &Path, now: i64, sent: &mut Sent) -> Result<(), LinkError> {
        link.heartbeat(&self.heartbeat().await).await?;
        sent.heartbeat = true;
        let path = key.parent().unwrap_or(Path::new("/")).join(MEMORY_FILE);
        if self.memory.as_ref().is_none_or(|(p, _)| *p != path) {
            self.memory = Some((path.clone(), read_memory(&path)));
        }
        // Read-only services down: the heartbeat said so; blocks and days wait for them.
        let Ok(blocks) = self
            .app
            .up
            .get_as::<Vec<stratum::Block>>(Service::Stratum, &format!("{}?limit={BLOCKS_READ}", stratum::BLOCKS))
            .await
        else {
            return Ok(());
        };
        let outcome = self.send_blocks(link, &blocks, sent).await;
        let outcome = match outcome {
            Ok(()) => self.send_day(link, &blocks, now, sent).await,
            e => e,
        };
        if self.dirty {
            self.dirty = false;
            if let Some((p, m)) = &self.memory {
                if let Err(e) = write_memory(p, m) {
                    tracing::warn!(file = %p.display(), error = %e, "cannot remember what telemetry sent; it may be sent again");
                }
            }
        }
        outcome
    }

    /// The heartbeat, from the overview the page shows.
    async fn heartbeat(&self) -> Heartbeat {
        let o = self.app.overview().await;
        let coins = o
            .coins
            .iter()
            .map(|c| {
                let height = c.node.blocks.unwrap_or(0);
                CoinReport {
                    coin: c.coin.clone(),
                    height,
                    headers: c.node.headers.unwrap_or(height).max(height),
                    sync_progress: c.node.progress.unwrap_or(0.0).clamp(0.0, 1.0),
                    state: sync_state(&c.node.state, &c.node.detail),
                    hashrate_hs: c.stratum.listening.then_some(c.hashrate.m1.max(0.0)),
                }
            })
            .collect();
        Heartbeat { version: env!("CARGO_PKG_VERSION").into(), uptime_secs: uptime_secs(), coins }
    }

    /// Blocks the node took (or took and then lost to another), oldest first, each once.
    async fn send_blocks(
        &mut self,
        link: &CloudLink,
        blocks: &[stratum::Block],
        sent: &mut Sent,
    ) -> Result<(), LinkError> {
        let memory = &mut self.memory.as_mut().expect("memory read").1;
        let mut todo: Vec<&stratum::Block> = blocks
            .iter()
            .filter(|b| matches!(b.status, stratum::BlockStatus::Accepted | stratum::BlockStatus::Orphaned))
            .filter(|b| !memory.blocks.get(&b.coin).is_some_and(|r| r.has(b)))
            .collect();
        todo.sort_by_key(|b| b.found_at);
        for b in todo {
            let report = BlockFound {
                coin: b.coin.clone(),
                height: b.height,
                hash: b.hash.clone(),
                reward_sats: b.reward_sats,
                found_at: b.found_at,
            };
            link.block_found(&report).await?;
            memory.blocks.entry(b.coin.clone()).or_default().add(b);
            self.dirty = true;
            sent.blocks += 1;
            tracing::info!(coin = %b.coin, height = b.height, "block found reported to MineBox Cloud");
        }
        Ok(())
    }

    /// On the first round of a new UTC day, each enabled coin's totals for the day before.
    /// The first round ever only starts counting (no whole day was seen).
    async fn send_day(
        &mut self,
        link: &CloudLink,
        blocks: &[stratum::Block],
        now: i64,
        sent: &mut Sent,
    ) -> Result<(), LinkError> {
        let today = utc_day(now);
        let settings = self.app.settings();
        let coins: Vec<String> = settings.coins.values().filter(|c| c.enabled).map(|c| c.id.clone()).collect();
        let memory = &self.memory.as_ref().expect("memory read").1;
        if memory.day.as_deref() == Some(today.as_str()) {
            return Ok(());
        }
        let mut counters = BTreeMap::new();
        let mut best = BTreeMap::new();
        for coin in &coins {
            // A stratum server that does not answer: try again next round.
            let Ok((c, b)) = self.counters(coin).await else { return Ok(()) };
            counters.insert(coin.clone(), c);
            best.insert(coin.clone(), b);
        }
        if memory.day.is_some() {
            let (start, end) = (day_start(now) - 86_400, day_start(now));
            for coin in &coins {
                let before = memory.counters.get(coin).copied().unwrap_or_default();
                let now_c = counters[coin];
                // Counters that went back: the stratum server restarted; its count is the day's.
                let valid = now_c.valid.checked_sub(before.valid).unwrap_or(now_c.valid);
                let invalid = now_c.invalid.checked_sub(before.invalid).unwrap_or(now_c.invalid);
                let (avg, up) = self.hashrate_day(coin, start, end).await;
                let stats = DailyStats {
                    day: utc_day(start),
                    coin: coin.clone(),
                    shares_submitted: valid + invalid,
                    shares_valid: valid,
                    shares_invalid: invalid,
                    blocks_found: blocks
                        .iter()
                        .filter(|b| &b.coin == coin && (start..end).contains(&b.found_at))
                        .filter(|b| matches!(b.status, stratum::BlockStatus::Accepted | stratum::BlockStatus::Orphaned))
                        .count() as u32,
                    best_difficulty: best[coin].filter(|(at, _)| (start..end).contains(at)).map_or(0.0, |(_, d)| d),
                    hashrate_avg_hs: avg,
                    uptime_percent: up,
                };
                link.daily_stats(&stats).await?;
                sent.daily += 1;
            }
        }
        let memory = &mut self.memory.as_mut().expect("memory read").1;
        memory.day = Some(today);
        memory.counters = counters;
        self.dirty = true;
        Ok(())
    }

    /// A coin's share counters now, and its best share with when it was found.
    async fn counters(&self, coin: &str) -> Result<(Counters, Option<(i64, f64)>), crate::upstream::UpstreamError> {
        let page = self
            .app
            .up
            .get_page::<stratum::Worker>(Service::Stratum, &format!("{}?coin={coin}", stratum::WORKERS), 1000, 0)
            .await?;
        let mut c = Counters::default();
        let mut best: Option<(i64, f64)> = None;
        for w in &page.items {
            c.valid += w.accepted;
            c.invalid += w.rejected.values().sum::<u64>();
            if w.best_share > best.map_or(0.0, |(_, d)| d) {
                best = Some((w.best_share_at, w.best_share));
            }
        }
        Ok((c, best))
    }

    /// The day's average hashrate and the share of its samples with miners hashing (0 to 100).
    async fn hashrate_day(&self, coin: &str, start: i64, end: i64) -> (f64, f64) {
        let path = format!("{}?coin={coin}&since={start}", stratum::HASHRATE);
        let points: Vec<stratum::HashratePoint> = self.app.up.get_as(Service::Stratum, &path).await.unwrap_or_default();
        let day: Vec<f64> = points.iter().filter(|(t, _)| (start..end).contains(t)).map(|(_, v)| v.max(0.0)).collect();
        if day.is_empty() {
            return (0.0, 0.0);
        }
        let avg = day.iter().sum::<f64>() / day.len() as f64;
        let up = day.iter().filter(|v| **v > 0.0).count() as f64 * 100.0 / day.len() as f64;
        (avg, up)
    }

    /// Logs a problem once when it starts and once when it ends; the page shows it meanwhile.
    fn note(&mut self, problem: Option<String>) {
        if problem == self.problem {
            return;
        }
        match (&problem, &self.problem) {
            (Some(p), _) => tracing::warn!(problem = %p, "telemetry to MineBox Cloud"),
            (None, Some(_)) => tracing::info!("telemetry to MineBox Cloud goes through again"),
            (None, None) => {}
        }
        *self.app.cloud.problem.lock().expect("cloud") = problem.clone();
        self.problem = problem;
    }
}

/// The supervisor's words for a node, as the cloud's five states.
fn sync_state(state: &str, detail: &str) -> SyncState {
    match state {
        "synced" => SyncState::Ready,
        "syncing" | "stalled" if detail.contains("snapshot") => SyncState::InstallingSnapshot,
        "syncing" | "stalled" => SyncState::Syncing,
        "starting" => SyncState::Starting,
        _ => SyncState::Down,
    }
}

/// Seconds since the box started (0 where /proc/uptime cannot be read).
fn uptime_secs() -> u64 {
    std::fs::read_to_string("/proc/uptime")
        .ok()
        .and_then(|t| t.split_whitespace().next().and_then(|s| s.parse::<f64>().ok()))
        .map_or(0, |s| s as u64)
}

fn read_memory(path: &Path) -> Memory {
    match std::fs::read(path) {
        Ok(bytes) => serde_json::from_slice(&bytes).unwrap_or_else(|e| {
            tracing::warn!(file = %path.display(), error = %e, "telemetry memory unreadable: starting afresh (blocks may be reported again; the cloud keeps each once)");
            Memory::default()
        }),
        Err(_) => Memory::default(),
    }
}

fn write_memory(path: &Path, m: &Memory) -> std::io::Result<()> {
    let text = serde_json::to_vec_pretty(m).expect("memory serializes");
    minebox_platform::fs::AtomicWrite::to(path).mode(0o640).write(&text)
}

fn day_start(unix: i64) -> i64 {
    unix.div_euclid(86_400) * 86_400
}

/// The UTC calendar day of `unix`, `YYYY-MM-DD` (days to civil date, H. Hinnant's method).
pub fn utc_day(unix: i64) -> String {
    let z = unix.div_euclid(86_400) + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!("{y:04}-{m:02}-{d:02}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn utc_days_are_calendar_days() {
        assert_eq!(utc_day(0), "1970-01-01");
        assert_eq!(utc_day(1_764_547_199), "2025-11-30");
        assert_eq!(utc_day(1_764_547_200), "2025-12-01");
        assert_eq!(utc_day(951_782_400), "2000-02-29");
        assert_eq!(utc_day(4_107_542_400), "2100-03-01");
    }

    #[test]
    fn a_block_is_reported_once_per_hash() {
        let b = |at, hash: &str| stratum::Block { found_at: at, hash: hash.into(), ..Default::default() };
        let mut r = Reported::default();
        assert!(!r.has(&b(10, "a")));
        r.add(&b(10, "a"));
        r.add(&b(12, "c"));
        assert!(
            r.has(&b(10, "a")) && !r.has(&b(10, "b")) && !r.has(&b(11, "d")),
            "an older block not sent yet is sent"
        );
        for i in 0..KEPT as i64 {
            r.add(&b(100 + i, &format!("h{i}")));
        }
        assert_eq!(r.hashes.len(), KEPT);
        assert!(r.has(&b(10, "a")) && r.has(&b(11, "d")), "past the kept hashes: reported before");
        assert!(r.has(&b(100, "h0")) && !r.has(&b(1000, "new")));
    }

    #[test]
    fn node_states_map_to_the_clouds() {
        assert_eq!(sync_state("synced", ""), SyncState::Ready);
        assert_eq!(sync_state("stalled", ""), SyncState::Syncing);
        assert_eq!(sync_state("crash_loop", ""), SyncState::Down);
        assert_eq!(sync_state("unknown", ""), SyncState::Down);
        assert_eq!(sync_state("starting", ""), SyncState::Starting);
    }
}
