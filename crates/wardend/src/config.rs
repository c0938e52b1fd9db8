//! Typed configuration: embedded defaults, then an optional TOML file, then `WARDEN_*`
//! environment variables (`WARDEN_DATABASE__URL`, `WARDEN_MQTT__HOST`, …). Unknown keys are
//! errors; every error is reported at once; secrets never print.

use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use figment::Figment;
use figment::providers::{Env, Format, Serialized, Toml};
use serde::{Deserialize, Serialize};
use warden_ingest::mqtt::MqttConfig;
use warden_ingest::serial::SerialConfig;

mod database;
mod escalation;
mod listeners;
pub use database::DatabaseConfig;
pub use escalation::EscalationSection;
pub use listeners::{AdminConfig, BrokerConfig, ConsoleSection};

/// A value that must never appear in logs or `print-config` output.
#[derive(Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(transparent)]
pub struct Secret(String);

impl Secret {
    /// A secret Warden made itself (the demo's webhook key).
    #[cfg(feature = "demo")]
    pub fn new(s: impl Into<String>) -> Self {
        Secret(s.into())
    }

    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret([redacted])")
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// Where Warden keeps its state: the embedded Postgres cluster when no database URL is
    /// given.
    pub data_dir: PathBuf,
    pub database: DatabaseConfig,
    pub writer: WriterSection,
    /// The local spool that keeps signals durable while Postgres is unavailable.
    pub spool: SpoolSection,
    pub admin: AdminConfig,
    pub console: ConsoleSection,
    /// Escalation of unanswered incidents to people on call.
    pub escalation: EscalationSection,
    /// Triage rules: answer-time thresholds per lane, supervision margin and grace, storm
    /// and runaway limits, and the managers' overrides of priority and cancel policy per
    /// code, device type or client. Durations in microseconds.
    #[serde(default)]
    pub triage: warden_core::Config,
    pub log: LogConfig,
    /// MQTT ingest; absent means no MQTT ingest.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mqtt: Option<MqttConfig>,
    pub broker: BrokerConfig,
    /// The SIA DC-09 receiver for IP alarm transmitters; absent: none.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dc09: Option<warden_ingest::dc09::Dc09Config>,
    /// The SCAIP receiver for social-alarm units over SIP; absent: none.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scaip: Option<warden_ingest::scaip::ScaipConfig>,
    /// Serial receivers, one `[[serial]]` table each.
    #[serde(default)]
    pub serial: Vec<SerialConfig>,
    /// Keys for the encryption at rest of key-safe codes and medical notes.
    #[serde(default)]
    pub encryption: crate::encryption::EncryptionSection,
}

/// Shortest accepted `writer.dedupe_window`: brokers redeliver after reconnects, which take
/// longer than seconds.
const DEDUPE_WINDOW_MIN: Duration = Duration::from_mins(1);
/// Longest accepted `writer.dedupe_window`: the `dedupe` table holds one row per message
/// of the window.
const DEDUPE_WINDOW_MAX: Duration = Duration::from_hours(30 * 24);

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WriterSection {
    /// Most records in one transaction.
    pub max_batch: usize,
    /// How long the writer gathers records after the first before committing.
    #[serde(with = "humantime_serde")]
    pub max_wait: Duration,
    /// Records queued for the writer before senders wait (alarms wait, never drop).
    pub queue_capacity: usize,
    /// How long a message id and payload are remembered to recognise redeliveries: the same
    /// id with the same payload within it is stored once; another payload under the same id
    /// is a new signal. Longer than any outage after which a broker may still redeliver.
    #[serde(with = "humantime_serde")]
    pub dedupe_window: Duration,
}

/// Degraded mode: while Postgres is unreachable, or a commit takes longer than `after`,
/// signals are fsynced to a local spool and acknowledged from there, then drained into
/// Postgres in order, exactly once, when it answers again.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SpoolSection {
    /// Off: during an outage nothing is acknowledged (senders hold and retry).
    pub enabled: bool,
    /// The spool's directory; default `<data_dir>/spool`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dir: Option<PathBuf>,
    /// Bound on the spool's size in bytes (alerts at 50, 80 and 95 %); when full, senders
    /// are no longer acknowledged and retry.
    pub max_bytes: u64,
    /// A commit not finished after this long is abandoned and its records spooled: inside
    /// the shortest sender window (a Sur-Gard receiver waits 4 s).
    #[serde(with = "humantime_serde")]
    pub after: Duration,
    /// While degraded, how often Postgres is tried again.
    #[serde(with = "humantime_serde")]
    pub probe_every: Duration,
}

