//! `minebox-cloud-load`: the heartbeat load of issue 16's figure against a running MineBox Cloud
//! (docs/benchmarks.md, "MineBox Cloud"). Not a test: it prints what it measured.
//!
//! It links `--devices` simulated boxes to one throwaway account directly in the database (as the
//! owner, for speed; each box has a real Ed25519 key), then sends each one's signed heartbeat once
//! per `--interval-secs`, spread evenly, for `--duration-secs`, through `minebox-cloud-link` as a
//! box would. It prints requests per second, latency percentiles, errors, and the database's
//! growth extrapolated to bytes per device per month.
//!
//! With `--snapshot-grants N` (500 by default), N more boxes, each linked to an account of its
//! own (free plan), ask at once, a tenth into the heartbeat run, for a snapshot: a grant, then
//! URLs for a batch of `--chunks-per-batch` chunks. The snapshot is a synthetic catalogue entry
//! the tool writes as the owner (random chunk names, 1 MiB each) in `--snapshot-bucket`, which
//! the service must serve (`--snapshot-bucket`, any credentials: presigning makes no request to
//! the store). It prints their latencies and what the metering rows cost per download.

use clap::Parser;
use minebox_cloud_link::snapshots::{ChunkRequest, GrantRequest};
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
    /// Boxes asking for a snapshot at once (0: none).
    #[arg(long, default_value_t = 500)]
    snapshot_grants: usize,
    /// Chunk URLs each of them asks for after its grant.
    #[arg(long, default_value_t = 64)]
    chunks_per_batch: usize,
    /// The bucket the service was started with (`serve --snapshot-bucket`).
    #[arg(long, default_value = "minebox-snapshots")]
    snapshot_bucket: String,
}

/// Bytes of the tables a snapshot download writes.
async fn download_sizes(db: &tokio_postgres::Client) -> anyhow::Result<i64> {
    Ok(db
        .query_one(
            "SELECT (coalesce((SELECT sum(pg_total_relation_size(inhrelid)) FROM pg_inherits
                                WHERE inhparent = 'snapshot_downloads'::regclass), 0)
                     + pg_total_relation_size('snapshot_download_chunks'))::int8",
            &[],
        )
        .await?
        .get(0))
}

/// A catalogue entry of `chunks` random 1 MiB chunks for `network`, current; its chunk names.
async fn seed_snapshot(
    db: &tokio_postgres::Client,
    network: &str,
    bucket: &str,
    chunks: usize,
) -> anyhow::Result<Vec<String>> {
    let names: Vec<String> = (0..chunks)
        .map(|_| {
            let mut h = [0u8; 32];
            rand::rngs::OsRng.fill_bytes(&mut h);
            hex::encode(h)
        })
        .collect();
    let id: uuid::Uuid = db
        .query_one(
            "INSERT INTO snapshots (coin_id, network, kind, version, block_height, block_hash, size_bytes,
                                    compressed_size_bytes, chunk_count, merkle_root, manifest_sha256, index_sha256,
                                    key_id, expires_at, is_current, storage_bucket, storage_prefix, registered_by)
             SELECT id, $1::text, 'datadir', 1, 1, '00', $2, $2, $3, '', '', '', 'LOAD', now() + interval '30 days',
                    TRUE, $4, 'load/' || $1::text, 'minebox-cloud-load'
               FROM coins WHERE coin_key = 'btc' RETURNING id",
            &[&network, &((chunks as i64) << 20), &(chunks as i32), &bucket],
        )
        .await?
        .get(0);
    db.execute(
        "INSERT INTO snapshot_chunks (snapshot_id, chunk_index, size_bytes, compressed_size_bytes, checksum_sha256)
         SELECT $1, (n - 1)::int, 1048576, 1048576, h FROM unnest($2::text[]) WITH ORDINALITY AS t (h, n)",
        &[&id, &names],
    )
    .await?;
    Ok(names)
}

/// Latencies and errors of one kind of request.
#[derive(Default)]
struct Measured {
    latencies: Vec<Duration>,
    errors: BTreeMap<String, usize>,
}

impl Measured {
    fn add(&mut self, latency: Duration, error: Option<LinkError>) {
        self.latencies.push(latency);
        if let Some(e) = error {
            let kind = match e {
                LinkError::Refused { status, message } => format!("{status}: {message}"),
                other => other.to_string(),
            };
            *self.errors.entry(kind).or_default() += 1;
        }
    }

    fn report(&mut self, what: &str, elapsed: Duration) {
        self.latencies.sort();
        let failed: usize = self.errors.values().sum();
        println!(
            "{} {what} in {:.1} s: {:.1} requests/s; latency p50 {:.1} ms, p99 {:.1} ms, max {:.1} ms; {failed} errors",
            self.latencies.len(),
            elapsed.as_secs_f64(),
            self.latencies.len() as f64 / elapsed.as_secs_f64(),
            percentile(&self.latencies, 0.50).as_secs_f64() * 1e3,
            percentile(&self.latencies, 0.99).as_secs_f64() * 1e3,
            self.latencies.last().copied().unwrap_or_default().as_secs_f64() * 1e3,
        );
        for (kind, n) in &self.errors {
            println!("  {n} x {kind}");
        }
    }
}

