//! Acknowledging a page from outside the console: the signed one-time link in a message
//! (`/ack/<token>`: a page showing the alarm and a button; only the button's POST
//! acknowledges, so a mail scanner that fetches links changes nothing), and SMS replies
//! through the gateway's inbound webhook (`POST /api/v1/hooks/sms-reply?token=…`).
//! Each is recorded on the page (who, how, when) and in the incident's history.

use std::collections::HashMap;

use axum::Json;
use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{Html, IntoResponse, Response};
use serde::Serialize;
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;
use utoipa::ToSchema;
use warden_notify::{Acked, NotifyError, Reply};
use warden_telemetry as m;

use crate::Console;
use crate::error::ApiError;

/// HTML-escaped text.
fn esc(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
        .replace('\'', "&#39;")
}

fn page(status: StatusCode, title: &str, body: &str) -> Response {
    let html = format!(
        "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\">\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\
         <title>{t} · Warden</title><link rel=\"stylesheet\" href=\"/assets/app.css\"></head>\
         <body class=\"ack-page\"><main><h1>{t}</h1>{body}</main></body></html>",
        t = esc(title)
    );
    (status, Html(html)).into_response()
}

fn when(t: OffsetDateTime) -> String {
    t.format(&Rfc3339).unwrap_or_default()
}

/// A refused link as a page people can read.
fn refused(e: &NotifyError) -> Response {
    let status = match e {
        NotifyError::Link(warden_notify::links::LinkError::Expired) => StatusCode::GONE,
        NotifyError::Link(_) | NotifyError::UnknownPage(_) => StatusCode::NOT_FOUND,
        _ => StatusCode::SERVICE_UNAVAILABLE,
    };
    if status == StatusCode::SERVICE_UNAVAILABLE {
        tracing::warn!(error = %e, "acknowledgement link failed");
    }
    let text = if status == StatusCode::SERVICE_UNAVAILABLE {
        "Warden could not record this just now. Try the link again, or acknowledge in the \
         Warden console and call the control room."
            .to_owned()
    } else {
        e.to_string()
    };
    page(
        status,
        "This link cannot acknowledge",
        &format!("<p>{}</p>", esc(&text)),
    )
}

/// `GET /ack/{token}`: what the page is about, and the button.
pub async fn show(State(c): State<Console>, Path(token): Path<String>) -> Response {
    let key = match warden_notify::links::key(c.store()).await {
        Ok(k) => k,
        Err(e) => return refused(&e),
    };
    let id = match warden_notify::links::verify(
        &key,
        &token,
        OffsetDateTime::now_utc().unix_timestamp(),
    ) {
        Ok(id) => id,
        Err(e) => return refused(&NotifyError::Link(e)),
    };
    let view = match c.store().page_view(id).await {
        Ok(Some(v)) => v,
        Ok(None) => return refused(&NotifyError::UnknownPage(id)),
        Err(e) => return refused(&NotifyError::Store(e)),
    };
    let what = format!(
        "{} {}{}",
        view.priority
            .as_deref()
            .unwrap_or("unknown")
            .replace('_', "-"),
        view.incident_kind
            .as_deref()
            .unwrap_or("alarm")
            .replace('_', " "),
        view.summary
            .as_deref()
            .map(|s| format!(" ({s})"))
            .unwrap_or_default()
    );
    let head = format!(
        "<p>Warden alarm <strong>#{}</strong>: {}.</p><p>Paged to {} at {}.</p>",
        view.incident_id,
        esc(&what),
        esc(&view.person_name),
        when(view.created_at)
    );
    if let Some(at) = view.acked_at {
        return page(
            StatusCode::OK,
            &format!("Alarm #{} is acknowledged", view.incident_id),
            &format!(
                "{head}<p>Acknowledged by {} ({}) at {}. This link has been used; there is \
                 nothing more to do here.</p>",
                esc(view.acked_by_name.as_deref().unwrap_or("someone")),
                esc(view.acked_via.as_deref().unwrap_or("console")),
                when(at)
            ),
        );
    }
    page(
        StatusCode::OK,
        &format!("Acknowledge alarm #{}", view.incident_id),
        &format!(
            "{head}<form method=\"post\"><button type=\"submit\" data-testid=\"ack-link-confirm\">\
             Acknowledge alarm #{}</button></form><p>Acknowledging tells the control room you \
             are dealing with it; then call the control room.</p>",
            view.incident_id
        ),
    )
}

/// `POST /ack/{token}`: acknowledges, once.
pub async fn confirm(State(c): State<Console>, Path(token): Path<String>) -> Response {
    match warden_notify::acknowledge_link(c.store(), &token, OffsetDateTime::now_utc()).await {
        Ok(Acked::Now { incident }) => page(
            StatusCode::OK,
            &format!("Alarm #{incident} acknowledged"),
            "<p data-testid=\"ack-link-done\">Thank you. The escalation is held while you deal \
             with it. Now call the control room.</p>",
        ),
        Ok(Acked::Already { incident, at }) => page(
            StatusCode::OK,
            &format!("Alarm #{incident} was already acknowledged"),
            &format!(
                "<p>It was acknowledged at {}. This link has been used; nothing changed.</p>",
                when(at)
            ),
        ),
        Err(e) => refused(&e),
    }
}

