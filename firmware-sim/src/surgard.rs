//! A Sur-Gard MLR2-style receiver emulator: the automation output a real receiver sends to
//! the monitoring computer over RS-232.
//!
//! Behaviour copied from the receiver (MLR2/MLR2-DG manuals, see `shared/vectors` §A):
//!
//! * stop-and-wait: one DC4-terminated frame at a time; the next is sent only after the
//!   computer's ACK (0x06);
//! * a NAK (0x15), or no answer within the ACK timeout (4 s), makes the receiver send the same
//!   frame again, up to `max_attempts` transmissions in a row;
//! * after that the receiver treats the computer as away: the frame stays at the head of its
//!   buffer, reported as unacknowledged, and everything queued behind it waits; after
//!   `link_retry_interval` it tries the head frame again (or a heartbeat, when nothing is
//!   buffered) and, once the computer answers, delivers the buffer in order;
//! * when idle it sends a supervisory heartbeat (`1011` + 11 spaces + `@` + 4 spaces + DC4
//!   for receiver 01 line 1) every heartbeat interval; the computer must ACK those too.
//!
//! The buffer is the bounded channel between [`ReceiverHandle`] and the running receiver:
//! when it is full, `send_event` waits, so an alarm is never dropped.

use std::future::Future;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use serde::Serialize;
use thiserror::Error;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::{mpsc, watch};
use tokio::time::{Instant, sleep_until};
use tokio_serial::{DataBits, Parity, SerialPortBuilderExt, SerialStream, StopBits};
use tracing::{debug, info, warn};
use warden_protocol::contact_id::{CidEvent, ContactIdError};
use warden_protocol::surgard::{Origin, SurGardFrame};
use warden_protocol::{ACK, Account, Ascii, NAK, printable};
use warden_types::Qualifier;

use crate::LatencySummary;

/// Default number of frames the receiver buffers before `send_event` waits.
pub const DEFAULT_BUFFER_CAPACITY: usize = 1024;
/// Default cap on the ACK records kept for latency measurement; later ones are counted only.
pub const DEFAULT_MAX_RECORDS: usize = 1_000_000;

