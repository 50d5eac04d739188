//! The HTTP API's routes and the extractors that say who is asking.

use crate::error::ApiError;
use crate::App;
use crate::{accounts, billing, devices, metrics, plans, snapshots, telemetry, web};
use axum::extract::{ConnectInfo, DefaultBodyLimit, FromRequestParts};
use axum::http::request::Parts;
use axum::http::Method;
use axum::routing::{delete, get, post, put};
use axum::Router;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use uuid::Uuid;

/// The header a cookie-authenticated request that changes something must carry, as `1`
/// ([`Authed`]): the account page sends it with every request.
pub const CSRF_HEADER: &str = "MineBox-CSRF";

/// The largest request body read: every request the API takes is a small JSON object.
pub const BODY_LIMIT: usize = 16 * 1024;

/// The public API. `/metrics` is not here: it is served on `--metrics-listen` only
/// ([`metrics_router`]), an address the operator keeps private.
pub fn router(app: Arc<App>) -> Router {
    Router::new()
        .route("/healthz", get(metrics::healthz))
        .route("/readyz", get(metrics::readyz))
        // The account page (web.rs); the mailed links open it.
        .route("/", get(web::page))
        .route("/reset", get(web::page))
        .route("/static/{asset}", get(web::asset))
        .route("/verify", get(accounts::verify_link))
        .route("/api/v1/signup", post(accounts::signup))
        .route("/api/v1/verify", post(accounts::verify_api))
        .route("/api/v1/login", post(accounts::login))
        .route("/api/v1/logout", post(accounts::logout))
        .route("/api/v1/password-reset", post(accounts::reset_request))
        .route("/api/v1/password-reset/confirm", post(accounts::reset_confirm))
        .route("/api/v1/me", get(accounts::me))
        .route("/api/v1/tokens", get(accounts::list_tokens).post(accounts::create_token))
        .route("/api/v1/tokens/{id}", delete(accounts::revoke_token))
        .route("/api/v1/devices", get(devices::list))
        .route("/api/v1/devices/pair", post(devices::pair))
        .route("/api/v1/devices/{id}", delete(devices::unlink).patch(devices::rename))
        // Signed by the box's key (devices::Signed reads the raw body the signature covers).
        .route("/api/v1/devices/pair/start", post(devices::start_pairing))
        .route("/api/v1/device/me", get(devices::me))
        .route("/api/v1/device/unlink", post(devices::device_unlink))
        .route("/api/v1/device/heartbeat", post(telemetry::heartbeat))
        .route("/api/v1/device/stats/daily", post(telemetry::daily))
        .route("/api/v1/device/blocks", post(telemetry::block))
        .route("/api/v1/device/snapshots/offer", post(snapshots::offer))
        .route("/api/v1/device/snapshots/grant", post(snapshots::grant))
        .route(
            "/api/v1/device/snapshots/downloads/{download}/chunks",
            post(snapshots::chunks).layer(DefaultBodyLimit::max(snapshots::CHUNKS_BODY_LIMIT)),
        )
        .route("/api/v1/device/snapshots/downloads/{download}/complete", post(snapshots::complete))
        // A publisher's bearer token (publisher_tokens), not a user's.
        .route("/api/v1/publisher/snapshots", post(snapshots::register))
        .route("/api/v1/usage", get(telemetry::usage))
        .route("/api/v1/downloads", get(telemetry::downloads))
        .route("/api/v1/leaderboard/blocks", get(telemetry::leaderboard))
        .route("/api/v1/leaderboard/visibility", put(telemetry::visibility))
        .route("/api/v1/subscription", get(plans::subscription))
        // Reads its raw body itself (the signature is over the exact bytes), up to
        // billing::WEBHOOK_BODY_LIMIT.
        .route("/api/v1/billing/webhook", post(billing::webhook))
        .fallback(|| async { ApiError::NotFound("no such endpoint".into()) })
        .layer(DefaultBodyLimit::max(BODY_LIMIT))
        .layer(axum::middleware::from_fn_with_state(app.clone(), metrics::track))
        .with_state(app)
}

/// What `--metrics-listen` serves: `/metrics` for Prometheus, and the health answers.
pub fn metrics_router(app: Arc<App>) -> Router {
    Router::new()
        .route("/metrics", get(metrics::scrape))
        .route("/healthz", get(metrics::healthz))
        .route("/readyz", get(metrics::readyz))
        .fallback(|| async { ApiError::NotFound("no such endpoint here: GET /metrics, /healthz or /readyz".into()) })
        .with_state(app)
}

/// The account a request acts for, and the session it came with (for logout).
pub struct Authed {
    pub user: Uuid,
    pub session_hash: Option<String>,
}

impl FromRequestParts<Arc<App>> for Authed {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, app: &Arc<App>) -> Result<Self, Self::Rejection> {
        let authed = accounts::authenticate(app, &parts.headers).await?;
        // A browser attaches the session cookie to any request to this site, also one a page
        // elsewhere makes it send; it lets a page send a custom header only to its own origin
        // (elsewhere only after a CORS preflight, which this service never grants). So a
        // request that changes something on the strength of the cookie must carry it. API
        // tokens are sent by the script holding them, never attached by a browser.
        let safe = matches!(parts.method, Method::GET | Method::HEAD | Method::OPTIONS);
        if authed.session_hash.is_some() && !safe && parts.headers.get(CSRF_HEADER).is_none_or(|v| v != "1") {
            return Err(ApiError::Forbidden(format!(
                "this request came with the session cookie but without the `{CSRF_HEADER}: 1` header the \
                 MineBox Cloud page sends, so it may have been made by another site: use the page, or an API token"
            )));
        }
        Ok(authed)
    }
}

/// The client's address, for the per-address login throttle. Behind a reverse proxy that the
/// configuration trusts, the last address it appended to `X-Forwarded-For`.
pub struct ClientIp(pub IpAddr);

impl FromRequestParts<Arc<App>> for ClientIp {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, app: &Arc<App>) -> Result<Self, Self::Rejection> {
        let peer = parts
            .extensions
            .get::<ConnectInfo<SocketAddr>>()
            .map(|c| c.0.ip())
            .ok_or_else(|| ApiError::Internal("the server runs without connection info".into()))?;
        if app.config.behind_proxy {
            // The last entry is the one our proxy appended; earlier ones the client can forge.
            let entries: Vec<&str> = parts
                .headers
                .get_all("x-forwarded-for")
                .iter()
                .filter_map(|v| v.to_str().ok())
                .flat_map(|v| v.split(','))
                .collect();
            let forwarded = entries.last().and_then(|a| a.trim().parse::<IpAddr>().ok());
            if let Some(ip) = forwarded {
                return Ok(ClientIp(ip));
            }
        }
        Ok(ClientIp(peer))
    }
}
