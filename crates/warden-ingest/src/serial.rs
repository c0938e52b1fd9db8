//! Serial ingest from a Sur-Gard-compatible receiver's automation port.
//!
//! One task per configured port. Each DC4-terminated frame is decoded and written; the
//! receiver gets ACK (0x06) only after the commit, NAK (0x15) for a frame that could not be
//! decoded (kept in quarantine) or could not be written (it will resend). Heartbeats are
//! ACKed and supervised: silence longer than the configured window records "link lost",
//! and the next frame records "link restored". Port errors close the port and reopen it
//! with backoff; nothing here ends the process.
//!
//! # The ACK window
//!
//! The receiver is stop-and-wait: it sends one frame and waits `ack_window` (Sur-Gard: 4 s)
//! for ACK or NAK, then sends the same frame again. An answer that arrives after that is
//! taken for the answer to whatever the receiver sends next, so Warden
//!
//! * answers each frame at most `ack_window - ack_margin` after its last byte arrived, or
//!   not at all: a frame not durable by then gets silence (not NAK; see `Ledger`) and the
//!   receiver resends it (`warden_serial_late_frames_total`);
//! * keeps reading the port while writes are pending, and recognises a resend (the same
//!   bytes as the previous, still unanswered frame): it is not written again but answered
//!   from the first copy's write, within its own window
//!   (`warden_serial_retransmissions_total`);
//! * answers in frame order, one answer per transmission the receiver waits on.
//!
//! Example: the database stalls for 8 s. Frame A arrives at 0 s; no answer by 3.5 s. The
//! receiver resends at 4 s and 8 s; each copy starts no write. The stall ends at 8.5 s, A's
//! write commits, and the copy of 8 s is ACKed (its window runs to 11.5 s). A is stored
//! once, and the receiver's next frame is answered only for itself.

mod ledger;

use std::time::{Duration, Instant};

use futures::FutureExt;
use futures::future::BoxFuture;
use futures::stream::{FuturesUnordered, StreamExt};
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio_util::sync::CancellationToken;
use warden_protocol::surgard::{SurGardDecoder, SurGardError, SurGardFrame};
use warden_protocol::{ACK, DC4, NAK, Step};
use warden_store::Source;
use warden_telemetry as m;

use crate::Ingest;
use crate::record::{Arrival, Outcome, RECEIVER_PROTOCOLS};
use ledger::{Done, Ledger, ReadTime, Seen, Settled, WriteId};
use warden_core::Decoded;

/// Parity setting of a serial port.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Parity {
    None,
    Even,
    Odd,
}

/// One receiver's serial port.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SerialConfig {
    /// A short name used in logs, metrics (`link="serial:NAME"`) and the links table.
    pub name: String,
    /// Device path, e.g. `/dev/ttyS0` or `/dev/serial/by-id/...`.
    pub path: String,
    #[serde(default = "default_baud")]
    pub baud: u32,
    #[serde(default = "default_data_bits")]
    pub data_bits: u8,
    #[serde(default = "default_parity")]
    pub parity: Parity,
    #[serde(default = "default_stop_bits")]
    pub stop_bits: u8,
    /// The receiver profile (frame format). Only `surgard` exists today.
    #[serde(default = "default_profile")]
    pub profile: String,
    /// Silence longer than this raises "link lost". Receivers send a heartbeat about every
    /// 30 s, so the default tolerates two missed heartbeats.
    #[serde(default = "default_heartbeat_window", with = "humantime_serde")]
    pub heartbeat_window: Duration,
    /// How long the receiver waits for ACK/NAK after a frame before it sends the frame
    /// again (Sur-Gard: 4 s). No answer is ever sent later than this, because a late answer
    /// would be taken for the answer to the receiver's next frame.
    #[serde(default = "default_ack_window", with = "humantime_serde")]
    pub ack_window: Duration,
    /// Safety margin kept inside `ack_window` for the answer byte's time on the line and the
    /// two clocks disagreeing: an answer leaves at most `ack_window - ack_margin` after the
    /// frame's last byte arrived, or not at all.
    #[serde(default = "default_ack_margin", with = "humantime_serde")]
    pub ack_margin: Duration,
}

