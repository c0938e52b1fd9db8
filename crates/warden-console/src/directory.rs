//! The on-call directory in the console: people and their contact methods, teams, rotas and
//! overrides, escalation chains and routes, and a CSV import of people. Supervisors and
//! admins change it; on-call staff may read it. Every change is checked here (rota layers
//! and chain steps against the core's records, references against the directory) and
//! audited; the escalator checks the whole configuration within a second of any change
//! and raises a technical incident for what would fail someone in the next 14 days.

use std::collections::HashSet;

use axum::Json;
use axum::extract::State;
use axum::extract::rejection::StringRejection;
use axum::http::StatusCode;
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;
use utoipa::{IntoParams, ToSchema};
use warden_core::oncall::{Chain, Layer, Target};
use warden_store::{
    ContactMethod, DirectoryEntry, DirectoryRoute, OncallDirectory, PersonWrite, Removal,
};

use crate::Console;
use crate::auth::Auth;
use crate::csvio::{self, ImportQuery, ImportReport, RowError};
use crate::error::{ApiError, ApiJson, ApiPath, ApiQuery};

const CHANNELS: &[&str] = &["console", "webhook", "email", "sms", "voice"];
const PRIORITIES: &[&str] = &["life_critical", "urgent", "technical", "information"];

fn invalid(message: impl Into<String>) -> ApiError {
    ApiError::bad_request("invalid_value", message)
}

/// Checks one contact method; `field` names it in errors.
fn check_contact(field: &str, c: &ContactMethod, has_user: bool) -> Result<(), ApiError> {
    if !CHANNELS.contains(&c.kind.as_str()) {
        return Err(invalid(format!(
            "{field}.kind must be one of {}",
            CHANNELS.join(", ")
        )));
    }
    crate::text::check(&format!("{field}.address"), &c.address, 500)?;
    let a = c.address.trim();
    let ok = match c.kind.as_str() {
        "console" => has_user,
        "email" => warden_notify::email::is_mailbox(a),
        "sms" | "voice" => {
            a.chars().filter(char::is_ascii_digit).count() >= 7
                && a.chars()
                    .all(|ch| ch.is_ascii_digit() || " +()-".contains(ch))
        }
        _ => (a.starts_with("https://") || a.starts_with("http://")) && a.len() > 10,
    };
    if !ok {
        return Err(invalid(match c.kind.as_str() {
            "console" => {
                format!("{field}: a console method needs the person linked to a console account")
            }
            "email" => format!("{field}.address {a:?} is not an e-mail address"),
            "sms" | "voice" => format!("{field}.address {a:?} is not a phone number"),
            _ => format!("{field}.address {a:?} is not an http(s) URL"),
        }));
    }
    Ok(())
}

/// A person as the console sends them.
#[derive(Debug, Deserialize, ToSchema)]
pub struct PersonIn {
    pub name: String,
    /// The console account whose "My pages" shows their pages (its username).
    #[serde(default)]
    pub username: Option<String>,
    /// False: left the directory (kept for the history of their pages; never paged).
    #[serde(default = "yes")]
    pub active: bool,
    /// In the order they are tried.
    #[serde(default)]
    pub contacts: Vec<ContactMethod>,
}

fn yes() -> bool {
    true
}

/// The person `p` as stored: checked, with their account resolved.
async fn person_write(c: &Console, p: &PersonIn) -> Result<PersonWrite, ApiError> {
    if p.name.trim().is_empty() {
        return Err(invalid("name is required"));
    }
    crate::text::check("name", &p.name, 200)?;
    if p.contacts.len() > 10 {
        return Err(invalid("at most 10 contact methods"));
    }
    let user_id = match p
        .username
        .as_deref()
        .map(str::trim)
        .filter(|u| !u.is_empty())
    {
        Some(u) => Some(
            c.store()
                .user_by_username(u)
                .await?
                .ok_or_else(|| invalid(format!("username: no console account {u:?}")))?
                .id,
        ),
        None => None,
    };
    for (n, m) in p.contacts.iter().enumerate() {
        check_contact(&format!("contacts[{n}]"), m, user_id.is_some())?;
    }
    Ok(PersonWrite {
        name: p.name.trim().to_owned(),
        user_id,
        active: p.active,
        contacts: p
            .contacts
            .iter()
            .map(|m| ContactMethod {
                kind: m.kind.clone(),
                address: m.address.trim().to_owned(),
                verified: m.verified,
            })
            .collect(),
    })
}

