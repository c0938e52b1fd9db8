//! The SIA DC-09 receiver: alarm transmitters report over TCP (a connection each, messages
//! one at a time) and UDP (a datagram each). Each frame is judged without I/O
//! ([`verdict::judge`]: CRC, the account's key, encryption required or not, the timestamp
//! window, the token) and answered:
//!
//! - an event or `NULL` link test: stored through the group-commit writer like every other
//!   signal, then `ACK` (encrypted when the frame was), only after it is durable; a write
//!   that fails gets no answer, so the transmitter sends it again;
//! - a timestamp outside the window: `NAK` carrying Warden's clock;
//! - a token Warden does not understand, an encrypted frame from an account with no key or
//!   one that does not decrypt, a plain frame from an account that must encrypt: `DUH`;
//! - a bad CRC or broken framing: no answer (the transmitter retries);
//! - well framed but unreadable content: stored as an unreadable signal, then `ACK`.
//!
//! Refused and unreadable bytes are kept in quarantine with the reason and counted. A
//! retransmission (same account, sequence number, timestamp and bytes) is recognised by the
//! writer's dedupe key and acknowledged again without being stored twice. Keys come from the
//! registry (`dc09_keys`), read per frame; the account decides the key, never the peer.

pub mod verdict;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use time::OffsetDateTime;
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::{TcpListener, TcpStream, UdpSocket};
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;
use tracing::{Instrument as _, debug, info, info_span, warn};
use warden_core::Decoded;
use warden_protocol::Step;
use warden_protocol::dc09::{self, Dc09Decoder, Dc09Error, Dc09Key, Timestamp};
use warden_store::{Dc09Account, DeviceProtocol, Source};
use warden_telemetry as m;

use crate::Ingest;
use crate::record::Arrival;
use verdict::{Verdict, Window};

/// A DC-09 signal speaks only for a device registered with protocol `dc09`.
const DC09_PROTOCOLS: &[DeviceProtocol] = &[DeviceProtocol::Dc09];

/// `[dc09]`: where Warden listens for IP alarm transmitters, and its limits.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Dc09Config {
    /// TCP address, e.g. `0.0.0.0:9999`; absent: no TCP.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tcp: Option<SocketAddr>,
    /// UDP address; absent: no UDP.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub udp: Option<SocketAddr>,
    /// How far a message's timestamp may lie behind Warden's clock (seconds; the standard's
    /// 40 by default).
    #[serde(default = "default_before")]
    pub before_seconds: u32,
    /// How far ahead (seconds; 20 by default).
    #[serde(default = "default_after")]
    pub after_seconds: u32,
    /// Open TCP connections at most (further ones are closed at once, logged and counted).
    #[serde(default = "default_max_connections")]
    pub max_connections: usize,
    /// Open TCP connections per peer address at most.
    #[serde(default = "default_max_per_address")]
    pub max_connections_per_address: usize,
    /// Open TCP connections per account at most (a connection counts for the account of its
    /// first frame; one over the limit is closed unanswered, logged and counted).
    #[serde(default = "default_max_per_account")]
    pub max_connections_per_account: usize,
    /// A TCP connection silent this long is closed.
    #[serde(default = "default_idle", with = "humantime_serde")]
    pub idle_timeout: Duration,
    /// Accept frames whose LEN field disagrees with the body (the CRC is still checked).
    #[serde(default)]
    pub accept_bad_length: bool,
}

fn default_before() -> u32 {
    dc09::DEFAULT_BEFORE_SECONDS
}
fn default_after() -> u32 {
    dc09::DEFAULT_AFTER_SECONDS
}
fn default_max_connections() -> usize {
    2000
}
fn default_max_per_address() -> usize {
    64
}
fn default_max_per_account() -> usize {
    4
}
fn default_idle() -> Duration {
    Duration::from_mins(5)
}

