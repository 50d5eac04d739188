//! One Bitaxe-class miner on the LAN, through the HTTP API its firmware (ESP-Miner's AxeOS)
//! serves on port 80: what it is and where it mines (`GET /api/system/info`), and pointing
//! it at this box (`PATCH /api/system`, then `POST /api/system/restart`).
//!
//! A miner is a small device on a network the box does not control: every request has a
//! short timeout and every answer a size cap, and an answer that is not what AxeOS sends is
//! an error for that miner, never a panic.

use serde::{Deserialize, Serialize};
use std::net::Ipv4Addr;
use std::time::Duration;

/// AxeOS's answer to /api/system/info is a few KiB; anything far larger is not AxeOS.
pub const MAX_BODY: usize = 64 << 10;
/// Long strings from a device are cut to this many characters before the page shows them.
const MAX_TEXT: usize = 128;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AxeosError {
    /// Nothing accepted a connection on port 80 (no device, or no web server).
    #[error("{ip} does not answer on port 80 ({detail})")]
    Unreachable { ip: Ipv4Addr, detail: String },
    #[error(
        "{ip} accepted the connection but answered too slowly; check the miner's Wi-Fi and power, then scan again"
    )]
    TooSlow { ip: Ipv4Addr },
    #[error("{ip} answered HTTP {status}: not an AxeOS miner (Bitaxe, NerdQAxe and the like)")]
    NotAxeos { ip: Ipv4Addr, status: u16 },
    #[error("{ip} answered /api/system/info, but not as AxeOS does ({detail}); update the miner's firmware or set its pool by hand")]
    Unreadable { ip: Ipv4Addr, detail: String },
    #[error("{ip} refused the new pool settings (HTTP {status}: {message}); its settings are as they were")]
    Refused { ip: Ipv4Addr, status: u16, message: String },
    #[error("{ip} took the new pool but did not restart (HTTP {status}); restart it from its own page or by power")]
    NoRestart { ip: Ipv4Addr, status: u16 },
}

/// Where a miner sends its work: a stratum server and the user it signs in as.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Pool {
    /// The host as AxeOS keeps it (a name or an address, no scheme, no port).
    pub url: String,
    pub port: u16,
    pub user: String,
}

impl Pool {
    /// The same stratum server as `other` (user aside); AxeOS may keep a `stratum+tcp://` prefix.
    pub fn same_server(&self, other: &Pool) -> bool {
        host_of(&self.url).eq_ignore_ascii_case(host_of(&other.url)) && self.port == other.port
    }
}

fn host_of(url: &str) -> &str {
    let url = url.trim();
    let url = url.split_once("://").map_or(url, |(_, rest)| rest);
    url.trim_end_matches('/')
}

/// A miner as the page lists it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MinerInfo {
    pub ip: Ipv4Addr,
    pub hostname: String,
    /// The board (e.g. "Gamma") and its ASIC (e.g. "BM1370"), as far as the firmware says.
    pub model: String,
    /// Gigahashes per second, as AxeOS reports it.
    pub hashrate_ghs: f64,
    /// The ASIC's temperature in °C, if the firmware reports one.
    pub temperature_c: Option<f64>,
    pub pool: Pool,
    pub fallback: Option<Pool>,
    /// The miner mines on its fallback pool now (the primary is unreachable).
    pub using_fallback: bool,
    pub firmware: String,
}

/// The fields of /api/system/info this box reads (ESP-Miner's published API description);
/// the rest of the answer is ignored. Numbers are read as JSON numbers of any kind.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct SystemInfo {
    hostname: String,
    hash_rate: f64,
    #[serde(default)]
    temp: Option<f64>,
    #[serde(rename = "stratumURL")]
    stratum_url: String,
    stratum_port: f64,
    #[serde(default)]
    stratum_user: String,
    #[serde(rename = "fallbackStratumURL", default)]
    fallback_stratum_url: String,
    #[serde(default)]
    fallback_stratum_port: Option<f64>,
    #[serde(default)]
    fallback_stratum_user: String,
    #[serde(rename = "ASICModel", default)]
    asic_model: String,
    #[serde(default)]
    device_model: String,
    #[serde(default)]
    board_version: String,
    #[serde(default)]
    is_using_fallback_stratum: Option<f64>,
    #[serde(default)]
    version: String,
}

fn text(s: &str) -> String {
    s.chars().filter(|c| !c.is_control()).take(MAX_TEXT).collect()
}

fn port(n: f64) -> Option<u16> {
    (n.fract() == 0.0 && (1.0..=65535.0).contains(&n)).then_some(n as u16)
}

