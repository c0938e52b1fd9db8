//! The on-call directory as the console manages it: people and their ordered contact
//! methods, teams, rotas and their overrides, escalation chains and routes. Every change is
//! one transaction with its audit line. Rules (rota layers, chain steps) are stored as the
//! core's JSON records; the console checks them against `warden_core::oncall` before they
//! reach here.

use std::collections::HashMap;

use time::Date;

#[allow(clippy::wildcard_imports)]
use super::*;

/// A way to reach a person, in the order they are tried.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, sqlx::FromRow)]
#[cfg_attr(feature = "utoipa", derive(utoipa::ToSchema))]
pub struct ContactMethod {
    /// `console`, `webhook`, `email`, `sms` or `voice`.
    pub kind: String,
    /// The e-mail address, phone number or URL (empty for `console`).
    #[serde(default)]
    pub address: String,
    /// Only verified methods are used.
    #[serde(default)]
    pub verified: bool,
}

/// Someone who can be paged.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[cfg_attr(feature = "utoipa", derive(utoipa::ToSchema))]
pub struct DirectoryPerson {
    pub id: i64,
    pub name: String,
    /// The console account whose "My pages" shows their pages.
    pub user_id: Option<i64>,
    pub username: Option<String>,
    /// False: left the directory (kept for the history of their pages).
    pub active: bool,
    pub contacts: Vec<ContactMethod>,
}

/// A team and its members (person ids).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[cfg_attr(feature = "utoipa", derive(utoipa::ToSchema))]
pub struct DirectoryTeam {
    pub id: i64,
    pub name: String,
    pub members: Vec<i64>,
}

/// A temporary change of who is on call in a rota.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, sqlx::FromRow)]
#[cfg_attr(feature = "utoipa", derive(utoipa::ToSchema))]
pub struct DirectoryOverride {
    pub id: i64,
    #[serde(skip)]
    pub rota_id: i64,
    #[serde(with = "time::serde::rfc3339")]
    pub starts_at: OffsetDateTime,
    #[serde(with = "time::serde::rfc3339")]
    pub ends_at: OffsetDateTime,
    pub person_id: i64,
}

/// A rota: its zone, bank holidays, layers (`warden_core::oncall::Layer` records) and
/// overrides that have not ended.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[cfg_attr(feature = "utoipa", derive(utoipa::ToSchema))]
pub struct DirectoryRota {
    pub id: i64,
    pub name: String,
    /// IANA time zone, e.g. `Europe/London`.
    pub zone: String,
    /// `YYYY-MM-DD` dates.
    pub bank_holidays: Vec<String>,
    #[cfg_attr(feature = "utoipa", schema(value_type = Object))]
    pub layers: Value,
    pub overrides: Vec<DirectoryOverride>,
}

/// An escalation chain (`doc`: a `warden_core::oncall::Chain` record).
#[derive(Debug, Clone, PartialEq, Serialize, sqlx::FromRow)]
#[cfg_attr(feature = "utoipa", derive(utoipa::ToSchema))]
pub struct DirectoryChain {
    pub id: i64,
    pub name: String,
    #[cfg_attr(feature = "utoipa", schema(value_type = Object))]
    pub doc: Value,
}

/// A routing rule: the first route (in order) whose set fields all match an incident (or an
/// out-of-hours job's category) gives its chain. Unset fields match anything.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, sqlx::FromRow)]
#[cfg_attr(feature = "utoipa", derive(utoipa::ToSchema))]
pub struct DirectoryRoute {
    /// `life_critical`, `urgent`, `technical` or `information`.
    #[serde(default)]
    pub priority: Option<String>,
    /// An incident kind, e.g. `pendant`, `link_lost`, `self_check`.
    #[serde(default)]
    pub kind: Option<String>,
    /// An area or scheme.
    #[serde(default)]
    pub area: Option<String>,
    /// A client id.
    #[serde(default)]
    pub client_id: Option<i64>,
    /// An out-of-hours category code.
    #[serde(default)]
    pub ooh_category: Option<String>,
    pub chain_id: i64,
}

