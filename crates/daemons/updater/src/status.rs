//! What the local API reports: the running version, what the updater is doing, how far
//! along it is, the update on offer and the last result.

use crate::manifest::Manifest;
use crate::record::HistoryEntry;
use serde::Serialize;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum State {
    Idle,
    Checking,
    Downloading,
    Installing,
    WaitingForWindow,
    Rebooting,
    Verifying,
    Failed,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Progress {
    pub phase: String,
    pub done: u64,
    pub total: u64,
    pub percent: u8,
}

impl Progress {
    pub fn new(phase: &str, done: u64, total: u64) -> Progress {
        let percent = (done.min(total) * 100).checked_div(total).unwrap_or(0) as u8;
        Progress { phase: phase.into(), done, total, percent }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Current {
    pub version: String,
    pub slot: String,
    pub trial: bool,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Status {
    pub current: Current,
    pub state: State,
    pub progress: Option<Progress>,
    /// The verified manifest of a newer version, if the last check found one.
    pub available: Option<Manifest>,
    pub last_result: Option<HistoryEntry>,
    /// Why the state is `failed` (or what went wrong last), in words.
    pub error: Option<String>,
    /// The version installed and waiting for its trial reboot.
    pub pending: Option<String>,
    /// When the trial reboot will happen (local time), while waiting for the window.
    pub reboot_at: Option<String>,
}
