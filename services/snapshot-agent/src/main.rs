//! `minebox-snapshot-agent install ...`: install a snapshot, serving progress on a local API.

use clap::{Parser, Subcommand};
use minebox_snapshot::minisign::PublicKey;
use minebox_snapshot_agent::install::{self, Options};
use minebox_snapshot_agent::progress::SharedProgress;
use std::net::SocketAddr;
use std::path::PathBuf;

#[derive(Parser)]
#[command(version, about = "Install signed MineBox snapshots")]
struct Cli {
    #[command(subcommand)]
    command: Cmd,
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
        /// For a utxo snapshot: the Bitcoin Core RPC URL to hand the file to (loadtxoutset).
        #[arg(long, requires = "node_cookie")]
        node_url: Option<String>,
        /// The node's RPC credentials file (user:password).
        #[arg(long)]
        node_cookie: Option<PathBuf>,
    },
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    minebox_systemd::init_logging();
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
    } = Cli::parse().command;
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
    minebox_systemd::ready();
    let report = install::install(opts, progress).await?;
    println!("{}", serde_json::to_string(&report)?);
    let kind = install::installed(&dest).map(|i| i.kind);
    if let (Some(minebox_snapshot::Kind::Utxo), Some(url), Some(cookie)) = (kind, node_url, node_cookie) {
        let node = minebox_node_rpc::NodeClient::new(&url, minebox_node_rpc::Auth::CookieFile(cookie))?;
        let loaded = minebox_snapshot_agent::utxo::load(&node, &dest.join("utxo.dat")).await?;
        println!("{}", serde_json::to_string(&loaded)?);
        println!("{}", serde_json::to_string(&minebox_snapshot_agent::utxo::validation(&node).await?)?);
    }
    Ok(())
}