/// Why the receiver emulator could not be set up or stopped with an error.
#[derive(Debug, Error)]
pub enum ReceiverError {
    #[error("invalid receiver configuration: {0}")]
    Config(String),
    #[error("invalid event: {0}")]
    Event(String),
    #[error(transparent)]
    ContactId(#[from] ContactIdError),
    #[error("the receiver is not running any more")]
    Stopped,
    #[error("serial port {path}: {source}")]
    Serial {
        path: String,
        #[source]
        source: tokio_serial::Error,
    },
    #[error("link to the computer failed: {0}")]
    Io(#[from] std::io::Error),
}

/// How the emulated receiver behaves.
#[derive(Debug, Clone, PartialEq)]
pub struct ReceiverConfig {
    /// Receiver number, two digits (`01`).
    pub receiver: String,
    /// Line card number, one digit (MLR2, `1`) or three (System III/5, `001`).
    pub line: String,
    /// Idle time after which a heartbeat is sent (MLR2: about 30 s, programmable).
    pub heartbeat_interval: Duration,
    /// How long to wait for ACK/NAK after each transmission (the protocol allows 4 s).
    pub ack_timeout: Duration,
    /// Transmissions of one frame in a row before the computer is treated as away.
    pub max_attempts: u32,
    /// How long to wait, once the computer is treated as away, before trying again.
    pub link_retry_interval: Duration,
    /// Frames buffered in the receiver (queued, not yet acknowledged) before senders wait.
    pub buffer_capacity: usize,
    /// ACK records kept for latency measurement; beyond this only the counters move.
    pub max_records: usize,
}

impl Default for ReceiverConfig {
    fn default() -> Self {
        Self {
            receiver: "01".into(),
            line: "1".into(),
            heartbeat_interval: Duration::from_secs(30),
            ack_timeout: Duration::from_secs(4),
            max_attempts: 4,
            link_retry_interval: Duration::from_secs(30),
            buffer_capacity: DEFAULT_BUFFER_CAPACITY,
            max_records: DEFAULT_MAX_RECORDS,
        }
    }
}

impl ReceiverConfig {
    /// The receiver/line header this configuration puts on every frame.
    pub fn origin(&self) -> Result<Origin, ReceiverError> {
        let digits = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
        let mut problems = Vec::new();
        if self.receiver.len() != 2 || !digits(&self.receiver) {
            problems.push(format!("receiver {:?} must be two digits", self.receiver));
        }
        if !matches!(self.line.len(), 1 | 3) || !digits(&self.line) {
            problems.push(format!("line {:?} must be one or three digits", self.line));
        }
        if self.max_attempts == 0 {
            problems.push("max_attempts must be at least 1".into());
        }
        if self.ack_timeout.is_zero() || self.heartbeat_interval.is_zero() {
            problems.push("ack_timeout and heartbeat_interval must be above zero".into());
        }
        if self.buffer_capacity == 0 {
            problems.push("buffer_capacity must be at least 1".into());
        }
        match (
            Ascii::new(self.receiver.as_bytes()),
            Ascii::new(self.line.as_bytes()),
        ) {
            (Some(receiver), Some(line)) if problems.is_empty() => Ok(Origin { receiver, line }),
            _ => Err(ReceiverError::Config(problems.join("; "))),
        }
    }
}

/// Serial line settings for [`open_serial`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SerialSettings {
    pub baud: u32,
    pub data_bits: DataBits,
    pub parity: Parity,
    pub stop_bits: StopBits,
}

impl Default for SerialSettings {
    /// 9600 8N1, the MLR2 factory setting.
    fn default() -> Self {
        Self {
            baud: 9600,
            data_bits: DataBits::Eight,
            parity: Parity::None,
            stop_bits: StopBits::One,
        }
    }
}

impl SerialSettings {
    /// Applies a frame format written the usual way, `8N1` or `7E1`.
    pub fn with_format(mut self, format: &str) -> Result<Self, ReceiverError> {
        let bad = || {
            ReceiverError::Config(format!(
                "serial format {format:?} is not data bits (5-8), parity (N/E/O), stop bits (1/2), e.g. 8N1"
            ))
        };
        let b = format.as_bytes();
        if b.len() != 3 {
            return Err(bad());
        }
        self.data_bits = match b[0] {
            b'5' => DataBits::Five,
            b'6' => DataBits::Six,
            b'7' => DataBits::Seven,
            b'8' => DataBits::Eight,
            _ => return Err(bad()),
        };
        self.parity = match b[1].to_ascii_uppercase() {
            b'N' => Parity::None,
            b'E' => Parity::Even,
            b'O' => Parity::Odd,
            _ => return Err(bad()),
        };
        self.stop_bits = match b[2] {
            b'1' => StopBits::One,
            b'2' => StopBits::Two,
            _ => return Err(bad()),
        };
        Ok(self)
    }
}

/// Opens a serial device (a real port, or a pty such as one end of a `socat` pair).
pub fn open_serial(path: &str, settings: &SerialSettings) -> Result<SerialStream, ReceiverError> {
    tokio_serial::new(path, settings.baud)
        .data_bits(settings.data_bits)
        .parity(settings.parity)
        .stop_bits(settings.stop_bits)
        .flow_control(tokio_serial::FlowControl::None)
        .open_native_async()
        .map_err(|source| ReceiverError::Serial {
            path: path.to_owned(),
            source,
        })
}

/// What a transmitted frame was.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum FrameKind {
    /// An alarm event (Contact ID or any frame given to [`ReceiverHandle::send_frame`]).
    Event,
    /// The receiver's own heartbeat.
    Heartbeat,
    /// Bytes given to [`ReceiverHandle::send_raw_expecting_reply`].
    Raw,
}

