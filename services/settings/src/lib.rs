//! The MineBox settings: one file the user edits (on the box `/data/minebox/minebox.toml`,
//! written by the status page), over a read-only file of image defaults
//! (`/etc/minebox/defaults.toml`). Every service reads them through this crate.
//!
//! Both files are parsed on their own first, so a mistake is reported with the file it is
//! in and the key it is under; then the user's values are laid over the defaults and the
//! result is checked against the coin registry (addresses for the right network, ports
//! that do not collide, prune sizes the node accepts). A service refuses to start on a
//! wrong value rather than guess.
//!
//! - [`Settings`]: the merged, checked settings; [`CoinSettings`]: one coin's choices.
//! - [`SettingsError`]: file, key, and what would be valid.

use minebox_coin::{Coin, Network, Registry};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// The image defaults compiled in (the very file the image installs as
/// /etc/minebox/defaults.toml), used when no defaults file is given (development).
pub const EMBEDDED_DEFAULTS: &str = include_str!("../../../overlay/etc/minebox/defaults.toml");

#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum SettingsError {
    #[error("{file}: {key}: {message}")]
    Value { file: String, key: String, message: String },
    #[error("{file}: {message}")]
    Syntax { file: String, message: String },
    #[error("{file}: cannot read it: {message}")]
    Io { file: String, message: String },
}

// The files as written: every key optional, unknown keys refused.

#[derive(Debug, Default, Deserialize, Serialize, Clone)]
#[serde(default, deny_unknown_fields)]
struct FileSettings {
    paths: Option<FilePaths>,
    stratum: Option<FileStratum>,
    supervisor: Option<FileSupervisor>,
    snapshots: Option<FileSnapshots>,
    updates: Option<FileUpdates>,
    notify: Option<FileNotify>,
    status: Option<FileStatus>,
    coins: BTreeMap<String, FileCoin>,
}

#[derive(Debug, Default, Deserialize, Serialize, Clone)]
#[serde(default, deny_unknown_fields)]
struct FilePaths {
    nodes: Option<PathBuf>,
    secrets: Option<PathBuf>,
    state: Option<PathBuf>,
}

#[derive(Debug, Default, Deserialize, Serialize, Clone)]
#[serde(default, deny_unknown_fields)]
struct FileStratum {
    api: Option<String>,
    coinbase_tag: Option<String>,
}

#[derive(Debug, Default, Deserialize, Serialize, Clone)]
#[serde(default, deny_unknown_fields)]
struct FileSupervisor {
    api: Option<String>,
    backend: Option<String>,
    disk_reserve_mib: Option<u64>,
    stall_after_secs: Option<u64>,
}

#[derive(Debug, Default, Deserialize, Serialize, Clone)]
#[serde(default, deny_unknown_fields)]
struct FileSnapshots {
    enabled: Option<bool>,
    url: Option<String>,
    api: Option<String>,
}

