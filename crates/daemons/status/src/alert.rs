//! Alerts that matter: what happened ([`Alert`], rendered once for each target) and when a
//! condition is worth one ([`Alerts`], a pure state machine fed with observations and a
//! clock value, so it is tested without sleeping).
//!
//! A condition (a node down, a miner silent, ...) is announced when it starts, then not
//! again until it has cleared and the quiet period since the last announcement has passed.
//! A condition that comes back inside the quiet period and is still there when the period
//! ends is announced then (flapping is held back, a lasting problem is not lost).

use minebox_api::supervisor::NodeState;
use minebox_api::updater::{HistoryEntry, Outcome};
use serde_json::{json, Value};
use std::collections::HashMap;

/// One thing worth telling the owner.
#[derive(Debug, Clone, PartialEq)]
pub enum Alert {
    BlockFound {
        coin: String,
        height: u64,
        hash: String,
        worker: String,
        reward_sats: u64,
    },
    NodeSynced {
        coin: String,
        height: u64,
    },
    /// Crashed, crash-looping (not restarted until a user starts it) or stopped for disk.
    NodeDown {
        coin: String,
        state: NodeState,
        detail: String,
    },
    MinerSilent {
        coin: String,
        worker: String,
        minutes: u64,
    },
    /// Hashes per second: the last hour's and the 24 h average.
    HashrateLow {
        coin: String,
        worker: String,
        now: f64,
        avg24h: f64,
    },
    DiskLow {
        path: String,
        free_bytes: u64,
        total_bytes: u64,
    },
    UpdateInstalled {
        version: String,
        from_version: String,
    },
    UpdateRolledBack {
        version: String,
        from_version: String,
        message: String,
    },
}

/// An email as sent: subject and plain-text body.
#[derive(Debug, Clone, PartialEq)]
pub struct Email {
    pub subject: String,
    pub body: String,
}

fn rate(hs: f64) -> String {
    let units = ["H/s", "kH/s", "MH/s", "GH/s", "TH/s", "PH/s"];
    let mut v = hs;
    let mut i = 0;
    while v >= 1000.0 && i + 1 < units.len() {
        v /= 1000.0;
        i += 1;
    }
    format!("{v:.2} {}", units[i])
}

