//! Figures from what the run left behind: the rows (Postgres computes the percentiles), two
//! `/metrics` scrapes and the senders' own reports; the check that nothing acknowledged was
//! lost; and phase C, the same rows through `raw_copy`.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::time::Duration;

use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;
use tokio::runtime::Runtime;
use tokio::time::Instant;
use uuid::Uuid;
use warden_sim::LatencySummary;
use warden_sim::fleet::{FleetHandle, FleetReport};
use warden_sim::surgard::{FrameKind, ReceiverHandle, ReceiverReport};
use warden_store::{NewSignal, Store};
use warden_tests::TestDb;

use crate::copy::{SIGNAL_JSON, signal_from_json};
use crate::metrics::Interval;
use crate::report::{Checks, CopyFigures, MaxFigures, RowLatency, SteadyFigures};
use crate::rig::{Rig, UNIT_PREFIX, mqtt_stored, wait_stored, within};

#[allow(clippy::too_many_arguments, clippy::cast_precision_loss)]
pub fn steady_figures(
    db: &TestDb,
    (wall0, wall1): (OffsetDateTime, OffsetDateTime),
    (inst0, inst1): (Instant, Instant),
    secs: f64,
    metrics: &Interval,
    rx: &ReceiverHandle,
    fh: &FleetHandle,
    cpu: BTreeMap<String, f64>,
) -> SteadyFigures {
    let mut f = SteadyFigures {
        window_s: secs,
        cpu,
        ..SteadyFigures::default()
    };
    f.rows = row_latencies(db, wall0, wall1);
    for (source, r) in &f.rows {
        f.persisted_by_source
            .insert(source.clone(), r.rows as f64 / secs);
    }
    f.persisted_per_s = f.persisted_by_source.values().sum();
    for source in ["mqtt", "serial"] {
        let h = metrics.histogram("warden_ack_latency_seconds", Some(("source", source)));
        f.metrics_ack.insert(
            source.to_owned(),
            (
                h.quantile(0.5).unwrap_or(f64::NAN) * 1000.0,
                h.quantile(0.99).unwrap_or(f64::NAN) * 1000.0,
                h.total(),
            ),
        );
    }
    let frames: Vec<Duration> = rx
        .acked_frames()
        .iter()
        .filter(|a| a.kind == FrameKind::Event && a.sent_at >= inst0 && a.sent_at < inst1)
        .map(warden_sim::surgard::AckedFrame::ack_latency)
        .collect();
    f.serial_frames_per_s = frames.len() as f64 / secs;
    f.serial_receiver_ack = LatencySummary::from_samples(&frames);
    let report = fh.report();
    let broker: Vec<Duration> = report
        .messages
        .iter()
        .filter(|m| m.published_at.is_some_and(|t| t >= inst0 && t < inst1))
        .filter_map(warden_sim::fleet::MessageRecord::latency)
        .collect();
    f.fleet_broker_puback = LatencySummary::from_samples(&broker);
    f
}

/// Per-source latency percentiles of the rows that arrived in `[from, to)`, computed by
/// Postgres (`percentile_cont`, µs timestamps).
pub fn row_latencies(
    db: &TestDb,
    from: OffsetDateTime,
    to: OffsetDateTime,
) -> BTreeMap<String, RowLatency> {
    let ms = |expr: &str, p: f64| {
        format!("percentile_cont({p}) WITHIN GROUP (ORDER BY extract(epoch FROM {expr}) * 1000)")
    };
    let insert = "committed_at - received_at";
    let ack = "acked_at - received_at";
    let sent = "committed_at - (decoded #>> '{frame,sent_at}')::timestamptz";
    let sql = format!(
        "SELECT source, count(*), {}, {}, max(extract(epoch FROM {insert}) * 1000), \
         count(acked_at), {}, {}, {}, {} \
         FROM signals_acked WHERE source IN ('mqtt', 'serial') \
         AND received_at >= '{}' AND received_at < '{}' GROUP BY source ORDER BY source",
        ms(insert, 0.5),
        ms(insert, 0.99),
        ms(ack, 0.5),
        ms(ack, 0.99),
        ms(sent, 0.5),
        ms(sent, 0.99),
        rfc3339(from),
        rfc3339(to),
    );
    let mut out = BTreeMap::new();
    for line in db.query(&sql).lines() {
        let cols: Vec<&str> = line.split('|').collect();
        let num = |i: usize| cols.get(i).and_then(|s| s.parse::<f64>().ok());
        let int = |i: usize| cols.get(i).and_then(|s| s.parse::<i64>().ok()).unwrap_or(0);
        out.insert(
            cols[0].to_owned(),
            RowLatency {
                rows: int(1),
                insert_p50: num(2),
                insert_p99: num(3),
                insert_max: num(4),
                acked: int(5),
                ack_p50: num(6),
                ack_p99: num(7),
                sent_p50: num(8),
                sent_p99: num(9),
            },
        );
    }
    out
}

