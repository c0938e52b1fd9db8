//! The run: the receiver and the fleet, phase A (steady load on both paths), phase B (a
//! bounded MQTT burst), the loss checks and phase C (raw `COPY` of phase B's rows), and the
//! senders' load generators.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use time::OffsetDateTime;
use tokio::runtime::Runtime;
use tokio::sync::oneshot;
use tokio::time::{Instant, MissedTickBehavior};
use warden_protocol::mqtt::AlarmKind;
use warden_sim::fleet::{Fleet, FleetConfig, FleetHandle};
use warden_sim::surgard::{
    ReceiverConfig, ReceiverHandle, SerialSettings, SurGardReceiver, open_serial,
};
use warden_tests::{http_get, wait_until};
use warden_types::Qualifier;

use crate::Plan;
use crate::figures::{check_nothing_lost, copy_ceiling, max_figures, steady_figures};
use crate::metrics::{Interval, cpu_ticks, cpu_usage, scrape};
use crate::report::{Results, ms};
use crate::rig::{
    Rig, SERIAL_ACCOUNTS, UNIT_PREFIX, drain_mqtt, mqtt_events, probe_mqtt, sleep_until,
    wait_stored, within,
};

/// Alarm kinds cycled through by both senders: mostly technical and test signals with
/// life-critical ones among them, roughly like a real scheme.
pub const KINDS: [AlarmKind; 8] = [
    AlarmKind::Test,
    AlarmKind::Pendant,
    AlarmKind::LowBattery,
    AlarmKind::Test,
    AlarmKind::MainsFail,
    AlarmKind::Fall,
    AlarmKind::Test,
    AlarmKind::Smoke,
];

/// The daemon's count of MQTT messages PUBACKed after commit.
pub const MQTT_ACKED: &str = "warden_signals_acked_total{source=\"mqtt\"}";

