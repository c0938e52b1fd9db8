//! Persistence of triage: incident current state, the append-only effect history, the
//! triaged-signal marks and the outbox, written together in one transaction per engine
//! batch; and the reads the engine needs to rebuild after a restart.

use serde_json::Value;
use sqlx::Row as _;
use time::OffsetDateTime;
use uuid::Uuid;

use crate::{Source, Store, StoreError};

/// The current state of one incident, as the engine upserts it.
#[derive(Debug, Clone, PartialEq)]
pub struct IncidentRow {
    pub id: i64,
    pub priority: String,
    pub kind: String,
    pub state: String,
    pub device_id: Option<i64>,
    pub raised_at: OffsetDateTime,
    pub offered_at: Option<OffsetDateTime>,
    pub claimed_at: Option<OffsetDateTime>,
    pub answer_time_us: Option<i64>,
    pub resolved_at: Option<OffsetDateTime>,
    pub signal_count: i32,
    /// What the queue shows, written from the core's record (typed columns, so the console
    /// never picks them out of `doc` by key name).
    pub view: IncidentViewFields,
    /// The core's full record, for rebuilding.
    pub doc: Value,
}

/// The fields of an incident the queue and the console read, beside its lifecycle columns.
#[derive(Debug, Clone, Default, PartialEq, Eq, sqlx::FromRow)]
pub struct IncidentViewFields {
    /// When its first signal arrived (the answer clock starts here).
    pub arrived_at: Option<OffsetDateTime>,
    /// The console user holding it.
    pub holder_id: Option<i64>,
    pub area: Option<String>,
    /// A readable line for incidents whose code Warden does not know.
    pub summary: Option<String>,
    /// The operator's outcome code, once resolved by an operator.
    pub outcome: Option<String>,
    /// Member units, for storm groups.
    pub group_count: Option<i32>,
    pub sla_warned: bool,
    pub sla_overflowed: bool,
    pub sla_critical: bool,
}

/// One effect for the history: the incident it concerns, a short kind, the effect itself.
#[derive(Debug, Clone, PartialEq)]
pub struct EventRow {
    pub incident_id: Option<i64>,
    pub kind: String,
    pub effect: Value,
}

/// Everything one engine batch changed.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct TriageBatch {
    pub triaged: Vec<Uuid>,
    pub events: Vec<EventRow>,
    pub incidents: Vec<IncidentRow>,
    /// Escalation requests for the notifier (overflow, critical, …).
    pub outbox: Vec<EventRow>,
    /// Whether COMMIT must wait for the WAL flush. A batch of signals and ticks only may
    /// skip it (`synchronous_commit = off`): if a crash loses it, its "triaged" marks are
    /// lost with it and the signals (committed durably by ingest) are replayed on the next
    /// start. A batch that answers someone (an operator's command) must be durable. WAL is
    /// flushed in order, so a durable commit also makes every earlier one durable.
    pub must_flush: bool,
    /// When its inputs were triaged: the time of its history lines (`incident_events.at`).
    /// `None` means the commit's own time. A batch triaged during an outage and committed
    /// after it, or an operator's command applied again from the journal, keeps its time.
    pub at: Option<time::OffsetDateTime>,
}

impl TriageBatch {
    /// Replaces NUL characters, which Postgres text and jsonb cannot hold, with U+FFFD in
    /// every text the batch carries (the original input stays in its stored signal).
    pub fn sanitize(&mut self) {
        for row in self.events.iter_mut().chain(self.outbox.iter_mut()) {
            sanitize_text(&mut row.kind);
            sanitize_json(&mut row.effect);
        }
        for i in &mut self.incidents {
            sanitize_text(&mut i.priority);
            sanitize_text(&mut i.kind);
            sanitize_text(&mut i.state);
            sanitize_json(&mut i.doc);
            for t in [&mut i.view.area, &mut i.view.summary, &mut i.view.outcome]
                .into_iter()
                .flatten()
            {
                sanitize_text(t);
            }
        }
    }

    pub fn is_empty(&self) -> bool {
        self.triaged.is_empty()
            && self.events.is_empty()
            && self.incidents.is_empty()
            && self.outbox.is_empty()
    }
}

fn sanitize_text(s: &mut String) {
    if s.contains('\0') {
        *s = s.replace('\0', "\u{fffd}");
    }
}

/// NUL characters in every string (keys included) of a JSON value replaced by U+FFFD.
fn sanitize_json(v: &mut Value) {
    match v {
        Value::String(s) => sanitize_text(s),
        Value::Array(items) => items.iter_mut().for_each(sanitize_json),
        Value::Object(map) => {
            if map.keys().any(|k| k.contains('\0')) {
                let old = std::mem::take(map);
                for (mut k, mut v) in old {
                    sanitize_text(&mut k);
                    sanitize_json(&mut v);
                    map.insert(k, v);
                }
            } else {
                map.values_mut().for_each(sanitize_json);
            }
        }
        _ => {}
    }
}

