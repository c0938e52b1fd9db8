//! Effects: what the core tells the engine to do or record. The engine persists them as
//! append-only incident events, current-state rows and outbox entries.

use serde::{Deserialize, Serialize};
use warden_types::Priority;

use crate::classify::{Event, Kind};
use crate::ids::{Actor, DeviceId, IncidentId, Name, Role, SignalId};
use crate::incident::{Resolution, Subject};
use crate::time::{Micros, Timestamp};

/// One thing the engine must do or record, in order.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Effect {
    /// A new incident exists (state `raised`; an `Offer` follows in the same step).
    IncidentOpened {
        /// Its id.
        incident: IncidentId,
        /// The cause.
        kind: Kind,
        /// Its lane.
        priority: Priority,
        /// What it is about.
        subject: Subject,
        /// The device, for device subjects.
        device: Option<DeviceId>,
        /// The client, when known.
        client: Option<i64>,
        /// The area, when known.
        area: Option<Name>,
        /// When its first signal arrived.
        arrived_at: Timestamp,
        /// The signal that opened it.
        signal: Option<SignalId>,
        /// For unknown codes: what arrived.
        summary: Option<String>,
    },
    /// An open incident changed.
    IncidentUpdated {
        /// Which.
        incident: IncidentId,
        /// What changed.
        change: Change,
        /// The signal that caused the change, if any.
        signal: Option<SignalId>,
        /// Signals joined so far.
        signal_count: u32,
    },
    /// Put the incident in front of operators (new, or released back to the queue).
    Offer {
        /// Which.
        incident: IncidentId,
        /// Its lane: life-critical offers come first within one step.
        priority: Priority,
        /// The cause.
        kind: Kind,
        /// When its first signal arrived (the queue order within a lane).
        arrived_at: Timestamp,
    },
    /// An operator holds the incident now.
    Claimed {
        /// Which.
        incident: IncidentId,
        /// Who holds it.
        actor: Actor,
        /// The answer time, on the first claim only.
        answer_time: Option<Micros>,
        /// The previous holder, when a supervisor took it over.
        taken_from: Option<Actor>,
    },
    /// The incident went back to the queue.
    Released {
        /// Which.
        incident: IncidentId,
        /// Who released it.
        actor: Actor,
        /// Who held it.
        holder: Actor,
    },
    /// The incident is closed (and leaves the core's memory).
    Resolved {
        /// Which.
        incident: IncidentId,
        /// How.
        resolution: Resolution,
        /// Its answer time, if it was ever claimed.
        answer_time: Option<Micros>,
        /// Signals it gathered.
        signal_count: u32,
    },
    /// Nobody has claimed it within the warning threshold.
    SlaWarning {
        /// Which.
        incident: IncidentId,
        /// Its lane.
        priority: Priority,
        /// Time since arrival.
        waited: Micros,
    },
    /// Nobody has claimed it within the overflow threshold: offer it to supervisors.
    Overflow {
        /// Which.
        incident: IncidentId,
        /// Its lane.
        priority: Priority,
        /// Time since arrival.
        waited: Micros,
    },
    /// Nobody has claimed it within the critical threshold.
    Critical {
        /// Which.
        incident: IncidentId,
        /// Its lane.
        priority: Priority,
        /// Time since arrival.
        waited: Micros,
    },
    /// A supervised unit missed its periodic test.
    FailToReport {
        /// The incident carrying it (individual or storm group); `None` only if
        /// configuration made fail-to-report information-only.
        incident: Option<IncidentId>,
        /// The unit.
        device: DeviceId,
        /// When it was last heard (`None`: never since registration).
        last_heard: Option<Timestamp>,
        /// When it became overdue.
        due: Timestamp,
    },
    /// A technical storm was grouped into one incident.
    StormGrouped {
        /// The group incident.
        incident: IncidentId,
        /// The area.
        area: Option<Name>,
        /// The cause.
        kind: Kind,
        /// Units in the group so far.
        devices: u32,
        /// Individual incidents folded into it.
        folded: Vec<IncidentId>,
    },
    /// A unit signals faster than the runaway threshold; its further non-life-critical
    /// signals only bump this incident's counter.
    RunawayDetected {
        /// The runaway incident.
        incident: IncidentId,
        /// The unit.
        device: DeviceId,
        /// Signals seen within the window.
        signals: u32,
    },
    /// A signal already counted: the same signal id again (redelivery, replay), or the same
    /// alarm through another path within the dedupe window while its incident is open.
    Duplicate {
        /// The signal.
        signal: SignalId,
        /// The incident the original was counted in, if any. For a replayed signal id it
        /// may since have been resolved.
        incident: Option<IncidentId>,
    },
    /// An audit-trail entry. Every state change produces one.
    Audit(AuditEntry),
    /// Input the core refused. Nothing changed.
    Rejected {
        /// Which input.
        input: InputKind,
        /// The incident named, if any.
        incident: Option<IncidentId>,
        /// The actor, for commands.
        actor: Option<Actor>,
        /// Why.
        reason: RejectReason,
    },
}

