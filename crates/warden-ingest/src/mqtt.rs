//! MQTT ingest: a persistent-session subscriber with manual acknowledgements.
//!
//! The client connects with a stable client id and clean session off, subscribes to
//! `{prefix}/v1/devices/+/up` at QoS 1, and PUBACKs each message only after it is committed
//! (as a signal, as a recognised duplicate, or in quarantine when it is malformed). A write
//! that fails is retried here with backoff and the message stays un-PUBACKed meanwhile; if
//! the process dies, the broker redelivers it when the session resumes. Redeliveries are
//! recognised by `(device, msg_id)` and the payload bytes, within the writer's dedupe window,
//! and stored once; a `msg_id` reused for another payload is a new signal.
//!
//! The MQTT client's own packet-size limit is set far above the payload limit, so an
//! oversized publish reaches this code and is quarantined and PUBACKed; were the client to
//! reject it, the connection would drop and the broker would redeliver the same message
//! forever, starving every alarm behind it.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use rumqttc::{
    AsyncClient, Event, EventLoop, MqttOptions, Packet, Publish, QoS, SubscribeFilter,
    TlsConfiguration, Transport,
};
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;
use tokio::sync::{Semaphore, mpsc};
use tokio_util::sync::CancellationToken;
use tracing::Instrument as _;
use warden_protocol::mqtt::{self as payload, Body, PayloadError};
use warden_store::{Source, WriteError};
use warden_telemetry as m;

use crate::record::{Arrival, MQTT_PROTOCOLS, Outcome, RECEIVER_PROTOCOLS};
use crate::{Ingest, Secret};
use warden_core::Decoded;

mod guard;

/// MQTT connection settings.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MqttConfig {
    #[serde(default = "default_host")]
    pub host: String,
    #[serde(default = "default_port")]
    pub port: u16,
    /// Must be stable across restarts: the broker keeps the session (and the messages not
    /// yet PUBACKed) under this id. Empty (the default): `warden-<random suffix>`, made once
    /// and kept in `data_dir/mqtt-client-id` (see [`persisted_client_id`]), so the id is
    /// not guessable; the broker must still tie it to Warden's own credentials (ACL).
    #[serde(default)]
    pub client_id: String,
    #[serde(default = "default_prefix")]
    pub topic_prefix: String,
    #[serde(default = "default_keep_alive", with = "humantime_serde")]
    pub keep_alive: Duration,
    /// Messages being written at once. The broker's own in-flight limit (Mosquitto's
    /// `max_inflight_messages`, 20 by default) also bounds this.
    #[serde(default = "default_inflight")]
    pub max_inflight: u16,
    /// Warden's user name on the broker; `password` goes with it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub username: Option<String>,
    /// Warden's broker password (also `WARDEN_MQTT__PASSWORD`); never printed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub password: Option<Secret>,
    /// PEM file of the CA that signed the broker's certificate: set it to connect with TLS
    /// (rustls). `host` must then be the name in the broker's certificate.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tls_ca_file: Option<PathBuf>,
    /// PEM client certificate and key, for brokers that ask for one (both or neither).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tls_client_cert: Option<PathBuf>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tls_client_key: Option<PathBuf>,
    /// Subscribe to Mosquitto's `$SYS/broker/publish/messages/dropped` and raise an
    /// incident when the broker drops messages. Off for brokers without `$SYS` topics
    /// (rumqttd, the embedded broker, drops the connection of a client that asks).
    #[serde(default = "default_watch_drops")]
    pub watch_broker_drops: bool,
}

fn default_watch_drops() -> bool {
    true
}

fn default_host() -> String {
    "127.0.0.1".into()
}
fn default_port() -> u16 {
    1883
}
fn default_prefix() -> String {
    "warden".into()
}
fn default_keep_alive() -> Duration {
    Duration::from_secs(15)
}
fn default_inflight() -> u16 {
    1000
}

