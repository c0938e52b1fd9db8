//! The group-commit writer: many concurrent `write` calls, one transaction per batch, a reply
//! to each caller only after that transaction committed.
//!
//! ```text
//! write() ──(Record, oneshot)──▶ bounded queue ──▶ writer task ──▶ BEGIN; INSERT…; COMMIT
//!    ▲                                                  │
//!    └────────────── Ok(Committed) / Err ◀──────────────┘  (after COMMIT returned)
//! ```
//!
//! While one batch commits, the next one accumulates in the queue, so under load each
//! transaction carries many records and the fsync cost is shared.

use std::borrow::Cow;
use std::collections::{HashMap, HashSet};
use std::time::Duration;

use metrics::{counter, gauge, histogram};
use sqlx::pool::PoolConnection;
use sqlx::{Connection, PgConnection, Postgres};
use time::OffsetDateTime;
use tokio::sync::{mpsc, oneshot, watch};
use tokio::task::JoinHandle;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tracing::{Instrument, debug, error, info, info_span, warn};
use uuid::Uuid;
use warden_telemetry::{DB_BATCH_SIZE, DB_COMMIT, DB_COMMIT_ERRORS, WRITER_QUEUE};

mod degraded;

pub use degraded::{DegradedState, SpoolSettings};

use crate::dedupe::{self, Claim};
use crate::error::WriteError;
use crate::model::{Committed, NewQuarantine, NewSignal, Record};
use crate::store::Store;

/// Capacity of the acknowledgement-mark queue, in [`WriterHandle::mark_acked`] calls. When it
/// is full, further marks are dropped (and logged): `acked_at` is a best-effort annotation.
pub const ACK_QUEUE_CAPACITY: usize = 4096;

/// At most this many mark calls are folded into one transaction.
const ACK_MARKS_PER_BATCH: usize = 1024;

/// Tuning of the group-commit writer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WriterConfig {
    /// Most records in one transaction (default 1000; at least 1).
    pub max_batch: usize,
    /// How long after the first record of a batch was queued the writer keeps gathering more
    /// before it commits (default 2 ms). Records that queued up while the previous batch was
    /// committing are past their window already and are committed at once.
    pub max_wait: Duration,
    /// Capacity of the record queue between callers and the writer (default 20 000; at
    /// least 1). When it is full, [`WriterHandle::write`] waits for room: alarms are never
    /// dropped, the back-pressure reaches the sender (which holds its ACK meanwhile).
    pub queue_capacity: usize,
    /// Limit on one whole transaction, connection included (default 10 s). A commit that
    /// hangs (network partition, stuck server) fails the batch with an error instead of
    /// stalling every alarm behind it.
    pub commit_timeout: Duration,
    /// How long a stored signal's dedupe key and payload are remembered (default 24 h, at
    /// most ten years). Within it, the same key with the same raw bytes is a redelivery
    /// ([`Committed::Duplicate`]); the same key with other bytes, or any signal after it, is
    /// stored. Make it longer than the longest time a sender or broker may hold a message
    /// before redelivering it (an outage of Warden, say): a redelivery after the window is
    /// stored a second time.
    pub dedupe_window: Duration,
}

impl Default for WriterConfig {
    fn default() -> Self {
        WriterConfig {
            max_batch: 1000,
            max_wait: Duration::from_millis(2),
            queue_capacity: 20_000,
            commit_timeout: Duration::from_secs(10),
            dedupe_window: Duration::from_hours(24),
        }
    }
}

/// What the writer did over its life, returned when it stops.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct WriterReport {
    /// Committed transactions that carried at least one record.
    pub batches: u64,
    /// Records answered `Ok` (stored, duplicate or quarantined).
    pub records: u64,
    /// Records answered `Err`. `records + errors` is every record the writer received.
    pub errors: u64,
}

/// A record on its way to the writer, with the channel its outcome goes back on.
#[derive(Debug)]
struct Request {
    record: Record,
    reply: oneshot::Sender<Result<Committed, WriteError>>,
    queued_at: Instant,
}

/// A batch of ids whose senders were acknowledged at `at`.
#[derive(Debug)]
struct AckMark {
    ids: Vec<Uuid>,
    at: OffsetDateTime,
}