/// The whole directory, for the console's "On call" screen.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[cfg_attr(feature = "utoipa", derive(utoipa::ToSchema))]
pub struct OncallDirectory {
    pub people: Vec<DirectoryPerson>,
    pub teams: Vec<DirectoryTeam>,
    pub rotas: Vec<DirectoryRota>,
    pub chains: Vec<DirectoryChain>,
    /// In order.
    pub routes: Vec<DirectoryRoute>,
}

/// A person to save: name, console account, contact methods in order, and (on import) teams.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PersonWrite {
    pub name: String,
    pub user_id: Option<i64>,
    pub active: bool,
    pub contacts: Vec<ContactMethod>,
}

#[derive(sqlx::FromRow)]
struct PersonBase {
    id: i64,
    name: String,
    user_id: Option<i64>,
    username: Option<String>,
    active: bool,
}

#[derive(sqlx::FromRow)]
struct ContactOf {
    person_id: i64,
    #[sqlx(flatten)]
    method: ContactMethod,
}

impl Store {
    /// Everything the "On call" screen shows; overrides that ended before `now` are left out.
    pub async fn oncall_directory(
        &self,
        now: OffsetDateTime,
    ) -> Result<OncallDirectory, StoreError> {
        let pool = self.pool();
        let bases: Vec<PersonBase> = sqlx::query_as(
            "SELECT p.id, p.name, p.user_id, u.username, p.active FROM people p \
             LEFT JOIN users u ON u.id = p.user_id ORDER BY p.name, p.id",
        )
        .fetch_all(pool)
        .await?;
        let contacts: Vec<ContactOf> = sqlx::query_as(
            "SELECT person_id, kind, address, verified FROM contact_methods \
             ORDER BY person_id, position",
        )
        .fetch_all(pool)
        .await?;
        let mut by_person: HashMap<i64, Vec<ContactMethod>> = HashMap::new();
        for c in contacts {
            by_person.entry(c.person_id).or_default().push(c.method);
        }
        let people = bases
            .into_iter()
            .map(|b| DirectoryPerson {
                contacts: by_person.remove(&b.id).unwrap_or_default(),
                id: b.id,
                name: b.name,
                user_id: b.user_id,
                username: b.username,
                active: b.active,
            })
            .collect();
        let teams: Vec<(i64, String)> = sqlx::query_as("SELECT id, name FROM teams ORDER BY name")
            .fetch_all(pool)
            .await?;
        let members: Vec<(i64, i64)> =
            sqlx::query_as("SELECT team_id, person_id FROM team_members ORDER BY person_id")
                .fetch_all(pool)
                .await?;
        let teams = teams
            .into_iter()
            .map(|(id, name)| DirectoryTeam {
                id,
                name,
                members: members
                    .iter()
                    .filter(|(t, _)| *t == id)
                    .map(|(_, p)| *p)
                    .collect(),
            })
            .collect();
        let overrides: Vec<DirectoryOverride> = sqlx::query_as(
            "SELECT id, rota_id, starts_at, ends_at, person_id FROM rota_overrides \
             WHERE ends_at > $1 ORDER BY starts_at",
        )
        .bind(now)
        .fetch_all(pool)
        .await?;
        let rotas: Vec<crate::RotaRow> =
            sqlx::query_as("SELECT id, name, zone, bank_holidays, layers FROM rotas ORDER BY name")
                .fetch_all(pool)
                .await?;
        let rotas = rotas
            .into_iter()
            .map(|r| DirectoryRota {
                overrides: overrides
                    .iter()
                    .filter(|o| o.rota_id == r.id)
                    .cloned()
                    .collect(),
                id: r.id,
                name: r.name,
                zone: r.zone,
                bank_holidays: r.bank_holidays.iter().map(ToString::to_string).collect(),
                layers: r.layers,
            })
            .collect();
        Ok(OncallDirectory {
            people,
            teams,
            rotas,
            chains: sqlx::query_as("SELECT id, name, doc FROM chains ORDER BY name")
                .fetch_all(pool)
                .await?,
            routes: sqlx::query_as(
                "SELECT priority, kind, area, client_id, ooh_category, chain_id FROM routes \
                 ORDER BY position",
            )
            .fetch_all(pool)
            .await?,
        })
    }

