//! MQTT ingest against a real Mosquitto broker and real Postgres (a database per test).
//! A rumqttc client plays the device; each PUBACK it receives is checked against the
//! database at that moment.

use std::time::Duration;

use rumqttc::{AsyncClient, Event, EventLoop, MqttOptions, Packet, QoS};
use sqlx::PgPool;
use tokio_util::sync::CancellationToken;
use warden_ingest::mqtt::{MqttConfig, run};
use warden_ingest::{DeviceCache, Ingest};
use warden_store::{DeviceProtocol, NewDevice, Store, WriterConfig, spawn_writer};
use warden_tests::Mosquitto;
use warden_tests::ingest::IngestTask;

async fn start_ingest(pool: &PgPool, port: u16) -> IngestTask {
    start_ingest_with(pool, port, false).await
}

/// Ingest, with the triage engine behind it when `triage`.
async fn start_ingest_with(pool: &PgPool, port: u16, triage: bool) -> IngestTask {
    let cfg = MqttConfig {
        port,
        client_id: "warden-test".into(),
        ..MqttConfig::default()
    };
    IngestTask::mqtt(pool, cfg, triage).await
}

async fn register(pool: &PgPool, accounts: &[&str]) {
    let store = Store::from_pool(pool.clone());
    for a in accounts {
        store
            .upsert_device(&NewDevice::new(*a, DeviceProtocol::Mqtt))
            .await
            .expect("device");
    }
}

fn device(port: u16, id: &str) -> (AsyncClient, EventLoop) {
    let mut o = MqttOptions::new(id, "127.0.0.1", port);
    o.set_keep_alive(Duration::from_secs(5));
    o.set_max_packet_size(1 << 20, 1 << 20);
    AsyncClient::new(o, 100)
}

