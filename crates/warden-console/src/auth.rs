//! Accounts and sessions: argon2id password hashes, an opaque session token in an
//! HttpOnly SameSite=Strict cookie (only its SHA-256 is stored), a per-session CSRF token
//! required on every state-changing request, progressive delays after repeated failures
//! (`throttle`; never a lock-out) and a per-address login rate limit.

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
/// With `cookie_secure` (the default) the name carries the `__Host-` prefix: browsers then
/// accept it only over HTTPS (or from localhost), with `Path=/` and no `Domain`, so no
/// other host or plain-HTTP page can set or shadow it.
pub const COOKIE: &str = "__Host-warden_session";
/// The session cookie's name when `cookie_secure` is off (plain HTTP behind a trusted
/// TLS-terminating proxy): the prefix would make browsers refuse it.
pub const COOKIE_PLAIN: &str = "warden_session";

/// The session cookie's name for these settings.
pub fn cookie_name(secure: bool) -> &'static str {
    if secure { COOKIE } else { COOKIE_PLAIN }
}
/// The header carrying the CSRF token.
pub const CSRF_HEADER: &str = "x-csrf-token";

/// A console role (defined once, in `warden-types`; the store decodes it).
pub use warden_types::Role;

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

/// The real client address of a request (see [`crate::client_addr`]).
pub(crate) fn client_ip(c: &Console, peer: IpAddr, headers: &axum::http::HeaderMap) -> IpAddr {
    c.cfg().trusted_proxies.client(peer, headers)
}

