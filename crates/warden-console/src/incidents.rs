//! The live queue and the incident commands. Commands go to the triage engine (the one
//! owner of incident state) and are answered after their effects are durable.

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use time::OffsetDateTime;
use utoipa::ToSchema;
use warden_core::{Actor, Effect, IncidentId, Input, OutcomeCode, RejectReason};
use warden_store::IncidentEvent;

use crate::Console;
use crate::auth::Auth;
use crate::error::{ApiError, ApiJson, ApiPath};
use crate::view::{IncidentView, sort_queue};

/// The centre's outcome codes, in the order the resolve picker shows them.
pub const OUTCOMES: &[(&str, &str)] = &[
    ("assistance_given", "Assistance given by phone"),
    ("responder_sent", "Responder or keyholder sent"),
    ("warden_visit", "Mobile warden visited"),
    ("ambulance_called", "Ambulance called"),
    ("fire_service_called", "Fire service called"),
    ("police_called", "Police called"),
    ("false_alarm", "False alarm (accidental press)"),
    (
        "no_response_escalated",
        "No response: escalated to responders",
    ),
    ("test_call", "Test call"),
    (
        "technical_fault_logged",
        "Technical fault logged for engineers",
    ),
    ("storm_cleared", "Storm cleared (power restored)"),
    ("other", "Other (see notes)"),
];

/// One of the centre's outcome codes.
#[derive(Debug, Serialize, ToSchema)]
pub struct Outcome {
    /// The code sent to resolve an incident.
    pub code: String,
    /// What the resolve picker shows.
    pub label: String,
}

/// Outcome codes.
#[utoipa::path(get, path = "/api/v1/outcomes", tag = "Incidents", operation_id = "listOutcomes",
    summary = "Outcome codes",
    description = "Roles: operator, supervisor.

The centre's outcome codes, in the order the resolve picker shows them.",
    responses(
        (status = 200, description = "The outcome codes.", body = Vec<Outcome>),
        (status = 401, response = crate::openapi::Unauthorized),
        (status = 403, description = "`forbidden`: your role may not do this (operator, supervisor only).", body = crate::openapi::ErrorBody),
        (status = 503, response = crate::openapi::Unavailable),
    )
)]
pub async fn outcomes(_auth: Auth) -> Result<Json<Vec<Outcome>>, ApiError> {
    Ok(Json(
        OUTCOMES
            .iter()
            .map(|(code, label)| Outcome {
                code: (*code).to_owned(),
                label: (*label).to_owned(),
            })
            .collect(),
    ))
}

/// The open queue and what the console needs to age it.
#[derive(Debug, Serialize, ToSchema)]
pub struct QueueResponse {
    /// The server's clock in epoch milliseconds, so the console can correct its own.
    pub server_time_ms: i64,
    /// The life-critical SLA timers.
    pub thresholds: Thresholds,
    /// Incidents in the queue by priority.
    pub counts: PriorityCounts,
    /// The queue, most urgent first.
    pub incidents: Vec<IncidentView>,
    /// Set while the database is unavailable (degraded mode): since when. The queue is then
    /// the console's in-memory mirror, kept from the engine's live changes.
    #[serde(with = "time::serde::rfc3339::option")]
    pub degraded_since: Option<OffsetDateTime>,
}

/// SLA timers in seconds since arrival.
#[derive(Debug, Serialize, ToSchema)]
#[expect(
    clippy::struct_field_names,
    reason = "the names are the JSON keys the browser reads"
)]
pub struct Thresholds {
    pub warn_s: i64,
    pub overflow_s: i64,
    pub critical_s: i64,
}

/// Incidents in the queue by priority.
#[derive(Debug, Default, Serialize, ToSchema)]
pub struct PriorityCounts {
    pub life_critical: u64,
    pub urgent: u64,
    pub technical: u64,
    pub information: u64,
}

/// The live queue.
#[utoipa::path(get, path = "/api/v1/queue", tag = "Incidents", operation_id = "getQueue",
    summary = "The live queue",
    description = "Roles: operator, supervisor.

