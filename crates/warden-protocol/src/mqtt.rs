//! Warden's MQTT uplink: topic layout and the versioned JSON payload.
//!
//! Topic: `{prefix}/v1/devices/{device_id}/up`, QoS 1, one JSON object per message. The
//! published JSON Schema is `deploy/schema/warden-mqtt-v1.schema.json`; the tests check that
//! it accepts and rejects the same payloads as this module.
//!
//! A payload carries the schema version `v` (1), a message id `msg_id` unique per device
//! (the key for recognising QoS 1 redeliveries), an optional device clock `sent_at`, an
//! optional per-device sequence number `seq` (gaps reveal lost messages), and
//! exactly one body: `alarm`, `heartbeat`, `battery`, `signal`, `contact_id` (pass-through
//! from receiver bridges) or `presence` (online/offline, used as the MQTT last will; the only
//! body that may omit `msg_id`, since a will is sent again unchanged).

use serde::{Deserialize, Serialize};
use thiserror::Error;

use crate::contact_id::{ContactIdError, ContactIdMessage};

/// The schema version this module speaks.
pub const VERSION: u64 = 1;
/// Largest payload accepted; anything bigger is quarantined unparsed.
pub const MAX_PAYLOAD: usize = 4096;
/// Longest device id or message id.
pub const MAX_ID: usize = 64;

/// Why an MQTT message was rejected.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum PayloadError {
    #[error("payload of {len} bytes exceeds the {MAX_PAYLOAD}-byte limit")]
    Oversized { len: usize },
    #[error("invalid JSON: {0}")]
    Json(String),
    #[error("missing schema version field \"v\"")]
    MissingVersion,
    #[error("unknown schema version {0} (this receiver speaks v{VERSION})")]
    UnknownVersion(String),
    #[error("invalid v{VERSION} payload: {0}")]
    Schema(String),
    #[error(
        "expected exactly one of alarm, heartbeat, battery, signal, contact_id, presence; found {0}"
    )]
    Body(usize),
    #[error("missing msg_id (required for every body but presence)")]
    MissingMsgId,
    #[error("bad {what} {value:?}: 1-{MAX_ID} characters of A-Z a-z 0-9 . _ -")]
    Id { what: &'static str, value: String },
    #[error("contact_id pass-through: {0}")]
    ContactId(#[from] ContactIdError),
    #[error("topic {0:?} is not {{prefix}}/v1/devices/{{device_id}}/up")]
    Topic(String),
}

impl PayloadError {
    /// A short, bounded reason code for metrics labels and the quarantine table.
    pub fn reason(&self) -> &'static str {
        match self {
            PayloadError::Oversized { .. } => "oversized",
            PayloadError::Json(_) => "bad_json",
            PayloadError::MissingVersion | PayloadError::UnknownVersion(_) => "unknown_version",
            PayloadError::Schema(_)
            | PayloadError::Body(_)
            | PayloadError::MissingMsgId
            | PayloadError::Id { .. } => "schema",
            PayloadError::ContactId(_) => "bad_contact_id",
            PayloadError::Topic(_) => "bad_topic",
        }
    }
}

/// What an alarm body reports. The names are the telecare vocabulary, not a panel's.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AlarmKind {
    Pendant,
    Fall,
    Fire,
    Smoke,
    Heat,
    Co,
    Panic,
    Medical,
    Inactivity,
    Flood,
    DoorExit,
    TemperatureHigh,
    TemperatureLow,
    Tamper,
    MainsFail,
    LowBattery,
    CommsFault,
    Test,
    Cancel,
}

