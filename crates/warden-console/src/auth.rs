//! Accounts and sessions: argon2id password hashes, an opaque session token in an
//! HttpOnly SameSite=Strict cookie (only its SHA-256 is stored), a per-session CSRF token
//! required on every state-changing request, lock-out after repeated failures and a
//! per-address login rate limit.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::Mutex;
use std::time::Instant;

use argon2::Argon2;
use argon2::password_hash::{PasswordHash, PasswordHasher as _, PasswordVerifier as _, SaltString};
use axum::Json;
use axum::extract::{ConnectInfo, FromRequestParts, State};
use axum::http::request::Parts;
use axum::http::{Method, StatusCode};
use axum::response::{IntoResponse, Response};
use axum_extra::extract::cookie::{Cookie, CookieJar, SameSite};
use serde::{Deserialize, Serialize};
use sha2::{Digest as _, Sha256};
use time::OffsetDateTime;
use utoipa::ToSchema;
use warden_store::{AuditWrite, UserRow};
use warden_telemetry as m;

use crate::Console;
use crate::error::{ApiError, ApiJson};

/// The session cookie's name.
pub const COOKIE: &str = "warden_session";
/// The header carrying the CSRF token.
pub const CSRF_HEADER: &str = "x-csrf-token";

/// A console role (defined once, in `warden-types`; the store decodes it).
pub use warden_types::Role;

/// Roles allowed to do a thing.
pub const HANDLERS: &[Role] = &[Role::Operator, Role::Supervisor];
pub const SUPERVISORS: &[Role] = &[Role::Supervisor];
pub const ADMINS: &[Role] = &[Role::Admin];
pub const RECORD_EDITORS: &[Role] = &[Role::Supervisor, Role::Admin];
pub const RECORD_READERS: &[Role] = &[Role::Operator, Role::Supervisor, Role::Admin];
pub const OOH_DESK: &[Role] = &[Role::Operator, Role::Supervisor];
pub const OOH_READERS: &[Role] = &[Role::Operator, Role::Supervisor, Role::OnCall, Role::Admin];
pub const AUDITORS: &[Role] = &[Role::Supervisor, Role::Admin];

/// The signed-in user behind a request (the extractor answers 401 without a live session
/// and 403 for a state-changing request without the session's CSRF token).
#[derive(Debug, Clone)]
pub struct Auth {
    pub user: UserRow,
    pub role: Role,
    pub csrf: String,
    pub ip: Option<String>,
    pub request_id: Option<String>,
    token_hash: Vec<u8>,
}

impl Auth {
    /// 403 unless the user's role is one of `roles`.
    pub fn require(&self, roles: &[Role]) -> Result<(), ApiError> {
        if roles.contains(&self.role) {
            Ok(())
        } else {
            Err(ApiError::forbidden(format!(
                "your role ({}) may not do this",
                self.role.as_str()
            )))
        }
    }

    /// The stored hash of this request's session token.
    pub fn token_hash(&self) -> &[u8] {
        &self.token_hash
    }

    /// An audit line of this user's request.
    pub fn audit(&self, action: &str, object_type: &str, object_id: Option<String>) -> AuditWrite {
        AuditWrite {
            user_id: Some(self.user.id),
            action: action.to_owned(),
            object_type: object_type.to_owned(),
            object_id,
            before: None,
            after: None,
            request_id: self.request_id.clone(),
            ip: self.ip.clone(),
            at: None,
        }
    }
}

fn token_hash(token: &str) -> Vec<u8> {
    Sha256::digest(token.as_bytes()).to_vec()
}

