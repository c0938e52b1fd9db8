//! `[escalation]`: how often the escalator runs and how it reaches people (webhook, e-mail,
//! SMS and voice gateways), the acknowledgement links' public address, the dead-man
//! heartbeat.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use warden_notify::email::{EmailConfig, Security};
use warden_notify::gateway::{Encoding, GatewayConfig};

use super::Secret;

/// Escalation: how often the escalator runs and how it reaches people.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EscalationSection {
    /// How often due escalation steps are fired and pages delivered (the latency from an
    /// answer-time threshold to the first page).
    #[serde(with = "humantime_serde")]
    pub every: Duration,
    /// The console's address as people outside reach it, e.g.
    /// `https://warden.centre.example`: each message carries a signed one-time link under it
    /// that acknowledges the page. Absent: no links (console and SMS replies still work).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub public_url: Option<String>,
    /// The control room's number, quoted in messages ("then call the control room on …").
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub control_room: Option<String>,
    /// Called (GET) every minute after a pass that worked: a dead-man switch for outside
    /// monitoring (healthchecks.io-like). Absent: off.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub heartbeat_url: Option<Secret>,
    /// The HMAC-SHA256 key webhook receivers check `X-Warden-Signature` with. Absent: the
    /// webhook channel is off, and people are reached by their next verified method.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub webhook_secret: Option<Secret>,
    /// Limit on one webhook request.
    #[serde(with = "humantime_serde")]
    pub webhook_timeout: Duration,
    /// The e-mail channel; absent: off.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub email: Option<EmailSection>,
    /// The SMS channel (an HTTP gateway); absent: off.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sms: Option<GatewaySection>,
    /// The voice-call channel (an HTTP gateway); absent: off.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub voice: Option<GatewaySection>,
}

impl Default for EscalationSection {
    fn default() -> Self {
        Self {
            every: Duration::from_secs(1),
            public_url: None,
            control_room: None,
            heartbeat_url: None,
            webhook_secret: None,
            webhook_timeout: Duration::from_secs(5),
            email: None,
            sms: None,
            voice: None,
        }
    }
}

/// `[escalation.email]`: an SMTP relay.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EmailSection {
    pub host: String,
    /// Default 587.
    #[serde(default = "default_smtp_port")]
    pub port: u16,
    /// `starttls` (default, required), `tls` (from the first byte, port 465) or `none` (a
    /// relay on this host or a test sink only).
    #[serde(default = "default_security")]
    pub security: String,
    /// PEM file of an extra CA to trust.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ca_file: Option<PathBuf>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub username: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub password: Option<Secret>,
    /// `From:`, e.g. `Warden <warden@centre.example>`.
    pub from: String,
    #[serde(default = "default_timeout", with = "humantime_serde")]
    pub timeout: Duration,
}

/// `[escalation.sms]` / `[escalation.voice]`: an HTTP gateway, one templated request per
/// message. Placeholders: `{to}`, `{text}`, `{text_xml}`, `{page}`, `{reference}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GatewaySection {
    pub url: String,
    /// `form` (default) or `json`.
    #[serde(default = "default_encoding")]
    pub encoding: String,
    /// The body template, e.g. `To={to}&From=%2B447700900000&Body={text}`.
    pub body: String,
    /// HTTP basic authentication.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub username: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub password: Option<Secret>,
    /// Extra headers, e.g. an API key.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub headers: BTreeMap<String, Secret>,
    #[serde(default = "default_timeout", with = "humantime_serde")]
    pub timeout: Duration,
    /// SMS only: the token the gateway's inbound webhook presents
    /// (`POST /api/v1/hooks/sms-reply?token=…`), so replies ("ACK 42") acknowledge pages.
    /// Absent: replies are refused and messages do not offer them.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub inbound_token: Option<Secret>,
}

fn default_smtp_port() -> u16 {
    587
}
fn default_security() -> String {
    "starttls".into()
}
fn default_encoding() -> String {
    "form".into()
}
fn default_timeout() -> Duration {
    Duration::from_secs(10)
}

fn is_http_url(s: &str) -> bool {
    (s.starts_with("http://") || s.starts_with("https://")) && s.len() > "https://".len()
}

impl EmailSection {
    fn security(&self) -> Option<Security> {
        match self.security.as_str() {
            "starttls" => Some(Security::StartTls),
            "tls" => Some(Security::Tls),
            "none" => Some(Security::None),
            _ => None,
        }
    }
}

impl GatewaySection {
    fn encoding(&self) -> Option<Encoding> {
        match self.encoding.as_str() {
            "form" => Some(Encoding::Form),
            "json" => Some(Encoding::Json),
            _ => None,
        }
    }

