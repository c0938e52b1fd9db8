//! An in-memory view of registered devices, so the hot path resolves an account without a
//! database round trip.

use std::collections::HashMap;
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use warden_store::{Store, StoreError};

/// How long "no such account" is remembered before the database is asked again; a unit
/// registered by an installer is picked up within this time.
const NEGATIVE_TTL: Duration = Duration::from_secs(10);

#[derive(Debug, Default)]
struct Inner {
    known: HashMap<String, i64>,
    unknown: HashMap<String, Instant>,
}

/// Account → device id, loaded at start and filled on demand.
#[derive(Debug, Clone)]
pub struct DeviceCache {
    store: Store,
    inner: Arc<RwLock<Inner>>,
}

impl DeviceCache {
    /// Loads every registered device.
    pub async fn load(store: Store) -> Result<Self, StoreError> {
        let devices = store.devices().await?;
        let known = devices.into_iter().map(|d| (d.account, d.id)).collect();
        Ok(Self {
            store,
            inner: Arc::new(RwLock::new(Inner {
                known,
                unknown: HashMap::new(),
            })),
        })
    }

    /// A cache that starts empty and asks the database on every miss (for tests and for a
    /// start-up while the database is still coming up).
    pub fn empty(store: Store) -> Self {
        Self {
            store,
            inner: Arc::new(RwLock::new(Inner::default())),
        }
    }

    /// The device id for an account, `Ok(None)` when no device is registered for it, or
    /// the database error when it could not be asked. An error is never remembered as
    /// "unknown": the caller must treat it as "not durable yet" (NAK, or retry before
    /// PUBACK), so a registered unit's alarm is never quarantined because of an outage.
    pub async fn resolve(&self, account: &str) -> Result<Option<i64>, StoreError> {
        {
            let inner = self
                .inner
                .read()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            if let Some(id) = inner.known.get(account) {
                return Ok(Some(*id));
            }
            if inner
                .unknown
                .get(account)
                .is_some_and(|t| t.elapsed() < NEGATIVE_TTL)
            {
                return Ok(None);
            }
        }
        let found = self.store.device_by_account(account).await?.map(|d| d.id);
        let mut inner = self
            .inner
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Some(id) = found {
            inner.unknown.remove(account);
            inner.known.insert(account.to_owned(), id);
        } else {
            // Bound the negative cache so a flood of random accounts cannot grow it.
            if inner.unknown.len() > 10_000 {
                inner.unknown.clear();
            }
            inner.unknown.insert(account.to_owned(), Instant::now());
        }
        Ok(found)
    }

    /// Number of devices known to the cache.
    pub fn len(&self) -> usize {
        self.inner
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .known
            .len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}
