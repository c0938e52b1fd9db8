//! On call and escalation (migration 0010): the configuration the escalator reads, and the
//! transaction in which it turns outbox entries into escalations, fires due steps and
//! records pages. Rules are kept as JSON (`warden_core::oncall` records) and evaluated by the
//! caller; this module only stores them.
//!
//! Every escalation step runs in one [`OncallTx`]: the due escalation rows are locked with
//! `FOR UPDATE SKIP LOCKED` and read together with their incident's current state, so two
//! wardend processes never fire the same step, and an incident acknowledged, claimed or
//! resolved before the commit is never paged for it.

use serde_json::Value;
use sqlx::{Postgres, Transaction};
use time::{Date, OffsetDateTime};

use crate::{Store, StoreError};

/// A rota as stored.
#[derive(Debug, Clone, PartialEq, sqlx::FromRow)]
pub struct RotaRow {
    pub id: i64,
    pub name: String,
    /// IANA zone name.
    pub zone: String,
    pub bank_holidays: Vec<Date>,
    /// `[warden_core::oncall::Layer]`.
    pub layers: Value,
}

/// A rota override as stored.
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct OverrideRow {
    pub rota_id: i64,
    pub starts_at: OffsetDateTime,
    pub ends_at: OffsetDateTime,
    pub person_id: i64,
}

/// A chain as stored.
#[derive(Debug, Clone, PartialEq, sqlx::FromRow)]
pub struct ChainRow {
    pub id: i64,
    pub name: String,
    /// A `warden_core::oncall::Chain`.
    pub doc: Value,
}

/// A routing rule: NULL fields match anything.
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct RouteRow {
    pub position: i32,
    pub priority: Option<String>,
    pub kind: Option<String>,
    pub area: Option<String>,
    pub client_id: Option<i64>,
    /// An out-of-hours category code: how the desk finds who is on call for it.
    pub ooh_category: Option<String>,
    pub chain_id: i64,
}

/// A way to reach a person.
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct ContactRow {
    pub person_id: i64,
    pub position: i32,
    /// `console`, `webhook`, `email`, `sms` or `voice`.
    pub kind: String,
    pub address: String,
    pub verified: bool,
}

/// Everything the escalator evaluates, read at once.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct OncallConfig {
    pub rotas: Vec<RotaRow>,
    pub overrides: Vec<OverrideRow>,
    pub chains: Vec<ChainRow>,
    pub routes: Vec<RouteRow>,
    /// (team, person).
    pub team_members: Vec<(i64, i64)>,
    /// In position order per person.
    pub contacts: Vec<ContactRow>,
    /// (person, name) of everyone in the directory.
    pub people: Vec<(i64, String)>,
}

/// An incident event the triage engine wrote to the outbox (an answer-time threshold passed,
/// a unit failed to report), with what the incident looks like now.
#[derive(Debug, Clone, PartialEq, sqlx::FromRow)]
pub struct OutboxEntry {
    pub id: i64,
    pub incident_id: Option<i64>,
    /// The effect's name: `overflow`, `critical`, `fail_to_report`.
    pub kind: String,
    pub priority: Option<String>,
    pub incident_kind: Option<String>,
    pub area: Option<String>,
    /// The incident's client, when known.
    pub client_id: Option<i64>,
    /// `incidents.state`; `None` when the incident row is missing.
    pub state: Option<String>,
    /// When the engine wrote the entry (the threshold passed).
    pub created_at: OffsetDateTime,
}

/// A due escalation, locked, with its incident's state.
#[derive(Debug, Clone, PartialEq, sqlx::FromRow)]
pub struct DueEscalation {
    pub incident_id: i64,
    pub chain_id: i64,
    /// A `warden_core::oncall::Escalation`.
    pub state: Value,
    /// `incidents.state` (`None`: the incident row is missing).
    pub incident_state: Option<String>,
}

