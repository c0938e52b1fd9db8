//! The embedded broker's TLS listener: Warden terminates TLS itself (rustls, ring) and
//! pipes each connection to the broker's plain listener on loopback.
//!
//! Why not rumqttd's own TLS: rumqttd 0.20 performs each TLS handshake inside its accept
//! loop, without a timeout, so one client that opens a connection and sends nothing stops
//! the listener from accepting anyone else; it also reads the certificate files again for
//! every connection and can only require client certificates through a build feature that
//! also demands a tenant name in them. Here:
//!
//! - each handshake runs in its own task and must finish within [`HANDSHAKE_TIMEOUT`];
//! - at most [`MAX_CONNECTIONS`] connections are open at once (more are closed at once);
//! - the certificate and key are reloaded when their files change, as the console's (see
//!   `warden_console::tls`);
//! - with `broker.tls_client_ca`, a client must present a certificate that CA signed.
//!
//! The broker then sees every TLS client as coming from loopback: its login check (user
//! name and password, see [`crate::broker_auth`]) is unchanged. Like the broker, the
//! listener lives as long as the process.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;
use tracing::Instrument as _;
use warden_console::tls::{Reloading, TlsFiles};
use warden_telemetry as m;

/// Longest a client may take to finish its TLS handshake.
pub const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// Open TLS connections at most (the broker's own cap is 20,000).
pub const MAX_CONNECTIONS: usize = 10_000;

/// The TLS listener's settings.
#[derive(Debug, Clone)]
pub struct BrokerTls {
    pub listen: SocketAddr,
    pub files: TlsFiles,
    /// Require client certificates signed by this CA (PEM).
    pub client_ca: Option<std::path::PathBuf>,
}

/// Binds `tls.listen` and serves it in the background, piping to `upstream` (the
/// broker's plain listener); returns the bound address.
pub async fn spawn(tls: BrokerTls, upstream: SocketAddr) -> anyhow::Result<SocketAddr> {
    let resolver = Arc::new(Reloading::new("broker", tls.files.clone())?);
    let roots = match &tls.client_ca {
        Some(ca) => Some(warden_console::tls::roots(ca)?),
        None => None,
    };
    // No ALPN: MQTT clients rarely offer one, and one offered ("mqtt") is then ignored.
    let config = resolver
        .server_config_for(&[], roots)
        .context("the broker's TLS configuration")?;
    let listener = TcpListener::bind(tls.listen)
        .await
        .with_context(|| format!("binding the broker's TLS listener to {}", tls.listen))?;
    let addr = listener.local_addr()?;
    resolver.watch(CancellationToken::new());
    tokio::spawn(
        accept_loop(listener, tokio_rustls::TlsAcceptor::from(config), upstream)
            .instrument(tracing::info_span!("broker_tls", listen = %addr)),
    );
    tracing::info!(listen = %addr, client_certificates = tls.client_ca.is_some(), "embedded mqtt broker tls listener");
    Ok(addr)
}

