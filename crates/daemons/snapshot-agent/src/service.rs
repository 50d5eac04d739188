//! The agent as a service (`minebox-snapshot-agent --config ...`): on the status page's
//! request it installs the coin's published snapshot. A `datadir` snapshot: it stops the
//! node through the supervisor, swaps the verified data directory in, and starts the node
//! again. A `utxo` snapshot (Bitcoin Core's assumeutxo): the node keeps running and keeps
//! its data directory; the agent checks the manifest against the node, downloads the file
//! beside the datadir, and hands it to the node with `loadtxoutset` over its RPC. Its local API
//! tells what is published (and how far that kind of snapshot is trusted) and how an
//! install is going. One install at a time: they compete for the same disk and network.
//!
//! Where a snapshot comes from (`[snapshots] source`, docs/snapshot-agent.md): through MineBox
//! Cloud when the box is linked (a grant of presigned URLs, metered by the cloud), else from
//! `[snapshots] url`. The choice is made for each listing and each install: the owner may link
//! or unlink the box while the agent runs.

use crate::install::{self, Options};
use crate::progress::{Phase, SharedProgress};
use crate::source::{cloud_error, CloudDownload, Source};
use crate::utxo;
use crate::AgentError;
use axum::extract::{Path as UrlPath, State};
use axum::http::StatusCode;
use axum::routing::{get, post};
use axum::{Json, Router};
use minebox_api::snapshot::{self as wire, CoinSnapshots, Installed, List, Offer, Started};
use minebox_api::supervisor::NodeAction;
use minebox_api::ErrorBody;
use minebox_cloud_link::snapshots::{CatalogueEntry, GrantRequest, OfferRequest};
use minebox_cloud_link::{CloudLink, DeviceKey, LinkError};
pub use minebox_settings::SnapshotSource;
use minebox_snapshot::minisign::PublicKey;
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
    /// The node's RPC (for a `utxo` snapshot: checks, `loadtxoutset`, `getchainstates`).
    pub node: Option<minebox_node_rpc::NodeClient>,
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
    source: SnapshotSource,
    cloud: Option<CloudAccess>,
}

/// Where MineBox Cloud is and where the box keeps the key it signs its requests with
/// (`[cloud] url` and `key`; the key exists once the owner has linked the box on the page).
#[derive(Debug, Clone)]
pub struct CloudAccess {
    pub url: String,
    pub key: PathBuf,
}

