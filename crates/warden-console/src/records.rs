//! Client records, devices and the audit trail (console accounts: `accounts`). Every view of a client record and
//! every change is written to the audit trail with who, when, before and after.

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use utoipa::{IntoParams, ToSchema};
use warden_core::Input;
use warden_store::{ClientRecord, Device, KeySafeReveal, NewDevice, Responder, Store};
use warden_telemetry as m;

use crate::Console;
use crate::auth::{Auth, Role};
use crate::error::{ApiError, ApiJson, ApiPath, ApiQuery};

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct Search {
    /// Text to look for (all when empty).
    #[serde(default)]
    q: String,
    /// At most this many (1-1000, default 100).
    #[serde(default)]
    limit: Option<i64>,
}

/// A client in a search result.
#[derive(Debug, Serialize, ToSchema)]
pub struct ClientSummary {
    pub id: i64,
    pub external_ref: String,
    pub name: String,
    pub address: String,
    pub postcode: String,
    pub area: Option<String>,
}

/// The answer for a client record asked for while the database is unavailable and not
/// cached (only the clients of open alarms are).
fn not_cached() -> ApiError {
    ApiError::new(
        StatusCode::SERVICE_UNAVAILABLE,
        "database_unavailable",
        "the database is unavailable (degraded mode) and this client's record is not cached: \
         only the clients of alarms open in the queue are",
    )
}

/// A client record with its responders, devices and recent signals.
#[derive(Debug, Clone, Serialize, ToSchema)]
#[schema(as = Client)]
pub struct ClientDoc {
    #[serde(flatten)]
    pub record: ClientRecord,
    /// In call order.
    pub responders: Vec<Responder>,
    pub devices: Vec<Device>,
    /// The client's last 20 signals, newest first, each with a `summary` for people.
    #[schema(value_type = Vec<Object>)]
    pub recent_signals: Value,
}

/// A revealed key-safe code (`null`: none on file).
#[derive(Debug, Serialize, ToSchema)]
pub struct KeySafe {
    pub key_safe: Option<String>,
}

fn limit(l: Option<i64>) -> i64 {
    l.unwrap_or(100).clamp(1, 1000)
}

/// Search clients.
#[utoipa::path(get, path = "/api/v1/clients", tag = "Clients", operation_id = "searchClients",
    summary = "Search clients",
    description = "Roles: operator, supervisor, admin.

Matches name, address, postcode, external_ref or phone (case-insensitive substring); all clients when `q` is empty. Ordered by name. Each search is written to the audit trail with the ids it returned (`client.search`).",
    params(Search),
    responses(
        (status = 200, description = "Matching clients.", body = Vec<ClientSummary>),
        (status = 400, description = "`invalid_query`: `limit` is not an integer.", body = crate::openapi::ErrorBody),
        (status = 401, response = crate::openapi::Unauthorized),
        (status = 403, description = "`forbidden`: your role may not do this (operator, supervisor, admin only).", body = crate::openapi::ErrorBody),
        (status = 503, response = crate::openapi::Unavailable),
    )
)]
pub async fn clients(
    State(c): State<Console>,
    auth: Auth,
    ApiQuery(s): ApiQuery<Search>,
) -> Result<Json<Vec<ClientSummary>>, ApiError> {
    let list = c.store().client_search(&s.q, limit(s.limit)).await?;
    // Who saw which names and addresses: the search and the clients it returned.
    let mut a = auth.audit("client.search", "client", None);
    a.after = Some(serde_json::json!({
        "q": s.q,
        "ids": list.iter().map(|r| r.id).collect::<Vec<_>>(),
    }));
    c.store().audit(&a).await?;
    Ok(Json(
        list.into_iter()
            .map(|r| ClientSummary {
                id: r.id,
                external_ref: r.external_ref,
                name: r.name,
                address: r.address,
                postcode: r.postcode,
                area: r.area,
            })
            .collect(),
    ))
}

pub(crate) async fn client_doc(store: &Store, id: i64) -> Result<ClientDoc, ApiError> {
    let Some(rec) = store.client(id).await? else {
        return Err(ApiError::not_found(format!("client {id}")));
    };
    let responders = store.responders(id).await?;
    let devices = store.client_devices(&rec.external_ref).await?;
    let signals = store
        .recent_signals(Some(&rec.external_ref), None, 20)
        .await?;
    Ok(ClientDoc {
        record: rec,
        responders,
        devices,
        recent_signals: crate::view::signals_json(&signals),
    })
}

