//! Install progress for the status page: phase, bytes, chunks, rate and ETA.

// The page reads these as the agent writes them: both ends use the types in minebox-api.
pub use minebox_api::snapshot::{Phase, Progress};
use std::sync::{Arc, Mutex};
use std::time::Instant;

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
    pub fn set_validation(&self, v: minebox_api::snapshot::Validation) {
        self.inner.lock().expect("progress").0.validation = Some(v);
    }
    pub fn fail(&self, e: &dyn std::fmt::Display) {
        let mut g = self.inner.lock().expect("progress");
        g.0.phase = Phase::Failed;
        g.0.error = Some(e.to_string());
    }
}
