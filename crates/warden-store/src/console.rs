//! Repositories of the operator console: accounts and sessions, client records, devices as
//! the administrators see them, out-of-hours jobs, the queue view and the audit trail.
//!
//! Statements here use runtime-checked queries (`sqlx::query`), covered by the console's
//! integration tests against a real database.

use serde::{Deserialize, Serialize};
use serde_json::Value;
use sqlx::{FromRow as _, Postgres, Row as _, Transaction};
use time::OffsetDateTime;

use crate::model::{DEVICE_COLUMNS, Device, NewDevice};
use crate::{Store, StoreError, seal};
use warden_types::{JobStatus, Role};

pub use directory::{
    ContactMethod, DirectoryChain, DirectoryEntry, DirectoryOverride, DirectoryPerson,
    DirectoryRota, DirectoryRoute, DirectoryTeam, OncallDirectory, PersonWrite, Removal,
};

pub use audit::Rekeyed;
pub use devices::Dc09Row;

mod audit;
mod clients;
mod devices;
mod directory;
mod incidents;
mod ooh;
mod socket;
mod users;

/// A console account as stored.
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct UserRow {
    pub id: i64,
    pub username: String,
    pub display_name: String,
    #[sqlx(try_from = "String")]
    pub role: Role,
    /// argon2id PHC string.
    pub password_hash: String,
    pub disabled: bool,
    pub failed_logins: i32,
    pub locked_until: Option<OffsetDateTime>,
    /// A confirmed second factor (TOTP) is asked for at sign-in.
    pub totp_enabled: bool,
}

/// A new account, or the new state of one (`password_hash: None` keeps the old password).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UserWrite {
    pub username: String,
    pub display_name: String,
    pub role: Role,
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
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct SessionRow {
    pub csrf_token: String,
    pub expires_at: OffsetDateTime,
    #[sqlx(flatten)]
    pub user: UserRow,
}

/// What a key-safe reveal came to ([`Store::reveal_key_safe`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KeySafeReveal {
    /// The code (`None`: none on file); the reveal is recorded.
    Shown(Option<String>),
    /// No such client.
    NoClient,
    /// The user has been shown the most codes allowed in an hour; nothing was recorded.
    OverLimit,
}

/// One line of the audit trail to write (serialisable: kept in a journal on disk while the
/// database is unavailable).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct AuditWrite {
    pub user_id: Option<i64>,
    pub action: String,
    pub object_type: String,
    pub object_id: Option<String>,
    pub before: Option<Value>,
    pub after: Option<Value>,
    pub request_id: Option<String>,
    pub ip: Option<String>,
    /// When it happened, when that is not now: a line kept in memory while the database was
    /// unavailable and written once it is back. `None`: the time of the insert.
    #[serde(with = "time::serde::rfc3339::option", default)]
    pub at: Option<OffsetDateTime>,
}

/// One line of the audit trail as read back.
#[derive(Debug, Clone, PartialEq, Serialize, sqlx::FromRow)]
#[cfg_attr(feature = "utoipa", derive(utoipa::ToSchema))]
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
    /// The request's id (generated by Warden) and the client's real address.
    pub request_id: Option<String>,
    pub ip: Option<String>,
}

/// One access to a client's record: a view, a key-safe reveal, or a search that listed
/// them (the supervisors' "who viewed which client" report).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, sqlx::FromRow)]
#[cfg_attr(feature = "utoipa", derive(utoipa::ToSchema))]
pub struct ClientAccess {
    #[serde(with = "time::serde::rfc3339")]
    pub at: OffsetDateTime,
    pub user_id: Option<i64>,
    pub user_name: Option<String>,
    /// `client.view`, `client.key_safe.reveal` or `client.search`.
    pub action: String,
    pub client_id: i64,
    pub client_name: String,
    pub external_ref: String,
    pub ip: Option<String>,
    pub request_id: Option<String>,
}

/// A client record (without its responders, devices and history).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, sqlx::FromRow)]
#[cfg_attr(feature = "utoipa", derive(utoipa::ToSchema))]
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
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, sqlx::FromRow)]
#[cfg_attr(feature = "utoipa", derive(utoipa::ToSchema))]
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

/// A device as the triage registry loads it: its area falls back to its client's.
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct TriageDevice {
    #[sqlx(flatten)]
    pub device: Device,
    /// The client record the device belongs to, if its `client_ref` names one.
    pub client_id: Option<i64>,
}

/// A signal in a client's or incident's recent history.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[cfg_attr(feature = "utoipa", derive(utoipa::ToSchema))]
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
#[derive(Debug, Clone, PartialEq, sqlx::FromRow)]
pub struct IncidentViewRow {
    pub id: i64,
    pub priority: String,
    pub kind: String,
    pub state: String,
    pub raised_at: OffsetDateTime,
    pub claimed_at: Option<OffsetDateTime>,
    pub resolved_at: Option<OffsetDateTime>,
    pub signal_count: i32,
    #[sqlx(flatten)]
    pub fields: crate::IncidentViewFields,
    pub holder_name: Option<String>,
    pub device_id: Option<i64>,
    pub device_account: Option<String>,
    pub device_label: Option<String>,
    pub client_id: Option<i64>,
    pub client_name: Option<String>,
    pub client_address: Option<String>,
}

