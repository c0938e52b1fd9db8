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

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use rumqttc::{AsyncClient, Event, EventLoop, MqttOptions, Packet, Publish, QoS};
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;
use tokio::sync::{Semaphore, mpsc};
use tokio_util::sync::CancellationToken;
use tracing::Instrument as _;
use warden_protocol::mqtt::{self as payload, Body, PayloadError};
use warden_store::Source;
use warden_telemetry as m;

use crate::Ingest;
use crate::record::{Arrival, MQTT_PROTOCOLS, Outcome, RECEIVER_PROTOCOLS};
use warden_core::Decoded;

/// MQTT connection settings.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MqttConfig {
    #[serde(default = "default_host")]
    pub host: String,
    #[serde(default = "default_port")]
    pub port: u16,
    /// Must be stable across restarts: the broker keeps the session (and the messages not
    /// yet PUBACKed) under this id.
    #[serde(default = "default_client_id")]
    pub client_id: String,
    #[serde(default = "default_prefix")]
    pub topic_prefix: String,
    #[serde(default = "default_keep_alive", with = "humantime_serde")]
    pub keep_alive: Duration,
    /// Messages being written at once. The broker's own in-flight limit (Mosquitto's
    /// `max_inflight_messages`, 20 by default) also bounds this.
    #[serde(default = "default_inflight")]
    pub max_inflight: u16,
}

fn default_host() -> String {
    "127.0.0.1".into()
}
fn default_port() -> u16 {
    1883
}
fn default_client_id() -> String {
    "warden-ingest".into()
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
            client_id: default_client_id(),
            topic_prefix: default_prefix(),
            keep_alive: default_keep_alive(),
            max_inflight: default_inflight(),
        }
    }
}

impl MqttConfig {
    pub fn validate(&self) -> Vec<String> {
        let mut errors = Vec::new();
        if self.client_id.is_empty() || self.client_id.len() > 23 * 4 {
            errors.push(format!(
                "mqtt.client_id {:?}: must be 1-92 characters",
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
        errors
    }

    pub fn link_id(&self) -> String {
        format!("mqtt:{}:{}", self.host, self.port)
    }

    fn options(&self) -> MqttOptions {
        let mut o = MqttOptions::new(&self.client_id, &self.host, self.port);
        o.set_clean_session(false);
        o.set_manual_acks(true);
        o.set_keep_alive(self.keep_alive);
        o.set_inflight(self.max_inflight);
        // 1 MiB: far above payload::MAX_PAYLOAD, see the module comment.
        o.set_max_packet_size(1 << 20, 1 << 20);
        o
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
    let (client, mut eventloop) = AsyncClient::new(cfg.options(), inflight * 8 + 64);
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
                } else if let Err(e) = client.subscribe(&filter, QoS::AtLeastOnce).await {
                    tracing::error!(link = %link, error = %e, "mqtt subscribe request failed");
                }
            }
            // The link counts as up only once the subscription exists: before that the
            // broker would drop alarms published to it.
            Ok(Event::Incoming(Packet::SubAck(ack))) => {
                let granted = ack
                    .return_codes
                    .iter()
                    .all(|c| matches!(c, rumqttc::SubscribeReasonCode::Success(_)));
                if !granted {
                    tracing::error!(link = %link, codes = ?ack.return_codes, "broker refused the subscription");
                } else if !link_up {
                    link_up = true;
                    ingest.link_change(&link, true, "subscribed", ever_up).await;
                    ever_up = true;
                }
            }
            Ok(Event::Incoming(Packet::Publish(publish))) => {
                let arrived = Instant::now();
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
) -> Result<Outcome, warden_store::WriteError> {
    let raw = publish.payload.to_vec();
    let device = match payload::parse_topic(prefix, &publish.topic) {
        Ok(device) => device,
        // Not addressed to any device: noise to keep, not a signal to triage.
        Err(e) => {
            return ingest
                .reject(
                    Source::Mqtt,
                    link.to_owned(),
                    evidence(publish, raw),
                    e.reason(),
                    reason(publish, &e),
                    received_at,
                )
                .await;
        }
    };
    let uplink = match payload::parse_payload(device, &publish.payload) {
        Ok(u) => u,
        // From a device topic but unreadable (bad JSON, unknown version, oversized): it may
        // be an alarm in a format this version does not read, so it reaches an operator.
        Err(e) => {
            return ingest
                .unreadable(
                    Source::Mqtt,
                    link.to_owned(),
                    Some(device.to_owned()),
                    MQTT_PROTOCOLS,
                    evidence(publish, raw),
                    e.reason(),
                    reason(publish, &e),
                    received_at,
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
    ingest
        .signal(Arrival {
            source: Source::Mqtt,
            link_id: link.to_owned(),
            account: Some(account),
            speaks,
            raw,
            decoded: Decoded::from_uplink(&uplink),
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
