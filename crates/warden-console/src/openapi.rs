//! The OpenAPI document of the console API, generated from the handlers' `#[utoipa::path]`
//! annotations and the request and response types they use, so the document cannot drift
//! from the code: a route without an annotation, or an annotation without a route, fails
//! `the_openapi_document_lists_exactly_the_routes_served`.
//!
//! Security is set here in one place, from the rule the `Auth` extractor enforces: every
//! operation but sign-in needs the session cookie, and every one that is not a GET also
//! needs the CSRF header.

use std::sync::OnceLock;

use serde::Serialize;
use utoipa::openapi::security::{ApiKey, ApiKeyValue, SecurityRequirement, SecurityScheme};
use utoipa::openapi::{Content, Ref, RefOr, ResponseBuilder};
use utoipa::{Modify, OpenApi, ToSchema};

use crate::auth::{COOKIE, CSRF_HEADER};

/// The error shape of every API error: `{"error": code, "message": message, "request_id":
/// id}`.
#[derive(Debug, Serialize, ToSchema)]
#[schema(as = Error)]
pub struct ErrorBody {
    /// A short snake_case code (`forbidden`, `invalid_value`, ...).
    pub error: String,
    /// Plain English for people; never internal text (the detail is logged under the
    /// request id).
    pub message: String,
    /// The id Warden gave this request, the same as the answer's `X-Request-Id` header (a
    /// client-sent `X-Request-Id` is ignored); quote it when reporting a problem.
    pub request_id: String,
}

/// Shared error responses, referenced as `#/components/responses/<Name>`.
macro_rules! error_responses {
    ($($name:ident => $description:literal,)+) => {
        $(
            #[doc = $description]
            #[derive(Debug)]
            pub struct $name;

            impl<'s> utoipa::ToResponse<'s> for $name {
                fn response() -> (&'s str, RefOr<utoipa::openapi::Response>) {
                    (
                        stringify!($name),
                        ResponseBuilder::new()
                            .description($description)
                            .content(
                                "application/json",
                                Content::new(Some(Ref::from_schema_name("Error"))),
                            )
                            .build()
                            .into(),
                    )
                }
            }
        )+
    };
}

error_responses! {
    Unauthorized => "No live session: `not_signed_in` (no cookie) or `session_expired` (unknown, expired, idle too long, or the account was disabled).",
    Unavailable => "`database_unavailable` (the database did not answer) or, for incident commands, `engine_unavailable` (the triage engine is not running; the command was not carried out). Retry.",
    TooLarge => "`body_too_large`: the body is larger than the limit (64 KiB for JSON by default).",
    UnsupportedMediaType => "`unsupported_media_type`: the body was not sent with Content-Type: application/json.",
}

/// The one operation a gateway calls, with its own token instead of a session.
const GATEWAY_HOOK: &str = "/api/v1/hooks/sms-reply";

/// Adds the session cookie and CSRF header schemes and each operation's requirement.
#[derive(Debug)]
struct Security;

impl Modify for Security {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "sessionCookie",
            SecurityScheme::ApiKey(ApiKey::Cookie(ApiKeyValue::with_description(
                COOKIE,
                "The session cookie set by POST /api/v1/login (named `warden_session`, without the `__Host-` prefix, when `console.cookie_secure` is off).",
            ))),
        );
        components.add_security_scheme(
            "csrfToken",
            SecurityScheme::ApiKey(ApiKey::Header(ApiKeyValue::with_description(
                "X-CSRF-Token",
                "The session's CSRF token (from login or GET /api/v1/me); required on every non-GET request except login.",
            ))),
        );
        components.add_security_scheme(
            "gatewayToken",
            SecurityScheme::ApiKey(ApiKey::Query(ApiKeyValue::with_description(
                "token",
                "The SMS gateway's token (`escalation.sms.inbound_token`); the gateway's webhook only.",
            ))),
        );
        debug_assert!(CSRF_HEADER.eq_ignore_ascii_case("X-CSRF-Token"));
        for (path, item) in &mut openapi.paths.paths {
            let ops = [
                (false, item.get.as_mut()),
                (true, item.post.as_mut()),
                (true, item.put.as_mut()),
                (true, item.delete.as_mut()),
            ];
            for (changes, op) in ops {
                let Some(op) = op else { continue };
                op.security = Some(if path == "/api/v1/login" || path == "/api/openapi.json" {
                    // Sign-in and this document need no session.
                    Vec::new()
                } else if path == GATEWAY_HOOK {
                    vec![SecurityRequirement::new(
                        "gatewayToken",
                        Vec::<String>::new(),
                    )]
                } else if changes {
                    vec![
                        SecurityRequirement::new("sessionCookie", Vec::<String>::new())
                            .add("csrfToken", Vec::<String>::new()),
                    ]
                } else {
                    vec![SecurityRequirement::new(
                        "sessionCookie",
                        Vec::<String>::new(),
                    )]
                });
            }
        }
    }
}

