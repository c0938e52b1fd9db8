//! Who may speak on MQTT: Warden's login to a broker that requires one, the shipped
//! Mosquitto configuration (`deploy/mosquitto/`) against forged units and a stolen client
//! id, Contact ID pass-through only from bridges, sequence gaps and broker drops. Real
//! Mosquitto, real Postgres (a database per test).

use std::time::Duration;

use rumqttc::{AsyncClient, ConnectReturnCode, Event, EventLoop, MqttOptions, Packet, QoS};
use sqlx::PgPool;
use warden_ingest::Secret;
use warden_ingest::mqtt::MqttConfig;
use warden_store::{DeviceProtocol, NewDevice, Store};
use warden_tests::Mosquitto;
use warden_tests::ingest::IngestTask;

const WARDEN_PASSWORD: &str = "warden-broker-pw";

fn warden_config(port: u16, password: &str) -> MqttConfig {
    MqttConfig {
        port,
        client_id: "warden-7f3a9c1e5b2d4068".into(),
        username: Some("warden".into()),
        password: Some(Secret::new(password)),
        ..MqttConfig::default()
    }
}

async fn start_ingest(pool: &PgPool, cfg: MqttConfig) -> IngestTask {
    IngestTask::mqtt(pool, cfg, false).await
}

async fn register(pool: &PgPool, account: &str, protocol: DeviceProtocol) -> i64 {
    Store::from_pool(pool.clone())
        .upsert_device(&NewDevice {
            test_interval_seconds: Some(86_400),
            ..NewDevice::new(account, protocol)
        })
        .await
        .expect("device")
}

fn unit(port: u16, client_id: &str, login: Option<(&str, &str)>) -> (AsyncClient, EventLoop) {
    let mut o = MqttOptions::new(client_id, "127.0.0.1", port);
    o.set_keep_alive(Duration::from_secs(5));
    if let Some((user, password)) = login {
        o.set_credentials(user, password);
    }
    AsyncClient::new(o, 100)
}

/// The CONNACK code the broker answers, or the error the connection ended with.
async fn connack(ev: &mut EventLoop) -> Result<ConnectReturnCode, String> {
    loop {
        let event = tokio::time::timeout(Duration::from_secs(10), ev.poll())
            .await
            .map_err(|_| "no CONNACK within 10 s".to_owned())?;
        match event {
            Ok(Event::Incoming(Packet::ConnAck(a))) => return Ok(a.code),
            Ok(_) => {}
            Err(rumqttc::ConnectionError::ConnectionRefused(code)) => return Ok(code),
            Err(e) => return Err(e.to_string()),
        }
    }
}

/// Polls until `n` PUBACKs arrived.
async fn await_pubacks(ev: &mut EventLoop, n: usize) {
    let mut got = 0;
    while got < n {
        let event = tokio::time::timeout(Duration::from_secs(10), ev.poll())
            .await
            .expect("PUBACK within 10 s")
            .expect("unit connection");
        if let Event::Incoming(Packet::PubAck(_)) = event {
            got += 1;
        }
    }
}

async fn count(pool: &PgPool, sql: &'static str) -> i64 {
    sqlx::query_scalar(sql)
        .fetch_one(pool)
        .await
        .expect("count")
}