Open (unresolved) incidents, life-critical first then urgent, technical, information, oldest first within each; with per-priority counts and the life-critical answer-time thresholds. Keep it current with GET /api/v1/ws.",
    responses(
        (status = 200, description = "The queue.", body = QueueResponse),
        (status = 401, response = crate::openapi::Unauthorized),
        (status = 403, description = "`forbidden`: your role may not do this (operator, supervisor only).", body = crate::openapi::ErrorBody),
        (status = 503, response = crate::openapi::Unavailable),
    )
)]
pub async fn queue(State(c): State<Console>, _auth: Auth) -> Result<Json<QueueResponse>, ApiError> {
    let degraded_since = c.mirror().degraded_since();
    let views: Vec<IncidentView> = if degraded_since.is_some() {
        c.mirror().queue()
    } else {
        let rows = c.store().incident_views(None).await?;
        c.mirror().learn(&rows);
        let mut views: Vec<IncidentView> = rows.into_iter().map(IncidentView::from).collect();
        sort_queue(&mut views);
        c.mirror().set_queue(&views);
        views
    };
    let mut counts = PriorityCounts::default();
    for v in &views {
        match v.priority.as_str() {
            "life_critical" => counts.life_critical += 1,
            "urgent" => counts.urgent += 1,
            "technical" => counts.technical += 1,
            "information" => counts.information += 1,
            _ => {}
        }
    }
    let t = c.engine().sla().life_critical.unwrap_or_default();
    let secs = |m: warden_core::Micros| m.as_micros() / 1_000_000;
    Ok(Json(QueueResponse {
        server_time_ms: i64::try_from(OffsetDateTime::now_utc().unix_timestamp_nanos() / 1_000_000)
            .unwrap_or(0),
        thresholds: Thresholds {
            warn_s: secs(t.warn),
            overflow_s: secs(t.overflow),
            critical_s: secs(t.critical),
        },
        counts,
        incidents: views,
        degraded_since,
    }))
}

async fn view(c: &Console, id: i64) -> Result<IncidentView, ApiError> {
    if c.mirror().degraded_since().is_some()
        && let Some(v) = c.mirror().incident(id)
    {
        // The database is unavailable: the mirrored view (the live push brings the rest).
        return Ok(v);
    }
    c.store()
        .incident_views(Some(&[id]))
        .await?
        .into_iter()
        .next()
        .map(IncidentView::from)
        .ok_or_else(|| ApiError::not_found(format!("incident {id}")))
}

/// An incident with its history and its device's recent signals.
#[derive(Debug, Serialize, ToSchema)]
pub struct IncidentDetail {
    pub incident: IncidentView,
    /// The incident's history, oldest first.
    pub events: Vec<IncidentEvent>,
    /// The device's last 20 signals, newest first, each with a `summary` for people.
    #[schema(value_type = Vec<Object>)]
    pub signals: Value,
}

/// An incident with its history.
#[utoipa::path(get, path = "/api/v1/incidents/{id}", tag = "Incidents", operation_id = "getIncident",
    summary = "An incident with its history",
    description = "Roles: operator, supervisor, admin.

The incident, its history and the recent signals of its device. Each read is written to the audit trail (`incident.view`).",
    params(("id" = i64, Path, description = "The numeric id.")),
    responses(
        (status = 200, description = "The incident.", body = IncidentDetail),
        (status = 400, description = "`invalid_path`: `id` is not an integer.", body = crate::openapi::ErrorBody),
        (status = 401, response = crate::openapi::Unauthorized),
        (status = 403, description = "`forbidden`: your role may not do this (operator, supervisor, admin only).", body = crate::openapi::ErrorBody),
        (status = 404, description = "`not_found`: no such incident.", body = crate::openapi::ErrorBody),
        (status = 503, response = crate::openapi::Unavailable),
    )
)]
pub async fn detail(
    State(c): State<Console>,
    auth: Auth,
    ApiPath(id): ApiPath<i64>,
) -> Result<Json<IncidentDetail>, ApiError> {
    let incident = view(&c, id).await?;
    let events = c.store().incident_events(id).await?;
    let signals = match incident.device.as_ref() {
        Some(d) => c.store().recent_signals(None, Some(d.id), 20).await?,
        None => Vec::new(),
    };
    let signals = crate::view::signals_json(&signals);
    c.audit_read(auth.audit("incident.view", "incident", Some(id.to_string())))
        .await?;
    Ok(Json(IncidentDetail {
        incident,
        events,
        signals,
    }))
}

