//! The triage state machine.

use std::collections::{BTreeSet, HashMap, VecDeque};
use std::fmt::Write as _;

use serde::{Deserialize, Serialize};
use warden_types::Priority;

use crate::classify::{Class, Classifier, Event, Kind};
use crate::config::{Config, SlaConfig};
use crate::effect::{AuditAction, AuditEntry, Change, Effect, InputKind, RejectReason};
use crate::hash::FastBuild;
use crate::ids::{Actor, DeviceId, IncidentId, Name, OutcomeCode, Role, SignalId};
use crate::incident::{
    AutoReason, GroupInfo, Incident, IncidentState, Resolution, RunawayInfo, SlaFired, Subject,
};
use crate::signal::{DeviceInfo, SignalIn, SignalWhat};
use crate::snapshot::{
    DedupeSnapshot, DeviceSnapshot, RateSnapshot, SNAPSHOT_VERSION, SeenSnapshot, Snapshot,
    StormReport, StormSnapshot,
};
use crate::time::{Micros, Timestamp};
use crate::window::{Seen, Window};

mod incidents;
mod registry;
mod signals;
mod snapshots;
mod timers;

/// One input to the core.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Input {
    /// A durable signal.
    Signal(SignalIn),
    /// An operator takes the incident (one holder at most).
    Claim {
        /// Which.
        incident: IncidentId,
        /// Who.
        actor: Actor,
    },
    /// The holder (or a supervisor) puts the incident back in the queue.
    Release {
        /// Which.
        incident: IncidentId,
        /// Who.
        actor: Actor,
    },
    /// Anyone writes a note on an open incident.
    Note {
        /// Which.
        incident: IncidentId,
        /// Who.
        actor: Actor,
        /// The note.
        text: String,
    },
    /// The holder (or a supervisor) closes the incident.
    Resolve {
        /// Which.
        incident: IncidentId,
        /// Who.
        actor: Actor,
        /// How it ended.
        outcome: OutcomeCode,
    },
    /// A supervisor takes the incident from its holder (or claims it if unclaimed).
    TakeOver {
        /// Which.
        incident: IncidentId,
        /// The supervisor.
        actor: Actor,
    },
    /// Time passed: fire every timer due at `now`.
    Tick,
    /// Replace the configuration (refused if invalid).
    Configure(Box<Config>),
    /// Add or update a device in the registry (no effects).
    RegisterDevice(DeviceInfo),
    /// Remove a device from the registry; its open incidents stay.
    ForgetDevice {
        /// `devices.id`.
        device: DeviceId,
    },
    /// Replace the whole state with a snapshot (after a restart).
    Restore(Box<Snapshot>),
}

/// One row of the operators' queue view.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct QueueEntry {
    /// The incident.
    pub incident: IncidentId,
    /// Its lane.
    pub priority: Priority,
    /// The cause.
    pub kind: Kind,
    /// What it is about.
    pub subject: Subject,
    /// When its first signal arrived.
    pub arrived_at: Timestamp,
    /// Signals so far.
    pub signal_count: u32,
}

/// Why a snapshot could not be restored.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RestoreError {
    /// The snapshot's format version is not this one.
    #[error("snapshot version {0} is not supported (this core writes version {SNAPSHOT_VERSION})")]
    UnsupportedVersion(u32),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Timer {
    Supervision(DeviceId),
    Sla(IncidentId),
}

/// What the runaway rule says about one signal.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum RunawayHit {
    /// Not a runaway: handle the signal normally.
    No,
    /// The unit already has an open runaway incident: fold into it.
    Fold(IncidentId),
    /// This signal exceeded the rate (with this many in the window): open one.
    Detected(u32),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum SlaStage {
    Warn,
    Overflow,
    Critical,
}

/// A registered device and its supervision state.
#[derive(Debug, Clone)]
struct Dev {
    info: DeviceInfo,
    last_heard: Option<Timestamp>,
    /// When a fail-to-report is due; `None` when unsupervised or already reported.
    due: Option<Timestamp>,
    /// A fail-to-report was raised and the unit has not been heard since.
    ftr_outstanding: bool,
    /// Where this device's supervision timer sits (at or before `due`).
    timer_at: Option<Timestamp>,
}

/// Identifies a storm group: one cause in one area.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
struct StormKey {
    area: Option<Name>,
    kind: Kind,
}

#[derive(Debug, Clone, Default)]
struct Storm {
    /// Individual incidents opened within the window, oldest first, one per unit.
    recent: VecDeque<StormReport>,
    /// The open group incident, if any.
    group: Option<IncidentId>,
}