fn default_baud() -> u32 {
    9600
}
fn default_data_bits() -> u8 {
    8
}
fn default_parity() -> Parity {
    Parity::None
}
fn default_stop_bits() -> u8 {
    1
}
fn default_profile() -> String {
    "surgard".into()
}
fn default_heartbeat_window() -> Duration {
    Duration::from_secs(75)
}
fn default_ack_window() -> Duration {
    Duration::from_secs(4)
}
fn default_ack_margin() -> Duration {
    Duration::from_millis(500)
}

impl SerialConfig {
    /// Checks values tokio-serial would reject, so bad config fails at start-up with a
    /// message naming the field.
    pub fn validate(&self) -> Vec<String> {
        let mut errors = Vec::new();
        let at = |f: &str| format!("serial[{}].{f}", self.name);
        if !(5..=8).contains(&self.data_bits) {
            errors.push(format!(
                "{}: {} is not 5, 6, 7 or 8",
                at("data_bits"),
                self.data_bits
            ));
        }
        if !(1..=2).contains(&self.stop_bits) {
            errors.push(format!(
                "{}: {} is not 1 or 2",
                at("stop_bits"),
                self.stop_bits
            ));
        }
        if self.baud == 0 {
            errors.push(format!("{}: must be positive", at("baud")));
        }
        if self.profile != "surgard" {
            errors.push(format!(
                "{}: unknown receiver profile {:?} (known: surgard)",
                at("profile"),
                self.profile
            ));
        }
        if self.heartbeat_window < Duration::from_secs(1) {
            errors.push(format!("{}: must be at least 1s", at("heartbeat_window")));
        }
        if self.ack_window < Duration::from_millis(500) {
            errors.push(format!("{}: must be at least 500ms", at("ack_window")));
        }
        if self.ack_margin >= self.ack_window {
            errors.push(format!(
                "{}: {} must be less than ack_window ({})",
                at("ack_margin"),
                humantime::format_duration(self.ack_margin),
                humantime::format_duration(self.ack_window)
            ));
        }
        if self.name.is_empty()
            || !self
                .name
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b))
        {
            errors.push(format!(
                "serial name {:?}: use A-Z a-z 0-9 - _ .",
                self.name
            ));
        }
        errors
    }

    pub fn link_id(&self) -> String {
        format!("serial:{}", self.name)
    }

    /// The timing [`serve`] works to.
    pub fn timing(&self) -> Timing {
        Timing {
            heartbeat_window: self.heartbeat_window,
            ack_window: self.ack_window,
            ack_margin: self.ack_margin,
        }
    }

    fn open(&self) -> Result<tokio_serial::SerialStream, tokio_serial::Error> {
        use tokio_serial::{DataBits, FlowControl, SerialPortBuilderExt, StopBits};
        let data_bits = match self.data_bits {
            5 => DataBits::Five,
            6 => DataBits::Six,
            7 => DataBits::Seven,
            _ => DataBits::Eight,
        };
        let parity = match self.parity {
            Parity::None => tokio_serial::Parity::None,
            Parity::Even => tokio_serial::Parity::Even,
            Parity::Odd => tokio_serial::Parity::Odd,
        };
        let stop_bits = if self.stop_bits == 2 {
            StopBits::Two
        } else {
            StopBits::One
        };
        tokio_serial::new(&self.path, self.baud)
            .data_bits(data_bits)
            .parity(parity)
            .stop_bits(stop_bits)
            .flow_control(FlowControl::None)
            .open_native_async()
    }
}

/// Supervision state of one receiver link.
#[derive(Debug, Default, Clone, Copy)]
pub struct LinkWatch {
    /// The receiver was heard within its heartbeat window.
    pub up: bool,
    /// The receiver has been heard at least once since start-up; the first contact is not
    /// recorded as a restoral.
    pub ever_up: bool,
}

