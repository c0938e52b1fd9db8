//! Incidents: what an operator sees and acts on.

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};
use warden_types::Priority;

use crate::classify::Kind;
use crate::ids::{Actor, DeviceId, IncidentId, Name, OutcomeCode, SignalId};
use crate::time::{Micros, Timestamp};

/// What an incident is about: one unit, one link, or one area (a storm group).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Subject {
    /// A registered device.
    Device {
        /// `devices.id`.
        id: DeviceId,
    },
    /// An account the engine could not resolve to a device.
    Account {
        /// The account as sent.
        account: Name,
    },
    /// A receiver, gateway or broker link (also signals with neither device nor account).
    Link {
        /// The link id, e.g. `serial:ttyS0`.
        link: Name,
    },
    /// A storm group: every unit of one area reporting the same technical cause.
    Group {
        /// The area or scheme; `None` groups units that have no area.
        area: Option<Name>,
    },
}

impl Subject {
    /// The device, for device subjects.
    pub fn device(&self) -> Option<DeviceId> {
        match self {
            Subject::Device { id } => Some(*id),
            _ => None,
        }
    }
}

/// Where an incident is in its life. Every transition is timestamped on the incident and
/// written to the audit trail.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum IncidentState {
    /// Opened, not yet in the queue (transient: the core offers in the same step).
    Raised,
    /// In the queue, waiting for an operator.
    Offered,
    /// Held by exactly one operator.
    Claimed,
    /// Closed. Resolved incidents leave the core's memory.
    Resolved,
}

impl IncidentState {
    /// Its name in SQL (`incidents.state`) and JSON, the same as its serde form.
    pub fn as_str(self) -> &'static str {
        match self {
            IncidentState::Raised => "raised",
            IncidentState::Offered => "offered",
            IncidentState::Claimed => "claimed",
            IncidentState::Resolved => "resolved",
        }
    }
}

/// How an incident was closed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "by", rename_all = "snake_case")]
pub enum Resolution {
    /// An operator or supervisor closed it with an outcome code.
    Operator {
        /// Who closed it.
        actor: Actor,
        /// How.
        outcome: OutcomeCode,
    },
    /// The core closed it by policy. Never happens to a life-critical incident.
    Auto {
        /// Why.
        reason: AutoReason,
    },
}

/// Why the core closed an incident by itself.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "reason", rename_all = "snake_case")]
pub enum AutoReason {
    /// Its condition restored and the kind's policy closes on restore.
    Restored,
    /// A cancel/reset arrived and the kind's policy closes on cancel.
    Cancelled,
    /// A unit that had failed to report was heard again.
    DeviceHeard,
    /// It became part of a storm group.
    FoldedIntoGroup {
        /// The group incident that now carries it.
        group: IncidentId,
    },
}

/// Which answer-time thresholds have fired (each at most once per wait in the queue).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SlaFired {
    /// The warning fired.
    pub warned: bool,
    /// The overflow to supervisors fired.
    pub overflowed: bool,
    /// The critical threshold fired.
    pub critical: bool,
}

/// The members of a storm group.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct GroupInfo {
    /// Every unit that reported the cause.
    pub members: BTreeSet<DeviceId>,
    /// Units whose condition has not restored yet.
    pub active: BTreeSet<DeviceId>,
}

/// What a runaway incident has swallowed.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RunawayInfo {
    /// Signals folded into it.
    pub folded: u32,
    /// Folded signals per kind, so the operator sees what the unit was saying.
    pub kinds: BTreeMap<Kind, u32>,
}

/// An incident: one cause at one subject, from first signal to resolution.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Incident {
    /// Its id.
    pub id: IncidentId,
    /// What it is about.
    pub subject: Subject,
    /// The cause.
    pub kind: Kind,
    /// Its lane, fixed when it opens.
    pub priority: Priority,
    /// Where it is in its life.
    pub state: IncidentState,
    /// The one operator holding it (`Claimed` only).
    pub holder: Option<Actor>,
    /// The device (device subjects).
    pub device: Option<DeviceId>,
    /// The device's client, when known.
    pub client: Option<i64>,
    /// The device's area, when known (and the group's area).
    pub area: Option<Name>,
    /// When its first signal arrived: the answer clock starts here.
    pub arrived_at: Timestamp,
    /// When the core opened it.
    pub raised_at: Timestamp,
    /// When it last entered the queue.
    pub offered_at: Option<Timestamp>,
    /// When it was last claimed.
    pub claimed_at: Option<Timestamp>,
    /// First claim minus arrival: the answer time.
    pub answer_time: Option<Micros>,
    /// When it was last put back in the queue after someone had answered it (released):
    /// its answer-time thresholds count again from here, from the first stage.
    #[serde(default)]
    pub requeued_at: Option<Timestamp>,
    /// When it was resolved.
    pub resolved_at: Option<Timestamp>,
    /// How it was resolved.
    pub resolution: Option<Resolution>,
    /// The signal that opened it (none for supervision failures).
    pub first_signal: Option<SignalId>,
    /// The latest signal's arrival.
    pub last_signal_at: Timestamp,
    /// Signals that joined it (duplicates excluded).
    pub signal_count: u32,
    /// Restores received.
    pub restore_count: u32,
    /// False after a restore, true again after a new raise.
    pub condition_active: bool,
    /// When a cancel/reset was last recorded.
    pub cancelled_at: Option<Timestamp>,
    /// Notes written.
    pub notes: u32,
    /// When an operator's command (claim, take-over, release, note) last changed it: a
    /// command kept in the engine's journal during an outage and found again after a crash
    /// is applied only if it is later than this (it was not committed before).
    #[serde(default)]
    pub last_command_at: Option<Timestamp>,
    /// Answer-time thresholds already fired.
    pub sla: SlaFired,
    /// For unknown codes: the latest raw summary.
    pub summary: Option<String>,
    /// For storm groups: the members.
    pub group: Option<Box<GroupInfo>>,
    /// For runaway incidents: what was folded.
    pub runaway: Option<Box<RunawayInfo>>,
}

impl Incident {
    /// True while it is not resolved.
    pub fn is_open(&self) -> bool {
        self.state != IncidentState::Resolved
    }

    /// Counts a signal that joined it, received at `at` (signals may arrive out of order:
    /// the latest arrival is kept).
    pub fn record_signal(&mut self, at: Timestamp) {
        self.signal_count = self.signal_count.saturating_add(1);
        self.last_signal_at = self.last_signal_at.max(at);
    }
}

#[cfg(test)]
mod tests {
    use super::IncidentState;

    #[test]
    fn state_names_are_the_serde_names() {
        for s in [
            IncidentState::Raised,
            IncidentState::Offered,
            IncidentState::Claimed,
            IncidentState::Resolved,
        ] {
            assert_eq!(serde_json::to_value(s).ok(), Some(s.as_str().into()));
        }
    }
}
