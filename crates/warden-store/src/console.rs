//! Repositories of the operator console: accounts and sessions, client records, devices as
//! the administrators see them, out-of-hours jobs, the queue view and the audit trail.
//!
//! Statements here use runtime-checked queries (`sqlx::query`), covered by the console's
//! integration tests against a real database.

use serde::{Deserialize, Serialize};
use serde_json::Value;
use sqlx::{Postgres, Row as _, Transaction};
use time::OffsetDateTime;

use crate::{Store, StoreError};

/// A console account as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UserRow {
    pub id: i64,
    pub username: String,
    pub display_name: String,
    /// `operator`, `supervisor`, `admin` or `on_call` (a CHECK constraint holds this).
    pub role: String,
    /// argon2id PHC string.
    pub password_hash: String,
    pub disabled: bool,
    pub failed_logins: i32,
    pub locked_until: Option<OffsetDateTime>,
}

/// A new account, or the new state of one (`password_hash: None` keeps the old password).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UserWrite {
    pub username: String,
    pub display_name: String,
    pub role: String,
    pub password_hash: Option<String>,
    pub disabled: bool,
}

/// Why a write was refused for its data (shown to the user, never a database outage).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Refused {
    /// A unique key is taken.
    #[error("{0} already exists")]
    Exists(String),
    /// A referenced row does not exist.
    #[error("{0} does not exist")]
    Missing(String),
    /// A CHECK constraint refused a value.
    #[error("invalid value: {0}")]
    Invalid(String),
}

/// A store call that may be refused for its data.
#[derive(Debug, thiserror::Error)]
pub enum WriteRefused {
    #[error(transparent)]
    Refused(#[from] Refused),
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl From<sqlx::Error> for WriteRefused {
    fn from(e: sqlx::Error) -> Self {
        if let sqlx::Error::Database(db) = &e {
            let what = db
                .constraint()
                .map_or_else(|| db.message().to_owned(), str::to_owned);
            match db.code().as_deref() {
                Some("23505") => return Refused::Exists(what).into(),
                Some("23503") => return Refused::Missing(what).into(),
                // 22021 / 22P05: a NUL that Postgres text or jsonb cannot hold. The console
                // refuses those first; this keeps a missed field a 400, not an outage.
                Some(
                    "23514" | "22001" | "22007" | "22008" | "22021" | "22P02" | "22P05" | "23502",
                ) => {
                    return Refused::Invalid(what).into();
                }
                _ => {}
            }
        }
        WriteRefused::Store(e.into())
    }
}

/// A live session and its user.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SessionRow {
    pub csrf_token: String,
    pub expires_at: OffsetDateTime,
    pub user: UserRow,
}

/// One line of the audit trail to write.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct AuditWrite {
    pub user_id: Option<i64>,
    pub action: String,
    pub object_type: String,
    pub object_id: Option<String>,
    pub before: Option<Value>,
    pub after: Option<Value>,
    pub request_id: Option<String>,
    pub ip: Option<String>,
}

/// One line of the audit trail as read back.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct AuditRow {
    pub id: i64,
    #[serde(with = "time::serde::rfc3339")]
    pub at: OffsetDateTime,
    pub user_id: Option<i64>,
    pub user_name: Option<String>,
    pub action: String,
    pub object_type: String,
    pub object_id: Option<String>,
    pub before: Option<Value>,
    pub after: Option<Value>,
}

/// A client record (without its responders, devices and history).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClientRecord {
    #[serde(default)]
    pub id: i64,
    pub external_ref: String,
    pub name: String,
    #[serde(default)]
    pub date_of_birth: Option<String>,
    #[serde(default)]
    pub address: String,
    #[serde(default)]
    pub postcode: String,
    #[serde(default)]
    pub phone: String,
    #[serde(default)]
    pub area: Option<String>,
    #[serde(default = "english")]
    pub language: String,
    #[serde(default)]
    pub interpreter_needed: bool,
    #[serde(default)]
    pub communication_needs: String,
    #[serde(default = "phone")]
    pub preferred_contact: String,
    #[serde(default)]
    pub access_notes: String,
    #[serde(default)]
    pub medical_notes: String,
    /// Whether a key-safe code is on file (the code itself is only revealed on request).
    #[serde(default)]
    pub key_safe_set: bool,
}

fn english() -> String {
    "English".into()
}

fn phone() -> String {
    "phone".into()
}

/// A responder or keyholder, in call order.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Responder {
    #[serde(default)]
    pub position: i32,
    pub name: String,
    #[serde(default)]
    pub relationship: String,
    #[serde(default)]
    pub phone: String,
    #[serde(default)]
    pub is_keyholder: bool,
    #[serde(default)]
    pub notes: String,
}

/// A device as administrators see and edit it.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeviceRecord {
    #[serde(default)]
    pub id: i64,
    pub account: String,
    pub protocol: String,
    #[serde(default)]
    pub label: Option<String>,
    #[serde(default)]
    pub device_type: Option<String>,
    #[serde(default)]
    pub test_interval_seconds: Option<i32>,
    #[serde(default)]
    pub client_ref: Option<String>,
    #[serde(default)]
    pub area: Option<String>,
}

/// A signal in a client's or incident's recent history.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SignalSummary {
    pub id: uuid::Uuid,
    #[serde(with = "time::serde::rfc3339")]
    pub received_at: OffsetDateTime,
    pub kind: String,
    pub source: String,
    pub account: Option<String>,
    pub decoded: Value,
    /// The bytes exactly as received, rendered for people (one click away in the UI).
    pub raw: crate::RawBytes,
}

/// One row of the queue view: the incident's current state joined with its device and client.
#[derive(Debug, Clone, PartialEq)]
pub struct IncidentViewRow {
    pub id: i64,
    pub priority: String,
    pub kind: String,
    pub state: String,
    pub raised_at: OffsetDateTime,
    pub claimed_at: Option<OffsetDateTime>,
    pub resolved_at: Option<OffsetDateTime>,
    pub signal_count: i32,
    /// The fields of the core's record the queue shows (never the whole record: a storm
    /// group's lists its thousands of member units): `arrived_at`, `holder`, `sla`, `area`,
    /// `subject`, `summary`, `resolution`, `group_count`.
    pub doc: Value,
    pub holder_name: Option<String>,
    pub device_id: Option<i64>,
    pub device_account: Option<String>,
    pub device_label: Option<String>,
    pub client_id: Option<i64>,
    pub client_name: Option<String>,
    pub client_address: Option<String>,
}

/// One entry of an incident's history.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct IncidentEvent {
    pub seq: i64,
    pub kind: String,
    #[serde(with = "time::serde::rfc3339")]
    pub at: OffsetDateTime,
    pub effect: Value,
}

/// An out-of-hours category and who is on call for it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OohCategory {
    #[serde(default)]
    pub code: String,
    pub name: String,
    #[serde(default)]
    pub oncall_name: Option<String>,
    #[serde(default)]
    pub oncall_phone: Option<String>,
}

/// A new out-of-hours job as the desk logs it.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct NewOohJob {
    pub category: String,
    pub caller_name: String,
    #[serde(default)]
    pub caller_phone: String,
    #[serde(default)]
    pub address: String,
    pub description: String,
    pub urgency: String,
}

