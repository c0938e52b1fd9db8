//! The Sur-Gard receiver emulator against a test "computer" on the other end of a pipe or pty.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::time::Duration;

use common::{Computer, Got};
use tokio::sync::oneshot;
use tokio::time::{Instant, timeout};
use warden_protocol::surgard::SurGardFrame;
use warden_protocol::{ACK, NAK};
use warden_sim::surgard::{FrameKind, ReceiverConfig, ReceiverReport, SurGardReceiver};
use warden_types::Qualifier;

type Stop = oneshot::Sender<()>;
type Task = tokio::task::JoinHandle<ReceiverReport>;

fn start<T>(io: T, config: ReceiverConfig) -> (warden_sim::surgard::ReceiverHandle, Stop, Task)
where
    T: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let receiver = SurGardReceiver::new(io, config).expect("valid config");
    let handle = receiver.handle();
    let (stop, stopped) = oneshot::channel::<()>();
    let task = tokio::spawn(async move {
        receiver
            .run(async {
                let _ = stopped.await;
            })
            .await
            .expect("receiver ran")
    });
    (handle, stop, task)
}

fn zone(got: &Got) -> String {
    match got {
        Got::Frame(SurGardFrame::ContactId { event, .. }, _) => event.zone().to_owned(),
        other => panic!("expected a Contact ID frame, got {other:?}"),
    }
}

#[tokio::test]
async fn a_nacked_frame_is_resent_and_the_next_frame_follows_only_after_the_ack() {
    let (sim, computer) = tokio::io::duplex(4096);
    let (handle, stop, task) = start(sim, ReceiverConfig::default());
    let mut computer = Computer::new(computer);

    handle
        .send_event("1234", Qualifier::New, 121, 1, 1)
        .await
        .unwrap();
    handle
        .send_event("1234", Qualifier::New, 602, 1, 2)
        .await
        .unwrap();

    let first = computer.next().await;
    assert_eq!(
        first.bytes(),
        b"5011 181234E12101001\x14",
        "MLR2-E manual example"
    );
    computer.reply(NAK).await;
    assert_eq!(
        computer.next().await,
        first,
        "the same frame again after NAK"
    );
    assert!(
        timeout(Duration::from_millis(200), computer.next())
            .await
            .is_err(),
        "nothing else may be sent before the ACK"
    );
    computer.reply(ACK).await;
    let second = computer.next().await;
    assert_eq!(zone(&second), "002");
    computer.reply(ACK).await;

    timeout(Duration::from_secs(5), handle.flushed())
        .await
        .expect("everything acknowledged");
    stop.send(()).unwrap();
    let report = task.await.unwrap();
    let s = report.stats;
    assert_eq!((s.queued, s.sent, s.acked), (2, 2, 2));
    assert_eq!((s.naked, s.resent, s.timeouts), (1, 1, 0));
    assert_eq!(s.unacked_buffered, 0);
    assert!(report.all_acknowledged());
    let events: Vec<_> = report
        .acked
        .iter()
        .filter(|f| f.kind == FrameKind::Event)
        .collect();
    assert_eq!(events.len(), 2);
    assert_eq!(events[0].transmissions, 2);
    assert!(events[0].acked_at >= events[0].sent_at);
    assert!(events[0].sent_at >= events[0].first_sent_at);
}

#[tokio::test(start_paused = true)]
async fn a_frame_is_resent_when_the_ack_timeout_passes() {
    let (sim, computer) = tokio::io::duplex(4096);
    let (handle, stop, task) = start(sim, ReceiverConfig::default());
    let mut computer = Computer::new(computer);

    handle
        .send_event("1234", Qualifier::New, 101, 1, 1)
        .await
        .unwrap();
    let first = computer.next().await;
    let first_at = Instant::now();
    // Stay silent: the receiver must resend after exactly the 4 s ACK timeout.
    let again = computer.next().await;
    assert_eq!(again, first);
    assert_eq!(first_at.elapsed(), Duration::from_secs(4));
    computer.reply(ACK).await;
    handle.flushed().await;

    stop.send(()).unwrap();
    let s = task.await.unwrap().stats;
    assert_eq!((s.timeouts, s.resent, s.acked, s.naked), (1, 1, 1, 0));
}

