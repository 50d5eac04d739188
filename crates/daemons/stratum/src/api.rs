//! The local API the status page reads: live miners, workers, blocks, node status, events.
//!
//! Listens on localhost only; the status service is what faces the LAN (with a login).

use crate::event::Event;
use crate::pool::Pool;
use crate::stats::unix_now;
use crate::stats::{Registry, WorkerStats};
use crate::store::Store;
use crate::work::SharedNodeStatus;
use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::response::IntoResponse;
use axum::routing::get;
use axum::{Json, Router};
use minebox_api::stratum::{self as routes, Block, CoinStatus, Hashrates, Job, Miner, Worker};
use serde::Deserialize;
use std::sync::Arc;
use tokio::sync::broadcast;

/// Per coin with an upstream pool ([`routes::Pools`]): where its miners get work now, the
/// owner's pool connection's state (and why it last ended) and the shares sent to it; under
/// `addresses` the same for each miner address's own connection; `waiting_for_node` and
/// `waiting_reason` when the connection limit keeps miners off the pool.
pub const UPSTREAM: &str = routes::POOLS;

async fn upstream(State(st): State<ApiState>) -> Json<routes::Pools> {
    let mut coins = routes::Pools::new();
    for c in st.coins.iter() {
        if let Some(up) = &c.pool.upstream {
            let waiting = up.waiting();
            let pool = routes::CoinPool {
                owner: up.owner.status.lock().expect("upstream lock").clone(),
                addresses: up.addresses(),
                max_connections: up.max_connections,
                waiting_for_node: waiting,
                waiting_reason: (waiting > 0).then(|| {
                    format!(
                        "{waiting} miner connection(s) mining to their own address wait for the node: the coin's {} \
                         pool connections (the owner's and one per miner address) are all open",
                        up.max_connections
                    )
                }),
            };
            coins.insert(c.pool.ctx.coin.clone(), pool);
        }
    }
    Json(coins)
}

/// One coin's pool port (PPLNS) as the API sees it.
pub struct PoolModeView {
    pub pool: Arc<Pool>,
    pub desk: Arc<crate::pplns::desk::PplnsDesk>,
    pub listen: String,
}

#[derive(Deserialize)]
struct PoolQuery {
    coin: Option<String>,
}

/// [`routes::POOL`]: every coin with pool mode on (or `?coin=`'s), its window and payees.
async fn pool_status(State(st): State<ApiState>, Query(q): Query<PoolQuery>) -> Json<Vec<routes::PoolStatus>> {
    Json(
        st.pplns
            .iter()
            .filter(|p| q.coin.as_deref().is_none_or(|c| c == p.desk.coin))
            .map(|p| p.desk.status(p.pool.live.len() as u64))
            .collect(),
    )
}

#[derive(Deserialize)]
struct PayoutsQuery {
    coin: Option<String>,
    user: Option<String>,
    limit: Option<usize>,
}

/// [`routes::POOL_PAYOUTS`]: payout rows, newest first (at most 1000 per call).
async fn pool_payouts(State(st): State<ApiState>, Query(q): Query<PayoutsQuery>) -> impl IntoResponse {
    let limit = q.limit.unwrap_or(100).min(1000);
    let store = st.store.clone();
    let result =
        tokio::task::spawn_blocking(move || store.pool_payouts(q.coin.as_deref(), q.user.as_deref(), limit)).await;
    match result {
        Ok(Ok(rows)) => Json(rows).into_response(),
        Ok(Err(e)) => (StatusCode::INTERNAL_SERVER_ERROR, e.to_string()).into_response(),
        Err(e) => (StatusCode::INTERNAL_SERVER_ERROR, e.to_string()).into_response(),
    }
}

/// One coin's server as the API sees it.
pub struct CoinView {
    pub pool: Arc<Pool>,
    pub listen: String,
    pub node: SharedNodeStatus,
}

#[derive(Clone)]
pub struct ApiState {
    pub coins: Arc<Vec<CoinView>>,
    /// Coins with pool mode on.
    pub pplns: Arc<Vec<PoolModeView>>,
    pub stats: Arc<Registry>,
    pub store: Store,
    pub events: broadcast::Sender<Event>,
    /// Cancelled when the service stops: ends the event streams it serves.
    pub shutdown: tokio_util::sync::CancellationToken,
}

