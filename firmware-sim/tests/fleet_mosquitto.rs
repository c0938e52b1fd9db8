//! The MQTT fleet against a real Mosquitto broker started by each test on a free port.
//! Each test is skipped, saying so, when mosquitto is not installed.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::collections::HashSet;
use std::time::Duration;

use common::{Proxy, Subscriber};
use tokio_util::sync::CancellationToken;
use warden_protocol::mqtt::{self, AlarmKind, Body, Presence};
use warden_sim::fleet::{Disconnect, Fleet, FleetConfig, FleetReport};

const FILTER: &str = "warden/v1/devices/+/up";

fn config(port: u16) -> FleetConfig {
    FleetConfig {
        port,
        drain_timeout: Duration::from_secs(10),
        ..FleetConfig::default()
    }
}

/// Runs the fleet for `time`, calling `script` with its handle once connected.
async fn run_for<F, Fut>(config: FleetConfig, time: Duration, script: F) -> FleetReport
where
    F: FnOnce(warden_sim::fleet::FleetHandle) -> Fut,
    Fut: std::future::Future<Output = ()>,
{
    let fleet = Fleet::new(config).expect("valid fleet");
    let handle = fleet.handle();
    let stop = CancellationToken::new();
    let task = tokio::spawn(fleet.run(stop.clone().cancelled_owned()));
    tokio::time::timeout(Duration::from_secs(10), handle.wait_connected())
        .await
        .expect("fleet connected");
    script(handle).await;
    tokio::time::sleep(time).await;
    stop.cancel();
    task.await.expect("fleet ran")
}

