//! Devices: a box pairs itself to an account with a short code, and speaks for itself with
//! requests signed by its Ed25519 key (issue 16, point 4; docs/cloud.md, "Devices and pairing").
//!
//! The box's key is its identity: `devices.device_fingerprint` holds the public key (hex). A
//! signed request carries the key, a timestamp, a fresh nonce and the signature over
//! [`canonical`]; the service checks the signature first, then the time window, then records
//! the nonce (a replay finds it recorded). The box side is `minebox-cloud-link`.

use crate::accounts::{check_name, throttled_for, token_hash};
use crate::db::{self, begin_as};
use crate::error::{ApiError, Body};
use crate::http::{Authed, ClientIp};
use crate::App;
use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{FromRequest, FromRequestParts, OriginalUri, Path, Request, State};
use axum::http::{HeaderMap, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use ed25519_dalek::{Signature, VerifyingKey};
use rand::RngCore;
use serde::Deserialize;
use sha2::{Digest, Sha256};
use std::sync::Arc;
use uuid::Uuid;

pub const HEADER_DEVICE: &str = "MineBox-Device";
pub const HEADER_TIMESTAMP: &str = "MineBox-Timestamp";
pub const HEADER_NONCE: &str = "MineBox-Nonce";
pub const HEADER_SIGNATURE: &str = "MineBox-Signature";
/// The first line of the signed string: names the scheme, so a signature made for anything
/// else never verifies here.
pub const SCHEME: &str = "minebox-device-v1";
/// A signed request's timestamp may differ from the service's clock by this much either way.
pub const CLOCK_SKEW_SECS: i64 = 300;
/// How long nonces are kept: a request is accepted at most `CLOCK_SKEW_SECS` after its
/// timestamp, and its nonce may have been seen up to `CLOCK_SKEW_SECS` before it, so twice the
/// skew covers every replay the timestamp check lets through; the rest is margin.
pub const NONCE_KEEP_SECS: i64 = 3 * CLOCK_SKEW_SECS;
/// How long a pairing code can be entered.
pub const CODE_MINUTES: i32 = 10;
/// Pairing codes: 8 characters from 32 that cannot be mistaken for each other (no 0/O, 1/I),
/// 40 bits; shown as `XXXX-XXXX`.
pub const CODE_ALPHABET: &[u8; 32] = b"23456789ABCDEFGHJKLMNPQRSTUVWXYZ";
pub const CODE_LEN: usize = 8;
const MAX_MODEL: usize = 50;
const MAX_VERSION: usize = 40;

/// The string a box signs: the scheme, the method, the path (no query), the timestamp, the
/// nonce and the hex SHA-256 of the body, one per line.
pub fn canonical(method: &str, path: &str, timestamp: i64, nonce: &str, body: &[u8]) -> String {
    format!("{SCHEME}\n{method}\n{path}\n{timestamp}\n{nonce}\n{}", hex::encode(Sha256::digest(body)))
}

/// A new pairing code, normalized (no dash).
fn new_code() -> String {
    let mut bytes = [0u8; CODE_LEN];
    rand::thread_rng().fill_bytes(&mut bytes);
    // 256 is a multiple of 32: every character is equally likely.
    bytes.iter().map(|b| CODE_ALPHABET[usize::from(b % 32)] as char).collect()
}

fn display_code(code: &str) -> String {
    format!("{}-{}", &code[..4], &code[4..])
}

/// The code as typed, normalized: dashes and spaces dropped, upper case. `None` if it cannot be
/// a code (then it is not looked up).
fn normalize_code(typed: &str) -> Option<String> {
    let code: String = typed.chars().filter(|c| *c != '-' && !c.is_whitespace()).collect::<String>().to_uppercase();
    (code.len() == CODE_LEN && code.bytes().all(|b| CODE_ALPHABET.contains(&b))).then_some(code)
}

pub(crate) fn unix_now() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs() as i64).unwrap_or(0)
}

/// `a***@example.org`: enough for the box's owner to recognise their account, not enough to
/// hand anyone who sees the box's page the address.
pub fn mask_email(email: &str) -> String {
    match email.split_once('@') {
        Some((local, domain)) => {
            let first: String = local.chars().take(1).collect();
            format!("{first}***@{domain}")
        }
        None => "***".into(),
    }
}

