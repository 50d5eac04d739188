//! Pool mode's configuration and its history (issue 17 point 5).
//!
//! The settings file's `[coins.<id>.pool]` table is what the stratum server runs; the history
//! of that table, per coin, is kept in the users database (`pool_config`): every version with
//! who made it and when, and the values it set (JSON). An admin's change from the page is
//! checked by loading the edited settings exactly as every service loads them, written with
//! `config_version` = the coin's last version + 1, recorded, and the services restarted as for
//! any settings change; the stratum server stamps each block's payouts with the version its
//! job was built under, so a block can be traced to the fee and window it paid by.
//!
//! A hand edit of the table (the file's values differ from the last version recorded) is
//! found at the service's start and recorded as a version of its own, by "settings file";
//! its number is written into the file's `config_version`, so the file and the history agree.

use crate::config::{ConfigError, ConfigFiles};
use crate::user_db::{DbError, UserDb};
use minebox_coin::Registry;
use minebox_settings::{PoolSettings, Settings};
use serde::{Deserialize, Serialize};
use std::sync::{Arc, Mutex};

/// One version's values, as the history keeps them and the page shows them.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PoolValues {
    pub port: u16,
    /// Basis points of each block's reward (100 = 1 %); 0: no fee.
    pub fee_bps: u16,
    /// "" without a fee.
    pub fee_address: String,
    pub window_factor: f64,
    pub max_outputs: u32,
    pub start_difficulty: f64,
    pub min_difficulty: f64,
    pub max_difficulty: f64,
}

impl PoolValues {
    pub fn of(p: &PoolSettings) -> PoolValues {
        PoolValues {
            port: p.port,
            fee_bps: p.fee.as_ref().map_or(0, |f| f.bps),
            fee_address: p.fee.as_ref().map_or_else(String::new, |f| f.address.clone()),
            window_factor: p.window_factor,
            max_outputs: p.max_outputs,
            start_difficulty: p.start_difficulty,
            min_difficulty: p.min_difficulty,
            max_difficulty: p.max_difficulty,
        }
    }
}

/// An admin's change of a coin's pool mode. `enabled: false` turns it off (the table is
/// removed); otherwise `port` is needed and a key left out takes the settings' default
/// (no fee, window factor 2, 39 outputs, the coin's solo difficulty bounds).
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PoolEdit {
    pub enabled: bool,
    pub port: Option<u16>,
    pub fee_bps: Option<u16>,
    pub fee_address: Option<String>,
    pub window_factor: Option<f64>,
    pub max_outputs: Option<u32>,
    pub start_difficulty: Option<f64>,
    pub min_difficulty: Option<f64>,
    pub max_difficulty: Option<f64>,
}

/// One recorded version.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct HistoryEntry {
    pub coin: String,
    pub version: u64,
    /// Unix seconds.
    pub at: i64,
    /// The user, or "settings file" for a hand edit found at start.
    pub who: String,
    /// None: pool mode off.
    pub config: Option<PoolValues>,
    /// What this version changed from the one before, for people ("fee_bps: 0 → 100").
    pub changes: Vec<String>,
}

