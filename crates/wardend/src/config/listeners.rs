//! The listeners' sections: `[admin]`, `[console]` and `[broker]` (addresses, limits and
//! TLS certificates).

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AdminConfig {
    /// `/healthz`, `/readyz`, `/metrics`.
    pub listen: SocketAddr,
    /// Longest a client may take to send a request's head; an idle kept-alive connection
    /// is closed after the same time.
    #[serde(with = "humantime_serde")]
    pub header_read_timeout: Duration,
    /// Open connections at most, and from one client address at most; more are closed at
    /// once (counted in `warden_http_connections_refused_total{listener="admin"}`).
    pub max_connections: usize,
    pub max_connections_per_address: usize,
    /// PEM certificate and private key: set both to serve the admin endpoints over HTTPS
    /// only (a Prometheus across a network scrapes with `scheme: https`), reloaded as the
    /// console's.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tls_cert: Option<PathBuf>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tls_key: Option<PathBuf>,
}

impl AdminConfig {
    /// The certificate and key files, when both are set.
    pub fn tls_files(&self) -> Option<warden_console::tls::TlsFiles> {
        Some(tls_files(self.tls_cert.as_ref()?, self.tls_key.as_ref()?))
    }

    /// The admin listener's limits.
    pub fn limits(&self) -> warden_console::listen::Limits {
        warden_console::listen::Limits {
            name: "admin",
            section: "admin",
            header_read_timeout: self.header_read_timeout,
            max_connections: self.max_connections,
            max_connections_per_address: self.max_connections_per_address,
        }
    }
}

/// The operator console (web UI + JSON API + live push).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConsoleSection {
    /// Serve the console.
    pub enabled: bool,
    pub listen: SocketAddr,
    /// Send the session cookie only over HTTPS (browsers also accept it on localhost).
    /// Keep it true, with `tls_cert` or behind a TLS-terminating proxy alike.
    pub cookie_secure: bool,
    /// PEM certificate (then any intermediates) and PEM private key: set both to serve the
    /// console over HTTPS only (rustls), with `Strict-Transport-Security`. The files are
    /// looked at every 5 s and a changed pair is served from the next connection on; a pair
    /// that does not load is logged and the previous one kept.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tls_cert: Option<PathBuf>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tls_key: Option<PathBuf>,
    /// A session ends this long after sign-in.
    #[serde(with = "humantime_serde")]
    pub session_ttl: Duration,
    /// A session ends after this long without a request.
    #[serde(with = "humantime_serde")]
    pub idle_timeout: Duration,
    /// Failed sign-ins in a row (per account and per client address) before attempts are
    /// delayed (1 s, doubling per failure); no account is ever locked out.
    pub login_free_failures: u32,
    /// The longest delay between two sign-in attempts.
    #[serde(with = "humantime_serde")]
    pub login_max_delay: Duration,
    /// Proxies (addresses or CIDR ranges) whose `X-Forwarded-For` names the client.
    pub trusted_proxies: Vec<String>,
    /// Sign-in attempts per client address per minute.
    pub login_attempts_per_minute: u32,
    /// Key-safe codes one user may be shown in an hour.
    pub key_safe_reveals_per_hour: u32,
    /// Longest a request may take before it is answered 408.
    #[serde(with = "humantime_serde")]
    pub request_timeout: Duration,
    /// Longest a client may take to send a request's head (request line and headers); a
    /// slow or silent client is cut off then, and an idle kept-alive connection is closed
    /// after the same time.
    #[serde(with = "humantime_serde")]
    pub header_read_timeout: Duration,
    /// Open connections at most (WebSockets included); more are closed at once.
    pub max_connections: usize,
    /// Open connections from one client address at most. Behind a reverse proxy every
    /// browser shares the proxy's address: raise it to `max_connections` there and cap
    /// per client in the proxy.
    pub max_connections_per_address: usize,
}

impl ConsoleSection {
    /// The certificate and key files, when both are set.
    pub fn tls_files(&self) -> Option<warden_console::tls::TlsFiles> {
        Some(tls_files(self.tls_cert.as_ref()?, self.tls_key.as_ref()?))
    }