/// The sending side of the writer; cheap to clone, one per adapter task.
#[derive(Debug, Clone)]
pub struct WriterHandle {
    records: mpsc::Sender<Request>,
    acks: mpsc::Sender<AckMark>,
    state: watch::Receiver<DegradedState>,
}

impl WriterHandle {
    /// Queues `record` and resolves once the transaction holding it has committed, with what
    /// happened to it, or with an error if it could not be committed (when Postgres is
    /// unreachable, every record of the batch gets the error). Waits for room when the queue
    /// is full.
    ///
    /// Only an `Ok` allows the caller to acknowledge the sender. Cancel safety: dropping the
    /// future after the record was queued does not withdraw it; it may still be stored, and
    /// the sender's retry is recognised by its dedupe key, if it has one.
    pub async fn write(&self, record: Record) -> Result<Committed, WriteError> {
        let (reply, outcome) = oneshot::channel();
        let request = Request {
            record,
            reply,
            queued_at: Instant::now(),
        };
        self.records
            .send(request)
            .await
            .map_err(|_| WriteError::Closed)?;
        // A dropped reply sender means the writer task ended without answering (panic or
        // abort): the record is not known to be durable.
        outcome.await.unwrap_or(Err(WriteError::Closed))
    }

    /// Notes that the senders of these signals or quarantine records were acknowledged now.
    /// Never waits: the mark is queued for the writer's next transaction, or dropped with a
    /// warning when the mark queue ([`ACK_QUEUE_CAPACITY`]) is full or the writer stopped.
    /// Marks queued but not yet committed are lost on a crash; the record then has no row in
    /// `acks` (its `acked_at` reads NULL),
    /// which reads as "not known to have been acknowledged", never the other way round.
    pub fn mark_acked(&self, ids: Vec<Uuid>) {
        if ids.is_empty() {
            return;
        }
        let count = ids.len();
        let mark = AckMark {
            ids,
            at: OffsetDateTime::now_utc(),
        };
        if let Err(e) = self.acks.try_send(mark) {
            let reason = match e {
                mpsc::error::TrySendError::Full(_) => "queue full",
                mpsc::error::TrySendError::Closed(_) => "writer stopped",
            };
            warn!(count, reason, "ack marks dropped");
        }
    }

    /// Records currently waiting in the queue (not counting the batch being committed).
    pub fn queued(&self) -> usize {
        self.records.max_capacity() - self.records.capacity()
    }

    /// Degraded mode now: whether records are being spooled, since when, the spool's depth.
    pub fn degraded(&self) -> DegradedState {
        *self.state.borrow()
    }

    /// A receiver that sees every change of [`WriterHandle::degraded`].
    pub fn watch_degraded(&self) -> watch::Receiver<DegradedState> {
        self.state.clone()
    }
}

/// Starts the group-commit writer on the current tokio runtime.
///
/// The writer holds one connection of `store`'s pool while it runs, and borrows another
/// once a minute to prune expired dedupe keys. When `shutdown` is
/// cancelled (or every [`WriterHandle`] is dropped) it stops taking new records, commits
/// everything already queued, answers every caller, and the join handle yields its
/// [`WriterReport`]. Writes attempted after that get [`WriteError::Closed`].
pub fn spawn_writer(
    store: Store,
    cfg: WriterConfig,
    shutdown: CancellationToken,
) -> (WriterHandle, JoinHandle<WriterReport>) {
    spawn_writer_spooled(store, cfg, None, shutdown)
}

/// [`spawn_writer`] with a local spool: while Postgres is unreachable, or a commit takes
/// longer than `spool.after`, records are made durable in the spool and answered
/// [`Committed::Spooled`]; the spool is drained into Postgres, in order and exactly once,
/// when it answers again (see `writer/degraded.rs`).
pub fn spawn_writer_spooled(
    store: Store,
    cfg: WriterConfig,
    spool: Option<SpoolSettings>,
    shutdown: CancellationToken,
) -> (WriterHandle, JoinHandle<WriterReport>) {
    let cfg = WriterConfig {
        max_batch: cfg.max_batch.max(1),
        queue_capacity: cfg.queue_capacity.max(1),
        dedupe_window: cfg.dedupe_window.min(dedupe::MAX_WINDOW),
        ..cfg
    };
    let (record_tx, record_rx) = mpsc::channel(cfg.queue_capacity);
    let (ack_tx, ack_rx) = mpsc::channel(ACK_QUEUE_CAPACITY);
    let (state_tx, state) = watch::channel(DegradedState::default());
    let writer = Writer {
        store,
        cfg,
        records: record_rx,
        acks: ack_rx,
        conn: None,
        report: WriterReport::default(),
        degraded: spool.map(|s| degraded::Degraded::new(s, state_tx)),
    };
    let task = tokio::spawn(writer.run(shutdown).instrument(info_span!("store_writer")));
    let handle = WriterHandle {
        records: record_tx,
        acks: ack_tx,
        state,
    };
    (handle, task)
}

