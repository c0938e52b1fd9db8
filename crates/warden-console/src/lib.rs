//! Warden's operator console: the JSON API (documented as OpenAPI at `/api/openapi.json`),
//! the live queue push over a WebSocket, and the web UI, all served by the daemon itself.
//!
//! Architecture Invariant: this is the only crate that knows HTTP for the console. It holds
//! no incident state: reads come from Postgres (the engine's committed rows), commands go
//! to the triage engine (the one owner of incident state) and are answered after their
//! effects are durable, and the push relays the engine's committed changes.
//!
//! Every request that is not a login carries a session (401 otherwise); every handler
//! checks the role (403); state-changing requests need the session's CSRF token (403).

mod accounts;
mod acklinks;
mod assets;
pub mod auth;
pub mod client_addr;
mod csvio;
mod directory;
pub mod error;
mod hub;
mod incidents;
pub mod listen;
mod mirror;
mod ooh;
pub mod openapi;
mod pages;
mod records;
mod rejected;
pub mod roles;
mod text;
mod throttle;
pub mod tls;
mod totp;
mod view;

use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::Router;
use axum::extract::{DefaultBodyLimit, MatchedPath, Request};
use axum::http::{HeaderName, HeaderValue, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::Response;
use axum::routing::{delete, get, post, put};
use tokio::sync::broadcast;
use tokio_util::sync::CancellationToken;
use tower_http::request_id::{MakeRequestUuid, PropagateRequestIdLayer, SetRequestIdLayer};
use tower_http::set_header::SetResponseHeaderLayer;
use tower_http::timeout::TimeoutLayer;
use warden_engine::EngineHandle;
use warden_store::Store;
use warden_telemetry as m;

pub use accounts::add_or_reset_user;
pub use auth::{Role, check_password, hash_password};
pub use csvio::{RowError, parse_clients, parse_devices};
pub use ooh::{CategoryContact, Contact, DirectoryRouter, OnCallRouter};
pub use view::IncidentView;

/// The OpenAPI document served at `/api/openapi.json`, generated from the handlers' types and
/// annotations on first use (it dereferences to the JSON text).
pub const OPENAPI: &OpenApiDocument = &OpenApiDocument;

/// The generated OpenAPI document as JSON text (see [`OPENAPI`]).
#[derive(Debug, Clone, Copy)]
pub struct OpenApiDocument;

impl std::ops::Deref for OpenApiDocument {
    type Target = str;

    fn deref(&self) -> &str {
        openapi::document()
    }
}

/// Console settings.
#[derive(Debug, Clone)]
pub struct ConsoleConfig {
    /// Mark the session cookie `Secure` (browsers then send it only over HTTPS, or to
    /// localhost). Keep it on: with [`ConsoleConfig::tls`] or behind a TLS-terminating
    /// proxy the browser is on HTTPS anyway; turning it off lets a session cookie travel in
    /// clear on any plain-HTTP request a network attacker can provoke.
    pub cookie_secure: bool,
    /// Serve HTTPS only, with this certificate and key (reloaded when the files change,
    /// see [`tls`]); answers then carry `Strict-Transport-Security`. `None`: plain HTTP
    /// (behind a TLS-terminating proxy).
    pub tls: Option<tls::TlsFiles>,
    /// A session ends this long after sign-in, whatever happens.
    pub session_ttl: Duration,
    /// A session ends after this long without a request.
    pub idle_timeout: Duration,
    /// Largest JSON body accepted.
    pub max_body_bytes: usize,
    /// Largest CSV import accepted.
    pub max_import_bytes: usize,
    /// Longest a request may take before it is answered 408.
    pub request_timeout: Duration,
    /// Failed sign-ins in a row (per account, and per client address) before the next
    /// attempt is delayed; each further failure doubles the delay, from 1 s.
    pub login_free_failures: u32,
    /// The longest delay between two attempts (no account is ever locked out: the right
    /// password is admitted once the delay is over).
    pub login_max_delay: Duration,
    /// Proxies whose `X-Forwarded-For` names the client (rate limits, delays and the audit
    /// trail then use the real client's address).
    pub trusted_proxies: client_addr::TrustedProxies,
    /// Longest a client may take to send a request's head (the request line and headers)
    /// once its connection is ready for one; a slow or silent client is cut off then, and
    /// an idle kept-alive connection is closed after the same time.
    pub header_read_timeout: Duration,
    /// Open connections on the console's listener at most (WebSockets included); more are
    /// closed at once.
    pub max_connections: usize,
    /// Open connections from one client address at most (behind a reverse proxy every
    /// browser shares the proxy's address).
    pub max_connections_per_address: usize,
    /// Sign-in attempts allowed per client address per minute.
    pub login_attempts_per_minute: u32,
    /// Key-safe codes one user may be shown in an hour.
    pub key_safe_reveals_per_hour: u32,
    /// The token the SMS gateway's inbound webhook presents; `None`: replies are refused.
    pub sms_reply_token: Option<SharedToken>,
    /// The writer's degraded mode (database unavailable), followed so that connected
    /// consoles go on working from memory and are told; `None`: never degraded.
    pub degraded: Option<tokio::sync::watch::Receiver<warden_store::DegradedState>>,
    /// Where the audit lines of reads during an outage are kept until written (`None`: in
    /// memory only).
    pub audit_journal: Option<std::path::PathBuf>,
}

/// A shared secret (a webhook token); never printed.
#[derive(Clone, PartialEq, Eq)]
pub struct SharedToken(pub String);

impl std::fmt::Debug for SharedToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SharedToken([redacted])")
    }
}

