//! One coin's node keeper: starts the node, watches its health through its own RPC,
//! restarts it with backoff when it dies, gives up loudly on a crash loop, and stops it
//! cleanly before the disk fills.

use crate::backend::{Backend, Exit, Resources, Running};
use crate::event::Event;
use crate::health::{self, Health, NodeState};
use crate::launch::{self, Launch, Phase};
use minebox_node_rpc::{Auth, NodeClient};
use minebox_settings::{CoinSettings, NodeKind, SupervisorSettings};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::sync::{broadcast, mpsc};
use tokio_util::sync::CancellationToken;

/// What the API can ask of a keeper.
#[derive(Debug)]
pub enum Command {
    Start,
    Stop,
}

/// Timings and limits: the user-tunable ones from `[supervisor]` (their defaults live in
/// defaults.toml), the rest the keeper's own pacing below. Tests build short ones.
#[derive(Debug, Clone)]
pub struct Policy {
    pub health_every: Duration,
    pub first_backoff: Duration,
    pub max_backoff: Duration,
    /// This many crashes within `crash_window` is a crash loop.
    pub crash_loop_after: usize,
    pub crash_window: Duration,
    pub stall_after: Duration,
    pub disk_reserve_mib: u64,
    /// How long a node gets to stop after its `stop` RPC before it is signalled.
    pub stop_grace: Duration,
}

// Not settings keys: how the keeper paces itself is not the owner's choice (a longer
// backoff or a looser crash-loop rule only hides a broken node for longer).
/// Between health polls of a running node.
const HEALTH_EVERY: Duration = Duration::from_secs(10);
/// The first restart delay after a crash; it doubles up to [`MAX_BACKOFF`].
const FIRST_BACKOFF: Duration = Duration::from_secs(1);
const MAX_BACKOFF: Duration = Duration::from_secs(60);
/// This many crashes within [`CRASH_WINDOW`] is a crash loop: the keeper gives up.
const CRASH_LOOP_AFTER: usize = 5;
const CRASH_WINDOW: Duration = Duration::from_secs(600);
/// A node flushing its chain state on the way down may take this long (Core on an SD card).
const STOP_GRACE: Duration = Duration::from_secs(120);

impl From<&SupervisorSettings> for Policy {
    fn from(s: &SupervisorSettings) -> Policy {
        Policy {
            health_every: HEALTH_EVERY,
            first_backoff: FIRST_BACKOFF,
            max_backoff: MAX_BACKOFF,
            crash_loop_after: CRASH_LOOP_AFTER,
            crash_window: CRASH_WINDOW,
            stall_after: s.stall_after,
            disk_reserve_mib: s.disk_reserve_mib,
            stop_grace: STOP_GRACE,
        }
    }
}

/// What the API shows for a node: one type with the API's readers.
pub use minebox_api::supervisor::Node as NodeView;

pub type SharedView = Arc<Mutex<NodeView>>;

pub struct Keeper {
    pub coin: CoinSettings,
    pub nodes_dir: PathBuf,
    pub secrets_dir: PathBuf,
    pub backend: Arc<Backend>,
    pub policy: Policy,
    pub view: SharedView,
    pub events: broadcast::Sender<Event>,
}

enum Wake {
    Exited(Exit),
    Tick,
    Command(Command),
    Shutdown,
}

fn free_mib(path: &std::path::Path) -> Option<u64> {
    minebox_platform::fs::free_space(path).ok().map(|b| b / (1024 * 1024))
}

impl Keeper {
    fn set(&self, state: NodeState, detail: impl Into<String>) {
        let mut v = self.view.lock().expect("view lock");
        v.state = state;
        v.detail = detail.into();
    }

    fn emit(&self, e: Event) {
        tracing::info!(coin = %self.coin.id, event = ?e, "node event");
        let _ = self.events.send(e);
    }

    fn resources(&self) -> Resources {
        Resources {
            memory_max_mib: self.coin.memory_budget_mib + self.coin.memory_budget_mib / 4,
            cpu_weight: 50,
            io_weight: 50,
        }
    }

