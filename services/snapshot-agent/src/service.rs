//! The agent as a service (`minebox-snapshot-agent --config ...`): on the status page's
//! request it stops a coin's node through the supervisor, installs the coin's published
//! snapshot into the node's data directory, and starts the node again. Its local API
//! tells what is published (and how far that kind of snapshot is trusted) and how an
//! install is going. One install at a time: they compete for the same disk and network.

use crate::install::{self, Options};
use crate::progress::{Phase, SharedProgress};
use crate::AgentError;
use axum::extract::{Path as UrlPath, State};
use axum::http::StatusCode;
use axum::routing::{get, post};
use axum::{Json, Router};
use minebox_snapshot::minisign::PublicKey;
use serde::Serialize;
use serde_json::{json, Value};
use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// One coin the box mines, and where its snapshots are published.
#[derive(Debug, Clone)]
pub struct CoinSource {
    pub coin: String,
    pub network: String,
    /// `<snapshots.url>/<coin>/<network>`: the published tree's root.
    pub url: String,
    /// The node's data directory, where the snapshot goes.
    pub dest: PathBuf,
    /// The supervisor runs this node (`node = "managed"`). An external node's files are
    /// not the box's to replace: its snapshot is listed but never installed.
    pub managed: bool,
}

pub struct Agent {
    pub coins: Vec<CoinSource>,
    pub keys: Vec<PublicKey>,
    /// The supervisor's API, to stop and start nodes around an install.
    pub supervisor: String,
    pub enabled: bool,
    progress: Mutex<HashMap<String, SharedProgress>>,
    busy: Mutex<Option<String>>,
    offered: Mutex<HashMap<String, Checked>>,
    http: reqwest::Client,
}

#[derive(Debug, Clone, Serialize)]
pub struct Offer {
    pub height: u64,
    pub bytes: u64,
    pub kind: minebox_snapshot::Kind,
    /// How far the user trusts this kind of snapshot, in words.
    pub trust: &'static str,
    pub created: i64,
    pub version: u64,
}

/// What a coin's publisher offered when last asked, and when that was.
type Checked = (Instant, Result<Offer, String>);

/// Published snapshots change daily at most; asking once every ten minutes is plenty.
const OFFER_TTL: Duration = Duration::from_secs(600);

impl Agent {
    pub fn new(coins: Vec<CoinSource>, keys: Vec<PublicKey>, supervisor: &str, enabled: bool) -> Agent {
        let supervisor =
            if supervisor.starts_with("http") { supervisor.to_string() } else { format!("http://{supervisor}") };
        Agent {
            coins,
            keys,
            supervisor,
            enabled,
            progress: Mutex::default(),
            busy: Mutex::default(),
            offered: Mutex::default(),
            http: reqwest::Client::builder().timeout(Duration::from_secs(30)).build().expect("http client"),
        }
    }

    fn progress_of(&self, coin: &str) -> SharedProgress {
        self.progress.lock().expect("progress").entry(coin.to_string()).or_default().clone()
    }

    async fn offer(&self, src: &CoinSource) -> Result<Offer, String> {
        if let Some((at, o)) = self.offered.lock().expect("offers").get(&src.coin) {
            if at.elapsed() < OFFER_TTL {
                return o.clone();
            }
        }
        let fetcher = crate::fetch::Fetcher {
            http: self.http.clone(),
            base: src.url.clone(),
            retries: 1,
            bandwidth: None,
            received: Default::default(),
        };
        let o = install::fetch_verified(&fetcher, &self.keys, true)
            .await
            .map(|(m, _)| Offer {
                height: m.height,
                bytes: m.total_bytes,
                kind: m.kind,
                trust: m.kind.trust(),
                created: m.created,
                version: m.version,
            })
            .map_err(|e| e.to_string());
        self.offered.lock().expect("offers").insert(src.coin.clone(), (Instant::now(), o.clone()));
        o
    }