fn actor(auth: &Auth) -> Actor {
    Actor {
        id: auth.user.id,
        role: auth.role,
    }
}

fn incident_id(id: i64) -> Result<IncidentId, ApiError> {
    u64::try_from(id)
        .map(IncidentId)
        .map_err(|_| ApiError::not_found(format!("incident {id}")))
}

/// Runs one command through the engine; a refusal becomes the matching API error.
async fn run(
    c: &Console,
    auth: &Auth,
    id: i64,
    action: &str,
    input: Input,
) -> Result<Vec<Effect>, ApiError> {
    let effects = c.engine().command(input).await?;
    if let Some(Effect::Rejected { reason, .. }) = effects
        .iter()
        .find(|e| matches!(e, Effect::Rejected { .. }))
    {
        return Err(refusal(c, id, reason).await);
    }
    // The command is already durable, with its actor, in `incident_events` (same
    // transaction as the state change). This line joins it to the request (id, address) in
    // the audit trail; if it cannot be written the command still stands, so say so in the
    // log rather than answer "failed" for something that happened.
    let mut a = auth.audit(action, "incident", Some(id.to_string()));
    a.after = Some(serde_json::to_value(&effects).unwrap_or_default());
    if c.mirror().degraded_since().is_some() {
        // Degraded: written with its time once the database is back (the command itself is
        // in the incident's history the engine commits after the drain).
        c.mirror().defer_audit(a);
    } else if let Err(e) = c.store().audit(&a).await {
        tracing::error!(error = %e, incident = id, action, "audit line of a durable incident command not written");
    }
    Ok(effects)
}

async fn refusal(c: &Console, id: i64, reason: &RejectReason) -> ApiError {
    let name = |uid: i64| async move {
        match c.store().user_by_id(uid).await {
            Ok(Some(u)) => u.display_name,
            _ => format!("user {uid}"),
        }
    };
    match reason {
        RejectReason::UnknownIncident => ApiError::not_found(format!("incident {id}")),
        RejectReason::AlreadyResolved => ApiError::new(
            StatusCode::CONFLICT,
            "already_resolved",
            format!("incident {id} is already resolved"),
        ),
        RejectReason::ClaimedByOther { holder } => ApiError::new(
            StatusCode::CONFLICT,
            "claimed_by_other",
            format!("already claimed by {}", name(holder.id).await),
        ),
        RejectReason::AlreadyHolder => ApiError::new(
            StatusCode::CONFLICT,
            "already_holder",
            "you already hold this incident",
        ),
        RejectReason::NotHolder { holder } => {
            let who = match holder {
                Some(h) => name(h.id).await,
                None => "nobody".to_owned(),
            };
            ApiError::new(
                StatusCode::CONFLICT,
                "not_holder",
                format!("only the holder ({who}) or a supervisor may do this; claim it first"),
            )
        }
        RejectReason::NotClaimed => ApiError::new(
            StatusCode::CONFLICT,
            "not_claimed",
            "nobody holds this incident",
        ),
        RejectReason::RoleNotAllowed { role } => {
            ApiError::forbidden(format!("the {} role may not do this", role.as_str()))
        }
        RejectReason::EmptyNote => ApiError::bad_request("empty_note", "the note is empty"),
        RejectReason::NoteTooLong { max } => ApiError::bad_request(
            "note_too_long",
            format!("a note may be at most {max} bytes"),
        ),
        other => {
            tracing::info!(reason = ?other, incident = id, "console command refused by triage");
            ApiError::bad_request("rejected", "the triage engine refused this command")
        }
    }
}

/// The incident after a command.
#[derive(Debug, Serialize, ToSchema)]
pub struct IncidentResponse {
    pub incident: IncidentView,
}

async fn answer(c: &Console, id: i64) -> Result<Json<IncidentResponse>, ApiError> {
    Ok(Json(IncidentResponse {
        incident: view(c, id).await?,
    }))
}

/// Claim an incident.
#[utoipa::path(post, path = "/api/v1/incidents/{id}/claim", tag = "Incidents", operation_id = "claimIncident",
    summary = "Claim an incident",
    description = "Roles: operator, supervisor.

