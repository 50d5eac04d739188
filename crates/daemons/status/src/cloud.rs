//! "Link to MineBox Cloud" (issue 16, point 4, the box's side): where the box stands with
//! the cloud, in words the page shows, and the two changes an admin makes (link, unlink).
//!
//! The device key is made at first boot ([`make_key`], when a cloud is set) and stays in
//! `settings.cloud.key` on /data; only its public half and signatures leave the box
//! (`minebox-cloud-link`). Making it talks to no one: a box never linked never contacts the
//! cloud. What the cloud last said about the link is noted beside the key
//! (`minebox_cloud_link::note_linked`), so the snapshot agent asks the cloud only for a linked
//! box.
//!
//! The cloud keeps only a hash of the pairing code, so the box remembers the code it was given
//! (in memory: after a restart of the page a pending link shows no code, and "Link" makes a
//! new one).

use minebox_cloud_link::{BoxInfo, CloudLink, DeviceKey, KeyError, LinkError, State};
use serde::Serialize;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// How long the page waits for the cloud before it says the cloud does not answer.
pub const PAGE_WAIT: Duration = Duration::from_secs(10);

/// Where the box stands with MineBox Cloud, as `GET /api/v1/cloud` answers it.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct CloudView {
    /// `not_configured` (no cloud URL in the settings), `unlinked`, `pending` (a code waits to
    /// be entered), `linked`, or `unreachable` (the cloud did not answer or refused).
    pub state: &'static str,
    /// The cloud's URL, where the owner enters the code; null when none is set.
    pub url: Option<String>,
    /// The pairing code, `XXXX-XXXX`, while pending (null when this page did not make it).
    pub code: Option<String>,
    /// Seconds the code can still be entered.
    pub expires_in: Option<i64>,
    /// The account the box is linked to, masked (`a***@example.org`).
    pub account: Option<String>,
    /// What the page says, in words.
    pub message: String,
    /// Whether the owner turned telemetry on (`[cloud] telemetry`).
    pub telemetry: bool,
    /// Exactly what telemetry sends (`minebox_cloud_link::telemetry::WHAT_IS_SENT`).
    pub what_is_sent: &'static str,
    /// The telemetry sender's last problem, in words; null when it has none.
    pub telemetry_problem: Option<String>,
}