impl SpoolSection {
    pub fn dir(&self, data_dir: &std::path::Path) -> PathBuf {
        self.dir.clone().unwrap_or_else(|| data_dir.join("spool"))
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    Json,
    Text,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LogConfig {
    pub format: LogFormat,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            data_dir: PathBuf::from("warden-data"),
            database: DatabaseConfig {
                url: None,
                migrate_url: None,
                ca_file: None,
                allow_plaintext: false,
                max_connections: 16,
                auto_migrate: true,
            },
            writer: WriterSection {
                max_batch: 1000,
                max_wait: Duration::from_millis(2),
                queue_capacity: 20_000,
                dedupe_window: Duration::from_hours(24),
            },
            spool: SpoolSection {
                enabled: true,
                dir: None,
                max_bytes: 1 << 30,
                after: Duration::from_millis(1500),
                probe_every: Duration::from_secs(1),
            },
            admin: AdminConfig {
                listen: SocketAddr::from(([127, 0, 0, 1], 9180)),
                header_read_timeout: Duration::from_secs(15),
                max_connections: 64,
                max_connections_per_address: 16,
                tls_cert: None,
                tls_key: None,
            },
            console: {
                let d = warden_console::ConsoleConfig::default();
                ConsoleSection {
                    enabled: true,
                    listen: SocketAddr::from(([127, 0, 0, 1], 8080)),
                    cookie_secure: d.cookie_secure,
                    tls_cert: None,
                    tls_key: None,
                    session_ttl: d.session_ttl,
                    idle_timeout: d.idle_timeout,
                    login_free_failures: d.login_free_failures,
                    login_max_delay: d.login_max_delay,
                    trusted_proxies: Vec::new(),
                    login_attempts_per_minute: d.login_attempts_per_minute,
                    key_safe_reveals_per_hour: d.key_safe_reveals_per_hour,
                    request_timeout: d.request_timeout,
                    header_read_timeout: d.header_read_timeout,
                    max_connections: d.max_connections,
                    max_connections_per_address: d.max_connections_per_address,
                }
            },
            escalation: EscalationSection::default(),
            triage: warden_core::Config::default(),
            log: LogConfig {
                format: LogFormat::Text,
            },
            mqtt: None,
            broker: BrokerConfig {
                embedded: false,
                listen: SocketAddr::from(([127, 0, 0, 1], 1883)),
                tls_listen: None,
                tls_cert: None,
                tls_key: None,
                tls_client_ca: None,
            },
            dc09: None,
            scaip: None,
            serial: Vec::new(),
            encryption: crate::encryption::EncryptionSection::default(),
        }
    }
}

/// Every problem found in a configuration, reported together.
#[derive(Debug)]
pub struct ConfigErrors(pub Vec<String>);

impl fmt::Display for ConfigErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "invalid configuration ({} problem{}):",
            self.0.len(),
            if self.0.len() == 1 { "" } else { "s" }
        )?;
        for e in &self.0 {
            writeln!(f, "  - {e}")?;
        }
        Ok(())
    }
}

impl std::error::Error for ConfigErrors {}

impl Config {
    /// Loads defaults, then `file` (which must exist when given), then the environment.
    pub fn load(file: Option<&Path>) -> Result<Self, ConfigErrors> {
        let mut fig = Figment::from(Serialized::defaults(Config::default()));
        if let Some(path) = file {
            if !path.is_file() {
                return Err(ConfigErrors(vec![format!(
                    "config file {} does not exist",
                    path.display()
                )]));
            }
            // `file_exact`: `Toml::file` would silently search parent folders.
            fig = fig.merge(Toml::file_exact(path));
        }
        // `WARDEN_CONFIG` and `WARDEN_DC09_KEY` are command-line options, not configuration.
        fig = fig.merge(
            Env::prefixed("WARDEN_")
                .split("__")
                .ignore(&["config", "dc09_key"]),
        );
        let cfg: Config = fig
            .extract()
            .map_err(|e| ConfigErrors(e.into_iter().map(|e| e.to_string()).collect()))?;
        let problems = cfg.validate();
        if problems.is_empty() {
            Ok(cfg)
        } else {
            Err(ConfigErrors(problems))
        }
    }

