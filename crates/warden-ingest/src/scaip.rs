//! The SCAIP receiver (SS 91100 / BS 8521-2): social-alarm units send SIP `MESSAGE` requests
//! with an `application/scaip+xml` `<mrq>` body over UDP (a datagram each) or TCP (a
//! connection, messages one after another, framed by `Content-Length`). Each is answered
//! with a SIP final response:
//!
//! - a report (`ME`, or no `mty`) or heartbeat (`PI`): stored through the group-commit writer
//!   like every other signal, then `200 OK` with an `<mrs>` body echoing `ref`, only once it
//!   is durable; a write that fails gets no answer, so the unit sends it again. A report is
//!   a personal alarm (life-critical); a heartbeat is proof of life for the unit's
//!   supervision. The unit is the registered device whose account is the `cid` (digits
//!   compared as numbers), registered with protocol `scaip`; any other is stored as a
//!   problem signal and still reaches an operator;
//! - a retransmission (same unit and `ref`) is recognised by the writer's dedupe key and
//!   answered again without being stored twice;
//! - a `MESSAGE` whose body is not SCAIP or not readable: kept (an unreadable signal, so it
//!   reaches an operator) and answered `400` (or `415` for another media type), so the unit
//!   knows its report was not understood and can use its other path;
//! - `OPTIONS` (a keep-alive probe): `200 OK`; any other method: `405`;
//! - bytes that are not a SIP request: quarantined, no answer (UDP) or the connection closed
//!   (TCP, which cannot be resynchronised).
//!
//! The identity of a SCAIP unit is the `cid` it sends: SCAIP itself authenticates nothing.
//! Run it on a private APN or VPN, as the standard's deployments do; see the README.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use time::OffsetDateTime;
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::{TcpStream, UdpSocket};
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;
use tracing::{Instrument as _, debug, info, info_span, warn};
use warden_core::Decoded;
use warden_protocol::scaip::{self, ScaipError, Split};
use warden_protocol::sip_digest;
use warden_store::{DeviceProtocol, Source};
use warden_telemetry as m;

use crate::Ingest;
use crate::record::Arrival;

/// A SCAIP signal speaks only for a device registered with protocol `scaip`.
const SCAIP_PROTOCOLS: &[DeviceProtocol] = &[DeviceProtocol::Scaip];

/// `[scaip]`: where Warden listens for SCAIP units, and its limits.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ScaipConfig {
    /// UDP address, e.g. `0.0.0.0:5060`; absent: no UDP.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub udp: Option<SocketAddr>,
    /// TCP address; absent: no TCP.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tcp: Option<SocketAddr>,
    /// Open TCP connections at most (further ones are closed at once, logged and counted).
    #[serde(default = "default_max_connections")]
    pub max_connections: usize,
    /// Open TCP connections per peer address at most.
    #[serde(default = "default_max_per_address")]
    pub max_connections_per_address: usize,
    /// A TCP connection silent this long is closed.
    #[serde(default = "default_idle", with = "humantime_serde")]
    pub idle_timeout: Duration,
}

fn default_max_connections() -> usize {
    2000
}
fn default_max_per_address() -> usize {
    64
}
fn default_idle() -> Duration {
    Duration::from_mins(5)
}

impl Default for ScaipConfig {
    fn default() -> Self {
        ScaipConfig {
            udp: None,
            tcp: None,
            max_connections: default_max_connections(),
            max_connections_per_address: default_max_per_address(),
            idle_timeout: default_idle(),
        }
    }
}

pub use crate::accept::Listeners;

