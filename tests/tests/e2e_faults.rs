//! Fault runs through the real `wardend` binary with senders that are not Warden's own
//! code: firmware-sim's Sur-Gard receiver emulator over a socat cable, firmware-sim's MQTT
//! fleet and Debian's `mosquitto_pub`, through a real Mosquitto, into Postgres. Each run
//! sends at least 10 000 signals while one part of the path fails, then counts what the
//! senders saw acknowledged against the `signals` table:
//!
//! - serial: every ACKed frame is stored, and no frame is stored more often than it was
//!   transmitted (Sur-Gard frames carry no id, so a frame committed just before a fault whose
//!   ACK was lost is sent and stored again: at least once, never invented);
//! - MQTT: every PUBACKed message is stored exactly once (by its `msg_id`);
//! - every acknowledged pendant press (about 1 in 50 signals, from units registered with
//!   `wardend device add --label pendant`) is triaged (`triaged`) and its unit has a
//!   life-critical incident.
//!
//! Each run prints one line of figures (`--nocapture`). The runs take turns (one lock), so
//! that on a 2-core machine one run's load does not become another run's fault.

use std::collections::{HashMap, HashSet};
use std::fmt::Write as _;
use std::time::{Duration, Instant};

use warden_protocol::mqtt::AlarmKind;
use warden_sim::fleet::{Fleet, FleetConfig, FleetHandle, FleetReport};
use warden_sim::surgard::{FrameKind, ReceiverConfig, ReceiverHandle, ReceiverReport};
use warden_tests::{
    Mosquitto, PrivatePg, PtyPair, PubReport, TestDb, Wardend, mosquitto_pub, start_fleet,
    start_receiver_replug, wait_until,
};
use warden_types::Qualifier;

/// One run at a time: each run owns both cores while it breaks something.
static ONE_AT_A_TIME: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// Serial accounts that send periodic tests (Contact ID 602).
const SERIAL_BULK: [&str; 2] = ["3101", "3102"];
/// The time a run may spend sending and recovering; the checks after it have their own
/// bounded waits (`STORE_WAIT`).
const RUN_BUDGET: Duration = Duration::from_mins(1);
/// How long the checks wait for stored and triaged signals after a run.
const STORE_WAIT: Duration = Duration::from_secs(30);
/// Every this many signals on a path, one is a pendant press.
const PENDANT_EVERY: usize = 50;
/// The serial link's name in the daemon's configuration, and its link id.
const SERIAL_LINK: &str = "serial:rx1";

// ---------------------------------------------------------------------------------------
// Setup

/// Any database the runs read: the shared test server's or a private cluster.
trait Sql {
    fn sql(&self, query: &str) -> String;
    fn count(&self, query: &str) -> i64 {
        let out = self.sql(query);
        out.parse()
            .unwrap_or_else(|_| panic!("{query}: not a number: {out:?}"))
    }
}

impl Sql for TestDb {
    fn sql(&self, query: &str) -> String {
        self.query(query)
    }
}

impl Sql for PrivatePg {
    fn sql(&self, query: &str) -> String {
        self.query(query)
    }
}

fn config(db_url: &str, mqtt_port: Option<u16>, pty: Option<&PtyPair>, client: &str) -> String {
    let mut c = format!("[database]\nurl = \"{db_url}\"\n");
    if let Some(port) = mqtt_port {
        let _ = write!(c, "[mqtt]\nport = {port}\nclient_id = \"{client}\"\n");
    }
    if let Some(pty) = pty {
        let _ = write!(
            c,
            "[[serial]]\nname = \"rx1\"\npath = \"{}\"\nheartbeat_window = \"10s\"\n",
            pty.warden.display()
        );
    }
    c
}

/// Registers one unit with `wardend device add`; pendant units carry the label `pendant`.
fn add_device(w: &Wardend, account: &str, protocol: &str, pendant: bool) {
    let extra: &[&str] = if pendant {
        &["--label", "pendant"]
    } else {
        &[]
    };
    w.add_device(account, protocol, extra);
}

fn serial_pendant_account(i: usize) -> String {
    format!("5{:03}", i % 1000)
}

/// Registers the serial units: the bulk accounts and `pendants` pendant accounts.
fn register_serial(w: &Wardend, pendants: usize) {
    for a in SERIAL_BULK {
        add_device(w, a, "contact_id", false);
    }
    for i in 0..pendants {
        add_device(w, &serial_pendant_account(i), "contact_id", true);
    }
}

/// A receiver emulator's settings for fault runs: the protocol's 4 attempts, but a 2 s
/// ACK timeout and a 1 s retry while the computer is away, so the runs recover quickly.
fn receiver_config() -> ReceiverConfig {
    ReceiverConfig {
        ack_timeout: Duration::from_secs(2),
        link_retry_interval: Duration::from_secs(1),
        ..ReceiverConfig::default()
    }
}

