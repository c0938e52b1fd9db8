//! What the MQTT path itself can lose or forge, kept apart from the message pipeline:
//! the broker's own count of dropped messages, gaps in a unit's sequence numbers, and which
//! unit may pass a panel's Contact ID through (bridges).
//!
//! Each finding becomes a signal Warden raises itself (`Decoded::path_fault`), stored and
//! triaged like any other, so a person sees it as a technical incident.

use std::collections::HashMap;

use time::OffsetDateTime;
use warden_core::{Decoded, Problem};
use warden_protocol::mqtt::Body;
use warden_store::{DeviceProtocol, Source, StoreError};
use warden_telemetry as m;

use crate::Ingest;
use crate::record::Arrival;

/// Mosquitto's running count of messages it dropped (queue or in-flight limits), published
/// every `sys_interval` as a retained decimal number.
pub(super) const DROPPED_TOPIC: &str = "$SYS/broker/publish/messages/dropped";

/// The broker's drop counter as this process last saw it.
#[derive(Debug, Default)]
pub(super) struct DropWatch {
    last: Option<u64>,
}

impl DropWatch {
    /// Messages newly dropped since the last report. At the first report of this process
    /// the whole count is new: drops while Warden was away (its session queue overflowing)
    /// are the ones that matter most, and nothing tells them apart from older ones. A count
    /// that did not grow reports nothing; one that went back means the broker restarted.
    pub(super) fn observe(&mut self, total: u64) -> Option<u64> {
        match self.last.replace(total) {
            None => (total > 0).then_some(total),
            Some(before) if total > before => Some(total - before),
            Some(_) => None,
        }
    }
}

/// The counter's payload: a decimal number (Mosquitto sends it as text).
pub(super) fn parse_count(payload: &[u8]) -> Option<u64> {
    std::str::from_utf8(payload).ok()?.trim().parse().ok()
}

/// Logs, sets the gauge and raises a technical incident on the link for `new` messages the
/// broker dropped (`total` since it started).
pub(super) async fn broker_dropped(ingest: &Ingest, link: &str, total: u64, new: u64) {
    broker_count(link, total);
    tracing::error!(
        link,
        new,
        total,
        "mqtt broker dropped messages: alarms may have been lost"
    );
    raise(
        ingest,
        link,
        None,
        None,
        &format!(
            "broker dropped {new} messages ({total} since it started): alarms may have been lost before reaching Warden"
        ),
    )
    .await;
}

/// Sets the gauge to the broker's count.
#[allow(clippy::cast_precision_loss)] // Exact below 2^53 messages.
pub(super) fn broker_count(link: &str, total: u64) {
    metrics::gauge!(m::MQTT_BROKER_DROPPED, "link" => link.to_owned()).set(total as f64);
}

/// The broker did not keep Warden's session across a reconnection: whatever was queued for
/// it is gone.
pub(super) async fn session_lost(ingest: &Ingest, link: &str) {
    tracing::error!(
        link,
        "mqtt broker did not keep warden's session: messages queued meanwhile are lost (broker restarted without persistence?)"
    );
    raise(
        ingest,
        link,
        None,
        None,
        "broker lost Warden's session on reconnection: messages queued for Warden meanwhile are lost (broker restarted without persistence?)",
    )
    .await;
}

/// Stores and triages a path fault Warden found; on `device` when given, else on the link.
async fn raise(
    ingest: &Ingest,
    link: &str,
    account: Option<String>,
    device: Option<i64>,
    detail: &str,
) {
    let a = Arrival {
        source: Source::Internal,
        link_id: link.to_owned(),
        account,
        speaks: &[],
        raw: Vec::new(),
        decoded: Decoded::path_fault(detail),
        received_at: OffsetDateTime::now_utc(),
        dedupe_key: None,
    };
    if let Err(e) = ingest.internal(a, device).await {
        tracing::error!(link, error = %e, detail, "could not record an mqtt path fault");
    }
}

/// Why a `contact_id` pass-through may not speak for the panel it names, if so: only the
/// MQTT unit registered as that panel's bridge may. `None` also when the panel is not
/// registered as a Contact ID or SIA panel: ingest then marks the signal
/// `unknown_account` or `protocol_mismatch` itself. Any other body speaks for its own
/// topic's unit and needs no check here.
pub(super) async fn bridge_problem(
    ingest: &Ingest,
    body: &Body,
    publisher: &str,
) -> Result<Option<Problem>, StoreError> {
    let Body::ContactId { message, .. } = body else {
        return Ok(None);
    };
    let account = message.account.to_string();
    let Some(panel) = ingest.devices.resolve(&account).await? else {
        return Ok(None);
    };
    if !matches!(
        panel.protocol,
        DeviceProtocol::ContactId | DeviceProtocol::Sia
    ) {
        return Ok(None);
    }
    let unit = ingest.devices.resolve(publisher).await?;
    let is_bridge = matches!(
        (unit, panel.bridge),
        (Some(unit), Some(bridge)) if unit.protocol == DeviceProtocol::Mqtt && unit.id == bridge
    );
    Ok((!is_bridge).then(|| Problem::NotABridge {
        account,
        publisher: publisher.to_owned(),
    }))
}

