//! The harness of the console API tests: a migrated database per test (`#[sqlx::test]`),
//! the real group-commit writer and triage engine, and the console's router driven
//! in-process with `tower::ServiceExt::oneshot` (no sockets).
#![allow(dead_code)] // Not every test file uses every helper.

use std::net::SocketAddr;
use std::sync::OnceLock;
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::extract::ConnectInfo;
use axum::extract::connect_info::MockConnectInfo;
use axum::http::{HeaderMap, Method, Request, StatusCode, header};
use serde_json::{Value, json};
use sqlx::PgPool;
use time::OffsetDateTime;
use tokio_util::sync::CancellationToken;
use tower::ServiceExt as _;
use uuid::Uuid;
use warden_console::{Console, ConsoleConfig};
use warden_engine::{CommittedSignal, EngineConfig, EngineHandle};
use warden_store::{
    AuditWrite, Committed, Device, DeviceProtocol, NewDevice, NewSignal, Record, Source, Store,
    UserWrite, WriterConfig, WriterHandle,
};

/// Every test account's password.
pub const PASSWORD: &str = "correct horse battery staple";

/// The address requests come from unless a test says otherwise.
pub fn peer() -> SocketAddr {
    SocketAddr::from(([192, 0, 2, 10], 50_000))
}

/// Console settings for tests: defaults, with small body limits so they are cheap to hit.
pub fn test_config() -> ConsoleConfig {
    ConsoleConfig {
        max_body_bytes: 16 * 1024,
        max_import_bytes: 4096,
        ..ConsoleConfig::default()
    }
}

/// One argon2id hash of [`PASSWORD`] for every account (hashing is slow in debug builds).
fn password_hash() -> &'static str {
    static HASH: OnceLock<String> = OnceLock::new();
    HASH.get_or_init(|| warden_console::hash_password(PASSWORD).expect("hash the password"))
}

/// A test account.
#[derive(Debug, Clone)]
pub struct User {
    pub id: i64,
    pub username: String,
    pub display_name: String,
    pub role: &'static str,
}

/// One account per role (two operators).
#[derive(Debug, Clone)]
pub struct Users {
    pub operator: User,
    pub operator_b: User,
    pub supervisor: User,
    pub admin: User,
    pub on_call: User,
}

impl Users {
    /// The account of a role (the first operator for `operator`).
    pub fn of(&self, role: &str) -> &User {
        match role {
            "operator" => &self.operator,
            "supervisor" => &self.supervisor,
            "admin" => &self.admin,
            "on_call" => &self.on_call,
            other => panic!("no test account for role {other:?}"),
        }
    }
}

/// A signed-in user: the session cookie and the CSRF token from the login answer.
#[derive(Debug, Clone)]
pub struct Session {
    /// `__Host-warden_session=<token>`, as a browser sends it back.
    pub cookie: String,
    pub csrf: String,
    /// The whole `Set-Cookie` header of the login answer.
    pub set_cookie: String,
    /// `user` from the login answer.
    pub user: Value,
}

impl Session {
    pub fn user_id(&self) -> i64 {
        self.user["id"].as_i64().expect("user id")
    }
}

/// An answer of the router.
#[derive(Debug)]
pub struct Reply {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub bytes: Vec<u8>,
}

impl Reply {
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.bytes).into_owned()
    }

    /// The body as JSON (panics with the body when it is not JSON).
    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.bytes).unwrap_or_else(|e| {
            panic!(
                "{} answered a body that is not JSON ({e}): {:?}",
                self.status,
                self.text()
            )
        })
    }

    /// Asserts the status, showing the body when it differs.
    #[track_caller]
    pub fn expect(self, status: StatusCode) -> Reply {
        assert_eq!(self.status, status, "unexpected answer: {}", self.text());
        self
    }

    /// Asserts an API error: the status, `{"error": code, "message": non-empty,
    /// "request_id": the answer's X-Request-Id}`.
    #[track_caller]
    pub fn expect_error(self, status: StatusCode, code: &str) -> Value {
        assert_eq!(self.status, status, "unexpected answer: {}", self.text());
        let v = self.json();
        assert_eq!(v["error"], code, "error code of {v}");
        let message = v["message"].as_str().unwrap_or_default();
        assert!(!message.trim().is_empty(), "an error needs a message: {v}");
        let id = self
            .headers
            .get("x-request-id")
            .and_then(|h| h.to_str().ok())
            .unwrap_or_default();
        assert!(!id.is_empty(), "an answer without X-Request-Id: {v}");
        assert_eq!(v["request_id"], id, "the error's request id: {v}");
        v
    }
}

