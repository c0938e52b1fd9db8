//! The web UI and the OpenAPI document, compiled into the binary: no separate web server.

use axum::extract::Path;
use axum::http::header;
use axum::response::{IntoResponse, Response};

use crate::error::ApiError;

const INDEX: &str = include_str!("../assets/index.html");
const APP_JS: &str = include_str!("../assets/app.js");
const APP_CSS: &str = include_str!("../assets/app.css");
const OPENAPI: &str = include_str!("../assets/openapi.json");

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

/// `GET /api/openapi.json`.
pub async fn openapi() -> Response {
    typed("application/json", OPENAPI)
}

/// The OpenAPI document, for tests that compare it with the routes.
pub const OPENAPI_DOC: &str = OPENAPI;
