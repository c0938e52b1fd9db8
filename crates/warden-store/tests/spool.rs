//! The writer's degraded mode against a real Postgres that is stopped and started again: every
//! record is answered (spooled) while it is down, the spool survives the writer being killed,
//! and when Postgres returns every record is stored exactly once with its original times.

mod common;

use std::time::Duration;

use tokio_util::sync::CancellationToken;
use uuid::Uuid;
use warden_store::{
    Committed, NewSignal, Record, Spool, SpoolSettings, Store, WriterConfig, WriterHandle,
    WriterReport, spawn_writer_spooled,
};
use warden_tests::PrivatePg;

use common::{quarantine, signal};

fn settings(dir: &std::path::Path) -> SpoolSettings {
    SpoolSettings {
        after: Duration::from_millis(500),
        probe_every: Duration::from_millis(200),
        ..SpoolSettings::new(Spool::open(dir, 64 << 20).expect("spool opens"))
    }
}

fn start(
    store: &Store,
    dir: &std::path::Path,
) -> (
    WriterHandle,
    tokio::task::JoinHandle<WriterReport>,
    CancellationToken,
) {
    let stop = CancellationToken::new();
    let (w, task) = spawn_writer_spooled(
        store.clone(),
        WriterConfig::default(),
        Some(settings(dir)),
        stop.clone(),
    );
    (w, task, stop)
}

async fn write_all(w: &WriterHandle, records: Vec<Record>) -> Vec<Committed> {
    let mut set = tokio::task::JoinSet::new();
    for r in records {
        let w = w.clone();
        set.spawn(async move { w.write(r).await });
    }
    let mut out = Vec::new();
    while let Some(a) = set.join_next().await {
        out.push(a.expect("task").expect("answered Ok"));
    }
    out
}

fn count(pg: &PrivatePg, sql: &str) -> i64 {
    pg.query(sql).parse().expect("a count")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_outage_is_spooled_survives_a_kill_and_drains_exactly_once() {
    let pg = PrivatePg::start();
    let store = Store::connect(&pg.url, 4).await.expect("connect");
    store.migrate().await.expect("migrate");
    let dir = tempfile::tempdir().expect("temp dir");
    let (w, task, _stop) = start(&store, dir.path());

    // Up: stored directly.
    let before: Vec<Record> = (0..10)
        .map(|i| Record::Signal(signal(Some(&format!("up-{i}")))))
        .collect();
    let answers = write_all(&w, before.clone()).await;
    assert!(
        answers.iter().all(|a| matches!(a, Committed::Stored(_))),
        "{answers:?}"
    );
    assert_eq!(w.degraded().since, None);

    pg.stop_server();
    // Down: every record answered within the spool's limit, as spooled.
    let mut during: Vec<Record> = (0..120)
        .map(|i| Record::Signal(signal((i % 3 == 0).then(|| format!("down-{i}")).as_deref())))
        .collect();
    during.push(Record::Quarantine(quarantine()));
    let started = std::time::Instant::now();
    let answers = write_all(&w, during.clone()).await;
    assert!(
        answers.iter().all(|a| matches!(a, Committed::Spooled(_))),
        "{answers:?}"
    );
    // Then, once those are answered (so behind them in the spool): a redelivery of a message
    // stored before the outage, and one of a message spooled in it. Sent with the batch, a
    // redelivery could reach the spool first and be the copy that is kept.
    let Record::Signal(again) = &during[0] else {
        unreachable!()
    };
    let redeliveries = vec![
        before[3].clone(),
        Record::Signal(NewSignal {
            id: Uuid::now_v7(),
            ..again.clone()
        }),
    ];
    let answers = write_all(&w, redeliveries.clone()).await;
    assert!(
        answers.iter().all(|a| matches!(a, Committed::Spooled(_))),
        "{answers:?}"
    );
    during.extend(redeliveries);
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "{:?}",
        started.elapsed()
    );
    let state = w.degraded();
    assert!(state.since.is_some());
    assert_eq!(state.depth.records, during.len() as u64);

    // Killed while down: the spool is on disk, nothing else remembers it.
    task.abort();
    let _ = task.await;
    drop(w);

    // Restarted while still down: degraded from the start, new records behind the old ones.
    let (w, task, stop) = start(&store, dir.path());
    assert!(w.degraded().since.is_some());
    let later: Vec<Record> = (0..5).map(|_| Record::Signal(signal(None))).collect();
    let answers = write_all(&w, later.clone()).await;
    assert!(answers.iter().all(|a| matches!(a, Committed::Spooled(_))));
    assert_eq!(
        w.degraded().depth.records,
        (during.len() + later.len()) as u64
    );

    pg.start_server();
    let mut state = w.watch_degraded();
    tokio::time::timeout(
        Duration::from_secs(30),
        state.wait_for(|s| s.since.is_none()),
    )
    .await
    .expect("drained within 30 s")
    .expect("writer alive");
    let drained = w.degraded();
    assert_eq!(drained.depth.records, 0);
    assert_eq!(drained.drained, (during.len() + later.len()) as u64);

    // Exactly once: every signal before, during and after, minus the two redeliveries.
    let signals = count(&pg, "SELECT count(*) FROM signals");
    assert_eq!(
        signals,
        i64::try_from(before.len() + 120 + later.len()).expect("small")
    );
    assert_eq!(count(&pg, "SELECT count(*) FROM quarantine"), 1);
    assert_eq!(
        count(
            &pg,
            "SELECT count(*) FROM (SELECT id FROM signals GROUP BY id HAVING count(*) > 1) d"
        ),
        0
    );
    // Original arrival times, not the drain's.
    for r in during.iter().take(120).chain(&later) {
        let Record::Signal(s) = r else { unreachable!() };
        let at = pg.query(&format!(
            "SELECT (extract(epoch FROM received_at) * 1000000)::bigint FROM signals WHERE id = '{}'",
            s.id
        ));
        let expected = s.received_at.unix_timestamp_nanos() / 1000;
        assert_eq!(at, expected.to_string(), "received_at of {}", s.id);
    }
    // Direct again.
    let answers = write_all(&w, vec![Record::Signal(signal(None))]).await;
    assert!(matches!(answers[0], Committed::Stored(_)));
    stop.cancel();
    task.await.expect("writer stopped");

    // Nothing left to drain on a restart.
    let spool = Spool::open(dir.path(), 64 << 20).expect("reopen");
    assert!(spool.is_empty());
}