/// The deduplication key: the same cause at the same subject doing the same thing.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
struct DedupeKey {
    subject: Subject,
    kind: Kind,
    event: Event,
    tag: u32,
}

/// A signal on its way through the rules.
struct Sig {
    id: Option<SignalId>,
    subject: Subject,
    kind: Kind,
    event: Event,
    priority: Priority,
    received_at: Timestamp,
    summary: Option<String>,
    detail: String,
}

/// What to open.
struct Opening {
    subject: Subject,
    kind: Kind,
    priority: Priority,
    arrived_at: Timestamp,
    signal: Option<SignalId>,
    summary: Option<String>,
    detail: String,
    group: Option<Box<GroupInfo>>,
    runaway: Option<Box<RunawayInfo>>,
    signal_count: u32,
}

impl Opening {
    fn from_sig(sig: Sig) -> Self {
        Opening {
            subject: sig.subject,
            kind: sig.kind,
            priority: sig.priority,
            arrived_at: sig.received_at,
            signal: sig.id,
            summary: sig.summary,
            detail: sig.detail,
            group: None,
            runaway: None,
            signal_count: 1,
        }
    }
}

const fn lane(p: Priority) -> usize {
    match p {
        Priority::LifeCritical => 0,
        Priority::Urgent => 1,
        Priority::Technical => 2,
        Priority::Information => 3,
    }
}

fn count(n: usize) -> u32 {
    u32::try_from(n).unwrap_or(u32::MAX)
}

/// The pure triage core. See the crate documentation for the rules and invariants.
#[derive(Debug, Clone)]
pub struct Triage {
    config: Config,
    classifier: Classifier,
    next_id: u64,
    devices: HashMap<DeviceId, Dev, FastBuild>,
    incidents: HashMap<IncidentId, Incident, FastBuild>,
    by_key: HashMap<(Subject, Kind), IncidentId, FastBuild>,
    dedupe: Window<DedupeKey>,
    seen: Window<SignalId>,
    rates: HashMap<DeviceId, VecDeque<Timestamp>, FastBuild>,
    storms: HashMap<StormKey, Storm, FastBuild>,
    queues: [BTreeSet<(Timestamp, IncidentId)>; 4],
    timers: BTreeSet<(Timestamp, Timer)>,
    /// When idle runaway and storm windows are next swept (on a tick).
    next_sweep: Timestamp,
    offers: Vec<Effect>,
    /// The final records of the incidents the last input resolved (they have left
    /// `incidents`); cleared at the start of every input.
    closed: Vec<Incident>,
}

impl Default for Triage {
    fn default() -> Self {
        Triage::new(Config::default())
    }
}

impl Triage {
    /// A core with no devices and no incidents. An invalid configuration is sanitised
    /// ([`Config::sanitised`]); use [`Triage::try_new`] to refuse it instead.
    pub fn new(config: Config) -> Self {
        let config = config.sanitised();
        Triage {
            classifier: Classifier::new(&config),
            config,
            next_id: 1,
            devices: HashMap::with_hasher(FastBuild),
            incidents: HashMap::with_hasher(FastBuild),
            by_key: HashMap::with_hasher(FastBuild),
            dedupe: Window::default(),
            seen: Window::default(),
            rates: HashMap::with_hasher(FastBuild),
            storms: HashMap::with_hasher(FastBuild),
            queues: Default::default(),
            timers: BTreeSet::new(),
            next_sweep: Timestamp(i64::MIN),
            offers: Vec::new(),
            closed: Vec::new(),
        }
    }

    /// A core with no devices and no incidents, refusing an invalid configuration.
    pub fn try_new(config: Config) -> Result<Self, crate::config::ConfigError> {
        config.validate()?;
        Ok(Triage::new(config))
    }

    /// Handles one input at `now` and returns its effects, in order.
    pub fn handle(&mut self, input: Input, now: Timestamp) -> Vec<Effect> {
        let mut out = Vec::new();
        self.handle_into(input, now, &mut out);
        out
    }