/// A client record.
#[utoipa::path(get, path = "/api/v1/clients/{id}", tag = "Clients", operation_id = "getClient",
    summary = "A client record",
    description = "Roles: operator, supervisor, admin.

The record holds health data, so every view is written to the audit trail (`client.view`).",
    params(("id" = i64, Path, description = "The numeric id.")),
    responses(
        (status = 200, description = "The client.", body = ClientDoc),
        (status = 400, description = "`invalid_path`: `id` is not an integer.", body = crate::openapi::ErrorBody),
        (status = 401, response = crate::openapi::Unauthorized),
        (status = 403, description = "`forbidden`: your role may not do this (operator, supervisor, admin only).", body = crate::openapi::ErrorBody),
        (status = 404, description = "`not_found`: no such client.", body = crate::openapi::ErrorBody),
        (status = 503, response = crate::openapi::Unavailable),
    )
)]
pub async fn client(
    State(c): State<Console>,
    auth: Auth,
    ApiPath(id): ApiPath<i64>,
) -> Result<Json<ClientDoc>, ApiError> {
    let audit = auth.audit("client.view", "client", Some(id.to_string()));
    let doc = if c.mirror().degraded_since().is_some() {
        // The database is unavailable: the record as cached for an open alarm, the view
        // audited once it is back (with its time).
        c.mirror().client(id).ok_or_else(not_cached)?.0
    } else {
        client_doc(c.store(), id).await?
    };
    c.audit_read(audit).await?;
    Ok(Json(doc))
}

/// Why a supervisor reveals a code without holding an incident for the client.
#[derive(Debug, Default, Deserialize, ToSchema)]
#[schema(as = KeySafeRevealRequest)]
pub struct RevealBody {
    /// Needed only for a supervisor's or admin's override (1-500 characters); recorded.
    #[serde(default)]
    reason: Option<String>,
}

/// Reveal a client's key-safe code.
#[utoipa::path(post, path = "/api/v1/clients/{id}/key-safe/reveal", tag = "Clients", operation_id = "revealKeySafe",
    summary = "Reveal a client's key-safe code",
    description = "Roles: operator, supervisor, admin.

