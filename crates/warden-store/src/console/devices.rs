//! Device administration.

#[allow(clippy::wildcard_imports)]
use super::*;

impl Store {
    // ---- devices (administration) ---------------------------------------------------

    pub async fn device_records(&self, q: &str, limit: i64) -> Result<Vec<Device>, StoreError> {
        Ok(sqlx::query_as(sqlx::AssertSqlSafe(format!(
            "SELECT {DEVICE_COLUMNS} FROM devices \
             WHERE $1 = '%%' OR account ILIKE $1 OR label ILIKE $1 OR client_ref ILIKE $1 \
             ORDER BY id LIMIT $2"
        )))
        .bind(like(q))
        .bind(limit)
        .fetch_all(self.pool())
        .await?)
    }

    /// Every device with its area (its own, else its client's) and its client's id: what the
    /// triage core needs.
    pub async fn device_records_for_triage(&self) -> Result<Vec<TriageDevice>, StoreError> {
        Ok(sqlx::query_as(
            "SELECT d.id, d.account, d.protocol, d.label, d.device_type, d.test_interval_seconds, \
                    d.client_ref, COALESCE(d.area, c.area) AS area, d.bridge_device_id, \
                    c.id AS client_id \
             FROM devices d LEFT JOIN clients c ON c.external_ref = d.client_ref ORDER BY d.id",
        )
        .fetch_all(self.pool())
        .await?)
    }

    /// For each of `ids`: when it was last heard (its latest stored signal; one index probe
    /// each) and whether it is silent (a fail-to-report incident of it is open: its test
    /// interval passed without a word, as triage judged).
    pub async fn device_link_states(
        &self,
        ids: &[i64],
    ) -> Result<std::collections::HashMap<i64, (Option<OffsetDateTime>, bool)>, StoreError> {
        let rows = sqlx::query(
            "SELECT d.id, h.at, EXISTS (SELECT 1 FROM incidents i WHERE i.device_id = d.id \
                 AND i.kind = 'fail_to_report' AND i.resolved_at IS NULL) AS silent \
             FROM UNNEST($1::bigint[]) AS d(id) \
             CROSS JOIN LATERAL (SELECT max(s.received_at) AS at FROM signals s WHERE s.device_id = d.id) h",
        )
        .bind(ids)
        .fetch_all(self.pool())
        .await?;
        rows.iter()
            .map(|r| Ok((r.try_get(0)?, (r.try_get(1)?, r.try_get(2)?))))
            .collect::<Result<_, sqlx::Error>>()
            .map_err(Into::into)
    }

    /// When each supervised device (one with a test interval) was last heard, from the
    /// signals it sent: what the triage core needs after a restart to keep its
    /// fail-to-report deadlines. One index probe per supervised device.
    pub async fn supervised_last_heard(&self) -> Result<Vec<(i64, OffsetDateTime)>, StoreError> {
        let rows = sqlx::query(
            "SELECT d.id, h.at FROM devices d \
             CROSS JOIN LATERAL (SELECT max(s.received_at) AS at FROM signals s WHERE s.device_id = d.id) h \
             WHERE d.test_interval_seconds IS NOT NULL AND h.at IS NOT NULL",
        )
        .fetch_all(self.pool())
        .await?;
        rows.iter()
            .map(|r| Ok((r.try_get(0)?, r.try_get(1)?)))
            .collect::<Result<_, sqlx::Error>>()
            .map_err(Into::into)
    }

    /// Creates (`id == None`) or updates a device; audited.
    pub async fn save_device(
        &self,
        id: Option<i64>,
        d: &NewDevice,
        audit: AuditWrite,
    ) -> Result<Device, WriteRefused> {
        let mut tx = self.pool().begin().await?;
        let (saved, before) = save_device_tx(&mut tx, id, d).await?;
        let audit = AuditWrite {
            object_id: Some(saved.id.to_string()),
            before,
            after: Some(serde_json::to_value(&saved).unwrap_or_default()),
            ..audit
        };
        insert_audit(&mut tx, &audit).await?;
        tx.commit().await?;
        Ok(saved)
    }

