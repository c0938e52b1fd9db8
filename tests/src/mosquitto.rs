//! Mosquitto (Debian's broker and its command-line publisher), one broker per test on a
//! free loopback port: anonymous and in memory, persistent across a restart, or the shipped
//! `deploy/mosquitto/` configuration with real logins.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::net::{free_port, wait_until};
use crate::wardend::workspace_root;

/// A Mosquitto broker on a free loopback port, killed on drop.
#[derive(Debug)]
pub struct Mosquitto {
    child: Child,
    pub port: u16,
    /// The broker's own temp dir: its configuration, password file and persistence.
    dir: tempfile::TempDir,
}

impl Mosquitto {
    /// The broker binary, if installed (`tests/deps.sh` installs it; Debian puts it in
    /// `/usr/sbin`, often not on `PATH`).
    pub fn binary() -> Option<PathBuf> {
        [
            "/usr/sbin/mosquitto",
            "/usr/bin/mosquitto",
            "/usr/local/sbin/mosquitto",
        ]
        .into_iter()
        .map(PathBuf::from)
        .find(|p| p.is_file())
        .or_else(|| {
            std::env::var_os("PATH").and_then(|paths| {
                std::env::split_paths(&paths)
                    .map(|d| d.join("mosquitto"))
                    .find(|p| p.is_file())
            })
        })
    }

    /// Starts a broker that allows anonymous clients on 127.0.0.1, keeps sessions in memory
    /// and lets each client have 100 messages in flight. `extra` is appended to the
    /// configuration.
    pub fn start(extra: &str) -> Self {
        Self::start_conf(&format!(
            "allow_anonymous true\npersistence false\nmax_inflight_messages 100\n{extra}"
        ))
    }

    /// Starts a broker whose configuration is the loopback listener on a free port followed
    /// by exactly `settings` (Mosquitto 2 accepts anonymous clients only when a listener
    /// says `allow_anonymous true`).
    pub fn start_conf(settings: &str) -> Self {
        let dir = tempfile::tempdir().expect("temp dir");
        let port = free_port();
        let conf = dir.path().join("mosquitto.conf");
        std::fs::write(&conf, format!("listener {port} 127.0.0.1\n{settings}\n"))
            .expect("write mosquitto.conf");
        let child = spawn_mosquitto(&conf, port);
        Self { child, port, dir }
    }

    /// Starts a broker from the shipped `deploy/mosquitto/warden.conf` and
    /// `deploy/mosquitto/acl.example`, with the file paths and the listener port rewritten
    /// for a temporary folder, `users` (name, password) in its password file and `extra`
    /// appended (e.g. `sys_interval 1`). Panics if the shipped file no longer has the lines
    /// this rewrites, so the test keeps testing what is shipped.
    pub fn start_shipped(users: &[(&str, &str)], extra: &str) -> Self {
        let dir = tempfile::tempdir().expect("temp dir");
        let port = free_port();
        let root = workspace_root().join("deploy/mosquitto");
        let shipped = std::fs::read_to_string(root.join("warden.conf")).expect("warden.conf");
        let passwd = dir.path().join("warden.passwd");
        let acl = dir.path().join("warden.acl");
        std::fs::copy(root.join("acl.example"), &acl).expect("copy acl");
        let mut conf = shipped.clone();
        for (from, to) in [
            ("/etc/mosquitto/warden.passwd", passwd.display().to_string()),
            ("/etc/mosquitto/warden.acl", acl.display().to_string()),
            ("/var/lib/mosquitto/", format!("{}/", dir.path().display())),
            (
                "listener 1883 127.0.0.1",
                format!("listener {port} 127.0.0.1"),
            ),
        ] {
            assert!(shipped.contains(from), "warden.conf no longer has {from:?}");
            conf = conf.replace(from, &to);
        }
        conf.push('\n');
        conf.push_str(extra);
        conf.push('\n');
        std::fs::write(&passwd, "").expect("password file");
        for (user, password) in users {
            let ok = Command::new("mosquitto_passwd")
                .arg("-b")
                .arg(&passwd)
                .args([user, password])
                .stdout(Stdio::null())
                .status()
                .expect("mosquitto_passwd");
            assert!(ok.success(), "mosquitto_passwd {user}");
        }
        let path = dir.path().join("mosquitto.conf");
        std::fs::write(&path, conf).expect("write mosquitto.conf");
        let child = spawn_mosquitto(&path, port);
        Self { child, port, dir }
    }

