//! The engine in the writer's degraded mode: triage from memory while Postgres is away.
//!
//! While the writer spools, ingest still offers the spooled signals; the engine triages them
//! as always, publishes each batch at once (its incidents' rows travel with the change, so
//! connected consoles see a pendant press within the second) and keeps the batch in
//! `deferred`. Its signals are not in Postgres yet, so nothing can be committed before the
//! spool has drained; once the writer is direct again the kept batches are committed in
//! order, and then whatever the drain stored that nobody triaged (signals spooled by an
//! earlier process, killed during the outage) is replayed. A crash loses only the kept
//! batches: their signals are in the spool or in Postgres untriaged, and are triaged again.

use tokio::sync::watch;
use tokio_util::sync::CancellationToken;
use warden_store::{DegradedState, TriageBatch};
use warden_telemetry as m;

use super::Engine;
use crate::persist::{Published, Stored, commit, writer_degraded};

/// Longest the engine commits kept batches before it takes its inputs again.
const SETTLE_SLICE: std::time::Duration = std::time::Duration::from_millis(20);

/// Resolves when the writer's degraded state changes; never when there is no writer to
/// follow (or it has stopped).
pub(super) async fn changed(w: &mut Option<watch::Receiver<DegradedState>>) {
    match w {
        Some(rx) => {
            if rx.changed().await.is_err() {
                // The writer stopped: nothing more will change.
                *w = None;
                std::future::pending::<()>().await;
            }
        }
        None => std::future::pending().await,
    }
}

impl Engine {
    /// True while batches must not be committed: the writer spools, or earlier batches are
    /// still waiting (order).
    pub(super) fn deferring(&self) -> bool {
        writer_degraded(self.degraded.as_ref()) || !self.deferred.is_empty()
    }

    /// Keeps `batch` for after the drain and publishes it now, rows included (unless it was
    /// published already, while its commit was being tried).
    pub(super) fn defer(&mut self, batch: TriageBatch, published: Option<Published>) {
        if self.deferred.is_empty() {
            tracing::warn!(
                "database unavailable: triage goes on from memory; batches are committed once the spool has drained"
            );
        }
        if let Some(p) = published {
            p.uncommitted(&batch).publish(&self.changes);
        }
        self.deferred.push_back(batch);
        self.gauge();
    }

    fn gauge(&self) {
        #[allow(clippy::cast_precision_loss)] // gauge value
        metrics::gauge!(m::ENGINE_DEFERRED).set(self.deferred.len() as f64);
    }

    /// True while kept batches wait to be committed and the writer is direct: the engine
    /// loop comes back to [`Engine::settle_degraded`] between its inputs.
    pub(super) fn settling(&self) -> bool {
        !self.deferred.is_empty() && !writer_degraded(self.degraded.as_ref())
    }

    /// When the writer is direct again: commits the kept batches in order, then, if the
    /// drain stored anything, triages what nobody has. Stops (keeping the rest) if the
    /// writer goes degraded again, and after [`SETTLE_SLICE`] so that the inputs arriving
    /// meanwhile (a pendant after a long outage) are triaged and shown between slices rather
    /// than behind the whole backlog (they are kept too, behind it, so order holds).
    pub(super) async fn settle_degraded(&mut self, shutdown: &CancellationToken) {
        if writer_degraded(self.degraded.as_ref()) {
            return;
        }
        if !self.deferred.is_empty() {
            let started = std::time::Instant::now();
            self.await_background().await;
            let n = self.deferred.len();
            tracing::debug!(
                batches = n,
                "database back: committing the batches triaged meanwhile"
            );
            while let Some(batch) = self.deferred.pop_front() {
                let stored = commit(
                    &self.store,
                    batch,
                    self.cfg.db_timeout,
                    shutdown,
                    self.degraded.as_ref(),
                    None,
                )
                .await;
                match stored {
                    Stored::Yes => {}
                    Stored::GivenUp => self.catch_up = true,
                    Stored::Deferred(batch) => {
                        self.deferred.push_front(batch);
                        self.gauge();
                        return;
                    }
                }
                self.gauge();
                if !self.deferred.is_empty() && started.elapsed() >= SETTLE_SLICE {
                    return;
                }
            }
            tracing::info!("the batches triaged during the outage are committed");
            self.journal_settle();
        }
        let drained = self.degraded.as_ref().map_or(0, |d| d.borrow().drained);
        if drained != self.seen_drained {
            self.seen_drained = drained;
            // Triaging a signal twice is harmless (the core knows it by id); this finds the
            // ones no process triaged.
            self.replay(shutdown, Some(time::OffsetDateTime::now_utc()))
                .await;
        }
    }

    /// Says what is lost when the engine stops with batches still kept.
    pub(super) fn report_deferred_at_stop(&self) {
        if !self.deferred.is_empty() {
            tracing::warn!(
                batches = self.deferred.len(),
                "stopping with triage batches not yet committed; their signals are triaged again on the next start"
            );
        }
    }
}