/// Most units whose last sequence number is remembered; past it the memory starts afresh
/// (the next message of each unit is then a first sighting, never a false gap).
const MAX_TRACKED_UNITS: usize = 200_000;

/// The last sequence number seen from each unit, in memory only.
#[derive(Debug, Default)]
pub(super) struct SeqTracker {
    last: HashMap<String, u32>,
}

impl SeqTracker {
    /// `Some((last, seq))` when `seq` skips numbers after the last one seen from `unit`.
    /// Not a gap: a first sighting, a repeat (a redelivery), an older number (a late
    /// redelivery), or a restart of the counter (0 or 1 after a higher number).
    pub(super) fn observe(&mut self, unit: &str, seq: u32) -> Option<(u32, u32)> {
        if !self.last.contains_key(unit) && self.last.len() >= MAX_TRACKED_UNITS {
            self.last.clear();
        }
        let Some(last) = self.last.get_mut(unit) else {
            self.last.insert(unit.to_owned(), seq);
            return None;
        };
        let before = *last;
        if seq <= 1 && before > seq {
            *last = seq;
            return None;
        }
        if seq <= before {
            return None;
        }
        *last = seq;
        (seq - before > 1).then_some((before, seq))
    }
}

/// The unit and sequence number of an uplink that carries one. Parsed apart from the
/// message's own write (which parses it again): this runs in the poll loop, in arrival
/// order, so gaps are judged in the order the broker delivered. A payload is at most 4 KiB.
pub(super) fn uplink_seq(prefix: &str, topic: &str, payload: &[u8]) -> Option<(String, u32)> {
    let unit = warden_protocol::mqtt::parse_topic(prefix, topic).ok()?;
    let uplink = warden_protocol::mqtt::parse_payload(unit, payload).ok()?;
    Some((uplink.device_id, uplink.payload.seq?))
}

/// Raises "messages lost between unit and centre" for a registered MQTT unit. A gap on the
/// topic of an unregistered unit is only logged: it has no device to fault, and its own
/// signals are already incidents.
pub(super) async fn sequence_gap(ingest: &Ingest, link: &str, unit: &str, from: u32, to: u32) {
    metrics::counter!(m::MQTT_SEQUENCE_GAPS).increment(1);
    tracing::warn!(
        link,
        unit,
        from,
        to,
        "mqtt sequence gap: messages lost between unit and centre"
    );
    let device = match ingest.devices.resolve(unit).await {
        Ok(Some(d)) if crate::record::MQTT_PROTOCOLS.contains(&d.protocol) => d.id,
        Ok(_) => return,
        Err(e) => {
            tracing::error!(link, unit, error = %e, "device lookup failed; sequence gap not recorded");
            return;
        }
    };
    raise(
        ingest,
        link,
        Some(unit.to_owned()),
        Some(device),
        &format!("messages lost between unit and centre (seq {from} → {to})"),
    )
    .await;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_drop_counter_reports_what_is_new_and_forgives_a_broker_restart() {
        let mut w = DropWatch::default();
        assert_eq!(w.observe(0), None);
        assert_eq!(w.observe(0), None);
        assert_eq!(w.observe(20), Some(20));
        assert_eq!(w.observe(20), None);
        assert_eq!(w.observe(25), Some(5));
        assert_eq!(w.observe(3), None, "broker restarted");
        assert_eq!(w.observe(4), Some(1));
        let mut fresh = DropWatch::default();
        assert_eq!(
            fresh.observe(7),
            Some(7),
            "drops before the first sighting count"
        );
        assert_eq!(parse_count(b" 42\n"), Some(42));
        assert_eq!(parse_count(b"x"), None);
    }

    #[test]
    fn a_skipped_sequence_number_is_a_gap_and_a_restarted_counter_is_not() {
        let mut t = SeqTracker::default();
        assert_eq!(t.observe("u", 5), None, "first sighting");
        assert_eq!(t.observe("u", 6), None);
        assert_eq!(t.observe("u", 6), None, "redelivery");
        assert_eq!(t.observe("u", 9), Some((6, 9)));
        assert_eq!(t.observe("u", 8), None, "late redelivery");
        assert_eq!(t.observe("u", 10), None);
        assert_eq!(t.observe("u", 0), None, "counter restarted at 0");
        assert_eq!(t.observe("u", 1), None);
        assert_eq!(t.observe("u", 3), Some((1, 3)));
        assert_eq!(t.observe("u", 1), None, "counter restarted at 1");
        assert_eq!(t.observe("v", 100), None, "units are independent");
        assert_eq!(t.observe("u", 2), None);
        assert_eq!(t.observe("u", u32::MAX), Some((2, u32::MAX)));
        assert_eq!(t.observe("u", 0), None, "wrapped");
    }
}
