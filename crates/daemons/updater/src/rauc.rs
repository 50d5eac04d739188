//! RAUC through its command line: `rauc info` (signature and manifest of a bundle),
//! `rauc install` (progress parsed from its output), `rauc status` (board, booted slot)
//! and marking slots good or bad. RAUC itself checks every bundle's signature against the
//! keyring in system.conf, so an unsigned or foreign bundle fails here.

use serde::Deserialize;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::Command;

#[derive(Debug, Clone)]
pub struct Rauc {
    pub bin: PathBuf,
    /// system.conf: its keyring checks bundles in `rauc info`; its compatible names the board.
    pub system_conf: PathBuf,
}

#[derive(Debug, thiserror::Error)]
pub enum RaucError {
    #[error("running {0}: {1}")]
    Spawn(String, std::io::Error),
    #[error("RAUC refused the bundle: {0}")]
    Refused(String),
    #[error("RAUC: {0}")]
    Failed(String),
}

/// What a bundle says about itself (after RAUC checked its signature).
#[derive(Debug, Clone, Deserialize)]
pub struct BundleInfo {
    pub compatible: String,
    pub version: String,
}

#[derive(Debug, Clone, Deserialize)]
pub struct SlotStatus {
    pub compatible: String,
    /// The booted slot's bootname (A or B).
    pub booted: Option<String>,
}

impl Rauc {
    fn cmd(&self) -> Command {
        let mut c = Command::new(&self.bin);
        c.kill_on_drop(true).stdin(Stdio::null());
        c
    }

    async fn output(&self, args: &[&str]) -> Result<String, RaucError> {
        let out = self
            .cmd()
            .args(args)
            .output()
            .await
            .map_err(|e| RaucError::Spawn(format!("{} {}", self.bin.display(), args.join(" ")), e))?;
        if !out.status.success() {
            return Err(RaucError::Failed(last_error_of(&String::from_utf8_lossy(&out.stderr))));
        }
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    }

    /// Checks a bundle's signature against the keyring and reads its manifest.
    pub async fn info(&self, bundle: &Path) -> Result<BundleInfo, RaucError> {
        let conf = format!("--conf={}", self.system_conf.display());
        let bundle = bundle.to_string_lossy();
        let out = self
            .output(&[&conf, "info", "--output-format=json", &bundle])
            .await
            .map_err(|e| RaucError::Refused(e.to_string().trim_start_matches("RAUC: ").to_string()))?;
        serde_json::from_str(out.trim()).map_err(|e| RaucError::Failed(format!("rauc info output: {e}")))
    }

    /// Installs into the other slot and activates it for its trial boot, calling
    /// `progress(percent, message)` for every progress line.
    pub async fn install(&self, bundle: &Path, mut progress: impl FnMut(u8, &str)) -> Result<(), RaucError> {
        let name = format!("{} install {}", self.bin.display(), bundle.display());
        let mut child = self
            .cmd()
            .arg("install")
            .arg(bundle)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|e| RaucError::Spawn(name.clone(), e))?;
        let stdout = child.stdout.take().expect("piped");
        let stderr = child.stderr.take().expect("piped");
        // stderr is small (messages only); read it beside stdout so neither pipe fills.
        let err_task = tokio::spawn(async move {
            let mut lines = BufReader::new(stderr).lines();
            let mut kept = Vec::new();
            while let Ok(Some(l)) = lines.next_line().await {
                if kept.len() < 50 {
                    kept.push(l);
                }
            }
            kept.join("\n")
        });
        let mut lines = BufReader::new(stdout).lines();
        let mut last_error = None;
        while let Ok(Some(line)) = lines.next_line().await {
            if let Some(e) = line.trim().strip_prefix("LastError: ") {
                last_error = Some(e.to_string());
            } else if let Some((pct, msg)) = parse_progress(&line) {
                progress(pct, msg);
            }
        }
        let status = child.wait().await.map_err(|e| RaucError::Spawn(name, e))?;
        let stderr = err_task.await.unwrap_or_default();
        if status.success() {
            return Ok(());
        }
        Err(RaucError::Refused(last_error.unwrap_or_else(|| last_error_of(&stderr))))
    }

    /// The board and the booted slot, as the RAUC service sees them.
    pub async fn status(&self) -> Result<SlotStatus, RaucError> {
        let out = self.output(&["status", "--output-format=json"]).await?;
        serde_json::from_str(out.trim()).map_err(|e| RaucError::Failed(format!("rauc status output: {e}")))
    }

    /// `rauc status mark-good|mark-bad booted|other`.
    pub async fn mark(&self, good: bool, slot: &str) -> Result<(), RaucError> {
        self.output(&["status", if good { "mark-good" } else { "mark-bad" }, slot]).await.map(|_| ())
    }
}

/// The board name from system.conf's `[system] compatible=`.
pub fn compatible_from_conf(path: &Path) -> std::io::Result<String> {
    let text = std::fs::read_to_string(path)?;
    let mut in_system = false;
    for line in text.lines().map(str::trim) {
        if line.starts_with('[') {
            in_system = line == "[system]";
        } else if in_system {
            if let Some(v) = line.strip_prefix("compatible=").or_else(|| line.strip_prefix("compatible =")) {
                return Ok(v.trim().to_string());
            }
        }
    }
    Err(std::io::Error::new(std::io::ErrorKind::InvalidData, format!("{}: no [system] compatible=", path.display())))
}

/// `" 40% Checking bundle done."` -> (40, "Checking bundle done.")
fn parse_progress(line: &str) -> Option<(u8, &str)> {
    let (pct, msg) = line.trim_start().split_once("% ")?;
    Some((pct.parse().ok()?, msg.trim()))
}

/// RAUC's stderr ends with its reason; skip the informational `rauc-Message:` lines.
fn last_error_of(stderr: &str) -> String {
    let useful: Vec<&str> =
        stderr.lines().map(str::trim).filter(|l| !l.is_empty() && !l.starts_with("rauc-Message:")).collect();
    match useful.last() {
        Some(l) => l.to_string(),
        None => "failed without a message".into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn progress_lines_and_board_name() {
        assert_eq!(parse_progress(" 40% Checking bundle done."), Some((40, "Checking bundle done.")));
        assert_eq!(parse_progress("100% Installing done."), Some((100, "Installing done.")));
        assert_eq!(parse_progress("installing"), None);
        let dir = tempfile::tempdir().unwrap();
        let conf = dir.path().join("system.conf");
        std::fs::write(&conf, "[keyring]\ncompatible=no\n[system]\ncompatible=minebox-rpi5\n").unwrap();
        assert_eq!(compatible_from_conf(&conf).unwrap(), "minebox-rpi5");
    }
}
