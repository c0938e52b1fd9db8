//! Test peers: the monitoring computer at the other end of a Sur-Gard link, an MQTT
//! subscriber and a flaky-network proxy. Brokers, ports and ptys come from the test kit
//! (`warden-tests`).

#![allow(
    dead_code,
    clippy::missing_panics_doc,
    clippy::unwrap_used,
    clippy::expect_used
)]

use std::time::Duration;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use warden_protocol::surgard::{SurGardDecoder, SurGardFrame};
use warden_protocol::{DC4, Step};
use warden_tests::{Mosquitto, free_port};

/// One DC4-terminated chunk the computer received.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Got {
    Frame(SurGardFrame, Vec<u8>),
    Bad(Vec<u8>),
}

impl Got {
    pub fn bytes(&self) -> &[u8] {
        match self {
            Got::Frame(_, b) | Got::Bad(b) => b,
        }
    }
}

/// The computer's end of the serial link, decoding with Warden's own decoder.
pub struct Computer<T> {
    io: T,
    buf: Vec<u8>,
    decoder: SurGardDecoder,
}

impl<T: AsyncRead + AsyncWrite + Unpin> Computer<T> {
    pub fn new(io: T) -> Self {
        Self {
            io,
            buf: Vec::new(),
            decoder: SurGardDecoder::default(),
        }
    }

    /// The next DC4-terminated chunk: a frame, or bad bytes the computer would NAK. Cancel-safe.
    pub async fn next(&mut self) -> Got {
        loop {
            match self.decoder.decode(&self.buf) {
                Step::Incomplete => {
                    let mut chunk = [0u8; 512];
                    let n = self
                        .io
                        .read(&mut chunk)
                        .await
                        .expect("read from the receiver");
                    assert!(n > 0, "the receiver closed the link");
                    self.buf.extend_from_slice(&chunk[..n]);
                }
                Step::Frame { frame, consumed } => {
                    let raw = self.buf.drain(..consumed).collect();
                    return Got::Frame(frame, raw);
                }
                Step::Invalid { consumed, .. } => {
                    let raw: Vec<u8> = self.buf.drain(..consumed).collect();
                    if raw.last() == Some(&DC4) {
                        return Got::Bad(raw);
                    }
                }
                Step::Skipped {
                    consumed,
                    terminated,
                } => {
                    let raw: Vec<u8> = self.buf.drain(..consumed).collect();
                    if terminated {
                        return Got::Bad(raw);
                    }
                }
            }
        }
    }

    pub async fn reply(&mut self, byte: u8) {
        self.io
            .write_all(&[byte])
            .await
            .expect("write to the receiver");
        self.io.flush().await.expect("flush");
    }
}

/// A broker for these tests (the test kit's [`Mosquitto`]): any number of messages in flight
/// per client and a deep queue, so a fleet's burst is never throttled or dropped by the
/// broker.
pub fn broker() -> Mosquitto {
    Mosquitto::start_conf(
        "allow_anonymous true\npersistence false\nmax_inflight_messages 0\nmax_queued_messages 100000",
    )
}

/// Topic and payload of each message a subscriber received, in arrival order.
type Received = std::sync::Arc<std::sync::Mutex<Vec<(String, Vec<u8>)>>>;