    pub fn to_console(&self) -> warden_console::ConsoleConfig {
        warden_console::ConsoleConfig {
            cookie_secure: self.cookie_secure,
            tls: self.tls_files(),
            session_ttl: self.session_ttl,
            idle_timeout: self.idle_timeout,
            login_free_failures: self.login_free_failures,
            login_max_delay: self.login_max_delay,
            // Checked by `validate`; nothing is trusted if it were not.
            trusted_proxies: warden_console::client_addr::TrustedProxies::parse(
                &self.trusted_proxies,
            )
            .unwrap_or_default(),
            login_attempts_per_minute: self.login_attempts_per_minute,
            key_safe_reveals_per_hour: self.key_safe_reveals_per_hour,
            request_timeout: self.request_timeout,
            header_read_timeout: self.header_read_timeout,
            max_connections: self.max_connections,
            max_connections_per_address: self.max_connections_per_address,
            ..warden_console::ConsoleConfig::default()
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BrokerConfig {
    /// Run the embedded MQTT broker (rumqttd). It keeps nothing on disk: production uses an
    /// external broker such as Mosquitto or a cluster.
    pub embedded: bool,
    pub listen: SocketAddr,
    /// A TLS listener of the embedded broker for units across a network (the plain
    /// `listen` then stays on loopback for Warden itself); needs `tls_cert` and `tls_key`,
    /// reloaded when the files change. See `broker_tls.rs`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tls_listen: Option<SocketAddr>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tls_cert: Option<PathBuf>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tls_key: Option<PathBuf>,
    /// Require a client certificate signed by this CA (PEM) on the TLS listener.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tls_client_ca: Option<PathBuf>,
}

impl BrokerConfig {
    /// The TLS listener's settings, when `tls_listen`, `tls_cert` and `tls_key` are set.
    #[cfg(feature = "embedded-broker")]
    pub fn tls(&self) -> Option<crate::broker_tls::BrokerTls> {
        Some(crate::broker_tls::BrokerTls {
            listen: self.tls_listen?,
            files: tls_files(self.tls_cert.as_ref()?, self.tls_key.as_ref()?),
            client_ca: self.tls_client_ca.clone(),
        })
    }

    pub(super) fn check(&self, errors: &mut Vec<String>) {
        let any = self.tls_listen.is_some()
            || self.tls_cert.is_some()
            || self.tls_key.is_some()
            || self.tls_client_ca.is_some();
        if !any {
            return;
        }
        if !self.embedded {
            errors
                .push("broker.tls_*: only for the embedded broker (broker.embedded = true)".into());
        }
        let (Some(_), Some(cert), Some(key)) = (&self.tls_listen, &self.tls_cert, &self.tls_key)
        else {
            errors.push("broker.tls_listen, tls_cert and tls_key: give all three".into());
            return;
        };
        if let Err(e) = warden_console::tls::load(&tls_files(cert, key)) {
            errors.push(format!("broker.tls_cert / tls_key: {e}"));
        }
        if let Some(ca) = &self.tls_client_ca
            && let Err(e) = warden_console::tls::roots(ca)
        {
            errors.push(format!("broker.tls_client_ca: {e}"));
        }
    }
}

fn tls_files(cert: &Path, key: &Path) -> warden_console::tls::TlsFiles {
    warden_console::tls::TlsFiles {
        cert: cert.to_owned(),
        key: key.to_owned(),
        reload_every: warden_console::tls::RELOAD_EVERY,
    }
}

/// A listener's `tls_cert` and `tls_key`: both or neither, and a pair that loads.
pub(super) fn check_tls_pair(
    section: &str,
    cert: Option<&PathBuf>,
    key: Option<&PathBuf>,
    errors: &mut Vec<String>,
) {
    match (cert, key) {
        (Some(cert), Some(key)) => {
            if let Err(e) = warden_console::tls::load(&tls_files(cert, key)) {
                errors.push(format!("{section}.tls_cert / tls_key: {e}"));
            }
        }
        (Some(_), None) => errors.push(format!(
            "{section}.tls_key: required with {section}.tls_cert"
        )),
        (None, Some(_)) => errors.push(format!(
            "{section}.tls_cert: required with {section}.tls_key"
        )),
        (None, None) => {}
    }
}
