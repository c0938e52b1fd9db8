//! Warden's pure triage core: from durable signals and operator commands to incidents,
//! offers, answer-time escalations and an audit trail.
//!
//! The core is a state machine. The engine owns one [`Triage`], feeds it one [`Input`] at a
//! time with the current time, carries out the [`Effect`]s it returns, and wakes it with
//! [`Input::Tick`] at [`Triage::next_deadline`]. It does no I/O, reads no clock, spawns
//! nothing and depends on neither tokio nor sqlx.
//!
//! ```
//! use warden_core::{Config, DeviceId, DeviceInfo, Effect, Input, Name, SignalId, SignalIn, SignalWhat,
//!     Source, Timestamp, Triage};
//! use warden_types::Qualifier;
//!
//! let mut core = Triage::new(Config::default());
//! let now = Timestamp::from_secs(1_800_000_000);
//! let press = SignalIn {
//!     id: SignalId(1),
//!     source: Source::Serial,
//!     link: Name::from("serial:ttyS0"),
//!     account: None,
//!     device: Some(DeviceInfo::new(DeviceId(42))),
//!     what: SignalWhat::ContactId { code: 101, qualifier: Qualifier::New },
//!     received_at: now,
//! };
//! let effects = core.handle(Input::Signal(press), now);
//! assert!(effects.iter().any(|e| matches!(e, Effect::Offer { .. })));
//! assert_eq!(core.next_deadline(), Some(Timestamp::from_secs(1_800_000_045)));
//! ```
//!
//! # Rules
//! - **Classification** ([`Classifier`], [`lane_of`]): code → [`Kind`] → [`warden_types::Priority`], with
//!   per-device-type and per-client overrides. Unknown codes become [`Kind::Unknown`]
//!   incidents (urgent by default). Information-priority signals (tests, open/close,
//!   heartbeats) open nothing; they only prove the unit alive.
//! - **Correlation**: a signal joins the open incident of the same subject and kind.
//!   A signal id seen before, or the same (subject, kind, event) within
//!   [`Config::dedupe_window`] while its incident is still open, is a [`Effect::Duplicate`].
//!   Restores and cancels are recorded on the open incident; whether they close it is the
//!   kind's [`Policy`].
//! - **Lifecycle**: raised → offered → claimed (one holder; a supervisor may take over;
//!   release returns it to the queue) → resolved with an outcome code. Every transition is
//!   timestamped and audited.
//! - **Supervision**: a unit with a test interval that is not heard for `interval +
//!   margin% + grace` gets a technical fail-to-report incident, cleared when it is heard.
//!   Link lost/restored are technical incidents of the link.
//! - **Storms**: technical signals of one kind from more than [`StormConfig::devices`] units
//!   of one area within the storm window become one group incident that counts members.
//! - **Runaways**: a unit sending more than [`RunawayConfig::max_signals`]
//!   non-life-critical signals within the window gets one runaway incident that swallows
//!   its further non-life-critical signals.
//! - **Answer timers**: unclaimed incidents in a lane with [`SlaThresholds`] raise
//!   [`Effect::SlaWarning`], [`Effect::Overflow`] and [`Effect::Critical`] on the tick after
//!   each threshold, measured from the first signal's arrival.
//!
//! # Invariants
//! - Invariant: an incident has at most one holder, and has one exactly when claimed.
//! - Invariant: a life-critical signal always reaches an open incident (opened, joined, or
//!   reported as a duplicate of one that is still open). It is never grouped into a storm,
//!   never folded into a runaway, never rate-limited.
//! - Invariant: a life-critical incident is only ever resolved by a person
//!   ([`Resolution::Operator`]); policy can record a restore or cancel on it, never close it.
//! - Invariant: each answer-time threshold fires at most once per incident, and none fires
//!   after the first claim.
//! - Invariant: an incident is resolved at most once; resolved incidents leave memory.
//! - Invariant: within one step, offers are emitted last and life-critical first; the queue
//!   view lists life-critical first.
//! - Invariant: the core never panics on input. Bad commands produce [`Effect::Rejected`];
//!   time arithmetic saturates.
//! - Invariant: effects never depend on hash-map iteration order, so a core restored from
//!   [`Triage::snapshot`] produces the same effects as one that never stopped (given a
//!   non-decreasing `now`).

#![warn(missing_docs)]

mod classify;
mod config;
mod effect;
mod hash;
mod ids;
mod incident;
mod meaning;
pub mod oncall;
mod signal;
mod snapshot;
mod time;
mod triage;
mod window;

pub use classify::{Class, Classifier, Event, Kind, cid_kind, lane_of, mqtt_kind, sia_kind};
pub use config::{
    CodeOverride, CodeRef, Config, ConfigError, Overrides, Policy, PolicyOverride,
    PriorityOverride, RunawayConfig, SlaConfig, SlaThresholds, StormConfig, SupervisionConfig,
};
pub use effect::{AuditAction, AuditEntry, Change, Effect, InputKind, RejectReason};
pub use ids::{Actor, DeviceId, IncidentId, Name, OutcomeCode, OutcomeCodeError, Role, SignalId};
pub use incident::{
    AutoReason, GroupInfo, Incident, IncidentState, Resolution, RunawayInfo, SlaFired, Subject,
};
pub use meaning::{
    DECODED_VERSION, Decoded, MAX_SUMMARY_BYTES, Problem, clip, describe, drive_signal_path,
};
pub use signal::{DeviceInfo, SignalIn, SignalWhat, Source};
pub use snapshot::{
    DedupeSnapshot, DeviceSnapshot, RateSnapshot, SNAPSHOT_VERSION, SeenSnapshot, Snapshot,
    StormReport, StormSnapshot,
};
pub use time::{Micros, Timestamp};
pub use triage::{Input, QueueEntry, RestoreError, Triage};
pub use warden_protocol::mqtt::AlarmKind;
pub use warden_types::{Priority, Qualifier};
