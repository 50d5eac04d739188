//! The status service's shared state: settings, accounts and sessions, the services it
//! reads, and the event feed to open pages.

use crate::accounts::Accounts;
use crate::audit::Audit;
use crate::config::ConfigFiles;
use crate::overview::Overview;
use crate::session::{LoginGate, Sessions};
use crate::sync::SyncTracker;
use crate::system;
use crate::upstream::Upstreams;
use minebox_coin::Registry;
use minebox_settings::Settings;
use std::path::PathBuf;
use std::sync::atomic::AtomicBool;
use std::sync::RwLock;
use tokio::sync::broadcast;

pub struct App {
    pub files: ConfigFiles,
    pub registry: Registry,
    pub settings: RwLock<Settings>,
    pub accounts: Accounts,
    pub sessions: Sessions,
    /// Every change made through the page, with who and when.
    pub audit: Audit,
    /// Users' pool payout addresses and the payees file the stratum server reads.
    pub payees: crate::payees::PayeeBook,
    /// Pool mode's configuration versions.
    pub pool_history: crate::pool_config::PoolHistory,
    pub gate: LoginGate,
    pub up: Upstreams,
    pub tracker: SyncTracker,
    pub system: system::Sources,
    pub events: broadcast::Sender<crate::feed::PageEvent>,
    /// A settings change was saved but the services have not been restarted to read it.
    pub restart_required: AtomicBool,
    /// Largest offline update bundle accepted through the page.
    pub max_upload_bytes: u64,
    /// Cancelled when the page stops: ends the event streams open browsers follow.
    pub closing: tokio_util::sync::CancellationToken,
    /// Connections, request heads and bodies, event streams (tests make them small).
    pub limits: crate::limits::Limits,
    pub streams: std::sync::Arc<crate::limits::Streams>,
    /// The last /metrics text and how long it is served.
    pub metrics: crate::metrics::Cache,
    pub metrics_cache_for: std::time::Duration,
    /// The miners found on the box's own network by the last scan the page asked for.
    pub lan: crate::discovery::Lan,
    /// MineBox Cloud: the device link and the pairing code the page shows.
    pub cloud: crate::cloud::Cloud,
    /// How often the telemetry sender runs a round (when the owner turned it on).
    pub telemetry_every: std::time::Duration,
    /// Two-factor sign-in: secrets, recovery codes, the code throttle, half-signed-in tickets.
    pub mfa: crate::mfa::Mfa,
}

pub struct Options {
    pub config: PathBuf,
    pub defaults: Option<PathBuf>,
    pub registry: Registry,
    /// The old password file: migrated into the users database beside it on first start.
    pub accounts: Option<PathBuf>,
    /// The data partition, for the disk figures (the settings file's directory if unset).
    pub data_dir: Option<PathBuf>,
}

impl App {
    pub fn new(opts: Options) -> anyhow::Result<App> {
        let files = ConfigFiles { user: opts.config, defaults: opts.defaults };
        let settings = files.load(&opts.registry)?;
        let up = Upstreams::new(
            &settings.stratum.api.to_string(),
            &settings.supervisor.api.to_string(),
            &settings.snapshots.api.to_string(),
            &settings.updates.api.to_string(),
        );
        let old_passwords = opts.accounts.unwrap_or_else(|| settings.status.accounts.clone());
        let db = std::sync::Arc::new(crate::user_db::UserDb::open(
            &old_passwords.with_file_name(crate::user_db::FILE),
            &old_passwords,
            crate::user_db::now(),
        )?);
        // The payees file follows the table (a lost or hand-edited file heals here), and a
        // hand edit of a pool table becomes a version of its own.
        let payees =
            crate::payees::PayeeBook::new(db.clone(), minebox_settings::payees::Payees::path_beside(&files.user));
        payees.write_file_or_log();
        let pool_history = crate::pool_config::PoolHistory::new(db.clone());
        let settings = pool_history.record_hand_edits(&files, &opts.registry, settings, crate::user_db::now());
        let data = opts.data_dir.unwrap_or_else(|| {
            files.user.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(std::path::Path::new(".")).to_path_buf()
        });
        Ok(App {
            files,
            registry: opts.registry,
            settings: RwLock::new(settings),
            mfa: crate::mfa::Mfa::new(db.clone()),
            accounts: Accounts::new(db.clone()),
            sessions: Sessions::new(db.clone()),
            audit: Audit::new(db),
            payees,
            pool_history,
            gate: LoginGate::new(),
            up,
            tracker: SyncTracker::default(),
            system: system::Sources::host(&data),
            events: broadcast::channel(256).0,
            restart_required: AtomicBool::new(false),
            max_upload_bytes: 2 << 30,
            closing: Default::default(),
            limits: Default::default(),
            streams: Default::default(),
            metrics: Default::default(),
            metrics_cache_for: crate::metrics::CACHE_FOR,
            lan: crate::discovery::Lan::persisted(
                crate::axeos::Client::default(),
                data.join(crate::discovery::REPORT_FILE),
            ),
            cloud: Default::default(),
            telemetry_every: crate::telemetry::EVERY,
        })
    }

    /// The retention policy, once: expired sessions and old audit entries go.
    pub fn prune(&self) {
        let now = crate::user_db::now();
        match (self.sessions.purge(now), self.audit.prune(now)) {
            (Ok(sessions), Ok(entries)) if sessions + entries > 0 => {
                tracing::info!(sessions, entries, "expired sessions and old audit entries removed")
            }
            (Ok(_), Ok(_)) => {}
            (Err(e), _) | (_, Err(e)) => tracing::warn!(error = %e, "pruning the users database failed"),
        }
    }

    pub fn settings(&self) -> Settings {
        self.settings.read().expect("settings").clone()
    }

    pub fn notify_targets(&self) -> (Option<reqwest::Url>, Option<reqwest::Url>) {
        let s = self.settings.read().expect("settings");
        (s.notify.webhook.clone(), s.notify.ntfy.clone())
    }

    pub async fn overview(&self) -> Overview {
        let settings = self.settings();
        let src = self.system.clone();
        let sys = tokio::task::spawn_blocking(move || system::read(&src)).await.unwrap_or_default();
        crate::overview::build(&self.up, &settings, &self.registry, &self.tracker, sys).await
    }
}
