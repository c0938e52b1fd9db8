//! Console accounts as administrators manage them: list, create, update (a new password,
//! role or a disabled account ends the account's sessions), and `wardend user add`.

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use serde::Deserialize;
use utoipa::ToSchema;
use warden_store::UserWrite;

use crate::Console;
use crate::auth::{Auth, Role, UserOut, check_password, hash_password};
use crate::error::{ApiError, ApiJson, ApiPath};

#[derive(Debug, Deserialize, ToSchema)]
#[schema(as = UserInput)]
pub struct UserBody {
    username: String,
    display_name: String,
    role: Role,
    #[serde(default)]
    password: Option<String>,
    #[serde(default)]
    disabled: bool,
}

/// `wardend user add`: adds a console account, or resets the password, role and name of the
/// one with that username, with the API's checks (username, role, display name, password
/// policy) and hashing; recorded in the audit trail as `user.cli`.
pub async fn add_or_reset_user(
    store: &warden_store::Store,
    username: &str,
    role: &str,
    display_name: Option<&str>,
    password: String,
) -> Result<warden_store::UserRow, ApiError> {
    let role: Role = role.parse().map_err(|e: warden_types::UnknownName| {
        ApiError::bad_request("invalid_value", e.to_string())
    })?;
    let w = user_write(UserBody {
        username: username.to_owned(),
        display_name: display_name.unwrap_or(username).to_owned(),
        role,
        password: Some(password),
        disabled: false,
    })
    .await?;
    let audit = warden_store::AuditWrite {
        action: "user.cli".into(),
        object_type: "user".into(),
        ..warden_store::AuditWrite::default()
    };
    Ok(match store.user_by_username(&w.username).await? {
        Some(u) => {
            let user = store.update_user(u.id, &w, audit).await?;
            // A reset is also the way back in after a lost phone: no second factor.
            store.clear_totp(u.id).await?;
            user
        }
        None => store.insert_user(&w, audit).await?,
    })
}

async fn user_write(b: UserBody) -> Result<UserWrite, ApiError> {
    let username = b.username.trim().to_lowercase();
    if username.is_empty()
        || username.len() > 64
        || !username
            .bytes()
            .all(|c| c.is_ascii_alphanumeric() || b"._-".contains(&c))
    {
        return Err(ApiError::bad_request(
            "invalid_value",
            "username must be 1-64 characters of a-z, 0-9, '.', '_' or '-'",
        ));
    }
    crate::text::check("display_name", &b.display_name, 200)?;
    if b.display_name.trim().is_empty() {
        return Err(ApiError::bad_request(
            "invalid_value",
            "display_name is required",
        ));
    }
    let password_hash = match b.password.filter(|p| !p.is_empty()) {
        Some(p) => {
            check_password(&p, &[&username, &b.display_name])?;
            Some(
                tokio::task::spawn_blocking(move || hash_password(&p))
                    .await
                    .map_err(|e| hash_failed(&e.to_string()))?
                    .map_err(|e| hash_failed(&e))?,
            )
        }
        None => None,
    };
    Ok(UserWrite {
        username,
        display_name: b.display_name.trim().to_owned(),
        role: b.role,
        password_hash,
        disabled: b.disabled,
    })
}

/// List accounts.
#[utoipa::path(get, path = "/api/v1/users", tag = "Users", operation_id = "listUsers",
    summary = "List accounts",
    description = "Roles: admin.

All accounts, ordered by username.",
    responses(
        (status = 200, description = "The accounts.", body = Vec<UserOut>),
        (status = 401, response = crate::openapi::Unauthorized),
        (status = 403, description = "`forbidden`: your role may not do this (admin only).", body = crate::openapi::ErrorBody),
        (status = 503, response = crate::openapi::Unavailable),
    )
)]
pub async fn users(State(c): State<Console>, _auth: Auth) -> Result<Json<Vec<UserOut>>, ApiError> {
    Ok(Json(
        c.store().users().await?.iter().map(UserOut::from).collect(),
    ))
}