/// An out-of-hours job as stored.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct OohJob {
    pub reference: String,
    pub category: String,
    pub caller_name: String,
    pub caller_phone: String,
    pub address: String,
    pub description: String,
    pub urgency: String,
    pub status: String,
    pub routed_name: Option<String>,
    pub routed_phone: Option<String>,
    pub created_by: i64,
    pub created_by_name: String,
    #[serde(with = "time::serde::rfc3339")]
    pub created_at: OffsetDateTime,
    pub updates: Vec<OohUpdate>,
}

/// A status change of an out-of-hours job.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct OohUpdate {
    #[serde(with = "time::serde::rfc3339")]
    pub at: OffsetDateTime,
    pub status: String,
    pub note: String,
    pub by: Option<String>,
}

const USER_COLUMNS: &str =
    "id, username, display_name, role, password_hash, disabled, failed_logins, locked_until";

fn user_of(r: &sqlx::postgres::PgRow) -> Result<UserRow, sqlx::Error> {
    Ok(UserRow {
        id: r.try_get("id")?,
        username: r.try_get("username")?,
        display_name: r.try_get("display_name")?,
        role: r.try_get("role")?,
        password_hash: r.try_get("password_hash")?,
        disabled: r.try_get("disabled")?,
        failed_logins: r.try_get("failed_logins")?,
        locked_until: r.try_get("locked_until")?,
    })
}

const CLIENT_COLUMNS: &str = "id, external_ref, name, to_char(date_of_birth, 'YYYY-MM-DD') AS date_of_birth, \
     address, postcode, phone, area, language, interpreter_needed, communication_needs, \
     preferred_contact, access_notes, medical_notes, key_safe IS NOT NULL AS key_safe_set";

fn client_of(r: &sqlx::postgres::PgRow) -> Result<ClientRecord, sqlx::Error> {
    Ok(ClientRecord {
        id: r.try_get("id")?,
        external_ref: r.try_get("external_ref")?,
        name: r.try_get("name")?,
        date_of_birth: r.try_get("date_of_birth")?,
        address: r.try_get("address")?,
        postcode: r.try_get("postcode")?,
        phone: r.try_get("phone")?,
        area: r.try_get("area")?,
        language: r.try_get("language")?,
        interpreter_needed: r.try_get("interpreter_needed")?,
        communication_needs: r.try_get("communication_needs")?,
        preferred_contact: r.try_get("preferred_contact")?,
        access_notes: r.try_get("access_notes")?,
        medical_notes: r.try_get("medical_notes")?,
        key_safe_set: r.try_get("key_safe_set")?,
    })
}

/// A device row as audit JSON (the same fields as [`DeviceRecord`]), for statements that
/// build it in SQL.
const DEVICE_JSON: &str = "'id', d.id, 'account', d.account, 'protocol', d.protocol, \
     'label', d.label, 'device_type', d.device_type, \
     'test_interval_seconds', d.test_interval_seconds, 'client_ref', d.client_ref, 'area', d.area";

const DEVICE_COLUMNS: &str =
    "id, account, protocol, label, device_type, test_interval_seconds, client_ref, area";

fn device_of(r: &sqlx::postgres::PgRow) -> Result<DeviceRecord, sqlx::Error> {
    Ok(DeviceRecord {
        id: r.try_get("id")?,
        account: r.try_get("account")?,
        protocol: r.try_get("protocol")?,
        label: r.try_get("label")?,
        device_type: r.try_get("device_type")?,
        test_interval_seconds: r.try_get("test_interval_seconds")?,
        client_ref: r.try_get("client_ref")?,
        area: r.try_get("area")?,
    })
}

/// `%text%` for ILIKE, with the pattern characters of the user's text escaped.
fn like(q: &str) -> String {
    let mut s = String::with_capacity(q.len() + 2);
    s.push('%');
    for c in q.trim().chars() {
        if matches!(c, '%' | '_' | '\\') {
            s.push('\\');
        }
        s.push(c);
    }
    s.push('%');
    s
}

impl Store {
    // ---- accounts -------------------------------------------------------------------

