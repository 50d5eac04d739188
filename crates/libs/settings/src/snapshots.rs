//! `[snapshots]`: where signed node snapshots are published, where the agent gets them (MineBox
//! Cloud or the URL), and the agent's local API.

use crate::file::{get, http_url, refuse, socket_addr, Layer};
use crate::SettingsError;
use serde::{Deserialize, Serialize};
use std::net::SocketAddr;

#[derive(Debug, Default, Deserialize, Serialize, Clone)]
#[serde(default, deny_unknown_fields)]
pub(crate) struct File {
    enabled: Option<bool>,
    url: Option<String>,
    source: Option<String>,
    pub api: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SnapshotSettings {
    pub enabled: bool,
    /// The publication's base URL (`…/v1`).
    #[serde(serialize_with = "as_str")]
    pub url: url::Url,
    /// Where the agent gets a snapshot (docs/snapshot-agent.md, "Where snapshots come from").
    pub source: SnapshotSource,
    /// The snapshot agent's local API (available snapshots, install, progress).
    pub api: SocketAddr,
}

/// `[snapshots] source`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum SnapshotSource {
    /// Through MineBox Cloud when the box is linked (`[cloud] url` set, device key made, the
    /// cloud knows it as linked), else from `url`. An over-quota refusal is never bypassed.
    Auto,
    /// Only through MineBox Cloud: an unlinked box installs nothing.
    Cloud,
    /// Only from `url`, even when the box is linked.
    Url,
}

impl std::str::FromStr for SnapshotSource {
    type Err = String;
    fn from_str(s: &str) -> Result<SnapshotSource, String> {
        match s {
            "auto" => Ok(SnapshotSource::Auto),
            "cloud" => Ok(SnapshotSource::Cloud),
            "url" => Ok(SnapshotSource::Url),
            other => Err(format!(
                "{other:?} is not a snapshot source; use \"auto\" (MineBox Cloud when the box is linked, else the \
                 url), \"cloud\" (only MineBox Cloud) or \"url\" (only snapshots.url)"
            )),
        }
    }
}

pub(crate) fn resolve(l: &Layer<'_, File>) -> Result<SnapshotSettings, SettingsError> {
    let url: String = get!(l, url);
    let source: String = get!(l, source);
    Ok(SnapshotSettings {
        source: source.parse().map_err(|m| refuse!(l, source, m))?,
        enabled: get!(l, enabled),
        url: http_url(&url).map_err(|m| refuse!(l, url, m))?,
        api: socket_addr(l, "api", l.in_user(|s| s.api.as_ref()), &get!(l, api))?,
    })
}

fn as_str<S: serde::Serializer>(u: &url::Url, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(u.as_str())
}