impl AlarmKind {
    pub const ALL: [AlarmKind; 19] = [
        AlarmKind::Pendant,
        AlarmKind::Fall,
        AlarmKind::Fire,
        AlarmKind::Smoke,
        AlarmKind::Heat,
        AlarmKind::Co,
        AlarmKind::Panic,
        AlarmKind::Medical,
        AlarmKind::Inactivity,
        AlarmKind::Flood,
        AlarmKind::DoorExit,
        AlarmKind::TemperatureHigh,
        AlarmKind::TemperatureLow,
        AlarmKind::Tamper,
        AlarmKind::MainsFail,
        AlarmKind::LowBattery,
        AlarmKind::CommsFault,
        AlarmKind::Test,
        AlarmKind::Cancel,
    ];
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Alarm {
    pub kind: AlarmKind,
    /// True when the condition has cleared (restore).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub restore: bool,
    /// Sensor or zone within the unit.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub zone: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Heartbeat {
    /// The interval the device promises between heartbeats, in seconds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub interval_s: Option<u32>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Battery {
    pub percent: u8,
    #[serde(default)]
    pub low: bool,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Signal {
    pub rssi_dbm: i16,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ContactIdPassThrough {
    /// The 16-digit Contact ID message as the bridge received it.
    pub message: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub receiver: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub line: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Presence {
    Online,
    Offline,
}

/// A v1 payload exactly as on the wire.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Payload {
    pub v: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub msg_id: Option<String>,
    /// The device's own clock, RFC 3339, informational only.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sent_at: Option<String>,
    /// The unit's message counter, one more for each message it sends (a redelivery keeps
    /// its number). A jump of more than one means messages were lost between the unit and
    /// the centre; a restart at 0 or 1 (the unit rebooted) is not a loss. Optional.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub seq: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub alarm: Option<Alarm>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub heartbeat: Option<Heartbeat>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub battery: Option<Battery>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub signal: Option<Signal>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub contact_id: Option<ContactIdPassThrough>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub presence: Option<Presence>,
}

/// The one body of a validated payload.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Body {
    Alarm(Alarm),
    Heartbeat(Heartbeat),
    Battery(Battery),
    Signal(Signal),
    ContactId {
        message: ContactIdMessage,
        receiver: Option<String>,
        line: Option<String>,
    },
    Presence(Presence),
}

impl Body {
    /// `heartbeat` for liveness bodies, `presence` for online/offline, `event` otherwise.
    pub fn kind(&self) -> &'static str {
        match self {
            Body::Heartbeat(_) => "heartbeat",
            Body::Presence(_) => "presence",
            _ => "event",
        }
    }
}

/// A decoded, validated uplink message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Uplink {
    pub device_id: String,
    pub msg_id: Option<String>,
    pub sent_at: Option<String>,
    pub body: Body,
    /// The payload as parsed, for storing as the decoded form.
    pub payload: Payload,
}

fn valid_id(s: &str) -> bool {
    (1..=MAX_ID).contains(&s.len())
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
}

/// Extracts the device id from `{prefix}/v1/devices/{device_id}/up`.
pub fn parse_topic<'a>(prefix: &str, topic: &'a str) -> Result<&'a str, PayloadError> {
    let bad = || PayloadError::Topic(topic.chars().take(200).collect());
    let rest = topic
        .strip_prefix(prefix)
        .and_then(|r| r.strip_prefix('/'))
        .ok_or_else(bad)?;
    let mut parts = rest.split('/');
    match (
        parts.next(),
        parts.next(),
        parts.next(),
        parts.next(),
        parts.next(),
    ) {
        (Some("v1"), Some("devices"), Some(id), Some("up"), None) if valid_id(id) => Ok(id),
        (Some(v), Some("devices"), Some(_), Some("up"), None) if v != "v1" => {
            Err(PayloadError::UnknownVersion(format!("{v} (in topic)")))
        }
        _ => Err(bad()),
    }
}

/// The device a topic of any version names (`{prefix}/{version}/devices/{device_id}/up`),
/// when its id is valid: a message whose topic or payload cannot be read is still kept
/// with the device it was addressed to.
pub fn topic_device<'a>(prefix: &str, topic: &'a str) -> Option<&'a str> {
    let rest = topic.strip_prefix(prefix)?.strip_prefix('/')?;
    let mut parts = rest.split('/');
    match (
        parts.next(),
        parts.next(),
        parts.next(),
        parts.next(),
        parts.next(),
    ) {
        (Some(_), Some("devices"), Some(id), Some("up"), None) if valid_id(id) => Some(id),
        _ => None,
    }
}

