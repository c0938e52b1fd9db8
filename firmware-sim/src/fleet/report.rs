//! What a fleet run published and what the broker acknowledged.

#[allow(clippy::wildcard_imports)]
use super::*;

/// One message the fleet published or tried to.
#[derive(Debug, Clone)]
pub struct MessageRecord {
    pub device: Arc<str>,
    /// The payload's `msg_id`; for raw payloads a label `raw-{n}` (they may carry none).
    pub msg_id: Arc<str>,
    /// `presence`, `heartbeat`, an alarm kind (`pendant`, `mains_fail`, ...) or `raw`.
    pub kind: &'static str,
    /// False for deliberately bad payloads, which Warden should quarantine, not store.
    pub valid: bool,
    pub queued_at: Instant,
    /// The first time rumqttc wrote it to the socket.
    pub published_at: Option<Instant>,
    pub pubacked_at: Option<Instant>,
    /// Times it was handed to rumqttc (more than 1 after a reconnect).
    pub publishes: u32,
}

impl MessageRecord {
    /// First write → PUBACK. The write time is when rumqttc's event loop reported it, which
    /// under CPU pressure can lag the real write, so this is a lower bound.
    pub fn latency(&self) -> Option<Duration> {
        Some(
            self.pubacked_at?
                .saturating_duration_since(self.published_at?),
        )
    }

    /// Creation → PUBACK: client-side queueing included, an upper bound on what the broker
    /// and Warden added.
    pub fn queued_latency(&self) -> Option<Duration> {
        Some(self.pubacked_at?.saturating_duration_since(self.queued_at))
    }
}

/// Counts for one message kind.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct KindCount {
    pub published: u64,
    pub pubacked: u64,
}

/// What the fleet did.
#[derive(Debug, Clone, Serialize)]
pub struct FleetReport {
    pub devices: usize,
    pub connections: usize,
    /// Messages the units created (handed, or waiting to be handed, to MQTT).
    pub published: u64,
    pub pubacked: u64,
    pub unacked: u64,
    /// Messages published again after a reconnect.
    pub republished: u64,
    /// Deliberately bad payloads among `published`.
    pub invalid: u64,
    pub by_kind: BTreeMap<&'static str, KindCount>,
    /// First write → PUBACK.
    pub latencies: LatencySummary,
    /// Creation → PUBACK, client-side queueing included.
    pub queued_latencies: LatencySummary,
    #[serde(skip)]
    pub messages: Vec<MessageRecord>,
}

impl FleetReport {
    /// Whether every message was acknowledged (PUBACK).
    pub fn all_acknowledged(&self) -> bool {
        self.unacked == 0
    }

    /// `(device, msg_id)` of every acknowledged message with a valid payload: exactly the
    /// messages Warden must have stored.
    pub fn pubacked_ids(&self) -> Vec<(String, String)> {
        self.messages
            .iter()
            .filter(|m| m.valid && m.pubacked_at.is_some())
            .map(|m| (m.device.to_string(), m.msg_id.to_string()))
            .collect()
    }

    /// Every publish→PUBACK latency.
    pub fn latency_samples(&self) -> Vec<Duration> {
        self.messages
            .iter()
            .filter_map(MessageRecord::latency)
            .collect()
    }

    pub(super) fn from_records(
        devices: usize,
        connections: usize,
        messages: Vec<MessageRecord>,
    ) -> Self {
        let mut by_kind: BTreeMap<&'static str, KindCount> = BTreeMap::new();
        let (mut pubacked, mut republished, mut invalid) = (0, 0, 0);
        for m in &messages {
            let k = by_kind.entry(m.kind).or_default();
            k.published += 1;
            if m.pubacked_at.is_some() {
                k.pubacked += 1;
                pubacked += 1;
            }
            republished += u64::from(m.publishes.saturating_sub(1));
            invalid += u64::from(!m.valid);
        }
        let published = messages.len() as u64;
        let samples: Vec<Duration> = messages.iter().filter_map(MessageRecord::latency).collect();
        let queued: Vec<Duration> = messages
            .iter()
            .filter_map(MessageRecord::queued_latency)
            .collect();
        Self {
            devices,
            connections,
            published,
            pubacked,
            unacked: published - pubacked,
            republished,
            invalid,
            by_kind,
            latencies: LatencySummary::from_samples(&samples),
            queued_latencies: LatencySummary::from_samples(&queued),
            messages,
        }
    }
}