/// The console API, as generated.
#[derive(OpenApi)]
#[openapi(
    info(
        title = "Warden console API",
        version = "1",
        description = include_str!("../assets/openapi-intro.md"),
    ),
    paths(
        crate::auth::login,
        crate::auth::logout,
        crate::auth::me,
        crate::auth::change_password,
        crate::totp::begin,
        crate::totp::confirm,
        crate::incidents::queue,
        crate::incidents::outcomes,
        crate::hub::ws,
        crate::incidents::bulk_resolve,
        crate::incidents::detail,
        crate::incidents::claim,
        crate::incidents::release,
        crate::incidents::takeover,
        crate::incidents::note,
        crate::incidents::resolve,
        crate::records::clients,
        crate::records::create_client,
        crate::records::client,
        crate::records::update_client,
        crate::records::reveal_key_safe,
        crate::records::devices,
        crate::records::create_device,
        crate::records::update_device,
        crate::accounts::users,
        crate::accounts::create_user,
        crate::accounts::update_user,
        crate::records::audit,
        crate::records::client_access,
        crate::rejected::rejected,
        crate::pages::mine,
        crate::pages::acknowledge,
        crate::acklinks::sms_reply,
        crate::records::set_dc09_key,
        crate::directory::directory,
        crate::directory::create_person,
        crate::directory::update_person,
        crate::directory::save_team,
        crate::directory::save_rota,
        crate::directory::add_override,
        crate::directory::timeline,
        crate::directory::delete_override,
        crate::directory::save_chain,
        crate::directory::save_routes,
        crate::directory::delete_team,
        crate::directory::delete_rota,
        crate::directory::delete_chain,
        crate::directory::import_people,
        crate::ooh::categories,
        crate::ooh::save_category,
        crate::ooh::jobs,
        crate::ooh::create_job,
        crate::ooh::job,
        crate::ooh::set_status,
        crate::csvio::export_clients,
        crate::csvio::export_devices,
        crate::csvio::import_clients,
        crate::csvio::import_devices,
        crate::assets::openapi,
    ),
    components(
        schemas(ErrorBody),
        responses(
            Unauthorized,
            Unavailable,
            TooLarge,
            UnsupportedMediaType
        )
    ),
    modifiers(&Security),
    tags(
        (name = "Auth", description = "Sign-in and sessions."),
        (name = "Incidents", description = "The live queue and incident commands."),
        (name = "Clients", description = "Client records (every view and change is audited)."),
        (name = "Devices", description = "Device administration."),
        (name = "Users", description = "Account administration."),
        (name = "On call", description = "Pages the escalator sent to me, and acknowledging them."),
        (name = "Audit", description = "The audit trail."),
        (name = "Out of hours", description = "The out-of-hours desk."),
        (name = "Import and export", description = "CSV import and export of clients and devices."),
        (name = "Meta", description = "This document."),
    )
)]
#[derive(Debug)]
pub struct ApiDoc;

