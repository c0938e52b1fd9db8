//! The operator console's HTTP API, end to end in-process: every route's session, role and
//! CSRF checks, the JSON error shape and body limits, sign-in, the incident commands through
//! the real triage engine, client records and their key-safe codes, the out-of-hours desk,
//! CSV import and export, and bulk resolve. One fresh database per test.

mod common;

use std::collections::BTreeSet;
use std::fmt::Write as _;
use std::net::SocketAddr;
use std::time::Duration;

use axum::http::{Method, StatusCode, header};
use serde_json::{Value, json};
use sqlx::PgPool;
use time::OffsetDateTime;
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::TcpStream;
use uuid::Uuid;
use warden_store::{
    AuditWrite, ClientRecord, ContactMethod, JobRouting, NewOohJob, NewQuarantine, PersonWrite,
    Record, Source,
};

use common::{App, PASSWORD, Session, is_ooh_reference, test_config};
use warden_console::ConsoleConfig;

// ---- the route table ------------------------------------------------------------------

/// Who may call a route, as the contract and `auth.rs` say.
const ANYONE: &[&str] = &["operator", "supervisor", "admin", "on_call"];
const HANDLERS: &[&str] = &["operator", "supervisor"];
const SUPERVISORS: &[&str] = &["supervisor"];
const ADMINS: &[&str] = &["admin"];
const RECORD_READERS: &[&str] = &["operator", "supervisor", "admin"];
const EDITORS: &[&str] = &["supervisor", "admin"];
const DIRECTORY: &[&str] = &["supervisor", "admin", "on_call"];
const ROLES: &[&str] = &["operator", "supervisor", "admin", "on_call"];

#[derive(Debug, Clone)]
enum Payload {
    Empty,
    Json(Value),
    Csv(&'static str),
}

/// One route of `router()` with a request that the role `probe` may make.
#[derive(Debug, Clone)]
struct Route {
    method: Method,
    /// The pattern as `router()` declares it.
    pattern: &'static str,
    /// The same with real ids.
    path: String,
    payload: Payload,
    /// The roles allowed to call it.
    roles: &'static [&'static str],
    /// An allowed role, and what it gets.
    probe: &'static str,
    expect: StatusCode,
}

impl Route {
    fn changes_state(&self) -> bool {
        self.method != Method::GET
    }
}

fn route(
    method: Method,
    pattern: &'static str,
    path: impl Into<String>,
    payload: Payload,
    roles: &'static [&'static str],
    probe: &'static str,
    expect: StatusCode,
) -> Route {
    Route {
        method,
        pattern,
        path: path.into(),
        payload,
        roles,
        probe,
        expect,
    }
}

/// Real rows for the table's ids.
#[derive(Debug)]
struct Fixture {
    incident: i64,
    client: i64,
    device: i64,
    user: i64,
    job: String,
    /// A person of the on-call directory (reached by SMS) and a rota they are always on.
    person: i64,
    rota: i64,
}

async fn fixture(app: &App, operator: &Session) -> Fixture {
    let incident = app.incident(operator, "5001", Some("C-100")).await;
    let client = app
        .store
        .save_client(
            None,
            &ClientRecord {
                external_ref: "C-100".into(),
                name: "Agnes Fixture".into(),
                language: "English".into(),
                preferred_contact: "phone".into(),
                ..ClientRecord::default()
            },
            Some("2468"),
            Some(&[]),
            AuditWrite {
                action: "client.create".into(),
                object_type: "client".into(),
                ..AuditWrite::default()
            },
        )
        .await
        .expect("save a client");
    let person = app
        .store
        .save_person(
            None,
            &PersonWrite {
                name: "Fixture On Call".into(),
                user_id: Some(app.users.on_call.id),
                active: true,
                contacts: vec![ContactMethod {
                    kind: "sms".into(),
                    address: "+447700900111".into(),
                    verified: true,
                }],
            },
            AuditWrite::default(),
        )
        .await
        .expect("person")
        .expect("created");
    let job = app
        .store
        .create_routed_ooh_job(
            OffsetDateTime::now_utc().year(),
            &NewOohJob {
                category: "other".into(),
                caller_name: "Fred Fixture".into(),
                caller_phone: String::new(),
                address: String::new(),
                description: "A fixture job".into(),
                urgency: "routine".into(),
                caller_contact: "phone".into(),
                caller_email: String::new(),
                caller_needs: String::new(),
            },
            // Routed to the fixture's on-call person, the on_call user's.
            Some(JobRouting {
                name: "Fixture On Call",
                phone: "+447700900111",
                via: "the fixture",
                person: Some(person),
            }),
            app.users.operator.id,
            AuditWrite {
                action: "ooh.job.create".into(),
                object_type: "ooh_job".into(),
                ..AuditWrite::default()
            },
            warden_notify::message::caller_update,
        )
        .await
        .expect("log a job");
    let rota = app
        .store
        .save_rota(
            "Fixture rota",
            "Europe/London",
            &[],
            &json!([{ "name": "all", "participants": [person], "start": "2026-01-05T09:00:00",
                      "shift": { "unit": "weeks", "count": 1 } }]),
            AuditWrite::default(),
        )
        .await
        .expect("rota");
    Fixture {
        person,
        rota,
        incident: incident["id"].as_i64().expect("incident id"),
        client: client.id,
        device: app.device_record("5001").await.id,
        user: app.users.operator_b.id,
        job,
    }
}

/// Every route of `router()` under /api/v1 except login (and the WebSocket, which a
/// oneshot request cannot upgrade: see the socket test). Ordered so the admitted probes,
/// run in this order, each find what they need (claim before release, logout last).
#[rustfmt::skip]
fn routes(f: &Fixture) -> Vec<Route> {
    use Method as M;
    use Payload::{Csv, Empty, Json};
    use StatusCode as S;
    let (inc, client, dev, user, job) = (f.incident, f.client, f.device, f.user, &f.job);
    let (person, rota) = (f.person, f.rota);
    let layers = json!([{ "name": "all", "participants": [person], "start": "2026-01-05T09:00:00", "shift": { "unit": "weeks", "count": 1 } }]);
    vec![
        route(M::GET, "/api/v1/me", "/api/v1/me", Empty, ANYONE, "on_call", S::OK),
        route(M::POST, "/api/v1/me/totp", "/api/v1/me/totp", Json(json!({ "password": "not the password" })), EDITORS, "supervisor", S::UNAUTHORIZED),
        route(M::POST, "/api/v1/me/totp/confirm", "/api/v1/me/totp/confirm", Json(json!({ "code": "000000" })), EDITORS, "admin", S::BAD_REQUEST),
        route(M::POST, "/api/v1/me/password", "/api/v1/me/password", Json(json!({ "current_password": "not the password", "new_password": "plum kettle orbit 77 tram" })), ANYONE, "on_call", S::UNAUTHORIZED),
        route(M::GET, "/api/v1/queue", "/api/v1/queue", Empty, HANDLERS, "operator", S::OK),
        route(M::GET, "/api/v1/outcomes", "/api/v1/outcomes", Empty, HANDLERS, "supervisor", S::OK),
        route(M::GET, "/api/v1/incidents/{id}", format!("/api/v1/incidents/{inc}"), Empty, RECORD_READERS, "admin", S::OK),
        route(M::POST, "/api/v1/incidents/{id}/claim", format!("/api/v1/incidents/{inc}/claim"), Empty, HANDLERS, "operator", S::OK),
        route(M::POST, "/api/v1/incidents/{id}/note", format!("/api/v1/incidents/{inc}/note"), Json(json!({ "text": "Rang the client: accidental press" })), HANDLERS, "operator", S::OK),
        route(M::POST, "/api/v1/incidents/{id}/release", format!("/api/v1/incidents/{inc}/release"), Empty, HANDLERS, "operator", S::OK),
        route(M::POST, "/api/v1/incidents/{id}/takeover", format!("/api/v1/incidents/{inc}/takeover"), Empty, SUPERVISORS, "supervisor", S::OK),
        route(M::POST, "/api/v1/incidents/{id}/resolve", format!("/api/v1/incidents/{inc}/resolve"), Json(json!({ "outcome": "false_alarm" })), HANDLERS, "supervisor", S::OK),
        route(M::POST, "/api/v1/incidents/bulk-resolve", "/api/v1/incidents/bulk-resolve", Json(json!({ "incidents": [inc], "outcome": "false_alarm" })), SUPERVISORS, "supervisor", S::OK),
        route(M::GET, "/api/v1/clients", "/api/v1/clients?q=agnes", Empty, RECORD_READERS, "operator", S::OK),
        route(M::POST, "/api/v1/clients", "/api/v1/clients", Json(json!({ "external_ref": "C-200", "name": "Bertie New", "preferred_contact": "sms" })), EDITORS, "admin", S::CREATED),
        route(M::GET, "/api/v1/clients/{id}", format!("/api/v1/clients/{client}"), Empty, RECORD_READERS, "operator", S::OK),
        route(M::PUT, "/api/v1/clients/{id}", format!("/api/v1/clients/{client}"), Json(json!({ "external_ref": "C-100", "name": "Agnes Fixture", "phone": "0113 496 0000" })), EDITORS, "supervisor", S::OK),
        route(M::POST, "/api/v1/clients/{id}/key-safe/reveal", format!("/api/v1/clients/{client}/key-safe/reveal"), Json(json!({ "reason": "Paramedics at the door; the incident is already resolved" })), RECORD_READERS, "supervisor", S::OK),
        route(M::GET, "/api/v1/devices", "/api/v1/devices", Empty, EDITORS, "supervisor", S::OK),
        route(M::POST, "/api/v1/devices", "/api/v1/devices", Json(json!({ "account": "5002", "protocol": "contact_id" })), ADMINS, "admin", S::CREATED),
        route(M::PUT, "/api/v1/devices/{id}", format!("/api/v1/devices/{dev}"), Json(json!({ "account": "5001", "protocol": "contact_id", "label": "Bedroom pendant", "client_ref": "C-100" })), ADMINS, "admin", S::OK),
        // The fixture's device is a Contact ID panel: no DC-09 key for it.
        route(M::PUT, "/api/v1/devices/{id}/dc09-key", format!("/api/v1/devices/{dev}/dc09-key"), Json(json!({ "key": "000102030405060708090A0B0C0D0E0F" })), ADMINS, "admin", S::BAD_REQUEST),
        route(M::GET, "/api/v1/users", "/api/v1/users", Empty, ADMINS, "admin", S::OK),
        route(M::POST, "/api/v1/users", "/api/v1/users", Json(json!({ "username": "newop", "display_name": "New Operator", "role": "operator", "password": "a long enough password" })), ADMINS, "admin", S::CREATED),
        route(M::PUT, "/api/v1/users/{id}", format!("/api/v1/users/{user}"), Json(json!({ "username": "bob", "display_name": "Bob Renamed", "role": "operator" })), ADMINS, "admin", S::OK),
        route(M::GET, "/api/v1/audit", "/api/v1/audit?object_type=client", Empty, EDITORS, "supervisor", S::OK),
        route(M::GET, "/api/v1/reports/client-access", format!("/api/v1/reports/client-access?client_id={client}&days=7"), Empty, EDITORS, "admin", S::OK),
        route(M::GET, "/api/v1/rejected", "/api/v1/rejected?hours=24&limit=10", Empty, EDITORS, "supervisor", S::OK),
        route(M::GET, "/api/v1/ooh/categories", "/api/v1/ooh/categories", Empty, ANYONE, "on_call", S::OK),
        route(M::PUT, "/api/v1/ooh/categories/{code}", "/api/v1/ooh/categories/other", Json(json!({ "name": "Other", "oncall_name": "Duty manager", "oncall_phone": "0113 496 0001" })), ADMINS, "admin", S::OK),
        route(M::GET, "/api/v1/pages", "/api/v1/pages", Empty, ANYONE, "on_call", S::OK),
        // Any role, but only the person paged: no such page.
        route(M::POST, "/api/v1/pages/{id}/ack", "/api/v1/pages/999999/ack", Empty, ANYONE, "on_call", S::NOT_FOUND),
        route(M::GET, "/api/v1/ooh/jobs", "/api/v1/ooh/jobs", Empty, ANYONE, "on_call", S::OK),
        route(M::POST, "/api/v1/ooh/jobs", "/api/v1/ooh/jobs", Json(json!({ "category": "other", "caller_name": "Gina Caller", "description": "Boiler out", "urgency": "urgent" })), HANDLERS, "operator", S::CREATED),
        route(M::GET, "/api/v1/ooh/jobs/{reference}", format!("/api/v1/ooh/jobs/{job}"), Empty, ANYONE, "on_call", S::OK),
        route(M::POST, "/api/v1/ooh/jobs/{reference}/status", format!("/api/v1/ooh/jobs/{job}/status"), Json(json!({ "status": "acknowledged", "note": "seen" })), ANYONE, "on_call", S::OK),
        route(M::GET, "/api/v1/oncall", "/api/v1/oncall", Empty, DIRECTORY, "on_call", S::OK),
        route(M::POST, "/api/v1/oncall/people", "/api/v1/oncall/people", Json(json!({ "name": "New Person", "contacts": [{ "kind": "email", "address": "new.person@centre.example", "verified": true }] })), EDITORS, "supervisor", S::CREATED),
        route(M::PUT, "/api/v1/oncall/people/{id}", format!("/api/v1/oncall/people/{person}"), Json(json!({ "name": "Fixture On Call", "contacts": [{ "kind": "sms", "address": "+447700900111", "verified": true }] })), EDITORS, "admin", S::OK),
        route(M::PUT, "/api/v1/oncall/teams", "/api/v1/oncall/teams", Json(json!({ "name": "Ops", "members": [person] })), EDITORS, "supervisor", S::OK),
        route(M::PUT, "/api/v1/oncall/rotas", "/api/v1/oncall/rotas", Json(json!({ "name": "Fixture rota", "zone": "Europe/London", "bank_holidays": ["2026-12-25"], "layers": layers })), EDITORS, "admin", S::OK),
        route(M::POST, "/api/v1/oncall/rotas/{id}/overrides", format!("/api/v1/oncall/rotas/{rota}/overrides"), Json(json!({ "person_id": person, "starts_at": "2030-01-01T00:00:00Z", "ends_at": "2030-01-02T00:00:00Z" })), EDITORS, "supervisor", S::CREATED),
        route(M::GET, "/api/v1/oncall/rotas/{id}/timeline", format!("/api/v1/oncall/rotas/{rota}/timeline?days=3"), Empty, DIRECTORY, "on_call", S::OK),
        route(M::DELETE, "/api/v1/oncall/overrides/{id}", "/api/v1/oncall/overrides/999999", Empty, EDITORS, "supervisor", S::NOT_FOUND),
        route(M::PUT, "/api/v1/oncall/chains", "/api/v1/oncall/chains", Json(json!({ "name": "Fixture chain", "doc": { "steps": [{ "targets": [{ "kind": "rota", "id": rota }], "wait": 60_000_000 }], "fallback": [person], "ack_timeout": 1_800_000_000_i64, "reminder_every": null } })), EDITORS, "admin", S::OK),
        route(M::PUT, "/api/v1/oncall/routes", "/api/v1/oncall/routes", Json(json!([])), EDITORS, "supervisor", S::NO_CONTENT),
        route(M::DELETE, "/api/v1/oncall/teams/{id}", "/api/v1/oncall/teams/999999", Empty, EDITORS, "admin", S::NOT_FOUND),
        route(M::DELETE, "/api/v1/oncall/rotas/{id}", "/api/v1/oncall/rotas/999999", Empty, EDITORS, "supervisor", S::NOT_FOUND),
        route(M::DELETE, "/api/v1/oncall/chains/{id}", "/api/v1/oncall/chains/999999", Empty, EDITORS, "admin", S::NOT_FOUND),
        route(M::POST, "/api/v1/oncall/people/import", "/api/v1/oncall/people/import", Csv("name,sms,verified\nCsv Person,+447700900222,yes\n"), EDITORS, "admin", S::OK),
        route(M::GET, "/api/v1/export/clients.csv", "/api/v1/export/clients.csv", Empty, ADMINS, "admin", S::OK),
        route(M::GET, "/api/v1/export/devices.csv", "/api/v1/export/devices.csv", Empty, ADMINS, "admin", S::OK),
        route(M::POST, "/api/v1/import/clients.csv", "/api/v1/import/clients.csv", Csv("external_ref,name\nC-300,Cyril Import\n"), ADMINS, "admin", S::OK),
        route(M::POST, "/api/v1/import/devices.csv", "/api/v1/import/devices.csv", Csv("account,protocol\n5003,contact_id\n"), ADMINS, "admin", S::OK),
        route(M::POST, "/api/v1/logout", "/api/v1/logout", Empty, ANYONE, "on_call", S::NO_CONTENT),
    ]
}

/// A request for `r` (payload included, so the body is never why it is refused).
fn request<'a>(app: &'a App, r: &Route) -> common::Call<'a> {
    let call = app.call(r.method.clone(), &r.path);
    match &r.payload {
        Payload::Empty => call,
        Payload::Json(v) => call.json(v),
        Payload::Csv(text) => call.raw(Some("text/csv"), *text),
    }
}

async fn sessions(app: &App) -> Vec<(&'static str, Session)> {
    let mut out = Vec::new();
    for role in ROLES {
        out.push((*role, app.login_as(role).await));
    }
    out
}

