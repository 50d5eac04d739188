//! Status page load: signed-in visitors reading the overview, miners, workers, blocks, nodes
//! and `/metrics`; event streams opened, read and dropped; and a hostile visitor (idle
//! connections, half-sent headers, wrong passwords). Each from its own loopback address.

use crate::miners::{connect_from, Load};
use crate::stack::ADMIN_PASSWORD;
use futures::StreamExt;
use rand::Rng;
use serde_json::json;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::io::AsyncWriteExt;

#[derive(Default)]
pub struct PageStats {
    pub requests: AtomicU64,
    /// Answers that were not 2xx, and requests that got no answer.
    pub failures: AtomicU64,
    /// Slowest answer since the last sample, ms (the sampler takes and resets it).
    pub slowest_ms: AtomicU64,
    pub logins: AtomicU64,
    pub streams_opened: AtomicU64,
    pub streams_failed: AtomicU64,
    pub streams_open: AtomicU64,
    pub stream_bytes: AtomicU64,
    pub hostile_requests: AtomicU64,
    /// Failed page requests by path and answer (a handful of kinds; capped).
    pub failed: std::sync::Mutex<std::collections::BTreeMap<String, u64>>,
}

impl PageStats {
    fn fail(&self, what: String) {
        self.failures.fetch_add(1, Relaxed);
        let mut f = self.failed.lock().expect("failed");
        if f.len() < 32 || f.contains_key(&what) {
            *f.entry(what).or_insert(0) += 1;
        }
    }
}

fn client(ip: Ipv4Addr, timeout: Option<Duration>) -> reqwest::Client {
    let mut b = reqwest::Client::builder().local_address(IpAddr::V4(ip)).connect_timeout(Duration::from_secs(10));
    if let Some(t) = timeout {
        b = b.timeout(t);
    }
    b.build().expect("HTTP client")
}

fn kind(e: &reqwest::Error) -> String {
    if e.is_timeout() {
        "timed out".into()
    } else if e.is_connect() {
        "could not connect".into()
    } else {
        "connection failed".into()
    }
}

/// Signs in and returns the session cookie (`name=value`).
async fn login(http: &reqwest::Client, web: &str, stats: &PageStats) -> Option<String> {
    stats.logins.fetch_add(1, Relaxed);
    let r = http.post(format!("{web}/api/v1/auth/login")).json(&json!({"password": ADMIN_PASSWORD})).send().await;
    match r {
        Ok(r) if r.status().is_success() => r
            .headers()
            .get_all(reqwest::header::SET_COOKIE)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .map(|v| v.split(';').next().unwrap_or("").to_string())
            .find(|c| c.contains('=') && !c.ends_with('=')),
        Ok(r) => {
            stats.fail(format!("POST /api/v1/auth/login: {}", r.status()));
            None
        }
        Err(e) => {
            stats.fail(format!("POST /api/v1/auth/login: {}", kind(&e)));
            None
        }
    }
}

async fn sleep_unless_stopped(load: &Load, d: Duration) {
    let end = Instant::now() + d;
    while Instant::now() < end && !load.stopping() {
        tokio::time::sleep((end - Instant::now()).min(Duration::from_millis(500))).await;
    }
}

const PAGES: &[&str] = &[
    "/api/v1/auth/session",
    "/api/v1/overview",
    "/api/v1/miners",
    "/api/v1/workers",
    "/api/v1/blocks",
    "/api/v1/nodes",
    "/api/v1/hashrate?coin=btc",
    "/api/v1/hashrate?coin=btc&worker=bcrt1qw508d6qejxtdg4y5r3zarvary0c5xw7kygt080.bitaxe001",
    "/api/v1/stratum",
    "/api/v1/system",
    "/metrics",
    "/",
];

/// A visitor: signs in, reads every page every few seconds for half a minute to a minute,
/// signs out, comes back.
pub async fn visitor(n: usize, web: String, load: Arc<Load>, stats: Arc<PageStats>) {
    let http = client(Ipv4Addr::new(127, 2, 0, n as u8 + 1), Some(Duration::from_secs(30)));
    while !load.stopping() {
        let Some(cookie) = login(&http, &web, &stats).await else {
            sleep_unless_stopped(&load, Duration::from_secs(5)).await;
            continue;
        };
        let visit = Duration::from_secs(rand::thread_rng().gen_range(30..60));
        let started = Instant::now();
        while started.elapsed() < visit && !load.stopping() {
            for page in PAGES {
                let t = Instant::now();
                let r = http.get(format!("{web}{page}")).header(reqwest::header::COOKIE, &cookie).send().await;
                let failure = match r {
                    Ok(r) => {
                        let status = r.status();
                        // Read the whole answer, as the page does.
                        match r.bytes().await {
                            Ok(_) if status.is_success() => None,
                            Ok(_) => Some(status.to_string()),
                            Err(e) => Some(kind(&e)),
                        }
                    }
                    Err(e) => Some(kind(&e)),
                };
                stats.requests.fetch_add(1, Relaxed);
                if let Some(f) = failure {
                    stats.fail(format!("GET {page}: {f}"));
                }
                stats.slowest_ms.fetch_max(t.elapsed().as_millis() as u64, Relaxed);
            }
            sleep_unless_stopped(&load, Duration::from_secs(5)).await;
        }
        let _ = http.post(format!("{web}/api/v1/auth/logout")).header(reqwest::header::COOKIE, &cookie).send().await;
        sleep_unless_stopped(&load, Duration::from_secs(3)).await;
    }
}

