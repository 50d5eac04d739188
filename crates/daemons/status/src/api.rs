//! The REST API under /api/v1 (described by `openapi.json`, served at
//! /api/v1/openapi.json), the login, and the guard in front of it all.
//!
//! Who may do what: without a session only the health check, the OpenAPI document and the
//! sign-in endpoints answer; with one, the least role each endpoint needs is in one table,
//! [`crate::access`]. Every state-changing request needs the session's CSRF token in
//! `X-CSRF-Token`. Every change made here is noted in the audit log with who made it.

use crate::accounts::{AccountsError, Role, UserEdit};
use crate::app::App;
use crate::config::{self, ConfigEdit};
use crate::limits::{Conn, LocalAddr, StreamRefusal};
use crate::session::Refusal;
use crate::session::{Session, COOKIE};
use crate::upstream::{Service, UpstreamError};
use crate::user_db::{now, DbError};
use axum::body::Body;
use axum::extract::{ConnectInfo, Path, Query, Request, State};
use axum::http::{header, HeaderMap, HeaderValue, Method, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get, post, put};
use axum::{Extension, Json, Router};
use minebox_api::{snapshot, stratum, supervisor, updater};
use serde::Deserialize;
use serde_json::json;
use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::sync::Arc;

pub const OPENAPI: &str = include_str!("openapi.json");

/// An error as the page shows it: a status and a sentence saying what to do.
pub struct ApiError(StatusCode, String);

impl ApiError {
    pub fn new(status: u16, message: impl Into<String>) -> ApiError {
        ApiError(StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR), message.into())
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        (self.0, Json(json!({ "error": self.1 }))).into_response()
    }
}

impl From<UpstreamError> for ApiError {
    fn from(e: UpstreamError) -> ApiError {
        ApiError::new(e.status(), e.to_string())
    }
}

impl From<AccountsError> for ApiError {
    fn from(e: AccountsError) -> ApiError {
        let status = match e {
            AccountsError::AlreadySet | AccountsError::NotSet | AccountsError::Exists(_) => 409,
            AccountsError::LastAdmin(_) => 409,
            AccountsError::TooShort | AccountsError::TooLong | AccountsError::BadName(_) => 422,
            AccountsError::NoSuchUser(_) => 404,
            AccountsError::WrongCurrent => 403,
            AccountsError::Db(_) => 500,
        };
        ApiError::new(status, e.to_string())
    }
}

impl From<DbError> for ApiError {
    fn from(e: DbError) -> ApiError {
        ApiError::new(500, e.to_string())
    }
}

pub(crate) type ApiResult = Result<Response, ApiError>;

pub fn router(app: Arc<App>) -> Router {
    Router::new()
        .route(minebox_api::status::HEALTH, get(health))
        .route("/api/v1/openapi.json", get(openapi))
        .route("/api/v1/auth/session", get(session))
        .route("/api/v1/auth/setup", post(setup))
        .route("/api/v1/auth/login", post(login))
        .route("/api/v1/auth/logout", post(logout))
        .route("/api/v1/auth/password", put(password))
        .route("/api/v1/auth/login/mfa", post(crate::mfa_api::login_code))
        .route("/api/v1/auth/mfa", get(crate::mfa_api::status))
        .route("/api/v1/auth/mfa/enrol", post(crate::mfa_api::enrol))
        .route("/api/v1/auth/mfa/qr", get(crate::mfa_api::qr))
        .route("/api/v1/auth/mfa/confirm", post(crate::mfa_api::confirm))
        .route("/api/v1/auth/mfa/disable", post(crate::mfa_api::disable))
        .route("/api/v1/auth/mfa/recovery-codes", post(crate::mfa_api::regenerate))
        .route("/api/v1/mfa/policy", get(crate::mfa_api::policy_get).put(crate::mfa_api::policy_put))
        .route("/api/v1/users/{name}/mfa", delete(crate::mfa_api::remove_other))
        .route("/api/v1/users", get(users_list).post(users_create))
        .route("/api/v1/users/{name}", axum::routing::patch(users_edit).delete(users_remove))
        .route("/api/v1/sessions", get(sessions_list))
        .route("/api/v1/sessions/{id}", delete(sessions_revoke))
        .route("/api/v1/audit", get(audit_list))
        .route("/api/v1/pool", get(crate::pool_page::view))
        .route(
            "/api/v1/pool/addresses/{coin}",
            put(crate::pool_page::address_set).delete(crate::pool_page::address_remove),
        )
        .route("/api/v1/pool/config/{coin}", put(crate::pool_page::config_put))
        .route("/api/v1/overview", get(overview))
        .route("/api/v1/events", get(events))
        .route("/api/v1/stratum", get(stratum_status))
        .route("/api/v1/pools", get(pools))
        .route("/api/v1/workers", get(workers))
        .route("/api/v1/miners", get(miners))
        .route("/api/v1/miners/scan", post(miners_scan))
        .route("/api/v1/miners/found", get(miners_found))
        .route("/api/v1/miners/{ip}/point-here", post(miner_point_here))
        .route("/api/v1/blocks", get(blocks))
        .route("/api/v1/hashrate", get(hashrate))
        .route("/api/v1/shares", get(shares))
        .route("/api/v1/nodes", get(nodes))
        .route("/api/v1/nodes/{coin}/{action}", post(node_action))
        .route("/api/v1/snapshots", get(snapshots))
        .route("/api/v1/snapshots/{coin}/install", post(snapshot_install))
        .route("/api/v1/updates", get(update_status))
        .route("/api/v1/updates/history", get(update_history))
        .route("/api/v1/updates/{action}", post(update_action))
        .route("/api/v1/system", get(system))
        .route("/api/v1/journal/{service}", get(journal))
        .route("/api/v1/config", get(config_get).put(config_put))
        .route("/api/v1/notify/test", post(notify_test))
        .route("/api/v1/cloud", get(cloud_get))
        .route("/api/v1/cloud/link", post(cloud_link))
        .route("/api/v1/cloud/unlink", post(cloud_unlink))
        .route("/metrics", get(crate::metrics::serve))
        .fallback(crate::web::asset)
        .layer(axum::middleware::from_fn_with_state(app.clone(), guard))
        .layer(axum::extract::DefaultBodyLimit::max(app.limits.max_body))
        .layer(axum::middleware::from_fn(front))
        .layer(axum::middleware::from_fn(security_headers))
        .with_state(app)
}

