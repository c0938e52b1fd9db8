//! The HTTP listener of the console and of wardend's admin port: an accept loop of our own
//! around hyper's HTTP/1 connection, because `axum::serve` can set neither a header-read
//! timeout nor a connection cap.
//!
//! - A client must send a request's whole head within `header_read_timeout` of the
//!   connection being ready for it (its opening, or the end of the previous response on a
//!   kept-alive connection): a client that sends headers slowly, or nothing at all, is cut
//!   off then. An idle kept-alive connection is therefore closed after the same time.
//! - At most `max_connections` connections are open on the listener, and at most
//!   `max_connections_per_address` from one client address. A connection over either cap is
//!   closed at once, before any byte is read; it is counted
//!   (`warden_http_connections_refused_total`) and logged at most once per
//!   [`LOG_REFUSALS_EVERY`], with how many were refused meanwhile (a flood writes a few
//!   lines, not one per connection).
//! - A connection upgraded to a WebSocket keeps its place under both caps until the socket
//!   closes: the place is tied to the socket itself, not to hyper's connection task.
//! - Every request carries `ConnectInfo<SocketAddr>`, the peer's address, as with
//!   `into_make_service_with_connect_info`.
//! - With TLS ([`serve_tls`]) the handshake comes first, off the accept loop, and must
//!   finish within the same `header_read_timeout`; a handshake that fails or is too slow
//!   (plain HTTP sent to the HTTPS port, say) closes the connection and is counted
//!   (`warden_http_tls_handshake_failures_total`). The connection holds its place under the
//!   caps from the moment it is accepted, handshake included.
//! - On `shutdown` the listener stops accepting, every connection finishes the request in
//!   flight and closes (HTTP/1 graceful shutdown), and `serve` returns once they have.

use std::collections::HashMap;
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::pin::Pin;
use std::sync::{Arc, Mutex, PoisonError};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use axum::Router;
use axum::extract::ConnectInfo;
use hyper::body::Incoming;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tower::ServiceExt as _;
use tracing::Instrument as _;
use warden_telemetry as m;

/// Refusals are logged at most once per this long (each one is counted).
pub const LOG_REFUSALS_EVERY: Duration = Duration::from_secs(10);

/// The limits of one listener.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// The listener's name: the `listener` label of its metrics and the log lines' field
    /// (`console` or `admin`, see `warden_telemetry::LISTENERS`).
    pub name: &'static str,
    /// Its configuration section, named in the log line of a refusal.
    pub section: &'static str,
    /// Longest a client may take to send a request's head.
    pub header_read_timeout: Duration,
    /// Open connections at most (WebSockets included).
    pub max_connections: usize,
    /// Open connections from one client address at most.
    pub max_connections_per_address: usize,
}

/// Serves `app` on `listener` with `limits` until `shutdown` (see the module doc).
pub async fn serve(
    listener: TcpListener,
    app: Router,
    limits: Limits,
    shutdown: CancellationToken,
) -> io::Result<()> {
    serve_tls(listener, app, limits, None, shutdown).await
}

