//! Issue 9: a database stall longer than the receiver's ACK window.
//!
//! The real receiver emulator (`warden-sim`) sends Contact ID events and heartbeats,
//! stop-and-wait, through a tap to `serve` on a real pseudo-terminal pair, while another
//! connection holds `LOCK TABLE signals IN EXCLUSIVE MODE` for several seconds, so no signal
//! can commit. The receiver times out and resends. The tap sits on the line like a protocol
//! analyser: for every ACK it sees, it asks Postgres whether the frame the receiver is
//! waiting on is already stored (EXCLUSIVE mode blocks writers, not readers) and measures the
//! time since that frame's last byte went down the line.

use std::time::Duration;

use sqlx::PgPool;
use tokio::io::{AsyncReadExt, AsyncWriteExt, DuplexStream};
use tokio::time::Instant;
use tokio_serial::SerialStream;
use tokio_util::sync::CancellationToken;
use warden_ingest::serial::{LinkWatch, Timing, serve};
use warden_ingest::{DeviceCache, Ingest};
use warden_protocol::{ACK, DC4, NAK};
use warden_sim::surgard::{FrameKind, ReceiverConfig, SurGardReceiver};
use warden_store::{DeviceProtocol, NewDevice, Store, WriterConfig, spawn_writer};
use warden_types::Qualifier;

const EVENTS: u16 = 240;
const STALL: Duration = Duration::from_millis(8_500);
const ACK_WINDOW: Duration = Duration::from_secs(4);

/// What the tap saw on the line.
#[derive(Debug, Default)]
struct Tap {
    acks: u64,
    naks: u64,
    /// ACK/NAK bytes that came while the receiver was waiting for nothing: a real receiver
    /// would have taken them for the answer to its next frame.
    strays: u64,
    /// ACKs for frames not yet visible in Postgres, and answers later than the window.
    violations: Vec<String>,
    /// Longest time from a frame's DC4 to its answer.
    slowest_answer: Duration,
}

/// Forwards bytes between the receiver (`rx`) and the computer's line (`line`) until
/// `stop`, checking every answer against Postgres.
async fn tap(
    mut rx: DuplexStream,
    mut line: SerialStream,
    pool: PgPool,
    stop: CancellationToken,
) -> Tap {
    let mut seen = Tap::default();
    let mut partial = Vec::new();
    // The frame the receiver waits on, and when its last byte went down the line.
    let mut awaiting: Option<(Vec<u8>, Instant)> = None;
    let mut heartbeats_acked = 0i64;
    let (mut up, mut down) = ([0u8; 256], [0u8; 64]);
    loop {
        tokio::select! {
            () = stop.cancelled() => return seen,
            n = rx.read(&mut up) => {
                let n = n.expect("read from receiver");
                if n == 0 {
                    // The receiver stopped (its report is checked on its own). Keep the
                    // line open until told: closing a pty is an I/O error for Warden.
                    stop.cancelled().await;
                    return seen;
                }
                line.write_all(&up[..n]).await.expect("write to line");
                for &b in &up[..n] {
                    partial.push(b);
                    if b == DC4 {
                        awaiting = Some((std::mem::take(&mut partial), Instant::now()));
                    }
                }
            }
            n = line.read(&mut down) => {
                let n = n.expect("read from line");
                assert!(n > 0, "the computer closed its end");
                for &b in &down[..n] {
                    let Some((frame, sent)) = awaiting.take() else {
                        seen.strays += 1;
                        continue;
                    };
                    let waited = sent.elapsed();
                    seen.slowest_answer = seen.slowest_answer.max(waited);
                    if waited >= ACK_WINDOW {
                        seen.violations.push(format!("answered after {waited:?}: {}", warden_protocol::printable(&frame)));
                    }
                    match b {
                        ACK => {
                            seen.acks += 1;
                            // Heartbeats are byte-identical, so the k-th heartbeat ACK needs
                            // k heartbeat rows; an event's bytes are unique to it.
                            let heartbeat = frame.starts_with(b"1011");
                            let need = if heartbeat { heartbeats_acked + 1 } else { 1 };
                            let have: i64 = sqlx::query_scalar("SELECT count(*) FROM signals WHERE raw = $1")
                                .bind(&frame)
                                .fetch_one(&pool)
                                .await
                                .expect("count rows");
                            if have < need {
                                seen.violations.push(format!("ACKed before durable ({have} of {need} rows): {}", warden_protocol::printable(&frame)));
                            }
                            if heartbeat {
                                heartbeats_acked += 1;
                            }
                        }
                        NAK => seen.naks += 1,
                        other => seen.violations.push(format!("unexpected byte {other:#04x}")),
                    }
                }
                rx.write_all(&down[..n]).await.expect("write to receiver");
            }
        }
    }
}

