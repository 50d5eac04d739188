//! Registering an uploaded tree with MineBox Cloud (`POST /api/v1/publisher/snapshots`; docs/
//! cloud.md, "Snapshots through the cloud"): the cloud reads the signed manifest and the index
//! from the bucket itself and catalogues what they say, so only where the tree is goes over.

use anyhow::Context;
use minebox_cloud_link::snapshots::{Registered, Registration};
use std::path::Path;

/// The publisher's token from its file (what `minebox-cloud admin publisher-token` printed;
/// `#` comment lines are skipped). Kept in a file so it shows in no process list.
pub fn read_token(path: &Path) -> anyhow::Result<String> {
    let text = std::fs::read_to_string(path).with_context(|| format!("reading the token file {}", path.display()))?;
    text.lines().map(str::trim).find(|l| !l.is_empty() && !l.starts_with('#')).map(str::to_string).with_context(|| {
        format!("{} holds no token: put the one `minebox-cloud admin publisher-token` printed", path.display())
    })
}

/// Asks the cloud at `cloud` to catalogue the tree at `bucket`/`prefix`.
pub async fn register(cloud: &str, token: &str, registration: &Registration) -> anyhow::Result<Registered> {
    let url = format!("{}/api/v1/publisher/snapshots", cloud.trim_end_matches('/'));
    let response = reqwest::Client::builder()
        .timeout(std::time::Duration::from_secs(300))
        .build()?
        .post(&url)
        .bearer_auth(token)
        .json(registration)
        .send()
        .await
        .with_context(|| format!("reaching {url}"))?;
    let status = response.status();
    let text = response.text().await.unwrap_or_default();
    if !status.is_success() {
        // The cloud's refusal is a sentence in {"error": ...}: show it as it is.
        let said = serde_json::from_str::<serde_json::Value>(&text)
            .ok()
            .and_then(|v| v["error"].as_str().map(str::to_string))
            .unwrap_or(text);
        anyhow::bail!("the cloud refused the registration ({status}): {said}");
    }
    serde_json::from_str(&text).with_context(|| format!("the cloud's answer is not a registration: {text}"))
}
