//! The one worker that changes anything: checks, downloads, installs, the trial reboot,
//! and after a boot the verdict on a trial. The API sends it [`Command`]s and reads its
//! [`Status`]; doing one thing at a time keeps slots, records and reboots consistent.

use crate::boot;
use crate::download::{self, Expected};
use crate::health::HealthCheck;
use crate::health::HealthConfig;
use crate::manifest::{self, Manifest};
use crate::rauc::{self, Rauc};
use crate::record::{now, Attempt, HistoryEntry, Outcome, Phase, Records};
use crate::status::{Current, Progress, State, Status};
use minebox_settings::UpdateSettings;
use std::path::{Path, PathBuf};
use std::time::Duration;
use tokio::sync::{mpsc, oneshot, watch};

/// After a failed scheduled check, the next one comes this soon (not `check_every_hours`).
const RETRY_FAILED_CHECK: Duration = Duration::from_secs(15 * 60);

/// When to reboot into an installed update.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reboot {
    /// At once (the user asked for it).
    Now,
    /// In the configured reboot window.
    Window,
}

/// Where a bundle comes from.
#[derive(Debug, Clone)]
pub enum Source {
    /// The one the last check found (downloaded, size and SHA-256 from the manifest).
    Available,
    /// A bundle URL given by an operator (RAUC's signature check is the only proof).
    Url(String),
    /// A bundle file on this machine (left in place).
    File(PathBuf),
    /// An uploaded bundle in the state directory (deleted once used).
    Upload(PathBuf),
    /// The newest `*.raucb` on the USB stick.
    Usb,
}

pub type Reply = oneshot::Sender<Result<Status, String>>;

pub enum Command {
    Check { reply: Reply },
    Install { source: Source, reboot: Reboot, reply: Reply },
}

/// What the API holds: a way to ask, and the status to read.
#[derive(Clone)]
pub struct Handle {
    pub commands: mpsc::Sender<Command>,
    pub status: watch::Receiver<Status>,
    pub records: Records,
    pub config: UpdateSettings,
}

impl Handle {
    /// Sends a command and waits for its outcome.
    pub async fn ask(&self, make: impl FnOnce(Reply) -> Command) -> Result<Status, String> {
        let (tx, rx) = oneshot::channel();
        self.commands.send(make(tx)).await.map_err(|_| "the updater is stopping".to_string())?;
        rx.await.map_err(|_| "the updater is stopping".to_string())?
    }
}

pub struct Updater {
    cfg: UpdateSettings,
    /// What the trial boot's health check probes (from several settings sections).
    health: HealthConfig,
    rauc: Rauc,
    client: reqwest::Client,
    records: Records,
    status: watch::Sender<Status>,
    compatible: String,
    running: String,
    slot: String,
    trial: bool,
    /// An installed update waits for the reboot window.
    reboot_pending: bool,
}

/// Why an install did not happen; `record` failures go into the history.
struct Failure {
    message: String,
    version: String,
    record: bool,
}

impl Failure {
    fn transient(version: &str, message: impl ToString) -> Failure {
        Failure { message: message.to_string(), version: version.into(), record: false }
    }
    fn refused(version: &str, message: impl ToString) -> Failure {
        Failure { message: message.to_string(), version: version.into(), record: true }
    }
}