pub fn rfc3339(t: OffsetDateTime) -> String {
    t.format(&Rfc3339).expect("RFC 3339 timestamp")
}

#[allow(clippy::cast_precision_loss)]
pub fn max_figures(
    db: &TestDb,
    wall0: OffsetDateTime,
    inst0: Instant,
    metrics: &Interval,
    fh: &FleetHandle,
    cpu: BTreeMap<String, f64>,
) -> MaxFigures {
    let line = db.query(&format!(
        "SELECT count(*), extract(epoch FROM max(committed_at) - min(committed_at)), \
         extract(epoch FROM max(committed_at) - '{t}'::timestamptz) \
         FROM signals WHERE source = 'mqtt' AND kind = 'event' \
         AND account LIKE '{UNIT_PREFIX}%' AND received_at >= '{t}'",
        t = rfc3339(wall0)
    ));
    let cols: Vec<&str> = line.split('|').collect();
    let num = |i: usize| {
        cols.get(i)
            .and_then(|s| s.parse::<f64>().ok())
            .unwrap_or(0.0)
    };
    let signals = cols.first().and_then(|s| s.parse().ok()).unwrap_or(0);
    let (span, since_start) = (num(1), num(2));
    let rate = |s: f64| if s > 0.0 { signals as f64 / s } else { 0.0 };
    let report = fh.report();
    let burst: Vec<_> = report
        .messages
        .iter()
        .filter(|m| m.queued_at >= inst0 && m.kind == "mains_fail")
        .collect();
    let first = burst.iter().filter_map(|m| m.published_at).min();
    let last = burst.iter().filter_map(|m| m.pubacked_at).max();
    let fleet_accepted_per_s = match (first, last) {
        (Some(a), Some(b)) if b > a => burst.len() as f64 / (b - a).as_secs_f64(),
        _ => 0.0,
    };
    let ack = metrics.histogram("warden_ack_latency_seconds", Some(("source", "mqtt")));
    let batch = metrics.histogram("warden_db_batch_records", None);
    let commit = metrics.histogram("warden_db_commit_seconds", None);
    MaxFigures {
        signals,
        sustained_per_s: rate(span),
        end_to_end_per_s: rate(since_start),
        fleet_accepted_per_s,
        mqtt_ack_p50_ms: ack.quantile(0.5).unwrap_or(f64::NAN) * 1000.0,
        mqtt_ack_p99_ms: ack.quantile(0.99).unwrap_or(f64::NAN) * 1000.0,
        commits: commit.total(),
        mean_batch: batch.mean(),
        batch_p99: batch.quantile(0.99).unwrap_or(f64::NAN),
        mean_commit_ms: commit.mean() * 1000.0,
        commit_p99_ms: commit.quantile(0.99).unwrap_or(f64::NAN) * 1000.0,
        cpu,
    }
}