pub fn run(rt: &Runtime, plan: &Plan, binary: &Path) -> Results {
    let rig = Rig::start(plan, binary);
    let db = Arc::clone(&rig.db);
    let mut results = Results {
        binary: binary.display().to_string(),
        ..Results::default()
    };

    // The receiver, and one event so the daemon marks the serial link up.
    let port = open_serial(
        &rig.receiver_path.to_string_lossy(),
        &SerialSettings::default(),
    )
    .expect("open the receiver end of the pty pair");
    let receiver = SurGardReceiver::new(
        port,
        ReceiverConfig {
            // Tiny buffer: the producer runs just ahead of the line, so stopping it leaves
            // almost nothing to flush and queueing time stays out of the latencies.
            buffer_capacity: 2,
            ..ReceiverConfig::default()
        },
    )
    .expect("receiver");
    let rx = receiver.handle();
    let (rx_stop, rx_stopped) = oneshot::channel::<()>();
    let rx_task = rt.spawn(receiver.run(async move {
        let _ = rx_stopped.await;
    }));
    let first = async {
        send_frame(&rx, 0).await;
        rx.flushed().await;
    };
    if rt
        .block_on(tokio::time::timeout(Duration::from_secs(20), first))
        .is_err()
    {
        panic!(
            "the daemon did not ACK the first serial frame; log:\n{}",
            rig.log_tail()
        );
    }

    probe_mqtt(rt, &rig);
    let ready = wait_until(Duration::from_secs(10), || {
        http_get(rig.admin(), "/readyz").is_some_and(|(s, _)| s == 200)
    });
    assert!(
        ready,
        "wardend is not ready: {:?}",
        http_get(rig.admin(), "/readyz")
    );

    // The fleet. Every unit says `presence: online` when its connection comes up; those are
    // stored before any measurement starts.
    let fleet = Fleet::new(FleetConfig {
        port: rig.broker.port,
        devices: plan.devices,
        id_prefix: UNIT_PREFIX.into(),
        connections: plan.connections,
        heartbeat_interval: Duration::from_hours(24),
        alarm_rate_per_s: 0.0,
        inflight: 500,
        drain_timeout: Duration::from_secs(30),
        seed: 10,
        ..FleetConfig::default()
    })
    .expect("fleet configuration");
    let fh = fleet.handle();
    let (fleet_stop, fleet_stopped) = oneshot::channel::<()>();
    let fleet_task = rt.spawn(fleet.run(async move {
        let _ = fleet_stopped.await;
    }));
    within(
        rt,
        Duration::from_secs(20),
        "fleet connecting to mosquitto",
        fh.wait_connected(),
    );
    drain_mqtt(&rig, &fh, plan.drain, "presence messages");

    // Phase A: steady load on both paths.
    let order = Arc::new(interleaved_units(&fh.device_ids(), plan.connections));
    let start = Instant::now();
    let window_start = start + plan.warmup;
    let end = window_start + plan.steady;
    let pacer = rt.spawn(pace(fh.clone(), Arc::clone(&order), plan.rate, start, end));
    let serial_load = rt.spawn(serial_load(rx.clone(), end, 1));
    sleep_until(window_start);
    let a_metrics0 = scrape(rig.admin());
    let a_cpu0 = cpu_ticks(rig.daemon_pid());
    let a_wall0 = OffsetDateTime::now_utc();
    let a_inst0 = Instant::now();
    sleep_until(end);
    let a_metrics1 = scrape(rig.admin());
    let a_cpu1 = cpu_ticks(rig.daemon_pid());
    let a_wall1 = OffsetDateTime::now_utc();
    let a_inst1 = Instant::now();
    let a_secs = (a_inst1 - a_inst0).as_secs_f64();
    let sent = within(rt, plan.drain, "phase A MQTT pacer", pacer).expect("pacer task");
    within(rt, plan.drain, "phase A serial sender", serial_load).expect("serial task");
    within(rt, plan.drain, "phase A serial frames ACKed", rx.flushed());
    drain_mqtt(&rig, &fh, plan.drain, "phase A");
    results.a = steady_figures(
        &db,
        (a_wall0, a_wall1),
        (a_inst0, a_inst1),
        a_secs,
        &Interval {
            before: a_metrics0,
            after: a_metrics1,
        },
        &rx,
        &fh,
        cpu_usage(&a_cpu0, &a_cpu1, a_secs),
    );
    #[allow(clippy::cast_precision_loss)]
    let offered = sent as f64 / (end - start).as_secs_f64();
    results.a.mqtt_offered_per_s = offered;
    // Printed now as well, so a later phase that fails leaves these figures behind.
    println!(
        "ingest_load: phase A done: {:.0} signals/s persisted; \
         arrival→ACK p50/p99 (daemon histogram) {}",
        results.a.persisted_per_s,
        results
            .a
            .metrics_ack
            .iter()
            .map(|(s, (p50, p99, _))| format!("{s} {} / {} ms", ms(Some(*p50)), ms(Some(*p99))))
            .collect::<Vec<_>>()
            .join(", ")
    );

    // Phase B: a bounded burst, as fast as the fleet can push it.
    let events_before = mqtt_events(&db);
    let b_metrics0 = scrape(rig.admin());
    let acked_before = b_metrics0.sum(MQTT_ACKED);
    let b_cpu0 = cpu_ticks(rig.daemon_pid());
    let b_wall0 = OffsetDateTime::now_utc();
    let b_inst0 = Instant::now();
    within(rt, plan.drain, "phase B scheduling", burst(&fh, plan.burst));
    let burst_len = i64::try_from(plan.burst).expect("burst fits i64");
    // Watched through the daemon's counter (committed and PUBACKed) rather than psql, which
    // would take CPU from the daemon on a small machine; the rows are checked right after.
    #[allow(clippy::cast_possible_truncation)]
    wait_stored(
        &rig,
        "phase B: alarms acknowledged",
        acked_before as i64 + burst_len,
        plan.drain,
        Duration::from_millis(50),
        || scrape(rig.admin()).sum(MQTT_ACKED) as i64,
    );
    let b_inst1 = Instant::now();
    let b_metrics1 = scrape(rig.admin());
    let b_cpu1 = cpu_ticks(rig.daemon_pid());
    wait_stored(
        &rig,
        "phase B: alarms stored",
        events_before + burst_len,
        plan.drain,
        Duration::from_millis(100),
        || mqtt_events(&db),
    );
    results.b = max_figures(
        &db,
        b_wall0,
        b_inst0,
        &Interval {
            before: b_metrics0,
            after: b_metrics1,
        },
        &fh,
        cpu_usage(&b_cpu0, &b_cpu1, (b_inst1 - b_inst0).as_secs_f64()),
    );
    println!(
        "ingest_load: phase B done: {} alarms, {:.0}/s sustained",
        results.b.signals, results.b.sustained_per_s
    );

    // Stop the senders and check that nothing acknowledged was lost.
    let _ = fleet_stop.send(());
    let fleet_report = within(rt, plan.drain, "fleet stopping", fleet_task).expect("fleet task");
    let _ = rx_stop.send(());
    let rx_report = within(rt, plan.drain, "receiver stopping", rx_task)
        .expect("receiver task")
        .expect("receiver link");
    results.checks = check_nothing_lost(&rig, &fleet_report, &rx_report, plan.drain);

    // Phase C: the same rows through raw COPY, same table, same database.
    results.c = copy_ceiling(rt, &db, b_wall0, plan.copy_runs);
    results.c.ratio = if results.c.best_per_s > 0.0 {
        results.b.sustained_per_s / results.c.best_per_s
    } else {
        0.0
    };
    results
}

