//! The running service: for every enabled coin a listener, a work feed and a block desk;
//! one statistics writer and one local API for all of them.

use crate::api::{self, ApiState, CoinView};
use crate::block::BlockDesk;
use crate::connection::Limits;
use crate::event::Event;
use crate::job::{CoinbaseRules, JobBook};
use crate::pool::{LiveMiners, Pool};
use crate::pplns::desk::{PoolModeConfig, PplnsDesk};
use crate::session::{PayoutPolicy, PoolContext};
use crate::share_log::ShareLog;
use crate::stats::Registry;
use crate::store::Store;
use crate::vardiff::VardiffConfig;
use crate::work::{NodeStatus, WorkConfig, WorkFeed};
use anyhow::Context;
use bitcoin::ScriptBuf;
use minebox_node_rpc::NodeClient;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::net::TcpListener;
use tokio::sync::{broadcast, mpsc, watch};
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

/// One coin's server.
pub struct CoinConfig {
    /// Coin id from its descriptor, e.g. `btc`.
    pub coin: String,
    pub network: String,
    pub listen: SocketAddr,
    pub node: NodeClient,
    pub zmq_hashblock: Option<String>,
    pub segwit: bool,
    /// Smallest transaction the coin's consensus allows (100 on Bitcoin Cash and forks).
    pub min_tx_size: usize,
    pub payouts: Box<dyn PayoutPolicy>,
    pub vardiff: VardiffConfig,
    pub coinbase_tag: String,
    pub extranonce2_len: usize,
    pub version_mask: u32,
    pub template_refresh: Duration,
    pub block_poll: Duration,
    /// Silence from the upstream pool before its connection is dropped and retried.
    pub upstream_idle: Duration,
    /// The solo pool miners work for while the node cannot give work (none by default).
    pub upstream: Option<minebox_settings::Upstream>,
    /// Pool connections of the coin at most: the owner's and one per miner address.
    pub upstream_max_connections: usize,
    /// How long a miner address's pool connection outlives its last miner.
    pub upstream_grace: Duration,
}

pub struct ServiceConfig {
    pub coins: Vec<CoinConfig>,
    pub database: PathBuf,
    pub api_listen: SocketAddr,
    /// How often statistics are written to the database.
    pub stats_flush: Duration,
    pub limits: Limits,
    /// The supervisor's event stream (`http://127.0.0.1:3391/api/v1/events`), if it runs:
    /// a node that (re)started or finished syncing gets its miners fresh work at once.
    pub supervisor_events: Option<String>,
}

/// A started service: where it listens, and how to stop it.
pub struct Running {
    pub api: SocketAddr,
    pub stratum: Vec<(String, SocketAddr)>,
    /// Pool ports (PPLNS), per coin with pool mode on.
    pub pool_ports: Vec<(String, SocketAddr)>,
    pub events: broadcast::Sender<Event>,
    pub store: Store,
    pub stats: Arc<Registry>,
    shutdown: CancellationToken,
    tasks: JoinSet<()>,
}

impl Running {
    pub fn stratum_addr(&self, coin: &str) -> Option<SocketAddr> {
        self.stratum.iter().find(|(c, _)| c == coin).map(|(_, a)| *a)
    }

    pub fn pool_addr(&self, coin: &str) -> Option<SocketAddr> {
        self.pool_ports.iter().find(|(c, _)| c == coin).map(|(_, a)| *a)
    }

    /// Stops accepting, closes every connection, writes the last statistics, and returns.
    pub async fn stop(mut self) {
        self.shutdown.cancel();
        while self.tasks.join_next().await.is_some() {}
    }

    /// Waits until the service stops by itself (it does not, short of a panic) or `signal` fires.
    pub async fn run_until(self, signal: impl std::future::Future<Output = ()>) {
        signal.await;
        tracing::info!("stopping: closing miner connections and writing statistics");
        self.stop().await;
    }
}

pub async fn start(config: ServiceConfig) -> anyhow::Result<Running> {
    start_with_pools(config, Vec::new()).await
}

/// A pool port's authorize never reads an address: logins name registered users.
struct UsersOnly;

impl PayoutPolicy for UsersOnly {
    fn payout_script(&self, _: &str) -> Result<ScriptBuf, String> {
        Err("this is a pool port: authorize as <user>.<worker> of a user registered on the box".into())
    }
}

