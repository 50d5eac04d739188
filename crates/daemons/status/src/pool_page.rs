//! The Pool panel's API (issue 17 points 4 and 5): each user's payout addresses, the pool's
//! window and payouts as the stratum server reports them, and the pool configuration with
//! its history.
//!
//! What each role sees: everyone their own addresses and payouts, their own line of the
//! window, and the configuration with its history (a member should see the fee and window
//! they mine under); admins everyone's addresses, the whole window and all payouts, and
//! change the configuration. Registering one's own address is open to every role (see
//! [`crate::payees`]); the configuration decides payouts, so it is the admin's
//! ([`crate::access`]).

use crate::accounts::Role;
use crate::api::ApiError;
use crate::app::App;
use crate::payees::{PayeeError, PayoutAddress};
use crate::pool_config::{HistoryEntry, PoolConfigError, PoolEdit, PoolValues};
use crate::session::Session;
use crate::upstream::{Service, UpstreamError};
use crate::user_db::now;
use axum::extract::{Path, State};
use axum::response::{IntoResponse, Response};
use axum::{Extension, Json};
use minebox_api::stratum::{self, PoolPayout, PoolStatus};
use serde::{Deserialize, Serialize};
use std::sync::atomic::Ordering;
use std::sync::Arc;

type ApiResult = Result<Response, ApiError>;

impl From<PayeeError> for ApiError {
    fn from(e: PayeeError) -> ApiError {
        ApiError::new(e.status(), e.to_string())
    }
}

impl From<PoolConfigError> for ApiError {
    fn from(e: PoolConfigError) -> ApiError {
        ApiError::new(e.status(), e.to_string())
    }
}

/// Payout rows the panel shows per coin.
const PAYOUTS_SHOWN: u32 = 50;

/// `GET /api/v1/pool`.
#[derive(Debug, Serialize)]
pub struct PoolView {
    pub coins: Vec<PoolCoin>,
    /// The signed-in user's addresses; an admin's answer has everyone's.
    pub addresses: Vec<PayoutAddress>,
}

/// One enabled coin's pool mode.
#[derive(Debug, Clone, Serialize)]
pub struct PoolCoin {
    pub id: String,
    pub name: String,
    pub network: String,
    /// The settings' `[coins.<id>.pool]`; None: pool mode off.
    pub config: Option<PoolValues>,
    pub config_version: u64,
    pub history: Vec<HistoryEntry>,
    /// The stratum server serves pool mode for this coin now.
    pub running: bool,
    /// Why not, or what went wrong reading it, as the user should read it.
    pub note: Option<String>,
    /// The window as the stratum server has it (a non-admin sees their own line only).
    pub window: Option<PoolStatus>,
    /// Newest block first (a non-admin's own rows only).
    pub payouts: Vec<PoolPayout>,
}

/// What the stratum server says of pool mode: a 404 is a server that does not run it.
fn not_running(e: &UpstreamError) -> Option<String> {
    match e {
        UpstreamError::Refused { status: 404, .. } => Some(
            "pool mode not running: the stratum server does not serve it (an older server, or its settings not \
             applied yet); restart the services from Settings"
                .into(),
        ),
        _ => None,
    }
}

async fn stratum_pool(
    app: &App,
    coin: &str,
    user: Option<&str>,
) -> (Option<PoolStatus>, Vec<PoolPayout>, Option<String>) {
    let mut url = reqwest::Url::parse(&format!("http://x{}", stratum::POOL)).expect("static url");
    url.query_pairs_mut().append_pair("coin", coin);
    let path = format!("{}?{}", url.path(), url.query().unwrap_or(""));
    let window = match app.up.get_as::<Vec<PoolStatus>>(Service::Stratum, &path).await {
        Ok(list) => list.into_iter().find(|p| p.coin == coin),
        Err(e) => return (None, Vec::new(), Some(not_running(&e).unwrap_or_else(|| e.to_string()))),
    };
    let Some(window) = window else {
        return (None, Vec::new(), Some("pool mode not running for this coin on the stratum server yet".into()));
    };
    let mut url = reqwest::Url::parse(&format!("http://x{}", stratum::POOL_PAYOUTS)).expect("static url");
    url.query_pairs_mut().append_pair("coin", coin).append_pair("limit", &PAYOUTS_SHOWN.to_string());
    if let Some(u) = user {
        url.query_pairs_mut().append_pair("user", u);
    }
    let path = format!("{}?{}", url.path(), url.query().unwrap_or(""));
    match app.up.get_as::<Vec<PoolPayout>>(Service::Stratum, &path).await {
        Ok(payouts) => (Some(window), payouts, None),
        Err(e) => (Some(window), Vec::new(), Some(not_running(&e).unwrap_or_else(|| e.to_string()))),
    }
}

