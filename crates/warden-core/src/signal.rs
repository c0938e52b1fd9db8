//! Signals as the core sees them: durable, decoded, with the device they came from.

use serde::{Deserialize, Serialize};
use warden_protocol::mqtt::AlarmKind;
use warden_types::Qualifier;

use crate::ids::{DeviceId, Name, SignalId};
use crate::time::{Micros, Timestamp};

pub use warden_types::Source;

/// What the core knows about a registered alarm unit.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DeviceInfo {
    /// The device's id (`devices.id`).
    pub id: DeviceId,
    /// The scheme or area it belongs to; technical storms are grouped per area.
    #[serde(default)]
    pub area: Option<Name>,
    /// The promised interval between periodic tests; `None` means the unit is not
    /// supervised.
    #[serde(default)]
    pub test_interval: Option<Micros>,
    /// The device type (`pendant-x`, `smoke-y`), for per-type classification overrides.
    #[serde(default)]
    pub device_type: Option<Name>,
    /// The client (household) the unit serves, for per-client overrides and the console.
    #[serde(default)]
    pub client: Option<i64>,
}

impl DeviceInfo {
    /// A device with only an id.
    pub fn new(id: DeviceId) -> Self {
        DeviceInfo {
            id,
            area: None,
            test_interval: None,
            device_type: None,
            client: None,
        }
    }
}

/// What a signal says, as the engine decoded it from the stored `decoded` JSON.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum SignalWhat {
    /// A Contact ID event (serial receivers, MQTT pass-through, DC-09 `ADM-CID`).
    ContactId {
        /// The three-digit event code, e.g. 101.
        code: u16,
        /// New, restore or still present.
        qualifier: Qualifier,
    },
    /// A SIA two-letter event (DC-09 `SIA-DCS`, Sur-Gard SIA output).
    Sia {
        /// The two ASCII letters, e.g. `*b"QA"`.
        #[serde(with = "crate::classify::sia_code_serde")]
        code: [u8; 2],
        /// True when the transport marked the event as a restore (SIA codes usually carry
        /// this in the code itself: `QA` alarm, `QH` restore).
        #[serde(default)]
        restore: bool,
    },
    /// An MQTT `alarm` body.
    Mqtt {
        /// What the unit reports.
        kind: AlarmKind,
        /// True when the condition has cleared.
        #[serde(default)]
        restore: bool,
    },
    /// A heartbeat or receiver/link keep-alive: proof of life, nothing else.
    Heartbeat,
    /// MQTT online/offline (the offline message is usually the unit's last will).
    Presence {
        /// True when the unit came online.
        online: bool,
    },
    /// A receiver, gateway or broker link went silent or down (subject: the link).
    LinkLost,
    /// The link came back.
    LinkRestored,
    /// A fault Warden itself found on a unit's signal path (message ids reused, messages
    /// lost between the unit and the centre): technical, per unit.
    PathFault {
        /// What was found, in words.
        detail: String,
    },
    /// Warden checked itself (subject: the link `warden:<check>`): its on-call
    /// configuration, whether every due escalation step ran. Technical; a passing check
    /// restores (and closes) the incident a failing one raised.
    SelfCheck {
        /// Which check, e.g. `oncall_config`.
        check: String,
        /// True when the check passed.
        ok: bool,
        /// What was found, in words.
        detail: String,
    },
    /// A SCAIP report (`<mrq>` other than a heartbeat) from a social-alarm unit: a call for
    /// help unless the centre's tables say otherwise. The public sources do not fix what the
    /// status codes mean, so every report is a personal alarm (life-critical) and its codes
    /// are shown to the operator.
    Scaip {
        /// `stc`, the status code, as a number.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        status: Option<u32>,
        /// `dty`, the device type, as a number.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        device_type: Option<u32>,
    },
    /// Anything the engine could not map; shown to an operator, never dropped.
    Unknown {
        /// A short human-readable summary of what arrived.
        raw_summary: String,
    },
}

/// A durable signal offered to the core. It is already committed to `signals`; the core
/// only decides what it means for incidents.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SignalIn {
    /// The stored signal's id; a signal offered twice (redelivery, replay) counts once.
    pub id: SignalId,
    /// The kind of link it arrived on.
    pub source: Source,
    /// The link it arrived on, e.g. `serial:ttyS0`; the subject of link lost/restored.
    pub link: Name,
    /// The account the unit sent, when the protocol has one.
    #[serde(default)]
    pub account: Option<Name>,
    /// The registered device and what the engine knows of it. When present, the core's
    /// device registry is updated with it, so supervision starts even for a device never
    /// registered with [`crate::Input::RegisterDevice`].
    #[serde(default)]
    pub device: Option<DeviceInfo>,
    /// What the signal says.
    pub what: SignalWhat,
    /// When its first byte arrived: answer times and windows are measured from here.
    pub received_at: Timestamp,
}