/// Compares two secrets in time independent of where they differ.
fn same(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

fn request_meta(parts: &Parts) -> (Option<String>, Option<String>) {
    let ip = parts
        .extensions
        .get::<ConnectInfo<SocketAddr>>()
        .map(|c| c.0.ip().to_string());
    let rid = parts
        .headers
        .get("x-request-id")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    (ip, rid)
}

impl FromRequestParts<Console> for Auth {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, c: &Console) -> Result<Self, ApiError> {
        let jar = CookieJar::from_headers(&parts.headers);
        let Some(token) = jar.get(COOKIE).map(|k| k.value().to_owned()) else {
            return Err(ApiError::new(
                StatusCode::UNAUTHORIZED,
                "not_signed_in",
                "sign in first",
            ));
        };
        let hash = token_hash(&token);
        let idle = c.cfg().idle_timeout;
        // While the database is unavailable, a session it confirmed lately is honoured from
        // memory (nothing waits for a database that is not there).
        let found = if let Some(s) = c.mirror().session(&hash, idle) {
            Some(s)
        } else {
            let s = c.store().session(&hash, idle).await?;
            match &s {
                Some(s) => c.mirror().session_seen(&hash, s),
                None => c.mirror().session_gone(&hash),
            }
            s
        };
        let Some(s) = found else {
            return Err(ApiError::new(
                StatusCode::UNAUTHORIZED,
                "session_expired",
                "your session has ended; sign in again",
            ));
        };
        if !matches!(parts.method, Method::GET | Method::HEAD) {
            let sent = parts
                .headers
                .get(CSRF_HEADER)
                .map(axum::http::HeaderValue::as_bytes)
                .unwrap_or_default();
            if !same(sent, s.csrf_token.as_bytes()) {
                return Err(ApiError::forbidden(
                    "missing or wrong X-CSRF-Token header; reload the page",
                ));
            }
        }
        let role = s.user.role;
        let (ip, request_id) = request_meta(parts);
        Ok(Auth {
            user: s.user,
            role,
            csrf: s.csrf_token,
            ip,
            request_id,
            token_hash: hash,
        })
    }
}

/// Hashes a password with argon2id (default parameters, random salt).
pub fn hash_password(password: &str) -> Result<String, String> {
    let mut salt = [0u8; 16];
    getrandom::fill(&mut salt).map_err(|e| e.to_string())?;
    let salt = SaltString::encode_b64(&salt).map_err(|e| e.to_string())?;
    Argon2::default()
        .hash_password(password.as_bytes(), &salt)
        .map(|h| h.to_string())
        .map_err(|e| e.to_string())
}

/// A password policy every account must meet.
pub fn check_password(password: &str) -> Result<(), ApiError> {
    if password.chars().count() < 10 {
        return Err(ApiError::bad_request(
            "weak_password",
            "a password needs at least 10 characters",
        ));
    }
    if password.len() > 1024 {
        return Err(ApiError::bad_request(
            "weak_password",
            "that password is too long",
        ));
    }
    Ok(())
}

fn verify_password(password: &str, hash: &str) -> bool {
    PasswordHash::new(hash).is_ok_and(|h| {
        Argon2::default()
            .verify_password(password.as_bytes(), &h)
            .is_ok()
    })
}

/// A hash to verify against when the user does not exist, so timing does not tell
/// whether a username is taken.
fn dummy_hash() -> &'static str {
    static DUMMY: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    DUMMY.get_or_init(|| hash_password("not a real password").unwrap_or_default())
}

fn random_token() -> Result<String, ApiError> {
    let mut b = [0u8; 32];
    getrandom::fill(&mut b).map_err(|e| {
        tracing::error!(error = %e, "no randomness for a session token");
        ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "unavailable", "try again")
    })?;
    Ok(hex::encode(b))
}

/// Per-address login attempts in the current minute.
#[derive(Debug, Default)]
pub struct LoginLimiter {
    seen: Mutex<HashMap<IpAddr, (Instant, u32)>>,
}

impl LoginLimiter {
    /// Counts an attempt; `false` when the address is over `per_minute`.
    pub fn allow(&self, ip: IpAddr, per_minute: u32, now: Instant) -> bool {
        let mut seen = self
            .seen
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if seen.len() > 10_000 {
            seen.retain(|_, (start, _)| now.duration_since(*start).as_secs() < 60);
        }
        let e = seen.entry(ip).or_insert((now, 0));
        if now.duration_since(e.0).as_secs() >= 60 {
            *e = (now, 0);
        }
        e.1 += 1;
        e.1 <= per_minute
    }
}

