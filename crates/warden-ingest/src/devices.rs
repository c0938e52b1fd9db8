//! An in-memory view of registered devices, so the hot path resolves an account without a
//! database round trip. It follows registry edits at once: a trigger on `devices` notifies
//! every change, and [`DeviceCache::follow`] forgets the changed account (see
//! `warden_store::DeviceListener`).

use std::collections::HashMap;
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use tokio_util::sync::CancellationToken;
use warden_store::{DeviceProtocol, Store, StoreError};

/// How long "no such account" is remembered when no change notice can be received (the
/// listener is reconnecting); while it listens, a registration is seen at once.
const NEGATIVE_TTL: Duration = Duration::from_secs(10);
/// Longest wait for the database when an account is not in the cache.
const LOOKUP_TIMEOUT: Duration = Duration::from_secs(1);

/// Most remembered unknown accounts: a flood of random accounts cannot grow the cache.
const MAX_UNKNOWN: usize = 10_000;

/// What ingest needs to know of a registered device.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct CachedDevice {
    /// `devices.id`.
    pub id: i64,
    /// The protocol it is registered with.
    pub protocol: DeviceProtocol,
    /// The MQTT unit (`devices.id`) allowed to pass this panel's Contact ID through.
    pub bridge: Option<i64>,
}

impl From<warden_store::Device> for CachedDevice {
    fn from(d: warden_store::Device) -> Self {
        Self {
            id: d.id,
            protocol: d.protocol,
            bridge: d.bridge_device_id,
        }
    }
}

#[derive(Debug, Default)]
struct Inner {
    known: HashMap<String, CachedDevice>,
    unknown: HashMap<String, Instant>,
    /// `known` holds the whole registry as last read (and every change notified since).
    complete: bool,
}

/// Account → device, loaded at start and filled on demand.
#[derive(Debug, Clone)]
pub struct DeviceCache {
    store: Store,
    inner: Arc<RwLock<Inner>>,
    /// The writer's degraded mode, once known: while it spools, the database is not asked.
    degraded: Arc<std::sync::OnceLock<tokio::sync::watch::Receiver<warden_store::DegradedState>>>,
    /// Where the registry as last read whole is kept, for a start while the database is
    /// unavailable.
    snapshot: Arc<std::sync::OnceLock<std::path::PathBuf>>,
}

impl DeviceCache {
    /// Loads every registered device.
    pub async fn load(store: Store) -> Result<Self, StoreError> {
        let cache = Self::empty(store);
        cache.reload().await?;
        Ok(cache)
    }

    /// Replaces what the cache knows with every registered device, read in one query.
    pub async fn reload(&self) -> Result<(), StoreError> {
        let known = self
            .store
            .devices()
            .await?
            .into_iter()
            .map(|d| (d.account.clone(), CachedDevice::from(d)))
            .collect();
        if let Some(path) = self.snapshot.get() {
            write_snapshot(path, &known);
        }
        let mut inner = self.inner();
        inner.known = known;
        inner.unknown.clear();
        inner.complete = true;
        Ok(())
    }

    /// A cache that starts empty and asks the database on every miss (for tests and for a
    /// start-up while the database is still coming up).
    pub fn empty(store: Store) -> Self {
        Self {
            store,
            inner: Arc::new(RwLock::new(Inner::default())),
            degraded: Arc::default(),
            snapshot: Arc::default(),
        }
    }

    fn inner(&self) -> std::sync::RwLockWriteGuard<'_, Inner> {
        self.inner
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// The device registered for an account, `Ok(None)` when there is none, or the database
    /// error when it could not be asked. An error is never remembered as "unknown": the
    /// caller must treat it as "not durable yet" (NAK, or retry before PUBACK). While the
    /// database is away the answer comes from the registry as last read whole (see
    /// [`DeviceCache::offline`]); without such a read it is an error, never a guess.
    pub async fn resolve(&self, account: &str) -> Result<Option<CachedDevice>, StoreError> {
        if self
            .degraded
            .get()
            .is_some_and(|d| d.borrow().since.is_some())
        {
            // The database is known to be away: answer from memory at once (see below).
            return self.offline(account);
        }
        {
            let inner = self.read();
            if let Some(d) = inner.known.get(account) {
                return Ok(Some(*d));
            }
            if inner
                .unknown
                .get(account)
                .is_some_and(|t| t.elapsed() < NEGATIVE_TTL)
            {
                return Ok(None);
            }
        }
        // Bounded: a frame waits for this inside its sender's window.
        let asked = tokio::time::timeout(LOOKUP_TIMEOUT, self.store.device_by_account(account))
            .await
            .unwrap_or(Err(StoreError::ConnectionLost("device lookup timed out")));
        let found = match asked {
            Ok(found) => found.map(CachedDevice::from),
            Err(e) => {
                // While the database is away, an account the registry did not hold when last
                // read whole (or when last asked) is taken as unregistered: its signal is kept
                // and triaged without a device, so an operator sees it, rather than refused
                // while a receiver gives up on it. Without a whole registry read, the lookup
                // failing is an error (not durable: NAK, or no PUBACK), never a guess.
                return match self.offline(account) {
                    Ok(found) => {
                        tracing::warn!(account, error = %e, "device lookup failed; answered from the registry as last read");
                        Ok(found)
                    }
                    Err(_) => Err(e),
                };
            }
        };
        let mut inner = self.inner();
        if let Some(d) = found {
            inner.unknown.remove(account);
            inner.known.insert(account.to_owned(), d);
        } else {
            if inner.unknown.len() >= MAX_UNKNOWN {
                inner.unknown.clear();
            }
            inner.unknown.insert(account.to_owned(), Instant::now());
        }
        Ok(found)
    }

