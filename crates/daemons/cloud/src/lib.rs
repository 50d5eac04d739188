//! MineBox Cloud: accounts, plans, paired devices and metered snapshot downloads, an HTTP API
//! (axum) over PostgreSQL. It runs off the box, never in the image (docs/cloud.md).
//!
//! Two database roles: the owner, which migrates, upserts the coins and makes partitions, and
//! the API's role, a member of `minebox_api` that owns nothing, so row-level security applies
//! to every request; each request's transaction says which user it acts for (`db::begin_as`).
//!
//! - `db`: pools, migrations (`migrations/`), the coins, the monthly partitions, the signed
//!   user context row-level security reads.
//! - `accounts`: sign-up, verification, login and its throttle, sessions, password reset, API
//!   tokens (issue 16, point 2).
//! - `plans`: the plans' limits, the plan a user has now (a lapsed subscription falls back to
//!   free), `GET /api/v1/subscription`, the admin's grant and revoke (point 3).
//! - `devices`: pairing a box to an account, its signed requests (Ed25519, replay-proof),
//!   listing, renaming and unlinking (point 4).
//! - `telemetry`: what a linked box reports if its owner opts in (heartbeat, daily stats,
//!   blocks found), the user's downloads this month against their plan, the block leaderboard
//!   (point 6).
//! - `snapshots`: the snapshot catalogue the publisher registers into, the box's grants and
//!   presigned URLs, metered downloads against the plan (point 5).
//! - `billing`: the payment provider's webhook, Stripe's event shape and signature (point 3).
//! - `http`: the routes and the extractors saying who asks; `error`: refusals; `mail`: SMTP.
//! - `metrics`: `/metrics` (Prometheus), `/healthz` and `/readyz` (point 8).
//! - `web`: the account page (`/`, its assets under `/static/`), served from the binary
//!   (point 7).

pub mod accounts;
pub mod billing;
pub mod db;
pub mod devices;
pub mod error;
pub mod http;
pub mod mail;
pub mod metrics;
pub mod plans;
pub mod snapshots;
pub mod telemetry;
pub mod web;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

#[derive(Clone, Debug)]
pub struct Config {
    /// The database owner's connection (migrations, coins, partitions).
    pub owner_url: String,
    /// The API's connection: a role that is a member of minebox_api and owns nothing.
    pub api_url: String,
    pub listen: SocketAddr,
    /// Where users reach the service: the links in mails start with it (no trailing slash).
    pub public_url: String,
    pub smtp_url: String,
    pub mail_from: String,
    /// Mark the session cookie `Secure` (sent over HTTPS only). Off only for plain-HTTP tests.
    pub cookie_secure: bool,
    /// Take the client's address from `X-Forwarded-For` (only behind a proxy that sets it).
    pub behind_proxy: bool,
    pub throttle: accounts::Throttle,
    pub api_pool_size: usize,
    /// The payment provider's signing secret for `POST /api/v1/billing/webhook` (Stripe's
    /// `whsec_...`); without it the webhook answers 503.
    pub billing_webhook_secret: Option<String>,
    /// Where `GET /metrics` is served (with `/healthz` and `/readyz`); `None`: no metrics.
    /// A separate address so the public listener never shows them.
    pub metrics_listen: Option<SocketAddr>,
    /// The publisher keys registrations are verified with and the buckets snapshots are served
    /// from; none: registration refuses every tree.
    pub snapshots: snapshots::SnapshotConfig,
}

pub struct App {
    pub config: Config,
    pub owner: deadpool_postgres::Pool,
    pub api: deadpool_postgres::Pool,
    pub mailer: mail::Mailer,
    pub context: db::UserContext,
    pub metrics: metrics::Metrics,
    /// The snapshot buckets, ready to read and presign.
    pub stores: snapshots::Stores,
}

/// Brings the database up to date: migrations, the coin catalogue, this month's and the next
/// months' partitions. Run as the owner at `migrate` and at `serve` start.
pub async fn prepare(owner: &deadpool_postgres::Pool) -> anyhow::Result<()> {
    let mut client = db::client(owner).await?;
    let applied = db::migrate(&mut client).await?;
    if !applied.is_empty() {
        tracing::info!("applied migrations {}", applied.join(", "));
    }
    let coins = db::upsert_coins(&mut client).await?;
    let made = db::create_partitions(&mut client).await?;
    tracing::info!(
        "{coins} coins; partitions made: {}",
        if made.is_empty() { "none needed".into() } else { made.join(", ") }
    );
    Ok(())
}

