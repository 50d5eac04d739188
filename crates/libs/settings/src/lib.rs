//! The MineBox settings: one file the user edits (on the box `/data/minebox/minebox.toml`,
//! written by the status page), over a read-only file of image defaults
//! (`/etc/minebox/defaults.toml`, the one place every default is written). Every service
//! reads them through this crate, and only through it: what a service gets is typed and
//! checked, so no service parses or checks a value again.
//!
//! Both files are parsed on their own first, so a mistake is reported with the file it is
//! in and the key it is under; then the user's values are laid over the defaults and the
//! result is checked against the coin registry (addresses for the right network, ports
//! that do not collide, prune sizes the node accepts). A service refuses to start on a
//! wrong value rather than guess.
//!
//! One module per section; a new key is a field in its section's `File` (as written) and
//! its resolved struct, a line in `resolve`, and its default in defaults.toml:
//! - [`paths`]: data directories; [`stratum`], [`supervisor`], [`snapshots`], [`updates`],
//!   [`notify`], [`status`]: one service each; [`pool`]: a coin's pool mode (`[coins.<id>.pool]`);
//!   [`payees`]: the users a pool port pays (written by the status page, beside the settings file); [`cloud`]: MineBox Cloud, for the page and the agent; [`coins`]: one table per coin, over
//!   `[coin_defaults]` and the coin's descriptor.
//! - ports (private): no two listeners on one port, across all sections.
//! - [`Settings`]: the merged, checked settings; [`SettingsError`]: file, key, and what
//!   would be valid; [`SETTINGS_MODE`]: the file's mode when the page saves it (with
//!   `minebox_platform::fs::AtomicWrite`, the one durable write every service uses).

pub mod cloud;
pub mod coins;
mod error;
mod file;
pub mod notify;
pub mod paths;
pub mod payees;
pub mod pool;
mod ports;
pub mod snapshots;
pub mod status;
pub mod stratum;
pub mod supervisor;
pub mod updates;

pub use cloud::CloudSettings;
pub use coins::{CoinSettings, NodeKind, PayoutPolicy, Upstream, DIFFICULTY_RANGE, SHARES_PER_MINUTE_RANGE};
pub use error::SettingsError;
pub use minebox_coin::NodeFlavour;
pub use notify::NotifySettings;
pub use paths::Paths;
pub use payees::{Payee, Payees, PayeesError};
pub use pool::{PoolFee, PoolSettings};
pub use snapshots::{SnapshotSettings, SnapshotSource};
pub use status::StatusSettings;
pub use stratum::StratumSettings;
pub use supervisor::{Backend, SupervisorSettings};
pub use updates::{RebootWindow, UpdateSettings};

/// The settings file's mode: every MineBox service reads it through the group (minebox);
/// nobody else may (payout addresses, webhook URLs). The status page writes it so, whatever
/// its umask.
pub const SETTINGS_MODE: u32 = 0o640;

use file::Layer;
use minebox_coin::{Coin, Network, Registry};
use serde::Serialize;
use std::collections::BTreeMap;
use std::path::Path;

/// The image defaults compiled in (the very file the image installs as
/// /etc/minebox/defaults.toml), used when no defaults file is given (development).
pub const EMBEDDED_DEFAULTS: &str = include_str!("../../../../buildroot-external/overlay/etc/minebox/defaults.toml");

/// The merged, checked settings.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Settings {
    pub paths: Paths,
    pub stratum: StratumSettings,
    pub supervisor: SupervisorSettings,
    pub snapshots: SnapshotSettings,
    pub updates: UpdateSettings,
    pub notify: NotifySettings,
    pub status: StatusSettings,
    pub cloud: CloudSettings,
    pub coins: BTreeMap<String, CoinSettings>,
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
        let d = file::parse(defaults_name, defaults)?;
        let u = file::parse(user_name, user)?;
        resolve((user_name, &u), (defaults_name, &d), registry)
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
        self.coins.values().filter(|c| c.enabled).filter_map(move |c| Some((c, registry.get(&c.id)?, &c.network)))
    }
}