fn session_of<'a>(all: &'a [(&'static str, Session)], role: &str) -> &'a Session {
    &all.iter().find(|(r, _)| *r == role).expect("a session").1
}

/// The incident of the fixture, as its detail shows it.
async fn incident_state(app: &App, s: &Session, id: i64) -> Value {
    app.get(s, &format!("/api/v1/incidents/{id}"))
        .await
        .expect(StatusCode::OK)
        .json()["incident"]
        .clone()
}

#[sqlx::test(migrations = "../warden-store/migrations")]
async fn the_route_table_covers_every_route_of_the_openapi_document(pool: PgPool) {
    let app = App::start(pool).await;
    let operator = app.login_as("operator").await;
    let f = fixture(&app, &operator).await;
    let mut ours: BTreeSet<(String, String)> = routes(&f)
        .iter()
        .map(|r| (r.method.as_str().to_lowercase(), r.pattern.to_owned()))
        .collect();
    for (m, p) in [
        ("post", "/api/v1/login"),
        // The SMS gateway's webhook: its own token, no session (tests/ack_links.rs).
        ("post", "/api/v1/hooks/sms-reply"),
        ("get", "/api/v1/ws"),
        ("get", "/api/openapi.json"),
    ] {
        ours.insert((m.to_owned(), p.to_owned()));
    }
    let doc: Value = serde_json::from_str(warden_console::OPENAPI).expect("OpenAPI is JSON");
    let mut documented = BTreeSet::new();
    for (path, ops) in doc["paths"].as_object().expect("paths") {
        for m in ops.as_object().expect("operations").keys() {
            if m != "parameters" {
                documented.insert((m.clone(), path.clone()));
            }
        }
    }
    assert_eq!(ours, documented, "routes tested vs routes documented");
}

#[sqlx::test(migrations = "../warden-store/migrations")]
async fn every_endpoint_without_a_session_answers_401(pool: PgPool) {
    let app = App::start(pool).await;
    let operator = app.login_as("operator").await;
    let f = fixture(&app, &operator).await;
    let mut table = routes(&f);
    table.push(route(
        Method::GET,
        "/api/v1/ws",
        "/api/v1/ws",
        Payload::Empty,
        HANDLERS,
        "operator",
        StatusCode::OK,
    ));
    for r in &table {
        let v = request(&app, r)
            .send()
            .await
            .expect_error(StatusCode::UNAUTHORIZED, "not_signed_in");
        assert!(v.get("message").is_some(), "{} {}", r.method, r.path);
        // A cookie the server never issued is no session either.
        let reply = request(&app, r)
            .cookie("__Host-warden_session=00112233445566778899aabbccddeeff")
            .csrf(&operator.csrf)
            .send()
            .await;
        assert_eq!(
            reply.status,
            StatusCode::UNAUTHORIZED,
            "{} {} with a forged cookie: {}",
            r.method,
            r.path,
            reply.text()
        );
        assert_eq!(reply.json()["error"], "session_expired");
        assert_eq!(reply.headers[header::X_CONTENT_TYPE_OPTIONS], "nosniff");
        assert_eq!(reply.headers[header::CACHE_CONTROL], "no-store");
    }
    // Nothing happened to the incident on the way.
    let inc = incident_state(&app, &operator, f.incident).await;
    assert_eq!(inc["state"], "offered");
    assert_eq!(inc["holder"], Value::Null);

    // What needs no session.
    let doc = app
        .call(Method::GET, "/api/openapi.json")
        .send()
        .await
        .expect(StatusCode::OK);
    assert!(doc.json()["paths"].is_object());
    let index = app
        .call(Method::GET, "/")
        .send()
        .await
        .expect(StatusCode::OK);
    assert!(
        index.headers[header::CONTENT_TYPE]
            .to_str()
            .expect("ascii")
            .starts_with("text/html")
    );
    app.call(Method::GET, "/assets/js/main.js")
        .send()
        .await
        .expect(StatusCode::OK);
    app.call(Method::GET, "/api/v1/no-such-thing")
        .send()
        .await
        .expect_error(StatusCode::NOT_FOUND, "not_found");
    // Login itself needs none: a good password signs in without one.
    app.try_login("alice", PASSWORD)
        .await
        .expect(StatusCode::OK);
}

#[sqlx::test(migrations = "../warden-store/migrations")]
async fn every_route_refuses_the_roles_outside_its_set_with_403_and_admits_one_inside_it(
    pool: PgPool,
) {
    let app = App::start(pool).await;
    let all = sessions(&app).await;
    let f = fixture(&app, session_of(&all, "operator")).await;
    let table = routes(&f);
    for r in &table {
        let refused: Vec<&str> = ROLES
            .iter()
            .copied()
            .filter(|role| !r.roles.contains(role))
            .collect();
        for role in refused {
            let reply = request(&app, r)
                .session(session_of(&all, role))
                .send()
                .await;
            assert_eq!(
                reply.status,
                StatusCode::FORBIDDEN,
                "{role} on {} {}: {}",
                r.method,
                r.path,
                reply.text()
            );
            let v = reply.json();
            assert_eq!(v["error"], "forbidden", "{role} on {}", r.path);
            // Refused for the role, not for anything else (the CSRF token is right).
            assert!(
                v["message"].as_str().unwrap_or_default().contains("role"),
                "{role} on {}: {v}",
                r.path
            );
        }
    }
    // The refusals changed nothing.
    let admin = session_of(&all, "admin");
    let inc = incident_state(&app, admin, f.incident).await;
    assert_eq!(inc["state"], "offered", "{inc}");
    assert_eq!(inc["holder"], Value::Null);
    let users = app
        .get(admin, "/api/v1/users")
        .await
        .expect(StatusCode::OK)
        .json();
    assert_eq!(users.as_array().expect("users").len(), 5, "{users}");
    let clients = app
        .get(admin, "/api/v1/clients")
        .await
        .expect(StatusCode::OK)
        .json();
    assert_eq!(clients.as_array().expect("clients").len(), 1, "{clients}");
    let devices = app
        .get(admin, "/api/v1/devices")
        .await
        .expect(StatusCode::OK)
        .json();
    assert_eq!(devices.as_array().expect("devices").len(), 1, "{devices}");

    // One allowed role gets the real answer (in table order: claim before release...).
    for r in &table {
        assert!(r.roles.contains(&r.probe), "probe of {} is allowed", r.path);
        let reply = request(&app, r)
            .session(session_of(&all, r.probe))
            .send()
            .await;
        assert_eq!(
            reply.status,
            r.expect,
            "{} on {} {}: {}",
            r.probe,
            r.method,
            r.path,
            reply.text()
        );
    }
    let inc = incident_state(&app, admin, f.incident).await;
    assert_eq!(inc["state"], "resolved", "{inc}");
    assert_eq!(inc["outcome"], "false_alarm");
}

#[sqlx::test(migrations = "../warden-store/migrations")]
async fn a_state_changing_request_without_the_sessions_csrf_token_answers_403(pool: PgPool) {
    let app = App::start(pool).await;
    let all = sessions(&app).await;
    let f = fixture(&app, session_of(&all, "operator")).await;
    for r in routes(&f).iter().filter(|r| r.changes_state()) {
        let s = session_of(&all, r.probe);
        // Another live session's token is as wrong as a made-up one.
        let other = all
            .iter()
            .find(|(role, _)| *role != r.probe)
            .expect("another session");
        for token in [None, Some("not-the-token"), Some(other.1.csrf.as_str())] {
            let mut call = request(&app, r).cookie(&s.cookie);
            if let Some(t) = token {
                call = call.csrf(t);
            }
            let v = call
                .send()
                .await
                .expect_error(StatusCode::FORBIDDEN, "forbidden");
            assert!(
                v["message"]
                    .as_str()
                    .unwrap_or_default()
                    .contains("X-CSRF-Token"),
                "{} {} with token {token:?}: {v}",
                r.method,
                r.path
            );
        }
    }
    // Nothing was done, and the sessions still work (GET needs no token).
    let operator = session_of(&all, "operator");
    let inc = incident_state(&app, operator, f.incident).await;
    assert_eq!(inc["state"], "offered");
    let me = app
        .call(Method::GET, "/api/v1/me")
        .cookie(&operator.cookie)
        .send()
        .await
        .expect(StatusCode::OK)
        .json();
    assert_eq!(me["user"]["username"], "alice");
    assert_eq!(me["csrf_token"], operator.csrf.as_str());
    let admin = session_of(&all, "admin");
    let users = app
        .get(admin, "/api/v1/users")
        .await
        .expect(StatusCode::OK)
        .json();
    assert_eq!(users.as_array().expect("users").len(), 5);
}

// ---- the live queue socket (over a real socket: a oneshot request cannot upgrade) -------

/// Opens `GET /api/v1/ws` on a loopback server; returns the status and the stream.
async fn ws_open(addr: SocketAddr, cookie: &str, origin: Option<&str>) -> (u16, TcpStream) {
    let mut s = TcpStream::connect(addr).await.expect("connect");
    let mut req = format!(
        "GET /api/v1/ws HTTP/1.1\r\nHost: {addr}\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\
         Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nCookie: {cookie}\r\n"
    );
    if let Some(o) = origin {
        writeln!(req, "Origin: {o}\r").expect("write");
    }
    req.push_str("\r\n");
    s.write_all(req.as_bytes()).await.expect("send");
    let mut head = Vec::new();
    while !head.ends_with(b"\r\n\r\n") {
        let mut b = [0u8; 1];
        tokio::time::timeout(Duration::from_secs(5), s.read_exact(&mut b))
            .await
            .expect("an answer within 5 s")
            .expect("read");
        head.push(b[0]);
    }
    let head = String::from_utf8_lossy(&head).into_owned();
    let status = head
        .split(' ')
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or_else(|| panic!("a status line: {head}"));
    (status, s)
}

/// The next text frame from the server (pings skipped).
async fn ws_text(s: &mut TcpStream) -> Value {
    loop {
        let mut h = [0u8; 2];
        s.read_exact(&mut h).await.expect("frame header");
        let opcode = h[0] & 0x0f;
        let mut len = u64::from(h[1] & 0x7f);
        if len == 126 {
            let mut b = [0u8; 2];
            s.read_exact(&mut b).await.expect("length");
            len = u64::from(u16::from_be_bytes(b));
        } else if len == 127 {
            let mut b = [0u8; 8];
            s.read_exact(&mut b).await.expect("length");
            len = u64::from_be_bytes(b);
        }
        let mut payload = vec![0u8; usize::try_from(len).expect("a small frame")];
        s.read_exact(&mut payload).await.expect("payload");
        if opcode == 1 {
            return serde_json::from_slice(&payload).expect("a JSON message");
        }
    }
}

#[sqlx::test(migrations = "../warden-store/migrations")]
async fn the_live_queue_socket_admits_handlers_refuses_other_roles_and_pushes_a_new_press(
    pool: PgPool,
) {
    let app = App::start(pool).await;
    let operator = app.login_as("operator").await;
    let on_call = app.login_as("on_call").await;
    let admin = app.login_as("admin").await;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(warden_console::serve(
        listener,
        app.console.clone(),
        app.stop.clone(),
    ));

    for s in [&on_call, &admin] {
        let (status, _) = ws_open(addr, &s.cookie, None).await;
        assert_eq!(status, 403, "{}", s.user["role"]);
    }
    let (status, _) = ws_open(addr, "__Host-warden_session=nope", None).await;
    assert_eq!(status, 401);
    let (status, _) = ws_open(addr, &operator.cookie, Some("https://evil.example")).await;
    assert_eq!(status, 403, "a cross-origin socket is refused");

    let (status, mut ws) = ws_open(addr, &operator.cookie, Some(&format!("http://{addr}"))).await;
    assert_eq!(status, 101);
    let hello = tokio::time::timeout(Duration::from_secs(5), ws_text(&mut ws))
        .await
        .expect("hello within 5 s");
    assert_eq!(hello["type"], "hello");
    assert!(hello["server_time_ms"].as_i64().expect("server time") > 0);

    let device = app.device("6001", None).await;
    app.press(device, "6001").await;
    let pushed = tokio::time::timeout(Duration::from_secs(5), async {
        loop {
            let m = ws_text(&mut ws).await;
            if m["type"] == "incidents"
                && let Some(i) = m["incidents"]
                    .as_array()
                    .and_then(|v| v.iter().find(|i| i["device"]["id"] == device))
            {
                break i.clone();
            }
        }
    })
    .await
    .expect("the press pushed within 5 s");
    assert_eq!(pushed["priority"], "life_critical");
    assert_eq!(pushed["state"], "offered");
}

// ---- JSON errors and body limits ---------------------------------------------------------

#[sqlx::test(migrations = "../warden-store/migrations")]
async fn malformed_json_answers_400_with_an_error_code_and_a_message(pool: PgPool) {
    let app = App::start(pool).await;
    let operator = app.login_as("operator").await;
    let incident = app.incident(&operator, "5001", None).await;
    let id = incident["id"].as_i64().expect("id");
    let supervisor = app.login_as("supervisor").await;
    // (The role is checked before the body is read: a bulk resolve is a supervisor's.)
    for (path, body, who) in [
        (
            format!("/api/v1/incidents/{id}/note"),
            r#"{"text":"#,
            &operator,
        ),
        (
            "/api/v1/ooh/jobs".to_owned(),
            r#"{"category": "other", "#,
            &operator,
        ),
        (
            "/api/v1/incidents/bulk-resolve".to_owned(),
            "not json at all",
            &supervisor,
        ),
    ] {
        let v = app
            .call(Method::POST, &path)
            .session(who)
            .raw(Some("application/json"), body)
            .send()
            .await
            .expect_error(StatusCode::BAD_REQUEST, "invalid_json");
        assert_eq!(
            v.as_object().expect("an object").len(),
            3,
            "only error, message and request_id: {v}"
        );
    }
    let inc = incident_state(&app, &operator, id).await;
    assert_eq!(inc["state"], "offered");
}

#[sqlx::test(migrations = "../warden-store/migrations")]
async fn json_with_wrong_field_types_or_missing_fields_answers_400(pool: PgPool) {
    let app = App::start(pool).await;
    let operator = app.login_as("operator").await;
    let incident = app.incident(&operator, "5001", None).await;
    let id = incident["id"].as_i64().expect("id");
    let cases = [
        (format!("/api/v1/incidents/{id}/note"), json!({ "text": 5 })),
        (
            format!("/api/v1/incidents/{id}/resolve"),
            json!({ "outcome": ["false_alarm"] }),
        ),
        (format!("/api/v1/incidents/{id}/resolve"), json!({})),
        (
            "/api/v1/ooh/jobs".to_owned(),
            json!({ "category": "other", "caller_name": "Gina", "description": "x", "urgency": 3 }),
        ),
        (
            "/api/v1/ooh/jobs".to_owned(),
            json!({ "category": "other", "description": "no caller", "urgency": "routine" }),
        ),
    ];
    for (path, body) in cases {
        let v = app
            .post(&operator, &path, &body)
            .await
            .expect_error(StatusCode::BAD_REQUEST, "invalid_json");
        assert!(
            !v["message"].as_str().unwrap_or_default().is_empty(),
            "{path}: {v}"
        );
    }
    // Well-formed but unknown values are refused by the handlers, also with 400.
    app.post(
        &operator,
        &format!("/api/v1/incidents/{id}/resolve"),
        &json!({ "outcome": "nope" }),
    )
    .await
    .expect_error(StatusCode::BAD_REQUEST, "unknown_outcome");
    let jobs = app
        .get(&operator, "/api/v1/ooh/jobs")
        .await
        .expect(StatusCode::OK)
        .json();
    assert_eq!(jobs, json!([]), "no job was logged");
    let inc = incident_state(&app, &operator, id).await;
    assert_eq!(inc["state"], "offered");
}

#[sqlx::test(migrations = "../warden-store/migrations")]
async fn a_json_body_without_a_json_content_type_answers_415(pool: PgPool) {
    let app = App::start(pool).await;
    let operator = app.login_as("operator").await;
    let body = json!({ "category": "other", "caller_name": "Gina", "description": "Leak", "urgency": "urgent" })
        .to_string();
    for ct in [
        None,
        Some("text/plain"),
        Some("application/x-www-form-urlencoded"),
    ] {
        app.call(Method::POST, "/api/v1/ooh/jobs")
            .session(&operator)
            .raw(ct, body.clone())
            .send()
            .await
            .expect_error(StatusCode::UNSUPPORTED_MEDIA_TYPE, "unsupported_media_type");
    }
    // The same body as JSON is accepted.
    app.call(Method::POST, "/api/v1/ooh/jobs")
        .session(&operator)
        .raw(Some("application/json"), body)
        .send()
        .await
        .expect(StatusCode::CREATED);
}

#[sqlx::test(migrations = "../warden-store/migrations")]
async fn a_json_body_over_max_body_bytes_answers_413(pool: PgPool) {
    let cfg = test_config();
    let limit = cfg.max_body_bytes;
    let app = App::with_config(pool, cfg).await;
    let operator = app.login_as("operator").await;
    let big = json!({ "category": "other", "caller_name": "Gina", "urgency": "urgent",
                      "description": "x".repeat(limit + 1) });
    app.post(&operator, "/api/v1/ooh/jobs", &big)
        .await
        .expect_error(StatusCode::PAYLOAD_TOO_LARGE, "body_too_large");
    // Just under the limit is read (and then refused for its content, not its size).
    let under = json!({ "category": "other", "caller_name": "Gina", "urgency": "urgent",
                        "description": "x".repeat(limit - 200) });
    app.post(&operator, "/api/v1/ooh/jobs", &under)
        .await
        .expect_error(StatusCode::BAD_REQUEST, "invalid_value");
    let jobs = app
        .get(&operator, "/api/v1/ooh/jobs")
        .await
        .expect(StatusCode::OK)
        .json();
    assert_eq!(jobs, json!([]));
}

/// A clients file of `rows` generated rows.
fn clients_csv(rows: usize) -> String {
    let mut s = String::from("external_ref,name,address,postcode\n");
    for n in 0..rows {
        writeln!(s, "G-{n:05},Generated Client {n},{n} Long Road,LS1 {n}AA").expect("write");
    }
    s
}

/// Imports limited to 4096 bytes, JSON bodies to 1024 (so a CSV between the two shows
/// that each route group has its own limit).
fn import_config() -> ConsoleConfig {
    ConsoleConfig {
        max_body_bytes: 1024,
        max_import_bytes: 4096,
        ..test_config()
    }
}

#[sqlx::test(migrations = "../warden-store/migrations")]
async fn a_csv_import_over_max_import_bytes_answers_413(pool: PgPool) {
    let app = App::with_config(pool, import_config()).await;
    let admin = app.login_as("admin").await;
    let big = clients_csv(200);
    assert!(big.len() > 4096);
    let reply = app
        .post_csv(&admin, "/api/v1/import/clients.csv", &big)
        .await;
    assert_eq!(
        reply.status,
        StatusCode::PAYLOAD_TOO_LARGE,
        "{}",
        reply.text()
    );
    let devices = format!("account,protocol\n{}", "9,contact_id\n".repeat(400));
    assert!(devices.len() > 4096);
    let reply = app
        .post_csv(&admin, "/api/v1/import/devices.csv", &devices)
        .await;
    assert_eq!(
        reply.status,
        StatusCode::PAYLOAD_TOO_LARGE,
        "{}",
        reply.text()
    );
    assert!(
        client_refs(&app, &admin).await.is_empty(),
        "nothing imported"
    );
    // Over the JSON limit but under the import limit: imported.
    let medium = clients_csv(60);
    assert!(
        medium.len() > 1024 && medium.len() < 4096,
        "{}",
        medium.len()
    );
    let r = app
        .post_csv(&admin, "/api/v1/import/clients.csv", &medium)
        .await
        .expect(StatusCode::OK)
        .json();
    assert_eq!(r["imported"], 60, "{r}");
    assert_eq!(client_refs(&app, &admin).await.len(), 60);
}

#[sqlx::test(migrations = "../warden-store/migrations")]
async fn a_csv_import_over_max_import_bytes_answers_the_json_error_shape(pool: PgPool) {
    let app = App::with_config(pool, import_config()).await;
    let admin = app.login_as("admin").await;
    app.post_csv(&admin, "/api/v1/import/clients.csv", &clients_csv(200))
        .await
        .expect_error(StatusCode::PAYLOAD_TOO_LARGE, "body_too_large");
    app.call(Method::POST, "/api/v1/import/clients.csv")
        .session(&admin)
        .raw(
            Some("text/csv"),
            b"external_ref,name\nC-1,\xff\xfe\n".to_vec(),
        )
        .send()
        .await
        .expect_error(StatusCode::BAD_REQUEST, "invalid_csv");
}

// ---- signing in and out ------------------------------------------------------------------

#[sqlx::test(migrations = "../warden-store/migrations")]
async fn signing_in_sets_an_http_only_same_site_strict_cookie_and_returns_the_csrf_token(
    pool: PgPool,
) {
    let app = App::start(pool).await;
    let reply = app
        .try_login("  Alice ", PASSWORD)
        .await
        .expect(StatusCode::OK);
    let s = common::session_of(&reply);
    let attrs: Vec<String> = s
        .set_cookie
        .split(';')
        .skip(1)
        .map(|a| a.trim().to_lowercase())
        .collect();
    for want in ["httponly", "samesite=strict", "secure", "path=/"] {
        assert!(
            attrs.iter().any(|a| a == want),
            "{want} in {}",
            s.set_cookie
        );
    }
    assert!(
        attrs.iter().any(|a| a == "max-age=43200"),
        "12 h: {}",
        s.set_cookie
    );
    let token = s.cookie.trim_start_matches("__Host-warden_session=");
    assert_eq!(token.len(), 64, "a 256-bit token");
    assert_eq!(s.csrf.len(), 64, "a 256-bit CSRF token");
    assert_ne!(token, s.csrf);
    assert_eq!(
        s.user,
        json!({ "id": app.users.operator.id, "username": "alice",
                "display_name": "Alice Operator", "role": "operator", "disabled": false,
                "second_factor": false })
    );
    let me = app
        .get(&s, "/api/v1/me")
        .await
        .expect(StatusCode::OK)
        .json();
    assert_eq!(me["csrf_token"], s.csrf.as_str());
    assert_eq!(me["user"], s.user);

    // A second sign-in is a different session with its own tokens.
    let again = app.login(&app.users.operator).await;
    assert_ne!(again.cookie, s.cookie);
    assert_ne!(again.csrf, s.csrf);

    let supervisor = app.login_as("supervisor").await;
    let audit = app
        .get(&supervisor, "/api/v1/audit?object_type=session")
        .await
        .expect(StatusCode::OK)
        .json();
    let logins = audit
        .as_array()
        .expect("audit")
        .iter()
        .filter(|a| a["action"] == "login" && a["user"]["id"] == app.users.operator.id)
        .count();
    assert_eq!(logins, 2, "{audit}");
}

#[sqlx::test(migrations = "../warden-store/migrations")]
async fn a_wrong_password_or_an_unknown_user_answers_401(pool: PgPool) {
    let app = App::start(pool).await;
    let wrong = app
        .try_login("alice", "not the password")
        .await
        .expect_error(StatusCode::UNAUTHORIZED, "bad_credentials");
    let unknown = app
        .try_login("nobody", PASSWORD)
        .await
        .expect_error(StatusCode::UNAUTHORIZED, "bad_credentials");
    // Alike but for their request ids.
    let without_id = |mut v: Value| {
        v.as_object_mut().expect("an object").remove("request_id");
        v
    };
    assert_eq!(
        without_id(wrong),
        without_id(unknown),
        "the answer does not tell which was wrong"
    );
    let r = app.try_login("alice", "not the password").await;
    assert!(
        r.headers.get(header::SET_COOKIE).is_none(),
        "no cookie on failure"
    );
    // The right password still works (two failures are under the limit).
    app.login(&app.users.operator).await;
}

/// Sign-in audit lines of `action`, newest first, as a supervisor reads them.
async fn session_audit(app: &App, action: &str) -> Vec<Value> {
    let supervisor = app.login_as("supervisor").await;
    let audit = app
        .get(&supervisor, "/api/v1/audit?object_type=session")
        .await
        .expect(StatusCode::OK)
        .json();
    audit
        .as_array()
        .expect("audit")
        .iter()
        .filter(|a| a["action"] == action)
        .cloned()
        .collect()
}

#[sqlx::test(migrations = "../warden-store/migrations")]
async fn failed_sign_ins_delay_the_next_attempt_but_the_right_password_is_never_locked_out(
    pool: PgPool,
) {
    let mut cfg = test_config();
    cfg.login_free_failures = 2;
    cfg.login_max_delay = Duration::from_secs(2);
    let app = App::with_config(pool, cfg).await;
    // Each from its own address, so only the account's delay is at work.
    let from = |n: u8| SocketAddr::from(([198, 51, 100, n], 40_000));
    let started = std::time::Instant::now();
    for n in 1..=3 {
        app.call(Method::POST, "/api/v1/login")
            .json(&json!({ "username": "alice", "password": "wrong password!" }))
            .from(from(n))
            .send()
            .await
            .expect_error(StatusCode::UNAUTHORIZED, "bad_credentials");
    }
    // Failures 1 and 2 are free; the 3rd waited 1 s; now the right password waits 2 s
    // (never 423: an outsider typing wrong passwords cannot keep the operator out).
    app.call(Method::POST, "/api/v1/login")
        .json(&json!({ "username": "alice", "password": PASSWORD }))
        .from(from(4))
        .send()
        .await
        .expect(StatusCode::OK);
    let took = started.elapsed();
    assert!(
        took >= Duration::from_millis(2900) && took < Duration::from_secs(30),
        "{took:?}"
    );
    // Only that account is held back; the good sign-in cleared its count, so one typo
    // after it sets no delay.
    app.login(&app.users.operator_b).await;
    app.try_login("alice", "wrong password!")
        .await
        .expect_error(StatusCode::UNAUTHORIZED, "bad_credentials");
    let (failed, held): (i32, bool) = sqlx::query_as(
        "SELECT failed_logins, locked_until > now() + interval '100 milliseconds' \
         FROM users WHERE username = 'alice'",
    )
    .fetch_one(&app.pool)
    .await
    .expect("count");
    assert_eq!((failed, held), (1, false));
    let refused = session_audit(&app, "login.refused").await;
    let alice: Vec<&Value> = refused
        .iter()
        .filter(|a| a["user"]["id"] == app.users.operator.id)
        .collect();
    assert_eq!(alice.len(), 4, "{refused:?}");
    assert!(
        alice
            .iter()
            .all(|a| a["after"]["reason"] == "bad_credentials")
    );
}

#[sqlx::test(migrations = "../warden-store/migrations")]
async fn sign_ins_tried_in_parallel_are_counted_before_their_passwords_are_checked(pool: PgPool) {
    let mut cfg = test_config();
    cfg.login_free_failures = 2;
    cfg.login_max_delay = Duration::from_secs(1);
    cfg.login_attempts_per_minute = 1000;
    let app = App::with_config(pool, cfg).await;
    let started = std::time::Instant::now();
    let tries = (1..=5u8).map(|n| {
        app.call(Method::POST, "/api/v1/login")
            .json(&json!({ "username": "alice", "password": "wrong password!" }))
            .from(SocketAddr::from(([198, 51, 100, n], 40_000)))
            .send()
    });
    for reply in futures::future::join_all(tries).await {
        reply.expect_error(StatusCode::UNAUTHORIZED, "bad_credentials");
    }
    // They could not all run at once: each was counted before its password was checked,
    // after the 2 free ones each waited out the delay the one before it set (1 s, the
    // ceiling), and the attempts whose wait could not end within twice the ceiling were
    // refused unchecked. Checked without the count first, all five would have been
    // checked at once.
    let failed: i32 =
        sqlx::query_scalar("SELECT failed_logins FROM users WHERE username = 'alice'")
            .fetch_one(&app.pool)
            .await
            .expect("count");
    assert!((3..=4).contains(&failed), "{failed} passwords checked");
    let delayed = session_audit(&app, "login.refused")
        .await
        .iter()
        .filter(|a| a["after"]["reason"] == "delayed")
        .count();
    assert_eq!(delayed, 5 - usize::try_from(failed).expect("count"));
    assert!(
        started.elapsed() >= Duration::from_secs(1),
        "{:?}",
        started.elapsed()
    );
}

#[sqlx::test(migrations = "../warden-store/migrations")]
async fn an_unknown_username_is_delayed_like_a_real_one_and_every_refusal_is_recorded_with_its_address(
    pool: PgPool,
) {
    let mut cfg = test_config();
    cfg.login_free_failures = 1;
    cfg.login_max_delay = Duration::from_secs(1);
    let app = App::with_config(pool, cfg).await;
    let times = async |username: &str| {
        let mut out = Vec::new();
        for n in 1..=2u8 {
            let t = std::time::Instant::now();
            app.call(Method::POST, "/api/v1/login")
                .json(&json!({ "username": username, "password": "wrong password!" }))
                .from(SocketAddr::from(([203, 0, 113, n], 40_000)))
                .send()
                .await
                .expect_error(StatusCode::UNAUTHORIZED, "bad_credentials");
            out.push(t.elapsed());
        }
        out
    };
    // The second attempt waits out the delay the first one set (1 s from its failure).
    let known = times("alice").await;
    let unknown = times("nobody-here").await;
    assert!(known[1] >= Duration::from_millis(950), "{known:?}");
    assert!(unknown[1] >= Duration::from_millis(950), "{unknown:?}");
    let refused = session_audit(&app, "login.refused").await;
    let unknown: Vec<&Value> = refused
        .iter()
        .filter(|a| a["after"]["username"] == "nobody-here")
        .collect();
    assert_eq!(unknown.len(), 2, "{refused:?}");
    assert!(
        unknown
            .iter()
            .all(|a| a["user"].is_null() && a["after"]["reason"] == "unknown_user")
    );
    let ips: BTreeSet<&str> = unknown.iter().filter_map(|a| a["ip"].as_str()).collect();
    assert_eq!(
        ips,
        BTreeSet::from(["203.0.113.1", "203.0.113.2"]),
        "{unknown:?}"
    );
}

#[sqlx::test(migrations = "../warden-store/migrations")]
async fn behind_a_trusted_proxy_the_forwarded_address_is_limited_and_recorded_and_nobody_else_can_forge_it(
    pool: PgPool,
) {
    let proxy = SocketAddr::from(([10, 0, 0, 5], 40_000));
    let mut cfg = test_config();
    cfg.login_attempts_per_minute = 2;
    cfg.trusted_proxies =
        warden_console::client_addr::TrustedProxies::parse(&["10.0.0.5"]).expect("proxies");
    let app = App::with_config(pool, cfg).await;
    let via = |client: &'static str| {
        app.call(Method::POST, "/api/v1/login")
            .json(&json!({ "username": "alice", "password": PASSWORD }))
            .from(proxy)
            .header("x-forwarded-for", client)
    };
    // Two clients behind the same proxy each have their own limit.
    for _ in 0..2 {
        via("203.0.113.7").send().await.expect(StatusCode::OK);
    }
    via("203.0.113.7")
        .send()
        .await
        .expect_error(StatusCode::TOO_MANY_REQUESTS, "rate_limited");
    via("203.0.113.8").send().await.expect(StatusCode::OK);
    // A client that is not a trusted proxy cannot claim another address.
    let direct = SocketAddr::from(([192, 0, 2, 99], 40_000));
    app.call(Method::POST, "/api/v1/login")
        .json(&json!({ "username": "bob", "password": PASSWORD }))
        .from(direct)
        .header("x-forwarded-for", "203.0.113.9")
        .send()
        .await
        .expect(StatusCode::OK);
    let logins = session_audit(&app, "login").await;
    let ips: BTreeSet<&str> = logins.iter().filter_map(|a| a["ip"].as_str()).collect();
    assert!(
        ips.contains("203.0.113.7") && ips.contains("203.0.113.8"),
        "{ips:?}"
    );
    assert!(
        ips.contains("192.0.2.99") && !ips.contains("203.0.113.9"),
        "{ips:?}"
    );
    assert!(!ips.contains("10.0.0.5"), "{ips:?}");
    let refused = session_audit(&app, "login.refused").await;
    assert!(
        refused
            .iter()
            .any(|a| a["after"]["reason"] == "rate_limited" && a["ip"] == "203.0.113.7"),
        "{refused:?}"
    );
}

#[sqlx::test(migrations = "../warden-store/migrations")]
async fn a_user_changes_their_own_password_under_the_policy_and_their_other_sessions_end(
    pool: PgPool,
) {
    let app = App::start(pool).await;
    let here = app.login(&app.users.operator).await;
    let elsewhere = app.login(&app.users.operator).await;
    let change = async |current: &str, new: &str| {
        app.call(Method::POST, "/api/v1/me/password")
            .session(&here)
            .json(&json!({ "current_password": current, "new_password": new }))
            .send()
            .await
    };
    change("not the password", "plum kettle orbit 77 tram")
        .await
        .expect_error(StatusCode::UNAUTHORIZED, "bad_credentials");
    // Long enough, but common, a keyboard walk, or the account's own names.
    for weak in [
        "password1234",
        "qwertyuiop123",
        "alicealice2026",
        "Alice Operator 1",
    ] {
        let v = change(PASSWORD, weak)
            .await
            .expect_error(StatusCode::BAD_REQUEST, "weak_password");
        assert!(
            v["message"]
                .as_str()
                .unwrap_or_default()
                .contains("easy to guess"),
            "{weak}: {v}"
        );
    }
    change(PASSWORD, "short")
        .await
        .expect_error(StatusCode::BAD_REQUEST, "weak_password");
    change(PASSWORD, "plum kettle orbit 77 tram")
        .await
        .expect(StatusCode::NO_CONTENT);
    // This session goes on; the other one ended; the new password signs in, the old not.
    app.get(&here, "/api/v1/me").await.expect(StatusCode::OK);
    app.get(&elsewhere, "/api/v1/me")
        .await
        .expect(StatusCode::UNAUTHORIZED);
    app.try_login("alice", PASSWORD)
        .await
        .expect_error(StatusCode::UNAUTHORIZED, "bad_credentials");
    app.try_login("alice", "plum kettle orbit 77 tram")
        .await
        .expect(StatusCode::OK);
    let supervisor = app.login_as("supervisor").await;
    let audit = app
        .get(&supervisor, "/api/v1/audit?object_type=user")
        .await
        .expect(StatusCode::OK)
        .json();
    let actions: Vec<&str> = audit
        .as_array()
        .expect("audit")
        .iter()
        .filter(|a| a["user"]["id"] == app.users.operator.id)
        .filter_map(|a| a["action"].as_str())
        .collect();
    assert_eq!(
        actions,
        ["user.password_change", "user.password_change.refused"],
        "{audit}"
    );
}

/// The code an authenticator app shows for `secret` (base32) at `unix` seconds.
fn totp_code(secret: &str, unix: i64) -> String {
    let bytes = totp_rs::Secret::Encoded(secret.to_owned())
        .to_bytes()
        .expect("base32 secret");
    totp_rs::TOTP::new(totp_rs::Algorithm::SHA1, 6, 1, 30, bytes)
        .expect("totp")
        .generate(u64::try_from(unix).expect("after 1970"))
}

/// The text of an enrolment's `qr` matrix, drawn as a picture (4 px per module, a quiet zone
/// of 4 modules) and read by `rqrr`.
fn read_qr(qr: &serde_json::Value) -> String {
    let size = usize::try_from(qr["size"].as_u64().expect("size")).expect("small");
    let modules = qr["modules"].as_str().expect("modules").as_bytes();
    assert_eq!(modules.len(), size * size);
    let (px, quiet) = (4, 4);
    let picture_side = (size + 2 * quiet) * px;
    let mut picture =
        rqrr::PreparedImage::prepare_from_greyscale(picture_side, picture_side, |x, y| {
            let (mx, my) = ((x / px).wrapping_sub(quiet), (y / px).wrapping_sub(quiet));
            if mx < size && my < size && modules[my * size + mx] == b'1' {
                0
            } else {
                255
            }
        });
    let grids = picture.detect_grids();
    assert_eq!(grids.len(), 1, "one QR code in the picture");
    grids[0].decode().expect("decodes").1
}

#[sqlx::test(migrations = "../warden-store/migrations")]
async fn a_supervisor_turns_on_a_second_factor_and_sign_in_then_needs_a_fresh_code(pool: PgPool) {
    let app = App::start(pool).await;
    let sue = app.login_as("supervisor").await;
    let operator = app.login_as("operator").await;
    app.post(
        &operator,
        "/api/v1/me/totp",
        &json!({ "password": PASSWORD }),
    )
    .await
    .expect_error(StatusCode::FORBIDDEN, "forbidden");
    app.post(&sue, "/api/v1/me/totp", &json!({ "password": "not it" }))
        .await
        .expect_error(StatusCode::UNAUTHORIZED, "bad_credentials");
    let enrolment = app
        .post(&sue, "/api/v1/me/totp", &json!({ "password": PASSWORD }))
        .await
        .expect(StatusCode::OK)
        .json();
    let secret = enrolment["secret"].as_str().expect("secret").to_owned();
    assert!(
        enrolment["otpauth_url"].as_str().is_some_and(|u| u
            .starts_with("otpauth://totp/Warden%3Asue?secret=")
            && u.contains(&secret)),
        "{enrolment}"
    );
    // The QR code reads back (with another implementation's decoder) as the link.
    assert_eq!(
        Some(read_qr(&enrolment["qr"])),
        enrolment["otpauth_url"].as_str().map(str::to_owned)
    );
    // Not asked for until confirmed.
    app.try_login("sue", PASSWORD).await.expect(StatusCode::OK);
    let second_factor = async || {
        app.get(&sue, "/api/v1/me")
            .await
            .expect(StatusCode::OK)
            .json()["user"]["second_factor"]
            .clone()
    };
    assert_eq!(second_factor().await, json!(false));
    let now = OffsetDateTime::now_utc().unix_timestamp();
    app.post(
        &sue,
        "/api/v1/me/totp/confirm",
        &json!({ "code": "123456" }),
    )
    .await
    .expect_error(StatusCode::BAD_REQUEST, "bad_code");
    app.post(
        &sue,
        "/api/v1/me/totp/confirm",
        &json!({ "code": totp_code(&secret, now) }),
    )
    .await
    .expect(StatusCode::NO_CONTENT);
    assert_eq!(second_factor().await, json!(true));

    let sign_in = async |otp: Option<String>| {
        app.call(Method::POST, "/api/v1/login")
            .json(&json!({ "username": "sue", "password": PASSWORD, "otp": otp }))
            .send()
            .await
    };
    sign_in(None)
        .await
        .expect_error(StatusCode::UNAUTHORIZED, "otp_required");
    // The code used to confirm is spent; a wrong one is a failure like a wrong password.
    sign_in(Some(totp_code(&secret, now)))
        .await
        .expect_error(StatusCode::UNAUTHORIZED, "bad_credentials");
    sign_in(Some("000000".into()))
        .await
        .expect_error(StatusCode::UNAUTHORIZED, "bad_credentials");
    // The next step's code (within the one step of skew) signs in, once.
    let next = totp_code(&secret, now + 30);
    sign_in(Some(next.clone())).await.expect(StatusCode::OK);
    sign_in(Some(next))
        .await
        .expect_error(StatusCode::UNAUTHORIZED, "bad_credentials");
    // A wrong password with a right code is still refused, alike.
    app.call(Method::POST, "/api/v1/login")
        .json(&json!({ "username": "sue", "password": "wrong one", "otp": totp_code(&secret, now + 60) }))
        .send()
        .await
        .expect_error(StatusCode::UNAUTHORIZED, "bad_credentials");

    // An administrator's reset (`wardend user add`) removes it: a lost phone.
    warden_console::add_or_reset_user(
        &app.store,
        "sue",
        "supervisor",
        Some("Sue Supervisor"),
        "plum kettle orbit 77 tram".into(),
    )
    .await
    .expect("reset");
    app.try_login("sue", "plum kettle orbit 77 tram")
        .await
        .expect(StatusCode::OK);
    let reasons: Vec<String> = sqlx::query_scalar(
        "SELECT DISTINCT after ->> 'reason' FROM audit \
         WHERE action = 'login.refused' AND user_id = $1 ORDER BY 1",
    )
    .bind(app.users.supervisor.id)
    .fetch_all(&app.pool)
    .await
    .expect("audit");
    assert_eq!(reasons, ["bad_credentials", "bad_otp", "otp_required"]);
}

#[sqlx::test(migrations = "../warden-store/migrations")]
async fn more_sign_ins_per_minute_from_one_address_than_allowed_answer_429(pool: PgPool) {
    let mut cfg = test_config();
    cfg.login_attempts_per_minute = 3;
    let app = App::with_config(pool, cfg).await;
    app.try_login("alice", "wrong password!")
        .await
        .expect(StatusCode::UNAUTHORIZED);
    app.try_login("nobody", PASSWORD)
        .await
        .expect(StatusCode::UNAUTHORIZED);
    app.try_login("alice", PASSWORD)
        .await
        .expect(StatusCode::OK);
    app.try_login("alice", PASSWORD)
        .await
        .expect_error(StatusCode::TOO_MANY_REQUESTS, "rate_limited");
    app.try_login("bob", PASSWORD)
        .await
        .expect_error(StatusCode::TOO_MANY_REQUESTS, "rate_limited");
    // Per address: another computer still signs in.
    let other = SocketAddr::from(([198, 51, 100, 7], 40_000));
    app.call(Method::POST, "/api/v1/login")
        .json(&json!({ "username": "bob", "password": PASSWORD }))
        .from(other)
        .send()
        .await
        .expect(StatusCode::OK);
}

#[sqlx::test(migrations = "../warden-store/migrations")]
async fn signing_out_ends_the_session(pool: PgPool) {
    let app = App::start(pool).await;
    let s = app.login_as("operator").await;
    let other = app.login_as("operator").await;
    let reply = app
        .command(&s, "/api/v1/logout")
        .await
        .expect(StatusCode::NO_CONTENT);
    let gone = reply
        .headers
        .get(header::SET_COOKIE)
        .expect("the cookie is cleared")
        .to_str()
        .expect("ascii")
        .to_lowercase();
    assert!(gone.starts_with("__host-warden_session=;"), "{gone}");
    assert!(gone.contains("max-age=0"), "{gone}");
    app.get(&s, "/api/v1/me")
        .await
        .expect_error(StatusCode::UNAUTHORIZED, "session_expired");
    app.get(&s, "/api/v1/queue")
        .await
        .expect_error(StatusCode::UNAUTHORIZED, "session_expired");
    app.command(&s, "/api/v1/logout")
        .await
        .expect_error(StatusCode::UNAUTHORIZED, "session_expired");
    // Only that session: the user's other one lives on.
    app.get(&other, "/api/v1/me").await.expect(StatusCode::OK);
}

#[sqlx::test(migrations = "../warden-store/migrations")]
async fn disabling_an_account_ends_its_sessions_and_refuses_its_sign_in(pool: PgPool) {
    let app = App::start(pool).await;
    let bob = app.login(&app.users.operator_b).await;
    let admin = app.login_as("admin").await;
    let u = app
        .put(
            &admin,
            &format!("/api/v1/users/{}", app.users.operator_b.id),
            &json!({ "username": "bob", "display_name": "Bob Operator", "role": "operator", "disabled": true }),
        )
        .await
        .expect(StatusCode::OK)
        .json();
    assert_eq!(u["disabled"], true);
    app.get(&bob, "/api/v1/queue")
        .await
        .expect_error(StatusCode::UNAUTHORIZED, "session_expired");
    app.try_login("bob", PASSWORD)
        .await
        .expect_error(StatusCode::FORBIDDEN, "forbidden");
    // An admin may not lock themself out.
    app.put(
        &admin,
        &format!("/api/v1/users/{}", app.users.admin.id),
        &json!({ "username": "adam", "display_name": "Adam Admin", "role": "admin", "disabled": true }),
    )
    .await
    .expect_error(StatusCode::BAD_REQUEST, "self_lockout");
}

/// `GET /api/v1/me` with the times it was sent and answered.
async fn timed_me(
    app: &App,
    s: &Session,
) -> (tokio::time::Instant, StatusCode, tokio::time::Instant) {
    let sent = tokio::time::Instant::now();
    let status = app.get(s, "/api/v1/me").await.status;
    (sent, status, tokio::time::Instant::now())
}

// The two session-expiry tests assert only what the measured send and answer times
// guarantee, so a slow machine cannot make them fail (only test less).

#[sqlx::test(migrations = "../warden-store/migrations")]
async fn a_session_ends_after_its_idle_timeout_while_use_keeps_it_alive(pool: PgPool) {
    let idle = Duration::from_secs(2);
    let cfg = ConsoleConfig {
        idle_timeout: idle,
        ..test_config()
    };
    let app = App::with_config(pool, cfg).await;
    let quiet = app.login_as("operator").await;
    let quiet_signed_in = tokio::time::Instant::now();
    let busy = app.login_as("supervisor").await;
    let signed_in = tokio::time::Instant::now();
    let mut last_answer = signed_in;
    let mut kept_alive_past_idle = false;
    while signed_in.elapsed() < Duration::from_secs(3) {
        tokio::time::sleep(Duration::from_millis(300)).await;
        let (sent, status, answered) = timed_me(&app, &busy).await;
        if answered.duration_since(last_answer) < Duration::from_millis(1800) {
            assert_eq!(status, StatusCode::OK, "used within the idle timeout");
            kept_alive_past_idle |= sent.duration_since(signed_in) > idle;
        }
        if status != StatusCode::OK {
            break; // the machine stalled longer than the idle timeout
        }
        last_answer = answered;
    }
    assert!(
        quiet_signed_in.elapsed() > idle + Duration::from_millis(200),
        "the quiet session has been idle long enough"
    );
    app.get(&quiet, "/api/v1/me")
        .await
        .expect_error(StatusCode::UNAUTHORIZED, "session_expired");
    // Now the busy one rests for longer than the timeout.
    tokio::time::sleep(idle + Duration::from_millis(500)).await;
    app.get(&busy, "/api/v1/me")
        .await
        .expect_error(StatusCode::UNAUTHORIZED, "session_expired");
    assert!(
        kept_alive_past_idle,
        "requests every 300 ms kept the session alive past 2 s"
    );
}

#[sqlx::test(migrations = "../warden-store/migrations")]
async fn a_session_ends_at_the_end_of_its_lifetime_however_busy(pool: PgPool) {
    let ttl = Duration::from_secs(3);
    let cfg = ConsoleConfig {
        session_ttl: ttl,
        ..test_config()
    };
    let app = App::with_config(pool, cfg).await;
    let before = tokio::time::Instant::now();
    let s = app.login_as("supervisor").await;
    let after = tokio::time::Instant::now();
    assert!(
        s.set_cookie.to_lowercase().contains("max-age=3"),
        "{}",
        s.set_cookie
    );
    let margin = Duration::from_millis(150);
    let (mut alive, mut ended) = (0, false);
    while after.elapsed() < ttl + Duration::from_secs(1) {
        let (sent, status, answered) = timed_me(&app, &s).await;
        if answered.duration_since(before) + margin < ttl {
            assert_eq!(status, StatusCode::OK, "before the end of its lifetime");
            alive += 1;
        } else if sent.duration_since(after) > ttl + margin {
            assert_eq!(
                status,
                StatusCode::UNAUTHORIZED,
                "after the end of its lifetime"
            );
            ended = true;
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    assert!(alive > 0 && ended, "alive {alive} times, ended {ended}");
}

#[sqlx::test(migrations = "../warden-store/migrations")]
async fn user_administration_refuses_weak_passwords_bad_values_and_duplicates(pool: PgPool) {
    let app = App::start(pool).await;
    let admin = app.login_as("admin").await;
    let user = |username: &str, role: &str, password: Option<&str>| {
        let mut v = json!({ "username": username, "display_name": "Carol Ng", "role": role });
        if let Some(p) = password {
            v["password"] = json!(p);
        }
        v
    };
    app.post(
        &admin,
        "/api/v1/users",
        &user("carol", "operator", Some("short")),
    )
    .await
    .expect_error(StatusCode::BAD_REQUEST, "weak_password");
    app.post(
        &admin,
        "/api/v1/users",
        &user("carol", "boss", Some("long enough password")),
    )
    .await
    .expect_error(StatusCode::BAD_REQUEST, "invalid_value");
    app.post(
        &admin,
        "/api/v1/users",
        &user("carol ng!", "operator", Some("long enough password")),
    )
    .await
    .expect_error(StatusCode::BAD_REQUEST, "invalid_value");
    app.post(&admin, "/api/v1/users", &user("carol", "operator", None))
        .await
        .expect_error(StatusCode::BAD_REQUEST, "invalid_value");
    app.post(
        &admin,
        "/api/v1/users",
        &user("Alice", "operator", Some("long enough password")),
    )
    .await
    .expect_error(StatusCode::CONFLICT, "already_exists");
    let carol = app
        .post(
            &admin,
            "/api/v1/users",
            &user(" Carol ", "operator", Some("long enough password")),
        )
        .await
        .expect(StatusCode::CREATED)
        .json();
    assert_eq!(carol["username"], "carol");
    assert_eq!(carol["role"], "operator");
    assert!(carol.get("password").is_none() && carol.get("password_hash").is_none());
    let id = carol["id"].as_i64().expect("id");
    let s = app
        .try_login("carol", "long enough password")
        .await
        .expect(StatusCode::OK);
    let s = common::session_of(&s);
    // A new password ends her sessions.
    app.put(
        &admin,
        &format!("/api/v1/users/{id}"),
        &user("carol", "operator", Some("another long password")),
    )
    .await
    .expect(StatusCode::OK);
    app.get(&s, "/api/v1/me")
        .await
        .expect_error(StatusCode::UNAUTHORIZED, "session_expired");
    app.try_login("carol", "long enough password")
        .await
        .expect(StatusCode::UNAUTHORIZED);
    app.try_login("carol", "another long password")
        .await
        .expect(StatusCode::OK);
    let listed = app
        .get(&admin, "/api/v1/users")
        .await
        .expect(StatusCode::OK);
    let audit = app
        .get(&admin, "/api/v1/audit?object_type=user")
        .await
        .expect(StatusCode::OK);
    for text in [listed.text(), audit.text()] {
        assert!(!text.contains("$argon2"), "no password hash leaves: {text}");
    }
    let audit = audit.json();
    let changed = audit_lines(&audit, "user.update", &id.to_string());
    assert_eq!(changed.len(), 1, "{audit}");
    assert_eq!(changed[0]["after"]["password_changed"], true);
    assert_eq!(changed[0]["user"]["id"], app.users.admin.id);
}

// ---- queue and incidents -----------------------------------------------------------------

fn audit_lines<'a>(audit: &'a Value, action: &str, object_id: &str) -> Vec<&'a Value> {
    audit
        .as_array()
        .expect("audit")
        .iter()
        .filter(|a| a["action"] == action && a["object_id"] == object_id)
        .collect()
}

#[sqlx::test(migrations = "../warden-store/migrations")]
async fn a_pendant_press_is_claimed_contested_taken_over_noted_resolved_and_audited(pool: PgPool) {
    let app = App::start(pool).await;
    let alice = app.login(&app.users.operator).await;
    let bob = app.login(&app.users.operator_b).await;
    let sue = app.login_as("supervisor").await;

    let device = app.device("5001", None).await;
    let signal = app.press(device, "5001").await;
    let queued = app.wait_in_queue(&alice, device).await;
    let id = queued["id"].as_i64().expect("id");
    assert_eq!(queued["priority"], "life_critical", "{queued}");
    assert_eq!(queued["kind"], "pendant");
    assert_eq!(queued["state"], "offered");
    assert_eq!(queued["holder"], Value::Null);
    assert_eq!(queued["device"]["account"], "5001");
    assert_eq!(queued["signal_count"], 1);
    assert!(queued["arrived_at_ms"].as_i64().expect("ms") > 0);
    let q = app
        .get(&alice, "/api/v1/queue")
        .await
        .expect(StatusCode::OK)
        .json();
    assert_eq!(
        q["counts"],
        json!({ "life_critical": 1, "urgent": 0, "technical": 0, "information": 0 })
    );
    assert!(q["thresholds"]["warn_s"].as_i64().is_some(), "{q}");
    assert_eq!(q["incidents"].as_array().expect("incidents").len(), 1);

    let claim = format!("/api/v1/incidents/{id}/claim");
    let claimed = app
        .command(&alice, &claim)
        .await
        .expect(StatusCode::OK)
        .json();
    assert_eq!(claimed["incident"]["state"], "claimed");
    assert_eq!(
        claimed["incident"]["holder"],
        json!({ "id": app.users.operator.id, "name": "Alice Operator" })
    );
    assert!(claimed["incident"]["claimed_at"].is_string());

    let v = app
        .command(&bob, &claim)
        .await
        .expect_error(StatusCode::CONFLICT, "claimed_by_other");
    assert!(
        v["message"]
            .as_str()
            .expect("message")
            .contains("Alice Operator"),
        "{v}"
    );
    app.command(&alice, &claim)
        .await
        .expect_error(StatusCode::CONFLICT, "already_holder");
    let v = app
        .post(
            &bob,
            &format!("/api/v1/incidents/{id}/resolve"),
            &json!({ "outcome": "false_alarm" }),
        )
        .await
        .expect_error(StatusCode::CONFLICT, "not_holder");
    assert!(
        v["message"]
            .as_str()
            .expect("message")
            .contains("Alice Operator"),
        "{v}"
    );
    app.command(&bob, &format!("/api/v1/incidents/{id}/release"))
        .await
        .expect_error(StatusCode::CONFLICT, "not_holder");

    let taken = app
        .command(&sue, &format!("/api/v1/incidents/{id}/takeover"))
        .await
        .expect(StatusCode::OK)
        .json();
    assert_eq!(
        taken["incident"]["holder"],
        json!({ "id": app.users.supervisor.id, "name": "Sue Supervisor" })
    );
    app.command(&alice, &format!("/api/v1/incidents/{id}/release"))
        .await
        .expect_error(StatusCode::CONFLICT, "not_holder");

    let note = format!("/api/v1/incidents/{id}/note");
    app.post(&sue, &note, &json!({ "text": "  " }))
        .await
        .expect_error(StatusCode::BAD_REQUEST, "empty_note");
    let noted = app
        .post(
            &sue,
            &note,
            &json!({ "text": "Spoke to the client: pressed by accident" }),
        )
        .await
        .expect(StatusCode::OK)
        .json();
    assert_eq!(noted["incident"]["state"], "claimed");

    let resolve = format!("/api/v1/incidents/{id}/resolve");
    app.post(&sue, &resolve, &json!({ "outcome": "went_fishing" }))
        .await
        .expect_error(StatusCode::BAD_REQUEST, "unknown_outcome");
    let resolved = app
        .post(&sue, &resolve, &json!({ "outcome": "false_alarm" }))
        .await
        .expect(StatusCode::OK)
        .json();
    assert_eq!(resolved["incident"]["state"], "resolved");
    assert_eq!(resolved["incident"]["outcome"], "false_alarm");
    assert!(resolved["incident"]["resolved_at"].is_string());
    app.post(&sue, &resolve, &json!({ "outcome": "false_alarm" }))
        .await
        .expect_error(StatusCode::CONFLICT, "already_resolved");

    let q = app
        .get(&alice, "/api/v1/queue")
        .await
        .expect(StatusCode::OK)
        .json();
    assert_eq!(
        q["incidents"],
        json!([]),
        "resolved incidents leave the queue"
    );
    assert_eq!(q["counts"]["life_critical"], 0);

    let detail = app
        .get(&alice, &format!("/api/v1/incidents/{id}"))
        .await
        .expect(StatusCode::OK)
        .json();
    assert_eq!(detail["incident"]["id"], id);
    let kinds: Vec<&str> = detail["events"]
        .as_array()
        .expect("events")
        .iter()
        .map(|e| e["kind"].as_str().expect("kind"))
        .collect();
    let pos = |k: &str| {
        kinds
            .iter()
            .position(|x| *x == k)
            .unwrap_or_else(|| panic!("{k} in {kinds:?}"))
    };
    assert!(pos("incident_opened") < pos("offer"), "{kinds:?}");
    assert!(pos("offer") < pos("claimed"), "{kinds:?}");
    assert!(pos("claimed") < pos("resolved"), "{kinds:?}");
    assert_eq!(
        kinds.iter().filter(|k| **k == "claimed").count(),
        2,
        "claim and takeover: {kinds:?}"
    );
    let seqs: Vec<i64> = detail["events"]
        .as_array()
        .expect("events")
        .iter()
        .map(|e| e["seq"].as_i64().expect("seq"))
        .collect();
    assert!(
        seqs.windows(2).all(|w| w[0] < w[1]),
        "events in order: {seqs:?}"
    );
    let signals = detail["signals"].as_array().expect("signals");
    assert_eq!(signals.len(), 1, "{detail}");
    assert_eq!(signals[0]["id"], signal.to_string());
    assert_eq!(signals[0]["kind"], "event");
    assert_eq!(signals[0]["source"], "serial");
    assert_eq!(signals[0]["decoded"]["v"], 2, "the versioned stored form");
    assert_eq!(signals[0]["decoded"]["events"][0]["type"], "contact_id");
    assert_eq!(signals[0]["decoded"]["events"][0]["code"], 101);
    assert_eq!(signals[0]["decoded"]["frame"]["event_code"], "101");

    let audit = app
        .get(&sue, "/api/v1/audit?object_type=incident")
        .await
        .expect(StatusCode::OK)
        .json();
    let oid = id.to_string();
    let claims = audit_lines(&audit, "incident.claim", &oid);
    assert_eq!(
        claims.len(),
        1,
        "refused claims are not audited as claims: {audit}"
    );
    assert_eq!(claims[0]["user"]["id"], app.users.operator.id);
    assert_eq!(claims[0]["user"]["name"], "Alice Operator");
    let takeovers = audit_lines(&audit, "incident.takeover", &oid);
    assert_eq!(takeovers.len(), 1);
    assert_eq!(takeovers[0]["user"]["id"], app.users.supervisor.id);
    assert_eq!(audit_lines(&audit, "incident.note", &oid).len(), 1);
    let resolves = audit_lines(&audit, "incident.resolve", &oid);
    assert_eq!(resolves.len(), 1, "{audit}");
    assert_eq!(resolves[0]["user"]["id"], app.users.supervisor.id);
    assert_eq!(resolves[0]["object_type"], "incident");
    assert!(resolves[0]["at"].is_string());
}

#[sqlx::test(migrations = "../warden-store/migrations")]
async fn a_supervisor_bulk_resolves_two_incidents_and_an_operator_may_not(pool: PgPool) {
    let app = App::start(pool).await;
    let operator = app.login_as("operator").await;
    let sue = app.login_as("supervisor").await;
    let a = app.incident(&operator, "5001", None).await["id"]
        .as_i64()
        .expect("id");
    let b = app.incident(&operator, "5002", None).await["id"]
        .as_i64()
        .expect("id");
    assert_ne!(a, b);
    // One of them held by an operator: a supervisor resolves it all the same.
    app.command(&operator, &format!("/api/v1/incidents/{a}/claim"))
        .await
        .expect(StatusCode::OK);
    let body = json!({ "incidents": [a, b], "outcome": "storm_cleared" });
    app.post(&operator, "/api/v1/incidents/bulk-resolve", &body)
        .await
        .expect_error(StatusCode::FORBIDDEN, "forbidden");
    let q = app
        .get(&operator, "/api/v1/queue")
        .await
        .expect(StatusCode::OK)
        .json();
    assert_eq!(q["incidents"].as_array().expect("incidents").len(), 2);

    let r = app
        .post(&sue, "/api/v1/incidents/bulk-resolve", &body)
        .await
        .expect(StatusCode::OK)
        .json();
    assert_eq!(r, json!({ "resolved": [a, b], "rejected": [] }));
    for id in [a, b] {
        let inc = incident_state(&app, &sue, id).await;
        assert_eq!(inc["state"], "resolved");
        assert_eq!(inc["outcome"], "storm_cleared");
    }
    let q = app
        .get(&operator, "/api/v1/queue")
        .await
        .expect(StatusCode::OK)
        .json();
    assert_eq!(q["incidents"], json!([]));

    // Again: both are rejected, one by one, as already resolved.
    let r = app
        .post(&sue, "/api/v1/incidents/bulk-resolve", &body)
        .await
        .expect(StatusCode::OK)
        .json();
    assert_eq!(r["resolved"], json!([]));
    let rejected = r["rejected"].as_array().expect("rejected");
    assert_eq!(rejected.len(), 2, "{r}");
    assert!(
        rejected.iter().all(|x| x["error"] == "already_resolved"),
        "{r}"
    );
    app.post(
        &sue,
        "/api/v1/incidents/bulk-resolve",
        &json!({ "incidents": [], "outcome": "false_alarm" }),
    )
    .await
    .expect_error(StatusCode::BAD_REQUEST, "bad_selection");
    app.post(
        &sue,
        "/api/v1/incidents/bulk-resolve",
        &json!({ "incidents": [a], "outcome": "nope" }),
    )
    .await
    .expect_error(StatusCode::BAD_REQUEST, "unknown_outcome");
    let audit = app
        .get(&sue, "/api/v1/audit?object_type=incident")
        .await
        .expect(StatusCode::OK)
        .json();
    for id in [a, b] {
        let lines = audit_lines(&audit, "incident.bulk_resolve", &id.to_string());
        assert_eq!(lines.len(), 1, "{audit}");
        assert_eq!(lines[0]["user"]["id"], app.users.supervisor.id);
    }
}

#[sqlx::test(migrations = "../warden-store/migrations")]
async fn a_bulk_resolve_with_an_invalid_id_is_refused_whole_and_resolves_nothing(pool: PgPool) {
    let app = App::start(pool).await;
    let operator = app.login_as("operator").await;
    let sue = app.login_as("supervisor").await;
    let a = app.incident(&operator, "5001", None).await["id"]
        .as_i64()
        .expect("id");
    let reply = app
        .post(
            &sue,
            "/api/v1/incidents/bulk-resolve",
            &json!({ "incidents": [a, -1], "outcome": "false_alarm" }),
        )
        .await;
    assert_eq!(reply.status, StatusCode::BAD_REQUEST, "{}", reply.text());
    assert_eq!(reply.json()["error"], "bad_selection");
    // Nothing was resolved behind the error.
    let a_state = incident_state(&app, &sue, a).await["state"].clone();
    assert_ne!(
        a_state,
        json!("resolved"),
        "incident {a} was resolved by a refused request"
    );
}

#[sqlx::test(migrations = "../warden-store/migrations")]
async fn the_queue_lists_life_critical_incidents_first_then_the_oldest_first(pool: PgPool) {
    let app = App::start(pool).await;
    let operator = app.login_as("operator").await;
    let battery = app.device("5003", None).await;
    app.contact_id(battery, "5003", "384").await;
    let low = app.wait_in_queue(&operator, battery).await;
    assert_eq!(low["priority"], "technical", "{low}");
    assert_eq!(low["kind"], "low_battery");
    let first = app.incident(&operator, "5001", None).await;
    let second = app.incident(&operator, "5002", None).await;
    let q = app
        .get(&operator, "/api/v1/queue")
        .await
        .expect(StatusCode::OK)
        .json();
    let order: Vec<&Value> = q["incidents"]
        .as_array()
        .expect("incidents")
        .iter()
        .map(|i| &i["id"])
        .collect();
    assert_eq!(order, [&first["id"], &second["id"], &low["id"]], "{q}");
    assert_eq!(
        q["counts"],
        json!({ "life_critical": 2, "urgent": 0, "technical": 1, "information": 0 })
    );
}

#[sqlx::test(migrations = "../warden-store/migrations")]
async fn the_incident_detail_gives_each_signal_a_readable_summary(pool: PgPool) {
    let app = App::start(pool).await;
    let operator = app.login_as("operator").await;
    let id = app.incident(&operator, "5001", None).await["id"]
        .as_i64()
        .expect("id");
    let detail = app
        .get(&operator, &format!("/api/v1/incidents/{id}"))
        .await
        .expect(StatusCode::OK)
        .json();
    let summary = detail["signals"][0]["summary"].as_str().unwrap_or_default();
    assert!(
        summary.starts_with("Contact ID 101") && summary.ends_with("(new)"),
        "{detail}"
    );
}

// ---- client records ----------------------------------------------------------------------

const KEY_SAFE: &str = "K7#4471";

#[sqlx::test(migrations = "../warden-store/migrations")]
async fn a_client_record_hides_its_key_safe_code_until_revealed_and_audits_each_view_and_reveal(
    pool: PgPool,
) {
    let app = App::start(pool).await;
    let operator = app.login_as("operator").await;
    let sue = app.login_as("supervisor").await;
    let admin = app.login_as("admin").await;

    let created = app
        .post(
            &sue,
            "/api/v1/clients",
            &json!({
                "external_ref": "C-100", "name": "Agnes Moorcroft", "date_of_birth": "1936-04-02",
                "address": "12 Larch Way, Leeds", "postcode": "LS6 2AB", "phone": "0113 496 0102",
                "area": "north", "preferred_contact": "phone", "access_notes": "Key safe by the back door",
                "medical_notes": "Type 2 diabetes", "key_safe": KEY_SAFE,
                "responders": [
                    { "name": "Dana Moorcroft", "relationship": "daughter", "phone": "07700 900001", "is_keyholder": true },
                    { "name": "Mr Patel", "relationship": "neighbour", "phone": "07700 900002" }
                ]
            }),
        )
        .await
        .expect(StatusCode::CREATED);
    assert!(!created.text().contains(KEY_SAFE), "{}", created.text());
    let created = created.json();
    let id = created["id"].as_i64().expect("id");
    assert_eq!(created["key_safe_set"], true);
    assert!(created.get("key_safe").is_none(), "{created}");
    assert_eq!(created["responders"][0]["position"], 1);
    assert_eq!(created["responders"][1]["position"], 2);
    assert_eq!(created["responders"][1]["name"], "Mr Patel");

    app.post(
        &admin,
        "/api/v1/devices",
        &json!({ "account": "5001", "protocol": "contact_id", "label": "Pendant",
                 "device_type": "pendant", "test_interval_seconds": 86400, "client_ref": "C-100" }),
    )
    .await
    .expect(StatusCode::CREATED);
    let device = app.device_record("5001").await.id;
    let signal = app.press(device, "5001").await;
    let incident = app.wait_in_queue(&operator, device).await;
    assert_eq!(
        incident["client"],
        json!({ "id": id, "name": "Agnes Moorcroft", "address": "12 Larch Way, Leeds, LS6 2AB" }),
        "the queue shows whose pendant it is"
    );

    let view = app
        .get(&operator, &format!("/api/v1/clients/{id}"))
        .await
        .expect(StatusCode::OK);
    assert!(!view.text().contains(KEY_SAFE), "{}", view.text());
    let view = view.json();
    assert!(view.get("key_safe").is_none(), "{view}");
    assert_eq!(view["key_safe_set"], true);
    assert_eq!(view["external_ref"], "C-100");
    assert_eq!(view["date_of_birth"], "1936-04-02");
    assert_eq!(view["medical_notes"], "Type 2 diabetes");
    assert_eq!(view["responders"].as_array().expect("responders").len(), 2);
    assert_eq!(view["responders"][0]["is_keyholder"], true);
    let devices = view["devices"].as_array().expect("devices");
    assert_eq!(devices.len(), 1, "{view}");
    assert_eq!(devices[0]["account"], "5001");
    let recent = view["recent_signals"].as_array().expect("recent signals");
    assert_eq!(recent.len(), 1, "{view}");
    assert_eq!(recent[0]["id"], signal.to_string());
    let summary = recent[0]["summary"].as_str().unwrap_or_default();
    assert!(
        summary.starts_with("Contact ID 101") && summary.ends_with("(new)"),
        "a readable summary: {view}"
    );
    let list = app
        .get(&operator, "/api/v1/clients?q=larch")
        .await
        .expect(StatusCode::OK);
    assert!(!list.text().contains(KEY_SAFE));
    assert_eq!(list.json()[0]["id"], id);

    // Only while holding an open incident for the client.
    app.command(&operator, &format!("/api/v1/clients/{id}/key-safe/reveal"))
        .await
        .expect_error(StatusCode::FORBIDDEN, "no_open_incident");
    app.command(
        &operator,
        &format!("/api/v1/incidents/{}/claim", incident["id"]),
    )
    .await
    .expect(StatusCode::OK);
    let revealed = app
        .command(&operator, &format!("/api/v1/clients/{id}/key-safe/reveal"))
        .await
        .expect(StatusCode::OK)
        .json();
    assert_eq!(revealed, json!({ "key_safe": KEY_SAFE }));

    // Editing without key_safe keeps the code.
    let updated = app
        .put(
            &sue,
            &format!("/api/v1/clients/{id}"),
            &json!({ "external_ref": "C-100", "name": "Agnes Moorcroft", "address": "12 Larch Way, Leeds",
                     "phone": "0113 496 0999", "preferred_contact": "visit" }),
        )
        .await
        .expect(StatusCode::OK)
        .json();
    assert_eq!(updated["key_safe_set"], true);
    assert_eq!(updated["phone"], "0113 496 0999");
    assert_eq!(
        updated["responders"].as_array().map(Vec::len),
        Some(2),
        "a body without `responders` keeps those on file: {updated}"
    );
    let again = app
        .command(&operator, &format!("/api/v1/clients/{id}/key-safe/reveal"))
        .await
        .expect(StatusCode::OK)
        .json();
    assert_eq!(again["key_safe"], KEY_SAFE);
    app.command(&operator, "/api/v1/clients/999999/key-safe/reveal")
        .await
        .expect_error(StatusCode::FORBIDDEN, "no_open_incident");

    let audit = app
        .get(
            &sue,
            &format!("/api/v1/audit?object_type=client&object_id={id}"),
        )
        .await
        .expect(StatusCode::OK);
    assert!(
        !audit.text().contains(KEY_SAFE),
        "the code never enters the audit trail"
    );
    let audit = audit.json();
    let oid = id.to_string();
    let views = audit_lines(&audit, "client.view", &oid);
    assert_eq!(views.len(), 1, "{audit}");
    assert_eq!(views[0]["user"]["id"], app.users.operator.id);
    let reveals = audit_lines(&audit, "client.key_safe.reveal", &oid);
    assert_eq!(reveals.len(), 2, "every reveal: {audit}");
    assert!(
        reveals
            .iter()
            .all(|a| a["user"]["id"] == app.users.operator.id)
    );
    let create = audit_lines(&audit, "client.create", &oid);
    assert_eq!(create.len(), 1);
    assert_eq!(create[0]["user"]["id"], app.users.supervisor.id);
    assert_eq!(create[0]["before"], Value::Null);
    assert_eq!(create[0]["after"]["key_safe_set"], true);
    assert_eq!(
        create[0]["after"]["responders"]
            .as_array()
            .expect("responders")
            .len(),
        2
    );
    let update = audit_lines(&audit, "client.update", &oid);
    assert_eq!(update.len(), 1);
    assert_eq!(update[0]["before"]["phone"], "0113 496 0102");
    assert_eq!(update[0]["after"]["phone"], "0113 496 0999");
}

#[sqlx::test(migrations = "../warden-store/migrations")]
async fn a_key_safe_code_is_shown_to_the_holder_of_an_open_incident_or_a_supervisor_with_a_reason_and_never_in_bulk(
    pool: PgPool,
) {
    let mut cfg = test_config();
    cfg.key_safe_reveals_per_hour = 2;
    let mut app = App::with_config(pool, cfg.clone()).await;
    let operator = app.login_as("operator").await;
    let other = app.login(&app.users.operator_b).await;
    let sue = app.login_as("supervisor").await;
    let f = fixture(&app, &operator).await;
    let reveal = format!("/api/v1/clients/{}/key-safe/reveal", f.client);
    // Nobody holds the incident yet (it is offered).
    for s in [&operator, &other] {
        app.command(s, &reveal)
            .await
            .expect_error(StatusCode::FORBIDDEN, "no_open_incident");
    }
    let v = app
        .command(&sue, &reveal)
        .await
        .expect_error(StatusCode::FORBIDDEN, "no_open_incident");
    assert!(
        v["message"].as_str().unwrap_or_default().contains("reason"),
        "{v}"
    );
    // An operator cannot override with a reason.
    app.post(&other, &reveal, &json!({ "reason": "just curious" }))
        .await
        .expect_error(StatusCode::FORBIDDEN, "no_open_incident");
    // The holder may; the other operator still may not.
    app.command(
        &operator,
        &format!("/api/v1/incidents/{}/claim", f.incident),
    )
    .await
    .expect(StatusCode::OK);
    app.command(&operator, &reveal).await.expect(StatusCode::OK);
    app.command(&other, &reveal)
        .await
        .expect_error(StatusCode::FORBIDDEN, "no_open_incident");
    // A supervisor overrides with a reason, recorded.
    app.post(
        &sue,
        &reveal,
        &json!({ "reason": "Ambulance crew at the door" }),
    )
    .await
    .expect(StatusCode::OK);
    // At most 2 an hour per user, counted from the audit trail: a restart does not reset
    // it, and parallel requests cannot all pass the same count.
    app.command(&operator, &reveal).await.expect(StatusCode::OK);
    app.command(&operator, &reveal)
        .await
        .expect_error(StatusCode::TOO_MANY_REQUESTS, "rate_limited");
    app.restart_console(cfg.clone());
    app.command(&operator, &reveal)
        .await
        .expect_error(StatusCode::TOO_MANY_REQUESTS, "rate_limited");
    let why = json!({ "reason": "Crew at the door" });
    let (first, second) =
        tokio::join!(app.post(&sue, &reveal, &why), app.post(&sue, &reveal, &why));
    let mut statuses = [first.status, second.status];
    statuses.sort();
    assert_eq!(
        statuses,
        [StatusCode::OK, StatusCode::TOO_MANY_REQUESTS],
        "sue's second override of the hour passes once"
    );
    // Once the incident is resolved, the holder no longer may.
    app.post(
        &operator,
        &format!("/api/v1/incidents/{}/resolve", f.incident),
        &json!({ "outcome": "false_alarm" }),
    )
    .await
    .expect(StatusCode::OK);
    app.command(&app.login(&app.users.operator).await, &reveal)
        .await
        .expect_error(StatusCode::FORBIDDEN, "no_open_incident");

    let audit = app
        .get(
            &sue,
            &format!("/api/v1/audit?object_type=client&object_id={}", f.client),
        )
        .await
        .expect(StatusCode::OK)
        .json();
    let oid = f.client.to_string();
    let shown = audit_lines(&audit, "client.key_safe.reveal", &oid);
    assert_eq!(shown.len(), 4, "{audit}");
    assert!(
        shown
            .iter()
            .any(|a| a["user"]["id"] == app.users.supervisor.id
                && a["after"]["override"] == true
                && a["after"]["reason"] == "Ambulance crew at the door")
    );
    assert!(
        shown
            .iter()
            .filter(|a| a["user"]["id"] == app.users.operator.id)
            .all(|a| a["after"]["incident"] == f.incident)
    );
    let refused = audit_lines(&audit, "client.key_safe.reveal.refused", &oid);
    let reasons: Vec<&str> = refused
        .iter()
        .filter_map(|a| a["after"]["reason"].as_str())
        .collect();
    assert_eq!(
        reasons.iter().filter(|r| **r == "refused").count(),
        6,
        "{audit}"
    );
    assert_eq!(
        reasons.iter().filter(|r| **r == "rate_limited").count(),
        3,
        "{audit}"
    );
}

#[sqlx::test(migrations = "../warden-store/migrations")]
async fn every_read_of_personal_data_is_recorded_and_supervisors_see_who_viewed_which_client(
    pool: PgPool,
) {
    let app = App::start(pool).await;
    let operator = app.login_as("operator").await;
    let f = fixture(&app, &operator).await;
    // A search (listing the client), the record, the key-safe code, the incident.
    let found = app
        .get(&operator, "/api/v1/clients?q=agnes")
        .await
        .expect(StatusCode::OK)
        .json();
    assert_eq!(found[0]["id"], f.client);
    app.get(&operator, "/api/v1/clients?q=nobody-matches")
        .await
        .expect(StatusCode::OK);
    app.get(&operator, &format!("/api/v1/clients/{}", f.client))
        .await
        .expect(StatusCode::OK);
    app.command(
        &operator,
        &format!("/api/v1/incidents/{}/claim", f.incident),
    )
    .await
    .expect(StatusCode::OK);
    app.post(
        &operator,
        &format!("/api/v1/clients/{}/key-safe/reveal", f.client),
        &json!({}),
    )
    .await
    .expect(StatusCode::OK);
    app.get(&operator, &format!("/api/v1/incidents/{}", f.incident))
        .await
        .expect(StatusCode::OK);

    let supervisor = app.login_as("supervisor").await;
    let report = app
        .get(
            &supervisor,
            &format!("/api/v1/reports/client-access?client_id={}", f.client),
        )
        .await
        .expect(StatusCode::OK)
        .json();
    let rows = report.as_array().expect("rows");
    let actions: Vec<&str> = rows.iter().filter_map(|r| r["action"].as_str()).collect();
    // Newest first; the search that did not list the client is not in it.
    assert_eq!(
        actions,
        ["client.key_safe.reveal", "client.view", "client.search"],
        "{report}"
    );
    for r in rows {
        assert_eq!(r["user_id"], app.users.operator.id, "{r}");
        assert_eq!(r["client_name"], "Agnes Fixture");
        assert_eq!(r["ip"], "192.0.2.10", "the client's address: {r}");
        assert!(
            r["request_id"].as_str().is_some_and(|id| !id.is_empty()),
            "{r}"
        );
    }
    let audit = app
        .get(&supervisor, "/api/v1/audit?object_type=incident")
        .await
        .expect(StatusCode::OK)
        .json();
    assert_eq!(
        audit_lines(&audit, "incident.view", &f.incident.to_string()).len(),
        1,
        "{audit}"
    );
    // Reading the trail and the report was recorded too.
    let reads = app
        .get(&supervisor, "/api/v1/audit?object_type=audit")
        .await
        .expect(StatusCode::OK)
        .json();
    let reads = reads.as_array().expect("audit");
    assert!(
        reads.iter().any(|a| a["action"] == "audit.read"
            && a["user"]["id"] == app.users.supervisor.id
            && a["after"]["object_type"] == "incident"),
        "{reads:?}"
    );
    let client_lines = app
        .get(&supervisor, "/api/v1/audit?object_type=client")
        .await
        .expect(StatusCode::OK)
        .json();
    assert!(
        client_lines
            .as_array()
            .expect("audit")
            .iter()
            .any(|a| a["action"] == "report.client_access"),
        "{client_lines}"
    );
}

#[sqlx::test(migrations = "../warden-store/migrations")]
async fn a_client_record_with_bad_values_is_refused_with_400(pool: PgPool) {
    let app = App::start(pool).await;
    let sue = app.login_as("supervisor").await;
    for body in [
        json!({ "external_ref": "C-1", "name": "A", "preferred_contact": "pigeon" }),
        json!({ "external_ref": "", "name": "A" }),
        json!({ "external_ref": "C-1", "name": "  " }),
        json!({ "external_ref": "C-1", "name": "A", "date_of_birth": "02/04/1936" }),
        json!({ "external_ref": "C-1", "name": "A", "responders": [{ "name": "" }] }),
    ] {
        app.post(&sue, "/api/v1/clients", &body)
            .await
            .expect_error(StatusCode::BAD_REQUEST, "invalid_value");
    }
    let ok = json!({ "external_ref": "C-1", "name": "A" });
    let created = app
        .post(&sue, "/api/v1/clients", &ok)
        .await
        .expect(StatusCode::CREATED)
        .json();
    assert_eq!(created["preferred_contact"], "phone");
    assert_eq!(created["language"], "English");
    assert_eq!(created["key_safe_set"], false);
    app.post(&sue, "/api/v1/clients", &ok)
        .await
        .expect_error(StatusCode::CONFLICT, "already_exists");
    app.get(&sue, "/api/v1/clients/424242")
        .await
        .expect_error(StatusCode::NOT_FOUND, "not_found");
}

// ---- out-of-hours desk -------------------------------------------------------------------

fn job(category: &str, caller: &str, address: &str) -> Value {
    json!({ "category": category, "caller_name": caller, "caller_phone": "07700 900123",
            "address": address, "description": "Water coming through the ceiling", "urgency": "emergency" })
}

fn reference_number(r: &Value) -> u32 {
    let s = r["reference"].as_str().expect("reference");
    assert!(is_ooh_reference(s), "{s} is OOH-YYYY-NNNNNN");
    assert!(
        s.starts_with(&format!("OOH-{}-", OffsetDateTime::now_utc().year())),
        "this year's: {s}"
    );
    s[9..].parse().expect("a number")
}

#[sqlx::test(migrations = "../warden-store/migrations")]
async fn an_ooh_job_is_unrouted_without_an_on_call_contact_and_routed_once_one_is_set(
    pool: PgPool,
) {
    let app = App::start(pool).await;
    let operator = app.login_as("operator").await;
    let admin = app.login_as("admin").await;

    let first = app
        .post(
            &operator,
            "/api/v1/ooh/jobs",
            &job("emergency_repair", "Priya Shah", "4 Willow Court, Leeds"),
        )
        .await
        .expect(StatusCode::CREATED)
        .json();
    assert_eq!(first["status"], "unrouted", "{first}");
    assert_eq!(first["routed_to"], Value::Null);
    assert_eq!(
        first["created_by"],
        json!({ "id": app.users.operator.id, "name": "Alice Operator" })
    );
    assert_eq!(first["category"], "emergency_repair");
    assert_eq!(first["urgency"], "emergency");
    assert_eq!(first["updates"].as_array().expect("updates").len(), 1);
    assert_eq!(first["updates"][0]["status"], "unrouted");
    let n1 = reference_number(&first);

    let cat = app
        .put(
            &admin,
            "/api/v1/ooh/categories/emergency_repair",
            &json!({ "name": "Emergency repair", "oncall_name": "Rota Repairs Ltd", "oncall_phone": "0113 496 0555" }),
        )
        .await
        .expect(StatusCode::OK)
        .json();
    assert_eq!(cat["code"], "emergency_repair");
    let cats = app
        .get(&operator, "/api/v1/ooh/categories")
        .await
        .expect(StatusCode::OK)
        .json();
    let listed = cats
        .as_array()
        .expect("categories")
        .iter()
        .find(|c| c["code"] == "emergency_repair")
        .expect("the category");
    assert_eq!(listed["oncall_name"], "Rota Repairs Ltd");
    assert_eq!(listed["oncall_phone"], "0113 496 0555");

    let second = app
        .post(
            &operator,
            "/api/v1/ooh/jobs",
            &job("emergency_repair", "Tom Hale", "9 Birch Row, Leeds"),
        )
        .await
        .expect(StatusCode::CREATED)
        .json();
    assert_eq!(second["status"], "routed", "{second}");
    assert_eq!(
        second["routed_to"],
        json!({ "name": "Rota Repairs Ltd", "phone": "0113 496 0555" })
    );
    assert_eq!(
        reference_number(&second),
        n1 + 1,
        "references count up by one"
    );
    // Another category still has nobody.
    let third = app
        .post(
            &operator,
            "/api/v1/ooh/jobs",
            &job("homelessness", "Ann Lee", ""),
        )
        .await
        .expect(StatusCode::CREATED)
        .json();
    assert_eq!(third["status"], "unrouted");
    assert_eq!(reference_number(&third), n1 + 2);

    app.post(&operator, "/api/v1/ooh/jobs", &job("plumbing", "X", ""))
        .await
        .expect_error(StatusCode::BAD_REQUEST, "unknown_category");
    let mut bad = job("other", "X", "");
    bad["urgency"] = json!("whenever");
    app.post(&operator, "/api/v1/ooh/jobs", &bad)
        .await
        .expect_error(StatusCode::BAD_REQUEST, "invalid_value");
    app.put(
        &admin,
        "/api/v1/ooh/categories/Bad-Code",
        &json!({ "name": "Bad" }),
    )
    .await
    .expect_error(StatusCode::BAD_REQUEST, "invalid_value");
    let audit = app
        .get(&admin, "/api/v1/audit?object_type=ooh_job")
        .await
        .expect(StatusCode::OK)
        .json();
    let first_ref = first["reference"].as_str().expect("reference");
    let created = audit_lines(&audit, "ooh.job.create", first_ref);
    assert_eq!(created.len(), 1, "{audit}");
    assert_eq!(created[0]["user"]["id"], app.users.operator.id);
}

#[sqlx::test(migrations = "../warden-store/migrations")]
async fn ooh_jobs_are_found_by_reference_address_and_caller_newest_first(pool: PgPool) {
    let app = App::start(pool).await;
    let operator = app.login_as("operator").await;
    let a = app
        .post(
            &operator,
            "/api/v1/ooh/jobs",
            &job("other", "Priya Shah", "4 Willow Court, Leeds"),
        )
        .await
        .expect(StatusCode::CREATED)
        .json();
    let b = app
        .post(
            &operator,
            "/api/v1/ooh/jobs",
            &job("other", "Tom Hale", "9 Birch Row, Leeds"),
        )
        .await
        .expect(StatusCode::CREATED)
        .json();
    let (ra, rb) = (
        a["reference"].as_str().expect("a").to_owned(),
        b["reference"].as_str().expect("b").to_owned(),
    );
    let refs = |v: &Value| -> Vec<String> {
        v.as_array()
            .expect("jobs")
            .iter()
            .map(|j| j["reference"].as_str().expect("reference").to_owned())
            .collect()
    };
    let search = |q: &str| {
        let path = format!("/api/v1/ooh/jobs?q={q}");
        let (app, operator) = (&app, &operator);
        async move { app.get(operator, &path).await }
    };
    assert_eq!(
        refs(&search("").await.expect(StatusCode::OK).json()),
        [rb.as_str(), ra.as_str()]
    );
    assert_eq!(
        refs(&search(&ra).await.expect(StatusCode::OK).json()),
        [ra.as_str()]
    );
    assert_eq!(
        refs(&search("willow").await.expect(StatusCode::OK).json()),
        [ra.as_str()]
    );
    assert_eq!(
        refs(&search("Birch%20Row").await.expect(StatusCode::OK).json()),
        [rb.as_str()]
    );
    assert_eq!(
        refs(&search("priya").await.expect(StatusCode::OK).json()),
        [ra.as_str()]
    );
    assert_eq!(
        refs(&search("Hale").await.expect(StatusCode::OK).json()),
        [rb.as_str()]
    );
    assert_eq!(
        refs(&search("Leeds").await.expect(StatusCode::OK).json()),
        [rb.as_str(), ra.as_str()]
    );
    assert_eq!(
        search("nowhere").await.expect(StatusCode::OK).json(),
        json!([])
    );
    // LIKE wildcards in the search text are literal.
    assert_eq!(search("%25").await.expect(StatusCode::OK).json(), json!([]));
    let one = app
        .get(&operator, &format!("/api/v1/ooh/jobs/{ra}"))
        .await
        .expect(StatusCode::OK)
        .json();
    assert_eq!(one["caller_name"], "Priya Shah");
    app.get(&operator, "/api/v1/ooh/jobs/OOH-1999-000001")
        .await
        .expect_error(StatusCode::NOT_FOUND, "not_found");
}

/// An on-call person linked to the on_call user, reached by phone, on the route of
/// `category` jobs.
async fn route_category_to_on_call_user(app: &App, category: &str) {
    let sup = app.login_as("supervisor").await;
    let person = app
        .post(
            &sup,
            "/api/v1/oncall/people",
            &json!({ "name": "Olly On-Call", "username": "olly",
                     "contacts": [{ "kind": "voice", "address": "+447700900333", "verified": true }] }),
        )
        .await
        .expect(StatusCode::CREATED)
        .json()["id"]
        .as_i64()
        .expect("person");
    let chain = app
        .put(
            &sup,
            "/api/v1/oncall/chains",
            &json!({ "name": "Lone workers", "doc": { "steps": [{ "targets": [{ "kind": "person", "id": person }], "wait": 600_000_000 }],
                                                        "fallback": [person], "ack_timeout": 1_800_000_000_i64 } }),
        )
        .await
        .expect(StatusCode::OK)
        .json()["id"]
        .as_i64()
        .expect("chain");
    app.put(
        &sup,
        "/api/v1/oncall/routes",
        &json!([{ "ooh_category": category, "chain_id": chain }]),
    )
    .await
    .expect(StatusCode::NO_CONTENT);
}

#[sqlx::test(migrations = "../warden-store/migrations")]
async fn on_call_staff_see_and_update_only_the_jobs_routed_to_them_and_never_reopen_one(
    pool: PgPool,
) {
    let app = App::start(pool).await;
    let operator = app.login_as("operator").await;
    let on_call = app.login_as("on_call").await;
    // Before any route: the job goes to nobody, and on call sees nothing.
    let other = app
        .post(
            &operator,
            "/api/v1/ooh/jobs",
            &job("other", "Una Other", "1 Far Lane"),
        )
        .await
        .expect(StatusCode::CREATED)
        .json();
    let other = other["reference"].as_str().expect("reference").to_owned();
    route_category_to_on_call_user(&app, "lone_worker").await;
    let j = app
        .post(
            &operator,
            "/api/v1/ooh/jobs",
            &job("lone_worker", "Sam Field", "Depot 3"),
        )
        .await
        .expect(StatusCode::CREATED)
        .json();
    let r = j["reference"].as_str().expect("reference");
    assert_eq!(j["routed_to"]["name"], "Olly On-Call", "{j}");

    app.post(
        &on_call,
        "/api/v1/ooh/jobs",
        &job("lone_worker", "Sam Field", "Depot 3"),
    )
    .await
    .expect_error(StatusCode::FORBIDDEN, "forbidden");
    let listed = app
        .get(&on_call, "/api/v1/ooh/jobs")
        .await
        .expect(StatusCode::OK)
        .json();
    let refs: Vec<&str> = listed
        .as_array()
        .expect("jobs")
        .iter()
        .filter_map(|j| j["reference"].as_str())
        .collect();
    assert_eq!(
        refs,
        [r],
        "only the job routed to them (the refused one was not logged)"
    );
    // Someone else's job: not found, to read or to change.
    app.get(&on_call, &format!("/api/v1/ooh/jobs/{other}"))
        .await
        .expect_error(StatusCode::NOT_FOUND, "not_found");
    app.post(
        &on_call,
        &format!("/api/v1/ooh/jobs/{other}/status"),
        &json!({ "status": "closed", "note": "not mine" }),
    )
    .await
    .expect_error(StatusCode::NOT_FOUND, "not_found");
    // The desk sees both.
    let all = app
        .get(&operator, "/api/v1/ooh/jobs")
        .await
        .expect(StatusCode::OK)
        .json();
    assert_eq!(all.as_array().expect("jobs").len(), 2, "{all}");

    let status = format!("/api/v1/ooh/jobs/{r}/status");
    let acked = app
        .post(
            &on_call,
            &status,
            &json!({ "status": "acknowledged", "note": "  Calling Sam now  " }),
        )
        .await
        .expect(StatusCode::OK)
        .json();
    assert_eq!(acked["status"], "acknowledged");
    let updates = acked["updates"].as_array().expect("updates");
    assert_eq!(updates.len(), 2, "{acked}");
    assert_eq!(updates[1]["note"], "Calling Sam now");
    assert_eq!(updates[1]["by"], "Olly On-Call");
    app.post(
        &on_call,
        &status,
        &json!({ "status": "closed", "note": "Sam safe" }),
    )
    .await
    .expect(StatusCode::OK);
    // Closed: on call may not reopen it; the desk may.
    let refused = app
        .post(
            &on_call,
            &status,
            &json!({ "status": "in_progress", "note": "" }),
        )
        .await
        .expect_error(StatusCode::FORBIDDEN, "forbidden");
    assert!(
        refused["message"]
            .as_str()
            .unwrap_or_default()
            .contains("closed"),
        "{refused}"
    );
    for bad in ["routed", "unrouted", "done"] {
        app.post(&on_call, &status, &json!({ "status": bad, "note": "" }))
            .await
            .expect_error(StatusCode::BAD_REQUEST, "invalid_value");
    }
    app.post(
        &operator,
        &status,
        &json!({ "status": "in_progress", "note": "Sam rang back" }),
    )
    .await
    .expect(StatusCode::OK);
    app.post(
        &on_call,
        "/api/v1/ooh/jobs/OOH-1999-000001/status",
        &json!({ "status": "closed" }),
    )
    .await
    .expect_error(StatusCode::NOT_FOUND, "not_found");

    let supervisor = app.login_as("supervisor").await;
    let audit = app
        .get(
            &supervisor,
            &format!("/api/v1/audit?object_type=ooh_job&object_id={r}"),
        )
        .await
        .expect(StatusCode::OK)
        .json();
    let changes = audit_lines(&audit, "ooh.job.status", r);
    assert_eq!(changes.len(), 3, "{audit}");
    // Reads are recorded too: searches with what they returned.
    let searches = app
        .get(&supervisor, "/api/v1/audit?object_type=ooh_job")
        .await
        .expect(StatusCode::OK)
        .json();
    let on_call_search = searches
        .as_array()
        .expect("audit")
        .iter()
        .find(|a| a["action"] == "ooh.job.search" && a["user"]["id"] == app.users.on_call.id)
        .expect("on call's search recorded");
    assert_eq!(on_call_search["after"]["references"], json!([r]));
}

// ---- CSV import and export ---------------------------------------------------------------

const CLIENTS_HEADER: &str =
    "external_ref,name,address,postcode,phone,area,preferred_contact,interpreter_needed,key_safe";

fn clients_file(rows: &[&str]) -> String {
    let mut s = format!("{CLIENTS_HEADER}\n");
    for r in rows {
        s.push_str(r);
        s.push('\n');
    }
    s
}

const ROW_A: &str = "C-001,Ada Moss,1 Larch Way,LS6 1AA,0113 000 0001,north,phone,no,K7#4471";
const ROW_B: &str = "C-002,Bert Lyle,2 Larch Way,LS6 1AB,0113 000 0002,north,sms,yes,";
const ROW_C: &str = "C-003,Cora Vance,3 Larch Way,LS6 1AC,0113 000 0003,south,letter,no,";
const ROW_BAD_CONTACT: &str = "C-004,Dora Pigeon,4 Larch Way,LS6 1AD,,south,pigeon,no,";
const ROW_DUPLICATE: &str = "C-001,Ada Again,5 Larch Way,LS6 1AE,,south,phone,no,";

fn errors_of(report: &Value) -> Vec<(u64, String)> {
    report["errors"]
        .as_array()
        .expect("errors")
        .iter()
        .map(|e| {
            assert!(!e["message"].as_str().unwrap_or_default().is_empty(), "{e}");
            (
                e["row"].as_u64().expect("row"),
                e["column"].as_str().unwrap_or("").to_owned(),
            )
        })
        .collect()
}

async fn client_refs(app: &App, s: &Session) -> Vec<String> {
    let list = app
        .get(s, "/api/v1/clients")
        .await
        .expect(StatusCode::OK)
        .json();
    let mut refs: Vec<String> = list
        .as_array()
        .expect("clients")
        .iter()
        .map(|c| c["external_ref"].as_str().expect("ref").to_owned())
        .collect();
    refs.sort();
    refs
}

#[sqlx::test(migrations = "../warden-store/migrations")]
async fn a_clients_import_with_bad_rows_imports_nothing_and_names_each_row_and_column(
    pool: PgPool,
) {
    let app = App::start(pool).await;
    let admin = app.login_as("admin").await;
    // Rows as a spreadsheet numbers them: header 1, then 2..=6.
    let file = clients_file(&[ROW_A, ROW_B, ROW_BAD_CONTACT, ROW_C, ROW_DUPLICATE]);
    let report = app
        .post_csv(&admin, "/api/v1/import/clients.csv", &file)
        .await
        .expect(StatusCode::OK)
        .json();
    assert_eq!(report["imported"], 0, "{report}");
    assert_eq!(report["updated"], 0);
    assert_eq!(
        errors_of(&report),
        [
            (4, "preferred_contact".to_owned()),
            (6, "external_ref".to_owned())
        ],
        "{report}"
    );
    assert!(
        client_refs(&app, &admin).await.is_empty(),
        "nothing imported"
    );

    // Header problems are row 1.
    let report = app
        .post_csv(
            &admin,
            "/api/v1/import/clients.csv",
            "external_ref,nickname\nC-9,Zed\n",
        )
        .await
        .expect(StatusCode::OK)
        .json();
    let errors = errors_of(&report);
    assert!(errors.contains(&(1, "nickname".to_owned())), "{report}");
    assert!(errors.contains(&(1, "name".to_owned())), "{report}");
    // A bad yes/no.
    let report = app
        .post_csv(
            &admin,
            "/api/v1/import/clients.csv",
            &clients_file(&["C-010,Ed,,,,,phone,perhaps,"]),
        )
        .await
        .expect(StatusCode::OK)
        .json();
    assert_eq!(errors_of(&report), [(2, "interpreter_needed".to_owned())]);
    assert!(client_refs(&app, &admin).await.is_empty());
}

#[sqlx::test(migrations = "../warden-store/migrations")]
async fn a_corrected_clients_import_inserts_then_updates_and_a_dry_run_changes_nothing(
    pool: PgPool,
) {
    let app = App::start(pool).await;
    let admin = app.login_as("admin").await;
    let operator = app.login_as("operator").await;
    let good = clients_file(&[ROW_A, ROW_B, ROW_C]);

    let dry = app
        .post_csv(&admin, "/api/v1/import/clients.csv?dry_run=true", &good)
        .await
        .expect(StatusCode::OK)
        .json();
    assert_eq!(
        dry["imported"], 3,
        "a dry run reports what it would do: {dry}"
    );
    assert_eq!(dry["dry_run"], true);
    assert!(
        client_refs(&app, &admin).await.is_empty(),
        "a dry run imports nothing"
    );

    let first = app
        .post_csv(&admin, "/api/v1/import/clients.csv", &good)
        .await
        .expect(StatusCode::OK)
        .json();
    assert_eq!(
        (first["imported"].as_u64(), first["updated"].as_u64()),
        (Some(3), Some(0)),
        "{first}"
    );
    assert_eq!(first["errors"], json!([]));
    assert_eq!(client_refs(&app, &admin).await, ["C-001", "C-002", "C-003"]);

    let second = app
        .post_csv(&admin, "/api/v1/import/clients.csv", &good)
        .await
        .expect(StatusCode::OK)
        .json();
    assert_eq!(
        (second["imported"].as_u64(), second["updated"].as_u64()),
        (Some(0), Some(3)),
        "{second}"
    );
    assert_eq!(client_refs(&app, &admin).await, ["C-001", "C-002", "C-003"]);

    let more = clients_file(&[
        ROW_A,
        ROW_B,
        ROW_C,
        "C-009,Nina New,9 Larch Way,LS6 1AF,,north,email,no,",
    ]);
    let dry = app
        .post_csv(&admin, "/api/v1/import/clients.csv?dry_run=true", &more)
        .await
        .expect(StatusCode::OK)
        .json();
    assert_eq!(
        (dry["imported"].as_u64(), dry["updated"].as_u64()),
        (Some(1), Some(3)),
        "{dry}"
    );
    assert_eq!(client_refs(&app, &admin).await, ["C-001", "C-002", "C-003"]);

    // The imported fields, and the key-safe code that came in with row A.
    let list = app
        .get(&admin, "/api/v1/clients?q=C-002")
        .await
        .expect(StatusCode::OK)
        .json();
    let b = app
        .get(&operator, &format!("/api/v1/clients/{}", list[0]["id"]))
        .await
        .expect(StatusCode::OK)
        .json();
    assert_eq!(b["name"], "Bert Lyle");
    assert_eq!(b["preferred_contact"], "sms");
    assert_eq!(b["interpreter_needed"], true);
    assert_eq!(b["language"], "English");
    assert_eq!(b["key_safe_set"], false);
    let list = app
        .get(&admin, "/api/v1/clients?q=C-001")
        .await
        .expect(StatusCode::OK)
        .json();
    let a_id = list[0]["id"].as_i64().expect("id");
    let supervisor = app.login_as("supervisor").await;
    let code = app
        .post(
            &supervisor,
            &format!("/api/v1/clients/{a_id}/key-safe/reveal"),
            &json!({ "reason": "checking the import" }),
        )
        .await
        .expect(StatusCode::OK)
        .json();
    assert_eq!(code["key_safe"], "K7#4471");

    let audit = app
        .get(&admin, "/api/v1/audit?object_type=client&limit=1000")
        .await
        .expect(StatusCode::OK);
    assert!(
        !audit.text().contains("K7#4471"),
        "the code never enters the audit trail"
    );
    let imports = audit
        .json()
        .as_array()
        .expect("audit")
        .iter()
        .filter(|a| a["action"] == "import.clients")
        .count();
    assert_eq!(
        imports, 6,
        "one line per row of the two real imports, none for dry runs"
    );
}

#[sqlx::test(migrations = "../warden-store/migrations")]
async fn the_clients_export_has_a_header_and_every_row_but_never_a_key_safe_code(pool: PgPool) {
    let app = App::start(pool).await;
    let admin = app.login_as("admin").await;
    app.post_csv(
        &admin,
        "/api/v1/import/clients.csv",
        &clients_file(&[ROW_C, ROW_A, ROW_B]),
    )
    .await
    .expect(StatusCode::OK);
    let reply = app
        .get(&admin, "/api/v1/export/clients.csv")
        .await
        .expect(StatusCode::OK);
    assert!(
        reply.headers[header::CONTENT_TYPE]
            .to_str()
            .expect("ascii")
            .starts_with("text/csv"),
        "{:?}",
        reply.headers
    );
    assert!(
        reply.headers[header::CONTENT_DISPOSITION]
            .to_str()
            .expect("ascii")
            .contains("clients.csv")
    );
    let text = reply.text();
    assert!(!text.contains("K7#4471"), "{text}");
    let mut rdr = csv::Reader::from_reader(text.as_bytes());
    let headers: Vec<String> = rdr
        .headers()
        .expect("header")
        .iter()
        .map(str::to_owned)
        .collect();
    assert_eq!(
        headers,
        [
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
            "key_safe"
        ]
    );
    let rows: Vec<csv::StringRecord> = rdr.records().map(|r| r.expect("a row")).collect();
    assert_eq!(rows.len(), 3);
    let refs: Vec<&str> = rows.iter().map(|r| &r[0]).collect();
    assert_eq!(refs, ["C-001", "C-002", "C-003"]);
    assert_eq!(&rows[0][1], "Ada Moss");
    assert_eq!(&rows[1][8], "yes");
    assert_eq!(&rows[2][10], "letter");
    assert!(
        rows.iter().all(|r| r[13].is_empty()),
        "no key-safe codes leave in bulk"
    );

    // The export round-trips: importing it again only updates.
    let again = app
        .post_csv(&admin, "/api/v1/import/clients.csv", &text)
        .await
        .expect(StatusCode::OK)
        .json();
    assert_eq!(
        (again["imported"].as_u64(), again["updated"].as_u64()),
        (Some(0), Some(3)),
        "{again}"
    );
    let list = app
        .get(&admin, "/api/v1/clients?q=C-001")
        .await
        .expect(StatusCode::OK)
        .json();
    let a = app
        .get(&admin, &format!("/api/v1/clients/{}", list[0]["id"]))
        .await
        .expect(StatusCode::OK)
        .json();
    assert_eq!(
        a["key_safe_set"], true,
        "an empty key_safe cell keeps the code"
    );
}

#[sqlx::test(migrations = "../warden-store/migrations")]
async fn a_devices_import_with_an_unknown_client_ref_imports_nothing(pool: PgPool) {
    let app = App::start(pool).await;
    let admin = app.login_as("admin").await;
    app.post_csv(
        &admin,
        "/api/v1/import/clients.csv",
        &clients_file(&[ROW_A]),
    )
    .await
    .expect(StatusCode::OK);
    let file = "account,protocol,label,device_type,test_interval_seconds,client_ref\n\
                7001,contact_id,Pendant,pendant,86400,C-001\n\
                7002,contact_id,Pull cord,pull_cord,,C-404\n\
                7003,carrier_pigeon,Odd,,,\n\
                7004,mqtt,Hub,,soon,\n";
    let report = app
        .post_csv(&admin, "/api/v1/import/devices.csv", file)
        .await
        .expect(StatusCode::OK)
        .json();
    assert_eq!(report["imported"], 0, "{report}");
    assert_eq!(
        errors_of(&report),
        [
            (3, "client_ref".to_owned()),
            (4, "protocol".to_owned()),
            (5, "test_interval_seconds".to_owned())
        ],
        "{report}"
    );
    let devices = app
        .get(&admin, "/api/v1/devices")
        .await
        .expect(StatusCode::OK)
        .json();
    assert_eq!(devices, json!([]));

    let fixed = "account,protocol,label,client_ref\n7001,contact_id,Pendant,C-001\n7002,contact_id,Pull cord,\n";
    let report = app
        .post_csv(&admin, "/api/v1/import/devices.csv", fixed)
        .await
        .expect(StatusCode::OK)
        .json();
    assert_eq!(
        (report["imported"].as_u64(), report["updated"].as_u64()),
        (Some(2), Some(0)),
        "{report}"
    );
    let export = app
        .get(&admin, "/api/v1/export/devices.csv")
        .await
        .expect(StatusCode::OK)
        .text();
    let lines: Vec<&str> = export.lines().collect();
    assert_eq!(
        lines[0],
        "account,protocol,label,device_type,test_interval_seconds,client_ref,area"
    );
    assert_eq!(
        lines[1..],
        [
            "7001,contact_id,Pendant,,,C-001,",
            "7002,contact_id,Pull cord,,,,"
        ]
    );
}

#[sqlx::test(migrations = "../warden-store/migrations")]
async fn csv_import_errors_count_rows_like_a_spreadsheet_when_a_cell_spans_lines(pool: PgPool) {
    let app = App::start(pool).await;
    let admin = app.login_as("admin").await;
    let file = clients_file(&[
        "C-001,Ada Moss,\"1 Larch Way\nHeadingley\nLeeds\",LS6 1AA,,north,phone,no,",
        ROW_BAD_CONTACT,
    ]);
    let report = app
        .post_csv(&admin, "/api/v1/import/clients.csv", &file)
        .await
        .expect(StatusCode::OK)
        .json();
    assert_eq!(
        errors_of(&report),
        [(3, "preferred_contact".to_owned())],
        "{report}"
    );
}

// ---- rejected signals --------------------------------------------------------------------

/// Quarantines `raw` as the writer does for input a link could not use; returns its id.
async fn quarantine(
    app: &App,
    source: Source,
    reason_code: &'static str,
    raw: &[u8],
    received_at: OffsetDateTime,
) -> Uuid {
    let id = Uuid::now_v7();
    app.writer
        .write(Record::Quarantine(NewQuarantine {
            id,
            source,
            link_id: format!("{source:?}:test").to_lowercase(),
            raw: raw.to_vec(),
            reason_code,
            reason: format!("refused for the test: {reason_code}"),
            received_at,
        }))
        .await
        .expect("commit the quarantined input");
    id
}

fn ago(minutes: i64) -> OffsetDateTime {
    let t = OffsetDateTime::now_utc() - time::Duration::minutes(minutes);
    t.replace_nanosecond(t.microsecond() * 1000)
        .expect("microseconds")
}

async fn count_rows(app: &App, sql: &str) -> i64 {
    sqlx::query_scalar::<_, i64>(sqlx::AssertSqlSafe(sql.to_owned()))
        .fetch_one(&app.pool)
        .await
        .expect("count rows")
}

#[sqlx::test(migrations = "../warden-store/migrations")]
async fn supervisors_see_rejected_signals_counted_by_reason_and_source_newest_first_with_raw_bytes(
    pool: PgPool,
) {
    let app = App::start(pool).await;
    let sue = app.login_as("supervisor").await;
    let adam = app.login_as("admin").await;
    let old = quarantine(&app, Source::Serial, "bad_frame", b"old", ago(48 * 60)).await;
    let a = quarantine(
        &app,
        Source::Serial,
        "bad_frame",
        b"5011 18\x00\x14\xff",
        ago(30),
    )
    .await;
    let b = quarantine(
        &app,
        Source::Mqtt,
        "bad_json",
        "{\"café\":".as_bytes(),
        ago(20),
    )
    .await;
    let c = quarantine(&app, Source::Serial, "bad_frame", b"\r\n", ago(10)).await;

    let page = app
        .get(&sue, "/api/v1/rejected")
        .await
        .expect(StatusCode::OK)
        .json();
    assert_eq!(page["window"]["hours"], 24, "{page}");
    assert_eq!(
        page["total"], 3,
        "the 48-hour-old row is outside the default window: {page}"
    );
    assert_eq!(
        page["counts"],
        json!([
            { "reason_code": "bad_frame", "source": "serial", "count": 2 },
            { "reason_code": "bad_json", "source": "mqtt", "count": 1 },
        ])
    );
    let ids: Vec<&Value> = page["rejected"]
        .as_array()
        .expect("rows")
        .iter()
        .map(|r| &r["id"])
        .collect();
    assert_eq!(
        ids,
        [&json!(c), &json!(b), &json!(a)],
        "newest first: {page}"
    );
    assert_eq!(page["next_before"], Value::Null);
    let row_a = &page["rejected"][2];
    assert_eq!(row_a["source"], "serial");
    assert_eq!(row_a["link_id"], "serial:test");
    assert_eq!(row_a["reason_code"], "bad_frame");
    assert_eq!(row_a["reason"], "refused for the test: bad_frame");
    assert_eq!(
        row_a["raw"],
        json!({ "hex": "353031312031380014ff", "printable": "5011 18\\x00\\x14\\xff", "len": 10, "truncated": false })
    );
    assert_eq!(page["rejected"][1]["raw"]["printable"], "{\"café\":");
    assert_eq!(page["rejected"][0]["raw"]["printable"], "\\r\\n");

    // A wider window reaches the old row; an admin may read it too.
    let wide = app
        .get(&adam, "/api/v1/rejected?hours=72")
        .await
        .expect(StatusCode::OK)
        .json();
    assert_eq!(wide["total"], 4, "{wide}");
    assert_eq!(wide["rejected"][3]["id"], json!(old));

    // Pages of two, then the rest; one reason only.
    let first = app
        .get(&sue, "/api/v1/rejected?limit=2")
        .await
        .expect(StatusCode::OK)
        .json();
    assert_eq!(
        first["rejected"].as_array().map(Vec::len),
        Some(2),
        "{first}"
    );
    assert_eq!(first["next_before"], json!(b), "{first}");
    let rest = app
        .get(&sue, &format!("/api/v1/rejected?limit=2&before={b}"))
        .await
        .expect(StatusCode::OK)
        .json();
    let rest_ids: Vec<&Value> = rest["rejected"]
        .as_array()
        .expect("rows")
        .iter()
        .map(|r| &r["id"])
        .collect();
    assert_eq!(rest_ids, [&json!(a)], "{rest}");
    assert_eq!(rest["next_before"], Value::Null);
    let json_only = app
        .get(&sue, "/api/v1/rejected?reason=bad_json")
        .await
        .expect(StatusCode::OK)
        .json();
    assert_eq!(
        json_only["rejected"].as_array().map(Vec::len),
        Some(1),
        "{json_only}"
    );
    assert_eq!(json_only["rejected"][0]["id"], json!(b));
    assert_eq!(json_only["total"], 3, "the counts are never filtered");

    // Each read is audited with who read and what they asked for.
    let audited = count_rows(
        &app,
        "SELECT count(*) FROM audit WHERE action = 'rejected.view'",
    )
    .await;
    assert_eq!(audited, 5);
    let by_sue: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM audit WHERE action = 'rejected.view' AND user_id = $1 \
         AND object_type = 'quarantine' AND after ->> 'reason' = 'bad_json'",
    )
    .bind(app.users.supervisor.id)
    .fetch_one(&app.pool)
    .await
    .expect("audit");
    assert_eq!(by_sue, 1);
}

