//! SIA DC-09 transmitters' keys (migration 0016) and per-account settings (0018): set by the
//! CLI and the console, read by ingest for each account; keys never returned anywhere else.

use crate::{Store, StoreError};

/// What ingest needs to judge one DC-09 account's frames.
#[derive(Debug, Clone, Default, PartialEq, Eq, sqlx::FromRow)]
pub struct Dc09Account {
    /// The AES key (upper-case hex), if it has one.
    pub key_hex: Option<String>,
    /// The settings below, when set (`None`: the receiver's defaults, nothing checked).
    #[sqlx(flatten)]
    pub settings: Dc09Settings,
}

/// One DC-09 account's settings.
#[derive(Debug, Clone, Default, PartialEq, Eq, sqlx::FromRow)]
pub struct Dc09Settings {
    /// The receiver number (`R…`, hex) its frames must carry.
    pub receiver: Option<String>,
    /// The line number (`L…`, hex) its frames must carry.
    pub line: Option<String>,
    /// Its own timestamp window, seconds behind and ahead of Warden's clock.
    pub before_seconds: Option<i32>,
    pub after_seconds: Option<i32>,
    /// No message within this many seconds: link lost on `dc09:<account>`.
    pub supervision_seconds: Option<i32>,
}

impl Store {
    /// The id of the device registered for `account`.
    async fn device_id(&self, account: &str) -> Result<Option<i64>, StoreError> {
        Ok(
            sqlx::query_scalar("SELECT id FROM devices WHERE account = $1")
                .bind(account)
                .fetch_optional(self.pool())
                .await?,
        )
    }

    /// The key and settings of the device registered for `account` (with protocol `dc09`).
    pub async fn dc09_account(&self, account: &str) -> Result<Dc09Account, StoreError> {
        Ok(sqlx::query_as(
            "SELECT k.key_hex, a.receiver, a.line, a.before_seconds, a.after_seconds, \
                    a.supervision_seconds \
             FROM devices d LEFT JOIN dc09_keys k ON k.device_id = d.id \
             LEFT JOIN dc09_accounts a ON a.device_id = d.id WHERE d.account = $1",
        )
        .bind(account)
        .fetch_optional(self.pool())
        .await?
        .unwrap_or_default())
    }

    /// Sets the settings of the device registered for `account` (all `None` removes them);
    /// `Ok(false)` when no device has that account.
    pub async fn set_dc09_settings(
        &self,
        account: &str,
        s: &Dc09Settings,
    ) -> Result<bool, StoreError> {
        let Some(device) = self.device_id(account).await? else {
            return Ok(false);
        };
        if *s == Dc09Settings::default() {
            sqlx::query("DELETE FROM dc09_accounts WHERE device_id = $1")
                .bind(device)
                .execute(self.pool())
                .await?;
            return Ok(true);
        }
        sqlx::query(
            "INSERT INTO dc09_accounts (device_id, receiver, line, before_seconds, after_seconds, \
                 supervision_seconds) \
             VALUES ($1, upper($2), upper($3), $4, $5, $6) ON CONFLICT (device_id) DO UPDATE SET \
             receiver = EXCLUDED.receiver, line = EXCLUDED.line, \
             before_seconds = EXCLUDED.before_seconds, after_seconds = EXCLUDED.after_seconds, \
             supervision_seconds = EXCLUDED.supervision_seconds, set_at = now()",
        )
        .bind(device)
        .bind(&s.receiver)
        .bind(&s.line)
        .bind(s.before_seconds)
        .bind(s.after_seconds)
        .bind(s.supervision_seconds)
        .execute(self.pool())
        .await?;
        Ok(true)
    }

    /// The digest HA1 of the SCAIP unit registered for `account`, if it must authenticate.
    pub async fn scaip_ha1(&self, account: &str) -> Result<Option<String>, StoreError> {
        Ok(sqlx::query_scalar(
            "SELECT a.ha1 FROM scaip_auth a JOIN devices d ON d.id = a.device_id WHERE d.account = $1",
        )
        .bind(account)
        .fetch_optional(self.pool())
        .await?)
    }

    /// Sets (or with `None` removes) the digest HA1 of the unit registered for `account`;
    /// `Ok(false)` when no device has that account.
    pub async fn set_scaip_ha1(
        &self,
        account: &str,
        ha1: Option<&str>,
    ) -> Result<bool, StoreError> {
        let Some(device) = self.device_id(account).await? else {
            return Ok(false);
        };
        match ha1 {
            Some(h) => {
                sqlx::query(
                    "INSERT INTO scaip_auth (device_id, ha1) VALUES ($1, lower($2)) \
                     ON CONFLICT (device_id) DO UPDATE SET ha1 = EXCLUDED.ha1, set_at = now()",
                )
                .bind(device)
                .bind(h)
                .execute(self.pool())
                .await?;
            }
            None => {
                sqlx::query("DELETE FROM scaip_auth WHERE device_id = $1")
                    .bind(device)
                    .execute(self.pool())
                    .await?;
            }
        }
        Ok(true)
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
        let Some(device) = self.device_id(account).await? else {
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