/// An escalation with its incident's state: what [`DueEscalation`] is read from.
const ESCALATION_SELECT: &str = "SELECT e.incident_id, e.chain_id, e.state, \
     i.state AS incident_state FROM escalations e LEFT JOIN incidents i ON i.id = e.incident_id";

/// A page to record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewPage<'a> {
    pub incident_id: i64,
    pub person_id: i64,
    pub step: i32,
    pub round: i32,
    /// `step`, `fallback` or `reminder`.
    pub reason: &'a str,
    pub channel: &'a str,
    pub address: &'a str,
    /// `pending` (delivered after commit), `delivered` or `failed`.
    pub status: &'a str,
    pub outcome: Option<&'a str>,
    /// When a pending page is first due for delivery (the pass's time).
    pub due_at: OffsetDateTime,
}

/// A page waiting to be delivered, with what the message says.
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct PendingPage {
    pub id: i64,
    pub incident_id: i64,
    pub person_id: i64,
    pub step: i32,
    pub round: i32,
    pub reason: String,
    pub channel: String,
    pub address: String,
    /// Attempts made before this one.
    pub attempts: i32,
    pub priority: Option<String>,
    pub incident_kind: Option<String>,
    pub summary: Option<String>,
}

/// What acknowledging a page needs to know about it.
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct PageAck {
    pub incident_id: i64,
    /// Whom it paged.
    pub person_id: i64,
    pub created_at: OffsetDateTime,
    /// When the incident's pages were acknowledged, if they were.
    pub acked_at: Option<OffsetDateTime>,
}

/// A page as people see it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, sqlx::FromRow)]
#[cfg_attr(feature = "utoipa", derive(utoipa::ToSchema))]
pub struct PageRow {
    pub id: i64,
    pub incident_id: i64,
    pub person_id: i64,
    pub step: i32,
    pub round: i32,
    /// `step`, `fallback` or `reminder`.
    pub reason: String,
    pub channel: String,
    #[serde(with = "time::serde::rfc3339")]
    pub created_at: OffsetDateTime,
    /// `pending` (delivery waiting or retrying), `delivered`, `failed`, `acknowledged` or
    /// `cancelled` (the incident was answered before the channel sent it).
    pub status: String,
    pub outcome: Option<String>,
    #[serde(with = "time::serde::rfc3339::option")]
    pub acked_at: Option<OffsetDateTime>,
    /// The incident's summary line, for the inbox.
    pub summary: Option<String>,
    pub incident_kind: String,
    pub priority: String,
}

impl Store {
    /// Rotas, overrides ending after `since`, chains, routes, teams and contact methods.
    pub async fn oncall_config(&self, since: OffsetDateTime) -> Result<OncallConfig, StoreError> {
        let pool = self.pool();
        Ok(OncallConfig {
            rotas: sqlx::query_as(
                "SELECT id, name, zone, bank_holidays, layers FROM rotas ORDER BY id",
            )
            .fetch_all(pool)
            .await?,
            overrides: sqlx::query_as(
                "SELECT rota_id, starts_at, ends_at, person_id FROM rota_overrides \
                 WHERE ends_at > $1 ORDER BY id",
            )
            .bind(since)
            .fetch_all(pool)
            .await?,
            chains: sqlx::query_as("SELECT id, name, doc FROM chains ORDER BY id")
                .fetch_all(pool)
                .await?,
            routes: sqlx::query_as(
                "SELECT position, priority, kind, area, client_id, ooh_category, chain_id \
                 FROM routes ORDER BY position",
            )
            .fetch_all(pool)
            .await?,
            // People who left the directory are in no team and have no way to be reached.
            team_members: sqlx::query_as(
                "SELECT m.team_id, m.person_id FROM team_members m \
                 JOIN people p ON p.id = m.person_id WHERE p.active \
                 ORDER BY m.team_id, m.person_id",
            )
            .fetch_all(pool)
            .await?,
            contacts: sqlx::query_as(
                "SELECT c.person_id, c.position, c.kind, c.address, c.verified \
                 FROM contact_methods c JOIN people p ON p.id = c.person_id WHERE p.active \
                 ORDER BY c.person_id, c.position",
            )
            .fetch_all(pool)
            .await?,
            people: sqlx::query_as("SELECT id, name FROM people ORDER BY id")
                .fetch_all(pool)
                .await?,
        })
    }