impl Effect {
    /// Its name in the history (`incident_events.kind`), the same as its serde `type` tag.
    pub fn name(&self) -> &'static str {
        match self {
            Effect::IncidentOpened { .. } => "incident_opened",
            Effect::IncidentUpdated { .. } => "incident_updated",
            Effect::Offer { .. } => "offer",
            Effect::Claimed { .. } => "claimed",
            Effect::Released { .. } => "released",
            Effect::Resolved { .. } => "resolved",
            Effect::SlaWarning { .. } => "sla_warning",
            Effect::Overflow { .. } => "overflow",
            Effect::Critical { .. } => "critical",
            Effect::FailToReport { .. } => "fail_to_report",
            Effect::StormGrouped { .. } => "storm_grouped",
            Effect::RunawayDetected { .. } => "runaway_detected",
            Effect::Duplicate { .. } => "duplicate",
            Effect::Audit(_) => "audit",
            Effect::Rejected { .. } => "rejected",
        }
    }

    /// True for the effects that someone outside a console must hear about (the outbox the
    /// escalation machinery reads): an alarm past its overflow or critical answer time, a
    /// unit that failed to report, and a link lost or a self-check failed (these have no
    /// answer-time thresholds by default; they page when a route sends them to a chain, the
    /// ops rota's).
    pub fn needs_notification(&self) -> bool {
        matches!(
            self,
            Effect::Overflow { .. }
                | Effect::Critical { .. }
                | Effect::FailToReport { .. }
                | Effect::IncidentOpened {
                    kind: Kind::LinkLost | Kind::SelfCheck,
                    ..
                }
        )
    }

    /// Whether the effect records a change to its incident's record (and so that record
    /// must be written with it). A duplicate or a refused input leaves the record as it was.
    pub fn changes_incident(&self) -> bool {
        !matches!(self, Effect::Duplicate { .. } | Effect::Rejected { .. })
    }

    /// The incident this effect concerns, if any.
    pub fn incident(&self) -> Option<IncidentId> {
        match self {
            Effect::IncidentOpened { incident, .. }
            | Effect::IncidentUpdated { incident, .. }
            | Effect::Offer { incident, .. }
            | Effect::Claimed { incident, .. }
            | Effect::Released { incident, .. }
            | Effect::Resolved { incident, .. }
            | Effect::SlaWarning { incident, .. }
            | Effect::Overflow { incident, .. }
            | Effect::Critical { incident, .. }
            | Effect::StormGrouped { incident, .. }
            | Effect::RunawayDetected { incident, .. } => Some(*incident),
            Effect::FailToReport { incident, .. }
            | Effect::Duplicate { incident, .. }
            | Effect::Rejected { incident, .. } => *incident,
            Effect::Audit(entry) => entry.incident,
        }
    }
}

/// What changed on an incident.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "what", rename_all = "snake_case")]
pub enum Change {
    /// Another signal of the same cause joined (repeated press, still present).
    Signal {
        /// Raise or status.
        event: Event,
    },
    /// The condition restored (and the incident stays open).
    Restored,
    /// A cancel/reset was recorded.
    Cancelled,
    /// A note was written.
    Noted,
    /// A unit joined the storm group.
    GroupMember {
        /// The unit.
        device: DeviceId,
        /// Units in the group.
        devices: u32,
        /// Units still in fault.
        active: u32,
    },
    /// A member unit's condition restored.
    GroupMemberRestored {
        /// The unit.
        device: DeviceId,
        /// Units still in fault.
        active: u32,
    },
    /// A runaway unit sent another signal.
    RunawaySignal {
        /// What it said.
        kind: Kind,
        /// Signals folded so far.
        folded: u32,
    },
    /// A unit that had failed to report was heard again.
    DeviceHeard,
}

