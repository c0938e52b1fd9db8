//! The group-commit writer against a real Postgres (one database per test).

mod common;

use std::collections::HashSet;
use std::time::Duration;

use sqlx::PgPool;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;
use warden_store::{
    Committed, Record, Store, WriteError, WriterConfig, WriterHandle, WriterReport, spawn_writer,
};

use common::{one_batch_config, quarantine, signal};

async fn stop(
    shutdown: &CancellationToken,
    task: tokio::task::JoinHandle<WriterReport>,
) -> WriterReport {
    shutdown.cancel();
    task.await.expect("writer task panicked")
}

fn start(
    store: &Store,
    cfg: WriterConfig,
) -> (
    WriterHandle,
    tokio::task::JoinHandle<WriterReport>,
    CancellationToken,
) {
    let shutdown = CancellationToken::new();
    let (writer, task) = spawn_writer(store.clone(), cfg, shutdown.clone());
    (writer, task, shutdown)
}

#[sqlx::test(migrations = "./migrations")]
async fn every_record_gets_exactly_one_reply_and_only_after_its_row_is_visible_to_other_connections(
    pool: PgPool,
) {
    let store = Store::from_pool(pool);
    let (writer, task, shutdown) = start(&store, WriterConfig::default());

    let mut tasks = JoinSet::new();
    for i in 0..300 {
        let writer = writer.clone();
        let reader = store.clone();
        tasks.spawn(async move {
            let record = match i % 3 {
                0 => Record::Signal(signal(None)),
                1 => Record::Signal(signal(Some(&format!("msg-{i}")))),
                _ => Record::Quarantine(quarantine()),
            };
            let id = record.id();
            let outcome = writer.write(record).await.expect("write failed");
            // The reply came: the row must already be committed, so a reader on another
            // connection of the pool sees it right now, without waiting.
            match &outcome {
                Committed::Stored(stored) => {
                    assert_eq!(*stored, id);
                    assert!(reader.signal(id).await.expect("read failed").is_some());
                }
                Committed::Quarantined(q) => {
                    assert_eq!(*q, id);
                    let acked = reader.quarantine_acked_at(id).await.expect("read failed");
                    assert!(
                        acked.is_some(),
                        "quarantine row not visible after its reply"
                    );
                }
                Committed::Duplicate { existing_key } => {
                    panic!("unexpected duplicate of {existing_key}")
                }
                Committed::Spooled(id) => panic!("no spool configured, yet {id} was spooled"),
                Committed::Reused { key, .. } => panic!("unexpected reuse of {key}"),
            }
            id
        });
    }
    let mut ids = HashSet::new();
    while let Some(joined) = tasks.join_next().await {
        assert!(ids.insert(joined.expect("task panicked")));
    }
    assert_eq!(ids.len(), 300);

    let report = stop(&shutdown, task).await;
    assert_eq!(report.records, 300);
    assert_eq!(report.errors, 0);
    assert_eq!(store.signal_count().await.expect("count"), 200);
    assert_eq!(store.quarantine_count().await.expect("count"), 100);
}

#[sqlx::test(migrations = "./migrations")]
async fn five_thousand_concurrent_writes_from_fifty_tasks_all_land_exactly_once(pool: PgPool) {
    let store = Store::from_pool(pool.clone());
    let (writer, task, shutdown) = start(&store, WriterConfig::default());

    let mut tasks = JoinSet::new();
    for _ in 0..50 {
        let writer = writer.clone();
        tasks.spawn(async move {
            let mut ids = Vec::with_capacity(100);
            for _ in 0..100 {
                let s = signal(None);
                let id = s.id;
                let outcome = writer.write(Record::Signal(s)).await.expect("write failed");
                assert_eq!(outcome, Committed::Stored(id));
                ids.push(id);
            }
            ids
        });
    }
    let mut sent = Vec::new();
    while let Some(joined) = tasks.join_next().await {
        sent.extend(joined.expect("task panicked"));
    }
    let report = stop(&shutdown, task).await;

    assert_eq!(sent.len(), 5000);
    let stored: Vec<Uuid> = sqlx::query_scalar("SELECT id FROM signals")
        .fetch_all(&pool)
        .await
        .expect("select");
    let stored: HashSet<Uuid> = stored.into_iter().collect();
    assert_eq!(stored.len(), 5000);
    assert_eq!(stored, sent.into_iter().collect::<HashSet<_>>());
    assert_eq!(report.records, 5000);
    assert_eq!(report.errors, 0);
    assert!(
        report.batches < 5000,
        "records were not grouped: {} batches",
        report.batches
    );
}

