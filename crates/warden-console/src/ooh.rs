//! The out-of-hours desk: non-alarm calls logged with a reference the caller can quote
//! (`OOH-2026-000123`), routed by category to whoever is on call for it, and tracked.

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;
use utoipa::{IntoParams, ToSchema};
use warden_store::{CallerMessage, JobRouting, NewOohJob, OohCategory, OohJob, OohUpdate};
use warden_telemetry as m;
use warden_types::JobStatus;

use crate::Console;
use crate::auth::Auth;
use crate::error::{ApiError, ApiJson, ApiPath, ApiQuery};

/// Where a job goes: a name and a number to call, and how they were found (words for the
/// job's history).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Contact {
    pub name: String,
    pub phone: String,
    pub via: String,
    /// The directory's person, when an on-call route found them.
    pub person: Option<i64>,
}

/// Who is on call for a category.
pub trait OnCallRouter: Send + Sync + std::fmt::Debug {
    fn route(&self, category: &OohCategory, at: OffsetDateTime) -> Option<Contact>;
}

/// Routes through the on-call directory, the same machinery as alarm escalation: the route
/// naming the category gives a chain, and whoever its steps reach at that moment (a rota's
/// on-call person, a named person, a team) with a verified phone takes the job. With no
/// route for the category, the category's fixed contact ([`CategoryContact`]).
#[derive(Debug)]
pub struct DirectoryRouter(pub warden_notify::Oncall);

impl OnCallRouter for DirectoryRouter {
    fn route(&self, category: &OohCategory, at: OffsetDateTime) -> Option<Contact> {
        self.0
            .ooh_contact(&category.code, warden_core::Timestamp::from(at))
            .map(|c| Contact {
                name: c.name,
                phone: c.phone,
                via: format!("the on-call route (chain {})", c.chain_name),
                person: Some(c.person),
            })
            .or_else(|| CategoryContact.route(category, at))
    }
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
                    via: "the category's contact (no on-call route names it)".to_owned(),
                    person: None,
                })
            }
            _ => None,
        }
    }
}

/// An out-of-hours job as the API shows it.
#[derive(Debug, Serialize, ToSchema)]
#[schema(as = OohJob)]
pub struct JobOut {
    /// `OOH-<year>-<number>`, for the caller to quote.
    pub reference: String,
    pub category: String,
    pub caller_name: String,
    pub caller_phone: String,
    pub address: String,
    pub description: String,
    pub urgency: String,
    pub status: JobStatus,
    pub routed_name: Option<String>,
    pub routed_phone: Option<String>,
    /// Who logged it.
    pub created_by: Person,
    pub created_by_name: String,
    #[serde(with = "time::serde::rfc3339")]
    pub created_at: OffsetDateTime,
    /// Status changes, oldest first (the first is the routing).
    pub updates: Vec<OohUpdate>,
    /// Where it was routed; `null` when nobody was on call for its category.
    pub routed_to: Option<RoutedTo>,
    /// How the caller wants to hear back: `phone` (call back), `sms`, `email` or `none`.
    pub caller_contact: String,
    pub caller_email: String,
    /// Language or format needs.
    pub caller_needs: String,
    /// What was sent to the caller (the reference, each status change), oldest first.
    pub messages: Vec<CallerMessage>,
}

/// A console user named in a job.
#[derive(Debug, Serialize, ToSchema)]
pub struct Person {
    pub id: i64,
    pub name: String,
}

/// The on-call contact a job was routed to.
#[derive(Debug, Serialize, ToSchema)]
#[schema(as = Contact)]
pub struct RoutedTo {
    pub name: String,
    pub phone: String,
}

impl From<OohJob> for JobOut {
    fn from(j: OohJob) -> Self {
        JobOut {
            routed_to: match (&j.routed_name, &j.routed_phone) {
                (Some(name), Some(phone)) => Some(RoutedTo {
                    name: name.clone(),
                    phone: phone.clone(),
                }),
                _ => None,
            },
            created_by: Person {
                id: j.created_by,
                name: j.created_by_name.clone(),
            },
            reference: j.reference,
            category: j.category,
            caller_name: j.caller_name,
            caller_phone: j.caller_phone,
            address: j.address,
            description: j.description,
            urgency: j.urgency,
            status: j.status,
            routed_name: j.routed_name,
            routed_phone: j.routed_phone,
            created_by_name: j.created_by_name,
            created_at: j.created_at,
            updates: j.updates,
            caller_contact: j.caller_contact,
            caller_email: j.caller_email,
            caller_needs: j.caller_needs,
            messages: j.messages,
        }
    }
}

