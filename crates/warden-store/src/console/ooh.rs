//! The out-of-hours desk: categories, jobs, references and updates.

#[allow(clippy::wildcard_imports)]
use super::*;

impl Store {
    // ---- out-of-hours desk ----------------------------------------------------------

    pub async fn ooh_categories(&self) -> Result<Vec<OohCategory>, StoreError> {
        Ok(sqlx::query_as(
            "SELECT code, name, oncall_name, oncall_phone FROM ooh_categories ORDER BY name",
        )
        .fetch_all(self.pool())
        .await?)
    }

    pub async fn save_ooh_category(
        &self,
        c: &OohCategory,
        audit: AuditWrite,
    ) -> Result<OohCategory, WriteRefused> {
        let mut tx = self.pool().begin().await?;
        let before: Option<Value> =
            sqlx::query_scalar("SELECT to_jsonb(c) FROM ooh_categories c WHERE code = $1")
                .bind(&c.code)
                .fetch_optional(&mut *tx)
                .await?;
        sqlx::query(
            "INSERT INTO ooh_categories (code, name, oncall_name, oncall_phone) VALUES ($1, $2, $3, $4) \
             ON CONFLICT (code) DO UPDATE SET name = $2, oncall_name = $3, oncall_phone = $4",
        )
        .bind(&c.code)
        .bind(&c.name)
        .bind(&c.oncall_name)
        .bind(&c.oncall_phone)
        .execute(&mut *tx)
        .await?;
        insert_audit(
            &mut tx,
            &AuditWrite {
                object_id: Some(c.code.clone()),
                before,
                after: Some(serde_json::to_value(c).unwrap_or_default()),
                ..audit
            },
        )
        .await?;
        tx.commit().await?;
        Ok(c.clone())
    }

    /// Logs a job: takes the next reference of `year`, stores the job with where it was
    /// routed (`None`: nobody to route to, recorded as `unrouted`), its first update, the
    /// caller's message with the reference (when they asked for SMS or e-mail; its words
    /// from `text`) and the audit line, all in one transaction.
    pub async fn create_ooh_job(
        &self,
        year: i32,
        job: &NewOohJob,
        routed: Option<(&str, &str)>,
        user_id: i64,
        audit: AuditWrite,
        text: CallerText,
    ) -> Result<String, WriteRefused> {
        let routed = routed.map(|(name, phone)| JobRouting {
            name,
            phone,
            via: "",
            person: None,
        });
        self.create_routed_ooh_job(year, job, routed, user_id, audit, text)
            .await
    }

    /// [`Store::create_ooh_job`], saying in the job's first update (and its audit line) how
    /// the contact was found.
    pub async fn create_routed_ooh_job(
        &self,
        year: i32,
        job: &NewOohJob,
        routed: Option<JobRouting<'_>>,
        user_id: i64,
        audit: AuditWrite,
        text: CallerText,
    ) -> Result<String, WriteRefused> {
        let mut tx = self.pool().begin().await?;
        let n: i32 = sqlx::query_scalar(
            "INSERT INTO ooh_counters (year, last) VALUES ($1, 1) \
             ON CONFLICT (year) DO UPDATE SET last = ooh_counters.last + 1 RETURNING last",
        )
        .bind(year)
        .fetch_one(&mut *tx)
        .await?;
        let reference = format!("OOH-{year:04}-{n:06}");
        let status = if routed.is_some() {
            JobStatus::Routed
        } else {
            JobStatus::Unrouted
        };
        sqlx::query(
            "INSERT INTO ooh_jobs (reference, category, caller_name, caller_phone, address, \
                 description, urgency, status, routed_name, routed_phone, created_by, \
                 caller_contact, caller_email, caller_needs, routed_person) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15)",
        )
        .bind(&reference)
        .bind(&job.category)
        .bind(&job.caller_name)
        .bind(&job.caller_phone)
        .bind(&job.address)
        .bind(&job.description)
        .bind(&job.urgency)
        .bind(status.as_str())
        .bind(routed.map(|r| r.name))
        .bind(routed.map(|r| r.phone))
        .bind(user_id)
        .bind(&job.caller_contact)
        .bind(&job.caller_email)
        .bind(&job.caller_needs)
        .bind(routed.and_then(|r| r.person))
        .execute(&mut *tx)
        .await?;
        let note = match routed {
            Some(r) if r.via.is_empty() => format!("routed to {} ({})", r.name, r.phone),
            Some(r) => format!("routed to {} ({}) by {}", r.name, r.phone, r.via),
            None => "no on-call contact for this category: not routed".to_owned(),
        };
        let seq: i64 = sqlx::query_scalar(
            "INSERT INTO ooh_updates (reference, status, note, by_user) VALUES ($1, $2, $3, $4) \
             RETURNING seq",
        )
        .bind(&reference)
        .bind(status.as_str())
        .bind(&note)
        .bind(user_id)
        .fetch_one(&mut *tx)
        .await?;
        tell_caller(&mut tx, &reference, seq, status, text).await?;
        let mut after = serde_json::to_value(JobAudit::from(job)).unwrap_or_default();
        after["status"] = status.as_str().into();
        after["reference"] = reference.clone().into();
        if let Some(r) = routed.filter(|r| !r.via.is_empty()) {
            after["routed_via"] = r.via.into();
        }
        insert_audit(
            &mut tx,
            &AuditWrite {
                object_id: Some(reference.clone()),
                after: Some(after),
                ..audit
            },
        )
        .await?;
        tx.commit().await?;
        Ok(reference)
    }

