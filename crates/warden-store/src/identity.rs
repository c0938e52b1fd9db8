//! Who may speak for a device: the bridges of panels reached through MQTT. Runtime-checked
//! queries (no offline data needed).

use sqlx::Row as _;

use crate::model::DeviceProtocol;
use crate::{Store, StoreError};

/// A registered device as ingest attributes signals to it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeviceIdentity {
    /// `devices.id`.
    pub id: i64,
    /// The account the unit sends.
    pub account: String,
    /// The protocol it is registered with.
    pub protocol: DeviceProtocol,
    /// The MQTT unit (its `devices.id`) allowed to pass this panel's Contact ID through.
    pub bridge_device_id: Option<i64>,
}

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

fn identity(row: &sqlx::postgres::PgRow) -> Result<DeviceIdentity, StoreError> {
    let protocol: String = row.try_get("protocol").map_err(StoreError::Database)?;
    Ok(DeviceIdentity {
        id: row.try_get("id").map_err(StoreError::Database)?,
        account: row.try_get("account").map_err(StoreError::Database)?,
        protocol: protocol.parse().map_err(|_| StoreError::Corrupt {
            column: "devices.protocol",
            value: protocol.clone(),
        })?,
        bridge_device_id: row
            .try_get("bridge_device_id")
            .map_err(StoreError::Database)?,
    })
}

impl Store {
    /// Every registered device with its bridge.
    pub async fn device_identities(&self) -> Result<Vec<DeviceIdentity>, StoreError> {
        let rows =
            sqlx::query("SELECT id, account, protocol, bridge_device_id FROM devices ORDER BY id")
                .fetch_all(self.pool())
                .await?;
        rows.iter().map(identity).collect()
    }

    /// The device registered for `account`, with its bridge.
    pub async fn device_identity(
        &self,
        account: &str,
    ) -> Result<Option<DeviceIdentity>, StoreError> {
        let row = sqlx::query(
            "SELECT id, account, protocol, bridge_device_id FROM devices WHERE account = $1",
        )
        .bind(account)
        .fetch_optional(self.pool())
        .await?;
        row.as_ref().map(identity).transpose()
    }

    /// Names the MQTT unit `bridge` as the one allowed to pass the Contact ID or SIA panel
    /// `account` through, or (`None`) allows none. Every ingest cache forgets the panel at
    /// once (the registry's change notice).
    pub async fn set_device_bridge(
        &self,
        account: &str,
        bridge: Option<&str>,
    ) -> Result<(), BridgeError> {
        let panel = self
            .device_identity(account)
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
                    .device_identity(b)
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
#[derive(Clone, PartialEq, Eq)]
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
        let row = sqlx::query(
            "SELECT username, device_id, password_hash FROM mqtt_credentials WHERE username = $1",
        )
        .bind(username)
        .fetch_optional(self.pool())
        .await?;
        row.map(|r| {
            Ok(MqttCredential {
                username: r.try_get("username")?,
                device_id: r.try_get("device_id")?,
                password_hash: r.try_get("password_hash")?,
            })
        })
        .transpose()
        .map_err(StoreError::Database)
    }
}
