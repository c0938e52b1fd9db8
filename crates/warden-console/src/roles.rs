//! Who may call what: the one table of every API route and the roles allowed on it,
//! enforced for every request by [`authorize`] before its handler runs (401 without a live
//! session, 403 for a change without the session's CSRF token or for a role outside the
//! set). Handlers check only what depends on the record (the person paged, a job routed to
//! the caller, the holder of an incident). `router()` and this table are compared by a test,
//! and the API tests walk every route with every role.

use axum::extract::{FromRequestParts as _, MatchedPath, Request, State};
use axum::http::Method;
use axum::middleware::Next;
use axum::response::{IntoResponse as _, Response};
use warden_types::Role;

use crate::Console;
use crate::auth::Auth;
use crate::error::ApiError;

/// Any signed-in role.
pub const ANYONE: &[Role] = &[Role::Operator, Role::Supervisor, Role::Admin, Role::OnCall];
/// The control room: work the queue.
pub const HANDLERS: &[Role] = &[Role::Operator, Role::Supervisor];
pub const SUPERVISORS: &[Role] = &[Role::Supervisor];
pub const ADMINS: &[Role] = &[Role::Admin];
/// Read client records and incidents.
pub const RECORD_READERS: &[Role] = &[Role::Operator, Role::Supervisor, Role::Admin];
/// Edit client records and the on-call directory; read the audit trail.
pub const EDITORS: &[Role] = &[Role::Supervisor, Role::Admin];
/// Read the on-call directory: its editors and the on-call staff themselves.
pub const DIRECTORY_READERS: &[Role] = &[Role::Supervisor, Role::Admin, Role::OnCall];
/// Log out-of-hours jobs.
pub const OOH_DESK: &[Role] = &[Role::Operator, Role::Supervisor];
/// No session needed (sign-in, the SMS gateway's webhook with its own token).
pub const PUBLIC: &[Role] = &[];