    pub async fn user_by_username(&self, username: &str) -> Result<Option<UserRow>, StoreError> {
        let row = sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT {USER_COLUMNS} FROM users WHERE username = $1"
        )))
        .bind(username)
        .fetch_optional(self.pool())
        .await?;
        Ok(row.as_ref().map(user_of).transpose()?)
    }

    pub async fn user_by_id(&self, id: i64) -> Result<Option<UserRow>, StoreError> {
        let row = sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT {USER_COLUMNS} FROM users WHERE id = $1"
        )))
        .bind(id)
        .fetch_optional(self.pool())
        .await?;
        Ok(row.as_ref().map(user_of).transpose()?)
    }

    pub async fn users(&self) -> Result<Vec<UserRow>, StoreError> {
        let rows = sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT {USER_COLUMNS} FROM users ORDER BY username"
        )))
        .fetch_all(self.pool())
        .await?;
        Ok(rows.iter().map(user_of).collect::<Result<_, _>>()?)
    }

    /// Creates an account; the audit line is written in the same transaction.
    pub async fn insert_user(
        &self,
        u: &UserWrite,
        audit: AuditWrite,
    ) -> Result<UserRow, WriteRefused> {
        let hash = u
            .password_hash
            .as_deref()
            .ok_or_else(|| Refused::Invalid("a new user needs a password".into()))?;
        let mut tx = self.pool().begin().await?;
        let row = sqlx::query(sqlx::AssertSqlSafe(format!(
            "INSERT INTO users (username, display_name, role, password_hash, disabled) \
             VALUES ($1, $2, $3, $4, $5) RETURNING {USER_COLUMNS}"
        )))
        .bind(&u.username)
        .bind(&u.display_name)
        .bind(&u.role)
        .bind(hash)
        .bind(u.disabled)
        .fetch_one(&mut *tx)
        .await?;
        let user = user_of(&row)?;
        let audit = AuditWrite {
            object_id: Some(user.id.to_string()),
            after: Some(user_json(&user)),
            ..audit
        };
        insert_audit(&mut tx, &audit).await?;
        tx.commit().await?;
        Ok(user)
    }

    /// Updates an account; a disabled account's sessions end at once.
    pub async fn update_user(
        &self,
        id: i64,
        u: &UserWrite,
        audit: AuditWrite,
    ) -> Result<UserRow, WriteRefused> {
        let mut tx = self.pool().begin().await?;
        let before = sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT {USER_COLUMNS} FROM users WHERE id = $1 FOR UPDATE"
        )))
        .bind(id)
        .fetch_optional(&mut *tx)
        .await?
        .as_ref()
        .map(user_of)
        .transpose()?
        .ok_or_else(|| Refused::Missing(format!("user {id}")))?;
        let row = sqlx::query(sqlx::AssertSqlSafe(format!(
            "UPDATE users SET username = $2, display_name = $3, role = $4, \
             password_hash = COALESCE($5, password_hash), disabled = $6, \
             failed_logins = CASE WHEN $5 IS NULL THEN failed_logins ELSE 0 END, \
             locked_until = CASE WHEN $5 IS NULL THEN locked_until ELSE NULL END, \
             updated_at = now() WHERE id = $1 RETURNING {USER_COLUMNS}"
        )))
        .bind(id)
        .bind(&u.username)
        .bind(&u.display_name)
        .bind(&u.role)
        .bind(&u.password_hash)
        .bind(u.disabled)
        .fetch_one(&mut *tx)
        .await?;
        let user = user_of(&row)?;
        if user.disabled || u.password_hash.is_some() || user.role != before.role {
            sqlx::query("DELETE FROM sessions WHERE user_id = $1")
                .bind(id)
                .execute(&mut *tx)
                .await?;
        }
        let mut after = user_json(&user);
        if u.password_hash.is_some() {
            after["password_changed"] = Value::Bool(true);
        }
        let audit = AuditWrite {
            object_id: Some(id.to_string()),
            before: Some(user_json(&before)),
            after: Some(after),
            ..audit
        };
        insert_audit(&mut tx, &audit).await?;
        tx.commit().await?;
        Ok(user)
    }

    /// Counts a failed login; after `max_failures` in a row the account locks until
    /// `now + lock_for`. Returns the new count and the lock, if any.
    pub async fn record_login_failure(
        &self,
        id: i64,
        max_failures: i32,
        lock_for: std::time::Duration,
    ) -> Result<(i32, Option<OffsetDateTime>), StoreError> {
        let lock_secs = f64::from(u32::try_from(lock_for.as_secs()).unwrap_or(u32::MAX));
        let row = sqlx::query(
            // A lock that has run out starts the count again, so one typo after it does
            // not lock the account at once.
            "UPDATE users SET \
             failed_logins = CASE WHEN locked_until <= now() THEN 1 ELSE failed_logins + 1 END, \
             locked_until = CASE \
                 WHEN (CASE WHEN locked_until <= now() THEN 1 ELSE failed_logins + 1 END) >= $2 \
                     THEN now() + make_interval(secs => $3) \
                 WHEN locked_until <= now() THEN NULL ELSE locked_until END \
             WHERE id = $1 RETURNING failed_logins, locked_until",
        )
        .bind(id)
        .bind(max_failures)
        .bind(lock_secs)
        .fetch_one(self.pool())
        .await?;
        Ok((row.try_get(0)?, row.try_get(1)?))
    }

    /// Opens a session after a good password: resets the failure count.
    pub async fn create_session(
        &self,
        user_id: i64,
        token_hash: &[u8],
        csrf_token: &str,
        expires_at: OffsetDateTime,
        ip: Option<&str>,
    ) -> Result<(), StoreError> {
        let mut tx = self.pool().begin().await?;
        sqlx::query("UPDATE users SET failed_logins = 0, locked_until = NULL WHERE id = $1")
            .bind(user_id)
            .execute(&mut *tx)
            .await?;
        sqlx::query(
            "INSERT INTO sessions (token_hash, user_id, csrf_token, expires_at, ip) \
             VALUES ($1, $2, $3, $4, $5)",
        )
        .bind(token_hash)
        .bind(user_id)
        .bind(csrf_token)
        .bind(expires_at)
        .bind(ip)
        .execute(&mut *tx)
        .await?;
        // Old sessions of anyone are swept here rather than by a timer.
        sqlx::query("DELETE FROM sessions WHERE expires_at < now()")
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(())
    }

    /// The live session for a token hash, refreshed, or `None` when unknown, expired, idle
    /// longer than `idle`, or its user is disabled.
    pub async fn session(
        &self,
        token_hash: &[u8],
        idle: std::time::Duration,
    ) -> Result<Option<SessionRow>, StoreError> {
        let idle_secs = f64::from(u32::try_from(idle.as_secs()).unwrap_or(u32::MAX));
        let row = sqlx::query(
            "UPDATE sessions s SET last_seen_at = now() FROM users u \
             WHERE s.token_hash = $1 AND u.id = s.user_id AND NOT u.disabled \
               AND s.expires_at > now() \
               AND s.last_seen_at > now() - make_interval(secs => $2) \
             RETURNING s.csrf_token, s.expires_at, u.id, u.username, u.display_name, u.role, \
                       u.password_hash, u.disabled, u.failed_logins, u.locked_until",
        )
        .bind(token_hash)
        .bind(idle_secs)
        .fetch_optional(self.pool())
        .await?;
        let Some(r) = row else { return Ok(None) };
        Ok(Some(SessionRow {
            csrf_token: r.try_get("csrf_token")?,
            expires_at: r.try_get("expires_at")?,
            user: user_of(&r)?,
        }))
    }

    pub async fn delete_session(&self, token_hash: &[u8]) -> Result<(), StoreError> {
        sqlx::query("DELETE FROM sessions WHERE token_hash = $1")
            .bind(token_hash)
            .execute(self.pool())
            .await?;
        Ok(())
    }

    // ---- audit ----------------------------------------------------------------------

    pub async fn audit(&self, a: &AuditWrite) -> Result<(), StoreError> {
        let mut tx = self.pool().begin().await?;
        insert_audit(&mut tx, a).await?;
        tx.commit().await?;
        Ok(())
    }

    pub async fn audit_list(
        &self,
        object_type: Option<&str>,
        object_id: Option<&str>,
        user_id: Option<i64>,
        limit: i64,
    ) -> Result<Vec<AuditRow>, StoreError> {
        let rows = sqlx::query(
            "SELECT a.id, a.at, a.user_id, u.display_name, a.action, a.object_type, a.object_id, \
                    a.before, a.after \
             FROM audit a LEFT JOIN users u ON u.id = a.user_id \
             WHERE ($1::text IS NULL OR a.object_type = $1) \
               AND ($2::text IS NULL OR a.object_id = $2) \
               AND ($3::bigint IS NULL OR a.user_id = $3) \
             ORDER BY a.id DESC LIMIT $4",
        )
        .bind(object_type)
        .bind(object_id)
        .bind(user_id)
        .bind(limit)
        .fetch_all(self.pool())
        .await?;
        rows.iter()
            .map(|r| {
                Ok(AuditRow {
                    id: r.try_get(0)?,
                    at: r.try_get(1)?,
                    user_id: r.try_get(2)?,
                    user_name: r.try_get(3)?,
                    action: r.try_get(4)?,
                    object_type: r.try_get(5)?,
                    object_id: r.try_get(6)?,
                    before: r.try_get(7)?,
                    after: r.try_get(8)?,
                })
            })
            .collect::<Result<_, sqlx::Error>>()
            .map_err(Into::into)
    }

    // ---- client records -------------------------------------------------------------

    pub async fn client_search(
        &self,
        q: &str,
        limit: i64,
    ) -> Result<Vec<ClientRecord>, StoreError> {
        let rows = sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT {CLIENT_COLUMNS} FROM clients \
             WHERE $1 = '%%' OR name ILIKE $1 OR address ILIKE $1 OR postcode ILIKE $1 \
                OR external_ref ILIKE $1 OR phone ILIKE $1 \
             ORDER BY name, id LIMIT $2"
        )))
        .bind(like(q))
        .bind(limit)
        .fetch_all(self.pool())
        .await?;
        Ok(rows.iter().map(client_of).collect::<Result<_, _>>()?)
    }

    pub async fn client(&self, id: i64) -> Result<Option<ClientRecord>, StoreError> {
        let row = sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT {CLIENT_COLUMNS} FROM clients WHERE id = $1"
        )))
        .bind(id)
        .fetch_optional(self.pool())
        .await?;
        Ok(row.as_ref().map(client_of).transpose()?)
    }

    pub async fn all_clients(&self) -> Result<Vec<(ClientRecord, Option<String>)>, StoreError> {
        let rows = sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT {CLIENT_COLUMNS}, key_safe FROM clients ORDER BY external_ref"
        )))
        .fetch_all(self.pool())
        .await?;
        rows.iter()
            .map(|r| Ok((client_of(r)?, r.try_get("key_safe")?)))
            .collect::<Result<_, sqlx::Error>>()
            .map_err(Into::into)
    }

    pub async fn responders(&self, client_id: i64) -> Result<Vec<Responder>, StoreError> {
        Ok(responders_of(self.pool(), client_id).await?)
    }

    pub async fn client_devices(
        &self,
        external_ref: &str,
    ) -> Result<Vec<DeviceRecord>, StoreError> {
        let rows = sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT {DEVICE_COLUMNS} FROM devices WHERE client_ref = $1 ORDER BY id"
        )))
        .bind(external_ref)
        .fetch_all(self.pool())
        .await?;
        Ok(rows.iter().map(device_of).collect::<Result<_, _>>()?)
    }

    /// The most recent signals of the devices of a client (or of one device).
    pub async fn recent_signals(
        &self,
        client_ref: Option<&str>,
        device_id: Option<i64>,
        limit: i64,
    ) -> Result<Vec<SignalSummary>, StoreError> {
        let rows = sqlx::query(
            "SELECT s.id, s.received_at, s.kind, s.source, s.account, s.decoded, s.raw FROM signals s \
             WHERE s.device_id IN (SELECT id FROM devices WHERE client_ref = $1) \
                OR s.device_id = $2 \
             ORDER BY s.received_at DESC LIMIT $3",
        )
        .bind(client_ref)
        .bind(device_id)
        .bind(limit)
        .fetch_all(self.pool())
        .await?;
        rows.iter()
            .map(|r| {
                Ok(SignalSummary {
                    id: r.try_get(0)?,
                    received_at: r.try_get(1)?,
                    kind: r.try_get(2)?,
                    source: r.try_get(3)?,
                    account: r.try_get(4)?,
                    decoded: r.try_get(5)?,
                    raw: crate::RawBytes::of(&r.try_get::<Vec<u8>, _>(6)?),
                })
            })
            .collect::<Result<_, sqlx::Error>>()
            .map_err(Into::into)
    }

    /// The key-safe code of a client, with an audit line saying who saw it, in one
    /// transaction: no reveal without its record.
    pub async fn reveal_key_safe(
        &self,
        client_id: i64,
        audit: AuditWrite,
    ) -> Result<Option<Option<String>>, StoreError> {
        let mut tx = self.pool().begin().await?;
        let row = sqlx::query("SELECT key_safe FROM clients WHERE id = $1")
            .bind(client_id)
            .fetch_optional(&mut *tx)
            .await?;
        let Some(row) = row else { return Ok(None) };
        let code: Option<String> = row.try_get(0)?;
        insert_audit(&mut tx, &audit).await?;
        tx.commit().await?;
        Ok(Some(code))
    }

    /// Creates (`id == None`) or replaces a client record and its responders. `key_safe`:
    /// `None` keeps the code, `Some("")` clears it. `responders`: `None` keeps those on file.
    /// Audited with before and after.
    pub async fn save_client(
        &self,
        id: Option<i64>,
        c: &ClientRecord,
        key_safe: Option<&str>,
        responders: Option<&[Responder]>,
        audit: AuditWrite,
    ) -> Result<ClientRecord, WriteRefused> {
        let mut tx = self.pool().begin().await?;
        let (saved, before) = save_client_tx(&mut tx, id, c, key_safe, responders).await?;
        let audit = AuditWrite {
            object_id: Some(saved.0.id.to_string()),
            before,
            after: Some(client_json(&saved.0, &saved.1)),
            ..audit
        };
        insert_audit(&mut tx, &audit).await?;
        tx.commit().await?;
        Ok(saved.0)
    }

    /// Upserts many clients by `external_ref` in one statement (CSV import), with one audit
    /// line per row (before and after, never the key-safe code) in the same transaction;
    /// returns (inserted, updated). `commit == false` rolls back (a dry run that still meets
    /// every database check). Responders are kept; an empty key-safe keeps the code on file.
    pub async fn import_clients(
        &self,
        rows: &[(ClientRecord, Option<String>)],
        audit: &AuditWrite,
        commit: bool,
    ) -> Result<(u64, u64), WriteRefused> {
        let col =
            |f: fn(&ClientRecord) -> String| rows.iter().map(|(c, _)| f(c)).collect::<Vec<_>>();
        let refs = col(|c| c.external_ref.clone());
        let names = col(|c| c.name.clone());
        let dobs: Vec<Option<String>> = rows.iter().map(|(c, _)| c.date_of_birth.clone()).collect();
        let addresses = col(|c| c.address.clone());
        let postcodes = col(|c| c.postcode.clone());
        let phones = col(|c| c.phone.clone());
        let areas: Vec<Option<String>> = rows.iter().map(|(c, _)| c.area.clone()).collect();
        let languages = col(|c| c.language.clone());
        let interpreters: Vec<bool> = rows.iter().map(|(c, _)| c.interpreter_needed).collect();
        let needs = col(|c| c.communication_needs.clone());
        let preferred = col(|c| c.preferred_contact.clone());
        let access = col(|c| c.access_notes.clone());
        let medical = col(|c| c.medical_notes.clone());
        let key_safes: Vec<Option<String>> = rows.iter().map(|(_, k)| k.clone()).collect();
        let mut tx = self.pool().begin().await?;
        let row = sqlx::query(
            "WITH input AS ( \
                 SELECT * FROM UNNEST($1::text[], $2::text[], $3::text[], $4::text[], $5::text[], \
                     $6::text[], $7::text[], $8::text[], $9::bool[], $10::text[], $11::text[], \
                     $12::text[], $13::text[], $14::text[]) \
                 AS t(external_ref, name, dob, address, postcode, phone, area, language, \
                     interpreter_needed, communication_needs, preferred_contact, access_notes, \
                     medical_notes, key_safe)), \
             old AS ( \
                 SELECT c.external_ref, to_jsonb(c) - 'key_safe' - 'created_at' - 'updated_at' \
                     || jsonb_build_object('key_safe_set', c.key_safe IS NOT NULL) AS doc \
                 FROM clients c JOIN input i USING (external_ref)), \
             up AS ( \
                 INSERT INTO clients AS c (external_ref, name, date_of_birth, address, postcode, phone, \
                     area, language, interpreter_needed, communication_needs, preferred_contact, \
                     access_notes, medical_notes, key_safe) \
                 SELECT external_ref, name, dob::date, address, postcode, phone, area, language, \
                     interpreter_needed, communication_needs, preferred_contact, access_notes, \
                     medical_notes, NULLIF(key_safe, '') FROM input \
                 ON CONFLICT (external_ref) DO UPDATE SET name = EXCLUDED.name, \
                     date_of_birth = EXCLUDED.date_of_birth, address = EXCLUDED.address, \
                     postcode = EXCLUDED.postcode, phone = EXCLUDED.phone, area = EXCLUDED.area, \
                     language = EXCLUDED.language, interpreter_needed = EXCLUDED.interpreter_needed, \
                     communication_needs = EXCLUDED.communication_needs, \
                     preferred_contact = EXCLUDED.preferred_contact, \
                     access_notes = EXCLUDED.access_notes, medical_notes = EXCLUDED.medical_notes, \
                     key_safe = COALESCE(EXCLUDED.key_safe, c.key_safe), updated_at = now() \
                 RETURNING c.id, c.external_ref, (xmax = 0) AS inserted, \
                     to_jsonb(c) - 'key_safe' - 'created_at' - 'updated_at' \
                     || jsonb_build_object('key_safe_set', c.key_safe IS NOT NULL) AS doc), \
             logged AS ( \
                 INSERT INTO audit (user_id, action, object_type, object_id, before, after, request_id, ip) \
                 SELECT $15, $16, $17, up.id::text, old.doc, up.doc, $18, $19 \
                 FROM up LEFT JOIN old USING (external_ref)) \
             SELECT count(*) FILTER (WHERE inserted), count(*) FILTER (WHERE NOT inserted) FROM up",
        )
        .bind(&refs)
        .bind(&names)
        .bind(&dobs)
        .bind(&addresses)
        .bind(&postcodes)
        .bind(&phones)
        .bind(&areas)
        .bind(&languages)
        .bind(&interpreters)
        .bind(&needs)
        .bind(&preferred)
        .bind(&access)
        .bind(&medical)
        .bind(&key_safes)
        .bind(audit.user_id)
        .bind(&audit.action)
        .bind(&audit.object_type)
        .bind(&audit.request_id)
        .bind(&audit.ip)
        .fetch_one(&mut *tx)
        .await?;
        Ok(finish_import(tx, &row, commit).await?)
    }

    // ---- devices (administration) ---------------------------------------------------

    pub async fn device_records(
        &self,
        q: &str,
        limit: i64,
    ) -> Result<Vec<DeviceRecord>, StoreError> {
        let rows = sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT {DEVICE_COLUMNS} FROM devices \
             WHERE $1 = '%%' OR account ILIKE $1 OR label ILIKE $1 OR client_ref ILIKE $1 \
             ORDER BY id LIMIT $2"
        )))
        .bind(like(q))
        .bind(limit)
        .fetch_all(self.pool())
        .await?;
        Ok(rows.iter().map(device_of).collect::<Result<_, _>>()?)
    }

    /// Every device with its area, type and client id: what the triage core needs.
    pub async fn device_records_for_triage(
        &self,
    ) -> Result<Vec<(DeviceRecord, Option<i64>)>, StoreError> {
        let rows = sqlx::query(
            "SELECT d.id, d.account, d.protocol, d.label, d.device_type, d.test_interval_seconds, \
                    d.client_ref, COALESCE(d.area, c.area) AS area, c.id AS client_id \
             FROM devices d LEFT JOIN clients c ON c.external_ref = d.client_ref ORDER BY d.id",
        )
        .fetch_all(self.pool())
        .await?;
        rows.iter()
            .map(|r| Ok((device_of(r)?, r.try_get("client_id")?)))
            .collect::<Result<_, sqlx::Error>>()
            .map_err(Into::into)
    }

    /// When each supervised device (one with a test interval) was last heard, from the
    /// signals it sent: what the triage core needs after a restart to keep its
    /// fail-to-report deadlines. One index probe per supervised device.
    pub async fn supervised_last_heard(&self) -> Result<Vec<(i64, OffsetDateTime)>, StoreError> {
        let rows = sqlx::query(
            "SELECT d.id, h.at FROM devices d \
             CROSS JOIN LATERAL (SELECT max(s.received_at) AS at FROM signals s WHERE s.device_id = d.id) h \
             WHERE d.test_interval_seconds IS NOT NULL AND h.at IS NOT NULL",
        )
        .fetch_all(self.pool())
        .await?;
        rows.iter()
            .map(|r| Ok((r.try_get(0)?, r.try_get(1)?)))
            .collect::<Result<_, sqlx::Error>>()
            .map_err(Into::into)
    }

    /// Creates (`id == None`) or updates a device; audited.
    pub async fn save_device(
        &self,
        id: Option<i64>,
        d: &DeviceRecord,
        audit: AuditWrite,
    ) -> Result<DeviceRecord, WriteRefused> {
        let mut tx = self.pool().begin().await?;
        let (saved, before) = save_device_tx(&mut tx, id, d).await?;
        let audit = AuditWrite {
            object_id: Some(saved.id.to_string()),
            before,
            after: Some(serde_json::to_value(&saved).unwrap_or_default()),
            ..audit
        };
        insert_audit(&mut tx, &audit).await?;
        tx.commit().await?;
        Ok(saved)
    }

    /// Upserts many devices by account in one statement (CSV import), one audit line per
    /// row in the same transaction; returns (inserted, updated).
    pub async fn import_devices(
        &self,
        rows: &[DeviceRecord],
        audit: &AuditWrite,
        commit: bool,
    ) -> Result<(u64, u64), WriteRefused> {
        let accounts: Vec<&str> = rows.iter().map(|d| d.account.as_str()).collect();
        let protocols: Vec<&str> = rows.iter().map(|d| d.protocol.as_str()).collect();
        let labels: Vec<Option<&str>> = rows.iter().map(|d| d.label.as_deref()).collect();
        let types: Vec<Option<&str>> = rows.iter().map(|d| d.device_type.as_deref()).collect();
        let intervals: Vec<Option<i32>> = rows.iter().map(|d| d.test_interval_seconds).collect();
        let refs: Vec<Option<&str>> = rows.iter().map(|d| d.client_ref.as_deref()).collect();
        let areas: Vec<Option<&str>> = rows.iter().map(|d| d.area.as_deref()).collect();
        let mut tx = self.pool().begin().await?;
        let row = sqlx::query(sqlx::AssertSqlSafe(format!(
            "WITH input AS ( \
                 SELECT * FROM UNNEST($1::text[], $2::text[], $3::text[], $4::text[], $5::int[], \
                     $6::text[], $7::text[]) \
                 AS t(account, protocol, label, device_type, test_interval_seconds, client_ref, area)), \
             old AS ( \
                 SELECT d.account, jsonb_build_object({DEVICE_JSON}) AS doc \
                 FROM devices d JOIN input i USING (account)), \
             up AS ( \
                 INSERT INTO devices AS d (account, protocol, label, device_type, \
                     test_interval_seconds, client_ref, area) \
                 SELECT account, protocol, label, device_type, test_interval_seconds, client_ref, area \
                 FROM input \
                 ON CONFLICT (account) DO UPDATE SET protocol = EXCLUDED.protocol, \
                     label = EXCLUDED.label, device_type = EXCLUDED.device_type, \
                     test_interval_seconds = EXCLUDED.test_interval_seconds, \
                     client_ref = EXCLUDED.client_ref, area = EXCLUDED.area \
                 RETURNING d.id, d.account, (xmax = 0) AS inserted, jsonb_build_object({DEVICE_JSON}) AS doc), \
             logged AS ( \
                 INSERT INTO audit (user_id, action, object_type, object_id, before, after, request_id, ip) \
                 SELECT $8, $9, $10, up.id::text, old.doc, up.doc, $11, $12 \
                 FROM up LEFT JOIN old USING (account)) \
             SELECT count(*) FILTER (WHERE inserted), count(*) FILTER (WHERE NOT inserted) FROM up"
        )))
        .bind(&accounts)
        .bind(&protocols)
        .bind(&labels)
        .bind(&types)
        .bind(&intervals)
        .bind(&refs)
        .bind(&areas)
        .bind(audit.user_id)
        .bind(&audit.action)
        .bind(&audit.object_type)
        .bind(&audit.request_id)
        .bind(&audit.ip)
        .fetch_one(&mut *tx)
        .await?;
        Ok(finish_import(tx, &row, commit).await?)
    }

    // ---- queue view -----------------------------------------------------------------

    /// Open incidents (`ids == None`) or the given ones, with holder, device and client.
    pub async fn incident_views(
        &self,
        ids: Option<&[i64]>,
    ) -> Result<Vec<IncidentViewRow>, StoreError> {
        let rows = sqlx::query(
            "SELECT i.id, i.priority, i.kind, i.state, i.raised_at, i.claimed_at, i.resolved_at, \
                    i.signal_count, \
                    jsonb_build_object('arrived_at', i.doc -> 'arrived_at', 'holder', i.doc -> 'holder', \
                        'sla', i.doc -> 'sla', 'area', i.doc -> 'area', 'subject', i.doc -> 'subject', \
                        'summary', i.doc -> 'summary', 'resolution', i.doc -> 'resolution', \
                        'group_count', jsonb_array_length(i.doc #> '{group,members}')), \
                    u.display_name, d.id, d.account, d.label, \
                    c.id, c.name, NULLIF(concat_ws(', ', NULLIF(c.address, ''), NULLIF(c.postcode, '')), '') \
             FROM incidents i \
             LEFT JOIN users u ON u.id = (i.doc #>> '{holder,id}')::bigint \
             LEFT JOIN devices d ON d.id = i.device_id \
             LEFT JOIN clients c ON c.external_ref = d.client_ref \
             WHERE CASE WHEN $1::bigint[] IS NULL THEN i.resolved_at IS NULL ELSE i.id = ANY($1) END \
             ORDER BY i.id",
        )
        .bind(ids)
        .fetch_all(self.pool())
        .await?;
        rows.iter()
            .map(|r| {
                Ok(IncidentViewRow {
                    id: r.try_get(0)?,
                    priority: r.try_get(1)?,
                    kind: r.try_get(2)?,
                    state: r.try_get(3)?,
                    raised_at: r.try_get(4)?,
                    claimed_at: r.try_get(5)?,
                    resolved_at: r.try_get(6)?,
                    signal_count: r.try_get(7)?,
                    doc: r.try_get(8)?,
                    holder_name: r.try_get(9)?,
                    device_id: r.try_get(10)?,
                    device_account: r.try_get(11)?,
                    device_label: r.try_get(12)?,
                    client_id: r.try_get(13)?,
                    client_name: r.try_get(14)?,
                    client_address: r.try_get(15)?,
                })
            })
            .collect::<Result<_, sqlx::Error>>()
            .map_err(Into::into)
    }

    pub async fn incident_events(&self, id: i64) -> Result<Vec<IncidentEvent>, StoreError> {
        let rows = sqlx::query(
            "SELECT seq, kind, at, effect FROM incident_events WHERE incident_id = $1 ORDER BY seq",
        )
        .bind(id)
        .fetch_all(self.pool())
        .await?;
        rows.iter()
            .map(|r| {
                Ok(IncidentEvent {
                    seq: r.try_get(0)?,
                    kind: r.try_get(1)?,
                    at: r.try_get(2)?,
                    effect: r.try_get(3)?,
                })
            })
            .collect::<Result<_, sqlx::Error>>()
            .map_err(Into::into)
    }

    // ---- out-of-hours desk ----------------------------------------------------------

    pub async fn ooh_categories(&self) -> Result<Vec<OohCategory>, StoreError> {
        let rows = sqlx::query(
            "SELECT code, name, oncall_name, oncall_phone FROM ooh_categories ORDER BY name",
        )
        .fetch_all(self.pool())
        .await?;
        rows.iter()
            .map(|r| {
                Ok(OohCategory {
                    code: r.try_get(0)?,
                    name: r.try_get(1)?,
                    oncall_name: r.try_get(2)?,
                    oncall_phone: r.try_get(3)?,
                })
            })
            .collect::<Result<_, sqlx::Error>>()
            .map_err(Into::into)
    }

    pub async fn save_ooh_category(
        &self,
        c: &OohCategory,
        audit: AuditWrite,
    ) -> Result<OohCategory, WriteRefused> {
        let mut tx = self.pool().begin().await?;
        let before: Option<Value> =
            sqlx::query_scalar("SELECT to_jsonb(c) FROM ooh_categories c WHERE code = $1")
                .bind(&c.code)
                .fetch_optional(&mut *tx)
                .await?;
        sqlx::query(
            "INSERT INTO ooh_categories (code, name, oncall_name, oncall_phone) VALUES ($1, $2, $3, $4) \
             ON CONFLICT (code) DO UPDATE SET name = $2, oncall_name = $3, oncall_phone = $4",
        )
        .bind(&c.code)
        .bind(&c.name)
        .bind(&c.oncall_name)
        .bind(&c.oncall_phone)
        .execute(&mut *tx)
        .await?;
        insert_audit(
            &mut tx,
            &AuditWrite {
                object_id: Some(c.code.clone()),
                before,
                after: Some(serde_json::to_value(c).unwrap_or_default()),
                ..audit
            },
        )
        .await?;
        tx.commit().await?;
        Ok(c.clone())
    }

    /// Logs a job: takes the next reference of `year`, stores the job with where it was
    /// routed (`None`: nobody to route to, recorded as `unrouted`), its first update and the
    /// audit line, all in one transaction.
    pub async fn create_ooh_job(
        &self,
        year: i32,
        job: &NewOohJob,
        routed: Option<(&str, &str)>,
        user_id: i64,
        audit: AuditWrite,
    ) -> Result<String, WriteRefused> {
        let mut tx = self.pool().begin().await?;
        let n: i32 = sqlx::query_scalar(
            "INSERT INTO ooh_counters (year, last) VALUES ($1, 1) \
             ON CONFLICT (year) DO UPDATE SET last = ooh_counters.last + 1 RETURNING last",
        )
        .bind(year)
        .fetch_one(&mut *tx)
        .await?;
        let reference = format!("OOH-{year:04}-{n:06}");
        let status = if routed.is_some() {
            "routed"
        } else {
            "unrouted"
        };
        sqlx::query(
            "INSERT INTO ooh_jobs (reference, category, caller_name, caller_phone, address, \
                 description, urgency, status, routed_name, routed_phone, created_by) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)",
        )
        .bind(&reference)
        .bind(&job.category)
        .bind(&job.caller_name)
        .bind(&job.caller_phone)
        .bind(&job.address)
        .bind(&job.description)
        .bind(&job.urgency)
        .bind(status)
        .bind(routed.map(|r| r.0))
        .bind(routed.map(|r| r.1))
        .bind(user_id)
        .execute(&mut *tx)
        .await?;
        let note = match routed {
            Some((name, phone)) => format!("routed to {name} ({phone})"),
            None => "no on-call contact for this category: not routed".to_owned(),
        };
        sqlx::query(
            "INSERT INTO ooh_updates (reference, status, note, by_user) VALUES ($1, $2, $3, $4)",
        )
        .bind(&reference)
        .bind(status)
        .bind(&note)
        .bind(user_id)
        .execute(&mut *tx)
        .await?;
        let mut after = serde_json::to_value(JobAudit::from(job)).unwrap_or_default();
        after["status"] = status.into();
        after["reference"] = reference.clone().into();
        insert_audit(
            &mut tx,
            &AuditWrite {
                object_id: Some(reference.clone()),
                after: Some(after),
                ..audit
            },
        )
        .await?;
        tx.commit().await?;
        Ok(reference)
    }

    /// Jobs matching a reference, address or caller (all when `q` is empty), newest first.
    pub async fn ooh_jobs(&self, q: &str, limit: i64) -> Result<Vec<OohJob>, StoreError> {
        let rows = sqlx::query(
            "SELECT j.reference FROM ooh_jobs j \
             WHERE $1 = '%%' OR j.reference ILIKE $1 OR j.address ILIKE $1 \
                OR j.caller_name ILIKE $1 OR j.caller_phone ILIKE $1 \
             ORDER BY j.created_at DESC, j.reference DESC LIMIT $2",
        )
        .bind(like(q))
        .bind(limit)
        .fetch_all(self.pool())
        .await?;
        let mut out = Vec::with_capacity(rows.len());
        for r in &rows {
            let reference: String = r.try_get(0)?;
            if let Some(j) = self.ooh_job(&reference).await? {
                out.push(j);
            }
        }
        Ok(out)
    }

    pub async fn ooh_job(&self, reference: &str) -> Result<Option<OohJob>, StoreError> {
        let row = sqlx::query(
            "SELECT j.reference, j.category, j.caller_name, j.caller_phone, j.address, \
                    j.description, j.urgency, j.status, j.routed_name, j.routed_phone, \
                    j.created_by, u.display_name, j.created_at \
             FROM ooh_jobs j JOIN users u ON u.id = j.created_by WHERE j.reference = $1",
        )
        .bind(reference)
        .fetch_optional(self.pool())
        .await?;
        let Some(r) = row else { return Ok(None) };
        let updates = sqlx::query(
            "SELECT o.at, o.status, o.note, u.display_name FROM ooh_updates o \
             LEFT JOIN users u ON u.id = o.by_user WHERE o.reference = $1 ORDER BY o.seq",
        )
        .bind(reference)
        .fetch_all(self.pool())
        .await?
        .iter()
        .map(|u| {
            Ok(OohUpdate {
                at: u.try_get(0)?,
                status: u.try_get(1)?,
                note: u.try_get(2)?,
                by: u.try_get(3)?,
            })
        })
        .collect::<Result<_, sqlx::Error>>()?;
        Ok(Some(OohJob {
            reference: r.try_get(0)?,
            category: r.try_get(1)?,
            caller_name: r.try_get(2)?,
            caller_phone: r.try_get(3)?,
            address: r.try_get(4)?,
            description: r.try_get(5)?,
            urgency: r.try_get(6)?,
            status: r.try_get(7)?,
            routed_name: r.try_get(8)?,
            routed_phone: r.try_get(9)?,
            created_by: r.try_get(10)?,
            created_by_name: r.try_get(11)?,
            created_at: r.try_get(12)?,
            updates,
        }))
    }

    /// Moves a job to a new status with a note; `Ok(false)` when there is no such job.
    pub async fn ooh_set_status(
        &self,
        reference: &str,
        status: &str,
        note: &str,
        user_id: i64,
        audit: AuditWrite,
    ) -> Result<bool, WriteRefused> {
        let mut tx = self.pool().begin().await?;
        let before: Option<String> =
            sqlx::query_scalar("SELECT status FROM ooh_jobs WHERE reference = $1 FOR UPDATE")
                .bind(reference)
                .fetch_optional(&mut *tx)
                .await?;
        let Some(before) = before else {
            return Ok(false);
        };
        sqlx::query("UPDATE ooh_jobs SET status = $2 WHERE reference = $1")
            .bind(reference)
            .bind(status)
            .execute(&mut *tx)
            .await?;
        sqlx::query(
            "INSERT INTO ooh_updates (reference, status, note, by_user) VALUES ($1, $2, $3, $4)",
        )
        .bind(reference)
        .bind(status)
        .bind(note)
        .bind(user_id)
        .execute(&mut *tx)
        .await?;
        insert_audit(
            &mut tx,
            &AuditWrite {
                object_id: Some(reference.to_owned()),
                before: Some(serde_json::json!({ "status": before })),
                after: Some(serde_json::json!({ "status": status, "note": note })),
                ..audit
            },
        )
        .await?;
        tx.commit().await?;
        Ok(true)
    }
}