/// Where one listing or install gets its snapshot.
enum Via {
    Url,
    Cloud(Arc<CloudLink>),
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
            source: SnapshotSource::Url,
            cloud: None,
        }
    }

    /// Takes snapshots through MineBox Cloud as `source` says (`Url`, the default of
    /// [`Agent::new`]: never).
    pub fn with_cloud(mut self, source: SnapshotSource, cloud: Option<CloudAccess>) -> Agent {
        self.source = source;
        self.cloud = cloud;
        self
    }

    /// The cloud link to use now, if any: none when the source is the URL, or, with `auto`,
    /// when no cloud is set or the box is not noted as linked (no device key, or the status page
    /// has not seen the cloud say "linked").
    fn via(&self) -> Result<Via, AgentError> {
        let forced = self.source == SnapshotSource::Cloud;
        if self.source == SnapshotSource::Url {
            return Ok(Via::Url);
        }
        let Some(cloud) = &self.cloud else {
            return if forced {
                Err(AgentError::Cloud {
                    message: "[snapshots] source = \"cloud\" but [cloud] url is empty: set the cloud's URL, or \
                              source = \"auto\""
                        .into(),
                })
            } else {
                Ok(Via::Url)
            };
        };
        // The key exists from first boot; with `auto` the cloud is asked only once the status
        // page has noted that the cloud said "linked": a box never linked never talks to it.
        if !forced && !minebox_cloud_link::noted_linked(&cloud.key) {
            return Ok(Via::Url);
        }
        match DeviceKey::load_existing(&cloud.key) {
            Ok(Some(key)) => Ok(Via::Cloud(Arc::new(CloudLink::new(&cloud.url, key)))),
            Ok(None) if forced => Err(AgentError::NotLinked),
            Ok(None) => Ok(Via::Url),
            Err(e) if forced => Err(AgentError::Cloud { message: e.to_string() }),
            Err(e) => {
                tracing::warn!(error = %e, "the device key cannot be read: snapshots come from [snapshots] url");
                Ok(Via::Url)
            }
        }
    }

    /// Whether `auto` takes the URL instead after this answer from the cloud: the box is not
    /// linked (401 unknown key, 403 unlinked), the catalogue has nothing for the coin (404), or
    /// the cloud cannot be reached or fails (5xx). Never after an over-quota refusal, and
    /// never when the owner chose `cloud`.
    fn falls_back(&self, e: &LinkError) -> bool {
        self.source == SnapshotSource::Auto
            && match e {
                LinkError::Refused { status, .. } => matches!(status, 401 | 403 | 404) || *status >= 500,
                LinkError::Unreachable { .. } | LinkError::Unexpected { .. } => true,
                LinkError::OverQuota { .. } => false,
            }
    }

    /// Where to install `src` from now: a cloud grant, or the URL.
    pub async fn source_for(&self, src: &CoinSource) -> Result<Source, AgentError> {
        let Via::Cloud(link) = self.via()? else { return Ok(Source::Url(src.url.clone())) };
        let request = GrantRequest { coin: src.coin.clone(), network: src.network.clone(), kind: None };
        match CloudDownload::grant(link, request).await {
            Ok(d) => {
                let g = d.current().await;
                tracing::info!(
                    coin = src.coin,
                    download = g.download,
                    resumed = g.resumed,
                    version = g.snapshot.version,
                    "snapshot granted by MineBox Cloud"
                );
                Ok(Source::Cloud(Arc::new(d)))
            }
            Err(e) if self.falls_back(&e) => {
                tracing::info!(coin = src.coin, reason = %e, url = src.url, "snapshot from [snapshots] url instead of MineBox Cloud");
                Ok(Source::Url(src.url.clone()))
            }
            Err(e) => Err(cloud_error(e)),
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
        let o = match self.cloud_offer(src).await {
            Some(o) => o,
            None => self.url_offer(src).await,
        };
        self.offered.lock().expect("offers").insert(src.coin.clone(), (Instant::now(), o.clone()));
        o
    }

    /// What the cloud's catalogue offers (not metered); None: ask the URL instead.
    async fn cloud_offer(&self, src: &CoinSource) -> Option<Result<Offer, String>> {
        let link = match self.via() {
            Ok(Via::Cloud(link)) => link,
            Ok(Via::Url) => return None,
            Err(e) => return Some(Err(e.to_string())),
        };
        let request = OfferRequest { coin: src.coin.clone(), network: src.network.clone() };
        match link.snapshot_offer(&request).await {
            Ok(offered) => {
                // The kind a grant without one gets: datadir first.
                let entry = offered.entries.iter().find(|e| e.kind == "datadir").or(offered.entries.first());
                match entry {
                    Some(e) => Some(Ok(catalogue_offer(e))),
                    // As an install would: auto takes the URL when the catalogue has none.
                    None if self.source == SnapshotSource::Auto => None,
                    None => Some(Err(format!("MineBox Cloud has no {} {} snapshot yet", src.coin, src.network))),
                }
            }
            Err(e) if self.falls_back(&e) => None,
            Err(e) => Some(Err(cloud_error(e).to_string())),
        }
    }

    async fn url_offer(&self, src: &CoinSource) -> Result<Offer, String> {
        let fetcher = crate::fetch::Fetcher::new(self.http.clone(), Source::Url(src.url.clone()), 1);
        crate::fetch::fetch_verified(&fetcher, &self.keys, true)
            .await
            .map(minebox_snapshot::Verified::into_parts)
            .map(|(m, _)| Offer {
                height: m.height(),
                bytes: m.total_bytes(),
                kind: wire_kind(m.kind()),
                trust: m.kind().trust().into(),
                created: m.created(),
                version: m.version(),
            })
            .map_err(|e| e.to_string())
    }

    async fn node(&self, coin: &str, action: NodeAction) -> Result<(), String> {
        let url = format!("{}{}", self.supervisor, action.path(coin));
        let r = self.http.post(&url).send().await.map_err(|e| format!("the supervisor did not answer: {e}"))?;
        if r.status().is_success() {
            Ok(())
        } else {
            Err(format!(
                "the supervisor refused to {} the {coin} node: {}",
                action.as_str(),
                r.text().await.unwrap_or_default()
            ))
        }
    }

    /// Installs the coin's published snapshot, whichever kind; the reason in words on failure.
    async fn run_install(self: Arc<Self>, src: CoinSource) {
        let progress = self.progress_of(&src.coin);
        match self.install_one(&src, &progress).await {
            Ok(version) => tracing::info!(coin = src.coin, version, "snapshot installed"),
            Err(e) => {
                tracing::warn!(coin = src.coin, error = %e, "snapshot install failed");
                progress.fail(&e);
            }
        }
        *self.busy.lock().expect("busy") = None;
    }

    async fn install_one(self: &Arc<Self>, src: &CoinSource, progress: &SharedProgress) -> Result<u64, String> {
        // A grant counts against the owner's plan: none for the version the node has already
        // (the catalogue's offer is not metered).
        if let (Some(have), Some(Ok(offer))) = (install::installed(&src.dest), self.cloud_offer(src).await) {
            if wire_kind(have.kind) == offer.kind && have.version >= offer.version {
                progress.set_phase(Phase::Done);
                return Ok(have.version);
            }
        }
        let source = self.source_for(src).await.map_err(|e| e.to_string())?;
        // What is published, verified and checked before anything is stopped or downloaded.
        let fetcher = crate::fetch::Fetcher::new(self.http.clone(), source.clone(), 2);
        let (m, _) =
            crate::fetch::fetch_verified(&fetcher, &self.keys, true).await.map_err(|e| e.to_string())?.into_parts();
        if m.coin() != src.coin || m.network() != src.network {
            return Err(format!(
                "refused: the snapshot is for {} {}, this node is {} {}",
                m.coin(),
                m.network(),
                src.coin,
                src.network
            ));
        }
        match m.kind() {
            minebox_snapshot::Kind::Datadir => {
                self.node(&src.coin, NodeAction::Stop).await?;
                // The node must have let go of its files before they are swapped.
                tokio::time::sleep(Duration::from_secs(2)).await;
                let opts = Options::from_source(source, self.keys.clone(), &src.dest);
                // The old data directory is untouched until the verified one is swapped in,
                // so the node is started again after a failed install too.
                let r = install::install(opts, progress.clone()).await.map_err(|e: AgentError| e.to_string());
                if let Err(e) = self.node(&src.coin, NodeAction::Start).await {
                    tracing::warn!(coin = src.coin, error = %e, "node not restarted after the snapshot");
                }
                r.map(|r| r.version)
            }
            minebox_snapshot::Kind::Utxo => {
                self.install_utxo(src, source, &m, progress).await.map_err(|e| e.to_string())
            }
        }
    }

    async fn install_utxo(
        self: &Arc<Self>,
        src: &CoinSource,
        source: Source,
        m: &minebox_snapshot::Manifest,
        progress: &SharedProgress,
    ) -> Result<u64, utxo::UtxoInstallError> {
        let node = src.node.as_ref().ok_or(utxo::UtxoInstallError::NoRpc)?;
        let opts = Options::from_source(source, self.keys.clone(), &src.dest);
        let version = utxo::install(opts, node, m, progress).await?;
        // Follow the background validation for the page until it completes.
        let (node, progress) = (node.clone(), progress.clone());
        tokio::spawn(async move {
            let mut failures = 0;
            while failures < 60 {
                tokio::time::sleep(Duration::from_secs(5)).await;
                match utxo::validation(&node).await {
                    Ok(v) => {
                        failures = 0;
                        let done = v.fully_validated;
                        progress.set_validation(v);
                        if done {
                            return;
                        }
                    }
                    Err(_) => failures += 1,
                }
            }
        });
        Ok(version)
    }
}

