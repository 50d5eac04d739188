//! The updater's local API (127.0.0.1 only), for the status page and the CLI: its routes, and
//! what it answers ([`Status`] for `GET` [`STATUS`] and the install requests, a list of
//! [`HistoryEntry`] for `GET` [`HISTORY`]).

use serde::{Deserialize, Serialize};

/// `GET`: the running version, what the updater is doing and the update on offer.
pub const STATUS: &str = "/api/v1/update";
/// `GET`: past installs and their results.
pub const HISTORY: &str = "/api/v1/update/history";
/// `POST`: look for an update now.
pub const CHECK: &str = "/api/v1/update/check";
/// `POST`: install the update on offer (or `{"url": ...}`).
pub const INSTALL: &str = "/api/v1/update/install";
/// `POST ?reboot=now|window`: install the bundle in the body.
pub const UPLOAD: &str = "/api/v1/update/upload";
/// `POST ?reboot=now|window`: install the bundle on a USB stick.
pub const USB: &str = "/api/v1/update/usb";

/// What the status page may ask of the updater by name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    Check,
    Install,
    Usb,
    Upload,
}

impl Action {
    /// `check`, `install`, `usb` or `upload`; anything else is none.
    pub fn parse(s: &str) -> Option<Action> {
        match s {
            "check" => Some(Action::Check),
            "install" => Some(Action::Install),
            "usb" => Some(Action::Usb),
            "upload" => Some(Action::Upload),
            _ => None,
        }
    }

    pub fn path(self) -> &'static str {
        match self {
            Action::Check => CHECK,
            Action::Install => INSTALL,
            Action::Usb => USB,
            Action::Upload => UPLOAD,
        }
    }
}

/// What the updater is doing.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum State {
    #[default]
    Idle,
    Checking,
    Downloading,
    Installing,
    WaitingForWindow,
    Rebooting,
    Verifying,
    Failed,
}

/// How far the current step is.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
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

/// The running system.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct Current {
    pub version: String,
    pub slot: String,
    pub trial: bool,
}

/// A channel manifest's fields: which version is current for a board, where its bundle is,
/// its size and SHA-256. The updater acts on one only after its signature verified (the
/// updater's `manifest` module); the API shows the verified one on offer.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Manifest {
    pub version: String,
    pub compatible: String,
    pub bundle_url: String,
    pub size: u64,
    pub sha256: String,
    #[serde(default)]
    pub notes: String,
}

/// How an update ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Outcome {
    /// The new version passed its trial and is now the default.
    Installed,
    /// The trial failed and the box went back to the old version.
    RolledBack,
    /// The update never reached a trial (refused download, bundle RAUC refused, ...).
    Failed,
}

/// One past update.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HistoryEntry {
    /// Unix time, seconds.
    pub at: u64,
    pub version: String,
    pub from_version: String,
    pub result: Outcome,
    pub message: String,
}

/// `GET` [`STATUS`]: the running version, what the updater is doing, how far along it is, the
/// update on offer and the last result.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
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
