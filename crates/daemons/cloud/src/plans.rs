//! Plans and subscriptions: what each plan allows, the plan a user has now (a lapsed
//! subscription falls back to free), `GET /api/v1/subscription`, and the admin's grant and
//! revoke (`minebox-cloud admin`, run as the database's owner).

use crate::db::{self, begin_as, DbError};
use crate::error::ApiError;
use crate::http::Authed;
use crate::App;
use axum::extract::State;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::Serialize;
use std::sync::Arc;
use uuid::Uuid;

/// The plan every account has without a subscription in effect.
pub const FREE: &str = "free";

/// A plan's limits; `None` is unlimited.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Limits {
    pub snapshot_downloads_per_month: Option<i32>,
    pub snapshot_bytes_per_month: Option<i64>,
    pub max_devices: Option<i32>,
    pub coins_supported: Option<i32>,
}

/// A user's subscription as stored, whether or not it is in effect.
#[derive(Clone, Debug, Serialize)]
pub struct Subscription {
    pub plan: String,
    pub status: String,
    /// RFC 3339, UTC; `None`: no end (an admin's grant without one).
    pub period_end: Option<String>,
    /// `provider` (the payment provider's webhook) or `admin`.
    pub source: String,
    pub in_effect: bool,
}

/// The plan a user has now.
#[derive(Clone, Debug, Serialize)]
pub struct Effective {
    pub plan: String,
    pub monthly_price_cents: i32,
    pub limits: Limits,
    pub subscription: Option<Subscription>,
}

/// Timestamps as RFC 3339 UTC text, made by PostgreSQL (the crate reads no time types).
const RFC3339: &str = "'YYYY-MM-DD\"T\"HH24:MI:SS\"Z\"'";

/// The plan `user` has now (`minebox_effective_plan` in 0003_plans.sql). Over the API's role the
/// transaction must act for `user` (row-level security); over the owner's, any user.
pub async fn effective(client: &impl deadpool_postgres::GenericClient, user: Uuid) -> Result<Effective, DbError> {
    let row = client
        .query_one(
            &format!(
                "SELECT plan, monthly_price_cents, snapshot_downloads_per_month, snapshot_bytes_per_month,
                        max_devices, coins_supported, subscribed_plan, subscription_status,
                        to_char(period_end AT TIME ZONE 'UTC', {RFC3339}), subscription_source, in_effect
                   FROM minebox_effective_plan($1)"
            ),
            &[&user],
        )
        .await?;
    let subscribed: Option<String> = row.get(6);
    Ok(Effective {
        plan: row.get(0),
        monthly_price_cents: row.get(1),
        limits: Limits {
            snapshot_downloads_per_month: row.get(2),
            snapshot_bytes_per_month: row.get(3),
            max_devices: row.get(4),
            coins_supported: row.get(5),
        },
        subscription: subscribed.map(|plan| Subscription {
            plan,
            status: row.get(7),
            period_end: row.get(8),
            source: row.get(9),
            in_effect: row.get(10),
        }),
    })
}

/// GET /api/v1/subscription: the plan the account has now, its limits, and its subscription.
pub async fn subscription(State(app): State<Arc<App>>, auth: Authed) -> Result<Response, ApiError> {
    let mut client = db::client(&app.api).await?;
    let tx = begin_as(&mut client, &app.context, auth.user).await?;
    let now = effective(&tx, auth.user).await?;
    tx.commit().await?;
    let message = match &now.subscription {
        None => "you are on the free plan".to_string(),
        Some(s) if s.in_effect => match &s.period_end {
            Some(end) => format!("your {} plan runs until {end}", s.plan),
            None => format!("your {} plan has no end date", s.plan),
        },
        Some(s) => format!(
            "your {} subscription is {} (period end {}): you are on the free plan until it is renewed",
            s.plan,
            if s.status == "active" { "lapsed" } else { &s.status },
            s.period_end.as_deref().unwrap_or("none")
        ),
    };
    let mut body = serde_json::to_value(&now).map_err(|e| ApiError::Internal(e.to_string()))?;
    body["message"] = message.into();
    Ok(Json(body).into_response())
}