impl Default for ConsoleConfig {
    fn default() -> Self {
        ConsoleConfig {
            cookie_secure: true,
            tls: None,
            session_ttl: Duration::from_hours(12),
            idle_timeout: Duration::from_hours(2),
            max_body_bytes: 64 * 1024,
            max_import_bytes: 32 * 1024 * 1024,
            request_timeout: Duration::from_secs(30),
            login_free_failures: 3,
            login_max_delay: Duration::from_secs(30),
            trusted_proxies: client_addr::TrustedProxies::default(),
            header_read_timeout: Duration::from_secs(15),
            max_connections: 512,
            max_connections_per_address: 64,
            login_attempts_per_minute: 20,
            key_safe_reveals_per_hour: 10,
            sms_reply_token: None,
            degraded: None,
            audit_journal: None,
        }
    }
}

/// The console's shared state (cheap to clone).
#[derive(Clone, Debug)]
pub struct Console {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    store: Store,
    engine: EngineHandle,
    cfg: ConsoleConfig,
    push: broadcast::Sender<Arc<str>>,
    limiter: auth::LoginLimiter,
    throttle: throttle::Throttle,
    reveals: throttle::HourlyLimit,
    mirror: Arc<mirror::Mirror>,
    shutdown: CancellationToken,
}

impl Console {
    /// Builds the console and starts the live-push task (ends with `shutdown`).
    pub fn new(
        store: Store,
        engine: EngineHandle,
        cfg: ConsoleConfig,
        shutdown: CancellationToken,
    ) -> Console {
        let (push, _) = broadcast::channel(hub::PUSH_CAPACITY);
        let throttle = throttle::Throttle::new(cfg.login_free_failures, cfg.login_max_delay);
        let mirror = Arc::new(mirror::Mirror::new(
            cfg.degraded.clone(),
            cfg.audit_journal.as_deref(),
        ));
        tokio::spawn(tracing::Instrument::instrument(
            hub::run(
                store.clone(),
                engine.clone(),
                push.clone(),
                mirror.clone(),
                shutdown.clone(),
            ),
            tracing::info_span!("console_push"),
        ));
        Console {
            inner: Arc::new(Inner {
                store,
                engine,
                cfg,
                push,
                limiter: auth::LoginLimiter::default(),
                throttle,
                reveals: throttle::HourlyLimit::default(),
                mirror,
                shutdown,
            }),
        }
    }

    pub(crate) fn store(&self) -> &Store {
        &self.inner.store
    }
    pub(crate) fn engine(&self) -> &EngineHandle {
        &self.inner.engine
    }
    pub(crate) fn cfg(&self) -> &ConsoleConfig {
        &self.inner.cfg
    }
    pub(crate) fn push(&self) -> &broadcast::Sender<Arc<str>> {
        &self.inner.push
    }
    pub(crate) fn limiter(&self) -> &auth::LoginLimiter {
        &self.inner.limiter
    }
    pub(crate) fn throttle(&self) -> &throttle::Throttle {
        &self.inner.throttle
    }
    pub(crate) fn reveals(&self) -> &throttle::HourlyLimit {
        &self.inner.reveals
    }
    pub(crate) fn mirror(&self) -> &mirror::Mirror {
        &self.inner.mirror
    }
    /// Records a read of personal data: at once, or, while the database is unavailable,
    /// kept in the console's audit journal and written (at its own time) once it is back.
    pub(crate) async fn audit_read(
        &self,
        a: warden_store::AuditWrite,
    ) -> Result<(), error::ApiError> {
        if self.mirror().degraded_since().is_some() {
            self.mirror().defer_audit(a);
            return Ok(());
        }
        Ok(self.store().audit(&a).await?)
    }
    pub(crate) fn shutdown(&self) -> CancellationToken {
        self.inner.shutdown.clone()
    }
}