/// Daily upkeep as the owner: the coming months' partitions, and forgetting what no longer
/// counts: login failures older than the throttle's window, sessions and mailed tokens a week
/// past their end, signed device requests' nonces past the replay window (also hourly,
/// [`forget_nonces`]), pairing codes a day past their end, and which chunks a download was
/// given URLs for once its month is over (a download is resumed only within its month; the
/// month before is kept, so nothing a box may still be asking about goes). Returns the
/// partitions it made.
pub async fn upkeep(owner: &deadpool_postgres::Pool, throttle: &accounts::Throttle) -> anyhow::Result<Vec<String>> {
    let mut client = db::client(owner).await?;
    let made = db::create_partitions(&mut client).await?;
    if !made.is_empty() {
        tracing::info!("partitions made: {}", made.join(", "));
    }
    client
        .batch_execute(&format!(
            "DELETE FROM login_failures WHERE failed_at < now() - make_interval(secs => {});
             DELETE FROM sessions WHERE coalesce(revoked_at, expires_at) < now() - interval '7 days';
             DELETE FROM email_tokens WHERE coalesce(used_at, expires_at) < now() - interval '7 days';
             DELETE FROM device_pairings WHERE coalesce(used_at, expires_at) < now() - interval '1 day';
             DELETE FROM snapshot_download_chunks WHERE granted_at < date_trunc('month', now()) - interval '1 month';",
            throttle.window_secs,
        ))
        .await
        .map_err(db::DbError::from)?;
    forget_nonces(owner).await?;
    Ok(made)
}

/// Forgets signed device requests' nonces past the replay window. Run hourly as well as in the
/// daily upkeep: with every box sending a heartbeat a minute, a day of nonces is millions of
/// rows (docs/benchmarks.md, "MineBox Cloud"). Returns how many were forgotten.
pub async fn forget_nonces(owner: &deadpool_postgres::Pool) -> anyhow::Result<u64> {
    let client = db::client(owner).await?;
    let n = client
        .execute(
            "DELETE FROM device_nonces WHERE seen_at < now() - make_interval(secs => $1::int8::float8)",
            &[&devices::NONCE_KEEP_SECS],
        )
        .await
        .map_err(db::DbError::from)?;
    Ok(n)
}

/// A running service: where it listens, and its task (aborted on drop).
pub struct Running {
    pub addr: SocketAddr,
    /// Where `/metrics` is served, if `Config::metrics_listen` asked for it.
    pub metrics_addr: Option<SocketAddr>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Running {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl Running {
    /// Serves until the server fails.
    pub async fn wait(mut self) -> anyhow::Result<()> {
        (&mut self.task).await?;
        Ok(())
    }
}

/// Prepares the database, checks the API's role, and serves.
pub async fn start(config: Config) -> anyhow::Result<Running> {
    // The owner's connections: upkeep, and the billing webhook's writes.
    let owner = db::pool(&config.owner_url, 4)?;
    prepare(&owner).await?;
    let context = db::UserContext::load(&db::client(&owner).await?).await?;
    let api = db::pool(&config.api_url, config.api_pool_size)?;
    db::check_api_role(&db::client(&api).await?).await?;
    let mailer = mail::Mailer::new(&config.smtp_url, &config.mail_from)?;
    let listener = tokio::net::TcpListener::bind(config.listen).await?;
    let addr = listener.local_addr()?;
    let metrics_listener = match config.metrics_listen {
        Some(at) => Some(tokio::net::TcpListener::bind(at).await?),
        None => None,
    };
    let metrics_addr = metrics_listener.as_ref().map(|l| l.local_addr()).transpose()?;
    let stores = snapshots::Stores::new(&config.snapshots)?;
    let app = Arc::new(App { config, owner, api, mailer, context, metrics: metrics::Metrics::new(), stores });
    let router = http::router(app.clone());
    let metrics_router = http::metrics_router(app.clone());
    let task = tokio::spawn(async move {
        let upkeep_app = app.clone();
        let upkeep_loop = async move {
            let mut every = tokio::time::interval(Duration::from_secs(24 * 3600));
            every.tick().await; // the first tick is now, and prepare() just did it
            loop {
                every.tick().await;
                if let Err(e) = upkeep(&upkeep_app.owner, &upkeep_app.config.throttle).await {
                    tracing::error!(
                        "daily upkeep failed (retried tomorrow; partitions are made {} months ahead): {e:#}",
                        db::MONTHS_AHEAD
                    );
                }
            }
        };
        let nonces_owner = app.owner.clone();
        let nonces_loop = async move {
            let mut every = tokio::time::interval(Duration::from_secs(3600));
            loop {
                every.tick().await;
                if let Err(e) = forget_nonces(&nonces_owner).await {
                    tracing::error!("forgetting old device request nonces failed (retried in an hour): {e:#}");
                }
            }
        };
        let server = axum::serve(listener, router.into_make_service_with_connect_info::<SocketAddr>());
        let metrics_server = async move {
            match metrics_listener {
                Some(l) => axum::serve(l, metrics_router).await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            r = server => if let Err(e) = r { tracing::error!("server stopped: {e}") },
            r = metrics_server => if let Err(e) = r { tracing::error!("metrics server stopped: {e}") },
            () = upkeep_loop => {}
            () = nonces_loop => {}
        }
    });
    Ok(Running { addr, metrics_addr, task })
}
