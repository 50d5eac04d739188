//! Following the supervisor's events: when a node (re)starts or finishes syncing, its
//! miners get fresh work at once instead of at the next poll.

use serde::Deserialize;
use std::collections::HashMap;
use std::time::Duration;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

#[derive(Deserialize)]
struct NodeEvent {
    kind: String,
    coin: String,
}

/// Reads the supervisor's server-sent events until `shutdown`, reconnecting when it restarts.
pub async fn follow(url: String, kicks: HashMap<String, mpsc::Sender<()>>, shutdown: CancellationToken) {
    let http = reqwest::Client::new();
    loop {
        let attempt = async {
            let mut resp = http.get(&url).send().await?.error_for_status()?;
            tracing::info!(%url, "following the supervisor's node events");
            let mut buf = String::new();
            while let Some(chunk) = resp.chunk().await? {
                buf.push_str(&String::from_utf8_lossy(&chunk));
                // Events are small; a runaway stream without newlines is cut off.
                if buf.len() > 64 * 1024 {
                    buf.clear();
                }
                while let Some(end) = buf.find('\n') {
                    let line: String = buf.drain(..=end).collect();
                    let Some(data) = line.trim_end().strip_prefix("data:") else { continue };
                    let Ok(ev) = serde_json::from_str::<NodeEvent>(data.trim()) else { continue };
                    if matches!(ev.kind.as_str(), "node_started" | "node_synced") {
                        if let Some(k) = kicks.get(&ev.coin) {
                            tracing::info!(coin = %ev.coin, kind = %ev.kind, "node event: refreshing work");
                            let _ = k.try_send(());
                        }
                    }
                }
            }
            Ok::<(), reqwest::Error>(())
        };
        tokio::select! {
            _ = shutdown.cancelled() => return,
            r = attempt => if let Err(e) = r { tracing::debug!(%url, error = %e, "supervisor events unavailable; retrying") },
        }
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tokio::time::sleep(Duration::from_secs(5)) => {}
        }
    }
}
