//! `minebox-snapshot-agent --config FILE`: the service the status page asks to install a
//! coin's snapshot. `minebox-snapshot-agent install ...`: one install by hand.

use clap::{Parser, Subcommand};
use minebox_snapshot::minisign::PublicKey;
use minebox_snapshot_agent::install::{self, Options};
use minebox_snapshot_agent::progress::SharedProgress;
use std::net::SocketAddr;
use std::path::PathBuf;

#[derive(Parser)]
#[command(version, about = "Install signed MineBox snapshots", args_conflicts_with_subcommands = true)]
struct Cli {
    /// Run as the box's service with these settings (the status page's snapshot actions).
    #[arg(long)]
    config: Option<PathBuf>,
    /// The image defaults (built-in defaults when absent).
    #[arg(long)]
    defaults: Option<PathBuf>,
    /// Directory of pinned keys: snapshots are checked against its `snapshot-*.pub` (minisign format).
    #[arg(long, default_value = "/etc/minebox/keys")]
    keys: PathBuf,
    /// Listen address; the settings' snapshots.api when absent.
    #[arg(long)]
    listen: Option<String>,
    #[command(subcommand)]
    command: Option<Cmd>,
}

#[derive(Subcommand)]
enum Cmd {
    /// Download, verify and install the snapshot at URL into DEST.
    Install {
        /// The published tree's root, e.g. https://snapshots.example/btc/main
        #[arg(long)]
        url: String,
        /// Pinned public keys (minisign format); the image ships them in /etc/minebox/keys.
        #[arg(long = "pubkey", required = true)]
        pubkeys: Vec<PathBuf>,
        #[arg(long)]
        dest: PathBuf,
        #[arg(long, default_value_t = 4)]
        parallel: usize,
        /// Bandwidth limit, bytes per second.
        #[arg(long)]
        limit_bytes_per_sec: Option<u64>,
        /// Do not trust the clock (before NTP sync): expiry is not checked.
        #[arg(long)]
        untrusted_clock: bool,
        #[arg(long)]
        ca_cert: Option<PathBuf>,
        /// Serve progress at http://ADDR/api/v1/snapshot/progress.
        #[arg(long)]
        api: Option<SocketAddr>,
        /// For a utxo snapshot: the running Bitcoin Core's RPC URL to hand the file to
        /// (loadtxoutset); DEST is then that node's data directory, which is kept (the file
        /// goes beside it).
        #[arg(long, requires = "node_cookie")]
        node_url: Option<String>,
        /// The node's RPC credentials file (user:password).
        #[arg(long)]
        node_cookie: Option<PathBuf>,
    },
    /// Delete the data directory a snapshot replaced (`.<name>.retired` beside DEST). The
    /// node's unit runs this as the node's user before every start: the old chain's files
    /// are that user's, which the agent's own user may not delete.
    RemoveRetired {
        /// The node's data directory (its retired directory is beside it).
        #[arg(long)]
        dest: PathBuf,
    },
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    minebox_platform::lifecycle::init_logging();
    let cli = Cli::parse();
    let Some(command) = cli.command else {
        let Some(config) = cli.config else {
            anyhow::bail!("give --config FILE to run as a service, or a subcommand (see --help)");
        };
        return serve(&config, cli.defaults.as_deref(), &cli.keys, cli.listen).await;
    };
    let command = match command {
        Cmd::RemoveRetired { dest } => {
            let dir = minebox_snapshot_agent::retire::retired_dir(&dest);
            let r = minebox_snapshot_agent::retire::remove_retired(&dest);
            if r.files > 0 {
                tracing::info!(dir = %dir.display(), files = r.files, bytes = r.bytes, "deleted the chain a snapshot replaced");
            }
            if let Some(e) = r.first_error {
                anyhow::bail!("{} entries of {} left: {e}", r.left, dir.display());
            }
            return Ok(());
        }
        install @ Cmd::Install { .. } => install,
    };
    let Cmd::Install {
        url,
        pubkeys,
        dest,
        parallel,
        limit_bytes_per_sec,
        untrusted_clock,
        ca_cert,
        api,
        node_url,
        node_cookie,
    } = command
    else {
        unreachable!("remove-retired returned above")
    };
    let keys = PublicKey::read_all(&pubkeys)?;
    let progress = SharedProgress::default();
    if let Some(addr) = api {
        let p = progress.clone();
        let app = axum::Router::new()
            .route("/api/v1/snapshot/progress", axum::routing::get(move || async move { axum::Json(p.get()) }));
        let listener = tokio::net::TcpListener::bind(addr).await?;
        tokio::spawn(async move { axum::serve(listener, app).await });
    }
    let mut opts = Options::new(&url, keys, &dest);
    opts.parallel = parallel;
    opts.bandwidth = limit_bytes_per_sec;
    opts.clock_trusted = !untrusted_clock;
    opts.ca_cert = ca_cert;
    minebox_platform::lifecycle::ready();
    if let (Some(url), Some(cookie)) = (node_url, node_cookie) {
        // A utxo snapshot goes to the running node (loadtxoutset), its datadir kept.
        let node = minebox_node_rpc::NodeClient::new(&url, minebox_node_rpc::Auth::CookieFile(cookie))?;
        let mut http = reqwest::Client::builder();
        if let Some(ca) = &opts.ca_cert {
            http = http.add_root_certificate(reqwest::Certificate::from_pem(&std::fs::read(ca)?)?);
        }
        let fetcher = minebox_snapshot_agent::fetch::Fetcher::new(http.build()?, opts.source.clone(), 2);
        let (m, _) =
            minebox_snapshot_agent::fetch::fetch_verified(&fetcher, &opts.keys, opts.clock_trusted).await?.into_parts();
        if m.kind() == minebox_snapshot::Kind::Utxo {
            let version = minebox_snapshot_agent::utxo::install(opts, &node, &m, &progress).await?;
            println!("{}", serde_json::json!({"version": version, "load_secs": progress.get().load_secs}));
            println!("{}", serde_json::to_string(&minebox_snapshot_agent::utxo::validation(&node).await?)?);
            return Ok(());
        }
    }
    let report = install::install(opts, progress).await?;
    println!("{}", serde_json::to_string(&report)?);
    Ok(())
}

