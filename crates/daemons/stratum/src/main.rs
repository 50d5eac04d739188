//! `minebox-stratum`: the Stratum V1 server binary.
//!
//! On the box it reads the MineBox settings file; for development one coin can be given
//! on the command line instead.

use anyhow::{bail, Context};
use clap::Parser;
use minebox_stratum::connection::Limits;
use minebox_stratum::payout::{CoinPayouts, Policy, WithOwner};
use minebox_stratum::service::{self, CoinConfig, ServiceConfig};
use minebox_stratum::vardiff::VardiffConfig;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

#[derive(Parser, Debug)]
#[command(version, about = "MineBox Stratum V1 solo-mining server")]
struct Cli {
    #[command(subcommand)]
    command: Option<Cmd>,
    /// The MineBox settings file: every enabled coin gets a listener, its node and
    /// credentials come from the supervisor's layout. Without it, one coin from the flags,
    /// whose unset values are the image defaults (the coin's, for the coin flags).
    /// --api, --database and --coinbase-tag override the settings in either mode.
    #[arg(long)]
    config: Option<PathBuf>,
    /// Image defaults under the settings file (built-in defaults when absent).
    #[arg(long)]
    defaults: Option<PathBuf>,
    /// Address the stratum ports listen on in settings mode (the LAN needs 0.0.0.0).
    #[arg(long, default_value = "0.0.0.0")]
    bind: std::net::IpAddr,
    /// The supervisor's event stream, to refresh work when a node (re)starts.
    #[arg(long)]
    supervisor_events: Option<String>,
    /// Coin id from the coin descriptors (btc, bch, xec, bsv).
    #[arg(long, default_value = "btc")]
    coin: String,
    /// Network of the coin (main, test, signet, regtest; default: the settings' network).
    #[arg(long)]
    network: Option<String>,
    /// Stratum listen address (the LAN needs 0.0.0.0; default: localhost, the coin's
    /// stratum port).
    #[arg(long)]
    listen: Option<SocketAddr>,
    /// The owner's address (flags mode; settings mode uses coins.<id>.payout_address):
    /// miners that send a bare worker name mine to it. Without it every miner must send
    /// its own address.
    #[arg(long)]
    payout_address: Option<String>,
    /// `miner`: a miner's own valid address is paid, a bare worker name pays
    /// --payout-address; `owner`: every block pays --payout-address.
    /// Default: the settings' payout_policy.
    #[arg(long, value_parser = ["miner", "owner"])]
    payout_policy: Option<String>,
    /// Node JSON-RPC URL (flags mode).
    #[arg(long, env = "MINEBOX_NODE_URL")]
    node_url: Option<String>,
    #[arg(long, env = "MINEBOX_NODE_USER", default_value = "minebox")]
    node_user: String,
    /// Node RPC password (prefer --node-cookie or the environment: it shows in `ps`).
    #[arg(long, env = "MINEBOX_NODE_PASSWORD", hide_env_values = true)]
    node_password: Option<String>,
    /// Node RPC cookie file (user:password), re-read when the node restarts.
    #[arg(long)]
    node_cookie: Option<PathBuf>,
    /// The node's ZMQ hashblock endpoint, e.g. tcp://127.0.0.1:28332.
    #[arg(long)]
    zmq_hashblock: Option<String>,
    /// Upstream solo pool (stratum+tcp://host:port) miners work for while the node cannot
    /// give work (flags mode; settings mode uses coins.<id>.upstream).
    #[arg(long)]
    upstream: Option<minebox_settings::Upstream>,
    /// SQLite state database (default: the settings' paths.state).
    #[arg(long)]
    database: Option<PathBuf>,
    /// Local API for the status page (default: the settings' stratum.api).
    #[arg(long)]
    api: Option<SocketAddr>,
    /// Share difficulty flags (flags mode; default: the coin's settings).
    #[arg(long)]
    start_difficulty: Option<f64>,
    #[arg(long)]
    min_difficulty: Option<f64>,
    #[arg(long)]
    max_difficulty: Option<f64>,
    #[arg(long)]
    shares_per_minute: Option<f64>,
    /// Default: the settings' stratum.coinbase_tag.
    #[arg(long)]
    coinbase_tag: Option<String>,
    /// Bytes of extranonce2 each miner rolls: 4 to 8 (WhatsMiner and cgminer-based firmware
    /// fail above 8; checked at start).
    #[arg(long, default_value_t = 8)]
    extranonce2_size: usize,
    /// Seconds between fee refreshes of the template.
    #[arg(long, default_value_t = 30)]
    template_refresh_secs: u64,
    /// Milliseconds between best-block checks when the node has no ZMQ.
    #[arg(long, default_value_t = 500)]
    block_poll_ms: u64,
    /// Seconds between statistics writes (SD cards wear with every write).
    #[arg(long, default_value_t = 60)]
    stats_flush_secs: u64,
    /// Seconds between saves of a changed PPLNS window (pool mode): a power cut loses at most
    /// this much of the window's shares, and each save is a write to the card.
    #[arg(long, default_value_t = minebox_stratum::service::PPLNS_SNAPSHOT_EVERY.as_secs(), value_parser = clap::value_parser!(u64).range(1..))]
    pplns_save_secs: u64,
    #[arg(long, default_value_t = Limits::default().connections_per_ip)]
    connections_per_ip: usize,
    #[arg(long, default_value_t = Limits::default().max_connections)]
    max_connections: usize,
    #[arg(long, default_value_t = Limits::default().messages_per_sec)]
    messages_per_sec: f64,
    #[arg(long, default_value_t = Limits::default().message_burst)]
    message_burst: f64,
    /// New connections per second one IP address may open (a client reconnecting in a
    /// loop is refused past this).
    #[arg(long, default_value_t = Limits::default().new_connections_per_sec)]
    new_connections_per_sec: f64,
    /// New connections one IP address may open at once before the rate applies.
    #[arg(long, default_value_t = Limits::default().new_connection_burst)]
    new_connection_burst: f64,
    /// Worker names remembered in all (least recently seen are forgotten first).
    #[arg(long, default_value_t = Limits::default().max_workers)]
    max_workers: usize,
    /// Worker names remembered per payout address.
    #[arg(long, default_value_t = Limits::default().workers_per_address)]
    workers_per_address: usize,
    /// New worker names one IP address may introduce per minute.
    #[arg(long, default_value_t = Limits::default().new_workers_per_min)]
    new_workers_per_min: f64,
    /// New worker names one IP address may introduce at once.
    #[arg(long, default_value_t = Limits::default().new_worker_burst)]
    new_worker_burst: f64,
}

