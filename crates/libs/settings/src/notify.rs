//! `[notify]`: where alerts go (a webhook, an ntfy topic, an email address over SMTP; empty:
//! nowhere) and when a condition is worth one (thresholds and the quiet period).

use crate::file::{get, http_url, refuse, Layer};
use crate::SettingsError;
use serde::{Deserialize, Serialize};

#[derive(Debug, Default, Deserialize, Serialize, Clone)]
#[serde(default, deny_unknown_fields)]
pub(crate) struct File {
    webhook: Option<String>,
    ntfy: Option<String>,
    email: Option<String>,
    smtp: Option<String>,
    quiet_minutes: Option<u64>,
    miner_silent_minutes: Option<u64>,
    hashrate_low_percent: Option<u64>,
    disk_low_mib: Option<u64>,
    disk_low_percent: Option<u64>,
}

/// Each target is none (`""` in the file) or checked here; thresholds are in range.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct NotifySettings {
    /// Gets a JSON POST per alert.
    #[serde(serialize_with = "or_empty")]
    pub webhook: Option<url::Url>,
    /// An ntfy topic URL: gets a plain-text POST per alert.
    #[serde(serialize_with = "or_empty")]
    pub ntfy: Option<url::Url>,
    /// Where alert emails go, sent through `smtp` (both set, or neither).
    pub email: Option<Email>,
    /// After an alert, the same condition is not announced again for this long, even if it
    /// clears and comes back.
    pub quiet_secs: u64,
    /// A miner that sent shares is "silent" after this long without one.
    pub miner_silent_secs: u64,
    /// A miner's 1 h hashrate below this share of its 24 h average is "low".
    pub hashrate_low_percent: u64,
    /// The data disk is "low" below this many bytes free, or below `disk_low_percent` of its size.
    pub disk_low_bytes: u64,
    pub disk_low_percent: u64,
}

/// The owner's address and the mail server that takes messages for it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Email {
    pub to: String,
    #[serde(skip)]
    pub smtp: Smtp,
}