#[sqlx::test(migrations = "../warden-store/migrations")]
async fn the_rejected_signals_query_refuses_out_of_range_or_malformed_values_with_400(
    pool: PgPool,
) {
    let app = App::start(pool).await;
    let sue = app.login_as("supervisor").await;
    quarantine(&app, Source::Serial, "bad_frame", b"x", ago(1)).await;
    for (query, names) in [
        ("hours=0", "hours"),
        ("hours=721", "hours"),
        ("hours=day", "hours"),
        ("limit=0", "limit"),
        ("limit=201", "limit"),
        ("before=not-a-uuid", "before"),
        ("before=0190b2d4-0000-7000-8000-000000000000", "before"),
        ("reason=Bad%20Frame", "reason"),
        ("reason=aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa", "reason"),
    ] {
        let v = app
            .get(&sue, &format!("/api/v1/rejected?{query}"))
            .await
            .expect_error(StatusCode::BAD_REQUEST, "invalid_query");
        assert!(
            v["message"].as_str().unwrap_or_default().contains(names),
            "{query}: {v}"
        );
    }
    // A refused read is not audited as a read.
    let audited = count_rows(
        &app,
        "SELECT count(*) FROM audit WHERE action = 'rejected.view'",
    )
    .await;
    assert_eq!(audited, 0);
    // The limits themselves are accepted.
    app.get(&sue, "/api/v1/rejected?hours=720&limit=200")
        .await
        .expect(StatusCode::OK);
}

