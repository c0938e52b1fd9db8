//! CSV import and export of clients and devices, for centres migrating from another system.
//! An import is checked row by row first; any error means nothing is imported and every
//! error is reported with its row (as a spreadsheet numbers it: the header is row 1) and
//! column. Rows are upserted by their key (`external_ref`, `account`), so a corrected file
//! can simply be imported again.
//!
//! Exported cells that a spreadsheet would take for a formula (those beginning with `=`,
//! `+`, `-`, `@`, a tab or a carriage return, OWASP's list) are neutralised with a leading
//! `'`, which spreadsheets show as "text" and do not display: a client named
//! `=HYPERLINK(…)` cannot run when an administrator opens the file, and a phone number
//! `+44…` reads `'+44…` in the file. Import undoes exactly that: a cell that begins with `'`
//! followed by one of those characters loses the one `'`, so an exported file imports back
//! to the same values, and so does a spreadsheet user's `'+44…`. A value that itself begins
//! with `'` and then one of those characters is exported with a second `'` (see
//! [`neutralise`]), so the round trip holds for every value.

use std::collections::HashSet;

use axum::Json;
use axum::extract::State;
use axum::extract::rejection::StringRejection;
use axum::http::header;
use axum::response::IntoResponse;
use serde::{Deserialize, Serialize};
use serde_json::json;
use utoipa::{IntoParams, ToSchema};
use warden_store::{ClientRecord, Dc09Row, Dc09Settings, NewDevice, Store, StoreError};
use warden_types::DeviceProtocol;

use crate::Console;
use crate::auth::Auth;
use crate::error::{ApiError, ApiQuery};
use crate::records::{check_client, check_device, register_devices};

/// Rows accepted in one import.
pub const MAX_ROWS: usize = 200_000;

const CLIENT_COLUMNS: &[&str] = &[
    "external_ref",
    "name",
    "date_of_birth",
    "address",
    "postcode",
    "phone",
    "area",
    "language",
    "interpreter_needed",
    "communication_needs",
    "preferred_contact",
    "access_notes",
    "medical_notes",
    "key_safe",
];
const DEVICE_COLUMNS: &[&str] = &[
    "account",
    "protocol",
    "label",
    "device_type",
    "test_interval_seconds",
    "client_ref",
    "area",
];
/// Import only (never exported): a DC-09 transmitter's key and settings.
const DEVICE_IMPORT_COLUMNS: &[&str] = &[
    "account",
    "protocol",
    "label",
    "device_type",
    "test_interval_seconds",
    "client_ref",
    "area",
    "dc09_key",
    "dc09_receiver",
    "dc09_line",
    "dc09_before_seconds",
    "dc09_after_seconds",
];

/// One problem in an import file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, ToSchema)]
pub struct RowError {
    pub row: u64,
    pub column: Option<String>,
    pub message: String,
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ImportQuery {
    /// Check every row and report, but import nothing.
    #[serde(default)]
    pub(crate) dry_run: bool,
}

fn csv_response(name: &str, body: Vec<u8>) -> axum::response::Response {
    (
        [
            (header::CONTENT_TYPE, "text/csv; charset=utf-8".to_owned()),
            (
                header::CONTENT_DISPOSITION,
                format!("attachment; filename=\"{name}\""),
            ),
        ],
        body,
    )
        .into_response()
}

/// The uploaded file as text, or the API's own error: 413 when too large, 400 otherwise.
pub(crate) fn csv_body(body: Result<String, StringRejection>) -> Result<String, ApiError> {
    body.map_err(|r| {
        if r.status() == axum::http::StatusCode::PAYLOAD_TOO_LARGE {
            crate::error::too_large()
        } else {
            ApiError::bad_request(
                "invalid_csv",
                format!(
                    "the file could not be read as UTF-8 text: {}",
                    r.body_text()
                ),
            )
        }
    })
}

/// Whether a spreadsheet would read a cell starting with `c` as a formula.
fn formula_start(c: char) -> bool {
    matches!(c, '=' | '+' | '-' | '@' | '\t' | '\r')
}

/// Whether `v`, after any `'` it starts with, begins like a formula: then it is exported
/// with one more `'` in front and imported with one less.
fn quoted_formula(v: &str) -> bool {
    v.trim_start_matches('\'').starts_with(formula_start)
}

/// An exported cell: `v`, or `'v` when a spreadsheet could take `v` for a formula (or `v`
/// already starts with `'` before such a character, so that [`unquote`] gives `v` back).
pub(crate) fn neutralise(v: &str) -> std::borrow::Cow<'_, str> {
    if quoted_formula(v) {
        std::borrow::Cow::Owned(format!("'{v}"))
    } else {
        std::borrow::Cow::Borrowed(v)
    }
}