#[derive(Debug, Deserialize, ToSchema)]
pub struct LoginBody {
    username: String,
    password: String,
}

/// The user as the API shows it.
#[derive(Debug, Serialize, ToSchema)]
#[schema(as = User)]
pub struct UserOut {
    pub id: i64,
    pub username: String,
    pub display_name: String,
    pub role: Role,
    pub disabled: bool,
}

impl From<&UserRow> for UserOut {
    fn from(u: &UserRow) -> Self {
        UserOut {
            id: u.id,
            username: u.username.clone(),
            display_name: u.display_name.clone(),
            role: u.role,
            disabled: u.disabled,
        }
    }
}

/// A session: the signed-in user and the CSRF token every change must carry.
#[derive(Debug, Serialize, ToSchema)]
#[schema(as = Session)]
pub struct SessionResponse {
    pub user: UserOut,
    /// Send as the `X-CSRF-Token` header on every request that is not a GET.
    pub csrf_token: String,
}

fn login_failed(outcome: &'static str) {
    metrics::counter!(m::CONSOLE_LOGINS, "outcome" => outcome).increment(1);
}

/// Sign in.
#[utoipa::path(post, path = "/api/v1/login", tag = "Auth", operation_id = "login",
    summary = "Sign in",
    description = "Roles: none (no session needed).

Opens a session: sets the `warden_session` cookie (HttpOnly, SameSite=Strict, Path=/, Secure unless turned off) and returns the user and the session's CSRF token. No session or CSRF token is needed. The username is trimmed and lower-cased. Repeated failed passwords lock the account (5 by default, for 15 minutes); each client address may try 20 times a minute by default.",
    request_body = LoginBody,
    responses(
        (status = 200, description = "Signed in.", body = SessionResponse),
        (status = 400, description = "`invalid_json`: the body is not JSON with `username` and `password`.", body = crate::openapi::ErrorBody),
        (status = 401, description = "`bad_credentials`: wrong username or password.", body = crate::openapi::ErrorBody),
        (status = 403, description = "`forbidden`: the password was right but the account is disabled.", body = crate::openapi::ErrorBody),
        (status = 413, response = crate::openapi::TooLarge),
        (status = 415, response = crate::openapi::UnsupportedMediaType),
        (status = 423, description = "`account_locked`: the account is locked after repeated failed sign-ins.", body = crate::openapi::ErrorBody),
        (status = 429, description = "`rate_limited`: too many sign-in attempts from this address in the last minute.", body = crate::openapi::ErrorBody),
        (status = 503, description = "`database_unavailable`, or `unavailable` when no randomness was available for the session token.", body = crate::openapi::ErrorBody),
    )
)]
pub async fn login(
    State(c): State<Console>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    jar: CookieJar,
    ApiJson(body): ApiJson<LoginBody>,
) -> Result<Response, ApiError> {
    let cfg = c.cfg();
    if !c
        .limiter()
        .allow(peer.ip(), cfg.login_attempts_per_minute, Instant::now())
    {
        login_failed("rate_limited");
        tracing::warn!(ip = %peer.ip(), "console login rate limit hit");
        return Err(ApiError::new(
            StatusCode::TOO_MANY_REQUESTS,
            "rate_limited",
            "too many sign-in attempts from this computer; wait a minute and try again",
        ));
    }
    let username = body.username.trim().to_lowercase();
    let user = c.store().user_by_username(&username).await?;
    let bad = || {
        ApiError::new(
            StatusCode::UNAUTHORIZED,
            "bad_credentials",
            "wrong username or password",
        )
    };
    let password = body.password;
    let Some(user) = user else {
        // Same work as a real check, so the answer time does not reveal unknown names.
        let _ = tokio::task::spawn_blocking(move || verify_password(&password, dummy_hash())).await;
        login_failed("bad_credentials");
        return Err(bad());
    };
    let now = OffsetDateTime::now_utc();
    if user.locked_until.is_some_and(|t| t > now) {
        login_failed("locked");
        return Err(ApiError::new(
            StatusCode::LOCKED,
            "account_locked",
            format!(
                "this account is locked after repeated failed sign-ins; ask an administrator or wait {} minutes",
                cfg.login_lock.as_secs().div_ceil(60)
            ),
        ));
    }
    let hash = user.password_hash.clone();
    let ok = tokio::task::spawn_blocking(move || verify_password(&password, &hash))
        .await
        .unwrap_or(false);
    let audit = |action: &str| AuditWrite {
        user_id: Some(user.id),
        action: action.to_owned(),
        object_type: "session".into(),
        object_id: None,
        before: None,
        after: None,
        request_id: None,
        ip: Some(peer.ip().to_string()),
        at: None,
    };
    if !ok {
        let (failures, locked) = c
            .store()
            .record_login_failure(user.id, cfg.login_max_failures, cfg.login_lock)
            .await?;
        let mut a = audit("login.failed");
        a.after = Some(
            serde_json::json!({ "failed_logins": failures, "locked_until": locked.map(OffsetDateTime::unix_timestamp) }),
        );
        c.store().audit(&a).await?;
        login_failed("bad_credentials");
        return Err(bad());
    }
    if user.disabled {
        login_failed("disabled");
        return Err(ApiError::forbidden("this account is disabled"));
    }
    let token = random_token()?;
    let csrf = random_token()?;
    let expires = now + cfg.session_ttl;
    c.store()
        .create_session(
            user.id,
            &token_hash(&token),
            &csrf,
            expires,
            Some(&peer.ip().to_string()),
        )
        .await?;
    c.store().audit(&audit("login")).await?;
    metrics::counter!(m::CONSOLE_LOGINS, "outcome" => "ok").increment(1);
    tracing::info!(user = user.id, "console sign-in");
    let cookie = Cookie::build((COOKIE, token))
        .http_only(true)
        .secure(cfg.cookie_secure)
        .same_site(SameSite::Strict)
        .path("/")
        .max_age(time::Duration::seconds(
            i64::try_from(cfg.session_ttl.as_secs()).unwrap_or(i64::MAX),
        ))
        .build();
    let body = Json(SessionResponse {
        user: UserOut::from(&user),
        csrf_token: csrf,
    });
    Ok((jar.add(cookie), body).into_response())
}