#[sqlx::test(migrations = "../warden-store/migrations")]
async fn the_incident_detail_gives_each_signal_its_raw_bytes_as_hex_and_printable_text(
    pool: PgPool,
) {
    let app = App::start(pool).await;
    let operator = app.login_as("operator").await;
    let id = app.incident(&operator, "5001", None).await["id"]
        .as_i64()
        .expect("id");
    let detail = app
        .get(&operator, &format!("/api/v1/incidents/{id}"))
        .await
        .expect(StatusCode::OK)
        .json();
    // The harness's frame: "5011 18<account>E<code>01015" and DC4.
    let raw = &detail["signals"][0]["raw"];
    assert_eq!(raw["printable"], "5011 185001E10101015\\x14", "{detail}");
    assert_eq!(raw["hex"], "353031312031383530303145313031303130313514");
    assert_eq!(raw["len"], 21);
    assert_eq!(raw["truncated"], false);
}

// ---- bad input at the API ----------------------------------------------------------------

/// Rows of the tables a refused request must not touch.
async fn footprint(app: &App) -> Vec<i64> {
    let mut out = Vec::new();
    for table in [
        "incident_events",
        "incidents",
        "audit",
        "clients",
        "responders",
        "ooh_updates",
    ] {
        out.push(count_rows(app, &format!("SELECT count(*) FROM {table}")).await);
    }
    out
}

