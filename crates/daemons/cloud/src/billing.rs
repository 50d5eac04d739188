//! The payment provider's webhook, `POST /api/v1/billing/webhook`: Stripe's event shape and
//! signature scheme (docs/cloud.md). `customer.subscription.created` and `.updated` set the
//! user's plan, status and period; `invoice.paid` renews; `customer.subscription.deleted` ends
//! it. Each event is applied once (by its id), in one transaction as the database's owner: the
//! API's role cannot change a subscription at all.
//!
//! Which user: the first event for a customer carries `metadata.user_id` (the MineBox user's
//! id, set on the subscription at checkout); the customer id is stored with the subscription,
//! and later events find the user by it or by the subscription id.

use crate::db;
use crate::error::ApiError;
use crate::App;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use hmac::{Hmac, Mac};
use serde::Deserialize;
use serde_json::Value;
use sha2::Sha256;
use std::sync::Arc;
use uuid::Uuid;

/// The largest event read. Stripe's subscription and invoice events are a few KiB; this leaves
/// room for many line items and metadata, and refuses anything else before parsing it.
pub const WEBHOOK_BODY_LIMIT: usize = 64 * 1024;
/// How far an event's signing time may be from now: Stripe's libraries' default.
pub const TOLERANCE_SECS: i64 = 300;
pub const SIGNATURE_HEADER: &str = "stripe-signature";

/// Why a delivery's signature was refused.
#[derive(Debug, PartialEq, thiserror::Error)]
pub enum SignatureError {
    #[error("no Stripe-Signature header: this endpoint takes only events signed by the payment provider")]
    Missing,
    #[error(
        "the Stripe-Signature header is not `t=<unix time>,v1=<hex HMAC-SHA256>`: send the header the \
         provider made, unchanged"
    )]
    Malformed,
    #[error(
        "the signature does not match this body: the event was not signed with this endpoint's secret \
         (check --billing-webhook-secret is the endpoint's signing secret, whsec_...), or the body was changed"
    )]
    Mismatch,
    #[error(
        "the event was signed {age} seconds from now, beyond the {tolerance}-second tolerance: a replayed \
         delivery, or this server's clock is off"
    )]
    OutsideTolerance { age: i64, tolerance: i64 },
}

/// Checks a `Stripe-Signature` header as Stripe documents it: `t=<unix>` and one or more
/// `v1=<hex>` (other schemes, like `v0`, are ignored); a `v1` must equal
/// HMAC-SHA256(secret, "<t>.<body>"), compared in constant time; `t` must be within
/// `tolerance` seconds of `now`. Returns `t`.
pub fn verify_signature(
    secret: &[u8],
    header: Option<&str>,
    body: &[u8],
    now: i64,
    tolerance: i64,
) -> Result<i64, SignatureError> {
    let header = header.ok_or(SignatureError::Missing)?;
    let mut t = None;
    let mut v1 = Vec::new();
    for item in header.split(',') {
        let (k, v) = item.trim().split_once('=').ok_or(SignatureError::Malformed)?;
        match k {
            "t" => t = Some(v.parse::<i64>().map_err(|_| SignatureError::Malformed)?),
            "v1" => v1.push(hex::decode(v).map_err(|_| SignatureError::Malformed)?),
            _ => {}
        }
    }
    let (Some(t), false) = (t, v1.is_empty()) else { return Err(SignatureError::Malformed) };
    let mut mac = Hmac::<Sha256>::new_from_slice(secret).expect("HMAC takes any key length");
    mac.update(t.to_string().as_bytes());
    mac.update(b".");
    mac.update(body);
    // verify_slice compares in constant time.
    if !v1.iter().any(|sig| mac.clone().verify_slice(sig).is_ok()) {
        return Err(SignatureError::Mismatch);
    }
    let age = now - t;
    if age.abs() > tolerance {
        return Err(SignatureError::OutsideTolerance { age, tolerance });
    }
    Ok(t)
}

