//! Triage core throughput on one core, and memory per device and per open incident.
//!
//! `cargo bench -p warden-core --bench triage -- --measurement-time 5`
//!
//! The mix, per 1,000 events over 100,000 registered units in 200 areas: 685 heartbeats,
//! 150 periodic tests, 100 technical signals (mains, battery, comms; half restores), 15
//! alarms (pendant presses and restores, floods), 40 commands (operators claim and resolve
//! alarms; a supervisor resolves technical incidents and storm groups) and 10 ticks. The
//! simulated clock advances 500 µs per event (2,000 signals/s, the brief's sustained rate),
//! so technical storms form per area and are dealt with as a control room would.

use std::collections::VecDeque;
use std::hint::black_box;
use std::time::{Duration, Instant};

use criterion::{Criterion, Throughput, criterion_group};
use warden_core::{
    Actor, Config, DeviceId, DeviceInfo, Effect, IncidentId, Input, Micros, Name, OutcomeCode,
    Priority, SignalId, SignalIn, SignalWhat, Source, Timestamp, Triage,
};
use warden_types::Qualifier;

const DEVICES: i64 = 100_000;
const AREAS: usize = 200;
const BATCH: u64 = 10_000;
const T0: i64 = 1_800_000_000;

/// A tiny deterministic generator (xorshift), so every run sees the same stream.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

#[derive(Clone, Copy)]
enum Slot {
    Heartbeat,
    Test,
    Technical,
    Alarm,
    Command,
    Tick,
}

/// The per-mille mix, shuffled once.
fn schedule(rng: &mut Rng) -> Vec<Slot> {
    let mut v = Vec::with_capacity(1000);
    v.extend(std::iter::repeat_n(Slot::Heartbeat, 685));
    v.extend(std::iter::repeat_n(Slot::Test, 150));
    v.extend(std::iter::repeat_n(Slot::Technical, 100));
    v.extend(std::iter::repeat_n(Slot::Alarm, 15));
    v.extend(std::iter::repeat_n(Slot::Command, 40));
    v.extend(std::iter::repeat_n(Slot::Tick, 10));
    for i in (1..v.len()).rev() {
        let j = usize::try_from(rng.below(i as u64 + 1)).unwrap_or(0);
        v.swap(i, j);
    }
    v
}

/// A running workload: the core, the devices, the clock and the simulated operators.
struct Load {
    core: Triage,
    devices: Vec<DeviceInfo>,
    link: Name,
    now: Timestamp,
    next_signal: u128,
    rng: Rng,
    schedule: Vec<Slot>,
    cursor: usize,
    alarms: VecDeque<IncidentId>,
    technical: VecDeque<IncidentId>,
    claimed: VecDeque<IncidentId>,
    commands: u64,
    effects: Vec<Effect>,
    outcome: OutcomeCode,
}

impl Load {
    fn new() -> Self {
        let mut rng = Rng(0x9E37_79B9_7F4A_7C15);
        let areas: Vec<Name> = (0..AREAS)
            .map(|a| Name::from(format!("scheme-{a:03}")))
            .collect();
        let types = [Name::from("pendant-a"), Name::from("hub-b")];
        let devices: Vec<DeviceInfo> = (1..=DEVICES)
            .map(|id| {
                let i = usize::try_from(id).unwrap_or(0);
                DeviceInfo {
                    id: DeviceId(id),
                    area: Some(areas[i % AREAS].clone()),
                    test_interval: Some(Micros::from_hours(24)),
                    device_type: Some(types[i % 2].clone()),
                    client: Some(id),
                }
            })
            .collect();
        let mut core = Triage::new(Config::default());
        let now = Timestamp::from_secs(T0);
        for d in &devices {
            core.handle(Input::RegisterDevice(d.clone()), now);
        }
        let schedule = schedule(&mut rng);
        Load {
            core,
            devices,
            link: Name::from("serial:ttyS0"),
            now,
            next_signal: 1,
            rng,
            schedule,
            cursor: 0,
            alarms: VecDeque::new(),
            technical: VecDeque::new(),
            claimed: VecDeque::new(),
            commands: 0,
            effects: Vec::with_capacity(64),
            outcome: OutcomeCode::parse("assistance_given").unwrap_or_else(|_| unreachable!()),
        }
    }

