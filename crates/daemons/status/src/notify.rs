//! Block-found notifications: the owner's webhook (a JSON POST) and/or ntfy topic (a plain
//! text POST, the way ntfy.sh and self-hosted ntfy take messages). Targets are read from
//! the settings at the moment of the event, so a change on the page applies at once.

use minebox_api::stratum;
use serde_json::json;
use std::time::Duration;

#[derive(Debug, Clone, PartialEq)]
pub struct BlockFound {
    pub coin: String,
    pub height: u64,
    pub hash: String,
    pub worker: String,
    pub reward_sats: u64,
}

impl BlockFound {
    /// The block a stratum event announces, if it announces one.
    pub fn from_event(ev: stratum::Event) -> Option<BlockFound> {
        match ev {
            stratum::Event::BlockFound { coin, height, hash, worker, reward_sats } => {
                Some(BlockFound { coin, height, hash, worker, reward_sats })
            }
            _ => None,
        }
    }

    pub fn headline(&self) -> String {
        format!(
            "MineBox found a {} block at height {}: {:.8} to {}",
            self.coin.to_uppercase(),
            self.height,
            self.reward_sats as f64 / 1e8,
            self.worker
        )
    }
}

#[derive(Debug, thiserror::Error)]
#[error("{target}: {message}")]
pub struct NotifyError {
    pub target: String,
    pub message: String,
}

/// Sends to every configured target; returns one error per target that failed (after a
/// retry), so the caller can log them. An unset target (`None`) is skipped.
pub async fn send(
    http: &reqwest::Client,
    webhook: &Option<reqwest::Url>,
    ntfy: &Option<reqwest::Url>,
    b: &BlockFound,
) -> Vec<NotifyError> {
    let mut errors = Vec::new();
    if let Some(webhook) = webhook {
        let body = json!({
            "event": "block_found", "coin": b.coin, "height": b.height, "hash": b.hash,
            "worker": b.worker, "reward_sats": b.reward_sats, "message": b.headline(),
        });
        if let Err(e) = retry(|| http.post(webhook.clone()).json(&body)).await {
            errors.push(NotifyError { target: "webhook".into(), message: e });
        }
    }
    if let Some(ntfy) = ntfy {
        let text = b.headline();
        let send = || http.post(ntfy.clone()).header("Title", "Block found").header("Tags", "tada").body(text.clone());
        if let Err(e) = retry(send).await {
            errors.push(NotifyError { target: "ntfy".into(), message: e });
        }
    }
    errors
}

async fn retry(make: impl Fn() -> reqwest::RequestBuilder) -> Result<(), String> {
    let mut last = String::new();
    for attempt in 0..3 {
        if attempt > 0 {
            tokio::time::sleep(Duration::from_secs(2 << attempt)).await;
        }
        match make().timeout(Duration::from_secs(10)).send().await {
            Ok(r) if r.status().is_success() => return Ok(()),
            Ok(r) => last = format!("answered {}", r.status()),
            Err(e) => last = e.to_string(),
        }
    }
    Err(last)
}