/// Parses every received message with Warden's own parser; panics on any invalid one.
fn parse_all(messages: &[(String, Vec<u8>)]) -> Vec<mqtt::Uplink> {
    messages
        .iter()
        .map(|(topic, payload)| {
            let device = mqtt::parse_topic("warden", topic).expect("valid topic");
            mqtt::parse_payload(device, payload)
                .unwrap_or_else(|e| panic!("{topic}: {e}: {}", String::from_utf8_lossy(payload)))
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_unit_publishes_valid_payloads_and_the_report_counts_every_puback() {
    let broker = common::broker();
    let sub = Subscriber::start(broker.port, FILTER).await;
    let report = run_for(
        FleetConfig {
            devices: 5,
            heartbeat_interval: Duration::from_millis(300),
            alarm_rate_per_s: 10.0,
            ..config(broker.port)
        },
        Duration::from_secs(2),
        |_| async {},
    )
    .await;

    assert!(report.published >= 5 + 5 * 5, "{report:?}");
    assert_eq!(report.pubacked, report.published);
    assert_eq!(report.unacked, 0);
    assert!(report.all_acknowledged());
    assert_eq!(report.latencies.count as u64, report.pubacked);
    assert!(report.by_kind["presence"].published == 5);
    assert!(report.by_kind["heartbeat"].published >= 25);

    let ids = report.pubacked_ids();
    let received = sub
        .wait_until(Duration::from_secs(10), |m| m.len() >= ids.len())
        .await;
    let uplinks = parse_all(&received);
    let seen: HashSet<(String, String)> = uplinks
        .iter()
        .filter_map(|u| Some((u.device_id.clone(), u.msg_id.clone()?)))
        .collect();
    for id in &ids {
        assert!(
            seen.contains(id),
            "PUBACKed {id:?} never reached the subscriber"
        );
    }
    let unique: HashSet<_> = ids.iter().map(|(_, m)| m).collect();
    assert_eq!(unique.len(), ids.len(), "msg_id must be unique");
    let online = uplinks
        .iter()
        .filter(|u| u.body == Body::Presence(Presence::Online))
        .count();
    assert_eq!(online, 5);
    assert!(uplinks.iter().any(|u| matches!(u.body, Body::Alarm(_))));
    assert!(uplinks.iter().all(|u| u.sent_at.is_some()));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_storm_through_shared_connections_is_published_and_acknowledged_in_full() {
    let broker = common::broker();
    let sub = Subscriber::start(broker.port, FILTER).await;
    let report = run_for(
        FleetConfig {
            devices: 500,
            connections: 4,
            heartbeat_interval: Duration::from_mins(10),
            ..config(broker.port)
        },
        Duration::from_millis(1500),
        |handle| async move {
            handle
                .storm(AlarmKind::MainsFail, 500, Duration::from_secs(1))
                .await
                .unwrap();
            handle.alarm("sim-00250", AlarmKind::Pendant).await.unwrap();
        },
    )
    .await;

    assert_eq!(report.connections, 4);
    assert_eq!(report.by_kind["mains_fail"].published, 500);
    assert_eq!(report.by_kind["mains_fail"].pubacked, 500);
    assert_eq!(report.by_kind["pendant"].pubacked, 1);
    assert_eq!(report.unacked, 0);

    let received = sub
        .wait_until(Duration::from_secs(10), |m| {
            m.len() as u64 >= report.pubacked
        })
        .await;
    let storm = parse_all(&received)
        .into_iter()
        .filter(|u| matches!(&u.body, Body::Alarm(a) if a.kind == AlarmKind::MainsFail))
        .map(|u| u.device_id)
        .collect::<HashSet<_>>();
    assert_eq!(storm.len(), 500, "one mains_fail from every unit");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn units_cut_off_abruptly_leave_their_last_will_on_their_topic() {
    let broker = common::broker();
    let sub = Subscriber::start(broker.port, FILTER).await;
    let report = run_for(
        FleetConfig {
            devices: 3,
            disconnect: Disconnect::Abrupt,
            ..config(broker.port)
        },
        Duration::from_millis(300),
        |_| async {},
    )
    .await;
    assert_eq!(report.unacked, 0);

    let offline = |m: &[(String, Vec<u8>)]| {
        m.iter()
            .filter(|(_, p)| p.as_slice() == br#"{"v":1,"presence":"offline"}"#)
            .map(|(t, _)| t.clone())
            .collect::<HashSet<_>>()
    };
    let received = sub
        .wait_until(Duration::from_secs(10), |m| offline(m).len() == 3)
        .await;
    assert!(offline(&received).contains("warden/v1/devices/sim-00002/up"));
    // The will is a valid v1 payload too.
    parse_all(&received);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn messages_survive_a_broker_restart_and_are_all_acknowledged_afterwards() {
    let mut broker = common::broker();
    let fleet = Fleet::new(FleetConfig {
        devices: 4,
        connections: 2,
        heartbeat_interval: Duration::from_millis(100),
        reconnect_delay: Duration::from_millis(200),
        ..config(broker.port)
    })
    .unwrap();
    let handle = fleet.handle();
    let stop = CancellationToken::new();
    let task = tokio::spawn(fleet.run(stop.clone().cancelled_owned()));
    handle.wait_connected().await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    broker.crash_and_restart(Duration::from_millis(800)).await;
    // Units keep creating heartbeats while the broker is away; they must all get through.
    tokio::time::sleep(Duration::from_secs(2)).await;
    stop.cancel();
    let report = task.await.unwrap();

    assert!(
        report.by_kind["presence"].published >= 4 * 2,
        "online again after the restart"
    );
    assert_eq!(report.unacked, 0, "{report:?}");
    assert_eq!(report.pubacked, report.published);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_payloads_are_published_as_given_and_marked_invalid() {
    let broker = common::broker();
    let sub = Subscriber::start(broker.port, "warden/#").await;
    let report = run_for(
        FleetConfig {
            devices: 1,
            ..config(broker.port)
        },
        Duration::from_millis(300),
        |handle| async move {
            handle
                .publish_raw("sim-00001", b"{not json".to_vec())
                .await
                .unwrap();
            handle
                .publish_raw(
                    "unknown-unit",
                    br#"{"v":1,"msg_id":"x1","heartbeat":{}}"#.to_vec(),
                )
                .await
                .unwrap();
            handle
                .publish_raw_on(
                    "sim-00001",
                    "warden/v2/devices/sim-00001/up",
                    br#"{"v":2,"msg_id":"x2","heartbeat":{}}"#.to_vec(),
                )
                .await
                .unwrap();
        },
    )
    .await;
    assert_eq!(report.invalid, 3);
    assert_eq!(report.by_kind["raw"].pubacked, 3);
    assert!(
        report
            .pubacked_ids()
            .iter()
            .all(|(_, m)| !m.starts_with("raw-")),
        "bad payloads are not expected in the database"
    );
    // The three bad payloads, whatever else the unit published meanwhile (its presence
    // message may or may not have gone out within the window on a busy machine).
    let all_three = |m: &[(String, Vec<u8>)]| {
        m.iter().any(|(_, p)| p == b"{not json")
            && m.iter()
                .any(|(t, _)| t == "warden/v1/devices/unknown-unit/up")
            && m.iter().any(|(t, _)| t == "warden/v2/devices/sim-00001/up")
    };
    let received = sub.wait_until(Duration::from_secs(5), all_three).await;
    assert!(all_three(&received));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn messages_in_flight_when_the_connection_breaks_are_published_again_after_reconnecting() {
    let _ = tracing_subscriber::fmt()
        .with_test_writer()
        .with_env_filter("warden_sim=info")
        .try_init();
    let broker = common::broker();
    let sub = Subscriber::start(broker.port, FILTER).await;
    let proxy = Proxy::start(broker.port).await;
    let fleet = Fleet::new(FleetConfig {
        devices: 3,
        connections: 1,
        heartbeat_interval: Duration::from_millis(50),
        reconnect_delay: Duration::from_millis(100),
        ..config(proxy.port)
    })
    .unwrap();
    let handle = fleet.handle();
    let stop = CancellationToken::new();
    let task = tokio::spawn(fleet.run(stop.clone().cancelled_owned()));
    handle.wait_connected().await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    // PUBACKs stop arriving: publishes pile up in flight, then in rumqttc's channel.
    proxy.hold_replies(true);
    tokio::time::sleep(Duration::from_millis(500)).await;
    let stuck = handle.unacked();
    assert!(stuck > 0, "messages should be waiting for their PUBACK");
    proxy.cut();
    proxy.hold_replies(false);
    tokio::time::sleep(Duration::from_millis(1500)).await;
    stop.cancel();
    let report = task.await.unwrap();

    assert!(report.republished > 0, "{report:?}");
    assert_eq!(report.unacked, 0, "{report:?}");
    let ids = report.pubacked_ids();
    let received = sub
        .wait_until(Duration::from_secs(10), |m| {
            let seen: HashSet<(String, String)> = parse_all(m)
                .into_iter()
                .filter_map(|u| Some((u.device_id, u.msg_id?)))
                .collect();
            ids.iter().all(|id| seen.contains(id))
        })
        .await;
    // The broker saw some messages twice (before and after the break): same msg_id, which
    // is what lets Warden drop the duplicate.
    assert!(received.len() > ids.len());
}
