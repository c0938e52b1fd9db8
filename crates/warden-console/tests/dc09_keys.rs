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
