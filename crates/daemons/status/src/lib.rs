//! `minebox-status`: the box's web page and REST API.
//!
//! A hobbyist opens http://minebox.local and sees, without reading logs, whether the box
//! works and how the miners do. The page and the API read the other services' local APIs
//! (stratum 3390, supervisor 3391, snapshot agent 3392, updater 3393) and are the only
//! MineBox surface facing the LAN, behind a login.
//!
//! - [`api`]: the REST API under /api/v1, the sign-in guard and CSRF check.
//! - [`accounts`]: named users and roles (admin, operator, viewer; argon2id), first-visit
//!   setup; [`access`]: the least role each endpoint needs.
//! - [`session`]: persisted sessions, CSRF tokens, the login throttle; [`hashing`]: the two
//!   threads that hash passwords.
//! - [`payees`]: users' pool payout addresses and the payees file; [`pool_config`]: pool
//!   mode's configuration and its history; [`pool_page`]: the Pool panel's API.
//! - [`mfa`]: two-factor sign-in (TOTP, recovery codes, the code throttle, the admin
//!   requirement); [`mfa_api`]: its endpoints.
//! - [`audit`]: who changed what and when; [`user_db`]: the SQLite file users, sessions and
//!   the audit log live in, its schema and the migration from the old password file.
//! - [`overview`]: the per-coin overview; [`odds`]: time to a block; [`sync`]: node sync ETA;
//!   [`share_history`]: accepted and refused shares per hour and day, summed for the page;
//!   [`mining_source`]: where each coin mines now (own node or solo pool), the pools offered.
//! - [`upstream`]: the box's services as clients; [`feed`]: live events to open pages.
//! - [`config`]: the settings the page edits, checked before they are written.
//! - [`notify`]: alerts to a webhook, ntfy and email; [`alert`]: which conditions are worth one, once.
//! - [`system`]: temperature, load, memory, disk, storage health; [`journal`]: recent logs.
//! - [`metrics`]: Prometheus text at /metrics; [`web`]: the embedded page.
//! - [`discovery`]: finding AxeOS miners (Bitaxe and kin) on the box's own subnet;
//!   [`axeos`]: one such miner's HTTP API, and pointing it at this box.
//! - [`cloud`]: linking the box to MineBox Cloud; [`telemetry`]: what the owner opts into
//!   sending it.
//! - [`limits`]: connection, request-head, body and event-stream limits; the HTTP server.

pub mod access;
pub mod accounts;
pub mod alert;
pub mod api;
pub mod app;
pub mod audit;
pub mod axeos;
pub mod cloud;
pub mod config;
pub mod discovery;
pub mod feed;
pub mod hashing;
pub mod journal;
pub mod limits;
pub mod metrics;
pub mod mfa;
pub mod mfa_api;
pub mod mining_source;
pub mod notify;
pub mod odds;
pub mod overview;
pub mod payees;
pub mod pool_config;
pub mod pool_page;
pub mod session;
pub mod share_history;
pub mod sync;
pub mod system;
pub mod telemetry;
pub mod upstream;
pub mod user_db;
pub mod web;

use std::sync::Arc;

/// Starts the background feeds and serves the page on `listener` until `shutdown`.
pub async fn serve(
    app: Arc<app::App>,
    listener: tokio::net::TcpListener,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    // First boot: the device key, made before anything could need it.
    cloud::make_key(&app.settings().cloud).await;
    let http = app.up.client().clone();
    let feeds = [
        tokio::spawn(feed::follow(
            http.clone(),
            app.up.url(upstream::Service::Stratum, minebox_api::stratum::EVENTS),
            feed::ServiceEvent::Stratum,
            app.events.clone(),
        )),
        tokio::spawn(feed::follow(
            http,
            app.up.url(upstream::Service::Supervisor, minebox_api::supervisor::EVENTS),
            feed::ServiceEvent::Supervisor,
            app.events.clone(),
        )),
        tokio::spawn(feed::notifier(app.clone())),
        tokio::spawn(feed::overviews(app.clone())),
        tokio::spawn(telemetry::Sender::new(app.clone()).run(app.telemetry_every, app.closing.clone())),
        tokio::spawn(retention(app.clone())),
    ];
    let closing = app.closing.clone();
    let limits = app.limits.clone();
    let router = api::router(app);
    let result = limits::run(listener, router, limits, async move {
        shutdown.await;
        closing.cancel();
    })
    .await;
    for f in feeds {
        f.abort();
    }
    result
}

/// The retention policy, at start and then hourly: expired sessions purged, the audit log
/// kept to a year and 10,000 entries.
async fn retention(app: Arc<app::App>) {
    let mut every = tokio::time::interval(std::time::Duration::from_secs(3600));
    loop {
        every.tick().await;
        let app = app.clone();
        let _ = tokio::task::spawn_blocking(move || app.prune()).await;
    }
}
