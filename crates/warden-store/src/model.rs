//! The rows the store reads and writes, as plain Rust values.

use std::fmt;

use serde::{Deserialize, Serialize};
use time::OffsetDateTime;
use uuid::Uuid;

pub use warden_types::Source;

/// The kind of a link in the `links` table.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LinkKind {
    /// A serial port to a hardware receiver.
    Serial,
    /// A connection to an MQTT broker.
    Mqtt,
    /// A DC-09 listener or receiver.
    Dc09,
    /// A SCAIP listener or unit.
    Scaip,
}

impl LinkKind {
    /// The name stored in the `kind` column.
    pub fn as_str(self) -> &'static str {
        match self {
            LinkKind::Serial => "serial",
            LinkKind::Mqtt => "mqtt",
            LinkKind::Dc09 => "dc09",
            LinkKind::Scaip => "scaip",
        }
    }

    /// The inverse of [`LinkKind::as_str`].
    pub fn parse(s: &str) -> Option<LinkKind> {
        match s {
            "serial" => Some(LinkKind::Serial),
            "mqtt" => Some(LinkKind::Mqtt),
            "dc09" => Some(LinkKind::Dc09),
            "scaip" => Some(LinkKind::Scaip),
            _ => None,
        }
    }
}

impl fmt::Display for LinkKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The protocol a registered device speaks (defined once, in `warden-types`).
pub use warden_types::DeviceProtocol;

/// A decoded signal to be stored, raw bytes included.
#[derive(Debug, Clone, PartialEq)]
pub struct NewSignal {
    /// A UUID v7 chosen by the caller (`Uuid::now_v7()`); it is the signal's identity.
    pub id: Uuid,
    /// The kind of link it arrived on.
    pub source: Source,
    /// The link it arrived on, e.g. `serial:ttyS0`.
    pub link_id: String,
    /// The account the unit sent, when the protocol has one.
    pub account: Option<String>,
    /// The registered device, when the account is known (must exist in `devices`).
    pub device_id: Option<i64>,
    /// What the signal is: `event`, `heartbeat`, `presence`, `link_lost`, `link_restored`...
    pub kind: String,
    /// The bytes exactly as received.
    pub raw: Vec<u8>,
    /// The decoder's view of the bytes. Postgres `jsonb` refuses `\u0000` in strings.
    pub decoded: serde_json::Value,
    /// When the first byte arrived. Stored with microsecond precision (truncated).
    pub received_at: OffsetDateTime,
    /// An idempotency key (e.g. `mqtt:{device}:{msg_id}`). A signal with the same key and
    /// the same `raw` bytes as one stored less than the writer's
    /// [`dedupe_window`](crate::WriterConfig::dedupe_window) ago is a redelivery: not stored,
    /// answered [`Committed::Duplicate`]. The same key with other bytes is a new signal
    /// whose sender reused an id: stored, answered [`Committed::Reused`].
    pub dedupe_key: Option<String>,
}

/// Input that could not become a signal, kept as evidence with the reason.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewQuarantine {
    /// A UUID v7 chosen by the caller.
    pub id: Uuid,
    /// The kind of link it arrived on.
    pub source: Source,
    /// The link it arrived on.
    pub link_id: String,
    /// The bytes exactly as received.
    pub raw: Vec<u8>,
    /// A short code from a fixed set (`bad_frame`, `bad_json`, `unknown_version`,
    /// `oversized`, `unknown_account`, `schema`), 1 to 32 characters; usable as a metric label.
    pub reason_code: &'static str,
    /// The full human-readable reason. NUL characters are replaced by U+FFFD when stored
    /// (Postgres text cannot hold them; the raw bytes keep the original).
    pub reason: String,
    /// When the first byte arrived.
    pub received_at: OffsetDateTime,
}

/// One thing for the group-commit writer to make durable.
#[derive(Debug, Clone, PartialEq)]
pub enum Record {
    /// A decoded signal, stored in `signals`.
    Signal(NewSignal),
    /// Rejected input, stored in `quarantine`.
    Quarantine(NewQuarantine),
}

impl Record {
    /// The record's id.
    pub fn id(&self) -> Uuid {
        match self {
            Record::Signal(s) => s.id,
            Record::Quarantine(q) => q.id,
        }
    }
}

