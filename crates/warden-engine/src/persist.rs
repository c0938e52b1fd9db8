//! Persisting one engine batch: commit with a timeout and bounded retries, the batch
//! committing in the background, what a batch announces once durable, and the incident
//! row written for each incident the core holds.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

use time::OffsetDateTime;
use tokio::sync::{broadcast, watch};
use tokio_util::sync::CancellationToken;
use warden_core::{Effect, Incident, Micros, Priority, Resolution, Subject, Timestamp};
use warden_store::{
    DegradedState, IncidentRow, IncidentViewFields, Store, StoreError, TriageBatch,
};
use warden_telemetry as m;

use crate::engine::Changes;

/// A bulk batch committing in the background and the incidents it writes.
#[derive(Debug)]
pub(crate) struct Background {
    pub(crate) incidents: BTreeSet<i64>,
    pub(crate) task: tokio::task::JoinHandle<Stored>,
}

/// What became of a batch handed to [`commit`].
#[derive(Debug)]
pub(crate) enum Stored {
    /// Committed.
    Yes,
    /// Given up (refused even sanitised, or shutdown came first): its signals stay
    /// untriaged for the catch-up.
    GivenUp,
    /// The writer went into degraded mode (Postgres unavailable) while this batch was being
    /// committed: kept, to be committed in order once the spool has drained.
    Deferred(TriageBatch),
}

/// True while the writer spools instead of committing.
pub(crate) fn writer_degraded(w: Option<&watch::Receiver<DegradedState>>) -> bool {
    w.is_some_and(|w| w.borrow().since.is_some())
}

/// What a batch announces once it is durable: metrics, logs and the change feed.
#[derive(Debug, Clone)]
pub(crate) struct Published {
    pub(crate) offers: Vec<(u64, Priority, Timestamp)>,
    pub(crate) late: Vec<Effect>,
    pub(crate) open: Option<usize>,
    pub(crate) incidents: Vec<i64>,
    /// The rows of a batch published before it is durable (degraded mode), for consoles
    /// that cannot read them from the database. Empty otherwise.
    pub(crate) uncommitted: Vec<IncidentRow>,
}

impl Published {
    /// The same announcement for a batch published before it is durable: its incidents'
    /// rows travel with it (without `doc`, which only the rebuild reads).
    pub(crate) fn uncommitted(mut self, batch: &TriageBatch) -> Self {
        self.uncommitted = batch
            .incidents
            .iter()
            .map(|r| IncidentRow {
                doc: serde_json::Value::Null,
                ..r.clone()
            })
            .collect();
        self
    }

    pub(crate) fn publish(self, changes: &broadcast::Sender<Arc<Changes>>) {
        let committed = OffsetDateTime::now_utc();
        let mut offered_life_critical = Vec::new();
        for (incident, priority, arrived_at) in self.offers {
            if priority == Priority::LifeCritical {
                offered_life_critical.push((
                    i64::try_from(incident).unwrap_or(i64::MAX),
                    arrived_at.to_offset(),
                ));
            }
            let waited = (committed - arrived_at.to_offset())
                .as_seconds_f64()
                .max(0.0);
            metrics::histogram!(m::SIGNAL_TO_OFFER, "priority" => priority.as_str()).record(waited);
            metrics::counter!(m::INCIDENTS_OFFERED, "priority" => priority.as_str()).increment(1);
        }
        for e in &self.late {
            tracing::warn!(effect = ?e, "incident unanswered past its threshold");
        }
        if let Some(open) = self.open {
            metrics::gauge!(m::INCIDENTS_OPEN)
                .set(f64::from(u32::try_from(open).unwrap_or(u32::MAX)));
        }
        if !self.incidents.is_empty() {
            // No subscriber (no console connected) is not an error.
            let _ = changes.send(Arc::new(Changes {
                incidents: self.incidents,
                offered_life_critical,
                uncommitted: self.uncommitted,
            }));
        }
    }
}

