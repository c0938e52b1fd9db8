//! The triage state machine.

use std::collections::{BTreeSet, HashMap, VecDeque};
use std::fmt::Write as _;

use serde::{Deserialize, Serialize};
use warden_types::Priority;

use crate::classify::{Class, Classifier, Event, Kind};
use crate::config::{Config, SlaConfig};
use crate::effect::{AuditAction, AuditEntry, Change, Effect, InputKind, RejectReason};
use crate::hash::FastBuild;
use crate::ids::{Actor, IncidentId, Name, OutcomeCode, Role, SignalId};
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
        device: i64,
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
    Supervision(i64),
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
    devices: HashMap<i64, Dev, FastBuild>,
    incidents: HashMap<IncidentId, Incident, FastBuild>,
    by_key: HashMap<(Subject, Kind), IncidentId, FastBuild>,
    dedupe: Window<DedupeKey>,
    seen: Window<SignalId>,
    rates: HashMap<i64, VecDeque<Timestamp>, FastBuild>,
    storms: HashMap<StormKey, Storm, FastBuild>,
    queues: [BTreeSet<(Timestamp, IncidentId)>; 4],
    timers: BTreeSet<(Timestamp, Timer)>,
    /// When idle runaway and storm windows are next swept (on a tick).
    next_sweep: Timestamp,
    offers: Vec<Effect>,
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
    pub fn device(&self, id: i64) -> Option<(&DeviceInfo, Option<Timestamp>)> {
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

    // ----- signals -------------------------------------------------------------------

    fn on_signal(&mut self, s: SignalIn, now: Timestamp, out: &mut Vec<Effect>) {
        let dev_id = s.device.as_ref().map(|d| d.id);
        let SignalIn {
            id,
            source,
            link,
            account,
            device,
            what,
            received_at,
        } = s;
        if let Some(info) = device {
            self.register(info, now);
        }
        let class = {
            let info = dev_id.and_then(|d| self.devices.get(&d)).map(|d| &d.info);
            self.classifier.classify(&what, info)
        };
        let link_level = matches!(what, SignalWhat::LinkLost | SignalWhat::LinkRestored);
        if let Some(dev) = dev_id
            && !link_level
            && !matches!(what, SignalWhat::Presence { online: false })
        {
            self.heard(dev, received_at, Some(id), now, out);
        }
        if class.event == Event::Heard {
            return;
        }
        let subject = match (link_level, dev_id, account) {
            (true, _, _) | (false, None, None) => Subject::Link { link: link.clone() },
            (false, Some(id), _) => Subject::Device { id },
            (false, None, Some(account)) => Subject::Account { account },
        };
        let informational = class.priority == Priority::Information
            && class.kind != Kind::Unknown
            && class.event != Event::Cancel;
        let dkey = if informational {
            None
        } else {
            let dkey = DedupeKey {
                subject: subject.clone(),
                kind: class.kind,
                event: class.event,
                tag: class.tag,
            };
            if let Some(seen) = self.seen.get(&id, now) {
                out.push(Effect::Duplicate {
                    signal: id,
                    incident: seen.incident,
                });
                return;
            }
            if let Some(prev) = self.dedupe.get(&dkey, now) {
                let close = received_at.since(prev.last).0.unsigned_abs()
                    <= self.config.dedupe_window.0.unsigned_abs();
                // A duplicate is dropped only while what it joined is still open: a press
                // after its incident was resolved is a new press, never swallowed.
                let target_open = prev
                    .incident
                    .is_none_or(|i| self.incidents.contains_key(&i));
                if close && target_open {
                    out.push(Effect::Duplicate {
                        signal: id,
                        incident: prev.incident,
                    });
                    return;
                }
            }
            Some(dkey)
        };
        // Life-critical signals are never counted or folded.
        let runaway = match dev_id {
            Some(dev) if class.priority != Priority::LifeCritical && !link_level => {
                self.runaway_check(dev, received_at)
            }
            _ => RunawayHit::No,
        };
        if informational && runaway == RunawayHit::No {
            // A test, an opening or closing: proof of life, already recorded above.
            return;
        }
        let summary = (class.kind == Kind::Unknown).then(|| unknown_summary(&what));
        let mut detail = String::with_capacity(96);
        describe(&mut detail, &what, source.as_str(), &link, id);
        let sig = Sig {
            id: Some(id),
            subject,
            kind: class.kind,
            event: class.event,
            priority: class.priority,
            received_at,
            summary,
            detail,
        };
        let touched = match (runaway, dev_id) {
            (RunawayHit::No, _) | (_, None) => match sig.event {
                Event::Raise | Event::Status => Some(self.raise(sig, now, out)),
                Event::Restore => self.restore(sig, AutoReason::Restored, now, out),
                Event::Cancel => self.cancel(&sig, now, out),
                Event::Heard => None,
            },
            (hit, Some(dev)) => Some(self.runaway_fold(hit, dev, &sig, now, out)),
        };
        if let Some(dkey) = dkey {
            let keep = self.config.dedupe_window;
            self.seen.insert(id, received_at, touched, now, keep);
            self.dedupe.insert(dkey, received_at, touched, now, keep);
        }
    }

    /// Updates supervision for a unit that was just heard from.
    fn heard(
        &mut self,
        dev: i64,
        received_at: Timestamp,
        signal: Option<SignalId>,
        now: Timestamp,
        out: &mut Vec<Effect>,
    ) {
        let Some(d) = self.devices.get_mut(&dev) else {
            return;
        };
        if d.last_heard.is_none_or(|l| received_at > l) {
            d.last_heard = Some(received_at);
        }
        let outstanding = std::mem::take(&mut d.ftr_outstanding);
        if let Some(iv) = d.info.test_interval {
            let base = d.last_heard.unwrap_or(received_at);
            d.due = Some(base.saturating_add(self.config.supervision.allowance(iv)));
            arm(&mut self.timers, dev, d);
        }
        if outstanding {
            let priority = self
                .classifier
                .priority_of(Kind::FailToReport, Some(&d.info));
            let sig = Sig {
                id: signal,
                subject: Subject::Device { id: dev },
                kind: Kind::FailToReport,
                event: Event::Restore,
                priority,
                received_at,
                summary: None,
                detail: format!("unit {dev} heard again"),
            };
            self.restore(sig, AutoReason::DeviceHeard, now, out);
        }
    }

    /// Counts a non-life-critical signal towards the unit's rate and says whether it is to be
    /// folded: into the unit's open runaway incident, or into a new one because the rate is
    /// exceeded now.
    fn runaway_check(&mut self, dev: i64, received_at: Timestamp) -> RunawayHit {
        let key = (Subject::Device { id: dev }, Kind::Runaway);
        if let Some(&rid) = self.by_key.get(&key) {
            return RunawayHit::Fold(rid);
        }
        let max = self.config.runaway.max_signals as usize;
        let horizon = received_at.saturating_sub(self.config.runaway.window);
        let q = self.rates.entry(dev).or_default();
        q.push_back(received_at);
        while q.front().is_some_and(|t| *t < horizon) || q.len() > max.saturating_add(1) {
            q.pop_front();
        }
        if q.len() <= max {
            return RunawayHit::No;
        }
        let signals = count(q.len());
        q.clear();
        RunawayHit::Detected(signals)
    }

    /// Folds a signal into the unit's runaway incident, opening it if the rate was just
    /// exceeded.
    fn runaway_fold(
        &mut self,
        hit: RunawayHit,
        dev: i64,
        sig: &Sig,
        now: Timestamp,
        out: &mut Vec<Effect>,
    ) -> IncidentId {
        if let RunawayHit::Fold(rid) = hit
            && let Some(inc) = self.incidents.get_mut(&rid)
        {
            inc.signal_count = inc.signal_count.saturating_add(1);
            inc.last_signal_at = inc.last_signal_at.max(sig.received_at);
            let r = inc.runaway.get_or_insert_default();
            r.folded = r.folded.saturating_add(1);
            let c = r.kinds.entry(sig.kind).or_default();
            *c = c.saturating_add(1);
            let folded = r.folded;
            out.push(Effect::IncidentUpdated {
                incident: rid,
                change: Change::RunawaySignal {
                    kind: sig.kind,
                    folded,
                },
                signal: sig.id,
                signal_count: inc.signal_count,
            });
            audit(
                out,
                now,
                None,
                Some(rid),
                AuditAction::RunawaySignal,
                format!("folded {} ({} so far): {}", sig.kind, folded, sig.detail),
            );
            return rid;
        }
        let signals = match hit {
            RunawayHit::Detected(n) => n,
            _ => 1,
        };
        let priority = {
            let info = self.devices.get(&dev).map(|d| &d.info);
            self.classifier.priority_of(Kind::Runaway, info)
        };
        let mut kinds = std::collections::BTreeMap::new();
        kinds.insert(sig.kind, 1);
        let id = self.open(
            Opening {
                subject: Subject::Device { id: dev },
                kind: Kind::Runaway,
                priority,
                arrived_at: sig.received_at,
                signal: sig.id,
                summary: None,
                detail: format!(
                    "unit {dev} sent {signals} signals within {}; further signals are folded here: {}",
                    self.config.runaway.window, sig.detail
                ),
                group: None,
                runaway: Some(Box::new(RunawayInfo { folded: 1, kinds })),
                signal_count: 1,
            },
            now,
            out,
        );
        out.push(Effect::RunawayDetected {
            incident: id,
            device: dev,
            signals,
        });
        audit(
            out,
            now,
            None,
            Some(id),
            AuditAction::RunawayDetected,
            format!("unit {dev}: {signals} signals within the runaway window"),
        );
        id
    }

    /// A new alarm or trouble: join the open incident of the same cause, join or form a
    /// storm group, or open a new incident.
    fn raise(&mut self, sig: Sig, now: Timestamp, out: &mut Vec<Effect>) -> IncidentId {
        let key = (sig.subject.clone(), sig.kind);
        if let Some(&id) = self.by_key.get(&key) {
            self.join(id, &sig, now, out);
            return id;
        }
        if sig.priority == Priority::Technical
            && sig.kind.is_groupable()
            && let Some(dev) = sig.subject.device()
        {
            let area = self.devices.get(&dev).and_then(|d| d.info.area.clone());
            let skey = StormKey {
                area,
                kind: sig.kind,
            };
            return self.storm_raise(skey, dev, sig, now, out);
        }
        self.open(Opening::from_sig(sig), now, out)
    }

    fn join(&mut self, id: IncidentId, sig: &Sig, now: Timestamp, out: &mut Vec<Effect>) {
        let Some(inc) = self.incidents.get_mut(&id) else {
            return;
        };
        inc.signal_count = inc.signal_count.saturating_add(1);
        inc.last_signal_at = inc.last_signal_at.max(sig.received_at);
        inc.condition_active = true;
        if sig.summary.is_some() {
            inc.summary.clone_from(&sig.summary);
        }
        out.push(Effect::IncidentUpdated {
            incident: id,
            change: Change::Signal { event: sig.event },
            signal: sig.id,
            signal_count: inc.signal_count,
        });
        audit(
            out,
            now,
            None,
            Some(id),
            AuditAction::SignalJoined,
            format!("signal {} joined: {}", inc.signal_count, sig.detail),
        );
    }

    fn storm_raise(
        &mut self,
        skey: StormKey,
        dev: i64,
        sig: Sig,
        now: Timestamp,
        out: &mut Vec<Effect>,
    ) -> IncidentId {
        let group = self.storms.get(&skey).and_then(|s| s.group);
        if let Some(g) = group
            && self.incidents.contains_key(&g)
        {
            self.group_join(g, dev, &sig, now, out);
            return g;
        }
        let threshold = self.config.storm.devices as usize;
        let horizon = sig.received_at.saturating_sub(self.config.storm.window);
        let storm = self.storms.entry(skey.clone()).or_default();
        storm.group = None;
        while storm.recent.front().is_some_and(|r| r.at < horizon) {
            storm.recent.pop_front();
        }
        storm.recent.retain(|r| r.device != dev);
        if storm.recent.len() >= threshold {
            let recent: Vec<StormReport> = storm.recent.drain(..).collect();
            return self.form_group(skey, dev, recent, &sig, now, out);
        }
        let at = sig.received_at;
        let id = self.open(Opening::from_sig(sig), now, out);
        self.storms
            .entry(skey)
            .or_default()
            .recent
            .push_back(StormReport {
                at,
                device: dev,
                incident: id,
            });
        id
    }

    fn form_group(
        &mut self,
        skey: StormKey,
        dev: i64,
        recent: Vec<StormReport>,
        sig: &Sig,
        now: Timestamp,
        out: &mut Vec<Effect>,
    ) -> IncidentId {
        let arrived_at = recent
            .iter()
            .map(|r| r.at)
            .chain([sig.received_at])
            .min()
            .unwrap_or(sig.received_at);
        let area_text = skey.area.as_ref().map_or("no area", |a| a.as_str());
        let gid = self.open(
            Opening {
                subject: Subject::Group {
                    area: skey.area.clone(),
                },
                kind: skey.kind,
                priority: Priority::Technical,
                arrived_at,
                signal: sig.id,
                summary: None,
                detail: format!(
                    "storm: more than {} units in {} report {} within {}",
                    self.config.storm.devices, area_text, skey.kind, self.config.storm.window
                ),
                group: Some(Box::default()),
                runaway: None,
                signal_count: 0,
            },
            now,
            out,
        );
        self.storms.entry(skey.clone()).or_default().group = Some(gid);
        let mut info = GroupInfo::default();
        let mut signals: u32 = 0;
        let mut folded = Vec::new();
        for r in recent {
            let key = (Subject::Device { id: r.device }, skey.kind);
            let foldable = self.by_key.get(&key) == Some(&r.incident)
                && self
                    .incidents
                    .get(&r.incident)
                    .is_some_and(|i| i.state != IncidentState::Claimed);
            if foldable {
                signals = signals.saturating_add(
                    self.incidents
                        .get(&r.incident)
                        .map_or(1, |i| i.signal_count),
                );
                self.resolve(
                    r.incident,
                    Resolution::Auto {
                        reason: AutoReason::FoldedIntoGroup { group: gid },
                    },
                    None,
                    now,
                    out,
                );
                info.members.insert(r.device);
                info.active.insert(r.device);
                folded.push(r.incident);
            } else if !self.incidents.contains_key(&r.incident) {
                // It reported the cause within the window but has restored since.
                info.members.insert(r.device);
            }
        }
        info.members.insert(dev);
        info.active.insert(dev);
        signals = signals.saturating_add(1);
        let devices = count(info.members.len());
        if let Some(g) = self.incidents.get_mut(&gid) {
            g.signal_count = signals;
            g.group = Some(Box::new(info));
        }
        let mut detail = format!("{devices} units grouped; folded");
        for f in &folded {
            let _ = write!(detail, " {f}");
        }
        out.push(Effect::StormGrouped {
            incident: gid,
            area: skey.area,
            kind: skey.kind,
            devices,
            folded,
        });
        audit(out, now, None, Some(gid), AuditAction::StormGrouped, detail);
        gid
    }

    fn group_join(
        &mut self,
        gid: IncidentId,
        dev: i64,
        sig: &Sig,
        now: Timestamp,
        out: &mut Vec<Effect>,
    ) {
        let Some(inc) = self.incidents.get_mut(&gid) else {
            return;
        };
        inc.signal_count = inc.signal_count.saturating_add(1);
        inc.last_signal_at = inc.last_signal_at.max(sig.received_at);
        inc.condition_active = true;
        let g = inc.group.get_or_insert_default();
        g.members.insert(dev);
        g.active.insert(dev);
        let (devices, active) = (count(g.members.len()), count(g.active.len()));
        out.push(Effect::IncidentUpdated {
            incident: gid,
            change: Change::GroupMember {
                device: dev,
                devices,
                active,
            },
            signal: sig.id,
            signal_count: inc.signal_count,
        });
        audit(
            out,
            now,
            None,
            Some(gid),
            AuditAction::GroupJoined,
            format!(
                "unit {dev} joined ({devices} units, {active} in fault): {}",
                sig.detail
            ),
        );
    }

    /// A condition cleared: record it on the open incident (or storm group) and close it
    /// when the kind's policy says so, it is not life-critical and nobody holds it.
    fn restore(
        &mut self,
        sig: Sig,
        reason: AutoReason,
        now: Timestamp,
        out: &mut Vec<Effect>,
    ) -> Option<IncidentId> {
        let policy = self.classifier.policy(sig.kind);
        let key = (sig.subject.clone(), sig.kind);
        if let Some(&id) = self.by_key.get(&key)
            && let Some(inc) = self.incidents.get_mut(&id)
        {
            inc.restore_count = inc.restore_count.saturating_add(1);
            inc.signal_count = inc.signal_count.saturating_add(1);
            inc.last_signal_at = inc.last_signal_at.max(sig.received_at);
            inc.condition_active = false;
            let heard = matches!(reason, AutoReason::DeviceHeard);
            out.push(Effect::IncidentUpdated {
                incident: id,
                change: if heard {
                    Change::DeviceHeard
                } else {
                    Change::Restored
                },
                signal: sig.id,
                signal_count: inc.signal_count,
            });
            audit(
                out,
                now,
                None,
                Some(id),
                if heard {
                    AuditAction::DeviceHeard
                } else {
                    AuditAction::RestoreRecorded
                },
                sig.detail.clone(),
            );
            let closable = policy.auto_close_on_restore
                && inc.priority != Priority::LifeCritical
                && inc.state != IncidentState::Claimed;
            if closable {
                self.resolve(id, Resolution::Auto { reason }, None, now, out);
            }
            return Some(id);
        }
        if sig.kind.is_groupable()
            && let Some(dev) = sig.subject.device()
        {
            let area = self.devices.get(&dev).and_then(|d| d.info.area.clone());
            let skey = StormKey {
                area,
                kind: sig.kind,
            };
            if let Some(gid) = self.storms.get(&skey).and_then(|s| s.group)
                && let Some(inc) = self.incidents.get_mut(&gid)
                && let Some(g) = inc.group.as_mut()
                && g.active.remove(&dev)
            {
                let active = count(g.active.len());
                inc.restore_count = inc.restore_count.saturating_add(1);
                inc.signal_count = inc.signal_count.saturating_add(1);
                inc.last_signal_at = inc.last_signal_at.max(sig.received_at);
                if active == 0 {
                    inc.condition_active = false;
                }
                out.push(Effect::IncidentUpdated {
                    incident: gid,
                    change: Change::GroupMemberRestored {
                        device: dev,
                        active,
                    },
                    signal: sig.id,
                    signal_count: inc.signal_count,
                });
                audit(
                    out,
                    now,
                    None,
                    Some(gid),
                    AuditAction::GroupMemberRestored,
                    format!(
                        "unit {dev} restored ({active} still in fault): {}",
                        sig.detail
                    ),
                );
                let closable = active == 0
                    && policy.auto_close_on_restore
                    && inc.priority != Priority::LifeCritical
                    && inc.state != IncidentState::Claimed;
                if closable {
                    self.resolve(gid, Resolution::Auto { reason }, None, now, out);
                }
                return Some(gid);
            }
        }
        if sig.kind == Kind::Unknown {
            // An unknown code is shown whatever its qualifier.
            return Some(self.raise(sig, now, out));
        }
        if sig.id.is_some() && sig.kind.is_alarm() {
            // An alarm's restore with no open incident: usually the alarm was resolved
            // before the unit reset, but it may also mean the alarm itself never arrived.
            // Recorded, so the trail shows it either way.
            audit(
                out,
                now,
                None,
                None,
                AuditAction::RestoreRecorded,
                format!(
                    "restore with no open {} incident for {}: {}",
                    sig.kind.as_str(),
                    SubjectText(&sig.subject),
                    sig.detail
                ),
            );
        }
        None
    }

    /// A cancel/reset: recorded on every open alarm incident of the subject.
    fn cancel(&mut self, sig: &Sig, now: Timestamp, out: &mut Vec<Effect>) -> Option<IncidentId> {
        let mut touched = None;
        for kind in Kind::ALL {
            if !kind.is_alarm() {
                continue;
            }
            let key = (sig.subject.clone(), kind);
            let Some(&id) = self.by_key.get(&key) else {
                continue;
            };
            let Some(inc) = self.incidents.get_mut(&id) else {
                continue;
            };
            inc.cancelled_at = Some(sig.received_at);
            inc.signal_count = inc.signal_count.saturating_add(1);
            inc.last_signal_at = inc.last_signal_at.max(sig.received_at);
            out.push(Effect::IncidentUpdated {
                incident: id,
                change: Change::Cancelled,
                signal: sig.id,
                signal_count: inc.signal_count,
            });
            let closable = self.classifier.policy(kind).auto_close_on_cancel
                && inc.priority != Priority::LifeCritical
                && inc.state != IncidentState::Claimed;
            let note = if closable {
                "cancel recorded; closed by policy"
            } else {
                "cancel recorded; an operator must close the incident"
            };
            audit(
                out,
                now,
                None,
                Some(id),
                AuditAction::CancelRecorded,
                format!("{note}: {}", sig.detail),
            );
            if closable {
                self.resolve(
                    id,
                    Resolution::Auto {
                        reason: AutoReason::Cancelled,
                    },
                    None,
                    now,
                    out,
                );
            }
            touched = touched.or(Some(id));
        }
        touched
    }

    // ----- incidents -----------------------------------------------------------------

    fn open(&mut self, o: Opening, now: Timestamp, out: &mut Vec<Effect>) -> IncidentId {
        let id = IncidentId(self.next_id);
        self.next_id = self.next_id.saturating_add(1);
        let device = o.subject.device();
        let (client, area) = match (&o.subject, device.and_then(|d| self.devices.get(&d))) {
            (_, Some(d)) => (d.info.client, d.info.area.clone()),
            (Subject::Group { area }, None) => (None, area.clone()),
            _ => (None, None),
        };
        out.push(Effect::IncidentOpened {
            incident: id,
            kind: o.kind,
            priority: o.priority,
            subject: o.subject.clone(),
            device,
            client,
            area: area.clone(),
            arrived_at: o.arrived_at,
            signal: o.signal,
            summary: o.summary.clone(),
        });
        audit(
            out,
            now,
            None,
            Some(id),
            AuditAction::Opened,
            format!(
                "{} ({}) at {}: {}",
                o.kind,
                o.priority,
                SubjectText(&o.subject),
                o.detail
            ),
        );
        let inc = Incident {
            id,
            subject: o.subject.clone(),
            kind: o.kind,
            priority: o.priority,
            state: IncidentState::Raised,
            holder: None,
            device,
            client,
            area,
            arrived_at: o.arrived_at,
            raised_at: now,
            offered_at: None,
            claimed_at: None,
            answer_time: None,
            resolved_at: None,
            resolution: None,
            first_signal: o.signal,
            last_signal_at: o.arrived_at,
            signal_count: o.signal_count,
            restore_count: 0,
            condition_active: true,
            cancelled_at: None,
            notes: 0,
            sla: SlaFired::default(),
            summary: o.summary,
            group: o.group,
            runaway: o.runaway,
        };
        self.by_key.insert((o.subject, o.kind), id);
        self.incidents.insert(id, inc);
        self.enqueue(id, now, out);
        if let Some(inc) = self.incidents.get(&id)
            && let Some((due, _)) = sla_next(&self.config.sla, inc)
        {
            self.timers.insert((due, Timer::Sla(id)));
        }
        id
    }

    fn enqueue(&mut self, id: IncidentId, now: Timestamp, out: &mut Vec<Effect>) {
        let Some(inc) = self.incidents.get_mut(&id) else {
            return;
        };
        inc.state = IncidentState::Offered;
        inc.holder = None;
        inc.offered_at = Some(now);
        self.queues[lane(inc.priority)].insert((inc.arrived_at, id));
        audit(
            out,
            now,
            None,
            Some(id),
            AuditAction::Offered,
            format!("in the {} queue", inc.priority),
        );
        self.offers.push(Effect::Offer {
            incident: id,
            priority: inc.priority,
            kind: inc.kind,
            arrived_at: inc.arrived_at,
        });
    }

    /// Closes an incident. An automatic resolution of a life-critical incident is refused
    /// here, whatever the caller thought: only an operator closes those.
    fn resolve(
        &mut self,
        id: IncidentId,
        resolution: Resolution,
        actor: Option<Actor>,
        now: Timestamp,
        out: &mut Vec<Effect>,
    ) -> bool {
        let Some(inc) = self.incidents.get(&id) else {
            return false;
        };
        if matches!(resolution, Resolution::Auto { .. }) && inc.priority == Priority::LifeCritical {
            return false;
        }
        let Some(mut inc) = self.incidents.remove(&id) else {
            return false;
        };
        let key = (inc.subject.clone(), inc.kind);
        if self.by_key.get(&key) == Some(&id) {
            self.by_key.remove(&key);
        }
        self.queues[lane(inc.priority)].remove(&(inc.arrived_at, id));
        if let Subject::Group { area } = &inc.subject {
            let skey = StormKey {
                area: area.clone(),
                kind: inc.kind,
            };
            if let Some(s) = self.storms.get_mut(&skey)
                && s.group == Some(id)
            {
                s.group = None;
            }
        }
        inc.state = IncidentState::Resolved;
        inc.resolved_at = Some(now);
        inc.holder = None;
        inc.resolution = Some(resolution.clone());
        let (action, detail) = match &resolution {
            Resolution::Operator { outcome, .. } => {
                (AuditAction::Resolved, format!("resolved: {outcome}"))
            }
            Resolution::Auto {
                reason: AutoReason::FoldedIntoGroup { group },
            } => (
                AuditAction::FoldedIntoGroup,
                format!("folded into storm group {group}"),
            ),
            Resolution::Auto { reason } => (
                AuditAction::Resolved,
                format!("closed by policy: {}", auto_text(*reason)),
            ),
        };
        out.push(Effect::Resolved {
            incident: id,
            resolution,
            answer_time: inc.answer_time,
            signal_count: inc.signal_count,
        });
        audit(out, now, actor, Some(id), action, detail);
        true
    }

    fn find(&self, id: IncidentId) -> Result<&Incident, RejectReason> {
        self.incidents
            .get(&id)
            .ok_or(if id.0 >= 1 && id.0 < self.next_id {
                RejectReason::AlreadyResolved
            } else {
                RejectReason::UnknownIncident
            })
    }

    fn claim(
        &mut self,
        id: IncidentId,
        actor: Actor,
        taken_from: Option<Actor>,
        now: Timestamp,
        out: &mut Vec<Effect>,
    ) {
        let Some(inc) = self.incidents.get_mut(&id) else {
            return;
        };
        self.queues[lane(inc.priority)].remove(&(inc.arrived_at, id));
        inc.state = IncidentState::Claimed;
        inc.holder = Some(actor);
        inc.claimed_at = Some(now);
        let first = inc.answer_time.is_none();
        if first {
            inc.answer_time = Some(now.since(inc.arrived_at));
        }
        let answer_time = if first { inc.answer_time } else { None };
        out.push(Effect::Claimed {
            incident: id,
            actor,
            answer_time,
            taken_from,
        });
        let detail = match (taken_from, answer_time) {
            (Some(h), _) => format!("taken over from {h}"),
            (None, Some(t)) => format!("claimed; answered in {t}"),
            (None, None) => "claimed".to_owned(),
        };
        let action = if taken_from.is_some() {
            AuditAction::TakenOver
        } else {
            AuditAction::Claimed
        };
        audit(out, now, Some(actor), Some(id), action, detail);
    }

    fn reject(
        out: &mut Vec<Effect>,
        input: InputKind,
        incident: Option<IncidentId>,
        actor: Option<Actor>,
        reason: RejectReason,
    ) {
        out.push(Effect::Rejected {
            input,
            incident,
            actor,
            reason,
        });
    }

    fn on_claim(&mut self, id: IncidentId, actor: Actor, now: Timestamp, out: &mut Vec<Effect>) {
        let r = self.find(id).and_then(|inc| {
            if actor.role == Role::Admin {
                return Err(RejectReason::RoleNotAllowed { role: actor.role });
            }
            match inc.holder {
                Some(h) if h.id == actor.id => Err(RejectReason::AlreadyHolder),
                Some(h) => Err(RejectReason::ClaimedByOther { holder: h }),
                None => Ok(()),
            }
        });
        match r {
            Ok(()) => self.claim(id, actor, None, now, out),
            Err(reason) => Self::reject(out, InputKind::Claim, Some(id), Some(actor), reason),
        }
    }

    fn on_take_over(
        &mut self,
        id: IncidentId,
        actor: Actor,
        now: Timestamp,
        out: &mut Vec<Effect>,
    ) {
        let r = self.find(id).and_then(|inc| {
            if actor.role != Role::Supervisor {
                return Err(RejectReason::RoleNotAllowed { role: actor.role });
            }
            match inc.holder {
                Some(h) if h.id == actor.id => Err(RejectReason::AlreadyHolder),
                h => Ok(h),
            }
        });
        match r {
            Ok(from) => self.claim(id, actor, from, now, out),
            Err(reason) => Self::reject(out, InputKind::TakeOver, Some(id), Some(actor), reason),
        }
    }

    fn on_release(&mut self, id: IncidentId, actor: Actor, now: Timestamp, out: &mut Vec<Effect>) {
        let r = self.find(id).and_then(|inc| {
            if actor.role == Role::Admin {
                return Err(RejectReason::RoleNotAllowed { role: actor.role });
            }
            match inc.holder {
                None => Err(RejectReason::NotClaimed),
                Some(h) if h.id == actor.id || actor.role == Role::Supervisor => Ok(h),
                Some(h) => Err(RejectReason::NotHolder { holder: Some(h) }),
            }
        });
        match r {
            Ok(holder) => {
                out.push(Effect::Released {
                    incident: id,
                    actor,
                    holder,
                });
                let detail = if holder.id == actor.id {
                    "released back to the queue".to_owned()
                } else {
                    format!("released from {holder} back to the queue")
                };
                audit(
                    out,
                    now,
                    Some(actor),
                    Some(id),
                    AuditAction::Released,
                    detail,
                );
                self.enqueue(id, now, out);
            }
            Err(reason) => Self::reject(out, InputKind::Release, Some(id), Some(actor), reason),
        }
    }

    fn on_note(
        &mut self,
        id: IncidentId,
        actor: Actor,
        text: String,
        now: Timestamp,
        out: &mut Vec<Effect>,
    ) {
        let max = self.config.max_note_len;
        let r = self.find(id).and_then(|_| {
            if text.trim().is_empty() {
                Err(RejectReason::EmptyNote)
            } else if text.len() > max as usize {
                Err(RejectReason::NoteTooLong { max })
            } else {
                Ok(())
            }
        });
        if let Err(reason) = r {
            Self::reject(out, InputKind::Note, Some(id), Some(actor), reason);
            return;
        }
        if let Some(inc) = self.incidents.get_mut(&id) {
            inc.notes = inc.notes.saturating_add(1);
            out.push(Effect::IncidentUpdated {
                incident: id,
                change: Change::Noted,
                signal: None,
                signal_count: inc.signal_count,
            });
            audit(out, now, Some(actor), Some(id), AuditAction::Noted, text);
        }
    }

    fn on_resolve(
        &mut self,
        id: IncidentId,
        actor: Actor,
        outcome: OutcomeCode,
        now: Timestamp,
        out: &mut Vec<Effect>,
    ) {
        let r = self.find(id).and_then(|inc| match actor.role {
            Role::Admin => Err(RejectReason::RoleNotAllowed { role: actor.role }),
            Role::Supervisor => Ok(()),
            Role::Operator => match inc.holder {
                Some(h) if h.id == actor.id => Ok(()),
                holder => Err(RejectReason::NotHolder { holder }),
            },
        });
        match r {
            Ok(()) => {
                self.resolve(
                    id,
                    Resolution::Operator { actor, outcome },
                    Some(actor),
                    now,
                    out,
                );
            }
            Err(reason) => Self::reject(out, InputKind::Resolve, Some(id), Some(actor), reason),
        }
    }

    // ----- timers --------------------------------------------------------------------

    fn on_tick(&mut self, now: Timestamp, out: &mut Vec<Effect>) {
        self.dedupe.prune(now);
        self.seen.prune(now);
        if now >= self.next_sweep {
            self.sweep(now);
        }
        // Collect what is really due, keyed by its real due time, so the firing order does
        // not depend on where lazily rescheduled timers happened to sit.
        let mut due: Vec<(Timestamp, Timer)> = Vec::new();
        while let Some(&(t, timer)) = self.timers.first() {
            if t > now {
                break;
            }
            self.timers.pop_first();
            match timer {
                Timer::Supervision(dev) => {
                    let Some(d) = self.devices.get_mut(&dev) else {
                        continue;
                    };
                    d.timer_at = None;
                    match d.due {
                        Some(at) if at <= now => due.push((at, timer)),
                        Some(_) => arm(&mut self.timers, dev, d),
                        None => {}
                    }
                }
                Timer::Sla(id) => {
                    if let Some(inc) = self.incidents.get(&id)
                        && let Some((at, _)) = sla_next(&self.config.sla, inc)
                    {
                        if at <= now {
                            due.push((at, timer));
                        } else {
                            self.timers.insert((at, timer));
                        }
                    }
                }
            }
        }
        due.sort_unstable();
        for (at, timer) in due {
            match timer {
                Timer::Supervision(dev) => self.fail_to_report(dev, at, now, out),
                Timer::Sla(id) => self.fire_sla(id, now, out),
            }
        }
    }

    /// Forgets runaway and storm windows that have been idle for a whole window, so units
    /// and areas that went quiet cost nothing. Deterministic (driven by ticks), so restored
    /// and uninterrupted cores sweep alike.
    fn sweep(&mut self, now: Timestamp) {
        let rh = now.saturating_sub(self.config.runaway.window);
        self.rates.retain(|_, q| q.back().is_some_and(|t| *t >= rh));
        let sh = now.saturating_sub(self.config.storm.window);
        self.storms
            .retain(|_, s| s.group.is_some() || s.recent.back().is_some_and(|r| r.at >= sh));
        let every = self
            .config
            .runaway
            .window
            .max(self.config.storm.window)
            .max(Micros::from_secs(1));
        self.next_sweep = now.saturating_add(every);
    }

    fn fail_to_report(&mut self, dev: i64, at: Timestamp, now: Timestamp, out: &mut Vec<Effect>) {
        let Some(d) = self.devices.get_mut(&dev) else {
            return;
        };
        if d.due != Some(at) {
            return;
        }
        d.due = None;
        d.ftr_outstanding = true;
        let last_heard = d.last_heard;
        let interval = d.info.test_interval.unwrap_or_default();
        let priority = self
            .classifier
            .priority_of(Kind::FailToReport, Some(&d.info));
        let detail = match last_heard {
            Some(l) => {
                format!("unit {dev} not heard since {l}; test interval {interval}, overdue at {at}")
            }
            None => format!(
                "unit {dev} never heard since registration; test interval {interval}, overdue at {at}"
            ),
        };
        let incident = if priority == Priority::Information {
            None
        } else {
            Some(self.raise(
                Sig {
                    id: None,
                    subject: Subject::Device { id: dev },
                    kind: Kind::FailToReport,
                    event: Event::Raise,
                    priority,
                    received_at: at,
                    summary: None,
                    detail: detail.clone(),
                },
                now,
                out,
            ))
        };
        out.push(Effect::FailToReport {
            incident,
            device: dev,
            last_heard,
            due: at,
        });
        audit(out, now, None, incident, AuditAction::FailToReport, detail);
    }

    fn fire_sla(&mut self, id: IncidentId, now: Timestamp, out: &mut Vec<Effect>) {
        loop {
            let Some(inc) = self.incidents.get_mut(&id) else {
                return;
            };
            let Some((at, stage)) = sla_next(&self.config.sla, inc) else {
                return;
            };
            if at > now {
                self.timers.insert((at, Timer::Sla(id)));
                return;
            }
            let waited = now.since(inc.arrived_at);
            let (priority, effect, action, word) = match stage {
                SlaStage::Warn => {
                    inc.sla.warned = true;
                    (
                        inc.priority,
                        Effect::SlaWarning {
                            incident: id,
                            priority: inc.priority,
                            waited,
                        },
                        AuditAction::SlaWarning,
                        "warning",
                    )
                }
                SlaStage::Overflow => {
                    inc.sla.overflowed = true;
                    (
                        inc.priority,
                        Effect::Overflow {
                            incident: id,
                            priority: inc.priority,
                            waited,
                        },
                        AuditAction::Overflow,
                        "overflow to supervisors",
                    )
                }
                SlaStage::Critical => {
                    inc.sla.critical = true;
                    (
                        inc.priority,
                        Effect::Critical {
                            incident: id,
                            priority: inc.priority,
                            waited,
                        },
                        AuditAction::Critical,
                        "critical",
                    )
                }
            };
            out.push(effect);
            audit(
                out,
                now,
                None,
                Some(id),
                action,
                format!("{priority} incident unanswered for {waited}: {word}"),
            );
        }
    }

    fn rebuild_timers(&mut self) {
        self.timers.clear();
        for (&id, d) in &mut self.devices {
            d.timer_at = None;
            arm(&mut self.timers, id, d);
        }
        for inc in self.incidents.values() {
            if let Some((at, _)) = sla_next(&self.config.sla, inc) {
                self.timers.insert((at, Timer::Sla(inc.id)));
            }
        }
    }

    // ----- registry and configuration ------------------------------------------------

    fn register(&mut self, info: DeviceInfo, now: Timestamp) {
        let allowance = |iv| self.config.supervision.allowance(iv);
        let id = info.id;
        if let Some(d) = self.devices.get_mut(&id) {
            if d.info == info {
                return;
            }
            let interval_changed = d.info.test_interval != info.test_interval;
            d.info = info;
            if interval_changed && !d.ftr_outstanding {
                d.due = d
                    .info
                    .test_interval
                    .map(|iv| d.last_heard.unwrap_or(now).saturating_add(allowance(iv)));
                arm(&mut self.timers, id, d);
            }
        } else {
            let mut d = Dev {
                due: info
                    .test_interval
                    .map(|iv| now.saturating_add(allowance(iv))),
                info,
                last_heard: None,
                ftr_outstanding: false,
                timer_at: None,
            };
            arm(&mut self.timers, id, &mut d);
            self.devices.insert(id, d);
        }
    }

    fn on_forget(&mut self, device: i64, now: Timestamp, out: &mut Vec<Effect>) {
        if self.devices.remove(&device).is_none() {
            Self::reject(
                out,
                InputKind::ForgetDevice,
                None,
                None,
                RejectReason::UnknownDevice { device },
            );
            return;
        }
        self.rates.remove(&device);
        audit(
            out,
            now,
            None,
            None,
            AuditAction::DeviceForgotten,
            format!("unit {device} removed from the registry; its open incidents stay"),
        );
    }

    fn on_configure(&mut self, config: Config, now: Timestamp, out: &mut Vec<Effect>) {
        if let Err(e) = config.validate() {
            Self::reject(
                out,
                InputKind::Configure,
                None,
                None,
                RejectReason::InvalidConfig {
                    message: e.to_string(),
                },
            );
            return;
        }
        self.classifier = Classifier::new(&config);
        self.config = config;
        let sup = self.config.supervision;
        for d in self.devices.values_mut() {
            if d.ftr_outstanding {
                continue;
            }
            match (d.info.test_interval, d.last_heard) {
                (Some(iv), Some(l)) => d.due = Some(l.saturating_add(sup.allowance(iv))),
                (None, _) => d.due = None,
                (Some(_), None) => {}
            }
        }
        self.rebuild_timers();
        audit(
            out,
            now,
            None,
            None,
            AuditAction::ConfigChanged,
            "configuration replaced".to_owned(),
        );
    }

    // ----- snapshots -----------------------------------------------------------------

    /// Everything needed to continue exactly where this core is: restoring it and feeding
    /// the same inputs gives the same effects as never stopping (for non-decreasing `now`).
    pub fn snapshot(&self) -> Snapshot {
        let mut devices: Vec<DeviceSnapshot> = self
            .devices
            .values()
            .map(|d| DeviceSnapshot {
                info: d.info.clone(),
                last_heard: d.last_heard,
                due: d.due,
                ftr_outstanding: d.ftr_outstanding,
            })
            .collect();
        devices.sort_by_key(|d| d.info.id);
        let mut incidents: Vec<Incident> = self.incidents.values().cloned().collect();
        incidents.sort_by_key(|i| i.id);
        let mut dedupe: Vec<DedupeSnapshot> = self
            .dedupe
            .entries()
            .map(|(k, s)| DedupeSnapshot {
                subject: k.subject.clone(),
                kind: k.kind,
                event: k.event,
                tag: k.tag,
                last_received: s.last,
                expires: s.expires,
                incident: s.incident,
            })
            .collect();
        dedupe.sort_by(|a, b| {
            (a.expires, &a.subject, a.kind, a.event, a.tag)
                .cmp(&(b.expires, &b.subject, b.kind, b.event, b.tag))
        });
        let mut seen_signals: Vec<SeenSnapshot> = self
            .seen
            .entries()
            .map(|(k, s)| SeenSnapshot {
                signal: *k,
                received_at: s.last,
                expires: s.expires,
                incident: s.incident,
            })
            .collect();
        seen_signals.sort_by_key(|s| (s.expires, s.signal));
        let mut rates: Vec<RateSnapshot> = self
            .rates
            .iter()
            .filter(|(_, q)| !q.is_empty())
            .map(|(d, q)| RateSnapshot {
                device: *d,
                recent: q.iter().copied().collect(),
            })
            .collect();
        rates.sort_by_key(|r| r.device);
        let mut storms: Vec<StormSnapshot> = self
            .storms
            .iter()
            .filter(|(_, s)| !s.recent.is_empty())
            .map(|(k, s)| StormSnapshot {
                area: k.area.clone(),
                kind: k.kind,
                recent: s.recent.iter().cloned().collect(),
            })
            .collect();
        storms.sort_by(|a, b| (&a.area, a.kind).cmp(&(&b.area, b.kind)));
        Snapshot {
            version: SNAPSHOT_VERSION,
            config: self.config.clone(),
            next_incident: self.next_id,
            devices,
            incidents,
            dedupe,
            seen_signals,
            rates,
            storms,
            next_sweep: self.next_sweep,
        }
    }

    /// Rebuilds a core from a snapshot (or from persisted state assembled with
    /// [`Snapshot::rebuild`]). Resolved incidents in it are ignored; an incident whose
    /// state and holder disagree is put back in the queue.
    pub fn from_snapshot(s: Snapshot) -> Result<Triage, RestoreError> {
        if s.version != SNAPSHOT_VERSION {
            return Err(RestoreError::UnsupportedVersion(s.version));
        }
        let mut t = Triage::new(s.config);
        let mut max_id = 0;
        for d in s.devices {
            t.devices.insert(
                d.info.id,
                Dev {
                    info: d.info,
                    last_heard: d.last_heard,
                    due: if d.ftr_outstanding { None } else { d.due },
                    ftr_outstanding: d.ftr_outstanding,
                    timer_at: None,
                },
            );
        }
        for mut inc in s.incidents {
            if inc.state == IncidentState::Resolved || t.incidents.contains_key(&inc.id) {
                continue;
            }
            max_id = max_id.max(inc.id.0);
            if inc.state != IncidentState::Claimed || inc.holder.is_none() {
                inc.state = IncidentState::Offered;
                inc.holder = None;
                inc.offered_at = inc.offered_at.or(Some(inc.raised_at));
                t.queues[lane(inc.priority)].insert((inc.arrived_at, inc.id));
            }
            let key = (inc.subject.clone(), inc.kind);
            t.by_key.entry(key).or_insert(inc.id);
            if let Subject::Group { area } = &inc.subject {
                t.storms
                    .entry(StormKey {
                        area: area.clone(),
                        kind: inc.kind,
                    })
                    .or_default()
                    .group
                    .get_or_insert(inc.id);
            }
            t.incidents.insert(inc.id, inc);
        }
        t.next_id = s.next_incident.max(max_id.saturating_add(1)).max(1);
        t.dedupe = Window::from_entries(
            s.dedupe
                .into_iter()
                .map(|d| {
                    (
                        DedupeKey {
                            subject: d.subject,
                            kind: d.kind,
                            event: d.event,
                            tag: d.tag,
                        },
                        Seen {
                            last: d.last_received,
                            expires: d.expires,
                            incident: d.incident,
                        },
                    )
                })
                .collect(),
        );
        t.seen = Window::from_entries(
            s.seen_signals
                .into_iter()
                .map(|s| {
                    (
                        s.signal,
                        Seen {
                            last: s.received_at,
                            expires: s.expires,
                            incident: s.incident,
                        },
                    )
                })
                .collect(),
        );
        for r in s.rates {
            t.rates.insert(r.device, r.recent.into_iter().collect());
        }
        for st in s.storms {
            t.storms
                .entry(StormKey {
                    area: st.area,
                    kind: st.kind,
                })
                .or_default()
                .recent = st.recent.into_iter().collect();
        }
        t.next_sweep = s.next_sweep;
        t.rebuild_timers();
        Ok(t)
    }

    fn on_restore(&mut self, s: Snapshot, now: Timestamp, out: &mut Vec<Effect>) {
        match Triage::from_snapshot(s) {
            Ok(t) => {
                *self = t;
                audit(
                    out,
                    now,
                    None,
                    None,
                    AuditAction::StateRestored,
                    format!(
                        "state restored: {} devices, {} open incidents",
                        self.devices.len(),
                        self.incidents.len()
                    ),
                );
            }
            Err(RestoreError::UnsupportedVersion(version)) => Self::reject(
                out,
                InputKind::Restore,
                None,
                None,
                RejectReason::UnsupportedSnapshot { version },
            ),
        }
    }

    /// Approximate heap bytes held, for capacity planning (maps counted at capacity, plus
    /// the per-entry boxes and sets). An estimate, not an allocator measurement.
    pub fn approx_heap_bytes(&self) -> usize {
        use std::mem::size_of;
        let map = |cap: usize, entry: usize| cap * (entry + 1);
        let mut n = map(self.devices.capacity(), size_of::<(i64, Dev)>())
            + map(
                self.incidents.capacity(),
                size_of::<(IncidentId, Incident)>(),
            )
            + map(
                self.by_key.capacity(),
                size_of::<((Subject, Kind), IncidentId)>(),
            )
            + map(
                self.rates.capacity(),
                size_of::<(i64, VecDeque<Timestamp>)>(),
            );
        // BTreeSet nodes hold up to 11 keys; assume two-thirds full.
        let btree = |len: usize, key: usize| len * key * 3 / 2;
        n += btree(self.timers.len(), size_of::<(Timestamp, Timer)>());
        n += self
            .queues
            .iter()
            .map(|q| btree(q.len(), size_of::<(Timestamp, IncidentId)>()))
            .sum::<usize>();
        n += self
            .rates
            .values()
            .map(|q| q.capacity() * size_of::<Timestamp>())
            .sum::<usize>();
        for inc in self.incidents.values() {
            if let Some(g) = &inc.group {
                n += size_of::<GroupInfo>()
                    + btree(g.members.len() + g.active.len(), size_of::<i64>());
            }
            if inc.runaway.is_some() {
                n += size_of::<RunawayInfo>() + 64;
            }
            n += inc.summary.as_ref().map_or(0, String::capacity);
        }
        n += self.dedupe.len() * (size_of::<DedupeKey>() + 48)
            + self.seen.len() * (size_of::<SignalId>() + 48);
        n
    }
}

/// Puts a device's supervision timer at or before its due time.
fn arm(timers: &mut BTreeSet<(Timestamp, Timer)>, id: i64, d: &mut Dev) {
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
fn sla_next(sla: &SlaConfig, inc: &Incident) -> Option<(Timestamp, SlaStage)> {
    if inc.answer_time.is_some() || inc.state != IncidentState::Offered {
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
    Some((inc.arrived_at.saturating_add(span), stage))
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
fn unknown_summary(what: &SignalWhat) -> String {
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
        SignalWhat::Heartbeat => write!(s, "heartbeat"),
        SignalWhat::Presence { online } => {
            write!(s, "{}", if *online { "online" } else { "offline" })
        }
        SignalWhat::LinkLost => write!(s, "link lost"),
        SignalWhat::LinkRestored => write!(s, "link restored"),
        SignalWhat::PathFault { detail } => write!(s, "path fault: {detail:.80}"),
        SignalWhat::Unknown { raw_summary } => write!(s, "unknown: {raw_summary:.80}"),
    };
}

fn describe(s: &mut String, what: &SignalWhat, source: &str, link: &Name, id: SignalId) {
    describe_what(s, what);
    let _ = write!(s, " via {source} {link}, signal {id}");
}
