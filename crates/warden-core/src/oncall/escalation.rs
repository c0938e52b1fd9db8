//! One incident's escalation: which step of its chain is next, when, and what to page.
//!
//! A pure state machine like the triage core: [`Escalation::fire`] is called at or after
//! [`Escalation::due`] with the current time and a [`Directory`] that says who is on call,
//! and returns the [`Action`]s to carry out; [`Escalation::acknowledge`] and
//! [`Escalation::stop`] record what people did. The shell persists the state (step, round,
//! next fire time) so a restart resumes the chain, and claims each page in a transaction
//! that re-checks the state, so an acknowledged incident never pages again.
//!
//! Rules (the failures other tools' users report are the test list):
//! 1. A step pages every target: a person, whoever is on call in a rota at that moment, or a
//!    whole team. A rota with nobody on call pages the chain's fallback at once and records
//!    the gap ([`Action::Gap`]); a step that reaches nobody at all does the same. If there is
//!    no fallback either, [`Action::Unreachable`] says so: never a silent skip.
//! 2. After a step, the next one fires after the step's wait; after the last step the chain
//!    starts again, up to `repeat` more rounds; then the fallback is paged
//!    ([`Action::Exhausted`]) and paged again every `reminder_every` while unanswered.
//! 3. A step with `keep_calling_every` pages its targets again at that interval until
//!    someone acknowledges, and does not move on.
//! 4. Acknowledging stops paging. The acknowledger is reminded every `reminder_every`; when
//!    `ack_timeout` passes without the incident being resolved, the chain starts again from
//!    its first step ([`Action::AckExpired`]).
//! 5. Stopping (the incident resolved, or claimed by an operator) ends the escalation; a
//!    stopped escalation never pages.

use serde::{Deserialize, Serialize};

use super::rota::PersonId;
use crate::{Micros, Timestamp};

/// A rota (`rotas.id`).
pub type RotaId = i64;
/// A team (`teams.id`).
pub type TeamId = i64;

/// Whom a step pages.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "kind", content = "id")]
pub enum Target {
    /// One person.
    Person(PersonId),
    /// Whoever is on call in the rota when the step fires.
    Rota(RotaId),
    /// Every member of the team.
    Team(TeamId),
}

/// One step of a chain.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Step {
    /// Paged together.
    pub targets: Vec<Target>,
    /// How long after paging the next step fires.
    pub wait: Micros,
    /// Page the targets again at this interval until someone acknowledges, instead of moving
    /// on.
    #[serde(default)]
    pub keep_calling_every: Option<Micros>,
}

/// An escalation chain.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Chain {
    /// In order; at least one.
    pub steps: Vec<Step>,
    /// How many more times the whole chain runs after the first round.
    #[serde(default)]
    pub repeat: u32,
    /// Paged when a rota has nobody on call, a step reaches nobody, or the chain is
    /// exhausted.
    pub fallback: Vec<PersonId>,
    /// How long an acknowledgement holds before the chain starts again.
    pub ack_timeout: Micros,
    /// How often the acknowledger, or after exhaustion the fallback, is reminded.
    pub reminder_every: Option<Micros>,
}

/// What the chain needs to know of the world when it fires.
pub trait Directory {
    /// Who is on call in `rota` at `at`; `None` for nobody (or no such rota).
    fn on_call(&self, rota: RotaId, at: Timestamp) -> Option<PersonId>;
    /// The members of `team` (empty for none or no such team).
    fn team(&self, team: TeamId) -> Vec<PersonId>;
}

/// Why a person is paged.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Reason {
    /// A target of the step.
    Step,
    /// The fallback, standing in for a gap or an exhausted chain.
    Fallback,
    /// A reminder of an acknowledged, unresolved incident.
    Reminder,
}

/// What the shell must do.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "action")]
pub enum Action {
    /// Notify `person` through their contact methods.
    Page {
        /// Who.
        person: PersonId,
        /// The step that pages (for a reminder or fallback: the step the chain stands at).
        step: usize,
        /// Rounds of the chain completed before this page.
        round: u32,
        /// Why.
        reason: Reason,
    },
    /// A target reached nobody (a rota with nobody on call, an empty team): record the gap.
    Gap {
        /// The step whose target it is.
        step: usize,
        /// The target that reached nobody.
        target: Target,
    },
    /// The chain ran out: the fallback is being paged.
    Exhausted {
        /// Rounds that ran unanswered, less one.
        rounds: u32,
    },
    /// Nobody could be paged at all (no target and no fallback): raise it loudly.
    Unreachable {
        /// The step that reached nobody.
        step: usize,
    },
    /// An acknowledgement was recorded.
    Acknowledged {
        /// Who acknowledged.
        by: PersonId,
    },
    /// An acknowledgement ran out with the incident unresolved; the chain starts again.
    AckExpired {
        /// Who had acknowledged.
        by: PersonId,
    },
}

/// Where an escalation stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "state")]
pub enum State {
    /// Paging through the chain.
    Running,
    /// Someone acknowledged; paging waits until `until`.
    Acknowledged {
        /// Who.
        by: PersonId,
        /// When the acknowledgement runs out.
        until: Timestamp,
    },
    /// Every round ran unanswered; the fallback is reminded.
    Exhausted,
    /// Resolved or taken over: never pages again.
    Stopped,
}