pub async fn view(State(app): State<Arc<App>>, Extension(s): Extension<Session>) -> ApiResult {
    let admin = s.role >= Role::Admin;
    let settings = app.settings();
    let mut coins = Vec::new();
    for (c, coin, network) in settings.enabled_coins(&app.registry) {
        let config = c.pool.as_ref().map(PoolValues::of);
        let (mut window, mut payouts, note) = match &config {
            None => (None, Vec::new(), Some("pool mode is off for this coin".to_string())),
            Some(_) => stratum_pool(&app, &c.id, (!admin).then_some(s.user.as_str())).await,
        };
        if !admin {
            // Others' addresses and shares are theirs: a member sees their own line.
            if let Some(w) = window.as_mut() {
                w.payees.retain(|p| p.user == s.user);
            }
            payouts.retain(|p| p.user == s.user);
        }
        coins.push(PoolCoin {
            id: c.id.clone(),
            name: coin.name.clone(),
            network: network.name.clone(),
            config_version: c.pool.as_ref().map_or(0, |p| p.config_version),
            config,
            history: app.pool_history.list(&c.id)?,
            running: window.is_some(),
            note,
            window,
            payouts,
        });
    }
    let addresses = app.payees.list((!admin).then_some(s.user.as_str()))?;
    Ok(Json(PoolView { coins, addresses }).into_response())
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AddressBody {
    address: String,
}

/// The signed-in user registers or changes their own address for `coin`.
pub async fn address_set(
    State(app): State<Arc<App>>,
    Extension(s): Extension<Session>,
    Path(coin): Path<String>,
    Json(body): Json<AddressBody>,
) -> ApiResult {
    let settings = app.settings();
    let row = app.payees.set(&settings, &s.user, &coin, &body.address, now())?;
    // The address is the user's business, not the log's; the change and its coin are.
    app.audit.record(now(), &s.user, "payout address set", &format!("{coin} (payee {})", row.id));
    Ok(Json(row).into_response())
}

pub async fn address_remove(
    State(app): State<Arc<App>>,
    Extension(s): Extension<Session>,
    Path(coin): Path<String>,
) -> ApiResult {
    app.payees.remove(&s.user, &coin)?;
    app.audit.record(now(), &s.user, "payout address removed", &coin);
    Ok(Json(serde_json::json!({ "removed": coin })).into_response())
}

/// `PUT /api/v1/pool/config/{coin}` (admin): pool mode on or off and its values.
pub async fn config_put(
    State(app): State<Arc<App>>,
    Extension(s): Extension<Session>,
    Path(coin): Path<String>,
    Json(edit): Json<PoolEdit>,
) -> ApiResult {
    let app2 = app.clone();
    let who = s.user.clone();
    let c = coin.clone();
    let (settings, version) = tokio::task::spawn_blocking(move || {
        app2.pool_history.change(&app2.files, &app2.registry, &c, &edit, &who, now())
    })
    .await
    .expect("pool config task")?;
    *app.settings.write().expect("settings") = settings.clone();
    app.audit.record(now(), &s.user, "pool configuration changed", &format!("{coin}: version {version}"));
    let applied = match crate::config::run_apply(&settings.status.apply).await {
        Ok(ran) => ran,
        Err(e) => {
            tracing::warn!(error = %e, "pool configuration saved but the services were not restarted");
            false
        }
    };
    app.restart_required.store(!applied, Ordering::Relaxed);
    let config = settings.coins.get(&coin).and_then(|c| c.pool.as_ref()).map(PoolValues::of);
    Ok(Json(serde_json::json!({
        "coin": coin,
        "config_version": version,
        "config": config,
        "restart_required": !applied,
    }))
    .into_response())
}
