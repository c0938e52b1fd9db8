//! The escalation state machine against the failures other tools' users report: a single
//! unanswered call with the next step far away, nobody on duty and no page, acknowledged
//! alerts forgotten, an acknowledged incident paged again.

use std::collections::HashMap;

use proptest::prelude::*;
use warden_core::oncall::{
    Action, Chain, Directory, Escalation, PersonId, Reason, RotaId, State, Step, Target, TeamId,
};
use warden_core::{Micros, Timestamp};

/// Rotas and teams as plain maps; a rota missing from `on_call` has nobody on call.
#[derive(Default)]
struct Dir {
    on_call: HashMap<RotaId, PersonId>,
    teams: HashMap<TeamId, Vec<PersonId>>,
}

impl Directory for Dir {
    fn on_call(&self, rota: RotaId, _at: Timestamp) -> Option<PersonId> {
        self.on_call.get(&rota).copied()
    }
    fn team(&self, team: TeamId) -> Vec<PersonId> {
        self.teams.get(&team).cloned().unwrap_or_default()
    }
}

const FALLBACK: PersonId = 900;

fn s(n: i64) -> Micros {
    Micros::from_secs(n)
}

fn t(n: i64) -> Timestamp {
    Timestamp::from_secs(n)
}

/// On-call rota 1 first, then the duty manager (person 50), then the whole team 7.
fn chain() -> Chain {
    Chain {
        steps: vec![
            Step {
                targets: vec![Target::Rota(1)],
                wait: s(120),
                keep_calling_every: None,
            },
            Step {
                targets: vec![Target::Person(50)],
                wait: s(120),
                keep_calling_every: None,
            },
            Step {
                targets: vec![Target::Team(7)],
                wait: s(300),
                keep_calling_every: None,
            },
        ],
        repeat: 1,
        fallback: vec![FALLBACK],
        ack_timeout: s(1_800),
        reminder_every: Some(s(600)),
    }
}

fn dir() -> Dir {
    Dir {
        on_call: [(1, 10)].into_iter().collect(),
        teams: [(7, vec![50, 60, 70])].into_iter().collect(),
    }
}

fn pages(actions: &[Action]) -> Vec<(PersonId, Reason)> {
    actions
        .iter()
        .filter_map(|a| match a {
            Action::Page { person, reason, .. } => Some((*person, *reason)),
            _ => None,
        })
        .collect()
}

/// Fires whenever due until `until`, collecting (when, actions).
fn run(e: &mut Escalation, c: &Chain, d: &Dir, until: Timestamp) -> Vec<(Timestamp, Vec<Action>)> {
    let mut out = Vec::new();
    while let Some(due) = e.due() {
        if due > until {
            break;
        }
        out.push((due, e.fire(c, d, due)));
    }
    out
}

#[test]
fn an_unanswered_chain_climbs_its_steps_repeats_once_then_pages_the_fallback() {
    use Reason::{Fallback, Step as S};
    let (c, d) = (chain(), dir());
    let mut e = Escalation::start(t(0));
    let fired = run(&mut e, &c, &d, t(10_000));
    let seen: Vec<(i64, Vec<(PersonId, Reason)>)> = fired
        .iter()
        .map(|(at, a)| (at.as_micros() / 1_000_000, pages(a)))
        .collect();
    assert_eq!(
        seen[..7],
        [
            (0, vec![(10, S)]),
            (120, vec![(50, S)]),
            (240, vec![(50, S), (60, S), (70, S)]),
            // Round two.
            (540, vec![(10, S)]),
            (660, vec![(50, S)]),
            (780, vec![(50, S), (60, S), (70, S)]),
            // Exhausted: the fallback, then reminders every 10 minutes.
            (1_080, vec![(FALLBACK, Fallback)]),
        ]
    );
    assert!(fired[6].1.contains(&Action::Exhausted { rounds: 1 }));
    assert_eq!(seen[7], (1_680, vec![(FALLBACK, Fallback)]));
    assert_eq!(e.state, State::Exhausted);
}

#[test]
fn nobody_on_call_pages_the_fallback_at_once_and_records_the_gap() {
    let c = chain();
    let d = Dir::default(); // rota 1 has nobody on call
    let mut e = Escalation::start(t(0));
    let actions = e.fire(&c, &d, t(0));
    assert!(actions.contains(&Action::Gap {
        step: 0,
        target: Target::Rota(1)
    }));
    assert_eq!(pages(&actions), vec![(FALLBACK, Reason::Fallback)]);
    // And with no fallback either, it says so instead of skipping silently.
    let lonely = Chain {
        fallback: Vec::new(),
        ..chain()
    };
    let mut e = Escalation::start(t(0));
    let actions = e.fire(&lonely, &d, t(0));
    assert!(actions.contains(&Action::Unreachable { step: 0 }));
    assert!(pages(&actions).is_empty());
}