impl Alert {
    /// The `event` field of the webhook's JSON.
    pub fn kind(&self) -> &'static str {
        match self {
            Alert::BlockFound { .. } => "block_found",
            Alert::NodeSynced { .. } => "node_synced",
            Alert::NodeDown { .. } => "node_down",
            Alert::MinerSilent { .. } => "miner_silent",
            Alert::HashrateLow { .. } => "hashrate_low",
            Alert::DiskLow { .. } => "disk_low",
            Alert::UpdateInstalled { .. } => "update_installed",
            Alert::UpdateRolledBack { .. } => "update_rolled_back",
        }
    }

    /// A short title (ntfy's Title header).
    pub fn title(&self) -> &'static str {
        match self {
            Alert::BlockFound { .. } => "Block found",
            Alert::NodeSynced { .. } => "Node synced",
            Alert::NodeDown { .. } => "Node down",
            Alert::MinerSilent { .. } => "Miner silent",
            Alert::HashrateLow { .. } => "Hashrate low",
            Alert::DiskLow { .. } => "Disk low",
            Alert::UpdateInstalled { .. } => "Update installed",
            Alert::UpdateRolledBack { .. } => "Update rolled back",
        }
    }

    /// ntfy tags (emoji shortcodes ntfy shows before the title).
    pub fn tags(&self) -> &'static str {
        match self {
            Alert::BlockFound { .. } => "tada",
            Alert::NodeSynced { .. } | Alert::UpdateInstalled { .. } => "white_check_mark",
            _ => "warning",
        }
    }

    /// One sentence saying what happened and, for a problem, what to look at.
    pub fn headline(&self) -> String {
        match self {
            Alert::BlockFound { coin, height, worker, reward_sats, .. } => format!(
                "MineBox found a {} block at height {height}: {:.8} to {worker}",
                coin.to_uppercase(),
                *reward_sats as f64 / 1e8
            ),
            Alert::NodeSynced { coin, height } => {
                format!("MineBox: the {} node is synced at height {height}; mining runs on it", coin.to_uppercase())
            }
            Alert::NodeDown { coin, state, detail } => {
                let what = match state {
                    NodeState::CrashLoop => "keeps crashing and is not restarted until you start it on the Nodes page",
                    NodeState::StoppedForDisk => "stopped because the disk is nearly full",
                    _ => "crashed and is being restarted",
                };
                format!("MineBox: the {} node {what} ({detail})", coin.to_uppercase())
            }
            Alert::MinerSilent { coin, worker, minutes } => format!(
                "MineBox: miner {worker} ({}) has sent no share for {minutes} minutes; check its power and network",
                coin.to_uppercase()
            ),
            Alert::HashrateLow { coin, worker, now, avg24h } => format!(
                "MineBox: miner {worker} ({}) hashes {} over the last hour, against {} on average over 24 h",
                coin.to_uppercase(),
                rate(*now),
                rate(*avg24h)
            ),
            Alert::DiskLow { path, free_bytes, total_bytes } => format!(
                "MineBox: only {:.1} GiB of {:.1} GiB free on {path}; the nodes stop before it is full",
                *free_bytes as f64 / (1u64 << 30) as f64,
                *total_bytes as f64 / (1u64 << 30) as f64
            ),
            Alert::UpdateInstalled { version, from_version } => {
                format!("MineBox updated from {from_version} to {version}")
            }
            Alert::UpdateRolledBack { version, from_version, message } => {
                format!("MineBox: the update to {version} failed its trial and the box went back to {from_version} ({message})")
            }
        }
    }

    /// The webhook's JSON: `event`, the alert's fields and `message` (the headline).
    pub fn json(&self) -> Value {
        let mut v = match self {
            Alert::BlockFound { coin, height, hash, worker, reward_sats } => {
                json!({ "coin": coin, "height": height, "hash": hash, "worker": worker, "reward_sats": reward_sats })
            }
            Alert::NodeSynced { coin, height } => json!({ "coin": coin, "height": height }),
            Alert::NodeDown { coin, state, detail } => {
                json!({ "coin": coin, "state": state.as_str(), "detail": detail })
            }
            Alert::MinerSilent { coin, worker, minutes } => {
                json!({ "coin": coin, "worker": worker, "minutes": minutes })
            }
            Alert::HashrateLow { coin, worker, now, avg24h } => {
                json!({ "coin": coin, "worker": worker, "hashrate_1h": now, "hashrate_24h": avg24h })
            }
            Alert::DiskLow { path, free_bytes, total_bytes } => {
                json!({ "path": path, "free_bytes": free_bytes, "total_bytes": total_bytes })
            }
            Alert::UpdateInstalled { version, from_version } => {
                json!({ "version": version, "from_version": from_version })
            }
            Alert::UpdateRolledBack { version, from_version, message } => {
                json!({ "version": version, "from_version": from_version, "detail": message })
            }
        };
        v["event"] = json!(self.kind());
        v["message"] = json!(self.headline());
        v
    }

    pub fn email(&self) -> Email {
        Email {
            subject: format!("MineBox: {}", self.title()),
            body: format!(
                "{}\r\n\r\nThe status page (http://minebox.local) shows the details.\r\n\
                 Alerts are set under Settings, [notify] in minebox.toml.\r\n",
                self.headline()
            ),
        }
    }
}

/// When a condition is worth an alert (from `[notify]`).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Thresholds {
    pub quiet_secs: i64,
    pub miner_silent_secs: i64,
    /// 0: off.
    pub hashrate_low_percent: f64,
    pub disk_low_bytes: u64,
    /// 0: off.
    pub disk_low_percent: f64,
}

