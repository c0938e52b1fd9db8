//! Who may speak for a device: the bridges of panels reached through MQTT, and the embedded
//! broker's logins. Runtime-checked queries (no offline data needed).

use crate::model::DeviceProtocol;
use crate::{Store, StoreError};

/// Why a bridge could not be set.
#[derive(Debug, thiserror::Error)]
pub enum BridgeError {
    /// No device has that account.
    #[error("no device with account {0:?}")]
    UnknownAccount(String),
    /// The bridge must be an MQTT unit, and the bridged device a Contact ID or SIA panel.
    #[error("{0}")]
    WrongProtocol(String),
    /// The database failed.
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl Store {
    /// Names the MQTT unit `bridge` as the one allowed to pass the Contact ID or SIA panel
    /// `account` through, or (`None`) allows none. Every ingest cache forgets the panel at
    /// once (the registry's change notice).
    pub async fn set_device_bridge(
        &self,
        account: &str,
        bridge: Option<&str>,
    ) -> Result<(), BridgeError> {
        let panel = self
            .device_by_account(account)
            .await?
            .ok_or_else(|| BridgeError::UnknownAccount(account.to_owned()))?;
        if !matches!(
            panel.protocol,
            DeviceProtocol::ContactId | DeviceProtocol::Sia
        ) {
            return Err(BridgeError::WrongProtocol(format!(
                "{account} is registered for {}: only contact_id and sia panels are bridged",
                panel.protocol
            )));
        }
        let bridge_id = match bridge {
            None => None,
            Some(b) => {
                let unit = self
                    .device_by_account(b)
                    .await?
                    .ok_or_else(|| BridgeError::UnknownAccount(b.to_owned()))?;
                if unit.protocol != DeviceProtocol::Mqtt {
                    return Err(BridgeError::WrongProtocol(format!(
                        "bridge {b} is registered for {}: a bridge is an mqtt unit",
                        unit.protocol
                    )));
                }
                Some(unit.id)
            }
        };
        sqlx::query("UPDATE devices SET bridge_device_id = $2 WHERE id = $1")
            .bind(panel.id)
            .bind(bridge_id)
            .execute(self.pool())
            .await
            .map_err(StoreError::Database)?;
        Ok(())
    }
}

/// A login to the embedded MQTT broker.
#[derive(Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct MqttCredential {
    /// The user name: a unit's account, or Warden's service user.
    pub username: String,
    /// The unit it belongs to; `None` for Warden's own service credential.
    pub device_id: Option<i64>,
    /// PHC string (argon2id).
    pub password_hash: String,
}

impl std::fmt::Debug for MqttCredential {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MqttCredential")
            .field("username", &self.username)
            .field("device_id", &self.device_id)
            .finish_non_exhaustive()
    }
}

impl Store {
    /// Sets (or replaces) a broker login. `device_id` `None` makes it a service credential.
    pub async fn set_mqtt_credential(
        &self,
        username: &str,
        device_id: Option<i64>,
        password_hash: &str,
    ) -> Result<(), StoreError> {
        sqlx::query(
            "INSERT INTO mqtt_credentials (username, device_id, role, password_hash) \
             VALUES ($1, $2, CASE WHEN $2::bigint IS NULL THEN 'service' ELSE 'device' END, $3) \
             ON CONFLICT (username) DO UPDATE SET device_id = EXCLUDED.device_id, \
             role = EXCLUDED.role, password_hash = EXCLUDED.password_hash, created_at = now()",
        )
        .bind(username)
        .bind(device_id)
        .bind(password_hash)
        .execute(self.pool())
        .await?;
        Ok(())
    }

    /// The broker login for `username`, if any.
    pub async fn mqtt_credential(
        &self,
        username: &str,
    ) -> Result<Option<MqttCredential>, StoreError> {
        Ok(sqlx::query_as(
            "SELECT username, device_id, password_hash FROM mqtt_credentials WHERE username = $1",
        )
        .bind(username)
        .fetch_optional(self.pool())
        .await?)
    }
}