#[sqlx::test(migrations = "./migrations")]
async fn a_dedupe_key_written_again_in_a_later_batch_is_stored_once_and_answered_duplicate(
    pool: PgPool,
) {
    let store = Store::from_pool(pool);
    let (writer, task, shutdown) = start(&store, WriterConfig::default());

    let first = signal(Some("mqtt:unit-7:42"));
    let first_id = first.id;
    let again = signal(Some("mqtt:unit-7:42"));
    assert_eq!(
        writer.write(Record::Signal(first)).await,
        Ok(Committed::Stored(first_id))
    );
    assert_eq!(
        writer.write(Record::Signal(again)).await,
        Ok(Committed::Duplicate {
            existing_key: "mqtt:unit-7:42".to_owned()
        })
    );

    let report = stop(&shutdown, task).await;
    assert_eq!(report.batches, 2);
    assert_eq!(store.signal_count().await.expect("count"), 1);
    assert!(store.signal(first_id).await.expect("read").is_some());
}

#[sqlx::test(migrations = "./migrations")]
async fn a_dedupe_key_written_twice_within_one_batch_is_stored_once_and_the_second_is_duplicate(
    pool: PgPool,
) {
    let store = Store::from_pool(pool);
    let (writer, task, shutdown) = start(&store, one_batch_config());

    let a = signal(Some("k1"));
    let b = signal(Some("k1"));
    let other = signal(Some("k2"));
    let (a_id, other_id) = (a.id, other.id);
    let (ra, rb, rc) = tokio::join!(
        writer.write(Record::Signal(a)),
        writer.write(Record::Signal(b)),
        writer.write(Record::Signal(other)),
    );
    assert_eq!(ra, Ok(Committed::Stored(a_id)));
    assert_eq!(
        rb,
        Ok(Committed::Duplicate {
            existing_key: "k1".to_owned()
        })
    );
    assert_eq!(rc, Ok(Committed::Stored(other_id)));

    let report = stop(&shutdown, task).await;
    assert_eq!(
        report.batches, 1,
        "the three writes should have shared one batch"
    );
    assert_eq!(store.signal_count().await.expect("count"), 2);
}

/// `signal(key)` with other raw bytes: the same message id carrying another message.
fn other_payload(key: &str, raw: &[u8]) -> warden_store::NewSignal {
    let mut s = signal(Some(key));
    s.raw = raw.to_vec();
    s
}

#[sqlx::test(migrations = "./migrations")]
async fn a_dedupe_key_reused_for_a_different_payload_is_stored_and_answered_reused(pool: PgPool) {
    let store = Store::from_pool(pool);
    let (writer, task, shutdown) = start(&store, WriterConfig::default());

    let heartbeat = other_payload(
        "mqtt:unit-7:dup-1",
        br#"{"v":1,"msg_id":"dup-1","heartbeat":{}}"#,
    );
    let pendant = other_payload(
        "mqtt:unit-7:dup-1",
        br#"{"v":1,"msg_id":"dup-1","alarm":{"kind":"pendant"}}"#,
    );
    let (heartbeat_id, pendant_id) = (heartbeat.id, pendant.id);
    let redelivered = other_payload(
        "mqtt:unit-7:dup-1",
        br#"{"v":1,"msg_id":"dup-1","alarm":{"kind":"pendant"}}"#,
    );
    assert_eq!(
        writer.write(Record::Signal(heartbeat)).await,
        Ok(Committed::Stored(heartbeat_id))
    );
    assert_eq!(
        writer.write(Record::Signal(pendant)).await,
        Ok(Committed::Reused {
            id: pendant_id,
            key: "mqtt:unit-7:dup-1".to_owned()
        }),
        "the pendant reused the heartbeat's id and must be stored, not swallowed"
    );
    // The broker redelivering the pendant is still recognised as a redelivery.
    assert_eq!(
        writer.write(Record::Signal(redelivered)).await,
        Ok(Committed::Duplicate {
            existing_key: "mqtt:unit-7:dup-1".to_owned()
        })
    );

    stop(&shutdown, task).await;
    assert_eq!(store.signal_count().await.expect("count"), 2);
    assert!(store.signal(pendant_id).await.expect("read").is_some());
}