    /// Creates (`id` `None`) or updates a person with their contact methods, in order;
    /// returns the id. `Ok(None)`: no such person.
    pub async fn save_person(
        &self,
        id: Option<i64>,
        p: &PersonWrite,
        audit: AuditWrite,
    ) -> Result<Option<i64>, WriteRefused> {
        let mut tx = self.pool().begin().await?;
        let saved = write_person(&mut tx, id, p).await?;
        let Some((id, before)) = saved else {
            return Ok(None);
        };
        insert_audit(
            &mut tx,
            &AuditWrite {
                object_id: Some(id.to_string()),
                before,
                after: Some(person_json(p)),
                ..audit
            },
        )
        .await?;
        tx.commit().await?;
        Ok(Some(id))
    }

    /// Imports people all or nothing: each is created, or updated when a person of the same
    /// name exists, with their contact methods and teams (created as needed). One audit line
    /// per person. Returns (created, updated).
    pub async fn import_people(
        &self,
        people: &[(PersonWrite, Vec<String>)],
        audit: AuditWrite,
    ) -> Result<(usize, usize), WriteRefused> {
        let mut tx = self.pool().begin().await?;
        let (mut created, mut updated) = (0, 0);
        for (p, teams) in people {
            let existing: Option<i64> =
                sqlx::query_scalar("SELECT id FROM people WHERE name = $1 ORDER BY id LIMIT 1")
                    .bind(&p.name)
                    .fetch_optional(&mut *tx)
                    .await?;
            let Some((id, before)) = write_person(&mut tx, existing, p).await? else {
                continue;
            };
            if existing.is_some() {
                updated += 1;
            } else {
                created += 1;
            }
            for team in teams {
                let team_id: i64 = sqlx::query_scalar(
                    "INSERT INTO teams (name) VALUES ($1) \
                     ON CONFLICT (name) DO UPDATE SET name = EXCLUDED.name RETURNING id",
                )
                .bind(team)
                .fetch_one(&mut *tx)
                .await?;
                sqlx::query(
                    "INSERT INTO team_members (team_id, person_id) VALUES ($1, $2) \
                     ON CONFLICT DO NOTHING",
                )
                .bind(team_id)
                .bind(id)
                .execute(&mut *tx)
                .await?;
            }
            let mut after = person_json(p);
            after["teams"] = serde_json::json!(teams);
            insert_audit(
                &mut tx,
                &AuditWrite {
                    object_id: Some(id.to_string()),
                    before,
                    after: Some(after),
                    ..audit.clone()
                },
            )
            .await?;
        }
        tx.commit().await?;
        Ok((created, updated))
    }

    /// Creates or replaces the team called `name` with exactly `members`; returns its id.
    pub async fn save_team(
        &self,
        name: &str,
        members: &[i64],
        audit: AuditWrite,
    ) -> Result<i64, WriteRefused> {
        let mut tx = self.pool().begin().await?;
        let id: i64 = sqlx::query_scalar(
            "INSERT INTO teams (name) VALUES ($1) \
             ON CONFLICT (name) DO UPDATE SET name = EXCLUDED.name RETURNING id",
        )
        .bind(name)
        .fetch_one(&mut *tx)
        .await?;
        let before: Vec<i64> =
            sqlx::query_scalar("SELECT person_id FROM team_members WHERE team_id = $1 ORDER BY 1")
                .bind(id)
                .fetch_all(&mut *tx)
                .await?;
        sqlx::query("DELETE FROM team_members WHERE team_id = $1")
            .bind(id)
            .execute(&mut *tx)
            .await?;
        sqlx::query(
            "INSERT INTO team_members (team_id, person_id) SELECT $1, unnest($2::bigint[]) \
             ON CONFLICT DO NOTHING",
        )
        .bind(id)
        .bind(members)
        .execute(&mut *tx)
        .await?;
        insert_audit(
            &mut tx,
            &AuditWrite {
                object_id: Some(id.to_string()),
                before: Some(serde_json::json!({ "name": name, "members": before })),
                after: Some(serde_json::json!({ "name": name, "members": members })),
                ..audit
            },
        )
        .await?;
        tx.commit().await?;
        Ok(id)
    }