/// Every request: the Host must name this box, and the connection counts as busy (not
/// to be closed for room) while the request runs.
async fn front(req: Request, next: Next) -> Response {
    let _busy = req.extensions().get::<Arc<Conn>>().map(|c| c.busy());
    let host = req.headers().get(header::HOST).map(|h| h.to_str().unwrap_or("\u{fffd}").to_string());
    if let Some(host) = host {
        let local = req.extensions().get::<LocalAddr>().map(|l| l.0.ip());
        if !host_is_this_box(&host, local) {
            let name = hostname();
            return ApiError::new(
                421,
                format!(
                    "this box does not answer to the name {host:?} (a guard against DNS rebinding); \
                     open it as http://{name}.local/ or by its IP address"
                ),
            )
            .into_response();
        }
    }
    next.run(req).await
}

/// The box's host name, as set now (also the name it gives MineBox Cloud when linking).
pub fn box_name() -> String {
    hostname()
}

fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname").map(|h| h.trim().to_ascii_lowercase()).unwrap_or_default()
}

/// The names a browser may use for this box: localhost, its host name (plain and .local,
/// as mDNS publishes it), loopback addresses and the address the client connected to (an
/// address of one of the box's interfaces), with any port. A page from another site that
/// made its own name point here (DNS rebinding) carries its own name and is refused.
pub fn host_is_this_box(host: &str, local: Option<std::net::IpAddr>) -> bool {
    let host = host.trim().to_ascii_lowercase();
    let name = if let Some(rest) = host.strip_prefix('[') {
        match rest.split_once(']') {
            Some((ip, port)) if port.is_empty() || port.strip_prefix(':').is_some_and(all_digits) => ip,
            _ => return false,
        }
    } else {
        match host.rsplit_once(':') {
            Some((name, port)) if all_digits(port) && !name.contains(':') => name,
            Some(_) => return false,
            None => host.as_str(),
        }
    };
    let name = name.strip_suffix('.').unwrap_or(name);
    if name == "localhost" {
        return true;
    }
    if let Ok(ip) = name.parse::<std::net::IpAddr>() {
        let ip = crate::limits::canonical(ip);
        return ip.is_loopback() || local.map(crate::limits::canonical) == Some(ip);
    }
    let me = hostname();
    !me.is_empty() && (name == me || name.strip_suffix(".local") == Some(me.as_str()))
}

fn all_digits(s: &str) -> bool {
    !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit())
}

const PUBLIC: &[&str] = &[
    "/api/v1/health",
    "/api/v1/openapi.json",
    "/api/v1/auth/session",
    "/api/v1/auth/setup",
    "/api/v1/auth/login",
    "/api/v1/auth/login/mfa",
];

fn session_token(headers: &HeaderMap) -> Option<String> {
    headers.get_all(header::COOKIE).iter().filter_map(|v| v.to_str().ok()).flat_map(|v| v.split(';')).find_map(|c| {
        let (k, v) = c.trim().split_once('=')?;
        (k == COOKIE).then(|| v.to_string())
    })
}

fn current_session(app: &App, headers: &HeaderMap) -> Result<Option<Session>, ApiError> {
    match session_token(headers) {
        Some(t) => Ok(app.sessions.get(&t, now())?),
        None => Ok(None),
    }
}

fn changes_state(m: &Method) -> bool {
    !matches!(*m, Method::GET | Method::HEAD | Method::OPTIONS)
}

async fn guard(State(app): State<Arc<App>>, mut req: Request, next: Next) -> Response {
    let path = req.uri().path().to_string();
    if !path.starts_with("/api/") || PUBLIC.contains(&path.as_str()) {
        if changes_state(req.method()) && !same_origin(req.headers()) {
            return ApiError::new(403, "this request came from another site; open the status page itself")
                .into_response();
        }
        return next.run(req).await;
    }
    let s = match current_session(&app, req.headers()) {
        Ok(Some(s)) => s,
        Ok(None) => return ApiError::new(401, "sign in first").into_response(),
        Err(e) => return e.into_response(),
    };
    let needed = crate::access::minimum_role(req.method(), &path);
    if s.role < needed {
        return ApiError::new(
            403,
            format!(
                "{} is signed in as {}; this needs {} or above: ask an admin, or sign in as one",
                s.user,
                s.role.as_str(),
                needed.as_str()
            ),
        )
        .into_response();
    }
    if s.role == Role::Admin && !path.starts_with("/api/v1/auth/") {
        match app.mfa.must_enrol(&s.user, s.role) {
            Ok(false) => {}
            Ok(true) => return ApiError::new(403, crate::mfa_api::ENROL_FIRST).into_response(),
            Err(e) => return ApiError::from(e).into_response(),
        }
    }
    if changes_state(req.method()) {
        let sent = req.headers().get("x-csrf-token").and_then(|v| v.to_str().ok());
        if sent != Some(s.csrf.as_str()) {
            return ApiError::new(403, "missing or wrong CSRF token; reload the page").into_response();
        }
    }
    req.extensions_mut().insert(s);
    next.run(req).await
}

/// A browser names the page a request came from in Origin; it must be this box.
fn same_origin(h: &HeaderMap) -> bool {
    let Some(origin) = h.get(header::ORIGIN).and_then(|v| v.to_str().ok()) else { return true };
    let host = h.get(header::HOST).and_then(|v| v.to_str().ok()).unwrap_or("");
    origin.split_once("://").map(|(_, rest)| rest) == Some(host)
}