/// Why linking or unlinking did not happen: the status the page gets and what to do.
#[derive(Debug, thiserror::Error)]
pub enum CloudError {
    #[error("no MineBox Cloud is set for this box: set [cloud] url in the settings file to link it")]
    NotConfigured,
    #[error("this box is not linked to MineBox Cloud (it has no device key yet): nothing to unlink")]
    NeverLinked,
    #[error(transparent)]
    Key(#[from] KeyError),
    #[error("MineBox Cloud at {url} did not answer within {} s; check the box's network and try again", PAGE_WAIT.as_secs())]
    Slow { url: String },
    #[error(transparent)]
    Link(#[from] LinkError),
}

impl CloudError {
    pub fn status(&self) -> u16 {
        match self {
            CloudError::NotConfigured | CloudError::NeverLinked => 409,
            CloudError::Key(_) => 500,
            // The cloud's refusal about the box's state (linked already) is the box's conflict.
            CloudError::Link(LinkError::Refused { status: 409, .. }) => 409,
            CloudError::Slow { .. } | CloudError::Link(_) => 502,
        }
    }
}

/// The page's memory of its link: the client for the configured cloud (its key loaded once)
/// and the last code it was given.
#[derive(Default)]
pub struct Cloud {
    client: Mutex<Option<(String, PathBuf, Arc<CloudLink>)>>,
    code: Mutex<Option<(String, Instant)>>,
    /// The telemetry sender's last problem, for the page.
    pub problem: Mutex<Option<String>>,
}

impl Cloud {
    /// The link to `url`, with the key at `key`: made (with the key) when `create`, else
    /// `None` when there is no key.
    pub async fn link(&self, url: &str, key: &Path, create: bool) -> Result<Option<Arc<CloudLink>>, KeyError> {
        if let Some((u, k, link)) = self.client.lock().expect("cloud").as_ref() {
            if u == url && k == key && (create || key.exists()) {
                return Ok(Some(link.clone()));
            }
        }
        let path = key.to_path_buf();
        let loaded = tokio::task::spawn_blocking(move || load(&path, create)).await.expect("key task")?;
        let Some(k) = loaded else { return Ok(None) };
        let link = Arc::new(CloudLink::new(url, k));
        *self.client.lock().expect("cloud") = Some((url.to_string(), key.to_path_buf(), link.clone()));
        Ok(Some(link))
    }

    fn remember_code(&self, code: Option<(String, i64)>) {
        *self.code.lock().expect("cloud") =
            code.map(|(c, secs)| (c, Instant::now() + Duration::from_secs(secs.max(0) as u64)));
    }

    fn code(&self) -> Option<String> {
        let held = self.code.lock().expect("cloud");
        held.as_ref().filter(|(_, until)| *until > Instant::now()).map(|(c, _)| c.clone())
    }
}

/// Makes the device key if there is none (at the service's start: on first boot), when a cloud
/// is set. A damaged key is reported, never replaced (a new key is a new box).
pub async fn make_key(settings: &minebox_settings::CloudSettings) {
    if settings.url.is_none() {
        return;
    }
    let path = settings.key.clone();
    match tokio::task::spawn_blocking(move || DeviceKey::load_or_create(&path)).await.expect("key task") {
        Ok(key) => tracing::debug!(public = %key.public_hex(), "device key ready"),
        Err(e) => tracing::error!("{e}"),
    }
}

/// Notes what the cloud said about the link beside the key (a write only on change).
pub fn note(key: &Path, linked: bool) {
    if let Err(e) = minebox_cloud_link::note_linked(key, linked) {
        tracing::warn!(
            "cannot note the link state beside {}: {e}; the snapshot agent may ask the cloud in vain",
            key.display()
        );
    }
}

fn load(path: &Path, create: bool) -> Result<Option<DeviceKey>, KeyError> {
    if create {
        DeviceKey::load_or_create(path).map(Some)
    } else {
        DeviceKey::load_existing(path)
    }
}

/// What the page knows without asking the cloud.
fn base_view(settings: &minebox_settings::CloudSettings, cloud: &Cloud) -> CloudView {
    CloudView {
        state: "unlinked",
        url: settings.url.as_ref().map(|u| u.to_string()),
        code: None,
        expires_in: None,
        account: None,
        message: String::new(),
        telemetry: settings.telemetry,
        what_is_sent: minebox_cloud_link::telemetry::WHAT_IS_SENT,
        telemetry_problem: cloud.problem.lock().expect("cloud").clone(),
    }
}

async fn bounded<T>(url: &str, f: impl std::future::Future<Output = Result<T, LinkError>>) -> Result<T, CloudError> {
    match tokio::time::timeout(PAGE_WAIT, f).await {
        Ok(r) => Ok(r?),
        Err(_) => Err(CloudError::Slow { url: url.to_string() }),
    }
}

fn from_status(mut v: CloudView, s: minebox_cloud_link::LinkStatus, cloud: &Cloud) -> CloudView {
    let url = v.url.clone().unwrap_or_default();
    match s.state {
        State::Linked => {
            cloud.remember_code(None);
            v.state = "linked";
            v.message = match &s.account {
                Some(a) => format!("Linked to the MineBox Cloud account {a}."),
                None => "Linked to a MineBox Cloud account.".into(),
            };
            v.account = s.account;
        }
        State::Pending => {
            v.state = "pending";
            v.expires_in = s.expires_in;
            v.code = cloud.code();
            v.message = match &v.code {
                Some(c) => format!("Enter the code {c} in your account at {url} (Devices, Link a box)."),
                None => "A pairing code is waiting, but this page no longer has it: press Link for a new one.".into(),
            };
        }
        State::Unlinked => {
            cloud.remember_code(None);
            v.message = "Not linked. Press Link to get a code to enter in your MineBox Cloud account.".into();
        }
    }
    v
}

/// Where the box stands: asks the cloud only when a cloud is set and the box has a key.
pub async fn view(settings: &minebox_settings::CloudSettings, cloud: &Cloud) -> CloudView {
    let mut v = base_view(settings, cloud);
    let Some(url) = settings.url.as_ref().map(|u| u.as_str().trim_end_matches('/').to_string()) else {
        v.state = "not_configured";
        v.message = "No MineBox Cloud is set for this box: set [cloud] url in the settings file to link it.".into();
        return v;
    };
    let link = match cloud.link(&url, &settings.key, false).await {
        Ok(Some(l)) => l,
        Ok(None) => {
            v.message = "Not linked. Press Link to get a code to enter in your MineBox Cloud account.".into();
            return v;
        }
        Err(e) => {
            v.state = "unreachable";
            v.message = e.to_string();
            return v;
        }
    };
    // The cloud is asked only while a code waits or once it has said "linked": a box its owner
    // never linked does not talk to it.
    if !minebox_cloud_link::noted_linked(&settings.key) && cloud.code().is_none() {
        v.message = "Not linked. Press Link to get a code to enter in your MineBox Cloud account.".into();
        return v;
    }
    match bounded(&url, link.status()).await {
        Ok(s) => {
            note(&settings.key, s.state == State::Linked);
            from_status(v, s, cloud)
        }
        // The cloud does not know this key: it was never paired, or the cloud forgot it.
        Err(CloudError::Link(LinkError::Refused { status: 401, .. })) => {
            note(&settings.key, false);
            v.message = "Not linked. Press Link to get a code to enter in your MineBox Cloud account.".into();
            v
        }
        Err(e) => {
            v.state = "unreachable";
            v.message = e.to_string();
            v
        }
    }
}

/// Starts linking: makes the device key if there is none, asks the cloud for a code.
pub async fn start(settings: &minebox_settings::CloudSettings, cloud: &Cloud) -> Result<CloudView, CloudError> {
    let url = settings.url.as_ref().ok_or(CloudError::NotConfigured)?.as_str().trim_end_matches('/').to_string();
    let link = cloud.link(&url, &settings.key, true).await?.expect("made when missing");
    let info = BoxInfo {
        name: Some(crate::api::box_name()).filter(|n| !n.is_empty()),
        model: None,
        version: Some(env!("CARGO_PKG_VERSION").into()),
    };
    let pairing = match bounded(&url, link.start_pairing(&info)).await {
        // Linked already: a code entered after this page forgot it (a restart). Say so.
        Err(CloudError::Link(LinkError::Refused { status: 409, .. })) => {
            note(&settings.key, true);
            return Ok(view(settings, cloud).await);
        }
        other => other?,
    };
    tracing::info!(device = %pairing.device_id, "MineBox Cloud pairing code made from the status page");
    cloud.remember_code(Some((pairing.code.clone(), pairing.expires_in)));
    let mut v = base_view(settings, cloud);
    v.state = "pending";
    v.expires_in = Some(pairing.expires_in);
    v.message = format!("Enter the code {} in your account at {url} (Devices, Link a box).", pairing.code);
    v.code = Some(pairing.code);
    Ok(v)
}

/// Unlinks the box from its account (and cancels a waiting code).
pub async fn unlink(settings: &minebox_settings::CloudSettings, cloud: &Cloud) -> Result<CloudView, CloudError> {
    let url = settings.url.as_ref().ok_or(CloudError::NotConfigured)?.as_str().trim_end_matches('/').to_string();
    let link = cloud.link(&url, &settings.key, false).await?.ok_or(CloudError::NeverLinked)?;
    let s = bounded(&url, link.unlink()).await?;
    note(&settings.key, s.state == State::Linked);
    tracing::info!("box unlinked from MineBox Cloud from the status page");
    Ok(from_status(base_view(settings, cloud), s, cloud))
}
