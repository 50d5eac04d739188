//! `minebox-supervisor`: runs the coin nodes the settings file enables.

use clap::Parser;
use minebox_supervisor::backend::{Backend, ProcessBackend, Systemctl, SystemdBackend};
use minebox_supervisor::keeper::Policy;
use std::path::PathBuf;

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
    /// Coin descriptors beside the built-in ones (the image's /usr/share/minebox/coins when absent).
    #[arg(long)]
    coins: Option<PathBuf>,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    minebox_platform::lifecycle::init_logging();
    let cli = Cli::parse();
    let registry = match &cli.coins {
        Some(dir) => minebox_coin::Registry::image(dir)?,
        None => minebox_coin::Registry::installed()?,
    };
    // A wrong value stops the service here, with the file and key in the message.
    let mut settings = minebox_settings::Settings::load(Some(&cli.config), cli.defaults.as_deref(), &registry)?;
    if let Some(d) = cli.data_dir {
        settings.paths.nodes = d.join("nodes");
        settings.paths.secrets = d.join("secrets");
    }
    let backend = match cli.backend.as_deref().map(str::parse) {
        None => settings.supervisor.backend,
        Some(Ok(b)) => b,
        Some(Err(_)) => anyhow::bail!("--backend {}: use systemd or process", cli.backend.unwrap_or_default()),
    };
    let backend = match backend {
        minebox_settings::Backend::Systemd => Backend::Systemd(SystemdBackend { systemctl: Systemctl::Real }),
        minebox_settings::Backend::Process => Backend::Process(ProcessBackend),
    };
    let policy = Policy::from(&settings.supervisor);
    let sup = minebox_supervisor::start(&settings, backend, policy, settings.supervisor.api).await?;
    tracing::info!(api = %sup.api, "supervisor ready");
    minebox_platform::lifecycle::ready();
    minebox_platform::lifecycle::terminated().await;
    tracing::info!("stopping every node cleanly");
    sup.stop().await;
    Ok(())
}