/// Every route of the console.
pub fn router(c: Console) -> Router {
    // The console's counters with a fixed label set exist, at zero, from the start.
    m::register_zero(m::CONSOLE_ZERO);
    let cfg = c.cfg().clone();
    let imports = Router::new()
        .route("/api/v1/import/clients.csv", post(csvio::import_clients))
        .route("/api/v1/import/devices.csv", post(csvio::import_devices))
        .route(
            "/api/v1/oncall/people/import",
            post(directory::import_people),
        )
        .layer(DefaultBodyLimit::max(cfg.max_import_bytes));
    let api = Router::new()
        .route("/api/v1/login", post(auth::login))
        .route("/api/v1/logout", post(auth::logout))
        .route("/api/v1/me", get(auth::me))
        .route("/api/v1/me/password", post(auth::change_password))
        .route("/api/v1/me/totp", post(totp::begin))
        .route("/api/v1/me/totp/confirm", post(totp::confirm))
        .route("/api/v1/queue", get(incidents::queue))
        .route("/api/v1/outcomes", get(incidents::outcomes))
        .route("/api/v1/ws", get(hub::ws))
        .route(
            "/api/v1/incidents/bulk-resolve",
            post(incidents::bulk_resolve),
        )
        .route("/api/v1/incidents/{id}", get(incidents::detail))
        .route("/api/v1/incidents/{id}/claim", post(incidents::claim))
        .route("/api/v1/incidents/{id}/release", post(incidents::release))
        .route("/api/v1/incidents/{id}/takeover", post(incidents::takeover))
        .route("/api/v1/incidents/{id}/note", post(incidents::note))
        .route("/api/v1/incidents/{id}/resolve", post(incidents::resolve))
        .route(
            "/api/v1/clients",
            get(records::clients).post(records::create_client),
        )
        .route(
            "/api/v1/clients/{id}",
            get(records::client).put(records::update_client),
        )
        .route(
            "/api/v1/clients/{id}/key-safe/reveal",
            post(records::reveal_key_safe),
        )
        .route(
            "/api/v1/devices",
            get(records::devices).post(records::create_device),
        )
        .route("/api/v1/devices/{id}", put(records::update_device))
        .route("/api/v1/devices/{id}/dc09-key", put(records::set_dc09_key))
        .route(
            "/api/v1/users",
            get(accounts::users).post(accounts::create_user),
        )
        .route("/api/v1/users/{id}", put(accounts::update_user))
        .route("/api/v1/audit", get(records::audit))
        .route("/api/v1/reports/client-access", get(records::client_access))
        .route("/api/v1/rejected", get(rejected::rejected))
        .route("/api/v1/pages", get(pages::mine))
        .route("/api/v1/pages/{id}/ack", post(pages::acknowledge))
        .route("/api/v1/hooks/sms-reply", post(acklinks::sms_reply))
        .route("/api/v1/oncall", get(directory::directory))
        .route("/api/v1/oncall/people", post(directory::create_person))
        .route("/api/v1/oncall/people/{id}", put(directory::update_person))
        .route("/api/v1/oncall/teams", put(directory::save_team))
        .route("/api/v1/oncall/teams/{id}", delete(directory::delete_team))
        .route("/api/v1/oncall/rotas", put(directory::save_rota))
        .route("/api/v1/oncall/rotas/{id}", delete(directory::delete_rota))
        .route(
            "/api/v1/oncall/rotas/{id}/overrides",
            post(directory::add_override),
        )
        .route(
            "/api/v1/oncall/rotas/{id}/timeline",
            get(directory::timeline),
        )
        .route(
            "/api/v1/oncall/overrides/{id}",
            delete(directory::delete_override),
        )
        .route("/api/v1/oncall/chains", put(directory::save_chain))
        .route(
            "/api/v1/oncall/chains/{id}",
            delete(directory::delete_chain),
        )
        .route("/api/v1/oncall/routes", put(directory::save_routes))
        .route("/api/v1/ooh/categories", get(ooh::categories))
        .route("/api/v1/ooh/categories/{code}", put(ooh::save_category))
        .route("/api/v1/ooh/jobs", get(ooh::jobs).post(ooh::create_job))
        .route("/api/v1/ooh/jobs/{reference}", get(ooh::job))
        .route("/api/v1/ooh/jobs/{reference}/status", post(ooh::set_status))
        .route("/api/v1/export/clients.csv", get(csvio::export_clients))
        .route("/api/v1/export/devices.csv", get(csvio::export_devices))
        .layer(DefaultBodyLimit::max(cfg.max_body_bytes))
        .merge(imports)
        .fallback(|| async { error::ApiError::not_found("this API path") });
    Router::new()
        .route("/", get(assets::index))
        .route("/assets/{file}", get(assets::file))
        .route("/assets/js/{file}", get(assets::module))
        .route("/api/openapi.json", get(assets::openapi))
        .route("/ack/{token}", get(acklinks::show).post(acklinks::confirm))
        .merge(api)
        .layer(middleware::from_fn_with_state(c.clone(), roles::authorize))
        .layer(middleware::from_fn(track))
        .layer(TimeoutLayer::with_status_code(StatusCode::REQUEST_TIMEOUT, cfg.request_timeout))
        // Error bodies get the request id (and the layers' own errors the JSON shape).
        .layer(middleware::from_fn(error::with_request_id))
        .layer(PropagateRequestIdLayer::x_request_id())
        // Every request gets an id of Warden's own, on the request (the audit trail and the
        // logs read it there) and on the answer...
        .layer(SetRequestIdLayer::x_request_id(MakeRequestUuid))
        // ...never one the client chose: SetRequestIdLayer keeps an id already present, so
        // the client's is removed first (it could forge or collide audit lines).
        .layer(middleware::map_request(drop_client_request_id))
        .layer(SetResponseHeaderLayer::overriding(
            header::CONTENT_SECURITY_POLICY,
            HeaderValue::from_static(
                "default-src 'self'; connect-src 'self'; img-src 'self' data:; frame-ancestors 'none'; base-uri 'none'; form-action 'self'",
            ),
        ))
        .layer(SetResponseHeaderLayer::overriding(
            header::X_CONTENT_TYPE_OPTIONS,
            HeaderValue::from_static("nosniff"),
        ))
        .layer(SetResponseHeaderLayer::overriding(
            header::REFERRER_POLICY,
            HeaderValue::from_static("no-referrer"),
        ))
        .layer(SetResponseHeaderLayer::if_not_present(
            header::CACHE_CONTROL,
            HeaderValue::from_static("no-store"),
        ))
        // The console uses no camera, microphone, location, payment or device APIs: a
        // script injected despite the CSP cannot ask for them either.
        .layer(SetResponseHeaderLayer::if_not_present(
            HeaderName::from_static("permissions-policy"),
            HeaderValue::from_static(PERMISSIONS_POLICY),
        ))
        .with_state(c)
}