/// The on-call directory.
#[utoipa::path(get, path = "/api/v1/oncall", tag = "On call", operation_id = "oncallDirectory",
    summary = "The on-call directory",
    description = "Roles: supervisor, admin, on_call. People with their contact methods, teams, rotas with their current and future overrides, escalation chains and routes (in order).",
    responses(
        (status = 200, description = "The directory.", body = OncallDirectory),
        (status = 401, response = crate::openapi::Unauthorized),
        (status = 403, description = "`forbidden`: your role may not do this (supervisor, admin, on_call only).", body = crate::openapi::ErrorBody),
        (status = 503, response = crate::openapi::Unavailable),
    )
)]
pub async fn directory(
    State(c): State<Console>,
    _auth: Auth,
) -> Result<Json<OncallDirectory>, ApiError> {
    Ok(Json(
        c.store()
            .oncall_directory(OffsetDateTime::now_utc())
            .await?,
    ))
}

/// What a save created or changed.
#[derive(Debug, Serialize, ToSchema)]
pub struct Saved {
    pub id: i64,
}

/// Add a person.
#[utoipa::path(post, path = "/api/v1/oncall/people", tag = "On call", operation_id = "createPerson",
    summary = "Add a person",
    description = "Roles: supervisor, admin. Contact methods are tried in order; only verified ones are used. A `console` method needs a linked account (`username`). Audited.",
    request_body = PersonIn,
    responses(
        (status = 201, description = "Added.", body = Saved),
        (status = 400, description = "`invalid_json`; `invalid_value` naming the field (blank name, unknown account, a contact method of an unknown kind or with an address that is not one).", body = crate::openapi::ErrorBody),
        (status = 401, response = crate::openapi::Unauthorized),
        (status = 403, description = "`forbidden`: your role may not do this (supervisor, admin only), or the `X-CSRF-Token` header is missing or wrong.", body = crate::openapi::ErrorBody),
        (status = 409, description = "`already_exists`: the account is linked to another person.", body = crate::openapi::ErrorBody),
        (status = 503, response = crate::openapi::Unavailable),
    )
)]
pub async fn create_person(
    State(c): State<Console>,
    auth: Auth,
    ApiJson(p): ApiJson<PersonIn>,
) -> Result<(StatusCode, Json<Saved>), ApiError> {
    let w = person_write(&c, &p).await?;
    let id = c
        .store()
        .save_person(None, &w, auth.audit("oncall.person.create", "person", None))
        .await?
        .ok_or_else(|| ApiError::not_found("person"))?;
    Ok((StatusCode::CREATED, Json(Saved { id })))
}

/// Change a person.
#[utoipa::path(put, path = "/api/v1/oncall/people/{id}", tag = "On call", operation_id = "updatePerson",
    summary = "Change a person",
    description = "Roles: supervisor, admin. Replaces the name, account, active flag and every contact method. Audited with before and after.",
    params(("id" = i64, Path, description = "The person's id.")),
    request_body = PersonIn,
    responses(
        (status = 200, description = "Saved.", body = Saved),
        (status = 400, description = "`invalid_json`; `invalid_path`; `invalid_value` naming the field.", body = crate::openapi::ErrorBody),
        (status = 401, response = crate::openapi::Unauthorized),
        (status = 403, description = "`forbidden`: your role may not do this (supervisor, admin only), or the `X-CSRF-Token` header is missing or wrong.", body = crate::openapi::ErrorBody),
        (status = 404, description = "`not_found`: no such person.", body = crate::openapi::ErrorBody),
        (status = 409, description = "`already_exists`: the account is linked to another person.", body = crate::openapi::ErrorBody),
        (status = 503, response = crate::openapi::Unavailable),
    )
)]
pub async fn update_person(
    State(c): State<Console>,
    auth: Auth,
    ApiPath(id): ApiPath<i64>,
    ApiJson(p): ApiJson<PersonIn>,
) -> Result<Json<Saved>, ApiError> {
    let w = person_write(&c, &p).await?;
    let id = c
        .store()
        .save_person(
            Some(id),
            &w,
            auth.audit("oncall.person.update", "person", Some(id.to_string())),
        )
        .await?
        .ok_or_else(|| ApiError::not_found(format!("person {id}")))?;
    Ok(Json(Saved { id }))
}

/// A team as the console sends it.
#[derive(Debug, Deserialize, ToSchema)]
pub struct TeamIn {
    pub name: String,
    /// Person ids.
    #[serde(default)]
    pub members: Vec<i64>,
}

/// Save a team.
#[utoipa::path(put, path = "/api/v1/oncall/teams", tag = "On call", operation_id = "saveTeam",
    summary = "Create or replace a team",
    description = "Roles: supervisor, admin. The team called `name` gets exactly `members`. Audited.",
    request_body = TeamIn,
    responses(
        (status = 200, description = "Saved.", body = Saved),
        (status = 400, description = "`invalid_json`; `invalid_value` (blank name, a member who is not in the directory).", body = crate::openapi::ErrorBody),
        (status = 401, response = crate::openapi::Unauthorized),
        (status = 403, description = "`forbidden`: your role may not do this (supervisor, admin only), or the `X-CSRF-Token` header is missing or wrong.", body = crate::openapi::ErrorBody),
        (status = 503, response = crate::openapi::Unavailable),
    )
)]
pub async fn save_team(
    State(c): State<Console>,
    auth: Auth,
    ApiJson(t): ApiJson<TeamIn>,
) -> Result<Json<Saved>, ApiError> {
    check_name(&t.name)?;
    let d = c
        .store()
        .oncall_directory(OffsetDateTime::now_utc())
        .await?;
    let people: HashSet<i64> = d.people.iter().map(|p| p.id).collect();
    if let Some(m) = t.members.iter().find(|m| !people.contains(m)) {
        return Err(invalid(format!("members: no person {m}")));
    }
    let id = c
        .store()
        .save_team(
            t.name.trim(),
            &t.members,
            auth.audit("oncall.team.save", "team", None),
        )
        .await?;
    Ok(Json(Saved { id }))
}

