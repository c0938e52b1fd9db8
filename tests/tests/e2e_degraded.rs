//! Issue 12, part 2, against the real daemon: with Postgres stopped, a pendant press still
//! reaches a connected console (its WebSocket) within the second, the console is told it is
//! in degraded mode, its queue answers from memory, an operator can claim the alarm, and
//! when Postgres returns the incident and the claim (with its actor) are in the database.

use std::io::{Read as _, Write as _};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use serde_json::Value;
use warden_tests::{Mosquitto, PrivatePg, Wardend, mosquitto_pub};

const PASSWORD: &str = "degraded mode drill 2026";

/// One HTTP/1.0 request; the status, the response's header block and body.
fn http(
    addr: SocketAddr,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &str,
) -> (u16, String, String) {
    let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(2)).expect("console");
    s.set_read_timeout(Some(Duration::from_secs(15)))
        .expect("timeout");
    let mut req = format!(
        "{method} {path} HTTP/1.0\r\nHost: {addr}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n",
        body.len()
    );
    for (k, v) in headers {
        req.push_str(k);
        req.push_str(": ");
        req.push_str(v);
        req.push_str("\r\n");
    }
    req.push_str("\r\n");
    req.push_str(body);
    s.write_all(req.as_bytes()).expect("send");
    let mut text = String::new();
    s.read_to_string(&mut text).expect("read");
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    (status, head.to_owned(), body.to_owned())
}

/// Signs in; the session cookie (`name=value`) and the CSRF token.
fn login(console: SocketAddr, username: &str) -> (String, String) {
    let body = serde_json::json!({ "username": username, "password": PASSWORD }).to_string();
    let (status, head, body) = http(console, "POST", "/api/v1/login", &[], &body);
    assert_eq!(status, 200, "login: {head}\n{body}");
    let cookie = head
        .lines()
        .find_map(|l| {
            let (name, value) = l.split_once(':')?;
            name.eq_ignore_ascii_case("set-cookie")
                .then(|| value.trim().split(';').next().unwrap_or("").to_owned())
        })
        .expect("a session cookie");
    let me: Value = serde_json::from_str(&body).expect("login json");
    let csrf = me["csrf_token"].as_str().expect("csrf token").to_owned();
    (cookie, csrf)
}

type Socket = tungstenite::WebSocket<tungstenite::stream::MaybeTlsStream<TcpStream>>;

fn connect(console: SocketAddr, cookie: &str) -> Socket {
    use tungstenite::client::IntoClientRequest as _;
    let mut req = format!("ws://{console}/api/v1/ws")
        .into_client_request()
        .expect("request");
    req.headers_mut()
        .insert("Cookie", cookie.parse().expect("cookie header"));
    let (socket, _) = tungstenite::connect(req).expect("websocket");
    if let tungstenite::stream::MaybeTlsStream::Plain(s) = socket.get_ref() {
        s.set_read_timeout(Some(Duration::from_millis(200)))
            .expect("timeout");
    }
    socket
}

/// Reads messages until `want` accepts one or `within` passes.
fn wait_for(socket: &mut Socket, within: Duration, want: impl Fn(&Value) -> bool) -> Option<Value> {
    let deadline = Instant::now() + within;
    while Instant::now() < deadline {
        match socket.read() {
            Ok(tungstenite::Message::Text(t)) => {
                let v: Value = serde_json::from_str(t.as_str()).unwrap_or(Value::Null);
                if want(&v) {
                    return Some(v);
                }
            }
            Ok(_) => {}
            Err(tungstenite::Error::Io(e))
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) => {}
            Err(e) => panic!("websocket: {e}"),
        }
    }
    None
}

/// The life-critical incident of `device` in an `incidents` push, if there is one.
fn pendant_of(v: &Value, account: &str) -> Option<Value> {
    (v["type"] == "incidents")
        .then(|| v["incidents"].as_array().cloned())
        .flatten()?
        .into_iter()
        .find(|i| i["priority"] == "life_critical" && i["device"]["account"] == account)
}

