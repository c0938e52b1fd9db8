//! Test peers: the monitoring computer at the other end of a Sur-Gard link, and a Mosquitto
//! broker on a free port.

#![allow(
    dead_code,
    clippy::missing_panics_doc,
    clippy::unwrap_used,
    clippy::expect_used
)]

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use warden_protocol::surgard::{SurGardDecoder, SurGardFrame};
use warden_protocol::{DC4, Step};

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

/// A Mosquitto broker for one test, killed on drop.
pub struct Mosquitto {
    pub port: u16,
    child: Child,
    binary: PathBuf,
    conf: PathBuf,
    _dir: tempdir::Dir,
}

impl Drop for Mosquitto {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The mosquitto binary, if installed (Debian puts it in /usr/sbin, often not on PATH).
pub fn mosquitto_binary() -> Option<PathBuf> {
    let candidates = [
        PathBuf::from("/usr/sbin/mosquitto"),
        PathBuf::from("/usr/local/sbin/mosquitto"),
    ];
    candidates.into_iter().find(|p| p.exists()).or_else(|| {
        std::env::var_os("PATH").and_then(|paths| {
            std::env::split_paths(&paths)
                .map(|d| d.join("mosquitto"))
                .find(|p| p.exists())
        })
    })
}

pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .expect("bind a free port")
        .local_addr()
        .expect("local address")
        .port()
}

impl Mosquitto {
    /// Starts a broker on a free localhost port, or `None` (after saying why) when mosquitto
    /// is not installed.
    pub async fn start() -> Option<Self> {
        let Some(binary) = mosquitto_binary() else {
            eprintln!("skipping: mosquitto is not installed (apt-get install mosquitto)");
            return None;
        };
        let dir = tempdir::Dir::new("warden-sim-mosquitto");
        let port = free_port();
        let conf = dir.path().join("mosquitto.conf");
        // Mosquitto 2.0 only accepts anonymous clients on an explicitly configured listener.
        std::fs::write(
            &conf,
            format!(
                "listener {port} 127.0.0.1\nallow_anonymous true\npersistence false\nmax_inflight_messages 0\nmax_queued_messages 100000\n"
            ),
        )
        .expect("write mosquitto.conf");
        let child = spawn(&binary, &conf);
        let broker = Self {
            port,
            child,
            binary,
            conf,
            _dir: dir,
        };
        broker.wait_listening().await;
        Some(broker)
    }

    /// Kills the broker (as a crash would) and starts it again on the same port.
    pub async fn restart_after(&mut self, down_for: Duration) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        tokio::time::sleep(down_for).await;
        self.child = spawn(&self.binary, &self.conf);
        self.wait_listening().await;
    }

    async fn wait_listening(&self) {
        for _ in 0..100 {
            if tokio::net::TcpStream::connect(("127.0.0.1", self.port))
                .await
                .is_ok()
            {
                return;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("mosquitto did not start listening on port {}", self.port);
    }
}

fn spawn(binary: &Path, conf: &Path) -> Child {
    Command::new(binary)
        .arg("-c")
        .arg(conf)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start mosquitto")
}

/// A throwaway directory removed on drop (the workspace carries no tempfile crate for us).
pub mod tempdir {
    use super::{Path, PathBuf};

    pub struct Dir(PathBuf);

    impl Dir {
        pub fn new(prefix: &str) -> Self {
            let unique = format!(
                "{prefix}-{}-{}",
                std::process::id(),
                std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .map(|d| d.as_nanos())
                    .unwrap_or_default()
            );
            let path = std::env::temp_dir().join(unique);
            std::fs::create_dir_all(&path).expect("create temp dir");
            Self(path)
        }

        pub fn path(&self) -> &Path {
            &self.0
        }
    }

    impl Drop for Dir {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }
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
