//! Acknowledging pages from outside the console, through the console's router on a real
//! Postgres: the signed one-time link (`/ack/<token>`: a GET shows, only the POST
//! acknowledges, once) and SMS replies through the gateway's webhook (token checked, only the
//! number paged). And the caller follow-up of the out-of-hours desk: a caller who asked for
//! SMS gets their reference, then each status change, queued with the job.

mod common;

use axum::http::{Method, StatusCode};
use common::{App, test_config};
use serde_json::json;
use sqlx::PgPool;
use time::OffsetDateTime;
use warden_console::{ConsoleConfig, SharedToken};

const TOKEN: &str = "gateway-token-for-tests";

/// An SMS page to +447700900123 for open life-critical incident 9; returns its id.
async fn sms_page(app: &App) -> i64 {
    let person: i64 =
        sqlx::query_scalar("INSERT INTO people (name) VALUES ('On Call One') RETURNING id")
            .fetch_one(&app.pool)
            .await
            .expect("person");
    sqlx::query(
        "INSERT INTO incidents (id, priority, kind, state, raised_at, signal_count, doc, summary) \
         VALUES (9, 'life_critical', 'pendant', 'offered', now(), 1, '{}', 'Flat 3')",
    )
    .execute(&app.pool)
    .await
    .expect("incident");
    sqlx::query_scalar(
        "INSERT INTO pages (incident_id, person_id, step, round, reason, channel, address, status) \
         VALUES (9, $1, 0, 0, 'step', 'sms', '+447700900123', 'delivered') RETURNING id",
    )
    .bind(person)
    .fetch_one(&app.pool)
    .await
    .expect("page")
}

async fn acked_via(app: &App, page: i64) -> Option<String> {
    sqlx::query_scalar("SELECT acked_via FROM pages WHERE id = $1")
        .bind(page)
        .fetch_one(&app.pool)
        .await
        .expect("page")
}

#[sqlx::test(migrations = "../warden-store/migrations")]
async fn an_sms_reply_acknowledges_only_through_the_gateway_token(pool: PgPool) {
    let app = App::with_config(
        pool,
        ConsoleConfig {
            sms_reply_token: Some(SharedToken(TOKEN.into())),
            ..test_config()
        },
    )
    .await;
    let page = sms_page(&app).await;
    let hook = "/api/v1/hooks/sms-reply";
    let form = "From=%2B447700900123&Body=ACK+9";
    // No token, or a wrong one: refused, nothing acknowledged.
    app.call(Method::POST, hook)
        .raw(Some("application/x-www-form-urlencoded"), form)
        .send()
        .await
        .expect_error(StatusCode::UNAUTHORIZED, "bad_token");
    app.call(Method::POST, &format!("{hook}?token=not-{TOKEN}"))
        .raw(Some("application/x-www-form-urlencoded"), form)
        .send()
        .await
        .expect_error(StatusCode::UNAUTHORIZED, "bad_token");
    assert_eq!(acked_via(&app, page).await, None);
    // A body without a sender is refused by name.
    app.call(Method::POST, &format!("{hook}?token={TOKEN}"))
        .raw(Some("application/x-www-form-urlencoded"), "Body=ACK")
        .send()
        .await
        .expect_error(StatusCode::BAD_REQUEST, "invalid_body");
    // Another number: nothing to acknowledge.
    let r = app
        .call(Method::POST, &format!("{hook}?token={TOKEN}"))
        .json(&json!({ "from": "+447700900999", "text": "ACK" }))
        .send()
        .await
        .expect(StatusCode::OK)
        .json();
    assert_eq!(r["outcome"], "no_open_page");
    // Twilio's form from the number paged (token in a header this time).
    let r = app
        .call(Method::POST, hook)
        .header("x-warden-token", TOKEN)
        .raw(Some("application/x-www-form-urlencoded"), form)
        .send()
        .await
        .expect(StatusCode::OK)
        .json();
    assert_eq!(r, json!({ "outcome": "acknowledged", "incident": 9 }));
    assert_eq!(acked_via(&app, page).await.as_deref(), Some("sms"));
}

#[sqlx::test(migrations = "../warden-store/migrations")]
async fn sms_replies_are_refused_when_not_configured(pool: PgPool) {
    let app = App::start(pool).await;
    app.call(Method::POST, "/api/v1/hooks/sms-reply?token=anything")
        .raw(Some("application/x-www-form-urlencoded"), "From=1&Body=ACK")
        .send()
        .await
        .expect_error(StatusCode::NOT_FOUND, "not_found");
}