#[derive(Serialize)]
struct JobAudit<'a> {
    category: &'a str,
    caller_name: &'a str,
    caller_phone: &'a str,
    address: &'a str,
    description: &'a str,
    urgency: &'a str,
}

impl<'a> From<&'a NewOohJob> for JobAudit<'a> {
    fn from(j: &'a NewOohJob) -> Self {
        JobAudit {
            category: &j.category,
            caller_name: &j.caller_name,
            caller_phone: &j.caller_phone,
            address: &j.address,
            description: &j.description,
            urgency: &j.urgency,
        }
    }
}

/// An account as the audit trail records it: never the password hash.
fn user_json(u: &UserRow) -> Value {
    serde_json::json!({
        "id": u.id, "username": u.username, "display_name": u.display_name,
        "role": u.role, "disabled": u.disabled,
    })
}

/// A client record as the audit trail records it. The key-safe code itself never enters
/// the trail, only whether one is on file.
fn client_json(c: &ClientRecord, responders: &[Responder]) -> Value {
    let mut v = serde_json::to_value(c).unwrap_or_default();
    v["responders"] = serde_json::to_value(responders).unwrap_or_default();
    v
}

async fn insert_audit(
    tx: &mut Transaction<'_, Postgres>,
    a: &AuditWrite,
) -> Result<(), sqlx::Error> {
    sqlx::query(
        "INSERT INTO audit (user_id, action, object_type, object_id, before, after, request_id, ip) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
    )
    .bind(a.user_id)
    .bind(&a.action)
    .bind(&a.object_type)
    .bind(&a.object_id)
    .bind(&a.before)
    .bind(&a.after)
    .bind(&a.request_id)
    .bind(&a.ip)
    .execute(&mut **tx)
    .await?;
    Ok(())
}

