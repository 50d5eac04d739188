//! The settings the page edits: payout addresses, coins on/off, stratum ports and
//! difficulty bounds, the update channel and block-found notification targets.
//!
//! An edit is laid over the user's file with `toml_edit` (their comments and any other
//! keys stay as they wrote them), checked as a whole by the settings crate exactly as the
//! services will read it, and only then written (atomically). A refused edit leaves the
//! file untouched and says which key is wrong and what would be valid.

use minebox_coin::Registry;
use minebox_settings::{Settings, SettingsError};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

#[derive(Debug, Clone, Serialize)]
pub struct ConfigView {
    pub coins: BTreeMap<String, CoinConfig>,
    pub updates: UpdatesConfig,
    pub notify: NotifyConfig,
    pub snapshots: SnapshotsConfig,
    pub cloud: CloudConfig,
}

#[derive(Debug, Clone, Serialize, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct CoinConfig {
    /// The coin's name, for display (read-only).
    #[serde(default, skip_deserializing)]
    pub name: String,
    #[serde(default, skip_deserializing)]
    pub network: String,
    pub enabled: Option<bool>,
    pub payout_address: Option<String>,
    pub stratum_port: Option<u16>,
    pub start_difficulty: Option<f64>,
    pub min_difficulty: Option<f64>,
    pub max_difficulty: Option<f64>,
    /// Whose address a block pays: `miner` (a miner's own valid address, else the payout
    /// address) or `owner` (always the payout address).
    pub payout_policy: Option<String>,
    /// The solo pool miners work through while the node is not ready
    /// (`stratum+tcp://host:port`); none by default, "" to remove it.
    pub upstream: Option<String>,
    /// Well-known solo pools the page offers for `upstream` (read-only).
    #[serde(default, skip_deserializing)]
    pub known_pools: Vec<crate::mining_source::KnownPool>,
    /// Why the box cannot run this coin's node itself, when it cannot (read-only).
    #[serde(default, skip_deserializing, skip_serializing_if = "Option::is_none")]
    pub node_note: Option<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct UpdatesConfig {
    pub channel: Option<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct NotifyConfig {
    pub webhook: Option<String>,
    pub ntfy: Option<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct SnapshotsConfig {
    pub enabled: Option<bool>,
}

#[derive(Debug, Clone, Serialize, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct CloudConfig {
    /// Telemetry to the linked MineBox Cloud account (`[cloud] telemetry`), off by default.
    pub telemetry: Option<bool>,
}

/// A change from the page: only the keys present are changed.
#[derive(Debug, Clone, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct ConfigEdit {
    #[serde(default)]
    pub coins: BTreeMap<String, CoinConfig>,
    pub updates: Option<UpdatesConfig>,
    pub notify: Option<NotifyConfig>,
    pub snapshots: Option<SnapshotsConfig>,
    pub cloud: Option<CloudConfig>,
}

impl ConfigEdit {
    /// The edit changes only settings the status service reads as it goes (the telemetry
    /// switch), so the other services need no restart.
    /// What the edit touches, for the audit log: the sections and coins, never the values
    /// (a webhook URL or an address is the owner's business, not the log's).
    pub fn summary(&self) -> String {
        let mut parts: Vec<String> = self.coins.keys().map(|c| format!("coins.{c}")).collect();
        for (name, set) in [
            ("updates", self.updates.is_some()),
            ("notify", self.notify.is_some()),
            ("snapshots", self.snapshots.is_some()),
            ("cloud", self.cloud.is_some()),
        ] {
            if set {
                parts.push(name.to_string());
            }
        }
        parts.join(", ")
    }

    pub fn only_read_live(&self) -> bool {
        self.coins.is_empty()
            && self.updates.is_none()
            && self.notify.is_none()
            && self.snapshots.is_none()
            && self.cloud.is_some()
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("{0}")]
    Invalid(String),
    #[error("{0}")]
    Settings(#[from] SettingsError),
    #[error("cannot write {path}: {message}")]
    Write { path: String, message: String },
}

pub struct ConfigFiles {
    pub user: PathBuf,
    pub defaults: Option<PathBuf>,
}

impl ConfigFiles {
    pub fn load(&self, registry: &Registry) -> Result<Settings, SettingsError> {
        Settings::load(Some(&self.user), self.defaults.as_deref(), registry)
    }

