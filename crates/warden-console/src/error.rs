//! The one error type of the API: a status, a short code and a plain-English message,
//! rendered as `{"error": code, "message": message, "request_id": id}`.
//!
//! A message is written for people and never carries internal text (a constraint name, a
//! `Debug` rendering, a driver's error): the detail is logged with the request id instead,
//! so the id an operator reads out from an error finds the log line.

use axum::Json;
use axum::body::Body;
use axum::extract::rejection::JsonRejection;
use axum::extract::{FromRequest, FromRequestParts, Request};
use axum::http::request::Parts;
use axum::http::{HeaderValue, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use serde::de::DeserializeOwned;
use warden_store::{Refused, StoreError, WriteRefused};

/// An API error.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiError {
    pub status: StatusCode,
    pub code: &'static str,
    pub message: String,
}

impl ApiError {
    pub fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        ApiError {
            status,
            code,
            message: message.into(),
        }
    }

    pub fn bad_request(code: &'static str, message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, code, message)
    }

    pub fn not_found(what: impl std::fmt::Display) -> Self {
        Self::new(
            StatusCode::NOT_FOUND,
            "not_found",
            format!("{what} was not found"),
        )
    }

    pub fn forbidden(message: impl Into<String>) -> Self {
        Self::new(StatusCode::FORBIDDEN, "forbidden", message)
    }
}

/// The code and message of an API error answer, kept on the response for
/// [`with_request_id`] to render with the request's id.
#[derive(Debug, Clone)]
struct Rendered {
    code: &'static str,
    message: String,
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = serde_json::json!({ "error": self.code, "message": self.message });
        let mut resp = (self.status, Json(body)).into_response();
        resp.extensions_mut().insert(Rendered {
            code: self.code,
            message: self.message,
        });
        resp
    }
}

/// Middleware (inside `SetRequestIdLayer`, outside everything that can answer an error):
/// every API error answer carries the request's id in its body, the same id as its
/// `X-Request-Id` header. An error answered by the framework or a layer rather than a
/// handler (a timeout, a refused WebSocket upgrade, an unreadable body) on an `/api/` path
/// is put in the same JSON shape, with a code for its status and plain words instead of the
/// framework's text.
pub(crate) async fn with_request_id(req: Request, next: Next) -> Response {
    let request_id = req
        .headers()
        .get("x-request-id")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned();
    let api = req.uri().path().starts_with("/api/");
    let resp = next.run(req).await;
    let rendered = match resp.extensions().get::<Rendered>() {
        Some(r) => r.clone(),
        None if api && (resp.status().is_client_error() || resp.status().is_server_error()) => {
            let (code, message) = framework_error(resp.status());
            Rendered {
                code,
                message: message.to_owned(),
            }
        }
        None => return resp,
    };
    let body = serde_json::json!({
        "error": rendered.code,
        "message": rendered.message,
        "request_id": request_id,
    })
    .to_string();
    let (mut parts, _) = resp.into_parts();
    parts.headers.remove(header::CONTENT_LENGTH);
    parts.headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    Response::from_parts(parts, Body::from(body))
}

/// The code and words of an error answered by the framework or a layer, by its status.
fn framework_error(status: StatusCode) -> (&'static str, &'static str) {
    match status {
        StatusCode::BAD_REQUEST => ("bad_request", "the request could not be understood"),
        StatusCode::NOT_FOUND => ("not_found", "this API path was not found"),
        StatusCode::METHOD_NOT_ALLOWED => (
            "method_not_allowed",
            "this API path does not take that method",
        ),
        StatusCode::REQUEST_TIMEOUT => (
            "request_timeout",
            "the request took too long and was stopped; please try again",
        ),
        StatusCode::PAYLOAD_TOO_LARGE => (
            "body_too_large",
            "the request body is larger than this endpoint accepts",
        ),
        StatusCode::UNSUPPORTED_MEDIA_TYPE => (
            "unsupported_media_type",
            "this endpoint does not take a body of that type",
        ),
        StatusCode::UPGRADE_REQUIRED => (
            "upgrade_required",
            "this endpoint is a WebSocket: open it with a WebSocket upgrade",
        ),
        s if s.is_server_error() => (
            "internal_error",
            "the server could not answer this request; nothing was changed",
        ),
        _ => ("request_refused", "the request was refused"),
    }
}

impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> Self {
        tracing::error!(error = %e, "console request failed on the database");
        ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "database_unavailable",
            "the database did not answer; nothing was changed, please try again",
        )
    }
}

