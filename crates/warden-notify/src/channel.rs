//! The channels a page can go through, each an adapter with a timeout, an idempotency key
//! and temporary versus permanent failures: the console inbox (the page row itself), signed
//! webhooks, e-mail over SMTP, and SMS and voice calls through an HTTP gateway. A failed
//! temporary attempt is retried with backoff up to [`MAX_ATTEMPTS`]; a permanent one fails
//! at once. Every attempt's outcome is recorded on the page.

use std::time::Duration;

use warden_store::PendingPage;

use crate::email::{Email, EmailConfig};
use crate::gateway::{self, GatewayConfig};
use crate::message::Message;
use crate::{NotifyError, webhook};

/// Most attempts per page, the first included.
pub const MAX_ATTEMPTS: i32 = 6;

/// What one attempt came to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Attempt {
    /// The receiver, relay or gateway took it (what it said).
    Delivered(String),
    /// Worth trying again.
    Temporary(String),
    /// Trying again would not help.
    Permanent(String),
}

impl Attempt {
    /// What this attempt, made after `attempts` earlier ones at `now`, leaves the message
    /// as: `delivered`, `pending` until the next attempt (a temporary failure with attempts
    /// left), or `failed` for good; with the outcome in words.
    pub fn settle(
        self,
        attempts: i32,
        now: time::OffsetDateTime,
    ) -> (&'static str, String, Option<time::OffsetDateTime>) {
        match self {
            Attempt::Delivered(how) => ("delivered", how, None),
            Attempt::Temporary(why) if attempts + 1 < MAX_ATTEMPTS => {
                ("pending", why, Some(now + backoff(attempts)))
            }
            Attempt::Temporary(why) => (
                "failed",
                format!("gave up after {MAX_ATTEMPTS} attempts: {why}"),
                None,
            ),
            Attempt::Permanent(why) => ("failed", why, None),
        }
    }
}

/// How long to wait before attempt `attempts + 1`: 5 s doubling, at most 5 minutes.
pub fn backoff(attempts: i32) -> Duration {
    let shift = u32::try_from(attempts.clamp(0, 6)).unwrap_or(6);
    Duration::from_secs(5 << shift).min(Duration::from_mins(5))
}

/// An HTTP answer (or the failure to get one) as an attempt: 2xx delivered; 408, 429, 5xx
/// and transport failures temporary; other answers and unusable addresses permanent.
pub fn classify(sent: Result<reqwest::Response, reqwest::Error>, whom: &str) -> Attempt {
    match sent {
        Ok(r) => {
            let status = r.status();
            if status.is_success() {
                Attempt::Delivered(format!("{whom} answered {status}"))
            } else if status.is_redirection() {
                let to = r
                    .headers()
                    .get(reqwest::header::LOCATION)
                    .and_then(|v| v.to_str().ok())
                    .unwrap_or("nowhere");
                Attempt::Permanent(format!(
                    "{whom} answered {status} to {to}: redirects are not followed, record the final address"
                ))
            } else if status.as_u16() == 408 || status.as_u16() == 429 || status.is_server_error() {
                Attempt::Temporary(format!("{whom} answered {status}"))
            } else {
                Attempt::Permanent(format!("{whom} answered {status}"))
            }
        }
        Err(e) if e.is_builder() => Attempt::Permanent(format!("not a usable address: {e}")),
        Err(e) => Attempt::Temporary(format!("could not reach {whom}: {e}")),
    }
}

/// Where one message goes, whatever it is about.
#[derive(Debug, Clone, Copy)]
pub struct Envelope<'a> {
    /// `webhook`, `email`, `sms` or `voice`.
    pub channel: &'a str,
    pub address: &'a str,
    /// What the message is: `page` (to on-call staff) or `caller` (an out-of-hours caller's
    /// update).
    pub kind: &'static str,
    /// The page's or caller message's id: with `kind`, the idempotency key.
    pub id: i64,
    /// The reference people quote: the alarm's number, or the job's `OOH-…`.
    pub reference: &'a str,
}

impl Envelope<'_> {
    /// The same for every attempt at one message: `warden-page-7`, `warden-caller-3`.
    pub fn key(&self) -> String {
        format!("warden-{}-{}", self.kind, self.id)
    }
}