impl Updater {
    /// Learns what is running (board, version, slot, trial or not).
    pub async fn new(
        cfg: UpdateSettings,
        health: HealthConfig,
    ) -> anyhow::Result<(Updater, Handle, mpsc::Receiver<Command>)> {
        use anyhow::Context;
        let rauc = Rauc { bin: cfg.rauc.clone(), system_conf: cfg.rauc_system_conf.clone() };
        let rauc_status = rauc.status().await;
        let compatible = match rauc::compatible_from_conf(&cfg.rauc_system_conf) {
            Ok(c) => c,
            Err(e) => rauc_status.as_ref().map(|s| s.compatible.clone()).map_err(|_| e).context("the board name")?,
        };
        let slot = match &rauc_status {
            Ok(s) => s.booted.clone().unwrap_or_else(|| "unknown".into()),
            Err(e) => {
                tracing::warn!("rauc status: {e}");
                "unknown".into()
            }
        };
        let running = boot::running_version(&cfg.os_release).context("the running version")?;
        let trial = match boot::is_trial(&cfg.tryboot).await {
            Ok(t) => t,
            Err(e) => {
                tracing::warn!("cannot tell whether this is a trial boot ({e}); taking it as a normal boot");
                false
            }
        };
        let records = Records::open(&cfg.state_dir).with_context(|| format!("{}", cfg.state_dir.display()))?;
        let (status, status_rx) = watch::channel(Status {
            current: Current { version: running.clone(), slot: slot.clone(), trial },
            state: if trial { State::Verifying } else { State::Idle },
            progress: None,
            available: None,
            last_result: records.last_result(),
            error: None,
            pending: None,
            reboot_at: None,
        });
        let client = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(30))
            .read_timeout(Duration::from_secs(120))
            .build()?;
        let (tx, rx) = mpsc::channel(8);
        let handle = Handle { commands: tx, status: status_rx, records: records.clone(), config: cfg.clone() };
        let mut u = Updater {
            cfg,
            health,
            rauc,
            client,
            records,
            status,
            compatible,
            running,
            slot,
            trial,
            reboot_pending: false,
        };
        // Settled before the API answers, so nobody reads a status from before the boot
        // was judged (a trial's health check, which takes long, runs in the worker).
        if !u.trial {
            u.after_normal_boot().await;
        }
        Ok((u, handle, rx))
    }

    /// Runs until the command channel closes (the daemon stops).
    pub async fn run(mut self, mut commands: mpsc::Receiver<Command>) {
        if self.trial {
            let attempt = self.records.attempt();
            self.verify_trial(attempt).await;
        }
        let mut next_check = tokio::time::Instant::now();
        if self.state() != State::Rebooting && self.records.attempt().is_none() {
            self.usb_at_startup().await;
        }
        loop {
            // Re-read the wall clock at least every minute: the Pi has no RTC, and the
            // clock may jump when NTP sets it.
            let window_wait = self.cfg.reboot_window.wait_now().min(Duration::from_secs(60));
            tokio::select! {
                cmd = commands.recv() => match cmd {
                    None => return,
                    Some(Command::Check { reply }) => {
                        let r = self.check().await.map(|_| self.snapshot());
                        let _ = reply.send(r);
                    }
                    Some(Command::Install { source, reboot, reply }) => {
                        let r = self.install(source, reboot).await.map(|_| self.snapshot());
                        let _ = reply.send(r);
                    }
                },
                _ = tokio::time::sleep_until(next_check) => {
                    let mut every = self.cfg.check_every;
                    if matches!(self.state(), State::Idle | State::Failed) && !self.periodic().await {
                        // Offline at boot, or the server down: try again sooner.
                        every = every.min(RETRY_FAILED_CHECK);
                    }
                    next_check = tokio::time::Instant::now() + every;
                }
                _ = tokio::time::sleep(window_wait), if self.reboot_pending => {
                    if self.cfg.reboot_window.wait_now().is_zero() {
                        self.trial_reboot().await;
                    }
                }
            }
        }
    }

    fn snapshot(&self) -> Status {
        self.status.borrow().clone()
    }

    fn state(&self) -> State {
        self.status.borrow().state
    }

    fn set(&self, f: impl FnOnce(&mut Status)) {
        self.status.send_modify(f);
    }

    fn set_state(&self, state: State, progress: Option<Progress>) {
        self.set(|s| {
            s.state = state;
            s.progress = progress;
            if state != State::Failed {
                s.error = None;
            }
        });
    }

    fn fail(&self, message: &str) {
        tracing::warn!("{message}");
        let message = message.to_string();
        self.set(|s| {
            s.state = State::Failed;
            s.progress = None;
            s.error = Some(message);
        });
    }

    fn history(&self, version: &str, from_version: &str, result: Outcome, message: &str) {
        let e = HistoryEntry {
            at: now(),
            version: version.into(),
            from_version: from_version.into(),
            result,
            message: message.into(),
        };
        if let Err(err) = self.records.push(&e) {
            tracing::error!("cannot record the update history: {err}");
        }
        self.set(|s| s.last_result = Some(e));
    }

    /// The state to rest in when nothing is running.
    fn rest(&self) {
        if self.reboot_pending {
            let wait = self.cfg.reboot_window.wait_now();
            let at = chrono::Local::now() + chrono::Duration::from_std(wait).unwrap_or_default();
            self.set(|s| s.reboot_at = Some(at.to_rfc3339_opts(chrono::SecondsFormat::Secs, false)));
            self.set_state(State::WaitingForWindow, None);
        } else {
            self.set(|s| s.reboot_at = None);
            self.set_state(State::Idle, None);
        }
    }

    /// After a normal boot: notice a trial that was rolled back, or an installed update
    /// still waiting for its trial.
    async fn after_normal_boot(&mut self) {
        let Some(a) = self.records.attempt() else { return self.rest() };
        match a.phase {
            Phase::Installed if a.version != self.running => {
                // Installed before a restart but not yet tried: still armed, wait again.
                tracing::info!(version = %a.version, "an installed update still waits for its trial boot");
                self.reboot_pending = true;
                self.set(|s| s.pending = Some(a.version.clone()));
            }
            Phase::Installed => {
                let _ = self.records.clear_attempt();
            }
            Phase::Rebooting | Phase::RollingBack if a.version == self.running => {
                // Committed, but the record was not cleared before a power cut.
                self.history(&a.version, &a.from_version, Outcome::Installed, "installed; trial boot passed");
                let _ = self.records.clear_attempt();
            }
            Phase::Rebooting | Phase::RollingBack => {
                let why = a.reason.clone().unwrap_or_else(|| "the trial boot did not reach a health verdict".into());
                let message = format!("update to {} failed, rolled back: {why}", a.version);
                tracing::warn!("{message}");
                // Disarm the failed slot so no later tryboot starts it again.
                if let Err(e) = self.rauc.mark(false, "other").await {
                    tracing::warn!("marking the failed slot bad: {e}");
                }
                self.history(&a.version, &a.from_version, Outcome::RolledBack, &message);
                let _ = self.records.clear_attempt();
            }
        }
        self.rest();
    }

    async fn verify_trial(&mut self, attempt: Option<Attempt>) {
        let version = self.running.clone();
        let from = attempt.as_ref().map(|a| a.from_version.clone()).unwrap_or_else(|| "unknown".into());
        self.set_state(State::Verifying, None);
        tracing::info!(%version, "trial boot: running the health check");
        let report = HealthCheck::new(self.health.clone()).until_healthy().await;
        if report.healthy {
            match self.rauc.mark(true, "booted").await {
                Ok(()) => {
                    tracing::info!(%version, "trial passed; this slot now boots by default");
                    self.history(&version, &from, Outcome::Installed, "installed; trial boot passed");
                    let _ = self.records.clear_attempt();
                    self.rest();
                }
                // The firmware falls back by itself at the next boot; say why.
                Err(e) => self.fail(&format!("healthy, but committing the slot failed: {e}")),
            }
            return;
        }
        let reason = format!("health check failed: {}", report.failures());
        tracing::warn!(%version, "{reason}; going back to the previous slot");
        if let Err(e) = self.rauc.mark(false, "booted").await {
            tracing::error!("marking this slot bad: {e}");
        }
        let a = Attempt {
            version: version.clone(),
            from_version: from,
            from_slot: attempt.map(|a| a.from_slot).unwrap_or_else(|| "unknown".into()),
            phase: Phase::RollingBack,
            reason: Some(reason.clone()),
            at: now(),
        };
        if let Err(e) = self.records.set_attempt(&a) {
            tracing::error!("cannot record the rollback: {e}");
        }
        self.set(|s| {
            s.state = State::Rebooting;
            s.error = Some(reason);
        });
        if let Err(e) = run_command(&self.cfg.rollback_command).await {
            self.fail(&format!("rebooting back to the previous slot: {e}"));
        }
    }

    /// Fetches and verifies the channel manifest; `Some` when it offers another version.
    async fn check(&mut self) -> Result<Option<Manifest>, String> {
        self.set_state(State::Checking, None);
        let r = async {
            let keys = manifest::pinned_keys(&self.cfg.keys)?;
            let url = self.cfg.manifest_url_for(&self.compatible);
            let m = manifest::fetch(&self.client, &url, &keys).await?;
            let newer = manifest::applies(&m, &self.compatible, &self.running, self.cfg.max_bundle_bytes)?;
            // Already installed and waiting for its trial: nothing new on offer.
            let pending = self.status.borrow().pending.clone();
            Ok::<_, manifest::ManifestError>((newer && pending.as_deref() != Some(&m.version)).then_some(m))
        }
        .await;
        match r {
            Ok(m) => {
                tracing::info!(available = ?m.as_ref().map(|m| &m.version), "checked the update channel");
                self.set(|s| s.available = m.clone());
                self.rest();
                Ok(m)
            }
            Err(e) => {
                self.set(|s| s.available = None);
                let message = e.to_string();
                if self.reboot_pending {
                    // An installed update still waits: that stays the state.
                    tracing::warn!("{message}");
                    self.rest();
                    self.set(|s| s.error = Some(message.clone()));
                } else {
                    self.fail(&message);
                }
                Err(message)
            }
        }
    }

    /// A scheduled check (and install, with `auto_install`); false if the check failed.
    async fn periodic(&mut self) -> bool {
        match self.check().await {
            Ok(Some(_)) if self.cfg.auto_install => {
                let _ = self.install(Source::Available, Reboot::Window).await;
                true
            }
            Ok(_) => true,
            Err(_) => false,
        }
    }

    async fn usb_at_startup(&mut self) {
        let Some(bundle) = newest_bundle(&self.cfg.usb_dir) else { return };
        let seen_path = self.cfg.state_dir.join("usb-seen");
        let id = file_identity(&bundle);
        if std::fs::read_to_string(&seen_path).is_ok_and(|s| s.trim() == id) {
            return;
        }
        // Tried once per file: a stick left in does not reinstall at every boot.
        let _ = minebox_platform::fs::AtomicWrite::to(&seen_path).mode(0o600).write(id.as_bytes());
        tracing::info!(bundle = %bundle.display(), "installing the bundle found on the USB stick");
        let _ = self.install(Source::File(bundle), Reboot::Window).await;
    }

    /// Gets the bundle, has RAUC check and install it, records the attempt, then
    /// reboots now or arms the window.
    async fn install(&mut self, source: Source, reboot: Reboot) -> Result<(), String> {
        let nothing_new = self.status.borrow().available.is_none();
        if matches!(source, Source::Available) && nothing_new && self.reboot_pending && reboot == Reboot::Now {
            // "Install now" while an installed update waits for the window: reboot into it.
            self.trial_reboot().await;
            return match self.state() {
                State::Failed => Err(self.status.borrow().error.clone().unwrap_or_default()),
                _ => Ok(()),
            };
        }
        match self.install_inner(source).await {
            Ok(version) => {
                tracing::info!(%version, "installed into the other slot; armed for a trial boot");
                self.reboot_pending = true;
                self.set(|s| {
                    s.pending = Some(version);
                    s.available = None;
                });
                if reboot == Reboot::Now || self.cfg.reboot_window.wait_now().is_zero() {
                    self.trial_reboot().await;
                } else {
                    self.rest();
                }
                match self.state() {
                    State::Failed => Err(self.status.borrow().error.clone().unwrap_or_default()),
                    _ => Ok(()),
                }
            }
            Err(f) => {
                if f.record {
                    self.history(&f.version, &self.running.clone(), Outcome::Failed, &f.message);
                }
                self.fail(&f.message);
                Err(f.message)
            }
        }
    }

    async fn install_inner(&mut self, source: Source) -> Result<String, Failure> {
        let mut expect_version = None;
        let (bundle, delete_after) = match source {
            Source::Available => {
                let m = self.status.borrow().available.clone();
                let Some(m) = m else {
                    return Err(Failure::transient("unknown", "no update available: check first"));
                };
                expect_version = Some(m.version.clone());
                let want = Expected {
                    size: Some(m.size),
                    sha256: Some(m.sha256.to_lowercase()),
                    limit: self.cfg.max_bundle_bytes,
                };
                (self.download(&m.bundle_url, &m.sha256.to_lowercase(), &want, &m.version).await?, true)
            }
            Source::Url(url) => {
                let name =
                    format!("url-{}", &hex::encode(<sha2::Sha256 as sha2::Digest>::digest(url.as_bytes()))[..16]);
                let want = Expected { size: None, sha256: None, limit: self.cfg.max_bundle_bytes };
                (self.download(&url, &name, &want, "unknown").await?, true)
            }
            Source::File(p) => (p, false),
            Source::Upload(p) => (p, true),
            Source::Usb => match newest_bundle(&self.cfg.usb_dir) {
                Some(p) => (p, false),
                None => {
                    return Err(Failure::transient(
                        "unknown",
                        format!("no *.raucb bundle under {}", self.cfg.usb_dir.display()),
                    ))
                }
            },
        };
        let r = self.rauc_install(&bundle, expect_version).await;
        if delete_after {
            let _ = tokio::fs::remove_file(&bundle).await;
        }
        r
    }

    async fn download(&mut self, url: &str, name: &str, want: &Expected, version: &str) -> Result<PathBuf, Failure> {
        self.set_state(State::Downloading, Some(Progress::new("download", 0, want.size.unwrap_or(0))));
        let status = self.status.clone();
        let dir = self.cfg.state_dir.join("downloads");
        download::fetch(&self.client, url, &dir, name, want, move |done, total| {
            status.send_modify(|s| s.progress = Some(Progress::new("download", done, total)));
        })
        .await
        .map_err(|e| match e {
            download::DownloadError::TooLarge { .. } | download::DownloadError::WrongHash { .. } => {
                Failure::refused(version, e)
            }
            _ => Failure::transient(version, e),
        })
    }

    async fn rauc_install(&mut self, bundle: &Path, expect_version: Option<String>) -> Result<String, Failure> {
        let unknown = expect_version.clone().unwrap_or_else(|| "unknown".into());
        self.set_state(State::Installing, Some(Progress::new("verifying", 0, 100)));
        let info = self.rauc.info(bundle).await.map_err(|e| Failure::refused(&unknown, e))?;
        if info.compatible != self.compatible {
            let m = format!("bundle is for {:?}, this box is {:?}", info.compatible, self.compatible);
            return Err(Failure::refused(&info.version, m));
        }
        if info.version == self.running {
            return Err(Failure::refused(&info.version, format!("version {} is already running", info.version)));
        }
        if let Some(v) = expect_version.filter(|v| *v != info.version) {
            let m = format!("bundle says version {}, the manifest {v}", info.version);
            return Err(Failure::refused(&info.version, m));
        }
        let status = self.status.clone();
        self.rauc
            .install(bundle, move |pct, msg| {
                status.send_modify(|s| {
                    s.progress = Some(Progress { phase: msg.to_string(), done: pct.into(), total: 100, percent: pct })
                });
            })
            .await
            .map_err(|e| Failure::refused(&info.version, e))?;
        let a = Attempt {
            version: info.version.clone(),
            from_version: self.running.clone(),
            from_slot: self.slot.clone(),
            phase: Phase::Installed,
            reason: None,
            at: now(),
        };
        self.records
            .set_attempt(&a)
            .map_err(|e| Failure::transient(&info.version, format!("recording the attempt: {e}")))?;
        Ok(info.version)
    }

    /// Records the attempt durably, then starts the trial boot.
    async fn trial_reboot(&mut self) {
        let Some(mut a) = self.records.attempt() else {
            self.reboot_pending = false;
            return self.fail("no installed update to reboot into");
        };
        a.phase = Phase::Rebooting;
        a.at = now();
        if let Err(e) = self.records.set_attempt(&a) {
            return self.fail(&format!("recording the attempt before rebooting: {e}"));
        }
        self.reboot_pending = false;
        self.set(|s| s.reboot_at = None);
        self.set_state(State::Rebooting, None);
        tracing::info!(version = %a.version, from = %a.from_slot, "rebooting into the new version on trial");
        if let Err(e) = run_command(&self.cfg.reboot_command).await {
            a.phase = Phase::Installed;
            let _ = self.records.set_attempt(&a);
            self.fail(&format!("starting the trial reboot: {e}"));
        }
    }
}

