//! The writer's degraded mode: while Postgres is unreachable or slower than the senders'
//! acknowledgement windows, every batch is made durable in the local [`Spool`] instead and
//! answered [`Committed::Spooled`]; once Postgres answers again the spool is drained into it
//! in order, exactly once, before the writer goes back to committing directly.
//!
//! ```text
//! commit fails or takes longer than `after` ──▶ degraded: append + fsync ──▶ Spooled
//!        every `probe_every`: drain a chunk ──(COMMIT)──▶ advance the spool's head
//!        spool empty ──▶ direct again (the engine, watching, commits what it kept and
//!                        triages what the drain stored that nobody triaged)
//! ```
//!
//! While degraded, new records go to the spool even when Postgres is back, behind the ones
//! waiting, so the drain keeps the order of arrival. A drained record whose id is already in
//! `signals` or `quarantine` (the commit that timed out had gone through after all, or a drain
//! cut short by a crash) is skipped, so a record is stored once however often it is drained.

use std::collections::HashSet;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use metrics::{counter, gauge};
use sqlx::Connection;
use time::OffsetDateTime;
use tokio::sync::watch;
use tokio::time::Instant;
use tracing::{error, info, warn};
use uuid::Uuid;
use warden_telemetry as m;

use super::{AckMark, Request, TxError, Writer, apply_acks, insert_records};
use crate::WriteError;
use crate::model::{Committed, NewQuarantine, Record};
use crate::spool::{Spool, SpoolDepth, SpoolError, Spooled};

/// Ack marks kept while degraded, applied with the first drained chunk; beyond this they are
/// dropped (ACK times are best effort).
const HELD_ACKS: usize = 64 * 1024;
/// Longest stretch of draining before the writer looks at new records again (it looks
/// after every chunk when some are waiting).
const DRAIN_SLICE: Duration = Duration::from_millis(250);

/// The spool and its timing, for [`crate::spawn_writer_spooled`].
#[derive(Debug)]
pub struct SpoolSettings {
    /// The opened spool (records left from a previous run are drained first).
    pub spool: Spool,
    /// A commit that has not finished after this long is abandoned and its batch spooled
    /// (default 1.5 s: inside a receiver's 4 s window with room for the fsync and the line).
    pub after: Duration,
    /// While degraded, how often the writer tries Postgres again (default 1 s).
    pub probe_every: Duration,
}

impl SpoolSettings {
    pub fn new(spool: Spool) -> Self {
        Self {
            spool,
            after: Duration::from_millis(1500),
            probe_every: Duration::from_secs(1),
        }
    }
}

/// What the writer says about degraded mode, for `/readyz`, the console and the engine.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct DegradedState {
    /// A spool is configured (without one an outage answers every record with an error).
    pub spool_enabled: bool,
    /// Since when records have been spooled instead of committed; `None` when direct.
    pub since: Option<OffsetDateTime>,
    /// What waits in the spool.
    pub depth: SpoolDepth,
    /// The spool's bound in bytes.
    pub max_bytes: u64,
    /// Records drained into Postgres since start (a change tells the engine to look for
    /// signals nobody triaged once the spool is empty).
    pub drained: u64,
}

impl DegradedState {
    /// The spool's bytes over its bound, 0 to 1.
    #[allow(clippy::cast_precision_loss)] // a ratio
    pub fn fill(&self) -> f64 {
        if self.max_bytes == 0 {
            0.0
        } else {
            self.depth.bytes as f64 / self.max_bytes as f64
        }
    }
}

pub(super) struct Degraded {
    spool: Arc<Mutex<Spool>>,
    after: Duration,
    probe_every: Duration,
    since: Option<OffsetDateTime>,
    next_probe: Instant,
    held_acks: Vec<AckMark>,
    drained: u64,
    /// The highest fill threshold (50, 80, 95 %) already logged.
    warned_fill: u8,
    state: watch::Sender<DegradedState>,
    /// Set by the prober once Postgres answers again; only then does the writer try a drain
    /// (a try against an absent database would hold new records for `after`).
    reachable: Arc<AtomicBool>,
    prober: Option<tokio::task::JoinHandle<()>>,
}

/// Asks Postgres every `every` (each question bounded to a second, off the writer's task)
/// until it answers, then sets `reachable`.
async fn probe(store: crate::Store, every: Duration, reachable: Arc<AtomicBool>) {
    loop {
        if let Ok(Ok(())) = tokio::time::timeout(Duration::from_secs(1), store.ping()).await {
            reachable.store(true, Ordering::Release);
            return;
        }
        tokio::time::sleep(every).await;
    }
}