/// An imported cell: `v` without the one `'` that [`neutralise`] (or a spreadsheet user)
/// put before a formula character.
pub(crate) fn unquote(v: &str) -> &str {
    match v.strip_prefix('\'') {
        Some(rest) if quoted_formula(rest) => rest,
        _ => v,
    }
}

/// Writes one exported row, every cell neutralised.
fn write_row<'a>(
    w: &mut csv::Writer<Vec<u8>>,
    cells: impl IntoIterator<Item = &'a str>,
) -> Result<(), csv::Error> {
    w.write_record(cells.into_iter().map(|c| neutralise(c).into_owned()))
}

/// The answer when an export could not be written (in memory: not expected); the detail is
/// logged.
fn export_failed(e: &dyn std::fmt::Display) -> ApiError {
    tracing::error!(error = %e, "csv export could not be written");
    ApiError::new(
        axum::http::StatusCode::INTERNAL_SERVER_ERROR,
        "export_failed",
        "the file could not be written; please try again",
    )
}

fn opt(s: &str) -> Option<String> {
    let t = s.trim();
    (!t.is_empty()).then(|| t.to_owned())
}

/// Export clients as CSV.
#[utoipa::path(get, path = "/api/v1/export/clients.csv", tag = "Import and export", operation_id = "exportClients",
    summary = "Export clients as CSV",
    description = "Roles: admin.

Columns: external_ref, name, date_of_birth, address, postcode, phone, area, language, interpreter_needed, communication_needs, preferred_contact, access_notes, medical_notes, key_safe. The key_safe column is always empty: codes never leave in bulk. interpreter_needed is yes/no. A cell a spreadsheet could take for a formula (beginning with `=`, `+`, `-`, `@`, tab or carriage return) is written with a leading `'` (a phone number `+44…` as `'+44…`); import removes it again. Audited.",
    responses(
        (status = 200, description = "All clients, by external_ref.", body = String, content_type = "text/csv"),
        (status = 500, description = "`export_failed`: the file could not be written.", body = crate::openapi::ErrorBody),
        (status = 401, response = crate::openapi::Unauthorized),
        (status = 403, description = "`forbidden`: your role may not do this (admin only).", body = crate::openapi::ErrorBody),
        (status = 503, response = crate::openapi::Unavailable),
    )
)]
pub async fn export_clients(
    State(c): State<Console>,
    auth: Auth,
) -> Result<axum::response::Response, ApiError> {
    let rows = c.store().all_clients().await?;
    let mut w = csv::Writer::from_writer(Vec::new());
    let write = |w: &mut csv::Writer<Vec<u8>>| -> Result<(), csv::Error> {
        w.write_record(CLIENT_COLUMNS)?;
        for (r, _) in &rows {
            write_row(
                w,
                [
                    r.external_ref.as_str(),
                    &r.name,
                    r.date_of_birth.as_deref().unwrap_or(""),
                    &r.address,
                    &r.postcode,
                    &r.phone,
                    r.area.as_deref().unwrap_or(""),
                    &r.language,
                    if r.interpreter_needed { "yes" } else { "no" },
                    &r.communication_needs,
                    &r.preferred_contact,
                    &r.access_notes,
                    &r.medical_notes,
                    "",
                ],
            )?;
        }
        Ok(())
    };
    write(&mut w).map_err(|e| export_failed(&e))?;
    let body = w.into_inner().map_err(|e| export_failed(&e))?;
    let mut a = auth.audit("export.clients", "client", None);
    a.after = Some(json!({ "rows": rows.len() }));
    c.store().audit(&a).await?;
    Ok(csv_response("clients.csv", body))
}