    fn signal(&mut self, what: SignalWhat) -> Input {
        let i = usize::try_from(self.rng.below(DEVICES as u64)).unwrap_or(0);
        let id = SignalId(self.next_signal);
        self.next_signal += 1;
        Input::Signal(SignalIn {
            id,
            source: Source::Serial,
            link: self.link.clone(),
            account: None,
            device: Some(self.devices[i].clone()),
            what,
            received_at: self.now,
        })
    }

    fn command(&mut self) -> Input {
        self.commands += 1;
        let operator = Actor::operator(1 + i64::try_from(self.commands % 8).unwrap_or(0));
        let supervisor = Actor::supervisor(99);
        // One command in four: a supervisor closes a technical incident or storm group.
        if self.commands.is_multiple_of(4)
            && let Some(id) = self.technical.pop_front()
        {
            return Input::Resolve {
                incident: id,
                actor: supervisor,
                outcome: self.outcome.clone(),
            };
        }
        // Operators hold at most 30 alarms at once; beyond that they close before claiming.
        if self.claimed.len() >= 30
            && let Some(id) = self.claimed.pop_front()
        {
            return self.close(id);
        }
        match self.alarms.pop_front() {
            Some(id) => {
                self.claimed.push_back(id);
                Input::Claim {
                    incident: id,
                    actor: operator,
                }
            }
            None => match self.claimed.pop_front() {
                Some(id) => self.close(id),
                None => Input::Tick,
            },
        }
    }

    /// A claimed alarm is closed by a supervisor (who may close anyone's; the operator who
    /// claimed it has moved on in this simulation).
    fn close(&self, id: IncidentId) -> Input {
        Input::Resolve {
            incident: id,
            actor: Actor::supervisor(99),
            outcome: self.outcome.clone(),
        }
    }

    /// One event of the mix.
    fn step(&mut self) {
        self.now = self.now.saturating_add(Micros(500));
        let slot = self.schedule[self.cursor];
        self.cursor = (self.cursor + 1) % self.schedule.len();
        let input = match slot {
            Slot::Heartbeat => self.signal(SignalWhat::Heartbeat),
            Slot::Test => self.signal(SignalWhat::ContactId {
                code: 602,
                qualifier: Qualifier::New,
            }),
            Slot::Technical => {
                let code = [301, 302, 350][usize::try_from(self.rng.below(3)).unwrap_or(0)];
                let qualifier = if self.rng.below(2) == 0 {
                    Qualifier::New
                } else {
                    Qualifier::Restore
                };
                self.signal(SignalWhat::ContactId { code, qualifier })
            }
            Slot::Alarm => {
                let (code, qualifier) = match self.rng.below(4) {
                    0 | 1 => (101, Qualifier::New),
                    2 => (101, Qualifier::Restore),
                    _ => (154, Qualifier::New),
                };
                self.signal(SignalWhat::ContactId { code, qualifier })
            }
            Slot::Command => self.command(),
            Slot::Tick => Input::Tick,
        };
        self.effects.clear();
        self.core.handle_into(input, self.now, &mut self.effects);
        for e in &self.effects {
            if let Effect::Offer {
                incident, priority, ..
            } = e
            {
                match priority {
                    Priority::LifeCritical | Priority::Urgent => self.alarms.push_back(*incident),
                    _ => self.technical.push_back(*incident),
                }
            }
        }
        black_box(&self.effects);
    }
}