impl Default for Dc09Config {
    fn default() -> Self {
        Dc09Config {
            tcp: None,
            udp: None,
            before_seconds: default_before(),
            after_seconds: default_after(),
            max_connections: default_max_connections(),
            max_connections_per_address: default_max_per_address(),
            max_connections_per_account: default_max_per_account(),
            idle_timeout: default_idle(),
            accept_bad_length: false,
        }
    }
}

impl Dc09Config {
    fn window(&self) -> Window {
        Window {
            before: self.before_seconds,
            after: self.after_seconds,
        }
    }

    fn decoder(&self, key: Option<Dc09Key>) -> Dc09Decoder {
        Dc09Decoder::new(key).accept_bad_length(self.accept_bad_length)
    }
}

pub use crate::accept::Listeners;

/// Serves both listeners until `shutdown`.
pub async fn run(
    cfg: Dc09Config,
    listeners: Listeners,
    ingest: Ingest,
    shutdown: CancellationToken,
) {
    let cfg = Arc::new(Receiver {
        cfg,
        accounts: crate::remembered::Remembered::new("DC-09"),
        open: std::sync::Mutex::default(),
        links: std::sync::Mutex::default(),
    });
    tokio::spawn(supervise(cfg.clone(), ingest.clone(), shutdown.clone()));
    let (tcp_addr, udp_addr) = listeners.addresses();
    info!(tcp = ?tcp_addr, udp = ?udp_addr, window = ?cfg.cfg.window(), "DC-09 receiver listening");
    let tcp = listeners.tcp.map(|l| {
        tokio::spawn(
            serve_tcp(l, cfg.clone(), ingest.clone(), shutdown.clone())
                .instrument(info_span!("dc09_tcp")),
        )
    });
    let udp = listeners.udp.map(|s| {
        tokio::spawn(
            serve_udp(s, cfg.clone(), ingest.clone(), shutdown.clone())
                .instrument(info_span!("dc09_udp")),
        )
    });
    for task in [tcp, udp].into_iter().flatten() {
        if let Err(e) = task.await {
            warn!(error = %e, "DC-09 listener task failed");
        }
    }
}

async fn serve_tcp(
    listener: TcpListener,
    cfg: Arc<Receiver>,
    ingest: Ingest,
    shutdown: CancellationToken,
) {
    let limits = crate::accept::Limits {
        name: "DC-09",
        section: "dc09",
        max_connections: cfg.cfg.max_connections,
        max_per_address: cfg.cfg.max_connections_per_address,
        open_metric: m::DC09_CONNECTIONS,
        refused_metric: m::DC09_CONNECTIONS_REFUSED,
    };
    let stop = shutdown.clone();
    crate::accept::serve(listener, limits, stop, move |stream, peer| {
        let (cfg, ingest, shutdown) = (cfg.clone(), ingest.clone(), shutdown.clone());
        async move { connection(stream, peer, &cfg, &ingest, &shutdown).await }
    })
    .await;
}

/// One transmitter's connection: frames are answered one at a time, in order.
async fn connection(
    mut stream: TcpStream,
    peer: SocketAddr,
    rx: &Receiver,
    ingest: &Ingest,
    shutdown: &CancellationToken,
) {
    let mut buf: Vec<u8> = Vec::with_capacity(1024);
    let cfg = &rx.cfg;
    let mut splitter = cfg.decoder(None);
    let mut claim: Option<AccountClaim<'_>> = None;
    loop {
        // Answer every whole frame in the buffer.
        loop {
            let step = splitter.decode(&buf);
            let consumed = step.consumed();
            let raw = buf.get(..consumed).unwrap_or_default().to_vec();
            match step {
                Step::Incomplete => break,
                Step::Skipped { .. } => {}
                Step::Frame { .. } | Step::Invalid { .. } => {
                    if claim.is_none()
                        && let Some(account) = account_of_step(&step)
                    {
                        let Some(c) = AccountClaim::take(rx, account) else {
                            return;
                        };
                        claim = Some(c);
                    }
                    if let Some(reply) = handle(rx, ingest, peer, &raw, "tcp").await
                        && let Err(e) = stream.write_all(&reply).await
                    {
                        debug!(error = %e, "DC-09 reply could not be written; closing");
                        return;
                    }
                }
            }
            buf.drain(..consumed);
        }
        let read = tokio::select! {
            () = shutdown.cancelled() => return,
            r = tokio::time::timeout(cfg.idle_timeout, stream.read_buf(&mut buf)) => r,
        };
        match read {
            Err(_) => {
                debug!(idle = ?cfg.idle_timeout, "DC-09 connection idle; closing");
                return;
            }
            Ok(Ok(0)) => {
                if let Some(Err(e)) = splitter.finish(&buf) {
                    let _ = ingest
                        .reject(
                            Source::Dc09,
                            format!("dc09:{}", peer.ip()),
                            buf.clone(),
                            "bad_frame",
                            e.to_string(),
                            OffsetDateTime::now_utc(),
                        )
                        .await;
                }
                return;
            }
            Ok(Ok(_)) => {}
            Ok(Err(e)) => {
                debug!(error = %e, "DC-09 connection read failed; closing");
                return;
            }
        }
    }
}

