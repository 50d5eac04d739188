//! `[snapshots]`: where signed node snapshots are published, and the agent's local API.

use crate::file::{get, http_url, refuse, socket_addr, Layer};
use crate::SettingsError;
use serde::{Deserialize, Serialize};
use std::net::SocketAddr;

#[derive(Debug, Default, Deserialize, Serialize, Clone)]
#[serde(default, deny_unknown_fields)]
pub(crate) struct File {
    enabled: Option<bool>,
    url: Option<String>,
    pub api: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SnapshotSettings {
    pub enabled: bool,
    /// The publication's base URL (`…/v1`).
    #[serde(serialize_with = "as_str")]
    pub url: url::Url,
    /// The snapshot agent's local API (available snapshots, install, progress).
    pub api: SocketAddr,
}

pub(crate) fn resolve(l: &Layer<'_, File>) -> Result<SnapshotSettings, SettingsError> {
    let url: String = get!(l, url);
    Ok(SnapshotSettings {
        enabled: get!(l, enabled),
        url: http_url(&url).map_err(|m| refuse!(l, url, m))?,
        api: socket_addr(l, "api", l.in_user(|s| s.api.as_ref()), &get!(l, api))?,
    })
}

fn as_str<S: serde::Serializer>(u: &url::Url, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(u.as_str())
}