/// Export devices as CSV.
#[utoipa::path(get, path = "/api/v1/export/devices.csv", tag = "Import and export", operation_id = "exportDevices",
    summary = "Export devices as CSV",
    description = "Roles: admin.

Columns: account, protocol, label, device_type, test_interval_seconds, client_ref, area. Cells a spreadsheet could take for a formula are written with a leading `'`, as in the clients export; import removes it again. Audited.",
    responses(
        (status = 200, description = "All devices, by id.", body = String, content_type = "text/csv"),
        (status = 500, description = "`export_failed`: the file could not be written.", body = crate::openapi::ErrorBody),
        (status = 401, response = crate::openapi::Unauthorized),
        (status = 403, description = "`forbidden`: your role may not do this (admin only).", body = crate::openapi::ErrorBody),
        (status = 503, response = crate::openapi::Unavailable),
    )
)]
pub async fn export_devices(
    State(c): State<Console>,
    auth: Auth,
) -> Result<axum::response::Response, ApiError> {
    let rows = c.store().device_records("", i64::MAX).await?;
    let mut w = csv::Writer::from_writer(Vec::new());
    let write = |w: &mut csv::Writer<Vec<u8>>| -> Result<(), csv::Error> {
        w.write_record(DEVICE_COLUMNS)?;
        for d in &rows {
            write_row(
                w,
                [
                    d.account.as_str(),
                    d.protocol.as_str(),
                    d.label.as_deref().unwrap_or(""),
                    d.device_type.as_deref().unwrap_or(""),
                    &d.test_interval_seconds
                        .map(|s| s.to_string())
                        .unwrap_or_default(),
                    d.client_ref.as_deref().unwrap_or(""),
                    d.area.as_deref().unwrap_or(""),
                ],
            )?;
        }
        Ok(())
    };
    write(&mut w).map_err(|e| export_failed(&e))?;
    let body = w.into_inner().map_err(|e| export_failed(&e))?;
    let mut a = auth.audit("export.devices", "device", None);
    a.after = Some(json!({ "rows": rows.len() }));
    c.store().audit(&a).await?;
    Ok(csv_response("devices.csv", body))
}

/// Reads the header and maps each known column to its index; unknown or missing required
/// columns are errors on row 1.
fn columns(
    headers: &csv::StringRecord,
    known: &[&str],
    required: &[&str],
    errors: &mut Vec<RowError>,
) -> Vec<Option<usize>> {
    for h in headers {
        if !known.contains(&h.trim()) {
            errors.push(RowError {
                row: 1,
                column: Some(h.to_owned()),
                message: format!(
                    "unknown column {h:?}; expected some of: {}",
                    known.join(", ")
                ),
            });
        }
    }
    for r in required {
        if !headers.iter().any(|h| h.trim() == *r) {
            errors.push(RowError {
                row: 1,
                column: Some((*r).to_owned()),
                message: format!("required column {r:?} is missing"),
            });
        }
    }
    known
        .iter()
        .map(|k| headers.iter().position(|h| h.trim() == *k))
        .collect()
}

fn field<'a>(
    rec: &'a csv::StringRecord,
    idx: &[Option<usize>],
    known: &[&str],
    name: &str,
) -> &'a str {
    known
        .iter()
        .position(|k| *k == name)
        .and_then(|i| idx[i])
        .and_then(|i| rec.get(i))
        .unwrap_or("")
}

pub(crate) fn yes_no(s: &str) -> Option<bool> {
    match s.trim().to_lowercase().as_str() {
        "" | "no" | "n" | "false" | "0" => Some(false),
        "yes" | "y" | "true" | "1" => Some(true),
        _ => None,
    }
}

