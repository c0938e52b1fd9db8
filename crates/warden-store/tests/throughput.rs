//! Quick measurements of the group-commit writer, ignored by default. Needs `DATABASE_URL`
//! (a role that may create databases); creates and drops its own database. Run with
//!
//! ```text
//! cargo test --release -p warden-store --test throughput -- --ignored --nocapture --test-threads 1
//! ```
//!
//! `WARDEN_BENCH_RECORDS` (default 20 000) sets the storm size, `WARDEN_BENCH_MAX_WAIT_US`
//! the writer's batching window.

mod common;

use std::time::{Duration, Instant};

use serde_json::json;
use sqlx::postgres::PgPoolOptions;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;
use warden_store::{
    Committed, NewSignal, Record, Source, Store, WriterConfig, raw_copy, spawn_writer,
};
use warden_tests::TestDb;

fn storm_rows(n: usize, round: usize) -> Vec<NewSignal> {
    (0..n)
        .map(|i| NewSignal {
            id: Uuid::now_v7(),
            source: Source::Mqtt,
            link_id: "mqtt:broker".to_owned(),
            account: Some(format!("{:06}", i % 100_000)),
            device_id: None,
            kind: "event".to_owned(),
            raw: format!(
                r#"{{"v":1,"id":"{round}-{i}","acct":"{:06}","code":301}}"#,
                i % 100_000
            )
            .into_bytes(),
            decoded: json!({
                "v": 1, "code": 301, "qualifier": "new", "zone": 0, "text": "mains fail"
            }),
            received_at: common::now_us(),
            dedupe_key: Some(format!("bench:{round}:{i}")),
        })
        .collect()
}

/// `WARDEN_BENCH_MAX_WAIT_US` overrides the writer's batching window (default 2 ms).
fn max_wait() -> Duration {
    std::env::var("WARDEN_BENCH_MAX_WAIT_US")
        .ok()
        .and_then(|v| v.parse().ok())
        .map_or(WriterConfig::default().max_wait, Duration::from_micros)
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    #[allow(
        clippy::cast_possible_truncation,
        clippy::cast_sign_loss,
        clippy::cast_precision_loss
    )]
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i]
}

/// Creates a scratch database (the test kit's [`TestDb`], dropped on drop), runs `body`
/// against it, then drops it.
async fn with_scratch_db<F, Fut>(body: F)
where
    F: FnOnce(Store) -> Fut,
    Fut: Future<Output = ()>,
{
    let db = TestDb::create("warden_bench");
    let pool = PgPoolOptions::new()
        .max_connections(4)
        .connect(&db.url)
        .await
        .expect("connect scratch");
    let store = Store::from_pool(pool.clone());
    store.migrate().await.expect("migrate");
    body(store).await;
    pool.close().await;
    drop(db);
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime")
}

#[test]
#[ignore = "measurement: run with --release -- --ignored --nocapture"]
fn a_storm_through_the_writer_compared_with_raw_copy_of_the_same_rows() {
    let n: usize = std::env::var("WARDEN_BENCH_RECORDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(20_000);
    runtime().block_on(with_scratch_db(|store| async move {
        for round in 0..3 {
            // Writer: every record in flight at once, as in a power-cut storm.
            let rows = storm_rows(n, round * 2);
            let shutdown = CancellationToken::new();
            let cfg = WriterConfig {
                max_batch: 1000,
                max_wait: max_wait(),
                ..WriterConfig::default()
            };
            let (writer, task) = spawn_writer(store.clone(), cfg, shutdown.clone());
            let started = Instant::now();
            let mut tasks = JoinSet::new();
            for row in rows {
                let writer = writer.clone();
                tasks.spawn(async move {
                    let sent = Instant::now();
                    let outcome = writer.write(Record::Signal(row)).await;
                    (outcome, sent.elapsed())
                });
            }
            let mut latencies = Vec::with_capacity(n);
            while let Some(joined) = tasks.join_next().await {
                let (outcome, latency) = joined.expect("task");
                assert!(matches!(outcome, Ok(Committed::Stored(_))), "{outcome:?}");
                latencies.push(latency);
            }
            let writer_time = started.elapsed();
            shutdown.cancel();
            let report = task.await.expect("writer");
            latencies.sort();

            // Raw COPY of the same shape of rows (fresh ids and keys).
            let rows = storm_rows(n, round * 2 + 1);
            let copy_time = raw_copy(&store, &rows).await.expect("copy");

            #[allow(clippy::cast_precision_loss)]
            let (writer_rate, copy_rate) = (
                n as f64 / writer_time.as_secs_f64(),
                n as f64 / copy_time.as_secs_f64(),
            );
            eprintln!(
                "round {round}: writer {n} records in {writer_time:.2?} = {writer_rate:.0}/s \
                 ({} batches, reply latency p50 {:.2?} p99 {:.2?}); raw COPY in {copy_time:.2?} \
                 = {copy_rate:.0}/s; writer/COPY = {:.0}%",
                report.batches,
                percentile(&latencies, 0.5),
                percentile(&latencies, 0.99),
                100.0 * writer_rate / copy_rate,
            );
        }
        let total = store.signal_count().await.expect("count");
        assert_eq!(total, i64::try_from(6 * n).expect("fits"));
    }));
}

#[test]
#[ignore = "measurement: run with --release -- --ignored --nocapture"]
fn a_steady_two_thousand_signals_per_second_are_acknowledged_within_milliseconds() {
    const RATE_PER_MS: usize = 2;
    const SECONDS: u64 = 5;
    runtime().block_on(with_scratch_db(|store| async move {
        let shutdown = CancellationToken::new();
        let cfg = WriterConfig {
            max_wait: max_wait(),
            ..WriterConfig::default()
        };
        let (writer, task) = spawn_writer(store.clone(), cfg, shutdown.clone());
        let mut ticks = tokio::time::interval(Duration::from_millis(1));
        ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
        let mut tasks = JoinSet::new();
        let end = Instant::now() + Duration::from_secs(SECONDS);
        let mut round = 0;
        while Instant::now() < end {
            ticks.tick().await;
            for row in storm_rows(RATE_PER_MS, round) {
                let writer = writer.clone();
                tasks.spawn(async move {
                    let sent = Instant::now();
                    let outcome = writer.write(Record::Signal(row)).await;
                    (outcome, sent.elapsed())
                });
            }
            round += 1;
        }
        let mut latencies = Vec::new();
        while let Some(joined) = tasks.join_next().await {
            let (outcome, latency) = joined.expect("task");
            assert!(outcome.is_ok(), "{outcome:?}");
            latencies.push(latency);
        }
        shutdown.cancel();
        let report = task.await.expect("writer");
        latencies.sort();
        eprintln!(
            "{} records at ~{}/s: {} batches, reply latency p50 {:.2?} p99 {:.2?} max {:.2?}",
            latencies.len(),
            RATE_PER_MS * 1000,
            report.batches,
            percentile(&latencies, 0.5),
            percentile(&latencies, 0.99),
            latencies.last().copied().unwrap_or_default(),
        );
    }));
}
