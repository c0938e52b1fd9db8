//! The admin listener: `/healthz` (the process is up), `/readyz` (the triage engine runs
//! and makes progress, the database answers, the writer is not in degraded mode and every
//! configured link is up) and `/metrics` (Prometheus text format).

use std::net::SocketAddr;

use axum::Router;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::IntoResponse;
use axum::routing::get;
use metrics_exporter_prometheus::PrometheusHandle;
use tokio_util::sync::CancellationToken;
use warden_engine::EngineHandle;
use warden_store::{DegradedState, Store};

#[derive(Clone)]
struct AppState {
    store: Store,
    metrics: PrometheusHandle,
    links: Vec<String>,
    engine: EngineHandle,
    degraded: tokio::sync::watch::Receiver<DegradedState>,
}

/// Binds the admin listener; returns the bound address and the serving future (with the
/// header-read timeout and connection caps of `limits`, as the console's listener; over
/// HTTPS only when `tls_cert` and `tls_key` are set).
pub async fn bind(
    cfg: &crate::config::AdminConfig,
    store: Store,
    metrics: PrometheusHandle,
    links: Vec<String>,
    engine: EngineHandle,
    degraded: tokio::sync::watch::Receiver<DegradedState>,
    shutdown: CancellationToken,
) -> anyhow::Result<(
    SocketAddr,
    impl Future<Output = std::io::Result<()>> + use<>,
)> {
    let state = AppState {
        store,
        metrics,
        links,
        engine,
        degraded,
    };
    let app = Router::new()
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/readyz", get(readyz))
        .route("/metrics", get(render_metrics))
        .with_state(state);
    let listener = tokio::net::TcpListener::bind(cfg.listen).await?;
    let addr = listener.local_addr()?;
    Ok((
        addr,
        warden_console::listen::serve_with(listener, app, cfg.limits(), cfg.tls_files(), shutdown),
    ))
}

async fn render_metrics(State(s): State<AppState>) -> impl IntoResponse {
    (
        [("content-type", "text/plain; version=0.0.4")],
        s.metrics.render(),
    )
}

async fn readyz(State(s): State<AppState>) -> impl IntoResponse {
    // The engine first: a dead, stalled or replaying engine means alarms are stored but
    // reach no console.
    let mut problems = s.engine.health().problems();
    let degraded = *s.degraded.borrow();
    if let Some(line) = degraded_line(&degraded, time::OffsetDateTime::now_utc()) {
        problems.push(line);
    }
    // Each database question bounded, so readiness answers while the database is away.
    let bound = std::time::Duration::from_secs(1);
    match tokio::time::timeout(bound, s.store.ping()).await {
        Ok(Ok(())) => {}
        Ok(Err(e)) => problems.push(format!("database: {e}")),
        Err(_) => problems.push("database: no answer within 1 s".to_owned()),
    }
    match tokio::time::timeout(bound, s.store.link_states())
        .await
        .unwrap_or_else(|_| {
            Err(warden_store::StoreError::ConnectionLost(
                "no answer within 1 s",
            ))
        }) {
        Ok(states) => {
            for link in &s.links {
                match states.iter().find(|l| &l.id == link) {
                    Some(l) if l.up => {}
                    Some(_) => problems.push(format!("link {link}: down")),
                    None => problems.push(format!("link {link}: not seen yet")),
                }
            }
        }
        Err(e) => problems.push(format!("links: {e}")),
    }
    if problems.is_empty() {
        (StatusCode::OK, "ready\n".to_owned())
    } else {
        (
            StatusCode::SERVICE_UNAVAILABLE,
            format!("not ready:\n{}\n", problems.join("\n")),
        )
    }
}

/// The `/readyz` line for degraded mode: since when, how deep and how old the spool is.
pub fn degraded_line(d: &DegradedState, now: time::OffsetDateTime) -> Option<String> {
    let since = d.since?;
    let age = d
        .depth
        .oldest
        .map_or(0, |t| (now - t).whole_seconds().max(0));
    Some(format!(
        "degraded: database unavailable since {since}; spool holds {} records ({} bytes, {:.0}% of its bound), oldest {age} s",
        d.depth.records,
        d.depth.bytes,
        d.fill() * 100.0
    ))
}
