//! SIA DC-09 transmitters' keys (migration 0016): set by the CLI and the console, read by
//! ingest for each account; never returned anywhere else.

use crate::{Store, StoreError};

impl Store {
    /// The AES key (upper-case hex) of the device registered for `account`, if it has one.
    pub async fn dc09_key(&self, account: &str) -> Result<Option<String>, StoreError> {
        Ok(sqlx::query_scalar(
            "SELECT k.key_hex FROM dc09_keys k JOIN devices d ON d.id = k.device_id \
             WHERE d.account = $1",
        )
        .bind(account)
        .fetch_optional(self.pool())
        .await?)
    }

    /// The account and protocol of device `id`, if it exists.
    pub async fn device_account(&self, id: i64) -> Result<Option<(String, String)>, StoreError> {
        Ok(
            sqlx::query_as("SELECT account, protocol FROM devices WHERE id = $1")
                .bind(id)
                .fetch_optional(self.pool())
                .await?,
        )
    }

    /// Sets (or with `None` removes) the key of the device registered for `account`;
    /// `Ok(false)` when no device has that account.
    pub async fn set_dc09_key(
        &self,
        account: &str,
        key_hex: Option<&str>,
    ) -> Result<bool, StoreError> {
        let Some(device): Option<i64> =
            sqlx::query_scalar("SELECT id FROM devices WHERE account = $1")
                .bind(account)
                .fetch_optional(self.pool())
                .await?
        else {
            return Ok(false);
        };
        match key_hex {
            Some(k) => {
                sqlx::query(
                    "INSERT INTO dc09_keys (device_id, key_hex) VALUES ($1, upper($2)) \
                     ON CONFLICT (device_id) DO UPDATE SET key_hex = EXCLUDED.key_hex, \
                     set_at = now()",
                )
                .bind(device)
                .bind(k)
                .execute(self.pool())
                .await?;
            }
            None => {
                sqlx::query("DELETE FROM dc09_keys WHERE device_id = $1")
                    .bind(device)
                    .execute(self.pool())
                    .await?;
            }
        }
        Ok(true)
    }
}