/// A committed signal not yet triaged, for replay after a restart.
#[derive(Debug, Clone, PartialEq, sqlx::FromRow)]
pub struct PendingSignal {
    pub id: Uuid,
    #[sqlx(try_from = "String")]
    pub source: Source,
    pub link_id: String,
    pub account: Option<String>,
    pub device_id: Option<i64>,
    pub kind: String,
    pub decoded: Value,
    pub received_at: OffsetDateTime,
}

impl Store {
    /// Writes one engine batch atomically: either all of it is durable or none.
    pub async fn commit_triage(&self, b: &TriageBatch) -> Result<(), StoreError> {
        let mut tx = self.pool().begin().await?;
        if !b.must_flush {
            sqlx::query("SET LOCAL synchronous_commit = off")
                .execute(&mut *tx)
                .await?;
        }
        if !b.triaged.is_empty() {
            sqlx::query("INSERT INTO triaged (signal_id) SELECT * FROM UNNEST($1::uuid[]) ON CONFLICT DO NOTHING")
                .bind(&b.triaged)
                .execute(&mut *tx)
                .await?;
        }
        for (table, rows) in [("incident_events", &b.events), ("outbox", &b.outbox)] {
            if rows.is_empty() {
                continue;
            }
            let ids: Vec<Option<i64>> = rows.iter().map(|r| r.incident_id).collect();
            let kinds: Vec<&str> = rows.iter().map(|r| r.kind.as_str()).collect();
            let docs: Vec<&Value> = rows.iter().map(|r| &r.effect).collect();
            let sql = if table == "incident_events" {
                "INSERT INTO incident_events (incident_id, kind, effect, at) \
                 SELECT i, k, e, COALESCE($4::timestamptz, clock_timestamp()) FROM UNNEST($1::bigint[], $2::text[], $3::jsonb[]) AS u(i, k, e)"
            } else {
                "INSERT INTO outbox (incident_id, kind, payload) SELECT * FROM UNNEST($1::bigint[], $2::text[], $3::jsonb[])"
            };
            let mut query = sqlx::query(sql).bind(&ids).bind(&kinds).bind(&docs);
            if table == "incident_events" {
                query = query.bind(b.at);
            }
            query.execute(&mut *tx).await?;
        }
        if !b.incidents.is_empty() {
            upsert_incidents(&mut tx, &b.incidents).await?;
        }
        tx.commit().await?;
        Ok(())
    }

    /// The core records of every incident not yet resolved.
    pub async fn open_incident_docs(&self) -> Result<Vec<Value>, StoreError> {
        let rows = sqlx::query("SELECT doc FROM incidents WHERE resolved_at IS NULL ORDER BY id")
            .fetch_all(self.pool())
            .await?;
        rows.iter()
            .map(|r| r.try_get::<Value, _>("doc").map_err(StoreError::from))
            .collect()
    }

    /// The largest incident id ever assigned (0 when none).
    pub async fn max_incident_id(&self) -> Result<i64, StoreError> {
        let n: Option<i64> = sqlx::query_scalar("SELECT max(id) FROM incidents")
            .fetch_one(self.pool())
            .await?;
        Ok(n.unwrap_or(0))
    }

    /// Committed signals received after `since` that have not been triaged, oldest first.
    /// With `before`, only signals received before it (a catch-up while running, which must
    /// not take signals still on their way through the engine's lanes).
    pub async fn untriaged_signals(
        &self,
        since: OffsetDateTime,
        before: Option<OffsetDateTime>,
        limit: i64,
    ) -> Result<Vec<PendingSignal>, StoreError> {
        Ok(sqlx::query_as(
            "SELECT s.id, s.source, s.link_id, s.account, s.device_id, s.kind, s.decoded, s.received_at \
             FROM signals s WHERE s.received_at > $1 AND ($3::timestamptz IS NULL OR s.received_at < $3) \
             AND NOT EXISTS (SELECT 1 FROM triaged t WHERE t.signal_id = s.id) \
             ORDER BY s.received_at, s.id LIMIT $2",
        )
        .bind(since)
        .bind(limit)
        .bind(before)
        .fetch_all(self.pool())
        .await?)
    }
}