async fn request_meta(parts: &mut Parts, c: &Console) -> (Option<String>, Option<String>) {
    let ip = ConnectInfo::<SocketAddr>::from_request_parts(parts, c)
        .await
        .ok()
        .map(|p| client_ip(c, p.0.ip(), &parts.headers).to_string());
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
        // Already checked by `roles::authorize` for this request.
        if let Some(auth) = parts.extensions.get::<Auth>() {
            return Ok(auth.clone());
        }
        let jar = CookieJar::from_headers(&parts.headers);
        let name = cookie_name(c.cfg().cookie_secure);
        let Some(token) = jar.get(name).map(|k| k.value().to_owned()) else {
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
        let (ip, request_id) = request_meta(parts, c).await;
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

/// The policy every account's password must meet: 10 to 1024 characters, and not easy to
/// guess by `zxcvbn`'s estimate (score 3 of 4 at least: its dictionaries of common and
/// breached passwords, names, words, keyboard patterns, dates and repeats), with the
/// account's own names (`user_inputs`: username, display name) counted as known words.
pub fn check_password(password: &str, user_inputs: &[&str]) -> Result<(), ApiError> {
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
    let mut inputs = user_inputs.to_vec();
    inputs.extend(["warden", "alarm", "control", "centre", "operator"]);
    let estimate = zxcvbn::zxcvbn(password, &inputs);
    if u8::from(estimate.score()) < 3 {
        let why = estimate
            .feedback()
            .and_then(zxcvbn::feedback::Feedback::warning)
            .map_or_else(String::new, |w| format!(" ({w})"));
        return Err(ApiError::bad_request(
            "weak_password",
            format!(
                "that password is too easy to guess{why}; use a few unrelated words or a longer phrase"
            ),
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
    /// The authenticator app's 6-digit code, for an account with a second factor.
    #[serde(default)]
    otp: Option<String>,
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
    /// Sign-in asks for a code from an authenticator app after the password.
    pub second_factor: bool,
}

impl From<&UserRow> for UserOut {
    fn from(u: &UserRow) -> Self {
        UserOut {
            id: u.id,
            username: u.username.clone(),
            display_name: u.display_name.clone(),
            role: u.role,
            disabled: u.disabled,
            second_factor: u.totp_enabled,
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

/// The one answer to every refused sign-in that is not the client's own rate limit:
/// unknown user, wrong password and an attempt still inside its delay look the same.
fn bad_credentials() -> ApiError {
    ApiError::new(
        StatusCode::UNAUTHORIZED,
        "bad_credentials",
        "wrong username or password",
    )
}

/// Waits out `key`'s delay in the in-memory throttle, then takes the attempt; `false` when
/// the delay did not end within the longest delay (the slot keeps being taken by others).
async fn reserve_in_memory(c: &Console, key: &str) -> bool {
    let deadline = Instant::now() + c.cfg().login_max_delay * 2;
    loop {
        match c.throttle().reserve(key, Instant::now()) {
            Ok(()) => return true,
            Err(wait) if Instant::now() + wait <= deadline => tokio::time::sleep(wait).await,
            Err(_) => return false,
        }
    }
}

/// Waits out the account's delay, then takes the attempt in the database (before the
/// password is checked); `None` when the delay did not end within twice the longest delay.
async fn reserve_account(c: &Console, id: i64) -> Result<Option<i32>, ApiError> {
    let cfg = c.cfg();
    let deadline = Instant::now() + cfg.login_max_delay * 2;
    loop {
        match c
            .store()
            .reserve_login(id, cfg.login_free_failures, cfg.login_max_delay)
            .await?
        {
            Ok(failures) => return Ok(Some(failures)),
            Err(wait) if Instant::now() + wait <= deadline => {
                // A little past the stored time, so the next try finds it over.
                tokio::time::sleep(wait + std::time::Duration::from_millis(5)).await;
            }
            Err(_) => return Ok(None),
        }
    }
}

/// The account's attempt number `failures` failed: its delay runs from now.
async fn account_failed(c: &Console, id: i64, failures: i32) -> Result<(), ApiError> {
    let cfg = c.cfg();
    let delay = crate::throttle::delay_after(
        u32::try_from(failures).unwrap_or(0),
        cfg.login_free_failures,
        cfg.login_max_delay,
    );
    Ok(c.store().login_failed(id, delay).await?)
}

/// Sign in.
#[utoipa::path(post, path = "/api/v1/login", tag = "Auth", operation_id = "login",
    summary = "Sign in",
    description = "Roles: none (no session needed).

Opens a session: sets the `__Host-warden_session` cookie (HttpOnly, SameSite=Strict, Path=/, Secure; named `warden_session` without Secure when `console.cookie_secure` is off) and returns the user and the session's CSRF token. No session or CSRF token is needed. The username is trimmed and lower-cased. No account is ever locked: after 3 failed sign-ins in a row (per account, and per client address) each attempt waits before it is checked, 1 s doubling up to 30 s by default, and the right password is then admitted. An unknown username, a wrong password and an attempt whose wait could not end are answered alike (401). Each client address may try 20 times a minute by default (behind a configured trusted proxy, the address `X-Forwarded-For` names).",
    request_body = LoginBody,
    responses(
        (status = 200, description = "Signed in.", body = SessionResponse),
        (status = 400, description = "`invalid_json`: the body is not JSON with `username` and `password`.", body = crate::openapi::ErrorBody),
        (status = 401, description = "`bad_credentials`: wrong username or password.", body = crate::openapi::ErrorBody),
        (status = 403, description = "`forbidden`: the password was right but the account is disabled.", body = crate::openapi::ErrorBody),
        (status = 413, response = crate::openapi::TooLarge),
        (status = 415, response = crate::openapi::UnsupportedMediaType),
        (status = 429, description = "`rate_limited`: too many sign-in attempts from this address in the last minute.", body = crate::openapi::ErrorBody),
        (status = 503, description = "`database_unavailable`, or `unavailable` when no randomness was available for the session token.", body = crate::openapi::ErrorBody),
    )
)]
pub async fn login(
    State(c): State<Console>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: axum::http::HeaderMap,
    jar: CookieJar,
    ApiJson(body): ApiJson<LoginBody>,
) -> Result<Response, ApiError> {
    let cfg = c.cfg();
    let ip = client_ip(&c, peer.ip(), &headers);
    let username = body.username.trim().to_lowercase();
    // A sign-in's audit line: Warden's request id and the real client address.
    let session_line =
        |user_id: Option<i64>, action: &str, after: Option<serde_json::Value>| AuditWrite {
            user_id,
            action: action.to_owned(),
            object_type: "session".into(),
            object_id: None,
            before: None,
            after,
            request_id: headers
                .get("x-request-id")
                .and_then(|v| v.to_str().ok())
                .map(str::to_owned),
            ip: Some(ip.to_string()),
            at: None,
        };
    // Every refused sign-in is recorded.
    let refused = async |user_id: Option<i64>, reason: &'static str, failures: Option<i32>| {
        login_failed(reason);
        let a = session_line(
            user_id,
            "login.refused",
            Some(serde_json::json!({
                "username": username.chars().take(100).collect::<String>(),
                "reason": reason,
                "failed_logins": failures,
            })),
        );
        if let Err(e) = c.store().audit(&a).await {
            tracing::warn!(error = %e, "a refused sign-in could not be recorded");
        }
    };
    if !c
        .limiter()
        .allow(ip, cfg.login_attempts_per_minute, Instant::now())
    {
        refused(None, "rate_limited", None).await;
        tracing::warn!(%ip, "console login rate limit hit");
        return Err(ApiError::new(
            StatusCode::TOO_MANY_REQUESTS,
            "rate_limited",
            "too many sign-in attempts from this computer; wait a minute and try again",
        ));
    }
    let source = format!("ip:{ip}");
    if !reserve_in_memory(&c, &source).await {
        refused(None, "delayed", None).await;
        return Err(bad_credentials());
    }
    let user = c.store().user_by_username(&username).await?;
    let password = body.password;
    let Some(user) = user else {
        // An unknown name is delayed like a real account and costs the same hash check,
        // so neither the answer nor its time tells which names exist.
        let key = format!("user:{username}");
        let known = reserve_in_memory(&c, &key).await;
        let _ = tokio::task::spawn_blocking(move || verify_password(&password, dummy_hash())).await;
        c.throttle().failed(&key, Instant::now());
        c.throttle().failed(&source, Instant::now());
        refused(None, if known { "unknown_user" } else { "delayed" }, None).await;
        return Err(bad_credentials());
    };
    let Some(failures) = reserve_account(&c, user.id).await? else {
        refused(Some(user.id), "delayed", None).await;
        return Err(bad_credentials());
    };
    let hash = user.password_hash.clone();
    let ok = tokio::task::spawn_blocking(move || verify_password(&password, &hash))
        .await
        .unwrap_or(false);
    if !ok {
        account_failed(&c, user.id, failures).await?;
        c.throttle().failed(&source, Instant::now());
        refused(Some(user.id), "bad_credentials", Some(failures)).await;
        return Err(bad_credentials());
    }
    c.throttle().succeeded(&source);
    if user.disabled {
        refused(Some(user.id), "disabled", None).await;
        return Err(ApiError::forbidden("this account is disabled"));
    }
    match crate::totp::check_at_sign_in(&c, user.id, body.otp.as_deref()).await {
        Ok(()) => {}
        Err(crate::totp::SecondFactor::Required) => {
            refused(Some(user.id), "otp_required", None).await;
            return Err(ApiError::new(
                StatusCode::UNAUTHORIZED,
                "otp_required",
                "enter the 6-digit code from your authenticator app",
            ));
        }
        Err(crate::totp::SecondFactor::Wrong) => {
            account_failed(&c, user.id, failures).await?;
            refused(Some(user.id), "bad_otp", Some(failures)).await;
            return Err(bad_credentials());
        }
        Err(crate::totp::SecondFactor::Store(e)) => return Err(e.into()),
    }
    let token = random_token()?;
    let csrf = random_token()?;
    let now = OffsetDateTime::now_utc();
    let expires = now + cfg.session_ttl;
    c.store()
        .create_session(
            user.id,
            &token_hash(&token),
            &csrf,
            expires,
            Some(&ip.to_string()),
        )
        .await?;
    c.store()
        .audit(&session_line(Some(user.id), "login", None))
        .await?;
    metrics::counter!(m::CONSOLE_LOGINS, "outcome" => "ok").increment(1);
    tracing::info!(user = user.id, "console sign-in");
    let cookie = Cookie::build((cookie_name(cfg.cookie_secure), token))
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
    let gone = Cookie::build((cookie_name(c.cfg().cookie_secure), ""))
        .path("/")
        .secure(c.cfg().cookie_secure)
        .build();
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

#[derive(Debug, Deserialize, ToSchema)]
#[schema(as = PasswordChangeRequest)]
pub struct PasswordChange {
    /// The password in use now.
    current_password: String,
    /// The new one: 10 characters at least and not easy to guess.
    new_password: String,
}

/// Checks the signed-in user's password again (with the sign-in delays); a wrong one is
/// audited as `refused_action` and answered 401.
pub(crate) async fn confirm_password(
    c: &Console,
    auth: &Auth,
    password: String,
    refused_action: &str,
) -> Result<(), ApiError> {
    let Some(failures) = reserve_account(c, auth.user.id).await? else {
        return Err(bad_credentials());
    };
    let hash = auth.user.password_hash.clone();
    let ok = tokio::task::spawn_blocking(move || verify_password(&password, &hash))
        .await
        .unwrap_or(false);
    if !ok {
        account_failed(c, auth.user.id, failures).await?;
        let mut a = auth.audit(refused_action, "user", Some(auth.user.id.to_string()));
        a.after =
            Some(serde_json::json!({ "reason": "bad_credentials", "failed_logins": failures }));
        c.store().audit(&a).await?;
        login_failed("bad_credentials");
        return Err(bad_credentials());
    }
    Ok(())
}

/// Change one's own password.
#[utoipa::path(post, path = "/api/v1/me/password", tag = "Auth", operation_id = "changeMyPassword",
    summary = "Change one's own password",
    description = "Roles: operator, supervisor, admin, on_call.

Checks the current password (with the same delays as a sign-in after failures), applies the password policy to the new one (10 to 1024 characters, not easy to guess: common and breached passwords, words, names, keyboard patterns and the account's own names are refused), and ends every other session of the account; this one goes on. Recorded as `user.password_change`.",
    request_body = PasswordChange,
    responses(
        (status = 204, description = "Changed."),
        (status = 400, description = "`weak_password`: the new password does not meet the policy (the message says why); `invalid_json`.", body = crate::openapi::ErrorBody),
        (status = 401, description = "`bad_credentials`: the current password is wrong; or no session.", body = crate::openapi::ErrorBody),
        (status = 403, description = "`forbidden`: the `X-CSRF-Token` header is missing or wrong.", body = crate::openapi::ErrorBody),
        (status = 503, response = crate::openapi::Unavailable),
    )
)]
pub async fn change_password(
    State(c): State<Console>,
    auth: Auth,
    ApiJson(body): ApiJson<PasswordChange>,
) -> Result<axum::http::StatusCode, ApiError> {
    confirm_password(
        &c,
        &auth,
        body.current_password,
        "user.password_change.refused",
    )
    .await?;
    check_password(
        &body.new_password,
        &[&auth.user.username, &auth.user.display_name],
    )?;
    let new = body.new_password;
    let hash = tokio::task::spawn_blocking(move || hash_password(&new))
        .await
        .map_err(|e| crate::accounts::hash_failed(&e.to_string()))?
        .map_err(|e| crate::accounts::hash_failed(&e))?;
    let audit = auth.audit(
        "user.password_change",
        "user",
        Some(auth.user.id.to_string()),
    );
    c.store()
        .change_own_password(auth.user.id, &hash, &auth.token_hash, &audit)
        .await?;
    tracing::info!(user = auth.user.id, "console password changed by its user");
    Ok(StatusCode::NO_CONTENT)
}

#[cfg(test)]
mod tests {
    use super::check_password;

    #[test]
    fn the_password_policy_refuses_guessable_passwords_and_admits_passphrases() {
        for weak in [
            "password123",
            "Password2026!",
            "qwertyuiop",
            "1234567890",
            "letmein12345",
            "aliceoperator",
        ] {
            let e = check_password(weak, &["alice", "Alice Operator"]).expect_err(weak);
            assert_eq!(e.code, "weak_password", "{weak}");
        }
        // Including the ones the tests, benches and demo use.
        for strong in [
            "correct horse battery staple",
            "plum kettle orbit 77 tram",
            "outage bench operator 2026",
            "degraded mode drill 2026",
            "bench password 0001",
            "demo-3f9a1c0e5b7d2a64",
        ] {
            check_password(strong, &["alice", "Alice Operator"]).expect(strong);
        }
    }
}