    /// Creates or replaces the rota called `name`; returns its id.
    pub async fn save_rota(
        &self,
        name: &str,
        zone: &str,
        bank_holidays: &[Date],
        layers: &Value,
        audit: AuditWrite,
    ) -> Result<i64, WriteRefused> {
        let mut tx = self.pool().begin().await?;
        let before: Option<Value> = sqlx::query_scalar(
            "SELECT jsonb_build_object('zone', zone, 'bank_holidays', bank_holidays, \
                    'layers', layers) FROM rotas WHERE name = $1",
        )
        .bind(name)
        .fetch_optional(&mut *tx)
        .await?;
        let id: i64 = sqlx::query_scalar(
            "INSERT INTO rotas (name, zone, layers, bank_holidays) VALUES ($1, $2, $3, $4) \
             ON CONFLICT (name) DO UPDATE SET zone = EXCLUDED.zone, layers = EXCLUDED.layers, \
             bank_holidays = EXCLUDED.bank_holidays RETURNING id",
        )
        .bind(name)
        .bind(zone)
        .bind(layers)
        .bind(bank_holidays)
        .fetch_one(&mut *tx)
        .await?;
        insert_audit(
            &mut tx,
            &AuditWrite {
                object_id: Some(id.to_string()),
                before,
                after: Some(serde_json::json!({
                    "name": name, "zone": zone, "layers": layers,
                    "bank_holidays": bank_holidays.iter().map(ToString::to_string).collect::<Vec<_>>(),
                })),
                ..audit
            },
        )
        .await?;
        tx.commit().await?;
        Ok(id)
    }

    /// Puts `person_id` on call in rota `rota_id` from `starts_at` to `ends_at`; returns the
    /// override's id.
    pub async fn add_override(
        &self,
        rota_id: i64,
        starts_at: OffsetDateTime,
        ends_at: OffsetDateTime,
        person_id: i64,
        audit: AuditWrite,
    ) -> Result<i64, WriteRefused> {
        let mut tx = self.pool().begin().await?;
        let id: i64 = sqlx::query_scalar(
            "INSERT INTO rota_overrides (rota_id, starts_at, ends_at, person_id) \
             VALUES ($1, $2, $3, $4) RETURNING id",
        )
        .bind(rota_id)
        .bind(starts_at)
        .bind(ends_at)
        .bind(person_id)
        .fetch_one(&mut *tx)
        .await?;
        insert_audit(
            &mut tx,
            &AuditWrite {
                object_id: Some(id.to_string()),
                after: Some(serde_json::json!({
                    "rota_id": rota_id, "person_id": person_id,
                    "starts_at": starts_at.unix_timestamp(), "ends_at": ends_at.unix_timestamp(),
                })),
                ..audit
            },
        )
        .await?;
        tx.commit().await?;
        Ok(id)
    }

    /// Removes an override; `Ok(false)` when there is none with that id.
    pub async fn delete_override(&self, id: i64, audit: AuditWrite) -> Result<bool, WriteRefused> {
        let mut tx = self.pool().begin().await?;
        let before: Option<Value> = sqlx::query_scalar(
            "DELETE FROM rota_overrides WHERE id = $1 RETURNING jsonb_build_object( \
                 'rota_id', rota_id, 'person_id', person_id, \
                 'starts_at', extract(epoch FROM starts_at)::bigint, \
                 'ends_at', extract(epoch FROM ends_at)::bigint)",
        )
        .bind(id)
        .fetch_optional(&mut *tx)
        .await?;
        let Some(before) = before else {
            return Ok(false);
        };
        insert_audit(
            &mut tx,
            &AuditWrite {
                object_id: Some(id.to_string()),
                before: Some(before),
                ..audit
            },
        )
        .await?;
        tx.commit().await?;
        Ok(true)
    }