/// The topic a device publishes on.
pub fn topic(prefix: &str, device_id: &str) -> String {
    format!("{prefix}/v1/devices/{device_id}/up")
}

/// The one readable body of a payload that failed validation for its envelope (no or a
/// bad `msg_id`, an unknown version, an unknown top-level field, a bad device id), so an
/// alarm that is perfectly readable is not reduced to "unreadable" by a firmware that adds a
/// field. `None` unless exactly one body key is present and parses.
pub fn salvage_body(bytes: &[u8]) -> Option<Body> {
    if bytes.len() > MAX_PAYLOAD {
        return None;
    }
    let value: serde_json::Value = serde_json::from_slice(bytes).ok()?;
    let obj = value.as_object()?;
    let take = |key: &str| obj.get(key).cloned();
    let mut found = Vec::new();
    if let Some(v) = take("alarm") {
        found.push(serde_json::from_value(v).ok().map(Body::Alarm));
    }
    if let Some(v) = take("heartbeat") {
        found.push(serde_json::from_value(v).ok().map(Body::Heartbeat));
    }
    if let Some(v) = take("battery") {
        found.push(
            serde_json::from_value::<Battery>(v)
                .ok()
                .filter(|b| b.percent <= 100)
                .map(Body::Battery),
        );
    }
    if let Some(v) = take("signal") {
        found.push(serde_json::from_value(v).ok().map(Body::Signal));
    }
    if let Some(v) = take("contact_id") {
        found.push(
            serde_json::from_value::<ContactIdPassThrough>(v)
                .ok()
                .and_then(|c| {
                    Some(Body::ContactId {
                        message: ContactIdMessage::parse(c.message.as_bytes()).ok()?,
                        receiver: c.receiver,
                        line: c.line,
                    })
                }),
        );
    }
    if let Some(v) = take("presence") {
        found.push(serde_json::from_value(v).ok().map(Body::Presence));
    }
    match found.as_slice() {
        [Some(body)] => Some(body.clone()),
        _ => None,
    }
}

/// Validates one payload from `device_id`.
pub fn parse_payload(device_id: &str, bytes: &[u8]) -> Result<Uplink, PayloadError> {
    if bytes.len() > MAX_PAYLOAD {
        return Err(PayloadError::Oversized { len: bytes.len() });
    }
    // Read the version first, loosely, so a v2 payload is reported as such and not as a
    // schema error against v1.
    let value: serde_json::Value =
        serde_json::from_slice(bytes).map_err(|e| PayloadError::Json(e.to_string()))?;
    let Some(obj) = value.as_object() else {
        return Err(PayloadError::Schema("payload is not a JSON object".into()));
    };
    match obj.get("v") {
        None => return Err(PayloadError::MissingVersion),
        Some(v) if v.as_u64() == Some(VERSION) => {}
        Some(v) => return Err(PayloadError::UnknownVersion(v.to_string())),
    }
    let payload: Payload =
        serde_json::from_value(value).map_err(|e| PayloadError::Schema(e.to_string()))?;
    if !valid_id(device_id) {
        return Err(PayloadError::Id {
            what: "device id",
            value: device_id.into(),
        });
    }
    let bodies = [
        payload.alarm.is_some(),
        payload.heartbeat.is_some(),
        payload.battery.is_some(),
        payload.signal.is_some(),
        payload.contact_id.is_some(),
        payload.presence.is_some(),
    ];
    let count = bodies.iter().filter(|b| **b).count();
    if count != 1 {
        return Err(PayloadError::Body(count));
    }
    let body = if let Some(a) = &payload.alarm {
        Body::Alarm(a.clone())
    } else if let Some(h) = &payload.heartbeat {
        Body::Heartbeat(h.clone())
    } else if let Some(b) = &payload.battery {
        if b.percent > 100 {
            return Err(PayloadError::Schema(format!(
                "battery.percent {} is over 100",
                b.percent
            )));
        }
        Body::Battery(b.clone())
    } else if let Some(s) = &payload.signal {
        Body::Signal(s.clone())
    } else if let Some(c) = &payload.contact_id {
        Body::ContactId {
            message: ContactIdMessage::parse(c.message.as_bytes())?,
            receiver: c.receiver.clone(),
            line: c.line.clone(),
        }
    } else if let Some(p) = payload.presence {
        Body::Presence(p)
    } else {
        return Err(PayloadError::Body(0));
    };
    match &payload.msg_id {
        Some(id) if !valid_id(id) => {
            return Err(PayloadError::Id {
                what: "msg_id",
                value: id.chars().take(80).collect(),
            });
        }
        None if !matches!(body, Body::Presence(_)) => return Err(PayloadError::MissingMsgId),
        _ => {}
    }
    Ok(Uplink {
        device_id: device_id.to_owned(),
        msg_id: payload.msg_id.clone(),
        sent_at: payload.sent_at.clone(),
        body,
        payload,
    })
}

