//! The out-of-hours desk: non-alarm calls logged with a reference the caller can quote
//! (`OOH-2026-000123`), routed by category to whoever is on call for it, and tracked.

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use serde::Deserialize;
use time::OffsetDateTime;
use warden_store::{NewOohJob, OohCategory, OohJob};
use warden_telemetry as m;
use warden_types::JobStatus;

use crate::Console;
use crate::auth::{ADMINS, Auth, OOH_DESK, OOH_READERS};
use crate::error::{ApiError, ApiJson, ApiPath, ApiQuery};

/// Where a job goes: a name and a number to call.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Contact {
    pub name: String,
    pub phone: String,
}

/// Who is on call for a category. Today: the contact held on the category. Escalation
/// chains and rotas (a later issue) plug in here without touching the desk.
pub trait OnCallRouter: Send + Sync + std::fmt::Debug {
    fn route(&self, category: &OohCategory, at: OffsetDateTime) -> Option<Contact>;
}

/// Routes to the category's named on-call contact.
#[derive(Debug, Default, Clone, Copy)]
pub struct CategoryContact;

impl OnCallRouter for CategoryContact {
    fn route(&self, category: &OohCategory, _at: OffsetDateTime) -> Option<Contact> {
        match (&category.oncall_name, &category.oncall_phone) {
            (Some(name), Some(phone)) if !name.trim().is_empty() && !phone.trim().is_empty() => {
                Some(Contact {
                    name: name.clone(),
                    phone: phone.clone(),
                })
            }
            _ => None,
        }
    }
}

fn job_json(j: &OohJob) -> serde_json::Value {
    let mut v = serde_json::to_value(j).unwrap_or_default();
    v["routed_to"] = match (&j.routed_name, &j.routed_phone) {
        (Some(n), Some(p)) => serde_json::json!({ "name": n, "phone": p }),
        _ => serde_json::Value::Null,
    };
    v["created_by"] = serde_json::json!({ "id": j.created_by, "name": j.created_by_name });
    v
}

/// `GET /api/v1/ooh/categories`.
pub async fn categories(
    State(c): State<Console>,
    auth: Auth,
) -> Result<Json<Vec<OohCategory>>, ApiError> {
    auth.require(OOH_READERS)?;
    Ok(Json(c.store().ooh_categories().await?))
}

/// `PUT /api/v1/ooh/categories/{code}` (admin): name and on-call contact of a category.
pub async fn save_category(
    State(c): State<Console>,
    auth: Auth,
    ApiPath(code): ApiPath<String>,
    ApiJson(mut body): ApiJson<OohCategory>,
) -> Result<Json<OohCategory>, ApiError> {
    auth.require(ADMINS)?;
    if code.is_empty()
        || code.len() > 32
        || !code
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_')
    {
        return Err(ApiError::bad_request(
            "invalid_value",
            "a category code is 1-32 characters of a-z, 0-9 and _",
        ));
    }
    if body.name.trim().is_empty() {
        return Err(ApiError::bad_request(
            "invalid_value",
            "a category needs a name",
        ));
    }
    crate::text::check("name", &body.name, 200)?;
    crate::text::check_opt("oncall_name", body.oncall_name.as_deref(), 200)?;
    crate::text::check_opt("oncall_phone", body.oncall_phone.as_deref(), 50)?;
    body.code = code;
    let audit = auth.audit("ooh.category.save", "ooh_category", None);
    Ok(Json(c.store().save_ooh_category(&body, audit).await?))
}

fn check_job(j: &NewOohJob) -> Result<(), ApiError> {
    let missing = |f: &str| ApiError::bad_request("invalid_value", format!("{f} is required"));
    if j.caller_name.trim().is_empty() {
        return Err(missing("caller_name"));
    }
    if j.description.trim().is_empty() {
        return Err(missing("description"));
    }
    if !["emergency", "urgent", "routine"].contains(&j.urgency.as_str()) {
        return Err(ApiError::bad_request(
            "invalid_value",
            "urgency must be emergency, urgent or routine",
        ));
    }
    for (f, v, max) in [
        ("caller_name", &j.caller_name, 200),
        ("caller_phone", &j.caller_phone, 50),
        ("address", &j.address, 500),
        ("description", &j.description, 5000),
    ] {
        crate::text::check(f, v, max)?;
    }
    Ok(())
}

