//! What the MQTT path itself can lose or forge, kept apart from the message pipeline:
//! the broker's own count of dropped messages, gaps in a unit's sequence numbers, and which
//! unit may pass a panel's Contact ID through (bridges).
//!
//! Each finding becomes a signal Warden raises itself (`Decoded::path_fault`), stored and
//! triaged like any other, so a person sees it as a technical incident.

use time::OffsetDateTime;
use warden_core::{Decoded, Problem};
use warden_protocol::mqtt::{Body, Uplink};
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
    uplink: &Uplink,
) -> Result<Option<Problem>, StoreError> {
    let Body::ContactId { message, .. } = &uplink.body else {
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
    let publisher = ingest.devices.resolve(&uplink.device_id).await?;
    let is_bridge = matches!(
        (publisher, panel.bridge),
        (Some(unit), Some(bridge)) if unit.protocol == DeviceProtocol::Mqtt && unit.id == bridge
    );
    Ok((!is_bridge).then(|| Problem::NotABridge {
        account,
        publisher: uplink.device_id.clone(),
    }))
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
}