    /// Runs until `shutdown`, then stops the node cleanly.
    pub async fn run(self, mut commands: mpsc::Receiver<Command>, shutdown: CancellationToken) {
        if self.coin.node == NodeKind::External {
            return self.watch_external(commands, shutdown).await;
        }
        let mut wanted = self.coin.enabled;
        let mut phase = Phase::InitialSync;
        let mut crashes: Vec<Instant> = Vec::new();
        let mut backoff = self.policy.first_backoff;
        if !wanted {
            self.set(NodeState::Stopped, "coin not enabled");
        }
        'outer: loop {
            if !wanted {
                match tokio::select! { c = commands.recv() => c, _ = shutdown.cancelled() => None } {
                    Some(Command::Start) => {
                        wanted = true;
                        crashes.clear();
                        backoff = self.policy.first_backoff;
                    }
                    Some(Command::Stop) => continue,
                    None => return,
                }
            }
            // Disk first: never start a node onto a disk that is about to fill.
            if let Some(free) = free_mib(&self.nodes_dir) {
                if free < self.policy.disk_reserve_mib {
                    let why = format!(
                        "only {free} MiB free, below the {} MiB reserve: free disk space, then start the coin again",
                        self.policy.disk_reserve_mib
                    );
                    self.set(NodeState::StoppedForDisk, why.clone());
                    self.emit(Event::StoppedForDisk { coin: self.coin.id.clone(), detail: why });
                    wanted = false;
                    continue;
                }
            }
            let plan = match launch::plan(&self.coin, &self.nodes_dir, &self.secrets_dir, phase) {
                Ok(p) => p,
                Err(e) => {
                    self.set(NodeState::Crashed, e.to_string());
                    wanted = false;
                    continue;
                }
            };
            {
                let mut v = self.view.lock().expect("view lock");
                v.rpc_url = plan.rpc_url.clone();
                v.zmq_hashblock = plan.zmq_hashblock.clone();
                v.credentials_file = plan.credentials.path.clone();
            }
            self.set(NodeState::Starting, "starting");
            let running = match self.backend.start(&plan, &self.resources()).await {
                Ok(r) => r,
                Err(e) => {
                    crashes.push(Instant::now());
                    self.set(NodeState::Crashed, e.to_string());
                    if self.crash_loop(&mut crashes, &e.to_string()) {
                        wanted = false;
                        continue;
                    }
                    if self.sleep_or_command(backoff, &mut commands, &shutdown, &mut wanted).await {
                        return;
                    }
                    backoff = (backoff * 2).min(self.policy.max_backoff);
                    continue;
                }
            };
            self.view.lock().expect("view lock").pid = running.pid;
            self.emit(Event::NodeStarted { coin: self.coin.id.clone(), pid: running.pid });
            match self.watch(running, &plan, &mut commands, &shutdown, &mut phase).await {
                Ended::Shutdown => return,
                Ended::Stopped => {
                    wanted = false;
                    self.set(NodeState::Stopped, "stopped on request");
                }
                Ended::Restart => continue 'outer,
                Ended::DiskLow(why) => {
                    wanted = false;
                    self.set(NodeState::StoppedForDisk, why.clone());
                    self.emit(Event::StoppedForDisk { coin: self.coin.id.clone(), detail: why });
                }
                Ended::Crashed(exit, ran_for) => {
                    // A node that ran a good while before dying starts a fresh backoff series.
                    if ran_for > self.policy.max_backoff * 2 {
                        backoff = self.policy.first_backoff;
                    }
                    crashes.push(Instant::now());
                    let why = format!("node {exit}");
                    self.view.lock().expect("view lock").restarts += 1;
                    self.set(NodeState::Crashed, why.clone());
                    self.emit(Event::NodeCrashed { coin: self.coin.id.clone(), detail: why.clone() });
                    if self.crash_loop(&mut crashes, &why) {
                        wanted = false;
                        continue;
                    }
                    tracing::warn!(coin = %self.coin.id, %exit, retry_in = ?backoff, "node died; restarting");
                    if self.sleep_or_command(backoff, &mut commands, &shutdown, &mut wanted).await {
                        return;
                    }
                    backoff = (backoff * 2).min(self.policy.max_backoff);
                }
            }
        }
    }

    /// Records a crash; true (and the state set) when they add up to a crash loop.
    fn crash_loop(&self, crashes: &mut Vec<Instant>, why: &str) -> bool {
        let window = self.policy.crash_window;
        crashes.retain(|t| t.elapsed() < window);
        if crashes.len() >= self.policy.crash_loop_after {
            let detail = format!(
                "crashed {} times in {} s (last: {why}); not restarting until it is started again — check the node's log",
                crashes.len(),
                window.as_secs()
            );
            self.set(NodeState::CrashLoop, detail.clone());
            self.emit(Event::CrashLoop { coin: self.coin.id.clone(), detail });
            return true;
        }
        false
    }

    /// Sleeps for a backoff, unless told otherwise; true means shut down.
    async fn sleep_or_command(
        &self,
        d: Duration,
        commands: &mut mpsc::Receiver<Command>,
        shutdown: &CancellationToken,
        wanted: &mut bool,
    ) -> bool {
        tokio::select! {
            _ = shutdown.cancelled() => true,
            _ = tokio::time::sleep(d) => false,
            c = commands.recv() => {
                match c {
                    Some(Command::Stop) => { *wanted = false; self.set(NodeState::Stopped, "stopped on request"); false }
                    Some(Command::Start) => false,
                    None => true,
                }
            }
        }
    }

    async fn watch(
        &self,
        running: Running,
        plan: &Launch,
        commands: &mut mpsc::Receiver<Command>,
        shutdown: &CancellationToken,
        phase: &mut Phase,
    ) -> Ended {
        let started = Instant::now();
        let client = NodeClient::new(
            &plan.rpc_url,
            Auth::UserPass { user: plan.credentials.user.clone(), pass: plan.credentials.password.clone() },
        )
        .expect("local URL");
        let mut tick = tokio::time::interval(self.policy.health_every);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut last_height: Option<(u64, Instant)> = None;
        let mut exited = running.exited.clone();
        loop {
            let wake = tokio::select! {
                r = exited.wait_for(|e| e.is_some()) => Wake::Exited(r.ok().and_then(|e| e.clone()).unwrap_or(Exit { code: None, signal: None })),
                _ = tick.tick() => Wake::Tick,
                c = commands.recv() => c.map(Wake::Command).unwrap_or(Wake::Shutdown),
                _ = shutdown.cancelled() => Wake::Shutdown,
            };
            match wake {
                Wake::Exited(exit) => return Ended::Crashed(exit, started.elapsed()),
                Wake::Command(Command::Start) => {}
                Wake::Command(Command::Stop) => {
                    self.stop_node(&client, running).await;
                    self.emit(Event::NodeStopped { coin: self.coin.id.clone() });
                    return Ended::Stopped;
                }
                Wake::Shutdown => {
                    self.stop_node(&client, running).await;
                    self.set(NodeState::Stopped, "supervisor shut down");
                    return Ended::Shutdown;
                }
                Wake::Tick => {
                    if let Some(free) = free_mib(&self.nodes_dir) {
                        if free < self.policy.disk_reserve_mib {
                            let why = format!("stopped: only {free} MiB free, below the {} MiB reserve; free disk space, then start the coin again", self.policy.disk_reserve_mib);
                            tracing::error!(coin = %self.coin.id, "{why}");
                            self.stop_node(&client, running).await;
                            return Ended::DiskLow(why);
                        }
                    }
                    // Caught up with a cache sized for initial sync: the node is restarted once
                    // with the smaller cache, leaving memory for the rest. It is not reported
                    // synced before that restart: the page, the API and the stratum server would
                    // take a node (and a pid) that is about to go down for a ready one.
                    let resize_cache = *phase == Phase::InitialSync && plan.dbcache_mib.is_some();
                    let probed = health::probe(&client, &plan.data_dir).await;
                    if self.observe(probed, &mut last_height, !resize_cache) == Some(NodeState::Synced) {
                        *phase = Phase::Synced;
                        if resize_cache {
                            tracing::info!(coin = %self.coin.id, "synced: restarting the node with a smaller dbcache");
                            self.stop_node(&client, running).await;
                            return Ended::Restart;
                        }
                    }
                }
            }
        }
    }

    /// One health probe's result into the view (and events); the state, if the node answered.
    /// Without `may_report_synced`, a synced node is shown as starting (it is about to be
    /// restarted) and no synced event is sent.
    fn observe(
        &self,
        probed: Result<Health, minebox_node_rpc::RpcError>,
        last_height: &mut Option<(u64, Instant)>,
        may_report_synced: bool,
    ) -> Option<NodeState> {
        let h = match probed {
            Ok(h) => h,
            Err(e) => {
                // Starting nodes answer "warming up" or refuse the connection.
                let previous = self.view.lock().expect("view lock").state;
                if previous == NodeState::Starting || e.is_transient() {
                    self.set(NodeState::Starting, format!("waiting for RPC: {e}"));
                } else {
                    self.set(NodeState::Starting, format!("RPC error: {e}"));
                }
                return None;
            }
        };
        if last_height.map(|(height, _)| height) != Some(h.blocks) {
            *last_height = Some((h.blocks, Instant::now()));
        }
        let still_for = last_height.map(|(_, t)| t.elapsed()).unwrap_or_default();
        let state = health::classify(&h, still_for, self.policy.stall_after);
        if state == NodeState::Synced && !may_report_synced {
            self.view.lock().expect("view lock").health = Some(h.clone());
            self.set(
                NodeState::Starting,
                format!("caught up at height {}: restarting with the smaller cache for a synced node", h.blocks),
            );
            return Some(state);
        }
        let detail = match state {
            NodeState::Syncing => {
                format!("{:.1}% ({} of {} blocks)", h.verification_progress * 100.0, h.blocks, h.headers)
            }
            NodeState::Stalled => format!(
                "no new block for {} s while {} behind",
                still_for.as_secs(),
                h.headers.saturating_sub(h.blocks)
            ),
            _ => format!("height {}", h.blocks),
        };
        let previous = self.view.lock().expect("view lock").state;
        if state != previous {
            match state {
                NodeState::Synced => self.emit(Event::NodeSynced { coin: self.coin.id.clone(), height: h.blocks }),
                NodeState::Stalled => {
                    self.emit(Event::NodeStalled { coin: self.coin.id.clone(), detail: detail.clone() })
                }
                _ => {}
            }
        }
        self.view.lock().expect("view lock").health = Some(h);
        self.set(state, detail);
        Some(state)
    }

    /// An external node (`node = "external"`): someone else runs it, so it is only watched
    /// (health, sync, stalls) through its RPC with the credentials file the user provided;
    /// never started, stopped or restarted. Start/stop requests change nothing.
    async fn watch_external(&self, mut commands: mpsc::Receiver<Command>, shutdown: CancellationToken) {
        let rpc_url = self.coin.rpc_url();
        {
            let mut v = self.view.lock().expect("view lock");
            v.rpc_url = rpc_url.clone();
            v.credentials_file = self.coin.rpc_cookie.clone();
            v.zmq_hashblock = self.coin.zmq_hashblock();
            v.backend = "external".into();
        }
        let client = if self.coin.enabled {
            match NodeClient::new(&rpc_url, Auth::CookieFile(self.coin.rpc_cookie.clone())) {
                Ok(c) => Some(c),
                Err(e) => {
                    self.set(NodeState::Stopped, format!("external node {rpc_url}: {e}"));
                    None
                }
            }
        } else {
            self.set(NodeState::Stopped, "coin not enabled");
            None
        };
        let mut tick = tokio::time::interval(self.policy.health_every);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut last_height: Option<(u64, Instant)> = None;
        loop {
            tokio::select! {
                _ = shutdown.cancelled() => return,
                c = commands.recv() => match c {
                    None => return,
                    Some(c) => tracing::info!(coin = %self.coin.id, command = ?c, "external node: MineBox does not start or stop it"),
                },
                _ = tick.tick(), if client.is_some() => {
                    let client = client.as_ref().expect("checked");
                    // No data directory here: disk use is whatever the node reports.
                    self.observe(health::probe(client, std::path::Path::new("")).await, &mut last_height, true);
                }
            }
        }
    }

    /// The node's own `stop` RPC first (it flushes its databases), signals only if it hangs.
    async fn stop_node(&self, client: &NodeClient, running: Running) {
        let _ = client.stop().await;
        let mut exited = running.exited.clone();
        let graceful = tokio::time::timeout(self.policy.stop_grace, exited.wait_for(|e| e.is_some())).await.is_ok();
        if !graceful {
            tracing::warn!(coin = %self.coin.id, "node did not stop after its stop RPC; signalling it");
        }
        running.stop(Duration::from_secs(30)).await;
        self.view.lock().expect("view lock").pid = None;
    }
}

enum Ended {
    Crashed(Exit, Duration),
    Stopped,
    Restart,
    DiskLow(String),
    Shutdown,
}