/// One frame the computer acknowledged, with the times needed for latency measurements.
#[derive(Debug, Clone)]
pub struct AckedFrame {
    /// The number [`ReceiverHandle`] returned when the frame was queued (0 for heartbeats).
    pub seq: u64,
    pub kind: FrameKind,
    /// The frame as sent, DC4 included.
    pub bytes: Vec<u8>,
    pub queued_at: Instant,
    /// The first transmission.
    pub first_sent_at: Instant,
    /// The transmission the ACK answered.
    pub sent_at: Instant,
    pub acked_at: Instant,
    /// Transmissions it took, 1 when the first was acknowledged.
    pub transmissions: u32,
}

impl AckedFrame {
    /// Time from the transmission that was acknowledged to its ACK.
    pub fn ack_latency(&self) -> Duration {
        self.acked_at.saturating_duration_since(self.sent_at)
    }

    /// Time from queueing to ACK, buffering and retries included.
    pub fn delivery_latency(&self) -> Duration {
        self.acked_at.saturating_duration_since(self.queued_at)
    }
}

/// Counters of what the receiver did. Event frames and raw bytes are counted apart, so
/// "every event acknowledged" is `acked == queued`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct ReceiverStats {
    /// Event frames queued by handles.
    pub queued: u64,
    /// Event frames transmitted at least once.
    pub sent: u64,
    /// Event frames acknowledged.
    pub acked: u64,
    /// NAKs received for any frame.
    pub naked: u64,
    /// ACK timeouts for any frame.
    pub timeouts: u64,
    /// Retransmissions of any frame.
    pub resent: u64,
    /// Times a frame went unanswered `max_attempts` times and the computer was treated as away.
    pub gave_up: u64,
    /// Event frames not yet acknowledged: in flight, held after giving up, or queued.
    pub unacked_buffered: u64,
    pub heartbeats_sent: u64,
    pub heartbeats_acked: u64,
    /// Raw byte strings written (with or without waiting for a reply).
    pub raw_sent: u64,
    pub raw_acked: u64,
    pub raw_naked: u64,
    pub raw_unanswered: u64,
    /// ACK/NAK bytes that arrived when nothing was waiting for one.
    pub unexpected_replies: u64,
    /// Bytes from the computer that were neither ACK nor NAK.
    pub noise_bytes: u64,
    /// ACK records not kept because `max_records` was reached.
    pub records_dropped: u64,
    /// Whether the computer is answering.
    pub link_up: bool,
    /// Queued items whose fate is final (acknowledged, or written when no reply is expected).
    #[serde(skip)]
    pub settled: u64,
}

/// What the receiver did, returned when it stops.
#[derive(Debug, Clone)]
pub struct ReceiverReport {
    pub stats: ReceiverStats,
    pub acked: Vec<AckedFrame>,
}

impl ReceiverReport {
    /// Whether every queued event frame was acknowledged.
    pub fn all_acknowledged(&self) -> bool {
        self.stats.unacked_buffered == 0 && self.stats.acked == self.stats.queued
    }

    /// A JSON-friendly summary: the counters plus ACK latency percentiles of event frames.
    pub fn summary(&self) -> ReceiverSummary {
        let events = |f: &&AckedFrame| f.kind == FrameKind::Event;
        let ack: Vec<Duration> = self
            .acked
            .iter()
            .filter(events)
            .map(AckedFrame::ack_latency)
            .collect();
        let delivery: Vec<Duration> = self
            .acked
            .iter()
            .filter(events)
            .map(AckedFrame::delivery_latency)
            .collect();
        ReceiverSummary {
            stats: self.stats,
            all_acknowledged: self.all_acknowledged(),
            ack_latency: LatencySummary::from_samples(&ack),
            delivery_latency: LatencySummary::from_samples(&delivery),
        }
    }
}