    fn validate(&self) -> Vec<String> {
        let mut errors = Vec::new();
        if let Err(e) = self.encryption.configured() {
            errors.push(e);
        }
        if self.database.max_connections == 0 {
            errors.push("database.max_connections: must be positive".into());
        }
        self.database.check(&mut errors);
        if self.writer.max_batch == 0 || self.writer.max_batch > 10_000 {
            errors.push(format!(
                "writer.max_batch: {} is not in 1..=10000",
                self.writer.max_batch
            ));
        }
        if self.writer.queue_capacity < self.writer.max_batch {
            errors.push("writer.queue_capacity: must be at least writer.max_batch".into());
        }
        if self.spool.max_bytes < 1 << 20 {
            errors.push(format!(
                "spool.max_bytes: {} is below 1 MiB (1048576)",
                self.spool.max_bytes
            ));
        }
        if self.spool.after < Duration::from_millis(100)
            || self.spool.after > Duration::from_secs(3)
        {
            errors.push(format!(
                "spool.after: {:?} is not within 100ms..=3s (a receiver waits 4 s for its ACK)",
                self.spool.after
            ));
        }
        if self.spool.probe_every < Duration::from_millis(100)
            || self.spool.probe_every > Duration::from_mins(1)
        {
            errors.push(format!(
                "spool.probe_every: {:?} is not within 100ms..=1m",
                self.spool.probe_every
            ));
        }
        if self.writer.max_wait > Duration::from_millis(100) {
            errors.push("writer.max_wait: more than 100ms would delay every ACK".into());
        }
        if self.writer.dedupe_window < DEDUPE_WINDOW_MIN
            || self.writer.dedupe_window > DEDUPE_WINDOW_MAX
        {
            errors.push(format!(
                "writer.dedupe_window: {} is not between 1m and 30days (a redelivery after \
                 the window is stored twice)",
                humantime::format_duration(self.writer.dedupe_window)
            ));
        }
        if let Err(e) = self.triage.validate() {
            errors.push(format!("triage: {e}"));
        }
        self.escalation.check(&mut errors);
        if let Some(d) = &self.dc09 {
            if d.tcp.is_none() && d.udp.is_none() {
                errors.push("dc09: give a tcp or udp address (or leave the section out)".into());
            }
            if d.max_connections == 0
                || d.max_connections_per_address == 0
                || d.max_connections_per_account == 0
            {
                errors.push(
                    "dc09.max_connections, max_connections_per_address and max_connections_per_account: at least 1".into(),
                );
            }
            if d.before_seconds > 3600 || d.after_seconds > 3600 {
                errors.push("dc09.before_seconds / after_seconds: at most 3600".into());
            }
        }
        if let Some(s) = &self.scaip {
            if s.tcp.is_none() && s.udp.is_none() {
                errors.push("scaip: give a udp or tcp address (or leave the section out)".into());
            }
            if s.max_connections == 0 || s.max_connections_per_address == 0 {
                errors.push(
                    "scaip.max_connections and max_connections_per_address: at least 1".into(),
                );
            }
        }
        if let Err(e) =
            warden_console::client_addr::TrustedProxies::parse(&self.console.trusted_proxies)
        {
            errors.push(format!("console.trusted_proxies: {e}"));
        }
        if self.console.login_max_delay > Duration::from_mins(10) {
            errors.push("console.login_max_delay: at most 10 minutes".into());
        }
        if self.console.login_attempts_per_minute < 1 {
            errors.push("console.login_attempts_per_minute: must be at least 1".into());
        }
        for (section, header, max, per_address) in [
            (
                "console",
                self.console.header_read_timeout,
                self.console.max_connections,
                self.console.max_connections_per_address,
            ),
            (
                "admin",
                self.admin.header_read_timeout,
                self.admin.max_connections,
                self.admin.max_connections_per_address,
            ),
        ] {
            if header.is_zero() {
                errors.push(format!(
                    "{section}.header_read_timeout: must be more than 0"
                ));
            }
            if max == 0 || per_address == 0 {
                errors.push(format!(
                    "{section}.max_connections and max_connections_per_address: at least 1"
                ));
            }
        }
        listeners::check_tls_pair(
            "console",
            self.console.tls_cert.as_ref(),
            self.console.tls_key.as_ref(),
            &mut errors,
        );
        listeners::check_tls_pair(
            "admin",
            self.admin.tls_cert.as_ref(),
            self.admin.tls_key.as_ref(),
            &mut errors,
        );
        if self.console.request_timeout.is_zero() {
            errors.push("console.request_timeout: must be more than 0".into());
        }
        if self.console.idle_timeout > self.console.session_ttl {
            errors.push("console.idle_timeout: must not exceed console.session_ttl".into());
        }
        if let Some(m) = &self.mqtt {
            errors.extend(m.validate());
        }
        let mut names = std::collections::HashSet::new();
        for s in &self.serial {
            errors.extend(s.validate());
            if !names.insert(&s.name) {
                errors.push(format!("serial name {:?} is used twice", s.name));
            }
        }
        self.broker.check(&mut errors);
        if self.broker.embedded && !cfg!(feature = "embedded-broker") {
            errors.push(
                "broker.embedded: this wardend was built without the embedded-broker feature"
                    .into(),
            );
        }
        errors
    }