impl Default for MqttConfig {
    fn default() -> Self {
        Self {
            host: default_host(),
            port: default_port(),
            client_id: String::new(),
            topic_prefix: default_prefix(),
            keep_alive: default_keep_alive(),
            max_inflight: default_inflight(),
            username: None,
            password: None,
            tls_ca_file: None,
            tls_client_cert: None,
            tls_client_key: None,
            watch_broker_drops: true,
        }
    }
}

/// The file in the data directory that keeps the generated client id.
pub const CLIENT_ID_FILE: &str = "mqtt-client-id";

/// Warden's generated client id, `warden-<16 hex digits>`: read from
/// `data_dir/mqtt-client-id`, or made from the system's random source and written there the
/// first time. The session the broker keeps for Warden lives under this id, so it must
/// survive restarts; the random suffix keeps another client from guessing it.
pub fn persisted_client_id(data_dir: &Path) -> std::io::Result<String> {
    let path = data_dir.join(CLIENT_ID_FILE);
    match std::fs::read_to_string(&path) {
        Ok(text) => {
            let id = text.trim();
            if valid_client_id(id) {
                return Ok(id.to_owned());
            }
            return Err(std::io::Error::new(
                std::io::ErrorKind::InvalidData,
                format!("{} does not hold a valid client id", path.display()),
            ));
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(e),
    }
    let id = random_client_id()?;
    std::fs::create_dir_all(data_dir)?;
    // Written aside and renamed, so a crash never leaves a half-written id behind.
    let tmp = data_dir.join(format!("{CLIENT_ID_FILE}.tmp"));
    std::fs::write(&tmp, format!("{id}\n"))?;
    std::fs::rename(&tmp, &path)?;
    Ok(id)
}

fn random_client_id() -> std::io::Result<String> {
    let mut b = [0u8; 8];
    getrandom::fill(&mut b).map_err(|e| std::io::Error::other(e.to_string()))?;
    Ok(format!("warden-{:016x}", u64::from_le_bytes(b)))
}

fn valid_client_id(id: &str) -> bool {
    (1..=92).contains(&id.len()) && id.bytes().all(|b| b.is_ascii_graphic())
}

impl MqttConfig {
    pub fn validate(&self) -> Vec<String> {
        let mut errors = Vec::new();
        if !self.client_id.is_empty() && !valid_client_id(&self.client_id) {
            errors.push(format!(
                "mqtt.client_id {:?}: must be 1-92 printable ASCII characters without spaces (or empty for a generated one)",
                self.client_id
            ));
        }
        if self.topic_prefix.is_empty() || self.topic_prefix.contains(['+', '#']) {
            errors.push(format!(
                "mqtt.topic_prefix {:?}: must be non-empty without wildcards",
                self.topic_prefix
            ));
        }
        if self.keep_alive < Duration::from_secs(1) {
            errors.push("mqtt.keep_alive: must be at least 1s".into());
        }
        if self.max_inflight == 0 {
            errors.push("mqtt.max_inflight: must be positive".into());
        }
        match (&self.username, &self.password) {
            (Some(u), Some(_)) if u.is_empty() => {
                errors.push("mqtt.username: must not be empty".into());
            }
            (Some(_), None) => errors.push("mqtt.password: required with mqtt.username".into()),
            (None, Some(_)) => errors.push("mqtt.username: required with mqtt.password".into()),
            _ => {}
        }
        if let Some(ca) = &self.tls_ca_file {
            check_pem(&mut errors, "mqtt.tls_ca_file", ca, "CERTIFICATE");
        }
        match (&self.tls_client_cert, &self.tls_client_key) {
            (Some(cert), Some(key)) => {
                check_pem(&mut errors, "mqtt.tls_client_cert", cert, "CERTIFICATE");
                check_pem(&mut errors, "mqtt.tls_client_key", key, "PRIVATE KEY");
                if self.tls_ca_file.is_none() {
                    errors.push("mqtt.tls_client_cert: needs mqtt.tls_ca_file (TLS)".into());
                }
            }
            (Some(_), None) => {
                errors.push("mqtt.tls_client_key: required with mqtt.tls_client_cert".into());
            }
            (None, Some(_)) => {
                errors.push("mqtt.tls_client_cert: required with mqtt.tls_client_key".into());
            }
            (None, None) => {}
        }
        errors
    }

    pub fn link_id(&self) -> String {
        format!("mqtt:{}:{}", self.host, self.port)
    }

    fn options(&self, client_id: &str) -> Result<MqttOptions, String> {
        let mut o = MqttOptions::new(client_id, &self.host, self.port);
        o.set_clean_session(false);
        o.set_manual_acks(true);
        o.set_keep_alive(self.keep_alive);
        o.set_inflight(self.max_inflight);
        // 1 MiB: far above payload::MAX_PAYLOAD, see the module comment.
        o.set_max_packet_size(1 << 20, 1 << 20);
        if let (Some(user), Some(password)) = (&self.username, &self.password) {
            o.set_credentials(user, password.expose());
        }
        if let Some(ca) = &self.tls_ca_file {
            let read =
                |p: &Path| std::fs::read(p).map_err(|e| format!("reading {}: {e}", p.display()));
            let client_auth = match (&self.tls_client_cert, &self.tls_client_key) {
                (Some(cert), Some(key)) => Some((read(cert)?, read(key)?)),
                _ => None,
            };
            // rumqttc is built without a crypto provider of its own: ring is ours. Installing
            // it twice is harmless (the first one stays).
            let _ = rustls::crypto::ring::default_provider().install_default();
            o.set_transport(Transport::Tls(TlsConfiguration::Simple {
                ca: read(ca)?,
                alpn: None,
                client_auth,
            }));
        }
        Ok(o)
    }
}

/// Adds an error unless `path` is a readable file holding a PEM block of `label`.
fn check_pem(errors: &mut Vec<String>, key: &str, path: &Path, label: &str) {
    match std::fs::read_to_string(path) {
        Ok(text) if text.contains("-----BEGIN ") && text.contains(label) => {}
        Ok(_) => errors.push(format!("{key}: {} holds no PEM {label}", path.display())),
        Err(e) => errors.push(format!("{key}: cannot read {}: {e}", path.display())),
    }
}

/// A message being written, in arrival order, waiting for its PUBACK.
struct Pending {
    publish: Publish,
    /// Which broker connection delivered it: a PUBACK belongs to that connection only.
    epoch: u64,
    arrived: Instant,
    written: tokio::task::JoinHandle<Option<Outcome>>,
}

/// Runs the MQTT subscriber until `shutdown`.
///
/// Messages are written concurrently (the writer batches them), but PUBACKs leave strictly
/// in the order the messages arrived, as MQTT 3.1.1 §4.6 requires for QoS 1; some brokers
/// (rumqttd) drop a client that acknowledges out of order. A PUBACK owed to a connection
/// that has since dropped is not sent: the broker redelivers that message on the new
/// connection and the redelivery is recognised as a duplicate.
pub async fn run(cfg: MqttConfig, ingest: Ingest, shutdown: CancellationToken) {
    let link = cfg.link_id();
    let inflight = usize::from(cfg.max_inflight);
    // rumqttc's request queue carries our PUBACKs to the event loop, which sends them only
    // while it is polled; sized well above the in-flight window so `ack` rarely waits.
    let client_id = if cfg.client_id.is_empty() {
        // `wardend` fills in the persisted id; a caller that did not gets one for this run
        // only, and with it a new session at every start.
        let id = random_client_id().unwrap_or_else(|_| "warden-ingest".into());
        tracing::warn!(link = %link, client_id = %id, "no mqtt client id configured; using one for this run only");
        id
    } else {
        cfg.client_id.clone()
    };
    let options = match cfg.options(&client_id) {
        Ok(o) => o,
        Err(e) => {
            tracing::error!(link = %link, error = %e, "mqtt connection settings unusable");
            ingest.link_change(&link, false, &e, false).await;
            shutdown.cancelled().await;
            return;
        }
    };
    let (client, mut eventloop) = AsyncClient::new(options, inflight * 8 + 64);
    let permits = Arc::new(Semaphore::new(inflight));
    let epoch = Arc::new(AtomicU64::new(0));
    // The PUBACK sequencer's queue is deliberately unbounded: the poll loop must never wait
    // on the acknowledgement path, because PUBACKs only leave while the loop polls (a
    // bounded queue here deadlocked under a 10 000-unit reconnect: the loop waited for the
    // sequencer, the sequencer for rumqttc's request queue, and that queue for the loop).
    // It stays small: entries leave as soon as their write commits and their PUBACK is
    // queued, and the in-flight permits bound how many writes run at once.
    let (ack_tx, ack_rx) = mpsc::unbounded_channel::<Pending>();
    let acker = tokio::spawn(
        acknowledge(client.clone(), ingest.clone(), Arc::clone(&epoch), ack_rx)
            .instrument(tracing::info_span!("mqtt_acks")),
    );
    let filter = format!("{}/+/devices/+/up", cfg.topic_prefix);
    // What each SUBSCRIBE sent asked for, oldest first: SUBACKs come back in that order.
    let mut subscriptions: std::collections::VecDeque<Subscribed> =
        std::collections::VecDeque::new();
    let mut drops = guard::DropWatch::default();
    let mut sequences = guard::SeqTracker::default();
    let mut link_up = false;
    let mut backoff = Duration::from_millis(250);
    ingest.link_change(&link, false, "starting", false).await;
    let mut ever_up = false;
    loop {
        let event = tokio::select! {
            // Cancel-safe: dropping the poll future loses no acknowledged state; unacked
            // messages are redelivered by the broker.
            () = shutdown.cancelled() => break,
            ev = eventloop.poll() => ev,
        };
        match event {
            Ok(Event::Incoming(Packet::ConnAck(ack))) => {
                backoff = Duration::from_millis(250);
                tracing::info!(link = %link, session_present = ack.session_present, "mqtt connected");
                if ack.session_present {
                    // The broker kept our subscription: messages are flowing again.
                    if !link_up {
                        link_up = true;
                        ingest
                            .link_change(&link, true, "session resumed", ever_up)
                            .await;
                        ever_up = true;
                    }
                    // Sessions made before Warden watched the drop counter lack it.
                    if !cfg.watch_broker_drops {
                        continue;
                    }
                    match client
                        .subscribe(guard::DROPPED_TOPIC, QoS::AtMostOnce)
                        .await
                    {
                        Ok(()) => subscriptions.push_back(Subscribed::DropCounter),
                        Err(e) => {
                            tracing::error!(link = %link, error = %e, "mqtt subscribe request failed");
                        }
                    }
                } else {
                    if ever_up {
                        // Connected before in this process, yet the broker has no session:
                        // what it queued for Warden meanwhile is gone.
                        let (ingest2, link2) = (ingest.clone(), link.clone());
                        tokio::spawn(async move { guard::session_lost(&ingest2, &link2).await });
                    }
                    // The broker's drop counter rides along at QoS 0 (it is published so);
                    // it needs no PUBACK and never enters the PUBACK sequence.
                    let mut filters = vec![SubscribeFilter::new(filter.clone(), QoS::AtLeastOnce)];
                    let asked = if cfg.watch_broker_drops {
                        filters.push(SubscribeFilter::new(
                            guard::DROPPED_TOPIC.to_owned(),
                            QoS::AtMostOnce,
                        ));
                        Subscribed::DevicesAndDropCounter
                    } else {
                        Subscribed::Devices
                    };
                    match client.subscribe_many(filters).await {
                        Ok(()) => subscriptions.push_back(asked),
                        Err(e) => {
                            tracing::error!(link = %link, error = %e, "mqtt subscribe request failed");
                        }
                    }
                }
            }
            // The link counts as up only once the subscription exists: before that the
            // broker would drop alarms published to it.
            Ok(Event::Incoming(Packet::SubAck(ack))) => {
                let ok = |i: usize| {
                    matches!(
                        ack.return_codes.get(i),
                        Some(rumqttc::SubscribeReasonCode::Success(_))
                    )
                };
                let (granted, counter) = match subscriptions.pop_front() {
                    Some(Subscribed::DropCounter) => (true, ok(0)),
                    Some(Subscribed::Devices) => (ok(0), true),
                    _ => (ok(0), ok(1)),
                };
                if !counter {
                    tracing::warn!(link = %link, topic = guard::DROPPED_TOPIC, "broker refused the drop counter subscription: messages it drops cannot be detected (grant it in the ACL)");
                }
                if !granted {
                    tracing::error!(link = %link, codes = ?ack.return_codes, "broker refused the subscription");
                } else if !link_up {
                    link_up = true;
                    ingest.link_change(&link, true, "subscribed", ever_up).await;
                    ever_up = true;
                }
            }
            Ok(Event::Incoming(Packet::Publish(publish))) if publish.topic.starts_with("$SYS/") => {
                watch_broker(&ingest, &link, &mut drops, &publish);
            }
            Ok(Event::Incoming(Packet::Publish(publish))) => {
                let arrived = Instant::now();
                if let Some((unit, seq)) =
                    guard::uplink_seq(&cfg.topic_prefix, &publish.topic, &publish.payload)
                    && let Some((from, to)) = sequences.observe(&unit, seq)
                {
                    let (ingest2, link2) = (ingest.clone(), link.clone());
                    tokio::spawn(async move {
                        guard::sequence_gap(&ingest2, &link2, &unit, from, to).await;
                    });
                }
                // Waiting for a permit here stops reading from the broker when too many
                // messages are being written: back-pressure instead of an unbounded queue.
                let Ok(permit) = Arc::clone(&permits).acquire_owned().await else {
                    break;
                };
                let span = tracing::info_span!("mqtt_message", topic = %publish.topic, pkid = publish.pkid);
                let (ingest2, prefix, link2, msg, stop) = (
                    ingest.clone(),
                    cfg.topic_prefix.clone(),
                    link.clone(),
                    publish.clone(),
                    shutdown.clone(),
                );
                let written = tokio::spawn(
                    async move {
                        let outcome = write_durably(&ingest2, &prefix, &link2, &msg, &stop).await;
                        drop(permit);
                        outcome
                    }
                    .instrument(span),
                );
                let pending = Pending {
                    publish,
                    epoch: epoch.load(Ordering::Acquire),
                    arrived,
                    written,
                };
                if ack_tx.send(pending).is_err() {
                    break;
                }
            }
            Ok(_) => {}
            Err(e) => {
                // PUBACKs still owed belong to the dead connection; see `acknowledge`.
                epoch.fetch_add(1, Ordering::AcqRel);
                subscriptions.clear();
                if link_up {
                    link_up = false;
                    ingest
                        .link_change(&link, false, &format!("broker connection lost: {e}"), true)
                        .await;
                }
                tracing::warn!(link = %link, error = %e, retry_in = ?backoff, "mqtt connection error");
                tokio::select! {
                    () = shutdown.cancelled() => break,
                    () = tokio::time::sleep(backoff) => {}
                }
                backoff = (backoff * 2).min(Duration::from_secs(10));
            }
        }
    }
    // Let in-flight writes finish and their PUBACKs go out; anything left is redelivered.
    drop(ack_tx);
    let flushed = async {
        let _ = acker.await;
        // Keep polling so the queued PUBACKs are actually written to the socket.
        let _ = client.disconnect().await;
        drain(&mut eventloop).await;
    };
    if tokio::time::timeout(Duration::from_secs(5), flushed)
        .await
        .is_err()
    {
        tracing::warn!(link = %link, "mqtt shutdown timed out; unacknowledged messages will be redelivered");
    }
}

/// What a SUBSCRIBE asked for, to read its SUBACK.
#[derive(Debug, Clone, Copy)]
enum Subscribed {
    /// The devices' uplink filter, then the broker's drop counter.
    DevicesAndDropCounter,
    /// The drop counter alone (a resumed session already has the uplink filter).
    DropCounter,
    /// The uplink filter alone (`watch_broker_drops` off).
    Devices,
}

/// A `$SYS` message from the broker: the drop counter is watched; the rest is ignored.
/// Subscribed at QoS 0, so nothing here is owed a PUBACK.
fn watch_broker(ingest: &Ingest, link: &str, drops: &mut guard::DropWatch, publish: &Publish) {
    if publish.topic != guard::DROPPED_TOPIC {
        return;
    }
    if publish.qos != QoS::AtMostOnce {
        tracing::warn!(link, topic = %publish.topic, "broker statistics arrived above QoS 0");
    }
    let Some(total) = guard::parse_count(&publish.payload) else {
        tracing::warn!(link, "unreadable broker drop counter");
        return;
    };
    match drops.observe(total) {
        Some(new) => {
            let (ingest, link) = (ingest.clone(), link.to_owned());
            tokio::spawn(async move { guard::broker_dropped(&ingest, &link, total, new).await });
        }
        None => guard::broker_count(link, total),
    }
}

/// Sends PUBACKs in arrival order, each once its message is durable.
async fn acknowledge(
    client: AsyncClient,
    ingest: Ingest,
    epoch: Arc<AtomicU64>,
    mut rx: mpsc::UnboundedReceiver<Pending>,
) {
    while let Some(p) = rx.recv().await {
        let outcome = match p.written.await {
            Ok(Some(outcome)) => outcome,
            // Stopped before durable (shutdown) or the task failed: no PUBACK, so the broker
            // redelivers.
            Ok(None) => continue,
            Err(e) => {
                tracing::error!(error = %e, "mqtt message task failed; leaving it unacknowledged");
                continue;
            }
        };
        if p.epoch != epoch.load(Ordering::Acquire) {
            tracing::debug!(
                pkid = p.publish.pkid,
                "connection changed since delivery; the broker will redeliver"
            );
            continue;
        }
        match client.ack(&p.publish).await {
            Ok(()) => ingest.acked(Source::Mqtt, outcome, p.arrived),
            Err(e) => tracing::warn!(error = %e, "puback not sent; the broker will redeliver"),
        }
    }
}

async fn drain(eventloop: &mut EventLoop) {
    while eventloop.poll().await.is_ok() {}
}

/// Writes one message durably, retrying while the database is unavailable. `None` when
/// shutdown came first: the message stays unacknowledged and is redelivered.
async fn write_durably(
    ingest: &Ingest,
    prefix: &str,
    link: &str,
    publish: &Publish,
    shutdown: &CancellationToken,
) -> Option<Outcome> {
    let received_at = OffsetDateTime::now_utc();
    let mut delay = Duration::from_millis(100);
    loop {
        match write(ingest, prefix, link, publish, received_at).await {
            Ok(outcome) => return Some(outcome),
            Err(e) => {
                tracing::error!(link, error = %e, retry_in = ?delay, "mqtt message not durable yet; retrying before PUBACK");
                tokio::select! {
                    () = shutdown.cancelled() => return None,
                    () = tokio::time::sleep(delay) => {}
                }
                delay = (delay * 2).min(Duration::from_secs(5));
            }
        }
    }
}

async fn write(
    ingest: &Ingest,
    prefix: &str,
    link: &str,
    publish: &Publish,
    received_at: OffsetDateTime,
) -> Result<Outcome, WriteError> {
    let raw = publish.payload.to_vec();
    // Warden subscribes to `{prefix}/+/devices/+/up` only, so whatever arrives was
    // addressed to a device: a message that cannot be read (or whose topic does not name a
    // valid device) still reaches an operator, with what could be read of it.
    let (device, parsed) = match payload::parse_topic(prefix, &publish.topic) {
        Ok(device) => (
            Some(device),
            payload::parse_payload(device, &publish.payload),
        ),
        Err(e) => (payload::topic_device(prefix, &publish.topic), Err(e)),
    };
    let uplink = match parsed {
        Ok(u) => u,
        Err(e) => {
            let body = payload::salvage_body(&publish.payload);
            // A salvaged pass-through speaks for the panel it names, like a valid one; the
            // rest for the device of the topic (none when the topic names none).
            let (account, speaks) = match (&body, device) {
                (_, None) => (None, MQTT_PROTOCOLS),
                (Some(Body::ContactId { message, .. }), Some(_)) => {
                    (Some(message.account.to_string()), RECEIVER_PROTOCOLS)
                }
                (_, Some(d)) => (Some(d.to_owned()), MQTT_PROTOCOLS),
            };
            // A salvaged pass-through passes the same bridge check as a valid one.
            let not_a_bridge = match (&body, device) {
                (Some(b), Some(d)) => guard::bridge_problem(ingest, b, d)
                    .await
                    .map_err(|e| WriteError::Commit(format!("device lookup failed: {e}")))?,
                _ => None,
            };
            let salvaged = body.map(|body| {
                let frame =
                    serde_json::from_slice(&publish.payload).unwrap_or(serde_json::Value::Null);
                let d = Decoded::from_body(&body, frame);
                match not_a_bridge {
                    Some(p) => d.with_problem(p),
                    None => d,
                }
            });
            return ingest
                .unreadable(
                    Source::Mqtt,
                    link.to_owned(),
                    account,
                    speaks,
                    evidence(publish, raw),
                    e.reason(),
                    reason(publish, &e),
                    received_at,
                    salvaged,
                )
                .await;
        }
    };
    if let Body::Presence(p) = &uplink.body {
        metrics::counter!(m::DEVICE_PRESENCE, "state" => if matches!(p, payload::Presence::Online) { "online" } else { "offline" })
            .increment(1);
    }
    // A bridge's Contact ID message names the panel by its account, registered as a
    // receiver protocol; anything else speaks for the device that published.
    let (account, speaks) = match &uplink.body {
        Body::ContactId { message, .. } => (message.account.to_string(), RECEIVER_PROTOCOLS),
        _ => (uplink.device_id.clone(), MQTT_PROTOCOLS),
    };
    let dedupe_key = uplink
        .msg_id
        .as_ref()
        .map(|id| format!("mqtt:{}:{id}", uplink.device_id));
    let decoded = match guard::bridge_problem(ingest, &uplink.body, &uplink.device_id).await {
        Ok(None) => Decoded::from_uplink(&uplink),
        Ok(Some(problem)) => Decoded::from_uplink(&uplink).with_problem(problem),
        Err(e) => return Err(WriteError::Commit(format!("device lookup failed: {e}"))),
    };
    ingest
        .signal(Arrival {
            source: Source::Mqtt,
            link_id: link.to_owned(),
            account: Some(account),
            speaks,
            raw,
            decoded,
            received_at,
            dedupe_key,
        })
        .await
}

/// Quarantined MQTT input keeps its topic with the payload: `topic\npayload`.
fn evidence(publish: &Publish, payload: Vec<u8>) -> Vec<u8> {
    let mut out = Vec::with_capacity(publish.topic.len() + 1 + payload.len());
    out.extend_from_slice(publish.topic.as_bytes());
    out.push(b'\n');
    out.extend(payload);
    out
}

fn reason(publish: &Publish, e: &PayloadError) -> String {
    format!("{e} (topic {:?})", publish.topic)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_generated_client_id_is_random_and_kept_across_restarts() {
        let a = tempfile::tempdir().expect("dir");
        let b = tempfile::tempdir().expect("dir");
        let first = persisted_client_id(a.path()).expect("id");
        assert!(first.starts_with("warden-") && first.len() == 23, "{first}");
        assert_eq!(persisted_client_id(a.path()).expect("id"), first);
        assert_ne!(persisted_client_id(b.path()).expect("id"), first);
        std::fs::write(a.path().join(CLIENT_ID_FILE), "bad id\n").expect("write");
        assert!(persisted_client_id(a.path()).is_err());
    }
}