/// Reads one import file: checks the header against `known` and `required`, turns each
/// record into a value with `value(row, field)` (or the error naming its row and column),
/// and refuses a second row with the same `key`. Rows are numbered as a spreadsheet numbers
/// them (header = 1), which a quoted cell with line breaks does not change.
pub(crate) fn parse_rows<T>(
    text: &str,
    known: &[&str],
    required: &[&str],
    key: &str,
    mut value: impl FnMut(u64, &dyn Fn(&str) -> String) -> Result<T, RowError>,
) -> (Vec<(u64, T)>, Vec<RowError>) {
    let mut errors = Vec::new();
    let mut out = Vec::new();
    let mut rdr = csv::ReaderBuilder::new()
        .flexible(false)
        .from_reader(text.as_bytes());
    let idx = match rdr.headers() {
        Ok(h) => columns(h, known, required, &mut errors),
        Err(e) => {
            errors.push(RowError {
                row: 1,
                column: None,
                message: e.to_string(),
            });
            return (out, errors);
        }
    };
    let mut seen = HashSet::new();
    for (n, rec) in rdr.records().enumerate() {
        let row = n as u64 + 2;
        let rec = match rec {
            Ok(r) => r,
            Err(e) => {
                errors.push(RowError {
                    row,
                    column: None,
                    message: e.to_string(),
                });
                continue;
            }
        };
        if out.len() + errors.len() >= MAX_ROWS {
            errors.push(RowError {
                row,
                column: None,
                message: format!("more than {MAX_ROWS} rows; split the file"),
            });
            break;
        }
        // Trimmed, then without the `'` an export put before a formula character.
        let f = |name: &str| unquote(field(&rec, &idx, known, name).trim()).to_owned();
        let v = match value(row, &f) {
            Ok(v) => v,
            Err(e) => {
                errors.push(e);
                continue;
            }
        };
        let k = f(key);
        if !seen.insert(k.clone()) {
            errors.push(RowError {
                row,
                column: Some(key.to_owned()),
                message: format!("{key} {k:?} appears twice in the file"),
            });
            continue;
        }
        out.push((row, v));
    }
    (out, errors)
}

/// A record refused by the shared field checks, as a row error on the field it names.
fn refused(row: u64, known: &[&str], e: ApiError) -> RowError {
    RowError {
        row,
        column: column_named(&e.message, known),
        message: e.message,
    }
}

/// Parses a clients file into records (with their key-safe codes), collecting every error.
pub fn parse_clients(text: &str) -> (Vec<(ClientRecord, Option<String>)>, Vec<RowError>) {
    let (rows, errors) = parse_rows(
        text,
        CLIENT_COLUMNS,
        &["external_ref", "name"],
        "external_ref",
        |row, f| {
            let Some(interpreter_needed) = yes_no(&f("interpreter_needed")) else {
                return Err(RowError {
                    row,
                    column: Some("interpreter_needed".into()),
                    message: "use yes or no".into(),
                });
            };
            let or = |v: String, default: &str| if v.is_empty() { default.to_owned() } else { v };
            let r = ClientRecord {
                id: 0,
                external_ref: f("external_ref"),
                name: f("name"),
                date_of_birth: opt(&f("date_of_birth")),
                address: f("address"),
                postcode: f("postcode"),
                phone: f("phone"),
                area: opt(&f("area")),
                language: or(f("language"), "English"),
                interpreter_needed,
                communication_needs: f("communication_needs"),
                preferred_contact: or(f("preferred_contact"), "phone"),
                access_notes: f("access_notes"),
                medical_notes: f("medical_notes"),
                key_safe_set: false,
            };
            check_client(&r).map_err(|e| refused(row, CLIENT_COLUMNS, e))?;
            let key_safe = opt(&f("key_safe"));
            crate::text::check_opt("key_safe", key_safe.as_deref(), 64)
                .map_err(|e| refused(row, CLIENT_COLUMNS, e))?;
            Ok((r, key_safe))
        },
    );
    (rows.into_iter().map(|(_, v)| v).collect(), errors)
}

/// A device import row: the device, and a DC-09 transmitter's key and settings if given.
pub type DeviceRow = (NewDevice, Option<Dc09Row>);