#[derive(clap::Subcommand, Debug)]
enum Cmd {
    /// Opens the enabled coins' stratum ports (and no others) to the LAN: replaces the
    /// elements of the nftables set `inet minebox stratum_tcp` (run as root, by the
    /// stratum unit's ExecStartPre=+; ExecStopPost=+ runs it with --close).
    Firewall {
        /// The MineBox settings file (as for the server).
        #[arg(long)]
        config: PathBuf,
        /// Image defaults under the settings file.
        #[arg(long)]
        defaults: Option<PathBuf>,
        /// Close every stratum port (the server stops).
        #[arg(long)]
        close: bool,
        /// Print the nft script instead of running it.
        #[arg(long)]
        print: bool,
        #[arg(long, default_value = "nft")]
        nft: PathBuf,
    },
}

/// `minebox-stratum firewall`: see [`minebox_stratum::firewall`].
fn firewall(
    config: &std::path::Path,
    defaults: Option<&std::path::Path>,
    close: bool,
    print: bool,
    nft: &std::path::Path,
) -> anyhow::Result<()> {
    use minebox_stratum::firewall;
    let ports = if close {
        Vec::new()
    } else {
        let registry = minebox_coin::Registry::installed()?;
        let settings = minebox_settings::Settings::load(Some(config), defaults, &registry)?;
        firewall::stratum_ports(&settings, &registry)
    };
    let script = firewall::script(&ports);
    if print {
        print!("{script}");
        return Ok(());
    }
    firewall::apply(nft, &script)?;
    let list: Vec<String> = ports.iter().map(u16::to_string).collect();
    tracing::info!(ports = %list.join(","), "stratum ports open to the LAN: {}", if list.is_empty() { "none".into() } else { list.join(", ") });
    Ok(())
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    minebox_platform::lifecycle::init_logging();
    let cli = Cli::parse();
    if let Some(Cmd::Firewall { config, defaults, close, print, nft }) = &cli.command {
        return firewall(config, defaults.as_deref(), *close, *print, nft);
    }
    let (config, pools) = match &cli.config {
        Some(path) => from_settings(&cli, path)?,
        None => (from_flags(&cli)?, Vec::new()),
    };
    let running = service::start_with_pools(config, pools).await?;
    tracing::info!(api = %running.api, "ready");
    minebox_platform::lifecycle::ready();
    running.run_until(minebox_platform::lifecycle::terminated()).await;
    Ok(())
}

