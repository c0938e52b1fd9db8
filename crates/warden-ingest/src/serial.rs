//! Serial ingest from a Sur-Gard-compatible receiver's automation port.
//!
//! One task per configured port. Each DC4-terminated frame is decoded and written; the
//! receiver gets ACK (0x06) only after the commit, NAK (0x15) for a frame that could not be
//! decoded (kept in quarantine) or could not be written (it will resend). Heartbeats are
//! ACKed and supervised: silence longer than the configured window records "link lost",
//! and the next frame records "link restored". Port errors close the port and reopen it
//! with backoff; nothing here ends the process.

use std::time::{Duration, Instant};

use futures::stream::{FuturesOrdered, StreamExt};
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
                let end = serve(
                    port,
                    &link,
                    cfg.heartbeat_window,
                    &ingest,
                    &shutdown,
                    &mut watch,
                )
                .await;
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

/// Serves one open port (or any byte stream: tests pass a pty or an in-memory duplex)
/// until it fails, reaches end of file, or `shutdown` fires. `watch` carries supervision
/// state across reopenings.
pub async fn serve<IO>(
    mut io: IO,
    link: &str,
    heartbeat_window: Duration,
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
    let mut deadline = tokio::time::Instant::now() + heartbeat_window;
    loop {
        tokio::select! {
            // Cancel-safe: no bytes have been read when this branch loses the race.
            () = shutdown.cancelled() => return Ok(()),
            // Cancel-safe: `sleep_until` holds no state.
            () = tokio::time::sleep_until(deadline), if watch.up => {
                watch.up = false;
                let detail = format!("no heartbeat or signal for {}", humantime::format_duration(heartbeat_window));
                ingest.link_change(link, false, &detail, true).await;
            }
            // Cancel-safe: `read` into a local buffer either completes or reads nothing.
            n = io.read(&mut chunk) => {
                let n = n?;
                if n == 0 {
                    return Ok(());
                }
                let arrived = Instant::now();
                let received_at = OffsetDateTime::now_utc();
                buf.extend_from_slice(&chunk[..n]);
                let answers = handle_frames(&mut decoder, &mut buf, link, ingest, received_at).await;
                if answers.iter().any(|a| a.heard) {
                    deadline = tokio::time::Instant::now() + heartbeat_window;
                    if !watch.up {
                        watch.up = true;
                        ingest.link_change(link, true, "receiver heard", watch.ever_up).await;
                        watch.ever_up = true;
                    }
                }
                for a in answers {
                    let Some(byte) = a.reply else { continue };
                    io.write_all(&[byte]).await?;
                    io.flush().await?;
                    match (byte, a.outcome) {
                        (ACK, Some(outcome)) => ingest.acked(Source::Serial, outcome, arrived),
                        (NAK, _) => metrics::counter!(m::NAKS_SENT, "link" => link.to_owned()).increment(1),
                        _ => {}
                    }
                }
            }
        }
    }
}

/// The answer owed for one DC4-terminated chunk.
struct Answer {
    reply: Option<u8>,
    outcome: Option<Outcome>,
    /// True when the receiver was heard (any decodable or well-framed input).
    heard: bool,
}

/// Decodes every complete frame in `buf`, writes them concurrently (the writer batches
/// them into one transaction), and returns the answers in frame order.
async fn handle_frames(
    decoder: &mut SurGardDecoder,
    buf: &mut Vec<u8>,
    link: &str,
    ingest: &Ingest,
    received_at: OffsetDateTime,
) -> Vec<Answer> {
    let mut pending = FuturesOrdered::new();
    let mut start = 0;
    loop {
        let step = decoder.decode(&buf[start..]);
        let consumed = step.consumed();
        let raw = buf[start..start + consumed].to_vec();
        start += consumed;
        let link = link.to_owned();
        let ingest = ingest.clone();
        match step {
            Step::Incomplete => break,
            Step::Frame { frame, .. } => pending.push_back(Box::pin(async move {
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
                    received_at,
                    dedupe_key: None,
                };
                answer(&link, ingest.signal(arrival).await, ACK)
            })
                as futures::future::BoxFuture<'static, Answer>),
            Step::Invalid { error, .. } => {
                // A well-framed message of a protocol we do not decode will not improve by
                // being resent, so it is kept and ACKed; anything malformed is NAKed so the
                // receiver sends it again (line noise is the usual cause).
                // An oversized run is answered once, when its DC4 arrives (possibly in a later
                // `Skipped` chunk): the receiver only listens after the terminator.
                let terminated = raw.last() == Some(&DC4);
                let (code, reply) = match &error {
                    SurGardError::UnsupportedProtocol(_) => ("unsupported_protocol", Some(ACK)),
                    SurGardError::Oversized => ("oversized", terminated.then_some(NAK)),
                    _ => ("bad_frame", Some(NAK)),
                };
                let heard = !matches!(error, SurGardError::Oversized);
                pending.push_back(Box::pin(async move {
                    let res = if code == "unsupported_protocol" {
                        // Well framed, so possibly an alarm in a format not decoded here: it
                        // reaches an operator as an unreadable signal of the link.
                        ingest
                            .unreadable(
                                Source::Serial,
                                link.clone(),
                                None,
                                RECEIVER_PROTOCOLS,
                                raw,
                                code,
                                error.to_string(),
                                received_at,
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
                                received_at,
                            )
                            .await
                    };
                    let mut a = answer(&link, res, reply.unwrap_or(NAK));
                    a.reply = a.reply.filter(|_| reply.is_some());
                    a.heard = heard;
                    a
                }));
            }
            Step::Skipped { terminated, .. } => {
                // The tail of an oversized frame reported earlier: answer it now that it ended.
                if terminated {
                    pending.push_back(Box::pin(async move {
                        Answer {
                            reply: Some(NAK),
                            outcome: None,
                            heard: false,
                        }
                    }));
                }
            }
        }
    }
    buf.drain(..start);
    pending.collect().await
}

fn answer(link: &str, res: Result<Outcome, warden_store::WriteError>, on_success: u8) -> Answer {
    match res {
        Ok(outcome) => Answer {
            reply: Some(on_success),
            outcome: Some(outcome),
            heard: true,
        },
        Err(e) => {
            // Not durable: NAK so the receiver keeps the frame and sends it again.
            tracing::error!(link, error = %e, "signal not durable, sending NAK");
            Answer {
                reply: Some(NAK),
                outcome: None,
                heard: true,
            }
        }
    }
}
