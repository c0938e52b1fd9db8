//! The stored on-call configuration as the core's values: rotas with their zones, chains,
//! teams, routes and contact methods. A row that cannot be read (an unknown zone, rules
//! that do not parse) is left out with an error naming it; a chain step that targets it
//! then reaches nobody, which pages the fallback and records the gap.

use std::collections::{BTreeMap, HashMap};

use jiff::tz::TimeZone;
use warden_core::Timestamp;
use warden_core::oncall::{Chain, Directory, Layer, Override, PersonId, Rota, RotaId, TeamId};
use warden_store::{ContactRow, OncallConfig, RouteRow};

/// The configuration, ready to evaluate.
#[derive(Debug, Default)]
pub struct Oncall {
    pub rotas: BTreeMap<RotaId, Rota>,
    pub chains: BTreeMap<i64, Chain>,
    pub teams: BTreeMap<TeamId, Vec<PersonId>>,
    pub routes: Vec<RouteRow>,
    /// Per person, in position order.
    pub contacts: HashMap<PersonId, Vec<ContactRow>>,
    /// What could not be read, one line each.
    pub errors: Vec<String>,
}

impl Oncall {
    /// Reads the stored rows; nothing here fails as a whole.
    pub fn from_config(cfg: OncallConfig) -> Self {
        let mut out = Oncall::default();
        for r in cfg.rotas {
            let zone = match TimeZone::get(&r.zone) {
                Ok(z) => z,
                Err(e) => {
                    out.errors.push(format!(
                        "rota {} ({}): time zone {:?}: {e}",
                        r.id, r.name, r.zone
                    ));
                    continue;
                }
            };
            let layers: Vec<Layer> = match serde_json::from_value(r.layers) {
                Ok(l) => l,
                Err(e) => {
                    out.errors
                        .push(format!("rota {} ({}): layers: {e}", r.id, r.name));
                    continue;
                }
            };
            let bank_holidays = r
                .bank_holidays
                .iter()
                .filter_map(|d| {
                    jiff::civil::Date::new(
                        i16::try_from(d.year()).ok()?,
                        i8::try_from(u8::from(d.month())).ok()?,
                        i8::try_from(d.day()).ok()?,
                    )
                    .ok()
                })
                .collect();
            out.rotas.insert(
                r.id,
                Rota {
                    zone,
                    layers,
                    overrides: Vec::new(),
                    bank_holidays,
                },
            );
        }
        for o in cfg.overrides {
            if let Some(rota) = out.rotas.get_mut(&o.rota_id) {
                rota.overrides.push(Override {
                    from: Timestamp::from(o.starts_at),
                    to: Timestamp::from(o.ends_at),
                    person: o.person_id,
                });
            }
        }
        for c in cfg.chains {
            match serde_json::from_value::<Chain>(c.doc) {
                Ok(chain) => {
                    out.chains.insert(c.id, chain);
                }
                Err(e) => out.errors.push(format!("chain {} ({}): {e}", c.id, c.name)),
            }
        }
        for (team, person) in cfg.team_members {
            out.teams.entry(team).or_default().push(person);
        }
        for c in cfg.contacts {
            out.contacts.entry(c.person_id).or_default().push(c);
        }
        out.routes = cfg.routes;
        out
    }

    /// The chain for an incident: the first route whose set fields all match.
    pub fn route(
        &self,
        priority: Option<&str>,
        kind: Option<&str>,
        area: Option<&str>,
    ) -> Option<i64> {
        let matches = |want: &Option<String>, have: Option<&str>| {
            want.as_deref().is_none_or(|w| Some(w) == have)
        };
        self.routes
            .iter()
            .find(|r| {
                matches(&r.priority, priority) && matches(&r.kind, kind) && matches(&r.area, area)
            })
            .map(|r| r.chain_id)
    }

    /// How to reach `person`: their first verified contact method among `channels`.
    pub fn channel(&self, person: PersonId, channels: &[&str]) -> Option<&ContactRow> {
        self.contacts
            .get(&person)?
            .iter()
            .find(|c| c.verified && channels.contains(&c.kind.as_str()))
    }
}

impl Directory for Oncall {
    fn on_call(&self, rota: RotaId, at: Timestamp) -> Option<PersonId> {
        self.rotas.get(&rota)?.on_call(at).map(|o| o.person)
    }

    fn team(&self, team: TeamId) -> Vec<PersonId> {
        self.teams.get(&team).cloned().unwrap_or_default()
    }
}