struct Writer {
    store: Store,
    cfg: WriterConfig,
    records: mpsc::Receiver<Request>,
    acks: mpsc::Receiver<AckMark>,
    /// The writer's own connection, kept between batches (no pool round trip, no ping per
    /// batch); dropped after any failure and reacquired for the next batch.
    conn: Option<PoolConnection<Postgres>>,
    report: WriterReport,
    /// The spool and degraded-mode state, when a spool is configured.
    degraded: Option<degraded::Degraded>,
}

/// Why a transaction did not commit.
#[derive(Debug)]
enum TxError {
    Sql(sqlx::Error),
    Timeout(Duration),
    /// A signal meant to be stored did not come back from the insert. Cannot happen with the
    /// current schema; guarded so it can never be reported as stored.
    Missing(Uuid),
}

impl From<sqlx::Error> for TxError {
    fn from(e: sqlx::Error) -> Self {
        TxError::Sql(e)
    }
}

impl TxError {
    /// The SQLSTATE and message when Postgres refused the data itself (classes 22 "data
    /// exception" and 23 "integrity constraint violation"), as opposed to being unreachable.
    fn data_error(&self) -> Option<(String, String)> {
        let TxError::Sql(sqlx::Error::Database(db)) = self else {
            return None;
        };
        let code = db.code()?;
        (code.starts_with("22") || code.starts_with("23"))
            .then(|| (code.into_owned(), db.message().to_owned()))
    }

    fn to_write_error(&self) -> WriteError {
        if let Some((code, message)) = self.data_error() {
            return WriteError::Rejected { code, message };
        }
        WriteError::Commit(self.to_string())
    }
}

impl std::fmt::Display for TxError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            TxError::Sql(e) => write!(f, "{e}"),
            TxError::Timeout(limit) => write!(f, "transaction took longer than {limit:?}"),
            TxError::Missing(id) => write!(f, "signal {id} was not stored"),
        }
    }
}

impl Writer {
    async fn run(mut self, shutdown: CancellationToken) -> WriterReport {
        info!(
            max_batch = self.cfg.max_batch,
            max_wait_us = u64::try_from(self.cfg.max_wait.as_micros()).unwrap_or(u64::MAX),
            queue_capacity = self.cfg.queue_capacity,
            dedupe_window_s = self.cfg.dedupe_window.as_secs(),
            "writer started"
        );
        let prune_stop = CancellationToken::new();
        let pruner = tokio::spawn(
            dedupe::prune_until(
                self.store.clone(),
                self.cfg.dedupe_window,
                prune_stop.clone(),
            )
            .instrument(info_span!("dedupe_prune")),
        );
        let mut batch: Vec<Request> = Vec::with_capacity(self.cfg.max_batch);
        let mut acks: Vec<AckMark> = Vec::new();
        let mut acks_open = true;
        loop {
            let wake = self.degraded.as_ref().and_then(degraded::Degraded::wake_at);
            // Cancel safety: `recv_many` is cancel-safe, so whichever branch loses the race
            // loses nothing. `biased` checks shutdown first; queued records are drained below.
            tokio::select! {
                biased;
                () = shutdown.cancelled() => break,
                n = self.records.recv_many(&mut batch, self.cfg.max_batch) => {
                    if n == 0 {
                        // Every handle is gone and the queue is empty.
                        break;
                    }
                }
                n = self.acks.recv_many(&mut acks, ACK_MARKS_PER_BATCH), if acks_open => {
                    if n == 0 {
                        acks_open = false;
                    }
                }
                () = sleep_until_some(wake) => {}
            }
            if !batch.is_empty() {
                self.gather(&mut batch).await;
            }
            self.take_acks(&mut acks);
            self.commit(&mut batch, &mut acks).await;
            self.drain().await;
        }

        // Drain: refuse new records (blocked senders get `Closed`), commit what is queued.
        self.records.close();
        self.acks.close();
        info!(queued = self.records.len(), "writer draining");
        loop {
            self.records.recv_many(&mut batch, self.cfg.max_batch).await;
            self.take_acks(&mut acks);
            if batch.is_empty() && acks.is_empty() {
                break;
            }
            self.commit(&mut batch, &mut acks).await;
        }
        gauge!(WRITER_QUEUE).set(0.0);
        prune_stop.cancel();
        if let Err(e) = pruner.await {
            warn!(error = %e, "dedupe prune task failed");
        }
        info!(
            batches = self.report.batches,
            records = self.report.records,
            errors = self.report.errors,
            "writer stopped"
        );
        self.report
    }