/// The `Stripe-Signature` header for `body` signed at `t` (the provider's side; tests and
/// `docs/cloud.md`'s curl example use it).
pub fn sign(secret: &[u8], t: i64, body: &[u8]) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(secret).expect("HMAC takes any key length");
    mac.update(format!("{t}.").as_bytes());
    mac.update(body);
    format!("t={t},v1={}", hex::encode(mac.finalize().into_bytes()))
}

#[derive(Deserialize)]
struct Event {
    id: Value,
    #[serde(rename = "type")]
    kind: String,
    created: i64,
    data: EventData,
}

#[derive(Deserialize)]
struct EventData {
    object: Value,
}

/// Up to 60 characters of a value, for refusals that quote it.
fn quote(v: &Value) -> String {
    let s = v.to_string();
    if s.chars().count() > 60 {
        format!("{}...", s.chars().take(60).collect::<String>())
    } else {
        s
    }
}

/// A provider id (`evt_...`, `cus_...`, `sub_...`): letters, digits and `_`, as Stripe makes them.
fn provider_id(what: &str, v: &Value) -> Result<String, ApiError> {
    // An expanded object (`"customer": {"id": ...}`) stands for its id.
    let v = v.get("id").unwrap_or(v);
    match v.as_str() {
        Some(s) if (1..=255).contains(&s.len()) && s.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_') => {
            Ok(s.to_string())
        }
        _ => Err(ApiError::BadRequest(format!(
            "{what} {} is not a provider id (letters, digits and _, up to 255)",
            quote(v)
        ))),
    }
}

fn unix(what: &str, v: &Value) -> Result<i64, ApiError> {
    v.as_i64()
        .filter(|t| (0..=253_402_300_799).contains(t))
        .ok_or_else(|| ApiError::BadRequest(format!("{what} {} is not a unix time", quote(v))))
}

/// Stripe's subscription statuses, as the `subscriptions` table names them.
fn status(v: &Value) -> Result<&'static str, ApiError> {
    Ok(match v.as_str() {
        Some("active" | "trialing") => "active",
        Some("past_due") => "past_due",
        Some("canceled") => "cancelled",
        Some("unpaid" | "incomplete" | "incomplete_expired" | "paused") => "expired",
        _ => {
            return Err(ApiError::BadRequest(format!(
                "subscription status {} is not one the provider sends (active, trialing, past_due, canceled, \
                 unpaid, incomplete, incomplete_expired, paused)",
                quote(v)
            )))
        }
    })
}

/// The subscription object of a `customer.subscription.*` event, checked.
struct SubscriptionObject {
    id: String,
    customer: String,
    status: &'static str,
    period_start: Option<i64>,
    period_end: i64,
    /// The plan's name: the first item's price `lookup_key`, else `metadata.plan`.
    plan: Option<String>,
    /// `metadata.user_id`: the MineBox user, on the first event for a customer.
    user: Option<Uuid>,
}

impl SubscriptionObject {
    fn parse(o: &Value) -> Result<SubscriptionObject, ApiError> {
        let item = &o["items"]["data"][0];
        // Newer API versions carry the period on the subscription's items instead.
        let period = |key: &str| if o[key].is_null() { &item[key] } else { &o[key] };
        let period_start = match period("current_period_start") {
            Value::Null => None,
            v => Some(unix("current_period_start", v)?),
        };
        let plan = match (&item["price"]["lookup_key"], &o["metadata"]["plan"]) {
            (Value::Null, Value::Null) => None,
            (Value::Null, v) | (v, _) => Some(plan_name(v)?),
        };
        let user = match &o["metadata"]["user_id"] {
            Value::Null => None,
            v => Some(v.as_str().and_then(|s| s.parse::<Uuid>().ok()).ok_or_else(|| {
                ApiError::BadRequest(format!("metadata.user_id {} is not a MineBox user id (a UUID)", quote(v)))
            })?),
        };
        Ok(SubscriptionObject {
            id: provider_id("subscription id", &o["id"])?,
            customer: provider_id("customer", &o["customer"])?,
            status: status(&o["status"])?,
            period_start,
            period_end: unix("current_period_end", period("current_period_end"))?,
            plan,
            user,
        })
    }
}