#[derive(Debug, Default, Deserialize, Serialize, Clone)]
#[serde(default, deny_unknown_fields)]
struct FileUpdates {
    channel: Option<String>,
    manifest_url: Option<String>,
    keys: Option<PathBuf>,
    auto_install: Option<bool>,
    reboot_window: Option<String>,
    check_every_hours: Option<u64>,
    api: Option<String>,
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

#[derive(Debug, Default, Deserialize, Serialize, Clone)]
#[serde(default, deny_unknown_fields)]
struct FileNotify {
    webhook: Option<String>,
    ntfy: Option<String>,
}

#[derive(Debug, Default, Deserialize, Serialize, Clone)]
#[serde(default, deny_unknown_fields)]
struct FileStatus {
    listen: Option<String>,
    accounts: Option<PathBuf>,
    apply: Option<Vec<String>>,
}

#[derive(Debug, Default, Deserialize, Serialize, Clone)]
#[serde(default, deny_unknown_fields)]
struct FileCoin {
    enabled: Option<bool>,
    network: Option<String>,
    payout_address: Option<String>,
    payout_policy: Option<String>,
    stratum_port: Option<u16>,
    start_difficulty: Option<f64>,
    min_difficulty: Option<f64>,
    max_difficulty: Option<f64>,
    shares_per_minute: Option<f64>,
    prune_mib: Option<u64>,
    disk_budget_gib: Option<u64>,
    memory_budget_mib: Option<u64>,
    max_connections: Option<u32>,
    node_flavour: Option<String>,
    node_command: Option<Vec<String>>,
    node: Option<String>,
    rpc_host: Option<String>,
    rpc_cookie: Option<PathBuf>,
    rpc_port: Option<u16>,
    p2p_port: Option<u16>,
    zmq_port: Option<u16>,
}

// The merged, checked settings.

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Settings {
    pub paths: Paths,
    pub stratum: StratumSettings,
    pub supervisor: SupervisorSettings,
    pub snapshots: SnapshotSettings,
    pub updates: UpdateSettings,
    pub notify: NotifySettings,
    pub status: StatusSettings,
    pub coins: BTreeMap<String, CoinSettings>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Paths {
    pub nodes: PathBuf,
    pub secrets: PathBuf,
    pub state: PathBuf,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct StratumSettings {
    pub api: String,
    pub coinbase_tag: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Backend {
    Systemd,
    Process,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SupervisorSettings {
    pub api: String,
    pub backend: Backend,
    pub disk_reserve_mib: u64,
    pub stall_after_secs: u64,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SnapshotSettings {
    pub enabled: bool,
    pub url: String,
    /// The snapshot agent's local API (available snapshots, install, progress).
    pub api: String,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct UpdateSettings {
    pub channel: String,
    /// Where the channel manifest is; `{channel}` and `{compatible}` are substituted.
    pub manifest_url: String,
    /// Directory of pinned minisign public keys (`update-*.pub`) the manifest must verify against.
    pub keys: PathBuf,
    pub auto_install: bool,
    /// Local time `HH:MM-HH:MM` in which the trial reboot may happen, or `any`.
    pub reboot_window: String,
    pub check_every_hours: u64,
    pub api: String,
    pub health_timeout_secs: u64,
    /// Units that must be active after a trial boot.
    pub health_units: Vec<String>,
    /// The status page's base URL (its `/api/v1/health` or `/healthz` must answer).
    pub status_url: String,
    /// Where a USB stick is mounted: `*.raucb` found under it are offered for install.
    pub usb_dir: PathBuf,
    /// Largest bundle downloaded or uploaded.
    pub max_bundle_mib: u64,
    /// Downloads, the attempt in progress and the history.
    pub state_dir: PathBuf,
    /// The running image's version (`VERSION_ID` / `IMAGE_VERSION`).
    pub os_release: PathBuf,
    pub rauc: PathBuf,
    pub rauc_system_conf: PathBuf,
    pub tryboot: PathBuf,
    /// Starts the trial boot of the freshly installed slot.
    pub reboot_command: Vec<String>,
    /// A normal reboot, back into the slot that boots by default (after a failed trial).
    pub rollback_command: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct NotifySettings {
    pub webhook: String,
    pub ntfy: String,
}

/// Whose address a block found by a miner pays (`coins.<id>.payout_policy`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum PayoutPolicy {
    /// The default: a miner that authorizes with a valid address of the coin is paid to
    /// it; a bare worker name (a Bitaxe set up with just a name) mines to `payout_address`.
    #[default]
    Miner,
    /// Every block pays `payout_address`; what a miner sends is only its worker name.
    Owner,
}

impl PayoutPolicy {
    pub fn as_str(self) -> &'static str {
        match self {
            PayoutPolicy::Miner => "miner",
            PayoutPolicy::Owner => "owner",
        }
    }
}

/// Who runs a coin's node.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum NodeKind {
    /// The supervisor starts, watches and stops it on this box (the default).
    Managed,
    /// Someone else runs it (the user's own node, a VPS's node host, a test's regtest node):
    /// the supervisor only watches its health; the stratum server mines on it.
    External,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct StatusSettings {
    /// Where the status page listens: the LAN on the box, localhost in development.
    pub listen: String,
    /// The admin and viewer password hashes; the recovery console deletes this file to
    /// let the next visitor set a new admin password.
    pub accounts: PathBuf,
    /// What runs after the status page saved a settings change, so services read it
    /// (empty: nothing; the page then says a restart is needed).
    pub apply: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct CoinSettings {
    pub id: String,
    pub enabled: bool,
    pub network: String,
    /// The owner's address: paid for miners that send no address of their own, and for
    /// every miner under `payout_policy = "owner"`.
    pub payout_address: String,
    pub payout_policy: PayoutPolicy,
    pub stratum_port: u16,
    pub start_difficulty: f64,
    pub min_difficulty: f64,
    pub max_difficulty: f64,
    pub shares_per_minute: f64,
    /// Block files kept, MiB; 0 keeps every block (no pruning).
    pub prune_mib: u64,
    pub disk_budget_gib: u64,
    pub memory_budget_mib: u64,
    pub max_connections: u32,
    /// Node software; the descriptor's unless overridden (e.g. `bcoin` in development).
    pub node_flavour: String,
    /// Program and leading arguments that start the node.
    pub node_command: Vec<String>,
    /// `node = "managed"` (default) or `"external"`.
    pub node: NodeKind,
    /// Where the node's RPC listens: 127.0.0.1 for a managed node, any host for an external one.
    pub rpc_host: String,
    /// The RPC credentials file (`user:password`, as a cookie file): the supervisor writes it
    /// for a managed node; for an external node the user puts it there. Default
    /// `<paths.secrets>/<coin>-rpc.cookie`.
    pub rpc_cookie: PathBuf,
    /// Node ports: the descriptor's defaults unless overridden (two boxes' worth of nodes
    /// on one machine, tests).
    pub rpc_port: u16,
    pub p2p_port: u16,
    pub zmq_port: u16,
}

/// Where each value came from, for error messages.
struct Source<'a> {
    user: (&'a str, &'a FileSettings),
    defaults: (&'a str, &'a FileSettings),
}

impl Source<'_> {
    /// The file a coin key is set in (the user's if there, else the defaults').
    fn coin_file(&self, coin: &str, set_in_user: bool) -> String {
        if set_in_user || self.user.1.coins.contains_key(coin) { self.user.0 } else { self.defaults.0 }.to_string()
    }
}

fn parse_file(file: &str, text: &str) -> Result<FileSettings, SettingsError> {
    toml::from_str(text).map_err(|e| {
        let message = e.message().to_string();
        let line = e.span().and_then(|s| text.get(..s.start)).map(|t| t.matches('\n').count() + 1);
        SettingsError::Syntax {
            file: file.to_string(),
            message: match line {
                Some(l) => format!("line {l}: {message}"),
                None => message,
            },
        }
    })
}

fn read(path: &Path) -> Result<String, SettingsError> {
    std::fs::read_to_string(path)
        .map_err(|e| SettingsError::Io { file: path.display().to_string(), message: e.to_string() })
}

impl Settings {
    /// Loads the user's file (a missing one means "all defaults") over the defaults file
    /// (or the embedded defaults), and checks the result.
    pub fn load(user: Option<&Path>, defaults: Option<&Path>, registry: &Registry) -> Result<Settings, SettingsError> {
        let (defaults_name, defaults_text) = match defaults {
            Some(p) => (p.display().to_string(), read(p)?),
            None => ("(built-in defaults)".to_string(), EMBEDDED_DEFAULTS.to_string()),
        };
        let (user_name, user_text) = match user {
            Some(p) if p.exists() => (p.display().to_string(), read(p)?),
            Some(p) => (p.display().to_string(), String::new()),
            None => ("(no settings file)".to_string(), String::new()),
        };
        Self::from_texts(&user_name, &user_text, &defaults_name, &defaults_text, registry)
    }

    /// The same from file contents (tests, and the status page checking an edit).
    pub fn from_texts(
        user_name: &str,
        user: &str,
        defaults_name: &str,
        defaults: &str,
        registry: &Registry,
    ) -> Result<Settings, SettingsError> {
        let d = parse_file(defaults_name, defaults)?;
        let u = parse_file(user_name, user)?;
        let src = Source { user: (user_name, &u), defaults: (defaults_name, &d) };
        resolve(&src, registry)
    }

    /// The user's settings file as text over the built-in image defaults: parsed and checked
    /// exactly as a service does at start. Never panics, whatever the text (the entry point
    /// of the settings file's fuzz target).
    pub fn from_user_text(user: &str, registry: &Registry) -> Result<Settings, SettingsError> {
        Self::from_texts("minebox.toml", user, "(built-in defaults)", EMBEDDED_DEFAULTS, registry)
    }

    /// Enabled coins with their descriptor and network.
    pub fn enabled_coins<'a>(
        &'a self,
        registry: &'a Registry,
    ) -> impl Iterator<Item = (&'a CoinSettings, &'a Coin, &'a Network)> + 'a {
        self.coins.values().filter(|c| c.enabled).filter_map(move |c| {
            let coin = registry.get(&c.id)?;
            let net = coin.network(&c.network).ok()?;
            Some((c, coin, net))
        })
    }
}

/// The settings file's mode: every MineBox service reads it through the group (minebox);
/// nobody else may (payout addresses, webhook URLs).
pub const SETTINGS_MODE: u32 = 0o640;

/// Replaces the user's settings file atomically: a power cut leaves the old file or the
/// new one, never half of each (write a temporary file, fsync, rename, fsync the directory).
///
/// `mode` is set explicitly, whatever the writer's umask: the settings file is
/// [`SETTINGS_MODE`], secrets 0o600.
pub fn write_atomically(path: &Path, contents: &str, mode: u32) -> std::io::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::PermissionsExt;
    let dir = path.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new("."));
    let tmp = dir.join(format!(".{}.tmp", path.file_name().and_then(|n| n.to_str()).unwrap_or("settings")));
    {
        let mut f = std::fs::File::create(&tmp)?;
        // fchmod is not masked by the umask (0077 for the status page: a settings file only
        // its writer could read made the stratum server crash-loop, found on the twin).
        f.set_permissions(std::fs::Permissions::from_mode(mode))?;
        f.write_all(contents.as_bytes())?;
        f.sync_all()?;
    }
    std::fs::rename(&tmp, path)?;
    std::fs::File::open(dir)?.sync_all()
}

fn pick<T: Clone>(user: Option<&T>, defaults: Option<&T>) -> Option<T> {
    user.or(defaults).cloned()
}

fn resolve(src: &Source, registry: &Registry) -> Result<Settings, SettingsError> {
    let (u, d) = (src.user.1, src.defaults.1);
    let missing = |key: &str| SettingsError::Value {
        file: src.defaults.0.to_string(),
        key: key.to_string(),
        message: "missing (the image defaults must set it)".into(),
    };
    macro_rules! get {
        ($section:ident . $field:ident) => {
            pick(
                u.$section.as_ref().and_then(|s| s.$field.as_ref()),
                d.$section.as_ref().and_then(|s| s.$field.as_ref()),
            )
            .ok_or_else(|| missing(concat!(stringify!($section), ".", stringify!($field))))?
        };
    }
    let backend_name: String = get!(supervisor.backend);
    let backend = match backend_name.as_str() {
        "systemd" => Backend::Systemd,
        "process" => Backend::Process,
        other => {
            let file = if u.supervisor.as_ref().and_then(|s| s.backend.as_ref()).is_some() {
                src.user.0
            } else {
                src.defaults.0
            };
            return Err(SettingsError::Value {
                file: file.to_string(),
                key: "supervisor.backend".into(),
                message: format!("{other:?} is not a backend; use \"systemd\" (the box) or \"process\" (development)"),
            });
        }
    };
    let mut settings = Settings {
        paths: Paths { nodes: get!(paths.nodes), secrets: get!(paths.secrets), state: get!(paths.state) },
        stratum: StratumSettings { api: get!(stratum.api), coinbase_tag: get!(stratum.coinbase_tag) },
        supervisor: SupervisorSettings {
            api: get!(supervisor.api),
            backend,
            disk_reserve_mib: get!(supervisor.disk_reserve_mib),
            stall_after_secs: get!(supervisor.stall_after_secs),
        },
        snapshots: SnapshotSettings {
            enabled: get!(snapshots.enabled),
            url: get!(snapshots.url),
            api: get!(snapshots.api),
        },
        updates: UpdateSettings {
            channel: get!(updates.channel),
            manifest_url: get!(updates.manifest_url),
            keys: get!(updates.keys),
            auto_install: get!(updates.auto_install),
            reboot_window: get!(updates.reboot_window),
            check_every_hours: get!(updates.check_every_hours),
            api: get!(updates.api),
            health_timeout_secs: get!(updates.health_timeout_secs),
            health_units: get!(updates.health_units),
            status_url: get!(updates.status_url),
            usb_dir: get!(updates.usb_dir),
            max_bundle_mib: get!(updates.max_bundle_mib),
            state_dir: get!(updates.state_dir),
            os_release: get!(updates.os_release),
            rauc: get!(updates.rauc),
            rauc_system_conf: get!(updates.rauc_system_conf),
            tryboot: get!(updates.tryboot),
            reboot_command: get!(updates.reboot_command),
            rollback_command: get!(updates.rollback_command),
        },
        notify: NotifySettings { webhook: get!(notify.webhook), ntfy: get!(notify.ntfy) },
        status: StatusSettings {
            listen: get!(status.listen),
            accounts: get!(status.accounts),
            apply: get!(status.apply),
        },
        coins: BTreeMap::new(),
    };
    if settings.stratum.coinbase_tag.len() > 40 {
        return Err(SettingsError::Value {
            file: src.user.0.to_string(),
            key: "stratum.coinbase_tag".into(),
            message: "at most 40 bytes (the coinbase input script is limited to 100)".into(),
        });
    }

    let ids: std::collections::BTreeSet<&String> = d.coins.keys().chain(u.coins.keys()).collect();
    for id in ids {
        let (cu, cd) = (u.coins.get(id), d.coins.get(id));
        let file = src.coin_file(id, cu.is_some());
        let err = |key: &str, message: String| SettingsError::Value {
            file: file.clone(),
            key: format!("coins.{id}.{key}"),
            message,
        };
        let Some(coin) = registry.get(id) else {
            return Err(SettingsError::Value {
                file,
                key: format!("coins.{id}"),
                message: format!("unknown coin; known coins: {}", registry.ids().join(", ")),
            });
        };
        macro_rules! c {
            ($field:ident) => {
                pick(cu.and_then(|c| c.$field.as_ref()), cd.and_then(|c| c.$field.as_ref()))
            };
        }
        let enabled = c!(enabled).unwrap_or(false);
        let network_name = c!(network).unwrap_or_else(|| "main".into());
        let network = coin.network(&network_name).map_err(|e| err("network", e.to_string()))?;
        let payout_address = c!(payout_address).unwrap_or_default();
        if enabled {
            if payout_address.is_empty() {
                return Err(err(
                    "payout_address",
                    format!("required for an enabled coin: the {} address blocks pay", coin.name),
                ));
            }
            network.parse_address(&payout_address).map_err(|e| err("payout_address", e.to_string()))?;
        }
        let payout_policy = match c!(payout_policy).as_deref().unwrap_or("miner") {
            "miner" => PayoutPolicy::Miner,
            "owner" => PayoutPolicy::Owner,
            other => {
                return Err(err(
                    "payout_policy",
                    format!(
                        "{other:?} is not a payout policy; use \"miner\" (a miner's own address is paid, \
                         a bare worker name mines to payout_address) or \"owner\" (every block pays payout_address)"
                    ),
                ))
            }
        };
        let stratum_port = c!(stratum_port).unwrap_or(network.ports.stratum_port);
        if stratum_port < 1024 {
            return Err(err(
                "stratum_port",
                format!(
                    "{stratum_port} is a privileged port; use 1024-65535 (the default for {} {network_name} is {})",
                    coin.name, network.ports.stratum_port
                ),
            ));
        }
        let min_difficulty = c!(min_difficulty).unwrap_or(1.0);
        let max_difficulty = c!(max_difficulty).unwrap_or(1e15);
        let start_difficulty = c!(start_difficulty).unwrap_or(1024.0);
        for (key, value) in [
            ("min_difficulty", min_difficulty),
            ("max_difficulty", max_difficulty),
            ("start_difficulty", start_difficulty),
        ] {
            // NaN, infinities, 0, negatives and subnormals (5e-324) all fail this: a share
            // target computed from them is NaN or infinite, and every share is rejected.
            if !DIFFICULTY_RANGE.contains(&value) {
                return Err(err(
                    key,
                    format!(
                        "{value:e} is not a share difficulty; use a number from {:e} to {:e} \
                         (a Bitaxe starts near 1000; CPU miners on regtest use about 1e-8)",
                        DIFFICULTY_RANGE.start(),
                        DIFFICULTY_RANGE.end()
                    ),
                ));
            }
        }
        if min_difficulty > max_difficulty {
            return Err(err(
                "min_difficulty",
                format!("{min_difficulty:e} is above max_difficulty ({max_difficulty:e}); the minimum must be at most the maximum"),
            ));
        }
        if !(min_difficulty..=max_difficulty).contains(&start_difficulty) {
            return Err(err(
                "start_difficulty",
                format!(
                    "{start_difficulty:e} must lie between min_difficulty ({min_difficulty:e}) and max_difficulty ({max_difficulty:e})"
                ),
            ));
        }
        let shares_per_minute = c!(shares_per_minute).unwrap_or(10.0);
        if !SHARES_PER_MINUTE_RANGE.contains(&shares_per_minute) {
            return Err(err(
                "shares_per_minute",
                format!(
                    "{shares_per_minute:e} is out of range; use a number from {} to {}",
                    SHARES_PER_MINUTE_RANGE.start(),
                    SHARES_PER_MINUTE_RANGE.end()
                ),
            ));
        }
        let disk_budget_gib = c!(disk_budget_gib).unwrap_or(40);
        // Solo mining needs the UTXO set and the mempool, not old blocks: pruned by default,
        // keeping a quarter of the disk budget for block files (the rest is chainstate).
        // Saturating: any u64 in the file must give an answer, not an overflow.
        let prune_mib =
            c!(prune_mib).unwrap_or_else(|| (disk_budget_gib.saturating_mul(1024) / 4).max(coin.node.min_prune_mib));
        if prune_mib != 0 && prune_mib < coin.node.min_prune_mib {
            return Err(err(
                "prune_mib",
                format!(
                    "{prune_mib} is below the node's minimum of {} MiB; use at least {} or 0 to keep every block",
                    coin.node.min_prune_mib, coin.node.min_prune_mib
                ),
            ));
        }
        let memory_budget_mib = c!(memory_budget_mib).unwrap_or(2048);
        if memory_budget_mib < 512 {
            return Err(err("memory_budget_mib", "at least 512: a node needs that much to run".into()));
        }
        let node_flavour = c!(node_flavour).unwrap_or_else(|| coin.node.flavour.clone());
        let node_command = c!(node_command).unwrap_or_else(|| vec![coin.node.binary.clone()]);
        if node_command.is_empty() {
            return Err(err("node_command", "must name the node program".into()));
        }
        let node = match c!(node).as_deref().unwrap_or("managed") {
            "managed" => NodeKind::Managed,
            "external" => NodeKind::External,
            other => {
                return Err(err(
                    "node",
                    format!("{other:?} is not a node kind; use \"managed\" (MineBox runs it) or \"external\" (yours)"),
                ))
            }
        };
        // A node the image does not ship cannot be run by the box; say so here rather than
        // let the supervisor fail to start a program that is not there. A development
        // `node_command` names a program of the user's, which is fine.
        if enabled && node == NodeKind::Managed && !coin.node.in_image && c!(node_command).is_none() {
            return Err(err(
                "node",
                format!(
                    "the MineBox image has no {} node; {} is mined through a node of yours: set node = \"external\" with rpc_host, rpc_port and rpc_cookie",
                    coin.name, coin.name
                ),
            ));
        }
        let rpc_host = c!(rpc_host).unwrap_or_else(|| "127.0.0.1".into());
        let rpc_cookie = c!(rpc_cookie).unwrap_or_else(|| settings.paths.secrets.join(format!("{id}-rpc.cookie")));
        if node == NodeKind::Managed {
            if rpc_host != "127.0.0.1" {
                return Err(err(
                    "rpc_host",
                    "a node MineBox runs listens on 127.0.0.1 only; for a node elsewhere set node = \"external\""
                        .into(),
                ));
            }
            if c!(rpc_cookie).is_some() {
                return Err(err(
                    "rpc_cookie",
                    "MineBox makes the credentials of a node it runs; set it only with node = \"external\"".into(),
                ));
            }
        } else if rpc_host.is_empty() || rpc_host.contains(['/', ' ', '@']) {
            return Err(err("rpc_host", format!("{rpc_host:?} is not a host name or address")));
        }
        settings.coins.insert(
            id.clone(),
            CoinSettings {
                id: id.clone(),
                enabled,
                network: network_name,
                payout_address,
                payout_policy,
                stratum_port,
                start_difficulty,
                min_difficulty,
                max_difficulty,
                shares_per_minute,
                prune_mib,
                disk_budget_gib,
                memory_budget_mib,
                max_connections: c!(max_connections).unwrap_or(16),
                node_flavour,
                node_command,
                node,
                rpc_host,
                rpc_cookie,
                rpc_port: c!(rpc_port).unwrap_or(network.ports.rpc_port),
                p2p_port: c!(p2p_port).unwrap_or(network.ports.p2p_port),
                zmq_port: c!(zmq_port).unwrap_or(network.ports.zmq_port),
            },
        );
    }
    check_ports(&settings, src, registry)?;
    Ok(settings)
}

/// Share difficulties the settings accept (start, min and max). Below 2^-32 (about 2.3e-10)
/// the share target passes every hash, so nothing lower means anything; 1e-9 still leaves
/// CPU miners on regtest (1e-8 in scripts/run-local and the system tests) their setting.
/// 1e18 is four orders of magnitude above Bitcoin's network difficulty (about 1e14 in 2025).
pub const DIFFICULTY_RANGE: std::ops::RangeInclusive<f64> = 1e-9..=1e18;

/// Shares each miner is asked for per minute.
pub const SHARES_PER_MINUTE_RANGE: std::ops::RangeInclusive<f64> = 0.1..=600.0;

/// TCP ports the box always has in use, whatever the settings say.
const BOX_PORTS: [(u16, &str); 3] = [(22, "SSH"), (80, "the status page"), (443, "HTTPS")];

/// One listener on the box: its port, the settings key that chose it, in which file, and
/// what it is, for an error that names both users of a port.
struct PortUser {
    port: u16,
    file: String,
    key: String,
    what: String,
    /// Set in the user's file (else a default): the one to blame in a clash.
    in_user: bool,
}

fn is_loopback(host: &str) -> bool {
    host == "localhost"
        || host
            .trim_start_matches('[')
            .trim_end_matches(']')
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
}

/// Refuses two listeners on one port: the second could not start (a stratum server on the
/// node's RPC port, or on the status page's, crash-loops). Counted: the box's own ports,
/// every service's local API and the status page, and for each enabled coin its stratum
/// port and the ports of its node when that node listens on this box (a managed node; an
/// external one on localhost). Disabled coins run nothing.
fn check_ports(s: &Settings, src: &Source, registry: &Registry) -> Result<(), SettingsError> {
    let u = src.user.1;
    let service_file = |in_user: bool| if in_user { src.user.0 } else { src.defaults.0 }.to_string();
    let mut users: Vec<PortUser> = Vec::new();
    let services = [
        (
            "stratum.api",
            &s.stratum.api,
            "the stratum server's local API",
            u.stratum.as_ref().is_some_and(|x| x.api.is_some()),
        ),
        (
            "supervisor.api",
            &s.supervisor.api,
            "the supervisor's API",
            u.supervisor.as_ref().is_some_and(|x| x.api.is_some()),
        ),
        (
            "snapshots.api",
            &s.snapshots.api,
            "the snapshot agent's API",
            u.snapshots.as_ref().is_some_and(|x| x.api.is_some()),
        ),
        ("updates.api", &s.updates.api, "the updater's API", u.updates.as_ref().is_some_and(|x| x.api.is_some())),
        ("status.listen", &s.status.listen, "the status page", u.status.as_ref().is_some_and(|x| x.listen.is_some())),
    ];
    for (key, address, what, in_user) in services {
        // Port 0 (a free port picked at start, in tests) and a malformed address (refused by
        // the service itself, which parses it) cannot clash.
        let Some(port) = address.rsplit_once(':').and_then(|(_, p)| p.parse::<u16>().ok()).filter(|&p| p != 0) else {
            continue;
        };
        users.push(PortUser {
            port,
            file: service_file(in_user),
            key: key.into(),
            what: format!("{what} ({key} = {address:?})"),
            in_user,
        });
    }
    for c in s.coins.values().filter(|c| c.enabled) {
        let name = registry.get(&c.id).map(|coin| coin.name.as_str()).unwrap_or(&c.id);
        let file = src.coin_file(&c.id, false);
        let fc = u.coins.get(&c.id);
        let mut add = |field: &str, port: u16, what: String| {
            let key = format!("coins.{}.{field}", c.id);
            let in_user = fc.is_some_and(|f| match field {
                "stratum_port" => f.stratum_port.is_some(),
                "rpc_port" => f.rpc_port.is_some(),
                "p2p_port" => f.p2p_port.is_some(),
                _ => f.zmq_port.is_some(),
            });
            users.push(PortUser { port, file: file.clone(), what: format!("{what} ({key})"), key, in_user });
        };
        add("stratum_port", c.stratum_port, format!("the {name} stratum port"));
        let local = c.node == NodeKind::Managed || is_loopback(&c.rpc_host);
        if local {
            add("rpc_port", c.rpc_port, format!("the {name} node's RPC port"));
            // Only a node MineBox runs is known to listen for peers on p2p_port.
            if c.node == NodeKind::Managed {
                add("p2p_port", c.p2p_port, format!("the {name} node's P2P port"));
            }
            // bcoin (development) publishes no ZMQ.
            if c.node_flavour != "bcoin" {
                add("zmq_port", c.zmq_port, format!("the {name} node's ZMQ port"));
            }
        }
    }
    let clash = |blamed: &PortUser, message: String| SettingsError::Value {
        file: blamed.file.clone(),
        key: blamed.key.clone(),
        message,
    };
    for (i, user) in users.iter().enumerate() {
        if let Some((_, what)) = BOX_PORTS.iter().find(|(p, _)| *p == user.port) {
            // The status page itself listens on 80 on the box.
            if !(user.port == 80 && user.key == "status.listen") {
                return Err(clash(
                    user,
                    format!("{} is used by the box itself ({what}); choose another port", user.port),
                ));
            }
        }
        let Some(first) = users[..i].iter().find(|o| o.port == user.port) else { continue };
        // Name the key the user chose (a default is rarely the mistake), and the other user.
        let (blamed, other) = if first.in_user && !user.in_user { (first, user) } else { (user, first) };
        if blamed.key.ends_with(".stratum_port") && other.key.ends_with(".stratum_port") {
            let coin = other.key.trim_start_matches("coins.").trim_end_matches(".stratum_port");
            return Err(clash(
                blamed,
                format!("{} is already the stratum port of {coin}; give each coin its own port", user.port),
            ));
        }
        return Err(clash(
            blamed,
            format!(
                "{} is also {}; two listeners cannot share a port (one of them would not start): choose another port",
                user.port, other.what
            ),
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn load(user: &str) -> Result<Settings, SettingsError> {
        Settings::from_texts("minebox.toml", user, "defaults.toml", EMBEDDED_DEFAULTS, &Registry::embedded())
    }

    #[test]
    fn no_user_file_means_the_image_defaults_and_no_coin() {
        let s = load("").unwrap();
        assert_eq!(s.supervisor.backend, Backend::Systemd);
        assert_eq!(s.paths.nodes, PathBuf::from("/data/nodes"));
        assert!(s.coins.is_empty());
    }

    #[test]
    fn user_values_override_defaults_and_coin_defaults_come_from_the_descriptor() {
        let s = load(
            r#"
[supervisor]
backend = "process"
[coins.btc]
enabled = true
network = "regtest"
payout_address = "bcrt1qw508d6qejxtdg4y5r3zarvary0c5xw7kygt080"
"#,
        )
        .unwrap();
        assert_eq!(s.supervisor.backend, Backend::Process);
        assert_eq!(s.supervisor.disk_reserve_mib, 2048, "untouched default kept");
        let btc = &s.coins["btc"];
        assert_eq!(btc.stratum_port, 3363);
        assert_eq!(btc.prune_mib, 10240, "pruned by default: a quarter of 40 GiB");
        assert_eq!(btc.node_flavour, "bitcoin-core");
        assert_eq!(s.enabled_coins(&Registry::embedded()).count(), 1);
    }

    #[test]
    fn an_address_for_the_wrong_network_names_file_key_and_fix() {
        let e = load("[coins.btc]\nenabled = true\nnetwork = \"regtest\"\npayout_address = \"bc1qw508d6qejxtdg4y5r3zarvary0c5xw7kv8f3t4\"\n").unwrap_err();
        let SettingsError::Value { file, key, message } = &e else { panic!("{e}") };
        assert_eq!(file, "minebox.toml");
        assert_eq!(key, "coins.btc.payout_address");
        assert!(message.contains("Bitcoin mainnet address") && message.contains("bcrt1"), "{message}");
    }

    #[test]
    fn payout_policy_defaults_to_the_miner_and_takes_owner_and_nothing_else() {
        let base = "[coins.btc]\nenabled = true\nnetwork = \"regtest\"\npayout_address = \"bcrt1qw508d6qejxtdg4y5r3zarvary0c5xw7kygt080\"\n";
        assert_eq!(load(base).unwrap().coins["btc"].payout_policy, PayoutPolicy::Miner);
        let owner = load(&format!("{base}payout_policy = \"owner\"\n")).unwrap();
        assert_eq!(owner.coins["btc"].payout_policy, PayoutPolicy::Owner);
        let e = load(&format!("{base}payout_policy = \"pool\"\n")).unwrap_err();
        let SettingsError::Value { key, message, .. } = &e else { panic!("{e}") };
        assert_eq!(key, "coins.btc.payout_policy");
        assert!(message.contains("\"miner\"") && message.contains("\"owner\""), "{message}");
    }

    #[test]
    fn a_port_used_by_another_coin_is_refused() {
        let e = load(
            r#"
[coins.btc]
enabled = true
payout_address = "bc1qw508d6qejxtdg4y5r3zarvary0c5xw7kv8f3t4"
stratum_port = 4000
[coins.bch]
enabled = true
payout_address = "bitcoincash:qpm2qsznhks23z7629mms6s4cwef74vcwvy22gdx6a"
stratum_port = 4000
"#,
        )
        .unwrap_err();
        assert_eq!(e.to_string(), "minebox.toml: coins.btc.stratum_port: 4000 is already the stratum port of bch; give each coin its own port");
    }

    #[test]
    fn a_prune_size_below_the_node_minimum_is_refused() {
        let e = load("[coins.btc]\nprune_mib = 100\n").unwrap_err();
        assert!(e.to_string().contains("coins.btc.prune_mib: 100 is below the node's minimum of 550 MiB"), "{e}");
        assert!(load("[coins.btc]\nprune_mib = 0\n").is_ok(), "0 keeps every block");
    }

    #[test]
    fn unknown_keys_coins_and_networks_are_errors_not_ignored() {
        let e = load("[supervisor]\nbackendd = \"process\"\n").unwrap_err();
        assert!(
            matches!(&e, SettingsError::Syntax { file, message } if file == "minebox.toml" && message.contains("backendd") && message.contains("expected one of")),
            "{e}"
        );
        let e = load("[coins.doge]\nenabled = true\n").unwrap_err();
        assert!(e.to_string().contains("coins.doge: unknown coin; known coins: bch, bsv, btc, xec"), "{e}");
        let e = load("[coins.bch]\nnetwork = \"signet\"\n").unwrap_err();
        assert!(e.to_string().contains("coins.bch.network: Bitcoin Cash has no network \"signet\""), "{e}");
        let e = load("[supervisor]\nbackend = \"docker\"\n").unwrap_err();
        assert!(e.to_string().contains("supervisor.backend"), "{e}");
    }

    #[test]
    fn an_enabled_coin_needs_an_address() {
        let e = load("[coins.bch]\nenabled = true\n").unwrap_err();
        assert!(e.to_string().contains("coins.bch.payout_address: required"), "{e}");
    }

    #[test]
    fn an_external_node_has_its_host_and_credentials_file() {
        let s = load(
            r#"
[coins.btc]
enabled = true
network = "regtest"
payout_address = "bcrt1qw508d6qejxtdg4y5r3zarvary0c5xw7kygt080"
node = "external"
rpc_host = "10.0.2.2"
rpc_port = 18443
"#,
        )
        .unwrap();
        let btc = &s.coins["btc"];
        assert_eq!(btc.node, NodeKind::External);
        assert_eq!(btc.rpc_host, "10.0.2.2");
        assert_eq!(btc.rpc_cookie, PathBuf::from("/data/secrets/rpc/btc-rpc.cookie"));
        let s = load("[coins.btc]\nnode = \"external\"\nrpc_cookie = \"/data/minebox/node.cookie\"\n").unwrap();
        assert_eq!(s.coins["btc"].rpc_cookie, PathBuf::from("/data/minebox/node.cookie"));
        assert_eq!(load("").unwrap().coins.get("btc").map(|c| c.node), None);
        assert_eq!(load("[coins.btc]\n").unwrap().coins["btc"].node, NodeKind::Managed);
    }

    #[test]
    fn a_managed_node_stays_on_localhost_with_its_own_credentials() {
        let e = load("[coins.btc]\nrpc_host = \"192.168.1.5\"\n").unwrap_err();
        assert!(e.to_string().contains("coins.btc.rpc_host: a node MineBox runs listens on 127.0.0.1 only"), "{e}");
        let e = load("[coins.btc]\nrpc_cookie = \"/tmp/x\"\n").unwrap_err();
        assert!(e.to_string().contains("coins.btc.rpc_cookie"), "{e}");
        let e = load("[coins.btc]\nnode = \"docker\"\n").unwrap_err();
        assert!(e.to_string().contains("coins.btc.node: \"docker\" is not a node kind"), "{e}");
        let e = load("[coins.btc]\nnode = \"external\"\nrpc_host = \"http://x/\"\n").unwrap_err();
        assert!(e.to_string().contains("is not a host name"), "{e}");
    }

    #[test]
    fn files_on_disk_and_atomic_writes() {
        let dir = tempfile::tempdir().unwrap();
        let user = dir.path().join("minebox.toml");
        write_atomically(&user, "[updates]\nchannel = \"beta\"\n", SETTINGS_MODE).unwrap();
        use std::os::unix::fs::PermissionsExt;
        assert_eq!(std::fs::metadata(&user).unwrap().permissions().mode() & 0o777, SETTINGS_MODE);
        let s = Settings::load(Some(&user), None, &Registry::embedded()).unwrap();
        assert_eq!(s.updates.channel, "beta");
        // A missing user file is not an error: the box starts with the defaults.
        let s = Settings::load(Some(&dir.path().join("absent.toml")), None, &Registry::embedded()).unwrap();
        assert_eq!(s.updates.channel, "stable");
        let e = Settings::load(Some(&user), Some(&dir.path().join("nope.toml")), &Registry::embedded()).unwrap_err();
        assert!(matches!(e, SettingsError::Io { .. }));
        assert!(!dir.path().join(".minebox.toml.tmp").exists());
    }
    const REGTEST_BTC: &str =
        "[coins.btc]\nenabled = true\nnetwork = \"regtest\"\npayout_address = \"bcrt1qw508d6qejxtdg4y5r3zarvary0c5xw7kygt080\"\n";

    fn refused(user: &str) -> (String, String, String) {
        match load(user) {
            Err(SettingsError::Value { file, key, message }) => (file, key, message),
            other => panic!("expected a refused value for\n{user}\ngot {other:?}"),
        }
    }

    #[test]
    fn a_stratum_port_on_a_port_the_node_uses_is_refused_naming_both() {
        // Bitcoin regtest's node: RPC 18443, P2P 18444, ZMQ 28362.
        for (port, other) in [
            (18443, "the Bitcoin node's RPC port (coins.btc.rpc_port)"),
            (18444, "the Bitcoin node's P2P port (coins.btc.p2p_port)"),
            (28362, "the Bitcoin node's ZMQ port (coins.btc.zmq_port)"),
        ] {
            let (file, key, message) = refused(&format!("{REGTEST_BTC}stratum_port = {port}\n"));
            assert_eq!((file.as_str(), key.as_str()), ("minebox.toml", "coins.btc.stratum_port"));
            assert!(message.starts_with(&format!("{port} is also {other}")), "{message}");
        }
    }

    #[test]
    fn a_stratum_port_on_a_service_of_the_box_is_refused_naming_both() {
        for (port, other) in [
            (3390, "the stratum server's local API (stratum.api = \"127.0.0.1:3390\")"),
            (3391, "the supervisor's API (supervisor.api = \"127.0.0.1:3391\")"),
            (3392, "the snapshot agent's API (snapshots.api = \"127.0.0.1:3392\")"),
            (3393, "the updater's API (updates.api = \"127.0.0.1:3393\")"),
        ] {
            let (_, key, message) = refused(&format!("{REGTEST_BTC}stratum_port = {port}\n"));
            assert_eq!(key, "coins.btc.stratum_port");
            assert!(message.starts_with(&format!("{port} is also {other}")), "{message}");
        }
        // The status page where it listens (8080 in scripts/run-local), and the box's own ports.
        let e =
            load(&format!("[status]\nlisten = \"127.0.0.1:8080\"\n{REGTEST_BTC}stratum_port = 8080\n")).unwrap_err();
        assert_eq!(
            e.to_string(),
            "minebox.toml: coins.btc.stratum_port: 8080 is also the status page (status.listen = \"127.0.0.1:8080\"); \
             two listeners cannot share a port (one of them would not start): choose another port"
        );
        let (_, key, message) = refused(&format!("{REGTEST_BTC}rpc_port = 22\n"));
        assert_eq!(
            (key.as_str(), message.as_str()),
            ("coins.btc.rpc_port", "22 is used by the box itself (SSH); choose another port")
        );
        // Moving a service onto another's port is refused too, blaming the one the user moved.
        let (_, key, message) = refused("[supervisor]\napi = \"127.0.0.1:3390\"\n");
        assert_eq!(key, "supervisor.api");
        assert!(message.starts_with("3390 is also the stratum server's local API"), "{message}");
        let (_, key, message) = refused(&format!("{REGTEST_BTC}[stratum]\napi = \"127.0.0.1:18443\"\n"));
        assert_eq!(key, "stratum.api");
        assert!(message.starts_with("18443 is also the Bitcoin node's RPC port"), "{message}");
    }

    #[test]
    fn a_coin_whose_node_is_not_in_the_image_is_mined_through_an_external_node_only() {
        let xec =
            "[coins.xec]\nenabled = true\npayout_address = \"ecash:qpm2qsznhks23z7629mms6s4cwef74vcwva87rkuu2\"\n";
        let e = load(xec).unwrap_err().to_string();
        assert!(e.contains("coins.xec.node"), "{e}");
        assert!(e.contains("the MineBox image has no eCash node"), "{e}");
        assert!(e.contains("node = \"external\""), "{e}");
        let external = format!(
            "{xec}node = \"external\"\nrpc_host = \"192.168.1.20\"\nrpc_cookie = \"/data/minebox/xec.cookie\"\n"
        );
        assert!(load(&external).is_ok());
        // Bitcoin Cash Node is in the image, under its own program name.
        let bch = load("[coins.bch]\nenabled = true\npayout_address = \"bitcoincash:qpm2qsznhks23z7629mms6s4cwef74vcwvy22gdx6a\"\n").unwrap();
        assert_eq!(bch.coins["bch"].node_command, vec!["bitcoincashd".to_string()]);
    }

    #[test]
    fn nodes_of_two_coins_cannot_share_a_port_and_other_ports_are_fine() {
        let both = "[coins.btc]\nenabled = true\npayout_address = \"bc1qw508d6qejxtdg4y5r3zarvary0c5xw7kv8f3t4\"\n\
                    [coins.bch]\nenabled = true\npayout_address = \"bitcoincash:qpm2qsznhks23z7629mms6s4cwef74vcwvy22gdx6a\"\n";
        // Each coin's mainnet node has its own P2P port by default, so two run side by side.
        let s = load(both).unwrap();
        assert_eq!((s.coins["btc"].p2p_port, s.coins["bch"].p2p_port), (8333, 8433));
        // Put on one port, they are refused.
        let (_, key, message) = refused(&format!("{both}p2p_port = 8333\n"));
        // The one the user moved is blamed.
        assert_eq!(key, "coins.bch.p2p_port");
        assert!(message.starts_with("8333 is also the Bitcoin node's P2P port (coins.btc.p2p_port)"), "{message}");
        // A disabled coin runs nothing; a node on another host uses no port of the box.
        assert!(load(&format!("{REGTEST_BTC}[coins.bch]\nnetwork = \"regtest\"\nstratum_port = 3363\n")).is_ok());
        let external = format!(
            "{REGTEST_BTC}node = \"external\"\nrpc_host = \"10.0.2.2\"\nrpc_port = 4000\nstratum_port = 4000\n"
        );
        assert!(load(&external).is_ok());
        // The same node on this machine does.
        let (_, key, message) = refused(&external.replace("10.0.2.2", "127.0.0.1"));
        assert_eq!(key, "coins.btc.rpc_port");
        assert!(message.starts_with("4000 is also the Bitcoin stratum port (coins.btc.stratum_port)"), "{message}");
    }

    #[test]
    fn difficulties_must_be_finite_positive_normal_and_in_order() {
        for bad in ["5e-324", "nan", "inf", "-inf", "0.0", "-1.0", "1e-10", "1e19"] {
            for key in ["min_difficulty", "max_difficulty", "start_difficulty"] {
                let (_, k, message) = refused(&format!("{REGTEST_BTC}{key} = {bad}\n"));
                assert_eq!(k, format!("coins.btc.{key}"), "{key} = {bad}");
                assert!(message.contains("use a number from 1e-9 to 1e18"), "{key} = {bad}: {message}");
            }
        }
        let (_, key, message) = refused(&format!("{REGTEST_BTC}min_difficulty = 100.0\nmax_difficulty = 10.0\n"));
        assert_eq!(key, "coins.btc.min_difficulty");
        assert!(message.contains("above max_difficulty"), "{message}");
        let (_, key, _) = refused(&format!("{REGTEST_BTC}shares_per_minute = nan\n"));
        assert_eq!(key, "coins.btc.shares_per_minute");
        // CPU miners on regtest (scripts/run-local, the system tests) keep their settings.
        let s = load(&format!("{REGTEST_BTC}start_difficulty = 0.0001\nmin_difficulty = 0.00000001\n")).unwrap();
        assert_eq!(s.coins["btc"].min_difficulty, 1e-8);
    }

    #[test]
    fn any_text_gives_settings_or_an_error_never_a_panic() {
        let registry = Registry::embedded();
        for text in [
            "[coins.btc]\ndisk_budget_gib = 9223372036854775807\n",
            "[coins.btc]\nstratum_port = 65535\nrpc_port = 65535\n",
            "[coins.btc]\nmax_difficulty = 1e308\n",
            "é = \"\u{0}\"\n[[",
            "",
        ] {
            let _ = Settings::from_user_text(text, &registry);
        }
        let s = Settings::from_user_text("[coins.btc]\ndisk_budget_gib = 9223372036854775807\n", &registry).unwrap();
        assert_eq!(s.coins["btc"].prune_mib, u64::MAX / 4);
    }
}
