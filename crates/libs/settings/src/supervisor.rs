//! `[supervisor]`: how nodes are run and watched.

use crate::file::{get, refuse, socket_addr, Layer};
use crate::SettingsError;
use serde::{Deserialize, Serialize};
use std::net::SocketAddr;
use std::time::Duration;

#[derive(Debug, Default, Deserialize, Serialize, Clone)]
#[serde(default, deny_unknown_fields)]
pub(crate) struct File {
    pub api: Option<String>,
    backend: Option<String>,
    disk_reserve_mib: Option<u64>,
    stall_after_secs: Option<u64>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Backend {
    Systemd,
    Process,
}

impl std::str::FromStr for Backend {
    type Err = String;
    fn from_str(s: &str) -> Result<Backend, String> {
        match s {
            "systemd" => Ok(Backend::Systemd),
            "process" => Ok(Backend::Process),
            other => Err(format!("{other:?} is not a backend; use \"systemd\" (the box) or \"process\" (development)")),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SupervisorSettings {
    pub api: SocketAddr,
    pub backend: Backend,
    /// Stop a node cleanly when less than this much disk is free.
    pub disk_reserve_mib: u64,
    /// A syncing node whose height has not moved for this long is reported as stalled.
    pub stall_after: Duration,
}

/// The least free space the disk guard may stop a node at. Bitcoin Core needs about 50 MiB
/// to write its chain state on the way down; below that its "clean" stop loses the blocks
/// it had not flushed (seen with real Core: back at height 0 after the guard stopped it).
pub const MIN_DISK_RESERVE_MIB: u64 = 64;

fn disk_reserve(l: &Layer<'_, File>) -> Result<u64, SettingsError> {
    let mib: u64 = get!(l, disk_reserve_mib);
    if mib < MIN_DISK_RESERVE_MIB {
        return Err(refuse!(
            l,
            disk_reserve_mib,
            format!(
                "{mib} MiB is too little for a node to stop cleanly; use at least {MIN_DISK_RESERVE_MIB} (the default is 2048)"
            )
        ));
    }
    Ok(mib)
}

pub(crate) fn resolve(l: &Layer<'_, File>) -> Result<SupervisorSettings, SettingsError> {
    let backend: String = get!(l, backend);
    let backend = backend.parse().map_err(|m: String| refuse!(l, backend, m))?;
    Ok(SupervisorSettings {
        api: socket_addr(l, "api", l.in_user(|s| s.api.as_ref()), &get!(l, api))?,
        backend,
        disk_reserve_mib: disk_reserve(l)?,
        stall_after: Duration::from_secs(get!(l, stall_after_secs)),
    })
}