/// What an SMS reply did.
#[derive(Debug, Serialize, ToSchema)]
pub struct ReplyOutcome {
    /// `acknowledged`, `already_acknowledged`, `not_understood` or `no_open_page`.
    pub outcome: &'static str,
    /// The alarm acknowledged, if any.
    pub incident: Option<i64>,
}

/// True when `a` equals `b`, in time independent of where they differ.
fn same_secret(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// The first of `names` present in `fields`.
fn field<'a>(fields: &'a HashMap<String, String>, names: &[&str]) -> Option<&'a str> {
    names
        .iter()
        .find_map(|n| fields.get(*n))
        .map(String::as_str)
}

/// Receive an SMS reply.
#[utoipa::path(post, path = "/api/v1/hooks/sms-reply", tag = "On call", operation_id = "smsReply",
    summary = "Receive an SMS reply (gateway webhook)",
    description = "Roles: none (no session needed: the SMS gateway presents its own token).

For the SMS gateway, not people: point its inbound-message webhook here with `?token=` the configured `escalation.sms.inbound_token` (or send it as `X-Warden-Token`). The body is a form (`application/x-www-form-urlencoded`, Twilio's `From` and `Body`) or JSON (`from`/`msisdn` and `text`/`body`/`message`). A reply `ACK` acknowledges the newest unacknowledged page sent to that number in the last 24 hours; `ACK 42` the one for alarm 42. Counted in `warden_page_replies_total`.",
    params(("token" = Option<String>, Query, description = "The gateway's token.")),
    responses(
        (status = 200, description = "What the reply did.", body = ReplyOutcome),
        (status = 400, description = "`invalid_body`: no sender or no text in the body.", body = crate::openapi::ErrorBody),
        (status = 401, description = "`bad_token`: the token is missing or wrong.", body = crate::openapi::ErrorBody),
        (status = 404, description = "`not_found`: SMS replies are not configured on this centre.", body = crate::openapi::ErrorBody),
        (status = 503, response = crate::openapi::Unavailable),
    )
)]
pub async fn sms_reply(
    State(c): State<Console>,
    Query(query): Query<HashMap<String, String>>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Json<ReplyOutcome>, ApiError> {
    let Some(expected) = &c.cfg().sms_reply_token else {
        return Err(ApiError::not_found("SMS replies (not configured)"));
    };
    let given = query
        .get("token")
        .map(String::as_bytes)
        .or_else(|| {
            headers
                .get("x-warden-token")
                .map(axum::http::HeaderValue::as_bytes)
        })
        .unwrap_or_default();
    if !same_secret(given, expected.0.as_bytes()) {
        metrics::counter!(m::PAGE_REPLIES, "outcome" => "refused").increment(1);
        tracing::warn!("SMS reply refused: wrong gateway token");
        return Err(ApiError::new(
            StatusCode::UNAUTHORIZED,
            "bad_token",
            "the gateway token is missing or wrong",
        ));
    }
    let json = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/json"));
    let fields: HashMap<String, String> = if json {
        let v: serde_json::Map<String, serde_json::Value> =
            serde_json::from_slice(&body).map_err(|e| {
                ApiError::bad_request("invalid_body", format!("not a JSON object: {e}"))
            })?;
        v.into_iter()
            .filter_map(|(k, v)| match v {
                serde_json::Value::String(s) => Some((k, s)),
                serde_json::Value::Number(n) => Some((k, n.to_string())),
                _ => None,
            })
            .collect()
    } else {
        form_urlencoded::parse(&body).into_owned().collect()
    };
    let from = field(&fields, &["From", "from", "msisdn", "sender"]);
    let text = field(&fields, &["Body", "body", "text", "message"]);
    let (Some(from), Some(text)) = (from, text) else {
        return Err(ApiError::bad_request(
            "invalid_body",
            "the reply needs a sender (From, from or msisdn) and a text (Body, text or message)",
        ));
    };
    let outcome =
        warden_notify::acknowledge_reply(c.store(), from, text, OffsetDateTime::now_utc()).await?;
    let (outcome, incident) = match outcome {
        Reply::Acknowledged(Acked::Now { incident }) => ("acknowledged", Some(incident)),
        Reply::Acknowledged(Acked::Already { incident, .. }) => {
            ("already_acknowledged", Some(incident))
        }
        Reply::NotUnderstood => ("not_understood", None),
        Reply::NoOpenPage => ("no_open_page", None),
    };
    tracing::info!(outcome, ?incident, "SMS reply received");
    Ok(Json(ReplyOutcome { outcome, incident }))
}