async fn security_headers(req: Request, next: Next) -> Response {
    let api = req.uri().path().starts_with("/api/");
    let mut resp = next.run(req).await;
    if api && (resp.status().is_client_error() || resp.status().is_server_error()) {
        resp = as_json_error(resp).await;
    }
    let h = resp.headers_mut();
    // Everything the page needs is served by this binary: nothing from elsewhere may load.
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(
            "default-src 'self'; img-src 'self' data:; style-src 'self'; script-src 'self'; frame-ancestors 'none'",
        ),
    );
    h.insert(header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    h.insert(header::REFERRER_POLICY, HeaderValue::from_static("no-referrer"));
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    resp
}

/// axum's own refusals (a malformed query, a body that is not JSON) come as plain text; the
/// API answers every error the same way, as `{"error": ...}`.
async fn as_json_error(resp: Response) -> Response {
    let is_json = resp
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/json"));
    if is_json {
        return resp;
    }
    let (parts, body) = resp.into_parts();
    let text = axum::body::to_bytes(body, 64 << 10).await.unwrap_or_default();
    let message = String::from_utf8_lossy(&text).trim().to_string();
    let message =
        if message.is_empty() { parts.status.canonical_reason().unwrap_or("error").to_string() } else { message };
    let mut out = ApiError(parts.status, message).into_response();
    for (k, v) in parts.headers.iter() {
        if k != header::CONTENT_TYPE && k != header::CONTENT_LENGTH {
            out.headers_mut().insert(k.clone(), v.clone());
        }
    }
    out
}

async fn health() -> Json<minebox_api::status::Health> {
    Json(minebox_api::status::Health { status: "ok".into(), version: env!("CARGO_PKG_VERSION").into() })
}

async fn openapi() -> Response {
    ([(header::CONTENT_TYPE, "application/json")], OPENAPI).into_response()
}

async fn session(State(app): State<Arc<App>>, headers: HeaderMap) -> ApiResult {
    let s = current_session(&app, &headers)?;
    Ok(Json(json!({
        "setup_required": app.accounts.setup_needed()?,
        "signed_in": s.is_some(),
        "user": s.as_ref().map(|s| s.user.clone()),
        "role": s.as_ref().map(|s| s.role),
        "csrf_token": s.as_ref().map(|s| s.csrf.clone()),
        "mfa_must_enrol": match &s {
            Some(s) => app.mfa.must_enrol(&s.user, s.role).map_err(ApiError::from)?,
            None => false,
        },
    }))
    .into_response())
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct SignInBody {
    /// Left out: `admin`, the name the first admin gets by default and that a box's old
    /// admin password became, so existing scripts that sent only a password keep working.
    #[serde(default = "admin_name")]
    user: String,
    password: String,
}

fn admin_name() -> String {
    "admin".into()
}

/// The device a session is listed with: the browser's own name for itself.
pub(crate) fn user_agent(headers: &HeaderMap) -> String {
    headers.get(header::USER_AGENT).and_then(|v| v.to_str().ok()).unwrap_or("").to_string()
}

pub(crate) fn signed_in(token: &str, csrf: &str, user: &str, role: Role, status: StatusCode) -> Response {
    let cookie = format!("{COOKIE}={token}; Path=/; HttpOnly; SameSite=Strict; Max-Age={}", crate::session::ABSOLUTE);
    (status, [(header::SET_COOKIE, cookie)], Json(json!({ "user": user, "role": role, "csrf_token": csrf })))
        .into_response()
}

fn stopped(e: crate::hashing::Stopped) -> ApiError {
    ApiError::new(503, e.to_string())
}

fn refused(r: Refusal) -> Response {
    let status = if r == Refusal::Full { 503 } else { 429 };
    let mut resp = ApiError::new(status, r.message()).into_response();
    resp.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from(r.retry_after()));
    resp
}

async fn setup(
    State(app): State<Arc<App>>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    Json(body): Json<SignInBody>,
) -> ApiResult {
    let user = body.user.clone();
    let slot = match app.gate.slot().await {
        Ok(s) => s,
        Err(r) => return Ok(refused(r)),
    };
    let app2 = app.clone();
    // The pool place goes with the hash: a client hanging up does not free it early.
    app.gate
        .hash(slot, move || app2.accounts.set_first_admin(&body.user, &body.password, now()))
        .await
        .map_err(stopped)??;
    let address = crate::limits::canonical(peer.ip()).to_string();
    app.audit.record(now(), &user, "first admin set", &format!("first-visit setup from {address}"));
    let (token, csrf) = app.sessions.create(&user, &address, &user_agent(&headers), now())?;
    Ok(signed_in(&token, &csrf, &user, Role::Admin, StatusCode::CREATED))
}