#[derive(Debug, thiserror::Error)]
pub enum PoolConfigError {
    #[error("there is no coin {0:?} on this box")]
    NoSuchCoin(String),
    #[error("pool mode needs a port (1024-65535) beside the coin's solo port")]
    NoPort,
    #[error("{0}")]
    Settings(#[from] ConfigError),
    #[error(transparent)]
    Db(#[from] DbError),
}

impl PoolConfigError {
    pub fn status(&self) -> u16 {
        match self {
            PoolConfigError::NoSuchCoin(_) => 404,
            PoolConfigError::NoPort | PoolConfigError::Settings(ConfigError::Settings(_) | ConfigError::Invalid(_)) => {
                422
            }
            PoolConfigError::Settings(ConfigError::Write { .. }) | PoolConfigError::Db(_) => 500,
        }
    }
}

/// Versions listed per coin at most (the page shows the recent ones).
pub const HISTORY_SHOWN: i64 = 50;
/// Who a hand edit found at start is recorded as.
pub const HAND_EDIT: &str = "settings file";

pub struct PoolHistory {
    db: Arc<UserDb>,
    /// One change at a time: a version number is read, written to the file and recorded.
    changing: Mutex<()>,
}

impl PoolHistory {
    pub fn new(db: Arc<UserDb>) -> PoolHistory {
        PoolHistory { db, changing: Mutex::new(()) }
    }

    /// The coin's newest version and its values.
    pub fn latest(&self, coin: &str) -> Result<Option<(u64, Option<PoolValues>)>, DbError> {
        let row: Option<(i64, String)> = self
            .db
            .lock()
            .query_row(
                "SELECT version, config FROM pool_config WHERE coin = ?1 ORDER BY version DESC LIMIT 1",
                [coin],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
            .map(Some)
            .or_else(|e| if e == rusqlite::Error::QueryReturnedNoRows { Ok(None) } else { Err(e) })
            .map_err(|e| self.db.damaged(e))?;
        Ok(row.map(|(v, json)| (v as u64, self.values(&json))))
    }

    fn values(&self, json: &str) -> Option<PoolValues> {
        serde_json::from_str::<Option<PoolValues>>(json).unwrap_or_else(|e| {
            tracing::warn!(error = %e, "a pool configuration version in the users database is unreadable");
            None
        })
    }

    /// The coin's versions, newest first, each with what it changed.
    pub fn list(&self, coin: &str) -> Result<Vec<HistoryEntry>, DbError> {
        let rows: Vec<(i64, i64, String, String)> = {
            let conn = self.db.lock();
            let mut st = conn
                .prepare(
                    "SELECT version, at, who, config FROM pool_config WHERE coin = ?1 ORDER BY version DESC LIMIT ?2",
                )
                .map_err(|e| self.db.damaged(e))?;
            let rows = st
                .query_map((coin, HISTORY_SHOWN + 1), |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)))
                .map_err(|e| self.db.damaged(e))?;
            rows.collect::<Result<_, _>>().map_err(|e| self.db.damaged(e))?
        };
        let values: Vec<Option<PoolValues>> = rows.iter().map(|r| self.values(&r.3)).collect();
        let mut out = Vec::new();
        for (i, (version, at, who, _)) in rows.iter().enumerate().take(HISTORY_SHOWN as usize) {
            let before = values.get(i + 1).cloned().flatten();
            out.push(HistoryEntry {
                coin: coin.to_string(),
                version: *version as u64,
                at: *at,
                who: who.clone(),
                config: values[i].clone(),
                changes: changes(before.as_ref(), values[i].as_ref()),
            });
        }
        Ok(out)
    }

    fn record(&self, coin: &str, version: u64, at: i64, who: &str, values: Option<&PoolValues>) -> Result<(), DbError> {
        let json = serde_json::to_string(&values).expect("plain numbers and strings");
        self.db
            .lock()
            .execute(
                "INSERT INTO pool_config (coin, version, at, who, config) VALUES (?1, ?2, ?3, ?4, ?5)",
                (coin, version as i64, at, who, json),
            )
            .map_err(|e| self.db.damaged(e))?;
        Ok(())
    }

    /// The version the next change of `coin` gets: past both the history and the file.
    fn next_version(&self, coin: &str, settings: &Settings) -> Result<u64, DbError> {
        let recorded = self.latest(coin)?.map_or(0, |(v, _)| v);
        let in_file = settings.coins.get(coin).and_then(|c| c.pool.as_ref()).map_or(0, |p| p.config_version);
        Ok(recorded.max(in_file) + 1)
    }

    /// An admin's change: checked as the services load settings, written with the next
    /// version, recorded with `who`. Returns the new settings and the version.
    pub fn change(
        &self,
        files: &ConfigFiles,
        registry: &Registry,
        coin: &str,
        edit: &PoolEdit,
        who: &str,
        now: i64,
    ) -> Result<(Settings, u64), PoolConfigError> {
        if registry.get(coin).is_none() {
            return Err(PoolConfigError::NoSuchCoin(coin.to_string()));
        }
        if edit.enabled && edit.port.is_none() {
            return Err(PoolConfigError::NoPort);
        }
        let _one = self.changing.lock().unwrap_or_else(|p| p.into_inner());
        // The file as it is now: its config_version counts too (a hand edit may have raised it).
        let current = files.load(registry).map_err(ConfigError::from)?;
        let version = self.next_version(coin, &current)?;
        let settings = crate::config::apply_with(files, registry, |doc| write_table(doc, coin, edit, version))?;
        let values = settings.coins.get(coin).and_then(|c| c.pool.as_ref()).map(PoolValues::of);
        self.record(coin, version, now, who, values.as_ref())?;
        Ok((settings, version))
    }

    /// At start: a coin whose pool table differs from its last recorded version was edited
    /// by hand; that edit becomes a version of its own (and the file says its number).
    /// Returns the settings as they are after it.
    pub fn record_hand_edits(
        &self,
        files: &ConfigFiles,
        registry: &Registry,
        settings: Settings,
        now: i64,
    ) -> Settings {
        let mut settings = settings;
        let coins: Vec<String> = settings.coins.keys().cloned().collect();
        for coin in coins {
            let current = settings.coins.get(&coin).and_then(|c| c.pool.as_ref()).map(PoolValues::of);
            let latest = match self.latest(&coin) {
                Ok(l) => l,
                Err(e) => {
                    tracing::warn!(error = %e, coin, "the pool configuration history could not be read");
                    continue;
                }
            };
            let unchanged = match &latest {
                Some((_, values)) => *values == current,
                None => current.is_none(),
            };
            if unchanged {
                continue;
            }
            let _one = self.changing.lock().unwrap_or_else(|p| p.into_inner());
            let version = match self.next_version(&coin, &settings) {
                Ok(v) => v,
                Err(e) => {
                    tracing::warn!(error = %e, coin, "the pool configuration history could not be read");
                    continue;
                }
            };
            if current.is_some() {
                let set_version = |doc: &mut toml_edit::DocumentMut| {
                    crate::config::table(doc, &["coins", &coin, "pool"])["config_version"] =
                        toml_edit::value(version as i64);
                };
                match crate::config::apply_with(files, registry, set_version) {
                    Ok(s) => settings = s,
                    Err(e) => {
                        tracing::warn!(error = %e, coin, "the hand-edited pool table could not be given its version");
                        continue;
                    }
                }
            }
            match self.record(&coin, version, now, HAND_EDIT, current.as_ref()) {
                Ok(()) => tracing::info!(coin, version, "a hand edit of the pool configuration was recorded"),
                Err(e) => tracing::warn!(error = %e, coin, "the pool configuration history could not be written"),
            }
        }
        settings
    }
}

/// Writes `[coins.<coin>.pool]` as the edit says (removed when off); keys left out are removed
/// so the settings' defaults apply.
fn write_table(doc: &mut toml_edit::DocumentMut, coin: &str, edit: &PoolEdit, version: u64) {
    if !edit.enabled {
        if let Some(c) = doc.get_mut("coins").and_then(|c| c.get_mut(coin)).and_then(|c| c.as_table_like_mut()) {
            c.remove("pool");
        }
        return;
    }
    let t = crate::config::table(doc, &["coins", coin, "pool"]);
    fn put<V: Into<toml_edit::Value>>(t: &mut toml_edit::Table, key: &str, v: Option<V>) {
        match v {
            Some(v) => t[key] = toml_edit::value(v),
            None => {
                t.remove(key);
            }
        }
    }
    put(t, "port", edit.port.map(i64::from));
    put(t, "fee_bps", edit.fee_bps.filter(|b| *b > 0).map(i64::from));
    put(t, "fee_address", edit.fee_address.as_deref().map(str::trim).filter(|a| !a.is_empty()).map(String::from));
    put(t, "window_factor", edit.window_factor);
    put(t, "max_outputs", edit.max_outputs.map(i64::from));
    put(t, "start_difficulty", edit.start_difficulty);
    put(t, "min_difficulty", edit.min_difficulty);
    put(t, "max_difficulty", edit.max_difficulty);
    put(t, "config_version", Some(version as i64));
}

/// What changed between two versions, key by key.
pub fn changes(before: Option<&PoolValues>, after: Option<&PoolValues>) -> Vec<String> {
    match (before, after) {
        (_, None) => vec!["pool mode off".into()],
        (None, Some(a)) => vec![format!(
            "pool mode on: port {}, fee {} bps, window factor {}, at most {} outputs",
            a.port, a.fee_bps, a.window_factor, a.max_outputs
        )],
        (Some(b), Some(a)) => {
            let (b, a) = (serde_json::to_value(b).expect("values"), serde_json::to_value(a).expect("values"));
            let (Some(b), Some(a)) = (b.as_object(), a.as_object()) else { return Vec::new() };
            a.iter()
                .filter(|(k, v)| b.get(*k) != Some(v))
                .map(|(k, v)| format!("{k}: {} → {v}", b.get(k).map_or_else(String::new, |x| x.to_string())))
                .collect()
        }
    }
}