fn header<'a>(headers: &'a HeaderMap, name: &str) -> Result<&'a str, ApiError> {
    let value = headers.get(name).ok_or_else(|| {
        ApiError::Unauthorized(format!(
            "this endpoint takes requests signed by the box's device key: the {name} header is missing \
             (docs/cloud.md, \"Devices and pairing\")"
        ))
    })?;
    value.to_str().map_err(|_| ApiError::Unauthorized(format!("the {name} header is not text")))
}

fn hex_of(what: &str, text: &str, len: usize) -> Result<Vec<u8>, ApiError> {
    match hex::decode(text) {
        Ok(bytes) if bytes.len() == len => Ok(bytes),
        _ => Err(ApiError::Unauthorized(format!("the {what} is not {len} bytes of hex"))),
    }
}

/// Checks a signed device request; returns the box's public key as lower-case hex.
async fn verify(app: &App, method: &Method, path: &str, headers: &HeaderMap, body: &[u8]) -> Result<String, ApiError> {
    let key_bytes = hex_of(HEADER_DEVICE, header(headers, HEADER_DEVICE)?, 32)?;
    let timestamp: i64 = header(headers, HEADER_TIMESTAMP)?.parse().map_err(|_| {
        ApiError::Unauthorized(format!("the {HEADER_TIMESTAMP} header is not whole seconds since 1970"))
    })?;
    let nonce_text = header(headers, HEADER_NONCE)?;
    hex_of(HEADER_NONCE, nonce_text, 16)?;
    let signature = hex_of(HEADER_SIGNATURE, header(headers, HEADER_SIGNATURE)?, 64)?;
    let key_array: [u8; 32] = key_bytes.as_slice().try_into().expect("32 bytes");
    let key = VerifyingKey::from_bytes(&key_array)
        .ok()
        .filter(|k| !k.is_weak())
        .ok_or_else(|| ApiError::Unauthorized(format!("the {HEADER_DEVICE} header is not an Ed25519 public key")))?;
    let signature = Signature::from_slice(&signature)
        .map_err(|_| ApiError::Unauthorized(format!("the {HEADER_SIGNATURE} header is not an Ed25519 signature")))?;
    let nonce = nonce_text.to_ascii_lowercase();
    let signed = canonical(method.as_str(), path, timestamp, nonce_text, body);
    key.verify_strict(signed.as_bytes(), &signature).map_err(|_| {
        ApiError::Unauthorized(
            "the request's signature does not verify with the key in its MineBox-Device header: \
             sign method, path, timestamp, nonce and the body's SHA-256 with that key"
                .into(),
        )
    })?;
    let skew = unix_now() - timestamp;
    if skew.abs() > CLOCK_SKEW_SECS {
        return Err(ApiError::Unauthorized(format!(
            "the request's timestamp is {} seconds {} the service's clock (at most {CLOCK_SKEW_SECS} are \
             accepted): set the box's clock (NTP) and sign again",
            skew.abs(),
            if skew > 0 { "behind" } else { "ahead of" }
        )));
    }
    let hex_key = hex::encode(key_array);
    let client = db::client(&app.api).await?;
    let fresh: bool = client.query_one("SELECT minebox_device_nonce($1, $2)", &[&hex_key, &nonce]).await?.get(0);
    if !fresh {
        return Err(ApiError::Unauthorized(
            "this request was seen already (its nonce was used): a replay is refused; sign each request \
             with a new random nonce"
                .into(),
        ));
    }
    Ok(hex_key)
}

/// A device request whose signature, clock and nonce checked out (`verify`): the box's public
/// key as lower-case hex, and the raw body it signed. A handler that takes it never sees an
/// unsigned or replayed request. The path signed is the one the client sent (`OriginalUri`).
pub struct Signed {
    pub key: String,
    pub body: Bytes,
}

impl FromRequest<Arc<App>> for Signed {
    type Rejection = ApiError;

