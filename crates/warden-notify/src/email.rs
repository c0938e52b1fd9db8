//! The e-mail channel: a page sent over SMTP (`lettre`), after the pass that recorded it
//! committed. The Message-ID names the page (or caller message), so a retry is recognisably the same message.
//! A 4xx answer, a timeout or a lost connection is temporary; a 5xx answer (no such mailbox,
//! relaying refused) or an address that is not one is permanent.

use std::time::Duration;

use crate::NotifyError;
use crate::channel::{Attempt, Envelope};
use crate::message::Message;
use lettre::message::Mailbox;
use lettre::message::header::ContentType;
use lettre::transport::smtp::authentication::Credentials;
use lettre::transport::smtp::client::{Certificate, Tls, TlsParameters};
use lettre::{AsyncSmtpTransport, AsyncTransport as _, Tokio1Executor};

/// How the connection to the SMTP server is protected.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Security {
    /// TLS from the first byte (port 465).
    Tls,
    /// Plain, then `STARTTLS`, required (port 587).
    #[default]
    StartTls,
    /// No TLS at all: only for a relay on the same host or a test sink.
    None,
}

/// An SMTP relay.
#[derive(Clone)]
pub struct EmailConfig {
    pub host: String,
    pub port: u16,
    pub security: Security,
    /// PEM file of an extra CA to trust (a private relay's own CA).
    pub ca_file: Option<std::path::PathBuf>,
    pub username: Option<String>,
    pub password: Option<String>,
    /// `From:`, e.g. `Warden <warden@centre.example>`.
    pub from: String,
    /// Limit on one delivery.
    pub timeout: Duration,
}

impl std::fmt::Debug for EmailConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EmailConfig")
            .field("host", &self.host)
            .field("port", &self.port)
            .field("security", &self.security)
            .field("username", &self.username)
            .field("password", &self.password.as_ref().map(|_| "[redacted]"))
            .field("from", &self.from)
            .field("timeout", &self.timeout)
            .finish_non_exhaustive()
    }
}

/// True when `s` is a mailbox (`warden@centre.example`, `Warden <warden@centre.example>`).
pub fn is_mailbox(s: &str) -> bool {
    s.parse::<Mailbox>().is_ok()
}

/// A ready SMTP transport.
#[derive(Clone)]
pub struct Email {
    transport: AsyncSmtpTransport<Tokio1Executor>,
    from: Mailbox,
    host: String,
}

impl std::fmt::Debug for Email {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Email")
            .field("host", &self.host)
            .field("from", &self.from.to_string())
            .finish_non_exhaustive()
    }
}

impl Email {
    /// Checks the configuration and builds the transport (no connection is made yet).
    pub fn new(cfg: &EmailConfig) -> Result<Self, NotifyError> {
        let bad = |what: String| NotifyError::Client(format!("e-mail: {what}"));
        let from: Mailbox = cfg
            .from
            .parse()
            .map_err(|e| bad(format!("from address {:?}: {e}", cfg.from)))?;
        let tls = match cfg.security {
            Security::None => Tls::None,
            Security::Tls | Security::StartTls => {
                let mut params = TlsParameters::builder(cfg.host.clone());
                if let Some(ca) = &cfg.ca_file {
                    let pem = std::fs::read(ca)
                        .map_err(|e| bad(format!("CA file {}: {e}", ca.display())))?;
                    let cert = Certificate::from_pem(&pem)
                        .map_err(|e| bad(format!("CA file {}: {e}", ca.display())))?;
                    params = params.add_root_certificate(cert);
                }
                let params = params
                    .build_rustls()
                    .map_err(|e| bad(format!("TLS: {e}")))?;
                if cfg.security == Security::Tls {
                    Tls::Wrapper(params)
                } else {
                    Tls::Required(params)
                }
            }
        };
        let mut builder = AsyncSmtpTransport::<Tokio1Executor>::builder_dangerous(&cfg.host)
            .port(cfg.port)
            .tls(tls)
            .timeout(Some(cfg.timeout));
        if let (Some(user), Some(pass)) = (&cfg.username, &cfg.password) {
            builder = builder.credentials(Credentials::new(user.clone(), pass.clone()));
        }
        Ok(Self {
            transport: builder.build(),
            from,
            host: cfg.host.clone(),
        })
    }

    /// Sends message `m` to `to`.
    pub async fn send(&self, to: &Envelope<'_>, m: &Message) -> Attempt {
        let key = to.key();
        let to: Mailbox = match to.address.parse() {
            Ok(to) => to,
            Err(e) => return Attempt::Permanent(format!("not an e-mail address: {e}")),
        };
        let domain = self.from.email.domain().to_owned();
        let email = lettre::Message::builder()
            .from(self.from.clone())
            .to(to)
            .subject(&m.subject)
            .message_id(Some(format!("<{key}@{domain}>")))
            .header(ContentType::TEXT_PLAIN)
            .body(m.text.clone());
        let email = match email {
            Ok(e) => e,
            Err(e) => return Attempt::Permanent(format!("the message could not be built: {e}")),
        };
        match self.transport.send(email).await {
            Ok(r) => Attempt::Delivered(format!("{} accepted it ({})", self.host, r.code())),
            Err(e) if e.is_permanent() => {
                Attempt::Permanent(format!("{} refused it: {e}", self.host))
            }
            Err(e) => Attempt::Temporary(format!("{}: {e}", self.host)),
        }
    }
}
