//! Live queue push: one task turns the engine's committed changes into incident views (one
//! query per engine batch, however many consoles are connected) and fans the JSON out to
//! every WebSocket. A console that falls behind is told to re-read the queue; neither the
//! engine nor the other consoles ever wait for it.

use std::collections::{BTreeSet, HashMap};
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
use warden_store::{IncidentRow, Store};
use warden_telemetry as m;

use crate::Console;
use crate::auth::Auth;
use crate::error::ApiError;
use crate::mirror::Mirror;
use crate::view::IncidentView;

/// Push messages kept for a slow console before it is told to resync.
pub const PUSH_CAPACITY: usize = 256;

/// Largest WebSocket message (and frame) a console may send: it sends nothing but pongs and
/// close frames, so anything larger is not a console and its socket is closed (the default
/// of the WebSocket library is 64 MiB, held in memory per socket).
pub const WS_MAX_MESSAGE_BYTES: usize = 4 * 1024;

/// How often the server pings a console, and checks at the latest that its session is
/// still alive (signed out, disabled account).
const PING_EVERY: Duration = Duration::from_secs(20);

fn now_ms() -> i64 {
    i64::try_from(OffsetDateTime::now_utc().unix_timestamp_nanos() / 1_000_000).unwrap_or(0)
}

const RESYNC: &str = r#"{"type":"resync"}"#;

/// A database read on the push path waits at most this long.
const READ_LIMIT: Duration = Duration::from_secs(1);
/// How often the mirror's device and user cards are read again (and at once whenever the
/// device registry changes).
const CARDS_EVERY: Duration = Duration::from_mins(1);

