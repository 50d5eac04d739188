//! `[cloud]`: MineBox Cloud (issue 16): where it is, where the box keeps its device key, and
//! whether the owner sends telemetry. The box contacts the cloud only after its owner links it
//! from the status page; a box never linked never talks to it.

use crate::file::{get, http_url, refuse, Layer};
use crate::SettingsError;
use serde::{Deserialize, Serialize};
use std::path::PathBuf;

#[derive(Debug, Default, Deserialize, Serialize, Clone)]
#[serde(default, deny_unknown_fields)]
pub(crate) struct File {
    url: Option<String>,
    key: Option<PathBuf>,
    telemetry: Option<bool>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct CloudSettings {
    /// The cloud's base URL; none (`""` in the file): the box has no cloud to link to, and
    /// snapshots come from `[snapshots] url` only.
    #[serde(serialize_with = "or_empty")]
    pub url: Option<url::Url>,
    /// The box's Ed25519 seed file (`minebox-cloud-link`), made when the owner first links the
    /// box. Its folder is the one place both the status page and the snapshot agent read it.
    pub key: PathBuf,
    /// Heartbeat, daily mining stats and blocks found go to the linked account. Off unless the
    /// owner turns it on; the page says exactly what is sent.
    pub telemetry: bool,
}

pub(crate) fn resolve(l: &Layer<'_, File>) -> Result<CloudSettings, SettingsError> {
    let url: String = get!(l, url);
    let url = match url.as_str() {
        "" => None,
        u => Some(http_url(u).map_err(|m| refuse!(l, url, m))?),
    };
    let key: PathBuf = get!(l, key);
    if !key.is_absolute() {
        return Err(refuse!(l, key, format!("{}: an absolute path, on /data", key.display())));
    }
    Ok(CloudSettings { url, key, telemetry: get!(l, telemetry) })
}

fn or_empty<S: serde::Serializer>(u: &Option<url::Url>, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(u.as_ref().map_or("", url::Url::as_str))
}