/// Queues `frames` Contact ID events: periodic tests from the bulk accounts and, every
/// [`PENDANT_EVERY`], a pendant press (101) from the next of `pendants` pendant accounts.
/// Each frame is unique (group and zone count the frames). Returns the sequence numbers of
/// the pendant frames. Stops queueing at `deadline`.
fn send_serial(
    rx: ReceiverHandle,
    frames: usize,
    pendants: usize,
    deadline: Instant,
) -> tokio::task::JoinHandle<HashSet<u64>> {
    tokio::spawn(async move {
        let mut pendant_seqs = HashSet::new();
        for n in 0..frames {
            let group = u8::try_from(n / 1000).expect("under 100 000 frames");
            let zone = u16::try_from(n % 1000).expect("zone");
            let pendant = n % PENDANT_EVERY == PENDANT_EVERY / 2;
            let (account, code) = if pendant {
                (serial_pendant_account(n / PENDANT_EVERY % pendants), 101)
            } else {
                (SERIAL_BULK[n % SERIAL_BULK.len()].to_owned(), 602)
            };
            let left = deadline.saturating_duration_since(Instant::now());
            let queued = tokio::time::timeout(
                left,
                rx.send_event(&account, Qualifier::New, code, group, zone),
            )
            .await;
            match queued {
                Ok(Ok(seq)) if pendant => {
                    pendant_seqs.insert(seq);
                }
                Ok(Ok(_)) => {}
                Ok(Err(e)) => panic!("receiver stopped: {e}"),
                Err(_) => break,
            }
        }
        eprintln!("serial: last frame queued at {}", since(deadline));
        pendant_seqs
    })
}

/// A firmware-sim fleet of `devices` units through one broker: the first `pendants` units
/// are pendant units. Registers them all.
fn fleet(w: &Wardend, port: u16, prefix: &str, devices: usize, pendants: usize) -> Fleet {
    let fleet = Fleet::new(FleetConfig {
        port,
        devices,
        id_prefix: prefix.into(),
        connections: 4,
        heartbeat_interval: Duration::from_hours(1),
        inflight: 200,
        reconnect_delay: Duration::from_millis(300),
        drain_timeout: Duration::from_secs(20),
        ..FleetConfig::default()
    })
    .expect("fleet config");
    for (i, id) in fleet.handle().device_ids().iter().enumerate() {
        add_device(w, id, "mqtt", i < pendants);
    }
    fleet
}

/// Schedules `messages` alarms across the fleet, `rate_per_s` a second: `test` alarms from
/// the bulk units and, every [`PENDANT_EVERY`], a pendant press from the next pendant unit.
fn send_fleet(
    fh: FleetHandle,
    messages: usize,
    pendants: usize,
    rate_per_s: f64,
    deadline: Instant,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let ids = fh.device_ids();
        let bulk = &ids[pendants..];
        let start = tokio::time::Instant::now();
        for n in 0..messages {
            if Instant::now() >= deadline {
                break;
            }
            #[allow(clippy::cast_precision_loss)]
            let due = start + Duration::from_secs_f64(n as f64 / rate_per_s);
            tokio::time::sleep_until(due).await;
            let (id, kind) = if n % PENDANT_EVERY == 0 {
                (&ids[n / PENDANT_EVERY % pendants], AlarmKind::Pendant)
            } else {
                (&bulk[n % bulk.len()], AlarmKind::Test)
            };
            fh.alarm(id, kind).await.expect("fleet running");
        }
        eprintln!("mqtt: last fleet message scheduled at {}", since(deadline));
    })
}

/// `mosquitto_pub` units `{prefix}{i:03}`, each sending `lines` messages on its own topic
/// (heartbeats, and every [`PENDANT_EVERY`]th a pendant press), registered as pendant units.
fn send_mosquitto_pub(
    w: &Wardend,
    port: u16,
    prefix: &str,
    units: usize,
    lines: usize,
    rate_per_unit: f64,
    deadline: Instant,
) -> Vec<std::thread::JoinHandle<PubReport>> {
    let units: Vec<String> = (0..units).map(|u| format!("{prefix}{u:03}")).collect();
    for unit in &units {
        add_device(w, unit, "mqtt", true);
    }
    units
        .into_iter()
        .map(|unit| {
            let payloads = (0..lines)
                .map(|n| {
                    let body = if n % PENDANT_EVERY == PENDANT_EVERY / 3 {
                        r#""alarm":{"kind":"pendant"}"#
                    } else {
                        r#""heartbeat":{"interval_s":60}"#
                    };
                    format!(r#"{{"v":1,"msg_id":"{unit}-{n}",{body}}}"#)
                })
                .collect();
            mosquitto_pub(
                port,
                &format!("warden/v1/devices/{unit}/up"),
                payloads,
                rate_per_unit,
                deadline,
            )
        })
        .collect()
}

// ---------------------------------------------------------------------------------------
// Counting

/// What one path's senders saw acknowledged, against what Postgres holds.
#[derive(Debug, Default)]
struct Tally {
    sent: usize,
    acked: usize,
    stored: usize,
    missing: Vec<String>,
    duplicates: usize,
    /// Frames stored more often than they were transmitted (must never happen).
    invented: Vec<String>,
    /// Keys (raw frame text or MQTT dedupe key) of acknowledged pendant presses.
    pendants: Vec<String>,
}

impl Tally {
    fn add(&mut self, other: Self) {
        self.sent += other.sent;
        self.acked += other.acked;
        self.stored += other.stored;
        self.missing.extend(other.missing);
        self.duplicates += other.duplicates;
        self.invented.extend(other.invented);
        self.pendants.extend(other.pendants);
    }
}

fn frame_text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).replace('\u{14}', "")
}

