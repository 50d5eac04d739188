//! The stratum benchmark: a real bcoin regtest node, the real `minebox-stratum` binary as
//! its own process, and N load connections speaking the Bitaxe sequence.
//!
//! For each N it reports: shares validated per second per core (accepted shares divided by
//! the server's CPU time), the latency from a new block at the node to the first and the
//! last miner receiving its clean mining.notify (new blocks are announced over ZMQ, as
//! bitcoind does on the box), server memory per connection, and (at N=100) idle CPU.
//!
//! `scripts/bench-stratum` builds the release binaries and runs this.

use anyhow::{bail, Context};
use clap::Parser;
use minebox_regtest::{Bcoin, ZmqPublisher};
use minebox_simminer::load::{LoadConnection, LoadStats};
use serde::Serialize;
use std::path::PathBuf;
use std::process::Stdio;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::process::{Child, Command};

#[derive(Parser)]
struct Cli {
    /// The server binary (release build).
    #[arg(long, default_value = concat!(env!("CARGO_MANIFEST_DIR"), "/../../../target/release/minebox-stratum"))]
    server: PathBuf,
    /// Miner counts to run, comma-separated.
    #[arg(long, default_value = "1,100,1000,5000", value_delimiter = ',')]
    miners: Vec<usize>,
    /// Seconds of share load per run.
    #[arg(long, default_value_t = 15)]
    share_secs: u64,
    /// Shares per second offered in all (split over the miners, at most 2000 each).
    #[arg(long, default_value_t = 20_000.0)]
    offered: f64,
    /// New blocks per run for the notify latency.
    #[arg(long, default_value_t = 10)]
    blocks: usize,
    /// Seconds of idle measurement (at N=100).
    #[arg(long, default_value_t = 30)]
    idle_secs: u64,
    /// Write the results as JSON here too.
    #[arg(long)]
    json: Option<PathBuf>,
}

#[derive(Serialize, Default, Debug)]
struct RunResult {
    miners: usize,
    connect_secs: f64,
    rss_kib_before: u64,
    rss_kib_connected: u64,
    kib_per_connection: f64,
    shares_accepted: u64,
    shares_rejected: u64,
    shares_per_sec: f64,
    server_cpu_secs: f64,
    shares_per_cpu_sec: f64,
    notify_first_ms_p50: f64,
    notify_last_ms_p50: f64,
    notify_last_ms_p99: f64,
    notify_last_ms_max: f64,
    idle_cpu_percent: Option<f64>,
}

fn proc_stat(pid: u32) -> anyhow::Result<(f64, u64)> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))?;
    let after = &stat[stat.rfind(')').context("stat format")? + 2..];
    let f: Vec<&str> = after.split_whitespace().collect();
    let ticks: u64 = f[11].parse::<u64>()? + f[12].parse::<u64>()?;
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    let rss = status
        .lines()
        .find(|l| l.starts_with("VmRSS:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    // Linux reports CPU time in USER_HZ, 100 on every platform MineBox runs on.
    Ok((ticks as f64 / 100.0, rss))
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i]
}