#[sqlx::test(migrations = "./migrations")]
async fn within_one_batch_a_reused_key_is_stored_and_a_repeated_payload_is_a_duplicate(
    pool: PgPool,
) {
    let store = Store::from_pool(pool);
    let (writer, task, shutdown) = start(&store, one_batch_config());

    let first = other_payload("k1", b"heartbeat");
    let reused = other_payload("k1", b"pendant");
    let repeated = other_payload("k1", b"heartbeat");
    let (first_id, reused_id) = (first.id, reused.id);
    let (ra, rb, rc) = tokio::join!(
        writer.write(Record::Signal(first)),
        writer.write(Record::Signal(reused)),
        writer.write(Record::Signal(repeated)),
    );
    assert_eq!(ra, Ok(Committed::Stored(first_id)));
    assert_eq!(
        rb,
        Ok(Committed::Reused {
            id: reused_id,
            key: "k1".to_owned()
        })
    );
    assert_eq!(
        rc,
        Ok(Committed::Duplicate {
            existing_key: "k1".to_owned()
        })
    );

    let report = stop(&shutdown, task).await;
    assert_eq!(
        report.batches, 1,
        "the three writes should have shared one batch"
    );
    assert_eq!(store.signal_count().await.expect("count"), 2);
}

#[sqlx::test(migrations = "./migrations")]
async fn the_same_key_and_payload_after_the_dedupe_window_is_stored_again(pool: PgPool) {
    let store = Store::from_pool(pool);
    let cfg = WriterConfig {
        dedupe_window: Duration::from_millis(500),
        ..WriterConfig::default()
    };
    let (writer, task, shutdown) = start(&store, cfg);

    let first = signal(Some("mqtt:unit-7:1"));
    let first_id = first.id;
    let inside = signal(Some("mqtt:unit-7:1"));
    assert_eq!(
        writer.write(Record::Signal(first)).await,
        Ok(Committed::Stored(first_id))
    );
    assert!(matches!(
        writer.write(Record::Signal(inside)).await,
        Ok(Committed::Duplicate { .. })
    ));

    tokio::time::sleep(Duration::from_millis(700)).await;
    // A unit whose counter restarted a day later sends the same heartbeat under the same
    // id: a new signal, not a redelivery, and not a reuse within the window either.
    let after = signal(Some("mqtt:unit-7:1"));
    let after_id = after.id;
    assert_eq!(
        writer.write(Record::Signal(after)).await,
        Ok(Committed::Stored(after_id))
    );
    // Its own window starts now: a redelivery of it is recognised.
    assert!(matches!(
        writer
            .write(Record::Signal(signal(Some("mqtt:unit-7:1"))))
            .await,
        Ok(Committed::Duplicate { .. })
    ));

    stop(&shutdown, task).await;
    assert_eq!(store.signal_count().await.expect("count"), 2);
}