    async fn from_request(req: Request, app: &Arc<App>) -> Result<Self, ApiError> {
        let (mut parts, body) = req.into_parts();
        let Ok(OriginalUri(uri)) = OriginalUri::from_request_parts(&mut parts, app).await;
        let (method, headers) = (parts.method.clone(), parts.headers.clone());
        // The chunk-URL endpoint takes a larger body than the rest (http.rs): say its limit.
        let limit =
            if uri.path().ends_with("/chunks") { crate::snapshots::CHUNKS_BODY_LIMIT } else { crate::http::BODY_LIMIT };
        let body = raw_body(Bytes::from_request(Request::from_parts(parts, body), app).await, limit)?;
        let key = verify(app, &method, uri.path(), &headers, &body).await?;
        Ok(Signed { key, body })
    }
}

/// The raw body, or the same refusal a JSON endpoint gives (413 when too large).
fn raw_body(body: Result<Bytes, BytesRejection>, limit: usize) -> Result<Bytes, ApiError> {
    body.map_err(|rejection| {
        let status = rejection.status();
        let message = if status == StatusCode::PAYLOAD_TOO_LARGE {
            format!("the request body is larger than {limit} bytes")
        } else {
            format!("the request body could not be read: {}", rejection.body_text())
        };
        ApiError::Body { status, message }
    })
}

pub(crate) fn json_of<T: serde::de::DeserializeOwned>(body: &[u8]) -> Result<T, ApiError> {
    let body = if body.iter().all(u8::is_ascii_whitespace) { b"{}".as_slice() } else { body };
    serde_json::from_slice(body).map_err(|e| ApiError::Body {
        status: StatusCode::UNPROCESSABLE_ENTITY,
        message: format!("the request body is not what this endpoint takes: {e}"),
    })
}

pub(crate) fn check_short(what: &str, value: &str, max: usize) -> Result<(), ApiError> {
    if value.chars().count() > max {
        return Err(ApiError::BadRequest(format!("the {what} is longer than {max} characters")));
    }
    if value.chars().any(char::is_control) {
        return Err(ApiError::BadRequest(format!("the {what} contains control characters")));
    }
    Ok(())
}