/// The service: settings say which coins, where snapshots are published and where nodes
/// keep their data.
async fn serve(
    config: &std::path::Path,
    defaults: Option<&std::path::Path>,
    keys_dir: &std::path::Path,
    listen: Option<String>,
) -> anyhow::Result<()> {
    use minebox_snapshot_agent::service::{router, Agent, CloudAccess, CoinSource};
    let registry = minebox_coin::Registry::installed()?;
    let settings = minebox_settings::Settings::load(Some(config), defaults, &registry)?;
    let keys = PublicKey::pinned(keys_dir, "snapshot")?;
    if keys.is_empty() {
        tracing::warn!(dir = %keys_dir.display(), "no pinned snapshot keys (snapshot-*.pub): every snapshot will be refused");
    }
    let base = settings.snapshots.url.as_str().trim_end_matches('/').to_string();
    let coins = settings
        .coins
        .values()
        .filter(|c| c.enabled)
        .map(|c| CoinSource {
            coin: c.id.clone(),
            network: c.network.name.clone(),
            url: format!("{base}/{}/{}", c.id, c.network.name),
            dest: settings.paths.nodes.join(&c.id),
            managed: c.node == minebox_settings::NodeKind::Managed,
            node: minebox_node_rpc::NodeClient::new(
                &c.rpc_url(),
                minebox_node_rpc::Auth::CookieFile(c.rpc_cookie.clone()),
            )
            .ok(),
        })
        .collect();
    let supervisor = settings.supervisor.api.to_string();
    let cloud =
        settings.cloud.url.as_ref().map(|url| CloudAccess { url: url.to_string(), key: settings.cloud.key.clone() });
    let agent = std::sync::Arc::new(
        Agent::new(coins, keys, &supervisor, settings.snapshots.enabled).with_cloud(settings.snapshots.source, cloud),
    );
    let listen = listen.unwrap_or_else(|| settings.snapshots.api.to_string());
    let listener =
        tokio::net::TcpListener::bind(&listen).await.map_err(|e| anyhow::anyhow!("cannot listen on {listen}: {e}"))?;
    tracing::info!(%listen, "snapshot agent up");
    minebox_platform::lifecycle::ready();
    axum::serve(listener, router(agent)).with_graceful_shutdown(minebox_platform::lifecycle::terminated()).await?;
    Ok(())
}