/// Runs one serial link until `shutdown`: open, serve, and reopen with backoff on errors.
pub async fn run(cfg: SerialConfig, ingest: Ingest, shutdown: CancellationToken) {
    let link = cfg.link_id();
    let mut backoff = Duration::from_millis(250);
    let mut watch = LinkWatch::default();
    ingest.link_change(&link, false, "starting", false).await;
    while !shutdown.is_cancelled() {
        match cfg.open() {
            Ok(port) => {
                backoff = Duration::from_millis(250);
                tracing::info!(link = %link, path = %cfg.path, baud = cfg.baud, "serial port open");
                let end = serve(port, &link, cfg.timing(), &ingest, &shutdown, &mut watch).await;
                match end {
                    Ok(()) => tracing::info!(link = %link, "serial session ended"),
                    Err(e) => {
                        tracing::warn!(link = %link, error = %e, "serial port error, reopening");
                    }
                }
            }
            Err(e) => {
                metrics::counter!(m::SERIAL_OPEN_ERRORS, "link" => link.clone()).increment(1);
                tracing::warn!(link = %link, path = %cfg.path, error = %e, retry_in = ?backoff, "serial open failed");
            }
        }
        if watch.up {
            watch.up = false;
            ingest
                .link_change(&link, false, "serial port closed", true)
                .await;
        }
        tokio::select! {
            () = shutdown.cancelled() => break,
            () = tokio::time::sleep(backoff) => {}
        }
        backoff = (backoff * 2).min(Duration::from_secs(10));
    }
}

/// The clocks one link works to (see [`SerialConfig`] for each field).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Timing {
    pub heartbeat_window: Duration,
    pub ack_window: Duration,
    pub ack_margin: Duration,
}

impl Timing {
    /// The default ACK window and margin with the given heartbeat window.
    pub fn with_heartbeat_window(heartbeat_window: Duration) -> Self {
        Self {
            heartbeat_window,
            ack_window: default_ack_window(),
            ack_margin: default_ack_margin(),
        }
    }

    /// How long after a frame's last byte its answer may still leave.
    fn reply_within(self) -> Duration {
        self.ack_window.saturating_sub(self.ack_margin)
    }
}

/// Serves one open port (or any byte stream: tests pass a pty or an in-memory duplex)
/// until it fails, reaches end of file, or `shutdown` fires. `watch` carries supervision
/// state across reopenings.
///
/// The port is read all the time, also while frames are being written: a receiver that
/// resends during a slow commit is heard at once, and its copy is recognised rather than
/// stored again (see `Ledger` for what is answered when). Answers leave in frame order,
/// each at most `ack_window - ack_margin` after its frame's last byte, or never.
pub async fn serve<IO>(
    mut io: IO,
    link: &str,
    timing: Timing,
    ingest: &Ingest,
    shutdown: &CancellationToken,
    watch: &mut LinkWatch,
) -> std::io::Result<()>
where
    IO: AsyncRead + AsyncWrite + Unpin,
{
    let mut decoder = SurGardDecoder::default();
    let mut buf: Vec<u8> = Vec::with_capacity(4096);
    let mut chunk = [0u8; 1024];
    let mut deadline = tokio::time::Instant::now() + timing.heartbeat_window;
    let mut ledger = Ledger::default();
    // Writes in flight, each tagged with its ledger id. A receiver keeps this at one or two
    // (it sends one frame and then waits; a copy of a frame starts no write); a line that
    // streams frames without waiting is capped at MAX_WRITES_IN_FLIGHT by not reading.
    let mut writes: FuturesUnordered<BoxFuture<'static, (WriteId, Done)>> = FuturesUnordered::new();
    loop {
        // Send every answer that is due, in frame order, and give up on those whose window
        // has passed. Not part of the select: a one-byte write to the port is immediate.
        while let Some(settled) = ledger.settle(tokio::time::Instant::now()) {
            match settled {
                Settled::Reply {
                    byte,
                    outcome,
                    arrived,
                } => {
                    io.write_all(&[byte]).await?;
                    io.flush().await?;
                    match (byte, outcome) {
                        (ACK, Some(outcome)) => ingest.acked(Source::Serial, outcome, arrived),
                        (NAK, _) => {
                            metrics::counter!(m::NAKS_SENT, "link" => link.to_owned()).increment(1);
                        }
                        _ => {}
                    }
                }
                Settled::Late { arrived } => late_frame(link, arrived, timing),
            }
        }
        let answer_due = ledger.wake_at();
        tokio::select! {
            // Cancel-safe: no bytes have been read when this branch loses the race. Writes
            // still in flight are dropped; a queued record is committed all the same and the
            // receiver, unanswered, resends it.
            () = shutdown.cancelled() => return Ok(()),
            // Cancel-safe: `sleep_until` holds no state.
            () = tokio::time::sleep_until(deadline), if watch.up => {
                watch.up = false;
                let detail = format!("no heartbeat or signal for {}", humantime::format_duration(timing.heartbeat_window));
                ingest.link_change(link, false, &detail, true).await;
            }
            // Cancel-safe: `FuturesUnordered::next` loses no result when dropped; the writes
            // stay in the set and are polled again next turn.
            Some((id, done)) = writes.next(), if !writes.is_empty() => ledger.finished(id, done),
            // Cancel-safe: a timer holds no state. Wakes when the oldest answer owed runs out
            // of time, so the loop's top gives up on it (and on nothing else early).
            () = tokio::time::sleep_until(answer_due.unwrap_or(deadline)), if answer_due.is_some() => {}
            // Cancel-safe: `read` into a local buffer either completes or reads nothing.
            // Paused while MAX_WRITES_IN_FLIGHT writes are pending; the bytes wait in the port.
            n = io.read(&mut chunk), if writes.len() < MAX_WRITES_IN_FLIGHT => {
                let n = n?;
                if n == 0 {
                    return Ok(());
                }
                buf.extend_from_slice(&chunk[..n]);
                let at = ReadTime {
                    reply_by: tokio::time::Instant::now() + timing.reply_within(),
                    arrived: Instant::now(),
                    received_at: OffsetDateTime::now_utc(),
                };
                let heard = take_frames(&mut decoder, &mut buf, link, ingest, at, &mut ledger, &mut writes);
                if heard {
                    deadline = tokio::time::Instant::now() + timing.heartbeat_window;
                    if !watch.up {
                        watch.up = true;
                        ingest.link_change(link, true, "receiver heard", watch.ever_up).await;
                        watch.ever_up = true;
                    }
                }
            }
        }
    }
}

