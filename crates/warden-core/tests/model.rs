//! Model-based property tests: random sequences of signals, commands and ticks over a few
//! units and operators, checked step by step against a simple reference model, plus the
//! invariants that must hold whatever happens.

mod common;

use std::collections::{BTreeMap, HashMap, HashSet};

use proptest::prelude::*;
use warden_core::{
    Actor, AlarmKind, Config, DeviceId, DeviceInfo, Effect, Event, IncidentId, IncidentState,
    Input, Kind, Micros, Name, OutcomeCode, Priority, Resolution, Role, SignalId, SignalIn,
    SignalWhat, Source, Timestamp, Triage,
};
use warden_types::Qualifier;

const T0: i64 = common::T0;
const DEVICES: [i64; 4] = [1, 2, 3, 4];
const ACTORS: [Actor; 5] = [
    Actor::operator(1),
    Actor::operator(2),
    Actor::supervisor(9),
    Actor::admin(7),
    Actor {
        id: 11,
        role: Role::OnCall,
    },
];
/// The test interval of every unit: 10 min, so fail-to-report is due 13 min after last heard.
const INTERVAL_S: i64 = 600;
const ALLOWANCE_S: i64 = 600 + 60 + 120;
const SLA_S: [i64; 3] = [45, 60, 180];

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum W {
    Pendant,
    PendantRestore,
    Fall,
    Flood,
    FloodRestore,
    Mains,
    MainsRestore,
    Battery,
    BatteryRestore,
    Test,
    Cancel,
}

impl W {
    fn what(self) -> SignalWhat {
        let cid = |code, qualifier| SignalWhat::ContactId { code, qualifier };
        match self {
            W::Pendant => cid(101, Qualifier::New),
            W::PendantRestore => cid(101, Qualifier::Restore),
            W::Fall => SignalWhat::Mqtt {
                kind: AlarmKind::Fall,
                restore: false,
            },
            W::Flood => cid(154, Qualifier::New),
            W::FloodRestore => cid(154, Qualifier::Restore),
            W::Mains => cid(301, Qualifier::New),
            W::MainsRestore => cid(301, Qualifier::Restore),
            W::Battery => SignalWhat::Sia {
                code: *b"YT",
                restore: false,
            },
            W::BatteryRestore => SignalWhat::Sia {
                code: *b"YR",
                restore: false,
            },
            W::Test => cid(602, Qualifier::New),
            W::Cancel => cid(406, Qualifier::New),
        }
    }