/// Removes a client-sent `X-Request-Id` (see `router`).
async fn drop_client_request_id(mut req: Request) -> Request {
    req.headers_mut().remove("x-request-id");
    req
}

/// Counts and times every request by its route pattern (bounded labels) and logs errors.
async fn track(req: Request, next: Next) -> Response {
    let route = req
        .extensions()
        .get::<MatchedPath>()
        .map_or_else(|| "unmatched".to_owned(), |p| p.as_str().to_owned());
    let method = req.method().clone();
    let started = Instant::now();
    let resp = next.run(req).await;
    let status = resp.status();
    metrics::counter!(m::CONSOLE_REQUESTS, "route" => route.clone(), "status" => status.as_str().to_owned())
        .increment(1);
    metrics::histogram!(m::CONSOLE_REQUEST_TIME, "route" => route.clone())
        .record(started.elapsed().as_secs_f64());
    if status.is_server_error() {
        tracing::warn!(%method, route, status = status.as_u16(), "console request failed");
    }
    resp
}

/// The `Permissions-Policy` of every answer.
pub const PERMISSIONS_POLICY: &str =
    "camera=(), microphone=(), geolocation=(), payment=(), usb=(), serial=(), bluetooth=()";

/// The `Strict-Transport-Security` of every answer over HTTPS (a year; never sent over
/// plain HTTP, where it would mean nothing and could pin a proxy-less install to HTTPS).
pub const HSTS: &str = "max-age=31536000";