/// Serves both listeners until `shutdown`.
pub async fn run(
    cfg: ScaipConfig,
    listeners: Listeners,
    ingest: Ingest,
    shutdown: CancellationToken,
) {
    let cfg = Arc::new(cfg);
    let auth = Arc::new(Auth::new());
    let (tcp_addr, udp_addr) = listeners.addresses();
    info!(udp = ?udp_addr, tcp = ?tcp_addr, "SCAIP receiver listening");
    let udp = listeners.udp.map(|s| {
        tokio::spawn(
            serve_udp(s, ingest.clone(), auth.clone(), shutdown.clone())
                .instrument(info_span!("scaip_udp")),
        )
    });
    let tcp = listeners.tcp.map(|l| {
        let limits = crate::accept::Limits {
            name: "SCAIP",
            section: "scaip",
            max_connections: cfg.max_connections,
            max_per_address: cfg.max_connections_per_address,
            open_metric: m::SCAIP_CONNECTIONS,
            refused_metric: m::SCAIP_CONNECTIONS_REFUSED,
        };
        let (cfg, ingest, auth, stop) =
            (cfg.clone(), ingest.clone(), auth.clone(), shutdown.clone());
        tokio::spawn(
            crate::accept::serve(l, limits, shutdown.clone(), move |stream, peer| {
                let (cfg, ingest, auth, stop) =
                    (cfg.clone(), ingest.clone(), auth.clone(), stop.clone());
                async move { connection(stream, peer, &cfg, &ingest, &auth, &stop).await }
            })
            .instrument(info_span!("scaip_tcp")),
        )
    });
    for task in [udp, tcp].into_iter().flatten() {
        if let Err(e) = task.await {
            warn!(error = %e, "SCAIP listener task failed");
        }
    }
}

/// One unit's TCP connection: messages answered one at a time, in order.
async fn connection(
    mut stream: TcpStream,
    peer: SocketAddr,
    cfg: &ScaipConfig,
    ingest: &Ingest,
    auth: &Auth,
    shutdown: &CancellationToken,
) {
    let mut buf: Vec<u8> = Vec::with_capacity(2048);
    loop {
        loop {
            // Keep-alive CRLFs between messages (RFC 5626 §3.5.1) are answered with nothing.
            let blank = buf
                .iter()
                .take_while(|b| matches!(b, b'\r' | b'\n'))
                .count();
            buf.drain(..blank);
            match scaip::split(&buf) {
                Split::Incomplete => break,
                Split::Message { len } => {
                    let raw: Vec<u8> = buf.drain(..len).collect();
                    if let Some(reply) = handle(ingest, auth, peer, &raw, "tcp").await
                        && let Err(e) = stream.write_all(&reply).await
                    {
                        debug!(error = %e, "SCAIP reply could not be written; closing");
                        return;
                    }
                }
                Split::Broken(e) => {
                    keep(ingest, peer, &buf, &e).await;
                    count_reply("tcp", "none");
                    return;
                }
            }
        }
        let read = tokio::select! {
            () = shutdown.cancelled() => return,
            r = tokio::time::timeout(cfg.idle_timeout, stream.read_buf(&mut buf)) => r,
        };
        match read {
            Err(_) => {
                debug!(idle = ?cfg.idle_timeout, "SCAIP connection idle; closing");
                return;
            }
            Ok(Ok(0)) => {
                if buf.iter().any(|b| !b.is_ascii_whitespace()) {
                    let e = ScaipError::NotSip("connection closed inside a message".into());
                    keep(ingest, peer, &buf, &e).await;
                }
                return;
            }
            Ok(Ok(_)) => {}
            Ok(Err(e)) => {
                debug!(error = %e, "SCAIP connection read failed; closing");
                return;
            }
        }
    }
}

/// Datagrams answered in parallel, at most this many being written at once.
const UDP_IN_FLIGHT: usize = 1024;

async fn serve_udp(
    socket: UdpSocket,
    ingest: Ingest,
    auth: Arc<Auth>,
    shutdown: CancellationToken,
) {
    crate::udp::enlarge_receive_buffer(&socket, "scaip");
    let socket = Arc::new(socket);
    tokio::spawn(crate::udp::watch_drops(
        socket.clone(),
        "scaip",
        shutdown.clone(),
    ));
    let in_flight = Arc::new(Semaphore::new(UDP_IN_FLIGHT));
    let mut buf = vec![0u8; scaip::MAX_MESSAGE + 1];
    loop {
        let (n, peer) = tokio::select! {
            () = shutdown.cancelled() => return,
            r = socket.recv_from(&mut buf) => match r {
                Ok(r) => r,
                Err(e) => {
                    warn!(error = %e, "SCAIP UDP receive failed");
                    continue;
                }
            },
        };
        let raw = buf.get(..n).unwrap_or_default().to_vec();
        if raw.iter().all(|b| matches!(b, b'\r' | b'\n')) {
            continue; // a keep-alive
        }
        let Ok(permit) = in_flight.clone().acquire_owned().await else {
            return;
        };
        let (ingest, socket, auth) = (ingest.clone(), socket.clone(), auth.clone());
        tokio::spawn(
            async move {
                if let Some(reply) = handle(&ingest, &auth, peer, &raw, "udp").await
                    && let Err(e) = socket.send_to(&reply, peer).await
                {
                    debug!(error = %e, %peer, "SCAIP UDP reply could not be sent");
                }
                drop(permit);
            }
            .instrument(info_span!("scaip_datagram", %peer)),
        );
    }
}