Only for a client with an open incident that you hold (claimed by you). A supervisor or admin without one may override by giving a `reason`, recorded with the reveal. Each user may be shown at most `key_safe_reveals_per_hour` codes in any hour (10 by default; counted from the audit trail, so a restart does not reset it). Every reveal, and every refused one, is written to the audit trail (`client.key_safe.reveal`, `client.key_safe.reveal.refused`) and counted (`warden_console_key_safe_reveals_total{outcome}`; an alert fires on bursts of refusals and overrides). The body is optional.",
    params(("id" = i64, Path, description = "The numeric id.")),
    request_body(content = RevealBody, description = "Optional; `reason` for an override."),
    responses(
        (status = 200, description = "The code (null when none is on file).", body = KeySafe),
        (status = 400, description = "`invalid_path`: `id` is not an integer; `invalid_json`; `invalid_value`: the reason is blank, too long or has control characters.", body = crate::openapi::ErrorBody),
        (status = 401, response = crate::openapi::Unauthorized),
        (status = 403, description = "`no_open_incident`: you hold no open incident for this client (a supervisor or admin may give a reason); `forbidden`: your role may not do this, or the `X-CSRF-Token` header is missing or wrong.", body = crate::openapi::ErrorBody),
        (status = 404, description = "`not_found`: no such client.", body = crate::openapi::ErrorBody),
        (status = 429, description = "`rate_limited`: you have been shown the most key-safe codes allowed in an hour.", body = crate::openapi::ErrorBody),
        (status = 503, response = crate::openapi::Unavailable),
    )
)]
pub async fn reveal_key_safe(
    State(c): State<Console>,
    auth: Auth,
    ApiPath(id): ApiPath<i64>,
    body: axum::body::Bytes,
) -> Result<Json<KeySafe>, ApiError> {
    let body: RevealBody = if body.iter().all(u8::is_ascii_whitespace) {
        RevealBody::default()
    } else {
        serde_json::from_slice(&body).map_err(|e| {
            ApiError::bad_request("invalid_json", format!("the body is not valid JSON: {e}"))
        })?
    };
    let reason = body
        .reason
        .map(|r| r.trim().to_owned())
        .filter(|r| !r.is_empty());
    if let Some(r) = &reason {
        crate::text::check("reason", r, 500)?;
    }
    let degraded = c.mirror().degraded_since().is_some();
    let held = if degraded {
        c.mirror().held_incident(id, auth.user.id)
    } else {
        c.store().incident_held_for_client(id, auth.user.id).await?
    };
    let count = |outcome: &'static str| {
        metrics::counter!(m::CONSOLE_KEY_SAFE_REVEALS, "outcome" => outcome).increment(1);
    };
    let refuse = async |why: &'static str, err: ApiError| -> Result<Json<KeySafe>, ApiError> {
        count(why);
        let mut a = auth.audit(
            "client.key_safe.reveal.refused",
            "client",
            Some(id.to_string()),
        );
        a.after = Some(serde_json::json!({ "reason": why }));
        c.audit_read(a).await?;
        tracing::warn!(
            user = auth.user.id,
            client = id,
            why,
            "key-safe reveal refused"
        );
        Err(err)
    };
    let outcome = match (held, &reason) {
        (Some(_), _) => "held",
        (None, Some(_)) if auth.role != Role::Operator => "override",
        (None, _) => {
            let message = if auth.role == Role::Operator {
                "you can see a key-safe code only while you hold an open incident for this client"
            } else {
                "you hold no open incident for this client: give a reason to override (it is recorded)"
            };
            return refuse(
                "refused",
                ApiError::new(StatusCode::FORBIDDEN, "no_open_incident", message),
            )
            .await;
        }
    };
    let limited = || {
        ApiError::new(
            StatusCode::TOO_MANY_REQUESTS,
            "rate_limited",
            "you have been shown the most key-safe codes allowed in an hour; ask a supervisor",
        )
    };
    let per_hour = c.cfg().key_safe_reveals_per_hour;
    let mut audit = auth.audit("client.key_safe.reveal", "client", Some(id.to_string()));
    audit.after = Some(serde_json::json!({
        "incident": held,
        "override": outcome == "override",
        "reason": reason,
    }));
    let code = if degraded {
        // The audit trail cannot be counted while the database is away: this process's own
        // count stands in until it is back.
        if !c
            .reveals()
            .allow(auth.user.id, per_hour, std::time::Instant::now())
        {
            return refuse("rate_limited", limited()).await;
        }
        let (_, key_safe) = c.mirror().client(id).ok_or_else(not_cached)?;
        c.mirror().defer_audit(audit);
        key_safe
    } else {
        match c.store().reveal_key_safe(id, audit, per_hour).await? {
            KeySafeReveal::Shown(code) => code,
            KeySafeReveal::NoClient => return Err(ApiError::not_found(format!("client {id}"))),
            KeySafeReveal::OverLimit => return refuse("rate_limited", limited()).await,
        }
    };
    count(outcome);
    Ok(Json(KeySafe { key_safe: code }))
}

/// A client record as written by the API: the record, its responders in call order and an
/// optional new key-safe code (write-only).
#[derive(Debug, Deserialize, ToSchema)]
#[schema(as = ClientInput)]
pub struct ClientBody {
    #[serde(flatten)]
    record: ClientRecord,
    /// Absent: keep the responders on file (an update) or none (a new record).
    #[serde(default)]
    responders: Option<Vec<Responder>>,
    #[serde(default)]
    key_safe: Option<String>,
}

