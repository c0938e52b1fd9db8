//! What the IP receivers (DC-09, SCAIP) share: their bound sockets, and the TCP accept loop
//! with a cap on open connections and one per peer address (a connection over either is
//! closed at once, logged and counted).

use std::collections::HashMap;
use std::future::Future;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use tokio::net::{TcpListener, TcpStream, UdpSocket};
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;
use tracing::{Instrument as _, info_span, warn};

/// A receiver's bound sockets.
#[derive(Debug)]
pub struct Listeners {
    pub tcp: Option<TcpListener>,
    pub udp: Option<UdpSocket>,
}

impl Listeners {
    /// Binds the addresses given.
    pub async fn bind(tcp: Option<SocketAddr>, udp: Option<SocketAddr>) -> std::io::Result<Self> {
        Ok(Listeners {
            tcp: match tcp {
                Some(a) => Some(TcpListener::bind(a).await?),
                None => None,
            },
            udp: match udp {
                Some(a) => Some(UdpSocket::bind(a).await?),
                None => None,
            },
        })
    }

    /// Where they listen, TCP then UDP (the actual ports when the configuration said 0).
    pub fn addresses(&self) -> (Option<SocketAddr>, Option<SocketAddr>) {
        (
            self.tcp.as_ref().and_then(|l| l.local_addr().ok()),
            self.udp.as_ref().and_then(|s| s.local_addr().ok()),
        )
    }
}

/// Limits and metric names of one receiver's TCP listener.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Limits {
    /// The receiver's name in log lines and spans, e.g. `DC-09`.
    pub name: &'static str,
    /// Its configuration section, for the log line that names the limit reached.
    pub section: &'static str,
    pub max_connections: usize,
    pub max_per_address: usize,
    /// Gauge of open connections; counter of refused ones (`reason`: `total`, `per_address`).
    pub open_metric: &'static str,
    pub refused_metric: &'static str,
}

/// Accepts connections until `shutdown`, serving each admitted one with `serve`.
pub(crate) async fn serve<F, Fut>(
    listener: TcpListener,
    limits: Limits,
    shutdown: CancellationToken,
    serve: F,
) where
    F: Fn(TcpStream, SocketAddr) -> Fut + Clone + Send + 'static,
    Fut: Future<Output = ()> + Send,
{
    let total = Arc::new(Semaphore::new(limits.max_connections));
    let per_address: Arc<Mutex<HashMap<IpAddr, usize>>> = Arc::default();
    loop {
        let (stream, peer) = tokio::select! {
            () = shutdown.cancelled() => return,
            accepted = listener.accept() => match accepted {
                Ok(a) => a,
                Err(e) => {
                    warn!(error = %e, receiver = limits.name, "accept failed");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            },
        };
        let Ok(permit) = total.clone().try_acquire_owned() else {
            metrics::counter!(limits.refused_metric, "reason" => "total").increment(1);
            warn!(%peer, max = limits.max_connections, "{} connection refused: the receiver is at its connection limit ({}.max_connections)", limits.name, limits.section);
            continue;
        };
        let admitted = {
            let mut map = per_address.lock().unwrap_or_else(PoisonError::into_inner);
            let n = map.entry(peer.ip()).or_default();
            if *n >= limits.max_per_address {
                false
            } else {
                *n += 1;
                true
            }
        };
        if !admitted {
            metrics::counter!(limits.refused_metric, "reason" => "per_address").increment(1);
            warn!(%peer, max = limits.max_per_address, "{} connection refused: too many from this address ({}.max_connections_per_address)", limits.name, limits.section);
            continue;
        }
        let (serve, per_address) = (serve.clone(), per_address.clone());
        tokio::spawn(
            async move {
                metrics::gauge!(limits.open_metric).increment(1.0);
                serve(stream, peer).await;
                metrics::gauge!(limits.open_metric).decrement(1.0);
                let mut map = per_address.lock().unwrap_or_else(PoisonError::into_inner);
                if let Some(n) = map.get_mut(&peer.ip()) {
                    *n -= 1;
                    if *n == 0 {
                        map.remove(&peer.ip());
                    }
                }
                drop(permit);
            }
            .instrument(info_span!("connection", receiver = limits.name, %peer)),
        );
    }
}
