//! Accounts: sign-up, email verification, login with throttling, sessions, password reset and
//! API tokens.
//!
//! Secrets (session cookies, API tokens, mailed tokens) are 256 random bits, sent to the user
//! once and stored as their SHA-256: a leaked database logs no one in. Passwords are argon2id
//! PHC strings.

use crate::db::{self, begin_as};
use crate::error::{ApiError, Body};
use crate::http::{Authed, ClientIp};
use crate::App;
use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use argon2::Argon2;
use axum::extract::{Path, Query, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use rand::RngCore;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::sync::Arc;
use uuid::Uuid;

pub const SESSION_COOKIE: &str = "minebox_session";
const SESSION_PREFIX: &str = "mbs_";
pub const API_TOKEN_PREFIX: &str = "mbx_";
/// A web session lasts this long after login.
const SESSION_DAYS: i32 = 30;
const VERIFY_HOURS: i32 = 48;
const RESET_HOURS: i32 = 1;
const MIN_PASSWORD: usize = 10;
/// argon2 reads all of it: a bound keeps a login from being a CPU bomb.
const MAX_PASSWORD: usize = 1024;
const MAX_EMAIL: usize = 254;
const MAX_NAME: usize = 100;

/// How many failed logins within `window_secs` refuse further attempts, per account and per
/// client address.
#[derive(Clone, Debug)]
pub struct Throttle {
    pub window_secs: i64,
    pub per_account: i64,
    pub per_ip: i64,
}

impl Default for Throttle {
    fn default() -> Self {
        Throttle { window_secs: 15 * 60, per_account: 5, per_ip: 50 }
    }
}

/// A new random token: `prefix` and 64 hex digits.
fn new_token(prefix: &str) -> String {
    let mut bytes = [0u8; 32];
    rand::thread_rng().fill_bytes(&mut bytes);
    format!("{prefix}{}", hex::encode(bytes))
}

pub fn token_hash(token: &str) -> String {
    hex::encode(Sha256::digest(token.as_bytes()))
}

async fn hash_password(password: String) -> Result<String, ApiError> {
    tokio::task::spawn_blocking(move || {
        let salt = SaltString::generate(&mut argon2::password_hash::rand_core::OsRng);
        Argon2::default().hash_password(password.as_bytes(), &salt).map(|h| h.to_string())
    })
    .await
    .map_err(|e| ApiError::Internal(e.to_string()))?
    .map_err(|e| ApiError::Internal(format!("argon2: {e}")))
}

/// Whether `password` matches the PHC string `hash`. With no account, a fixed hash is checked
/// (and the answer is no) so an unknown email takes as long as a wrong password.
async fn verify_password(password: String, hash: Option<String>) -> Result<bool, ApiError> {
    static DUMMY_HASH: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    tokio::task::spawn_blocking(move || {
        let known = hash.is_some();
        let hash = hash.unwrap_or_else(|| {
            DUMMY_HASH
                .get_or_init(|| {
                    let salt = SaltString::generate(&mut argon2::password_hash::rand_core::OsRng);
                    Argon2::default().hash_password(b"no account", &salt).map(|h| h.to_string()).unwrap_or_default()
                })
                .clone()
        });
        let Ok(parsed) = PasswordHash::new(&hash) else { return false };
        Argon2::default().verify_password(password.as_bytes(), &parsed).is_ok() && known
    })
    .await
    .map_err(|e| ApiError::Internal(e.to_string()))
}

fn check_email(email: &str) -> Result<String, ApiError> {
    let email = email.trim();
    if email.len() > MAX_EMAIL {
        return Err(ApiError::BadRequest(format!("the email address is longer than {MAX_EMAIL} characters")));
    }
    email
        .parse::<lettre::Address>()
        .map_err(|_| ApiError::BadRequest(format!("{email:?} is not an email address (name@example.org)")))?;
    Ok(email.to_string())
}

fn check_password(password: &str) -> Result<(), ApiError> {
    let n = password.chars().count();
    if n < MIN_PASSWORD {
        return Err(ApiError::BadRequest(format!("the password needs at least {MIN_PASSWORD} characters")));
    }
    if password.len() > MAX_PASSWORD {
        return Err(ApiError::BadRequest(format!("the password is longer than {MAX_PASSWORD} bytes")));
    }
    Ok(())
}

pub(crate) fn check_name(what: &str, name: &str) -> Result<(), ApiError> {
    if name.chars().count() > MAX_NAME {
        return Err(ApiError::BadRequest(format!("the {what} is longer than {MAX_NAME} characters")));
    }
    if name.chars().any(char::is_control) {
        return Err(ApiError::BadRequest(format!("the {what} contains control characters")));
    }
    Ok(())
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SignUp {
    email: String,
    password: String,
    #[serde(default)]
    display_name: Option<String>,
}

#[derive(Serialize)]
pub struct Created {
    user_id: Uuid,
    message: String,
}

/// POST /api/v1/signup: makes the account and mails the verification link. The account is
/// only made if the mail went out (one transaction around both), so nobody is left with an
/// account they cannot verify.
pub async fn signup(State(app): State<Arc<App>>, Body(req): Body<SignUp>) -> Result<Response, ApiError> {
    let email = check_email(&req.email)?;
    check_password(&req.password)?;
    if let Some(name) = &req.display_name {
        check_name("display name", name)?;
    }
    let hash = hash_password(req.password).await?;
    let user = Uuid::new_v4();
    let token = new_token("");
    let mut client = db::client(&app.api).await?;
    let tx = begin_as(&mut client, &app.context, user).await?;
    let inserted = tx
        .execute(
            "INSERT INTO users (id, email, password_hash, display_name) VALUES ($1, $2, $3, $4)",
            &[&user, &email, &hash, &req.display_name],
        )
        .await;
    if let Err(e) = inserted {
        if e.code() == Some(&tokio_postgres::error::SqlState::UNIQUE_VIOLATION) {
            return Err(ApiError::Conflict(format!(
                "an account with {email} exists already: log in, or reset its password"
            )));
        }
        return Err(e.into());
    }
    tx.execute(
        "INSERT INTO email_tokens (user_id, purpose, token_hash, expires_at)
         VALUES ($1, 'verify', $2, now() + make_interval(hours => $3))",
        &[&user, &token_hash(&token), &VERIFY_HOURS],
    )
    .await?;
    let link = format!("{}/verify?token={token}", app.config.public_url);
    let body = format!(
        "Welcome to MineBox Cloud.\n\nTo confirm this address, open this link within {VERIFY_HOURS} hours:\n\n{link}\n\n\
         If you did not sign up, ignore this mail.\n"
    );
    app.mailer
        .send(&email, "Confirm your MineBox Cloud account", body)
        .await
        .map_err(|e| ApiError::Unavailable(format!("{e}; the account was not made")))?;
    tx.commit().await?;
    let message = format!("account made; open the link mailed to {email} to verify it, then log in");
    Ok((StatusCode::CREATED, Json(Created { user_id: user, message })).into_response())
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TokenOnly {
    token: String,
}

/// A mailed token's refusal in words.
fn email_token_refusal(outcome: &str, what: &str) -> ApiError {
    match outcome {
        "used" => ApiError::Gone(format!("this {what} link was used already; each link works once")),
        "expired" => ApiError::Gone(format!("this {what} link has expired; ask for a new one")),
        _ => ApiError::NotFound(format!("this {what} link is not valid; copy the whole link from the mail")),
    }
}

fn plausible_mail_token(token: &str) -> bool {
    token.len() == 64 && token.bytes().all(|b| b.is_ascii_hexdigit())
}

async fn verify_email(app: &App, token: &str) -> Result<(), ApiError> {
    if !plausible_mail_token(token) {
        return Err(email_token_refusal("unknown", "verification"));
    }
    let mut client = db::client(&app.api).await?;
    let tx = client.transaction().await?;
    let row = tx.query_one("SELECT * FROM minebox_take_email_token('verify', $1)", &[&token_hash(token)]).await?;
    let (user, outcome): (Option<Uuid>, String) = (row.get(0), row.get(1));
    match (user, outcome.as_str()) {
        (Some(user), "ok") => {
            app.context.set(&tx, user).await?;
            tx.execute("UPDATE users SET email_verified = TRUE, updated_at = now() WHERE id = $1", &[&user]).await?;
            tx.commit().await?;
            Ok(())
        }
        (_, outcome) => Err(email_token_refusal(outcome, "verification")),
    }
}

/// GET /verify?token=...: the link in the mail. A browser gets the account page, which
/// verifies by `POST /api/v1/verify` and says so; a mail scanner that fetches links without
/// running scripts does not use up the one-time link. Any other client (no `text/html` in
/// `Accept`) is verified here and answered in plain text, as before the page existed.
pub async fn verify_link(
    State(app): State<Arc<App>>,
    headers: HeaderMap,
    Query(q): Query<TokenOnly>,
) -> Result<Response, ApiError> {
    let browser = headers.get(header::ACCEPT).and_then(|v| v.to_str().ok()).is_some_and(|a| a.contains("text/html"));
    if browser {
        return Ok(crate::web::page().await);
    }
    verify_email(&app, &q.token).await?;
    Ok((StatusCode::OK, "Your email address is verified. You can log in to MineBox Cloud now.\n").into_response())
}

/// POST /api/v1/verify {"token": ...}
pub async fn verify_api(State(app): State<Arc<App>>, Body(req): Body<TokenOnly>) -> Result<Response, ApiError> {
    verify_email(&app, &req.token).await?;
    Ok(Json(serde_json::json!({"message": "email verified; you can log in"})).into_response())
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Login {
    email: String,
    password: String,
}

/// When `key` has `limit` failures in the window: seconds until the oldest of them leaves it.
pub(crate) async fn throttled_for(
    client: &deadpool_postgres::Object,
    key: &str,
    limit: i64,
    window: i64,
) -> Result<Option<i64>, ApiError> {
    let row = client
        .query_one(
            "SELECT count(*), ceil(extract(epoch FROM min(failed_at) + make_interval(secs => $2) - now()))::bigint
               FROM (SELECT failed_at FROM login_failures
                      WHERE key_hash = $1 AND failed_at > now() - make_interval(secs => $2)
                      ORDER BY failed_at DESC LIMIT $3) recent",
            &[&token_hash(key), &(window as f64), &limit],
        )
        .await?;
    let (count, wait): (i64, Option<i64>) = (row.get(0), row.get(1));
    Ok((count >= limit).then(|| wait.unwrap_or(1).max(1)))
}

/// POST /api/v1/login: a session cookie for the web pages.
pub async fn login(
    State(app): State<Arc<App>>,
    ClientIp(ip): ClientIp,
    Body(req): Body<Login>,
) -> Result<Response, ApiError> {
    let email = check_email(&req.email)?;
    if req.password.len() > MAX_PASSWORD {
        return Err(ApiError::BadRequest(format!("the password is longer than {MAX_PASSWORD} bytes")));
    }
    let t = &app.config.throttle;
    let account_key = format!("account:{}", email.to_lowercase());
    let ip_key = format!("ip:{ip}");
    let client = db::client(&app.api).await?;
    // Checked before the password: while throttled, even the right password is refused, so
    // guessing gains nothing.
    if let Some(wait) = throttled_for(&client, &account_key, t.per_account, t.window_secs).await? {
        app.metrics.login_failed("throttled");
        return Err(ApiError::Throttled {
            message: format!(
                "too many failed logins for this account; try again in {wait} seconds, or reset the password"
            ),
            retry_after: wait,
        });
    }
    if let Some(wait) = throttled_for(&client, &ip_key, t.per_ip, t.window_secs).await? {
        app.metrics.login_failed("throttled");
        return Err(ApiError::Throttled {
            message: format!("too many failed logins from your address; try again in {wait} seconds"),
            retry_after: wait,
        });
    }
    let found = client
        .query_opt("SELECT user_id, password_hash, email_verified FROM minebox_login_lookup($1)", &[&email])
        .await?;
    let account: Option<(Uuid, String, bool)> = found.map(|r| (r.get(0), r.get(1), r.get(2)));
    let ok = verify_password(req.password, account.as_ref().map(|a| a.1.clone())).await?;
    let (user, verified) = match (ok, account) {
        (true, Some((user, _, verified))) => (user, verified),
        _ => {
            client
                .execute(
                    "INSERT INTO login_failures (key_hash) VALUES ($1), ($2)",
                    &[&token_hash(&account_key), &token_hash(&ip_key)],
                )
                .await?;
            app.metrics.login_failed("wrong_password");
            return Err(ApiError::Unauthorized("wrong email or password".into()));
        }
    };
    if !verified {
        return Err(ApiError::Forbidden(format!("verify your email address first: open the link mailed to {email}")));
    }
    client.execute("DELETE FROM login_failures WHERE key_hash = $1", &[&token_hash(&account_key)]).await?;
    drop(client);
    let token = new_token(SESSION_PREFIX);
    let mut client = db::client(&app.api).await?;
    let tx = begin_as(&mut client, &app.context, user).await?;
    tx.execute(
        "INSERT INTO sessions (user_id, token_hash, expires_at) VALUES ($1, $2, now() + make_interval(days => $3))",
        &[&user, &token_hash(&token), &SESSION_DAYS],
    )
    .await?;
    tx.execute("UPDATE users SET last_login_at = now() WHERE id = $1", &[&user]).await?;
    tx.commit().await?;
    let secure = if app.config.cookie_secure { "; Secure" } else { "" };
    let max_age = i64::from(SESSION_DAYS) * 86_400;
    let cookie = format!("{SESSION_COOKIE}={token}; Path=/; HttpOnly; SameSite=Lax; Max-Age={max_age}{secure}");
    let mut response = Json(serde_json::json!({"user_id": user, "message": "logged in"})).into_response();
    response
        .headers_mut()
        .insert(header::SET_COOKIE, HeaderValue::from_str(&cookie).map_err(|e| ApiError::Internal(e.to_string()))?);
    Ok(response)
}

/// POST /api/v1/logout: ends the session the request came with.
pub async fn logout(State(app): State<Arc<App>>, auth: Authed) -> Result<Response, ApiError> {
    if let Some(hash) = &auth.session_hash {
        let mut client = db::client(&app.api).await?;
        let tx = begin_as(&mut client, &app.context, auth.user).await?;
        tx.execute("UPDATE sessions SET revoked_at = now() WHERE token_hash = $1", &[hash]).await?;
        tx.commit().await?;
    }
    let mut response = Json(serde_json::json!({"message": "logged out"})).into_response();
    let expired = format!("{SESSION_COOKIE}=; Path=/; HttpOnly; SameSite=Lax; Max-Age=0");
    response.headers_mut().insert(header::SET_COOKIE, HeaderValue::from_str(&expired).expect("ascii"));
    Ok(response)
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EmailOnly {
    email: String,
}

/// POST /api/v1/password-reset {"email"}: mails a reset link if the account exists. The answer
/// is the same either way, so it does not tell who has an account.
pub async fn reset_request(State(app): State<Arc<App>>, Body(req): Body<EmailOnly>) -> Result<Response, ApiError> {
    let email = check_email(&req.email)?;
    let mut client = db::client(&app.api).await?;
    let found = client.query_opt("SELECT user_id FROM minebox_login_lookup($1)", &[&email]).await?;
    if let Some(row) = found {
        let user: Uuid = row.get(0);
        let token = new_token("");
        let tx = begin_as(&mut client, &app.context, user).await?;
        let to: String = tx.query_one("SELECT email FROM users WHERE id = $1", &[&user]).await?.get(0);
        tx.execute(
            "INSERT INTO email_tokens (user_id, purpose, token_hash, expires_at)
             VALUES ($1, 'reset', $2, now() + make_interval(hours => $3))",
            &[&user, &token_hash(&token), &RESET_HOURS],
        )
        .await?;
        let link = format!("{}/reset?token={token}", app.config.public_url);
        let body = format!(
            "Someone asked to reset the password of your MineBox Cloud account.\n\n\
             To choose a new password, open this link within {RESET_HOURS} hour(s):\n\n{link}\n\n\
             If it was not you, ignore this mail: your password stays as it is.\n"
        );
        app.mailer
            .send(&to, "Reset your MineBox Cloud password", body)
            .await
            .map_err(|e| ApiError::Unavailable(e.to_string()))?;
        tx.commit().await?;
    }
    let message = format!("if {email} has an account, a reset link is on its way");
    Ok((StatusCode::ACCEPTED, Json(serde_json::json!({"message": message}))).into_response())
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ResetConfirm {
    token: String,
    password: String,
}

/// POST /api/v1/password-reset/confirm {"token", "password"}: sets the new password and ends
/// every session of the account (whoever knew the old password is logged out).
pub async fn reset_confirm(State(app): State<Arc<App>>, Body(req): Body<ResetConfirm>) -> Result<Response, ApiError> {
    check_password(&req.password)?;
    if !plausible_mail_token(&req.token) {
        return Err(email_token_refusal("unknown", "password reset"));
    }
    let hash = hash_password(req.password).await?;
    let mut client = db::client(&app.api).await?;
    let tx = client.transaction().await?;
    let row = tx.query_one("SELECT * FROM minebox_take_email_token('reset', $1)", &[&token_hash(&req.token)]).await?;
    let (user, outcome): (Option<Uuid>, String) = (row.get(0), row.get(1));
    let Some(user) = user.filter(|_| outcome == "ok") else {
        return Err(email_token_refusal(&outcome, "password reset"));
    };
    app.context.set(&tx, user).await?;
    // The mail reached the owner's inbox: that verifies the address too.
    tx.execute(
        "UPDATE users SET password_hash = $2, email_verified = TRUE, updated_at = now() WHERE id = $1",
        &[&user, &hash],
    )
    .await?;
    tx.execute("UPDATE sessions SET revoked_at = now() WHERE user_id = $1 AND revoked_at IS NULL", &[&user]).await?;
    tx.commit().await?;
    Ok(Json(serde_json::json!({"message": "password changed; log in with the new one"})).into_response())
}

/// GET /api/v1/me
pub async fn me(State(app): State<Arc<App>>, auth: Authed) -> Result<Response, ApiError> {
    let mut client = db::client(&app.api).await?;
    let tx = begin_as(&mut client, &app.context, auth.user).await?;
    let row = tx
        .query_opt(
            "SELECT id, email, display_name, email_verified, leaderboard_public FROM users WHERE id = $1",
            &[&auth.user],
        )
        .await?
        .ok_or_else(|| ApiError::NotFound("the account no longer exists".into()))?;
    tx.commit().await?;
    let (id, email, name, verified, public): (Uuid, String, Option<String>, bool, bool) =
        (row.get(0), row.get(1), row.get(2), row.get(3), row.get(4));
    Ok(Json(serde_json::json!({"id": id, "email": email, "display_name": name, "email_verified": verified,
                               "leaderboard_public": public}))
    .into_response())
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NewToken {
    name: String,
}

/// POST /api/v1/tokens {"name"}: a new API token, shown in this answer only.
pub async fn create_token(
    State(app): State<Arc<App>>,
    auth: Authed,
    Body(req): Body<NewToken>,
) -> Result<Response, ApiError> {
    check_name("token name", &req.name)?;
    if req.name.trim().is_empty() {
        return Err(ApiError::BadRequest("give the token a name, to tell it apart when revoking".into()));
    }
    let token = new_token(API_TOKEN_PREFIX);
    let prefix = &token[..12];
    let mut client = db::client(&app.api).await?;
    let tx = begin_as(&mut client, &app.context, auth.user).await?;
    let id: Uuid = tx
        .query_one(
            "INSERT INTO api_tokens (user_id, name, prefix, token_hash) VALUES ($1, $2, $3, $4) RETURNING id",
            &[&auth.user, &req.name, &prefix, &token_hash(&token)],
        )
        .await?
        .get(0);
    tx.commit().await?;
    let body = serde_json::json!({
        "id": id, "name": req.name, "token": token,
        "message": "copy the token now: it is not shown again; send it as `Authorization: Bearer <token>`",
    });
    Ok((StatusCode::CREATED, Json(body)).into_response())
}

/// GET /api/v1/tokens: the account's tokens, without their secrets.
pub async fn list_tokens(State(app): State<Arc<App>>, auth: Authed) -> Result<Response, ApiError> {
    let mut client = db::client(&app.api).await?;
    let tx = begin_as(&mut client, &app.context, auth.user).await?;
    let rows =
        tx.query("SELECT id, name, prefix, revoked_at IS NOT NULL FROM api_tokens ORDER BY created_at", &[]).await?;
    tx.commit().await?;
    let tokens: Vec<_> = rows
        .iter()
        .map(|r| {
            let (id, name, prefix, revoked): (Uuid, String, String, bool) = (r.get(0), r.get(1), r.get(2), r.get(3));
            serde_json::json!({"id": id, "name": name, "prefix": prefix, "revoked": revoked})
        })
        .collect();
    Ok(Json(serde_json::json!({"tokens": tokens})).into_response())
}

/// DELETE /api/v1/tokens/{id}: revokes one of the account's tokens.
pub async fn revoke_token(
    State(app): State<Arc<App>>,
    auth: Authed,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    let id: Uuid = id.parse().map_err(|_| ApiError::BadRequest(format!("{id:?} is not a token id")))?;
    let mut client = db::client(&app.api).await?;
    let tx = begin_as(&mut client, &app.context, auth.user).await?;
    // Row-level security: another account's token is not found, as if it did not exist.
    let n = tx.execute("UPDATE api_tokens SET revoked_at = coalesce(revoked_at, now()) WHERE id = $1", &[&id]).await?;
    tx.commit().await?;
    if n == 0 {
        return Err(ApiError::NotFound(format!("you have no API token {id}")));
    }
    Ok(Json(serde_json::json!({"message": "token revoked"})).into_response())
}

/// Who a request is from: its `Authorization: Bearer` API token, else its session cookie.
pub async fn authenticate(app: &App, headers: &HeaderMap) -> Result<Authed, ApiError> {
    let bearer =
        headers.get(header::AUTHORIZATION).and_then(|v| v.to_str().ok()).and_then(|v| v.strip_prefix("Bearer "));
    let (kind, token) = if let Some(token) = bearer {
        ("api", token.trim().to_string())
    } else {
        let cookie = headers
            .get_all(header::COOKIE)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(';'))
            .filter_map(|c| c.trim().strip_prefix(SESSION_COOKIE)?.strip_prefix('='))
            .next()
            .map(str::to_string);
        match cookie {
            Some(token) => ("session", token),
            None => {
                return Err(ApiError::Unauthorized(
                    "log in first, or send an API token as `Authorization: Bearer mbx_...`".into(),
                ))
            }
        }
    };
    let hash = token_hash(&token);
    let client = db::client(&app.api).await?;
    let user: Option<Uuid> = client.query_one("SELECT minebox_token_user($1, $2)", &[&kind, &hash]).await?.get(0);
    match user {
        Some(user) => Ok(Authed { user, session_hash: (kind == "session").then_some(hash) }),
        None if kind == "api" => Err(ApiError::Unauthorized("this API token is not valid or was revoked".into())),
        None => Err(ApiError::Unauthorized("your session has ended; log in again".into())),
    }
}