/// Parses a devices file into records (with a DC-09 transmitter's key and settings when its
/// row gives any) with their row numbers, collecting every error.
pub fn parse_devices(text: &str) -> (Vec<(u64, DeviceRow)>, Vec<RowError>) {
    parse_rows(
        text,
        DEVICE_IMPORT_COLUMNS,
        &["account", "protocol"],
        "account",
        |row, f| {
            let interval = f("test_interval_seconds");
            let test_interval_seconds = if interval.is_empty() {
                None
            } else {
                Some(interval.parse::<i32>().map_err(|_| RowError {
                    row,
                    column: Some("test_interval_seconds".into()),
                    message: format!("{interval:?} is not a whole number of seconds"),
                })?)
            };
            let protocol = f("protocol")
                .parse::<DeviceProtocol>()
                .map_err(|e| RowError {
                    row,
                    column: Some("protocol".into()),
                    message: format!(
                        "protocol must be one of {} (not {:?})",
                        e.expected.replace(' ', ", "),
                        e.value
                    ),
                })?;
            let d = NewDevice {
                account: f("account"),
                protocol,
                label: opt(&f("label")),
                device_type: opt(&f("device_type")),
                test_interval_seconds,
                client_ref: opt(&f("client_ref")),
                area: opt(&f("area")),
            };
            check_device(&d).map_err(|e| refused(row, DEVICE_COLUMNS, e))?;
            let dc09 = dc09_row(row, &d, f)?;
            Ok((d, dc09))
        },
    )
}

/// The DC-09 columns of a device row, checked: `None` when they are all empty.
fn dc09_row(
    row: u64,
    d: &NewDevice,
    f: &dyn Fn(&str) -> String,
) -> Result<Option<Dc09Row>, RowError> {
    let bad = |column: &str, message: String| RowError {
        row,
        column: Some(column.to_owned()),
        message,
    };
    let key = f("dc09_key");
    let (receiver, line) = (f("dc09_receiver"), f("dc09_line"));
    let (before, after) = (f("dc09_before_seconds"), f("dc09_after_seconds"));
    if [&key, &receiver, &line, &before, &after]
        .iter()
        .all(|v| v.is_empty())
    {
        return Ok(None);
    }
    if d.protocol != DeviceProtocol::Dc09 {
        return Err(bad(
            "protocol",
            format!(
                "dc09_* columns are for dc09 transmitters; this device is {}",
                d.protocol.as_str()
            ),
        ));
    }
    let key_hex = opt(&key)
        .map(|k| {
            warden_protocol::dc09::Dc09Key::parse(&k)
                .map(|k| k.to_hex())
                .map_err(|e| bad("dc09_key", format!("dc09_key: {e}")))
        })
        .transpose()?;
    let hex = |column: &str, v: &str| -> Result<Option<String>, RowError> {
        if v.is_empty() {
            return Ok(None);
        }
        let v = v.to_ascii_uppercase();
        if (1..=6).contains(&v.len()) && v.bytes().all(|b| b.is_ascii_hexdigit()) {
            Ok(Some(v))
        } else {
            Err(bad(
                column,
                format!("{column} must be 1 to 6 hex digits (not {v:?})"),
            ))
        }
    };
    let seconds = |column: &str, v: &str| -> Result<Option<i32>, RowError> {
        if v.is_empty() {
            return Ok(None);
        }
        match v.parse::<i32>() {
            Ok(n) if (0..=3600).contains(&n) => Ok(Some(n)),
            _ => Err(bad(
                column,
                format!("{column} must be 0 to 3600 seconds (not {v:?})"),
            )),
        }
    };
    Ok(Some(Dc09Row {
        account: d.account.clone(),
        key_hex,
        settings: Dc09Settings {
            receiver: hex("dc09_receiver", &receiver)?,
            line: hex("dc09_line", &line)?,
            before_seconds: seconds("dc09_before_seconds", &before)?,
            after_seconds: seconds("dc09_after_seconds", &after)?,
            supervision_seconds: None,
        },
    }))
}

/// The column a validation message is about (messages start with the field name).
fn column_named(message: &str, known: &[&str]) -> Option<String> {
    known
        .iter()
        .find(|k| message.starts_with(**k))
        .map(|k| (*k).to_owned())
}

async fn known_client_refs(store: &Store) -> Result<HashSet<String>, StoreError> {
    Ok(store
        .all_clients()
        .await?
        .into_iter()
        .map(|(c, _)| c.external_ref)
        .collect())
}

