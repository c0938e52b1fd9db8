//! The rig: a fresh database, Mosquitto, a socat pty pair and `wardend run` (the test kit's
//! [`Wardend`]) with the bench's devices registered; the MQTT probe that proves the
//! subscription is live; and the bounded waits every phase uses.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use tokio::runtime::Runtime;
use tokio::sync::oneshot;
use tokio::time::Instant;
use warden_sim::fleet::{Fleet, FleetConfig, FleetHandle};
use warden_tests::{Mosquitto, PtyPair, TestDb, Wardend, wait_until};

use crate::Plan;
use crate::metrics::scrape;

/// Fleet unit ids are `ld-00001`...; registered by one SQL statement (5 digits, so at most
/// 99,999 units).
pub const UNIT_PREFIX: &str = "ld-";

/// The unit that proves the MQTT subscription is live before any measured traffic.
pub const PROBE_UNIT: &str = "probe-00001";

/// Contact ID accounts the serial receiver reports for (4 hex digits, Sur-Gard protocol 5).
pub const SERIAL_ACCOUNTS: [&str; 10] = [
    "3001", "3002", "3003", "3004", "3005", "3006", "3007", "3008", "3009", "3010",
];

/// A daemon whose stored count has not moved for this long while signals are owed is
/// reported as stalled.
pub const STALL: Duration = Duration::from_secs(20);

/// The real parts, dropped in field order: the daemon first, the database last.
pub struct Rig {
    pub warden: Wardend,
    _pty: PtyPair,
    pub broker: Mosquitto,
    pub db: Arc<TestDb>,
    pub receiver_path: PathBuf,
}

impl Rig {
    pub fn start(plan: &Plan, binary: &Path) -> Self {
        let db = Arc::new(TestDb::create("ingest_load"));
        // Warden's session may hold a whole phase B backlog: Mosquitto's default queue (1,000)
        // would drop the rest, PUBACKed to the fleet and never delivered.
        let broker = Mosquitto::start("max_inflight_messages 1000\nmax_queued_messages 1000000");
        let pty = PtyPair::start();
        let config = format!(
            r#"
[database]
url = "{url}"
[mqtt]
port = {port}
client_id = "warden-load"
[[serial]]
name = "rx1"
path = "{path}"
heartbeat_window = "10m"
"#,
            url = db.url,
            port = broker.port,
            path = pty.warden.display()
        );
        let warden = Wardend::start_binary(binary, &config);
        // The daemon has migrated the schema by now. Its device cache asks the database on a
        // miss, so units registered now are accepted.
        for account in SERIAL_ACCOUNTS {
            warden.add_device(account, "contact_id", &["--test-interval", "24h"]);
        }
        assert!(plan.devices <= 99_999, "unit ids have five digits");
        db.query(&format!(
            "INSERT INTO devices (account, protocol, label) \
             SELECT '{UNIT_PREFIX}' || lpad(g::text, 5, '0'), 'mqtt', 'load test unit' \
             FROM generate_series(1, {}) AS g; \
             INSERT INTO devices (account, protocol, label) \
             VALUES ('{PROBE_UNIT}', 'mqtt', 'probe')",
            plan.devices
        ));
        let receiver_path = pty.receiver.clone();
        Self {
            warden,
            _pty: pty,
            broker,
            db,
            receiver_path,
        }
    }

    /// The daemon's process id, for its CPU time.
    pub fn daemon_pid(&self) -> u32 {
        self.warden.pid().expect("wardend is running")
    }

    pub fn admin(&self) -> SocketAddr {
        self.warden.admin
    }

    /// The daemon's log, for failure messages (the tail only).
    pub fn log_tail(&self) -> String {
        let log = self.warden.log_plain();
        let lines: Vec<&str> = log.lines().collect();
        lines[lines.len().saturating_sub(40)..].join("\n")
    }
}

/// Runs `fut` to completion on the runtime, failing the run when it takes longer than
/// `limit` (which tears everything down).
pub fn within<F: std::future::Future>(
    rt: &Runtime,
    limit: Duration,
    what: &str,
    fut: F,
) -> F::Output {
    rt.block_on(tokio::time::timeout(limit, fut))
        .unwrap_or_else(|_| panic!("{what}: not done after {limit:?}"))
}

/// Polls `f` every `every` until it holds or `timeout` passes; returns whether it held.
pub fn poll(timeout: Duration, every: Duration, mut f: impl FnMut() -> bool) -> bool {
    let deadline = std::time::Instant::now() + timeout;
    loop {
        if f() {
            return true;
        }
        if std::time::Instant::now() >= deadline {
            return false;
        }
        std::thread::sleep(every);
    }
}

pub fn sleep_until(t: Instant) {
    let now = Instant::now();
    if t > now {
        std::thread::sleep(t - now);
    }
}