#[tokio::test(start_paused = true)]
async fn events_queued_while_the_computer_is_silent_are_delivered_in_order_when_it_answers() {
    let config = ReceiverConfig {
        link_retry_interval: Duration::from_secs(20),
        ..ReceiverConfig::default()
    };
    let (sim, computer) = tokio::io::duplex(4096);
    let (handle, stop, task) = start(sim, config);
    let mut computer = Computer::new(computer);

    for zone in 1..=5 {
        handle
            .send_event("1234", Qualifier::New, 301, 1, zone)
            .await
            .unwrap();
    }
    // The computer is away: it hears the first frame four times and answers none.
    for attempt in 1..=4 {
        let got = computer.next().await;
        assert_eq!(
            zone(&got),
            "001",
            "attempt {attempt} repeats the head frame"
        );
    }
    let gave_up_at = Instant::now() + Duration::from_secs(4);
    tokio::time::sleep(Duration::from_secs(5)).await;
    let s = handle.stats();
    assert_eq!(s.gave_up, 1);
    assert!(!s.link_up);
    assert_eq!(s.timeouts, 4);
    assert_eq!(s.unacked_buffered, 5, "all five held, none lost");

    // Back again: the receiver retries after the retry interval and empties its buffer.
    let mut zones = Vec::new();
    let got = computer.next().await;
    assert_eq!(
        Instant::now().duration_since(gave_up_at),
        Duration::from_secs(20)
    );
    zones.push(zone(&got));
    computer.reply(ACK).await;
    for _ in 0..4 {
        let got = computer.next().await;
        zones.push(zone(&got));
        computer.reply(ACK).await;
    }
    assert_eq!(zones, ["001", "002", "003", "004", "005"]);
    handle.flushed().await;

    stop.send(()).unwrap();
    let report = task.await.unwrap();
    assert!(report.stats.link_up);
    assert_eq!(report.stats.unacked_buffered, 0);
    assert!(report.all_acknowledged());
    let first = report.acked.iter().find(|f| f.seq == 1).unwrap();
    assert_eq!(first.transmissions, 5);
    assert!(first.delivery_latency() >= Duration::from_secs(36));
}

#[tokio::test(start_paused = true)]
async fn a_frame_nobody_acknowledges_stays_buffered_and_is_reported_unacknowledged() {
    let (sim, computer) = tokio::io::duplex(4096);
    let (handle, stop, task) = start(sim, ReceiverConfig::default());
    // Read and ignore everything, like a computer that is on but not answering.
    let drain = tokio::spawn(async move {
        let mut computer = Computer::new(computer);
        loop {
            computer.next().await;
        }
    });
    handle
        .send_event("1234", Qualifier::New, 101, 1, 1)
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_mins(2)).await;
    stop.send(()).unwrap();
    let report = task.await.unwrap();
    drain.abort();
    assert!(!report.all_acknowledged());
    assert_eq!(report.stats.unacked_buffered, 1);
    assert!(report.stats.gave_up >= 2, "{:?}", report.stats);
    assert!(report.acked.is_empty());
}

#[tokio::test(start_paused = true)]
async fn heartbeats_are_sent_when_idle_and_decode_as_heartbeats() {
    let (sim, computer) = tokio::io::duplex(4096);
    let started = Instant::now();
    let (handle, stop, task) = start(sim, ReceiverConfig::default());
    let mut computer = Computer::new(computer);

    let mut at = Vec::new();
    for _ in 0..3 {
        let got = computer.next().await;
        assert_eq!(
            got.bytes(),
            b"1011           @    \x14",
            "MLR2 heartbeat layout"
        );
        assert!(
            matches!(got, Got::Frame(SurGardFrame::Heartbeat { .. }, _)),
            "{got:?}"
        );
        at.push(started.elapsed().as_secs());
        computer.reply(ACK).await;
    }
    assert_eq!(at, [30, 60, 90]);

    // An event resets the idle clock: the next heartbeat comes 30 s after it.
    tokio::time::sleep(Duration::from_secs(10)).await;
    handle
        .send_event("1234", Qualifier::New, 602, 0, 0)
        .await
        .unwrap();
    let event_at = Instant::now();
    assert!(matches!(
        computer.next().await,
        Got::Frame(SurGardFrame::ContactId { .. }, _)
    ));
    computer.reply(ACK).await;
    assert!(matches!(
        computer.next().await,
        Got::Frame(SurGardFrame::Heartbeat { .. }, _)
    ));
    assert_eq!(event_at.elapsed(), Duration::from_secs(30));
    computer.reply(ACK).await;
    tokio::task::yield_now().await;

    stop.send(()).unwrap();
    let s = task.await.unwrap().stats;
    assert_eq!(s.heartbeats_sent, 4);
    assert_eq!(s.heartbeats_acked, 4);
    assert_eq!(s.sent, 1, "heartbeats are not counted as events");
}

