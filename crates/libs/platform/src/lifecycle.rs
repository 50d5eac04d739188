//! How a MineBox daemon lives under systemd (and behaves the same outside it).
//!
//! - [`init_logging`] writes structured journald fields when started by systemd, plain stderr
//!   (colour only on a terminal) otherwise; `RUST_LOG` filters, `info` by default.
//! - [`ready`] says `READY=1` and starts a watchdog keep-alive at half the unit's `WatchdogSec`.
//! - [`terminated`] resolves on SIGTERM or Ctrl-C and says `STOPPING=1`.

use std::io::IsTerminal;
use std::time::Duration;

pub fn init_logging() {
    use tracing_subscriber::prelude::*;
    let filter = tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into());
    if std::env::var_os("JOURNAL_STREAM").is_some() {
        if let Ok(journald) = tracing_journald::layer() {
            tracing_subscriber::registry().with(filter).with(journald).init();
            return;
        }
    }
    let stderr =
        tracing_subscriber::fmt::layer().with_ansi(std::io::stderr().is_terminal()).with_writer(std::io::stderr);
    tracing_subscriber::registry().with(filter).with(stderr).init();
}

/// Tells systemd the service is up and keeps its watchdog fed while the runtime runs.
pub fn ready() {
    let _ = sd_notify::notify(false, &[sd_notify::NotifyState::Ready]);
    let mut usec = 0u64;
    if sd_notify::watchdog_enabled(false, &mut usec) && usec > 0 {
        let every = Duration::from_micros(usec / 2);
        tokio::spawn(async move {
            loop {
                let _ = sd_notify::notify(false, &[sd_notify::NotifyState::Watchdog]);
                tokio::time::sleep(every).await;
            }
        });
    }
}

/// Waits for SIGTERM (systemd stopping the unit) or Ctrl-C.
pub async fn terminated() {
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).expect("SIGTERM handler");
    tokio::select! {
        _ = term.recv() => {}
        _ = tokio::signal::ctrl_c() => {}
    }
    let _ = sd_notify::notify(false, &[sd_notify::NotifyState::Stopping]);
}