/// Proves the daemon's MQTT subscription is live: publishes a valid heartbeat from a probe
/// unit until one is stored (a message published before the daemon's SUBSCRIBE took effect
/// would be lost, which would be the harness's fault, not the daemon's).
pub fn probe_mqtt(rt: &Runtime, rig: &Rig) {
    let probe = Fleet::new(FleetConfig {
        port: rig.broker.port,
        devices: 1,
        id_prefix: "probe-".into(),
        connections: 1,
        heartbeat_interval: Duration::from_hours(24),
        drain_timeout: Duration::from_secs(2),
        ..FleetConfig::default()
    })
    .expect("probe fleet");
    let handle = probe.handle();
    let (stop, stopped) = oneshot::channel::<()>();
    let task = rt.spawn(probe.run(async move {
        let _ = stopped.await;
    }));
    within(
        rt,
        Duration::from_secs(20),
        "probe connecting to mosquitto",
        handle.wait_connected(),
    );
    let live = (0..50).any(|i| {
        let payload = format!(r#"{{"v":1,"msg_id":"probe-{i}","heartbeat":{{}}}}"#);
        within(
            rt,
            Duration::from_secs(5),
            "probe publish",
            handle.publish_raw(PROBE_UNIT, payload.into_bytes()),
        )
        .expect("probe publish");
        wait_until(Duration::from_millis(300), || {
            rig.db.count(&format!(
                "SELECT count(*) FROM signals WHERE account = '{PROBE_UNIT}'"
            )) > 0
        })
    });
    let _ = stop.send(());
    let _ = within(rt, Duration::from_secs(10), "probe stopping", task);
    assert!(
        live,
        "no probe message reached the database; log:\n{}",
        rig.log_tail()
    );
}

/// MQTT rows from the fleet that carry a dedupe key (all of them; the probe excluded).
pub fn mqtt_stored(db: &TestDb) -> i64 {
    db.count(&format!(
        "SELECT count(*) FROM signals WHERE source = 'mqtt' AND account LIKE '{UNIT_PREFIX}%' \
         AND dedupe_key IS NOT NULL"
    ))
}

/// MQTT alarm rows from the fleet.
pub fn mqtt_events(db: &TestDb) -> i64 {
    db.count(&format!(
        "SELECT count(*) FROM signals WHERE source = 'mqtt' AND kind = 'event' \
         AND account LIKE '{UNIT_PREFIX}%'"
    ))
}

/// Waits until the broker has PUBACKed everything the fleet published and the daemon has
/// stored at least as many fleet messages.
pub fn drain_mqtt(rig: &Rig, fh: &FleetHandle, timeout: Duration, what: &str) {
    let acked = poll(timeout, Duration::from_millis(50), || fh.unacked() == 0);
    assert!(
        acked,
        "{what}: mosquitto has not PUBACKed {} fleet messages after {timeout:?}",
        fh.unacked()
    );
    let expected = i64::try_from(fh.report().pubacked).expect("count fits i64");
    wait_stored(
        rig,
        &format!("{what}: PUBACKed fleet messages stored"),
        expected,
        timeout,
        Duration::from_millis(100),
        || mqtt_stored(&rig.db),
    );
}

/// Waits until `count()` reaches `target`, polling every `every`. Fails after `timeout`, or
/// sooner when the count has not moved for [`STALL`]: a daemon that stopped storing is
/// reported with its own counters rather than waited on for minutes.
pub fn wait_stored(
    rig: &Rig,
    what: &str,
    target: i64,
    timeout: Duration,
    every: Duration,
    count: impl Fn() -> i64,
) {
    let start = std::time::Instant::now();
    let mut last = count();
    let mut moved = start;
    while last < target {
        std::thread::sleep(every);
        let n = count();
        if n != last {
            last = n;
            moved = std::time::Instant::now();
        }
        let stalled = moved.elapsed() >= STALL;
        if last < target && (stalled || start.elapsed() >= timeout) {
            let metrics = scrape(rig.admin());
            let counters: Vec<String> = [
                "warden_signals_received_total",
                "warden_signals_acked_total",
                "warden_writer_queue_records",
                "warden_db_batch_records_sum",
            ]
            .iter()
            .flat_map(|name| {
                metrics
                    .0
                    .lines()
                    .filter(move |l| l.starts_with(name))
                    .map(str::to_owned)
            })
            .collect();
            panic!(
                "{what}: {last} of {target} after {:.0?}{}.\ndaemon counters:\n  {}\nlog tail:\n{}",
                start.elapsed(),
                if stalled {
                    format!(" (no progress for {STALL:?})")
                } else {
                    String::new()
                },
                counters.join("\n  "),
                rig.log_tail()
            );
        }
    }
}
