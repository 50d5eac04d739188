//! `minebox-status --config FILE [--defaults FILE]`: the status page and API.

use clap::Parser;
use std::path::PathBuf;
use std::sync::Arc;

#[derive(Parser)]
#[command(version, about = "MineBox status page and REST API")]
struct Cli {
    /// The user's settings file (the page writes it).
    #[arg(long)]
    config: PathBuf,
    /// The image defaults (built-in defaults when absent).
    #[arg(long)]
    defaults: Option<PathBuf>,
    /// Listen address; the settings' status.listen when absent.
    #[arg(long)]
    listen: Option<String>,
    /// The old password file (the settings' status.accounts when absent); the users
    /// database is made beside it (users.db) and takes its passwords on first start.
    #[arg(long)]
    accounts: Option<PathBuf>,
    /// The data partition, for disk figures (the settings file's directory when absent).
    #[arg(long)]
    data_dir: Option<PathBuf>,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    minebox_platform::lifecycle::init_logging();
    let cli = Cli::parse();
    let app = minebox_status::app::App::new(minebox_status::app::Options {
        config: cli.config,
        defaults: cli.defaults,
        registry: minebox_coin::Registry::installed()?,
        accounts: cli.accounts,
        data_dir: cli.data_dir,
    })?;
    let listen = cli.listen.unwrap_or_else(|| app.settings().status.listen.to_string());
    let listener = tokio::net::TcpListener::bind(&listen)
        .await
        .map_err(|e| anyhow::anyhow!("cannot listen on {listen}: {e}; is another web server running there?"))?;
    tracing::info!(%listen, "status page up");
    if app.accounts.setup_needed()? {
        tracing::info!("no admin user yet: the first visitor of the page chooses the first admin's password");
    }
    minebox_platform::lifecycle::ready();
    minebox_status::serve(Arc::new(app), listener, minebox_platform::lifecycle::terminated()).await?;
    tracing::info!("status page stopped");
    Ok(())
}