fn limits(cli: &Cli) -> anyhow::Result<Limits> {
    let rates = [
        ("--messages-per-sec", cli.messages_per_sec),
        ("--message-burst", cli.message_burst),
        ("--new-connections-per-sec", cli.new_connections_per_sec),
        ("--new-connection-burst", cli.new_connection_burst),
        ("--new-workers-per-min", cli.new_workers_per_min),
        ("--new-worker-burst", cli.new_worker_burst),
    ];
    for (flag, v) in rates {
        if !(v.is_finite() && v > 0.0) {
            bail!("{flag} {v} must be a finite number above 0");
        }
    }
    if cli.max_workers == 0 || cli.workers_per_address == 0 {
        bail!("--max-workers and --workers-per-address must be at least 1");
    }
    Ok(Limits {
        connections_per_ip: cli.connections_per_ip,
        max_connections: cli.max_connections,
        messages_per_sec: cli.messages_per_sec,
        message_burst: cli.message_burst,
        new_connections_per_sec: cli.new_connections_per_sec,
        new_connection_burst: cli.new_connection_burst,
        max_workers: cli.max_workers,
        workers_per_address: cli.workers_per_address,
        new_workers_per_min: cli.new_workers_per_min,
        new_worker_burst: cli.new_worker_burst,
        ..Limits::default()
    })
}

/// Silence from an upstream pool before the box drops the connection and reconnects: pools
/// send a job at least every minute or two, so five minutes means it is stuck.
const UPSTREAM_IDLE: Duration = Duration::from_secs(300);

/// Extranonce2 bytes a miner rolls on a coin with an upstream (see minebox_stratum::upstream).
const UPSTREAM_MINER_EXTRANONCE2: usize = 4;