/// Keeps bytes that are not a SIP request in quarantine.
async fn keep(ingest: &Ingest, peer: SocketAddr, raw: &[u8], e: &ScaipError) {
    if let Err(err) = ingest
        .reject(
            Source::Scaip,
            format!("scaip:{}", peer.ip()),
            raw.to_vec(),
            "bad_frame",
            e.to_string(),
            OffsetDateTime::now_utc(),
        )
        .await
    {
        warn!(error = %err, "could not keep a broken SCAIP message");
    }
}

/// A tag for the `To` header of Warden's responses (one per process is enough: each
/// response ends its transaction).
fn to_tag() -> &'static str {
    static TAG: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    TAG.get_or_init(|| format!("warden{:08x}", getrandom::u32().unwrap_or(0)))
}

/// Reads one SIP message, records it, and returns the response (if any) to send once what
/// must be durable is.
async fn handle(
    ingest: &Ingest,
    auth: &Auth,
    peer: SocketAddr,
    raw: &[u8],
    transport: &'static str,
) -> Option<Vec<u8>> {
    let received_at = OffsetDateTime::now_utc();
    let req = match scaip::parse_request(raw) {
        Ok(r) => r,
        Err(e) => {
            keep(ingest, peer, raw, &e).await;
            count_reply(transport, "none");
            return None;
        }
    };
    let answer = |code: u16, reason: &str, body: Option<&str>| {
        count_reply(transport, code_label(code));
        Some(scaip::response(&req, code, reason, to_tag(), body))
    };
    match req.method.as_str() {
        "MESSAGE" => {}
        "OPTIONS" => return answer(200, "OK", None),
        _ => return answer(405, "Method Not Allowed", None),
    }
    // A MESSAGE Warden cannot read is kept as an unreadable signal (it reaches an operator)
    // and refused with `code`; if it cannot be kept, nothing is answered (the unit retries).
    let req = &req;
    let refuse = |code: u16, reason: &'static str, why: String| async move {
        let kept = ingest
            .unreadable(
                Source::Scaip,
                format!("scaip:{}", peer.ip()),
                None,
                SCAIP_PROTOCOLS,
                raw.to_vec(),
                "scaip_unreadable",
                why,
                received_at,
                None,
            )
            .await;
        if let Err(e) = kept {
            warn!(error = %e, "unreadable SCAIP message not durable; not answering");
            count_reply(transport, "none");
            return None;
        }
        count_reply(transport, code_label(code));
        Some(scaip::response(req, code, reason, to_tag(), None))
    };
    if req.content_type != scaip::CONTENT_TYPE {
        let why = ScaipError::ContentType(req.content_type.clone()).to_string();
        return refuse(415, "Unsupported Media Type", why).await;
    }
    let mrq = match scaip::parse_mrq(&req.body) {
        Ok(m) => m,
        Err(e) => return refuse(400, "Bad Request", e.to_string()).await,
    };
    let unit = mrq.unit();
    match auth.check(ingest, &unit, req).await {
        Checked::Pass => {}
        Checked::Unknown => {
            // The registry could not say whether the unit must authenticate.
            count_reply(transport, "none");
            return None;
        }
        Checked::Challenge { refused } => {
            if let Some(why) = refused {
                keep_refused(ingest, &unit, raw, why, received_at).await;
            }
            count_reply(transport, "401");
            let challenge = sip_digest::challenge(&auth.nonce());
            return Some(scaip::response_with(
                req,
                401,
                "Unauthorized",
                to_tag(),
                &[("WWW-Authenticate", &challenge)],
                None,
            ));
        }
    }
    let arrival = Arrival {
        source: Source::Scaip,
        link_id: format!("scaip:{unit}"),
        account: Some(unit.clone()),
        speaks: SCAIP_PROTOCOLS,
        raw: raw.to_vec(),
        decoded: Decoded::from_scaip(&mrq),
        received_at,
        dedupe_key: Some(format!("scaip:{unit}:{}", mrq.reference)),
    };
    match ingest.signal(arrival).await {
        Ok(_) => answer(200, "OK", Some(&scaip::mrs(&mrq.reference))),
        Err(e) => {
            warn!(error = %e, unit, "SCAIP report not durable; not answering (the unit retries)");
            count_reply(transport, "none");
            None
        }
    }
}