fn check_name(name: &str) -> Result<(), ApiError> {
    if name.trim().is_empty() {
        return Err(invalid("name is required"));
    }
    crate::text::check("name", name, 200)
}

/// A rota as the console sends it.
#[derive(Debug, Deserialize, ToSchema)]
pub struct RotaIn {
    pub name: String,
    /// IANA time zone, e.g. `Europe/London`.
    pub zone: String,
    /// `YYYY-MM-DD` dates (a layer with `bank_holidays: true` covers them all day).
    #[serde(default)]
    pub bank_holidays: Vec<String>,
    /// `warden_core::oncall::Layer` records: `name`, `participants` (person ids, in turn
    /// order), `start` (first hand-off, wall clock in the zone), `shift` (`{"unit": "days" |
    /// "weeks" | "hours", "count": n}`), `windows` (weekly restrictions), `bank_holidays`.
    #[schema(value_type = Vec<Object>)]
    pub layers: serde_json::Value,
}

/// Save a rota.
#[utoipa::path(put, path = "/api/v1/oncall/rotas", tag = "On call", operation_id = "saveRota",
    summary = "Create or replace a rota",
    description = "Roles: supervisor, admin. The rota called `name`; its layers are checked against the rules the escalator evaluates, and every participant must be in the directory. Audited.",
    request_body = RotaIn,
    responses(
        (status = 200, description = "Saved.", body = Saved),
        (status = 400, description = "`invalid_json`; `invalid_value` naming the field (an unknown time zone, a date that is not YYYY-MM-DD, a layer that does not read, a participant who is not in the directory).", body = crate::openapi::ErrorBody),
        (status = 401, response = crate::openapi::Unauthorized),
        (status = 403, description = "`forbidden`: your role may not do this (supervisor, admin only), or the `X-CSRF-Token` header is missing or wrong.", body = crate::openapi::ErrorBody),
        (status = 503, response = crate::openapi::Unavailable),
    )
)]
pub async fn save_rota(
    State(c): State<Console>,
    auth: Auth,
    ApiJson(r): ApiJson<RotaIn>,
) -> Result<Json<Saved>, ApiError> {
    check_name(&r.name)?;
    jiff::tz::TimeZone::get(r.zone.trim())
        .map_err(|e| invalid(format!("zone {:?} is not an IANA time zone: {e}", r.zone)))?;
    let fmt = time::macros::format_description!("[year]-[month]-[day]");
    let mut holidays = Vec::with_capacity(r.bank_holidays.len());
    for d in &r.bank_holidays {
        holidays.push(
            time::Date::parse(d.trim(), &fmt)
                .map_err(|_| invalid(format!("bank_holidays: {d:?} is not a YYYY-MM-DD date")))?,
        );
    }
    let layers: Vec<Layer> =
        serde_json::from_value(r.layers.clone()).map_err(|e| invalid(format!("layers: {e}")))?;
    let d = c
        .store()
        .oncall_directory(OffsetDateTime::now_utc())
        .await?;
    let people: HashSet<i64> = d.people.iter().map(|p| p.id).collect();
    for (n, l) in layers.iter().enumerate() {
        if l.participants.is_empty() {
            return Err(invalid(format!("layers[{n}]: no participants")));
        }
        if let Some(p) = l.participants.iter().find(|p| !people.contains(p)) {
            return Err(invalid(format!("layers[{n}].participants: no person {p}")));
        }
    }
    let layers = serde_json::to_value(&layers).map_err(|e| invalid(format!("layers: {e}")))?;
    let id = c
        .store()
        .save_rota(
            r.name.trim(),
            r.zone.trim(),
            &holidays,
            &layers,
            auth.audit("oncall.rota.save", "rota", None),
        )
        .await?;
    Ok(Json(Saved { id }))
}

/// An override as the console sends it.
#[derive(Debug, Deserialize, ToSchema)]
pub struct OverrideIn {
    pub person_id: i64,
    #[serde(with = "time::serde::rfc3339")]
    pub starts_at: OffsetDateTime,
    #[serde(with = "time::serde::rfc3339")]
    pub ends_at: OffsetDateTime,
}

