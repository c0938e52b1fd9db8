//! The real `wardend` binary under test: where it is, a command without the harness's own
//! `WARDEN_*` variables, and [`Wardend`], a running `wardend run` with a generated
//! configuration.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::net::{Answer, free_port, get, wait_until};

/// The workspace root (this crate lives in `tests/`).
pub fn workspace_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .map(PathBuf::from)
        .expect("workspace root")
}

/// Cargo's target directory: `$CARGO_TARGET_DIR`, else `target/` in the workspace.
pub fn target_dir() -> PathBuf {
    std::env::var("CARGO_TARGET_DIR")
        .map_or_else(|_| workspace_root().join("target"), PathBuf::from)
}

/// The `wardend` binary to test: `$WARDEN_BIN`, else `target/<profile>/wardend` (release
/// when built, else debug). `cargo test --workspace` builds the debug one.
pub fn wardend_binary() -> PathBuf {
    if let Ok(p) = std::env::var("WARDEN_BIN") {
        return PathBuf::from(p);
    }
    let profile = if std::env::var("WARDEN_PROFILE").as_deref() == Ok("release") {
        "release"
    } else {
        "debug"
    };
    let bin = target_dir().join(profile).join("wardend");
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
    command_for(&wardend_binary())
}

/// Like [`daemon_command`], for another daemon binary (a benchmark's release build).
pub fn command_for(binary: &Path) -> Command {
    let mut c = Command::new(binary);
    for (key, _) in std::env::vars_os() {
        if key.to_string_lossy().starts_with("WARDEN_") {
            c.env_remove(key);
        }
    }
    c
}

/// A running `wardend run` with a generated configuration, killed on drop.
#[derive(Debug)]
pub struct Wardend {
    child: Option<Child>,
    binary: PathBuf,
    pub admin: std::net::SocketAddr,
    /// The operator console (web UI + API), on a free port of its own.
    pub console: std::net::SocketAddr,
    /// With [`Wardend::start_tls`]: the CA both listeners' certificate is signed by.
    pub tls_ca: Option<PathBuf>,
    config: PathBuf,
    log: PathBuf,
    dir: tempfile::TempDir,
}

impl Wardend {
    /// Writes `config` (TOML; `admin.listen` and `console.listen` are added) and starts
    /// `wardend run` (the binary [`wardend_binary`] picks), waiting until `/healthz` answers
    /// (the schema is migrated by then).
    pub fn start(config: &str) -> Self {
        Self::start_binary(&wardend_binary(), config)
    }

    /// Like [`Wardend::start`], with another daemon binary (a benchmark's release build).
    pub fn start_binary(binary: &Path, config: &str) -> Self {
        Self::start_inner(binary, config, None)
    }

    /// Like [`Wardend::start`], with the admin and console listeners over HTTPS only, with
    /// `pair` (valid for `IP:127.0.0.1`) signed by the CA whose certificate is `ca`.
    pub fn start_tls(config: &str, pair: &crate::certs::Issued, ca: &Path) -> Self {
        Self::start_inner(&wardend_binary(), config, Some((pair, ca)))
    }

    fn start_inner(
        binary: &Path,
        config: &str,
        tls: Option<(&crate::certs::Issued, &Path)>,
    ) -> Self {
        let dir = tempfile::tempdir().expect("temp dir");
        let admin = std::net::SocketAddr::from(([127, 0, 0, 1], free_port()));
        let console = std::net::SocketAddr::from(([127, 0, 0, 1], free_port()));
        let path = dir.path().join("wardend.toml");
        // The daemon's own directory (spool, MQTT client id) unless the test names one: never
        // the working directory, which every test would share.
        let data_dir = if config.contains("data_dir") {
            String::new()
        } else {
            format!("data_dir = \"{}\"\n", dir.path().join("data").display())
        };
        let tls_keys = tls.map_or_else(String::new, |(pair, _)| {
            format!(
                "tls_cert = \"{}\"\ntls_key = \"{}\"\n",
                pair.cert.display(),
                pair.key.display()
            )
        });
        std::fs::write(
            &path,
            format!(
                "{data_dir}{config}\n[admin]\nlisten = \"{admin}\"\n{tls_keys}\
                 [console]\nlisten = \"{console}\"\n{tls_keys}"
            ),
        )
        .expect("write config");
        let log = dir.path().join("wardend.log");
        let mut w = Self {
            child: None,
            binary: binary.to_owned(),
            admin,
            console,
            tls_ca: tls.map(|(_, ca)| ca.to_owned()),
            config: path,
            log,
            dir,
        };
        w.spawn();
        w
    }

