//! `minebox-supervisor`: runs the coin nodes the settings file enables.

use anyhow::Context;
use clap::Parser;
use minebox_supervisor::backend::{Backend, ProcessBackend, Systemctl, SystemdBackend};
use minebox_supervisor::keeper::Policy;
use std::path::PathBuf;
use std::time::Duration;

#[derive(Parser)]
#[command(version, about = "MineBox supervisor: runs and watches the coin nodes")]
struct Cli {
    /// The user's settings file.
    #[arg(long, default_value = "/data/minebox/minebox.toml")]
    config: PathBuf,
    /// The image defaults (built-in defaults when absent).
    #[arg(long)]
    defaults: Option<PathBuf>,
    /// Override the settings' backend: systemd (the box) or process (development).
    #[arg(long)]
    backend: Option<String>,
    /// Override where node data directories go.
    #[arg(long)]
    data_dir: Option<PathBuf>,
    /// Coin descriptors directory (built-in descriptors when absent).
    #[arg(long)]
    coins: Option<PathBuf>,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    minebox_platform::lifecycle::init_logging();
    let cli = Cli::parse();
    let registry = match &cli.coins {
        Some(dir) => minebox_coin::Registry::load_dir(dir)?,
        None => minebox_coin::Registry::embedded(),
    };
    // A wrong value stops the service here, with the file and key in the message.
    let mut settings = minebox_settings::Settings::load(Some(&cli.config), cli.defaults.as_deref(), &registry)?;
    if let Some(d) = cli.data_dir {
        settings.paths.nodes = d.join("nodes");
        settings.paths.secrets = d.join("secrets");
    }
    let backend_name = cli.backend.unwrap_or_else(|| format!("{:?}", settings.supervisor.backend).to_lowercase());
    let backend = match backend_name.as_str() {
        "systemd" => Backend::Systemd(SystemdBackend { systemctl: Systemctl::Real }),
        "process" => Backend::Process(ProcessBackend),
        other => anyhow::bail!("--backend {other}: use systemd or process"),
    };
    let policy = Policy {
        disk_reserve_mib: settings.supervisor.disk_reserve_mib,
        stall_after: Duration::from_secs(settings.supervisor.stall_after_secs),
        ..Policy::default()
    };
    let api = settings.supervisor.api.parse().context("supervisor.api must be host:port")?;
    let sup = minebox_supervisor::start(&settings, backend, policy, api).await?;
    tracing::info!(api = %sup.api, "supervisor ready");
    minebox_platform::lifecycle::ready();
    minebox_platform::lifecycle::terminated().await;
    tracing::info!("stopping every node cleanly");
    sup.stop().await;
    Ok(())
}
