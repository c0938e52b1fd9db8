//! The operator console end to end in a real browser: the real `wardend` (Postgres,
//! Mosquitto), Debian's chromium driven by playwright-core (`tests/browser/`). Operators
//! sign in, a pendant press published over MQTT appears on both consoles, one claims it and
//! reads the client record, the other is refused, it is resolved with an outcome, an
//! out-of-hours call gets its reference, and a second press nobody answers is escalated to the
//! on-call user, who acknowledges it under "My pages". Screenshots land in `tests/browser/artifacts/`.

use std::process::Command;

use warden_tests::{Mosquitto, TestDb, Wardend, workspace_root};

const PASSWORD: &str = "correct horse battery staple";
const CLIENT: &str = "Mrs Ada Jones";
const KEY_SAFE: &str = "4821";

fn add_user(w: &Wardend, username: &str, role: &str, name: &str) {
    let out = w.cli_with_stdin(
        &[
            "user",
            "add",
            "--username",
            username,
            "--role",
            role,
            "--display-name",
            name,
        ],
        &format!("{PASSWORD}\n"),
    );
    assert!(
        out.status.success(),
        "user add {username}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn operators_handle_a_pendant_press_and_an_out_of_hours_call_in_a_real_browser() {
    let root = workspace_root();
    let browser_dir = root.join("tests/browser");
    assert!(
        browser_dir.join("node_modules/playwright-core").exists(),
        "playwright-core is not installed: run `npm ci` in tests/browser (tests/run.sh does)"
    );
    let db = TestDb::create("e2e_console");
    let broker = Mosquitto::start("");
    // Life-critical alarms overflow after 5 s (not 60 s), so the unanswered press escalates
    // to the on-call user within the test.
    let config = format!(
        "[database]\nurl = \"{}\"\n[mqtt]\nport = {}\nclient_id = \"warden-console-e2e\"\n\
         [escalation]\nevery = \"200ms\"\n\
         [triage.sla.life_critical]\nwarn = \"4s\"\noverflow = \"5s\"\ncritical = \"1h\"\n",
        db.url, broker.port
    );
    let warden = Wardend::start(&config);
    warden.wait_mqtt_up(broker.port);
    add_user(&warden, "ann", "operator", "Ann Operator");
    add_user(&warden, "bob", "operator", "Bob Operator");
    add_user(&warden, "olly", "on_call", "Olly On-Call");
    // Olly is on call; unanswered life-critical alarms page Olly's console inbox.
    db.query(
        "INSERT INTO people (name, user_id) SELECT 'Olly On-Call', id FROM users WHERE username = 'olly'; \
         INSERT INTO contact_methods (person_id, position, kind, verified) SELECT id, 1, 'console', true FROM people; \
         INSERT INTO rotas (name, zone, layers) SELECT 'On call', 'Europe/London', \
             jsonb_build_array(jsonb_build_object('name', 'all', 'participants', jsonb_build_array(id), \
                 'start', '2026-01-05T09:00:00', 'shift', '{\"unit\":\"weeks\",\"count\":1}'::jsonb)) \
             FROM people; \
         INSERT INTO chains (name, doc) SELECT 'Alarms', jsonb_build_object('steps', \
             jsonb_build_array(jsonb_build_object('targets', jsonb_build_array(jsonb_build_object('kind', 'rota', 'id', r.id)), \
                 'wait', 600000000)), 'fallback', jsonb_build_array(p.id), 'ack_timeout', 1800000000, 'reminder_every', null) \
             FROM rotas r, people p; \
         INSERT INTO routes (position, priority, chain_id) SELECT 1, 'life_critical', id FROM chains;",
    );
    db.query(&format!(
        "INSERT INTO clients (external_ref, name, address, postcode, phone, medical_notes, \
             communication_needs, key_safe) \
         VALUES ('C-1001', '{CLIENT}', '12 High Street, Oldtown', 'OT1 2AB', '01632 960001', \
             'Type 2 diabetes; uses a walking frame', 'Hard of hearing: speak slowly', '{KEY_SAFE}');\
         INSERT INTO responders (client_id, position, name, relationship, phone, is_keyholder) \
         SELECT id, 1, 'Tom Jones', 'son', '07700 900123', true FROM clients WHERE external_ref = 'C-1001';\
         INSERT INTO devices (account, protocol, client_ref, label) \
         VALUES ('pend-1001', 'mqtt', 'C-1001', 'Pendant');"
    ));

    let artifacts = browser_dir.join("artifacts");
    let _ = std::fs::remove_dir_all(&artifacts);
    let out = Command::new("node")
        .arg(browser_dir.join("console.test.mjs"))
        .current_dir(&browser_dir)
        .env(
            "CONSOLE_URL",
            format!("http://localhost:{}", warden.console.port()),
        )
        .env("OP_A_USER", "ann")
        .env("OP_B_USER", "bob")
        .env("ONCALL_USER", "olly")
        .env("PASSWORD", PASSWORD)
        .env("CLIENT_NAME", CLIENT)
        .env("KEY_SAFE", KEY_SAFE)
        .env("MQTT_PORT", broker.port.to_string())
        .env("MQTT_TOPIC", "warden/v1/devices/pend-1001/up")
        .env(
            "MQTT_PAYLOAD",
            r#"{"v":1,"msg_id":"browser-1","alarm":{"kind":"pendant"}}"#,
        )
        .env("ARTIFACTS", &artifacts)
        .output()
        .expect("run node (is nodejs installed?)");
    let stdout = String::from_utf8_lossy(&out.stdout);
    println!("{stdout}");
    assert!(
        out.status.success(),
        "browser test failed (screenshots in {}):\n{stdout}\n{}\nwardend log:\n{}",
        artifacts.display(),
        String::from_utf8_lossy(&out.stderr),
        warden.log_text()
    );
    assert!(stdout.contains(r#"{"result":"pass"}"#));

    // What the browser did is what the database holds.
    let resolved = db.query(
        "SELECT i.state || ' ' || (i.doc #>> '{resolution,outcome}') || ' ' || u.username \
         FROM incidents i JOIN users u ON u.id = (i.doc #>> '{resolution,actor,id}')::bigint \
         WHERE i.kind = 'pendant'",
    );
    assert_eq!(resolved.trim(), "resolved false_alarm ann");
    let seen = db.query(
        "SELECT string_agg(DISTINCT a.action, ',' ORDER BY a.action) FROM audit a \
         JOIN users u ON u.id = a.user_id WHERE u.username = 'ann' AND a.object_type = 'client'",
    );
    assert_eq!(seen.trim(), "client.key_safe.reveal,client.view");
    assert_eq!(
        db.count("SELECT count(*) FROM audit a JOIN users u ON u.id = a.user_id WHERE u.username = 'bob' AND a.action = 'incident.claim'"),
        0,
        "bob's refused claim must not be recorded as a claim"
    );
    assert_eq!(
        db.count("SELECT count(*) FROM ooh_jobs WHERE reference ~ '^OOH-[0-9]{4}-[0-9]{6}$' AND address LIKE '%Mill Lane%'"),
        1
    );
    // Olly acknowledged the page in the browser: the incident's history says so.
    assert!(
        db.count(
            "SELECT count(*) FROM pages p JOIN people pe ON pe.id = p.acked_by \
             JOIN users u ON u.id = pe.user_id WHERE u.username = 'olly' AND p.status = 'acknowledged'"
        ) >= 1
    );
    assert!(
        db.count("SELECT count(*) FROM incident_events WHERE kind = 'escalation_acknowledged'")
            >= 1
    );
    let shots = std::fs::read_dir(&artifacts).map_or(0, Iterator::count);
    assert!(
        shots >= 7,
        "expected the screenshots in {}",
        artifacts.display()
    );
}

/// "My account" in a real browser (`tests/browser/account.test.mjs`): a supervisor changes
/// their password and turns on a second factor; the next sign-in needs a code. The database
/// then holds the new password's effect and both audit lines.
#[test]
fn a_supervisor_changes_their_password_and_turns_on_a_second_factor_in_a_real_browser() {
    let browser_dir = workspace_root().join("tests/browser");
    assert!(
        browser_dir.join("node_modules/playwright-core").exists(),
        "playwright-core is not installed: run `npm ci` in tests/browser (tests/run.sh does)"
    );
    let db = TestDb::create("e2e_account");
    let warden = Wardend::start(&format!("[database]\nurl = \"{}\"\n", db.url));
    add_user(&warden, "sue", "supervisor", "Sue Supervisor");
    let artifacts = browser_dir.join("artifacts-account");
    let _ = std::fs::remove_dir_all(&artifacts);
    let out = Command::new("node")
        .arg(browser_dir.join("account.test.mjs"))
        .current_dir(&browser_dir)
        .env(
            "CONSOLE_URL",
            format!("http://localhost:{}", warden.console.port()),
        )
        .env("USER", "sue")
        .env("PASSWORD", PASSWORD)
        .env("NEW_PASSWORD", "plum kettle orbit 77 tram")
        .env("ARTIFACTS", &artifacts)
        .output()
        .expect("run node (is nodejs installed?)");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success() && stdout.contains(r#"{"result":"pass"}"#),
        "browser test failed (screenshots in {}):\n{stdout}\n{}\nwardend log:\n{}",
        artifacts.display(),
        String::from_utf8_lossy(&out.stderr),
        warden.log_text()
    );
    assert_eq!(
        db.query("SELECT totp_enabled FROM users WHERE username = 'sue'")
            .trim(),
        "t"
    );
    let actions = db.query(
        "SELECT string_agg(a.action, ',' ORDER BY a.id) FROM audit a JOIN users u ON u.id = a.user_id \
         WHERE u.username = 'sue' AND a.action LIKE 'user.%'",
    );
    assert_eq!(
        actions.trim(),
        "user.password_change.refused,user.password_change,user.totp.begin,user.totp.enable",
        "every step recorded"
    );
}