pub fn check_client(r: &ClientRecord) -> Result<(), ApiError> {
    use crate::text::{check, check_opt};
    check("external_ref", &r.external_ref, 64)?;
    check("name", &r.name, 200)?;
    check_opt("date_of_birth", r.date_of_birth.as_deref(), 10)?;
    check("address", &r.address, 500)?;
    check("postcode", &r.postcode, 32)?;
    check("phone", &r.phone, 50)?;
    check_opt("area", r.area.as_deref(), 100)?;
    check("language", &r.language, 100)?;
    check("communication_needs", &r.communication_needs, 4000)?;
    check("preferred_contact", &r.preferred_contact, 32)?;
    check("access_notes", &r.access_notes, 4000)?;
    check("medical_notes", &r.medical_notes, 10_000)?;
    if r.external_ref.trim().is_empty() || r.external_ref.len() > 64 {
        return Err(ApiError::bad_request(
            "invalid_value",
            "external_ref must be 1-64 characters",
        ));
    }
    if r.name.trim().is_empty() || r.name.len() > 200 {
        return Err(ApiError::bad_request(
            "invalid_value",
            "name must be 1-200 characters",
        ));
    }
    if !["phone", "sms", "email", "text_relay", "letter", "visit"]
        .contains(&r.preferred_contact.as_str())
    {
        return Err(ApiError::bad_request(
            "invalid_value",
            "preferred_contact must be one of phone, sms, email, text_relay, letter, visit",
        ));
    }
    if let Some(d) = r.date_of_birth.as_deref().filter(|d| !d.is_empty()) {
        let fmt = time::macros::format_description!("[year]-[month]-[day]");
        time::Date::parse(d, &fmt).map_err(|_| {
            ApiError::bad_request(
                "invalid_value",
                format!("date_of_birth {d:?} is not YYYY-MM-DD"),
            )
        })?;
    }
    Ok(())
}

/// A responder's fields (messages name the field with a `responders.` prefix).
fn check_responder(r: &Responder) -> Result<(), ApiError> {
    use crate::text::check;
    check("responders.name", &r.name, 200)?;
    check("responders.relationship", &r.relationship, 100)?;
    check("responders.phone", &r.phone, 50)?;
    check("responders.notes", &r.notes, 4000)
}

async fn save_client(
    c: &Console,
    auth: &Auth,
    id: Option<i64>,
    body: ClientBody,
) -> Result<Json<ClientDoc>, ApiError> {
    check_client(&body.record)?;
    crate::text::check_opt("key_safe", body.key_safe.as_deref(), 64)?;
    for r in body.responders.iter().flatten() {
        check_responder(r)?;
    }
    if body
        .responders
        .iter()
        .flatten()
        .any(|r| r.name.trim().is_empty())
    {
        return Err(ApiError::bad_request(
            "invalid_value",
            "every responder needs a name",
        ));
    }
    let action = if id.is_some() {
        "client.update"
    } else {
        "client.create"
    };
    let saved = c
        .store()
        .save_client(
            id,
            &body.record,
            body.key_safe.as_deref(),
            body.responders.as_deref(),
            auth.audit(action, "client", None),
        )
        .await?;
    // Area and client may have changed for the client's devices: tell triage.
    register_devices(c, |d| {
        d.client_ref.as_deref() == Some(saved.external_ref.as_str())
    })
    .await;
    Ok(Json(client_doc(c.store(), saved.id).await?))
}

/// Create a client.
#[utoipa::path(post, path = "/api/v1/clients", tag = "Clients", operation_id = "createClient",
    summary = "Create a client",
    description = "Roles: supervisor, admin.

Creates the record and its responders; audited with the record after.",
    request_body = ClientBody,
    responses(
        (status = 201, description = "The new client.", body = ClientDoc),
        (status = 400, description = "`invalid_json`; `control_character` (a field holds a control character other than tab or a line break, e.g. NUL); `invalid_value` (external_ref, name, preferred_contact, date_of_birth or a responder's name is invalid, or the database refused a value); `missing_reference`.", body = crate::openapi::ErrorBody),
        (status = 401, response = crate::openapi::Unauthorized),
        (status = 403, description = "`forbidden`: your role may not do this (supervisor, admin only), or the `X-CSRF-Token` header is missing or wrong.", body = crate::openapi::ErrorBody),
        (status = 409, description = "`already_exists`: a client with this external_ref exists.", body = crate::openapi::ErrorBody),
        (status = 413, response = crate::openapi::TooLarge),
        (status = 415, response = crate::openapi::UnsupportedMediaType),
        (status = 503, response = crate::openapi::Unavailable),
    )
)]
pub async fn create_client(
    State(c): State<Console>,
    auth: Auth,
    ApiJson(body): ApiJson<ClientBody>,
) -> Result<(StatusCode, Json<ClientDoc>), ApiError> {
    Ok((
        StatusCode::CREATED,
        save_client(&c, &auth, None, body).await?,
    ))
}

