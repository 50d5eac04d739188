//! `[coins.<id>]`: one table per coin, over `[coin_defaults]` of the image defaults, over the
//! coin's descriptor (its ports, node program and prune minimum). Checked against the
//! registry: an address for the chosen network, difficulties a share target can use, a
//! prune size the node accepts, a node the box can run.

use crate::file::{FileSettings, Layer};
use crate::SettingsError;
use minebox_coin::{Coin, Network, NodeFlavour, Payout, Registry};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::PathBuf;

#[derive(Debug, Default, Deserialize, Serialize, Clone)]
#[serde(default, deny_unknown_fields)]
pub(crate) struct File {
    enabled: Option<bool>,
    network: Option<String>,
    payout_address: Option<String>,
    payout_policy: Option<String>,
    pub stratum_port: Option<u16>,
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
    pub rpc_port: Option<u16>,
    pub p2p_port: Option<u16>,
    pub zmq_port: Option<u16>,
    upstream: Option<String>,
    upstream_max_connections: Option<u64>,
    upstream_grace_secs: Option<u64>,
    pub pool: Option<crate::pool::File>,
}

/// Whose address a block found by a miner pays (`coins.<id>.payout_policy`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum PayoutPolicy {
    /// A miner that authorizes with a valid address of the coin is paid to it; a bare
    /// worker name (a Bitaxe set up with just a name) mines to `payout_address`.
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

