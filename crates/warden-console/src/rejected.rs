//! What Warden refused: the quarantined inputs, for supervisors and administrators. Each
//! read is audited (the rows hold whatever a link sent, which may be personal data).

use axum::Json;
use axum::extract::State;
use serde::Deserialize;
use serde_json::{Value, json};
use time::OffsetDateTime;
use warden_store::RejectedQuery;

use crate::Console;
use crate::auth::{AUDITORS, Auth};
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
#[derive(Debug, Deserialize)]
pub struct RejectedParams {
    hours: Option<String>,
    limit: Option<String>,
    before: Option<String>,
    reason: Option<String>,
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

/// `GET /api/v1/rejected?hours=&reason=&before=&limit=` (supervisors, admins): counts of
/// refused inputs by reason and source over the last `hours` (default 24, at most 720),
/// and the most recent of them (newest first, `limit` per page, default 50, at most 200;
/// `before` is the `next_before` of the previous page), optionally of one `reason` only.
pub async fn rejected(
    State(c): State<Console>,
    auth: Auth,
    ApiQuery(p): ApiQuery<RejectedParams>,
) -> Result<Json<Value>, ApiError> {
    auth.require(AUDITORS)?;
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
    Ok(Json(json!({
        "window": { "hours": hours, "since": fmt(since), "until": fmt(until) },
        "reason": reason,
        "total": total,
        "counts": page.counts,
        "rejected": page.rows,
        "next_before": page.next_before,
    })))
}