    /// Forgets one account, so the next signal asks the database.
    pub fn forget(&self, account: &str) {
        let mut inner = self.inner();
        inner.known.remove(account);
        inner.unknown.remove(account);
    }

    /// Forgets every account (after missing change notices).
    pub fn forget_all(&self) {
        let mut inner = self.inner();
        inner.known.clear();
        inner.unknown.clear();
        inner.complete = false;
    }

    /// Follows registry edits until `shutdown`: each notified account is forgotten at once.
    /// While the listener is disconnected notices may be missed, so the whole registry is
    /// read again on every (re)connection, after listening started (a change made during
    /// the read is notified and forgotten after it). The cache is replaced in one query,
    /// not emptied: emptied, a storm after a restart would ask the database once per unit
    /// on the ingest path.
    pub async fn follow(self, shutdown: CancellationToken) {
        let mut backoff = Duration::from_millis(250);
        while !shutdown.is_cancelled() {
            match self.store.device_listener().await {
                Ok(mut listener) => {
                    if let Err(e) = self.reload().await {
                        tracing::warn!(error = %e, "device registry could not be read again; asking per account");
                        self.forget_all();
                    }
                    backoff = Duration::from_millis(250);
                    loop {
                        tokio::select! {
                            () = shutdown.cancelled() => return,
                            // Cancel-safe: `recv` keeps undelivered notices in the listener.
                            n = listener.recv() => match n {
                                Ok(account) => {
                                    self.forget(&account);
                                    // The rest of a burst (a CSV import) first, each
                                    // forgotten at once; then the whole registry is read
                                    // again, so a unit registered now is known (and in the
                                    // snapshot) during a later outage.
                                    let mut lost = false;
                                    while let Ok(more) = tokio::time::timeout(
                                        Duration::from_millis(200),
                                        listener.recv(),
                                    )
                                    .await
                                    {
                                        if let Ok(account) = more {
                                            self.forget(&account);
                                        } else {
                                            lost = true;
                                            break;
                                        }
                                    }
                                    if let Err(e) = self.reload().await {
                                        tracing::warn!(error = %e, "device registry could not be read again; asking per account");
                                    }
                                    if lost {
                                        tracing::warn!("device change listener lost; reconnecting");
                                        break;
                                    }
                                }
                                Err(e) => {
                                    tracing::warn!(error = %e, "device change listener lost; reconnecting");
                                    break;
                                }
                            },
                        }
                    }
                }
                Err(e) => {
                    tracing::warn!(error = %e, retry_in = ?backoff, "device change listener could not connect");
                }
            }
            tokio::select! {
                () = shutdown.cancelled() => return,
                () = tokio::time::sleep(backoff) => {}
            }
            backoff = (backoff * 2).min(Duration::from_secs(10));
        }
    }

    /// Keeps the registry, each time it is read whole, in `path` (written atomically), and
    /// writes it now.
    pub fn keep_snapshot(&self, path: std::path::PathBuf) {
        write_snapshot(&path, &self.read().known);
        let _ = self.snapshot.set(path);
    }

    /// A cache holding the registry as last kept by [`DeviceCache::keep_snapshot`], for a
    /// start while the database is unavailable; empty (every lookup an error) without one.
    pub fn from_snapshot(store: Store, path: &std::path::Path) -> Self {
        let cache = Self::empty(store);
        match std::fs::read(path)
            .map(|b| serde_json::from_slice::<HashMap<String, CachedDevice>>(&b))
        {
            Ok(Ok(known)) => {
                tracing::warn!(devices = known.len(), path = %path.display(), "device registry read from its last snapshot");
                let mut inner = cache.inner();
                inner.known = known;
                inner.complete = true;
            }
            Ok(Err(e)) => {
                tracing::error!(path = %path.display(), error = %e, "device registry snapshot unreadable; accounts cannot be attributed until the database answers");
            }
            Err(e) => {
                tracing::error!(path = %path.display(), error = %e, "no device registry snapshot; accounts cannot be attributed until the database answers");
            }
        }
        cache
    }

    /// Follows the writer's degraded mode (set once, after the writer starts): while it
    /// spools, lookups are answered from memory without waiting for the database.
    pub fn follow_degraded(&self, rx: tokio::sync::watch::Receiver<warden_store::DegradedState>) {
        let _ = self.degraded.set(rx);
    }

    /// The answer without the database: the cached device; unregistered when the registry
    /// as last read whole did not hold it (or it was found unregistered); an error (not
    /// durable) when the cache never held the whole registry.
    fn offline(&self, account: &str) -> Result<Option<CachedDevice>, StoreError> {
        let inner = self.read();
        if let Some(d) = inner.known.get(account) {
            return Ok(Some(*d));
        }
        if inner.complete || inner.unknown.contains_key(account) {
            return Ok(None);
        }
        Err(StoreError::ConnectionLost(
            "database unavailable and the device registry was never read whole",
        ))
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, Inner> {
        self.inner
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Number of devices known to the cache.
    pub fn len(&self) -> usize {
        self.read().known.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// Writes the registry to `path` atomically (temporary file, rename); a failure is logged.
fn write_snapshot(path: &std::path::Path, known: &HashMap<String, CachedDevice>) {
    let tmp = path.with_extension("tmp");
    let written = serde_json::to_vec(known)
        .map_err(std::io::Error::other)
        .and_then(|bytes| std::fs::write(&tmp, bytes))
        .and_then(|()| std::fs::rename(&tmp, path));
    if let Err(e) = written {
        tracing::warn!(path = %path.display(), error = %e, "device registry snapshot not written");
    }
}