/// One incident's escalation; what the store keeps.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Escalation {
    /// Where it stands.
    pub state: State,
    /// The step that fires next.
    pub step: usize,
    /// Rounds completed.
    pub round: u32,
    /// When it fires next; `None` when stopped.
    pub next_at: Option<Timestamp>,
}

impl Escalation {
    /// An escalation that fires its first step at `now`.
    pub fn start(now: Timestamp) -> Self {
        Escalation {
            state: State::Running,
            step: 0,
            round: 0,
            next_at: Some(now),
        }
    }

    /// When [`Escalation::fire`] must next be called.
    pub fn due(&self) -> Option<Timestamp> {
        self.next_at
    }

    /// Whether paging is held by an acknowledgement or over.
    pub fn is_quiet(&self) -> bool {
        matches!(self.state, State::Acknowledged { .. } | State::Stopped)
    }

    /// Records an acknowledgement by `by`: paging stops until `now + ack_timeout`.
    pub fn acknowledge(&mut self, chain: &Chain, by: PersonId, now: Timestamp) -> Vec<Action> {
        if self.state == State::Stopped {
            return Vec::new();
        }
        let until = now.saturating_add(chain.ack_timeout);
        self.state = State::Acknowledged { by, until };
        self.next_at = Some(match chain.reminder_every {
            Some(every) if now.saturating_add(every) < until => now.saturating_add(every),
            _ => until,
        });
        vec![Action::Acknowledged { by }]
    }

    /// Ends the escalation: nothing more is paged.
    pub fn stop(&mut self) {
        self.state = State::Stopped;
        self.next_at = None;
    }

    /// Does what is due at `now` (nothing before [`Escalation::due`]).
    pub fn fire(&mut self, chain: &Chain, dir: &dyn Directory, now: Timestamp) -> Vec<Action> {
        let mut out = Vec::new();
        if self.next_at.is_none_or(|at| now < at) {
            return out;
        }
        match self.state {
            State::Stopped => {
                self.next_at = None;
            }
            State::Acknowledged { by, until } => {
                if now >= until {
                    out.push(Action::AckExpired { by });
                    self.state = State::Running;
                    self.step = 0;
                    self.round = 0;
                    self.run_step(chain, dir, now, &mut out);
                } else {
                    out.push(Action::Page {
                        person: by,
                        step: self.step,
                        round: self.round,
                        reason: Reason::Reminder,
                    });
                    let next = chain
                        .reminder_every
                        .map_or(until, |every| now.saturating_add(every).min(until));
                    self.next_at = Some(next);
                }
            }
            State::Exhausted => {
                self.page_fallback(chain, &mut out);
                self.next_at = chain.reminder_every.map(|every| now.saturating_add(every));
            }
            State::Running => self.run_step(chain, dir, now, &mut out),
        }
        out
    }

    fn run_step(
        &mut self,
        chain: &Chain,
        dir: &dyn Directory,
        now: Timestamp,
        out: &mut Vec<Action>,
    ) {
        let Some(step) = chain.steps.get(self.step) else {
            // Past the last step of the last round (or an empty chain).
            self.state = State::Exhausted;
            out.push(Action::Exhausted { rounds: self.round });
            self.page_fallback(chain, out);
            self.next_at = chain.reminder_every.map(|every| now.saturating_add(every));
            return;
        };
        let mut people: Vec<PersonId> = Vec::new();
        let mut gap = false;
        for &target in &step.targets {
            let found = match target {
                Target::Person(p) => vec![p],
                Target::Rota(r) => dir.on_call(r, now).into_iter().collect(),
                Target::Team(t) => dir.team(t),
            };
            if found.is_empty() {
                gap = true;
                out.push(Action::Gap {
                    step: self.step,
                    target,
                });
            }
            for p in found {
                if !people.contains(&p) {
                    people.push(p);
                }
            }
        }
        if step.targets.is_empty() {
            gap = true;
        }
        for &person in &people {
            out.push(Action::Page {
                person,
                step: self.step,
                round: self.round,
                reason: Reason::Step,
            });
        }
        if gap {
            let paged = chain
                .fallback
                .iter()
                .filter(|p| !people.contains(p))
                .count();
            for &person in chain.fallback.iter().filter(|p| !people.contains(p)) {
                out.push(Action::Page {
                    person,
                    step: self.step,
                    round: self.round,
                    reason: Reason::Fallback,
                });
            }
            if people.is_empty() && paged == 0 {
                out.push(Action::Unreachable { step: self.step });
            }
        }
        if let Some(every) = step.keep_calling_every {
            self.next_at = Some(now.saturating_add(every.max(Micros::from_secs(1))));
            return;
        }
        self.next_at = Some(now.saturating_add(step.wait));
        self.step += 1;
        if self.step >= chain.steps.len() && self.round < chain.repeat {
            self.step = 0;
            self.round += 1;
        }
    }

    fn page_fallback(&self, chain: &Chain, out: &mut Vec<Action>) {
        if chain.fallback.is_empty() {
            out.push(Action::Unreachable { step: self.step });
        }
        for &person in &chain.fallback {
            out.push(Action::Page {
                person,
                step: self.step,
                round: self.round,
                reason: Reason::Fallback,
            });
        }
    }
}