/// A device as a queue entry shows it, with its client.
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct DeviceCard {
    pub device_id: i64,
    pub device_account: Option<String>,
    pub device_label: Option<String>,
    pub client_id: Option<i64>,
    pub client_name: Option<String>,
    pub client_address: Option<String>,
}

/// Every device card and every user's display name ([`Store::queue_cards`]).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct QueueCards {
    pub devices: Vec<DeviceCard>,
    pub users: Vec<(i64, String)>,
}

/// One entry of an incident's history.
#[derive(Debug, Clone, PartialEq, Serialize, sqlx::FromRow)]
#[cfg_attr(feature = "utoipa", derive(utoipa::ToSchema))]
pub struct IncidentEvent {
    pub seq: i64,
    pub kind: String,
    #[serde(with = "time::serde::rfc3339")]
    pub at: OffsetDateTime,
    pub effect: Value,
}

/// An out-of-hours category and who is on call for it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, sqlx::FromRow)]
#[cfg_attr(feature = "utoipa", derive(utoipa::ToSchema))]
pub struct OohCategory {
    #[serde(default)]
    pub code: String,
    pub name: String,
    #[serde(default)]
    pub oncall_name: Option<String>,
    #[serde(default)]
    pub oncall_phone: Option<String>,
}

/// Where an out-of-hours job was routed, and how that contact was found (words for the
/// job's history, e.g. "the on-call route (chain Repairs)"; empty to say nothing).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct JobRouting<'a> {
    pub name: &'a str,
    pub phone: &'a str,
    pub via: &'a str,
    /// The directory's person, when the contact came from an on-call route.
    pub person: Option<i64>,
}

/// A new out-of-hours job as the desk logs it.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[cfg_attr(feature = "utoipa", derive(utoipa::ToSchema))]
pub struct NewOohJob {
    pub category: String,
    pub caller_name: String,
    #[serde(default)]
    pub caller_phone: String,
    #[serde(default)]
    pub address: String,
    pub description: String,
    pub urgency: String,
    /// How the caller wants to hear back: `phone` (a call back; nothing is sent, the
    /// default), `sms` (to `caller_phone`), `email` (to `caller_email`) or `none`.
    #[serde(default = "default_caller_contact")]
    pub caller_contact: String,
    #[serde(default)]
    pub caller_email: String,
    /// Language or format needs ("Welsh speaker", "large print", "BSL"), shown to whoever
    /// contacts the caller.
    #[serde(default)]
    pub caller_needs: String,
}

fn default_caller_contact() -> String {
    "phone".into()
}

/// What a caller is told about their job, for the words of the message.
#[derive(Debug, Clone, Copy)]
pub struct CallerUpdate<'a> {
    pub reference: &'a str,
    /// The category's name.
    pub category: &'a str,
    pub status: JobStatus,
}