fn resolve(
    u: (&str, &file::FileSettings),
    d: (&str, &file::FileSettings),
    registry: &Registry,
) -> Result<Settings, SettingsError> {
    // Each section from the user's table over the defaults' table.
    macro_rules! layer {
        ($section:ident) => {
            &Layer {
                prefix: stringify!($section).into(),
                user: u.1.$section.as_ref(),
                defaults: d.1.$section.as_ref(),
                user_file: u.0,
                defaults_file: d.0,
            }
        };
    }
    let paths = paths::resolve(layer!(paths))?;
    let settings = Settings {
        stratum: stratum::resolve(layer!(stratum))?,
        supervisor: supervisor::resolve(layer!(supervisor))?,
        snapshots: snapshots::resolve(layer!(snapshots))?,
        updates: updates::resolve(layer!(updates))?,
        notify: notify::resolve(layer!(notify))?,
        status: status::resolve(layer!(status))?,
        cloud: cloud::resolve(layer!(cloud))?,
        coins: coins::resolve(u, d, &paths.secrets, registry)?,
        paths,
    };
    ports::check(&settings, u, d.0, registry)?;
    Ok(settings)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::PathBuf;

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
        assert_eq!(btc.node_flavour, NodeFlavour::BitcoinCore);
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
    fn pool_mode_is_off_by_default_and_its_table_is_checked_key_by_key() {
        let base = "[coins.btc]\nenabled = true\nnetwork = \"regtest\"\npayout_address = \"bcrt1qw508d6qejxtdg4y5r3zarvary0c5xw7kygt080\"\n";
        assert_eq!(load(base).unwrap().coins["btc"].pool, None);
        let on = load(&format!("{base}[coins.btc.pool]\nport = 3334\n")).unwrap();
        let pool = on.coins["btc"].pool.clone().unwrap();
        assert_eq!((pool.port, pool.fee.is_none(), pool.window_factor, pool.max_outputs), (3334, true, 2.0, 39));
        assert_eq!(pool.min_difficulty, on.coins["btc"].min_difficulty, "the solo port's bounds by default");
        let fee = load(&format!(
            "{base}[coins.btc.pool]\nport = 3334\nfee_bps = 100\nfee_address = \"bcrt1qw508d6qejxtdg4y5r3zarvary0c5xw7kygt080\"\n"
        ))
        .unwrap();
        assert_eq!(fee.coins["btc"].pool.as_ref().unwrap().fee.as_ref().unwrap().bps, 100);
        for (table, key, says) in [
            ("fee_bps = 5", "coins.btc.pool.port", "needs a port"),
            ("port = 3363", "coins.btc.pool.port", "stratum port"),
            ("port = 3334\nfee_bps = 1001", "coins.btc.pool.fee_bps", "10 %"),
            ("port = 3334\nfee_bps = 100", "coins.btc.pool.fee_address", "needs the address"),
            (
                "port = 3334\nfee_bps = 100\nfee_address = \"bc1qw508d6qejxtdg4y5r3zarvary0c5xw7kv8f3t4\"",
                "coins.btc.pool.fee_address",
                "bcrt1",
            ),
            ("port = 3334\nwindow_factor = 0", "coins.btc.pool.window_factor", "out of range"),
            ("port = 3334\nmax_outputs = 0", "coins.btc.pool.max_outputs", "out of range"),
            ("port = 3334\nmin_difficulty = 10.0\nmax_difficulty = 1.0", "coins.btc.pool.start_difficulty", "at most"),
        ] {
            let e = load(&format!("{base}[coins.btc.pool]\n{table}\n")).unwrap_err();
            let SettingsError::Value { key: k, message, .. } = &e else { panic!("{e}") };
            assert_eq!(k, key, "{table}: {e}");
            assert!(message.contains(says), "{table}: {message}");
        }
    }

    #[test]
    fn upstream_limits_default_to_8_connections_and_60_s_and_refuse_values_out_of_range() {
        let base = "[coins.btc]\nenabled = true\nnetwork = \"regtest\"\npayout_address = \"bcrt1qw508d6qejxtdg4y5r3zarvary0c5xw7kygt080\"\n";
        let d = &load(base).unwrap().coins["btc"];
        assert_eq!((d.upstream_max_connections, d.upstream_grace), (8, std::time::Duration::from_secs(60)));
        let set = load(&format!("{base}upstream_max_connections = 1\nupstream_grace_secs = 0\n")).unwrap();
        let c = &set.coins["btc"];
        assert_eq!((c.upstream_max_connections, c.upstream_grace), (1, std::time::Duration::ZERO));
        for (line, key, says) in [
            (
                "upstream_max_connections = 0",
                "coins.btc.upstream_max_connections",
                "1 (only the owner's connection) to 64",
            ),
            (
                "upstream_max_connections = 65",
                "coins.btc.upstream_max_connections",
                "1 (only the owner's connection) to 64",
            ),
            ("upstream_grace_secs = 3601", "coins.btc.upstream_grace_secs", "0 (close at once) to 3600 seconds"),
        ] {
            let e = load(&format!("{base}{line}\n")).unwrap_err();
            let SettingsError::Value { key: k, message, .. } = &e else { panic!("{e}") };
            assert_eq!(k, key);
            assert!(message.contains(says), "{line}: {message}");
        }
        // A negative number is not a count: refused by the file's types, naming the line.
        let e = load(&format!("{base}upstream_grace_secs = -1\n")).unwrap_err().to_string();
        assert!(e.contains("line 5") && e.contains("-1"), "{e}");
    }

    #[test]
    fn upstream_is_none_by_default_and_only_a_stratum_tcp_url_with_a_port() {
        let base = "[coins.btc]\nenabled = true\nnetwork = \"regtest\"\npayout_address = \"bcrt1qw508d6qejxtdg4y5r3zarvary0c5xw7kygt080\"\n";
        assert_eq!(load(base).unwrap().coins["btc"].upstream, None);
        let set = load(&format!("{base}upstream = \"stratum+tcp://solo.ckpool.org:3333\"\n")).unwrap();
        let up = set.coins["btc"].upstream.clone().unwrap();
        assert_eq!((up.host.as_str(), up.port), ("solo.ckpool.org", 3333));
        assert_eq!(up.to_string(), "stratum+tcp://solo.ckpool.org:3333");
        let v6 = load(&format!("{base}upstream = \"stratum+tcp://[::1]:3333\"\n")).unwrap();
        assert_eq!(v6.coins["btc"].upstream.clone().unwrap().authority(), "[::1]:3333");
        for (bad, says) in [
            ("stratum+ssl://pool.example:4333", "not supported"),
            ("solo.ckpool.org:3333", "no scheme"),
            ("stratum+tcp://solo.ckpool.org", "no port"),
            ("stratum+tcp://solo.ckpool.org:99999", "not a port"),
            ("stratum+tcp://user@pool:3333", "not a host"),
        ] {
            let e = load(&format!("{base}upstream = \"{bad}\"\n")).unwrap_err();
            let SettingsError::Value { key, message, .. } = &e else { panic!("{e}") };
            assert_eq!(key, "coins.btc.upstream");
            assert!(message.contains(says) && message.contains("stratum+tcp://host:port"), "{bad}: {message}");
        }
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
    fn a_disk_reserve_too_small_for_a_clean_stop_is_refused() {
        let e = load("[supervisor]\ndisk_reserve_mib = 10\n").unwrap_err();
        assert!(e.to_string().contains("supervisor.disk_reserve_mib: 10 MiB is too little"), "{e}");
        assert_eq!(load("[supervisor]\ndisk_reserve_mib = 64\n").unwrap().supervisor.disk_reserve_mib, 64);
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
    fn files_on_disk() {
        let dir = tempfile::tempdir().unwrap();
        let user = dir.path().join("minebox.toml");
        std::fs::write(&user, "[updates]\nchannel = \"beta\"\n").unwrap();
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
    fn values_come_out_typed_so_no_service_parses_them_again() {
        let s = load(&format!("{REGTEST_BTC}[updates]\nreboot_window = \"any\"\n")).unwrap();
        assert_eq!(s.stratum.api, "127.0.0.1:3390".parse::<std::net::SocketAddr>().unwrap());
        assert_eq!(s.status.listen.port(), 80);
        assert_eq!(s.updates.reboot_window, RebootWindow::Any);
        assert_eq!(s.updates.check_every, std::time::Duration::from_secs(6 * 3600));
        assert_eq!(
            s.updates.manifest_url_for("minebox-rpi5"),
            "https://updates.minebox.example/v1/stable/minebox-rpi5.json"
        );
        let btc = &s.coins["btc"];
        assert_eq!(btc.network.name, "regtest");
        assert_eq!(
            btc.payout.as_ref().map(|p| p.to_string()),
            Some("bcrt1qw508d6qejxtdg4y5r3zarvary0c5xw7kygt080".into())
        );
        assert_eq!(btc.zmq_hashblock().as_deref(), Some("tcp://127.0.0.1:28362"));
        let bcoin = load(&format!("{REGTEST_BTC}node_flavour = \"bcoin\"\nnode_command = [\"node\"]\n")).unwrap();
        assert_eq!(bcoin.coins["btc"].zmq_hashblock(), None, "bcoin publishes no ZMQ");
        let (_, key, message) = refused(&format!("{REGTEST_BTC}node_flavour = \"btcd\"\n"));
        assert_eq!(key, "coins.btc.node_flavour");
        assert!(message.contains("use bitcoin-core, bitcoin-cash-node"), "{message}");
    }

    #[test]
    fn the_updaters_and_the_pages_checks_run_for_every_service() {
        // Once in the updater only (updater/config.rs), now for every service.
        let (_, key, message) = refused("[updates]\napi = \"0.0.0.0:3393\"\n");
        assert_eq!(key, "updates.api");
        assert!(message.starts_with("0.0.0.0:3393 is not a loopback"), "{message}");
        let (_, key, message) = refused("[updates]\nreboot_window = \"night\"\n");
        assert_eq!(key, "updates.reboot_window");
        assert!(message.contains("HH:MM-HH:MM"), "{message}");
        for (text, want) in [
            ("[updates]\ncheck_every_hours = 0\n", "updates.check_every_hours"),
            ("[updates]\nmax_bundle_mib = 0\n", "updates.max_bundle_mib"),
            ("[updates]\nreboot_command = []\n", "updates.reboot_command"),
            ("[updates]\nrollback_command = []\n", "updates.rollback_command"),
            // Once on the status page only (status/config.rs): a hand-edited file is checked too.
            ("[updates]\nchannel = \"Bad Channel\"\n", "updates.channel"),
            ("[notify]\nwebhook = \"file:///etc/passwd\"\n", "notify.webhook"),
            ("[notify]\nntfy = \"not a url\"\n", "notify.ntfy"),
            ("[notify]\nemail = \"owner@example.org\"\n", "notify.smtp"),
            ("[notify]\nemail = \"owner\"\nsmtp = \"smtp://h:25\"\n", "notify.email"),
            ("[notify]\nemail = \"o@example.org\"\nsmtp = \"http://h\"\n", "notify.smtp"),
            ("[notify]\nquiet_minutes = 0\n", "notify.quiet_minutes"),
            ("[notify]\nhashrate_low_percent = 100\n", "notify.hashrate_low_percent"),
            ("[snapshots]\nurl = \"ftp://x/\"\n", "snapshots.url"),
            ("[snapshots]\nsource = \"s3\"\n", "snapshots.source"),
            ("[cloud]\nurl = \"ftp://x/\"\n", "cloud.url"),
            ("[cloud]\nkey = \"device.key\"\n", "cloud.key"),
            ("[stratum]\napi = \"localhost\"\n", "stratum.api"),
        ] {
            let (file, key, _) = refused(text);
            assert_eq!((file.as_str(), key.as_str()), ("minebox.toml", want), "{text}");
        }
    }

    #[test]
    fn the_snapshot_source_is_auto_unless_the_owner_forces_one() {
        assert_eq!(load("").unwrap().snapshots.source, SnapshotSource::Auto);
        assert_eq!(load("[snapshots]\nsource = \"url\"\n").unwrap().snapshots.source, SnapshotSource::Url);
        assert_eq!(load("[snapshots]\nsource = \"cloud\"\n").unwrap().snapshots.source, SnapshotSource::Cloud);
        let (_, key, message) = refused("[snapshots]\nsource = \"Cloud\"\n");
        assert_eq!(key, "snapshots.source");
        assert!(message.contains("\"auto\"") && message.contains("\"url\""), "{message}");
    }

    #[test]
    fn coin_defaults_come_from_the_image_defaults_file_only() {
        let e = load("[coin_defaults]\nenabled = true\n").unwrap_err().to_string();
        assert!(e.contains("coin_defaults: set by the image defaults only"), "{e}");
        // The image decides every coin's defaults in defaults.toml, not in code.
        let defaults = EMBEDDED_DEFAULTS.replace("max_connections = 16", "max_connections = 40");
        let s =
            Settings::from_texts("minebox.toml", "[coins.bch]\n", "defaults.toml", &defaults, &Registry::embedded())
                .unwrap();
        assert_eq!(s.coins["bch"].max_connections, 40);
        let defaults = EMBEDDED_DEFAULTS.replace("max_connections = 16", "");
        let e =
            Settings::from_texts("minebox.toml", "[coins.bch]\n", "defaults.toml", &defaults, &Registry::embedded())
                .unwrap_err()
                .to_string();
        assert_eq!(e, "defaults.toml: coin_defaults.max_connections: missing (the image defaults must set it)");
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