#[tokio::test]
async fn garbage_and_bad_frames_are_written_as_given_and_the_next_frame_survives_the_nak() {
    let (sim, computer) = tokio::io::duplex(4096);
    let (handle, stop, task) = start(sim, ReceiverConfig::default());
    let computer = Computer::new(computer);
    // A computer that ACKs good frames and NAKs bad ones, as Warden does.
    let peer = tokio::spawn(async move {
        let mut computer = computer;
        let mut seen = Vec::new();
        loop {
            let got = computer.next().await;
            let reply = if matches!(got, Got::Frame(..)) {
                ACK
            } else {
                NAK
            };
            seen.push(got);
            computer.reply(reply).await;
            if seen.len() == 4 {
                return seen;
            }
        }
    });

    // Garbage runs into the next frame, which is NAKed once and then resent cleanly.
    handle.send_raw(b"\r\nNOISE".to_vec()).await.unwrap();
    handle
        .send_event("1234", Qualifier::New, 101, 1, 1)
        .await
        .unwrap();
    // An oversized frame is its own bad chunk; it is NAKed and never resent.
    let mut oversized = vec![b'9'; 600];
    oversized.push(warden_protocol::DC4);
    handle.send_raw_expecting_reply(oversized).await.unwrap();
    handle
        .send_event("1234", Qualifier::Restore, 101, 1, 1)
        .await
        .unwrap();

    timeout(Duration::from_secs(5), handle.flushed())
        .await
        .expect("settled");
    let seen = peer.await.unwrap();
    assert!(matches!(seen[0], Got::Bad(_)), "{:?}", seen[0]);
    assert!(matches!(seen[1], Got::Frame(..)));
    assert!(matches!(seen[2], Got::Bad(_)));
    assert!(matches!(
        &seen[3],
        Got::Frame(SurGardFrame::ContactId { event, .. }, _) if event.qualifier == Qualifier::Restore
    ));
    stop.send(()).unwrap();
    let s = task.await.unwrap().stats;
    assert_eq!((s.raw_sent, s.raw_naked), (2, 1));
    assert_eq!((s.acked, s.naked, s.resent), (2, 2, 1));
}

#[tokio::test]
async fn the_receiver_works_over_a_real_pty_pair() {
    let (sim, computer) = tokio_serial::SerialStream::pair().expect("pty pair");
    let (handle, stop, task) = start(sim, ReceiverConfig::default());
    let mut computer = Computer::new(computer);

    for zone in 1..=3 {
        handle
            .send_event("1234", Qualifier::New, 101, 1, zone)
            .await
            .unwrap();
    }
    let first = computer.next().await;
    computer.reply(NAK).await;
    assert_eq!(computer.next().await, first);
    computer.reply(ACK).await;
    let mut zones = vec![zone(&first)];
    for _ in 0..2 {
        let got = computer.next().await;
        zones.push(zone(&got));
        computer.reply(ACK).await;
    }
    assert_eq!(zones, ["001", "002", "003"]);
    timeout(Duration::from_secs(5), handle.flushed())
        .await
        .expect("acknowledged over the pty");
    stop.send(()).unwrap();
    let report = task.await.unwrap();
    assert!(report.all_acknowledged());
    assert_eq!(report.stats.resent, 1);
    let summary = report.summary();
    assert_eq!(summary.ack_latency.count, 3);
}

#[tokio::test]
async fn the_receiver_stops_by_itself_once_every_handle_is_dropped_and_the_buffer_is_delivered() {
    let (sim, computer) = tokio::io::duplex(4096);
    let receiver = SurGardReceiver::new(sim, ReceiverConfig::default()).unwrap();
    let handle = receiver.handle();
    let task = tokio::spawn(receiver.run(std::future::pending()));
    handle
        .send_event("0123", Qualifier::New, 100, 0, 1)
        .await
        .unwrap();
    drop(handle);
    let mut computer = Computer::new(computer);
    assert_eq!(computer.next().await.bytes(), b"5011 180123E10000001\x14");
    computer.reply(ACK).await;
    let report = timeout(Duration::from_secs(5), task)
        .await
        .expect("stopped")
        .unwrap()
        .unwrap();
    assert!(report.all_acknowledged());
}

#[tokio::test]
async fn bad_configuration_and_bad_events_are_refused_up_front() {
    let (sim, _computer) = tokio::io::duplex(64);
    let bad = ReceiverConfig {
        receiver: "1".into(),
        line: "12".into(),
        ..ReceiverConfig::default()
    };
    let err = SurGardReceiver::new(sim, bad).unwrap_err().to_string();
    assert!(err.contains("receiver") && err.contains("line"), "{err}");

    let (sim, _computer) = tokio::io::duplex(64);
    let receiver = SurGardReceiver::new(sim, ReceiverConfig::default()).unwrap();
    let handle = receiver.handle();
    assert!(
        handle
            .contact_id_frame("12345", Qualifier::New, 101, 1, 1)
            .is_err()
    );
    assert!(
        handle
            .contact_id_frame("12G4", Qualifier::New, 101, 1, 1)
            .is_err()
    );
    assert!(
        handle
            .contact_id_frame("1234", Qualifier::New, 1000, 1, 1)
            .is_err()
    );
    let ten = handle
        .contact_id_frame("1234567890", Qualifier::Status, 301, 2, 5)
        .unwrap();
    let mut wire = Vec::new();
    ten.encode(&mut wire);
    assert_eq!(wire, b"Q011 581234567890P30102005\x14");
}