async fn login(
    State(app): State<Arc<App>>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    Json(body): Json<SignInBody>,
) -> ApiResult {
    let ip = crate::limits::canonical(peer.ip());
    // The lockout check and this address's one attempt are taken together, before any hashing.
    let attempt = match app.gate.reserve(ip) {
        Ok(a) => a,
        Err(r) => return Ok(refused(r)),
    };
    let slot = match app.gate.slot().await {
        Ok(s) => s,
        Err(r) => {
            attempt.withdrawn();
            return Ok(refused(r));
        }
    };
    let app2 = app.clone();
    // The attempt and the pool place go with the hash: a client hanging up mid-check frees
    // neither early, and its attempt counts as a miss.
    let name = body.user.clone();
    let user = app
        .gate
        .hash(slot, move || {
            let user = app2.accounts.verify(&body.user, &body.password);
            match &user {
                Ok(Some(_)) => attempt.succeeded(),
                Ok(None) => attempt.failed(),
                Err(_) => attempt.withdrawn(),
            }
            user
        })
        .await
        .map_err(stopped)??;
    match user {
        // The right password of a user with a second factor: a ticket for the code, no session yet.
        Some(user) if app.mfa.is_active(&user.name).map_err(ApiError::from)? => {
            let ticket = app.mfa.begin(&user.name, &ip.to_string(), now()).map_err(ApiError::from)?;
            Ok(Json(json!({
                "user": user.name,
                "mfa_required": true,
                "mfa_ticket": ticket,
                "expires_in": crate::mfa::TICKET_FOR,
            }))
            .into_response())
        }
        Some(user) => {
            let (token, csrf) = app.sessions.create(&user.name, &ip.to_string(), &user_agent(&headers), now())?;
            Ok(signed_in(&token, &csrf, &user.name, user.role, StatusCode::OK))
        }
        None => {
            tracing::warn!(client = %ip, user = name, "status page: wrong user name or password");
            Err(ApiError::new(401, "wrong user name or password (or the user is disabled)"))
        }
    }
}

async fn logout(State(app): State<Arc<App>>, headers: HeaderMap) -> ApiResult {
    if let Some(t) = session_token(&headers) {
        app.sessions.remove(&t)?;
    }
    let clear = format!("{COOKIE}=; Path=/; HttpOnly; SameSite=Strict; Max-Age=0");
    Ok(([(header::SET_COOKIE, clear)], Json(json!({ "signed_in": false }))).into_response())
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ChangePassword {
    password: String,
    current_password: String,
}

/// Runs `f` (which hashes a password) on the hashing pool, as sign-ins do.
pub(crate) async fn hashing<T: Send + 'static>(
    app: &Arc<App>,
    f: impl FnOnce(&App) -> Result<T, ApiError> + Send + 'static,
) -> Result<Result<T, ApiError>, Response> {
    let slot = match app.gate.slot().await {
        Ok(s) => s,
        Err(r) => return Err(refused(r)),
    };
    let app2 = app.clone();
    app.gate.hash(slot, move || f(&app2)).await.map_err(|e| stopped(e).into_response())
}

/// A user changes their own password. Their other sessions signed in with the old one and
/// end; this one stays (they just proved the current password, and being thrown out of the
/// form they used would only confuse).
async fn password(
    State(app): State<Arc<App>>,
    Extension(s): Extension<Session>,
    Json(body): Json<ChangePassword>,
) -> ApiResult {
    let user = s.user.clone();
    let changed = hashing(&app, move |app| {
        app.accounts.change_own(&user, &body.current_password, &body.password).map_err(ApiError::from)
    })
    .await;
    match changed {
        Err(resp) => return Ok(resp),
        Ok(r) => r?,
    }
    let ended = app.sessions.remove_user_except(&s.user, Some(s.id))?;
    app.audit.record(now(), &s.user, "own password changed", &format!("{ended} other sessions signed out"));
    Ok(Json(json!({ "changed": s.user })).into_response())
}