    fn check(&self, name: &str, errors: &mut Vec<String>) {
        if !is_http_url(&self.url) {
            errors.push(format!("escalation.{name}.url: must be an http(s) URL"));
        }
        if self.encoding().is_none() {
            errors.push(format!(
                "escalation.{name}.encoding: {:?} is not form or json",
                self.encoding
            ));
        }
        if !self.body.contains("{text") && !self.url.contains("{text") {
            errors.push(format!(
                "escalation.{name}.body: the template never uses {{text}} or {{text_xml}}"
            ));
        }
        if !self.body.contains("{to}") && !self.url.contains("{to}") {
            errors.push(format!(
                "escalation.{name}.body: the template never uses {{to}}"
            ));
        }
        check_timeout(&format!("escalation.{name}.timeout"), self.timeout, errors);
        if let Some(t) = &self.inbound_token {
            if name != "sms" {
                errors.push(format!(
                    "escalation.{name}.inbound_token: only the sms gateway takes replies"
                ));
            } else if t.expose().len() < 16 {
                errors.push("escalation.sms.inbound_token: must be at least 16 characters".into());
            }
        }
    }

    fn to_gateway(&self) -> GatewayConfig {
        GatewayConfig {
            url: self.url.clone(),
            encoding: self.encoding().unwrap_or_default(),
            body: self.body.clone(),
            username: self.username.clone(),
            password: self.password.as_ref().map(|p| p.expose().to_owned()),
            headers: self
                .headers
                .iter()
                .map(|(k, v)| (k.clone(), v.expose().to_owned()))
                .collect(),
            timeout: self.timeout,
        }
    }
}

fn check_timeout(name: &str, t: Duration, errors: &mut Vec<String>) {
    if t < Duration::from_millis(100) || t > Duration::from_mins(1) {
        errors.push(format!("{name}: must be between 100ms and 60s"));
    }
}

impl EscalationSection {
    /// Adds every problem to `errors`.
    pub fn check(&self, errors: &mut Vec<String>) {
        if self.every < Duration::from_millis(100) || self.every > Duration::from_secs(30) {
            errors.push(
                "escalation.every: must be between 100ms and 30s (it delays every page)".into(),
            );
        }
        if self
            .webhook_secret
            .as_ref()
            .is_some_and(|s| s.expose().len() < 16)
        {
            errors.push("escalation.webhook_secret: must be at least 16 characters".into());
        }
        check_timeout("escalation.webhook_timeout", self.webhook_timeout, errors);
        if let Some(u) = &self.public_url
            && !is_http_url(u)
        {
            errors.push("escalation.public_url: must be an http(s) URL".into());
        }
        if let Some(u) = &self.heartbeat_url
            && !is_http_url(u.expose())
        {
            errors.push("escalation.heartbeat_url: must be an http(s) URL".into());
        }
        if let Some(e) = &self.email {
            if e.security().is_none() {
                errors.push(format!(
                    "escalation.email.security: {:?} is not starttls, tls or none",
                    e.security
                ));
            }
            if !warden_notify::email::is_mailbox(&e.from) {
                errors.push(format!(
                    "escalation.email.from: {:?} is not an e-mail address",
                    e.from
                ));
            }
            if e.username.is_some() != e.password.is_some() {
                errors.push(
                    "escalation.email: username and password go together (both or neither)".into(),
                );
            }
            check_timeout("escalation.email.timeout", e.timeout, errors);
        }
        if let Some(g) = &self.sms {
            g.check("sms", errors);
        }
        if let Some(g) = &self.voice {
            g.check("voice", errors);
        }
    }

    /// The token SMS replies must present, when replies are on.
    pub fn sms_reply_token(&self) -> Option<String> {
        self.sms
            .as_ref()?
            .inbound_token
            .as_ref()
            .map(|t| t.expose().to_owned())
    }

    /// The escalator's configuration.
    pub fn to_escalator(&self) -> warden_notify::EscalatorConfig {
        warden_notify::EscalatorConfig {
            every: self.every,
            channels: warden_notify::ChannelsConfig {
                webhook: self
                    .webhook_secret
                    .as_ref()
                    .map(|s| warden_notify::WebhookConfig {
                        secret: s.expose().as_bytes().to_vec(),
                        timeout: self.webhook_timeout,
                    }),
                email: self.email.as_ref().map(|e| EmailConfig {
                    host: e.host.clone(),
                    port: e.port,
                    security: e.security().unwrap_or_default(),
                    ca_file: e.ca_file.clone(),
                    username: e.username.clone(),
                    password: e.password.as_ref().map(|p| p.expose().to_owned()),
                    from: e.from.clone(),
                    timeout: e.timeout,
                }),
                sms: self.sms.as_ref().map(GatewaySection::to_gateway),
                voice: self.voice.as_ref().map(GatewaySection::to_gateway),
            },
            public_url: self.public_url.clone(),
            sms_replies: self.sms_reply_token().is_some(),
            control_room: self.control_room.clone(),
            heartbeat_url: self.heartbeat_url.as_ref().map(|u| u.expose().to_owned()),
            ..warden_notify::EscalatorConfig::default()
        }
    }
}