/// Serial: every ACKed event frame against the stored serial events.
fn count_serial(db: &impl Sql, report: &ReceiverReport, pendant_seqs: &HashSet<u64>) -> Tally {
    let mut stored: HashMap<String, usize> = HashMap::new();
    for line in db
        .sql(
            "SELECT replace(convert_from(raw, 'UTF8'), chr(20), '') FROM signals \
             WHERE source = 'serial' AND kind = 'event'",
        )
        .lines()
    {
        *stored.entry(line.to_owned()).or_default() += 1;
    }
    let mut t = Tally {
        sent: usize::try_from(report.stats.queued).unwrap_or(usize::MAX),
        ..Tally::default()
    };
    for f in report.acked.iter().filter(|f| f.kind == FrameKind::Event) {
        t.acked += 1;
        let text = frame_text(&f.bytes);
        let n = stored.get(&text).copied().unwrap_or(0);
        if n == 0 {
            t.missing.push(text.clone());
        } else {
            t.stored += 1;
            t.duplicates += n - 1;
        }
        if n > usize::try_from(f.transmissions).unwrap_or(usize::MAX) {
            t.invented
                .push(format!("{text} stored {n} times, sent {}", f.transmissions));
        }
        if pendant_seqs.contains(&f.seq) {
            t.pendants.push(text);
        }
    }
    t
}

/// MQTT: every PUBACKed `(device, msg_id)` against the stored dedupe keys.
fn count_mqtt(
    db: &impl Sql,
    sent: usize,
    acked: &[(String, String)],
    pendants: &HashSet<(String, String)>,
) -> Tally {
    let mut stored: HashMap<String, usize> = HashMap::new();
    for line in db
        .sql("SELECT dedupe_key FROM signals WHERE source = 'mqtt' AND dedupe_key IS NOT NULL")
        .lines()
    {
        *stored.entry(line.to_owned()).or_default() += 1;
    }
    let mut t = Tally {
        sent,
        ..Tally::default()
    };
    let distinct: HashSet<&(String, String)> = acked.iter().collect();
    for id @ (device, msg) in distinct {
        t.acked += 1;
        let key = format!("mqtt:{device}:{msg}");
        match stored.get(&key).copied().unwrap_or(0) {
            0 => t.missing.push(key.clone()),
            n => {
                t.stored += 1;
                t.duplicates += n - 1;
            }
        }
        if pendants.contains(id) {
            t.pendants.push(key);
        }
    }
    t
}

/// An MQTT sender's figures: messages sent, `(device, msg_id)` of those PUBACKed, and of
/// the PUBACKed pendant presses.
type Figures = (usize, Vec<(String, String)>, HashSet<(String, String)>);

/// Fleet messages as [`Figures`].
fn fleet_figures(r: &FleetReport) -> Figures {
    let pendants = r
        .messages
        .iter()
        .filter(|m| m.kind == "pendant" && m.pubacked_at.is_some())
        .map(|m| (m.device.to_string(), m.msg_id.to_string()))
        .collect();
    (
        usize::try_from(r.published).unwrap_or(usize::MAX),
        r.pubacked_ids(),
        pendants,
    )
}