/// A request being built.
#[derive(Debug)]
pub struct Call<'a> {
    app: &'a App,
    method: Method,
    path: String,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
    from: Option<SocketAddr>,
}

impl Call<'_> {
    /// With a session's cookie and its CSRF token.
    pub fn session(self, s: &Session) -> Self {
        self.cookie(&s.cookie).csrf(&s.csrf)
    }

    /// With a cookie only (no CSRF header).
    pub fn cookie(self, cookie: &str) -> Self {
        self.header("cookie", cookie)
    }

    pub fn csrf(self, token: &str) -> Self {
        self.header("x-csrf-token", token)
    }

    pub fn header(mut self, name: &str, value: &str) -> Self {
        self.headers.push((name.to_owned(), value.to_owned()));
        self
    }

    /// A JSON body with `Content-Type: application/json`.
    pub fn json(self, v: &Value) -> Self {
        self.raw(Some("application/json"), v.to_string())
    }

    /// Any body, with the given content type (or none).
    pub fn raw(mut self, content_type: Option<&str>, body: impl Into<Vec<u8>>) -> Self {
        if let Some(ct) = content_type {
            self = self.header("content-type", ct);
        }
        self.body = body.into();
        self
    }

    /// As if from another client address.
    pub fn from(mut self, addr: SocketAddr) -> Self {
        self.from = Some(addr);
        self
    }

    pub async fn send(self) -> Reply {
        let mut b = Request::builder().method(self.method).uri(&self.path);
        for (k, v) in &self.headers {
            b = b.header(k, v);
        }
        let mut req = b.body(Body::from(self.body)).expect("a valid request");
        if let Some(addr) = self.from {
            // A real ConnectInfo wins over the router's MockConnectInfo.
            req.extensions_mut().insert(ConnectInfo(addr));
        }
        let resp = self
            .app
            .router
            .clone()
            .oneshot(req)
            .await
            .expect("the router is infallible");
        let status = resp.status();
        let headers = resp.headers().clone();
        let bytes = axum::body::to_bytes(resp.into_body(), usize::MAX)
            .await
            .expect("read the body")
            .to_vec();
        Reply {
            status,
            headers,
            bytes,
        }
    }
}

/// A console over a fresh database, with the real writer and engine behind it.
#[derive(Debug)]
pub struct App {
    pub store: Store,
    pub pool: PgPool,
    pub engine: EngineHandle,
    pub writer: WriterHandle,
    pub console: Console,
    pub users: Users,
    pub stop: CancellationToken,
    router: Router,
}

impl App {
    pub async fn start(pool: PgPool) -> App {
        App::with_config(pool, test_config()).await
    }

    pub async fn with_config(pool: PgPool, cfg: ConsoleConfig) -> App {
        let store = Store::from_pool(pool.clone());
        let users = Users {
            operator: add_user(&store, "alice", "Alice Operator", "operator").await,
            operator_b: add_user(&store, "bob", "Bob Operator", "operator").await,
            supervisor: add_user(&store, "sue", "Sue Supervisor", "supervisor").await,
            admin: add_user(&store, "adam", "Adam Admin", "admin").await,
            on_call: add_user(&store, "olly", "Olly On-Call", "on_call").await,
        };
        let stop = CancellationToken::new();
        let (writer, _writer_task) =
            warden_store::spawn_writer(store.clone(), WriterConfig::default(), stop.clone());
        let (engine, _engine_task) =
            warden_engine::spawn(store.clone(), EngineConfig::default(), stop.clone())
                .await
                .expect("start the triage engine");
        let console = Console::new(store.clone(), engine.clone(), cfg, stop.clone());
        let router = warden_console::router(console.clone()).layer(MockConnectInfo(peer()));
        App {
            store,
            pool,
            engine,
            writer,
            console,
            users,
            stop,
            router,
        }
    }

