//! No acknowledged signal is lost when Postgres restarts under load. `wardend` runs its
//! embedded default (a private cluster in its data directory) and the test restarts that
//! cluster in the middle of MQTT and serial traffic.

use std::os::unix::fs::PermissionsExt as _;
use std::time::Duration;

use warden_protocol::mqtt::AlarmKind;
use warden_sim::fleet::{Fleet, FleetConfig};
use warden_sim::surgard::FrameKind;
use warden_tests::{
    Mosquitto, PtyPair, Wardend, pg_tool, start_fleet, start_receiver, try_count, wait_until,
};
use warden_types::Qualifier;

/// A count from the database wardend runs, or -1 while it is away.
fn psql_count(url: &str, sql: &str) -> i64 {
    try_count(url, sql).unwrap_or(-1)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acknowledged_signals_survive_a_postgres_restart() {
    let data = tempfile::tempdir().expect("temp dir");
    // The private cluster runs as `postgres` when the test runs as root: let it in.
    std::fs::set_permissions(data.path(), std::fs::Permissions::from_mode(0o755)).expect("chmod");
    let broker = Mosquitto::start("max_queued_messages 100000");
    let pty = PtyPair::start();
    let config = format!(
        "data_dir = \"{}\"\n[mqtt]\nport = {}\nclient_id = \"warden-pgrestart\"\n[[serial]]\nname = \"rx1\"\npath = \"{}\"\n",
        data.path().display(),
        broker.port,
        pty.warden.display()
    );
    let mut warden = Wardend::start(&config);
    let pgdir = data.path().join("postgres");
    let pid =
        std::fs::read_to_string(pgdir.join("postmaster.pid")).expect("embedded postgres running");
    let port = pid.lines().nth(3).expect("port line").trim().to_owned();
    // The private cluster admits password logins only: the runtime role's, from its file.
    let password = std::fs::read_to_string(data.path().join("postgres-auth/warden_app.password"))
        .expect("the runtime role's password file");
    let url = format!(
        "postgres://warden_app:{}@127.0.0.1:{port}/postgres",
        password.trim()
    );

    let fleet = Fleet::new(FleetConfig {
        port: broker.port,
        devices: 10,
        id_prefix: "pgr-".into(),
        connections: 1,
        heartbeat_interval: Duration::from_mins(10),
        ..FleetConfig::default()
    })
    .expect("fleet");
    for id in fleet.handle().device_ids() {
        warden.add_device(&id, "mqtt", &[]);
    }
    warden.add_device("3001", "contact_id", &[]);
    warden.wait_mqtt_up(broker.port);
    let (fh, fleet) = start_fleet(fleet).await;
    let (rx, receiver) = start_receiver(&pty);

    // Traffic for about 6 s; Postgres restarts (fast: open transactions abort) after 2 s.
    let traffic = tokio::spawn({
        let fh = fh.clone();
        let rx = rx.clone();
        async move {
            let ids = fh.device_ids();
            for n in 0..120u16 {
                fh.alarm(&ids[usize::from(n) % ids.len()], AlarmKind::Pendant)
                    .await
                    .expect("alarm");
                rx.send_event("3001", Qualifier::New, 101, 1, n + 1)
                    .await
                    .expect("event");
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    });
    tokio::time::sleep(Duration::from_secs(2)).await;
    let restarted = tokio::task::spawn_blocking({
        let dir = pgdir.to_string_lossy().into_owned();
        move || {
            let log = format!("{dir}/restart.log");
            pg_tool(
                "pg_ctl",
                &["-D", &dir, "-l", &log, "-m", "fast", "-w", "restart"],
            )
        }
    })
    .await
    .expect("restart task");
    assert!(restarted, "pg_ctl restart failed");
    traffic.await.expect("traffic");
    rx.flushed().await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    let fleet_report = fleet.stop().await;
    let rx_report = receiver.stop().await.expect("receiver");

    let expected = fleet_report.pubacked_ids();
    let want = i64::try_from(expected.len()).expect("count");
    let stored = wait_until(Duration::from_secs(30), || {
        psql_count(
            &url,
            "SELECT count(DISTINCT dedupe_key) FROM signals WHERE source = 'mqtt'",
        ) >= want
    });
    assert!(
        stored,
        "every PUBACKed MQTT message stored after the restart\n{}",
        warden.log_text()
    );
    for (device, msg) in &expected {
        let sql = format!("SELECT count(*) FROM signals WHERE dedupe_key = 'mqtt:{device}:{msg}'");
        assert_eq!(
            psql_count(&url, &sql),
            1,
            "{device}/{msg} stored exactly once"
        );
    }
    let acked_events = rx_report
        .acked
        .iter()
        .filter(|f| f.kind == FrameKind::Event)
        .count();
    assert_eq!(
        acked_events, 120,
        "the receiver got every event ACKed in the end (resending while Postgres was down)"
    );
    // Serial frames have no message id: a frame committed just before the restart whose
    // ACK was lost is sent again and stored again (at least once). Every zone must be there.
    let zones = psql_count(
        &url,
        "SELECT count(DISTINCT decoded #>> '{frame,zone}') FROM signals WHERE account = '3001'",
    );
    assert_eq!(zones, 120, "every ACKed serial event is stored");
    assert_eq!(warden.terminate(), Some(0), "{}", warden.log_text());
}