/// Replace a client record.
#[utoipa::path(put, path = "/api/v1/clients/{id}", tag = "Clients", operation_id = "updateClient",
    summary = "Replace a client record",
    description = "Roles: supervisor, admin.

Replaces the record and all its responders (omitted `responders` removes them); `key_safe` omitted or null keeps the code. Audited with before and after. An unknown id is answered 400 `missing_reference`, not 404.",
    params(("id" = i64, Path, description = "The numeric id.")),
    request_body = ClientBody,
    responses(
        (status = 200, description = "The client as saved.", body = ClientDoc),
        (status = 400, description = "`invalid_json`; `control_character` (a field holds a control character other than tab or a line break, e.g. NUL); `invalid_value` (external_ref, name, preferred_contact, date_of_birth or a responder's name is invalid, or the database refused a value); `missing_reference` (no client with this id). `invalid_path`: `id` is not an integer.", body = crate::openapi::ErrorBody),
        (status = 401, response = crate::openapi::Unauthorized),
        (status = 403, description = "`forbidden`: your role may not do this (supervisor, admin only), or the `X-CSRF-Token` header is missing or wrong.", body = crate::openapi::ErrorBody),
        (status = 409, description = "`already_exists`: another client has this external_ref.", body = crate::openapi::ErrorBody),
        (status = 413, response = crate::openapi::TooLarge),
        (status = 415, response = crate::openapi::UnsupportedMediaType),
        (status = 503, response = crate::openapi::Unavailable),
    )
)]
pub async fn update_client(
    State(c): State<Console>,
    auth: Auth,
    ApiPath(id): ApiPath<i64>,
    ApiJson(body): ApiJson<ClientBody>,
) -> Result<Json<ClientDoc>, ApiError> {
    save_client(&c, &auth, Some(id), body).await
}

// ---- devices ------------------------------------------------------------------------

/// List devices.
#[utoipa::path(get, path = "/api/v1/devices", tag = "Devices", operation_id = "listDevices",
    summary = "List devices",
    description = "Roles: supervisor, admin.

Matches account, label or client_ref (case-insensitive substring); all devices when `q` is empty. Ordered by id.",
    params(Search),
    responses(
        (status = 200, description = "Matching devices, each with when it was last heard and its link state.", body = Vec<DeviceListed>),
        (status = 400, description = "`invalid_query`: `limit` is not an integer.", body = crate::openapi::ErrorBody),
        (status = 401, response = crate::openapi::Unauthorized),
        (status = 403, description = "`forbidden`: your role may not do this (supervisor, admin only).", body = crate::openapi::ErrorBody),
        (status = 503, response = crate::openapi::Unavailable),
    )
)]
pub async fn devices(
    State(c): State<Console>,
    _auth: Auth,
    ApiQuery(s): ApiQuery<Search>,
) -> Result<Json<Vec<DeviceListed>>, ApiError> {
    let devices = c.store().device_records(&s.q, limit(s.limit)).await?;
    let ids: Vec<i64> = devices.iter().map(|d| d.id).collect();
    let states = c.store().device_link_states(&ids).await?;
    Ok(Json(
        devices
            .into_iter()
            .map(|device| {
                let (last_heard_at, silent) = states.get(&device.id).copied().unwrap_or_default();
                let link = match (silent, last_heard_at) {
                    (true, _) => LinkState::Silent,
                    (false, Some(_)) => LinkState::Heard,
                    (false, None) => LinkState::Never,
                };
                DeviceListed {
                    device,
                    last_heard_at,
                    link,
                }
            })
            .collect(),
    ))
}

/// A device in the list, with what Warden last heard of it.
#[derive(Debug, Serialize, ToSchema)]
pub struct DeviceListed {
    #[serde(flatten)]
    pub device: Device,
    /// When its latest signal arrived; null: never.
    #[serde(with = "time::serde::rfc3339::option")]
    #[schema(value_type = Option<String>, format = DateTime)]
    pub last_heard_at: Option<time::OffsetDateTime>,
    pub link: LinkState,
}