fn lock(spool: &Mutex<Spool>) -> std::sync::MutexGuard<'_, Spool> {
    spool.lock().unwrap_or_else(PoisonError::into_inner)
}

impl Degraded {
    pub(super) fn new(s: SpoolSettings, state: watch::Sender<DegradedState>) -> Self {
        if s.spool.corrupt > 0 {
            counter!(m::SPOOL_CORRUPT).increment(s.spool.corrupt);
        }
        // Records left by an earlier run: degraded from the start, so new records queue
        // behind them and the drain begins at once.
        let since = (!s.spool.is_empty()).then(|| {
            let depth = s.spool.depth();
            warn!(
                records = depth.records,
                bytes = depth.bytes,
                "spool holds records from an earlier run; draining them first"
            );
            depth.oldest.unwrap_or_else(OffsetDateTime::now_utc)
        });
        let d = Degraded {
            spool: Arc::new(Mutex::new(s.spool)),
            after: s.after,
            probe_every: s.probe_every,
            since,
            next_probe: Instant::now(),
            held_acks: Vec::new(),
            drained: 0,
            warned_fill: 0,
            state,
            reachable: Arc::new(AtomicBool::new(false)),
            prober: None,
        };
        d.publish();
        d
    }

    /// Whether Postgres answered the prober; starts one when none is asking.
    fn reachable(&mut self, store: &crate::Store) -> bool {
        if self.reachable.load(Ordering::Acquire) {
            return true;
        }
        if self
            .prober
            .as_ref()
            .is_none_or(tokio::task::JoinHandle::is_finished)
        {
            self.prober = Some(tokio::spawn(probe(
                store.clone(),
                self.probe_every,
                self.reachable.clone(),
            )));
        }
        false
    }

    pub(super) fn active(&self) -> bool {
        self.since.is_some()
    }

    pub(super) fn after(&self) -> Duration {
        self.after
    }

    /// When the writer should wake to drain, if degraded.
    pub(super) fn wake_at(&self) -> Option<Instant> {
        self.active().then_some(self.next_probe)
    }

    fn enter(&mut self, why: &str) {
        if self.since.is_none() {
            let now = OffsetDateTime::now_utc();
            error!(
                reason = why,
                "postgres unavailable: degraded mode, records are spooled locally until it is back"
            );
            self.since = Some(now);
            self.reachable.store(false, Ordering::Release);
            self.next_probe = Instant::now() + self.probe_every;
            self.publish();
        }
    }

    fn publish(&self) {
        let spool = lock(&self.spool);
        let depth = spool.depth();
        let state = DegradedState {
            spool_enabled: true,
            since: self.since,
            depth,
            max_bytes: spool.max_bytes(),
            drained: self.drained,
        };
        drop(spool);
        #[allow(clippy::cast_precision_loss)] // gauge values
        {
            gauge!(m::DEGRADED).set(if self.since.is_some() { 1.0 } else { 0.0 });
            gauge!(m::SPOOL_RECORDS).set(depth.records as f64);
            gauge!(m::SPOOL_BYTES).set(depth.bytes as f64);
            gauge!(m::SPOOL_FILL).set(state.fill());
            let age = depth
                .oldest
                .map_or(0.0, |t| (OffsetDateTime::now_utc() - t).as_seconds_f64());
            gauge!(m::SPOOL_OLDEST_AGE).set(age.max(0.0));
        }
        self.state.send_replace(state);
    }

    fn note_fill(&mut self) {
        let fill = self.state.borrow().fill();
        for threshold in [95u8, 80, 50] {
            if fill * 100.0 >= f64::from(threshold) {
                if self.warned_fill < threshold {
                    error!(
                        percent = threshold,
                        "local spool {threshold}% full; when full, senders are no longer acknowledged"
                    );
                    self.warned_fill = threshold;
                }
                return;
            }
        }
        self.warned_fill = 0;
    }
}

impl Writer {
    pub(super) fn degraded_active(&self) -> bool {
        self.degraded.as_ref().is_some_and(Degraded::active)
    }

    /// Goes degraded (if a spool is configured) and spools `batch`. Returns the batch back
    /// when there is no spool, for the caller to answer with its error.
    pub(super) async fn spool_instead(
        &mut self,
        why: &str,
        batch: Vec<Request>,
        acks: &mut Vec<AckMark>,
    ) -> Option<Vec<Request>> {
        let Some(d) = self.degraded.as_mut() else {
            return Some(batch);
        };
        d.enter(why);
        self.spool_batch(batch, acks).await;
        None
    }

