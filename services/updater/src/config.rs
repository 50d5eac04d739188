//! The `[updates]` settings, resolved into what the updater works with.

use crate::window::RebootWindow;
use minebox_settings::Settings;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

#[derive(Debug, Clone)]
pub struct Config {
    pub channel: String,
    /// Template with `{channel}` and `{compatible}`.
    pub manifest_url: String,
    pub keys_dir: PathBuf,
    pub auto_install: bool,
    pub window: RebootWindow,
    pub check_every: Duration,
    pub api: SocketAddr,
    pub health: HealthConfig,
    pub usb_dir: PathBuf,
    pub max_bundle_bytes: u64,
    pub state_dir: PathBuf,
    pub os_release: PathBuf,
    pub rauc: PathBuf,
    pub rauc_system_conf: PathBuf,
    pub tryboot: PathBuf,
    pub reboot_command: Vec<String>,
    pub rollback_command: Vec<String>,
}

/// What "the box is healthy" means after a trial boot.
#[derive(Debug, Clone)]
pub struct HealthConfig {
    pub units: Vec<String>,
    /// The enabled coins' stratum ports (miners connect there).
    pub stratum_ports: Vec<u16>,
    pub status_url: String,
    pub supervisor_url: String,
    pub timeout: Duration,
}

#[derive(Debug, thiserror::Error)]
#[error("updates.{key}: {message}")]
pub struct ConfigError {
    key: &'static str,
    message: String,
}

fn err(key: &'static str, message: impl ToString) -> ConfigError {
    ConfigError { key, message: message.to_string() }
}

impl Config {
    pub fn from_settings(s: &Settings) -> Result<Config, ConfigError> {
        let u = &s.updates;
        let api: SocketAddr = u.api.parse().map_err(|_| err("api", format!("{:?} is not host:port", u.api)))?;
        // The API installs software and reboots the box: never beyond this machine.
        if !api.ip().is_loopback() {
            return Err(err("api", format!("{api} is not a loopback address; use 127.0.0.1:PORT")));
        }
        if u.check_every_hours == 0 {
            return Err(err("check_every_hours", "at least 1"));
        }
        if u.reboot_command.is_empty() {
            return Err(err("reboot_command", "must name a program"));
        }
        if u.rollback_command.is_empty() {
            return Err(err("rollback_command", "must name a program"));
        }
        if u.max_bundle_mib == 0 {
            return Err(err("max_bundle_mib", "at least 1"));
        }
        Ok(Config {
            channel: u.channel.clone(),
            manifest_url: u.manifest_url.clone(),
            keys_dir: u.keys.clone(),
            auto_install: u.auto_install,
            window: u.reboot_window.parse().map_err(|e| err("reboot_window", e))?,
            check_every: Duration::from_secs(u.check_every_hours * 3600),
            api,
            health: HealthConfig {
                units: u.health_units.clone(),
                stratum_ports: s.coins.values().filter(|c| c.enabled).map(|c| c.stratum_port).collect(),
                status_url: u.status_url.trim_end_matches('/').to_string(),
                supervisor_url: format!("http://{}", s.supervisor.api),
                timeout: Duration::from_secs(u.health_timeout_secs),
            },
            usb_dir: u.usb_dir.clone(),
            max_bundle_bytes: u.max_bundle_mib * 1024 * 1024,
            state_dir: u.state_dir.clone(),
            os_release: u.os_release.clone(),
            rauc: u.rauc.clone(),
            rauc_system_conf: u.rauc_system_conf.clone(),
            tryboot: u.tryboot.clone(),
            reboot_command: u.reboot_command.clone(),
            rollback_command: u.rollback_command.clone(),
        })
    }

    /// The manifest URL for this channel and board.
    pub fn manifest_url_for(&self, compatible: &str) -> String {
        self.manifest_url.replace("{channel}", &self.channel).replace("{compatible}", compatible)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use minebox_coin::Registry;

    fn load(user: &str) -> Result<Config, ConfigError> {
        let s = Settings::from_texts(
            "minebox.toml",
            user,
            "defaults.toml",
            minebox_settings::EMBEDDED_DEFAULTS,
            &Registry::embedded(),
        )
        .unwrap();
        Config::from_settings(&s)
    }

    #[test]
    fn image_defaults_resolve() {
        let c = load("").unwrap();
        assert_eq!(c.api, "127.0.0.1:3393".parse().unwrap());
        assert_eq!(c.manifest_url_for("minebox-rpi5"), "https://updates.minebox.example/v1/stable/minebox-rpi5.json");
        assert_eq!(c.reboot_command, ["systemctl", "reboot", "--reboot-argument=0 tryboot"]);
        assert_eq!(c.check_every, Duration::from_secs(6 * 3600));
    }

    #[test]
    fn a_public_api_address_and_a_bad_window_are_refused() {
        let e = load("[updates]\napi = \"0.0.0.0:3393\"\n").unwrap_err();
        assert!(e.to_string().starts_with("updates.api: 0.0.0.0:3393 is not a loopback"), "{e}");
        let e = load("[updates]\nreboot_window = \"night\"\n").unwrap_err();
        assert!(e.to_string().contains("updates.reboot_window"), "{e}");
    }
}
