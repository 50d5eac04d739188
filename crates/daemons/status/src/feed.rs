//! What flows to open pages without reloading: the services' own events (block found,
//! node synced, ...) followed from their SSE streams, and a fresh overview every few
//! seconds while at least one page is open (no page open, no polling); and the alerts,
//! which look at the box every minute whether or not a page is open.

use crate::alert::{Alert, Alerts, Observation, Thresholds, WorkerSeen};
use crate::app::App;
use crate::overview::Overview;
use minebox_api::sse::{self, Backoff};
use minebox_api::{stratum, supervisor};
use serde::Serialize;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::broadcast;

/// How often an open page gets a new overview.
pub const OVERVIEW_EVERY: Duration = Duration::from_secs(3);

/// What open pages are sent: each service's events as it sent them, with a `source`
/// naming the service, and the overview with `kind: "overview"`.
#[derive(Debug, Clone, Serialize)]
#[serde(untagged)]
pub enum PageEvent {
    Service(ServiceEvent),
    Overview {
        kind: &'static str,
        #[serde(flatten)]
        overview: Box<Overview>,
    },
}

#[derive(Debug, Clone, Serialize)]
#[serde(tag = "source", rename_all = "snake_case")]
pub enum ServiceEvent {
    Stratum(stratum::Event),
    Supervisor(supervisor::Event),
}

/// Follows a service's event stream for good, reconnecting with backoff, and republishes
/// each event as the page's (`wrap` tags it with its source).
pub async fn follow<E: serde::de::DeserializeOwned>(
    http: reqwest::Client,
    url: String,
    wrap: fn(E) -> ServiceEvent,
    tx: broadcast::Sender<PageEvent>,
) {
    let backoff = Backoff { first: Duration::from_secs(1), max: Duration::from_secs(30) };
    sse::follow(&http, &url, backoff, |ev| {
        let _ = tx.send(PageEvent::Service(wrap(ev)));
    })
    .await
}

/// How often the alerts look at the box (nodes, workers, disk, updater).
pub const ALERTS_EVERY: Duration = Duration::from_secs(60);
/// Alerts waiting to be sent; beyond this they are logged and dropped (a flood of miners
/// going silent at once must not grow memory without bound).
pub const ALERT_QUEUE: usize = 64;
/// Workers looked at per round (most recently seen first): a box's own miners, not a
/// registry of thousands.
pub const ALERT_WORKERS: usize = 500;

/// Sends alerts: a notification for every block the stratum server reports, and every
/// ALERTS_EVERY the conditions of [`crate::alert`]. Sending happens in a task of its own
/// behind a bounded queue, so a slow target never holds up the watching (nor the page).
pub async fn notifier(app: Arc<App>) {
    let (tx, rx) = tokio::sync::mpsc::channel::<Alert>(ALERT_QUEUE);
    let sender = tokio::spawn(sender(app.clone(), rx));
    let _stop_sender = AbortOnDrop(sender);
    let mut events = app.events.subscribe();
    let mut alerts = Alerts::new(Thresholds::from_settings(&app.settings().notify));
    // The first look a minute after start: the box's services start together, and one that
    // is still starting is not a problem worth a message.
    let mut tick = tokio::time::interval_at(tokio::time::Instant::now() + ALERTS_EVERY, ALERTS_EVERY);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            ev = events.recv() => match ev {
                Ok(PageEvent::Service(ServiceEvent::Stratum(ev))) => {
                    if let Some(block) = crate::notify::BlockFound::from_event(ev) {
                        queue(&tx, block.alert());
                    }
                }
                Ok(_) | Err(broadcast::error::RecvError::Lagged(_)) => {}
                Err(broadcast::error::RecvError::Closed) => return,
            },
            _ = tick.tick() => {
                alerts.set_thresholds(Thresholds::from_settings(&app.settings().notify));
                let obs = observe(&app).await;
                for a in alerts.observe(&obs, unix_now()) {
                    queue(&tx, a);
                }
            }
        }
    }
}

struct AbortOnDrop(tokio::task::JoinHandle<()>);
impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

fn queue(tx: &tokio::sync::mpsc::Sender<Alert>, a: Alert) {
    if let Err(e) = tx.try_send(a) {
        tracing::warn!(alert = %e.into_inner().headline(), "alert dropped: too many waiting to be sent");
    }
}

async fn sender(app: Arc<App>, mut rx: tokio::sync::mpsc::Receiver<Alert>) {
    let http = app.up.client().clone();
    while let Some(a) = rx.recv().await {
        let targets = crate::notify::Targets::from_settings(&app.settings().notify);
        if targets.is_empty() {
            continue;
        }
        for e in crate::notify::deliver(&http, &targets, &a).await {
            tracing::warn!(error = %e, alert = a.kind(), "alert not delivered");
        }
    }
}

fn unix_now() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs() as i64)
}

/// One look at the box through the services' APIs; a service that does not answer leaves
/// its part `None`.
pub async fn observe(app: &App) -> Observation {
    use crate::upstream::Service;
    use minebox_api::updater;
    let nodes = app.up.get_as::<Vec<supervisor::Node>>(Service::Supervisor, supervisor::NODES);
    let workers = app.up.get_page::<stratum::Worker>(Service::Stratum, stratum::WORKERS, ALERT_WORKERS, 0);
    let update = app.up.get_as::<updater::Status>(Service::Updates, updater::STATUS);
    let src = app.system.clone();
    let disk = tokio::task::spawn_blocking(move || crate::system::read(&src));
    let (nodes, workers, update, disk) = tokio::join!(nodes, workers, update, disk);
    Observation {
        nodes: nodes
            .ok()
            .map(|ns| ns.into_iter().map(|n| (n.coin, n.state, n.detail, n.health.map_or(0, |h| h.blocks))).collect()),
        workers: workers.ok().map(|p| {
            p.items
                .into_iter()
                .map(|w| WorkerSeen {
                    coin: w.coin,
                    worker: w.worker,
                    last_share_at: w.last_share_at,
                    hashrate_1h: w.hashrate.h1,
                    hashrate_24h: w.hashrate.d1,
                })
                .collect()
        }),
        disk: disk
            .ok()
            .filter(|s| s.disk_total_bytes > 0)
            .map(|s| (s.disk_path, s.disk_free_bytes, s.disk_total_bytes)),
        last_update: update.ok().and_then(|u| u.last_result),
    }
}

/// Pushes the overview to open pages.
pub async fn overviews(app: Arc<App>) {
    let mut tick = tokio::time::interval(OVERVIEW_EVERY);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        // Our own subscriber (the notifier) always holds one receiver.
        if app.events.receiver_count() <= 1 {
            continue;
        }
        let overview = Box::new(app.overview().await);
        let _ = app.events.send(PageEvent::Overview { kind: "overview", overview });
    }
}