fn plan_name(v: &Value) -> Result<String, ApiError> {
    match v.as_str() {
        Some(s)
            if (1..=50).contains(&s.len()) && s.bytes().all(|b| b.is_ascii_alphanumeric() || b"_-".contains(&b)) =>
        {
            Ok(s.to_string())
        }
        _ => Err(ApiError::BadRequest(format!(
            "plan {} (the price's lookup_key or metadata.plan) is not a plan name",
            quote(v)
        ))),
    }
}

/// What an applied event did, for the answer and `billing_events.outcome`.
struct Outcome {
    kind: &'static str,
    user: Option<Uuid>,
    message: String,
}

/// POST /api/v1/billing/webhook
pub async fn webhook(
    State(app): State<Arc<App>>,
    headers: HeaderMap,
    body: axum::body::Body,
) -> Result<Response, ApiError> {
    let answer = handle_event(&app, &headers, body).await;
    match &answer {
        Ok((_, outcome)) => app.metrics.webhook_event(outcome),
        Err(_) => app.metrics.webhook_event("refused"),
    }
    answer.map(|(response, _)| response)
}

/// The webhook's work: the answer, and what became of the event (`applied`, `ignored`,
/// `stale`, `duplicate`...) for the metrics.
async fn handle_event(
    app: &Arc<App>,
    headers: &HeaderMap,
    body: axum::body::Body,
) -> Result<(Response, &'static str), ApiError> {
    let Some(secret) = app.config.billing_webhook_secret.as_deref() else {
        return Err(ApiError::Unavailable(
            "the billing webhook is not configured: start the service with --billing-webhook-secret".into(),
        ));
    };
    let too_large = || ApiError::Body {
        status: StatusCode::PAYLOAD_TOO_LARGE,
        message: format!("the event is larger than {WEBHOOK_BODY_LIMIT} bytes"),
    };
    let body = axum::body::to_bytes(body, WEBHOOK_BODY_LIMIT).await.map_err(|_| too_large())?;
    let header = headers.get(SIGNATURE_HEADER).map(|v| v.to_str().unwrap_or(""));
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_err(|e| ApiError::Internal(e.to_string()))?
        .as_secs() as i64;
    verify_signature(secret.as_bytes(), header, &body, now, TOLERANCE_SECS).map_err(|e| match e {
        SignatureError::Missing | SignatureError::Malformed => ApiError::BadRequest(e.to_string()),
        _ => ApiError::Unauthorized(e.to_string()),
    })?;
    let event: Event = serde_json::from_slice(&body).map_err(|e| {
        ApiError::BadRequest(format!("the event is not a provider event (id, type, created, data.object): {e}"))
    })?;
    let event_id = provider_id("event id", &event.id)?;
    let kind_ok = (1..=100).contains(&event.kind.len())
        && event.kind.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"._".contains(&b));
    if !kind_ok {
        return Err(ApiError::BadRequest(format!(
            "event type {} is not a provider event type (like invoice.paid)",
            quote(&Value::from(event.kind.as_str()))
        )));
    }
    let created = unix("created", &Value::from(event.created))?;

    let mut client = db::client(&app.owner).await?;
    let tx = client.transaction().await?;
    // Taken first: a second delivery of the same event waits here for the first to commit,
    // then finds it.
    let fresh = tx
        .execute(
            "INSERT INTO billing_events (event_id, event_type, event_created, outcome)
             VALUES ($1, $2, to_timestamp($3::bigint), 'applied') ON CONFLICT (event_id) DO NOTHING",
            &[&event_id, &event.kind, &created],
        )
        .await?;
    if fresh == 0 {
        let message = format!("event {event_id} was handled already; nothing changed");
        return Ok((Json(serde_json::json!({ "message": message })).into_response(), "duplicate"));
    }
    let o = &event.data.object;
    let outcome = match event.kind.as_str() {
        "customer.subscription.created" => subscription_set(&tx, SubscriptionObject::parse(o)?, created, true).await?,
        "customer.subscription.updated" => subscription_set(&tx, SubscriptionObject::parse(o)?, created, false).await?,
        "customer.subscription.deleted" => {
            let id = provider_id("subscription id", &o["id"])?;
            let customer = provider_id("customer", &o["customer"])?;
            subscription_ended(&tx, &id, &customer, created).await?
        }
        "invoice.paid" => invoice_paid(&tx, o, created).await?,
        other => Outcome {
            kind: "ignored",
            user: None,
            message: format!("event type {other:?} does not concern a plan; nothing changed"),
        },
    };
    tx.execute(
        "UPDATE billing_events SET outcome = $2, user_id = $3 WHERE event_id = $1",
        &[&event_id, &outcome.kind, &outcome.user],
    )
    .await?;
    tx.commit().await?;
    tracing::info!("billing event {event_id} ({}): {}", event.kind, outcome.message);
    Ok((Json(serde_json::json!({"message": outcome.message})).into_response(), outcome.kind))
}