/// UDP datagrams answered in parallel, at most this many being written at once.
const UDP_IN_FLIGHT: usize = 1024;

async fn serve_udp(
    socket: UdpSocket,
    cfg: Arc<Receiver>,
    ingest: Ingest,
    shutdown: CancellationToken,
) {
    crate::udp::enlarge_receive_buffer(&socket, "dc09");
    let socket = Arc::new(socket);
    tokio::spawn(crate::udp::watch_drops(
        socket.clone(),
        "dc09",
        shutdown.clone(),
    ));
    let in_flight = Arc::new(Semaphore::new(UDP_IN_FLIGHT));
    let mut buf = vec![0u8; dc09::MAX_FRAME + 64];
    loop {
        let (n, peer) = tokio::select! {
            () = shutdown.cancelled() => return,
            r = socket.recv_from(&mut buf) => match r {
                Ok(r) => r,
                Err(e) => {
                    warn!(error = %e, "DC-09 UDP receive failed");
                    continue;
                }
            },
        };
        let raw = buf.get(..n).unwrap_or_default().to_vec();
        let Ok(permit) = in_flight.clone().acquire_owned().await else {
            return;
        };
        let (cfg, ingest, socket) = (cfg.clone(), ingest.clone(), socket.clone());
        tokio::spawn(
            async move {
                if let Some(reply) = handle(&cfg, &ingest, peer, &raw, "udp").await
                    && let Err(e) = socket.send_to(&reply, peer).await
                {
                    debug!(error = %e, %peer, "DC-09 UDP reply could not be sent");
                }
                drop(permit);
            }
            .instrument(info_span!("dc09_datagram", %peer)),
        );
    }
}

/// The receiver's configuration and what it remembers of the accounts.
struct Receiver {
    cfg: Dc09Config,
    /// The last key and settings read for each account (an account never read gets no
    /// answer while the registry cannot be read: whether it must encrypt is not known).
    accounts: crate::remembered::Remembered<Dc09Account>,
    /// Open TCP connections per account (of their first frame).
    open: std::sync::Mutex<std::collections::HashMap<String, usize>>,
    /// Transmitters with a supervision interval: when each was last heard, and whether its
    /// link is down.
    links: std::sync::Mutex<std::collections::HashMap<String, Watch>>,
}

/// One supervised transmitter.
struct Watch {
    last: std::time::Instant,
    every: Duration,
    lost: bool,
}

impl Receiver {
    /// `account` was heard (a stored frame): its watch restarts; `true` when its link was
    /// down (restored now).
    fn heard(&self, account: &str, every: Option<Duration>) -> bool {
        let mut links = self
            .links
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let Some(every) = every else {
            links.remove(account);
            return false;
        };
        let w = links.entry(account.to_owned()).or_insert(Watch {
            last: std::time::Instant::now(),
            every,
            lost: false,
        });
        w.last = std::time::Instant::now();
        w.every = every;
        std::mem::replace(&mut w.lost, false)
    }