    /// Registers the on-call person of console user `user_id` (or renames them); returns
    /// their id.
    pub async fn upsert_person_for_user(
        &self,
        name: &str,
        user_id: i64,
    ) -> Result<i64, StoreError> {
        Ok(sqlx::query_scalar(
            "INSERT INTO people (name, user_id) VALUES ($1, $2) \
             ON CONFLICT (user_id) DO UPDATE SET name = EXCLUDED.name RETURNING id",
        )
        .bind(name)
        .bind(user_id)
        .fetch_one(self.pool())
        .await?)
    }

    /// Sets contact method number `position` of a person.
    pub async fn set_contact_method(
        &self,
        person_id: i64,
        position: i32,
        kind: &str,
        address: &str,
        verified: bool,
    ) -> Result<(), StoreError> {
        sqlx::query(
            "INSERT INTO contact_methods (person_id, position, kind, address, verified) \
             VALUES ($1, $2, $3, $4, $5) ON CONFLICT (person_id, position) DO UPDATE \
             SET kind = EXCLUDED.kind, address = EXCLUDED.address, verified = EXCLUDED.verified",
        )
        .bind(person_id)
        .bind(position)
        .bind(kind)
        .bind(address)
        .bind(verified)
        .execute(self.pool())
        .await?;
        Ok(())
    }

    /// Creates or replaces the rota called `name`; returns its id. `layers` is a JSON array
    /// of `warden_core::oncall::Layer`.
    pub async fn upsert_rota(
        &self,
        name: &str,
        zone: &str,
        layers: &Value,
        bank_holidays: &[Date],
    ) -> Result<i64, StoreError> {
        Ok(sqlx::query_scalar(
            "INSERT INTO rotas (name, zone, layers, bank_holidays) VALUES ($1, $2, $3, $4) \
             ON CONFLICT (name) DO UPDATE SET zone = EXCLUDED.zone, layers = EXCLUDED.layers, \
             bank_holidays = EXCLUDED.bank_holidays RETURNING id",
        )
        .bind(name)
        .bind(zone)
        .bind(layers)
        .bind(bank_holidays)
        .fetch_one(self.pool())
        .await?)
    }

    /// Creates or replaces the chain called `name` (`doc`: a `warden_core::oncall::Chain`);
    /// returns its id.
    pub async fn upsert_chain(&self, name: &str, doc: &Value) -> Result<i64, StoreError> {
        Ok(sqlx::query_scalar(
            "INSERT INTO chains (name, doc) VALUES ($1, $2) \
             ON CONFLICT (name) DO UPDATE SET doc = EXCLUDED.doc RETURNING id",
        )
        .bind(name)
        .bind(doc)
        .fetch_one(self.pool())
        .await?)
    }

    /// Sets routing rule number `position`: incidents matching every given field climb
    /// `chain_id`.
    pub async fn set_route(
        &self,
        position: i32,
        priority: Option<&str>,
        kind: Option<&str>,
        area: Option<&str>,
        chain_id: i64,
    ) -> Result<(), StoreError> {
        sqlx::query(
            "INSERT INTO routes (position, priority, kind, area, chain_id) \
             VALUES ($1, $2, $3, $4, $5) ON CONFLICT (position) DO UPDATE \
             SET priority = EXCLUDED.priority, kind = EXCLUDED.kind, area = EXCLUDED.area, \
                 chain_id = EXCLUDED.chain_id",
        )
        .bind(position)
        .bind(priority)
        .bind(kind)
        .bind(area)
        .bind(chain_id)
        .execute(self.pool())
        .await?;
        Ok(())
    }