/// Why an admin command did nothing, and what to do instead.
#[derive(Debug, thiserror::Error)]
pub enum AdminError {
    #[error("no account has the email address {0:?}; check the spelling (matched ignoring case)")]
    UnknownEmail(String),
    #[error("there is no plan {name:?}; the plans are: {known} (`minebox-cloud admin plans`)")]
    UnknownPlan { name: String, known: String },
    #[error("{0} has no subscription in effect: they are on the free plan already")]
    NothingToRevoke(String),
    #[error("--until {0:?} is not a date: give YYYY-MM-DD (the grant runs through that day, UTC)")]
    BadDate(String),
    #[error("--until {0} is in the past: give a later date, or `admin revoke` to end a plan")]
    PastDate(String),
    #[error("--days {0}: give 1 to 36500 days")]
    BadDays(u32),
    #[error("{0}")]
    Db(#[from] DbError),
}

impl From<tokio_postgres::Error> for AdminError {
    fn from(e: tokio_postgres::Error) -> Self {
        AdminError::Db(DbError::Sql(e))
    }
}

/// How long a grant lasts.
#[derive(Clone, Debug)]
pub enum Until {
    /// No end date.
    Forever,
    /// Through this day (YYYY-MM-DD), UTC.
    Date(String),
    Days(u32),
}

async fn user_by_email(client: &impl deadpool_postgres::GenericClient, email: &str) -> Result<Uuid, AdminError> {
    let row = client.query_opt("SELECT id FROM users WHERE lower(email) = lower($1)", &[&email.trim()]).await?;
    row.map(|r| r.get(0)).ok_or_else(|| AdminError::UnknownEmail(email.to_string()))
}

async fn plan_id(client: &impl deadpool_postgres::GenericClient, name: &str) -> Result<i32, AdminError> {
    if let Some(row) = client.query_opt("SELECT id FROM subscription_plans WHERE name = $1", &[&name]).await? {
        return Ok(row.get(0));
    }
    let known: String =
        client.query_one("SELECT string_agg(name, ', ' ORDER BY id) FROM subscription_plans", &[]).await?.get(0);
    Err(AdminError::UnknownPlan { name: name.to_string(), known })
}

/// Gives the account with `email` the plan `plan` (as the owner), replacing its subscription;
/// returns what was done, in words.
pub async fn grant(
    client: &mut deadpool_postgres::Object,
    email: &str,
    plan: &str,
    until: &Until,
) -> Result<String, AdminError> {
    let (date, days) = match until {
        Until::Forever => (None, None),
        Until::Date(d) => {
            let shaped = d.len() == 10
                && d.bytes().enumerate().all(|(i, b)| if i == 4 || i == 7 { b == b'-' } else { b.is_ascii_digit() });
            if !shaped {
                return Err(AdminError::BadDate(d.clone()));
            }
            (Some(d.clone()), None)
        }
        Until::Days(n) if (1..=36500).contains(n) => (None, Some(*n as i32)),
        Until::Days(n) => return Err(AdminError::BadDays(*n)),
    };
    let tx = client.transaction().await?;
    let user = user_by_email(&tx, email).await?;
    let plan_id = plan_id(&tx, plan).await?;
    // The end as a timestamp: the day after --until at 00:00 UTC, or now + --days.
    let end: Option<String> = match (&date, days) {
        (Some(d), _) => {
            let row = tx
                .query_one(
                    &format!(
                        "SELECT to_char((($1::text)::date + 1)::timestamp, {RFC3339}),
                                (($1::text)::date + 1)::timestamp AT TIME ZONE 'UTC' <= now()"
                    ),
                    &[d],
                )
                .await
                .map_err(|_| AdminError::BadDate(d.clone()))?;
            if row.get::<_, bool>(1) {
                return Err(AdminError::PastDate(d.clone()));
            }
            Some(row.get(0))
        }
        (None, Some(n)) => Some(
            tx.query_one(
                &format!("SELECT to_char((now() + make_interval(days => $1)) AT TIME ZONE 'UTC', {RFC3339})"),
                &[&n],
            )
            .await?
            .get(0),
        ),
        (None, None) => None,
    };
    // The provider's subscription id is dropped, so that subscription's later `deleted` event
    // does not end this grant; the customer id stays, so the provider can still find the user.
    tx.execute(
        "INSERT INTO subscriptions (user_id, plan_id, status, started_at, current_period_start, expires_at, source)
         VALUES ($1, $2, 'active', now(), now(), ($3::text)::timestamptz, 'admin')
         ON CONFLICT (user_id) DO UPDATE SET
             plan_id = EXCLUDED.plan_id, status = 'active', current_period_start = now(),
             expires_at = EXCLUDED.expires_at, source = 'admin', provider_subscription_id = NULL,
             updated_at = now()",
        &[&user, &plan_id, &end],
    )
    .await?;
    tx.commit().await?;
    Ok(match end {
        Some(end) => format!("{email} is on the {plan} plan until {end}"),
        None => format!("{email} is on the {plan} plan, with no end date"),
    })
}

/// Ends the subscription of the account with `email` now (as the owner): it falls back to free.
pub async fn revoke(client: &mut deadpool_postgres::Object, email: &str) -> Result<String, AdminError> {
    let tx = client.transaction().await?;
    let user = user_by_email(&tx, email).await?;
    let n = tx
        .execute(
            "UPDATE subscriptions SET status = 'cancelled', expires_at = now(), source = 'admin',
                    provider_subscription_id = NULL, updated_at = now()
              WHERE user_id = $1 AND status IN ('active', 'past_due') AND (expires_at IS NULL OR expires_at > now())",
            &[&user],
        )
        .await?;
    if n == 0 {
        return Err(AdminError::NothingToRevoke(email.to_string()));
    }
    tx.commit().await?;
    Ok(format!("{email}'s subscription ended; they are on the free plan"))
}

/// The plans and their limits, as a table for the admin's terminal.
pub async fn list(client: &impl deadpool_postgres::GenericClient) -> Result<String, AdminError> {
    let rows = client
        .query(
            "SELECT p.name, p.monthly_price_cents, p.snapshot_downloads_per_month,
                    p.snapshot_bytes_per_month, p.max_devices, p.coins_supported,
                    (SELECT count(*) FROM subscriptions s WHERE s.plan_id = p.id AND s.status IN ('active', 'past_due')
                        AND (s.expires_at IS NULL OR s.expires_at > now()))
               FROM subscription_plans p ORDER BY p.id",
            &[],
        )
        .await?;
    let or_unlimited = |v: Option<i64>| v.map_or("unlimited".to_string(), |v| v.to_string());
    let mut out = format!(
        "{:<12} {:>8} {:>14} {:>16} {:>8} {:>6} {:>11}\n",
        "plan", "$/month", "downloads/mo", "GiB/month", "devices", "coins", "subscribers"
    );
    for r in rows {
        let cents: i32 = r.get(1);
        out.push_str(&format!(
            "{:<12} {:>8} {:>14} {:>16} {:>8} {:>6} {:>11}\n",
            r.get::<_, String>(0),
            format!("{}.{:02}", cents / 100, cents % 100),
            or_unlimited(r.get::<_, Option<i32>>(2).map(i64::from)),
            or_unlimited(r.get::<_, Option<i64>>(3).map(|b| b / (1024 * 1024 * 1024))),
            or_unlimited(r.get::<_, Option<i32>>(4).map(i64::from)),
            or_unlimited(r.get::<_, Option<i32>>(5).map(i64::from)),
            r.get::<_, i64>(6),
        ));
    }
    Ok(out)
}