Takes the incident for the caller. The command goes to the triage engine and is answered once its effects are durable; it is audited.",
    params(("id" = i64, Path, description = "The numeric id.")),
    responses(
        (status = 200, description = "The incident after the command.", body = IncidentResponse),
        (status = 400, description = "`invalid_path`: `id` is not an integer.", body = crate::openapi::ErrorBody),
        (status = 401, response = crate::openapi::Unauthorized),
        (status = 403, description = "`forbidden`: your role may not do this (operator, supervisor only), or the `X-CSRF-Token` header is missing or wrong.", body = crate::openapi::ErrorBody),
        (status = 404, description = "`not_found`: no such incident.", body = crate::openapi::ErrorBody),
        (status = 409, description = "`claimed_by_other` (the message names the holder; a supervisor may take it over); `already_holder`; `already_resolved`: the incident is already resolved.", body = crate::openapi::ErrorBody),
        (status = 503, response = crate::openapi::Unavailable),
    )
)]
pub async fn claim(
    State(c): State<Console>,
    auth: Auth,
    ApiPath(id): ApiPath<i64>,
) -> Result<Json<IncidentResponse>, ApiError> {
    let input = Input::Claim {
        incident: incident_id(id)?,
        actor: actor(&auth),
    };
    run(&c, &auth, id, "incident.claim", input).await?;
    answer(&c, id).await
}

/// Release an incident back to the queue.
#[utoipa::path(post, path = "/api/v1/incidents/{id}/release", tag = "Incidents", operation_id = "releaseIncident",
    summary = "Release an incident back to the queue",
    description = "Roles: operator, supervisor.

An operator may release only an incident they hold; a supervisor may release anyone's. The command goes to the triage engine and is answered once its effects are durable; it is audited.",
    params(("id" = i64, Path, description = "The numeric id.")),
    responses(
        (status = 200, description = "The incident after the command.", body = IncidentResponse),
        (status = 400, description = "`invalid_path`: `id` is not an integer.", body = crate::openapi::ErrorBody),
        (status = 401, response = crate::openapi::Unauthorized),
        (status = 403, description = "`forbidden`: your role may not do this (operator, supervisor only), or the `X-CSRF-Token` header is missing or wrong.", body = crate::openapi::ErrorBody),
        (status = 404, description = "`not_found`: no such incident.", body = crate::openapi::ErrorBody),
        (status = 409, description = "`not_claimed` (nobody holds it); `not_holder` (held by someone else; the message names them); `already_resolved`: the incident is already resolved.", body = crate::openapi::ErrorBody),
        (status = 503, response = crate::openapi::Unavailable),
    )
)]
pub async fn release(
    State(c): State<Console>,
    auth: Auth,
    ApiPath(id): ApiPath<i64>,
) -> Result<Json<IncidentResponse>, ApiError> {
    let input = Input::Release {
        incident: incident_id(id)?,
        actor: actor(&auth),
    };
    run(&c, &auth, id, "incident.release", input).await?;
    answer(&c, id).await
}

/// Take over an incident.
#[utoipa::path(post, path = "/api/v1/incidents/{id}/takeover", tag = "Incidents", operation_id = "takeOverIncident",
    summary = "Take over an incident",
    description = "Roles: supervisor.

Claims the incident for the supervisor, from whoever holds it (or from the queue if nobody does). The command goes to the triage engine and is answered once its effects are durable; it is audited.",
    params(("id" = i64, Path, description = "The numeric id.")),
    responses(
        (status = 200, description = "The incident after the command.", body = IncidentResponse),
        (status = 400, description = "`invalid_path`: `id` is not an integer.", body = crate::openapi::ErrorBody),
        (status = 401, response = crate::openapi::Unauthorized),
        (status = 403, description = "`forbidden`: your role may not do this (supervisor only), or the `X-CSRF-Token` header is missing or wrong.", body = crate::openapi::ErrorBody),
        (status = 404, description = "`not_found`: no such incident.", body = crate::openapi::ErrorBody),
        (status = 409, description = "`already_holder`; `already_resolved`: the incident is already resolved.", body = crate::openapi::ErrorBody),
        (status = 503, response = crate::openapi::Unavailable),
    )
)]
pub async fn takeover(
    State(c): State<Console>,
    auth: Auth,
    ApiPath(id): ApiPath<i64>,
) -> Result<Json<IncidentResponse>, ApiError> {
    let input = Input::TakeOver {
        incident: incident_id(id)?,
        actor: actor(&auth),
    };
    run(&c, &auth, id, "incident.takeover", input).await?;
    answer(&c, id).await
}