    /// Opens the transaction one escalation pass runs in.
    pub async fn begin_oncall(&self) -> Result<OncallTx, StoreError> {
        Ok(OncallTx {
            tx: self.pool().begin().await?,
        })
    }

    /// Leases up to `limit` pages due for delivery at `now`: their next attempt moves to
    /// `now + lease`, so no other process takes them while this one delivers.
    pub async fn lease_deliveries(
        &self,
        now: OffsetDateTime,
        lease: std::time::Duration,
        limit: i64,
    ) -> Result<Vec<PendingPage>, StoreError> {
        Ok(sqlx::query_as(
            "WITH due AS ( \
                 SELECT id FROM pages WHERE status = 'pending' AND next_attempt_at <= $1 \
                 ORDER BY next_attempt_at LIMIT $3 FOR UPDATE SKIP LOCKED), \
             leased AS ( \
                 UPDATE pages p SET next_attempt_at = $1 + $2 * interval '1 millisecond' \
                 FROM due WHERE p.id = due.id RETURNING p.*) \
             SELECT l.id, l.incident_id, l.person_id, l.step, l.round, l.reason, l.channel, \
                    l.address, l.attempts, i.priority, i.kind AS incident_kind, i.summary \
             FROM leased l LEFT JOIN incidents i ON i.id = l.incident_id ORDER BY l.id",
        )
        .bind(now)
        .bind(i64::try_from(lease.as_millis()).unwrap_or(i64::MAX))
        .bind(limit)
        .fetch_all(self.pool())
        .await?)
    }

    /// Records a delivery attempt made at `at`: `delivered`, `failed` (for good), or still
    /// `pending` with the time of the next attempt; the page keeps the last outcome and
    /// `page_attempts` every one. A page acknowledged meanwhile stays acknowledged.
    pub async fn delivery_attempted(
        &self,
        page_id: i64,
        status: &str,
        outcome: &str,
        next_attempt_at: Option<OffsetDateTime>,
        at: OffsetDateTime,
    ) -> Result<(), StoreError> {
        sqlx::query(
            "WITH page AS ( \
                 UPDATE pages SET attempts = attempts + 1, outcome = $3, next_attempt_at = $4, \
                 status = CASE WHEN status = 'acknowledged' THEN status ELSE $2 END \
                 WHERE id = $1 RETURNING id) \
             INSERT INTO page_attempts (page_id, at, status, outcome) \
             SELECT id, $5, $2, $3 FROM page",
        )
        .bind(page_id)
        .bind(status)
        .bind(outcome)
        .bind(next_attempt_at)
        .bind(at)
        .execute(self.pool())
        .await?;
        Ok(())
    }

    /// Cancels the pending pages whose incident was answered (claimed, resolved) since the
    /// pass recorded them: nobody needs them now. Returns their channels, one per page.
    pub async fn cancel_answered_deliveries(&self) -> Result<Vec<String>, StoreError> {
        Ok(sqlx::query_scalar(
            "WITH answered AS ( \
                 SELECT p.id FROM pages p LEFT JOIN incidents i ON i.id = p.incident_id \
                 WHERE p.status = 'pending' \
                   AND (i.state IS NULL OR i.state NOT IN ('raised', 'offered')) \
                 FOR UPDATE OF p SKIP LOCKED) \
             UPDATE pages p SET status = 'cancelled', next_attempt_at = NULL, \
                    outcome = 'not sent: the incident was answered before it went out' \
             FROM answered WHERE p.id = answered.id RETURNING p.channel",
        )
        .fetch_all(self.pool())
        .await?)
    }

    /// The pages of the person linked to console user `user_id`, newest first.
    pub async fn pages_for_user(
        &self,
        user_id: i64,
        limit: i64,
    ) -> Result<Vec<PageRow>, StoreError> {
        Ok(sqlx::query_as(
            "SELECT p.id, p.incident_id, p.person_id, p.step, p.round, p.reason, p.channel, \
                    p.created_at, p.status, p.outcome, p.acked_at, i.summary, \
                    i.kind AS incident_kind, i.priority \
             FROM pages p JOIN people pe ON pe.id = p.person_id \
             JOIN incidents i ON i.id = p.incident_id \
             WHERE pe.user_id = $1 ORDER BY p.id DESC LIMIT $2",
        )
        .bind(user_id)
        .bind(limit)
        .fetch_all(self.pool())
        .await?)
    }

