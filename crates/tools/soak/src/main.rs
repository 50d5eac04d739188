//! `minebox-soak`: the soak test of issue 12 (run it with `scripts/soak`).
//!
//! Starts the box on this machine from the release binaries (supervisor with Bitcoin Core
//! regtest, stratum server, snapshot agent, updater, status page; one settings file), then for
//! `--duration`: 500 simulated Bitaxes on their own loopback addresses, reconnect storms,
//! blocks found by the miners and made at the node (announced over the node's ZMQ), two
//! windows in which the node's ZMQ publisher is quiet for minutes, node restarts and a node
//! crash, hostile stratum and page clients, signed-in page visitors and event streams. Every
//! `--sample` it reads descriptors, RSS, threads and CPU of each process from /proc into
//! samples.csv; at the end it judges growth over the second half and says PASS or FAIL.
//! All traffic is to 127.0.0.0/8; every loop ends with the run.

mod miners;
mod page;
mod sample;
mod stack;

use anyhow::{bail, Context};
use clap::Parser;
use miners::Load;
use page::PageStats;
use sample::{Row, Tolerance};
use serde_json::json;
use std::collections::HashMap;
use std::io::Write;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering::Relaxed};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

#[derive(Parser)]
#[command(about = "MineBox soak test: hours of hostile, stormy load; descriptors, memory and CPU sampled and judged")]
struct Cli {
    /// How long the load runs, e.g. 60m, 5m, 90s.
    #[arg(long, default_value = "60m", value_parser = parse_duration)]
    duration: Duration,
    /// Time between samples, e.g. 60s, 10s.
    #[arg(long, default_value = "60s", value_parser = parse_duration)]
    sample: Duration,
    /// Simulated miners (each on its own 127.1.x.y address).
    #[arg(long, default_value_t = 500)]
    miners: usize,
    /// Seconds between one miner's shares.
    #[arg(long, default_value = "10s", value_parser = parse_duration)]
    share_every: Duration,
    /// Time between blocks, outside the quiet windows (alternately made at the node and
    /// found by a miner); default: a tenth of the sample interval's multiple, at least 15 s.
    #[arg(long, value_parser = parse_duration)]
    block_every: Option<Duration>,
    /// Signed-in page visitors.
    #[arg(long, default_value_t = 3)]
    visitors: usize,
    /// Event streams opened and dropped at a time.
    #[arg(long, default_value_t = 8)]
    streams: usize,
    /// Hostile stratum clients at a time.
    #[arg(long, default_value_t = 2)]
    hostile: usize,
    /// Where the release binaries are.
    #[arg(long, default_value = concat!(env!("CARGO_MANIFEST_DIR"), "/../../../target/release"))]
    bin_dir: PathBuf,
    /// Bitcoin Core.
    #[arg(long, default_value = concat!(env!("CARGO_MANIFEST_DIR"), "/../../../../shared/peers/bin/bitcoind"))]
    bitcoind: PathBuf,
    /// Output directory: samples.csv, load.csv, events.csv, verdict.json, summary.md, logs/, state/.
    #[arg(long)]
    out: PathBuf,
    /// Tolerated descriptor growth per hour, per service.
    #[arg(long, default_value_t = Tolerance::default().fds_per_hour)]
    tolerance_fds: f64,
    /// Tolerated RSS growth per hour, MiB (or 5% of the service's RSS, whichever is larger).
    #[arg(long, default_value_t = Tolerance::default().rss_mib_per_hour)]
    tolerance_rss_mib: f64,
}

fn parse_duration(s: &str) -> Result<Duration, String> {
    let s = s.trim();
    let (num, unit) = s.split_at(s.find(|c: char| c.is_ascii_alphabetic()).unwrap_or(s.len()));
    let n: f64 = num.parse().map_err(|_| format!("{s:?} is not a duration; use e.g. 60m, 10s, 1h"))?;
    let secs = match unit {
        "" | "s" => n,
        "m" | "min" => n * 60.0,
        "h" => n * 3600.0,
        _ => return Err(format!("{s:?}: unit must be s, m or h")),
    };
    if !(secs.is_finite() && secs > 0.0) {
        return Err(format!("{s:?} must be positive"));
    }
    Ok(Duration::from_secs_f64(secs))
}