fn press(port: u16, account: &str, n: u32) {
    let payload = format!(r#"{{"v":1,"msg_id":"{account}-{n}","alarm":{{"kind":"pendant"}}}}"#);
    let report = mosquitto_pub(
        port,
        &format!("warden/v1/devices/{account}/up"),
        vec![payload],
        10.0,
        Instant::now() + Duration::from_secs(20),
    )
    .join()
    .expect("mosquitto_pub");
    assert!(report.acked.iter().all(|a| *a), "the broker took the press");
}

/// The last `n` lines of a log.
fn tail(log: &str, n: usize) -> String {
    let lines: Vec<&str> = log.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}

#[test]
fn a_pendant_reaches_a_connected_console_and_can_be_claimed_while_postgres_is_down() {
    let pg = PrivatePg::start();
    let broker = Mosquitto::start("");
    let mut warden = Wardend::start(&format!(
        "[database]\nurl = \"{}\"\n[mqtt]\nport = {}\nclient_id = \"warden-degraded\"\n",
        pg.url, broker.port
    ));
    for a in ["deg-1", "deg-2", "deg-3"] {
        warden.add_device(a, "mqtt", &["--label", "pendant"]);
    }
    let out = warden.cli_with_stdin(
        &[
            "user",
            "add",
            "--username",
            "op1",
            "--role",
            "operator",
            "--display-name",
            "Op One",
        ],
        &format!("{PASSWORD}\n"),
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    warden.wait_mqtt_up(broker.port);
    // deg-1 belongs to a client with a key-safe code and a keyholder.
    let client_id: i64 = pg
        .query(
            "INSERT INTO clients (external_ref, name, address, postcode, key_safe) \
             VALUES ('C-DEG', 'Ada Example', '3 Mill Lane', 'AB1 2CD', '4321') RETURNING id",
        )
        .parse()
        .expect("client id");
    pg.query(&format!(
        "INSERT INTO responders (client_id, position, name, phone, is_keyholder) \
         VALUES ({client_id}, 1, 'Ben Neighbour', '07700 900123', true)"
    ));
    pg.query("UPDATE devices SET client_ref = 'C-DEG' WHERE account = 'deg-1'");
    let (cookie, csrf) = login(warden.console, "op1");
    let mut ws = connect(warden.console, &cookie);
    assert!(wait_for(&mut ws, Duration::from_secs(5), |v| v["type"] == "hello").is_some());

    // Up: the first press reaches the console as always.
    press(broker.port, "deg-1", 1);
    assert!(
        wait_for(&mut ws, Duration::from_secs(10), |v| pendant_of(v, "deg-1")
            .is_some())
        .is_some(),
        "a press reaches the console while the database is up"
    );

    // The console caches the record of deg-1's client now that its alarm is open.
    std::thread::sleep(Duration::from_secs(2));
    pg.stop_server();
    // The first press after the stop finds the database gone (the writer notices on that
    // commit, within `spool.after`), the console is told, and the alarm is shown.
    let t = Instant::now();
    press(broker.port, "deg-2", 1);
    let first = wait_for(&mut ws, Duration::from_secs(10), |v| {
        pendant_of(v, "deg-2").is_some()
    });
    let first_ms = t.elapsed().as_millis();
    assert!(
        first.is_some(),
        "a press reaches the console while the database is down; log:\n{}",
        tail(&warden.log_text(), 60)
    );
    // A press while already degraded: within the second (the issue's figure).
    let t = Instant::now();
    press(broker.port, "deg-3", 1);
    let second = wait_for(&mut ws, Duration::from_secs(5), |v| {
        pendant_of(v, "deg-3").is_some()
    })
    .expect("the second press reaches the console");
    let second_ms = t.elapsed().as_millis();
    eprintln!("press → console while degraded: first {first_ms} ms, then {second_ms} ms");
    assert!(
        second_ms < 1000,
        "life-critical to console while degraded: {second_ms} ms"
    );
    let incident = pendant_of(&second, "deg-3").expect("the incident");
    let id = incident["id"].as_i64().expect("incident id");

    // The console knows it is degraded: the queue (from memory) says since when.
    let auth = [("Cookie", cookie.as_str()), ("X-CSRF-Token", csrf.as_str())];
    let (status, _, body) = http(warden.console, "GET", "/api/v1/queue", &auth, "");
    assert_eq!(status, 200, "{body}");
    let queue: Value = serde_json::from_str(&body).expect("queue json");
    assert!(queue["degraded_since"].is_string(), "{queue}");
    let accounts: Vec<&str> = queue["incidents"]
        .as_array()
        .expect("incidents")
        .iter()
        .filter_map(|i| i["device"]["account"].as_str())
        .collect();
    for a in ["deg-1", "deg-2", "deg-3"] {
        assert!(
            accounts.contains(&a),
            "{a} in the mirrored queue: {accounts:?}"
        );
    }
    // The outage is itself an incident on every console.
    let outage = queue["incidents"]
        .as_array()
        .expect("incidents")
        .iter()
        .find(|i| i["kind"] == "self_check")
        .cloned();
    assert!(
        outage.as_ref().is_some_and(|i| i["summary"]
            .as_str()
            .is_some_and(|s| s.contains("database unavailable"))),
        "a database self-check incident in the queue: {queue}"
    );

    // The open alarm's client record and keyholder, from the console's cache.
    let (status, _, body) = http(
        warden.console,
        "GET",
        &format!("/api/v1/clients/{client_id}"),
        &auth,
        "",
    );
    assert_eq!(status, 200, "client record while degraded: {body}");
    let record: Value = serde_json::from_str(&body).expect("client json");
    assert_eq!(record["address"], "3 Mill Lane", "{record}");
    assert_eq!(record["responders"][0]["name"], "Ben Neighbour", "{record}");
    // A record not cached says so plainly.
    let (status, _, body) = http(warden.console, "GET", "/api/v1/clients/999999", &auth, "");
    assert_eq!(status, 503, "{body}");
    assert!(body.contains("database_unavailable"), "{body}");

    // An operator claims the alarm while the database is down.
    let t = Instant::now();
    let (status, _, body) = http(
        warden.console,
        "POST",
        &format!("/api/v1/incidents/{id}/claim"),
        &auth,
        "{}",
    );
    assert_eq!(status, 200, "claim while degraded: {body}");
    assert!(
        t.elapsed() < Duration::from_secs(3),
        "claim answered in {:?}",
        t.elapsed()
    );
    assert!(
        wait_for(&mut ws, Duration::from_secs(5), |v| pendant_of(v, "deg-3")
            .is_some_and(|i| i["state"] == "claimed"))
        .is_some(),
        "the claim is pushed"
    );
    // The key-safe code, from the cache, only to the operator holding the client's alarm:
    // refused while the operator holds deg-3's (no client), shown once they hold deg-1's.
    let reveal = format!("/api/v1/clients/{client_id}/key-safe/reveal");
    let (status, _, body) = http(warden.console, "POST", &reveal, &auth, "");
    assert_eq!(status, 403, "no incident of this client held: {body}");
    assert!(body.contains("no_open_incident"), "{body}");
    let ada = queue["incidents"]
        .as_array()
        .expect("incidents")
        .iter()
        .find(|i| i["device"]["account"] == "deg-1")
        .and_then(|i| i["id"].as_i64())
        .expect("deg-1's incident");
    let (status, _, body) = http(
        warden.console,
        "POST",
        &format!("/api/v1/incidents/{ada}/claim"),
        &auth,
        "{}",
    );
    assert_eq!(status, 200, "claim of deg-1's alarm while degraded: {body}");
    let held = wait_for(&mut ws, Duration::from_secs(5), |v| {
        pendant_of(v, "deg-1").is_some_and(|i| i["state"] == "claimed")
    });
    assert!(held.is_some(), "the claim of deg-1's alarm is pushed");
    let (status, _, body) = http(warden.console, "POST", &reveal, &auth, "");
    assert_eq!(status, 200, "key-safe while degraded: {body}");
    assert!(body.contains("4321"), "{body}");

    pg.start_server();
    assert!(
        wait_for(&mut ws, Duration::from_secs(30), |v| v["type"]
            == "degraded"
            && v["since"].is_null())
        .is_some(),
        "the console is told the database is back"
    );
    // Everything done meanwhile is now in the database, once.
    let deadline = Instant::now() + Duration::from_secs(30);
    let count = |sql: &str| pg.query(sql).parse::<i64>().unwrap_or(-1);
    let ok = warden_tests::wait_until(Duration::from_secs(30), || {
        count(&format!(
            "SELECT count(*) FROM incidents WHERE id = {id} AND state = 'claimed' \
             AND holder_id = (SELECT id FROM users WHERE username = 'op1')"
        )) == 1
    });
    assert!(
        ok,
        "the claim made while degraded is committed: {}",
        pg.query(&format!(
            "SELECT state, holder_id FROM incidents WHERE id = {id}"
        ))
    );
    assert!(Instant::now() < deadline);
    assert_eq!(
        count(
            "SELECT count(*) FROM incidents i JOIN devices d ON d.id = i.device_id \
             WHERE d.account IN ('deg-1', 'deg-2', 'deg-3') AND i.priority = 'life_critical'"
        ),
        3,
        "one incident per press"
    );
    assert_eq!(
        count(&format!(
            "SELECT count(*) FROM incident_events WHERE incident_id = {id} AND kind = 'claimed'"
        )),
        1,
        "the claim is in the history once: {}",
        pg.query(&format!(
            "SELECT string_agg(kind, ',') FROM incident_events WHERE incident_id = {id}"
        ))
    );
    assert_eq!(
        count("SELECT count(*) FROM (SELECT id FROM signals GROUP BY id HAVING count(*) > 1) d"),
        0
    );
    // The reads made during the outage are in the audit trail, with their own times.
    let audited = warden_tests::wait_until(Duration::from_secs(30), || {
        count(&format!(
            "SELECT count(*) FROM audit WHERE object_id = '{client_id}' \
             AND action IN ('client.view', 'client.key_safe.reveal') \
             AND at < pg_postmaster_start_time() \
             AND user_id = (SELECT id FROM users WHERE username = 'op1')"
        )) == 2
    });
    assert!(
        audited,
        "reads during the outage audited with their times: {}",
        pg.query("SELECT string_agg(action || ' ' || at::text, '; ') FROM audit WHERE object_type = 'client'")
    );
    // The outage's incident is in the database, closed by the database's return.
    let closed = warden_tests::wait_until(Duration::from_secs(30), || {
        count(
            "SELECT count(*) FROM incidents WHERE kind = 'self_check' AND resolved_at IS NOT NULL \
             AND summary LIKE '%database unavailable%'",
        ) == 1
    });
    assert!(
        closed,
        "the database outage is recorded as an incident and closed: {}",
        pg.query(
            "SELECT string_agg(kind || ' ' || state || ' ' || coalesce(summary, ''), '; ') \
             FROM incidents WHERE kind = 'self_check'"
        )
    );
    assert_eq!(warden.terminate(), Some(0), "{}", warden.log_text());
}

/// The count `sql` returns, or -1.
fn count(pg: &PrivatePg, sql: &str) -> i64 {
    pg.query(sql).parse::<i64>().unwrap_or(-1)
}

/// The bytes of a file, empty when it is missing.
fn bytes_of(path: &std::path::Path) -> Vec<u8> {
    std::fs::read(path).unwrap_or_default()
}

/// Issue 12, parts 2 and 3: operators' commands during an outage are spooled too. Claims, a
/// note and a resolution made while Postgres is down, and the reads of a client record, are
/// in journals on disk before they are answered; wardend is killed (SIGKILL) in the outage,
/// restarts on its spool, and once Postgres is back every one of them is in the database
/// once, with its actor and its original time, on the incidents the restart rebuilt (whose
/// ids may differ). Putting the journals back and restarting again applies nothing twice.
#[test]
fn operators_commands_made_during_an_outage_survive_a_kill_and_are_written_once() {
    let pg = PrivatePg::start();
    let broker = Mosquitto::start("");
    let mut warden = Wardend::start(&format!(
        "[database]\nurl = \"{}\"\n[mqtt]\nport = {}\nclient_id = \"warden-journal\"\n",
        pg.url, broker.port
    ));
    for a in ["jr-1", "jr-2"] {
        warden.add_device(a, "mqtt", &["--label", "pendant"]);
    }
    let out = warden.cli_with_stdin(
        &[
            "user",
            "add",
            "--username",
            "op1",
            "--role",
            "operator",
            "--display-name",
            "Op One",
        ],
        &format!("{PASSWORD}\n"),
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    warden.wait_mqtt_up(broker.port);
    let client_id: i64 = pg
        .query(
            "INSERT INTO clients (external_ref, name, address, postcode, key_safe) \
             VALUES ('C-JR', 'Ada Example', '3 Mill Lane', 'AB1 2CD', '4321') RETURNING id",
        )
        .parse()
        .expect("client id");
    pg.query("UPDATE devices SET client_ref = 'C-JR' WHERE account = 'jr-1'");
    let (cookie, csrf) = login(warden.console, "op1");
    let auth = [("Cookie", cookie.as_str()), ("X-CSRF-Token", csrf.as_str())];
    let mut ws = connect(warden.console, &cookie);
    assert!(wait_for(&mut ws, Duration::from_secs(5), |v| v["type"] == "hello").is_some());

    // jr-1's alarm opens while the database is up (its id is committed).
    press(broker.port, "jr-1", 1);
    let first = wait_for(&mut ws, Duration::from_secs(10), |v| {
        pendant_of(v, "jr-1").is_some()
    })
    .expect("jr-1 reaches the console");
    let before_id = pendant_of(&first, "jr-1").expect("incident")["id"]
        .as_i64()
        .expect("id");
    std::thread::sleep(Duration::from_secs(2)); // the console caches jr-1's client record

    pg.stop_server();
    // jr-2's alarm opens during the outage: its incident exists only in memory.
    press(broker.port, "jr-2", 1);
    let second = wait_for(&mut ws, Duration::from_secs(10), |v| {
        pendant_of(v, "jr-2").is_some()
    })
    .unwrap_or_else(|| {
        panic!(
            "jr-2 reaches the console; log:\n{}",
            tail(&warden.log_text(), 40)
        )
    });
    let outage_id = pendant_of(&second, "jr-2").expect("incident")["id"]
        .as_i64()
        .expect("id");
    let post = |path: String, body: &str| {
        let (status, _, text) = http(warden.console, "POST", &path, &auth, body);
        assert_eq!(status, 200, "{path} while degraded: {text}");
    };
    post(format!("/api/v1/incidents/{outage_id}/claim"), "{}");
    post(
        format!("/api/v1/incidents/{outage_id}/note"),
        r#"{"text":"Rang Ada: she is on the floor, ambulance on its way"}"#,
    );
    post(format!("/api/v1/incidents/{before_id}/claim"), "{}");
    post(
        format!("/api/v1/incidents/{before_id}/resolve"),
        r#"{"outcome":"assistance_given"}"#,
    );
    let (status, _, body) = http(
        warden.console,
        "GET",
        &format!("/api/v1/clients/{client_id}"),
        &auth,
        "",
    );
    assert_eq!(status, 200, "the cached client record: {body}");

    // Every answered command and read is on disk before the crash.
    let spool = warden.data_dir().join("spool");
    let commands = spool.join("commands.journal");
    let audits = spool.join("audit.journal");
    assert!(
        !bytes_of(&commands).is_empty(),
        "the commands are journalled"
    );
    assert!(!bytes_of(&audits).is_empty(), "the read is journalled");
    drop(ws);
    warden.kill9();
    let (kept_commands, kept_audits) = (bytes_of(&commands), bytes_of(&audits));

    // Back on the spool with the database still down, then the database returns.
    warden.restart();
    std::thread::sleep(Duration::from_secs(2));
    pg.start_server();
    let op1 = "(SELECT id FROM users WHERE username = 'op1')";
    let jr2 = "(SELECT i.id FROM incidents i JOIN devices d ON d.id = i.device_id \
               WHERE d.account = 'jr-2' AND i.priority = 'life_critical')";
    let settled = || {
        count(
            &pg,
            &format!(
                "SELECT count(*) FROM incidents WHERE id = {jr2} AND state = 'claimed' AND holder_id = {op1}"
            ),
        ) == 1
            && count(
                &pg,
                &format!(
                    "SELECT count(*) FROM incidents WHERE id = {before_id} AND state = 'resolved'"
                ),
            ) == 1
            && count(
                &pg,
                &format!(
                    "SELECT count(*) FROM audit WHERE object_id = '{client_id}' AND action = 'client.view' \
                 AND at < pg_postmaster_start_time() AND user_id = {op1}"
                ),
            ) == 1
    };
    let done = warden_tests::wait_until(Duration::from_mins(1), settled);
    assert!(
        done,
        "the outage's commands are committed after the crash: incidents {}; log:\n{}",
        pg.query("SELECT string_agg(id || ' ' || state || ' ' || coalesce(holder_id::text, '-'), '; ') FROM incidents"),
        tail(&warden.log_text(), 60)
    );
    let history = |kind: &str, incident: &str| {
        count(
            &pg,
            &format!(
                "SELECT count(*) FROM incident_events WHERE incident_id = {incident} AND kind = '{kind}' \
             AND at < pg_postmaster_start_time()"
            ),
        )
    };
    // Once each, with the time they were made (before Postgres came back).
    assert_eq!(history("claimed", jr2), 1, "jr-2's claim, at its time");
    assert_eq!(
        count(&pg, &format!(
            "SELECT count(*) FROM incident_events WHERE incident_id = {jr2} AND kind = 'audit' \
             AND effect->>'action' = 'noted' AND effect->>'detail' LIKE 'Rang Ada%' \
             AND at < pg_postmaster_start_time()"
        )),
        1,
        "jr-2's note, at its time: {}",
        pg.query(&format!("SELECT string_agg(kind || ' ' || at::text || ' ' || effect::text, E'\\n') FROM incident_events WHERE incident_id = {jr2}"))
    );
    assert_eq!(
        history("claimed", &before_id.to_string()),
        1,
        "jr-1's claim"
    );
    assert_eq!(
        history("resolved", &before_id.to_string()),
        1,
        "jr-1's resolution"
    );
    assert_eq!(
        count(
            &pg,
            &format!(
                "SELECT count(*) FROM incidents WHERE id = {before_id} AND doc->'resolution'->'actor'->>'id' = {op1}::text"
            )
        ),
        1,
        "resolved by op1: {}",
        pg.query(&format!(
            "SELECT doc->'resolution' FROM incidents WHERE id = {before_id}"
        ))
    );
    assert!(
        warden_tests::wait_until(Duration::from_secs(10), || bytes_of(&commands).is_empty()
            && bytes_of(&audits).is_empty()),
        "the journals are emptied once committed"
    );
    assert!(
        warden.metric("warden_engine_journal_recovered_total{outcome=\"applied\"}") >= 3.0,
        "the commands were applied from the journal"
    );

    // A crash after the commit but before the journals were emptied: nothing twice.
    warden.kill9();
    std::fs::write(&commands, &kept_commands).expect("put the command journal back");
    std::fs::write(&audits, &kept_audits).expect("put the audit journal back");
    warden.restart();
    assert!(
        warden_tests::wait_until(Duration::from_secs(30), || bytes_of(&commands).is_empty()
            && bytes_of(&audits).is_empty()),
        "the journals found again are settled; log:\n{}",
        tail(&warden.log_text(), 40)
    );
    assert!(
        warden.metric("warden_engine_journal_recovered_total{outcome=\"applied\"}") < 0.5,
        "nothing applied twice"
    );
    let recognised = warden.metric("warden_engine_journal_recovered_total{outcome=\"already\"}")
        + warden.metric("warden_engine_journal_recovered_total{outcome=\"gone\"}");
    assert!(
        recognised >= 4.0,
        "each journalled command was found again and recognised as committed: {recognised}"
    );
    assert_eq!(history("claimed", jr2), 1, "jr-2's claim once");
    assert_eq!(
        count(
            &pg,
            &format!(
                "SELECT count(*) FROM incident_events WHERE incident_id = {jr2} AND kind = 'audit' AND effect->>'action' = 'noted'"
            )
        ),
        1,
        "jr-2's note once"
    );
    assert_eq!(
        history("resolved", &before_id.to_string()),
        1,
        "jr-1's resolution once"
    );
    assert_eq!(
        count(
            &pg,
            &format!(
                "SELECT count(*) FROM audit WHERE object_id = '{client_id}' AND action = 'client.view'"
            )
        ),
        1,
        "the read audited once"
    );
    assert_eq!(warden.terminate(), Some(0), "{}", warden.log_text());
}

/// A DC-09 transmitter through an outage: its account was read while the database was up,
/// so while it is down frames are judged with what the registry said last, acknowledged
/// from the spool, and stored once Postgres is back.
#[test]
fn a_dc09_transmitter_is_acknowledged_from_the_spool_while_postgres_is_down() {
    use warden_protocol::dc09::{self, Dc09Message, Timestamp, Token};
    let pg = PrivatePg::start();
    let udp = warden_tests::free_port();
    let mut warden = Wardend::start(&format!(
        "[database]\nurl = \"{}\"\n[dc09]\nudp = \"127.0.0.1:{udp}\"\n",
        pg.url
    ));
    warden.add_device("5001", "dc09", &[]);
    let socket = std::net::UdpSocket::bind("127.0.0.1:0").expect("bind");
    socket
        .set_read_timeout(Some(Duration::from_secs(5)))
        .expect("timeout");
    let frame = |sequence| {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .expect("clock")
            .as_secs();
        dc09::encode(&Dc09Message {
            token: Token::SiaDcs,
            sequence,
            receiver: None,
            line: None,
            account: warden_protocol::Account::new(b"5001"),
            data: "#5001|NMA01".into(),
            xdata: Vec::new(),
            timestamp: Timestamp::from_unix(i64::try_from(now).expect("seconds")),
        })
    };
    let exchange = |bytes: &[u8]| {
        socket.send_to(bytes, ("127.0.0.1", udp)).expect("send");
        let mut buf = [0u8; 1024];
        socket
            .recv(&mut buf)
            .ok()
            .map(|n| String::from_utf8_lossy(&buf[..n]).into_owned())
    };
    let reply = exchange(&frame(1)).expect("answered while up");
    assert!(reply.contains("\"ACK\"0001"), "{reply}");
    pg.stop_server();
    let t = Instant::now();
    let reply = exchange(&frame(2)).unwrap_or_else(|| {
        panic!(
            "answered while down; log:\n{}",
            tail(&warden.log_text(), 30)
        )
    });
    assert!(reply.contains("\"ACK\"0002"), "{reply}");
    let first_ms = t.elapsed().as_millis();
    // Once the writer knows the database is away, no registry question is asked at all.
    let t = Instant::now();
    let reply = exchange(&frame(3)).expect("answered while degraded");
    assert!(reply.contains("\"ACK\"0003"), "{reply}");
    let then_ms = t.elapsed().as_millis();
    eprintln!("DC-09 ACK with postgres down: first {first_ms} ms, then {then_ms} ms");
    assert!(then_ms < 500, "ACK while degraded took {then_ms} ms");
    assert!(
        warden.metric("warden_spool_appended_total") > 0.0,
        "spooled"
    );
    pg.start_server();
    let stored = warden_tests::wait_until(Duration::from_secs(30), || {
        count(
            &pg,
            "SELECT count(*) FROM signals WHERE source = 'dc09' AND account = '5001'",
        ) == 3
    });
    assert!(stored, "all three frames stored once the database is back");
    assert_eq!(warden.terminate(), Some(0), "{}", warden.log_text());
}