/// Add an override.
#[utoipa::path(post, path = "/api/v1/oncall/rotas/{id}/overrides", tag = "On call", operation_id = "addOverride",
    summary = "Put someone on call in a rota for a while",
    description = "Roles: supervisor, admin. Between `starts_at` and `ends_at` the person is on call in the rota whatever its layers say (a swap, sickness cover). Audited.",
    params(("id" = i64, Path, description = "The rota's id.")),
    request_body = OverrideIn,
    responses(
        (status = 201, description = "Added.", body = Saved),
        (status = 400, description = "`invalid_json`; `invalid_value` (ends before it starts, longer than a year); `missing_reference` (no such rota or person).", body = crate::openapi::ErrorBody),
        (status = 401, response = crate::openapi::Unauthorized),
        (status = 403, description = "`forbidden`: your role may not do this (supervisor, admin only), or the `X-CSRF-Token` header is missing or wrong.", body = crate::openapi::ErrorBody),
        (status = 503, response = crate::openapi::Unavailable),
    )
)]
pub async fn add_override(
    State(c): State<Console>,
    auth: Auth,
    ApiPath(rota): ApiPath<i64>,
    ApiJson(o): ApiJson<OverrideIn>,
) -> Result<(StatusCode, Json<Saved>), ApiError> {
    if o.ends_at <= o.starts_at {
        return Err(invalid("ends_at must be after starts_at"));
    }
    if o.ends_at - o.starts_at > time::Duration::days(366) {
        return Err(invalid("an override lasts at most a year"));
    }
    let id = c
        .store()
        .add_override(
            rota,
            o.starts_at,
            o.ends_at,
            o.person_id,
            auth.audit("oncall.override.add", "rota_override", None),
        )
        .await?;
    Ok((StatusCode::CREATED, Json(Saved { id })))
}

/// Remove an override.
#[utoipa::path(delete, path = "/api/v1/oncall/overrides/{id}", tag = "On call", operation_id = "deleteOverride",
    summary = "Remove an override",
    description = "Roles: supervisor, admin. Audited with what it was.",
    params(("id" = i64, Path, description = "The override's id.")),
    responses(
        (status = 204, description = "Removed."),
        (status = 400, description = "`invalid_path`.", body = crate::openapi::ErrorBody),
        (status = 401, response = crate::openapi::Unauthorized),
        (status = 403, description = "`forbidden`: your role may not do this (supervisor, admin only), or the `X-CSRF-Token` header is missing or wrong.", body = crate::openapi::ErrorBody),
        (status = 404, description = "`not_found`: no such override.", body = crate::openapi::ErrorBody),
        (status = 503, response = crate::openapi::Unavailable),
    )
)]
pub async fn delete_override(
    State(c): State<Console>,
    auth: Auth,
    ApiPath(id): ApiPath<i64>,
) -> Result<StatusCode, ApiError> {
    if c.store()
        .delete_override(
            id,
            auth.audit(
                "oncall.override.delete",
                "rota_override",
                Some(id.to_string()),
            ),
        )
        .await?
    {
        Ok(StatusCode::NO_CONTENT)
    } else {
        Err(ApiError::not_found(format!("override {id}")))
    }
}

/// A chain as the console sends it.
#[derive(Debug, Deserialize, ToSchema)]
pub struct ChainIn {
    pub name: String,
    /// A `warden_core::oncall::Chain` record: `steps` (each `targets` — `{"kind": "person" |
    /// "rota" | "team", "id": n}` — `wait` in microseconds, optional `keep_calling_every`),
    /// `repeat`, `fallback` (person ids), `ack_timeout`, `reminder_every`.
    #[schema(value_type = Object)]
    pub doc: serde_json::Value,
}

