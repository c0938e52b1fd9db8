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
#[derive(Debug, Clone, PartialEq)]
pub struct PendingSignal {
    pub id: Uuid,
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
                "INSERT INTO incident_events (incident_id, kind, effect) SELECT * FROM UNNEST($1::bigint[], $2::text[], $3::jsonb[])"
            } else {
                "INSERT INTO outbox (incident_id, kind, payload) SELECT * FROM UNNEST($1::bigint[], $2::text[], $3::jsonb[])"
            };
            sqlx::query(sql)
                .bind(&ids)
                .bind(&kinds)
                .bind(&docs)
                .execute(&mut *tx)
                .await?;
        }
        for r in &b.incidents {
            sqlx::query(
                "INSERT INTO incidents (id, priority, kind, state, device_id, raised_at, offered_at, claimed_at, \
                 answer_time_us, resolved_at, signal_count, doc, arrived_at, holder_id, area, summary, \
                 outcome, group_count, sla_warned, sla_overflowed, sla_critical) \
                 VALUES ($1,$2,$3,$4,$5,$6,$7,$8,$9,$10,$11,$12,$13,$14,$15,$16,$17,$18,$19,$20,$21) \
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
                 updated_at = clock_timestamp()"
            )
            .bind(r.id)
            .bind(&r.priority)
            .bind(&r.kind)
            .bind(&r.state)
            .bind(r.device_id)
            .bind(r.raised_at)
            .bind(r.offered_at)
            .bind(r.claimed_at)
            .bind(r.answer_time_us)
            .bind(r.resolved_at)
            .bind(r.signal_count)
            .bind(&r.doc)
            .bind(r.view.arrived_at)
            .bind(r.view.holder_id)
            .bind(&r.view.area)
            .bind(&r.view.summary)
            .bind(&r.view.outcome)
            .bind(r.view.group_count)
            .bind(r.view.sla_warned)
            .bind(r.view.sla_overflowed)
            .bind(r.view.sla_critical)
            .execute(&mut *tx)
            .await?;
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
        let rows = sqlx::query(
            "SELECT s.id, s.source, s.link_id, s.account, s.device_id, s.kind, s.decoded, s.received_at \
             FROM signals s WHERE s.received_at > $1 AND ($3::timestamptz IS NULL OR s.received_at < $3) \
             AND NOT EXISTS (SELECT 1 FROM triaged t WHERE t.signal_id = s.id) \
             ORDER BY s.received_at, s.id LIMIT $2",
        )
        .bind(since)
        .bind(limit)
        .bind(before)
        .fetch_all(self.pool())
        .await?;
        rows.iter()
            .map(|r| {
                let source: String = r.try_get("source")?;
                Ok(PendingSignal {
                    id: r.try_get("id")?,
                    source: Source::parse(&source).ok_or(StoreError::Corrupt {
                        column: "signals.source",
                        value: source,
                    })?,
                    link_id: r.try_get("link_id")?,
                    account: r.try_get("account")?,
                    device_id: r.try_get("device_id")?,
                    kind: r.try_get("kind")?,
                    decoded: r.try_get("decoded")?,
                    received_at: r.try_get("received_at")?,
                })
            })
            .collect()
    }
}
