//! The engine against a real Postgres: operator commands answered only after their effects
//! are durable, device registry kept across signals, and supervision deadlines rebuilt from
//! the stored signals after a restart.

use std::time::Duration;

use sqlx::PgPool;
use time::OffsetDateTime;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;
use warden_core::{
    Actor, AlarmKind, Decoded, Effect, IncidentId, Input, Micros, OutcomeCode, RejectReason,
    SignalWhat,
};
use warden_engine::{CommittedSignal, EngineConfig, EngineHandle, spawn};
use warden_store::Store;

async fn device(pool: &PgPool, account: &str, interval: Option<i32>) -> i64 {
    sqlx::query_scalar(
        "INSERT INTO devices (account, protocol, test_interval_seconds) VALUES ($1, 'mqtt', $2) RETURNING id",
    )
    .bind(account)
    .bind(interval)
    .fetch_one(pool)
    .await
    .expect("device")
}

/// Stores a signal the way ingest does, and returns it ready to hand to the engine.
async fn signal(pool: &PgPool, device: i64, decoded: &Decoded, at: OffsetDateTime) -> Uuid {
    let id = Uuid::now_v7();
    sqlx::query(
        "INSERT INTO signals (id, source, link_id, device_id, kind, raw, decoded, received_at) \
         VALUES ($1, 'mqtt', 'mqtt:test', $2, $3, '\\x00', $4, $5)",
    )
    .bind(id)
    .bind(device)
    .bind(decoded.kind_label())
    .bind(decoded.to_json())
    .bind(at)
    .execute(pool)
    .await
    .expect("signal");
    id
}

async fn submit(engine: &EngineHandle, id: Uuid, device: i64, decoded: &Decoded) {
    let ok = engine
        .submit(&CommittedSignal {
            id,
            source: warden_core::Source::Mqtt,
            link: "mqtt:test",
            account: None,
            device_id: Some(device),
            decoded,
            received_at: OffsetDateTime::now_utc(),
        })
        .await;
    assert!(ok, "engine stopped");
}

/// Starts an engine on the test's database.
async fn start(
    pool: &PgPool,
    cfg: EngineConfig,
) -> (
    EngineHandle,
    CancellationToken,
    tokio::task::JoinHandle<warden_engine::EngineReport>,
) {
    let stop = CancellationToken::new();
    let (engine, task) = spawn(Store::from_pool(pool.clone()), cfg, stop.clone())
        .await
        .expect("engine");
    (engine, stop, task)
}

fn heartbeat() -> Decoded {
    Decoded::new(vec![SignalWhat::Heartbeat], serde_json::Value::Null)
}