#[derive(Debug, Deserialize, ToSchema)]
pub struct NoteBody {
    text: String,
}

/// Add a note to an incident.
#[utoipa::path(post, path = "/api/v1/incidents/{id}/note", tag = "Incidents", operation_id = "addIncidentNote",
    summary = "Add a note to an incident",
    description = "Roles: operator, supervisor.

Anyone handling incidents may note any open incident; they need not hold it. The command goes to the triage engine and is answered once its effects are durable; it is audited.",
    params(("id" = i64, Path, description = "The numeric id.")),
    request_body = NoteBody,
    responses(
        (status = 200, description = "The incident after the command.", body = IncidentResponse),
        (status = 400, description = "`invalid_json`; `empty_note`; `note_too_long` (more than 4000 characters); `control_character` (the note holds a control character other than tab or a line break; refused before it reaches the triage engine). `invalid_path`: `id` is not an integer.", body = crate::openapi::ErrorBody),
        (status = 401, response = crate::openapi::Unauthorized),
        (status = 403, description = "`forbidden`: your role may not do this (operator, supervisor only), or the `X-CSRF-Token` header is missing or wrong.", body = crate::openapi::ErrorBody),
        (status = 404, description = "`not_found`: no such incident.", body = crate::openapi::ErrorBody),
        (status = 409, description = "`already_resolved`: the incident is already resolved.", body = crate::openapi::ErrorBody),
        (status = 413, response = crate::openapi::TooLarge),
        (status = 415, response = crate::openapi::UnsupportedMediaType),
        (status = 503, response = crate::openapi::Unavailable),
    )
)]
pub async fn note(
    State(c): State<Console>,
    auth: Auth,
    ApiPath(id): ApiPath<i64>,
    ApiJson(body): ApiJson<NoteBody>,
) -> Result<Json<IncidentResponse>, ApiError> {
    // Checked here, before the engine: see `text` for why a NUL must never reach it.
    crate::text::check_note(&body.text)?;
    let input = Input::Note {
        incident: incident_id(id)?,
        actor: actor(&auth),
        text: body.text,
    };
    run(&c, &auth, id, "incident.note", input).await?;
    answer(&c, id).await
}

#[derive(Debug, Deserialize, ToSchema)]
pub struct ResolveBody {
    /// One of the codes of `GET /api/v1/outcomes`.
    outcome: String,
}

fn outcome(code: &str) -> Result<OutcomeCode, ApiError> {
    if !OUTCOMES.iter().any(|(c, _)| *c == code) {
        return Err(ApiError::bad_request(
            "unknown_outcome",
            format!("{code:?} is not one of the centre's outcome codes (GET /api/v1/outcomes)"),
        ));
    }
    OutcomeCode::parse(code).map_err(|e| ApiError::bad_request("unknown_outcome", e.to_string()))
}

/// Resolve an incident.
#[utoipa::path(post, path = "/api/v1/incidents/{id}/resolve", tag = "Incidents", operation_id = "resolveIncident",
    summary = "Resolve an incident",
    description = "Roles: operator, supervisor.

An operator may resolve only an incident they hold; a supervisor may resolve any open incident, claimed or not. The command goes to the triage engine and is answered once its effects are durable; it is audited.",
    params(("id" = i64, Path, description = "The numeric id.")),
    request_body = ResolveBody,
    responses(
        (status = 200, description = "The incident after the command.", body = IncidentResponse),
        (status = 400, description = "`invalid_json`; `unknown_outcome`. `invalid_path`: `id` is not an integer.", body = crate::openapi::ErrorBody),
        (status = 401, response = crate::openapi::Unauthorized),
        (status = 403, description = "`forbidden`: your role may not do this (operator, supervisor only), or the `X-CSRF-Token` header is missing or wrong.", body = crate::openapi::ErrorBody),
        (status = 404, description = "`not_found`: no such incident.", body = crate::openapi::ErrorBody),
        (status = 409, description = "`not_holder` (the message names the holder, or nobody); `already_resolved`: the incident is already resolved.", body = crate::openapi::ErrorBody),
        (status = 413, response = crate::openapi::TooLarge),
        (status = 415, response = crate::openapi::UnsupportedMediaType),
        (status = 503, response = crate::openapi::Unavailable),
    )
)]
pub async fn resolve(
    State(c): State<Console>,
    auth: Auth,
    ApiPath(id): ApiPath<i64>,
    ApiJson(body): ApiJson<ResolveBody>,
) -> Result<Json<IncidentResponse>, ApiError> {
    let input = Input::Resolve {
        incident: incident_id(id)?,
        actor: actor(&auth),
        outcome: outcome(&body.outcome)?,
    };
    run(&c, &auth, id, "incident.resolve", input).await?;
    answer(&c, id).await
}

