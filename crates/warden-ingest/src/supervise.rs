//! Link tasks that cannot die unnoticed: a task that fails (a panic, which the adapters are
//! written never to raise) is recorded as "link lost", counted, and started again.

use std::time::Duration;

use tokio_util::sync::CancellationToken;
use tracing::Instrument as _;
use warden_telemetry as m;

use crate::Ingest;

/// Runs the link task `start` makes until it ends normally (shutdown); each time it fails,
/// records the link lost (evidence signal, links table, gauge), counts the restart and
/// starts it again after a short pause.
pub async fn supervise<F, Fut>(link: String, ingest: Ingest, shutdown: CancellationToken, start: F)
where
    F: Fn() -> Fut,
    Fut: Future<Output = ()> + Send + 'static,
{
    loop {
        let task = tokio::spawn(start().in_current_span());
        let failure = match task.await {
            Ok(()) => return,
            Err(e) if e.is_cancelled() => return,
            Err(e) => e.to_string(),
        };
        metrics::counter!(m::LINK_TASK_RESTARTS, "link" => link.clone()).increment(1);
        tracing::error!(link = %link, error = %failure, "link task failed; recording link lost and restarting");
        ingest
            .link_change(&link, false, &format!("link task failed: {failure}"), true)
            .await;
        tokio::select! {
            () = shutdown.cancelled() => return,
            () = tokio::time::sleep(Duration::from_secs(1)) => {}
        }
    }
}
