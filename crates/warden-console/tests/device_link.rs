//! The device list says when each device was last heard and whether triage holds it silent
//! (an open fail-to-report incident), so an administrator sees a dead transmitter in the
//! registry, not only in the queue.

mod common;

use axum::http::StatusCode;
use common::App;
use serde_json::{Value, json};
use sqlx::PgPool;

#[sqlx::test(migrations = "../warden-store/migrations")]
async fn each_device_shows_its_last_signal_and_link_state(pool: PgPool) {
    let app = App::start(pool.clone()).await;
    let admin = app.login_as("admin").await;
    let mut ids = Vec::new();
    for account in ["8001", "8002", "8003"] {
        let d = app
            .post(
                &admin,
                "/api/v1/devices",
                &json!({ "account": account, "protocol": "dc09", "test_interval_seconds": 3600 }),
            )
            .await
            .expect(StatusCode::CREATED)
            .json();
        ids.push(d["id"].as_i64().expect("id"));
    }
    // 8001 reported; 8002 reported long ago and triage raised fail-to-report; 8003 never.
    for (id, at) in [
        (ids[0], "2026-12-05T10:00:00Z"),
        (ids[1], "2026-12-01T08:00:00Z"),
    ] {
        sqlx::query(
            "INSERT INTO signals (id, source, link_id, account, device_id, kind, raw, decoded, received_at) \
             VALUES (gen_random_uuid(), 'dc09', 'dc09:x', NULL, $1, 'event', ''::bytea, '{}'::jsonb, $2::timestamptz)",
        )
        .bind(id)
        .bind(at)
        .execute(&pool)
        .await
        .expect("signal");
    }
    sqlx::query(
        "INSERT INTO incidents (id, priority, kind, state, device_id, raised_at, signal_count, doc) \
         VALUES (1, 'technical', 'fail_to_report', 'offered', $1, now(), 0, '{}'::jsonb)",
    )
    .bind(ids[1])
    .execute(&pool)
    .await
    .expect("incident");
    let list = app
        .get(&admin, "/api/v1/devices")
        .await
        .expect(StatusCode::OK)
        .json();
    let of = |account: &str| -> Value {
        list.as_array()
            .expect("devices")
            .iter()
            .find(|d| d["account"] == account)
            .cloned()
            .unwrap_or(Value::Null)
    };
    assert_eq!(of("8001")["link"], "heard", "{list}");
    assert_eq!(
        of("8001")["last_heard_at"],
        "2026-12-05T10:00:00Z",
        "{list}"
    );
    assert_eq!(of("8002")["link"], "silent", "{list}");
    assert_eq!(
        of("8002")["last_heard_at"],
        "2026-12-01T08:00:00Z",
        "{list}"
    );
    assert_eq!(of("8003")["link"], "never", "{list}");
    assert_eq!(of("8003")["last_heard_at"], Value::Null, "{list}");
    // The device's own fields are still at the top level.
    assert_eq!(of("8001")["protocol"], "dc09", "{list}");
}
