//! Replay: committed signals that were never triaged are fed through the core again, on
//! start and by the periodic catch-up (and after a spool's drain).

use std::time::Duration;

use time::OffsetDateTime;
use tokio_util::sync::CancellationToken;
use warden_core::Decoded;
use warden_store::PendingSignal;
use warden_telemetry as m;

use super::{CommittedSignal, Engine, Item, Mode, offered};
use crate::health::EngineState;

impl Engine {
    /// Feeds committed-but-untriaged signals back through the core, oldest first: all of
    /// them on start (`before` is `None`), or those older than `before` during a catch-up.
    pub(super) async fn replay(
        &mut self,
        shutdown: &CancellationToken,
        before: Option<OffsetDateTime>,
    ) {
        // A start replays before taking live input; a catch-up that finds nothing is not a
        // replay (readiness must not flap every minute).
        if before.is_none() {
            self.health.set_state(EngineState::Replaying);
        }
        self.await_background().await;
        let since = OffsetDateTime::now_utc() - self.cfg.replay_window;
        loop {
            if self.deferring() {
                // Degraded (the writer drains or spools): a replayed batch would be kept, not
                // committed, and the same page read again. The drain's end replays instead.
                self.health.set_state(EngineState::Running);
                return;
            }
            let read = tokio::time::timeout(
                self.cfg.db_timeout,
                self.store.untriaged_signals(since, before, 1000),
            )
            .await;
            let pending = match read {
                Ok(Ok(p)) => p,
                Ok(Err(e)) => {
                    self.retry_replay_read(&e.to_string(), shutdown).await;
                    if shutdown.is_cancelled() {
                        return;
                    }
                    continue;
                }
                Err(_) => {
                    self.retry_replay_read("timed out", shutdown).await;
                    if shutdown.is_cancelled() {
                        return;
                    }
                    continue;
                }
            };
            if pending.is_empty() {
                // Caught up: the incidents of an outage exist again, so the commands an
                // earlier process journalled during it can find them.
                self.apply_journal(shutdown).await;
                self.health.set_state(EngineState::Running);
                return;
            }
            self.health.set_state(EngineState::Replaying);
            let n = pending.len();
            let items: Vec<Item> = pending
                .iter()
                .flat_map(|p: &PendingSignal| {
                    let decoded = Decoded::from_stored(&p.kind, &p.decoded);
                    offered(&CommittedSignal {
                        id: p.id,
                        source: p.source,
                        link: &p.link_id,
                        account: p.account.as_deref(),
                        device_id: p.device_id,
                        decoded: &decoded,
                        received_at: p.received_at,
                    })
                })
                .map(Item::signal)
                .collect();
            self.report.replayed += n as u64;
            metrics::counter!(m::ENGINE_REPLAYED).increment(n as u64);
            tracing::info!(signals = n, "replaying signals committed but not triaged");
            // Flushed at once: a held signal is still "untriaged" in the database, and the
            // next page of this replay must not read it again.
            let done = self.process(items, Mode::Replay, shutdown).await;
            self.await_background().await;
            if !done {
                // The page could not be stored; it stays untriaged for the next catch-up
                // rather than being read again at once.
                self.catch_up = true;
                self.health.set_state(EngineState::Running);
                return;
            }
        }
    }

    async fn retry_replay_read(&self, error: &str, shutdown: &CancellationToken) {
        tracing::error!(error, "cannot read untriaged signals; retrying");
        tokio::select! {
            () = shutdown.cancelled() => {}
            () = tokio::time::sleep(Duration::from_secs(1)) => {}
        }
    }
}
