//! End to end through the real `wardend` binary: a simulated Sur-Gard receiver on a socat
//! pseudo-terminal pair and a simulated MQTT fleet through Mosquitto, against Postgres.
//! Every signal the senders saw acknowledged must be in the database exactly once, also
//! across a `kill -9` of the daemon; bad input is quarantined and counted.

use std::collections::HashSet;
use std::time::Duration;

use warden_protocol::mqtt::AlarmKind;
use warden_sim::fleet::{Fleet, FleetConfig};
use warden_tests::{Mosquitto, PtyPair, TestDb, Wardend, start_fleet, start_receiver, wait_until};
use warden_types::Qualifier;

const ACCOUNTS: [&str; 4] = ["2001", "2002", "2003", "2004"];

fn config(db: &TestDb, broker: &Mosquitto, pty: &PtyPair) -> String {
    format!(
        r#"
[database]
url = "{url}"
[mqtt]
port = {port}
client_id = "warden-e2e"
[[serial]]
name = "rx1"
path = "{path}"
heartbeat_window = "10s"
"#,
        url = db.url,
        port = broker.port,
        path = pty.warden.display()
    )
}

fn register(w: &Wardend, fleet_ids: &[String]) {
    for a in ACCOUNTS {
        w.add_device(a, "contact_id", &["--test-interval", "24h"]);
    }
    for id in fleet_ids {
        w.add_device(id, "mqtt", &[]);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_acknowledged_signal_is_stored_exactly_once_across_a_crash() {
    let db = TestDb::create("e2e_ingest");
    let broker = Mosquitto::start("max_queued_messages 100000");
    let pty = PtyPair::start();
    let mut warden = Wardend::start(&config(&db, &broker, &pty));

    let fleet = Fleet::new(FleetConfig {
        port: broker.port,
        devices: 20,
        id_prefix: "e2e-".into(),
        connections: 2,
        heartbeat_interval: Duration::from_mins(10),
        alarm_rate_per_s: 0.0,
        ..FleetConfig::default()
    })
    .expect("fleet config");
    register(&warden, &fleet.handle().device_ids());
    // Warden's MQTT link is up once its subscription exists; publish only after that (the
    // very first start has no session yet, so earlier messages would have no subscriber).
    warden.wait_mqtt_up(broker.port);
    let (fh, fleet) = start_fleet(fleet).await;
    let (rx, receiver) = start_receiver(&pty);

    // Phase 1: steady traffic on both paths, plus bad input on both.
    for n in 0..60u16 {
        let account = ACCOUNTS[usize::from(n) % ACCOUNTS.len()];
        // A distinct zone per event, so each acknowledged frame is identifiable in the table.
        rx.send_event(account, Qualifier::New, 101, 1, n + 1)
            .await
            .expect("queue event");
    }
    rx.send_raw_expecting_reply(b"garbage\x14".to_vec())
        .await
        .expect("raw");
    rx.send_event("9999", Qualifier::New, 101, 1, 1)
        .await
        .expect("unknown account");
    for (i, id) in fh.device_ids().iter().enumerate() {
        let kind = if i % 2 == 0 {
            AlarmKind::Pendant
        } else {
            AlarmKind::MainsFail
        };
        fh.alarm(id, kind).await.expect("alarm");
    }
    fh.publish_raw("e2e-00001", b"{not json".to_vec())
        .await
        .expect("raw publish");
    rx.flushed().await;

    // Phase 2: a storm while the daemon is killed and restarted.
    fh.storm(AlarmKind::MainsFail, 20, Duration::from_secs(2))
        .await
        .expect("storm");
    tokio::time::sleep(Duration::from_millis(700)).await;
    warden.kill9();
    tokio::time::sleep(Duration::from_millis(500)).await;
    warden.restart();
    // The receiver reports again after the restart: a periodic test.
    rx.send_event(ACCOUNTS[0], Qualifier::New, 602, 1, 999)
        .await
        .expect("queue event");
    rx.flushed().await;
    tokio::time::sleep(Duration::from_secs(2)).await;

    let fleet_report = fleet.stop().await;
    let rx_report = receiver.stop().await.expect("receiver report");

    // MQTT: every message the broker accepted reaches Warden through its persistent session.
    let expected: HashSet<String> = fleet_report
        .pubacked_ids()
        .into_iter()
        .map(|(d, m)| format!("mqtt:{d}:{m}"))
        .collect();
    // At least the 20 alarms and the 20-unit storm the test sends on purpose (the units'
    // start-up messages are timing-dependent under a loaded CI machine: 50 seen there).
    assert!(
        expected.len() >= 40,
        "fleet published too little: {}",
        expected.len()
    );
    let stored_all = wait_until(Duration::from_secs(20), || {
        db.count("SELECT count(DISTINCT dedupe_key) FROM signals WHERE source = 'mqtt'")
            >= i64::try_from(expected.len()).unwrap_or(i64::MAX)
    });
    let stored: HashSet<String> = db
        .query("SELECT dedupe_key FROM signals WHERE source = 'mqtt' AND dedupe_key IS NOT NULL")
        .lines()
        .map(str::to_owned)
        .collect();
    let missing: Vec<_> = expected.difference(&stored).take(5).collect();
    assert!(
        stored_all && missing.is_empty(),
        "PUBACKed but not stored: {missing:?}\n{}",
        warden.log_text()
    );
    let rows =
        db.count("SELECT count(*) FROM signals WHERE source = 'mqtt' AND dedupe_key IS NOT NULL");
    assert_eq!(
        rows,
        i64::try_from(stored.len()).unwrap_or(-1),
        "no MQTT message is stored twice"
    );

    // Serial: every ACKed event frame is stored exactly once (none was in flight at the crash).
    let acked: Vec<_> = rx_report
        .acked
        .iter()
        .filter(|f| f.kind == warden_sim::surgard::FrameKind::Event)
        .collect();
    assert_eq!(
        acked.len(),
        62,
        "60 good events, the unknown account and the post-restart test were all ACKed"
    );
    for f in &acked {
        let text = String::from_utf8_lossy(&f.bytes).replace('\u{14}', "");
        // Every ACKed event is a signal, the unknown account's too (stored without a
        // device and triaged; its bytes are also kept in quarantine as evidence).
        let sql = format!(
            "SELECT count(*) FROM signals WHERE convert_from(raw, 'UTF8') = '{text}' || chr(20)"
        );
        assert_eq!(
            db.count(&sql),
            1,
            "ACKed frame {text:?} stored exactly once"
        );
    }

    // Bad input on both paths is quarantined with a reason and counted.
    assert_eq!(
        db.count(
            "SELECT count(*) FROM quarantine WHERE source = 'serial' AND reason_code = 'bad_frame'"
        ),
        1
    );
    assert_eq!(db.count("SELECT count(*) FROM quarantine WHERE source = 'serial' AND reason_code = 'unknown_account'"), 1);
    // ... and the unregistered unit's pendant press is an incident in the queue, still
    // life-critical.
    assert!(
        wait_until(Duration::from_secs(10), || db.count(
            "SELECT count(*) FROM incidents i JOIN incident_events e ON e.incident_id = i.id \
             WHERE i.priority = 'life_critical' AND i.device_id IS NULL \
             AND e.effect::text LIKE '%unregistered unit 9999%'"
        ) >= 1),
        "unregistered unit 9999's pendant is a life-critical incident"
    );
    assert_eq!(
        db.count(
            "SELECT count(*) FROM quarantine WHERE source = 'mqtt' AND reason_code = 'bad_json'"
        ),
        1
    );
    assert!(
        warden.metric("warden_signals_acked_total") > 0.0,
        "metrics are served after the restart"
    );
    assert!(
        warden.metric("warden_link_up{link=\"serial:rx1\"}") > 0.5,
        "serial link up after restart"
    );

    // An orderly stop exits 0.
    assert_eq!(warden.terminate(), Some(0), "{}", warden.log_text());
}