    async fn node(&self, coin: &str, action: &str) -> Result<(), String> {
        let url = format!("{}/api/v1/nodes/{coin}/{action}", self.supervisor);
        let r = self.http.post(&url).send().await.map_err(|e| format!("the supervisor did not answer: {e}"))?;
        if r.status().is_success() {
            Ok(())
        } else {
            Err(format!("the supervisor refused to {action} the {coin} node: {}", r.text().await.unwrap_or_default()))
        }
    }

    /// Stop the node, install, start the node (also after a failed install: the old data
    /// directory is untouched until the atomic swap).
    async fn run_install(self: Arc<Self>, src: CoinSource) {
        let progress = self.progress_of(&src.coin);
        let result: Result<install::Report, String> = async {
            self.node(&src.coin, "stop").await?;
            // The node must have let go of its files before they are swapped.
            tokio::time::sleep(Duration::from_secs(2)).await;
            let opts = Options::new(&src.url, self.keys.clone(), &src.dest);
            install::install(opts, progress.clone()).await.map_err(|e: AgentError| e.to_string())
        }
        .await;
        match &result {
            Ok(r) => tracing::info!(coin = src.coin, version = r.version, "snapshot installed"),
            Err(e) => {
                tracing::warn!(coin = src.coin, error = %e, "snapshot install failed");
                progress.fail(e);
            }
        }
        if let Err(e) = self.node(&src.coin, "start").await {
            tracing::warn!(coin = src.coin, error = %e, "node not restarted after the snapshot");
        }
        *self.busy.lock().expect("busy") = None;
    }
}

pub fn router(agent: Arc<Agent>) -> Router {
    Router::new()
        .route("/api/v1/snapshots", get(list))
        .route("/api/v1/snapshots/{coin}/install", post(start_install))
        .route("/healthz", get(|| async { "ok" }))
        .with_state(agent)
}

async fn list(State(a): State<Arc<Agent>>) -> Json<Value> {
    let mut coins = Vec::new();
    for src in &a.coins {
        let offer = if a.enabled { a.offer(src).await } else { Err("snapshots are switched off in Settings".into()) };
        let p = a.progress_of(&src.coin).get();
        let installed = install::installed(&src.dest);
        coins.push(json!({
            "coin": src.coin,
            "network": src.network,
            "available": offer.as_ref().ok(),
            "error": offer.as_ref().err(),
            "installable": src.managed,
            "installed": installed.map(|i| json!({"version": i.version, "height": i.height, "kind": i.kind, "trust": i.kind.trust()})),
            "progress": p,
        }));
    }
    Json(json!({ "coins": coins, "busy": *a.busy.lock().expect("busy") }))
}

async fn start_install(State(a): State<Arc<Agent>>, UrlPath(coin): UrlPath<String>) -> (StatusCode, Json<Value>) {
    let Some(src) = a.coins.iter().find(|c| c.coin == coin).cloned() else {
        return (StatusCode::NOT_FOUND, Json(json!({"error": format!("{coin} is not a coin this box mines")})));
    };
    if !a.enabled {
        return (StatusCode::CONFLICT, Json(json!({"error": "snapshots are switched off in Settings"})));
    }
    if !src.managed {
        let error = format!(
            "the {coin} node is external (node = \"external\"): the box installs snapshots only into nodes it runs; \
             install it on the node's own host"
        );
        return (StatusCode::CONFLICT, Json(json!({ "error": error })));
    }
    {
        let mut busy = a.busy.lock().expect("busy");
        if let Some(other) = busy.as_ref() {
            return (
                StatusCode::CONFLICT,
                Json(json!({"error": format!("a {other} snapshot is being installed; wait for it")})),
            );
        }
        *busy = Some(coin.clone());
    }
    a.progress_of(&coin).set_phase(Phase::Verifying);
    tokio::spawn(a.clone().run_install(src));
    (StatusCode::ACCEPTED, Json(json!({"started": coin})))
}