    /// Creates or replaces the chain called `name`; returns its id.
    pub async fn save_chain(
        &self,
        name: &str,
        doc: &Value,
        audit: AuditWrite,
    ) -> Result<i64, WriteRefused> {
        let mut tx = self.pool().begin().await?;
        let before: Option<Value> = sqlx::query_scalar("SELECT doc FROM chains WHERE name = $1")
            .bind(name)
            .fetch_optional(&mut *tx)
            .await?;
        let id: i64 = sqlx::query_scalar(
            "INSERT INTO chains (name, doc) VALUES ($1, $2) \
             ON CONFLICT (name) DO UPDATE SET doc = EXCLUDED.doc RETURNING id",
        )
        .bind(name)
        .bind(doc)
        .fetch_one(&mut *tx)
        .await?;
        insert_audit(
            &mut tx,
            &AuditWrite {
                object_id: Some(id.to_string()),
                before,
                after: Some(serde_json::json!({ "name": name, "doc": doc })),
                ..audit
            },
        )
        .await?;
        tx.commit().await?;
        Ok(id)
    }

    /// Replaces every route with `routes`, in order.
    pub async fn replace_routes(
        &self,
        routes: &[DirectoryRoute],
        audit: AuditWrite,
    ) -> Result<(), WriteRefused> {
        let mut tx = self.pool().begin().await?;
        let before: Vec<DirectoryRoute> = sqlx::query_as(
            "SELECT priority, kind, area, client_id, ooh_category, chain_id FROM routes \
             ORDER BY position",
        )
        .fetch_all(&mut *tx)
        .await?;
        sqlx::query("DELETE FROM routes").execute(&mut *tx).await?;
        for (n, r) in routes.iter().enumerate() {
            sqlx::query(
                "INSERT INTO routes (position, priority, kind, area, client_id, ooh_category, \
                                     chain_id) VALUES ($1, $2, $3, $4, $5, $6, $7)",
            )
            .bind(i32::try_from(n + 1).unwrap_or(i32::MAX))
            .bind(&r.priority)
            .bind(&r.kind)
            .bind(&r.area)
            .bind(r.client_id)
            .bind(&r.ooh_category)
            .bind(r.chain_id)
            .execute(&mut *tx)
            .await?;
        }
        insert_audit(
            &mut tx,
            &AuditWrite {
                before: Some(serde_json::to_value(&before).unwrap_or_default()),
                after: Some(serde_json::to_value(routes).unwrap_or_default()),
                ..audit
            },
        )
        .await?;
        tx.commit().await?;
        Ok(())
    }
}

/// What a directory entry can be removed as.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DirectoryEntry {
    Team,
    Rota,
    Chain,
}

impl DirectoryEntry {
    fn table(self) -> &'static str {
        match self {
            DirectoryEntry::Team => "teams",
            DirectoryEntry::Rota => "rotas",
            DirectoryEntry::Chain => "chains",
        }
    }
}

/// The outcome of removing a directory entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Removal {
    Removed,
    /// No entry with that id.
    Missing,
    /// Still used; says by what.
    InUse(String),
}

