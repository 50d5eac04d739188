//! What flows to open pages without reloading: the services' own events (block found,
//! node synced, ...) followed from their SSE streams, and a fresh overview every few
//! seconds while at least one page is open (no page open, no polling).

use crate::app::App;
use futures::StreamExt;
use serde_json::{json, Value};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::broadcast;

/// How often an open page gets a new overview.
pub const OVERVIEW_EVERY: Duration = Duration::from_secs(3);
/// Longest SSE line accepted from a service; longer means something is wrong.
const MAX_LINE: usize = 64 << 10;

/// Follows a service's SSE stream forever, reconnecting with backoff, and republishes each
/// event (a JSON object with a `kind`) tagged with its source.
pub async fn follow(http: reqwest::Client, url: String, source: &'static str, tx: broadcast::Sender<Value>) {
    let mut backoff = Duration::from_secs(1);
    loop {
        match http.get(&url).timeout(Duration::from_secs(24 * 3600)).send().await {
            Ok(resp) if resp.status().is_success() => {
                backoff = Duration::from_secs(1);
                let mut stream = resp.bytes_stream();
                let mut line = Vec::new();
                'read: while let Some(Ok(chunk)) = stream.next().await {
                    for &b in chunk.iter() {
                        if b == b'\n' {
                            if let Some(data) = line.strip_prefix(b"data:") {
                                if let Ok(mut v) = serde_json::from_slice::<Value>(data) {
                                    if let Some(o) = v.as_object_mut() {
                                        o.insert("source".into(), json!(source));
                                        let _ = tx.send(v);
                                    }
                                }
                            }
                            line.clear();
                        } else if line.len() < MAX_LINE {
                            line.push(b);
                        } else {
                            break 'read;
                        }
                    }
                }
            }
            Ok(resp) => tracing::debug!(url, status = %resp.status(), "event stream refused"),
            Err(e) => tracing::debug!(url, error = %e, "event stream not reachable"),
        }
        tokio::time::sleep(backoff).await;
        backoff = (backoff * 2).min(Duration::from_secs(30));
    }
}

/// Sends block-found notifications for every block the stratum server reports.
pub async fn notifier(app: Arc<App>) {
    let mut rx = app.events.subscribe();
    loop {
        match rx.recv().await {
            Ok(ev) => {
                if let Some(block) = crate::notify::BlockFound::from_event(&ev) {
                    let (webhook, ntfy) = app.notify_targets();
                    let http = app.up.client().clone();
                    tokio::spawn(async move {
                        for e in crate::notify::send(&http, &webhook, &ntfy, &block).await {
                            tracing::warn!(error = %e, "block-found notification not delivered");
                        }
                    });
                }
            }
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
        let o = app.overview().await;
        let mut v = serde_json::to_value(o).expect("overview serializes");
        v["kind"] = json!("overview");
        let _ = app.events.send(v);
    }
}
