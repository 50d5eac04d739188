//! `[notify]`: where a found block is announced (a webhook, an ntfy topic; empty: nowhere).

use crate::file::{get, http_url, refuse, Layer};
use crate::SettingsError;
use serde::{Deserialize, Serialize};

#[derive(Debug, Default, Deserialize, Serialize, Clone)]
#[serde(default, deny_unknown_fields)]
pub(crate) struct File {
    webhook: Option<String>,
    ntfy: Option<String>,
}

/// Each target is empty (none) or an http(s) URL, checked here.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct NotifySettings {
    pub webhook: String,
    pub ntfy: String,
}

pub(crate) fn resolve(l: &Layer<'_, File>) -> Result<NotifySettings, SettingsError> {
    let (webhook, ntfy): (String, String) = (get!(l, webhook), get!(l, ntfy));
    if !webhook.is_empty() {
        http_url(&webhook).map_err(|m| refuse!(l, webhook, m))?;
    }
    if !ntfy.is_empty() {
        http_url(&ntfy).map_err(|m| refuse!(l, ntfy, m))?;
    }
    Ok(NotifySettings { webhook, ntfy })
}
