//! A start while the database is unavailable: until Postgres answers, `wardend` runs its
//! sources and the writer only, so every signal is acknowledged from the local spool (a
//! restart in the middle of an outage answers receivers and the broker as before it). The
//! device registry comes from its last snapshot; nothing is triaged (the engine needs the
//! database to rebuild). Once Postgres answers, the sources stop (answering what they hold),
//! the writer stops with everything in the spool, and the normal start follows: it drains
//! the spool, and the engine triages what was drained.

use std::time::Duration;

use anyhow::Context as _;
use axum::Router;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::IntoResponse;
use axum::routing::get;
use metrics_exporter_prometheus::PrometheusHandle;
use tokio::sync::watch;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;
use tracing::Instrument as _;
use warden_ingest::{DeviceCache, Ingest};
use warden_store::{DegradedState, Store};

use crate::config::Config;
use crate::run::{connect, spawn_sources, spawn_writer};

/// Where the device registry's snapshot is kept.
pub fn snapshot_path(cfg: &Config) -> std::path::PathBuf {
    cfg.data_dir.join("devices.snapshot.json")
}

#[derive(Clone)]
struct AdminState {
    metrics: PrometheusHandle,
    degraded: watch::Receiver<DegradedState>,
}

/// Runs ingest on the spool until the database answers (returning the connected store) or
/// `shutdown` fires (`None`).
pub async fn until_database(
    cfg: &Config,
    url: &str,
    metrics: &PrometheusHandle,
    shutdown: &CancellationToken,
) -> anyhow::Result<Option<Store>> {
    let store =
        Store::connect_lazy(url, cfg.database.max_connections).context("the database URL")?;
    let stop_writer = CancellationToken::new();
    let (writer, writer_task) = spawn_writer(cfg, &store, &stop_writer)?;
    let devices = DeviceCache::from_snapshot(store.clone(), &snapshot_path(cfg));
    devices.follow_degraded(writer.watch_degraded());
    let admin_state = AdminState {
        metrics: metrics.clone(),
        degraded: writer.watch_degraded(),
    };
    let ingest = Ingest::new(writer, devices, store.clone(), None);
    let sources = shutdown.child_token();
    let mut tasks = JoinSet::new();
    spawn_sources(cfg, &ingest, &sources, &mut tasks).await?;
    let admin_stop = CancellationToken::new();
    let admin = admin(cfg, admin_state, admin_stop.clone()).await?;

    // Until Postgres answers (or shutdown).
    let connected = loop {
        tokio::select! {
            () = shutdown.cancelled() => break None,
            () = tokio::time::sleep(Duration::from_secs(1)) => {}
        }
        if let Ok(Ok(store)) = tokio::time::timeout(Duration::from_secs(5), connect(cfg, url)).await
        {
            tracing::info!("database answers: leaving the start-up standby for a normal start");
            break Some(store);
        }
    };
    sources.cancel();
    let _ = tokio::time::timeout(Duration::from_secs(10), async {
        while tasks.join_next().await.is_some() {}
    })
    .await;
    tasks.abort_all();
    drop(ingest);
    stop_writer.cancel();
    match tokio::time::timeout(Duration::from_secs(10), writer_task).await {
        Ok(Ok(report)) => tracing::info!(?report, "standby writer stopped"),
        Ok(Err(e)) => tracing::error!(error = %e, "standby writer task failed"),
        Err(_) => tracing::error!("standby writer did not stop within 10s"),
    }
    admin_stop.cancel();
    let _ = admin.await;
    Ok(connected)
}

/// `/healthz`, `/readyz` (always 503: degraded, with the spool's depth) and `/metrics`.
async fn admin(
    cfg: &Config,
    state: AdminState,
    stop: CancellationToken,
) -> anyhow::Result<tokio::task::JoinHandle<()>> {
    let app = Router::new()
        .route("/healthz", get(|| async { "ok\n" }))
        .route(
            "/readyz",
            get(|State(s): State<AdminState>| async move {
                let d = *s.degraded.borrow();
                let line = crate::admin::degraded_line(&d, time::OffsetDateTime::now_utc())
                    .unwrap_or_else(|| "degraded: database unavailable at start".to_owned());
                (
                    StatusCode::SERVICE_UNAVAILABLE,
                    format!("not ready:\n{line}\nengine: waiting for the database to start\n"),
                )
            }),
        )
        .route(
            "/metrics",
            get(|State(s): State<AdminState>| async move {
                (
                    [("content-type", "text/plain; version=0.0.4")],
                    s.metrics.render(),
                )
                    .into_response()
            }),
        )
        .with_state(state);
    let listener = tokio::net::TcpListener::bind(cfg.admin.listen)
        .await
        .with_context(|| format!("binding the admin listener to {}", cfg.admin.listen))?;
    let limits = cfg.admin.limits();
    Ok(tokio::spawn(
        async move {
            let _ = warden_console::listen::serve(listener, app, limits, stop).await;
        }
        .instrument(tracing::info_span!("standby_admin")),
    ))
}