/// Polls until `sql` counts at least `want` rows (or 10 s pass) and returns the last count.
async fn wait_count(pool: &PgPool, sql: &'static str, want: i64) -> i64 {
    let mut n = 0;
    for _ in 0..200 {
        n = count(pool, sql).await;
        if n >= want {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    n
}

async fn link_up(pool: &PgPool, within: Duration) -> bool {
    let start = std::time::Instant::now();
    while start.elapsed() < within {
        let up: Option<bool> = sqlx::query_scalar("SELECT up FROM links WHERE id LIKE 'mqtt:%'")
            .fetch_optional(pool)
            .await
            .expect("links");
        if up == Some(true) {
            // The SUBSCRIBE follows the CONNACK; give it a moment to be processed.
            tokio::time::sleep(Duration::from_millis(200)).await;
            return true;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    false
}

async fn publish(client: &AsyncClient, device: &str, payload: &str) {
    client
        .publish(
            format!("warden/v1/devices/{device}/up"),
            QoS::AtLeastOnce,
            false,
            payload.to_owned(),
        )
        .await
        .expect("publish");
}

#[sqlx::test(migrations = "../warden-store/migrations")]
async fn warden_logs_in_to_a_broker_that_requires_a_password(pool: PgPool) {
    let broker =
        Mosquitto::start_shipped(&[("warden", WARDEN_PASSWORD), ("unit-1", "unit-1-pw")], "");
    register(&pool, "unit-1", DeviceProtocol::Mqtt).await;

    // A wrong password never gets a subscription.
    let wrong = start_ingest(&pool, warden_config(broker.port, "not-the-password")).await;
    assert!(
        !link_up(&pool, Duration::from_secs(2)).await,
        "a wrong password must not connect"
    );
    wrong.stop().await;
    // Nor does a unit without a password.
    let (_anon, mut anon_ev) = unit(broker.port, "anonymous", None);
    assert_eq!(
        connack(&mut anon_ev).await,
        Ok(ConnectReturnCode::NotAuthorized)
    );

    let daemon = start_ingest(&pool, warden_config(broker.port, WARDEN_PASSWORD)).await;
    assert!(
        link_up(&pool, Duration::from_secs(10)).await,
        "warden logged in"
    );
    let (client, mut ev) = unit(broker.port, "unit-1", Some(("unit-1", "unit-1-pw")));
    publish(
        &client,
        "unit-1",
        r#"{"v":1,"msg_id":"a1","alarm":{"kind":"pendant"}}"#,
    )
    .await;
    await_pubacks(&mut ev, 1).await;
    let n = wait_count(
        &pool,
        "SELECT count(*) FROM signals WHERE dedupe_key = 'mqtt:unit-1:a1' AND device_id IS NOT NULL",
        1,
    )
    .await;
    assert_eq!(n, 1, "the unit's alarm reached Warden through the login");
    daemon.stop().await;
}

#[sqlx::test(migrations = "../warden-store/migrations")]
async fn a_unit_with_valid_credentials_cannot_speak_for_another_unit(pool: PgPool) {
    let broker = Mosquitto::start_shipped(
        &[
            ("warden", WARDEN_PASSWORD),
            ("victim", "victim-pw"),
            ("thief", "thief-pw"),
        ],
        "",
    );
    register(&pool, "victim", DeviceProtocol::Mqtt).await;
    register(&pool, "thief", DeviceProtocol::Mqtt).await;
    let daemon = start_ingest(&pool, warden_config(broker.port, WARDEN_PASSWORD)).await;
    assert!(link_up(&pool, Duration::from_secs(10)).await);

    // The thief logs in with its own credentials, forges the victim's heartbeat (which
    // would hide a dead unit from fail-to-report), and even claims the victim's client id.
    let (client, mut ev) = unit(broker.port, "victim", Some(("thief", "thief-pw")));
    publish(&client, "victim", r#"{"v":1,"msg_id":"f1","heartbeat":{}}"#).await;
    publish(
        &client,
        "victim",
        r#"{"v":1,"msg_id":"f2","alarm":{"kind":"pendant","restore":true}}"#,
    )
    .await;
    // Its own heartbeat afterwards is delivered in order behind the forgeries.
    publish(&client, "thief", r#"{"v":1,"msg_id":"own","heartbeat":{}}"#).await;
    await_pubacks(&mut ev, 3).await;
    let own = wait_count(
        &pool,
        "SELECT count(*) FROM signals WHERE dedupe_key = 'mqtt:thief:own'",
        1,
    )
    .await;
    assert_eq!(own, 1, "the thief's own heartbeat arrived");
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(
        count(
            &pool,
            "SELECT count(*) FROM signals WHERE account = 'victim' \
             OR dedupe_key LIKE 'mqtt:victim:%'"
        )
        .await,
        0,
        "nothing published on the victim's topic by another user reached Warden"
    );
    daemon.stop().await;
}

#[sqlx::test(migrations = "../warden-store/migrations")]
async fn a_stolen_client_id_cannot_take_wardens_session(pool: PgPool) {
    let broker = Mosquitto::start_shipped(
        &[
            ("warden", WARDEN_PASSWORD),
            ("unit-1", "unit-1-pw"),
            ("unit-2", "unit-2-pw"),
        ],
        "",
    );
    register(&pool, "unit-2", DeviceProtocol::Mqtt).await;
    let cfg = warden_config(broker.port, WARDEN_PASSWORD);
    let stolen = cfg.client_id.clone();
    let daemon = start_ingest(&pool, cfg).await;
    assert!(link_up(&pool, Duration::from_secs(10)).await);
    let changed_before: String =
        sqlx::query_scalar("SELECT changed_at::text FROM links WHERE id LIKE 'mqtt:%'")
            .fetch_one(&pool)
            .await
            .expect("link");

    // Without credentials the stolen id gets nowhere.
    let (_anon, mut anon_ev) = unit(broker.port, &stolen, None);
    assert_eq!(
        connack(&mut anon_ev).await,
        Ok(ConnectReturnCode::NotAuthorized)
    );
    // With a unit's credentials it gets the unit's own session (the broker replaces the
    // client id by the user name), not Warden's: it receives none of Warden's alarms.
    let mut o = MqttOptions::new(stolen.as_str(), "127.0.0.1", broker.port);
    o.set_keep_alive(Duration::from_secs(5));
    o.set_clean_session(false);
    o.set_credentials("unit-1", "unit-1-pw");
    let (thief, mut thief_ev) = AsyncClient::new(o, 100);
    assert_eq!(connack(&mut thief_ev).await, Ok(ConnectReturnCode::Success));
    thief
        .subscribe("warden/v1/devices/+/up", QoS::AtLeastOnce)
        .await
        .expect("subscribe");
    let thief_got = tokio::spawn(async move {
        let mut got = 0;
        let end = tokio::time::Instant::now() + Duration::from_secs(3);
        while let Ok(Ok(ev)) = tokio::time::timeout_at(end, thief_ev.poll()).await {
            if let Event::Incoming(Packet::Publish(_)) = ev {
                got += 1;
            }
        }
        got
    });

    tokio::time::sleep(Duration::from_millis(300)).await;
    let (client, mut ev) = unit(broker.port, "unit-2", Some(("unit-2", "unit-2-pw")));
    publish(
        &client,
        "unit-2",
        r#"{"v":1,"msg_id":"after-theft","alarm":{"kind":"pendant"}}"#,
    )
    .await;
    await_pubacks(&mut ev, 1).await;
    let n = wait_count(
        &pool,
        "SELECT count(*) FROM signals WHERE dedupe_key = 'mqtt:unit-2:after-theft'",
        1,
    )
    .await;
    assert_eq!(n, 1, "Warden still receives alarms");
    assert_eq!(
        thief_got.await.expect("thief task"),
        0,
        "the thief received nothing"
    );
    let changed_after: String =
        sqlx::query_scalar("SELECT changed_at::text FROM links WHERE id LIKE 'mqtt:%'")
            .fetch_one(&pool)
            .await
            .expect("link");
    let why: Vec<String> =
        sqlx::query_scalar("SELECT decoded::text FROM signals WHERE source = 'internal'")
            .fetch_all(&pool)
            .await
            .expect("internal");
    assert_eq!(
        changed_before, changed_after,
        "Warden's connection was never taken over: {why:?}"
    );
    daemon.stop().await;
}

#[sqlx::test(migrations = "../warden-store/migrations")]
async fn messages_the_broker_drops_while_warden_is_away_raise_a_path_fault(pool: PgPool) {
    // The shipped configuration with the stock queue limit cut to 10 and $SYS every second.
    let broker = Mosquitto::start_shipped(
        &[("warden", WARDEN_PASSWORD), ("unit-1", "unit-1-pw")],
        "max_queued_messages 10\nsys_interval 1",
    );
    register(&pool, "unit-1", DeviceProtocol::Mqtt).await;
    // Warden's session exists, then Warden is away.
    let daemon = start_ingest(&pool, warden_config(broker.port, WARDEN_PASSWORD)).await;
    assert!(link_up(&pool, Duration::from_secs(10)).await);
    daemon.stop().await;

    let (client, mut ev) = unit(broker.port, "unit-1", Some(("unit-1", "unit-1-pw")));
    for i in 0..30 {
        publish(
            &client,
            "unit-1",
            &format!(r#"{{"v":1,"msg_id":"away{i}","heartbeat":{{}}}}"#),
        )
        .await;
    }
    await_pubacks(&mut ev, 30).await;
    assert_eq!(
        count(&pool, "SELECT count(*) FROM signals WHERE source = 'internal' AND decoded #>> '{events,0,type}' = 'path_fault'").await,
        0
    );

    let daemon = start_ingest(&pool, warden_config(broker.port, WARDEN_PASSWORD)).await;
    let faults = wait_count(
        &pool,
        "SELECT count(*) FROM signals WHERE source = 'internal' AND device_id IS NULL \
         AND link_id LIKE 'mqtt:%' AND decoded #>> '{events,0,type}' = 'path_fault' \
         AND decoded #>> '{events,0,detail}' LIKE 'broker dropped 20 messages%'",
        1,
    )
    .await;
    assert_eq!(
        faults, 1,
        "the 20 dropped messages are an incident on the link"
    );
    let kept = wait_count(
        &pool,
        "SELECT count(*) FROM signals WHERE dedupe_key LIKE 'mqtt:unit-1:away%'",
        10,
    )
    .await;
    assert_eq!(kept, 10, "the 10 the broker kept were delivered");
    daemon.stop().await;
}

#[sqlx::test(migrations = "../warden-store/migrations")]
async fn a_pass_through_from_a_unit_that_is_not_the_panels_bridge_is_a_not_a_bridge_incident(
    pool: PgPool,
) {
    let broker = Mosquitto::start_shipped(
        &[
            ("warden", WARDEN_PASSWORD),
            ("bridge-1", "bridge-pw"),
            ("rogue", "rogue-pw"),
        ],
        "",
    );
    let panel = register(&pool, "1234", DeviceProtocol::ContactId).await;
    register(&pool, "bridge-1", DeviceProtocol::Mqtt).await;
    register(&pool, "rogue", DeviceProtocol::Mqtt).await;
    let store = Store::from_pool(pool.clone());
    store
        .set_device_bridge("1234", Some("bridge-1"))
        .await
        .expect("bridge");
    assert!(
        store
            .set_device_bridge("bridge-1", Some("rogue"))
            .await
            .is_err(),
        "only contact_id and sia panels are bridged"
    );
    assert!(
        store.set_device_bridge("1234", Some("1234")).await.is_err(),
        "a bridge is an mqtt unit"
    );
    let daemon = start_ingest(&pool, warden_config(broker.port, WARDEN_PASSWORD)).await;
    assert!(link_up(&pool, Duration::from_secs(10)).await);

    // Account 1234, event 101 (pendant), new.
    let cid = r#""contact_id":{"message":"123418110101001B"}"#;
    let (rogue, mut rogue_ev) = unit(broker.port, "rogue", Some(("rogue", "rogue-pw")));
    publish(
        &rogue,
        "rogue",
        &format!(r#"{{"v":1,"msg_id":"r1",{cid}}}"#),
    )
    .await;
    await_pubacks(&mut rogue_ev, 1).await;
    let (bridge, mut bridge_ev) = unit(broker.port, "bridge-1", Some(("bridge-1", "bridge-pw")));
    publish(
        &bridge,
        "bridge-1",
        &format!(r#"{{"v":1,"msg_id":"b1",{cid}}}"#),
    )
    .await;
    await_pubacks(&mut bridge_ev, 1).await;

    wait_count(
        &pool,
        "SELECT count(*) FROM signals WHERE dedupe_key IN ('mqtt:rogue:r1', 'mqtt:bridge-1:b1')",
        2,
    )
    .await;
    let rogue_row: (Option<i64>, Option<String>, Option<String>) = sqlx::query_as(
        "SELECT device_id, decoded #>> '{problem,reason}', decoded #>> '{problem,publisher}' \
         FROM signals WHERE dedupe_key = 'mqtt:rogue:r1'",
    )
    .fetch_one(&pool)
    .await
    .expect("rogue signal");
    assert_eq!(
        rogue_row,
        (None, Some("not_a_bridge".into()), Some("rogue".into())),
        "the rogue's pass-through is stored without the panel and marked"
    );
    let bridged: Option<i64> =
        sqlx::query_scalar("SELECT device_id FROM signals WHERE dedupe_key = 'mqtt:bridge-1:b1'")
            .fetch_one(&pool)
            .await
            .expect("bridged signal");
    assert_eq!(bridged, Some(panel), "the bridge speaks for its panel");
    assert_eq!(
        count(
            &pool,
            "SELECT count(*) FROM quarantine WHERE reason_code = 'not_a_bridge'"
        )
        .await,
        1,
        "the rogue's bytes are kept as evidence"
    );
    daemon.stop().await;
}

#[sqlx::test(migrations = "../warden-store/migrations")]
async fn a_gap_in_a_units_sequence_numbers_raises_a_path_fault_and_a_reboot_does_not(pool: PgPool) {
    let broker =
        Mosquitto::start_shipped(&[("warden", WARDEN_PASSWORD), ("unit-1", "unit-1-pw")], "");
    let device = register(&pool, "unit-1", DeviceProtocol::Mqtt).await;
    let daemon = start_ingest(&pool, warden_config(broker.port, WARDEN_PASSWORD)).await;
    assert!(link_up(&pool, Duration::from_secs(10)).await);
    let (client, mut ev) = unit(broker.port, "unit-1", Some(("unit-1", "unit-1-pw")));
    // 7, 8, then 12 (9-11 lost), then a reboot (1, 2), then 2 again (a redelivery).
    let seqs = [7, 8, 12, 1, 2, 2];
    for (i, seq) in seqs.iter().enumerate() {
        publish(
            &client,
            "unit-1",
            &format!(r#"{{"v":1,"msg_id":"s{i}","seq":{seq},"heartbeat":{{}}}}"#),
        )
        .await;
    }
    await_pubacks(&mut ev, seqs.len()).await;
    wait_count(
        &pool,
        "SELECT count(*) FROM signals WHERE dedupe_key LIKE 'mqtt:unit-1:s%'",
        6,
    )
    .await;
    let faults = wait_count(
        &pool,
        "SELECT count(*) FROM signals WHERE decoded #>> '{events,0,type}' = 'path_fault'",
        1,
    )
    .await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let rows: Vec<(Option<i64>, String)> = sqlx::query_as(
        "SELECT device_id, decoded #>> '{events,0,detail}' FROM signals \
         WHERE decoded #>> '{events,0,type}' = 'path_fault'",
    )
    .fetch_all(&pool)
    .await
    .expect("faults");
    assert_eq!(faults, 1);
    assert_eq!(
        rows,
        vec![(
            Some(device),
            "messages lost between unit and centre (seq 8 → 12)".to_owned()
        )],
        "one gap, on the unit; the reboot and the redelivery are not gaps"
    );
    daemon.stop().await;
}