/// Writes the current-state rows of a batch's incidents in one statement (ids are unique
/// within a batch).
async fn upsert_incidents(
    conn: &mut sqlx::PgConnection,
    rows: &[IncidentRow],
) -> Result<(), StoreError> {
    let ids: Vec<i64> = rows.iter().map(|r| r.id).collect();
    let priorities: Vec<&str> = rows.iter().map(|r| r.priority.as_str()).collect();
    let kinds: Vec<&str> = rows.iter().map(|r| r.kind.as_str()).collect();
    let states: Vec<&str> = rows.iter().map(|r| r.state.as_str()).collect();
    let devices: Vec<Option<i64>> = rows.iter().map(|r| r.device_id).collect();
    let raised: Vec<OffsetDateTime> = rows.iter().map(|r| r.raised_at).collect();
    let offered: Vec<Option<OffsetDateTime>> = rows.iter().map(|r| r.offered_at).collect();
    let claimed: Vec<Option<OffsetDateTime>> = rows.iter().map(|r| r.claimed_at).collect();
    let answer: Vec<Option<i64>> = rows.iter().map(|r| r.answer_time_us).collect();
    let resolved: Vec<Option<OffsetDateTime>> = rows.iter().map(|r| r.resolved_at).collect();
    let counts: Vec<i32> = rows.iter().map(|r| r.signal_count).collect();
    let docs: Vec<&Value> = rows.iter().map(|r| &r.doc).collect();
    let arrived: Vec<Option<OffsetDateTime>> = rows.iter().map(|r| r.view.arrived_at).collect();
    let holders: Vec<Option<i64>> = rows.iter().map(|r| r.view.holder_id).collect();
    let areas: Vec<Option<&str>> = rows.iter().map(|r| r.view.area.as_deref()).collect();
    let summaries: Vec<Option<&str>> = rows.iter().map(|r| r.view.summary.as_deref()).collect();
    let outcomes: Vec<Option<&str>> = rows.iter().map(|r| r.view.outcome.as_deref()).collect();
    let groups: Vec<Option<i32>> = rows.iter().map(|r| r.view.group_count).collect();
    let warned: Vec<bool> = rows.iter().map(|r| r.view.sla_warned).collect();
    let overflowed: Vec<bool> = rows.iter().map(|r| r.view.sla_overflowed).collect();
    let critical: Vec<bool> = rows.iter().map(|r| r.view.sla_critical).collect();
    sqlx::query(
        "INSERT INTO incidents (id, priority, kind, state, device_id, raised_at, offered_at, claimed_at, \
         answer_time_us, resolved_at, signal_count, doc, arrived_at, holder_id, area, summary, \
         outcome, group_count, sla_warned, sla_overflowed, sla_critical) \
         SELECT * FROM UNNEST($1::bigint[], $2::text[], $3::text[], $4::text[], $5::bigint[], \
             $6::timestamptz[], $7::timestamptz[], $8::timestamptz[], $9::bigint[], \
             $10::timestamptz[], $11::int[], $12::jsonb[], $13::timestamptz[], $14::bigint[], \
             $15::text[], $16::text[], $17::text[], $18::int[], $19::bool[], $20::bool[], $21::bool[]) \
         ON CONFLICT (id) DO UPDATE SET \
         priority = EXCLUDED.priority, kind = EXCLUDED.kind, state = EXCLUDED.state, \
         device_id = EXCLUDED.device_id, offered_at = EXCLUDED.offered_at, \
         claimed_at = EXCLUDED.claimed_at, answer_time_us = EXCLUDED.answer_time_us, \
         resolved_at = EXCLUDED.resolved_at, \
         signal_count = GREATEST(incidents.signal_count, EXCLUDED.signal_count), \
         doc = EXCLUDED.doc, arrived_at = EXCLUDED.arrived_at, holder_id = EXCLUDED.holder_id, \
         area = EXCLUDED.area, summary = EXCLUDED.summary, outcome = EXCLUDED.outcome, \
         group_count = EXCLUDED.group_count, sla_warned = EXCLUDED.sla_warned, \
         sla_overflowed = EXCLUDED.sla_overflowed, sla_critical = EXCLUDED.sla_critical, \
         updated_at = clock_timestamp()",
    )
    .bind(&ids)
    .bind(&priorities)
    .bind(&kinds)
    .bind(&states)
    .bind(&devices)
    .bind(&raised)
    .bind(&offered)
    .bind(&claimed)
    .bind(&answer)
    .bind(&resolved)
    .bind(&counts)
    .bind(&docs)
    .bind(&arrived)
    .bind(&holders)
    .bind(&areas)
    .bind(&summaries)
    .bind(&outcomes)
    .bind(&groups)
    .bind(&warned)
    .bind(&overflowed)
    .bind(&critical)
    .execute(&mut *conn)
    .await?;
    Ok(())
}
