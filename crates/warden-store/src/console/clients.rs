//! Client records: people, addresses, responders, key-safe reveals.

#[allow(clippy::wildcard_imports)]
use super::*;

impl Store {
    // ---- client records -------------------------------------------------------------

    pub async fn client_search(
        &self,
        q: &str,
        limit: i64,
    ) -> Result<Vec<ClientRecord>, StoreError> {
        let rows = sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT {CLIENT_COLUMNS} FROM clients \
             WHERE $1 = '%%' OR name ILIKE $1 OR address ILIKE $1 OR postcode ILIKE $1 \
                OR external_ref ILIKE $1 OR phone ILIKE $1 \
             ORDER BY name, id LIMIT $2"
        )))
        .bind(like(q))
        .bind(limit)
        .fetch_all(self.pool())
        .await?;
        Ok(rows
            .iter()
            .map(|r| ClientRecord::from_row(r).map(opened))
            .collect::<Result<_, _>>()?)
    }

    pub async fn client(&self, id: i64) -> Result<Option<ClientRecord>, StoreError> {
        let row = sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT {CLIENT_COLUMNS} FROM clients WHERE id = $1"
        )))
        .bind(id)
        .fetch_optional(self.pool())
        .await?;
        Ok(row
            .as_ref()
            .map(|r| ClientRecord::from_row(r).map(opened))
            .transpose()?)
    }

    pub async fn all_clients(&self) -> Result<Vec<(ClientRecord, Option<String>)>, StoreError> {
        let rows = sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT {CLIENT_COLUMNS}, key_safe FROM clients ORDER BY external_ref"
        )))
        .fetch_all(self.pool())
        .await?;
        rows.iter()
            .map(|r| {
                let key_safe: Option<String> = r.try_get("key_safe")?;
                Ok((
                    opened(ClientRecord::from_row(r)?),
                    key_safe.map(|k| seal::open_or_placeholder(seal::Field::KeySafe, &k)),
                ))
            })
            .collect::<Result<_, sqlx::Error>>()
            .map_err(Into::into)
    }

    pub async fn responders(&self, client_id: i64) -> Result<Vec<Responder>, StoreError> {
        Ok(responders_of(self.pool(), client_id).await?)
    }

    pub async fn client_devices(&self, external_ref: &str) -> Result<Vec<Device>, StoreError> {
        Ok(sqlx::query_as(sqlx::AssertSqlSafe(format!(
            "SELECT {DEVICE_COLUMNS} FROM devices WHERE client_ref = $1 ORDER BY id"
        )))
        .bind(external_ref)
        .fetch_all(self.pool())
        .await?)
    }

    /// The most recent signals of the devices of a client (or of one device).
    pub async fn recent_signals(
        &self,
        client_ref: Option<&str>,
        device_id: Option<i64>,
        limit: i64,
    ) -> Result<Vec<SignalSummary>, StoreError> {
        let rows = sqlx::query(
            "SELECT s.id, s.received_at, s.kind, s.source, s.account, s.decoded, s.raw FROM signals s \
             WHERE s.device_id IN (SELECT id FROM devices WHERE client_ref = $1) \
                OR s.device_id = $2 \
             ORDER BY s.received_at DESC LIMIT $3",
        )
        .bind(client_ref)
        .bind(device_id)
        .bind(limit)
        .fetch_all(self.pool())
        .await?;
        rows.iter()
            .map(|r| {
                Ok(SignalSummary {
                    id: r.try_get(0)?,
                    received_at: r.try_get(1)?,
                    kind: r.try_get(2)?,
                    source: r.try_get(3)?,
                    account: r.try_get(4)?,
                    decoded: r.try_get(5)?,
                    raw: crate::RawBytes::of(&r.try_get::<Vec<u8>, _>(6)?),
                })
            })
            .collect::<Result<_, sqlx::Error>>()
            .map_err(Into::into)
    }

    /// The key-safe code of a client, with an audit line saying who saw it, in one
    /// transaction: no reveal without its record.
    /// A client's key-safe code without an audit line: only for the console's in-memory
    /// mirror of the clients whose alarms are open (degraded mode), where each reveal to a
    /// person is audited (late, with its time) when it happens.
    pub async fn key_safe_for_mirror(&self, client_id: i64) -> Result<Option<String>, StoreError> {
        let code: Option<Option<String>> =
            sqlx::query_scalar("SELECT key_safe FROM clients WHERE id = $1")
                .bind(client_id)
                .fetch_optional(self.pool())
                .await?;
        Ok(code
            .flatten()
            .map(|k| seal::open_or_placeholder(seal::Field::KeySafe, &k)))
    }

    /// An open incident of client `client_id` (through its devices) held by `user_id`.
    pub async fn incident_held_for_client(
        &self,
        client_id: i64,
        user_id: i64,
    ) -> Result<Option<i64>, StoreError> {
        Ok(sqlx::query_scalar(
            "SELECT i.id FROM incidents i \
             JOIN devices d ON d.id = i.device_id \
             JOIN clients c ON c.external_ref = d.client_ref \
             WHERE c.id = $1 AND i.holder_id = $2 AND i.resolved_at IS NULL \
             ORDER BY i.id LIMIT 1",
        )
        .bind(client_id)
        .bind(user_id)
        .fetch_optional(self.pool())
        .await?)
    }

    /// Shows client `client_id`'s key-safe code and records `audit` with it, unless the
    /// audit line's user has been shown `per_hour` codes in the last hour already: counted
    /// from the audit trail (so a restart or a second console process does not start the
    /// count again), a user's reveals one at a time (their `users` row is locked for the
    /// transaction, so parallel requests cannot all pass the same count).
    pub async fn reveal_key_safe(
        &self,
        client_id: i64,
        audit: AuditWrite,
        per_hour: u32,
    ) -> Result<KeySafeReveal, StoreError> {
        let mut tx = self.pool().begin().await?;
        if let Some(user) = audit.user_id {
            // NO KEY UPDATE: other transactions' audit lines (their foreign key takes KEY
            // SHARE) are not held up, only this user's other reveals.
            sqlx::query("SELECT 1 FROM users WHERE id = $1 FOR NO KEY UPDATE")
                .bind(user)
                .execute(&mut *tx)
                .await?;
            let shown: i64 = sqlx::query_scalar(
                "SELECT count(*) FROM audit WHERE user_id = $1 \
                   AND action = 'client.key_safe.reveal' AND at > now() - interval '1 hour'",
            )
            .bind(user)
            .fetch_one(&mut *tx)
            .await?;
            if shown >= i64::from(per_hour) {
                return Ok(KeySafeReveal::OverLimit);
            }
        }
        let row = sqlx::query("SELECT key_safe FROM clients WHERE id = $1")
            .bind(client_id)
            .fetch_optional(&mut *tx)
            .await?;
        let Some(row) = row else {
            return Ok(KeySafeReveal::NoClient);
        };
        let code: Option<String> = row.try_get(0)?;
        insert_audit(&mut tx, &audit).await?;
        tx.commit().await?;
        Ok(KeySafeReveal::Shown(code.map(|k| {
            seal::open_or_placeholder(seal::Field::KeySafe, &k)
        })))
    }

    /// Creates (`id == None`) or replaces a client record and its responders. `key_safe`:
    /// `None` keeps the code, `Some("")` clears it. `responders`: `None` keeps those on file.
    /// Audited with before and after.
    pub async fn save_client(
        &self,
        id: Option<i64>,
        c: &ClientRecord,
        key_safe: Option<&str>,
        responders: Option<&[Responder]>,
        audit: AuditWrite,
    ) -> Result<ClientRecord, WriteRefused> {
        let mut tx = self.pool().begin().await?;
        let (saved, before) = save_client_tx(&mut tx, id, c, key_safe, responders).await?;
        let audit = AuditWrite {
            object_id: Some(saved.0.id.to_string()),
            before,
            after: Some(client_json(&saved.0, &saved.1).map_err(|e| {
                WriteRefused::Refused(Refused::Invalid(format!(
                    "the record could not be encrypted: {e}"
                )))
            })?),
            ..audit
        };
        insert_audit(&mut tx, &audit).await?;
        tx.commit().await?;
        Ok(saved.0)
    }

    /// Upserts many clients by `external_ref` in one statement (CSV import), with one audit
    /// line per row (before and after, never the key-safe code) in the same transaction;
    /// returns (inserted, updated). `commit == false` rolls back (a dry run that still meets
    /// every database check). Responders are kept; an empty key-safe keeps the code on file.
    pub async fn import_clients(
        &self,
        rows: &[(ClientRecord, Option<String>)],
        audit: &AuditWrite,
        commit: bool,
    ) -> Result<(u64, u64), WriteRefused> {
        let col =
            |f: fn(&ClientRecord) -> String| rows.iter().map(|(c, _)| f(c)).collect::<Vec<_>>();
        let refs = col(|c| c.external_ref.clone());
        let names = col(|c| c.name.clone());
        let dobs: Vec<Option<String>> = rows.iter().map(|(c, _)| c.date_of_birth.clone()).collect();
        let addresses = col(|c| c.address.clone());
        let postcodes = col(|c| c.postcode.clone());
        let phones = col(|c| c.phone.clone());
        let areas: Vec<Option<String>> = rows.iter().map(|(c, _)| c.area.clone()).collect();
        let languages = col(|c| c.language.clone());
        let interpreters: Vec<bool> = rows.iter().map(|(c, _)| c.interpreter_needed).collect();
        let needs = col(|c| c.communication_needs.clone());
        let preferred = col(|c| c.preferred_contact.clone());
        let access = col(|c| c.access_notes.clone());
        let medical = rows
            .iter()
            .map(|(c, _)| sealed(seal::Field::MedicalNotes, &c.medical_notes))
            .collect::<Result<Vec<_>, _>>()?;
        // An empty code keeps the one on file: it stays empty, unsealed.
        let key_safes = rows
            .iter()
            .map(|(_, k)| {
                k.as_deref()
                    .map(|k| sealed(seal::Field::KeySafe, k))
                    .transpose()
            })
            .collect::<Result<Vec<_>, _>>()?;
        let mut tx = self.pool().begin().await?;
        let row = sqlx::query(
            "WITH input AS ( \
                 SELECT * FROM UNNEST($1::text[], $2::text[], $3::text[], $4::text[], $5::text[], \
                     $6::text[], $7::text[], $8::text[], $9::bool[], $10::text[], $11::text[], \
                     $12::text[], $13::text[], $14::text[]) \
                 AS t(external_ref, name, dob, address, postcode, phone, area, language, \
                     interpreter_needed, communication_needs, preferred_contact, access_notes, \
                     medical_notes, key_safe)), \
             old AS ( \
                 SELECT c.external_ref, to_jsonb(c) - 'key_safe' - 'created_at' - 'updated_at' \
                     || jsonb_build_object('key_safe_set', c.key_safe IS NOT NULL) AS doc \
                 FROM clients c JOIN input i USING (external_ref)), \
             up AS ( \
                 INSERT INTO clients AS c (external_ref, name, date_of_birth, address, postcode, phone, \
                     area, language, interpreter_needed, communication_needs, preferred_contact, \
                     access_notes, medical_notes, key_safe) \
                 SELECT external_ref, name, dob::date, address, postcode, phone, area, language, \
                     interpreter_needed, communication_needs, preferred_contact, access_notes, \
                     medical_notes, NULLIF(key_safe, '') FROM input \
                 ON CONFLICT (external_ref) DO UPDATE SET name = EXCLUDED.name, \
                     date_of_birth = EXCLUDED.date_of_birth, address = EXCLUDED.address, \
                     postcode = EXCLUDED.postcode, phone = EXCLUDED.phone, area = EXCLUDED.area, \
                     language = EXCLUDED.language, interpreter_needed = EXCLUDED.interpreter_needed, \
                     communication_needs = EXCLUDED.communication_needs, \
                     preferred_contact = EXCLUDED.preferred_contact, \
                     access_notes = EXCLUDED.access_notes, medical_notes = EXCLUDED.medical_notes, \
                     key_safe = COALESCE(EXCLUDED.key_safe, c.key_safe), updated_at = now() \
                 RETURNING c.id, c.external_ref, (xmax = 0) AS inserted, \
                     to_jsonb(c) - 'key_safe' - 'created_at' - 'updated_at' \
                     || jsonb_build_object('key_safe_set', c.key_safe IS NOT NULL) AS doc), \
             logged AS ( \
                 INSERT INTO audit (user_id, action, object_type, object_id, before, after, request_id, ip) \
                 SELECT $15, $16, $17, up.id::text, old.doc, up.doc, $18, $19 \
                 FROM up LEFT JOIN old USING (external_ref)) \
             SELECT count(*) FILTER (WHERE inserted), count(*) FILTER (WHERE NOT inserted) FROM up",
        )
        .bind(&refs)
        .bind(&names)
        .bind(&dobs)
        .bind(&addresses)
        .bind(&postcodes)
        .bind(&phones)
        .bind(&areas)
        .bind(&languages)
        .bind(&interpreters)
        .bind(&needs)
        .bind(&preferred)
        .bind(&access)
        .bind(&medical)
        .bind(&key_safes)
        .bind(audit.user_id)
        .bind(&audit.action)
        .bind(&audit.object_type)
        .bind(&audit.request_id)
        .bind(&audit.ip)
        .fetch_one(&mut *tx)
        .await?;
        Ok(finish_import(tx, &row, commit).await?)
    }
}
