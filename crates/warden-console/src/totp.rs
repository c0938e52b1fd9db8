//! The optional second factor for supervisors and admins: a TOTP code (RFC 6238: SHA-1,
//! 6 digits, 30 s steps, one step of clock skew either way) from an authenticator app,
//! computed with the `totp-rs` crate. The secret is sealed at rest like key-safe codes; a
//! code is accepted once (the last accepted time step is kept). Enrolment: `POST
//! /api/v1/me/totp` with the password gives the secret and an `otpauth://` link; `POST
//! /api/v1/me/totp/confirm` with a first code turns it on. `wardend user add` (a reset)
//! removes it, for a lost phone.

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use serde::{Deserialize, Serialize};
use totp_rs::{Algorithm, TOTP};
use utoipa::ToSchema;

use crate::Console;
use crate::auth::Auth;
use crate::error::{ApiError, ApiJson};

const STEP: u64 = 30;

fn totp(secret_b32: &str) -> Option<TOTP> {
    let bytes = base32_decode(secret_b32)?;
    TOTP::new(Algorithm::SHA1, 6, 1, STEP, bytes).ok()
}

/// RFC 4648 base32 without padding, as authenticator apps take it.
fn base32_decode(text: &str) -> Option<Vec<u8>> {
    let mut bits = 0u32;
    let mut n = 0u32;
    let mut out = Vec::new();
    for c in text.trim_end_matches('=').bytes() {
        let v = match c {
            b'A'..=b'Z' => c - b'A',
            b'2'..=b'7' => c - b'2' + 26,
            _ => return None,
        };
        bits = (bits << 5) | u32::from(v);
        n += 5;
        if n >= 8 {
            n -= 8;
            out.push(u8::try_from((bits >> n) & 0xff).ok()?);
        }
    }
    Some(out)
}

fn base32_encode(bytes: &[u8]) -> String {
    const ALPHABET: &[u8; 32] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZ234567";
    let mut out = String::new();
    let mut bits = 0u32;
    let mut n = 0u32;
    for b in bytes {
        bits = (bits << 8) | u32::from(*b);
        n += 8;
        while n >= 5 {
            n -= 5;
            out.push(char::from(ALPHABET[((bits >> n) & 31) as usize]));
        }
    }
    if n > 0 {
        out.push(char::from(ALPHABET[((bits << (5 - n)) & 31) as usize]));
    }
    out
}

/// The time step `code` is good for at `now` (Unix seconds), within one step either way.
pub fn matching_step(secret_b32: &str, code: &str, now: u64) -> Option<i64> {
    let t = totp(secret_b32)?;
    let code = code.trim();
    let step = now / STEP;
    [step.saturating_sub(1), step, step + 1]
        .into_iter()
        .find(|s| {
            let want = t.generate(s * STEP);
            want.len() == code.len()
                && want
                    .bytes()
                    .zip(code.bytes())
                    .fold(0u8, |acc, (a, b)| acc | (a ^ b))
                    == 0
        })
        .and_then(|s| i64::try_from(s).ok())
}

fn now() -> u64 {
    u64::try_from(time::OffsetDateTime::now_utc().unix_timestamp()).unwrap_or(0)
}

/// At sign-in, after the right password: `Ok` when the account has no second factor or
/// `otp` is a fresh good code for it.
pub async fn check_at_sign_in(
    c: &Console,
    user_id: i64,
    otp: Option<&str>,
) -> Result<(), SecondFactor> {
    let Some((secret, true)) = c.store().totp(user_id).await.map_err(SecondFactor::Store)? else {
        return Ok(());
    };
    let Some(otp) = otp.filter(|o| !o.trim().is_empty()) else {
        return Err(SecondFactor::Required);
    };
    let Some(step) = matching_step(&secret, otp, now()) else {
        return Err(SecondFactor::Wrong);
    };
    if c.store()
        .use_totp_step(user_id, step, false)
        .await
        .map_err(SecondFactor::Store)?
    {
        Ok(())
    } else {
        Err(SecondFactor::Wrong)
    }
}

/// Why a sign-in's second factor was not accepted.
#[derive(Debug)]
pub enum SecondFactor {
    /// The account has one and no code was sent.
    Required,
    /// Wrong, expired or already used.
    Wrong,
    Store(warden_store::StoreError),
}

#[derive(Debug, Deserialize, ToSchema)]
#[schema(as = TotpBeginRequest)]
pub struct BeginBody {
    /// The account's password, again.
    password: String,
}

/// A new TOTP secret to put in an authenticator app.
#[derive(Debug, Serialize, ToSchema)]
pub struct TotpEnrolment {
    /// Base32, for typing in.
    pub secret: String,
    /// `otpauth://totp/...`, for a link.
    pub otpauth_url: String,
    /// `otpauth_url` as a QR code, for the app's camera.
    pub qr: QrMatrix,
}

/// A QR code as its modules: `size` rows of `size` modules, row by row from the top left,
/// `1` dark and `0` light; draw it with a light margin of four modules around.
#[derive(Debug, Serialize, ToSchema)]
pub struct QrMatrix {
    pub size: u32,
    pub modules: String,
}

impl QrMatrix {
    fn of(text: &str) -> Result<Self, qrcode::types::QrError> {
        let code = qrcode::QrCode::new(text.as_bytes())?;
        Ok(QrMatrix {
            size: u32::try_from(code.width()).unwrap_or(u32::MAX),
            modules: code
                .to_colors()
                .into_iter()
                .map(|c| if c == qrcode::Color::Dark { '1' } else { '0' })
                .collect(),
        })
    }
}