/// A device's link as triage sees it.
#[derive(Debug, Clone, Copy, Serialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum LinkState {
    /// Heard, and not overdue.
    Heard,
    /// A fail-to-report incident is open: its test interval passed without a word.
    Silent,
    /// Nothing from it has ever been stored.
    Never,
}

pub fn check_device(d: &NewDevice) -> Result<(), ApiError> {
    use crate::text::{check, check_opt};
    check("account", &d.account, 64)?;
    check_opt("label", d.label.as_deref(), 200)?;
    check_opt("device_type", d.device_type.as_deref(), 100)?;
    check_opt("client_ref", d.client_ref.as_deref(), 64)?;
    check_opt("area", d.area.as_deref(), 100)?;
    if d.account.trim().is_empty() || d.account.len() > 64 {
        return Err(ApiError::bad_request(
            "invalid_value",
            "account must be 1-64 characters",
        ));
    }
    if d.test_interval_seconds.is_some_and(|s| s <= 0) {
        return Err(ApiError::bad_request(
            "invalid_value",
            "test_interval_seconds must be positive",
        ));
    }
    Ok(())
}

/// Re-registers the devices `pick` selects with the triage core after their records
/// changed, so supervision intervals, areas and client links apply at once. A failure only
/// delays that until the next restart, so it is logged, not returned.
pub async fn register_devices(c: &Console, pick: impl Fn(&Device) -> bool) {
    let all = match c.store().device_records_for_triage().await {
        Ok(all) => all,
        Err(e) => {
            tracing::warn!(error = %e, "cannot re-read devices for triage");
            return;
        }
    };
    for t in all.iter().filter(|t| pick(&t.device)) {
        let info = warden_engine::device_info(t);
        if c.engine()
            .command(Input::RegisterDevice(info))
            .await
            .is_err()
        {
            tracing::warn!("triage engine stopped; device changes apply at the next start");
            return;
        }
    }
}

/// Create a device.
#[utoipa::path(post, path = "/api/v1/devices", tag = "Devices", operation_id = "createDevice",
    summary = "Create a device",
    description = "Roles: admin.

Audited; the triage engine is told at once.",
    request_body = NewDevice,
    responses(
        (status = 201, description = "The new device.", body = Device),
        (status = 400, description = "`invalid_json`; `invalid_value` (account, protocol or test_interval_seconds is invalid, or the database refused a value).", body = crate::openapi::ErrorBody),
        (status = 401, response = crate::openapi::Unauthorized),
        (status = 403, description = "`forbidden`: your role may not do this (admin only), or the `X-CSRF-Token` header is missing or wrong.", body = crate::openapi::ErrorBody),
        (status = 409, description = "`already_exists`: a device with this account exists.", body = crate::openapi::ErrorBody),
        (status = 413, response = crate::openapi::TooLarge),
        (status = 415, response = crate::openapi::UnsupportedMediaType),
        (status = 503, response = crate::openapi::Unavailable),
    )
)]
pub async fn create_device(
    State(c): State<Console>,
    auth: Auth,
    ApiJson(d): ApiJson<NewDevice>,
) -> Result<(StatusCode, Json<Device>), ApiError> {
    check_device(&d)?;
    let saved = c
        .store()
        .save_device(None, &d, auth.audit("device.create", "device", None))
        .await?;
    register_devices(&c, |d| d.id == saved.id).await;
    Ok((StatusCode::CREATED, Json(saved)))
}

/// Replace a device.
#[utoipa::path(put, path = "/api/v1/devices/{id}", tag = "Devices", operation_id = "updateDevice",
    summary = "Replace a device",
    description = "Roles: admin.

