//! MQTT ingest over TLS to a real Mosquitto that requires client certificates
//! (`require_certificate true`), certificates made at test time: with the broker's CA and
//! its own certificate Warden subscribes and stores a unit's alarm sent over TLS; trusting
//! another CA it never comes up.

use std::os::unix::fs::PermissionsExt as _;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

use sqlx::PgPool;
use warden_ingest::mqtt::MqttConfig;
use warden_store::{DeviceProtocol, NewDevice, Store};
use warden_tests::Mosquitto;
use warden_tests::certs::{Ca, Issued};
use warden_tests::ingest::IngestTask;

/// A Mosquitto whose only listener is TLS with client certificates from `ca`.
fn tls_broker(ca: &Ca, server: &Issued) -> Mosquitto {
    Mosquitto::start_conf(&format!(
        "allow_anonymous true\npersistence false\ncafile {}\ncertfile {}\nkeyfile {}\nrequire_certificate true\n",
        ca.cert.display(),
        server.cert.display(),
        server.key.display()
    ))
}

/// Certificates in a folder the broker (which drops to the `mosquitto` user) can read.
fn readable(dir: &Path) {
    for entry in std::fs::read_dir(dir).expect("read dir").flatten() {
        std::fs::set_permissions(entry.path(), std::fs::Permissions::from_mode(0o644))
            .expect("chmod");
    }
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o755)).expect("chmod");
}

fn config(port: u16, ca: &Path, client: &Issued) -> MqttConfig {
    MqttConfig {
        host: "localhost".into(),
        port,
        client_id: "warden-test".into(),
        tls_ca_file: Some(ca.to_owned()),
        tls_client_cert: Some(client.cert.clone()),
        tls_client_key: Some(client.key.clone()),
        ..MqttConfig::default()
    }
}

async fn link_up(pool: &PgPool, within: Duration) -> bool {
    let deadline = tokio::time::Instant::now() + within;
    while tokio::time::Instant::now() < deadline {
        let up: Option<bool> = sqlx::query_scalar("SELECT up FROM links WHERE id LIKE 'mqtt:%'")
            .fetch_optional(pool)
            .await
            .expect("links");
        if up == Some(true) {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    false
}

#[sqlx::test(migrations = "../warden-store/migrations")]
async fn ingest_over_tls_with_a_client_certificate_stores_a_units_alarm(pool: PgPool) {
    let dir = tempfile::tempdir().expect("temp dir");
    let ca = Ca::new(dir.path(), "mqtt");
    let server = ca.issue("broker", &["DNS:localhost", "IP:127.0.0.1"]);
    let warden = ca.issue("warden", &["DNS:warden"]);
    let unit = ca.issue("unit-1", &["DNS:unit-1"]);
    readable(dir.path());
    let broker = tls_broker(&ca, &server);
    Store::from_pool(pool.clone())
        .upsert_device(&NewDevice::new("unit-1", DeviceProtocol::Mqtt))
        .await
        .expect("device");

    let daemon = IngestTask::mqtt(&pool, config(broker.port, &ca.cert, &warden), false).await;
    assert!(
        link_up(&pool, Duration::from_secs(10)).await,
        "ingest did not connect over TLS"
    );
    // The SUBSCRIBE follows the CONNACK.
    tokio::time::sleep(Duration::from_millis(300)).await;

    let port = broker.port.to_string();
    let (ca_path, cert, key) = (ca.cert.clone(), unit.cert.clone(), unit.key.clone());
    let sent = tokio::task::spawn_blocking(move || {
        Command::new("timeout")
            .args([
                "15",
                "mosquitto_pub",
                "-h",
                "localhost",
                "-p",
                &port,
                "-i",
                "unit-1",
            ])
            .arg("--cafile")
            .arg(&ca_path)
            .arg("--cert")
            .arg(&cert)
            .arg("--key")
            .arg(&key)
            .args([
                "-q",
                "1",
                "-t",
                "warden/v1/devices/unit-1/up",
                "-m",
                r#"{"v":1,"msg_id":"tls-1","alarm":{"kind":"pendant"}}"#,
            ])
            .output()
            .expect("mosquitto_pub")
    })
    .await
    .expect("join");
    assert!(sent.status.success(), "{sent:?}");

    let mut stored = 0i64;
    for _ in 0..200 {
        stored = sqlx::query_scalar(
            "SELECT count(*) FROM signals WHERE dedupe_key = 'mqtt:unit-1:tls-1'",
        )
        .fetch_one(&pool)
        .await
        .expect("count");
        if stored == 1 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(stored, 1, "the alarm sent over TLS was not stored");
    daemon.stop().await;
}

#[sqlx::test(migrations = "../warden-store/migrations")]
async fn ingest_trusting_another_ca_never_connects(pool: PgPool) {
    let dir = tempfile::tempdir().expect("temp dir");
    let ca = Ca::new(dir.path(), "mqtt");
    let other = Ca::new(dir.path(), "other");
    let server = ca.issue("broker", &["DNS:localhost", "IP:127.0.0.1"]);
    let warden = ca.issue("warden", &["DNS:warden"]);
    readable(dir.path());
    let broker = tls_broker(&ca, &server);
    let daemon = IngestTask::mqtt(&pool, config(broker.port, &other.cert, &warden), false).await;
    assert!(
        !link_up(&pool, Duration::from_secs(3)).await,
        "ingest connected to a broker whose certificate it should not trust"
    );
    daemon.stop().await;
}