fn hashrates(w: &WorkerStats, t: f64) -> Hashrates {
    let [m1, h1, d1] = w.rates.hashrates(t);
    Hashrates { m1, h1, d1 }
}

/// A worker as the API shows it (the contract's type): its statistics and hashrates at `t`.
fn worker_view(w: WorkerStats, t: f64) -> Worker {
    Worker {
        hashrate: hashrates(&w, t),
        coin: w.coin,
        worker: w.worker,
        accepted: w.accepted,
        accepted_difficulty: w.accepted_difficulty,
        rejected: w.rejected.into_iter().map(|(reason, n)| (reason.to_string(), n)).collect(),
        best_share: w.best_share,
        best_share_at: w.best_share_at,
        last_share_at: w.last_share_at,
        last_seen: w.last_seen,
        user_agent: w.user_agent,
        difficulty: w.difficulty,
        connections: w.connections,
        blocks: w.blocks,
        payout_address: w.payout_address,
        paid_to: w.paid_to,
    }
}

pub fn router(state: ApiState) -> Router {
    Router::new()
        .route(routes::STATUS, get(status))
        .route(routes::WORKERS, get(workers))
        .route(routes::MINERS, get(miners))
        .route(routes::BLOCKS, get(blocks))
        .route(routes::HASHRATE, get(hashrate))
        .route(routes::SHARES, get(shares))
        .route(routes::EVENTS, get(events))
        .route(UPSTREAM, get(upstream))
        .route(routes::POOL, get(pool_status))
        .route(routes::POOL_PAYOUTS, get(pool_payouts))
        .route(minebox_api::HEALTHZ, get(|| async { "ok" }))
        .with_state(state)
}

async fn status(State(s): State<ApiState>) -> Json<Vec<CoinStatus>> {
    let t = unix_now();
    let workers = s.stats.snapshot();
    let out = s
        .coins
        .iter()
        .map(|c| {
            let coin = &c.pool.ctx.coin;
            let mine: Vec<&WorkerStats> = workers.iter().filter(|w| &w.coin == coin).collect();
            let mut total = Hashrates::default();
            for w in &mine {
                total += hashrates(w, t);
            }
            let job = c.pool.work.borrow().as_ref().map(|tpl| Job {
                height: tpl.height,
                prev_hash: tpl.prev_hash.to_string(),
                transactions: tpl.transactions.len(),
                coinbase_value_sats: tpl.coinbase_value.to_sat(),
                network_difficulty: tpl.network_difficulty(),
                age_secs: tpl.received.elapsed().as_secs_f64(),
            });
            CoinStatus {
                coin: coin.clone(),
                network: c.pool.network.clone(),
                listen: c.listen.clone(),
                payout_policy: c.pool.ctx.payouts.owner().map(|o| o.policy.as_str().to_string()),
                payout_address: c.pool.ctx.payouts.owner().map(|o| o.address.clone()),
                miners: c.pool.live.len(),
                workers: mine.iter().filter(|w| w.connections > 0).count(),
                hashrate: total,
                best_share: mine.iter().map(|w| w.best_share).fold(0.0, f64::max),
                blocks_found: mine.iter().map(|w| w.blocks).sum(),
                own_node_shares: c.pool.own_node_shares.load(std::sync::atomic::Ordering::Relaxed),
                node: c.node.lock().expect("status lock").clone(),
                job,
                rejected_before_authorize: s
                    .stats
                    .anonymous_rejects(coin)
                    .into_iter()
                    .map(|(k, v)| (k.to_string(), v))
                    .collect(),
            }
        })
        .collect();
    Json(out)
}

#[derive(Deserialize)]
struct CoinFilter {
    coin: Option<String>,
}

/// Workers per page by default, and at most: the status page asks for what it shows; a
/// registry of 20,000 names must not become a 10 MB answer.
pub const WORKERS_PAGE: usize = 200;
pub const WORKERS_PAGE_MAX: usize = 1000;

#[derive(Deserialize)]
struct WorkersQuery {
    coin: Option<String>,
    limit: Option<usize>,
    offset: Option<usize>,
}

