//! HTTPS for a listener: rustls (the ring provider) with a certificate and key read from
//! PEM files and reloaded when the files change.
//!
//! - Every handshake asks [`Reloading`] for the pair it holds now, so a renewed certificate
//!   is served from the next handshake on, without a restart and without touching
//!   connections already open.
//! - A background task ([`watch`]) looks at both files' modification time and size every
//!   [`TlsFiles::reload_every`]. When either changed it loads the pair; a pair that does
//!   not load (unreadable, not PEM, a key that does not match the certificate: as when the
//!   certificate has been replaced but not yet the key) is logged and counted
//!   (`warden_http_tls_reloads_total{result="error"}`) and the previous pair goes on being
//!   served. The next change to either file is tried again.
//! - Only TLS 1.2 and 1.3 with rustls's safe defaults, and HTTP/1.1 by ALPN (the listener
//!   speaks HTTP/1 only).

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError, RwLock};
use std::time::{Duration, SystemTime};

use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject as _;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use tokio_util::sync::CancellationToken;
use warden_telemetry as m;

/// How often the files are looked at by default.
pub const RELOAD_EVERY: Duration = Duration::from_secs(5);

/// Where a listener's certificate and key are, and how often to look for new ones.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsFiles {
    /// PEM: the server's certificate first, then any intermediates.
    pub cert: PathBuf,
    /// PEM: the private key (PKCS#8, PKCS#1 or SEC1).
    pub key: PathBuf,
    /// How often the files' modification times are compared with the loaded pair's.
    pub reload_every: Duration,
}

/// Why a certificate and key did not load.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("cannot read {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path}: no PEM certificate in it")]
    NoCertificate { path: PathBuf },
    #[error("{path}: not a PEM private key ({detail})")]
    BadKey { path: PathBuf, detail: String },
    #[error("{cert} and {key} do not make a usable pair: {source}")]
    Pair {
        cert: PathBuf,
        key: PathBuf,
        source: rustls::Error,
    },
}

/// The provider every Warden TLS listener uses: ring (no aws-lc, no C toolchain beyond
/// ring's own).
fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// Reads and checks the pair named by `files`.
pub fn load(files: &TlsFiles) -> Result<CertifiedKey, TlsError> {
    let read = |path: &Path| {
        std::fs::read(path).map_err(|source| TlsError::Read {
            path: path.to_owned(),
            source,
        })
    };
    let cert_pem = read(&files.cert)?;
    let key_pem = read(&files.key)?;
    let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(&cert_pem)
        .filter_map(Result::ok)
        .collect();
    if chain.is_empty() {
        return Err(TlsError::NoCertificate {
            path: files.cert.clone(),
        });
    }
    let key = PrivateKeyDer::from_pem_slice(&key_pem).map_err(|e| TlsError::BadKey {
        path: files.key.clone(),
        detail: e.to_string(),
    })?;
    CertifiedKey::from_der(chain, key, &provider()).map_err(|source| TlsError::Pair {
        cert: files.cert.clone(),
        key: files.key.clone(),
        source,
    })
}

/// What was seen of the files when they were last loaded (or tried).
type Stamp = [Option<(SystemTime, u64)>; 2];

fn stamp(files: &TlsFiles) -> Stamp {
    [&files.cert, &files.key].map(|p| {
        std::fs::metadata(p)
            .ok()
            .map(|md| (md.modified().unwrap_or(SystemTime::UNIX_EPOCH), md.len()))
    })
}

/// The certificate resolver of a listener: the pair loaded last, swapped by [`watch`].
#[derive(Debug)]
pub struct Reloading {
    listener: &'static str,
    files: TlsFiles,
    current: RwLock<Arc<CertifiedKey>>,
    seen: Mutex<Stamp>,
}

impl Reloading {
    /// Loads the pair for `listener` (the `listener` label of the metrics).
    pub fn new(listener: &'static str, files: TlsFiles) -> Result<Self, TlsError> {
        let seen = stamp(&files);
        let pair = load(&files)?;
        Ok(Reloading {
            listener,
            files,
            current: RwLock::new(Arc::new(pair)),
            seen: Mutex::new(seen),
        })
    }

