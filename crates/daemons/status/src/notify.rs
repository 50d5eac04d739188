//! Alerts out: the owner's webhook (a JSON POST), ntfy topic (a plain text POST, the way
//! ntfy.sh and self-hosted ntfy take messages) and email (SMTP, with `lettre`). Targets are
//! read from the settings at the moment of the alert, so a change on the page applies at
//! once. Each target is tried on its own, at the same time as the others, so one that is
//! down or slow neither stops nor delays the rest.

use crate::alert::Alert;
use minebox_api::stratum;
use minebox_settings::notify::{Email, SmtpSecurity};
use std::time::Duration;

#[derive(Debug, Clone, PartialEq)]
pub struct BlockFound {
    pub coin: String,
    pub height: u64,
    pub hash: String,
    pub worker: String,
    pub reward_sats: u64,
}

impl BlockFound {
    /// The block a stratum event announces, if it announces one.
    pub fn from_event(ev: stratum::Event) -> Option<BlockFound> {
        match ev {
            stratum::Event::BlockFound { coin, height, hash, worker, reward_sats } => {
                Some(BlockFound { coin, height, hash, worker, reward_sats })
            }
            _ => None,
        }
    }

    pub fn headline(&self) -> String {
        format!(
            "MineBox found a {} block at height {}: {:.8} to {}",
            self.coin.to_uppercase(),
            self.height,
            self.reward_sats as f64 / 1e8,
            self.worker
        )
    }
}

#[derive(Debug, thiserror::Error)]
#[error("{target}: {message}")]
pub struct NotifyError {
    pub target: String,
    pub message: String,
}

/// Where alerts go, as the settings say at the moment of sending.
#[derive(Debug, Clone)]
pub struct Targets {
    pub webhook: Option<reqwest::Url>,
    pub ntfy: Option<reqwest::Url>,
    pub email: Option<Email>,
    /// Pause before the first retry (doubled before the second); tests make it short.
    pub retry_after: Duration,
}

impl Targets {
    pub fn from_settings(n: &minebox_settings::NotifySettings) -> Targets {
        Targets { webhook: n.webhook.clone(), ntfy: n.ntfy.clone(), email: n.email.clone(), retry_after: RETRY_AFTER }
    }

    pub fn is_empty(&self) -> bool {
        self.webhook.is_none() && self.ntfy.is_none() && self.email.is_none()
    }
}

/// Pause before the first retry on the box.
pub const RETRY_AFTER: Duration = Duration::from_secs(4);

impl BlockFound {
    pub fn alert(&self) -> Alert {
        Alert::BlockFound {
            coin: self.coin.clone(),
            height: self.height,
            hash: self.hash.clone(),
            worker: self.worker.clone(),
            reward_sats: self.reward_sats,
        }
    }
}

/// A found block to the webhook and ntfy (the status page's test button).
pub async fn send(
    http: &reqwest::Client,
    webhook: &Option<reqwest::Url>,
    ntfy: &Option<reqwest::Url>,
    b: &BlockFound,
) -> Vec<NotifyError> {
    let targets = Targets { webhook: webhook.clone(), ntfy: ntfy.clone(), email: None, retry_after: RETRY_AFTER };
    deliver(http, &targets, &b.alert()).await
}

/// Sends `alert` to every configured target at once; returns one error per target that
/// failed (after two retries), so the caller can log them. An unset target is skipped.
pub async fn deliver(http: &reqwest::Client, t: &Targets, alert: &Alert) -> Vec<NotifyError> {
    let webhook = async {
        let Some(url) = &t.webhook else { return None };
        let body = alert.json();
        let r = retry(t.retry_after, || async { post(http.post(url.clone()).json(&body)).await }).await;
        r.err().map(|message| NotifyError { target: "webhook".into(), message })
    };
    let ntfy = async {
        let Some(url) = &t.ntfy else { return None };
        let text = alert.headline();
        let r = retry(t.retry_after, || async {
            post(http.post(url.clone()).header("Title", alert.title()).header("Tags", alert.tags()).body(text.clone()))
                .await
        })
        .await;
        r.err().map(|message| NotifyError { target: "ntfy".into(), message })
    };
    let email = async {
        let Some(e) = &t.email else { return None };
        let r = match message(e, alert) {
            Ok(m) => retry(t.retry_after, || smtp(e, m.clone())).await,
            Err(message) => Err(message),
        };
        r.err().map(|message| NotifyError { target: format!("email to {}", e.to), message })
    };
    let (a, b, c) = tokio::join!(webhook, ntfy, email);
    [a, b, c].into_iter().flatten().collect()
}

async fn post(req: reqwest::RequestBuilder) -> Result<(), String> {
    match req.timeout(Duration::from_secs(10)).send().await {
        Ok(r) if r.status().is_success() => Ok(()),
        Ok(r) => Err(format!("answered {}", r.status())),
        Err(e) => Err(e.to_string()),
    }
}

fn message(e: &Email, alert: &Alert) -> Result<lettre::Message, String> {
    let to: lettre::message::Mailbox =
        e.to.parse()
            .map_err(|err| format!("{:?} is not an address the mailer takes ({err}); fix notify.email", e.to))?;
    // From the owner to the owner: a relay that takes mail for the address takes it from there.
    let from = lettre::message::Mailbox::new(Some("MineBox".into()), to.email.clone());
    let mail = alert.email();
    lettre::Message::builder()
        .from(from)
        .to(to)
        .subject(mail.subject)
        .header(lettre::message::header::ContentType::TEXT_PLAIN)
        .body(mail.body)
        .map_err(|err| format!("the email could not be built: {err}"))
}

async fn smtp(e: &Email, m: lettre::Message) -> Result<(), String> {
    use lettre::transport::smtp::authentication::Credentials;
    use lettre::{AsyncSmtpTransport, AsyncTransport, Tokio1Executor};
    let s = &e.smtp;
    let builder = match s.security {
        SmtpSecurity::Plain => AsyncSmtpTransport::<Tokio1Executor>::builder_dangerous(&s.host),
        SmtpSecurity::StartTls => AsyncSmtpTransport::<Tokio1Executor>::starttls_relay(&s.host)
            .map_err(|err| format!("STARTTLS to {}: {err}", s.host))?,
        SmtpSecurity::Tls => {
            AsyncSmtpTransport::<Tokio1Executor>::relay(&s.host).map_err(|err| format!("TLS to {}: {err}", s.host))?
        }
    };
    let mut builder = builder.port(s.port).timeout(Some(Duration::from_secs(10)));
    if let (Some(user), Some(password)) = (&s.user, &s.password) {
        builder = builder.credentials(Credentials::new(user.clone(), password.clone()));
    }
    builder
        .build()
        .send(m)
        .await
        .map(drop)
        .map_err(|err| format!("the mail server {}:{} refused or did not answer: {err}", s.host, s.port))
}

async fn retry<F: std::future::Future<Output = Result<(), String>>>(
    pause: Duration,
    attempt: impl Fn() -> F,
) -> Result<(), String> {
    let mut last = String::new();
    for n in 0..3u32 {
        if n > 0 {
            tokio::time::sleep(pause * (1 << (n - 1))).await;
        }
        match attempt().await {
            Ok(()) => return Ok(()),
            Err(e) => last = e,
        }
    }
    Err(last)
}