    /// A new console over the same database, engine and configuration, as after a restart
    /// of the process: whatever the old one kept in memory is gone; sessions stay (they are
    /// in the database).
    pub fn restart_console(&mut self, cfg: ConsoleConfig) {
        self.console = Console::new(
            self.store.clone(),
            self.engine.clone(),
            cfg,
            self.stop.clone(),
        );
        self.router = warden_console::router(self.console.clone()).layer(MockConnectInfo(peer()));
    }

    pub fn call(&self, method: Method, path: &str) -> Call<'_> {
        Call {
            app: self,
            method,
            path: path.to_owned(),
            headers: Vec::new(),
            body: Vec::new(),
            from: None,
        }
    }

    pub async fn get(&self, s: &Session, path: &str) -> Reply {
        self.call(Method::GET, path).session(s).send().await
    }

    pub async fn post(&self, s: &Session, path: &str, body: &Value) -> Reply {
        self.call(Method::POST, path)
            .session(s)
            .json(body)
            .send()
            .await
    }

    pub async fn put(&self, s: &Session, path: &str, body: &Value) -> Reply {
        self.call(Method::PUT, path)
            .session(s)
            .json(body)
            .send()
            .await
    }

    /// POST without a body (the incident commands).
    pub async fn command(&self, s: &Session, path: &str) -> Reply {
        self.call(Method::POST, path).session(s).send().await
    }

    /// POST a CSV body.
    pub async fn post_csv(&self, s: &Session, path: &str, csv: &str) -> Reply {
        self.call(Method::POST, path)
            .session(s)
            .raw(Some("text/csv"), csv)
            .send()
            .await
    }

    /// `POST /api/v1/login`, as it answers.
    pub async fn try_login(&self, username: &str, password: &str) -> Reply {
        self.call(Method::POST, "/api/v1/login")
            .json(&json!({ "username": username, "password": password }))
            .send()
            .await
    }

    /// Signs in a test account; panics unless it succeeds.
    pub async fn login(&self, user: &User) -> Session {
        let r = self
            .try_login(&user.username, PASSWORD)
            .await
            .expect(StatusCode::OK);
        session_of(&r)
    }

    /// Signs in the account of a role.
    pub async fn login_as(&self, role: &str) -> Session {
        let u = self.users.of(role).clone();
        self.login(&u).await
    }

    /// Registers a Contact ID device through the store and tells the engine about it, as
    /// the console does after a device changes. Returns its id.
    pub async fn device(&self, account: &str, client_ref: Option<&str>) -> i64 {
        let id = self
            .store
            .upsert_device(&NewDevice {
                client_ref: client_ref.map(str::to_owned),
                label: Some(format!("Pendant {account}")),
                ..NewDevice::new(account, DeviceProtocol::ContactId)
            })
            .await
            .expect("insert a device");
        let rec = self
            .store
            .device_records_for_triage()
            .await
            .expect("read devices")
            .into_iter()
            .find(|t| t.device.id == id)
            .expect("the new device");
        let effects = self
            .engine
            .command(warden_core::Input::RegisterDevice(
                warden_engine::device_info(&rec),
            ))
            .await
            .expect("the engine runs");
        assert!(
            !effects
                .iter()
                .any(|e| matches!(e, warden_core::Effect::Rejected { .. })),
            "device registration refused: {effects:?}"
        );
        id
    }

    /// A pendant press (Contact ID 101, new event) from a device.
    pub async fn press(&self, device_id: i64, account: &str) -> Uuid {
        self.contact_id(device_id, account, "101").await
    }

    /// A Contact ID new event from a device: the signal row is committed by the real
    /// writer first, then handed to the engine, as ingest does.
    pub async fn contact_id(&self, device_id: i64, account: &str, code: &str) -> Uuid {
        let raw = format!("5011 18{account}E{code}01015\x14").into_bytes();
        let decoded = match warden_protocol::surgard::SurGardDecoder::default().decode(&raw) {
            warden_protocol::Step::Frame { frame, .. } => {
                warden_core::Decoded::from_surgard(&frame)
            }
            other => panic!("not a Sur-Gard frame: {other:?}"),
        };
        let now = OffsetDateTime::now_utc();
        let received_at = now
            .replace_nanosecond(now.microsecond() * 1000)
            .expect("microseconds");
        let committed = self
            .writer
            .write(Record::Signal(NewSignal {
                id: Uuid::now_v7(),
                source: Source::Serial,
                link_id: "serial:test".to_owned(),
                account: Some(account.to_owned()),
                device_id: Some(device_id),
                kind: "event".to_owned(),
                raw,
                decoded: decoded.to_json(),
                received_at,
                dedupe_key: None,
            }))
            .await
            .expect("commit the signal");
        let Committed::Stored(id) = committed else {
            panic!("the signal was not stored: {committed:?}");
        };
        let handed = self
            .engine
            .submit(&CommittedSignal {
                id,
                source: Source::Serial,
                link: "serial:test",
                account: Some(account),
                device_id: Some(device_id),
                decoded: &decoded,
                received_at,
            })
            .await;
        assert!(handed, "the engine took the signal");
        id
    }

    /// Waits (at most 5 s) for an open incident of `device_id` in `GET /api/v1/queue`.
    pub async fn wait_in_queue(&self, s: &Session, device_id: i64) -> Value {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
        loop {
            let q = self
                .get(s, "/api/v1/queue")
                .await
                .expect(StatusCode::OK)
                .json();
            if let Some(i) = q["incidents"]
                .as_array()
                .expect("incidents")
                .iter()
                .find(|i| i["device"]["id"] == device_id)
            {
                return i.clone();
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "no incident of device {device_id} in the queue after 5 s: {q}"
            );
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
    }

    /// A device, a press from it, and the incident it raised, as the queue shows it.
    pub async fn incident(&self, s: &Session, account: &str, client_ref: Option<&str>) -> Value {
        let device = self.device(account, client_ref).await;
        self.press(device, account).await;
        self.wait_in_queue(s, device).await
    }

    /// The device record of an account.
    pub async fn device_record(&self, account: &str) -> Device {
        self.store
            .device_records(account, 10)
            .await
            .expect("read devices")
            .into_iter()
            .find(|d| d.account == account)
            .expect("the device")
    }

    /// Stops the engine, writer and push task.
    pub fn stop(&self) {
        self.stop.cancel();
    }
}