/// `mosquitto_pub` units' messages as [`Figures`].
fn pub_figures(reports: &[PubReport]) -> Figures {
    let mut sent = 0;
    let mut acked = Vec::new();
    let mut pendants = HashSet::new();
    for r in reports {
        let device = r
            .topic
            .split('/')
            .nth(3)
            .expect("warden/v1/devices/{id}/up")
            .to_owned();
        sent += r.payloads.len();
        for (p, _) in r.payloads.iter().zip(&r.acked).filter(|(_, a)| **a) {
            let msg = p
                .split_once(r#""msg_id":""#)
                .and_then(|(_, rest)| rest.split_once('"'))
                .map(|(m, _)| m.to_owned())
                .expect("msg_id");
            if p.contains("pendant") {
                pendants.insert((device.clone(), msg.clone()));
            }
            acked.push((device.clone(), msg));
        }
    }
    (sent, acked, pendants)
}

/// Waits (up to `within`) until every MQTT message the senders saw PUBACKed is stored:
/// the broker may still hold some for Warden's session.
fn wait_mqtt_stored(db: &impl Sql, acked: &[(String, String)], deadline: Instant) {
    let want = i64::try_from(acked.iter().collect::<HashSet<_>>().len()).unwrap_or(i64::MAX);
    let all = wait_until(STORE_WAIT, || {
        db.count("SELECT count(*) FROM signals WHERE source = 'mqtt' AND dedupe_key IS NOT NULL")
            >= want
    });
    if all {
        eprintln!("mqtt: every PUBACKed message stored at {}", since(deadline));
    }
}

/// Waits (up to `within`) until every acknowledged pendant press is triaged and its unit
/// has a life-critical incident; returns how many are.
fn pendants_triaged(db: &impl Sql, pendants: &[String], within: Duration) -> usize {
    let done = || {
        let ok: HashSet<String> = db
            .sql(
                "SELECT coalesce(s.dedupe_key, replace(convert_from(s.raw, 'UTF8'), chr(20), '')) \
                 FROM signals s JOIN devices d ON d.id = s.device_id \
                 JOIN triaged t ON t.signal_id = s.id \
                 WHERE d.label = 'pendant' AND EXISTS (SELECT 1 FROM incidents i \
                   WHERE i.device_id = s.device_id AND i.priority = 'life_critical')",
            )
            .lines()
            .map(str::to_owned)
            .collect();
        pendants.iter().filter(|p| ok.contains(*p)).count()
    };
    wait_until(within, || done() == pendants.len());
    done()
}

/// Prints the run's figures on one line and asserts the contract.
fn judge(run: &str, t: &Tally, triaged: usize, started: Instant, warden: &Wardend) {
    eprintln!(
        "{run}: sent {}, acked {}, stored {}, missing {}, duplicates {}, life-critical acked {} triaged {}, {:.1} s",
        t.sent,
        t.acked,
        t.stored,
        t.missing.len(),
        t.duplicates,
        t.pendants.len(),
        triaged,
        started.elapsed().as_secs_f64()
    );
    let tail = |s: String| {
        let lines: Vec<&str> = s.lines().collect();
        lines[lines.len().saturating_sub(40)..].join("\n")
    };
    assert!(t.sent >= 10_000, "{run}: only {} signals were sent", t.sent);
    if !t.missing.is_empty() {
        // Keep the whole daemon log and the list of missing signals for the bug report.
        let base = std::env::temp_dir().join(format!(
            "e2e_faults-{}-{}",
            run.replace(|c: char| !c.is_ascii_alphanumeric(), "_"),
            std::process::id()
        ));
        let _ = std::fs::write(base.with_extension("wardend.log"), warden.log_text());
        let _ = std::fs::write(base.with_extension("missing.txt"), t.missing.join("\n"));
        eprintln!(
            "{run}: daemon log and missing list kept at {}.*",
            base.display()
        );
    }
    assert!(
        t.missing.is_empty(),
        "{run}: {} acknowledged signals are not stored, e.g. {:?}\n{}",
        t.missing.len(),
        &t.missing[..t.missing.len().min(5)],
        tail(warden.log_text())
    );
    assert!(
        t.invented.is_empty(),
        "{run}: frames stored more often than sent: {:?}",
        &t.invented[..t.invented.len().min(5)]
    );
    assert!(
        !t.pendants.is_empty(),
        "{run}: no pendant press was acknowledged"
    );
    assert_eq!(
        triaged,
        t.pendants.len(),
        "{run}: acknowledged pendant presses not triaged into a life-critical incident of their unit"
    );
}

/// A small deterministic generator for fault moments; the seed is printed so a failing
/// run can be repeated.
struct Dice(u64);

impl Dice {
    fn from_clock() -> Self {
        let seed = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(1, |d| {
                u64::try_from(d.as_nanos() % u128::from(u64::MAX)).unwrap_or(1)
            })
            | 1;
        eprintln!("fault seed {seed}");
        Self(seed)
    }

    /// A duration in `[lo, hi)`.
    fn between(&mut self, lo: Duration, hi: Duration) -> Duration {
        // xorshift64
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        let span = u64::try_from(hi.saturating_sub(lo).as_millis())
            .unwrap_or(1)
            .max(1);
        lo + Duration::from_millis(self.0 % span)
    }
}

/// Stops the receiver once everything queued is ACKed (or at `deadline`).
async fn finish_receiver(
    rx: &ReceiverHandle,
    receiver: warden_tests::Running<Result<ReceiverReport, warden_sim::surgard::ReceiverError>>,
    deadline: Instant,
) -> ReceiverReport {
    let left = deadline.saturating_duration_since(Instant::now());
    let _ = tokio::time::timeout(left, rx.flushed()).await;
    eprintln!("serial: last frame ACKed at {}", since(deadline));
    receiver.stop().await.expect("receiver report")
}

/// Seconds since a run started, given its deadline (every run sets it `RUN_BUDGET` later).
fn since(deadline: Instant) -> String {
    let started = deadline.checked_sub(RUN_BUDGET).unwrap_or(deadline);
    format!("{:.1}s", started.elapsed().as_secs_f64())
}

/// Stops the fleet once every message is PUBACKed (or at `deadline`).
async fn finish_fleet(
    fh: &FleetHandle,
    fleet: warden_tests::Running<FleetReport>,
    deadline: Instant,
) -> FleetReport {
    while fh.unacked() > 0 && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    eprintln!("mqtt: last message PUBACKed at {}", since(deadline));
    fleet.stop().await
}

fn join_pubs(handles: Vec<std::thread::JoinHandle<PubReport>>) -> Vec<PubReport> {
    handles
        .into_iter()
        .map(|h| h.join().expect("mosquitto_pub thread"))
        .collect()
}

// ---------------------------------------------------------------------------------------
// The runs

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_acknowledged_signal_is_lost_when_wardend_is_killed_five_times_mid_stream() {
    let _turn = ONE_AT_A_TIME.lock().await;
    let started = Instant::now();
    let deadline = started + RUN_BUDGET;
    let mut dice = Dice::from_clock();
    let db = TestDb::create("e2e_faults_kill");
    let broker =
        Mosquitto::start_persistent("max_queued_messages 1000000\nmax_inflight_messages 1000");
    let pty = PtyPair::start();
    let mut warden = Wardend::start(&config(
        &db.url,
        Some(broker.port),
        Some(&pty),
        "warden-kill",
    ));
    register_serial(&warden, 20);
    let fleet = fleet(&warden, broker.port, "k-", 60, 30);
    warden.wait_mqtt_up(broker.port);
    let (fh, fleet) = start_fleet(fleet).await;
    let (rx, receiver) = start_receiver_replug(&pty, receiver_config());
    let serial = send_serial(rx.clone(), 2_000, 20, deadline);
    let mqtt = send_fleet(fh.clone(), 8_500, 30, 600.0, deadline);

    // Five crashes at pseudo-random moments while both senders keep sending.
    let mut kills = Vec::new();
    for _ in 0..5 {
        tokio::time::sleep(dice.between(Duration::from_millis(700), Duration::from_millis(2500)))
            .await;
        let down = dice.between(Duration::ZERO, Duration::from_millis(400));
        let at = started.elapsed();
        tokio::task::block_in_place(|| {
            warden.kill9();
            std::thread::sleep(down);
            warden.restart();
        });
        kills.push(format!("{:.1}s+{}ms", at.as_secs_f64(), down.as_millis()));
    }
    eprintln!("kill -9 at {kills:?}");
    let pendant_seqs = serial.await.expect("serial sender");
    mqtt.await.expect("mqtt sender");
    let rx_report = finish_receiver(&rx, receiver, deadline).await;
    let fleet_report = finish_fleet(&fh, fleet, deadline).await;

    let (sent, acked, pendants) = fleet_figures(&fleet_report);
    tokio::task::block_in_place(|| {
        wait_mqtt_stored(&db, &acked, deadline);
        let mut t = count_serial(&db, &rx_report, &pendant_seqs);
        t.add(count_mqtt(&db, sent, &acked, &pendants));
        let triaged = pendants_triaged(&db, &t.pendants, STORE_WAIT);
        judge("kill -9 x5", &t, triaged, started, &warden);
        assert!(
            rx_report.all_acknowledged(),
            "the receiver got every frame ACKed in the end: {:?}",
            rx_report.stats
        );
    });
    assert_eq!(warden.terminate(), Some(0), "{}", warden.log_text());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_pubacked_message_is_stored_once_across_a_mosquitto_restart_mid_burst() {
    let _turn = ONE_AT_A_TIME.lock().await;
    let started = Instant::now();
    let deadline = started + RUN_BUDGET;
    let db = TestDb::create("e2e_faults_broker");
    let mut broker =
        Mosquitto::start_persistent("max_queued_messages 1000000\nmax_inflight_messages 1000");
    let warden = Wardend::start(&config(&db.url, Some(broker.port), None, "warden-broker"));
    warden.wait_mqtt_up(broker.port);

    // 20 independent publishers (mosquitto_pub), 500 messages each, about 5 000 a second
    // together: the broker restarts 0.8 s into the 2 s burst, with every publisher
    // mid-stream and messages queued for Warden's session.
    let pubs = send_mosquitto_pub(&warden, broker.port, "bp-", 20, 500, 250.0, deadline);
    tokio::time::sleep(Duration::from_millis(800)).await;
    let before = db.count("SELECT count(*) FROM signals WHERE source = 'mqtt'");
    let stop_at = since(deadline);
    tokio::task::block_in_place(|| broker.restart(Duration::from_millis(500)));
    eprintln!(
        "mosquitto stopped at {stop_at} with {before} messages stored, back at {}",
        since(deadline)
    );
    let reports = tokio::task::block_in_place(|| join_pubs(pubs));
    let (sent, acked, pendants) = pub_figures(&reports);
    let processes: u32 = reports.iter().map(|r| r.processes).sum();

    tokio::task::block_in_place(|| {
        wait_mqtt_stored(&db, &acked, deadline);
        let t = count_mqtt(&db, sent, &acked, &pendants);
        let triaged = pendants_triaged(&db, &t.pendants, STORE_WAIT);
        eprintln!("mosquitto_pub processes: {processes} for 20 units");
        judge("mosquitto restart", &t, triaged, started, &warden);
        assert_eq!(t.duplicates, 0, "no MQTT message is stored twice");
        assert_eq!(t.acked, sent, "every message was PUBACKed in the end");
        assert!(
            processes >= 40,
            "the restart reached every publisher (each needed a second process)"
        );
        assert!(
            warden.log_plain().contains("session_present=true"),
            "the broker kept Warden's session across its restart (else messages published before \
             Warden subscribed again were routed to nobody)"
        );
    });
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_acked_frame_is_stored_when_the_serial_cable_is_pulled_and_plugged_back() {
    let _turn = ONE_AT_A_TIME.lock().await;
    let started = Instant::now();
    let deadline = started + RUN_BUDGET;
    let db = TestDb::create("e2e_faults_serial");
    let broker = Mosquitto::start("max_queued_messages 1000000\nmax_inflight_messages 1000");
    let mut pty = PtyPair::start();
    let warden = Wardend::start(&config(
        &db.url,
        Some(broker.port),
        Some(&pty),
        "warden-serial",
    ));
    register_serial(&warden, 20);
    warden.wait_mqtt_up(broker.port);
    let (rx, receiver) = start_receiver_replug(&pty, receiver_config());
    let serial = send_serial(rx.clone(), 1_500, 20, deadline);
    // Background traffic from independent MQTT publishers while the cable is out.
    let pubs = send_mosquitto_pub(&warden, broker.port, "sp-", 10, 900, 60.0, deadline);

    // Pull the cable twice, after 400 and 900 frames got through, for 2 s each time.
    for through in [400, 900] {
        while rx.stats().acked < through && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        pty.unplug();
        tokio::time::sleep(Duration::from_secs(2)).await;
        pty.replug();
        eprintln!("serial cable out and back at {}", since(deadline));
    }
    let pendant_seqs = serial.await.expect("serial sender");
    let rx_report = finish_receiver(&rx, receiver, deadline).await;
    let reports = tokio::task::block_in_place(|| join_pubs(pubs));
    let (sent, acked, pendants) = pub_figures(&reports);

    tokio::task::block_in_place(|| {
        wait_mqtt_stored(&db, &acked, deadline);
        let mut t = count_serial(&db, &rx_report, &pendant_seqs);
        t.add(count_mqtt(&db, sent, &acked, &pendants));
        let triaged = pendants_triaged(&db, &t.pendants, STORE_WAIT);
        judge("serial unplug x2", &t, triaged, started, &warden);
        assert!(
            rx_report.all_acknowledged(),
            "the receiver resent what was not ACKed and got it ACKed: {:?}",
            rx_report.stats
        );
        assert!(
            rx_report.stats.resent > 0,
            "the receiver had to resend while the cable was out"
        );
        let rows = |kind: &str| {
            db.count(&format!(
                "SELECT count(*) FROM signals WHERE kind = '{kind}' AND link_id = '{SERIAL_LINK}'"
            ))
        };
        let (lost, restored) = (rows("link_lost"), rows("link_restored"));
        eprintln!("serial link_lost rows {lost}, link_restored rows {restored}");
        assert!(lost >= 2, "each pull is recorded as link lost ({lost})");
        assert!(
            restored >= 2,
            "each return is recorded as link restored ({restored})"
        );
        assert_eq!(
            db.sql(&format!("SELECT up FROM links WHERE id = '{SERIAL_LINK}'")),
            "t",
            "the links table shows the serial link up again"
        );
    });
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn everything_acknowledged_is_stored_when_postgres_stops_and_starts_mid_stream() {
    let _turn = ONE_AT_A_TIME.lock().await;
    let started = Instant::now();
    let deadline = started + RUN_BUDGET;
    let pg = tokio::task::block_in_place(PrivatePg::start);
    let broker = Mosquitto::start("max_queued_messages 1000000\nmax_inflight_messages 1000");
    let pty = PtyPair::start();
    let warden = Wardend::start(&config(&pg.url, Some(broker.port), Some(&pty), "warden-pg"));
    register_serial(&warden, 20);
    let fleet = fleet(&warden, broker.port, "p-", 60, 30);
    warden.wait_mqtt_up(broker.port);
    let (fh, fleet) = start_fleet(fleet).await;
    let (rx, receiver) = start_receiver_replug(&pty, receiver_config());
    let serial = send_serial(rx.clone(), 2_000, 20, deadline);
    let mqtt = send_fleet(fh.clone(), 8_500, 30, 600.0, deadline);

    // Postgres goes away for 3 s once 300 serial frames got through (fast stop: open
    // transactions abort, every connection closes), then comes back.
    while rx.stats().acked < 300 && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    tokio::task::block_in_place(|| {
        pg.stop_server();
        eprintln!("postgres stopped at {}", since(deadline));
        std::thread::sleep(Duration::from_secs(3));
        pg.start_server();
    });
    let pendant_seqs = serial.await.expect("serial sender");
    mqtt.await.expect("mqtt sender");
    let rx_report = finish_receiver(&rx, receiver, deadline).await;
    let fleet_report = finish_fleet(&fh, fleet, deadline).await;

    let (sent, acked, pendants) = fleet_figures(&fleet_report);
    tokio::task::block_in_place(|| {
        wait_mqtt_stored(&pg, &acked, deadline);
        let mut t = count_serial(&pg, &rx_report, &pendant_seqs);
        t.add(count_mqtt(&pg, sent, &acked, &pendants));
        let triaged = pendants_triaged(&pg, &t.pendants, STORE_WAIT);
        judge("postgres stop/start", &t, triaged, started, &warden);
        assert!(
            rx_report.all_acknowledged(),
            "the receiver got every frame ACKed in the end: {:?}",
            rx_report.stats
        );
        assert!(
            warden.metric("warden_spool_appended_total") > 0.0,
            "the outage was ridden out on the local spool"
        );
        eprintln!("receiver during the outage: {:?}", rx_report.stats);
    });
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn everything_acknowledged_is_stored_when_the_database_stalls_beyond_the_ack_window() {
    let _turn = ONE_AT_A_TIME.lock().await;
    let started = Instant::now();
    let deadline = started + RUN_BUDGET;
    let pg = tokio::task::block_in_place(PrivatePg::start);
    let broker = Mosquitto::start("max_queued_messages 1000000\nmax_inflight_messages 1000");
    let pty = PtyPair::start();
    let warden = Wardend::start(&config(
        &pg.url,
        Some(broker.port),
        Some(&pty),
        "warden-stall",
    ));
    register_serial(&warden, 20);
    let fleet = fleet(&warden, broker.port, "s-", 60, 30);
    warden.wait_mqtt_up(broker.port);
    let (fh, fleet) = start_fleet(fleet).await;
    let (rx, receiver) = start_receiver_replug(&pty, receiver_config());
    let serial = send_serial(rx.clone(), 2_000, 20, deadline);
    let mqtt = send_fleet(fh.clone(), 8_500, 30, 600.0, deadline);

    // Once 300 serial frames got through, another session holds `signals` for 6 s: every
    // commit waits (nothing fails), longer than the receiver's 4 s ACK window.
    while rx.stats().acked < 300 && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let url = pg.url.clone();
    let stall = std::thread::spawn(move || {
        std::process::Command::new("psql")
            .args([
                url.as_str(),
                "-v",
                "ON_ERROR_STOP=1",
                "-c",
                "BEGIN; LOCK TABLE signals IN EXCLUSIVE MODE; SELECT pg_sleep(6); COMMIT;",
            ])
            .output()
            .expect("psql")
    });
    eprintln!("database stalled at {}", since(deadline));
    let pendant_seqs = serial.await.expect("serial sender");
    mqtt.await.expect("mqtt sender");
    let held = tokio::task::block_in_place(|| stall.join().expect("stall thread"));
    assert!(
        held.status.success(),
        "the lock was held: {}",
        String::from_utf8_lossy(&held.stderr)
    );
    let rx_report = finish_receiver(&rx, receiver, deadline).await;
    let fleet_report = finish_fleet(&fh, fleet, deadline).await;

    let (sent, acked, pendants) = fleet_figures(&fleet_report);
    tokio::task::block_in_place(|| {
        wait_mqtt_stored(&pg, &acked, deadline);
        let mut t = count_serial(&pg, &rx_report, &pendant_seqs);
        t.add(count_mqtt(&pg, sent, &acked, &pendants));
        let triaged = pendants_triaged(&pg, &t.pendants, STORE_WAIT);
        judge("database stall", &t, triaged, started, &warden);
        assert!(
            rx_report.all_acknowledged(),
            "the receiver got every frame ACKed in the end: {:?}",
            rx_report.stats
        );
        assert!(
            warden.metric("warden_spool_appended_total") > 0.0,
            "a commit slower than spool.after was spooled instead of leaving frames unanswered: {:?}",
            rx_report.stats
        );
        assert_eq!(
            rx_report.stats.naked, 0,
            "a slow database is not a corrupt frame: no NAK"
        );
    });
}

/// Issue 12: Postgres stops for good while serial and MQTT load runs; the daemon acknowledges
/// from the local spool (and says so on `/readyz`), is killed with SIGKILL during the outage,
/// comes back with Postgres and is killed again while it drains. Every signal acknowledged
/// by either life is in Postgres exactly once and every pendant among them is an incident.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_postgres_outage_is_ridden_out_on_the_spool_through_kills_in_the_outage_and_the_drain() {
    let _turn = ONE_AT_A_TIME.lock().await;
    let started = Instant::now();
    let deadline = started + RUN_BUDGET;
    let pg = tokio::task::block_in_place(PrivatePg::start);
    let broker =
        Mosquitto::start_persistent("max_queued_messages 1000000\nmax_inflight_messages 1000");
    let pty = PtyPair::start();
    let mut warden = Wardend::start(&config(
        &pg.url,
        Some(broker.port),
        Some(&pty),
        "warden-spool",
    ));
    register_serial(&warden, 20);
    let fleet = fleet(&warden, broker.port, "o-", 60, 30);
    warden.wait_mqtt_up(broker.port);
    let (fh, fleet) = start_fleet(fleet).await;
    let (rx, receiver) = start_receiver_replug(&pty, receiver_config());
    let serial = send_serial(rx.clone(), 2_000, 20, deadline);
    let mqtt = send_fleet(fh.clone(), 8_500, 30, 600.0, deadline);

    while rx.stats().acked < 300 && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    tokio::task::block_in_place(|| pg.stop_server());
    eprintln!("postgres stopped at {}", since(deadline));
    let (at_stop, stopped) = (rx.stats(), Instant::now());
    while rx.stats().acked < at_stop.acked + 200 && stopped.elapsed() < Duration::from_secs(15) {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let during = rx.stats();
    let ready = warden_tests::http_get(warden.admin, "/readyz").unwrap_or_default();
    eprintln!(
        "while postgres was down for {:.1} s: {} frames ACKed, {} NAKed, {} unanswered; spool {} records; readyz {} {}",
        stopped.elapsed().as_secs_f64(),
        during.acked - at_stop.acked,
        during.naked - at_stop.naked,
        during.timeouts - at_stop.timeouts,
        warden.metric("warden_spool_records"),
        ready.0,
        ready.1.trim()
    );
    assert!(
        during.acked >= at_stop.acked + 200,
        "serial frames are acknowledged from the spool while postgres is down: {during:?}"
    );
    assert_eq!(during.naked, at_stop.naked, "no NAK while degraded");
    assert_eq!(ready.0, 503, "readyz fails while degraded");
    assert!(
        ready.1.contains("degraded: database unavailable since"),
        "{}",
        ready.1
    );
    assert!(warden.metric("warden_degraded") >= 1.0);

    // SIGKILL in the outage; the spool is all that holds what was acknowledged since. The
    // daemon restarts with Postgres still down and acknowledges from the spool again.
    tokio::task::block_in_place(|| {
        warden.kill9();
        warden.restart();
    });
    let (at_restart, restarted) = (rx.stats(), Instant::now());
    while rx.stats().acked < at_restart.acked + 100 && restarted.elapsed() < Duration::from_secs(15)
    {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let standby = rx.stats();
    let ready = warden_tests::http_get(warden.admin, "/readyz").unwrap_or_default();
    eprintln!(
        "restarted while postgres is down: {} frames ACKed in {:.1} s; readyz {} {}",
        standby.acked - at_restart.acked,
        restarted.elapsed().as_secs_f64(),
        ready.0,
        ready.1.trim()
    );
    assert!(
        standby.acked >= at_restart.acked + 100,
        "a daemon started during the outage acknowledges from the spool: {standby:?}"
    );
    assert!(ready.1.contains("degraded"), "{}", ready.1);
    tokio::task::block_in_place(|| {
        pg.start_server();
        eprintln!("postgres started at {}", since(deadline));
        // Killed again while it leaves the standby and drains the spool.
        std::thread::sleep(Duration::from_millis(1500));
        warden.kill9();
        warden.restart();
    });
    let pendant_seqs = serial.await.expect("serial sender");
    mqtt.await.expect("mqtt sender");
    let rx_report = finish_receiver(&rx, receiver, deadline).await;
    let fleet_report = finish_fleet(&fh, fleet, deadline).await;

    let (sent, acked, pendants) = fleet_figures(&fleet_report);
    tokio::task::block_in_place(|| {
        wait_mqtt_stored(&pg, &acked, deadline);
        let mut t = count_serial(&pg, &rx_report, &pendant_seqs);
        t.add(count_mqtt(&pg, sent, &acked, &pendants));
        let triaged = pendants_triaged(&pg, &t.pendants, STORE_WAIT);
        judge(
            "postgres outage on the spool",
            &t,
            triaged,
            started,
            &warden,
        );
        assert!(
            rx_report.all_acknowledged(),
            "the receiver got every frame ACKed in the end: {:?}",
            rx_report.stats
        );
        assert_eq!(
            pg.query(
                "SELECT count(*) FROM (SELECT id FROM signals GROUP BY id HAVING count(*) > 1) d"
            ),
            "0"
        );
    });
    assert!(warden.metric("warden_degraded") < 0.5, "direct again");
    assert_eq!(warden.terminate(), Some(0), "{}", warden.log_text());
}
