//! A DC-09 transmitter's AES key through the console API: write-only, checked, audited by
//! size only, used by the receiver from then on.

mod common;

use axum::http::StatusCode;
use common::App;
use serde_json::json;
use sqlx::PgPool;

const KEY: &str = "000102030405060708090A0B0C0D0E0F";

#[sqlx::test(migrations = "../warden-store/migrations")]
async fn a_key_is_set_checked_never_shown_and_audited_without_it(pool: PgPool) {
    let app = App::start(pool).await;
    let admin = app.login_as("admin").await;
    let device = app
        .post(
            &admin,
            "/api/v1/devices",
            &json!({ "account": "3001", "protocol": "dc09" }),
        )
        .await
        .expect(StatusCode::CREATED)
        .json();
    let path = format!("/api/v1/devices/{}/dc09-key", device["id"]);
    let m = app
        .put(&admin, &path, &json!({ "key": "too short" }))
        .await
        .expect_error(StatusCode::BAD_REQUEST, "invalid_value");
    assert!(
        m["message"].as_str().is_some_and(|t| t.starts_with("key:")),
        "{m}"
    );
    app.put(&admin, &path, &json!({ "key": KEY }))
        .await
        .expect(StatusCode::NO_CONTENT);
    assert_eq!(
        app.store
            .dc09_account("3001")
            .await
            .expect("key")
            .key_hex
            .as_deref(),
        Some(KEY)
    );
    // No answer of the API carries it, nor the audit trail.
    let listed = app
        .get(&admin, "/api/v1/devices")
        .await
        .expect(StatusCode::OK)
        .text();
    assert!(!listed.contains(KEY), "{listed}");
    let audit = app
        .get(&admin, "/api/v1/audit?object_type=device")
        .await
        .expect(StatusCode::OK)
        .text();
    assert!(
        !audit.contains(KEY) && audit.contains("key_bits"),
        "{audit}"
    );
    // Removed: the transmitter may report plain again.
    app.put(&admin, &path, &json!({ "key": null }))
        .await
        .expect(StatusCode::NO_CONTENT);
    assert_eq!(
        app.store.dc09_account("3001").await.expect("key").key_hex,
        None
    );
}

/// CSV import: DC-09 transmitters with their keys and settings in the same transaction as
/// the devices (a SCAIP unit's zero-padded id stored as ingest looks it up); a bad key or a
/// dc09 column on another protocol refuses the whole file, naming the row and column; the
/// export never carries a key.
#[sqlx::test(migrations = "../warden-store/migrations")]
async fn a_csv_import_sets_keys_and_settings_and_the_export_never_shows_them(pool: PgPool) {
    let app = App::start(pool).await;
    let admin = app.login_as("admin").await;
    let bad = "account,protocol,dc09_key,dc09_receiver\n\
               6001,dc09,not a key,\n\
               6002,mqtt,,12\n\
               6003,dc09,,XYZ\n";
    let report = app
        .post_csv(&admin, "/api/v1/import/devices.csv", bad)
        .await
        .expect(StatusCode::OK)
        .json();
    assert_eq!(report["imported"], 0, "{report}");
    let columns: Vec<(u64, String)> = report["errors"]
        .as_array()
        .expect("errors")
        .iter()
        .map(|e| {
            (
                e["row"].as_u64().unwrap_or(0),
                e["column"].as_str().unwrap_or("").to_owned(),
            )
        })
        .collect();
    assert_eq!(
        columns,
        [
            (2, "dc09_key".to_owned()),
            (3, "protocol".to_owned()),
            (4, "dc09_receiver".to_owned())
        ],
        "{report}"
    );
    assert_eq!(
        app.store.dc09_account("6001").await.expect("read"),
        warden_store::Dc09Account::default()
    );

    let good = format!(
        "account,protocol,dc09_key,dc09_receiver,dc09_line,dc09_before_seconds\n\
         6001,dc09,{KEY},12,3,300\n\
         6002,dc09,,,,\n\
         0026317,scaip,,,,\n"
    );
    let report = app
        .post_csv(&admin, "/api/v1/import/devices.csv", &good)
        .await
        .expect(StatusCode::OK)
        .json();
    assert_eq!(report["imported"], 3, "{report}");
    let a = app.store.dc09_account("6001").await.expect("read");
    assert_eq!(a.key_hex.as_deref(), Some(KEY));
    assert_eq!(a.settings.receiver.as_deref(), Some("12"));
    assert_eq!(a.settings.line.as_deref(), Some("3"));
    assert_eq!(a.settings.before_seconds, Some(300));
    assert_eq!(a.settings.after_seconds, None);
    assert_eq!(
        app.store.dc09_account("6002").await.expect("read").key_hex,
        None
    );
    assert!(
        app.store
            .device_by_account("26317")
            .await
            .expect("read")
            .is_some(),
        "the SCAIP unit is kept as its cid is looked up"
    );
    let export = app
        .get(&admin, "/api/v1/export/devices.csv")
        .await
        .expect(StatusCode::OK)
        .text();
    assert!(
        !export.contains(KEY) && !export.contains("dc09_key"),
        "{export}"
    );
    let audit = app
        .get(&admin, "/api/v1/audit?object_type=device")
        .await
        .expect(StatusCode::OK)
        .text();
    assert!(
        !audit.contains(KEY) && audit.contains("key_bits"),
        "{audit}"
    );
}