/// The user a customer's event is for: the one whose subscription has this subscription id,
/// else this customer id; `None` if neither is known.
async fn known_user(
    tx: &deadpool_postgres::Transaction<'_>,
    subscription: &str,
    customer: &str,
) -> Result<Option<(Uuid, Option<String>)>, ApiError> {
    let rows = tx
        .query(
            "SELECT DISTINCT user_id, provider_subscription_id FROM subscriptions
              WHERE provider_subscription_id = $1 OR provider_customer_id = $2",
            &[&subscription, &customer],
        )
        .await?;
    match rows.as_slice() {
        [] => Ok(None),
        [r] => Ok(Some((r.get(0), r.get(1)))),
        _ => Err(ApiError::Conflict(format!(
            "subscription {subscription} and customer {customer} belong to different users; nothing changed"
        ))),
    }
}

/// Whether an event created at `created` is older than the last one applied for `user`.
async fn stale(tx: &deadpool_postgres::Transaction<'_>, user: Uuid, created: i64) -> Result<bool, ApiError> {
    let row = tx
        .query_opt(
            "SELECT provider_event_at > to_timestamp($2::bigint) FROM subscriptions WHERE user_id = $1",
            &[&user, &created],
        )
        .await?;
    Ok(row.and_then(|r| r.get::<_, Option<bool>>(0)).unwrap_or(false))
}

fn stale_outcome(user: Uuid) -> Outcome {
    Outcome {
        kind: "stale",
        user: Some(user),
        message: "the event is older than the last one applied for this customer; nothing changed".into(),
    }
}