impl std::str::FromStr for PayoutPolicy {
    type Err = String;
    fn from_str(s: &str) -> Result<PayoutPolicy, String> {
        match s {
            "miner" => Ok(PayoutPolicy::Miner),
            "owner" => Ok(PayoutPolicy::Owner),
            other => Err(format!(
                "{other:?} is not a payout policy; use \"miner\" (a miner's own address is paid, \
                 a bare worker name mines to payout_address) or \"owner\" (every block pays payout_address)"
            )),
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

impl std::str::FromStr for NodeKind {
    type Err = String;
    fn from_str(s: &str) -> Result<NodeKind, String> {
        match s {
            "managed" => Ok(NodeKind::Managed),
            "external" => Ok(NodeKind::External),
            other => {
                Err(format!("{other:?} is not a node kind; use \"managed\" (MineBox runs it) or \"external\" (yours)"))
            }
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct CoinSettings {
    pub id: String,
    pub enabled: bool,
    /// The chosen network of the coin's descriptor (its name, ports and address format).
    #[serde(serialize_with = "network_name")]
    pub network: Network,
    /// The owner's address as the user wrote it (empty: none; required for an enabled
    /// coin): paid for miners that send no address of their own, and for every miner
    /// under `payout_policy = "owner"`.
    pub payout_address: String,
    /// What `payout_address` pays, checked for `network`; `None` when it is empty.
    #[serde(skip)]
    pub payout: Option<Payout>,
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
    pub node_flavour: NodeFlavour,
    /// Program and leading arguments that start the node (never empty).
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
    /// `upstream = "stratum+tcp://host:port"`: the solo pool miners work for while this
    /// coin's node cannot give work (starting, syncing, down). None by default: a pool sees
    /// the owner's address and hashrate, so the user chooses one.
    pub upstream: Option<Upstream>,
    /// `upstream_max_connections`: pool connections the coin opens at most, the owner's
    /// included (one per payout address mining through the pool).
    pub upstream_max_connections: usize,
    /// `upstream_grace_secs`: how long a miner address's pool connection stays open after
    /// its last miner leaves (a miner restarting finds it still there).
    pub upstream_grace: std::time::Duration,
    /// `[coins.<id>.pool]`: pool mode (PPLNS) on its own port; None when off (the default).
    pub pool: Option<crate::pool::PoolSettings>,
}

/// Pool connections a coin opens at most unless `upstream_max_connections` says otherwise:
/// the owner's and 7 miners' own (a LAN rarely has more owners than that).
pub const DEFAULT_UPSTREAM_MAX_CONNECTIONS: usize = 8;
/// What `upstream_max_connections` may be: the owner's connection at least; a pool sees
/// every connection as a separate client, and 64 is already far more than a LAN's owners.
pub const UPSTREAM_MAX_CONNECTIONS_RANGE: std::ops::RangeInclusive<u64> = 1..=64;
/// Seconds a miner address's pool connection outlives its last miner unless
/// `upstream_grace_secs` says otherwise.
pub const DEFAULT_UPSTREAM_GRACE_SECS: u64 = 60;
/// What `upstream_grace_secs` may be: 0 (close at once) to an hour.
pub const UPSTREAM_GRACE_SECS_RANGE: std::ops::RangeInclusive<u64> = 0..=3600;

/// An upstream solo pool, checked once: a host name or address and a port.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Upstream {
    pub host: String,
    pub port: u16,
}

impl Upstream {
    /// `host:port` to connect to (IPv6 literals in brackets).
    pub fn authority(&self) -> String {
        if self.host.contains(':') {
            format!("[{}]:{}", self.host, self.port)
        } else {
            format!("{}:{}", self.host, self.port)
        }
    }
}

impl std::fmt::Display for Upstream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "stratum+tcp://{}", self.authority())
    }
}

impl Serialize for Upstream {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl std::str::FromStr for Upstream {
    type Err = String;
    fn from_str(url: &str) -> Result<Upstream, String> {
        const HOW: &str = "write it as stratum+tcp://host:port, e.g. stratum+tcp://solo.ckpool.org:3333";
        let Some(rest) = url.strip_prefix("stratum+tcp://") else {
            let scheme = url.split_once("://").map(|(s, _)| s).unwrap_or("");
            return Err(if scheme.is_empty() {
                format!("{url:?} has no scheme; {HOW}")
            } else {
                format!("{scheme}:// is not supported (plain Stratum V1 over TCP only); {HOW}")
            });
        };
        let rest = rest.strip_suffix('/').unwrap_or(rest);
        let (host, port) = match rest.strip_prefix('[') {
            Some(v6) => match v6.split_once("]:") {
                Some((h, p)) => (h, p),
                None => return Err(format!("{url:?}: an IPv6 address needs brackets and a port; {HOW}")),
            },
            None => match rest.rsplit_once(':') {
                Some((h, p)) => (h, p),
                None => return Err(format!("{url:?} has no port; {HOW}")),
            },
        };
        let port: u16 = match port.parse() {
            Ok(p) if p != 0 => p,
            _ => return Err(format!("{port:?} is not a port (1-65535); {HOW}")),
        };
        let valid_host = !host.is_empty()
            && host.len() <= 253
            && host.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_' | ':'));
        if !valid_host {
            return Err(format!("{host:?} is not a host name or address; {HOW}"));
        }
        Ok(Upstream { host: host.to_string(), port })
    }
}

fn network_name<S: serde::Serializer>(n: &Network, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(&n.name)
}

impl CoinSettings {
    /// The node's RPC URL (`http://host:port/`).
    pub fn rpc_url(&self) -> String {
        format!("http://{}:{}/", self.rpc_host, self.rpc_port)
    }

    /// Where the node publishes new blocks, when its flavour does.
    pub fn zmq_hashblock(&self) -> Option<String> {
        self.node_flavour.publishes_zmq().then(|| format!("tcp://{}:{}", self.rpc_host, self.zmq_port))
    }
}

/// Share difficulties the settings accept (start, min and max). Below 2^-32 (about 2.3e-10)
/// the share target passes every hash, so nothing lower means anything; 1e-9 still leaves
/// CPU miners on regtest (1e-8 in scripts/run-local and the system tests) their setting.
/// 1e18 is four orders of magnitude above Bitcoin's network difficulty (about 1e14 in 2025).
pub const DIFFICULTY_RANGE: std::ops::RangeInclusive<f64> = 1e-9..=1e18;

/// Shares each miner is asked for per minute.
pub const SHARES_PER_MINUTE_RANGE: std::ops::RangeInclusive<f64> = 0.1..=600.0;

/// Every coin named in either file, resolved and checked.
pub(crate) fn resolve(
    u: (&str, &FileSettings),
    d: (&str, &FileSettings),
    secrets: &std::path::Path,
    registry: &Registry,
) -> Result<BTreeMap<String, CoinSettings>, SettingsError> {
    if u.1.coin_defaults.is_some() {
        return Err(SettingsError::Value {
            file: u.0.to_string(),
            key: "coin_defaults".into(),
            message: "set by the image defaults only; set the key under [coins.<id>] instead".into(),
        });
    }
    let ids: std::collections::BTreeSet<&String> = d.1.coins.keys().chain(u.1.coins.keys()).collect();
    let mut coins = BTreeMap::new();
    for id in ids {
        let (cu, cd) = (u.1.coins.get(id), d.1.coins.get(id));
        // A coin's own table in either file, else the image's defaults for every coin.
        let own = Layer { prefix: format!("coins.{id}"), user: cu, defaults: cd, user_file: u.0, defaults_file: d.0 };
        // The file a coin's problem is reported in: the user's if it names the coin.
        let file = if cu.is_some() { u.0 } else { d.0 };
        let Some(coin) = registry.get(id) else {
            return Err(SettingsError::Value {
                file: file.into(),
                key: format!("coins.{id}"),
                message: format!("unknown coin; known coins: {}", registry.ids().join(", ")),
            });
        };
        coins.insert(id.clone(), resolve_one(id, coin, &own, d, file, secrets)?);
    }
    Ok(coins)
}

fn resolve_one(
    id: &str,
    coin: &Coin,
    own: &Layer<'_, File>,
    d: (&str, &FileSettings),
    file: &str,
    secrets: &std::path::Path,
) -> Result<CoinSettings, SettingsError> {
    let err = |key: &str, message: String| SettingsError::Value {
        file: file.to_string(),
        key: format!("coins.{id}.{key}"),
        message,
    };
    let fallback = Layer {
        prefix: "coin_defaults".into(),
        user: None,
        defaults: d.1.coin_defaults.as_ref(),
        user_file: d.0,
        defaults_file: d.0,
    };
    // The coin's own value if set; else the image's `[coin_defaults]`, which must set it.
    macro_rules! c {
        ($field:ident) => {
            match own.user.and_then(|c| c.$field.as_ref()).or_else(|| own.defaults.and_then(|c| c.$field.as_ref())) {
                Some(v) => v.clone(),
                None => fallback.get(stringify!($field), |c| c.$field.as_ref())?,
            }
        };
    }
    // Set for this coin (no image-wide default: the descriptor decides).
    macro_rules! own {
        ($field:ident) => {
            own.user.and_then(|c| c.$field.clone()).or_else(|| own.defaults.and_then(|c| c.$field.clone()))
        };
    }
    let enabled: bool = c!(enabled);
    let network_name: String = c!(network);
    let network = coin.network(&network_name).map_err(|e| err("network", e.to_string()))?.clone();
    let payout_address = own!(payout_address).unwrap_or_default();
    if enabled && payout_address.is_empty() {
        return Err(err(
            "payout_address",
            format!("required for an enabled coin: the {} address blocks pay", coin.name),
        ));
    }
    if payout_address.len() > 128 || payout_address.chars().any(|ch| ch.is_whitespace() || ch.is_control()) {
        return Err(err("payout_address", "not an address".into()));
    }
    let payout = if enabled {
        Some(network.parse_address(&payout_address).map_err(|e| err("payout_address", e.to_string()))?)
    } else {
        // A disabled coin's address is kept as written; it is checked when the coin is enabled.
        network.parse_address(&payout_address).ok()
    };
    let payout_policy: String = c!(payout_policy);
    let payout_policy = payout_policy.parse().map_err(|m| err("payout_policy", m))?;
    let stratum_port = own!(stratum_port).unwrap_or(network.ports.stratum_port);
    if stratum_port < 1024 {
        return Err(err(
            "stratum_port",
            format!(
                "{stratum_port} is a privileged port; use 1024-65535 (the default for {} {network_name} is {})",
                coin.name, network.ports.stratum_port
            ),
        ));
    }
    let min_difficulty: f64 = c!(min_difficulty);
    let max_difficulty: f64 = c!(max_difficulty);
    let start_difficulty: f64 = c!(start_difficulty);
    for (key, value) in
        [("min_difficulty", min_difficulty), ("max_difficulty", max_difficulty), ("start_difficulty", start_difficulty)]
    {
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
    let shares_per_minute: f64 = c!(shares_per_minute);
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
    let disk_budget_gib: u64 = c!(disk_budget_gib);
    // Solo mining needs the UTXO set and the mempool, not old blocks: pruned by default,
    // keeping a quarter of the disk budget for block files (the rest is chainstate).
    // Saturating: any u64 in the file must give an answer, not an overflow.
    let min_prune = coin.node.min_prune_mib;
    let prune_mib = own!(prune_mib).unwrap_or_else(|| (disk_budget_gib.saturating_mul(1024) / 4).max(min_prune));
    if prune_mib != 0 && prune_mib < min_prune {
        return Err(err(
            "prune_mib",
            format!("{prune_mib} is below the node's minimum of {min_prune} MiB; use at least {min_prune} or 0 to keep every block"),
        ));
    }
    let memory_budget_mib: u64 = c!(memory_budget_mib);
    if memory_budget_mib < 512 {
        return Err(err("memory_budget_mib", "at least 512: a node needs that much to run".into()));
    }
    let node_flavour = match own!(node_flavour) {
        Some(name) => name.parse().map_err(|e: minebox_coin::UnknownFlavour| err("node_flavour", e.to_string()))?,
        None => coin.node.flavour,
    };
    let user_command = own!(node_command);
    let node_command = user_command.clone().unwrap_or_else(|| vec![coin.node.binary.clone()]);
    if node_command.is_empty() {
        return Err(err("node_command", "must name the node program".into()));
    }
    let node: String = c!(node);
    let node: NodeKind = node.parse().map_err(|m| err("node", m))?;
    // A node the image does not ship cannot be run by the box; say so here rather than
    // let the supervisor fail to start a program that is not there. A development
    // `node_command` names a program of the user's, which is fine.
    if enabled && node == NodeKind::Managed && !coin.node.in_image && user_command.is_none() {
        return Err(err(
            "node",
            format!(
                "the MineBox image has no {} node; {} is mined through a node of yours: set node = \"external\" with rpc_host, rpc_port and rpc_cookie",
                coin.name, coin.name
            ),
        ));
    }
    let rpc_host: String = c!(rpc_host);
    let user_cookie = own!(rpc_cookie);
    if node == NodeKind::Managed {
        if rpc_host != "127.0.0.1" {
            return Err(err(
                "rpc_host",
                "a node MineBox runs listens on 127.0.0.1 only; for a node elsewhere set node = \"external\"".into(),
            ));
        }
        if user_cookie.is_some() {
            return Err(err(
                "rpc_cookie",
                "MineBox makes the credentials of a node it runs; set it only with node = \"external\"".into(),
            ));
        }
    } else if rpc_host.is_empty() || rpc_host.contains(['/', ' ', '@']) {
        return Err(err("rpc_host", format!("{rpc_host:?} is not a host name or address")));
    }
    let upstream = match own!(upstream) {
        None => None,
        Some(u) if u.is_empty() => None,
        Some(u) => Some(u.parse::<Upstream>().map_err(|m| err("upstream", m))?),
    };
    let upstream_max_connections = own!(upstream_max_connections).unwrap_or(DEFAULT_UPSTREAM_MAX_CONNECTIONS as u64);
    if !UPSTREAM_MAX_CONNECTIONS_RANGE.contains(&upstream_max_connections) {
        return Err(err(
            "upstream_max_connections",
            format!(
                "{upstream_max_connections} is out of range; use {} (only the owner's connection) to {} \
                 (default {DEFAULT_UPSTREAM_MAX_CONNECTIONS}: the owner's and one per miner address)",
                UPSTREAM_MAX_CONNECTIONS_RANGE.start(),
                UPSTREAM_MAX_CONNECTIONS_RANGE.end()
            ),
        ));
    }
    let upstream_grace_secs = own!(upstream_grace_secs).unwrap_or(DEFAULT_UPSTREAM_GRACE_SECS);
    if !UPSTREAM_GRACE_SECS_RANGE.contains(&upstream_grace_secs) {
        return Err(err(
            "upstream_grace_secs",
            format!(
                "{upstream_grace_secs} is out of range; use {} (close at once) to {} seconds (default \
                 {DEFAULT_UPSTREAM_GRACE_SECS})",
                UPSTREAM_GRACE_SECS_RANGE.start(),
                UPSTREAM_GRACE_SECS_RANGE.end()
            ),
        ));
    }
    let pool = crate::pool::resolve(
        own.user.and_then(|c| c.pool.as_ref()).or_else(|| own.defaults.and_then(|c| c.pool.as_ref())),
        &network,
        (start_difficulty, min_difficulty, max_difficulty),
        &err,
    )?;
    Ok(CoinSettings {
        id: id.to_string(),
        pool,
        enabled,
        payout_address,
        payout,
        payout_policy,
        stratum_port,
        start_difficulty,
        min_difficulty,
        max_difficulty,
        shares_per_minute,
        prune_mib,
        disk_budget_gib,
        memory_budget_mib,
        max_connections: c!(max_connections),
        node_flavour,
        node_command,
        node,
        rpc_host,
        rpc_cookie: user_cookie.unwrap_or_else(|| secrets.join(format!("{id}-rpc.cookie"))),
        rpc_port: own!(rpc_port).unwrap_or(network.ports.rpc_port),
        p2p_port: own!(p2p_port).unwrap_or(network.ports.p2p_port),
        zmq_port: own!(zmq_port).unwrap_or(network.ports.zmq_port),
        upstream,
        upstream_max_connections: upstream_max_connections as usize,
        upstream_grace: std::time::Duration::from_secs(upstream_grace_secs),
        network,
    })
}