    /// Handles one input at `now`, appending its effects to `out` (reuse the vector to
    /// avoid an allocation per input). Offers produced by one input are appended last,
    /// life-critical first.
    pub fn handle_into(&mut self, input: Input, now: Timestamp, out: &mut Vec<Effect>) {
        self.closed.clear();
        match input {
            Input::Signal(s) => self.on_signal(s, now, out),
            Input::Claim { incident, actor } => self.on_claim(incident, actor, now, out),
            Input::Release { incident, actor } => self.on_release(incident, actor, now, out),
            Input::Note {
                incident,
                actor,
                text,
            } => self.on_note(incident, actor, text, now, out),
            Input::Resolve {
                incident,
                actor,
                outcome,
            } => self.on_resolve(incident, actor, outcome, now, out),
            Input::TakeOver { incident, actor } => self.on_take_over(incident, actor, now, out),
            Input::Tick => self.on_tick(now, out),
            Input::Configure(c) => self.on_configure(*c, now, out),
            Input::RegisterDevice(info) => self.register(info, now),
            Input::ForgetDevice { device } => self.on_forget(device, now, out),
            Input::Restore(s) => self.on_restore(*s, now, out),
        }
        if !self.offers.is_empty() {
            self.offers.sort_by_key(|e| match e {
                Effect::Offer {
                    incident,
                    priority,
                    arrived_at,
                    ..
                } => (lane(*priority), *arrived_at, *incident),
                _ => (usize::MAX, Timestamp(i64::MAX), IncidentId(u64::MAX)),
            });
            out.append(&mut self.offers);
        }
    }

    /// The earliest instant at which a [`Input::Tick`] may have work to do (an answer-time
    /// threshold, a fail-to-report). Never later than the earliest real deadline; it may be
    /// earlier, in which case the tick only reschedules. `None` when nothing is pending.
    pub fn next_deadline(&self) -> Option<Timestamp> {
        self.timers.first().map(|(t, _)| *t)
    }

    /// The configuration in force.
    pub fn config(&self) -> &Config {
        &self.config
    }

    /// The compiled classification in force (clone it for the engine's lane router).
    pub fn classifier(&self) -> &Classifier {
        &self.classifier
    }

    /// Classifies a signal as the core would.
    pub fn classify(&self, s: &SignalIn) -> Class {
        self.classifier.classify(&s.what, s.device.as_ref())
    }

    /// An open incident.
    pub fn incident(&self, id: IncidentId) -> Option<&Incident> {
        self.incidents.get(&id)
    }

    /// The final records of the incidents the last input resolved, as they were closed
    /// (state, resolution, times). A resolved incident leaves the core, so this is the one
    /// chance to persist its whole record; the next input clears it.
    pub fn closed_by_last_input(&self) -> &[Incident] {
        &self.closed
    }

    /// Every open incident, ordered by id.
    pub fn open_incidents(&self) -> Vec<&Incident> {
        let mut v: Vec<&Incident> = self.incidents.values().collect();
        v.sort_by_key(|i| i.id);
        v
    }

    /// How many incidents are open.
    pub fn open_incident_count(&self) -> usize {
        self.incidents.len()
    }

    /// How many devices are registered.
    pub fn device_count(&self) -> usize {
        self.devices.len()
    }

    /// A registered device's info and when it was last heard.
    pub fn device(&self, id: DeviceId) -> Option<(&DeviceInfo, Option<Timestamp>)> {
        self.devices.get(&id).map(|d| (&d.info, d.last_heard))
    }

    /// The offered (unclaimed) incidents: life-critical first, then urgent, technical,
    /// information; oldest arrival first within a lane.
    pub fn queue(&self) -> impl Iterator<Item = &Incident> + '_ {
        self.queues
            .iter()
            .flat_map(|q| q.iter())
            .filter_map(|(_, id)| self.incidents.get(id))
    }

    /// The queue view as owned rows, in [`Triage::queue`] order.
    pub fn pending_offers(&self) -> Vec<QueueEntry> {
        self.queue()
            .map(|i| QueueEntry {
                incident: i.id,
                priority: i.priority,
                kind: i.kind,
                subject: i.subject.clone(),
                arrived_at: i.arrived_at,
                signal_count: i.signal_count,
            })
            .collect()
    }
}

/// Puts a device's supervision timer at or before its due time.
fn arm(timers: &mut BTreeSet<(Timestamp, Timer)>, id: DeviceId, d: &mut Dev) {
    let Some(due) = d.due else {
        return;
    };
    match d.timer_at {
        Some(t) if t <= due => {}
        Some(t) => {
            timers.remove(&(t, Timer::Supervision(id)));
            timers.insert((due, Timer::Supervision(id)));
            d.timer_at = Some(due);
        }
        None => {
            timers.insert((due, Timer::Supervision(id)));
            d.timer_at = Some(due);
        }
    }
}