    fn defaults_text(&self) -> Result<(String, String), ConfigError> {
        Ok(match &self.defaults {
            Some(p) => (
                p.display().to_string(),
                std::fs::read_to_string(p).map_err(|e| ConfigError::Invalid(format!("{}: {e}", p.display())))?,
            ),
            None => ("(built-in defaults)".into(), minebox_settings::EMBEDDED_DEFAULTS.into()),
        })
    }
}

pub fn view(settings: &Settings, registry: &Registry) -> ConfigView {
    let coins = registry
        .ids()
        .into_iter()
        .map(|id| {
            let c = settings.coins.get(&id);
            let descriptor = registry.get(&id);
            let name = descriptor.map(|c| c.name.clone()).unwrap_or_default();
            // A node the image does not ship: the page says so before the user enables it,
            // rather than the save failing on a setting they cannot see.
            let node_note = descriptor.filter(|d| !d.node.in_image).map(|d| {
                format!(
                    "External node only: the MineBox image has no {} node. Run one elsewhere and set node = \"external\", rpc_host, rpc_port and rpc_cookie for coins.{id} in the settings file.",
                    d.name
                )
            });
            let network = c.map(|c| c.network.name.clone()).unwrap_or_else(|| "main".into());
            let cfg = CoinConfig {
                name,
                known_pools: crate::mining_source::known_pools(&id, &network),
                network,
                enabled: Some(c.is_some_and(|c| c.enabled)),
                payout_address: Some(c.map(|c| c.payout_address.clone()).unwrap_or_default()),
                stratum_port: c.map(|c| c.stratum_port),
                start_difficulty: c.map(|c| c.start_difficulty),
                min_difficulty: c.map(|c| c.min_difficulty),
                max_difficulty: c.map(|c| c.max_difficulty),
                payout_policy: Some(c.map(|c| c.payout_policy.as_str()).unwrap_or("miner").to_string()),
                upstream: Some(c.and_then(|c| c.upstream.as_ref()).map_or_else(String::new, |u| u.to_string())),
                node_note,
            };
            (id, cfg)
        })
        .collect();
    ConfigView {
        coins,
        updates: UpdatesConfig { channel: Some(settings.updates.channel.clone()) },
        notify: NotifyConfig {
            webhook: Some(settings.notify.webhook.as_ref().map_or_else(String::new, |u| u.to_string())),
            ntfy: Some(settings.notify.ntfy.as_ref().map_or_else(String::new, |u| u.to_string())),
        },
        snapshots: SnapshotsConfig { enabled: Some(settings.snapshots.enabled) },
        cloud: CloudConfig { telemetry: Some(settings.cloud.telemetry) },
    }
}

/// Applies `edit` to the user's file if the result is valid; returns the new settings.
pub fn apply(files: &ConfigFiles, edit: &ConfigEdit, registry: &Registry) -> Result<Settings, ConfigError> {
    apply_with(files, registry, |doc| edit_document(doc, edit))
}

/// Lays `edit` over the user's file (as a `toml_edit` document, keeping their comments) and
/// writes it if the settings crate accepts the result; returns the new settings.
pub fn apply_with(
    files: &ConfigFiles,
    registry: &Registry,
    edit: impl FnOnce(&mut toml_edit::DocumentMut),
) -> Result<Settings, ConfigError> {
    let current = match std::fs::read_to_string(&files.user) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => String::new(),
        Err(e) => return Err(ConfigError::Invalid(format!("{}: {e}", files.user.display()))),
    };
    let mut doc: toml_edit::DocumentMut = current
        .parse()
        .map_err(|e| ConfigError::Invalid(format!("{}: {e}; fix or delete the file", files.user.display())))?;
    edit(&mut doc);
    let text = doc.to_string();
    let (dname, dtext) = files.defaults_text()?;
    let settings = Settings::from_texts(&files.user.display().to_string(), &text, &dname, &dtext, registry)?;
    if let Some(dir) = files.user.parent() {
        std::fs::create_dir_all(dir).ok();
    }
    minebox_platform::fs::AtomicWrite::to(&files.user)
        .mode(minebox_settings::SETTINGS_MODE)
        .write(text.as_bytes())
        .map_err(|e| ConfigError::Write { path: files.user.display().to_string(), message: e.to_string() })?;
    Ok(settings)
}

