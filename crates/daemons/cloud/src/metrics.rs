//! What Prometheus scrapes from `GET /metrics` (OpenMetrics text, which Prometheus reads), and
//! the health answers a load balancer or systemd/container healthcheck asks for.
//!
//! Requests are counted by the matched route template (`/api/v1/tokens/{id}`), never the raw
//! path: a path carrying ids or junk would otherwise make a new time series per request.

use crate::App;
use axum::extract::{MatchedPath, Request, State};
use axum::http::{header, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// The route label of a request no route matched (404s: scanners, typos).
pub const UNMATCHED: &str = "unmatched";

/// How long `/readyz` waits for a connection and `SELECT 1` before saying the database is not
/// answering: well under a load balancer's usual check timeout.
pub const READY_TIMEOUT: Duration = Duration::from_secs(2);

/// Upper bounds of the request latency histogram, seconds. A login's argon2id takes a few
/// hundred milliseconds, so the buckets reach past it.
const LATENCY_BUCKETS: [f64; 7] = [0.005, 0.025, 0.1, 0.25, 0.5, 1.0, 5.0];

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RequestLabels {
    route: String,
    method: String,
    /// `2xx`, `4xx`, `5xx`...
    status: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RouteLabels {
    route: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct PoolLabels {
    /// `api` (requests, as the API's role) or `owner` (upkeep, the billing webhook).
    pool: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ReasonLabels {
    reason: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct OutcomeLabels {
    outcome: String,
}

fn latency_histogram() -> Histogram {
    Histogram::new(LATENCY_BUCKETS)
}

pub struct Metrics {
    registry: Registry,
    requests: Family<RequestLabels, Counter>,
    latency: Family<RouteLabels, Histogram, fn() -> Histogram>,
    pool_max: Family<PoolLabels, Gauge>,
    pool_size: Family<PoolLabels, Gauge>,
    pool_available: Family<PoolLabels, Gauge>,
    pool_waiting: Family<PoolLabels, Gauge>,
    login_failures: Family<ReasonLabels, Counter>,
    webhook_events: Family<OutcomeLabels, Counter>,
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics::new()
    }
}

impl Metrics {
    pub fn new() -> Metrics {
        let mut registry = Registry::with_prefix("minebox_cloud");
        let requests = Family::<RequestLabels, Counter>::default();
        registry.register(
            "http_requests",
            "HTTP requests answered, by route template, method and status class",
            requests.clone(),
        );
        let latency = Family::<RouteLabels, Histogram, fn() -> Histogram>::new_with_constructor(latency_histogram);
        registry.register(
            "http_request_duration_seconds",
            "Time from a request's arrival to its answer's headers, by route template",
            latency.clone(),
        );
        let gauge = |registry: &mut Registry, name: &str, help: &str| {
            let family = Family::<PoolLabels, Gauge>::default();
            registry.register(name, help, family.clone());
            family
        };
        let pool_max = gauge(&mut registry, "db_pool_max_connections", "The most connections the pool opens");
        let pool_size = gauge(&mut registry, "db_pool_connections", "Connections the pool holds now (idle or in use)");
        let pool_available =
            gauge(&mut registry, "db_pool_available_connections", "Idle connections ready for a request");
        let pool_waiting =
            gauge(&mut registry, "db_pool_waiting_requests", "Requests waiting for a connection (pool exhausted)");
        let login_failures = Family::<ReasonLabels, Counter>::default();
        registry.register(
            "login_failures",
            "Refused logins: wrong_password (wrong email or password) or throttled",
            login_failures.clone(),
        );
        let webhook_events = Family::<OutcomeLabels, Counter>::default();
        registry.register(
            "billing_webhook_events",
            "Payment-provider webhook deliveries: applied, ignored, stale, duplicate (handled already) or refused",
            webhook_events.clone(),
        );
        Metrics {
            registry,
            requests,
            latency,
            pool_max,
            pool_size,
            pool_available,
            pool_waiting,
            login_failures,
            webhook_events,
        }
    }

    pub fn login_failed(&self, reason: &str) {
        self.login_failures.get_or_create(&ReasonLabels { reason: reason.into() }).inc();
    }

    pub fn webhook_event(&self, outcome: &str) {
        self.webhook_events.get_or_create(&OutcomeLabels { outcome: outcome.into() }).inc();
    }

    fn request(&self, route: &str, method: &str, status: StatusCode, took: Duration) {
        let class = format!("{}xx", status.as_u16() / 100);
        self.requests.get_or_create(&RequestLabels { route: route.into(), method: method.into(), status: class }).inc();
        self.latency.get_or_create(&RouteLabels { route: route.into() }).observe(took.as_secs_f64());
    }

    fn pool(&self, name: &str, pool: &deadpool_postgres::Pool) {
        let s = pool.status();
        let labels = PoolLabels { pool: name.into() };
        let n = |v: usize| i64::try_from(v).unwrap_or(i64::MAX);
        self.pool_max.get_or_create(&labels).set(n(s.max_size));
        self.pool_size.get_or_create(&labels).set(n(s.size));
        self.pool_available.get_or_create(&labels).set(n(s.available));
        self.pool_waiting.get_or_create(&labels).set(n(s.waiting));
    }

    /// The exposition text, with the pools' figures as they are now.
    pub fn render(&self, app: &App) -> String {
        self.pool("api", &app.api);
        self.pool("owner", &app.owner);
        let mut out = String::new();
        prometheus_client::encoding::text::encode(&mut out, &self.registry).expect("writing to a String does not fail");
        out
    }
}

/// Middleware (`Router::layer`, so it sees the matched route): counts and times every answer.
pub async fn track(State(app): State<Arc<App>>, req: Request, next: Next) -> Response {
    let route = req.extensions().get::<MatchedPath>().map_or(UNMATCHED, |p| p.as_str()).to_string();
    let method = req.method().as_str().to_string();
    let started = Instant::now();
    let response = next.run(req).await;
    app.metrics.request(&route, &method, response.status(), started.elapsed());
    response
}

/// GET /metrics.
pub async fn scrape(State(app): State<Arc<App>>) -> Response {
    ([(header::CONTENT_TYPE, "application/openmetrics-text; version=1.0.0; charset=utf-8")], app.metrics.render(&app))
        .into_response()
}

/// GET /healthz: the process is up and answering (liveness; asks nothing of the database, so a
/// database outage does not make an orchestrator restart every replica).
pub async fn healthz() -> &'static str {
    "ok\n"
}

/// GET /readyz: the API's pool gets a connection and `SELECT 1` answers within
/// [`READY_TIMEOUT`]; else 503 with the reason (take this replica out of rotation).
pub async fn readyz(State(app): State<Arc<App>>) -> Response {
    let check = async {
        let client = crate::db::client(&app.api).await?;
        client.query_one("SELECT 1", &[]).await.map_err(crate::db::DbError::from)?;
        Ok::<(), crate::db::DbError>(())
    };
    match tokio::time::timeout(READY_TIMEOUT, check).await {
        Ok(Ok(())) => (StatusCode::OK, "ready\n").into_response(),
        Ok(Err(e)) => (StatusCode::SERVICE_UNAVAILABLE, format!("not ready: the database: {e}\n")).into_response(),
        Err(_) => (
            StatusCode::SERVICE_UNAVAILABLE,
            format!("not ready: the database did not answer SELECT 1 within {} s\n", READY_TIMEOUT.as_secs()),
        )
            .into_response(),
    }
}