/// Most frame writes one port keeps in flight before it stops reading. A stop-and-wait
/// receiver never comes near it; it bounds what a misbehaving line can queue in memory.
const MAX_WRITES_IN_FLIGHT: usize = 256;

/// One place for the log line and the metric of a frame left unanswered because it was not
/// durable within the receiver's ACK window.
fn late_frame(link: &str, arrived: Instant, timing: Timing) {
    metrics::counter!(m::SERIAL_LATE_FRAMES, "link" => link.to_owned()).increment(1);
    tracing::warn!(
        link,
        waited = ?arrived.elapsed(),
        ack_window = ?timing.ack_window,
        "frame not durable within the ack window, left unanswered so the receiver resends"
    );
}

/// One place for the log line and the metric of a retransmission recognised.
fn retransmission(link: &str, raw: &[u8]) {
    metrics::counter!(m::SERIAL_RETRANSMISSIONS, "link" => link.to_owned()).increment(1);
    tracing::info!(link, frame = %warden_protocol::printable(raw), "retransmitted frame recognised, not stored again");
}

/// Decodes every complete frame in `buf`, records the answer each one is owed in `ledger`
/// and starts the writes of those that are not copies of the previous frame. Returns
/// whether the receiver was heard (any decodable or well-framed input).
fn take_frames(
    decoder: &mut SurGardDecoder,
    buf: &mut Vec<u8>,
    link: &str,
    ingest: &Ingest,
    at: ReadTime,
    ledger: &mut Ledger,
    writes: &mut FuturesUnordered<BoxFuture<'static, (WriteId, Done)>>,
) -> bool {
    let mut heard = false;
    let mut start = 0;
    loop {
        let step = decoder.decode(&buf[start..]);
        let consumed = step.consumed();
        let raw = buf[start..start + consumed].to_vec();
        start += consumed;
        match step {
            Step::Incomplete => break,
            Step::Frame { frame, .. } => {
                heard = true;
                match ledger.frame(Some(&raw), at) {
                    Seen::Again => retransmission(link, &raw),
                    Seen::New(id) => {
                        let write = write_frame(ingest.clone(), link.to_owned(), raw, frame, at);
                        writes.push(Box::pin(write.map(move |d| (id, d))));
                    }
                }
            }
            Step::Invalid { error, .. } => {
                // A well-framed message of a protocol we do not decode will not improve by
                // being resent, so it is kept and ACKed; anything malformed is NAKed so the
                // receiver sends it again (line noise is the usual cause).
                // An oversized run is answered once, when its DC4 arrives (possibly in a later
                // `Skipped` chunk): the receiver only listens after the terminator.
                let terminated = raw.last() == Some(&DC4);
                let (code, on_ok) = match &error {
                    SurGardError::UnsupportedProtocol(_) => ("unsupported_protocol", ACK),
                    SurGardError::Oversized => ("oversized", NAK),
                    _ => ("bad_frame", NAK),
                };
                let oversized = matches!(error, SurGardError::Oversized);
                heard |= !oversized;
                // An oversized frame is not kept whole, so its bytes do not identify it.
                let seen = match (oversized, terminated) {
                    (false, _) => ledger.frame(Some(&raw), at),
                    (true, true) => ledger.frame(None, at),
                    (true, false) => Seen::New(ledger.unanswered()),
                };
                match seen {
                    Seen::Again => retransmission(link, &raw),
                    Seen::New(id) => {
                        let write = write_invalid(
                            ingest.clone(),
                            link.to_owned(),
                            raw,
                            code,
                            error,
                            on_ok,
                            at,
                        );
                        writes.push(Box::pin(write.map(move |d| (id, d))));
                    }
                }
            }
            Step::Skipped { terminated, .. } => {
                // The tail of an oversized frame reported earlier: answer it now that it ended.
                if terminated {
                    ledger.immediate(NAK, at);
                }
            }
        }
    }
    buf.drain(..start);
    heard
}

