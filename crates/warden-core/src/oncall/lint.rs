//! The configuration check: what in the rotas and chains would fail someone over the next
//! days, found before an alarm finds it (issue "escalation and on-call", part 5). Run on
//! every save and on a schedule; each finding becomes a technical incident and a metric.

use std::collections::{BTreeMap, BTreeSet};

use jiff::civil::Date;

use super::escalation::{Chain, RotaId, Target, TeamId};
use super::rota::{PersonId, Rota};
use crate::Timestamp;

/// A chain (`chains.id`).
pub type ChainId = i64;

/// What the check sees of the configuration.
#[derive(Debug, Clone, Copy)]
pub struct Setup<'a> {
    /// Every rota.
    pub rotas: &'a BTreeMap<RotaId, Rota>,
    /// Every chain.
    pub chains: &'a BTreeMap<ChainId, Chain>,
    /// Every team with its members.
    pub teams: &'a BTreeMap<TeamId, Vec<PersonId>>,
    /// The people with at least one verified contact method.
    pub reachable: &'a BTreeSet<PersonId>,
}

/// One problem.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Finding {
    /// A chain pages this rota, and nobody is on call in it for this stretch: every alarm
    /// then goes straight to the chain's fallback.
    NobodyOnCall {
        /// The chain that pages the rota.
        chain: ChainId,
        /// The rota.
        rota: RotaId,
        /// Inclusive.
        from: Timestamp,
        /// Exclusive.
        to: Timestamp,
    },
    /// Someone a chain can page has no verified way to be reached.
    NoVerifiedContact {
        /// Who.
        person: PersonId,
    },
    /// A chain with no fallback: a gap or an exhausted chain would page nobody.
    NoFallback {
        /// The chain.
        chain: ChainId,
    },
    /// A rota has nobody on call for part of one of its bank holidays.
    EmptyOnBankHoliday {
        /// The rota.
        rota: RotaId,
        /// The holiday, in the rota's zone.
        date: Date,
    },
    /// A chain names a rota or team that does not exist.
    MissingTarget {
        /// The chain.
        chain: ChainId,
        /// What it names.
        target: Target,
    },
}

impl Finding {
    /// A short name for metrics and logs.
    pub fn name(&self) -> &'static str {
        match self {
            Finding::NobodyOnCall { .. } => "nobody_on_call",
            Finding::NoVerifiedContact { .. } => "no_verified_contact",
            Finding::NoFallback { .. } => "no_fallback",
            Finding::EmptyOnBankHoliday { .. } => "empty_on_bank_holiday",
            Finding::MissingTarget { .. } => "missing_target",
        }
    }

    /// Every name, for metrics registered at zero.
    pub const NAMES: &'static [&'static str] = &[
        "nobody_on_call",
        "no_verified_contact",
        "no_fallback",
        "empty_on_bank_holiday",
        "missing_target",
    ];
}

impl std::fmt::Display for Finding {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Finding::NobodyOnCall {
                chain,
                rota,
                from,
                to,
            } => write!(
                f,
                "nobody is on call in rota {rota} (paged by chain {chain}) from {from} to {to}"
            ),
            Finding::NoVerifiedContact { person } => write!(
                f,
                "person {person} can be paged but has no verified contact method this centre \
                 can deliver"
            ),
            Finding::NoFallback { chain } => write!(f, "chain {chain} has no fallback"),
            Finding::EmptyOnBankHoliday { rota, date } => {
                write!(
                    f,
                    "rota {rota} has nobody on call for part of the bank holiday {date}"
                )
            }
            Finding::MissingTarget { chain, target } => {
                let (what, id) = match target {
                    Target::Person(id) => ("person", id),
                    Target::Rota(id) => ("rota", id),
                    Target::Team(id) => ("team", id),
                };
                write!(f, "chain {chain} pages {what} {id}, which does not exist")
            }
        }
    }
}

/// Everything wrong with `setup` between `from` and `to`, in a stable order: per chain its
/// fallback, targets and gaps, then bank holidays per rota, then unreachable people.
pub fn check(setup: &Setup<'_>, from: Timestamp, to: Timestamp) -> Vec<Finding> {
    let mut out = Vec::new();
    let mut pageable: BTreeSet<PersonId> = BTreeSet::new();
    for (chain_id, chain) in setup.chains {
        if chain.fallback.is_empty() {
            out.push(Finding::NoFallback { chain: *chain_id });
        }
        pageable.extend(chain.fallback.iter().copied());
        let mut seen: BTreeSet<Target> = BTreeSet::new();
        for target in chain.steps.iter().flat_map(|s| s.targets.iter().copied()) {
            if !seen.insert(target) {
                continue;
            }
            match target {
                Target::Person(p) => {
                    pageable.insert(p);
                }
                Target::Team(t) => match setup.teams.get(&t) {
                    Some(members) => pageable.extend(members.iter().copied()),
                    None => out.push(Finding::MissingTarget {
                        chain: *chain_id,
                        target,
                    }),
                },
                Target::Rota(r) => match setup.rotas.get(&r) {
                    Some(rota) => {
                        for segment in rota.timeline(from, to) {
                            match segment.on_call {
                                Some(on_call) => {
                                    pageable.insert(on_call.person);
                                }
                                None => out.push(Finding::NobodyOnCall {
                                    chain: *chain_id,
                                    rota: r,
                                    from: segment.start,
                                    to: segment.end,
                                }),
                            }
                        }
                    }
                    None => out.push(Finding::MissingTarget {
                        chain: *chain_id,
                        target,
                    }),
                },
            }
        }
    }
    for (rota_id, rota) in setup.rotas {
        for &date in &rota.bank_holidays {
            let start = rota.start_of(date);
            let end = date.tomorrow().map_or(start, |d| rota.start_of(d));
            if end <= from || start >= to {
                continue;
            }
            if rota
                .timeline(start.max(from), end.min(to))
                .iter()
                .any(|s| s.on_call.is_none())
            {
                out.push(Finding::EmptyOnBankHoliday {
                    rota: *rota_id,
                    date,
                });
            }
        }
    }
    out.extend(
        pageable
            .into_iter()
            .filter(|p| !setup.reachable.contains(p))
            .map(|person| Finding::NoVerifiedContact { person }),
    );
    out
}