/// Serves the console on `listener` until `shutdown`, with the header-read timeout and
/// connection caps of its configuration (see [`listen`]), over HTTPS when
/// [`ConsoleConfig::tls`] is set (an error here: the certificate or key did not load).
pub async fn serve(
    listener: tokio::net::TcpListener,
    console: Console,
    shutdown: CancellationToken,
) -> std::io::Result<()> {
    let cfg = console.cfg();
    let limits = listen::Limits {
        name: "console",
        section: "console",
        header_read_timeout: cfg.header_read_timeout,
        max_connections: cfg.max_connections,
        max_connections_per_address: cfg.max_connections_per_address,
    };
    let tls = cfg.tls.clone();
    listen::serve_with(listener, router(console), limits, tls, shutdown).await
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    /// Every `/api/` route `router()` serves, as (path, lower-case method).
    fn served() -> BTreeSet<(String, String)> {
        // The route table with all whitespace removed, however rustfmt wrapped it.
        let source: String = include_str!("lib.rs")
            .chars()
            .filter(|c| !c.is_whitespace())
            .collect();
        let mut served = std::collections::BTreeSet::new();
        for (i, _) in source.match_indices(".route(\"/api/") {
            let rest = &source[i + 8..];
            let path = &rest[..rest.find('"').expect("closing quote")];
            let end = [".route(", ".layer(", ".merge(", ".fallback("]
                .iter()
                .filter_map(|m| rest.find(m))
                .min()
                .expect("end of route");
            let call = &rest[..end];
            for method in ["get", "post", "put", "delete"] {
                if call.contains(&format!("{method}(")) {
                    served.insert((path.to_owned(), method.to_owned()));
                }
            }
        }
        assert!(served.len() > 30, "found only {} routes", served.len());
        served
    }

    /// The role table names exactly the routes served, once each.
    #[test]
    fn the_role_table_covers_exactly_the_routes_served() {
        let table: Vec<(String, String)> = super::roles::ROUTES
            .iter()
            .map(|(m, p, _)| ((*p).to_owned(), m.to_lowercase()))
            .collect();
        let unique: BTreeSet<(String, String)> = table.iter().cloned().collect();
        assert_eq!(unique.len(), table.len(), "a route is in the table twice");
        assert_eq!(unique, served());
    }

    /// Each operation's documented roles ("Roles: ..." first line) are the table's.
    #[test]
    fn the_documented_roles_of_every_operation_are_the_role_tables() {
        let doc: serde_json::Value =
            serde_json::from_str(super::OPENAPI).expect("the document is valid JSON");
        let mut wrong = Vec::new();
        for (method, path, roles) in super::roles::ROUTES {
            let op = &doc["paths"][*path][method.to_lowercase()];
            let first = op["description"]
                .as_str()
                .unwrap_or_default()
                .lines()
                .next()
                .unwrap_or_default()
                .to_owned();
            let documented: BTreeSet<String> = if first.starts_with("Roles: none") {
                BTreeSet::new()
            } else if first.starts_with("Any role") {
                super::roles::ANYONE
                    .iter()
                    .map(|r| r.as_str().to_owned())
                    .collect()
            } else if let Some(list) = first.strip_prefix("Roles: ") {
                list.split('.')
                    .next()
                    .unwrap_or_default()
                    .split(", ")
                    .map(str::to_owned)
                    .collect()
            } else {
                wrong.push(format!("{method} {path}: no roles line: {first:?}"));
                continue;
            };
            let table: BTreeSet<String> = roles.iter().map(|r| r.as_str().to_owned()).collect();
            if documented != table {
                wrong.push(format!(
                    "{method} {path}: documented {documented:?}, table {table:?}"
                ));
            }
        }
        assert!(wrong.is_empty(), "{wrong:#?}");
    }

    /// Every API route in `router()` is documented in the OpenAPI document with the same
    /// method, and the document names no route that does not exist.
    #[test]
    fn the_openapi_document_lists_exactly_the_routes_served() {
        let doc: serde_json::Value =
            serde_json::from_str(super::OPENAPI).expect("the document is valid JSON");
        let paths = doc["paths"].as_object().expect("paths");
        let served = served();
        let mut documented = std::collections::BTreeSet::new();
        for (path, ops) in paths {
            for method in ops.as_object().expect("operations").keys() {
                if ["get", "post", "put", "delete"].contains(&method.as_str()) {
                    documented.insert((path.clone(), method.clone()));
                }
            }
        }
        assert_eq!(served, documented);
    }
}