/// The document served at `/api/openapi.json`, generated once on first use.
pub fn document() -> &'static str {
    static DOC: OnceLock<String> = OnceLock::new();
    DOC.get_or_init(|| {
        ApiDoc::openapi()
            .to_pretty_json()
            // Serialising plain structs and maps cannot fail; should it ever, say so in JSON.
            .unwrap_or_else(|e| {
                serde_json::json!({ "error": "openapi", "message": e.to_string() }).to_string()
            })
    })
}

#[cfg(test)]
mod tests {
    use serde_json::Value;

    use super::GATEWAY_HOOK;
    use warden_types::{DeviceProtocol, JobStatus, Role};

    fn doc() -> Value {
        serde_json::from_str(super::document()).expect("the document is JSON")
    }

    /// The names the document lists for each enum are the names its `as_str` gives (and so
    /// the names the store writes and serde reads).
    #[test]
    fn roles_protocols_and_job_statuses_are_listed_with_their_one_mapping() {
        let d = doc();
        let listed = |schema: &str| -> Vec<String> {
            d["components"]["schemas"][schema]["enum"]
                .as_array()
                .unwrap_or_else(|| panic!("{schema} is an enum schema"))
                .iter()
                .map(|v| v.as_str().expect("a name").to_owned())
                .collect()
        };
        let names = |all: &mut dyn Iterator<Item = &'static str>| -> Vec<String> {
            all.map(str::to_owned).collect()
        };
        assert_eq!(
            listed("Role"),
            names(&mut Role::ALL.iter().map(|r| r.as_str()))
        );
        assert_eq!(
            listed("DeviceProtocol"),
            names(&mut DeviceProtocol::ALL.iter().map(|p| p.as_str()))
        );
        assert_eq!(
            listed("JobStatus"),
            names(&mut JobStatus::ALL.iter().map(|s| s.as_str()))
        );
    }

    /// Sign-in and the document need no session; every other GET needs the cookie and every
    /// other change the cookie and the CSRF header, as the `Auth` extractor enforces.
    #[test]
    fn every_operation_states_the_session_and_csrf_rule() {
        let d = doc();
        let schemes = &d["components"]["securitySchemes"];
        assert_eq!(schemes["sessionCookie"]["in"], "cookie");
        assert_eq!(schemes["sessionCookie"]["name"], crate::auth::COOKIE);
        assert_eq!(schemes["csrfToken"]["in"], "header");
        let mut checked = 0;
        for (path, ops) in d["paths"].as_object().expect("paths") {
            for (method, op) in ops.as_object().expect("operations") {
                let security = op["security"]
                    .as_array()
                    .expect("security on every operation");
                let open = path == "/api/v1/login" || path == "/api/openapi.json";
                let wanted: Vec<&str> = match (open, method.as_str()) {
                    (true, _) => vec![],
                    _ if path == GATEWAY_HOOK => vec!["gatewayToken"],
                    (false, "get") => vec!["sessionCookie"],
                    (false, _) => vec!["csrfToken", "sessionCookie"],
                };
                let got: Vec<&str> = security
                    .iter()
                    .flat_map(|r| r.as_object().expect("a requirement").keys())
                    .map(String::as_str)
                    .collect();
                assert_eq!(got, wanted, "{method} {path}");
                if !open && path != GATEWAY_HOOK {
                    assert!(
                        op["responses"]["401"].is_object(),
                        "{method} {path} documents 401"
                    );
                }
                checked += 1;
            }
        }
        assert!(checked > 30, "only {checked} operations");
    }

    /// Bodies are typed: every JSON answer names a schema, never a bare object (except this
    /// document itself).
    #[test]
    fn json_answers_name_their_schema() {
        let d = doc();
        for (path, ops) in d["paths"].as_object().expect("paths") {
            for (method, op) in ops.as_object().expect("operations") {
                for (status, r) in op["responses"].as_object().expect("responses") {
                    let schema = &r["content"]["application/json"]["schema"];
                    if schema.is_null() || path == "/api/openapi.json" {
                        continue;
                    }
                    let text = schema.to_string();
                    assert!(text.contains("$ref"), "{method} {path} {status}: {text}");
                }
            }
        }
    }
}