/// What an import did (or, with `dry_run`, would do).
#[derive(Debug, Serialize, ToSchema)]
pub struct ImportReport {
    /// New rows.
    pub imported: u64,
    /// Rows that replaced existing ones.
    pub updated: u64,
    /// Every problem found; when there is any, nothing was imported.
    pub errors: Vec<RowError>,
    pub dry_run: bool,
}

pub(crate) fn report(
    imported: u64,
    updated: u64,
    errors: &[RowError],
    dry_run: bool,
) -> Json<ImportReport> {
    Json(ImportReport {
        imported,
        updated,
        errors: errors.to_vec(),
        dry_run,
    })
}

/// Import clients from CSV.
#[utoipa::path(post, path = "/api/v1/import/clients.csv", tag = "Import and export", operation_id = "importClients",
    summary = "Import clients from CSV",
    description = "Roles: admin.

Every row is checked first; if any row has an error, nothing is imported and every error is reported (still 200). A cell beginning with `'` followed by `=`, `+`, `-`, `@`, tab or carriage return loses that `'` (the export's formula guard, or a spreadsheet's text marker). Existing responders are kept. Audited per row.",
    params(ImportQuery),
    request_body(content = String, content_type = "text/csv", description = "The CSV file, UTF-8, header row first."),
    responses(
        (status = 200, description = "The import report.", body = ImportReport),
        (status = 400, description = "`invalid_csv` if the body is not UTF-8 text; `invalid_query` if `dry_run` is not a boolean; `invalid_value` or `missing_reference` if the database refused a row.", body = crate::openapi::ErrorBody),
        (status = 401, response = crate::openapi::Unauthorized),
        (status = 403, description = "`forbidden`: your role may not do this (admin only), or the `X-CSRF-Token` header is missing or wrong.", body = crate::openapi::ErrorBody),
        (status = 409, description = "`already_exists`: the database refused a row as a duplicate key (e.g. a concurrent write).", body = crate::openapi::ErrorBody),
        (status = 413, description = "`body_too_large`: the file is larger than the import limit (32 MiB by default).", body = crate::openapi::ErrorBody),
        (status = 503, response = crate::openapi::Unavailable),
    )
)]
pub async fn import_clients(
    State(c): State<Console>,
    auth: Auth,
    ApiQuery(q): ApiQuery<ImportQuery>,
    body: Result<String, StringRejection>,
) -> Result<Json<ImportReport>, ApiError> {
    let body = csv_body(body)?;
    let (rows, errors) = parse_clients(&body);
    if !errors.is_empty() {
        return Ok(report(0, 0, &errors, q.dry_run));
    }
    let audit = auth.audit("import.clients", "client", None);
    let (ins, upd) = c.store().import_clients(&rows, &audit, !q.dry_run).await?;
    if !q.dry_run {
        let refs: HashSet<&str> = rows.iter().map(|(r, _)| r.external_ref.as_str()).collect();
        register_devices(&c, |d| {
            d.client_ref.as_deref().is_some_and(|r| refs.contains(r))
        })
        .await;
    }
    Ok(report(ins, upd, &[], q.dry_run))
}

/// Import devices from CSV.
#[utoipa::path(post, path = "/api/v1/import/devices.csv", tag = "Import and export", operation_id = "importDevices",
    summary = "Import devices from CSV",
    description = "Roles: admin.

