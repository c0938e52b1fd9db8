//! The console over HTTPS, on a real socket with certificates made at test time: answers
//! carry HSTS and the Permissions-Policy, plain HTTP to the HTTPS port is not answered, a
//! silent client is cut off during the handshake, and a renewed certificate is served from
//! the next handshake on while a broken file keeps the previous one.

mod common;

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use common::{App, test_config};
use rustls::pki_types::pem::PemObject as _;
use rustls::pki_types::{CertificateDer, ServerName};
use sqlx::PgPool;
use tokio::io::{AsyncRead, AsyncReadExt as _, AsyncWrite, AsyncWriteExt as _};
use tokio::net::{TcpListener, TcpStream};
use tokio::time::Instant;
use tokio_rustls::client::TlsStream;
use warden_console::ConsoleConfig;
use warden_console::tls::TlsFiles;
use warden_tests::certs::{Ca, Issued};

/// Serves the app's console on a real socket (port 0) until the app stops.
async fn listen(app: &App) -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("address");
    tokio::spawn(warden_console::serve(
        listener,
        app.console.clone(),
        app.stop.clone(),
    ));
    addr
}

/// Puts `pair` where the console reads its certificate and key.
fn install(pair: &Issued, files: &TlsFiles) {
    std::fs::copy(&pair.key, &files.key).expect("copy the key");
    std::fs::copy(&pair.cert, &files.cert).expect("copy the certificate");
}

fn der(pem: &Path) -> CertificateDer<'static> {
    CertificateDer::from_pem_file(pem).expect("a PEM certificate")
}

/// A TLS connection to `addr` for the name `warden.test`, trusting only `ca`.
async fn connect(addr: SocketAddr, ca: &Path) -> TlsStream<TcpStream> {
    let mut roots = rustls::RootCertStore::empty();
    roots.add(der(ca)).expect("a CA certificate");
    let config = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .expect("protocol versions")
    .with_root_certificates(roots)
    .with_no_client_auth();
    let connector = tokio_rustls::TlsConnector::from(Arc::new(config));
    let tcp = TcpStream::connect(addr).await.expect("connect");
    connector
        .connect(ServerName::try_from("warden.test").expect("name"), tcp)
        .await
        .expect("a TLS handshake with a certificate the CA signed for warden.test")
}

/// The certificate the server presented on `stream`.
fn presented(stream: &TlsStream<TcpStream>) -> CertificateDer<'static> {
    stream
        .get_ref()
        .1
        .peer_certificates()
        .expect("certificates")[0]
        .clone()
}

/// Sends `GET path` and reads the answer: its status and head (lower case), or `None` when
/// the server closed the connection or answered something that is not HTTP.
async fn get<S: AsyncRead + AsyncWrite + Unpin>(
    stream: &mut S,
    path: &str,
) -> Option<(u16, String)> {
    let req = format!("GET {path} HTTP/1.1\r\nHost: warden.test\r\n\r\n");
    stream.write_all(req.as_bytes()).await.ok()?;
    let mut buf = Vec::new();
    let mut chunk = [0u8; 8192];
    tokio::time::timeout(Duration::from_secs(5), async {
        loop {
            if let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                let head = String::from_utf8_lossy(&buf[..end]).to_ascii_lowercase();
                if !head.starts_with("http/1.1 ") {
                    return None;
                }
                let length: usize = head
                    .lines()
                    .find_map(|l| l.strip_prefix("content-length:"))
                    .map_or(0, |v| v.trim().parse().expect("a length"));
                if buf.len() >= end + 4 + length {
                    let status = head.split_whitespace().nth(1)?.parse().ok()?;
                    return Some((status, head));
                }
            }
            match stream.read(&mut chunk).await {
                Ok(0) | Err(_) => return None,
                Ok(n) => buf.extend_from_slice(&chunk[..n]),
            }
        }
    })
    .await
    .expect("an answer or a close within 5 s")
}

