//! The health check after a trial boot: is the box doing its job on the new version?
//! Every listed unit active, every enabled coin's stratum port accepting connections, the
//! status page answering its health endpoint, and the supervisor answering for the nodes.

use minebox_api as api;
use minebox_settings::Settings;
use serde::Serialize;
use std::time::Duration;
use tokio::process::Command;

/// Pause between attempts while services are still starting.
const RETRY_EVERY: Duration = Duration::from_secs(5);
/// Each single probe gives up after this long.
const PROBE_TIMEOUT: Duration = Duration::from_secs(5);

#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct Check {
    pub name: String,
    pub ok: bool,
    pub detail: String,
}

#[derive(Debug, Clone, Serialize)]
pub struct Report {
    pub healthy: bool,
    pub checks: Vec<Check>,
}

impl Report {
    /// The failing checks in one line, for the history.
    pub fn failures(&self) -> String {
        self.checks.iter().filter(|c| !c.ok).map(|c| format!("{}: {}", c.name, c.detail)).collect::<Vec<_>>().join("; ")
    }
}

/// What "the box is healthy" means after a trial boot: gathered from several settings
/// sections (every value was checked there; nothing is parsed here).
#[derive(Debug, Clone)]
pub struct HealthConfig {
    pub units: Vec<String>,
    /// The enabled coins' stratum ports (miners connect there).
    pub stratum_ports: Vec<u16>,
    pub status_url: String,
    pub supervisor_url: String,
    pub timeout: Duration,
}

impl HealthConfig {
    pub fn from_settings(s: &Settings) -> HealthConfig {
        HealthConfig {
            units: s.updates.health_units.clone(),
            stratum_ports: s.coins.values().filter(|c| c.enabled).map(|c| c.stratum_port).collect(),
            status_url: s.updates.status_url.clone(),
            supervisor_url: format!("http://{}", s.supervisor.api),
            timeout: s.updates.health_timeout,
        }
    }
}

pub struct HealthCheck {
    pub config: HealthConfig,
    pub client: reqwest::Client,
}

impl HealthCheck {
    pub fn new(config: HealthConfig) -> HealthCheck {
        let client = reqwest::Client::builder().timeout(PROBE_TIMEOUT).build().expect("HTTP client");
        HealthCheck { config, client }
    }

    /// One pass over every check.
    pub async fn once(&self) -> Report {
        let mut checks = Vec::new();
        for unit in &self.config.units {
            checks.push(unit_active(unit).await);
        }
        for port in &self.config.stratum_ports {
            let addr = format!("127.0.0.1:{port}");
            let r = tokio::time::timeout(PROBE_TIMEOUT, tokio::net::TcpStream::connect(&addr)).await;
            let (ok, detail) = match r {
                Ok(Ok(_)) => (true, "listening".to_string()),
                Ok(Err(e)) => (false, format!("cannot connect: {e}")),
                Err(_) => (false, "connect timed out".to_string()),
            };
            checks.push(Check { name: format!("stratum {addr}"), ok, detail });
        }
        let status = &self.config.status_url;
        let page = match self.get::<api::status::Health>(&format!("{status}{}", api::status::HEALTH)).await {
            Ok(_) => Ok(()),
            Err(first) => {
                self.get_ok(&format!("{status}{}", api::HEALTHZ)).await.map(drop).map_err(|e| format!("{first}; {e}"))
            }
        };
        checks.push(check("status page", page));
        let nodes_url = format!("{}{}", self.config.supervisor_url, api::supervisor::NODES);
        let nodes = self.get::<Vec<api::supervisor::Node>>(&nodes_url).await.map(drop);
        checks.push(check("supervisor nodes", nodes));
        Report { healthy: checks.iter().all(|c| c.ok), checks }
    }

    /// Retries until every check passes or the timeout has passed; the last report.
    pub async fn until_healthy(&self) -> Report {
        let deadline = tokio::time::Instant::now() + self.config.timeout;
        loop {
            let report = self.once().await;
            let now = tokio::time::Instant::now();
            if report.healthy || now >= deadline {
                return report;
            }
            tracing::info!(failing = %report.failures(), "not healthy yet");
            tokio::time::sleep(RETRY_EVERY.min(deadline - now)).await;
        }
    }

    /// A 2xx answer, whatever it says (the page's plain `/healthz`).
    async fn get_ok(&self, url: &str) -> Result<reqwest::Response, String> {
        match self.client.get(url).send().await {
            Ok(r) if r.status().is_success() => Ok(r),
            Ok(r) => Err(format!("{url}: HTTP {}", r.status())),
            Err(e) => Err(format!("{url}: {e}")),
        }
    }

    /// A 2xx answer that reads as what the service's API says it answers: a port that
    /// answers something else is not the service.
    async fn get<T: serde::de::DeserializeOwned>(&self, url: &str) -> Result<T, String> {
        let r = self.get_ok(url).await?;
        r.json().await.map_err(|e| format!("{url}: not the answer this service gives ({e})"))
    }
}

fn check(name: &str, r: Result<(), String>) -> Check {
    match r {
        Ok(()) => Check { name: name.into(), ok: true, detail: "answering".into() },
        Err(e) => Check { name: name.into(), ok: false, detail: e },
    }
}

async fn unit_active(unit: &str) -> Check {
    let out = Command::new("systemctl").args(["is-active", unit]).kill_on_drop(true).output().await;
    let (ok, detail) = match out {
        Ok(o) => (o.status.success(), String::from_utf8_lossy(&o.stdout).trim().to_string()),
        Err(e) => (false, format!("systemctl: {e}")),
    };
    Check { name: format!("unit {unit}"), ok, detail }
}
