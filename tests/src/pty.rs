//! Serial lines for tests: a `socat` pseudo-terminal pair as the null-modem cable (which
//! can be pulled and plugged back), the receiver's end driven byte by byte, and a port that
//! survives the cable being pulled.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use crate::net::wait_until;

/// Two linked pseudo-terminals made by `socat`, as a null-modem cable: `warden` for the
/// daemon, `receiver` for the simulated receiver. Killed on drop.
#[derive(Debug)]
pub struct PtyPair {
    child: Child,
    pub warden: PathBuf,
    pub receiver: PathBuf,
    _dir: tempfile::TempDir,
}

impl PtyPair {
    pub fn start() -> Self {
        let dir = tempfile::tempdir().expect("temp dir");
        let warden = dir.path().join("warden");
        let receiver = dir.path().join("receiver");
        let child = Command::new("socat")
            .arg(format!("pty,raw,echo=0,link={}", warden.display()))
            .arg(format!("pty,raw,echo=0,link={}", receiver.display()))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("socat is not installed: run tests/deps.sh");
        assert!(
            wait_until(Duration::from_secs(5), || warden.exists()
                && receiver.exists()),
            "socat made no ptys"
        );
        Self {
            child,
            warden,
            receiver,
            _dir: dir,
        }
    }
}

impl Drop for PtyPair {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The receiver's end of a [`PtyPair`] driven byte by byte, for tests that must send what
/// no well-behaved receiver would (line noise, oversized runs, bytes ≥ 0x80) and see the
/// daemon's answer to each. Replies are read by a thread into a channel, so every wait has
/// a deadline.
#[derive(Debug)]
pub struct RawLine {
    port: std::fs::File,
    replies: std::sync::mpsc::Receiver<u8>,
}

impl RawLine {
    /// Opens the receiver end of `pty` (which `socat` already set raw, without echo).
    pub fn open(pty: &PtyPair) -> Self {
        use std::io::Read as _;
        let port = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .open(&pty.receiver)
            .expect("open the receiver end of the pty");
        let mut reader = port.try_clone().expect("clone the pty handle");
        let (tx, replies) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let mut buf = [0u8; 64];
            // Ends when the pty goes away (read error) or the test drops the receiver.
            while let Ok(n) = reader.read(&mut buf) {
                if n == 0 || buf[..n].iter().any(|b| tx.send(*b).is_err()) {
                    break;
                }
            }
        });
        Self { port, replies }
    }

    /// Writes `bytes` to the line as one burst.
    pub fn send(&mut self, bytes: &[u8]) {
        use std::io::Write as _;
        self.port.write_all(bytes).expect("write to the pty");
        self.port.flush().expect("flush the pty");
    }

    /// The next byte the daemon answers, or `None` when nothing comes within `timeout`.
    pub fn reply(&self, timeout: Duration) -> Option<u8> {
        self.replies.recv_timeout(timeout).ok()
    }

    /// Discards answers already received (left over from an earlier exchange).
    pub fn discard_replies(&self) {
        while self.replies.try_recv().is_ok() {}
    }
}

impl PtyPair {
    /// Pulls the cable: kills `socat` (SIGKILL, so nothing is flushed) and removes the link
    /// paths, so neither end can reopen a stale pty while it is away.
    pub fn unplug(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_file(&self.warden);
        let _ = std::fs::remove_file(&self.receiver);
    }

    /// Plugs a new cable in: a new `socat` pair on the same link paths.
    pub fn replug(&mut self) {
        let _ = std::fs::remove_file(&self.warden);
        let _ = std::fs::remove_file(&self.receiver);
        self.child = Command::new("socat")
            .arg(format!("pty,raw,echo=0,link={}", self.warden.display()))
            .arg(format!("pty,raw,echo=0,link={}", self.receiver.display()))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("socat is not installed: run tests/deps.sh");
        assert!(
            wait_until(Duration::from_secs(5), || self.warden.exists()
                && self.receiver.exists()),
            "socat made no ptys"
        );
    }
}