async fn users_list(State(app): State<Arc<App>>) -> ApiResult {
    Ok(Json(app.accounts.list()?).into_response())
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct NewUser {
    name: String,
    role: Role,
    password: String,
}

async fn users_create(
    State(app): State<Arc<App>>,
    Extension(s): Extension<Session>,
    Json(body): Json<NewUser>,
) -> ApiResult {
    let created = hashing(&app, move |app| {
        app.accounts.create(&body.name, body.role, &body.password, now()).map_err(ApiError::from)
    })
    .await;
    let user = match created {
        Err(resp) => return Ok(resp),
        Ok(r) => r?,
    };
    app.audit.record(now(), &s.user, "user created", &format!("{} ({})", user.name, user.role.as_str()));
    Ok((StatusCode::CREATED, Json(user)).into_response())
}

/// An admin changes a user's role, disables or enables them, or sets a new password. A
/// disabled user, a new role and a new password all end that user's sessions (but the
/// admin's own, when they edit themselves).
async fn users_edit(
    State(app): State<Arc<App>>,
    Extension(s): Extension<Session>,
    Path(name): Path<String>,
    Json(edit): Json<UserEdit>,
) -> ApiResult {
    let mut what = Vec::new();
    if let Some(r) = edit.role {
        what.push(format!("role {}", r.as_str()));
    }
    match edit.disabled {
        Some(true) => what.push("disabled".to_string()),
        Some(false) => what.push("enabled".to_string()),
        None => {}
    }
    if edit.password.is_some() {
        what.push("password set".to_string());
    }
    if what.is_empty() {
        return Err(ApiError::new(422, "say what changes: role, disabled or password"));
    }
    let target = name.clone();
    let edited = hashing(&app, move |app| app.accounts.edit(&target, &edit).map_err(ApiError::from)).await;
    let user = match edited {
        Err(resp) => return Ok(resp),
        Ok(r) => r?,
    };
    let keep = (user.name == s.user).then_some(s.id);
    app.sessions.remove_user_except(&user.name, keep)?;
    // A disabled user is no payee any more (an enabled one again is).
    app.payees.write_file_or_log();
    app.audit.record(now(), &s.user, "user changed", &format!("{}: {}", user.name, what.join(", ")));
    Ok(Json(user).into_response())
}

async fn users_remove(
    State(app): State<Arc<App>>,
    Extension(s): Extension<Session>,
    Path(name): Path<String>,
) -> ApiResult {
    app.accounts.remove(&name)?;
    // Their addresses went with them (ON DELETE CASCADE); the stratum server pays them no more.
    app.payees.write_file_or_log();
    app.audit.record(now(), &s.user, "user removed", &name);
    Ok(Json(json!({ "removed": name })).into_response())
}

/// The caller's sessions; an admin's answer holds every user's.
async fn sessions_list(State(app): State<Arc<App>>, Extension(s): Extension<Session>) -> ApiResult {
    let whose = (s.role != Role::Admin).then_some(s.user.as_str());
    Ok(Json(app.sessions.list(whose, s.id, now())?).into_response())
}

/// Signs a session out: one's own, or any for an admin. Someone else's session is "not
/// found" to a non-admin, which tells them nothing about it.
async fn sessions_revoke(
    State(app): State<Arc<App>>,
    Extension(s): Extension<Session>,
    Path(id): Path<String>,
) -> ApiResult {
    let id: i64 = id.parse().map_err(|_| ApiError::new(404, format!("no session {id:?}")))?;
    let owner = (s.role != Role::Admin).then_some(s.user.as_str());
    if !app.sessions.revoke(id, owner)? {
        return Err(ApiError::new(404, format!("no session {id} of yours; list them with GET /api/v1/sessions")));
    }
    app.audit.record(now(), &s.user, "session revoked", &format!("session {id}"));
    Ok(Json(json!({ "revoked": id })).into_response())
}

#[derive(Deserialize)]
struct AuditQuery {
    limit: Option<i64>,
    before: Option<i64>,
}

/// The audit log, newest first, a page at a time (`before` = the last id shown).
async fn audit_list(State(app): State<Arc<App>>, Query(q): Query<AuditQuery>) -> ApiResult {
    let limit = q.limit.unwrap_or(100).clamp(1, 1000);
    Ok(Json(app.audit.list(limit, q.before)?).into_response())
}

/// An answer and whether saved settings wait for the services to restart.
#[derive(serde::Serialize)]
struct WithRestart<T> {
    #[serde(flatten)]
    answer: T,
    restart_required: bool,
}

async fn overview(State(app): State<Arc<App>>) -> Json<WithRestart<crate::overview::Overview>> {
    let answer = app.overview().await;
    Json(WithRestart { answer, restart_required: app.restart_required.load(Ordering::Relaxed) })
}

async fn events(
    State(app): State<Arc<App>>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    conn: Option<axum::Extension<Arc<Conn>>>,
) -> Response {
    let ip = crate::limits::canonical(peer.ip());
    let slot = match app.streams.open(ip, &app.limits) {
        Ok(s) => s,
        Err(StreamRefusal::PerAddress(n)) => {
            let mut r = ApiError::new(
                429,
                format!("{n} live pages are open from your address already; close a tab and reload"),
            )
            .into_response();
            r.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from(10));
            return r;
        }
        Err(StreamRefusal::Total(n)) => {
            let mut r = ApiError::new(503, format!("{n} live pages are open on this box already; try again later"))
                .into_response();
            r.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from(30));
            return r;
        }
    };
    // The stream holds its place and keeps its connection busy (never closed for room)
    // until it ends: the page closes, or the service stops.
    let busy = conn.map(|c| c.0.busy());
    let closing = app.closing.clone();
    let until = async move {
        let _held = (slot, busy);
        closing.cancelled_owned().await
    };
    minebox_events::sse(&app.events, until).into_response()
}

async fn update_status(State(app): State<Arc<App>>) -> ApiResult {
    let status: updater::Status = app.up.get_as(Service::Updates, updater::STATUS).await?;
    Ok(Json(status).into_response())
}

async fn update_history(State(app): State<Arc<App>>) -> ApiResult {
    let history: Vec<updater::HistoryEntry> = app.up.get_as(Service::Updates, updater::HISTORY).await?;
    Ok(Json(history).into_response())
}

async fn stratum_status(State(app): State<Arc<App>>) -> ApiResult {
    let coins: Vec<stratum::CoinStatus> = app.up.get_as(Service::Stratum, stratum::STATUS).await?;
    Ok(Json(coins).into_response())
}

/// The stratum server's solo pools, as it answers them (the contract's type).
async fn pools(State(app): State<Arc<App>>) -> ApiResult {
    let pools: stratum::Pools = app.up.get_as(Service::Stratum, stratum::POOLS).await?;
    Ok(Json(pools).into_response())
}

async fn snapshots(State(app): State<Arc<App>>) -> ApiResult {
    let list: snapshot::List = app.up.get_as(Service::Snapshots, snapshot::LIST).await?;
    Ok(Json(list).into_response())
}

fn valid_coin(coin: &str) -> Result<(), ApiError> {
    if coin.is_empty() || coin.len() > 16 || !coin.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit()) {
        return Err(ApiError::new(404, format!("no coin {coin:?}")));
    }
    Ok(())
}

#[derive(Deserialize)]
struct CoinQuery {
    coin: Option<String>,
}

#[derive(Deserialize)]
struct WorkersQuery {
    coin: Option<String>,
    limit: Option<usize>,
    offset: Option<usize>,
}

/// Workers per page when the page does not say; the most it may ask for.
const WORKERS_PAGE: usize = 200;
const WORKERS_MAX: usize = 1000;

fn with_coin(path: &str, coin: &Option<String>) -> Result<String, ApiError> {
    Ok(match coin {
        Some(c) => {
            valid_coin(c)?;
            format!("{path}?coin={c}")
        }
        None => path.to_string(),
    })
}

/// One page of workers (most recently seen first, as the stratum server sorts them): the
/// worker registry can hold many thousands, and the page never reads more than it shows.
async fn workers(State(app): State<Arc<App>>, Query(q): Query<WorkersQuery>) -> ApiResult {
    let limit = q.limit.unwrap_or(WORKERS_PAGE).clamp(1, WORKERS_MAX);
    let offset = q.offset.unwrap_or(0).min(1_000_000);
    let path = with_coin(stratum::WORKERS, &q.coin)?;
    // Read as the API's worker: the server's decaying-average internals are not part of it
    // (they mean nothing to a reader; the hashrates say it).
    let page = app.up.get_page::<stratum::Worker>(Service::Stratum, &path, limit, offset).await?;
    let mut r = Json(page.items).into_response();
    r.headers_mut().insert("x-more", HeaderValue::from_static(if page.more { "true" } else { "false" }));
    if let Some(t) = page.total {
        r.headers_mut().insert("x-total-count", HeaderValue::from(t));
    }
    Ok(r)
}