/// Out-of-hours categories.
#[utoipa::path(get, path = "/api/v1/ooh/categories", tag = "Out of hours", operation_id = "listOohCategories",
    summary = "Out-of-hours categories",
    description = "Roles: operator, supervisor, on_call, admin.

Ordered by name.",
    responses(
        (status = 200, description = "The categories.", body = Vec<OohCategory>),
        (status = 401, response = crate::openapi::Unauthorized),
        (status = 403, description = "`forbidden`: your role may not do this (operator, supervisor, on_call, admin only).", body = crate::openapi::ErrorBody),
        (status = 503, response = crate::openapi::Unavailable),
    )
)]
pub async fn categories(
    State(c): State<Console>,
    _auth: Auth,
) -> Result<Json<Vec<OohCategory>>, ApiError> {
    Ok(Json(c.store().ooh_categories().await?))
}

/// Create or update a category.
#[utoipa::path(put, path = "/api/v1/ooh/categories/{code}", tag = "Out of hours", operation_id = "saveOohCategory",
    summary = "Create or update a category",
    description = "Roles: admin.

Sets the name and on-call contact of the category `code`, creating it if it does not exist (the body's `code` is ignored). Audited.",
    params(("code" = String, Path, description = "The category code: 1-32 characters of a-z, 0-9 and _.")),
    request_body = OohCategory,
    responses(
        (status = 200, description = "The category as saved.", body = OohCategory),
        (status = 400, description = "`invalid_json`; `invalid_value` (bad code, blank name, or the database refused a value).", body = crate::openapi::ErrorBody),
        (status = 401, response = crate::openapi::Unauthorized),
        (status = 403, description = "`forbidden`: your role may not do this (admin only), or the `X-CSRF-Token` header is missing or wrong.", body = crate::openapi::ErrorBody),
        (status = 413, response = crate::openapi::TooLarge),
        (status = 415, response = crate::openapi::UnsupportedMediaType),
        (status = 503, response = crate::openapi::Unavailable),
    )
)]
pub async fn save_category(
    State(c): State<Console>,
    auth: Auth,
    ApiPath(code): ApiPath<String>,
    ApiJson(mut body): ApiJson<OohCategory>,
) -> Result<Json<OohCategory>, ApiError> {
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
        ("caller_email", &j.caller_email, 254),
        ("caller_needs", &j.caller_needs, 500),
    ] {
        crate::text::check(f, v, max)?;
    }
    match j.caller_contact.as_str() {
        "phone" | "none" => {}
        "sms" if j.caller_phone.chars().filter(char::is_ascii_digit).count() >= 7 => {}
        "sms" => {
            return Err(ApiError::bad_request(
                "invalid_value",
                "caller_contact sms needs caller_phone (a mobile number)",
            ));
        }
        "email" if warden_notify::email::is_mailbox(j.caller_email.trim()) => {}
        "email" => {
            return Err(ApiError::bad_request(
                "invalid_value",
                "caller_contact email needs caller_email (an e-mail address)",
            ));
        }
        _ => {
            return Err(ApiError::bad_request(
                "invalid_value",
                "caller_contact must be phone, sms, email or none",
            ));
        }
    }
    Ok(())
}

/// Log an out-of-hours job.
#[utoipa::path(post, path = "/api/v1/ooh/jobs", tag = "Out of hours", operation_id = "createOohJob",
    summary = "Log an out-of-hours job",
    description = "Roles: operator, supervisor.