/// The snapshot boxes: one account each, linked directly in the database.
async fn snapshot_boxes(db: &tokio_postgres::Client, tag: &str, n: usize) -> anyhow::Result<Vec<DeviceKey>> {
    let keys: Vec<DeviceKey> = (0..n)
        .map(|_| {
            let mut seed = [0u8; 32];
            rand::rngs::OsRng.fill_bytes(&mut seed);
            DeviceKey::from_seed(seed)
        })
        .collect();
    let publics: Vec<String> = keys.iter().map(DeviceKey::public_hex).collect();
    db.execute(
        "WITH u AS (
             INSERT INTO users (email, password_hash)
             SELECT 'load-' || $1 || '-' || n || '@example.invalid', '!load-test'
               FROM generate_series(1, $2::int) AS n
             RETURNING id, split_part(split_part(email, '@', 1), '-', 3)::int AS n)
         INSERT INTO devices (user_id, device_fingerprint, name, linked_at, version)
         SELECT u.id, k.k, 'load snapshot ' || k.n, now(), '0.1.0'
           FROM unnest($3::text[]) WITH ORDINALITY AS k (k, n) JOIN u ON u.n = k.n",
        &[&tag, &(n as i32), &publics],
    )
    .await?;
    Ok(keys)
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
    let tag = hex::encode(tag);
    let email = format!("load-{tag}@example.invalid");
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

    // The snapshot authorizations' boxes and catalogue entry (a network of the run's own, so
    // runs do not meet).
    let network = format!("l{}", &tag[..8]);
    let chunk_names = Arc::new(if args.snapshot_grants > 0 {
        seed_snapshot(&db, &network, &args.snapshot_bucket, args.chunks_per_batch.max(1) * 4).await?
    } else {
        Vec::new()
    });
    let snapshot_keys = snapshot_boxes(&db, &tag, args.snapshot_grants).await?;
    if args.snapshot_grants > 0 {
        println!(
            "{} more boxes, one account each, will ask at once for btc {network} (grant + {} chunk URLs)",
            args.snapshot_grants, args.chunks_per_batch
        );
    }
    let downloads_before = download_sizes(&db).await?;

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
    // The snapshot authorizations, all at once, a tenth into the heartbeats.
    let grant_links: Vec<CloudLink> = snapshot_keys.into_iter().map(|k| first.sharing(k)).collect();
    let (batch, network_) = (args.chunks_per_batch, network.clone());
    let snapshots = tokio::spawn(async move {
        tokio::time::sleep_until((started + Duration::from_secs(args.duration_secs / 10)).into()).await;
        let at = Instant::now();
        let asks: Vec<_> = grant_links
            .into_iter()
            .enumerate()
            .map(|(i, link)| {
                let (names, network) = (chunk_names.clone(), network_.clone());
                tokio::spawn(async move {
                    let t = Instant::now();
                    let ask = GrantRequest { coin: "btc".into(), network, kind: None };
                    let grant = link.snapshot_grant(&ask).await;
                    let grant_latency = t.elapsed();
                    let (grant, grant_error) = match grant {
                        Ok(g) => (Some(g), None),
                        Err(e) => (None, Some(e)),
                    };
                    let chunks = match grant {
                        Some(g) => {
                            let start = (i * 7) % names.len().saturating_sub(batch).max(1);
                            let want = ChunkRequest { chunks: names[start..(start + batch).min(names.len())].to_vec() };
                            let t = Instant::now();
                            let r = link.chunk_urls(&g.download, &want).await;
                            Some((t.elapsed(), r.err()))
                        }
                        None => None,
                    };
                    ((grant_latency, grant_error), chunks)
                })
            })
            .collect();
        let (mut grants, mut batches) = (Measured::default(), Measured::default());
        for ask in asks {
            let ((latency, error), chunks) = ask.await.expect("task");
            grants.add(latency, error);
            if let Some((latency, error)) = chunks {
                batches.add(latency, error);
            }
        }
        (grants, batches, at.elapsed())
    });
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
    let (mut grants, mut batches, took) = snapshots.await?;
    if args.snapshot_grants > 0 {
        grants.report("snapshot grants (all sent at once)", took);
        batches.report(&format!("chunk URL batches of {}", args.chunks_per_batch), took);
        let per_download = (download_sizes(&db).await? - downloads_before).max(0) as f64 / args.snapshot_grants as f64;
        println!(
            "database: snapshot_downloads + snapshot_download_chunks {per_download:.0} bytes per download of {} chunks",
            args.chunks_per_batch
        );
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