/// `customer.subscription.created` / `.updated`: the user's plan, status and period. A new
/// subscription replaces the customer's current one; an update to another than the current one
/// (an old subscription's late news) changes nothing.
async fn subscription_set(
    tx: &deadpool_postgres::Transaction<'_>,
    s: SubscriptionObject,
    created: i64,
    new: bool,
) -> Result<Outcome, ApiError> {
    let user = match (known_user(tx, &s.id, &s.customer).await?, s.user) {
        (Some((known, _)), Some(claimed)) if known != claimed => {
            return Err(ApiError::Conflict(format!(
                "customer {} belongs to another user than metadata.user_id {claimed}; nothing changed",
                s.customer
            )))
        }
        (Some((known, Some(current))), _) if !new && current != s.id => {
            return Ok(Outcome {
                kind: "ignored",
                user: Some(known),
                message: format!("subscription {} is not the customer's current one; nothing changed", s.id),
            })
        }
        (Some((known, _)), _) => known,
        (None, Some(claimed)) => {
            if tx.query_opt("SELECT 1 FROM users WHERE id = $1", &[&claimed]).await?.is_none() {
                return Err(ApiError::Unprocessable(format!(
                    "no MineBox user has the id {claimed} (metadata.user_id); nothing changed"
                )));
            }
            claimed
        }
        (None, None) => {
            return Err(ApiError::Unprocessable(format!(
                "customer {} is unknown and the subscription carries no metadata.user_id: set the MineBox \
                 user's id as the subscription's metadata.user_id at checkout; nothing changed",
                s.customer
            )))
        }
    };
    if stale(tx, user, created).await? {
        return Ok(stale_outcome(user));
    }
    let Some(plan) = s.plan else {
        return Err(ApiError::Unprocessable(
            "the subscription names no plan: give its price the lookup_key of a plan (hobbyist, pro, ...) \
             or set metadata.plan; nothing changed"
                .into(),
        ));
    };
    let Some(plan_id) =
        tx.query_opt("SELECT id FROM subscription_plans WHERE name = $1", &[&plan]).await?.map(|r| r.get::<_, i32>(0))
    else {
        let known: String =
            tx.query_one("SELECT string_agg(name, ', ' ORDER BY id) FROM subscription_plans", &[]).await?.get(0);
        return Err(ApiError::Unprocessable(format!(
            "there is no plan {plan:?} (the price's lookup_key or metadata.plan); the plans are {known}; nothing changed"
        )));
    };
    tx.execute(
        "INSERT INTO subscriptions (user_id, plan_id, status, started_at, current_period_start, expires_at,
                                    provider_subscription_id, provider_customer_id, source, provider_event_at)
         VALUES ($1, $2, $3, coalesce(to_timestamp($4::bigint), now()), to_timestamp($4::bigint),
                 to_timestamp($5::bigint), $6, $7, 'provider', to_timestamp($8::bigint))
         ON CONFLICT (user_id) DO UPDATE SET
             plan_id = EXCLUDED.plan_id, status = EXCLUDED.status,
             current_period_start = EXCLUDED.current_period_start, expires_at = EXCLUDED.expires_at,
             provider_subscription_id = EXCLUDED.provider_subscription_id,
             provider_customer_id = EXCLUDED.provider_customer_id, source = 'provider',
             provider_event_at = EXCLUDED.provider_event_at, updated_at = now()",
        &[&user, &plan_id, &s.status, &s.period_start, &s.period_end, &s.id, &s.customer, &created],
    )
    .await?;
    Ok(Outcome {
        kind: "applied",
        user: Some(user),
        message: format!("subscription {}: plan {plan}, status {}", s.id, s.status),
    })
}

/// `customer.subscription.deleted`: the subscription has ended; the user falls back to free.
async fn subscription_ended(
    tx: &deadpool_postgres::Transaction<'_>,
    subscription: &str,
    customer: &str,
    created: i64,
) -> Result<Outcome, ApiError> {
    let (user, current) = known_user(tx, subscription, customer).await?.ok_or_else(|| {
        ApiError::Unprocessable(format!(
            "subscription {subscription} of customer {customer} is unknown here; nothing changed"
        ))
    })?;
    if current.as_deref() != Some(subscription) {
        return Ok(Outcome {
            kind: "ignored",
            user: Some(user),
            message: format!("subscription {subscription} is not the customer's current one; nothing changed"),
        });
    }
    if stale(tx, user, created).await? {
        return Ok(stale_outcome(user));
    }
    tx.execute(
        "UPDATE subscriptions SET status = 'cancelled', expires_at = least(coalesce(expires_at, now()), now()),
                source = 'provider', provider_event_at = to_timestamp($2::bigint), updated_at = now()
          WHERE user_id = $1",
        &[&user, &created],
    )
    .await?;
    Ok(Outcome {
        kind: "applied",
        user: Some(user),
        message: format!("subscription {subscription} ended; the user is on the free plan"),
    })
}

