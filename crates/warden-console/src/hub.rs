//! Live queue push: one task turns the engine's committed changes into incident views (one
//! query per engine batch, however many consoles are connected) and fans the JSON out to
//! every WebSocket. A console that falls behind is told to re-read the queue; neither the
//! engine nor the other consoles ever wait for it.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::State;
use axum::extract::ws::{Message, WebSocket, WebSocketUpgrade};
use axum::http::HeaderMap;
use axum::response::Response;
use time::OffsetDateTime;
use tokio::sync::broadcast;
use tokio_util::sync::CancellationToken;
use warden_engine::{Changes, EngineHandle};
use warden_store::Store;
use warden_telemetry as m;

use crate::Console;
use crate::auth::{Auth, HANDLERS};
use crate::error::ApiError;
use crate::view::IncidentView;

/// Push messages kept for a slow console before it is told to resync.
pub const PUSH_CAPACITY: usize = 256;

fn now_ms() -> i64 {
    i64::try_from(OffsetDateTime::now_utc().unix_timestamp_nanos() / 1_000_000).unwrap_or(0)
}

const RESYNC: &str = r#"{"type":"resync"}"#;

/// Runs until `shutdown`: engine changes in, JSON messages out on `push`.
///
/// Whatever has piled up while the last message was being built is merged into one, so the
/// task never works through a backlog of storm batches one by one, and the life-critical
/// incidents among it are read and pushed first, on their own: a pendant press waits for at
/// most the query in flight, never behind a storm's updates.
pub async fn run(
    store: Store,
    engine: EngineHandle,
    push: broadcast::Sender<Arc<str>>,
    shutdown: CancellationToken,
) {
    let mut changes = engine.subscribe();
    loop {
        let first: Arc<Changes> = tokio::select! {
            // Cancel-safe: a broadcast `recv` loses nothing when shutdown wins.
            () = shutdown.cancelled() => return,
            r = changes.recv() => match r {
                Ok(c) => c,
                Err(broadcast::error::RecvError::Lagged(n)) => {
                    tracing::warn!(missed = n, "console hub fell behind the engine; consoles resync");
                    let _ = push.send(Arc::from(RESYNC));
                    continue;
                }
                Err(broadcast::error::RecvError::Closed) => return,
            },
        };
        let mut ids: BTreeSet<i64> = first.incidents.iter().copied().collect();
        let mut urgent: Vec<(i64, OffsetDateTime)> = first.offered_life_critical.clone();
        loop {
            match changes.try_recv() {
                Ok(c) => {
                    ids.extend(c.incidents.iter().copied());
                    urgent.extend(c.offered_life_critical.iter().copied());
                }
                Err(broadcast::error::TryRecvError::Lagged(_)) => {
                    let _ = push.send(Arc::from(RESYNC));
                }
                Err(_) => break,
            }
        }
        if push.receiver_count() == 0 {
            continue;
        }
        if !urgent.is_empty() {
            let first: Vec<i64> = urgent.iter().map(|(id, _)| *id).collect();
            if !send_views(&store, &push, &first, &shutdown).await {
                return;
            }
            let sent = OffsetDateTime::now_utc();
            for (_, arrived) in &urgent {
                metrics::histogram!(m::CONSOLE_PUSH, "priority" => "life_critical")
                    .record((sent - *arrived).as_seconds_f64().max(0.0));
            }
            for id in &first {
                ids.remove(id);
            }
        }
        if !ids.is_empty() {
            let rest: Vec<i64> = ids.into_iter().collect();
            if !send_views(&store, &push, &rest, &shutdown).await {
                return;
            }
        }
    }
}

/// Reads the views of `ids` and pushes them as one message; `false` on shutdown.
async fn send_views(
    store: &Store,
    push: &broadcast::Sender<Arc<str>>,
    ids: &[i64],
    shutdown: &CancellationToken,
) -> bool {
    let rows = loop {
        match store.incident_views(Some(ids)).await {
            Ok(r) => break r,
            Err(e) => {
                tracing::error!(error = %e, "console hub cannot read incidents; consoles resync");
                let _ = push.send(Arc::from(RESYNC));
                tokio::select! {
                    () = shutdown.cancelled() => return false,
                    () = tokio::time::sleep(Duration::from_millis(500)) => {}
                }
            }
        }
    };
    let views: Vec<IncidentView> = rows.into_iter().map(IncidentView::from).collect();
    let msg = serde_json::json!({
        "type": "incidents",
        "server_time_ms": now_ms(),
        "incidents": views,
    });
    let _ = push.send(Arc::from(msg.to_string()));
    true
}