    /// Keeps adding queued records to `batch` until it is full or the first record's
    /// `max_wait` window has passed. Records already queued are taken even when the window
    /// is over (`timeout_at` polls the receive before the timer).
    async fn gather(&mut self, batch: &mut Vec<Request>) {
        let Some(first) = batch.first() else { return };
        let deadline = first.queued_at + self.cfg.max_wait;
        while batch.len() < self.cfg.max_batch {
            let room = self.cfg.max_batch - batch.len();
            match tokio::time::timeout_at(deadline, self.records.recv_many(batch, room)).await {
                Ok(0) | Err(_) => break,
                Ok(_) => {}
            }
        }
    }

    fn take_acks(&mut self, acks: &mut Vec<AckMark>) {
        while acks.len() < ACK_MARKS_PER_BATCH {
            match self.acks.try_recv() {
                Ok(mark) => acks.push(mark),
                Err(_) => break,
            }
        }
    }

    /// Commits `batch` and `acks` in one transaction and answers every record of the batch.
    /// Leaves both empty.
    async fn commit(&mut self, batch: &mut Vec<Request>, acks: &mut Vec<AckMark>) {
        if batch.is_empty() && acks.is_empty() {
            return;
        }
        #[allow(clippy::cast_precision_loss)] // gauge values, far below 2^52
        gauge!(WRITER_QUEUE).set(self.records.len() as f64);
        if self.degraded_active() {
            let batch = std::mem::take(batch);
            self.spool_batch(batch, acks).await;
            return;
        }
        let records = batch.len();
        let started = Instant::now();
        let result = self.transact(batch, acks).await;
        // Applied or lost with the failed transaction: ACK times are best effort.
        acks.clear();
        match result {
            Ok(outcomes) => {
                let elapsed = started.elapsed();
                histogram!(DB_COMMIT).record(elapsed.as_secs_f64());
                if records > 0 {
                    #[allow(clippy::cast_precision_loss)]
                    histogram!(DB_BATCH_SIZE).record(records as f64);
                    self.report.batches += 1;
                    debug!(
                        records,
                        elapsed_us = u64::try_from(elapsed.as_micros()).unwrap_or(u64::MAX),
                        "batch committed"
                    );
                }
                for (request, outcome) in batch.drain(..).zip(outcomes) {
                    self.reply(request, Ok(outcome));
                }
            }
            Err(e) => {
                counter!(DB_COMMIT_ERRORS).increment(1);
                self.drop_connection();
                if records > 1 && e.data_error().is_some() {
                    // One bad record must not hold a whole batch of alarms hostage: retry
                    // each alone so only the offender is refused.
                    warn!(
                        records,
                        error = %e,
                        "batch refused by postgres, retrying records one by one"
                    );
                    self.commit_one_by_one(batch).await;
                } else {
                    // Postgres unreachable or too slow: the spool, when there is one. A
                    // record Postgres refused for its data is answered `Rejected` (the
                    // caller stores a stand-in): spooled, it would be refused again later.
                    let unspooled = if e.data_error().is_none() {
                        self.spool_instead(&e.to_string(), std::mem::take(batch), acks)
                            .await
                    } else {
                        Some(std::mem::take(batch))
                    };
                    if let Some(unspooled) = unspooled {
                        error!(
                            records,
                            error = %e,
                            "batch commit failed, answering every record with an error"
                        );
                        let err = e.to_write_error();
                        for request in unspooled {
                            self.reply(request, Err(err.clone()));
                        }
                    }
                }
            }
        }
    }