/// One line of the audit trail: who did what to which incident, when, and the details in
/// plain words.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuditEntry {
    /// When (the `now` of the step).
    pub at: Timestamp,
    /// The person, for commands; `None` for the core's own decisions.
    pub actor: Option<Actor>,
    /// The incident; `None` for configuration and registry changes.
    pub incident: Option<IncidentId>,
    /// What happened.
    pub action: AuditAction,
    /// Details in plain words (note text, outcome, signal, reason).
    pub detail: String,
}

/// The audit-trail vocabulary.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AuditAction {
    /// An incident was opened.
    Opened,
    /// An incident entered the queue.
    Offered,
    /// A signal joined an incident.
    SignalJoined,
    /// A restore was recorded.
    RestoreRecorded,
    /// A cancel was recorded.
    CancelRecorded,
    /// An operator claimed an incident.
    Claimed,
    /// A supervisor took an incident over.
    TakenOver,
    /// An incident went back to the queue.
    Released,
    /// A note was written.
    Noted,
    /// An incident was resolved (by a person or by policy).
    Resolved,
    /// The warning threshold passed.
    SlaWarning,
    /// The overflow threshold passed.
    Overflow,
    /// The critical threshold passed.
    Critical,
    /// A unit missed its periodic test.
    FailToReport,
    /// A unit that had failed to report was heard again.
    DeviceHeard,
    /// A storm group was formed.
    StormGrouped,
    /// An incident was folded into a storm group.
    FoldedIntoGroup,
    /// A unit joined a storm group.
    GroupJoined,
    /// A group member restored.
    GroupMemberRestored,
    /// A runaway unit was detected.
    RunawayDetected,
    /// A runaway unit's signal was folded.
    RunawaySignal,
    /// The configuration changed.
    ConfigChanged,
    /// A device was removed from the registry.
    DeviceForgotten,
    /// The state was replaced from a snapshot.
    StateRestored,
}

/// Which input a rejection refers to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum InputKind {
    /// [`crate::Input::Signal`].
    Signal,
    /// [`crate::Input::Claim`].
    Claim,
    /// [`crate::Input::Release`].
    Release,
    /// [`crate::Input::Note`].
    Note,
    /// [`crate::Input::Resolve`].
    Resolve,
    /// [`crate::Input::TakeOver`].
    TakeOver,
    /// [`crate::Input::Tick`].
    Tick,
    /// [`crate::Input::Configure`].
    Configure,
    /// [`crate::Input::RegisterDevice`].
    RegisterDevice,
    /// [`crate::Input::ForgetDevice`].
    ForgetDevice,
    /// [`crate::Input::Restore`].
    Restore,
}

/// Why an input was refused.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "reason", rename_all = "snake_case")]
pub enum RejectReason {
    /// No such incident was ever opened.
    UnknownIncident,
    /// The incident is already resolved (or was folded into a group).
    AlreadyResolved,
    /// Someone else holds it; a supervisor may take it over.
    ClaimedByOther {
        /// The holder.
        holder: Actor,
    },
    /// The actor already holds it.
    AlreadyHolder,
    /// Only the holder (or a supervisor) may do this.
    NotHolder {
        /// The holder, if any.
        holder: Option<Actor>,
    },
    /// Nobody holds it, so it cannot be released.
    NotClaimed,
    /// The actor's role may not do this.
    RoleNotAllowed {
        /// The role.
        role: Role,
    },
    /// The note is empty.
    EmptyNote,
    /// The note is longer than [`crate::Config::max_note_len`].
    NoteTooLong {
        /// The limit in bytes.
        max: u32,
    },
    /// The configuration is invalid; the old one stays.
    InvalidConfig {
        /// What is wrong.
        message: String,
    },
    /// No such device is registered.
    UnknownDevice {
        /// The id given.
        device: DeviceId,
    },
    /// The snapshot was written by an incompatible version.
    UnsupportedSnapshot {
        /// Its version.
        version: u32,
    },
}