/// `POST /api/v1/ooh/jobs`.
pub async fn create_job(
    State(c): State<Console>,
    auth: Auth,
    ApiJson(job): ApiJson<NewOohJob>,
) -> Result<(StatusCode, Json<serde_json::Value>), ApiError> {
    auth.require(OOH_DESK)?;
    check_job(&job)?;
    let categories = c.store().ooh_categories().await?;
    let Some(category) = categories.iter().find(|k| k.code == job.category) else {
        return Err(ApiError::bad_request(
            "unknown_category",
            format!("{:?} is not an out-of-hours category", job.category),
        ));
    };
    let now = OffsetDateTime::now_utc();
    let routed = c.router().route(category, now);
    let reference = c
        .store()
        .create_ooh_job(
            now.year(),
            &job,
            routed.as_ref().map(|r| (r.name.as_str(), r.phone.as_str())),
            auth.user.id,
            auth.audit("ooh.job.create", "ooh_job", None),
        )
        .await?;
    metrics::counter!(m::OOH_JOBS, "routed" => if routed.is_some() { "true" } else { "false" })
        .increment(1);
    if routed.is_none() {
        // Never silently skipped: the job is recorded as unrouted and shown as such.
        tracing::warn!(reference = %reference, category = %job.category, "out-of-hours job has no on-call contact");
    }
    let stored = c
        .store()
        .ooh_job(&reference)
        .await?
        .ok_or_else(|| ApiError::not_found(&reference))?;
    Ok((StatusCode::CREATED, Json(job_json(&stored))))
}

#[derive(Debug, Deserialize)]
pub struct JobSearch {
    #[serde(default)]
    q: String,
}

/// `GET /api/v1/ooh/jobs?q=`.
pub async fn jobs(
    State(c): State<Console>,
    auth: Auth,
    ApiQuery(s): ApiQuery<JobSearch>,
) -> Result<Json<Vec<serde_json::Value>>, ApiError> {
    auth.require(OOH_READERS)?;
    let list = c.store().ooh_jobs(&s.q, 100).await?;
    Ok(Json(list.iter().map(job_json).collect()))
}

/// `GET /api/v1/ooh/jobs/{reference}`.
pub async fn job(
    State(c): State<Console>,
    auth: Auth,
    ApiPath(reference): ApiPath<String>,
) -> Result<Json<serde_json::Value>, ApiError> {
    auth.require(OOH_READERS)?;
    let j = c
        .store()
        .ooh_job(&reference)
        .await?
        .ok_or_else(|| ApiError::not_found(format!("job {reference}")))?;
    Ok(Json(job_json(&j)))
}

#[derive(Debug, Deserialize)]
pub struct StatusBody {
    status: String,
    #[serde(default)]
    note: String,
}

/// `POST /api/v1/ooh/jobs/{reference}/status`.
pub async fn set_status(
    State(c): State<Console>,
    auth: Auth,
    ApiPath(reference): ApiPath<String>,
    ApiJson(b): ApiJson<StatusBody>,
) -> Result<Json<serde_json::Value>, ApiError> {
    auth.require(OOH_READERS)?;
    let Some(status) = JobStatus::parse(&b.status).filter(|s| s.is_settable()) else {
        return Err(ApiError::bad_request(
            "invalid_value",
            "status must be acknowledged, in_progress or closed",
        ));
    };
    crate::text::check("note", &b.note, 5000)?;
    let audit = auth.audit("ooh.job.status", "ooh_job", None);
    if !c
        .store()
        .ooh_set_status(&reference, status, b.note.trim(), auth.user.id, audit)
        .await?
    {
        return Err(ApiError::not_found(format!("job {reference}")));
    }
    job(State(c), auth, ApiPath(reference)).await
}
