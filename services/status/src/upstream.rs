//! The box's own services, as the status page reads them: each serves a local API on
//! 127.0.0.1 and the status page is the only thing facing the LAN.

use serde_json::Value;
use std::time::Duration;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Service {
    Stratum,
    Supervisor,
    Snapshots,
    Updates,
}

impl Service {
    pub fn name(self) -> &'static str {
        match self {
            Service::Stratum => "stratum server",
            Service::Supervisor => "node supervisor",
            Service::Snapshots => "snapshot agent",
            Service::Updates => "updater",
        }
    }

    pub fn unit(self) -> &'static str {
        match self {
            Service::Stratum => "minebox-stratum",
            Service::Supervisor => "minebox-supervisor",
            Service::Snapshots => "minebox-snapshot-agent",
            Service::Updates => "minebox-updater",
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum UpstreamError {
    #[error("the {} is not answering ({detail}); see {}'s journal on the System page", .service.name(), .service.unit())]
    Unreachable { service: Service, detail: String },
    #[error("the {} answered {status}: {message}", .service.name())]
    Refused { service: Service, status: u16, message: String },
}

impl UpstreamError {
    /// The status code the page gets: the upstream's own 4xx passes through (it is about
    /// the request), anything else is a gateway problem.
    pub fn status(&self) -> u16 {
        match self {
            UpstreamError::Refused { status, .. } if (400..500).contains(status) => *status,
            _ => 502,
        }
    }
}

#[derive(Clone)]
pub struct Upstreams {
    http: reqwest::Client,
    stratum: String,
    supervisor: String,
    snapshots: String,
    updates: String,
}

/// Bounds what an upstream can make us hold (a history or block list is far smaller).
const MAX_BODY: usize = 8 << 20;

impl Upstreams {
    pub fn new(stratum: &str, supervisor: &str, snapshots: &str, updates: &str) -> Upstreams {
        let base =
            |a: &str| if a.starts_with("http") { a.trim_end_matches('/').to_string() } else { format!("http://{a}") };
        Upstreams {
            http: reqwest::Client::builder()
                .connect_timeout(Duration::from_secs(2))
                .timeout(Duration::from_secs(10))
                .no_proxy()
                .build()
                .expect("http client"),
            stratum: base(stratum),
            supervisor: base(supervisor),
            snapshots: base(snapshots),
            updates: base(updates),
        }
    }

    pub fn url(&self, service: Service, path: &str) -> String {
        let base = match service {
            Service::Stratum => &self.stratum,
            Service::Supervisor => &self.supervisor,
            Service::Snapshots => &self.snapshots,
            Service::Updates => &self.updates,
        };
        format!("{base}{path}")
    }

    pub fn client(&self) -> &reqwest::Client {
        &self.http
    }

    pub async fn get(&self, service: Service, path: &str) -> Result<Value, UpstreamError> {
        self.send(service, self.http.get(self.url(service, path))).await
    }

    pub async fn post(&self, service: Service, path: &str, body: Option<&Value>) -> Result<Value, UpstreamError> {
        let mut req = self.http.post(self.url(service, path));
        if let Some(b) = body {
            req = req.json(b);
        }
        self.send(service, req).await
    }

    async fn send(&self, service: Service, req: reqwest::RequestBuilder) -> Result<Value, UpstreamError> {
        let unreachable = |e: reqwest::Error| UpstreamError::Unreachable { service, detail: short(&e) };
        let mut resp = req.send().await.map_err(unreachable)?;
        let status = resp.status();
        let mut body = Vec::new();
        while let Some(chunk) = resp.chunk().await.map_err(unreachable)? {
            if body.len() + chunk.len() > MAX_BODY {
                return Err(UpstreamError::Unreachable { service, detail: "answer too large".into() });
            }
            body.extend_from_slice(&chunk);
        }
        if !status.is_success() {
            let message = serde_json::from_slice::<Value>(&body)
                .ok()
                .and_then(|v| v.get("error").and_then(|e| e.as_str()).map(str::to_string))
                .unwrap_or_else(|| String::from_utf8_lossy(&body).chars().take(300).collect());
            return Err(UpstreamError::Refused { service, status: status.as_u16(), message });
        }
        if body.is_empty() {
            return Ok(Value::Null);
        }
        serde_json::from_slice(&body).or_else(|_| Ok(Value::String(String::from_utf8_lossy(&body).into_owned())))
    }
}

fn short(e: &reqwest::Error) -> String {
    if e.is_connect() {
        "connection refused".into()
    } else if e.is_timeout() {
        "timed out".into()
    } else {
        e.to_string()
    }
}
