//! The webhook channel against a real local HTTP receiver: a page is POSTed after the pass
//! commits, signed, with the page as its idempotency key; a 503 is retried after the backoff
//! and the retry is the same page; a 404 fails it at once; an acknowledgement before delivery
//! means it is never sent.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::http::{HeaderMap, StatusCode};
use axum::routing::post;
use serde_json::{Value, json};
use sqlx::PgPool;
use time::OffsetDateTime;
use warden_notify::{Escalator, EscalatorConfig, WebhookConfig, acknowledge, webhook};
use warden_store::Store;

const SECRET: &[u8] = b"a-webhook-secret-for-tests";

/// What the receiver saw: (idempotency key, timestamp, signature, body).
type Seen = Arc<Mutex<Vec<(String, String, String, String)>>>;

/// A receiver answering `statuses` in turn (the last one for ever after).
async fn receiver(statuses: Vec<u16>) -> (String, Seen) {
    let seen: Seen = Arc::default();
    let answers = Arc::new(Mutex::new(statuses));
    let log = seen.clone();
    let app = Router::new().route(
        "/hook",
        post(move |headers: HeaderMap, body: String| {
            let (log, answers) = (log.clone(), answers.clone());
            async move {
                let h = |n: &str| {
                    headers
                        .get(n)
                        .and_then(|v| v.to_str().ok())
                        .unwrap_or_default()
                        .to_owned()
                };
                log.lock().expect("log").push((
                    h("idempotency-key"),
                    h("x-warden-timestamp"),
                    h("x-warden-signature"),
                    body,
                ));
                let mut a = answers.lock().expect("answers");
                let code = if a.len() > 1 { a.remove(0) } else { a[0] };
                StatusCode::from_u16(code).expect("status")
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(async move { axum::serve(listener, app).await });
    (format!("http://{addr}/hook"), seen)
}

fn t0() -> OffsetDateTime {
    OffsetDateTime::from_unix_timestamp(1_780_315_200).expect("valid")
}

/// Person 1 (console user `oncall1`) is reached by webhook at `url` and always on call;
/// life-critical incident 1 has just overflowed.
async fn setup(pool: &PgPool, url: &str) -> i64 {
    let user: i64 = sqlx::query_scalar(
        "INSERT INTO users (username, display_name, role, password_hash) \
         VALUES ('oncall1', 'On Call One', 'on_call', 'x') RETURNING id",
    )
    .fetch_one(pool)
    .await
    .expect("user");
    let store = Store::from_pool(pool.clone());
    let person = store
        .upsert_person_for_user("On Call One", user)
        .await
        .expect("person");
    store
        .set_contact_method(person, 1, "webhook", url, true)
        .await
        .expect("webhook");
    let layers = json!([{ "name": "all", "participants": [person], "start": "2026-01-05T09:00:00",
                          "shift": { "unit": "weeks", "count": 1 } }]);
    let rota = store
        .upsert_rota("On call", "Europe/London", &layers, &[])
        .await
        .expect("rota");
    let chain = json!({ "steps": [{ "targets": [{ "kind": "rota", "id": rota }], "wait": 600_000_000 }],
                        "fallback": [person], "ack_timeout": 1_800_000_000_i64, "reminder_every": null });
    let chain = store.upsert_chain("Alarms", &chain).await.expect("chain");
    store
        .set_route(1, Some("life_critical"), None, None, chain)
        .await
        .expect("route");
    sqlx::query(
        "INSERT INTO incidents (id, priority, kind, state, raised_at, signal_count, doc, summary) \
         VALUES (1, 'life_critical', 'pendant', 'offered', $1, 1, '{}', 'Flat 3, Elm Court')",
    )
    .bind(t0())
    .execute(pool)
    .await
    .expect("incident");
    sqlx::query("INSERT INTO outbox (incident_id, kind, payload) VALUES (1, 'overflow', '{}')")
        .execute(pool)
        .await
        .expect("outbox");
    user
}

fn escalator(pool: &PgPool) -> Escalator {
    Escalator::new(
        Store::from_pool(pool.clone()),
        EscalatorConfig {
            webhook: Some(WebhookConfig {
                secret: SECRET.to_vec(),
                timeout: Duration::from_secs(5),
            }),
            ..EscalatorConfig::default()
        },
    )
    .expect("escalator")
}

async fn page(pool: &PgPool) -> (String, i32, Option<String>) {
    sqlx::query_as("SELECT status, attempts, outcome FROM pages WHERE incident_id = 1")
        .fetch_one(pool)
        .await
        .expect("page")
}

#[sqlx::test(migrations = "../warden-store/migrations")]
async fn a_page_is_posted_signed_and_a_temporary_failure_is_retried_as_the_same_page(pool: PgPool) {
    let (url, seen) = receiver(vec![503, 200]).await;
    setup(&pool, &url).await;
    let esc = escalator(&pool);
    assert_eq!(esc.pass(t0()).await.expect("pass").pages, 1);
    assert_eq!(
        page(&pool).await.0,
        "pending",
        "sent after the pass commits"
    );

    assert_eq!(esc.deliver(t0()).await.expect("deliver"), 1);
    let (status, attempts, outcome) = page(&pool).await;
    assert_eq!((status.as_str(), attempts), ("pending", 1));
    assert!(outcome.is_some_and(|o| o.contains("503")));
    // Not again before the backoff (5 s) is over...
    assert_eq!(
        esc.deliver(t0() + Duration::from_secs(4))
            .await
            .expect("deliver"),
        0
    );
    // ...then once more, and delivered.
    assert_eq!(
        esc.deliver(t0() + Duration::from_secs(5))
            .await
            .expect("deliver"),
        1
    );
    assert_eq!(page(&pool).await.0, "delivered");
    assert_eq!(
        esc.deliver(t0() + Duration::from_mins(10))
            .await
            .expect("deliver"),
        0
    );

    let seen = seen.lock().expect("seen").clone();
    assert_eq!(seen.len(), 2);
    assert_eq!(
        seen[0].0, seen[1].0,
        "a retry carries the same idempotency key"
    );
    for (key, timestamp, signature, body) in &seen {
        assert!(key.starts_with("warden-page-"), "{key}");
        let t: i64 = timestamp.parse().expect("timestamp");
        assert_eq!(signature, &webhook::signature(SECRET, t, body.as_bytes()));
        let v: Value = serde_json::from_str(body).expect("json");
        assert_eq!(v["incident"], 1);
        let text = v["text"].as_str().expect("text");
        assert!(
            text.contains("#1") && text.contains("Flat 3, Elm Court"),
            "{text}"
        );
        assert!(text.contains("acknowledge"), "{text}");
    }
}

#[sqlx::test(migrations = "../warden-store/migrations")]
async fn a_permanent_refusal_fails_the_page_at_once(pool: PgPool) {
    let (url, seen) = receiver(vec![404]).await;
    setup(&pool, &url).await;
    let esc = escalator(&pool);
    esc.pass(t0()).await.expect("pass");
    esc.deliver(t0()).await.expect("deliver");
    let (status, attempts, outcome) = page(&pool).await;
    assert_eq!((status.as_str(), attempts), ("failed", 1));
    assert!(outcome.is_some_and(|o| o.contains("404")));
    assert_eq!(
        esc.deliver(t0() + Duration::from_mins(10))
            .await
            .expect("deliver"),
        0
    );
    assert_eq!(seen.lock().expect("seen").len(), 1);
}

#[sqlx::test(migrations = "../warden-store/migrations")]
async fn a_page_acknowledged_before_delivery_is_never_sent(pool: PgPool) {
    let (url, seen) = receiver(vec![200]).await;
    let user = setup(&pool, &url).await;
    let esc = escalator(&pool);
    esc.pass(t0()).await.expect("pass");
    let id: i64 = sqlx::query_scalar("SELECT id FROM pages WHERE incident_id = 1")
        .fetch_one(&pool)
        .await
        .expect("page");
    acknowledge(&Store::from_pool(pool.clone()), id, user, t0())
        .await
        .expect("ack");
    assert_eq!(esc.deliver(t0()).await.expect("deliver"), 0);
    assert!(seen.lock().expect("seen").is_empty());
    assert_eq!(page(&pool).await.0, "acknowledged");
}