#[sqlx::test(migrations = "./migrations")]
async fn two_writers_racing_on_the_same_keys_store_each_payload_exactly_once(pool: PgPool) {
    // Two writers on one database stand for two Warden nodes (or batches of one node whose
    // transactions overlap).
    let store = Store::from_pool(pool.clone());
    let (a, task_a, stop_a) = start(&store, one_batch_config());
    let (b, task_b, stop_b) = start(&store, one_batch_config());

    // Hold both writers' transactions on a table lock after they claimed their keys, so the
    // claims of the same pairs overlap and one writer must wait for the other's commit.
    let mut blocker = pool.begin().await.expect("begin");
    sqlx::query("LOCK TABLE signals IN ACCESS EXCLUSIVE MODE")
        .execute(&mut *blocker)
        .await
        .expect("lock");

    let mut tasks = JoinSet::new();
    for i in 0..50 {
        for (writer, payload) in [(&a, b"same".as_slice()), (&b, b"same".as_slice())] {
            let writer = writer.clone();
            let s = other_payload(&format!("same-{i}"), payload);
            tasks
                .spawn(async move { (format!("same-{i}"), writer.write(Record::Signal(s)).await) });
        }
        for (writer, payload) in [(&a, b"one".as_slice()), (&b, b"other".as_slice())] {
            let writer = writer.clone();
            let s = other_payload(&format!("diff-{i}"), payload);
            tasks
                .spawn(async move { (format!("diff-{i}"), writer.write(Record::Signal(s)).await) });
        }
    }
    tokio::time::sleep(Duration::from_millis(600)).await;
    blocker.rollback().await.expect("rollback");

    let mut stored: std::collections::HashMap<String, usize> = std::collections::HashMap::new();
    let mut duplicates = 0;
    while let Some(joined) = tasks.join_next().await {
        let (key, outcome) = joined.expect("task panicked");
        match outcome.expect("write failed") {
            Committed::Stored(_) | Committed::Reused { .. } => *stored.entry(key).or_default() += 1,
            Committed::Duplicate { existing_key } => {
                assert_eq!(existing_key, key);
                assert!(
                    key.starts_with("same-"),
                    "{key} has two payloads, both must be stored"
                );
                duplicates += 1;
            }
            Committed::Spooled(id) => panic!("no spool configured, yet {id} was spooled"),
            Committed::Quarantined(_) => panic!("a signal was quarantined"),
        }
    }
    for i in 0..50 {
        assert_eq!(stored.get(&format!("same-{i}")), Some(&1), "same-{i}");
        assert_eq!(stored.get(&format!("diff-{i}")), Some(&2), "diff-{i}");
    }
    assert_eq!(duplicates, 50);
    stop(&stop_a, task_a).await;
    stop(&stop_b, task_b).await;
    assert_eq!(store.signal_count().await.expect("count"), 150);
}

#[sqlx::test(migrations = "./migrations")]
async fn pruning_forgets_only_dedupe_keys_older_than_the_window(pool: PgPool) {
    let store = Store::from_pool(pool.clone());
    let (writer, task, shutdown) = start(&store, WriterConfig::default());
    for key in ["old", "new"] {
        writer
            .write(Record::Signal(signal(Some(key))))
            .await
            .expect("write");
    }
    stop(&shutdown, task).await;
    // Age one key by two hours (the table is housekeeping, not evidence: it may change).
    sqlx::query(
        "UPDATE dedupe SET seen_at = seen_at - interval '2 hours' WHERE dedupe_key = 'old'",
    )
    .execute(&pool)
    .await
    .expect("age");

    let pruned = store
        .prune_dedupe(Duration::from_hours(1), 1000)
        .await
        .expect("prune");
    assert_eq!(pruned, 1);
    let left: Vec<String> = sqlx::query_scalar("SELECT dedupe_key FROM dedupe")
        .fetch_all(&pool)
        .await
        .expect("select");
    assert_eq!(left, vec!["new".to_owned()]);
    // The evidence stays: both signals are still there.
    assert_eq!(store.signal_count().await.expect("count"), 2);
}