/// The serialisable part of a [`ReceiverReport`].
#[derive(Debug, Clone, Serialize)]
pub struct ReceiverSummary {
    #[serde(flatten)]
    pub stats: ReceiverStats,
    pub all_acknowledged: bool,
    /// Last transmission → ACK, event frames only.
    pub ack_latency: LatencySummary,
    /// Queued → ACK, event frames only: buffering and retries included.
    pub delivery_latency: LatencySummary,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ItemKind {
    Event,
    Heartbeat,
    /// Written once, no reply awaited (garbage, a frame cut short).
    RawNoReply,
    /// Written once, one reply (or its absence) recorded, never resent.
    RawReply,
}

#[derive(Debug)]
struct Item {
    seq: u64,
    kind: ItemKind,
    bytes: Vec<u8>,
    queued_at: Instant,
}

#[derive(Debug)]
struct Shared {
    stats: watch::Sender<ReceiverStats>,
    acked: Mutex<Vec<AckedFrame>>,
    next_seq: AtomicU64,
    /// Items handed to the channel (events and raw), for [`ReceiverHandle::flushed`].
    submitted: AtomicU64,
}

/// A cloneable handle that queues frames for the receiver and reads its counters.
#[derive(Debug, Clone)]
pub struct ReceiverHandle {
    tx: mpsc::Sender<Item>,
    shared: Arc<Shared>,
    origin: Origin,
}

impl ReceiverHandle {
    /// Queues a Contact ID event (`5RRL 18AAAAQXYZGGCCC` for 4-digit accounts,
    /// `QRRLLL 58AAAAAAAAAAQXYZGGCCC` for 10-digit ones). Waits while the buffer is full.
    /// Returns the sequence number that identifies the frame in [`AckedFrame::seq`].
    pub async fn send_event(
        &self,
        account: &str,
        qualifier: Qualifier,
        code: u16,
        group: u8,
        zone: u16,
    ) -> Result<u64, ReceiverError> {
        let frame = self.contact_id_frame(account, qualifier, code, group, zone)?;
        self.send_frame(&frame).await
    }

    /// Builds the frame [`Self::send_event`] would send, without sending it.
    pub fn contact_id_frame(
        &self,
        account: &str,
        qualifier: Qualifier,
        code: u16,
        group: u8,
        zone: u16,
    ) -> Result<SurGardFrame, ReceiverError> {
        if code > 999 || group > 99 || zone > 999 {
            return Err(ReceiverError::Event(format!(
                "code {code}, group {group} and zone {zone} must fit 3, 2 and 3 digits"
            )));
        }
        let (protocol, message_type) = match account.len() {
            4 => ('5', "18"),
            10 => ('Q', "58"),
            n => {
                return Err(ReceiverError::Event(format!(
                    "account {account:?} has {n} characters; Sur-Gard carries 4 (protocol 5) or 10 (protocol Q)"
                )));
            }
        };
        let account = account
            .bytes()
            .all(|b| b.is_ascii_hexdigit())
            .then(|| Account::new(account.as_bytes()))
            .flatten()
            .ok_or_else(|| {
                ReceiverError::Event(format!("account {account:?} is not hex digits"))
            })?;
        let event = CidEvent::new(
            qualifier,
            format!("{code:03}").as_bytes(),
            format!("{group:02}").as_bytes(),
            format!("{zone:03}").as_bytes(),
        )?;
        Ok(SurGardFrame::ContactId {
            origin: self.origin,
            protocol,
            account,
            message_type: Ascii::new(message_type.as_bytes())
                .ok_or_else(|| ReceiverError::Event("bad message type".into()))?,
            event,
            receiver_time: None,
        })
    }

    /// Queues any frame (SIA, Contact ID with the receiver clock, ...) with stop-and-wait
    /// delivery like an event.
    pub async fn send_frame(&self, frame: &SurGardFrame) -> Result<u64, ReceiverError> {
        let mut bytes = Vec::with_capacity(48);
        frame.encode(&mut bytes);
        self.enqueue(ItemKind::Event, bytes).await
    }

    /// Queues bytes that are written as they are, in order with the frames, without waiting
    /// for any reply: garbage between frames, or a frame cut short. The computer sees them
    /// run into the next frame, which it should NAK, and the receiver then resends that frame.
    pub async fn send_raw(&self, bytes: impl Into<Vec<u8>>) -> Result<u64, ReceiverError> {
        self.enqueue(ItemKind::RawNoReply, bytes.into()).await
    }

