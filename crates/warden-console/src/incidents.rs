//! The live queue and the incident commands. Commands go to the triage engine (the one
//! owner of incident state) and are answered after their effects are durable.

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use serde::Deserialize;
use serde_json::{Value, json};
use time::OffsetDateTime;
use warden_core::{Actor, Effect, IncidentId, Input, OutcomeCode, RejectReason};

use crate::Console;
use crate::auth::{Auth, HANDLERS, Role, SUPERVISORS};
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

/// `GET /api/v1/outcomes`.
pub async fn outcomes(auth: Auth) -> Result<Json<Value>, ApiError> {
    auth.require(HANDLERS)?;
    let list: Vec<Value> = OUTCOMES
        .iter()
        .map(|(code, label)| json!({ "code": code, "label": label }))
        .collect();
    Ok(Json(Value::Array(list)))
}

/// `GET /api/v1/queue`.
pub async fn queue(State(c): State<Console>, auth: Auth) -> Result<Json<Value>, ApiError> {
    auth.require(HANDLERS)?;
    let mut views: Vec<IncidentView> = c
        .store()
        .incident_views(None)
        .await?
        .into_iter()
        .map(IncidentView::from)
        .collect();
    sort_queue(&mut views);
    let mut counts = json!({ "life_critical": 0, "urgent": 0, "technical": 0, "information": 0 });
    for v in &views {
        if let Some(n) = counts.get_mut(v.priority.as_str()) {
            *n = json!(n.as_u64().unwrap_or(0) + 1);
        }
    }
    let t = c.engine().sla().life_critical.unwrap_or_default();
    let secs = |m: warden_core::Micros| m.as_micros() / 1_000_000;
    Ok(Json(json!({
        "server_time_ms": i64::try_from(OffsetDateTime::now_utc().unix_timestamp_nanos() / 1_000_000).unwrap_or(0),
        "thresholds": { "warn_s": secs(t.warn), "overflow_s": secs(t.overflow), "critical_s": secs(t.critical) },
        "counts": counts,
        "incidents": views,
    })))
}

async fn view(c: &Console, id: i64) -> Result<IncidentView, ApiError> {
    c.store()
        .incident_views(Some(&[id]))
        .await?
        .into_iter()
        .next()
        .map(IncidentView::from)
        .ok_or_else(|| ApiError::not_found(format!("incident {id}")))
}

/// `GET /api/v1/incidents/{id}`.
pub async fn detail(
    State(c): State<Console>,
    auth: Auth,
    ApiPath(id): ApiPath<i64>,
) -> Result<Json<Value>, ApiError> {
    auth.require(&[Role::Operator, Role::Supervisor, Role::Admin])?;
    let incident = view(&c, id).await?;
    let events = c.store().incident_events(id).await?;
    let signals = match incident.device.as_ref() {
        Some(d) => c.store().recent_signals(None, Some(d.id), 20).await?,
        None => Vec::new(),
    };
    let signals = crate::view::signals_json(&signals);
    Ok(Json(
        json!({ "incident": incident, "events": events, "signals": signals }),
    ))
}

fn actor(auth: &Auth) -> Result<Actor, ApiError> {
    auth.require(HANDLERS)?;
    Ok(Actor {
        id: auth.user.id,
        role: auth.role,
    })
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
    if let Err(e) = c.store().audit(&a).await {
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
        other => ApiError::bad_request("rejected", format!("{other:?}")),
    }
}

async fn answer(c: &Console, id: i64) -> Result<Json<Value>, ApiError> {
    Ok(Json(json!({ "incident": view(c, id).await? })))
}

/// `POST /api/v1/incidents/{id}/claim`.
pub async fn claim(
    State(c): State<Console>,
    auth: Auth,
    ApiPath(id): ApiPath<i64>,
) -> Result<Json<Value>, ApiError> {
    let input = Input::Claim {
        incident: incident_id(id)?,
        actor: actor(&auth)?,
    };
    run(&c, &auth, id, "incident.claim", input).await?;
    answer(&c, id).await
}

/// `POST /api/v1/incidents/{id}/release`.
pub async fn release(
    State(c): State<Console>,
    auth: Auth,
    ApiPath(id): ApiPath<i64>,
) -> Result<Json<Value>, ApiError> {
    let input = Input::Release {
        incident: incident_id(id)?,
        actor: actor(&auth)?,
    };
    run(&c, &auth, id, "incident.release", input).await?;
    answer(&c, id).await
}

/// `POST /api/v1/incidents/{id}/takeover` (supervisors).
pub async fn takeover(
    State(c): State<Console>,
    auth: Auth,
    ApiPath(id): ApiPath<i64>,
) -> Result<Json<Value>, ApiError> {
    auth.require(SUPERVISORS)?;
    let input = Input::TakeOver {
        incident: incident_id(id)?,
        actor: actor(&auth)?,
    };
    run(&c, &auth, id, "incident.takeover", input).await?;
    answer(&c, id).await
}

#[derive(Debug, Deserialize)]
pub struct NoteBody {
    text: String,
}

/// `POST /api/v1/incidents/{id}/note`.
pub async fn note(
    State(c): State<Console>,
    auth: Auth,
    ApiPath(id): ApiPath<i64>,
    ApiJson(body): ApiJson<NoteBody>,
) -> Result<Json<Value>, ApiError> {
    // Checked here, before the engine: see `text` for why a NUL must never reach it.
    crate::text::check_note(&body.text)?;
    let input = Input::Note {
        incident: incident_id(id)?,
        actor: actor(&auth)?,
        text: body.text,
    };
    run(&c, &auth, id, "incident.note", input).await?;
    answer(&c, id).await
}

#[derive(Debug, Deserialize)]
pub struct ResolveBody {
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

/// `POST /api/v1/incidents/{id}/resolve`.
pub async fn resolve(
    State(c): State<Console>,
    auth: Auth,
    ApiPath(id): ApiPath<i64>,
    ApiJson(body): ApiJson<ResolveBody>,
) -> Result<Json<Value>, ApiError> {
    let input = Input::Resolve {
        incident: incident_id(id)?,
        actor: actor(&auth)?,
        outcome: outcome(&body.outcome)?,
    };
    run(&c, &auth, id, "incident.resolve", input).await?;
    answer(&c, id).await
}

#[derive(Debug, Deserialize)]
pub struct BulkBody {
    incidents: Vec<i64>,
    outcome: String,
}

/// `POST /api/v1/incidents/bulk-resolve` (supervisors): one outcome for many incidents,
/// e.g. a storm's group incidents after the power came back.
pub async fn bulk_resolve(
    State(c): State<Console>,
    auth: Auth,
    ApiJson(body): ApiJson<BulkBody>,
) -> Result<Json<Value>, ApiError> {
    auth.require(SUPERVISORS)?;
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
    let actor = actor(&auth)?;
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
            Err(e) => rejected.push(json!({ "id": id, "error": e.code, "message": e.message })),
        }
    }
    Ok(Json(json!({ "resolved": resolved, "rejected": rejected })))
}