/// Sends one uniquely identifiable Contact ID event (see [`frame_fields`]).
pub async fn send_frame(rx: &ReceiverHandle, n: u64) {
    let (account, group, zone) = frame_fields(n);
    let kind = KINDS[usize::try_from(n).unwrap_or(0) % KINDS.len()];
    rx.send_event(
        account,
        Qualifier::New,
        warden_sim::contact_id_code(kind),
        group,
        zone,
    )
    .await
    .expect("the receiver is running");
}

/// Account, group and zone of serial frame `n`: distinct for the first 989,010 frames, so
/// each ACKed frame can be found in `signals` by its bytes.
pub fn frame_fields(n: u64) -> (&'static str, u8, u16) {
    let accounts = SERIAL_ACCOUNTS.len() as u64;
    let account = SERIAL_ACCOUNTS[usize::try_from(n % accounts).unwrap_or(0)];
    let group = u8::try_from((n / accounts) % 99 + 1).unwrap_or(1);
    let zone = u16::try_from((n / (accounts * 99)) % 999 + 1).unwrap_or(1);
    (account, group, zone)
}

/// Receiver load: one event after another, as fast as stop-and-wait allows, until `end`.
/// Returns how many were queued.
pub async fn serial_load(rx: ReceiverHandle, end: Instant, first: u64) -> u64 {
    let mut n = first;
    // Never cancelled mid-send: a cancelled `send_event` would leave the receiver's counters
    // claiming a frame that was never queued.
    while Instant::now() < end {
        send_frame(&rx, n).await;
        n += 1;
    }
    n - first
}

/// Unit ids ordered so consecutive alarms go to different connections (the fleet splits
/// units into contiguous groups, one per connection).
pub fn interleaved_units(ids: &[String], connections: usize) -> Vec<String> {
    let per = ids.len().div_ceil(connections.max(1));
    let mut out = Vec::with_capacity(ids.len());
    for j in 0..per {
        for c in 0..connections.max(1) {
            if let Some(id) = ids.get(c * per + j) {
                out.push(id.clone());
            }
        }
    }
    out
}

/// Phase A's MQTT load: `rate` alarms per second from `start` to `end`, paced every 2 ms
/// against the clock (a late tick sends what is due, so the average rate holds). Returns how
/// many alarms were handed to the fleet.
pub async fn pace(
    fh: FleetHandle,
    units: Arc<Vec<String>>,
    rate: u32,
    start: Instant,
    end: Instant,
) -> u64 {
    let mut tick = tokio::time::interval_at(start, Duration::from_millis(2));
    tick.set_missed_tick_behavior(MissedTickBehavior::Skip);
    let mut sent = 0u64;
    loop {
        tick.tick().await;
        let now = Instant::now().min(end);
        #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
        let due = ((now - start).as_secs_f64() * f64::from(rate)) as u64;
        while sent < due {
            let i = usize::try_from(sent).unwrap_or(0);
            fh.alarm(&units[i % units.len()], KINDS[i % KINDS.len()])
                .await
                .expect("the fleet is running");
            sent += 1;
        }
        if now >= end {
            return sent;
        }
    }
}

/// Phase B's load: `count` mains-fail alarms, scheduled at once across the fleet (the first
/// units first; rounds of one alarm per unit when `count` exceeds the fleet).
pub async fn burst(fh: &FleetHandle, count: usize) {
    let units = fh.device_ids().len();
    let mut left = count;
    while left > 0 {
        let n = left.min(units);
        fh.storm(AlarmKind::MainsFail, n, Duration::from_millis(1))
            .await
            .expect("the fleet is running");
        left -= n;
    }
}
