//! The `[updates]` settings (typed and checked by the settings crate) gathered into what the
//! updater works with, with the few values it takes from other sections.

use minebox_settings::RebootWindow;
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

impl Config {
    /// What the updater works with, from settings the settings crate has checked (every
    /// check of `[updates]` lives there; nothing is parsed or refused here).
    pub fn from_settings(s: &Settings) -> Config {
        let u = &s.updates;
        Config {
            channel: u.channel.clone(),
            manifest_url: u.manifest_url.clone(),
            keys_dir: u.keys.clone(),
            auto_install: u.auto_install,
            window: u.reboot_window,
            check_every: u.check_every,
            api: u.api,
            health: HealthConfig {
                units: u.health_units.clone(),
                stratum_ports: s.coins.values().filter(|c| c.enabled).map(|c| c.stratum_port).collect(),
                status_url: u.status_url.clone(),
                supervisor_url: format!("http://{}", s.supervisor.api),
                timeout: u.health_timeout,
            },
            usb_dir: u.usb_dir.clone(),
            max_bundle_bytes: u.max_bundle_bytes,
            state_dir: u.state_dir.clone(),
            os_release: u.os_release.clone(),
            rauc: u.rauc.clone(),
            rauc_system_conf: u.rauc_system_conf.clone(),
            tryboot: u.tryboot.clone(),
            reboot_command: u.reboot_command.clone(),
            rollback_command: u.rollback_command.clone(),
        }
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

    fn load(user: &str) -> Result<Config, minebox_settings::SettingsError> {
        let s = Settings::from_texts(
            "minebox.toml",
            user,
            "defaults.toml",
            minebox_settings::EMBEDDED_DEFAULTS,
            &Registry::embedded(),
        )?;
        Ok(Config::from_settings(&s))
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
        assert!(e.to_string().starts_with("minebox.toml: updates.api: 0.0.0.0:3393 is not a loopback"), "{e}");
        let e = load("[updates]\nreboot_window = \"night\"\n").unwrap_err();
        assert!(e.to_string().contains("updates.reboot_window"), "{e}");
    }
}