/// The next answer-time threshold of an unanswered incident.
/// Where an incident's answer-time thresholds count from: its arrival, or the moment it
/// was last put back in the queue after an answer (a released incident waits again, and is
/// warned about and escalated again).
fn sla_base(inc: &Incident) -> Timestamp {
    inc.requeued_at.unwrap_or(inc.arrived_at)
}

fn sla_next(sla: &SlaConfig, inc: &Incident) -> Option<(Timestamp, SlaStage)> {
    if inc.state != IncidentState::Offered {
        return None;
    }
    let t = sla.for_priority(inc.priority)?;
    let (span, stage) = if !inc.sla.warned {
        (t.warn, SlaStage::Warn)
    } else if !inc.sla.overflowed {
        (t.overflow, SlaStage::Overflow)
    } else if !inc.sla.critical {
        (t.critical, SlaStage::Critical)
    } else {
        return None;
    };
    Some((sla_base(inc).saturating_add(span), stage))
}

fn audit(
    out: &mut Vec<Effect>,
    at: Timestamp,
    actor: Option<Actor>,
    incident: Option<IncidentId>,
    action: AuditAction,
    detail: String,
) {
    out.push(Effect::Audit(AuditEntry {
        at,
        actor,
        incident,
        action,
        detail,
    }));
}

fn auto_text(r: AutoReason) -> String {
    match r {
        AutoReason::Restored => "condition restored".to_owned(),
        AutoReason::Cancelled => "cancelled at the unit".to_owned(),
        AutoReason::DeviceHeard => "unit heard again".to_owned(),
        AutoReason::FoldedIntoGroup { group } => format!("folded into storm group {group}"),
    }
}

struct SubjectText<'a>(&'a Subject);

impl std::fmt::Display for SubjectText<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.0 {
            Subject::Device { id } => write!(f, "unit {id}"),
            Subject::Account { account } => write!(f, "unregistered unit {account}"),
            Subject::Link { link } => write!(f, "link {link}"),
            Subject::Group { area: Some(a) } => write!(f, "area {a}"),
            Subject::Group { area: None } => f.write_str("units without an area"),
        }
    }
}

const MAX_SUMMARY: usize = 200;

/// What an operator sees for an unknown code.
fn summary_of(what: &SignalWhat) -> String {
    let mut s = String::new();
    match what {
        SignalWhat::Unknown { raw_summary } => {
            for c in raw_summary.chars() {
                if s.len() + c.len_utf8() > MAX_SUMMARY {
                    s.push('…');
                    break;
                }
                s.push(c);
            }
        }
        other => describe_what(&mut s, other),
    }
    s
}

fn describe_what(s: &mut String, what: &SignalWhat) {
    let _ = match what {
        SignalWhat::ContactId { code, qualifier } => {
            let desc = warden_protocol::codes::contact_id(*code).map_or("unknown code", |c| {
                let d = c.describe();
                if d.is_empty() { "no description" } else { d }
            });
            write!(s, "contact id {code:03} {qualifier} ({desc})")
        }
        SignalWhat::Sia { code, restore } => write!(
            s,
            "sia {}{}{}",
            char::from(code[0]),
            char::from(code[1]),
            if *restore { " restore" } else { "" }
        ),
        SignalWhat::Mqtt { kind, restore } => write!(
            s,
            "mqtt {}{}",
            crate::classify::mqtt_kind(*kind),
            if *restore { " restore" } else { "" }
        ),
        SignalWhat::Scaip {
            status,
            device_type,
        } => write!(s, "scaip status {status:?} device type {device_type:?}"),
        SignalWhat::Heartbeat => write!(s, "heartbeat"),
        SignalWhat::Presence { online } => {
            write!(s, "{}", if *online { "online" } else { "offline" })
        }
        SignalWhat::LinkLost => write!(s, "link lost"),
        SignalWhat::LinkRestored => write!(s, "link restored"),
        SignalWhat::PathFault { detail } => write!(s, "path fault: {detail:.80}"),
        SignalWhat::SelfCheck {
            check,
            ok: false,
            detail,
        } => write!(s, "self-check {check} failed: {detail:.80}"),
        SignalWhat::SelfCheck {
            check, ok: true, ..
        } => write!(s, "self-check {check} passed"),
        SignalWhat::Unknown { raw_summary } => write!(s, "unknown: {raw_summary:.80}"),
    };
}

fn describe(s: &mut String, what: &SignalWhat, source: &str, link: &Name, id: SignalId) {
    describe_what(s, what);
    let _ = write!(s, " via {source} {link}, signal {id}");
}