Audited with before and after; the triage engine is told at once. An unknown id is answered 400 `missing_reference`, not 404.",
    params(("id" = i64, Path, description = "The numeric id.")),
    request_body = NewDevice,
    responses(
        (status = 200, description = "The device as saved.", body = Device),
        (status = 400, description = "`invalid_json`; `invalid_value` (account, protocol or test_interval_seconds is invalid, or the database refused a value). `missing_reference`: no device with this id. `invalid_path`: `id` is not an integer.", body = crate::openapi::ErrorBody),
        (status = 401, response = crate::openapi::Unauthorized),
        (status = 403, description = "`forbidden`: your role may not do this (admin only), or the `X-CSRF-Token` header is missing or wrong.", body = crate::openapi::ErrorBody),
        (status = 409, description = "`already_exists`: another device has this account.", body = crate::openapi::ErrorBody),
        (status = 413, response = crate::openapi::TooLarge),
        (status = 415, response = crate::openapi::UnsupportedMediaType),
        (status = 503, response = crate::openapi::Unavailable),
    )
)]
pub async fn update_device(
    State(c): State<Console>,
    auth: Auth,
    ApiPath(id): ApiPath<i64>,
    ApiJson(d): ApiJson<NewDevice>,
) -> Result<Json<Device>, ApiError> {
    check_device(&d)?;
    let saved = c
        .store()
        .save_device(Some(id), &d, auth.audit("device.update", "device", None))
        .await?;
    register_devices(&c, |d| d.id == saved.id).await;
    Ok(Json(saved))
}

/// A DC-09 transmitter's AES key, as the console sends it.
#[derive(Debug, Deserialize, ToSchema)]
#[schema(as = Dc09KeyInput)]
pub struct Dc09KeyBody {
    /// 32, 48 or 64 hex digits, or 16, 24 or 32 ASCII characters (`hex:` or `ascii:` in
    /// front to say which); `null` removes the key (the transmitter may then report plain).
    key: Option<String>,
}

/// Set a DC-09 transmitter's key.
#[utoipa::path(put, path = "/api/v1/devices/{id}/dc09-key", tag = "Devices", operation_id = "setDc09Key",
    summary = "Set or remove a DC-09 transmitter's AES key",
    description = "Roles: admin.

A device with a key must send encrypted messages; the key is never shown again (no API returns it) nor logged. Audited without the key (its size only).",
    params(("id" = i64, Path, description = "The device's numeric id.")),
    request_body = Dc09KeyBody,
    responses(
        (status = 204, description = "Saved."),
        (status = 400, description = "`invalid_json`; `invalid_value` (not a key, or the device is not a dc09 transmitter); `invalid_path`.", body = crate::openapi::ErrorBody),
        (status = 401, response = crate::openapi::Unauthorized),
        (status = 403, description = "`forbidden`: your role may not do this (admin only), or the `X-CSRF-Token` header is missing or wrong.", body = crate::openapi::ErrorBody),
        (status = 404, description = "`not_found`: no such device.", body = crate::openapi::ErrorBody),
        (status = 503, response = crate::openapi::Unavailable),
    )
)]
pub async fn set_dc09_key(
    State(c): State<Console>,
    auth: Auth,
    ApiPath(id): ApiPath<i64>,
    ApiJson(b): ApiJson<Dc09KeyBody>,
) -> Result<StatusCode, ApiError> {
    let (account, protocol) = c
        .store()
        .device_account(id)
        .await?
        .ok_or_else(|| ApiError::not_found(format!("device {id}")))?;
    if protocol != warden_types::DeviceProtocol::Dc09.as_str() {
        return Err(ApiError::bad_request(
            "invalid_value",
            format!("device {id} is {protocol}, not a dc09 transmitter"),
        ));
    }
    let key = b
        .key
        .as_deref()
        .map(warden_protocol::dc09::Dc09Key::parse)
        .transpose()
        .map_err(|e| ApiError::bad_request("invalid_value", format!("key: {e}")))?;
    c.store()
        .set_dc09_key(
            &account,
            key.as_ref()
                .map(warden_protocol::dc09::Dc09Key::to_hex)
                .as_deref(),
        )
        .await?;
    let mut audit = auth.audit("device.dc09_key", "device", Some(id.to_string()));
    audit.after = Some(
        serde_json::json!({ "key_bits": key.as_ref().map(warden_protocol::dc09::Dc09Key::bits) }),
    );
    c.store().audit(&audit).await?;
    Ok(StatusCode::NO_CONTENT)
}

// ---- audit --------------------------------------------------------------------------

/// One line of the audit trail, with who did it.
#[derive(Debug, Serialize, ToSchema)]
pub struct AuditEntry {
    #[serde(flatten)]
    pub row: warden_store::AuditRow,
    /// The user, `null` for the system.
    pub user: Option<UserRef>,
}