/// [`start`], with pool mode (PPLNS) on for the coins `pools` names.
pub async fn start_with_pools(config: ServiceConfig, mut pools: Vec<PoolModeConfig>) -> anyhow::Result<Running> {
    let store = Store::open(&config.database)?;
    if !pools.is_empty() {
        store.open_pplns().context("creating the pool mode tables")?;
    }
    let mut pool_views = Vec::new();
    let stats = Arc::new(Registry::with_limits(crate::stats::WorkerLimits::from(&config.limits)));
    let share_log = Arc::new(ShareLog::default());
    let restored = store.load_workers().context("reading saved worker statistics")?;
    let count = restored.len();
    for w in restored {
        stats.restore(w);
    }
    tracing::info!(workers = count, kept = stats.len(), db = %config.database.display(), "statistics restored");

    let (events, _) = broadcast::channel(256);
    let shutdown = CancellationToken::new();
    let mut tasks = JoinSet::new();
    let mut views = Vec::new();
    let mut addrs = Vec::new();
    let mut pool_addrs = Vec::new();
    let mut kicks = std::collections::HashMap::new();

    for c in config.coins {
        crate::coinbase::Coinbase::check(c.extranonce2_len, c.coinbase_tag.as_bytes())
            .with_context(|| format!("{}: the stratum settings cannot make work miners accept", c.coin))?;
        let listener = crate::server::listen(c.listen)
            .with_context(|| format!("{} stratum port {}: already in use or not allowed", c.coin, c.listen))?;
        let local = listener.local_addr()?;
        let (publish, work) = watch::channel(None);
        // With an upstream, the node's templates and the pool's jobs go to a chooser, which
        // publishes to the miners; without one the feed publishes to them directly.
        let mut upstream_link = None;
        let (publish, ready) = match &c.upstream {
            None => (publish, None),
            Some(up) => {
                let owner = c.payouts.owner().with_context(|| {
                    format!("{}: an upstream pool needs the owner's payout address to authorize as", c.coin)
                })?;
                let config = crate::upstream::UpstreamConfig {
                    coin: c.coin.clone(),
                    url: up.to_string(),
                    authority: up.authority(),
                    user: format!("{}.minebox", owner.address),
                    owner: owner.script.clone(),
                    miner_extranonce2_len: c.extranonce2_len,
                    pow_limit: crate::upstream::pow_limit(&c.network),
                    idle_timeout: c.upstream_idle,
                    version_mask: c.version_mask,
                    node: Some(c.node.with_timeout(crate::upstream::CHAIN_CHECK_TIMEOUT)),
                };
                let (own_tx, own_rx) = watch::channel(None);
                let (ready_tx, ready_rx) = watch::channel(false);
                let upstreams = crate::upstream::Upstreams::start(
                    config,
                    own_rx,
                    ready_rx,
                    publish,
                    c.upstream_max_connections,
                    c.upstream_grace,
                    shutdown.clone(),
                );
                tracing::info!(coin = %c.coin, upstream = %up, "while the node cannot give work, miners mine through the upstream pool (the owner's address, or their own)");
                upstream_link = Some(upstreams);
                (own_tx, Some(ready_tx))
            }
        };
        let (found_tx, found_rx) = mpsc::channel(64);
        let node_status = Arc::new(Mutex::new(NodeStatus::default()));
        let (kick_tx, kick) = mpsc::channel(4);
        kicks.insert(c.coin.clone(), kick_tx);
        let rules = CoinbaseRules {
            tag: c.coinbase_tag.into_bytes(),
            extranonce2_len: c.extranonce2_len,
            min_tx_size: c.min_tx_size,
            segwit: c.segwit,
        };
        let pool_mode = pools.iter().position(|p| p.coin == c.coin).map(|i| pools.swap_remove(i));
        let mut pplns = None;
        if let Some(pm) = pool_mode {
            let saved = store.load_pplns(&pm.coin).context("reading the saved PPLNS window")?;
            let desk = Arc::new(PplnsDesk::new(&pm, saved));
            let listener = crate::server::listen(pm.listen)
                .with_context(|| format!("{} pool port {}: already in use or not allowed", c.coin, pm.listen))?;
            let local = listener.local_addr()?;
            let vardiff = VardiffConfig {
                start: pm.settings.start_difficulty,
                min: pm.settings.min_difficulty,
                max: pm.settings.max_difficulty,
                ..c.vardiff.clone()
            };
            let pool = Arc::new(Pool {
                ctx: PoolContext {
                    coin: c.coin.clone(),
                    payouts: Box::new(UsersOnly),
                    jobs: JobBook::for_pool(rules.clone(), pm.settings.config_version),
                    stats: stats.clone(),
                    vardiff,
                    version_mask: c.version_mask,
                    pplns: Some(desk.clone()),
                    shares: share_log.clone(),
                },
                network: c.network.clone(),
                work: work.clone(),
                found: found_tx.clone(),
                limits: config.limits.clone(),
                live: LiveMiners::default(),
                quiet_log: Default::default(),
                upstream: None,
                own_node_shares: Default::default(),
            });
            tasks.spawn(crate::server::run(listener, pool.clone(), shutdown.clone()));
            tasks.spawn(save_pplns(desk.clone(), store.clone(), pm.save_every, shutdown.clone()));
            tracing::info!(coin = %c.coin, listen = %local, fee_bps = pm.settings.fee.as_ref().map_or(0, |f| f.bps), "pool port (PPLNS) listening");
            pool_addrs.push((c.coin.clone(), local));
            pool_views.push(api::PoolModeView { pool, desk: desk.clone(), listen: local.to_string() });
            pplns = Some(desk);
        }
        let pool = Arc::new(Pool {
            ctx: PoolContext {
                coin: c.coin.clone(),
                payouts: c.payouts,
                jobs: JobBook::new(rules),
                stats: stats.clone(),
                vardiff: c.vardiff,
                version_mask: c.version_mask,
                pplns: None,
                shares: share_log.clone(),
            },
            network: c.network.clone(),
            work,
            found: found_tx,
            limits: config.limits.clone(),
            live: LiveMiners::default(),
            quiet_log: Default::default(),
            upstream: upstream_link,
            own_node_shares: Default::default(),
        });
        let feed = WorkFeed {
            config: WorkConfig {
                coin: c.coin.clone(),
                segwit: c.segwit,
                refresh: c.template_refresh,
                poll: c.block_poll,
                zmq_hashblock: c.zmq_hashblock,
                version_mask: c.version_mask,
            },
            node: c.node.clone(),
            publish,
            status: node_status.clone(),
            events: events.clone(),
            kick,
            ready,
        };
        let desk = BlockDesk {
            coin: c.coin.clone(),
            network: c.network.clone(),
            node: c.node,
            store: store.clone(),
            events: events.clone(),
            pplns,
        };
        tasks.spawn(feed.run(shutdown.clone()));
        // On shutdown a block still being retried stays 'submitting' and is resubmitted at start.
        tasks.spawn(desk.run(found_rx, shutdown.clone()));
        tasks.spawn(crate::server::run(listener, pool.clone(), shutdown.clone()));
        tracing::info!(coin = %c.coin, network = %c.network, listen = %local, "stratum listening");
        addrs.push((c.coin, local));
        views.push(CoinView { pool, listen: local.to_string(), node: node_status });
    }

    if let Some(p) = pools.first() {
        anyhow::bail!("{}: pool mode is set for a coin this server does not mine; enable the coin", p.coin);
    }
    let api_listener = TcpListener::bind(config.api_listen)
        .await
        .with_context(|| format!("stratum API address {}: already in use or not allowed", config.api_listen))?;
    let api_addr = api_listener.local_addr()?;
    let router = api::router(ApiState {
        coins: Arc::new(views),
        pplns: Arc::new(pool_views),
        stats: stats.clone(),
        store: store.clone(),
        events: events.clone(),
        shutdown: shutdown.clone(),
    });
    let api_shutdown = shutdown.clone();
    tasks.spawn(async move {
        let serve =
            axum::serve(api_listener, router).with_graceful_shutdown(async move { api_shutdown.cancelled().await });
        if let Err(e) = serve.await {
            tracing::error!(error = %e, "stratum API stopped");
        }
    });

    tasks.spawn(flush_stats(stats.clone(), share_log, store.clone(), config.stats_flush, shutdown.clone()));
    tasks.spawn(crate::retention::run(
        store.clone(),
        crate::retention::Policy::default(),
        crate::retention::EVERY,
        crate::retention::PAUSE,
        shutdown.clone(),
    ));
    if let Some(url) = config.supervisor_events {
        tasks.spawn(crate::supervisor::follow(url, kicks, shutdown.clone()));
    }

    Ok(Running { api: api_addr, stratum: addrs, pool_ports: pool_addrs, events, store, stats, shutdown, tasks })
}