/// Workers, most recently seen first, one page at a time (`?limit=&offset=`); the total
/// is in the `X-Total-Count` header.
async fn workers(State(s): State<ApiState>, Query(q): Query<WorkersQuery>) -> impl IntoResponse {
    let t = unix_now();
    let mut all: Vec<WorkerStats> =
        s.stats.snapshot().into_iter().filter(|w| q.coin.as_ref().is_none_or(|c| *c == w.coin)).collect();
    let total = all.len();
    let seen = |w: &WorkerStats| w.last_seen.max(w.last_share_at);
    all.sort_by(|a, b| seen(b).cmp(&seen(a)).then_with(|| a.worker.cmp(&b.worker)));
    let limit = q.limit.unwrap_or(WORKERS_PAGE).min(WORKERS_PAGE_MAX);
    let out: Vec<Worker> = all.into_iter().skip(q.offset.unwrap_or(0)).take(limit).map(|w| worker_view(w, t)).collect();
    ([("x-total-count", total.to_string())], Json(out))
}

async fn miners(State(s): State<ApiState>, Query(q): Query<CoinFilter>) -> Json<Vec<Miner>> {
    let out = s
        .coins
        .iter()
        .filter(|c| q.coin.as_ref().is_none_or(|x| *x == c.pool.ctx.coin))
        .flat_map(|c| c.pool.live.list().into_iter().map(|m| Miner { coin: c.pool.ctx.coin.clone(), miner: m }))
        .collect();
    Json(out)
}

#[derive(Deserialize)]
struct BlocksQuery {
    coin: Option<String>,
    limit: Option<usize>,
}

async fn blocks(
    State(s): State<ApiState>,
    Query(q): Query<BlocksQuery>,
) -> Result<Json<Vec<Block>>, (StatusCode, String)> {
    let store = s.store.clone();
    let limit = q.limit.unwrap_or(100).min(1000);
    tokio::task::spawn_blocking(move || store.blocks(q.coin.as_deref(), limit))
        .await
        .expect("store task")
        .map(Json)
        .map_err(|e| (StatusCode::SERVICE_UNAVAILABLE, e.to_string()))
}

#[derive(Deserialize)]
struct HashrateQuery {
    coin: String,
    worker: Option<String>,
    since: Option<i64>,
}

async fn hashrate(State(s): State<ApiState>, Query(q): Query<HashrateQuery>) -> impl IntoResponse {
    let store = s.store.clone();
    let since = q.since.unwrap_or(unix_now() as i64 - 86_400);
    match tokio::task::spawn_blocking(move || store.hashrate_history(&q.coin, q.worker.as_deref(), since))
        .await
        .expect("store task")
    {
        Ok(points) => Json(points).into_response(),
        Err(e) => (StatusCode::SERVICE_UNAVAILABLE, e.to_string()).into_response(),
    }
}

#[derive(Deserialize)]
struct SharesQuery {
    coin: String,
    worker: Option<String>,
    since: Option<i64>,
    limit: Option<usize>,
}

/// Buckets one call answers at most: a year of hours for two workers.
pub const SHARE_BUCKETS_MAX: usize = 20_000;

/// [`routes::SHARES`]: accepted and refused shares (by reason) per worker, hour and day;
/// the last day by default.
async fn shares(State(s): State<ApiState>, Query(q): Query<SharesQuery>) -> impl IntoResponse {
    let store = s.store.clone();
    let since = q.since.unwrap_or(unix_now() as i64 - 86_400);
    let limit = q.limit.unwrap_or(SHARE_BUCKETS_MAX).min(SHARE_BUCKETS_MAX);
    match tokio::task::spawn_blocking(move || store.share_history(&q.coin, q.worker.as_deref(), since, limit))
        .await
        .expect("store task")
    {
        Ok(buckets) => Json(buckets).into_response(),
        Err(e) => (StatusCode::SERVICE_UNAVAILABLE, e.to_string()).into_response(),
    }
}

async fn events(State(s): State<ApiState>) -> axum::response::Response {
    minebox_events::sse(&s.events, s.shutdown.clone().cancelled_owned()).into_response()
}