#[sqlx::test(migrations = "../warden-store/migrations")]
async fn a_note_with_a_control_character_or_over_4000_characters_is_refused_before_the_engine(
    pool: PgPool,
) {
    let app = App::start(pool).await;
    let operator = app.login_as("operator").await;
    let id = app.incident(&operator, "5001", None).await["id"]
        .as_i64()
        .expect("id");
    let note = format!("/api/v1/incidents/{id}/note");
    app.command(&operator, &format!("/api/v1/incidents/{id}/claim"))
        .await
        .expect(StatusCode::OK);
    let before = footprint(&app).await;
    for text in [
        "Rang\u{0}back",
        "\u{0}",
        "bell\u{7}",
        "esc \u{1b}[31mred",
        "form\u{c}feed",
    ] {
        let v = app
            .post(&operator, &note, &json!({ "text": text }))
            .await
            .expect_error(StatusCode::BAD_REQUEST, "control_character");
        assert!(
            v["message"]
                .as_str()
                .unwrap_or_default()
                .starts_with("note contains a control character"),
            "{text:?}: {v}"
        );
    }
    let v = app
        .post(&operator, &note, &json!({ "text": "a".repeat(4001) }))
        .await
        .expect_error(StatusCode::BAD_REQUEST, "note_too_long");
    assert!(
        v["message"].as_str().unwrap_or_default().contains("4000"),
        "{v}"
    );
    assert_eq!(
        footprint(&app).await,
        before,
        "a refused note changed the database"
    );

    // The engine is still well and tabs, line breaks and exactly 4000 characters are text.
    app.post(
        &operator,
        &note,
        &json!({ "text": "Rang twice.\r\n\tNo answer; warden sent." }),
    )
    .await
    .expect(StatusCode::OK);
    app.post(&operator, &note, &json!({ "text": "b".repeat(4000) }))
        .await
        .expect(StatusCode::OK);
    let kept = count_rows(
        &app,
        &format!(
            "SELECT count(*) FROM incident_events WHERE incident_id = {id} \
             AND (effect::text LIKE '%No answer; warden sent.%' OR effect::text LIKE '%bbbbbbbbbb%')"
        ),
    )
    .await;
    assert_eq!(kept, 2, "both good notes are in the incident's history");
}