    /// Commits each record of `batch` in its own transaction. Once the database looks
    /// unreachable (not a data error), the remaining records are answered with that error at
    /// once rather than each waiting for its own timeout.
    async fn commit_one_by_one(&mut self, batch: &mut Vec<Request>) {
        let mut unreachable: Option<WriteError> = None;
        let mut rest = std::mem::take(batch).into_iter();
        while let Some(request) = rest.next() {
            if unreachable.is_some() && self.degraded_active() {
                // Postgres went away while isolating: the rest goes to the spool.
                let remaining: Vec<Request> = std::iter::once(request).chain(rest).collect();
                self.spool_batch(remaining, &mut Vec::new()).await;
                return;
            }
            if let Some(err) = &unreachable {
                let err = err.clone();
                self.reply(request, Err(err));
                continue;
            }
            let started = Instant::now();
            match self.transact(std::slice::from_ref(&request), &[]).await {
                Ok(mut outcomes) => {
                    histogram!(DB_COMMIT).record(started.elapsed().as_secs_f64());
                    histogram!(DB_BATCH_SIZE).record(1.0);
                    self.report.batches += 1;
                    let outcome = outcomes.pop().ok_or(WriteError::Commit(
                        "no outcome for a committed record".to_owned(),
                    ));
                    self.reply(request, outcome);
                }
                Err(e) => {
                    counter!(DB_COMMIT_ERRORS).increment(1);
                    self.drop_connection();
                    let err = e.to_write_error();
                    if let WriteError::Rejected { code, message } = &err {
                        warn!(
                            id = %request.record.id(),
                            code = %code,
                            error = %message,
                            "record refused by postgres"
                        );
                    } else {
                        error!(error = %e, "commit failed while isolating a refused record");
                        unreachable = Some(err.clone());
                        if let Some(back) = self
                            .spool_instead(&e.to_string(), vec![request], &mut Vec::new())
                            .await
                        {
                            for request in back {
                                self.reply(request, Err(err.clone()));
                            }
                        }
                        continue;
                    }
                    self.reply(request, Err(err));
                }
            }
        }
    }

    fn reply(&mut self, request: Request, outcome: Result<Committed, WriteError>) {
        if outcome.is_ok() {
            self.report.records += 1;
        } else {
            self.report.errors += 1;
        }
        // The caller may have given up waiting; the outcome stands either way.
        let _ = request.reply.send(outcome);
    }

    fn drop_connection(&mut self) {
        if let Some(mut conn) = self.conn.take() {
            // Its state is unknown after a failure: close it rather than return it to the pool.
            conn.close_on_drop();
        }
    }

    /// One transaction: insert the batch, apply the ack marks, commit. Outcomes are in the
    /// order of `batch` and only returned once the commit succeeded.
    async fn transact(
        &mut self,
        batch: &[Request],
        acks: &[AckMark],
    ) -> Result<Vec<Committed>, TxError> {
        // With a spool, a commit slower than the senders' windows is abandoned and spooled.
        let limit = self.degraded.as_ref().map_or(self.cfg.commit_timeout, |d| {
            d.after().min(self.cfg.commit_timeout)
        });
        let window = self.cfg.dedupe_window;
        let pool = self.store.pool().clone();
        let slot = &mut self.conn;
        let work = async move {
            let conn = match slot {
                Some(conn) => conn,
                None => slot.insert(pool.acquire().await?),
            };
            let mut tx = conn.begin().await?;
            let records: Vec<&Record> = batch.iter().map(|r| &r.record).collect();
            let outcomes = insert_records(&mut tx, &records, window).await?;
            apply_acks(&mut tx, acks).await?;
            tx.commit().await?;
            Ok(outcomes)
        };
        tokio::time::timeout(limit, work)
            .await
            .unwrap_or(Err(TxError::Timeout(limit)))
    }
}

/// What to answer for one record of a batch, decided before the commit.
enum Planned<'a> {
    /// A signal without a dedupe key: always stored.
    Signal(Uuid),
    /// A keyed signal, stored if its claim on (key, payload hash) succeeds.
    Keyed {
        id: Uuid,
        key: &'a str,
        /// An earlier record of the same batch used this key for another payload.
        reused_in_batch: bool,
    },
    /// An earlier record of the same batch carries this dedupe key with the same payload.
    DuplicateInBatch(&'a str),
    Quarantine(Uuid),
}