/// What happened when (events.csv and the plot's markers).
struct Events {
    t0: Instant,
    list: Mutex<Vec<(f64, String, String)>>,
}

impl Events {
    fn add(&self, kind: &str, detail: impl Into<String>) {
        let t = self.t0.elapsed().as_secs_f64();
        let detail = detail.into();
        println!("[{:>7.1} min] {kind}: {detail}", t / 60.0);
        self.list.lock().expect("events").push((t, kind.to_string(), detail));
    }
}

/// The services the verdict judges: MineBox's own.
const JUDGED: &[&str] =
    &["minebox-supervisor", "minebox-stratum", "minebox-snapshot-agent", "minebox-updater", "minebox-status"];

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    if cli.sample > cli.duration {
        bail!("--sample must be shorter than --duration");
    }
    if !cli.bitcoind.exists() {
        bail!("Bitcoin Core is not at {} (give --bitcoind)", cli.bitcoind.display());
    }
    std::fs::create_dir_all(cli.out.join("logs"))?;
    let state = cli.out.join("state");
    if state.exists() {
        std::fs::remove_dir_all(&state).context("clearing the previous run's state")?;
    }
    std::fs::create_dir_all(&state)?;
    let state = state.canonicalize()?;
    // Setting up takes a minute at most; the load stops itself at --duration; this is the
    // bound on everything else.
    let limit = cli.duration + Duration::from_secs(600);
    match tokio::time::timeout(limit, run(&cli, state)).await {
        Ok(Ok(true)) => Ok(()),
        Ok(Ok(false)) => std::process::exit(1),
        Ok(Err(e)) => Err(e),
        Err(_) => bail!("the soak did not finish within {limit:?}; see {}/logs", cli.out.display()),
    }
}