impl MinerInfo {
    /// Reads an /api/system/info body; `Err` says what was wrong with it.
    pub fn parse(ip: Ipv4Addr, body: &[u8]) -> Result<MinerInfo, AxeosError> {
        let unreadable = |detail: String| AxeosError::Unreadable { ip, detail };
        let s: SystemInfo = serde_json::from_slice(body).map_err(|e| unreadable(e.to_string()))?;
        let primary_port =
            port(s.stratum_port).ok_or_else(|| unreadable(format!("stratumPort {} is not a port", s.stratum_port)))?;
        if !s.hash_rate.is_finite() || s.hash_rate < 0.0 {
            return Err(unreadable(format!("hashRate {} is not a hashrate", s.hash_rate)));
        }
        let fallback = match (s.fallback_stratum_url.trim(), s.fallback_stratum_port.and_then(port)) {
            ("", _) | (_, None) => None,
            (url, Some(p)) => Some(Pool { url: text(url), port: p, user: text(&s.fallback_stratum_user) }),
        };
        let board = if s.device_model.is_empty() { &s.board_version } else { &s.device_model };
        let model = match (board.trim(), s.asic_model.trim()) {
            ("", "") => "AxeOS miner".to_string(),
            ("", asic) => text(asic),
            (board, "") => text(board),
            (board, asic) => text(&format!("{board} ({asic})")),
        };
        Ok(MinerInfo {
            ip,
            hostname: text(&s.hostname),
            model,
            hashrate_ghs: s.hash_rate,
            temperature_c: s.temp.filter(|t| t.is_finite()),
            pool: Pool { url: text(s.stratum_url.trim()), port: primary_port, user: text(&s.stratum_user) },
            fallback,
            using_fallback: s.is_using_fallback_stratum.is_some_and(|v| v != 0.0),
            firmware: text(&s.version),
        })
    }
}

/// What "Mine on this box" writes to a miner, and what the miner had before.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Pointed {
    pub ip: Ipv4Addr,
    pub hostname: String,
    pub pool: Pool,
    /// The fallback the miner keeps: its previous primary pool, or (when it already mined
    /// on this box) the fallback it had.
    pub fallback: Option<Pool>,
    pub previous_pool: Pool,
    pub restarted: bool,
}

/// The miners' HTTP client.
#[derive(Clone)]
pub struct Client {
    http: reqwest::Client,
}

impl Default for Client {
    fn default() -> Client {
        Client::new(Duration::from_millis(1500), Duration::from_secs(4))
    }
}

impl Client {
    /// `connect`: how long a host may take to accept; `answer`: the whole request.
    pub fn new(connect: Duration, answer: Duration) -> Client {
        let http = reqwest::Client::builder()
            .connect_timeout(connect)
            .timeout(answer)
            // A miner on the LAN, never through a proxy the environment names.
            .no_proxy()
            .redirect(reqwest::redirect::Policy::none())
            .user_agent(concat!("MineBox/", env!("CARGO_PKG_VERSION")))
            .build()
            .expect("the miners' HTTP client");
        Client { http }
    }

    fn url(ip: Ipv4Addr, path: &str) -> String {
        format!("http://{ip}{path}")
    }

    fn failed(ip: Ipv4Addr, e: reqwest::Error) -> AxeosError {
        if e.is_connect() {
            AxeosError::Unreachable { ip, detail: short(&e) }
        } else if e.is_timeout() {
            AxeosError::TooSlow { ip }
        } else {
            AxeosError::Unreadable { ip, detail: short(&e) }
        }
    }

    /// Reads a body up to [`MAX_BODY`]; more is an error, not a bigger buffer.
    async fn body(ip: Ipv4Addr, mut resp: reqwest::Response) -> Result<Vec<u8>, AxeosError> {
        let mut out = Vec::new();
        while let Some(chunk) = resp.chunk().await.map_err(|e| Self::failed(ip, e))? {
            if out.len() + chunk.len() > MAX_BODY {
                return Err(AxeosError::Unreadable { ip, detail: format!("an answer over {} KiB", MAX_BODY >> 10) });
            }
            out.extend_from_slice(&chunk);
        }
        Ok(out)
    }

    /// What the miner at `ip` is and where it mines.
    pub async fn info(&self, ip: Ipv4Addr) -> Result<MinerInfo, AxeosError> {
        let resp = self.http.get(Self::url(ip, "/api/system/info")).send().await.map_err(|e| Self::failed(ip, e))?;
        let status = resp.status().as_u16();
        if status != 200 {
            return Err(AxeosError::NotAxeos { ip, status });
        }
        let body = Self::body(ip, resp).await?;
        MinerInfo::parse(ip, &body)
    }