/// Signed webhooks.
#[derive(Clone)]
pub struct WebhookConfig {
    /// The HMAC-SHA256 key receivers verify `X-Warden-Signature` with.
    pub secret: Vec<u8>,
    /// Limit on one request (default 5 s).
    pub timeout: Duration,
}

impl std::fmt::Debug for WebhookConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WebhookConfig")
            .field("secret", &"[redacted]")
            .field("timeout", &self.timeout)
            .finish()
    }
}

/// Which channels this centre has, besides the console (always there).
#[derive(Debug, Clone, Default)]
pub struct ChannelsConfig {
    pub webhook: Option<WebhookConfig>,
    pub email: Option<EmailConfig>,
    pub sms: Option<GatewayConfig>,
    pub voice: Option<GatewayConfig>,
}

/// The configured channels, ready to send.
#[derive(Debug, Clone)]
pub struct Channels {
    cfg: ChannelsConfig,
    http: reqwest::Client,
    email: Option<Email>,
    kinds: Vec<&'static str>,
}

impl Channels {
    /// Checks the configuration and builds the clients.
    pub fn new(cfg: ChannelsConfig) -> Result<Self, NotifyError> {
        // The workspace's one TLS provider; a second install is refused, harmlessly.
        let _ = rustls::crypto::ring::default_provider().install_default();
        // Redirects are not followed: a page goes to the address on record or fails with the
        // answer named, never to wherever a compromised or misconfigured receiver points
        // (a 307 would re-send the signed page, a link to acknowledge included, elsewhere,
        // internal addresses included).
        let http = reqwest::Client::builder()
            .user_agent(concat!("warden/", env!("CARGO_PKG_VERSION")))
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .map_err(|e| NotifyError::Client(e.to_string()))?;
        let email = cfg.email.as_ref().map(Email::new).transpose()?;
        let mut kinds = vec!["console"];
        for (kind, on) in [
            ("webhook", cfg.webhook.is_some()),
            ("email", email.is_some()),
            ("sms", cfg.sms.is_some()),
            ("voice", cfg.voice.is_some()),
        ] {
            if on {
                kinds.push(kind);
            }
        }
        Ok(Self {
            cfg,
            http,
            email,
            kinds,
        })
    }

    /// The HTTP client the channels share.
    pub fn http(&self) -> &reqwest::Client {
        &self.http
    }

    /// The contact-method kinds this centre can deliver.
    pub fn kinds(&self) -> &[&'static str] {
        &self.kinds
    }

    /// One attempt at page `p` with message `m`.
    pub async fn send_page(
        &self,
        p: &PendingPage,
        m: &Message,
        now: time::OffsetDateTime,
    ) -> Attempt {
        if p.channel == "webhook"
            && let Some(w) = &self.cfg.webhook
        {
            return webhook::post(&self.http, &w.secret, w.timeout, p, m, now).await;
        }
        let reference = p.incident_id.to_string();
        self.send(
            &Envelope {
                channel: &p.channel,
                address: &p.address,
                kind: "page",
                id: p.id,
                reference: &reference,
            },
            m,
        )
        .await
    }

    /// One attempt at message `m` by e-mail, SMS or voice.
    pub async fn send(&self, to: &Envelope<'_>, m: &Message) -> Attempt {
        match to.channel {
            "email" => {
                if let Some(email) = &self.email {
                    return email.send(to, m).await;
                }
            }
            "sms" | "voice" => {
                let gateway = if to.channel == "sms" {
                    &self.cfg.sms
                } else {
                    &self.cfg.voice
                };
                if let Some(g) = gateway {
                    return gateway::send(&self.http, g, to, m).await;
                }
            }
            _ => {}
        }
        Attempt::Permanent(format!(
            "channel {} is not configured on this centre",
            to.channel
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retries_back_off_from_five_seconds_to_five_minutes() {
        let waits: Vec<u64> = (0..8).map(|n| backoff(n).as_secs()).collect();
        assert_eq!(waits, [5, 10, 20, 40, 80, 160, 300, 300]);
    }
}