    /// Jobs matching a reference, address or caller (all when `q` is empty), newest first.
    /// Jobs matching `q`, newest first; with `routed_to`, only those routed to that
    /// on-call person.
    pub async fn ooh_jobs(
        &self,
        q: &str,
        limit: i64,
        routed_to: Option<i64>,
    ) -> Result<Vec<OohJob>, StoreError> {
        let jobs = sqlx::query_as(sqlx::AssertSqlSafe(format!(
            "{JOB_SELECT} WHERE ($1 = '%%' OR j.reference ILIKE $1 OR j.address ILIKE $1 \
                OR j.caller_name ILIKE $1 OR j.caller_phone ILIKE $1) \
               AND ($3::bigint IS NULL OR j.routed_person = $3) \
             ORDER BY j.created_at DESC, j.reference DESC LIMIT $2"
        )))
        .bind(like(q))
        .bind(limit)
        .bind(routed_to)
        .fetch_all(self.pool())
        .await?;
        self.with_updates(jobs).await
    }

    pub async fn ooh_job(&self, reference: &str) -> Result<Option<OohJob>, StoreError> {
        let jobs = sqlx::query_as(sqlx::AssertSqlSafe(format!(
            "{JOB_SELECT} WHERE j.reference = $1"
        )))
        .bind(reference)
        .fetch_all(self.pool())
        .await?;
        Ok(self.with_updates(jobs).await?.pop())
    }

    /// Leases up to `limit` caller messages due at `now` (their next attempt moves to
    /// `now + lease`, so no other process sends them meanwhile).
    pub async fn lease_caller_messages(
        &self,
        now: OffsetDateTime,
        lease: std::time::Duration,
        limit: i64,
    ) -> Result<Vec<CallerMessage>, StoreError> {
        Ok(sqlx::query_as(
            "WITH due AS ( \
                 SELECT id FROM caller_messages WHERE status = 'pending' AND next_attempt_at <= $1 \
                 ORDER BY next_attempt_at LIMIT $3 FOR UPDATE SKIP LOCKED) \
             UPDATE caller_messages m SET next_attempt_at = $1 + $2 * interval '1 millisecond' \
             FROM due WHERE m.id = due.id \
             RETURNING m.id, m.reference, m.channel, m.address, m.body, m.created_at, m.status, \
                       m.attempts, m.outcome",
        )
        .bind(now)
        .bind(i64::try_from(lease.as_millis()).unwrap_or(i64::MAX))
        .bind(limit)
        .fetch_all(self.pool())
        .await?)
    }

    /// Records an attempt at a caller message made at `at`: `delivered`, `failed` (for
    /// good), or still `pending` until `next_attempt_at`; the message keeps the last outcome
    /// and `caller_message_attempts` every one.
    pub async fn caller_message_attempted(
        &self,
        id: i64,
        status: &str,
        outcome: &str,
        next_attempt_at: Option<OffsetDateTime>,
        at: OffsetDateTime,
    ) -> Result<(), StoreError> {
        sqlx::query(
            "WITH m AS ( \
                 UPDATE caller_messages SET attempts = attempts + 1, status = $2, outcome = $3, \
                        next_attempt_at = $4 WHERE id = $1 RETURNING id) \
             INSERT INTO caller_message_attempts (message_id, at, status, outcome) \
             SELECT id, $5, $2, $3 FROM m",
        )
        .bind(id)
        .bind(status)
        .bind(outcome)
        .bind(next_attempt_at)
        .bind(at)
        .execute(self.pool())
        .await?;
        Ok(())
    }

