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