    /// Queues bytes that form a (bad) frame of their own, such as an oversized frame ending in
    /// DC4: they are written once, the first reply (or its absence within the ACK timeout) is
    /// counted in `raw_acked`/`raw_naked`/`raw_unanswered`, and they are never resent.
    pub async fn send_raw_expecting_reply(
        &self,
        bytes: impl Into<Vec<u8>>,
    ) -> Result<u64, ReceiverError> {
        self.enqueue(ItemKind::RawReply, bytes.into()).await
    }

    async fn enqueue(&self, kind: ItemKind, bytes: Vec<u8>) -> Result<u64, ReceiverError> {
        let seq = self.shared.next_seq.fetch_add(1, Ordering::Relaxed) + 1;
        let item = Item {
            seq,
            kind,
            bytes,
            queued_at: Instant::now(),
        };
        // Count the event before it can be acknowledged, so `unacked_buffered` never dips
        // below zero while the frame is in the channel.
        if kind == ItemKind::Event {
            self.shared.stats.send_modify(|s| {
                s.queued += 1;
                s.unacked_buffered += 1;
            });
        }
        if self.tx.send(item).await.is_err() {
            if kind == ItemKind::Event {
                self.shared.stats.send_modify(|s| {
                    s.queued -= 1;
                    s.unacked_buffered -= 1;
                });
            }
            return Err(ReceiverError::Stopped);
        }
        self.shared.submitted.fetch_add(1, Ordering::Release);
        Ok(seq)
    }

    /// The counters now.
    pub fn stats(&self) -> ReceiverStats {
        *self.shared.stats.borrow()
    }

    /// The frames acknowledged so far, in ACK order.
    pub fn acked_frames(&self) -> Vec<AckedFrame> {
        self.shared
            .acked
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// Waits until everything queued through any handle before this call is settled: events
    /// acknowledged, raw bytes written or answered. Never returns while the computer is away,
    /// so callers bound it with a timeout.
    pub async fn flushed(&self) {
        let target = self.shared.submitted.load(Ordering::Acquire);
        let mut rx = self.shared.stats.subscribe();
        // The sender lives in `shared`, which this handle keeps alive, so this only ends
        // when the condition holds.
        let _ = rx.wait_for(|s| s.settled >= target).await;
    }
}

/// The receiver emulator. Create it with [`SurGardReceiver::new`], take a
/// [`handle`](Self::handle), then drive it with [`run`](Self::run).
pub struct SurGardReceiver<T> {
    driver: Driver<T>,
    /// The receiver's own sender, dropped when it starts running so the channel closes once
    /// every handle is gone.
    tx: mpsc::Sender<Item>,
}

/// The running half: the link, the buffer's receiving end and the shared counters.
struct Driver<T> {
    io: T,
    config: ReceiverConfig,
    origin: Origin,
    rx: mpsc::Receiver<Item>,
    shared: Arc<Shared>,
}

impl<T> std::fmt::Debug for SurGardReceiver<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SurGardReceiver")
            .field("config", &self.driver.config)
            .finish_non_exhaustive()
    }
}

/// The frame being delivered.
#[derive(Debug)]
struct Current {
    item: Item,
    /// Transmissions in the current round (reset when a round starts after giving up).
    attempts: u32,
    /// Transmissions in total.
    transmissions: u32,
    first_sent_at: Option<Instant>,
    last_sent_at: Option<Instant>,
    /// When the ACK is due; `None` while the frame waits to be (re)transmitted.
    deadline: Option<Instant>,
}

impl Current {
    fn new(item: Item) -> Self {
        Self {
            item,
            attempts: 0,
            transmissions: 0,
            first_sent_at: None,
            last_sent_at: None,
            deadline: None,
        }
    }
}

#[derive(Debug, Clone, Copy)]
enum Link {
    Up,
    /// The computer did not answer; nothing is sent before `retry_at`.
    Away {
        retry_at: Instant,
    },
}

impl Link {
    fn ready(self, now: Instant) -> bool {
        match self {
            Link::Up => true,
            Link::Away { retry_at } => now >= retry_at,
        }
    }
}

