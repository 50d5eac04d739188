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

/// Each target is none (`""` in the file) or an http(s) URL, checked here.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct NotifySettings {
    /// Gets a JSON POST per found block.
    #[serde(serialize_with = "or_empty")]
    pub webhook: Option<url::Url>,
    /// An ntfy topic URL: gets a plain-text POST per found block.
    #[serde(serialize_with = "or_empty")]
    pub ntfy: Option<url::Url>,
}

pub(crate) fn resolve(l: &Layer<'_, File>) -> Result<NotifySettings, SettingsError> {
    let (webhook, ntfy): (String, String) = (get!(l, webhook), get!(l, ntfy));
    let webhook = match webhook.as_str() {
        "" => None,
        u => Some(http_url(u).map_err(|m| refuse!(l, webhook, m))?),
    };
    let ntfy = match ntfy.as_str() {
        "" => None,
        u => Some(http_url(u).map_err(|m| refuse!(l, ntfy, m))?),
    };
    Ok(NotifySettings { webhook, ntfy })
}

/// As the file writes it: the URL, or "" for none.
fn or_empty<S: serde::Serializer>(u: &Option<url::Url>, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(u.as_ref().map_or("", url::Url::as_str))
}