/// An MQTT subscriber recording every message on a filter, as Warden's ingest would see it.
pub struct Subscriber {
    messages: Received,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Subscriber {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl Subscriber {
    /// Connects and subscribes with QoS 1; returns once the SUBACK has arrived.
    pub async fn start(port: u16, filter: &str) -> Self {
        use rumqttc::{AsyncClient, Event, MqttOptions, Packet, QoS};
        let mut options = MqttOptions::new(format!("test-sub-{}", free_port()), "127.0.0.1", port);
        options.set_keep_alive(Duration::from_secs(5));
        let (client, mut eventloop) = AsyncClient::new(options, 16);
        client
            .subscribe(filter, QoS::AtLeastOnce)
            .await
            .expect("subscribe");
        let messages = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let (subscribed, ready) = tokio::sync::oneshot::channel();
        let sink = std::sync::Arc::clone(&messages);
        let task = tokio::spawn(async move {
            let _client = client;
            let mut subscribed = Some(subscribed);
            loop {
                match eventloop.poll().await {
                    Ok(Event::Incoming(Packet::SubAck(_))) => {
                        if let Some(tx) = subscribed.take() {
                            let _ = tx.send(());
                        }
                    }
                    Ok(Event::Incoming(Packet::Publish(p))) => {
                        sink.lock()
                            .unwrap()
                            .push((p.topic.clone(), p.payload.to_vec()));
                    }
                    Ok(_) => {}
                    Err(_) => tokio::time::sleep(Duration::from_millis(100)).await,
                }
            }
        });
        tokio::time::timeout(Duration::from_secs(10), ready)
            .await
            .expect("suback in time")
            .expect("subscriber running");
        Self { messages, task }
    }

    pub fn messages(&self) -> Vec<(String, Vec<u8>)> {
        self.messages.lock().unwrap().clone()
    }

    /// Waits until `done` holds for the messages so far, or panics after `limit`.
    pub async fn wait_until(
        &self,
        limit: Duration,
        done: impl Fn(&[(String, Vec<u8>)]) -> bool,
    ) -> Vec<(String, Vec<u8>)> {
        let deadline = tokio::time::Instant::now() + limit;
        loop {
            let now = self.messages();
            if done(&now) {
                return now;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "subscriber condition not met in {limit:?}; {} messages",
                now.len()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

/// A TCP proxy in front of the broker that can hold back the broker's replies (PUBACKs stop
/// arriving, so publishes pile up in flight) and cut every connection, as a flaky network
/// would.
pub struct Proxy {
    pub port: u16,
    hold: std::sync::Arc<std::sync::atomic::AtomicBool>,
    cut: tokio::sync::watch::Sender<u64>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl Proxy {
    pub async fn start(upstream: u16) -> Self {
        use std::sync::atomic::Ordering;
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let hold = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let (cut, _) = tokio::sync::watch::channel(0u64);
        let cuts = cut.clone();
        let hold_flag = std::sync::Arc::clone(&hold);
        let task = tokio::spawn(async move {
            loop {
                let Ok((client, _)) = listener.accept().await else {
                    return;
                };
                let Ok(server) = tokio::net::TcpStream::connect(("127.0.0.1", upstream)).await
                else {
                    continue;
                };
                let mut cut_rx = cuts.subscribe();
                let paused = std::sync::Arc::clone(&hold_flag);
                tokio::spawn(async move {
                    let (mut cr, mut cw) = client.into_split();
                    let (mut sr, mut sw) = server.into_split();
                    let up = tokio::io::copy(&mut cr, &mut sw);
                    let down = async {
                        let mut buf = [0u8; 4096];
                        loop {
                            let n = sr.read(&mut buf).await?;
                            if n == 0 {
                                return Ok::<(), std::io::Error>(());
                            }
                            while paused.load(Ordering::SeqCst) {
                                tokio::time::sleep(Duration::from_millis(10)).await;
                            }
                            cw.write_all(&buf[..n]).await?;
                        }
                    };
                    tokio::select! {
                        _ = up => {}
                        _ = down => {}
                        _ = cut_rx.changed() => {}
                    }
                });
            }
        });
        Self {
            port,
            hold,
            cut,
            task,
        }
    }

    /// Stops (true) or resumes (false) passing the broker's bytes to the clients.
    pub fn hold_replies(&self, hold: bool) {
        self.hold.store(hold, std::sync::atomic::Ordering::SeqCst);
    }

    /// Drops every open connection.
    pub fn cut(&self) {
        self.cut.send_modify(|g| *g += 1);
    }
}