/// Sign out.
#[utoipa::path(post, path = "/api/v1/logout", tag = "Auth", operation_id = "logout",
    summary = "Sign out",
    description = "Roles: operator, supervisor, admin, on_call.

Ends the session and clears the cookie.",
    responses(
        (status = 204, description = "Signed out."),
        (status = 401, response = crate::openapi::Unauthorized),
        (status = 403, description = "`forbidden`: the `X-CSRF-Token` header is missing or wrong.", body = crate::openapi::ErrorBody),
        (status = 503, response = crate::openapi::Unavailable),
    )
)]
pub async fn logout(
    State(c): State<Console>,
    auth: Auth,
    jar: CookieJar,
) -> Result<Response, ApiError> {
    c.store().delete_session(&auth.token_hash).await?;
    c.store()
        .audit(&auth.audit("logout", "session", None))
        .await?;
    let gone = Cookie::build((COOKIE, "")).path("/").build();
    Ok((jar.remove(gone), StatusCode::NO_CONTENT).into_response())
}

/// The signed-in user and CSRF token.
#[utoipa::path(get, path = "/api/v1/me", tag = "Auth", operation_id = "getMe",
    summary = "The signed-in user and CSRF token",
    description = "Roles: operator, supervisor, admin, on_call.

Use on page load to learn whether a session is live and to recover the CSRF token.",
    responses(
        (status = 200, description = "The session's user and CSRF token.", body = SessionResponse),
        (status = 401, response = crate::openapi::Unauthorized),
        (status = 403, description = "`forbidden`: the account has no valid role.", body = crate::openapi::ErrorBody),
        (status = 503, response = crate::openapi::Unavailable),
    )
)]
pub async fn me(auth: Auth) -> Json<SessionResponse> {
    Json(SessionResponse {
        user: UserOut::from(&auth.user),
        csrf_token: auth.csrf,
    })
}