fn throughput(c: &mut Criterion) {
    let mut load = Load::new();
    // Warm the state up to a steady mix of open incidents and groups.
    for _ in 0..200_000 {
        load.step();
    }
    let mut g = c.benchmark_group("triage");
    g.throughput(Throughput::Elements(BATCH));
    g.bench_function("realistic_mix_100k_devices", |b| {
        b.iter_custom(|iters| {
            let start = Instant::now();
            for _ in 0..iters {
                for _ in 0..BATCH {
                    load.step();
                }
            }
            start.elapsed()
        });
    });
    let mut by = std::collections::BTreeMap::new();
    for i in load.core.open_incidents() {
        *by.entry((i.priority, i.kind, i.state, i.group.is_some()))
            .or_insert(0usize) += 1;
    }
    eprintln!(
        "steady state: {} open incidents, {} registered devices: {by:?}",
        load.core.open_incident_count(),
        load.core.device_count()
    );

    let mut hb = Load::new();
    g.bench_function("heartbeats_only_100k_devices", |b| {
        b.iter_custom(|iters| {
            let start = Instant::now();
            for _ in 0..iters {
                for _ in 0..BATCH {
                    hb.now = hb.now.saturating_add(Micros(50));
                    let input = hb.signal(SignalWhat::Heartbeat);
                    hb.effects.clear();
                    hb.core.handle_into(input, hb.now, &mut hb.effects);
                }
            }
            start.elapsed()
        });
    });
    g.finish();

    let mut g = c.benchmark_group("storm");
    g.throughput(Throughput::Elements(20_000));
    g.sample_size(10);
    g.bench_function("mains_fail_20k_units_200_areas", |b| {
        b.iter_custom(|iters| {
            let mut total = Duration::ZERO;
            for _ in 0..iters {
                let mut s = Load::new();
                let start = Instant::now();
                for i in 0..20_000usize {
                    s.now = s.now.saturating_add(Micros(500));
                    let id = SignalId(s.next_signal);
                    s.next_signal += 1;
                    let input = Input::Signal(SignalIn {
                        id,
                        source: Source::Serial,
                        link: s.link.clone(),
                        account: None,
                        device: Some(s.devices[i * 5].clone()),
                        what: SignalWhat::ContactId {
                            code: 301,
                            qualifier: Qualifier::New,
                        },
                        received_at: s.now,
                    });
                    s.effects.clear();
                    s.core.handle_into(input, s.now, &mut s.effects);
                }
                total += start.elapsed();
                black_box(s.core.open_incident_count());
            }
            total
        });
    });
    g.finish();
}

/// Resident set size from /proc (Linux); `None` elsewhere.
fn rss_bytes() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    let kb: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb * 1024)
}

/// Bytes per registered device and per open incident, by RSS growth and by the core's own
/// estimate.
fn memory_report() {
    let before = rss_bytes().unwrap_or(0);
    let mut core = Triage::new(Config::default());
    let now = Timestamp::from_secs(T0);
    let areas: Vec<Name> = (0..AREAS).map(|a| Name::from(format!("s{a}"))).collect();
    for id in 1..=100_000i64 {
        let i = usize::try_from(id).unwrap_or(0);
        core.handle(
            Input::RegisterDevice(DeviceInfo {
                id: DeviceId(id),
                area: Some(areas[i % AREAS].clone()),
                test_interval: Some(Micros::from_hours(24)),
                device_type: None,
                client: Some(id),
            }),
            now,
        );
    }
    let with_devices = rss_bytes().unwrap_or(0);
    let est_devices = core.approx_heap_bytes();
    let mut out = Vec::new();
    for id in 1..=10_000i64 {
        let t = now.saturating_add(Micros::from_millis(id));
        out.clear();
        let (cid_code, q) = if id % 2 == 0 {
            (101, Qualifier::New)
        } else {
            (154, Qualifier::New)
        };
        core.handle_into(
            Input::Signal(SignalIn {
                id: SignalId(u128::try_from(id).unwrap_or(0)),
                source: Source::Serial,
                link: Name::from("serial:ttyS0"),
                account: None,
                device: Some(DeviceInfo {
                    id: DeviceId(id),
                    area: Some(areas[usize::try_from(id).unwrap_or(0) % AREAS].clone()),
                    test_interval: Some(Micros::from_hours(24)),
                    device_type: None,
                    client: Some(id),
                }),
                what: SignalWhat::ContactId {
                    code: cid_code,
                    qualifier: q,
                },
                received_at: t,
            }),
            t,
            &mut out,
        );
    }
    let with_incidents = rss_bytes().unwrap_or(0);
    let est_all = core.approx_heap_bytes();
    #[allow(clippy::cast_precision_loss)]
    let mb = |b: u64| b as f64 / 1e6;
    eprintln!(
        "memory: 100,000 devices: RSS +{:.1} MB ({} B/device), estimate {} B/device",
        mb(with_devices.saturating_sub(before)),
        with_devices.saturating_sub(before) / 100_000,
        est_devices / 100_000
    );
    eprintln!(
        "memory: 10,000 open incidents: RSS +{:.1} MB ({} B/incident), estimate {} B/incident (incl. dedupe memory)",
        mb(with_incidents.saturating_sub(with_devices)),
        with_incidents.saturating_sub(with_devices) / 10_000,
        est_all.saturating_sub(est_devices) / 10_000
    );
    eprintln!(
        "memory: total RSS {:.1} MB for 100k devices + {} open incidents (budget 300 MB for the whole daemon)",
        mb(with_incidents),
        core.open_incident_count()
    );
    black_box(core);
}

criterion_group!(benches, throughput);

fn main() {
    memory_report();
    benches();
    Criterion::default().configure_from_args().final_summary();
}