/// Turns a caller update into the message sent (the notifier's plain English).
pub type CallerText = fn(&CallerUpdate<'_>) -> String;

/// A message sent (or being sent) to a caller.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, sqlx::FromRow)]
#[cfg_attr(feature = "utoipa", derive(utoipa::ToSchema))]
pub struct CallerMessage {
    pub id: i64,
    #[serde(skip)]
    pub reference: String,
    /// `sms` or `email`.
    pub channel: String,
    pub address: String,
    pub body: String,
    #[serde(with = "time::serde::rfc3339")]
    pub created_at: OffsetDateTime,
    /// `pending` (waiting or retrying), `delivered` or `failed`.
    pub status: String,
    pub attempts: i32,
    /// What the last attempt came to.
    pub outcome: Option<String>,
}

/// An out-of-hours job as stored.
#[derive(Debug, Clone, PartialEq, Serialize, sqlx::FromRow)]
pub struct OohJob {
    pub reference: String,
    pub category: String,
    pub caller_name: String,
    pub caller_phone: String,
    pub address: String,
    pub description: String,
    pub urgency: String,
    #[sqlx(try_from = "String")]
    pub status: JobStatus,
    pub routed_name: Option<String>,
    pub routed_phone: Option<String>,
    /// The on-call person it was routed to (see [`JobRouting::person`]).
    pub routed_person: Option<i64>,
    pub created_by: i64,
    pub created_by_name: String,
    #[serde(with = "time::serde::rfc3339")]
    pub created_at: OffsetDateTime,
    pub caller_contact: String,
    pub caller_email: String,
    pub caller_needs: String,
    /// Read with a second query (see `Store::ooh_jobs`).
    #[sqlx(skip)]
    pub updates: Vec<OohUpdate>,
    /// Messages to the caller, oldest first (a third query).
    #[sqlx(skip)]
    pub messages: Vec<CallerMessage>,
}

/// A status change of an out-of-hours job.
#[derive(Debug, Clone, PartialEq, Serialize, sqlx::FromRow)]
#[cfg_attr(feature = "utoipa", derive(utoipa::ToSchema))]
pub struct OohUpdate {
    #[serde(with = "time::serde::rfc3339")]
    pub at: OffsetDateTime,
    #[sqlx(try_from = "String")]
    pub status: JobStatus,
    pub note: String,
    pub by: Option<String>,
}

const USER_COLUMNS: &str = "id, username, display_name, role, password_hash, disabled, failed_logins, locked_until, \
     totp_enabled";

const CLIENT_COLUMNS: &str = "id, external_ref, name, to_char(date_of_birth, 'YYYY-MM-DD') AS date_of_birth, \
     address, postcode, phone, area, language, interpreter_needed, communication_needs, \
     preferred_contact, access_notes, medical_notes, key_safe IS NOT NULL AS key_safe_set";

/// A device row as audit JSON (the same fields as [`Device`]), for statements that build it
/// in SQL.
const DEVICE_JSON: &str = "'id', d.id, 'account', d.account, 'protocol', d.protocol, \
     'label', d.label, 'device_type', d.device_type, \
     'test_interval_seconds', d.test_interval_seconds, 'client_ref', d.client_ref, \
     'area', d.area, 'bridge_device_id', d.bridge_device_id";

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

#[derive(Serialize)]
struct JobAudit<'a> {
    category: &'a str,
    caller_name: &'a str,
    caller_phone: &'a str,
    address: &'a str,
    description: &'a str,
    urgency: &'a str,
    caller_contact: &'a str,
    caller_email: &'a str,
    caller_needs: &'a str,
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
            caller_contact: &j.caller_contact,
            caller_email: &j.caller_email,
            caller_needs: &j.caller_needs,
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
/// A client as the audit trail keeps it: the medical notes sealed, as in the table.
fn client_json(c: &ClientRecord, responders: &[Responder]) -> Result<Value, seal::SealError> {
    let mut v = serde_json::to_value(c).unwrap_or_default();
    v["medical_notes"] = seal::seal(seal::Field::MedicalNotes, &c.medical_notes)?.into();
    v["responders"] = serde_json::to_value(responders).unwrap_or_default();
    Ok(v)
}

/// A client record read from the table, its medical notes opened.
fn opened(mut c: ClientRecord) -> ClientRecord {
    c.medical_notes = seal::open_or_placeholder(seal::Field::MedicalNotes, &c.medical_notes);
    c
}

/// A sealed value of `field` for writing, or the refusal that says why it cannot be.
fn sealed(field: seal::Field, plain: &str) -> Result<String, WriteRefused> {
    seal::seal(field, plain).map_err(|e| {
        tracing::error!(error = %e, "a client field could not be sealed");
        WriteRefused::Refused(Refused::Invalid(format!(
            "the record could not be encrypted: {e}"
        )))
    })
}

async fn insert_audit(
    tx: &mut Transaction<'_, Postgres>,
    a: &AuditWrite,
) -> Result<(), sqlx::Error> {
    sqlx::query(
        "INSERT INTO audit (user_id, action, object_type, object_id, before, after, request_id, ip, at) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, COALESCE($9, clock_timestamp()))",
    )
    .bind(a.user_id)
    .bind(&a.action)
    .bind(&a.object_type)
    .bind(&a.object_id)
    .bind(&a.before)
    .bind(&a.after)
    .bind(&a.request_id)
    .bind(&a.ip)
    .bind(a.at)
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
    sqlx::query_as(
        "SELECT position, name, relationship, phone, is_keyholder, notes \
         FROM responders WHERE client_id = $1 ORDER BY position",
    )
    .bind(client_id)
    .fetch_all(exec)
    .await
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
            let old = opened(ClientRecord::from_row(&row)?);
            let old_responders = responders_of(&mut **tx, id).await?;
            Some(client_json(&old, &old_responders).map_err(|e| {
                WriteRefused::Refused(Refused::Invalid(format!(
                    "the record could not be encrypted: {e}"
                )))
            })?)
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
        .bind(sealed(seal::Field::MedicalNotes, &c.medical_notes)?)
        .bind(
            key_safe
                .map(|k| sealed(seal::Field::KeySafe, k))
                .transpose()?,
        )
        .fetch_one(&mut **tx)
        .await?;
    let saved = opened(ClientRecord::from_row(&row)?);
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
    d: &NewDevice,
) -> Result<(Device, Option<Value>), WriteRefused> {
    let before = match id {
        Some(id) => {
            let old: Device = sqlx::query_as(sqlx::AssertSqlSafe(format!(
                "SELECT {DEVICE_COLUMNS} FROM devices WHERE id = $1 FOR UPDATE"
            )))
            .bind(id)
            .fetch_optional(&mut **tx)
            .await?
            .ok_or_else(|| Refused::Missing(format!("device {id}")))?;
            Some(serde_json::to_value(old).unwrap_or_default())
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
    let saved: Device = sqlx::query_as(sqlx::AssertSqlSafe(sql))
        .bind(id)
        .bind(&d.account)
        .bind(d.protocol.as_str())
        .bind(&d.label)
        .bind(&d.device_type)
        .bind(d.test_interval_seconds)
        .bind(&d.client_ref)
        .bind(&d.area)
        .fetch_one(&mut **tx)
        .await?;
    Ok((saved, before))
}
