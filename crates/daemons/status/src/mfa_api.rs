//! The endpoints of two-factor sign-in ([`crate::mfa`]): the sign-in's second step, each
//! user's own set-up (enrol, QR code, confirm, recovery codes, turn off), an admin removing
//! another user's, and the requirement for every admin. Each change is in the audit log.

use crate::accounts::Role;
use crate::api::{hashing, signed_in, user_agent, ApiError, ApiResult};
use crate::app::App;
use crate::mfa::{MfaError, Used};
use crate::session::Session;
use crate::user_db::now;
use axum::extract::{ConnectInfo, Path, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::IntoResponse;
use axum::{Extension, Json};
use serde::Deserialize;
use serde_json::json;
use std::net::SocketAddr;
use std::sync::Arc;

/// What an admin without a second factor is told while the box requires one.
pub const ENROL_FIRST: &str = "this box requires two-factor sign-in for every admin: set yours up first (Settings, \
                               Two-factor sign-in: scan the QR code with an authenticator app and enter its code)";

impl From<MfaError> for ApiError {
    fn from(e: MfaError) -> ApiError {
        let status = match &e {
            MfaError::WrongCode | MfaError::Reused | MfaError::WrongPassword => 403,
            MfaError::Throttled { .. } => 429,
            MfaError::NoTicket => 401,
            MfaError::NoSuchUser(_) => 404,
            MfaError::AlreadyActive
            | MfaError::NotEnrolling
            | MfaError::NotActive(_)
            | MfaError::RequiredForAdmins
            | MfaError::RequirerWithout => 409,
            MfaError::TooManyTickets => 503,
            MfaError::Db(_) => 500,
        };
        ApiError::new(status, e.to_string())
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SecondStep {
    /// From the password step's answer.
    mfa_ticket: String,
    /// The authenticator app's 6 digits, or a recovery code.
    code: String,
}

/// The sign-in's second step: the ticket the right password gave, and a code.
pub async fn login_code(
    State(app): State<Arc<App>>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    Json(body): Json<SecondStep>,
) -> ApiResult {
    let ip = crate::limits::canonical(peer.ip()).to_string();
    let name = app.mfa.ticket_user(&body.mfa_ticket, &ip, now())?;
    let used = match app.mfa.verify(&name, &body.code, now()) {
        Ok(used) => used,
        Err(e @ (MfaError::WrongCode | MfaError::Reused)) => {
            tracing::warn!(client = %ip, user = name, "status page: wrong second-factor code");
            return Err(ApiError::new(401, e.to_string()));
        }
        Err(e) => return Err(e.into()),
    };
    app.mfa.end_ticket(&body.mfa_ticket);
    if let Used::Recovery { left } = used {
        app.audit.record(now(), &name, "recovery code used", &format!("signed in with a recovery code; {left} left"));
    }
    // Disabled or removed while the code was being typed: no session.
    let user = app
        .accounts
        .get(&name)?
        .filter(|u| !u.disabled)
        .ok_or_else(|| ApiError::new(401, "wrong user name or password (or the user is disabled)"))?;
    let (token, csrf) = app.sessions.create(&user.name, &ip, &user_agent(&headers), now())?;
    Ok(signed_in(&token, &csrf, &user.name, user.role, StatusCode::OK))
}

pub async fn status(State(app): State<Arc<App>>, Extension(s): Extension<Session>) -> ApiResult {
    Ok(Json(app.mfa.status(&s.user, s.role)?).into_response())
}

/// A new secret for the caller, not yet on: the page shows it and its QR code.
pub async fn enrol(State(app): State<Arc<App>>, Extension(s): Extension<Session>) -> ApiResult {
    let e = app.mfa.enrol(&s.user, &crate::api::box_name(), now())?;
    Ok(Json(json!({ "secret": e.secret, "uri": e.uri, "qr": "/api/v1/auth/mfa/qr" })).into_response())
}

/// The waiting secret's QR code, an SVG image from the box itself (the page's CSP allows
/// images from its own origin; nothing is built from data in the page).
pub async fn qr(State(app): State<Arc<App>>, Extension(s): Extension<Session>) -> ApiResult {
    let uri = app
        .mfa
        .enrolment_uri(&s.user, &crate::api::box_name())?
        .ok_or_else(|| ApiError::new(404, "no authenticator is waiting to be confirmed; start the set-up first"))?;
    let svg = crate::mfa::qr_svg(&uri).ok_or_else(|| ApiError::new(500, "the QR code could not be drawn"))?;
    Ok(([(header::CONTENT_TYPE, "image/svg+xml"), (header::CACHE_CONTROL, "no-store")], svg).into_response())
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Code {
    code: String,
}

/// The first code from the app turns two-factor sign-in on; the recovery codes come back once.
pub async fn confirm(State(app): State<Arc<App>>, Extension(s): Extension<Session>, Json(b): Json<Code>) -> ApiResult {
    let codes = app.mfa.confirm(&s.user, &b.code, now())?;
    app.audit.record(now(), &s.user, "two-factor enrolled", "authenticator app confirmed; 10 recovery codes made");
    Ok(Json(json!({ "active": true, "recovery_codes": codes })).into_response())
}

/// Ten new recovery codes for a code from the app (or a recovery code); the old ones end.
pub async fn regenerate(
    State(app): State<Arc<App>>,
    Extension(s): Extension<Session>,
    Json(b): Json<Code>,
) -> ApiResult {
    app.mfa.verify(&s.user, &b.code, now())?;
    let codes = app.mfa.regenerate(&s.user)?;
    app.audit.record(now(), &s.user, "recovery codes regenerated", "10 new codes; the old ones no longer work");
    Ok(Json(json!({ "recovery_codes": codes })).into_response())
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TurnOff {
    password: String,
    code: String,
}

/// The caller turns their own second factor off: their password and a code, both right.
pub async fn disable(
    State(app): State<Arc<App>>,
    Extension(s): Extension<Session>,
    Json(b): Json<TurnOff>,
) -> ApiResult {
    if s.role == Role::Admin && app.mfa.required_for_admins()? {
        return Err(MfaError::RequiredForAdmins.into());
    }
    let user = s.user.clone();
    let password = b.password;
    let checked = hashing(&app, move |app| app.accounts.verify(&user, &password).map_err(ApiError::from)).await;
    match checked {
        Err(resp) => return Ok(resp),
        Ok(r) => {
            if r?.is_none() {
                return Err(MfaError::WrongPassword.into());
            }
        }
    }
    app.mfa.verify(&s.user, &b.code, now())?;
    app.mfa.remove(&s.user, Some(s.role))?;
    app.audit.record(now(), &s.user, "two-factor disabled", "own, with password and code");
    Ok(Json(json!({ "active": false })).into_response())
}

/// An admin removes another user's second factor (a lost phone and no recovery codes); the
/// user signs in with their password alone until they enrol again.
pub async fn remove_other(
    State(app): State<Arc<App>>,
    Extension(s): Extension<Session>,
    Path(name): Path<String>,
) -> ApiResult {
    if app.accounts.get(&name)?.is_none() {
        return Err(MfaError::NoSuchUser(name).into());
    }
    if !app.mfa.remove(&name, None)? {
        return Err(MfaError::NotActive(name).into());
    }
    app.audit.record(now(), &s.user, "two-factor removed", &format!("{name}'s, by an admin"));
    Ok(Json(json!({ "user": name, "active": false })).into_response())
}

pub async fn policy_get(State(app): State<Arc<App>>) -> ApiResult {
    Ok(Json(json!({ "require_for_admins": app.mfa.required_for_admins()? })).into_response())
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Policy {
    require_for_admins: bool,
}

/// Switches the requirement for every admin (an admin's, who must have it on to switch it on).
pub async fn policy_put(
    State(app): State<Arc<App>>,
    Extension(s): Extension<Session>,
    Json(b): Json<Policy>,
) -> ApiResult {
    app.mfa.set_required_for_admins(&s.user, b.require_for_admins)?;
    let detail = if b.require_for_admins {
        "on: every admin must sign in with a second factor (those without set it up at their next request)"
    } else {
        "off: admins may sign in with their password alone"
    };
    app.audit.record(now(), &s.user, "two-factor requirement switched", detail);
    Ok(Json(json!({ "require_for_admins": b.require_for_admins })).into_response())
}
