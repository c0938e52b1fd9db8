//! Console accounts and their sessions (sign-in, lock-out, CSRF tokens).

#[allow(clippy::wildcard_imports)]
use super::*;

impl Store {
    pub async fn user_by_username(&self, username: &str) -> Result<Option<UserRow>, StoreError> {
        let row = sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT {USER_COLUMNS} FROM users WHERE username = $1"
        )))
        .bind(username)
        .fetch_optional(self.pool())
        .await?;
        Ok(row.as_ref().map(UserRow::from_row).transpose()?)
    }

    pub async fn user_by_id(&self, id: i64) -> Result<Option<UserRow>, StoreError> {
        let row = sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT {USER_COLUMNS} FROM users WHERE id = $1"
        )))
        .bind(id)
        .fetch_optional(self.pool())
        .await?;
        Ok(row.as_ref().map(UserRow::from_row).transpose()?)
    }

    pub async fn users(&self) -> Result<Vec<UserRow>, StoreError> {
        let rows = sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT {USER_COLUMNS} FROM users ORDER BY username"
        )))
        .fetch_all(self.pool())
        .await?;
        Ok(rows
            .iter()
            .map(UserRow::from_row)
            .collect::<Result<_, _>>()?)
    }

    /// Creates an account; the audit line is written in the same transaction.
    pub async fn insert_user(
        &self,
        u: &UserWrite,
        audit: AuditWrite,
    ) -> Result<UserRow, WriteRefused> {
        let hash = u
            .password_hash
            .as_deref()
            .ok_or_else(|| Refused::Invalid("a new user needs a password".into()))?;
        let mut tx = self.pool().begin().await?;
        let row = sqlx::query(sqlx::AssertSqlSafe(format!(
            "INSERT INTO users (username, display_name, role, password_hash, disabled) \
             VALUES ($1, $2, $3, $4, $5) RETURNING {USER_COLUMNS}"
        )))
        .bind(&u.username)
        .bind(&u.display_name)
        .bind(u.role.as_str())
        .bind(hash)
        .bind(u.disabled)
        .fetch_one(&mut *tx)
        .await?;
        let user = UserRow::from_row(&row)?;
        let audit = AuditWrite {
            object_id: Some(user.id.to_string()),
            after: Some(user_json(&user)),
            ..audit
        };
        insert_audit(&mut tx, &audit).await?;
        tx.commit().await?;
        Ok(user)
    }

    /// Updates an account; a disabled account's sessions end at once.
    pub async fn update_user(
        &self,
        id: i64,
        u: &UserWrite,
        audit: AuditWrite,
    ) -> Result<UserRow, WriteRefused> {
        let mut tx = self.pool().begin().await?;
        let before = sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT {USER_COLUMNS} FROM users WHERE id = $1 FOR UPDATE"
        )))
        .bind(id)
        .fetch_optional(&mut *tx)
        .await?
        .as_ref()
        .map(UserRow::from_row)
        .transpose()?
        .ok_or_else(|| Refused::Missing(format!("user {id}")))?;
        let row = sqlx::query(sqlx::AssertSqlSafe(format!(
            "UPDATE users SET username = $2, display_name = $3, role = $4, \
             password_hash = COALESCE($5, password_hash), disabled = $6, \
             failed_logins = CASE WHEN $5 IS NULL THEN failed_logins ELSE 0 END, \
             locked_until = CASE WHEN $5 IS NULL THEN locked_until ELSE NULL END, \
             updated_at = now() WHERE id = $1 RETURNING {USER_COLUMNS}"
        )))
        .bind(id)
        .bind(&u.username)
        .bind(&u.display_name)
        .bind(u.role.as_str())
        .bind(&u.password_hash)
        .bind(u.disabled)
        .fetch_one(&mut *tx)
        .await?;
        let user = UserRow::from_row(&row)?;
        if user.disabled || u.password_hash.is_some() || user.role != before.role {
            sqlx::query("DELETE FROM sessions WHERE user_id = $1")
                .bind(id)
                .execute(&mut *tx)
                .await?;
        }
        let mut after = user_json(&user);
        if u.password_hash.is_some() {
            after["password_changed"] = Value::Bool(true);
        }
        let audit = AuditWrite {
            object_id: Some(id.to_string()),
            before: Some(user_json(&before)),
            after: Some(after),
            ..audit
        };
        insert_audit(&mut tx, &audit).await?;
        tx.commit().await?;
        Ok(user)
    }

    /// Counts a failed login; after `max_failures` in a row the account locks until
    /// `now + lock_for`. Returns the new count and the lock, if any.
    pub async fn record_login_failure(
        &self,
        id: i64,
        max_failures: i32,
        lock_for: std::time::Duration,
    ) -> Result<(i32, Option<OffsetDateTime>), StoreError> {
        let lock_secs = f64::from(u32::try_from(lock_for.as_secs()).unwrap_or(u32::MAX));
        let row = sqlx::query(
            // A lock that has run out starts the count again, so one typo after it does
            // not lock the account at once.
            "UPDATE users SET \
             failed_logins = CASE WHEN locked_until <= now() THEN 1 ELSE failed_logins + 1 END, \
             locked_until = CASE \
                 WHEN (CASE WHEN locked_until <= now() THEN 1 ELSE failed_logins + 1 END) >= $2 \
                     THEN now() + make_interval(secs => $3) \
                 WHEN locked_until <= now() THEN NULL ELSE locked_until END \
             WHERE id = $1 RETURNING failed_logins, locked_until",
        )
        .bind(id)
        .bind(max_failures)
        .bind(lock_secs)
        .fetch_one(self.pool())
        .await?;
        Ok((row.try_get(0)?, row.try_get(1)?))
    }

    /// Opens a session after a good password: resets the failure count.
    pub async fn create_session(
        &self,
        user_id: i64,
        token_hash: &[u8],
        csrf_token: &str,
        expires_at: OffsetDateTime,
        ip: Option<&str>,
    ) -> Result<(), StoreError> {
        let mut tx = self.pool().begin().await?;
        sqlx::query("UPDATE users SET failed_logins = 0, locked_until = NULL WHERE id = $1")
            .bind(user_id)
            .execute(&mut *tx)
            .await?;
        sqlx::query(
            "INSERT INTO sessions (token_hash, user_id, csrf_token, expires_at, ip) \
             VALUES ($1, $2, $3, $4, $5)",
        )
        .bind(token_hash)
        .bind(user_id)
        .bind(csrf_token)
        .bind(expires_at)
        .bind(ip)
        .execute(&mut *tx)
        .await?;
        // Old sessions of anyone are swept here rather than by a timer.
        sqlx::query("DELETE FROM sessions WHERE expires_at < now()")
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(())
    }

    /// The live session for a token hash, refreshed, or `None` when unknown, expired, idle
    /// longer than `idle`, or its user is disabled.
    pub async fn session(
        &self,
        token_hash: &[u8],
        idle: std::time::Duration,
    ) -> Result<Option<SessionRow>, StoreError> {
        let idle_secs = f64::from(u32::try_from(idle.as_secs()).unwrap_or(u32::MAX));
        Ok(sqlx::query_as(
            "UPDATE sessions s SET last_seen_at = now() FROM users u \
             WHERE s.token_hash = $1 AND u.id = s.user_id AND NOT u.disabled \
               AND s.expires_at > now() \
               AND s.last_seen_at > now() - make_interval(secs => $2) \
             RETURNING s.csrf_token, s.expires_at, u.id, u.username, u.display_name, u.role, \
                       u.password_hash, u.disabled, u.failed_logins, u.locked_until",
        )
        .bind(token_hash)
        .bind(idle_secs)
        .fetch_optional(self.pool())
        .await?)
    }

    pub async fn delete_session(&self, token_hash: &[u8]) -> Result<(), StoreError> {
        sqlx::query("DELETE FROM sessions WHERE token_hash = $1")
            .bind(token_hash)
            .execute(self.pool())
            .await?;
        Ok(())
    }
}