/// Settings mode (the box): every enabled coin of the settings file.
fn from_settings(
    cli: &Cli,
    path: &std::path::Path,
) -> anyhow::Result<(ServiceConfig, Vec<minebox_stratum::pplns::desk::PoolModeConfig>)> {
    let registry = minebox_coin::Registry::installed()?;
    let settings = minebox_settings::Settings::load(Some(path), cli.defaults.as_deref(), &registry)?;
    let shared = std::sync::Arc::new(settings.clone());
    let mut coins = Vec::new();
    let mut pools = Vec::new();
    for (c, coin, network) in settings.enabled_coins(&registry) {
        // Pool mode: a PPLNS port beside the solo one, paying the users the page registered.
        if let Some(p) = &c.pool {
            pools.push(minebox_stratum::pplns::desk::PoolModeConfig {
                coin: c.id.clone(),
                network: network.name.clone(),
                listen: SocketAddr::new(cli.bind, p.port),
                settings: p.clone(),
                payees_file: minebox_settings::payees::Payees::path_beside(path),
                box_settings: shared.clone(),
                save_every: Duration::from_secs(cli.pplns_save_secs),
            });
        }
        // The supervisor writes these credentials for a node it runs (the user, for an
        // external node); the stratum only reads them.
        let node =
            minebox_node_rpc::NodeClient::new(&c.rpc_url(), minebox_node_rpc::Auth::CookieFile(c.rpc_cookie.clone()))?;
        // An enabled coin's address was checked for its network by the settings.
        let owner = c.payout.as_ref().with_context(|| format!("coins.{}.payout_address: required", c.id))?;
        coins.push(CoinConfig {
            coin: c.id.clone(),
            network: network.name.clone(),
            listen: SocketAddr::new(cli.bind, c.stratum_port),
            node,
            zmq_hashblock: c.zmq_hashblock(),
            segwit: coin.segwit,
            min_tx_size: coin.min_tx_size(),
            payouts: Box::new(WithOwner::checked(network.clone(), owner, c.payout_policy)),
            vardiff: {
                let v = VardiffConfig {
                    shares_per_minute: c.shares_per_minute,
                    min: c.min_difficulty,
                    max: c.max_difficulty,
                    start: c.start_difficulty,
                    ..VardiffConfig::default()
                };
                // The settings file is validated where it is written; an older or hand-edited
                // one still must not stop the box from mining: clamp, and say so.
                if let Err(e) = v.check() {
                    tracing::warn!(coin = %c.id, "{e}; using the nearest usable values");
                }
                v.sanitized()
            },
            coinbase_tag: cli.coinbase_tag.clone().unwrap_or_else(|| settings.stratum.coinbase_tag.clone()),
            // With an upstream, miners roll 4 bytes: with their 4-byte extranonce1 that fits
            // the 8 bytes of extranonce2 solo pools give (ckpool), in both modes alike.
            extranonce2_len: if c.upstream.is_some() {
                cli.extranonce2_size.min(UPSTREAM_MINER_EXTRANONCE2)
            } else {
                cli.extranonce2_size
            },
            version_mask: 0x1fff_e000,
            template_refresh: Duration::from_secs(cli.template_refresh_secs),
            block_poll: Duration::from_millis(cli.block_poll_ms),
            upstream: c.upstream.clone(),
            upstream_idle: UPSTREAM_IDLE,
            upstream_max_connections: c.upstream_max_connections,
            upstream_grace: c.upstream_grace,
        });
    }
    if coins.is_empty() {
        // A new box: nothing to mine until the user picks a coin and a payout address. Stay up
        // (API answering, healthy) rather than crash-loop until restarted with a coin enabled.
        tracing::warn!("{}: no coin is enabled; enable one under [coins.<id>] with a payout_address", path.display());
    }
    let supervisor_events = cli
        .supervisor_events
        .clone()
        .or_else(|| Some(format!("http://{}{}", settings.supervisor.api, minebox_api::supervisor::EVENTS)));
    let config = ServiceConfig {
        coins,
        database: cli.database.clone().unwrap_or_else(|| settings.paths.state.clone()),
        api_listen: cli.api.unwrap_or(settings.stratum.api),
        stats_flush: Duration::from_secs(cli.stats_flush_secs),
        limits: limits(cli)?,
        supervisor_events,
    };
    Ok((config, pools))
}

