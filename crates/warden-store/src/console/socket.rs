//! What a long-lived console connection (the live-push WebSocket) asks about its session,
//! without counting as activity.

use std::time::Duration;

use crate::{Store, StoreError};

impl Store {
    /// How long the session of a token hash has left before it ends for idleness
    /// (`idle` after its last request) or expiry, whichever comes first; `None` when it has
    /// already ended (unknown, expired, idle longer than `idle`, or its user disabled).
    ///
    /// Unlike [`Store::session`] this does not refresh the session: a connection that is
    /// merely open (its pings and pongs) must not keep a session alive that nobody uses.
    pub async fn session_left(
        &self,
        token_hash: &[u8],
        idle: Duration,
    ) -> Result<Option<Duration>, StoreError> {
        // Whole seconds, as `Store::session` counts them.
        let idle_secs = f64::from(u32::try_from(idle.as_secs()).unwrap_or(u32::MAX));
        let left: Option<f64> = sqlx::query_scalar(
            "SELECT EXTRACT(EPOCH FROM LEAST(s.expires_at, \
                    s.last_seen_at + make_interval(secs => $2)) - now())::float8 \
             FROM sessions s JOIN users u ON u.id = s.user_id \
             WHERE s.token_hash = $1 AND NOT u.disabled \
               AND s.expires_at > now() \
               AND s.last_seen_at > now() - make_interval(secs => $2)",
        )
        .bind(token_hash)
        .bind(idle_secs)
        .fetch_optional(self.pool())
        .await?;
        Ok(left.map(|s| Duration::from_secs_f64(s.max(0.0))))
    }
}