    /// The accounts whose interval has just passed without a word (marked lost).
    fn overdue(&self) -> Vec<(String, Duration)> {
        let mut links = self
            .links
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let now = std::time::Instant::now();
        links
            .iter_mut()
            .filter(|(_, w)| !w.lost && now.duration_since(w.last) > w.every)
            .map(|(a, w)| {
                w.lost = true;
                (a.clone(), w.every)
            })
            .collect()
    }
}

/// Raises link lost for each supervised transmitter silent past its interval, every second.
async fn supervise(rx: Arc<Receiver>, ingest: Ingest, shutdown: CancellationToken) {
    loop {
        tokio::select! {
            () = shutdown.cancelled() => return,
            () = tokio::time::sleep(Duration::from_secs(1)) => {}
        }
        for (account, every) in rx.overdue() {
            ingest
                .link_change(
                    &format!("dc09:{account}"),
                    false,
                    &format!(
                        "transmitter {account} sent nothing for {}",
                        humantime::format_duration(every)
                    ),
                    true,
                )
                .await;
        }
    }
}

/// The account a frame (or a frame that could not be read whole) names.
fn account_of_step(step: &Step<dc09::Dc09Frame, Dc09Error>) -> Option<String> {
    let account = match step {
        Step::Frame { frame, .. } => frame.account,
        Step::Invalid { error, .. } => error.header().and_then(|h| h.account),
        _ => None,
    };
    account.map(|a| a.as_str().to_owned())
}

/// A connection counted for its account while it lives.
struct AccountClaim<'a> {
    rx: &'a Receiver,
    account: String,
}

impl<'a> AccountClaim<'a> {
    /// Counts a connection for `account`; `None` (logged, counted) over the limit.
    fn take(rx: &'a Receiver, account: String) -> Option<Self> {
        let mut open = rx
            .open
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let n = open.entry(account.clone()).or_default();
        if *n >= rx.cfg.max_connections_per_account {
            metrics::counter!(m::DC09_CONNECTIONS_REFUSED, "reason" => "per_account").increment(1);
            warn!(
                account,
                max = rx.cfg.max_connections_per_account,
                "DC-09 connection closed: too many open for this account (dc09.max_connections_per_account)"
            );
            return None;
        }
        *n += 1;
        Some(AccountClaim { rx, account })
    }
}

impl Drop for AccountClaim<'_> {
    fn drop(&mut self) {
        let mut open = self
            .rx
            .open
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Some(n) = open.get_mut(&self.account) {
            *n = n.saturating_sub(1);
            if *n == 0 {
                open.remove(&self.account);
            }
        }
    }
}