/// What woke the loop.
enum Wake {
    Shutdown,
    Read(std::io::Result<usize>),
    Item(Option<Item>),
    Timer,
}

impl<T: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin> SurGardReceiver<T> {
    /// Wraps `io` (a serial port, pty or test pipe). Fails on a bad receiver or line number.
    pub fn new(io: T, config: ReceiverConfig) -> Result<Self, ReceiverError> {
        let origin = config.origin()?;
        let (tx, rx) = mpsc::channel(config.buffer_capacity);
        let (stats, _) = watch::channel(ReceiverStats {
            link_up: true,
            ..ReceiverStats::default()
        });
        let shared = Arc::new(Shared {
            stats,
            acked: Mutex::new(Vec::new()),
            next_seq: AtomicU64::new(0),
            submitted: AtomicU64::new(0),
        });
        Ok(Self {
            driver: Driver {
                io,
                config,
                origin,
                rx,
                shared,
            },
            tx,
        })
    }

    /// A handle for queueing frames and reading counters.
    pub fn handle(&self) -> ReceiverHandle {
        ReceiverHandle {
            tx: self.tx.clone(),
            shared: Arc::clone(&self.driver.shared),
            origin: self.driver.origin,
        }
    }

    /// Runs the receiver until `shutdown` completes, or until every handle is dropped and the
    /// buffer is delivered. Frames still unacknowledged at shutdown stay counted in
    /// `unacked_buffered`. Fails only when the link itself fails (a write error).
    pub async fn run(
        self,
        shutdown: impl Future<Output = ()>,
    ) -> Result<ReceiverReport, ReceiverError> {
        let Self { mut driver, tx } = self;
        drop(tx);
        let shutdown = std::pin::pin!(shutdown);
        let result = driver.run_loop(shutdown).await;
        let stats = *driver.shared.stats.borrow();
        let acked = driver
            .shared
            .acked
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone();
        info!(
            queued = stats.queued,
            acked = stats.acked,
            unacked = stats.unacked_buffered,
            resent = stats.resent,
            "sur-gard receiver stopped"
        );
        result.map(|()| ReceiverReport { stats, acked })
    }
}

impl<T: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin> Driver<T> {
    async fn run_loop(
        &mut self,
        mut shutdown: std::pin::Pin<&mut impl Future<Output = ()>>,
    ) -> Result<(), ReceiverError> {
        let mut buf = [0u8; 256];
        let mut eof = false;
        let mut closed = false;
        let mut link = Link::Up;
        let mut current: Option<Current> = None;
        let mut last_tx = Instant::now();
        let heartbeat_interval = self.config.heartbeat_interval;
        loop {
            let now = Instant::now();
            let ready = link.ready(now);
            if current.is_none() && ready && !closed {
                match self.rx.try_recv() {
                    Ok(item) => current = Some(Current::new(item)),
                    Err(mpsc::error::TryRecvError::Empty) => {}
                    Err(mpsc::error::TryRecvError::Disconnected) => closed = true,
                }
            }
            // Nothing buffered: a heartbeat when the line has been quiet for the interval, or
            // at once as a probe when the computer is away and the retry time has come.
            let away = matches!(link, Link::Away { .. });
            if current.is_none() && ready && (away || now >= last_tx + heartbeat_interval) {
                current = Some(Current::new(Item {
                    seq: 0,
                    kind: ItemKind::Heartbeat,
                    bytes: self.heartbeat_bytes(),
                    queued_at: now,
                }));
            }
            if let Some(cur) = current.as_mut()
                && cur.deadline.is_none()
                && ready
            {
                if !self.transmit(cur, shutdown.as_mut()).await? {
                    return Ok(());
                }
                last_tx = Instant::now();
                if cur.item.kind == ItemKind::RawNoReply {
                    current = None;
                }
                continue;
            }
            if closed && current.is_none() {
                debug!("every handle dropped and the buffer is delivered");
                return Ok(());
            }
            let wake_at = match (&current, link) {
                (
                    Some(Current {
                        deadline: Some(d), ..
                    }),
                    _,
                ) => *d,
                (_, Link::Away { retry_at }) => retry_at,
                (None, Link::Up) => last_tx + heartbeat_interval,
                // A frame waiting for transmission on an up link is sent at the top of the
                // loop, so this arm is not reached; waking at once is the safe answer.
                (Some(_), Link::Up) => now,
            };
            let can_take = current.is_none() && ready && !closed;
            let wake = tokio::select! {
                biased;
                // Cancel-safe: a pinned future polled by reference keeps its state.
                () = shutdown.as_mut() => Wake::Shutdown,
                // Cancel-safe: `read` takes no bytes from the port unless it completes.
                r = self.io.read(&mut buf), if !eof => Wake::Read(r),
                // Cancel-safe: `recv` loses no message when it is dropped before completing.
                item = self.rx.recv(), if can_take => Wake::Item(item),
                // Cancel-safe: a timer holds no data, and the deadline is recomputed each turn.
                () = sleep_until(wake_at) => Wake::Timer,
            };
            match wake {
                Wake::Shutdown => return Ok(()),
                Wake::Read(Ok(0)) => {
                    warn!("the computer end of the link closed");
                    eof = true;
                }
                Wake::Read(Ok(n)) => {
                    for &b in &buf[..n] {
                        self.on_reply(b, &mut current, &mut link);
                    }
                }
                Wake::Read(Err(e)) => return Err(e.into()),
                Wake::Item(Some(item)) => current = Some(Current::new(item)),
                Wake::Item(None) => closed = true,
                Wake::Timer => self.on_timer(&mut current, &mut link),
            }
        }
    }

