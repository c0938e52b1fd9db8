//! What leaves the console must not hurt whoever reads it: exported CSV cells that a
//! spreadsheet would run as formulas are neutralised (and import back to the same values),
//! error answers carry a code, plain words and Warden's own request id (never the client's),
//! and a refused write does not name the database's constraint.

mod common;

use axum::http::{Method, StatusCode};
use common::App;
use serde_json::{Value, json};
use sqlx::PgPool;

/// Values a spreadsheet would take for a formula, one per OWASP start character, plus a
/// value that already starts with `'` before one (it must survive the round trip too).
const FORMULAS: &[&str] = &[
    "=HYPERLINK(\"http://x\",\"y\")",
    "+SUM(1,2)",
    "-2+3",
    "@SUM(1,2)",
    "\t=1+1",
    "\r=1+1",
    "'=kept as typed",
];

/// The cells of `column` in a CSV text, by row.
fn column(text: &str, name: &str) -> Vec<String> {
    let mut rdr = csv::Reader::from_reader(text.as_bytes());
    let at = rdr
        .headers()
        .expect("a header")
        .iter()
        .position(|h| h == name)
        .unwrap_or_else(|| panic!("no column {name}"));
    rdr.records()
        .map(|r| r.expect("a record")[at].to_owned())
        .collect()
}

#[sqlx::test(migrations = "../warden-store/migrations")]
async fn exported_cells_that_look_like_formulas_are_neutralised_and_import_back_unchanged(
    pool: PgPool,
) {
    let app = App::start(pool).await;
    let admin = app.login_as("admin").await;
    let mut stored: Vec<(i64, Value)> = Vec::new();
    for (n, name) in FORMULAS.iter().enumerate() {
        let c = app
            .post(
                &admin,
                "/api/v1/clients",
                &json!({
                    "external_ref": format!("F-{n}"),
                    "name": name,
                    "phone": "+44 113 496 0000",
                    "access_notes": "-fine as it is",
                }),
            )
            .await
            .expect(StatusCode::CREATED)
            .json();
        stored.push((c["id"].as_i64().expect("id"), c));
    }
    app.post(
        &admin,
        "/api/v1/devices",
        &json!({ "account": "7001", "protocol": "contact_id", "label": "=cmd|' /C calc'!A0", "client_ref": "F-0" }),
    )
    .await
    .expect(StatusCode::CREATED);

    let clients = app
        .get(&admin, "/api/v1/export/clients.csv")
        .await
        .expect(StatusCode::OK)
        .text();
    let names = column(&clients, "name");
    assert_eq!(names.len(), FORMULAS.len());
    for (_, c) in &stored {
        let name = c["name"].as_str().expect("name");
        assert!(
            names.contains(&format!("'{name}")),
            "{name:?} is not exported as '{name:?}: {names:?}"
        );
    }
    for cell in names
        .iter()
        .chain(&column(&clients, "phone"))
        .chain(&column(&clients, "access_notes"))
    {
        assert!(
            !cell.starts_with(['=', '+', '-', '@', '\t', '\r']),
            "a cell a spreadsheet would run: {cell:?}"
        );
    }
    assert!(
        column(&clients, "phone")
            .iter()
            .all(|p| p == "'+44 113 496 0000")
    );
    let devices = app
        .get(&admin, "/api/v1/export/devices.csv")
        .await
        .expect(StatusCode::OK)
        .text();
    assert_eq!(column(&devices, "label"), ["'=cmd|' /C calc'!A0"]);

    // The exported file imports back to exactly the values it came from.
    let report = app
        .post_csv(&admin, "/api/v1/import/clients.csv", &clients)
        .await
        .expect(StatusCode::OK)
        .json();
    assert_eq!(report["errors"], json!([]), "{report}");
    assert_eq!(report["updated"], FORMULAS.len());
    for (id, before) in &stored {
        let after = app
            .get(&admin, &format!("/api/v1/clients/{id}"))
            .await
            .expect(StatusCode::OK)
            .json();
        for field in ["name", "phone", "access_notes"] {
            assert_eq!(after[field], before[field], "{field} of client {id}");
        }
    }
    let report = app
        .post_csv(&admin, "/api/v1/import/devices.csv", &devices)
        .await
        .expect(StatusCode::OK)
        .json();
    assert_eq!(report["errors"], json!([]), "{report}");
    assert_eq!(
        app.device_record("7001").await.label.as_deref(),
        Some("=cmd|' /C calc'!A0")
    );
}

#[sqlx::test(migrations = "../warden-store/migrations")]
async fn an_error_carries_warden_s_request_id_never_the_one_the_client_sent(pool: PgPool) {
    let app = App::start(pool).await;
    // A handler's error, a framework error (wrong method) and a success.
    for (method, path, status, code) in [
        (
            Method::GET,
            "/api/v1/me",
            StatusCode::UNAUTHORIZED,
            "not_signed_in",
        ),
        (
            Method::DELETE,
            "/api/v1/me",
            StatusCode::METHOD_NOT_ALLOWED,
            "method_not_allowed",
        ),
        (
            Method::GET,
            "/api/v1/nowhere",
            StatusCode::NOT_FOUND,
            "not_found",
        ),
    ] {
        let reply = app
            .call(method.clone(), path)
            .header("x-request-id", "forged-by-the-client")
            .send()
            .await;
        let header = reply.headers["x-request-id"]
            .to_str()
            .expect("ascii")
            .to_owned();
        assert_ne!(header, "forged-by-the-client", "{method} {path}");
        assert!(uuid::Uuid::parse_str(&header).is_ok(), "{header}");
        let body = reply.expect_error(status, code);
        assert_eq!(
            body["request_id"],
            header.as_str(),
            "{method} {path}: {body}"
        );
    }

    // The audit trail records Warden's id too.
    let admin = app.login_as("admin").await;
    let reply = app
        .call(Method::GET, "/api/v1/export/clients.csv")
        .session(&admin)
        .header("x-request-id", "forged-by-the-client")
        .send()
        .await
        .expect(StatusCode::OK);
    let header = reply.headers["x-request-id"].to_str().expect("ascii");
    let audited: Option<String> =
        sqlx::query_scalar("SELECT request_id FROM audit WHERE action = 'export.clients'")
            .fetch_one(&app.pool)
            .await
            .expect("the audit line");
    assert_eq!(audited.as_deref(), Some(header));
}

#[sqlx::test(migrations = "../warden-store/migrations")]
async fn a_refused_write_answers_in_plain_words_without_the_constraint_name(pool: PgPool) {
    let app = App::start(pool).await;
    let admin = app.login_as("admin").await;
    let client = json!({ "external_ref": "DUP-1", "name": "Agnes Moorcroft" });
    app.post(&admin, "/api/v1/clients", &client)
        .await
        .expect(StatusCode::CREATED);
    let reply = app.post(&admin, "/api/v1/clients", &client).await;
    let header = reply.headers["x-request-id"]
        .to_str()
        .expect("ascii")
        .to_owned();
    let body = reply.expect_error(StatusCode::CONFLICT, "already_exists");
    let text = body.to_string();
    for internal in [
        "_key",
        "_fkey",
        "_check",
        "clients",
        "constraint",
        "duplicate key",
    ] {
        assert!(!text.contains(internal), "{internal:?} in {text}");
    }
    assert_eq!(body["request_id"], header.as_str());
    assert_eq!(
        body.as_object().expect("an object").len(),
        3,
        "error, message and request_id only: {body}"
    );
}
