//! Simulated Bitaxes for the local demo: `minebox-simminer --url stratum+tcp://127.0.0.1:3333
//! --user ADDRESS.worker --miners 3 --hashrate 200000`.

use clap::Parser;
use minebox_simminer::{MinerConfig, Report};
use std::sync::atomic::AtomicBool;
use std::sync::{Arc, Mutex};
use std::time::Duration;

#[derive(Parser)]
#[command(about = "Simulated Bitaxe miners (CPU hashing, ESP-Miner's Stratum V1 sequence)")]
struct Cli {
    #[arg(long, default_value = "stratum+tcp://127.0.0.1:3333")]
    url: String,
    /// Payout address, optionally followed by .worker (each miner gets its own suffix).
    #[arg(long)]
    user: String,
    #[arg(long, default_value_t = 1)]
    miners: usize,
    /// Hashes per second per miner (a CPU core does a few million at most).
    #[arg(long, default_value_t = 100_000.0)]
    hashrate: f64,
    #[arg(long)]
    suggest_difficulty: Option<f64>,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_env_filter(tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()))
        .init();
    let cli = Cli::parse();
    let stop = Arc::new(AtomicBool::new(false));
    let mut reports = Vec::new();
    for i in 0..cli.miners {
        let user = match (cli.miners, cli.user.contains('.')) {
            (1, _) => cli.user.clone(),
            (_, true) => format!("{}-{}", cli.user, i + 1),
            (_, false) => format!("{}.sim{}", cli.user, i + 1),
        };
        let mut config = MinerConfig::bitaxe(&cli.url, &user);
        config.hashrate = Some(cli.hashrate);
        config.suggest_difficulty = cli.suggest_difficulty;
        let report = Arc::new(Mutex::new(Report::default()));
        reports.push((user.clone(), report.clone()));
        let stop = stop.clone();
        tokio::spawn(async move {
            loop {
                if let Err(e) = minebox_simminer::run(config.clone(), report.clone(), stop.clone()).await {
                    tracing::warn!(miner = %user, error = %e, "miner disconnected; reconnecting in 5 s");
                }
                if stop.load(std::sync::atomic::Ordering::Relaxed) {
                    return;
                }
                // Like a Bitaxe: keep trying to reach the pool.
                tokio::time::sleep(Duration::from_secs(5)).await;
            }
        });
    }
    let mut every = tokio::time::interval(Duration::from_secs(30));
    every.tick().await;
    loop {
        tokio::select! {
            _ = tokio::signal::ctrl_c() => break,
            _ = every.tick() => {
                for (user, r) in &reports {
                    let r = r.lock().unwrap();
                    tracing::info!(miner = %user, accepted = r.accepted, rejected = r.rejected.values().sum::<u64>(), difficulty = r.difficulty, "shares");
                }
            }
        }
    }
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    Ok(())
}