/// Ends an import's transaction (committed, or rolled back for a dry run) and returns the
/// (inserted, updated) counts its statement selected.
async fn finish_import(
    tx: Transaction<'_, Postgres>,
    row: &sqlx::postgres::PgRow,
    commit: bool,
) -> Result<(u64, u64), sqlx::Error> {
    let (inserted, updated): (i64, i64) = (row.try_get(0)?, row.try_get(1)?);
    if commit {
        tx.commit().await?;
    } else {
        tx.rollback().await?;
    }
    Ok((inserted.unsigned_abs(), updated.unsigned_abs()))
}

/// A client's responders in call order, on any connection or transaction.
async fn responders_of<'e>(
    exec: impl sqlx::PgExecutor<'e>,
    client_id: i64,
) -> Result<Vec<Responder>, sqlx::Error> {
    let rows = sqlx::query(
        "SELECT position, name, relationship, phone, is_keyholder, notes \
         FROM responders WHERE client_id = $1 ORDER BY position",
    )
    .bind(client_id)
    .fetch_all(exec)
    .await?;
    rows.iter()
        .map(|r| {
            Ok(Responder {
                position: r.try_get(0)?,
                name: r.try_get(1)?,
                relationship: r.try_get(2)?,
                phone: r.try_get(3)?,
                is_keyholder: r.try_get(4)?,
                notes: r.try_get(5)?,
            })
        })
        .collect()
}