/// Every API route: method, pattern as `router()` declares it, roles.
#[rustfmt::skip]
pub const ROUTES: &[(&str, &str, &[Role])] = &[
    ("GET", "/api/openapi.json", PUBLIC),
    ("POST", "/api/v1/login", PUBLIC),
    ("POST", "/api/v1/logout", ANYONE),
    ("GET", "/api/v1/me", ANYONE),
    ("POST", "/api/v1/me/password", ANYONE),
    ("POST", "/api/v1/me/totp", EDITORS),
    ("POST", "/api/v1/me/totp/confirm", EDITORS),
    ("GET", "/api/v1/queue", HANDLERS),
    ("GET", "/api/v1/outcomes", HANDLERS),
    ("GET", "/api/v1/ws", HANDLERS),
    ("POST", "/api/v1/incidents/bulk-resolve", SUPERVISORS),
    ("GET", "/api/v1/incidents/{id}", RECORD_READERS),
    ("POST", "/api/v1/incidents/{id}/claim", HANDLERS),
    ("POST", "/api/v1/incidents/{id}/release", HANDLERS),
    ("POST", "/api/v1/incidents/{id}/takeover", SUPERVISORS),
    ("POST", "/api/v1/incidents/{id}/note", HANDLERS),
    ("POST", "/api/v1/incidents/{id}/resolve", HANDLERS),
    ("GET", "/api/v1/clients", RECORD_READERS),
    ("POST", "/api/v1/clients", EDITORS),
    ("GET", "/api/v1/clients/{id}", RECORD_READERS),
    ("PUT", "/api/v1/clients/{id}", EDITORS),
    ("POST", "/api/v1/clients/{id}/key-safe/reveal", RECORD_READERS),
    ("GET", "/api/v1/devices", EDITORS),
    ("POST", "/api/v1/devices", ADMINS),
    ("PUT", "/api/v1/devices/{id}", ADMINS),
    ("PUT", "/api/v1/devices/{id}/dc09-key", ADMINS),
    ("GET", "/api/v1/users", ADMINS),
    ("POST", "/api/v1/users", ADMINS),
    ("PUT", "/api/v1/users/{id}", ADMINS),
    ("GET", "/api/v1/audit", EDITORS),
    ("GET", "/api/v1/reports/client-access", EDITORS),
    ("GET", "/api/v1/rejected", EDITORS),
    ("GET", "/api/v1/pages", ANYONE),
    ("POST", "/api/v1/pages/{id}/ack", ANYONE),
    ("POST", "/api/v1/hooks/sms-reply", PUBLIC),
    ("GET", "/api/v1/oncall", DIRECTORY_READERS),
    ("POST", "/api/v1/oncall/people", EDITORS),
    ("PUT", "/api/v1/oncall/people/{id}", EDITORS),
    ("PUT", "/api/v1/oncall/teams", EDITORS),
    ("DELETE", "/api/v1/oncall/teams/{id}", EDITORS),
    ("PUT", "/api/v1/oncall/rotas", EDITORS),
    ("DELETE", "/api/v1/oncall/rotas/{id}", EDITORS),
    ("POST", "/api/v1/oncall/rotas/{id}/overrides", EDITORS),
    ("GET", "/api/v1/oncall/rotas/{id}/timeline", DIRECTORY_READERS),
    ("DELETE", "/api/v1/oncall/overrides/{id}", EDITORS),
    ("PUT", "/api/v1/oncall/chains", EDITORS),
    ("DELETE", "/api/v1/oncall/chains/{id}", EDITORS),
    ("PUT", "/api/v1/oncall/routes", EDITORS),
    ("POST", "/api/v1/oncall/people/import", EDITORS),
    ("GET", "/api/v1/ooh/categories", ANYONE),
    ("PUT", "/api/v1/ooh/categories/{code}", ADMINS),
    ("GET", "/api/v1/ooh/jobs", ANYONE),
    ("POST", "/api/v1/ooh/jobs", OOH_DESK),
    ("GET", "/api/v1/ooh/jobs/{reference}", ANYONE),
    ("POST", "/api/v1/ooh/jobs/{reference}/status", ANYONE),
    ("GET", "/api/v1/export/clients.csv", ADMINS),
    ("GET", "/api/v1/export/devices.csv", ADMINS),
    ("POST", "/api/v1/import/clients.csv", ADMINS),
    ("POST", "/api/v1/import/devices.csv", ADMINS),
];

/// The roles allowed on `method` `pattern`; `None` for a route not in the table.
pub fn allowed(method: &Method, pattern: &str) -> Option<&'static [Role]> {
    ROUTES
        .iter()
        .find(|(m, p, _)| *p == pattern && *m == method.as_str())
        .map(|(_, _, roles)| *roles)
}

/// Checks every `/api/` request against [`ROUTES`] and hands the session to the handler.
/// A route missing from the table is refused (403): a new route cannot go out unguarded.
pub async fn authorize(State(c): State<Console>, req: Request, next: Next) -> Response {
    let Some(pattern) = req
        .extensions()
        .get::<MatchedPath>()
        .map(|p| p.as_str().to_owned())
    else {
        // Not a route (the fallback answers 404).
        return next.run(req).await;
    };
    if !pattern.starts_with("/api/v1/") {
        return next.run(req).await;
    }
    let Some(roles) = allowed(req.method(), &pattern) else {
        if ROUTES.iter().any(|(_, p, _)| *p == pattern) {
            // A method the route does not have: the router answers 405.
            return next.run(req).await;
        }
        tracing::error!(%pattern, method = %req.method(), "a console route has no entry in the role table");
        return ApiError::forbidden("this route is not open to any role").into_response();
    };
    if roles.is_empty() {
        return next.run(req).await;
    }
    let (mut parts, body) = req.into_parts();
    let auth = match Auth::from_request_parts(&mut parts, &c).await {
        Ok(a) => a,
        Err(e) => return e.into_response(),
    };
    if let Err(e) = auth.require(roles) {
        return e.into_response();
    }
    parts.extensions.insert(auth);
    next.run(Request::from_parts(parts, body)).await
}
