//! Mail over SMTP: the verification and password-reset links.

use lettre::message::header::{ContentTransferEncoding, ContentType};
use lettre::message::{Body, Mailbox};
use lettre::{AsyncSmtpTransport, AsyncTransport, Message, Tokio1Executor};

#[derive(Debug, thiserror::Error)]
pub enum MailError {
    #[error(
        "the SMTP URL is not valid ({0}): smtp://host:port (plain, for a local relay), \
         smtp://user:pass@host:587?tls=required (STARTTLS) or smtps://user:pass@host:465"
    )]
    Url(String),
    #[error("the sender address {0:?} is not a mail address")]
    From(String),
    #[error("the mail could not be sent ({0}); try again shortly")]
    Send(String),
}

#[derive(Clone)]
pub struct Mailer {
    transport: AsyncSmtpTransport<Tokio1Executor>,
    from: Mailbox,
}

impl Mailer {
    pub fn new(smtp_url: &str, from: &str) -> Result<Mailer, MailError> {
        let transport = AsyncSmtpTransport::<Tokio1Executor>::from_url(smtp_url)
            .map_err(|e| MailError::Url(e.to_string()))?
            .build();
        let from = from.parse().map_err(|_| MailError::From(from.to_string()))?;
        Ok(Mailer { transport, from })
    }

    pub async fn send(&self, to: &str, subject: &str, body: String) -> Result<(), MailError> {
        let to: Mailbox = to.parse().map_err(|e: lettre::address::AddressError| MailError::Send(e.to_string()))?;
        // 7bit when it can be: the link stays one line a user can copy from any mail reader,
        // not split and =3D-escaped by quoted-printable, which lettre picks for any line of 76
        // characters or more. RFC 5322 allows lines up to 998; ours are ASCII and well under.
        let crlf = body.replace("\r\n", "\n").replace('\n', "\r\n");
        let plain = crlf.is_ascii() && crlf.split("\r\n").all(|line| line.len() < 998 && !line.contains('\r'));
        let body = if plain {
            Body::dangerous_pre_encoded(crlf.into_bytes(), ContentTransferEncoding::SevenBit)
        } else {
            Body::new(crlf)
        };
        let message = Message::builder()
            .from(self.from.clone())
            .to(to)
            .subject(subject)
            .header(ContentType::TEXT_PLAIN)
            .body(body)
            .map_err(|e| MailError::Send(e.to_string()))?;
        self.transport.send(message).await.map_err(|e| MailError::Send(e.to_string()))?;
        Ok(())
    }
}