    fn spawn(&mut self) {
        let log = std::fs::File::create(&self.log).expect("log file");
        let mut child = command_for(&self.binary)
            .args(["--config"])
            .arg(&self.config)
            .arg("run")
            .env("RUST_LOG", "info")
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .unwrap_or_else(|e| panic!("start {}: {e}", self.binary.display()));
        let (admin, ca) = (self.admin, self.tls_ca.clone());
        // A daemon that exits (bad configuration, a port taken) is reported at once.
        let mut exited = None;
        let up = wait_until(Duration::from_secs(30), || {
            exited = child.try_wait().ok().flatten();
            exited.is_some()
                || get(admin, "/healthz", ca.as_deref()).is_some_and(|a| a.status == 200)
        });
        self.child = Some(child);
        assert!(
            up && exited.is_none(),
            "wardend did not become healthy (exit: {exited:?}); log:\n{}",
            self.log_text()
        );
    }

    /// The daemon's data directory (its spool, journals and snapshots), when the test's
    /// configuration did not name one.
    pub fn data_dir(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    /// Restarts the process with the same configuration (after `kill9` or `terminate`).
    pub fn restart(&mut self) {
        self.spawn();
    }

    /// Runs another `wardend` subcommand with the same configuration, feeding `input` to
    /// its standard input (e.g. `user add`, which reads the password there).
    pub fn cli_with_stdin(&self, args: &[&str], input: &str) -> std::process::Output {
        use std::io::Write as _;
        let mut child = command_for(&self.binary)
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
        command_for(&self.binary)
            .arg("--config")
            .arg(&self.config)
            .args(args)
            .output()
            .expect("run wardend")
    }

    /// The daemon's log (its standard error) so far.
    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// The daemon's log with its terminal colour codes (`ESC [ ... m`) removed, for matching
    /// text in it.
    pub fn log_plain(&self) -> String {
        let text = self.log_text();
        let mut out = String::with_capacity(text.len());
        let mut chars = text.chars();
        while let Some(c) = chars.next() {
            if c == '\u{1b}' {
                for d in chars.by_ref() {
                    if d.is_ascii_alphabetic() {
                        break;
                    }
                }
            } else {
                out.push(c);
            }
        }
        out
    }

    /// Registers a unit with `wardend device add --account <account> --protocol <protocol>`
    /// and `extra` (e.g. `["--test-interval", "24h"]`), failing the test with the command's
    /// error output when it is refused.
    pub fn add_device(&self, account: &str, protocol: &str, extra: &[&str]) {
        let mut args = vec![
            "device",
            "add",
            "--account",
            account,
            "--protocol",
            protocol,
        ];
        args.extend_from_slice(extra);
        let out = self.cli(&args);
        assert!(
            out.status.success(),
            "wardend device add {account}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    /// A GET on the admin listener (over HTTPS with [`Wardend::start_tls`]).
    pub fn admin_get(&self, path: &str) -> Option<Answer> {
        get(self.admin, path, self.tls_ca.as_deref())
    }

    /// The value of one `/metrics` sample (sum over label sets matching `selector`, which
    /// is the metric name optionally followed by `{label="value",…}` text to match).
    pub fn metric(&self, selector: &str) -> f64 {
        let body = self
            .admin_get("/metrics")
            .map(|a| a.body)
            .unwrap_or_default();
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
