//! What must survive a reboot: the attempt in progress (written and fsynced before the
//! trial reboot, so the next boot knows what it is testing) and the history of results.
//! Both live in the state directory on /data.

use minebox_platform::fs::AtomicWrite;
use serde::{Deserialize, Serialize};
use std::io::Write;
use std::path::{Path, PathBuf};

/// How far an attempt got.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Phase {
    /// In the other slot, armed for a trial boot; waiting for the reboot window.
    Installed,
    /// The trial reboot was started.
    Rebooting,
    /// The trial failed its health check; going back to the old slot.
    RollingBack,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Attempt {
    pub version: String,
    pub from_version: String,
    pub from_slot: String,
    pub phase: Phase,
    /// Why it is rolling back.
    #[serde(default)]
    pub reason: Option<String>,
    /// Unix time, seconds.
    pub at: u64,
}

/// How an update ended, and one past update: the API's types (the history file holds them
/// one JSON line each).
pub use minebox_api::updater::{HistoryEntry, Outcome};

/// The history kept is bounded: the newest entries when it grows past this.
const HISTORY_KEPT: usize = 200;

#[derive(Debug, Clone)]
pub struct Records {
    dir: PathBuf,
}

/// Unix time in seconds (what the status page formats in the user's time zone).
pub fn now() -> u64 {
    minebox_platform::clock::unix_secs().max(0) as u64
}

impl Records {
    pub fn open(dir: &Path) -> std::io::Result<Records> {
        std::fs::create_dir_all(dir)?;
        Ok(Records { dir: dir.to_path_buf() })
    }

    fn attempt_path(&self) -> PathBuf {
        self.dir.join("attempt.json")
    }

    fn history_path(&self) -> PathBuf {
        self.dir.join("history.jsonl")
    }

    pub fn attempt(&self) -> Option<Attempt> {
        let text = std::fs::read_to_string(self.attempt_path()).ok()?;
        match serde_json::from_str(&text) {
            Ok(a) => Some(a),
            Err(e) => {
                tracing::warn!("ignoring unreadable {}: {e}", self.attempt_path().display());
                None
            }
        }
    }

    /// Replaces the attempt record durably (temporary file, fsync, rename, fsync dir).
    pub fn set_attempt(&self, a: &Attempt) -> std::io::Result<()> {
        let text = serde_json::to_string_pretty(a).expect("attempt serializes");
        AtomicWrite::to(&self.attempt_path()).mode(0o600).write(text.as_bytes())
    }

    pub fn clear_attempt(&self) -> std::io::Result<()> {
        match std::fs::remove_file(self.attempt_path()) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(e),
            _ => minebox_platform::fs::sync_dir(&self.dir),
        }
    }

    /// Appends one result (one JSON line, fsynced).
    pub fn push(&self, e: &HistoryEntry) -> std::io::Result<()> {
        let mut entries = self.history();
        if entries.len() >= HISTORY_KEPT {
            entries.truncate(HISTORY_KEPT - 1);
            entries.reverse();
            entries.push(e.clone());
            let text: String = entries.iter().map(|e| serde_json::to_string(e).expect("entry") + "\n").collect();
            return AtomicWrite::to(&self.history_path()).mode(0o600).write(text.as_bytes());
        }
        let mut line = serde_json::to_string(e).expect("entry serializes") + "\n";
        // After a torn append the file does not end in a newline: start a fresh line.
        let text = std::fs::read(self.history_path()).unwrap_or_default();
        if text.last().is_some_and(|b| *b != b'\n') {
            line.insert(0, '\n');
        }
        let mut f = std::fs::OpenOptions::new().create(true).append(true).open(self.history_path())?;
        f.write_all(line.as_bytes())?;
        f.sync_all()
    }

    /// Newest first; a torn last line (power cut mid-append) is skipped.
    pub fn history(&self) -> Vec<HistoryEntry> {
        let text = std::fs::read_to_string(self.history_path()).unwrap_or_default();
        let mut v: Vec<HistoryEntry> = text.lines().filter_map(|l| serde_json::from_str(l).ok()).collect();
        v.reverse();
        v
    }

    pub fn last_result(&self) -> Option<HistoryEntry> {
        self.history().into_iter().next()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(v: &str) -> HistoryEntry {
        HistoryEntry {
            at: now(),
            version: v.into(),
            from_version: "1".into(),
            result: Outcome::Installed,
            message: String::new(),
        }
    }

    #[test]
    fn attempt_survives_and_history_is_newest_first_and_bounded() {
        let dir = tempfile::tempdir().unwrap();
        let r = Records::open(dir.path()).unwrap();
        assert_eq!(r.attempt(), None);
        let a = Attempt {
            version: "2".into(),
            from_version: "1".into(),
            from_slot: "A".into(),
            phase: Phase::Rebooting,
            reason: None,
            at: now(),
        };
        r.set_attempt(&a).unwrap();
        assert_eq!(Records::open(dir.path()).unwrap().attempt(), Some(a));
        r.clear_attempt().unwrap();
        assert_eq!(r.attempt(), None);
        r.clear_attempt().unwrap();

        for i in 0..HISTORY_KEPT + 5 {
            r.push(&entry(&i.to_string())).unwrap();
        }
        // A power cut in the middle of an append leaves a torn line: skipped.
        std::fs::OpenOptions::new()
            .append(true)
            .open(dir.path().join("history.jsonl"))
            .unwrap()
            .write_all(b"{\"at\":")
            .unwrap();
        let h = r.history();
        assert!(h.len() <= HISTORY_KEPT);
        assert_eq!(h[0].version, (HISTORY_KEPT + 4).to_string());
        r.push(&entry("after")).unwrap();
        assert_eq!(r.last_result().unwrap().version, "after");
    }
}