impl From<WriteRefused> for ApiError {
    /// A write the database refused for its data. What `Refused` holds may be a constraint
    /// name (`clients_external_ref_key`) or Postgres's own message: it is logged, and the
    /// answer says in plain words what kind of refusal it was.
    fn from(e: WriteRefused) -> Self {
        match e {
            WriteRefused::Refused(r) => {
                tracing::info!(refused = %r, "console write refused by the database");
                match r {
                    Refused::Exists(_) => ApiError::new(
                        StatusCode::CONFLICT,
                        "already_exists",
                        "a record with the same identifying value (a reference, account, \
                         username or name) already exists; nothing was changed",
                    ),
                    Refused::Missing(_) => ApiError::bad_request(
                        "missing_reference",
                        "something this refers to does not exist (any more); nothing was \
                         changed",
                    ),
                    Refused::Invalid(_) => ApiError::bad_request(
                        "invalid_value",
                        "a value was refused as not allowed; nothing was changed",
                    ),
                }
            }
            WriteRefused::Store(e) => e.into(),
        }
    }
}

impl From<warden_engine::EngineError> for ApiError {
    fn from(e: warden_engine::EngineError) -> Self {
        match e {
            warden_engine::EngineError::Stopped => ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "engine_unavailable",
                "the triage engine is not running; the command was not carried out",
            ),
            warden_engine::EngineError::Failed(detail) => {
                tracing::error!(error = %detail, "console command failed in the triage engine");
                ApiError::new(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "command_failed",
                    "the triage engine could not carry out the command; nothing was recorded",
                )
            }
        }
    }
}

/// A JSON body whose rejections are API errors: malformed JSON or wrong fields → 400 with
/// the parser's message, an oversized body → 413.
#[derive(Debug, Clone, Copy, Default)]
pub struct ApiJson<T>(pub T);

impl<T, S> FromRequest<S> for ApiJson<T>
where
    T: DeserializeOwned,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request(req: axum::extract::Request, state: &S) -> Result<Self, Self::Rejection> {
        match Json::<T>::from_request(req, state).await {
            Ok(Json(v)) => Ok(ApiJson(v)),
            Err(rejection) => Err(json_rejection(&rejection)),
        }
    }
}

fn json_rejection(r: &JsonRejection) -> ApiError {
    match r {
        JsonRejection::MissingJsonContentType(_) => ApiError::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "unsupported_media_type",
            "send the body as JSON with Content-Type: application/json",
        ),
        JsonRejection::BytesRejection(b) if b.status() == StatusCode::PAYLOAD_TOO_LARGE => {
            too_large()
        }
        other if other.status() == StatusCode::PAYLOAD_TOO_LARGE => too_large(),
        // Well-formed JSON naming a value an enum field does not have (a role, a protocol,
        // a job status): refused for its value, like the handlers' own checks. serde's
        // derived enums report exactly this phrase (`de::Error::unknown_variant`).
        JsonRejection::JsonDataError(e) if e.body_text().contains("unknown variant `") => {
            ApiError::bad_request("invalid_value", e.body_text())
        }
        other => ApiError::bad_request("invalid_json", other.body_text()),
    }
}

/// A path parameter whose rejection is an API error: `/api/v1/incidents/abc/claim` → 400
/// `invalid_path` naming the value, in the JSON error shape (axum's own answer is text).
#[derive(Debug, Clone, Copy, Default)]
pub struct ApiPath<T>(pub T);

impl<T, S> FromRequestParts<S> for ApiPath<T>
where
    T: DeserializeOwned + Send,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        match axum::extract::Path::<T>::from_request_parts(parts, state).await {
            Ok(axum::extract::Path(v)) => Ok(ApiPath(v)),
            Err(rejection) => Err(ApiError::bad_request(
                "invalid_path",
                format!("this address is not valid: {}", rejection.body_text()),
            )),
        }
    }
}

/// A query string whose rejection is an API error (400 `invalid_query` with the parser's
/// message).
#[derive(Debug, Clone, Copy, Default)]
pub struct ApiQuery<T>(pub T);

impl<T, S> FromRequestParts<S> for ApiQuery<T>
where
    T: DeserializeOwned,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        match axum::extract::Query::<T>::from_request_parts(parts, state).await {
            Ok(axum::extract::Query(v)) => Ok(ApiQuery(v)),
            Err(rejection) => Err(ApiError::bad_request(
                "invalid_query",
                rejection.body_text(),
            )),
        }
    }
}

pub fn too_large() -> ApiError {
    ApiError::new(
        StatusCode::PAYLOAD_TOO_LARGE,
        "body_too_large",
        "the request body is larger than this endpoint accepts",
    )
}
