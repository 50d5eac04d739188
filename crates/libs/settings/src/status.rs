//! `[status]`: the status page.

use crate::file::{get, socket_addr, Layer};
use crate::SettingsError;
use serde::{Deserialize, Serialize};
use std::net::SocketAddr;
use std::path::PathBuf;

#[derive(Debug, Default, Deserialize, Serialize, Clone)]
#[serde(default, deny_unknown_fields)]
pub(crate) struct File {
    pub listen: Option<String>,
    accounts: Option<PathBuf>,
    apply: Option<Vec<String>>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct StatusSettings {
    /// Where the status page listens: the LAN on the box, localhost in development.
    pub listen: SocketAddr,
    /// The old admin and viewer password file. The page keeps its users in `users.db`
    /// beside it, made from this file on its first start (and never reads it again); the
    /// recovery console's reset leaves a `reset-users` marker there.
    pub accounts: PathBuf,
    /// What runs after the status page saved a settings change, so services read it
    /// (empty: nothing; the page then says a restart is needed).
    pub apply: Vec<String>,
}

pub(crate) fn resolve(l: &Layer<'_, File>) -> Result<StatusSettings, SettingsError> {
    Ok(StatusSettings {
        listen: socket_addr(l, "listen", l.in_user(|s| s.listen.as_ref()), &get!(l, listen))?,
        accounts: get!(l, accounts),
        apply: get!(l, apply),
    })
}