#[sqlx::test(migrations = "./migrations")]
async fn mark_acked_sets_acked_at_once_on_signals_and_quarantine(pool: PgPool) {
    let store = Store::from_pool(pool);
    let (writer, task, shutdown) = start(&store, WriterConfig::default());

    let s = signal(None);
    let q = quarantine();
    let (sid, qid) = (s.id, q.id);
    writer.write(Record::Signal(s)).await.expect("write");
    writer.write(Record::Quarantine(q)).await.expect("write");
    assert_eq!(
        store
            .signal(sid)
            .await
            .expect("read")
            .expect("row")
            .acked_at,
        None
    );

    writer.mark_acked(vec![sid, qid]);
    // No record follows: the mark alone must wake the writer.
    let mut first_mark = None;
    for _ in 0..100 {
        let row = store.signal(sid).await.expect("read").expect("row");
        if let Some(at) = row.acked_at {
            first_mark = Some(at);
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let first_mark = first_mark.expect("acked_at was never set");
    let q_acked = store
        .quarantine_acked_at(qid)
        .await
        .expect("read")
        .expect("row");
    assert!(q_acked.is_some(), "quarantine acked_at not set");

    // A second mark (e.g. a redelivery acknowledged again) leaves the first time in place.
    writer.mark_acked(vec![sid]);
    let report = stop(&shutdown, task).await;
    assert_eq!(report.errors, 0);
    let row = store.signal(sid).await.expect("read").expect("row");
    assert_eq!(row.acked_at, Some(first_mark));
}

#[sqlx::test(migrations = "./migrations")]
async fn shutdown_drains_queued_records_and_later_writes_are_refused(pool: PgPool) {
    let store = Store::from_pool(pool.clone());
    let cfg = WriterConfig {
        max_batch: 10,
        ..WriterConfig::default()
    };
    let (writer, task, shutdown) = start(&store, cfg);

    // Hold the writer's first transaction on a table lock so the rest pile up in the queue.
    let mut blocker = pool.begin().await.expect("begin");
    sqlx::query("LOCK TABLE signals IN ACCESS EXCLUSIVE MODE")
        .execute(&mut *blocker)
        .await
        .expect("lock");

    let mut tasks = JoinSet::new();
    for _ in 0..200 {
        let writer = writer.clone();
        tasks.spawn(async move {
            let s = signal(None);
            let id = s.id;
            (id, writer.write(Record::Signal(s)).await)
        });
    }
    // Let every task queue its record; the writer is stuck on the lock with one batch.
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(writer.queued() >= 180, "only {} queued", writer.queued());

    shutdown.cancel();
    blocker.rollback().await.expect("rollback");

    while let Some(joined) = tasks.join_next().await {
        let (id, outcome) = joined.expect("task panicked");
        assert_eq!(outcome, Ok(Committed::Stored(id)));
    }
    let report = task.await.expect("writer task panicked");
    assert_eq!(report.records, 200);
    assert_eq!(report.errors, 0);
    assert_eq!(store.signal_count().await.expect("count"), 200);

    assert_eq!(
        writer.write(Record::Signal(signal(None))).await,
        Err(WriteError::Closed)
    );
}

#[sqlx::test(migrations = "./migrations")]
async fn a_commit_failure_answers_every_waiter_with_an_error_and_none_with_ok(pool: PgPool) {
    let store = Store::from_pool(pool.clone());
    let (writer, task, shutdown) = start(&store, WriterConfig::default());
    // Postgres is "gone": the writer cannot get a connection for any batch.
    pool.close().await;

    let mut tasks = JoinSet::new();
    for i in 0..100 {
        let writer = writer.clone();
        tasks.spawn(async move {
            let record = if i % 4 == 0 {
                Record::Quarantine(quarantine())
            } else {
                Record::Signal(signal(None))
            };
            writer.write(record).await
        });
    }
    let mut replies = 0;
    while let Some(joined) = tasks.join_next().await {
        let outcome = joined.expect("task panicked");
        assert!(
            matches!(outcome, Err(WriteError::Commit(_))),
            "expected a commit error, got {outcome:?}"
        );
        replies += 1;
    }
    assert_eq!(replies, 100);

    // The writer is still running and still answers.
    assert!(writer.write(Record::Signal(signal(None))).await.is_err());
    let report = stop(&shutdown, task).await;
    assert_eq!(report.records, 0);
    assert_eq!(report.errors, 101);
}

#[sqlx::test(migrations = "./migrations")]
async fn a_lost_connection_fails_its_batch_and_the_writer_reconnects_for_the_next(pool: PgPool) {
    let store = Store::from_pool(pool.clone());
    let (writer, task, shutdown) = start(&store, one_batch_config());

    // The writer now holds a live connection.
    writer
        .write(Record::Signal(signal(None)))
        .await
        .expect("first write");

    // Kill every other session on this database, the writer's included (a server restart
    // as seen from one connection).
    sqlx::query(
        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity \
         WHERE datname = current_database() AND pid <> pg_backend_pid()",
    )
    .execute(&pool)
    .await
    .expect("terminate");
    tokio::time::sleep(Duration::from_millis(100)).await;

    let mut tasks = JoinSet::new();
    for _ in 0..20 {
        let writer = writer.clone();
        tasks.spawn(async move { writer.write(Record::Signal(signal(None))).await });
    }
    while let Some(joined) = tasks.join_next().await {
        let outcome = joined.expect("task panicked");
        assert!(
            matches!(outcome, Err(WriteError::Commit(_))),
            "expected a commit error, got {outcome:?}"
        );
    }

    // The next batch gets a fresh connection.
    let s = signal(None);
    let id = s.id;
    assert_eq!(
        writer.write(Record::Signal(s)).await,
        Ok(Committed::Stored(id))
    );
    let report = stop(&shutdown, task).await;
    assert_eq!(report.records, 2);
    assert_eq!(report.errors, 20);
    assert_eq!(store.signal_count().await.expect("count"), 2);
}

fn rejected_with(outcome: &Result<Committed, WriteError>, sqlstate_prefix: &str) -> bool {
    matches!(outcome, Err(WriteError::Rejected { code, .. }) if code.starts_with(sqlstate_prefix))
}

#[sqlx::test(migrations = "./migrations")]
async fn a_record_postgres_refuses_fails_alone_and_the_rest_of_its_batch_commits(pool: PgPool) {
    let store = Store::from_pool(pool);
    let (writer, task, shutdown) = start(&store, one_batch_config());

    let mut unknown_device = signal(None);
    unknown_device.device_id = Some(999_999);
    let mut nul_in_text = signal(None);
    nul_in_text.kind = "ev\0ent".to_owned();
    let good: Vec<_> = (0..10).map(|_| signal(None)).collect();

    let mut tasks = JoinSet::new();
    for s in good
        .iter()
        .cloned()
        .chain([unknown_device.clone(), nul_in_text.clone()])
    {
        let writer = writer.clone();
        tasks.spawn(async move { (s.id, writer.write(Record::Signal(s)).await) });
    }
    while let Some(joined) = tasks.join_next().await {
        let (id, outcome) = joined.expect("task panicked");
        if id == unknown_device.id {
            // 23503: foreign key violation.
            assert!(rejected_with(&outcome, "23503"), "{outcome:?}");
        } else if id == nul_in_text.id {
            // Class 22: data exception (invalid byte sequence).
            assert!(rejected_with(&outcome, "22"), "{outcome:?}");
        } else {
            assert_eq!(outcome, Ok(Committed::Stored(id)));
        }
    }
    let report = stop(&shutdown, task).await;
    assert_eq!(report.records, 10);
    assert_eq!(report.errors, 2);
    assert_eq!(store.signal_count().await.expect("count"), 10);
}

#[sqlx::test(migrations = "./migrations")]
async fn quarantine_keeps_the_raw_bytes_even_when_the_reason_contains_a_nul(pool: PgPool) {
    let store = Store::from_pool(pool.clone());
    let (writer, task, shutdown) = start(&store, WriterConfig::default());

    let mut q = quarantine();
    q.reason = "unexpected byte \0 at offset 0".to_owned();
    let id = q.id;
    let raw = q.raw.clone();
    assert_eq!(
        writer.write(Record::Quarantine(q)).await,
        Ok(Committed::Quarantined(id))
    );
    stop(&shutdown, task).await;

    let (stored_raw, reason, code): (Vec<u8>, String, String) =
        sqlx::query_as("SELECT raw, reason, reason_code FROM quarantine WHERE id = $1")
            .bind(id)
            .fetch_one(&pool)
            .await
            .expect("select");
    assert_eq!(stored_raw, raw);
    assert_eq!(reason, "unexpected byte \u{FFFD} at offset 0");
    assert_eq!(code, "bad_frame");
}
