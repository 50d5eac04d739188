//! What flows to open pages without reloading: the services' own events (block found,
//! node synced, ...) followed from their SSE streams, and a fresh overview every few
//! seconds while at least one page is open (no page open, no polling).

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

/// Sends block-found notifications for every block the stratum server reports.
pub async fn notifier(app: Arc<App>) {
    let mut rx = app.events.subscribe();
    loop {
        match rx.recv().await {
            Ok(PageEvent::Service(ServiceEvent::Stratum(ev))) => {
                let Some(block) = crate::notify::BlockFound::from_event(ev) else { continue };
                let (webhook, ntfy) = app.notify_targets();
                let http = app.up.client().clone();
                tokio::spawn(async move {
                    for e in crate::notify::send(&http, &webhook, &ntfy, &block).await {
                        tracing::warn!(error = %e, "block-found notification not delivered");
                    }
                });
            }
            Ok(_) => {}
            Err(broadcast::error::RecvError::Lagged(_)) => continue,
            Err(broadcast::error::RecvError::Closed) => return,
        }
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