async fn wait_until(what: &str, timeout: Duration, mut f: impl FnMut() -> bool) -> anyhow::Result<()> {
    let started = Instant::now();
    while !f() {
        if started.elapsed() > timeout {
            bail!("timed out waiting for {what}");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    Ok(())
}

async fn start_server(cli: &Cli, node: &Bcoin, zmq: &str, dir: &std::path::Path) -> anyhow::Result<(Child, u16)> {
    let port = free_port();
    let api = free_port();
    let child = Command::new(&cli.server)
        .args(["--coin", "btc", "--network", "regtest"])
        .args(["--listen", &format!("127.0.0.1:{port}")])
        .args(["--api", &format!("127.0.0.1:{api}")])
        .args(["--node-url", &node.rpc_url()])
        .args(["--zmq-hashblock", zmq])
        .args(["--database", &dir.join("state.db").display().to_string()])
        // Share difficulty below the regtest network's, fixed: every non-block hash is a share.
        .args(["--start-difficulty", "1e-10", "--min-difficulty", "1e-10", "--max-difficulty", "1e-10"])
        .args([
            "--connections-per-ip",
            "20000",
            "--max-connections",
            "20000",
            "--messages-per-sec",
            "10000",
            "--message-burst",
            "100000",
            // Every load connection comes from 127.0.0.1 with its own worker name: lift the
            // per-address rates meant for a hostile LAN client.
            "--new-connections-per-sec",
            "1000000",
            "--new-connection-burst",
            "1000000",
            "--new-workers-per-min",
            "1000000000",
            "--new-worker-burst",
            "1000000",
        ])
        .args(["--block-poll-ms", "3600000", "--template-refresh-secs", "3600"])
        .env("MINEBOX_NODE_PASSWORD", node.api_key())
        .env("RUST_LOG", "warn")
        .stdin(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .with_context(|| {
            format!("starting {} (build it with cargo build --release -p minebox-stratum)", cli.server.display())
        })?;
    let started = Instant::now();
    while tokio::net::TcpStream::connect(("127.0.0.1", port)).await.is_err() {
        if started.elapsed() > Duration::from_secs(20) {
            bail!("server did not listen");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    Ok((child, port))
}

async fn run(cli: &Cli, miners: usize) -> anyhow::Result<RunResult> {
    let node = Bcoin::start().await?;
    let mut zmq = ZmqPublisher::start().await;
    let dir = tempfile::tempdir()?;
    let (mut server, port) = start_server(cli, &node, &zmq.endpoint, dir.path()).await?;
    let pid = server.id().context("server pid")?;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let mut r = RunResult { miners, ..Default::default() };
    let (_, rss0) = proc_stat(pid)?;
    r.rss_kib_before = rss0;

    let stats = Arc::new(LoadStats::default());
    let stop = Arc::new(AtomicBool::new(false));
    let rate = Arc::new(Mutex::new(0.0));
    let url = format!("stratum+tcp://127.0.0.1:{port}");
    let user = "mipcBbFg9gMiCh81Kj8tqqdgoZub1ZJRfn";
    let t0 = Instant::now();
    let mut tasks = Vec::new();
    for i in 0..miners {
        let c = LoadConnection {
            url: url.clone(),
            user: format!("{user}.load{i}"),
            shares_per_sec: rate.clone(),
            stats: stats.clone(),
            stop: stop.clone(),
        };
        tasks.push(tokio::spawn(c.run()));
        // Stay under the listen backlog.
        if i % 200 == 199 {
            let target = (i + 1) as u64;
            wait_until("connections", Duration::from_secs(60), || stats.with_job.load(Ordering::Relaxed) >= target)
                .await?;
        }
    }
    wait_until("every miner to get a job", Duration::from_secs(120), || {
        stats.with_job.load(Ordering::Relaxed) >= miners as u64
    })
    .await?;
    r.connect_secs = t0.elapsed().as_secs_f64();
    tokio::time::sleep(Duration::from_secs(1)).await;
    let (_, rss1) = proc_stat(pid)?;
    r.rss_kib_connected = rss1;
    r.kib_per_connection = (rss1 as f64 - rss0 as f64) / miners as f64;

    if miners == 100 {
        let (c0, _) = proc_stat(pid)?;
        tokio::time::sleep(Duration::from_secs(cli.idle_secs)).await;
        let (c1, _) = proc_stat(pid)?;
        r.idle_cpu_percent = Some((c1 - c0) / cli.idle_secs as f64 * 100.0);
    }

    // Shares.
    let per_miner = (cli.offered / miners as f64).min(2000.0);
    let (c0, _) = proc_stat(pid)?;
    let a0 = stats.accepted.load(Ordering::Relaxed);
    let j0 = stats.rejected.load(Ordering::Relaxed);
    *rate.lock().unwrap() = per_miner;
    tokio::time::sleep(Duration::from_secs(cli.share_secs)).await;
    *rate.lock().unwrap() = 0.0;
    tokio::time::sleep(Duration::from_secs(2)).await;
    let (c1, _) = proc_stat(pid)?;
    r.shares_accepted = stats.accepted.load(Ordering::Relaxed) - a0;
    r.shares_rejected = stats.rejected.load(Ordering::Relaxed) - j0;
    r.shares_per_sec = r.shares_accepted as f64 / cli.share_secs as f64;
    r.server_cpu_secs = c1 - c0;
    r.shares_per_cpu_sec = r.shares_accepted as f64 / r.server_cpu_secs.max(0.01);

    // New blocks: node -> ZMQ -> template -> every miner.
    let client = node.client();
    let mut first = Vec::new();
    let mut last = Vec::new();
    for b in 0..cli.blocks {
        let start = Instant::now();
        let hashes = client.generate_to_address(1, &minebox_regtest::bcoin_p2pkh_address([b as u8; 20])).await?;
        zmq.publish(&hashes[0].to_string()).await;
        let key = bitcoin::hashes::Hash::to_byte_array(hashes[0]);
        wait_until("every miner to get the new block's job", Duration::from_secs(60), || {
            stats.clean_arrivals.lock().unwrap().get(&key).map(|v| v.len()).unwrap_or(0) >= miners
        })
        .await?;
        let arrivals = stats.clean_arrivals.lock().unwrap().remove(&key).unwrap_or_default();
        let ms = |t: &Instant| t.duration_since(start).as_secs_f64() * 1000.0;
        first.push(arrivals.iter().map(ms).fold(f64::MAX, f64::min));
        last.push(arrivals.iter().map(ms).fold(0.0, f64::max));
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    first.sort_by(f64::total_cmp);
    last.sort_by(f64::total_cmp);
    r.notify_first_ms_p50 = percentile(&first, 0.5);
    r.notify_last_ms_p50 = percentile(&last, 0.5);
    r.notify_last_ms_p99 = percentile(&last, 0.99);
    r.notify_last_ms_max = last.last().copied().unwrap_or(f64::NAN);

    stop.store(true, Ordering::Relaxed);
    for t in tasks {
        let _ = t.await;
    }
    // SIGTERM, as systemd would: the server closes connections and writes statistics.
    let _ = minebox_platform::process::send(pid, minebox_platform::process::Signal::SIGTERM);
    let _ = tokio::time::timeout(Duration::from_secs(10), server.wait()).await;
    Ok(r)
}

#[tokio::main(flavor = "multi_thread")]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let mut results = Vec::new();
    for &n in &cli.miners {
        eprintln!("running with {n} miners...");
        let r = run(&cli, n).await?;
        eprintln!("{r:?}");
        results.push(r);
    }
    println!("| miners | shares/s accepted | server CPU s | shares per CPU-second | new block -> first notify p50 | -> last notify p50 / p99 / max | server RSS connected | KiB per connection | idle CPU |");
    println!("|---|---|---|---|---|---|---|---|---|");
    for r in &results {
        println!(
            "| {} | {:.0} | {:.2} | {:.0} | {:.1} ms | {:.1} / {:.1} / {:.1} ms | {:.1} MiB | {:.1} | {} |",
            r.miners,
            r.shares_per_sec,
            r.server_cpu_secs,
            r.shares_per_cpu_sec,
            r.notify_first_ms_p50,
            r.notify_last_ms_p50,
            r.notify_last_ms_p99,
            r.notify_last_ms_max,
            r.rss_kib_connected as f64 / 1024.0,
            r.kib_per_connection,
            r.idle_cpu_percent.map(|c| format!("{c:.2}% of a core")).unwrap_or_else(|| "-".into()),
        );
    }
    if let Some(path) = &cli.json {
        std::fs::write(path, serde_json::to_string_pretty(&results)?)?;
    }
    Ok(())
}