/// Save a chain.
#[utoipa::path(put, path = "/api/v1/oncall/chains", tag = "On call", operation_id = "saveChain",
    summary = "Create or replace an escalation chain",
    description = "Roles: supervisor, admin. The chain called `name`; its record is checked against the rules the escalator runs, and every person, rota and team it names must exist. A chain without a fallback is allowed but reported by the configuration check. Audited.",
    request_body = ChainIn,
    responses(
        (status = 200, description = "Saved.", body = Saved),
        (status = 400, description = "`invalid_json`; `invalid_value` naming the field (a record that does not read, no steps, a target that does not exist).", body = crate::openapi::ErrorBody),
        (status = 401, response = crate::openapi::Unauthorized),
        (status = 403, description = "`forbidden`: your role may not do this (supervisor, admin only), or the `X-CSRF-Token` header is missing or wrong.", body = crate::openapi::ErrorBody),
        (status = 503, response = crate::openapi::Unavailable),
    )
)]
pub async fn save_chain(
    State(c): State<Console>,
    auth: Auth,
    ApiJson(ch): ApiJson<ChainIn>,
) -> Result<Json<Saved>, ApiError> {
    check_name(&ch.name)?;
    let chain: Chain =
        serde_json::from_value(ch.doc.clone()).map_err(|e| invalid(format!("doc: {e}")))?;
    if chain.steps.is_empty() {
        return Err(invalid("doc.steps: a chain needs at least one step"));
    }
    let d = c
        .store()
        .oncall_directory(OffsetDateTime::now_utc())
        .await?;
    let people: HashSet<i64> = d.people.iter().map(|p| p.id).collect();
    let rotas: HashSet<i64> = d.rotas.iter().map(|r| r.id).collect();
    let teams: HashSet<i64> = d.teams.iter().map(|t| t.id).collect();
    for (n, step) in chain.steps.iter().enumerate() {
        if step.targets.is_empty() {
            return Err(invalid(format!("doc.steps[{n}].targets: nobody to page")));
        }
        for t in &step.targets {
            let (what, id, known) = match t {
                Target::Person(id) => ("person", id, people.contains(id)),
                Target::Rota(id) => ("rota", id, rotas.contains(id)),
                Target::Team(id) => ("team", id, teams.contains(id)),
            };
            if !known {
                return Err(invalid(format!("doc.steps[{n}].targets: no {what} {id}")));
            }
        }
    }
    if let Some(p) = chain.fallback.iter().find(|p| !people.contains(p)) {
        return Err(invalid(format!("doc.fallback: no person {p}")));
    }
    let doc = serde_json::to_value(&chain).map_err(|e| invalid(format!("doc: {e}")))?;
    let id = c
        .store()
        .save_chain(
            ch.name.trim(),
            &doc,
            auth.audit("oncall.chain.save", "chain", None),
        )
        .await?;
    Ok(Json(Saved { id }))
}

/// Replace the routes.
#[utoipa::path(put, path = "/api/v1/oncall/routes", tag = "On call", operation_id = "saveRoutes",
    summary = "Replace the escalation routes",
    description = "Roles: supervisor, admin. The routes in order: the first whose set fields all match an incident (priority, kind, area, client; a null field matches anything) gives its chain. An out-of-hours job takes the first route naming its category (`ooh_category`, other fields null); routes naming no category are for incidents only. A route setting nothing must come after every incident route. Audited with before and after.",
    request_body = Vec<DirectoryRoute>,
    responses(
        (status = 204, description = "Saved."),
        (status = 400, description = "`invalid_json`; `invalid_value` naming the route and field (an unknown priority, a chain, client or out-of-hours category that does not exist, a catch-all route before routes that it would hide).", body = crate::openapi::ErrorBody),
        (status = 401, response = crate::openapi::Unauthorized),
        (status = 403, description = "`forbidden`: your role may not do this (supervisor, admin only), or the `X-CSRF-Token` header is missing or wrong.", body = crate::openapi::ErrorBody),
        (status = 503, response = crate::openapi::Unavailable),
    )
)]
pub async fn save_routes(
    State(c): State<Console>,
    auth: Auth,
    ApiJson(routes): ApiJson<Vec<DirectoryRoute>>,
) -> Result<StatusCode, ApiError> {
    if routes.len() > 500 {
        return Err(invalid("at most 500 routes"));
    }
    let d = c
        .store()
        .oncall_directory(OffsetDateTime::now_utc())
        .await?;
    let chains: HashSet<i64> = d.chains.iter().map(|ch| ch.id).collect();
    let categories = c.store().ooh_categories().await?;
    let blank = |s: &Option<String>| {
        s.as_deref()
            .map(str::trim)
            .filter(|v| !v.is_empty())
            .map(str::to_owned)
    };
    let mut clean = Vec::with_capacity(routes.len());
    for (n, r) in routes.iter().enumerate() {
        let r = DirectoryRoute {
            priority: blank(&r.priority),
            kind: blank(&r.kind),
            area: blank(&r.area),
            client_id: r.client_id,
            ooh_category: blank(&r.ooh_category),
            chain_id: r.chain_id,
        };
        if let Some(p) = &r.priority
            && !PRIORITIES.contains(&p.as_str())
        {
            return Err(invalid(format!(
                "routes[{n}].priority must be one of {}",
                PRIORITIES.join(", ")
            )));
        }
        for (f, v) in [("kind", &r.kind), ("area", &r.area)] {
            crate::text::check_opt(&format!("routes[{n}].{f}"), v.as_deref(), 100)?;
        }
        if !chains.contains(&r.chain_id) {
            return Err(invalid(format!(
                "routes[{n}].chain_id: no chain {}",
                r.chain_id
            )));
        }
        if let Some(code) = &r.ooh_category
            && !categories.iter().any(|k| &k.code == code)
        {
            return Err(invalid(format!(
                "routes[{n}].ooh_category: no out-of-hours category {code:?}"
            )));
        }
        if let Some(id) = r.client_id
            && c.store().client(id).await?.is_none()
        {
            return Err(invalid(format!("routes[{n}].client_id: no client {id}")));
        }
        clean.push(r);
    }
    // A route that sets nothing takes every incident: a route after it that names no
    // out-of-hours category would never be used (jobs only take routes naming theirs).
    if let Some(all) = clean.iter().position(|r| {
        r.priority.is_none()
            && r.kind.is_none()
            && r.area.is_none()
            && r.client_id.is_none()
            && r.ooh_category.is_none()
    }) && let Some(dead) = clean
        .iter()
        .skip(all + 1)
        .position(|r| r.ooh_category.is_none())
    {
        return Err(invalid(format!(
            "routes[{}] would never be used: routes[{all}] before it matches every incident \
             (put the catch-all route last)",
            all + 1 + dead
        )));
    }
    c.store()
        .replace_routes(&clean, auth.audit("oncall.routes.save", "routes", None))
        .await?;
    Ok(StatusCode::NO_CONTENT)
}