pub fn table<'a>(doc: &'a mut toml_edit::DocumentMut, path: &[&str]) -> &'a mut toml_edit::Table {
    let mut t = doc.as_table_mut();
    for key in path {
        let entry = t.entry(key).or_insert_with(|| {
            let mut nt = toml_edit::Table::new();
            nt.set_implicit(path.len() > 1 && *key == path[0]);
            toml_edit::Item::Table(nt)
        });
        t = entry.as_table_mut().expect("settings tables are tables");
    }
    t
}

fn set<V: Into<toml_edit::Value>>(t: &mut toml_edit::Table, key: &str, v: Option<V>) {
    if let Some(v) = v {
        t[key] = toml_edit::value(v);
    }
}

/// Lays the edit over the document. Nothing is checked here: the result is checked as a
/// whole by the settings crate, as every service checks it, before it is written.
fn edit_document(doc: &mut toml_edit::DocumentMut, edit: &ConfigEdit) {
    for (id, c) in &edit.coins {
        let t = table(doc, &["coins", id]);
        set(t, "enabled", c.enabled);
        set(t, "payout_address", c.payout_address.clone());
        set(t, "stratum_port", c.stratum_port.map(i64::from));
        set(t, "start_difficulty", c.start_difficulty);
        set(t, "min_difficulty", c.min_difficulty);
        set(t, "max_difficulty", c.max_difficulty);
        set(t, "payout_policy", c.payout_policy.clone());
        // "" removes the pool (none is the default); the settings crate checks the rest.
        match c.upstream.as_deref().map(str::trim) {
            Some("") => {
                t.remove("upstream");
            }
            Some(url) => set(t, "upstream", Some(url.to_string())),
            None => {}
        }
    }
    if let Some(u) = &edit.updates {
        set(table(doc, &["updates"]), "channel", u.channel.clone());
    }
    if let Some(n) = &edit.notify {
        let t = table(doc, &["notify"]);
        set(t, "webhook", n.webhook.clone());
        set(t, "ntfy", n.ntfy.clone());
    }
    if let Some(s) = &edit.snapshots {
        set(table(doc, &["snapshots"]), "enabled", s.enabled);
    }
    if let Some(c) = &edit.cloud {
        set(table(doc, &["cloud"]), "telemetry", c.telemetry);
    }
}

/// Runs the configured apply command (restart the services that read the settings).
pub async fn run_apply(command: &[String]) -> Result<bool, String> {
    let Some((prog, args)) = command.split_first() else { return Ok(false) };
    let out = tokio::process::Command::new(prog).args(args).output().await.map_err(|e| format!("{prog}: {e}"))?;
    if out.status.success() {
        Ok(true)
    } else {
        Err(format!("{prog} failed: {}", String::from_utf8_lossy(&out.stderr).trim()))
    }
}

pub fn user_file_exists(path: &Path) -> bool {
    path.exists()
}

#[cfg(test)]
mod tests {
    use super::*;

    const ADDR: &str = "bcrt1qw508d6qejxtdg4y5r3zarvary0c5xw7kygt080";

    fn setup(user: &str) -> (tempfile::TempDir, ConfigFiles, Registry) {
        let d = tempfile::tempdir().unwrap();
        let user_path = d.path().join("minebox.toml");
        if !user.is_empty() {
            std::fs::write(&user_path, user).unwrap();
        }
        let files = ConfigFiles { user: user_path, defaults: None };
        (d, files, Registry::embedded())
    }

