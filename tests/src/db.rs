//! Postgres for tests: a throwaway database per test on the shared test server
//! (`$DATABASE_URL`, from `tests/pg.sh start`), and a private cluster for tests that stop and
//! start the server itself. Queries go through `psql`, so the kit needs no SQL driver.

use std::path::PathBuf;
use std::process::{Command, Stdio};

use crate::net::free_port;

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

/// A private PostgreSQL cluster of the system's binaries in a temp dir, for tests that
/// stop and start the server itself (the shared test server must stay up for the others).
/// Runs as `postgres` when the test runs as root. Stopped on drop.
#[derive(Debug)]
pub struct PrivatePg {
    pub url: String,
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

/// The `bin` directory of the newest PostgreSQL server installed
/// (`/usr/lib/postgresql/<major>/bin`; `tests/deps.sh` installs one).
pub fn pg_bin() -> PathBuf {
    let mut versions: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
        .expect("postgresql server binaries installed: run tests/deps.sh")
        .flatten()
        .filter_map(|e| Some((e.file_name().to_str()?.parse().ok()?, e.path().join("bin"))))
        .collect();
    versions.sort();
    versions.pop().expect("a postgres version").1
}

/// Runs the server tool `tool` (`initdb`, `pg_ctl`) of [`pg_bin`] with `args`, as `postgres`
/// when the test runs as root (PostgreSQL refuses to run as root). True when it succeeded.
pub fn pg_tool(tool: &str, args: &[&str]) -> bool {
    let exe = pg_bin().join(tool);
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

/// A single integer result of `sql` on `url`, or `None` when `psql` fails (the server is
/// away, restarting) or answers something else.
pub fn try_count(url: &str, sql: &str) -> Option<i64> {
    let out = Command::new("psql")
        .args([url, "-qtAc", sql])
        .output()
        .ok()?;
    String::from_utf8_lossy(&out.stdout).trim().parse().ok()
}

impl PrivatePg {
    /// `initdb` and start on a free port (a few seconds).
    pub fn start() -> Self {
        let pg = Self::init();
        pg.start_server();
        pg
    }

    /// Like [`PrivatePg::start`], with `ssl = on` serving `server` (its certificate and
    /// key) and a `pg_hba.conf` that admits TCP clients over TLS only (`hostssl`): a
    /// plaintext connection is refused. [`PrivatePg::url`] names no `sslmode`.
    pub fn start_tls(server: &crate::certs::Issued) -> Self {
        use std::os::unix::fs::PermissionsExt as _;
        let pg = Self::init();
        let crt = pg.data.join("server.crt");
        let key = pg.data.join("server.key");
        std::fs::copy(&server.cert, &crt).expect("copy the server certificate");
        std::fs::copy(&server.key, &key).expect("copy the server key");
        // Postgres refuses a key others can read.
        std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o600)).expect("chmod");
        std::fs::write(
            pg.data.join("pg_hba.conf"),
            "local all all trust\nhostssl all all 127.0.0.1/32 trust\nhostssl all all ::1/128 trust\n",
        )
        .expect("write pg_hba.conf");
        let mut conf = std::fs::OpenOptions::new()
            .append(true)
            .open(pg.data.join("postgresql.conf"))
            .expect("open postgresql.conf");
        std::io::Write::write_all(
            &mut conf,
            b"\nssl = on\nssl_cert_file = 'server.crt'\nssl_key_file = 'server.key'\n",
        )
        .expect("write postgresql.conf");
        if running_as_root() {
            for f in [&crt, &key] {
                let ok = Command::new("chown")
                    .arg("postgres:postgres")
                    .arg(f)
                    .status()
                    .is_ok_and(|s| s.success());
                assert!(ok, "chown postgres {}", f.display());
            }
        }
        pg.start_server();
        pg
    }

    /// An initialised cluster on a free port, not started.
    fn init() -> Self {
        use std::os::unix::fs::PermissionsExt as _;
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
            data,
            port,
            _dir: dir,
        };
        let data = pg.data.to_string_lossy().into_owned();
        assert!(
            pg_tool("initdb", &["-D", &data, "-A", "trust", "-U", "postgres"]),
            "initdb failed"
        );
        pg
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
            pg_tool(
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
            pg_tool("pg_ctl", &["-D", &data, "-m", "fast", "-w", "stop"]),
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
        let _ = pg_tool("pg_ctl", &["-D", &data, "-m", "immediate", "-w", "stop"]);
    }
}