/// Asserts that every acknowledged signal is stored: each fleet message the broker PUBACKed
/// exactly once (its dedupe key), each serial event frame the daemon ACKed (by its bytes;
/// exactly once when the receiver never had to resend), and nothing quarantined.
pub fn check_nothing_lost(
    rig: &Rig,
    fleet: &FleetReport,
    rx: &ReceiverReport,
    timeout: Duration,
) -> Checks {
    let db = &rig.db;
    assert_eq!(
        fleet.unacked, 0,
        "mosquitto never PUBACKed {} fleet messages",
        fleet.unacked
    );
    let expected: HashSet<String> = fleet
        .pubacked_ids()
        .into_iter()
        .map(|(d, m)| format!("mqtt:{d}:{m}"))
        .collect();
    let want = i64::try_from(expected.len()).expect("count fits i64");
    wait_stored(
        rig,
        "after the run: PUBACKed fleet messages stored",
        want,
        timeout,
        Duration::from_millis(100),
        || mqtt_stored(db),
    );
    let keys_sql = format!(
        "SELECT dedupe_key FROM signals WHERE source = 'mqtt' AND account LIKE '{UNIT_PREFIX}%' \
         AND dedupe_key IS NOT NULL"
    );
    let stored: Vec<String> = db.query(&keys_sql).lines().map(str::to_owned).collect();
    let distinct: HashSet<&str> = stored.iter().map(String::as_str).collect();
    let missing: Vec<&String> = expected
        .iter()
        .filter(|k| !distinct.contains(k.as_str()))
        .take(5)
        .collect();
    assert!(
        missing.is_empty(),
        "PUBACKed by the broker but not stored ({} of {}), e.g. {missing:?}; log:\n{}",
        expected
            .iter()
            .filter(|k| !distinct.contains(k.as_str()))
            .count(),
        expected.len(),
        rig.log_tail()
    );
    assert_eq!(
        stored.len(),
        distinct.len(),
        "an MQTT message is stored more than once"
    );

    assert!(
        rx.all_acknowledged(),
        "the receiver holds unacknowledged frames: {:?}",
        rx.stats
    );
    let mut acked: HashMap<String, usize> = HashMap::new();
    for f in rx.acked.iter().filter(|f| f.kind == FrameKind::Event) {
        *acked.entry(hex::encode(&f.bytes)).or_default() += 1;
    }
    let mut in_db: HashMap<String, usize> = HashMap::new();
    for raw in db
        .query("SELECT encode(raw, 'hex') FROM signals WHERE source = 'serial' AND kind = 'event'")
        .lines()
    {
        *in_db.entry(raw.to_owned()).or_default() += 1;
    }
    let exact = rx.stats.resent == 0;
    for (raw, n) in &acked {
        let got = in_db.get(raw).copied().unwrap_or(0);
        let text = hex::decode(raw).map_or_else(
            |_| raw.clone(),
            |b| String::from_utf8_lossy(&b).into_owned(),
        );
        assert!(
            got >= *n,
            "serial frame {text:?} ACKed {n} times, stored {got} times"
        );
        if exact {
            assert_eq!(got, *n, "serial frame {text:?} stored more than once");
        }
    }
    let quarantined = db.count("SELECT count(*) FROM quarantine");
    assert_eq!(
        quarantined,
        0,
        "valid signals were quarantined: {}",
        db.query("SELECT source, reason_code, reason FROM quarantine LIMIT 5")
    );
    Checks {
        mqtt_pubacked: expected.len(),
        mqtt_stored: distinct.len(),
        serial_acked: acked.values().sum(),
        serial_stored: in_db.values().sum(),
        serial_resent: rx.stats.resent,
        quarantined,
    }
}

/// Reads phase B's rows back and stores them again with `raw_copy` (new ids, no dedupe
/// keys), `runs` times; reports each run's rate.
#[allow(clippy::cast_precision_loss)]
pub fn copy_ceiling(rt: &Runtime, db: &TestDb, since: OffsetDateTime, runs: usize) -> CopyFigures {
    let sql = format!(
        "{SIGNAL_JSON} WHERE source = 'mqtt' AND kind = 'event' AND account LIKE '{UNIT_PREFIX}%' \
         AND received_at >= '{}' ORDER BY received_at) t",
        rfc3339(since)
    );
    let mut rows: Vec<NewSignal> = db.query(&sql).lines().map(signal_from_json).collect();
    let before = db.count("SELECT count(*) FROM signals");
    let limit = Duration::from_mins(2);
    let store = within(rt, limit, "connecting for COPY", Store::connect(&db.url, 2))
        .expect("connect for COPY");
    let mut runs_per_s = Vec::with_capacity(runs);
    for _ in 0..runs {
        for r in &mut rows {
            r.id = Uuid::now_v7();
        }
        let took =
            within(rt, limit, "raw COPY", warden_store::raw_copy(&store, &rows)).expect("raw COPY");
        runs_per_s.push(rows.len() as f64 / took.as_secs_f64());
    }
    within(rt, limit, "closing the COPY pool", store.pool().close());
    let copied = db.count("SELECT count(*) FROM signals") - before;
    assert_eq!(
        copied,
        i64::try_from(rows.len() * runs).expect("count fits i64"),
        "every COPY row is stored"
    );
    CopyFigures {
        rows: rows.len(),
        best_per_s: runs_per_s.iter().copied().fold(0.0, f64::max),
        runs_per_s,
        ratio: 0.0,
    }
}
