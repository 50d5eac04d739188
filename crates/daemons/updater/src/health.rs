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
/// A listed unit that systemd has restarted this often since boot, and that is not active
/// now, is crash-looping: waiting will not bring it up, so the trial fails at once instead
/// of at the timeout, and a broken release costs the miners seconds, not minutes. Units
/// that wait for something (a syncing node, the network) wait running, not restarting;
/// a watchdog restart takes 30 s or more, so five of them outlast any sane timeout anyway.
const CRASH_LOOP_RESTARTS: u32 = 5;

#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct Check {
    pub name: String,
    pub ok: bool,
    pub detail: String,
    /// Failed for good: waiting longer cannot make this check pass (a crash-looping unit).
    #[serde(skip)]
    pub final_failure: bool,
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
            checks.push(Check { name: format!("stratum {addr}"), ok, detail, final_failure: false });
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

    /// Retries until every check passes, one has failed for good, or the timeout has
    /// passed; the last report.
    pub async fn until_healthy(&self) -> Report {
        let deadline = tokio::time::Instant::now() + self.config.timeout;
        loop {
            let report = self.once().await;
            let now = tokio::time::Instant::now();
            if report.healthy || now >= deadline || report.checks.iter().any(|c| c.final_failure) {
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
        Ok(()) => Check { name: name.into(), ok: true, detail: "answering".into(), final_failure: false },
        Err(e) => Check { name: name.into(), ok: false, detail: e, final_failure: false },
    }
}

async fn unit_active(unit: &str) -> Check {
    let name = format!("unit {unit}");
    let out = Command::new("systemctl")
        .args(["show", "--property=ActiveState,SubState,NRestarts,Result", unit])
        .kill_on_drop(true)
        .output()
        .await;
    match out {
        Ok(o) if o.status.success() => UnitState::parse(&String::from_utf8_lossy(&o.stdout)).check(name),
        Ok(o) => Check {
            name,
            ok: false,
            detail: format!("systemctl show: {}", String::from_utf8_lossy(&o.stderr).trim()),
            final_failure: false,
        },
        Err(e) => Check { name, ok: false, detail: format!("systemctl: {e}"), final_failure: false },
    }
}

/// What `systemctl show` says of a unit, as far as the health check cares.
#[derive(Debug, Default, PartialEq, Eq)]
struct UnitState {
    active: String,
    sub: String,
    restarts: u32,
    result: String,
}

impl UnitState {
    fn parse(show: &str) -> UnitState {
        let mut u = UnitState::default();
        for line in show.lines() {
            match line.split_once('=') {
                Some(("ActiveState", v)) => u.active = v.to_string(),
                Some(("SubState", v)) => u.sub = v.to_string(),
                Some(("NRestarts", v)) => u.restarts = v.parse().unwrap_or(0),
                Some(("Result", v)) => u.result = v.to_string(),
                _ => {}
            }
        }
        u
    }

    fn check(&self, name: String) -> Check {
        let ok = self.active == "active";
        let mut detail =
            if self.sub.is_empty() { self.active.clone() } else { format!("{} ({})", self.active, self.sub) };
        if self.restarts > 0 {
            detail.push_str(&format!(", restarted {} times since boot", self.restarts));
        }
        // systemd gave up on it (its start limit), or it keeps dying: no wait helps.
        let gave_up = self.active == "failed" && self.result == "start-limit-hit";
        let looping = self.restarts >= CRASH_LOOP_RESTARTS;
        let final_failure = !ok && (gave_up || looping);
        if final_failure {
            detail.push_str(if gave_up { "; systemd stopped restarting it" } else { "; crash-looping" });
        }
        Check { name, ok, detail, final_failure }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(show: &str) -> Check {
        UnitState::parse(show).check("unit minebox-stratum.service".into())
    }

    #[test]
    fn a_unit_still_starting_is_waited_for() {
        let c = check("ActiveState=activating\nSubState=start\nNRestarts=0\nResult=success\n");
        assert!(!c.ok && !c.final_failure, "{c:?}");
        assert_eq!(c.detail, "activating (start)");
        let c = check("ActiveState=activating\nSubState=auto-restart\nNRestarts=4\nResult=exit-code\n");
        assert!(!c.ok && !c.final_failure, "{c:?}");
    }

    #[test]
    fn a_crash_looping_or_abandoned_unit_fails_the_trial_at_once() {
        let c = check("ActiveState=activating\nSubState=auto-restart\nNRestarts=5\nResult=exit-code\n");
        assert!(!c.ok && c.final_failure, "{c:?}");
        assert_eq!(c.detail, "activating (auto-restart), restarted 5 times since boot; crash-looping");
        let c = check("ActiveState=failed\nSubState=failed\nNRestarts=2\nResult=start-limit-hit\n");
        assert!(!c.ok && c.final_failure, "{c:?}");
        assert!(c.detail.ends_with("systemd stopped restarting it"), "{c:?}");
        // Failed once, and systemd will try again: not yet final.
        let c = check("ActiveState=failed\nSubState=failed\nNRestarts=0\nResult=exit-code\n");
        assert!(!c.ok && !c.final_failure, "{c:?}");
    }

    #[test]
    fn an_active_unit_passes_whatever_it_went_through() {
        let c = check("ActiveState=active\nSubState=running\nNRestarts=7\nResult=success\n");
        assert!(c.ok && !c.final_failure, "{c:?}");
        assert_eq!(c.detail, "active (running), restarted 7 times since boot");
    }
}
