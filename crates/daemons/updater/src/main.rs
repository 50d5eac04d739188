//! `minebox-updater`: the update daemon (no subcommand), and commands for operators and
//! system tests that talk to it (`status`, `check`, `install`) or run the health check.

use anyhow::{bail, Context};
use clap::{Parser, Subcommand};
use minebox_settings::Settings;
use minebox_updater::health::HealthCheck;
use minebox_updater::health::HealthConfig;
use minebox_updater::updater::Updater;
use std::path::PathBuf;
use std::process::ExitCode;

#[derive(Parser)]
#[command(version, about = "MineBox updater: signed RAUC bundles, tryboot trial, health check")]
struct Cli {
    /// The user's settings file.
    #[arg(long, global = true, default_value = "/data/minebox/minebox.toml")]
    config: PathBuf,
    /// The image defaults (built-in defaults when absent).
    #[arg(long, global = true)]
    defaults: Option<PathBuf>,
    #[command(subcommand)]
    cmd: Option<Cmd>,
}

#[derive(Subcommand)]
enum Cmd {
    /// Print the daemon's status (JSON).
    Status,
    /// Ask the daemon to check the channel now; print what it found.
    Check,
    /// Install a bundle file or URL through the daemon.
    Install {
        /// A .raucb file on this machine, or an http(s) URL of one.
        bundle: String,
        /// `now` reboots into it as soon as it is installed; `window` waits for the reboot window.
        #[arg(long, default_value = "window", value_parser = ["now", "window"])]
        reboot: String,
    },
    /// Run the post-boot health check once; exit 0 when healthy.
    Health,
}

fn settings(cli: &Cli) -> anyhow::Result<Settings> {
    let registry = minebox_coin::Registry::installed()?;
    Ok(Settings::load(Some(&cli.config), cli.defaults.as_deref(), &registry)?)
}

#[tokio::main]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    let r = match &cli.cmd {
        None => daemon(&cli).await.map(|_| ExitCode::SUCCESS),
        Some(cmd) => command(&cli, cmd).await,
    };
    r.unwrap_or_else(|e| {
        eprintln!("minebox-updater: {e:#}");
        ExitCode::FAILURE
    })
}

async fn daemon(cli: &Cli) -> anyhow::Result<()> {
    minebox_platform::lifecycle::init_logging();
    let s = settings(cli)?;
    let cfg = &s.updates;
    let listener = tokio::net::TcpListener::bind(cfg.api).await.with_context(|| format!("binding {}", cfg.api))?;
    let (updater, handle, commands) = Updater::new(cfg.clone(), HealthConfig::from_settings(&s)).await?;
    let status = handle.status.borrow().clone();
    tracing::info!(api = %cfg.api, version = %status.current.version, slot = %status.current.slot,
        trial = status.current.trial, "updater ready");
    let worker = tokio::spawn(updater.run(commands));
    let app = minebox_updater::api::router(handle);
    let server = tokio::spawn(async move { axum::serve(listener, app).await });
    minebox_platform::lifecycle::ready();
    tokio::select! {
        _ = minebox_platform::lifecycle::terminated() => tracing::info!("stopping (a download resumes at the next start)"),
        r = worker => r.context("the updater worker stopped")?,
        r = server => r?.context("the API server stopped")?,
    }
    Ok(())
}

async fn command(cli: &Cli, cmd: &Cmd) -> anyhow::Result<ExitCode> {
    let s = settings(cli)?;
    let cfg = &s.updates;
    let base = format!("http://{}/api/v1/update", cfg.api);
    let client = reqwest::Client::new();
    let resp = match cmd {
        Cmd::Health => {
            let report = HealthCheck::new(HealthConfig::from_settings(&s)).once().await;
            println!("{}", serde_json::to_string_pretty(&report)?);
            return Ok(if report.healthy { ExitCode::SUCCESS } else { ExitCode::FAILURE });
        }
        Cmd::Status => client.get(&base).send().await,
        Cmd::Check => client.post(format!("{base}/check")).send().await,
        Cmd::Install { bundle, reboot } if bundle.starts_with("http://") || bundle.starts_with("https://") => {
            let body = serde_json::json!({ "url": bundle, "reboot": reboot });
            client.post(format!("{base}/install?wait=true")).json(&body).send().await
        }
        Cmd::Install { bundle, reboot } => {
            let f = tokio::fs::File::open(bundle).await.with_context(|| bundle.clone())?;
            let body = reqwest::Body::wrap_stream(tokio_util_stream(f));
            client
                .post(format!("{base}/upload?reboot={reboot}&wait=true"))
                .header("content-type", "application/octet-stream")
                .body(body)
                .send()
                .await
        }
    }
    .with_context(|| format!("the updater at {} (is minebox-updater running?)", cfg.api))?;
    let ok = resp.status().is_success();
    let text = resp.text().await?;
    match serde_json::from_str::<serde_json::Value>(&text) {
        Ok(v) if ok => println!("{}", serde_json::to_string_pretty(&v)?),
        Ok(v) => bail!("{}", v.get("error").and_then(|e| e.as_str()).unwrap_or(&text)),
        Err(_) if ok => println!("{text}"),
        Err(_) => bail!("{text}"),
    }
    Ok(ExitCode::SUCCESS)
}

/// A file as a stream of 64 KiB chunks (bounded memory for a 1 GiB bundle).
fn tokio_util_stream(
    f: tokio::fs::File,
) -> impl futures::Stream<Item = std::io::Result<bytes::Bytes>> + Send + Sync + 'static {
    futures::stream::unfold(f, |mut f| async move {
        use tokio::io::AsyncReadExt;
        let mut buf = vec![0u8; 64 * 1024];
        match f.read(&mut buf).await {
            Ok(0) => None,
            Ok(n) => {
                buf.truncate(n);
                Some((Ok(bytes::Bytes::from(buf)), f))
            }
            Err(e) => Some((Err(e), f)),
        }
    })
}