/// A device name as a user or box gives it: trimmed, not empty, at most 100 characters, no
/// control characters. Stored as given otherwise (it is only ever a bound parameter).
fn device_name(name: &str) -> Result<String, ApiError> {
    let name = name.trim();
    if name.is_empty() {
        return Err(ApiError::BadRequest("the device name is empty: give the box a name".into()));
    }
    check_name("device name", name)?;
    Ok(name.to_string())
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StartPairing {
    #[serde(default)]
    name: Option<String>,
    #[serde(default)]
    model: Option<String>,
    #[serde(default)]
    version: Option<String>,
}

/// POST /api/v1/devices/pair/start (signed): the box, new or unlinked, gets a pairing code to
/// show its owner. A box linked already is refused (unlink first).
pub async fn start_pairing(
    State(app): State<Arc<App>>,
    ClientIp(ip): ClientIp,
    Signed { key, body }: Signed,
) -> Result<Response, ApiError> {
    let req: StartPairing = json_of(&body)?;
    let name = req.name.as_deref().map(device_name).transpose()?;
    if let Some(model) = &req.model {
        check_short("model", model, MAX_MODEL)?;
    }
    if let Some(version) = &req.version {
        check_short("version", version, MAX_VERSION)?;
    }
    // Every start makes a row (a new key is a new box): at most the throttle's per-address
    // count per window, so one address cannot fill the table.
    let t = &app.config.throttle;
    let start_key = format!("pair-start-ip:{ip}");
    let client = db::client(&app.api).await?;
    if let Some(wait) = throttled_for(&client, &start_key, t.per_ip, t.window_secs).await? {
        return Err(ApiError::Throttled {
            message: format!("too many pairing starts from your address; try again in {wait} seconds"),
            retry_after: wait,
        });
    }
    client.execute("INSERT INTO login_failures (key_hash) VALUES ($1)", &[&token_hash(&start_key)]).await?;
    // A code equal to one stored (live, or used within the day the upkeep keeps it) breaks the
    // unique index: draw again. At 40 bits that is rare; three draws all colliding is not seen.
    let mut attempt = 0;
    let (code, row) = loop {
        let code = new_code();
        let started = client
            .query_one(
                "SELECT device_id, outcome FROM minebox_device_start_pairing($1, $2, $3, $4, $5, $6)",
                &[&key, &name, &req.model, &req.version, &token_hash(&code), &CODE_MINUTES],
            )
            .await;
        match started {
            Err(e) if attempt < 2 && e.code() == Some(&tokio_postgres::error::SqlState::UNIQUE_VIOLATION) => {
                attempt += 1;
            }
            other => break (code, other?),
        }
    };
    let (device, outcome): (Uuid, String) = (row.get(0), row.get(1));
    if outcome == "linked" {
        return Err(ApiError::Conflict(
            "this box is linked to an account already: unlink it (from the box or the account) before pairing again"
                .into(),
        ));
    }
    let code = display_code(&code);
    let expires_in = i64::from(CODE_MINUTES) * 60;
    Ok((
        StatusCode::CREATED,
        Json(serde_json::json!({
            "device_id": device,
            "code": code,
            "expires_in": expires_in,
            "message": format!(
                "enter {code} in your MineBox Cloud account (Devices, Link a box) within {CODE_MINUTES} minutes"
            ),
        })),
    )
        .into_response())
}

/// What the box is to the cloud.
async fn device_state(app: &App, key: &str) -> Result<serde_json::Value, ApiError> {
    let client = db::client(&app.api).await?;
    let row = client
        .query_opt("SELECT device_id, email, name, code_expires_in FROM minebox_device_status($1)", &[&key])
        .await?;
    let Some(row) = row else {
        return Err(ApiError::Unauthorized(
            "the cloud does not know this device key: start pairing (POST /api/v1/devices/pair/start) first".into(),
        ));
    };
    let (device, email, name, expires_in): (Uuid, Option<String>, Option<String>, Option<i64>) =
        (row.get(0), row.get(1), row.get(2), row.get(3));
    Ok(match (email, expires_in) {
        (Some(email), _) => serde_json::json!({
            "device_id": device, "state": "linked", "account": mask_email(&email), "name": name,
            "message": format!("linked to the MineBox Cloud account {}", mask_email(&email)),
        }),
        (None, Some(expires_in)) => serde_json::json!({
            "device_id": device, "state": "pending", "name": name, "expires_in": expires_in,
            "message": format!("waiting for the pairing code to be entered (expires in {expires_in} seconds)"),
        }),
        (None, None) => serde_json::json!({
            "device_id": device, "state": "unlinked", "name": name,
            "message": "not linked to an account: start pairing to get a new code",
        }),
    })
}

/// GET /api/v1/device/me (signed): whether the box is linked (to which account, masked),
/// waiting for its code, or unlinked.
pub async fn me(State(app): State<Arc<App>>, Signed { key, .. }: Signed) -> Result<Response, ApiError> {
    Ok(Json(device_state(&app, &key).await?).into_response())
}

/// POST /api/v1/device/unlink (signed): the box leaves its account. What it reported is
/// forgotten; the account's metered downloads stay.
pub async fn device_unlink(State(app): State<Arc<App>>, Signed { key, .. }: Signed) -> Result<Response, ApiError> {
    let client = db::client(&app.api).await?;
    let outcome: String = client.query_one("SELECT minebox_device_unlink($1)", &[&key]).await?.get(0);
    drop(client);
    if outcome == "unknown" {
        return Err(ApiError::Unauthorized(
            "the cloud does not know this device key: there is nothing to unlink".into(),
        ));
    }
    let mut state = device_state(&app, &key).await?;
    state["message"] = if outcome == "unlinked" {
        "unlinked from its account".into()
    } else {
        "this box was not linked to an account; any pending code is cancelled".into()
    };
    Ok(Json(state).into_response())
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Pair {
    code: String,
}

/// POST /api/v1/devices/pair {"code"}: the user binds the box showing that code. Attempts that
/// fail count towards the login throttle's limits, per account and per address (keys of their
/// own), so codes cannot be guessed by brute force; codes expire and work once.
pub async fn pair(
    State(app): State<Arc<App>>,
    auth: Authed,
    ClientIp(ip): ClientIp,
    Body(req): Body<Pair>,
) -> Result<Response, ApiError> {
    let t = &app.config.throttle;
    let account_key = format!("pair-account:{}", auth.user);
    let ip_key = format!("pair-ip:{ip}");
    let client = db::client(&app.api).await?;
    for (key, limit, whose) in
        [(&account_key, t.per_account, "for this account"), (&ip_key, t.per_ip, "from your address")]
    {
        if let Some(wait) = throttled_for(&client, key, limit, t.window_secs).await? {
            return Err(ApiError::Throttled {
                message: format!(
                    "too many wrong pairing codes {whose}; try again in {wait} seconds (the code on the box's \
                     status page is valid for {CODE_MINUTES} minutes; start a new one if it expired)"
                ),
                retry_after: wait,
            });
        }
    }
    drop(client);
    let Some(code) = normalize_code(&req.code) else {
        return Err(ApiError::BadRequest(format!(
            "{:?} is not a pairing code: it is {CODE_LEN} letters and digits like K7QM-4XPD, as the box's status \
             page shows it",
            req.code.chars().take(40).collect::<String>()
        )));
    };
    let mut client = db::client(&app.api).await?;
    let tx = begin_as(&mut client, &app.context, auth.user).await?;
    let row = tx
        .query_one("SELECT device_id, outcome, plan, max_devices FROM minebox_claim_pairing($1)", &[&token_hash(&code)])
        .await?;
    let (device, outcome, plan, max): (Option<Uuid>, String, Option<String>, Option<i32>) =
        (row.get(0), row.get(1), row.get(2), row.get(3));
    if outcome == "ok" {
        tx.commit().await?;
        // The account's failed attempts are not forgotten on success (unlike a login's): linking
        // one's own box must not buy more guesses at someone else's code.
        let mut client = db::client(&app.api).await?;
        let tx = begin_as(&mut client, &app.context, auth.user).await?;
        let name: Option<String> =
            tx.query_opt("SELECT name FROM devices WHERE id = $1", &[&device]).await?.and_then(|r| r.get(0));
        tx.commit().await?;
        return Ok(Json(serde_json::json!({
            "device_id": device,
            "name": name,
            "message": "the box is linked to your account",
        }))
        .into_response());
    }
    drop(tx);
    if outcome == "limit" {
        let plan = plan.unwrap_or_default();
        let max = max.unwrap_or_default();
        return Err(ApiError::Forbidden(format!(
            "your {plan} plan allows {max} linked box{}: unlink one, or move to a plan with more devices; \
             the code stays valid until it expires",
            if max == 1 { "" } else { "es" }
        )));
    }
    let client = db::client(&app.api).await?;
    client
        .execute(
            "INSERT INTO login_failures (key_hash) VALUES ($1), ($2)",
            &[&token_hash(&account_key), &token_hash(&ip_key)],
        )
        .await?;
    Err(match outcome.as_str() {
        "used" => ApiError::Gone("this pairing code was used already; each code works once".into()),
        "expired" => ApiError::Gone(format!(
            "this pairing code has expired (codes last {CODE_MINUTES} minutes): start pairing again on the box"
        )),
        _ => ApiError::NotFound(
            "no box is waiting with this pairing code: check the code on the box's status page".into(),
        ),
    })
}

/// GET /api/v1/devices: the account's boxes.
pub async fn list(State(app): State<Arc<App>>, auth: Authed) -> Result<Response, ApiError> {
    let mut client = db::client(&app.api).await?;
    let tx = begin_as(&mut client, &app.context, auth.user).await?;
    let rows = tx
        .query(
            "SELECT id, name, status, hardware_type, version, device_fingerprint,
                    to_char(linked_at AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS\"Z\"'),
                    to_char(last_seen_at AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS\"Z\"')
               FROM devices ORDER BY created_at, id",
            &[],
        )
        .await?;
    // What each box's last heartbeat said of its coins (telemetry, if its owner turned it on).
    let coin_rows = tx
        .query(
            "SELECT dc.device_id, c.coin_key, coalesce(dc.sync_state, dc.sync_status), dc.block_height,
                    dc.header_height, (dc.sync_progress_percent / 100)::float8, dc.hashrate_hs,
                    to_char(dc.reported_at AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS\"Z\"')
               FROM device_coins dc JOIN coins c ON c.id = dc.coin_id ORDER BY c.coin_key",
            &[],
        )
        .await?;
    tx.commit().await?;
    let devices: Vec<_> = rows
        .iter()
        .map(|r| {
            let (id, status, model): (Uuid, String, String) = (r.get(0), r.get(2), r.get(3));
            let text = |i: usize| r.get::<_, Option<String>>(i);
            let (name, version, key, linked, seen) = (text(1), text(4), text(5), text(6), text(7));
            let coins: Vec<_> = coin_rows
                .iter()
                .filter(|c| c.get::<_, Uuid>(0) == id)
                .map(|c| {
                    let (coin, state): (String, String) = (c.get(1), c.get(2));
                    let (height, headers): (Option<i32>, Option<i32>) = (c.get(3), c.get(4));
                    let (progress, hashrate, at): (Option<f64>, Option<f64>, Option<String>) =
                        (c.get(5), c.get(6), c.get(7));
                    serde_json::json!({"coin": coin, "state": state, "height": height, "headers": headers,
                                       "sync_progress": progress, "hashrate_hs": hashrate, "reported_at": at})
                })
                .collect();
            serde_json::json!({"id": id, "name": name, "status": status, "model": model, "version": version,
                               "public_key": key, "linked_at": linked, "last_seen_at": seen, "coins": coins})
        })
        .collect();
    Ok(Json(serde_json::json!({"devices": devices})).into_response())
}

fn device_id(id: &str) -> Result<Uuid, ApiError> {
    id.parse()
        .map_err(|_| ApiError::BadRequest(format!("{:?} is not a device id", id.chars().take(40).collect::<String>())))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Rename {
    name: String,
}

/// PATCH /api/v1/devices/{id} {"name"}: renames one of the account's boxes.
pub async fn rename(
    State(app): State<Arc<App>>,
    auth: Authed,
    Path(id): Path<String>,
    Body(req): Body<Rename>,
) -> Result<Response, ApiError> {
    let id = device_id(&id)?;
    let name = device_name(&req.name)?;
    let mut client = db::client(&app.api).await?;
    let tx = begin_as(&mut client, &app.context, auth.user).await?;
    // Row-level security: another account's box is not found, as if it did not exist.
    let n = tx.execute("UPDATE devices SET name = $2, updated_at = now() WHERE id = $1", &[&id, &name]).await?;
    tx.commit().await?;
    if n == 0 {
        return Err(ApiError::NotFound(format!("you have no device {id}")));
    }
    Ok(Json(serde_json::json!({"id": id, "name": name, "message": "renamed"})).into_response())
}

/// DELETE /api/v1/devices/{id}: unlinks one of the account's boxes. The box learns it at its
/// next request; what it reported is forgotten.
pub async fn unlink(State(app): State<Arc<App>>, auth: Authed, Path(id): Path<String>) -> Result<Response, ApiError> {
    let id = device_id(&id)?;
    let mut client = db::client(&app.api).await?;
    let tx = begin_as(&mut client, &app.context, auth.user).await?;
    let done: bool = tx.query_one("SELECT minebox_unlink_device($1)", &[&id]).await?.get(0);
    tx.commit().await?;
    if !done {
        return Err(ApiError::NotFound(format!("you have no device {id}")));
    }
    Ok(Json(serde_json::json!({"id": id, "message": "the box is unlinked from your account"})).into_response())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_are_drawn_from_the_alphabet_and_normalize_back() {
        for _ in 0..100 {
            let code = new_code();
            assert_eq!(code.len(), CODE_LEN);
            let shown = display_code(&code);
            assert_eq!(normalize_code(&shown).as_deref(), Some(code.as_str()));
            assert_eq!(normalize_code(&shown.to_lowercase()).as_deref(), Some(code.as_str()));
        }
        assert_eq!(normalize_code("K7QM-4XPO"), None, "O is not in the alphabet");
        assert_eq!(normalize_code("' OR 1=1 --"), None);
        assert_eq!(normalize_code("K7QM-4XP"), None);
    }

    #[test]
    fn emails_are_masked() {
        assert_eq!(mask_email("alice@example.org"), "a***@example.org");
        assert_eq!(mask_email("nobody"), "***");
    }
}