    /// The person linked to console user `user_id`, if any.
    pub async fn person_of_user(&self, user_id: i64) -> Result<Option<i64>, StoreError> {
        Ok(
            sqlx::query_scalar("SELECT id FROM people WHERE user_id = $1")
                .bind(user_id)
                .fetch_optional(self.pool())
                .await?,
        )
    }
}

/// One escalation pass: outbox entries taken, due steps fired, pages recorded, all or none.
pub struct OncallTx {
    tx: Transaction<'static, Postgres>,
}

impl std::fmt::Debug for OncallTx {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OncallTx").finish_non_exhaustive()
    }
}

impl OncallTx {
    /// Outbox entries not yet handled, oldest first, locked (other passes skip them). The
    /// client is the incident's device's client as the registry has it now (the same join as
    /// the console's incident view; the incident's `doc` is never read by SQL).
    pub async fn pending_outbox(&mut self, limit: i64) -> Result<Vec<OutboxEntry>, StoreError> {
        Ok(sqlx::query_as(
            "SELECT o.id, o.incident_id, o.kind, i.priority, i.kind AS incident_kind, i.area, \
                    c.id AS client_id, i.state, o.created_at \
             FROM outbox o LEFT JOIN incidents i ON i.id = o.incident_id \
             LEFT JOIN devices d ON d.id = i.device_id \
             LEFT JOIN clients c ON c.external_ref = d.client_ref \
             WHERE o.delivered_at IS NULL ORDER BY o.id LIMIT $1 \
             FOR UPDATE OF o SKIP LOCKED",
        )
        .bind(limit)
        .fetch_all(&mut *self.tx)
        .await?)
    }

    /// Marks outbox entries handled.
    pub async fn outbox_done(&mut self, ids: &[i64], at: OffsetDateTime) -> Result<(), StoreError> {
        sqlx::query("UPDATE outbox SET delivered_at = $2 WHERE id = ANY($1)")
            .bind(ids)
            .bind(at)
            .execute(&mut *self.tx)
            .await?;
        Ok(())
    }

    /// Starts an escalation for `incident_id` unless one is running (an ended one, stopped
    /// by a claim or run out, starts again: the incident is waiting again); returns whether
    /// it started.
    pub async fn start_escalation(
        &mut self,
        incident_id: i64,
        chain_id: i64,
        state: &Value,
        next_at: Option<OffsetDateTime>,
        at: OffsetDateTime,
    ) -> Result<bool, StoreError> {
        let done = sqlx::query(
            "INSERT INTO escalations AS e (incident_id, chain_id, state, next_at, started_at) \
             VALUES ($1, $2, $3, $4, $5) ON CONFLICT (incident_id) DO UPDATE \
             SET chain_id = EXCLUDED.chain_id, state = EXCLUDED.state, \
                 next_at = EXCLUDED.next_at, started_at = EXCLUDED.started_at, \
                 updated_at = clock_timestamp() \
             WHERE e.next_at IS NULL",
        )
        .bind(incident_id)
        .bind(chain_id)
        .bind(state)
        .bind(next_at)
        .bind(at)
        .execute(&mut *self.tx)
        .await?;
        Ok(done.rows_affected() == 1)
    }

    /// Escalations due at `now`, oldest first, locked, with their incident's state.
    pub async fn due_escalations(
        &mut self,
        now: OffsetDateTime,
        limit: i64,
    ) -> Result<Vec<DueEscalation>, StoreError> {
        Ok(sqlx::query_as(sqlx::AssertSqlSafe(format!(
            "{ESCALATION_SELECT} WHERE e.next_at <= $1 ORDER BY e.next_at LIMIT $2 \
                 FOR UPDATE OF e SKIP LOCKED"
        )))
        .bind(now)
        .bind(limit)
        .fetch_all(&mut *self.tx)
        .await?)
    }