impl Drop for App {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

async fn add_user(store: &Store, username: &str, display_name: &str, role: &'static str) -> User {
    let u = store
        .insert_user(
            &UserWrite {
                username: username.to_owned(),
                display_name: display_name.to_owned(),
                role: role.parse().expect("a role name"),
                password_hash: Some(password_hash().to_owned()),
                disabled: false,
            },
            AuditWrite {
                action: "user.create".into(),
                object_type: "user".into(),
                ..AuditWrite::default()
            },
        )
        .await
        .expect("insert a user");
    User {
        id: u.id,
        username: u.username,
        display_name: u.display_name,
        role,
    }
}

/// The session of a successful login answer.
pub fn session_of(r: &Reply) -> Session {
    let set_cookie = r
        .headers
        .get(header::SET_COOKIE)
        .expect("a Set-Cookie header")
        .to_str()
        .expect("an ASCII cookie")
        .to_owned();
    let pair = set_cookie.split(';').next().expect("name=value").trim();
    assert!(
        pair.starts_with("__Host-warden_session="),
        "the session cookie is __Host-warden_session: {set_cookie}"
    );
    let body = r.json();
    Session {
        cookie: pair.to_owned(),
        csrf: body["csrf_token"].as_str().expect("csrf_token").to_owned(),
        set_cookie,
        user: body["user"].clone(),
    }
}

/// Whether `s` is `OOH-YYYY-NNNNNN` (`^OOH-\d{4}-\d{6}$`).
pub fn is_ooh_reference(s: &str) -> bool {
    let b = s.as_bytes();
    b.len() == 15
        && s.starts_with("OOH-")
        && b[8] == b'-'
        && b[4..8].iter().all(u8::is_ascii_digit)
        && b[9..].iter().all(u8::is_ascii_digit)
}