/// A user named in a record.
#[derive(Debug, Serialize, ToSchema)]
pub struct UserRef {
    pub id: i64,
    pub name: Option<String>,
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct AuditQuery {
    object_type: Option<String>,
    object_id: Option<String>,
    user_id: Option<i64>,
    limit: Option<i64>,
}

/// Read the audit trail.
#[utoipa::path(get, path = "/api/v1/audit", tag = "Audit", operation_id = "listAudit",
    summary = "Read the audit trail",
    description = "Roles: supervisor, admin.

Newest first. Empty filter values are ignored. The trail quotes records, so each read of it is itself recorded (`audit.read`, with its filters and how many lines it returned). Each line carries the request id Warden gave the request and the client's address.",
    params(AuditQuery),
    responses(
        (status = 200, description = "Audit lines.", body = Vec<AuditEntry>),
        (status = 400, description = "`invalid_query`: `user_id` or `limit` is not an integer.", body = crate::openapi::ErrorBody),
        (status = 401, response = crate::openapi::Unauthorized),
        (status = 403, description = "`forbidden`: your role may not do this (supervisor, admin only).", body = crate::openapi::ErrorBody),
        (status = 503, response = crate::openapi::Unavailable),
    )
)]
pub async fn audit(
    State(c): State<Console>,
    auth: Auth,
    ApiQuery(q): ApiQuery<AuditQuery>,
) -> Result<Json<Vec<AuditEntry>>, ApiError> {
    let rows = c
        .store()
        .audit_list(
            q.object_type.as_deref().filter(|s| !s.is_empty()),
            q.object_id.as_deref().filter(|s| !s.is_empty()),
            q.user_id,
            limit(q.limit),
        )
        .await?;
    // The trail quotes records (medical notes among them): reading it is recorded too.
    let mut a = auth.audit("audit.read", "audit", None);
    a.after = Some(serde_json::json!({
        "object_type": q.object_type,
        "object_id": q.object_id,
        "user_id": q.user_id,
        "rows": rows.len(),
    }));
    c.store().audit(&a).await?;
    Ok(Json(
        rows.into_iter()
            .map(|r| AuditEntry {
                user: r.user_id.map(|id| UserRef {
                    id,
                    name: r.user_name.clone(),
                }),
                row: r,
            })
            .collect(),
    ))
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct AccessQuery {
    /// One client (all when absent).
    client_id: Option<i64>,
    /// How many days back (1-400, default 30).
    days: Option<i64>,
    /// At most this many lines (1-1000, default 100).
    limit: Option<i64>,
}

/// Who viewed which client.
#[utoipa::path(get, path = "/api/v1/reports/client-access", tag = "Audit", operation_id = "clientAccessReport",
    summary = "Who viewed which client",
    description = "Roles: supervisor, admin.

Every view of a client record, every key-safe reveal and every search whose results listed the client, with who, when, from which address and the request id; newest first. Reading the report is itself recorded (`report.client_access`).",
    params(AccessQuery),
    responses(
        (status = 200, description = "The accesses.", body = Vec<warden_store::ClientAccess>),
        (status = 400, description = "`invalid_query`: a value is not an integer.", body = crate::openapi::ErrorBody),
        (status = 401, response = crate::openapi::Unauthorized),
        (status = 403, description = "`forbidden`: your role may not do this (supervisor, admin only).", body = crate::openapi::ErrorBody),
        (status = 503, response = crate::openapi::Unavailable),
    )
)]
pub async fn client_access(
    State(c): State<Console>,
    auth: Auth,
    ApiQuery(q): ApiQuery<AccessQuery>,
) -> Result<Json<Vec<warden_store::ClientAccess>>, ApiError> {
    let days = q.days.unwrap_or(30).clamp(1, 400);
    let since = time::OffsetDateTime::now_utc() - time::Duration::days(days);
    let rows = c
        .store()
        .client_access(q.client_id, since, limit(q.limit))
        .await?;
    let mut a = auth.audit(
        "report.client_access",
        "client",
        q.client_id.map(|id| id.to_string()),
    );
    a.after = Some(serde_json::json!({ "days": days, "rows": rows.len() }));
    c.store().audit(&a).await?;
    Ok(Json(rows))
}