/// `smtp://host[:port]` (plain, for a LAN relay; port 25), `smtp+starttls://host[:port]`
/// (STARTTLS; port 587) or `smtps://host[:port]` (TLS from the start; port 465), with an
/// optional `user:password@` (percent-encoded) for servers that want a login.
#[derive(Debug, Clone, PartialEq)]
pub struct Smtp {
    pub security: SmtpSecurity,
    pub host: String,
    pub port: u16,
    pub user: Option<String>,
    pub password: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SmtpSecurity {
    Plain,
    StartTls,
    Tls,
}

impl Smtp {
    pub fn parse(value: &str) -> Result<Smtp, String> {
        let u = url::Url::parse(value).map_err(|e| format!("{value:?} is not a URL ({e})"))?;
        let (security, default_port) = match u.scheme() {
            "smtp" => (SmtpSecurity::Plain, 25),
            "smtp+starttls" => (SmtpSecurity::StartTls, 587),
            "smtps" => (SmtpSecurity::Tls, 465),
            _ => return Err(format!("{value:?}: use smtp://, smtp+starttls:// or smtps://host:port")),
        };
        let host = u.host_str().filter(|h| !h.is_empty()).ok_or_else(|| format!("{value:?}: no mail server host"))?;
        if !u.path().trim_matches('/').is_empty() || u.query().is_some() {
            return Err(format!("{value:?}: only scheme://[user:password@]host[:port], nothing after the port"));
        }
        let decode = |s: &str| {
            url::form_urlencoded::parse(format!("x={}", s.replace('+', "%2B")).as_bytes())
                .next()
                .map(|(_, v)| v.into_owned())
                .unwrap_or_default()
        };
        let user = Some(u.username()).filter(|s| !s.is_empty()).map(decode);
        let password = u.password().map(decode);
        if password.is_some() && user.is_none() {
            return Err(format!("{value:?}: a password without a user name"));
        }
        Ok(Smtp {
            security,
            host: host.trim_matches(['[', ']']).to_string(),
            port: u.port().unwrap_or(default_port),
            user,
            password,
        })
    }
}

/// A plain `local@domain` check: enough to catch a typo before the first alert is lost;
/// the mail server has the last word.
fn email_address(value: &str) -> Result<String, String> {
    let ok = match value.split_once('@') {
        Some((local, domain)) => {
            !local.is_empty()
                && domain.contains('.')
                && !domain.starts_with('.')
                && !domain.ends_with('.')
                && !domain.contains('@')
                && value.chars().all(|c| c.is_ascii_graphic() && !"<>,;\"\\()[]".contains(c))
        }
        None => false,
    };
    if ok {
        Ok(value.to_string())
    } else {
        Err(format!("{value:?} is not an email address (owner@example.org)"))
    }
}

pub(crate) fn resolve(l: &Layer<'_, File>) -> Result<NotifySettings, SettingsError> {
    let (webhook, ntfy): (String, String) = (get!(l, webhook), get!(l, ntfy));
    let webhook = match webhook.as_str() {
        "" => None,
        u => Some(http_url(u).map_err(|m| refuse!(l, webhook, m))?),
    };
    let ntfy = match ntfy.as_str() {
        "" => None,
        u => Some(http_url(u).map_err(|m| refuse!(l, ntfy, m))?),
    };
    let (to, smtp): (String, String) = (get!(l, email), get!(l, smtp));
    // Half a pair is the fault of the file that set the other half.
    let user_set = l.in_user(|s| s.email.as_ref()) || l.in_user(|s| s.smtp.as_ref());
    let email = match (to.as_str(), smtp.as_str()) {
        ("", "") => None,
        ("", _) => {
            return Err(l.refuse("email", user_set, "smtp is set but email is empty: name the address alerts go to"))
        }
        (_, "") => {
            return Err(l.refuse(
                "smtp",
                user_set,
                "email is set but smtp is empty: name the mail server (smtp://host:port)",
            ))
        }
        (to, smtp) => Some(Email {
            to: email_address(to).map_err(|m| refuse!(l, email, m))?,
            smtp: Smtp::parse(smtp).map_err(|m| refuse!(l, smtp, m))?,
        }),
    };
    let quiet_minutes: u64 = get!(l, quiet_minutes);
    let miner_silent_minutes: u64 = get!(l, miner_silent_minutes);
    let hashrate_low_percent: u64 = get!(l, hashrate_low_percent);
    let disk_low_mib: u64 = get!(l, disk_low_mib);
    let disk_low_percent: u64 = get!(l, disk_low_percent);
    if !(1..=7 * 24 * 60).contains(&quiet_minutes) {
        return Err(refuse!(l, quiet_minutes, "between 1 and 10080 (a week)"));
    }
    if !(1..=24 * 60).contains(&miner_silent_minutes) {
        return Err(refuse!(l, miner_silent_minutes, "between 1 and 1440 (a day)"));
    }
    if hashrate_low_percent > 99 {
        return Err(refuse!(l, hashrate_low_percent, "between 0 (off) and 99"));
    }
    if disk_low_percent > 50 {
        return Err(refuse!(l, disk_low_percent, "between 0 (off) and 50"));
    }
    Ok(NotifySettings {
        webhook,
        ntfy,
        email,
        quiet_secs: quiet_minutes * 60,
        miner_silent_secs: miner_silent_minutes * 60,
        hashrate_low_percent,
        disk_low_bytes: disk_low_mib.saturating_mul(1 << 20),
        disk_low_percent,
    })
}

/// As the file writes it: the URL, or "" for none.
fn or_empty<S: serde::Serializer>(u: &Option<url::Url>, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(u.as_ref().map_or("", url::Url::as_str))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn smtp_urls_name_security_port_and_login() {
        let s = Smtp::parse("smtps://me%40x.org:p%2Bss@mail.example.org").unwrap();
        assert_eq!(s.security, SmtpSecurity::Tls);
        assert_eq!((s.host.as_str(), s.port), ("mail.example.org", 465));
        assert_eq!((s.user.as_deref(), s.password.as_deref()), (Some("me@x.org"), Some("p+ss")));
        let s = Smtp::parse("smtp://127.0.0.1:2525").unwrap();
        assert_eq!((s.security, s.port, s.user), (SmtpSecurity::Plain, 2525, None));
        assert_eq!(Smtp::parse("smtp+starttls://relay.lan").unwrap().port, 587);
        for bad in ["http://mail.example.org", "smtp://", "smtp://h/x", "smtp://:pw@h", "mail.example.org"] {
            assert!(Smtp::parse(bad).is_err(), "{bad} accepted");
        }
    }

    #[test]
    fn email_addresses_are_checked() {
        assert!(email_address("owner@example.org").is_ok());
        for bad in ["owner", "@example.org", "owner@localhost", "a b@example.org", "a@b@example.org", "<a@b.org>"] {
            assert!(email_address(bad).is_err(), "{bad} accepted");
        }
    }
}
