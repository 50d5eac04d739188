//! `[paths]`: where node data, generated secrets and the stratum database live.

use crate::file::{get, Layer};
use crate::SettingsError;
use serde::{Deserialize, Serialize};
use std::path::PathBuf;

#[derive(Debug, Default, Deserialize, Serialize, Clone)]
#[serde(default, deny_unknown_fields)]
pub(crate) struct File {
    nodes: Option<PathBuf>,
    secrets: Option<PathBuf>,
    state: Option<PathBuf>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Paths {
    /// Node data directories, one per coin.
    pub nodes: PathBuf,
    pub secrets: PathBuf,
    pub state: PathBuf,
}

pub(crate) fn resolve(l: &Layer<'_, File>) -> Result<Paths, SettingsError> {
    Ok(Paths { nodes: get!(l, nodes), secrets: get!(l, secrets), state: get!(l, state) })
}
