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
    /// routed (`None`: nobody to route to, recorded as `unrouted`), its first update and the
    /// audit line, all in one transaction.
    pub async fn create_ooh_job(
        &self,
        year: i32,
        job: &NewOohJob,
        routed: Option<(&str, &str)>,
        user_id: i64,
        audit: AuditWrite,
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
                 description, urgency, status, routed_name, routed_phone, created_by) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)",
        )
        .bind(&reference)
        .bind(&job.category)
        .bind(&job.caller_name)
        .bind(&job.caller_phone)
        .bind(&job.address)
        .bind(&job.description)
        .bind(&job.urgency)
        .bind(status.as_str())
        .bind(routed.map(|r| r.0))
        .bind(routed.map(|r| r.1))
        .bind(user_id)
        .execute(&mut *tx)
        .await?;
        let note = match routed {
            Some((name, phone)) => format!("routed to {name} ({phone})"),
            None => "no on-call contact for this category: not routed".to_owned(),
        };
        sqlx::query(
            "INSERT INTO ooh_updates (reference, status, note, by_user) VALUES ($1, $2, $3, $4)",
        )
        .bind(&reference)
        .bind(status.as_str())
        .bind(&note)
        .bind(user_id)
        .execute(&mut *tx)
        .await?;
        let mut after = serde_json::to_value(JobAudit::from(job)).unwrap_or_default();
        after["status"] = status.as_str().into();
        after["reference"] = reference.clone().into();
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
    pub async fn ooh_jobs(&self, q: &str, limit: i64) -> Result<Vec<OohJob>, StoreError> {
        let jobs = sqlx::query_as(sqlx::AssertSqlSafe(format!(
            "{JOB_SELECT} WHERE $1 = '%%' OR j.reference ILIKE $1 OR j.address ILIKE $1 \
                OR j.caller_name ILIKE $1 OR j.caller_phone ILIKE $1 \
             ORDER BY j.created_at DESC, j.reference DESC LIMIT $2"
        )))
        .bind(like(q))
        .bind(limit)
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

    /// Fills in each job's updates, in order, with one query for all of them.
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
        for job in &mut jobs {
            job.updates = by_reference.remove(&job.reference).unwrap_or_default();
        }
        Ok(jobs)
    }

    /// Moves a job to a new status with a note; `Ok(false)` when there is no such job.
    pub async fn ooh_set_status(
        &self,
        reference: &str,
        status: JobStatus,
        note: &str,
        user_id: i64,
        audit: AuditWrite,
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
        sqlx::query(
            "INSERT INTO ooh_updates (reference, status, note, by_user) VALUES ($1, $2, $3, $4)",
        )
        .bind(reference)
        .bind(status.as_str())
        .bind(note)
        .bind(user_id)
        .execute(&mut *tx)
        .await?;
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
     j.created_by, u.display_name AS created_by_name, j.created_at \
     FROM ooh_jobs j JOIN users u ON u.id = j.created_by";

/// One update with the job it belongs to.
#[derive(sqlx::FromRow)]
struct JobUpdate {
    reference: String,
    #[sqlx(flatten)]
    update: OohUpdate,
}