    fn heartbeat_bytes(&self) -> Vec<u8> {
        let mut bytes = Vec::with_capacity(24);
        SurGardFrame::Heartbeat {
            origin: self.origin,
        }
        .encode(&mut bytes);
        bytes
    }

    /// Writes the current frame. Returns false when shutdown came first (the write is
    /// abandoned, which is fine because the link is going away).
    async fn transmit(
        &mut self,
        cur: &mut Current,
        shutdown: std::pin::Pin<&mut impl Future<Output = ()>>,
    ) -> Result<bool, ReceiverError> {
        let write = async {
            self.io.write_all(&cur.item.bytes).await?;
            self.io.flush().await
        };
        let done = tokio::select! {
            biased;
            // Cancel-safe enough: a shutdown abandons the link, partial frame and all.
            () = shutdown => false,
            // Not cancel-safe (a partial write), which is why only shutdown competes with it.
            r = write => {
                r?;
                true
            }
        };
        if !done {
            return Ok(false);
        }
        let now = Instant::now();
        let resend = cur.transmissions > 0;
        cur.attempts += 1;
        cur.transmissions += 1;
        cur.first_sent_at.get_or_insert(now);
        cur.last_sent_at = Some(now);
        cur.deadline =
            (cur.item.kind != ItemKind::RawNoReply).then(|| now + self.config.ack_timeout);
        let kind = cur.item.kind;
        self.update(|s| {
            if resend {
                s.resent += 1;
            }
            match kind {
                ItemKind::Event if !resend => s.sent += 1,
                ItemKind::Heartbeat if !resend => s.heartbeats_sent += 1,
                ItemKind::RawReply | ItemKind::RawNoReply => s.raw_sent += 1,
                ItemKind::Event | ItemKind::Heartbeat => {}
            }
            if kind == ItemKind::RawNoReply {
                s.settled += 1;
            }
        });
        debug!(
            seq = cur.item.seq,
            attempt = cur.attempts,
            frame = %printable(&cur.item.bytes),
            "frame sent"
        );
        Ok(true)
    }