async fn accept_loop(
    listener: TcpListener,
    acceptor: tokio_rustls::TlsAcceptor,
    upstream: SocketAddr,
) {
    let slots = Arc::new(Semaphore::new(MAX_CONNECTIONS));
    loop {
        let (stream, peer) = match listener.accept().await {
            Ok(a) => a,
            Err(e) => {
                tracing::warn!(error = %e, "broker tls accept failed");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        let Ok(slot) = slots.clone().try_acquire_owned() else {
            metrics::counter!(m::LISTENER_REFUSED, "listener" => "broker", "reason" => "total")
                .increment(1);
            drop(stream);
            continue;
        };
        let acceptor = acceptor.clone();
        tokio::spawn(
            async move {
                let _slot = slot;
                pipe(acceptor, stream, upstream).await;
            }
            .instrument(tracing::debug_span!("broker_tls_connection", %peer)),
        );
    }
}

/// One client: handshake (bounded), then bytes both ways until either side closes.
async fn pipe(acceptor: tokio_rustls::TlsAcceptor, stream: TcpStream, upstream: SocketAddr) {
    let mut tls = match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(stream)).await {
        Ok(Ok(tls)) => tls,
        Ok(Err(e)) => return handshake_failed(&e.to_string()),
        Err(_) => return handshake_failed("not finished in time"),
    };
    let mut broker = match TcpStream::connect(upstream).await {
        Ok(s) => s,
        Err(e) => {
            tracing::warn!(error = %e, %upstream, "embedded broker unreachable from its tls listener");
            return;
        }
    };
    if let Err(e) = tokio::io::copy_bidirectional(&mut tls, &mut broker).await {
        tracing::debug!(error = %e, "broker tls connection ended with an error");
    }
}

fn handshake_failed(error: &str) {
    metrics::counter!(m::LISTENER_TLS_HANDSHAKE_FAILURES, "listener" => "broker").increment(1);
    tracing::debug!(error, "broker tls handshake failed; connection closed");
}

#[cfg(test)]
mod tests {
    use std::process::Command;

    use super::*;
    use warden_tests::certs::{Ca, Issued};

    /// `mosquitto_pub` of one QoS 1 message to `port` over TLS trusting `ca`, with the
    /// client certificate `client` if given: whether the broker took it (PUBACK).
    async fn publish(port: u16, ca: &std::path::Path, client: Option<&Issued>) -> bool {
        let mut c = Command::new("timeout");
        c.args(["15", "mosquitto_pub", "-h", "localhost", "-p"])
            .arg(port.to_string())
            .arg("--cafile")
            .arg(ca)
            .args(["-q", "1", "-t", "warden/v1/tls-test", "-m", "hello"]);
        if let Some(cl) = client {
            c.arg("--cert").arg(&cl.cert).arg("--key").arg(&cl.key);
        }
        tokio::task::spawn_blocking(move || c.output().expect("run mosquitto_pub"))
            .await
            .expect("join")
            .status
            .success()
    }

    fn free_port() -> u16 {
        std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("a free port")
            .port()
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn mqtt_over_tls_reaches_the_embedded_broker_with_a_client_certificate_and_a_silent_client_blocks_nobody()
     {
        let dir = tempfile::tempdir().expect("temp dir");
        let ca = Ca::new(dir.path(), "mqtt");
        let other = Ca::new(dir.path(), "other");
        let server = ca.issue("broker", &["DNS:localhost", "IP:127.0.0.1"]);
        let unit = ca.issue("unit", &["DNS:unit"]);
        let stranger = other.issue("stranger", &["DNS:stranger"]);
        let plain = SocketAddr::from(([127, 0, 0, 1], free_port()));
        crate::broker::start(plain, None).expect("the embedded broker");
        let addr = spawn(
            BrokerTls {
                listen: SocketAddr::from(([127, 0, 0, 1], 0)),
                files: TlsFiles {
                    cert: server.cert.clone(),
                    key: server.key.clone(),
                    reload_every: Duration::from_secs(5),
                },
                client_ca: Some(ca.cert.clone()),
            },
            plain,
        )
        .await
        .expect("the tls listener");

        // A client that connects and never starts its handshake holds up nobody (rumqttd's
        // own TLS listener would accept no one else while it waits).
        let _silent = TcpStream::connect(addr).await.expect("connect");

        assert!(
            publish(addr.port(), &ca.cert, Some(&unit)).await,
            "a unit with a certificate of the CA publishes over TLS"
        );
        assert!(
            !publish(addr.port(), &ca.cert, None).await,
            "a client without a certificate is refused"
        );
        assert!(
            !publish(addr.port(), &ca.cert, Some(&stranger)).await,
            "a certificate of another CA is refused"
        );
        assert!(
            !publish(addr.port(), &other.cert, Some(&unit)).await,
            "a client that does not trust the broker's CA does not connect"
        );
        // Plain MQTT to the TLS port is not a session.
        let plain_to_tls = Command::new("timeout")
            .args(["15", "mosquitto_pub", "-h", "127.0.0.1", "-p"])
            .arg(addr.port().to_string())
            .args(["-q", "1", "-t", "warden/v1/tls-test", "-m", "hello"])
            .output()
            .expect("run mosquitto_pub");
        assert!(!plain_to_tls.status.success());
    }
}
