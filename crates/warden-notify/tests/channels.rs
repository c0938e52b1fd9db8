//! The channels against real local receivers: a signed webhook (axum), an SMS gateway (axum,
//! a Twilio-like form), and e-mail through Debian's aiosmtpd SMTP sink. A page is sent after
//! the pass commits, with the page as its idempotency key; a temporary failure is retried
//! after the backoff as the same page; a permanent one fails at once; an acknowledgement
//! before delivery means it is never sent. The signed link in a message acknowledges once;
//! an SMS reply from the number paged acknowledges; any other number does not.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::http::{HeaderMap, StatusCode};
use axum::routing::post;
use serde_json::{Value, json};
use sqlx::PgPool;
use time::OffsetDateTime;
use warden_notify::email::{EmailConfig, Security};
use warden_notify::gateway::{Encoding, GatewayConfig};
use warden_notify::{
    Acked, ChannelsConfig, Escalator, EscalatorConfig, NotifyError, Reply, WebhookConfig,
    acknowledge, acknowledge_link, acknowledge_reply, webhook,
};
use warden_store::Store;
use warden_tests::smtp::SmtpSink;

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
    setup_with(pool, "webhook", url).await
}

/// Person 1 (console user `oncall1`) is reached by `kind` at `address` and always on call;
/// life-critical incident 1 has just overflowed.
async fn setup_with(pool: &PgPool, kind: &str, address: &str) -> i64 {
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
        .set_contact_method(person, 1, kind, address, true)
        .await
        .expect("contact method");
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

fn webhook_config() -> ChannelsConfig {
    ChannelsConfig {
        webhook: Some(WebhookConfig {
            secret: SECRET.to_vec(),
            timeout: Duration::from_secs(5),
        }),
        ..ChannelsConfig::default()
    }
}

fn escalator(pool: &PgPool) -> Escalator {
    escalator_with(pool, webhook_config(), None)
}

fn escalator_with(pool: &PgPool, channels: ChannelsConfig, public_url: Option<&str>) -> Escalator {
    Escalator::new(
        Store::from_pool(pool.clone()),
        EscalatorConfig {
            channels,
            public_url: public_url.map(str::to_owned),
            sms_replies: true,
            control_room: Some("0300 000 0000".into()),
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
    let attempts: Vec<(String, String)> = sqlx::query_as(
        "SELECT a.status, a.outcome FROM page_attempts a JOIN pages p ON p.id = a.page_id \
         WHERE p.incident_id = 1 ORDER BY a.id",
    )
    .fetch_all(&pool)
    .await
    .expect("attempts");
    assert_eq!(attempts.len(), 2, "every attempt is kept: {attempts:?}");
    assert_eq!(attempts[0].0, "pending");
    assert!(attempts[0].1.contains("503"), "{attempts:?}");
    assert_eq!(attempts[1].0, "delivered");
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

/// A receiver that answers every page with a redirect is not followed: the page fails
/// naming where it pointed, and the place it pointed to never sees the signed page.
#[sqlx::test(migrations = "../warden-store/migrations")]
async fn a_redirect_is_not_followed_and_fails_the_page_naming_it(pool: PgPool) {
    let (elsewhere, seen_elsewhere) = receiver(vec![200]).await;
    let app = Router::new().route(
        "/hook",
        post(move || {
            let to = elsewhere.clone();
            async move { (StatusCode::TEMPORARY_REDIRECT, [("location", to)]) }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(async move { axum::serve(listener, app).await });
    setup(&pool, &format!("http://{addr}/hook")).await;
    let esc = escalator(&pool);
    esc.pass(t0()).await.expect("pass");
    esc.deliver(t0()).await.expect("deliver");
    let (status, attempts, outcome) = page(&pool).await;
    assert_eq!((status.as_str(), attempts), ("failed", 1));
    let outcome = outcome.expect("outcome");
    assert!(
        outcome.contains("307") && outcome.contains("redirects are not followed"),
        "{outcome}"
    );
    assert!(seen_elsewhere.lock().expect("seen").is_empty());
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

/// A Twilio-like SMS gateway answering `statuses` in turn: what it received, decoded.
async fn gateway(statuses: Vec<u16>) -> (String, Seen) {
    let (url, seen) = receiver(statuses).await;
    (url.replace("/hook", "/hook?account=AC1"), seen)
}

fn sms_config(url: &str) -> ChannelsConfig {
    ChannelsConfig {
        sms: Some(GatewayConfig {
            url: url.to_owned(),
            encoding: Encoding::Form,
            body: "To={to}&From=%2B447700900000&Body={text}".into(),
            username: Some("AC1".into()),
            password: Some("token".into()),
            headers: vec![],
            timeout: Duration::from_secs(5),
        }),
        ..ChannelsConfig::default()
    }
}

#[sqlx::test(migrations = "../warden-store/migrations")]
async fn an_sms_goes_through_the_gateway_and_a_reply_from_that_number_acknowledges(pool: PgPool) {
    let (url, seen) = gateway(vec![201]).await;
    setup_with(&pool, "sms", "+447700900123").await;
    let esc = escalator_with(&pool, sms_config(&url), None);
    esc.pass(t0()).await.expect("pass");
    assert_eq!(esc.deliver(t0()).await.expect("deliver"), 1);
    let (status, attempts, outcome) = page(&pool).await;
    assert_eq!((status.as_str(), attempts), ("delivered", 1));
    assert!(outcome.is_some_and(|o| o.contains("201")));
    let body = seen.lock().expect("seen")[0].3.clone();
    let form: Vec<(String, String)> = form_urlencoded::parse(body.as_bytes())
        .into_owned()
        .collect();
    assert_eq!(form[0], ("To".into(), "+447700900123".into()));
    assert_eq!(form[1], ("From".into(), "+447700900000".into()));
    let text = &form[2].1;
    assert!(
        text.starts_with("Warden alarm #1: life-critical pendant (Flat 3, Elm Court).")
            && text.contains("reply ACK 1")
            && text.contains("call the control room on 0300 000 0000"),
        "{text}"
    );

    let store = Store::from_pool(pool.clone());
    let at = t0() + Duration::from_secs(40);
    // Another number, or words that are not an acknowledgement, change nothing.
    assert_eq!(
        acknowledge_reply(&store, "+447700900999", "ACK 1", at)
            .await
            .expect("reply"),
        Reply::NoOpenPage
    );
    assert_eq!(
        acknowledge_reply(&store, "07700 900123", "on my way?", at)
            .await
            .expect("reply"),
        Reply::NotUnderstood
    );
    assert_eq!(
        acknowledge_reply(&store, "07700 900123", "ACK 2", at)
            .await
            .expect("reply"),
        Reply::NoOpenPage,
        "a reference to another alarm acknowledges nothing"
    );
    assert_eq!(page(&pool).await.0, "delivered");
    // The number paged, in its national form: acknowledged, recorded as by SMS.
    assert_eq!(
        acknowledge_reply(&store, "07700 900123", "ack 1", at)
            .await
            .expect("reply"),
        Reply::Acknowledged(Acked::Now { incident: 1 })
    );
    let (status, via): (String, Option<String>) =
        sqlx::query_as("SELECT status, acked_via FROM pages WHERE incident_id = 1")
            .fetch_one(&pool)
            .await
            .expect("page");
    assert_eq!(
        (status.as_str(), via.as_deref()),
        ("acknowledged", Some("sms"))
    );
    let line: Value = sqlx::query_scalar(
        "SELECT effect FROM incident_events WHERE incident_id = 1 \
         AND kind = 'escalation_acknowledged'",
    )
    .fetch_one(&pool)
    .await
    .expect("history");
    assert_eq!(line["via"], "sms");
}

#[sqlx::test(migrations = "../warden-store/migrations")]
async fn a_gateway_refusing_the_number_fails_the_page_without_retrying(pool: PgPool) {
    // A 400 is what gateways answer for a landline given an SMS: permanent.
    let (url, seen) = gateway(vec![400]).await;
    setup_with(&pool, "sms", "+441632960000").await;
    let esc = escalator_with(&pool, sms_config(&url), None);
    esc.pass(t0()).await.expect("pass");
    esc.deliver(t0()).await.expect("deliver");
    let (status, attempts, outcome) = page(&pool).await;
    assert_eq!((status.as_str(), attempts), ("failed", 1));
    assert!(outcome.is_some_and(|o| o.contains("400")));
    esc.deliver(t0() + Duration::from_mins(10))
        .await
        .expect("deliver");
    assert_eq!(seen.lock().expect("seen").len(), 1);
}

#[sqlx::test(migrations = "../warden-store/migrations")]
async fn the_signed_link_in_a_message_acknowledges_once(pool: PgPool) {
    let (url, seen) = receiver(vec![200]).await;
    setup(&pool, &url).await;
    let esc = escalator_with(&pool, webhook_config(), Some("https://warden.example/"));
    esc.pass(t0()).await.expect("pass");
    esc.deliver(t0()).await.expect("deliver");
    let body: Value = serde_json::from_str(&seen.lock().expect("seen")[0].3).expect("json");
    let link = body["ack_url"].as_str().expect("a link").to_owned();
    assert!(
        body["text"].as_str().is_some_and(|t| t.contains(&link)),
        "the text carries the link"
    );
    let token = link
        .strip_prefix("https://warden.example/ack/")
        .expect("under the public address");

    let store = Store::from_pool(pool.clone());
    // A forged or altered token is refused.
    // The last hex digit of the MAC changed (to another digit, whatever it was).
    let last = if token.ends_with('0') { '1' } else { '0' };
    let forged = format!("{}{last}", &token[..token.len() - 1]);
    assert!(matches!(
        acknowledge_link(&store, &forged, t0()).await,
        Err(NotifyError::Link(_))
    ));
    // After a day it has expired.
    assert!(matches!(
        acknowledge_link(&store, token, t0() + Duration::from_hours(25)).await,
        Err(NotifyError::Link(warden_notify::links::LinkError::Expired))
    ));
    assert_eq!(page(&pool).await.0, "delivered");
    let at = t0() + Duration::from_secs(90);
    assert_eq!(
        acknowledge_link(&store, token, at).await.expect("ack"),
        Acked::Now { incident: 1 }
    );
    assert_eq!(
        acknowledge_link(&store, token, at + Duration::from_secs(5))
            .await
            .expect("ack again"),
        Acked::Already { incident: 1, at },
        "a link works once"
    );
    let via: Option<String> =
        sqlx::query_scalar("SELECT acked_via FROM pages WHERE incident_id = 1")
            .fetch_one(&pool)
            .await
            .expect("page");
    assert_eq!(via.as_deref(), Some("link"));
}

fn email_config(port: u16) -> ChannelsConfig {
    ChannelsConfig {
        email: Some(EmailConfig {
            host: "127.0.0.1".into(),
            port,
            security: Security::None,
            ca_file: None,
            username: None,
            password: None,
            from: "Warden <warden@centre.example>".into(),
            timeout: Duration::from_secs(5),
        }),
        ..ChannelsConfig::default()
    }
}

#[sqlx::test(migrations = "../warden-store/migrations")]
async fn an_email_reaches_a_real_smtp_server(pool: PgPool) {
    let sink = tokio::task::spawn_blocking(SmtpSink::start)
        .await
        .expect("sink");
    setup_with(&pool, "email", "on.call@centre.example").await;
    let esc = escalator_with(
        &pool,
        email_config(sink.port),
        Some("https://warden.example"),
    );
    esc.pass(t0()).await.expect("pass");
    assert_eq!(esc.deliver(t0()).await.expect("deliver"), 1);
    let (status, attempts, outcome) = page(&pool).await;
    assert_eq!((status.as_str(), attempts), ("delivered", 1), "{outcome:?}");
    let page_id: i64 = sqlx::query_scalar("SELECT id FROM pages WHERE incident_id = 1")
        .fetch_one(&pool)
        .await
        .expect("page");
    let sink = tokio::task::spawn_blocking(move || {
        assert!(
            sink.wait_for_messages(1, Duration::from_secs(10)),
            "no message"
        );
        sink
    })
    .await
    .expect("sink");
    // The body is quoted-printable: join its soft line breaks.
    let out = sink.output().replace("=\n", "");
    for want in [
        "From: Warden <warden@centre.example>",
        "To: on.call@centre.example",
        "Subject: Warden alarm #1: life-critical pendant, please acknowledge",
        &format!("Message-ID: <warden-page-{page_id}@centre.example>"),
        "https://warden.example/ack/",
    ] {
        assert!(out.contains(want), "{want:?} not in:\n{out}");
    }
}

#[sqlx::test(migrations = "../warden-store/migrations")]
async fn an_smtp_server_that_does_not_answer_is_a_temporary_failure(pool: PgPool) {
    setup_with(&pool, "email", "on.call@centre.example").await;
    let port = warden_tests::net::free_port();
    let esc = escalator_with(&pool, email_config(port), None);
    esc.pass(t0()).await.expect("pass");
    esc.deliver(t0()).await.expect("deliver");
    let (status, attempts, outcome) = page(&pool).await;
    assert_eq!((status.as_str(), attempts), ("pending", 1), "{outcome:?}");
}

#[sqlx::test(migrations = "../warden-store/migrations")]
async fn an_out_of_hours_caller_gets_their_reference_by_sms(pool: PgPool) {
    let (url, seen) = gateway(vec![503, 201]).await;
    let user = setup_with(&pool, "console", "").await;
    let store = Store::from_pool(pool.clone());
    let job = warden_store::NewOohJob {
        category: "other".into(),
        caller_name: "Gina Caller".into(),
        caller_phone: "07700 900456".into(),
        address: String::new(),
        description: "Boiler out".into(),
        urgency: "urgent".into(),
        caller_contact: "sms".into(),
        caller_email: String::new(),
        caller_needs: String::new(),
    };
    let reference = store
        .create_ooh_job(
            2026,
            &job,
            Some(("Duty Officer", "0113 496 0000")),
            user,
            warden_store::AuditWrite {
                action: "ooh.job.create".into(),
                object_type: "ooh_job".into(),
                ..warden_store::AuditWrite::default()
            },
            warden_notify::message::caller_update,
        )
        .await
        .expect("job");
    let esc = escalator_with(&pool, sms_config(&url), None);
    // Queued with the job, at the database's time.
    let now = OffsetDateTime::now_utc() + Duration::from_secs(1);
    // The gateway is busy once: retried after the backoff, as the same message.
    assert_eq!(esc.deliver_to_callers(now).await.expect("deliver"), 1);
    assert_eq!(esc.deliver_to_callers(now).await.expect("deliver"), 0);
    assert_eq!(
        esc.deliver_to_callers(now + Duration::from_secs(5))
            .await
            .expect("deliver"),
        1
    );
    let stored = store.ooh_job(&reference).await.expect("read").expect("job");
    assert_eq!(stored.messages.len(), 1);
    assert_eq!(
        (
            stored.messages[0].status.as_str(),
            stored.messages[0].attempts
        ),
        ("delivered", 2)
    );
    let seen = seen.lock().expect("seen").clone();
    assert_eq!(seen.len(), 2);
    assert_eq!(
        seen[0].0, seen[1].0,
        "one idempotency key for both attempts"
    );
    assert!(seen[0].0.starts_with("warden-caller-"), "{}", seen[0].0);
    let form: Vec<(String, String)> = form_urlencoded::parse(seen[1].3.as_bytes())
        .into_owned()
        .collect();
    assert_eq!(form[0].1, "07700 900456");
    assert!(
        form[2]
            .1
            .contains(&format!("your reference is {reference}"))
            && form[2].1.contains("passed your report (Other)"),
        "{}",
        form[2].1
    );
}

#[sqlx::test(migrations = "../warden-store/migrations")]
async fn a_page_whose_incident_was_claimed_before_delivery_is_not_sent(pool: PgPool) {
    let (url, seen) = receiver(vec![200]).await;
    setup(&pool, &url).await;
    let esc = escalator(&pool);
    esc.pass(t0()).await.expect("pass");
    // An operator claims the alarm between the pass and the delivery.
    sqlx::query("UPDATE incidents SET state = 'claimed' WHERE id = 1")
        .execute(&pool)
        .await
        .expect("claim");
    assert_eq!(esc.deliver(t0()).await.expect("deliver"), 0);
    assert!(seen.lock().expect("seen").is_empty());
    let (status, attempts, outcome) = page(&pool).await;
    assert_eq!((status.as_str(), attempts), ("cancelled", 0));
    assert!(outcome.is_some_and(|o| o.contains("answered")));
}

#[sqlx::test(migrations = "../warden-store/migrations")]
async fn an_acknowledgement_while_a_retry_is_pending_stops_the_retry(pool: PgPool) {
    let (url, seen) = receiver(vec![503]).await;
    let user = setup(&pool, &url).await;
    let esc = escalator(&pool);
    esc.pass(t0()).await.expect("pass");
    assert_eq!(esc.deliver(t0()).await.expect("deliver"), 1);
    assert_eq!(page(&pool).await.0, "pending", "503: to be retried in 5 s");
    let id: i64 = sqlx::query_scalar("SELECT id FROM pages WHERE incident_id = 1")
        .fetch_one(&pool)
        .await
        .expect("page");
    // The person acknowledges in the console (they saw the alarm elsewhere) meanwhile.
    acknowledge(
        &Store::from_pool(pool.clone()),
        id,
        user,
        t0() + Duration::from_secs(2),
    )
    .await
    .expect("ack");
    for later in [5, 60, 600] {
        assert_eq!(
            esc.deliver(t0() + Duration::from_secs(later))
                .await
                .expect("deliver"),
            0
        );
    }
    assert_eq!(
        seen.lock().expect("seen").len(),
        1,
        "no retry after the acknowledgement"
    );
    assert_eq!(page(&pool).await.0, "acknowledged");
}