/// Judges one frame's bytes, records them, and returns the answer (if any) to send once
/// what must be durable is.
async fn handle(
    rx: &Receiver,
    ingest: &Ingest,
    peer: SocketAddr,
    raw: &[u8],
    transport: &'static str,
) -> Option<Vec<u8>> {
    let (cfg, accounts) = (&rx.cfg, &rx.accounts);
    let received_at = OffsetDateTime::now_utc();
    let first = cfg.decoder(None).decode_frame(raw);
    let account = match &first {
        Ok(f) => f.account,
        Err(e) => e.header().and_then(|h| h.account),
    };
    let account = account.map(|a| a.as_str().to_owned());
    let settings = match &account {
        Some(a) => {
            let Some(s) = accounts
                .lookup(ingest, a, ingest.store.dc09_account(a))
                .await
            else {
                // Not known to be handled: no answer, the transmitter sends it again.
                count_reply(transport, "none");
                return None;
            };
            s
        }
        None => Dc09Account::default(),
    };
    let key = settings
        .key_hex
        .as_deref()
        .and_then(|hex| Dc09Key::parse(&format!("hex:{hex}")).ok());
    let decoded = match (&first, &key) {
        (Err(Dc09Error::NoKey { .. }), Some(k)) => cfg.decoder(Some(k.clone())).decode_frame(raw),
        _ => first,
    };
    let now = Timestamp::from_unix(received_at.unix_timestamp())
        .unwrap_or_else(|| Timestamp::from_unix(0).unwrap_or_else(|| unreachable!()));
    let link = format!(
        "dc09:{}",
        account.clone().unwrap_or_else(|| peer.ip().to_string())
    );
    let window = Window {
        before: settings
            .settings
            .before_seconds
            .and_then(|s| u32::try_from(s).ok())
            .unwrap_or(cfg.before_seconds),
        after: settings
            .settings
            .after_seconds
            .and_then(|s| u32::try_from(s).ok())
            .unwrap_or(cfg.after_seconds),
    };
    let prefixes = verdict::Prefixes {
        receiver: settings.settings.receiver.clone(),
        line: settings.settings.line.clone(),
    };
    let reply = match verdict::judge_account(decoded, key.is_some(), now, window, &prefixes) {
        Verdict::Ignore => None,
        Verdict::Silent { reason } => {
            if let Err(e) = ingest
                .reject(
                    Source::Dc09,
                    link,
                    raw.to_vec(),
                    "bad_frame",
                    reason,
                    received_at,
                )
                .await
            {
                warn!(error = %e, "could not keep a broken DC-09 frame");
            }
            None
        }
        Verdict::Refuse {
            reply,
            reason_code,
            reason,
        } => {
            if let Err(e) = ingest
                .reject(
                    Source::Dc09,
                    link,
                    raw.to_vec(),
                    reason_code,
                    reason,
                    received_at,
                )
                .await
            {
                warn!(error = %e, "could not keep a refused DC-09 frame");
            }
            Some(reply)
        }
        Verdict::Unreadable { header, reason } => ingest
            .unreadable(
                Source::Dc09,
                link,
                account,
                DC09_PROTOCOLS,
                raw.to_vec(),
                "dc09_unreadable",
                reason,
                received_at,
                None,
            )
            .await
            .ok()
            .map(|_| dc09::ack(&header)),
        Verdict::Store(frame) => {
            let dedupe_key = account.as_ref().map(|a| {
                format!(
                    "dc09:{a}:{}:{}",
                    frame.sequence.as_str(),
                    frame.timestamp.map(|t| t.to_string()).unwrap_or_default()
                )
            });
            let arrival = Arrival {
                source: Source::Dc09,
                link_id: link,
                account,
                speaks: DC09_PROTOCOLS,
                raw: raw.to_vec(),
                decoded: Decoded::from_dc09(&frame),
                received_at,
                dedupe_key,
            };
            let supervised = arrival.account.clone();
            match ingest.signal(arrival).await {
                Ok(_) => {
                    let every = settings
                        .settings
                        .supervision_seconds
                        .and_then(|s| u64::try_from(s).ok())
                        .map(Duration::from_secs);
                    if let Some(a) = supervised
                        && rx.heard(&a, every)
                    {
                        ingest
                            .link_change(
                                &format!("dc09:{a}"),
                                true,
                                &format!("transmitter {a} heard again"),
                                true,
                            )
                            .await;
                    }
                    Some(verdict::ack(
                        &frame,
                        key.as_ref(),
                        now,
                        getrandom::u64().unwrap_or(0),
                    ))
                }
                Err(e) => {
                    warn!(error = %e, "DC-09 signal not durable; not answering (the transmitter retries)");
                    None
                }
            }
        }
    };
    count_reply(
        transport,
        match reply.as_deref() {
            None => "none",
            Some(r) if r.windows(4).any(|w| w == b"NAK\"") => "nak",
            Some(r) if r.windows(4).any(|w| w == b"DUH\"") => "duh",
            Some(_) => "ack",
        },
    );
    reply
}

fn count_reply(transport: &'static str, reply: &'static str) {
    metrics::counter!(m::DC09_REPLIES, "transport" => transport, "reply" => reply).increment(1);
}