/// Flags mode (development): one coin, its node given on the command line.
fn from_flags(cli: &Cli) -> anyhow::Result<ServiceConfig> {
    let Some(node_url) = &cli.node_url else {
        bail!("give --config SETTINGS.toml, or --node-url for a single coin");
    };
    let auth = match (&cli.node_cookie, &cli.node_password) {
        (Some(path), _) => minebox_node_rpc::Auth::CookieFile(path.clone()),
        (None, Some(pass)) => minebox_node_rpc::Auth::UserPass { user: cli.node_user.clone(), pass: pass.clone() },
        (None, None) => {
            bail!("give the node's RPC credentials: --node-cookie FILE or --node-password (or MINEBOX_NODE_PASSWORD)")
        }
    };
    let node = minebox_node_rpc::NodeClient::new(node_url, auth).context("node RPC URL")?;
    let registry = minebox_coin::Registry::embedded();
    let coin = registry
        .get(&cli.coin)
        .with_context(|| format!("unknown coin {:?}; known: {}", cli.coin, registry.ids().join(", ")))?;
    // What a flag leaves unset is what the settings give a coin with no table of its own
    // (the image defaults and the coin's descriptor): defaults live in one place.
    let (defaults_name, defaults) = match &cli.defaults {
        Some(p) => (p.display().to_string(), std::fs::read_to_string(p).with_context(|| p.display().to_string())?),
        None => ("(built-in defaults)".to_string(), minebox_settings::EMBEDDED_DEFAULTS.to_string()),
    };
    let settings = minebox_settings::Settings::from_texts(
        "(flags)",
        &format!("[coins.{}]\n", coin.id),
        &defaults_name,
        &defaults,
        &registry,
    )?;
    let c = &settings.coins[&coin.id];
    let network_name = cli.network.clone().unwrap_or_else(|| c.network.name.clone());
    let network = coin.network(&network_name)?.clone();
    let vardiff = VardiffConfig {
        shares_per_minute: cli.shares_per_minute.unwrap_or(c.shares_per_minute),
        min: cli.min_difficulty.unwrap_or(c.min_difficulty),
        max: cli.max_difficulty.unwrap_or(c.max_difficulty),
        start: cli.start_difficulty.unwrap_or(c.start_difficulty),
        ..VardiffConfig::default()
    };
    vardiff.check().context("--min-difficulty, --max-difficulty, --start-difficulty, --shares-per-minute")?;
    let policy = match cli.payout_policy.as_deref() {
        Some("owner") => Policy::Owner,
        Some(_) => Policy::Miner,
        None => c.payout_policy,
    };
    let payouts: Box<dyn minebox_stratum::session::PayoutPolicy> = match &cli.payout_address {
        Some(a) => {
            Box::new(WithOwner::new(network.clone(), a, policy).map_err(|e| anyhow::anyhow!("--payout-address: {e}"))?)
        }
        None if policy == Policy::Owner => bail!("--payout-policy owner needs --payout-address"),
        None => Box::new(CoinPayouts(network)),
    };
    Ok(ServiceConfig {
        coins: vec![CoinConfig {
            coin: coin.id.clone(),
            network: network_name,
            listen: cli.listen.unwrap_or(SocketAddr::new(std::net::Ipv4Addr::LOCALHOST.into(), c.stratum_port)),
            node,
            zmq_hashblock: cli.zmq_hashblock.clone(),
            segwit: coin.segwit,
            min_tx_size: coin.min_tx_size(),
            payouts,
            vardiff,
            coinbase_tag: cli.coinbase_tag.clone().unwrap_or_else(|| settings.stratum.coinbase_tag.clone()),
            extranonce2_len: cli.extranonce2_size,
            version_mask: 0x1fff_e000,
            template_refresh: Duration::from_secs(cli.template_refresh_secs),
            block_poll: Duration::from_millis(cli.block_poll_ms),
            upstream: cli.upstream.clone(),
            upstream_idle: UPSTREAM_IDLE,
            upstream_max_connections: c.upstream_max_connections,
            upstream_grace: c.upstream_grace,
        }],
        database: cli.database.clone().unwrap_or_else(|| settings.paths.state.clone()),
        api_listen: cli.api.unwrap_or(settings.stratum.api),
        stats_flush: Duration::from_secs(cli.stats_flush_secs),
        limits: limits(cli)?,
        supervisor_events: cli.supervisor_events.clone(),
    })
}