/// Inserts the batch with one multi-row statement per table and works out each record's
/// outcome. Keyed signals follow one rule within the batch and against earlier batches:
/// same key and same payload hash is a redelivery, same key and another payload is a new
/// signal that reused the key.
async fn insert_records(
    conn: &mut PgConnection,
    batch: &[&Record],
    window: Duration,
) -> Result<Vec<Committed>, TxError> {
    let mut plan = Vec::with_capacity(batch.len());
    // The payload hashes seen so far in this batch, per key (almost always one).
    let mut keys_seen: HashMap<&str, Vec<[u8; 32]>> = HashMap::new();
    let mut claims: Vec<Claim<'_>> = Vec::new();
    let mut keyed: Vec<&NewSignal> = Vec::new();
    let mut signals: Vec<&NewSignal> = Vec::new();
    let mut quarantined: Vec<&NewQuarantine> = Vec::new();
    for record in batch {
        match record {
            Record::Signal(s) => {
                let Some(key) = s.dedupe_key.as_deref() else {
                    plan.push(Planned::Signal(s.id));
                    signals.push(s);
                    continue;
                };
                let hash = dedupe::payload_hash(&s.raw);
                let hashes = keys_seen.entry(key).or_default();
                if hashes.contains(&hash) {
                    plan.push(Planned::DuplicateInBatch(key));
                    continue;
                }
                plan.push(Planned::Keyed {
                    id: s.id,
                    key,
                    reused_in_batch: !hashes.is_empty(),
                });
                hashes.push(hash);
                claims.push(Claim {
                    key,
                    hash,
                    id: s.id,
                });
                keyed.push(s);
            }
            Record::Quarantine(q) => {
                plan.push(Planned::Quarantine(q.id));
                quarantined.push(q);
            }
        }
    }

    let claimed = dedupe::claim(conn, &claims, window).await?;
    signals.extend(keyed.into_iter().filter(|s| claimed.contains_key(&s.id)));
    let stored: HashSet<Uuid> = if signals.is_empty() {
        HashSet::new()
    } else {
        insert_signals(conn, &signals).await?
    };
    if !quarantined.is_empty() {
        insert_quarantine(conn, &quarantined).await?;
    }

    let stored_as = |id: Uuid| {
        if stored.contains(&id) {
            Ok(())
        } else {
            Err(TxError::Missing(id))
        }
    };
    plan.into_iter()
        .map(|p| match p {
            Planned::Signal(id) => stored_as(id).map(|()| Committed::Stored(id)),
            Planned::Keyed {
                id,
                key,
                reused_in_batch,
            } => match claimed.get(&id) {
                None => Ok(Committed::Duplicate {
                    existing_key: key.to_owned(),
                }),
                Some(&reused) if reused || reused_in_batch => {
                    stored_as(id).map(|()| Committed::Reused {
                        id,
                        key: key.to_owned(),
                    })
                }
                Some(_) => stored_as(id).map(|()| Committed::Stored(id)),
            },
            Planned::DuplicateInBatch(key) => Ok(Committed::Duplicate {
                existing_key: key.to_owned(),
            }),
            Planned::Quarantine(id) => Ok(Committed::Quarantined(id)),
        })
        .collect()
}

/// Inserts the signals and returns the ids inserted (all of them, unless the schema changes).
async fn insert_signals(
    conn: &mut PgConnection,
    rows: &[&NewSignal],
) -> Result<HashSet<Uuid>, sqlx::Error> {
    let n = rows.len();
    let mut ids = Vec::with_capacity(n);
    let mut sources = Vec::with_capacity(n);
    let mut link_ids = Vec::with_capacity(n);
    let mut accounts = Vec::with_capacity(n);
    let mut device_ids = Vec::with_capacity(n);
    let mut kinds = Vec::with_capacity(n);
    let mut raw_bytes = Vec::with_capacity(n);
    let mut decoded = Vec::with_capacity(n);
    let mut received = Vec::with_capacity(n);
    let mut keys = Vec::with_capacity(n);
    for s in rows {
        ids.push(s.id);
        sources.push(s.source.as_str());
        link_ids.push(s.link_id.as_str());
        accounts.push(s.account.as_deref());
        device_ids.push(s.device_id);
        kinds.push(s.kind.as_str());
        raw_bytes.push(s.raw.as_slice());
        decoded.push(&s.decoded);
        received.push(s.received_at);
        keys.push(s.dedupe_key.as_deref());
    }
    let stored: Vec<Uuid> = sqlx::query_scalar(
        r"
        INSERT INTO signals
            (id, source, link_id, account, device_id, kind, raw, decoded, received_at, dedupe_key)
        SELECT * FROM UNNEST(
            $1::uuid[], $2::text[], $3::text[], $4::text[], $5::bigint[],
            $6::text[], $7::bytea[], $8::jsonb[], $9::timestamptz[], $10::text[]
        )
        RETURNING id
        ",
    )
    .bind(&ids)
    .bind(&sources)
    .bind(&link_ids)
    .bind(&accounts)
    .bind(&device_ids)
    .bind(&kinds)
    .bind(&raw_bytes)
    .bind(&decoded)
    .bind(&received)
    .bind(&keys)
    .fetch_all(&mut *conn)
    .await?;
    Ok(stored.into_iter().collect())
}