/// One row of a people import: its number, the person and their teams.
type ImportRow = (u64, PersonIn, Vec<String>);

/// The columns of a people import.
const PEOPLE_COLUMNS: &[&str] = &[
    "name", "username", "email", "sms", "voice", "webhook", "verified", "teams",
];

/// Parses a people file: each row a person with their contact methods (in the column
/// order: console when `username` is set, then e-mail, SMS, voice, webhook) and teams.
fn parse_people(text: &str) -> (Vec<ImportRow>, Vec<RowError>) {
    let (rows, errors) = csvio::parse_rows(text, PEOPLE_COLUMNS, &["name"], "name", |row, f| {
        let Some(verified) = csvio::yes_no(&f("verified")) else {
            return Err(RowError {
                row,
                column: Some("verified".into()),
                message: "use yes or no".into(),
            });
        };
        let username = f("username");
        let mut contacts = Vec::new();
        if !username.is_empty() {
            contacts.push(ContactMethod {
                kind: "console".into(),
                address: String::new(),
                verified: true,
            });
        }
        for kind in ["email", "sms", "voice", "webhook"] {
            let address = f(kind);
            if !address.is_empty() {
                let m = ContactMethod {
                    kind: kind.into(),
                    address,
                    verified,
                };
                check_contact(kind, &m, true).map_err(|e| RowError {
                    row,
                    column: Some(kind.into()),
                    message: e.message.clone(),
                })?;
                contacts.push(m);
            }
        }
        let teams = f("teams")
            .split(';')
            .map(str::trim)
            .filter(|t| !t.is_empty())
            .map(str::to_owned)
            .collect();
        Ok((
            PersonIn {
                name: f("name"),
                username: (!username.is_empty()).then_some(username),
                active: true,
                contacts,
            },
            teams,
        ))
    });
    (
        rows.into_iter()
            .map(|(row, (p, teams))| (row, p, teams))
            .collect(),
        errors,
    )
}

/// Import people from CSV.
#[utoipa::path(post, path = "/api/v1/oncall/people/import", tag = "On call", operation_id = "importPeople",
    summary = "Import people from CSV",
    description = "Roles: supervisor, admin.

Columns: `name` (required), `username` (a console account: adds a console method), `email`, `sms`, `voice`, `webhook` (each adds that method, in this order), `verified` (yes/no, for the methods of the row; default no), `teams` (`;`-separated, created as needed). Every row is checked first; if any has an error nothing is imported and every error is reported with its row and column (still 200). A person whose name is already in the directory is updated (their contact methods replaced). All or nothing; audited per person.",
    params(ImportQuery),
    request_body(content = String, content_type = "text/csv", description = "The CSV file, UTF-8, header row first."),
    responses(
        (status = 200, description = "The import report.", body = ImportReport),
        (status = 400, description = "`invalid_csv` if the body is not UTF-8 text; `invalid_query` if `dry_run` is not a boolean.", body = crate::openapi::ErrorBody),
        (status = 401, response = crate::openapi::Unauthorized),
        (status = 403, description = "`forbidden`: your role may not do this (supervisor, admin only), or the `X-CSRF-Token` header is missing or wrong.", body = crate::openapi::ErrorBody),
        (status = 409, description = "`already_exists`: an account is linked to another person.", body = crate::openapi::ErrorBody),
        (status = 413, description = "`body_too_large`: the file is larger than the import limit.", body = crate::openapi::ErrorBody),
        (status = 503, response = crate::openapi::Unavailable),
    )
)]
pub async fn import_people(
    State(c): State<Console>,
    auth: Auth,
    ApiQuery(q): ApiQuery<ImportQuery>,
    body: Result<String, StringRejection>,
) -> Result<Json<ImportReport>, ApiError> {
    let body = csvio::csv_body(body)?;
    let (rows, mut errors) = parse_people(&body);
    let mut people = Vec::with_capacity(rows.len());
    for (row, p, teams) in &rows {
        match person_write(&c, p).await {
            Ok(w) => people.push((w, teams.clone())),
            Err(e) => errors.push(RowError {
                row: *row,
                column: None,
                message: e.message.clone(),
            }),
        }
    }
    if !errors.is_empty() || q.dry_run {
        return Ok(csvio::report(0, 0, &errors, q.dry_run));
    }
    let (created, updated) = c
        .store()
        .import_people(&people, auth.audit("oncall.people.import", "person", None))
        .await?;
    Ok(csvio::report(
        u64::try_from(created).unwrap_or(u64::MAX),
        u64::try_from(updated).unwrap_or(u64::MAX),
        &[],
        false,
    ))
}