async fn run(cli: &Cli, state: PathBuf) -> anyhow::Result<bool> {
    let bins = stack::Binaries { dir: cli.bin_dir.clone(), bitcoind: cli.bitcoind.clone() };
    println!("soak: starting the box from {} (logs in {}/logs)", cli.bin_dir.display(), cli.out.display());
    let stack = stack::Stack::start(&bins, &state, &cli.out.join("logs")).await?;
    println!(
        "soak: box up: stratum 127.0.0.1:{}, status page {}, supervisor {}",
        stack.ports.stratum,
        stack.web(),
        stack.supervisor_api()
    );

    let load = Load::new();
    let page_stats = Arc::new(PageStats::default());
    let events = Arc::new(Events { t0: Instant::now(), list: Mutex::new(Vec::new()) });
    let d = cli.duration.as_secs_f64();
    let s = cli.sample.as_secs_f64();
    // Events land between samples, so no sample is taken in the middle of a storm's
    // reconnects by design (the estimator copes if one is).
    let at = |frac: f64| Duration::from_secs_f64(((frac * d / s).floor() * s + s / 2.0).min(d - 1.0));
    let quiet = [(at(0.24), at(0.36)), (at(0.56), at(0.66))];
    let mut timeline: Vec<(Duration, &str)> = vec![
        (at(0.12), "storm"),
        (at(0.20), "restart"),
        (at(0.32), "storm"),
        (at(0.42), "crash"),
        (at(0.52), "storm"),
        (at(0.70), "restart"),
        (at(0.72), "storm"),
        (at(0.84), "restart"),
        (at(0.88), "storm"),
    ];
    for (a, b) in quiet {
        timeline.push((a, "quiet"));
        timeline.push((b, "loud"));
    }
    timeline.sort_by_key(|e| e.0);

    let mut tasks = Vec::new();
    // Miners: ramp up over ~10 s.
    let server = stack.stratum_addr();
    for i in 0..cli.miners {
        let load = load.clone();
        let share_every = cli.share_every;
        let delay = Duration::from_millis((i * 20) as u64);
        tasks.push(tokio::spawn(async move {
            tokio::time::sleep(delay).await;
            miners::miner(i, server, share_every, load).await
        }));
    }
    for w in 0..cli.hostile {
        tasks.push(tokio::spawn(miners::hostile(w, server, load.clone())));
    }
    for n in 0..cli.visitors {
        tasks.push(tokio::spawn(page::visitor(n, stack.web(), load.clone(), page_stats.clone())));
    }
    for n in 0..cli.streams {
        tasks.push(tokio::spawn(page::streamer(n, stack.web(), load.clone(), page_stats.clone())));
    }
    tasks.push(tokio::spawn(page::hostile_visitor(stack.ports.web, load.clone(), page_stats.clone())));
    events.add(
        "start",
        format!(
            "{} miners, {} visitors, {} event streams, {} hostile stratum clients, 1 hostile visitor",
            cli.miners, cli.visitors, cli.streams, cli.hostile
        ),
    );

    let stack = Arc::new(stack);
    let node_busy = Arc::new(AtomicBool::new(false));
    let is_quiet = Arc::new(AtomicBool::new(false));

    // Blocks, outside the quiet windows and node restarts.
    let block_every = cli.block_every.unwrap_or(Duration::from_secs_f64((d / 120.0).clamp(15.0, 30.0)));
    {
        let (load, stack, events, node_busy, is_quiet) =
            (load.clone(), stack.clone(), events.clone(), node_busy.clone(), is_quiet.clone());
        tasks.push(tokio::spawn(async move {
            let mut n = 0u64;
            let mut tick = tokio::time::interval(block_every);
            tick.tick().await;
            while !load.stopping() {
                tick.tick().await;
                if load.stopping() || is_quiet.load(Relaxed) || node_busy.load(Relaxed) {
                    continue;
                }
                n += 1;
                if n.is_multiple_of(2) {
                    load.block_wanted.store(true, Relaxed);
                } else {
                    if let Err(e) = stack.rpc("generatetoaddress", json!([1, stack::OTHER])).await {
                        events.add("error", format!("generatetoaddress: {e}"));
                    }
                }
            }
        }));
    }

    // The timeline.
    {
        let (load, stack, events, node_busy, is_quiet) =
            (load.clone(), stack.clone(), events.clone(), node_busy.clone(), is_quiet.clone());
        let t0 = events.t0;
        tasks.push(tokio::spawn(async move {
            let mut storms = 0u64;
            for (when, what) in timeline {
                tokio::time::sleep_until((t0 + when).into()).await;
                if load.stopping() {
                    break;
                }
                match what {
                    "storm" => {
                        storms += 1;
                        let working = load.stats.working.load(Relaxed);
                        load.storm.send_replace(storms);
                        events.add("storm", format!("all {working} working miners drop and reconnect at once"));
                    }
                    "quiet" => {
                        is_quiet.store(true, Relaxed);
                        events.add("zmq-quiet", "no blocks: the node's ZMQ publisher says nothing");
                    }
                    "loud" => {
                        is_quiet.store(false, Relaxed);
                        events.add("zmq-back", "blocks again");
                    }
                    "restart" | "crash" => {
                        node_busy.store(true, Relaxed);
                        let st = &stack;
                        let pid = st.node_pid().await;
                        events.add(
                            &format!("node-{what}"),
                            if what == "crash" {
                                format!("kill -9 bitcoind (pid {pid:?})")
                            } else {
                                format!("supervisor stops and starts bitcoind (pid {pid:?})")
                            },
                        );
                        let t = Instant::now();
                        let r = if what == "crash" { st.crash_node().await } else { st.restart_node().await };
                        match r {
                            Ok(()) => events.add(
                                "node-up",
                                format!(
                                    "synced again after {:.1} s, pid {:?}",
                                    t.elapsed().as_secs_f64(),
                                    st.node_pid().await
                                ),
                            ),
                            Err(e) => events.add("error", format!("node {what}: {e:#}")),
                        }
                        node_busy.store(false, Relaxed);
                    }
                    _ => {}
                }
            }
        }));
    }

    // Sampling, on this task.
    let mut samples =
        csv_file(&cli.out.join("samples.csv"), "t_secs,process,pid,fds,sockets,rss_kib,threads,cpu_percent")?;
    let mut loadcsv = csv_file(
        &cli.out.join("load.csv"),
        "t_secs,miners_working,connects,connect_failures,dropped_by_server,shares_accepted,shares_rejected,blocks_submitted,blocks_accepted,clean_jobs,hostile_stratum_connections,page_requests,page_failures,page_slowest_ms,logins,streams_open,streams_opened,streams_failed,hostile_page_requests,node_height",
    )?;
    let mut rows: Vec<Row> = Vec::new();
    let mut prev: HashMap<(String, u32), (sample::ProcSample, Instant)> = HashMap::new();
    let n_samples = (d / s).floor() as u64;
    let mut failure: Option<String> = None;
    for k in 0..=n_samples {
        tokio::time::sleep_until((events.t0 + Duration::from_secs_f64(k as f64 * s)).into()).await;
        let t = events.t0.elapsed().as_secs_f64();
        let mut procs = stack.pids();
        let exited = stack.exited();
        let height = stack.rpc("getblockcount", json!([])).await.ok().and_then(|v| v.as_u64());
        let node_pid = stack.node_pid().await;
        if let Some(pid) = node_pid {
            procs.push(("bitcoind".into(), pid));
        }
        procs.push(("minebox-soak".into(), std::process::id()));
        let mut line = format!("[{:>7.1} min] sample {k}/{n_samples}:", t / 60.0);
        for (name, pid) in procs {
            let Some(p) = sample::read_proc(pid) else { continue };
            let now = Instant::now();
            let cpu = prev
                .get(&(name.clone(), pid))
                .map(|(b, at)| sample::cpu_percent(b, &p, now.duration_since(*at).as_secs_f64()));
            prev.insert((name.clone(), pid), (p.clone(), now));
            writeln!(
                samples,
                "{t:.1},{name},{pid},{},{},{},{},{}",
                p.fds,
                p.sockets,
                p.rss_kib,
                p.threads,
                cpu.map(|c| format!("{c:.2}")).unwrap_or_default()
            )?;
            if JUDGED.contains(&name.as_str()) || name == "bitcoind" {
                line.push_str(&format!(
                    " {}={}fd/{:.0}MiB/{}",
                    name.trim_start_matches("minebox-"),
                    p.fds,
                    p.rss_kib as f64 / 1024.0,
                    cpu.map(|c| format!("{c:.0}%")).unwrap_or_else(|| "-".into())
                ));
            }
            rows.push(Row {
                t_secs: t,
                process: name,
                pid,
                fds: p.fds,
                sockets: p.sockets,
                rss_kib: p.rss_kib,
                threads: p.threads,
                cpu_percent: cpu,
            });
        }
        samples.flush()?;
        let m = &load.stats;
        let ps = &page_stats;
        let slowest = ps.slowest_ms.swap(0, Relaxed);
        writeln!(
            loadcsv,
            "{t:.1},{},{},{},{},{},{},{},{},{},{},{},{},{},{},{},{},{},{},{}",
            m.working.load(Relaxed),
            m.connects.load(Relaxed),
            m.connect_failures.load(Relaxed),
            m.dropped_by_server.load(Relaxed),
            m.shares_accepted.load(Relaxed),
            m.shares_rejected.load(Relaxed),
            m.blocks_submitted.load(Relaxed),
            m.blocks_accepted.load(Relaxed),
            m.clean_jobs.load(Relaxed),
            m.hostile_connections.load(Relaxed),
            ps.requests.load(Relaxed),
            ps.failures.load(Relaxed),
            slowest,
            ps.logins.load(Relaxed),
            ps.streams_open.load(Relaxed),
            ps.streams_opened.load(Relaxed),
            ps.streams_failed.load(Relaxed),
            ps.hostile_requests.load(Relaxed),
            height.map(|h| h.to_string()).unwrap_or_default(),
        )?;
        loadcsv.flush()?;
        line.push_str(&format!(
            " | miners {} shares {}/{} rejected, blocks {}/{}, page {} req {} failed (slowest {} ms), streams {} open",
            m.working.load(Relaxed),
            m.shares_accepted.load(Relaxed),
            m.shares_rejected.load(Relaxed),
            m.blocks_accepted.load(Relaxed),
            m.blocks_submitted.load(Relaxed),
            ps.requests.load(Relaxed),
            ps.failures.load(Relaxed),
            slowest,
            ps.streams_open.load(Relaxed),
        ));
        println!("{line}");
        if let Some(e) = exited {
            events.add("exited", e.clone());
            failure = Some(e);
            break;
        }
    }

    // The end: every loop sees the flag within a second or two.
    load.stop.store(true, Relaxed);
    load.storm.send_replace(u64::MAX);
    events.add("stop", "load stops");
    for t in tasks {
        if tokio::time::timeout(Duration::from_secs(90), t).await.is_err() {
            eprintln!("soak: a load task did not end within 90 s of the stop");
        }
    }

    let mut ev = csv_file(&cli.out.join("events.csv"), "t_secs,event,detail")?;
    for (t, kind, detail) in events.list.lock().expect("events").iter() {
        writeln!(ev, "{t:.1},{kind},\"{}\"", detail.replace('"', "'"))?;
    }
    let reasons = load.stats.reasons.lock().expect("reasons").clone();

    let tol =
        Tolerance { fds_per_hour: cli.tolerance_fds, rss_mib_per_hour: cli.tolerance_rss_mib, ..Tolerance::default() };
    let figures = sample::judge(&rows, d, &tol, JUDGED);
    let grown: Vec<String> =
        figures.iter().flat_map(|f| f.growth.iter().map(move |g| format!("{}: {g}", f.process))).collect();
    let pass = failure.is_none() && grown.is_empty();
    let summary = summary_markdown(cli, &figures, &tol, pass, failure.as_deref(), &grown, &reasons, &load, &page_stats);
    std::fs::write(cli.out.join("summary.md"), &summary)?;
    std::fs::write(
        cli.out.join("verdict.json"),
        serde_json::to_string_pretty(&json!({
            "pass": pass,
            "duration_secs": d,
            "sample_secs": s,
            "miners": cli.miners,
            "tolerance": tol,
            "failure": failure,
            "growth": grown,
            "figures": figures,
            "quiet_windows_secs": quiet.iter().map(|(a, b)| [a.as_secs_f64(), b.as_secs_f64()]).collect::<Vec<_>>(),
            "rejections": reasons,
        }))?,
    )?;
    println!("\n{summary}");
    stack.stop().await;
    Ok(pass)
}