/// The value of a counter in the Prometheus text (0 when never incremented).
fn counter(text: &str, series: &str) -> u64 {
    text.lines()
        .find_map(|l| l.strip_prefix(series)?.trim().parse().ok())
        .unwrap_or(0)
}

async fn count(pool: &PgPool, sql: &'static str) -> i64 {
    sqlx::query_scalar(sql)
        .fetch_one(pool)
        .await
        .expect("count")
}

#[sqlx::test(migrations = "../warden-store/migrations")]
async fn a_database_stall_beyond_the_ack_window_costs_resends_but_no_early_ack_and_no_duplicate(
    pool: PgPool,
) {
    // The only test in this binary, so it may install the process-wide recorder.
    let metrics = warden_telemetry::install_prometheus().expect("recorder");
    // Warden: serve on one end of a pty pair, the default 4 s window and 500 ms margin.
    let store = Store::from_pool(pool.clone());
    store
        .upsert_device(&NewDevice {
            test_interval_seconds: Some(86_400),
            ..NewDevice::new("1234", DeviceProtocol::ContactId)
        })
        .await
        .expect("device");
    let devices = DeviceCache::load(store.clone()).await.expect("cache");
    let stop = CancellationToken::new();
    let (writer, _) = spawn_writer(store.clone(), WriterConfig::default(), stop.clone());
    let ingest = Ingest::new(writer, devices, store, None);
    let (computer, line) = SerialStream::pair().expect("pty pair");
    let timing = Timing {
        // Shorter than the stall: the link only stays up if resends are heard during it.
        heartbeat_window: Duration::from_secs(6),
        ..Timing::with_heartbeat_window(Duration::ZERO)
    };
    assert_eq!(timing.ack_window, ACK_WINDOW);
    let serve_stop = stop.child_token();
    let s = serve_stop.clone();
    let warden = tokio::spawn(async move {
        let mut watch = LinkWatch::default();
        let end = serve(computer, "serial:test", timing, &ingest, &s, &mut watch).await;
        (end.map_err(|e| e.to_string()), watch)
    });

    // The receiver, through the tap. Heartbeats fill every idle gap of 15 ms.
    let (sim, tap_end) = tokio::io::duplex(4096);
    let tap_stop = stop.child_token();
    let tapper = tokio::spawn(tap(tap_end, line, pool.clone(), tap_stop.clone()));
    let receiver = SurGardReceiver::new(
        sim,
        ReceiverConfig {
            heartbeat_interval: Duration::from_millis(15),
            ..ReceiverConfig::default()
        },
    )
    .expect("receiver config");
    let handle = receiver.handle();
    let (sim_stop, sim_stopped) = tokio::sync::oneshot::channel::<()>();
    let sim = tokio::spawn(receiver.run(async {
        let _ = sim_stopped.await;
    }));

    // The stall: once the first 60 events are in, no signal can commit for STALL.
    let (stall_pool, stall_handle) = (pool.clone(), handle.clone());
    let stall = tokio::spawn(async move {
        while stall_handle.stats().acked < 60 {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        let mut tx = stall_pool.begin().await.expect("begin");
        sqlx::query("LOCK TABLE signals IN EXCLUSIVE MODE")
            .execute(&mut *tx)
            .await
            .expect("lock");
        let began = Instant::now();
        let acked_before = stall_handle.stats().acked;
        tokio::time::sleep(STALL).await;
        let acked_during = stall_handle.stats().acked - acked_before;
        tx.commit().await.expect("unlock");
        (began.elapsed(), acked_during)
    });

    // Events with unique bytes (zone = index), a new event and a restore in turn.
    for i in 1..=EVENTS {
        let (qualifier, code) = if i % 2 == 0 {
            (Qualifier::Restore, 602)
        } else {
            (Qualifier::New, 101)
        };
        handle
            .send_event("1234", qualifier, code, 1, i)
            .await
            .expect("queue event");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    tokio::time::timeout(Duration::from_secs(40), handle.flushed())
        .await
        .expect("every event acknowledged within 40 s");
    let (stalled_for, acked_during_stall) = stall.await.expect("stall task");
    sim_stop.send(()).expect("stop receiver");
    let report = sim.await.expect("receiver task").expect("receiver ran");
    // Let the last heartbeat's write finish before stopping Warden.
    tokio::time::sleep(Duration::from_millis(300)).await;
    serve_stop.cancel();
    let (clean, watch) = warden.await.expect("serve task");
    tap_stop.cancel();
    let seen = tapper.await.expect("tap task");
    stop.cancel();

    let s = report.stats;
    let events: Vec<_> = report
        .acked
        .iter()
        .filter(|f| f.kind == FrameKind::Event)
        .collect();
    // The frame caught by the stall is an event or a heartbeat, as timing falls.
    let resent: Vec<_> = report
        .acked
        .iter()
        .filter(|f| f.transmissions > 1)
        .map(|f| (f.kind, f.transmissions))
        .collect();
    let text = metrics.render();
    let late = counter(
        &text,
        r#"warden_serial_late_frames_total{link="serial:test"}"#,
    );
    let recognised = counter(
        &text,
        r#"warden_serial_retransmissions_total{link="serial:test"}"#,
    );
    let heartbeat_rows = count(
        &pool,
        "SELECT count(*) FROM signals WHERE kind = 'heartbeat'",
    )
    .await;
    eprintln!(
        "stall {stalled_for:?} ({acked_during_stall} events ACKed during it); events queued {} sent {} acked {}; \
         heartbeats sent {} acked {} stored {heartbeat_rows}; NAKs {} timeouts {} resends {} (frames resent, with transmissions: {resent:?}); \
         tap: {} ACKs, {} NAKs, {} strays, slowest answer {:?}; \
         Warden: {late} late frames, {recognised} retransmissions recognised",
        s.queued,
        s.sent,
        s.acked,
        s.heartbeats_sent,
        s.heartbeats_acked,
        s.naked,
        s.timeouts,
        s.resent,
        seen.acks,
        seen.naks,
        seen.strays,
        seen.slowest_answer,
    );

    // The stall really outlasted the window: the receiver timed out and resent.
    assert!(stalled_for >= STALL);
    assert!(
        s.timeouts >= 1 && !resent.is_empty(),
        "the stall must force resends: {s:?}"
    );
    assert!(s.sent + s.heartbeats_sent >= 200, "{s:?}");
    // Every event delivered, none given up on, the link never lost on either side.
    assert!(report.all_acknowledged(), "{s:?}");
    assert_eq!(s.acked, u64::from(EVENTS));
    assert_eq!(s.gave_up, 0);
    assert!(s.link_up);
    assert_eq!(clean, Ok(()), "serve ended by shutdown, not by an error");
    assert!(watch.up && watch.ever_up);
    assert_eq!(
        count(
            &pool,
            "SELECT count(*) FROM signals WHERE kind = 'link_lost'"
        )
        .await,
        0
    );
    // A late frame gets silence, not NAK: every resend is a timeout.
    assert_eq!((s.naked, seen.naks), (0, 0));
    assert_eq!(s.resent, s.timeouts);
    // No ACK before durable, none after the window, none the receiver was not waiting for.
    assert!(seen.violations.is_empty(), "{:#?}", seen.violations);
    assert_eq!((seen.strays, s.unexpected_replies), (0, 0));
    // The tap may have passed on the answer to the last frame after the receiver stopped.
    let counted = s.acked + s.heartbeats_acked;
    assert!(
        (counted..=counted + 1).contains(&seen.acks),
        "{} ACKs",
        seen.acks
    );
    // Every acknowledged event is stored exactly once, resends included.
    for f in &events {
        let rows: i64 = sqlx::query_scalar("SELECT count(*) FROM signals WHERE raw = $1")
            .bind(&f.bytes)
            .fetch_one(&pool)
            .await
            .expect("rows");
        assert_eq!(
            rows,
            1,
            "{} (sent {} times)",
            warden_protocol::printable(&f.bytes),
            f.transmissions
        );
    }
    assert_eq!(
        count(&pool, "SELECT count(*) FROM signals WHERE kind = 'event'").await,
        i64::from(EVENTS)
    );
    // One row per heartbeat the receiver sent, however often it was resent.
    assert!(
        (s.heartbeats_acked..=s.heartbeats_sent).contains(&heartbeat_rows.unsigned_abs()),
        "{heartbeat_rows} heartbeat rows for {s:?}"
    );
    // Warden counted each unanswered transmission as late and each resend as recognised.
    assert_eq!((late, recognised), (s.timeouts, s.resent));
}