/// A drain cut short after its commit (the head not yet moved) writes nothing twice: the
/// records are read back and skipped as already stored.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn records_drained_before_a_crash_are_not_stored_again() {
    let pg = PrivatePg::start();
    let store = Store::connect(&pg.url, 4).await.expect("connect");
    store.migrate().await.expect("migrate");
    let dir = tempfile::tempdir().expect("temp dir");
    let records: Vec<Record> = (0..30).map(|_| Record::Signal(signal(None))).collect();
    {
        // What a crash between the drain's COMMIT and the head's update leaves: the records
        // in the spool and in Postgres.
        let mut spool = Spool::open(dir.path(), 64 << 20).expect("spool");
        let refs: Vec<&Record> = records.iter().collect();
        spool
            .append(&refs, time::OffsetDateTime::now_utc())
            .expect("append");
    }
    let direct = Store::connect(&pg.url, 2).await.expect("connect");
    let (w0, t0) =
        warden_store::spawn_writer(direct, WriterConfig::default(), CancellationToken::new());
    for r in records.iter().take(20) {
        w0.write(r.clone()).await.expect("stored");
    }
    drop(w0);
    t0.await.expect("writer");

    let (w, task, stop) = start(&store, dir.path());
    let mut state = w.watch_degraded();
    tokio::time::timeout(
        Duration::from_secs(30),
        state.wait_for(|s| s.since.is_none()),
    )
    .await
    .expect("drained")
    .expect("writer alive");
    assert_eq!(count(&pg, "SELECT count(*) FROM signals"), 30);
    assert_eq!(count(&pg, "SELECT count(*) FROM quarantine"), 0);
    stop.cancel();
    task.await.expect("writer stopped");
}

/// A record Postgres refuses for its data is not an outage: it is answered `Rejected` (ingest
/// then stores a stand-in), never spooled to be refused again at the drain.
#[sqlx::test(migrations = "./migrations")]
async fn a_refused_record_is_rejected_not_spooled(pool: sqlx::PgPool) {
    let store = Store::from_pool(pool);
    let dir = tempfile::tempdir().expect("temp dir");
    let (w, task, stop) = start(&store, dir.path());
    let mut bad = signal(None);
    bad.decoded = serde_json::json!({ "zone": "a\u{0}b" });
    let answer = w.write(Record::Signal(bad)).await;
    assert!(
        matches!(answer, Err(warden_store::WriteError::Rejected { .. })),
        "{answer:?}"
    );
    assert_eq!(w.degraded().since, None, "not degraded");
    assert_eq!(w.degraded().depth.records, 0, "nothing spooled");
    let fine = w.write(Record::Signal(signal(None))).await;
    assert!(matches!(fine, Ok(Committed::Stored(_))), "{fine:?}");
    stop.cancel();
    task.await.expect("writer stopped");
}
