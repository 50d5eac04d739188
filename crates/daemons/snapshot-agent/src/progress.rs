//! Install progress for the status page: phase, bytes, chunks, rate and ETA.

use serde::Serialize;
use std::sync::{Arc, Mutex};
use std::time::Instant;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum Phase {
    #[default]
    Idle,
    Verifying,
    Reusing,
    Downloading,
    Syncing,
    Swapping,
    /// A `utxo` snapshot: Bitcoin Core is loading the set (`loadtxoutset`); the node keeps
    /// running on its own chain meanwhile.
    Loading,
    Done,
    Failed,
}

#[derive(Debug, Clone, Default, Serialize)]
pub struct Progress {
    pub phase: Phase,
    pub bytes_total: u64,
    pub bytes_done: u64,
    pub bytes_reused: u64,
    /// Bytes received from the network so far (compressed), counted as they arrive.
    pub bytes_received: u64,
    pub chunks_total: u64,
    pub chunks_downloaded: u64,
    pub rate_bytes_per_sec: f64,
    pub eta_secs: Option<f64>,
    pub error: Option<String>,
    /// A `utxo` snapshot once loaded: the snapshot chainstate's tip and how far the node's
    /// background validation of the chain below it has come.
    pub validation: Option<crate::utxo::Validation>,
    /// How long Bitcoin Core took to load the UTXO set (`loadtxoutset`), seconds.
    pub load_secs: Option<f64>,
}

#[derive(Clone, Default)]
pub struct SharedProgress {
    inner: Arc<Mutex<(Progress, Option<Instant>)>>,
    received: Arc<std::sync::atomic::AtomicU64>,
}

impl SharedProgress {
    /// The counter the downloader adds received bytes to.
    pub fn received(&self) -> Arc<std::sync::atomic::AtomicU64> {
        self.received.clone()
    }

    pub fn get(&self) -> Progress {
        let (mut p, started) = self.inner.lock().expect("progress").clone();
        p.bytes_received = self.received.load(std::sync::atomic::Ordering::Relaxed);
        if let Some(t) = started {
            let secs = t.elapsed().as_secs_f64().max(0.001);
            // The network rate; chunks of node data barely compress, so it also measures
            // how fast the remaining bytes arrive.
            p.rate_bytes_per_sec = p.bytes_received as f64 / secs;
            let left = p.bytes_total.saturating_sub(p.bytes_done.max(p.bytes_received + p.bytes_reused));
            if p.rate_bytes_per_sec > 0.0 && left > 0 {
                p.eta_secs = Some(left as f64 / p.rate_bytes_per_sec);
            }
        }
        p
    }
    pub fn set_phase(&self, phase: Phase) {
        self.inner.lock().expect("progress").0.phase = phase;
    }
    pub fn start(&self, bytes_total: u64, chunks_total: u64) {
        let mut g = self.inner.lock().expect("progress");
        g.0.bytes_total = bytes_total;
        g.0.chunks_total = chunks_total;
        g.1 = Some(Instant::now());
    }
    pub fn add_done(&self, bytes: u64, reused: u64) {
        let mut g = self.inner.lock().expect("progress");
        g.0.bytes_done += bytes;
        g.0.bytes_reused += reused;
    }
    pub fn add_downloaded_chunk(&self) {
        self.inner.lock().expect("progress").0.chunks_downloaded += 1;
    }
    pub fn set_load_secs(&self, secs: f64) {
        self.inner.lock().expect("progress").0.load_secs = Some(secs);
    }
    pub fn set_validation(&self, v: crate::utxo::Validation) {
        self.inner.lock().expect("progress").0.validation = Some(v);
    }
    pub fn fail(&self, e: &dyn std::fmt::Display) {
        let mut g = self.inner.lock().expect("progress");
        g.0.phase = Phase::Failed;
        g.0.error = Some(e.to_string());
    }
}