/// An open event stream, read for 5 to 60 s and dropped, again and again.
pub async fn streamer(n: usize, web: String, load: Arc<Load>, stats: Arc<PageStats>) {
    let http = client(Ipv4Addr::new(127, 3, 0, n as u8 + 1), None);
    let mut cookie: Option<String> = None;
    while !load.stopping() {
        if cookie.is_none() {
            cookie = login(&http, &web, &stats).await;
            if cookie.is_none() {
                sleep_unless_stopped(&load, Duration::from_secs(5)).await;
                continue;
            }
        }
        let hold = Duration::from_secs(rand::thread_rng().gen_range(5..60));
        let r = tokio::time::timeout(
            Duration::from_secs(15),
            http.get(format!("{web}/api/v1/events"))
                .header(reqwest::header::COOKIE, cookie.as_deref().unwrap_or(""))
                .send(),
        )
        .await;
        match r {
            Ok(Ok(r)) if r.status().is_success() => {
                stats.streams_opened.fetch_add(1, Relaxed);
                stats.streams_open.fetch_add(1, Relaxed);
                let mut body = r.bytes_stream();
                let started = Instant::now();
                while started.elapsed() < hold && !load.stopping() {
                    match tokio::time::timeout(Duration::from_secs(1), body.next()).await {
                        Ok(Some(Ok(b))) => {
                            stats.stream_bytes.fetch_add(b.len() as u64, Relaxed);
                        }
                        Ok(Some(Err(_))) | Ok(None) => break,
                        Err(_) => {}
                    }
                }
                stats.streams_open.fetch_sub(1, Relaxed);
            }
            Ok(Ok(r)) => {
                stats.streams_failed.fetch_add(1, Relaxed);
                stats.fail(format!("GET /api/v1/events: {}", r.status()));
                if r.status() == reqwest::StatusCode::UNAUTHORIZED {
                    cookie = None;
                }
            }
            _ => {
                stats.streams_failed.fetch_add(1, Relaxed);
            }
        }
        let pause = Duration::from_millis(rand::thread_rng().gen_range(500..5000));
        sleep_unless_stopped(&load, pause).await;
    }
}

/// A hostile visitor from 127.67.0.x: 20 idle connections held 20 s, a request whose
/// headers never end, five wrong passwords. In turn, every few seconds.
pub async fn hostile_visitor(web_port: u16, load: Arc<Load>, stats: Arc<PageStats>) {
    let web = SocketAddr::from(([127, 0, 0, 1], web_port));
    let mut round = 0usize;
    while !load.stopping() {
        let ip = Ipv4Addr::new(127, 67, 0, (round % 200 + 1) as u8);
        let _ = tokio::time::timeout(Duration::from_secs(60), async {
            match round % 3 {
                0 => {
                    let mut held = Vec::new();
                    for _ in 0..20 {
                        if let Ok(s) = connect_from(ip, web).await {
                            held.push(s);
                            stats.hostile_requests.fetch_add(1, Relaxed);
                        }
                    }
                    sleep_unless_stopped(&load, Duration::from_secs(20)).await;
                }
                1 => {
                    if let Ok(mut s) = connect_from(ip, web).await {
                        stats.hostile_requests.fetch_add(1, Relaxed);
                        let _ = s.write_all(b"GET /api/v1/overview HTTP/1.1\r\nHost: 127.0.0.1\r\n").await;
                        for i in 0..15 {
                            if load.stopping() || s.write_all(format!("X-Slow-{i}: 1\r\n").as_bytes()).await.is_err() {
                                break;
                            }
                            tokio::time::sleep(Duration::from_secs(2)).await;
                        }
                    }
                }
                _ => {
                    let http = client(ip, Some(Duration::from_secs(30)));
                    for i in 0..5 {
                        stats.hostile_requests.fetch_add(1, Relaxed);
                        let _ = http
                            .post(format!("http://{web}/api/v1/auth/login"))
                            .json(&json!({"password": format!("guess-{round}-{i}")}))
                            .send()
                            .await;
                    }
                }
            }
        })
        .await;
        round += 1;
        sleep_unless_stopped(&load, Duration::from_secs(3)).await;
    }
}