#[sqlx::test(migrations = "../warden-store/migrations")]
async fn a_client_name_or_address_with_a_nul_is_refused_with_400_and_nothing_is_stored(
    pool: PgPool,
) {
    let app = App::start(pool).await;
    let sue = app.login_as("supervisor").await;
    let adam = app.login_as("admin").await;
    let before = footprint(&app).await;
    for (field, body) in [
        (
            "name",
            json!({ "external_ref": "C-1", "name": "Agnes\u{0}Moorcroft" }),
        ),
        (
            "address",
            json!({ "external_ref": "C-1", "name": "Agnes", "address": "12 Larch Way\u{0}" }),
        ),
        (
            "medical_notes",
            json!({ "external_ref": "C-1", "name": "Agnes", "medical_notes": "\u{1b}" }),
        ),
        (
            "responders.name",
            json!({ "external_ref": "C-1", "name": "Agnes", "responders": [{ "name": "Tom\u{0}" }] }),
        ),
    ] {
        let v = app
            .post(&sue, "/api/v1/clients", &body)
            .await
            .expect_error(StatusCode::BAD_REQUEST, "control_character");
        assert!(
            v["message"]
                .as_str()
                .unwrap_or_default()
                .starts_with(&format!("{field} contains a control character")),
            "{field}: {v}"
        );
    }
    // A NUL in an import names the row and the column; nothing is imported.
    let report = app
        .post_csv(
            &adam,
            "/api/v1/import/clients.csv?dry_run=false",
            "external_ref,name,address\nC-2,Bea,\"1 Elm\u{0}Row\"\n",
        )
        .await
        .expect(StatusCode::OK)
        .json();
    assert_eq!(report["imported"], 0, "{report}");
    assert_eq!(report["errors"][0]["row"], 2, "{report}");
    assert_eq!(report["errors"][0]["column"], "address", "{report}");
    assert!(
        report["errors"][0]["message"]
            .as_str()
            .unwrap_or_default()
            .starts_with("address contains a control character"),
        "{report}"
    );
    assert_eq!(
        footprint(&app).await,
        before,
        "a refused client changed the database"
    );

    // An existing record is not changed by a refused update either.
    let id = app
        .post(
            &sue,
            "/api/v1/clients",
            &json!({ "external_ref": "C-1", "name": "Agnes" }),
        )
        .await
        .expect(StatusCode::CREATED)
        .json()["id"]
        .as_i64()
        .expect("id");
    let after_create = footprint(&app).await;
    app.put(
        &sue,
        &format!("/api/v1/clients/{id}"),
        &json!({ "external_ref": "C-1", "name": "Agnes\u{0}" }),
    )
    .await
    .expect_error(StatusCode::BAD_REQUEST, "control_character");
    assert_eq!(footprint(&app).await, after_create);
    let name: String = sqlx::query_scalar("SELECT name FROM clients WHERE id = $1")
        .bind(id)
        .fetch_one(&app.pool)
        .await
        .expect("client");
    assert_eq!(name, "Agnes");
}

