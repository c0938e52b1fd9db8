//! The audit trail: who did what to which record, and when.

#[allow(clippy::wildcard_imports)]
use super::*;

impl Store {
    pub async fn audit(&self, a: &AuditWrite) -> Result<(), StoreError> {
        let mut tx = self.pool().begin().await?;
        insert_audit(&mut tx, a).await?;
        tx.commit().await?;
        Ok(())
    }

    /// Writes a line kept during an outage unless the very same line (time, user, action,
    /// object) is already there: written before a crash that came before its journal was
    /// emptied. `true` when written now.
    pub async fn audit_once(&self, a: &AuditWrite) -> Result<bool, StoreError> {
        let mut tx = self.pool().begin().await?;
        let there: bool = sqlx::query_scalar(
            "SELECT EXISTS (SELECT 1 FROM audit WHERE object_type = $1 \
               AND object_id IS NOT DISTINCT FROM $2 AND at = $3 \
               AND user_id IS NOT DISTINCT FROM $4 AND action = $5)",
        )
        .bind(&a.object_type)
        .bind(&a.object_id)
        .bind(a.at)
        .bind(a.user_id)
        .bind(&a.action)
        .fetch_one(&mut *tx)
        .await?;
        if there {
            return Ok(false);
        }
        insert_audit(&mut tx, a).await?;
        tx.commit().await?;
        Ok(true)
    }

    pub async fn audit_list(
        &self,
        object_type: Option<&str>,
        object_id: Option<&str>,
        user_id: Option<i64>,
        limit: i64,
    ) -> Result<Vec<AuditRow>, StoreError> {
        Ok(sqlx::query_as(
            "SELECT a.id, a.at, a.user_id, u.display_name AS user_name, a.action, a.object_type, a.object_id, \
                    a.before, a.after, a.request_id, a.ip \
             FROM audit a LEFT JOIN users u ON u.id = a.user_id \
             WHERE ($1::text IS NULL OR a.object_type = $1) \
               AND ($2::text IS NULL OR a.object_id = $2) \
               AND ($3::bigint IS NULL OR a.user_id = $3) \
             ORDER BY a.id DESC LIMIT $4",
        )
        .bind(object_type)
        .bind(object_id)
        .bind(user_id)
        .bind(limit)
        .fetch_all(self.pool())
        .await?)
    }

    /// Who viewed which client since `since` (one client, or all), newest first: views,
    /// key-safe reveals, and searches whose results listed the client.
    pub async fn client_access(
        &self,
        client_id: Option<i64>,
        since: OffsetDateTime,
        limit: i64,
    ) -> Result<Vec<ClientAccess>, StoreError> {
        Ok(sqlx::query_as(
            "SELECT a.at, a.user_id, u.display_name AS user_name, a.action, c.id AS client_id, \
                    c.name AS client_name, c.external_ref, a.ip, a.request_id \
             FROM audit a \
             JOIN clients c ON (a.action IN ('client.view', 'client.key_safe.reveal') \
                                AND a.object_id = c.id::text) \
                            OR (a.action = 'client.search' AND a.after -> 'ids' @> to_jsonb(c.id)) \
             LEFT JOIN users u ON u.id = a.user_id \
             WHERE a.object_type = 'client' \
               AND a.action IN ('client.view', 'client.key_safe.reveal', 'client.search') \
               AND a.at >= $1 AND ($2::bigint IS NULL OR c.id = $2) \
             ORDER BY a.at DESC, a.id DESC LIMIT $3",
        )
        .bind(since)
        .bind(client_id)
        .bind(limit)
        .fetch_all(self.pool())
        .await?)
    }
}