fn csv_file(path: &std::path::Path, header: &str) -> anyhow::Result<std::io::BufWriter<std::fs::File>> {
    let mut f = std::io::BufWriter::new(std::fs::File::create(path)?);
    writeln!(f, "{header}")?;
    Ok(f)
}

#[allow(clippy::too_many_arguments)]
fn summary_markdown(
    cli: &Cli,
    figures: &[sample::Figures],
    tol: &Tolerance,
    pass: bool,
    failure: Option<&str>,
    grown: &[String],
    reasons: &std::collections::BTreeMap<String, u64>,
    load: &Load,
    ps: &PageStats,
) -> String {
    let mut o = String::new();
    let mins = cli.duration.as_secs_f64() / 60.0;
    o.push_str(&format!(
        "Soak: {mins:.0} min, {} miners, sampled every {:.0} s. Idle: before the load; half-time: the first sample of the second half. Slopes: Theil-Sen over the second half ({:.0} min), per hour.\n\n",
        cli.miners,
        cli.sample.as_secs_f64(),
        mins / 2.0
    ));
    if mins < 30.0 {
        o.push_str("(A short run: per-hour slopes are extrapolated from a few minutes and only indicative.)\n\n");
    }
    o.push_str("| process | descriptors idle / half-time / end (max) | fds/h | RSS MiB idle / half-time / end (max) | MiB/h | threads idle → end | CPU % of a core start / end / mean | CPU points/h | growth |\n");
    o.push_str("|---|---|---|---|---|---|---|---|---|\n");
    for f in figures {
        o.push_str(&format!(
            "| {} | {} / {} / {} ({}) | {:+.1} | {:.1} / {:.1} / {:.1} ({:.1}) | {:+.2} | {} → {} | {:.1} / {:.1} / {:.1} | {:+.1} | {} |\n",
            f.process,
            f.fds_start,
            f.fds_half,
            f.fds_end,
            f.fds_max,
            f.fds_per_hour,
            f.rss_mib_start,
            f.rss_mib_half,
            f.rss_mib_end,
            f.rss_mib_max,
            f.rss_mib_per_hour,
            f.threads_start,
            f.threads_end,
            f.cpu_start,
            f.cpu_end,
            f.cpu_mean,
            f.cpu_per_hour,
            if !f.judged { "not judged".to_string() } else if f.growth.is_empty() { "none".to_string() } else { f.growth.join("; ") }
        ));
    }
    let m = &load.stats;
    o.push_str(&format!(
        "\nLoad: {} miner connections ({} failed to connect, {} ended by the server), {} shares accepted, {} rejected, {} of {} miner blocks accepted, {} clean jobs received; {} hostile stratum connections; page: {} requests, {} failed, {} sign-ins, {} event streams opened ({} refused or failed), {} hostile page connections/requests.\n",
        m.connects.load(Relaxed),
        m.connect_failures.load(Relaxed),
        m.dropped_by_server.load(Relaxed),
        m.shares_accepted.load(Relaxed),
        m.shares_rejected.load(Relaxed),
        m.blocks_accepted.load(Relaxed),
        m.blocks_submitted.load(Relaxed),
        m.clean_jobs.load(Relaxed),
        m.hostile_connections.load(Relaxed),
        ps.requests.load(Relaxed),
        ps.failures.load(Relaxed),
        ps.logins.load(Relaxed),
        ps.streams_opened.load(Relaxed),
        ps.streams_failed.load(Relaxed),
        ps.hostile_requests.load(Relaxed),
    ));
    let failed = ps.failed.lock().expect("failed").clone();
    if !failed.is_empty() {
        o.push_str("\nFailed page requests (count):\n");
        for (k, v) in &failed {
            o.push_str(&format!("- {k}: {v}\n"));
        }
    }
    if !reasons.is_empty() {
        o.push_str("\nWhat the miners were told or met (count):\n");
        for (k, v) in reasons {
            o.push_str(&format!("- {k}: {v}\n"));
        }
    }
    o.push_str(&format!(
        "\nTolerance per judged service (MineBox's own; bitcoind and the soak tool are shown, not judged): descriptors {:.0}/h, RSS the larger of {:.0} MiB/h and {:.0}% of its RSS per hour, threads {:.0}/h, CPU {:.0} points of a core per hour.\n\n",
        tol.fds_per_hour,
        tol.rss_mib_per_hour,
        tol.rss_fraction_per_hour * 100.0,
        tol.threads_per_hour,
        tol.cpu_points_per_hour
    ));
    if let Some(f) = failure {
        o.push_str(&format!("VERDICT: FAIL: {f}\n"));
    } else if pass {
        o.push_str("VERDICT: PASS: no growth beyond tolerance in any MineBox service.\n");
    } else {
        o.push_str("VERDICT: FAIL: growth:\n");
        for g in grown {
            o.push_str(&format!("- {g}\n"));
        }
    }
    o
}