#[test]
fn an_acknowledgement_stops_paging_reminds_the_acknowledger_and_runs_out() {
    let (c, d) = (chain(), dir());
    let mut e = Escalation::start(t(0));
    e.fire(&c, &d, t(0));
    assert_eq!(
        e.acknowledge(&c, 10, t(30)),
        vec![Action::Acknowledged { by: 10 }]
    );
    // Nothing at the step-two time any more.
    assert!(e.fire(&c, &d, t(120)).is_empty());
    let fired = run(&mut e, &c, &d, t(1_830));
    let when: Vec<i64> = fired
        .iter()
        .map(|(at, _)| at.as_micros() / 1_000_000)
        .collect();
    assert_eq!(when, vec![630, 1_230, 1_830]);
    assert_eq!(pages(&fired[0].1), vec![(10, Reason::Reminder)]);
    assert_eq!(pages(&fired[1].1), vec![(10, Reason::Reminder)]);
    // 30 minutes after the acknowledgement, unresolved: the chain starts again.
    assert!(fired[2].1.contains(&Action::AckExpired { by: 10 }));
    assert_eq!(pages(&fired[2].1), vec![(10, Reason::Step)]);
    assert_eq!(e.state, State::Running);
}

#[test]
fn keep_calling_pages_the_same_step_until_someone_acknowledges() {
    let d = dir();
    let c = Chain {
        steps: vec![Step {
            targets: vec![Target::Rota(1)],
            wait: s(600),
            keep_calling_every: Some(s(60)),
        }],
        ..chain()
    };
    let mut e = Escalation::start(t(0));
    let fired = run(&mut e, &c, &d, t(180));
    assert_eq!(fired.len(), 4, "at 0, 60, 120 and 180 s");
    assert!(
        fired
            .iter()
            .all(|(_, a)| pages(a) == vec![(10, Reason::Step)])
    );
    e.acknowledge(&c, 10, t(200));
    assert!(e.fire(&c, &d, t(240)).is_empty());
}

#[test]
fn a_stopped_escalation_never_pages_again() {
    let (c, d) = (chain(), dir());
    let mut e = Escalation::start(t(0));
    e.fire(&c, &d, t(0));
    e.stop();
    assert_eq!(e.due(), None);
    assert!(e.fire(&c, &d, t(100_000)).is_empty());
    assert!(e.acknowledge(&c, 10, t(100_001)).is_empty());
    assert_eq!(e.due(), None);
}

#[derive(Debug, Clone)]
enum Op {
    Wait(i64),
    Ack(PersonId),
    Stop,
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        6 => (1i64..2_000).prop_map(Op::Wait),
        2 => prop_oneof![Just(10), Just(50), Just(60)].prop_map(Op::Ack),
        1 => Just(Op::Stop),
    ]
}

proptest! {
    /// Whatever happens, in any order: between an acknowledgement and its expiry the only
    /// pages are reminders to the acknowledger; after a stop nothing is paged; every fire
    /// that is due pages someone or says why it could not (gap, unreachable); and the
    /// escalation is always due again unless stopped.
    #[test]
    fn acknowledged_and_stopped_escalations_stay_quiet(ops in proptest::collection::vec(op(), 1..60),
                                                       nobody in any::<bool>()) {
        let c = chain();
        let d = if nobody { Dir::default() } else { dir() };
        let mut e = Escalation::start(t(0));
        let mut now = t(0);
        let mut stopped = false;
        for op in ops {
            match op {
                Op::Wait(secs) => {
                    let until = now.saturating_add(s(secs));
                    for (at, actions) in run(&mut e, &c, &d, until) {
                        prop_assert!(!stopped, "a stopped escalation fired");
                        let acked_by = match e.state { State::Acknowledged { by, .. } => Some(by), _ => None };
                        if let Some(by) = acked_by {
                            prop_assert!(pages(&actions).iter().all(|&(p, r)| p == by && r == Reason::Reminder),
                                "paged while acknowledged at {at:?}: {actions:?}");
                        }
                        prop_assert!(
                            !pages(&actions).is_empty()
                                || actions.iter().any(|a| matches!(a, Action::Unreachable { .. })),
                            "a due fire paged nobody and said nothing: {actions:?}"
                        );
                        prop_assert!(at >= now);
                    }
                    now = until;
                }
                Op::Ack(by) => {
                    let actions = e.acknowledge(&c, by, now);
                    prop_assert_eq!(actions.is_empty(), stopped);
                }
                Op::Stop => {
                    e.stop();
                    stopped = true;
                }
            }
            prop_assert_eq!(e.due().is_none(), stopped);
        }
    }
}
