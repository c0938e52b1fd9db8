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

    /// Takes the next sign-in attempt for account `id`, before its password is checked:
    /// the attempt is counted as a failure at once (a good password clears the count in
    /// [`Store::create_session`]) and the account's next attempt is held back by the
    /// progressive delay (none for the first `free` failures in a row, then 1 s doubling
    /// up to `max`). Attempts made in parallel are counted one by one, since each waits for
    /// the row. A count whose last failure is an hour old starts again.
    ///
    /// `Ok(Err(wait))`: an earlier attempt's delay is not over; nothing was counted.
    pub async fn reserve_login(
        &self,
        id: i64,
        free: u32,
        max: std::time::Duration,
    ) -> Result<Result<i32, std::time::Duration>, StoreError> {
        let max_secs = max.as_secs_f64();
        let row = sqlx::query(
            "UPDATE users SET \
             failed_logins = CASE WHEN locked_until < now() - interval '1 hour' THEN 0 \
                 ELSE failed_logins END + 1, \
             locked_until = now() + make_interval(secs => CASE \
                 WHEN (CASE WHEN locked_until < now() - interval '1 hour' THEN 0 \
                       ELSE failed_logins END + 1) < $2 THEN 0 \
                 ELSE LEAST($3::float8, power(2, LEAST((CASE WHEN locked_until < now() - interval '1 hour' \
                       THEN 0 ELSE failed_logins END + 1) - $2, 30))) END) \
             WHERE id = $1 AND (locked_until IS NULL OR locked_until <= now()) \
             RETURNING failed_logins",
        )
        .bind(id)
        .bind(i32::try_from(free).unwrap_or(i32::MAX))
        .bind(max_secs)
        .fetch_optional(self.pool())
        .await?;
        if let Some(row) = row {
            return Ok(Ok(row.try_get(0)?));
        }
        let wait: Option<f64> = sqlx::query_scalar(
            "SELECT GREATEST(EXTRACT(EPOCH FROM locked_until - now())::float8, 0) \
             FROM users WHERE id = $1",
        )
        .bind(id)
        .fetch_optional(self.pool())
        .await?
        .flatten();
        Ok(Err(std::time::Duration::from_secs_f64(
            wait.unwrap_or(0.0).clamp(0.0, max_secs.max(0.0)),
        )))
    }

    /// A failed attempt taken with [`Store::reserve_login`]: the account's delay runs from
    /// now (the password check itself may have taken a while).
    pub async fn login_failed(
        &self,
        id: i64,
        delay: std::time::Duration,
    ) -> Result<(), StoreError> {
        sqlx::query(
            "UPDATE users SET locked_until = GREATEST(locked_until, now() + make_interval(secs => $2)) \
             WHERE id = $1",
        )
        .bind(id)
        .bind(delay.as_secs_f64())
        .execute(self.pool())
        .await?;
        Ok(())
    }

    /// The account's second factor: its opened secret (if any) and whether it is in use.
    pub async fn totp(&self, id: i64) -> Result<Option<(String, bool)>, StoreError> {
        let row: Option<(Option<String>, bool)> =
            sqlx::query_as("SELECT totp_secret, totp_enabled FROM users WHERE id = $1")
                .bind(id)
                .fetch_optional(self.pool())
                .await?;
        Ok(row.and_then(|(secret, enabled)| {
            secret.map(|s| {
                (
                    seal::open_or_placeholder(seal::Field::TotpSecret, &s),
                    enabled,
                )
            })
        }))
    }

    /// Starts (or restarts) enrolment: a new secret, not in use until confirmed.
    pub async fn begin_totp(
        &self,
        id: i64,
        secret: &str,
        audit: &AuditWrite,
    ) -> Result<(), WriteRefused> {
        let sealed = seal::seal(seal::Field::TotpSecret, secret).map_err(|e| {
            WriteRefused::Refused(Refused::Invalid(format!(
                "the secret could not be encrypted: {e}"
            )))
        })?;
        let mut tx = self.pool().begin().await?;
        sqlx::query(
            "UPDATE users SET totp_secret = $2, totp_enabled = false, totp_last_step = NULL \
             WHERE id = $1",
        )
        .bind(id)
        .bind(sealed)
        .execute(&mut *tx)
        .await?;
        insert_audit(&mut tx, audit).await?;
        tx.commit().await?;
        Ok(())
    }

    /// Takes time step `step` for the account's code: `false` when a code of that step or a
    /// later one was already accepted (a code is good once). With `enable`, the second
    /// factor is in use from now on (enrolment confirmed).
    pub async fn use_totp_step(
        &self,
        id: i64,
        step: i64,
        enable: bool,
    ) -> Result<bool, StoreError> {
        let taken = sqlx::query(
            "UPDATE users SET totp_last_step = $2, totp_enabled = totp_enabled OR $3 \
             WHERE id = $1 AND totp_secret IS NOT NULL \
               AND (totp_last_step IS NULL OR totp_last_step < $2)",
        )
        .bind(id)
        .bind(step)
        .bind(enable)
        .execute(self.pool())
        .await?;
        Ok(taken.rows_affected() == 1)
    }

    /// Removes the account's second factor (an administrator's reset, e.g. a lost phone).
    pub async fn clear_totp(&self, id: i64) -> Result<(), StoreError> {
        sqlx::query(
            "UPDATE users SET totp_secret = NULL, totp_enabled = false, totp_last_step = NULL \
             WHERE id = $1",
        )
        .bind(id)
        .execute(self.pool())
        .await?;
        Ok(())
    }

    /// A user's change of their own password: the new hash, the failure count cleared,
    /// every other session of the account ended (the one in use, `keep`, goes on), the
    /// audit line in the same transaction.
    pub async fn change_own_password(
        &self,
        id: i64,
        password_hash: &str,
        keep: &[u8],
        audit: &AuditWrite,
    ) -> Result<(), StoreError> {
        let mut tx = self.pool().begin().await?;
        sqlx::query(
            "UPDATE users SET password_hash = $2, failed_logins = 0, locked_until = NULL, \
             updated_at = now() WHERE id = $1",
        )
        .bind(id)
        .bind(password_hash)
        .execute(&mut *tx)
        .await?;
        sqlx::query("DELETE FROM sessions WHERE user_id = $1 AND token_hash <> $2")
            .bind(id)
            .bind(keep)
            .execute(&mut *tx)
            .await?;
        insert_audit(&mut tx, audit).await?;
        tx.commit().await?;
        Ok(())
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
                       u.password_hash, u.disabled, u.failed_logins, u.locked_until, u.totp_enabled",
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