/// How far ahead a timeline looks, in days.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct TimelineQuery {
    /// 1 to 31 (default 7).
    #[serde(default = "seven")]
    days: i64,
}

fn seven() -> i64 {
    7
}

/// One stretch of a rota's timeline.
#[derive(Debug, Serialize, ToSchema)]
pub struct OnCallStretch {
    #[serde(with = "time::serde::rfc3339")]
    pub from: OffsetDateTime,
    #[serde(with = "time::serde::rfc3339")]
    pub to: OffsetDateTime,
    /// `null`: nobody is on call (alarms then page the chain's fallback).
    pub person_id: Option<i64>,
    pub person: Option<String>,
}

/// Who is on call in a rota.
#[utoipa::path(get, path = "/api/v1/oncall/rotas/{id}/timeline", tag = "On call", operation_id = "rotaTimeline",
    summary = "Who is on call in a rota, from now",
    description = "Roles: supervisor, admin, on_call. Stretches of one answer each, overrides included, evaluated exactly as the escalator does (in the rota's zone, across clock changes). Gaps are stretches with nobody.",
    params(("id" = i64, Path, description = "The rota's id."), TimelineQuery),
    responses(
        (status = 200, description = "The timeline.", body = Vec<OnCallStretch>),
        (status = 400, description = "`invalid_path`; `invalid_query` (`days` not 1 to 31).", body = crate::openapi::ErrorBody),
        (status = 401, response = crate::openapi::Unauthorized),
        (status = 403, description = "`forbidden`: your role may not do this (supervisor, admin, on_call only).", body = crate::openapi::ErrorBody),
        (status = 404, description = "`not_found`: no such rota (or it cannot be read: see the configuration check).", body = crate::openapi::ErrorBody),
        (status = 503, response = crate::openapi::Unavailable),
    )
)]
pub async fn timeline(
    State(c): State<Console>,
    _auth: Auth,
    ApiPath(id): ApiPath<i64>,
    ApiQuery(q): ApiQuery<TimelineQuery>,
) -> Result<Json<Vec<OnCallStretch>>, ApiError> {
    if !(1..=31).contains(&q.days) {
        return Err(ApiError::bad_request(
            "invalid_query",
            "days must be 1 to 31",
        ));
    }
    let now = OffsetDateTime::now_utc();
    let oncall = warden_notify::Oncall::from_config(c.store().oncall_config(now).await?);
    let rota = oncall
        .rotas
        .get(&id)
        .ok_or_else(|| ApiError::not_found(format!("rota {id}")))?;
    let from = warden_core::Timestamp::from(now);
    let to = warden_core::Timestamp::from(now + time::Duration::days(q.days));
    Ok(Json(
        rota.timeline(from, to)
            .into_iter()
            .map(|s| OnCallStretch {
                from: s.start.to_offset(),
                to: s.end.to_offset(),
                person_id: s.on_call.map(|o| o.person),
                person: s.on_call.and_then(|o| oncall.names.get(&o.person).cloned()),
            })
            .collect(),
    ))
}

/// Whether a chain's steps name `target`: a team or rota in use cannot be removed (the
/// chain would reach nobody at that step).
fn chains_naming(d: &OncallDirectory, target: Target) -> Vec<String> {
    d.chains
        .iter()
        .filter(|ch| {
            serde_json::from_value::<Chain>(ch.doc.clone())
                .is_ok_and(|c| c.steps.iter().any(|s| s.targets.contains(&target)))
        })
        .map(|ch| format!("{:?}", ch.name))
        .collect()
}