    /// Appends `batch` to the spool (one fsync) and answers each record: `Spooled` once
    /// durable, an error when the spool is full or the disk failed.
    pub(super) async fn spool_batch(&mut self, batch: Vec<Request>, acks: &mut Vec<AckMark>) {
        let Some(d) = self.degraded.as_mut() else {
            return;
        };
        let room = HELD_ACKS.saturating_sub(d.held_acks.len());
        let held: usize = acks.iter().map(|a| a.ids.len()).sum();
        if held > room {
            warn!(
                count = held,
                "ack times dropped while degraded (too many held)"
            );
            acks.clear();
        }
        d.held_acks.append(acks);
        if batch.is_empty() {
            return;
        }
        let records: Vec<Record> = batch.iter().map(|r| r.record.clone()).collect();
        let spool = d.spool.clone();
        let now = OffsetDateTime::now_utc();
        let appended = tokio::task::spawn_blocking(move || {
            let refs: Vec<&Record> = records.iter().collect();
            lock(&spool).append(&refs, now)
        })
        .await
        .unwrap_or_else(|e| {
            Err(SpoolError::Io {
                path: "spool".into(),
                source: std::io::Error::other(e.to_string()),
            })
        });
        let n = batch.len() as u64;
        match appended {
            Ok(()) => {
                counter!(m::SPOOL_APPENDED).increment(n);
                for request in batch {
                    let id = request.record.id();
                    self.reply(request, Ok(Committed::Spooled(id)));
                }
            }
            Err(e) => {
                let reason = if matches!(e, SpoolError::Full { .. }) {
                    "full"
                } else {
                    "io"
                };
                counter!(m::SPOOL_REFUSED, "reason" => reason).increment(n);
                error!(records = n, error = %e, "postgres unavailable and the spool refused the batch; senders are not acknowledged and will retry");
                let err = WriteError::Commit(format!(
                    "postgres unavailable and the local spool refused the record: {e}"
                ));
                for request in batch {
                    self.reply(request, Err(err.clone()));
                }
            }
        }
        if let Some(d) = self.degraded.as_mut() {
            d.publish();
            d.note_fill();
        }
    }

    /// While degraded and the probe is due: drains the spool into Postgres, chunk by chunk,
    /// for at most [`DRAIN_SLICE`]; leaves degraded mode when it is empty.
    pub(super) async fn drain(&mut self) {
        let Some(d) = self.degraded.as_mut() else {
            return;
        };
        if !d.active() || Instant::now() < d.next_probe {
            return;
        }
        if !d.reachable(&self.store) {
            d.next_probe = Instant::now() + d.probe_every.min(Duration::from_millis(250));
            return;
        }
        let started = Instant::now();
        loop {
            let Some(d) = self.degraded.as_mut() else {
                return;
            };
            let chunk = lock(&d.spool).peek(self.cfg.max_batch);
            if chunk.is_empty() {
                let since = d.since.take();
                let secs = since.map_or(0.0, |t| (OffsetDateTime::now_utc() - t).as_seconds_f64());
                info!(
                    drained = d.drained,
                    degraded_for_s = secs,
                    "postgres is back and the spool is drained: committing directly again"
                );
                d.publish();
                return;
            }
            let acks = std::mem::take(&mut d.held_acks);
            let after = d.after;
            let result = self.drain_chunk(&chunk, &acks, after).await;
            let Some(d) = self.degraded.as_mut() else {
                return;
            };
            match result {
                Ok(()) => {
                    let spool = d.spool.clone();
                    let n = chunk.len();
                    let advanced =
                        tokio::task::spawn_blocking(move || lock(&spool).advance(n)).await;
                    d.drained += n as u64;
                    if let Err(e) | Ok(Err(e)) = advanced.map_err(|e| SpoolError::Io {
                        path: "spool".into(),
                        source: std::io::Error::other(e.to_string()),
                    }) {
                        // The records are committed; the head did not move, so they will be
                        // read again and skipped as already stored.
                        error!(error = %e, "could not advance the spool's head after a drained chunk");
                        d.next_probe = Instant::now() + d.probe_every;
                        d.publish();
                        return;
                    }
                    d.publish();
                    d.note_fill();
                }
                Err(e) => {
                    d.held_acks = acks;
                    warn!(error = %e, "spool drain: postgres still unavailable");
                    d.reachable.store(false, Ordering::Release);
                    d.next_probe = Instant::now() + d.probe_every;
                    self.drop_connection();
                    return;
                }
            }
            // Live records go first: they are spooled (one fsync) between two chunks, so a
            // long drain adds at most one chunk's commit to their acknowledgement.
            if started.elapsed() >= DRAIN_SLICE || !self.records.is_empty() {
                return;
            }
        }
    }