#[sqlx::test(migrations = "../warden-store/migrations")]
async fn an_out_of_hours_closing_note_with_a_nul_is_refused_with_400(pool: PgPool) {
    let app = App::start(pool).await;
    let operator = app.login_as("operator").await;
    let created = app
        .post(
            &operator,
            "/api/v1/ooh/jobs",
            &job("other", "Gina Caller", "3 Ash Row"),
        )
        .await
        .expect(StatusCode::CREATED)
        .json();
    let reference = created["reference"].as_str().expect("reference").to_owned();
    let before = footprint(&app).await;
    let v = app
        .post(
            &operator,
            &format!("/api/v1/ooh/jobs/{reference}/status"),
            &json!({ "status": "closed", "note": "Fixed\u{0}" }),
        )
        .await
        .expect_error(StatusCode::BAD_REQUEST, "control_character");
    assert!(
        v["message"]
            .as_str()
            .unwrap_or_default()
            .starts_with("note contains"),
        "{v}"
    );
    app.post(
        &operator,
        "/api/v1/ooh/jobs",
        &job("other", "Gina\u{0}", "3 Ash Row"),
    )
    .await
    .expect_error(StatusCode::BAD_REQUEST, "control_character");
    assert_eq!(footprint(&app).await, before);
    let status: String = sqlx::query_scalar("SELECT status FROM ooh_jobs WHERE reference = $1")
        .bind(&reference)
        .fetch_one(&app.pool)
        .await
        .expect("job");
    assert_ne!(status, "closed");
}