/// As [`serve`], over TLS when `tls` is given (HTTPS only: a client that does not start a
/// TLS handshake is closed).
pub async fn serve_tls(
    listener: TcpListener,
    app: Router,
    limits: Limits,
    tls: Option<Arc<rustls::ServerConfig>>,
    shutdown: CancellationToken,
) -> io::Result<()> {
    let acceptor = tls.map(tokio_rustls::TlsAcceptor::from);
    m::register_zero(m::LISTENER_ZERO);
    let total = Arc::new(Semaphore::new(limits.max_connections));
    let per_address: Arc<Mutex<HashMap<IpAddr, usize>>> = Arc::default();
    let mut refusals = Refusals::default();
    let tracker = TaskTracker::new();
    loop {
        let (stream, peer) = tokio::select! {
            // Cancel-safe: `accept` loses no connection when shutdown wins.
            () = shutdown.cancelled() => break,
            accepted = listener.accept() => match accepted {
                Ok(a) => a,
                Err(e) => {
                    // Out of file descriptors, most likely: wait rather than spin.
                    tracing::warn!(error = %e, listener = limits.name, "accept failed");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            },
        };
        let Some(slot) = Slot::take(&total, &per_address, &limits, peer.ip(), &mut refusals) else {
            // Closed at once: dropping the stream closes it unread.
            drop(stream);
            continue;
        };
        let held = Held {
            stream,
            _slot: slot,
        };
        let span = tracing::debug_span!("http_connection", listener = limits.name, %peer);
        let (app, shutdown) = (app.clone(), shutdown.clone());
        if let Some(acceptor) = acceptor.clone() {
            tracker.spawn(
                async move {
                    if let Some(tls) = handshake(&acceptor, held, limits, &shutdown).await {
                        connection(TokioIo::new(tls), app, peer, limits, shutdown).await;
                    }
                }
                .instrument(span),
            );
        } else {
            tracker.spawn(
                connection(TokioIo::new(held), app, peer, limits, shutdown).instrument(span),
            );
        }
    }
    drop(listener);
    tracker.close();
    tracker.wait().await;
    Ok(())
}

/// As [`serve`] without `tls`; with it, over HTTPS only with that certificate and key
/// (reloaded when the files change, see [`crate::tls`]), every answer carrying
/// `Strict-Transport-Security`, and an error at once when the pair does not load. What the
/// console and the admin listener run.
pub async fn serve_with(
    listener: TcpListener,
    app: Router,
    limits: Limits,
    tls: Option<crate::tls::TlsFiles>,
    shutdown: CancellationToken,
) -> io::Result<()> {
    let Some(files) = tls else {
        return serve(listener, app, limits, shutdown).await;
    };
    let invalid = |e: String| io::Error::new(io::ErrorKind::InvalidData, e);
    let resolver = Arc::new(
        crate::tls::Reloading::new(limits.name, files)
            .map_err(|e| invalid(format!("{} tls: {e}", limits.section)))?,
    );
    let config = resolver
        .server_config()
        .map_err(|e| invalid(format!("{} tls: {e}", limits.section)))?;
    let watcher = resolver.watch(shutdown.clone());
    let app = app.layer(tower_http::set_header::SetResponseHeaderLayer::overriding(
        axum::http::header::STRICT_TRANSPORT_SECURITY,
        axum::http::HeaderValue::from_static(crate::HSTS),
    ));
    let served = serve_tls(listener, app, limits, Some(config), shutdown).await;
    watcher.abort();
    served
}

/// The TLS handshake of a connection, bounded by the header-read timeout; `None` (counted
/// and logged at debug) when it failed, took too long or `shutdown` came first.
async fn handshake(
    acceptor: &tokio_rustls::TlsAcceptor,
    held: Held,
    limits: Limits,
    shutdown: &CancellationToken,
) -> Option<tokio_rustls::server::TlsStream<Held>> {
    let accepted = tokio::select! {
        r = tokio::time::timeout(limits.header_read_timeout, acceptor.accept(held)) => r,
        () = shutdown.cancelled() => return None,
    };
    let error = match accepted {
        Ok(Ok(tls)) => return Some(tls),
        Ok(Err(e)) => e.to_string(),
        Err(_) => "not finished within the header-read timeout".to_owned(),
    };
    metrics::counter!(m::LISTENER_TLS_HANDSHAKE_FAILURES, "listener" => limits.name).increment(1);
    tracing::debug!(
        listener = limits.name,
        error,
        "tls handshake failed; connection closed"
    );
    None
}

/// Serves one connection until it closes, or until `shutdown` lets its request in flight
/// finish.
async fn connection<I>(
    io: TokioIo<I>,
    app: Router,
    peer: SocketAddr,
    limits: Limits,
    shutdown: CancellationToken,
) where
    I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let service = hyper::service::service_fn(move |req: hyper::Request<Incoming>| {
        let mut req = req.map(axum::body::Body::new);
        req.extensions_mut().insert(ConnectInfo(peer));
        app.clone().oneshot(req)
    });
    let mut builder = hyper::server::conn::http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(limits.header_read_timeout);
    let conn = builder.serve_connection(io, service).with_upgrades();
    let mut conn = std::pin::pin!(conn);
    let result = tokio::select! {
        r = conn.as_mut() => r,
        () = shutdown.cancelled() => {
            conn.as_mut().graceful_shutdown();
            conn.await
        }
    };
    if let Err(e) = result {
        if e.is_timeout() {
            metrics::counter!(m::LISTENER_HEADER_TIMEOUTS, "listener" => limits.name).increment(1);
            tracing::debug!(listener = limits.name, %peer, "request head not sent in time; connection closed");
        } else {
            tracing::debug!(listener = limits.name, %peer, error = %e, "connection ended with an error");
        }
    }
}