async fn miners(State(app): State<Arc<App>>, Query(q): Query<CoinQuery>) -> ApiResult {
    let miners: Vec<stratum::Miner> = app.up.get_as(Service::Stratum, &with_coin(stratum::MINERS, &q.coin)?).await?;
    Ok(Json(miners).into_response())
}

impl From<crate::discovery::ScanError> for ApiError {
    fn from(e: crate::discovery::ScanError) -> ApiError {
        use crate::discovery::ScanError;
        let status = match e {
            ScanError::Busy { .. } | ScanError::NoNetwork => 409,
            ScanError::BadRange(_)
            | ScanError::OutsideLan { .. }
            | ScanError::TooLarge { .. }
            | ScanError::MinerOutsideLan { .. } => 422,
        };
        ApiError::new(status, e.to_string())
    }
}

/// A JSON body that may be left out (an empty body is the default).
fn optional_body<T: serde::de::DeserializeOwned + Default>(body: &[u8]) -> Result<T, ApiError> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Ok(T::default());
    }
    serde_json::from_slice(body).map_err(|e| ApiError::new(422, e.to_string()))
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct ScanBody {
    /// A part of the box's own subnet ("192.168.1.0/28"); the whole subnet if left out.
    range: Option<String>,
}

/// Starts a scan of the box's own network for AxeOS miners (admin: it sends requests to
/// other devices; it changes nothing on them) and answers at once (202) with its progress;
/// the page polls GET /miners/found until it is done. A range off the box's network is
/// refused here (422), a second scan while one runs too (409).
async fn miners_scan(
    State(app): State<Arc<App>>,
    Extension(s): Extension<Session>,
    body: axum::body::Bytes,
) -> ApiResult {
    let body: ScanBody = optional_body(&body)?;
    let job = app.lan.start(body.range.as_deref())?;
    app.audit.record(now(), &s.user, "miners scan", body.range.as_deref().unwrap_or("the box's network"));
    let progress = app.lan.progress();
    let bg = app.clone();
    tokio::spawn(async move {
        bg.lan.run(job).await;
    });
    Ok((StatusCode::ACCEPTED, Json(progress)).into_response())
}

async fn miners_found(State(app): State<Arc<App>>) -> ApiResult {
    let answer = json!({ "last_scan": app.lan.last(), "scan": app.lan.progress(), "coins": coins_to_mine(&app) });
    Ok(Json(answer).into_response())
}

/// A coin "Mine on this box" can point a miner at: its stratum port on the box, and the
/// payout address the miner signs in with.
#[derive(serde::Serialize)]
struct CoinToMine {
    id: String,
    name: String,
    network: String,
    stratum_port: u16,
    payout_address: String,
}