/// Commits one batch. Transient failures (Postgres unreachable, a timed-out attempt) are
/// retried with backoff for as long as they last: the core has moved on and later batches
/// depend on this one, and every attempt is logged and counted, and a batch in progress
/// that long turns `/readyz` red ("stalled"). A batch Postgres refuses for its data is
/// retried once with every text made storable, then given up (`false`, logged, counted):
/// its signals stay untriaged and the catch-up offers them again. Given up also when
/// shutdown came first. Once the writer is in degraded mode (`degraded`), a batch that
/// failed is handed back ([`Stored::Deferred`]) instead of retried.
pub(crate) async fn commit(
    store: &Store,
    mut batch: TriageBatch,
    timeout: Duration,
    shutdown: &CancellationToken,
    degraded: Option<&watch::Receiver<DegradedState>>,
    mut early: Option<&mut (dyn FnMut(&TriageBatch) + Send)>,
) -> Stored {
    let mut delay = Duration::from_millis(100);
    let mut sanitized = false;
    let mut attempt: u64 = 0;
    loop {
        attempt += 1;
        let result = {
            // An attempt can hang in the pool (connecting to a stopped Postgres is retried
            // until the acquire timeout). If the writer turns degraded meanwhile, `early` is
            // told at once (the engine publishes the batch as uncommitted, so a pendant
            // reaches the consoles now), and the attempt is still awaited: it may commit.
            let once = commit_once(store, &batch, timeout);
            tokio::pin!(once);
            let mut watch = degraded.filter(|_| early.is_some()).cloned();
            loop {
                tokio::select! {
                    r = &mut once => break r,
                    () = turned_degraded(&mut watch) => {
                        watch = None;
                        if let Some(f) = early.take() {
                            f(&batch);
                        }
                    }
                }
            }
        };
        let reason = match result {
            Ok(()) => return Stored::Yes,
            Err(CommitFailure::Refused(e)) if !sanitized => {
                // Postgres refused the data (a NUL in an operator's note, say): retry at once
                // with every text made storable before giving the batch up.
                tracing::warn!(error = %e, "triage batch refused; retrying with sanitised text");
                batch.sanitize();
                sanitized = true;
                continue;
            }
            Err(CommitFailure::Refused(e)) => {
                metrics::counter!(m::ENGINE_BATCH_FAILURES, "reason" => "refused").increment(1);
                tracing::error!(error = %e, "triage batch refused by the database; given up, its signals will be offered again");
                return Stored::GivenUp;
            }
            Err(CommitFailure::Timeout) => {
                tracing::error!(attempt, ?timeout, retry_in = ?delay, "triage batch commit timed out; retrying");
                "timeout"
            }
            Err(CommitFailure::Database(e)) => {
                tracing::error!(error = %e, attempt, retry_in = ?delay, "triage batch not persisted; retrying");
                "database"
            }
        };
        metrics::counter!(m::ENGINE_BATCH_FAILURES, "reason" => reason).increment(1);
        if writer_degraded(degraded) {
            return Stored::Deferred(batch);
        }
        let mut watch = degraded.cloned();
        tokio::select! {
            () = shutdown.cancelled() => return Stored::GivenUp,
            () = tokio::time::sleep(delay) => {}
            // The writer going degraded ends the wait: the batch is kept, not retried.
            () = async {
                match watch.as_mut() {
                    Some(w) => {
                        if w.wait_for(|s| s.since.is_some()).await.is_err() {
                            // The writer stopped: nothing will change any more.
                            std::future::pending::<()>().await;
                        }
                    }
                    None => std::future::pending().await,
                }
            } => return Stored::Deferred(batch),
        }
        delay = (delay * 2).min(Duration::from_secs(5));
    }
}

/// Why one commit attempt failed.
/// Resolves when the writer followed by `w` is degraded; never without one (or once it has
/// stopped).
async fn turned_degraded(w: &mut Option<watch::Receiver<DegradedState>>) {
    match w {
        Some(rx) => {
            if rx.wait_for(|s| s.since.is_some()).await.is_err() {
                std::future::pending::<()>().await;
            }
        }
        None => std::future::pending().await,
    }
}

#[derive(Debug)]
pub(crate) enum CommitFailure {
    Timeout,
    /// Postgres refused the data itself; the same batch will fail again.
    Refused(StoreError),
    Database(StoreError),
}

/// One commit attempt, bounded by `timeout`.
pub(crate) async fn commit_once(
    store: &Store,
    batch: &TriageBatch,
    timeout: Duration,
) -> Result<(), CommitFailure> {
    let started = std::time::Instant::now();
    match tokio::time::timeout(timeout, store.commit_triage(batch)).await {
        Ok(Ok(())) => {
            metrics::histogram!(m::ENGINE_COMMIT).record(started.elapsed().as_secs_f64());
            Ok(())
        }
        Ok(Err(e)) if e.is_data_error() => Err(CommitFailure::Refused(e)),
        Ok(Err(e)) => Err(CommitFailure::Database(e)),
        Err(_) => Err(CommitFailure::Timeout),
    }
}

pub(crate) fn row_of(i: &Incident) -> IncidentRow {
    IncidentRow {
        id: i64::try_from(i.id.0).unwrap_or(i64::MAX),
        priority: i.priority.as_str().to_owned(),
        kind: i.kind.as_str().to_owned(),
        state: i.state.as_str().to_owned(),
        device_id: i.device.map(|d| d.0),
        raised_at: i.raised_at.to_offset(),
        offered_at: i.offered_at.map(Timestamp::to_offset),
        claimed_at: i.claimed_at.map(Timestamp::to_offset),
        answer_time_us: i.answer_time.map(Micros::as_micros),
        resolved_at: i.resolved_at.map(Timestamp::to_offset),
        signal_count: i32::try_from(i.signal_count).unwrap_or(i32::MAX),
        view: IncidentViewFields {
            arrived_at: Some(i.arrived_at.to_offset()),
            holder_id: i.holder.map(|a| a.id),
            area: i
                .area
                .as_ref()
                .or(match &i.subject {
                    Subject::Group { area } => area.as_ref(),
                    _ => None,
                })
                .map(ToString::to_string),
            summary: i.summary.clone(),
            outcome: i.resolution.as_ref().and_then(outcome_of),
            group_count: i
                .group
                .as_ref()
                .map(|g| i32::try_from(g.members.len()).unwrap_or(i32::MAX)),
            sla_warned: i.sla.warned,
            sla_overflowed: i.sla.overflowed,
            sla_critical: i.sla.critical,
        },
        doc: serde_json::to_value(i).unwrap_or_default(),
    }
}

/// The operator's outcome code of a resolution (policy closures have none).
fn outcome_of(r: &Resolution) -> Option<String> {
    match r {
        Resolution::Operator { outcome, .. } => Some(outcome.to_string()),
        Resolution::Auto { .. } => None,
    }
}