/// How often a changed PPLNS window is saved on the box (`--pplns-save-secs`): a power cut
/// loses at most this much of it.
pub const PPLNS_SNAPSHOT_EVERY: Duration = Duration::from_secs(60);

/// Saves the desk's window and carry when they changed, every `every` and at shutdown.
async fn save_pplns(desk: Arc<PplnsDesk>, store: Store, every: Duration, shutdown: CancellationToken) {
    let mut tick = tokio::time::interval(every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    tick.tick().await;
    loop {
        let last = tokio::select! {
            _ = shutdown.cancelled() => true,
            _ = tick.tick() => false,
        };
        if let Some(saved) = desk.take_snapshot() {
            let (store, coin, d) = (store.clone(), desk.coin.clone(), desk.clone());
            let now = crate::stats::unix_now() as i64;
            match tokio::task::spawn_blocking(move || store.save_pplns(&coin, &saved, now)).await {
                Ok(Ok(())) => tracing::debug!(coin = %d.coin, "PPLNS window saved"),
                Ok(Err(e)) => {
                    tracing::error!(error = %e, "could not save the PPLNS window; retried at the next interval");
                    d.mark_dirty();
                }
                Err(e) => tracing::error!(error = %e, "PPLNS window writer panicked"),
            }
        }
        if last {
            return;
        }
    }
}

/// Writes changed statistics and the judged shares in one transaction each per interval,
/// and once more on shutdown.
async fn flush_stats(
    stats: Arc<Registry>,
    shares: Arc<ShareLog>,
    store: Store,
    every: Duration,
    shutdown: CancellationToken,
) {
    let mut dropped = 0;
    let mut tick = tokio::time::interval(every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    tick.tick().await;
    loop {
        let last = tokio::select! {
            _ = shutdown.cancelled() => true,
            _ = tick.tick() => false,
        };
        stats.trim(crate::stats::unix_now());
        let forgotten = stats.take_forgotten();
        if !forgotten.is_empty() {
            let store = store.clone();
            let n = forgotten.len();
            match tokio::task::spawn_blocking(move || store.forget_workers(&forgotten).map_err(|e| (e, forgotten)))
                .await
            {
                Ok(Ok(())) => tracing::debug!(workers = n, "forgotten workers deleted"),
                Ok(Err((e, forgotten))) => {
                    tracing::error!(error = %e, "could not delete forgotten workers; retried at the next flush");
                    stats.mark_forgotten(forgotten);
                }
                Err(e) => tracing::error!(error = %e, "statistics writer panicked"),
            }
        }
        let dirty = stats.take_dirty();
        if !dirty.is_empty() {
            let store = store.clone();
            let now = crate::stats::unix_now() as i64;
            let n = dirty.len();
            match tokio::task::spawn_blocking(move || store.save_workers(&dirty, now).map_err(|e| (e, dirty))).await {
                Ok(Ok(())) => tracing::debug!(workers = n, "statistics written"),
                Ok(Err((e, dirty))) => {
                    tracing::error!(error = %e, "could not write statistics; they stay in memory and are retried");
                    stats.mark_dirty(&dirty);
                }
                Err(e) => tracing::error!(error = %e, "statistics writer panicked"),
            }
        }
        let judged = shares.take();
        if !judged.is_empty() {
            let store = store.clone();
            let n = judged.len();
            match tokio::task::spawn_blocking(move || store.save_shares(&judged).map_err(|e| (e, judged))).await {
                Ok(Ok(())) => tracing::debug!(shares = n, "share history written"),
                Ok(Err((e, judged))) => {
                    tracing::error!(error = %e, "could not write the share history; kept in memory and retried");
                    shares.put_back(judged);
                }
                Err(e) => tracing::error!(error = %e, "share history writer panicked"),
            }
        }
        if shares.dropped() > dropped {
            tracing::warn!(
                dropped = shares.dropped() - dropped,
                "share history buffer full: shares judged but not recorded in the history"
            );
            dropped = shares.dropped();
        }
        if last {
            return;
        }
    }
}
