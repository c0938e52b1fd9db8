//! The one error type of the API: a status, a short code and a plain-English message,
//! rendered as `{"error": code, "message": message}`.

use axum::Json;
use axum::extract::rejection::JsonRejection;
use axum::extract::{FromRequest, FromRequestParts};
use axum::http::StatusCode;
use axum::http::request::Parts;
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

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = serde_json::json!({ "error": self.code, "message": self.message });
        (self.status, Json(body)).into_response()
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
    fn from(e: WriteRefused) -> Self {
        match e {
            WriteRefused::Refused(r @ Refused::Exists(_)) => {
                ApiError::new(StatusCode::CONFLICT, "already_exists", r.to_string())
            }
            WriteRefused::Refused(r @ Refused::Missing(_)) => {
                ApiError::bad_request("missing_reference", r.to_string())
            }
            WriteRefused::Refused(r @ Refused::Invalid(_)) => {
                ApiError::bad_request("invalid_value", r.to_string())
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
            warden_engine::EngineError::Failed(_) => ApiError::new(
                StatusCode::INTERNAL_SERVER_ERROR,
                "command_failed",
                "the triage engine could not carry out the command; nothing was recorded",
            ),
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
