//! The stored on-call configuration as the core's values: rotas with their zones, chains,
//! teams, routes and contact methods. A row that cannot be read (an unknown zone, rules
//! that do not parse) is left out with an error naming it; a chain step that targets it
//! then reaches nobody, which pages the fallback and records the gap.

use std::collections::{BTreeMap, HashMap};

use jiff::tz::TimeZone;
use warden_core::Timestamp;
use warden_core::oncall::{
    Chain, Directory, Layer, Override, PersonId, Rota, RotaId, Target, TeamId,
};
use warden_store::{ContactRow, OncallConfig, RouteRow};

/// What a route is matched against: an incident's fields, or an out-of-hours job's
/// category. Absent fields only match routes that leave them unset.
#[derive(Debug, Clone, Copy, Default)]
pub struct RouteQuery<'a> {
    pub priority: Option<&'a str>,
    pub kind: Option<&'a str>,
    pub area: Option<&'a str>,
    pub client: Option<i64>,
    pub ooh_category: Option<&'a str>,
}

/// Who is on call for an out-of-hours category, and how to call them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OohContact {
    pub person: PersonId,
    pub name: String,
    pub phone: String,
    /// The chain the category's route named, and its name.
    pub chain: i64,
    pub chain_name: String,
}

/// The configuration, ready to evaluate.
#[derive(Debug, Default)]
pub struct Oncall {
    pub rotas: BTreeMap<RotaId, Rota>,
    pub chains: BTreeMap<i64, Chain>,
    pub chain_names: HashMap<i64, String>,
    pub teams: BTreeMap<TeamId, Vec<PersonId>>,
    pub routes: Vec<RouteRow>,
    /// Per person, in position order.
    pub contacts: HashMap<PersonId, Vec<ContactRow>>,
    pub names: HashMap<PersonId, String>,
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
            out.chain_names.insert(c.id, c.name.clone());
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
        out.names = cfg.people.into_iter().collect();
        out
    }

    /// Who the out-of-hours desk hands a job of `category` to at `at`: the first route that
    /// names the category (and sets nothing a job does not have) gives a chain, and the
    /// first person its steps reach in order (whoever is on call in a rota, a named person,
    /// a team's members), then its fallback, who has a verified phone (SMS or voice).
    /// `None`: no route names the category, or nobody it reaches has a phone. Routes that
    /// name no category are for incidents: a catch-all route placed before the category's
    /// route does not take its jobs.
    pub fn ooh_contact(&self, category: &str, at: Timestamp) -> Option<OohContact> {
        let q = RouteQuery {
            ooh_category: Some(category),
            ..RouteQuery::default()
        };
        let chain_id = self
            .routes
            .iter()
            .find(|r| r.ooh_category.is_some() && Self::matches(r, &q))?
            .chain_id;
        let chain = self.chains.get(&chain_id)?;
        let people = chain
            .steps
            .iter()
            .flat_map(|s| s.targets.iter())
            .flat_map(|t| match t {
                Target::Person(p) => vec![*p],
                Target::Rota(r) => self.on_call(*r, at).into_iter().collect(),
                Target::Team(t) => self.team(*t),
            })
            .chain(chain.fallback.iter().copied());
        for person in people {
            let phone = self
                .channel(person, &["voice", "sms"])
                .map(|c| c.address.clone());
            if let Some(phone) = phone {
                return Some(OohContact {
                    person,
                    name: self.names.get(&person).cloned().unwrap_or_default(),
                    phone,
                    chain: chain_id,
                    chain_name: self.chain_names.get(&chain_id).cloned().unwrap_or_default(),
                });
            }
        }
        None
    }

    /// The chain for an incident or an out-of-hours job: the first route whose set fields
    /// all match.
    pub fn route(&self, q: &RouteQuery<'_>) -> Option<i64> {
        self.routes
            .iter()
            .find(|r| Self::matches(r, q))
            .map(|r| r.chain_id)
    }

    /// Whether every field `r` sets is the same in `q` (a NULL route field matches
    /// anything; a field `q` lacks matches only a NULL).
    fn matches(r: &RouteRow, q: &RouteQuery<'_>) -> bool {
        let same = |want: &Option<String>, have: Option<&str>| {
            want.as_deref().is_none_or(|w| Some(w) == have)
        };
        same(&r.priority, q.priority)
            && same(&r.kind, q.kind)
            && same(&r.area, q.area)
            && r.client_id.is_none_or(|c| Some(c) == q.client)
            && same(&r.ooh_category, q.ooh_category)
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

#[cfg(test)]
mod tests {
    use serde_json::json;
    use warden_store::ChainRow;

    use super::*;

    fn route(position: i32, client: Option<i64>, ooh: Option<&str>, chain: i64) -> RouteRow {
        RouteRow {
            position,
            priority: None,
            kind: None,
            area: None,
            client_id: client,
            ooh_category: ooh.map(str::to_owned),
            chain_id: chain,
        }
    }

    fn chain(id: i64, name: &str, person: i64) -> ChainRow {
        ChainRow {
            id,
            name: name.to_owned(),
            doc: json!({ "steps": [{ "targets": [{ "kind": "person", "id": person }], "wait": 60_000_000 }],
                         "fallback": [], "ack_timeout": 1_800_000_000_i64, "reminder_every": null }),
        }
    }

    fn phone(person: i64, address: &str) -> ContactRow {
        ContactRow {
            person_id: person,
            position: 1,
            kind: "sms".into(),
            address: address.into(),
            verified: true,
        }
    }

    /// Everything (1), client 7 (2), the `repairs` category (3), each with its own person.
    fn config(routes: Vec<RouteRow>) -> Oncall {
        Oncall::from_config(OncallConfig {
            chains: vec![
                chain(1, "Everything", 10),
                chain(2, "Client", 20),
                chain(3, "Repairs", 30),
            ],
            routes,
            contacts: vec![phone(10, "+441"), phone(20, "+442"), phone(30, "+443")],
            people: vec![(10, "Ann".into()), (20, "Bob".into()), (30, "Cy".into())],
            ..OncallConfig::default()
        })
    }

    #[test]
    fn a_route_by_client_takes_that_clients_incidents_and_a_null_client_takes_the_rest() {
        let o = config(vec![route(1, Some(7), None, 2), route(2, None, None, 1)]);
        let incident = |client| RouteQuery {
            priority: Some("urgent"),
            client,
            ..RouteQuery::default()
        };
        assert_eq!(o.route(&incident(Some(7))), Some(2));
        assert_eq!(o.route(&incident(Some(8))), Some(1));
        assert_eq!(o.route(&incident(None)), Some(1));
    }

    #[test]
    fn an_out_of_hours_job_takes_the_route_naming_its_category_even_after_a_catch_all() {
        let o = config(vec![
            route(1, None, None, 1),
            route(2, None, Some("repairs"), 3),
        ]);
        let c = o.ooh_contact("repairs", Timestamp::from_micros(0));
        assert_eq!(
            c.map(|c| (c.name, c.phone, c.chain_name)),
            Some(("Cy".into(), "+443".into(), "Repairs".into()))
        );
        // A category no route names has no contact here (the desk uses the category's own).
        assert_eq!(o.ooh_contact("other", Timestamp::from_micros(0)), None);
        // An incident never takes a category's route.
        assert_eq!(o.route(&RouteQuery::default()), Some(1));
    }
}