    /// Starts a broker like [`Mosquitto::start`] but with `persistence true` and its
    /// persistence file in the broker's temp dir, so an orderly restart keeps sessions and
    /// their queued messages. `extra` is appended (queue and in-flight limits).
    pub fn start_persistent(extra: &str) -> Self {
        use std::os::unix::fs::PermissionsExt as _;
        let dir = tempfile::tempdir().expect("temp dir");
        let port = free_port();
        // Started as root, Mosquitto drops to the `mosquitto` user before it writes its
        // persistence file: without write access it only logs "Error saving in-memory
        // database" at shutdown and comes back without any session.
        let store = dir.path().join("store");
        std::fs::create_dir(&store).expect("mkdir");
        std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755))
            .expect("chmod");
        std::fs::set_permissions(&store, std::fs::Permissions::from_mode(0o777)).expect("chmod");
        let conf = dir.path().join("mosquitto.conf");
        std::fs::write(
            &conf,
            format!(
                "listener {port} 127.0.0.1\nallow_anonymous true\npersistence true\npersistence_location {}/\n{extra}\n",
                store.display()
            ),
        )
        .expect("write mosquitto.conf");
        let child = spawn_mosquitto(&conf, port);
        Self { child, port, dir }
    }

    /// Stops the broker the orderly way (SIGTERM: a persistent broker writes its sessions to
    /// disk), waits `down`, and starts it again on the same port with the same configuration.
    /// Blocks the calling thread.
    pub fn restart(&mut self, down: Duration) {
        let _ = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status();
        let start = Instant::now();
        while start.elapsed() < Duration::from_secs(10) {
            if let Ok(Some(_)) = self.child.try_wait() {
                break;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
        std::thread::sleep(down);
        self.child = spawn_mosquitto(&self.dir.path().join("mosquitto.conf"), self.port);
    }

    /// Kills the broker (SIGKILL, as a crash would: nothing is saved), waits `down` without
    /// blocking the runtime, and starts it again on the same port with the same
    /// configuration; returns once it listens.
    pub async fn crash_and_restart(&mut self, down: Duration) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        tokio::time::sleep(down).await;
        self.child = spawn(&self.dir.path().join("mosquitto.conf"));
        for _ in 0..200 {
            if tokio::net::TcpStream::connect(("127.0.0.1", self.port))
                .await
                .is_ok()
            {
                return;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("mosquitto did not start listening again on {}", self.port);
    }
}

impl Drop for Mosquitto {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn spawn(conf: &Path) -> Child {
    let bin = Mosquitto::binary().expect("mosquitto is not installed: run tests/deps.sh");
    Command::new(bin)
        .arg("-c")
        .arg(conf)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start mosquitto")
}

/// Starts the broker on `conf` and waits (blocking) until it listens on `port`.
fn spawn_mosquitto(conf: &Path, port: u16) -> Child {
    let child = spawn(conf);
    let ok = wait_until(Duration::from_secs(10), || {
        std::net::TcpStream::connect(("127.0.0.1", port)).is_ok()
    });
    assert!(ok, "mosquitto did not start listening on {port}");
    child
}

/// What one `mosquitto_pub` sender achieved: for each payload given, whether the broker
/// acknowledged it (PUBACK) at least once.
#[derive(Debug, Clone)]
pub struct PubReport {
    pub topic: String,
    pub payloads: Vec<String>,
    pub acked: Vec<bool>,
    /// `mosquitto_pub` processes it took (more than one when the broker went away).
    pub processes: u32,
}

/// Publishes `payloads` (one line each, no newlines inside) on `topic` with Debian's
/// `mosquitto_pub -l -q 1`, an MQTT client independent of Warden's and of `firmware-sim`'s,
/// about `rate_per_s` lines a second. Acknowledgements are read from its debug output
/// (`-d`: each PUBLISH with its message id, each PUBACK by that id). When the process ends
/// with payloads still unacknowledged (`mosquitto_pub` gives up when the broker goes away),
/// a new one is started with those, as a unit keeps an alarm until it is acknowledged;
/// nothing is started after `deadline`. Runs on its own thread.
pub fn mosquitto_pub(
    port: u16,
    topic: &str,
    payloads: Vec<String>,
    rate_per_s: f64,
    deadline: Instant,
) -> std::thread::JoinHandle<PubReport> {
    let topic = topic.to_owned();
    std::thread::spawn(move || {
        let mut acked = vec![false; payloads.len()];
        let mut processes = 0;
        while Instant::now() < deadline && acked.iter().any(|a| !a) {
            processes += 1;
            let todo: Vec<usize> = (0..payloads.len()).filter(|&i| !acked[i]).collect();
            let lines: Vec<&str> = todo.iter().map(|&i| payloads[i].as_str()).collect();
            for i in publish_lines(port, &topic, &lines, rate_per_s, deadline) {
                acked[todo[i]] = true;
            }
            if acked.iter().any(|a| !a) {
                std::thread::sleep(Duration::from_millis(200));
            }
        }
        PubReport {
            topic,
            payloads,
            acked,
            processes,
        }
    })
}

/// One `mosquitto_pub` process over `lines`; returns the indices acknowledged.
fn publish_lines(
    port: u16,
    topic: &str,
    lines: &[&str],
    rate_per_s: f64,
    deadline: Instant,
) -> Vec<usize> {
    use std::io::{BufRead as _, Write as _};
    let mut child = Command::new("mosquitto_pub")
        .args(["-h", "127.0.0.1", "-p", &port.to_string(), "-t", topic])
        .args(["-q", "1", "-l", "-d", "-M", "100", "-k", "5"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("mosquitto_pub is not installed: run tests/deps.sh (mosquitto-clients)");
    let stdout = child.stdout.take().expect("stdout");
    let reader = std::thread::spawn(move || {
        // Message ids are given in publish order and reused after 65 535: pair each PUBACK
        // with the latest first transmission ("d0") of that id.
        let mut sent = 0usize;
        let mut by_mid: std::collections::HashMap<u32, usize> = std::collections::HashMap::new();
        let mut acked = Vec::new();
        for line in std::io::BufReader::new(stdout).lines() {
            let Ok(line) = line else { break };
            if let Some(rest) = line.split_once("sending PUBLISH (d0, ").map(|(_, r)| r) {
                if let Some(mid) = rest
                    .split(", ")
                    .find_map(|f| f.strip_prefix('m'))
                    .and_then(|m| m.parse().ok())
                {
                    by_mid.insert(mid, sent);
                }
                sent += 1;
            } else if let Some(rest) = line.split_once("received PUBACK (Mid: ").map(|(_, r)| r)
                && let Some(mid) = rest.split(',').next().and_then(|m| m.parse::<u32>().ok())
                && let Some(i) = by_mid.remove(&mid)
            {
                acked.push(i);
            }
        }
        acked
    });
    let mut stdin = child.stdin.take().expect("stdin");
    let started = Instant::now();
    for (n, line) in lines.iter().enumerate() {
        if Instant::now() >= deadline {
            break;
        }
        // Pace the lines: line n is due at n / rate seconds after the start.
        #[allow(clippy::cast_precision_loss)]
        let due = started + Duration::from_secs_f64(n as f64 / rate_per_s.max(1.0));
        if let Some(wait) = due.checked_duration_since(Instant::now()) {
            std::thread::sleep(wait);
        }
        if writeln!(stdin, "{line}").is_err() {
            break;
        }
    }
    // End of input: mosquitto_pub waits for the outstanding PUBACKs, then disconnects.
    drop(stdin);
    while Instant::now() < deadline {
        if let Ok(Some(_)) = child.try_wait() {
            break;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let _ = child.kill();
    let _ = child.wait();
    reader.join().unwrap_or_default()
}
