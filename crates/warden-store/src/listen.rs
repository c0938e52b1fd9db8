//! Change notices from Postgres (`LISTEN`/`NOTIFY`).

use sqlx::postgres::PgListener;

use crate::{Store, StoreError};

/// The channel on which the `devices` trigger announces the account of every changed row.
const DEVICES_CHANNEL: &str = "warden_devices";

/// Receives the account of every registry change (insert, update, delete), from any node.
#[derive(Debug)]
pub struct DeviceListener {
    inner: PgListener,
}

impl DeviceListener {
    /// The next changed account. An error means the connection was lost and notices may
    /// have been missed: reconnect and treat every cached device as stale.
    pub async fn recv(&mut self) -> Result<String, StoreError> {
        let n = self.inner.try_recv().await?;
        match n {
            Some(n) => Ok(n.payload().to_owned()),
            None => Err(StoreError::ConnectionLost("device change listener")),
        }
    }
}

impl Store {
    /// Opens a dedicated connection listening for device registry changes.
    pub async fn device_listener(&self) -> Result<DeviceListener, StoreError> {
        let mut inner = PgListener::connect_with(self.pool()).await?;
        inner.listen(DEVICES_CHANNEL).await?;
        Ok(DeviceListener { inner })
    }
}