/// The receiver's end of a serial cable that can be pulled out and plugged back in, as
/// [`PtyPair::unplug`] and [`PtyPair::replug`] do. While the cable is out, reads wait and
/// writes vanish (as on a real unplugged RS-232 line); the port is reopened at the same path
/// every 50 ms until it is back. The receiver emulator keeps its buffer meanwhile: the frame
/// it was sending times out and is resent once the computer answers again.
pub struct ReplugPort {
    path: PathBuf,
    settings: warden_sim::surgard::SerialSettings,
    port: Option<std::pin::Pin<Box<dyn PortIo>>>,
    retry: std::pin::Pin<Box<tokio::time::Sleep>>,
}

trait PortIo: tokio::io::AsyncRead + tokio::io::AsyncWrite + Send {}
impl<T: tokio::io::AsyncRead + tokio::io::AsyncWrite + Send> PortIo for T {}

impl std::fmt::Debug for ReplugPort {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ReplugPort")
            .field("path", &self.path)
            .field("open", &self.port.is_some())
            .finish_non_exhaustive()
    }
}

impl ReplugPort {
    /// Opens `path` now (it must exist).
    pub fn open(path: &std::path::Path) -> Self {
        let settings = warden_sim::surgard::SerialSettings::default();
        let port =
            warden_sim::surgard::open_serial(&path.to_string_lossy(), &settings).expect("open pty");
        Self {
            path: path.to_owned(),
            settings,
            port: Some(Box::pin(port)),
            retry: Box::pin(tokio::time::sleep(Duration::ZERO)),
        }
    }

    fn lost(&mut self) {
        self.port = None;
        self.retry
            .as_mut()
            .reset(tokio::time::Instant::now() + Duration::from_millis(50));
    }

    /// Reopens the port if it is away and the retry time has come; registers the waker
    /// with the retry timer otherwise.
    fn poll_reopen(&mut self, cx: &mut std::task::Context<'_>) -> bool {
        use std::future::Future as _;
        while self.port.is_none() {
            if self.retry.as_mut().poll(cx).is_pending() {
                return false;
            }
            match warden_sim::surgard::open_serial(&self.path.to_string_lossy(), &self.settings) {
                Ok(p) => self.port = Some(Box::pin(p)),
                Err(_) => self
                    .retry
                    .as_mut()
                    .reset(tokio::time::Instant::now() + Duration::from_millis(50)),
            }
        }
        true
    }
}

impl tokio::io::AsyncRead for ReplugPort {
    fn poll_read(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &mut tokio::io::ReadBuf<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        use std::task::Poll;
        let this = self.get_mut();
        loop {
            if !this.poll_reopen(cx) {
                return Poll::Pending;
            }
            let Some(port) = this.port.as_mut() else {
                continue;
            };
            let before = buf.filled().len();
            match port.as_mut().poll_read(cx, buf) {
                Poll::Ready(Ok(())) if buf.filled().len() > before => return Poll::Ready(Ok(())),
                // End of file or an error (EIO when the other end went away): the cable is out.
                Poll::Ready(_) => this.lost(),
                Poll::Pending => return Poll::Pending,
            }
        }
    }
}

impl tokio::io::AsyncWrite for ReplugPort {
    fn poll_write(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        data: &[u8],
    ) -> std::task::Poll<std::io::Result<usize>> {
        use std::task::Poll;
        let this = self.get_mut();
        let Some(port) = this.port.as_mut() else {
            // Nobody on the line: the bytes are lost, as on an unplugged cable.
            return Poll::Ready(Ok(data.len()));
        };
        match port.as_mut().poll_write(cx, data) {
            Poll::Ready(Err(_)) => {
                this.lost();
                Poll::Ready(Ok(data.len()))
            }
            other => other,
        }
    }

    fn poll_flush(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        use std::task::Poll;
        let this = self.get_mut();
        let Some(port) = this.port.as_mut() else {
            return Poll::Ready(Ok(()));
        };
        match port.as_mut().poll_flush(cx) {
            Poll::Ready(Err(_)) => {
                this.lost();
                Poll::Ready(Ok(()))
            }
            other => other,
        }
    }

    fn poll_shutdown(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        match self.get_mut().port.as_mut() {
            Some(port) => port.as_mut().poll_shutdown(cx),
            None => std::task::Poll::Ready(Ok(())),
        }
    }
}