Takes the next reference of the year and routes the job to the category's on-call contact; with no contact it is recorded as `unrouted` (never silently skipped). Audited.",
    request_body = NewOohJob,
    responses(
        (status = 201, description = "The new job.", body = JobOut),
        (status = 400, description = "`invalid_json`; `invalid_value` (a required field is blank, a field is too long, or urgency is not emergency/urgent/routine); `unknown_category`.", body = crate::openapi::ErrorBody),
        (status = 401, response = crate::openapi::Unauthorized),
        (status = 403, description = "`forbidden`: your role may not do this (operator, supervisor only), or the `X-CSRF-Token` header is missing or wrong.", body = crate::openapi::ErrorBody),
        (status = 413, response = crate::openapi::TooLarge),
        (status = 415, response = crate::openapi::UnsupportedMediaType),
        (status = 503, response = crate::openapi::Unavailable),
    )
)]
pub async fn create_job(
    State(c): State<Console>,
    auth: Auth,
    ApiJson(job): ApiJson<NewOohJob>,
) -> Result<(StatusCode, Json<JobOut>), ApiError> {
    check_job(&job)?;
    let categories = c.store().ooh_categories().await?;
    let Some(category) = categories.iter().find(|k| k.code == job.category) else {
        return Err(ApiError::bad_request(
            "unknown_category",
            format!("{:?} is not an out-of-hours category", job.category),
        ));
    };
    let now = OffsetDateTime::now_utc();
    let directory = warden_notify::Oncall::from_config(c.store().oncall_config(now).await?);
    let routed = DirectoryRouter(directory).route(category, now);
    let reference = c
        .store()
        .create_routed_ooh_job(
            now.year(),
            &job,
            routed.as_ref().map(|r| JobRouting {
                name: &r.name,
                phone: &r.phone,
                via: &r.via,
                person: r.person,
            }),
            auth.user.id,
            auth.audit("ooh.job.create", "ooh_job", None),
            warden_notify::message::caller_update,
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
    Ok((StatusCode::CREATED, Json(JobOut::from(stored))))
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct JobSearch {
    /// A reference, address, caller name or phone (all jobs when empty).
    #[serde(default)]
    q: String,
}

/// Search out-of-hours jobs.
#[utoipa::path(get, path = "/api/v1/ooh/jobs", tag = "Out of hours", operation_id = "listOohJobs",
    summary = "Search out-of-hours jobs",
    description = "Roles: operator, supervisor, on_call, admin.

Matches reference, address, caller name or caller phone (case-insensitive substring); all jobs when `q` is empty. Newest first, at most 100. On call: only the jobs routed to the person linked to your account (none when it is linked to nobody). Each search is recorded in the audit trail with the references it returned (`ooh.job.search`).",
    params(JobSearch),
    responses(
        (status = 200, description = "Matching jobs.", body = Vec<JobOut>),
        (status = 401, response = crate::openapi::Unauthorized),
        (status = 403, description = "`forbidden`: your role may not do this (operator, supervisor, on_call, admin only).", body = crate::openapi::ErrorBody),
        (status = 503, response = crate::openapi::Unavailable),
    )
)]
pub async fn jobs(
    State(c): State<Console>,
    auth: Auth,
    ApiQuery(s): ApiQuery<JobSearch>,
) -> Result<Json<Vec<JobOut>>, ApiError> {
    let list = match scope(&c, &auth).await? {
        Scope::All => c.store().ooh_jobs(&s.q, 100, None).await?,
        Scope::Person(p) => c.store().ooh_jobs(&s.q, 100, Some(p)).await?,
        Scope::Nobody => Vec::new(),
    };
    let mut a = auth.audit("ooh.job.search", "ooh_job", None);
    a.after = Some(serde_json::json!({
        "q": s.q,
        "references": list.iter().map(|j| j.reference.as_str()).collect::<Vec<_>>(),
    }));
    c.store().audit(&a).await?;
    Ok(Json(list.into_iter().map(JobOut::from).collect()))
}

/// Which jobs a user may see and update: on-call staff only those routed to the person
/// linked to their account (none when it is linked to nobody); the desk and admins all.
enum Scope {
    All,
    Person(i64),
    Nobody,
}

async fn scope(c: &Console, auth: &Auth) -> Result<Scope, ApiError> {
    if auth.role != warden_types::Role::OnCall {
        return Ok(Scope::All);
    }
    Ok(match c.store().person_of_user(auth.user.id).await? {
        Some(p) => Scope::Person(p),
        None => Scope::Nobody,
    })
}

/// Job `reference` if `auth` may see it; one answer (404) for a job that does not exist
/// and one routed to somebody else.
async fn visible_job(c: &Console, auth: &Auth, reference: &str) -> Result<OohJob, ApiError> {
    let found = c.store().ooh_job(reference).await?;
    let allowed = match (&found, scope(c, auth).await?) {
        (Some(_), Scope::All) => true,
        (Some(j), Scope::Person(p)) => j.routed_person == Some(p),
        _ => false,
    };
    match found {
        Some(j) if allowed => Ok(j),
        _ => Err(ApiError::not_found(format!("job {reference}"))),
    }
}