Columns as the export's, plus, for dc09 transmitters only, `dc09_key` (its AES key, hex or ASCII as for `wardend device add --key`; never exported, never shown, audited by size only), `dc09_receiver` and `dc09_line` (the `R` and `L` numbers its messages must carry, hex) and `dc09_before_seconds` / `dc09_after_seconds` (its own timestamp window). Every row is checked first (including that each client_ref names an existing client: import clients first); if any row has an error, nothing is imported and every error is reported (still 200). Audited per row; the triage engine is told at once.",
    params(ImportQuery),
    request_body(content = String, content_type = "text/csv", description = "The CSV file, UTF-8, header row first."),
    responses(
        (status = 200, description = "The import report.", body = ImportReport),
        (status = 400, description = "`invalid_csv` if the body is not UTF-8 text; `invalid_query` if `dry_run` is not a boolean; `invalid_value` or `missing_reference` if the database refused a row.", body = crate::openapi::ErrorBody),
        (status = 401, response = crate::openapi::Unauthorized),
        (status = 403, description = "`forbidden`: your role may not do this (admin only), or the `X-CSRF-Token` header is missing or wrong.", body = crate::openapi::ErrorBody),
        (status = 409, description = "`already_exists`: the database refused a row as a duplicate key (e.g. a concurrent write).", body = crate::openapi::ErrorBody),
        (status = 413, description = "`body_too_large`: the file is larger than the import limit (32 MiB by default).", body = crate::openapi::ErrorBody),
        (status = 503, response = crate::openapi::Unavailable),
    )
)]
pub async fn import_devices(
    State(c): State<Console>,
    auth: Auth,
    ApiQuery(q): ApiQuery<ImportQuery>,
    body: Result<String, StringRejection>,
) -> Result<Json<ImportReport>, ApiError> {
    let body = csv_body(body)?;
    let (rows, mut errors) = parse_devices(&body);
    let refs = known_client_refs(c.store()).await?;
    for (row, (d, _)) in &rows {
        if let Some(r) = &d.client_ref
            && !refs.contains(r)
        {
            errors.push(RowError {
                row: *row,
                column: Some("client_ref".into()),
                message: format!("no client with external_ref {r:?}; import clients first"),
            });
        }
    }
    if !errors.is_empty() {
        errors.sort_by_key(|e| e.row);
        return Ok(report(0, 0, &errors, q.dry_run));
    }
    let audit = auth.audit("import.devices", "device", None);
    let (rows, dc09): (Vec<NewDevice>, Vec<Option<Dc09Row>>) =
        rows.into_iter().map(|(_, d)| d).unzip();
    let dc09: Vec<Dc09Row> = dc09.into_iter().flatten().collect();
    let (ins, upd) = c
        .store()
        .import_devices(&rows, &dc09, &audit, !q.dry_run)
        .await?;
    if !q.dry_run {
        let accounts: HashSet<&str> = rows.iter().map(|d| d.account.as_str()).collect();
        register_devices(&c, |d| accounts.contains(d.account.as_str())).await;
    }
    Ok(report(ins, upd, &[], q.dry_run))
}

#[cfg(test)]
mod tests {
    use super::{neutralise, unquote};

    #[test]
    fn an_imported_key_safe_code_over_64_characters_is_refused_and_named() {
        let long = "9".repeat(65);
        let text = format!("external_ref,name,key_safe\nC-1,Ann Long,{long}\nC-2,Bob Fine,4471\n");
        let (rows, errors) = super::parse_clients(&text);
        assert_eq!(rows.len(), 1, "{errors:?}");
        assert_eq!(errors.len(), 1);
        assert_eq!(
            (errors[0].row, errors[0].column.as_deref()),
            (2, Some("key_safe")),
            "{errors:?}"
        );
    }

    /// Every value a spreadsheet would run is exported with a leading `'`, nothing else is
    /// touched, and import gives back exactly the value exported, whatever it was.
    #[test]
    fn neutralised_cells_are_safe_and_import_back_to_the_same_value() {
        let cases = [
            ("=1+1", "'=1+1"),
            ("+44 113 496 0000", "'+44 113 496 0000"),
            ("-5", "'-5"),
            ("@SUM(A1)", "'@SUM(A1)"),
            ("\t=1", "'\t=1"),
            ("\r=1", "'\r=1"),
            ("'=1", "''=1"),
            ("''+1", "'''+1"),
            ("'quoted", "'quoted"),
            ("'", "'"),
            ("", ""),
            ("Agnes Moorcroft", "Agnes Moorcroft"),
            ("a=b", "a=b"),
            (" =1", " =1"),
        ];
        for (value, exported) in cases {
            assert_eq!(neutralise(value), exported, "export of {value:?}");
            assert_eq!(unquote(exported), value, "import of {exported:?}");
            let first = exported.chars().next();
            assert!(
                !first.is_some_and(super::formula_start),
                "{exported:?} would run"
            );
        }
        // A spreadsheet user's own text marker is removed as the export's is.
        assert_eq!(unquote("'+44 7700 900000"), "+44 7700 900000");
    }
}
