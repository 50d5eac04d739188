//! `minebox-cloud-load`: the heartbeat load of issue 16's figure against a running MineBox Cloud
//! (docs/benchmarks.md, "MineBox Cloud"). Not a test: it prints what it measured.
//!
//! It links `--devices` simulated boxes to one throwaway account directly in the database (as the
//! owner, for speed; each box has a real Ed25519 key), then sends each one's signed heartbeat once
//! per `--interval-secs`, spread evenly, for `--duration-secs`, through `minebox-cloud-link` as a
//! box would. It prints requests per second, latency percentiles, errors, and the database's
//! growth extrapolated to bytes per device per month.

use clap::Parser;
use minebox_cloud_link::telemetry::{CoinReport, Heartbeat, SyncState};
use minebox_cloud_link::{CloudLink, DeviceKey, LinkError};
use rand::RngCore;
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

#[derive(Parser)]
#[command(name = "minebox-cloud-load", about = "Heartbeat load against a running MineBox Cloud")]
struct Args {
    /// The database owner's connection (to link the simulated boxes and measure table sizes).
    #[arg(long, env = "MINEBOX_CLOUD_DATABASE_URL")]
    database_url: String,
    /// The service's address, e.g. http://127.0.0.1:8080.
    #[arg(long)]
    base: String,
    /// How many boxes to simulate.
    #[arg(long, default_value_t = 10_000)]
    devices: usize,
    /// Each box sends a heartbeat this often.
    #[arg(long, default_value_t = 60)]
    interval_secs: u64,
    /// How long to send.
    #[arg(long, default_value_t = 60)]
    duration_secs: u64,
    /// At most this many requests in flight (a request over it waits, and its wait counts).
    #[arg(long, default_value_t = 512)]
    max_in_flight: usize,
}