/// The enabled coins, in the order the settings keep them (the page's picker offers them
/// when there is more than one; the first is its default).
fn coins_to_mine(app: &App) -> Vec<CoinToMine> {
    let settings = app.settings();
    settings
        .enabled_coins(&app.registry)
        .map(|(c, coin, network)| CoinToMine {
            id: c.id.clone(),
            name: coin.name.clone(),
            network: network.name.clone(),
            stratum_port: c.stratum_port,
            payout_address: c.payout_address.clone(),
        })
        .collect()
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct PointBody {
    /// Which coin the miner mines on the box; needed only when more than one is enabled.
    coin: Option<String>,
}

/// "Mine on this box": the miner's primary pool becomes this box's stratum port for the
/// coin, signed in as the owner's payout address and a worker named after the miner; its
/// previous pool stays as its fallback; it restarts.
async fn miner_point_here(
    State(app): State<Arc<App>>,
    Extension(s): Extension<Session>,
    Path(ip): Path<String>,
    body: axum::body::Bytes,
) -> ApiResult {
    let body: PointBody = optional_body(&body)?;
    let ip: std::net::Ipv4Addr =
        ip.parse().map_err(|_| ApiError::new(422, format!("{ip:?} is not an IPv4 address of a miner")))?;
    let nets = crate::discovery::local_nets();
    let via = crate::discovery::net_of(&nets, ip)?.address;
    let settings = app.settings();
    let enabled: Vec<_> = settings.enabled_coins(&app.registry).map(|(c, _, _)| c).collect();
    let coin = match (&body.coin, enabled.as_slice()) {
        (Some(id), _) => enabled.iter().find(|c| &c.id == id).copied().ok_or_else(|| {
            ApiError::new(422, format!("the box does not mine {id:?}; enable it in Settings or pick an enabled coin"))
        })?,
        (None, [one]) => *one,
        (None, []) => return Err(ApiError::new(409, "no coin is enabled on this box; enable one in Settings first")),
        (None, _) => {
            let ids: Vec<&str> = enabled.iter().map(|c| c.id.as_str()).collect();
            return Err(ApiError::new(422, format!("this box mines {}; say which coin (\"coin\")", ids.join(", "))));
        }
    };
    let pointed = app
        .lan
        .client
        .point_to_box(ip, &via.to_string(), coin.stratum_port, &coin.payout_address)
        .await
        .map_err(|e| ApiError::new(502, e.to_string()))?;
    app.audit.record(now(), &s.user, "miner pointed here", &format!("{ip} mines {} on this box", coin.id));
    Ok(Json(pointed).into_response())
}

#[derive(Deserialize)]
struct BlocksQuery {
    coin: Option<String>,
    limit: Option<u32>,
}

async fn blocks(State(app): State<Arc<App>>, Query(q): Query<BlocksQuery>) -> ApiResult {
    let mut path = with_coin(stratum::BLOCKS, &q.coin)?;
    if let Some(l) = q.limit {
        path.push(if path.contains('?') { '&' } else { '?' });
        path.push_str(&format!("limit={}", l.clamp(1, 1000)));
    }
    let blocks: Vec<stratum::Block> = app.up.get_as(Service::Stratum, &path).await?;
    Ok(Json(blocks).into_response())
}

#[derive(Deserialize)]
struct HashrateQuery {
    coin: String,
    worker: Option<String>,
    since: Option<i64>,
}

async fn hashrate(State(app): State<Arc<App>>, Query(q): Query<HashrateQuery>) -> ApiResult {
    valid_coin(&q.coin)?;
    let mut url = reqwest::Url::parse(&format!("http://x{}", stratum::HASHRATE)).expect("static url");
    url.query_pairs_mut().append_pair("coin", &q.coin);
    if let Some(w) = &q.worker {
        url.query_pairs_mut().append_pair("worker", w);
    }
    if let Some(s) = q.since {
        url.query_pairs_mut().append_pair("since", &s.to_string());
    }
    let path = format!("{}?{}", url.path(), url.query().unwrap_or(""));
    let points: Vec<stratum::HashratePoint> = app.up.get_as(Service::Stratum, &path).await?;
    Ok(Json(points).into_response())
}

#[derive(Deserialize)]
struct SharesQuery {
    coin: String,
}

/// Accepted and refused shares of a coin per hour (48) and day (30), every worker together.
async fn shares(State(app): State<Arc<App>>, Query(q): Query<SharesQuery>) -> ApiResult {
    valid_coin(&q.coin)?;
    Ok(Json(crate::share_history::fetch(&app.up, &q.coin, now()).await?).into_response())
}

/// A node as the page shows it: the supervisor's [`supervisor::Node`] without what only the
/// services need (credential file paths, process ids, RPC and ZMQ addresses).
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct PublicNode {
    pub coin: String,
    pub network: String,
    pub flavour: String,
    pub state: supervisor::NodeState,
    pub detail: String,
    pub health: Option<supervisor::Health>,
    pub restarts: u32,
    pub backend: String,
}

impl From<supervisor::Node> for PublicNode {
    fn from(n: supervisor::Node) -> PublicNode {
        let supervisor::Node { coin, network, flavour, state, detail, health, restarts, backend, .. } = n;
        PublicNode { coin, network, flavour, state, detail, health, restarts, backend }
    }
}

async fn nodes(State(app): State<Arc<App>>) -> ApiResult {
    let list: Vec<supervisor::Node> = app.up.get_as(Service::Supervisor, supervisor::NODES).await?;
    Ok(Json(list.into_iter().map(PublicNode::from).collect::<Vec<_>>()).into_response())
}

async fn node_action(
    State(app): State<Arc<App>>,
    Extension(s): Extension<Session>,
    Path((coin, action)): Path<(String, String)>,
) -> ApiResult {
    valid_coin(&coin)?;
    let Some(act) = supervisor::NodeAction::parse(&action) else {
        return Err(ApiError::new(404, "nodes can be started or stopped"));
    };
    app.up.post_ok(Service::Supervisor, &act.path(&coin)).await?;
    app.audit.record(now(), &s.user, &format!("node {action}"), &coin);
    let n: supervisor::Node = app.up.get_as(Service::Supervisor, &supervisor::node(&coin)).await?;
    Ok(Json(PublicNode::from(n)).into_response())
}

async fn snapshot_install(
    State(app): State<Arc<App>>,
    Extension(s): Extension<Session>,
    Path(coin): Path<String>,
) -> ApiResult {
    valid_coin(&coin)?;
    let started: snapshot::Started = app.up.post_as(Service::Snapshots, &snapshot::install(&coin)).await?;
    app.audit.record(now(), &s.user, "snapshot install", &coin);
    Ok(Json(started).into_response())
}

async fn update_action(
    State(app): State<Arc<App>>,
    Extension(s): Extension<Session>,
    Path(action): Path<String>,
    headers: HeaderMap,
    body: Body,
) -> ApiResult {
    match updater::Action::parse(&action) {
        Some(updater::Action::Upload) => {
            let answer = upload(&app, &headers, body).await?;
            app.audit.record(now(), &s.user, "update upload", "a bundle uploaded to the updater");
            Ok(answer)
        }
        Some(a) => {
            // The updater answers every action with its status.
            let status: updater::Status = app.up.post_as(Service::Updates, a.path()).await?;
            app.audit.record(now(), &s.user, &format!("update {action}"), "");
            Ok(Json(status).into_response())
        }
        None => Err(ApiError::new(404, "update actions: check, install, usb, upload")),
    }
}

/// Streams an uploaded bundle to the updater without holding it in memory.
async fn upload(app: &App, headers: &HeaderMap, body: Body) -> ApiResult {
    let len = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok())
        .ok_or_else(|| ApiError::new(411, "send the bundle with its Content-Length"))?;
    if len == 0 || len > app.max_upload_bytes {
        return Err(ApiError::new(413, format!("a bundle is 1 byte to {} MiB", app.max_upload_bytes >> 20)));
    }
    let stream = body.into_data_stream();
    let resp = app
        .up
        .client()
        .post(app.up.url(Service::Updates, updater::UPLOAD))
        .header(header::CONTENT_TYPE, "application/octet-stream")
        .header(header::CONTENT_LENGTH, len)
        .timeout(std::time::Duration::from_secs(3600))
        .body(reqwest::Body::wrap_stream(stream))
        .send()
        .await
        .map_err(|e| UpstreamError::Unreachable { service: Service::Updates, detail: e.to_string() })?;
    let status = resp.status().as_u16();
    let body = resp.bytes().await.unwrap_or_default();
    if !(200..300).contains(&status) {
        let msg = serde_json::from_slice::<minebox_api::ErrorBody>(&body)
            .map_or_else(|_| "the updater refused the bundle".to_string(), |e| e.error);
        return Err(ApiError::new(if status < 500 { status } else { 502 }, msg));
    }
    // The updater's answer passes on as it wrote it (null if it was not JSON).
    let body =
        if serde_json::from_slice::<serde::de::IgnoredAny>(&body).is_ok() { body.to_vec() } else { b"null".to_vec() };
    Ok(([(header::CONTENT_TYPE, "application/json")], body).into_response())
}

