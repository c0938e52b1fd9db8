//! Test support shared by Warden's integration and end-to-end tests: real external parts
//! started per test (Mosquitto on a free port), free ports, and waiting helpers.

use std::net::TcpListener;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A port free on 127.0.0.1 right now.
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("free port")
}

/// Polls `f` until it returns true or `timeout` passes.
pub fn wait_until(timeout: Duration, mut f: impl FnMut() -> bool) -> bool {
    let start = Instant::now();
    while start.elapsed() < timeout {
        if f() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    f()
}

/// A Mosquitto broker (Debian's `mosquitto`) on a free loopback port, killed on drop.
#[derive(Debug)]
pub struct Mosquitto {
    child: Child,
    pub port: u16,
    _dir: tempfile::TempDir,
}

impl Mosquitto {
    /// The broker binary, if installed (`tests/deps.sh` installs it).
    pub fn binary() -> Option<PathBuf> {
        ["/usr/sbin/mosquitto", "/usr/bin/mosquitto"]
            .into_iter()
            .map(PathBuf::from)
            .find(|p| p.is_file())
    }

    /// Starts a broker that allows anonymous clients on 127.0.0.1 and keeps sessions in
    /// memory. `extra` is appended to the configuration.
    pub fn start(extra: &str) -> Self {
        let bin = Self::binary().expect("mosquitto is not installed: run tests/deps.sh");
        let dir = tempfile::tempdir().expect("temp dir");
        let port = free_port();
        let conf = dir.path().join("mosquitto.conf");
        std::fs::write(
            &conf,
            format!("listener {port} 127.0.0.1\nallow_anonymous true\npersistence false\nmax_inflight_messages 100\n{extra}\n"),
        )
        .expect("write mosquitto.conf");
        let child = Command::new(bin)
            .arg("-c")
            .arg(&conf)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start mosquitto");
        let ok = wait_until(Duration::from_secs(5), || {
            std::net::TcpStream::connect(("127.0.0.1", port)).is_ok()
        });
        assert!(ok, "mosquitto did not start listening on {port}");
        Self {
            child,
            port,
            _dir: dir,
        }
    }
}

impl Mosquitto {
    /// Starts a broker from the shipped `deploy/mosquitto/warden.conf` and
    /// `deploy/mosquitto/acl.example`, with the file paths and the listener port rewritten
    /// for a temporary folder, `users` (name, password) in its password file and `extra`
    /// appended (e.g. `sys_interval 1`). Panics if the shipped file no longer has the lines
    /// this rewrites, so the test keeps testing what is shipped.
    pub fn start_shipped(users: &[(&str, &str)], extra: &str) -> Self {
        let bin = Self::binary().expect("mosquitto is not installed: run tests/deps.sh");
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
        let child = Command::new(bin)
            .arg("-c")
            .arg(&path)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start mosquitto");
        let ok = wait_until(Duration::from_secs(5), || {
            std::net::TcpStream::connect(("127.0.0.1", port)).is_ok()
        });
        assert!(
            ok,
            "mosquitto (shipped config) did not start listening on {port}"
        );
        Self {
            child,
            port,
            _dir: dir,
        }
    }
}

impl Drop for Mosquitto {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The workspace root (this crate lives in `tests/`).
pub fn workspace_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .map(PathBuf::from)
        .expect("workspace root")
}

/// The `wardend` binary to test: `$WARDEN_BIN`, else `target/<profile>/wardend` (release
/// when built, else debug). `cargo test --workspace` builds the debug one.
pub fn wardend_binary() -> PathBuf {
    if let Ok(p) = std::env::var("WARDEN_BIN") {
        return PathBuf::from(p);
    }
    let target = std::env::var("CARGO_TARGET_DIR")
        .map_or_else(|_| workspace_root().join("target"), PathBuf::from);
    let profile = if std::env::var("WARDEN_PROFILE").as_deref() == Ok("release") {
        "release"
    } else {
        "debug"
    };
    let bin = target.join(profile).join("wardend");
    assert!(
        bin.is_file(),
        "{} not built: run `cargo build --bin wardend` (or set WARDEN_BIN)",
        bin.display()
    );
    bin
}

/// A command for the `wardend` binary with the test harness's own `WARDEN_*` variables
/// (`WARDEN_BIN`, `WARDEN_PROFILE`, benchmark knobs) removed: the daemon reads every
/// `WARDEN_*` variable as configuration and rightly refuses unknown keys.
pub fn daemon_command() -> Command {
    let mut c = Command::new(wardend_binary());
    for (key, _) in std::env::vars_os() {
        if key.to_string_lossy().starts_with("WARDEN_") {
            c.env_remove(key);
        }
    }
    c
}

/// The server URL for throwaway databases: `$DATABASE_URL` (set by `tests/run.sh`).
pub fn server_url() -> String {
    std::env::var("DATABASE_URL")
        .expect("DATABASE_URL must point at a Postgres server (tests/pg.sh start prints one)")
}

/// A fresh, empty database on the test server, dropped on drop.
#[derive(Debug)]
pub struct TestDb {
    pub url: String,
    name: String,
    server: String,
}

impl TestDb {
    pub fn create(prefix: &str) -> Self {
        let server = server_url();
        let name = format!("{prefix}_{}_{}", std::process::id(), free_port());
        psql(&server, &format!("CREATE DATABASE {name}"));
        let base = server.rsplit_once('/').map_or(server.as_str(), |(b, _)| b);
        Self {
            url: format!("{base}/{name}"),
            name,
            server,
        }
    }

    /// Runs one SQL statement and returns its unaligned, tuples-only output, trimmed.
    pub fn query(&self, sql: &str) -> String {
        psql(&self.url, sql)
    }

    /// A single integer result.
    pub fn count(&self, sql: &str) -> i64 {
        let out = self.query(sql);
        out.parse()
            .unwrap_or_else(|_| panic!("{sql}: not a number: {out:?}"))
    }
}

impl Drop for TestDb {
    fn drop(&mut self) {
        let _ = Command::new("psql")
            .args([
                self.server.as_str(),
                "-qtAc",
                &format!("DROP DATABASE IF EXISTS {} WITH (FORCE)", self.name),
            ])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
    }
}

fn psql(url: &str, sql: &str) -> String {
    let out = Command::new("psql")
        .args([url, "-v", "ON_ERROR_STOP=1", "-qtAc", sql])
        .output()
        .expect("run psql");
    assert!(
        out.status.success(),
        "psql {sql}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_owned()
}

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

/// A running `wardend run` with a generated configuration, killed on drop.
#[derive(Debug)]
pub struct Wardend {
    child: Option<Child>,
    pub admin: std::net::SocketAddr,
    /// The operator console (web UI + API), on a free port of its own.
    pub console: std::net::SocketAddr,
    config: PathBuf,
    log: PathBuf,
    _dir: tempfile::TempDir,
}

impl Wardend {
    /// Writes `config` (TOML; `admin.listen` and `console.listen` are added) and starts
    /// `wardend run`, waiting until `/healthz` answers.
    pub fn start(config: &str) -> Self {
        let dir = tempfile::tempdir().expect("temp dir");
        let admin = std::net::SocketAddr::from(([127, 0, 0, 1], free_port()));
        let console = std::net::SocketAddr::from(([127, 0, 0, 1], free_port()));
        let path = dir.path().join("wardend.toml");
        std::fs::write(
            &path,
            format!("{config}\n[admin]\nlisten = \"{admin}\"\n[console]\nlisten = \"{console}\"\n"),
        )
        .expect("write config");
        let log = dir.path().join("wardend.log");
        let mut w = Self {
            child: None,
            admin,
            console,
            config: path,
            log,
            _dir: dir,
        };
        w.spawn();
        w
    }

    fn spawn(&mut self) {
        let log = std::fs::File::create(&self.log).expect("log file");
        let child = daemon_command()
            .args(["--config"])
            .arg(&self.config)
            .arg("run")
            .env("RUST_LOG", "info")
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("start wardend");
        self.child = Some(child);
        let admin = self.admin;
        let up = wait_until(Duration::from_secs(20), || {
            http_get(admin, "/healthz").is_some_and(|(s, _)| s == 200)
        });
        assert!(
            up,
            "wardend did not become healthy; log:\n{}",
            self.log_text()
        );
    }

    /// Restarts the process with the same configuration (after `kill9` or `terminate`).
    pub fn restart(&mut self) {
        self.spawn();
    }

    /// Runs another `wardend` subcommand with the same configuration, feeding `input` to
    /// its standard input (e.g. `user add`, which reads the password there).
    pub fn cli_with_stdin(&self, args: &[&str], input: &str) -> std::process::Output {
        use std::io::Write as _;
        let mut child = daemon_command()
            .arg("--config")
            .arg(&self.config)
            .args(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start wardend");
        child
            .stdin
            .take()
            .expect("stdin")
            .write_all(input.as_bytes())
            .expect("write stdin");
        child.wait_with_output().expect("wardend output")
    }

    /// Runs another `wardend` subcommand with the same configuration (e.g. `device add`).
    pub fn cli(&self, args: &[&str]) -> std::process::Output {
        daemon_command()
            .arg("--config")
            .arg(&self.config)
            .args(args)
            .output()
            .expect("run wardend")
    }

    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// The value of one `/metrics` sample (sum over label sets matching `selector`, which
    /// is the metric name optionally followed by `{label="value",…}` text to match).
    pub fn metric(&self, selector: &str) -> f64 {
        let (_, body) = http_get(self.admin, "/metrics").unwrap_or_default();
        body.lines()
            .filter(|l| !l.starts_with('#') && l.starts_with(selector))
            .filter_map(|l| l.rsplit_once(' ').and_then(|(_, v)| v.parse::<f64>().ok()))
            .sum()
    }

    /// The daemon's process id while it runs.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// SIGKILL: the crash case.
    pub fn kill9(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// SIGTERM and wait: the orderly case. Returns the exit status code.
    pub fn terminate(&mut self) -> Option<i32> {
        let mut c = self.child.take()?;
        let _ = Command::new("kill")
            .args(["-TERM", &c.id().to_string()])
            .status();
        let start = Instant::now();
        while start.elapsed() < Duration::from_secs(20) {
            if let Ok(Some(status)) = c.try_wait() {
                return status.code();
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = c.kill();
        let _ = c.wait();
        None
    }
}

impl Drop for Wardend {
    fn drop(&mut self) {
        self.kill9();
    }
}

/// A minimal HTTP/1.0 GET on loopback: `(status, body)`, or `None` when nothing answers.
pub fn http_get(addr: std::net::SocketAddr, path: &str) -> Option<(u16, String)> {
    use std::io::{Read as _, Write as _};
    let mut s = std::net::TcpStream::connect_timeout(&addr, Duration::from_millis(500)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    write!(s, "GET {path} HTTP/1.0\r\nHost: {addr}\r\n\r\n").ok()?;
    let mut text = String::new();
    s.read_to_string(&mut text).ok()?;
    let status = text.split_whitespace().nth(1)?.parse().ok()?;
    let body = text
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_owned())
        .unwrap_or_default();
    Some((status, body))
}

/// A simulator running in a task until [`Running::stop`].
#[derive(Debug)]
pub struct Running<T> {
    stop: tokio::sync::oneshot::Sender<()>,
    task: tokio::task::JoinHandle<T>,
}

impl<T> Running<T> {
    /// Asks the simulator to stop (it drains what it has in flight) and returns its report.
    pub async fn stop(self) -> T {
        let _ = self.stop.send(());
        self.task.await.expect("simulator task")
    }
}

/// Starts an MQTT fleet and waits until every connection is up.
pub async fn start_fleet(
    fleet: warden_sim::fleet::Fleet,
) -> (
    warden_sim::fleet::FleetHandle,
    Running<warden_sim::fleet::FleetReport>,
) {
    let handle = fleet.handle();
    let (stop, rx) = tokio::sync::oneshot::channel::<()>();
    let task = tokio::spawn(fleet.run(async move {
        let _ = rx.await;
    }));
    handle.wait_connected().await;
    (handle, Running { stop, task })
}

/// Starts a simulated Sur-Gard receiver on the receiver end of a [`PtyPair`], with short
/// ACK and retry timeouts so tests recover quickly from a NAK or a restart.
pub fn start_receiver(
    pty: &PtyPair,
) -> (
    warden_sim::surgard::ReceiverHandle,
    Running<Result<warden_sim::surgard::ReceiverReport, warden_sim::surgard::ReceiverError>>,
) {
    use warden_sim::surgard::{ReceiverConfig, SerialSettings, SurGardReceiver, open_serial};
    let port =
        open_serial(&pty.receiver.to_string_lossy(), &SerialSettings::default()).expect("open pty");
    let config = ReceiverConfig {
        ack_timeout: Duration::from_secs(1),
        link_retry_interval: Duration::from_secs(1),
        ..ReceiverConfig::default()
    };
    let receiver = SurGardReceiver::new(port, config).expect("receiver");
    let handle = receiver.handle();
    let (stop, rx) = tokio::sync::oneshot::channel::<()>();
    let task = tokio::spawn(receiver.run(async move {
        let _ = rx.await;
    }));
    (handle, Running { stop, task })
}

impl Wardend {
    /// Waits until the daemon's MQTT link to the broker on `port` is subscribed.
    pub fn wait_mqtt_up(&self, port: u16) {
        let name = format!("warden_link_up{{link=\"mqtt:127.0.0.1:{port}\"}}");
        assert!(
            wait_until(Duration::from_secs(10), || self.metric(&name) > 0.5),
            "mqtt link never came up"
        );
    }
}

impl Wardend {
    /// True while the daemon process has not exited (false after `kill9`/`terminate`).
    pub fn is_running(&mut self) -> bool {
        self.child
            .as_mut()
            .is_some_and(|c| matches!(c.try_wait(), Ok(None)))
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

// ---------------------------------------------------------------------------------------
// Fault injection: a broker that keeps its sessions across a restart, a serial cable that
// can be pulled and plugged back, a private Postgres that can be stopped and started, and
// Mosquitto's own command-line publisher as an independent MQTT sender.

impl Mosquitto {
    /// Starts a broker like [`Mosquitto::start`] but with `persistence true` and its
    /// persistence file in the broker's temp dir, so an orderly restart keeps sessions and
    /// their queued messages. `extra` is appended (queue and in-flight limits).
    pub fn start_persistent(extra: &str) -> Self {
        use std::os::unix::fs::PermissionsExt as _;
        let bin = Self::binary().expect("mosquitto is not installed: run tests/deps.sh");
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
        let child = spawn_mosquitto(&bin, &conf, port);
        Self {
            child,
            port,
            _dir: dir,
        }
    }

    /// Stops the broker the orderly way (SIGTERM: a persistent broker writes its sessions to
    /// disk), waits `down`, and starts it again on the same port with the same configuration.
    // `_dir` is the broker's own temp dir, where its configuration lives.
    #[allow(clippy::used_underscore_binding)]
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
        let bin = Self::binary().expect("mosquitto is not installed: run tests/deps.sh");
        self.child = spawn_mosquitto(&bin, &self._dir.path().join("mosquitto.conf"), self.port);
    }
}

fn spawn_mosquitto(bin: &std::path::Path, conf: &std::path::Path, port: u16) -> Child {
    let child = Command::new(bin)
        .arg("-c")
        .arg(conf)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start mosquitto");
    let ok = wait_until(Duration::from_secs(10), || {
        std::net::TcpStream::connect(("127.0.0.1", port)).is_ok()
    });
    assert!(ok, "mosquitto did not start listening on {port}");
    child
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

/// Starts a simulated Sur-Gard receiver like [`start_receiver`], but on a [`ReplugPort`]
/// and with `config`, so it survives [`PtyPair::unplug`] with its buffer intact.
pub fn start_receiver_replug(
    pty: &PtyPair,
    config: warden_sim::surgard::ReceiverConfig,
) -> (
    warden_sim::surgard::ReceiverHandle,
    Running<Result<warden_sim::surgard::ReceiverReport, warden_sim::surgard::ReceiverError>>,
) {
    use warden_sim::surgard::SurGardReceiver;
    let receiver = SurGardReceiver::new(ReplugPort::open(&pty.receiver), config).expect("receiver");
    let handle = receiver.handle();
    let (stop, rx) = tokio::sync::oneshot::channel::<()>();
    let task = tokio::spawn(receiver.run(async move {
        let _ = rx.await;
    }));
    (handle, Running { stop, task })
}

/// A private PostgreSQL cluster of the system's binaries in a temp dir, for tests that
/// stop and start the server itself (the shared test server must stay up for the others).
/// Runs as `postgres` when the test runs as root. Stopped on drop.
#[derive(Debug)]
pub struct PrivatePg {
    pub url: String,
    bin: PathBuf,
    data: PathBuf,
    port: u16,
    _dir: tempfile::TempDir,
}

fn running_as_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|o| o.stdout.trim_ascii() == b"0")
}

impl PrivatePg {
    /// `initdb` and start on a free port (a few seconds).
    pub fn start() -> Self {
        use std::os::unix::fs::PermissionsExt as _;
        let mut versions: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
            .expect("postgresql server binaries installed: run tests/deps.sh")
            .flatten()
            .filter_map(|e| Some((e.file_name().to_str()?.parse().ok()?, e.path().join("bin"))))
            .collect();
        versions.sort();
        let bin = versions.pop().expect("a postgres version").1;
        let dir = tempfile::tempdir().expect("temp dir");
        // The cluster runs as `postgres` when we are root: let it into the temp dir.
        std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755))
            .expect("chmod");
        let data = dir.path().join("pg");
        std::fs::create_dir(&data).expect("mkdir");
        if running_as_root() {
            let ok = Command::new("chown")
                .arg("postgres:postgres")
                .arg(&data)
                .status()
                .is_ok_and(|s| s.success());
            assert!(ok, "chown postgres {}", data.display());
        }
        let port = free_port();
        let pg = Self {
            url: format!("postgres://postgres@127.0.0.1:{port}/postgres"),
            bin,
            data,
            port,
            _dir: dir,
        };
        let data = pg.data.to_string_lossy().into_owned();
        assert!(
            pg.run("initdb", &["-D", &data, "-A", "trust", "-U", "postgres"]),
            "initdb failed"
        );
        pg.start_server();
        pg
    }

    fn run(&self, tool: &str, args: &[&str]) -> bool {
        let exe = self.bin.join(tool);
        let mut c = if running_as_root() {
            let mut c = Command::new("runuser");
            c.args(["-u", "postgres", "--"]).arg(exe);
            c
        } else {
            Command::new(exe)
        };
        c.args(args)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success())
    }

    /// Starts the (stopped) server and waits until it accepts connections.
    pub fn start_server(&self) {
        let data = self.data.to_string_lossy().into_owned();
        let log = format!("{data}/server.log");
        let opts = format!(
            "-p {} -k {data} -c listen_addresses=127.0.0.1 -c max_connections=100",
            self.port
        );
        assert!(
            self.run(
                "pg_ctl",
                &[
                    "-D", &data, "-l", &log, "-o", &opts, "-w", "-t", "30", "start"
                ]
            ),
            "pg_ctl start failed; see {log}"
        );
    }

    /// `pg_ctl stop -m fast`: open transactions abort and every connection is closed.
    pub fn stop_server(&self) {
        let data = self.data.to_string_lossy().into_owned();
        assert!(
            self.run("pg_ctl", &["-D", &data, "-m", "fast", "-w", "stop"]),
            "pg_ctl stop failed"
        );
    }

    /// Runs one SQL statement and returns its unaligned, tuples-only output, trimmed.
    pub fn query(&self, sql: &str) -> String {
        psql(&self.url, sql)
    }
}

impl Drop for PrivatePg {
    fn drop(&mut self) {
        let data = self.data.to_string_lossy().into_owned();
        let _ = self.run("pg_ctl", &["-D", &data, "-m", "immediate", "-w", "stop"]);
    }
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