    /// Upserts many devices by account in one statement (CSV import), one audit line per
    /// row in the same transaction; returns (inserted, updated).
    pub async fn import_devices(
        &self,
        rows: &[NewDevice],
        dc09: &[Dc09Row],
        audit: &AuditWrite,
        commit: bool,
    ) -> Result<(u64, u64), WriteRefused> {
        let accounts: Vec<String> = rows.iter().map(NewDevice::stored_account).collect();
        let protocols: Vec<&str> = rows.iter().map(|d| d.protocol.as_str()).collect();
        let labels: Vec<Option<&str>> = rows.iter().map(|d| d.label.as_deref()).collect();
        let types: Vec<Option<&str>> = rows.iter().map(|d| d.device_type.as_deref()).collect();
        let intervals: Vec<Option<i32>> = rows.iter().map(|d| d.test_interval_seconds).collect();
        let refs: Vec<Option<&str>> = rows.iter().map(|d| d.client_ref.as_deref()).collect();
        let areas: Vec<Option<&str>> = rows.iter().map(|d| d.area.as_deref()).collect();
        let mut tx = self.pool().begin().await?;
        let row = sqlx::query(sqlx::AssertSqlSafe(format!(
            "WITH input AS ( \
                 SELECT * FROM UNNEST($1::text[], $2::text[], $3::text[], $4::text[], $5::int[], \
                     $6::text[], $7::text[]) \
                 AS t(account, protocol, label, device_type, test_interval_seconds, client_ref, area)), \
             old AS ( \
                 SELECT d.account, jsonb_build_object({DEVICE_JSON}) AS doc \
                 FROM devices d JOIN input i USING (account)), \
             up AS ( \
                 INSERT INTO devices AS d (account, protocol, label, device_type, \
                     test_interval_seconds, client_ref, area) \
                 SELECT account, protocol, label, device_type, test_interval_seconds, client_ref, area \
                 FROM input \
                 ON CONFLICT (account) DO UPDATE SET protocol = EXCLUDED.protocol, \
                     label = EXCLUDED.label, device_type = EXCLUDED.device_type, \
                     test_interval_seconds = EXCLUDED.test_interval_seconds, \
                     client_ref = EXCLUDED.client_ref, area = EXCLUDED.area \
                 RETURNING d.id, d.account, (xmax = 0) AS inserted, jsonb_build_object({DEVICE_JSON}) AS doc), \
             logged AS ( \
                 INSERT INTO audit (user_id, action, object_type, object_id, before, after, request_id, ip) \
                 SELECT $8, $9, $10, up.id::text, old.doc, up.doc, $11, $12 \
                 FROM up LEFT JOIN old USING (account)) \
             SELECT count(*) FILTER (WHERE inserted), count(*) FILTER (WHERE NOT inserted) FROM up"
        )))
        .bind(&accounts)
        .bind(&protocols)
        .bind(&labels)
        .bind(&types)
        .bind(&intervals)
        .bind(&refs)
        .bind(&areas)
        .bind(audit.user_id)
        .bind(&audit.action)
        .bind(&audit.object_type)
        .bind(&audit.request_id)
        .bind(&audit.ip)
        .fetch_one(&mut *tx)
        .await?;
        import_dc09(&mut tx, dc09, audit).await?;
        Ok(finish_import(tx, &row, commit).await?)
    }
}

/// A DC-09 transmitter's key and settings from an import row (`None` key: left as it is).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Dc09Row {
    pub account: String,
    /// Upper-case hex of the AES key.
    pub key_hex: Option<String>,
    pub settings: crate::Dc09Settings,
}

/// Writes the keys and settings of an import's DC-09 rows in its transaction; the audit
/// trail says which accounts got a key and its size, never the key.
async fn import_dc09(
    tx: &mut sqlx::Transaction<'_, sqlx::Postgres>,
    rows: &[Dc09Row],
    audit: &AuditWrite,
) -> Result<(), sqlx::Error> {
    if rows.is_empty() {
        return Ok(());
    }
    let accounts: Vec<&str> = rows.iter().map(|r| r.account.as_str()).collect();
    let keys: Vec<Option<&str>> = rows.iter().map(|r| r.key_hex.as_deref()).collect();
    let receivers: Vec<Option<&str>> = rows
        .iter()
        .map(|r| r.settings.receiver.as_deref())
        .collect();
    let lines: Vec<Option<&str>> = rows.iter().map(|r| r.settings.line.as_deref()).collect();
    let before: Vec<Option<i32>> = rows.iter().map(|r| r.settings.before_seconds).collect();
    let after: Vec<Option<i32>> = rows.iter().map(|r| r.settings.after_seconds).collect();
    sqlx::query(
        "WITH input AS ( \
             SELECT d.id, t.key_hex, t.receiver, t.line, t.before_seconds, t.after_seconds \
             FROM UNNEST($1::text[], $2::text[], $3::text[], $4::text[], $5::int[], $6::int[]) \
                 AS t(account, key_hex, receiver, line, before_seconds, after_seconds) \
             JOIN devices d ON d.account = t.account), \
         keys AS ( \
             INSERT INTO dc09_keys (device_id, key_hex) \
             SELECT id, upper(key_hex) FROM input WHERE key_hex IS NOT NULL \
             ON CONFLICT (device_id) DO UPDATE SET key_hex = EXCLUDED.key_hex, set_at = now() \
             RETURNING device_id, length(key_hex) * 4 AS bits), \
         settings AS ( \
             INSERT INTO dc09_accounts (device_id, receiver, line, before_seconds, after_seconds) \
             SELECT id, upper(receiver), upper(line), before_seconds, after_seconds FROM input \
             ON CONFLICT (device_id) DO UPDATE SET receiver = EXCLUDED.receiver, \
                 line = EXCLUDED.line, before_seconds = EXCLUDED.before_seconds, \
                 after_seconds = EXCLUDED.after_seconds, set_at = now() \
             RETURNING device_id) \
         INSERT INTO audit (user_id, action, object_type, object_id, after, request_id, ip) \
         SELECT $7, 'device.dc09_key', 'device', device_id::text, \
             jsonb_build_object('key_bits', bits, 'via', 'import'), $8, $9 FROM keys",
    )
    .bind(&accounts)
    .bind(&keys)
    .bind(&receivers)
    .bind(&lines)
    .bind(&before)
    .bind(&after)
    .bind(audit.user_id)
    .bind(&audit.request_id)
    .bind(&audit.ip)
    .execute(&mut **tx)
    .await?;
    Ok(())
}
