//! Loopback networking for tests: free ports, polling with a deadline, a minimal HTTP GET
//! (plain, or over TLS trusting one CA).

use std::net::TcpListener;
use std::time::{Duration, Instant};

/// A port free on 127.0.0.1 right now.
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("free port")
}

/// Polls `f` until it returns true or `timeout` passes.
pub fn wait_until(timeout: Duration, mut f: impl FnMut() -> bool) -> bool {
    let start = Instant::now();
    while start.elapsed() < timeout {
        if f() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    f()
}

/// A minimal HTTP/1.0 GET on loopback: `(status, body)`, or `None` when nothing answers.
pub fn http_get(addr: std::net::SocketAddr, path: &str) -> Option<(u16, String)> {
    get(addr, path, None).map(|a| (a.status, a.body))
}

/// An answer of [`get`]: status, head (status line and headers) and body.
#[derive(Debug, Clone, Default)]
pub struct Answer {
    pub status: u16,
    pub head: String,
    pub body: String,
}

impl Answer {
    /// The value of header `name` (case-insensitive), if sent.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.head.lines().skip(1).find_map(|l| {
            let (k, v) = l.split_once(':')?;
            k.trim().eq_ignore_ascii_case(name).then(|| v.trim())
        })
    }
}

/// An HTTP/1.0 GET on loopback, over TLS when `ca` is given (the server's certificate must
/// be valid for `127.0.0.1` and signed by that CA); `None` when nothing answers, the
/// handshake fails or the certificate is not trusted.
pub fn get(addr: std::net::SocketAddr, path: &str, ca: Option<&std::path::Path>) -> Option<Answer> {
    use std::io::{Read as _, Write as _};
    let mut tcp = std::net::TcpStream::connect_timeout(&addr, Duration::from_millis(500)).ok()?;
    tcp.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    let request = format!("GET {path} HTTP/1.0\r\nHost: {addr}\r\n\r\n");
    let mut raw = Vec::new();
    match ca {
        None => {
            tcp.write_all(request.as_bytes()).ok()?;
            tcp.read_to_end(&mut raw).ok()?;
        }
        Some(ca) => {
            let mut tls = rustls::StreamOwned::new(tls_client(ca, addr.ip())?, tcp);
            tls.write_all(request.as_bytes()).ok()?;
            // HTTP/1.0: the server closes after the answer (a missing close_notify is fine).
            if let Err(e) = tls.read_to_end(&mut raw)
                && (raw.is_empty() || e.kind() != std::io::ErrorKind::UnexpectedEof)
            {
                return None;
            }
        }
    }
    let text = String::from_utf8_lossy(&raw);
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    Some(Answer {
        status: head.split_whitespace().nth(1)?.parse().ok()?,
        head: head.to_owned(),
        body: body.to_owned(),
    })
}

/// A rustls client connection to `ip`, trusting only the CA certificate in `ca` (PEM).
fn tls_client(ca: &std::path::Path, ip: std::net::IpAddr) -> Option<rustls::ClientConnection> {
    use rustls::pki_types::pem::PemObject as _;
    let mut roots = rustls::RootCertStore::empty();
    roots
        .add(rustls::pki_types::CertificateDer::from_pem_file(ca).ok()?)
        .ok()?;
    let config = rustls::ClientConfig::builder_with_provider(std::sync::Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .ok()?
    .with_root_certificates(roots)
    .with_no_client_auth();
    rustls::ClientConnection::new(
        std::sync::Arc::new(config),
        rustls::pki_types::ServerName::IpAddress(ip.into()),
    )
    .ok()
}