/// The `degraded` message: since when the database has been unavailable, or `null`.
fn degraded_message(since: Option<OffsetDateTime>) -> String {
    serde_json::json!({
        "type": "degraded",
        "server_time_ms": now_ms(),
        "since": since.and_then(|t| t.format(&time::format_description::well_known::Rfc3339).ok()),
    })
    .to_string()
}

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
    mirror: Arc<Mirror>,
    shutdown: CancellationToken,
) {
    let mut changes = engine.subscribe();
    tokio::spawn(tracing::Instrument::in_current_span(follow_devices(
        store.clone(),
        mirror.clone(),
        shutdown.clone(),
    )));
    let mut degraded = mirror.watch();
    let mut since = mirror.degraded_since();
    let mut cards = tokio::time::interval(CARDS_EVERY);
    loop {
        let first: Arc<Changes> = tokio::select! {
            // Cancel-safe: a broadcast `recv` loses nothing when shutdown wins.
            () = shutdown.cancelled() => return,
            _ = cards.tick() => {
                refresh_mirror(&store, &mirror).await;
                continue;
            }
            () = degraded_changed(&mut degraded) => {
                let now = mirror.degraded_since();
                if now != since {
                    since = now;
                    let _ = push.send(Arc::from(degraded_message(since)));
                    if since.is_none() {
                        // The database is the record again: every console re-reads it, and
                        // what was read meanwhile is written to the audit trail.
                        let _ = push.send(Arc::from(RESYNC));
                        write_deferred_audits(&store, &mirror).await;
                    }
                }
                continue;
            }
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
        // Rows of batches published before they were durable (degraded mode), latest wins.
        let mut uncommitted: HashMap<i64, IncidentRow> = HashMap::new();
        uncommitted.extend(first.uncommitted.iter().map(|r| (r.id, r.clone())));
        loop {
            match changes.try_recv() {
                Ok(c) => {
                    ids.extend(c.incidents.iter().copied());
                    urgent.extend(c.offered_life_critical.iter().copied());
                    uncommitted.extend(c.uncommitted.iter().map(|r| (r.id, r.clone())));
                }
                Err(broadcast::error::TryRecvError::Lagged(_)) => {
                    let _ = push.send(Arc::from(RESYNC));
                }
                Err(_) => break,
            }
        }
        if push.receiver_count() == 0 {
            // Nobody to tell now, but the mirror must stay true for the next console.
            let views: Vec<IncidentView> = uncommitted.values().map(|r| mirror.view(r)).collect();
            mirror.track(&views);
            continue;
        }
        if !urgent.is_empty() {
            let first: Vec<i64> = urgent.iter().map(|(id, _)| *id).collect();
            if !send_views(&store, &push, &mirror, &first, &uncommitted, &shutdown).await {
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
            if !send_views(&store, &push, &mirror, &rest, &uncommitted, &shutdown).await {
                return;
            }
        }
    }
}

async fn degraded_changed(
    w: &mut Option<tokio::sync::watch::Receiver<warden_store::DegradedState>>,
) {
    match w {
        Some(rx) => {
            if rx.changed().await.is_err() {
                *w = None;
            }
        }
        None => std::future::pending().await,
    }
}

/// Reads the device cards again whenever the registry changes, so a unit registered a
/// minute before an outage is shown with its client during it.
async fn follow_devices(store: Store, mirror: Arc<Mirror>, shutdown: CancellationToken) {
    while !shutdown.is_cancelled() {
        if let Ok(mut listener) = store.device_listener().await {
            loop {
                tokio::select! {
                    () = shutdown.cancelled() => return,
                    n = listener.recv() => {
                        if n.is_err() {
                            break;
                        }
                        // A burst of changes (a CSV import) is read once: what else is
                        // notified within 200 ms of the last is taken first.
                        while let Ok(more) =
                            tokio::time::timeout(Duration::from_millis(200), listener.recv()).await
                        {
                            if more.is_err() {
                                break;
                            }
                        }
                        refresh_mirror(&store, &mirror).await;
                    }
                }
            }
        }
        tokio::select! {
            () = shutdown.cancelled() => return,
            () = tokio::time::sleep(Duration::from_secs(5)) => {}
        }
    }
}

/// Reads the open queue and the device and user cards into the mirror; a failure (the
/// database away) keeps what the mirror has.
async fn refresh_mirror(store: &Store, mirror: &Mirror) {
    match tokio::time::timeout(Duration::from_secs(10), store.queue_cards()).await {
        Ok(Ok(cards)) => mirror.load_cards(cards),
        Ok(Err(e)) => tracing::warn!(error = %e, "console mirror: device cards not read"),
        Err(_) => tracing::warn!("console mirror: device cards not read within 10 s"),
    }
    if mirror.degraded_since().is_none()
        && let Ok(Ok(rows)) =
            tokio::time::timeout(Duration::from_secs(10), store.incident_views(None)).await
    {
        mirror.learn(&rows);
        let views: Vec<IncidentView> = rows.into_iter().map(IncidentView::from).collect();
        mirror.set_queue(&views);
        let open = mirror.queue_clients();
        mirror.keep_clients(&open);
        cache_clients(store, mirror, open.into_iter().collect()).await;
        write_deferred_audits(store, mirror).await;
    }
}

/// Caches the records and key-safe codes of `ids` (clients with an open alarm) for degraded
/// mode; a client that cannot be read is left as it was.
async fn cache_clients(store: &Store, mirror: &Mirror, ids: Vec<i64>) {
    for id in ids {
        let read = tokio::time::timeout(Duration::from_secs(5), async {
            let doc = crate::records::client_doc(store, id).await.ok()?;
            let key_safe = store.key_safe_for_mirror(id).await.ok()?;
            Some((doc, key_safe))
        })
        .await;
        if let Ok(Some((doc, key_safe))) = read {
            mirror.cache_client(id, doc, key_safe);
        }
    }
}

/// Writes the audit lines kept while the database was unavailable, with their own times;
/// what cannot be written yet is kept for the next try.
async fn write_deferred_audits(store: &Store, mirror: &Mirror) {
    let lines = mirror.take_audits();
    if lines.is_empty() {
        return;
    }
    let n = lines.len();
    let mut rest = lines.into_iter();
    while let Some(a) = rest.next() {
        // Once: a line from the journal may have been written before a crash.
        if let Err(e) = store.audit_once(&a).await {
            tracing::warn!(error = %e, "audit lines kept during the outage not written yet; trying again later");
            mirror.return_audits(std::iter::once(a).chain(rest).collect());
            return;
        }
    }
    mirror.audits_written();
    tracing::info!(
        lines = n,
        "audit lines kept during the outage written with their times"
    );
}

/// Reads the views of `ids` and pushes them as one message; `false` on shutdown. Incidents
/// whose rows came with the change (published before durable: degraded mode) are built
/// from those rows and the mirror's cards, without asking the database.
async fn send_views(
    store: &Store,
    push: &broadcast::Sender<Arc<str>>,
    mirror: &Arc<Mirror>,
    ids: &[i64],
    uncommitted: &HashMap<i64, IncidentRow>,
    shutdown: &CancellationToken,
) -> bool {
    let mut views: Vec<IncidentView> = Vec::with_capacity(ids.len());
    let mut read: Vec<i64> = Vec::new();
    for id in ids {
        match uncommitted.get(id) {
            Some(row) => views.push(mirror.view(row)),
            None => read.push(*id),
        }
    }
    let rows = loop {
        if read.is_empty() {
            break Vec::new();
        }
        let asked = tokio::time::timeout(READ_LIMIT, store.incident_views(Some(&read)))
            .await
            .unwrap_or_else(|_| {
                Err(warden_store::StoreError::ConnectionLost(
                    "incident views not read within 1 s",
                ))
            });
        match asked {
            Ok(r) => break r,
            Err(e) if mirror.degraded_since().is_some() => {
                // Degraded: these were committed before the outage and the mirror already
                // shows them; waiting here would hold up the alarms arriving meanwhile.
                tracing::warn!(error = %e, incidents = read.len(), "console hub: database unavailable; pushing from memory only");
                break Vec::new();
            }
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
    mirror.learn(&rows);
    views.extend(rows.into_iter().map(IncidentView::from));
    mirror.track(&views);
    // A new alarm's client is cached at once (in the background), for an outage to come.
    let new: Vec<i64> = views
        .iter()
        .filter(|v| v.state != "resolved")
        .filter_map(|v| v.client.as_ref().map(|c| c.id))
        .filter(|id| !mirror.has_client(*id))
        .collect();
    if !new.is_empty() && mirror.degraded_since().is_none() {
        let (store, mirror) = (store.clone(), mirror.clone());
        tokio::spawn(async move { cache_clients(&store, &mirror, new).await });
    }
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

The client sends nothing but pongs and close frames; a message or frame over 4 KiB closes the socket. The server pings every 20 seconds and closes the socket when the session has ended (sign-out, expiry, disabled account), when it would have ended for idleness (no request for the idle timeout: the socket and its pings and pongs are not activity and do not keep the session alive), or when the server shuts down.",
    responses(
        (status = 101, description = "Switching protocols: the socket is open and the messages above follow."),
        (status = 400, description = "`bad_request`: not a valid WebSocket upgrade request.", body = crate::openapi::ErrorBody),
        (status = 401, response = crate::openapi::Unauthorized),
        (status = 403, description = "`forbidden`: your role may not do this (operator, supervisor only), or the `Origin` header names another host than `Host` (cross-origin WebSocket refused).", body = crate::openapi::ErrorBody),
        (status = 426, description = "`upgrade_required`: the connection cannot be upgraded.", body = crate::openapi::ErrorBody),
        (status = 503, response = crate::openapi::Unavailable),
    )
)]
pub async fn ws(
    State(c): State<Console>,
    auth: Auth,
    headers: HeaderMap,
    upgrade: WebSocketUpgrade,
) -> Result<Response, ApiError> {
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
    Ok(upgrade
        .max_message_size(WS_MAX_MESSAGE_BYTES)
        .max_frame_size(WS_MAX_MESSAGE_BYTES)
        .on_upgrade(move |socket| serve(socket, rx, c, auth)))
}

/// Why a console's socket was closed by the server (logged at debug).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Closed {
    Shutdown,
    /// The session ended: signed out, disabled, expired, or idle longer than the idle
    /// timeout (the socket's own traffic does not count as activity).
    SessionEnded,
    /// The console closed it, or the connection failed.
    ByClient,
    /// The console sent a message over [`WS_MAX_MESSAGE_BYTES`] or broke the protocol.
    Refused,
    /// The push task ended (shutdown in progress).
    PushEnded,
}

/// Pushes to one console until its session ends (see [`session_check`]), it goes away, it
/// sends something no console sends, or the server shuts down.
async fn serve(
    mut socket: WebSocket,
    mut rx: broadcast::Receiver<Arc<str>>,
    c: Console,
    auth: Auth,
) {
    let shutdown = c.shutdown();
    metrics::gauge!(m::CONSOLE_CONNECTIONS).increment(1.0);
    let hello = serde_json::json!({ "type": "hello", "server_time_ms": now_ms() }).to_string();
    let degraded = c
        .mirror()
        .degraded_since()
        .map(|since| degraded_message(Some(since)));
    let mut ping = tokio::time::interval(PING_EVERY);
    // The first tick is at once; the session was checked by the upgrade request itself.
    ping.tick().await;
    let check = tokio::time::sleep(session_check(&c, &auth).await);
    tokio::pin!(check);
    let mut ok = socket.send(Message::Text(hello.into())).await.is_ok();
    if let Some(d) = degraded {
        ok = ok && socket.send(Message::Text(d.into())).await.is_ok();
    }
    let why = loop {
        if !ok {
            break Closed::ByClient;
        }
        tokio::select! {
            () = shutdown.cancelled() => break Closed::Shutdown,
            r = rx.recv() => {
                let text: Arc<str> = match r {
                    Ok(t) => t,
                    Err(broadcast::error::RecvError::Lagged(_)) => {
                        metrics::counter!(m::CONSOLE_PUSH_LAGGED).increment(1);
                        Arc::from(RESYNC)
                    }
                    Err(broadcast::error::RecvError::Closed) => break Closed::PushEnded,
                };
                ok = socket.send(Message::Text(text.as_ref().into())).await.is_ok();
            }
            () = &mut check => {
                let Some(next) = next_check(&c, &auth).await else {
                    break Closed::SessionEnded;
                };
                check.as_mut().reset(tokio::time::Instant::now() + next);
            }
            _ = ping.tick() => {
                ok = socket.send(Message::Ping(Vec::new().into())).await.is_ok();
            }
            m = socket.recv() => match m {
                // The console sends nothing but pongs and close frames; neither (nor its own
                // pings, answered by the library) counts as activity of the session.
                Some(Ok(Message::Close(_))) | None => break Closed::ByClient,
                // Over WS_MAX_MESSAGE_BYTES, or not WebSocket at all.
                Some(Err(_)) => break Closed::Refused,
                Some(Ok(_)) => {}
            },
        }
    };
    tracing::debug!(reason = ?why, user = auth.user.id, "console socket closed");
    let _ = socket.send(Message::Close(None)).await;
    metrics::gauge!(m::CONSOLE_CONNECTIONS).decrement(1.0);
}

/// When the session must next be checked: when it would end for idleness or expiry if
/// nothing else happens, and at least every [`PING_EVERY`] (a sign-out or a disabled
/// account ends it early). The check itself does not refresh the session.
async fn session_check(c: &Console, auth: &Auth) -> Duration {
    next_check(c, auth).await.unwrap_or(Duration::ZERO)
}

/// The wait before the next check, or `None` when the session has ended. While the database
/// does not answer, the socket stays open and asks again later (the degraded-mode mirror
/// honours sessions for requests; the socket neither extends nor ends one meanwhile).
async fn next_check(c: &Console, auth: &Auth) -> Option<Duration> {
    let asked = tokio::time::timeout(
        READ_LIMIT,
        c.store()
            .session_left(auth.token_hash(), c.cfg().idle_timeout),
    )
    .await;
    match asked {
        Ok(Ok(None)) => None,
        // A little after the moment it would end, so that the next check finds it ended
        // (or refreshed by a request meanwhile).
        Ok(Ok(Some(left))) => Some((left + Duration::from_millis(50)).min(PING_EVERY)),
        Ok(Err(_)) | Err(_) => Some(PING_EVERY),
    }
}