    #[test]
    fn an_edit_keeps_the_users_comments_and_round_trips() {
        let (_d, files, reg) = setup("# my box\n[supervisor]\nbackend = \"process\" # dev\n");
        let mut edit = ConfigEdit::default();
        edit.coins.insert(
            "btc".into(),
            CoinConfig {
                enabled: Some(true),
                payout_address: Some(ADDR.into()),
                stratum_port: Some(3334),
                ..Default::default()
            },
        );
        edit.notify = Some(NotifyConfig { webhook: Some("http://192.168.1.5/hook".into()), ntfy: None });
        // A regtest address needs the regtest network; set it as a user would have.
        std::fs::write(
            &files.user,
            "# my box\n[supervisor]\nbackend = \"process\" # dev\n[coins.btc]\nnetwork = \"regtest\"\n",
        )
        .unwrap();
        let s = apply(&files, &edit, &reg).unwrap();
        assert_eq!(s.coins["btc"].payout_address, ADDR);
        assert_eq!(s.coins["btc"].stratum_port, 3334);
        let text = std::fs::read_to_string(&files.user).unwrap();
        assert!(text.contains("# my box") && text.contains("# dev"), "{text}");
        // The services read it through their group, whatever the page's umask.
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&files.user).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, minebox_settings::SETTINGS_MODE, "settings file mode {mode:o}");
        let v = view(&files.load(&reg).unwrap(), &reg);
        assert_eq!(v.coins["btc"].enabled, Some(true));
        assert_eq!(v.notify.webhook.as_deref(), Some("http://192.168.1.5/hook"));
    }

    #[test]
    fn the_page_sets_whose_address_a_block_pays_and_says_which_nodes_are_external_only() {
        let (_d, files, reg) = setup("[coins.btc]\nnetwork = \"regtest\"\n");
        let v = view(&files.load(&reg).unwrap(), &reg);
        assert_eq!(v.coins["btc"].payout_policy.as_deref(), Some("miner"));
        assert_eq!(v.coins["btc"].node_note, None);
        let note = v.coins["xec"].node_note.as_deref().unwrap_or_default();
        assert!(note.starts_with("External node only: the MineBox image has no eCash node"), "{note}");
        assert!(v.coins["bsv"].node_note.is_some());

        let mut edit = ConfigEdit::default();
        edit.coins.insert(
            "btc".into(),
            CoinConfig {
                enabled: Some(true),
                payout_address: Some(ADDR.into()),
                payout_policy: Some("owner".into()),
                ..Default::default()
            },
        );
        let s = apply(&files, &edit, &reg).unwrap();
        assert_eq!(s.coins["btc"].payout_policy, minebox_settings::PayoutPolicy::Owner);
        assert_eq!(view(&s, &reg).coins["btc"].payout_policy.as_deref(), Some("owner"));
        // A policy the box does not know is refused, naming the key, and nothing is written.
        let before = std::fs::read_to_string(&files.user).unwrap();
        edit.coins.get_mut("btc").unwrap().payout_policy = Some("everyone".into());
        let e = apply(&files, &edit, &reg).unwrap_err().to_string();
        assert!(e.contains("coins.btc.payout_policy"), "{e}");
        assert_eq!(std::fs::read_to_string(&files.user).unwrap(), before);
    }

    #[test]
    fn the_pool_is_none_by_default_set_checked_and_removed() {
        let (_d, files, reg) = setup("[coins.btc]\nnetwork = \"regtest\" # mine\n");
        let v = view(&files.load(&reg).unwrap(), &reg);
        assert_eq!(v.coins["btc"].upstream.as_deref(), Some(""), "none by default");
        assert!(v.coins["btc"].known_pools.is_empty(), "mainnet pools are not offered for regtest");
        let main = view(&setup("").1.load(&reg).unwrap(), &reg);
        assert_eq!(main.coins["btc"].network, "main");
        assert!(main.coins["btc"].known_pools.iter().any(|p| p.url.starts_with("stratum+tcp://")));
        let edit = |url: &str| {
            let mut e = ConfigEdit::default();
            e.coins.insert("btc".into(), CoinConfig { upstream: Some(url.into()), ..Default::default() });
            e
        };
        let s = apply(&files, &edit("stratum+tcp://public-pool.io:21496"), &reg).unwrap();
        assert_eq!(s.coins["btc"].upstream.as_ref().map(|u| u.authority()).as_deref(), Some("public-pool.io:21496"));
        let text = std::fs::read_to_string(&files.user).unwrap();
        assert!(
            text.contains("upstream = \"stratum+tcp://public-pool.io:21496\"") && text.contains("# mine"),
            "{text}"
        );
        assert_eq!(
            view(&files.load(&reg).unwrap(), &reg).coins["btc"].upstream.as_deref(),
            Some("stratum+tcp://public-pool.io:21496")
        );
        // A URL the stratum server cannot use is refused, naming the key and the form.
        let e = apply(&files, &edit("stratum+ssl://public-pool.io:4333"), &reg).unwrap_err().to_string();
        assert!(e.contains("coins.btc.upstream") && e.contains("stratum+tcp://host:port"), "{e}");
        assert_eq!(std::fs::read_to_string(&files.user).unwrap(), text, "nothing written");
        // An edit without the key keeps it; "" removes it.
        let mut keep = ConfigEdit::default();
        keep.coins.insert("btc".into(), CoinConfig { payout_policy: Some("owner".into()), ..Default::default() });
        assert!(apply(&files, &keep, &reg).unwrap().coins["btc"].upstream.is_some());
        let s = apply(&files, &edit(""), &reg).unwrap();
        assert_eq!(s.coins["btc"].upstream, None);
        assert!(!std::fs::read_to_string(&files.user).unwrap().contains("upstream"));
    }

    #[test]
    fn a_wrong_address_is_refused_and_the_file_is_untouched() {
        let before = "[coins.btc]\nnetwork = \"regtest\"\n";
        let (_d, files, reg) = setup(before);
        let mut edit = ConfigEdit::default();
        edit.coins.insert(
            "btc".into(),
            CoinConfig {
                enabled: Some(true),
                payout_address: Some("1BoatSLRHtKNngkdXEeobR76b53LETtpyT".into()),
                ..Default::default()
            },
        );
        let e = apply(&files, &edit, &reg).unwrap_err().to_string();
        assert!(e.contains("coins.btc.payout_address"), "{e}");
        assert_eq!(std::fs::read_to_string(&files.user).unwrap(), before);
    }

    #[test]
    fn bad_values_name_the_key() {
        let (_d, files, reg) = setup("");
        let mut edit = ConfigEdit::default();
        edit.coins.insert("doge".into(), CoinConfig::default());
        assert!(apply(&files, &edit, &reg).unwrap_err().to_string().contains("unknown coin"));
        let edit = ConfigEdit {
            notify: Some(NotifyConfig { webhook: Some("file:///etc/passwd".into()), ntfy: None }),
            ..Default::default()
        };
        assert!(apply(&files, &edit, &reg).unwrap_err().to_string().contains("notify.webhook"));
        let edit =
            ConfigEdit { updates: Some(UpdatesConfig { channel: Some("Bad Channel".into()) }), ..Default::default() };
        assert!(apply(&files, &edit, &reg).unwrap_err().to_string().contains("updates.channel"));
        let mut edit = ConfigEdit::default();
        edit.coins.insert("btc".into(), CoinConfig { min_difficulty: Some(-1.0), ..Default::default() });
        assert!(apply(&files, &edit, &reg).unwrap_err().to_string().contains("min_difficulty"));
        assert!(!files.user.exists(), "nothing written");
    }

    #[test]
    fn a_port_clash_between_coins_is_refused() {
        let (_d, files, reg) = setup("[coins.btc]\nnetwork = \"regtest\"\n");
        let mut edit = ConfigEdit::default();
        edit.coins.insert(
            "btc".into(),
            CoinConfig {
                enabled: Some(true),
                payout_address: Some(ADDR.into()),
                stratum_port: Some(80),
                ..Default::default()
            },
        );
        assert!(apply(&files, &edit, &reg).unwrap_err().to_string().contains("stratum_port"));
    }
}