async fn wait_for(pool: &PgPool, sql: &str, want: i64, within: Duration) -> bool {
    let deadline = tokio::time::Instant::now() + within;
    loop {
        let n: i64 = sqlx::query_scalar(sqlx::AssertSqlSafe(sql.to_owned()))
            .fetch_one(pool)
            .await
            .expect("count");
        if n == want {
            return true;
        }
        if tokio::time::Instant::now() > deadline {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn fast_supervision() -> EngineConfig {
    let mut cfg = EngineConfig::default();
    cfg.core.supervision.grace = Micros::from_micros(0);
    cfg
}

#[sqlx::test(migrations = "../warden-store/migrations")]
async fn a_claim_is_answered_after_it_is_durable_and_a_second_claim_is_refused(pool: PgPool) {
    let (engine, stop, task) = start(&pool, EngineConfig::default()).await;
    let dev = device(&pool, "pend-1", None).await;
    let press = Decoded::new(
        vec![SignalWhat::Mqtt {
            kind: AlarmKind::Pendant,
            restore: false,
        }],
        serde_json::Value::Null,
    );
    let id = signal(&pool, dev, &press, OffsetDateTime::now_utc()).await;
    submit(&engine, id, dev, &press).await;
    assert!(
        wait_for(
            &pool,
            "SELECT count(*) FROM incidents WHERE state = 'offered'",
            1,
            Duration::from_secs(5)
        )
        .await
    );
    let incident: i64 = sqlx::query_scalar("SELECT id FROM incidents")
        .fetch_one(&pool)
        .await
        .expect("id");
    let incident = IncidentId(u64::try_from(incident).expect("id"));

    let effects = engine
        .command(Input::Claim {
            incident,
            actor: Actor::operator(7),
        })
        .await
        .expect("engine running");
    assert!(
        effects.iter().any(|e| matches!(e, Effect::Claimed { .. })),
        "{effects:?}"
    );
    // Answered means durable: the row says so already, no waiting.
    let (state, holder): (String, Option<String>) =
        sqlx::query_as("SELECT state, doc #>> '{holder,id}' FROM incidents")
            .fetch_one(&pool)
            .await
            .expect("row");
    assert_eq!((state.as_str(), holder.as_deref()), ("claimed", Some("7")));

    let effects = engine
        .command(Input::Claim {
            incident,
            actor: Actor::operator(8),
        })
        .await
        .expect("engine running");
    assert!(
        effects.iter().any(|e| matches!(
            e,
            Effect::Rejected { reason: RejectReason::ClaimedByOther { holder }, .. } if holder.id == 7
        )),
        "{effects:?}"
    );
    stop.cancel();
    task.await.expect("engine task");
}

#[sqlx::test(migrations = "../warden-store/migrations")]
async fn a_signal_does_not_erase_its_devices_test_interval(pool: PgPool) {
    // A 1 s test interval with no grace: fail to report 1.1 s after the unit was last heard.
    let dev = device(&pool, "unit-1", Some(1)).await;
    let (engine, stop, task) = start(&pool, fast_supervision()).await;
    let beat = heartbeat();
    let id = signal(&pool, dev, &beat, OffsetDateTime::now_utc()).await;
    submit(&engine, id, dev, &beat).await;
    // The signal names the device by id only; the registry's interval must survive it, so
    // silence after the heartbeat still raises fail to report.
    assert!(
        wait_for(
            &pool,
            "SELECT count(*) FROM incidents WHERE kind = 'fail_to_report'",
            1,
            Duration::from_secs(10)
        )
        .await,
        "no fail-to-report after the unit went silent"
    );
    stop.cancel();
    task.await.expect("engine task");
}

#[sqlx::test(migrations = "../warden-store/migrations")]
async fn after_a_restart_supervision_counts_from_when_the_unit_was_last_heard(pool: PgPool) {
    // A unit with a 60 s interval (186 s allowance with the default 2 min grace) last heard
    // 10 minutes ago, while the engine was down: it is overdue the moment the engine starts.
    let late = device(&pool, "unit-late", Some(60)).await;
    let fresh = device(&pool, "unit-fresh", Some(60)).await;
    let beat = heartbeat();
    let now = OffsetDateTime::now_utc();
    for (dev, at) in [
        (late, now - Duration::from_mins(10)),
        (fresh, now - Duration::from_secs(5)),
    ] {
        let id = signal(&pool, dev, &beat, at).await;
        sqlx::query("INSERT INTO triaged (signal_id) VALUES ($1)")
            .bind(id)
            .execute(&pool)
            .await
            .expect("triaged");
    }
    let store = Store::from_pool(pool.clone());
    let stop = CancellationToken::new();
    let (_engine, task) = spawn(store, EngineConfig::default(), stop.clone())
        .await
        .expect("engine");
    assert!(
        wait_for(
            &pool,
            "SELECT count(*) FROM incidents WHERE kind = 'fail_to_report'",
            1,
            Duration::from_secs(5)
        )
        .await,
        "the overdue unit was not reported"
    );
    let reported: Option<i64> =
        sqlx::query_scalar("SELECT device_id FROM incidents WHERE kind = 'fail_to_report'")
            .fetch_one(&pool)
            .await
            .expect("row");
    assert_eq!(
        reported,
        Some(late),
        "only the unit not heard for 10 minutes is overdue"
    );
    stop.cancel();
    task.await.expect("engine task");
}

fn pendant() -> Decoded {
    Decoded::new(
        vec![SignalWhat::Mqtt {
            kind: AlarmKind::Pendant,
            restore: false,
        }],
        serde_json::Value::Null,
    )
}

/// Presses a pendant for `dev` and returns the id of the incident it opened.
async fn press(pool: &PgPool, engine: &EngineHandle, dev: i64) -> IncidentId {
    let p = pendant();
    let id = signal(pool, dev, &p, OffsetDateTime::now_utc()).await;
    submit(engine, id, dev, &p).await;
    let sql = format!("SELECT count(*) FROM incidents WHERE device_id = {dev}");
    assert!(
        wait_for(pool, &sql, 1, Duration::from_secs(5)).await,
        "incident for {dev}"
    );
    let incident: i64 = sqlx::query_scalar(sqlx::AssertSqlSafe(format!(
        "SELECT id FROM incidents WHERE device_id = {dev}"
    )))
    .fetch_one(pool)
    .await
    .expect("id");
    IncidentId(u64::try_from(incident).expect("id"))
}

#[sqlx::test(migrations = "../warden-store/migrations")]
async fn a_note_postgres_refuses_is_stored_sanitised_and_triage_goes_on(pool: PgPool) {
    let (engine, stop, task) = start(&pool, EngineConfig::default()).await;
    let dev = device(&pool, "pend-nul", None).await;
    let incident = press(&pool, &engine, dev).await;
    // jsonb refuses \u0000: before, the engine retried this batch for ever and every later
    // alarm waited behind it.
    let effects = tokio::time::timeout(
        Duration::from_secs(10),
        engine.command(Input::Note {
            incident,
            actor: Actor::operator(7),
            text: "door\0code".into(),
        }),
    )
    .await
    .expect("answered in time")
    .expect("the command is carried out");
    assert!(
        effects.iter().any(|e| matches!(
            e,
            Effect::IncidentUpdated {
                change: warden_core::Change::Noted,
                ..
            }
        )),
        "{effects:?}"
    );
    let stored: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM incident_events WHERE effect::text LIKE '%door\u{fffd}code%'",
    )
    .fetch_one(&pool)
    .await
    .expect("count");
    assert_eq!(stored, 1, "the note is kept with the NUL replaced");
    let next = device(&pool, "pend-after", None).await;
    press(&pool, &engine, next).await;
    assert!(
        engine.health().problems().is_empty(),
        "{:?}",
        engine.health()
    );
    stop.cancel();
    task.await.expect("engine task");
}

#[sqlx::test(migrations = "../warden-store/migrations")]
async fn a_locked_table_makes_the_engine_report_stalled_and_it_recovers_when_released(
    pool: PgPool,
) {
    let cfg = EngineConfig {
        db_timeout: Duration::from_millis(500),
        stall_after: Duration::from_secs(1),
        ..EngineConfig::default()
    };
    let (engine, stop, task) = start(&pool, cfg).await;
    let dev = device(&pool, "pend-lock", None).await;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while engine.health().state != warden_engine::EngineState::Running
        && tokio::time::Instant::now() < deadline
    {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // Another session holds the incidents table: every triage commit waits on the lock.
    let mut locker = pool.begin().await.expect("begin");
    sqlx::query("LOCK TABLE incidents IN ACCESS EXCLUSIVE MODE")
        .execute(&mut *locker)
        .await
        .expect("lock");
    let p = pendant();
    let id = signal(&pool, dev, &p, OffsetDateTime::now_utc()).await;
    submit(&engine, id, dev, &p).await;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    let problems = loop {
        let problems = engine.health().problems();
        if problems.iter().any(|p| p.contains("stalled")) || tokio::time::Instant::now() > deadline
        {
            break problems;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert!(
        problems.iter().any(|p| p.contains("stalled")),
        "readiness names the stall: {problems:?}"
    );
    locker.rollback().await.expect("release");
    // Retried with backoff once the lock is gone: the pendant reaches the queue.
    assert!(
        wait_for(
            &pool,
            &format!("SELECT count(*) FROM incidents WHERE device_id = {dev}"),
            1,
            Duration::from_secs(15)
        )
        .await
    );
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    while !engine.health().problems().is_empty() && tokio::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(
        engine.health().problems().is_empty(),
        "{:?}",
        engine.health()
    );
    stop.cancel();
    task.await.expect("engine task");
}

#[sqlx::test(migrations = "../warden-store/migrations")]
async fn a_signal_committed_but_never_handed_to_the_engine_is_caught_up_while_it_runs(
    pool: PgPool,
) {
    let cfg = EngineConfig {
        catch_up_every: Duration::from_millis(300),
        catch_up_age: Duration::from_millis(500),
        ..EngineConfig::default()
    };
    let (engine, stop, task) = start(&pool, cfg).await;
    let dev = device(&pool, "pend-lost", None).await;
    // Committed by ingest, but its triage was lost (a batch lost with Postgres, a failed
    // submit): nothing hands it to the engine, and the engine keeps running.
    signal(&pool, dev, &pendant(), OffsetDateTime::now_utc()).await;
    assert!(
        wait_for(
            &pool,
            &format!(
                "SELECT count(*) FROM incidents WHERE device_id = {dev} AND priority = 'life_critical'"
            ),
            1,
            Duration::from_secs(10)
        )
        .await,
        "the catch-up triaged it"
    );
    // A catch-up pass shows as replaying while it runs (every 300 ms here, longer on a
    // loaded machine); between passes the engine is running.
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while engine.health().state != warden_engine::EngineState::Running
        && std::time::Instant::now() < deadline
    {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(engine.health().state, warden_engine::EngineState::Running);
    stop.cancel();
    task.await.expect("engine task");
}

#[sqlx::test(migrations = "../warden-store/migrations")]
async fn every_event_of_a_stored_multi_event_block_is_triaged(pool: PgPool) {
    let (engine, stop, task) = start(&pool, EngineConfig::default()).await;
    let dev = device(&pool, "sia-1", None).await;
    let block = Decoded::new(
        vec![
            SignalWhat::Sia {
                code: *b"YT",
                restore: false,
            },
            SignalWhat::Sia {
                code: *b"MA",
                restore: false,
            },
        ],
        serde_json::Value::Null,
    );
    let id = signal(&pool, dev, &block, OffsetDateTime::now_utc()).await;
    submit(&engine, id, dev, &block).await;
    assert!(
        wait_for(
            &pool,
            &format!(
                "SELECT count(*) FROM incidents WHERE device_id = {dev} \
                 AND ((kind = 'medical' AND priority = 'life_critical') OR (kind = 'low_battery' AND priority = 'technical'))"
            ),
            2,
            Duration::from_secs(5)
        )
        .await,
        "the battery trouble and the medical alarm"
    );
    assert!(
        wait_for(
            &pool,
            &format!("SELECT count(*) FROM triaged WHERE signal_id = '{id}'"),
            1,
            Duration::from_secs(5)
        )
        .await,
        "the stored signal is marked triaged once"
    );
    stop.cancel();
    task.await.expect("engine task");
}

/// An incident's row after it was resolved.
#[derive(sqlx::FromRow, Debug, PartialEq)]
struct Closed {
    state: String,
    holder_id: Option<i64>,
    outcome: Option<String>,
    resolved: bool,
    doc_state: String,
    doc_outcome: Option<String>,
    device_id: Option<i64>,
}

/// What the queue reads is written as typed columns from the core's record, and a resolved
/// incident's row is its whole final record (the core has already let it go).
#[sqlx::test(migrations = "../warden-store/migrations")]
async fn the_view_columns_follow_the_record_through_claim_and_resolve(pool: PgPool) {
    let (engine, stop, task) = start(&pool, EngineConfig::default()).await;
    let dev = device(&pool, "pend-view", None).await;
    let incident = press(&pool, &engine, dev).await;
    engine
        .command(Input::Claim {
            incident,
            actor: Actor::operator(7),
        })
        .await
        .expect("claimed");
    let (holder, arrived): (Option<i64>, Option<OffsetDateTime>) =
        sqlx::query_as("SELECT holder_id, arrived_at FROM incidents")
            .fetch_one(&pool)
            .await
            .expect("row");
    assert_eq!(holder, Some(7));
    assert!(arrived.is_some(), "arrival time written");

    let effects = engine
        .command(Input::Resolve {
            incident,
            actor: Actor::operator(7),
            outcome: OutcomeCode::parse("assistance_given").expect("code"),
        })
        .await
        .expect("resolved");
    assert!(
        effects.iter().any(|e| matches!(e, Effect::Resolved { .. })),
        "{effects:?}"
    );
    let row: Closed = sqlx::query_as(
        "SELECT state, holder_id, outcome, resolved_at IS NOT NULL AS resolved, \
         doc ->> 'state' AS doc_state, doc #>> '{resolution,outcome}' AS doc_outcome, device_id \
         FROM incidents",
    )
    .fetch_one(&pool)
    .await
    .expect("row");
    assert_eq!(
        row,
        Closed {
            state: "resolved".to_owned(),
            holder_id: None,
            outcome: Some("assistance_given".to_owned()),
            resolved: true,
            doc_state: "resolved".to_owned(),
            doc_outcome: Some("assistance_given".to_owned()),
            device_id: Some(dev),
        }
    );
    stop.cancel();
    task.await.expect("engine task");
}

fn mains_fail() -> Decoded {
    Decoded::new(
        vec![SignalWhat::Mqtt {
            kind: AlarmKind::MainsFail,
            restore: false,
        }],
        serde_json::Value::Null,
    )
}

/// A storm's members repeating themselves: the repeats change nothing and wait with the
/// group's held changes, so the group's history still reads in the order things happened
/// (each unit joined before its repeat was noted) and every signal is triaged.
#[sqlx::test(migrations = "../warden-store/migrations")]
async fn a_storm_members_repeats_are_triaged_after_their_group_changes(pool: PgPool) {
    let (engine, stop, task) = start(&pool, EngineConfig::default()).await;
    let decoded = mains_fail();
    let mut devices = Vec::new();
    for n in 0..10 {
        devices.push(device(&pool, &format!("storm-{n}"), None).await);
    }
    // Which unit sent which signal, to read the history by unit.
    let mut sender: std::collections::HashMap<Uuid, i64> = std::collections::HashMap::new();
    for round in 0..2 {
        // The second round starts with the last units, whose joins are still held then.
        let order: Vec<i64> = if round == 0 {
            devices.clone()
        } else {
            devices.iter().rev().copied().collect()
        };
        for &dev in &order {
            let id = signal(&pool, dev, &decoded, OffsetDateTime::now_utc()).await;
            sender.insert(id, dev);
            submit(&engine, id, dev, &decoded).await;
        }
        if round == 0 {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
    assert!(
        wait_for(
            &pool,
            "SELECT count(*) FROM triaged",
            20,
            Duration::from_secs(5)
        )
        .await,
        "every signal of the storm is triaged"
    );
    let group: i64 = sqlx::query_scalar("SELECT id FROM incidents WHERE group_count = 10")
        .fetch_one(&pool)
        .await
        .expect("one group of all ten units");
    let events: Vec<(i64, String, serde_json::Value)> = sqlx::query_as(
        "SELECT seq, kind, effect FROM incident_events WHERE incident_id = $1 ORDER BY seq",
    )
    .bind(group)
    .fetch_all(&pool)
    .await
    .expect("history");
    let device_of = |effect: &serde_json::Value| {
        let signal: Uuid = serde_json::from_value(effect["signal"].clone()).expect("signal id");
        sender[&signal]
    };
    // The units that formed the group joined with its `storm_grouped`; later ones each with
    // a `group_member` change.
    let formed = events
        .iter()
        .find(|(_, kind, _)| kind == "storm_grouped")
        .map(|(seq, _, _)| *seq);
    let joined: std::collections::HashMap<i64, i64> = events
        .iter()
        .filter(|(_, kind, effect)| {
            kind == "incident_updated" && effect["change"]["what"] == "group_member"
        })
        .map(|(seq, _, effect)| (device_of(effect), *seq))
        .collect();
    let mut repeats = 0;
    for (seq, _, effect) in events.iter().filter(|(_, kind, _)| kind == "duplicate") {
        repeats += 1;
        let dev = device_of(effect);
        let join = joined.get(&dev).copied().or(formed);
        assert!(
            join.is_some_and(|j| j < *seq),
            "unit {dev}: its repeat (event {seq}) is written after it joined ({join:?})"
        );
    }
    assert!(
        repeats > 0,
        "the second round repeated into the group: {events:?}"
    );
    stop.cancel();
    task.await.expect("engine");
}