    /// Commits one chunk of spooled records (those not stored already) with the held ack
    /// times. A chunk Postgres refuses for its data is committed record by record, a refused
    /// signal stored without its device (the usual cause: the device was removed meanwhile)
    /// or, failing that, kept in quarantine with the reason.
    async fn drain_chunk(
        &mut self,
        chunk: &[Spooled],
        acks: &[AckMark],
        limit: Duration,
    ) -> Result<(), TxError> {
        let records: Vec<&Record> = chunk.iter().map(|s| &s.record).collect();
        match self.drain_tx(&records, acks, limit).await {
            Err(e) if e.data_error().is_some() => {
                warn!(error = %e, records = records.len(), "spool drain: chunk refused, draining it record by record");
                self.drop_connection();
                for record in records {
                    self.drain_refused(record, limit).await?;
                }
                Ok(())
            }
            other => other,
        }
    }

    async fn drain_refused(&mut self, record: &Record, limit: Duration) -> Result<(), TxError> {
        let first = match self.drain_tx(&[record], &[], limit).await {
            Err(e) if e.data_error().is_some() => e,
            other => return other,
        };
        self.drop_connection();
        let Record::Signal(s) = record else {
            return Err(first);
        };
        let mut without_device = s.clone();
        without_device.device_id = None;
        match self
            .drain_tx(&[&Record::Signal(without_device)], &[], limit)
            .await
        {
            Ok(()) => {
                warn!(id = %s.id, error = %first, "spooled signal refused with its device; stored without it");
                counter!(m::SPOOL_DRAINED, "outcome" => "refused").increment(1);
                return Ok(());
            }
            Err(e) if e.data_error().is_some() => self.drop_connection(),
            Err(e) => return Err(e),
        }
        let evidence = Record::Quarantine(NewQuarantine {
            id: s.id,
            source: s.source,
            link_id: s.link_id.clone(),
            raw: s.raw.clone(),
            reason_code: "database_refused",
            reason: format!("spooled signal refused by postgres when drained: {first}"),
            received_at: s.received_at,
        });
        error!(id = %s.id, error = %first, "spooled signal refused by postgres; kept in quarantine");
        counter!(m::SPOOL_DRAINED, "outcome" => "refused").increment(1);
        self.drain_tx(&[&evidence], &[], limit).await
    }

    /// One transaction: skip what is stored already, insert the rest, apply `acks`.
    async fn drain_tx(
        &mut self,
        records: &[&Record],
        acks: &[AckMark],
        limit: Duration,
    ) -> Result<(), TxError> {
        let window = self.cfg.dedupe_window;
        let pool = self.store.pool().clone();
        let slot = &mut self.conn;
        let work = async move {
            let conn = match slot {
                Some(conn) => conn,
                None => slot.insert(pool.acquire().await?),
            };
            let mut tx = conn.begin().await?;
            let ids: Vec<Uuid> = records.iter().map(|r| r.id()).collect();
            let already: HashSet<Uuid> = sqlx::query_scalar(
                "SELECT id FROM signals WHERE id = ANY($1) \
                 UNION ALL SELECT id FROM quarantine WHERE id = ANY($1)",
            )
            .bind(&ids)
            .fetch_all(&mut *tx)
            .await?
            .into_iter()
            .collect();
            let fresh: Vec<&Record> = records
                .iter()
                .copied()
                .filter(|r| !already.contains(&r.id()))
                .collect();
            let outcomes = insert_records(&mut tx, &fresh, window).await?;
            apply_acks(&mut tx, acks).await?;
            tx.commit().await?;
            Ok::<_, TxError>((already.len(), outcomes))
        };
        let (already, outcomes) = tokio::time::timeout(limit, work)
            .await
            .unwrap_or(Err(TxError::Timeout(limit)))?;
        counter!(m::SPOOL_DRAINED, "outcome" => "already").increment(already as u64);
        for outcome in outcomes {
            let label = if matches!(outcome, Committed::Duplicate { .. }) {
                "duplicate"
            } else {
                "stored"
            };
            counter!(m::SPOOL_DRAINED, "outcome" => label).increment(1);
        }
        Ok(())
    }
}
