//! What acknowledging a page from outside the console reads (migration 0013): the shared key
//! that signs acknowledgement links, a page as its link shows it, and the pages an SMS reply
//! may acknowledge.

use time::OffsetDateTime;

use crate::{Store, StoreError};

/// A page as its acknowledgement link shows it.
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct PageView {
    pub id: i64,
    pub incident_id: i64,
    pub person_id: i64,
    pub person_name: String,
    pub priority: Option<String>,
    pub incident_kind: Option<String>,
    pub summary: Option<String>,
    pub created_at: OffsetDateTime,
    pub acked_at: Option<OffsetDateTime>,
    /// Who acknowledged the incident's pages, and how (`console`, `link`, `sms`).
    pub acked_by_name: Option<String>,
    pub acked_via: Option<String>,
}

/// An unacknowledged page sent by SMS or voice call.
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct PhonePage {
    pub id: i64,
    pub incident_id: i64,
    pub person_id: i64,
    /// The number it was sent to.
    pub address: String,
}

impl Store {
    /// The key named `name`, shared by every process on this database: `fresh` becomes it
    /// when there is none yet (the first process to ask wins; later ones read the same key).
    pub async fn notify_key(&self, name: &str, fresh: &[u8]) -> Result<Vec<u8>, StoreError> {
        sqlx::query("INSERT INTO notify_keys (name, key) VALUES ($1, $2) ON CONFLICT DO NOTHING")
            .bind(name)
            .bind(fresh)
            .execute(self.pool())
            .await?;
        Ok(
            sqlx::query_scalar("SELECT key FROM notify_keys WHERE name = $1")
                .bind(name)
                .fetch_one(self.pool())
                .await?,
        )
    }

    /// Page `page_id` with its incident and acknowledgement, for its link.
    pub async fn page_view(&self, page_id: i64) -> Result<Option<PageView>, StoreError> {
        Ok(sqlx::query_as(
            "SELECT p.id, p.incident_id, p.person_id, pe.name AS person_name, i.priority, \
                    i.kind AS incident_kind, i.summary, p.created_at, p.acked_at, \
                    ab.name AS acked_by_name, p.acked_via \
             FROM pages p JOIN people pe ON pe.id = p.person_id \
             LEFT JOIN incidents i ON i.id = p.incident_id \
             LEFT JOIN people ab ON ab.id = p.acked_by WHERE p.id = $1",
        )
        .bind(page_id)
        .fetch_optional(self.pool())
        .await?)
    }

    /// Escalation work due before `before` and not done: (escalations whose step is due,
    /// pages waiting for delivery, outbox entries not taken). What the auditor watches.
    pub async fn overdue_escalation_work(
        &self,
        before: OffsetDateTime,
    ) -> Result<(i64, i64, i64), StoreError> {
        Ok(sqlx::query_as(
            "SELECT (SELECT count(*) FROM escalations WHERE next_at < $1), \
                    (SELECT count(*) FROM pages \
                     WHERE status = 'pending' AND next_attempt_at < $1), \
                    (SELECT count(*) FROM outbox WHERE delivered_at IS NULL AND created_at < $1)",
        )
        .bind(before)
        .fetch_one(self.pool())
        .await?)
    }

    /// Unacknowledged SMS and voice pages sent since `since`, newest first (at most 1,000):
    /// what a reply from a phone may acknowledge.
    pub async fn unacknowledged_phone_pages(
        &self,
        since: OffsetDateTime,
    ) -> Result<Vec<PhonePage>, StoreError> {
        Ok(sqlx::query_as(
            "SELECT id, incident_id, person_id, address FROM pages \
             WHERE channel IN ('sms', 'voice') AND status <> 'acknowledged' AND created_at >= $1 \
             ORDER BY id DESC LIMIT 1000",
        )
        .bind(since)
        .fetch_all(self.pool())
        .await?)
    }
}