async fn system(State(app): State<Arc<App>>) -> Json<crate::system::System> {
    let src = app.system.clone();
    Json(tokio::task::spawn_blocking(move || crate::system::read(&src)).await.unwrap_or_default())
}

#[derive(Deserialize)]
struct JournalQuery {
    lines: Option<usize>,
}

async fn journal(State(app): State<Arc<App>>, Path(service): Path<String>, Query(q): Query<JournalQuery>) -> ApiResult {
    use crate::journal::{last_lines, JournalError};
    match last_lines(&service, q.lines.unwrap_or(50), &app.registry).await {
        Ok(lines) => Ok(Json(json!({ "service": service, "lines": lines, "available": true })).into_response()),
        Err(JournalError::Unknown(s)) => Err(ApiError::new(404, JournalError::Unknown(s).to_string())),
        // Development machines often have no journal for these units: say so, not 5xx.
        Err(e) => Ok(Json(json!({ "service": service, "lines": [], "available": false, "reason": e.to_string() }))
            .into_response()),
    }
}

async fn config_get(State(app): State<Arc<App>>) -> Json<WithRestart<config::ConfigView>> {
    let answer = config::view(&app.settings(), &app.registry);
    Json(WithRestart { answer, restart_required: app.restart_required.load(Ordering::Relaxed) })
}

async fn config_put(
    State(app): State<Arc<App>>,
    Extension(s): Extension<Session>,
    body: axum::body::Bytes,
) -> ApiResult {
    let edit: ConfigEdit = serde_json::from_slice(&body).map_err(|e| ApiError::new(422, format!("{e}")))?;
    // Coin settings decide who is paid (payout address, payout_policy, the solo pool, the
    // coin on or off) and the Cloud link sends data off the box: the admin's (docs/status.md).
    if s.role < Role::Admin && (!edit.coins.is_empty() || edit.cloud.is_some()) {
        return Err(ApiError::new(
            403,
            format!(
                "{} is signed in as {}: coin settings (payout address, who a block pays, solo pool, coin on/off) and \
                 MineBox Cloud are changed by an admin; updates, snapshots and notifications are yours",
                s.user,
                s.role.as_str()
            ),
        ));
    }
    let what = edit.summary();
    let live = edit.only_read_live();
    let app2 = app.clone();
    let settings = tokio::task::spawn_blocking(move || config::apply(&app2.files, &edit, &app2.registry))
        .await
        .expect("config task")
        .map_err(|e| ApiError::new(422, e.to_string()))?;
    *app.settings.write().expect("settings") = settings.clone();
    app.audit.record(now(), &s.user, "settings changed", &what);
    if live {
        // Only what this service reads as it goes (the telemetry switch): nothing to restart.
        let answer = config::view(&settings, &app.registry);
        return Ok(Json(WithRestart { answer, restart_required: app.restart_required.load(Ordering::Relaxed) })
            .into_response());
    }
    let applied = match config::run_apply(&settings.status.apply).await {
        Ok(ran) => ran,
        Err(e) => {
            tracing::warn!(error = %e, "settings saved but the services were not restarted");
            false
        }
    };
    app.restart_required.store(!applied, Ordering::Relaxed);
    let answer = config::view(&settings, &app.registry);
    Ok(Json(WithRestart { answer, restart_required: !applied }).into_response())
}

async fn notify_test(State(app): State<Arc<App>>) -> ApiResult {
    let (webhook, ntfy) = app.notify_targets();
    if webhook.is_none() && ntfy.is_none() {
        return Err(ApiError::new(409, "no notification target is set; add a webhook or ntfy URL in Settings"));
    }
    let test = crate::notify::BlockFound {
        coin: "test".into(),
        height: 0,
        hash: "0".repeat(64),
        worker: "a test from the status page".into(),
        reward_sats: 0,
    };
    let errors = crate::notify::send(app.up.client(), &webhook, &ntfy, &test).await;
    // The target failing is the answer to the test, not an error of the box.
    let errors: Vec<String> = errors.iter().map(|e| e.to_string()).collect();
    Ok(Json(json!({ "sent": errors.is_empty(), "errors": errors })).into_response())
}

impl From<crate::cloud::CloudError> for ApiError {
    fn from(e: crate::cloud::CloudError) -> ApiError {
        ApiError::new(e.status(), e.to_string())
    }
}

/// Where the box stands with MineBox Cloud, and exactly what telemetry sends.
async fn cloud_get(State(app): State<Arc<App>>) -> Json<crate::cloud::CloudView> {
    Json(crate::cloud::view(&app.settings().cloud, &app.cloud).await)
}

/// Starts linking (admin): makes the device key if the box has none and shows a code.
async fn cloud_link(State(app): State<Arc<App>>, Extension(s): Extension<Session>) -> ApiResult {
    let answer = crate::cloud::start(&app.settings().cloud, &app.cloud).await?;
    app.audit.record(now(), &s.user, "cloud link started", "");
    Ok(Json(answer).into_response())
}

/// Unlinks the box from its account (admin).
async fn cloud_unlink(State(app): State<Arc<App>>, Extension(s): Extension<Session>) -> ApiResult {
    let answer = crate::cloud::unlink(&app.settings().cloud, &app.cloud).await?;
    app.audit.record(now(), &s.user, "cloud unlinked", "");
    Ok(Json(answer).into_response())
}