    /// Makes `target` the miner's primary pool, keeps its previous primary as the fallback
    /// (unless the previous primary already was this box: then its fallback stays as it
    /// was), and restarts it so it connects. Only what the user asked for is written: the
    /// stratum fields, nothing else of the miner's settings.
    ///
    /// The miner signs in as `address.worker`, the worker named after its hostname.
    pub async fn point_to_box(
        &self,
        ip: Ipv4Addr,
        host: &str,
        port: u16,
        address: &str,
    ) -> Result<Pointed, AxeosError> {
        let now = self.info(ip).await?;
        let target =
            &Pool { url: host.to_string(), port, user: format!("{address}.{}", worker_name(&now.hostname, ip)) };
        let already_here = now.pool.same_server(target);
        let mut patch = serde_json::json!({
            "stratumURL": target.url,
            "stratumPort": target.port,
            "stratumUser": target.user,
            // The box's stratum server takes any password.
            "stratumPassword": "x",
        });
        let fallback = if already_here {
            now.fallback.clone()
        } else {
            patch["fallbackStratumURL"] = now.pool.url.clone().into();
            patch["fallbackStratumPort"] = now.pool.port.into();
            patch["fallbackStratumUser"] = now.pool.user.clone().into();
            Some(now.pool.clone())
        };
        let resp =
            self.http.patch(Self::url(ip, "/api/system")).json(&patch).send().await.map_err(|e| Self::failed(ip, e))?;
        let status = resp.status().as_u16();
        if !(200..300).contains(&status) {
            let body = Self::body(ip, resp).await.unwrap_or_default();
            let message = text(String::from_utf8_lossy(&body).trim());
            return Err(AxeosError::Refused { ip, status, message });
        }
        let resp =
            self.http.post(Self::url(ip, "/api/system/restart")).send().await.map_err(|e| Self::failed(ip, e))?;
        let status = resp.status().as_u16();
        if !(200..300).contains(&status) {
            return Err(AxeosError::NoRestart { ip, status });
        }
        tracing::info!(%ip, pool = %target.url, port = target.port, "miner pointed at this box and restarted");
        Ok(Pointed {
            ip,
            hostname: now.hostname,
            pool: target.clone(),
            fallback,
            previous_pool: now.pool,
            restarted: true,
        })
    }
}

/// reqwest's error with its causes, on one line.
fn short(e: &reqwest::Error) -> String {
    let mut s = e.to_string();
    let mut src = std::error::Error::source(e);
    while let Some(c) = src {
        s.push_str(": ");
        s.push_str(&c.to_string());
        src = c.source();
    }
    text(&s)
}

/// A worker name from a miner's hostname: letters, digits, `-` and `_` (what the box's
/// stratum server accepts), at most 32 of them; a miner with no usable name is named
/// after its address.
pub fn worker_name(hostname: &str, ip: Ipv4Addr) -> String {
    let name: String = hostname
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() || c == '-' || c == '_' { c } else { '-' })
        .take(32)
        .collect();
    let name = name.trim_matches('-').to_string();
    if name.is_empty() {
        format!("bitaxe-{}", ip.octets()[3])
    } else {
        name
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const IP: Ipv4Addr = Ipv4Addr::new(10, 0, 0, 7);

    #[test]
    fn reads_the_fields_the_page_shows() {
        let body = br#"{"hostname":"bitaxe","hashRate":512.3,"temp":61.5,"ASICModel":"BM1370","boardVersion":"601",
            "stratumURL":"public-pool.io","stratumPort":21496,"stratumUser":"bc1q.x","fallbackStratumURL":"",
            "fallbackStratumPort":3333,"fallbackStratumUser":"","isUsingFallbackStratum":0,"version":"v2.9.0",
            "sharesRejectedReasons":[]}"#;
        let m = MinerInfo::parse(IP, body).unwrap();
        assert_eq!(m.model, "601 (BM1370)");
        assert_eq!(m.pool, Pool { url: "public-pool.io".into(), port: 21496, user: "bc1q.x".into() });
        assert_eq!(m.fallback, None, "an empty fallback URL is no fallback");
        assert_eq!(m.temperature_c, Some(61.5));
    }

    #[test]
    fn garbage_is_an_error_naming_the_host() {
        for body in [
            &b"<html>router login</html>"[..],
            b"{}",
            br#"{"hostname":"x","hashRate":1,"stratumURL":"p","stratumPort":70000}"#,
        ] {
            let e = MinerInfo::parse(IP, body).unwrap_err();
            assert!(matches!(e, AxeosError::Unreadable { .. }), "{e}");
            assert!(e.to_string().starts_with("10.0.0.7 answered /api/system/info, but not as AxeOS does"), "{e}");
        }
    }

    #[test]
    fn worker_names_keep_what_stratum_accepts() {
        assert_eq!(worker_name("bitaxe-gamma.lan", IP), "bitaxe-gamma-lan");
        assert_eq!(worker_name("<script>", IP), "script");
        assert_eq!(worker_name("", IP), "bitaxe-7");
    }

    #[test]
    fn the_same_server_ignores_a_scheme() {
        let a = Pool { url: "stratum+tcp://10.0.0.1".into(), port: 3363, user: "a".into() };
        let b = Pool { url: "10.0.0.1".into(), port: 3363, user: "b".into() };
        assert!(a.same_server(&b));
        assert!(!a.same_server(&Pool { port: 3333, ..b }));
    }
}