    /// The configuration as TOML with secrets replaced.
    pub fn to_redacted_toml(&self) -> String {
        let mut shown = self.clone();
        for url in [&mut shown.database.url, &mut shown.database.migrate_url]
            .into_iter()
            .flatten()
        {
            *url = Secret(redact_url(url.expose()));
        }
        for key in shown.encryption.keys.values_mut() {
            *key = Secret("[redacted]".into());
        }
        toml::to_string_pretty(&shown)
            .unwrap_or_else(|e| format!("# could not render config: {e}\n"))
    }
}

/// `postgres://user:secret@host/db` → `postgres://user:[redacted]@host/db`; a password in
/// the query string (`?password=…`) is redacted too.
fn redact_url(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return "[redacted]".into();
    };
    let (rest, query) = match rest.split_once('?') {
        Some((r, q)) => (r, Some(q)),
        None => (rest, None),
    };
    let base = match rest.rsplit_once('@') {
        Some((userinfo, host)) => match userinfo.split_once(':') {
            Some((user, _)) => format!("{scheme}://{user}:[redacted]@{host}"),
            None => format!("{scheme}://{rest}"),
        },
        None => format!("{scheme}://{rest}"),
    };
    let Some(query) = query else {
        return base;
    };
    let query: Vec<String> = query
        .split('&')
        .map(|pair| match pair.split_once('=') {
            Some((k, _)) if k.eq_ignore_ascii_case("password") => format!("{k}=[redacted]"),
            _ => pair.to_owned(),
        })
        .collect();
    format!("{base}?{}", query.join("&"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passwords_in_database_urls_are_redacted() {
        assert_eq!(
            redact_url("postgres://warden@db/warden?sslmode=verify-full&password=s3cret"),
            "postgres://warden@db/warden?sslmode=verify-full&password=[redacted]"
        );
        assert_eq!(
            redact_url("postgres://warden:s3cret@db:5432/warden"),
            "postgres://warden:[redacted]@db:5432/warden"
        );
        assert_eq!(
            redact_url("postgres://warden@db/warden"),
            "postgres://warden@db/warden"
        );
        assert!(!format!("{:?}", Secret("x".into())).contains('x'));
    }

    #[test]
    fn print_config_hides_the_owner_password_and_a_migrate_url_needs_a_url_and_tls() {
        let dir = tempfile::tempdir().expect("dir");
        let path = dir.path().join("w.toml");
        let write = |text: &str| std::fs::write(&path, text).expect("write");
        write(
            "[database]\nurl = \"postgres://warden_app:run-pw@db/warden?sslmode=verify-full\"\n\
             migrate_url = \"postgres://warden_owner:owner-pw@db/warden?sslmode=verify-full\"\n",
        );
        let shown = Config::load(Some(&path)).expect("valid").to_redacted_toml();
        assert!(
            !shown.contains("run-pw") && !shown.contains("owner-pw"),
            "{shown}"
        );
        assert!(
            shown.contains("postgres://warden_owner:[redacted]@db/warden"),
            "{shown}"
        );

        // The owner's connection carries the same secrets: no plaintext to another host.
        write(
            "[database]\nurl = \"postgres://a:p@db/warden?sslmode=verify-full\"\n\
             migrate_url = \"postgres://o:p@db/warden\"\n",
        );
        let errors = Config::load(Some(&path)).expect_err("plaintext owner").0;
        assert!(
            errors
                .iter()
                .any(|e| e.starts_with("database.migrate_url: ") && e.contains("without TLS")),
            "{errors:?}"
        );

        write("[database]\nmigrate_url = \"postgres://o:p@localhost/warden\"\n");
        let errors = Config::load(Some(&path)).expect_err("no url").0;
        assert!(
            errors
                .iter()
                .any(|e| e.starts_with("database.migrate_url: only with database.url")),
            "{errors:?}"
        );
    }

    #[test]
    fn encryption_keys_never_print_and_a_bad_one_is_named() {
        let dir = tempfile::tempdir().expect("dir");
        let path = dir.path().join("w.toml");
        let key = "00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff";
        std::fs::write(
            &path,
            format!(
                "[encryption]\ncurrent = \"2026-1\"\n[encryption.keys]\n\"2026-1\" = \"{key}\"\n"
            ),
        )
        .expect("write");
        let cfg = Config::load(Some(&path)).expect("valid");
        let sealer = cfg.encryption.configured().expect("keys").expect("some");
        assert_eq!(sealer.current(), "2026-1");
        let shown = cfg.to_redacted_toml();
        assert!(!shown.contains(key), "{shown}");
        assert!(!format!("{cfg:?}").contains(key));
        std::fs::write(
            &path,
            "[encryption]\ncurrent = \"k2\"\n[encryption.keys]\nk1 = \"short\"\n",
        )
        .expect("write");
        let errors = Config::load(Some(&path)).expect_err("bad key").0;
        assert!(
            errors
                .iter()
                .any(|e| e.contains("encryption") && e.contains("\"k1\"")),
            "{errors:?}"
        );
    }

    #[test]
    fn the_mqtt_password_never_prints_and_half_a_login_is_refused() {
        let dir = tempfile::tempdir().expect("dir");
        let path = dir.path().join("w.toml");
        std::fs::write(
            &path,
            "[mqtt]\nhost = \"broker\"\nusername = \"warden\"\npassword = \"s3cret-pw\"\n",
        )
        .expect("write");
        let cfg = Config::load(Some(&path)).expect("valid");
        let m = cfg.mqtt.as_ref().expect("mqtt");
        assert_eq!(
            m.password.as_ref().map(warden_ingest::Secret::expose),
            Some("s3cret-pw")
        );
        let shown = cfg.to_redacted_toml();
        assert!(!shown.contains("s3cret-pw"), "{shown}");
        assert!(shown.contains("[redacted]"), "{shown}");
        assert!(!format!("{cfg:?}").contains("s3cret-pw"));

        std::fs::write(
            &path,
            "[mqtt]\nusername = \"warden\"\ntls_ca_file = \"/nonexistent/ca.pem\"\ntls_client_key = \"/nonexistent/k.pem\"\n",
        )
        .expect("write");
        let errors = Config::load(Some(&path)).expect_err("incomplete login").0;
        for want in [
            "mqtt.password: required with mqtt.username",
            "mqtt.tls_ca_file: cannot read /nonexistent/ca.pem",
            "mqtt.tls_client_cert: required with mqtt.tls_client_key",
        ] {
            assert!(
                errors.iter().any(|e| e.starts_with(want)),
                "{want}: {errors:?}"
            );
        }
    }

    #[test]
    fn a_database_url_that_may_fall_back_to_plaintext_across_a_network_is_refused() {
        let dir = tempfile::tempdir().expect("dir");
        let path = dir.path().join("w.toml");
        let load = |toml: &str| {
            std::fs::write(&path, toml).expect("write");
            Config::load(Some(&path))
        };
        for url in [
            "postgres://w:pw@db.example/w",
            "postgres://w:pw@db.example/w?sslmode=prefer",
            "postgres://w:pw@10.1.2.3/w?sslmode=disable",
        ] {
            let errors = load(&format!("[database]\nurl = \"{url}\"\n"))
                .expect_err(url)
                .0;
            assert!(
                errors
                    .iter()
                    .any(|e| e.starts_with("database.url: sslmode=")
                        && e.contains("may connect without TLS")
                        && e.contains("database.allow_plaintext")),
                "{url}: {errors:?}"
            );
            assert!(
                errors.iter().all(|e| !e.contains("pw@")),
                "the password is shown: {errors:?}"
            );
            load(&format!(
                "[database]\nurl = \"{url}\"\nallow_plaintext = true\n"
            ))
            .expect("allowed explicitly");
        }
        // Loopback needs nothing; verify-full across the network is accepted.
        load("[database]\nurl = \"postgres://w@127.0.0.1:5432/w\"\n").expect("loopback");
        load("[database]\nurl = \"postgres://w@db.example/w?sslmode=verify-full&sslrootcert=/etc/ca.pem\"\n")
            .expect("verify-full");

        // ca_file: verify-full unless the URL says otherwise, the file must hold a certificate.
        let ca = dir.path().join("ca.pem");
        std::fs::write(
            &ca,
            "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n",
        )
        .expect("write");
        let cfg = load(&format!(
            "[database]\nurl = \"postgres://w@db.example/w\"\nca_file = \"{}\"\n",
            ca.display()
        ))
        .expect("ca_file makes it verify-full");
        let url = cfg.database.effective_url().expect("url");
        assert_eq!(
            url,
            format!(
                "postgres://w@db.example/w?sslrootcert={}&sslmode=verify-full",
                ca.display().to_string().replace('/', "%2F")
            )
        );
        let errors = load(
            "[database]\nurl = \"postgres://w@db.example/w?sslmode=require\"\nca_file = \"/nonexistent/ca.pem\"\n",
        )
        .expect_err("unreadable ca_file")
        .0;
        assert!(
            errors
                .iter()
                .any(|e| e.starts_with("database.ca_file: cannot read /nonexistent/ca.pem")),
            "{errors:?}"
        );
    }

    #[test]
    fn console_tls_needs_both_files_and_files_that_load() {
        let dir = tempfile::tempdir().expect("dir");
        let path = dir.path().join("w.toml");
        std::fs::write(&path, "[console]\ntls_cert = \"/nonexistent/cert.pem\"\n").expect("write");
        let errors = Config::load(Some(&path)).expect_err("half a pair").0;
        assert!(
            errors
                .iter()
                .any(|e| e == "console.tls_key: required with console.tls_cert"),
            "{errors:?}"
        );
        std::fs::write(
            &path,
            "[console]\ntls_cert = \"/nonexistent/cert.pem\"\ntls_key = \"/nonexistent/key.pem\"\n",
        )
        .expect("write");
        let errors = Config::load(Some(&path)).expect_err("missing files").0;
        assert!(
            errors
                .iter()
                .any(|e| e
                    .starts_with("console.tls_cert / tls_key: cannot read /nonexistent/cert.pem")),
            "{errors:?}"
        );
    }

    #[test]
    fn the_embedded_defaults_are_valid() {
        assert!(Config::default().validate().is_empty());
    }

    #[test]
    fn the_listener_limits_are_read_from_the_file_and_checked() {
        let dir = tempfile::tempdir().expect("dir");
        let path = dir.path().join("w.toml");
        std::fs::write(
            &path,
            "[console]\nheader_read_timeout = \"5s\"\nmax_connections = 100\nmax_connections_per_address = 100\nrequest_timeout = \"10s\"\n[admin]\nmax_connections = 8\n",
        )
        .expect("write");
        let cfg = Config::load(Some(&path)).expect("valid");
        let console = cfg.console.to_console();
        assert_eq!(console.header_read_timeout, Duration::from_secs(5));
        assert_eq!(console.request_timeout, Duration::from_secs(10));
        assert_eq!(
            (console.max_connections, console.max_connections_per_address),
            (100, 100)
        );
        let admin = cfg.admin.limits();
        assert_eq!((admin.name, admin.max_connections), ("admin", 8));
        assert_eq!(
            admin.max_connections_per_address, 16,
            "the rest of [admin] keeps its defaults"
        );

        std::fs::write(
            &path,
            "[console]\nheader_read_timeout = \"0s\"\nmax_connections_per_address = 0\n[admin]\nmax_connections = 0\n",
        )
        .expect("write");
        let errors = Config::load(Some(&path)).expect_err("zero limits").0;
        for want in [
            "console.header_read_timeout: must be more than 0",
            "console.max_connections and max_connections_per_address: at least 1",
            "admin.max_connections and max_connections_per_address: at least 1",
        ] {
            assert!(errors.iter().any(|e| e == want), "{want}: {errors:?}");
        }
    }

    #[test]
    fn the_dedupe_window_defaults_to_a_day_is_shown_and_is_bounded() {
        let shown = Config::default().to_redacted_toml();
        assert!(shown.contains("dedupe_window = \"1day\""), "{shown}");

        let dir = tempfile::tempdir().expect("dir");
        let path = dir.path().join("w.toml");
        std::fs::write(&path, "[writer]\ndedupe_window = \"7days\"\n").expect("write");
        let cfg = Config::load(Some(&path)).expect("valid");
        assert_eq!(cfg.writer.dedupe_window, Duration::from_hours(7 * 24));
        assert_eq!(
            cfg.writer.max_batch, 1000,
            "the rest of [writer] keeps its defaults"
        );

        for bad in ["10s", "90days"] {
            std::fs::write(&path, format!("[writer]\ndedupe_window = \"{bad}\"\n")).expect("write");
            let errors = Config::load(Some(&path)).expect_err(bad);
            assert!(
                errors
                    .0
                    .iter()
                    .any(|e| e.starts_with("writer.dedupe_window")),
                "{bad}: {:?}",
                errors.0
            );
        }
    }

    #[test]
    fn triage_rules_come_from_the_file_and_bad_ones_are_refused() {
        let dir = tempfile::tempdir().expect("dir");
        let path = dir.path().join("w.toml");
        std::fs::write(
            &path,
            "[triage.sla.life_critical]\nwarn = \"30s\"\noverflow = \"50s\"\ncritical = \"2m\"\n\
             [triage.storm]\nwindow = \"1m\"\ndevices = 50\n",
        )
        .expect("write");
        let cfg = Config::load(Some(&path)).expect("valid");
        let lc = cfg
            .triage
            .sla
            .life_critical
            .expect("life-critical thresholds");
        assert_eq!(lc.overflow.as_micros(), 50_000_000);
        assert_eq!(cfg.triage.storm.devices, 50);

        std::fs::write(
            &path,
            "[triage.sla.urgent]\nwarn = \"2m\"\noverflow = \"1m\"\ncritical = \"3m\"\n",
        )
        .expect("write");
        let errors = Config::load(Some(&path)).expect_err("thresholds out of order");
        assert!(
            errors.0.iter().any(|e| e.starts_with("triage:")),
            "{:?}",
            errors.0
        );

        // A bare number (the old microseconds) is refused, naming the key and the fix.
        std::fs::write(&path, "[triage.supervision]\ngrace = 120000000\n").expect("write");
        let errors = Config::load(Some(&path)).expect_err("a duration without a unit");
        assert!(
            errors
                .0
                .iter()
                .any(|e| e.contains("grace") && e.contains("write a duration such as")),
            "{:?}",
            errors.0
        );

        // print-config writes the spans the way they are read.
        let printed = Config::load(None).expect("defaults").to_redacted_toml();
        assert!(printed.contains("warn = \"45s\""), "{printed}");
    }
}
