//! The web UI and the OpenAPI document (generated, see `openapi`), compiled into the binary:
//! no separate web server.

use axum::extract::Path;
use axum::http::header;
use axum::response::{IntoResponse, Response};

use crate::error::ApiError;

const INDEX: &str = include_str!("../assets/index.html");
const APP_JS: &str = include_str!("../assets/app.js");
const APP_CSS: &str = include_str!("../assets/app.css");

fn typed(ct: &'static str, body: &'static str) -> Response {
    ([(header::CONTENT_TYPE, ct)], body).into_response()
}

/// `GET /`.
pub async fn index() -> Response {
    typed("text/html; charset=utf-8", INDEX)
}

/// `GET /assets/{file}`.
pub async fn file(Path(name): Path<String>) -> Response {
    match name.as_str() {
        "app.js" => typed("text/javascript; charset=utf-8", APP_JS),
        "app.css" => typed("text/css; charset=utf-8", APP_CSS),
        _ => ApiError::not_found(format!("asset {name:?}")).into_response(),
    }
}

/// This OpenAPI document.
#[utoipa::path(get, path = "/api/openapi.json", tag = "Meta", operation_id = "getOpenApi",
    summary = "This OpenAPI document",
    description = "Roles: none (no session needed).",
    responses(
        (status = 200, description = "The OpenAPI 3.1 document.", body = Object),
    )
)]
pub async fn openapi() -> Response {
    typed("application/json", crate::openapi::document())
}