    /// Loads the files again if they changed since last seen. Blocking (file reads).
    pub fn reload_if_changed(&self) {
        let now = stamp(&self.files);
        {
            let mut seen = self.seen.lock().unwrap_or_else(PoisonError::into_inner);
            if *seen == now {
                return;
            }
            *seen = now;
        }
        match load(&self.files) {
            Ok(pair) => {
                *self.current.write().unwrap_or_else(PoisonError::into_inner) = Arc::new(pair);
                metrics::counter!(m::LISTENER_TLS_RELOADS, "listener" => self.listener, "result" => "ok")
                    .increment(1);
                tracing::info!(
                    listener = self.listener,
                    cert = %self.files.cert.display(),
                    "tls certificate reloaded"
                );
            }
            Err(e) => {
                metrics::counter!(m::LISTENER_TLS_RELOADS, "listener" => self.listener, "result" => "error")
                    .increment(1);
                tracing::warn!(
                    listener = self.listener,
                    error = %e,
                    "tls certificate files changed but do not load; the previous certificate is still served"
                );
            }
        }
    }

    /// The rustls configuration of an HTTP/1.1 listener served with this resolver.
    pub fn server_config(self: &Arc<Self>) -> Result<Arc<rustls::ServerConfig>, rustls::Error> {
        self.server_config_for(&[b"http/1.1"], None)
    }

    /// The rustls configuration of a listener served with this resolver, offering `alpn`
    /// (none: no ALPN) and, with `client_roots`, admitting only clients whose certificate
    /// one of those roots signed (mutual TLS).
    pub fn server_config_for(
        self: &Arc<Self>,
        alpn: &[&[u8]],
        client_roots: Option<rustls::RootCertStore>,
    ) -> Result<Arc<rustls::ServerConfig>, rustls::Error> {
        let builder = rustls::ServerConfig::builder_with_provider(provider())
            .with_safe_default_protocol_versions()?;
        let builder = match client_roots {
            Some(roots) => builder.with_client_cert_verifier(
                rustls::server::WebPkiClientVerifier::builder_with_provider(
                    Arc::new(roots),
                    provider(),
                )
                .build()
                .map_err(|e| rustls::Error::General(e.to_string()))?,
            ),
            None => builder.with_no_client_auth(),
        };
        let mut config = builder.with_cert_resolver(self.clone());
        config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
        Ok(Arc::new(config))
    }

    /// Looks for new files every `reload_every` until `shutdown` (see [`watch`]).
    pub fn watch(self: &Arc<Self>, shutdown: CancellationToken) -> tokio::task::JoinHandle<()> {
        tokio::spawn(watch(self.clone(), shutdown))
    }
}

/// The CA certificates of a PEM file, as roots for verifying clients.
pub fn roots(path: &Path) -> Result<rustls::RootCertStore, TlsError> {
    let pem = std::fs::read(path).map_err(|source| TlsError::Read {
        path: path.to_owned(),
        source,
    })?;
    let mut roots = rustls::RootCertStore::empty();
    for cert in CertificateDer::pem_slice_iter(&pem).filter_map(Result::ok) {
        roots.add(cert).map_err(|source| TlsError::Pair {
            cert: path.to_owned(),
            key: path.to_owned(),
            source,
        })?;
    }
    if roots.is_empty() {
        return Err(TlsError::NoCertificate {
            path: path.to_owned(),
        });
    }
    Ok(roots)
}

impl ResolvesServerCert for Reloading {
    fn resolve(&self, _hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(
            self.current
                .read()
                .unwrap_or_else(PoisonError::into_inner)
                .clone(),
        )
    }
}

/// Looks for new files every `reload_every` until `shutdown`.
pub async fn watch(resolver: Arc<Reloading>, shutdown: CancellationToken) {
    let mut tick = tokio::time::interval(resolver.files.reload_every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            () = shutdown.cancelled() => return,
            _ = tick.tick() => {}
        }
        let r = resolver.clone();
        // File reads and key parsing are blocking work: off the runtime's threads.
        if let Err(e) = tokio::task::spawn_blocking(move || r.reload_if_changed()).await {
            tracing::warn!(error = %e, "tls reload task failed");
        }
    }
}
