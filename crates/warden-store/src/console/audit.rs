//! The audit trail: who did what to which record, and when.

#[allow(clippy::wildcard_imports)]
use super::*;

/// What [`Store::rekey_clients`] did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Rekeyed {
    /// Clients looked at.
    pub clients: u64,
    /// Values sealed again under the current key (or sealed for the first time).
    pub resealed: u64,
    /// Values that could not be opened (their key is not configured, or damage): left as
    /// they were.
    pub unreadable: u64,
}

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

    /// Audit lines, newest first; a client's sealed medical notes are opened for the reader.
    pub async fn audit_list(
        &self,
        object_type: Option<&str>,
        object_id: Option<&str>,
        user_id: Option<i64>,
        limit: i64,
    ) -> Result<Vec<AuditRow>, StoreError> {
        let mut rows: Vec<AuditRow> = sqlx::query_as(
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
        .await?;
        for row in rows.iter_mut().filter(|r| r.object_type == "client") {
            for doc in [&mut row.before, &mut row.after].into_iter().flatten() {
                if let Some(notes) = doc.get_mut("medical_notes")
                    && let Some(text) = notes.as_str()
                    && seal::is_sealed(text)
                {
                    *notes = seal::open_or_placeholder(seal::Field::MedicalNotes, text).into();
                }
            }
        }
        Ok(rows)
    }

    /// Re-seals every client's key-safe code and medical notes that is not sealed under
    /// the current key (or not sealed at all), `batch` clients per transaction. Audit lines
    /// are append-only and keep what they were sealed with: keep a retired key configured
    /// for as long as the trail must be readable.
    pub async fn rekey_clients(
        &self,
        sealer: &seal::Sealer,
        batch: i64,
    ) -> Result<Rekeyed, StoreError> {
        let mut out = Rekeyed::default();
        let mut after = 0i64;
        loop {
            let mut tx = self.pool().begin().await?;
            let rows: Vec<(i64, String, Option<String>)> = sqlx::query_as(
                "SELECT id, medical_notes, key_safe FROM clients WHERE id > $1 \
                 ORDER BY id LIMIT $2 FOR UPDATE",
            )
            .bind(after)
            .bind(batch.max(1))
            .fetch_all(&mut *tx)
            .await?;
            let Some(last) = rows.last().map(|r| r.0) else {
                break;
            };
            after = last;
            for (id, notes, key_safe) in rows {
                out.clients += 1;
                let mut fields = vec![(seal::Field::MedicalNotes, Some(notes))];
                fields.push((seal::Field::KeySafe, key_safe));
                let mut new = Vec::new();
                for (field, value) in fields {
                    let value = value.filter(|v| !v.is_empty() && !sealer.is_current(v));
                    let Some(value) = value else {
                        new.push(None);
                        continue;
                    };
                    match sealer
                        .open(field, &value)
                        .and_then(|plain| sealer.seal(field, &plain))
                    {
                        Ok(v) => {
                            out.resealed += 1;
                            new.push(Some(v));
                        }
                        Err(e) => {
                            tracing::error!(client = id, ?field, error = %e, "a value could not be re-sealed");
                            out.unreadable += 1;
                            new.push(None);
                        }
                    }
                }
                if new.iter().any(Option::is_some) {
                    sqlx::query(
                        "UPDATE clients SET medical_notes = COALESCE($2, medical_notes), \
                         key_safe = COALESCE($3, key_safe) WHERE id = $1",
                    )
                    .bind(id)
                    .bind(&new[0])
                    .bind(&new[1])
                    .execute(&mut *tx)
                    .await?;
                }
            }
            tx.commit().await?;
        }
        Ok(out)
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
