//! What Warden refused: the quarantined inputs, for supervisors and administrators. Each
//! read is audited (the rows hold whatever a link sent, which may be personal data).

use axum::Json;
use axum::extract::State;
use serde::{Deserialize, Serialize};
use serde_json::json;
use time::OffsetDateTime;
use utoipa::{IntoParams, ToSchema};
use warden_store::RejectedQuery;
use warden_store::{RejectedCount, RejectedRow};

use crate::Console;
use crate::auth::Auth;
use crate::error::{ApiError, ApiQuery};

/// The window when `?hours=` is not given.
pub const DEFAULT_HOURS: i64 = 24;
/// The widest window (30 days).
pub const MAX_HOURS: i64 = 720;
/// Rows per page when `?limit=` is not given.
pub const DEFAULT_LIMIT: i64 = 50;
/// The most rows per page.
pub const MAX_LIMIT: i64 = 200;

/// The query string of `GET /api/v1/rejected`. Numbers are read as text so a bad one is
/// named in the error rather than refused by the parser in its own words.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct RejectedParams {
    /// The window in hours back from now (1-720, default 24).
    hours: Option<String>,
    /// At most this many rows (1-200, default 50).
    limit: Option<String>,
    /// The `next_before` of the previous page.
    before: Option<String>,
    /// Only rows of this reason code (the counts are never filtered).
    reason: Option<String>,
}

/// A page of what Warden refused.
#[derive(Debug, Serialize, ToSchema)]
#[schema(as = RejectedPage)]
pub struct RejectedResponse {
    pub window: Window,
    /// The reason code the rows were filtered by, if any.
    pub reason: Option<String>,
    /// Everything refused in the window.
    pub total: i64,
    /// By reason and source, largest first.
    pub counts: Vec<RejectedCount>,
    /// The most recent rows, newest first.
    pub rejected: Vec<RejectedRow>,
    /// The cursor of the next (older) page, `null` on the last.
    pub next_before: Option<uuid::Uuid>,
}

/// The time window read.
#[derive(Debug, Serialize, ToSchema)]
pub struct Window {
    pub hours: i64,
    /// RFC 3339.
    pub since: String,
    /// RFC 3339.
    pub until: String,
}

fn number(name: &str, v: Option<&str>, default: i64, max: i64) -> Result<i64, ApiError> {
    let Some(v) = v.map(str::trim).filter(|v| !v.is_empty()) else {
        return Ok(default);
    };
    match v.parse::<i64>() {
        Ok(n) if (1..=max).contains(&n) => Ok(n),
        _ => Err(ApiError::bad_request(
            "invalid_query",
            format!("{name} must be a whole number from 1 to {max}"),
        )),
    }
}

/// Read what Warden refused (quarantined inputs).
#[utoipa::path(get, path = "/api/v1/rejected", tag = "Audit", operation_id = "listRejected",
    summary = "Read what Warden refused (quarantined inputs)",
    description = "Roles: supervisor, admin.

Counts of refused inputs by reason and source over the window, and the most recent of them within it (newest first), each with its raw bytes as hex and as printable text. Each read is written to the audit trail (`rejected.view`).",
    params(RejectedParams),
    responses(
        (status = 200, description = "The counts and a page of rows.", body = RejectedResponse),
        (status = 400, description = "`invalid_query`: `hours` or `limit` out of range or not a number, `reason` not a reason code, `before` not a uuid or naming no rejected signal.", body = crate::openapi::ErrorBody),
        (status = 401, response = crate::openapi::Unauthorized),
        (status = 403, description = "`forbidden`: your role may not do this (supervisor, admin only).", body = crate::openapi::ErrorBody),
        (status = 503, response = crate::openapi::Unavailable),
    )
)]
pub async fn rejected(
    State(c): State<Console>,
    auth: Auth,
    ApiQuery(p): ApiQuery<RejectedParams>,
) -> Result<Json<RejectedResponse>, ApiError> {
    let hours = number("hours", p.hours.as_deref(), DEFAULT_HOURS, MAX_HOURS)?;
    let limit = number("limit", p.limit.as_deref(), DEFAULT_LIMIT, MAX_LIMIT)?;
    let before = match p.before.as_deref().map(str::trim).filter(|b| !b.is_empty()) {
        None => None,
        Some(b) => Some(uuid::Uuid::parse_str(b).map_err(|_| {
            ApiError::bad_request(
                "invalid_query",
                "before must be the id of a rejected signal (the next_before of a page)",
            )
        })?),
    };
    // Reason codes are 1-32 characters of a-z, 0-9 and _ (see the quarantine table).
    let reason = match p.reason.as_deref().map(str::trim).filter(|r| !r.is_empty()) {
        None => None,
        Some(r)
            if r.len() <= 32
                && r.bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_') =>
        {
            Some(r.to_owned())
        }
        Some(_) => {
            return Err(ApiError::bad_request(
                "invalid_query",
                "reason must be a reason code: 1-32 characters of a-z, 0-9 and _",
            ));
        }
    };
    let until = OffsetDateTime::now_utc();
    let since = until - time::Duration::hours(hours);
    let q = RejectedQuery {
        since,
        reason_code: reason.clone(),
        before,
        limit,
    };
    let Some(page) = c.store().rejected(&q).await? else {
        return Err(ApiError::bad_request(
            "invalid_query",
            "before names no rejected signal",
        ));
    };
    let mut a = auth.audit("rejected.view", "quarantine", None);
    a.after = Some(json!({
        "hours": hours, "reason": reason, "before": before, "limit": limit,
        "rows": page.rows.len(),
    }));
    c.store().audit(&a).await?;
    let total: i64 = page.counts.iter().map(|n| n.count).sum();
    let fmt = |t: OffsetDateTime| {
        t.format(&time::format_description::well_known::Rfc3339)
            .unwrap_or_default()
    };
    Ok(Json(RejectedResponse {
        window: Window {
            hours,
            since: fmt(since),
            until: fmt(until),
        },
        reason,
        total,
        counts: page.counts,
        rejected: page.rows,
        next_before: page.next_before,
    }))
}