/// Bytes of the tables telemetry and signed requests write (partitions included).
async fn sizes(db: &tokio_postgres::Client) -> anyhow::Result<BTreeMap<&'static str, i64>> {
    let mut out = BTreeMap::new();
    for (name, sql) in [
        (
            "device_metrics",
            "SELECT coalesce(sum(pg_total_relation_size(inhrelid)), 0)::int8 FROM pg_inherits
              WHERE inhparent = 'device_metrics'::regclass",
        ),
        ("device_coins", "SELECT pg_total_relation_size('device_coins')::int8"),
        ("device_nonces", "SELECT pg_total_relation_size('device_nonces')::int8"),
        ("devices", "SELECT pg_total_relation_size('devices')::int8"),
    ] {
        out.insert(name, db.query_one(sql, &[]).await?.get(0));
    }
    Ok(out)
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    sorted[((sorted.len() - 1) as f64 * p).round() as usize]
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    anyhow::ensure!(args.devices > 0 && args.interval_secs > 0, "--devices and --interval-secs must be above 0");
    let (db, connection) = tokio_postgres::connect(&args.database_url, tokio_postgres::NoTls).await?;
    tokio::spawn(connection);

    // The boxes: real keys, linked to one account made for the run.
    let mut tag = [0u8; 6];
    rand::rngs::OsRng.fill_bytes(&mut tag);
    let email = format!("load-{}@example.invalid", hex::encode(tag));
    let keys: Vec<DeviceKey> = (0..args.devices)
        .map(|_| {
            let mut seed = [0u8; 32];
            rand::rngs::OsRng.fill_bytes(&mut seed);
            DeviceKey::from_seed(seed)
        })
        .collect();
    let publics: Vec<String> = keys.iter().map(DeviceKey::public_hex).collect();
    let user: uuid::Uuid = db
        .query_one("INSERT INTO users (email, password_hash) VALUES ($1, '!load-test') RETURNING id", &[&email])
        .await?
        .get(0);
    db.execute(
        "INSERT INTO devices (user_id, device_fingerprint, name, linked_at, version)
         SELECT $1, k, 'load ' || n, now(), '0.1.0' FROM unnest($2::text[]) WITH ORDINALITY AS t (k, n)",
        &[&user, &publics],
    )
    .await?;
    println!("linked {} simulated boxes to {email} ({user})", args.devices);

    let before = sizes(&db).await?;
    let first = CloudLink::new(&args.base, DeviceKey::from_seed([7; 32]));
    let links: Arc<Vec<CloudLink>> = Arc::new(keys.into_iter().map(|k| first.sharing(k)).collect());
    let beat = Arc::new(Heartbeat {
        version: "0.1.0".into(),
        uptime_secs: 86_400,
        coins: vec![
            CoinReport {
                coin: "btc".into(),
                height: 870_000,
                headers: 870_000,
                sync_progress: 1.0,
                state: SyncState::Ready,
                hashrate_hs: Some(1.1e12),
            },
            CoinReport {
                coin: "bch".into(),
                height: 880_000,
                headers: 900_000,
                sync_progress: 0.97,
                state: SyncState::Syncing,
                hashrate_hs: None,
            },
        ],
    });

    // One heartbeat every interval/devices, boxes in turn: the steady rate of every box beating
    // once per interval.
    let gap = Duration::from_secs_f64(args.interval_secs as f64 / args.devices as f64);
    let total = (args.duration_secs as f64 / gap.as_secs_f64()).floor() as usize;
    println!(
        "sending {total} heartbeats at {:.1}/s for {} s (max {} in flight)",
        1.0 / gap.as_secs_f64(),
        args.duration_secs,
        args.max_in_flight
    );
    let permits = Arc::new(tokio::sync::Semaphore::new(args.max_in_flight));
    let started = Instant::now();
    let mut tasks = Vec::with_capacity(total);
    for i in 0..total {
        let due = started + gap.mul_f64(i as f64);
        tokio::time::sleep_until(due.into()).await;
        let (links, beat, permits) = (links.clone(), beat.clone(), permits.clone());
        tasks.push(tokio::spawn(async move {
            // Latency from when the heartbeat was due: waiting for a free slot counts.
            let _permit = permits.acquire_owned().await.expect("semaphore open");
            let result = links[i % links.len()].heartbeat(&beat).await;
            (due.elapsed(), result.err())
        }));
    }
    let mut latencies = Vec::with_capacity(total);
    let mut errors: BTreeMap<String, usize> = BTreeMap::new();
    for task in tasks {
        let (latency, error) = task.await?;
        latencies.push(latency);
        if let Some(e) = error {
            let kind = match e {
                LinkError::Refused { status, message } => format!("{status}: {message}"),
                other => other.to_string(),
            };
            *errors.entry(kind).or_default() += 1;
        }
    }
    let elapsed = started.elapsed();
    latencies.sort();
    let failed: usize = errors.values().sum();
    println!(
        "{} heartbeats in {:.1} s: {:.1} requests/s; latency p50 {:.1} ms, p99 {:.1} ms, max {:.1} ms; {failed} errors",
        latencies.len(),
        elapsed.as_secs_f64(),
        latencies.len() as f64 / elapsed.as_secs_f64(),
        percentile(&latencies, 0.50).as_secs_f64() * 1e3,
        percentile(&latencies, 0.99).as_secs_f64() * 1e3,
        latencies.last().copied().unwrap_or_default().as_secs_f64() * 1e3,
    );
    for (kind, n) in &errors {
        println!("  {n} x {kind}");
    }

    // Growth: device_metrics grows by one row per heartbeat; device_coins and devices hold a
    // fixed amount per box; nonces past NONCE_KEEP_SECS are purged by the daily upkeep, so just
    // before it their table holds up to a day of requests.
    let after = sizes(&db).await?;
    let ok = (latencies.len() - failed).max(1) as f64;
    let grew = |t: &str| (after[t] - before[t]).max(0) as f64;
    let per_metrics_row = grew("device_metrics") / ok;
    let beats_per_month = 30.0 * 86_400.0 / args.interval_secs as f64;
    let metrics_month = per_metrics_row * beats_per_month;
    let fixed = (after["device_coins"] + after["devices"]) as f64 / args.devices as f64;
    let rate = args.devices as f64 / args.interval_secs as f64;
    let nonce_rows = rate * 86_400.0;
    let per_nonce_row = grew("device_nonces") / ok;
    println!(
        "database: device_metrics {:.0} bytes per heartbeat (with indexes) -> {:.1} MB per box per month at one \
         heartbeat per {} s; device_coins + devices {:.0} bytes per box (fixed); device_nonces up to \
         {:.1} MB before the daily purge ({nonce_rows:.0} rows at {per_nonce_row:.0} bytes; rows older than {} s go)",
        per_metrics_row,
        metrics_month / 1e6,
        args.interval_secs,
        fixed,
        nonce_rows * per_nonce_row / 1e6,
        minebox_cloud::devices::NONCE_KEEP_SECS,
    );
    println!("sizes before {before:?}\nsizes after  {after:?}");
    println!("the account {email} and its boxes are left in the database: delete the user to remove them");
    Ok(())
}
