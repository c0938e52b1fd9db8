//! Fleet unit tests.

use super::*;

#[test]
fn units_are_split_into_contiguous_connection_groups() {
    let fleet = Fleet::new(FleetConfig {
        devices: 10,
        connections: 3,
        ..FleetConfig::default()
    })
    .expect("valid");
    let ranges: Vec<_> = fleet
        .shared
        .conns
        .iter()
        .map(|c| c.devices.clone())
        .collect();
    assert_eq!(ranges, vec![0..4, 4..8, 8..10]);
    assert_eq!(fleet.shared.conn_of(9), 2);
    assert_eq!(&*fleet.shared.ids[0], "sim-00001");
}

#[test]
fn a_lost_connection_returns_in_flight_and_drained_messages_for_retry() {
    let mut s = ConnState::default();
    for i in 0..4 {
        s.records.push(MessageRecord {
            device: "d".into(),
            msg_id: format!("m{i}").into(),
            kind: "heartbeat",
            valid: true,
            queued_at: Instant::now(),
            published_at: None,
            pubacked_at: None,
            publishes: 1,
        });
        s.fifo.push_back(i);
    }
    s.on_outgoing_publish(1, Instant::now());
    // Record 0 was in flight (pkid 1) and record 1 still in rumqttc's channel when the
    // connection broke; records 2 and 3 were handed over after the break.
    let mut pending = VecDeque::new();
    let mut inflight = rumqttc::Publish::new("t", QoS::AtLeastOnce, "x");
    inflight.pkid = 1;
    pending.push_back(Request::Publish(inflight));
    pending.push_back(Request::Publish(rumqttc::Publish::new(
        "t",
        QoS::AtLeastOnce,
        "y",
    )));
    s.on_connection_lost(&mut pending);
    assert!(pending.is_empty());
    assert_eq!(s.retry, vec![0, 1]);
    assert_eq!(s.fifo, VecDeque::from([2, 3]));
}

#[test]
fn run_tags_are_short_base36() {
    assert_eq!(base36(0), "0");
    assert_eq!(base36(35), "z");
    assert_eq!(base36(36), "10");
}