/// Writes a decoded frame; resolves after COMMIT with the answer it earns.
async fn write_frame(
    ingest: Ingest,
    link: String,
    raw: Vec<u8>,
    frame: SurGardFrame,
    at: ReadTime,
) -> Done {
    let account = match &frame {
        SurGardFrame::Heartbeat { .. } => None,
        SurGardFrame::ContactId { account, .. } => Some(account.to_string()),
        SurGardFrame::Sia { data, .. } => data.account.map(|a| a.to_string()),
    };
    let arrival = Arrival {
        source: Source::Serial,
        link_id: link.clone(),
        account,
        speaks: RECEIVER_PROTOCOLS,
        raw,
        decoded: Decoded::from_surgard(&frame),
        received_at: at.received_at,
        dedupe_key: None,
    };
    Done::of(&link, ingest.signal(arrival).await, ACK)
}

/// Keeps a frame that could not be decoded; resolves after COMMIT with the answer it earns.
async fn write_invalid(
    ingest: Ingest,
    link: String,
    raw: Vec<u8>,
    code: &'static str,
    error: SurGardError,
    on_ok: u8,
    at: ReadTime,
) -> Done {
    let res = if matches!(error, SurGardError::UnsupportedProtocol(_)) {
        // Well framed, so possibly an alarm in a format not decoded here: it reaches an
        // operator as an unreadable signal of the link.
        ingest
            .unreadable(
                Source::Serial,
                link.clone(),
                None,
                RECEIVER_PROTOCOLS,
                raw,
                code,
                error.to_string(),
                at.received_at,
                None,
            )
            .await
    } else {
        ingest
            .reject(
                Source::Serial,
                link.clone(),
                raw,
                code,
                error.to_string(),
                at.received_at,
            )
            .await
    };
    Done::of(&link, res, on_ok)
}

impl Done {
    fn of(link: &str, res: Result<Outcome, warden_store::WriteError>, on_ok: u8) -> Done {
        match res {
            Ok(outcome) => Done {
                reply: on_ok,
                outcome: Some(outcome),
                failed: false,
            },
            Err(e) => {
                // Not durable: NAK so the receiver keeps the frame and sends it again.
                tracing::error!(link, error = %e, "signal not durable, sending NAK");
                Done {
                    reply: NAK,
                    outcome: None,
                    failed: true,
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ack_window_and_margin_are_validated() {
        let mut cfg = config(&[("ack_window", "400ms"), ("ack_margin", "400ms")]);
        let errors = cfg.validate().join("; ");
        assert!(
            errors.contains("ack_window: must be at least 500ms"),
            "{errors}"
        );
        assert!(errors.contains("ack_margin"), "{errors}");
        cfg = config(&[]);
        assert_eq!(cfg.validate(), Vec::<String>::new());
        assert_eq!(
            (cfg.ack_window, cfg.ack_margin),
            (Duration::from_secs(4), Duration::from_millis(500))
        );
        assert_eq!(cfg.timing().reply_within(), Duration::from_millis(3_500));
    }

    fn config(extra: &[(&str, &str)]) -> SerialConfig {
        let mut v = serde_json::json!({"name": "rx1", "path": "/dev/null"});
        for (k, val) in extra {
            v[*k] = serde_json::Value::from(*val);
        }
        serde_json::from_value(v).unwrap_or_else(|e| panic!("config {extra:?}: {e}"))
    }
}
