//! Prometheus metrics at /metrics (text format 0.0.4): per coin hashrate, connected miners
//! and workers, best share, blocks found, the node's height and peers, and the box's health.
//!
//! Open without a login so a Prometheus on the LAN can scrape it with no secret to keep,
//! which is why it holds aggregates only: no payout address, no worker name (a per-worker
//! series would name them, and with a large worker registry it was also what made a
//! scrape expensive). The text is computed at most once per [`CACHE_FOR`] and shared by
//! every request in that time, so a burst of scrapes costs the box's services one read.

use crate::app::App;
use axum::extract::State;
use axum::http::header;
use axum::response::{IntoResponse, Response};
use std::fmt::Write;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// How long one rendering of the metrics is served (Prometheus scrapes every 15 s or more).
pub const CACHE_FOR: Duration = Duration::from_secs(5);

/// The last rendering. Requests wait on the lock while one renders, then share its text.
#[derive(Default)]
pub struct Cache {
    last: tokio::sync::Mutex<Option<(Instant, Arc<str>)>>,
}

struct Out(String);

impl Out {
    fn help(&mut self, name: &str, kind: &str, help: &str) {
        let _ = writeln!(self.0, "# HELP {name} {help}\n# TYPE {name} {kind}");
    }

    fn sample(&mut self, name: &str, labels: &[(&str, &str)], v: f64) {
        self.0.push_str(name);
        if !labels.is_empty() {
            self.0.push('{');
            for (i, (k, val)) in labels.iter().enumerate() {
                if i > 0 {
                    self.0.push(',');
                }
                let _ = write!(self.0, "{k}=\"{}\"", escape(val));
            }
            self.0.push('}');
        }
        let _ = writeln!(self.0, " {}", fmt(v));
    }
}

fn escape(v: &str) -> String {
    v.replace('\\', "\\\\").replace('"', "\\\"").replace('\n', "\\n")
}

fn fmt(v: f64) -> String {
    if v.is_nan() {
        "NaN".into()
    } else if v.is_infinite() {
        if v > 0.0 { "+Inf" } else { "-Inf" }.into()
    } else {
        format!("{v}")
    }
}

pub async fn serve(State(app): State<Arc<App>>) -> Response {
    let text = {
        let mut last = app.metrics.last.lock().await;
        match &*last {
            Some((at, text)) if at.elapsed() < app.metrics_cache_for => text.clone(),
            _ => {
                let text: Arc<str> = render(&app).await.into();
                *last = Some((Instant::now(), text.clone()));
                text
            }
        }
    };
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4; charset=utf-8")], text.to_string()).into_response()
}

async fn render(app: &App) -> String {
    let o = app.overview().await;
    let mut m = Out(String::new());
    m.help("minebox_hashrate", "gauge", "Pool hashrate in hashes per second over a window.");
    for c in &o.coins {
        for (w, v) in [("1m", c.hashrate.m1), ("1h", c.hashrate.h1), ("24h", c.hashrate.d1)] {
            m.sample("minebox_hashrate", &[("coin", &c.coin), ("window", w)], v);
        }
    }
    m.help("minebox_miners", "gauge", "Miner connections.");
    for c in &o.coins {
        m.sample("minebox_miners", &[("coin", &c.coin)], c.miners as f64);
    }
    m.help("minebox_workers", "gauge", "Workers with a connection.");
    for c in &o.coins {
        m.sample("minebox_workers", &[("coin", &c.coin)], c.workers as f64);
    }
    m.help("minebox_blocks_found_total", "counter", "Blocks found by this box.");
    for c in &o.coins {
        m.sample("minebox_blocks_found_total", &[("coin", &c.coin)], c.blocks_found as f64);
    }
    m.help("minebox_best_share", "gauge", "Best share difficulty ever found.");
    for c in &o.coins {
        m.sample("minebox_best_share", &[("coin", &c.coin)], c.best_share_all_time);
    }
    m.help("minebox_network_difficulty", "gauge", "The network's difficulty.");
    for c in &o.coins {
        m.sample("minebox_network_difficulty", &[("coin", &c.coin)], c.odds.network_difficulty);
    }
    m.help("minebox_node_up", "gauge", "1 when the coin's node is synced.");
    m.help("minebox_node_blocks", "gauge", "The node's validated height.");
    m.help("minebox_node_peers", "gauge", "The node's peer connections.");
    for c in &o.coins {
        m.sample("minebox_node_up", &[("coin", &c.coin)], f64::from(u8::from(c.node.state == "synced")));
        if let Some(b) = c.node.blocks {
            m.sample("minebox_node_blocks", &[("coin", &c.coin)], b as f64);
        }
        if let Some(p) = c.node.peers {
            m.sample("minebox_node_peers", &[("coin", &c.coin)], p as f64);
        }
    }
    let s = &o.system;
    m.help("minebox_cpu_temperature_celsius", "gauge", "Hottest thermal zone.");
    if let Some(t) = s.cpu_temperature_c {
        m.sample("minebox_cpu_temperature_celsius", &[], t);
    }
    m.help("minebox_load1", "gauge", "One-minute load average.");
    m.sample("minebox_load1", &[], s.load[0]);
    m.help("minebox_memory_available_bytes", "gauge", "Memory available.");
    m.sample("minebox_memory_available_bytes", &[], s.memory_available_bytes as f64);
    m.help("minebox_disk_free_bytes", "gauge", "Free space on the data partition.");
    m.sample("minebox_disk_free_bytes", &[], s.disk_free_bytes as f64);
    m.help("minebox_uptime_seconds", "gauge", "Time since boot.");
    m.sample("minebox_uptime_seconds", &[], s.uptime_secs);
    m.help("minebox_service_up", "gauge", "1 when the service's local API answers.");
    m.sample(
        "minebox_service_up",
        &[("service", "stratum")],
        f64::from(u8::from(!o.problems.iter().any(|p| p.contains("stratum")))),
    );
    m.sample(
        "minebox_service_up",
        &[("service", "supervisor")],
        f64::from(u8::from(!o.problems.iter().any(|p| p.contains("supervisor")))),
    );
    m.0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn labels_are_escaped_and_values_formatted() {
        let mut m = Out(String::new());
        m.sample("x", &[("worker", "a\"b\\c\nd")], 1.5);
        m.sample("y", &[], f64::INFINITY);
        assert_eq!(m.0, "x{worker=\"a\\\"b\\\\c\\nd\"} 1.5\ny +Inf\n");
    }
}