/// Removes a team, rota or chain: 404 for none, 409 `in_use` naming what still uses it.
async fn remove(
    c: &Console,
    auth: &Auth,
    what: DirectoryEntry,
    id: i64,
) -> Result<StatusCode, ApiError> {
    let (name, target) = match what {
        DirectoryEntry::Team => ("team", Some(Target::Team(id))),
        DirectoryEntry::Rota => ("rota", Some(Target::Rota(id))),
        DirectoryEntry::Chain => ("chain", None),
    };
    if let Some(target) = target {
        let d = c
            .store()
            .oncall_directory(OffsetDateTime::now_utc())
            .await?;
        let users = chains_naming(&d, target);
        if !users.is_empty() {
            return Err(in_use(format!(
                "{name} {id} is a step of chain {}: change the chain first",
                users.join(", ")
            )));
        }
    }
    let action = match what {
        DirectoryEntry::Team => "oncall.team.delete",
        DirectoryEntry::Rota => "oncall.rota.delete",
        DirectoryEntry::Chain => "oncall.chain.delete",
    };
    match c
        .store()
        .remove_directory_entry(what, id, auth.audit(action, name, Some(id.to_string())))
        .await?
    {
        Removal::Removed => Ok(StatusCode::NO_CONTENT),
        Removal::Missing => Err(ApiError::not_found(format!("{name} {id}"))),
        Removal::InUse(why) => Err(in_use(format!("chain {id} is in use: {why}"))),
    }
}

fn in_use(message: String) -> ApiError {
    ApiError::new(StatusCode::CONFLICT, "in_use", message)
}

/// Remove a team.
#[utoipa::path(delete, path = "/api/v1/oncall/teams/{id}", tag = "On call", operation_id = "deleteTeam",
    summary = "Remove a team",
    description = "Roles: supervisor, admin. Its members stay in the directory. Refused while a chain's step pages the team. Audited with what it was.",
    params(("id" = i64, Path, description = "The team's id.")),
    responses(
        (status = 204, description = "Removed."),
        (status = 400, description = "`invalid_path`.", body = crate::openapi::ErrorBody),
        (status = 401, response = crate::openapi::Unauthorized),
        (status = 403, description = "`forbidden`: your role may not do this (supervisor, admin only), or the `X-CSRF-Token` header is missing or wrong.", body = crate::openapi::ErrorBody),
        (status = 404, description = "`not_found`: no such team.", body = crate::openapi::ErrorBody),
        (status = 409, description = "`in_use`: a chain pages the team (named in the message).", body = crate::openapi::ErrorBody),
        (status = 503, response = crate::openapi::Unavailable),
    )
)]
pub async fn delete_team(
    State(c): State<Console>,
    auth: Auth,
    ApiPath(id): ApiPath<i64>,
) -> Result<StatusCode, ApiError> {
    remove(&c, &auth, DirectoryEntry::Team, id).await
}

/// Remove a rota.
#[utoipa::path(delete, path = "/api/v1/oncall/rotas/{id}", tag = "On call", operation_id = "deleteRota",
    summary = "Remove a rota",
    description = "Roles: supervisor, admin. Its overrides go with it. Refused while a chain's step pages the rota. Audited with what it was.",
    params(("id" = i64, Path, description = "The rota's id.")),
    responses(
        (status = 204, description = "Removed."),
        (status = 400, description = "`invalid_path`.", body = crate::openapi::ErrorBody),
        (status = 401, response = crate::openapi::Unauthorized),
        (status = 403, description = "`forbidden`: your role may not do this (supervisor, admin only), or the `X-CSRF-Token` header is missing or wrong.", body = crate::openapi::ErrorBody),
        (status = 404, description = "`not_found`: no such rota.", body = crate::openapi::ErrorBody),
        (status = 409, description = "`in_use`: a chain pages the rota (named in the message).", body = crate::openapi::ErrorBody),
        (status = 503, response = crate::openapi::Unavailable),
    )
)]
pub async fn delete_rota(
    State(c): State<Console>,
    auth: Auth,
    ApiPath(id): ApiPath<i64>,
) -> Result<StatusCode, ApiError> {
    remove(&c, &auth, DirectoryEntry::Rota, id).await
}

/// Remove a chain.
#[utoipa::path(delete, path = "/api/v1/oncall/chains/{id}", tag = "On call", operation_id = "deleteChain",
    summary = "Remove an escalation chain",
    description = "Roles: supervisor, admin. Refused while a route names the chain, and for a chain that has escalated an incident (kept for that incident's history: route nothing to it instead). Audited with what it was.",
    params(("id" = i64, Path, description = "The chain's id.")),
    responses(
        (status = 204, description = "Removed."),
        (status = 400, description = "`invalid_path`.", body = crate::openapi::ErrorBody),
        (status = 401, response = crate::openapi::Unauthorized),
        (status = 403, description = "`forbidden`: your role may not do this (supervisor, admin only), or the `X-CSRF-Token` header is missing or wrong.", body = crate::openapi::ErrorBody),
        (status = 404, description = "`not_found`: no such chain.", body = crate::openapi::ErrorBody),
        (status = 409, description = "`in_use`: a route names the chain, or it has escalated an incident.", body = crate::openapi::ErrorBody),
        (status = 503, response = crate::openapi::Unavailable),
    )
)]
pub async fn delete_chain(
    State(c): State<Console>,
    auth: Auth,
    ApiPath(id): ApiPath<i64>,
) -> Result<StatusCode, ApiError> {
    remove(&c, &auth, DirectoryEntry::Chain, id).await
}