/// Start using a second factor.
#[utoipa::path(post, path = "/api/v1/me/totp", tag = "Auth", operation_id = "beginTotp",
    summary = "Start using a second factor (TOTP)",
    description = "Roles: supervisor, admin.

Checks the password, makes a new secret (replacing any earlier one, which stops being asked for) and returns it; nothing is asked at sign-in until a first code is confirmed. Audited (`user.totp.begin`).",
    request_body = BeginBody,
    responses(
        (status = 200, description = "The secret.", body = TotpEnrolment),
        (status = 400, description = "`invalid_json`.", body = crate::openapi::ErrorBody),
        (status = 401, description = "`bad_credentials`: the password is wrong; or no session.", body = crate::openapi::ErrorBody),
        (status = 403, description = "`forbidden`: your role may not do this, or the `X-CSRF-Token` header is missing or wrong.", body = crate::openapi::ErrorBody),
        (status = 503, response = crate::openapi::Unavailable),
    )
)]
pub async fn begin(
    State(c): State<Console>,
    auth: Auth,
    ApiJson(body): ApiJson<BeginBody>,
) -> Result<Json<TotpEnrolment>, ApiError> {
    crate::auth::confirm_password(&c, &auth, body.password, "user.totp.refused").await?;
    let mut raw = [0u8; 20];
    getrandom::fill(&mut raw).map_err(|e| {
        tracing::error!(error = %e, "no randomness for a TOTP secret");
        ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "unavailable", "try again")
    })?;
    let secret = base32_encode(&raw);
    c.store()
        .begin_totp(
            auth.user.id,
            &secret,
            &auth.audit("user.totp.begin", "user", Some(auth.user.id.to_string())),
        )
        .await?;
    let label: String =
        form_urlencoded::byte_serialize(format!("Warden:{}", auth.user.username).as_bytes())
            .collect();
    let otpauth_url = format!(
        "otpauth://totp/{label}?secret={secret}&issuer=Warden&algorithm=SHA1&digits=6&period=30"
    );
    // A username is at most 64 characters: the link always fits a QR code.
    let qr = QrMatrix::of(&otpauth_url).map_err(|e| {
        tracing::error!(error = %e, "the enrolment link does not fit a QR code");
        ApiError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal",
            "could not make the QR code",
        )
    })?;
    Ok(Json(TotpEnrolment {
        secret,
        otpauth_url,
        qr,
    }))
}

#[derive(Debug, Deserialize, ToSchema)]
#[schema(as = TotpConfirmRequest)]
pub struct ConfirmBody {
    /// The 6-digit code the app shows now.
    code: String,
}

/// Confirm the second factor with a first code.
#[utoipa::path(post, path = "/api/v1/me/totp/confirm", tag = "Auth", operation_id = "confirmTotp",
    summary = "Confirm the second factor with a first code",
    description = "Roles: supervisor, admin.

From now on sign-in asks for a code after the password. Audited (`user.totp.enable`).",
    request_body = ConfirmBody,
    responses(
        (status = 204, description = "In use."),
        (status = 400, description = "`invalid_json`; `bad_code`: wrong or expired code, or no enrolment started.", body = crate::openapi::ErrorBody),
        (status = 401, response = crate::openapi::Unauthorized),
        (status = 403, description = "`forbidden`: your role may not do this, or the `X-CSRF-Token` header is missing or wrong.", body = crate::openapi::ErrorBody),
        (status = 503, response = crate::openapi::Unavailable),
    )
)]
pub async fn confirm(
    State(c): State<Console>,
    auth: Auth,
    ApiJson(body): ApiJson<ConfirmBody>,
) -> Result<StatusCode, ApiError> {
    let bad = || {
        ApiError::bad_request(
            "bad_code",
            "that code is wrong or expired (or no enrolment was started): try the next one",
        )
    };
    let Some((secret, _)) = c.store().totp(auth.user.id).await? else {
        return Err(bad());
    };
    let step = matching_step(&secret, &body.code, now()).ok_or_else(bad)?;
    if !c.store().use_totp_step(auth.user.id, step, true).await? {
        return Err(bad());
    }
    c.store()
        .audit(&auth.audit("user.totp.enable", "user", Some(auth.user.id.to_string())))
        .await?;
    Ok(StatusCode::NO_CONTENT)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// RFC 6238 appendix B, SHA-1 (the 8-digit vectors' last 6 digits are the 6-digit codes).
    #[test]
    fn codes_match_the_rfc_6238_vectors_within_one_step() {
        let secret = base32_encode(b"12345678901234567890");
        assert_eq!(
            base32_decode(&secret).as_deref(),
            Some(&b"12345678901234567890"[..])
        );
        assert_eq!(matching_step(&secret, "287082", 59), Some(1));
        assert_eq!(
            matching_step(&secret, "081804", 1_111_111_109),
            Some(37_037_036)
        );
        assert_eq!(
            matching_step(&secret, "050471", 1_111_111_111),
            Some(37_037_037)
        );
        assert_eq!(
            matching_step(&secret, "005924", 1_234_567_890),
            Some(41_152_263)
        );
        // One step late is still good; two are not.
        assert_eq!(
            matching_step(&secret, "005924", 1_234_567_890 + 30),
            Some(41_152_263)
        );
        assert_eq!(matching_step(&secret, "005924", 1_234_567_890 + 60), None);
        assert_eq!(matching_step(&secret, "000000", 59), None);
        assert_eq!(matching_step(&secret, "28708", 59), None);
    }
}