/// An out-of-hours job.
#[utoipa::path(get, path = "/api/v1/ooh/jobs/{reference}", tag = "Out of hours", operation_id = "getOohJob",
    summary = "An out-of-hours job",
    description = "Roles: operator, supervisor, on_call, admin.

On call: only a job routed to the person linked to your account (any other answers 404, as a job that does not exist). Each read is recorded in the audit trail (`ooh.job.view`).",
    params(("reference" = String, Path, description = "The job reference, e.g. OOH-2026-000123.")),
    responses(
        (status = 200, description = "The job.", body = JobOut),
        (status = 401, response = crate::openapi::Unauthorized),
        (status = 403, description = "`forbidden`: your role may not do this (operator, supervisor, on_call, admin only).", body = crate::openapi::ErrorBody),
        (status = 404, description = "`not_found`: no such job.", body = crate::openapi::ErrorBody),
        (status = 503, response = crate::openapi::Unavailable),
    )
)]
pub async fn job(
    State(c): State<Console>,
    auth: Auth,
    ApiPath(reference): ApiPath<String>,
) -> Result<Json<JobOut>, ApiError> {
    let j = visible_job(&c, &auth, &reference).await?;
    c.store()
        .audit(&auth.audit("ooh.job.view", "ooh_job", Some(reference)))
        .await?;
    Ok(Json(JobOut::from(j)))
}

#[derive(Debug, Deserialize, ToSchema)]
#[schema(as = OohStatusRequest)]
pub struct StatusBody {
    /// `acknowledged`, `in_progress` or `closed` (the others are set by routing).
    status: JobStatus,
    #[serde(default)]
    note: String,
}

/// Change a job's status.
#[utoipa::path(post, path = "/api/v1/ooh/jobs/{reference}/status", tag = "Out of hours", operation_id = "setOohJobStatus",
    summary = "Change a job's status",
    description = "Roles: operator, supervisor, on_call, admin.

Adds a status update with an optional note. Any of the three statuses may follow any other (a closed job can be reopened, by the desk only). On call: only a job routed to the person linked to your account (any other answers 404), and never a closed one (403). Audited.",
    params(("reference" = String, Path, description = "The job reference, e.g. OOH-2026-000123.")),
    request_body = StatusBody,
    responses(
        (status = 200, description = "The job after the change.", body = JobOut),
        (status = 400, description = "`invalid_json`; `invalid_value` (status is not acknowledged, in_progress or closed, or the note is longer than 5000 characters).", body = crate::openapi::ErrorBody),
        (status = 401, response = crate::openapi::Unauthorized),
        (status = 403, description = "`forbidden`: your role may not do this (operator, supervisor, on_call, admin only), or the `X-CSRF-Token` header is missing or wrong.", body = crate::openapi::ErrorBody),
        (status = 404, description = "`not_found`: no such job.", body = crate::openapi::ErrorBody),
        (status = 413, response = crate::openapi::TooLarge),
        (status = 415, response = crate::openapi::UnsupportedMediaType),
        (status = 503, response = crate::openapi::Unavailable),
    )
)]
pub async fn set_status(
    State(c): State<Console>,
    auth: Auth,
    ApiPath(reference): ApiPath<String>,
    ApiJson(b): ApiJson<StatusBody>,
) -> Result<Json<JobOut>, ApiError> {
    if !b.status.is_settable() {
        return Err(ApiError::bad_request(
            "invalid_value",
            "status must be acknowledged, in_progress or closed",
        ));
    }
    crate::text::check("note", &b.note, 5000)?;
    let current = visible_job(&c, &auth, &reference).await?;
    if auth.role == warden_types::Role::OnCall && current.status == JobStatus::Closed {
        return Err(ApiError::forbidden(
            "a closed job is reopened by the desk (operator or supervisor), not on call",
        ));
    }
    let audit = auth.audit("ooh.job.status", "ooh_job", None);
    if !c
        .store()
        .ooh_set_status(
            &reference,
            b.status,
            b.note.trim(),
            auth.user.id,
            audit,
            warden_notify::message::caller_update,
        )
        .await?
    {
        return Err(ApiError::not_found(format!("job {reference}")));
    }
    Ok(Json(JobOut::from(
        visible_job(&c, &auth, &reference).await?,
    )))
}