impl Store {
    /// Removes a team (with its memberships), a rota (with its overrides) or a chain, audited
    /// with what it was. A chain named by a route, or that has escalated an incident (kept
    /// for that incident's history), stays. Whether a chain's steps name a team or rota is
    /// the caller's check: the steps are the core's record.
    pub async fn remove_directory_entry(
        &self,
        what: DirectoryEntry,
        id: i64,
        audit: AuditWrite,
    ) -> Result<Removal, WriteRefused> {
        let mut tx = self.pool().begin().await?;
        if what == DirectoryEntry::Chain {
            let (routes, escalations): (i64, i64) = sqlx::query_as(
                "SELECT (SELECT count(*) FROM routes WHERE chain_id = $1), \
                        (SELECT count(*) FROM escalations WHERE chain_id = $1)",
            )
            .bind(id)
            .fetch_one(&mut *tx)
            .await?;
            if routes > 0 {
                return Ok(Removal::InUse(format!("{routes} route(s) name it")));
            }
            if escalations > 0 {
                return Ok(Removal::InUse(format!(
                    "it has escalated {escalations} incident(s), kept in their history"
                )));
            }
        }
        let before: Option<Value> = match what {
            DirectoryEntry::Team => {
                sqlx::query_scalar(
                    "SELECT jsonb_build_object('name', t.name, 'members', coalesce( \
                         (SELECT jsonb_agg(person_id ORDER BY person_id) FROM team_members \
                          WHERE team_id = t.id), '[]')) FROM teams t WHERE t.id = $1 FOR UPDATE",
                )
                .bind(id)
                .fetch_optional(&mut *tx)
                .await?
            }
            DirectoryEntry::Rota => {
                sqlx::query_scalar(
                    "SELECT jsonb_build_object('name', name, 'zone', zone, \
                         'bank_holidays', bank_holidays, 'layers', layers) \
                     FROM rotas WHERE id = $1 FOR UPDATE",
                )
                .bind(id)
                .fetch_optional(&mut *tx)
                .await?
            }
            DirectoryEntry::Chain => {
                sqlx::query_scalar(
                    "SELECT jsonb_build_object('name', name, 'doc', doc) FROM chains \
                     WHERE id = $1 FOR UPDATE",
                )
                .bind(id)
                .fetch_optional(&mut *tx)
                .await?
            }
        };
        let Some(before) = before else {
            return Ok(Removal::Missing);
        };
        sqlx::query(sqlx::AssertSqlSafe(format!(
            "DELETE FROM {} WHERE id = $1",
            what.table()
        )))
        .bind(id)
        .execute(&mut *tx)
        .await?;
        insert_audit(
            &mut tx,
            &AuditWrite {
                object_id: Some(id.to_string()),
                before: Some(before),
                ..audit
            },
        )
        .await?;
        tx.commit().await?;
        Ok(Removal::Removed)
    }
}

/// The person as the audit trail records them.
fn person_json(p: &PersonWrite) -> Value {
    serde_json::json!({
        "name": p.name, "user_id": p.user_id, "active": p.active, "contacts": p.contacts,
    })
}

/// Inserts or updates a person and replaces their contact methods; returns the id and the
/// person as they were (`None` when new). `Ok(None)`: `id` names nobody.
async fn write_person(
    tx: &mut Transaction<'_, Postgres>,
    id: Option<i64>,
    p: &PersonWrite,
) -> Result<Option<(i64, Option<Value>)>, sqlx::Error> {
    let (id, before) = if let Some(id) = id {
        let before: Option<Value> = sqlx::query_scalar(
            "SELECT jsonb_build_object('name', p.name, 'user_id', p.user_id, \
                        'active', p.active, 'contacts', coalesce((SELECT jsonb_agg( \
                            jsonb_build_object('kind', kind, 'address', address, \
                                               'verified', verified) ORDER BY position) \
                         FROM contact_methods WHERE person_id = p.id), '[]')) \
                 FROM people p WHERE p.id = $1 FOR UPDATE",
        )
        .bind(id)
        .fetch_optional(&mut **tx)
        .await?;
        let Some(before) = before else {
            return Ok(None);
        };
        sqlx::query("UPDATE people SET name = $2, user_id = $3, active = $4 WHERE id = $1")
            .bind(id)
            .bind(&p.name)
            .bind(p.user_id)
            .bind(p.active)
            .execute(&mut **tx)
            .await?;
        (id, Some(before))
    } else {
        let id: i64 = sqlx::query_scalar(
            "INSERT INTO people (name, user_id, active) VALUES ($1, $2, $3) RETURNING id",
        )
        .bind(&p.name)
        .bind(p.user_id)
        .bind(p.active)
        .fetch_one(&mut **tx)
        .await?;
        (id, None)
    };
    sqlx::query("DELETE FROM contact_methods WHERE person_id = $1")
        .bind(id)
        .execute(&mut **tx)
        .await?;
    for (n, c) in p.contacts.iter().enumerate() {
        sqlx::query(
            "INSERT INTO contact_methods (person_id, position, kind, address, verified) \
             VALUES ($1, $2, $3, $4, $5)",
        )
        .bind(id)
        .bind(i32::try_from(n + 1).unwrap_or(i32::MAX))
        .bind(&c.kind)
        .bind(&c.address)
        .bind(c.verified)
        .execute(&mut **tx)
        .await?;
    }
    Ok(Some((id, before)))
}