/// `invoice.paid`: the subscription is paid through the end of the invoice's latest line.
async fn invoice_paid(tx: &deadpool_postgres::Transaction<'_>, o: &Value, created: i64) -> Result<Outcome, ApiError> {
    // Older API versions name the subscription at the top; newer ones under parent.
    let sub = match (&o["subscription"], &o["parent"]["subscription_details"]["subscription"]) {
        (Value::Null, Value::Null) => {
            return Ok(Outcome {
                kind: "ignored",
                user: None,
                message: "the invoice is not for a subscription; nothing changed".into(),
            })
        }
        (Value::Null, v) | (v, _) => provider_id("subscription id", v)?,
    };
    let customer = provider_id("customer", &o["customer"])?;
    let lines = o["lines"]["data"].as_array().map(Vec::as_slice).unwrap_or_default();
    let mut end = None;
    for line in lines {
        end = end.max(Some(unix("lines.data[].period.end", &line["period"]["end"])?));
    }
    let end = end.ok_or_else(|| {
        ApiError::BadRequest("the invoice has no lines with a period (lines.data[].period.end)".into())
    })?;
    let (user, current) = known_user(tx, &sub, &customer).await?.ok_or_else(|| {
        ApiError::Unprocessable(format!(
            "subscription {sub} of customer {customer} is unknown here: the customer.subscription.created event \
             (with metadata.user_id) comes first; nothing changed"
        ))
    })?;
    if current.as_deref() != Some(sub.as_str()) {
        return Ok(Outcome {
            kind: "ignored",
            user: Some(user),
            message: format!("subscription {sub} is not the customer's current one; nothing changed"),
        });
    }
    if stale(tx, user, created).await? {
        return Ok(stale_outcome(user));
    }
    tx.execute(
        "UPDATE subscriptions SET status = 'active',
                expires_at = greatest(coalesce(expires_at, to_timestamp($2::bigint)), to_timestamp($2::bigint)),
                source = 'provider', provider_event_at = to_timestamp($3::bigint), updated_at = now()
          WHERE user_id = $1",
        &[&user, &end, &created],
    )
    .await?;
    Ok(Outcome { kind: "applied", user: Some(user), message: format!("subscription {sub} paid through {end}") })
}

#[cfg(test)]
mod tests {
    use super::*;

    const SECRET: &[u8] = b"whsec_test";
    const BODY: &[u8] = br#"{"id":"evt_1"}"#;

    #[test]
    fn a_signature_made_as_stripe_documents_is_accepted_and_anything_else_refused() {
        let header = sign(SECRET, 1_000, BODY);
        assert_eq!(verify_signature(SECRET, Some(&header), BODY, 1_000, 300), Ok(1_000));
        // Several v1 entries (a secret being rolled) and other schemes: one matching v1 is enough.
        let good = header.split("v1=").nth(1).unwrap();
        let rolled = format!("t=1000,v1={},v0=abc,v1={good}", "00".repeat(32));
        assert_eq!(verify_signature(SECRET, Some(&rolled), BODY, 1_100, 300), Ok(1_000));

        assert_eq!(verify_signature(SECRET, None, BODY, 1_000, 300), Err(SignatureError::Missing));
        for bad in ["", "t=1000", "v1=00", "t=x,v1=00", "t=1000,v1=zz", "garbage"] {
            assert_eq!(verify_signature(SECRET, Some(bad), BODY, 1_000, 300), Err(SignatureError::Malformed), "{bad}");
        }
        assert_eq!(verify_signature(b"whsec_other", Some(&header), BODY, 1_000, 300), Err(SignatureError::Mismatch));
        assert_eq!(
            verify_signature(SECRET, Some(&header), br#"{"id":"evt_2"}"#, 1_000, 300),
            Err(SignatureError::Mismatch)
        );
        // The timestamp is signed too: changing it breaks the signature.
        let moved = header.replace("t=1000", "t=2000");
        assert_eq!(verify_signature(SECRET, Some(&moved), BODY, 2_000, 300), Err(SignatureError::Mismatch));
        assert_eq!(
            verify_signature(SECRET, Some(&header), BODY, 1_301, 300),
            Err(SignatureError::OutsideTolerance { age: 301, tolerance: 300 })
        );
    }
}