pub fn router(agent: Arc<Agent>) -> Router {
    Router::new()
        .route(wire::LIST, get(list))
        .route(wire::INSTALL, post(start_install))
        .route(minebox_api::HEALTHZ, get(|| async { "ok" }))
        .with_state(agent)
}

async fn list(State(a): State<Arc<Agent>>) -> Json<List> {
    let mut coins = Vec::new();
    for src in &a.coins {
        let offer = if a.enabled { a.offer(src).await } else { Err("snapshots are switched off in Settings".into()) };
        let mut p = a.progress_of(&src.coin).get();
        let installed = install::installed(&src.dest);
        // After a restart of the agent (a reboot during the hours of background validation)
        // nothing follows the node any more: ask it, so the page still shows how far it is.
        if p.phase == Phase::Idle && installed.as_ref().is_some_and(|i| i.kind == minebox_snapshot::Kind::Utxo) {
            if let Some(node) = &src.node {
                if let Ok(Ok(v)) = tokio::time::timeout(Duration::from_secs(3), utxo::validation(node)).await {
                    p.validation = Some(v);
                }
            }
        }
        let (available, error) = match offer {
            Ok(o) => (Some(o), None),
            Err(e) => (None, Some(e)),
        };
        coins.push(CoinSnapshots {
            coin: src.coin.clone(),
            network: src.network.clone(),
            available,
            error,
            installable: src.managed,
            installed: installed.map(|i| Installed {
                version: i.version,
                height: i.height,
                kind: wire_kind(i.kind),
                trust: i.kind.trust().into(),
            }),
            progress: p,
        });
    }
    Json(List { coins, busy: a.busy.lock().expect("busy").clone() })
}