#[sqlx::test(migrations = "../warden-store/migrations")]
async fn a_link_shows_the_alarm_and_only_its_button_acknowledges_once(pool: PgPool) {
    let app = App::start(pool).await;
    let page = sms_page(&app).await;
    let key = warden_notify::links::key(&app.store).await.expect("key");
    let expires = OffsetDateTime::now_utc().unix_timestamp() + 3600;
    let link = format!("/ack/{}", warden_notify::links::token(&key, page, expires));

    // Opening the link (what a mail scanner does) acknowledges nothing.
    let shown = app
        .call(Method::GET, &link)
        .send()
        .await
        .expect(StatusCode::OK);
    let html = shown.text();
    assert!(html.contains("Acknowledge alarm #9"), "{html}");
    assert!(html.contains("life-critical pendant (Flat 3)"), "{html}");
    assert_eq!(acked_via(&app, page).await, None);

    let done = app
        .call(Method::POST, &link)
        .send()
        .await
        .expect(StatusCode::OK);
    assert!(
        done.text().contains("Alarm #9 acknowledged"),
        "{}",
        done.text()
    );
    assert_eq!(acked_via(&app, page).await.as_deref(), Some("link"));
    // Used: it says so and changes nothing.
    let again = app
        .call(Method::POST, &link)
        .send()
        .await
        .expect(StatusCode::OK);
    assert!(
        again.text().contains("already acknowledged"),
        "{}",
        again.text()
    );
    let shown = app
        .call(Method::GET, &link)
        .send()
        .await
        .expect(StatusCode::OK);
    assert!(
        shown.text().contains("This link has been used"),
        "{}",
        shown.text()
    );

    // Forged, or expired: refused in words.
    // The last hex digit of the MAC changed (to another digit, whatever it was).
    let last = if link.ends_with('0') { '1' } else { '0' };
    let forged = format!("{}{last}", &link[..link.len() - 1]);
    let r = app.call(Method::POST, &forged).send().await;
    assert_eq!(r.status, StatusCode::NOT_FOUND, "{}", r.text());
    let old = format!("/ack/{}", warden_notify::links::token(&key, page, 1_000));
    let r = app.call(Method::GET, &old).send().await;
    assert_eq!(r.status, StatusCode::GONE, "{}", r.text());
    assert!(r.text().contains("expired"), "{}", r.text());
}

#[sqlx::test(migrations = "../warden-store/migrations")]
async fn a_caller_who_asked_for_sms_is_sent_the_reference_and_each_status_change(pool: PgPool) {
    let app = App::start(pool).await;
    let operator = app.login_as("operator").await;
    // Asking for e-mail without an address is refused by name.
    app.post(
        &operator,
        "/api/v1/ooh/jobs",
        &json!({ "category": "other", "caller_name": "Gina Caller", "description": "Boiler out",
                 "urgency": "urgent", "caller_contact": "email" }),
    )
    .await
    .expect_error(StatusCode::BAD_REQUEST, "invalid_value");
    let job = app
        .post(
            &operator,
            "/api/v1/ooh/jobs",
            &json!({ "category": "other", "caller_name": "Gina Caller", "caller_phone": "07700 900456",
                     "description": "Boiler out", "urgency": "urgent", "caller_contact": "sms",
                     "caller_needs": "Welsh speaker" }),
        )
        .await
        .expect(StatusCode::CREATED)
        .json();
    let reference = job["reference"].as_str().expect("reference").to_owned();
    assert_eq!(job["caller_contact"], "sms");
    assert_eq!(job["caller_needs"], "Welsh speaker");
    let messages = job["messages"].as_array().expect("messages");
    assert_eq!(messages.len(), 1);
    assert_eq!(messages[0]["channel"], "sms");
    assert_eq!(messages[0]["address"], "07700 900456");
    assert_eq!(
        messages[0]["status"], "pending",
        "sent by the escalator after commit"
    );
    let body = messages[0]["body"].as_str().expect("body");
    assert!(
        body.contains(&format!("your reference is {reference}")),
        "{body}"
    );

    let job = app
        .post(
            &operator,
            &format!("/api/v1/ooh/jobs/{reference}/status"),
            &json!({ "status": "in_progress", "note": "Engineer sent" }),
        )
        .await
        .expect(StatusCode::OK)
        .json();
    let messages = job["messages"].as_array().expect("messages");
    assert_eq!(messages.len(), 2);
    let body = messages[1]["body"].as_str().expect("body");
    assert!(
        body.contains("Someone is now dealing with your report"),
        "{body}"
    );
    assert!(
        !body.contains("Engineer sent"),
        "internal notes stay internal: {body}"
    );

    // A caller who wants a call back is sent nothing.
    let job = app
        .post(
            &operator,
            "/api/v1/ooh/jobs",
            &json!({ "category": "other", "caller_name": "Harry Phone", "caller_phone": "07700 900789",
                     "description": "Leak", "urgency": "routine" }),
        )
        .await
        .expect(StatusCode::CREATED)
        .json();
    assert_eq!(job["caller_contact"], "phone");
    assert_eq!(job["messages"], json!([]));
}