/// Polls the device's event loop until `n` PUBACKs arrived, running `on_ack` on each.
async fn await_pubacks(ev: &mut EventLoop, n: usize, mut on_ack: impl AsyncFnMut(u16)) {
    let mut got = 0;
    while got < n {
        let event = tokio::time::timeout(Duration::from_secs(10), ev.poll())
            .await
            .expect("PUBACK within 10 s")
            .expect("device connection");
        if let Event::Incoming(Packet::PubAck(ack)) = event {
            on_ack(ack.pkid).await;
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

/// A fresh broker, device `unit-1` registered, and ingest running and subscribed.
async fn running(pool: &PgPool) -> (Mosquitto, IngestTask) {
    let broker = Mosquitto::start("");
    register(pool, &["unit-1"]).await;
    let daemon = start_ingest(pool, broker.port).await;
    wait_link_up(pool).await;
    (broker, daemon)
}

/// Waits until the ingest client has subscribed (its link is recorded up).
async fn wait_link_up(pool: &PgPool) {
    for _ in 0..200 {
        let up: Option<bool> = sqlx::query_scalar("SELECT up FROM links WHERE id LIKE 'mqtt:%'")
            .fetch_optional(pool)
            .await
            .expect("links");
        if up == Some(true) {
            // The SUBSCRIBE follows the CONNACK; give it a moment to be processed.
            tokio::time::sleep(Duration::from_millis(200)).await;
            return;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    panic!("mqtt link never came up");
}

/// Polls until `sql` counts `want` rows (or 10 s pass) and returns the last count.
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

#[sqlx::test(migrations = "../warden-store/migrations")]
async fn device_alarms_are_stored_with_their_dedupe_key(pool: PgPool) {
    let (broker, daemon) = running(&pool).await;
    let (client, mut ev) = device(broker.port, "unit-1");
    for i in 0..20 {
        let payload = format!(r#"{{"v":1,"msg_id":"m{i}","alarm":{{"kind":"pendant"}}}}"#);
        client
            .publish(
                "warden/v1/devices/unit-1/up",
                QoS::AtLeastOnce,
                false,
                payload,
            )
            .await
            .expect("publish");
    }
    await_pubacks(&mut ev, 20, async |_| {}).await;
    let n = wait_count(
        &pool,
        "SELECT count(*) FROM signals WHERE dedupe_key LIKE 'mqtt:unit-1:m%'",
        20,
    )
    .await;
    assert_eq!(n, 20);
    daemon.stop().await;
}

#[sqlx::test(migrations = "../warden-store/migrations")]
async fn a_message_that_could_not_be_committed_is_not_pubacked_and_is_redelivered(pool: PgPool) {
    let broker = Mosquitto::start("");
    register(&pool, &["unit-1"]).await;
    // Establish Warden's persistent session, then stop it.
    let daemon = start_ingest(&pool, broker.port).await;
    wait_link_up(&pool).await;
    daemon.stop().await;

    // Warden comes back with a database it cannot reach: it receives the message but can
    // never commit it, so it must not PUBACK it.
    let dead = sqlx::postgres::PgPoolOptions::new()
        .acquire_timeout(Duration::from_millis(200))
        .connect_lazy("postgres://postgres@127.0.0.1:1/none")
        .expect("lazy pool");
    let dead_store = Store::from_pool(dead);
    let stop = CancellationToken::new();
    let (writer, _) = spawn_writer(
        dead_store.clone(),
        WriterConfig {
            commit_timeout: Duration::from_millis(500),
            ..WriterConfig::default()
        },
        stop.child_token(),
    );
    let ingest = Ingest::new(
        writer,
        DeviceCache::empty(dead_store.clone()),
        dead_store,
        None,
    );
    let cfg = MqttConfig {
        port: broker.port,
        client_id: "warden-test".into(),
        ..MqttConfig::default()
    };
    let task = tokio::spawn(run(cfg, ingest, stop.clone()));
    let (client, mut ev) = device(broker.port, "unit-1");
    client
        .publish(
            "warden/v1/devices/unit-1/up",
            QoS::AtLeastOnce,
            false,
            r#"{"v":1,"msg_id":"life","alarm":{"kind":"pendant"}}"#,
        )
        .await
        .expect("publish");
    await_pubacks(&mut ev, 1, async |_| {}).await;
    // Let the crippled Warden receive it and fail to commit a few times.
    tokio::time::sleep(Duration::from_secs(2)).await;
    stop.cancel();
    let _ = task.await;
    assert_eq!(
        count(
            &pool,
            "SELECT count(*) FROM signals WHERE dedupe_key = 'mqtt:unit-1:life'"
        )
        .await,
        0
    );

    // A healthy Warden resumes the same session: the broker redelivers the un-PUBACKed
    // message, which is how "no PUBACK before commit" protects the alarm.
    let daemon = start_ingest(&pool, broker.port).await;
    let n = wait_count(
        &pool,
        "SELECT count(*) FROM signals WHERE dedupe_key = 'mqtt:unit-1:life'",
        1,
    )
    .await;
    assert_eq!(n, 1, "the alarm was redelivered and stored");
    daemon.stop().await;
}

#[sqlx::test(migrations = "../warden-store/migrations")]
async fn a_redelivered_message_is_stored_once(pool: PgPool) {
    let (broker, daemon) = running(&pool).await;
    let (client, mut ev) = device(broker.port, "unit-1");
    for i in 0..3 {
        client
            .publish(
                "warden/v1/devices/unit-1/up",
                QoS::AtLeastOnce,
                false,
                r#"{"v":1,"msg_id":"same","alarm":{"kind":"fall"}}"#,
            )
            .await
            .expect("publish");
        let tail = format!(r#"{{"v":1,"msg_id":"after{i}","heartbeat":{{}}}}"#);
        client
            .publish("warden/v1/devices/unit-1/up", QoS::AtLeastOnce, false, tail)
            .await
            .expect("publish");
    }
    await_pubacks(&mut ev, 6, async |_| {}).await;
    // Once the later messages are in, the copies before them have been handled too.
    wait_count(
        &pool,
        "SELECT count(*) FROM signals WHERE dedupe_key LIKE 'mqtt:unit-1:after%'",
        3,
    )
    .await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(
        count(
            &pool,
            "SELECT count(*) FROM signals WHERE dedupe_key = 'mqtt:unit-1:same'"
        )
        .await,
        1
    );
    daemon.stop().await;
}

#[sqlx::test(migrations = "../warden-store/migrations")]
async fn bad_messages_are_quarantined_and_pubacked_and_good_neighbours_arrive(pool: PgPool) {
    let (broker, daemon) = running(&pool).await;
    let (client, mut ev) = device(broker.port, "unit-1");
    let oversized = format!(
        r#"{{"v":1,"msg_id":"big","alarm":{{"kind":"pendant","zone":"{}"}}}}"#,
        "x".repeat(8000)
    );
    let messages: Vec<(&str, String)> = vec![
        (
            "warden/v1/devices/unit-1/up",
            r#"{"v":1,"msg_id":"ok1","alarm":{"kind":"smoke"}}"#.into(),
        ),
        ("warden/v1/devices/unit-1/up", "{not json".into()),
        (
            "warden/v1/devices/unit-1/up",
            r#"{"v":7,"msg_id":"v7","alarm":{"kind":"smoke"}}"#.into(),
        ),
        ("warden/v1/devices/unit-1/up", oversized),
        (
            "warden/v1/devices/stranger/up",
            r#"{"v":1,"msg_id":"s1","alarm":{"kind":"co"}}"#.into(),
        ),
        (
            "warden/v1/devices/unit-1/up",
            r#"{"v":1,"msg_id":"cid","contact_id":{"message":"1234181131010150"}}"#.into(),
        ),
        (
            "warden/v1/devices/unit-1/up",
            r#"{"v":1,"msg_id":"ok2","alarm":{"kind":"pendant"}}"#.into(),
        ),
    ];
    for (topic, payload) in &messages {
        client
            .publish(*topic, QoS::AtLeastOnce, false, payload.clone())
            .await
            .expect("publish");
    }
    await_pubacks(&mut ev, messages.len(), async |_| {}).await;
    // The two good alarms, and every well-framed one that could not be read or attributed:
    // each is stored and triaged (an incident), with its bytes in quarantine as evidence.
    let events = wait_count(
        &pool,
        "SELECT count(*) FROM signals WHERE source = 'mqtt' AND kind = 'event'",
        7,
    )
    .await;
    assert_eq!(events, 7);
    let unattributed = count(
        &pool,
        "SELECT count(*) FROM signals WHERE device_id IS NULL \
         AND decoded #>> '{problem,reason}' = 'unknown_account' AND account = 'stranger'",
    )
    .await;
    assert_eq!(
        unattributed, 1,
        "the stranger's CO alarm is kept without a device"
    );
    let unreadable = count(
        &pool,
        "SELECT count(*) FROM signals WHERE decoded #>> '{events,0,type}' = 'unknown'",
    )
    .await;
    assert_eq!(unreadable, 3, "bad JSON, oversized and the bad Contact ID");
    let salvaged = count(
        &pool,
        "SELECT count(*) FROM signals WHERE decoded #>> '{problem,reason}' = 'malformed' \
         AND decoded #>> '{events,0,kind}' = 'smoke'",
    )
    .await;
    assert_eq!(
        salvaged, 1,
        "the v7 smoke alarm is read as a smoke alarm, marked malformed"
    );
    wait_count(&pool, "SELECT count(*) FROM quarantine", 5).await;
    for (code, n) in [
        ("bad_json", 1),
        ("unknown_version", 1),
        ("oversized", 1),
        ("unknown_account", 1),
        ("bad_contact_id", 1),
    ] {
        let got: i64 = sqlx::query_scalar("SELECT count(*) FROM quarantine WHERE reason_code = $1")
            .bind(code)
            .fetch_one(&pool)
            .await
            .expect("count");
        assert_eq!(got, n, "quarantine rows for {code}");
    }
    // Quarantined evidence keeps the topic with the payload.
    let raw: Vec<u8> =
        sqlx::query_scalar("SELECT raw FROM quarantine WHERE reason_code = 'bad_json'")
            .fetch_one(&pool)
            .await
            .expect("raw");
    assert_eq!(raw, b"warden/v1/devices/unit-1/up\n{not json");
    daemon.stop().await;
}

#[sqlx::test(migrations = "../warden-store/migrations")]
async fn messages_sent_while_warden_is_away_arrive_when_it_returns(pool: PgPool) {
    let broker = Mosquitto::start("");
    register(&pool, &["unit-1"]).await;
    // First run: establish the persistent session and subscription, then stop.
    let daemon = start_ingest(&pool, broker.port).await;
    wait_link_up(&pool).await;
    daemon.stop().await;
    sqlx::query("UPDATE links SET up = false")
        .execute(&pool)
        .await
        .expect("reset link state");

    let (client, mut ev) = device(broker.port, "unit-1");
    for i in 0..10 {
        let payload = format!(r#"{{"v":1,"msg_id":"away{i}","alarm":{{"kind":"pendant"}}}}"#);
        client
            .publish(
                "warden/v1/devices/unit-1/up",
                QoS::AtLeastOnce,
                false,
                payload,
            )
            .await
            .expect("publish");
    }
    // The broker PUBACKs the device at once; it holds the messages for Warden's session.
    await_pubacks(&mut ev, 10, async |_| {}).await;
    assert_eq!(
        count(&pool, "SELECT count(*) FROM signals WHERE kind = 'event'").await,
        0
    );

    let daemon = start_ingest(&pool, broker.port).await;
    let mut stored = 0;
    for _ in 0..200 {
        stored = count(
            &pool,
            "SELECT count(*) FROM signals WHERE dedupe_key LIKE 'mqtt:unit-1:away%'",
        )
        .await;
        if stored == 10 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(
        stored, 10,
        "every message queued for the session is delivered"
    );
    daemon.stop().await;
}

const UP: &str = "warden/v1/devices/unit-1/up";
const HEARTBEAT_DUP_1: &str = r#"{"v":1,"msg_id":"dup-1","heartbeat":{}}"#;
const PENDANT_DUP_1: &str = r#"{"v":1,"msg_id":"dup-1","alarm":{"kind":"pendant"}}"#;

/// Signals under `mqtt:unit-1:dup-1` whose payload is the pendant.
const PENDANTS_DUP_1: &str = "SELECT count(*) FROM signals WHERE dedupe_key = 'mqtt:unit-1:dup-1' \
     AND convert_from(raw, 'UTF8') LIKE '%pendant%'";

async fn publish(client: &AsyncClient, payload: &str) {
    client
        .publish(UP, QoS::AtLeastOnce, false, payload.to_owned())
        .await
        .expect("publish");
}

#[sqlx::test(migrations = "../warden-store/migrations")]
async fn a_pendant_reusing_a_heartbeats_msg_id_is_stored_and_triaged(pool: PgPool) {
    let broker = Mosquitto::start("");
    register(&pool, &["unit-1"]).await;
    let daemon = start_ingest_with(&pool, broker.port, true).await;
    wait_link_up(&pool).await;
    let (client, mut ev) = device(broker.port, "unit-1");
    // The unit's counter restarted: its first alarm reuses the id of an earlier heartbeat.
    publish(&client, HEARTBEAT_DUP_1).await;
    await_pubacks(&mut ev, 1, async |_| {}).await;
    wait_count(
        &pool,
        "SELECT count(*) FROM signals WHERE dedupe_key = 'mqtt:unit-1:dup-1'",
        1,
    )
    .await;
    publish(&client, PENDANT_DUP_1).await;
    await_pubacks(&mut ev, 1, async |_| {}).await;

    assert_eq!(
        wait_count(&pool, PENDANTS_DUP_1, 1).await,
        1,
        "the pendant must be stored, not swallowed as a redelivery of the heartbeat"
    );
    let triaged = wait_count(
        &pool,
        "SELECT count(*) FROM triaged t JOIN signals s ON s.id = t.signal_id \
         WHERE s.dedupe_key = 'mqtt:unit-1:dup-1' AND convert_from(s.raw, 'UTF8') LIKE '%pendant%'",
        1,
    )
    .await;
    assert_eq!(triaged, 1, "the pendant reached triage");
    let incidents = wait_count(
        &pool,
        "SELECT count(*) FROM incidents WHERE priority = 'life_critical'",
        1,
    )
    .await;
    assert_eq!(incidents, 1, "the pendant raised a life-critical incident");
    daemon.stop().await;
}

/// Waits until some session waits on a lock while inserting into `signals`.
async fn wait_insert_blocked(pool: &PgPool) {
    for _ in 0..200 {
        let waiting: i64 = sqlx::query_scalar(
            "SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock' \
             AND query LIKE '%INSERT INTO signals%'",
        )
        .fetch_one(pool)
        .await
        .expect("pg_stat_activity");
        if waiting > 0 {
            return;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    panic!("the signal insert never blocked");
}

/// Connects as Warden's own client id with its persistent session, waits for `wait`, and
/// returns how many PUBLISHes the broker handed over (none are acknowledged).
async fn take_over_warden_session(port: u16, wait: Duration) -> usize {
    let mut o = MqttOptions::new("warden-test", "127.0.0.1", port);
    o.set_clean_session(false);
    o.set_manual_acks(true);
    o.set_keep_alive(Duration::from_secs(5));
    let (_client, mut ev) = AsyncClient::new(o, 10);
    let mut publishes = 0;
    let until = tokio::time::Instant::now() + wait;
    while let Ok(event) = tokio::time::timeout_at(until, ev.poll()).await {
        match event {
            Ok(Event::Incoming(Packet::Publish(_))) => publishes += 1,
            Ok(_) => {}
            Err(_) => break,
        }
    }
    publishes
}

#[sqlx::test(migrations = "../warden-store/migrations")]
async fn a_broker_redelivery_of_a_pendant_that_reused_an_id_is_stored_once(pool: PgPool) {
    let (broker, daemon) = running(&pool).await;
    let (client, mut ev) = device(broker.port, "unit-1");
    publish(&client, HEARTBEAT_DUP_1).await;
    await_pubacks(&mut ev, 1, async |_| {}).await;
    wait_count(
        &pool,
        "SELECT count(*) FROM signals WHERE dedupe_key = 'mqtt:unit-1:dup-1'",
        1,
    )
    .await;

    // Hold Warden's next commit, deliver the pendant, and take Warden's broker connection
    // away while the pendant is written but not yet PUBACKed: the PUBACK it owed belongs to
    // the dead connection, so the broker redelivers the pendant when Warden reconnects.
    let mut blocker = pool.begin().await.expect("begin");
    sqlx::query("LOCK TABLE signals IN ACCESS EXCLUSIVE MODE")
        .execute(&mut *blocker)
        .await
        .expect("lock");
    publish(&client, PENDANT_DUP_1).await;
    await_pubacks(&mut ev, 1, async |_| {}).await;
    wait_insert_blocked(&pool).await;
    let held = take_over_warden_session(broker.port, Duration::from_millis(300)).await;
    assert!(
        held >= 1,
        "the broker still held the pendant for Warden's session"
    );
    blocker.rollback().await.expect("rollback");

    assert_eq!(wait_count(&pool, PENDANTS_DUP_1, 1).await, 1);
    // Give the redelivered copy time to be written and PUBACKed.
    tokio::time::sleep(Duration::from_secs(2)).await;
    daemon.stop().await;
    assert_eq!(
        count(&pool, PENDANTS_DUP_1).await,
        1,
        "the redelivered pendant is recognised and stored once"
    );
    assert_eq!(
        count(
            &pool,
            "SELECT count(*) FROM signals WHERE dedupe_key = 'mqtt:unit-1:dup-1'"
        )
        .await,
        2,
        "one heartbeat and one pendant"
    );
    // Nothing is left for Warden's session: the redelivery was PUBACKed as a duplicate.
    assert_eq!(
        take_over_warden_session(broker.port, Duration::from_millis(1500)).await,
        0,
        "a message is still waiting for Warden's PUBACK"
    );
}

#[sqlx::test(migrations = "../warden-store/migrations")]
async fn message_ids_reused_in_a_burst_raise_one_path_fault_for_the_unit(pool: PgPool) {
    let (broker, daemon) = running(&pool).await;
    let (client, mut ev) = device(broker.port, "unit-1");
    for i in 0..4 {
        publish(
            &client,
            &format!(r#"{{"v":1,"msg_id":"r{i}","heartbeat":{{}}}}"#),
        )
        .await;
    }
    await_pubacks(&mut ev, 4, async |_| {}).await;
    wait_count(
        &pool,
        "SELECT count(*) FROM signals WHERE dedupe_key LIKE 'mqtt:unit-1:r%'",
        4,
    )
    .await;
    // The unit restarts its counter: four more messages reuse the four ids.
    for i in 0..4 {
        let payload = format!(r#"{{"v":1,"msg_id":"r{i}","alarm":{{"kind":"smoke"}}}}"#);
        publish(&client, &payload).await;
    }
    await_pubacks(&mut ev, 4, async |_| {}).await;
    let stored = wait_count(
        &pool,
        "SELECT count(*) FROM signals WHERE dedupe_key LIKE 'mqtt:unit-1:r%'",
        8,
    )
    .await;
    assert_eq!(stored, 8, "every reusing message is stored");
    tokio::time::sleep(Duration::from_millis(300)).await;

    let faults: Vec<(String, Option<i64>, String)> = sqlx::query_as(
        "SELECT source, device_id, decoded #>> '{events,0,detail}' FROM signals \
         WHERE decoded #>> '{events,0,type}' = 'path_fault'",
    )
    .fetch_all(&pool)
    .await
    .expect("path faults");
    let unit: i64 = sqlx::query_scalar("SELECT id FROM devices WHERE account = 'unit-1'")
        .fetch_one(&pool)
        .await
        .expect("device");
    assert_eq!(
        faults,
        vec![(
            "internal".to_owned(),
            Some(unit),
            "message ids reused: firmware reset? (3 ids reused within 10 min)".to_owned()
        )],
        "one path fault for the burst, not one per message"
    );
    daemon.stop().await;
}