/// Why a connection was refused: the `reason` label of the refusals metric.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Over {
    Total,
    PerAddress,
}

impl Over {
    fn label(self) -> &'static str {
        match self {
            Over::Total => "total",
            Over::PerAddress => "per_address",
        }
    }
}

/// Counts refusals and logs them at most once per [`LOG_REFUSALS_EVERY`].
#[derive(Debug, Default)]
struct Refusals {
    last_logged: Option<Instant>,
    unlogged: u64,
}

impl Refusals {
    /// The one place that counts and logs a refused connection.
    fn refuse(&mut self, limits: &Limits, over: Over, peer: IpAddr) {
        metrics::counter!(m::LISTENER_REFUSED, "listener" => limits.name, "reason" => over.label())
            .increment(1);
        self.unlogged += 1;
        if self
            .last_logged
            .is_none_or(|t| t.elapsed() >= LOG_REFUSALS_EVERY)
        {
            let (max, knob) = match over {
                Over::Total => (limits.max_connections, "max_connections"),
                Over::PerAddress => (
                    limits.max_connections_per_address,
                    "max_connections_per_address",
                ),
            };
            tracing::warn!(
                listener = limits.name,
                %peer,
                reason = over.label(),
                max,
                refused = self.unlogged,
                "connections refused at the {}.{knob} limit (refused counts every refusal since the last such line)",
                limits.section
            );
            self.last_logged = Some(Instant::now());
            self.unlogged = 0;
        }
    }
}

/// A connection's place under the listener's caps, given back when it is dropped.
#[derive(Debug)]
struct Slot {
    _permit: OwnedSemaphorePermit,
    per_address: Arc<Mutex<HashMap<IpAddr, usize>>>,
    ip: IpAddr,
    name: &'static str,
}

impl Slot {
    /// A place for a connection from `ip`, or `None` (counted and logged) over a cap.
    fn take(
        total: &Arc<Semaphore>,
        per_address: &Arc<Mutex<HashMap<IpAddr, usize>>>,
        limits: &Limits,
        ip: IpAddr,
        refusals: &mut Refusals,
    ) -> Option<Slot> {
        let Ok(permit) = total.clone().try_acquire_owned() else {
            refusals.refuse(limits, Over::Total, ip);
            return None;
        };
        {
            let mut map = per_address.lock().unwrap_or_else(PoisonError::into_inner);
            let n = map.entry(ip).or_default();
            if *n >= limits.max_connections_per_address {
                drop(map);
                refusals.refuse(limits, Over::PerAddress, ip);
                return None;
            }
            *n += 1;
        }
        metrics::gauge!(m::LISTENER_CONNECTIONS, "listener" => limits.name).increment(1.0);
        Some(Slot {
            _permit: permit,
            per_address: per_address.clone(),
            ip,
            name: limits.name,
        })
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        metrics::gauge!(m::LISTENER_CONNECTIONS, "listener" => self.name).decrement(1.0);
        let mut map = self
            .per_address
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        if let Some(n) = map.get_mut(&self.ip) {
            *n = n.saturating_sub(1);
            if *n == 0 {
                map.remove(&self.ip);
            }
        }
    }
}

/// A client's stream with its place under the caps: whoever ends up owning the stream
/// (hyper's connection, or a WebSocket after an upgrade) gives the place back by dropping it.
#[derive(Debug)]
struct Held {
    stream: TcpStream,
    _slot: Slot,
}

impl AsyncRead for Held {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().stream).poll_read(cx, buf)
    }
}

impl AsyncWrite for Held {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().stream).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().stream).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.stream.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().stream).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().stream).poll_shutdown(cx)
    }
}