impl Thresholds {
    pub fn from_settings(n: &minebox_settings::NotifySettings) -> Thresholds {
        Thresholds {
            quiet_secs: n.quiet_secs as i64,
            miner_silent_secs: n.miner_silent_secs as i64,
            hashrate_low_percent: n.hashrate_low_percent as f64,
            disk_low_bytes: n.disk_low_bytes,
            disk_low_percent: n.disk_low_percent as f64,
        }
    }
}

/// A worker as the alerts see it (from the stratum server's worker list).
#[derive(Debug, Clone, PartialEq)]
pub struct WorkerSeen {
    pub coin: String,
    pub worker: String,
    /// Unix seconds of the last share; 0 if it never sent one.
    pub last_share_at: i64,
    pub hashrate_1h: f64,
    pub hashrate_24h: f64,
}

/// What the box looked like at one moment. `None`: that source did not answer, and its
/// conditions stay as they were (a service restarting is not a recovery, nor a new problem).
#[derive(Debug, Clone, Default)]
pub struct Observation {
    /// Coin, state, detail, height.
    pub nodes: Option<Vec<(String, NodeState, String, u64)>>,
    pub workers: Option<Vec<WorkerSeen>>,
    /// Path, free bytes, total bytes.
    pub disk: Option<(String, u64, u64)>,
    pub last_update: Option<HistoryEntry>,
}

/// A miner silent longer than this is gone, not silent: no alert for a long-retired worker.
const SILENT_FOR_AT_MOST: i64 = 24 * 3600;
/// An update result this recent when first seen is news (the status service starts at boot,
/// before or just after the updater records the trial's outcome).
const UPDATE_NEWS_FOR: i64 = 3600;

#[derive(Debug, Clone, Default)]
struct Cond {
    active: bool,
    /// Announced since it last started.
    announced: bool,
    last_sent: Option<i64>,
    /// Seen in the last observation of its source (others are forgotten once quiet).
    seen: bool,
}

/// The state machine: feed it with [`Alerts::observe`]; it returns the alerts to send.
#[derive(Debug)]
pub struct Alerts {
    th: Thresholds,
    conds: HashMap<(&'static str, String), Cond>,
    /// Nodes seen at least once (a node already synced when first seen is no news).
    nodes_seen: HashMap<String, NodeState>,
    /// The update result last seen (its time), so each is announced once.
    update_seen: Option<u64>,
}

impl Alerts {
    pub fn new(th: Thresholds) -> Alerts {
        Alerts { th, conds: HashMap::new(), nodes_seen: HashMap::new(), update_seen: None }
    }

    /// New thresholds (a settings change); the conditions' history stays.
    pub fn set_thresholds(&mut self, th: Thresholds) {
        self.th = th;
    }

    /// How many conditions are remembered (bounded by what the sources report).
    pub fn remembered(&self) -> usize {
        self.conds.len()
    }

    /// Updates a condition; true when it is to be announced now.
    fn edge(&mut self, kind: &'static str, key: &str, active: bool, now: i64) -> bool {
        let quiet = self.th.quiet_secs;
        let c = self.conds.entry((kind, key.to_string())).or_default();
        c.seen = true;
        if !active {
            c.active = false;
            c.announced = false;
            return false;
        }
        if !c.active {
            c.active = true;
            c.announced = false;
        }
        if c.announced || c.last_sent.is_some_and(|t| now - t < quiet) {
            return false;
        }
        c.announced = true;
        c.last_sent = Some(now);
        true
    }

    /// Before a source's round: marks its conditions unseen; after: forgets the unseen ones
    /// that are quiet (a worker that left the list, a coin turned off).
    fn sweep(&mut self, kinds: &[&str], now: i64, start: bool) {
        let quiet = self.th.quiet_secs;
        if start {
            for ((k, _), c) in self.conds.iter_mut() {
                if kinds.contains(k) {
                    c.seen = false;
                }
            }
        } else {
            self.conds.retain(|(k, _), c| !kinds.contains(k) || c.seen || c.last_sent.is_some_and(|t| now - t < quiet));
        }
    }