type Saved = ((ClientRecord, Vec<Responder>), Option<Value>);

async fn save_client_tx(
    tx: &mut Transaction<'_, Postgres>,
    id: Option<i64>,
    c: &ClientRecord,
    key_safe: Option<&str>,
    responders: Option<&[Responder]>,
) -> Result<Saved, WriteRefused> {
    let before = match id {
        Some(id) => {
            let row = sqlx::query(sqlx::AssertSqlSafe(format!(
                "SELECT {CLIENT_COLUMNS} FROM clients WHERE id = $1 FOR UPDATE"
            )))
            .bind(id)
            .fetch_optional(&mut **tx)
            .await?
            .ok_or_else(|| Refused::Missing(format!("client {id}")))?;
            let old = client_of(&row)?;
            let old_responders = responders_of(&mut **tx, id).await?;
            Some(client_json(&old, &old_responders))
        }
        None => None,
    };
    let dob = c.date_of_birth.as_deref().filter(|s| !s.is_empty());
    let sql = if id.is_some() {
        format!(
            "UPDATE clients SET external_ref = $2, name = $3, date_of_birth = $4::date, address = $5, \
             postcode = $6, phone = $7, area = $8, language = $9, interpreter_needed = $10, \
             communication_needs = $11, preferred_contact = $12, access_notes = $13, \
             medical_notes = $14, \
             key_safe = CASE WHEN $15::text IS NULL THEN key_safe ELSE NULLIF($15, '') END, \
             updated_at = now() WHERE id = $1 RETURNING {CLIENT_COLUMNS}"
        )
    } else {
        format!(
            "INSERT INTO clients (external_ref, name, date_of_birth, address, postcode, phone, area, \
             language, interpreter_needed, communication_needs, preferred_contact, access_notes, \
             medical_notes, key_safe) \
             SELECT $2, $3, $4::date, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, NULLIF($15, '') \
             WHERE $1::bigint IS NULL RETURNING {CLIENT_COLUMNS}"
        )
    };
    let row = sqlx::query(sqlx::AssertSqlSafe(sql))
        .bind(id)
        .bind(&c.external_ref)
        .bind(&c.name)
        .bind(dob)
        .bind(&c.address)
        .bind(&c.postcode)
        .bind(&c.phone)
        .bind(&c.area)
        .bind(&c.language)
        .bind(c.interpreter_needed)
        .bind(&c.communication_needs)
        .bind(&c.preferred_contact)
        .bind(&c.access_notes)
        .bind(&c.medical_notes)
        .bind(key_safe)
        .fetch_one(&mut **tx)
        .await?;
    let saved = client_of(&row)?;
    let Some(responders) = responders else {
        let kept = responders_of(&mut **tx, saved.id).await?;
        return Ok(((saved, kept), before));
    };
    sqlx::query("DELETE FROM responders WHERE client_id = $1")
        .bind(saved.id)
        .execute(&mut **tx)
        .await?;
    let mut kept = Vec::with_capacity(responders.len());
    for (i, r) in responders.iter().enumerate() {
        let position = i32::try_from(i + 1).unwrap_or(i32::MAX);
        sqlx::query(
            "INSERT INTO responders (client_id, position, name, relationship, phone, is_keyholder, notes) \
             VALUES ($1, $2, $3, $4, $5, $6, $7)",
        )
        .bind(saved.id)
        .bind(position)
        .bind(&r.name)
        .bind(&r.relationship)
        .bind(&r.phone)
        .bind(r.is_keyholder)
        .bind(&r.notes)
        .execute(&mut **tx)
        .await?;
        kept.push(Responder {
            position,
            ..r.clone()
        });
    }
    Ok(((saved, kept), before))
}

