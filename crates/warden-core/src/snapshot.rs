//! Snapshots: the core's whole state as plain data, for restart.
//!
//! Two ways to get one: [`crate::Triage::snapshot`] (exact: restoring it and replaying the
//! same inputs gives the same effects), or [`Snapshot::rebuild`] from what the engine
//! persisted (open incidents, devices and when each was last heard). Timers are never
//! stored: they follow from the incidents and devices and are rebuilt on restore.

use serde::{Deserialize, Serialize};

use crate::classify::{Event, Kind};
use crate::config::Config;
use crate::ids::{DeviceId, IncidentId, Name, SignalId};
use crate::incident::{Incident, IncidentState, Subject};
use crate::signal::DeviceInfo;
use crate::time::Timestamp;

/// The snapshot format version this core writes and reads.
pub const SNAPSHOT_VERSION: u32 = 1;

/// The core's state.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Snapshot {
    /// [`SNAPSHOT_VERSION`].
    pub version: u32,
    /// The configuration in force.
    pub config: Config,
    /// The id the next incident gets (one more than the largest ever assigned).
    pub next_incident: u64,
    /// Registered devices.
    pub devices: Vec<DeviceSnapshot>,
    /// Open incidents.
    pub incidents: Vec<Incident>,
    /// Deduplication memory (may be empty when rebuilt from the database).
    #[serde(default)]
    pub dedupe: Vec<DedupeSnapshot>,
    /// Signal ids seen recently (may be empty).
    #[serde(default)]
    pub seen_signals: Vec<SeenSnapshot>,
    /// Per-device runaway windows (may be empty).
    #[serde(default)]
    pub rates: Vec<RateSnapshot>,
    /// Storm windows (may be empty).
    #[serde(default)]
    pub storms: Vec<StormSnapshot>,
    /// When idle windows are next swept (the minimum: at the first tick).
    #[serde(default = "first_tick")]
    pub next_sweep: Timestamp,
}

fn first_tick() -> Timestamp {
    Timestamp(i64::MIN)
}

/// A registered device's state.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeviceSnapshot {
    /// What the engine told the core.
    pub info: DeviceInfo,
    /// When it was last heard.
    pub last_heard: Option<Timestamp>,
    /// When a fail-to-report is due (`None`: unsupervised, or already reported).
    pub due: Option<Timestamp>,
    /// A fail-to-report was raised and the unit has not been heard since.
    pub ftr_outstanding: bool,
}

/// One remembered (subject, kind, event) for deduplication.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DedupeSnapshot {
    /// The subject.
    pub subject: Subject,
    /// The kind.
    pub kind: Kind,
    /// The event.
    pub event: Event,
    /// The unknown-code tag (0 for known kinds).
    pub tag: u32,
    /// The accepted signal's arrival.
    pub last_received: Timestamp,
    /// When the memory lapses (a `now`).
    pub expires: Timestamp,
    /// The incident the accepted signal went to.
    pub incident: Option<IncidentId>,
}

/// One remembered signal id.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SeenSnapshot {
    /// The signal.
    pub signal: SignalId,
    /// Its arrival.
    pub received_at: Timestamp,
    /// When the memory lapses (a `now`).
    pub expires: Timestamp,
    /// The incident it went to.
    pub incident: Option<IncidentId>,
}

/// One device's recent signal times (runaway detection).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RateSnapshot {
    /// The device.
    pub device: DeviceId,
    /// Arrival times, oldest first.
    pub recent: Vec<Timestamp>,
}

/// One (area, kind) storm window.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StormSnapshot {
    /// The area.
    pub area: Option<Name>,
    /// The cause.
    pub kind: Kind,
    /// Individual incidents opened within the window, oldest first.
    pub recent: Vec<StormReport>,
}

/// A unit that reported a technical cause within a storm window.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StormReport {
    /// When its signal arrived.
    pub at: Timestamp,
    /// The unit.
    pub device: DeviceId,
    /// The individual incident it opened.
    pub incident: IncidentId,
}

impl Snapshot {
    /// Assembles a snapshot from persisted state: the configuration, the next incident id
    /// (largest persisted id + 1), every registered device with when it was last heard, and
    /// the open incidents (current-state rows). Supervision deadlines are recomputed from
    /// last-heard times (from `now` for units never heard); a unit with an open
    /// fail-to-report (its own or as an active member of a storm group) stays reported.
    /// Windows (dedupe, runaway, storm) start empty.
    pub fn rebuild(
        config: Config,
        next_incident: u64,
        devices: Vec<(DeviceInfo, Option<Timestamp>)>,
        incidents: Vec<Incident>,
        now: Timestamp,
    ) -> Snapshot {
        let outstanding = |id: DeviceId| {
            incidents.iter().any(|i| {
                i.state != IncidentState::Resolved
                    && i.kind == Kind::FailToReport
                    && (i.subject == Subject::Device { id }
                        || i.group.as_ref().is_some_and(|g| g.active.contains(&id)))
            })
        };
        let sup = config.supervision;
        let devices = devices
            .into_iter()
            .map(|(info, last_heard)| {
                let ftr_outstanding = outstanding(info.id);
                let due = if ftr_outstanding {
                    None
                } else {
                    info.test_interval
                        .map(|iv| last_heard.unwrap_or(now).saturating_add(sup.allowance(iv)))
                };
                DeviceSnapshot {
                    info,
                    last_heard,
                    due,
                    ftr_outstanding,
                }
            })
            .collect();
        Snapshot {
            version: SNAPSHOT_VERSION,
            config,
            next_incident,
            devices,
            incidents,
            dedupe: Vec::new(),
            seen_signals: Vec::new(),
            rates: Vec::new(),
            storms: Vec::new(),
            next_sweep: first_tick(),
        }
    }
}