#[sqlx::test(migrations = "../warden-store/migrations")]
async fn a_bulk_resolve_with_no_ids_is_refused_with_400_and_resolves_nothing(pool: PgPool) {
    let app = App::start(pool).await;
    let operator = app.login_as("operator").await;
    let sue = app.login_as("supervisor").await;
    let id = app.incident(&operator, "5001", None).await["id"]
        .as_i64()
        .expect("id");
    let before = footprint(&app).await;
    let v = app
        .post(
            &sue,
            "/api/v1/incidents/bulk-resolve",
            &json!({ "incidents": [], "outcome": "false_alarm" }),
        )
        .await
        .expect_error(StatusCode::BAD_REQUEST, "bad_selection");
    assert!(
        v["message"]
            .as_str()
            .unwrap_or_default()
            .contains("between 1 and"),
        "{v}"
    );
    assert_eq!(footprint(&app).await, before);
    assert_eq!(incident_state(&app, &sue, id).await["state"], "offered");
}

#[sqlx::test(migrations = "../warden-store/migrations")]
async fn a_claim_on_an_incident_id_that_is_not_a_number_is_refused_with_400_in_the_json_shape(
    pool: PgPool,
) {
    let app = App::start(pool).await;
    let operator = app.login_as("operator").await;
    let id = app.incident(&operator, "5001", None).await["id"]
        .as_i64()
        .expect("id");
    let before = footprint(&app).await;
    for path in ["abc", "1.5", "99999999999999999999", "%00"] {
        let v = app
            .command(&operator, &format!("/api/v1/incidents/{path}/claim"))
            .await
            .expect_error(StatusCode::BAD_REQUEST, "invalid_path");
        assert!(
            v["message"]
                .as_str()
                .unwrap_or_default()
                .contains("not valid"),
            "{path}: {v}"
        );
    }
    // Other numeric ids and queries answer in the same shape.
    app.get(&operator, "/api/v1/clients/abc")
        .await
        .expect_error(StatusCode::BAD_REQUEST, "invalid_path");
    app.get(&operator, "/api/v1/clients?limit=ten")
        .await
        .expect_error(StatusCode::BAD_REQUEST, "invalid_query");
    assert_eq!(footprint(&app).await, before);
    let inc = incident_state(&app, &operator, id).await;
    assert_eq!(inc["state"], "offered");
    assert_eq!(inc["holder"], Value::Null);
}

/// The on-call inbox: an unanswered alarm escalated to the on-call person shows in their
/// pages; only they can acknowledge it; the acknowledgement is audited and written into the
/// incident's history.
#[sqlx::test(migrations = "../warden-store/migrations")]
async fn an_escalated_alarm_reaches_the_on_call_inbox_and_only_its_person_acknowledges(
    pool: PgPool,
) {
    let app = App::start(pool).await;
    let operator = app.login_as("operator").await;
    let olly = app.login_as("on_call").await;
    let incident = app.incident(&operator, "5001", None).await["id"]
        .as_i64()
        .expect("id");
    // Olly is on call all the time; life-critical alarms escalate to that rota.
    let person: i64 =
        sqlx::query_scalar("INSERT INTO people (name, user_id) VALUES ('Olly', $1) RETURNING id")
            .bind(olly.user_id())
            .fetch_one(&app.pool)
            .await
            .expect("person");
    sqlx::query("INSERT INTO contact_methods (person_id, position, kind, verified) VALUES ($1, 1, 'console', true)")
        .bind(person)
        .execute(&app.pool)
        .await
        .expect("contact");
    let layers = json!([{ "name": "all", "participants": [person], "start": "2026-01-05T09:00:00",
                          "shift": { "unit": "weeks", "count": 1 } }]);
    let rota: i64 = sqlx::query_scalar(
        "INSERT INTO rotas (name, zone, layers) VALUES ('On call', 'Europe/London', $1) RETURNING id",
    )
    .bind(layers)
    .fetch_one(&app.pool)
    .await
    .expect("rota");
    let chain = json!({ "steps": [{ "targets": [{ "kind": "rota", "id": rota }], "wait": 300_000_000 }],
                        "fallback": [person], "ack_timeout": 1_800_000_000_i64, "reminder_every": null });
    let chain: i64 =
        sqlx::query_scalar("INSERT INTO chains (name, doc) VALUES ('Alarms', $1) RETURNING id")
            .bind(chain)
            .fetch_one(&app.pool)
            .await
            .expect("chain");
    sqlx::query(
        "INSERT INTO routes (position, priority, chain_id) VALUES (1, 'life_critical', $1)",
    )
    .bind(chain)
    .execute(&app.pool)
    .await
    .expect("route");
    // The engine's answer-time threshold passed (what its outbox row says), and the
    // escalator ran.
    sqlx::query("INSERT INTO outbox (incident_id, kind, payload) VALUES ($1, 'overflow', '{}')")
        .bind(incident)
        .execute(&app.pool)
        .await
        .expect("outbox");
    let pass = warden_notify::pass(
        &app.store,
        time::OffsetDateTime::now_utc(),
        100,
        &["console"],
    )
    .await
    .expect("escalation pass");
    assert_eq!(pass.pages, 1);

    let pages = app
        .get(&olly, "/api/v1/pages")
        .await
        .expect(StatusCode::OK)
        .json();
    let page = &pages[0];
    assert_eq!(page["incident_id"], incident);
    assert_eq!(page["status"], "delivered");
    assert_eq!(page["channel"], "console");
    assert_eq!(page["priority"], "life_critical");
    let page_id = page["id"].as_i64().expect("page id");
    // Someone not on call has an empty inbox and cannot acknowledge it.
    let none = app
        .get(&operator, "/api/v1/pages")
        .await
        .expect(StatusCode::OK)
        .json();
    assert_eq!(none, json!([]));
    app.command(&operator, &format!("/api/v1/pages/{page_id}/ack"))
        .await
        .expect_error(StatusCode::FORBIDDEN, "forbidden");
    app.command(&olly, "/api/v1/pages/999999/ack")
        .await
        .expect_error(StatusCode::NOT_FOUND, "not_found");
    // Someone else on call cannot acknowledge a page that was not theirs.
    let sue = app.login_as("supervisor").await;
    sqlx::query("INSERT INTO people (name, user_id) VALUES ('Sue', $1)")
        .bind(sue.user_id())
        .execute(&app.pool)
        .await
        .expect("second person");
    let v = app
        .command(&sue, &format!("/api/v1/pages/{page_id}/ack"))
        .await
        .expect_error(StatusCode::FORBIDDEN, "forbidden");
    assert!(
        v["message"]
            .as_str()
            .unwrap_or_default()
            .contains("someone else"),
        "{v}"
    );

    app.command(&olly, &format!("/api/v1/pages/{page_id}/ack"))
        .await
        .expect(StatusCode::NO_CONTENT);
    let pages = app
        .get(&olly, "/api/v1/pages")
        .await
        .expect(StatusCode::OK)
        .json();
    assert_eq!(pages[0]["status"], "acknowledged");
    let audited: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM audit WHERE action = 'page.ack' AND object_id = $1 AND user_id = $2",
    )
    .bind(page_id.to_string())
    .bind(olly.user_id())
    .fetch_one(&app.pool)
    .await
    .expect("audit");
    assert_eq!(audited, 1);
    let history: Vec<String> = sqlx::query_scalar(
        "SELECT kind FROM incident_events WHERE incident_id = $1 AND kind LIKE 'escalation%' ORDER BY seq",
    )
    .bind(incident)
    .fetch_all(&app.pool)
    .await
    .expect("history");
    assert_eq!(
        history,
        [
            "escalation_started",
            "escalation_page",
            "escalation_acknowledged"
        ]
    );
}
