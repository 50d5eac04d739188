//! The two files as written (every key optional, unknown keys refused) and how a value is
//! taken from them: the user's file wins, else the image defaults, which must set every key
//! (defaults.toml is the one place defaults live; no default is written in code).

use crate::SettingsError;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

#[derive(Debug, Default, Deserialize, Serialize, Clone)]
#[serde(default, deny_unknown_fields)]
pub(crate) struct FileSettings {
    pub paths: Option<crate::paths::File>,
    pub stratum: Option<crate::stratum::File>,
    pub supervisor: Option<crate::supervisor::File>,
    pub snapshots: Option<crate::snapshots::File>,
    pub updates: Option<crate::updates::File>,
    pub notify: Option<crate::notify::File>,
    pub status: Option<crate::status::File>,
    pub cloud: Option<crate::cloud::File>,
    /// Image defaults only: what every coin gets unless its own table says otherwise.
    pub coin_defaults: Option<crate::coins::File>,
    pub coins: BTreeMap<String, crate::coins::File>,
}

pub(crate) fn parse(file: &str, text: &str) -> Result<FileSettings, SettingsError> {
    toml::from_str(text).map_err(|e| {
        let message = e.message().to_string();
        let line = e.span().and_then(|s| text.get(..s.start)).map(|t| t.matches('\n').count() + 1);
        SettingsError::Syntax {
            file: file.to_string(),
            message: match line {
                Some(l) => format!("line {l}: {message}"),
                None => message,
            },
        }
    })
}

/// One table as the two files give it.
pub(crate) struct Layer<'a, T> {
    /// The key prefix in messages (`updates`, `coins.btc`).
    pub prefix: String,
    pub user: Option<&'a T>,
    pub defaults: Option<&'a T>,
    pub user_file: &'a str,
    pub defaults_file: &'a str,
}

impl<'a, T> Layer<'a, T> {
    /// The user's value, else the default; a default the image lacks is the image's error.
    pub fn get<V: Clone>(&self, key: &str, field: impl Fn(&T) -> Option<&V>) -> Result<V, SettingsError> {
        self.user.and_then(&field).or_else(|| self.defaults.and_then(&field)).cloned().ok_or_else(|| {
            SettingsError::Value {
                file: self.defaults_file.to_string(),
                key: format!("{}.{key}", self.prefix),
                message: "missing (the image defaults must set it)".into(),
            }
        })
    }

    /// Whether the user's file sets this key (the one to blame when it is wrong).
    pub fn in_user<V>(&self, field: impl Fn(&T) -> Option<&V>) -> bool {
        self.user.and_then(field).is_some()
    }

    /// A refused value, naming the file it is set in.
    pub fn refuse(&self, key: &str, in_user: bool, message: impl Into<String>) -> SettingsError {
        SettingsError::Value {
            file: if in_user { self.user_file } else { self.defaults_file }.to_string(),
            key: format!("{}.{key}", self.prefix),
            message: message.into(),
        }
    }
}

/// `get!(layer, key)`: the value of `key`, or the error that says it is missing.
macro_rules! get {
    ($l:expr, $f:ident) => {
        $l.get(stringify!($f), |s| s.$f.as_ref())?
    };
}

/// `refuse!(layer, key, message)`: a refused value of `key`, in the file that sets it.
macro_rules! refuse {
    ($l:expr, $f:ident, $m:expr) => {
        $l.refuse(stringify!($f), $l.in_user(|s| s.$f.as_ref()), $m)
    };
}

pub(crate) use {get, refuse};

/// A listening address: an IP and a port (services bind it as given).
pub(crate) fn socket_addr<T>(
    l: &Layer<'_, T>,
    key: &str,
    in_user: bool,
    value: &str,
) -> Result<std::net::SocketAddr, SettingsError> {
    value.parse().map_err(|_| l.refuse(key, in_user, format!("{value:?} is not IP:PORT; use e.g. \"127.0.0.1:3390\"")))
}

/// An http(s) URL with a host, or why not.
pub(crate) fn http_url(value: &str) -> Result<url::Url, String> {
    let parsed = url::Url::parse(value).map_err(|e| format!("{value:?} is not a URL ({e})"))?;
    if !matches!(parsed.scheme(), "http" | "https") || parsed.host_str().is_none() {
        return Err(format!("{value:?}: use an http:// or https:// address"));
    }
    Ok(parsed)
}
