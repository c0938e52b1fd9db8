//! What the console keeps in memory so that connected consoles go on working while the
//! database is unavailable (the writer's degraded mode): the open queue as last pushed, what
//! a queue entry shows of each device and its client (address included), users' names, and
//! the sessions recently seen valid.
//!
//! While degraded, the engine publishes its batches before they are durable, with their
//! incidents' rows; the push builds views from those rows and these cards, `GET /queue`
//! answers from the mirrored queue (saying since when it is degraded), and a signed-in
//! operator's session is honoured from memory. Nothing here is ever written back: the
//! database stays the record, and the mirror is rebuilt from it. The one exception is the
//! audit lines of what operators read meanwhile: kept here and in a journal on disk
//! (`audit.journal` beside the spool), written with their own times once the database is
//! back, and found again in the journal after a crash.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::Path;
use std::sync::{Mutex, PoisonError, RwLock, RwLockReadGuard, RwLockWriteGuard};
use std::time::{Duration, Instant};

use time::OffsetDateTime;
use tokio::sync::watch;
use warden_store::{
    AuditWrite, DegradedState, DeviceCard, IncidentRow, IncidentViewRow, Journal, QueueCards,
    SessionRow,
};

use crate::records::ClientDoc;
use crate::view::{IncidentView, sort_queue};

/// Sessions remembered for degraded mode, at most.
const MAX_SESSIONS: usize = 4096;
/// Audit lines kept while the database is unavailable, at most (then the oldest go, counted
/// in the log).
const MAX_AUDITS: usize = 100_000;
/// Views of resolved incidents kept, at most.
const MAX_CLOSED: usize = 4096;

#[derive(Debug, Default)]
struct Inner {
    devices: HashMap<i64, DeviceCard>,
    users: HashMap<i64, String>,
    /// Open incidents as last pushed or read, by id.
    queue: BTreeMap<i64, IncidentView>,
    /// The last views of incidents resolved since the queue was last read whole (the answer
    /// to a resolution made while the database is unavailable), the most recent kept.
    closed: BTreeMap<i64, IncidentView>,
    /// Sessions by token hash, with when they were last confirmed by the database or used.
    sessions: HashMap<Vec<u8>, (SessionRow, Instant)>,
    /// The records (and key-safe codes) of the clients whose alarms are open.
    clients: HashMap<i64, (ClientDoc, Option<String>)>,
    /// Audit lines of reads while the database was unavailable, with their times.
    audits: Vec<AuditWrite>,
}

/// The console's in-memory mirror (see the module documentation).
#[derive(Debug)]
pub struct Mirror {
    inner: RwLock<Inner>,
    degraded: Option<watch::Receiver<DegradedState>>,
    /// Where the kept audit lines are also written (fsynced) until they are in the database.
    journal: Option<Mutex<Journal<AuditWrite>>>,
}

impl Mirror {
    /// A mirror following `degraded`, keeping its audit lines in the journal at `journal`
    /// (and taking back those an earlier process left there).
    pub fn new(degraded: Option<watch::Receiver<DegradedState>>, journal: Option<&Path>) -> Self {
        let mut inner = Inner::default();
        let journal = journal.and_then(|path| match Journal::<AuditWrite>::open(path) {
            Ok(opened) => {
                if !opened.entries.is_empty() {
                    tracing::warn!(
                        lines = opened.entries.len(),
                        "audit lines of an outage left in the journal by a process that stopped before writing them; written once the database answers"
                    );
                }
                inner.audits = opened.entries;
                Some(Mutex::new(opened.journal))
            }
            Err(e) => {
                tracing::error!(error = %e, "cannot open the audit journal; audit lines during an outage are held in memory only");
                None
            }
        });
        Self {
            inner: RwLock::new(inner),
            degraded,
            journal,
        }
    }