    /// Fills in each job's updates and caller messages, in order, with one query each for
    /// all of them.
    async fn with_updates(&self, mut jobs: Vec<OohJob>) -> Result<Vec<OohJob>, StoreError> {
        let references: Vec<&str> = jobs.iter().map(|j| j.reference.as_str()).collect();
        let updates: Vec<JobUpdate> = sqlx::query_as(
            "SELECT o.reference, o.at, o.status, o.note, u.display_name AS by \
             FROM ooh_updates o LEFT JOIN users u ON u.id = o.by_user \
             WHERE o.reference = ANY($1) ORDER BY o.seq",
        )
        .bind(&references)
        .fetch_all(self.pool())
        .await?;
        let mut by_reference: std::collections::HashMap<String, Vec<OohUpdate>> =
            std::collections::HashMap::new();
        for u in updates {
            by_reference.entry(u.reference).or_default().push(u.update);
        }
        let messages: Vec<CallerMessage> = sqlx::query_as(
            "SELECT id, reference, channel, address, body, created_at, status, attempts, outcome \
             FROM caller_messages WHERE reference = ANY($1) ORDER BY id",
        )
        .bind(&references)
        .fetch_all(self.pool())
        .await?;
        let mut messages_of: std::collections::HashMap<String, Vec<CallerMessage>> =
            std::collections::HashMap::new();
        for m in messages {
            messages_of.entry(m.reference.clone()).or_default().push(m);
        }
        for job in &mut jobs {
            job.updates = by_reference.remove(&job.reference).unwrap_or_default();
            job.messages = messages_of.remove(&job.reference).unwrap_or_default();
        }
        Ok(jobs)
    }

    /// Moves a job to a new status with a note, and queues the caller's message about it
    /// (when they asked for SMS or e-mail; words from `text`); `Ok(false)` when there is no
    /// such job.
    pub async fn ooh_set_status(
        &self,
        reference: &str,
        status: JobStatus,
        note: &str,
        user_id: i64,
        audit: AuditWrite,
        text: CallerText,
    ) -> Result<bool, WriteRefused> {
        let mut tx = self.pool().begin().await?;
        let before: Option<String> =
            sqlx::query_scalar("SELECT status FROM ooh_jobs WHERE reference = $1 FOR UPDATE")
                .bind(reference)
                .fetch_optional(&mut *tx)
                .await?;
        let Some(before) = before else {
            return Ok(false);
        };
        sqlx::query("UPDATE ooh_jobs SET status = $2 WHERE reference = $1")
            .bind(reference)
            .bind(status.as_str())
            .execute(&mut *tx)
            .await?;
        let seq: i64 = sqlx::query_scalar(
            "INSERT INTO ooh_updates (reference, status, note, by_user) VALUES ($1, $2, $3, $4) \
             RETURNING seq",
        )
        .bind(reference)
        .bind(status.as_str())
        .bind(note)
        .bind(user_id)
        .fetch_one(&mut *tx)
        .await?;
        tell_caller(&mut tx, reference, seq, status, text).await?;
        insert_audit(
            &mut tx,
            &AuditWrite {
                object_id: Some(reference.to_owned()),
                before: Some(serde_json::json!({ "status": before })),
                after: Some(serde_json::json!({ "status": status.as_str(), "note": note })),
                ..audit
            },
        )
        .await?;
        tx.commit().await?;
        Ok(true)
    }
}

/// The columns of [`OohJob`], with its author's name.
const JOB_SELECT: &str = "SELECT j.reference, j.category, j.caller_name, j.caller_phone, \
     j.address, j.description, j.urgency, j.status, j.routed_name, j.routed_phone, \
     j.routed_person, j.created_by, u.display_name AS created_by_name, j.created_at, j.caller_contact, \
     j.caller_email, j.caller_needs \
     FROM ooh_jobs j JOIN users u ON u.id = j.created_by";

/// Queues the message telling job `reference`'s caller about update `seq` (now `status`),
/// when they asked for SMS or e-mail and gave a number or address.
async fn tell_caller(
    tx: &mut Transaction<'_, Postgres>,
    reference: &str,
    seq: i64,
    status: JobStatus,
    text: CallerText,
) -> Result<(), StoreError> {
    let (contact, phone, email, category): (String, String, String, String) = sqlx::query_as(
        "SELECT j.caller_contact, j.caller_phone, j.caller_email, c.name \
         FROM ooh_jobs j JOIN ooh_categories c ON c.code = j.category WHERE j.reference = $1",
    )
    .bind(reference)
    .fetch_one(&mut **tx)
    .await?;
    let address = match contact.as_str() {
        "sms" => phone,
        "email" => email,
        _ => return Ok(()),
    };
    if address.trim().is_empty() {
        return Ok(());
    }
    let body = text(&CallerUpdate {
        reference,
        category: &category,
        status,
    });
    sqlx::query(
        "INSERT INTO caller_messages (reference, update_seq, channel, address, body) \
         VALUES ($1, $2, $3, $4, $5)",
    )
    .bind(reference)
    .bind(seq)
    .bind(&contact)
    .bind(address.trim())
    .bind(body)
    .execute(&mut **tx)
    .await?;
    Ok(())
}

/// One update with the job it belongs to.
#[derive(sqlx::FromRow)]
struct JobUpdate {
    reference: String,
    #[sqlx(flatten)]
    update: OohUpdate,
}