    fn on_reply(&mut self, byte: u8, current: &mut Option<Current>, link: &mut Link) {
        let awaiting = current.as_ref().is_some_and(|c| c.deadline.is_some());
        match byte {
            ACK if awaiting => {
                if let Some(cur) = current.take() {
                    self.acked(cur);
                }
                if matches!(link, Link::Away { .. }) {
                    info!("computer answers again, delivering the buffer");
                }
                *link = Link::Up;
                self.update(|s| s.link_up = true);
            }
            NAK if awaiting => {
                self.update(|s| s.naked += 1);
                self.retry_or_give_up(current, link, "nak");
            }
            ACK | NAK => {
                self.update(|s| s.unexpected_replies += 1);
                // Any answer shows the computer is back; try the held frame at once.
                if let Link::Away { .. } = link {
                    *link = Link::Away {
                        retry_at: Instant::now(),
                    };
                }
            }
            _ => self.update(|s| s.noise_bytes += 1),
        }
    }

    fn on_timer(&mut self, current: &mut Option<Current>, link: &mut Link) {
        let now = Instant::now();
        if current
            .as_ref()
            .and_then(|c| c.deadline)
            .is_some_and(|d| now >= d)
        {
            self.update(|s| s.timeouts += 1);
            self.retry_or_give_up(current, link, "timeout");
        }
    }

    /// After a NAK or a timeout: raw frames are settled as they are; other frames are sent
    /// again while attempts remain, else held (events) or dropped (heartbeats) and the
    /// computer is treated as away.
    fn retry_or_give_up(&mut self, current: &mut Option<Current>, link: &mut Link, why: &str) {
        let Some(cur) = current.as_mut() else {
            return;
        };
        cur.deadline = None;
        if cur.item.kind == ItemKind::RawReply {
            let naked = why == "nak";
            self.update(|s| {
                if naked {
                    s.raw_naked += 1;
                } else {
                    s.raw_unanswered += 1;
                }
                s.settled += 1;
            });
            *current = None;
            return;
        }
        if cur.attempts < self.config.max_attempts {
            debug!(
                seq = cur.item.seq,
                attempt = cur.attempts,
                why,
                "resending frame"
            );
            return;
        }
        warn!(
            seq = cur.item.seq,
            attempts = cur.attempts,
            why,
            retry_in = ?self.config.link_retry_interval,
            "computer did not acknowledge, holding the buffer"
        );
        cur.attempts = 0;
        if cur.item.kind == ItemKind::Heartbeat {
            *current = None;
        }
        *link = Link::Away {
            retry_at: Instant::now() + self.config.link_retry_interval,
        };
        self.update(|s| {
            s.gave_up += 1;
            s.link_up = false;
        });
    }

    fn acked(&mut self, cur: Current) {
        let now = Instant::now();
        let kind = cur.item.kind;
        let record = AckedFrame {
            seq: cur.item.seq,
            kind: match kind {
                ItemKind::Event => FrameKind::Event,
                ItemKind::Heartbeat => FrameKind::Heartbeat,
                ItemKind::RawReply | ItemKind::RawNoReply => FrameKind::Raw,
            },
            queued_at: cur.item.queued_at,
            first_sent_at: cur.first_sent_at.unwrap_or(now),
            sent_at: cur.last_sent_at.unwrap_or(now),
            acked_at: now,
            transmissions: cur.transmissions,
            bytes: cur.item.bytes,
        };
        debug!(seq = record.seq, latency = ?record.ack_latency(), "frame acknowledged");
        let kept = {
            let mut acked = self
                .shared
                .acked
                .lock()
                .unwrap_or_else(PoisonError::into_inner);
            if acked.len() < self.config.max_records {
                acked.push(record);
                true
            } else {
                false
            }
        };
        self.update(|s| {
            match kind {
                ItemKind::Event => {
                    s.acked += 1;
                    s.unacked_buffered = s.unacked_buffered.saturating_sub(1);
                    s.settled += 1;
                }
                ItemKind::Heartbeat => s.heartbeats_acked += 1,
                ItemKind::RawReply | ItemKind::RawNoReply => {
                    s.raw_acked += 1;
                    s.settled += 1;
                }
            }
            if !kept {
                s.records_dropped += 1;
            }
        });
    }

    fn update(&self, f: impl FnOnce(&mut ReceiverStats)) {
        self.shared.stats.send_modify(f);
    }
}
