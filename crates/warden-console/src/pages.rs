//! The on-call inbox: the pages the escalator sent to the signed-in person, and acknowledging
//! them (which holds the incident's escalation until its acknowledgement timeout).

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use time::OffsetDateTime;
use warden_notify::NotifyError;
use warden_store::PageRow;

use crate::Console;
use crate::auth::Auth;
use crate::error::{ApiError, ApiPath};

/// Most pages the inbox lists.
const INBOX: i64 = 100;

impl From<NotifyError> for ApiError {
    fn from(e: NotifyError) -> Self {
        match e {
            NotifyError::Store(e) => e.into(),
            NotifyError::UnknownPage(id) => ApiError::not_found(format!("page {id}")),
            NotifyError::NotAPerson | NotifyError::NotYours(_) => {
                ApiError::forbidden(e.to_string())
            }
            NotifyError::Link(_) => ApiError::forbidden(e.to_string()),
            NotifyError::BadChain(_) | NotifyError::BadState(..) | NotifyError::Client(_) => {
                tracing::error!(error = %e, "page acknowledgement failed");
                ApiError::new(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "command_failed",
                    "the escalation could not be updated; nothing was recorded",
                )
            }
        }
    }
}

/// The pages sent to me.
#[utoipa::path(get, path = "/api/v1/pages", tag = "On call", operation_id = "myPages",
    summary = "Pages sent to me",
    description = "Any role. The pages the escalator sent to the person linked to your account, newest first (at most 100); empty when your account is not linked to anyone on call.",
    responses(
        (status = 200, description = "My pages, newest first.", body = Vec<PageRow>),
        (status = 401, response = crate::openapi::Unauthorized),
        (status = 503, response = crate::openapi::Unavailable),
    )
)]
pub async fn mine(State(c): State<Console>, auth: Auth) -> Result<Json<Vec<PageRow>>, ApiError> {
    Ok(Json(c.store().pages_for_user(auth.user.id, INBOX).await?))
}

/// Acknowledge a page.
#[utoipa::path(post, path = "/api/v1/pages/{id}/ack", tag = "On call", operation_id = "acknowledgePage",
    summary = "Acknowledge a page",
    description = "Any role linked to the person paged. Stops the incident's escalation until the chain's acknowledgement timeout (the chain starts again if the incident is still unanswered then); every page of the incident reads acknowledged. Audited, and recorded in the incident's history.",
    params(("id" = i64, Path, description = "The page id.")),
    responses(
        (status = 204, description = "Acknowledged."),
        (status = 400, description = "`invalid_path`: `id` is not an integer.", body = crate::openapi::ErrorBody),
        (status = 401, response = crate::openapi::Unauthorized),
        (status = 403, description = "`forbidden`: your account is not linked to anyone on call, the page was sent to someone else, or the `X-CSRF-Token` header is missing or wrong.", body = crate::openapi::ErrorBody),
        (status = 404, description = "`not_found`: no such page.", body = crate::openapi::ErrorBody),
        (status = 500, description = "`command_failed`: the incident's escalation could not be read; nothing was recorded.", body = crate::openapi::ErrorBody),
        (status = 503, response = crate::openapi::Unavailable),
    )
)]
pub async fn acknowledge(
    State(c): State<Console>,
    auth: Auth,
    ApiPath(id): ApiPath<i64>,
) -> Result<StatusCode, ApiError> {
    warden_notify::acknowledge(c.store(), id, auth.user.id, OffsetDateTime::now_utc()).await?;
    c.store()
        .audit(&auth.audit("page.ack", "page", Some(id.to_string())))
        .await?;
    Ok(StatusCode::NO_CONTENT)
}