/// Serialises a payload (for simulators and tests).
pub fn encode_payload(p: &Payload) -> Vec<u8> {
    serde_json::to_vec(p).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn topic_names_the_device() {
        assert_eq!(
            parse_topic("warden", "warden/v1/devices/unit-42/up"),
            Ok("unit-42")
        );
        assert!(matches!(
            parse_topic("warden", "warden/v2/devices/unit-42/up"),
            Err(PayloadError::UnknownVersion(_))
        ));
        assert!(matches!(
            parse_topic("warden", "warden/v1/devices/a+b/up"),
            Err(PayloadError::Topic(_))
        ));
        assert!(matches!(
            parse_topic("warden", "other/v1/devices/x/up"),
            Err(PayloadError::Topic(_))
        ));
    }

    #[test]
    fn a_pendant_press_parses() {
        let u = parse_payload(
            "unit-1",
            br#"{"v":1,"msg_id":"m1","alarm":{"kind":"pendant"}}"#,
        )
        .expect("valid");
        assert_eq!(
            u.body,
            Body::Alarm(Alarm {
                kind: AlarmKind::Pendant,
                restore: false,
                zone: None
            })
        );
        assert_eq!(u.body.kind(), "event");
    }

    #[test]
    fn each_rejection_names_its_reason() {
        let cases: [(&[u8], &str); 7] = [
            (b"{not json", "bad_json"),
            (br#"{"msg_id":"m","heartbeat":{}}"#, "unknown_version"),
            (br#"{"v":2,"msg_id":"m","heartbeat":{}}"#, "unknown_version"),
            (br#"{"v":1,"msg_id":"m"}"#, "schema"),
            (br#"{"v":1,"heartbeat":{}}"#, "schema"),
            (
                br#"{"v":1,"msg_id":"m","alarm":{"kind":"pendant","colour":"red"}}"#,
                "schema",
            ),
            (
                br#"{"v":1,"msg_id":"m","contact_id":{"message":"1234181131010150"}}"#,
                "bad_contact_id",
            ),
        ];
        for (payload, reason) in cases {
            let e = parse_payload("d", payload).expect_err(&String::from_utf8_lossy(payload));
            assert_eq!(e.reason(), reason, "{e}");
        }
        let big = vec![b' '; MAX_PAYLOAD + 1];
        assert_eq!(
            parse_payload("d", &big).map_err(|e| e.reason()),
            Err("oversized")
        );
    }

    #[test]
    fn presence_may_omit_the_message_id() {
        let u = parse_payload("d", br#"{"v":1,"presence":"offline"}"#).expect("last will");
        assert_eq!(u.body, Body::Presence(Presence::Offline));
    }
}
