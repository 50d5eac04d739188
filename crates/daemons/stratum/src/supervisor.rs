//! Following the supervisor's events: when a node (re)starts or finishes syncing, its
//! miners get fresh work at once instead of at the next poll.

use minebox_api::sse::{self, Backoff};
use minebox_api::supervisor::Event;
use std::collections::HashMap;
use std::time::Duration;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

/// Reads the supervisor's server-sent events until `shutdown`, reconnecting when it restarts.
pub async fn follow(url: String, kicks: HashMap<String, mpsc::Sender<()>>, shutdown: CancellationToken) {
    let http = reqwest::Client::new();
    let every_5s = Backoff { first: Duration::from_secs(5), max: Duration::from_secs(5) };
    let kick = |ev: Event| {
        if let Event::NodeStarted { coin, .. } | Event::NodeSynced { coin, .. } = &ev {
            if let Some(k) = kicks.get(coin) {
                tracing::info!(%coin, event = ?ev, "node event: refreshing work");
                let _ = k.try_send(());
            }
        }
    };
    tokio::select! {
        _ = shutdown.cancelled() => {}
        _ = sse::follow(&http, &url, every_5s, kick) => {}
    }
}