    fn read(&self) -> RwLockReadGuard<'_, Inner> {
        self.inner.read().unwrap_or_else(PoisonError::into_inner)
    }

    fn write(&self) -> RwLockWriteGuard<'_, Inner> {
        self.inner.write().unwrap_or_else(PoisonError::into_inner)
    }

    /// Since when the database has been unavailable, if it is now.
    pub fn degraded_since(&self) -> Option<OffsetDateTime> {
        self.degraded.as_ref().and_then(|d| d.borrow().since)
    }

    /// A receiver of the writer's degraded state, if the console follows one.
    pub fn watch(&self) -> Option<watch::Receiver<DegradedState>> {
        self.degraded.clone()
    }

    /// Replaces the device and user cards (read whole from the database).
    pub fn load_cards(&self, cards: QueueCards) {
        let mut inner = self.write();
        inner.devices = cards
            .devices
            .into_iter()
            .map(|d| (d.device_id, d))
            .collect();
        inner.users = cards.users.into_iter().collect();
    }

    /// Learns what views read from the database say of devices, clients and holders.
    pub fn learn(&self, rows: &[IncidentViewRow]) {
        let mut inner = self.write();
        for r in rows {
            if let Some(device_id) = r.device_id {
                inner.devices.insert(
                    device_id,
                    DeviceCard {
                        device_id,
                        device_account: r.device_account.clone(),
                        device_label: r.device_label.clone(),
                        client_id: r.client_id,
                        client_name: r.client_name.clone(),
                        client_address: r.client_address.clone(),
                    },
                );
            }
            if let (Some(id), Some(name)) = (r.fields.holder_id, &r.holder_name) {
                inner.users.insert(id, name.clone());
            }
        }
    }

    /// The view of an incident row the engine published before it was durable, with the
    /// device, client and holder as last known.
    pub fn view(&self, row: &IncidentRow) -> IncidentView {
        let inner = self.read();
        let card = row.device_id.and_then(|id| inner.devices.get(&id));
        IncidentView::from(IncidentViewRow {
            id: row.id,
            priority: row.priority.clone(),
            kind: row.kind.clone(),
            state: row.state.clone(),
            raised_at: row.raised_at,
            claimed_at: row.claimed_at,
            resolved_at: row.resolved_at,
            signal_count: row.signal_count,
            fields: row.view.clone(),
            holder_name: row
                .view
                .holder_id
                .and_then(|id| inner.users.get(&id).cloned()),
            device_id: row.device_id,
            device_account: card.and_then(|c| c.device_account.clone()),
            device_label: card.and_then(|c| c.device_label.clone()),
            client_id: card.and_then(|c| c.client_id),
            client_name: card.and_then(|c| c.client_name.clone()),
            client_address: card.and_then(|c| c.client_address.clone()),
        })
    }

    /// Keeps the queue as the views say: open ones in, resolved ones out.
    pub fn track(&self, views: &[IncidentView]) {
        let mut inner = self.write();
        for v in views {
            if v.state == "resolved" {
                inner.queue.remove(&v.id);
                inner.closed.insert(v.id, v.clone());
                if inner.closed.len() > MAX_CLOSED {
                    inner.closed.pop_first();
                }
            } else {
                inner.queue.insert(v.id, v.clone());
            }
        }
    }

    /// Replaces the queue (read whole from the database).
    pub fn set_queue(&self, views: &[IncidentView]) {
        let mut inner = self.write();
        inner.queue = views.iter().map(|v| (v.id, v.clone())).collect();
        inner.closed.clear();
    }

    /// The mirrored view of incident `id`: open, or resolved lately.
    pub fn incident(&self, id: i64) -> Option<IncidentView> {
        let inner = self.read();
        inner
            .queue
            .get(&id)
            .or_else(|| inner.closed.get(&id))
            .cloned()
    }

    /// The mirrored queue, most urgent first.
    pub fn queue(&self) -> Vec<IncidentView> {
        let mut v: Vec<IncidentView> = self.read().queue.values().cloned().collect();
        sort_queue(&mut v);
        v
    }

    /// Remembers a session the database just confirmed.
    pub fn session_seen(&self, hash: &[u8], s: &SessionRow) {
        let mut inner = self.write();
        if inner.sessions.len() >= MAX_SESSIONS && !inner.sessions.contains_key(hash) {
            let now = Instant::now();
            inner
                .sessions
                .retain(|_, (_, seen)| now.duration_since(*seen) < Duration::from_hours(1));
            if inner.sessions.len() >= MAX_SESSIONS {
                inner.sessions.clear();
            }
        }
        inner
            .sessions
            .insert(hash.to_vec(), (s.clone(), Instant::now()));
    }

    /// Forgets a session (signed out, or the database says it has ended).
    pub fn session_gone(&self, hash: &[u8]) {
        self.write().sessions.remove(hash);
    }

    /// While degraded only: a session used (or confirmed by the database) within `idle` and
    /// not expired; using it counts as activity, as it does in the database.
    pub fn session(&self, hash: &[u8], idle: Duration) -> Option<SessionRow> {
        self.degraded_since()?;
        let mut inner = self.write();
        let (s, seen) = inner.sessions.get_mut(hash)?;
        if seen.elapsed() >= idle || s.expires_at <= OffsetDateTime::now_utc() {
            return None;
        }
        *seen = Instant::now();
        Some(s.clone())
    }

    /// The client ids of the mirrored queue's incidents.
    pub fn queue_clients(&self) -> HashSet<i64> {
        self.read()
            .queue
            .values()
            .filter_map(|v| v.client.as_ref().map(|c| c.id))
            .collect()
    }

    /// The open incident of the mirrored queue for client `client` held by user `user`.
    /// (An incident is the client's when its view names the client, or when its device is
    /// one of the devices of the client's cached record.)
    pub fn held_incident(&self, client: i64, user: i64) -> Option<i64> {
        let inner = self.read();
        let devices: HashSet<i64> = inner
            .clients
            .get(&client)
            .map(|(doc, _)| doc.devices.iter().map(|d| d.id).collect())
            .unwrap_or_default();
        inner
            .queue
            .values()
            .find(|v| {
                let theirs = v.client.as_ref().is_some_and(|c| c.id == client)
                    || v.device.as_ref().is_some_and(|d| devices.contains(&d.id));
                theirs && v.holder.as_ref().is_some_and(|h| h.id == user) && v.state != "resolved"
            })
            .map(|v| v.id)
    }

    /// Whether a client's record is cached.
    pub fn has_client(&self, id: i64) -> bool {
        self.read().clients.contains_key(&id)
    }

    /// Caches a client's record and key-safe code.
    pub fn cache_client(&self, id: i64, doc: ClientDoc, key_safe: Option<String>) {
        self.write().clients.insert(id, (doc, key_safe));
    }

    /// Forgets the records of clients that no longer have an open alarm.
    pub fn keep_clients(&self, ids: &HashSet<i64>) {
        self.write().clients.retain(|id, _| ids.contains(id));
    }

    /// A cached client record and key-safe code.
    pub fn client(&self, id: i64) -> Option<(ClientDoc, Option<String>)> {
        self.read().clients.get(&id).cloned()
    }

    /// Keeps an audit line, stamped now, to be written when the database is back; on disk
    /// before this returns (when there is a journal).
    pub fn defer_audit(&self, mut a: AuditWrite) {
        a.at = Some(OffsetDateTime::now_utc());
        if let Some(j) = &self.journal {
            let mut j = j.lock().unwrap_or_else(PoisonError::into_inner);
            if let Err(e) = j.append(std::slice::from_ref(&a)) {
                tracing::error!(error = %e, "cannot write an audit line to the journal; it is held in memory only");
            }
        }
        let mut inner = self.write();
        if inner.audits.len() >= MAX_AUDITS {
            tracing::error!(
                kept = MAX_AUDITS,
                "audit lines kept during the outage at their bound; the oldest is dropped"
            );
            inner.audits.remove(0);
        }
        inner.audits.push(a);
    }

    /// The audit lines kept, to be written (those that fail are given back).
    pub fn take_audits(&self) -> Vec<AuditWrite> {
        std::mem::take(&mut self.write().audits)
    }

    /// Gives back audit lines that could not be written, before any kept since.
    pub fn return_audits(&self, mut back: Vec<AuditWrite>) {
        let mut inner = self.write();
        back.append(&mut inner.audits);
        inner.audits = back;
    }

    /// The lines taken were written: the journal is emptied unless more were kept since.
    pub fn audits_written(&self) {
        let Some(j) = &self.journal else {
            return;
        };
        let mut j = j.lock().unwrap_or_else(PoisonError::into_inner);
        if !self.read().audits.is_empty() || j.is_empty() {
            return;
        }
        if let Err(e) = j.clear() {
            tracing::error!(error = %e, "cannot empty the audit journal; its lines are checked against the trail again on the next start");
        }
    }
}