    /// One observation at `now` (unix seconds): the alerts that start now, each once.
    pub fn observe(&mut self, obs: &Observation, now: i64) -> Vec<Alert> {
        let mut out = Vec::new();
        if let Some(nodes) = &obs.nodes {
            self.sweep(&["node_synced", "node_down"], now, true);
            for (coin, state, detail, height) in nodes {
                let first = !self.nodes_seen.contains_key(coin);
                self.nodes_seen.insert(coin.clone(), *state);
                let synced = *state == NodeState::Synced;
                if first && synced {
                    // Already synced when first seen: no news; it is announced after a fall.
                    let c = self.conds.entry(("node_synced", coin.clone())).or_default();
                    (c.active, c.announced, c.seen) = (true, true, true);
                } else if self.edge("node_synced", coin, synced, now) {
                    out.push(Alert::NodeSynced { coin: coin.clone(), height: *height });
                }
                let down = matches!(state, NodeState::Crashed | NodeState::CrashLoop | NodeState::StoppedForDisk);
                // Crashed then crash-looping is one episode; the edge is "down" as a whole.
                if self.edge("node_down", coin, down, now) {
                    out.push(Alert::NodeDown { coin: coin.clone(), state: *state, detail: detail.clone() });
                }
            }
            self.sweep(&["node_synced", "node_down"], now, false);
            self.nodes_seen.retain(|c, _| nodes.iter().any(|n| &n.0 == c));
        }
        if let Some(workers) = &obs.workers {
            self.sweep(&["miner_silent", "hashrate_low"], now, true);
            for w in workers {
                let key = format!("{}/{}", w.coin, w.worker);
                let silent_for = now - w.last_share_at;
                let silent =
                    w.last_share_at > 0 && silent_for >= self.th.miner_silent_secs && silent_for < SILENT_FOR_AT_MOST;
                if self.edge("miner_silent", &key, silent, now) {
                    out.push(Alert::MinerSilent {
                        coin: w.coin.clone(),
                        worker: w.worker.clone(),
                        minutes: (silent_for / 60) as u64,
                    });
                }
                // A silent miner is told once, as silent, not also as slow (nor a gone one).
                let low = w.last_share_at > 0
                    && silent_for < self.th.miner_silent_secs
                    && self.th.hashrate_low_percent > 0.0
                    && w.hashrate_24h > 0.0
                    && w.hashrate_1h < w.hashrate_24h * self.th.hashrate_low_percent / 100.0;
                if self.edge("hashrate_low", &key, low, now) {
                    out.push(Alert::HashrateLow {
                        coin: w.coin.clone(),
                        worker: w.worker.clone(),
                        now: w.hashrate_1h,
                        avg24h: w.hashrate_24h,
                    });
                }
            }
            self.sweep(&["miner_silent", "hashrate_low"], now, false);
        }
        if let Some((path, free, total)) = &obs.disk {
            let low = *total > 0
                && (*free < self.th.disk_low_bytes
                    || (*free as f64) < *total as f64 * self.th.disk_low_percent / 100.0);
            if self.edge("disk_low", path, low, now) {
                out.push(Alert::DiskLow { path: path.clone(), free_bytes: *free, total_bytes: *total });
            }
        }
        if let Some(u) = &obs.last_update {
            let first = self.update_seen.is_none();
            let new = self.update_seen != Some(u.at) && (!first || now - (u.at as i64) < UPDATE_NEWS_FOR);
            self.update_seen = Some(u.at);
            if new {
                match u.result {
                    Outcome::Installed => out.push(Alert::UpdateInstalled {
                        version: u.version.clone(),
                        from_version: u.from_version.clone(),
                    }),
                    Outcome::RolledBack => out.push(Alert::UpdateRolledBack {
                        version: u.version.clone(),
                        from_version: u.from_version.clone(),
                        message: u.message.clone(),
                    }),
                    // Refused before a trial: the box runs as before; the page shows why.
                    Outcome::Failed => {}
                }
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const TH: Thresholds = Thresholds {
        quiet_secs: 3600,
        miner_silent_secs: 600,
        hashrate_low_percent: 50.0,
        disk_low_bytes: 1 << 30,
        disk_low_percent: 5.0,
    };

    fn nodes(state: NodeState) -> Observation {
        Observation { nodes: Some(vec![("btc".into(), state, "exit 1".into(), 100)]), ..Default::default() }
    }

    fn worker(last_share_at: i64, h1: f64, d1: f64) -> Observation {
        Observation {
            workers: Some(vec![WorkerSeen {
                coin: "btc".into(),
                worker: "bc1q.axe".into(),
                last_share_at,
                hashrate_1h: h1,
                hashrate_24h: d1,
            }]),
            ..Default::default()
        }
    }

    fn kinds(a: &[Alert]) -> Vec<&'static str> {
        a.iter().map(Alert::kind).collect()
    }

    #[test]
    fn a_node_down_is_told_once_then_again_only_after_it_cleared_and_the_quiet_period() {
        let mut a = Alerts::new(TH);
        assert_eq!(kinds(&a.observe(&nodes(NodeState::Crashed), 0)), ["node_down"]);
        // Still down, then crash-looping: the same episode.
        assert!(a.observe(&nodes(NodeState::Crashed), 60).is_empty());
        assert!(a.observe(&nodes(NodeState::CrashLoop), 120).is_empty());
        // Back, down again within the hour: held back, even while it lasts.
        assert!(a.observe(&nodes(NodeState::Starting), 600).is_empty());
        assert!(a.observe(&nodes(NodeState::Crashed), 700).is_empty());
        assert!(a.observe(&nodes(NodeState::Crashed), 3599).is_empty());
        // Still down when the quiet period ends: told now, once.
        assert_eq!(kinds(&a.observe(&nodes(NodeState::CrashLoop), 3600)), ["node_down"]);
        assert!(a.observe(&nodes(NodeState::CrashLoop), 4000).is_empty());
        // Cleared, and after the quiet period a new episode is told at once.
        assert!(a.observe(&nodes(NodeState::Syncing), 5000).is_empty());
        assert_eq!(kinds(&a.observe(&nodes(NodeState::StoppedForDisk), 7300)), ["node_down"]);
    }

    #[test]
    fn synced_is_news_only_when_the_node_becomes_synced() {
        let mut a = Alerts::new(TH);
        assert!(a.observe(&nodes(NodeState::Synced), 0).is_empty(), "already synced at start");
        assert!(a.observe(&nodes(NodeState::Syncing), 100).is_empty());
        assert_eq!(kinds(&a.observe(&nodes(NodeState::Synced), 200)), ["node_synced"]);
        let mut b = Alerts::new(TH);
        assert!(b.observe(&nodes(NodeState::Syncing), 0).is_empty());
        assert_eq!(kinds(&b.observe(&nodes(NodeState::Synced), 10)), ["node_synced"]);
    }

    #[test]
    fn a_silent_miner_and_a_slow_one() {
        let mut a = Alerts::new(TH);
        assert!(a.observe(&worker(1000, 1e12, 1e12), 1000 + 599).is_empty());
        let got = a.observe(&worker(1000, 1e12, 1e12), 1000 + 600);
        assert_eq!(got, [Alert::MinerSilent { coin: "btc".into(), worker: "bc1q.axe".into(), minutes: 10 }]);
        assert!(a.observe(&worker(1000, 1e12, 1e12), 1000 + 1200).is_empty());
        // Still silent hours later, past the quiet period: the same episode, told once.
        assert!(a.observe(&worker(1000, 1e12, 1e12), 1000 + 9000).is_empty());
        // A miner silent for over a day is gone, not news (nor its slowness).
        let mut b = Alerts::new(TH);
        assert!(b.observe(&worker(1, 0.0, 1e12), 2 * 86400).is_empty());
        // Slow: the last hour under half the 24 h average.
        let mut c = Alerts::new(TH);
        assert!(c.observe(&worker(100, 0.6e12, 1e12), 110).is_empty());
        assert_eq!(kinds(&c.observe(&worker(200, 0.4e12, 1e12), 210)), ["hashrate_low"]);
        assert!(c.observe(&worker(300, 0.3e12, 1e12), 310).is_empty());
    }

    #[test]
    fn disk_low_by_bytes_or_share_and_a_source_that_does_not_answer_changes_nothing() {
        let disk = |free: u64| Observation { disk: Some(("/data".into(), free, 100 << 30)), ..Default::default() };
        let mut a = Alerts::new(TH);
        assert!(a.observe(&disk(6 << 30), 0).is_empty());
        assert_eq!(kinds(&a.observe(&disk(4 << 30), 10)), ["disk_low"], "under 5 %");
        // No answer is neither a recovery nor a new problem.
        assert!(a.observe(&Observation::default(), 20).is_empty());
        assert!(a.observe(&disk(4 << 30), 30).is_empty());
        assert!(a.observe(&disk(50 << 30), 4000).is_empty());
        assert_eq!(kinds(&a.observe(&disk(512 << 20), 4000)), ["disk_low"]);
    }

    #[test]
    fn each_update_result_is_told_once() {
        let entry = |at: u64, result| HistoryEntry {
            at,
            version: "1.2.0".into(),
            from_version: "1.1.0".into(),
            result,
            message: "health check failed".into(),
        };
        let up = |e| Observation { last_update: Some(e), ..Default::default() };
        let mut a = Alerts::new(TH);
        // An old result at start is not news; a fresh one (the reboot into it) is.
        assert!(a.observe(&up(entry(100, Outcome::Installed)), 100_000).is_empty());
        let mut b = Alerts::new(TH);
        assert_eq!(kinds(&b.observe(&up(entry(100_000, Outcome::Installed)), 100_060)), ["update_installed"]);
        assert!(b.observe(&up(entry(100_000, Outcome::Installed)), 100_120).is_empty());
        assert_eq!(kinds(&b.observe(&up(entry(200_000, Outcome::RolledBack)), 200_001)), ["update_rolled_back"]);
        assert!(b.observe(&up(entry(300_000, Outcome::Failed)), 300_001).is_empty());
    }

    #[test]
    fn workers_that_left_are_forgotten_once_quiet() {
        let mut a = Alerts::new(TH);
        let many = |n: usize, t: i64| Observation {
            workers: Some(
                (0..n)
                    .map(|i| WorkerSeen {
                        coin: "btc".into(),
                        worker: format!("w{i}"),
                        last_share_at: t - 700,
                        hashrate_1h: 1.0,
                        hashrate_24h: 1.0,
                    })
                    .collect(),
            ),
            ..Default::default()
        };
        assert_eq!(a.observe(&many(100, 1000), 1000).len(), 100);
        assert_eq!(a.observe(&many(0, 9000), 9000).len(), 0);
        assert_eq!(a.remembered(), 0);
    }

    #[test]
    fn every_alert_renders_for_every_target() {
        let a = Alert::HashrateLow { coin: "btc".into(), worker: "w".into(), now: 4.2e11, avg24h: 1.1e12 };
        assert_eq!(a.json()["event"], "hashrate_low");
        assert!(a.headline().contains("420.00 GH/s") && a.headline().contains("1.10 TH/s"), "{}", a.headline());
        let e = a.email();
        assert_eq!(e.subject, "MineBox: Hashrate low");
        assert!(e.body.starts_with(&a.headline()));
    }
}