/// Create an account.
#[utoipa::path(post, path = "/api/v1/users", tag = "Users", operation_id = "createUser",
    summary = "Create an account",
    description = "Roles: admin.

Audited (never with the password).",
    request_body = UserBody,
    responses(
        (status = 201, description = "The new account.", body = UserOut),
        (status = 400, description = "`invalid_json`; `invalid_value` (username, role or display_name is invalid, or no password was given); `weak_password`.", body = crate::openapi::ErrorBody),
        (status = 401, response = crate::openapi::Unauthorized),
        (status = 403, description = "`forbidden`: your role may not do this (admin only), or the `X-CSRF-Token` header is missing or wrong.", body = crate::openapi::ErrorBody),
        (status = 409, description = "`already_exists`: the username is taken.", body = crate::openapi::ErrorBody),
        (status = 413, response = crate::openapi::TooLarge),
        (status = 415, response = crate::openapi::UnsupportedMediaType),
        (status = 503, response = crate::openapi::Unavailable),
    )
)]
pub async fn create_user(
    State(c): State<Console>,
    auth: Auth,
    ApiJson(b): ApiJson<UserBody>,
) -> Result<(StatusCode, Json<UserOut>), ApiError> {
    let w = user_write(b).await?;
    let u = c
        .store()
        .insert_user(&w, auth.audit("user.create", "user", None))
        .await?;
    Ok((StatusCode::CREATED, Json(UserOut::from(&u))))
}

/// Replace an account.
#[utoipa::path(put, path = "/api/v1/users/{id}", tag = "Users", operation_id = "updateUser",
    summary = "Replace an account",
    description = "Roles: admin.

Audited with before and after. Disabling the account, changing its password or changing its role ends its sessions. An unknown id is answered 400 `missing_reference`, not 404.",
    params(("id" = i64, Path, description = "The numeric id.")),
    request_body = UserBody,
    responses(
        (status = 200, description = "The account as saved.", body = UserOut),
        (status = 400, description = "`invalid_json`; `invalid_value`; `weak_password`; `self_lockout` (you cannot disable your own account or remove your own admin role); `missing_reference` (no user with this id). `invalid_path`: `id` is not an integer.", body = crate::openapi::ErrorBody),
        (status = 401, response = crate::openapi::Unauthorized),
        (status = 403, description = "`forbidden`: your role may not do this (admin only), or the `X-CSRF-Token` header is missing or wrong.", body = crate::openapi::ErrorBody),
        (status = 409, description = "`already_exists`: the username is taken.", body = crate::openapi::ErrorBody),
        (status = 413, response = crate::openapi::TooLarge),
        (status = 415, response = crate::openapi::UnsupportedMediaType),
        (status = 503, response = crate::openapi::Unavailable),
    )
)]
pub async fn update_user(
    State(c): State<Console>,
    auth: Auth,
    ApiPath(id): ApiPath<i64>,
    ApiJson(b): ApiJson<UserBody>,
) -> Result<Json<UserOut>, ApiError> {
    let w = user_write(b).await?;
    if id == auth.user.id && (w.disabled || w.role != Role::Admin) {
        return Err(ApiError::bad_request(
            "self_lockout",
            "you cannot disable your own account or remove your own admin role",
        ));
    }
    let u = c
        .store()
        .update_user(id, &w, auth.audit("user.update", "user", None))
        .await?;
    Ok(Json(UserOut::from(&u)))
}

/// A password that could not be hashed: the detail is logged, never sent.
pub(crate) fn hash_failed(detail: &str) -> ApiError {
    tracing::error!(error = detail, "password hashing failed");
    ApiError::new(
        StatusCode::SERVICE_UNAVAILABLE,
        "unavailable",
        "the password could not be stored; nothing was changed, try again",
    )
}
