//! A private PostgreSQL cluster run from the system's PostgreSQL binaries, the default when
//! no database URL is configured.
//!
//! PostgreSQL refuses to run as root, so when wardend runs as root the cluster is created
//! and started as the `postgres` user (`runuser`), and its directory must be reachable by
//! that user.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use anyhow::{Context as _, bail};

/// A running private cluster. `stop` shuts it down only if this process started it: a
/// command such as `wardend device add` run beside a live daemon adopts the daemon's cluster
/// and must leave it running. It is not stopped on drop, so a crash leaves it for the next
/// start to reuse.
#[derive(Debug)]
pub struct EmbeddedPostgres {
    bin: PathBuf,
    dir: PathBuf,
    port: u16,
    as_postgres: bool,
    started_here: bool,
}

fn is_root() -> bool {
    // `id -u` avoids unsafe libc calls (unsafe code is forbidden in this workspace).
    Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|o| o.stdout.trim_ascii() == b"0")
}

/// The newest installed PostgreSQL server's `bin` directory.
pub fn find_binaries() -> anyhow::Result<PathBuf> {
    let mut found: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| {
            let v: u32 = e.file_name().to_str()?.parse().ok()?;
            let bin = e.path().join("bin");
            bin.join("initdb").is_file().then_some((v, bin))
        })
        .collect();
    found.sort();
    match found.pop() {
        Some((_, bin)) => Ok(bin),
        None => bail!(
            "PostgreSQL server binaries not found under /usr/lib/postgresql: install them with \
             `apt-get install -y postgresql`, or set database.url (WARDEN_DATABASE__URL) to an existing server"
        ),
    }
}

impl EmbeddedPostgres {
    /// Creates the cluster under `data_dir/postgres` if needed and starts it (or adopts a
    /// cluster already running there).
    pub fn start(data_dir: &Path) -> anyhow::Result<Self> {
        let bin = find_binaries()?;
        let as_postgres = is_root();
        std::fs::create_dir_all(data_dir)
            .with_context(|| format!("creating {}", data_dir.display()))?;
        let data_dir = data_dir
            .canonicalize()
            .with_context(|| format!("resolving {}", data_dir.display()))?;
        let dir = data_dir.join("postgres");
        let mut pg = Self {
            bin,
            dir,
            port: 0,
            as_postgres,
            started_here: false,
        };
        if as_postgres && !Self::postgres_can_reach(&data_dir) {
            bail!(
                "the postgres user cannot reach {}: PostgreSQL refuses to run as root, so wardend runs it as \
                 `postgres`; choose a data_dir outside /root (e.g. --data-dir /var/lib/warden)",
                data_dir.display()
            );
        }
        if !pg.dir.join("PG_VERSION").is_file() {
            std::fs::create_dir_all(&pg.dir)?;
            pg.chown()?;
            pg.run(
                "initdb",
                &[
                    "-D",
                    &pg.dir_str(),
                    "-A",
                    "trust",
                    "-U",
                    "postgres",
                    "-E",
                    "UTF8",
                ],
            )
            .context("initdb failed")?;
            tracing::info!(dir = %pg.dir.display(), "created private postgres cluster");
        }
        if let Some(port) = pg.running_port() {
            pg.port = port;
            tracing::info!(port, "adopting private postgres already running");
            return Ok(pg);
        }
        pg.port = free_port()?;
        pg.started_here = true;
        let opts = format!(
            "-p {} -k {} -c listen_addresses=127.0.0.1 -c max_connections=100",
            pg.port,
            pg.dir_str()
        );
        let log = pg.dir.join("server.log");
        pg.run(
            "pg_ctl",
            &[
                "-D",
                &pg.dir_str(),
                "-l",
                &log.to_string_lossy(),
                "-o",
                &opts,
                "-w",
                "-t",
                "30",
                "start",
            ],
        )
        .with_context(|| format!("pg_ctl start failed; see {}", log.display()))?;
        tracing::info!(port = pg.port, dir = %pg.dir.display(), "private postgres started");
        Ok(pg)
    }

    pub fn url(&self) -> String {
        format!("postgres://postgres@127.0.0.1:{}/postgres", self.port)
    }

    /// Stops the cluster (fast shutdown: open transactions roll back, committed data stays).
    pub fn stop(&self) -> anyhow::Result<()> {
        if !self.started_here {
            tracing::info!("leaving the adopted private postgres running");
            return Ok(());
        }
        self.run(
            "pg_ctl",
            &["-D", &self.dir_str(), "-m", "fast", "-w", "stop"],
        )
        .context("pg_ctl stop failed")?;
        tracing::info!("private postgres stopped");
        Ok(())
    }

    fn dir_str(&self) -> String {
        self.dir.to_string_lossy().into_owned()
    }

    fn postgres_can_reach(dir: &Path) -> bool {
        Command::new("runuser")
            .args(["-u", "postgres", "--", "test", "-x"])
            .arg(dir)
            .status()
            .is_ok_and(|s| s.success())
    }

    fn chown(&self) -> anyhow::Result<()> {
        if self.as_postgres {
            let ok = Command::new("chown")
                .args(["-R", "postgres:postgres"])
                .arg(&self.dir)
                .status()?
                .success();
            if !ok {
                bail!("chown postgres {} failed", self.dir.display());
            }
        }
        Ok(())
    }

    /// The port of a postmaster already running in this directory, if any.
    fn running_port(&self) -> Option<u16> {
        let status = self
            .command("pg_ctl", &["-D", &self.dir_str(), "status"])
            .stdout(Stdio::null())
            .status()
            .ok()?;
        if !status.success() {
            return None;
        }
        // Line 4 of postmaster.pid is the port.
        let pid = std::fs::read_to_string(self.dir.join("postmaster.pid")).ok()?;
        pid.lines().nth(3)?.trim().parse().ok()
    }

    fn command(&self, tool: &str, args: &[&str]) -> Command {
        let exe = self.bin.join(tool);
        let mut cmd = if self.as_postgres {
            let mut c = Command::new("runuser");
            c.args(["-u", "postgres", "--"]).arg(exe);
            c
        } else {
            Command::new(exe)
        };
        cmd.args(args);
        cmd
    }

    fn run(&self, tool: &str, args: &[&str]) -> anyhow::Result<()> {
        let out = self
            .command(tool, args)
            .stdin(Stdio::null())
            .output()
            .with_context(|| format!("running {tool}"))?;
        if !out.status.success() {
            bail!(
                "{tool} exited with {}: {}",
                out.status,
                String::from_utf8_lossy(&out.stderr).trim()
            );
        }
        Ok(())
    }
}

/// A port free on the loopback interface right now.
fn free_port() -> anyhow::Result<u16> {
    let l = std::net::TcpListener::bind("127.0.0.1:0").context("finding a free port")?;
    Ok(l.local_addr()?.port())
}