async fn save_device_tx(
    tx: &mut Transaction<'_, Postgres>,
    id: Option<i64>,
    d: &DeviceRecord,
) -> Result<(DeviceRecord, Option<Value>), WriteRefused> {
    let before = match id {
        Some(id) => {
            let row = sqlx::query(sqlx::AssertSqlSafe(format!(
                "SELECT {DEVICE_COLUMNS} FROM devices WHERE id = $1 FOR UPDATE"
            )))
            .bind(id)
            .fetch_optional(&mut **tx)
            .await?
            .ok_or_else(|| Refused::Missing(format!("device {id}")))?;
            Some(serde_json::to_value(device_of(&row)?).unwrap_or_default())
        }
        None => None,
    };
    let sql = if id.is_some() {
        format!(
            "UPDATE devices SET account = $2, protocol = $3, label = $4, device_type = $5, \
             test_interval_seconds = $6, client_ref = $7, area = $8 WHERE id = $1 \
             RETURNING {DEVICE_COLUMNS}"
        )
    } else {
        format!(
            "INSERT INTO devices (account, protocol, label, device_type, test_interval_seconds, \
             client_ref, area) SELECT $2, $3, $4, $5, $6, $7, $8 WHERE $1::bigint IS NULL \
             RETURNING {DEVICE_COLUMNS}"
        )
    };
    let row = sqlx::query(sqlx::AssertSqlSafe(sql))
        .bind(id)
        .bind(&d.account)
        .bind(&d.protocol)
        .bind(&d.label)
        .bind(&d.device_type)
        .bind(d.test_interval_seconds)
        .bind(&d.client_ref)
        .bind(&d.area)
        .fetch_one(&mut **tx)
        .await?;
    Ok((device_of(&row)?, before))
}