/// How long a nonce Warden issued stays good.
const NONCE_MAX_AGE: u64 = 300;

/// Which units must authenticate (their digest HA1, as last read from the registry, kept
/// for an outage as DC-09 keys are) and the key of this process's nonces.
struct Auth {
    key: [u8; 32],
    known: crate::remembered::Remembered<Option<String>>,
}

/// What [`Auth::check`] found.
enum Checked {
    /// The unit need not authenticate, or did.
    Pass,
    /// The unit must authenticate and has not (yet): challenge it; `refused` says why when
    /// it sent credentials that do not hold (kept and counted).
    Challenge { refused: Option<String> },
    /// The registry did not answer and the unit was never read.
    Unknown,
}

impl Auth {
    fn new() -> Self {
        let mut key = [0u8; 32];
        if getrandom::fill(&mut key).is_err() {
            // No randomness: nonces are still tied to their time, only guessable.
            warn!("no randomness for SCAIP digest nonces");
        }
        Auth {
            key,
            known: crate::remembered::Remembered::new("SCAIP"),
        }
    }

    fn now() -> u64 {
        u64::try_from(OffsetDateTime::now_utc().unix_timestamp()).unwrap_or(0)
    }

    fn nonce(&self) -> String {
        sip_digest::nonce(&self.key, Self::now())
    }

    /// Whether `req`, a report from `unit`, may be heard.
    async fn check(&self, ingest: &Ingest, unit: &str, req: &scaip::Request) -> Checked {
        let read = ingest.store.scaip_ha1(unit);
        let Some(ha1) = self.known.lookup(ingest, unit, read).await else {
            return Checked::Unknown;
        };
        let Some(ha1) = ha1 else {
            return Checked::Pass;
        };
        let Some(header) = &req.authorization else {
            return Checked::Challenge { refused: None };
        };
        let Some(c) = sip_digest::parse(header) else {
            return Checked::Challenge {
                refused: Some(format!(
                    "unit {unit}: an Authorization header that is not a SIP digest"
                )),
            };
        };
        if !sip_digest::nonce_fresh(&self.key, &c.nonce, Self::now(), NONCE_MAX_AGE) {
            // Stale or from an earlier process: a new challenge, nothing to keep.
            return Checked::Challenge { refused: None };
        }
        if warden_types::scaip_unit(&c.username) != unit {
            return Checked::Challenge {
                refused: Some(format!(
                    "credentials of user {:?} sent for unit {unit}: a unit speaks only for itself",
                    c.username
                )),
            };
        }
        if !sip_digest::verify(&c, &req.method, &ha1) {
            return Checked::Challenge {
                refused: Some(format!(
                    "unit {unit}: the digest does not match its password"
                )),
            };
        }
        Checked::Pass
    }
}

/// Keeps a report refused for its credentials in quarantine.
async fn keep_refused(
    ingest: &Ingest,
    unit: &str,
    raw: &[u8],
    why: String,
    received_at: OffsetDateTime,
) {
    warn!(unit, reason = %why, "SCAIP report refused: not authenticated");
    if let Err(e) = ingest
        .reject(
            Source::Scaip,
            format!("scaip:{unit}"),
            raw.to_vec(),
            "scaip_unauthenticated",
            why,
            received_at,
        )
        .await
    {
        warn!(error = %e, "could not keep a refused SCAIP report");
    }
}

fn code_label(code: u16) -> &'static str {
    match code {
        200 => "200",
        400 => "400",
        401 => "401",
        405 => "405",
        415 => "415",
        _ => "other",
    }
}

fn count_reply(transport: &'static str, reply: &'static str) {
    metrics::counter!(m::SCAIP_REPLIES, "transport" => transport, "reply" => reply).increment(1);
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_to_tag_is_stable_and_token_shaped() {
        let t = super::to_tag();
        assert_eq!(t, super::to_tag());
        assert!(t.bytes().all(|b| b.is_ascii_alphanumeric()), "{t}");
    }
}
