//! The last journal lines of a MineBox service, for the System page: what went wrong is
//! readable without a shell. Read through `journalctl` (the status user is in the
//! systemd-journal group), bounded in lines and time.

use minebox_coin::Registry;
use serde::Serialize;
use std::time::Duration;

/// The units whose journal the page may show, beside one node per coin of the registry
/// (`node-<coin>`, `minebox-node@<coin>.service`); anything else is refused.
pub const SERVICES: &[(&str, &str)] = &[
    ("stratum", "minebox-stratum.service"),
    ("supervisor", "minebox-supervisor.service"),
    ("status", "minebox-status.service"),
    ("snapshot-agent", "minebox-snapshot-agent.service"),
    ("updater", "minebox-updater.service"),
    ("firstboot", "minebox-firstboot.service"),
];

pub const MAX_LINES: usize = 200;

#[derive(Debug, Clone, Serialize)]
pub struct Line {
    /// Microseconds since the epoch.
    pub at_us: u64,
    /// syslog priority: 0 emergency ... 3 error, 4 warning, 6 info, 7 debug.
    pub priority: u8,
    pub message: String,
}

#[derive(Debug, thiserror::Error)]
pub enum JournalError {
    #[error(
        "unknown service {0:?}; known: stratum, supervisor, status, snapshot-agent, updater, firstboot, node-<coin>"
    )]
    Unknown(String),
    #[error("the journal cannot be read here: {0}")]
    Unavailable(String),
}

pub fn unit_of(service: &str, registry: &Registry) -> Result<String, JournalError> {
    if let Some((_, unit)) = SERVICES.iter().find(|(n, _)| *n == service) {
        return Ok(unit.to_string());
    }
    match service.strip_prefix("node-") {
        Some(coin) if registry.get(coin).is_some() => Ok(format!("minebox-node@{coin}.service")),
        _ => Err(JournalError::Unknown(service.into())),
    }
}

pub async fn last_lines(service: &str, lines: usize, registry: &Registry) -> Result<Vec<Line>, JournalError> {
    let unit = unit_of(service, registry)?;
    let lines = lines.clamp(1, MAX_LINES);
    let run = tokio::process::Command::new("journalctl")
        .args(["--no-pager", "-o", "json", "-n", &lines.to_string(), "-u", &unit])
        .kill_on_drop(true)
        .output();
    let out = tokio::time::timeout(Duration::from_secs(5), run)
        .await
        .map_err(|_| JournalError::Unavailable("journalctl took longer than 5 s".into()))?
        .map_err(|e| JournalError::Unavailable(e.to_string()))?;
    if !out.status.success() {
        return Err(JournalError::Unavailable(String::from_utf8_lossy(&out.stderr).trim().to_string()));
    }
    Ok(parse(&String::from_utf8_lossy(&out.stdout)))
}

/// journalctl's JSON lines; MESSAGE may be an array of bytes when it is not UTF-8.
pub fn parse(text: &str) -> Vec<Line> {
    text.lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .map(|v| {
            let message = match &v["MESSAGE"] {
                serde_json::Value::String(s) => s.clone(),
                serde_json::Value::Array(b) => {
                    String::from_utf8_lossy(&b.iter().filter_map(|x| x.as_u64().map(|n| n as u8)).collect::<Vec<u8>>())
                        .into_owned()
                }
                _ => String::new(),
            };
            Line {
                at_us: v["__REALTIME_TIMESTAMP"].as_str().and_then(|s| s.parse().ok()).unwrap_or(0),
                priority: v["PRIORITY"].as_str().and_then(|s| s.parse().ok()).unwrap_or(6),
                message,
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_journalctl_json() {
        let text = concat!(
            r#"{"__REALTIME_TIMESTAMP":"1795420000000000","PRIORITY":"6","MESSAGE":"block accepted by the node"}"#,
            "\n",
            r#"{"__REALTIME_TIMESTAMP":"1795420000000001","PRIORITY":"3","MESSAGE":[104,105,255]}"#,
            "\nnot json\n"
        );
        let l = parse(text);
        assert_eq!(l.len(), 2);
        assert_eq!(l[0].message, "block accepted by the node");
        assert_eq!(l[1].priority, 3);
        assert_eq!(l[1].message, "hi\u{fffd}");
    }

    #[test]
    fn only_minebox_units() {
        let r = Registry::embedded();
        assert_eq!(unit_of("stratum", &r).unwrap(), "minebox-stratum.service");
        assert_eq!(unit_of("node-bsv", &r).unwrap(), "minebox-node@bsv.service");
        assert!(unit_of("sshd", &r).is_err());
        assert!(unit_of("../../etc/shadow", &r).is_err());
        assert!(unit_of("node-doge", &r).is_err());
        assert!(unit_of("node-../../x", &r).is_err());
    }

    #[test]
    fn a_coin_added_to_the_image_has_its_node_journal() {
        let dir = tempfile::tempdir().unwrap();
        let btc = include_str!("../../../../coins/btc.toml");
        std::fs::write(dir.path().join("tbtc.toml"), btc.replace("id = \"btc\"", "id = \"tbtc\"")).unwrap();
        let r = Registry::image(dir.path()).unwrap();
        assert_eq!(unit_of("node-tbtc", &r).unwrap(), "minebox-node@tbtc.service");
    }
}
