//! `[updates]`: signed RAUC bundles from a signed channel manifest (docs/updates.md), and
//! the trial boot that keeps a new version only if the box is healthy in it.

mod window;

pub use window::{RebootWindow, WindowError};

use crate::file::{get, http_url, refuse, socket_addr, Layer};
use crate::SettingsError;
use serde::{Deserialize, Serialize};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

#[derive(Debug, Default, Deserialize, Serialize, Clone)]
#[serde(default, deny_unknown_fields)]
pub(crate) struct File {
    channel: Option<String>,
    manifest_url: Option<String>,
    keys: Option<PathBuf>,
    auto_install: Option<bool>,
    reboot_window: Option<String>,
    check_every_hours: Option<u64>,
    pub api: Option<String>,
    health_timeout_secs: Option<u64>,
    health_units: Option<Vec<String>>,
    status_url: Option<String>,
    usb_dir: Option<PathBuf>,
    max_bundle_mib: Option<u64>,
    state_dir: Option<PathBuf>,
    os_release: Option<PathBuf>,
    rauc: Option<PathBuf>,
    rauc_system_conf: Option<PathBuf>,
    tryboot: Option<PathBuf>,
    reboot_command: Option<Vec<String>>,
    rollback_command: Option<Vec<String>>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct UpdateSettings {
    /// Lowercase letters, digits and '-' (`stable`, `beta`).
    pub channel: String,
    /// Where the channel manifest is; `{channel}` and `{compatible}` are substituted.
    pub manifest_url: String,
    /// Directory of pinned minisign public keys (`update-*.pub`) the manifest must verify against.
    pub keys: PathBuf,
    pub auto_install: bool,
    /// When the trial reboot into a new version may happen.
    #[serde(skip)]
    pub reboot_window: RebootWindow,
    /// At least an hour.
    pub check_every: Duration,
    /// Loopback only: the API installs software and reboots the box.
    pub api: SocketAddr,
    pub health_timeout: Duration,
    /// Units that must be active after a trial boot.
    pub health_units: Vec<String>,
    /// The status page's base URL, without a trailing '/' (its `/api/v1/health` or
    /// `/healthz` must answer).
    pub status_url: String,
    /// Where a USB stick is mounted: `*.raucb` found under it are offered for install.
    pub usb_dir: PathBuf,
    /// Largest bundle downloaded or uploaded (at least 1 MiB).
    pub max_bundle_bytes: u64,
    /// Downloads, the attempt in progress and the history.
    pub state_dir: PathBuf,
    /// The running image's version (`VERSION_ID` / `IMAGE_VERSION`).
    pub os_release: PathBuf,
    pub rauc: PathBuf,
    pub rauc_system_conf: PathBuf,
    pub tryboot: PathBuf,
    /// Starts the trial boot of the freshly installed slot (never empty).
    pub reboot_command: Vec<String>,
    /// A normal reboot, back into the slot that boots by default (after a failed trial).
    pub rollback_command: Vec<String>,
}

impl UpdateSettings {
    /// The manifest URL for this channel and board.
    pub fn manifest_url_for(&self, compatible: &str) -> String {
        self.manifest_url.replace("{channel}", &self.channel).replace("{compatible}", compatible)
    }
}

pub(crate) fn resolve(l: &Layer<'_, File>) -> Result<UpdateSettings, SettingsError> {
    let channel: String = get!(l, channel);
    if channel.is_empty()
        || channel.len() > 32
        || !channel.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
    {
        return Err(refuse!(l, channel, "lowercase letters, digits and '-' (e.g. stable, beta)"));
    }
    let manifest_url: String = get!(l, manifest_url);
    http_url(&manifest_url.replace("{channel}", &channel).replace("{compatible}", "board"))
        .map_err(|m| refuse!(l, manifest_url, m))?;
    let reboot_window: String = get!(l, reboot_window);
    let reboot_window = reboot_window.parse().map_err(|e: WindowError| refuse!(l, reboot_window, e.to_string()))?;
    let api = socket_addr(l, "api", l.in_user(|s| s.api.as_ref()), &get!(l, api))?;
    // The API installs software and reboots the box: never beyond this machine.
    if !api.ip().is_loopback() {
        return Err(refuse!(l, api, format!("{api} is not a loopback address; use 127.0.0.1:PORT")));
    }
    let check_every_hours: u64 = get!(l, check_every_hours);
    if check_every_hours == 0 {
        return Err(refuse!(l, check_every_hours, "at least 1"));
    }
    let max_bundle_mib: u64 = get!(l, max_bundle_mib);
    if max_bundle_mib == 0 {
        return Err(refuse!(l, max_bundle_mib, "at least 1"));
    }
    let reboot_command: Vec<String> = get!(l, reboot_command);
    if reboot_command.is_empty() {
        return Err(refuse!(l, reboot_command, "must name a program"));
    }
    let rollback_command: Vec<String> = get!(l, rollback_command);
    if rollback_command.is_empty() {
        return Err(refuse!(l, rollback_command, "must name a program"));
    }
    let status_url: String = get!(l, status_url);
    http_url(&status_url).map_err(|m| refuse!(l, status_url, m))?;
    Ok(UpdateSettings {
        channel,
        manifest_url,
        keys: get!(l, keys),
        auto_install: get!(l, auto_install),
        reboot_window,
        check_every: Duration::from_secs(check_every_hours.saturating_mul(3600)),
        api,
        health_timeout: Duration::from_secs(get!(l, health_timeout_secs)),
        health_units: get!(l, health_units),
        status_url: status_url.trim_end_matches('/').to_string(),
        usb_dir: get!(l, usb_dir),
        max_bundle_bytes: max_bundle_mib.saturating_mul(1024 * 1024),
        state_dir: get!(l, state_dir),
        os_release: get!(l, os_release),
        rauc: get!(l, rauc),
        rauc_system_conf: get!(l, rauc_system_conf),
        tryboot: get!(l, tryboot),
        reboot_command,
        rollback_command,
    })
}

#[cfg(test)]
mod tests {
    use crate::Settings;
    use minebox_coin::Registry;
    use std::time::Duration;

    fn load(user: &str) -> Result<Settings, crate::SettingsError> {
        Settings::from_texts("minebox.toml", user, "defaults.toml", crate::EMBEDDED_DEFAULTS, &Registry::embedded())
    }

    #[test]
    fn image_defaults_resolve() {
        let c = load("").unwrap().updates;
        assert_eq!(c.api, "127.0.0.1:3393".parse().unwrap());
        assert_eq!(c.manifest_url_for("minebox-rpi5"), "https://updates.minebox.example/v1/stable/minebox-rpi5.json");
        assert_eq!(c.reboot_command, ["systemctl", "reboot", "--reboot-argument=0 tryboot"]);
        assert_eq!(c.check_every, Duration::from_secs(6 * 3600));
    }

    #[test]
    fn a_public_api_address_and_a_bad_window_are_refused() {
        let e = load("[updates]\napi = \"0.0.0.0:3393\"\n").unwrap_err();
        assert!(e.to_string().starts_with("minebox.toml: updates.api: 0.0.0.0:3393 is not a loopback"), "{e}");
        let e = load("[updates]\nreboot_window = \"night\"\n").unwrap_err();
        assert!(e.to_string().contains("updates.reboot_window"), "{e}");
    }
}