    /// The reference model's own classification (deliberately written out, not shared).
    fn class(self) -> (Kind, Event, Priority) {
        use Priority::{Information as I, LifeCritical as L, Technical as T, Urgent as U};
        match self {
            W::Pendant => (Kind::Pendant, Event::Raise, L),
            W::PendantRestore => (Kind::Pendant, Event::Restore, L),
            W::Fall => (Kind::Fall, Event::Raise, L),
            W::Flood => (Kind::Flood, Event::Raise, U),
            W::FloodRestore => (Kind::Flood, Event::Restore, U),
            W::Mains => (Kind::MainsFail, Event::Raise, T),
            W::MainsRestore => (Kind::MainsFail, Event::Restore, T),
            W::Battery => (Kind::LowBattery, Event::Raise, T),
            W::BatteryRestore => (Kind::LowBattery, Event::Restore, T),
            W::Test => (Kind::Test, Event::Raise, I),
            W::Cancel => (Kind::Cancel, Event::Cancel, I),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Cmd {
    Claim,
    Release,
    Resolve,
    TakeOver,
    Note,
}

#[derive(Debug, Clone)]
enum Op {
    Signal {
        dev: usize,
        w: W,
        dt: i64,
    },
    Heartbeat {
        dev: usize,
        dt: i64,
    },
    Command {
        cmd: Cmd,
        pick: usize,
        who: usize,
        dt: i64,
    },
    Tick {
        dt: i64,
    },
}

fn w_strategy() -> impl Strategy<Value = W> {
    prop_oneof![
        3 => Just(W::Pendant),
        1 => Just(W::PendantRestore),
        1 => Just(W::Fall),
        1 => Just(W::Flood),
        1 => Just(W::FloodRestore),
        2 => Just(W::Mains),
        2 => Just(W::MainsRestore),
        1 => Just(W::Battery),
        1 => Just(W::BatteryRestore),
        1 => Just(W::Test),
        1 => Just(W::Cancel),
    ]
}

fn cmd_strategy() -> impl Strategy<Value = Cmd> {
    prop_oneof![
        3 => Just(Cmd::Claim),
        1 => Just(Cmd::Release),
        2 => Just(Cmd::Resolve),
        1 => Just(Cmd::TakeOver),
        1 => Just(Cmd::Note),
    ]
}

fn op_strategy() -> impl Strategy<Value = Op> {
    prop_oneof![
        5 => (0..DEVICES.len(), w_strategy(), 0..15i64).prop_map(|(dev, w, dt)| Op::Signal { dev, w, dt }),
        1 => (0..DEVICES.len(), 0..200i64).prop_map(|(dev, dt)| Op::Heartbeat { dev, dt }),
        4 => (cmd_strategy(), 0..7usize, 0..ACTORS.len(), 0..20i64)
            .prop_map(|(cmd, pick, who, dt)| Op::Command { cmd, pick, who, dt }),
        2 => (0..300i64).prop_map(|dt| Op::Tick { dt }),
    ]
}

/// The number of cases: `PROPTEST_CASES` when set (for long soak runs), else `default`.
fn cases(default: u32) -> u32 {
    std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn model_config() -> Config {
    let mut c = Config::default();
    // Storms and runaways are covered by the invariant property below; the reference
    // model leaves them out.
    c.storm.devices = 1000;
    c.runaway.max_signals = 1000;
    c
}

fn ts(s: i64) -> Timestamp {
    Timestamp::from_secs(T0 + s)
}

/// Drives a core with ops, tracking the clock and signal ids; the picks of commands refer
/// to the core's open incidents (sorted) or to ids that are not open.
struct Driver {
    core: Triage,
    now: i64,
    next_signal: u128,
    resolved: Vec<IncidentId>,
}

impl Driver {
    fn new(config: Config) -> Self {
        let mut core = Triage::new(config);
        for d in DEVICES {
            core.handle(Input::RegisterDevice(device(d)), ts(0));
        }
        Driver {
            core,
            now: 0,
            next_signal: 1,
            resolved: Vec::new(),
        }
    }

    fn target(&self, pick: usize) -> IncidentId {
        let open: Vec<IncidentId> = self.core.open_incidents().iter().map(|i| i.id).collect();
        match pick {
            p if p < open.len() => open[p],
            5 => self.resolved.last().copied().unwrap_or(IncidentId(500)),
            _ => IncidentId(900 + pick as u64),
        }
    }

    /// Applies one op; returns the input it became and the effects.
    fn apply(&mut self, op: &Op) -> (Input, Vec<Effect>) {
        let input = self.input(op);
        let effects = self.core.handle(input.clone(), ts(self.now));
        for e in &effects {
            if let Effect::Resolved { incident, .. } = e {
                self.resolved.push(*incident);
            }
            // The name the history stores is the one the JSON carries.
            let v = serde_json::to_value(e).expect("effects serialise");
            assert_eq!(v["type"].as_str(), Some(e.name()), "{e:?}");
        }
        (input, effects)
    }

    fn input(&mut self, op: &Op) -> Input {
        match *op {
            Op::Signal { dev, w, dt } => {
                self.now += dt;
                self.signal(DEVICES[dev], w.what())
            }
            Op::Heartbeat { dev, dt } => {
                self.now += dt;
                self.signal(DEVICES[dev], SignalWhat::Heartbeat)
            }
            Op::Command { cmd, pick, who, dt } => {
                self.now += dt;
                let incident = self.target(pick);
                let actor = ACTORS[who];
                match cmd {
                    Cmd::Claim => Input::Claim { incident, actor },
                    Cmd::Release => Input::Release { incident, actor },
                    Cmd::TakeOver => Input::TakeOver { incident, actor },
                    Cmd::Note => Input::Note {
                        incident,
                        actor,
                        text: "called the client".into(),
                    },
                    Cmd::Resolve => Input::Resolve {
                        incident,
                        actor,
                        outcome: OutcomeCode::parse("assistance_given").expect("valid"),
                    },
                }
            }
            Op::Tick { dt } => {
                self.now += dt;
                Input::Tick
            }
        }
    }

    fn signal(&mut self, dev: i64, what: SignalWhat) -> Input {
        let id = SignalId(self.next_signal);
        self.next_signal += 1;
        Input::Signal(SignalIn {
            id,
            source: Source::Serial,
            link: Name::from("serial:ttyS0"),
            account: None,
            device: Some(device(dev)),
            what,
            received_at: ts(self.now),
        })
    }
}

fn device(id: i64) -> DeviceInfo {
    DeviceInfo {
        area: Some(Name::from("riverside")),
        test_interval: Some(Micros::from_secs(INTERVAL_S)),
        ..DeviceInfo::new(DeviceId(id))
    }
}

// ----- the reference model ---------------------------------------------------------------

#[derive(Debug, Clone)]
struct MInc {
    dev: i64,
    kind: Kind,
    priority: Priority,
    holder: Option<Actor>,
    arrived: i64,
    answered: bool,
    /// When it went back to the queue after an answer: thresholds count from here.
    requeued: Option<i64>,
    sla: [bool; 3],
}

#[derive(Debug, Clone, Default)]
struct MDev {
    last_heard: Option<i64>,
    due: Option<i64>,
    ftr: bool,
}

#[derive(Debug, Default, PartialEq, Eq)]
struct Outcome {
    opened: Vec<u64>,
    resolved: Vec<(u64, bool)>,
    sla: Vec<(u64, usize)>,
    ftr: Vec<i64>,
    duplicate: bool,
    rejected: bool,
}

#[derive(Debug)]
struct Model {
    now: i64,
    next_id: u64,
    open: BTreeMap<u64, MInc>,
    dedupe: HashMap<(i64, Kind, Event), (i64, Option<u64>)>,
    devs: BTreeMap<i64, MDev>,
}

impl Model {
    fn new() -> Self {
        Model {
            now: 0,
            next_id: 1,
            open: BTreeMap::new(),
            dedupe: HashMap::new(),
            devs: DEVICES
                .iter()
                .map(|&d| {
                    (
                        d,
                        MDev {
                            due: Some(ALLOWANCE_S),
                            ..MDev::default()
                        },
                    )
                })
                .collect(),
        }
    }

    fn find(&self, dev: i64, kind: Kind) -> Option<u64> {
        self.open
            .iter()
            .find(|(_, i)| i.dev == dev && i.kind == kind)
            .map(|(id, _)| *id)
    }

    fn raise(
        &mut self,
        dev: i64,
        kind: Kind,
        priority: Priority,
        arrived: i64,
        o: &mut Outcome,
    ) -> u64 {
        if let Some(id) = self.find(dev, kind) {
            return id;
        }
        let id = self.next_id;
        self.next_id += 1;
        self.open.insert(
            id,
            MInc {
                dev,
                kind,
                priority,
                holder: None,
                arrived,
                answered: false,
                requeued: None,
                sla: [false; 3],
            },
        );
        o.opened.push(id);
        id
    }

    fn restore(&mut self, dev: i64, kind: Kind, o: &mut Outcome) -> Option<u64> {
        let id = self.find(dev, kind)?;
        let inc = &self.open[&id];
        if inc.priority == Priority::Technical && inc.holder.is_none() {
            self.open.remove(&id);
            o.resolved.push((id, true));
        }
        Some(id)
    }

    fn heard(&mut self, dev: i64, o: &mut Outcome) {
        let now = self.now;
        let d = self.devs.get_mut(&dev).expect("registered");
        d.last_heard = Some(d.last_heard.map_or(now, |l| l.max(now)));
        d.due = d.last_heard.map(|l| l + ALLOWANCE_S);
        let was = std::mem::take(&mut d.ftr);
        if was {
            self.restore(dev, Kind::FailToReport, o);
        }
    }

    fn signal(&mut self, dev: i64, w: Option<W>, o: &mut Outcome) {
        self.heard(dev, o);
        let Some(w) = w else { return };
        let (kind, event, priority) = w.class();
        if priority == Priority::Information && event != Event::Cancel {
            return;
        }
        // A repeat is dropped while what the first joined is still open; one that joined
        // nothing (a restore with nothing open) only while nothing has been opened since.
        if let Some(&(last, inc)) = self.dedupe.get(&(dev, kind, event))
            && self.now - last <= 10
            && inc.map_or_else(
                || self.find(dev, kind).is_none(),
                |i| self.open.contains_key(&i),
            )
        {
            o.duplicate = true;
            return;
        }
        let touched = match event {
            Event::Raise => Some(self.raise(dev, kind, priority, self.now, o)),
            Event::Restore => self.restore(dev, kind, o),
            Event::Cancel => Kind::ALL
                .iter()
                .filter(|k| k.is_alarm())
                .find_map(|k| self.find(dev, *k)),
            _ => None,
        };
        self.dedupe.insert((dev, kind, event), (self.now, touched));
    }

    /// Waiting in the queue (never answered, or released since) runs the thresholds, from
    /// arrival or from the release.
    fn sla_next(inc: &MInc) -> Option<(i64, usize)> {
        if inc.holder.is_some()
            || !matches!(inc.priority, Priority::LifeCritical | Priority::Urgent)
        {
            return None;
        }
        let stage = inc.sla.iter().position(|f| !f)?;
        Some((inc.requeued.unwrap_or(inc.arrived) + SLA_S[stage], stage))
    }

    fn tick(&mut self, o: &mut Outcome) {
        let now = self.now;
        let mut due: Vec<(i64, u8, u64)> = Vec::new();
        for (&dev, d) in &self.devs {
            if let Some(t) = d.due.filter(|t| *t <= now) {
                due.push((t, 0, u64::try_from(dev).expect("positive")));
            }
        }
        for (&id, inc) in &self.open {
            if let Some((t, _)) = Self::sla_next(inc).filter(|(t, _)| *t <= now) {
                due.push((t, 1, id));
            }
        }
        due.sort_unstable();
        for (t, class, key) in due {
            if class == 0 {
                let dev = i64::try_from(key).expect("small");
                let d = self.devs.get_mut(&dev).expect("registered");
                d.due = None;
                d.ftr = true;
                self.raise(dev, Kind::FailToReport, Priority::Technical, t, o);
                o.ftr.push(dev);
            } else if let Some(inc) = self.open.get_mut(&key) {
                while let Some((at, stage)) = Self::sla_next(inc) {
                    if at > now {
                        break;
                    }
                    inc.sla[stage] = true;
                    o.sla.push((key, stage));
                }
            }
        }
    }

    fn command(&mut self, cmd: Cmd, id: u64, actor: Actor, o: &mut Outcome) {
        let Some(inc) = self.open.get_mut(&id) else {
            o.rejected = true;
            return;
        };
        let holder = inc.holder;
        let ok = match cmd {
            Cmd::Claim => {
                matches!(actor.role, Role::Operator | Role::Supervisor) && holder.is_none()
            }
            Cmd::Release => {
                matches!(actor.role, Role::Operator | Role::Supervisor)
                    && holder.is_some_and(|h| h.id == actor.id || actor.role == Role::Supervisor)
            }
            Cmd::Resolve => match actor.role {
                Role::Supervisor => true,
                Role::Operator => holder.is_some_and(|h| h.id == actor.id),
                Role::Admin | Role::OnCall => false,
            },
            Cmd::TakeOver => {
                actor.role == Role::Supervisor && holder.is_none_or(|h| h.id != actor.id)
            }
            Cmd::Note => true,
        };
        if !ok {
            o.rejected = true;
            return;
        }
        match cmd {
            Cmd::Claim | Cmd::TakeOver => {
                inc.holder = Some(actor);
                inc.answered = true;
            }
            Cmd::Release => {
                inc.holder = None;
                inc.requeued = Some(self.now);
                inc.sla = [false; 3];
            }
            Cmd::Resolve => {
                self.open.remove(&id);
                o.resolved.push((id, false));
            }
            Cmd::Note => {}
        }
    }
}

/// What the core's effects say happened, in the model's terms.
fn observed(effects: &[Effect]) -> Outcome {
    let mut o = Outcome::default();
    for e in effects {
        match e {
            Effect::IncidentOpened { incident, .. } => o.opened.push(incident.0),
            Effect::Resolved {
                incident,
                resolution,
                ..
            } => o
                .resolved
                .push((incident.0, matches!(resolution, Resolution::Auto { .. }))),
            Effect::SlaWarning { incident, .. } => o.sla.push((incident.0, 0)),
            Effect::Overflow { incident, .. } => o.sla.push((incident.0, 1)),
            Effect::Critical { incident, .. } => o.sla.push((incident.0, 2)),
            Effect::FailToReport { device, .. } => o.ftr.push(device.0),
            Effect::Duplicate { .. } => o.duplicate = true,
            Effect::Rejected { .. } => o.rejected = true,
            _ => {}
        }
    }
    o
}

/// Invariants over a whole run, fed step by step.
#[derive(Default)]
struct Invariants {
    priority: HashMap<IncidentId, Priority>,
    resolved: HashSet<IncidentId>,
    by_operator: HashSet<IncidentId>,
    sla: HashSet<(IncidentId, u8)>,
}

impl Invariants {
    fn step(&mut self, core: &Triage, input: &Input, effects: &[Effect]) -> Result<(), String> {
        common::assert_audited(effects);
        for e in effects {
            match e {
                Effect::IncidentOpened {
                    incident, priority, ..
                } => {
                    self.priority.insert(*incident, *priority);
                }
                Effect::Resolved {
                    incident,
                    resolution,
                    ..
                } => {
                    if matches!(resolution, Resolution::Operator { .. }) {
                        self.by_operator.insert(*incident);
                    }
                    if !self.resolved.insert(*incident) {
                        return Err(format!("{incident} resolved twice"));
                    }
                    if matches!(resolution, Resolution::Auto { .. })
                        && self.priority.get(incident) == Some(&Priority::LifeCritical)
                    {
                        return Err(format!("life-critical {incident} closed by policy"));
                    }
                }
                // Released back to the queue: its thresholds may fire again.
                Effect::Released { incident, .. } => self.sla.retain(|(i, _)| i != incident),
                Effect::SlaWarning { incident, .. } => self.sla_once(*incident, 0)?,
                Effect::Overflow { incident, .. } => self.sla_once(*incident, 1)?,
                Effect::Critical { incident, .. } => self.sla_once(*incident, 2)?,
                _ => {}
            }
        }
        for inc in core.open_incidents() {
            if (inc.state == IncidentState::Claimed) != inc.holder.is_some() {
                return Err(format!(
                    "{} state {:?} holder {:?}",
                    inc.id, inc.state, inc.holder
                ));
            }
        }
        // Every life-critical raise reaches an open incident.
        if let Input::Signal(s) = input {
            let class = core.classify(s);
            if class.priority == Priority::LifeCritical
                && matches!(class.event, Event::Raise | Event::Status)
            {
                // The same signal may also touch other incidents (a heartbeat effect on a
                // fail-to-report); one of its targets must be an open life-critical one, or,
                // for a replayed signal id, the one it was first counted in, since resolved
                // by a person.
                let replayed_into_resolved = effects.iter().any(|e| matches!(
                    e,
                    Effect::Duplicate { signal, incident: Some(i) } if *signal == s.id && self.by_operator.contains(i)
                ));
                let ok = replayed_into_resolved
                    || effects
                        .iter()
                        .filter_map(|e| match e {
                            Effect::IncidentOpened {
                                incident, signal, ..
                            }
                            | Effect::IncidentUpdated {
                                incident, signal, ..
                            } if *signal == Some(s.id) => Some(*incident),
                            Effect::Duplicate { signal, incident } if *signal == s.id => *incident,
                            _ => None,
                        })
                        .filter_map(|t| core.incident(t))
                        .any(|i| {
                            i.priority == Priority::LifeCritical
                                && i.state != IncidentState::Resolved
                        });
                if !ok {
                    return Err(format!(
                        "life-critical signal {:?} reached no open incident: {effects:#?}",
                        s.id
                    ));
                }
                let offers_first = effects
                    .iter()
                    .filter_map(|e| match e {
                        Effect::Offer { priority, .. } => Some(*priority),
                        _ => None,
                    })
                    .is_sorted();
                if !offers_first {
                    return Err("offers out of lane order".into());
                }
            }
        }
        Ok(())
    }

    fn sla_once(&mut self, id: IncidentId, stage: u8) -> Result<(), String> {
        if self.sla.insert((id, stage)) {
            Ok(())
        } else {
            Err(format!("SLA stage {stage} fired twice for {id}"))
        }
    }
}

fn run_against_model(ops: &[Op]) -> Result<(), TestCaseError> {
    let mut d = Driver::new(model_config());
    let mut m = Model::new();
    let mut inv = Invariants::default();
    for (step, op) in ops.iter().enumerate() {
        let (input, effects) = d.apply(op);
        m.now = d.now;
        let mut expected = Outcome::default();
        match (op, &input) {
            (Op::Signal { dev, w, .. }, _) => m.signal(DEVICES[*dev], Some(*w), &mut expected),
            (Op::Heartbeat { dev, .. }, _) => m.signal(DEVICES[*dev], None, &mut expected),
            (Op::Tick { .. }, _) => m.tick(&mut expected),
            (
                Op::Command { cmd, .. },
                Input::Claim { incident, actor }
                | Input::Release { incident, actor }
                | Input::TakeOver { incident, actor }
                | Input::Note {
                    incident, actor, ..
                }
                | Input::Resolve {
                    incident, actor, ..
                },
            ) => m.command(*cmd, incident.0, *actor, &mut expected),
            _ => unreachable!("commands become commands"),
        }
        let got = observed(&effects);
        prop_assert_eq!(&got, &expected, "step {} {:?}\n{:#?}", step, op, effects);
        inv.step(&d.core, &input, &effects)
            .map_err(|e| TestCaseError::fail(format!("step {step} {op:?}: {e}")))?;
        let core_open: Vec<(u64, Option<Actor>)> = d
            .core
            .open_incidents()
            .iter()
            .map(|i| (i.id.0, i.holder))
            .collect();
        let model_open: Vec<(u64, Option<Actor>)> =
            m.open.iter().map(|(id, i)| (*id, i.holder)).collect();
        prop_assert_eq!(core_open, model_open, "step {} {:?}", step, op);
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: cases(512), ..ProptestConfig::default() })]

    #[test]
    fn the_core_agrees_with_the_reference_model(ops in prop::collection::vec(op_strategy(), 1..80)) {
        run_against_model(&ops)?;
    }

    #[test]
    fn a_restored_snapshot_continues_exactly_like_a_core_that_never_stopped(
        ops in prop::collection::vec(op_strategy(), 1..80),
        split in any::<prop::sample::Index>(),
        storms in any::<bool>(),
    ) {
        let config = if storms { chaos_config() } else { model_config() };
        let k = split.index(ops.len() + 1);
        let mut a = Driver::new(config.clone());
        let mut b = Driver::new(config);
        for op in &ops[..k] {
            a.apply(op);
            b.apply(op);
        }
        // Through JSON, as the engine would store it.
        let json = serde_json::to_string(&b.core.snapshot()).expect("serialises");
        let snap: warden_core::Snapshot = serde_json::from_str(&json).expect("parses");
        prop_assert_eq!(&snap, &a.core.snapshot());
        b.core = Triage::from_snapshot(snap.clone()).expect("restores");
        // And via the Restore input on a core in some other state.
        let mut c = Driver::new(Config::default());
        c.now = b.now;
        c.next_signal = b.next_signal;
        c.resolved.clone_from(&b.resolved);
        c.core.handle(Input::Restore(Box::new(snap)), ts(c.now));
        for op in &ops[k..] {
            let (_, ea) = a.apply(op);
            let (_, eb) = b.apply(op);
            let (_, ec) = c.apply(op);
            prop_assert_eq!(&ea, &eb, "{:?}", op);
            prop_assert_eq!(&ea, &ec, "{:?}", op);
        }
        prop_assert_eq!(a.core.snapshot(), b.core.snapshot());
    }
}

// ----- storms, runaways and arbitrary input: invariants only ----------------------------

fn chaos_config() -> Config {
    let mut c = Config::default();
    c.storm.devices = 2;
    c.runaway.max_signals = 4;
    c
}

#[derive(Debug, Clone)]
enum Chaos {
    Op(Op),
    Cid {
        dev: i64,
        code: u16,
        q: u8,
        dt: i64,
    },
    Sia {
        dev: i64,
        code: [u8; 2],
        dt: i64,
    },
    Presence {
        dev: i64,
        online: bool,
        dt: i64,
    },
    Link {
        up: bool,
        dt: i64,
    },
    Unknown {
        dev: i64,
        text: String,
        dt: i64,
    },
    Replay {
        back: usize,
        dt: i64,
    },
    Forget {
        dev: i64,
    },
    Register {
        dev: i64,
        area: u8,
        interval_s: i64,
    },
    Configure {
        dedupe: i64,
        warn: i64,
        overflow: i64,
        storm: u32,
        runaway: u32,
    },
    WildTime {
        t: i64,
    },
    WildCommand {
        id: u64,
        who: usize,
        cmd: Cmd,
    },
}

fn chaos_strategy() -> impl Strategy<Value = Chaos> {
    let dev = 1..9i64;
    prop_oneof![
        8 => op_strategy().prop_map(Chaos::Op),
        4 => (dev.clone(), prop_oneof![Just(101u16), Just(111), Just(301), Just(302), Just(137), any::<u16>()], 0..8u8, 0..5i64)
            .prop_map(|(dev, code, q, dt)| Chaos::Cid { dev, code, q, dt }),
        1 => (dev.clone(), any::<[u8; 2]>(), 0..5i64).prop_map(|(dev, code, dt)| Chaos::Sia { dev, code, dt }),
        1 => (dev.clone(), any::<bool>(), 0..30i64).prop_map(|(dev, online, dt)| Chaos::Presence { dev, online, dt }),
        1 => (any::<bool>(), 0..30i64).prop_map(|(up, dt)| Chaos::Link { up, dt }),
        1 => (dev.clone(), ".{0,300}", 0..5i64).prop_map(|(dev, text, dt)| Chaos::Unknown { dev, text, dt }),
        1 => (0..20usize, 0..5i64).prop_map(|(back, dt)| Chaos::Replay { back, dt }),
        1 => dev.clone().prop_map(|dev| Chaos::Forget { dev }),
        1 => (dev, 0..4u8, -5..2000i64).prop_map(|(dev, area, interval_s)| Chaos::Register { dev, area, interval_s }),
        1 => (-5..30i64, -5..100i64, -5..100i64, 0..4u32, 0..6u32)
            .prop_map(|(dedupe, warn, overflow, storm, runaway)| Chaos::Configure { dedupe, warn, overflow, storm, runaway }),
        1 => prop_oneof![Just(i64::MIN), Just(i64::MAX), Just(0), any::<i64>()].prop_map(|t| Chaos::WildTime { t }),
        1 => (any::<u64>(), 0..ACTORS.len(), cmd_strategy()).prop_map(|(id, who, cmd)| Chaos::WildCommand { id, who, cmd }),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig { cases: cases(256), ..ProptestConfig::default() })]

    #[test]
    fn invariants_hold_under_storms_runaways_and_arbitrary_input(
        steps in prop::collection::vec(chaos_strategy(), 1..120),
    ) {
        let mut d = Driver::new(chaos_config());
        let mut inv = Invariants::default();
        let mut sent: Vec<SignalIn> = Vec::new();
        let mut wild = false;
        for step in &steps {
            let (input, at) = match step {
                Chaos::Op(op) => {
                    let input = d.input(op);
                    (input, ts(d.now))
                }
                Chaos::Cid { dev, code, q, dt } => {
                    d.now += dt;
                    let qualifier = match q {
                        1 => Qualifier::New,
                        3 => Qualifier::Restore,
                        6 => Qualifier::Status,
                        n => Qualifier::Other(char::from(b'0' + n)),
                    };
                    (d.signal(*dev, SignalWhat::ContactId { code: *code, qualifier }), ts(d.now))
                }
                Chaos::Sia { dev, code, dt } => {
                    d.now += dt;
                    (d.signal(*dev, SignalWhat::Sia { code: *code, restore: false }), ts(d.now))
                }
                Chaos::Presence { dev, online, dt } => {
                    d.now += dt;
                    (d.signal(*dev, SignalWhat::Presence { online: *online }), ts(d.now))
                }
                Chaos::Link { up, dt } => {
                    d.now += dt;
                    let what = if *up { SignalWhat::LinkRestored } else { SignalWhat::LinkLost };
                    let Input::Signal(mut s) = d.signal(1, what) else { unreachable!() };
                    s.device = None;
                    (Input::Signal(s), ts(d.now))
                }
                Chaos::Unknown { dev, text, dt } => {
                    d.now += dt;
                    (d.signal(*dev, SignalWhat::Unknown { raw_summary: text.clone() }), ts(d.now))
                }
                Chaos::Replay { back, dt } => {
                    d.now += dt;
                    match sent.iter().rev().nth(*back) {
                        Some(s) => (Input::Signal(s.clone()), ts(d.now)),
                        None => (Input::Tick, ts(d.now)),
                    }
                }
                Chaos::Forget { dev } => (Input::ForgetDevice { device: DeviceId(*dev) }, ts(d.now)),
                Chaos::Register { dev, area, interval_s } => (
                    Input::RegisterDevice(DeviceInfo {
                        area: (*area > 0).then(|| Name::from(format!("area-{area}"))),
                        test_interval: Some(Micros::from_secs(*interval_s)),
                        ..DeviceInfo::new(DeviceId(*dev))
                    }),
                    ts(d.now),
                ),
                Chaos::Configure { dedupe, warn, overflow, storm, runaway } => {
                    let mut c = chaos_config();
                    c.dedupe_window = Micros::from_secs(*dedupe);
                    c.sla.life_critical = Some(warden_core::SlaThresholds {
                        warn: Micros::from_secs(*warn),
                        overflow: Micros::from_secs(*overflow),
                        critical: Micros::from_secs(180),
                    });
                    c.storm.devices = *storm;
                    c.runaway.max_signals = *runaway;
                    (Input::Configure(Box::new(c)), ts(d.now))
                }
                Chaos::WildTime { t } => {
                    wild = true;
                    let Input::Signal(mut s) = d.signal(1, SignalWhat::ContactId { code: 101, qualifier: Qualifier::New }) else { unreachable!() };
                    s.received_at = Timestamp(*t);
                    (Input::Signal(s), Timestamp(t.wrapping_neg()))
                }
                Chaos::WildCommand { id, who, cmd } => {
                    let incident = IncidentId(*id);
                    let actor = ACTORS[*who];
                    let input = match cmd {
                        Cmd::Claim => Input::Claim { incident, actor },
                        Cmd::Release => Input::Release { incident, actor },
                        Cmd::TakeOver => Input::TakeOver { incident, actor },
                        Cmd::Note => Input::Note { incident, actor, text: String::new() },
                        Cmd::Resolve => Input::Resolve { incident, actor, outcome: OutcomeCode::parse("x").expect("valid") },
                    };
                    (input, ts(d.now))
                }
            };
            if let Input::Signal(s) = &input {
                sent.push(s.clone());
            }
            let effects = d.core.handle(input.clone(), at);
            // Wild clocks may legitimately confuse timing, never the invariants below.
            inv.step(&d.core, &input, &effects)
                .map_err(|e| TestCaseError::fail(format!("{step:?}: {e}")))?;
            let _ = d.core.next_deadline();
            let _ = d.core.pending_offers();
        }
        let _ = wild;
        // Whatever happened, the state snapshots and restores.
        let snap = d.core.snapshot();
        let again = Triage::from_snapshot(snap.clone()).expect("restores");
        prop_assert_eq!(again.snapshot(), snap);
    }
}