#[sqlx::test(migrations = "../warden-store/migrations")]
async fn the_console_over_tls_answers_with_hsts_and_serves_a_renewed_certificate_from_the_next_handshake(
    pool: PgPool,
) {
    let dir = tempfile::tempdir().expect("temp dir");
    let ca = Ca::new(dir.path(), "console");
    let first = ca.issue("first", &["DNS:warden.test", "IP:127.0.0.1"]);
    let second = ca.issue("second", &["DNS:warden.test", "IP:127.0.0.1"]);
    let files = TlsFiles {
        cert: dir.path().join("served.pem"),
        key: dir.path().join("served.key"),
        reload_every: Duration::from_millis(100),
    };
    install(&first, &files);
    let app = App::with_config(
        pool,
        ConsoleConfig {
            tls: Some(files.clone()),
            ..test_config()
        },
    )
    .await;
    let addr = listen(&app).await;

    let mut kept = connect(addr, &ca.cert).await;
    assert_eq!(presented(&kept), der(&first.cert));
    let (status, head) = get(&mut kept, "/").await.expect("an answer over TLS");
    assert_eq!(status, 200, "{head}");
    assert!(
        head.contains("\r\nstrict-transport-security: max-age=31536000\r\n"),
        "{head}"
    );
    assert!(head.contains("\r\npermissions-policy: camera=()"), "{head}");

    // Plain HTTP to the HTTPS port gets no HTTP answer.
    let mut plain = TcpStream::connect(addr).await.expect("connect");
    assert_eq!(get(&mut plain, "/").await, None);

    // A broken certificate file is not served: the previous pair goes on being.
    std::fs::write(&files.cert, "not a certificate").expect("break the file");
    tokio::time::sleep(Duration::from_millis(500)).await;
    let mut during = connect(addr, &ca.cert).await;
    assert_eq!(presented(&during), der(&first.cert));
    assert_eq!(get(&mut during, "/api/v1/me").await.map(|a| a.0), Some(401));

    // The renewed pair is served from the next handshake on...
    install(&second, &files);
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let stream = connect(addr, &ca.cert).await;
        if presented(&stream) == der(&second.cert) {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the new certificate was not served within 5 s"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // ...while a connection opened before goes on working.
    assert_eq!(get(&mut kept, "/").await.map(|a| a.0), Some(200));
}

#[sqlx::test(migrations = "../warden-store/migrations")]
async fn a_client_that_never_starts_the_tls_handshake_is_cut_off_at_the_header_timeout(
    pool: PgPool,
) {
    let dir = tempfile::tempdir().expect("temp dir");
    let ca = Ca::new(dir.path(), "console");
    let pair = ca.issue("server", &["DNS:warden.test"]);
    let app = App::with_config(
        pool,
        ConsoleConfig {
            tls: Some(TlsFiles {
                cert: pair.cert,
                key: pair.key,
                reload_every: Duration::from_secs(5),
            }),
            header_read_timeout: Duration::from_secs(1),
            ..test_config()
        },
    )
    .await;
    let addr = listen(&app).await;
    let mut silent = TcpStream::connect(addr).await.expect("connect");
    let started = Instant::now();
    let mut byte = [0u8; 1];
    let read = tokio::time::timeout(Duration::from_secs(5), silent.read(&mut byte))
        .await
        .expect("closed within 5 s");
    assert!(matches!(read, Ok(0) | Err(_)), "{read:?}");
    let waited = started.elapsed();
    assert!(
        waited >= Duration::from_millis(900) && waited <= Duration::from_secs(3),
        "cut off after {waited:?}, expected about 1 s"
    );
}

#[sqlx::test(migrations = "../warden-store/migrations")]
async fn plain_http_answers_carry_the_permissions_policy_but_never_hsts(pool: PgPool) {
    let app = App::start(pool).await;
    let addr = listen(&app).await;
    let mut stream = TcpStream::connect(addr).await.expect("connect");
    let (status, head) = get(&mut stream, "/").await.expect("an answer");
    assert_eq!(status, 200, "{head}");
    assert!(head.contains("\r\npermissions-policy: camera=()"), "{head}");
    assert!(!head.contains("strict-transport-security"), "{head}");
}
