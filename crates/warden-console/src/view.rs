//! What consoles see of an incident: the current-state row joined with its holder, device
//! and client, shaped for the queue.

use serde::Serialize;
use serde_json::Value;
use time::OffsetDateTime;
use utoipa::ToSchema;
use warden_store::IncidentViewRow;

#[derive(Debug, Clone, Serialize, PartialEq, ToSchema)]
pub struct IncidentView {
    pub id: i64,
    pub priority: String,
    pub kind: String,
    pub state: String,
    #[serde(with = "time::serde::rfc3339")]
    pub arrived_at: OffsetDateTime,
    pub arrived_at_ms: i64,
    #[serde(with = "time::serde::rfc3339::option")]
    pub claimed_at: Option<OffsetDateTime>,
    #[serde(with = "time::serde::rfc3339::option")]
    pub resolved_at: Option<OffsetDateTime>,
    pub holder: Option<Holder>,
    pub signal_count: i32,
    pub group_count: Option<usize>,
    pub area: Option<String>,
    pub summary: Option<String>,
    pub device: Option<DeviceRef>,
    pub client: Option<ClientRef>,
    pub sla: Sla,
    pub outcome: Option<String>,
}

#[derive(Debug, Clone, Serialize, PartialEq, Eq, ToSchema)]
pub struct Holder {
    pub id: i64,
    pub name: String,
}

#[derive(Debug, Clone, Serialize, PartialEq, Eq, ToSchema)]
pub struct DeviceRef {
    pub id: i64,
    pub account: Option<String>,
    pub label: Option<String>,
}

#[derive(Debug, Clone, Serialize, PartialEq, Eq, ToSchema)]
pub struct ClientRef {
    pub id: i64,
    pub name: String,
    pub address: Option<String>,
}

#[derive(Debug, Clone, Copy, Serialize, PartialEq, Eq, Default, ToSchema)]
pub struct Sla {
    pub warned: bool,
    pub overflowed: bool,
    pub critical: bool,
}

impl From<IncidentViewRow> for IncidentView {
    fn from(r: IncidentViewRow) -> Self {
        let f = r.fields;
        let arrived_at = f.arrived_at.unwrap_or(r.raised_at);
        let holder = f.holder_id.map(|id| Holder {
            id,
            name: r.holder_name.unwrap_or_else(|| format!("user {id}")),
        });
        IncidentView {
            id: r.id,
            arrived_at_ms: i64::try_from(arrived_at.unix_timestamp_nanos() / 1_000_000)
                .unwrap_or(i64::MAX),
            arrived_at,
            priority: r.priority,
            kind: r.kind,
            state: r.state,
            claimed_at: r.claimed_at,
            resolved_at: r.resolved_at,
            holder,
            signal_count: r.signal_count,
            group_count: f.group_count.and_then(|n| usize::try_from(n).ok()),
            area: f.area,
            summary: f.summary,
            device: r.device_id.map(|id| DeviceRef {
                id,
                account: r.device_account,
                label: r.device_label,
            }),
            client: match (r.client_id, r.client_name) {
                (Some(id), Some(name)) => Some(ClientRef {
                    id,
                    name,
                    address: r.client_address,
                }),
                _ => None,
            },
            sla: Sla {
                warned: f.sla_warned,
                overflowed: f.sla_overflowed,
                critical: f.sla_critical,
            },
            outcome: f.outcome,
        }
    }
}

/// Queue order: life-critical first, then urgent, technical, information; oldest first.
pub fn sort_queue(v: &mut [IncidentView]) {
    fn rank(p: &str) -> u8 {
        match p {
            "life_critical" => 0,
            "urgent" => 1,
            "technical" => 2,
            _ => 3,
        }
    }
    v.sort_by(|a, b| {
        (rank(&a.priority), a.arrived_at_ms, a.id).cmp(&(rank(&b.priority), b.arrived_at_ms, b.id))
    });
}

/// One line a person can read for a stored signal, e.g. "Contact ID 101 Personal emergency
/// (new)", "pendant", or "Unregistered unit 7777: Contact ID 101 Personal emergency (new)".
pub fn signal_summary(kind: &str, decoded: &Value) -> String {
    warden_core::Decoded::from_stored(kind, decoded).summary()
}

/// Stored signals as the API shows them: each with its readable summary.
pub fn signals_json(signals: &[warden_store::SignalSummary]) -> Value {
    Value::Array(
        signals
            .iter()
            .map(|s| {
                let mut v = serde_json::to_value(s).unwrap_or_default();
                v["summary"] = Value::String(signal_summary(&s.kind, &s.decoded));
                v
            })
            .collect(),
    )
}
