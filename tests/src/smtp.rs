//! An SMTP sink: Debian's aiosmtpd (`python3-aiosmtpd`, installed by `tests/deps.sh`), run
//! with the system Python, printing every message it receives. Killed on drop.

use std::io::Read as _;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::net::{free_port, wait_until};

/// A running sink on `127.0.0.1:port`.
#[derive(Debug)]
pub struct SmtpSink {
    child: Child,
    /// Its port.
    pub port: u16,
    out: Arc<Mutex<String>>,
}

impl SmtpSink {
    /// Starts a sink on a free port and waits until it accepts connections.
    pub fn start() -> SmtpSink {
        let port = free_port();
        let mut child = Command::new("/usr/bin/python3")
            .args([
                "-u",
                "-m",
                "aiosmtpd",
                "-n",
                "-l",
                &format!("127.0.0.1:{port}"),
            ])
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("aiosmtpd (Debian python3-aiosmtpd; tests/deps.sh installs it)");
        let out = Arc::new(Mutex::new(String::new()));
        let mut stdout = child.stdout.take().expect("stdout");
        let sink = out.clone();
        std::thread::spawn(move || {
            let mut buf = [0u8; 4096];
            while let Ok(n) = stdout.read(&mut buf) {
                if n == 0 {
                    break;
                }
                sink.lock()
                    .expect("out")
                    .push_str(&String::from_utf8_lossy(&buf[..n]));
            }
        });
        assert!(
            wait_until(Duration::from_secs(10), || {
                std::net::TcpStream::connect(("127.0.0.1", port)).is_ok()
            }),
            "aiosmtpd did not listen on {port}"
        );
        SmtpSink { child, port, out }
    }

    /// Everything it printed so far: each message between `---------- MESSAGE FOLLOWS
    /// ----------` and `------------ END MESSAGE ------------`.
    pub fn output(&self) -> String {
        self.out.lock().expect("out").clone()
    }

    /// Waits until `count` messages were received; false after `timeout`.
    pub fn wait_for_messages(&self, count: usize, timeout: Duration) -> bool {
        wait_until(timeout, || {
            self.output().matches("END MESSAGE").count() >= count
        })
    }
}

impl Drop for SmtpSink {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