    /// The escalation of `incident_id`, locked (waits for a pass holding it), with its
    /// incident's state; `None` when the incident never escalated.
    pub async fn lock_escalation(
        &mut self,
        incident_id: i64,
    ) -> Result<Option<DueEscalation>, StoreError> {
        Ok(sqlx::query_as(sqlx::AssertSqlSafe(format!(
            "{ESCALATION_SELECT} WHERE e.incident_id = $1 FOR UPDATE OF e"
        )))
        .bind(incident_id)
        .fetch_optional(&mut *self.tx)
        .await?)
    }

    /// Writes an escalation's new state.
    pub async fn save_escalation(
        &mut self,
        incident_id: i64,
        state: &Value,
        next_at: Option<OffsetDateTime>,
    ) -> Result<(), StoreError> {
        sqlx::query(
            "UPDATE escalations SET state = $2, next_at = $3, updated_at = clock_timestamp() \
             WHERE incident_id = $1",
        )
        .bind(incident_id)
        .bind(state)
        .bind(next_at)
        .execute(&mut *self.tx)
        .await?;
        Ok(())
    }

    /// Records a page; returns its id.
    pub async fn insert_page(&mut self, p: &NewPage<'_>) -> Result<i64, StoreError> {
        Ok(sqlx::query_scalar(
            "INSERT INTO pages (incident_id, person_id, step, round, reason, channel, address, \
                                status, outcome, next_attempt_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, \
                     CASE WHEN $8 = 'pending' THEN $10 END) RETURNING id",
        )
        .bind(p.incident_id)
        .bind(p.person_id)
        .bind(p.step)
        .bind(p.round)
        .bind(p.reason)
        .bind(p.channel)
        .bind(p.address)
        .bind(p.status)
        .bind(p.outcome)
        .bind(p.due_at)
        .fetch_one(&mut *self.tx)
        .await?)
    }

    /// The incident of page `page_id`, whom it paged, when, and whether it was acknowledged.
    pub async fn page(&mut self, page_id: i64) -> Result<Option<PageAck>, StoreError> {
        Ok(sqlx::query_as(
            "SELECT incident_id, person_id, created_at, acked_at FROM pages WHERE id = $1",
        )
        .bind(page_id)
        .fetch_optional(&mut *self.tx)
        .await?)
    }

    /// Marks every unacknowledged page of `incident_id` acknowledged by `person_id` through
    /// `via` (`console`, `link` or `sms`).
    pub async fn acknowledge_pages(
        &mut self,
        incident_id: i64,
        person_id: i64,
        via: &str,
        at: OffsetDateTime,
    ) -> Result<(), StoreError> {
        sqlx::query(
            "UPDATE pages SET status = 'acknowledged', acked_at = $3, acked_by = $2, \
                    acked_via = $4 \
             WHERE incident_id = $1 AND status <> 'acknowledged'",
        )
        .bind(incident_id)
        .bind(person_id)
        .bind(at)
        .bind(via)
        .execute(&mut *self.tx)
        .await?;
        Ok(())
    }

    /// Adds a line to the incident's history (the same append-only table the engine writes),
    /// so escalation is read beside everything else that happened to the incident.
    pub async fn incident_event(
        &mut self,
        incident_id: Option<i64>,
        kind: &str,
        detail: &Value,
    ) -> Result<(), StoreError> {
        sqlx::query("INSERT INTO incident_events (incident_id, kind, effect) VALUES ($1, $2, $3)")
            .bind(incident_id)
            .bind(kind)
            .bind(detail)
            .execute(&mut *self.tx)
            .await?;
        Ok(())
    }

    /// Makes the pass durable.
    pub async fn commit(self) -> Result<(), StoreError> {
        self.tx.commit().await?;
        Ok(())
    }
}