/// A catalogue entry as the page shows an offer. The catalogue does not say when the snapshot
/// was made: `created` is 0 (unknown) for an offer from the cloud.
fn catalogue_offer(e: &CatalogueEntry) -> Offer {
    let kind = if e.kind == "utxo" { minebox_snapshot::Kind::Utxo } else { minebox_snapshot::Kind::Datadir };
    Offer {
        height: e.height,
        bytes: e.total_bytes,
        kind: wire_kind(kind),
        trust: kind.trust().into(),
        created: 0,
        version: e.version,
    }
}

/// The format's kind as the API names it (the same names on the wire).
fn wire_kind(k: minebox_snapshot::Kind) -> wire::Kind {
    match k {
        minebox_snapshot::Kind::Utxo => wire::Kind::Utxo,
        minebox_snapshot::Kind::Datadir => wire::Kind::Datadir,
    }
}

type Refused = (StatusCode, Json<ErrorBody>);

fn refused(status: StatusCode, error: impl Into<String>) -> Refused {
    (status, Json(ErrorBody::new(error)))
}

async fn start_install(
    State(a): State<Arc<Agent>>,
    UrlPath(coin): UrlPath<String>,
) -> Result<(StatusCode, Json<Started>), Refused> {
    let Some(src) = a.coins.iter().find(|c| c.coin == coin).cloned() else {
        return Err(refused(StatusCode::NOT_FOUND, format!("{coin} is not a coin this box mines")));
    };
    if !a.enabled {
        return Err(refused(StatusCode::CONFLICT, "snapshots are switched off in Settings"));
    }
    if !src.managed {
        let error = format!(
            "the {coin} node is external (node = \"external\"): the box installs snapshots only into nodes it runs; \
             install it on the node's own host"
        );
        return Err(refused(StatusCode::CONFLICT, error));
    }
    {
        let mut busy = a.busy.lock().expect("busy");
        if let Some(other) = busy.as_ref() {
            return Err(refused(StatusCode::CONFLICT, format!("a {other} snapshot is being installed; wait for it")));
        }
        *busy = Some(coin.clone());
    }
    a.progress_of(&coin).set_phase(Phase::Verifying);
    tokio::spawn(a.clone().run_install(src));
    Ok((StatusCode::ACCEPTED, Json(Started { started: coin })))
}