/// Live queue push (WebSocket).
#[utoipa::path(get, path = "/api/v1/ws", tag = "Incidents", operation_id = "openQueueSocket",
    summary = "Live queue push (WebSocket)",
    description = "Roles: operator, supervisor.

A WebSocket (send a normal WebSocket upgrade GET with the session cookie; no CSRF header is needed, but a browser `Origin` whose host differs from `Host` is refused). The server pushes JSON text frames, each a `WsMessage` (see components.schemas):

- `{\"type\":\"hello\",\"server_time_ms\":n}` once on connect;
- `{\"type\":\"incidents\",\"server_time_ms\":n,\"incidents\":[IncidentView]}` whenever incidents change (an incident whose state is \"resolved\" is to be removed from the queue);
- `{\"type\":\"resync\"}` when this console (or the server's push) fell behind: re-fetch GET /api/v1/queue.

The client sends nothing but pongs and close frames. The server pings every 20 seconds and closes the socket when the session has ended (sign-out, expiry, disabled account) or the server shuts down.",
    responses(
        (status = 101, description = "Switching protocols: the socket is open and the messages above follow."),
        (status = 400, description = "Not a valid WebSocket upgrade request (plain text from the framework).", body = crate::openapi::ErrorBody),
        (status = 401, response = crate::openapi::Unauthorized),
        (status = 403, description = "`forbidden`: your role may not do this (operator, supervisor only), or the `Origin` header names another host than `Host` (cross-origin WebSocket refused).", body = crate::openapi::ErrorBody),
        (status = 426, description = "The connection cannot be upgraded (plain text from the framework).", body = crate::openapi::ErrorBody),
        (status = 503, response = crate::openapi::Unavailable),
    )
)]
pub async fn ws(
    State(c): State<Console>,
    auth: Auth,
    headers: HeaderMap,
    upgrade: WebSocketUpgrade,
) -> Result<Response, ApiError> {
    auth.require(HANDLERS)?;
    // A page from another site must not open a socket with this user's cookie.
    if let Some(origin) = headers.get("origin").and_then(|v| v.to_str().ok()) {
        let host = headers
            .get("host")
            .and_then(|v| v.to_str().ok())
            .unwrap_or("");
        let origin_host = origin.split("://").nth(1).unwrap_or(origin);
        if origin_host != host {
            return Err(ApiError::forbidden("cross-origin WebSocket refused"));
        }
    }
    let rx = c.push().subscribe();
    Ok(upgrade.on_upgrade(move |socket| serve(socket, rx, c, auth)))
}

async fn serve(
    mut socket: WebSocket,
    mut rx: broadcast::Receiver<Arc<str>>,
    c: Console,
    auth: Auth,
) {
    let shutdown = c.shutdown();
    metrics::gauge!(m::CONSOLE_CONNECTIONS).increment(1.0);
    let hello = serde_json::json!({ "type": "hello", "server_time_ms": now_ms() }).to_string();
    let mut ping = tokio::time::interval(Duration::from_secs(20));
    let mut ok = socket.send(Message::Text(hello.into())).await.is_ok();
    while ok {
        tokio::select! {
            () = shutdown.cancelled() => break,
            r = rx.recv() => {
                let text: Arc<str> = match r {
                    Ok(t) => t,
                    Err(broadcast::error::RecvError::Lagged(_)) => {
                        metrics::counter!(m::CONSOLE_PUSH_LAGGED).increment(1);
                        Arc::from(RESYNC)
                    }
                    Err(broadcast::error::RecvError::Closed) => break,
                };
                ok = socket.send(Message::Text(text.as_ref().into())).await.is_ok();
            }
            _ = ping.tick() => {
                // A session that ended (sign-out, disabled account, expiry) ends the push too.
                if let Ok(None) = c.store().session(auth.token_hash(), c.cfg().idle_timeout).await {
                    break;
                }
                ok = socket.send(Message::Ping(Vec::new().into())).await.is_ok();
            }
            m = socket.recv() => match m {
                // The console sends nothing but pongs and close frames.
                Some(Ok(Message::Close(_)) | Err(_)) | None => break,
                Some(Ok(_)) => {}
            },
        }
    }
    let _ = socket.send(Message::Close(None)).await;
    metrics::gauge!(m::CONSOLE_CONNECTIONS).decrement(1.0);
}