/// Runs a reboot command to completion.
async fn run_command(argv: &[String]) -> Result<(), String> {
    let out = tokio::process::Command::new(&argv[0])
        .args(&argv[1..])
        .stdin(std::process::Stdio::null())
        .output()
        .await
        .map_err(|e| format!("{}: {e}", argv[0]))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(format!("{} exited with {}: {}", argv.join(" "), out.status, String::from_utf8_lossy(&out.stderr).trim()))
    }
}

/// The newest `*.raucb` in `dir` or one level below (a stick mounted at /media/NAME).
pub fn newest_bundle(dir: &Path) -> Option<PathBuf> {
    let mut found = Vec::new();
    let mut scan = |d: &Path, deeper: &mut Vec<PathBuf>| {
        for e in std::fs::read_dir(d).into_iter().flatten().flatten() {
            let p = e.path();
            let Ok(meta) = e.metadata() else { continue };
            if meta.is_dir() {
                deeper.push(p);
            } else if p.extension().is_some_and(|x| x == "raucb") {
                found.push((meta.modified().ok(), p));
            }
        }
    };
    let mut subdirs = Vec::new();
    scan(dir, &mut subdirs);
    for d in subdirs {
        scan(&d, &mut Vec::new());
    }
    found.sort();
    found.pop().map(|(_, p)| p)
}

fn file_identity(p: &Path) -> String {
    let m = std::fs::metadata(p).ok();
    let size = m.as_ref().map(|m| m.len()).unwrap_or(0);
    let mtime = m
        .and_then(|m| m.modified().ok())
        .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
        .map(|d| d.as_secs())
        .unwrap_or(0);
    format!("{} {size} {mtime}", p.display())
}