async fn insert_quarantine(
    conn: &mut PgConnection,
    rows: &[&NewQuarantine],
) -> Result<(), sqlx::Error> {
    let n = rows.len();
    let mut ids = Vec::with_capacity(n);
    let mut sources = Vec::with_capacity(n);
    let mut link_ids = Vec::with_capacity(n);
    let mut raw_bytes = Vec::with_capacity(n);
    let mut codes = Vec::with_capacity(n);
    let mut reasons = Vec::with_capacity(n);
    let mut received = Vec::with_capacity(n);
    for q in rows {
        ids.push(q.id);
        sources.push(q.source.as_str());
        // Quarantine is the last resort for bad input, so its text must never be refused:
        // Postgres text cannot hold NUL, and the raw bytes keep the original anyway.
        link_ids.push(without_nul(&q.link_id));
        raw_bytes.push(q.raw.as_slice());
        codes.push(q.reason_code);
        reasons.push(without_nul(&q.reason));
        received.push(q.received_at);
    }
    let link_ids: Vec<&str> = link_ids.iter().map(AsRef::as_ref).collect();
    let reasons: Vec<&str> = reasons.iter().map(AsRef::as_ref).collect();
    sqlx::query!(
        r#"
        INSERT INTO quarantine (id, source, link_id, raw, reason_code, reason, received_at)
        SELECT * FROM UNNEST(
            $1::uuid[], $2::text[], $3::text[], $4::bytea[], $5::text[], $6::text[],
            $7::timestamptz[]
        )
        "#,
        &ids as &[Uuid],
        &sources as &[&str],
        &link_ids as &[&str],
        &raw_bytes as &[&[u8]],
        &codes as &[&str],
        &reasons as &[&str],
        &received as &[OffsetDateTime],
    )
    .execute(&mut *conn)
    .await?;
    Ok(())
}

/// Sleeps until `at`, or for ever when there is nothing to wake for.
async fn sleep_until_some(at: Option<Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}

fn without_nul(s: &str) -> Cow<'_, str> {
    if s.contains('\0') {
        Cow::Owned(s.replace('\0', "\u{FFFD}"))
    } else {
        Cow::Borrowed(s)
    }
}

/// Records when the signals and quarantine records named by `acks` were acknowledged: one
/// multi-row insert into the append-only `acks` table (readers take the first time per id).
async fn apply_acks(conn: &mut PgConnection, acks: &[AckMark]) -> Result<(), sqlx::Error> {
    if acks.is_empty() {
        return Ok(());
    }
    // One row per id; if an id was marked twice in this batch, the earliest mark wins.
    let mut earliest: HashMap<Uuid, OffsetDateTime> = HashMap::new();
    for mark in acks {
        for id in &mark.ids {
            earliest
                .entry(*id)
                .and_modify(|at| *at = (*at).min(mark.at))
                .or_insert(mark.at);
        }
    }
    let (ids, ats): (Vec<Uuid>, Vec<OffsetDateTime>) = earliest.into_iter().unzip();
    sqlx::query(
        "INSERT INTO acks (id, acked_at) SELECT * FROM UNNEST($1::uuid[], $2::timestamptz[])",
    )
    .bind(&ids)
    .bind(&ats)
    .execute(&mut *conn)
    .await?;
    Ok(())
}
