//! `[stratum]`: the stratum server's local API and the tag in every coinbase.

use crate::file::{get, refuse, socket_addr, Layer};
use crate::SettingsError;
use serde::{Deserialize, Serialize};
use std::net::SocketAddr;

#[derive(Debug, Default, Deserialize, Serialize, Clone)]
#[serde(default, deny_unknown_fields)]
pub(crate) struct File {
    pub api: Option<String>,
    coinbase_tag: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct StratumSettings {
    pub api: SocketAddr,
    pub coinbase_tag: String,
}

pub(crate) fn resolve(l: &Layer<'_, File>) -> Result<StratumSettings, SettingsError> {
    let coinbase_tag: String = get!(l, coinbase_tag);
    if coinbase_tag.len() > 40 {
        return Err(refuse!(l, coinbase_tag, "at most 40 bytes (the coinbase input script is limited to 100)"));
    }
    let api = socket_addr(l, "api", l.in_user(|s| s.api.as_ref()), &get!(l, api))?;
    Ok(StratumSettings { api, coinbase_tag })
}