#[derive(Debug, Deserialize, ToSchema)]
pub struct BulkBody {
    /// 1 to 10,000 incident ids.
    incidents: Vec<i64>,
    /// One of the codes of `GET /api/v1/outcomes`.
    outcome: String,
}

/// What a bulk resolve did.
#[derive(Debug, Serialize, ToSchema)]
pub struct BulkResolveResponse {
    /// The incidents resolved.
    pub resolved: Vec<i64>,
    /// The incidents refused, each with the error a single resolve would have given.
    pub rejected: Vec<BulkRejection>,
}

/// One incident a bulk resolve refused.
#[derive(Debug, Serialize, ToSchema)]
pub struct BulkRejection {
    pub id: i64,
    pub error: String,
    pub message: String,
}

/// Resolve many incidents with one outcome.
#[utoipa::path(post, path = "/api/v1/incidents/bulk-resolve", tag = "Incidents", operation_id = "bulkResolveIncidents",
    summary = "Resolve many incidents with one outcome",
    description = "Roles: supervisor.

E.g. a storm's group incidents after the power came back. Each incident is resolved separately: refusals are listed in `rejected` and do not stop the others. If the engine or database becomes unavailable part-way, the request answers 503 and the incidents already resolved stay resolved.",
    request_body = BulkBody,
    responses(
        (status = 200, description = "What was resolved and what was refused.", body = BulkResolveResponse),
        (status = 400, description = "`invalid_json`; `bad_selection` (not between 1 and 10000 incidents); `unknown_outcome`.", body = crate::openapi::ErrorBody),
        (status = 401, response = crate::openapi::Unauthorized),
        (status = 403, description = "`forbidden`: your role may not do this (supervisor only), or the `X-CSRF-Token` header is missing or wrong.", body = crate::openapi::ErrorBody),
        (status = 404, description = "`not_found`: an id in the list is negative. The request stops there: incidents before it in the list that were already resolved stay resolved.", body = crate::openapi::ErrorBody),
        (status = 413, response = crate::openapi::TooLarge),
        (status = 415, response = crate::openapi::UnsupportedMediaType),
        (status = 503, response = crate::openapi::Unavailable),
    )
)]
pub async fn bulk_resolve(
    State(c): State<Console>,
    auth: Auth,
    ApiJson(body): ApiJson<BulkBody>,
) -> Result<Json<BulkResolveResponse>, ApiError> {
    if body.incidents.is_empty() || body.incidents.len() > 10_000 {
        return Err(ApiError::bad_request(
            "bad_selection",
            "select between 1 and 10000 incidents",
        ));
    }
    // Every id is checked before anything is resolved: a bad one refuses the whole request.
    let ids = body
        .incidents
        .iter()
        .map(|&id| incident_id(id).map(|iid| (id, iid)))
        .collect::<Result<Vec<_>, _>>()
        .map_err(|_| ApiError::bad_request("bad_selection", "incident ids are positive numbers"))?;
    let outcome = outcome(&body.outcome)?;
    let actor = actor(&auth);
    let mut resolved = Vec::new();
    let mut rejected = Vec::new();
    for (id, incident) in ids {
        let input = Input::Resolve {
            incident,
            actor,
            outcome: outcome.clone(),
        };
        match run(&c, &auth, id, "incident.bulk_resolve", input).await {
            Ok(_) => resolved.push(id),
            Err(e) if e.status == StatusCode::SERVICE_UNAVAILABLE => return Err(e),
            Err(e) => rejected.push(BulkRejection {
                id,
                error: e.code.to_owned(),
                message: e.message,
            }),
        }
    }
    Ok(Json(BulkResolveResponse { resolved, rejected }))
}