/// What happened to a record, known only after its transaction committed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Committed {
    /// The signal is durable under this id.
    Stored(Uuid),
    /// A signal with the same dedupe key and the same raw bytes was already durable, stored
    /// within the dedupe window (earlier, or earlier in the same batch): this is a
    /// redelivery and was not stored. Safe to acknowledge.
    Duplicate {
        /// The dedupe key that matched.
        existing_key: String,
    },
    /// The signal is durable under this id, as a new signal, although its dedupe key was
    /// already used within the dedupe window by a signal with different raw bytes: the
    /// sender reused a message id (a unit whose counter restarted, say). Treat it exactly
    /// like [`Committed::Stored`]; the variant exists so the caller can count and report
    /// the reuse.
    Reused {
        /// The new signal's id.
        id: Uuid,
        /// The dedupe key that was reused.
        key: String,
    },
    /// The quarantine record is durable under this id.
    Quarantined(Uuid),
    /// Postgres was unavailable: the record (signal or quarantine) is durable in the local
    /// spool under this id and will be committed, once, when Postgres is back. Safe to
    /// acknowledge; not yet in Postgres, so not to be offered to the engine (the drain asks
    /// the engine to triage what it stored).
    Spooled(Uuid),
}

/// A registered device, as everything reads it: ingest's account cache, the broker's
/// credential check, the console and the triage registry. Read with `FromRow` from
/// [`DEVICE_COLUMNS`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, sqlx::FromRow)]
#[cfg_attr(feature = "utoipa", derive(utoipa::ToSchema))]
pub struct Device {
    /// Database id, referenced by `signals.device_id`.
    pub id: i64,
    /// Unique account number of the device (1-64 characters): what the unit sends.
    pub account: String,
    /// The protocol it speaks.
    #[sqlx(try_from = "String")]
    pub protocol: DeviceProtocol,
    /// A human label, e.g. "Flat 3 pendant".
    pub label: Option<String>,
    pub device_type: Option<String>,
    /// Expected test-call interval (supervision) in seconds; null for none.
    pub test_interval_seconds: Option<i32>,
    /// The `external_ref` of the client the device belongs to.
    pub client_ref: Option<String>,
    pub area: Option<String>,
    /// The MQTT unit (its `devices.id`) allowed to pass this panel's Contact ID or SIA
    /// through (`wardend device add --bridge`); null for none.
    pub bridge_device_id: Option<i64>,
}

/// The `devices` columns [`Device`] is read from, in its field order.
pub(crate) const DEVICE_COLUMNS: &str = "id, account, protocol, label, device_type, \
     test_interval_seconds, client_ref, area, bridge_device_id";

/// A device as written: registered, or updated by account (CLI, provisioning, CSV import)
/// or by id (the console). Omitted optional fields become null. The bridge is set on its
/// own ([`crate::Store::set_device_bridge`]).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[cfg_attr(feature = "utoipa", derive(utoipa::ToSchema))]
pub struct NewDevice {
    /// 1-64 characters, unique.
    pub account: String,
    /// The protocol it speaks.
    pub protocol: DeviceProtocol,
    #[serde(default)]
    pub label: Option<String>,
    #[serde(default)]
    pub device_type: Option<String>,
    /// Expected test-call interval in seconds (must be positive), if supervised.
    #[serde(default)]
    pub test_interval_seconds: Option<i32>,
    #[serde(default)]
    pub client_ref: Option<String>,
    #[serde(default)]
    pub area: Option<String>,
}

impl NewDevice {
    /// The account as the registry keeps it: a SCAIP unit's id in the form ingest looks it up
    /// ([`warden_types::scaip_unit`]: digits without leading zeros).
    pub fn stored_account(&self) -> String {
        if self.protocol == DeviceProtocol::Scaip {
            warden_types::scaip_unit(&self.account)
        } else {
            self.account.clone()
        }
    }

    /// A device with only an account and a protocol.
    pub fn new(account: impl Into<String>, protocol: DeviceProtocol) -> Self {
        Self {
            account: account.into(),
            protocol,
            label: None,
            device_type: None,
            test_interval_seconds: None,
            client_ref: None,
            area: None,
        }
    }
}

/// The last known state of a link.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LinkState {
    /// Link id, e.g. `serial:ttyS0`.
    pub id: String,
    /// Kind of link.
    pub kind: LinkKind,
    /// Whether it was up at the last report.
    pub up: bool,
    /// The last time it was reported up.
    pub last_heard_at: Option<OffsetDateTime>,
    /// The last time `up` changed (or the link was first seen).
    pub changed_at: OffsetDateTime,
}

/// A stored signal, read back.
#[derive(Debug, Clone, PartialEq)]
pub struct StoredSignal {
    /// The signal as it was written.
    pub signal: NewSignal,
    /// When the row was inserted (inside the committing transaction).
    pub committed_at: OffsetDateTime,
    /// When the sender was acknowledged, if that mark reached the database.
    pub acked_at: Option<OffsetDateTime>,
}
